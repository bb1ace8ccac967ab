//! Unit tests of the quarantine engine (decision logic, with a recording backend).
use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::net::Mac;
use crate::quarantine::journal::{FILE_NAME, read_records};

#[derive(Default)]
struct Recorder {
    applied: Vec<(u64, Target, u64)>,
    removed: Vec<u64>,
    fail: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("kernel said no")]
struct Refused;

impl Backend for Recorder {
    type Error = Refused;
    fn apply(&mut self, q: &Quarantine, deadline: u64) -> Result<(), Refused> {
        if self.fail {
            return Err(Refused);
        }
        self.applied.push((q.id, q.target.clone(), deadline));
        Ok(())
    }
    fn remove(&mut self, q: &Quarantine) -> Result<(), Refused> {
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
            Target::SourceIp { addr, .. } | Target::ClusterSource { addr, .. } => {
                policy::address_protected(&c.quarantine, *addr)
            }
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
    let Outcome::Proposed { id: late, .. } = e.request(ip([10, 9, 0, 8]), now(2)).unwrap() else {
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

/// A crash between the journal's fsync and the state file's rename: the state file is
/// put back as it was before the decision, and the engine opened again.
fn crash_after_journal(dir: &std::path::Path, decide: impl FnOnce(&mut Engine<Recorder>)) {
    let c = config(dir, Mode::Enforce);
    let mut e = Engine::open(&c, Recorder::default()).unwrap();
    let before = std::fs::read(crate::quarantine::state::path(dir)).ok();
    decide(&mut e);
    drop(e);
    match before {
        Some(b) => std::fs::write(crate::quarantine::state::path(dir), b).unwrap(),
        None => std::fs::remove_file(crate::quarantine::state::path(dir)).unwrap(),
    }
}

#[test]
fn decisions_journaled_before_a_crash_are_neither_lost_nor_doubled_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), Mode::Enforce);

    // Applied, then the agent died before the state file: the quarantine is kept.
    crash_after_journal(dir.path(), |e| {
        e.request(ip([10, 9, 0, 2]), now(0)).unwrap();
    });
    let mut e = Engine::open(&c, Recorder::default()).unwrap();
    assert_eq!(e.active().iter().map(|q| q.id).collect::<Vec<_>>(), [1]);
    e.reconcile(now(1)).unwrap();
    assert_eq!(e.backend().applied.len(), 1, "put back into the kernel");
    // Its id is not reused.
    let out = e.request(ip([10, 9, 0, 3]), now(2)).unwrap();
    assert!(matches!(out, Outcome::Applied { id: 2, .. }), "{out:?}");
    drop(e);

    // Released, then the agent died before the state file: it stays released.
    crash_after_journal(dir.path(), |e| {
        assert_eq!(e.release(Some(1), "test").unwrap(), [1]);
    });
    // Expired, then the agent died before the state file: expired once, not twice.
    crash_after_journal(dir.path(), |e| e.sweep(now(63)).unwrap());
    let mut e = Engine::open(&c, Recorder::default()).unwrap();
    assert!(e.active().is_empty(), "{:?}", e.active());
    e.reconcile(now(64)).unwrap();
    let decisions = journal(dir.path());
    assert_eq!(
        decisions,
        ["applied", "restored", "applied", "released", "expired"],
        "no decision doubled"
    );
}

#[test]
fn a_state_file_newer_than_a_removed_journal_is_kept_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), Mode::Enforce);
    let mut e = Engine::open(&c, Recorder::default()).unwrap();
    e.request(ip([10, 9, 0, 2]), now(0)).unwrap();
    drop(e);
    std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
    let mut e = Engine::open(&c, Recorder::default()).unwrap();
    assert_eq!(e.active().len(), 1);
    // New records start again at 1 and are replayed after a later crash.
    e.release(Some(1), "test").unwrap();
    assert!(e.active().is_empty());
}

fn applied_three(dir: &std::path::Path) -> Engine<Recorder> {
    let mut e = Engine::open(&config(dir, Mode::Enforce), Recorder::default()).unwrap();
    for last in 2..5 {
        e.request(ip([10, 9, 1, last]), now(0)).unwrap();
    }
    e
}

#[test]
fn a_release_that_cannot_be_journaled_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = applied_three(dir.path());
    let before = journal(dir.path());
    e.journal.disk_full();
    assert!(matches!(
        e.release(None, "alice"),
        Err(EngineError::Journal(_))
    ));
    // Nothing left the state or the kernel, and the journal has no torn or extra record.
    assert_eq!(e.active().len(), 3);
    assert!(e.backend().removed.is_empty());
    assert_eq!(journal(dir.path()), before);
    assert_eq!(e.take_write_errors(), ["journal"]);
    // Space again: the release goes through, journaled first.
    e.journal.disk_freed();
    assert_eq!(e.release(None, "alice").unwrap(), [1, 2, 3]);
    assert_eq!(e.backend().removed, [1, 2, 3]);
    assert!(e.active().is_empty());
    let j = journal(dir.path());
    assert_eq!(&j[j.len() - 3..], ["released"; 3]);
}

#[test]
fn an_expiry_that_cannot_be_journaled_waits_for_the_next_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = applied_three(dir.path());
    e.journal.disk_full();
    assert!(e.sweep(now(61)).is_err());
    assert_eq!(e.active().len(), 3, "expired but not journaled: kept");
    assert!(e.backend().removed.is_empty());
    e.journal.disk_freed();
    e.sweep(now(62)).unwrap();
    assert!(e.active().is_empty());
    let j = journal(dir.path());
    assert_eq!(&j[j.len() - 3..], ["expired"; 3]);
    // Reopened: nothing comes back.
    drop(e);
    let mut e = Engine::open(&config(dir.path(), Mode::Enforce), Recorder::default()).unwrap();
    e.reconcile(now(63)).unwrap();
    assert!(e.active().is_empty() && e.backend().applied.is_empty());
}

#[test]
fn a_restart_on_a_full_disk_restores_every_quarantine_and_reports_the_write_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(applied_three(dir.path()));
    let mut e = Engine::open(&config(dir.path(), Mode::Enforce), Recorder::default()).unwrap();
    e.journal.disk_full();
    assert!(matches!(e.reconcile(now(10)), Err(EngineError::Journal(_))));
    assert_eq!(e.active().len(), 3);
    let ids: Vec<u64> = e.backend().applied.iter().map(|a| a.0).collect();
    assert_eq!(ids, [1, 2, 3], "every quarantine back in the kernel");
}

#[test]
fn a_state_file_that_cannot_be_written_does_not_undo_an_applied_decision() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), Mode::Enforce);
    let mut e = Engine::open(&c, Recorder::default()).unwrap();
    // A state directory below a regular file: every write fails (ENOTDIR).
    std::fs::write(dir.path().join("file"), "").unwrap();
    e.dir = dir.path().join("file/state");
    // In force (journaled, in the kernel): the caller hears "applied", the failed state
    // write is counted.
    assert_eq!(
        e.request(ip([10, 9, 2, 2]), now(0)).unwrap().result(),
        "applied"
    );
    assert_eq!(e.take_write_errors(), ["state"]);
    assert_eq!(e.backend().applied.len(), 1);
    drop(e);
    // The journal holds it: a restart replays it.
    let mut e = Engine::open(&c, Recorder::default()).unwrap();
    e.reconcile(now(1)).unwrap();
    assert_eq!(e.active().len(), 1);
}
