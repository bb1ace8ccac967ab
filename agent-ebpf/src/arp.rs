//! `arp` detector, kernel side: ARP claims and neighbour discovery seen by the packet
//! program (`net::net_tc`) on the interfaces that watch ARP. The LRU map holds, per L2
//! domain (bridge, outer VLAN) and address, the MAC that last claimed it; a claim by
//! another MAC is an event (rate-limited per address). A frame seen again at the bridge
//! device never replaces the port it was seen on. Observe only: never drops (the ARP
//! guard is the quarantine program's job).

use agent_common::{
    arp::{
        ARP_BINDINGS_CAPACITY, ARP_CHANGE, ARP_EVENT_INTERVAL_NS, ARP_F_AT_BRIDGE,
        ARP_F_GRATUITOUS, ARP_F_OLD_AT_BRIDGE, ARP_F_REPLY, ARP_F_VLAN, ARP_NEW,
        ARP_PROBE_CONFLICT, ArpEvent, Binding, BindingKey,
    },
    event::kind,
    packet::{NetPort, PORT_BRIDGE},
    session::{AF_INET, AF_INET6},
    stats,
};
use aya_ebpf::{
    helpers::bpf_ktime_get_boot_ns, macros::map, maps::LruHashMap, programs::TcContext,
};
use aya_log_ebpf::debug;

use crate::{
    common::{EVENTS, count, header},
    frame::{self, Packet},
};

#[map(name = "ARP_BINDINGS")]
static ARP_BINDINGS: LruHashMap<BindingKey, Binding> =
    LruHashMap::with_max_entries(ARP_BINDINGS_CAPACITY, 0);

/// Where a claim was seen: the interface, its L2 domain, the frame's VLANs.
#[derive(Clone, Copy)]
struct Seen {
    ifindex: u32,
    port: NetPort,
    vlan: u16,
    inner_vlan: u16,
    flags: u16,
}

impl Seen {
    #[inline(always)]
    fn at(ifindex: u32, port: NetPort, eth: &frame::Ethernet) -> Seen {
        let mut flags = if eth.tagged { ARP_F_VLAN } else { 0 };
        if port.flags & PORT_BRIDGE != 0 {
            flags |= ARP_F_AT_BRIDGE;
        }
        Seen {
            ifindex,
            port,
            // Untagged (or priority-tagged, VID 0) on a VLAN-filtering bridge: the VLAN
            // the bridge will put it in.
            vlan: if eth.tagged && eth.vlan != 0 {
                eth.vlan
            } else {
                port.pvid
            },
            inner_vlan: eth.inner_vlan,
            flags,
        }
    }

    #[inline(always)]
    fn key(&self, addr: [u8; 16], family: u16) -> BindingKey {
        BindingKey {
            addr,
            family,
            vlan: self.vlan,
            domain: self.port.domain,
        }
    }

    #[inline(always)]
    fn at_bridge(&self) -> bool {
        self.port.flags & PORT_BRIDGE != 0
    }

    /// Flags of an event about `old`: whether its binding was recorded at the bridge
    /// device (the domain is a bridge and the binding's interface is the domain itself).
    #[inline(always)]
    fn flags_with(&self, old: &Binding) -> u16 {
        let domain_is_bridge = self.at_bridge() || self.port.domain != self.ifindex;
        if domain_is_bridge && old.ifindex == self.port.domain {
            self.flags | ARP_F_OLD_AT_BRIDGE
        } else {
            self.flags
        }
    }
}

/// An ARP frame (`eth.proto` is ARP) on interface `ifindex` of L2 domain `port`.
#[inline(always)]
pub fn arp(
    ctx: &TcContext,
    pkt: &Packet,
    eth: &frame::Ethernet,
    ifindex: u32,
    port: NetPort,
) -> Option<()> {
    let l3 = eth.l3;
    // Ethernet/IPv4 ARP only: htype 1, ptype 0x0800, hlen 6, plen 4, op 1 or 2.
    let hdr: [u8; 8] = pkt.read(l3)?;
    if hdr != [0, 1, 8, 0, 6, 4, 0, hdr[7]] || hdr[7] == 0 || hdr[7] > 2 {
        debug!(
            ctx,
            "arp: not an Ethernet/IPv4 request or reply (op {}), ignored", hdr[7]
        );
        return None;
    }
    let mut seen = Seen::at(ifindex, port, eth);
    if hdr[7] == 2 {
        seen.flags |= ARP_F_REPLY;
    }
    let sha: [u8; 6] = pkt.read(l3 + 8)?;
    let spa: [u8; 4] = pkt.read(l3 + 14)?;
    let tpa: [u8; 4] = pkt.read(l3 + 24)?;
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };

    if spa == [0; 4] {
        // RFC 5227 probe for tpa: a conflict if someone else holds it.
        return probe(seen.key(v4(tpa), AF_INET), sha, now, &seen);
    }
    if spa == tpa {
        seen.flags |= ARP_F_GRATUITOUS;
    }
    claim(seen.key(v4(spa), AF_INET), sha, now, &seen)
}

