//! The Debian package, installed for real: `dpkg -i` into a fresh Debian 12 root made by
//! debootstrap; the installed binary's `--version` and `check`; the unit verified and
//! scored by that root's own systemd-analyze; the service booted under that root's
//! systemd (`systemd-nspawn --boot`, a private network namespace) and scraped; an
//! upgrade that keeps the state and a modified conffile; a purge that removes what the
//! package and the agent created and nothing else.
//!
//! `cargo xtask test` builds the packages and the root and names them in
//! NODEWARD_DEB, NODEWARD_DEB_UPGRADE and NODEWARD_DEBOOTSTRAP.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use nodeward_tests::{skip, wait_for};

struct Inputs {
    deb: PathBuf,
    upgrade: PathBuf,
    base: PathBuf,
}

fn inputs(test: &str) -> Option<Inputs> {
    let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
    match (
        var("NODEWARD_DEB"),
        var("NODEWARD_DEB_UPGRADE"),
        var("NODEWARD_DEBOOTSTRAP"),
    ) {
        (Some(deb), Some(upgrade), Some(base)) => Some(Inputs { deb, upgrade, base }),
        _ => {
            skip(
                test,
                "NODEWARD_DEB, NODEWARD_DEB_UPGRADE and NODEWARD_DEBOOTSTRAP unset (`cargo xtask test` builds the packages and the Debian root)",
            );
            None
        }
    }
}

/// A private copy of the cached debootstrap root, removed on drop.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn copy_of(base: &Path) -> Root {
        let dir = tempfile::Builder::new()
            .prefix("nodeward-deb-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", base.display()))
            .arg(dir.path())
            .status()
            .expect("cp");
        assert!(ok.success(), "copying the Debian root {}", base.display());
        Root { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel.trim_start_matches('/'))
    }

    /// Run a command chrooted in the root (see [`chrooted`]).
    fn run(&self, cmd: &str) -> std::process::Output {
        chrooted(self.path(), &format!("exec chroot $r /bin/sh -c '{cmd}'"))
    }

    fn ok(&self, cmd: &str) -> String {
        let out = self.run(cmd);
        let text = text(&out);
        assert!(
            out.status.success(),
            "`{cmd}` in the Debian root failed:\n{text}"
        );
        text
    }

    fn install(&self, deb: &Path) -> String {
        let name = deb.file_name().expect("file name").to_string_lossy();
        std::fs::copy(deb, self.file(&format!("/tmp/{name}"))).expect("copy the package");
        self.ok(&format!("dpkg -i /tmp/{name}"))
    }
}

