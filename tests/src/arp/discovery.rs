//! Interfaces from rtnetlink: a port that joins a bridge after start is watched at once
//! (a link event, not the next rescan); the agent started with `nsenter --net` watches
//! that namespace's bridge although /sys is another's; a claim seen only at the bridge
//! device names the member port the bridge learned the MAC on.

use std::time::Duration;

use nodeward_tests::{Agent, Bridge, agent_bin, wait_for};

use super::arping_available;

fn attached(agent: &Agent) -> Vec<String> {
    agent
        .logs()
        .into_iter()
        .filter(|l| l["message"] == "TC observer attached (ingress)" && l["program"] == "net_tc")
        .filter_map(|l| l["interface"].as_str().map(str::to_string))
        .collect()
}

fn first_conflict(agent: &Agent, addr: &str) -> Option<serde_json::Value> {
    agent.logs().into_iter().find(|l| {
        l["detector"] == "arp"
            && l["address"] == addr
            && l["finding"]
                .as_str()
                .is_some_and(|k| k.ends_with("conflict"))
    })
}

#[test]
fn a_port_added_after_start_is_watched_at_once() {
    let name = "arp::discovery::a_port_added_after_start_is_watched_at_once";
    let Some(bin) = agent_bin(name) else { return };
    if !arping_available(name) {
        return;
    }
    let mut br = Bridge::new(&["10.96.7.10"]);
    // Discovery (no interface list) with the backstop rescan an hour away: only a
    // link event can attach the new port within the deadline.
    let agent = Agent::start(&bin, "[detectors.arp]\nrescan_interval = \"1h\"\n");
    wait_for(Duration::from_secs(5), || {
        attached(&agent).contains(&br.hosts[0].port).then_some(())
    })
    .unwrap_or_else(|| panic!("first port not watched:\n{}", agent.raw_output()));
    let i = br.add_host("10.96.7.20");
    let port = br.hosts[i].port.clone();
    wait_for(Duration::from_secs(5), || {
        attached(&agent).contains(&port).then_some(())
    })
    .unwrap_or_else(|| panic!("new port {port} not watched:\n{}", agent.raw_output()));
    // And what the newcomer claims is seen on its own port.
    br.exec(
        i,
        &["arping", "-c", "1", "-w", "1", "-I", "eth0", "10.96.7.10"],
    );
    let binding = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["detector"] == "arp" && l["finding"] == "new_binding" && l["address"] == "10.96.7.20"
        })
    })
    .unwrap_or_else(|| panic!("newcomer's claim not seen:\n{}", agent.raw_output()));
    assert_eq!(binding["interface"], port.as_str(), "{binding}");
    let m = agent.metrics();
    assert_eq!(
        nodeward_tests::metric(&m, "nodeward_arp_interfaces_failed"),
        Some(0.0),
        "{m}"
    );
}

#[test]
fn agent_entered_with_nsenter_net_watches_that_namespace() {
    let name = "arp::discovery::agent_entered_with_nsenter_net_watches_that_namespace";
    let Some(bin) = agent_bin(name) else { return };
    if !arping_available(name) {
        return;
    }
    // A lab node: a namespace of its own holding a bridge with two sandboxes on one
    // address and a third that asks. /sys of the agent stays the root namespace's.
    let br = Bridge::new_in_node(&["10.96.8.10", "10.96.8.10", "10.96.8.1"]);
    let node = br.node.clone().expect("node namespace");
    let agent = Agent::start_nsenter_net(&bin, "[detectors.arp]\n", &node);
    let ports: Vec<String> = br.hosts.iter().map(|h| h.port.clone()).collect();
    wait_for(Duration::from_secs(5), || {
        let on = attached(&agent);
        (ports.iter().all(|p| on.contains(p)) && on.contains(&br.name)).then_some(())
    })
    .unwrap_or_else(|| panic!("the node's bridge not watched:\n{}", agent.raw_output()));
    let mut expected: Vec<&str> = ports.iter().map(String::as_str).collect();
    expected.push(&br.name);
    let foreign: Vec<String> = attached(&agent)
        .into_iter()
        .filter(|i| !expected.contains(&i.as_str()))
        .collect();
    assert!(
        foreign.is_empty(),
        "attached to interfaces of another namespace: {foreign:?}"
    );
    br.exec(
        2,
        &["arping", "-c", "2", "-w", "3", "-I", "eth0", "10.96.8.10"],
    );
    let conflict = wait_for(Duration::from_secs(5), || {
        first_conflict(&agent, "10.96.8.10")
    })
    .unwrap_or_else(|| panic!("no conflict in the node:\n{}", agent.raw_output()));
    assert_eq!(conflict["bridge"], br.name.as_str(), "{conflict}");
    let unknown = agent
        .logs()
        .into_iter()
        .filter(|l| {
            l["error"].as_str().is_some_and(|e| {
                e.contains("no such interface") || e.contains("unknown network interface")
            })
        })
        .count();
    assert_eq!(
        unknown,
        0,
        "missing-interface errors:\n{}",
        agent.raw_output()
    );
}

#[test]
fn a_claim_seen_at_the_bridge_names_the_port_it_was_learned_on() {
    let name = "arp::discovery::a_claim_seen_at_the_bridge_names_the_port_it_was_learned_on";
    let Some(bin) = agent_bin(name) else { return };
    if !arping_available(name) {
        return;
    }
    // Only the bridge device is watched (its ports are not): the two sandboxes' replies
    // to the host are seen there alone and attributed through the forwarding database.
    let br = Bridge::new(&["10.96.9.10", "10.96.9.10"]);
    assert!(nodeward_tests::sh(&[
        "ip",
        "addr",
        "add",
        "10.96.9.1/24",
        "dev",
        &br.name
    ]));
    let agent = Agent::start(
        &bin,
        &format!("[detectors.arp]\ninterfaces = [\"{}\"]\n", br.name),
    );
    let out = std::process::Command::new("arping")
        .args(["-c", "2", "-w", "3", "-I", &br.name, "10.96.9.10"])
        .output()
        .expect("arping");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("reply"),
        "no reply to the host: {out:?}"
    );
    let conflict = wait_for(Duration::from_secs(5), || {
        first_conflict(&agent, "10.96.9.10")
    })
    .unwrap_or_else(|| panic!("no conflict:\n{}", agent.raw_output()));
    let ports = [br.hosts[0].port.as_str(), br.hosts[1].port.as_str()];
    let (now, was) = (
        conflict["interface"].as_str().unwrap_or(""),
        conflict["old_interface"].as_str().unwrap_or(""),
    );
    assert!(
        ports.contains(&now) && ports.contains(&was) && now != was,
        "both member ports named, not {}: {conflict}",
        br.name
    );
    let (mac_a, mac_b) = (br.mac(0), br.mac(1));
    let port_of = |mac: &str| {
        if mac == mac_a {
            ports[0]
        } else if mac == mac_b {
            ports[1]
        } else {
            ""
        }
    };
    assert_eq!(
        now,
        port_of(conflict["mac"].as_str().unwrap_or("")),
        "{conflict}"
    );
}
