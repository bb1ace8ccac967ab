//! Quarantine enforcement: packet drops at TC ingress (in the packet program,
//! `net::net_tc`, on the interfaces a quarantine names) and kill-on-exec. Only entries
//! the agent's engine inserted (after its safeguards) are acted on, and every entry
//! expires on its own (checked here, on the boot clock).

use agent_common::{
    event::kind,
    quarantine::{
        ArpClaimKey, BlockExecKey, ExecBlockedEvent, MacKey, QSTAT_DROP_ARP, QSTAT_DROP_MAC,
        QSTAT_DROP_V4, QSTAT_DROP_V6, QSTAT_EXEC_KILLED, QSTAT_EXPIRED_SEEN, QSTAT_SIGNAL_ERROR,
        QSTAT_SLOTS, RULES_CAPACITY, Rule,
    },
    stats,
};
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns, generated::bpf_send_signal},
    macros::{lsm, map},
    maps::{Array, HashMap, PerCpuArray},
    programs::{LsmContext, TcContext},
};

use crate::{
    common::{EVENTS, count, fill_proc, header, offsets, read_at},
    frame,
};

#[map(name = "BLOCK_EXEC")]
static BLOCK_EXEC: HashMap<BlockExecKey, Rule> = HashMap::with_max_entries(RULES_CAPACITY, 0);
#[map(name = "DROP_V4")]
static DROP_V4: HashMap<[u8; 4], Rule> = HashMap::with_max_entries(RULES_CAPACITY, 0);
#[map(name = "DROP_V6")]
static DROP_V6: HashMap<[u8; 16], Rule> = HashMap::with_max_entries(RULES_CAPACITY, 0);
#[map(name = "DROP_MAC")]
static DROP_MAC: HashMap<MacKey, Rule> = HashMap::with_max_entries(RULES_CAPACITY, 0);
#[map(name = "DROP_ARP")]
static DROP_ARP: HashMap<ArpClaimKey, Rule> = HashMap::with_max_entries(RULES_CAPACITY, 0);
/// How many `BLOCK_EXEC` entries exist (set by userspace): exec looks rules up only
/// when there is one.
#[map(name = "EXEC_BLOCKS")]
static EXEC_BLOCKS: Array<u32> = Array::with_max_entries(1, 0);
#[map(name = "QSTATS")]
static QSTATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(QSTAT_SLOTS, 0);

const SIGKILL: u32 = 9;

