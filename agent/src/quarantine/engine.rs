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
use crate::config::{Config, Mode};

/// The two clocks a decision needs: wall time for people and persistence, boot time
/// for kernel expiry (what the eBPF programs compare against).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub wall_ms: u64,
    pub boot_ns: u64,
}

impl Now {
    pub fn system() -> Now {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0);
        Now {
            wall_ms: wall.as_millis() as u64,
            boot_ns: boot,
        }
    }

    /// Boot-clock deadline for a wall-clock expiry.
    pub fn boot_deadline(&self, expires_ms: u64) -> u64 {
        self.boot_ns + expires_ms.saturating_sub(self.wall_ms) * 1_000_000
    }
}

/// Where quarantines take effect.
pub trait Backend {
    fn apply(&mut self, q: &Quarantine, expires_boot_ns: u64) -> Result<(), String>;
    fn remove(&mut self, q: &Quarantine) -> Result<(), String>;
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
        let state = State::load(&dir).map_err(EngineError::State)?;
        Ok(Engine {
            config: config.clone(),
            dir,
            journal,
            state,
            rate: RateLimiter::default(),
            backend,
            decisions: Vec::new(),
        })
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

    fn record(
        &mut self,
        action: ActionKind,
        decision: &str,
        result: &'static str,
        fields: Value,
    ) -> Result<(), EngineError> {
        let mut map = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        map.insert("action".into(), Value::from(action.as_str()));
        self.journal
            .append(decision, map)
            .map_err(EngineError::Journal)?;
        self.decisions.push((action, result));
        Ok(())
    }

    fn save(&self) -> Result<(), EngineError> {
        self.state.save(&self.dir).map_err(EngineError::State)
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
        self.save()?;
        Ok(Outcome::Proposed { id, expires_ms })
    }

    fn next_id(&mut self) -> u64 {
        let id = self.state.next_id.max(1);
        self.state.next_id = id + 1;
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
            self.record(
                action,
                "failed",
                "failed",
                json!({"id": id, "target": target_json(&q.target), "error": error}),
            )?;
            self.save()?;
            return Ok(Outcome::Failed { id, error });
        }
        self.rate.record(now.wall_ms);
        self.state.active.push(q);
        self.save()?;
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
        self.save()?;
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

    /// Undo quarantines at once (`None` = all); returns the ids released.
    pub fn release(&mut self, id: Option<u64>, by: &str) -> Result<Vec<u64>, EngineError> {
        let (gone, keep): (Vec<Quarantine>, Vec<Quarantine>) =
            std::mem::take(&mut self.state.active)
                .into_iter()
                .partition(|q| id.is_none_or(|id| q.id == id));
        self.state.active = keep;
        if let (Some(id), true) = (id, gone.is_empty()) {
            return Err(EngineError::NoQuarantine(id));
        }
        let mut ids = Vec::new();
        for q in gone {
            let removed = self.backend.remove(&q);
            self.record(
                q.target.action(),
                "released",
                "released",
                json!({"id": q.id, "target": target_json(&q.target), "by": by, "kernel_error": removed.err()}),
            )?;
            ids.push(q.id);
        }
        self.save()?;
        Ok(ids)
    }

    /// Record expiries (the kernel already ignores expired entries) and tidy the maps.
    pub fn sweep(&mut self, now: Now) -> Result<(), EngineError> {
        let (expired, keep): (Vec<Quarantine>, Vec<Quarantine>) =
            std::mem::take(&mut self.state.active)
                .into_iter()
                .partition(|q| q.expires_ms <= now.wall_ms);
        self.state.active = keep;
        let (lapsed, pending): (Vec<Proposal>, Vec<Proposal>) =
            std::mem::take(&mut self.state.proposals)
                .into_iter()
                .partition(|p| p.expires_ms <= now.wall_ms);
        self.state.proposals = pending;
        let changed = !expired.is_empty() || !lapsed.is_empty();
        for q in expired {
            let _ = self.backend.remove(&q);
            self.record(
                q.target.action(),
                "expired",
                "expired",
                json!({"id": q.id, "target": target_json(&q.target)}),
            )?;
        }
        for p in lapsed {
            self.record(
                p.target.action(),
                "expired",
                "expired",
                json!({"id": p.id, "target": target_json(&p.target), "proposal": true}),
            )?;
        }
        if changed {
            self.save()?;
        }
        Ok(())
    }

