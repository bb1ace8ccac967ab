//! `tcp_reset` detector, kernel side: tcp:tcp_send_reset and tcp:tcp_receive_reset,
//! counted per direction and reason, and per peer. Aggregated in per-CPU maps; read by
//! userspace at scrape time and once a second for storm detection.

use agent_common::{
    maps,
    session::{AF_INET, AF_INET6},
    tcp_reset::{DIR_RECEIVED, DIR_SENT, PeerKey, RESET_PEERS_CAPACITY, ResetKey},
};
use aya_ebpf::{
    macros::{map, tracepoint},
    maps::{LruPerCpuHashMap, PerCpuHashMap},
    programs::TracePointContext,
};

use crate::common::percpu_inc;

#[map(name = "RESET_COUNTS")]
static RESET_COUNTS: PerCpuHashMap<ResetKey, u64> = PerCpuHashMap::with_max_entries(256, 0);
#[map(name = "RESET_PEERS")]
static RESET_PEERS: LruPerCpuHashMap<PeerKey, u64> =
    LruPerCpuHashMap::with_max_entries(RESET_PEERS_CAPACITY, 0);

/// The address at `v4`/`v6` of the record for `family`, or `None` for other families.
#[inline(always)]
fn address(ctx: &TracePointContext, family: u16, v4: usize, v6: usize) -> Option<[u8; 16]> {
    let mut addr = [0u8; 16];
    if family == AF_INET {
        // SAFETY: tracepoint context reads through the checked helper.
        if let Ok(a) = unsafe { ctx.read_at::<[u8; 4]>(v4) } {
            addr[..4].copy_from_slice(&a);
        }
    } else if family == AF_INET6 {
        // SAFETY: as above.
        addr = unsafe { ctx.read_at::<[u8; 16]>(v6) }.unwrap_or([0; 16]);
    } else {
        return None;
    }
    Some(addr)
}

#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn tcp_reset_send(ctx: TracePointContext) -> u32 {
    // reason @28 (enum sk_rst_reason), daddr[28] @60: a sockaddr (family, port, address).
    // SAFETY: tracepoint context reads through the checked helper.
    let reason = unsafe { ctx.read_at::<u32>(28) }.unwrap_or(0);
    percpu_inc!(
        RESET_COUNTS,
        &ResetKey {
            direction: DIR_SENT,
            reason
        },
        maps::MAP_FULL_RESET_COUNTS
    );
    // SAFETY: as above.
    let family = unsafe { ctx.read_at::<u16>(60) }.unwrap_or(0);
    if let Some(addr) = address(&ctx, family, 64, 68) {
        percpu_inc!(
            RESET_PEERS,
            &PeerKey {
                direction: DIR_SENT,
                family,
                _pad: 0,
                addr
            },
            maps::MAP_FULL_RESET_PEERS
        );
    }
    0
}

#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn tcp_reset_receive(ctx: TracePointContext) -> u32 {
    // family @20, daddr @26 (v4), daddr_v6 @46: the remote end, who reset us.
    percpu_inc!(
        RESET_COUNTS,
        &ResetKey {
            direction: DIR_RECEIVED,
            reason: 0
        },
        maps::MAP_FULL_RESET_COUNTS
    );
    // SAFETY: tracepoint context reads through the checked helper.
    let family = unsafe { ctx.read_at::<u16>(20) }.unwrap_or(0);
    if let Some(addr) = address(&ctx, family, 26, 46) {
        percpu_inc!(
            RESET_PEERS,
            &PeerKey {
                direction: DIR_RECEIVED,
                family,
                _pad: 0,
                addr
            },
            maps::MAP_FULL_RESET_PEERS
        );
    }
    0
}
