//! The engine: safeguards → journal (fsync) → kernel. Owned by one task; the kernel
//! backend is reached only through [`Backend`], so the decision logic is unit-tested
//! with a recording backend and end-to-end with the real kernel.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::{
    journal::Journal,
    policy::{self, RateLimiter},
    state::State,
    types::*,
};
use crate::{
    config::{Config, Mode},
    time::Now,
};

/// Where quarantines take effect.
pub trait Backend {
    /// Why an action could not take effect (journaled with the decision).
    type Error: std::error::Error;
    fn apply(&mut self, q: &Quarantine, expires_boot_ns: u64) -> Result<(), Self::Error>;
    /// Removing what is already gone is not an error.
    fn remove(&mut self, q: &Quarantine) -> Result<(), Self::Error>;
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("audit journal: {0}")]
    Journal(std::io::Error),
    #[error("quarantine state: {0}")]
    State(std::io::Error),
    #[error("no pending proposal with id {0}")]
    NoProposal(u64),
    #[error("no active quarantine with id {0}")]
    NoQuarantine(u64),
}

pub struct Engine<B: Backend> {
    config: Config,
    dir: PathBuf,
    journal: Journal,
    state: State,
    rate: RateLimiter,
    backend: B,
    /// (action, result) of every decision since the last drain, for metrics.
    decisions: Vec<(ActionKind, &'static str)>,
    /// Failed writes since the last drain ("journal" or "state"), for metrics.
    write_errors: Vec<&'static str>,
}

fn target_json(t: &Target) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

impl<B: Backend> Engine<B> {
    /// Open the journal and the persisted state in `agent.state_dir`.
    pub fn open(config: &Config, backend: B) -> Result<Engine<B>, EngineError> {
        let dir = config.agent.state_dir.clone();
        let q = &config.quarantine;
        let journal = Journal::open(&dir, q.journal_max_bytes, q.journal_keep)
            .map_err(EngineError::Journal)?;
        let mut state = State::load(&dir).map_err(EngineError::State)?;
        // Decisions journaled before a crash kept the state file from catching up.
        let records = journal
            .records_after(state.journal_seq)
            .map_err(EngineError::Journal)?;
        let replayed = super::replay::replay(&mut state, &records, journal.seq());
        let mut engine = Engine {
            config: config.clone(),
            dir,
            journal,
            state,
            rate: RateLimiter::default(),
            backend,
            decisions: Vec::new(),
            write_errors: Default::default(),
        };
        if replayed.changed() {
            tracing::warn!(
                added = ?replayed.added,
                removed = ?replayed.removed,
                "quarantine state caught up with the audit journal (the agent stopped between the two)"
            );
            engine.keep_state();
        }
        Ok(engine)
    }

    pub fn set_config(&mut self, config: &Config) {
        self.config = config.clone();
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub fn active(&self) -> &[Quarantine] {
        &self.state.active
    }

    pub fn proposals(&self) -> &[Proposal] {
        &self.state.proposals
    }

    pub fn journal_path(&self) -> PathBuf {
        self.journal.path().to_path_buf()
    }

    /// Decisions since the last call, for metrics.
    pub fn take_decisions(&mut self) -> Vec<(ActionKind, &'static str)> {
        std::mem::take(&mut self.decisions)
    }

    /// Failed journal and state writes since the last call ("journal", "state").
    pub fn take_write_errors(&mut self) -> Vec<&'static str> {
        std::mem::take(&mut self.write_errors)
    }

    fn record(
        &mut self,
        action: ActionKind,
        decision: &str,
        result: &'static str,
        fields: Value,
    ) -> Result<(), EngineError> {
        self.append(decision, fields, Some(action))?;
        self.decisions.push((action, result));
        Ok(())
    }

    /// One journal record (fsync'd); a failed write is counted.
    fn append(
        &mut self,
        decision: &str,
        fields: Value,
        action: Option<ActionKind>,
    ) -> Result<(), EngineError> {
        let mut map = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        if let Some(action) = action {
            map.insert("action".into(), Value::from(action.as_str()));
        }
        if let Err(e) = self.journal.append(decision, map) {
            self.write_errors.push("journal");
            return Err(EngineError::Journal(e));
        }
        Ok(())
    }

    /// The state file, marked with the last journal record it reflects.
    fn save(&mut self) -> Result<(), EngineError> {
        self.state.journal_seq = self.journal.seq();
        if let Err(e) = self.state.save(&self.dir) {
            self.write_errors.push("state");
            return Err(EngineError::State(e));
        }
        Ok(())
    }

