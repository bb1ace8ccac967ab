//! End to end, `corosync` detector, with real corosync 3 (knet, crypto on) in network
//! namespaces on a bridge: a quiet quorate ring, a rogue member with the copied key
//! (incident 001), a flood of its replayed packets dropped in enforce mode (seen from
//! the member's own kernel), rogues with another key or a member's node id, corosync
//! started on a standalone node, and a malformed corosync.conf.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nodeward_tests::{
    Agent, CorosyncLab, agent_bin, detail, metric, parse_rfc3339, skip, wait_for,
};
use serde_json::Value;

fn lab(name: &str, ips: &[&str]) -> Option<CorosyncLab> {
    match CorosyncLab::new(ips) {
        Ok(l) => Some(l),
        Err(why) => {
            skip(name, &why);
            None
        }
    }
}

/// The agent's own copy of the cluster configuration (tests rewrite it).
fn agent_copy(conf: &Path) -> PathBuf {
    let copy = conf.with_file_name("agent-view.conf");
    std::fs::copy(conf, &copy).expect("copy corosync.conf");
    copy
}

fn member_side(conf: &Path, ports: &[&str], extra: &str) -> String {
    format!(
        "{extra}[detectors.corosync]\nconfig = \"{}\"\nrole = \"member\"\ninterfaces = [{}]\nflood_rate = 100\nquiet_period = \"5s\"\n",
        conf.display(),
        ports
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn corosync_findings(agent: &Agent) -> Vec<Value> {
    agent
        .logs()
        .into_iter()
        .filter(|l| l["detector"] == "corosync" && l["finding"].is_string())
        .collect()
}

fn find(agent: &Agent, kind: &str, addr: &str, secs: u64) -> Option<Value> {
    wait_for(Duration::from_secs(secs), || {
        corosync_findings(agent)
            .into_iter()
            .find(|l| l["finding"] == kind && l["address"] == addr)
    })
}

/// Whether a UDP socket is bound to `port` in host `host`'s network namespace (its
/// /proc/net/udp and udp6, read from inside it).
fn udp_port_bound(lab: &CorosyncLab, host: usize, port: u16) -> bool {
    let out = lab
        .bridge
        .exec(host, &["cat", "/proc/net/udp", "/proc/net/udp6"]);
    let suffix = format!(":{port:04X}");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|local| local.ends_with(&suffix))
    })
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_quiet_ring_then_a_rogue_with_the_copied_key_is_named_while_the_ring_stays_quorate() {
    let name = "corosync::a_quiet_ring_then_a_rogue_with_the_copied_key_is_named_while_the_ring_stays_quorate";
    let Some(bin) = agent_bin(name) else { return };
    let Some(lab) = lab(name, &["10.213.90.1", "10.213.90.2", "10.213.90.3"]) else {
        return;
    };
    let key = lab.key.clone();
    let cluster = lab.conf("cluster", &[(0, 1), (1, 2)], &key);
    let view = agent_copy(&cluster);
    let ports = [lab.port(0), lab.port(1), lab.port(2)].map(str::to_string);
    let agent = Agent::start(
        &bin,
        &member_side(
            &view,
            &ports.iter().map(String::as_str).collect::<Vec<_>>(),
            "",
        ),
    );
    lab.start(0, &cluster);
    lab.start(1, &cluster);
    assert!(lab.wait_quorate(0, 30), "ring not quorate:\n{}", lab.log(0));

    // 1. Normal operation: member traffic counted, no finding.
    // Positive control first: the detector counts the members' traffic and knows both
    // members (totals are sampled once a second), so the quiet check below cannot pass
    // just because the agent is blind or slow.
    fn member_packets(m: &str) -> f64 {
        metric(m, "nodeward_corosync_packets_total{source=\"member\"}").unwrap_or(0.0)
    }
    let control = wait_for(Duration::from_secs(15), || {
        let m = agent.metrics();
        (member_packets(&m) > 10.0
            && metric(&m, "nodeward_corosync_members") == Some(2.0)
            && metric(&m, "nodeward_detector_up{detector=\"corosync\"}") == Some(1.0))
        .then_some(m)
    })
    .unwrap_or_else(|| {
        panic!(
            "member traffic not counted (or members/detector_up wrong) within 15 s:\n{}",
            agent.metrics()
        )
    });
    // Not a wait for a condition: the quiet period under test. Five seconds of normal
    // ring traffic (which the detector is counting, above) must pass without a finding.
    std::thread::sleep(Duration::from_secs(5));
    let m = agent.metrics();
    assert!(
        metric(&m, "nodeward_corosync_packets_total{source=\"member\"}").unwrap() > 10.0,
        "member traffic not counted:\n{m}"
    );
    // The detector kept counting through the quiet period (a sample taken during it).
    assert!(
        member_packets(&m) > member_packets(&control),
        "member traffic not counted during the quiet period: {} packets before it, {} after:\n{m}",
        member_packets(&control),
        member_packets(&m)
    );
    assert_eq!(
        metric(&m, "nodeward_corosync_packets_total{source=\"non_member\"}"),
        Some(0.0),
        "non-member traffic counted during normal operation:\n{m}"
    );
    assert_eq!(metric(&m, "nodeward_corosync_members"), Some(2.0), "{m}");
    assert_eq!(
        metric(&m, "nodeward_detector_up{detector=\"corosync\"}"),
        Some(1.0),
        "{m}"
    );
    let quiet = corosync_findings(&agent);
    assert!(
        quiet.is_empty(),
        "findings during normal operation: {quiet:?}"
    );

    // 3. A third node with the copied key, not in the nodelist (its own config lists it).
    let rogue_conf = lab.conf("rogue", &[(0, 1), (1, 2), (2, 3)], &key);
    let started = now_s();
    lab.start(2, &rogue_conf);
    let rogue_ip = lab.ip(2).to_string();
    let f = find(&agent, "rogue_member", &rogue_ip, 15)
        .unwrap_or_else(|| panic!("no rogue_member:\n{}\n{}", agent.raw_output(), lab.log(2)));
    let at = parse_rfc3339(f["timestamp"].as_str().unwrap()).unwrap();
    assert!(
        at - started <= 5.0,
        "rogue named {:.1} s after it started (want ≤ 5 s)",
        at - started
    );
    // Sentinel for step 1: the detector's findings reach the log in the order it raised
    // them, so a finding of normal operation would be logged before the rogue's.
    let earlier: Vec<Value> = corosync_findings(&agent)
        .into_iter()
        .take_while(|l| !(l["finding"] == "rogue_member" && l["address"] == rogue_ip.as_str()))
        .collect();
    assert!(
        earlier.is_empty(),
        "findings logged before the rogue's (normal operation): {earlier:?}"
    );
    let d = detail(&f);
    assert_eq!(d["member"], false);
    assert_eq!(d["interfaces"], serde_json::json!([lab.port(2)]));
    assert!(d["rate_pps"].as_u64().is_some());
    // The ring is still quorate, and the rogue is a live series.
    assert!(lab.quorate(0), "ring lost quorum:\n{}", lab.log(0));
    // Positive control for "nothing dropped" below: a sample in which the rogue's
    // traffic is counted (same totals, same sample as the drop count).
    let m = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        (metric(&m, "nodeward_corosync_packets_total{source=\"non_member\"}")
            .is_some_and(|v| v > 0.0))
        .then_some(m)
    })
    .unwrap_or_else(|| panic!("the rogue's traffic is not counted:\n{}", agent.metrics()));
    assert_eq!(
        metric(&m, "nodeward_corosync_rogue_sources"),
        Some(1.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            &format!("nodeward_corosync_rogue_packets_per_second{{source=\"{rogue_ip}\"}}")
        )
        .is_some(),
        "{m}"
    );
    // Observe mode: nothing dropped.
    assert_eq!(
        metric(&m, "nodeward_corosync_dropped_packets_total"),
        Some(0.0),
        "packets dropped in observe mode:\n{m}"
    );
    // `nodeward status` tells the story too.
    let status = String::from_utf8_lossy(&agent.cli(&["status"]).stdout).into_owned();
    assert!(status.contains("role member"), "{status}");
    assert!(status.contains("2 member address(es)"), "{status}");
    assert!(
        status.contains(&format!("ROGUE cluster source {rogue_ip}")),
        "{status}"
    );

    // Malformed corosync.conf: the detector is down, the agent keeps running.
    let good = std::fs::read_to_string(&view).unwrap();
    std::fs::write(&view, "totem {\n  version 2\n").unwrap();
    let down = wait_for(Duration::from_secs(10), || {
        let m = agent.metrics();
        (metric(&m, "nodeward_corosync_config_ok") == Some(0.0)
            && metric(&m, "nodeward_detector_up{detector=\"corosync\"}") == Some(0.0))
        .then_some(())
    });
    assert!(down.is_some(), "detector not down:\n{}", agent.raw_output());
    // The line is logged before the metrics change, but read from the agent's output
    // by another thread: poll for it.
    let malformed = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["message"] == "cluster configuration malformed; detector down until it is fixed"
                && l["error"].as_str().is_some_and(|e| e.contains("line 2"))
        })
    });
    assert!(
        malformed.is_some(),
        "no malformed-configuration report naming line 2:\n{}",
        agent.raw_output()
    );
    assert_eq!(agent.get("/healthz").0, 200);
    let status = String::from_utf8_lossy(&agent.cli(&["status"]).stdout).into_owned();
    assert!(status.contains("cluster configuration error"), "{status}");
    std::fs::write(&view, good).unwrap();
    let up = wait_for(Duration::from_secs(10), || {
        (metric(
            &agent.metrics(),
            "nodeward_detector_up{detector=\"corosync\"}",
        ) == Some(1.0))
        .then_some(())
    });
    assert!(
        up.is_some(),
        "detector not back up:\n{}",
        agent.raw_output()
    );
}

