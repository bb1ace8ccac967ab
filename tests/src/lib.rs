//! Harness for nodeward's privileged end-to-end tests: the real agent binary on the
//! real kernel. Tests are run serially by `cargo xtask test` (root). A test that cannot
//! run here says why and is counted as skipped (NODEWARD_SKIP_LOG), never silently.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Record a skip: loud on stderr and counted by `cargo xtask test`.
pub fn skip(test: &str, why: &str) {
    // One line per skip, whatever the reason holds (a tool's multi-line error).
    let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("SKIP {test}: {why}");
    if let Some(log) = std::env::var_os("NODEWARD_SKIP_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    {
        let _ = writeln!(f, "{test}\t{why}");
    }
}

/// The agent binary to test, when this test can run here; otherwise records the skip.
pub fn agent_bin(test: &str) -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip(test, "needs root to load eBPF programs");
        return None;
    }
    match std::env::var_os("NODEWARD_BIN") {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        _ => {
            skip(
                test,
                "NODEWARD_BIN not set: run through `cargo xtask test`, which builds the agent with its eBPF object",
            );
            None
        }
    }
}

/// Debian's Python, the one `cargo xtask setup --test-deps` gives scapy to.
pub const PYTHON: &str = "/usr/bin/python3";

/// Whether scapy can be imported (else the skip is reported for `test`).
pub fn scapy_available(test: &str) -> bool {
    let ok = std::process::Command::new(PYTHON)
        .args(["-c", "import scapy.all"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(
            test,
            "python3-scapy not installed (cargo xtask setup --test-deps installs it)",
        );
    }
    ok
}

/// Poll `f` until it returns Some or the timeout passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running agent, stopped (SIGTERM, then SIGKILL by PID) when dropped.
pub struct Agent {
    child: Option<Child>,
    pub pid: u32,
    lines: Arc<Mutex<Vec<String>>>,
    pub addr: String,
    pub config_path: PathBuf,
    bin: PathBuf,
    env: Vec<(String, String)>,
    /// Run inside this network namespace: the agent of another node.
    netns: Option<NetnsEntry>,
    /// `http.listen` of the config (a fixed address keeps a scrape target across restarts).
    listen: String,
    _dir: tempfile::TempDir,
}

/// How the agent enters another network namespace.
#[derive(Clone, Debug)]
enum NetnsEntry {
    /// `ip netns exec`: also a private mount namespace with that namespace's /sys.
    IpNetnsExec(String),
    /// `nsenter --net=/run/netns/<name>`: the network namespace only.
    NsenterNet(String),
}

impl Agent {
    /// Start the agent with `extra` appended to a config that logs JSON and listens on
    /// a free loopback port. Waits until it is ready.
    pub fn start(bin: &Path, extra: &str) -> Agent {
        Self::start_env(bin, extra, &[])
    }

    /// Like [`Agent::start`], with extra environment (kept across restarts).
    pub fn start_env(bin: &Path, extra: &str, env: &[(&str, &str)]) -> Agent {
        Self::start_full(bin, extra, env, None, "127.0.0.1:0")
    }

    /// The agent of a lab node: inside network namespace `ns` (`ip netns exec`),
    /// listening on `listen` (fixed, so that Prometheus keeps scraping it across
    /// restarts), with extra environment.
    pub fn start_node(
        bin: &Path,
        extra: &str,
        env: &[(&str, &str)],
        ns: &str,
        listen: &str,
    ) -> Agent {
        Self::start_full(
            bin,
            extra,
            env,
            Some(NetnsEntry::IpNetnsExec(ns.to_string())),
            listen,
        )
    }

    /// Like [`Agent::start`], inside network namespace `ns` (its HTTP listener is then
    /// only reachable there: use the logs and the control socket).
    pub fn start_in_netns(bin: &Path, extra: &str, ns: &str) -> Agent {
        Self::start_full(
            bin,
            extra,
            &[],
            Some(NetnsEntry::IpNetnsExec(ns.to_string())),
            "127.0.0.1:0",
        )
    }

    /// Like [`Agent::start_in_netns`], entered with `nsenter --net` only: /sys stays the
    /// mount of the namespace the test runs in (what an operator's `nsenter` does).
    pub fn start_nsenter_net(bin: &Path, extra: &str, ns: &str) -> Agent {
        Self::start_full(
            bin,
            extra,
            &[],
            Some(NetnsEntry::NsenterNet(ns.to_string())),
            "127.0.0.1:0",
        )
    }

    fn start_full(
        bin: &Path,
        extra: &str,
        env: &[(&str, &str)],
        netns: Option<NetnsEntry>,
        listen: &str,
    ) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("nodeward.toml");
        std::fs::write(&config_path, config_text(dir.path(), extra, listen)).expect("write config");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, pid, lines) = Self::spawn(bin, &config_path, &env, netns.as_ref());
        let mut agent = Agent {
            child,
            pid,
            lines,
            addr: String::new(),
            config_path,
            bin: bin.to_path_buf(),
            env,
            netns,
            listen: listen.to_string(),
            _dir: dir,
        };
        agent.wait_ready();
        agent
    }

    fn wait_ready(&mut self) {
        let seen = self
            .logs()
            .iter()
            .filter(|l| l["message"] == "nodeward ready")
            .count();
        let ready = wait_for(Duration::from_secs(30), || {
            let logs = self.logs();
            let ready: Vec<&Value> = logs
                .iter()
                .filter(|l| l["message"] == "nodeward ready")
                .collect();
            (ready.len() > seen).then(|| {
                ready.last().unwrap()["listen"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
        });
        match ready {
            Some(addr) => self.addr = addr,
            None => panic!(
                "agent not ready within 30 s; output:\n{}",
                self.raw_output()
            ),
        }
    }

    fn spawn(
        bin: &Path,
        config_path: &Path,
        env: &[(String, String)],
        netns: Option<&NetnsEntry>,
    ) -> (Option<Child>, u32, Arc<Mutex<Vec<String>>>) {
        // `ip netns exec`, `nsenter` and `setpriv` exec the agent in place: the PID is
        // the agent's.
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        match netns {
            Some(NetnsEntry::IpNetnsExec(ns)) => {
                argv.extend(["ip", "netns", "exec", ns].map(Into::into))
            }
            Some(NetnsEntry::NsenterNet(ns)) => {
                argv.extend(["nsenter".into(), format!("--net=/run/netns/{ns}").into()])
            }
            None => {}
        }
        // NODEWARD_TEST_CAPS=net_raw,kill,...: start the agent with only these
        // capabilities (measuring which ones the agent needs; docs/least-privilege.md).
        if let Ok(caps) = std::env::var("NODEWARD_TEST_CAPS") {
            let plus: Vec<String> = caps
                .split(',')
                .filter(|c| !c.is_empty())
                .map(|c| format!("+{c}"))
                .collect();
            let set = std::iter::once("-all".to_string())
                .chain(plus)
                .collect::<Vec<_>>()
                .join(",");
            argv.extend([
                "setpriv".into(),
                format!("--bounding-set={set}").into(),
                "--inh-caps=-all".into(),
                "--".into(),
            ]);
        }
        argv.push(bin.into());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let mut child = cmd
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("--config")
            .arg(config_path)
            .arg("run")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nodeward");
        let pid = child.id();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        (Some(child), pid, lines)
    }

    /// Run a CLI verb against this agent (same config file).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .output()
            .expect("run nodeward CLI")
    }

    /// The state directory (audit journal, quarantine state).
    pub fn state_dir(&self) -> PathBuf {
        self.config_path.parent().expect("config dir").join("state")
    }

    /// Audit journal records (complete lines), as JSON.
    pub fn journal(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state_dir().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Stop (SIGTERM) and start again with the same config and state directory.
    pub fn restart(&mut self) -> ExitStatus {
        let status = self.stop();
        self.respawn();
        status
    }

    /// Start again after [`Agent::stop`], with the same config and state directory.
    pub fn respawn(&mut self) {
        let fresh = Self::spawn(&self.bin, &self.config_path, &self.env, self.netns.as_ref());
        self.child = fresh.0;
        self.pid = fresh.1;
        self.lines = fresh.2;
        self.wait_ready();
    }

    /// SIGKILL (no chance to clean up or save anything), then start again with the same
    /// config and state directory.
    pub fn kill_and_restart(&mut self) {
        self.signal(libc::SIGKILL);
        let mut child = self.child.take().expect("agent still running");
        let _ = child.wait();
        self.respawn();
    }

    /// `nodeward check` on this agent's configuration: its standard output (the
    /// programs, the detectors and the route of each hook group).
    pub fn check(&self) -> String {
        let out = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config_path)
            .arg("check")
            .output()
            .expect("run nodeward check");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Replace the config file (keeping the test's logging and listen settings).
    pub fn rewrite_config(&self, extra: &str) {
        let dir = self.config_path.parent().expect("config dir");
        std::fs::write(&self.config_path, config_text(dir, extra, &self.listen))
            .expect("write config");
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the PID of our own child.
        unsafe { libc::kill(self.pid as libc::pid_t, sig) };
    }

    pub fn raw_output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Log lines that parse as JSON.
    pub fn logs(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Finding log lines (target nodeward::finding) whose `pid` is one of `pids`.
    pub fn findings_for(&self, pids: &[u32]) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l["target"] == "nodeward::finding")
            .filter(|l| {
                l["pid"]
                    .as_u64()
                    .is_some_and(|p| pids.contains(&(p as u32)))
            })
            .collect()
    }

    /// All finding lines of a path (host-wide), to compare with metric deltas.
    pub fn count_findings(&self, finding: &str, path: &str) -> usize {
        self.logs()
            .iter()
            .filter(|l| l["finding"] == finding && l["path"] == path)
            .count()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path)
    }

    pub fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "/metrics answered {code}");
        body
    }

    /// Stop with SIGTERM and wait (at most 15 s) for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("agent still running");
        let status = wait_for(Duration::from_secs(15), || child.try_wait().ok().flatten());
        match status {
            Some(s) => s,
            None => {
                let _ = child.kill();
                panic!("agent did not stop within 15 s of SIGTERM");
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal(libc::SIGTERM);
            if wait_for(Duration::from_secs(10), || child.try_wait().ok().flatten()).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// An agent stopped with SIGSTOP (as a hung one) until this is dropped: resumed then, so
/// a failing assertion never leaves it frozen.
pub struct Stopped<'a>(&'a Agent);

impl<'a> Stopped<'a> {
    /// Stops `agent` and returns once the kernel says it is stopped (state `T`).
    pub fn new(agent: &'a Agent) -> Stopped<'a> {
        agent.signal(libc::SIGSTOP);
        let stat = format!("/proc/{}/stat", agent.pid);
        let stopped = wait_for(Duration::from_secs(5), || {
            let s = std::fs::read_to_string(&stat).ok()?;
            // The state follows the parenthesised comm.
            let state = s.rsplit_once(") ")?.1.chars().next()?;
            (state == 'T').then_some(())
        });
        let guard = Stopped(agent);
        assert!(
            stopped.is_some(),
            "agent {} not stopped by SIGSTOP",
            agent.pid
        );
        guard
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal(libc::SIGCONT);
    }
}

/// The test's config: dotted keys only, so `extra` may add dotted keys (e.g.
/// `agent.mode = "enforce"`) and then tables of its own.
fn config_text(dir: &Path, extra: &str, listen: &str) -> String {
    // SAFETY (LAB.md): the ARP active check sends a frame on the interface a previous
    // owner was seen on, and an agent that discovers every bridge could send it on one
    // the test did not create; the secrets detector in enforce mode denies reads of the
    // files it watches, which by default are this machine's real keys. Both stay off
    // unless the test sets them (the check for its own ports, secrets for its own files).
    let extra = section_default(
        extra,
        "[detectors.arp]\n",
        "active_check",
        "active_check = false\n",
    );
    let extra = section_default(
        &extra,
        "[detectors.secrets]\n",
        "[detectors.secrets]\npaths",
        "mode = \"observe\"\n",
    );
    format!(
        "agent.log_format = \"json\"\nagent.state_dir = \"{}\"\nhttp.listen = \"{listen}\"\ncontrol.socket = \"{}\"\n{extra}\n",
        dir.join("state").display(),
        dir.join("control.sock").display()
    )
}

/// `extra` with `line` added to the `header` section, unless `extra` mentions `key`.
fn section_default(extra: &str, header: &str, key: &str, line: &str) -> String {
    if extra.contains(key) {
        extra.to_string()
    } else if extra.contains(header) {
        extra.replacen(header, &format!("{header}{line}"), 1)
    } else {
        format!("{extra}\n{header}{line}")
    }
}

/// Minimal HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, &[], "")
}

/// A webhook token file holding `token` (kept while the TempDir lives) and the config
/// lines that enable the webhook receiver with it.
pub fn webhook_token(token: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).expect("write token");
    let config = format!(
        "http.webhook.enabled = true\nhttp.webhook.token_file = \"{}\"\n",
        file.display()
    );
    (dir, config)
}

