//! `session` detector, kernel side: which tasks descend from an SSH connection.
//!
//! Where an origin comes from, two routes chosen by userspace (`session.cgroup`):
//!
//! - cgroup (default): OpenSSH's per-connection sshd asks for its peer's address with
//!   getpeername(2) as soon as it starts. A cgroup `getpeername4/6` program on the
//!   cgroup v2 root sees that call in the sshd's own context: the origin is recorded
//!   for that sshd at once (the peer from the call, the local port from its socket).
//!   No syscall tracepoint, so no slow path for every syscall on the node.
//! - tracepoint (fallback): an sshd (by comm, from `SSHD_COMMS`) returns from accept(2)
//!   with the peer address in its user buffer; that origin is parked for the sshd's
//!   next fork. The server-side ESTABLISHED transition (softirq: the current task is
//!   meaningless) is keyed by the socket's addresses, never by comm, and only supplies
//!   the local port.
//!
//! Where it is kept, two routes (`session.storage`, flag `ORIGIN_ROUTE`):
//!
//! - storage (default): task local storage, copied to the child by a `tp_btf`
//!   sched_process_fork program and freed by the kernel with the task. No exit program.
//! - pid table (fallback, where tp_btf does not load): `TASK_ORIGIN`, keyed by pid,
//!   copied by a sched_process_fork tracepoint and emptied by a sched_process_exit one.
//!
//! On all of them, every descendant inherits the origin at fork.

use agent_common::{
    event::kind,
    session::{
        AF_INET, AF_INET6, ORIGIN_SSH, Origin, ROUTE_OFF, ROUTE_PID_TABLE, ROUTE_TASK_STORAGE,
        SshAcceptEvent, TASK_ORIGIN_CAPACITY, TracepointOffsets,
    },
    stats,
};
use aya_ebpf::{
    bindings::task_struct,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns, bpf_probe_read_user,
        generated::bpf_get_current_task_btf,
    },
    macros::{btf_map, btf_tracepoint, cgroup_sock_addr, map, tracepoint},
    maps::{Array, HashMap, LruHashMap},
    programs::{BtfTracePointContext, SockAddrContext, TracePointContext},
};

use crate::{
    common::{EVENTS, count, fill_proc, header},
    task_storage::TaskStorage,
};

#[btf_map(name = "ORIGIN_STORAGE")]
static ORIGIN_STORAGE: TaskStorage<Origin> = TaskStorage::new();
#[map(name = "TASK_ORIGIN")]
static TASK_ORIGIN: LruHashMap<u32, Origin> = LruHashMap::with_max_entries(TASK_ORIGIN_CAPACITY, 0);
/// Which of the two tables above is in use, or none while the detector is off (written
/// by userspace).
#[map(name = "ORIGIN_ROUTE")]
static ORIGIN_ROUTE: Array<u32> = Array::with_max_entries(1, 0);
/// Origin of the connection an sshd just accepted, for its next fork.
#[map(name = "PENDING_ACCEPT")]
static PENDING_ACCEPT: LruHashMap<u32, Origin> = LruHashMap::with_max_entries(1024, 0);
/// accept(2) arguments between enter and exit: pid_tgid -> user sockaddr pointer.
#[map(name = "ACCEPT_ARGS")]
static ACCEPT_ARGS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1024, 0);
/// Peer (family, port, address) -> local port, from the ESTABLISHED transition.
#[map(name = "PEER_LOCAL_PORT")]
static PEER_LOCAL_PORT: LruHashMap<PeerKey, u16> = LruHashMap::with_max_entries(4096, 0);
#[map(name = "SSHD_COMMS")]
static SSHD_COMMS: HashMap<[u8; 16], u32> = HashMap::with_max_entries(16, 0);

#[inline(always)]
fn route() -> u32 {
    ORIGIN_ROUTE.get(0).copied().unwrap_or(ROUTE_OFF)
}

/// The current task's origin, from the table in use (none while the detector is off:
/// then no table is kept up to date).
#[inline(always)]
pub fn current_origin() -> Option<Origin> {
    let route = route();
    if route == ROUTE_OFF {
        return None;
    }
    if route == ROUTE_TASK_STORAGE {
        // SAFETY: helper without preconditions; the verifier knows its result as a task.
        let task = unsafe { bpf_get_current_task_btf() };
        // SAFETY: a value of this map, copied at once.
        ORIGIN_STORAGE.get(task).map(|p| unsafe { *p })
    } else {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        // SAFETY: map lookup, value copied.
        unsafe { TASK_ORIGIN.get(&tgid) }.copied()
    }
}

