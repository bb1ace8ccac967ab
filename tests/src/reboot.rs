//! End to end, `reboot` detector: the real agent on the real kernel sees reboot(2) with
//! an invalid magic (EINVAL, nothing happens) and the exec of a stand-in `reboot`.
//! Assertions are filtered to the PIDs this test started.

use std::{process::Command, time::Duration};

use nodeward_tests::{Agent, agent_bin, metric, stand_in, wait_for};

const HELPER: &str = env!("CARGO_BIN_EXE_nodeward-test-helper");

#[test]
fn reboot_syscall_and_stand_in_exec_are_reported_with_attribution() {
    let Some(bin) = agent_bin("reboot::reboot_syscall_and_stand_in_exec_are_reported_with_attribution") else {
        return;
    };
    let agent = Agent::start(&bin, "");
    let before = agent.metrics();
    assert_eq!(metric(&before, "nodeward_detector_up{detector=\"reboot\"}"), Some(1.0), "reboot detector down:\n{}", agent.raw_output());
    let syscall_logged_before = agent.count_findings("reboot_intent", "syscall");
    let exec_logged_before = agent.count_findings("reboot_intent", "exec");

    // 1. reboot(2) with an invalid magic2, from a child of this test.
    let out = Command::new(HELPER).arg("bad-reboot").output().expect("run helper");
    assert!(out.status.success(), "helper: reboot(2) did not fail with EINVAL: {out:?}");
    // The helper's PID: the only child we started; find it through the finding itself
    // by its parent (this test process) and comm.
    let me = std::process::id();

    // 2. A stand-in binary named `reboot`, executed from a temp dir.
    let (_dir, reboot) = stand_in(HELPER, "reboot");
    let child = Command::new(&reboot).arg("--force").stdout(std::process::Stdio::null()).spawn().expect("run stand-in");
    let standin_pid = child.id();
    let status = child.wait_with_output().expect("stand-in").status;
    assert!(status.success());

    let syscall = wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "reboot_intent" && l["path"] == "syscall" && l["ppid"].as_u64() == Some(me.into()))
    })
    .unwrap_or_else(|| panic!("no syscall reboot intent from a child of {me}:\n{}", agent.raw_output()));
    let detail: serde_json::Value = serde_json::from_str(syscall["detail"].as_str().unwrap()).unwrap();
    assert_eq!(syscall["action"], "restart");
    assert_eq!(detail["magic_valid"], false, "invalid magic must be reported as such");
    assert_eq!(detail["cmd"], 0x0123_4567);
    assert_eq!(syscall["comm"], "nodeward-test-h", "comm is the helper's (15 bytes)");
    assert_eq!(syscall["uid"], 0);

    let exec = wait_for(Duration::from_secs(5), || agent.findings_for(&[standin_pid]).into_iter().find(|l| l["path"] == "exec"))
        .unwrap_or_else(|| panic!("no exec reboot intent for pid {standin_pid}:\n{}", agent.raw_output()));
    let detail: serde_json::Value = serde_json::from_str(exec["detail"].as_str().unwrap()).unwrap();
    assert_eq!(exec["action"], "restart");
    assert_eq!(exec["comm"], "reboot");
    assert_eq!(exec["ppid"].as_u64(), Some(me.into()), "parent is this test process");
    assert_eq!(detail["filename"], reboot.display().to_string());
    assert_eq!(detail["argv"], serde_json::json!([reboot.display().to_string(), "--force"]));
    // The stand-in itself then calls reboot(2): that is a second, syscall-path intent
    // from the same PID.
    let standin_syscall = wait_for(Duration::from_secs(5), || {
        agent.findings_for(&[standin_pid]).into_iter().find(|l| l["path"] == "syscall")
    });
    assert!(standin_syscall.is_some(), "stand-in's own reboot(2) not reported");

    // Metric deltas equal what the log reported over the same window (host-wide).
    let after = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        let d = |s: &str| metric(&m, s).unwrap_or(0.0) - metric(&before, s).unwrap_or(0.0);
        let syscall_logged = (agent.count_findings("reboot_intent", "syscall") - syscall_logged_before) as f64;
        let exec_logged = (agent.count_findings("reboot_intent", "exec") - exec_logged_before) as f64;
        (d("nodeward_reboot_intents_total{path=\"syscall\"}") == syscall_logged
            && d("nodeward_reboot_intents_total{path=\"exec\"}") == exec_logged
            && syscall_logged >= 2.0
            && exec_logged >= 1.0)
            .then_some(m)
    })
    .unwrap_or_else(|| panic!("metric deltas do not match the findings:\n{}", agent.metrics()));
    assert!(metric(&after, "nodeward_events_total{kind=\"exec\"}").unwrap() >= 1.0);
    assert!(metric(&after, "nodeward_kernel_records_total{kind=\"reboot_syscall\",result=\"submitted\"}").unwrap() >= 2.0);
    assert_eq!(metric(&after, "nodeward_events_lost_total{reason=\"ringbuf_full\"}"), Some(0.0));
}

#[test]
fn failed_exec_attempts_are_not_reported() {
    let Some(bin) = agent_bin("reboot::failed_exec_attempts_are_not_reported") else {
        return;
    };
    let agent = Agent::start(&bin, "");
    // A path that does not exist: execve fails, sched_process_exec never fires.
    let (dir, _) = stand_in(HELPER, "placeholder");
    let missing = dir.path().join("reboot");
    assert!(Command::new(&missing).status().is_err());
    // A real, successful stand-in afterwards proves the agent was watching.
    let (_d2, reboot) = stand_in(HELPER, "reboot");
    let pid = Command::new(&reboot).stdout(std::process::Stdio::null()).spawn().map(|mut c| {
        let id = c.id();
        c.wait().unwrap();
        id
    });
    let pid = pid.expect("stand-in");
    wait_for(Duration::from_secs(5), || agent.findings_for(&[pid]).into_iter().find(|l| l["path"] == "exec"))
        .expect("stand-in exec not reported");
    let bogus = agent.logs().into_iter().filter(|l| l["finding"] == "reboot_intent").filter(|l| {
        l["detail"].as_str().is_some_and(|d| d.contains(&missing.display().to_string()))
    });
    assert_eq!(bogus.count(), 0, "a failed exec was reported");
}
