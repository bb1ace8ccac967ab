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
/// Per-CPU array of u64 totals, indexed by the `TOTAL_*` constants.
pub const COROSYNC_TOTALS: &str = "COROSYNC_TOTALS";
pub const TOTAL_MEMBER: u32 = 0;
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

/// IPv4 as an IPv4-mapped IPv6 key.
pub const fn v4_key(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

crate::user_pod!(SourceKey, SourceCount, MemberCount, CorosyncLocalEvent);

// Map keys and values: their sizes are part of the ABI.
const _: () = assert!(core::mem::size_of::<SourceKey>() == 24);
const _: () = assert!(core::mem::size_of::<SourceCount>() == 24);
const _: () = assert!(core::mem::size_of::<MemberCount>() == 24);
