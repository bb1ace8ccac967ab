//! Kernel-side self-accounting: a per-CPU array of u64 counters (`STATS`).
//!
//! Slot = `kind * PER_KIND + counter`. Every failure path of every program lands in
//! one of these slots, so nothing is lost silently.

pub const PER_KIND: u32 = 5;
/// Records written to the ring buffer.
pub const SUBMITTED: u32 = 0;
/// `bpf_ringbuf_reserve` failed: the ring buffer was full, the record was lost.
pub const RINGBUF_FULL: u32 = 1;
/// A `bpf_probe_read*` of a field failed (the record was still sent, field empty).
pub const READ_ERROR: u32 = 2;
/// A helper map was full: the record was lost.
pub const MAP_FULL: u32 = 3;
/// Not sent on purpose: the kernel's per-key rate limit (e.g. ARP flip-flops).
pub const RATE_LIMITED: u32 = 4;

/// Number of slots in `STATS`.
pub const SLOTS: u32 = (crate::event::kind::MAX as u32 + 1) * PER_KIND;

pub const fn slot(kind: u16, counter: u32) -> u32 {
    kind as u32 * PER_KIND + counter
}

/// Names of the counters, indexed by counter number, as exported.
pub const COUNTER_NAMES: [&str; PER_KIND as usize] = [
    "submitted",
    "ringbuf_full",
    "read_error",
    "map_full",
    "rate_limited",
];
