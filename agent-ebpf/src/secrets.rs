//! `secrets` detector, kernel side: openat/openat2 of a watched secret path (exact
//! absolute path; the content is never read).

use agent_common::{
    event::kind,
    secrets::{PATH_LEN, SECRET_PATHS_CAPACITY, SecretOpenEvent},
    stats,
};
use aya_ebpf::{
    helpers::{bpf_probe_read_user, bpf_probe_read_user_str_bytes},
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
};

use crate::common::{EVENTS, count, fill_proc, header};

#[map(name = "SECRET_PATHS")]
static SECRET_PATHS: HashMap<[u8; PATH_LEN], u32> =
    HashMap::with_max_entries(SECRET_PATHS_CAPACITY, 0);
/// Per-CPU scratch for the path (a zeroed key buffer).
#[map(name = "SECRET_SCRATCH")]
static SECRET_SCRATCH: PerCpuArray<[u8; PATH_LEN]> = PerCpuArray::with_max_entries(1, 0);

fn open(ctx: &TracePointContext, openat2: bool) -> u32 {
    // openat/openat2(dfd, filename @24, flags @32 | how @32)
    // SAFETY: tracepoint context reads through the checked helper.
    let Ok(ptr) = (unsafe { ctx.read_at::<u64>(24) }) else {
        return 0;
    };
    let Some(buf) = SECRET_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: the per-CPU scratch slot is ours for this run.
    let buf = unsafe { &mut *buf };
    *buf = [0; PATH_LEN];
    // SAFETY: user pointer read through the checked helper.
    if unsafe { bpf_probe_read_user_str_bytes(ptr as *const u8, &mut buf[..PATH_LEN - 1]) }.is_err()
    {
        return 0;
    }
    // SAFETY: map lookup, value copied.
    let Some(id) = (unsafe { SECRET_PATHS.get(buf) }).copied() else {
        return 0;
    };
    let flags = if openat2 {
        // SAFETY: as above; struct open_how { u64 flags; ... }.
        let how = unsafe { ctx.read_at::<u64>(32) }.unwrap_or(0);
        // SAFETY: as above.
        unsafe { bpf_probe_read_user(how as *const u64) }.unwrap_or(0)
    } else {
        // SAFETY: as above.
        unsafe { ctx.read_at::<u64>(32) }.unwrap_or(0)
    };
    let Some(mut entry) = EVENTS.reserve::<SecretOpenEvent>(0) else {
        count(kind::SECRET_OPEN, stats::RINGBUF_FULL);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: a reserved slot of exactly this type; every field written before submit.
    unsafe {
        (*ev).header = header(kind::SECRET_OPEN, core::mem::size_of::<SecretOpenEvent>());
        fill_proc(&mut (*ev).proc, kind::SECRET_OPEN);
        (*ev).flags = flags;
        (*ev).path_id = id;
        (*ev)._pad0 = 0;
        (*ev).path = *buf;
    }
    entry.submit(0);
    count(kind::SECRET_OPEN, stats::SUBMITTED);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn secrets_openat(ctx: TracePointContext) -> u32 {
    open(&ctx, false)
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn secrets_openat2(ctx: TracePointContext) -> u32 {
    open(&ctx, true)
}
