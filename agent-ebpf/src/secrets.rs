//! `secrets` detector, kernel side. At `sys_enter_openat*`: the path, matched exactly
//! or as a file below a watched `dir/*`, is parked per thread. At
//! `sys_exit_openat*`: a parked match is reported with the result; otherwise the opened
//! file's (device, inode) is looked up among the secret files that exist. One event
//! per open; the content is never read.

use agent_common::{
    event::kind,
    secrets::{
        InodeKey, InodeWatch, PATH_LEN, PREFIX_LEN, Pending, SECRET_INODES_CAPACITY,
        SECRET_PATHS_CAPACITY, SECRET_PENDING_CAPACITY, SecretOpenEvent, VIA_INODE, VIA_PATH,
    },
    stats,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes,
    },
    macros::{map, tracepoint},
    maps::{HashMap, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
    programs::TracePointContext,
};
use aya_log_ebpf::debug;

use crate::common::{EVENTS, count, fill_proc, header, offsets, read_args, read_at};

#[map(name = "SECRET_PATHS")]
static SECRET_PATHS: LpmTrie<[u8; PATH_LEN], u32> =
    LpmTrie::with_max_entries(SECRET_PATHS_CAPACITY, 0);
#[map(name = "SECRET_PREFIXES")]
static SECRET_PREFIXES: HashMap<[u8; PREFIX_LEN], u32> =
    HashMap::with_max_entries(SECRET_PATHS_CAPACITY, 0);
#[map(name = "SECRET_INODES")]
static SECRET_INODES: HashMap<InodeKey, InodeWatch> =
    HashMap::with_max_entries(SECRET_INODES_CAPACITY, 0);
#[map(name = "SECRET_PENDING")]
static SECRET_PENDING: LruHashMap<u32, Pending> =
    LruHashMap::with_max_entries(SECRET_PENDING_CAPACITY, 0);
/// Per-CPU scratch: the path read at entry, as a trie key.
#[map(name = "SECRET_SCRATCH")]
static SECRET_SCRATCH: PerCpuArray<Key<[u8; PATH_LEN]>> = PerCpuArray::with_max_entries(1, 0);

/// Which syscall: where its filename and flags are in the tracepoint record.
#[derive(Clone, Copy)]
enum Call {
    /// openat(dfd, filename @24, flags @32)
    OpenAt,
    /// openat2(dfd, filename @24, how @32 -> struct open_how { u64 flags; ... })
    OpenAt2,
    /// open(filename @16, flags @24)
    Open,
    /// creat(pathname @16, mode): O_CREAT | O_WRONLY | O_TRUNC
    Creat,
}

const O_CREAT_WRONLY_TRUNC: u64 = 0o100 | 0o1 | 0o1000;

fn enter(ctx: &TracePointContext, call: Call) -> u32 {
    let at = match call {
        Call::OpenAt | Call::OpenAt2 => 24,
        Call::Open | Call::Creat => 16,
    };
    // SAFETY: tracepoint context reads through the checked helper.
    let Ok(ptr) = (unsafe { ctx.read_at::<u64>(at) }) else {
        return 0;
    };
    // Most opens are of other files: 8 bytes decide that (a failed short read, e.g. at
    // the end of a page, falls through to the full read).
    // SAFETY: user pointer read through the checked helper.
    if let Ok(head) = unsafe { bpf_probe_read_user(ptr as *const [u8; PREFIX_LEN]) }
        // SAFETY: map lookup, presence only.
        && unsafe { SECRET_PREFIXES.get(&head) }.is_none()
    {
        return 0;
    }
    let Some(buf) = SECRET_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: the per-CPU scratch slot is ours for this run.
    let key = unsafe { &mut *buf };
    key.data = [0; PATH_LEN];
    // SAFETY: user pointer read through the checked helper.
    let len = match unsafe {
        bpf_probe_read_user_str_bytes(ptr as *const u8, &mut key.data[..PATH_LEN - 1])
    } {
        Ok(s) => s.len(),
        Err(_) => return 0,
    };
    // The path and its terminating NUL: an exact entry (which includes the NUL) matches
    // only this path; a `dir/` entry matches every path below the directory.
    key.prefix_len = ((len as u32).min(PATH_LEN as u32 - 2) + 1) * 8;
    let Some(path_id) = SECRET_PATHS.get(key).copied() else {
        return 0;
    };
    let flags = match call {
        Call::OpenAt2 => {
            // SAFETY: as above; struct open_how { u64 flags; ... }.
            let how = unsafe { ctx.read_at::<u64>(32) }.unwrap_or(0);
            // SAFETY: as above.
            unsafe { bpf_probe_read_user(how as *const u64) }.unwrap_or(0)
        }
        // SAFETY: as above.
        Call::OpenAt => unsafe { ctx.read_at::<u64>(32) }.unwrap_or(0),
        // SAFETY: as above.
        Call::Open => unsafe { ctx.read_at::<u64>(24) }.unwrap_or(0),
        Call::Creat => O_CREAT_WRONLY_TRUNC,
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    let pending = Pending {
        flags,
        path_id,
        _pad: 0,
        path: key.data,
    };
    if SECRET_PENDING.insert(&tid, &pending, 0).is_err() {
        count(kind::SECRET_OPEN, stats::MAP_FULL);
        debug!(
            ctx,
            "secrets: pending-open table full (tid {}), open not reported", tid
        );
    }
    0
}

/// The `struct file` of the current task's file descriptor `fd` (just returned by
/// open, so within the table), and its (device, inode). Every open of the system
/// passes here: seven probe reads, nothing more.
#[inline(always)]
fn fd_inode(fd: u64) -> Option<(*const u8, InodeKey)> {
    let off = offsets();
    // SAFETY: helper without preconditions; the pointer is only used through probe reads.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    if fd > 1 << 20 {
        return None;
    }
    // SAFETY: probe reads through read_at tolerate any address.
    unsafe {
        let files: *const u8 = read_at(task, off.task_files)?;
        let fdt: *const u8 = read_at(files, off.files_fdt)?;
        let array: *const u8 = read_at(fdt, off.fdt_fd)?;
        let file: *const u8 = read_at(array.add(fd as usize * 8), 0)?;
        let inode: *const u8 = read_at(file, off.file_inode)?;
        let ino: u64 = read_at(inode, off.inode_ino)?;
        let sb: *const u8 = read_at(inode, off.inode_sb)?;
        let dev: u32 = read_at(sb, off.sb_dev)?;
        Some((file, InodeKey { dev, _pad: 0, ino }))
    }
}

