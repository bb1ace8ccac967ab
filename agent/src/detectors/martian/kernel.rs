//! Kernel maps and attachments of the `martian` detector.

use aya::maps::{HashMap as BpfHashMap, MapData};
use tracing::warn;

use crate::{
    config::Config,
    loader::{Kernel, LoadError},
};

impl Kernel {
    /// Martian drop reasons by name -> this kernel's values (never hard-coded numbers).
    pub(crate) fn sync_martian_reasons(&mut self, config: &Config) -> Result<(), LoadError> {
        use agent_common::martian::MARTIAN_REASONS;
        let mut wanted = std::collections::HashMap::new();
        if config.detectors.martian.enabled {
            for name in &config.detectors.martian.reasons {
                match self.drop_reasons.iter().find(|(_, n)| *n == name) {
                    Some((v, n)) => {
                        wanted.insert(*v, n.clone());
                    }
                    None => {
                        warn!(reason = %name, "skb drop reason not on this kernel; not counted (see /proc/net/stat/rt_cache and TcpExt IPReversePathFilter)")
                    }
                }
            }
        }
        let map = self
            .ebpf
            .map_mut(MARTIAN_REASONS)
            .ok_or(LoadError::MissingMap(MARTIAN_REASONS))?;
        let mut m: BpfHashMap<_, u32, u32> =
            BpfHashMap::try_from(map).map_err(|source| LoadError::Map {
                name: MARTIAN_REASONS,
                source,
            })?;
        let old: Vec<u32> = m.keys().filter_map(Result::ok).collect();
        for k in old {
            m.remove(&k).map_err(|source| LoadError::Map {
                name: MARTIAN_REASONS,
                source,
            })?;
        }
        for v in wanted.keys() {
            m.insert(v, &1, 0).map_err(|source| LoadError::Map {
                name: MARTIAN_REASONS,
                source,
            })?;
        }
        self.martian_reasons = wanted;
        Ok(())
    }

    /// Read-only handles on the martian counters.
    #[allow(clippy::type_complexity)]
    pub fn martian_maps(
        &self,
    ) -> Option<(
        aya::maps::PerCpuHashMap<MapData, agent_common::martian::MartianKey, u64>,
        aya::maps::PerCpuHashMap<MapData, agent_common::martian::MartianSource, u64>,
    )> {
        use agent_common::martian::{MARTIAN_COUNTS, MARTIAN_SOURCES};
        let counts = aya::maps::PerCpuHashMap::try_from(aya::maps::Map::PerCpuHashMap(
            self.map_handle(MARTIAN_COUNTS).ok()?,
        ))
        .ok()?;
        let sources = aya::maps::PerCpuHashMap::try_from(aya::maps::Map::PerCpuLruHashMap(
            self.map_handle(MARTIAN_SOURCES).ok()?,
        ))
        .ok()?;
        Some((counts, sources))
    }
}
