//! `corosync` detector ABI: cluster traffic (UDP to the corosync/knet ports) counted per
//! source and interface at TC ingress, the member list, the quarantine's drop list, and
//! local cluster daemons (exec, bind to a cluster port).
//!
//! Addresses are 16 bytes everywhere: IPv6 as is, IPv4 as IPv4-mapped IPv6
//! (`::ffff:a.b.c.d`), so one map serves both families.

use crate::{event::EventHeader, proc::ProcCtx};

/// Hash: UDP destination port (host byte order) -> 1. The cluster's ports.
pub const COROSYNC_PORTS: &str = "COROSYNC_PORTS";
pub const COROSYNC_PORTS_CAPACITY: u32 = 16;
/// Hash: member address (16 bytes) -> the member's slot in
/// [`COROSYNC_MEMBER_COUNTS`] (below [`COROSYNC_MEMBERS_CAPACITY`]), chosen by the agent.
pub const COROSYNC_MEMBERS: &str = "COROSYNC_MEMBERS";
pub const COROSYNC_MEMBERS_CAPACITY: u32 = 1024;
/// Per-CPU array of [`MemberCount`], indexed by member slot: a member's packets cost
/// one array slot, not a per-source hash (members are the cluster's normal traffic). A
/// member seen on a second interface (per CPU) is counted in [`COROSYNC_SOURCES`].
pub const COROSYNC_MEMBER_COUNTS: &str = "COROSYNC_MEMBER_COUNTS";
/// LRU per-CPU hash: [`SourceKey`] -> [`SourceCount`].
pub const COROSYNC_SOURCES: &str = "COROSYNC_SOURCES";
pub const COROSYNC_SOURCES_CAPACITY: u32 = 4096;
/// Per-CPU array of [`HotSource`], [`COROSYNC_HOT_SLOTS`] slots: a non-member source is
/// counted in the slot its key hashes to ([`hot_slot`]) when that slot is free or
/// already its own — one array lookup instead of an LRU hash update. The first source
/// to hash to a slot keeps it for the agent's lifetime (never evicted, so its counts
/// only grow: the non-member total relies on it, see [`TOTAL_NON_MEMBER`]; a change
/// that frees slots must fold their counts in first); a source whose slot another holds
/// is counted in [`COROSYNC_SOURCES`].
/// A source's count is its slot's plus its hash entry's, summed over CPUs.
pub const COROSYNC_HOT: &str = "COROSYNC_HOT";
pub const COROSYNC_HOT_SLOTS: u32 = 256;
/// Array of [`MemberEntry`], [`COROSYNC_MEMBER_INDEX_SLOTS`] entries: the member table
/// direct-mapped by [`member_index`], so a packet learns whether its source is a member,
/// and the member's slot, from one array entry and an address compare instead of a hash
/// lookup. An entry two members share says [`ENTRY_SHARED`]:
/// [`COROSYNC_MEMBERS`] decides.
pub const COROSYNC_MEMBER_INDEX: &str = "COROSYNC_MEMBER_INDEX";
pub const COROSYNC_MEMBER_INDEX_SLOTS: u32 = 4096;
/// [`MemberEntry::tag`]: no member has this entry's index.
pub const ENTRY_EMPTY: u32 = 0;
/// [`MemberEntry::tag`]: members share this index; the member hash decides.
pub const ENTRY_SHARED: u32 = 1;
/// Per-CPU array of u64 totals, indexed by the `TOTAL_*` constants.
pub const COROSYNC_TOTALS: &str = "COROSYNC_TOTALS";
pub const TOTAL_MEMBER: u32 = 0;
/// Packets from non-members counted outside a hot slot (in the LRU hash, or not at all):
/// the program does not count a packet it keeps in a hot slot here too, the agent adds
/// the hot slots' counts (one per-CPU line less per packet).
pub const TOTAL_NON_MEMBER: u32 = 1;
pub const TOTAL_DROPPED: u32 = 2;
/// A packet counted in the totals but not per source (the sources map refused it).
pub const TOTAL_UNTRACKED: u32 = 3;
pub const TOTAL_SLOTS: u32 = 4;
/// Hash: source address (16 bytes) -> [`crate::quarantine::Rule`]: cluster traffic
/// from it is dropped (never from a current member).
pub const COROSYNC_DROP: &str = "COROSYNC_DROP";
/// Hash: executable basename ([`crate::maps::ExecWatchKey`]) -> 1: cluster daemons.
pub const COROSYNC_EXEC: &str = "COROSYNC_EXEC";
pub const COROSYNC_EXEC_CAPACITY: u32 = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceKey {
    pub addr: [u8; 16],
    /// Interface the packet entered (ingress ifindex in the agent's namespace).
    pub ifindex: u32,
    /// 1 when the source was in the member map when counted.
    pub member: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCount {
    pub packets: u64,
    pub bytes: u64,
    /// Dropped by a quarantine (included in `packets`).
    pub dropped: u64,
}

/// One slot of [`COROSYNC_HOT`]: free while `count.packets` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HotSource {
    pub key: SourceKey,
    pub count: SourceCount,
}

