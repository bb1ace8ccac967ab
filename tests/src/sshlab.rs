//! A real OpenSSH server in a test namespace, with a stand-in reboot.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::wait_for;

use crate::netns::{Lan, must};

/// A real OpenSSH server in namespace B of a [`Lan`], inside its own pid and mount
/// namespaces, where a stand-in binary is bind-mounted over the reboot path (the real
/// `reboot` is never reachable there: this is verified before the lab is handed out).
/// The client logs in as root with a key from namespace A. Ended by PID on drop.
pub struct SshLab {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    client_ns: String,
    host: String,
    pub standin: PathBuf,
}

pub const SSH_PORT: u16 = 2222;

impl SshLab {
    /// `Err` (a reason to skip) when OpenSSH is not installed.
    pub fn new(lan: &Lan, helper: &str) -> Result<SshLab, String> {
        for tool in ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
            if !Path::new(tool).exists() {
                return Err(format!(
                    "{tool} not installed (cargo xtask setup --test-deps installs OpenSSH)"
                ));
            }
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d = dir.path();
        for key in ["hostkey", "clientkey"] {
            must(&[
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                &d.join(key).display().to_string(),
            ]);
        }
        std::fs::copy(d.join("clientkey.pub"), d.join("authorized_keys"))
            .map_err(|e| e.to_string())?;
        let standin = d.join("standin");
        std::fs::copy(helper, &standin).map_err(|e| e.to_string())?;
        let config = format!(
            "Port {SSH_PORT}\nListenAddress {}\nHostKey {}/hostkey\nPidFile {}/sshd.pid\nAuthorizedKeysFile {}/authorized_keys\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM yes\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
            lan.ip_b,
            d.display(),
            d.display(),
            d.display()
        );
        std::fs::write(d.join("sshd_config"), config).map_err(|e| e.to_string())?;
        // /usr/sbin/reboot is a symlink to systemctl on Debian: the bind mount lands on
        // its target, in this private mount namespace only. `set -e`: no sshd unless
        // every mount succeeded.
        let script = format!(
            "set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/sshd; mount --bind {s} /usr/sbin/reboot; \
             exec /usr/sbin/sshd -D -E {d}/sshd.log -f {d}/sshd_config",
            s = standin.display(),
            d = d.display()
        );
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lan.ns_b,
                "unshare",
                "--mount",
                "--pid",
                "--kill-child",
                "--mount-proc",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let lab = SshLab {
            dir,
            child: Some(child),
            client_ns: lan.ns_a.clone(),
            host: lan.ip_b.clone(),
            standin,
        };
        let up = wait_for(Duration::from_secs(15), || {
            lab.ssh("true").status.success().then_some(())
        });
        if up.is_none() {
            panic!("sshd did not come up; its log:\n{}", lab.sshd_log());
        }
        // Safety check before any test may type `reboot`: it must be the stand-in.
        let check = lab.ssh(&format!("cmp /usr/sbin/reboot {}", lab.standin.display()));
        assert!(
            check.status.success(),
            "REFUSING: the reboot path in the lab is not the stand-in: {check:?}"
        );
        Ok(lab)
    }

    /// An OpenSSH client tool (`ssh`, `scp`) in the client namespace, with the lab's
    /// key and non-interactive options; `port_flag` is `-p` for ssh, `-P` for scp.
    fn client(&self, tool: &str, port_flag: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.client_ns, tool, "-F", "/dev/null"])
            .arg("-i")
            .arg(self.dir.path().join("clientkey"))
            .args([port_flag, &SSH_PORT.to_string()]);
        for opt in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "ConnectTimeout=5",
            "LogLevel=ERROR",
        ] {
            c.args(["-o", opt]);
        }
        c
    }

    /// Run a command over SSH as root from the client namespace.
    pub fn ssh(&self, command: &str) -> std::process::Output {
        self.client("ssh", "-p")
            .arg(format!("root@{}", self.host))
            .arg(command)
            .output()
            .expect("run ssh")
    }

    /// Start a command over SSH and leave it running: its stdin is piped through the
    /// connection (the test decides when it goes on by writing or closing it).
    pub fn ssh_spawn(&self, command: &str) -> std::process::Child {
        self.client("ssh", "-p")
            .arg(format!("root@{}", self.host))
            .arg(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn ssh")
    }

    /// A login whose shell waits for a line before it runs `command`: the session is up
    /// (sshd logged the login) when this returns.
    pub fn ssh_held(&self, command: &str) -> HeldSession {
        let held = HeldSession(Some(self.ssh_spawn(&format!("read go; {command}"))));
        crate::wait_for(std::time::Duration::from_secs(15), || {
            (!self.accepted_ports().is_empty()).then_some(())
        })
        .unwrap_or_else(|| panic!("the SSH session did not start:\n{}", self.sshd_log()));
        held
    }

    /// Copy `remote` (a path on the server) to `local` with scp, from the client
    /// namespace.
    pub fn scp_from(&self, remote: &Path, local: &Path) -> std::process::Output {
        self.client("scp", "-P")
            .arg("-q")
            .arg(format!("root@{}:{}", self.host, remote.display()))
            .arg(local)
            .output()
            .expect("run scp")
    }

    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Client ports of the accepted logins, from sshd's own log.
    pub fn accepted_ports(&self) -> Vec<u16> {
        self.sshd_log()
            .lines()
            .filter(|l| l.contains("Accepted publickey for root"))
            .filter_map(|l| {
                l.split(" port ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    pub fn marker(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for SshLab {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // unshare --kill-child: ending it ends sshd (pid 1 of its namespace) and all
            // its sessions.
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            if wait_for(Duration::from_secs(5), || child.try_wait().ok().flatten()).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// An SSH session waiting to run its command ([`SshLab::ssh_held`]). Dropped unreleased
/// (a failed test), its ssh client is killed and reaped.
pub struct HeldSession(Option<std::process::Child>);

impl HeldSession {
    /// Let the command run; its output once the session has ended (which must succeed).
    pub fn release(mut self) -> String {
        use std::io::{Read, Write};
        let mut child = self.0.take().expect("a held session");
        let mut stdin = child.stdin.take().expect("ssh stdin");
        stdin.write_all(b"go\n").expect("write to the session");
        drop(stdin);
        let mut out = String::new();
        let mut stdout = child.stdout.take().expect("ssh stdout");
        stdout.read_to_string(&mut out).expect("session output");
        assert!(child.wait().unwrap().success(), "the session: {out}");
        out
    }
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
