//! Kernel maps and attachments of the `arp` detector.

use aya::maps::{HashMap as BpfHashMap, MapData};

use crate::kernel::loader::Kernel;

impl Kernel {
    /// A read-only handle on the ARP bindings map.
    pub fn arp_bindings(
        &self,
    ) -> Option<BpfHashMap<MapData, agent_common::arp::BindingKey, agent_common::arp::Binding>>
    {
        let data = self.map_handle(agent_common::arp::ARP_BINDINGS).ok()?;
        BpfHashMap::try_from(aya::maps::Map::LruHashMap(data)).ok()
    }
}
