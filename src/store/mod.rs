//! What a store is made of: buffer tiers behind one small trait (`Tier`), one file per backend,
//! one combinator that layers a faster tier over a slower one (in the style of tvix castore's
//! blobservice), tiers built from addresses (`addr`), and the `Store` handle that owns a store
//! directory (its tier stack, `seamless.db` and its lock).
//!
//! Backends: `memory` (the RAM tier: bytes born in RAM, refcounts and temprefs, soft/hard caps),
//! `disk` (a Seamless-compatible buffer directory `buffers/<2 hex>/<hex>`, memory-mapped on
//! read: the offload tier). `layered` is the only type that knows two tiers.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::buffer::Buffer;
use crate::checksum::Checksum;

pub mod addr;
mod bounded;
pub mod disk;
pub mod eviction;
pub mod gc;
pub mod http;
pub mod layered;
pub mod memory;
pub mod push;
pub mod remote;
#[cfg(test)]
mod remote_tests;
mod running_hash;
pub mod s3;
mod stack;
#[cfg(test)]
mod test_servers;
#[cfg(test)]
mod tests;

pub use bounded::Bounded;
pub use disk::{DiskStore, Kept, Layout, PendingWrite, Verdict};
pub use gc::{GcOptions, GcReport};
pub use layered::{EvictionLoop, EvictionReport};
pub use layered::{Layered, Writes};
pub use memory::{MemoryTier, RamConfig};
pub use stack::{Lock, RemoteStack, Store, StoreOptions, database_path};

/// Errors of a buffer tier.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("buffer {expected} is corrupt: its content has checksum {actual}")]
    Corrupt {
        expected: Checksum,
        actual: Checksum,
    },
    /// The tier cannot take the buffer (a hard cap); a layered store then writes below it.
    #[error("{0}")]
    Full(String),
    /// An earlier write of this pending buffer failed: its bytes are unknown, so it cannot be
    /// committed (the write is given up instead of storing something else under a checksum).
    #[error("an earlier write to this file failed ({0}); the file was not stored")]
    Poisoned(String),
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// Wrap an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The errno a filesystem caller should report.
    pub fn errno(&self) -> i32 {
        match self {
            StoreError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            StoreError::Full(_) => libc::ENOSPC,
            _ => libc::EIO,
        }
    }
}

/// Every stored checksum of a tier, produced lazily (a tier may hold millions).
pub type Listing = Box<dyn Iterator<Item = Result<Checksum, StoreError>> + Send>;

/// A place buffers are kept, named by their SHA-256: RAM, a buffer directory, a remote server.
///
/// Reads are ranged (`open_read` gives a `Reader`; zero-copy where the bytes are in RAM or
/// mapped), writes are streamed (`begin_write` gives a `TierWrite` whose `commit` verifies the
/// checksum), and `list` streams. Everything is synchronous: callers on an async runtime use
/// `spawn_blocking`. `get` and `put` are conveniences over the streaming calls.
pub trait Tier: Send + Sync {
    /// The buffer's length in bytes, if the tier holds it.
    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError>;

    /// Whether the tier holds the buffer.
    fn has(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        Ok(self.length(checksum)?.is_some())
    }

    /// Whether the tier holds each buffer (`/has` of many). One `has` each here; a network
    /// tier asks in batches, and a composition asks the tier below, in one call, only for what
    /// the tier above lacks.
    fn has_many(&self, checksums: &[Checksum]) -> Result<Vec<bool>, StoreError> {
        checksums.iter().map(|c| self.has(c)).collect()
    }

    /// The length of each buffer, `None` where the tier lacks it (`/buffer-length` of many):
    /// asked as `has_many` is, in batches over the network, the tier below only for the rest.
    fn length_many(&self, checksums: &[Checksum]) -> Result<Vec<Option<u64>>, StoreError> {
        checksums.iter().map(|c| self.length(c)).collect()
    }

    /// A reader of the buffer, if the tier holds it.
    fn open_read(&self, checksum: &Checksum) -> Result<Option<Reader>, StoreError>;

    /// Start writing a buffer whose bytes arrive piecewise.
    fn begin_write(&self) -> Result<Box<dyn TierWrite>, StoreError>;

    /// A write kept with `TierWrite::keep` by an earlier process, at `path`; None if this tier
    /// did not keep it (or it is gone).
    fn resume_write(&self, _path: &Path) -> Result<Option<Box<dyn TierWrite>>, StoreError> {
        Ok(None)
    }

    /// Every checksum the tier holds, lazily.
    fn list(&self) -> Listing;

    /// A file holding exactly the buffer's bytes, if the tier has one (FUSE passthrough,
    /// `sendfile`). The file is read-only and never changed in place.
    fn local_path(&self, _checksum: &Checksum) -> Option<PathBuf> {
        None
    }

