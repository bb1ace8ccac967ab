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
pub mod packet;
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

/// The one list of detectors: the [`Detector`] enum (matched exhaustively wherever a
/// detector needs its own line: config sections, findings, reports) and the id strings
/// [`DETECTORS`] follow from it.
macro_rules! detectors {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, )*) => {
        /// A detector. Its id names its files in every crate (`agent-common/src/<id>.rs`,
        /// `agent-ebpf/src/<id>.rs`, `agent/src/detectors/<id>.rs` and
        /// `agent/src/detectors/<id>/`, `tests/src/<id>.rs`), its config table
        /// `[detectors.<id>]`, its metric subsystem `nodeward_<id>_*`, its dashboard row
        /// and its alert group. `cargo xtask test` checks that shape.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Detector {
            $( $(#[$doc])* $variant, )*
        }

        impl Detector {
            /// Every detector, in the order they are reported.
            pub const ALL: &'static [Detector] = &[$(Detector::$variant),*];

            pub const fn id(self) -> &'static str {
                match self {
                    $( Detector::$variant => $id, )*
                }
            }

            pub fn from_id(id: &str) -> Option<Detector> {
                match id {
                    $( $id => Some(Detector::$variant), )*
                    _ => None,
                }
            }
        }

        /// The detector ids, in [`Detector::ALL`] order.
        pub const DETECTORS: &[&str] = &[$($id),*];
    };
}

detectors! {
    /// Reboot, halt and kexec intents, attributed to their session.
    Reboot = "reboot",
    /// SSH sessions: the origin of every other finding's process.
    Session = "session",
    /// IP -> MAC bindings on bridges: duplicates, takeovers, IPAM divergence.
    Arp = "arp",
    /// TCP reset storms per peer.
    TcpReset = "tcp_reset",
    /// Martian-source drops and floods.
    Martian = "martian",
    /// Opens of cluster secrets.
    Secrets = "secrets",
    /// Rogue corosync cluster members.
    Corosync = "corosync",
}

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
