//! Ring-buffer records in shared memory (userspace only).
//!
//! The reader copies each record once, out of the ring buffer into a [`Batch`]: one
//! 8-aligned buffer per drain. The frozen batch is a [`Bytes`]; every record is a slice
//! of it, and a [`Record<T>`] reads its layout in place (`Deref<Target = T>`). Moving a
//! record through the queue to the detectors, or cloning it, copies a pointer and a
//! reference count, never the record.

use core::{marker::PhantomData, ops::Deref, ops::Range};

use bytes::Bytes;
use std::{boxed::Box, vec::Vec};

/// Record layouts are aligned to at most 8 bytes (the ring buffer's alignment).
pub const ALIGN: usize = 8;

/// The records of one drain of the ring buffer, each starting on an 8-byte boundary.
#[derive(Default)]
pub struct Batch {
    words: Vec<u64>,
}

impl Batch {
    pub fn with_capacity(bytes: usize) -> Batch {
        Batch {
            words: Vec::with_capacity(bytes.div_ceil(ALIGN)),
        }
    }

    /// Append a copy of `record`; its byte range in the frozen batch.
    pub fn push(&mut self, record: &[u8]) -> Range<usize> {
        let start = self.words.len() * ALIGN;
        self.words.extend(record.chunks(ALIGN).map(|c| {
            let mut w = [0u8; ALIGN];
            w[..c.len()].copy_from_slice(c);
            u64::from_ne_bytes(w)
        }));
        start..start + record.len()
    }

    /// Bytes held so far (padding included).
    pub fn len(&self) -> usize {
        self.words.len() * ALIGN
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The batch as shared, immutable bytes; `self` is empty afterwards.
    pub fn freeze(&mut self) -> Bytes {
        Bytes::from_owner(Words(core::mem::take(&mut self.words)))
    }
}

/// Owner of a frozen batch's memory (8-aligned, never moved while shared).
struct Words(Vec<u64>);

impl AsRef<[u8]> for Words {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: a u64 slice is a valid, initialised byte slice of eight times its
        // length, with the same lifetime; u8 has no alignment requirement.
        unsafe { core::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * ALIGN) }
    }
}

/// Owner of one record built from a value (tests, the unaligned fallback).
struct Owned<T>(Box<T>);

impl<T: aya::Pod> AsRef<[u8]> for Owned<T> {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: T is Pod: #[repr(C)] integers and byte arrays with explicit padding
        // fields, so all size_of::<T>() bytes behind the box are initialised.
        unsafe {
            core::slice::from_raw_parts(
                (&*self.0 as *const T).cast::<u8>(),
                core::mem::size_of::<T>(),
            )
        }
    }
}

/// One record of layout `T`, read in place from shared bytes.
pub struct Record<T> {
    bytes: Bytes,
    layout: PhantomData<fn() -> T>,
}

impl<T: aya::Pod + Send> Record<T> {
    /// A record holding a copy of `value` (tests and tools).
    pub fn new(value: T) -> Record<T> {
        Record {
            bytes: Bytes::from_owner(Owned(Box::new(value))),
            layout: PhantomData,
        }
    }

    /// The record over `bytes` without copying when they are aligned for `T` (always,
    /// for slices of a [`Batch`]); a copy otherwise. `bytes` must hold at least
    /// `size_of::<T>()` bytes (the decoder checked the length).
    pub(crate) fn from_bytes(bytes: Bytes) -> Record<T> {
        assert!(bytes.len() >= core::mem::size_of::<T>());
        if (bytes.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>()) {
            Record {
                bytes,
                layout: PhantomData,
            }
        } else {
            Record::new(crate::decode::read(&bytes))
        }
    }
}

impl<T: aya::Pod> Record<T> {
    /// A copy of the value (to change it in a test).
    pub fn get(&self) -> T {
        **self
    }

    /// The record's bytes (shared with its batch).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl<T: aya::Pod> Deref for Record<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `from_bytes`/`new` checked that the bytes are at least size_of::<T>()
        // long and aligned for T; T is Pod, so any bit pattern is a valid T; the bytes
        // are immutable and live as long as `self`.
        unsafe { &*self.bytes.as_ptr().cast::<T>() }
    }
}

impl<T: aya::Pod + Send> From<T> for Record<T> {
    fn from(value: T) -> Record<T> {
        Record::new(value)
    }
}

impl<T> Clone for Record<T> {
    fn clone(&self) -> Record<T> {
        Record {
            bytes: self.bytes.clone(),
            layout: PhantomData,
        }
    }
}

impl<T: aya::Pod + core::fmt::Debug> core::fmt::Debug for Record<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: aya::Pod + PartialEq> PartialEq for Record<T> {
    fn eq(&self, other: &Record<T>) -> bool {
        **self == **other
    }
}

impl<T: aya::Pod + Eq> Eq for Record<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::encode;
    use crate::event::{EventHeader, kind};

    #[test]
    fn records_of_a_batch_share_its_memory_and_stay_aligned() {
        let mut batch = Batch::default();
        let a = batch.push(&[1, 2, 3]);
        let h = EventHeader::new(kind::KEXEC, 16, 77);
        let b = batch.push(&encode(&h));
        assert_eq!((a.clone(), b.clone()), (0..3, 8..24));
        let bytes = batch.freeze();
        assert!(batch.is_empty());
        let rec = Record::<EventHeader>::from_bytes(bytes.slice(b));
        assert_eq!(rec.ktime_ns, 77);
        // In place: the record points into the batch.
        assert_eq!(rec.bytes().as_ptr(), bytes[8..].as_ptr());
        assert_eq!(&bytes[a], &[1, 2, 3]);
        let copy = rec.clone();
        assert_eq!(copy.bytes().as_ptr(), rec.bytes().as_ptr());
    }

    #[test]
    fn unaligned_bytes_are_copied_not_misread() {
        let h = EventHeader::new(kind::KEXEC, 16, 5);
        let mut raw = std::vec![0u8];
        raw.extend(encode(&h));
        let shared = Bytes::from(raw).slice(1..);
        let rec = Record::<EventHeader>::from_bytes(shared.clone());
        assert_eq!(*rec, h);
        if !(shared.as_ptr() as usize).is_multiple_of(8) {
            assert_ne!(rec.bytes().as_ptr(), shared.as_ptr());
        }
    }
}
