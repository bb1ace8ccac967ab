//! End to end, `secrets` detector: a cluster key read, copied to another secret path
//! (created there), and read over a real SSH session — each attributed.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use nodeward_tests::{Agent, Lan, SshLab, agent_bin, detail, metric, skip, wait_for};

const HELPER: &str = env!("CARGO_BIN_EXE_nodeward-test-helper");

/// A "cluster" and a "standalone node" as two directories of the test: the cluster's
/// key, the path a copy would take on the standalone node (both watched), and an agent.
fn key_and_copy(bin: &Path) -> (tempfile::TempDir, PathBuf, PathBuf, Agent) {
    let dir = tempfile::tempdir().unwrap();
    let (member, standalone) = (dir.path().join("member"), dir.path().join("standalone"));
    std::fs::create_dir_all(&member).unwrap();
    std::fs::create_dir_all(&standalone).unwrap();
    let key = member.join("authkey");
    let copy = standalone.join("authkey");
    std::fs::write(&key, b"not a real key").unwrap();
    let agent = Agent::start(
        bin,
        &format!(
            "[detectors.secrets]\npaths = [\"{}\", \"{}\"]\nallowed_readers = [\"/usr/sbin/corosync\"]\n",
            key.display(),
            copy.display()
        ),
    );
    (dir, key, copy, agent)
}

#[test]
fn key_read_copy_and_ssh_read_are_attributed() {
    let name = "secrets::key_read_copy_and_ssh_read_are_attributed";
    let Some(bin) = agent_bin(name) else { return };
    let (_dir, key, copy, agent) = key_and_copy(&bin);
    let find = |kind: &str, path: &std::path::Path, pid: Option<u32>| {
        wait_for(Duration::from_secs(5), || {
            agent.logs().into_iter().find(|l| {
                l["finding"] == kind
                    && l["path"] == path.display().to_string()
                    && pid.is_none_or(|p| l["pid"].as_u64() == Some(p.into()))
            })
        })
    };
    // A read by an unexpected process.
    let cat = Command::new("cat")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cat_pid = cat.id();
    assert!(cat.wait_with_output().unwrap().status.success());
    let read = find("secret_read", &key, Some(cat_pid))
        .unwrap_or_else(|| panic!("no secret_read:\n{}", agent.raw_output()));
    assert_eq!(read["allowed"], false);
    assert_eq!(read["comm"], "cat");
    // The copy: read at the source, created at the destination, by the same cp.
    let cp = Command::new("cp").arg(&key).arg(&copy).spawn().unwrap();
    let cp_pid = cp.id();
    assert!(cp.wait_with_output().unwrap().status.success());
    find("secret_read", &key, Some(cp_pid))
        .unwrap_or_else(|| panic!("cp's read missing:\n{}", agent.raw_output()));
    let created = find("secret_created", &copy, Some(cp_pid))
        .unwrap_or_else(|| panic!("no secret_created:\n{}", agent.raw_output()));
    assert_eq!(created["comm"], "cp");
    assert!(
        metric(
            &agent.metrics(),
            "nodeward_secrets_opens_total{allowed=\"false\",kind=\"secret_created\"}"
        )
        .unwrap()
            >= 1.0
    );

    // Over SSH: the read carries the session's origin (the copier's address).
    let lan = Lan::new();
    let lab = match SshLab::new(&lan, HELPER) {
        Ok(l) => l,
        Err(why) => return skip(name, &format!("SSH part: {why}")),
    };
    assert!(
        lab.ssh(&format!("cat {} > /dev/null", copy.display()))
            .status
            .success()
    );
    let remote = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["finding"] == "secret_read"
                && l["path"] == copy.display().to_string()
                && l["origin"] == "ssh"
        })
    })
    .unwrap_or_else(|| panic!("no SSH-attributed read:\n{}", agent.raw_output()));
    let d: serde_json::Value = serde_json::from_str(remote["detail"].as_str().unwrap()).unwrap();
    assert_eq!(d["process"]["origin"]["peer"], lan.ip_a.as_str());
    assert_eq!(d["process"]["loginuid"], 0);
}

