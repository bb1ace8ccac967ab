//! The eBPF programs' own diagnostics (aya-log): map errors and unexpected packet
//! shapes, at debug level. Off by default: the level global is 0, a read-only constant
//! the verifier sees, so every diagnostic is pruned from the programs at load and costs
//! nothing per event. On (`agent.ebpf_log`): records go through aya-log's ring buffer
//! to the `log` facade, which the agent's tracing subscriber shows at debug level.

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::unix::AsyncFd;
use tracing::{debug, warn};

pub type Logger = EbpfLogger<&'static dyn log::Log>;

/// `aya_log_common::Level::Debug`: error, warn, info and debug records are kept.
const DEBUG: u8 = 4;
/// Nothing is kept (and the verifier prunes every log statement).
const OFF: u8 = 0;

pub fn level(on: bool) -> u8 {
    if on { DEBUG } else { OFF }
}

/// The reader of the diagnostics ring buffer, when they are on.
pub fn init(ebpf: &mut Ebpf, on: bool) -> Option<Logger> {
    if !on {
        return None;
    }
    match EbpfLogger::init(ebpf) {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(error = %e, "eBPF diagnostics unavailable (agent.ebpf_log)");
            None
        }
    }
}

/// Forward the programs' diagnostics to the log until the agent stops.
pub async fn forward(logger: Logger) {
    // SAFETY: the logger owns its ring buffer's fd, which flushing neither closes nor
    // replaces, for as long as the AsyncFd that owns the logger lives.
    let mut fd =
        match unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => {
                warn!(error = %e, "cannot poll the eBPF diagnostics ring buffer");
                return;
            }
        };
    debug!("forwarding the eBPF programs' diagnostics");
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                warn!(error = %e, "eBPF diagnostics poll failed; forwarding stopped");
                return;
            }
        };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}
