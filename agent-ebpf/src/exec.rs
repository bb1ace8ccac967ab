//! The one `sched_process_exec` program, shared like the packet program: each concern
//! that acts at exec has its part here, in this order: quarantine's kill-on-exec (a
//! killed task needs nothing else), the reboot detector's watched commands (and its
//! guard), the corosync detector's daemons. One program run per exec instead of three,
//! and the comm read once.

use aya_ebpf::{helpers::bpf_get_current_comm, macros::tracepoint, programs::TracePointContext};

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn exec_sched(ctx: TracePointContext) -> u32 {
    let Ok(comm) = bpf_get_current_comm() else {
        return 0;
    };
    if crate::quarantine::on_exec(comm) {
        return 0;
    }
    crate::reboot::on_exec(&ctx, comm);
    crate::corosync::on_exec(comm);
    0
}
