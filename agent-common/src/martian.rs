//! `martian` detector ABI: kernel drops of packets with impossible source addresses
//! (the kfree_skb raw tracepoint with martian drop reasons), per interface and reason, and per source.

/// Array indexed by drop reason value: 1 for the reasons counted (filled from BTF
/// names; a reason at or above the capacity, e.g. a subsystem's, is never counted).
pub const MARTIAN_REASONS: &str = "MARTIAN_REASONS";
pub const MARTIAN_REASONS_CAPACITY: u32 = 1024;
/// Per-CPU hash: [`MartianKey`] -> drops.
pub const MARTIAN_COUNTS: &str = "MARTIAN_COUNTS";
/// LRU per-CPU hash: [`MartianSource`] -> drops (bounded top-sources table).
pub const MARTIAN_SOURCES: &str = "MARTIAN_SOURCES";
pub const MARTIAN_SOURCES_CAPACITY: u32 = 4096;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MartianKey {
    pub ifindex: u32,
    /// Inode of the interface's network namespace.
    pub netns: u32,
    /// `enum skb_drop_reason` value.
    pub reason: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MartianSource {
    pub key: MartianKey,
    /// IPv4 source address as on the wire.
    pub saddr: [u8; 4],
    pub _pad: u32,
}

crate::user_pod!(MartianKey, MartianSource);

// Map keys and values: their sizes are part of the ABI.
const _: () = assert!(core::mem::size_of::<MartianKey>() == 16);
const _: () = assert!(core::mem::size_of::<MartianSource>() == 24);
