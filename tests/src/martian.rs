//! End to end, `martian` detector: crafted packets with impossible sources sent from
//! one test namespace to another (rp_filter=1); the drop reasons come from the kernel,
//! and the counts must equal the kernel's own counters for the same traffic.

use std::{process::Command, time::Duration};

use nodeward_tests::{Agent, Lan, agent_bin, metric_sum, wait_for};

fn netstat_rpfilter(lan: &Lan) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &lan.ns_b, "cat", "/proc/net/netstat"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let idx = rows[0]
        .split_whitespace()
        .position(|n| n == "IPReversePathFilter")
        .unwrap();
    rows[1]
        .split_whitespace()
        .nth(idx)
        .unwrap()
        .parse()
        .unwrap()
}

fn in_martian_src() -> u64 {
    let text = std::fs::read_to_string("/proc/net/stat/rt_cache").unwrap();
    let mut lines = text.lines();
    let idx = lines
        .next()
        .unwrap()
        .split_whitespace()
        .position(|c| c == "in_martian_src")
        .unwrap();
    lines
        .filter_map(|l| l.split_whitespace().nth(idx))
        .map(|v| u64::from_str_radix(v, 16).unwrap())
        .sum()
}

/// Two test namespaces, the receiver with rp_filter=1: (lan, the receiver's netns
/// inode, the receiver's MAC).
fn rp_filter_lan() -> (Lan, String, String) {
    let lan = Lan::new();
    for key in [
        "net.ipv4.conf.all.rp_filter=1",
        "net.ipv4.conf.eth0.rp_filter=1",
        "net.ipv4.conf.all.log_martians=1",
    ] {
        assert!(
            Command::new("ip")
                .args(["netns", "exec", &lan.ns_b, "sysctl", "-q", "-w", key])
                .status()
                .unwrap()
                .success()
        );
    }
    let inum = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "exec", &lan.ns_b, "readlink", "/proc/self/ns/net"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .trim_start_matches("net:[")
    .trim_end_matches(']')
    .to_string();
    let b_mac = {
        let out = Command::new("ip")
            .args(["-n", &lan.ns_b, "-br", "link", "show", "eth0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_string()
    };
    (lan, inum, b_mac)
}

/// The lab and an agent counting floods of 30 drops within `window`; `None` (the skip
/// said out loud) without the agent binary or scapy.
fn start(name: &str, window: &str) -> Option<(Lan, String, String, Agent)> {
    let bin = agent_bin(name)?;
    if !nodeward_tests::scapy_available(name) {
        return None;
    }
    let (lan, inum, b_mac) = rp_filter_lan();
    let agent = Agent::start(
        &bin,
        &format!("[detectors.martian]\nflood_threshold = 30\nwindow = \"{window}\"\n"),
    );
    Some((lan, inum, b_mac, agent))
}

#[test]
fn martian_sources_are_counted_by_kernel_reason_equal_to_the_kernels_counters_and_flood() {
    let name = "martian::martian_sources_are_counted_by_kernel_reason_equal_to_the_kernels_counters_and_flood";
    let Some((lan, inum, b_mac, agent)) = start(name, "5s") else {
        return;
    };
    let ours = |reason: &str| {
        agent
            .metrics()
            .lines()
            .filter(|l| {
                l.starts_with("nodeward_martian_drops_total{")
                    && l.contains(&format!("@netns{inum}\""))
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>()
    };
    let (rp0, ms0) = (netstat_rpfilter(&lan), in_martian_src());
    // Sources: loopback, zero, the receiver's own address, and an unrouted one.
    let b = lan.ip_b.clone();
    send_from(
        &lan,
        &b_mac,
        &[
            ("127.0.0.1", 10),
            ("0.0.0.0", 10),
            (&b, 10),
            ("192.168.77.7", 40),
        ],
        1000,
    );

    let expected = [
        ("ip_localnet", 10.0),
        ("ip_invalid_source", 10.0),
        ("ip_local_source", 10.0),
        ("ip_rpfilter", 40.0),
    ];
    let got = wait_for(Duration::from_secs(6), || {
        let got: Vec<f64> = expected.iter().map(|(r, _)| ours(r)).collect();
        (got.iter().zip(expected).all(|(g, (_, e))| *g == e)).then_some(got)
    });
    let now: Vec<(&str, f64)> = expected.iter().map(|(r, _)| (*r, ours(r))).collect();
    assert!(
        got.is_some(),
        "per-reason counts {now:?}, expected {expected:?}:\n{}",
        agent
            .metrics()
            .lines()
            .filter(|l| l.contains("martian"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The kernel's own counters for the same traffic.
    assert_eq!(
        netstat_rpfilter(&lan) - rp0,
        40,
        "TcpExt IPReversePathFilter"
    );
    assert_eq!(in_martian_src() - ms0, 70, "in_martian_src");
    // 40 rp_filter drops in 5 s: a flood, naming the source.
    let flood = wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "martian_flood" && l["reason"] == "ip_rpfilter")
    })
    .unwrap_or_else(|| panic!("no flood:\n{}", agent.raw_output()));
    assert!(
        flood["message"].as_str().unwrap().contains("192.168.77.7"),
        "{flood}"
    );
    // The sampler sets the top sources just after handing the finding to the pipeline,
    // which may log it first: poll.
    fn top(m: &str) -> f64 {
        metric_sum(
            m,
            "nodeward_martian_top_source",
            &[("source", "192.168.77.7")],
        )
    }
    let m = wait_for(Duration::from_secs(5), || {
        let m = agent.metrics();
        (top(&m) >= 40.0).then_some(m)
    })
    .unwrap_or_else(|| agent.metrics());
    assert!(
        top(&m) >= 40.0,
        "top source 192.168.77.7 at {}, want ≥ 40:\n{m}",
        top(&m)
    );
}

/// Send `n` packets from each `src` to the receiver's discard port, `pps` a second.
fn send_from(lan: &Lan, b_mac: &str, sources: &[(&str, u32)], pps: u32) {
    let list: Vec<String> = sources
        .iter()
        .map(|(a, n)| format!("('{a}', {n})"))
        .collect();
    let script = format!(
        "from scapy.all import Ether, IP, UDP, sendp\n\
         for src, n in [{list}]:\n\
         \x20   sendp([Ether(dst='{b_mac}')/IP(src=src, dst='{b}')/UDP(sport=1234, dport=9)/b'x'] * n, iface='eth0', inter={inter}, verbose=False)\n",
        list = list.join(", "),
        b = lan.ip_b,
        inter = 1.0 / f64::from(pps),
    );
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lan.ns_a,
            "/usr/bin/python3",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scapy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_slow_flood_is_named_after_the_sources_inside_its_window() {
    let name = "martian::a_slow_flood_is_named_after_the_sources_inside_its_window";
    let Some((lan, inum, b_mac, agent)) = start(name, "4s") else {
        return;
    };
    let drops = || {
        metric_sum(
            &agent.metrics(),
            "nodeward_martian_drops_total",
            &[("reason", "ip_rpfilter")],
        )
    };
    let ours = |l: &serde_json::Value| {
        l["finding"] == "martian_flood"
            && l["interface"].as_str().is_some_and(|i| i.contains(&inum))
    };
    // An old burst below the threshold from .5 ...
    let before = drops();
    send_from(&lan, &b_mac, &[("192.168.77.5", 25)], 1000);
    assert!(
        wait_for(Duration::from_secs(5), || (drops() >= before + 25.0)
            .then_some(()))
        .is_some(),
        "the old burst was not counted"
    );
    // ... that ages out of the 4 s window (the window is time itself: nothing to poll).
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !agent.logs().iter().any(ours),
        "the burst alone is no flood"
    );
    // Then a slow flood from .6: 12 packets/s for 4 s.
    send_from(&lan, &b_mac, &[("192.168.77.6", 48)], 12);
    let flood = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| ours(l))
    })
    .unwrap_or_else(|| panic!("no flood:\n{}", agent.raw_output()));
    let message = flood["message"].as_str().unwrap();
    assert!(message.contains("192.168.77.6"), "{flood}");
    assert!(
        !message.contains("192.168.77.5"),
        "a source that stopped before the window is named: {flood}"
    );
}