#[test]
fn a_flood_from_the_rogue_is_dropped_in_enforce_mode_until_the_ttl_expires() {
    let name = "corosync::a_flood_from_the_rogue_is_dropped_in_enforce_mode_until_the_ttl_expires";
    let Some(bin) = agent_bin(name) else { return };
    let Some(lab) = lab(name, &["10.213.91.1", "10.213.91.2", "10.213.91.3"]) else {
        return;
    };
    let key = lab.key.clone();
    let cluster = lab.conf("cluster", &[(0, 1), (1, 2)], &key);
    let ports = [lab.port(0), lab.port(1), lab.port(2)].map(str::to_string);
    let agent = Agent::start(
        &bin,
        &member_side(
            &cluster,
            &ports.iter().map(String::as_str).collect::<Vec<_>>(),
            "agent.mode = \"enforce\"\nquarantine.default_ttl = \"12s\"\n",
        ),
    );
    lab.start(0, &cluster);
    lab.start(1, &cluster);
    assert!(lab.wait_quorate(0, 30), "ring not quorate:\n{}", lab.log(0));
    let (rogue_ip, member_ip) = (lab.ip(2).to_string(), lab.ip(0).to_string());
    // The member's own kernel counts what reaches it from the rogue.
    lab.watch_from(0, &rogue_ip);
    let rogue_conf = lab.conf("rogue", &[(0, 1), (1, 2), (2, 3)], &key);
    lab.start(2, &rogue_conf);
    find(&agent, "rogue_member", &rogue_ip, 15)
        .unwrap_or_else(|| panic!("no rogue_member:\n{}", agent.raw_output()));
    let applied = wait_for(Duration::from_secs(5), || {
        (metric(
            &agent.metrics(),
            "nodeward_quarantine_active{action=\"drop_packets\"}",
        ) == Some(1.0))
        .then_some(Instant::now())
    })
    .unwrap_or_else(|| panic!("no quarantine applied:\n{}", agent.raw_output()));
    let list = agent.cli(&["quarantine", "list", "--json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["active"][0]["target"]["kind"], "cluster_source");
    assert_eq!(list["active"][0]["target"]["addr"], rogue_ip.as_str());
    assert_eq!(list["active"][0]["trigger"]["source"], "corosync");

    // 4. The flood: 600 replayed packets, every one dropped before the member.
    // The kernel's count of dropped cluster packets (read at scrape time, no sampling).
    let kernel_drops = || {
        metric(
            &agent.metrics(),
            "nodeward_quarantine_kernel_total{counter=\"drop_corosync\"}",
        )
        .unwrap_or(0.0)
    };
    // The baseline: rogue packets admitted before the drop was in force may still be on
    // their way to the member. Poll until the member's counter stays flat across a drop
    // of one of the rogue's own packets (it keeps sending) that happened after the
    // counter was read: from then on nothing of the rogue's reaches the member.
    let mut base = (lab.count_from(0), kernel_drops());
    let settled = wait_for(Duration::from_secs(10), || {
        let drops = kernel_drops();
        let count = lab.count_from(0);
        if count != base.0 {
            base = (count, kernel_drops());
            return None;
        }
        (drops > base.1).then_some((count, drops))
    });
    let (before, drops_before) = settled.unwrap_or_else(|| {
        panic!(
            "no settled baseline under the quarantine: the member counted {} packets from the rogue, the kernel dropped {} (10 s):\n{}",
            lab.count_from(0),
            kernel_drops(),
            agent.raw_output()
        )
    });
    // scapy and libpcap (for its capture filter) are installed by `cargo xtask setup
    // --test-deps`: a flood that cannot be sent is a failure, not a skip.
    if let Err(why) = lab.flood(2, &member_ip, 600) {
        panic!("the flood could not be sent: {why}");
    }
    let flood = find(&agent, "flood", &rogue_ip, 5)
        .unwrap_or_else(|| panic!("no flood finding:\n{}", agent.raw_output()));
    assert!(detail(&flood)["dropped"].as_u64().unwrap() > 0, "{flood}");
    // Positive control (and sentinel) for the check below: the kernel dropped all 600
    // replayed packets, so none of them is still on its way to the member.
    let dropped_flood = wait_for(Duration::from_secs(5), || {
        let drops = kernel_drops();
        (drops >= drops_before + 600.0).then_some(drops)
    });
    assert!(
        dropped_flood.is_some(),
        "the kernel dropped {} packets of the rogue's since the flood began (want ≥ 600); the member counted {} (was {before})",
        kernel_drops() - drops_before,
        lab.count_from(0)
    );
    let after = lab.count_from(0);
    assert_eq!(
        after,
        before,
        "packets reached the member during the quarantine ({} s after it was applied)",
        applied.elapsed().as_secs_f64()
    );
    // Totals are sampled once a second.
    let m = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        (metric(&m, "nodeward_corosync_dropped_packets_total").unwrap() >= 600.0).then_some(m)
    })
    .unwrap_or_else(|| panic!("drops not counted:\n{}", agent.metrics()));
    assert!(
        metric(
            &m,
            "nodeward_quarantine_kernel_total{counter=\"drop_corosync\"}"
        )
        .unwrap()
            >= 600.0
    );
    assert!(lab.quorate(0), "ring lost quorum:\n{}", lab.log(0));

    // TTL expiry restores: the rogue's own packets reach the member again.
    let wait = Duration::from_secs(12).saturating_sub(applied.elapsed()) + Duration::from_secs(10);
    let restored = wait_for(wait, || (lab.count_from(0) > before).then_some(()));
    assert!(
        restored.is_some(),
        "rogue traffic still dropped after the TTL:\n{}",
        agent.raw_output()
    );
    let again = lab.count_from(0);
    lab.flood(2, &member_ip, 200).unwrap();
    // The replayed packets cross two veth pairs and the bridge after scapy returns: poll
    // the member's own counter until all of them have arrived.
    let reached = wait_for(Duration::from_secs(10), || {
        let now = lab.count_from(0);
        (now >= again + 200).then_some(now)
    });
    assert!(
        reached.is_some(),
        "a flood after expiry did not reach the member: {} of 200 packets counted in 10 s ({} before the flood)",
        lab.count_from(0).saturating_sub(again),
        again
    );
}

