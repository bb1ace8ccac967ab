//! End to end, quarantine engine: real packet drops between two test namespaces, real
//! kill-on-exec inside the test's own cgroup, dry run, restart, webhook + approval.
//! Every rule matches only what the test created (its namespaces' addresses on its own
//! bridge ports; a stand-in binary name inside its own cgroup).

use std::{process::Command, time::Duration};

use nodeward_tests::{
    Agent, Lan, TestCgroup, agent_bin, http_request, metric, skip, stand_in, wait_for,
};

const HELPER: &str = env!("CARGO_BIN_EXE_nodeward-test-helper");

fn ok(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "CLI failed: {text}");
    text
}

fn decisions(agent: &Agent, action: &str, result: &str) -> f64 {
    metric(
        &agent.metrics(),
        &format!("nodeward_quarantine_decisions_total{{action=\"{action}\",result=\"{result}\"}}"),
    )
    .unwrap_or(-1.0)
}

#[test]
fn packet_drop_applies_and_expires_in_the_kernel_without_the_agent() {
    let Some(bin) =
        agent_bin("quarantine::packet_drop_applies_and_expires_in_the_kernel_without_the_agent")
    else {
        return;
    };
    let lan = Lan::new();
    // The sweep runs once at start, then not for an hour: expiry must come from the kernel.
    let agent = Agent::start(
        &bin,
        "agent.mode = \"enforce\"\nquarantine.sweep_interval = \"1h\"\n",
    );
    assert!(
        lan.wait_reach(true, 10),
        "namespaces cannot talk before any quarantine"
    );

    let out = agent.cli(&[
        "quarantine",
        "add",
        "--drop-ip",
        &lan.ip_a,
        "--interface",
        &lan.port_a,
        "--ttl",
        "5s",
        "--reason",
        "e2e",
    ]);
    let text = ok(&out);
    assert!(text.contains("applied"), "{text}");
    assert!(
        lan.wait_reach(false, 3),
        "traffic from A still reaches B under quarantine"
    );
    let m = agent.metrics();
    assert!(
        metric(&m, "nodeward_quarantine_kernel_total{counter=\"drop_v4\"}").unwrap() >= 1.0,
        "kernel drop counter did not move"
    );
    assert_eq!(
        metric(&m, "nodeward_quarantine_active{action=\"drop_packets\"}"),
        Some(1.0)
    );
    let applied = agent
        .journal()
        .into_iter()
        .find(|r| r["decision"] == "applied")
        .expect("applied in the journal");
    assert_eq!(applied["target"]["addr"], lan.ip_a);

    // The TTL passes; the kernel program ignores the entry by itself.
    assert!(
        lan.wait_reach(true, 10),
        "traffic did not come back after the TTL"
    );
    assert_eq!(
        metric(
            &agent.metrics(),
            "nodeward_quarantine_active{action=\"drop_packets\"}"
        ),
        Some(1.0),
        "the agent must not have swept it"
    );
    assert!(
        !agent
            .journal()
            .iter()
            .any(|r| r["decision"] == "expired" || r["decision"] == "released"),
        "expiry came from the agent, not the kernel"
    );
    assert!(
        metric(
            &agent.metrics(),
            "nodeward_quarantine_kernel_total{counter=\"expired_seen\"}"
        )
        .unwrap()
            >= 1.0
    );
}

