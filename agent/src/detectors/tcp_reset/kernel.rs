//! Kernel maps and attachments of the `tcp_reset` detector.

use aya::maps::MapData;

use crate::kernel::loader::Kernel;

impl Kernel {
    /// A read-only handle on the per-peer reset counts.
    pub fn reset_peers(
        &self,
    ) -> Option<aya::maps::PerCpuHashMap<MapData, agent_common::tcp_reset::PeerKey, u64>> {
        let data = self.map_handle(agent_common::tcp_reset::RESET_PEERS).ok()?;
        aya::maps::PerCpuHashMap::try_from(aya::maps::Map::PerCpuLruHashMap(data)).ok()
    }

    /// A read-only handle on the reset counts by direction and reason.
    pub fn reset_counts(
        &self,
    ) -> Option<aya::maps::PerCpuHashMap<MapData, agent_common::tcp_reset::ResetKey, u64>> {
        let data = self
            .map_handle(agent_common::tcp_reset::RESET_COUNTS)
            .ok()?;
        aya::maps::PerCpuHashMap::try_from(aya::maps::Map::PerCpuHashMap(data)).ok()
    }
}
