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

#[test]
fn martian_sources_are_counted_by_kernel_reason_equal_to_the_kernels_counters_and_flood() {
    let name = "martian::martian_sources_are_counted_by_kernel_reason_equal_to_the_kernels_counters_and_flood";
    let Some(bin) = agent_bin(name) else { return };
    if !nodeward_tests::scapy_available(name) {
        return;
    }
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
    let agent = Agent::start(
        &bin,
        "[detectors.martian]\nflood_threshold = 30\nwindow = \"5s\"\n",
    );
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
    let script = format!(
        "from scapy.all import Ether, IP, UDP, sendp\n\
         for src, n in [('127.0.0.1', 10), ('0.0.0.0', 10), ('{b}', 10), ('192.168.77.7', 40)]:\n\
         \x20   sendp([Ether(dst='{mac}')/IP(src=src, dst='{b}')/UDP(sport=1234, dport=9)/b'x'] * n, iface='eth0', verbose=False)\n",
        b = lan.ip_b,
        mac = b_mac
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