/// One entry of [`COROSYNC_MEMBER_INDEX`]. The kernel copies an array value without a
/// lock, so a packet may read an entry the agent is rewriting, half old and half new:
/// the tag of a member's entry is a check over its address and slot ([`entry_tag`]),
/// and an entry whose tag does not match what was read is sent to the member hash,
/// which the agent updates before it rewrites any entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberEntry {
    pub addr: [u8; 16],
    /// The member's slot in [`COROSYNC_MEMBER_COUNTS`].
    pub slot: u32,
    /// [`ENTRY_EMPTY`], [`ENTRY_SHARED`], or [`entry_tag`] of `addr` and `slot`: the
    /// one member with this index.
    pub tag: u32,
}

impl MemberEntry {
    /// The entry of the one member `addr` with this index, counted in `slot`.
    pub fn one(addr: [u8; 16], slot: u32) -> MemberEntry {
        MemberEntry {
            addr,
            slot,
            tag: entry_tag(&addr, slot),
        }
    }
}

/// An address as four native-endian 32-bit words: what the packet program computes on
/// (a 16-byte array is byte-aligned, so eBPF would copy and compare it a byte at a
/// time). The byte form of the ABI and this form name the same address.
pub type Words = [u32; 4];

/// The words of an address.
#[inline(always)]
pub fn words(a: &[u8; 16]) -> Words {
    [word(a, 0), word(a, 4), word(a, 8), word(a, 12)]
}

/// A record whose first field is a 16-byte address and which is aligned to at least 4
/// (checked at compile time below), so that field can be read and written as
/// [`Words`]. Sealed: only the records of this module.
pub trait AddrFirst: sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::SourceKey {}
    impl Sealed for super::MemberEntry {}
    impl Sealed for super::HotSource {}
}
impl AddrFirst for SourceKey {}
impl AddrFirst for MemberEntry {}
impl AddrFirst for HotSource {}

/// The words of `r`'s address.
#[inline(always)]
pub fn words_at<T: AddrFirst>(r: &T) -> Words {
    // SAFETY: an AddrFirst record starts with 16 bytes of address at a 4-aligned
    // address (the asserts below); every bit pattern is a valid `Words`.
    unsafe { core::ptr::read((r as *const T).cast::<Words>()) }
}

/// Store `w` as `r`'s address.
#[inline(always)]
pub fn set_words_at<T: AddrFirst>(r: &mut T, w: Words) {
    // SAFETY: as in `words_at`; the 16 bytes are `r`'s own, any byte value is valid.
    unsafe { core::ptr::write((r as *mut T).cast::<Words>(), w) }
}

/// What a packet from `addr` learns from the entry `e` it read at its index: `Some(Some
/// (slot))` a member, `Some(None)` not a member, `None` the member hash decides (shared,
/// or an entry read half-written).
#[inline(always)]
pub fn entry_says(e: &MemberEntry, addr: &[u8; 16]) -> Option<Option<u32>> {
    entry_says_words(e, &words(addr))
}

