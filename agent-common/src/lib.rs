//! The kernel <-> userspace ABI of nodeward.
//!
//! Everything that crosses the boundary is defined here once: ring-buffer records
//! (header first), map names, map value layouts and the kernel configuration globals.
//! Rules (STYLE.md): `#[repr(C)]`, integers and byte arrays only (no bool, enum or
//! Option), explicit padding fields, sizes asserted at compile time. Userspace never
//! transmutes: it checks each record with [`decode::decode_shared`] (feature `user`),
//! where an unknown kind or a wrong length is an error, and reads it in place through
//! [`record::Record`].
#![no_std]

#[cfg(feature = "user")]
extern crate std;

pub mod arp;
pub mod corosync;
pub mod event;
pub mod maps;
pub mod martian;
pub mod offsets;
pub mod proc;
pub mod quarantine;
pub mod reboot;
pub mod secrets;
pub mod session;
pub mod stats;
pub mod tcp_reset;

#[cfg(feature = "user")]
pub mod decode;
#[cfg(feature = "user")]
pub mod record;

/// The detector ids. One id names that detector's files in every crate
/// (`agent-common/src/<id>.rs`, `agent-ebpf/src/<id>.rs`, `agent/src/detectors/<id>.rs`
/// and `agent/src/detectors/<id>/`, `tests/src/<id>.rs`), its config table
/// `[detectors.<id>]`, its metric subsystem `nodeward_<id>_*`, its dashboard row and its
/// alert group. `cargo xtask test` checks that shape.
pub const DETECTORS: &[&str] = &[
    "reboot",
    "session",
    "arp",
    "tcp_reset",
    "martian",
    "secrets",
    "corosync",
];

/// Copy the longest NUL-terminated prefix of `src` into a fixed buffer (truncating).
/// For tests and userspace tooling that build records.
pub fn fill_cstr<const N: usize>(dst: &mut [u8; N], src: &[u8]) {
    let n = src.len().min(N.saturating_sub(1));
    dst[..n].copy_from_slice(&src[..n]);
    for b in dst[n..].iter_mut() {
        *b = 0;
    }
}

/// The bytes of a NUL-terminated buffer up to (not including) the first NUL.
pub fn cstr_bytes(buf: &[u8]) -> &[u8] {
    match buf.iter().position(|&b| b == 0) {
        Some(n) => &buf[..n],
        None => buf,
    }
}

/// Implements `aya::Pod` for ABI types on the userspace side.
#[macro_export]
#[doc(hidden)]
macro_rules! user_pod {
    ($($t:ty),* $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: the type is #[repr(C)], made only of integers and byte arrays with
            // explicit padding, so every bit pattern is a valid value.
            unsafe impl aya::Pod for $t {}
        )*
    };
}
