//! Feature probes: programs that do nothing, loaded at start-up only to learn whether
//! this kernel accepts the program type (KERNEL.md: probe by loading, not by asking).

use aya_ebpf::{
    macros::{fentry, lsm},
    programs::{FEntryContext, LsmContext},
};

#[fentry(function = "do_sys_openat2")]
pub fn probe_fentry(_ctx: FEntryContext) -> u32 {
    0
}

#[lsm(hook = "bprm_check_security")]
pub fn probe_lsm(_ctx: LsmContext) -> i32 {
    0
}
