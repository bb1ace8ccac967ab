//! Records of the `reboot` detector.

pub mod argv;

use crate::{event::EventHeader, proc::ProcCtx};

/// reboot(2) entered. Emitted for every call: the detector decides what it means.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RebootSyscallEvent {
    pub header: EventHeader,
    pub proc: ProcCtx,
    pub magic1: u32,
    pub magic2: u32,
    /// LINUX_REBOOT_CMD_*.
    pub cmd: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<RebootSyscallEvent>() == 16 + 96 + 16);

pub const KEXEC_LOAD: u32 = 1;
pub const KEXEC_FILE_LOAD: u32 = 2;

/// kexec_load(2) or kexec_file_load(2) entered.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KexecEvent {
    pub header: EventHeader,
    pub proc: ProcCtx,
    /// [`KEXEC_LOAD`] or [`KEXEC_FILE_LOAD`].
    pub syscall: u32,
    pub _pad0: u32,
    /// The `flags` argument.
    pub flags: u64,
}
const _: () = assert!(core::mem::size_of::<KexecEvent>() == 16 + 96 + 16);

pub const FILENAME_LEN: usize = 256;
/// Bytes of the argument block (argv strings, NUL-separated) kept per exec.
pub const ARGS_LEN: usize = 512;

/// Bits of [`ExecEvent::flags`].
pub const EXEC_ARGS_TRUNCATED: u32 = 1;
pub const EXEC_ARGS_UNREADABLE: u32 = 2;
/// The reboot guard killed this exec (protected host, enforce).
pub const EXEC_GUARD_BLOCKED: u32 = 4;
/// The reboot guard would have killed this exec (protected host, dry_run).
pub const EXEC_GUARD_WOULD_BLOCK: u32 = 8;

/// `REBOOT_GUARD` (array, 1 slot): mode of the guard against reboot-family execs from
/// SSH sessions whose peer is not in `REBOOT_ALLOWED`.
pub const REBOOT_GUARD: &str = "REBOOT_GUARD";
pub const GUARD_OFF: u32 = 0;
pub const GUARD_DRY_RUN: u32 = 1;
pub const GUARD_ENFORCE: u32 = 2;
/// `REBOOT_ALLOWED` (LPM trie): peers allowed to reboot; IPv4 as ::ffff:a.b.c.d.
pub const REBOOT_ALLOWED: &str = "REBOOT_ALLOWED";
pub const REBOOT_ALLOWED_CAPACITY: u32 = 256;

/// A watched binary was executed (sent at sched_process_exec: only successful execs,
/// so failed attempts such as PATH probing are never reported). The watch key is the
/// new task's comm, which the kernel sets to the executable's basename.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// The task after exec (new comm, new credentials).
    pub proc: ProcCtx,
    /// Watch class from `EXEC_WATCH` for the basename.
    pub class: u32,
    /// Bytes of `args` filled.
    pub args_len: u32,
    /// [`EXEC_ARGS_TRUNCATED`] | [`EXEC_ARGS_UNREADABLE`].
    pub flags: u32,
    pub _pad0: u32,
    /// The path that was executed (bprm->filename), NUL-terminated.
    pub filename: [u8; FILENAME_LEN],
    /// argv as the new image sees it: NUL-separated strings.
    pub args: [u8; ARGS_LEN],
    /// The parent, grandparent, … at the exec (nearest first), read by the kernel so
    /// the lineage survives ancestors that exit before the agent reads the record; the
    /// walk stops after pid 1 or at a pid of 0 (unused entries are zero).
    pub ancestors: [Ancestor; ANCESTORS],
}
const _: () =
    assert!(core::mem::size_of::<ExecEvent>() == 16 + 96 + 16 + 256 + 512 + 20 * ANCESTORS);

/// How many ancestors an [`ExecEvent`] carries.
pub const ANCESTORS: usize = 4;

/// One ancestor of an exec'ing task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ancestor {
    /// Thread-group id; 0: no ancestor here.
    pub pid: u32,
    pub comm: [u8; 16],
}

impl ExecEvent {
    /// The argument strings (userspace helper; invalid UTF-8 replaced).
    #[cfg(feature = "user")]
    pub fn argv(&self) -> std::vec::Vec<std::string::String> {
        let n = (self.args_len as usize).min(ARGS_LEN);
        let block = &self.args[..n];
        // The block ends with the last argument's NUL; trailing NULs carry nothing.
        let end = block.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let block = &block[..end];
        if block.is_empty() {
            return std::vec::Vec::new();
        }
        block
            .split(|&b| b == 0)
            .map(|a| std::string::String::from_utf8_lossy(a).into_owned())
            .collect()
    }
}

/// Watch classes stored as `EXEC_WATCH` values; userspace classifies with argv.
pub mod class {
    /// reboot, shutdown, poweroff, halt: the name alone is the intent.
    pub const POWER: u32 = 1;
    /// systemctl: intent depends on the verb.
    pub const SYSTEMCTL: u32 = 2;
    /// telinit / init: intent depends on the runlevel.
    pub const TELINIT: u32 = 3;
    /// kexec tool.
    pub const KEXEC_TOOL: u32 = 4;
    /// busctl / dbus-send / gdbus: intent depends on the member called.
    pub const DBUS: u32 = 5;
}

crate::user_pod!(RebootSyscallEvent, KexecEvent, ExecEvent, Ancestor);

/// /proc/sysrq-trigger opened for writing (a write of `b`, `o`, `c`... reboots,
/// powers off or crashes the machine at once, bypassing init).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysrqOpenEvent {
    pub header: EventHeader,
    pub proc: ProcCtx,
    /// open(2) flags.
    pub flags: u64,
    /// 1: openat, 2: openat2.
    pub syscall: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<SysrqOpenEvent>() == 16 + 96 + 16);

/// The path watched, NUL-terminated, as the kernel compares it.
pub const SYSRQ_PATH: &[u8; 20] = b"/proc/sysrq-trigger\0";

crate::user_pod!(SysrqOpenEvent);
