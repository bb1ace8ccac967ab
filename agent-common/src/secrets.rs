//! `secrets` detector ABI: opens of configured secret files (by absolute path).

use crate::{event::EventHeader, proc::ProcCtx};

/// Hash: NUL-padded absolute path ([`PATH_LEN`] bytes) -> path id.
pub const SECRET_PATHS: &str = "SECRET_PATHS";
pub const SECRET_PATHS_CAPACITY: u32 = 64;
/// Longest watchable path (longer ones are refused by the configuration).
pub const PATH_LEN: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretOpenEvent {
    pub header: EventHeader,
    pub proc: ProcCtx,
    /// open(2) flags.
    pub flags: u64,
    /// Index of the path in the configuration.
    pub path_id: u32,
    pub _pad0: u32,
    pub path: [u8; PATH_LEN],
}
const _: () = assert!(core::mem::size_of::<SecretOpenEvent>() == 16 + 96 + 16 + 64);

crate::user_pod!(SecretOpenEvent);