fn emit(flags: u64, path_id: u32, via: u32, ret: i64, path: &[u8; PATH_LEN]) {
    let Some(mut entry) = EVENTS.reserve::<SecretOpenEvent>(0) else {
        count(kind::SECRET_OPEN, stats::RINGBUF_FULL);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: a reserved slot of exactly this type; every field written before submit.
    unsafe {
        (*ev).header = header(kind::SECRET_OPEN, core::mem::size_of::<SecretOpenEvent>());
        fill_proc(&mut (*ev).proc, kind::SECRET_OPEN);
        (*ev).flags = flags;
        (*ev).path_id = path_id;
        (*ev).via = via;
        (*ev).ret = ret;
        (*ev).path = *path;
        match read_args(&mut (*ev).args) {
            Some((n, truncated)) => {
                (*ev).args_len = n;
                (*ev).args_truncated = truncated as u32;
            }
            None => {
                (*ev).args_len = 0;
                (*ev).args_truncated = 0;
                count(kind::SECRET_OPEN, stats::READ_ERROR);
            }
        }
    }
    entry.submit(0);
    count(kind::SECRET_OPEN, stats::SUBMITTED);
}

fn exit(ctx: &TracePointContext) -> u32 {
    // sys_exit_*: __syscall_nr @8, ret @16.
    // SAFETY: tracepoint context reads through the checked helper.
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(16) }) else {
        return 0;
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: map lookup, value copied before the entry is removed.
    if let Some(p) = unsafe { SECRET_PENDING.get(&tid) } {
        let p = *p;
        let _ = SECRET_PENDING.remove(&tid);
        emit(p.flags, p.path_id, VIA_PATH, ret, &p.path);
        return 0;
    }
    if ret < 0 {
        return 0;
    }
    let Some((file, key)) = fd_inode(ret as u64) else {
        return 0;
    };
    // SAFETY: map lookup, value copied.
    if let Some(w) = unsafe { SECRET_INODES.get(&key) } {
        let w = *w;
        // SAFETY: probe read through read_at.
        let f_flags: u32 = unsafe { read_at(file, offsets().file_flags) }.unwrap_or(0);
        emit(u64::from(f_flags), w.path_id, VIA_INODE, ret, &w.path);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn secrets_openat(ctx: TracePointContext) -> u32 {
    enter(&ctx, Call::OpenAt)
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn secrets_openat2(ctx: TracePointContext) -> u32 {
    enter(&ctx, Call::OpenAt2)
}

#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn secrets_open(ctx: TracePointContext) -> u32 {
    enter(&ctx, Call::Open)
}

#[tracepoint(category = "syscalls", name = "sys_enter_creat")]
pub fn secrets_creat(ctx: TracePointContext) -> u32 {
    enter(&ctx, Call::Creat)
}

#[tracepoint(category = "syscalls", name = "sys_exit_open")]
pub fn secrets_open_exit(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_creat")]
pub fn secrets_creat_exit(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub fn secrets_openat_exit(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat2")]
pub fn secrets_openat2_exit(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