/// Issue 6, test 2: the cluster key copied with scp over real sshd, from an "agent"
/// namespace, to a standalone node's key path: read at the source by the SSH session
/// (peer = the copier), created at the destination.
#[test]
fn key_copied_with_scp_over_ssh_is_read_by_the_session_and_created_at_the_destination() {
    let name = "secrets::key_copied_with_scp_over_ssh_is_read_by_the_session_and_created_at_the_destination";
    let Some(bin) = agent_bin(name) else { return };
    let (_dir, key, copy, agent) = key_and_copy(&bin);
    let lan = Lan::new();
    let lab = match SshLab::new(&lan, HELPER) {
        Ok(l) => l,
        Err(why) => return skip(name, &why),
    };
    let out = lab.scp_from(&key, &copy);
    assert!(out.status.success(), "scp: {out:?}");
    assert_eq!(std::fs::read(&copy).unwrap(), b"not a real key");
    let read = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["finding"] == "secret_read"
                && l["path"] == key.display().to_string()
                && l["origin"] == "ssh"
        })
    })
    .unwrap_or_else(|| panic!("no SSH-attributed read of the key:\n{}", agent.raw_output()));
    let d: serde_json::Value = serde_json::from_str(read["detail"].as_str().unwrap()).unwrap();
    assert_eq!(d["process"]["origin"]["peer"], lan.ip_a.as_str());
    assert_eq!(d["allowed"], false);
    let created = wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "secret_created" && l["path"] == copy.display().to_string())
    })
    .unwrap_or_else(|| {
        panic!(
            "no secret_created at the destination:\n{}",
            agent.raw_output()
        )
    });
    assert_eq!(created["comm"], "scp");
}