/// IPv6 neighbour discovery (ICMPv6 at `icmp`, right after the fixed header): a
/// neighbour advertisement claims its target for the frame's source MAC; a neighbour
/// solicitation from :: is a DAD probe for its target.
#[inline(always)]
pub fn ndp(
    pkt: &Packet,
    eth: &frame::Ethernet,
    icmp: usize,
    ifindex: u32,
    port: NetPort,
) -> Option<()> {
    let ty: u8 = pkt.read(icmp)?;
    if ty != 135 && ty != 136 {
        return None;
    }
    let target: [u8; 16] = pkt.read(icmp + 8)?;
    let mac = frame::source_mac(pkt)?;
    let mut seen = Seen::at(ifindex, port, eth);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let key = seen.key(target, AF_INET6);
    if ty == 135 {
        if frame::ipv6_saddr(pkt, eth.l3)? == [0; 16] {
            return probe(key, mac, now, &seen);
        }
        return None;
    }
    // NA flags @4: R (0x80), S (0x40), O (0x20); unsolicited (S clear) is an announcement.
    let na_flags: u8 = pkt.read(icmp + 4)?;
    if na_flags & 0x40 == 0 {
        seen.flags |= ARP_F_GRATUITOUS;
    } else {
        seen.flags |= ARP_F_REPLY;
    }
    claim(key, mac, now, &seen)
}

/// Whether an IPv6 packet's L4 is neighbour discovery worth a port lookup.
#[inline(always)]
pub fn is_ndp(pkt: &Packet, icmp: usize) -> bool {
    matches!(pkt.read::<u8>(icmp), Some(135 | 136))
}

/// A probe (RFC 5227 or IPv6 DAD) for an address: a conflict if someone else holds it.
#[inline(always)]
fn probe(key: BindingKey, sha: [u8; 6], now: u64, seen: &Seen) -> Option<()> {
    // SAFETY: map lookup, value copied.
    let held = unsafe { ARP_BINDINGS.get(&key) }.copied()?;
    if held.mac == sha || now.saturating_sub(held.last_event_ns) < ARP_EVENT_INTERVAL_NS {
        return None;
    }
    let mut b = held;
    b.last_event_ns = now;
    let _ = ARP_BINDINGS.insert(&key, &b, 0);
    emit(ARP_PROBE_CONFLICT, seen, &key, sha, &held);
    Some(())
}

/// A claim of an address by a MAC: new binding, refresh, or change (rate-limited).
#[inline(always)]
fn claim(key: BindingKey, sha: [u8; 6], now: u64, seen: &Seen) -> Option<()> {
    let (ifindex, vlan) = (seen.ifindex, seen.vlan);
    // SAFETY: map lookup, value copied.
    match unsafe { ARP_BINDINGS.get(&key) }.copied() {
        None => {
            // last_event_ns 0: the first change of a binding is never rate-limited.
            let b = Binding {
                mac: sha,
                vlan,
                ifindex,
                grace: 0,
                first_seen_ns: now,
                last_seen_ns: now,
                last_event_ns: 0,
            };
            if ARP_BINDINGS.insert(&key, &b, 0).is_err() {
                count(kind::ARP, stats::MAP_FULL);
            }
            emit(ARP_NEW, seen, &key, sha, &Binding::default());
        }
        Some(held) if held.mac == sha => {
            let mut b = held;
            b.last_seen_ns = now;
            // The same frame seen again at the bridge device keeps its port.
            if !seen.at_bridge() {
                b.ifindex = ifindex;
            }
            let _ = ARP_BINDINGS.insert(&key, &b, 0);
        }
        Some(held) => {
            let within = now.saturating_sub(held.last_event_ns) < ARP_EVENT_INTERVAL_NS;
            // Inside the interval, one change may still be reported (the grace).
            let rate_limited = within && held.grace == 0;
            let b = Binding {
                mac: sha,
                vlan,
                ifindex,
                grace: if within { 0 } else { 1 },
                first_seen_ns: now,
                last_seen_ns: now,
                last_event_ns: if rate_limited {
                    held.last_event_ns
                } else {
                    now
                },
            };
            let _ = ARP_BINDINGS.insert(&key, &b, 0);
            if rate_limited {
                count(kind::ARP, stats::RATE_LIMITED);
                return None;
            }
            emit(ARP_CHANGE, seen, &key, sha, &held);
        }
    }
    Some(())
}

#[inline(always)]
fn v4(ip: [u8; 4]) -> [u8; 16] {
    let mut addr = [0u8; 16];
    addr[0] = ip[0];
    addr[1] = ip[1];
    addr[2] = ip[2];
    addr[3] = ip[3];
    addr
}

#[inline(always)]
fn emit(kind_: u32, seen: &Seen, key: &BindingKey, mac: [u8; 6], old: &Binding) {
    let Some(mut entry) = EVENTS.reserve::<ArpEvent>(0) else {
        count(kind::ARP, stats::RINGBUF_FULL);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: a reserved slot of exactly this type; every field written before submit.
    unsafe {
        (*ev).header = header(kind::ARP, core::mem::size_of::<ArpEvent>());
        (*ev).kind = kind_;
        (*ev).ifindex = seen.ifindex;
        (*ev).flags = seen.flags_with(old);
        (*ev).vlan = key.vlan;
        (*ev).family = key.family;
        (*ev).inner_vlan = seen.inner_vlan;
        (*ev).addr = key.addr;
        (*ev).mac = mac;
        (*ev).old_mac = old.mac;
        (*ev).old_ifindex = old.ifindex;
        (*ev).old_last_seen_ns = old.last_seen_ns;
        (*ev).domain = key.domain;
        (*ev)._pad1 = 0;
    }
    entry.submit(0);
    count(kind::ARP, stats::SUBMITTED);
}
