//! A gratuitous takeover of a live address: the agent asks the previous owner (its active
//! check) and declares the conflict the moment it answers, not whenever it next speaks.

use std::time::Duration;

use nodeward_tests::{Agent, Bridge, agent_bin, wait_for};

use super::arping_available;

/// Host `i` of `br` announces `addr` with its own MAC: a gratuitous ARP reply (scapy).
fn announce(br: &Bridge, i: usize, addr: &str) {
    let script = format!(
        "from scapy.all import Ether, ARP, sendp, get_if_hwaddr\n\
         m = get_if_hwaddr('eth0')\n\
         sendp(Ether(dst='ff:ff:ff:ff:ff:ff', src=m)/ARP(op=2, hwsrc=m, psrc='{addr}', pdst='{addr}', hwdst='ff:ff:ff:ff:ff:ff'), iface='eth0', verbose=False)\n"
    );
    let out = br.exec(i, &[nodeward_tests::PYTHON, "-c", &script]);
    assert!(out.status.success(), "scapy: {out:?}");
}

fn arp_findings(agent: &Agent, addr: &str) -> Vec<serde_json::Value> {
    agent
        .logs()
        .into_iter()
        .filter(|l| l["detector"] == "arp" && l["address"] == addr)
        .collect()
}

/// Milliseconds between two log lines' timestamps (RFC 3339).
fn ms_between(a: &serde_json::Value, b: &serde_json::Value) -> f64 {
    let t = |l: &serde_json::Value| {
        let s = l["timestamp"].as_str().unwrap_or_default();
        // HH:MM:SS.ffffff of the same day is enough here.
        let hms = s.split('T').nth(1).unwrap_or("").trim_end_matches('Z');
        let mut parts = hms.split(':');
        let h: f64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
        let m: f64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
        let sec: f64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
        (h * 3600.0 + m * 60.0 + sec) * 1000.0
    };
    t(b) - t(a)
}

#[test]
fn garp_takeover_of_a_live_address_is_a_conflict_at_once() {
    let name = "arp::takeover::garp_takeover_of_a_live_address_is_a_conflict_at_once";
    let Some(bin) = agent_bin(name) else { return };
    if !arping_available(name) || !nodeward_tests::scapy_available(name) {
        return;
    }
    // A holds 10.96.6.10 and stays quiet; B announces it with its own MAC.
    let br = Bridge::new(&["10.96.6.10", "10.96.6.20"]);
    let agent = Agent::start(
        &bin,
        &format!(
            "[detectors.arp]\nactive_check = true\ninterfaces = [\"{}\", \"{}\", \"{}\"]\nconflict_window = \"50ms\"\n",
            br.hosts[0].port, br.hosts[1].port, br.name
        ),
    );
    let (mac_a, mac_b) = (br.mac(0), br.mac(1));
    // A's claim (its ARP request carries its address).
    br.exec(
        0,
        &["arping", "-c", "1", "-w", "1", "-I", "eth0", "10.96.6.20"],
    );
    wait_for(Duration::from_secs(5), || {
        arp_findings(&agent, "10.96.6.10")
            .into_iter()
            .find(|l| l["finding"] == "new_binding" && l["mac"] == mac_a.as_str())
    })
    .unwrap_or_else(|| panic!("A's binding not seen:\n{}", agent.raw_output()));
    // A has been quiet for longer than the conflict window when B takes over.
    announce(&br, 1, "10.96.6.10");
    let change = wait_for(Duration::from_secs(5), || {
        arp_findings(&agent, "10.96.6.10")
            .into_iter()
            .find(|l| l["finding"] == "mac_change" && l["mac"] == mac_b.as_str())
    })
    .unwrap_or_else(|| panic!("B's takeover not seen:\n{}", agent.raw_output()));
    // The check goes to A, unicast, out of A's port; A answers; a conflict with both.
    let conflict = wait_for(Duration::from_secs(5), || {
        arp_findings(&agent, "10.96.6.10")
            .into_iter()
            .find(|l| l["finding"] == "conflict")
    })
    .unwrap_or_else(|| {
        panic!(
            "the previous owner answered no active check (no conflict):\n{}",
            agent.raw_output()
        )
    });
    let sent = agent
        .logs()
        .into_iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .or(l["message"].as_str())
                .is_some_and(|m| m.starts_with("active check: asked"))
        })
        .unwrap_or_else(|| panic!("no active check logged:\n{}", agent.raw_output()));
    assert_eq!(
        sent["to"],
        mac_a.as_str(),
        "asked the previous owner: {sent}"
    );
    assert_eq!(sent["interface"], br.hosts[0].port.as_str(), "{sent}");
    assert_eq!(conflict["mac"], mac_a.as_str(), "A answered: {conflict}");
    assert_eq!(
        conflict["interface"],
        br.hosts[0].port.as_str(),
        "{conflict}"
    );
    assert_eq!(
        conflict["old_interface"],
        br.hosts[1].port.as_str(),
        "{conflict}"
    );
    // The latency is reported, not asserted (no timed assertions on a shared machine):
    // A spoke only in answer to the check, so the conflict itself proves the check.
    let latency = ms_between(&change, &conflict);
    eprintln!("takeover to conflict: {latency:.1} ms (agent log timestamps)");
    let m = agent.metrics();
    assert_eq!(
        nodeward_tests::metric(&m, "nodeward_arp_active_checks_total{result=\"sent\"}"),
        Some(1.0),
        "{m}"
    );
}