    /// Drop the buffer from this tier (garbage collection, eviction); false if it was not here.
    fn remove(&self, checksum: &Checksum) -> Result<bool, StoreError>;

    /// A snapshot of this tier's counters (a composition lists its parts, fastest first).
    fn stats(&self) -> Stats;

    /// What it costs to fetch `size` bytes of this buffer back from this tier (seamless-core's
    /// cost units; ranks eviction). Local files cost like seamless' `read_buffer` profile.
    fn fetch_cost(&self, _checksum: &Checksum, size: u64) -> f64 {
        CostProfile::READ_BUFFER.cost(size)
    }

    /// A strong reference (an open file; seamless-core's `incref`): raises the buffer's
    /// interest in tiers that evict, until `release`.
    fn hold(&self, _checksum: &Checksum) {}

    /// Ends one `hold`.
    fn release(&self, _checksum: &Checksum) {}

    /// Pin (or unpin) a buffer: tiers that evict keep a pinned buffer they hold.
    fn pin(&self, _checksum: &Checksum, _pinned: bool) {}

    /// The buffer is derived and took `cpu_seconds` to compute: dearer to evict than to fetch.
    fn derived(&self, _checksum: &Checksum, _cpu_seconds: f64) {}

    /// The eviction side of a tier that has a capacity (see `Evict`); `None` for the others.
    fn evictor(&self) -> Option<&dyn Evict> {
        None
    }

    /// For tiers that download (network tiers): a reader of the buffer whose bytes are written
    /// into `cache` as they arrive and committed there (verified) when complete, so the tier
    /// above is filled without reading the buffer twice. `None`: this tier does not stream; the
    /// caller uses `open_read`.
    fn read_through(
        &self,
        _checksum: &Checksum,
        _cache: &Arc<dyn Tier>,
    ) -> Option<Result<Option<Reader>, StoreError>> {
        None
    }

    /// The whole buffer (zero-copy when the tier has it in RAM or mapped).
    fn get(&self, checksum: &Checksum) -> Result<Option<Buffer>, StoreError> {
        match self.open_read(checksum)? {
            Some(reader) => reader.into_buffer(*checksum).map(Some),
            None => Ok(None),
        }
    }

    /// Keep a whole buffer (idempotent: identical content is stored once). Verified.
    fn put(&self, buffer: &Buffer) -> Result<Checksum, StoreError> {
        let mut write = self.begin_write()?;
        write.write_at(0, buffer.as_slice())?;
        write.commit(Some(buffer.checksum()))
    }
}

/// A buffer being written to a tier. Dropping it without `commit` discards it.
///
/// The bytes and the checksum cannot diverge: a write that fails (even partly) poisons the
/// pending buffer, so `commit` then fails with `StoreError::Poisoned` instead of storing bytes
/// nobody wrote; `commit` always hashes exactly `len()` bytes.
pub trait TierWrite: Send {
    /// Write `data` at `offset` (the buffer grows as needed; gaps read as zeros).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError>;
    /// `write_at` of bytes the caller shares (a download's chunks): a tier may keep them
    /// instead of copying (a disk tier hashes these very bytes instead of reading them back).
    fn write_bytes(&mut self, offset: u64, data: Bytes) -> Result<(), StoreError> {
        self.write_at(offset, &data)
    }
    /// Truncate or extend (with zeros) to `len` bytes.
    fn set_len(&mut self, len: u64) -> Result<(), StoreError>;
    /// Read back what was written so far; the number of bytes read (0 at the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError>;
    /// A file holding the bytes written so far at their offsets, for readers that must not
    /// wait for the writer (a download's readers); `None`: read through `read_at`.
    fn read_back(&self) -> Option<std::fs::File> {
        None
    }
    /// The length written so far.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Finish: hash the bytes, check them against `expected` if given, store them under their
    /// checksum (durably, for a persistent tier) and return it.
    fn commit(self: Box<Self>, expected: Option<Checksum>) -> Result<Checksum, StoreError>;
    /// `commit` whose durability is deferred: the buffer is stored and verified, but a disk
    /// tier does not fsync it; `disk::sync_deferred` makes every such buffer durable. The caller
    /// must record the checksum in the deferred ledger (`store::deferred`) in the same
    /// transaction that makes anything refer to it, so that a power loss before the sync is
    /// repaired at the next start. Tiers without a deferred form commit durably.
    fn commit_deferred(
        self: Box<Self>,
        expected: Option<Checksum>,
    ) -> Result<Checksum, StoreError> {
        self.commit(expected)
    }

    /// Whether `commit` must read every byte again to hash it (the writes did not arrive in
    /// order): committing then costs about a read of the whole buffer.
    fn needs_rehash(&self) -> bool {
        false
    }

