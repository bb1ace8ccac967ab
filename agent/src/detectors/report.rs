//! One structured log line per finding, in each detector's words
//! (`detectors/<id>/report.rs`); correlated incidents are worded here.

use tracing::warn;

use super::{Finding, incident::Incident};

/// One structured log line per finding; `detail` carries the whole finding as JSON.
pub fn report(finding: &Finding) {
    let detail = serde_json::to_string(finding).unwrap_or_default();
    let detail = detail.as_str();
    match finding {
        Finding::RebootIntent(i) => super::reboot::report::report(i, detail),
        Finding::SshSession(s) => super::session::report::report(s, detail),
        Finding::Arp(a) => super::arp::report::report(a, detail),
        Finding::TcpReset(t) => super::tcp_reset::report::report(t, detail),
        Finding::Martian(m) => super::martian::report::report(m, detail),
        Finding::Secret(f) => super::secrets::report::report(f, detail),
        Finding::Corosync(c) => super::corosync::report::report(c, detail),
        Finding::Incident(i) => incident(i, detail),
    }
}

fn incident(i: &Incident, detail: &str) {
    let addr = i.addr.map(|a| a.to_string()).unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(a) = &i.arp {
        parts.push(format!(
            "{} by {} and {}",
            a.kind,
            a.mac,
            a.old_mac.map(|m| m.to_string()).unwrap_or_default()
        ));
    }
    if let Some(m) = &i.martian {
        parts.push(format!("{} {} drops on {}", m.count, m.reason, m.interface));
    }
    if let Some(r) = &i.resets {
        parts.push(format!("{} resets {}", r.count, r.direction.as_str()));
    }
    warn!(target: "nodeward::finding", detector = "incident", finding = i.kind, address = %addr, detail = %detail, "{}: {}: {}", i.kind, addr, parts.join("; "));
}
