//! The log line of each finding of this detector (the `report` step of the pipeline).

use tracing::warn;

use crate::net::ifname;

use super::ArpFinding;

/// One structured log line; `detail` is the whole finding as JSON.
pub fn report(a: &ArpFinding, detail: &str) {
    let port = ifname(a.ifindex);
    let old_port = a.old_ifindex.map(ifname).unwrap_or_default();
    let old = a
        .old_mac
        .map(|m| format!(" (was {m} on {old_port})"))
        .unwrap_or_default();
    let bridge = ifname(a.domain);
    let vlan = if a.vlan != 0 {
        format!(" VLAN {}", a.vlan)
    } else {
        String::new()
    };
    let msg = format!(
        "{}: {} claimed by {} on {} (bridge {bridge}{vlan}){}",
        a.kind, a.addr, a.mac, port, old
    );
    match a.kind {
        "conflict" | "garp_conflict" | "probe_conflict" | "ipam_live_but_free"
        | "ipam_other_owner" => {
            warn!(target: "nodeward::finding", detector = "arp", finding = a.kind, address = %a.addr, mac = %a.mac, interface = %port, old_interface = %old_port, bridge = %bridge, vlan = a.vlan, detail = %detail, "{msg}")
        }
        _ => {
            tracing::info!(target: "nodeward::finding", detector = "arp", finding = a.kind, address = %a.addr, mac = %a.mac, interface = %port, old_interface = %old_port, bridge = %bridge, vlan = a.vlan, detail = %detail, "{msg}")
        }
    }
}