#[test]
fn rogues_with_another_key_or_a_members_node_id_are_both_named() {
    let name = "corosync::rogues_with_another_key_or_a_members_node_id_are_both_named";
    let Some(bin) = agent_bin(name) else { return };
    let Some(lab) = lab(
        name,
        &["10.213.92.1", "10.213.92.2", "10.213.92.3", "10.213.92.4"],
    ) else {
        return;
    };
    let key = lab.key.clone();
    let cluster = lab.conf("cluster", &[(0, 1), (1, 2)], &key);
    let ports = [lab.port(0), lab.port(1), lab.port(2), lab.port(3)].map(str::to_string);
    let agent = Agent::start(
        &bin,
        &member_side(
            &cluster,
            &ports.iter().map(String::as_str).collect::<Vec<_>>(),
            "",
        ),
    );
    lab.start(0, &cluster);
    lab.start(1, &cluster);
    assert!(lab.wait_quorate(0, 30), "ring not quorate:\n{}", lab.log(0));
    // Another cluster's key.
    let other = lab.other_key();
    let stranger = lab.conf("stranger", &[(0, 1), (1, 2), (2, 3)], &other);
    lab.start(2, &stranger);
    // The copied key, claiming node 1's id from another address.
    let spoof = lab.conf("spoof", &[(3, 1), (1, 2)], &key);
    lab.start(3, &spoof);
    for host in [2, 3] {
        let ip = lab.ip(host).to_string();
        let f = find(&agent, "rogue_member", &ip, 15)
            .unwrap_or_else(|| panic!("rogue {ip} not named:\n{}", agent.raw_output()));
        assert_eq!(
            detail(&f)["interfaces"],
            serde_json::json!([lab.port(host)])
        );
    }
    assert!(lab.quorate(0), "ring lost quorum:\n{}", lab.log(0));
    assert_eq!(
        metric(&agent.metrics(), "nodeward_corosync_rogue_sources"),
        Some(2.0)
    );
}

