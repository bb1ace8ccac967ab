//! `session` detector ABI: where a task came from. Tasks descended from an SSH
//! connection carry the connection's origin (peer address and port, local port, the
//! sshd that accepted it), inherited across fork and exec.

use crate::{event::EventHeader, proc::ProcCtx};

/// No origin recorded for the task (or its ancestors) in the kernel.
pub const ORIGIN_NONE: u32 = 0;
/// Descends from a connection accepted by an sshd.
pub const ORIGIN_SSH: u32 = 1;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// [`ORIGIN_NONE`] or [`ORIGIN_SSH`].
    pub kind: u32,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Peer port, host byte order.
    pub peer_port: u16,
    /// Local (server) port, host byte order; 0 when unknown.
    pub local_port: u16,
    pub _pad0: u16,
    /// The sshd process that accepted the connection.
    pub sshd_pid: u32,
    /// Peer address: IPv4 in the first 4 bytes, or IPv6.
    pub peer_addr: [u8; 16],
    /// Boot-clock time of the accept.
    pub since_ns: u64,
}
const _: () = assert!(core::mem::size_of::<Origin>() == 40);

/// Maps of the session detector. Origins live in one of two tables, by route
/// (`session.storage`): task local storage (key: the task; from userspace, a pidfd),
/// or the fallback, a pid-keyed LRU table emptied by an exit program.
pub const ORIGIN_STORAGE: &str = "ORIGIN_STORAGE";
pub const TASK_ORIGIN: &str = "TASK_ORIGIN";
pub const TASK_ORIGIN_CAPACITY: u32 = 32768;
/// Which table is in use: one `u32` at index 0, [`ROUTE_PID_TABLE`] until userspace
/// has attached the task-storage fork program and says [`ROUTE_TASK_STORAGE`].
pub const ORIGIN_ROUTE: &str = "ORIGIN_ROUTE";
pub const ROUTE_PID_TABLE: u32 = 0;
pub const ROUTE_TASK_STORAGE: u32 = 1;
/// The session detector is off: no table is kept up to date, no process has an origin.
pub const ROUTE_OFF: u32 = 2;
/// Basenames of the SSH daemons whose accepts start a session (comm; value unused).
pub const SSHD_COMMS: &str = "SSHD_COMMS";

/// An SSH connection was accepted (one record per connection).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SshAcceptEvent {
    pub header: EventHeader,
    /// The accepting sshd.
    pub proc: ProcCtx,
    pub origin: Origin,
}
const _: () =
    assert!(core::mem::size_of::<SshAcceptEvent>() == 16 + core::mem::size_of::<ProcCtx>() + 40);

/// Offsets of tracepoint fields that moved between kernels, read from tracefs
/// `format` files at start-up (global `TP_OFFSETS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointOffsets {
    /// sched_process_fork: child_pid.
    pub fork_child_pid: u32,
    pub _pad0: u32,
}

impl TracepointOffsets {
    /// Layout of kernels >= 6.?? with __data_loc comms (seen on 6.18).
    pub const DEFAULT: Self = Self {
        fork_child_pid: 20,
        _pad0: 0,
    };
}

pub const TP_OFFSETS_GLOBAL: &str = "TP_OFFSETS";

crate::user_pod!(Origin, SshAcceptEvent, TracepointOffsets);

// Map keys and values: their sizes are part of the ABI.
const _: () = assert!(core::mem::size_of::<TracepointOffsets>() == 8);