/// Give the current task `origin` (replacing the one it has), in the table in use.
#[inline(always)]
fn set_current_origin(mut origin: Origin) {
    let route = route();
    if route == ROUTE_OFF {
        return;
    }
    let stored = if route == ROUTE_TASK_STORAGE {
        // SAFETY: as in current_origin.
        let task = unsafe { bpf_get_current_task_btf() };
        let init = origin;
        match ORIGIN_STORAGE.get_or_insert(task, &mut origin) {
            Some(p) => {
                // SAFETY: the task's own value; a write of the whole record.
                unsafe { *p = init };
                true
            }
            None => false,
        }
    } else {
        TASK_ORIGIN.insert(&origin.sshd_pid, &origin, 0).is_ok()
    };
    if !stored {
        count(kind::SSH_ACCEPT, stats::MAP_FULL);
    }
}

#[unsafe(no_mangle)]
static TP_OFFSETS: TracepointOffsets = TracepointOffsets::DEFAULT;

#[repr(C)]
#[derive(Clone, Copy)]
struct PeerKey {
    addr: [u8; 16],
    port: u16,
    family: u16,
    _pad: u32,
}

fn is_sshd() -> bool {
    match bpf_get_current_comm() {
        // SAFETY: map lookup, value not kept.
        Ok(comm) => unsafe { SSHD_COMMS.get(&comm) }.is_some(),
        Err(_) => false,
    }
}

fn accept_enter(ctx: &TracePointContext) -> u32 {
    if !is_sshd() {
        return 0;
    }
    // accept/accept4(fd, upeer_sockaddr @24, upeer_addrlen, [flags])
    // SAFETY: tracepoint context read through the checked helper.
    if let Ok(ptr) = unsafe { ctx.read_at::<u64>(24) }
        && ptr != 0
    {
        let _ = ACCEPT_ARGS.insert(&bpf_get_current_pid_tgid(), &ptr, 0);
    }
    0
}

fn accept_exit(ctx: &TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: map lookup, value copied.
    let Some(ptr) = (unsafe { ACCEPT_ARGS.get(&id) }).copied() else {
        return 0;
    };
    let _ = ACCEPT_ARGS.remove(&id);
    // SAFETY: as above.
    let ret = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1);
    if ret < 0 {
        return 0;
    }
    let sa = ptr as *const u8;
    // struct sockaddr_in{,6}: family u16 @0, port (network order) @2, v4 addr @4, v6 addr @8.
    // SAFETY: user memory the kernel has just written, read through the checked helper.
    let Ok(family) = (unsafe { bpf_probe_read_user(sa as *const u16) }) else {
        count(kind::SSH_ACCEPT, stats::READ_ERROR);
        return 0;
    };
    // SAFETY: as above.
    let port =
        u16::from_be(unsafe { bpf_probe_read_user(sa.wrapping_add(2) as *const u16) }.unwrap_or(0));
    let mut origin = Origin {
        kind: ORIGIN_SSH,
        family,
        peer_port: port,
        local_port: 0,
        _pad0: 0,
        sshd_pid: (id >> 32) as u32,
        peer_addr: [0; 16],
        // SAFETY: helper without preconditions.
        since_ns: unsafe { bpf_ktime_get_boot_ns() },
    };
    if family == AF_INET {
        // SAFETY: as above.
        if let Ok(a) = unsafe { bpf_probe_read_user(sa.wrapping_add(4) as *const [u8; 4]) } {
            origin.peer_addr[..4].copy_from_slice(&a);
        }
    } else if family == AF_INET6 {
        // SAFETY: as above.
        if let Ok(a) = unsafe { bpf_probe_read_user(sa.wrapping_add(8) as *const [u8; 16]) } {
            origin.peer_addr = a;
        }
    } else {
        return 0; // a unix-socket accept: not a network session
    }
    let key = PeerKey {
        addr: origin.peer_addr,
        port,
        family,
        _pad: 0,
    };
    // SAFETY: as above.
    if let Some(lp) = unsafe { PEER_LOCAL_PORT.get(&key) } {
        origin.local_port = *lp;
    }
    let tgid = (id >> 32) as u32;
    if PENDING_ACCEPT.insert(&tgid, &origin, 0).is_err() {
        count(kind::SSH_ACCEPT, stats::MAP_FULL);
    }
    report(origin)
}

