//! GSEGUtils `lazy_disk_cache` interop (spec `lazy-disk-cache.md`): the per-entry memmap offload
//! state machine (`<stem>.dat`: RAM, mapped, offloaded) and the named-array store
//! (`<key>.npy` + `<key>.meta.json`), both readable and writable by GSEGUtils 0.6.0 itself
//! (tested against it in `tests/store.rs`, timed against it by `scripts/bench-offload.sh`).
//!
//! The mount's own offload tier is not here: the RAM tier evicts into the store's disk tier
//! (`store::disk`), which keeps the same guarantees (temp file, fsync, atomic rename, directory
//! fsync; reloaded as a memory map, never copied whole into RAM).

pub mod named_store;
pub mod offload;

pub use named_store::{EntryFlags, NamedArray, NamedArrayStore, NamedStoreError};
pub use offload::{LoadMode, OffloadConfig, OffloadEntry, OffloadError, Residence};
