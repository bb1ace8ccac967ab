//! The one Ethernet / VLAN / IP parser of the packet program (`net_tc`: observation
//! and the quarantine's drops), on direct packet access: every field is a bounds-checked load from
//! the skb's linear data, no helper call. Offsets are bounded constants or masked
//! lengths, so the verifier can follow them.

use aya_ebpf::{EbpfContext, programs::TcContext};

pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// The frame's linear bytes.
#[derive(Clone, Copy)]
pub struct Packet {
    start: usize,
    end: usize,
}

impl Packet {
    #[inline(always)]
    pub fn of(ctx: &TcContext) -> Packet {
        Packet {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// The `T` at `offset`, `None` past the linear data.
    #[inline(always)]
    pub fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        let p = self.start + offset;
        if p + core::mem::size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: [p, p + size) was just checked to lie inside the packet's linear data.
        Some(unsafe { core::ptr::read_unaligned(p as *const T) })
    }

    #[inline(always)]
    pub fn be16(&self, offset: usize) -> Option<u16> {
        Some(u16::from_be(self.read::<u16>(offset)?))
    }
}

/// The Ethernet header, past the frame's VLAN tags (at most two: QinQ).
pub struct Ethernet {
    /// EtherType of the payload.
    pub proto: u16,
    /// Offset of the payload (the L3 header): 14, 18 or 22.
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
fn is_tag(proto: u16) -> bool {
    proto == ETH_P_8021Q || proto == ETH_P_8021AD
}

#[inline(always)]
pub fn ethernet(ctx: &TcContext, pkt: &Packet) -> Option<Ethernet> {
    let mut proto = pkt.be16(12)?;
    // SAFETY: the program's context is the __sk_buff; vlan_present and vlan_tci are
    // readable fields of it.
    let (meta_present, meta_tci) = unsafe {
        let skb = ctx.as_ptr() as *const aya_ebpf::bindings::__sk_buff;
        ((*skb).vlan_present, (*skb).vlan_tci)
    };
    if meta_present == 0 && !is_tag(proto) {
        // The common case: untagged, nothing more to read.
        return Some(Ethernet {
            proto,
            l3: 14,
            vlan: 0,
            inner_vlan: 0,
            tagged: false,
        });
    }
    let mut tags = [0u16; 2];
    let mut n = 0usize;
    if meta_present != 0 {
        tags[0] = (meta_tci & 0x0fff) as u16;
        n = 1;
    }
    let mut l3 = 14usize;
    // At most two tags in the frame (bounded for the verifier).
    if is_tag(proto) {
        tags[n & 1] = pkt.be16(14)? & 0x0fff;
        n += 1;
        proto = pkt.be16(16)?;
        l3 = 18;
        if is_tag(proto) {
            if n < 2 {
                tags[1] = pkt.be16(18)? & 0x0fff;
            }
            n += 1;
            proto = pkt.be16(20)?;
            l3 = 22;
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
pub fn source_mac(pkt: &Packet) -> Option<[u8; 6]> {
    pkt.read(6)
}

/// The protocol of an IPv4 header at `l3`.
#[inline(always)]
pub fn ipv4_proto(pkt: &Packet, l3: usize) -> Option<u8> {
    pkt.read(l3 + 9)
}

/// The offset of the L4 header of an IPv4 packet at `l3` (`None` for a fragment other
/// than the first, or a malformed header length).
#[inline(always)]
pub fn ipv4_l4(pkt: &Packet, l3: usize) -> Option<usize> {
    let vihl: u8 = pkt.read(l3)?;
    let ihl = ((vihl & 0x0f) as usize) * 4;
    let first_fragment = pkt.be16(l3 + 6)? & 0x1fff == 0;
    (first_fragment && ihl >= 20).then_some(l3 + ihl)
}

#[inline(always)]
pub fn ipv4_saddr(pkt: &Packet, l3: usize) -> Option<[u8; 4]> {
    pkt.read(l3 + 12)
}

#[inline(always)]
pub fn ipv6_saddr(pkt: &Packet, l3: usize) -> Option<[u8; 16]> {
    pkt.read(l3 + 8)
}

/// The source of an IPv6 packet at `l3` as native-endian words (the form the cluster
/// counters compute on: see `agent_common::corosync::Words`).
#[inline(always)]
pub fn ipv6_saddr_words(pkt: &Packet, l3: usize) -> Option<[u32; 4]> {
    let b: [[u8; 4]; 4] = pkt.read(l3 + 8)?;
    Some(b.map(u32::from_ne_bytes))
}

/// The next header of an IPv6 packet at `l3` (extension headers are not walked; the
/// L4 header is at `l3 + 40`).
#[inline(always)]
pub fn ipv6_next(pkt: &Packet, l3: usize) -> Option<u8> {
    pkt.read(l3 + 6)
}
