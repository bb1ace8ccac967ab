//! End to end, `reboot` detector: the real agent on the real kernel sees reboot(2) with
//! an invalid magic (EINVAL, nothing happens) and the exec of a stand-in `reboot`.
//! Assertions are filtered to the PIDs this test started.

use std::{process::Command, time::Duration};

use nodeward_tests::{Agent, agent_bin, metric, metric_sum, stand_in, wait_for};

const HELPER: &str = env!("CARGO_BIN_EXE_nodeward-test-helper");

#[path = "reboot/guard.rs"]
mod guard;

/// Default route: reboot(2) seen at its CAP_SYS_BOOT check (no syscall tracepoint).
#[test]
fn reboot_syscall_and_stand_in_exec_are_reported_with_attribution() {
    syscall_and_exec(
        "reboot::reboot_syscall_and_stand_in_exec_are_reported_with_attribution",
        "",
    );
}

/// The fallback route, forced: the same through the reboot syscall tracepoint.
#[test]
fn reboot_syscall_and_exec_are_reported_on_the_forced_tracepoint_route() {
    syscall_and_exec(
        "reboot::reboot_syscall_and_exec_are_reported_on_the_forced_tracepoint_route",
        "[detectors.reboot]\nroute = \"tracepoint\"\n",
    );
}

fn syscall_and_exec(name: &str, config: &str) {
    let Some(bin) = agent_bin(name) else {
        return;
    };
    let agent = Agent::start(&bin, config);
    // The route asked for is the route in use.
    let text = agent.check();
    let forced = config.contains("tracepoint");
    assert_eq!(
        text.contains("route reboot.capability: FALLBACK"),
        forced,
        "route in use:\n{text}"
    );
    let before = agent.metrics();
    assert_eq!(
        metric(&before, "nodeward_detector_up{detector=\"reboot\"}"),
        Some(1.0),
        "reboot detector down:\n{}",
        agent.raw_output()
    );
    let syscall_logged_before = agent.count_findings("reboot_intent", "syscall");
    let exec_logged_before = agent.count_findings("reboot_intent", "exec");

    // 1. reboot(2) with an invalid magic2, from a child of this test.
    let out = Command::new(HELPER)
        .arg("bad-reboot")
        .output()
        .expect("run helper");
    assert!(
        out.status.success(),
        "helper: reboot(2) did not fail with EINVAL: {out:?}"
    );
    // The helper's PID: the only child we started; find it through the finding itself
    // by its parent (this test process) and comm.
    let me = std::process::id();

    // 2. A stand-in binary named `reboot`, executed from a temp dir.
    let (_dir, reboot) = stand_in(HELPER, "reboot");
    let child = Command::new(&reboot)
        .arg("--force")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run stand-in");
    let standin_pid = child.id();
    let status = child.wait_with_output().expect("stand-in").status;
    assert!(status.success());

    let syscall = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["finding"] == "reboot_intent"
                && l["path"] == "syscall"
                && l["ppid"].as_u64() == Some(me.into())
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no syscall reboot intent from a child of {me}:\n{}",
            agent.raw_output()
        )
    });
    let detail: serde_json::Value =
        serde_json::from_str(syscall["detail"].as_str().unwrap()).unwrap();
    assert_eq!(syscall["action"], "restart");
    assert_eq!(
        detail["magic_valid"], false,
        "invalid magic must be reported as such"
    );
    assert_eq!(detail["cmd"], 0x0123_4567);
    assert_eq!(
        syscall["comm"], "nodeward-test-h",
        "comm is the helper's (15 bytes)"
    );
    assert_eq!(syscall["uid"], 0);

    let exec = wait_for(Duration::from_secs(5), || {
        agent
            .findings_for(&[standin_pid])
            .into_iter()
            .find(|l| l["path"] == "exec")
    })
    .unwrap_or_else(|| {
        panic!(
            "no exec reboot intent for pid {standin_pid}:\n{}",
            agent.raw_output()
        )
    });
    let detail: serde_json::Value = serde_json::from_str(exec["detail"].as_str().unwrap()).unwrap();
    assert_eq!(exec["action"], "restart");
    assert_eq!(exec["comm"], "reboot");
    assert_eq!(
        exec["ppid"].as_u64(),
        Some(me.into()),
        "parent is this test process"
    );
    assert_eq!(detail["filename"], reboot.display().to_string());
    assert_eq!(
        detail["argv"],
        serde_json::json!([reboot.display().to_string(), "--force"])
    );
    // The stand-in itself then calls reboot(2): that is a second, syscall-path intent
    // from the same PID.
    let standin_syscall = wait_for(Duration::from_secs(5), || {
        agent
            .findings_for(&[standin_pid])
            .into_iter()
            .find(|l| l["path"] == "syscall")
    });
    assert!(
        standin_syscall.is_some(),
        "stand-in's own reboot(2) not reported"
    );

    // Metric deltas equal what the log reported over the same window (host-wide).
    let after = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        let d = |path: &str| {
            metric_sum(&m, "nodeward_reboot_intents_total", &[("path", path)])
                - metric_sum(&before, "nodeward_reboot_intents_total", &[("path", path)])
        };
        let syscall_logged =
            (agent.count_findings("reboot_intent", "syscall") - syscall_logged_before) as f64;
        let exec_logged =
            (agent.count_findings("reboot_intent", "exec") - exec_logged_before) as f64;
        (d("syscall") == syscall_logged
            && d("exec") == exec_logged
            && syscall_logged >= 2.0
            && exec_logged >= 1.0)
            .then_some(m)
    })
    .unwrap_or_else(|| {
        panic!(
            "metric deltas do not match the findings:\n{}",
            agent.metrics()
        )
    });
    assert!(metric(&after, "nodeward_events_total{kind=\"exec\"}").unwrap() >= 1.0);
    assert!(
        metric(
            &after,
            "nodeward_kernel_records_total{kind=\"reboot_syscall\",result=\"submitted\"}"
        )
        .unwrap()
            >= 2.0
    );
    assert_eq!(
        metric(
            &after,
            "nodeward_events_lost_total{reason=\"ringbuf_full\"}"
        ),
        Some(0.0)
    );
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
    let pid = Command::new(&reboot)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map(|mut c| {
            let id = c.id();
            c.wait().unwrap();
            id
        });
    let pid = pid.expect("stand-in");
    wait_for(Duration::from_secs(5), || {
        agent
            .findings_for(&[pid])
            .into_iter()
            .find(|l| l["path"] == "exec")
    })
    .expect("stand-in exec not reported");
    let bogus = agent
        .logs()
        .into_iter()
        .filter(|l| l["finding"] == "reboot_intent")
        .filter(|l| {
            l["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&missing.display().to_string()))
        });
    assert_eq!(bogus.count(), 0, "a failed exec was reported");
}

