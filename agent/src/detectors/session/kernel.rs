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

    /// Keep the origin table in line with the route in use (`session.storage`: task
    /// storage where its fork program is attached, else the pid table), and restore the
    /// sessions open now into it. When the table changes, the one entered is made
    /// current before the programs are told (the pid table emptied of entries left from
    /// before, the live sessions written), and the sessions are written once more after
    /// (an sshd that recorded its origin in the old table in between). An error is
    /// returned: a wrong table would give processes wrong origins without a word.
    pub(crate) fn sync_origins(&mut self, config: &Config) -> Result<(), LoadError> {
        use crate::detectors::session::{
            preexisting::restore,
            table::{OriginTable, Route},
        };
        let s = &config.detectors.session;
        let Some(&fallback) = self.routes.get("session.storage").filter(|_| s.enabled) else {
            return Ok(());
        };
        let target = if fallback {
            Route::PidTable
        } else {
            Route::TaskStorage
        };
        let name = agent_common::session::ORIGIN_ROUTE;
        let err = |source| LoadError::Map { name, source };
        let mut table = OriginTable::open(self)?;
        let changed = table.route().map_err(err)? != target;
        if changed && target == Route::PidTable {
            let stale = table.clear_pids().map_err(err)?;
            tracing::debug!(stale, "session: pid table emptied before use");
        }
        let mut n = restore(&mut table, target, &s.sshd_comms).map_err(err)?;
        if changed {
            table.set_route(target).map_err(err)?;
            n += restore(&mut table, target, &s.sshd_comms).map_err(err)?;
            tracing::info!(table = ?target, "session: origins kept in this table");
        }
        if n > 0 {
            tracing::info!(
                detector = "session",
                tasks = n,
                "SSH sessions open before now: origins restored"
            );
        }
        Ok(())
    }
}
