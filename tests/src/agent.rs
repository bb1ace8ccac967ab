//! End to end, agent lifecycle: `nodeward check`, health endpoints, SIGHUP reload
//! (good and bad configs), clean shutdown with nothing left in the kernel, systemd's
//! readiness and watchdog notifications.

use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use nodeward_tests::{
    Agent, Stopped, agent_bin, metric, prog_exists, prog_ids_of, stand_in, wait_for,
};

const HELPER: &str = env!("CARGO_BIN_EXE_nodeward-test-helper");

#[test]
fn check_packet_cost_runs_the_packet_program_on_crafted_frames() {
    let Some(bin) = agent_bin("agent::check_packet_cost_runs_the_packet_program_on_crafted_frames")
    else {
        return;
    };
    let out = Command::new(&bin)
        .args(["check", "--packet-cost", "--json"])
        .output()
        .expect("nodeward check --packet-cost");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON rows");
    let frames: Vec<&str> = rows.iter().filter_map(|r| r["frame"].as_str()).collect();
    assert_eq!(
        frames,
        [
            "floor",
            "unrelated",
            "udp_other",
            "cluster",
            "rogue",
            "rogue_lru",
            "arp"
        ]
    );
    for r in &rows {
        assert!(r["ns_median"].as_u64().is_some_and(|n| n > 0), "{r}");
        // Observe mode: every frame passes on to the next program (tcx "next" = -1).
        assert_eq!(r["verdict"], -1, "{r}");
    }
}

/// Per-program cost on demand: the running agent's programs sampled for a window with
/// the kernel's run-time statistics on for that window only (off again after).
#[test]
fn check_program_cost_samples_the_running_agents_programs_on_demand() {
    let name = "agent::check_program_cost_samples_the_running_agents_programs_on_demand";
    let Some(bin) = agent_bin(name) else { return };
    let stats = || std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap();
    let stats_before = stats();
    let agent = Agent::start(&bin, "");
    let mut sampler = Command::new(&bin)
        .args(["check", "--program-cost", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Execs during the window (it opens when the sampler says so), each one run of the
    // exec program.
    let mut stderr = std::io::BufReader::new(sampler.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.starts_with("sampling"), "{line}");
    for _ in 0..20 {
        assert!(Command::new("true").status().unwrap().success());
    }
    let out = sampler.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let runs: u64 = stdout
        .lines()
        .find(|l| l.starts_with("exec_sched "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no exec_sched row:\n{stdout}"));
    assert!(runs >= 20, "{runs} runs for 20 execs:\n{stdout}");
    assert_eq!(stats(), stats_before, "bpf_stats left changed");
    drop(agent);
}

#[test]
fn check_loads_and_attaches_every_enabled_program() {
    let Some(bin) = agent_bin("agent::check_loads_and_attaches_every_enabled_program") else {
        return;
    };
    let out = Command::new(&bin)
        .arg("check")
        .output()
        .expect("nodeward check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("detector reboot: up"), "{stdout}");
    let attached = |prog: &str| {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(prog))
            .unwrap_or_else(|| panic!("{prog} missing:\n{stdout}"));
        line.contains(" attached")
    };
    assert!(attached("exec_sched"), "{stdout}");
    // One route for reboot(2): the capability check, or the syscall tracepoint as its
    // fallback; never both, never neither.
    assert!(
        attached("reboot_capable") != attached("reboot_sys_enter"),
        "{stdout}"
    );
    assert!(
        stdout.contains("route reboot.capability: ")
            && stdout.contains("syscall tracepoints attached: "),
        "{stdout}"
    );
    // Program types are probed by loading: the table says which load here.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("tracepoint") && l.contains("yes")),
        "{stdout}"
    );
    // fentry and tp_btf share the kernel's program type but are probed apart (some
    // kernels take tp_btf and refuse fentry): each has its own row and verdict.
    for t in ["lsm ", "fentry ", "tp_btf "] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(t) && (l.contains(" yes ") || l.contains(" no "))),
            "no verdict for {t}: {stdout}"
        );
    }
}