// ---- Remote root reboots over a real sshd (issue: orchestrator rebooted the workstation)

use nodeward_tests::{Lan, SshLab, detail, skip};

fn lab(name: &str, lan: &Lan) -> Option<SshLab> {
    match SshLab::new(lan, HELPER) {
        Ok(l) => Some(l),
        Err(why) => {
            skip(name, &why);
            None
        }
    }
}

/// The exec intent of the stand-in `reboot` reached over SSH from `peer`.
fn ssh_exec_intent(agent: &Agent, peer: &str, after: usize) -> serde_json::Value {
    wait_for(Duration::from_secs(8), || {
        agent
            .logs()
            .into_iter()
            .filter(|l| {
                l["finding"] == "reboot_intent" && l["path"] == "exec" && l["origin"] == "ssh"
            })
            .skip(after)
            .find(|l| l["detail"].as_str().is_some_and(|d| d.contains(peer)))
    })
    .unwrap_or_else(|| panic!("no SSH reboot intent from {peer}:\n{}", agent.raw_output()))
}

#[test]
fn ssh_root_reboot_is_unexpected_and_fully_attributed() {
    let name = "reboot::ssh_root_reboot_is_unexpected_and_fully_attributed";
    let Some(bin) = agent_bin(name) else { return };
    let lan = Lan::new();
    let Some(lab) = lab(name, &lan) else { return };
    let agent = Agent::start(&bin, "");
    let marker = lab.marker("ran");
    let out = lab.ssh(&format!("NODEWARD_TEST_MARKER={} reboot", marker.display()));
    assert!(out.status.success(), "{out:?}");
    assert!(
        marker.exists(),
        "the stand-in did not run (not a protected host: it must)"
    );

    let line = ssh_exec_intent(&agent, &lan.ip_a, 0);
    let d = detail(&line);
    let o = &d["process"]["origin"];
    assert_eq!(o["kind"], "ssh");
    assert_eq!(o["peer"], lan.ip_a.as_str());
    assert_eq!(o["local_port"], nodeward_tests::SSH_PORT);
    // The peer port is the one sshd itself logged for this login.
    let ports = lab.accepted_ports();
    assert!(
        ports.contains(&(o["peer_port"].as_u64().unwrap() as u16)),
        "peer port {} not in sshd's log {ports:?}",
        o["peer_port"]
    );
    assert_eq!(d["process"]["loginuid"], 0, "login uid of a root SSH login");
    assert!(
        d["process"]["sessionid"].as_u64().is_some_and(|s| s > 0),
        "audit session id: {}",
        d["process"]
    );
    assert_eq!(d["argv"], serde_json::json!(["reboot"]));
    assert_eq!(d["expected"], false);
    assert_eq!(line["expected"], false);
    assert!(
        d["because"].as_str().unwrap().contains(&lan.ip_a),
        "{}",
        d["because"]
    );
    let lineage: Vec<&str> = d["lineage"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(lineage.last(), Some(&"reboot"), "{lineage:?}");
    assert!(
        lineage.iter().any(|c| c.starts_with("sshd")),
        "lineage lacks sshd: {lineage:?}"
    );
    // Durable: journaled with the boot id, before anything else happens.
    let j = wait_for(Duration::from_secs(5), || {
        agent
            .journal()
            .into_iter()
            .find(|r| r["decision"] == "reboot_intent" && r["origin"] == "ssh")
    })
    .expect("reboot intent not journaled");
    assert_eq!(j["expected"], false);
    assert_eq!(j["source"], lan.ip_a.as_str());
    assert!(j["boot_id"].as_str().is_some_and(|b| !b.is_empty()));
    let m = agent.metrics();
    assert!(
        metric_sum(
            &m,
            "nodeward_reboot_intents_total",
            &[("path", "exec"), ("origin", "ssh"), ("expected", "false")]
        ) >= 1.0
    );
    assert!(metric(&m, "nodeward_session_ssh_accepts_total").unwrap() >= 1.0);
}

#[test]
fn allowance_window_and_allowed_sources_make_it_expected() {
    let name = "reboot::allowance_window_and_allowed_sources_make_it_expected";
    let Some(bin) = agent_bin(name) else { return };
    let lan = Lan::new();
    let Some(lab) = lab(name, &lan) else { return };

    let agent = Agent::start(&bin, "");
    let out = agent.cli(&["allow-reboot", "--for", "2m", "--reason", "kernel update"]);
    assert!(out.status.success(), "{out:?}");
    assert!(lab.ssh("reboot").status.success());
    let d = detail(&ssh_exec_intent(&agent, &lan.ip_a, 0));
    assert_eq!(d["expected"], true);
    assert!(
        d["because"].as_str().unwrap().contains("kernel update"),
        "{}",
        d["because"]
    );
    assert!(
        agent
            .journal()
            .iter()
            .any(|r| r["decision"] == "reboot_allowed" && r["reason"] == "kernel update")
    );
    drop(agent);

    let agent = Agent::start(
        &bin,
        "[detectors.reboot]\nallowed_sources = [\"10.213.77.0/24\"]\n",
    );
    assert!(lab.ssh("reboot").status.success());
    let d = detail(&ssh_exec_intent(&agent, &lan.ip_a, 0));
    assert_eq!(d["expected"], true);
    assert!(
        d["because"].as_str().unwrap().contains("allowed_sources"),
        "{}",
        d["because"]
    );
}

#[test]
fn restart_with_a_new_boot_id_reports_how_the_previous_boot_ended() {
    let name = "reboot::restart_with_a_new_boot_id_reports_how_the_previous_boot_ended";
    let Some(bin) = agent_bin(name) else { return };
    let lan = Lan::new();
    let Some(lab) = lab(name, &lan) else { return };
    let ids = tempfile::tempdir().unwrap();
    let boot_file = ids.path().join("boot_id");
    std::fs::write(&boot_file, "boot-A\n").unwrap();
    let boot_env = boot_file.display().to_string();
    let mut agent = Agent::start_env(&bin, "", &[("NODEWARD_BOOT_ID_FILE", &boot_env)]);
    assert!(lab.ssh("reboot").status.success());
    ssh_exec_intent(&agent, &lan.ip_a, 0);
    wait_for(Duration::from_secs(5), || {
        agent
            .journal()
            .into_iter()
            .find(|r| r["decision"] == "reboot_intent" && r["origin"] == "ssh")
    })
    .expect("intent journaled");

    // "The machine reboots": a new boot id when the agent comes back.
    std::fs::write(&boot_file, "boot-B\n").unwrap();
    agent.restart();
    let ended = agent
        .logs()
        .into_iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("previous boot ended"))
        })
        .unwrap_or_else(|| panic!("no previous-boot report:\n{}", agent.raw_output()));
    assert_eq!(ended["cause"], "ssh");
    assert_eq!(ended["expected"], "false");
    assert_eq!(ended["source"], lan.ip_a.as_str());
    let m = agent.metrics();
    assert_eq!(
        metric(
            &m,
            "nodeward_reboots_total{cause=\"ssh\",expected=\"false\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            &format!(
                "nodeward_last_reboot_info{{cause=\"ssh\",expected=\"false\",source=\"{}\"}}",
                lan.ip_a
            )
        ),
        Some(1.0)
    );
    let status = agent.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!(
            "UNEXPECTED restart requested over SSH from {}",
            lan.ip_a
        )),
        "{text}"
    );

    // Nothing recorded during boot B: its end is unknown.
    std::fs::write(&boot_file, "boot-C\n").unwrap();
    agent.restart();
    let m = agent.metrics();
    assert_eq!(
        metric(
            &m,
            "nodeward_reboots_total{cause=\"unknown\",expected=\"unknown\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "nodeward_reboots_total{cause=\"ssh\",expected=\"false\"}"
        ),
        Some(1.0),
        "counts persist across restarts"
    );
}

