//! A real corosync cluster in test namespaces (LAB.md recipe): members and rogues on
//! one bridge, each instance with its own /run (private mount namespace) and state
//! directory. Every corosync is ended by PID on drop, before the namespaces go.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{netns::Bridge, wait_for};

pub const COROSYNC: &str = "/usr/sbin/corosync";
const PYTHON: &str = "/usr/bin/python3";

/// Replays one of the rogue's own packets `n` times (checksums removed, so the kernel
/// recomputes them and the member's stack accepts them).
const FLOOD_PY: &str = r#"
import sys
from scapy.all import sniff, sendp, UDP, IP, conf
conf.verb = 0
iface, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
pkts = sniff(iface=iface, filter="udp dst port 5405 and dst host " + dst, count=1, timeout=10)
if not pkts:
    sys.exit("no packet of the rogue to replay")
p = pkts[0]
del p[IP].chksum
del p[UDP].chksum
sendp(p, iface=iface, count=n, inter=0.002)
"#;

pub struct CorosyncLab {
    pub bridge: Bridge,
    pub dir: tempfile::TempDir,
    /// The cluster's key (what the incident's automation copied).
    pub key: PathBuf,
    /// Started instances (host, child); behind a lock so a lab shared with other
    /// borrowers (its bridge) can still start and stop corosync.
    running: std::sync::Mutex<Vec<(usize, Child)>>,
}

impl CorosyncLab {
    /// `Err` (a reason to skip) when corosync is not installed.
    pub fn new(ips: &[&str]) -> Result<CorosyncLab, String> {
        Self::with(ips, Bridge::new)
    }

    /// The same on a bridge inside a lab node of its own ([`Bridge::new_in_node`]).
    pub fn new_in_node(ips: &[&str]) -> Result<CorosyncLab, String> {
        Self::with(ips, Bridge::new_in_node)
    }

