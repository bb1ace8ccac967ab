//! Kernel maps and attachments of the `session` detector.

use crate::{
    config::Config,
    kernel::loader::{Kernel, LoadError},
    kernel::maps::sync_hash,
};

impl Kernel {
    pub(crate) fn sync_sshd_comms(&mut self, config: &Config) -> Result<(), LoadError> {
        let wanted: Vec<([u8; 16], u32)> = config
            .detectors
            .session
            .sshd_comms
            .iter()
            .map(|c| {
                let mut k = [0u8; 16];
                k[..c.len().min(15)].copy_from_slice(&c.as_bytes()[..c.len().min(15)]);
                (k, 1)
            })
            .collect();
        sync_hash(self, agent_common::session::SSHD_COMMS, &wanted)
    }
}