/// Enforce mode on the tracepoint route (the fallback where fanotify is missing): a
/// process of the test's cgroup that opens a protected secret without being an allowed
/// reader is ended after its open, and its binary is blocked (kill on exec) in that
/// cgroup only, through the quarantine engine.
#[test]
fn enforce_on_the_tracepoint_route_ends_a_secret_reader_and_blocks_its_binary_in_its_cgroup_only() {
    use std::os::unix::process::ExitStatusExt;
    let name = "secrets::enforce_on_the_tracepoint_route_ends_a_secret_reader_and_blocks_its_binary_in_its_cgroup_only";
    let Some(bin) = agent_bin(name) else { return };
    let cg = match nodeward_tests::TestCgroup::new() {
        Ok(c) => c,
        Err(why) => return skip(name, &why),
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("authkey");
    std::fs::write(&key, b"not a real key").unwrap();
    let agent = Agent::start(
        &bin,
        &format!(
            "agent.mode = \"enforce\"\n[detectors.secrets]\npaths = [\"{}\"]\nallowed_readers = [\"/usr/sbin/corosync\"]\nquarantine = true\nroute = \"tracepoint\"\n",
            key.display()
        ),
    );
    let key_s = key.display().to_string();
    // A reader that would keep the file open forever.
    let mut reader = cg
        .command(&["tail", "-f", &key_s])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_for(Duration::from_secs(10), || reader.try_wait().ok().flatten());
    let status = match status {
        Some(s) => s,
        None => {
            let _ = reader.kill();
            let _ = reader.wait();
            panic!("the secret reader was not ended:\n{}", agent.raw_output());
        }
    };
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let list: serde_json::Value =
        serde_json::from_slice(&agent.cli(&["quarantine", "list", "--json"]).stdout).unwrap();
    let q = &list["active"][0];
    assert_eq!(q["target"]["kind"], "exec", "{list}");
    assert_eq!(q["target"]["binary"], "tail");
    assert_eq!(q["trigger"]["source"], "secrets");
    // The agent journals the end of the process after the kill: poll for the record.
    let ended = wait_for(Duration::from_secs(5), || {
        agent
            .journal()
            .into_iter()
            .find(|e| e["decision"] == "secrets_process_ended" && e["ended"] == true)
    });
    assert!(
        ended.is_some(),
        "no secrets_process_ended record with ended = true; journal: {:?}",
        agent.journal()
    );
    // The same binary in that cgroup is killed on exec; outside it runs.
    let inside = cg.command(&["tail", "-n0", "/dev/null"]).status().unwrap();
    assert_eq!(inside.signal(), Some(libc::SIGKILL), "{inside:?}");
    let outside = Command::new("tail")
        .args(["-n0", "/dev/null"])
        .status()
        .unwrap();
    assert!(outside.success(), "{outside:?}");
}

/// By inode: the key opened through a relative path, a symlink and a hard link is
/// still the key; a `dir/*` entry watches every file of that directory, including one
/// created after the agent started; a failed open is no finding.
#[test]
fn opens_through_relative_paths_links_and_watched_directories_are_matched() {
    let name = "secrets::opens_through_relative_paths_links_and_watched_directories_are_matched";
    let Some(bin) = agent_bin(name) else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("authkey");
    std::fs::write(&key, b"not a real key").unwrap();
    let priv_dir = dir.path().join("priv");
    std::fs::create_dir(&priv_dir).unwrap();
    std::fs::write(priv_dir.join("authkey.key"), b"k").unwrap();
    let agent = Agent::start(
        &bin,
        &format!(
            "[detectors.secrets]\npaths = [\"{}\", \"{}/*\"]\nquarantine = false\n",
            key.display(),
            priv_dir.display()
        ),
    );
    let present = wait_for(Duration::from_secs(5), || {
        (metric(&agent.metrics(), "nodeward_secrets_files_present") == Some(2.0)).then_some(())
    });
    assert!(present.is_some(), "{}", agent.metrics());
    let link = dir.path().join("innocent-link");
    std::os::unix::fs::symlink(&key, &link).unwrap();
    let hard = dir.path().join("hardlink");
    std::fs::hard_link(&key, &hard).unwrap();
    let read_by = |args: &[&str], cwd: &std::path::Path| {
        let c = Command::new("cat")
            .args(args)
            .current_dir(cwd)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = c.id();
        c.wait_with_output().unwrap();
        pid
    };
    let find = |pid: u32| {
        wait_for(Duration::from_secs(5), || {
            agent
                .logs()
                .into_iter()
                .find(|l| l["finding"] == "secret_read" && l["pid"].as_u64() == Some(pid.into()))
        })
    };
    for (what, pid) in [
        ("relative path", read_by(&["authkey"], dir.path())),
        (
            "symlink",
            read_by(&[&link.display().to_string()], dir.path()),
        ),
        (
            "hard link",
            read_by(&[&hard.display().to_string()], dir.path()),
        ),
    ] {
        let f = find(pid).unwrap_or_else(|| panic!("{what}: not matched:\n{}", agent.raw_output()));
        assert_eq!(f["path"], key.display().to_string(), "{what}");
        let d: serde_json::Value = serde_json::from_str(f["detail"].as_str().unwrap()).unwrap();
        assert_eq!(d["via"], "inode", "{what}");
    }
    // The watched directory: an existing file, and one created after the start.
    let old = read_by(&["authkey.key"], &priv_dir);
    let f = find(old).unwrap_or_else(|| panic!("dir entry not matched:\n{}", agent.raw_output()));
    assert_eq!(
        f["path"],
        priv_dir.join("authkey.key").display().to_string()
    );
    let fresh = priv_dir.join("authorized_keys");
    let cp = Command::new("cp").arg(&key).arg(&fresh).spawn().unwrap();
    let cp_pid = cp.id();
    cp.wait_with_output().unwrap();
    let created = wait_for(Duration::from_secs(5), || {
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "secret_created" && l["pid"].as_u64() == Some(cp_pid.into()))
    })
    .unwrap_or_else(|| {
        panic!(
            "creation in the watched dir missed:\n{}",
            agent.raw_output()
        )
    });
    assert_eq!(created["path"], fresh.display().to_string());
    let d: serde_json::Value = serde_json::from_str(created["detail"].as_str().unwrap()).unwrap();
    assert_eq!(
        d["argv"],
        serde_json::json!(["cp", key.display().to_string(), fresh.display().to_string()])
    );
    // The legacy creat(2) and open(2) syscalls (x86_64 numbers 85 and 2), as a static
    // or old binary would make them.
    if cfg!(target_arch = "x86_64") {
        let legacy = priv_dir.join("legacy.key");
        let py = format!(
            "import ctypes,os; l=ctypes.CDLL(None); fd=l.syscall(85, {p:?}.encode(), 0o600); os.close(fd); fd=l.syscall(2, {p:?}.encode(), 0); os.close(fd)",
            p = legacy.display().to_string()
        );
        let child = Command::new("/usr/bin/python3")
            .args(["-c", &py])
            .spawn()
            .unwrap();
        let py_pid = child.id();
        assert!(child.wait_with_output().unwrap().status.success());
        for kind in ["secret_created", "secret_read"] {
            wait_for(Duration::from_secs(5), || {
                agent.logs().into_iter().find(|l| {
                    l["finding"] == kind
                        && l["pid"].as_u64() == Some(py_pid.into())
                        && l["path"] == legacy.display().to_string()
                })
            })
            .unwrap_or_else(|| panic!("{kind} by creat/open missed:\n{}", agent.raw_output()));
        }
    }
    // A failed open (no such file in the watched dir) is no finding.
    let missing = read_by(&["no-such-key"], &priv_dir);
    // Sentinel for both checks below: a successful read of a watched file, made after
    // the cp and the failed open, through the same detector. Kernel records are
    // processed in order, so once its finding is logged, a second finding for the cp's
    // open or one for the failed open would have been logged too.
    let sentinel = read_by(&["authkey.key"], &priv_dir);
    find(sentinel).unwrap_or_else(|| {
        panic!(
            "the sentinel read (pid {sentinel}) was not reported:\n{}",
            agent.raw_output()
        )
    });
    // One open, one finding: the path match is not reported twice.
    let n = agent
        .logs()
        .iter()
        .filter(|l| {
            l["pid"].as_u64() == Some(cp_pid.into()) && l["path"] == fresh.display().to_string()
        })
        .count();
    assert_eq!(n, 1, "{}", agent.raw_output());
    let reported: Vec<serde_json::Value> = agent
        .logs()
        .into_iter()
        .filter(|l| l["pid"].as_u64() == Some(missing.into()))
        .collect();
    assert!(
        reported.is_empty(),
        "a failed open was reported: {reported:?}"
    );
}

