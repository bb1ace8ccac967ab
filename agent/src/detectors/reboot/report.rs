//! The log line of each finding of this detector (the `report` step of the pipeline).

use tracing::warn;

use super::RebootIntent;

/// One structured log line; `detail` is the whole finding as JSON.
pub fn report(i: &RebootIntent, detail: &str) {
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
        expected = i.expected,
        guard = i.guard.unwrap_or(""),
        command = %i.argv.join(" "),
        lineage = %i.lineage.join(" → "),
        detail = %detail,
        "{} reboot intent: {} via {} by {}[{}] ({}){}",
        if i.expected { "expected" } else { "UNEXPECTED" },
        i.action.as_str(), i.path, p.comm, p.pid, i.because,
        match i.guard { Some("blocked") => " — BLOCKED by the reboot guard", Some(_) => " — the reboot guard would block it (dry run)", None => "" },
    );
}
