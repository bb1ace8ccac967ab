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

/// Array of one [`PortBits`]: the UDP ports of cluster traffic as a bitmap (one array
/// lookup and a bit test per UDP packet, instead of a hash lookup).
pub const COROSYNC_PORT_BITS: &str = "COROSYNC_PORT_BITS";

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortBits {
    pub bits: [u64; 1024],
}

impl Default for PortBits {
    fn default() -> Self {
        PortBits { bits: [0; 1024] }
    }
}

impl PortBits {
    pub fn set(&mut self, port: u16) {
        self.bits[usize::from(port >> 6)] |= 1 << (port & 63);
    }
    pub fn has(&self, port: u16) -> bool {
        self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }
}

/// Array of one u32: how many cluster-drop rules exist (the drop map is looked up only
/// when there is one).
pub const COROSYNC_DROPS: &str = "COROSYNC_DROPS";

/// Array of one u32: how many interfaces carry [`PORT_QUARANTINE`] (a frame's
/// interface settings are looked up for the quarantine only when one does).
pub const QUARANTINE_PORTS: &str = "QUARANTINE_PORTS";

crate::user_pod!(NetPort, PortBits);

const _: () = assert!(core::mem::size_of::<NetPort>() == 12);
const _: () = assert!(core::mem::size_of::<PortBits>() == 8192);
