//! The agent under test and what is read off it: CPU, memory, eBPF program statistics.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};

pub struct Agent {
    pub child: Child,
    /// Holds the config, the state directory and the control socket (`ctl.sock`).
    pub dir: PathBuf,
    /// The metrics listener (`host:port`).
    pub addr: String,
}

/// Start the agent on its default configuration; `program_stats`: with the kernel's
/// eBPF run-time statistics (which cost every program run two clock reads).
pub fn start_agent(bin: &Path, program_stats: bool, extra: &str) -> Result<Agent> {
    let dir = std::env::temp_dir().join(format!("nodeward-bench-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("nodeward.toml");
    std::fs::write(
        &config,
        format!(
            "agent.log_format = \"json\"\nagent.program_stats = {program_stats}\nagent.state_dir = \"{0}/state\"\nhttp.listen = \"127.0.0.1:0\"\ncontrol.socket = \"{0}/ctl.sock\"\n{extra}",
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
            METRICS_ADDR.with(|a| *a.borrow_mut() = addr.clone());
            Ok(Agent { child, dir, addr })
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
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
        // The config, state and socket of this agent: nothing is left in /tmp.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`), 0 when unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Kernel memory of the agent's eBPF maps (memlock of every map fd), in KiB.
pub fn map_kib(pid: u32) -> u64 {
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

/// One GET /metrics: the whole response (status line, headers, body), `None` when the
/// connection or the request fails or the answer is not 200. `timeout` bounds each
/// read and write.
pub fn scrape(addr: &str, timeout: Duration) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    (text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200")).then_some(text)
}

pub type ProgStats = std::collections::BTreeMap<String, (f64, f64)>;

/// Per program: (`nodeward_program_run_seconds_total`, `nodeward_program_runs_total`).
pub fn program_stats() -> ProgStats {
    let addr = METRICS_ADDR.with(|a| a.borrow().clone());
    let mut out = ProgStats::new();
    let body = scrape(&addr, Duration::from_secs(10)).unwrap_or_default();
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

pub fn program_seconds(s: &ProgStats) -> f64 {
    s.values().map(|v| v.0).sum()
}
