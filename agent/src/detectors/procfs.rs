//! A process seen from userspace (fanotify routes), read from /proc: its identity in
//! the kernel record's form, its command line and lineage, and the flags of the open it
//! is making. The opener of a secret waits for the permission answer meanwhile, so
//! nothing here races with its end; a process seen by a notification (sysrq) may have
//! gone, and then less is known.

use agent_common::proc::{COMM_LEN, ProcCtx, UNSET_ID};

/// Flags of an open whose syscall could not be read (io_uring, an exec, a kernel
/// worker): counted as a plain read.
pub const FLAGS_UNKNOWN: u64 = 0;

/// x86_64 and aarch64 numbers of the syscalls that open a file by path or handle, and
/// the argument holding the flags (`creat` has none: it is O_CREAT|O_WRONLY|O_TRUNC).
#[cfg(target_arch = "x86_64")]
const OPEN_SYSCALLS: &[(u64, Flags)] = &[
    (2, Flags::Arg(1)),   // open
    (85, Flags::Creat),   // creat
    (257, Flags::Arg(2)), // openat
    (304, Flags::Arg(2)), // open_by_handle_at
    (437, Flags::How(2)), // openat2
];
#[cfg(target_arch = "aarch64")]
const OPEN_SYSCALLS: &[(u64, Flags)] = &[
    (56, Flags::Arg(2)),  // openat
    (265, Flags::Arg(2)), // open_by_handle_at
    (437, Flags::How(2)), // openat2
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const OPEN_SYSCALLS: &[(u64, Flags)] = &[];

#[derive(Clone, Copy)]
enum Flags {
    Arg(usize),
    Creat,
    /// `struct open_how *` in this argument; its first field is the flags.
    How(usize),
}

/// The flags of the open thread `tid` is blocked in, from /proc/TID/syscall (and, for
/// openat2, its `open_how` read from the thread's memory).
pub fn open_flags(tid: u32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{tid}/syscall")) else {
        return FLAGS_UNKNOWN;
    };
    parse_syscall(&text, |addr| read_u64(tid, addr)).unwrap_or(FLAGS_UNKNOWN)
}

fn parse_syscall(text: &str, read: impl Fn(u64) -> Option<u64>) -> Option<u64> {
    let mut fields = text.split_whitespace();
    let nr: u64 = fields.next()?.parse().ok()?;
    let args: Vec<u64> = fields
        .take(6)
        .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .collect();
    let (_, how) = OPEN_SYSCALLS.iter().find(|(n, _)| *n == nr)?;
    match *how {
        Flags::Arg(i) => args.get(i).copied(),
        Flags::Creat => Some(0o100 | 0o1 | 0o1000),
        Flags::How(i) => read(*args.get(i)?),
    }
}

fn read_u64(tid: u32, addr: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{tid}/mem")).ok()?;
    let mut buf = [0u8; 8];
    mem.read_exact_at(&mut buf, addr).ok()?;
    Some(u64::from_ne_bytes(buf))
}

/// The process context of thread `tid`, as the kernel side would have recorded it
/// (origin from the session detector's table, `origin` looks it up by pid).
pub fn proc_ctx(
    tid: u32,
    origin: impl Fn(u32) -> Option<agent_common::session::Origin>,
) -> Option<ProcCtx> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let first =
        |name: &str| -> Option<u32> { field(name)?.split_whitespace().next()?.parse().ok() };
    let pid = first("Tgid")?;
    let mut ctx = ProcCtx {
        pid,
        tid,
        ppid: first("PPid").unwrap_or(0),
        uid: first("Uid").unwrap_or(UNSET_ID),
        gid: first("Gid").unwrap_or(UNSET_ID),
        loginuid: read_id(pid, "loginuid"),
        sessionid: read_id(pid, "sessionid"),
        cgroup_id: cgroup_id(pid).unwrap_or(0),
        origin: origin(pid).unwrap_or_default(),
        ..Default::default()
    };
    // The thread's own name, as the kernel records it (comm is per thread).
    let comm = std::fs::read_to_string(format!("/proc/{tid}/comm")).unwrap_or_default();
    let comm = comm.trim_end_matches('\n').as_bytes();
    let n = comm.len().min(COMM_LEN - 1);
    ctx.comm[..n].copy_from_slice(&comm[..n]);
    Some(ctx)
}

fn read_id(pid: u32, file: &str) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(UNSET_ID)
}

/// The cgroup v2 id (the inode of the cgroup's directory in the unified hierarchy).
fn cgroup_id(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let root = crate::kernel::cgroup::v2_root()?;
    let meta = std::fs::metadata(format!("{}{path}", root.display())).ok()?;
    Some(meta.ino())
}

/// The command line of `pid` (at most 256 bytes of it, as the kernel side records).
pub fn argv(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let raw = &raw[..raw.len().min(256)];
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Names of the ancestors of `pid`, nearest last ("sshd → bash → reboot" order),
/// read from /proc while they still exist (best effort, at most 8 levels).
pub fn lineage(pid: u32) -> Vec<String> {
    let mut chain = Vec::new();
    let mut cur = pid;
    for _ in 0..8 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{cur}/stat")) else {
            break;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            break;
        };
        chain.push(stat[open + 1..close].to_string());
        let ppid: u32 = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid <= 1 {
            break;
        }
        cur = ppid;
    }
    chain.reverse();
    chain
}

