//! Ring-buffer reader: AsyncFd(RingBuf) drain -> decode -> bounded queue.
//! The reader never blocks on the queue: a full queue is a counted drop.

use std::sync::Arc;

use agent_common::decode::{self, Event};
use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tracing::{debug, error};

use crate::metrics::Agent;

/// Drain the ring buffer until the queue's receiver is gone.
pub async fn read(ring: RingBuf<MapData>, queue: mpsc::Sender<Event>, metrics: Arc<Agent>) {
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as
    // long as the RingBuf lives, i.e. for the whole life of the AsyncFd that owns it.
    let mut fd = match unsafe { AsyncFd::register(ring) } {
        Ok(fd) => fd,
        Err(e) => {
            error!(error = %e, "cannot poll the event ring buffer; no events will be seen");
            return;
        }
    };
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                error!(error = %e, "event ring buffer poll failed; reader stopped");
                return;
            }
        };
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            match decode::decode(&item) {
                Ok(event) => {
                    metrics.record_event(agent_common::event::kind_name(event.header().kind));
                    match queue.try_send(event) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            metrics.record_queue_full();
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                Err(e) => {
                    debug!(error = %e, "undecodable record");
                    metrics.record_decode_error(e.reason());
                }
            }
        }
        guard.clear_ready();
    }
}