#[test]
fn health_endpoints_and_clean_shutdown_leave_nothing_behind() {
    let Some(bin) = agent_bin("agent::health_endpoints_and_clean_shutdown_leave_nothing_behind")
    else {
        return;
    };
    let mut agent = Agent::start(&bin, "");
    assert_eq!(agent.get("/healthz").0, 200);
    assert_eq!(agent.get("/readyz").0, 200);
    assert_eq!(agent.get("/nope").0, 404);
    let ids = prog_ids_of(agent.pid);
    assert!(ids.len() >= 2, "agent holds too few programs: {ids:?}");
    assert!(ids.iter().all(|&id| prog_exists(id)));
    let status = agent.stop();
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        agent.raw_output()
    );
    // The agent has exited, but its last lines are read from the pipe by other threads.
    let stopped = wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["message"] == "nodeward stopped")
    });
    assert!(
        stopped.is_some(),
        "no \"nodeward stopped\" line:\n{}",
        agent.raw_output()
    );
    let left: Vec<u32> = wait_for(Duration::from_secs(5), || {
        let left: Vec<u32> = ids.iter().copied().filter(|&id| prog_exists(id)).collect();
        left.is_empty().then_some(left)
    })
    .unwrap_or_else(|| ids.iter().copied().filter(|&id| prog_exists(id)).collect());
    assert!(
        left.is_empty(),
        "programs still loaded after shutdown: {left:?}"
    );
}

