//! Kernel maps of the `corosync` detector: ports, members and daemons written from the
//! cluster configuration; per-source counters and totals read once a second.

use std::{collections::BTreeMap, net::IpAddr};

use agent_common::corosync::{
    COROSYNC_EXEC, COROSYNC_MEMBERS, COROSYNC_PORTS, COROSYNC_SOURCES, COROSYNC_TOTALS,
    SourceCount, SourceKey, TOTAL_SLOTS,
};
use agent_common::maps::ExecWatchKey;
use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};

use crate::loader::{Kernel, sync_hash};

/// The 16-byte map key of an address (IPv4 mapped).
pub fn addr_key(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address of a map key (IPv4-mapped keys as IPv4).
pub fn key_addr(k: [u8; 16]) -> IpAddr {
    crate::corosync_conf::canonical(IpAddr::from(k))
}

/// Counters of one source on one interface (summed over CPUs).
pub struct SourceRow {
    pub key: SourceKey,
    pub count: SourceCount,
}

/// Read handles, taken once (the maps outlive the guard's borrows).
pub struct Counters {
    sources: PerCpuHashMap<MapData, SourceKey, SourceCount>,
    totals: PerCpuArray<MapData, u64>,
}

impl Counters {
    pub fn sources(&self) -> Vec<SourceRow> {
        self.sources
            .iter()
            .filter_map(Result::ok)
            .map(|(key, per_cpu)| {
                let mut count = SourceCount::default();
                for c in per_cpu.iter() {
                    count.packets += c.packets;
                    count.bytes += c.bytes;
                    count.dropped += c.dropped;
                }
                SourceRow { key, count }
            })
            .collect()
    }

    /// The `TOTAL_*` slots, summed over CPUs.
    pub fn totals(&self) -> [u64; TOTAL_SLOTS as usize] {
        let mut out = [0u64; TOTAL_SLOTS as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(v) = self.totals.get(&(i as u32), 0) {
                *slot = v.iter().sum();
            }
        }
        out
    }
}

impl Kernel {
    /// Ports, members and daemons of the cluster, as the programs should see them.
    pub fn sync_corosync(
        &mut self,
        ports: &[u16],
        members: &BTreeMap<IpAddr, u32>,
        daemons: &[String],
    ) -> Result<(), String> {
        let ports: Vec<(u16, u32)> = ports.iter().map(|&p| (p, 1)).collect();
        sync_hash(self, COROSYNC_PORTS, &ports)?;
        let members: Vec<([u8; 16], u32)> =
            members.iter().map(|(a, id)| (addr_key(*a), *id)).collect();
        sync_hash(self, COROSYNC_MEMBERS, &members)?;
        let daemons: Vec<(ExecWatchKey, u32)> = daemons
            .iter()
            .filter_map(|d| ExecWatchKey::new(d.as_bytes()).map(|k| (k, 1)))
            .collect();
        sync_hash(self, COROSYNC_EXEC, &daemons)
    }

    pub fn corosync_counters(&self) -> Result<Counters, String> {
        let handle = |name| self.map_handle(name).map_err(|e| e.to_string());
        Ok(Counters {
            sources: PerCpuHashMap::try_from(aya::maps::Map::PerCpuLruHashMap(handle(
                COROSYNC_SOURCES,
            )?))
            .map_err(|e| format!("map {COROSYNC_SOURCES}: {e}"))?,
            totals: PerCpuArray::try_from(aya::maps::Map::PerCpuArray(handle(COROSYNC_TOTALS)?))
                .map_err(|e| format!("map {COROSYNC_TOTALS}: {e}"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_both_families() {
        for a in ["10.1.2.3", "fd00::7"] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(key_addr(addr_key(ip)), ip);
        }
        assert_eq!(
            addr_key("10.1.2.3".parse().unwrap()),
            agent_common::corosync::v4_key([10, 1, 2, 3])
        );
    }
}