/// Ancestor names, farthest first: the kernel's walk at the exec (`ancestors`, pid and
/// comm, nearest first; it survives ancestors that have exited since), continued from
/// /proc above its farthest entry while that pid is still the same command. Without a
/// kernel walk, /proc from `ppid`. As with /proc alone, init (pid 1) is named only when
/// it is the parent itself.
pub fn lineage_with(ancestors: &[(u32, String)], ppid: u32) -> Vec<String> {
    let Some((farthest, comm)) = ancestors.last() else {
        return lineage(ppid);
    };
    let mut walk = ancestors;
    let mut chain = Vec::new();
    if *farthest == 1 {
        if ancestors.len() > 1 {
            walk = &ancestors[..ancestors.len() - 1];
        }
    } else {
        let above = lineage(*farthest);
        // A pid reused since the exec is another process: nothing above is known.
        if above.last() == Some(comm) {
            chain = above;
            chain.pop();
        }
    }
    chain.extend(walk.iter().rev().map(|(_, comm)| comm.clone()));
    chain
}

/// The SSH origin of a process by pid (the session detector's kernel table).
pub type OriginLookup =
    std::sync::Arc<dyn Fn(u32) -> Option<agent_common::session::Origin> + Send + Sync>;

/// A lookup in the session detector's kernel table (whichever the route in use
/// keeps), for userspace routes that see a process outside the kernel (fanotify).
/// Without the table, processes carry no origin (said once, for `detector`); a failed
/// read is counted (`nodeward_kernel_read_errors_total{source="origin_table"}`).
pub fn origin_lookup(
    kernel: &crate::kernel::owner::Handle,
    detector: &'static str,
    agent: &crate::metrics::Agent,
) -> OriginLookup {
    use crate::detectors::session::table::OriginTable;
    let errors = crate::kernel::metrics::ReadErrors::new(agent);
    match kernel.call(|k| OriginTable::open(k)) {
        Ok(t) => std::sync::Arc::new(move |pid| {
            t.get(pid)
                .map_err(|e| errors.failed("origin_table", e))
                .ok()
                .flatten()
        }),
        Err(e) => {
            tracing::warn!(detector, error = %e, "the session table cannot be read: processes seen through fanotify carry no SSH origin");
            std::sync::Arc::new(|_| None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn open_flags_come_from_the_syscall_and_its_arguments() {
        let none = |_| None;
        // openat(AT_FDCWD, path, O_WRONLY|O_CREAT|O_TRUNC)
        let t = "257 0xffffffffffffff9c 0x7ffc5a1b 0x241 0x1b6 0x0 0x0 0x7ffc 0x7f12\n";
        assert_eq!(parse_syscall(t, none), Some(0o1101));
        assert_eq!(parse_syscall("2 0x55 0x0 0x0 0 0 0 0x1 0x2", none), Some(0));
        assert_eq!(
            parse_syscall("85 0x55 0x180 0 0 0 0 0x1 0x2", none),
            Some(0o1101)
        );
        // openat2: flags read at the open_how address.
        let how = |addr| (addr == 0x1000).then_some(0o2);
        assert_eq!(
            parse_syscall("437 0x3 0x55 0x1000 0x18 0 0 0x1 0x2", how),
            Some(0o2)
        );
        // io_uring_enter, a thread not in a syscall, garbage: unknown.
        assert_eq!(parse_syscall("426 0x3 0x1 0x1 0x1 0 0 0x1 0x2", none), None);
        assert_eq!(parse_syscall("running", none), None);
        assert_eq!(parse_syscall("-1 0x7ffc 0x55", none), None);
    }

    #[test]
    fn own_process_reads_like_a_kernel_record() {
        let me = std::process::id();
        let ctx = proc_ctx(me, |_| None).expect("own /proc");
        assert_eq!(ctx.pid, me);
        assert_eq!(ctx.uid, nix::unistd::getuid().as_raw());
        assert!(ctx.comm[0] != 0);
        assert!(!argv(me).is_empty());
        // Not in a syscall of ours (reading our own): unknown, never a guess.
        assert_eq!(open_flags(me), FLAGS_UNKNOWN);
    }

    #[test]
    fn lineage_is_the_kernel_walk_continued_from_proc() {
        let walk = |pids: &[u32]| -> Vec<(u32, String)> {
            pids.iter().map(|p| (*p, format!("k{p}"))).collect()
        };
        // A walk that reached init: init is left out unless it is the parent.
        assert_eq!(lineage_with(&walk(&[7, 5, 1]), 7), ["k5", "k7"]);
        assert_eq!(lineage_with(&walk(&[1]), 1), ["k1"]);
        // Above the farthest entry, from /proc: here that entry is this test process
        // (with its real comm), so its own ancestors come first.
        let me = std::process::id();
        let mine = lineage(me);
        let my_comm = mine.last().expect("own comm").clone();
        let mut full = walk(&[3, 4]);
        full.push((me, my_comm.clone()));
        let chain = lineage_with(&full, 3);
        let mut want = mine.clone();
        want.extend(["k4".to_string(), "k3".to_string()]);
        assert_eq!(chain, want);
        // The farthest pid now runs another command (reused): nothing above it.
        let reused = walk(&[3, me]);
        assert_eq!(lineage_with(&reused, 3), [format!("k{me}"), "k3".into()]);
        // No walk: /proc from the parent.
        assert_eq!(lineage_with(&[], me), mine);
    }
}