#[test]
fn failover_takeover_stays_a_mac_change_after_the_active_check() {
    let name = "arp::takeover::failover_takeover_stays_a_mac_change_after_the_active_check";
    let Some(bin) = agent_bin(name) else { return };
    if !arping_available(name) || !nodeward_tests::scapy_available(name) {
        return;
    }
    // keepalived-style failover: A holds the virtual address 10.96.6.50, releases it
    // (stays up), B announces it. The active check asks A, who no longer answers.
    let br = Bridge::new(&["10.96.6.30", "10.96.6.40"]);
    let agent = Agent::start(
        &bin,
        &format!(
            "[detectors.arp]\nactive_check = true\ninterfaces = [\"{}\", \"{}\"]\nconflict_window = \"50ms\"\n",
            br.hosts[0].port, br.hosts[1].port
        ),
    );
    let mac_b = br.mac(1);
    let ip = |i: usize, verb: &str| {
        let out = br.exec(i, &["ip", "addr", verb, "10.96.6.50/32", "dev", "eth0"]);
        assert!(out.status.success(), "{out:?}");
    };
    ip(0, "add");
    announce(&br, 0, "10.96.6.50");
    wait_for(Duration::from_secs(5), || {
        arp_findings(&agent, "10.96.6.50")
            .into_iter()
            .find(|l| l["finding"] == "new_binding")
    })
    .unwrap_or_else(|| panic!("A's virtual address not seen:\n{}", agent.raw_output()));
    ip(0, "del");
    ip(1, "add");
    announce(&br, 1, "10.96.6.50");
    wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("active check: asked"))
        })
    })
    .unwrap_or_else(|| panic!("no active check sent:\n{}", agent.raw_output()));
    // A marker claim after the check: once it is seen, an answer to the check (which
    // would come back within milliseconds) would have been seen too.
    announce(&br, 1, "10.96.6.40");
    wait_for(Duration::from_secs(5), || {
        arp_findings(&agent, "10.96.6.40")
            .into_iter()
            .find(|l| l["finding"] == "new_binding")
    })
    .unwrap_or_else(|| panic!("marker claim not seen:\n{}", agent.raw_output()));
    let all = arp_findings(&agent, "10.96.6.50");
    assert!(
        all.iter()
            .any(|l| l["finding"] == "mac_change" && l["mac"] == mac_b.as_str()),
        "the failover is one mac_change:\n{all:#?}"
    );
    assert!(
        !all.iter().any(|l| l["finding"]
            .as_str()
            .is_some_and(|k| k.ends_with("conflict"))),
        "a failover is no conflict:\n{all:#?}"
    );
}