    fn with(ips: &[&str], bridge: fn(&[&str]) -> Bridge) -> Result<CorosyncLab, String> {
        for tool in [
            COROSYNC,
            "/usr/sbin/corosync-keygen",
            "/usr/sbin/corosync-quorumtool",
        ] {
            if !Path::new(tool).exists() {
                return Err(format!("{tool} not installed (apt-get install corosync)"));
            }
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let key = dir.path().join("authkey");
        keygen(&key)?;
        Ok(CorosyncLab {
            bridge: bridge(ips),
            dir,
            key,
            running: Default::default(),
        })
    }

    pub fn ip(&self, host: usize) -> &str {
        &self.bridge.hosts[host].ip
    }

    pub fn port(&self, host: usize) -> &str {
        &self.bridge.hosts[host].port
    }

    /// Write a corosync.conf named `name` whose nodelist is `nodes` (host, node id).
    pub fn conf(&self, name: &str, nodes: &[(usize, u32)], key: &Path) -> PathBuf {
        let nodes: Vec<(&str, u32)> = nodes.iter().map(|(h, id)| (self.ip(*h), *id)).collect();
        self.conf_addrs(name, &nodes, key)
    }

    /// The same with the nodelist's addresses given (address, node id).
    pub fn conf_addrs(&self, name: &str, nodes: &[(&str, u32)], key: &Path) -> PathBuf {
        let state = self.dir.path().join(format!("state-{name}"));
        std::fs::create_dir_all(&state).expect("state dir");
        let mut text = format!(
            "totem {{\n  version: 2\n  cluster_name: nwtest\n  transport: knet\n  crypto_cipher: aes256\n  crypto_hash: sha256\n  keyfile: {}\n}}\nnodelist {{\n",
            key.display()
        );
        for (addr, id) in nodes {
            text += &format!(
                "  node {{\n    ring0_addr: {addr}\n    nodeid: {id}\n    name: n{id}\n  }}\n"
            );
        }
        text += &format!(
            "}}\nquorum {{\n  provider: corosync_votequorum\n  two_node: 1\n}}\nsystem {{\n  state_dir: {}\n}}\nlogging {{\n  to_stderr: yes\n  to_syslog: no\n  to_logfile: no\n}}\n",
            state.display()
        );
        let path = self.dir.path().join(format!("{name}.conf"));
        std::fs::write(&path, text).expect("write corosync.conf");
        path
    }

    /// A second key (a rogue from another cluster).
    pub fn other_key(&self) -> PathBuf {
        let key = self.dir.path().join("other-authkey");
        keygen(&key).expect("corosync-keygen");
        key
    }

    /// Start corosync in host `host`'s namespace with `conf`; returns its PID.
    pub fn start(&self, host: usize, conf: &Path) -> u32 {
        let ns = self.bridge.hosts[host].ns.clone();
        self.start_in(host, &ns, conf)
    }

    /// Start corosync in network namespace `ns` (e.g. a lab node's own), logged and
    /// stopped as host `host`'s; returns its PID.
    pub fn start_in(&self, host: usize, ns: &str, conf: &Path) -> u32 {
        let log = std::fs::File::create(self.log_path(host)).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(["unshare", "-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs tmpfs /run && mkdir -p /run/corosync && exec {COROSYNC} -f -c {}",
                conf.display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start corosync");
        let pid = child.id();
        self.running().push((host, child));
        pid
    }

    /// Stop the corosync of `host` (by PID).
    pub fn stop(&self, host: usize) {
        let mine: Vec<_> = {
            let mut running = self.running();
            let (mine, rest) = running.drain(..).partition(|(h, _)| *h == host);
            *running = rest;
            mine
        };
        for (_, child) in mine {
            end(child);
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Vec<(usize, Child)>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log_path(&self, host: usize) -> PathBuf {
        self.dir.path().join(format!("corosync-{host}.log"))
    }

    pub fn log(&self, host: usize) -> String {
        std::fs::read_to_string(self.log_path(host)).unwrap_or_default()
    }

    /// `corosync-quorumtool -s` in host's namespace says quorate.
    pub fn quorate(&self, host: usize) -> bool {
        let out = self.bridge.exec(host, &["corosync-quorumtool", "-s"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("Quorate:") && l.ends_with("Yes"))
    }

    pub fn wait_quorate(&self, host: usize, secs: u64) -> bool {
        wait_for(Duration::from_secs(secs), || {
            self.quorate(host).then_some(())
        })
        .is_some()
    }

    /// Count, in host's own kernel (nftables input hook of its namespace), UDP 5405
    /// packets from `src`: the member-side view, independent of nodeward.
    pub fn watch_from(&self, host: usize, src: &str) {
        for cmd in [
            "add table inet nwtest".to_string(),
            "add chain inet nwtest input { type filter hook input priority 0; }".to_string(),
            format!("add rule inet nwtest input ip saddr {src} udp dport 5405 counter"),
        ] {
            let args: Vec<&str> = std::iter::once("nft").chain(cmd.split(' ')).collect();
            let out = self.bridge.exec(host, &args);
            assert!(
                out.status.success(),
                "nft {cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Packets counted by [`CorosyncLab::watch_from`].
    pub fn count_from(&self, host: usize) -> u64 {
        let out = self
            .bridge
            .exec(host, &["nft", "list", "table", "inet", "nwtest"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("counter packets ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no nft counter in:\n{text}"))
    }

    /// From host `from`, replay one of its own cluster packets to `dst` `n` times.
    pub fn flood(&self, from: usize, dst: &str, n: u32) -> Result<(), String> {
        if !Command::new(PYTHON)
            .args(["-c", "import scapy.all"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Err(format!(
                "scapy not importable by {PYTHON} (apt-get install python3-scapy)"
            ));
        }
        let script = self.dir.path().join("flood.py");
        std::fs::write(&script, FLOOD_PY).map_err(|e| e.to_string())?;
        let out = self.bridge.exec(
            from,
            &[
                PYTHON,
                &script.display().to_string(),
                "eth0",
                dst,
                &n.to_string(),
            ],
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn keygen(path: &Path) -> Result<(), String> {
    let out = Command::new("corosync-keygen")
        .arg("-k")
        .arg(path)
        .output()
        .map_err(|e| format!("corosync-keygen: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "corosync-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn end(mut child: Child) {
    // SAFETY: kill(2) on our own child's PID (corosync after the exec chain).
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    if wait_for(Duration::from_secs(10), || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for CorosyncLab {
    fn drop(&mut self) {
        let all: Vec<_> = self.running().drain(..).collect();
        for (_, child) in all {
            end(child);
        }
    }
}
