//! The guard: control-socket and webhook requests, and kernel enforcement reports,
//! handled by the one task that owns the quarantine engine (and through it the kernel).

use serde_json::{Value, json};

use crate::{
    config::Config,
    control::Request,
    detectors::metrics::Metrics,
    kernel::owner::Handle,
    quarantine::{ActionKind, Outcome, Request as Action, Trigger},
    time::Now,
};

pub use crate::quarantine::kernel::Guard;

/// Backend that enforces an action kind here (metric `nodeward_enforcement_backend_info`).
pub fn backend_name(kind: ActionKind, kernel: &Handle, lsm_loads: bool) -> &'static str {
    let (lsm, kill) = kernel.call(|k| (k.lsm_exec_attached(), k.exec_guard_attached()));
    match kind {
        // BPF LSM denies in bprm_check_security where the kernel loads it; the
        // sched_process_exec kill is the fallback.
        ActionKind::BlockExec if lsm => {
            let _ = lsm_loads;
            "lsm"
        }
        ActionKind::BlockExec if kill => "sched_exec_kill",
        ActionKind::BlockExec => "none",
        ActionKind::DropPackets => "tc",
    }
}

pub fn outcome_json(o: &Outcome) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("ok".into(), Value::Bool(true));
    }
    v
}

fn error(e: impl std::fmt::Display) -> Value {
    json!({"ok": false, "error": e.to_string()})
}

pub fn status(guard: &Guard, config: &Config) -> Value {
    let kernel = guard.backend();
    json!({
        "ok": true,
        "version": env!("CARGO_PKG_VERSION"),
        "mode": config.agent.mode,
        "actions": ActionKind::ALL.iter().map(|k| json!({
            "action": k.as_str(),
            "mode": config.action_mode(*k),
            "backend": backend_name(*k, kernel, false),
        })).collect::<Vec<_>>(),
        "detectors": kernel.call(|k| k.statuses().to_vec()).iter().map(|s| json!({
            "owner": s.spec.detector, "program": s.spec.name, "status": s.status.label(), "reason": s.status.reason(),
        })).collect::<Vec<_>>(),
        "quarantines_active": guard.active().len(),
        "proposals_pending": guard.proposals().len(),
        "journal": guard.journal_path(),
    })
}

/// Handle one request; update metrics from the decisions it produced.
pub fn handle(
    guard: &mut Guard,
    config: &Config,
    metrics: &Metrics,
    request: Request,
    by: &str,
) -> Value {
    let now = Now::system();
    let reply = match request {
        Request::Status => status(guard, config),
        Request::List => {
            json!({"ok": true, "active": guard.active(), "proposals": guard.proposals()})
        }
        Request::Add {
            target,
            ttl_s,
            reason,
        } => {
            let trigger = Trigger {
                source: "manual".into(),
                detail: format!("{by}: {reason}"),
            };
            match guard.request(
                Action {
                    target,
                    ttl_s,
                    trigger,
                },
                now,
            ) {
                Ok(o) => outcome_json(&o),
                Err(e) => error(e),
            }
        }
        Request::Approve { id } => match guard.approve(id, by, now) {
            Ok(o) => outcome_json(&o),
            Err(e) => error(e),
        },
        Request::Release { id } => match guard.release(id, by) {
            Ok(ids) => json!({"ok": true, "released": ids}),
            Err(e) => error(e),
        },
        Request::AllowReboot { .. } | Request::Bindings { .. } => error("handled by the run loop"),
    };
    metrics.quarantine.sync(guard);
    reply
}

/// A webhook alert turned into a request.
pub fn handle_alert(guard: &mut Guard, metrics: &Metrics, action: Action) -> Value {
    let reply = match guard.request(action, Now::system()) {
        Ok(o) => outcome_json(&o),
        Err(e) => error(e),
    };
    metrics.quarantine.sync(guard);
    reply
}
