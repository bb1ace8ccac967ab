//! Faults of the quarantine state (issue 16): a SIGKILL at any point of applying,
//! releasing and expiring quarantines loses and doubles nothing (journal, state file
//! and kernel agree after each restart); a full state disk refuses decisions cleanly
//! while findings are still reported.

use std::{io::Write, path::Path, process::Command, time::Duration};

use nodeward_tests::{Agent, agent_bin, metric, wait_for};

/// A small deterministic generator (xorshift), seeded from the clock and printed so a
/// failing sequence can be replayed with NODEWARD_FAULT_SEED.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("NODEWARD_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("fault sequence seed: NODEWARD_FAULT_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The state file's active quarantines: (id, expires_ms).
fn state_active(agent: &Agent) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(agent.state_dir().join("quarantine.json"))
        .unwrap_or_else(|_| "{\"active\":[]}".into());
    let v: serde_json::Value = serde_json::from_str(&text).expect("state file parses");
    v["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["id"].as_u64().unwrap(), q["expires_ms"].as_u64().unwrap()))
        .collect()
}

/// After a restart: the journal, the state file and the kernel tell one story.
fn check_agreement(agent: &Agent, lan: &nodeward_tests::Lan, round: usize) {
    let active = state_active(agent);
    let journal = agent.journal();
    let mut ids: Vec<u64> = active.iter().map(|a| a.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        active.len(),
        "round {round}: a quarantine doubled: {active:?}"
    );
    let decided = |id: u64, what: &[&str]| {
        journal
            .iter()
            .filter(|r| r["id"].as_u64() == Some(id) && r.get("proposal").is_none())
            .filter(|r| what.contains(&r["decision"].as_str().unwrap_or("")))
            .count()
    };
    let now = now_ms();
    for &(id, expires_ms) in &active {
        assert_eq!(
            decided(id, &["applied"]),
            1,
            "round {round}: id {id} applied once"
        );
        assert_eq!(
            decided(id, &["released", "expired", "failed"]),
            0,
            "round {round}: id {id} is active but the journal ended it"
        );
        assert!(
            expires_ms + 3_000 > now,
            "round {round}: id {id} outlived its TTL by {} ms",
            now - expires_ms
        );
    }
    // Nothing journaled as applied and not yet ended or due is missing from the state.
    for r in journal.iter().filter(|r| r["decision"] == "applied") {
        let id = r["id"].as_u64().unwrap();
        let expires_ms = r["expires_ms"].as_u64().unwrap();
        if decided(id, &["released", "expired", "failed"]) == 0 && expires_ms > now + 1_000 {
            assert!(
                active.iter().any(|a| a.0 == id),
                "round {round}: quarantine {id} lost (journal: applied; state: absent)"
            );
        }
    }
    // The kernel: A's packets are dropped exactly while a quarantine is active (the
    // check is left out near an expiry, when either answer is right).
    let near_expiry = active.iter().any(|a| a.1 < now + 4_000);
    if !near_expiry {
        assert!(
            lan.wait_reach(active.is_empty(), 3),
            "round {round}: kernel disagrees with the state ({} active)",
            active.len()
        );
    }
}

#[test]
fn sigkill_while_quarantines_are_applied_released_and_expiring_loses_and_doubles_nothing() {
    let Some(bin) = agent_bin(
        "faults::state::sigkill_while_quarantines_are_applied_released_and_expiring_loses_and_doubles_nothing",
    ) else {
        return;
    };
    let lan = nodeward_tests::Lan::new();
    let mut agent = Agent::start(
        &bin,
        "agent.mode = \"enforce\"\nquarantine.sweep_interval = \"1s\"\nquarantine.max_actions = 1000\n",
    );
    let mut rng = Rng::new();
    const ROUNDS: usize = 15;
    for round in 0..ROUNDS {
        let active = state_active(&agent);
        let args: Vec<String> = if active.is_empty() || rng.below(3) == 0 {
            let ttl = 2 + rng.below(6);
            [
                "quarantine",
                "add",
                "--drop-ip",
                &lan.ip_a,
                "--interface",
                &lan.port_a,
                "--ttl",
                &format!("{ttl}s"),
                "--reason",
                "fault test",
            ]
            .map(String::from)
            .to_vec()
        } else {
            ["release", "--all"].map(String::from).to_vec()
        };
        let cli = {
            let (bin, config) = (bin.clone(), agent.config_path.clone());
            std::thread::spawn(move || {
                Command::new(bin)
                    .arg("--config")
                    .arg(config)
                    .args(args)
                    .output()
            })
        };
        // Kill at a random point: before, during or after the decision.
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        agent.kill_and_restart();
        let _ = cli.join();
        check_agreement(&agent, &lan, round);
    }
    let journal = agent.journal();
    let applied = journal
        .iter()
        .filter(|r| r["decision"] == "applied")
        .count();
    eprintln!(
        "{ROUNDS} SIGKILLs, {applied} quarantines applied, journal of {} records",
        journal.len()
    );
    assert!(
        applied > 0,
        "no quarantine was ever applied: the test exercised nothing"
    );
}

