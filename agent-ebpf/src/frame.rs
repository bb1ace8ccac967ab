//! The one Ethernet / VLAN / IP parser of the packet programs (`arp_tc`, `corosync_tc`,
//! `quarantine_tc`). Offsets only: each program loads the fields it needs with
//! `TcContext::load` at the offsets found here.

use aya_ebpf::programs::TcContext;

pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// The Ethernet header, past one VLAN tag if there is one in the frame.
pub struct Ethernet {
    /// EtherType of the payload.
    pub proto: u16,
    /// Offset of the payload (the L3 header).
    pub l3: usize,
    /// The frame's (outer) VLAN id; 0 when untagged.
    pub vlan: u16,
    /// The frame carried an 802.1Q / 802.1ad tag.
    pub tagged: bool,
}

#[inline(always)]
pub fn be16(ctx: &TcContext, offset: usize) -> Option<u16> {
    Some(u16::from_be(ctx.load::<u16>(offset).ok()?))
}

#[inline(always)]
pub fn ethernet(ctx: &TcContext) -> Option<Ethernet> {
    let proto = be16(ctx, 12)?;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        return Some(Ethernet {
            vlan: be16(ctx, 14)? & 0x0fff,
            proto: be16(ctx, 16)?,
            l3: 18,
            tagged: true,
        });
    }
    Some(Ethernet {
        proto,
        l3: 14,
        vlan: 0,
        tagged: false,
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
