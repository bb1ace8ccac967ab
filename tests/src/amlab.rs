//! A real Alertmanager (Debian's `prometheus-alertmanager`) on loopback for one test:
//! its own config, storage and port; ended by PID when dropped.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::wait_for;

/// Where Debian installs it.
pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

pub struct Alertmanager {
    child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Alertmanager {
    /// Start one and wait until it is ready; the reason when it cannot run here.
    pub fn start() -> Result<Alertmanager, String> {
        if !Path::new(ALERTMANAGER).exists() {
            return Err(format!(
                "{ALERTMANAGER} not installed (apt-get install prometheus-alertmanager)"
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 0s\nreceivers:\n  - name: blackhole\n",
        )
        .map_err(|e| e.to_string())?;
        // A free port: bound, read, released (the window for a clash is tiny).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{ALERTMANAGER}: {e}"))?;
        let am = Alertmanager {
            child,
            _dir: dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        let ready = wait_for(Duration::from_secs(20), || {
            am.get("/-/ready").filter(|b| b.contains("OK")).map(|_| ())
        });
        ready
            .map(|()| am)
            .ok_or_else(|| format!("alertmanager on port {port} not ready within 20 s"))
    }

    /// GET `path`: the body of a 200 answer.
    pub fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| body.to_string())
            .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
    }

    /// The alerts Alertmanager holds now (its v2 API).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.get("/api/v2/alerts")
            .and_then(|b| serde_json::from_str::<Vec<serde_json::Value>>(&b).ok())
            .unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        // By PID: the child this lab started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
