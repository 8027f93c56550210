//! The mount: a namespace (inodes, the writable tree, `by-checksum/` and `as-<celltype>/` views)
//! that tests drive directly, and a thin `fuser` adapter over it.

pub mod attr;
pub mod claims;
pub mod deferred;
pub mod error;
pub mod fixed;
pub mod fuse;
pub mod handles;
pub mod index;
pub mod inodes;
pub mod journal;
pub mod kept;
pub mod namespace;
pub mod sidecars;
#[cfg(test)]
mod test_support;
pub mod ticker;
pub mod tree;
pub mod tree_ops;
pub mod views;
pub mod write;
pub mod xattr;
