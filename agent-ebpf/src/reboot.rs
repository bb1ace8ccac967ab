//! `reboot` detector, kernel side: reboot(2), kexec_load(2), kexec_file_load(2) (from
//! the CAP_SYS_BOOT check, or the syscall tracepoints as the fallback route) and exec of
//! watched binaries (the reboot family, systemctl, telinit, kexec, D-Bus tools).

use agent_common::{
    event::kind,
    maps::{self, ExecWatchKey},
    reboot::{
        ANCESTORS, Ancestor, EXEC_ARGS_TRUNCATED, EXEC_ARGS_UNREADABLE, EXEC_GUARD_BLOCKED,
        EXEC_GUARD_WOULD_BLOCK, ExecEvent, GUARD_DRY_RUN, GUARD_ENFORCE, GUARD_OFF,
        KEXEC_FILE_LOAD, KEXEC_LOAD, KexecEvent, REBOOT_ALLOWED_CAPACITY, RebootSyscallEvent,
        SYSRQ_PATH, SysrqOpenEvent,
        argv::{
            ARGV_ARG_LEN, ARGV_MAX_ARGS, ARGV_RULES_CAPACITY, ARGV_WORD_LEN, ArgvScan, ArgvWordKey,
            class_rule,
        },
    },
    session::{AF_INET, ORIGIN_SSH, Origin},
    stats,
};
use aya_ebpf::{
    EbpfContext,
    cty::c_void,
    helpers::{
        bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
        generated as raw,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::common::{EVENTS, arg_block, count, fill_proc, header, offsets, read_at};

#[map(name = "EXEC_WATCH")]
static EXEC_WATCH: HashMap<ExecWatchKey, u32> =
    HashMap::with_max_entries(maps::EXEC_WATCH_CAPACITY, 0);

#[map(name = "REBOOT_GUARD")]
static REBOOT_GUARD: Array<u32> = Array::with_max_entries(1, 0);

#[map(name = "REBOOT_ALLOWED")]
static REBOOT_ALLOWED: LpmTrie<[u8; 16], u32> =
    LpmTrie::with_max_entries(REBOOT_ALLOWED_CAPACITY, 0);

#[map(name = "ARGV_RULES")]
static ARGV_RULES: HashMap<ArgvWordKey, u32> = HashMap::with_max_entries(ARGV_RULES_CAPACITY, 0);

/// One argument at a time, for the guard's reading of argv.
#[map(name = "ARGV_SCRATCH")]
static ARGV_SCRATCH: PerCpuArray<[u8; ARGV_ARG_LEN]> = PerCpuArray::with_max_entries(1, 0);

/// The guard's walk over argv, one `bpf_loop` step per argument (the verifier checks
/// a step once instead of every path through sixteen arguments).
#[repr(C)]
struct ArgvWalk {
    /// The argument block in user memory, its length, and the next argument's offset.
    start: u64,
    len: u64,
    off: u64,
    class: u32,
    /// The class's words are member names (the part after the last dot).
    member: u32,
    scan: ArgvScan,
}

/// Whether the current task's argv asks for a reboot, read with the word table
/// userspace put in `ARGV_RULES`. The reading is the one of
/// `agent_common::reboot::argv::word_key` and [`ArgvScan`], which userspace applies to
/// the reported argv: every index is computed on user addresses or bounded constants,
/// so the verifier never needs a per-byte path. An unreadable argv is counted and lets
/// the command run.
#[inline(always)]
fn argv_reboots(class: u32) -> bool {
    let class_key = ArgvWordKey {
        class,
        word: [0; ARGV_WORD_LEN],
    };
    // SAFETY: map lookup, value copied.
    let class_bits = unsafe { ARGV_RULES.get(&class_key) }.copied().unwrap_or(0);
    let Some((start, len)) = arg_block() else {
        count(kind::EXEC, stats::READ_ERROR);
        return false;
    };
    let mut walk = ArgvWalk {
        start,
        len,
        off: 0,
        class,
        member: class_bits & class_rule::MEMBER_WORDS,
        scan: ArgvScan::default(),
    };
    // SAFETY: bpf_loop calls `argv_step` with a pointer to `walk`, which outlives it.
    unsafe {
        raw::bpf_loop(
            ARGV_MAX_ARGS as u32 + 1,
            argv_step as *mut c_void,
            (&mut walk as *mut ArgvWalk).cast(),
            0,
        )
    };
    walk.scan.reboots(class_bits)
}

/// One argument: read it, derive its word key, feed the word's bits. Returns 1 to stop.
extern "C" fn argv_step(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes the `ArgvWalk` given by `argv_reboots`.
    let w = unsafe { &mut *ctx.cast::<ArgvWalk>() };
    if w.off >= w.len {
        return 1;
    }
    let Some(buf) = ARGV_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let addr = w.start + w.off;
    // SAFETY: user memory read through the checked helper into the per-CPU buffer of
    // exactly ARGV_ARG_LEN bytes.
    let n = unsafe {
        raw::bpf_probe_read_user_str(buf.cast(), ARGV_ARG_LEN as u32, addr as *const c_void)
    };
    if n <= 0 || n as usize >= ARGV_ARG_LEN {
        return 1;
    }
    w.off += n as u64;
    if index == 0 {
        return 0; // argv[0]
    }
    // SAFETY: the per-CPU buffer, ours alone while this program runs.
    let b = unsafe { &*buf };
    let arg_len = (n - 1) as usize;
    let mut key = ArgvWordKey {
        class: w.class,
        word: [0; ARGV_WORD_LEN],
    };
    if w.member != 0 {
        // After the last dot: found here, read again from user memory at that offset.
        let mut from = 0u64;
        let mut j = 0usize;
        while j < ARGV_ARG_LEN - 1 {
            if j >= arg_len {
                break;
            }
            if b[j] == b'.' {
                from = j as u64 + 1;
            }
            j += 1;
        }
        let mut tmp = [0u8; ARGV_WORD_LEN + 8];
        // SAFETY: user memory read through the checked helper into a local buffer
        // larger than the size given.
        unsafe {
            raw::bpf_probe_read_user_str(
                tmp.as_mut_ptr().cast(),
                ARGV_WORD_LEN as u32 + 1,
                (addr + from) as *const c_void,
            )
        };
        key.word.copy_from_slice(&tmp[..ARGV_WORD_LEN]);
    } else {
        // An option is cut after its first `=` (`--host=x` → `--host=`).
        let mut end = ARGV_WORD_LEN;
        if b[0] == b'-' {
            let mut j = 0usize;
            while j < ARGV_WORD_LEN {
                if b[j] == b'=' {
                    end = j + 1;
                    break;
                }
                j += 1;
            }
        }
        let mut k = 0usize;
        while k < ARGV_WORD_LEN {
            if k < end && k < arg_len {
                key.word[k] = b[k];
            }
            k += 1;
        }
    }
    // SAFETY: map lookup, value copied.
    let bits = unsafe { ARGV_RULES.get(&key) }.copied().unwrap_or(0);
    w.scan.feed(
        bits,
        b[0] == b'-',
        arg_len == 2 && b[0] == b'-' && b[1] == b'-',
    );
    0
}

/// Guard decision for an exec of a watched command by a task of this origin: 0 (let it run),
/// or the flag to set on the record.
#[inline(always)]
fn guard_verdict(class: u32, origin: &Origin) -> u32 {
    let mode = REBOOT_GUARD.get(0).copied().unwrap_or(GUARD_OFF);
    if mode == GUARD_OFF || origin.kind != ORIGIN_SSH {
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
    // Only a command line that reboots (`systemctl reboot`, not `systemctl status`).
    if !argv_reboots(class) {
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
// cap_capable's TP_PROTO(cred, target_ns, capable_ns, int cap, int ret): cap is
// argument 3.
const CAP_ARG: usize = 3;

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

// A raw tracepoint: it runs on every capability check of the host (about nine per
// fork+exec), so it reads its argument directly and costs about half a classic one.
#[raw_tracepoint(tracepoint = "cap_capable")]
pub fn reboot_capable(ctx: RawTracePointContext) -> u32 {
    if ctx.arg::<u64>(CAP_ARG) as i32 != CAP_SYS_BOOT {
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

/// A watched binary was executed (part of the one sched_process_exec program,
/// `exec::exec_sched`). The kernel has just set comm to the basename of the executed
/// path: that is the watch key, so no path parsing is needed here.
#[inline(always)]
pub(crate) fn on_exec(ctx: &TracePointContext, comm: [u8; 16]) {
    let key = ExecWatchKey { name: comm };
    // SAFETY: plain map lookup; the value is copied out immediately.
    let Some(class) = (unsafe { EXEC_WATCH.get(&key) }).copied() else {
        return;
    };
    // The guard decides before anything else: the kill must not depend on the ring
    // buffer having room.
    let origin = crate::session::current_origin().unwrap_or_default();
    let verdict = guard_verdict(class, &origin);
    if verdict == EXEC_GUARD_BLOCKED {
        // SAFETY: SIGKILL to the current task, which matched the guard.
        unsafe { aya_ebpf::helpers::generated::bpf_send_signal(9) };
    }
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count(kind::EXEC, stats::RINGBUF_FULL);
        return;
    };
    let ev = entry.as_mut_ptr();
    // sched_process_exec: `__data_loc char[] filename` at offset 8 (u32: length << 16
    // | offset), read directly from the context.
    // SAFETY: tracepoint contexts are readable directly within the record; 8 is inside
    // sched_process_exec's (checked against tracefs by `nodeward check`).
    let loc = unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(8).cast::<u32>()) };
    // SAFETY: ev points into a reserved ring-buffer slot of exactly this type; every
    // field is written before submit (the byte arrays by the read helpers, which
    // zero-fill on failure, or explicitly).
    unsafe {
        (*ev).header = header(kind::EXEC, core::mem::size_of::<ExecEvent>());
        fill_proc(&mut (*ev).proc, kind::EXEC);
        (*ev).class = class;
        (*ev)._pad0 = 0;
        (*ev).flags = verdict;
        let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
        if bpf_probe_read_kernel_str_bytes(src, &mut (*ev).filename).is_err() {
            (*ev).filename[0] = 0;
            count(kind::EXEC, stats::READ_ERROR);
        }
        ancestors(&mut (*ev).ancestors);
        (*ev).args_len = 0;
        match crate::common::read_args(&mut (*ev).args) {
            Some((n, truncated)) => {
                (*ev).args_len = n;
                if truncated {
                    (*ev).flags |= EXEC_ARGS_TRUNCATED;
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
}

/// The current task's parent, grandparent, … (nearest first) with their comms, up to
/// pid 1; entries past the walk's end are zero (where an unreadable comm ended it, that
/// entry has its pid and an empty comm, which ends userspace's lineage there too).
#[inline(always)]
fn ancestors(out: &mut [Ancestor; ANCESTORS]) {
    for a in out.iter_mut() {
        *a = Ancestor::default();
    }
    let off = offsets();
    // SAFETY: helper without preconditions; the pointer is only used through probe reads.
    let mut task = unsafe { bpf_get_current_task() } as *const u8;
    for a in out.iter_mut() {
        // SAFETY: probe reads through read_at tolerate any address.
        let Some(parent) = (unsafe { read_at::<*const u8>(task, off.task_real_parent) }) else {
            count(kind::EXEC, stats::READ_ERROR);
            return;
        };
        if parent.is_null() || parent == task {
            return;
        }
        // SAFETY: as above.
        let Some(pid) = (unsafe { read_at::<u32>(parent, off.task_tgid) }) else {
            count(kind::EXEC, stats::READ_ERROR);
            return;
        };
        if pid == 0 {
            return;
        }
        a.pid = pid;
        // An unreadable comm stays empty and ends the walk (userspace's lineage ends at
        // an empty comm).
        // SAFETY: as above.
        let Some(comm) = (unsafe { read_at::<[u8; 16]>(parent, off.task_comm) }) else {
            count(kind::EXEC, stats::READ_ERROR);
            return;
        };
        a.comm = comm;
        if pid == 1 {
            return;
        }
        task = parent;
    }
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