/// Send the session's start (the sshd that holds it and its peer) to userspace.
#[inline(always)]
fn report(origin: Origin) -> u32 {
    let Some(mut entry) = EVENTS.reserve::<SshAcceptEvent>(0) else {
        count(kind::SSH_ACCEPT, stats::RINGBUF_FULL);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: reserved slot of exactly this type; every field written before submit.
    unsafe {
        (*ev).header = header(kind::SSH_ACCEPT, core::mem::size_of::<SshAcceptEvent>());
        fill_proc(&mut (*ev).proc, kind::SSH_ACCEPT);
        (*ev).origin = origin;
    }
    entry.submit(0);
    count(kind::SSH_ACCEPT, stats::SUBMITTED);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_accept4")]
pub fn session_accept4(ctx: TracePointContext) -> u32 {
    accept_enter(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_enter_accept")]
pub fn session_accept(ctx: TracePointContext) -> u32 {
    accept_enter(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn session_accept4_exit(ctx: TracePointContext) -> u32 {
    accept_exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn session_accept_exit(ctx: TracePointContext) -> u32 {
    accept_exit(&ctx)
}

/// getpeername(2) by an sshd (cgroup route): this sshd serves the connection whose peer
/// the kernel is about to return; it and its descendants get that origin. Always
/// lets the call through unchanged.
#[inline(always)]
fn getpeername(ctx: &SockAddrContext, family: u16) {
    if !is_sshd() {
        return;
    }
    let sa = ctx.sock_addr;
    let mut origin = Origin {
        kind: ORIGIN_SSH,
        family,
        peer_port: 0,
        local_port: 0,
        _pad0: 0,
        sshd_pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        peer_addr: [0; 16],
        // SAFETY: helper without preconditions.
        since_ns: unsafe { bpf_ktime_get_boot_ns() },
    };
    // SAFETY: context fields read with 4-byte loads at their own offsets (the only
    // access the verifier allows on bpf_sock_addr); the socket pointer is never null
    // in this hook.
    unsafe {
        // user_port: the peer's port, network order, in the low 16 bits.
        origin.peer_port = u16::from_be(core::ptr::read_volatile(&(*sa).user_port) as u16);
        if family == AF_INET {
            let a = core::ptr::read_volatile(&(*sa).user_ip4);
            origin.peer_addr[..4].copy_from_slice(&a.to_ne_bytes());
        } else {
            for i in 0..4 {
                let w = core::ptr::read_volatile(&(*sa).user_ip6[i]);
                origin.peer_addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
        }
        let sk = (*sa).__bindgen_anon_1.sk;
        if !sk.is_null() {
            origin.local_port = core::ptr::read_volatile(&(*sk).src_port) as u16;
        }
    }
    // sshd asks more than once per connection (and its children inherit the origin):
    // one session, one record.
    if let Some(known) = current_origin()
        && known.peer_port == origin.peer_port
        && known.family == origin.family
        && known.peer_addr == origin.peer_addr
    {
        return;
    }
    // The sshd's own origin: it forks the session's processes, which inherit it.
    set_current_origin(origin);
    report(origin);
}

#[cgroup_sock_addr(getpeername4)]
pub fn session_getpeername4(ctx: SockAddrContext) -> i32 {
    getpeername(&ctx, AF_INET);
    1
}

#[cgroup_sock_addr(getpeername6)]
pub fn session_getpeername6(ctx: SockAddrContext) -> i32 {
    getpeername(&ctx, AF_INET6);
    1
}

/// Server side of a TCP handshake completing: remember the local port by peer.
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn session_sock_state(ctx: TracePointContext) -> u32 {
    // oldstate @16, newstate @20, sport @24, dport @26, family @28, protocol @30,
    // daddr @36 (v4), daddr_v6 @56. TCP_SYN_RECV = 3 -> TCP_ESTABLISHED = 1.
    // SAFETY: tracepoint context reads through the checked helper.
    let (Ok(old), Ok(new)) = (unsafe { ctx.read_at::<i32>(16) }, unsafe {
        ctx.read_at::<i32>(20)
    }) else {
        return 0;
    };
    if old != 3 || new != 1 {
        return 0;
    }
    // SAFETY: as above.
    let (sport, dport, family) = unsafe {
        (
            ctx.read_at::<u16>(24).unwrap_or(0),
            ctx.read_at::<u16>(26).unwrap_or(0),
            ctx.read_at::<u16>(28).unwrap_or(0),
        )
    };
    let mut addr = [0u8; 16];
    if family == AF_INET {
        // SAFETY: as above.
        if let Ok(a) = unsafe { ctx.read_at::<[u8; 4]>(36) } {
            addr[..4].copy_from_slice(&a);
        }
    } else if family == AF_INET6 {
        // SAFETY: as above.
        if let Ok(a) = unsafe { ctx.read_at::<[u8; 16]>(56) } {
            addr = a;
        }
    } else {
        return 0;
    }
    let _ = PEER_LOCAL_PORT.insert(
        &PeerKey {
            addr,
            port: dport,
            family,
            _pad: 0,
        },
        &sport,
        0,
    );
    0
}

/// What a child of `parent` (a tgid) inherits: an sshd's first fork after an accept
/// (tracepoint route) takes the accepted connection's origin; otherwise `own`, the
/// parent's.
#[inline(always)]
fn inherited(parent: u32, own: Option<Origin>) -> Option<Origin> {
    // SAFETY: map lookup, value copied.
    match unsafe { PENDING_ACCEPT.get(&parent) }.copied() {
        Some(o) => {
            let _ = PENDING_ACCEPT.remove(&parent);
            Some(o)
        }
        None => own,
    }
}

/// Storage route: the child gets a copy of its parent's origin in its own storage,
/// which the kernel frees with the task.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn session_fork_btf(ctx: BtfTracePointContext) -> i32 {
    // sched_process_fork(struct task_struct *parent, struct task_struct *child)
    let (parent, child): (*mut task_struct, *mut task_struct) = (ctx.arg(0), ctx.arg(1));
    // SAFETY: a value of this map, copied at once.
    let own = ORIGIN_STORAGE.get(parent).map(|p| unsafe { *p });
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(mut origin) = inherited(tgid, own) else {
        return 0;
    };
    if ORIGIN_STORAGE.get_or_insert(child, &mut origin).is_none() {
        count(kind::SSH_ACCEPT, stats::MAP_FULL);
    }
    0
}

/// Pid-table route: children inherit their parent's origin.
#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn session_fork(ctx: TracePointContext) -> u32 {
    // SAFETY: a plain read of a global fixed at load time.
    let off = unsafe { core::ptr::read_volatile(&TP_OFFSETS) };
    // SAFETY: tracepoint context read through the checked helper.
    let Ok(child) = (unsafe { ctx.read_at::<u32>(off.fork_child_pid as usize) }) else {
        return 0;
    };
    // Attached a moment before the table is switched to the pid table (which is
    // emptied first): copies of stale entries would outlive that.
    if route() != ROUTE_PID_TABLE {
        return 0;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: map lookup, value copied.
    let own = unsafe { TASK_ORIGIN.get(&parent) }.copied();
    if let Some(origin) = inherited(parent, own)
        && TASK_ORIGIN.insert(&child, &origin, 0).is_err()
    {
        count(kind::SSH_ACCEPT, stats::MAP_FULL);
    }
    0
}

/// Pid-table route: a task ends, its entries go. Almost no task has one, so each map
/// is asked first (a lookup takes no lock; a delete takes the bucket's lock even for a
/// missing key). An entry added between the lookup and the skipped delete would have
/// been added just after the delete before: nothing changes. (On the storage route
/// only the accept-parking entry is left, and this program is not attached: the
/// parking table is an LRU and its entries are consumed by the sshd's next fork.)
#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn session_exit(_ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((id >> 32) as u32, id as u32);
    // SAFETY: map lookups for presence only.
    if unsafe { TASK_ORIGIN.get(&tid) }.is_some() {
        let _ = TASK_ORIGIN.remove(&tid);
    }
    // SAFETY: as above.
    if tgid == tid && unsafe { PENDING_ACCEPT.get(&tgid) }.is_some() {
        let _ = PENDING_ACCEPT.remove(&tgid);
    }
    0
}
