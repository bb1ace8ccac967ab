//! Ring-buffer record header and the registry of record kinds.

/// Version of the record layouts. Bumped whenever any record in this crate changes.
pub const ABI_VERSION: u16 = 7;

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

/// The table of record kinds: number, metric/log name, layout, and the variant of the
/// decoded [`crate::decode::Event`] (a [`crate::record::Record`] of the layout, read in
/// place from the reader's batch). Everything about a
/// kind follows from its one row here: the [`kind`] constants, [`KINDS`],
/// [`record_size`], [`kind_name`], a size assert per layout, and the decoder. Never
/// reuse a number; bump [`ABI_VERSION`] when a layout changes.
macro_rules! records {
    ($( $(#[$doc:meta])* $konst:ident = $num:literal, $name:literal, $variant:ident($($path:ident)::+); )*) => {
        /// Record kinds (from the table in this module).
        pub mod kind {
            $( $(#[$doc])* pub const $konst: u16 = $num; )*
            /// Highest kind number in use; stats slots are sized from it.
            pub const MAX: u16 = {
                let all = [$($num),*];
                let mut max = 0;
                let mut i = 0;
                while i < all.len() {
                    if all[i] > max {
                        max = all[i];
                    }
                    i += 1;
                }
                max
            };
        }

        /// One row of the record table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct Kind {
            pub number: u16,
            /// The name in metrics (`kind` label) and logs.
            pub name: &'static str,
            /// The record's size in bytes, header included.
            pub size: usize,
        }

        /// Every record kind, in number order.
        pub const KINDS: &[Kind] = &[
            $( Kind { number: $num, name: $name, size: core::mem::size_of::<crate::$($path)::+>() }, )*
        ];

        /// The record size for a kind, or `None` for an unknown kind.
        pub const fn record_size(kind: u16) -> Option<usize> {
            match kind {
                $( $num => Some(core::mem::size_of::<crate::$($path)::+>()), )*
                _ => None,
            }
        }

        /// The name of a kind (`unknown` for a number not in the table).
        pub const fn kind_name(kind: u16) -> &'static str {
            match kind {
                $( $num => $name, )*
                _ => "unknown",
            }
        }

        // Every record starts with the header, is a whole number of 8-byte words (the
        // ring buffer's alignment) and needs no more alignment than that.
        $(
            const _: () = assert!(core::mem::align_of::<crate::$($path)::+>() <= 8);
            const _: () = assert!(core::mem::size_of::<crate::$($path)::+>() % 8 == 0);
            const _: () = assert!(core::mem::size_of::<crate::$($path)::+>() >= core::mem::size_of::<EventHeader>());
        )*

        /// The decoded records (feature `user`).
        #[cfg(feature = "user")]
        pub mod decoded {
            /// A decoded record.
            #[derive(Clone, Debug, PartialEq, Eq)]
            pub enum Event {
                $( $variant(crate::record::Record<crate::$($path)::+>), )*
            }

            impl Event {
                pub fn header(&self) -> &super::EventHeader {
                    match self {
                        $( Event::$variant(e) => &e.header, )*
                    }
                }

                /// Build the variant for `kind` over checked bytes (no copy when aligned).
                pub(crate) fn read(kind: u16, bytes: bytes::Bytes) -> Option<Event> {
                    Some(match kind {
                        $( $num => Event::$variant(crate::record::Record::from_bytes(bytes)), )*
                        _ => return None,
                    })
                }
            }
        }
    };
}

records! {
    /// [`crate::reboot::RebootSyscallEvent`]: reboot(2) entered.
    REBOOT_SYSCALL = 1, "reboot_syscall", RebootSyscall(reboot::RebootSyscallEvent);
    /// [`crate::reboot::KexecEvent`]: kexec_load(2) / kexec_file_load(2) entered.
    KEXEC = 2, "kexec", Kexec(reboot::KexecEvent);
    /// [`crate::reboot::ExecEvent`]: a watched binary was executed.
    EXEC = 3, "exec", Exec(reboot::ExecEvent);
    /// [`crate::quarantine::ExecBlockedEvent`]: a quarantined binary was killed on exec.
    EXEC_BLOCKED = 4, "exec_blocked", ExecBlocked(quarantine::ExecBlockedEvent);
    /// [`crate::session::SshAcceptEvent`]: an sshd accepted a connection.
    SSH_ACCEPT = 5, "ssh_accept", SshAccept(session::SshAcceptEvent);
    /// [`crate::reboot::SysrqOpenEvent`]: /proc/sysrq-trigger opened for writing.
    SYSRQ_OPEN = 6, "sysrq_open", SysrqOpen(reboot::SysrqOpenEvent);
    /// [`crate::arp::ArpEvent`]: a new binding, a MAC change or a probe conflict.
    ARP = 7, "arp", Arp(arp::ArpEvent);
    /// [`crate::secrets::SecretOpenEvent`]: a watched secret file was opened.
    SECRET_OPEN = 8, "secret_open", SecretOpen(secrets::SecretOpenEvent);
    /// [`crate::corosync::CorosyncLocalEvent`]: a cluster daemon started or bound a
    /// cluster port.
    COROSYNC_LOCAL = 9, "corosync_local", CorosyncLocal(corosync::CorosyncLocalEvent);
}

crate::user_pod!(EventHeader);
