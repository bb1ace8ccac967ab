//! `corosync` detector, kernel side. In the packet program (`net::net_tc`): UDP to a
//! cluster port, counted per source address and interface (member or not), and dropped
//! when a quarantine names a non-member source. On the host: exec of a cluster daemon
//! and a bind to a cluster port, reported with the process and its network namespace.
//! The bind is seen by cgroup `post_bind4/6` programs on the cgroup v2 root (default:
//! no syscall tracepoint) or, as the fallback route, by the `sys_enter_bind` tracepoint.

use agent_common::{
    corosync::{
        COROSYNC_EXEC_CAPACITY, COROSYNC_HOT_SLOTS, COROSYNC_MEMBER_INDEX_SLOTS,
        COROSYNC_MEMBERS_CAPACITY, COROSYNC_PORTS_CAPACITY, COROSYNC_SOURCES_CAPACITY,
        CorosyncLocalEvent, HotSource, LOCAL_BIND, LOCAL_EXEC, MemberCount, MemberEntry,
        SourceCount, SourceKey, TOTAL_DROPPED, TOTAL_MEMBER, TOTAL_NON_MEMBER, TOTAL_SLOTS,
        TOTAL_UNTRACKED, Words, entry_says_words, hot_slot_words, member_index_words, same_words,
        set_words_at, words_at,
    },
    event::kind,
    maps::ExecWatchKey,
    quarantine::{QSTAT_DROP_COROSYNC, RULES_CAPACITY, Rule},
    session::{AF_INET, AF_INET6},
    stats,
};
use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_probe_read_user},
    macros::{cgroup_sock, map, tracepoint},
    maps::{Array, HashMap, LruPerCpuHashMap, PerCpuArray},
    programs::{SockContext, TcContext, TracePointContext},
};
use aya_log_ebpf::debug;

use crate::common::{EVENTS, count, fill_proc, header, offsets, read_at};

#[map(name = "COROSYNC_PORTS")]
static COROSYNC_PORTS: HashMap<u16, u32> = HashMap::with_max_entries(COROSYNC_PORTS_CAPACITY, 0);
#[map(name = "COROSYNC_MEMBERS")]
/// A packet copies the slot it finds at once. The agent leaves an entry that keeps its
/// value alone (an updated or deleted element goes to the next insert), so only a
/// departed member's packet in flight at the change can land in a new member's freshly
/// zeroed slot: a handful of packets at a membership change, accepted.
static COROSYNC_MEMBERS: HashMap<[u8; 16], u32> =
    HashMap::with_max_entries(COROSYNC_MEMBERS_CAPACITY, 0);
#[map(name = "COROSYNC_SOURCES")]
static COROSYNC_SOURCES: LruPerCpuHashMap<SourceKey, SourceCount> =
    LruPerCpuHashMap::with_max_entries(COROSYNC_SOURCES_CAPACITY, 0);
#[map(name = "COROSYNC_TOTALS")]
static COROSYNC_TOTALS: PerCpuArray<u64> = PerCpuArray::with_max_entries(TOTAL_SLOTS, 0);
#[map(name = "COROSYNC_DROP")]
static COROSYNC_DROP: HashMap<[u8; 16], Rule> = HashMap::with_max_entries(RULES_CAPACITY, 0);
#[map(name = "COROSYNC_EXEC")]
static COROSYNC_EXEC: HashMap<ExecWatchKey, u32> =
    HashMap::with_max_entries(COROSYNC_EXEC_CAPACITY, 0);

#[map(name = "COROSYNC_MEMBER_COUNTS")]
static COROSYNC_MEMBER_COUNTS: PerCpuArray<MemberCount> =
    PerCpuArray::with_max_entries(COROSYNC_MEMBERS_CAPACITY, 0);
#[map(name = "COROSYNC_MEMBER_INDEX")]
static COROSYNC_MEMBER_INDEX: Array<MemberEntry> =
    Array::with_max_entries(COROSYNC_MEMBER_INDEX_SLOTS, 0);
#[map(name = "COROSYNC_HOT")]
static COROSYNC_HOT: PerCpuArray<HotSource> = PerCpuArray::with_max_entries(COROSYNC_HOT_SLOTS, 0);