/// A key in a directory of the test, and the agent configuration watching it on the
/// fanotify route in a given mode (`extra` goes into `[detectors.secrets]`).
fn fanotify_key(extra: &str) -> (tempfile::TempDir, PathBuf, impl Fn(&str) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("authkey");
    std::fs::write(&key, b"not a real key").unwrap();
    let (key_s, extra) = (key.display().to_string(), extra.to_string());
    let config = move |mode: &str| {
        format!(
            "agent.mode = \"{mode}\"\n[detectors.secrets]\npaths = [\"{key_s}\"]\nroute = \"fanotify\"\n{extra}"
        )
    };
    (dir, key, config)
}

/// The fanotify route in enforce mode: a reader that is not allowed gets EPERM from its
/// open (nothing read), the decision is journaled and reported; an allowed reader
/// reads, and so does anything else in the same directory. In dry_run the read goes
/// through and the denial it would have made is journaled. The deny matches only the
/// test's own file.
#[test]
fn fanotify_denies_a_reader_before_it_reads_and_dry_run_only_journals() {
    use std::os::unix::process::ExitStatusExt;
    let name = "secrets::fanotify_denies_a_reader_before_it_reads_and_dry_run_only_journals";
    let Some(bin) = agent_bin(name) else { return };
    let (dir, key, config) = fanotify_key("");
    // The allowed reader is one executable (a copy of cat named corosync); another copy
    // with the same name, so the same comm, is not it.
    let (allowed_dir, spoof_dir) = (dir.path().join("allowed"), dir.path().join("spoof"));
    std::fs::create_dir_all(&allowed_dir).unwrap();
    std::fs::create_dir_all(&spoof_dir).unwrap();
    let (corosync, spoof) = (allowed_dir.join("corosync"), spoof_dir.join("corosync"));
    std::fs::copy("/bin/cat", &corosync).unwrap();
    std::fs::copy("/bin/cat", &spoof).unwrap();
    let allowed = format!("allowed_readers = [\"{}\"]\n", corosync.display());
    let config = move |mode: &str| format!("{}{allowed}", config(mode));
    let key_s = key.display().to_string();
    let agent = Agent::start(&bin, &config("dry_run"));
    let route = wait_for(Duration::from_secs(10), || {
        (metric(
            &agent.metrics(),
            "nodeward_secrets_route{route=\"fanotify\"}",
        ) == Some(1.0))
        .then_some(())
    });
    assert!(route.is_some(), "{}", agent.metrics());
    // The mark is placed by the first scan: read until a read is seen.
    let seen = wait_for(Duration::from_secs(10), || {
        let out = Command::new("cat").arg(&key).output().unwrap();
        assert!(out.status.success(), "dry_run must not deny: {out:?}");
        assert_eq!(out.stdout, b"not a real key");
        agent
            .journal()
            .into_iter()
            .find(|e| e["decision"] == "secrets_open_would_deny" && e["path"] == key_s.as_str())
    });
    let note = seen.unwrap_or_else(|| panic!("no would_deny record:\n{}", agent.raw_output()));
    assert_eq!(note["comm"], "cat", "{note}");

    // Enforce: refused before a byte is read.
    agent.rewrite_config(&config("enforce"));
    agent.signal(libc::SIGHUP);
    let denied = wait_for(Duration::from_secs(10), || {
        let out = Command::new("cat").arg(&key).output().unwrap();
        (!out.status.success()).then_some(out)
    })
    .unwrap_or_else(|| panic!("the read was never denied:\n{}", agent.raw_output()));
    assert!(denied.stdout.is_empty(), "{denied:?}");
    assert!(denied.status.signal().is_none(), "{denied:?}");
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Operation not permitted"),
        "{denied:?}"
    );
    let refused = wait_for(Duration::from_secs(5), || {
        agent
            .journal()
            .into_iter()
            .find(|e| e["decision"] == "secrets_open_denied" && e["path"] == key_s.as_str())
    })
    .unwrap_or_else(|| panic!("no secrets_open_denied record: {:?}", agent.journal()));
    assert_eq!(refused["comm"], "cat", "{refused}");
    let finding = wait_for(Duration::from_secs(5), || {
        agent.logs().into_iter().find(|l| {
            l["finding"] == "secret_read"
                && l["path"] == key_s.as_str()
                && l["decision"] == "denied"
        })
    })
    .unwrap_or_else(|| panic!("no denied finding:\n{}", agent.raw_output()));
    assert_eq!(finding["allowed"], false);
    assert!(
        metric(
            &agent.metrics(),
            "nodeward_secrets_decisions_total{decision=\"denied\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{}",
        agent.metrics()
    );
    // The allowed reader (by executable) still reads; a process of the same name
    // running another file is refused.
    let out = Command::new(&corosync).arg(&key).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"not a real key");
    let out = Command::new(&spoof).arg(&key).output().unwrap();
    assert!(!out.status.success(), "a copy named corosync read: {out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // Only the test's file is refused: a neighbour in the same directory reads.
    let neighbour = dir.path().join("corosync.conf");
    std::fs::write(&neighbour, b"totem {}").unwrap();
    let out = Command::new("cat").arg(&neighbour).output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Routes that syscall tracepoints on open(2) never saw: io_uring's openat and
/// open_by_handle_at(2), each reported with the process, then denied in enforce mode.
#[test]
fn reads_through_io_uring_and_file_handles_are_seen_then_denied() {
    let name = "secrets::reads_through_io_uring_and_file_handles_are_seen_then_denied";
    let Some(bin) = agent_bin(name) else { return };
    let (_dir, key, config) = fanotify_key("");
    let key_s = key.display().to_string();
    let agent = Agent::start(&bin, &config("observe"));
    let helper = |how: &str| {
        let child = Command::new(HELPER)
            .args([how, &key_s])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        (pid, child.wait_with_output().unwrap())
    };
    for how in ["uring-read", "handle-read"] {
        // The mark is placed by the first scan: repeat until one read is seen.
        let found = wait_for(Duration::from_secs(10), || {
            let (pid, out) = helper(how);
            assert!(out.status.success(), "{how}: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "14", "{how}");
            agent.logs().into_iter().find(|l| {
                l["finding"] == "secret_read"
                    && l["path"] == key_s.as_str()
                    && l["pid"].as_u64() == Some(pid.into())
            })
        })
        .unwrap_or_else(|| panic!("{how}: no finding:\n{}", agent.raw_output()));
        assert_eq!(found["comm"], "nodeward-test-h", "{how}: {found}");
    }
    agent.rewrite_config(&config("enforce"));
    agent.signal(libc::SIGHUP);
    for how in ["uring-read", "handle-read"] {
        let refused = wait_for(Duration::from_secs(10), || {
            let (_, out) = helper(how);
            (!out.status.success()).then_some(out)
        })
        .unwrap_or_else(|| panic!("{how}: never denied:\n{}", agent.raw_output()));
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("Operation not permitted"),
            "{how}: {refused:?}"
        );
        assert!(refused.stdout.is_empty(), "{how}: {refused:?}");
    }
}

/// The fanotify route: a key renamed into a watched path (`mv`) and a key hard-linked
/// into a watched directory (`ln`) are reported when the directory entry appears,
/// before anything opens them, with the process that made it.
#[test]
fn keys_renamed_or_linked_into_watched_paths_are_reported() {
    let name = "secrets::keys_renamed_or_linked_into_watched_paths_are_reported";
    let Some(bin) = agent_bin(name) else { return };
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let priv_dir = dir.path().join("priv");
    std::fs::create_dir_all(&priv_dir).unwrap();
    let key = dir.path().join("authkey");
    let agent = Agent::start(
        &bin,
        &format!(
            "[detectors.secrets]\npaths = [\"{}\", \"{}/*\"]\nroute = \"fanotify\"\n",
            key.display(),
            priv_dir.display()
        ),
    );
    // Repeat each arrival until the agent's marks are in place; the finding must name
    // the pid of the `mv` or `ln` that made it.
    let arrive = |kind: &str, tool: &str, src: &std::path::Path, dst: &std::path::Path| {
        std::fs::write(src, b"not a real key").unwrap();
        wait_for(Duration::from_secs(15), || {
            let _ = std::fs::remove_file(dst);
            let mut child = Command::new(tool).arg(src).arg(dst).spawn().unwrap();
            let pid = child.id();
            assert!(child.wait().unwrap().success(), "{tool} failed");
            let found = wait_for(Duration::from_millis(800), || {
                agent.logs().into_iter().find(|l| {
                    l["finding"] == kind
                        && l["pid"].as_u64() == Some(pid.into())
                        && l["path"] == dst.display().to_string()
                })
            });
            if found.is_none() && tool == "mv" {
                std::fs::rename(dst, src).unwrap();
            }
            found
        })
        .unwrap_or_else(|| panic!("no {kind} for {tool}:\n{}", agent.raw_output()))
    };
    let moved = arrive("secret_moved_in", "mv", &elsewhere.path().join("k1"), &key);
    // The comm is read from /proc while the event's pidfd shows `mv` alive; a process
    // that exited before its event was read is said to have, never left blank.
    const GONE: &str = "(exited before its event was read)";
    assert!(
        matches!(moved["comm"].as_str(), Some(c) if c == "mv" || c == GONE),
        "{moved}"
    );
    assert_eq!(detail(&moved)["via"], "directory");
    let linked = arrive(
        "secret_linked",
        "ln",
        &elsewhere.path().join("k2"),
        &priv_dir.join("new.key"),
    );
    assert!(
        matches!(linked["comm"].as_str(), Some(c) if c == "ln" || c == GONE),
        "{linked}"
    );
    assert!(
        metric(
            &agent.metrics(),
            "nodeward_secrets_opens_total{allowed=\"false\",kind=\"secret_linked\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );
}

/// A FUSE file system that never answers (the kernel's INIT request is never read), as
/// pmxcfs is when the cluster hangs: every lookup below its mount point waits. Dropped,
/// the connection is closed (waiting lookups fail with ENOTCONN) and the mount detached.
struct HungFuse {
    dev: Option<std::fs::File>,
    dir: tempfile::TempDir,
}

impl HungFuse {
    fn mount() -> Result<HungFuse, String> {
        use std::os::fd::AsRawFd;
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .map_err(|e| format!("/dev/fuse: {e}"))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let opts = format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let target = c(&dir.path().display().to_string());
        // SAFETY: NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                c("nodeward-hung").as_ptr(),
                target.as_ptr(),
                c("fuse.nodeward-hung").as_ptr(),
                0,
                c(&opts).as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(format!("mount fuse: {}", std::io::Error::last_os_error()));
        }
        Ok(HungFuse {
            dev: Some(dev),
            dir,
        })
    }
}

impl Drop for HungFuse {
    fn drop(&mut self) {
        drop(self.dev.take());
        let target = std::ffi::CString::new(self.dir.path().display().to_string()).unwrap();
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A watched path on a FUSE file system that hangs (pmxcfs when the cluster hangs)
/// never stalls the agent: it answers /metrics, the other secret paths are watched and
/// their reads reported, an unrelated open is not held, and SIGTERM ends it.
#[test]
fn a_hung_fuse_file_system_never_stalls_the_agent() {
    let name = "secrets::a_hung_fuse_file_system_never_stalls_the_agent";
    let Some(bin) = agent_bin(name) else { return };
    let fuse = match HungFuse::mount() {
        Ok(f) => f,
        Err(why) => {
            skip(name, &why);
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("authkey");
    std::fs::write(&key, b"not a real key").unwrap();
    let hung = fuse.dir.path().join("priv");
    let mut agent = Agent::start(
        &bin,
        &format!(
            "[detectors.secrets]\npaths = [\"{}/*\", \"{}\"]\nroute = \"fanotify\"\n",
            hung.display(),
            key.display()
        ),
    );
    let key_s = key.display().to_string();
    let seen = wait_for(Duration::from_secs(15), || {
        let out = Command::new("cat").arg(&key).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        agent
            .logs()
            .into_iter()
            .find(|l| l["finding"] == "secret_read" && l["path"] == key_s.as_str())
    });
    assert!(
        seen.is_some(),
        "the key beside a hung FUSE path is not watched:\n{}",
        agent.raw_output()
    );
    // The agent keeps answering while its walk of the hung path waits.
    for _ in 0..3 {
        assert!(agent.metrics().contains("nodeward_secrets_route"));
    }
    assert!(
        std::fs::read(dir.path().join("authkey")).is_ok(),
        "an open next to the key was held"
    );
    let hung_reported = wait_for(Duration::from_secs(15), || {
        agent
            .raw_output()
            .contains("takes longer than 5 s")
            .then_some(())
    });
    assert!(hung_reported.is_some(), "{}", agent.raw_output());
    let status = agent.stop();
    assert!(status.success(), "exit status {status:?}");
    drop(fuse);
}
