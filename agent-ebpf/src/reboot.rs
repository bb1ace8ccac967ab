//! `reboot` detector, kernel side: reboot(2), kexec_load(2), kexec_file_load(2) (from
//! the CAP_SYS_BOOT check, or the syscall tracepoints as the fallback route) and exec of
//! watched binaries (the reboot family, systemctl, telinit, kexec, D-Bus tools).

use agent_common::{
    event::kind,
    maps::{self, ExecWatchKey},
    reboot::{
        ARGS_LEN, EXEC_ARGS_TRUNCATED, EXEC_ARGS_UNREADABLE, EXEC_GUARD_BLOCKED,
        EXEC_GUARD_WOULD_BLOCK, ExecEvent, GUARD_DRY_RUN, GUARD_ENFORCE, GUARD_OFF,
        KEXEC_FILE_LOAD, KEXEC_LOAD, KexecEvent, REBOOT_ALLOWED_CAPACITY, RebootSyscallEvent,
        SYSRQ_PATH, SysrqOpenEvent, class,
    },
    session::{AF_INET, ORIGIN_SSH, Origin},
    stats,
};
use aya_ebpf::{
    EbpfContext,
    cty::c_void,
    helpers::{
        bpf_get_current_comm, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
        generated as raw,
    },
    macros::{map, tracepoint},
    maps::{Array, HashMap, LpmTrie, lpm_trie::Key},
    programs::TracePointContext,
};

use crate::common::{EVENTS, arg_block, count, fill_proc, header};

#[map(name = "EXEC_WATCH")]
static EXEC_WATCH: HashMap<ExecWatchKey, u32> =
    HashMap::with_max_entries(maps::EXEC_WATCH_CAPACITY, 0);

#[map(name = "REBOOT_GUARD")]
static REBOOT_GUARD: Array<u32> = Array::with_max_entries(1, 0);

#[map(name = "REBOOT_ALLOWED")]
static REBOOT_ALLOWED: LpmTrie<[u8; 16], u32> =
    LpmTrie::with_max_entries(REBOOT_ALLOWED_CAPACITY, 0);

/// Guard decision for a reboot-family exec by a task of this origin: 0 (let it run),
/// or the flag to set on the record.
#[inline(always)]
fn guard_verdict(class: u32, origin: &Origin) -> u32 {
    let mode = REBOOT_GUARD.get(0).copied().unwrap_or(GUARD_OFF);
    if mode == GUARD_OFF || class != class::POWER || origin.kind != ORIGIN_SSH {
        return 0;
    }
    let mut addr = origin.peer_addr;
    if origin.family == AF_INET {
        // IPv4-mapped IPv6, so one trie holds both families.
        addr = [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3],
        ];
    }
    if REBOOT_ALLOWED.get(&Key::new(128, addr)).is_some() {
        return 0;
    }
    if mode == GUARD_ENFORCE {
        EXEC_GUARD_BLOCKED
    } else if mode == GUARD_DRY_RUN {
        EXEC_GUARD_WOULD_BLOCK
    } else {
        0
    }
}

// syscalls:sys_enter_* layout: 8 bytes common fields, __syscall_nr, then 8-byte args
// from offset 16 (stable tracepoint ABI; checked against tracefs by `nodeward check`).
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const ARG3: usize = 40;
const ARG4: usize = 48;

#[tracepoint(category = "syscalls", name = "sys_enter_reboot")]
pub fn reboot_sys_enter(ctx: TracePointContext) -> u32 {
    // SAFETY: tracepoint context reads through the checked helper.
    let arg = |at: usize| unsafe { ctx.read_at::<u64>(at) }.unwrap_or(0);
    reboot_event(arg(ARG0), arg(ARG1), arg(ARG2))
}