    /// Keep the pending bytes across a restart of the process (a temp file the cleaning at
    /// open leaves alone), named after `tag`; `Tier::resume_write` opens it again. None: this
    /// write cannot be kept (the caller commits it instead).
    fn keep(&mut self, _tag: &str) -> Result<Option<Kept>, StoreError> {
        Ok(None)
    }

    /// Start this fresh write as an edit of the stored buffer in file `base` (`len` bytes,
    /// already `set_len`): bytes never written read as the base's, and nothing is copied until
    /// the commit. False if this write cannot (the caller copies the base in instead).
    fn overlay(&mut self, _base: std::fs::File, _len: u64) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// A ranged read that is not backed by bytes in memory (a file read piecewise, a remote range).
pub trait RangedRead: Send + Sync {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// A reader of one stored buffer.
pub enum Reader {
    /// Bytes in RAM or a memory map: reads are zero-copy slices.
    Bytes(Buffer),
    /// Anything else, read piecewise.
    Ranged(Box<dyn RangedRead>),
}

impl Reader {
    pub fn len(&self) -> u64 {
        match self {
            Reader::Bytes(b) => b.len() as u64,
            Reader::Ranged(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `len` bytes from `offset` (fewer at the end; empty past it). Zero-copy for `Bytes`.
    pub fn range(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let end = self.len().min(offset.saturating_add(len as u64));
        if offset >= end {
            return Ok(Bytes::new());
        }
        match self {
            Reader::Bytes(b) => Ok(b.bytes().slice(offset as usize..end as usize)),
            Reader::Ranged(r) => {
                let mut out = vec![0u8; (end - offset) as usize];
                let mut done = 0;
                while done < out.len() {
                    match r.read_at(offset + done as u64, &mut out[done..])? {
                        0 => break,
                        n => done += n,
                    }
                }
                out.truncate(done);
                Ok(Bytes::from(out))
            }
        }
    }

    /// Copy bytes from `offset` into `buf`: how many (0 at the end; a ranged reader may give
    /// fewer than asked before the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Bytes(b) => {
                let data = b.as_slice();
                let start = offset.min(data.len() as u64) as usize;
                let n = buf.len().min(data.len() - start);
                buf[..n].copy_from_slice(&data[start..start + n]);
                Ok(n)
            }
            Reader::Ranged(r) => r.read_at(offset, buf),
        }
    }

    /// The whole buffer, named `checksum` (read in full for a ranged reader).
    pub fn into_buffer(self, checksum: Checksum) -> Result<Buffer, StoreError> {
        match self {
            Reader::Bytes(b) => Ok(Buffer::with_checksum(b.bytes().clone(), checksum)),
            Reader::Ranged(_) => {
                let all = self
                    .range(0, self.len() as usize)
                    .map_err(|e| StoreError::io(checksum.hex(), e))?;
                Ok(Buffer::with_checksum(all, checksum))
            }
        }
    }

    /// A `Read + Seek` view (for copying between tiers and streaming to clients).
    pub fn cursor(&self) -> ReaderCursor<'_> {
        ReaderCursor {
            reader: self,
            at: 0,
        }
    }
}

/// `std::io::Read + Seek` over a `Reader`.
pub struct ReaderCursor<'a> {
    reader: &'a Reader,
    at: u64,
}

impl io::Read for ReaderCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read_at(self.at, buf)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl io::Seek for ReaderCursor<'_> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let target = match pos {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(d) => self.reader.len().checked_add_signed(d),
            io::SeekFrom::Current(d) => self.at.checked_add_signed(d),
        };
        self.at = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.at)
    }
}

/// Ask `tier`, in one `has_many`, about the checksums `found` marks as not found yet, and mark
/// those it holds. On an error nothing is marked.
pub fn ask_lacking(
    tier: &dyn Tier,
    checksums: &[Checksum],
    found: &mut [bool],
) -> Result<(), StoreError> {
    fill_lacking(checksums, found, |f| !f, |asked| tier.has_many(asked))
}

/// Ask `tier`, in one `length_many`, for the lengths `lengths` lacks yet, and fill in those it
/// knows. On an error nothing is filled in.
pub fn ask_lacking_lengths(
    tier: &dyn Tier,
    checksums: &[Checksum],
    lengths: &mut [Option<u64>],
) -> Result<(), StoreError> {
    fill_lacking(checksums, lengths, Option::is_none, |asked| {
        tier.length_many(asked)
    })
}

