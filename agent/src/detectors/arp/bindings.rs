//! Live IP -> MAC bindings as seen on the wire (the kernel's ARP_BINDINGS map), with
//! the `arp` detector's conflict state: ground truth for IPAM reconcilers
//! (`nodeward bindings`, GET /bindings).

use std::sync::{Arc, Mutex};

use agent_common::arp::{Binding, BindingKey};
use aya::maps::{HashMap as BpfHashMap, MapData};
use serde::Serialize;

use crate::{
    detectors::arp::ActiveConflict,
    net::{Mac, ifname},
    time::{Now, rfc3339_ms},
};

pub type Conflicts = Arc<Mutex<Vec<ActiveConflict>>>;

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Row {
    pub address: std::net::IpAddr,
    pub mac: Mac,
    pub interface: String,
    /// The L2 domain: the bridge (or the interface itself when it is in no bridge).
    #[serde(default)]
    pub bridge: String,
    pub vlan: u16,
    pub first_seen: String,
    pub last_seen: String,
    /// Another live MAC claims this address too.
    pub conflict: bool,
    /// Every MAC in the conflict, with its interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflict_macs: Vec<(Mac, String)>,
}

pub struct View {
    map: Mutex<Option<BpfHashMap<MapData, BindingKey, Binding>>>,
    pub conflicts: Conflicts,
}

impl View {
    pub fn new(
        map: Option<BpfHashMap<MapData, BindingKey, Binding>>,
        conflicts: Conflicts,
    ) -> View {
        View {
            map: Mutex::new(map),
            conflicts,
        }
    }

    /// Current bindings, optionally only those seen on `interface`.
    pub fn rows(&self, interface: Option<&str>) -> Vec<Row> {
        let now = Now::system();
        let wall = |boot_ns: u64| {
            let ms = now
                .wall_ms
                .saturating_sub(now.boot_ns.saturating_sub(boot_ns) / 1_000_000);
            rfc3339_ms(ms)
        };
        let conflicts = self.conflicts.lock().expect("conflicts lock").clone();
        let guard = self.map.lock().expect("bindings lock");
        let Some(map) = guard.as_ref() else {
            return Vec::new();
        };
        let mut rows: Vec<Row> = map
            .iter()
            .filter_map(Result::ok)
            .map(|(k, b)| {
                let address = if k.family == agent_common::session::AF_INET6 {
                    std::net::IpAddr::from(k.addr)
                } else {
                    std::net::IpAddr::from([k.addr[0], k.addr[1], k.addr[2], k.addr[3]])
                };
                let c = conflicts
                    .iter()
                    .find(|c| c.addr == address && c.domain == k.domain && c.vlan == k.vlan);
                Row {
                    address,
                    mac: Mac(b.mac),
                    interface: ifname(b.ifindex),
                    bridge: ifname(k.domain),
                    vlan: k.vlan,
                    first_seen: wall(b.first_seen_ns),
                    last_seen: wall(b.last_seen_ns),
                    conflict: c.is_some(),
                    conflict_macs: c
                        .map(|c| c.macs.iter().map(|(m, i)| (*m, ifname(*i))).collect())
                        .unwrap_or_default(),
                }
            })
            .filter(|r| {
                interface
                    .is_none_or(|i| r.interface == i || r.conflict_macs.iter().any(|(_, n)| n == i))
            })
            .collect();
        rows.sort_by(|a, b| (a.address, &a.bridge, a.vlan).cmp(&(b.address, &b.bridge, b.vlan)));
        rows
    }
}
