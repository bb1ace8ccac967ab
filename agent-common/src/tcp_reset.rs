//! `tcp_reset` detector ABI: resets per direction and reason, and per peer.

/// Per-CPU hash: [`ResetKey`] -> count.
pub const RESET_COUNTS: &str = "RESET_COUNTS";
/// LRU per-CPU hash: [`PeerKey`] -> count (bounded top-peers table).
pub const RESET_PEERS: &str = "RESET_PEERS";
pub const RESET_PEERS_CAPACITY: u32 = 4096;

pub const DIR_SENT: u32 = 1;
pub const DIR_RECEIVED: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResetKey {
    /// [`DIR_SENT`] or [`DIR_RECEIVED`].
    pub direction: u32,
    /// `enum sk_rst_reason` value (sent only; 0 for received).
    pub reason: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerKey {
    pub direction: u32,
    pub family: u16,
    pub _pad: u16,
    /// The peer: the one reset (sent) or the one resetting us (received). IPv4 in the
    /// first 4 bytes.
    pub addr: [u8; 16],
}

crate::user_pod!(ResetKey, PeerKey);

// Map keys and values: their sizes are part of the ABI.
const _: () = assert!(core::mem::size_of::<ResetKey>() == 8);
const _: () = assert!(core::mem::size_of::<PeerKey>() == 24);