/// The answers that `lacks` picks out of `answers` (one per checksum), replaced by what `ask`
/// answers for their checksums, in one call.
fn fill_lacking<T>(
    checksums: &[Checksum],
    answers: &mut [T],
    lacks: impl Fn(&T) -> bool,
    ask: impl FnOnce(&[Checksum]) -> Result<Vec<T>, StoreError>,
) -> Result<(), StoreError> {
    let lacking: Vec<usize> = (0..checksums.len())
        .filter(|&i| lacks(&answers[i]))
        .collect();
    if lacking.is_empty() {
        return Ok(());
    }
    let asked: Vec<Checksum> = lacking.iter().map(|&i| checksums[i]).collect();
    for (i, answer) in lacking.into_iter().zip(ask(&asked)?) {
        answers[i] = answer;
    }
    Ok(())
}

/// Copy a buffer from a reader into a tier, streamed in blocks (never whole in RAM unless the
/// reader already is). Verified against `checksum`.
pub fn copy_into(reader: &Reader, to: &dyn Tier, checksum: &Checksum) -> Result<(), StoreError> {
    const BLOCK: usize = 1 << 20;
    let mut write = to.begin_write()?;
    let mut offset = 0u64;
    while offset < reader.len() {
        let block = reader
            .range(offset, BLOCK)
            .map_err(|e| StoreError::io(checksum.hex(), e))?;
        write.write_at(offset, &block)?;
        offset += block.len() as u64;
    }
    write.commit(Some(*checksum)).map(|_| ())
}

/// The eviction side of a tier with a capacity. The tier picks victims and forgets them; the
/// combinator over it moves them to the tier below first (`Layered::evict_once`).
pub trait Evict: Send + Sync {
    /// Buffers to move out now, lowest score first, until the tier would be under its soft cap
    /// and have room for `room` more bytes under its hard cap, never `spare` (the buffer just
    /// put, about to be read); `cost_below` is what getting one back from the tier below costs.
    /// The victims are marked: each must be answered with `evicted` or `kept`.
    fn victims(
        &self,
        room: u64,
        spare: Option<&Checksum>,
        cost_below: &dyn Fn(&Checksum, u64) -> f64,
    ) -> Vec<(Checksum, Reader)>;
    /// The victim is safe below (`offloaded`: it was copied there now): drop it here.
    fn evicted(&self, checksum: &Checksum, offloaded: bool);
    /// The victim could not be moved: keep it.
    fn kept(&self, checksum: &Checksum);
}

/// A download cost profile of seamless-core's cost module: `max(GB × units_per_gb, min_cost)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostProfile {
    pub units_per_gb: f64,
    pub min_cost: f64,
}

impl CostProfile {
    /// A local buffer file or directory.
    pub const READ_BUFFER: CostProfile = CostProfile {
        units_per_gb: 1.0,
        min_cost: 0.0,
    };
    /// A hashserver on this machine.
    pub const LOCAL_HASHSERVER: CostProfile = CostProfile {
        units_per_gb: 10.0,
        min_cost: 0.001,
    };
    /// A hashserver over the network.
    pub const REMOTE_HASHSERVER: CostProfile = CostProfile {
        units_per_gb: 100.0,
        min_cost: 0.01,
    };

    pub fn cost(&self, size: u64) -> f64 {
        (size as f64 / GIB * self.units_per_gb).max(self.min_cost)
    }
}

/// Bytes per GB in seamless-core's cost formulas (2^30).
pub const GIB: f64 = (1u64 << 30) as f64;

/// Counters of a (possibly composed) store: one `TierStats` per tier, fastest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub tiers: Vec<TierStats>,
}

impl Stats {
    /// The counters of the tier called `name` (`"ram"`, `"disk"`, ...).
    pub fn tier(&self, name: &str) -> Option<&TierStats> {
        self.tiers.iter().find(|t| t.tier == name)
    }
}

/// A snapshot of one tier's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierStats {
    /// `"ram"`, `"disk"`, `"file"`, ...
    pub tier: String,
    /// Bytes of buffers the tier holds now (`None`: not counted yet, e.g. a disk being scanned).
    pub bytes: Option<u64>,
    /// The tier's capacity in bytes (`None`: unbounded).
    pub capacity: Option<u64>,
    /// Reads this tier answered.
    pub hits: u64,
    /// Reads this tier could not answer.
    pub misses: u64,
    /// Buffers written into this tier.
    pub puts: u64,
    /// Buffers dropped from this tier by eviction (each is safe in a tier below).
    pub evictions: u64,
    /// Evicted buffers that were copied to the tier below because it lacked them.
    pub offloads: u64,
}

/// Live hit/miss/put counters shared by the tiers (relaxed atomics: they are statistics).
#[derive(Debug, Default)]
pub struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    puts: AtomicU64,
}

impl Counters {
    /// Count a read: a hit if `found`, else a miss.
    pub fn lookup(&self, found: bool) {
        let counter = if found { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn put(&self) {
        self.puts.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot, with the other fields zero.
    pub fn snapshot(&self, tier: &str) -> TierStats {
        TierStats {
            tier: tier.to_string(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            ..TierStats::default()
        }
    }
}
