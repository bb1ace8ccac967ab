//! Checked decoding of ring-buffer records (userspace only).
//!
//! A record's kind, ABI version and length are checked before it is read in place
//! ([`crate::record::Record`]). All ABI types are plain integers and byte arrays, so any bit
//! pattern is a valid value: no transmute into enums, no undefined behaviour on
//! garbage.

use crate::event::{ABI_VERSION, EventHeader, record_size};

pub use crate::event::decoded::Event;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than the header")]
    Short(usize),
    #[error("record kind {0} is unknown")]
    UnknownKind(u16),
    #[error("record kind {kind} has ABI {found}, this agent speaks {expected}")]
    Abi {
        kind: u16,
        found: u16,
        expected: u16,
    },
    #[error(
        "record kind {kind}: header says {header_len} bytes, buffer has {buf_len}, layout needs {expected}"
    )]
    Length {
        kind: u16,
        header_len: u32,
        buf_len: usize,
        expected: usize,
    },
}

impl DecodeError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Short(_) => "short",
            DecodeError::UnknownKind(_) => "unknown_kind",
            DecodeError::Abi { .. } => "abi",
            DecodeError::Length { .. } => "length",
        }
    }
}

pub(crate) fn read<T: aya::Pod>(buf: &[u8]) -> T {
    assert!(buf.len() >= core::mem::size_of::<T>());
    // SAFETY: the length was checked above; T is Pod (any bit pattern is valid) and
    // read_unaligned imposes no alignment requirement on the source.
    unsafe { core::ptr::read_unaligned(buf.as_ptr().cast::<T>()) }
}

/// Decode one ring-buffer record held in shared bytes (a slice of the reader's
/// [`crate::record::Batch`]): checked, then read in place, not copied.
pub fn decode_shared(bytes: bytes::Bytes) -> Result<Event, DecodeError> {
    let buf = &bytes[..];
    if buf.len() < core::mem::size_of::<EventHeader>() {
        return Err(DecodeError::Short(buf.len()));
    }
    let header: EventHeader = read(buf);
    let expected = record_size(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    if header.abi != ABI_VERSION {
        return Err(DecodeError::Abi {
            kind: header.kind,
            found: header.abi,
            expected: ABI_VERSION,
        });
    }
    if header.len as usize != expected || buf.len() < expected {
        return Err(DecodeError::Length {
            kind: header.kind,
            header_len: header.len,
            buf_len: buf.len(),
            expected,
        });
    }
    Event::read(header.kind, bytes).ok_or(DecodeError::UnknownKind(header.kind))
}

/// Decode one record from a plain buffer (copied once into an aligned batch).
pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    let mut batch = crate::record::Batch::with_capacity(buf.len());
    let range = batch.push(buf);
    decode_shared(batch.freeze().slice(range))
}

