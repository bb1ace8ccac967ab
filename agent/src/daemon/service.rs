//! Life as a system service: readiness, reload and stop reported to systemd
//! (`Type=notify`: READY=1 once every program is attached and /metrics answers), and
//! capabilities dropped to what the agent uses ([`super::privileges`]).
//!
//! With `WatchdogSec=` the agent sends WATCHDOG=1 at half the timeout while it is
//! alive: its run loop turns and the kernel-owner thread answers. A hung agent stops
//! the pings and systemd restarts it. (A stopped event reader is not a hang: `/readyz`
//! fails with the reason and the agent keeps running, as before.)
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

/// The interval to send WATCHDOG=1 at (half systemd's `WatchdogSec=`), `None` when
/// the service manager asks for none (or asks another process: `WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<std::time::Duration> {
    // 0 is "no watchdog" (as libsystemd reads it).
    let timeout = sd_notify::watchdog_enabled().filter(|t| !t.is_zero())?;
    info!(
        timeout_ms = timeout.as_millis() as u64,
        "systemd watchdog: pinging at half the timeout while alive"
    );
    Some(timeout / 2)
}

/// Alive (see the module): systemd's watchdog timer starts again.
pub fn notify_watchdog() {
    notify(&[NotifyState::Watchdog]);
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
