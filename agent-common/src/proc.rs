//! Process context carried by every process-originated record.

pub const COMM_LEN: usize = 16;

/// Value of `loginuid`/`sessionid` when the kernel has none (or it could not be read).
pub const UNSET_ID: u32 = u32::MAX;

pub const PROC_LOGINUID_UNKNOWN: u32 = 1;

/// Who did it. Filled in the kernel from the current task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcCtx {
    /// Thread-group id (what userspace calls the PID).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread-group id of the real parent.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Audit login uid (`/proc/PID/loginuid`), [`UNSET_ID`] when unset.
    pub loginuid: u32,
    /// Audit session id (`/proc/PID/sessionid`), [`UNSET_ID`] when unset.
    pub sessionid: u32,
    /// [`PROC_LOGINUID_UNKNOWN`]: the login uid could not be read (no BTF offset or a
    /// failed read), so "unset" cannot be told from "unknown".
    pub flags: u32,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
    /// Where the task came from (session detector); zero kind when unknown.
    pub origin: crate::session::Origin,
}
const _: () = assert!(core::mem::size_of::<ProcCtx>() == 96);

crate::user_pod!(ProcCtx);