/// Default route: the bind seen by a cgroup post_bind program.
#[test]
fn corosync_started_on_a_standalone_node_is_named_with_its_process() {
    standalone(
        "corosync::corosync_started_on_a_standalone_node_is_named_with_its_process",
        "",
    );
}

/// The fallback route, forced: the bind(2) syscall tracepoint.
#[test]
fn corosync_on_a_standalone_node_is_named_on_the_forced_tracepoint_route() {
    standalone(
        "corosync::corosync_on_a_standalone_node_is_named_on_the_forced_tracepoint_route",
        "route = \"tracepoint\"\n",
    );
}

fn standalone(name: &str, route: &str) {
    let Some(bin) = agent_bin(name) else { return };
    let Some(lab) = lab(name, &["10.213.93.1", "10.213.93.2", "10.213.93.3"]) else {
        return;
    };
    let key = lab.key.clone();
    let cluster = lab.conf("cluster", &[(0, 1), (1, 2)], &key);
    // The agent of the standalone node (host 2): its address is not in the nodelist,
    // so the role is inferred.
    let ns = lab.bridge.hosts[2].ns.clone();
    let view = agent_copy(&cluster);
    // Entered with `nsenter --net`: the agent sees the host's /sys/fs/cgroup (what a
    // node agent sees), so the cgroup route is available.
    let agent = Agent::start_nsenter_net(
        &bin,
        &format!(
            "[detectors.corosync]\nconfig = \"{}\"\n{route}",
            view.display()
        ),
        &ns,
    );
    // The route asked for is the one the agent took (its start-up log).
    let fallback = agent.logs().into_iter().find_map(|l| {
        let route_line = l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("hook route"));
        (route_line && l["group"] == "corosync.cgroup").then(|| l["route"] == "fallback")
    });
    assert_eq!(
        fallback,
        Some(!route.is_empty()),
        "corosync bind route:\n{}",
        agent.raw_output()
    );
    let role = wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["message"] == "cluster role")
    })
    .unwrap_or_else(|| panic!("no role decided:\n{}", agent.raw_output()));
    assert_eq!(role["standalone"], true, "{role}");
    // Corosync in another node's namespace is not this node's.
    lab.start(0, &cluster);
    // Wait until it has exec'd and bound its cluster port, so its exec and bind records
    // are in the kernel's queue before those of this node's corosync (started below):
    // this node's findings are then a sentinel for the "nothing from host 0" check.
    let bound = wait_for(Duration::from_secs(15), || {
        udp_port_bound(&lab, 0, 5405).then_some(())
    });
    assert!(
        bound.is_some(),
        "host 0's corosync never bound UDP 5405:\n{}",
        lab.log(0)
    );
    // The automation's move: start corosync here with a config listing this node.
    let rogue_conf = lab.conf("rogue", &[(0, 1), (1, 2), (2, 3)], &key);
    let pid = lab.start(2, &rogue_conf);
    let mut seen = Vec::new();
    for what in ["exec", "bind"] {
        let f = wait_for(Duration::from_secs(10), || {
            corosync_findings(&agent)
                .into_iter()
                .find(|l| l["finding"] == "corosync_on_standalone" && detail(l)["what"] == what)
        })
        .unwrap_or_else(|| {
            panic!(
                "no corosync_on_standalone ({what}):\n{}",
                agent.raw_output()
            )
        });
        let d = detail(&f);
        assert_eq!(d["process"]["pid"].as_u64(), Some(pid.into()), "{d}");
        assert_eq!(d["process"]["comm"], "corosync");
        assert!(
            d["role_reason"].as_str().unwrap().contains("nodelist"),
            "{d}"
        );
        assert!(f["lineage"].as_str().unwrap().ends_with("corosync"), "{f}");
        seen.push(d);
    }
    assert_eq!(seen[1]["port"], 5405);
    assert_eq!(seen[1]["addr"], lab.ip(2));
    // Only this node's corosync: the one in host 0's namespace raised nothing. Its exec
    // and bind happened before this node's corosync started (waited for above), and the
    // kernel's records are processed in order: this node's findings, seen above, are
    // the positive control.
    let others: Vec<Value> = corosync_findings(&agent)
        .into_iter()
        .filter(|l| detail(l)["process"]["pid"].as_u64() != Some(pid.into()))
        .collect();
    assert!(
        others.is_empty(),
        "findings for another node's corosync: {others:?}"
    );
    // The automation also copies a corosync.conf that lists this node: the inferred
    // role turns to member, and that change is itself reported.
    std::fs::copy(&rogue_conf, &view).unwrap();
    let f = wait_for(Duration::from_secs(10), || {
        corosync_findings(&agent)
            .into_iter()
            .find(|l| l["finding"] == "role_changed")
    })
    .unwrap_or_else(|| panic!("no role_changed:\n{}", agent.raw_output()));
    let d = detail(&f);
    assert_eq!(
        (d["role_from"].as_str(), d["role_to"].as_str()),
        (Some("standalone"), Some("member"))
    );
    assert!(
        d["role_reason"].as_str().unwrap().contains(lab.ip(2)),
        "{d}"
    );
}