    /// The state file after a journaled change. A failed write is counted and logged
    /// but not returned: the journal holds the change and a restart replays it, so the
    /// change stands (the caller is not told it failed when it is in force).
    fn keep_state(&mut self) {
        if let Err(e) = self.save() {
            tracing::warn!(error = %e, "cannot write the quarantine state file; the audit journal holds the change (replayed on restart)");
        }
    }

    fn refuse(
        &mut self,
        req: &Request,
        reason: Refusal,
        detail: String,
    ) -> Result<Outcome, EngineError> {
        self.record(
            req.target.action(),
            "refused",
            reason.result(),
            json!({"target": target_json(&req.target), "reason": reason, "detail": detail, "trigger": req.trigger}),
        )?;
        Ok(Outcome::Refused { reason, detail })
    }

    /// Safeguards that depend on state: duplicates, cap, rate limit.
    fn check_room(&mut self, target: &Target, now: Now, applying: bool) -> policy::Verdict {
        if self.state.active.iter().any(|q| q.target.same_key(target)) {
            return Err((
                Refusal::Duplicate,
                "an identical quarantine is already active".into(),
            ));
        }
        let cap = self.config.quarantine.max_active;
        if applying && self.state.active.len() >= cap {
            return Err((
                Refusal::Cap,
                format!("{cap} quarantines already active (quarantine.max_active)"),
            ));
        }
        if !applying && self.state.proposals.len() >= cap {
            return Err((
                Refusal::Cap,
                format!("{cap} proposals already pending (quarantine.max_active)"),
            ));
        }
        if applying && !self.rate.allows(&self.config.quarantine, now.wall_ms) {
            let q = &self.config.quarantine;
            return Err((
                Refusal::RateLimit,
                format!(
                    "more than {} actions in {}s",
                    q.max_actions,
                    q.window.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// Decide on a request: safeguards, mode, approval; apply if allowed.
    pub fn request(&mut self, req: Request, now: Now) -> Result<Outcome, EngineError> {
        if let Err((reason, detail)) = policy::check_target(&self.config.quarantine, &req.target) {
            return self.refuse(&req, reason, detail);
        }
        let ttl = match policy::ttl(&self.config.quarantine, req.ttl_s) {
            Ok(t) => t,
            Err((reason, detail)) => return self.refuse(&req, reason, detail),
        };
        let action = req.target.action();
        match self.config.action_mode(action) {
            Mode::Observe => {
                let detail = format!(
                    "quarantine.{}.mode (or agent.mode) is observe",
                    action.as_str()
                );
                self.refuse(&req, Refusal::Observe, detail)
            }
            Mode::DryRun => {
                let would = format!(
                    "would {} {} for {}s",
                    verb(action),
                    req.target,
                    ttl.as_secs()
                );
                self.record(
                    action,
                    "dry_run",
                    "dry_run",
                    json!({"target": target_json(&req.target), "ttl_s": ttl.as_secs(), "would": would, "trigger": req.trigger}),
                )?;
                Ok(Outcome::DryRun { would })
            }
            Mode::Enforce => {
                let approval = match action {
                    ActionKind::BlockExec => self.config.quarantine.block_exec.require_approval,
                    ActionKind::DropPackets => self.config.quarantine.drop_packets.require_approval,
                };
                if let Err((reason, detail)) = self.check_room(&req.target, now, !approval) {
                    return self.refuse(&req, reason, detail);
                }
                if approval {
                    self.propose(req, ttl.as_secs(), now)
                } else {
                    self.apply(req.target, req.trigger, ttl.as_secs(), None, now)
                }
            }
        }
    }

    fn propose(&mut self, req: Request, ttl_s: u64, now: Now) -> Result<Outcome, EngineError> {
        let id = self.next_id();
        let expires_ms = now.wall_ms + self.config.quarantine.proposal_ttl.as_millis() as u64;
        let p = Proposal {
            id,
            target: req.target,
            trigger: req.trigger,
            ttl_s,
            proposed_ms: now.wall_ms,
            expires_ms,
        };
        self.record(
            p.target.action(),
            "proposed",
            "proposed",
            json!({"id": id, "target": target_json(&p.target), "ttl_s": ttl_s, "trigger": p.trigger, "proposal_expires_ms": expires_ms}),
        )?;
        self.state.proposals.push(p);
        self.keep_state();
        Ok(Outcome::Proposed { id, expires_ms })
    }

    fn next_id(&mut self) -> u64 {
        let id = self.state.next_id.max(1);
        self.state.next_id = id.saturating_add(1);
        id
    }

    /// Journal first (fsync), then the kernel, then the state file.
    fn apply(
        &mut self,
        target: Target,
        trigger: Trigger,
        ttl_s: u64,
        approved_by: Option<String>,
        now: Now,
    ) -> Result<Outcome, EngineError> {
        let id = self.next_id();
        let expires_ms = now.wall_ms + ttl_s * 1000;
        let q = Quarantine {
            id,
            target,
            trigger,
            applied_ms: now.wall_ms,
            expires_ms,
            approved_by,
        };
        let action = q.target.action();
        self.record(
            action,
            "applied",
            "applied",
            json!({"id": id, "target": target_json(&q.target), "ttl_s": ttl_s, "expires_ms": expires_ms, "trigger": q.trigger, "approved_by": q.approved_by}),
        )?;
        if let Err(error) = self.backend.apply(&q, now.boot_deadline(expires_ms)) {
            let error = error.to_string();
            let recorded = self.record(
                action,
                "failed",
                "failed",
                json!({"id": id, "target": target_json(&q.target), "error": error}),
            );
            // Even when the failure cannot be journaled (a full disk), the state file
            // says "not active" past the `applied` record: a restart does not bring back
            // what the kernel refused.
            self.keep_state();
            recorded?;
            return Ok(Outcome::Failed { id, error });
        }
        self.rate.record(now.wall_ms);
        self.state.active.push(q);
        self.keep_state();
        Ok(Outcome::Applied { id, expires_ms })
    }

    /// A human approves a proposal: every safeguard is checked again, now.
    pub fn approve(&mut self, id: u64, by: &str, now: Now) -> Result<Outcome, EngineError> {
        let Some(pos) = self
            .state
            .proposals
            .iter()
            .position(|p| p.id == id && p.expires_ms > now.wall_ms)
        else {
            return Err(EngineError::NoProposal(id));
        };
        let p = self.state.proposals.remove(pos);
        self.keep_state();
        let req = Request {
            target: p.target.clone(),
            ttl_s: Some(p.ttl_s),
            trigger: p.trigger.clone(),
        };
        if let Err((reason, detail)) = policy::check_target(&self.config.quarantine, &req.target) {
            return self.refuse(&req, reason, detail);
        }
        if self.config.action_mode(p.target.action()) != Mode::Enforce {
            return self.refuse(
                &req,
                Refusal::Observe,
                "the action is no longer in enforce mode".into(),
            );
        }
        if let Err((reason, detail)) = self.check_room(&req.target, now, true) {
            return self.refuse(&req, reason, detail);
        }
        self.record(
            p.target.action(),
            "approved",
            "approved",
            json!({"id": id, "target": target_json(&p.target), "by": by}),
        )?;
        self.apply(p.target, p.trigger, p.ttl_s, Some(by.to_string()), now)
    }

    /// Undo quarantines at once (`None` = all); returns the ids released. Each release
    /// is journaled before the kernel changes: one that cannot be journaled (a full
    /// disk) is not made, nor are the ones after it — they stay in force, and in the
    /// kernel they still end at their TTL.
    pub fn release(&mut self, id: Option<u64>, by: &str) -> Result<Vec<u64>, EngineError> {
        let wanted: Vec<u64> = self
            .state
            .active
            .iter()
            .filter(|q| id.is_none_or(|id| q.id == id))
            .map(|q| q.id)
            .collect();
        if let (Some(id), true) = (id, wanted.is_empty()) {
            return Err(EngineError::NoQuarantine(id));
        }
        let mut ids = Vec::new();
        let mut result = Ok(());
        for qid in wanted {
            let Some(pos) = self.state.active.iter().position(|q| q.id == qid) else {
                continue;
            };
            let q = self.state.active[pos].clone();
            if let Err(e) = self.record(
                q.target.action(),
                "released",
                "released",
                json!({"id": q.id, "target": target_json(&q.target), "by": by}),
            ) {
                result = Err(e);
                break;
            }
            self.state.active.remove(pos);
            ids.push(q.id);
            if let Err(e) = self.backend.remove(&q) {
                // Journaled as released; the kernel entry still ends at its deadline.
                let error = e.to_string();
                tracing::warn!(id = q.id, error = %error, "a released quarantine could not be removed from the kernel; it ends at its TTL there");
                let _ = self.append(
                    "kernel_error",
                    json!({"id": q.id, "target": target_json(&q.target), "error": error}),
                    Some(q.target.action()),
                );
            }
        }
        if !ids.is_empty() {
            self.keep_state();
        }
        result.map(|()| ids)
    }

    /// Record expiries (the kernel already ignores expired entries) and tidy the maps.
    /// An expiry is journaled before it leaves the state; one that cannot be journaled
    /// stays (inert: the kernel ignores it) for the next sweep.
    pub fn sweep(&mut self, now: Now) -> Result<(), EngineError> {
        let mut changed = false;
        let result = loop {
            let Some(pos) = self
                .state
                .active
                .iter()
                .position(|q| q.expires_ms <= now.wall_ms)
            else {
                break Ok(());
            };
            let q = self.state.active[pos].clone();
            if let Err(e) = self.record(
                q.target.action(),
                "expired",
                "expired",
                json!({"id": q.id, "target": target_json(&q.target)}),
            ) {
                break Err(e);
            }
            self.state.active.remove(pos);
            let _ = self.backend.remove(&q);
            changed = true;
        };
        let result = result.and_then(|()| {
            loop {
                let Some(pos) = self
                    .state
                    .proposals
                    .iter()
                    .position(|p| p.expires_ms <= now.wall_ms)
                else {
                    break Ok(());
                };
                let p = &self.state.proposals[pos];
                let (action, fields) = (
                    p.target.action(),
                    json!({"id": p.id, "target": target_json(&p.target), "proposal": true}),
                );
                if let Err(e) = self.record(action, "expired", "expired", fields) {
                    break Err(e);
                }
                self.state.proposals.remove(pos);
                changed = true;
            }
        });
        if changed {
            self.keep_state();
        }
        result
    }

    /// After a restart: put every still-active quarantine back into the kernel,
    /// re-checking the safeguards of the current configuration. A journal or state write
    /// that fails (a full disk) does not stop it: every quarantine is still restored or
    /// released, and the first write error is returned for the caller to report.
    pub fn reconcile(&mut self, now: Now) -> Result<(), EngineError> {
        let mut first_error = self.sweep(now).err();
        let mut note = |r: Result<(), EngineError>| {
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        };
        let active = std::mem::take(&mut self.state.active);
        for q in active {
            let action = q.target.action();
            if q.expires_ms <= now.wall_ms {
                // An expiry the sweep could not journal: inert in the kernel, kept.
                self.state.active.push(q);
                continue;
            }
            if let Err((reason, detail)) = policy::check_target(&self.config.quarantine, &q.target)
            {
                note(self.record(
                    action,
                    "released",
                    "released",
                    json!({"id": q.id, "by": "restart", "reason": reason, "detail": detail}),
                ));
                continue;
            }
            match self.backend.apply(&q, now.boot_deadline(q.expires_ms)) {
                Ok(()) => {
                    note(self.record(action, "restored", "applied", json!({"id": q.id, "target": target_json(&q.target), "expires_ms": q.expires_ms})));
                    self.state.active.push(q);
                }
                Err(error) => {
                    note(self.record(
                        action,
                        "failed",
                        "failed",
                        json!({"id": q.id, "target": target_json(&q.target), "error": error.to_string()}),
                    ));
                }
            }
        }
        if let Err(e) = self.save() {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A journal record that is not a quarantine decision (reboot intents, boots,
    /// allowances): journaled and fsync'd, no decision metric.
    pub fn note(&mut self, decision: &str, fields: Value) -> Result<(), EngineError> {
        self.append(decision, fields, None)
    }

    /// The reboot guard (a standing block_exec policy) killed an exec, or would have.
    pub fn guard_event(&mut self, dry_run: bool, detail: Value) -> Result<(), EngineError> {
        let (decision, result) = if dry_run {
            ("dry_run", "dry_run")
        } else {
            ("enforced", "enforced")
        };
        self.record(
            ActionKind::BlockExec,
            decision,
            result,
            json!({"guard": "reboot", "detail": detail}),
        )
    }

    /// The kernel enforced a quarantine (e.g. killed an exec): record who was stopped.
    pub fn enforced(&mut self, id: u64, detail: Value) -> Result<(), EngineError> {
        let action = self
            .state
            .active
            .iter()
            .find(|q| q.id == id)
            .map(|q| q.target.action())
            .unwrap_or(ActionKind::BlockExec);
        self.record(
            action,
            "enforced",
            "enforced",
            json!({"id": id, "detail": detail}),
        )
    }
}

fn verb(action: ActionKind) -> &'static str {
    match action {
        ActionKind::BlockExec => "kill",
        ActionKind::DropPackets => "drop",
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