/// Run `script` (`$r` is `dir`) with /proc, /sys and /dev of the host bound into `dir`,
/// in a private mount namespace: the mounts go when the script ends.
fn chrooted(dir: &Path, script: &str) -> std::process::Output {
    let script = format!(
        "set -e; r={}; for d in proc sys dev; do mount --rbind /$d $r/$d; done; {script}",
        dir.display()
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare")
}

/// A command's stdout, then its stderr.
fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The root booted under its own systemd in a container with a private network; the
/// service stopped by its systemd and the container killed on drop.
struct Booted {
    nspawn: Child,
    leader: u32,
    log: PathBuf,
}

impl Booted {
    fn boot(root: &Root) -> Result<Booted, String> {
        let log = root.path().with_extension("boot.log");
        let file = std::fs::File::create(&log).expect("boot log");
        let nspawn = Command::new("systemd-nspawn")
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--private-network",
            ])
            // The agent's system calls past nspawn's own filter (the unit's filter
            // still applies inside).
            .arg("--system-call-filter=bpf perf_event_open fanotify_init fanotify_mark name_to_handle_at")
            .args(["--console=read-only", "-D"])
            .arg(root.path())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("systemd-nspawn: {e}"))?;
        let pid = nspawn.id();
        // The container's init: the child of systemd-nspawn.
        let leader = wait_for(Duration::from_secs(30), || {
            let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
            text.split_whitespace().next()?.parse().ok()
        });
        let mut booted = Booted {
            nspawn,
            leader: leader.unwrap_or(0),
            log: log.clone(),
        };
        if leader.is_none() {
            return Err(format!(
                "no container init within 30 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        // Booted: multi-user.target reached (or the system is degraded, which names why).
        let state = wait_for(Duration::from_secs(90), || {
            let s = booted.inside(&["systemctl", "is-system-running"]);
            let s = s.trim().to_string();
            (s == "running" || s == "degraded").then_some(s)
        });
        if state.is_none() {
            let why = booted.inside(&["systemctl", "--failed", "--no-pager"]);
            booted.stop();
            return Err(format!("the container did not finish booting: {why}"));
        }
        // On a node, systemd mounts the trace file system at boot; in a container it
        // does not: mount it in the container's namespace, as that boot would have,
        // then start the agent again on the complete system. (The agent pins nothing:
        // it needs no BPF file system.)
        let out = booted.inside(&["mount", "-t", "tracefs", "none", "/sys/kernel/tracing"]);
        if !out.trim().is_empty() {
            booted.stop();
            return Err(format!("mounting tracefs in the container: {out}"));
        }
        let restart = booted.inside(&["systemctl", "restart", "nodeward.service"]);
        if !restart.trim().is_empty() {
            booted.stop();
            return Err(format!("systemctl restart nodeward: {restart}"));
        }
        Ok(booted)
    }

    /// The service's last journal lines.
    fn journal(&self) -> String {
        self.inside(&[
            "journalctl",
            "-u",
            "nodeward.service",
            "--no-pager",
            "-n",
            "80",
        ])
    }

    fn inside(&self, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg("--target")
            .arg(self.leader.to_string())
            .args(["--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup"])
            .args(args)
            .output()
            .expect("nsenter");
        text(&out)
    }

    /// An HTTP GET from inside the container's network namespace (host's python).
    fn get(&self, url: &str) -> Option<String> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.leader))
            .args([
                "python3",
                "-c",
                "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())",
                url,
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn stop(&mut self) {
        if self.leader != 0 {
            // The agent detaches everything on a clean stop; then the container goes.
            let _ = self.inside(&["systemctl", "stop", "nodeward.service"]);
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        self.leader = 0;
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn version_of(deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(deb)
        .arg("Version")
        .output()
        .expect("dpkg-deb");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_package_installs_checks_boots_upgrades_and_purges_in_a_fresh_debian_root() {
    let test = "the_package_installs_checks_boots_upgrades_and_purges_in_a_fresh_debian_root";
    let Some(inp) = inputs(test) else { return };
    let root = Root::copy_of(&inp.base);
    assert!(
        !root.file("/usr/bin/nodeward").exists(),
        "the base root already has nodeward"
    );

    // Install.
    root.install(&inp.deb);
    for f in [
        "/usr/bin/nodeward",
        "/etc/nodeward/nodeward.toml",
        "/lib/systemd/system/nodeward.service",
        "/usr/share/nodeward/rules/reboot.rules.yml",
        "/usr/share/nodeward/dashboards/nodeward.json",
        "/usr/share/man/man1/nodeward.1.gz",
        "/usr/share/man/man1/nodeward-check.1.gz",
        "/usr/share/bash-completion/completions/nodeward",
        "/usr/share/doc/nodeward/copyright",
        "/usr/share/doc/nodeward/changelog.Debian.gz",
        "/etc/systemd/system/multi-user.target.wants/nodeward.service",
    ] {
        assert!(
            root.file(f).symlink_metadata().is_ok(),
            "{f} missing after dpkg -i"
        );
    }
    let state = root.file("/var/lib/nodeward");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state)
        .expect("state directory created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "state directory mode");
    let owner = root.ok("stat -c %U /var/lib/nodeward");
    assert_eq!(owner.trim(), "nodeward", "state directory owner");
    let conffiles = root.ok("dpkg-query -W -f=\"\\${Conffiles}\" nodeward");
    assert!(
        conffiles.contains("/etc/nodeward/nodeward.toml"),
        "{conffiles}"
    );

    // The installed binary, from the installed files.
    let version = root.ok("nodeward --version");
    let upstream = version_of(&inp.deb);
    let upstream = upstream.split('-').next().expect("version");
    assert!(version.contains(upstream), "{version}");
    let check = root.ok("nodeward --config /etc/nodeward/nodeward.toml check");
    assert!(check.contains("detector reboot: up"), "{check}");
    assert!(check.contains("syscall tracepoints attached: 0"), "{check}");

    // The unit, by the root's own systemd.
    root.ok("systemd-analyze verify /lib/systemd/system/nodeward.service");
    let security =
        root.ok("systemd-analyze security --offline=true /lib/systemd/system/nodeward.service");
    let exposure: f64 = security
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for nodeward.service:")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure figure:\n{security}"));
    assert!(exposure <= 3.0, "exposure {exposure} > 3.0:\n{security}");
    eprintln!("systemd-analyze security exposure: {exposure}");

    // Booted under the root's systemd: enabled at install, ready (Type=notify), scraped.
    let mut booted = match Booted::boot(&root) {
        Ok(b) => b,
        Err(why) => panic!("booting the Debian root failed: {why}"),
    };
    let active = wait_for(Duration::from_secs(90), || {
        let s = booted.inside(&["systemctl", "is-active", "nodeward.service"]);
        (s.trim() == "active").then_some(())
    });
    assert!(
        active.is_some(),
        "nodeward.service not active:\n{}",
        booted.journal()
    );
    let metrics = wait_for(Duration::from_secs(30), || {
        booted.get("http://127.0.0.1:9744/metrics")
    })
    .expect("/metrics of the service");
    for detector in [
        "reboot",
        "session",
        "arp",
        "secrets",
        "corosync",
        "martian",
        "tcp_reset",
    ] {
        assert!(
            metrics.contains(&format!(
                "nodeward_detector_up{{detector=\"{detector}\"}} 1"
            )),
            "{detector} down under the packaged unit:\n{}",
            booted.journal()
        );
    }
    let ready = booted
        .get("http://127.0.0.1:9744/readyz")
        .unwrap_or_default();
    assert!(ready.contains("ready"), "/readyz: {ready}");
    // Least privilege, as the kernel sees it: the service's bounding set.
    let pid = booted.inside(&["systemctl", "show", "-p", "MainPID", "--value", "nodeward"]);
    let status = booted.inside(&["cat", &format!("/proc/{}/status", pid.trim())]);
    let set = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex"))
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    // SYS_ADMIN, NET_ADMIN, NET_RAW, SYS_PTRACE, DAC_READ_SEARCH, KILL.
    let expected: u64 = [21u32, 12, 13, 19, 2, 5].iter().map(|b| 1u64 << b).sum();
    for name in ["CapBnd:", "CapEff:", "CapPrm:"] {
        assert_eq!(set(name), expected, "service {name} {:#x}", set(name));
    }
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .expect("Uid");
    assert_ne!(uid, "0", "the service runs as root");
    // A reload through systemd (SIGHUP, RELOADING=1 then READY=1).
    let reload = booted.inside(&["systemctl", "reload", "nodeward.service"]);
    assert!(reload.trim().is_empty(), "systemctl reload: {reload}");
    let reloaded = wait_for(Duration::from_secs(20), || {
        booted
            .get("http://127.0.0.1:9744/metrics")
            .filter(|m| m.contains("nodeward_config_reloads_total{result=\"success\"} 1"))
    });
    assert!(reloaded.is_some(), "the reload was not counted");
    booted.stop();
    drop(booted);

    // The agent wrote its state; an upgrade keeps it and a modified conffile.
    let journal: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&state)
        .expect("state dir")
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| (e.path(), std::fs::read(e.path()).expect("read state")))
        .collect();
    assert!(
        !journal.is_empty(),
        "the service wrote nothing into /var/lib/nodeward"
    );
    // A file a root-run agent left behind becomes the service user's at upgrade.
    let from_root = state.join("left-by-root.jsonl");
    std::fs::write(&from_root, "{}\n").expect("root-owned state file");
    let conf = root.file("/etc/nodeward/nodeward.toml");
    let mut edited = std::fs::read_to_string(&conf).expect("conffile");
    edited.push_str("\n# edited by the operator\n");
    std::fs::write(&conf, &edited).expect("edit conffile");
    root.install(&inp.upgrade);
    let installed = root.ok("dpkg-query -W -f=\"\\${Version}\" nodeward");
    assert_eq!(installed.trim(), version_of(&inp.upgrade), "after upgrade");
    for (path, before) in &journal {
        assert_eq!(
            std::fs::read(path).ok().as_ref(),
            Some(before),
            "{} changed by the upgrade",
            path.display()
        );
    }
    let owner = root.ok("stat -c %U /var/lib/nodeward/left-by-root.jsonl");
    assert_eq!(
        owner.trim(),
        "nodeward",
        "state left by root after the upgrade"
    );
    assert_eq!(
        std::fs::read_to_string(&conf).expect("conffile"),
        edited,
        "the operator's conffile edit was lost"
    );

    // Purge: what the package and the agent made goes; an operator's file stays.
    let token = root.file("/etc/nodeward/webhook.token");
    std::fs::write(&token, "secret\n").expect("token");
    root.ok("dpkg --purge nodeward");
    for gone in [
        "/usr/bin/nodeward",
        "/etc/nodeward/nodeward.toml",
        "/lib/systemd/system/nodeward.service",
        "/var/lib/nodeward",
        "/etc/systemd/system/multi-user.target.wants/nodeward.service",
        "/usr/share/nodeward",
    ] {
        assert!(
            root.file(gone).symlink_metadata().is_err(),
            "{gone} left after purge"
        );
    }
    assert!(token.exists(), "purge removed the operator's webhook token");
    // Debian keeps system users across a purge (a reused UID would own leftovers).
    let user = root.run("getent passwd nodeward");
    assert!(user.status.success(), "purge removed the system user");
}

/// The container image holds this same binary alone (`FROM scratch`): it runs in an
/// empty root, with nothing but the kernel's /proc, /sys and /dev bound in.
#[test]
fn the_packaged_binary_runs_alone_in_an_empty_root_as_the_image_does() {
    let test = "the_packaged_binary_runs_alone_in_an_empty_root_as_the_image_does";
    let Some(inp) = inputs(test) else { return };
    let unpacked = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&inp.deb)
        .arg(unpacked.path())
        .status()
        .expect("dpkg-deb");
    assert!(ok.success(), "dpkg-deb -x");
    let image = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    std::fs::copy(
        unpacked.path().join("usr/bin/nodeward"),
        image.path().join("nodeward"),
    )
    .expect("copy the binary");
    for d in ["proc", "sys", "dev", "tmp"] {
        std::fs::create_dir(image.path().join(d)).expect("mount point");
    }
    let out = chrooted(
        image.path(),
        "chroot $r /nodeward --version; chroot $r /nodeward check",
    );
    let text = text(&out);
    assert!(out.status.success(), "in an empty root:\n{text}");
    let upstream = version_of(&inp.deb);
    let upstream = upstream.split('-').next().expect("version");
    assert!(text.contains(&format!("nodeward {upstream}")), "{text}");
    assert!(text.contains("detector reboot: up"), "{text}");
}