#[inline(always)]
fn total(slot: u32) {
    if let Some(p) = COROSYNC_TOTALS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

/// Count a cluster packet from `addr` (IPv6, or IPv4 mapped; as words, never copied a
/// byte at a time) seen on `ifindex`; `true` when a quarantine drops it (`drop_rules`:
/// whether any cluster-drop rule exists; `members`: whether the member table holds any,
/// else the member index is not read). A member's packet costs its index entry and
/// its slot in a per-CPU array; anything else its index entry and its source's slot in
/// the per-CPU hot array (whose counts are also the non-member total's: the agent adds
/// them up), or, when another source holds that slot, the LRU hash and the total.
#[inline(always)]
pub fn count_packet(
    ctx: &TcContext,
    addr: Words,
    ifindex: u32,
    drop_rules: bool,
    members: bool,
) -> bool {
    let len = ctx.len() as u64;
    let slot = if members { member_slot(&addr) } else { None };
    if let Some(slot) = slot {
        total(TOTAL_MEMBER);
        if let Some(c) = COROSYNC_MEMBER_COUNTS.get_ptr_mut(slot) {
            // SAFETY: a per-CPU value: no other writer on this CPU while we run.
            unsafe {
                if (*c).ifindex == ifindex || (*c).ifindex == 0 {
                    (*c).ifindex = ifindex;
                    (*c).packets += 1;
                    (*c).bytes += len;
                    return false;
                }
            }
        }
        // A member on a second interface (or a slot out of range): per source.
        count_source(ctx, addr, ifindex, true, len, false);
        return false;
    }
    // The drop list is looked up only when it holds a rule.
    let drop = drop_rules && dropped(&addr);
    if drop {
        total(TOTAL_DROPPED);
        crate::quarantine::qcount(QSTAT_DROP_COROSYNC);
    }
    count_source(ctx, addr, ifindex, false, len, drop);
    drop
}

#[inline(always)]
fn count_source(ctx: &TcContext, addr: Words, ifindex: u32, member: bool, len: u64, drop: bool) {
    let mut key = SourceKey {
        addr: [0; 16],
        ifindex,
        member: member as u32,
    };
    set_words_at(&mut key, addr);
    let d = drop as u64;
    if !member {
        if count_hot(&key, &addr, len, d) {
            return;
        }
        total(TOTAL_NON_MEMBER);
    }
    match COROSYNC_SOURCES.get_ptr_mut(&key) {
        // SAFETY: a per-CPU value: no other writer on this CPU while we run.
        Some(c) => unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
            (*c).dropped += d;
        },
        None => {
            let first = SourceCount {
                packets: 1,
                bytes: len,
                dropped: d,
            };
            if COROSYNC_SOURCES.insert(&key, &first, 0).is_err() {
                total(TOTAL_UNTRACKED);
                debug!(
                    ctx,
                    "corosync: source table full, packet counted as untracked"
                );
            }
        }
    }
}

/// Count in the source's hot slot (`addr`: the words of `key`'s address); `false` when
/// another source holds it.
#[inline(always)]
fn count_hot(key: &SourceKey, addr: &Words, len: u64, dropped: u64) -> bool {
    let Some(h) = COROSYNC_HOT.get_ptr_mut(hot_slot_words(addr, key.ifindex)) else {
        return false;
    };
    // SAFETY: a per-CPU value: no other writer on this CPU while we run. The agent
    // reads it concurrently: the key is written before the count that marks the slot
    // taken (volatile stores keep their order), and the agent reads a slot it finds
    // newly taken twice.
    unsafe {
        let packets = (*h).count.packets;
        if packets == 0 {
            core::ptr::write_volatile(&mut (*h).key, *key);
        } else if !same_source(&(*h).key, key) {
            return false;
        }
        core::ptr::write_volatile(&mut (*h).count.packets, packets + 1);
        (*h).count.bytes += len;
        (*h).count.dropped += dropped;
    }
    true
}

/// The counter slot of `addr` when it is a member: its entry in the direct-mapped index
/// decides, or, for an entry members share (or one read while the agent rewrote it),
/// the member hash.
#[inline(always)]
fn member_slot(addr: &Words) -> Option<u32> {
    let e = COROSYNC_MEMBER_INDEX.get_ptr(member_index_words(addr))?;
    // SAFETY: a map value; copied once, so the check and the use see the same bytes.
    let e: MemberEntry = unsafe { core::ptr::read_volatile(e) };
    match entry_says_words(&e, addr) {
        Some(slot) => slot,
        // SAFETY: map lookup, value copied.
        None => unsafe { COROSYNC_MEMBERS.get(as_key(addr)) }.copied(),
    }
}

/// The address as the byte key of the member and drop hashes (the kernel copies the key;
/// no byte is moved here).
#[inline(always)]
fn as_key(addr: &Words) -> &[u8; 16] {
    // SAFETY: same size; the byte array's alignment (1) is weaker than the words'.
    unsafe { &*(addr as *const Words).cast::<[u8; 16]>() }
}

/// Key equality: the address, the interface and the member flag (no memcmp in eBPF).
#[inline(always)]
fn same_source(a: &SourceKey, b: &SourceKey) -> bool {
    same_words(&words_at(a), &words_at(b)) & (a.ifindex == b.ifindex) & (a.member == b.member)
}

#[inline(always)]
fn dropped(addr: &Words) -> bool {
    // SAFETY: map lookup, value used at once.
    crate::quarantine::in_force(unsafe { COROSYNC_DROP.get(as_key(addr)) }).is_some()
}

