//! `cargo xtask stress`: floods against the real agent (release build, default
//! configuration, observe mode) with its memory sampled and its two interfaces asked
//! every 200 ms throughout: martian drops from a million distinct sources, ARP claims
//! for 100,000 addresses, cluster packets from 100,000 sources, and an exec storm that
//! overflows the ring buffer. Traffic stays inside two namespaces on a bridge the run
//! creates (and deletes, also on failure). Writes the stress section of BENCHMARKS.md.
//! Nothing here asserts a time; the exact overflow accounting is also a test
//! (`tests/src/faults.rs`).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    bench::agent::{rss_kib, scrape, start_agent, status_kib},
    build,
    lab::{self, sh},
    util::{root, step},
};

pub mod blast;
mod frames;
mod probe;

use probe::{Probe, Sample};

/// Execs while the agent is stopped: more than the 1 MiB ring buffer holds (~1,150
/// exec records), whatever the scale.
const STALL_EXECS: u32 = 3000;

/// The documented bound on the agent's resident memory under any of these floods.
const RSS_BOUND_KIB: u64 = 64 * 1024;

const NS_A: &str = "nwstress-a";
const NS_B: &str = "nwstress-b";
const BR: &str = "nwstressbr";
const PORT_A: &str = "nwstresspa";
const PORT_B: &str = "nwstresspb";
const IP_A: &str = "10.213.88.1";
const IP_B: &str = "10.213.88.2";
const HOSTS: [lab::Host; 2] = [(NS_A, PORT_A, IP_A), (NS_B, PORT_B, IP_B)];

/// The lab: two namespaces on a bridge; deleted when dropped.
struct Lab {
    b_mac: String,
}

impl Lab {
    fn up() -> Result<Lab> {
        lab::up(BR, &HOSTS)?;
        Ok(Lab {
            b_mac: lab::mac(NS_B)?,
        })
    }

    /// B drops what it has no route back to (rp_filter = 1), or accepts it (0).
    fn rp_filter(&self, on: bool) -> Result<()> {
        let v = if on { "1" } else { "0" };
        for key in ["all", "eth0"] {
            sh(&[
                "ip",
                "netns",
                "exec",
                NS_B,
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv4.conf.{key}.rp_filter={v}"),
            ])?;
        }
        Ok(())
    }

