//! Operations that change the tree: create, mkdir, symlink, unlink, rmdir, rename and setattr,
//! with the checks on new names (the fixed root entries cannot be shadowed). Each change runs in
//! one transaction through `Namespace::mutate`.

use std::time::SystemTime;

use nix::errno::Errno;

use super::attr::{Attr, Kind, Opened, VOLATILE_TTL};
use super::error::{FsResult, tree_errno};
use super::fixed::fixed_child;
use super::inodes::{self, Dynamic, Sidecar};
use super::namespace::Namespace;
use super::tree::{self, NodeKind, ROOT};

impl Namespace {
    /// Change attributes. Virtual and immutable files accept (and ignore) mode and time changes,
    /// so that `cp -p` out of and into the mount works; only the tree keeps them.
    pub fn setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<SystemTime>,
        fh: Option<u64>,
    ) -> FsResult<Attr> {
        if !self.is_tree(ino) {
            let attr = self.getattr(ino)?;
            return match size {
                Some(0)
                    if matches!(
                        self.inodes.resolve(ino),
                        Some(Dynamic::Claim(..) | Dynamic::Sidecar(..))
                    ) =>
                {
                    Ok(attr)
                }
                Some(_) => Err(Errno::EPERM),
                None => Ok(attr),
            };
        }
        self.writable()?;
        if let Some(size) = size {
            self.truncate(ino, size, fh.is_some())?;
        }
        if mode.is_some() || mtime.is_some() {
            self.mutate(|tree, c| tree.set_attr(c.conn(), ino, mode, mtime))?;
        }
        self.getattr(ino)
    }

    /// Create and open a file in the tree (or start a claim, for a sidecar name).
    pub fn create(&self, parent: u64, name: &str, mode: u32) -> FsResult<(Attr, Opened)> {
        self.writable()?;
        self.check_new_name(parent, name)?;
        if let Some((subject, sidecar)) = Sidecar::split(name) {
            let subject_ino = self.read_tree().lookup(parent, subject);
            let claim_ok = match subject_ino {
                Ok(ino) => self.has_sidecar(ino, sidecar),
                Err(_) => sidecar == Sidecar::Checksum,
            };
            if claim_ok {
                let opened = self.open_claim(parent, subject.to_string(), sidecar);
                let key = match subject_ino {
                    Ok(ino) => Dynamic::Sidecar(ino, sidecar),
                    Err(_) => Dynamic::Claim(parent, subject.to_string()),
                };
                let ino = self.inodes.acquire(key);
                let attr = Attr {
                    ino,
                    kind: Kind::File,
                    size: 0,
                    perm: 0o644,
                    mtime: SystemTime::now(),
                    ttl: VOLATILE_TTL,
                };
                return Ok((attr, opened));
            }
        }
        let kind = NodeKind::File {
            checksum: tree::empty_checksum(),
            size: 0,
        };
        let ino = self.mutate(|tree, c| tree.create(c.conn(), parent, name, kind, mode))?;
        let opened = self.open(ino, libc::O_RDWR)?;
        Ok((self.getattr(ino)?, opened))
    }

    pub fn mkdir(&self, parent: u64, name: &str, mode: u32) -> FsResult<Attr> {
        self.add_node(parent, name, NodeKind::Dir(Default::default()), mode)
    }

    pub fn symlink(&self, parent: u64, name: &str, target: &str) -> FsResult<Attr> {
        self.add_node(parent, name, NodeKind::Symlink(target.to_string()), 0o777)
    }

    /// Add a directory or symlink `name` under `parent` to the tree.
    fn add_node(&self, parent: u64, name: &str, kind: NodeKind, mode: u32) -> FsResult<Attr> {
        self.writable()?;
        self.check_new_name(parent, name)?;
        let ino = self.mutate(|tree, c| tree.create(c.conn(), parent, name, kind, mode))?;
        self.getattr(ino)
    }

    pub fn readlink(&self, ino: u64) -> FsResult<String> {
        match self.read_tree().get(ino).map(|n| &n.kind) {
            Some(NodeKind::Symlink(target)) => Ok(target.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Remove a file or symlink. Removing a virtual sidecar succeeds and changes nothing.
    pub fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        self.writable()?;
        self.tree_dir(parent)?;
        match self.mutate(|tree, c| tree.remove(c.conn(), parent, name, false)) {
            Ok(ino) => {
                if !self.handles.tree_file_open(ino) {
                    self.unpublished.discard(ino);
                }
                Ok(())
            }
            Err(Errno::ENOENT) => {
                if let Dynamic::Claim(dir, subject) = self.virtual_key(parent, name)? {
                    self.db
                        .transaction(|c| self.claims.remove(c.conn(), dir, &subject))
                        .map_err(tree_errno)?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        self.writable()?;
        self.tree_dir(parent)?;
        self.mutate(|tree, c| {
            let ino = tree.remove(c.conn(), parent, name, true)?;
            self.claims.remove_dir(c.conn(), ino)
        })
    }

    /// Rename within the tree. Renaming a file onto a sidecar name is a claim about its subject:
    /// the file is consumed if it matches, refused with EIO if not.
    pub fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        flags: u32,
    ) -> FsResult<()> {
        self.writable()?;
        self.tree_dir(parent)?;
        self.tree_dir(new_parent)?;
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(Errno::EINVAL);
        }
        self.check_new_name(new_parent, new_name)
            .or_else(|e| if e == Errno::EEXIST { Ok(()) } else { Err(e) })?;
        if parent == ROOT && fixed_child(name).is_some() {
            return Err(Errno::EPERM);
        }
        let target_is_real = self.read_tree().lookup(new_parent, new_name).is_ok();
        if !target_is_real && let Ok(key) = self.virtual_key(new_parent, new_name) {
            return self.claim_by_rename(parent, name, key);
        }
        let no_replace = flags & libc::RENAME_NOREPLACE != 0;
        let replaced = self.mutate(|tree, c| {
            let replaced = tree.rename(c.conn(), parent, name, new_parent, new_name, no_replace)?;
            if let Some(old) = replaced {
                // A directory replaced by the rename takes its pending claims along.
                self.claims.remove_dir(c.conn(), old)?;
            }
            Ok(replaced)
        })?;
        if let Some(old) = replaced
            && !self.handles.tree_file_open(old)
        {
            self.unpublished.discard(old);
        }
        Ok(())
    }

    /// A new entry may not shadow the fixed root directories or an existing entry.
    fn check_new_name(&self, parent: u64, name: &str) -> FsResult<()> {
        self.tree_dir(parent)?;
        if name.is_empty() || name.contains('/') || name.contains('\0') {
            return Err(Errno::EINVAL);
        }
        if parent == ROOT && fixed_child(name).is_some() {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    fn tree_dir(&self, ino: u64) -> FsResult<()> {
        if !self.is_tree(ino) {
            return Err(if ino == inodes::STATS_FILE {
                Errno::ENOTDIR
            } else {
                Errno::EPERM
            });
        }
        self.read_tree()
            .children(ino)
            .map(|_| ())
            .map_err(tree_errno)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::test_support::{namespace, read_all, write_file};

    #[test]
    fn tree_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ino = {
            let ns = namespace(dir.path());
            let d = ns.mkdir(ROOT, "d", 0o700).unwrap().ino;
            let ino = write_file(&ns, d, "f", b"content");
            ns.rename(d, "f", ROOT, "g", 0).unwrap();
            ns.rmdir(ROOT, "d").unwrap();
            ino
        };
        let ns = namespace(dir.path());
        let attr = ns.lookup(ROOT, "g").unwrap();
        assert_eq!(attr.ino, ino);
        assert_eq!(read_all(&ns, ino), b"content");
        assert_eq!(ns.lookup(ROOT, "d"), Err(Errno::ENOENT));
        ns.unlink(ROOT, "g.CHECKSUM").unwrap();
        ns.unlink(ROOT, "g").unwrap();
        assert_eq!(ns.lookup(ROOT, "g.CHECKSUM"), Err(Errno::ENOENT));
        assert_eq!(ns.mkdir(ROOT, "by-checksum", 0o755), Err(Errno::EEXIST));
    }
}
