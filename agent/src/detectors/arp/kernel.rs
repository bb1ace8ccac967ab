//! Kernel maps and attachments of the `arp` detector.

use aya::maps::{HashMap as BpfHashMap, MapData};

use agent_common::arp::{ARP_PORTS, ArpPort, PORT_BRIDGE};

use crate::{
    config::Config,
    kernel::loader::{Kernel, LoadError, TcSync, sync_hash},
    net::Links,
};

impl Kernel {
    /// Attach the ARP observer to the configured interfaces, or to every bridge and
    /// bridge port when none are configured, and write each one's L2 domain.
    pub fn sync_arp_interfaces(&mut self, config: &Config, links: &Links) -> TcSync {
        if !config.detectors.arp.enabled {
            return TcSync::default();
        }
        let wanted: Vec<String> = if config.detectors.arp.interfaces.is_empty() {
            links.bridges_and_ports()
        } else {
            config.detectors.arp.interfaces.clone()
        };
        let mut sync = self.sync_tc("arp_tc", wanted, links);
        if let Err(e) = self.sync_arp_ports(links) {
            sync.new_errors
                .push(format!("L2 domains of the watched interfaces not set: {e}"));
        }
        sync
    }

    /// The L2 domain of every interface the observer is attached to (bridge membership
    /// changes with every link event).
    fn sync_arp_ports(&mut self, links: &Links) -> Result<(), LoadError> {
        let mut ports: Vec<(u32, ArpPort)> = self
            .tc_attached
            .get("arp_tc")
            .into_iter()
            .flatten()
            .filter_map(|(name, _)| links.l2_port(name))
            .map(|p| {
                (
                    p.ifindex,
                    ArpPort {
                        domain: p.domain,
                        flags: if p.is_bridge { PORT_BRIDGE } else { 0 },
                    },
                )
            })
            .collect();
        ports.sort_by_key(|(i, _)| *i);
        sync_hash(self, ARP_PORTS, &ports)
    }

    /// A read-only handle on the ARP bindings map.
    pub fn arp_bindings(
        &self,
    ) -> Option<BpfHashMap<MapData, agent_common::arp::BindingKey, agent_common::arp::Binding>>
    {
        let data = self.map_handle(agent_common::arp::ARP_BINDINGS).ok()?;
        BpfHashMap::try_from(aya::maps::Map::LruHashMap(data)).ok()
    }
}

/// Attach the ARP observer to new interfaces (bridge ports come and go), on the kernel
/// owner thread; each failure is logged once, the counts exported.
pub fn sync_interfaces(
    kernel: &crate::kernel::owner::Handle,
    config: &Config,
    links: &Links,
    metrics: &crate::detectors::metrics::Metrics,
) {
    let (config, links) = (config.clone(), links.clone());
    let sync = kernel.call(move |k| k.sync_arp_interfaces(&config, &links));
    for e in sync.new_errors {
        tracing::warn!(error = %e, "ARP observer not attached");
    }
    metrics.arp.set_interfaces(sync.attached, sync.failing);
}
