//! Crash recovery: the audit journal is written (fsync) before the kernel and the state
//! file change, so after a crash it may hold decisions the state file does not. On
//! start the engine replays the records newer than the state file (`journal_seq`):
//! an `applied` quarantine the state lacks is added (the restart puts it back in the
//! kernel), a `released`/`expired`/`failed` one is removed, proposals likewise, and
//! ids are never reused. Replaying a record the state already reflects changes nothing.

use serde_json::Value;

use super::{
    journal::Record,
    state::State,
    types::{Proposal, Quarantine, Target, Trigger},
};

/// What a replay changed (logged by the engine).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub added: Vec<u64>,
    pub removed: Vec<u64>,
}

impl Replayed {
    pub fn changed(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }
}

fn field<T: serde::de::DeserializeOwned>(r: &Record, name: &str) -> Option<T> {
    serde_json::from_value(r.fields.get(name)?.clone()).ok()
}

/// Apply the records with `seq > state.journal_seq`, in order; `last` is the
/// journal's last sequence number.
pub fn replay(state: &mut State, records: &[Record], last: u64) -> Replayed {
    let mut out = Replayed::default();
    if last < state.journal_seq {
        // The journal was removed or replaced: nothing in it is newer than the state.
        state.journal_seq = last;
        return out;
    }
    let from = state.journal_seq;
    for r in records.iter().filter(|r| r.seq > from) {
        let Some(id) = field::<u64>(r, "id") else {
            continue;
        };
        state.next_id = state.next_id.max(id.saturating_add(1));
        let proposal = r.fields.get("proposal") == Some(&Value::Bool(true));
        match r.decision.as_str() {
            "applied" if !state.active.iter().any(|q| q.id == id) => {
                if let Some(q) = quarantine(r, id) {
                    state.active.push(q);
                    out.added.push(id);
                }
            }
            "proposed" if !state.proposals.iter().any(|p| p.id == id) => {
                if let Some(p) = proposal_of(r, id) {
                    state.proposals.push(p);
                    out.added.push(id);
                }
            }
            "approved" => remove_proposal(state, id, &mut out),
            "expired" if proposal => remove_proposal(state, id, &mut out),
            "released" | "expired" | "failed" => {
                let before = state.active.len();
                state.active.retain(|q| q.id != id);
                if state.active.len() != before {
                    out.removed.push(id);
                }
            }
            _ => {}
        }
    }
    state.journal_seq = last;
    out
}

fn remove_proposal(state: &mut State, id: u64, out: &mut Replayed) {
    let before = state.proposals.len();
    state.proposals.retain(|p| p.id != id);
    if state.proposals.len() != before {
        out.removed.push(id);
    }
}

fn quarantine(r: &Record, id: u64) -> Option<Quarantine> {
    let ttl_s: u64 = field(r, "ttl_s")?;
    let expires_ms: u64 = field(r, "expires_ms")?;
    Some(Quarantine {
        id,
        target: field::<Target>(r, "target")?,
        trigger: field::<Trigger>(r, "trigger")?,
        applied_ms: expires_ms.saturating_sub(ttl_s.saturating_mul(1000)),
        expires_ms,
        approved_by: field(r, "approved_by").flatten(),
    })
}

fn proposal_of(r: &Record, id: u64) -> Option<Proposal> {
    let expires_ms: u64 = field(r, "proposal_expires_ms")?;
    Some(Proposal {
        id,
        target: field::<Target>(r, "target")?,
        trigger: field::<Trigger>(r, "trigger")?,
        ttl_s: field(r, "ttl_s")?,
        proposed_ms: expires_ms,
        expires_ms,
    })
}