/// The raw bytes of a record, for encoding in tests and tools.
pub fn encode<T: aya::Pod>(record: &T) -> std::vec::Vec<u8> {
    let size = core::mem::size_of::<T>();
    let mut out = std::vec![0u8; size];
    // SAFETY: out has exactly size bytes; T is Pod with explicit padding fields, so all
    // its bytes are initialised.
    unsafe {
        core::ptr::copy_nonoverlapping((record as *const T).cast::<u8>(), out.as_mut_ptr(), size)
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{KINDS, kind, kind_name},
        fill_cstr,
        proc::ProcCtx,
        reboot::{self, ExecEvent, KexecEvent, RebootSyscallEvent},
    };

    fn proc() -> ProcCtx {
        let mut p = ProcCtx {
            pid: 42,
            tid: 42,
            ppid: 1,
            loginuid: 0,
            sessionid: 7,
            ..Default::default()
        };
        fill_cstr(&mut p.comm, b"reboot");
        p
    }

    #[test]
    fn sizes_and_offsets_are_stable() {
        use core::mem::{offset_of, size_of};
        assert_eq!(size_of::<EventHeader>(), 16);
        assert_eq!(offset_of!(EventHeader, ktime_ns), 8);
        assert_eq!(offset_of!(RebootSyscallEvent, proc), 16);
        assert_eq!(offset_of!(RebootSyscallEvent, magic1), 112);
        assert_eq!(offset_of!(ExecEvent, filename), 128);
        assert_eq!(offset_of!(ExecEvent, args), 384);
        assert_eq!(offset_of!(ExecEvent, ancestors), 896);
        assert_eq!(size_of::<ExecEvent>(), 976);
        assert_eq!(offset_of!(ProcCtx, origin), 56);
        assert_eq!(offset_of!(ProcCtx, cgroup_id), 32);
        assert_eq!(offset_of!(ProcCtx, comm), 40);
    }

    #[test]
    fn reboot_round_trip() {
        let ev = RebootSyscallEvent {
            header: EventHeader::new(
                kind::REBOOT_SYSCALL,
                core::mem::size_of::<RebootSyscallEvent>(),
                5,
            ),
            proc: proc(),
            magic1: 0xfee1_dead,
            magic2: 1,
            cmd: 0x0123_4567,
            _pad0: 0,
        };
        assert_eq!(decode(&encode(&ev)), Ok(Event::RebootSyscall(ev.into())));
    }

    #[test]
    fn exec_round_trip() {
        let mut ev = ExecEvent {
            header: EventHeader::new(kind::EXEC, core::mem::size_of::<ExecEvent>(), 9),
            proc: proc(),
            class: reboot::class::SYSTEMCTL,
            args_len: 17,
            flags: 0,
            _pad0: 0,
            filename: [0; reboot::FILENAME_LEN],
            args: [0; reboot::ARGS_LEN],
            ancestors: Default::default(),
        };
        fill_cstr(&mut ev.filename, b"/usr/bin/systemctl");
        ev.args[..17].copy_from_slice(b"systemctl\0reboot\0");
        let decoded = decode(&encode(&ev)).unwrap();
        assert_eq!(decoded, Event::Exec(ev.into()));
        let Event::Exec(e) = decoded else {
            unreachable!()
        };
        assert_eq!(e.argv(), ["systemctl", "reboot"]);
    }

    #[test]
    fn unknown_kind_is_an_error() {
        let mut bytes = encode(&EventHeader::new(999, 16, 0));
        bytes.resize(64, 0);
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(999)));
    }

    #[test]
    fn bad_abi_and_length_and_short_are_errors() {
        let mut h = EventHeader::new(kind::KEXEC, core::mem::size_of::<KexecEvent>(), 0);
        h.abi = ABI_VERSION + 1;
        let mut bytes = encode(&h);
        bytes.resize(core::mem::size_of::<KexecEvent>(), 0);
        assert!(matches!(decode(&bytes), Err(DecodeError::Abi { .. })));

        let h = EventHeader::new(kind::KEXEC, 17, 0);
        let mut bytes = encode(&h);
        bytes.resize(core::mem::size_of::<KexecEvent>(), 0);
        assert!(matches!(decode(&bytes), Err(DecodeError::Length { .. })));

        let h = EventHeader::new(kind::KEXEC, core::mem::size_of::<KexecEvent>(), 0);
        assert!(matches!(
            decode(&encode(&h)),
            Err(DecodeError::Length { .. })
        ));
        assert_eq!(decode(&[1, 2, 3]), Err(DecodeError::Short(3)));
    }

    #[test]
    fn argv_split_handles_truncation_and_empty() {
        let mut ev: ExecEvent = unsafe_zeroed();
        assert!(ev.argv().is_empty());
        ev.args[..5].copy_from_slice(b"a\0bcd");
        ev.args_len = 5;
        assert_eq!(ev.argv(), ["a", "bcd"]);
        ev.args_len = 9999;
        assert_eq!(ev.argv().len(), 2);
    }

    fn unsafe_zeroed<T: aya::Pod>() -> T {
        // SAFETY: T is Pod: all-zero bytes are a valid value.
        unsafe { core::mem::zeroed() }
    }

    #[test]
    fn every_kind_up_to_max_has_a_size() {
        for k in 1..=kind::MAX {
            assert!(record_size(k).is_some(), "kind {k} has no size");
        }
        assert!(record_size(kind::MAX + 1).is_none());
    }

    #[test]
    fn the_table_has_one_row_per_number_and_name() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(
                k.number as usize,
                i + 1,
                "kinds are numbered 1.. without gaps"
            );
            assert_eq!(kind_name(k.number), k.name);
            assert_eq!(record_size(k.number), Some(k.size));
            assert!(
                KINDS[..i].iter().all(|o| o.name != k.name),
                "{} twice",
                k.name
            );
        }
        assert_eq!(KINDS.len(), kind::MAX as usize);
        assert_eq!(kind_name(0), "unknown");
    }

    #[test]
    fn exec_watch_key_rejects_what_cannot_match() {
        use crate::maps::ExecWatchKey;
        assert!(ExecWatchKey::new(b"reboot").is_some());
        assert!(ExecWatchKey::new(b"").is_none());
        assert!(ExecWatchKey::new(b"a-very-long-binary-name").is_none());
        assert!(ExecWatchKey::new(b"fifteen-chars-x").is_some());
        assert!(ExecWatchKey::new(b"sixteen-chars-xx").is_none());
        assert!(ExecWatchKey::new(b"re\0boot").is_none());
    }
}
