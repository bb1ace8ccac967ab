//! Kernel maps and attachments of the `session` detector.

use aya::maps::HashMap as BpfHashMap;

use crate::{
    config::Config,
    loader::{Kernel, LoadError},
};

impl Kernel {
    pub(crate) fn sync_sshd_comms(&mut self, config: &Config) -> Result<(), LoadError> {
        let name = agent_common::session::SSHD_COMMS;
        let map = self.ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
        let mut comms: BpfHashMap<_, [u8; 16], u32> =
            BpfHashMap::try_from(map).map_err(|source| LoadError::Map { name, source })?;
        let wanted: Vec<[u8; 16]> = config
            .detectors
            .session
            .sshd_comms
            .iter()
            .map(|c| {
                let mut k = [0u8; 16];
                k[..c.len().min(15)].copy_from_slice(&c.as_bytes()[..c.len().min(15)]);
                k
            })
            .collect();
        let stale: Vec<[u8; 16]> = comms
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(k))
            .collect();
        for k in stale {
            comms
                .remove(&k)
                .map_err(|source| LoadError::Map { name, source })?;
        }
        for k in wanted {
            comms
                .insert(&k, &1, 0)
                .map_err(|source| LoadError::Map { name, source })?;
        }
        Ok(())
    }
}
