//! Extended attributes: the checksum of a tree file or buffer and its cell type where known
//! (ours, read-only), the two controls: `user.seamless.pin` (on a file or buffer: keep its
//! buffer through eviction and gc) and `user.seamfs.gc` (on `.seamfs/`: run garbage collection
//! on the mounted store; reading it gives the last report), and any other attributes set on
//! tree entries (stored in `seamfs_xattrs` beside the tree, so `rsync -X` and
//! `cp --preserve=xattr` keep them).
//!
//! The checksum and cell type stay read-only, but setting one to the value it has, or removing
//! one, succeeds without changing anything: `rsync -aX` out of the mount and back in does
//! exactly that. Like the sidecars, ours are found by name but listed only with
//! `--list-sidecars`, so that `rsync -X` and `cp --preserve=all` copy exactly the attributes
//! users set.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use nix::errno::Errno;
use rusqlite::{Connection, params};

use super::error::FsResult;
use super::inodes::{self, Dynamic};
use super::namespace::Namespace;
use super::tree::TreeError;
use crate::celltype::CellType;
use crate::checksum::Checksum;
use crate::store::GcOptions;

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
    /// Take the content of `other` (a fresh load, after a failed commit).
    pub fn replace(&self, other: UserXattrs) {
        *self.lock() = other.map.into_inner().expect("xattrs lock");
    }

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

/// The attributes seamfs computes (read-only).
fn is_ours(name: &str) -> bool {
    name == CHECKSUM_XATTR || name == CELLTYPE_XATTR
}

/// A control's value as text.
fn text(value: &[u8]) -> FsResult<&str> {
    Ok(std::str::from_utf8(value)
        .map_err(|_| Errno::EINVAL)?
        .trim())
}

/// Extended attribute holding a file's checksum.
pub const CHECKSUM_XATTR: &str = "user.seamless.checksum";

/// Extended attribute of file capabilities (`setcap`), dropped with the set-ID bits.
const CAPABILITY_XATTR: &str = "security.capability";

/// Extended attribute holding the cell type a buffer is, once known.
pub const CELLTYPE_XATTR: &str = "user.seamless.celltype";

/// Set to `1` to pin a file's or buffer's content (`0` or removing it unpins).
pub const PIN_XATTR: &str = "user.seamless.pin";

/// On `.seamfs/`: set to `run` or `dry-run` (optionally followed by ` include-results`) to run
/// garbage collection; read it for the last report.
pub const GC_XATTR: &str = "user.seamfs.gc";

impl Namespace {
    /// `user.seamless.checksum` on files and buffers; `user.seamless.celltype` where known;
    /// `user.seamless.pin` when pinned; `user.seamfs.gc` on `.seamfs/`.
    pub fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        if ino == inodes::SEAMFS_DIR && name == GC_XATTR {
            let report = self.gc_report.lock().expect("gc report lock");
            return Ok(report.clone().into_bytes());
        }
        if !is_ours(name) && name != PIN_XATTR {
            return self.xattrs.get(ino, name).ok_or(Errno::ENODATA);
        }
        let checksum = self.content_checksum(ino)?;
        match name {
            CHECKSUM_XATTR => Ok(checksum.hex().into_bytes()),
            CELLTYPE_XATTR => self
                .known_celltype(checksum)
                .map(|c| c.name().as_bytes().to_vec())
                .ok_or(Errno::ENODATA),
            PIN_XATTR if self.is_pinned(&checksum) => Ok(b"1".to_vec()),
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
        if let Ok(checksum) = self.content_checksum(ino)
            && self.is_pinned(&checksum)
        {
            names.push(PIN_XATTR.to_string());
        }
        names.extend(self.xattrs.names(ino));
        Ok(names)
    }

    /// Set an attribute: the controls (see the module doc); ours only to the value they have
    /// (else EPERM); any other is stored on tree entries.
    pub fn setxattr(&self, ino: u64, name: &str, value: &[u8]) -> FsResult<()> {
        if ino == inodes::SEAMFS_DIR && name == GC_XATTR {
            return self.run_gc(text(value)?);
        }
        if name == PIN_XATTR {
            let checksum = self.content_checksum(ino)?;
            let pinned = match text(value)? {
                "1" => true,
                "0" => false,
                _ => return Err(Errno::EINVAL),
            };
            return self.store.set_pin(&checksum, pinned).map_err(|e| {
                tracing::error!(%checksum, error = %e, "cannot change the pin");
                Errno::EIO
            });
        }
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
        self.transaction(|c| self.xattrs.set(c.conn(), ino, name, value))
    }

    /// Remove an attribute: removing `user.seamless.pin` unpins; removing the checksum or cell
    /// type changes nothing and succeeds.
    pub fn removexattr(&self, ino: u64, name: &str) -> FsResult<()> {
        if name == PIN_XATTR {
            return self.setxattr(ino, name, b"0");
        }
        if is_ours(name) {
            return Ok(());
        }
        if !self.is_tree(ino) {
            return Err(Errno::ENODATA);
        }
        self.writable()?;
        let removed = self.transaction(|c| self.xattrs.remove(c.conn(), ino, name))?;
        if removed { Ok(()) } else { Err(Errno::ENODATA) }
    }

    /// Drop the file capabilities (`security.capability`) of a tree entry, if it has any
    /// (see `kill_privileges`).
    pub(super) fn drop_capabilities(&self, ino: u64) -> FsResult<()> {
        if self.xattrs.get(ino, CAPABILITY_XATTR).is_none() {
            return Ok(());
        }
        self.transaction(|c| self.xattrs.remove(c.conn(), ino, CAPABILITY_XATTR))
            .map(drop)
    }

