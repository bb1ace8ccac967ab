//! The log line of each finding of this detector (the `report` step of the pipeline).

use tracing::warn;

use super::ResetFinding;

/// One structured log line; `detail` is the whole finding as JSON.
pub fn report(t: &ResetFinding, detail: &str) {
    let msg = format!(
        "{}: {} resets {} {} within {}s",
        t.kind,
        t.count,
        if t.direction.as_str() == "sent" {
            "sent to"
        } else {
            "received from"
        },
        t.peer,
        t.window_s
    );
    if t.kind == "reset_storm" {
        warn!(target: "nodeward::finding", detector = "tcp_reset", finding = t.kind, peer = %t.peer, direction = t.direction.as_str(), count = t.count, detail = %detail, "{msg}");
    } else {
        tracing::info!(target: "nodeward::finding", detector = "tcp_reset", finding = t.kind, peer = %t.peer, direction = t.direction.as_str(), count = t.count, detail = %detail, "{msg}");
    }
}
