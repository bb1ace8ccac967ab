//! Kernel maps and attachments of the `reboot` detector.

use agent_common::maps;

use crate::{
    config::Config,
    kernel::loader::{Kernel, LoadError},
    kernel::maps::sync_hash,
};

impl Kernel {
    /// Guard mode and allowed sources for the kernel-side reboot guard.
    pub(crate) fn sync_reboot_guard(&mut self, config: &Config) -> Result<(), LoadError> {
        use agent_common::reboot::{
            GUARD_DRY_RUN, GUARD_ENFORCE, GUARD_OFF, REBOOT_ALLOWED, REBOOT_GUARD,
        };
        use aya::maps::{
            Array,
            lpm_trie::{Key, LpmTrie},
        };
        let r = &config.detectors.reboot;
        let mode = if !(r.enabled && r.protected_host) {
            GUARD_OFF
        } else {
            match config.action_mode(crate::config::ActionKind::BlockExec) {
                crate::config::Mode::Enforce => GUARD_ENFORCE,
                crate::config::Mode::DryRun => GUARD_DRY_RUN,
                crate::config::Mode::Observe => GUARD_OFF,
            }
        };
        let map = self
            .ebpf
            .map_mut(REBOOT_ALLOWED)
            .ok_or(LoadError::MissingMap(REBOOT_ALLOWED))?;
        let mut allowed: LpmTrie<_, [u8; 16], u32> =
            LpmTrie::try_from(map).map_err(|source| LoadError::Map {
                name: REBOOT_ALLOWED,
                source,
            })?;
        let old: Vec<Key<[u8; 16]>> = allowed.keys().filter_map(Result::ok).collect();
        for k in old {
            allowed.remove(&k).map_err(|source| LoadError::Map {
                name: REBOOT_ALLOWED,
                source,
            })?;
        }
        for net in &r.allowed_sources {
            let (addr, prefix) = match net {
                ipnet::IpNet::V4(n) => (
                    n.addr().to_ipv6_mapped().octets(),
                    96 + u32::from(n.prefix_len()),
                ),
                ipnet::IpNet::V6(n) => (n.addr().octets(), u32::from(n.prefix_len())),
            };
            allowed
                .insert(&Key::new(prefix, addr), &1, 0)
                .map_err(|source| LoadError::Map {
                    name: REBOOT_ALLOWED,
                    source,
                })?;
        }
        let map = self
            .ebpf
            .map_mut(REBOOT_GUARD)
            .ok_or(LoadError::MissingMap(REBOOT_GUARD))?;
        let mut guard: Array<_, u32> = Array::try_from(map).map_err(|source| LoadError::Map {
            name: REBOOT_GUARD,
            source,
        })?;
        guard.set(0, &mode, 0).map_err(|source| LoadError::Map {
            name: REBOOT_GUARD,
            source,
        })?;
        self.reboot_guard = mode;
        Ok(())
    }

    /// Mode of the kernel-side reboot guard (agent_common::reboot::GUARD_*).
    pub fn reboot_guard(&self) -> u32 {
        self.reboot_guard
    }

    pub(crate) fn sync_exec_watch(&mut self, config: &Config) -> Result<(), LoadError> {
        let wanted: Vec<(maps::ExecWatchKey, u32)> = if config.detectors.reboot.enabled {
            super::watched_binaries(&config.detectors.reboot)
                .into_iter()
                .filter_map(|(name, class)| {
                    maps::ExecWatchKey::new(name.as_bytes()).map(|k| (k, class))
                })
                .collect()
        } else {
            Vec::new()
        };
        sync_hash(self, maps::EXEC_WATCH, &wanted)?;
        // The guard's reading of the watched commands' argv (the detector's own).
        let rules = if config.detectors.reboot.enabled {
            super::argv::rules()
        } else {
            Vec::new()
        };
        sync_hash(self, agent_common::reboot::argv::ARGV_RULES, &rules)
    }
}
