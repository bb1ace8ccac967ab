//! End to end, `tcp_reset` detector: a reset storm on loopback (connects to a closed
//! port: the kernel answers each SYN with a reset, reason NO_SOCKET).

use std::{net::TcpStream, time::Duration};

use nodeward_tests::{Agent, agent_bin, metric, metric_sum, wait_for};

#[test]
fn resets_to_a_closed_port_are_counted_by_reason_and_become_a_storm_with_the_peer() {
    let Some(bin) = agent_bin(
        "tcp_reset::resets_to_a_closed_port_are_counted_by_reason_and_become_a_storm_with_the_peer",
    ) else {
        return;
    };
    let agent = Agent::start(
        &bin,
        "[detectors.tcp_reset]\nstorm_threshold = 50\nwindow = \"3s\"\n",
    );
    let before = metric_sum(
        &agent.metrics(),
        "nodeward_tcp_resets_total",
        &[("direction", "sent"), ("reason", "no_socket")],
    );
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut refused = 0;
    for _ in 0..200 {
        if TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(200),
        )
        .is_err()
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 200, "the port must be closed");
    let storm = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["finding"] == "reset_storm" && l["peer"] == "127.0.0.1" && l["direction"] == "sent"
        })
    })
    .unwrap_or_else(|| panic!("no reset storm:\n{}", agent.raw_output()));
    assert!(storm["count"].as_u64().unwrap() >= 50, "{storm}");
    fn storm_series(m: &str) -> bool {
        m.lines().any(|l| {
            l.starts_with("nodeward_tcp_reset_storm_active{direction=\"sent\",peer=\"127.0.0.1\"}")
        })
    }
    // The sampler sets the storm series just after handing the finding to the pipeline,
    // which may log it first: poll for the series.
    let m = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        storm_series(&m).then_some(m)
    })
    .unwrap_or_else(|| agent.metrics());
    let after = metric_sum(
        &m,
        "nodeward_tcp_resets_total",
        &[("direction", "sent"), ("reason", "no_socket")],
    );
    assert!(
        after - before >= 200.0,
        "no_socket resets counted: {}",
        after - before
    );
    assert!(
        metric(&m, "nodeward_tcp_reset_storms_total{direction=\"sent\"}").unwrap() >= 1.0,
        "{m}"
    );
    assert!(storm_series(&m), "storm series missing:\n{m}");
    // Quiet again: the storm ends and its series goes away.
    wait_for(Duration::from_secs(10), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "reset_storm_ended" && l["peer"] == "127.0.0.1")
    })
    .unwrap_or_else(|| panic!("storm never ended:\n{}", agent.raw_output()));
    // Removed just after the end is handed to the pipeline: poll.
    let m = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        (!storm_series(&m)).then_some(m)
    })
    .unwrap_or_else(|| agent.metrics());
    assert!(
        !storm_series(&m),
        "storm series still exposed after the storm ended:\n{m}"
    );
}