/// Inode of the current task's network namespace, 0 when unreadable.
#[inline(always)]
fn current_netns() -> u32 {
    let off = offsets();
    // SAFETY: helper without preconditions; the pointer is only used through probe reads.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: probe reads through read_at tolerate any address.
    unsafe {
        read_at::<*const u8>(task, off.task_nsproxy)
            .and_then(|ns| read_at::<*const u8>(ns, off.nsproxy_net_ns))
            .and_then(|net| read_at::<u32>(net, off.net_inum))
    }
    .unwrap_or(0)
}

#[inline(always)]
fn emit(what: u32, family: u16, port: u16, addr: [u8; 16]) {
    let Some(mut entry) = EVENTS.reserve::<CorosyncLocalEvent>(0) else {
        count(kind::COROSYNC_LOCAL, stats::RINGBUF_FULL);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: a reserved slot of exactly this type; every field written before submit.
    unsafe {
        (*ev).header = header(
            kind::COROSYNC_LOCAL,
            core::mem::size_of::<CorosyncLocalEvent>(),
        );
        fill_proc(&mut (*ev).proc, kind::COROSYNC_LOCAL);
        (*ev).netns = current_netns();
        (*ev).what = what;
        (*ev).family = family;
        (*ev).port = port;
        (*ev)._pad = 0;
        (*ev).addr = addr;
    }
    entry.submit(0);
    count(kind::COROSYNC_LOCAL, stats::SUBMITTED);
}

/// A cluster daemon (by the new image's comm) was executed (part of the one
/// sched_process_exec program, `exec::exec_sched`).
#[inline(always)]
pub(crate) fn on_exec(comm: [u8; 16]) {
    let key = ExecWatchKey { name: comm };
    // SAFETY: map lookup, presence only.
    if unsafe { COROSYNC_EXEC.get(&key) }.is_some() {
        emit(LOCAL_EXEC, 0, 0, [0; 16]);
    }
}

/// bind(2) to a cluster port (any socket type, any address).
#[tracepoint(category = "syscalls", name = "sys_enter_bind")]
pub fn corosync_bind(ctx: TracePointContext) -> u32 {
    // bind(fd @16, umyaddr @24, addrlen @32)
    // SAFETY: tracepoint context reads through the checked helper.
    let Ok(sa) = (unsafe { ctx.read_at::<u64>(24) }) else {
        return 0;
    };
    let sa = sa as *const u8;
    // SAFETY: user pointer reads through the checked helper.
    let Ok(family) = (unsafe { bpf_probe_read_user(sa.cast::<u16>()) }) else {
        return 0;
    };
    if family != AF_INET && family != AF_INET6 {
        return 0;
    }
    // SAFETY: as above; sin_port / sin6_port at offset 2.
    let Ok(port) = (unsafe { bpf_probe_read_user(sa.add(2).cast::<u16>()) }) else {
        return 0;
    };
    let port = u16::from_be(port);
    // SAFETY: map lookup, presence only.
    if unsafe { COROSYNC_PORTS.get(&port) }.is_none() {
        return 0;
    }
    let mut addr = [0u8; 16];
    if family == AF_INET {
        // SAFETY: as above; sin_addr at offset 4.
        if let Ok(a) = unsafe { bpf_probe_read_user(sa.add(4).cast::<[u8; 4]>()) } {
            addr[..4].copy_from_slice(&a);
        }
    } else {
        // SAFETY: as above; sin6_addr at offset 8.
        addr = unsafe { bpf_probe_read_user(sa.add(8).cast::<[u8; 16]>()) }.unwrap_or([0; 16]);
    }
    emit(LOCAL_BIND, family, port, addr);
    0
}

/// A socket bound to a cluster port (cgroup route: after the bind succeeded, in the
/// binder's context). Never refuses a bind.
#[inline(always)]
fn post_bind(ctx: &SockContext, family: u16) {
    let sk = ctx.sock;
    // SAFETY: context fields read with 4-byte loads at their own offsets.
    let port = unsafe { core::ptr::read_volatile(&(*sk).src_port) } as u16;
    // SAFETY: map lookup, presence only.
    if unsafe { COROSYNC_PORTS.get(&port) }.is_none() {
        return;
    }
    let mut addr = [0u8; 16];
    // SAFETY: as above.
    unsafe {
        if family == AF_INET {
            let a = core::ptr::read_volatile(&(*sk).src_ip4);
            addr[..4].copy_from_slice(&a.to_ne_bytes());
        } else {
            for i in 0..4 {
                let w = core::ptr::read_volatile(&(*sk).src_ip6[i]);
                addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
        }
    }
    emit(LOCAL_BIND, family, port, addr);
}

#[cgroup_sock(post_bind4)]
pub fn corosync_post_bind4(ctx: SockContext) -> i32 {
    post_bind(&ctx, AF_INET);
    1
}

#[cgroup_sock(post_bind6)]
pub fn corosync_post_bind6(ctx: SockContext) -> i32 {
    post_bind(&ctx, AF_INET6);
    1
}
