//! Kernel maps and attachments of the `arp` detector.

use aya::maps::{HashMap as BpfHashMap, MapData};

use agent_common::arp::{ARP_PORTS, ArpPort, PORT_BRIDGE};

use crate::{
    config::Config,
    kernel::loader::{Kernel, LoadError, bridge_ports, sync_hash},
    net::l2_port,
};

impl Kernel {
    /// Attach the ARP observer to the configured interfaces, or to every bridge port
    /// when none are configured. Returns the interfaces watched and the failures.
    pub fn sync_arp_interfaces(&mut self, config: &Config) -> (usize, Vec<String>) {
        if !config.detectors.arp.enabled {
            return (0, Vec::new());
        }
        let wanted: Vec<String> = if config.detectors.arp.interfaces.is_empty() {
            bridge_ports()
        } else {
            config.detectors.arp.interfaces.clone()
        };
        let (n, mut errors) = self.sync_tc("arp_tc", wanted);
        if let Err(e) = self.sync_arp_ports() {
            errors.push(format!("L2 domains of the watched interfaces not set: {e}"));
        }
        (n, errors)
    }

    /// The L2 domain of every interface the observer is attached to (bridge membership
    /// changes with every rescan).
    fn sync_arp_ports(&mut self) -> Result<(), LoadError> {
        let mut ports: Vec<(u32, ArpPort)> = self
            .tc_attached
            .get("arp_tc")
            .into_iter()
            .flatten()
            .filter_map(|name| l2_port(name))
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

/// Attach the ARP observer to new interfaces (bridge ports come and go), on the kernel owner thread; failures are logged, the count exported.
pub fn sync_interfaces(
    kernel: &crate::kernel::owner::Handle,
    config: &Config,
    metrics: &crate::detectors::metrics::Metrics,
) {
    let config = config.clone();
    let (n, errors) = kernel.call(move |k| k.sync_arp_interfaces(&config));
    for e in errors {
        tracing::warn!(error = %e, "ARP observer not attached");
    }
    metrics.arp.set_interfaces(n);
}
