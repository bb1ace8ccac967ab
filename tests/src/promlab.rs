//! The monitoring side of a lab fleet: a namespace of its own with a real Prometheus
//! (Debian's package) and a real Alertmanager, linked by one veth pair to each lab node
//! (node `i` is `10.123.i.1`, the monitor `10.123.i.2` on that link). Prometheus runs
//! the rule files it is given; Alertmanager routes alerts carrying `nodeward_action` to
//! a nodeward webhook and every alert to a test receiver (a small HTTP server in the
//! monitor namespace that writes each delivery to a file). Everything is ended by PID
//! and the namespace deleted on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{
    netns::{must, unique_tag},
    sh, wait_for,
};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
const PYTHON: &str = "/usr/bin/python3";
const PROM_PORT: u16 = 9090;
const AM_PORT: u16 = 9093;
const RECEIVER_PORT: u16 = 9099;

const RECEIVER_PY: &str = r#"
import sys, http.server
out = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        with open(out, 'ab') as f:
            f.write(body.replace(b'\n', b' ') + b'\n')
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"#;

const GET_PY: &str = r#"
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
"#;

/// A scrape target: a node's agent and the `instance` label Prometheus gives it.
pub struct Target {
    pub instance: String,
    pub addr: String,
}

pub struct Monitor {
    pub ns: String,
    pub dir: tempfile::TempDir,
    children: Vec<Child>,
    /// Alertmanager's URL as the nodes reach it, per node.
    links: usize,
}

impl Monitor {
    /// The namespace and one link per node namespace; nothing runs yet. `Err`: why the
    /// chain cannot run here.
    pub fn new(nodes: &[&str]) -> Result<Monitor, String> {
        for tool in [PROMETHEUS, crate::amlab::ALERTMANAGER, PYTHON] {
            if !Path::new(tool).exists() {
                return Err(format!("{tool} not installed"));
            }
        }
        let tag = unique_tag();
        let ns = format!("nw-mon-{tag}");
        must(&["ip", "netns", "add", &ns]);
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        for (i, node) in nodes.iter().enumerate() {
            let here = format!("nwm{tag}{i}");
            must(&[
                "ip", "link", "add", &here, "netns", &ns, "type", "veth", "peer", "name", "mon0",
                "netns", node,
            ]);
            must(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.123.{i}.2/30"),
                "dev",
                &here,
            ]);
            must(&["ip", "-n", &ns, "link", "set", &here, "up"]);
            must(&[
                "ip",
                "-n",
                node,
                "addr",
                "add",
                &format!("10.123.{i}.1/30"),
                "dev",
                "mon0",
            ]);
            must(&["ip", "-n", node, "link", "set", "mon0", "up"]);
        }
        Ok(Monitor {
            ns,
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            children: Vec::new(),
            links: nodes.len(),
        })
    }

    /// Node `i`'s address on its link to the monitor.
    pub fn node_ip(i: usize) -> String {
        format!("10.123.{i}.1")
    }

    /// Alertmanager as node `i` reaches it.
    pub fn alertmanager_url(&self, i: usize) -> String {
        assert!(i < self.links);
        format!("http://10.123.{i}.2:{AM_PORT}")
    }

    fn spawn(&mut self, args: &[&str]) -> Result<(), String> {
        let log =
            std::fs::File::create(self.dir.path().join(format!("{}.log", self.children.len())))
                .map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{args:?}: {e}"))?;
        self.children.push(child);
        Ok(())
    }

    /// Alertmanager (routing `nodeward_action` alerts to `webhook` with the bearer token
    /// in `token_file`, and every alert to the test receiver) and the receiver.
    pub fn start_alertmanager(&mut self, webhook: &str, token_file: &Path) -> Result<(), String> {
        let d = self.dir.path().to_path_buf();
        let received = d.join("received.jsonl");
        self.spawn(&[
            PYTHON,
            "-c",
            RECEIVER_PY,
            &RECEIVER_PORT.to_string(),
            &received.display().to_string(),
        ])?;
        let config = d.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: lab\n  group_by: ['...']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n  routes:\n    - receiver: nodeward\n      matchers: ['nodeward_action=~\".+\"']\n      continue: true\n    - receiver: lab\n\
                 receivers:\n  - name: lab\n    webhook_configs:\n      - url: http://127.0.0.1:{RECEIVER_PORT}/\n  - name: nodeward\n    webhook_configs:\n      - url: {webhook}\n        http_config:\n          authorization:\n            type: Bearer\n            credentials_file: {}\n",
                token_file.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        self.spawn(&[
            crate::amlab::ALERTMANAGER,
            &format!("--config.file={}", config.display()),
            &format!("--storage.path={}", d.join("am").display()),
            &format!("--web.listen-address=0.0.0.0:{AM_PORT}"),
            "--cluster.listen-address=",
        ])?;
        wait_for(Duration::from_secs(20), || {
            self.get(&format!("http://127.0.0.1:{AM_PORT}/-/ready"))
        })
        .map(|_| ())
        .ok_or_else(|| format!("alertmanager not ready:\n{}", self.logs()))
    }

    /// Prometheus scraping `targets` every `scrape` seconds, evaluating `rules` every
    /// second and sending alerts to the Alertmanager.
    pub fn start_prometheus(
        &mut self,
        targets: &[Target],
        rules: &[PathBuf],
        scrape: u32,
    ) -> Result<(), String> {
        let d = self.dir.path().to_path_buf();
        let mut cfg = format!(
            "global:\n  scrape_interval: {scrape}s\n  evaluation_interval: 1s\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{AM_PORT}']\nrule_files:\n"
        );
        for r in rules {
            cfg.push_str(&format!("  - {}\n", r.display()));
        }
        cfg.push_str("scrape_configs:\n  - job_name: nodeward\n    static_configs:\n");
        for t in targets {
            cfg.push_str(&format!(
                "      - targets: ['{}']\n        labels:\n          instance: {}\n",
                t.addr, t.instance
            ));
        }
        let config = d.join("prometheus.yml");
        std::fs::write(&config, cfg).map_err(|e| e.to_string())?;
        self.spawn(&[
            PROMETHEUS,
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", d.join("tsdb").display()),
            &format!("--web.listen-address=127.0.0.1:{PROM_PORT}"),
        ])?;
        wait_for(Duration::from_secs(30), || {
            self.get(&format!("http://127.0.0.1:{PROM_PORT}/-/ready"))
        })
        .map(|_| ())
        .ok_or_else(|| format!("prometheus not ready:\n{}", self.logs()))
    }

    /// GET inside the monitor namespace: the body of a 2xx answer.
    pub fn get(&self, url: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, PYTHON, "-c", GET_PY, url])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// An instant PromQL query: the result vector (empty on error or no data).
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let q: String = expr
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let body = self.get(&format!(
            "http://127.0.0.1:{PROM_PORT}/api/v1/query?query={q}"
        ));
        body.and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Alerts Alertmanager holds now.
    pub fn am_alerts(&self) -> Vec<Value> {
        self.get(&format!("http://127.0.0.1:{AM_PORT}/api/v2/alerts"))
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Every webhook body the test receiver got.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// stderr of every process started here (for failure messages).
    pub fn logs(&self) -> String {
        (0..self.children.len())
            .map(|i| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("{i}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for c in &mut self.children {
            // `ip netns exec` execs in place: the PID is the daemon's.
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = sh(&["ip", "netns", "del", &self.ns]);
    }
}