#[test]
fn local_reboot_syscall_is_attributed_local_not_ssh() {
    let name = "reboot::local_reboot_syscall_is_attributed_local_not_ssh";
    let Some(bin) = agent_bin(name) else { return };
    let agent = Agent::start(&bin, "");
    let out = Command::new(HELPER)
        .args(["bad-reboot", "--set-loginuid", "0"])
        .output()
        .unwrap();
    if out.status.code() == Some(3) {
        return skip(
            name,
            "this process may not set a login uid (CAP_AUDIT_CONTROL missing or loginuid immutable)",
        );
    }
    assert!(out.status.success(), "{out:?}");
    let me = std::process::id();
    let line = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["path"] == "syscall"
                && l["ppid"].as_u64() == Some(me.into())
                && l["comm"] == "nodeward-test-h"
        })
    })
    .unwrap_or_else(|| panic!("no local reboot(2) intent:\n{}", agent.raw_output()));
    assert_eq!(line["origin"], "local");
    assert_eq!(detail(&line)["process"]["origin"]["kind"], "local");
    assert_eq!(
        line["expected"], true,
        "local reboots are expected by default"
    );
}

/// The fallback route (forced): the openat syscall tracepoints see the attempt even on
/// a kernel without magic SysRq (the open fails with ENOENT here, after the hook).
#[test]
fn sysrq_trigger_opened_for_writing_is_an_intent_read_only_is_not() {
    let Some(bin) =
        agent_bin("reboot::sysrq_trigger_opened_for_writing_is_an_intent_read_only_is_not")
    else {
        return;
    };
    let agent = Agent::start(&bin, "[detectors.reboot]\nroute = \"tracepoint\"\n");
    let spawn = |args: &[&str]| {
        let mut c = Command::new(HELPER).args(args).spawn().unwrap();
        let pid = c.id();
        assert!(c.wait().unwrap().success());
        pid
    };
    let ro = spawn(&["open-sysrq"]);
    let wo = spawn(&["open-sysrq", "--write-mode"]);
    let line = wait_for(Duration::from_secs(5), || {
        agent
            .findings_for(&[wo])
            .into_iter()
            .find(|l| l["path"] == "sysrq")
    })
    .unwrap_or_else(|| panic!("no sysrq intent:\n{}", agent.raw_output()));
    assert_eq!(line["action"], "sysrq");
    assert!(
        agent.findings_for(&[ro]).is_empty(),
        "a read-only open was reported"
    );
}

