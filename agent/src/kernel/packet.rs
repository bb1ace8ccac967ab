//! The packet program (`net_tc`): one TC ingress program per interface, attached to
//! every interface a packet detector watches, told per interface what to do by the
//! `NET_PORTS` array (L2 domain, bridge or not, ARP and/or cluster traffic).

use std::collections::BTreeMap;

use agent_common::packet::{
    NET_PORTS, NET_PORTS_CAPACITY, NET_PORTS_HIGH, NetPort, PORT_BRIDGE, PORT_WATCH_ARP,
    PORT_WATCH_COROSYNC,
};

use crate::{
    config::Config,
    kernel::loader::{Kernel, LoadError, sync_hash},
    net::Links,
};

/// The packet program's name in the eBPF object.
pub const NET_TC: &str = "net_tc";

/// Attachments of one detector's interfaces after a [`Kernel::sync_packet_interfaces`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// Interfaces it watches.
    pub attached: usize,
    /// Interfaces it should watch but does not (absent, or the attach failed).
    pub failing: usize,
}

#[derive(Debug, Default)]
pub struct PacketSync {
    pub arp: Watched,
    pub corosync: Watched,
    /// Failures not reported before.
    pub new_errors: Vec<String>,
}

impl Kernel {
    /// Attach the packet program to every interface the ARP observer or the cluster
    /// counter should watch (their config sections say which), and write each one's
    /// settings.
    pub fn sync_packet_interfaces(&mut self, config: &Config, links: &Links) -> PacketSync {
        let arp = config.detectors.arp.watched(links);
        let corosync = config.detectors.corosync.watched(links);
        let mut wanted: Vec<String> = arp.iter().chain(&corosync).cloned().collect();
        wanted.sort();
        wanted.dedup();
        let sync = self.sync_tc(NET_TC, wanted, links);
        let mut new_errors = sync.new_errors;
        let on = self.tc_attached.get(NET_TC).cloned().unwrap_or_default();
        let mut ports = BTreeMap::new();
        for (name, ifindex) in &on {
            let Some(l2) = links.l2_port(name) else {
                continue;
            };
            let mut flags = if l2.is_bridge { PORT_BRIDGE } else { 0 };
            if arp.contains(name) {
                flags |= PORT_WATCH_ARP;
            }
            if corosync.contains(name) {
                flags |= PORT_WATCH_COROSYNC;
            }
            ports.insert(
                *ifindex,
                NetPort {
                    domain: l2.domain,
                    flags,
                },
            );
        }
        if let Err(e) = self.write_ports(ports) {
            new_errors.push(format!(
                "interface settings of the packet program not written: {e}"
            ));
        }
        let watched = |list: &[String]| Watched {
            attached: list.iter().filter(|n| on.contains_key(*n)).count(),
            failing: list.iter().filter(|n| !on.contains_key(*n)).count(),
        };
        PacketSync {
            arp: watched(&arp),
            corosync: watched(&corosync),
            new_errors,
        }
    }

    /// Make `NET_PORTS` (and `NET_PORTS_HIGH`) hold exactly `ports`.
    pub(crate) fn write_ports(&mut self, ports: BTreeMap<u32, NetPort>) -> Result<(), LoadError> {
        let stale: Vec<u32> = self
            .packet_ports
            .keys()
            .filter(|i| **i < NET_PORTS_CAPACITY && !ports.contains_key(i))
            .copied()
            .collect();
        {
            let map = self
                .ebpf_mut()
                .map_mut(NET_PORTS)
                .ok_or(LoadError::MissingMap(NET_PORTS))?;
            let err = |source| LoadError::Map {
                name: NET_PORTS,
                source,
            };
            let mut array: aya::maps::Array<_, NetPort> =
                aya::maps::Array::try_from(map).map_err(err)?;
            for i in stale {
                array.set(i, &NetPort::default(), 0).map_err(err)?;
            }
            for (i, p) in ports.range(..NET_PORTS_CAPACITY) {
                array.set(*i, p, 0).map_err(err)?;
            }
        }
        let high: Vec<(u32, NetPort)> = ports
            .range(NET_PORTS_CAPACITY..)
            .map(|(i, p)| (*i, *p))
            .collect();
        sync_hash(self, NET_PORTS_HIGH, &high)?;
        self.packet_ports = ports;
        Ok(())
    }
}
