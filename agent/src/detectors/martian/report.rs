//! The log line of each finding of this detector (the `report` step of the pipeline).

use tracing::warn;

use super::MartianFinding;

/// One structured log line; `detail` is the whole finding as JSON.
pub fn report(f: &MartianFinding, detail: &str) {
    let top: Vec<String> = f
        .top_sources
        .iter()
        .map(|(a, n)| format!("{a} ({n})"))
        .collect();
    let msg = format!(
        "{}: {} {} drops on {} within {}s; top sources: {}",
        f.kind,
        f.count,
        f.reason,
        f.interface,
        f.window_s,
        top.join(", ")
    );
    if f.kind == "martian_flood" {
        warn!(target: "nodeward::finding", detector = "martian", finding = f.kind, interface = %f.interface, reason = %f.reason, count = f.count, detail = %detail, "{msg}");
    } else {
        tracing::info!(target: "nodeward::finding", detector = "martian", finding = f.kind, interface = %f.interface, reason = %f.reason, count = f.count, detail = %detail, "{msg}");
    }
}
