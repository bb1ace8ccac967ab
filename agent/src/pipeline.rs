//! Detector pipeline: decoded records from the queue -> detectors -> findings ->
//! metrics and structured log lines.

use std::sync::Arc;

use agent_common::decode::Event;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::{
    config::Config,
    detectors::{DetectorSet, Finding},
    metrics::Metrics,
};

pub async fn run(
    mut queue: mpsc::Receiver<Event>,
    mut config: watch::Receiver<Arc<Config>>,
    metrics: Arc<Metrics>,
    enforced: mpsc::Sender<(u64, serde_json::Value)>,
) {
    let mut detectors = DetectorSet::new(&config.borrow_and_update());
    loop {
        tokio::select! {
            event = queue.recv() => {
                let Some(event) = event else { return };
                if let Event::ExecBlocked(b) = &event {
                    let p = crate::detectors::Process::from(&b.proc);
                    warn!(target: "nodeward::enforced", action = "block_exec", id = b.rule_id, pid = p.pid, ppid = p.ppid, comm = %p.comm, signal_result = b.signal_result, "exec blocked: {}[{}] killed", p.comm, p.pid);
                    let detail = serde_json::json!({"process": p, "signal_result": b.signal_result});
                    let _ = enforced.try_send((b.rule_id, detail));
                }
                for finding in detectors.observe(&event) {
                    metrics.record_finding(&finding);
                    report(&finding);
                }
            }
            changed = config.changed() => {
                if changed.is_err() { return; }
                detectors = DetectorSet::new(&config.borrow_and_update());
            }
        }
    }
}

/// One structured log line per finding; `detail` carries the whole finding as JSON.
pub fn report(finding: &Finding) {
    let detail = serde_json::to_string(finding).unwrap_or_default();
    match finding {
        Finding::SshSession(s) => {
            tracing::info!(
                target: "nodeward::finding",
                detector = "session",
                finding = "ssh_session",
                pid = s.sshd.pid,
                comm = %s.sshd.comm,
                detail = %detail,
                "ssh connection accepted by {}[{}]: {}",
                s.sshd.comm, s.sshd.pid, serde_json::to_string(&s.origin).unwrap_or_default(),
            );
        }
        Finding::RebootIntent(i) => {
            let p = &i.process;
            warn!(
                target: "nodeward::finding",
                detector = "reboot",
                finding = "reboot_intent",
                path = i.path,
                action = i.action.as_str(),
                pid = p.pid,
                ppid = p.ppid,
                uid = p.uid,
                loginuid = p.loginuid.map(i64::from).unwrap_or(-1),
                sessionid = p.sessionid.map(i64::from).unwrap_or(-1),
                comm = %p.comm,
                origin = p.origin.label(),
                command = %i.argv.join(" "),
                detail = %detail,
                "reboot intent: {} via {} by {}[{}]",
                i.action.as_str(), i.path, p.comm, p.pid,
            );
        }
    }
}