    /// After a restart: put every still-active quarantine back into the kernel,
    /// re-checking the safeguards of the current configuration.
    pub fn reconcile(&mut self, now: Now) -> Result<(), EngineError> {
        self.sweep(now)?;
        let active = std::mem::take(&mut self.state.active);
        for q in active {
            let action = q.target.action();
            if let Err((reason, detail)) = policy::check_target(&self.config.quarantine, &q.target)
            {
                self.record(
                    action,
                    "released",
                    "released",
                    json!({"id": q.id, "by": "restart", "reason": reason, "detail": detail}),
                )?;
                continue;
            }
            match self.backend.apply(&q, now.boot_deadline(q.expires_ms)) {
                Ok(()) => {
                    self.record(action, "restored", "applied", json!({"id": q.id, "target": target_json(&q.target), "expires_ms": q.expires_ms}))?;
                    self.state.active.push(q);
                }
                Err(error) => {
                    self.record(
                        action,
                        "failed",
                        "failed",
                        json!({"id": q.id, "target": target_json(&q.target), "error": error}),
                    )?;
                }
            }
        }
        self.save()
    }

    /// A journal record that is not a quarantine decision (reboot intents, boots,
    /// allowances): journaled and fsync'd, no decision metric.
    pub fn note(&mut self, decision: &str, fields: Value) -> Result<(), EngineError> {
        let map = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.journal
            .append(decision, map)
            .map_err(EngineError::Journal)?;
        Ok(())
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
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::quarantine::journal::{FILE_NAME, read_records};

    #[derive(Default)]
    struct Recorder {
        applied: Vec<(u64, Target, u64)>,
        removed: Vec<u64>,
        fail: bool,
    }

    impl Backend for Recorder {
        fn apply(&mut self, q: &Quarantine, deadline: u64) -> Result<(), String> {
            if self.fail {
                return Err("kernel said no".into());
            }
            self.applied.push((q.id, q.target.clone(), deadline));
            Ok(())
        }
        fn remove(&mut self, q: &Quarantine) -> Result<(), String> {
            self.removed.push(q.id);
            Ok(())
        }
    }

    fn config(dir: &std::path::Path, mode: Mode) -> Config {
        let mut c = Config::default();
        c.agent.state_dir = dir.to_path_buf();
        c.agent.mode = mode;
        c.quarantine.protected_addresses = vec![
            "10.0.0.0/24".parse().unwrap(),
            "fd00::1/128".parse().unwrap(),
        ];
        c.quarantine.protected_macs = vec!["02:00:00:00:00:01".parse().unwrap()];
        c
    }

    fn now(s: u64) -> Now {
        Now {
            wall_ms: 1_000_000 + s * 1000,
            boot_ns: 5_000_000_000 + s * 1_000_000_000,
        }
    }

    fn ip(a: [u8; 4]) -> Request {
        Request {
            target: Target::SourceIp {
                addr: IpAddr::V4(Ipv4Addr::from(a)),
                interfaces: vec!["veth0".into()],
            },
            ttl_s: Some(60),
            trigger: Trigger {
                source: "manual".into(),
                detail: "test".into(),
            },
        }
    }

    fn journal(dir: &std::path::Path) -> Vec<String> {
        read_records(&dir.join(FILE_NAME))
            .unwrap()
            .into_iter()
            .map(|r| r.decision)
            .collect()
    }

    #[test]
    fn enforce_applies_journals_first_and_sets_the_kernel_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = Engine::open(&config(dir.path(), Mode::Enforce), Recorder::default()).unwrap();
        let out = e.request(ip([10, 9, 0, 2]), now(0)).unwrap();
        assert!(matches!(out, Outcome::Applied { id: 1, .. }), "{out:?}");
        assert_eq!(e.backend().applied[0].2, now(0).boot_ns + 60_000_000_000);
        assert_eq!(journal(dir.path()), ["applied"]);
        assert_eq!(e.take_decisions(), [(ActionKind::DropPackets, "applied")]);
    }

