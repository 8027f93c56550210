//! seamfs: a FUSE content-addressed filesystem, byte- and wire-compatible with the Seamless data
//! layer (seamless-core, seamless-database, seamless-remote).
//!
//! Data flows from `checksum`/`buffer`/`value` (the data model) through `celltype` (codecs and
//! conversions) into the storage tiers (`store`: a RAM tier over a disk tier, owned by `store::Store`), with metadata in
//! `db` served over `http`, and the mount (`fs`) on top. `cli` wires them into one binary.
//! See `docs/architecture.md`.

pub mod buffer;
pub mod buffer_info;
pub mod celltype;
pub mod checksum;
pub mod cli;
pub mod compat;
pub mod db;
pub mod fs;
pub mod gseg;
pub mod hashserver;
pub mod http;
pub mod store;
pub mod value;

pub use buffer::Buffer;
pub use celltype::CellType;
pub use checksum::Checksum;
