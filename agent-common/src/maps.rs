//! Names and sizes of the maps shared by kernel and userspace.

/// Ring buffer of all discrete records.
pub const EVENTS: &str = "EVENTS";
/// Default ring buffer size in bytes (power of two, multiple of the page size).
pub const EVENTS_BYTES: u32 = 1 << 20;
/// Per-CPU u64 counters, see [`crate::stats`].
pub const STATS: &str = "STATS";
/// Per-CPU u64 counters of failed inserts into the counting maps (one slot per map,
/// [`MAP_FULL_NAMES`]): a full map is never silent.
pub const MAP_FULL: &str = "MAP_FULL";
/// The maps whose failed inserts `MAP_FULL` counts, by slot.
pub const MAP_FULL_NAMES: [&str; 4] = [
    "MARTIAN_COUNTS",
    "MARTIAN_SOURCES",
    "RESET_COUNTS",
    "RESET_PEERS",
];
pub const MAP_FULL_MARTIAN_COUNTS: u32 = 0;
pub const MAP_FULL_MARTIAN_SOURCES: u32 = 1;
pub const MAP_FULL_RESET_COUNTS: u32 = 2;
pub const MAP_FULL_RESET_PEERS: u32 = 3;

/// Hash map: executable basename ([`ExecWatchKey`]) -> watch class (u32).
pub const EXEC_WATCH: &str = "EXEC_WATCH";
pub const EXEC_WATCH_CAPACITY: u32 = 64;
/// Key length of `EXEC_WATCH`: a task comm (TASK_COMM_LEN).
pub const BASENAME_LEN: usize = 16;

/// Key of `EXEC_WATCH`: the executable's basename as the kernel puts it in the new
/// task's comm, NUL-padded. Names longer than 15 bytes cannot be watched.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExecWatchKey {
    pub name: [u8; BASENAME_LEN],
}

impl ExecWatchKey {
    /// `None` when the name does not fit (it could then never match in the kernel).
    pub fn new(name: &[u8]) -> Option<Self> {
        if name.is_empty() || name.len() >= BASENAME_LEN || name.contains(&0) {
            return None;
        }
        let mut key = Self::default();
        key.name[..name.len()].copy_from_slice(name);
        Some(key)
    }
}

crate::user_pod!(ExecWatchKey);

// Map keys and values: their sizes are part of the ABI.
const _: () = assert!(core::mem::size_of::<ExecWatchKey>() == BASENAME_LEN);