/// [`entry_says`] on words.
#[inline(always)]
pub fn entry_says_words(e: &MemberEntry, addr: &Words) -> Option<Option<u32>> {
    let ea = words_at(e);
    match e.tag {
        ENTRY_EMPTY => Some(None),
        ENTRY_SHARED => None,
        t if t == entry_tag_words(&ea, e.slot) => Some(same_words(&ea, addr).then_some(e.slot)),
        _ => None,
    }
}

/// Address equality on words (no memcmp in eBPF).
#[inline(always)]
pub fn same_words(a: &Words, b: &Words) -> bool {
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) == 0
}

#[inline(always)]
fn word(a: &[u8; 16], i: usize) -> u32 {
    u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]])
}

/// The check of a member's entry: each word of the address and the slot mixed in
/// turn (multiply, shift, xor), never [`ENTRY_EMPTY`] or [`ENTRY_SHARED`]. An entry read
/// half-written matches its tag only if its mix of two entries' words collides (about
/// one in a billion), and then only for a packet whose source is that mix.
#[inline(always)]
pub fn entry_tag(addr: &[u8; 16], slot: u32) -> u32 {
    entry_tag_words(&words(addr), slot)
}

/// [`entry_tag`] on words.
#[inline(always)]
pub fn entry_tag_words(w: &Words, slot: u32) -> u32 {
    let mut h = 0x2545_f491u32;
    for x in [w[0], w[1], w[2], w[3], slot] {
        h = (h ^ x).wrapping_mul(0x9e37_79b1);
        h ^= h >> 15;
    }
    h | 2
}

/// The four 32-bit words of an address, folded and mixed (Fibonacci hashing).
#[inline(always)]
fn mix(w: &Words, salt: u32) -> u32 {
    (w[0] ^ w[1] ^ w[2] ^ w[3] ^ salt).wrapping_mul(0x9e37_79b1)
}

/// The entry of `addr` in [`COROSYNC_MEMBER_INDEX`] (0..4096).
#[inline(always)]
pub fn member_index(addr: &[u8; 16]) -> u32 {
    member_index_words(&words(addr))
}

/// [`member_index`] on words.
#[inline(always)]
pub fn member_index_words(w: &Words) -> u32 {
    mix(w, 0) >> 20
}

/// The slot of a source in [`COROSYNC_HOT`] (below [`COROSYNC_HOT_SLOTS`]).
#[inline(always)]
pub fn hot_slot(addr: &[u8; 16], ifindex: u32) -> u32 {
    hot_slot_words(&words(addr), ifindex)
}

