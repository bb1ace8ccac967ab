//! Ring-buffer reader: AsyncFd(RingBuf) drain -> one copy into a batch -> decode in
//! place -> bounded queue. Each drain's records are copied once, out of the ring buffer
//! into one aligned [`Batch`]; the queue and the detectors get `bytes` slices of it, read
//! in place (no per-record allocation or copy). The reader never blocks on the queue: a
//! full queue is a counted drop.

use std::sync::Arc;

use agent_common::{
    decode::{self, Event},
    record::Batch,
};
use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tracing::{debug, error};

use crate::metrics::Agent;

/// At most this many bytes of records per batch: a busy ring is handed on in pieces,
/// so the detectors never wait for a whole drain. A batch grows with its records (no
/// fixed allocation per wake-up), and a queued record keeps only its own batch alive.
const BATCH_BYTES: usize = 64 * 1024;

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
        let mut batch = Batch::default();
        let mut spans = Vec::new();
        loop {
            let item = ring.next();
            let more = item.is_some();
            if let Some(item) = item {
                spans.push(batch.push(&item));
            }
            if batch.len() >= BATCH_BYTES || (!more && !batch.is_empty()) {
                let shared = batch.freeze();
                for span in spans.drain(..) {
                    if !hand_on(decode::decode_shared(shared.slice(span)), &queue, &metrics) {
                        return;
                    }
                }
            }
            if !more {
                break;
            }
        }
        guard.clear_ready();
    }
}

/// Count a decoded record and queue it; `false` once the queue's receiver is gone.
fn hand_on(
    decoded: Result<Event, decode::DecodeError>,
    queue: &mpsc::Sender<Event>,
    metrics: &Agent,
) -> bool {
    match decoded {
        Ok(event) => {
            metrics.record_event(agent_common::event::kind_name(event.header().kind));
            match queue.try_send(event) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics.record_queue_full();
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        }
        Err(e) => {
            debug!(error = %e, "undecodable record");
            metrics.record_decode_error(e.reason());
            true
        }
    }
}
