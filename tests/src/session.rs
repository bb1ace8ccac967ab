//! End to end, `session` detector: a real OpenSSH sshd in a network namespace. Each
//! accepted connection is an `ssh_session` finding naming the peer (address and port,
//! cross-checked against sshd's own log), the local port and the accepting sshd; the
//! session's processes carry that origin in the other detectors' findings (here a
//! stand-in `reboot` run in the session, on each route; more in reboot.rs and
//! secrets.rs).

use std::time::Duration;

use nodeward_tests::{Agent, Lan, SSH_PORT, SshLab, agent_bin, detail, metric, skip, wait_for};

const HELPER: &str = env!("CARGO_BIN_EXE_nodeward-test-helper");

/// Default routes: sshd's getpeername(2), seen by a cgroup program; origins kept in
/// task local storage, copied at fork by a tp_btf program.
#[test]
fn an_accepted_ssh_connection_is_a_session_with_its_peer_and_ports() {
    accepted(
        "session::an_accepted_ssh_connection_is_a_session_with_its_peer_and_ports",
        "",
    );
}

/// The fallback routes, forced: accept(2) syscall tracepoints; the pid table kept by
/// the fork and exit tracepoints.
#[test]
fn an_accepted_ssh_connection_is_a_session_on_the_forced_tracepoint_route() {
    accepted(
        "session::an_accepted_ssh_connection_is_a_session_on_the_forced_tracepoint_route",
        "[detectors.session]\nroute = \"tracepoint\"\n",
    );
}

fn accepted(name: &str, config: &str) {
    let Some(bin) = agent_bin(name) else { return };
    let lan = Lan::new();
    let lab = match SshLab::new(&lan, HELPER) {
        Ok(l) => l,
        Err(why) => return skip(name, &why),
    };
    let agent = Agent::start(&bin, config);
    let text = agent.check();
    for group in ["session.cgroup", "session.storage"] {
        assert_eq!(
            text.contains(&format!("route {group}: FALLBACK")),
            !config.is_empty(),
            "route {group} in use:\n{text}"
        );
    }
    // A command of the session that another detector reports: a stand-in `reboot`.
    let marker = lab.marker("ran");
    let out = lab.ssh(&format!("NODEWARD_TEST_MARKER={} reboot", marker.display()));
    assert!(out.status.success(), "ssh: {out:?}");

    let line = wait_for(Duration::from_secs(10), || {
        agent.logs().into_iter().find(|l| {
            l["finding"] == "ssh_session"
                && l["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(lan.ip_a.as_str()))
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no ssh_session finding from {}:\n{}",
            lan.ip_a,
            agent.raw_output()
        )
    });
    assert_eq!(line["detector"], "session", "{line}");
    let d = detail(&line);
    let o = &d["origin"];
    assert_eq!(o["kind"], "ssh", "{d}");
    assert_eq!(o["peer"], lan.ip_a.as_str(), "{d}");
    assert_eq!(o["local_port"], SSH_PORT, "{d}");
    let peer_port = o["peer_port"].as_u64().unwrap_or(0) as u16;
    let ports = lab.accepted_ports();
    assert!(
        ports.contains(&peer_port),
        "peer port {peer_port} not in sshd's log {ports:?}"
    );
    assert!(
        d["sshd"]["comm"]
            .as_str()
            .is_some_and(|c| c.starts_with("sshd")),
        "accepting process: {}",
        d["sshd"]
    );
    assert_eq!(o["sshd_pid"], d["sshd"]["pid"], "{d}");

    // The session's shell and its command inherited that origin through their forks.
    let intent = wait_for(Duration::from_secs(10), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "reboot_intent" && l["path"] == "exec")
    })
    .unwrap_or_else(|| panic!("no reboot intent:\n{}", agent.raw_output()));
    let inherited = &detail(&intent)["process"]["origin"];
    assert_eq!(inherited["kind"], "ssh", "{intent}");
    assert_eq!(inherited["peer"], lan.ip_a.as_str(), "{intent}");
    assert_eq!(inherited["peer_port"], o["peer_port"], "{intent}");
    assert_eq!(inherited["sshd_pid"], o["sshd_pid"], "{intent}");

    // The counter moves with the finding (set right after it is logged: polled).
    let accepts = wait_for(Duration::from_secs(5), || {
        metric(&agent.metrics(), "nodeward_session_ssh_accepts_total").filter(|v| *v >= 1.0)
    });
    assert!(
        accepts.is_some(),
        "nodeward_session_ssh_accepts_total stayed below 1: {:?}",
        metric(&agent.metrics(), "nodeward_session_ssh_accepts_total")
    );
}

/// A reload that changes the origin table (task storage to the pid table): the sessions
/// open at that moment are written into the table entered, so a reboot(2) from a
/// session that predates the reload still carries its origin.
#[test]
fn a_reload_that_changes_the_origin_table_keeps_the_open_sessions_origin() {
    let name = "session::a_reload_that_changes_the_origin_table_keeps_the_open_sessions_origin";
    let Some(bin) = agent_bin(name) else { return };
    let lan = Lan::new();
    let lab = match SshLab::new(&lan, HELPER) {
        Ok(l) => l,
        Err(why) => return skip(name, &why),
    };
    let agent = Agent::start(&bin, "");
    let fallback = |v: f64| {
        wait_for(Duration::from_secs(10), || {
            metric(
                &agent.metrics(),
                "nodeward_kernel_route_fallback{group=\"session.storage\"}",
            )
            .filter(|m| *m == v)
        })
    };
    if fallback(0.0).is_none() {
        return skip(
            name,
            "task local storage is not in use on this kernel (nodeward check says why)",
        );
    }
    // The session waits for a line before it calls reboot(2) (invalid magic: EINVAL).
    let session = lab.ssh_held(&format!("{HELPER} bad-reboot"));
    agent.rewrite_config("[detectors.session]\nroute = \"tracepoint\"\n");
    agent.signal(libc::SIGHUP);
    assert!(
        fallback(1.0).is_some(),
        "the reload did not move to the pid table:\n{}",
        agent.raw_output()
    );
    let out = session.release();
    assert_eq!(
        out.trim(),
        libc::EINVAL.to_string(),
        "reboot(2) must fail with EINVAL"
    );
    let line = wait_for(Duration::from_secs(8), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "reboot_intent" && l["path"] == "syscall")
    })
    .unwrap_or_else(|| panic!("no reboot(2) intent:\n{}", agent.raw_output()));
    assert_eq!(line["origin"], "ssh", "{line}");
    let o = &detail(&line)["process"]["origin"];
    assert_eq!(o["peer"], lan.ip_a.as_str(), "{line}");
    let ports = lab.accepted_ports();
    assert!(
        ports.contains(&(o["peer_port"].as_u64().unwrap_or(0) as u16)),
        "peer port {} not in sshd's log {ports:?}",
        o["peer_port"]
    );
}
