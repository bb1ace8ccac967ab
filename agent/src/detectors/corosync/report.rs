//! The log line of each finding of this detector (the `report` step of the pipeline).

use tracing::warn;

use super::CorosyncFinding;

/// One structured log line; `detail` is the whole finding as JSON.
pub fn report(f: &CorosyncFinding, detail: &str) {
    let addr = f.addr.map(|a| a.to_string()).unwrap_or_default();
    let msg = match (f.kind, &f.process) {
        ("role_changed", _) => format!(
            "role_changed: this node is now {} (was {}): {}",
            f.role_to.unwrap_or(""),
            f.role_from.unwrap_or(""),
            f.role_reason.as_deref().unwrap_or("")
        ),
        ("corosync_on_standalone", Some(p)) => format!(
            "corosync_on_standalone: {} {}[{}] (uid {}, origin {}){} — {}",
            f.what.unwrap_or(""),
            p.comm,
            p.pid,
            p.uid,
            serde_json::to_string(&p.origin).unwrap_or_default(),
            f.port
                .map(|port| format!(" bound {addr}:{port}"))
                .unwrap_or_default(),
            f.role_reason.as_deref().unwrap_or("")
        ),
        _ => format!(
            "{}: {} ({}) at {} packets/s on {} ({} packets, {} dropped)",
            f.kind,
            addr,
            match (f.member, f.node_id) {
                (Some(true), Some(id)) => format!("member, node {id}"),
                _ => "not in the nodelist".into(),
            },
            f.rate_pps.unwrap_or(0),
            f.interfaces.join(","),
            f.packets.unwrap_or(0),
            f.dropped.unwrap_or(0)
        ),
    };
    let pid = f.process.as_ref().map_or(0, |p| p.pid);
    let origin = f.process.as_ref().map_or("", |p| p.origin.label());
    if f.kind.ends_with("_ended") {
        tracing::info!(target: "nodeward::finding", detector = "corosync", finding = f.kind, address = %addr, detail = %detail, "{msg}");
    } else {
        warn!(target: "nodeward::finding", detector = "corosync", finding = f.kind, address = %addr, pid, origin, interfaces = %f.interfaces.join(","), lineage = %f.lineage.join(" → "), detail = %detail, "{msg}");
    }
}