/// Minimal HTTP/1.0 request on loopback: (status, body).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(s, "{head}\r\n{body}").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_string())
}

/// The whole finding of a `nodeward::finding` log line (its `detail` field, JSON).
pub fn detail(line: &Value) -> Value {
    serde_json::from_str(line["detail"].as_str().unwrap_or("{}")).unwrap()
}

/// Value of one series (exact name and labels as exposed) in a text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Sum of every series of `name` whose labels include all of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Kernel ids of the eBPF programs a process holds (from /proc/PID/fdinfo).
pub fn prog_ids_of(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) {
        for e in rd.flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                for l in text.lines() {
                    if let Some(id) = l
                        .strip_prefix("prog_id:")
                        .and_then(|v| v.trim().parse().ok())
                    {
                        ids.push(id);
                    }
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether an eBPF program with this id still exists in the kernel.
pub fn prog_exists(id: u32) -> bool {
    // union bpf_attr for BPF_PROG_GET_FD_BY_ID: { prog_id: u32, next_id: u32, open_flags: u32 }
    let mut attr = [0u32; 4];
    attr[0] = id;
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    // SAFETY: bpf(2) reads a correctly sized, initialised attr buffer.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: closing the fd we just got.
        unsafe { libc::close(fd as libc::c_int) };
        true
    } else {
        false
    }
}

/// A copy of the test helper (`env!("CARGO_BIN_EXE_nodeward-test-helper")` in a test)
/// named `name` in a fresh temp directory: a stand-in binary.
pub fn stand_in(helper: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::copy(helper, &path).expect("copy helper");
    (dir, path)
}

/// Allowed sources covering every address except the test's client, so the guard
/// can only ever act on the SSH session this test opens (LAB.md rule 2). IPv4 lives in
/// the guard's trie as ::ffff:a.b.c.d, so the complement is taken over IPv6 space.
pub fn everyone_but(ip: &str) -> String {
    let a = u128::from(ip.parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped());
    let nets: Vec<String> = (0..128u32)
        .map(|i| {
            let prefix = i + 1;
            let flipped = a ^ (1u128 << (127 - i));
            let mask = if prefix == 128 {
                u128::MAX
            } else {
                !(u128::MAX >> prefix)
            };
            let net = std::net::Ipv6Addr::from(flipped & mask);
            // Networks inside ::ffff:0:0/96 are written as IPv4 CIDRs.
            match net.to_ipv4_mapped() {
                Some(v4) if prefix > 96 => format!("\"{v4}/{}\"", prefix - 96),
                _ => format!("\"{net}/{prefix}\""),
            }
        })
        .collect();
    format!("[{}]", nets.join(", "))
}

mod amlab;
mod cgroup;
mod corolab;
mod netns;
pub mod promlab;
mod sshlab;

pub use amlab::Alertmanager;
pub use cgroup::TestCgroup;
pub use corolab::CorosyncLab;
pub use netns::{Bridge, Host, Lan, sh};
pub use promlab::Monitor;
pub use sshlab::{SSH_PORT, SshLab};

/// Seconds since the epoch of an RFC 3339 UTC timestamp such as tracing writes
/// (`2026-11-23T03:50:31.695496Z`).
pub fn parse_rfc3339(ts: &str) -> Option<f64> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min, s) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    // days from civil (Howard Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}
