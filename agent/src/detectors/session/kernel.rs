//! Kernel maps and attachments of the `session` detector.

use crate::{
    config::Config,
    kernel::loader::{Kernel, LoadError},
    kernel::maps::{set_array, sync_hash},
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

    /// Tell the programs which origin table the route in use keeps (`session.storage`:
    /// task storage where its fork program is attached, else the pid table).
    pub(crate) fn sync_origin_route(&mut self) -> Result<(), LoadError> {
        use agent_common::session::{ORIGIN_ROUTE, ROUTE_PID_TABLE, ROUTE_TASK_STORAGE};
        let route = match self.routes.get("session.storage") {
            Some(false) => ROUTE_TASK_STORAGE,
            _ => ROUTE_PID_TABLE,
        };
        set_array(self, ORIGIN_ROUTE, 0, &route)
    }
}
