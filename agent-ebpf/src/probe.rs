//! Feature probes: programs that do nothing, loaded at start-up only to learn whether
//! this kernel accepts the program type (KERNEL.md: probe by loading, not by asking).

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, lsm},
    programs::{BtfTracePointContext, FEntryContext, LsmContext},
};

/// `tp_btf` is program type `tracing` like fentry, but some kernels take one and refuse
/// the other (KERNEL.md): each is probed by loading it.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn probe_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[fentry(function = "do_sys_openat2")]
pub fn probe_fentry(_ctx: FEntryContext) -> u32 {
    0
}

#[lsm(hook = "bprm_check_security")]
pub fn probe_lsm(_ctx: LsmContext) -> i32 {
    0
}