/// reboot(2) entered, with its arguments (magic1, magic2, cmd).
#[inline(always)]
fn reboot_event(magic1: u64, magic2: u64, cmd: u64) -> u32 {
    let Some(mut entry) = EVENTS.reserve::<RebootSyscallEvent>(0) else {
        count(kind::REBOOT_SYSCALL, stats::RINGBUF_FULL);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: ev points into a reserved ring-buffer slot of exactly this type; every
    // field is written before submit.
    unsafe {
        (*ev).header = header(
            kind::REBOOT_SYSCALL,
            core::mem::size_of::<RebootSyscallEvent>(),
        );
        fill_proc(&mut (*ev).proc, kind::REBOOT_SYSCALL);
        (*ev).magic1 = magic1 as u32;
        (*ev).magic2 = magic2 as u32;
        (*ev).cmd = cmd as u32;
        (*ev)._pad0 = 0;
    }
    entry.submit(0);
    count(kind::REBOOT_SYSCALL, stats::SUBMITTED);
    0
}

fn kexec_event(syscall: u32, flags: u64) -> u32 {
    let Some(mut entry) = EVENTS.reserve::<KexecEvent>(0) else {
        count(kind::KEXEC, stats::RINGBUF_FULL);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: a reserved slot of exactly this type; every field written before submit.
    unsafe {
        (*ev).header = header(kind::KEXEC, core::mem::size_of::<KexecEvent>());
        fill_proc(&mut (*ev).proc, kind::KEXEC);
        (*ev).syscall = syscall;
        (*ev)._pad0 = 0;
        (*ev).flags = flags;
    }
    entry.submit(0);
    count(kind::KEXEC, stats::SUBMITTED);
    0
}

fn kexec(ctx: &TracePointContext, syscall: u32, flags_at: usize) -> u32 {
    // SAFETY: tracepoint context read through the checked helper.
    kexec_event(
        syscall,
        unsafe { ctx.read_at::<u64>(flags_at) }.unwrap_or(0),
    )
}

#[tracepoint(category = "syscalls", name = "sys_enter_kexec_load")]
pub fn reboot_kexec_load(ctx: TracePointContext) -> u32 {
    // kexec_load(entry, nr_segments, segments, flags)
    kexec(&ctx, KEXEC_LOAD, ARG3)
}

#[tracepoint(category = "syscalls", name = "sys_enter_kexec_file_load")]
pub fn reboot_kexec_file_load(ctx: TracePointContext) -> u32 {
    // kexec_file_load(kernel_fd, initrd_fd, cmdline_len, cmdline, flags)
    kexec(&ctx, KEXEC_FILE_LOAD, ARG4)
}

// The capability route: reboot(2) and kexec check CAP_SYS_BOOT before anything else
// (before the magic numbers), in the caller's context. The syscall and its arguments
// are read from the task's saved registers, so no syscall tracepoint is needed.
const CAP_SYS_BOOT: i32 = 22;
// capability:cap_capable: cap @32, ret @36 (checked against tracefs by `nodeward check`).
const CAP_AT: usize = 32;

/// x86_64 `struct pt_regs`: offsets of the syscall number and the first five
/// arguments, and the syscall numbers (userspace offers this route on x86_64 only).
mod regs {
    pub const NR: usize = 120; // orig_ax
    pub const ARGS: [usize; 5] = [112, 104, 96, 56, 72]; // di, si, dx, r10, r8
    pub const REBOOT: u64 = 169;
    pub const KEXEC_LOAD: u64 = 246;
    pub const KEXEC_FILE_LOAD: u64 = 320;
}

#[inline(always)]
fn reg(regs: *const u8, off: usize) -> u64 {
    // SAFETY: kernel memory read through the checked helper (fails cleanly).
    unsafe { bpf_probe_read_kernel(regs.wrapping_add(off).cast::<u64>()) }.unwrap_or(0)
}

#[tracepoint(category = "capability", name = "cap_capable")]
pub fn reboot_capable(ctx: TracePointContext) -> u32 {
    // SAFETY: tracepoint context read through the checked helper.
    if unsafe { ctx.read_at::<i32>(CAP_AT) } != Ok(CAP_SYS_BOOT) {
        return 0;
    }
    // SAFETY: helpers without preconditions; the registers are only read through
    // bpf_probe_read_kernel.
    let regs = unsafe { raw::bpf_task_pt_regs(raw::bpf_get_current_task_btf()) } as *const u8;
    let nr = reg(regs, regs::NR);
    if nr == regs::REBOOT {
        reboot_event(
            reg(regs, regs::ARGS[0]),
            reg(regs, regs::ARGS[1]),
            reg(regs, regs::ARGS[2]),
        );
    } else if nr == regs::KEXEC_LOAD {
        // kexec_load(entry, nr_segments, segments, flags)
        kexec_event(KEXEC_LOAD, reg(regs, regs::ARGS[3]));
    } else if nr == regs::KEXEC_FILE_LOAD {
        // kexec_file_load(kernel_fd, initrd_fd, cmdline_len, cmdline, flags)
        kexec_event(KEXEC_FILE_LOAD, reg(regs, regs::ARGS[4]));
    }
    0
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn reboot_sched_exec(ctx: TracePointContext) -> u32 {
    // The kernel has just set comm to the basename of the executed path: that is the
    // watch key, so no path parsing is needed here.
    let Ok(comm) = bpf_get_current_comm() else {
        return 0;
    };
    let key = ExecWatchKey { name: comm };
    // SAFETY: plain map lookup; the value is copied out immediately.
    let Some(class) = (unsafe { EXEC_WATCH.get(&key) }).copied() else {
        return 0;
    };
    // The guard decides before anything else: the kill must not depend on the ring
    // buffer having room.
    // SAFETY: map lookup, value copied.
    let origin = match unsafe {
        crate::session::TASK_ORIGIN
            .get(&((aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32))
    } {
        Some(o) => *o,
        None => Origin::default(),
    };
    let verdict = guard_verdict(class, &origin);
    if verdict == EXEC_GUARD_BLOCKED {
        // SAFETY: SIGKILL to the current task, which matched the guard.
        unsafe { aya_ebpf::helpers::generated::bpf_send_signal(9) };
    }
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count(kind::EXEC, stats::RINGBUF_FULL);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: ev points into a reserved ring-buffer slot of exactly this type; every
    // field is written before submit (the byte arrays by the read helpers, which
    // zero-fill on failure, or explicitly).
    unsafe {
        (*ev).header = header(kind::EXEC, core::mem::size_of::<ExecEvent>());
        fill_proc(&mut (*ev).proc, kind::EXEC);
        (*ev).class = class;
        (*ev)._pad0 = 0;
        (*ev).flags = verdict;
        // sched_process_exec: `__data_loc char[] filename` at offset 8 (u32: length << 16 | offset).
        let loc: u32 = ctx.read_at::<u32>(8).unwrap_or(0);
        let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
        if bpf_probe_read_kernel_str_bytes(src, &mut (*ev).filename).is_err() {
            (*ev).filename[0] = 0;
            count(kind::EXEC, stats::READ_ERROR);
        }
        (*ev).args_len = 0;
        match arg_block() {
            Some((start, len)) => {
                let n = if len > ARGS_LEN as u64 {
                    ARGS_LEN as u64
                } else {
                    len
                };
                if len > ARGS_LEN as u64 {
                    (*ev).flags |= EXEC_ARGS_TRUNCATED;
                }
                let n = n as u32 & (ARGS_LEN as u32 * 2 - 1);
                let n = if n > ARGS_LEN as u32 {
                    ARGS_LEN as u32
                } else {
                    n
                };
                let dst = (*ev).args.as_mut_ptr();
                if raw::bpf_probe_read_user(dst.cast(), n, start as *const c_void) == 0 {
                    (*ev).args_len = n;
                } else {
                    (*ev).flags |= EXEC_ARGS_UNREADABLE;
                    count(kind::EXEC, stats::READ_ERROR);
                }
            }
            None => {
                (*ev).flags |= EXEC_ARGS_UNREADABLE;
                count(kind::EXEC, stats::READ_ERROR);
            }
        }
    }
    entry.submit(0);
    count(kind::EXEC, stats::SUBMITTED);
    0
}

const O_ACCMODE: u64 = 3;

/// /proc/sysrq-trigger opened for writing: compare the first 20 bytes of the path.
fn sysrq_open(ctx: &TracePointContext, syscall: u32) -> u32 {
    // openat/openat2(dfd, filename @24, ...)
    // SAFETY: tracepoint context read through the checked helper.
    let Ok(ptr) = (unsafe { ctx.read_at::<u64>(24) }) else {
        return 0;
    };
    let flags = if syscall == 1 {
        // SAFETY: as above.
        unsafe { ctx.read_at::<u64>(32) }.unwrap_or(0)
    } else {
        // openat2: struct open_how { u64 flags; ... } in user memory.
        // SAFETY: as above.
        let how = unsafe { ctx.read_at::<u64>(32) }.unwrap_or(0);
        // SAFETY: as above.
        unsafe { aya_ebpf::helpers::bpf_probe_read_user(how as *const u64) }.unwrap_or(0)
    };
    if flags & O_ACCMODE == 0 {
        return 0; // read-only: harmless
    }
    // Only writable opens get here: the path is read for those alone.
    let mut name = [0u8; 20];
    // SAFETY: user pointer read through the checked helper (fails cleanly on a bad pointer).
    if unsafe { aya_ebpf::helpers::bpf_probe_read_user_str_bytes(ptr as *const u8, &mut name) }
        .is_err()
    {
        return 0;
    }
    if &name != SYSRQ_PATH {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<SysrqOpenEvent>(0) else {
        count(kind::SYSRQ_OPEN, stats::RINGBUF_FULL);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: reserved slot of exactly this type; every field written before submit.
    unsafe {
        (*ev).header = header(kind::SYSRQ_OPEN, core::mem::size_of::<SysrqOpenEvent>());
        fill_proc(&mut (*ev).proc, kind::SYSRQ_OPEN);
        (*ev).flags = flags;
        (*ev).syscall = syscall;
        (*ev)._pad0 = 0;
    }
    entry.submit(0);
    count(kind::SYSRQ_OPEN, stats::SUBMITTED);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn reboot_sysrq_openat(ctx: TracePointContext) -> u32 {
    sysrq_open(&ctx, 1)
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn reboot_sysrq_openat2(ctx: TracePointContext) -> u32 {
    sysrq_open(&ctx, 2)
}