/// A tmpfs of `size` mounted on `dir` (the test's own directory); unmounted (lazily)
/// when dropped.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn new(dir: &Path, size: &str) -> SmallDisk {
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "nwtest",
            ])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {}", dir.display());
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Fill the filesystem; the filler is removed to free it again.
    fn fill(&self) -> std::path::PathBuf {
        let filler = self.dir.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn a_full_state_disk_refuses_decisions_cleanly_while_findings_are_still_reported() {
    let Some(bin) = agent_bin(
        "faults::state::a_full_state_disk_refuses_decisions_cleanly_while_findings_are_still_reported",
    ) else {
        return;
    };
    let lan = nodeward_tests::Lan::new();
    let mut agent = Agent::start(
        &bin,
        "agent.mode = \"enforce\"\nquarantine.max_actions = 1000\nquarantine.max_active = 1000\n",
    );
    // The state directory becomes a small filesystem of its own.
    agent.stop();
    let state = agent.state_dir();
    let disk = SmallDisk::new(&state, "512k");
    agent.respawn();
    let port = lan.port_a.clone();
    let add_with = move |agent: &Agent, ip: &str| {
        agent.cli(&[
            "quarantine",
            "add",
            "--drop-ip",
            ip,
            "--interface",
            &port,
            "--ttl",
            "1m",
            "--reason",
            "full disk test",
        ])
    };
    let add = |ip: &str| add_with(&agent, ip);
    assert!(
        add("10.213.77.99").status.success(),
        "before the disk is full"
    );
    let filler = disk.fill();

    // Decisions go on while the journal's last page has room; the first one that cannot
    // be journaled is refused with the reason, and nothing of it is applied.
    let mut refused_ip = None;
    for i in 0..200 {
        let ip = format!("10.213.78.{}", i + 1);
        let out = add(&ip);
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        if out.status.success() {
            continue;
        }
        assert!(text.contains("No space left on device"), "{text}");
        if text.contains("audit journal") {
            refused_ip = Some(ip);
            break;
        }
        // The state file could not be written but the journal holds the decision: it
        // is in force (and a restart would replay it).
        assert!(
            agent
                .journal()
                .iter()
                .any(|r| r["decision"] == "applied" && r["target"]["addr"] == ip.as_str()),
            "{ip}: state write failed and the journal lacks the decision"
        );
    }
    let refused_ip = refused_ip.expect("the journal never ran out of space");
    let list =
        String::from_utf8_lossy(&agent.cli(&["quarantine", "list", "--json"]).stdout).to_string();
    assert!(
        !list.contains(&refused_ip),
        "{refused_ip} was applied: {list}"
    );
    assert!(
        !agent
            .journal()
            .iter()
            .any(|r| r["target"]["addr"] == refused_ip.as_str()),
        "{refused_ip} has a journal record"
    );
    let metrics = agent.metrics();
    assert!(
        metric(
            &metrics,
            "nodeward_quarantine_write_errors_total{file=\"journal\"}"
        ) >= Some(1.0),
        "{metrics}"
    );

    // Findings do not depend on the state directory: a reboot(2) attempt is reported.
    let before = agent.count_findings("reboot_intent", "syscall");
    let helper = env!("CARGO_BIN_EXE_nodeward-test-helper");
    assert!(
        Command::new(helper)
            .arg("bad-reboot")
            .status()
            .unwrap()
            .success()
    );
    assert!(
        wait_for(Duration::from_secs(10), || (agent
            .count_findings("reboot_intent", "syscall")
            > before)
            .then_some(()))
        .is_some(),
        "finding not reported while the disk is full"
    );

    // A release that cannot be journaled is not made: refused with the reason, and
    // every quarantine stays listed.
    let listed = |agent: &Agent| {
        let out = agent.cli(&["quarantine", "list", "--json"]);
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut ids: Vec<u64> = v["active"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .filter_map(|q| q["id"].as_u64())
            .collect();
        ids.sort_unstable();
        ids
    };
    let active = listed(&agent);
    assert!(active.len() >= 2);
    // The journal's last page may still hold a release record or two: releases are made
    // while they can be journaled, and the first that cannot is refused with the rest.
    let out = agent.cli(&["release", "--all"]);
    assert!(
        !out.status.success(),
        "every release journaled on a full disk?"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No space left on device"),
        "{out:?}"
    );
    let still = listed(&agent);
    assert!(!still.is_empty(), "a release nobody could journal was made");
    let released: Vec<u64> = agent
        .journal()
        .iter()
        .filter(|r| r["decision"] == "released")
        .filter_map(|r| r["id"].as_u64())
        .collect();
    for id in &active {
        assert_eq!(
            still.contains(id),
            !released.contains(id),
            "quarantine {id}: listed {} but journaled released {}",
            still.contains(id),
            released.contains(id)
        );
    }
    // A restart on the full disk: the agent comes up and restores every quarantine.
    agent.kill_and_restart();
    assert_eq!(
        listed(&agent),
        still,
        "quarantines lost in a restart on a full disk"
    );

    // Space again: every journal line is a whole record, and decisions work again.
    std::fs::remove_file(filler).unwrap();
    assert!(add_with(&agent, &lan.ip_a).status.success());
    assert!(
        lan.wait_reach(false, 5),
        "quarantine not applied once there is space"
    );
    let text = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    for line in text.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "torn record: {line:?}"
        );
    }
    let seqs: Vec<u64> = agent
        .journal()
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] + 1 == w[1]),
        "sequence has gaps or repeats: {seqs:?}"
    );
    let out = agent.cli(&["release", "--all"]);
    assert!(out.status.success(), "{out:?}");
}