    #[test]
    fn observe_and_dry_run_never_touch_the_kernel() {
        for mode in [Mode::Observe, Mode::DryRun] {
            let dir = tempfile::tempdir().unwrap();
            let mut e = Engine::open(&config(dir.path(), mode), Recorder::default()).unwrap();
            let out = e.request(ip([10, 9, 0, 2]), now(0)).unwrap();
            assert!(e.backend().applied.is_empty());
            assert!(e.active().is_empty());
            match mode {
                Mode::Observe => assert_eq!(out.result(), "refused_observe"),
                _ => {
                    assert_eq!(out.result(), "dry_run");
                    assert_eq!(journal(dir.path()), ["dry_run"]);
                }
            }
        }
    }

    /// Property: for any input, a protected target is never applied, in any mode,
    /// through request or approval.
    #[test]
    fn protected_targets_are_never_acted_on_for_any_input() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), Mode::Enforce);
        c.quarantine.max_actions = u32::MAX;
        c.quarantine.max_active = usize::MAX;
        let mut e = Engine::open(&c, Recorder::default()).unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let protected_bins = c.quarantine.block_exec.protected_binaries.clone();
        for i in 0..3000u64 {
            let r = rnd();
            let target = match r % 4 {
                0 => Target::SourceIp {
                    addr: IpAddr::V4(Ipv4Addr::new(
                        10,
                        0,
                        if r & 16 == 0 { 0 } else { 1 },
                        (r >> 8) as u8,
                    )),
                    interfaces: vec!["eth0".into()],
                },
                1 => Target::SourceIp {
                    addr: "fd00::1".parse().unwrap(),
                    interfaces: vec!["eth0".into()],
                },
                2 => {
                    let mut m = [2, 0, 0, 0, 0, 1];
                    if r & 32 != 0 {
                        m[5] = (r >> 16) as u8;
                    }
                    Target::SourceMac {
                        mac: Mac(m),
                        interfaces: vec!["eth0".into()],
                    }
                }
                _ => Target::Exec {
                    binary: protected_bins[(r as usize >> 3) % protected_bins.len()].clone(),
                    cgroup_id: r >> 20,
                    cgroup: None,
                },
            };
            let mut cfg = c.clone();
            cfg.quarantine.drop_packets.require_approval = r & 64 != 0;
            e.set_config(&cfg);
            let req = Request {
                target,
                ttl_s: Some(1 + (r >> 40) % 100),
                trigger: Trigger {
                    source: "fuzz".into(),
                    detail: i.to_string(),
                },
            };
            if let Outcome::Proposed { id, .. } = e.request(req, now(i)).unwrap() {
                e.set_config(&c);
                let _ = e.approve(id, "tester", now(i));
            }
        }
        for (_, t, _) in &e.backend().applied {
            let protected = match t {
                Target::SourceIp { addr, .. } => policy::address_protected(&c.quarantine, *addr),
                Target::SourceMac { mac, .. } => c.quarantine.protected_macs.contains(mac),
                Target::Exec { binary, .. } => protected_bins.contains(binary),
                Target::ArpClaim { .. } => false,
            };
            assert!(!protected, "protected target applied: {t:?}");
        }
        assert!(
            !e.backend().applied.is_empty(),
            "the generator must also produce unprotected targets"
        );
    }

    #[test]
    fn rate_limit_and_cap_hold() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), Mode::Enforce);
        c.quarantine.max_actions = 3;
        c.quarantine.max_active = 5;
        let mut e = Engine::open(&c, Recorder::default()).unwrap();
        let results: Vec<&str> = (0..5u8)
            .map(|i| e.request(ip([10, 9, 1, i]), now(0)).unwrap().result())
            .collect();
        assert_eq!(
            results,
            [
                "applied",
                "applied",
                "applied",
                "refused_rate_limit",
                "refused_rate_limit"
            ]
        );
        // The window passes: room again, until the cap.
        let results: Vec<&str> = (5..9u8)
            .map(|i| e.request(ip([10, 9, 1, i]), now(61)).unwrap().result())
            .collect();
        assert_eq!(
            results,
            ["applied", "applied", "refused_cap", "refused_cap"]
        );
        assert_eq!(e.active().len(), 5);
        assert_eq!(
            e.request(ip([10, 9, 1, 0]), now(200)).unwrap().result(),
            "refused_duplicate"
        );
    }

    #[test]
    fn approval_state_machine() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), Mode::Enforce);
        c.quarantine.drop_packets.require_approval = true;
        let mut e = Engine::open(&c, Recorder::default()).unwrap();
        let Outcome::Proposed { id, .. } = e.request(ip([10, 9, 0, 7]), now(0)).unwrap() else {
            panic!()
        };
        assert!(e.backend().applied.is_empty(), "a proposal is not applied");
        assert!(matches!(
            e.approve(id + 100, "alice", now(1)),
            Err(EngineError::NoProposal(_))
        ));
        let out = e.approve(id, "alice", now(1)).unwrap();
        assert!(matches!(out, Outcome::Applied { .. }), "{out:?}");
        assert_eq!(e.active()[0].approved_by.as_deref(), Some("alice"));
        assert!(
            matches!(
                e.approve(id, "alice", now(2)),
                Err(EngineError::NoProposal(_))
            ),
            "approved once only"
        );
        // A proposal lapses.
        let Outcome::Proposed { id: late, .. } = e.request(ip([10, 9, 0, 8]), now(2)).unwrap()
        else {
            panic!()
        };
        let after = now(2 + c.quarantine.proposal_ttl.as_secs() + 1);
        assert!(matches!(
            e.approve(late, "bob", after),
            Err(EngineError::NoProposal(_))
        ));
        e.sweep(after).unwrap();
        assert!(e.proposals().is_empty());
        assert_eq!(
            journal(dir.path()),
            [
                "proposed", "approved", "applied", "proposed", "expired", "expired"
            ]
        );
    }

    #[test]
    fn release_expire_restart_and_failure() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), Mode::Enforce);
        let mut e = Engine::open(&c, Recorder::default()).unwrap();
        e.request(ip([10, 9, 0, 2]), now(0)).unwrap();
        e.request(ip([10, 9, 0, 3]), now(0)).unwrap();
        drop(e);
        // Restart: the state file brings both back into the kernel.
        let mut e = Engine::open(&c, Recorder::default()).unwrap();
        e.reconcile(now(10)).unwrap();
        assert_eq!(e.backend().applied.len(), 2);
        assert_eq!(
            e.backend().applied[0].2,
            now(10).boot_ns + 50_000_000_000,
            "remaining TTL, on the new boot clock"
        );
        assert_eq!(e.release(Some(1), "alice").unwrap(), [1]);
        assert!(matches!(
            e.release(Some(1), "alice"),
            Err(EngineError::NoQuarantine(1))
        ));
        e.sweep(now(61)).unwrap();
        assert!(e.active().is_empty());
        assert_eq!(e.backend().removed, [1, 2]);
        // A kernel failure is journaled and leaves nothing active.
        let mut e = Engine::open(
            &c,
            Recorder {
                fail: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            e.request(ip([10, 9, 0, 4]), now(70)).unwrap().result(),
            "failed"
        );
        assert!(e.active().is_empty());
        let j = journal(dir.path());
        assert_eq!(&j[j.len() - 2..], ["applied", "failed"]);
    }

    #[test]
    fn release_all_and_ttl_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = Engine::open(&config(dir.path(), Mode::Enforce), Recorder::default()).unwrap();
        for i in 2..5 {
            e.request(ip([10, 9, 0, i]), now(0)).unwrap();
        }
        assert_eq!(e.release(None, "alice").unwrap().len(), 3);
        assert!(e.active().is_empty());
        let mut r = ip([10, 9, 0, 9]);
        r.ttl_s = Some(0);
        assert_eq!(
            e.request(r.clone(), now(1)).unwrap().result(),
            "refused_invalid"
        );
        r.ttl_s = Some(10 * 24 * 3600);
        assert_eq!(e.request(r, now(1)).unwrap().result(), "refused_invalid");
        let unscoped = Request {
            target: Target::Exec {
                binary: "reboot".into(),
                cgroup_id: 0,
                cgroup: None,
            },
            ttl_s: None,
            trigger: Trigger {
                source: "manual".into(),
                detail: String::new(),
            },
        };
        assert_eq!(
            e.request(unscoped, now(1)).unwrap().result(),
            "refused_invalid"
        );
    }
}
