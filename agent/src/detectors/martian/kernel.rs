//! Kernel maps and attachments of the `martian` detector.

use aya::maps::MapData;
use tracing::warn;

use crate::{
    config::Config,
    kernel::loader::{Kernel, LoadError},
};

impl Kernel {
    /// Martian drop reasons by name -> this kernel's values (never hard-coded numbers).
    pub(crate) fn sync_martian_reasons(&mut self, config: &Config) -> Result<(), LoadError> {
        use agent_common::martian::{MARTIAN_REASONS, MARTIAN_REASONS_CAPACITY};
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
        let name = MARTIAN_REASONS;
        let old = self.martian_reasons.clone();
        let map = self
            .ebpf_mut()
            .map_mut(name)
            .ok_or(LoadError::MissingMap(name))?;
        let err = |source| LoadError::Map { name, source };
        let mut on = aya::maps::Array::<_, u32>::try_from(map).map_err(err)?;
        // Only the entries that change (the array starts all zero; `martian_reasons`
        // is what it holds since).
        let changed = wanted
            .keys()
            .filter(|r| !old.contains_key(r))
            .chain(old.keys().filter(|r| !wanted.contains_key(r)));
        for &reason in changed.filter(|r| **r < MARTIAN_REASONS_CAPACITY) {
            let want = u32::from(wanted.contains_key(&reason));
            on.set(reason, &want, 0).map_err(err)?;
        }
        wanted.retain(|reason, name| {
            let fits = *reason < MARTIAN_REASONS_CAPACITY;
            if !fits {
                warn!(reason = %name, value = reason, "skb drop reason value beyond the table; not counted");
            }
            fits
        });
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
