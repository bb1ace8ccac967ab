//! End to end, the reboot guard (protected host): what it stops before it runs, what
//! it lets run, and what dry_run only records.

use std::time::Duration;

use nodeward_tests::{Agent, Lan, agent_bin, detail, everyone_but, metric, wait_for};

use super::{lab, ssh_exec_intent};

#[test]
fn protected_host_blocks_an_unexpected_remote_reboot_and_dry_run_only_records() {
    let name = "reboot::protected_host_blocks_an_unexpected_remote_reboot_and_dry_run_only_records";
    let Some(bin) = agent_bin(name) else { return };
    let lan = Lan::new();
    let Some(lab) = lab(name, &lan) else { return };
    let guard = format!(
        "[detectors.reboot]\nprotected_host = true\nallowed_sources = {}\n",
        everyone_but(&lan.ip_a)
    );

    // dry_run: recorded as what would be blocked; the stand-in runs.
    let agent = Agent::start(
        &bin,
        &format!("quarantine.block_exec.mode = \"dry_run\"\n{guard}"),
    );
    let ran = lab.marker("dry");
    assert!(
        lab.ssh(&format!("NODEWARD_TEST_MARKER={} reboot", ran.display()))
            .status
            .success()
    );
    assert!(ran.exists(), "dry run blocked the stand-in");
    let d = detail(&ssh_exec_intent(&agent, &lan.ip_a, 0));
    assert_eq!(d["guard"], "would_block");
    let dry = wait_for(Duration::from_secs(5), || {
        agent
            .journal()
            .into_iter()
            .find(|r| r["decision"] == "dry_run" && r["guard"] == "reboot")
    })
    .expect("dry run not journaled");
    assert_eq!(
        dry["detail"]["process"]["origin"]["peer"],
        lan.ip_a.as_str()
    );
    assert_eq!(
        metric(&agent.metrics(), "nodeward_reboot_blocked_total"),
        Some(0.0)
    );
    drop(agent);

    // enforce: killed before it runs; ssh reports the failure; journaled with attribution.
    let agent = Agent::start(
        &bin,
        &format!("quarantine.block_exec.mode = \"enforce\"\n{guard}"),
    );
    let blocked = lab.marker("blocked");
    let out = lab.ssh(&format!(
        "NODEWARD_TEST_MARKER={} reboot",
        blocked.display()
    ));
    assert!(
        !out.status.success(),
        "ssh did not report the failure: {out:?}"
    );
    assert!(!blocked.exists(), "the blocked stand-in ran");
    let line = ssh_exec_intent(&agent, &lan.ip_a, 0);
    assert_eq!(detail(&line)["guard"], "blocked");
    assert!(line["message"].as_str().unwrap().contains("BLOCKED"));
    let e = wait_for(Duration::from_secs(5), || {
        agent
            .journal()
            .into_iter()
            .find(|r| r["decision"] == "enforced" && r["guard"] == "reboot")
    })
    .expect("block not journaled");
    assert_eq!(e["detail"]["process"]["origin"]["peer"], lan.ip_a.as_str());
    assert_eq!(e["detail"]["process"]["loginuid"], 0);
    // The journal record is written just before the decision counters move.
    let m = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        (metric(
            &m,
            "nodeward_quarantine_decisions_total{action=\"block_exec\",result=\"enforced\"}",
        )
        .unwrap_or(0.0)
            >= 1.0)
            .then_some(m)
    })
    .expect("block_exec enforced decision not counted");
    assert_eq!(metric(&m, "nodeward_reboot_blocked_total"), Some(1.0));
    // Other commands in the same session still run.
    assert!(lab.ssh("true").status.success());
}

/// Every reboot path the detector recognises by exec is stopped by the guard before the
/// command runs, and only those: the same commands asking for something else run. Only
/// stand-ins are executed (the lab's systemctl is the stand-in; telinit and busctl are
/// copies of it), never a real init or a real D-Bus call.
#[test]
fn protected_host_blocks_every_reboot_command_line_and_lets_the_others_run() {
    let name = "reboot::protected_host_blocks_every_reboot_command_line_and_lets_the_others_run";
    let Some(bin) = agent_bin(name) else { return };
    let lan = Lan::new();
    let Some(lab) = lab(name, &lan) else { return };
    let tools = tempfile::tempdir().unwrap();
    for tool in ["telinit", "busctl"] {
        std::fs::copy(&lab.standin, tools.path().join(tool)).unwrap();
    }
    let t = |tool: &str| tools.path().join(tool).display().to_string();
    let agent = Agent::start(
        &bin,
        &format!(
            "quarantine.block_exec.mode = \"enforce\"\n[detectors.reboot]\nprotected_host = true\nallowed_sources = {}\n",
            everyone_but(&lan.ip_a)
        ),
    );
    let login1 = "org.freedesktop.login1 /org/freedesktop/login1 org.freedesktop.login1.Manager";
    let cases: Vec<(String, bool)> = vec![
        ("systemctl status nginx".into(), false),
        ("systemctl reboot".into(), true),
        ("systemctl --no-wall isolate reboot.target".into(), true),
        ("systemctl -H otherhost reboot".into(), false),
        ("systemctl -p reboot show".into(), false),
        (format!("{} 6", t("telinit")), true),
        (format!("{} 3", t("telinit")), false),
        (
            format!("{} call {login1} PowerOff b false", t("busctl")),
            true,
        ),
        (format!("{} call {login1} ListSessions", t("busctl")), false),
    ];
    for (i, (command, blocked)) in cases.iter().enumerate() {
        let ran = lab.marker(&format!("case{i}"));
        let out = lab.ssh(&format!("NODEWARD_TEST_MARKER={} {command}", ran.display()));
        assert_eq!(
            !ran.exists(),
            *blocked,
            "`{command}`: expected {}; ssh said {out:?}\n{}",
            if *blocked { "blocked" } else { "run" },
            agent.raw_output()
        );
        assert_eq!(out.status.success(), !blocked, "`{command}`: {out:?}");
    }
    // Each blocked command line is reported with the decision and its argv.
    for (command, _) in cases.iter().filter(|(_, b)| *b) {
        let last = command.rsplit(' ').next().unwrap();
        let line = wait_for(Duration::from_secs(8), || {
            agent.logs().into_iter().find(|l| {
                l["finding"] == "reboot_intent"
                    && detail(l)["guard"] == "blocked"
                    && detail(l)["argv"]
                        .as_array()
                        .is_some_and(|a| a.last().and_then(|v| v.as_str()) == Some(last))
            })
        });
        assert!(
            line.is_some(),
            "`{command}` not reported as blocked:\n{}",
            agent.raw_output()
        );
    }
}