#[test]
fn sighup_reloads_the_config_and_keeps_running_on_a_bad_one() {
    let Some(bin) = agent_bin("agent::sighup_reloads_the_config_and_keeps_running_on_a_bad_one")
    else {
        return;
    };
    // A file watched by the secrets detector: reading it is a finding that goes through
    // the same ring buffer and pipeline as the reboot detector's records, in order. It
    // is the sentinel for "the disabled detector reported nothing" (kept in every config).
    let sentinel_dir = tempfile::tempdir().unwrap();
    let sentinel = sentinel_dir.path().join("sentinel-key");
    std::fs::write(&sentinel, b"not a real key").unwrap();
    let watched = format!(
        "[detectors.secrets]\npaths = [\"{}\"]\n",
        sentinel.display()
    );
    let agent = Agent::start(&bin, &watched);
    let (_dir, reboot) = stand_in(HELPER, "reboot");
    let run_standin = || {
        let mut c = Command::new(&reboot)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("stand-in");
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let reloaded = |n: usize| {
        wait_for(Duration::from_secs(10), || {
            (agent
                .logs()
                .iter()
                .filter(|l| l["message"] == "SIGHUP: configuration reloaded")
                .count()
                >= n)
                .then_some(())
        })
    };

    // Disable the detector: its programs detach, it reports down, nothing is seen.
    agent.rewrite_config(&format!("[detectors.reboot]\nenabled = false\n{watched}"));
    agent.signal(libc::SIGHUP);
    reloaded(1).unwrap_or_else(|| panic!("no reload:\n{}", agent.raw_output()));
    let m = agent.metrics();
    assert_eq!(
        metric(&m, "nodeward_detector_up{detector=\"reboot\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            "nodeward_program_attached{detector=\"reboot\",program=\"exec_sched\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "nodeward_config_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    let quiet = run_standin();
    // Sentinel: a secret read after the stand-in has exited. Once its finding is logged,
    // whatever the stand-in's exec and reboot(2) produced has been processed too.
    let sentinel_reader = read_with_cat(&sentinel);
    wait_for(Duration::from_secs(5), || {
        agent.findings_for(&[sentinel_reader]).into_iter().next()
    })
    .unwrap_or_else(|| {
        panic!(
            "the sentinel read (pid {sentinel_reader}) was not reported:\n{}",
            agent.raw_output()
        )
    });
    let reported = agent.findings_for(&[quiet]);
    assert!(
        reported.is_empty(),
        "disabled detector still reported: {reported:?}"
    );

    // A bad config is rejected with the field path; the agent keeps the old one.
    agent.rewrite_config("[detectors.reboot]\nenabeld = true\n");
    agent.signal(libc::SIGHUP);
    let rejected = wait_for(Duration::from_secs(10), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["message"] == "SIGHUP: configuration rejected, keeping the running one")
    })
    .unwrap_or_else(|| panic!("bad config not rejected:\n{}", agent.raw_output()));
    assert!(
        rejected["error"]
            .as_str()
            .unwrap()
            .contains("detectors.reboot.enabeld"),
        "{rejected}"
    );
    // The rejection is logged just before the failure counter moves: poll for it.
    let m = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        (metric(&m, "nodeward_config_reloads_total{result=\"failure\"}") == Some(1.0)).then_some(m)
    })
    .unwrap_or_else(|| agent.metrics());
    assert_eq!(
        metric(&m, "nodeward_config_reloads_total{result=\"failure\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(agent.get("/readyz").0, 200);

    // Re-enable: detection resumes.
    agent.rewrite_config(&format!("[detectors.reboot]\nenabled = true\n{watched}"));
    agent.signal(libc::SIGHUP);
    reloaded(2).unwrap_or_else(|| panic!("no second reload:\n{}", agent.raw_output()));
    assert_eq!(
        metric(
            &agent.metrics(),
            "nodeward_detector_up{detector=\"reboot\"}"
        ),
        Some(1.0)
    );
    let seen = run_standin();
    wait_for(Duration::from_secs(5), || {
        agent.findings_for(&[seen]).into_iter().next()
    })
    .unwrap_or_else(|| panic!("re-enabled detector saw nothing:\n{}", agent.raw_output()));
}

/// Read `path` with `cat` (output discarded); returns cat's PID.
fn read_with_cat(path: &Path) -> u32 {
    let c = Command::new("cat")
        .arg(path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("cat");
    let pid = c.id();
    let out = c.wait_with_output().expect("cat");
    assert!(out.status.success(), "cat {}: {out:?}", path.display());
    pid
}

/// What the agent sends to systemd's notify socket (`NOTIFY_SOCKET`), one message per
/// datagram, until `done` says enough or `limit` passes.
fn notifications(
    sock: &UnixDatagram,
    limit: Duration,
    mut done: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .expect("timeout");
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

/// Does notification `m` carry `state` (e.g. `READY=1`)?
fn says(m: &str, state: &str) -> bool {
    m.lines().any(|l| l == state)
}

/// The WATCHDOG=1 pings in `m` after its first READY=1 (none before it).
fn pings_after_ready(m: &[String]) -> usize {
    let Some(ready) = m.iter().position(|l| says(l, "READY=1")) else {
        return 0;
    };
    m[ready..].iter().filter(|l| says(l, "WATCHDOG=1")).count()
}

#[test]
fn under_systemd_it_reports_ready_and_pings_the_watchdog_while_alive() {
    let Some(bin) =
        agent_bin("agent::under_systemd_it_reports_ready_and_pings_the_watchdog_while_alive")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("notify socket");
    let socket = path.to_str().expect("utf-8 path");
    // The secrets detector holds permission marks on this machine's real keys: a
    // stopped agent would hold their opens. Not needed here.
    let config = "[detectors.secrets]\nenabled = false\n";
    // WatchdogSec=0.4s: a ping every 200 ms once ready.
    let agent = Agent::start_env(
        &bin,
        config,
        &[("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "400000")],
    );
    let got = notifications(&sock, Duration::from_secs(10), |m| {
        pings_after_ready(m) >= 3
    });
    assert!(
        pings_after_ready(&got) >= 3,
        "READY=1 then 3 WATCHDOG=1 expected, got {got:?}:\n{}",
        agent.raw_output()
    );
    // Stopped, as a hung agent: once the kernel says so and what it sent before is
    // read, nothing more comes.
    let stopped = Stopped::new(&agent);
    let _ = notifications(&sock, Duration::from_millis(300), |_| false);
    let quiet = notifications(&sock, Duration::from_secs(1), |_| false);
    assert!(
        !quiet.iter().any(|l| says(l, "WATCHDOG=1")),
        "pings while stopped: {quiet:?}"
    );
    // Resumed: pings come again, spread over time (not only a burst of missed ones).
    // Timed from before SIGCONT: a late test thread only makes the span longer.
    let start = Instant::now();
    drop(stopped);
    let resumed = notifications(&sock, Duration::from_secs(5), |m| {
        m.iter().filter(|l| says(l, "WATCHDOG=1")).count() >= 3
    });
    assert!(
        resumed.iter().filter(|l| says(l, "WATCHDOG=1")).count() >= 3,
        "no pings after SIGCONT: {resumed:?}"
    );
    // Three pings at 200 ms, the first at once after a stall: at least ~400 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "3 pings within {:?} of SIGCONT: a burst",
        start.elapsed()
    );
    drop(agent);

    // A watchdog meant for another process (WATCHDOG_PID) is not this agent's: READY=1,
    // and no ping.
    let agent = Agent::start_env(
        &bin,
        config,
        &[
            ("NOTIFY_SOCKET", socket),
            ("WATCHDOG_USEC", "400000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let got = notifications(&sock, Duration::from_secs(10), |m| {
        m.iter().any(|l| says(l, "READY=1"))
    });
    assert!(
        got.iter().any(|l| says(l, "READY=1")),
        "no READY=1: {got:?}:\n{}",
        agent.raw_output()
    );
    // Five of its intervals: no ping.
    let after = notifications(&sock, Duration::from_secs(1), |_| false);
    assert!(
        !after.iter().any(|l| says(l, "WATCHDOG=1")),
        "pinged another process's watchdog: {after:?}"
    );
}
