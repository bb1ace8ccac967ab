//! The session detector's origin table, from userspace: read for processes seen outside
//! the kernel programs (fanotify), written for sessions older than the agent. Which
//! table the programs keep is the route in use (`ORIGIN_ROUTE`), asked on each call so
//! a reload that changes it is followed:
//!
//! - task local storage (`ORIGIN_STORAGE`): the key is a pidfd of the process, opened
//!   for the call (the kernel's syscall interface to that map type);
//! - the pid table (`TASK_ORIGIN`): the key is the pid.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use agent_common::session::{
    ORIGIN_ROUTE, ORIGIN_STORAGE, Origin, ROUTE_TASK_STORAGE, TASK_ORIGIN,
};
use aya::maps::{Array, HashMap, Map, MapData};

use crate::kernel::loader::{Kernel, LoadError};

/// Insert only where the key has no value (`BPF_NOEXIST`).
const NOEXIST: u64 = 1;

pub struct OriginTable {
    route: Array<MapData, u32>,
    /// aya 0.16 has no type for task storage; its elements are read and written with
    /// the generic element calls, which is what this hash-map view issues.
    storage: HashMap<MapData, i32, Origin>,
    pids: HashMap<MapData, u32, Origin>,
}

impl OriginTable {
    /// Handles of their own on the three maps (usable outside the kernel owner).
    pub fn open(kernel: &Kernel) -> Result<OriginTable, LoadError> {
        let open = |name: &'static str, wrap: fn(MapData) -> Map| kernel.map_handle(name).map(wrap);
        let err = |name| move |source| LoadError::Map { name, source };
        Ok(OriginTable {
            route: Array::try_from(open(ORIGIN_ROUTE, Map::Array)?).map_err(err(ORIGIN_ROUTE))?,
            // Viewed as a hash map: see the field.
            storage: HashMap::try_from(open(ORIGIN_STORAGE, Map::HashMap)?)
                .map_err(err(ORIGIN_STORAGE))?,
            pids: HashMap::try_from(open(TASK_ORIGIN, Map::LruHashMap)?)
                .map_err(err(TASK_ORIGIN))?,
        })
    }

    fn storage_route(&self) -> bool {
        self.route.get(&0, 0).ok() == Some(ROUTE_TASK_STORAGE)
    }

    /// The origin of process `pid`, if it has one (and still exists).
    pub fn get(&self, pid: u32) -> Option<Origin> {
        if self.storage_route() {
            let fd = pidfd(pid)?;
            self.storage.get(&fd.as_raw_fd(), 0).ok()
        } else {
            self.pids.get(&pid, 0).ok()
        }
    }

    /// Give process `pid` `origin` unless it has one. Whether it was written.
    pub fn insert_new(&mut self, pid: u32, origin: &Origin) -> bool {
        if self.storage_route() {
            let Some(fd) = pidfd(pid) else { return false };
            self.storage
                .insert(&fd.as_raw_fd(), origin, NOEXIST)
                .is_ok()
        } else {
            self.pids.insert(&pid, origin, NOEXIST).is_ok()
        }
    }
}

/// A pidfd for `pid`; `None` when the process is gone.
fn pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a descriptor the kernel has just returned, owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
