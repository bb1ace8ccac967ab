//! The packet program: one TC ingress classifier per interface (`net_tc`) that does
//! everything the detectors need of a frame — ARP/ND observation (`arp`), cluster
//! counting and drops (`corosync`), and the quarantine's drops on the interfaces it
//! names. Direct packet access; protocol and port tests come before any per-interface
//! or per-source map: the settings every frame needs (quarantine present, cluster ports,
//! drop rules present) are one small value, and the interface's settings an inlined
//! array lookup taken only for a frame that matters. A frame that concerns no detector
//! costs a few loads. At line rate a map value's cache line costs more than the
//! instructions around it: the cluster path touches as few as it can.

use agent_common::{
    corosync::{Words, v4_words},
    event::kind,
    packet::{
        NET_PORTS_CAPACITY, NET_PORTS_HIGH_CAPACITY, NetConfig, NetPort, PORT_QUARANTINE,
        PORT_WATCH_ARP, PORT_WATCH_COROSYNC,
    },
    stats,
};
use aya_ebpf::{
    EbpfContext,
    bindings::TC_ACT_SHOT,
    macros::{classifier, map},
    maps::{Array, HashMap},
    programs::TcContext,
};

use crate::{
    arp,
    common::count,
    corosync,
    frame::{self, Packet},
    quarantine,
};

/// The settings every frame's first tests read (one value, written whole by the agent).
#[map(name = "NET_CONFIG")]
static NET_CONFIG: Array<NetConfig> = Array::with_max_entries(1, 0);

#[map(name = "NET_PORTS")]
static NET_PORTS: Array<NetPort> = Array::with_max_entries(NET_PORTS_CAPACITY, 0);
#[map(name = "NET_PORTS_HIGH")]
static NET_PORTS_HIGH: HashMap<u32, NetPort> =
    HashMap::with_max_entries(NET_PORTS_HIGH_CAPACITY, 0);

/// tcx: continue with the next program (another tool's, or the kernel's default).
const TCX_NEXT: i32 = -1;

/// The interface the frame arrived on.
#[inline(always)]
fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: the program's context is the __sk_buff; ifindex is a readable field.
    unsafe { (*(ctx.as_ptr() as *const aya_ebpf::bindings::__sk_buff)).ifindex }
}

/// Does nothing: what BPF_PROG_TEST_RUN itself costs per run, the floor that
/// `nodeward check --packet-cost` measures beside `net_tc`. Never attached.
#[classifier]
pub fn net_floor(_ctx: TcContext) -> i32 {
    TCX_NEXT
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
    let Some(cfg) = NET_CONFIG.get(0) else {
        // Entry 0 of a one-entry array always exists; a frame passed unseen is counted
        // if it ever does not.
        count(kind::ARP, stats::READ_ERROR);
        return TCX_NEXT;
    };
    // A quarantine's drops first: a dropped frame is not observed.
    if cfg.quarantine_ports > 0
        && port(ifindex(&ctx), PORT_QUARANTINE).is_some()
        && quarantine::drop_slot(&ctx).is_some()
    {
        return TC_ACT_SHOT;
    }
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
            // The source is read before the map lookups: the verifier forgets a packet
            // bound across a helper call.
            let Some(saddr) = frame::ipv4_saddr(&pkt, eth.l3) else {
                return TCX_NEXT;
            };
            match cluster_port(&ctx, cfg, &pkt, l4) {
                Some(i) => cluster(&ctx, cfg, v4_words(saddr), i),
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
                Some(frame::IPPROTO_UDP) => {
                    let Some(saddr) = frame::ipv6_saddr_words(&pkt, eth.l3) else {
                        return TCX_NEXT;
                    };
                    match cluster_port(&ctx, cfg, &pkt, l4) {
                        Some(i) => cluster(&ctx, cfg, saddr, i),
                        None => TCX_NEXT,
                    }
                }
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

/// The ingress interface when the UDP datagram with its header at `l4` goes to a
/// cluster port on an interface that counts cluster traffic: the port list is tested
/// before the interface's settings are read.
#[inline(always)]
fn cluster_port(ctx: &TcContext, cfg: &NetConfig, pkt: &Packet, l4: usize) -> Option<u32> {
    let dport = pkt.be16(l4 + 2)?;
    if !cfg.is_cluster_port(dport) {
        return None;
    }
    let i = ifindex(ctx);
    port(i, PORT_WATCH_COROSYNC).map(|_| i)
}

/// A cluster packet from `addr` on interface `i`: counted, and dropped when a
/// quarantine names its source.
#[inline(always)]
fn cluster(ctx: &TcContext, cfg: &NetConfig, addr: Words, i: u32) -> i32 {
    if corosync::count_packet(
        ctx,
        addr,
        i,
        cfg.cluster_drop_rules > 0,
        cfg.has_members != 0,
    ) {
        TC_ACT_SHOT
    } else {
        TCX_NEXT
    }
}