/// The packet path without corosync: IPv6 sources, and the port taken from
/// corosync.conf (`mcastport`), not the default.
#[test]
fn ipv6_sources_on_the_configured_port_are_checked_against_the_nodelist() {
    let name = "corosync::ipv6_sources_on_the_configured_port_are_checked_against_the_nodelist";
    let Some(bin) = agent_bin(name) else { return };
    let lan = nodeward_tests::Bridge::new(&["10.213.94.1", "10.213.94.2"]);
    for (i, ip) in ["fd00:5405::1", "fd00:5405::2"].iter().enumerate() {
        let out = lan.exec(
            i,
            &[
                "ip",
                "addr",
                "add",
                &format!("{ip}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        );
        assert!(out.status.success(), "{out:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("corosync.conf");
    std::fs::write(
        &conf,
        "totem {\n  version: 2\n  interface {\n    linknumber: 0\n    mcastport: 5407\n  }\n}\nnodelist {\n  node {\n    ring0_addr: fd00:5405::1\n    nodeid: 1\n  }\n}\n",
    )
    .unwrap();
    let ports = [lan.hosts[0].port.as_str(), lan.hosts[1].port.as_str()];
    let agent = Agent::start(&bin, &member_side(&conf, &ports, ""));
    // 30 datagrams paced by `time.sleep(0.05)`: pacing of the generator (20 packets/s,
    // under flood_rate = 100), not a wait for a condition.
    let send = |from: usize, to: &str, port: u16| {
        let py = format!(
            "import socket,time\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\nfor i in range(30):\n  s.sendto(b'x'*80, ('{to}', {port}))\n  time.sleep(0.05)\n"
        );
        let out = lan.exec(from, &["/usr/bin/python3", "-c", &py]);
        assert!(out.status.success(), "{out:?}");
    };
    // The default port is not this cluster's: nothing counted.
    send(1, "fd00:5405::1", 5405);
    // The member, then a non-member, on the configured port. The member's packets are
    // sent after the non-member's on the default port, and counted in the same totals,
    // sampled together: once a sample counts all of them (positive control and
    // sentinel), the non-member's packets on 5405 were through the kernel already.
    send(0, "fd00:5405::2", 5407);
    let m = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        (metric(&m, "nodeward_corosync_packets_total{source=\"member\"}")? >= 30.0).then_some(m)
    })
    .unwrap_or_else(|| {
        panic!(
            "the member's packets on 5407 not counted:\n{}",
            agent.metrics()
        )
    });
    assert_eq!(
        metric(&m, "nodeward_corosync_packets_total{source=\"non_member\"}"),
        Some(0.0),
        "packets on the default port were counted:\n{m}"
    );
    send(1, "fd00:5405::1", 5407);
    let f = find(&agent, "rogue_member", "fd00:5405::2", 10)
        .unwrap_or_else(|| panic!("no IPv6 rogue:\n{}", agent.raw_output()));
    assert_eq!(
        detail(&f)["interfaces"],
        serde_json::json!([lan.hosts[1].port])
    );
    // Totals are sampled once a second.
    let counted = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        let member = metric(&m, "nodeward_corosync_packets_total{source=\"member\"}")?;
        let other = metric(&m, "nodeward_corosync_packets_total{source=\"non_member\"}")?;
        (member >= 30.0 && other >= 30.0).then_some(())
    });
    assert!(counted.is_some(), "{}", agent.metrics());
    assert!(
        !corosync_findings(&agent)
            .iter()
            .any(|l| l["address"] == "fd00:5405::1"),
        "the member was reported"
    );
}

/// A corosync.conf that never answers (a FIFO without a writer stands in for a hung
/// pmxcfs): the agent starts, serves, reports the slow read, and still stops on SIGTERM.
#[test]
fn a_hung_cluster_configuration_file_never_stalls_the_agent() {
    let name = "corosync::a_hung_cluster_configuration_file_never_stalls_the_agent";
    let Some(bin) = agent_bin(name) else { return };
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("corosync.conf");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut agent = Agent::start(
        &bin,
        &format!(
            "[detectors.corosync]\nconfig = \"{}\"\ninterfaces = []\n",
            fifo.display()
        ),
    );
    let slow = wait_for(Duration::from_secs(15), || {
        agent.logs().into_iter().find(|l| {
            l["message"].as_str().is_some_and(|m| {
                m.starts_with("reading the cluster configuration takes longer than 5 s")
            })
        })
    });
    assert!(
        slow.is_some(),
        "no slow-read report:\n{}",
        agent.raw_output()
    );
    assert_eq!(agent.get("/healthz").0, 200);
    let status = agent.cli(&["status"]);
    assert!(status.status.success(), "{status:?}");
    let status = agent.stop();
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        agent.raw_output()
    );
}
