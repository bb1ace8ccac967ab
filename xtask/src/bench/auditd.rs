//! auditd with coverage comparable to the agent's, for the side-by-side columns: an
//! execve rule, reboot/kexec syscall rules and read/write watches on the secret files
//! that exist here. Started for one run and torn down after it (rules deleted, audit
//! disabled, the daemon ended by its PID).
//!
//! Once audit has been enabled on a boot, the kernel gives every task forked later
//! audit's syscall work (`audit_alloc`), even after `auditctl -e 0`: every syscall of
//! every new process takes the slow path (getpid 17 % slower here). Disabling audit is
//! not enough; a `task,never` rule is what keeps new tasks off that path, so the bench
//! leaves one in place whenever auditd is not running for a run, and each run's
//! workload is a process forked after its side's setup.

use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

/// The default secret paths of nodeward that are plain files here.
fn secret_files() -> Vec<String> {
    let mut v: Vec<String> = [
        "/etc/corosync/authkey",
        "/root/.ssh/id_rsa",
        "/root/.ssh/id_ed25519",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Ok(d) = std::fs::read_dir("/etc/ssh") {
        v.extend(
            d.flatten()
                .map(|e| e.path().to_string_lossy().into_owned())
                .filter(|p| p.contains("ssh_host_") && p.ends_with("_key")),
        );
    }
    v.into_iter()
        .filter(|p| std::path::Path::new(p).is_file())
        .collect()
}

fn auditctl(args: &[&str]) -> Result<()> {
    crate::util::output(Command::new("auditctl").args(args)).map(drop)
}

/// Install auditd from Debian's packages if it is missing.
pub fn ensure_installed() -> Result<()> {
    if Command::new("auditctl").arg("-v").output().is_ok() {
        return Ok(());
    }
    crate::util::step("installing auditd (Debian package) for the side-by-side runs");
    let out = Command::new("apt-get")
        .args(["install", "-y", "-q", "auditd"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()?;
    if !out.status.success() {
        bail!(
            "apt-get install auditd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // On a host run by systemd the package starts and enables its service: the bench
    // installed it for its own runs, so it goes back to not running.
    if std::path::Path::new("/run/systemd/system").is_dir() {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", "auditd"])
            .output();
    }
    Ok(())
}

/// Audit's state as found (enabled flag and rules), for the record before the bench
/// changes it.
fn found() -> String {
    let run = |arg: &str| {
        Command::new("auditctl")
            .arg(arg)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let enabled = run("-s")
        .lines()
        .find(|l| l.starts_with("enabled "))
        .unwrap_or("enabled ?")
        .to_string();
    let rules = run("-l").lines().collect::<Vec<_>>().join("; ");
    format!("{enabled}; rules: {rules}")
}

/// The PID of an audit daemon that is already running (the system's): its rules are
/// not the bench's to replace. None also when `auditctl -s` fails ([`quiet`] then says
/// why).
fn running_daemon() -> Option<u32> {
    let out = Command::new("auditctl").arg("-s").output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.trim().parse().ok())
        .filter(|p| *p != 0)
}

/// Audit off, its rules deleted, and tasks forked from now on kept off its syscall
/// path by a `task,never` rule (module note). Every step is tried, audit off first;
/// the first failure is returned.
fn quiet() -> Result<()> {
    let steps = [
        auditctl(&["-e", "0"]),
        auditctl(&["-D"]),
        auditctl(&["-a", "task,never"]),
    ];
    steps.into_iter().collect()
}

/// What the bench's runs start from, audit-wise.
pub struct Setup {
    /// Why the auditd columns are skipped (None: auditd runs in every pair).
    pub skipped: Option<String>,
    /// Whether audit is off with the `task,never` rule in place ([`quiet`]); else why not.
    pub quiet: std::result::Result<(), String>,
}

/// Install auditd if the columns want it, and quiet audit for the runs — unless an
/// audit daemon already runs here, whose rules the bench leaves alone.
pub fn setup(columns: bool) -> Setup {
    // A daemon that already runs is the system's: asked before anything is installed.
    let daemon = running_daemon();
    let mut skipped = if !columns {
        Some("auditd columns skipped (--no-auditd)".into())
    } else if daemon.is_some() {
        None
    } else {
        ensure_installed()
            .err()
            .map(|e| format!("auditd unavailable: {e:#}"))
    };
    let quiet = match daemon {
        Some(pid) => {
            skipped.get_or_insert(format!(
                "an audit daemon is already running here (pid {pid}): its rules are left alone, the auditd columns skipped, and every run includes its cost"
            ));
            Err(format!("audit daemon pid {pid} running"))
        }
        None => {
            crate::util::step(&format!(
                "audit as found: {}; now off, rules replaced by one task,never rule (processes forked from now on stay off audit's syscall path)",
                found()
            ));
            quiet().map_err(|e| format!("{e:#}"))
        }
    };
    Setup { skipped, quiet }
}

pub struct Auditd {
    child: Child,
}

impl Auditd {
    pub fn start() -> Result<Auditd> {
        let _ = std::fs::create_dir_all("/var/log/audit");
        let child = Command::new("auditd")
            .arg("-n")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start auditd -n")?;
        let a = Auditd { child };
        // auditd registers itself as the audit daemon; rules can go in at once.
        auditctl(&["-D"])?;
        auditctl(&[
            "-a",
            "always,exit",
            "-F",
            "arch=b64",
            "-S",
            "execve",
            "-k",
            "nw_exec",
        ])?;
        auditctl(&[
            "-a",
            "always,exit",
            "-F",
            "arch=b64",
            "-S",
            "reboot",
            "-S",
            "kexec_load",
            "-S",
            "kexec_file_load",
            "-k",
            "nw_reboot",
        ])?;
        for f in secret_files() {
            auditctl(&["-w", &f, "-p", "rwa", "-k", "nw_secret"])?;
        }
        auditctl(&["-e", "1"])?;
        Ok(a)
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        let _ = quiet();
        // SAFETY: kill(2) on the PID of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
