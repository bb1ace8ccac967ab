//! Life as a system service: readiness, reload and stop reported to systemd
//! (`Type=notify`: READY=1 once every program is attached and /metrics answers), and
//! capabilities dropped to what the agent uses ([`super::privileges`]).
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) the notifications do nothing.

use sd_notify::NotifyState;
use tracing::{info, warn};

/// Drop the capabilities the agent never uses; log what was dropped and what is missing.
/// A process that cannot reduce its own permitted set does not run at all.
pub fn drop_privileges() -> anyhow::Result<()> {
    match super::privileges::drop_unneeded() {
        Ok(d) => {
            let kept: Vec<_> = super::privileges::KEPT.iter().map(|(c, _)| *c).collect();
            let kept = super::privileges::names(&kept);
            if !d.permitted.is_empty() {
                info!(
                    dropped = super::privileges::names(&d.permitted).join(","),
                    kept = kept.join(","),
                    bounding = d.bounding,
                    "capabilities the agent does not use dropped"
                );
            }
            if !d.missing.is_empty() {
                warn!(
                    missing = super::privileges::names(&d.missing).join(","),
                    "running without capabilities the agent uses: `nodeward check` shows what falls back or cannot run"
                );
            }
        }
        Err(e) => anyhow::bail!("cannot drop the capabilities the agent does not use: {e}"),
    }
    Ok(())
}

fn notify(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// Every enabled program is attached and the HTTP server answers.
pub fn notify_ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("watching")]);
}

/// SIGHUP received: READY=1 follows when the reload is done (applied or rejected).
pub fn notify_reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}

/// SIGTERM or SIGINT received: detaching.
pub fn notify_stopping() {
    notify(&[NotifyState::Stopping]);
}
