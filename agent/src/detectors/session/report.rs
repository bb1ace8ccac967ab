//! The log line of each finding of this detector (the `report` step of the pipeline).

use super::SshSession;

/// One structured log line; `detail` is the whole finding as JSON.
pub fn report(s: &SshSession, detail: &str) {
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
