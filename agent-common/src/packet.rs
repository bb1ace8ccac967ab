//! The packet path's shared ABI: one TC program (`net_tc`) per interface does what every
//! detector needs of a frame (ARP/ND observation for `arp`, cluster counting and drops
//! for `corosync`). Which of them it does on an interface is that interface's
//! [`NetPort::flags`].

/// Array indexed by ifindex (below [`NET_PORTS_CAPACITY`]) -> [`NetPort`]: one
/// inlined array lookup per relevant frame. Interfaces with a larger ifindex are in
/// [`NET_PORTS_HIGH`].
pub const NET_PORTS: &str = "NET_PORTS";
pub const NET_PORTS_CAPACITY: u32 = 65536;
/// Hash: ifindex (≥ [`NET_PORTS_CAPACITY`]) -> [`NetPort`].
pub const NET_PORTS_HIGH: &str = "NET_PORTS_HIGH";
pub const NET_PORTS_HIGH_CAPACITY: u32 = 4096;

/// Bit of [`NetPort::flags`]: the interface is a bridge device (frames seen there were
/// already seen on a port, or are for the host).
pub const PORT_BRIDGE: u32 = 1;
/// Observe ARP and neighbour discovery on this interface (`arp`).
pub const PORT_WATCH_ARP: u32 = 2;
/// Count (and drop quarantined) cluster traffic on this interface (`corosync`).
pub const PORT_WATCH_COROSYNC: u32 = 4;
/// A quarantine names this interface: frames from quarantined sources (MAC, IP, ARP
/// claim) are dropped here before anything else looks at them.
pub const PORT_QUARANTINE: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetPort {
    /// ifindex of the bridge the interface is in (its own for a bridge or a lone
    /// interface): the L2 domain of ARP bindings.
    pub domain: u32,
    pub flags: u32,
    /// The VLAN an untagged frame seen here belongs to: the port's PVID on a bridge
    /// that filters by VLAN (the bridge classifies untagged frames after TC ingress,
    /// so the frame and the skb carry no tag yet), else 0.
    pub pvid: u16,
    pub _pad: u16,
}

/// Array of one [`NetConfig`]: the settings every frame's first tests read, together
/// in one small value (at most two cache lines, where separate maps cost a line each).
pub const NET_CONFIG: &str = "NET_CONFIG";
/// How many cluster ports [`NetConfig`] holds (the configuration allows no more).
pub const CLUSTER_PORTS_MAX: usize = 16;

/// What the packet program reads before any per-interface or per-source map. The agent
/// writes it whole from one place (`Kernel::write_net_config`), so its writers (the
/// interfaces, the cluster counter, the quarantine) never overwrite each other's fields.
/// The kernel copies an array update in place: a frame read meanwhile may see old and
/// new fields mixed, which misjudges that one frame at most.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// How many interfaces carry [`PORT_QUARANTINE`] (a frame's interface settings are
    /// looked up for the quarantine only when one does).
    pub quarantine_ports: u32,
    /// How many entries of `cluster_ports` are used.
    pub n_cluster_ports: u32,
    /// The UDP ports of cluster traffic, the first `n_cluster_ports` in use (a short
    /// scan of one line instead of a lookup).
    pub cluster_ports: [u16; CLUSTER_PORTS_MAX],
    /// How many cluster-drop rules exist (the drop map is looked up only when there is
    /// one).
    pub cluster_drop_rules: u32,
    /// 1 when the member table holds at least one member: without one, every cluster
    /// source is a non-member and the member index is not read. (With it the value is
    /// a multiple of 8 bytes, as the kernel rounds an array value, with no byte left
    /// undefined.)
    pub has_members: u32,
}

impl NetConfig {
    /// The cluster ports in use.
    pub fn cluster_ports(&self) -> &[u16] {
        let n = (self.n_cluster_ports as usize).min(CLUSTER_PORTS_MAX);
        &self.cluster_ports[..n]
    }

    /// Sets the cluster ports; `false` (and nothing changed) when there are more than
    /// [`CLUSTER_PORTS_MAX`].
    pub fn set_cluster_ports(&mut self, ports: &[u16]) -> bool {
        if ports.len() > CLUSTER_PORTS_MAX {
            return false;
        }
        self.cluster_ports = [0; CLUSTER_PORTS_MAX];
        self.cluster_ports[..ports.len()].copy_from_slice(ports);
        self.n_cluster_ports = ports.len() as u32;
        true
    }

    /// Whether UDP port `port` carries cluster traffic (the packet program's test,
    /// unrolled: no more compares than ports in use).
    #[inline(always)]
    pub fn is_cluster_port(&self, port: u16) -> bool {
        let n = self.n_cluster_ports as usize;
        for i in 0..CLUSTER_PORTS_MAX {
            if i >= n {
                return false;
            }
            if self.cluster_ports[i] == port {
                return true;
            }
        }
        false
    }
}

crate::user_pod!(NetPort, NetConfig);

const _: () = assert!(core::mem::size_of::<NetPort>() == 12);
const _: () = assert!(core::mem::size_of::<NetConfig>() == 48);
const _: () = assert!(CLUSTER_PORTS_MAX == crate::corosync::COROSYNC_PORTS_CAPACITY as usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ports_are_the_ones_set_and_no_more_than_fit() {
        let mut c = NetConfig::default();
        assert!(!c.is_cluster_port(0), "no port while none is set");
        assert!(c.set_cluster_ports(&[5405, 5404]));
        assert_eq!(c.cluster_ports(), &[5405, 5404]);
        assert!(c.is_cluster_port(5405) && c.is_cluster_port(5404));
        assert!(!c.is_cluster_port(5406));
        // An unused slot (zero) is never a port, even for port 0.
        assert!(!c.is_cluster_port(0));
        let mut all = [0u16; CLUSTER_PORTS_MAX];
        for (i, p) in all.iter_mut().enumerate() {
            *p = i as u16 + 1;
        }
        assert!(c.set_cluster_ports(&all));
        assert!(c.is_cluster_port(CLUSTER_PORTS_MAX as u16));
        let mut too_many = [0u16; CLUSTER_PORTS_MAX + 1];
        for (i, p) in too_many.iter_mut().enumerate() {
            *p = i as u16 + 1;
        }
        assert!(!c.set_cluster_ports(&too_many));
        assert_eq!(c.cluster_ports(), &all[..], "unchanged when too many");
        assert!(c.set_cluster_ports(&[]));
        assert!(!c.is_cluster_port(1));
    }
}
