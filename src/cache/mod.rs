//! The RAM buffer cache (refcounts, decaying temprefs, soft/hard caps, cost-aware eviction) and
//! the memmap offload tier with GSEGUtils `lazy_disk_cache` semantics, and GSEGUtils' named-array
//! codec (`<key>.npy` + `<key>.meta.json`).

pub mod eviction;
pub mod named_store;
pub mod offload;
pub mod ram;

pub use eviction::{Clock, ManualClock, SystemClock, TemprefParams};
pub use named_store::{EntryFlags, NamedArray, NamedArrayStore, NamedStoreError};
pub use offload::{LoadMode, OffloadConfig, OffloadEntry, OffloadError, Residence};
pub use ram::{EvictionLoop, EvictionReport, RamCache, RamConfig};
