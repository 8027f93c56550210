//! Buffer tiers: one small trait (`BufferTier`), one file per implementation, and a combinator
//! that layers a faster tier over a slower one (in the style of tvix castore's blobservice).
//! The disk tier is a Seamless-compatible buffer directory (`buffers/<first 2 hex>/<hex>`).
//! Also owns the per-tier hit/miss counters (`TierStats`) every tier reports.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::buffer::Buffer;
use crate::checksum::Checksum;

pub mod disk;
pub mod layered;
mod running_hash;

pub use disk::{DiskStore, PendingWrite, Verdict};
pub use layered::{Layered, WritePolicy};

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
    #[error("{0}")]
    Full(String),
}

impl StoreError {
    /// Wrap an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
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
    /// A snapshot of this tier's counters (a composition lists its parts, fastest first).
    fn stats(&self) -> Stats;
    /// What it costs to fetch `size` bytes of this buffer back from this tier (seamless-core's
    /// cost units; used to rank eviction). Local files cost like seamless' `read_buffer` profile.
    fn fetch_cost(&self, _checksum: &Checksum, size: u64) -> f64 {
        CostProfile::READ_BUFFER.cost(size)
    }
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
    /// `"ram"`, `"disk"`, `"offload"`, ...
    pub tier: String,
    /// `get` calls answered by this tier.
    pub hits: u64,
    /// `get` calls this tier could not answer.
    pub misses: u64,
    /// Buffers written into this tier.
    pub puts: u64,
    /// Bytes currently held in RAM by this tier (0 for tiers that keep nothing in RAM).
    pub ram_bytes: u64,
    /// Buffers dropped from this tier by eviction.
    pub evictions: u64,
    /// Buffers moved from this tier to a lower one because they existed nowhere else.
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
    /// Count a `get` result: a hit if `found`, else a miss.
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
