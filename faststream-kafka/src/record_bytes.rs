//! Copies of records' bytes out of librdkafka's fetch buffers.
//!
//! A record handed to a worker outlives the librdkafka message it was read from, so its
//! payload, key and header values are copied. One allocation per copied field would be the
//! fetch loop's largest allocation cost, and a cross-thread one: the fetch thread allocates,
//! the partition's worker frees, so neither thread's allocator cache is reused. Small fields
//! are instead copied into one shared chunk per partition and handed out as slices of it
//! (`Bytes` sharing the chunk by a reference count): one allocation per chunk, not per record.
//!
//! The price is memory the subscriber's byte budget does not count: a chunk is freed when the
//! last record copied into it is dropped, so a payload a handler keeps (in a cache, say) keeps
//! its whole chunk, at most [`CHUNK`] bytes, alive; and each partition being read holds the
//! unfilled rest of its current chunk until the fetch loop catches up
//! ([`RecordBytes::release`]). Fields larger than [`LARGEST_SHARED`] get their own
//! allocation, as do the records of a [`RecordBytes::detached`] copier (for replies a caller
//! keeps).

use bytes::{Bytes, BytesMut};

/// The size of one shared chunk.
pub(crate) const CHUNK: usize = 16 * 1024;

/// Fields longer than this are copied into an allocation of their own: a chunk holds at least
/// sixteen of the fields it shares.
pub(crate) const LARGEST_SHARED: usize = CHUNK / 16;

/// Copies record fields, into shared chunks or each on its own (see the module docs).
#[derive(Debug)]
pub(crate) struct RecordBytes {
    /// The unfilled rest of the current chunk.
    chunk: BytesMut,
    /// Fields up to this length are copied into the chunk; 0 copies each on its own.
    largest_shared: usize,
}

impl RecordBytes {
    /// A copier for one partition's fetched records, sharing chunks.
    pub(crate) fn shared() -> Self {
        Self {
            chunk: BytesMut::new(),
            largest_shared: LARGEST_SHARED,
        }
    }

    /// A copier that gives every field its own allocation (nothing kept beyond the record).
    pub(crate) fn detached() -> Self {
        Self {
            chunk: BytesMut::new(),
            largest_shared: 0,
        }
    }

    /// Lets go of the current chunk (it is freed once the records copied into it are): for a
    /// partition with nothing more to read now, whose chunk would otherwise stay allocated.
    pub(crate) fn release(&mut self) {
        self.chunk = BytesMut::new();
    }

    /// An owned copy of `bytes`.
    pub(crate) fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if bytes.is_empty() {
            return Bytes::new();
        }
        if bytes.len() > self.largest_shared {
            return Bytes::copy_from_slice(bytes);
        }
        if self.chunk.capacity() - self.chunk.len() < bytes.len() {
            // The old chunk lives on in the records already copied into it.
            self.chunk = BytesMut::with_capacity(CHUNK);
        }
        self.chunk.extend_from_slice(bytes);
        self.chunk.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `second` starts where `first` ends (slices of one buffer, copied in turn).
    fn adjacent(first: &Bytes, second: &Bytes) -> bool {
        first.as_ptr().wrapping_add(first.len()) == second.as_ptr()
    }

    #[test]
    fn small_fields_share_one_chunk_and_keep_their_contents() {
        let mut copier = RecordBytes::shared();
        let first = copier.copy(b"first record");
        let second = copier.copy(b"second");
        assert_eq!(first, Bytes::from_static(b"first record"));
        assert_eq!(second, Bytes::from_static(b"second"));
        // Adjacent slices of one buffer.
        assert!(adjacent(&first, &second));
    }

    #[test]
    fn a_full_chunk_is_replaced_and_the_old_one_outlives_it() {
        let mut copier = RecordBytes::shared();
        let field = vec![7_u8; LARGEST_SHARED];
        let copies: Vec<Bytes> = (0..CHUNK / LARGEST_SHARED + 1)
            .map(|_| copier.copy(&field))
            .collect();
        assert!(copies.iter().all(|c| c[..] == field[..]));
        let last = &copies[copies.len() - 1];
        let before = &copies[copies.len() - 2];
        assert!(!adjacent(before, last));
        drop(copier);
        assert!(copies.iter().all(|c| c[..] == field[..]));
    }

    #[test]
    fn large_fields_and_detached_copies_get_their_own_allocation() {
        let mut shared = RecordBytes::shared();
        let large = vec![1_u8; LARGEST_SHARED + 1];
        let a = shared.copy(&large);
        assert_eq!(shared.chunk.capacity(), 0, "no chunk for a large field");
        let b = shared.copy(b"small");
        assert_eq!(&a[..], &large[..]);
        assert_eq!(&b[..], b"small");
        let mut detached = RecordBytes::detached();
        let c = detached.copy(b"one");
        let d = detached.copy(b"two");
        assert_eq!((&c[..], &d[..]), (&b"one"[..], &b"two"[..]));
        assert!(!adjacent(&c, &d));
    }

    #[test]
    fn a_released_chunk_lives_on_in_its_records_only() {
        let mut copier = RecordBytes::shared();
        let before = copier.copy(b"before");
        copier.release();
        assert_eq!(copier.chunk.capacity(), 0);
        let after = copier.copy(b"after");
        assert_eq!((&before[..], &after[..]), (&b"before"[..], &b"after"[..]));
        assert!(!adjacent(&before, &after));
    }

    #[test]
    fn empty_fields_allocate_nothing() {
        let mut copier = RecordBytes::shared();
        assert!(copier.copy(b"").is_empty());
        assert_eq!(copier.chunk.capacity(), 0);
    }
}
