//! `secrets` detector ABI: opens of configured secret files. Matched two ways:
//! by path at `sys_enter_openat*` (exact absolute path, or any file below a
//! `dir/*` directory), which also sees files that do not exist yet; and by inode at
//! `sys_exit_openat*` (the opened file's device and inode), which also sees opens by
//! relative path, through symlinks, hard links and bind mounts. One event per open,
//! reported at syscall exit with its result.

use crate::{event::EventHeader, proc::ProcCtx};

/// LPM trie: NUL-padded absolute path ([`PATH_LEN`] bytes) -> path id. An exact file
/// is keyed with its terminating NUL (prefix = 8 * (len + 1) bits), so it matches only
/// itself; a `dir/*` entry is keyed `dir/` without NUL, so it matches every path below.
pub const SECRET_PATHS: &str = "SECRET_PATHS";
pub const SECRET_PATHS_CAPACITY: u32 = 64;
/// Hash: the first [`PREFIX_LEN`] bytes of every watched path -> 1. A cheap first
/// filter: the full path is read only for opens whose path starts like a secret's.
pub const SECRET_PREFIXES: &str = "SECRET_PREFIXES";
pub const PREFIX_LEN: usize = 8;
/// Hash: [`InodeKey`] -> [`InodeWatch`]: the secret files that exist now.
pub const SECRET_INODES: &str = "SECRET_INODES";
pub const SECRET_INODES_CAPACITY: u32 = 1024;
/// LRU hash: thread id -> [`Pending`]: a path match waiting for its syscall exit.
pub const SECRET_PENDING: &str = "SECRET_PENDING";
pub const SECRET_PENDING_CAPACITY: u32 = 4096;
/// Longest watchable path (longer ones are refused by the configuration).
pub const PATH_LEN: usize = 64;

/// How an open was matched.
pub const VIA_PATH: u32 = 1;
pub const VIA_INODE: u32 = 2;

/// A file by device (kernel `dev_t` encoding: major << 20 | minor) and inode number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InodeWatch {
    pub path_id: u32,
    pub _pad: u32,
    /// The configured (or, for a `dir/*` entry, the found) path, NUL-padded.
    pub path: [u8; PATH_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub flags: u64,
    pub path_id: u32,
    pub _pad: u32,
    pub path: [u8; PATH_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretOpenEvent {
    pub header: EventHeader,
    pub proc: ProcCtx,
    /// open(2) flags (via path), or the opened file's `f_flags` (via inode: the access
    /// mode is there, `O_CREAT` is not).
    pub flags: u64,
    /// Index of the path in the configuration.
    pub path_id: u32,
    /// [`VIA_PATH`] or [`VIA_INODE`].
    pub via: u32,
    /// The syscall's result: a file descriptor, or a negative errno.
    pub ret: i64,
    pub path: [u8; PATH_LEN],
    /// The process's argv, NUL-separated ([`ARGS_LEN`] bytes at most).
    pub args_len: u32,
    /// 1 when argv was longer than [`ARGS_LEN`].
    pub args_truncated: u32,
    pub args: [u8; ARGS_LEN],
}
const _: () = assert!(core::mem::size_of::<SecretOpenEvent>() == 16 + 96 + 24 + 64 + 8 + 256);

/// Bytes of argv carried by a [`SecretOpenEvent`].
pub const ARGS_LEN: usize = 256;

impl SecretOpenEvent {
    /// argv, split at the NULs (trailing NULs carry nothing).
    #[cfg(feature = "user")]
    pub fn argv(&self) -> std::vec::Vec<std::string::String> {
        let block = &self.args[..(self.args_len as usize).min(ARGS_LEN)];
        let end = block.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if end == 0 {
            return std::vec::Vec::new();
        }
        block[..end]
            .split(|&b| b == 0)
            .map(|a| std::string::String::from_utf8_lossy(a).into_owned())
            .collect()
    }
}

crate::user_pod!(InodeKey, InodeWatch, Pending, SecretOpenEvent);

// Map keys and values: their sizes are part of the ABI.
const _: () = assert!(core::mem::size_of::<InodeKey>() == 16);
const _: () = assert!(core::mem::size_of::<InodeWatch>() == 8 + PATH_LEN);
const _: () = assert!(core::mem::size_of::<Pending>() == 16 + PATH_LEN);