    pub(super) fn known_celltype(&self, checksum: Checksum) -> Option<CellType> {
        self.views.known_celltype(&self.db, &checksum)
    }

    fn is_pinned(&self, checksum: &Checksum) -> bool {
        self.store.is_pinned(checksum).unwrap_or(false)
    }

    /// `run`, `dry-run`, each optionally followed by ` include-results`.
    fn run_gc(&self, command: &str) -> FsResult<()> {
        if self.store.foreign_buffers() {
            // `Store::gc` refuses it too; this errno lets `seamfs gc --mounted` say why.
            return Err(Errno::EOPNOTSUPP);
        }
        let mut words = command.split_whitespace();
        let dry_run = match words.next() {
            Some("run") => false,
            Some("dry-run") => true,
            _ => return Err(Errno::EINVAL),
        };
        let include_results = match words.next() {
            None => false,
            Some("include-results") => true,
            Some(_) => return Err(Errno::EINVAL),
        };
        // gc reads the committed references: closes commit while it runs (see
        // `Namespace::publish_journaled`), and what waits in the journal is committed first.
        // If that fails (a full disk: gc is how space comes back), gc also keeps every
        // checksum the tree in memory names, read at the same moments as the committed ones.
        self.collecting
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if self.save_unsaved().is_err() {
            tracing::warn!("garbage collection goes on without committing the closed files first");
        }
        let options = GcOptions {
            dry_run,
            include_results,
        };
        let report = self
            .store
            .gc_keeping(options, &|| self.read_tree().checksums());
        self.collecting
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        let report = report.map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "garbage collection failed");
            Errno::EIO
        })?;
        *self.gc_report.lock().expect("gc report lock") = report.text();
        if !dry_run {
            self.removed(
                report
                    .removed
                    .iter()
                    .map(|(checksum, _)| *checksum)
                    .collect(),
            );
        }
        Ok(())
    }

    /// Names of removed buffers the kernel may still cache: `by-checksum/<hex>`, and the views
    /// that showed them.
    fn removed(&self, removed: HashSet<Checksum>) {
        let mut names: Vec<(u64, String)> = removed
            .iter()
            .map(|checksum| (inodes::BY_CHECKSUM, checksum.hex()))
            .collect();
        for (source, celltype) in self.views.forget_results(&removed) {
            names.push((inodes::as_dir(celltype), source.hex()));
        }
        self.invalidations
            .lock()
            .expect("invalidations lock")
            .extend(names);
    }

    /// The names to drop from the kernel's cache since the last call (see `fs::fuse`).
    pub fn take_invalidations(&self) -> Vec<(u64, String)> {
        std::mem::take(&mut *self.invalidations.lock().expect("invalidations lock"))
    }

    fn content_checksum(&self, ino: u64) -> FsResult<Checksum> {
        if self.is_tree(ino) {
            // A directory has no checksum attribute; a kept file that cannot be hashed now
            // (a full disk: ENOSPC; EIO) has one, which cannot be read: not "no such attribute".
            return self.file_checksum(ino).map_err(|e| match e {
                Errno::EIO | Errno::ENOSPC => e,
                _ => Errno::ENODATA,
            });
        }
        match self.inodes.resolve(ino) {
            Some(Dynamic::Buffer(checksum)) => Ok(checksum),
            _ => Err(Errno::ENODATA),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::test_support::{namespace, write_file};
    use crate::fs::tree::ROOT;

    #[test]
    fn a_pinned_file_content_survives_its_file_and_gc() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let ino = write_file(&ns, ROOT, "f", b"keep me");
        let checksum = Checksum::of(b"keep me");
        assert_eq!(ns.getxattr(ino, PIN_XATTR), Err(Errno::ENODATA));
        ns.setxattr(ino, PIN_XATTR, b"1").unwrap();
        assert_eq!(ns.getxattr(ino, PIN_XATTR).unwrap(), b"1");
        assert!(ns.listxattr(ino).unwrap().contains(&PIN_XATTR.to_string()));
        assert_eq!(ns.setxattr(ino, PIN_XATTR, b"yes"), Err(Errno::EINVAL));
        // Other attributes are the user's, stored with the tree.
        ns.setxattr(ino, "user.other", b"1").unwrap();
        assert_eq!(ns.getxattr(ino, "user.other").unwrap(), b"1");
        ns.unlink(ROOT, "f").unwrap();
        ns.setxattr(inodes::SEAMFS_DIR, GC_XATTR, b"run").unwrap();
        assert!(ns.tiers().has(&checksum).unwrap(), "pinned");
        let report = String::from_utf8(ns.getxattr(inodes::SEAMFS_DIR, GC_XATTR).unwrap());
        assert!(report.unwrap().contains("freed 0 bytes"));
        ns.store().set_pin(&checksum, false).unwrap();
        ns.setxattr(inodes::SEAMFS_DIR, GC_XATTR, b"dry-run")
            .unwrap();
        let report = String::from_utf8(ns.getxattr(inodes::SEAMFS_DIR, GC_XATTR).unwrap());
        assert!(report.unwrap().contains(&checksum.hex()));
        assert!(
            ns.tiers().has(&checksum).unwrap(),
            "a dry run removes nothing"
        );
        ns.setxattr(inodes::SEAMFS_DIR, GC_XATTR, b"run").unwrap();
        assert!(!ns.tiers().has(&checksum).unwrap());
        assert_eq!(
            ns.setxattr(inodes::SEAMFS_DIR, GC_XATTR, b"now"),
            Err(Errno::EINVAL)
        );
    }
}
