//! The mount: a namespace (inodes, the writable tree, `by-checksum/` and `as-<celltype>/` views)
//! that tests drive directly, and a thin `fuser` adapter over it.

pub mod claims;
pub mod fuse;
pub mod handles;
pub mod index;
pub mod inodes;
pub mod namespace;
pub mod tree;
pub mod views;
