//! Ring-buffer record header and the registry of record kinds.

/// Version of the record layouts. Bumped whenever any record in this crate changes.
pub const ABI_VERSION: u16 = 3;

/// First bytes of every record in the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// One of the constants in [`kind`].
    pub kind: u16,
    /// [`ABI_VERSION`] of the program that wrote the record.
    pub abi: u16,
    /// Total record length in bytes, header included.
    pub len: u32,
    /// `bpf_ktime_get_boot_ns()` when the record was written.
    pub ktime_ns: u64,
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 16);

impl EventHeader {
    pub const fn new(kind: u16, len: usize, ktime_ns: u64) -> Self {
        Self {
            kind,
            abi: ABI_VERSION,
            len: len as u32,
            ktime_ns,
        }
    }
}

/// Record kinds. Never reuse a number.
pub mod kind {
    /// [`crate::reboot::RebootSyscallEvent`]: reboot(2) entered.
    pub const REBOOT_SYSCALL: u16 = 1;
    /// [`crate::reboot::KexecEvent`]: kexec_load(2) / kexec_file_load(2) entered.
    pub const KEXEC: u16 = 2;
    /// [`crate::reboot::ExecEvent`]: a watched binary was executed.
    pub const EXEC: u16 = 3;
    /// [`crate::quarantine::ExecBlockedEvent`]: a quarantined binary was killed on exec.
    pub const EXEC_BLOCKED: u16 = 4;
    /// [`crate::session::SshAcceptEvent`]: an sshd accepted a connection.
    pub const SSH_ACCEPT: u16 = 5;
    /// [`crate::reboot::SysrqOpenEvent`]: /proc/sysrq-trigger opened for writing.
    pub const SYSRQ_OPEN: u16 = 6;
    /// [`crate::arp::ArpEvent`]: a new binding, a MAC change or a probe conflict.
    pub const ARP: u16 = 7;
    /// [`crate::secrets::SecretOpenEvent`]: a watched secret file was opened.
    pub const SECRET_OPEN: u16 = 8;
    /// [`crate::corosync::CorosyncLocalEvent`]: a cluster daemon started or bound a
    /// cluster port.
    pub const COROSYNC_LOCAL: u16 = 9;
    /// Highest kind number in use; stats slots are sized from it.
    pub const MAX: u16 = 9;
}

/// The record size for a kind, or `None` for an unknown kind. Every kind is listed
/// explicitly so that adding a kind without a size fails review here, in one place.
pub const fn record_size(kind: u16) -> Option<usize> {
    match kind {
        kind::REBOOT_SYSCALL => Some(core::mem::size_of::<crate::reboot::RebootSyscallEvent>()),
        kind::KEXEC => Some(core::mem::size_of::<crate::reboot::KexecEvent>()),
        kind::EXEC => Some(core::mem::size_of::<crate::reboot::ExecEvent>()),
        kind::EXEC_BLOCKED => Some(core::mem::size_of::<crate::quarantine::ExecBlockedEvent>()),
        kind::SSH_ACCEPT => Some(core::mem::size_of::<crate::session::SshAcceptEvent>()),
        kind::SYSRQ_OPEN => Some(core::mem::size_of::<crate::reboot::SysrqOpenEvent>()),
        kind::ARP => Some(core::mem::size_of::<crate::arp::ArpEvent>()),
        kind::SECRET_OPEN => Some(core::mem::size_of::<crate::secrets::SecretOpenEvent>()),
        kind::COROSYNC_LOCAL => Some(core::mem::size_of::<crate::corosync::CorosyncLocalEvent>()),
        _ => None,
    }
}

crate::user_pod!(EventHeader);
