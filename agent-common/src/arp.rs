//! `arp` detector ABI: IP -> MAC bindings seen on bridge ports, and claim events.

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

/// Minimum time between two CHANGE/PROBE events for one address (kernel rate limit).
pub const ARP_EVENT_INTERVAL_NS: u64 = 100_000_000;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BindingKey {
    /// IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    pub family: u16,
    pub _pad: [u8; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    pub mac: [u8; 6],
    pub vlan: u16,
    pub ifindex: u32,
    pub _pad0: u32,
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
    pub vlan: u16,
    pub family: u16,
    pub _pad0: u16,
    /// The claimed address (IPv4 in the first 4 bytes).
    pub addr: [u8; 16],
    /// The claimer.
    pub mac: [u8; 6],
    /// The previous holder (CHANGE, PROBE_CONFLICT).
    pub old_mac: [u8; 6],
    pub old_ifindex: u32,
    /// When the previous holder was last seen claiming it.
    pub old_last_seen_ns: u64,
}
const _: () = assert!(core::mem::size_of::<ArpEvent>() == 72);

crate::user_pod!(BindingKey, Binding, ArpEvent);

// Map keys and values: their sizes are part of the ABI.
const _: () = assert!(core::mem::size_of::<BindingKey>() == 24);
