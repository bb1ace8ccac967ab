//! `cargo xtask bench`: the agent's cost, measured as ratios in one run — each
//! workload without and with the agent (default config, observe mode) and with auditd,
//! in pairs whose run order rotates,
//! on this machine, now. Writes BENCHMARKS.md. Nothing here asserts a time: the
//! machines are shared and noisy; the numbers are for reading.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    build,
    util::{root, step},
};

pub mod agent;
mod auditd;
mod hook;
mod stats;
mod workloads;

use agent::{
    ProgStats, cpu_seconds, map_kib, program_seconds, program_stats, rss_kib, start_agent,
};
use stats::{fmt_ratio, quartiles, verdict};
pub use workloads::{udp_recv, udp_send};

/// How many times longer a build or an unpack run lasts than the others.
const LONG: f64 = 3.0;

/// The runs of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Without,
    Agent,
    Auditd,
    /// The packet workloads only: an empty TC program on the agent's interfaces, no
    /// agent (the kernel's hook alone).
    Hook,
}

/// The order of pair `pair`'s runs, balanced over the sides that run: for three sides
/// the six orders in turn (the third being auditd, or the hook's side when auditd does
/// not run); with all four, the four rows of a balanced Latin square (each side once in
/// each position, and each side right after each other side once).
fn pair_order(pair: usize, hook: bool, auditd: bool) -> Vec<Side> {
    use Side::*;
    const ORDERS: [[Side; 3]; 6] = [
        [Without, Agent, Auditd],
        [Agent, Auditd, Without],
        [Auditd, Without, Agent],
        [Without, Auditd, Agent],
        [Agent, Without, Auditd],
        [Auditd, Agent, Without],
    ];
    const WITH_HOOK: [[Side; 4]; 4] = [
        [Without, Agent, Hook, Auditd],
        [Agent, Auditd, Without, Hook],
        [Auditd, Hook, Agent, Without],
        [Hook, Without, Auditd, Agent],
    ];
    match (hook, auditd) {
        (true, true) => WITH_HOOK[(pair - 1) % 4].to_vec(),
        (true, false) => ORDERS[(pair - 1) % 6]
            .iter()
            .map(|&s| if s == Auditd { Hook } else { s })
            .collect(),
        (false, _) => ORDERS[(pair - 1) % 6].to_vec(),
    }
}

/// One workload: runs for `secs` and returns operations done.
struct Workload {
    name: &'static str,
    unit: &'static str,
    /// The ratio the issue asks for (with ÷ without).
    target: f64,
    what: &'static str,
    run: fn(f64) -> Result<workloads::Ops>,
    /// A run lasts this many times `secs`: the real-work workloads (a build, an unpack)
    /// do few, uneven operations per second and need longer windows to settle.
    length: f64,
    /// A packet workload: its pairs also run with an empty TC program and no agent.
    hook: bool,
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cpus} × {cpu}, {mem} RAM, kernel {}", kernel.trim())
}

/// Every workload of the bench, in the order it runs them.
fn workload_list() -> [Workload; 8] {
    [
        Workload {
            name: "getpid",
            unit: "calls/s",
            target: 0.99,
            what: "getpid(2) in a tight loop: the slow-path canary (any syscall tracepoint, or audit once enabled on the boot, puts the syscalls of processes on the slow path)",
            length: 1.0,
            hook: false,
            run: |s| workloads::getpid_loop(s).map(workloads::Ops::whole),
        },
        Workload {
            name: "open",
            unit: "opens/s",
            target: 0.97,
            what: "open(2)+close of a non-secret file",
            length: 1.0,
            hook: false,
            run: |s| workloads::open_loop(s).map(workloads::Ops::whole),
        },
        Workload {
            name: "exec",
            unit: "execs/s",
            target: 0.98,
            what: "fork + exec of /bin/true (sched_process_exec programs, fork/exit, cap_capable)",
            length: 1.0,
            hook: false,
            run: |s| workloads::exec_loop(s).map(workloads::Ops::whole),
        },
        Workload {
            name: "build",
            unit: "builds/s",
            target: 0.99,
            what: "`make -j2` of zlib's static library (Debian's zlib source), clean each round",
            length: LONG,
            hook: false,
            run: |s| workloads::build_loop(s).map(workloads::Ops::whole),
        },
        Workload {
            name: "tar",
            unit: "unpacks/s",
            target: 0.99,
            what: "unpacking zlib's source tarball (tar + bzip2, ~300 files) into tmpfs",
            length: LONG,
            hook: false,
            run: |s| workloads::tar_loop(s).map(workloads::Ops::whole),
        },
        Workload {
            name: "udp",
            unit: "packets/s",
            target: 0.97,
            what: "80-byte UDP to port 5405 across a bridge, from a source outside the nodelist, as fast as one sender goes, received by a socket as corosync receives its ring's traffic: the packet program's heaviest common path (counted per source)",
            length: 1.0,
            hook: true,
            run: workloads::udp_loop,
        },
        Workload {
            name: "udp_plain",
            unit: "packets/s",
            target: 0.97,
            what: "80-byte UDP to port 9 across the same bridge, received the same way: ordinary traffic, which the packet program parses and passes",
            length: 1.0,
            hook: true,
            run: workloads::udp_plain_loop,
        },
        Workload {
            name: "udp_drop",
            unit: "packets/s",
            target: 0.97,
            what: "the `udp` datagrams with nothing listening: every one freed as a drop (no socket), so the martian filter on kfree_skb runs for each as well (a flood at a closed port)",
            length: 1.0,
            hook: true,
            run: workloads::udp_drop_loop,
        },
    ]
}

