//! Quarantine enforcement maps (kernel side of the quarantine engine). Every entry
//! carries its own expiry on the boot clock; the programs ignore expired entries, so a
//! quarantine ends on time even when no agent is there to remove it.

pub const BLOCK_EXEC: &str = "BLOCK_EXEC";
/// Array, one slot: how many `BLOCK_EXEC` entries exist (exec skips the lookups at 0).
pub const EXEC_BLOCKS: &str = "EXEC_BLOCKS";
pub const DROP_V4: &str = "DROP_V4";
pub const DROP_V6: &str = "DROP_V6";
pub const DROP_MAC: &str = "DROP_MAC";
pub const DROP_ARP: &str = "DROP_ARP";
/// Per-CPU u64 counters of enforcement, indexed by the constants below.
pub const QSTATS: &str = "QSTATS";
pub const RULES_CAPACITY: u32 = 1024;

pub const QSTAT_EXEC_KILLED: u32 = 0;
pub const QSTAT_DROP_V4: u32 = 1;
pub const QSTAT_DROP_V6: u32 = 2;
pub const QSTAT_DROP_MAC: u32 = 3;
pub const QSTAT_DROP_ARP: u32 = 4;
/// An expired entry was found and ignored.
pub const QSTAT_EXPIRED_SEEN: u32 = 5;
/// bpf_send_signal failed.
pub const QSTAT_SIGNAL_ERROR: u32 = 6;
/// Cluster (corosync) traffic dropped from a quarantined non-member source.
pub const QSTAT_DROP_COROSYNC: u32 = 7;
pub const QSTAT_SLOTS: u32 = 8;

/// Value of every enforcement map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// `bpf_ktime_get_boot_ns()` after which the entry is ignored.
    pub expires_boot_ns: u64,
    /// Quarantine id (as in the audit journal).
    pub id: u64,
}

impl Rule {
    #[inline(always)]
    pub fn active(&self, now_boot_ns: u64) -> bool {
        now_boot_ns < self.expires_boot_ns
    }
}

/// `BLOCK_EXEC` key: the new image's comm (its basename) and the cgroup v2 id the
/// rule is scoped to (0 = any cgroup).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockExecKey {
    pub comm: [u8; 16],
    pub cgroup_id: u64,
}

/// `DROP_MAC` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacKey {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `DROP_ARP` key: an ARP claim of `ip` (sender protocol address, network byte order
/// as on the wire) by `mac` (sender hardware address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ArpClaimKey {
    pub ip: [u8; 4],
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// A blocked exec, as reported to userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecBlockedEvent {
    pub header: crate::event::EventHeader,
    pub proc: crate::proc::ProcCtx,
    pub rule_id: u64,
    /// 0 when SIGKILL was sent, else the helper's error.
    pub signal_result: i64,
}
const _: () = assert!(core::mem::size_of::<ExecBlockedEvent>() == 16 + 96 + 16);

crate::user_pod!(Rule, BlockExecKey, MacKey, ArpClaimKey, ExecBlockedEvent);

// Map keys and values: their sizes are part of the ABI.
const _: () = assert!(core::mem::size_of::<Rule>() == 16);
const _: () = assert!(core::mem::size_of::<BlockExecKey>() == 24);
const _: () = assert!(core::mem::size_of::<MacKey>() == 8);
const _: () = assert!(core::mem::size_of::<ArpClaimKey>() == 12);