/// A sysrq open from an SSH session carries the session's origin (the tracepoint route,
/// which sees the attempt on this kernel without magic SysRq; the fanotify route reads
/// the same origin table from userspace, tested with the secrets read over SSH).
#[test]
fn a_sysrq_open_over_ssh_is_attributed_to_the_session() {
    let name = "reboot::a_sysrq_open_over_ssh_is_attributed_to_the_session";
    let Some(bin) = agent_bin(name) else { return };
    let lan = Lan::new();
    let Some(lab) = lab(name, &lan) else { return };
    let agent = Agent::start(&bin, "[detectors.reboot]\nroute = \"tracepoint\"\n");
    let out = lab.ssh(&format!("{HELPER} open-sysrq --write-mode"));
    assert!(out.status.success(), "{out:?}");
    let line = wait_for(Duration::from_secs(8), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "reboot_intent" && l["path"] == "sysrq")
    })
    .unwrap_or_else(|| panic!("no sysrq intent:\n{}", agent.raw_output()));
    assert_eq!(line["origin"], "ssh", "{line}");
    let o = &detail(&line)["process"]["origin"];
    assert_eq!(o["peer"], lan.ip_a.as_str(), "{line}");
    assert_eq!(o["local_port"], nodeward_tests::SSH_PORT, "{line}");
}

