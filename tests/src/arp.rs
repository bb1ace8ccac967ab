//! End to end, `arp` detector: real namespaces on a real bridge, real ARP from
//! arping/ping; duplicate address seen on the wire with both owners and ports.

use std::time::Duration;

use nodeward_tests::{Agent, Bridge, agent_bin, metric, skip, wait_for};

#[path = "arp/discovery.rs"]
mod discovery;
#[path = "arp/domains.rs"]
mod domains;
#[path = "arp/takeover.rs"]
mod takeover;

fn arping_available(name: &str) -> bool {
    if std::path::Path::new("/usr/bin/arping").exists() {
        true
    } else {
        skip(
            name,
            "arping not installed (cargo xtask setup --test-deps installs iputils-arping)",
        );
        false
    }
}

/// Every MAC of a conflict finding's detail.
fn finding_macs(finding: &serde_json::Value) -> Vec<String> {
    let detail: serde_json::Value =
        serde_json::from_str(finding["detail"].as_str().unwrap_or("{}")).unwrap_or_default();
    detail["macs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect()
}

/// `MAC@port` of every owner in a `nodeward bindings --json` row.
fn conflict_owners(row: &serde_json::Value) -> Vec<String> {
    row["conflict_macs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}@{}",
                m[0].as_str().unwrap_or(""),
                m[1].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn duplicate_ip_is_a_conflict_with_both_macs_and_ports_and_clears_when_one_leaves() {
    let name =
        "arp::duplicate_ip_is_a_conflict_with_both_macs_and_ports_and_clears_when_one_leaves";
    let Some(bin) = agent_bin(name) else { return };
    if !arping_available(name) {
        return;
    }
    // Two sandboxes handed the same address, and a third that asks for it.
    let br = Bridge::new(&["10.97.0.10", "10.97.0.10", "10.97.0.30"]);
    let ports = format!(
        "[\"{}\", \"{}\", \"{}\"]",
        br.hosts[0].port, br.hosts[1].port, br.hosts[2].port
    );
    let agent = Agent::start(
        &bin,
        &format!("[detectors.arp]\ninterfaces = {ports}\nquiet_period = \"4s\"\n"),
    );
    let (mac_a, mac_b) = (br.mac(0), br.mac(1));

    let asked = std::time::SystemTime::now();
    let out = br.exec(
        2,
        &["arping", "-c", "2", "-w", "3", "-I", "eth0", "10.97.0.10"],
    );
    let replies = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        replies.contains(&mac_a.to_uppercase()) || replies.contains(&mac_a),
        "arping saw no reply from A:\n{replies}"
    );
    let conflict = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["detector"] == "arp" && l["finding"] == "conflict" && l["address"] == "10.97.0.10"
        })
    })
    .unwrap_or_else(|| panic!("no conflict:\n{}", agent.raw_output()));
    let macs = finding_macs(&conflict);
    assert!(
        macs.contains(&mac_a) && macs.contains(&mac_b),
        "{macs:?} vs {mac_a} {mac_b}"
    );
    let port = conflict["interface"].as_str().unwrap();
    assert!(
        port == br.hosts[0].port || port == br.hosts[1].port,
        "{port}"
    );
    // Both owners answer the first request at once: the conflict is logged within a
    // second of the replies, i.e. of the moment we asked.
    let logged = nodeward_tests::parse_rfc3339(conflict["timestamp"].as_str().unwrap())
        .expect("log timestamp");
    let asked = asked
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        logged - asked < 1.0,
        "conflict logged {:.3} s after the request",
        logged - asked
    );

    // The bindings ground truth shows the conflict, with both owners and their ports.
    // The agent publishes its conflicts just after logging the finding: poll for them.
    let bindings = || {
        let out = agent.cli(&["bindings", "--json"]);
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
        v["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["address"] == "10.97.0.10")
            .cloned()
    };
    let row = wait_for(Duration::from_secs(5), || {
        bindings().filter(|b| b["conflict"] == true)
    })
    .or_else(bindings)
    .expect("binding listed");
    assert_eq!(row["conflict"], true, "{row}");
    let owners = conflict_owners(&row);
    assert!(
        owners.contains(&format!("{mac_a}@{}", br.hosts[0].port)),
        "{owners:?}"
    );
    assert!(
        owners.contains(&format!("{mac_b}@{}", br.hosts[1].port)),
        "{owners:?}"
    );
    // Set with the conflicts, just after the finding is logged: poll.
    let m = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        (metric(&m, "nodeward_arp_conflicts_active") == Some(1.0)).then_some(m)
    })
    .unwrap_or_else(|| agent.metrics());
    assert_eq!(
        metric(&m, "nodeward_arp_conflicts_active"),
        Some(1.0),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("nodeward_arp_conflict_active{address=\"10.97.0.10\"")),
        "capped series missing:\n{m}"
    );
    let (code, body) = agent.get(&format!("/bindings?interface={}", br.hosts[0].port));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("10.97.0.10"), "{body}");

    // B leaves; A keeps answering; after the quiet period the conflict clears.
    br.remove(1);
    let _ = br.exec(
        2,
        &["arping", "-c", "1", "-w", "2", "-I", "eth0", "10.97.0.10"],
    );
    wait_for(Duration::from_secs(12), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "conflict_cleared" && l["address"] == "10.97.0.10")
    })
    .unwrap_or_else(|| panic!("conflict never cleared:\n{}", agent.raw_output()));
    // Set with the conflicts, just after the finding is logged: poll.
    let m = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        (metric(&m, "nodeward_arp_conflicts_active") == Some(0.0)
            && !m
                .lines()
                .any(|l| l.starts_with("nodeward_arp_conflict_active{")))
        .then_some(m)
    })
    .unwrap_or_else(|| agent.metrics());
    assert_eq!(
        metric(&m, "nodeward_arp_conflicts_active"),
        Some(0.0),
        "{m}"
    );
    assert!(
        !m.lines()
            .any(|l| l.starts_with("nodeward_arp_conflict_active{")),
        "series must vanish with the conflict:\n{m}"
    );
}

