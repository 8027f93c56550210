//! Buffer tiers: one small trait (`BufferTier`), one file per implementation, and a combinator
//! that layers a faster tier over a slower one (in the style of tvix castore's blobservice).
//! The disk tier is a Seamless-compatible buffer directory (`buffers/<first 2 hex>/<hex>`).

use crate::buffer::Buffer;
use crate::checksum::Checksum;

/// Errors of a buffer tier.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("buffer {expected} is corrupt: its content has checksum {actual}")]
    Corrupt { expected: Checksum, actual: Checksum },
    #[error("{0}")]
    Full(String),
}

/// A place buffers can be kept: RAM, a disk directory, a remote server.
pub trait BufferTier: Send + Sync {
    /// Whether the tier holds the buffer.
    fn has(&self, checksum: &Checksum) -> Result<bool, StoreError>;
    /// The buffer, if the tier holds it.
    fn get(&self, checksum: &Checksum) -> Result<Option<Buffer>, StoreError>;
    /// Keep a buffer (idempotent: identical content is stored once).
    fn put(&self, buffer: &Buffer) -> Result<(), StoreError>;
    /// The buffer's length in bytes, if the tier holds it.
    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError>;
}