/// The default route: a fanotify mark on the trigger. Needs a kernel with magic SysRq
/// (the mark is on the file itself); the watcher's logic is also tested on a file of
/// its own in the agent's unit tests.
#[test]
fn sysrq_trigger_opened_for_writing_is_seen_by_fanotify() {
    let name = "reboot::sysrq_trigger_opened_for_writing_is_seen_by_fanotify";
    let Some(bin) = agent_bin(name) else { return };
    if !std::path::Path::new("/proc/sysrq-trigger").exists() {
        return skip(
            name,
            "this kernel has no /proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ unset): nothing to mark",
        );
    }
    let agent = Agent::start(&bin, "");
    // Held open until stdin closes, so the agent reads the mode from the descriptor.
    let mut wo = Command::new(HELPER)
        .args(["open-sysrq", "--write-mode", "--hold"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wo.id();
    let line = wait_for(Duration::from_secs(5), || {
        agent
            .findings_for(&[pid])
            .into_iter()
            .find(|l| l["path"] == "sysrq")
    });
    drop(wo.stdin.take());
    let _ = wo.wait();
    let line = line.unwrap_or_else(|| panic!("no sysrq intent:\n{}", agent.raw_output()));
    assert_eq!(line["action"], "sysrq");
}

/// An SSH session opened before the agent started: its origin is found at start-up
/// (sshd's socket in /proc), and a reboot(2) from it — seen at the CAP_SYS_BOOT check —
/// carries the session's peer.
#[test]
fn reboot_from_a_session_older_than_the_agent_is_attributed_to_it() {
    let name = "reboot::reboot_from_a_session_older_than_the_agent_is_attributed_to_it";
    let Some(bin) = agent_bin(name) else { return };
    let lan = Lan::new();
    let Some(lab) = lab(name, &lan) else { return };
    // The session waits for a line before it calls reboot(2) (invalid magic: EINVAL).
    let session = lab.ssh_held(&format!("{HELPER} bad-reboot"));
    let agent = Agent::start(&bin, "");
    let out = session.release();
    assert_eq!(
        out.trim(),
        libc::EINVAL.to_string(),
        "reboot(2) must fail with EINVAL"
    );
    let line = wait_for(Duration::from_secs(8), || {
        agent.logs().into_iter().find(|l| {
            l["finding"] == "reboot_intent"
                && l["path"] == "syscall"
                && l["origin"] == "ssh"
                && l["detail"].as_str().is_some_and(|d| d.contains(&lan.ip_a))
        })
    })
    .unwrap_or_else(|| panic!("no SSH-attributed reboot(2):\n{}", agent.raw_output()));
    let d = detail(&line);
    let o = &d["process"]["origin"];
    assert_eq!(o["peer"], lan.ip_a.as_str());
    assert_eq!(o["local_port"], nodeward_tests::SSH_PORT);
    let ports = lab.accepted_ports();
    assert!(
        ports.contains(&(o["peer_port"].as_u64().unwrap_or(0) as u16)),
        "peer port {} not in sshd's log {ports:?}",
        o["peer_port"]
    );
    assert_eq!(
        line["expected"], false,
        "a remote root reboot is unexpected"
    );
}

/// The first incident's shape with the alert that beats the reboot: an unexpected root
/// reboot over SSH is pushed to a real Alertmanager at once (no scrape involved), with
/// the rule's labels and the SSH peer, command and lineage in annotations.
#[test]
fn an_unexpected_ssh_reboot_reaches_alertmanager_without_a_scrape() {
    let name = "reboot::an_unexpected_ssh_reboot_reaches_alertmanager_without_a_scrape";
    let Some(bin) = agent_bin(name) else { return };
    let am = match nodeward_tests::Alertmanager::start() {
        Ok(am) => am,
        Err(why) => return skip(name, &why),
    };
    let lan = Lan::new();
    let Some(lab) = lab(name, &lan) else { return };
    let agent = Agent::start(
        &bin,
        &format!(
            "[alerting]\nalertmanagers = [\"{}\"]\nlabels = {{ instance = \"node-under-test\" }}\n",
            am.url
        ),
    );
    let pushed = |m: &str| metric_sum(m, "nodeward_alert_pushes_total", &[("result", "sent")]);
    assert_eq!(pushed(&agent.metrics()), 0.0, "nothing pushed before");
    let out = lab.ssh("reboot");
    assert!(out.status.success(), "{out:?}");
    let alert = wait_for(Duration::from_secs(10), || {
        // The exec of the stand-in (its own reboot(2) is a second alert, path=syscall).
        am.alerts().into_iter().find(|a| {
            a["labels"]["alertname"] == "NodewardUnexpectedRebootIntent"
                && a["labels"]["path"] == "exec"
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no alert in Alertmanager: {:?}\n{}",
            am.alerts(),
            agent.raw_output()
        )
    });
    let labels = &alert["labels"];
    assert_eq!(labels["severity"], "critical", "{alert}");
    assert_eq!(labels["origin"], "ssh", "{alert}");
    assert_eq!(labels["path"], "exec", "{alert}");
    assert_eq!(labels["instance"], "node-under-test", "{alert}");
    let notes = &alert["annotations"];
    assert!(
        notes["ssh_peer"]
            .as_str()
            .is_some_and(|p| p.starts_with(&format!("{}:", lan.ip_a))),
        "{alert}"
    );
    assert_eq!(notes["command"], "reboot", "{alert}");
    assert!(
        notes["lineage"]
            .as_str()
            .is_some_and(|l| l.contains("sshd")),
        "{alert}"
    );
    // Alertmanager holds the alert before it answers the push, and the agent counts
    // the push when the answer arrives: wait for the count.
    let counted = wait_for(Duration::from_secs(10), || {
        (pushed(&agent.metrics()) >= 1.0).then_some(())
    });
    assert!(counted.is_some(), "push not counted");
    // How long the push took, from the finding to Alertmanager's acceptance (reported,
    // not asserted: the machines are shared).
    let line = agent
        .logs()
        .into_iter()
        .find(|l| l["message"] == "alert pushed to Alertmanager");
    eprintln!(
        "push latency: {} ms",
        line.map(|l| l["ms"].to_string()).unwrap_or_default()
    );
}

/// An Alertmanager that cannot be reached: the push is retried, counted as failed, and
/// the pipeline waits no longer than its bound (the finding is still logged).
#[test]
fn a_push_to_an_unreachable_alertmanager_is_counted_as_failed() {
    let name = "reboot::a_push_to_an_unreachable_alertmanager_is_counted_as_failed";
    let Some(bin) = agent_bin(name) else { return };
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let agent = Agent::start(
        &bin,
        "[alerting]\nalertmanagers = [\"http://127.0.0.1:1\"]\ntimeout = \"1s\"\nretries = 1\n\
         [detectors.reboot]\nlocal_expected = false\nservice_expected = false\n",
    );
    let failed = |m: &str| metric_sum(m, "nodeward_alert_pushes_total", &[("result", "failed")]);
    assert_eq!(failed(&agent.metrics()), 0.0);
    let out = Command::new(HELPER)
        .arg("bad-reboot")
        .output()
        .expect("run helper");
    assert!(out.status.success(), "helper: {out:?}");
    let m = wait_for(Duration::from_secs(10), || {
        let m = agent.metrics();
        (failed(&m) >= 1.0).then_some(m)
    })
    .unwrap_or_else(|| panic!("no failed push counted:\n{}", agent.raw_output()));
    assert_eq!(
        metric_sum(&m, "nodeward_alert_pushes_total", &[("result", "sent")]),
        0.0
    );
    assert!(
        agent
            .logs()
            .iter()
            .any(|l| l["finding"] == "reboot_intent" && l["expected"] == false),
        "the intent is still reported:\n{}",
        agent.raw_output()
    );
}
