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

use crate::{
    config::Config,
    kernel::loader::{Kernel, LoadError, TcSync, sync_hash},
    net::Links,
};

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

    /// Attach the cluster-traffic counter to the configured interfaces, or to every
    /// interface but loopback when none are configured.
    pub fn sync_corosync_interfaces(&mut self, config: &Config, links: &Links) -> TcSync {
        if !config.detectors.corosync.enabled {
            return TcSync::default();
        }
        let wanted: Vec<String> = if config.detectors.corosync.interfaces.is_empty() {
            links
                .0
                .iter()
                .map(|l| l.name.clone())
                .filter(|i| i != "lo")
                .collect()
        } else {
            config.detectors.corosync.interfaces.clone()
        };
        self.sync_tc("corosync_tc", wanted, links)
    }

    /// Whether the cluster-traffic counter (which also enforces cluster drops) is on
    /// at least one interface.
    pub fn corosync_tc_attached(&self) -> bool {
        self.tc_attached
            .get("corosync_tc")
            .is_some_and(|s| !s.is_empty())
    }
}

/// Attach the cluster-traffic counter to new interfaces, on the kernel owner thread;
/// each failure is logged once, the counts exported.
pub fn sync_interfaces(
    kernel: &crate::kernel::owner::Handle,
    config: &Config,
    links: &Links,
    metrics: &crate::detectors::metrics::Metrics,
) {
    let (config, links) = (config.clone(), links.clone());
    let sync = kernel.call(move |k| k.sync_corosync_interfaces(&config, &links));
    for e in sync.new_errors {
        tracing::warn!(error = %e, "cluster-traffic counter not attached");
    }
    metrics.corosync.interfaces(sync.attached, sync.failing);
}
