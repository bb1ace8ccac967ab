//! The packet program: one TC ingress classifier per interface (`net_tc`) that does
//! everything the detectors need of a frame — ARP/ND observation (`arp`), cluster
//! counting and drops (`corosync`). Direct packet access; protocol and port tests come
//! before any map, and the interface's settings are an inlined array lookup taken only
//! for a frame that matters. A frame that concerns no detector costs a few loads.

use agent_common::{
    corosync::v4_key,
    packet::{
        NET_PORTS_CAPACITY, NET_PORTS_HIGH_CAPACITY, NetPort, PORT_WATCH_ARP, PORT_WATCH_COROSYNC,
    },
};
use aya_ebpf::{
    EbpfContext,
    bindings::TC_ACT_SHOT,
    macros::{classifier, map},
    maps::{Array, HashMap},
    programs::TcContext,
};

use crate::{
    arp, corosync,
    frame::{self, Packet},
};

#[map(name = "NET_PORTS")]
static NET_PORTS: Array<NetPort> = Array::with_max_entries(NET_PORTS_CAPACITY, 0);
#[map(name = "NET_PORTS_HIGH")]
static NET_PORTS_HIGH: HashMap<u32, NetPort> =
    HashMap::with_max_entries(NET_PORTS_HIGH_CAPACITY, 0);

/// tcx: continue with the next program (e.g. the quarantine's).
const TCX_NEXT: i32 = -1;

/// The interface the frame arrived on.
#[inline(always)]
fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: the program's context is the __sk_buff; ifindex is a readable field.
    unsafe { (*(ctx.as_ptr() as *const aya_ebpf::bindings::__sk_buff)).ifindex }
}

/// The settings of interface `ifindex`, if it watches what `flag` names.
#[inline(always)]
fn port(ifindex: u32, flag: u32) -> Option<NetPort> {
    let p = if ifindex < NET_PORTS_CAPACITY {
        *NET_PORTS.get(ifindex)?
    } else {
        // SAFETY: map lookup, value copied.
        *unsafe { NET_PORTS_HIGH.get(&ifindex) }?
    };
    (p.flags & flag != 0).then_some(p)
}

#[classifier]
pub fn net_tc(ctx: TcContext) -> i32 {
    let pkt = Packet::of(&ctx);
    let Some(eth) = frame::ethernet(&ctx, &pkt) else {
        return TCX_NEXT;
    };
    match eth.proto {
        frame::ETH_P_IP => {
            if frame::ipv4_proto(&pkt, eth.l3) != Some(frame::IPPROTO_UDP) {
                return TCX_NEXT;
            }
            let Some(l4) = frame::ipv4_l4(&pkt, eth.l3) else {
                return TCX_NEXT;
            };
            match frame::ipv4_saddr(&pkt, eth.l3) {
                Some(saddr) => cluster(&ctx, &pkt, v4_key(saddr), l4),
                None => TCX_NEXT,
            }
        }
        frame::ETH_P_ARP => {
            let i = ifindex(&ctx);
            if let Some(p) = port(i, PORT_WATCH_ARP) {
                let _ = arp::arp(&ctx, &pkt, &eth, i, p);
            }
            TCX_NEXT
        }
        frame::ETH_P_IPV6 => {
            let l4 = eth.l3 + 40;
            match frame::ipv6_next(&pkt, eth.l3) {
                Some(frame::IPPROTO_UDP) => match frame::ipv6_saddr(&pkt, eth.l3) {
                    Some(saddr) => cluster(&ctx, &pkt, saddr, l4),
                    None => TCX_NEXT,
                },
                Some(frame::IPPROTO_ICMPV6) if arp::is_ndp(&pkt, l4) => {
                    let i = ifindex(&ctx);
                    if let Some(p) = port(i, PORT_WATCH_ARP) {
                        let _ = arp::ndp(&pkt, &eth, l4, i, p);
                    }
                    TCX_NEXT
                }
                _ => TCX_NEXT,
            }
        }
        _ => TCX_NEXT,
    }
}

/// UDP from `addr` with its header at `l4`: counted (and maybe dropped) when it goes to
/// a cluster port on an interface that counts cluster traffic.
#[inline(always)]
fn cluster(ctx: &TcContext, pkt: &Packet, addr: [u8; 16], l4: usize) -> i32 {
    let Some(dport) = pkt.be16(l4 + 2) else {
        return TCX_NEXT;
    };
    if !corosync::is_cluster_port(dport) {
        return TCX_NEXT;
    }
    let i = ifindex(ctx);
    if port(i, PORT_WATCH_COROSYNC).is_none() {
        return TCX_NEXT;
    }
    if corosync::count_packet(ctx, addr, i) {
        TC_ACT_SHOT
    } else {
        TCX_NEXT
    }
}
