//! Maps and helpers shared by every detector's programs.

use agent_common::{
    event::EventHeader,
    maps,
    offsets::{KernelOffsets, OFFSET_ABSENT},
    proc::{ProcCtx, UNSET_ID},
    stats,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel,
    },
    macros::map,
    maps::{PerCpuArray, RingBuf},
};

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(maps::EVENTS_BYTES, 0);

#[map(name = "STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stats::SLOTS, 0);

#[map(name = "MAP_FULL")]
pub static MAP_FULL: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(maps::MAP_FULL_NAMES.len() as u32, 0);

/// Count a failed insert into the counting map of `slot` (maps::MAP_FULL_*).
#[inline(always)]
pub fn map_full(slot: u32) {
    if let Some(p) = MAP_FULL.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot: no other writer runs on this CPU while we hold it.
        unsafe { *p += 1 };
    }
}

/// Written by userspace before load from the running kernel's BTF.
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets::ABSENT;

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: a plain read of a global that userspace fixed at load time; volatile so
    // the compiler does not fold the ABSENT initialiser into the code.
    unsafe { core::ptr::read_volatile(&KERNEL_OFFSETS) }
}

/// Count one occurrence of `counter` for records of `kind`.
#[inline(always)]
pub fn count(kind: u16, counter: u32) {
    if let Some(p) = STATS.get_ptr_mut(stats::slot(kind, counter)) {
        // SAFETY: per-CPU slot: no other writer runs on this CPU while we hold it.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn header(kind: u16, len: usize) -> EventHeader {
    // SAFETY: helper without preconditions.
    EventHeader::new(kind, len, unsafe { bpf_ktime_get_boot_ns() })
}

/// Read a kernel value at `base + off`; `None` if the offset is absent or the read fails.
#[inline(always)]
pub unsafe fn read_at<T>(base: *const u8, off: u32) -> Option<T> {
    if off == OFFSET_ABSENT || base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel tolerates any address and reports failure.
    unsafe { bpf_probe_read_kernel(base.add(off as usize).cast::<T>()).ok() }
}

/// Fill the process context of the current task. Read failures are counted against
/// `kind` and leave the field at its "unknown" value.
#[inline(always)]
pub fn fill_proc(p: &mut ProcCtx, kind: u16) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    p.pid = (pid_tgid >> 32) as u32;
    p.tid = pid_tgid as u32;
    p.uid = uid_gid as u32;
    p.gid = (uid_gid >> 32) as u32;
    p.flags = 0;
    // SAFETY: helper without preconditions.
    p.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    p.comm = bpf_get_current_comm().unwrap_or([0; 16]);

    let off = offsets();
    // SAFETY: helper without preconditions; the pointer is only used through probe reads.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: probe reads through read_at tolerate any address.
    let parent: Option<*const u8> = unsafe { read_at(task, off.task_real_parent) };
    // SAFETY: as above.
    p.ppid = match parent.and_then(|parent| unsafe { read_at::<u32>(parent, off.task_tgid) }) {
        Some(v) => v,
        None => {
            count(kind, stats::READ_ERROR);
            0
        }
    };
    // SAFETY: as above.
    p.loginuid = match unsafe { read_at::<u32>(task, off.task_loginuid) } {
        Some(v) => v,
        None => {
            p.flags |= agent_common::proc::PROC_LOGINUID_UNKNOWN;
            UNSET_ID
        }
    };
    // SAFETY: as above.
    p.sessionid = unsafe { read_at::<u32>(task, off.task_sessionid) }.unwrap_or(UNSET_ID);
    p.origin = crate::session::current_origin().unwrap_or_default();
}

/// The current task's argument block (`mm->arg_start`, length), if readable.
#[inline(always)]
pub fn arg_block() -> Option<(u64, u64)> {
    let off = offsets();
    // SAFETY: helper without preconditions; the pointer is only used through probe reads.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: probe reads through read_at tolerate any address.
    let mm: *const u8 = unsafe { read_at(task, off.task_mm) }?;
    // SAFETY: as above.
    let start: u64 = unsafe { read_at(mm, off.mm_arg_start) }?;
    // SAFETY: as above.
    let end: u64 = unsafe { read_at(mm, off.mm_arg_end) }?;
    (end > start).then_some((start, end - start))
}

/// Copy the current task's argument block (NUL-separated argv) into `dst`; returns the
/// bytes copied and whether argv was longer. `N` must be a power of two.
#[inline(always)]
pub fn read_args<const N: usize>(dst: &mut [u8; N]) -> Option<(u32, bool)> {
    let (start, len) = arg_block()?;
    let truncated = len > N as u64;
    let n = (if truncated { N as u64 } else { len }) as u32 & (N as u32 * 2 - 1);
    let n = if n > N as u32 { N as u32 } else { n };
    // SAFETY: user memory read through the checked helper into a buffer of at least n
    // bytes (n <= N, bounded for the verifier above).
    let r = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            dst.as_mut_ptr().cast(),
            n,
            start as *const aya_ebpf::cty::c_void,
        )
    };
    (r == 0).then_some((n, truncated))
}

/// Add one to a per-CPU hash map counter, creating it at 1.
macro_rules! percpu_inc {
    ($map:expr, $key:expr, $full_slot:expr) => {
        match $map.get_ptr_mut($key) {
            // SAFETY: a per-CPU value: no other writer on this CPU while we run.
            Some(p) => unsafe { *p += 1 },
            None => {
                if $map.insert($key, &1, 0).is_err() {
                    $crate::common::map_full($full_slot);
                }
            }
        }
    };
}
pub(crate) use percpu_inc;
