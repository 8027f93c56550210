//! The errno mapping: what a tree or store error tells the kernel (logged where it is a fault
//! rather than a normal answer).

use nix::errno::Errno;

use super::tree::TreeError;
use crate::store::StoreError;

/// Result of a filesystem operation: the errno tells the kernel what went wrong.
pub type FsResult<T> = Result<T, Errno>;

pub(super) fn tree_errno(e: TreeError) -> Errno {
    // A failed commit was logged where it failed (`db::Database`), with the database's path.
    let logged = matches!(e, TreeError::Database(crate::db::DbError::Commit(_)));
    if matches!(e, TreeError::Db(_) | TreeError::Database(_)) && !logged {
        tracing::error!(error = %e, "tree database error");
    }
    Errno::from_raw(e.errno())
}

pub(super) fn store_errno(e: StoreError) -> Errno {
    tracing::error!(error = %e, "store error");
    Errno::from_raw(e.errno())
}
