//! The used-by chain for real: three agents on three lab nodes (network namespaces), a
//! real Prometheus scraping them with the shipped rules (every `for:` read in seconds
//! instead of minutes, the expressions unchanged) and a real Alertmanager routing to
//! nodeward's webhook and to a test receiver. Scenarios from the incidents drive the
//! rules; the test fails when a rule of `dashboards/rules` neither fired nor is exempted
//! below with a reason. Then every panel query of the Grafana dashboard must return data.
//!
//! All three agents share this machine's kernel: a process-wide hook (exec, open,
//! reboot) is seen by each of them, as if the same thing happened on three nodes. The
//! packet observers are per node (each agent watches its own namespace's bridge).

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use nodeward_tests::{
    Agent, Bridge, CorosyncLab, Lan, Monitor, SshLab, agent_bin, everyone_but, promlab::Target,
    skip, wait_for,
};
use serde_json::Value;

const HELPER: &str = env!("CARGO_BIN_EXE_nodeward-test-helper");
const PORT: u16 = 9464;

/// Rules this chain does not drive, and why (each is driven in its detector's own
/// end-to-end tests and in `promtool test rules`).
const EXEMPT_RULES: &[(&str, &str)] = &[
    (
        "NodewardEventsLost",
        "needs a ring-buffer overflow: the flood benchmarks and the agent tests drive it",
    ),
    (
        "NodewardDecodeErrors",
        "needs a malformed kernel record, which a correct kernel side never writes",
    ),
    (
        "NodewardFleetCorosyncRogueSource",
        "needs one rogue seen by the rings of two nodes (one ring here, on node 1); promtool tests it with several instances",
    ),
];

/// Panels that legitimately show nothing after these scenarios, and why.
const EXEMPT_PANELS: &[(&str, &str)] = &[(
    "eBPF program CPU time",
    "agent.program_stats is off by default (bpf_stats costs every eBPF program on the host)",
)];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every alert name in the shipped rules.
fn shipped_alerts() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(repo().join("dashboards/rules")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yml") {
            for l in std::fs::read_to_string(&p).unwrap().lines() {
                if let Some(n) = l.trim().strip_prefix("- alert:") {
                    out.insert(n.trim().to_string());
                }
            }
        }
    }
    out
}

/// The shipped rule files with every `for: Nm` read as `Ns` (expressions unchanged).
fn fast_rules(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(repo().join("dashboards/rules")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yml") {
            continue;
        }
        let text: String = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| match l.trim().strip_prefix("for: ") {
                Some(d) if d.ends_with('m') => l.replacen(d, &d.replace('m', "s"), 1),
                _ => l.to_string(),
            })
            .map(|l| l + "\n")
            .collect();
        let to = dir.join(p.file_name().unwrap());
        std::fs::write(&to, text).unwrap();
        out.push(to);
    }
    out
}

/// Alert names that have been firing at some point (Prometheus's own ALERTS series).
fn fired(mon: &Monitor) -> BTreeSet<String> {
    mon.query("count by (alertname) (max_over_time(ALERTS{alertstate=\"firing\"}[1h]))")
        .iter()
        .filter_map(|r| r["metric"]["alertname"].as_str().map(str::to_string))
        .collect()
}

fn rfc3339_secs(v: &Value) -> f64 {
    nodeward_tests::parse_rfc3339(v.as_str().unwrap_or("")).unwrap_or(f64::NAN)
}

/// Panel queries of the Grafana dashboard (variables substituted) that return nothing
/// from `mon` now, as "title: expr"; exempted panels are left out.
fn panels_without_data(mon: &Monitor) -> BTreeSet<String> {
    let board: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dashboards/grafana/nodeward.json")).unwrap(),
    )
    .unwrap();
    let panels = board["panels"].as_array().unwrap();
    for (t, _) in EXEMPT_PANELS {
        assert!(
            panels.iter().any(|p| p["title"] == *t),
            "exempted panel {t} does not exist"
        );
    }
    let mut empty = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("");
        if EXEMPT_PANELS.iter().any(|(t, _)| *t == title) {
            continue;
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or("")
                .replace("$instance", ".*")
                .replace("$__rate_interval", "1m");
            if mon.query(&expr).is_empty() {
                empty.insert(format!("{title}: {expr}"));
            }
        }
    }
    empty
}