/// [`hot_slot`] on words.
#[inline(always)]
pub fn hot_slot_words(w: &Words, ifindex: u32) -> u32 {
    mix(w, ifindex.wrapping_mul(0x85eb_ca6b)) >> 24
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberCount {
    /// The interface these packets entered (0: none yet).
    pub ifindex: u32,
    pub _pad: u32,
    pub packets: u64,
    pub bytes: u64,
}

/// A cluster daemon was executed.
pub const LOCAL_EXEC: u32 = 1;
/// A socket was bound to a cluster port.
pub const LOCAL_BIND: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorosyncLocalEvent {
    pub header: EventHeader,
    pub proc: ProcCtx,
    /// Inode of the task's network namespace (0 when unreadable).
    pub netns: u32,
    /// [`LOCAL_EXEC`] or [`LOCAL_BIND`].
    pub what: u32,
    /// Bind only: `AF_INET`/`AF_INET6`, port (host order), address (IPv4 in the first 4
    /// bytes).
    pub family: u16,
    pub port: u16,
    pub _pad: u32,
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<CorosyncLocalEvent>() == 16 + 96 + 32);

/// The words of an IPv4 address's mapped key ([`v4_key`]).
#[inline(always)]
pub const fn v4_words(a: [u8; 4]) -> Words {
    [
        0,
        0,
        u32::from_ne_bytes([0, 0, 0xff, 0xff]),
        u32::from_ne_bytes(a),
    ]
}

/// IPv4 as an IPv4-mapped IPv6 key.
pub const fn v4_key(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

crate::user_pod!(
    SourceKey,
    SourceCount,
    MemberCount,
    HotSource,
    MemberEntry,
    CorosyncLocalEvent
);

// Map keys and values: their sizes are part of the ABI.
const _: () = assert!(core::mem::size_of::<SourceKey>() == 24);
const _: () = assert!(core::mem::size_of::<SourceCount>() == 24);
const _: () = assert!(core::mem::size_of::<MemberCount>() == 24);
const _: () = assert!(core::mem::size_of::<HotSource>() == 48);
const _: () = assert!(core::mem::size_of::<MemberEntry>() == 24);
const _: () = assert!(COROSYNC_MEMBER_INDEX_SLOTS == 1 << 12);
// The records of [`AddrFirst`]: 4-aligned, the 16-byte address first.
const _: () = assert!(core::mem::align_of::<SourceKey>() >= 4);
const _: () = assert!(core::mem::align_of::<MemberEntry>() >= 4);
const _: () = assert!(core::mem::align_of::<HotSource>() >= 4);
const _: () = assert!(core::mem::offset_of!(SourceKey, addr) == 0);
const _: () = assert!(core::mem::offset_of!(MemberEntry, addr) == 0);
const _: () = assert!(core::mem::offset_of!(HotSource, key) == 0);
const _: () = assert!(COROSYNC_HOT_SLOTS == 1 << 8);

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[10] = 0xff;
        k[11] = 0xff;
        k[12..].copy_from_slice(&a);
        k
    }

    #[test]
    fn words_name_the_same_address_as_bytes() {
        let a = [192, 0, 2, 7];
        assert_eq!(words(&v4_key(a)), v4_words(a));
        let e = MemberEntry::one(v4_key(a), 5);
        assert_eq!(words_at(&e), v4_words(a));
        let mut k = SourceKey::default();
        set_words_at(&mut k, v4_words(a));
        assert_eq!(k.addr, v4_key(a));
        assert_eq!(entry_says_words(&e, &v4_words(a)), Some(Some(5)));
        assert_eq!(entry_says(&e, &v4_key([192, 0, 2, 8])), Some(None));
        // IPv6: sixteen distinct bytes, every word in use.
        let v6: [u8; 16] = core::array::from_fn(|i| 0x20 + i as u8);
        let mut h = HotSource::default();
        set_words_at(&mut h, words(&v6));
        assert_eq!(h.key.addr, v6);
        let e = MemberEntry::one(v6, 9);
        assert_eq!(entry_says_words(&e, &words(&v6)), Some(Some(9)));
        assert_eq!(entry_tag_words(&words(&v6), 9), entry_tag(&v6, 9));
        assert_eq!(member_index_words(&words(&v6)), member_index(&v6));
        assert_eq!(hot_slot_words(&words(&v6), 3), hot_slot(&v6, 3));
    }

    #[test]
    fn member_indexes_spread_one_subnet() {
        let mut used = [false; COROSYNC_MEMBER_INDEX_SLOTS as usize];
        let mut shared = 0;
        for i in 1..=32u8 {
            let e = &mut used[member_index(&v4([10, 0, 0, i])) as usize];
            shared += usize::from(*e);
            *e = true;
        }
        // 32 members of one subnet in 4096 entries: at most a few share one.
        assert!(shared <= 2, "{shared} of 32 members share an entry");
    }

    #[test]
    fn hot_slots_spread_one_subnet_and_its_interfaces() {
        let mut used = [false; COROSYNC_HOT_SLOTS as usize];
        for i in 0..=255u8 {
            used[hot_slot(&v4([10, 9, 0, i]), 3) as usize] = true;
        }
        let n = used.iter().filter(|u| **u).count();
        // 256 keys into 256 slots at random fill about 162 (1 - 1/e).
        assert!(n > 140, "256 sources of one /24 use only {n} of 256 slots");
        let a = v4([10, 9, 0, 1]);
        assert_ne!(
            hot_slot(&a, 3),
            hot_slot(&a, 4),
            "one source on two interfaces"
        );
    }
}
