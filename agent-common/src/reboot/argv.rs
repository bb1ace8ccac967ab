//! The argument rules of the reboot detector's watched commands (`systemctl reboot`,
//! `init 6`, `busctl call … Reboot`…), shared by the kernel (the protected-host guard
//! decides at exec, before the command runs) and userspace (the detector's report), so
//! both read a command line the same way.
//!
//! Userspace fills `ARGV_RULES` with one entry per known word of each class (the
//! class's own flags under the empty word). For each argument after argv[0], both sides
//! derive the word key with [`word_key`], look its bits up and feed them to
//! [`ArgvScan`]. The scan stops after [`ARGV_MAX_ARGS`] arguments or at an argument of
//! [`ARGV_ARG_LEN`] bytes or more.

/// Hash map: [`ArgvWordKey`] -> word bits ([`word`]); the empty word holds the class's
/// bits ([`class_rule`]).
pub const ARGV_RULES: &str = "ARGV_RULES";
pub const ARGV_RULES_CAPACITY: u32 = 256;
/// Bytes of an argument that make its word key.
pub const ARGV_WORD_LEN: usize = 24;
/// Arguments after argv[0] that are read.
pub const ARGV_MAX_ARGS: usize = 16;
/// An argument this long (with its NUL) or longer ends the scan (power of two).
pub const ARGV_ARG_LEN: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ArgvWordKey {
    /// A watch class ([`super::class`]).
    pub class: u32,
    pub word: [u8; ARGV_WORD_LEN],
}
const _: () = assert!(core::mem::size_of::<ArgvWordKey>() == 4 + ARGV_WORD_LEN);
crate::user_pod!(ArgvWordKey);

/// What a word means in its class.
pub mod word {
    /// As the first positional argument, the command reboots (`systemctl reboot`).
    pub const VERB: u32 = 1;
    /// As the first positional argument, a later [`TARGET`] reboots (`isolate`).
    pub const TARGET_VERB: u32 = 2;
    pub const TARGET: u32 = 4;
    /// An option whose value is the next argument (`-t`, `--type`).
    pub const VALUE_OPT: u32 = 8;
    /// The command does not reboot this machine (`-H host`, `--load`), unless [`FORCE`].
    pub const VETO: u32 = 16;
    /// The command reboots whatever else it says (`kexec -e`).
    pub const FORCE: u32 = 32;
    /// Anywhere, a method that reboots (`Reboot`, `PowerOff`; member-keyed classes).
    pub const MEMBER: u32 = 64;
    /// Anywhere, the service that owns those methods (`login1`, `systemd1`).
    pub const SERVICE: u32 = 128;
    /// Help or version: never a reboot, whatever else is asked.
    pub const HELP: u32 = 256;
}

/// The class's own bits (under the empty word).
pub mod class_rule {
    /// The command reboots unless vetoed (`reboot`, `kexec`).
    pub const DEFAULT: u32 = 1;
    /// Only with a [`super::word::SERVICE`] word present.
    pub const NEEDS_SERVICE: u32 = 2;
    /// Words are the part after the last dot (`org.freedesktop.login1.Manager.Reboot`
    /// → `Reboot`).
    pub const MEMBER_WORDS: u32 = 4;
}

/// The key of one argument: `buf[..len]` (no NUL), cut after the first `=` of an
/// option (`--host=x` → `--host=`), or after the last dot in member-keyed classes;
/// the first [`ARGV_WORD_LEN`] bytes, NUL-padded.
#[inline(always)]
pub fn word_key(buf: &[u8; ARGV_ARG_LEN], len: usize, member_words: bool) -> [u8; ARGV_WORD_LEN] {
    let mut start = 0usize;
    let mut end = len;
    let option = buf[0] == b'-';
    let mut j = 0usize;
    while j < ARGV_ARG_LEN {
        if j >= len {
            break;
        }
        let b = buf[j];
        if member_words {
            if b == b'.' {
                start = j + 1;
            }
        } else if option && b == b'=' {
            end = j + 1;
            break;
        }
        j += 1;
    }
    let mut key = [0u8; ARGV_WORD_LEN];
    let mut k = 0usize;
    while k < ARGV_WORD_LEN {
        let i = start + k;
        if i < end {
            key[k] = buf[i & (ARGV_ARG_LEN - 1)];
        }
        k += 1;
    }
    key
}

/// The state of reading one command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgvScan {
    skip_next: bool,
    positionals: u32,
    armed: bool,
    trigger: bool,
    veto: bool,
    force: bool,
    help: bool,
    service: bool,
}

impl ArgvScan {
    /// One argument after argv[0]: its word's bits, whether it starts with `-`, and
    /// whether it is exactly `--`.
    #[inline(always)]
    pub fn feed(&mut self, bits: u32, option: bool, double_dash: bool) {
        if self.skip_next {
            self.skip_next = false;
            return;
        }
        if double_dash {
            return;
        }
        self.veto |= bits & word::VETO != 0;
        self.force |= bits & word::FORCE != 0;
        self.help |= bits & word::HELP != 0;
        self.trigger |= bits & word::MEMBER != 0;
        self.service |= bits & word::SERVICE != 0;
        if option {
            self.skip_next = bits & word::VALUE_OPT != 0;
            return;
        }
        if self.positionals == 0 {
            self.trigger |= bits & word::VERB != 0;
            self.armed = bits & word::TARGET_VERB != 0;
        } else if self.armed {
            self.trigger |= bits & word::TARGET != 0;
        }
        self.positionals += 1;
    }

    /// Whether the command line asks for a reboot, given the class's bits.
    #[inline(always)]
    pub fn reboots(&self, class_bits: u32) -> bool {
        if self.help {
            return false;
        }
        if self.force {
            return true;
        }
        let asked = self.trigger || class_bits & class_rule::DEFAULT != 0;
        let service = class_bits & class_rule::NEEDS_SERVICE == 0 || self.service;
        !self.veto && asked && service
    }
}
