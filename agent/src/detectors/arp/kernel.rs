//! Kernel maps and attachments of the `arp` detector.

use aya::maps::{HashMap as BpfHashMap, MapData};

use crate::{
    config::Config,
    kernel::loader::{Kernel, bridge_ports},
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
        self.sync_tc("arp_tc", wanted)
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
