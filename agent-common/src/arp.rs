//! `arp` detector ABI: IP -> MAC bindings seen on bridge ports, and claim events.
//!
//! A binding belongs to an L2 domain: the bridge a port is enslaved to (or the
//! interface itself when it is in no bridge) and the frame's outer VLAN. The same
//! address in two domains is two bindings, never a conflict.

use crate::event::EventHeader;

/// LRU hash: [`BindingKey`] -> [`Binding`], the kernel's view of who answers for an IP.
pub const ARP_BINDINGS: &str = "ARP_BINDINGS";
pub const ARP_BINDINGS_CAPACITY: u32 = 65536;

/// Event kinds in [`ArpEvent::kind`].
pub const ARP_NEW: u32 = 1;
/// A known address claimed by another MAC (the binding now points to the new MAC).
pub const ARP_CHANGE: u32 = 2;
/// An RFC 5227 probe for an address someone else holds.
pub const ARP_PROBE_CONFLICT: u32 = 3;

/// Bits of [`ArpEvent::flags`].
pub const ARP_F_GRATUITOUS: u16 = 1;
pub const ARP_F_REPLY: u16 = 2;
pub const ARP_F_VLAN: u16 = 4;
/// The claim was seen at the bridge device (not on a member port): the agent attributes
/// it to a port through the bridge's forwarding database.
pub const ARP_F_AT_BRIDGE: u16 = 8;
/// The previous holder's binding was recorded at the bridge device.
pub const ARP_F_OLD_AT_BRIDGE: u16 = 16;

/// Minimum time between two CHANGE/PROBE events for one address (kernel rate limit;
/// see [`Binding::grace`] for the one exception).
pub const ARP_EVENT_INTERVAL_NS: u64 = 100_000_000;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BindingKey {
    /// IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    pub family: u16,
    /// Outer VLAN id (frame tag or skb metadata); 0 untagged.
    pub vlan: u16,
    /// [`crate::packet::NetPort::domain`] of the interface the claim arrived on.
    pub domain: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    pub mac: [u8; 6],
    pub vlan: u16,
    pub ifindex: u32,
    /// 1 while one more change may be reported inside the rate-limit interval: the
    /// previous holder answering right after a takeover (the agent's active check) is
    /// the conflict itself and is never rate-limited away. Spent on use; set again by
    /// each change reported outside the interval (at most two events per interval).
    pub grace: u32,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub last_event_ns: u64,
}
const _: () = assert!(core::mem::size_of::<Binding>() == 40);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpEvent {
    pub header: EventHeader,
    /// [`ARP_NEW`], [`ARP_CHANGE`] or [`ARP_PROBE_CONFLICT`].
    pub kind: u32,
    /// Interface the claim arrived on (a bridge port).
    pub ifindex: u32,
    pub flags: u16,
    /// Outer VLAN id (part of the domain); 0 untagged.
    pub vlan: u16,
    pub family: u16,
    /// Inner VLAN id of a QinQ frame (reported, not part of the domain); 0 if none.
    pub inner_vlan: u16,
    /// The claimed address (IPv4 in the first 4 bytes).
    pub addr: [u8; 16],
    /// The claimer.
    pub mac: [u8; 6],
    /// The previous holder (CHANGE, PROBE_CONFLICT).
    pub old_mac: [u8; 6],
    pub old_ifindex: u32,
    /// When the previous holder was last seen claiming it.
    pub old_last_seen_ns: u64,
    /// The L2 domain ([`crate::packet::NetPort::domain`]).
    pub domain: u32,
    pub _pad1: u32,
}
const _: () = assert!(core::mem::size_of::<ArpEvent>() == 80);

crate::user_pod!(BindingKey, Binding, ArpEvent);

// Map keys and values: their sizes are part of the ABI.
const _: () = assert!(core::mem::size_of::<BindingKey>() == 24);
