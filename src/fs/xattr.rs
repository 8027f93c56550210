//! Extended attributes: the checksum of a tree file or buffer and its cell type where known
//! (ours, read-only), and any other attributes set on tree entries (stored in
//! `seamfs_xattrs` beside the tree, so `rsync -X` and `cp --preserve=xattr` keep them).
//!
//! Ours stay read-only, but setting one to the value it has, or removing one, succeeds without
//! changing anything: `rsync -aX` out of the mount and back in does exactly that. Like the
//! sidecars, ours are found by name but listed only with `--list-sidecars`, so that `rsync -X`
//! and `cp --preserve=all` copy exactly the attributes users set.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use nix::errno::Errno;
use rusqlite::{Connection, params};

use super::error::{FsResult, tree_errno};
use super::inodes::Dynamic;
use super::namespace::Namespace;
use super::tree::TreeError;
use crate::celltype::CellType;
use crate::checksum::Checksum;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seamfs_xattrs (
    ino INTEGER NOT NULL,
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (ino, name)
);
";

/// Extended attributes set by users on tree entries: inode → name → value.
#[derive(Debug, Default)]
pub struct UserXattrs {
    map: Mutex<HashMap<u64, BTreeMap<String, Vec<u8>>>>,
}

impl UserXattrs {
    /// Load every stored attribute (creating the table on first use).
    pub fn load(conn: &Connection) -> Result<UserXattrs, TreeError> {
        conn.execute_batch(SCHEMA)?;
        let mut statement = conn.prepare("SELECT ino, name, value FROM seamfs_xattrs")?;
        let rows = statement.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?;
        let mut map: HashMap<u64, BTreeMap<String, Vec<u8>>> = HashMap::new();
        for row in rows {
            let (ino, name, value) = row?;
            map.entry(ino as u64).or_default().insert(name, value);
        }
        Ok(UserXattrs {
            map: Mutex::new(map),
        })
    }

    fn get(&self, ino: u64, name: &str) -> Option<Vec<u8>> {
        self.lock().get(&ino)?.get(name).cloned()
    }

    fn names(&self, ino: u64) -> Vec<String> {
        self.lock()
            .get(&ino)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn set(&self, tx: &Connection, ino: u64, name: &str, value: &[u8]) -> Result<(), TreeError> {
        tx.execute(
            "INSERT OR REPLACE INTO seamfs_xattrs (ino, name, value) VALUES (?1, ?2, ?3)",
            params![ino as i64, name, value],
        )?;
        self.lock()
            .entry(ino)
            .or_default()
            .insert(name.to_string(), value.to_vec());
        Ok(())
    }

    fn remove(&self, tx: &Connection, ino: u64, name: &str) -> Result<bool, TreeError> {
        tx.execute(
            "DELETE FROM seamfs_xattrs WHERE ino = ?1 AND name = ?2",
            params![ino as i64, name],
        )?;
        Ok(self
            .lock()
            .get_mut(&ino)
            .is_some_and(|m| m.remove(name).is_some()))
    }

    /// Drop every attribute of a removed tree entry.
    pub fn remove_all(&self, tx: &Connection, ino: u64) -> Result<(), TreeError> {
        tx.execute("DELETE FROM seamfs_xattrs WHERE ino = ?1", [ino as i64])?;
        self.lock().remove(&ino);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, BTreeMap<String, Vec<u8>>>> {
        self.map.lock().expect("xattrs lock")
    }
}

fn is_ours(name: &str) -> bool {
    name == CHECKSUM_XATTR || name == CELLTYPE_XATTR
}

/// Extended attribute holding a file's checksum.
pub const CHECKSUM_XATTR: &str = "user.seamless.checksum";

/// Extended attribute holding the cell type a buffer is, once known.
pub const CELLTYPE_XATTR: &str = "user.seamless.celltype";

impl Namespace {
    /// `user.seamless.checksum` on files and buffers; `user.seamless.celltype` where known.
    pub fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        if !is_ours(name) {
            return self.xattrs.get(ino, name).ok_or(Errno::ENODATA);
        }
        let checksum = self.content_checksum(ino)?;
        match name {
            CHECKSUM_XATTR => Ok(checksum.hex().into_bytes()),
            CELLTYPE_XATTR => self
                .known_celltype(checksum)
                .map(|c| c.name().as_bytes().to_vec())
                .ok_or(Errno::ENODATA),
            _ => Err(Errno::ENODATA),
        }
    }

    /// Names of the extended attributes of `ino` (ours only with `--list-sidecars`).
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<String>> {
        let mut names = Vec::new();
        if self.options.list_sidecars
            && let Ok(checksum) = self.content_checksum(ino)
        {
            names.push(CHECKSUM_XATTR.to_string());
            if self.known_celltype(checksum).is_some() {
                names.push(CELLTYPE_XATTR.to_string());
            }
        }
        names.extend(self.xattrs.names(ino));
        Ok(names)
    }

    /// Set an attribute: stored on tree entries; ours only to the value they have (else EPERM).
    pub fn setxattr(&self, ino: u64, name: &str, value: &[u8]) -> FsResult<()> {
        if is_ours(name) {
            return match self.getxattr(ino, name) {
                Ok(current) if current == value => Ok(()),
                _ => {
                    tracing::info!(ino, %name, "{name} is computed by seamfs and cannot be set");
                    Err(Errno::EPERM)
                }
            };
        }
        if !self.is_tree(ino) {
            return Err(Errno::ENOTSUP);
        }
        self.writable()?;
        self.db
            .transaction(|c| self.xattrs.set(c.conn(), ino, name, value))
            .map_err(tree_errno)
    }

    /// Remove an attribute; removing one of ours changes nothing and succeeds.
    pub fn removexattr(&self, ino: u64, name: &str) -> FsResult<()> {
        if is_ours(name) {
            return Ok(());
        }
        if !self.is_tree(ino) {
            return Err(Errno::ENODATA);
        }
        self.writable()?;
        let removed = self
            .db
            .transaction(|c| self.xattrs.remove(c.conn(), ino, name))
            .map_err(tree_errno)?;
        if removed { Ok(()) } else { Err(Errno::ENODATA) }
    }

    pub(super) fn known_celltype(&self, checksum: Checksum) -> Option<CellType> {
        self.views.known_celltype(&self.db, &checksum)
    }

    fn content_checksum(&self, ino: u64) -> FsResult<Checksum> {
        if self.is_tree(ino) {
            return self.file_checksum(ino).map_err(|_| Errno::ENODATA);
        }
        match self.inodes.resolve(ino) {
            Some(Dynamic::Buffer(checksum)) => Ok(checksum),
            _ => Err(Errno::ENODATA),
        }
    }
}