#[test]
fn prometheus_and_alertmanager_fire_the_rules_from_three_real_agents() {
    let name = "chain::prometheus_and_alertmanager_fire_the_rules_from_three_real_agents";
    let Some(bin) = agent_bin(name) else { return };
    if !std::path::Path::new("/usr/bin/arping").exists() {
        return skip(
            name,
            "arping not installed (apt-get install iputils-arping)",
        );
    }
    if !nodeward_tests::scapy_available(name) {
        return;
    }
    // Nodes 0 and 1: two sandboxes on one bridge were handed 10.77.0.5 (incident 002,
    // on two nodes at once); a third sandbox asks for it. Node 2: the same on
    // 10.77.0.7, with no conflict series allowed (max_conflict_series = 0).
    // Node 0 also has a fourth sandbox, which leaves while a quarantine naming its port
    // waits for approval. Node 1 also has a corosync ring on its bridge (incident 001):
    // two members (hosts 3 and 4) and, later, a rogue with the copied key (host 5).
    let coro = match CorosyncLab::new_in_node(&[
        "10.77.0.5",
        "10.77.0.5",
        "10.77.0.30",
        "10.77.1.1",
        "10.77.1.2",
        "10.77.1.3",
    ]) {
        Ok(l) => l,
        Err(why) => return skip(name, &why),
    };
    let n0 = Bridge::new_in_node(&["10.77.0.5", "10.77.0.5", "10.77.0.30", "10.77.0.40"]);
    let n2 = Bridge::new_in_node(&["10.77.0.7", "10.77.0.7", "10.77.0.31"]);
    let nodes = [&n0, &coro.bridge, &n2];
    let node_ns: Vec<&str> = nodes.iter().map(|b| b.node.as_deref().unwrap()).collect();
    let mut mon = match Monitor::new(&node_ns) {
        Ok(m) => m,
        Err(why) => return skip(name, &why),
    };
    let lan = Lan::new();
    let lab = match SshLab::new(&lan, HELPER) {
        Ok(l) => l,
        Err(why) => return skip(name, &why),
    };
    let work = tempfile::tempdir().unwrap();
    let token = work.path().join("webhook.token");
    std::fs::write(&token, "chain-token\n").unwrap();
    let key = work.path().join("authkey");
    let broken_corosync = work.path().join("corosync.conf");
    std::fs::write(&broken_corosync, "totem {\n  version: 2\n  interface {\n").unwrap();
    // Node 0's IPAM released 10.77.0.5 (incident 002): only the third sandbox has a lease.
    let leases = work.path().join("leases.csv");
    std::fs::write(&leases, "# ip,mac,owner\n10.77.0.30,,sandbox-c\n").unwrap();
    // The cluster's corosync.conf: node 1's agent is a member's; node 0's agent has a
    // copy that does not list node 0 (a standalone node, until the automation's copy).
    let cluster = coro.conf("cluster", &[(3, 1), (4, 2)], &coro.key);
    let rogue_conf = coro.conf("rogue", &[(3, 1), (4, 2), (5, 3)], &coro.key);
    let node0_conf = coro.conf_addrs(
        "node0",
        &[
            (coro.ip(3), 1),
            (coro.ip(4), 2),
            (&Monitor::node_ip(0).to_string(), 3),
        ],
        &coro.key,
    );
    let views: Vec<PathBuf> = (0..2)
        .map(|i| {
            let v = work.path().join(format!("corosync-view-{i}.conf"));
            std::fs::copy(&cluster, &v).unwrap();
            v
        })
        .collect();
    let webhook = format!("http://{}:{PORT}/alertmanager", Monitor::node_ip(0));
    if let Err(why) = mon.start_alertmanager(&webhook, &token) {
        panic!("{why}");
    }

    // The agents: node 2 is a protected host (the reboot guard kills an SSH reboot from
    // the lab's client, and only from it).
    let boot_ids: Vec<PathBuf> = (0..3)
        .map(|i| {
            let f = work.path().join(format!("boot_id.{i}"));
            std::fs::write(&f, format!("boot-{i}-A\n")).unwrap();
            f
        })
        .collect();
    let extra = |i: usize| {
        let ports: Vec<String> = nodes[i]
            .hosts
            .iter()
            .map(|h| format!("\"{}\"", h.port))
            .collect();
        // Node 2 also has a corosync.conf its detector cannot parse (a truncated copy).
        let guard = match i {
            2 => format!(
                "quarantine.block_exec.mode = \"enforce\"\n[detectors.reboot]\nprotected_host = true\nallowed_sources = {}\n[detectors.corosync]\nconfig = \"{}\"\n",
                everyone_but(&lan.ip_a),
                broken_corosync.display()
            ),
            1 => format!(
                "[detectors.corosync]\nconfig = \"{}\"\nrole = \"member\"\ninterfaces = [{}]\nflood_rate = 100\n",
                views[1].display(),
                (3..6)
                    .map(|h| format!("\"{}\"", coro.port(h)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => format!(
                "[detectors.corosync]\nconfig = \"{}\"\n",
                views[0].display()
            ),
        };
        let arp = match i {
            0 => format!("leases = \"{}\"\n", leases.display()),
            2 => "max_conflict_series = 0\n".to_string(),
            _ => String::new(),
        };
        format!(
            "agent.mode = \"enforce\"\nhttp.webhook.enabled = true\nhttp.webhook.token_file = \"{}\"\nquarantine.drop_packets.require_approval = true\n{guard}\
             [alerting]\nalertmanagers = [\"{}\"]\nlabels = {{ instance = \"node{i}\" }}\n\
             [detectors.arp]\ninterfaces = [{}]\nquiet_period = \"120s\"\n{arp}\
             [detectors.secrets]\npaths = [\"{}\"]\nallowed_readers = [\"/usr/sbin/corosync\"]\n\
             [detectors.tcp_reset]\nstorm_threshold = 50\nwindow = \"60s\"\n",
            token.display(),
            mon.alertmanager_url(i),
            ports.join(", "),
            key.display()
        )
    };
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| {
            let boot = boot_ids[i].display().to_string();
            Agent::start_node(
                &bin,
                &extra(i),
                &[("NODEWARD_BOOT_ID_FILE", &boot)],
                node_ns[i],
                &format!("{}:{PORT}", Monitor::node_ip(i)),
            )
        })
        .collect();

    // An operator's own action rules on top of the shipped ones: quarantine the newcomer
    // of a duplicate address on node 0 (through the webhook, with approval), and the
    // fourth sandbox on its port (which will be gone when approved).
    let rules_dir = work.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    let mut rules = fast_rules(&rules_dir);
    let action = rules_dir.join("lab_actions.yml");
    let action_rule = |alert: &str, source: &str, port: &str| {
        format!(
            "      - alert: {alert}\n        expr: max by (instance, address) (nodeward_arp_conflict_active{{instance=\"node0\"}}) > 0\n        labels:\n          nodeward_action: drop_packets\n          nodeward_source_ip: \"{source}\"\n          nodeward_interfaces: \"{port}\"\n          nodeward_ttl: \"2m\"\n"
        )
    };
    std::fs::write(
        &action,
        format!(
            "groups:\n  - name: lab_actions\n    rules:\n{}{}",
            action_rule(
                "LabQuarantineDuplicateNewcomer",
                "{{ $labels.address }}",
                &nodes[0].hosts[1].port
            ),
            action_rule(
                "LabQuarantineOnDepartedPort",
                "10.77.0.40",
                &nodes[0].hosts[3].port
            )
        ),
    )
    .unwrap();
    rules.push(action);
    let targets: Vec<Target> = (0..3)
        .map(|i| Target {
            instance: format!("node{i}"),
            addr: format!("{}:{PORT}", Monitor::node_ip(i)),
        })
        .collect();
    let scrape = 5;
    if let Err(why) = mon.start_prometheus(&targets, &rules, scrape) {
        panic!("{why}");
    }
    let up = wait_for(Duration::from_secs(30), || {
        (mon.query("sum(up{job=\"nodeward\"})").first()?["value"][1].as_str()? == "3").then_some(())
    });
    assert!(
        up.is_some(),
        "Prometheus does not scrape the three agents:\n{}",
        mon.logs()
    );

    // Incident 000: a root reboot over SSH from the lab's client. Node 2's guard kills it.
    let out = lab.ssh("reboot");
    assert!(
        !out.status.success(),
        "the protected node's guard let it run: {out:?}"
    );
    let pushed = wait_for(Duration::from_secs(10), || {
        mon.am_alerts().into_iter().find(|a| {
            a["labels"]["alertname"] == "NodewardUnexpectedRebootIntent"
                && a["labels"]["source"] == "nodeward_push"
                && a["labels"]["instance"] == "node0"
        })
    })
    .unwrap_or_else(|| panic!("no pushed alert in Alertmanager: {:?}", mon.am_alerts()));
    // The same alert from the rule needs a scrape and an evaluation: it comes later.
    let scraped = wait_for(Duration::from_secs(30), || {
        mon.am_alerts().into_iter().find(|a| {
            a["labels"]["alertname"] == "NodewardUnexpectedRebootIntent"
                && a["labels"]["instance"] == "node0"
                && a["labels"]["source"].is_null()
        })
    })
    .unwrap_or_else(|| panic!("the rule never fired: {:?}", mon.am_alerts()));
    let (push_at, rule_at) = (
        rfc3339_secs(&pushed["updatedAt"]),
        rfc3339_secs(&scraped["startsAt"]),
    );
    eprintln!(
        "push reached Alertmanager {:.3} s before the rule's alert began (scrape every {scrape} s)",
        rule_at - push_at
    );
    assert!(push_at < rule_at, "push {pushed}\nrule {scraped}");

    // Incident 001's first step: a cluster key appears, then a process that is not
    // corosync tries to read it. The agents enforce: the open is refused (fanotify).
    std::fs::write(&key, "not a real key\n").unwrap();
    let read = std::process::Command::new("cat")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!read.status.success() && read.stdout.is_empty(), "{read:?}");

    // Incident 001 on node 1: a quorate ring, then a rogue started with the copied key
    // and a nodelist naming itself, then a flood of its replayed packets.
    let finding = |agent: &Agent, kind: &str| {
        wait_for(Duration::from_secs(15), || {
            agent
                .logs()
                .into_iter()
                .find(|l| l["detector"] == "corosync" && l["finding"] == kind)
        })
        .unwrap_or_else(|| panic!("no {kind}:\n{}", agent.raw_output()))
    };
    coro.start(3, &cluster);
    coro.start(4, &cluster);
    assert!(
        coro.wait_quorate(3, 30),
        "ring not quorate:\n{}",
        coro.log(3)
    );
    coro.start(5, &rogue_conf);
    finding(&agents[1], "rogue_member");
    if let Err(why) = coro.flood(5, coro.ip(3), 600) {
        panic!("the flood could not be sent: {why}");
    }
    // On node 0, a standalone node, the automation starts corosync with a configuration
    // that lists this node, then copies that configuration into place.
    coro.start_in(6, node_ns[0], &node0_conf);
    finding(&agents[0], "corosync_on_standalone");
    std::fs::copy(&node0_conf, &views[0]).unwrap();

    // Incident 002 on nodes 0 and 1: the third sandbox asks who has 10.77.0.5 (and on
    // node 2 who has 10.77.0.7).
    for (b, addr) in nodes.iter().zip(["10.77.0.5", "10.77.0.5", "10.77.0.7"]) {
        let _ = b.exec(2, &["arping", "-c", "2", "-w", "3", "-I", "eth0", addr]);
    }
    // A martian-source flood on node 2's bridge: 150 frames claiming a loopback source,
    // sent to a sandbox whose kernel drops each one (ip_localnet).
    let flood = format!(
        "from scapy.all import Ether, IP, UDP, sendp\n\
         sendp([Ether(dst='{}')/IP(src='127.0.0.1', dst='10.77.0.7')/UDP(sport=1234, dport=9)/b'x'] * 150, iface='eth0', inter=0.001, verbose=False)\n",
        nodes[2].mac(0)
    );
    let sent = nodes[2].exec(2, &["/usr/bin/python3", "-c", &flood]);
    assert!(sent.status.success(), "scapy: {sent:?}");
    // The action rule fires, Alertmanager calls node 0's webhook: a proposal.
    let proposal = |alert: &str| {
        wait_for(Duration::from_secs(60), || {
            agents[0]
                .journal()
                .into_iter()
                .find(|r| r["decision"] == "proposed" && r.to_string().contains(alert))
        })
        .unwrap_or_else(|| panic!("no {alert} proposal:\n{}", agents[0].raw_output()))["id"]
            .as_u64()
            .expect("proposal id")
            .to_string()
    };
    let id = proposal("LabQuarantineDuplicateNewcomer");
    let approved = agents[0].cli(&["approve", &id]);
    assert!(approved.status.success(), "{approved:?}");
    assert!(
        String::from_utf8_lossy(&approved.stdout).contains("applied"),
        "{approved:?}"
    );
    // The fourth sandbox leaves before its proposal is approved: applying it fails
    // (no such interface), and says so.
    let id = proposal("LabQuarantineOnDepartedPort");
    nodes[0].remove(3);
    let failed = agents[0].cli(&["approve", &id]);
    assert!(
        String::from_utf8_lossy(&failed.stdout).contains("failed")
            || String::from_utf8_lossy(&failed.stderr).contains("failed"),
        "{failed:?}"
    );

    // On node 1, one of the two holders of 10.77.0.5 keeps opening connections to the
    // third sandbox's closed port: a reset storm with the conflicting address, one
    // incident with the conflict.
    let syns = nodes[1].exec(
        0,
        &[
            "/usr/bin/python3",
            "-c",
            "import socket, time\nfor _ in range(120):\n    s = socket.socket(); s.setblocking(False)\n    try: s.connect(('10.77.0.30', 9))\n    except BlockingIOError: pass\n    time.sleep(0.01); s.close()\n",
        ],
    );
    assert!(syns.status.success(), "{syns:?}");

    // A broken configuration reloaded on node 2: refused, the old one kept.
    agents[2].rewrite_config("this is [[[ not toml");
    agents[2].signal(libc::SIGHUP);

    // Node 0 reboots (the unexpected intent was journaled first); node 1 reboots twice,
    // the second time with no intent recorded in between (power loss). Each restart
    // waits for a scrape of the previous state first.
    let scraped_after = |mon: &Monitor, since: f64| {
        wait_for(Duration::from_secs(30), || {
            let r = mon.query("min(timestamp(up{job=\"nodeward\"}))");
            let t: f64 = r.first()?["value"][1].as_str()?.parse().ok()?;
            (t > since).then_some(())
        })
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let t = now();
    assert!(scraped_after(&mon, t).is_some());
    let before_restarts = panels_without_data(&mon);
    std::fs::write(&boot_ids[0], "boot-0-B\n").unwrap();
    agents[0].restart();
    std::fs::write(&boot_ids[1], "boot-1-B\n").unwrap();
    agents[1].restart();
    let t = now();
    assert!(scraped_after(&mon, t).is_some());
    std::fs::write(&boot_ids[1], "boot-1-C\n").unwrap();
    agents[1].restart();

    // Every shipped rule fired, or is exempted with a reason.
    let shipped = shipped_alerts();
    for (r, _) in EXEMPT_RULES {
        assert!(shipped.contains(*r), "exempted rule {r} does not exist");
    }
    let want: BTreeSet<String> = shipped
        .iter()
        .filter(|r| !EXEMPT_RULES.iter().any(|(e, _)| e == r))
        .cloned()
        .collect();
    let got = wait_for(Duration::from_secs(90), || {
        let f = fired(&mon);
        want.is_subset(&f).then_some(f)
    });
    let f = fired(&mon);
    let missing: Vec<&String> = want.difference(&f).collect();
    assert!(
        got.is_some(),
        "rules that never fired: {missing:?}\nfired: {f:?}\nagent 0:\n{}",
        agents[0].raw_output()
    );
    eprintln!(
        "rules covered ({}): {:?}\nexempted ({}): {:?}",
        want.len(),
        want,
        EXEMPT_RULES.len(),
        EXEMPT_RULES.iter().map(|(r, _)| r).collect::<Vec<_>>()
    );
    // Alertmanager delivered to the test receiver too.
    let delivered = wait_for(Duration::from_secs(20), || {
        let got = mon.received();
        got.iter()
            .any(|b| b["alerts"].to_string().contains("NodewardFleetDuplicateIp"))
            .then_some(got.len())
    });
    assert!(delivered.is_some(), "receiver got: {:?}", mon.received());

    // Every panel query of the dashboard returned data at one of the two checkpoints
    // (live conflicts before the restarts; the reboot history after them).
    let after = panels_without_data(&mon);
    let never: Vec<&String> = before_restarts.intersection(&after).collect();
    assert!(never.is_empty(), "panels without data: {never:#?}");
    for a in &mut agents {
        a.stop();
    }
}
