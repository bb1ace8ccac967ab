//! Port attribution through the bridge's forwarding database: a claim seen at the bridge
//! device (its port not watched, a frame for the host, a bridge held promiscuous) names
//! the member port the bridge learned the claimant's MAC on, never the bridge itself
//! unless the claimant is the host.

use agent_common::arp::{ARP_F_AT_BRIDGE, ARP_F_OLD_AT_BRIDGE, ArpEvent};

use crate::net::{Learned, Mac, links::fdb_lookup};

/// The event with its interfaces attributed to member ports, `None` when it needs no
/// attribution. An unknown MAC (not learned, or aged out) keeps the bridge.
pub fn attribute(e: &ArpEvent) -> Option<ArpEvent> {
    if e.flags & (ARP_F_AT_BRIDGE | ARP_F_OLD_AT_BRIDGE) == 0 {
        return None;
    }
    let mut fixed = *e;
    if e.flags & ARP_F_AT_BRIDGE != 0
        && let Some(port) = port_of(e.domain, e.mac, e.vlan)
    {
        fixed.ifindex = port;
    }
    if e.flags & ARP_F_OLD_AT_BRIDGE != 0
        && let Some(port) = port_of(e.domain, e.old_mac, e.vlan)
    {
        fixed.old_ifindex = port;
    }
    Some(fixed)
}

fn port_of(bridge: u32, mac: [u8; 6], vlan: u16) -> Option<u32> {
    match fdb_lookup(bridge, Mac(mac), vlan) {
        Ok(Some(Learned::Port(p))) => Some(p),
        Ok(Some(Learned::Host)) | Ok(None) => None,
        Err(e) => {
            tracing::debug!(error = %e, bridge, mac = %Mac(mac), "forwarding database lookup failed; the claim stays on the bridge");
            None
        }
    }
}