#[test]
fn ordinary_arp_and_one_mac_change_raise_no_conflict() {
    let name = "arp::ordinary_arp_and_one_mac_change_raise_no_conflict";
    let Some(bin) = agent_bin(name) else { return };
    let br = Bridge::new(&[
        "10.98.0.1",
        "10.98.0.2",
        "10.98.0.3",
        "10.98.0.4",
        "10.98.0.5",
    ]);
    let ports: Vec<String> = br.hosts.iter().map(|h| format!("\"{}\"", h.port)).collect();
    let agent = Agent::start(
        &bin,
        &format!("[detectors.arp]\ninterfaces = [{}]\n", ports.join(", ")),
    );
    let ping_all = || {
        for i in 0..br.hosts.len() {
            for j in 0..br.hosts.len() {
                if i != j {
                    let out = br.exec(i, &["ping", "-c", "1", "-W", "1", &br.hosts[j].ip]);
                    assert!(out.status.success(), "ping {i}->{j} failed");
                }
            }
        }
    };
    ping_all();
    // Host 3 changes its MAC once (a new NIC), then everyone talks again.
    // Not a wait for a condition: time must pass. A new MAC claiming the address within
    // `conflict_window` (500 ms by default) of the old MAC's last claim is by definition
    // two live MACs, a conflict; the move must come well after the old MAC's last ARP.
    std::thread::sleep(Duration::from_millis(1500));
    for args in [
        &["ip", "link", "set", "eth0", "down"][..],
        &["ip", "link", "set", "eth0", "address", "02:42:00:00:98:04"],
        &["ip", "link", "set", "eth0", "up"],
    ] {
        assert!(br.exec(3, args).status.success());
    }
    for i in 0..br.hosts.len() {
        let _ = br.exec(i, &["ip", "neigh", "flush", "all"]);
    }
    ping_all();
    let change = wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "mac_change" && l["address"] == "10.98.0.4")
    })
    .unwrap_or_else(|| panic!("the MAC change was not reported:\n{}", agent.raw_output()));
    assert_eq!(change["mac"], "02:42:00:00:98:04");
    // Sentinel for the checks below: an address claimed for the first time after all of
    // the above (a second address of host 4, asked for by host 0). Kernel records are
    // processed in order, so once its new_binding is logged, any conflict raised by the
    // ARP traffic above has been logged too.
    let out = br.exec(4, &["ip", "addr", "add", "10.98.0.6/24", "dev", "eth0"]);
    assert!(out.status.success(), "ip addr add on host 4: {out:?}");
    let out = br.exec(0, &["ping", "-c", "1", "-W", "1", "10.98.0.6"]);
    assert!(out.status.success(), "ping 0->10.98.0.6 failed: {out:?}");
    let sentinel = wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "new_binding" && l["address"] == "10.98.0.6")
    })
    .unwrap_or_else(|| {
        panic!(
            "no new_binding for the sentinel address:\n{}",
            agent.raw_output()
        )
    });
    assert_eq!(sentinel["mac"], br.mac(4).as_str(), "{sentinel}");
    let news = agent
        .logs()
        .iter()
        .filter(|l| l["finding"] == "new_binding")
        .count();
    assert!(news >= 5, "every host should have a binding ({news})");
    let bad: Vec<_> = agent
        .logs()
        .into_iter()
        .filter(|l| {
            l["detector"] == "arp"
                && l["finding"]
                    .as_str()
                    .is_some_and(|f| f.contains("conflict"))
        })
        .collect();
    assert!(bad.is_empty(), "false conflicts: {bad:?}");
    let m = agent.metrics();
    assert_eq!(
        metric(&m, "nodeward_arp_conflicts_active"),
        Some(0.0),
        "{m}"
    );
}