#[inline(always)]
pub(crate) fn qcount(slot: u32) {
    if let Some(p) = QSTATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

/// Whether `rule` is in force now; counts an expired one.
#[inline(always)]
pub(crate) fn in_force(rule: Option<&Rule>) -> Option<u64> {
    let rule = rule?;
    // SAFETY: helper without preconditions.
    if rule.active(unsafe { bpf_ktime_get_boot_ns() }) {
        Some(rule.id)
    } else {
        qcount(QSTAT_EXPIRED_SEEN);
        None
    }
}

/// Kill-on-exec fallback backend (part of the one sched_process_exec program,
/// `exec::exec_sched`): at sched_process_exec the new image is loaded but has not run
/// a single instruction; SIGKILL is delivered before the return to user space. The
/// comm is the new image's basename; the rule may be scoped to a cgroup. No lookup
/// while no block rule exists. Returns whether the task was killed.
#[inline(always)]
pub(crate) fn on_exec(comm: [u8; 16]) -> bool {
    if EXEC_BLOCKS.get(0).copied().unwrap_or(0) == 0 {
        return false;
    }
    let Some(id) = blocked(comm) else {
        return false;
    };
    // SAFETY: sends SIGKILL to the current task, which is the one that matched.
    let sent = unsafe { bpf_send_signal(SIGKILL) };
    qcount(if sent == 0 {
        QSTAT_EXEC_KILLED
    } else {
        QSTAT_SIGNAL_ERROR
    });
    report(id, sent);
    sent == 0
}

/// The rule in force for an exec of `name` (a basename, NUL-padded) in the current
/// cgroup, scoped first, then any-cgroup.
#[inline(always)]
fn blocked(comm: [u8; 16]) -> Option<u64> {
    // SAFETY: helper without preconditions.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: lookups copy nothing out beyond the borrowed value used at once.
    let scoped = in_force(unsafe { BLOCK_EXEC.get(&BlockExecKey { comm, cgroup_id }) });
    // SAFETY: as above.
    scoped.or_else(|| in_force(unsafe { BLOCK_EXEC.get(&BlockExecKey { comm, cgroup_id: 0 }) }))
}

/// Report an enforced block (`result`: 0 = SIGKILL sent, -1 = denied by LSM, else the
/// helper's error).
#[inline(always)]
fn report(id: u64, sent: i64) {
    let Some(mut entry) = EVENTS.reserve::<ExecBlockedEvent>(0) else {
        count(kind::EXEC_BLOCKED, stats::RINGBUF_FULL);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: a reserved slot of exactly this type; every field written before submit.
    unsafe {
        (*ev).header = header(kind::EXEC_BLOCKED, core::mem::size_of::<ExecBlockedEvent>());
        fill_proc(&mut (*ev).proc, kind::EXEC_BLOCKED);
        (*ev).rule_id = id;
        (*ev).signal_result = sent;
    }
    entry.submit(0);
    count(kind::EXEC_BLOCKED, stats::SUBMITTED);
}

const EPERM: i32 = 1;

/// BPF LSM backend (kernels that load BPF LSM programs): deny the exec in
/// bprm_check_security, before the new image is loaded. The basename comes from
/// bprm->file->f_path.dentry->d_name (the comm is still the old one here).
#[lsm(hook = "bprm_check_security")]
pub fn quarantine_lsm_exec(ctx: LsmContext) -> i32 {
    // Argument 1 of the hook program is the previous LSM's return value.
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    // Argument 0 is the struct linux_binprm pointer; only probe reads follow.
    let bprm: *const u8 = ctx.arg(0);
    let off = offsets();
    // SAFETY: probe reads through read_at tolerate any address.
    let name = unsafe {
        read_at::<*const u8>(bprm, off.binprm_file)
            .and_then(|file| read_at::<*const u8>(file, off.file_dentry))
            .and_then(|dentry| read_at::<*const u8>(dentry, off.dentry_name))
    };
    let Some(name) = name else { return 0 };
    let mut comm = [0u8; 16];
    // SAFETY: kernel string read through the checked helper into a zeroed buffer, so
    // the key is NUL-padded like a comm (and truncated to 15 bytes like one).
    if unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(name, &mut comm[..15]) }.is_err()
    {
        return 0;
    }
    match blocked(comm) {
        Some(id) => {
            qcount(QSTAT_EXEC_KILLED);
            report(id, -1);
            -EPERM
        }
        None => 0,
    }
}

/// A frame on an interface a quarantine names: the slot to count when it comes from a
/// quarantined source (MAC, IPv4, IPv6, or an ARP claim of an IP by a MAC) and must be
/// dropped. Called by the packet program (`net::net_tc`) before anything else.
#[inline(always)]
pub fn drop_slot(ctx: &TcContext) -> Option<u32> {
    let slot = decide(ctx)?;
    qcount(slot);
    Some(slot)
}

#[inline(always)]
fn decide(ctx: &TcContext) -> Option<u32> {
    let pkt = frame::Packet::of(ctx);
    let src = frame::source_mac(&pkt)?;
    // SAFETY: map lookup, value used at once.
    if in_force(unsafe {
        DROP_MAC.get(&MacKey {
            mac: src,
            _pad: [0; 2],
        })
    })
    .is_some()
    {
        return Some(QSTAT_DROP_MAC);
    }
    let eth = frame::ethernet(ctx, &pkt)?;
    let l3 = eth.l3;
    match eth.proto {
        frame::ETH_P_ARP => {
            // Ethernet/IPv4 ARP: sender hardware address at +8, sender protocol at +14.
            let mac: [u8; 6] = pkt.read(l3 + 8)?;
            let ip: [u8; 4] = pkt.read(l3 + 14)?;
            // SAFETY: as above.
            if in_force(unsafe {
                DROP_ARP.get(&ArpClaimKey {
                    ip,
                    mac,
                    _pad: [0; 2],
                })
            })
            .is_some()
            {
                return Some(QSTAT_DROP_ARP);
            }
            // SAFETY: as above.
            in_force(unsafe { DROP_V4.get(&ip) }).map(|_| QSTAT_DROP_V4)
        }
        frame::ETH_P_IP => {
            let saddr = frame::ipv4_saddr(&pkt, l3)?;
            // SAFETY: as above.
            in_force(unsafe { DROP_V4.get(&saddr) }).map(|_| QSTAT_DROP_V4)
        }
        frame::ETH_P_IPV6 => {
            let saddr = frame::ipv6_saddr(&pkt, l3)?;
            // SAFETY: as above.
            in_force(unsafe { DROP_V6.get(&saddr) }).map(|_| QSTAT_DROP_V6)
        }
        _ => None,
    }
}
