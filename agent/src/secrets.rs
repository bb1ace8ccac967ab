//! `secrets` detector at run time: a secret opened by a process that is not an allowed
//! reader becomes a quarantine request (block its binary on exec, scoped to its cgroup)
//! and, once the engine applied it, the process itself is ended.

use tracing::{error, info, warn};

use crate::{
    config::{Config, Mode},
    detectors::secrets::SecretFinding,
    guard::Guard,
    metrics::Metrics,
    quarantine::{ActionKind, Now, Outcome, Request, Target, Trigger},
};

/// The cgroup v2 path of a process ("/system.slice/x.service"), if readable.
fn cgroup_path(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// SIGKILL `pid` if it is still the process that opened the secret (same comm).
fn end_process(pid: u32, comm: &str) -> Result<(), String> {
    let now = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_err(|e| format!("already gone ({e})"))?;
    if now.trim_end() != comm {
        return Err(format!(
            "pid {pid} is now {} (not {comm}): left alone",
            now.trim_end()
        ));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| e.to_string())
}

/// A secret opened by a process that is not an allowed reader.
pub fn quarantine(guard: &mut Guard, config: &Config, metrics: &Metrics, f: SecretFinding) {
    if !config.detectors.secrets.quarantine
        || config.action_mode(ActionKind::BlockExec) == Mode::Observe
    {
        return;
    }
    let p = &f.process;
    // cgroup id 1 is the root of the v2 hierarchy: a block there would not be scoped.
    if p.cgroup_id <= 1 {
        warn!(detector = "secrets", pid = p.pid, comm = %p.comm, "not quarantined: the process is in the root cgroup, an exec block would not be scoped");
        return;
    }
    let target = Target::Exec {
        binary: p.comm.clone(),
        cgroup_id: p.cgroup_id,
        cgroup: cgroup_path(p.pid),
    };
    if guard.active().iter().any(|q| q.target.same_key(&target)) {
        return; // already blocked there: the exec that got through was before it
    }
    let request = Request {
        target,
        ttl_s: None,
        trigger: Trigger {
            source: "secrets".into(),
            detail: format!(
                "{} of {} by {}[{}] (uid {}, origin {})",
                f.kind,
                f.path,
                p.comm,
                p.pid,
                p.uid,
                serde_json::to_string(&p.origin).unwrap_or_default()
            ),
        },
    };
    match guard.request(request, Now::system()) {
        Ok(Outcome::Applied { id, .. }) => {
            let ended = end_process(p.pid, &p.comm);
            match &ended {
                Ok(()) => {
                    warn!(detector = "secrets", id, pid = p.pid, comm = %p.comm, path = %f.path, "quarantined: exec of {} blocked in its cgroup, process {} ended", p.comm, p.pid)
                }
                Err(why) => {
                    warn!(detector = "secrets", id, pid = p.pid, comm = %p.comm, path = %f.path, "quarantined: exec of {} blocked in its cgroup; process not ended: {why}", p.comm)
                }
            }
            let note = serde_json::json!({
                "quarantine_id": id, "pid": p.pid, "comm": p.comm, "path": f.path,
                "ended": ended.is_ok(), "why": ended.err(),
            });
            if let Err(e) = guard.note("secrets_process_ended", note) {
                error!(error = %e, "cannot journal the end of a process");
            }
        }
        Ok(outcome) => {
            info!(detector = "secrets", pid = p.pid, comm = %p.comm, outcome = ?outcome, "quarantine requested for a secret reader")
        }
        Err(e) => error!(detector = "secrets", error = %e, "quarantine request failed"),
    }
    crate::guard::sync_metrics(guard, metrics);
}
