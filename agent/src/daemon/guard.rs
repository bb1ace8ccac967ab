//! The guard: control-socket and webhook requests, and kernel enforcement reports,
//! handled by the one task that owns the quarantine engine (and through it the kernel).

use crate::{
    config::Config,
    control::{
        QuarantineRequest,
        reply::{ActionState, Answer, List, ProgramState, Released, Reply, Status},
    },
    detectors::{corosync::status::Cluster, metrics::Metrics},
    kernel::owner::Handle,
    quarantine::{ActionKind, Request as Action, Trigger},
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

fn error(e: impl std::fmt::Display) -> Answer {
    Err(e.to_string())
}

/// The agent-side part of `status` (the run loop adds reboots and the cluster view).
pub fn status(guard: &Guard, config: &Config) -> Status {
    let kernel = guard.backend();
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        mode: config.agent.mode,
        actions: ActionKind::ALL
            .iter()
            .map(|k| ActionState {
                action: k.as_str().into(),
                mode: config.action_mode(*k),
                backend: backend_name(*k, kernel, false).into(),
            })
            .collect(),
        detectors: kernel
            .call(|k| k.statuses().to_vec())
            .iter()
            .map(|s| ProgramState {
                owner: s.spec.detector.into(),
                program: s.spec.name.into(),
                status: s.status.label().into(),
                reason: s.status.reason().to_string(),
            })
            .collect(),
        quarantines_active: guard.active().len(),
        proposals_pending: guard.proposals().len(),
        journal: guard.journal_path(),
        last_reboot: None,
        last_reboot_story: None,
        reboots: Default::default(),
        reboot_allowance: None,
        cluster: Cluster::default(),
    }
}

/// Handle one quarantine request; update metrics from the decisions it produced.
pub fn handle(
    guard: &mut Guard,
    metrics: &Metrics,
    request: QuarantineRequest,
    by: &str,
) -> Answer {
    let now = Now::system();
    let reply = match request {
        QuarantineRequest::List => Ok(Reply::List(List {
            active: guard.active().to_vec(),
            proposals: guard.proposals().to_vec(),
        })),
        QuarantineRequest::Add {
            target,
            ttl_s,
            reason,
        } => {
            let trigger = Trigger {
                source: "manual".into(),
                detail: format!("{by}: {reason}"),
            };
            guard
                .request(
                    Action {
                        target,
                        ttl_s,
                        trigger,
                    },
                    now,
                )
                .map(Reply::Outcome)
                .or_else(error)
        }
        QuarantineRequest::Approve { id } => guard
            .approve(id, by, now)
            .map(Reply::Outcome)
            .or_else(error),
        QuarantineRequest::Release { id } => guard
            .release(id, by)
            .map(|released| Reply::Released(Released { released }))
            .or_else(error),
    };
    metrics.quarantine.sync(guard);
    reply
}

/// A webhook alert turned into a request.
pub fn handle_alert(guard: &mut Guard, metrics: &Metrics, action: Action) -> Answer {
    let reply = guard
        .request(action, Now::system())
        .map(Reply::Outcome)
        .or_else(error);
    metrics.quarantine.sync(guard);
    reply
}
