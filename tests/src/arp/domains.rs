//! L2 domains: the same address on two bridges, or on two VLANs of one bridge, is two
//! bindings and never a conflict; a duplicate inside one VLAN is reported with that VLAN;
//! a reply seen again at the bridge device keeps the port it arrived on.

use std::time::Duration;

use nodeward_tests::{Agent, Bridge, agent_bin, wait_for};

use super::{arping_available, conflict_owners, finding_macs};

/// `arping` from host `i` of `br`, on `dev`, for `addr` (two requests, replies awaited).
fn ask(br: &Bridge, i: usize, dev: &str, addr: &str) -> String {
    let out = br.exec(i, &["arping", "-c", "2", "-w", "3", "-I", dev, addr]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Host `i` of `br` claims `addr` with its own MAC in an ARP reply sent from eth0
/// inside `tags` (outermost first; a tag of the first is 802.1ad when there are two),
/// gratuitous (`pdst` = `addr`) or not. Sent with scapy: this kernel has no 8021q
/// devices. The receiving veth moves the outer tag into the skb's metadata.
fn claim(br: &Bridge, i: usize, tags: &[u16], addr: &str, gratuitous: bool) {
    let layers: Vec<String> = match tags {
        [] => Vec::new(),
        [one] => vec![format!("Dot1Q(vlan={one})")],
        [outer, inner, ..] => vec![
            format!("Dot1AD(vlan={outer})"),
            format!("Dot1Q(vlan={inner})"),
        ],
    };
    let pdst = if gratuitous { addr } else { "10.96.4.99" };
    let frame = std::iter::once("Ether(dst='ff:ff:ff:ff:ff:ff')".to_string())
        .chain(layers)
        .chain(std::iter::once(format!(
            "ARP(op=2, hwsrc=get_if_hwaddr('eth0'), psrc='{addr}', pdst='{pdst}', hwdst='ff:ff:ff:ff:ff:ff')"
        )))
        .collect::<Vec<_>>()
        .join("/");
    let script = format!(
        "from scapy.all import Ether, Dot1Q, Dot1AD, ARP, sendp, get_if_hwaddr\nsendp({frame}, iface='eth0', verbose=False)\n"
    );
    let out = br.exec(i, &[nodeward_tests::PYTHON, "-c", &script]);
    assert!(out.status.success(), "scapy: {out:?}");
}

fn ports(brs: &[&Bridge], with_bridge: bool) -> String {
    let mut names: Vec<String> = brs
        .iter()
        .flat_map(|b| b.hosts.iter().map(|h| format!("\"{}\"", h.port)))
        .collect();
    if with_bridge {
        names.extend(brs.iter().map(|b| format!("\"{}\"", b.name)));
    }
    format!("[{}]", names.join(", "))
}

fn findings(agent: &Agent, addr: &str) -> Vec<serde_json::Value> {
    agent
        .logs()
        .into_iter()
        .filter(|l| l["detector"] == "arp" && l["address"] == addr)
        .collect()
}

fn is_conflict(l: &serde_json::Value) -> bool {
    l["finding"]
        .as_str()
        .is_some_and(|k| k.ends_with("conflict"))
}

#[test]
fn one_subnet_on_two_isolated_bridges_is_two_bindings_not_a_conflict() {
    let name = "arp::domains::one_subnet_on_two_isolated_bridges_is_two_bindings_not_a_conflict";
    let Some(bin) = agent_bin(name) else { return };
    if !arping_available(name) {
        return;
    }
    // Two tenants' sandboxes with overlapping subnets on bridges that are not connected.
    let one = Bridge::new(&["10.96.1.10", "10.96.1.20"]);
    let two = Bridge::new(&["10.96.1.10", "10.96.1.20"]);
    let agent = Agent::start(
        &bin,
        &format!(
            "[detectors.arp]\ninterfaces = {}\n",
            ports(&[&one, &two], false)
        ),
    );
    for br in [&one, &two] {
        let replies = ask(br, 1, "eth0", "10.96.1.10");
        assert!(
            replies.contains("reply"),
            "no ARP reply on {}:\n{replies}",
            br.name
        );
    }
    // One new binding per bridge, each named with its bridge.
    let bridges = wait_for(Duration::from_secs(5), || {
        let mut b: Vec<String> = findings(&agent, "10.96.1.10")
            .iter()
            .filter(|l| l["finding"] == "new_binding")
            .map(|l| l["bridge"].as_str().unwrap_or("").to_string())
            .collect();
        b.sort();
        (b.len() == 2).then_some(b)
    })
    .unwrap_or_else(|| panic!("two new bindings expected:\n{}", agent.raw_output()));
    let mut want = vec![one.name.clone(), two.name.clone()];
    want.sort();
    assert_eq!(bridges, want);
    let all = findings(&agent, "10.96.1.10");
    assert!(
        !all.iter()
            .any(|l| is_conflict(l) || l["finding"] == "mac_change"),
        "an address on two isolated bridges is no conflict:\n{all:#?}"
    );
}

#[test]
fn vlans_are_domains_and_a_tagged_duplicate_is_reported_with_its_vlan() {
    let name = "arp::domains::vlans_are_domains_and_a_tagged_duplicate_is_reported_with_its_vlan";
    let Some(bin) = agent_bin(name) else { return };
    if !nodeward_tests::scapy_available(name) {
        return;
    }
    // One bridge; two sandboxes claim 10.96.4.10 on VLAN 64 (a duplicate), a third on
    // VLAN 65 (another domain), a fourth inside QinQ 100/64 (outer tag 100: a third
    // domain, inner 64 reported).
    let br = Bridge::new(&["10.96.3.1", "10.96.3.2", "10.96.3.3", "10.96.3.4"]);
    let agent = Agent::start(
        &bin,
        &format!(
            "[detectors.arp]\ninterfaces = {}\nconflict_window = \"10s\"\n",
            ports(&[&br], false)
        ),
    );
    let (mac_a, mac_b, mac_c, mac_d) = (br.mac(0), br.mac(1), br.mac(2), br.mac(3));
    claim(&br, 2, &[65], "10.96.4.10", true);
    claim(&br, 3, &[100, 64], "10.96.4.10", true);
    claim(&br, 0, &[64], "10.96.4.10", true);
    claim(&br, 1, &[64], "10.96.4.10", false);

    let conflict = wait_for(Duration::from_secs(5), || {
        findings(&agent, "10.96.4.10").into_iter().find(is_conflict)
    })
    .unwrap_or_else(|| panic!("no conflict on VLAN 64:\n{}", agent.raw_output()));
    assert_eq!(conflict["vlan"], 64, "{conflict}");
    assert_eq!(conflict["bridge"], br.name.as_str(), "{conflict}");
    let macs = finding_macs(&conflict);
    assert!(
        macs.contains(&mac_a) && macs.contains(&mac_b),
        "{macs:?} vs {mac_a} {mac_b}"
    );
    for other in [&mac_c, &mac_d] {
        assert!(
            !macs.contains(other),
            "another domain's owner in VLAN 64's conflict: {macs:?}"
        );
    }
    let all = findings(&agent, "10.96.4.10");
    let binding = |vlan: u16, mac: &str| {
        all.iter()
            .find(|l| l["finding"] == "new_binding" && l["vlan"] == vlan && l["mac"] == mac)
            .cloned()
    };
    assert!(
        binding(65, &mac_c).is_some(),
        "VLAN 65 binding missing:\n{all:#?}"
    );
    let qinq = binding(100, &mac_d).unwrap_or_else(|| panic!("QinQ binding missing:\n{all:#?}"));
    let d: serde_json::Value = serde_json::from_str(qinq["detail"].as_str().unwrap()).unwrap();
    assert_eq!(d["inner_vlan"], 64, "{d}");
    assert!(
        !all.iter()
            .any(|l| (is_conflict(l) || l["finding"] == "mac_change") && l["vlan"] != 64),
        "only VLAN 64 has a duplicate:\n{all:#?}"
    );
}

#[test]
fn replies_to_the_host_name_both_ports_not_the_bridge() {
    let name = "arp::domains::replies_to_the_host_name_both_ports_not_the_bridge";
    let Some(bin) = agent_bin(name) else { return };
    if !arping_available(name) {
        return;
    }
    // The sandbox incident's shape: two sandboxes on one address behind the host's
    // bridge, and the host itself asks. Each reply is seen on its port, then again at
    // the bridge device on its way to the host.
    let br = Bridge::new(&["10.96.5.10", "10.96.5.10"]);
    let host_ip = "10.96.5.1/24";
    assert!(nodeward_tests::sh(&[
        "ip", "addr", "add", host_ip, "dev", &br.name
    ]));
    let agent = Agent::start(
        &bin,
        &format!(
            "[detectors.arp]\ninterfaces = {}\nquiet_period = \"30s\"\n",
            ports(&[&br], true)
        ),
    );
    let (mac_a, mac_b) = (br.mac(0), br.mac(1));
    let out = std::process::Command::new("arping")
        .args(["-c", "3", "-w", "4", "-I", &br.name, "10.96.5.10"])
        .output()
        .expect("arping");
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(
        replies.contains("reply"),
        "no reply to the host:\n{replies}"
    );
    let conflict = wait_for(Duration::from_secs(5), || {
        findings(&agent, "10.96.5.10").into_iter().find(is_conflict)
    })
    .unwrap_or_else(|| panic!("no conflict:\n{}", agent.raw_output()));
    let port = conflict["interface"].as_str().unwrap_or("");
    assert!(
        port == br.hosts[0].port || port == br.hosts[1].port,
        "the claimant's port, not the bridge: {conflict}"
    );
    // Both owners with their ports in the bindings view, while the host keeps asking.
    let owners = wait_for(Duration::from_secs(5), || {
        let out = agent.cli(&["bindings", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let row = v["bindings"]
            .as_array()?
            .iter()
            .find(|b| b["address"] == "10.96.5.10" && b["conflict"] == true)?
            .clone();
        Some(conflict_owners(&row))
    })
    .unwrap_or_else(|| panic!("no conflict in bindings:\n{}", agent.raw_output()));
    assert!(
        owners.contains(&format!("{mac_a}@{}", br.hosts[0].port)),
        "{owners:?}"
    );
    assert!(
        owners.contains(&format!("{mac_b}@{}", br.hosts[1].port)),
        "{owners:?}"
    );
    assert!(
        !owners.iter().any(|o| o.ends_with(&format!("@{}", br.name))),
        "the bridge named as a port: {owners:?}"
    );
}

#[test]
fn access_ports_of_a_vlan_filtering_bridge_are_domains_by_their_pvid() {
    let name = "arp::domains::access_ports_of_a_vlan_filtering_bridge_are_domains_by_their_pvid";
    let Some(bin) = agent_bin(name) else { return };
    if !nodeward_tests::scapy_available(name) {
        return;
    }
    // A Proxmox VLAN-aware bridge: each guest's port is an access port (`tag=64` is
    // `bridge vlan add … pvid untagged`), the guests send untagged frames. Two guests on
    // VLAN 64 claim one address (a duplicate); a third claims it on VLAN 65.
    let br = Bridge::new(&["10.96.6.1", "10.96.6.2", "10.96.6.3"]);
    if !nodeward_tests::sh(&[
        "ip",
        "link",
        "set",
        &br.name,
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ]) {
        nodeward_tests::skip(
            name,
            "this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING); the kernel half is tested by untagged_claims_on_an_access_port_are_bound_in_its_pvid",
        );
        return;
    }
    for (i, vid) in [(0, "64"), (1, "64"), (2, "65")] {
        let port = br.hosts[i].port.as_str();
        assert!(nodeward_tests::sh(&[
            "bridge", "vlan", "add", "dev", port, "vid", vid, "pvid", "untagged"
        ]));
        assert!(nodeward_tests::sh(&[
            "bridge", "vlan", "del", "dev", port, "vid", "1"
        ]));
    }
    let agent = Agent::start(
        &bin,
        &format!(
            "[detectors.arp]\ninterfaces = {}\nconflict_window = \"10s\"\n",
            ports(&[&br], false)
        ),
    );
    let (mac_a, mac_b, mac_c) = (br.mac(0), br.mac(1), br.mac(2));
    claim(&br, 2, &[], "10.96.6.10", true);
    claim(&br, 0, &[], "10.96.6.10", true);
    claim(&br, 1, &[], "10.96.6.10", false);
    let conflict = wait_for(Duration::from_secs(5), || {
        findings(&agent, "10.96.6.10").into_iter().find(is_conflict)
    })
    .unwrap_or_else(|| panic!("no conflict on VLAN 64:\n{}", agent.raw_output()));
    assert_eq!(conflict["vlan"], 64, "{conflict}");
    let macs = finding_macs(&conflict);
    assert!(
        macs.contains(&mac_a) && macs.contains(&mac_b) && !macs.contains(&mac_c),
        "{macs:?} vs {mac_a} {mac_b} (not {mac_c})"
    );
    let all = findings(&agent, "10.96.6.10");
    assert!(
        all.iter().any(|l| l["finding"] == "new_binding"
            && l["vlan"] == 65
            && l["mac"] == mac_c.as_str()),
        "VLAN 65 binding missing:\n{all:#?}"
    );
    assert!(
        !all.iter()
            .any(|l| (is_conflict(l) || l["finding"] == "mac_change") && l["vlan"] != 64),
        "only VLAN 64 has a duplicate:\n{all:#?}"
    );
}
