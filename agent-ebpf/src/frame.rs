//! The one Ethernet / VLAN / IP parser of the packet programs (`arp_tc`, `corosync_tc`,
//! `quarantine_tc`). Offsets only: each program loads the fields it needs with
//! `TcContext::load` at the offsets found here.

use aya_ebpf::{EbpfContext, programs::TcContext};

pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// The Ethernet header, past the frame's VLAN tags (at most two: QinQ).
pub struct Ethernet {
    /// EtherType of the payload.
    pub proto: u16,
    /// Offset of the payload (the L3 header).
    pub l3: usize,
    /// The outer VLAN id: the skb's VLAN metadata when the driver took the tag out of
    /// the frame (veth, most NICs), else the frame's first tag; 0 when untagged.
    pub vlan: u16,
    /// The inner VLAN id of a QinQ frame; 0 if none.
    pub inner_vlan: u16,
    /// The frame carried a tag (in the frame or in the skb's metadata).
    pub tagged: bool,
}

#[inline(always)]
pub fn be16(ctx: &TcContext, offset: usize) -> Option<u16> {
    Some(u16::from_be(ctx.load::<u16>(offset).ok()?))
}

#[inline(always)]
fn is_tag(proto: u16) -> bool {
    proto == ETH_P_8021Q || proto == ETH_P_8021AD
}

#[inline(always)]
pub fn ethernet(ctx: &TcContext) -> Option<Ethernet> {
    // SAFETY: the program's context is the __sk_buff; vlan_present and vlan_tci are
    // readable fields of it.
    let (meta_present, meta_tci) = unsafe {
        let skb = ctx.as_ptr() as *const aya_ebpf::bindings::__sk_buff;
        ((*skb).vlan_present, (*skb).vlan_tci)
    };
    let mut tags = [0u16; 2];
    let mut n = 0usize;
    if meta_present != 0 {
        tags[0] = (meta_tci & 0x0fff) as u16;
        n = 1;
    }
    let mut proto = be16(ctx, 12)?;
    let mut l3 = 14usize;
    // At most two tags in the frame (bounded for the verifier).
    if is_tag(proto) {
        tags[n & 1] = be16(ctx, l3)? & 0x0fff;
        n += 1;
        proto = be16(ctx, l3 + 2)?;
        l3 += 4;
        if is_tag(proto) {
            if n < 2 {
                tags[1] = be16(ctx, l3)? & 0x0fff;
            }
            n += 1;
            proto = be16(ctx, l3 + 2)?;
            l3 += 4;
        }
    }
    Some(Ethernet {
        proto,
        l3,
        vlan: tags[0],
        inner_vlan: tags[1],
        tagged: n > 0,
    })
}

/// The source MAC address of the frame.
#[inline(always)]
pub fn source_mac(ctx: &TcContext) -> Option<[u8; 6]> {
    ctx.load(6).ok()
}

/// An IPv4 header at `l3`: source address, protocol, and the offset of the L4 header
/// (`None` for a fragment other than the first, or a malformed header length).
pub struct Ipv4 {
    pub saddr: [u8; 4],
    pub proto: u8,
    pub l4: Option<usize>,
}

#[inline(always)]
pub fn ipv4(ctx: &TcContext, l3: usize) -> Option<Ipv4> {
    let vihl: u8 = ctx.load(l3).ok()?;
    let ihl = ((vihl & 0x0f) as usize) * 4;
    let first_fragment = be16(ctx, l3 + 6)? & 0x1fff == 0;
    Some(Ipv4 {
        saddr: ipv4_saddr(ctx, l3)?,
        proto: ctx.load(l3 + 9).ok()?,
        l4: (first_fragment && ihl >= 20).then_some(l3 + ihl),
    })
}

#[inline(always)]
pub fn ipv4_saddr(ctx: &TcContext, l3: usize) -> Option<[u8; 4]> {
    ctx.load(l3 + 12).ok()
}

#[inline(always)]
pub fn ipv6_saddr(ctx: &TcContext, l3: usize) -> Option<[u8; 16]> {
    ctx.load(l3 + 8).ok()
}

/// An IPv6 header at `l3`: source address, next header, and the offset past the fixed
/// header (extension headers are not walked).
pub struct Ipv6 {
    pub saddr: [u8; 16],
    pub next: u8,
    pub l4: usize,
}

#[inline(always)]
pub fn ipv6(ctx: &TcContext, l3: usize) -> Option<Ipv6> {
    Some(Ipv6 {
        next: ctx.load(l3 + 6).ok()?,
        saddr: ipv6_saddr(ctx, l3)?,
        l4: l3 + 40,
    })
}
