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
    /// storage where its fork program is attached, else the pid table; none while the
    /// detector is off), and in the daemon restore the sessions open now into it. When
    /// the table changes, the one entered is made current before the programs are told
    /// (the pid table emptied of entries left from before, the live sessions written),
    /// and the sessions are written once more after (an sshd that recorded its origin in
    /// the old table in between). An error with the table itself is returned (a wrong
    /// table gives processes wrong origins); a failed restore is logged and the rest
    /// goes on.
    pub(crate) fn sync_origins(&mut self, config: &Config) -> Result<(), LoadError> {
        use crate::detectors::session::{
            preexisting::restore,
            table::{OriginTable, Route},
        };
        let s = &config.detectors.session;
        let target = match self.routes.get("session.storage") {
            Some(false) if s.enabled => Route::TaskStorage,
            Some(true) if s.enabled => Route::PidTable,
            _ => Route::Off,
        };
        let name = agent_common::session::ORIGIN_ROUTE;
        let err = |source| LoadError::Map { name, source };
        let mut table = OriginTable::open(self)?;
        let changed = table.route().map_err(err)? != target;
        if changed && target == Route::PidTable {
            let stale = table.clear_pids().map_err(err)?;
            tracing::debug!(stale, "session: pid table emptied before use");
        }
        let daemon = RESTORE_SESSIONS.load(std::sync::atomic::Ordering::Relaxed);
        let mut restored = 0;
        let mut restore_into = |table: &mut OriginTable| {
            if !daemon || target == Route::Off {
                return;
            }
            match restore(table, target, &s.sshd_comms) {
                Ok(n) => restored += n,
                Err(e) => {
                    tracing::warn!(detector = "session", error = %e, "cannot restore the origins of the SSH sessions open now: their processes carry none")
                }
            }
        };
        restore_into(&mut table);
        if changed {
            table.set_route(target).map_err(err)?;
            restore_into(&mut table);
            tracing::info!(table = ?target, "session: origins kept in this table");
        }
        if restored > 0 {
            tracing::info!(
                detector = "session",
                tasks = restored,
                "SSH sessions open before now: origins restored"
            );
        }
        Ok(())
    }
}

/// Whether applying a configuration restores the origins of the SSH sessions open at
/// that moment: in the daemon only (`nodeward check` and `cost` load the programs for a
/// moment and leave live sessions alone).
static RESTORE_SESSIONS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Called by the daemon before it loads the programs.
pub fn restore_sessions_on_apply() {
    RESTORE_SESSIONS.store(true, std::sync::atomic::Ordering::Relaxed);
}
