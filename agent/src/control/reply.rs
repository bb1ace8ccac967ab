//! The typed answers of the control socket. On the wire an answer is its body's fields
//! plus `"ok": true`, or `{"ok": false, "error": "..."}`; the CLI reads back the body
//! type of the verb it sent.

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    config::Mode,
    detectors::{
        arp::bindings::Row,
        corosync::status::Cluster,
        reboot::{Allowance, history::LastReboot},
    },
    quarantine::{Outcome, Proposal, Quarantine},
};

/// A successful answer, by verb.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Status(Box<Status>),
    List(List),
    Outcome(Outcome),
    Released(Released),
    Bindings(Bindings),
    RebootAllowed(RebootAllowed),
}

/// `status`: the agent, its programs, quarantines, reboots and the cluster view.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub mode: Mode,
    pub actions: Vec<ActionState>,
    /// One row per eBPF program, under its owner (a detector id or a component).
    pub detectors: Vec<ProgramState>,
    pub quarantines_active: usize,
    pub proposals_pending: usize,
    pub journal: PathBuf,
    #[serde(default)]
    pub last_reboot: Option<LastReboot>,
    #[serde(default)]
    pub last_reboot_story: Option<String>,
    /// "cause/expected" -> count.
    #[serde(default)]
    pub reboots: BTreeMap<String, u64>,
    #[serde(default)]
    pub reboot_allowance: Option<Allowance>,
    pub cluster: Cluster,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActionState {
    pub action: String,
    pub mode: Mode,
    /// The kernel mechanism that enforces it here (`lsm`, `sched_exec_kill`, `tc`, `none`).
    pub backend: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProgramState {
    pub owner: String,
    pub program: String,
    pub status: String,
    pub reason: String,
}

/// `quarantine list`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct List {
    pub active: Vec<Quarantine>,
    pub proposals: Vec<Proposal>,
}

/// `quarantine release`: the ids released.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Released {
    pub released: Vec<u64>,
}

/// `bindings`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bindings {
    pub bindings: Vec<Row>,
}

/// `allow-reboot`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RebootAllowed {
    pub until_ms: u64,
}

/// A request's answer: a reply, or why there is none.
pub type Answer = Result<Reply, String>;

/// One answer as one JSON line.
pub fn encode(answer: &Answer) -> Vec<u8> {
    let mut line = serde_json::to_vec(&to_value(answer)).unwrap_or_default();
    line.push(b'\n');
    line
}

/// One answer as JSON: the body's fields and `"ok"`.
pub fn to_value(answer: &Answer) -> Value {
    let mut value = match answer {
        Ok(reply) => serde_json::to_value(reply).unwrap_or(Value::Null),
        Err(error) => serde_json::json!({ "error": error }),
    };
    if let Value::Object(m) = &mut value {
        m.insert("ok".into(), Value::Bool(answer.is_ok()));
    }
    value
}

/// Why an answer line is not the expected body.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The agent answered, and said no.
    #[error("{0}")]
    Refused(String),
    #[error("bad response from the agent: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// The body of type `T` in an answer line, and the line as JSON (for `--json`).
pub fn decode<T: DeserializeOwned>(line: &str) -> Result<(T, Value), DecodeError> {
    let value: Value = serde_json::from_str(line)?;
    if value["ok"] != Value::Bool(true) {
        return Err(DecodeError::Refused(
            value["error"]
                .as_str()
                .unwrap_or("request failed")
                .to_string(),
        ));
    }
    Ok((serde_json::from_value(value.clone())?, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_through_the_wire_format() {
        let line = encode(&Ok(Reply::Released(Released {
            released: vec![3, 4],
        })));
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.ends_with('\n'));
        let (r, raw): (Released, Value) = decode(text).unwrap();
        assert_eq!(
            (r.released, raw["ok"].clone()),
            (vec![3, 4], Value::Bool(true))
        );

        let line = encode(&Err("no such quarantine".into()));
        let err = decode::<Released>(std::str::from_utf8(&line).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "no such quarantine");

        let outcome = encode(&Ok(Reply::Outcome(Outcome::Applied {
            id: 9,
            expires_ms: 10,
        })));
        let (o, _): (Outcome, Value) = decode(std::str::from_utf8(&outcome).unwrap()).unwrap();
        assert_eq!(
            o,
            Outcome::Applied {
                id: 9,
                expires_ms: 10
            }
        );
        // A body of the wrong verb is an error, not a default.
        assert!(matches!(
            decode::<List>(std::str::from_utf8(&outcome).unwrap()),
            Err(DecodeError::Malformed(_))
        ));
    }
}
