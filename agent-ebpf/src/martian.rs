//! `martian` detector, kernel side: skb:kfree_skb filtered on the martian drop reasons
//! (resolved by name from BTF by userspace), counted per interface, netns and reason,
//! and per source address.

use agent_common::{
    maps,
    martian::{MARTIAN_REASONS_CAPACITY, MARTIAN_SOURCES_CAPACITY, MartianKey, MartianSource},
};
use aya_ebpf::{
    EbpfContext,
    macros::{map, tracepoint},
    maps::{Array, LruPerCpuHashMap, PerCpuHashMap},
    programs::TracePointContext,
};

use crate::common::{offsets, percpu_inc, read_at};

#[map(name = "MARTIAN_REASONS")]
static MARTIAN_REASONS: Array<u32> = Array::with_max_entries(MARTIAN_REASONS_CAPACITY, 0);
#[map(name = "MARTIAN_COUNTS")]
static MARTIAN_COUNTS: PerCpuHashMap<MartianKey, u64> = PerCpuHashMap::with_max_entries(1024, 0);
#[map(name = "MARTIAN_SOURCES")]
static MARTIAN_SOURCES: LruPerCpuHashMap<MartianSource, u64> =
    LruPerCpuHashMap::with_max_entries(MARTIAN_SOURCES_CAPACITY, 0);

#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn martian_drop(ctx: TracePointContext) -> u32 {
    // Every freed skb on the host passes here: the reason and protocol are read from
    // the record directly (no helper call), the reason tested in an inlined array.
    // skbaddr @8, protocol @32 (host order), reason @36.
    let record = ctx.as_ptr() as *const u8;
    // SAFETY: the tracepoint's record is readable in full and these fields are aligned.
    let (protocol, reason) = unsafe {
        (
            core::ptr::read(record.add(32).cast::<u16>()),
            core::ptr::read(record.add(36).cast::<u32>()),
        )
    };
    if MARTIAN_REASONS.get(reason).is_none_or(|on| *on == 0) || protocol != 0x0800 {
        return 0;
    }
    // SAFETY: as above.
    let Ok(skb) = (unsafe { ctx.read_at::<u64>(8) }) else {
        return 0;
    };
    let skb = skb as *const u8;
    let off = offsets();
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
