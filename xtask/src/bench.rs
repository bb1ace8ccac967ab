//! `cargo xtask bench`: the agent's cost, measured as ratios in one run — each
//! workload alternately without and with the agent (default config, observe mode),
//! on this machine, now. Writes BENCHMARKS.md. Nothing here asserts a time: the
//! machines are shared and noisy; the numbers are for reading.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    build,
    util::{root, step},
};

const ROUNDS: usize = 3;

/// One workload: runs for `secs` and returns operations done.
struct Workload {
    name: &'static str,
    unit: &'static str,
    what: &'static str,
    run: fn(f64) -> Result<u64>,
}

fn exec_loop(secs: f64) -> Result<u64> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0;
    while Instant::now() < end {
        Command::new("/bin/true").status().context("/bin/true")?;
        n += 1;
    }
    Ok(n)
}

fn open_loop(secs: f64) -> Result<u64> {
    let dir = std::env::temp_dir().join(format!("nodeward-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("f");
    std::fs::write(&file, b"x")?;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0;
    while Instant::now() < end {
        for _ in 0..256 {
            drop(std::fs::File::open(&file)?);
        }
        n += 256;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(n)
}

const NS_A: &str = "nwbench-a";
const NS_B: &str = "nwbench-b";
const BR: &str = "nwbenchbr";
const IP_B: &str = "10.213.99.2";

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Two namespaces on a bridge (deleted by [`net_down`]).
fn net_up() -> Result<()> {
    net_down();
    sh(&["ip", "link", "add", BR, "type", "bridge"])?;
    sh(&["ip", "link", "set", BR, "up"])?;
    for (ns, port, ip) in [
        (NS_A, "nwbenchpa", "10.213.99.1"),
        (NS_B, "nwbenchpb", IP_B),
    ] {
        sh(&["ip", "netns", "add", ns])?;
        sh(&[
            "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        sh(&["ip", "link", "set", port, "master", BR, "up"])?;
        sh(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ])?;
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    }
    Ok(())
}

fn net_down() {
    for ns in [NS_A, NS_B] {
        let _ = sh(&["ip", "netns", "del", ns]);
    }
    for l in ["nwbenchpa", "nwbenchpb", BR] {
        let _ = sh(&["ip", "link", "del", l]);
    }
}

/// UDP to the corosync port from namespace A to B, through the bridge (this xtask
/// binary re-run inside the namespace).
fn udp_loop(secs: f64) -> Result<u64> {
    let me = std::env::current_exe()?;
    let out = Command::new("ip")
        .args(["netns", "exec", NS_A])
        .arg(me)
        .args(["bench-udp-send", IP_B, &secs.to_string()])
        .output()?;
    if !out.status.success() {
        bail!("udp sender: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// The sender itself (hidden subcommand): 80-byte datagrams to DST:5405 for SECS.
pub fn udp_send(dst: &str, secs: f64) -> Result<()> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.connect((dst, 5405))?;
    let payload = [0u8; 80];
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n: u64 = 0;
    while Instant::now() < end {
        for _ in 0..64 {
            // Errors (ICMP port unreachable reported back) are part of the load.
            let _ = sock.send(&payload);
        }
        n += 64;
    }
    println!("{n}");
    Ok(())
}

struct Agent {
    child: Child,
    _dir: PathBuf,
}

/// Start the agent on its default configuration; `program_stats`: with the kernel's
/// eBPF run-time statistics (which cost every program run two clock reads).
fn start_agent(bin: &Path, program_stats: bool) -> Result<Agent> {
    let dir = std::env::temp_dir().join(format!("nodeward-bench-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("nodeward.toml");
    std::fs::write(
        &config,
        format!(
            "agent.log_format = \"json\"\nagent.program_stats = {program_stats}\nagent.state_dir = \"{0}/state\"\nhttp.listen = \"127.0.0.1:0\"\ncontrol.socket = \"{0}/ctl.sock\"\n",
            dir.display()
        ),
    )?;
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start nodeward")?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"nodeward ready\"") {
                let _ = tx.send(line.clone());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => {
            let v: serde_json::Value = serde_json::from_str(&line)?;
            let addr = v["listen"].as_str().unwrap_or_default().to_string();
            METRICS_ADDR.with(|a| *a.borrow_mut() = addr);
            Ok(Agent { child, _dir: dir })
        }
        Err(_) => {
            let _ = child.kill();
            bail!("nodeward not ready within 60 s")
        }
    }
}

thread_local! {
    static METRICS_ADDR: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Kernel memory of the agent's eBPF maps (memlock of every map fd), in KiB.
fn map_kib(pid: u32) -> u64 {
    let mut total = 0;
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    for fd in fds.flatten() {
        let text = std::fs::read_to_string(fd.path()).unwrap_or_default();
        if text.contains("map_type:") {
            total += text
                .lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total / 1024
}

type ProgStats = std::collections::BTreeMap<String, (f64, f64)>;

/// Per program: (`nodeward_program_run_seconds_total`, `nodeward_program_runs_total`).
fn program_stats() -> ProgStats {
    let addr = METRICS_ADDR.with(|a| a.borrow().clone());
    let mut out = ProgStats::new();
    let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
        return out;
    };
    let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    for l in body.lines() {
        for (family, seconds) in [
            ("nodeward_program_run_seconds_total{program=\"", true),
            ("nodeward_program_runs_total{program=\"", false),
        ] {
            if let Some(rest) = l.strip_prefix(family)
                && let Some((name, value)) = rest.split_once("\"} ")
                && let Ok(v) = value.parse::<f64>()
            {
                let e = out.entry(name.to_string()).or_default();
                if seconds {
                    e.0 = v;
                } else {
                    e.1 = v;
                }
            }
        }
    }
    out
}

fn program_seconds(s: &ProgStats) -> f64 {
    s.values().map(|v| v.0).sum()
}

fn machine() -> String {
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn bench(secs: f64) -> Result<()> {
    let bin = build::build(true)?;
    let workloads = [
        Workload {
            name: "exec",
            unit: "execs/s",
            what: "fork + exec of /bin/true (sched_process_exec ×3, fork/exit, reboot and corosync exec watch)",
            run: exec_loop,
        },
        Workload {
            name: "open",
            unit: "opens/s",
            what: "open(2)+close of a non-secret file (sys_enter_openat ×2, sys_exit_openat inode lookup)",
            run: open_loop,
        },
        Workload {
            name: "udp",
            unit: "packets/s",
            what: "80-byte UDP to port 5405 across a bridge, from a source outside the nodelist (net_tc: port bitmap, member lookup, per-source LRU update) — the worst case for the packet path",
            run: udp_loop,
        },
    ];
    step("setting up the bench network (2 namespaces on a bridge)");
    net_up()?;
    let result = (|| -> Result<String> {
        let mut rows = Vec::new();
        let mut agent_cpu = 0.0;
        let mut agent_wall = 0.0;
        let mut prog_s = 0.0;
        let mut prof_wall = 0.0;
        let mut per_prog = ProgStats::new();
        let (mut rss, mut maps) = (0, 0);
        for w in &workloads {
            let (mut without, mut with) = (Vec::new(), Vec::new());
            for round in 1..=ROUNDS {
                step(&format!(
                    "{} round {round}/{ROUNDS}: without the agent",
                    w.name
                ));
                without.push((w.run)(secs)? as f64 / secs);
                step(&format!(
                    "{} round {round}/{ROUNDS}: with the agent",
                    w.name
                ));
                let agent = start_agent(&bin, false)?;
                std::thread::sleep(Duration::from_secs(2));
                let pid = agent.child.id();
                let (c0, t0) = (cpu_seconds(pid), Instant::now());
                with.push((w.run)(secs)? as f64 / secs);
                agent_cpu += cpu_seconds(pid) - c0;
                agent_wall += t0.elapsed().as_secs_f64();
                rss = rss.max(rss_kib(pid));
                maps = maps.max(map_kib(pid));
            }
            // One more run, with bpf_stats, for the per-program table only (its
            // throughput is not in the ratio: the statistics slow every program).
            step(&format!("{}: profiled run (bpf_stats on)", w.name));
            let agent = start_agent(&bin, true)?;
            std::thread::sleep(Duration::from_secs(2));
            let (p0, t0) = (program_stats(), Instant::now());
            (w.run)(secs)?;
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
            let (a, b) = (median(without), median(with));
            rows.push(format!(
                "| {} | {:.0} {} | {:.0} {} | **{:.3}** | {} |",
                w.name,
                a,
                w.unit,
                b,
                w.unit,
                b / a,
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
        let date = String::from_utf8_lossy(
            &Command::new("date")
                .arg("-u")
                .arg("+%Y-%m-%d %H:%M UTC")
                .output()?
                .stdout,
        )
        .trim()
        .to_string();
        Ok(format!(
            "# Benchmarks\n\nWritten by `cargo xtask bench` (release build, default configuration, observe mode).\nEach workload runs {ROUNDS} times without and {ROUNDS} times with the agent, alternating, {secs} s each;\nthe table shows medians and the ratio with/without (1.000 = no cost). Shared, noisy\nmachines: read ratios, not absolute numbers, and compare runs on one machine only.\n\nThe workloads are tight loops, the worst case per operation: the `open` loop opens a\nfile every few microseconds on one core, so the agent's fixed cost per open (three\ntracepoint programs: the sysrq watch, the secret path filter at entry, the inode\nlookup at exit) shows at its largest; a real node opens far fewer files per second.\nThe per-program table below says where the time goes.\n\n- machine: {}\n- date: {date}\n\n| workload | without agent | with agent | ratio | what it exercises |\n|---|---|---|---|---|\n{}\n\n| agent cost | value |\n|---|---|\n| agent CPU (userspace + its share of syscalls) while loaded | {:.1} % of one CPU |\n| eBPF programs CPU (kernel `bpf_stats`, profiled runs) | {:.1} % of one CPU |\n| agent resident memory (max) | {} KiB |\n| kernel memory of its eBPF maps | {} KiB |\n\nPer eBPF program, over one profiled run per workload (`agent.program_stats = true`: the\nkernel's `bpf_stats`, which itself adds two clock reads per program run; the ratios above\nare measured without it, as the agent runs by default):\n\n| program | runs | ns per run |\n|---|---|---|\n{}\n",
            machine(),
            rows.join("\n"),
            100.0 * agent_cpu / agent_wall.max(1e-9),
            100.0 * prog_s / prof_wall.max(1e-9),
            rss,
            maps,
            prog_rows.join("\n")
        ))
    })();
    net_down();
    let mut text = result?;
    step("packet program cost per frame (BPF_PROG_TEST_RUN)");
    text.push_str(&packet_cost(&bin)?);
    std::fs::write(root().join("BENCHMARKS.md"), &text)?;
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
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let frame = r["frame"].as_str().unwrap_or("");
            format!(
                "| `{frame}` | {} | {} | {} | {} |",
                r["ns_median"],
                r["ns_min"],
                target(frame),
                r["what"].as_str().unwrap_or("")
            )
        })
        .collect();
    Ok(format!(
        "\n## Packet program cost per frame\n\n`net_tc` (the one TC program per interface: ARP/ND observation, cluster counting)\nrun by the kernel on crafted frames with BPF_PROG_TEST_RUN (`nodeward check --packet-cost`):\nmean ns per run over 1,000,000 runs, median and minimum of 5 measurements; no traffic\nand no `bpf_stats` overhead.\n\n| frame | ns (median) | ns (min) | target | what |\n|---|---|---|---|---|\n{}\n",
        lines.join("\n")
    ))
}