#[test]
fn dry_run_records_but_does_not_act() {
    let Some(bin) = agent_bin("quarantine::dry_run_records_but_does_not_act") else {
        return;
    };
    let lan = Lan::new();
    let agent = Agent::start(&bin, "agent.mode = \"dry_run\"\n");
    let text = ok(&agent.cli(&[
        "quarantine",
        "add",
        "--drop-ip",
        &lan.ip_a,
        "--interface",
        &lan.port_a,
        "--ttl",
        "1m",
    ]));
    assert!(
        text.contains("dry run: would drop packets from 10.213.77.1"),
        "{text}"
    );
    assert!(lan.wait_reach(true, 5), "dry run dropped traffic");
    assert_eq!(decisions(&agent, "drop_packets", "dry_run"), 1.0);
    assert_eq!(
        metric(
            &agent.metrics(),
            "nodeward_quarantine_active{action=\"drop_packets\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        agent
            .journal()
            .iter()
            .filter(|r| r["decision"] == "dry_run")
            .count(),
        1
    );
    // Observe (the default) refuses, and says so.
    let agent = Agent::start(&bin, "");
    let out = agent.cli(&[
        "quarantine",
        "add",
        "--drop-ip",
        &lan.ip_a,
        "--interface",
        &lan.port_a,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused_observe"));
}

#[test]
fn protected_address_is_refused_and_recorded() {
    let Some(bin) = agent_bin("quarantine::protected_address_is_refused_and_recorded") else {
        return;
    };
    let lan = Lan::new();
    let agent = Agent::start(
        &bin,
        "agent.mode = \"enforce\"\nquarantine.protected_addresses = [\"10.213.77.0/28\"]\n",
    );
    let out = agent.cli(&[
        "quarantine",
        "add",
        "--drop-ip",
        &lan.ip_a,
        "--interface",
        &lan.port_a,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused_protected"));
    assert!(lan.wait_reach(true, 5));
    assert_eq!(decisions(&agent, "drop_packets", "refused_protected"), 1.0);
    let r = agent
        .journal()
        .into_iter()
        .find(|r| r["decision"] == "refused")
        .expect("refusal journaled");
    assert_eq!(r["reason"], "protected");
}

#[test]
fn kill_on_exec_is_scoped_to_the_test_cgroup() {
    let name = "quarantine::kill_on_exec_is_scoped_to_the_test_cgroup";
    let Some(bin) = agent_bin(name) else { return };
    let cg = match TestCgroup::new() {
        Ok(c) => c,
        Err(why) => return skip(name, &why),
    };
    let agent = Agent::start(&bin, "agent.mode = \"enforce\"\n");
    let cgroup = cg.path.display().to_string();
    let text = ok(&agent.cli(&[
        "quarantine",
        "add",
        "--block-exec",
        "reboot",
        "--cgroup",
        &cgroup,
        "--ttl",
        "2m",
    ]));
    assert!(text.contains("applied"), "{text}");

    let (dir, standin) = stand_in(HELPER, "reboot");
    let standin = standin.display().to_string();
    // Inside the test's cgroup: killed before its first instruction, no marker.
    let inside = dir.path().join("inside.marker");
    let status = cg
        .command(&[&standin])
        .env("NODEWARD_TEST_MARKER", &inside)
        .status()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "stand-in was not killed: {status}"
    );
    assert!(!inside.exists(), "the blocked stand-in ran");
    // The same binary elsewhere still runs.
    let outside = dir.path().join("outside.marker");
    let status = Command::new(&standin)
        .env("NODEWARD_TEST_MARKER", &outside)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success() && outside.exists(),
        "the stand-in outside the cgroup was blocked"
    );

    let enforced = wait_for(Duration::from_secs(5), || {
        agent
            .journal()
            .into_iter()
            .find(|r| r["decision"] == "enforced")
    })
    .unwrap_or_else(|| panic!("no enforcement in the journal:\n{}", agent.raw_output()));
    assert_eq!(enforced["detail"]["process"]["comm"], "reboot");
    let m = agent.metrics();
    assert!(
        metric(
            &m,
            "nodeward_quarantine_kernel_total{counter=\"exec_killed\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        metric(
            &m,
            "nodeward_enforcement_backend_info{action=\"block_exec\",backend=\"sched_exec_kill\"}"
        ),
        Some(1.0)
    );
    // The journal record is written just before the decision counters move.
    assert!(
        wait_for(Duration::from_secs(5), || (decisions(
            &agent,
            "block_exec",
            "enforced"
        ) == 1.0)
            .then_some(()))
        .is_some()
    );
    ok(&agent.cli(&["release", "--all"]));
    let again = dir.path().join("again.marker");
    let status = cg
        .command(&[&standin])
        .env("NODEWARD_TEST_MARKER", &again)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success() && again.exists(),
        "released block still enforced"
    );
}

#[test]
fn restart_keeps_an_active_quarantine() {
    let Some(bin) = agent_bin("quarantine::restart_keeps_an_active_quarantine") else {
        return;
    };
    let lan = Lan::new();
    let mut agent = Agent::start(&bin, "agent.mode = \"enforce\"\n");
    ok(&agent.cli(&[
        "quarantine",
        "add",
        "--drop-ip",
        &lan.ip_a,
        "--interface",
        &lan.port_a,
        "--ttl",
        "2m",
    ]));
    assert!(lan.wait_reach(false, 3));
    let status = agent.restart();
    assert!(status.success());
    assert!(
        lan.wait_reach(false, 3),
        "quarantine lost across the restart"
    );
    let list = ok(&agent.cli(&["quarantine", "list", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v["active"].as_array().map(Vec::len), Some(1), "{list}");
    assert!(agent.journal().iter().any(|r| r["decision"] == "restored"));
    // `nodeward audit` reads the same journal, in order.
    let audit = ok(&agent.cli(&["audit"]));
    let decisions: Vec<String> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|r| r["decision"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(decisions, ["applied", "restored"], "{audit}");
    // Release undoes it at once.
    ok(&agent.cli(&["release", "--all"]));
    assert!(lan.wait_reach(true, 5), "release did not restore traffic");
    assert_eq!(
        metric(
            &agent.metrics(),
            "nodeward_quarantine_active{action=\"drop_packets\"}"
        ),
        Some(0.0)
    );
}

#[test]
fn webhook_rejects_bad_tokens_and_a_good_alert_becomes_a_proposal_that_approve_applies() {
    let Some(bin) = agent_bin(
        "quarantine::webhook_rejects_bad_tokens_and_a_good_alert_becomes_a_proposal_that_approve_applies",
    ) else {
        return;
    };
    let lan = Lan::new();
    let (_token, webhook) = nodeward_tests::webhook_token("s3cret-token");
    let agent = Agent::start(
        &bin,
        &format!(
            "agent.mode = \"enforce\"\n{webhook}quarantine.drop_packets.require_approval = true\n"
        ),
    );
    let alert = format!(
        r#"{{"version":"4","status":"firing","alerts":[{{"status":"firing","fingerprint":"abc","labels":{{"alertname":"NodewardTest","nodeward_action":"drop_packets","nodeward_source_ip":"{}","nodeward_interfaces":"{}","nodeward_ttl":"2m"}}}}]}}"#,
        lan.ip_a, lan.port_a
    );
    let post = |auth: Option<&str>, body: &str| {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        http_request(&agent.addr, "POST", "/alertmanager", &headers, body)
    };
    assert_eq!(post(None, &alert).0, 401);
    assert_eq!(post(Some("Bearer wrong"), &alert).0, 401);
    assert_eq!(post(Some("Bearer s3cret-token"), "{not json").0, 400);
    assert_eq!(
        post(
            Some("Bearer s3cret-token"),
            r#"{"alerts":[{"status":"firing","labels":{"nodeward_action":"nuke"}}]}"#
        )
        .0,
        400
    );
    assert!(
        agent.journal().is_empty(),
        "rejected requests must not reach the engine"
    );

    let (code, body) = post(Some("Bearer s3cret-token"), &alert);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let outcome = &v["outcomes"][0];
    assert_eq!(outcome["result"], "proposed", "{body}");
    let id = outcome["id"].as_u64().unwrap();
    assert!(lan.wait_reach(true, 3), "a proposal must not act");

    let text = ok(&agent.cli(&["approve", &id.to_string()]));
    assert!(text.contains("applied"), "{text}");
    assert!(lan.wait_reach(false, 3), "approved quarantine not enforced");
    let j = agent.journal();
    let decisions: Vec<&str> = j.iter().filter_map(|r| r["decision"].as_str()).collect();
    assert_eq!(decisions, ["proposed", "approved", "applied"]);
    assert!(
        j[0]["trigger"]["detail"]
            .as_str()
            .unwrap()
            .contains("NodewardTest")
    );
    ok(&agent.cli(&["release", "--all"]));
    assert!(lan.wait_reach(true, 5));
}