/// Operations per second of one run of workload `name`, in a process started for this
/// run (after the side's own setup: the agent loaded, auditd started, or neither), so
/// every side's workload starts as a process started at that moment would: the kernel
/// decides at fork whether a task takes audit's syscall path. Over the time the run
/// really took: a build or an unpack in progress at the deadline is finished, so the
/// elapsed time, not the nominal window, divides the count (the UDP workloads: the
/// sender's own seconds, without the receiver's start and end).
fn rate(name: &str, secs: f64) -> Result<f64> {
    // The bench's own image, never its path: a rebuild of xtask during a bench replaces
    // the file, not the running image.
    let text = crate::util::output(
        Command::new("/proc/self/exe")
            .args(["bench-work", name, &secs.to_string()])
            .env("NODEWARD_BENCH_ID", workloads::bench_id().to_string()),
    )
    .with_context(|| format!("workload {name}"))?;
    match workloads::count_and_secs(&text) {
        Some((n, elapsed)) if elapsed > 0.0 => Ok(n as f64 / elapsed),
        _ => bail!("workload {name}: unexpected report {text:?} (want: operations seconds)"),
    }
}

/// The workload process itself (hidden subcommand `bench-work`): runs `name` for
/// `secs` and prints the operations done and the seconds it took.
pub fn work(name: &str, secs: f64) -> Result<()> {
    let Some(w) = workload_list().into_iter().find(|w| w.name == name) else {
        bail!("no workload {name:?}");
    };
    let t = Instant::now();
    let ops = (w.run)(secs)?;
    let elapsed = ops.secs.unwrap_or_else(|| t.elapsed().as_secs_f64());
    println!("{} {elapsed}", ops.n);
    Ok(())
}

/// Removes the bench's scratch trees when dropped.
struct Scratch;

impl Drop for Scratch {
    fn drop(&mut self) {
        workloads::clean_scratch();
    }
}