#[test]
fn arp_guard_leaves_only_the_owner_answering() {
    let name = "arp::arp_guard_leaves_only_the_owner_answering";
    let Some(bin) = agent_bin(name) else { return };
    if !arping_available(name) {
        return;
    }
    let br = Bridge::new(&["10.96.0.10", "10.96.0.10", "10.96.0.30"]);
    let ports = format!(
        "[\"{}\", \"{}\", \"{}\"]",
        br.hosts[0].port, br.hosts[1].port, br.hosts[2].port
    );
    let agent = Agent::start(
        &bin,
        &format!("agent.mode = \"enforce\"\n[detectors.arp]\ninterfaces = {ports}\n"),
    );
    let (owner, newcomer) = (br.mac(0), br.mac(1));
    let replies = |br: &Bridge| {
        String::from_utf8_lossy(
            &br.exec(
                2,
                &["arping", "-c", "2", "-w", "3", "-I", "eth0", "10.96.0.10"],
            )
            .stdout,
        )
        .to_lowercase()
    };
    let before = replies(&br);
    assert!(
        before.contains(&owner) && before.contains(&newcomer),
        "both should answer first:\n{before}"
    );

    // The guard: drop ARP claims of the owned address from the newcomer's MAC, on its port.
    let out = agent.cli(&[
        "quarantine",
        "add",
        "--arp-claim",
        "10.96.0.10",
        "--drop-mac",
        &newcomer,
        "--interface",
        &br.hosts[1].port,
        "--ttl",
        "2m",
        "--reason",
        "duplicate IP",
    ]);
    assert!(out.status.success(), "{out:?}");
    let after = replies(&br);
    assert!(
        after.contains(&owner),
        "the owner must still answer:\n{after}"
    );
    assert!(
        !after.contains(&newcomer),
        "the newcomer still answers:\n{after}"
    );
    assert!(
        metric(
            &agent.metrics(),
            "nodeward_quarantine_kernel_total{counter=\"drop_arp\"}"
        )
        .unwrap()
            >= 1.0
    );
}

