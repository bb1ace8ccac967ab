//! End to end, bad input and faults (issue 16): the agent's interfaces refuse abuse
//! (oversized, slow, unauthorised or non-root requests), count and log each refusal and
//! keep serving; a world-writable configuration or state directory is refused at start;
//! an exec storm that overflows the ring buffer is counted exactly. The quarantine
//! state's faults (SIGKILL mid-change, a full disk) are in `faults/state.rs`.

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nodeward_tests::{Agent, Stopped, agent_bin, http_get, metric, wait_for};

#[path = "faults/state.rs"]
mod state;

fn refused(agent: &Agent, interface: &str, reason: &str) -> f64 {
    metric(
        &agent.metrics(),
        &format!(
            "nodeward_requests_refused_total{{interface=\"{interface}\",reason=\"{reason}\"}}"
        ),
    )
    .unwrap_or(f64::NAN)
}

/// Read what the server sends until it closes the connection (EOF or reset); `None`
/// when it is still open after `limit`.
fn until_closed(s: &mut impl Read, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(out),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    None
}

fn control(agent: &Agent) -> UnixStream {
    let path = agent.config_path.parent().unwrap().join("control.sock");
    let s = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

#[test]
fn interfaces_refuse_abuse_count_and_log_it_and_keep_serving() {
    let Some(bin) = agent_bin("faults::interfaces_refuse_abuse_count_and_log_it_and_keep_serving")
    else {
        return;
    };
    let (_token, webhook) = nodeward_tests::webhook_token("s3cret-token");
    let agent = Agent::start(&bin, &webhook);

    // HTTP: a wrong token, then a body over the limit with the right one.
    let (code, _) = nodeward_tests::http_request(
        &agent.addr,
        "POST",
        "/alertmanager",
        &[("Authorization", "Bearer s3cret-tokeX")],
        "{}",
    );
    assert_eq!(code, 401);
    let mut big = TcpStream::connect(&agent.addr).unwrap();
    big.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let body_len = 2 * 1024 * 1024;
    let head = format!(
        "POST /alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
    );
    big.write_all(head.as_bytes()).unwrap();
    // The agent answers without reading the whole body: writing the rest may fail.
    let _ = big.write_all(&vec![b' '; body_len]);
    let answer = until_closed(&mut big, Duration::from_secs(15)).expect("answered and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A slow client (headers never finished) is cut off within the header timeout.
    let mut slow = TcpStream::connect(&agent.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    // Closed long before the connection age (120 s): by the 5 s header timeout.
    assert!(
        until_closed(&mut slow, Duration::from_secs(20)).is_some(),
        "a client that never finishes its headers is kept open"
    );

    // Control socket: a request line over the limit, and a client that sends nothing.
    let mut s = control(&agent);
    let _ = s.write_all(&vec![b'x'; 70 * 1024]);
    let answer = until_closed(&mut s, Duration::from_secs(10)).expect("answered");
    assert!(
        String::from_utf8_lossy(&answer).contains("request over"),
        "{answer:?}"
    );
    let mut silent = control(&agent);
    let answer = until_closed(&mut silent, Duration::from_secs(20)).expect("answered");
    assert!(
        String::from_utf8_lossy(&answer).contains("not received in time"),
        "{answer:?}"
    );

    // A non-root peer that can reach the socket (made reachable here on purpose; the
    // agent makes its directory 0700) is refused and logged.
    let dir = agent.config_path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    let sock = dir.join("control.sock");
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "/usr/bin/python3",
            "-c",
        ])
        .arg(
            // The agent may answer and close before the request is written.
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
             try:\n  s.sendall(b'{\"verb\":\"list\"}\\n')\nexcept OSError:\n  pass\n\
             print(s.recv(4096).decode())",
        )
        .arg(&sock)
        .output()
        .expect("setpriv python3");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("permission denied: root only"),
        "non-root peer: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(Duration::from_secs(5), || agent
            .logs()
            .iter()
            .any(|l| l["message"] == "control request refused: not root" && l["uid"] == 65534)
            .then_some(()))
        .is_some(),
        "refusal not logged"
    );

    // Every refusal counted, exactly once; the agent still answers both interfaces.
    for (interface, reason) in [
        ("http", "unauthorized"),
        ("http", "body_too_large"),
        ("http", "header_timeout"),
        ("control", "too_large"),
        ("control", "timeout"),
        ("control", "not_root"),
    ] {
        assert!(
            wait_for(Duration::from_secs(5), || (refused(
                &agent, interface, reason
            ) == 1.0)
                .then_some(()))
            .is_some(),
            "{interface}/{reason}: {}",
            refused(&agent, interface, reason)
        );
    }
    assert_eq!(http_get(&agent.addr, "/healthz").0, 200);
    let out = agent.cli(&["quarantine", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nodeward run` with this config: its exit status and output, or a panic when it is
/// still running after 30 s (then it is stopped by PID).
fn run_until_exit(bin: &Path, config: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nodeward run");
    let status = wait_for(Duration::from_secs(30), || child.try_wait().ok().flatten());
    let Some(status) = status else {
        // SAFETY: kill(2) on the PID of our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = child.wait();
        panic!("nodeward run kept running with {}", config.display());
    };
    let mut text = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut text);
    let _ = child.stderr.take().unwrap().read_to_string(&mut text);
    (status.code(), text)
}

#[test]
fn a_world_writable_config_or_state_directory_is_refused_at_start() {
    let Some(bin) =
        agent_bin("faults::a_world_writable_config_or_state_directory_is_refused_at_start")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let config = dir.path().join("nodeward.toml");
    std::fs::write(
        &config,
        format!(
            "agent.state_dir = \"{}\"\nhttp.listen = \"127.0.0.1:0\"\ncontrol.socket = \"{}\"\n",
            state.display(),
            dir.path().join("control.sock").display()
        ),
    )
    .unwrap();

    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, text) = run_until_exit(&bin, &config);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("config file") && text.contains("writable by every user"),
        "{text}"
    );
    let check = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(!check.status.success());

    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, text) = run_until_exit(&bin, &config);
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("state directory") && text.contains("writable by every user"),
        "{text}"
    );
    assert!(
        !state.join("audit.jsonl").exists(),
        "nothing may be written to a refused state directory"
    );
}

/// The exec record counters: (kernel submitted, kernel ringbuf_full, received by the
/// agent, exported ringbuf_full losses, exported queue_full losses).
fn exec_counters(agent: &Agent) -> [f64; 5] {
    let m = agent.metrics();
    let kernel = |result: &str| {
        metric(
            &m,
            &format!("nodeward_kernel_records_total{{kind=\"exec\",result=\"{result}\"}}"),
        )
        .unwrap_or(f64::NAN)
    };
    let lost = |reason: &str| {
        metric(
            &m,
            &format!("nodeward_events_lost_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(f64::NAN)
    };
    [
        kernel("submitted"),
        kernel("ringbuf_full"),
        metric(&m, "nodeward_events_total{kind=\"exec\"}").unwrap_or(f64::NAN),
        lost("ringbuf_full"),
        lost("queue_full"),
    ]
}

#[test]
fn an_exec_storm_that_overflows_the_ring_buffer_is_counted_exactly() {
    let Some(bin) =
        agent_bin("faults::an_exec_storm_that_overflows_the_ring_buffer_is_counted_exactly")
    else {
        return;
    };
    let agent = Agent::start(&bin, "");
    // A stand-in (a copy of /bin/true) under a watched name nothing else on a test
    // machine runs, with arguments that are no logind call: every exec is one record
    // of kind exec and no finding.
    let dir = tempfile::tempdir().unwrap();
    let stand_in = dir.path().join("dbus-send");
    std::fs::copy("/bin/true", &stand_in).unwrap();
    let all_full = |agent: &Agent| {
        nodeward_tests::metric_sum(
            &agent.metrics(),
            "nodeward_kernel_records_total",
            &[("result", "ringbuf_full")],
        )
    };
    let all_full_before = all_full(&agent);
    let before = exec_counters(&agent);
    assert!(before.iter().all(|v| v.is_finite()), "{before:?}");

    // The agent stops reading (SIGSTOP stands in for a stalled agent): the 1 MiB ring
    // buffer holds about 1,150 exec records, so 3,000 execs overflow it.
    const SENT: f64 = 3000.0;
    {
        let _stopped = Stopped::new(&agent);
        for i in 0..SENT as usize {
            let st = Command::new(&stand_in)
                .args([
                    "--session",
                    "--print-reply",
                    &format!("--dest=org.example.Storm{i}"),
                ])
                .status()
                .unwrap();
            assert!(st.success());
        }
    }
    // Resumed: wait until the agent has read everything the kernel submitted.
    let after = wait_for(Duration::from_secs(60), || {
        let c = exec_counters(&agent);
        (c[2] - before[2] == c[0] - before[0]).then_some(c)
    })
    .unwrap_or_else(|| {
        panic!(
            "the agent did not read every submitted record: {before:?} -> {:?}",
            exec_counters(&agent)
        )
    });
    let all_full_after = all_full(&agent);
    let d: Vec<f64> = (0..5).map(|i| after[i] - before[i]).collect();
    let (submitted, full, received, lost, queue_full) = (d[0], d[1], d[2], d[3], d[4]);
    // Every exec was either submitted or counted as lost, in the kernel.
    assert_eq!(
        submitted + full,
        SENT,
        "kernel accounting (submitted {submitted} + ringbuf_full {full}) differs from the \
         {SENT} execs sent (another process running `dbus-send` at the same time would \
         also show here)"
    );
    assert!(full > 0.0, "the ring buffer did not overflow: {d:?}");
    // What the agent exports as lost is exactly what was sent and not recorded.
    assert_eq!(queue_full, 0.0, "{d:?}");
    // The exec records lost are exactly those sent and not recorded; the exported loss
    // is the kernel's count over every kind (the ring buffer is shared).
    assert_eq!(full, SENT - received, "{d:?}");
    assert_eq!(lost, all_full_after - all_full_before, "{d:?}");
    // Still answering on both interfaces.
    let (status, _) = agent.get("/healthz");
    assert_eq!(status, 200);
    assert!(
        agent.cli(&["status"]).status.success(),
        "control socket after the storm"
    );
    eprintln!("exec storm: sent {SENT}, recorded {received}, lost (ringbuf_full) {lost}");
}
