//! The session detector's origin table, from userspace: read for processes seen outside
//! the kernel programs (fanotify), written for sessions older than the agent. Which
//! table the programs keep is the route in use (`ORIGIN_ROUTE`, one slot), read on each
//! lookup so a reload that changes it is followed:
//!
//! - task local storage (`ORIGIN_STORAGE`): the key is a pidfd of the task, opened for
//!   the call (the kernel's syscall interface to that map type);
//! - the pid table (`TASK_ORIGIN`): the key is the pid.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use agent_common::session::{
    ORIGIN_ROUTE, ORIGIN_STORAGE, Origin, ROUTE_OFF, ROUTE_PID_TABLE, ROUTE_TASK_STORAGE,
    TASK_ORIGIN,
};
use aya::maps::{Array, HashMap, Map, MapData, MapError};

use crate::kernel::loader::{Kernel, LoadError};

/// Insert only where the key has no value (`BPF_NOEXIST`).
const NOEXIST: u64 = 1;
/// `pidfd_open` flag for a thread that is not its group's leader (Linux 6.9).
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// Which table holds the origins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    PidTable,
    TaskStorage,
    /// The session detector is off: no table is kept, every process has no origin.
    Off,
}

impl Route {
    fn flag(self) -> u32 {
        match self {
            Route::PidTable => ROUTE_PID_TABLE,
            Route::TaskStorage => ROUTE_TASK_STORAGE,
            Route::Off => ROUTE_OFF,
        }
    }
}

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

    /// The table the programs use now.
    pub fn route(&self) -> Result<Route, MapError> {
        Ok(match self.route.get(&0, 0)? {
            ROUTE_TASK_STORAGE => Route::TaskStorage,
            ROUTE_PID_TABLE => Route::PidTable,
            _ => Route::Off,
        })
    }

    /// Tell the programs to use `route`.
    pub fn set_route(&mut self, route: Route) -> Result<(), MapError> {
        self.route.set(0, &route.flag(), 0)
    }

    /// The origin of process `pid` in the table in use: `None` if it has none or is gone.
    pub fn get(&self, pid: u32) -> Result<Option<Origin>, MapError> {
        let found = match self.route()? {
            Route::TaskStorage => {
                let Some(fd) = pidfd(pid, 0)? else {
                    return Ok(None);
                };
                self.storage.get(&fd.as_raw_fd(), 0)
            }
            Route::PidTable => self.pids.get(&pid, 0),
            Route::Off => return Ok(None),
        };
        match found {
            Ok(o) => Ok(Some(o)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Give task `tid` (a process, or with `thread` one of its other threads) `origin`
    /// in `route`'s table unless it has one. Whether it was written: not when it had one
    /// or is gone.
    pub fn insert_new(
        &mut self,
        route: Route,
        tid: u32,
        thread: bool,
        origin: &Origin,
    ) -> Result<bool, MapError> {
        let done = match route {
            Route::TaskStorage => {
                let Some(fd) = pidfd(tid, if thread { PIDFD_THREAD } else { 0 })? else {
                    return Ok(false);
                };
                self.storage.insert(&fd.as_raw_fd(), origin, NOEXIST)
            }
            Route::PidTable => self.pids.insert(&tid, origin, NOEXIST),
            Route::Off => return Ok(false),
        };
        match done {
            Ok(()) => Ok(true),
            // It had one; or it exited between the pidfd and the update (ENOENT, ESRCH).
            Err(MapError::SyscallError(e))
                if matches!(
                    e.io_error.raw_os_error(),
                    Some(libc::EEXIST | libc::ENOENT | libc::ESRCH)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Empty the pid table (its entries went stale while the other route was in use:
    /// no exit program removed them, and their pids may name other processes now).
    pub fn clear_pids(&mut self) -> Result<usize, MapError> {
        // A key walk restarts when an entry goes under it (the exit program may delete
        // at the same time): keys can come twice, and a second delete finds nothing.
        let mut keys: Vec<u32> = self.pids.keys().collect::<Result<_, _>>()?;
        keys.sort_unstable();
        keys.dedup();
        for k in &keys {
            match self.pids.remove(k) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(keys.len())
    }
}

/// A pidfd for `tid`; `None` when the task is gone, is not a leader (without
/// `PIDFD_THREAD`), or the kernel has no thread pidfds (older than 6.9).
fn pidfd(tid: u32, flags: libc::c_uint) -> Result<Option<OwnedFd>, MapError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::pid_t, flags) };
    if fd >= 0 {
        // SAFETY: a descriptor the kernel has just returned, owned by nobody else.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ESRCH) | Some(libc::ENOENT) => Ok(None),
        // Not (or no longer) a thread-group leader; or no thread pidfds (before 6.9).
        Some(libc::EINVAL) => Ok(None),
        _ => Err(MapError::SyscallError(aya::sys::SyscallError {
            call: "pidfd_open",
            io_error: e,
        })),
    }
}