#[test]
fn gratuitous_takeover_probe_conflict_and_ipam_drift() {
    let name = "arp::gratuitous_takeover_probe_conflict_and_ipam_drift";
    let Some(bin) = agent_bin(name) else { return };
    if !arping_available(name) {
        return;
    }
    let br = Bridge::new(&["10.95.0.10", "10.95.0.10", "10.95.0.30"]);
    let (owner, newcomer) = (br.mac(0), br.mac(1));
    let leases = tempfile::NamedTempFile::new().unwrap();
    // IPAM believes 10.95.0.10 is free (the sandbox's lease was released: incident 002).
    std::fs::write(leases.path(), "# ip,mac,owner\n10.95.0.30,,sandbox-c\n").unwrap();
    let ports: Vec<String> = br.hosts.iter().map(|h| format!("\"{}\"", h.port)).collect();
    let agent = Agent::start(
        &bin,
        &format!(
            "[detectors.arp]\ninterfaces = [{}]\nleases = \"{}\"\n",
            ports.join(", "),
            leases.path().display()
        ),
    );
    // The owner announces itself (gratuitous ARP, as at boot).
    let _ = br.exec(0, &["arping", "-U", "-c", "1", "-I", "eth0", "10.95.0.10"]);
    wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "new_binding" && l["address"] == "10.95.0.10")
    })
    .unwrap_or_else(|| panic!("no binding:\n{}", agent.raw_output()));
    // IPAM drift: live on the wire, free in IPAM.
    let drift = wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "ipam_live_but_free" && l["address"] == "10.95.0.10")
    })
    .unwrap_or_else(|| panic!("no IPAM drift:\n{}", agent.raw_output()));
    assert_eq!(drift["mac"], owner.as_str());
    // The drift gauge is set just after the finding is logged: poll.
    let m = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        (metric(&m, "nodeward_arp_ipam_drift{kind=\"ipam_live_but_free\"}") == Some(1.0))
            .then_some(m)
    })
    .unwrap_or_else(|| agent.metrics());
    assert_eq!(
        metric(&m, "nodeward_arp_ipam_drift{kind=\"ipam_live_but_free\"}"),
        Some(1.0),
        "{m}"
    );

    // RFC 5227: the newcomer probes the address before using it: a probe conflict.
    let _ = br.exec(
        1,
        &[
            "arping",
            "-D",
            "-c",
            "1",
            "-w",
            "2",
            "-I",
            "eth0",
            "10.95.0.10",
        ],
    );
    let probe = wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "probe_conflict" && l["address"] == "10.95.0.10")
    })
    .unwrap_or_else(|| panic!("no probe conflict:\n{}", agent.raw_output()));
    assert_eq!(probe["mac"], newcomer.as_str());

    // Gratuitous takeover by the newcomer, then both answer: a conflict.
    // Not a wait for a condition: time must pass. The probe just stamped the binding's
    // last event, and the kernel rate-limits a binding's events (ARP_EVENT_INTERVAL_NS,
    // 100 ms): a takeover sooner would be counted as rate-limited, with no event.
    std::thread::sleep(Duration::from_millis(700));
    let _ = br.exec(1, &["arping", "-U", "-c", "1", "-I", "eth0", "10.95.0.10"]);
    let takeover = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["detector"] == "arp"
                && l["address"] == "10.95.0.10"
                && l["mac"] == newcomer.as_str()
                && l["finding"] != "probe_conflict"
        })
    })
    .unwrap_or_else(|| panic!("no takeover:\n{}", agent.raw_output()));
    let d: serde_json::Value = serde_json::from_str(takeover["detail"].as_str().unwrap()).unwrap();
    assert_eq!(d["gratuitous"], true, "{d}");
    let _ = br.exec(
        2,
        &["arping", "-c", "2", "-w", "3", "-I", "eth0", "10.95.0.10"],
    );
    wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["address"] == "10.95.0.10"
                && l["finding"]
                    .as_str()
                    .is_some_and(|f| f == "conflict" || f == "garp_conflict")
        })
    })
    .unwrap_or_else(|| panic!("no conflict after the takeover:\n{}", agent.raw_output()));

    // IPAM catches up (a lease for the owner): the drift goes away.
    std::fs::write(
        leases.path(),
        format!("10.95.0.10,{owner},sandbox-a\n10.95.0.30,,sandbox-c\n"),
    )
    .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || (metric(
            &agent.metrics(),
            "nodeward_arp_ipam_drift{kind=\"ipam_live_but_free\"}"
        ) == Some(0.0))
        .then_some(()))
        .is_some(),
        "drift not cleared after the lease file changed"
    );
}