/// `record`: with `only`, write the run's rows as a focused section of BENCHMARKS.md, one
/// per workload set (more pairs on a few workloads, for a tighter notch) instead of
/// printing them only.
pub fn bench(secs: f64, pairs: usize, auditd: bool, only: &[String], record: bool) -> Result<()> {
    if pairs < 7 && (only.is_empty() || record) {
        bail!(
            "--pairs {pairs}: BENCHMARKS.md needs at least 7 pairs per workload (a shorter run is a partial one: add --only, without --record)"
        );
    }
    if record && only.is_empty() {
        bail!(
            "--record writes a focused section (one per workload set) of a run limited by --only: name its workloads"
        );
    }
    // A full run rewrites BENCHMARKS.md keeping the focused and stress sections: a
    // damaged one is refused now, not after the run.
    if only.is_empty() {
        let doc = std::fs::read_to_string(root().join("BENCHMARKS.md")).unwrap_or_default();
        crate::util::sections(&doc, "focused ")?;
    }
    let all = workload_list();
    if let Some(unknown) = only.iter().find(|o| !all.iter().any(|w| w.name == *o)) {
        bail!(
            "--only: no workload {unknown:?} (there are: {})",
            all.iter().map(|w| w.name).collect::<Vec<_>>().join(", ")
        );
    }
    let workloads: Vec<&Workload> = all
        .iter()
        .filter(|w| only.is_empty() || only.iter().any(|o| o == w.name))
        .collect();
    let bin = build::build(true)?;
    // The scratch trees (build, unpack) go on every way out, and a tree an earlier
    // bench left under the same id is not reused half-made.
    workloads::clean_scratch();
    let _scratch = Scratch;
    if workloads
        .iter()
        .any(|w| w.name == "build" || w.name == "tar")
    {
        step("fetching the build workload's source (zlib, Debian source package)");
        workloads::source_tarball()?;
        if workloads.iter().any(|w| w.name == "build") {
            step("configuring the build workload's tree (once, outside every timed run)");
            workloads::build_tree()?;
        }
    }
    let audit = auditd::setup(auditd);
    // The packet workloads also run with an empty TC program and no agent.
    let packet_run = workloads.iter().any(|w| w.hook);
    step("setting up the bench network (2 namespaces on a bridge)");
    workloads::net_up()?;
    let result = (|| -> Result<(String, String)> {
        let mut rows = Vec::new();
        let mut decomposition = Vec::new();
        let mut agent_cpu = 0.0;
        let mut agent_wall = 0.0;
        let mut prog_s = 0.0;
        let mut prof_wall = 0.0;
        let mut per_prog = ProgStats::new();
        let (mut rss, mut maps) = (0, 0);
        let mut auditd_error = audit.skipped.clone();
        // Tried once before any pair, so that the order of every pair is chosen from
        // the sides that will run.
        let mut hook_error = if packet_run {
            hook::EmptyHook::attach(&workloads::TC_INTERFACES)
                .err()
                .map(|e| format!("{e:#}"))
        } else {
            None
        };
        for w in workloads.iter().copied() {
            let (mut without, mut ours, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
            let mut hooked = Vec::new();
            for pair in 1..=pairs {
                // The runs of a pair in an order that changes from pair to pair
                // ([`pair_order`]), so neither drift nor a position's own effect (the
                // run right after the agent, auditd or the empty program goes) favours
                // one side.
                let (mut base, mut with, mut aud, mut hook) = (0.0, 0.0, None, None);
                let sides =
                    pair_order(pair, w.hook && hook_error.is_none(), auditd_error.is_none());
                for side in sides {
                    match side {
                        Side::Without => {
                            step(&format!(
                                "{} pair {pair}/{pairs}: without the agent",
                                w.name
                            ));
                            base = rate(w.name, secs * w.length)?;
                        }
                        Side::Agent => {
                            step(&format!("{} pair {pair}/{pairs}: with the agent", w.name));
                            let agent = start_agent(&bin, false, "")?;
                            std::thread::sleep(Duration::from_secs(1));
                            let pid = agent.child.id();
                            let (c0, t0) = (cpu_seconds(pid), Instant::now());
                            with = rate(w.name, secs * w.length)?;
                            agent_cpu += cpu_seconds(pid) - c0;
                            agent_wall += t0.elapsed().as_secs_f64();
                            rss = rss.max(rss_kib(pid));
                            maps = maps.max(map_kib(pid));
                        }
                        Side::Auditd if auditd_error.is_none() => {
                            step(&format!("{} pair {pair}/{pairs}: with auditd", w.name));
                            match auditd::Auditd::start() {
                                Ok(a) => {
                                    aud = Some(rate(w.name, secs * w.length)?);
                                    drop(a);
                                }
                                Err(e) => {
                                    auditd_error = Some(format!("auditd did not start: {e:#}"))
                                }
                            }
                        }
                        Side::Auditd => {}
                        Side::Hook if hook_error.is_none() => {
                            step(&format!(
                                "{} pair {pair}/{pairs}: with an empty TC program, no agent",
                                w.name
                            ));
                            match hook::EmptyHook::attach(&workloads::TC_INTERFACES) {
                                Ok(attached) => {
                                    hook = Some(rate(w.name, secs * w.length)?);
                                    drop(attached);
                                }
                                Err(e) => {
                                    // This workload's earlier hook runs go too: the
                                    // column is all of a run's pairs or none.
                                    hooked.clear();
                                    hook_error = Some(format!("{e:#}"));
                                }
                            }
                        }
                        Side::Hook => {}
                    }
                }
                without.push(base);
                ours.push(with / base);
                // Pairs stay aligned: once auditd fails it is not run again.
                if let Some(v) = aud {
                    theirs.push(v / base);
                }
                if let Some(v) = hook {
                    hooked.push(v / base);
                }
            }
            // Where the cost comes from: the agent with one detector off at a time
            // (one run each, against this workload's median without the agent).
            let base = quartiles(without.clone()).1;
            let mut parts = Vec::new();
            if ["getpid", "open", "exec", "udp", "udp_plain", "udp_drop"].contains(&w.name) {
                for d in agent_common::DETECTORS {
                    step(&format!("{}: with the agent, {d} off", w.name));
                    let agent =
                        start_agent(&bin, false, &format!("[detectors.{d}]\nenabled = false\n"))?;
                    std::thread::sleep(Duration::from_secs(1));
                    let v = rate(w.name, secs * w.length)?;
                    drop(agent);
                    parts.push(format!("{d} off: {:.3}", v / base));
                }
                decomposition.push(format!("| {} | {} |", w.name, parts.join(" · ")));
            }
            // One more run, with bpf_stats, for the per-program table only.
            step(&format!("{}: profiled run (bpf_stats on)", w.name));
            let agent = start_agent(&bin, true, "")?;
            std::thread::sleep(Duration::from_secs(1));
            let (p0, t0) = (program_stats(), Instant::now());
            rate(w.name, secs * w.length)?;
            let p1 = program_stats();
            prof_wall += t0.elapsed().as_secs_f64();
            drop(agent);
            prog_s += program_seconds(&p1) - program_seconds(&p0);
            for (name, (s1, r1)) in &p1 {
                let (s0, r0) = p0.get(name).copied().unwrap_or_default();
                let e = per_prog.entry(name.clone()).or_default();
                e.0 += s1 - s0;
                e.1 += r1 - r0;
            }
            // The machine's own noise on this workload: how far the runs without the
            // agent spread (interquartile range over their median).
            let noise = {
                let (q1, m, q3) = quartiles(without.clone());
                (q3 - q1) / m.max(1e-9)
            };
            let verdict = verdict(&ours, &theirs, w.target);
            rows.push(format!(
                "| {} | {:.0} {} | {:.1} % | {} | {} | {} | ≥ {:.2} | {} | {} |",
                w.name,
                base,
                w.unit,
                100.0 * noise,
                fmt_ratio(&ours),
                fmt_ratio(&theirs),
                fmt_ratio(&hooked),
                w.target,
                verdict,
                w.what
            ));
        }
        let mut progs: Vec<(&String, &(f64, f64))> =
            per_prog.iter().filter(|(_, v)| v.1 > 0.0).collect();
        progs.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
        let prog_rows: Vec<String> = progs
            .iter()
            .map(|(n, (s, r))| format!("| `{n}` | {r:.0} | {:.0} |", 1e9 * s / r))
            .collect();
        let date = crate::util::utc_now()?;
        let auditd_line = match &auditd_error {
            None => "auditd: started for each of its runs with an execve rule, reboot/kexec syscall rules and read/write watches on the secret files present (comparable coverage), torn down after each".to_string(),
            Some(why) => format!("auditd: {why}"),
        };
        let hook_line = match &hook_error {
            _ if !packet_run => "empty TC program: no packet workload in this run".to_string(),
            None => "empty TC program (packet workloads): `return TCX_NEXT`, attached with tcx at ingress on the bench bridge and its two ports (where the agent's packet program goes here), no agent: the kernel's TC hook alone, the floor under the agent's packet ratios".to_string(),
            Some(why) => format!("empty TC program: not run ({why})"),
        };
        let audit_runs = match &audit.quiet {
            Ok(()) => "outside\nauditd's runs audit is off and a `task,never` rule keeps new processes off audit's\nsyscall path (once audit has been enabled on a boot, the kernel otherwise puts every\nprocess forked later on it, auditd running or not).".to_string(),
            Err(why) => format!("audit was\nleft as found ({why}): if it was ever enabled on this boot, every run's processes\ntake audit's syscall path."),
        };
        let long = secs * LONG;
        let table_head = "| workload | without agent (median) | noise | nodeward ratio | auditd ratio | empty TC program ratio | target | verdict | what it exercises |\n|---|---|---|---|---|---|---|---|---|";
        let names: Vec<&str> = workloads.iter().map(|w| w.name).collect();
        let names = names.join(",");
        let machine = machine();
        let focused = format!(
            "## Focused run: {names}, {pairs} pairs, {secs} s runs\n\nWritten by `cargo xtask bench --only {names} --pairs {pairs} --secs {secs} --record`: the\nmeasurement of the first table, with more pairs on the workloads it names for a tighter\nnotch ({secs} s runs, {long} s for build and tar). It has its own date: compare it with the\nfirst table's before reading one against the other.\n\n- machine: {}\n- date: {date}\n- {auditd_line}\n- {hook_line}\n\n{table_head}\n{}\n{}",
            machine,
            rows.join("\n"),
            if decomposition.is_empty() {
                String::new()
            } else {
                format!(
                    "\nThe agent with one detector switched off at a time, one run each, against the same\nmedian without the agent:\n\n| workload | ratio with the agent, one detector off |\n|---|---|\n{}\n",
                    decomposition.join("\n")
                )
            }
        );
        let text = format!(
            "# Benchmarks\n\nWritten by `cargo xtask bench` (release build, default configuration, observe mode).\n\
Each workload runs in {pairs} interleaved pairs (without the agent, with it, and with auditd when it runs: the\n\
order changes from pair to pair, the six orders in turn, each equally often when the pairs\n\
are a multiple of 6; the packet workloads add a run with an empty TC program and no agent,\n\
the four orders of a balanced Latin square in turn, each equally often when the pairs are a\n\
multiple of 4: 12 pairs, the default, balance both),\n\
{secs} s per run ({long} s for build and tar); a ratio is with ÷ without within one pair (1.000 = no cost).\n\
Each run's workload is a process started for that run, after its side's setup; {audit_runs} The table shows\n\
the median ratio and, in brackets, its interquartile range. Shared, noisy machines: read\n\
ratios, not absolute numbers, and compare runs on one machine only. `noise` is the spread of\n\
the runs without the agent (interquartile range ÷ median). A verdict says \"not resolved by\n\
this run\" when the median lies closer to the target than its own uncertainty (McGill's\n\
notch: 1.58 × the ratios' interquartile range ÷ √pairs), whether met or missed. Against\n\
auditd (run in the same pairs, against the same run without either) the verdict is on\n\
the difference of the two ratios within each pair, with the same rule.\n\n\
- machine: {}\n- date: {date}\n- {auditd_line}\n- {hook_line}\n\n\
{table_head}\n{}\n\n\
Where the cost comes from: the agent with one detector switched off at a time, one run each,\n\
ratio against the same median without the agent (a detector whose removal raises the ratio\n\
most is the one that costs most on that workload):\n\n| workload | ratio with the agent, one detector off |\n|---|---|\n{}\n\n\
| agent cost | value |\n|---|---|\n\
| agent CPU (userspace + its share of syscalls) while loaded | {:.1} % of one CPU |\n\
| eBPF programs CPU (kernel `bpf_stats`, profiled runs) | {:.1} % of one CPU |\n\
| agent resident memory (max) | {} KiB |\n| kernel memory of its eBPF maps | {} KiB |\n\n\
Per eBPF program, over one profiled run per workload (`agent.program_stats = true`: the\n\
kernel's `bpf_stats`, which itself adds two clock reads per program run; the ratios above\n\
are measured without it, as the agent runs by default):\n\n| program | runs | ns per run |\n|---|---|---|\n{}\n",
            machine,
            rows.join("\n"),
            decomposition.join("\n"),
            100.0 * agent_cpu / agent_wall.max(1e-9),
            100.0 * prog_s / prof_wall.max(1e-9),
            rss,
            maps,
            prog_rows.join("\n")
        );
        Ok((text, focused))
    })();
    workloads::net_down();
    if audit.quiet.is_ok() {
        step("left as the runs had it: audit off, one rule (task,never); `auditctl -D` removes it");
    }
    let (mut text, focused) = result?;
    let path = root().join("BENCHMARKS.md");
    if record {
        // One section per workload set: a focused run of open,build,tar keeps the
        // one of the packet workloads.
        let names: Vec<&str> = workloads.iter().map(|w| w.name).collect();
        let section = format!("focused {}", names.join(","));
        crate::util::write_section(&path, &section, &focused)?;
        println!("{focused}");
        println!("(--record: the section `{section}` of BENCHMARKS.md rewritten)");
        return Ok(());
    }
    if !only.is_empty() {
        println!("{text}");
        println!("(--only: a partial run; BENCHMARKS.md left as it is; --record keeps its rows)");
        return Ok(());
    }
    step("packet program cost per frame (BPF_PROG_TEST_RUN)");
    text.push_str(&packet_cost(&bin)?);
    // The focused runs' sections (`--only … --record`, one per workload set) and the
    // stress section (`cargo xtask stress`) are kept as they were: each states its date.
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    for section in crate::util::sections(&old, "focused ")?
        .into_iter()
        .chain(crate::util::section(&old, "stress"))
    {
        text.push('\n');
        text.push_str(&section);
    }
    std::fs::write(&path, &text)?;
    println!("{text}");
    Ok(())
}

/// The packet program's cost per crafted frame, from `nodeward check --packet-cost`
/// (BPF_PROG_TEST_RUN: no traffic, no bpf_stats), as a BENCHMARKS.md section.
fn packet_cost(bin: &Path) -> Result<String> {
    let out = Command::new(bin)
        .args(["check", "--packet-cost", "--json"])
        .output()?;
    if !out.status.success() {
        bail!(
            "nodeward check --packet-cost: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    let target = |frame: &str| match frame {
        "unrelated" => "≤ 30",
        "cluster" => "≤ 80",
        _ => "—",
    };
    let floor = rows
        .iter()
        .find(|r| r["frame"] == "floor")
        .and_then(|r| r["ns_median"].as_u64());
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let frame = r["frame"].as_str().unwrap_or("");
            let median = r["ns_median"].as_u64().unwrap_or(0);
            let above = match floor {
                Some(f) if frame != "floor" => format!("+{}", median.saturating_sub(f)),
                _ => "—".to_string(),
            };
            format!(
                "| `{frame}` | {median} | {} | {above} | {} | {} |",
                r["ns_min"],
                target(frame),
                r["what"].as_str().unwrap_or("")
            )
        })
        .collect();
    Ok(format!(
        "\n## Packet program cost per frame\n\n`net_tc` (the one TC program per interface: ARP/ND observation, cluster counting)\nrun by the kernel on crafted frames with BPF_PROG_TEST_RUN (`nodeward check --packet-cost`):\nmean ns per run over 1,000,000 runs, median and minimum of 5 measurements; no traffic\nand no `bpf_stats` overhead. `floor` is an empty program measured in the same run: the\ntest run's own cost, included in every row (the program's own work is the `above floor`\ncolumn).\n\n| frame | ns (median) | ns (min) | above floor | target | what |\n|---|---|---|---|---|---|\n{}\n",
        lines.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In how many of pairs 1..=`pairs` `side` runs at position `pos`.
    fn at(side: Side, pos: usize, pairs: usize, hook: bool, auditd: bool) -> usize {
        (1..=pairs)
            .filter(|&p| pair_order(p, hook, auditd)[pos] == side)
            .count()
    }

    #[test]
    fn every_side_takes_every_position_as_often_over_six_pairs() {
        for side in [Side::Without, Side::Agent, Side::Auditd] {
            for pos in 0..3 {
                assert_eq!(
                    at(side, pos, 6, false, true),
                    2,
                    "{side:?} at position {pos}"
                );
            }
        }
        assert_eq!(pair_order(7, false, true), pair_order(1, false, true));
        // Without auditd, the hook's side takes its place in the same six orders.
        for side in [Side::Without, Side::Agent, Side::Hook] {
            for pos in 0..3 {
                assert_eq!(
                    at(side, pos, 6, true, false),
                    2,
                    "{side:?} at position {pos} without auditd"
                );
            }
        }
    }

    #[test]
    fn with_the_hook_every_side_takes_every_position_and_follows_every_other_once() {
        let sides = [Side::Without, Side::Agent, Side::Auditd, Side::Hook];
        for side in sides {
            for pos in 0..4 {
                assert_eq!(
                    at(side, pos, 4, true, true),
                    1,
                    "{side:?} at position {pos}"
                );
            }
            for before in sides.iter().filter(|&&b| b != side) {
                let n = (1..=4)
                    .filter(|&p| {
                        pair_order(p, true, true)
                            .windows(2)
                            .any(|w| w[0] == *before && w[1] == side)
                    })
                    .count();
                assert_eq!(n, 1, "{side:?} right after {before:?}");
            }
        }
        assert_eq!(pair_order(5, true, true), pair_order(1, true, true));
    }
}
