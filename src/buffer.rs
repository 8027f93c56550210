//! `Buffer`: immutable bytes plus a lazily computed, cached checksum.
//!
//! The bytes are a `bytes::Bytes`, so clones and slices share one allocation, and a memory map
//! (or any other owner of bytes) can back a buffer without a copy (`Buffer::from_owner`).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::checksum::Checksum;

/// Immutable content with its (lazily computed) SHA-256 checksum.
#[derive(Clone)]
pub struct Buffer {
    data: Bytes,
    checksum: Arc<OnceLock<Checksum>>,
}

impl Buffer {
    pub fn new(data: impl Into<Bytes>) -> Self {
        Buffer {
            data: data.into(),
            checksum: Arc::new(OnceLock::new()),
        }
    }

    /// A buffer whose checksum is already known (trusted: the caller has verified it).
    pub fn with_checksum(data: impl Into<Bytes>, checksum: Checksum) -> Self {
        let lock = OnceLock::new();
        let _ = lock.set(checksum);
        Buffer {
            data: data.into(),
            checksum: Arc::new(lock),
        }
    }

    /// Zero-copy buffer over any owner of bytes, e.g. a `memmap2::Mmap`.
    pub fn from_owner<T>(owner: T) -> Self
    where
        T: AsRef<[u8]> + Send + 'static,
    {
        Buffer::new(Bytes::from_owner(owner))
    }

    /// The checksum, computed on first use and cached (shared by clones).
    pub fn checksum(&self) -> Checksum {
        *self.checksum.get_or_init(|| Checksum::of(&self.data))
    }

    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl PartialEq for Buffer {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}

impl Eq for Buffer {}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} bytes)", self.data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_cached_and_shared() {
        let b = Buffer::new(b"hello\n".to_vec());
        let c = b.clone();
        assert_eq!(
            b.checksum().hex(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert!(c.checksum.get().is_some());
    }

    #[test]
    fn owner_backed_buffer() {
        let b = Buffer::from_owner(vec![1u8, 2, 3]);
        assert_eq!(b.as_slice(), &[1, 2, 3]);
    }
}