#[test]
fn duplicate_ip_with_martian_drops_is_one_ip_conflict_incident() {
    let name = "arp::duplicate_ip_with_martian_drops_is_one_ip_conflict_incident";
    let Some(bin) = agent_bin(name) else { return };
    if !arping_available(name) {
        return;
    }
    let br = Bridge::new(&["10.94.0.10", "10.94.0.10", "10.94.0.30"]);
    let ports: Vec<String> = br.hosts.iter().map(|h| format!("\"{}\"", h.port)).collect();
    let agent = Agent::start(
        &bin,
        &format!(
            "[detectors.arp]\ninterfaces = [{}]\n[detectors.martian]\nflood_threshold = 5\nwindow = \"5s\"\n",
            ports.join(", ")
        ),
    );
    // The conflict on the wire...
    let _ = br.exec(
        2,
        &["arping", "-c", "2", "-w", "3", "-I", "eth0", "10.94.0.10"],
    );
    wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "conflict" && l["address"] == "10.94.0.10")
    })
    .unwrap_or_else(|| panic!("no conflict:\n{}", agent.raw_output()));
    // ...and its symptom: one holder's broadcasts reach the other, whose kernel drops
    // them as martians (a packet "from" its own address).
    let _ = br.exec(
        0,
        &[
            "ping",
            "-b",
            "-c",
            "10",
            "-i",
            "0.2",
            "-W",
            "1",
            "10.94.0.255",
        ],
    );
    let incident = wait_for(Duration::from_secs(8), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "ip_conflict")
    })
    .unwrap_or_else(|| panic!("no incident:\n{}", agent.raw_output()));
    assert_eq!(incident["address"], "10.94.0.10");
    let d: serde_json::Value = serde_json::from_str(incident["detail"].as_str().unwrap()).unwrap();
    assert!(d["arp"].is_object() && d["martian"].is_object(), "{d}");
    assert_eq!(
        metric(
            &agent.metrics(),
            "nodeward_incidents_total{kind=\"ip_conflict\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn ipv6_dad_probe_for_an_address_in_use_is_a_conflict() {
    let name = "arp::ipv6_dad_probe_for_an_address_in_use_is_a_conflict";
    let Some(bin) = agent_bin(name) else { return };
    let br = Bridge::new(&["10.93.0.1", "10.93.0.2", "10.93.0.3"]);
    let ports: Vec<String> = br.hosts.iter().map(|h| format!("\"{}\"", h.port)).collect();
    let agent = Agent::start(
        &bin,
        &format!("[detectors.arp]\ninterfaces = [{}]\n", ports.join(", ")),
    );
    let (owner, newcomer) = (br.mac(0), br.mac(1));
    // The owner holds fd00:93::10 and answers for it (C asks: a solicited advertisement).
    assert!(
        br.exec(
            0,
            &["ip", "-6", "addr", "add", "fd00:93::10/64", "dev", "eth0"]
        )
        .status
        .success()
    );
    assert!(
        br.exec(
            2,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                "fd00:93::30/64",
                "dev",
                "eth0",
                "nodad"
            ]
        )
        .status
        .success()
    );
    let seen = wait_for(Duration::from_secs(10), || {
        let _ = br.exec(2, &["ping", "-6", "-c", "1", "-W", "1", "fd00:93::10"]);
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "new_binding" && l["address"] == "fd00:93::10")
    })
    .unwrap_or_else(|| panic!("no IPv6 binding:\n{}", agent.raw_output()));
    assert_eq!(seen["mac"], owner.as_str());
    // The newcomer is handed the same address: its duplicate address detection probes it.
    assert!(
        br.exec(
            1,
            &["ip", "-6", "addr", "add", "fd00:93::10/64", "dev", "eth0"]
        )
        .status
        .success()
    );
    let probe = wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "probe_conflict" && l["address"] == "fd00:93::10")
    })
    .unwrap_or_else(|| panic!("no DAD conflict:\n{}", agent.raw_output()));
    assert_eq!(probe["mac"], newcomer.as_str());
    let d: serde_json::Value = serde_json::from_str(probe["detail"].as_str().unwrap()).unwrap();
    assert_eq!(d["old_mac"], owner.as_str());
}

/// `agent.ebpf_log`: the programs' own diagnostics (aya-log) reach the agent's log. An
/// ARP frame with an opcode the observer does not handle (3, RARP) is a diagnostic of
/// `net_tc`; a normal ARP request sent after it is the sentinel that the frames were
/// seen at all.
#[test]
fn ebpf_diagnostics_reach_the_log_when_enabled() {
    let name = "arp::ebpf_diagnostics_reach_the_log_when_enabled";
    let Some(bin) = agent_bin(name) else { return };
    if !nodeward_tests::scapy_available(name) {
        return;
    }
    let br = Bridge::new(&["10.97.3.10", "10.97.3.20"]);
    let agent = Agent::start(
        &bin,
        &format!(
            "agent.ebpf_log = true\nagent.log_level = \"debug\"\n[detectors.arp]\ninterfaces = [\"{}\"]\n",
            br.hosts[0].port
        ),
    );
    let script = "from scapy.all import Ether, ARP, sendp\n\
                  sendp(Ether(dst='ff:ff:ff:ff:ff:ff')/ARP(op=3, psrc='10.97.3.10', pdst='10.97.3.20'), iface='eth0', verbose=False)\n\
                  sendp(Ether(dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, psrc='10.97.3.10', pdst='10.97.3.20'), iface='eth0', verbose=False)\n";
    let out = br.exec(0, &[nodeward_tests::PYTHON, "-c", script]);
    assert!(out.status.success(), "scapy: {out:?}");
    let sentinel = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["detector"] == "arp" && l["finding"] == "new_binding" && l["address"] == "10.97.3.10"
        })
    });
    assert!(
        sentinel.is_some(),
        "the observer saw no frame from the sender:\n{}",
        agent.raw_output()
    );
    let diagnostic = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("arp: not an Ethernet/IPv4 request or reply (op 3)"))
        })
    });
    assert!(
        diagnostic.is_some(),
        "no eBPF diagnostic for the RARP frame:\n{}",
        agent.raw_output()
    );
}
