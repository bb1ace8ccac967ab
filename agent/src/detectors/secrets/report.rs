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
        match (f.allowed, f.decision) {
            (true, _) => " — allowed reader",
            (_, Some("denied")) => " — DENIED (the open failed with EPERM)",
            (_, Some(_)) => " — would be denied (dry run or notification only)",
            _ => "",
        }
    );
    if f.allowed {
        tracing::info!(target: "nodeward::finding", detector = "secrets", finding = f.kind, path = %f.path, pid = p.pid, comm = %p.comm, origin = p.origin.label(), allowed = true, detail = %detail, "{msg}");
    } else {
        warn!(target: "nodeward::finding", detector = "secrets", finding = f.kind, path = %f.path, pid = p.pid, comm = %p.comm, origin = p.origin.label(), allowed = false, decision = f.decision.unwrap_or("none"), lineage = %f.lineage.join(" → "), detail = %detail, "{msg}");
    }
}
