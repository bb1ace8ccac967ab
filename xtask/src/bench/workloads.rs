//! The bench's workloads: each runs for `secs` and returns the operations done.

use std::{
    net::UdpSocket,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// A report of the form `COUNT SECONDS` (what a workload process and the UDP sender
/// print).
pub fn count_and_secs(text: &str) -> Option<(u64, f64)> {
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// What one run did: its operations and, for a workload whose helpers take time
/// around the measured part (the UDP receiver's start and end), the seconds of that
/// part alone; otherwise the whole run is timed.
pub struct Ops {
    pub n: u64,
    pub secs: Option<f64>,
}

impl Ops {
    pub fn whole(n: u64) -> Ops {
        Ops { n, secs: None }
    }
}

pub fn exec_loop(secs: f64) -> Result<u64> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0;
    while Instant::now() < end {
        Command::new("/bin/true").status().context("/bin/true")?;
        n += 1;
    }
    Ok(n)
}

pub fn open_loop(secs: f64) -> Result<u64> {
    let dir = scratch("open");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("f");
    std::fs::write(&file, b"x")?;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0;
    while Instant::now() < end {
        for _ in 0..256 {
            drop(std::fs::File::open(&file)?);
        }
        n += 256;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(n)
}

const NS_A: &str = "nwbench-a";
const NS_B: &str = "nwbench-b";
const BR: &str = "nwbenchbr";
const IP_B: &str = "10.213.99.2";

/// The interfaces the agent's packet program takes in the bench network (the bridge and
/// its ports), where the bench's empty TC program goes on its side of a pair.
pub const TC_INTERFACES: [&str; 3] = [BR, HOSTS[0].1, HOSTS[1].1];

const HOSTS: [crate::lab::Host; 2] = [
    (NS_A, "nwbenchpa", "10.213.99.1"),
    (NS_B, "nwbenchpb", IP_B),
];

/// Two namespaces on a bridge (deleted by [`net_down`]), each with a permanent
/// neighbour entry for the other: an entry left to age goes stale every 15–45 s, and
/// while it is stale, delayed or probed every datagram takes the kernel's slow
/// resolving output (measured here: +7 % of a packet's cost), in whichever side's run
/// that happens to fall. The bridge's forwarding entries are static for the same
/// reason: the receiving namespace sends nothing in most workloads, so a learned entry
/// for it would age out after 5 minutes and every datagram after that would be flooded
/// as unknown unicast instead of forwarded.
pub fn net_up() -> Result<()> {
    crate::lab::up(BR, &HOSTS)?;
    // Each namespace's MAC, read once: the bridge's entry and the peer's neighbour.
    let macs = HOSTS
        .iter()
        .map(|(ns, _, _)| crate::lab::mac(ns))
        .collect::<Result<Vec<String>>>()?;
    for ((_, port, _), mac) in HOSTS.iter().zip(&macs) {
        crate::lab::sh(&[
            "bridge", "fdb", "replace", mac, "dev", port, "master", "static",
        ])?;
    }
    for (ns, _, _) in HOSTS {
        for ((_, _, peer_ip), mac) in HOSTS.iter().zip(&macs).filter(|(h, _)| h.0 != ns) {
            crate::lab::sh(&[
                "ip",
                "-n",
                ns,
                "neigh",
                "replace",
                peer_ip,
                "lladdr",
                mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])?;
        }
    }
    Ok(())
}

pub fn net_down() {
    crate::lab::down(BR, &HOSTS);
}

/// UDP to the corosync port from namespace A to B, through the bridge (this xtask
/// binary re-run inside each namespace), received by a socket in B as corosync receives
/// its ring's traffic.
pub fn udp_loop(secs: f64) -> Result<Ops> {
    udp_to(5405, true, secs)
}

/// UDP to a port no detector watches (9, discard), received the same way: the bridge's
/// ordinary traffic, which the packet program only parses and passes.
pub fn udp_plain_loop(secs: f64) -> Result<Ops> {
    udp_to(9, true, secs)
}

/// UDP to the corosync port with nothing listening in B: every datagram is freed as a
/// drop (no socket), so the martian filter on kfree_skb runs for each.
pub fn udp_drop_loop(secs: f64) -> Result<Ops> {
    udp_to(5405, false, secs)
}

/// A receiver that got less than this share of what was sent makes the run an error:
/// a received workload whose datagrams are dropped at the socket would measure the
/// drop path instead (and the faster side would drop more).
const RECEIVED_AT_LEAST: f64 = 0.99;

/// The receiver's socket buffer (the kernel doubles it: about 0.3 s of the stream), so
/// a receiver descheduled for a moment drops nothing.
const RECEIVE_BUFFER: i32 = 64 << 20;

/// The length of the datagram that ends a stream (the workload's are 80 bytes).
const END_OF_STREAM: usize = 1;

/// The datagrams sent and the sender's own seconds (the receiver's start and its
/// wait for the end of the stream are outside them).
fn udp_to(port: u16, received: bool, secs: f64) -> Result<Ops> {
    // This process's own image (alive while the sender runs), never the path: a
    // rebuild of xtask during a bench replaces the file, not the running image.
    let me = format!("/proc/{}/exe", std::process::id());
    let receiver = if received {
        Some(Receiver::start(&me, port)?)
    } else {
        None
    };
    let out = crate::util::output(
        Command::new("ip")
            .args(["netns", "exec", NS_A])
            .args(pinned(0))
            .arg(&me)
            .args(["bench-udp-send", IP_B, &port.to_string(), &secs.to_string()]),
    )
    .context("udp sender")?;
    let Some((sent, took)) = count_and_secs(&out) else {
        bail!("udp sender printed {out:?} (want: datagrams seconds)");
    };
    if let Some(r) = receiver {
        let got = r.finish()?;
        if (got as f64) < RECEIVED_AT_LEAST * sent as f64 {
            bail!(
                "udp receiver on port {port} got {got} of {sent} datagrams sent (want at least {:.0} %): the run would measure drops, not receptions",
                RECEIVED_AT_LEAST * 100.0
            );
        }
    }
    Ok(Ops {
        n: sent,
        secs: Some(took),
    })
}

/// `taskset` arguments that keep a UDP process on the `nth` CPU this process may use,
/// when it may use more than one: the sender and the receiver each on its own CPU in
/// every run, so a run never measures the scheduler's choice of putting them together
/// (their datagrams are then freed on the CPU that allocated them, a different and
/// cheaper path).
fn pinned(nth: usize) -> Vec<String> {
    // SAFETY: sched_getaffinity of this process into a zeroed set of the size passed.
    let cpus: Vec<usize> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    };
    if cpus.len() > 1 {
        vec![
            "taskset".into(),
            "-c".into(),
            cpus[nth % cpus.len()].to_string(),
        ]
    } else {
        Vec::new()
    }
}

/// The bench's UDP receiver in namespace B (`bench-udp-recv`): it ends on the
/// sender's end-of-stream datagram, and is killed (by PID) only on an error path.
struct Receiver {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Receiver {
    fn start(me: &str, port: u16) -> Result<Receiver> {
        use std::io::BufRead;
        // `ip netns exec` and `taskset` exec the command: the child's PID is the
        // receiver's.
        let mut child = Command::new("ip")
            .args(["netns", "exec", NS_B])
            .args(pinned(1))
            .arg(me)
            .args(["bench-udp-recv", &port.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("udp receiver")?;
        // Built before anything can fail, so Drop ends the child on every way out.
        let out = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut r = Receiver { child, out };
        let mut line = String::new();
        r.out.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("udp receiver on port {port} did not start: {line:?}");
        }
        Ok(r)
    }

    /// The datagrams received, once the end-of-stream datagram came.
    fn finish(mut self) -> Result<u64> {
        use std::io::BufRead;
        let mut line = String::new();
        self.out.read_line(&mut line)?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("udp receiver failed: {status}");
        }
        line.trim()
            .parse()
            .with_context(|| format!("udp receiver printed {line:?}"))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // After finish() the child is reaped and this does nothing; on an error path
        // it ends the receiver.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The receiver itself (hidden subcommand): binds PORT with a large buffer, prints
/// `ready`, counts the workload's datagrams until the end-of-stream one (or, should
/// every copy of it be lost, until the stream has been silent for 2 s: the sender's
/// count and the share received judge the run), then prints the count. No datagram
/// within 10 s of the start is an error.
pub fn udp_recv(port: u16) -> Result<()> {
    use std::os::fd::AsRawFd;
    let sock = UdpSocket::bind(("0.0.0.0", port))?;
    // SAFETY: setsockopt on our own socket with a pointer to an int that outlives the
    // call. SO_RCVBUFFORCE (root) is not capped by net.core.rmem_max.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&RECEIVE_BUFFER as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!(
            "udp receiver: SO_RCVBUFFORCE: {}",
            std::io::Error::last_os_error()
        );
    }
    println!("ready");
    let mut buf = [0u8; 2048];
    let mut n: u64 = 0;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    loop {
        match sock.recv(&mut buf) {
            Ok(END_OF_STREAM) => break,
            Ok(_) => {
                if n == 0 {
                    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
                }
                n += 1;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if n == 0 {
                    bail!("udp receiver: no datagram within 10 s");
                }
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    println!("{n}");
    Ok(())
}

/// The sender itself (hidden subcommand): 80-byte datagrams to DST:PORT for SECS,
/// then the end-of-stream datagram (a receiver stops on it; a closed port ignores it);
/// prints the datagrams and the seconds it sent for.
pub fn udp_send(dst: &str, port: u16, secs: f64) -> Result<()> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.connect((dst, port))?;
    let payload = [0u8; 80];
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut n: u64 = 0;
    while Instant::now() < end {
        for _ in 0..64 {
            // Errors (ICMP port unreachable reported back) are part of the load.
            let _ = sock.send(&payload);
        }
        n += 64;
    }
    let took = start.elapsed().as_secs_f64();
    // Three copies, 1 ms apart: a datagram sent is not one received (a full backlog
    // drops it silently), and copies after the first are ignored. A closed port's
    // ICMP error fails one send; the next goes.
    for _ in 0..3 {
        let _ = sock.send(&payload[..END_OF_STREAM]);
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("{n} {took}");
    Ok(())
}

/// getpid(2) in a tight loop: the slow-path canary (any syscall tracepoint, or audit
/// once enabled on the boot for the tasks forked after, puts syscalls on the kernel's
/// slow path).
pub fn getpid_loop(secs: f64) -> Result<u64> {
    unsafe extern "C" {
        fn syscall(nr: i64, ...) -> i64;
    }
    const SYS_GETPID: i64 = 39;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0;
    while Instant::now() < end {
        for _ in 0..4096 {
            // SAFETY: getpid takes no arguments and cannot fail.
            unsafe { syscall(SYS_GETPID) };
        }
        n += 4096;
    }
    Ok(n)
}

/// A real source tree that Debian ships (zlib, from Debian's source packages),
/// fetched once into target/bench-src.
pub fn source_tarball() -> Result<PathBuf> {
    let dir = crate::util::root().join("target/bench-src");
    std::fs::create_dir_all(dir.join("lists/partial"))?;
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".orig.tar.bz2"))
    };
    if let Some(t) = find() {
        return Ok(t);
    }
    let sources = dir.join("src.sources");
    std::fs::write(
        &sources,
        "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )?;
    let apt = |args: &[&str]| -> Result<()> {
        let out = Command::new("apt-get")
            .arg("-o")
            .arg(format!("Dir::Etc::SourceList={}", sources.display()))
            .args(["-o", "Dir::Etc::SourceParts=/dev/null", "-o"])
            .arg(format!("Dir::State::Lists={}", dir.join("lists").display()))
            .args(["-o", "APT::Sandbox::User=root"])
            .args(args)
            .env("TMPDIR", "/tmp")
            .current_dir(&dir)
            .output()
            .context("apt-get")?;
        if !out.status.success() {
            bail!("apt-get {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    apt(&["update"])?;
    apt(&["source", "--download-only", "zlib"])?;
    find().context("zlib's source tarball missing after apt-get source")
}

fn unpack(tarball: &std::path::Path, into: &std::path::Path) -> Result<()> {
    crate::lab::sh(&[
        "tar",
        "-xjf",
        &tarball.to_string_lossy(),
        "-C",
        &into.to_string_lossy(),
    ])
}

/// A scratch directory: in tmpfs (/dev/shm) for the unpack, so the disk's writeback
/// does not drown what the agent costs; in the temp directory otherwise.
fn scratch(name: &str) -> PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let base = if name == "tar" && shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("nodeward-bench-{name}-{}", bench_id()))
}

/// The bench's id for its scratch directories: the PID of the bench's xtask process
/// (handed to each workload process in `NODEWARD_BENCH_ID`), so the build tree
/// configured once serves every run and the bench removes what its runs left.
pub fn bench_id() -> u32 {
    std::env::var("NODEWARD_BENCH_ID")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(std::process::id)
}

/// Unpack the source tarball (bzip2 + the file system), again and again.
pub fn tar_loop(secs: f64) -> Result<u64> {
    let tarball = source_tarball()?;
    let dir = scratch("tar");
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0;
    while Instant::now() < end {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        unpack(&tarball, &dir)?;
        n += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(n)
}

/// The build workload's tree: zlib unpacked and configured once (the bench calls this
/// before its first run, so no run is timed with the configure in it).
pub fn build_tree() -> Result<PathBuf> {
    let tarball = source_tarball()?;
    let dir = scratch("build");
    let tree = || -> Result<PathBuf> {
        std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .context("unpacked tree")
    };
    if tree().is_err() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        unpack(&tarball, &dir)?;
        let out = Command::new("./configure").current_dir(tree()?).output()?;
        if !out.status.success() {
            bail!("zlib configure: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    tree()
}

/// `make -j2` of zlib (each round cleans and builds again): compiler processes, many
/// opens and execs, real work.
pub fn build_loop(secs: f64) -> Result<u64> {
    let src = build_tree()?;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0;
    while Instant::now() < end {
        let make = |args: &[&str]| -> Result<()> {
            let out = Command::new("make").args(args).current_dir(&src).output()?;
            if !out.status.success() {
                bail!("make {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        make(&["clean"])?;
        make(&["-j2", "libz.a"])?;
        n += 1;
    }
    Ok(n)
}

/// Remove what the build and tar workloads left in the temp directory.
pub fn clean_scratch() {
    for name in ["open", "tar", "build"] {
        let _ = std::fs::remove_dir_all(scratch(name));
    }
}
