//! `martian` detector, kernel side: the kfree_skb raw tracepoint (every freed skb on the
//! host: a raw tracepoint costs about half what a classic one does here, and reads its
//! arguments without a record) filtered on the martian drop reasons
//! (resolved by name from BTF by userspace), counted per interface, netns and reason,
//! and per source address.

use agent_common::{
    maps,
    martian::{MARTIAN_REASONS_CAPACITY, MARTIAN_SOURCES_CAPACITY, MartianKey, MartianSource},
};
use aya_ebpf::{
    macros::{map, raw_tracepoint},
    maps::{Array, LruPerCpuHashMap, PerCpuHashMap},
    programs::RawTracePointContext,
};

use crate::common::{offsets, percpu_inc, read_at};

#[map(name = "MARTIAN_REASONS")]
static MARTIAN_REASONS: Array<u32> = Array::with_max_entries(MARTIAN_REASONS_CAPACITY, 0);
#[map(name = "MARTIAN_COUNTS")]
static MARTIAN_COUNTS: PerCpuHashMap<MartianKey, u64> = PerCpuHashMap::with_max_entries(1024, 0);
#[map(name = "MARTIAN_SOURCES")]
static MARTIAN_SOURCES: LruPerCpuHashMap<MartianSource, u64> =
    LruPerCpuHashMap::with_max_entries(MARTIAN_SOURCES_CAPACITY, 0);

/// `skb->protocol` of IPv4, as stored (network byte order).
const ETH_P_IP_BE: u16 = 0x0800u16.to_be();

#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn martian_drop(ctx: RawTracePointContext) -> u32 {
    // TP_PROTO(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...):
    // the reason is tested in an inlined array before anything else is read.
    let reason = ctx.arg::<u64>(2) as u32;
    if MARTIAN_REASONS.get(reason).is_none_or(|on| *on == 0) {
        return 0;
    }
    let skb = ctx.arg::<u64>(0) as *const u8;
    let off = offsets();
    // SAFETY: probe reads through read_at tolerate any address.
    let protocol: Option<u16> = unsafe { read_at(skb, off.skb_protocol) };
    if protocol != Some(ETH_P_IP_BE) {
        return 0;
    }
    // SAFETY: probe reads through read_at tolerate any address.
    let dev: Option<*const u8> = unsafe { read_at(skb, off.skb_dev) };
    // SAFETY: as above.
    let ifindex: u32 = dev
        .and_then(|d| unsafe { read_at(d, off.netdev_ifindex) })
        .unwrap_or(0);
    // SAFETY: as above.
    let net: Option<*const u8> = dev.and_then(|d| unsafe { read_at(d, off.netdev_net) });
    // SAFETY: as above.
    let netns: u32 = net
        .and_then(|n| unsafe { read_at(n, off.net_inum) })
        .unwrap_or(0);
    let key = MartianKey {
        ifindex,
        netns,
        reason,
        _pad: 0,
    };
    percpu_inc!(MARTIAN_COUNTS, &key, maps::MAP_FULL_MARTIAN_COUNTS);
    // SAFETY: as above.
    let head: Option<*const u8> = unsafe { read_at(skb, off.skb_head) };
    // SAFETY: as above.
    let nh: Option<u16> = unsafe { read_at(skb, off.skb_network_header) };
    if let (Some(head), Some(nh)) = (head, nh) {
        // SAFETY: as above; iphdr.saddr is at +12.
        if let Some(saddr) = unsafe { read_at::<[u8; 4]>(head, u32::from(nh) + 12) } {
            percpu_inc!(
                MARTIAN_SOURCES,
                &MartianSource {
                    key,
                    saddr,
                    _pad: 0
                },
                maps::MAP_FULL_MARTIAN_SOURCES
            );
        }
    }
    0
}