    /// `count` frames of `flood` from A to B: (frames sent, seconds).
    fn blast(&self, flood: &str, count: u32) -> Result<(u64, f64)> {
        let me = std::env::current_exe()?;
        let out = Command::new("ip")
            .args(["netns", "exec", NS_A])
            .arg(me)
            .args(["stress-blast", flood, &count.to_string(), &self.b_mac, IP_B])
            .output()?;
        if !out.status.success() {
            bail!("{flood} sender: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace();
        Ok((
            it.next().context("sent")?.parse()?,
            it.next().context("seconds")?.parse()?,
        ))
    }
}

impl Lab {
    /// The kernel's own count of what a flood delivered to where the agent looks:
    /// martian frames dropped by B's rp_filter (`IPReversePathFilter` in B), other
    /// frames received on A's bridge port (the backlog can drop a few of a fast flood
    /// before either point; those never reach a hook and are not the agent's to count).
    fn delivered(flood: &str) -> Result<f64> {
        if flood == "martian" {
            let out = Command::new("ip")
                .args(["netns", "exec", NS_B, "cat", "/proc/net/netstat"])
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
            let [names, values] = lines[..] else {
                bail!("no TcpExt in B's /proc/net/netstat");
            };
            let i = names
                .split_whitespace()
                .position(|n| n == "IPReversePathFilter")
                .context("IPReversePathFilter")?;
            return Ok(values.split_whitespace().nth(i).context("value")?.parse()?);
        }
        Ok(
            std::fs::read_to_string(format!("/sys/class/net/{PORT_A}/statistics/rx_packets"))?
                .trim()
                .parse()?,
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        lab::down(BR, &HOSTS);
    }
}

/// Sum of every series of `name` whose labels include all of `labels`.
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// The counters a phase reports, read off one scrape.
type Counters = Vec<(&'static str, f64)>;

fn counters(m: &str) -> Counters {
    let k = |kind, result| {
        sum(
            m,
            "nodeward_kernel_records_total",
            &[("kind", kind), ("result", result)],
        )
    };
    vec![
        (
            "martian drops counted",
            sum(m, "nodeward_martian_drops_total", &[]),
        ),
        (
            "martian floods",
            sum(m, "nodeward_martian_floods_total", &[]),
        ),
        (
            "arp records received",
            sum(m, "nodeward_events_total", &[("kind", "arp")]),
        ),
        ("arp ringbuf_full", k("arp", "ringbuf_full")),
        ("arp map_full", k("arp", "map_full")),
        (
            "arp new bindings",
            sum(m, "nodeward_arp_findings_total", &[("kind", "new_binding")]),
        ),
        (
            "arp conflicts",
            sum(m, "nodeward_arp_findings_total", &[("kind", "conflict")]),
        ),
        (
            "cluster packets counted",
            sum(m, "nodeward_corosync_packets_total", &[]),
        ),
        (
            "cluster packets untracked",
            sum(m, "nodeward_corosync_untracked_packets_total", &[]),
        ),
        (
            "rogue sources",
            sum(m, "nodeward_corosync_rogue_sources", &[]),
        ),
        ("exec submitted", k("exec", "submitted")),
        ("exec ringbuf_full", k("exec", "ringbuf_full")),
        (
            "all ringbuf_full",
            sum(
                m,
                "nodeward_kernel_records_total",
                &[("result", "ringbuf_full")],
            ),
        ),
        (
            "exec records received",
            sum(m, "nodeward_events_total", &[("kind", "exec")]),
        ),
        (
            "lost ringbuf_full",
            sum(
                m,
                "nodeward_events_lost_total",
                &[("reason", "ringbuf_full")],
            ),
        ),
        (
            "lost map_full",
            sum(m, "nodeward_events_lost_total", &[("reason", "map_full")]),
        ),
        (
            "lost queue_full",
            sum(m, "nodeward_events_lost_total", &[("reason", "queue_full")]),
        ),
        (
            "map insert failures",
            sum(m, "nodeward_map_insert_failures_total", &[]),
        ),
    ]
}

fn get(c: &Counters, name: &str) -> f64 {
    c.iter().find(|(n, _)| *n == name).map_or(f64::NAN, |v| v.1)
}

/// Wait (at most 60 s) until three readings a second apart agree (the agent has
/// caught up: its samplers run every second); a failed scrape never counts as settled.
fn settle(addr: &str) -> Result<Counters> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last: Option<Counters> = None;
    let mut same = 0;
    while Instant::now() < deadline {
        let now = scrape(addr, Duration::from_secs(10)).map(|m| counters(&m));
        if now.is_some() && now == last {
            same += 1;
            if same >= 2 {
                return Ok(now.unwrap_or_default());
            }
        } else {
            same = 0;
        }
        last = now;
        std::thread::sleep(Duration::from_secs(1));
    }
    bail!("the agent's counters did not settle within 60 s")
}

/// What changed, as "name Δ" (non-zero changes only; a gauge that moved as its value).
fn changes(before: &Counters, after: &Counters) -> String {
    after
        .iter()
        .filter_map(|(n, v)| {
            let was = get(before, n);
            if *n == "rogue sources" {
                // A gauge: its value, when it moved.
                return (*v != was).then(|| format!("{n} now {v:.0}"));
            }
            let d = v - was;
            (d != 0.0).then(|| format!("{n} {d:.0}"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

struct Row {
    flood: String,
    sent: String,
    sample: Sample,
    counted: String,
}

fn row(r: &Row) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} |",
        r.flood,
        r.sent,
        r.sample.max_rss_kib,
        r.sample.metrics.cell(),
        r.sample.control.cell(),
        r.counted
    )
}

/// Sizes of the floods (`--scale` multiplies them).
pub struct Sizes {
    pub martian: u32,
    pub arp: u32,
    pub corosync: u32,
    pub execs: u32,
}

impl Sizes {
    pub fn scaled(scale: f64) -> Sizes {
        let s = |n: f64| ((n * scale).round() as u32).max(1);
        Sizes {
            martian: s(1_000_000.0),
            arp: s(100_000.0),
            corosync: s(100_000.0),
            execs: s(3000.0),
        }
    }
}

/// `bin`: the agent to flood (default: build the release agent); `write`: put the
/// report into BENCHMARKS.md (the short run of `cargo xtask test` only prints it).
pub fn stress(scale: f64, bin: Option<std::path::PathBuf>, write: bool) -> Result<()> {
    if !crate::util::is_root() {
        bail!("cargo xtask stress needs root (eBPF, network namespaces)");
    }
    let sizes = Sizes::scaled(scale);
    let bin = match bin {
        Some(b) => b,
        None => build::build(true)?,
    };
    let lab = Lab::up()?;
    let scratch = tempfile_dir()?;
    let conf = scratch.join("corosync.conf");
    std::fs::write(
        &conf,
        format!(
            "totem {{\n  version: 2\n  cluster_name: stress\n}}\nnodelist {{\n  node {{\n    ring0_addr: {IP_A}\n    nodeid: 1\n  }}\n  node {{\n    ring0_addr: {IP_B}\n    nodeid: 2\n  }}\n}}\n"
        ),
    )?;
    let stand_in = scratch.join("dbus-send");
    std::fs::copy("/bin/true", &stand_in)?;
    step("starting the agent (release build, default configuration)");
    let mut agent = start_agent(
        &bin,
        false,
        &format!(
            "[detectors.corosync]\nconfig = \"{}\"\nrole = \"member\"\ninterfaces = [\"{PORT_A}\"]\n",
            conf.display()
        ),
    )?;
    let pid = agent.child.id();
    let addr = agent.addr.clone();
    let started_rss = wait_idle_rss(pid);
    let probe = Probe::start(pid, addr.clone(), agent.dir.join("ctl.sock"));
    let mut rows = Vec::new();

    // Each flood with the counters whose change must equal what the kernel delivered: the
    // per-source tables are small LRU maps (evicting their oldest under these floods),
    // the totals must stay exact.
    let floods: [(&str, &str, u32, &[&str]); 3] = [
        (
            "martian",
            "martian drops from distinct sources (rp_filter)",
            sizes.martian,
            &["martian drops counted"],
        ),
        (
            "arp",
            "gratuitous ARP claims, one MAC per address, on a bridge",
            sizes.arp,
            &["arp records received", "arp ringbuf_full", "arp map_full"],
        ),
        (
            "corosync",
            "UDP to the cluster port from sources outside the nodelist",
            sizes.corosync,
            &["cluster packets counted", "cluster packets untracked"],
        ),
    ];
    let mut inexact = Vec::new();
    for (flood, what, count, accounted) in floods {
        step(&format!("{flood}: {count} frames ({what})"));
        lab.rp_filter(flood == "martian")?;
        let before = settle(&addr)?;
        let delivered_before = Lab::delivered(flood)?;
        probe.take();
        let (sent, secs) = lab.blast(flood, count)?;
        let after = settle(&addr)?;
        let delivered = Lab::delivered(flood)? - delivered_before;
        let sample = probe.take();
        let total: f64 = accounted
            .iter()
            .map(|n| get(&after, n) - get(&before, n))
            .sum();
        let exact = total == delivered;
        if !exact {
            inexact.push(format!(
                "{flood}: the kernel delivered {delivered}, the agent accounted {total}"
            ));
        }
        let counted = format!(
            "{}; kernel delivered {delivered} = {}: {}",
            changes(&before, &after),
            accounted.join(" + "),
            if exact { "exact" } else { "NOT EXACT" }
        );
        println!(
            "  sent {sent} in {secs:.1} s; max RSS {} KiB; {counted}",
            sample.max_rss_kib
        );
        rows.push(Row {
            flood: format!("{flood}: {what}"),
            sent: format!("{sent} in {secs:.1} s"),
            sample,
            counted,
        });
    }
    lab.rp_filter(false)?;

    step(&format!(
        "exec storm: {} execs while the agent reads, then {STALL_EXECS} while it is stopped",
        sizes.execs
    ));
    let before = settle(&addr)?;
    probe.take();
    let t = Instant::now();
    exec_many(&stand_in, sizes.execs)?;
    let running_secs = t.elapsed().as_secs_f64();
    let mid = settle(&addr)?;
    let sample = probe.take();
    rows.push(Row {
        flood: "exec storm, agent reading".into(),
        sent: format!("{} in {running_secs:.1} s", sizes.execs),
        sample,
        counted: changes(&before, &mid),
    });
    // SIGSTOP stands in for a stalled agent; the probes pause with it.
    probe.pause();
    signal(pid, libc::SIGSTOP);
    let stalled = exec_many(&stand_in, STALL_EXECS);
    signal(pid, libc::SIGCONT);
    probe.resume();
    stalled?;
    let after = settle(&addr)?;
    let sample = probe.take();
    let sent = f64::from(STALL_EXECS);
    let d = |n: &str| get(&after, n) - get(&mid, n);
    let exact = d("exec ringbuf_full") > 0.0
        && d("exec submitted") + d("exec ringbuf_full") == sent
        && d("exec ringbuf_full") == sent - d("exec records received")
        && d("lost ringbuf_full") == d("all ringbuf_full");
    rows.push(Row {
        flood: "exec storm, agent stopped (SIGSTOP) while it runs".into(),
        sent: format!("{STALL_EXECS}"),
        sample,
        counted: format!(
            "{}; sent − recorded = lost: {}",
            changes(&mid, &after),
            if exact { "exact" } else { "NOT EXACT" }
        ),
    });
    drop(probe);
    let peak = status_kib(pid, "VmHWM");
    let _ = &mut agent;
    drop(agent);
    drop(lab);
    let _ = std::fs::remove_dir_all(&scratch);

    let text = report(&rows, started_rss, peak, &sizes);
    if write {
        crate::util::write_section(&root().join("BENCHMARKS.md"), "stress", &text)?;
    }
    println!("{text}");
    if peak > RSS_BOUND_KIB {
        bail!("the agent's peak RSS {peak} KiB is over the {RSS_BOUND_KIB} KiB bound");
    }
    if !exact {
        bail!(
            "the exec storm did not overflow the ring buffer or its loss was not accounted exactly (see the table)"
        );
    }
    if !inexact.is_empty() {
        bail!("a flood was not accounted exactly: {}", inexact.join("; "));
    }
    let unanswered: u32 = rows
        .iter()
        .map(|r| r.sample.metrics.failed + r.sample.control.failed)
        .sum();
    if unanswered > 0 {
        bail!(
            "{unanswered} probes of /metrics or the control socket went unanswered (see the table)"
        );
    }
    Ok(())
}

fn report(rows: &[Row], started_rss: u64, peak: u64, sizes: &Sizes) -> String {
    let date = crate::util::utc_now().unwrap_or_else(|e| {
        let e = e.to_string();
        format!("(no date: {})", e.lines().next().unwrap_or_default())
    });
    let verdict = if peak <= RSS_BOUND_KIB {
        "within"
    } else {
        "OVER"
    };
    format!(
        "## Floods and memory (`cargo xtask stress`)\n\n\
Written by `cargo xtask stress` (release build, default configuration plus a two-node\n\
corosync.conf, observe mode). Each flood is sent as fast as a namespace takes it, from\n\
namespace A across a bridge to namespace B; `/metrics` and the control socket are asked\n\
every 200 ms throughout and the agent's RSS sampled. Counts after the agent settled.\n\n\
- machine: {}\n- date: {date}\n- sizes: {} martian sources, {} ARP addresses, {} cluster sources, {} execs in the storm the agent reads, {STALL_EXECS} in the one it is stopped for\n\
- agent RSS after start: {started_rss} KiB; peak over the whole run (VmHWM): **{peak} KiB**, {verdict} the documented bound of {} KiB (the peak is reached while the kernel's BTF is parsed at start, before any flood: compare each flood's max RSS below with the RSS after start)\n\n\
| flood | frames sent | max RSS (KiB) | `/metrics` | control socket | what the agent counted (Δ) |\n|---|---|---|---|---|---|\n{}\n",
        crate::bench::machine(),
        sizes.martian,
        sizes.arp,
        sizes.corosync,
        sizes.execs,
        RSS_BOUND_KIB,
        rows.iter().map(row).collect::<Vec<_>>().join("\n")
    )
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("nodeward-stress-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// RSS once the agent has been up a few seconds (its steady state before any flood).
fn wait_idle_rss(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_secs(3));
    rss_kib(pid)
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on the PID of our own child.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Run the stand-in `n` times, two at a time.
fn exec_many(stand_in: &Path, n: u32) -> Result<()> {
    let run = |count: u32| -> Result<()> {
        for i in 0..count {
            let st = Command::new(stand_in)
                .args(["--session", &format!("--dest=org.example.Stress{i}")])
                .status()?;
            if !st.success() {
                bail!("stand-in exited with {st}");
            }
        }
        Ok(())
    };
    std::thread::scope(|s| {
        let a = s.spawn(|| run(n / 2));
        let b = run(n - n / 2);
        a.join()
            .map_err(|_| anyhow::anyhow!("exec thread panicked"))??;
        b
    })
}
