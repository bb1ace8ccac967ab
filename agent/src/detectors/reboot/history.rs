//! Reboots across agent restarts: the kernel boot id is recorded in the state
//! directory; when it has changed at start-up, the previous boot ended, and its cause
//! is the last reboot intent journaled during that boot (or `unknown`: power loss,
//! panic, or a path nodeward cannot see).

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::quarantine::journal;

pub const FILE_NAME: &str = "boot.json";
/// Values of the `cause` label of `nodeward_reboots_total`.
pub const CAUSES: &[&str] = &["ssh", "local", "service", "unknown"];
/// Test seam: read the boot id from this file instead of the kernel's.
pub const BOOT_ID_ENV: &str = "NODEWARD_BOOT_ID_FILE";
const KERNEL_BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The last reboot, as reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LastReboot {
    pub previous_boot_id: String,
    /// ssh, local, service or unknown.
    pub cause: String,
    /// true, false or unknown.
    pub expected: String,
    /// SSH peer address, or empty.
    pub source: String,
    /// The journaled intent (the whole finding), if there was one.
    #[serde(default)]
    pub intent: Option<Value>,
    /// When the intent was journaled (RFC 3339), empty without one.
    #[serde(default)]
    pub intent_time: String,
    /// When the agent noticed (RFC 3339).
    pub noticed: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub boot_id: String,
    /// "cause/expected" -> count.
    pub reboots: BTreeMap<String, u64>,
    pub last: Option<LastReboot>,
}

pub fn boot_id() -> io::Result<String> {
    let path = std::env::var_os(BOOT_ID_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(KERNEL_BOOT_ID));
    Ok(fs::read_to_string(path)?.trim().to_string())
}

fn load(dir: &Path) -> io::Result<Option<History>> {
    match fs::read(dir.join(FILE_NAME)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn save(dir: &Path, h: &History) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    fs::write(
        &tmp,
        serde_json::to_vec_pretty(h).map_err(io::Error::other)?,
    )?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, dir.join(FILE_NAME))?;
    fs::File::open(dir)?.sync_all()
}

/// The last `reboot_intent` journaled during boot `boot_id`, from all kept journal files.
fn last_intent(dir: &Path, keep: usize, boot_id: &str) -> Option<journal::Record> {
    journal::files(dir, keep)
        .iter()
        .flat_map(|f| journal::read_records(f).unwrap_or_default())
        .rfind(|r| {
            r.decision == "reboot_intent"
                && r.fields.get("boot_id").and_then(Value::as_str) == Some(boot_id)
        })
}

/// Compare the boot id with the recorded one; when it changed, work out how the
/// previous boot ended. Returns the history (saved) and the new last reboot, if any.
pub fn check(dir: &Path, keep: usize, current: &str) -> io::Result<(History, Option<LastReboot>)> {
    fs::create_dir_all(dir)?;
    let mut h = load(dir)?.unwrap_or_default();
    let mut new = None;
    if !h.boot_id.is_empty() && h.boot_id != current {
        let intent = last_intent(dir, keep, &h.boot_id);
        let field = |k: &str| {
            intent
                .as_ref()
                .and_then(|r| r.fields.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let last = match &intent {
            Some(r) => LastReboot {
                previous_boot_id: h.boot_id.clone(),
                cause: field("origin"),
                expected: r
                    .fields
                    .get("expected")
                    .and_then(Value::as_bool)
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                source: field("source"),
                intent: r.fields.get("intent").cloned(),
                intent_time: r.time.clone(),
                noticed: crate::time::now_rfc3339(),
            },
            None => LastReboot {
                previous_boot_id: h.boot_id.clone(),
                cause: "unknown".into(),
                expected: "unknown".into(),
                source: String::new(),
                intent: None,
                intent_time: String::new(),
                noticed: crate::time::now_rfc3339(),
            },
        };
        *h.reboots
            .entry(format!("{}/{}", last.cause, last.expected))
            .or_default() += 1;
        h.last = Some(last.clone());
        new = Some(last);
    }
    h.boot_id = current.to_string();
    save(dir, &h)?;
    Ok((h, new))
}

/// One human sentence for `nodeward status` and the log.
pub fn story(last: &LastReboot) -> String {
    let expected = match last.expected.as_str() {
        "true" => "expected",
        "false" => "UNEXPECTED",
        _ => "unexplained",
    };
    match &last.intent {
        None => format!(
            "{expected} reboot: no intent was recorded before it (power loss, panic, or a path nodeward does not see)"
        ),
        Some(i) => {
            let p = &i["process"];
            let o = &p["origin"];
            let from = match o["kind"].as_str() {
                Some("ssh") => format!(
                    "over SSH from {}:{} (local port {}, sshd {})",
                    o["peer"].as_str().unwrap_or("?"),
                    o["peer_port"],
                    o["local_port"],
                    o["sshd_pid"]
                ),
                Some(k) => format!("from a {k} origin"),
                None => "from an unknown origin".into(),
            };
            let cmd: Vec<&str> = i["argv"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "{expected} {} requested {from} by uid {} (login uid {}, session {}), command `{}` via {}, {}[{}] child of {}; {}",
                i["action"].as_str().unwrap_or("reboot"),
                p["uid"],
                p["loginuid"],
                p["sessionid"],
                if cmd.is_empty() {
                    "reboot(2)".to_string()
                } else {
                    cmd.join(" ")
                },
                i["path"].as_str().unwrap_or("?"),
                p["comm"].as_str().unwrap_or("?"),
                p["pid"],
                p["ppid"],
                i["because"].as_str().unwrap_or(""),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(dir: &Path, boot: &str, origin: &str, expected: bool) {
        let mut j = journal::Journal::open(dir, 1 << 20, 2).unwrap();
        let mut m = serde_json::Map::new();
        m.insert("boot_id".into(), boot.into());
        m.insert("origin".into(), origin.into());
        m.insert("expected".into(), expected.into());
        m.insert("source".into(), "100.64.0.18".into());
        m.insert("intent".into(), serde_json::json!({"action": "restart", "path": "exec", "argv": ["reboot"], "process": {"pid": 9, "origin": {"kind": "ssh", "peer": "100.64.0.18"}}}));
        j.append("reboot_intent", m).unwrap();
    }

    #[test]
    fn boot_id_change_reports_the_last_intent_of_the_previous_boot() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            check(dir.path(), 2, "A").unwrap().1,
            None,
            "first start: nothing to report"
        );
        intent(dir.path(), "A", "local", true);
        intent(dir.path(), "A", "ssh", false);
        assert_eq!(
            check(dir.path(), 2, "A").unwrap().1,
            None,
            "same boot: agent restart only"
        );
        let (h, last) = check(dir.path(), 2, "B").unwrap();
        let last = last.unwrap();
        assert_eq!(
            (
                last.cause.as_str(),
                last.expected.as_str(),
                last.source.as_str()
            ),
            ("ssh", "false", "100.64.0.18")
        );
        assert_eq!(h.reboots.get("ssh/false"), Some(&1));
        assert!(
            story(&last).contains("UNEXPECTED restart requested over SSH from 100.64.0.18"),
            "{}",
            story(&last)
        );
        // Boot B recorded no intent: its end is unknown.
        let (h, last) = check(dir.path(), 2, "C").unwrap();
        assert_eq!(last.unwrap().cause, "unknown");
        assert_eq!(h.reboots.get("unknown/unknown"), Some(&1));
        assert_eq!(h.reboots.get("ssh/false"), Some(&1), "counts persist");
    }
}
