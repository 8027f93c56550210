//! Extended attributes: the checksum of a tree file or buffer, its cell type where known, and
//! the two controls: `user.seamless.pin` (on a file or buffer: keep its buffer through eviction
//! and gc) and `user.seamfs.gc` (on `.seamfs/`: run garbage collection on the mounted store;
//! reading it gives the last report).

use std::collections::HashSet;

use nix::errno::Errno;

use super::error::FsResult;
use super::inodes::{self, Dynamic};
use super::namespace::Namespace;
use crate::celltype::CellType;
use crate::checksum::Checksum;
use crate::store::GcOptions;

/// Extended attribute holding a file's checksum.
pub const CHECKSUM_XATTR: &str = "user.seamless.checksum";

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

    /// Names of the extended attributes of `ino`.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<String>> {
        let Ok(checksum) = self.content_checksum(ino) else {
            return Ok(Vec::new());
        };
        let mut names = vec![CHECKSUM_XATTR.to_string()];
        if self.known_celltype(checksum).is_some() {
            names.push(CELLTYPE_XATTR.to_string());
        }
        if self.is_pinned(&checksum) {
            names.push(PIN_XATTR.to_string());
        }
        Ok(names)
    }

    /// The controls (see the module doc); every other attribute is refused (ENOTSUP).
    pub fn setxattr(&self, ino: u64, name: &str, value: &[u8]) -> FsResult<()> {
        let value = std::str::from_utf8(value)
            .map_err(|_| Errno::EINVAL)?
            .trim();
        if ino == inodes::SEAMFS_DIR && name == GC_XATTR {
            return self.run_gc(value);
        }
        if name != PIN_XATTR {
            return Err(Errno::ENOTSUP);
        }
        let checksum = self.content_checksum(ino)?;
        let pinned = match value {
            "1" => true,
            "0" => false,
            _ => return Err(Errno::EINVAL),
        };
        self.store.set_pin(&checksum, pinned).map_err(|e| {
            tracing::error!(%checksum, error = %e, "cannot change the pin");
            Errno::EIO
        })
    }

    /// Removing `user.seamless.pin` unpins.
    pub fn removexattr(&self, ino: u64, name: &str) -> FsResult<()> {
        if name != PIN_XATTR {
            return Err(Errno::ENODATA);
        }
        self.setxattr(ino, name, b"0")
    }

    pub(super) fn known_celltype(&self, checksum: Checksum) -> Option<CellType> {
        self.views.known_celltype(&self.db, &checksum)
    }

    fn is_pinned(&self, checksum: &Checksum) -> bool {
        self.store.is_pinned(checksum).unwrap_or(false)
    }

    /// `run`, `dry-run`, each optionally followed by ` include-results`.
    fn run_gc(&self, command: &str) -> FsResult<()> {
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
        let report = self
            .store
            .gc(GcOptions {
                dry_run,
                include_results,
            })
            .map_err(|e| {
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
            return self.file_checksum(ino).map_err(|_| Errno::ENODATA);
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
        assert_eq!(ns.setxattr(ino, "user.other", b"1"), Err(Errno::ENOTSUP));
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
