//! The log line of each finding of this detector (the `report` step of the pipeline).

use tracing::warn;

use super::SecretFinding;

/// One structured log line; `detail` is the whole finding as JSON.
pub fn report(f: &SecretFinding, detail: &str) {
    let p = &f.process;
    let msg = format!(
        "{}: {} by {}[{}] (uid {}, origin {}){}",
        f.kind,
        f.path,
        p.comm,
        p.pid,
        p.uid,
        serde_json::to_string(&p.origin).unwrap_or_default(),
        if f.allowed { " — allowed reader" } else { "" }
    );
    if f.allowed {
        tracing::info!(target: "nodeward::finding", detector = "secrets", finding = f.kind, path = %f.path, pid = p.pid, comm = %p.comm, origin = p.origin.label(), allowed = true, detail = %detail, "{msg}");
    } else {
        warn!(target: "nodeward::finding", detector = "secrets", finding = f.kind, path = %f.path, pid = p.pid, comm = %p.comm, origin = p.origin.label(), allowed = false, lineage = %f.lineage.join(" → "), detail = %detail, "{msg}");
    }
}
