//! Kernel maps of the `corosync` detector: ports, members and daemons written from the
//! cluster configuration; per-source counters and totals read once a second.

use std::{collections::BTreeMap, net::IpAddr};

use crate::net::addr_key;

use agent_common::corosync::{
    COROSYNC_EXEC, COROSYNC_MEMBERS, COROSYNC_PORTS, COROSYNC_SOURCES, COROSYNC_TOTALS,
    SourceCount, SourceKey, TOTAL_SLOTS,
};
use agent_common::maps::ExecWatchKey;
use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};

use crate::kernel::loader::{Kernel, LoadError, sync_hash};

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
    ) -> Result<(), LoadError> {
        let mut bits = agent_common::packet::PortBits::default();
        for &p in ports {
            bits.set(p);
        }
        let name = agent_common::packet::COROSYNC_PORT_BITS;
        let map = self
            .ebpf_mut()
            .map_mut(name)
            .ok_or(LoadError::MissingMap(name))?;
        let err = |source| LoadError::Map { name, source };
        aya::maps::Array::<_, agent_common::packet::PortBits>::try_from(map)
            .map_err(err)?
            .set(0, &bits, 0)
            .map_err(err)?;
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

    pub fn corosync_counters(&self) -> Result<Counters, LoadError> {
        let handle = |name| self.map_handle(name);
        Ok(Counters {
            sources: PerCpuHashMap::try_from(aya::maps::Map::PerCpuLruHashMap(handle(
                COROSYNC_SOURCES,
            )?))
            .map_err(|source| LoadError::Map {
                name: COROSYNC_SOURCES,
                source,
            })?,
            totals: PerCpuArray::try_from(aya::maps::Map::PerCpuArray(handle(COROSYNC_TOTALS)?))
                .map_err(|source| LoadError::Map {
                    name: COROSYNC_TOTALS,
                    source,
                })?,
        })
    }

    /// Whether the cluster-traffic counter (which also enforces cluster drops) is on
    /// at least one interface.
    pub fn cluster_counter_attached(&self) -> bool {
        self.packet_ports
            .values()
            .any(|p| p.flags & agent_common::packet::PORT_WATCH_COROSYNC != 0)
    }
}
