//! Operations that change the tree: create, mkdir, symlink, unlink, rmdir, rename and setattr,
//! with the checks on new names (the fixed root entries cannot be shadowed). Each change runs in
//! one transaction through `Namespace::mutate`.

use std::time::SystemTime;

use nix::errno::Errno;

use super::attr::{Attr, Kind, Opened, VOLATILE_TTL};
use super::error::{FsResult, store_errno, tree_errno};
use super::fixed::fixed_child;
use super::handles::SetAttrs;
use super::inodes::{self, Dynamic, Sidecar};
use super::namespace::Namespace;

use super::tree::{self, AttrChanges, NodeKind, ROOT, Special};

/// Longest name a directory entry may have, in bytes (Linux `NAME_MAX`).
pub(super) const NAME_MAX: usize = 255;

/// Who writes, truncates or chowns a file (for the set-group-ID rule).
pub struct Changer {
    pub pid: u32,
    pub gid: u32,
    /// Has CAP_FSETID (taken as: is root).
    pub capable: bool,
}

impl Changer {
    /// Whether the changer is in group `gid` (primary or supplementary) or is capable.
    fn in_group_or_capable(&self, gid: u32) -> bool {
        self.capable || self.gid == gid || supplementary_groups(self.pid).contains(&gid)
    }
}

/// The supplementary groups of process `pid` (none if it is gone).
fn supplementary_groups(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The set-ID bits of `mode` (a file of group `gid`) that a change by `by` drops, as the Linux
/// VFS decides: set-user-ID always; set-group-ID when group execution is on, or else when the
/// changer is neither in the file's group nor capable.
fn privileged_bits(mode: u32, gid: u32, by: &Changer) -> u32 {
    let sgid =
        mode & libc::S_ISGID != 0 && (mode & libc::S_IXGRP != 0 || !by.in_group_or_capable(gid));
    mode & (libc::S_ISUID | if sgid { libc::S_ISGID } else { 0 })
}

impl Namespace {
    /// Change the mode, size and/or mtime (see `set_attrs`).
    pub fn setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<SystemTime>,
        fh: Option<u64>,
    ) -> FsResult<Attr> {
        let changes = AttrChanges {
            mode,
            mtime,
            ..AttrChanges::default()
        };
        self.set_attrs(ino, changes, size, fh, None)
    }

    /// Change attributes, all of one `setattr` request at once, on behalf of process `by`.
    /// Virtual and immutable files accept (and ignore) mode and time changes, so that `cp -p`
    /// out of and into the mount works; only the tree keeps them, and owners only the tree.
    ///
    /// A process changing a file it has open for writing (`tar x`, `cp -p`: `futimens`,
    /// `fchown`, `fchmod` before `close`) has the change committed with the file at its close
    /// (see `fs::tree`); any other change is committed before this returns.
    pub fn set_attrs(
        &self,
        ino: u64,
        changes: AttrChanges,
        size: Option<u64>,
        fh: Option<u64>,
        by: Option<u32>,
    ) -> FsResult<Attr> {
        if !self.is_tree(ino) {
            let key = self.inodes.resolve(ino);
            let sidecar = matches!(key, Some(Dynamic::Claim(..) | Dynamic::Sidecar(..)));
            if size.is_some_and(|s| s != 0 || !sidecar) {
                return Err(Errno::EPERM);
            }
            let (mode, mtime) = (changes.mode, changes.mtime);
            if let Some(key) = key.filter(|_| sidecar)
                && (mode.is_some() || mtime.is_some())
            {
                self.set_sidecar_attrs(&key, SetAttrs { mode, mtime }, fh)?;
            }
            return self.getattr(ino);
        }
        self.writable()?;
        if let Some(size) = size {
            self.truncate(ino, size, fh.is_some())?;
        }
        if !changes.is_empty() && self.orphan(ino).is_none() {
            if by.is_some_and(|pid| self.handles.tree_file_written_by(ino, pid)) {
                self.change_unsaved(|tree| tree.set_attr_unsaved(ino, &changes))?;
            } else {
                self.mutate(|tree, c| tree.set_attr(c.conn(), ino, &changes))?;
            }
        }
        self.getattr(ino)
    }

    /// What the kernel leaves to the filesystem (`FUSE_HANDLE_KILLPRIV_V2`, which spares a
    /// `security.capability` lookup before every write): a write or truncation by a caller
    /// without CAP_FSETID, and any chown, of a regular file drop its set-user-ID bit, its
    /// set-group-ID bit (see `privileged_bits`), and its file capabilities. `changes` gets the
    /// new mode unless it sets one itself.
    pub fn kill_privileges(
        &self,
        ino: u64,
        changes: &mut AttrChanges,
        by: &Changer,
    ) -> FsResult<()> {
        let (mode, gid) = match self.read_tree().get(ino) {
            Some(node) if matches!(node.kind, NodeKind::File { .. }) => (node.mode, node.gid),
            _ => return Ok(()),
        };
        let gid = gid.unwrap_or_else(|| nix::unistd::getgid().as_raw());
        let killed = mode & !privileged_bits(mode, gid, by);
        if killed != mode && changes.mode.is_none() {
            changes.mode = Some(killed);
        }
        self.drop_capabilities(ino)
    }

    /// `kill_privileges` for a write: a change only for a file that has them. True if the
    /// mode changed (the kernel's cached attributes are then stale).
    pub fn kill_privileges_on_write(&self, ino: u64, by: &Changer) -> FsResult<bool> {
        let mut changes = AttrChanges::default();
        self.kill_privileges(ino, &mut changes, by)?;
        if changes.is_empty() {
            return Ok(false);
        }
        self.set_attrs(ino, changes, None, None, Some(by.pid))?;
        Ok(true)
    }

    /// Create and open a file in the tree (or start a claim, for a sidecar name).
    pub fn create(&self, parent: u64, name: &str, mode: u32) -> FsResult<(Attr, Opened)> {
        self.create_as(parent, name, mode, None, None)
    }

    /// `create` on behalf of a user and group (`owner`; None: the mounting user) and of
    /// process `by`. The new file's row is committed with its content at its close, or by
    /// any earlier transaction (see `fs::tree`).
    pub fn create_as(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        owner: Option<(u32, u32)>,
        by: Option<u32>,
    ) -> FsResult<(Attr, Opened)> {
        self.writable()?;
        self.check_new_name(parent, name)?;
        if let Some((subject, sidecar)) = self.claim_target(parent, name) {
            let subject_ino = self.read_tree().lookup(parent, &subject);
            let key = match subject_ino {
                Ok(ino) => Dynamic::Sidecar(ino, sidecar),
                Err(_) => Dynamic::Claim(parent, subject.clone()),
            };
            let opened = self.open_claim(parent, subject, sidecar);
            let ino = self.inodes.acquire(key);
            let attr = Attr::plain(ino, Kind::File, 0, 0o644, SystemTime::now(), VOLATILE_TTL);
            return Ok((attr, opened));
        }
        // Every checksum the tree refers to is a stored buffer, the empty one included (else
        // `F.CHECKSUM` of a touched file names a buffer `by-checksum/` does not have).
        // Written like any file's content (not just put in RAM), so that it is on disk; a
        // store that has it already (the usual case) costs one lookup.
        let owner = self.owner_for(parent, owner);
        let ino = {
            // Garbage collection waits for this check (and never removes the empty buffer).
            let _writing = self.store.writing();
            let empty = tree::empty_checksum();
            if !self.tiers().has(&empty).map_err(store_errno)? {
                let pending = self.tiers().begin_write().map_err(store_errno)?;
                pending.commit(Some(empty)).map_err(store_errno)?;
            }
            let kind = NodeKind::File {
                checksum: empty,
                size: 0,
            };
            self.change_unsaved(|tree| tree.create_unsaved(parent, name, kind, mode, owner))?
        };
        self.relink_sidecars(parent, name);
        let opened = self.open_by(ino, libc::O_RDWR, by)?;
        Ok((self.getattr(ino)?, opened))
    }

    pub fn mkdir(&self, parent: u64, name: &str, mode: u32) -> FsResult<Attr> {
        self.add_node(parent, name, NodeKind::Dir(Default::default()), mode, None)
    }

    pub fn symlink(&self, parent: u64, name: &str, target: &str) -> FsResult<Attr> {
        self.add_node(
            parent,
            name,
            NodeKind::Symlink(target.to_string()),
            0o777,
            None,
        )
    }

    /// Add a directory, symlink or special file on behalf of `owner` (see `create_as`). A
    /// directory made in a setgid directory is setgid too.
    pub fn add_node(
        &self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        mut mode: u32,
        owner: Option<(u32, u32)>,
    ) -> FsResult<Attr> {
        self.writable()?;
        self.check_new_name(parent, name)?;
        if matches!(kind, NodeKind::Dir(_)) && self.parent_mode(parent) & libc::S_ISGID != 0 {
            mode |= libc::S_ISGID;
        }
        let owner = self.owner_for(parent, owner);
        let ino = self.mutate(|tree, c| tree.create(c.conn(), parent, name, kind, mode, owner))?;
        self.relink_sidecars(parent, name);
        self.getattr(ino)
    }

    /// A special file (FIFO, socket, device node) as metadata: `mknod` with the file type bits
    /// of `mode`.
    pub fn mknod(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        rdev: u64,
        owner: Option<(u32, u32)>,
    ) -> FsResult<Attr> {
        let kind = match mode & libc::S_IFMT {
            libc::S_IFIFO => Special::Fifo,
            libc::S_IFSOCK => Special::Socket,
            libc::S_IFCHR => Special::CharDevice,
            libc::S_IFBLK => Special::BlockDevice,
            libc::S_IFREG | 0 => {
                let (attr, opened) = self.create_as(parent, name, mode & 0o7777, owner, None)?;
                self.release(opened.fh)?;
                return Ok(attr);
            }
            _ => return Err(Errno::EINVAL),
        };
        self.add_node(
            parent,
            name,
            NodeKind::Special { kind, rdev },
            mode & 0o7777,
            owner,
        )
    }

    /// A hard link: `new_parent/new_name` becomes another name of `ino` (not a directory).
    pub fn link(&self, ino: u64, new_parent: u64, new_name: &str) -> FsResult<Attr> {
        self.writable()?;
        self.check_new_name(new_parent, new_name)?;
        if !self.is_tree(ino) {
            return Err(Errno::EPERM);
        }
        self.mutate(|tree, c| tree.link(c.conn(), ino, new_parent, new_name))
            .map_err(|e| if e == Errno::EISDIR { Errno::EPERM } else { e })?;
        self.relink_sidecars(new_parent, new_name);
        self.getattr(ino)
    }

    /// Owner and group of a new entry: a setgid directory gives its group to what is made in it.
    fn owner_for(&self, parent: u64, owner: Option<(u32, u32)>) -> Option<(u32, u32)> {
        let tree = self.read_tree();
        let parent = tree.get(parent)?;
        match owner {
            Some((uid, gid)) if parent.mode & libc::S_ISGID != 0 => {
                Some((uid, parent.gid.unwrap_or(gid)))
            }
            owner => owner,
        }
    }

    fn parent_mode(&self, parent: u64) -> u32 {
        self.read_tree().get(parent).map_or(0, |n| n.mode)
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
        let node = self.read_tree().lookup(parent, name).ok();
        let node = node.and_then(|ino| Some((ino, self.read_tree().get(ino)?.clone())));
        let removed = self.mutate(|tree, c| {
            let ino = tree.remove(c.conn(), parent, name, false)?;
            if tree.get(ino).is_none() {
                self.xattrs.remove_all(c.conn(), ino)?;
            }
            Ok(ino)
        });
        match removed {
            Ok(_) => {
                if let Some((ino, node)) = node {
                    self.removed_file(ino, node);
                }
                Ok(())
            }
            Err(Errno::ENOENT) => self.unlink_sidecar(parent, name),
            Err(e) => Err(e),
        }
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        self.writable()?;
        self.tree_dir(parent)?;
        self.mutate(|tree, c| {
            let ino = tree.remove(c.conn(), parent, name, true)?;
            self.xattrs.remove_all(c.conn(), ino)?;
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
        if let Some((subject, sidecar)) = self.claim_target(new_parent, new_name) {
            return self.claim_by_rename(parent, name, new_parent, &subject, sidecar);
        }
        let claimed = self.claims.get(new_parent, new_name);
        if let Some(claimed) = claimed {
            self.check_renamed_onto_claim(parent, name, new_parent, new_name, claimed)?;
        }
        let no_replace = flags & libc::RENAME_NOREPLACE != 0;
        let target = self.read_tree().lookup(new_parent, new_name).ok();
        let target = target.and_then(|ino| Some((ino, self.read_tree().get(ino)?.clone())));
        let replaced = self.mutate(|tree, c| {
            let replaced = tree.rename(c.conn(), parent, name, new_parent, new_name, no_replace)?;
            if claimed.is_some() {
                self.claims.remove(c.conn(), new_parent, new_name)?;
            }
            if let Some(old) = replaced {
                // A directory replaced by the rename takes its pending claims along.
                self.claims.remove_dir(c.conn(), old)?;
                if tree.get(old).is_none() {
                    self.xattrs.remove_all(c.conn(), old)?;
                }
            }
            Ok(replaced)
        })?;
        self.relink_sidecars(new_parent, new_name);
        if let Some((old, node)) = target.filter(|(old, _)| replaced == Some(*old)) {
            self.removed_file(old, node);
        }
        Ok(())
    }

    /// A file left the tree: if it is open, it lives on until its last handle is released.
    /// (A file with other names, hard links, has not left.)
    fn removed_file(&self, ino: u64, node: tree::Node) {
        if self.read_tree().get(ino).is_some() {
            return;
        }
        if self.handles.tree_file_open(ino) {
            self.orphans.lock().expect("orphans lock").insert(ino, node);
        } else {
            self.discard_unpublished(ino);
        }
    }

    /// A file renamed onto a name with a pending claim (`rsync`'s temp file, an editor's save)
    /// completes that file: it must match the claim, else the rename is refused with EIO.
    fn check_renamed_onto_claim(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        claimed: crate::checksum::Checksum,
    ) -> FsResult<()> {
        let source = self.read_tree().lookup(parent, name).map_err(tree_errno)?;
        if self.has_sidecar(source, Sidecar::Index) {
            return Ok(());
        }
        self.publish(source)?;
        let actual = self.file_checksum(source)?;
        if actual == claimed {
            return Ok(());
        }
        let dir = self.read_tree().path(new_parent);
        tracing::error!(
            %dir, file = %new_name, %claimed, %actual,
            "{new_name}.CHECKSUM was written before {new_name} and does not match its content; rename refused"
        );
        Err(Errno::EIO)
    }

    /// A new entry may not shadow the fixed root directories or an existing entry.
    fn check_new_name(&self, parent: u64, name: &str) -> FsResult<()> {
        self.tree_dir(parent)?;
        if name.is_empty() || name.contains('/') || name.contains('\0') {
            return Err(Errno::EINVAL);
        }
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if parent == ROOT && fixed_child(name).is_some() {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    fn tree_dir(&self, ino: u64) -> FsResult<()> {
        if !self.is_tree(ino) {
            return Err(if ino == inodes::STATS_FILE || ino == inodes::CLAIMS_FILE {
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
        assert_eq!(
            ns.mkdir(ROOT, &"n".repeat(256), 0o755),
            Err(Errno::ENAMETOOLONG)
        );
        assert!(ns.mkdir(ROOT, &"n".repeat(255), 0o755).is_ok());
    }

    #[test]
    fn removed_files_live_until_their_last_close() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        // tempfile.TemporaryFile: create, unlink, then write and read through the handle.
        let (attr, opened) = ns.create(ROOT, "tmp", 0o600).unwrap();
        ns.unlink(ROOT, "tmp").unwrap();
        ns.write(opened.fh, 0, b"written after unlink").unwrap();
        ns.flush(opened.fh).unwrap();
        assert_eq!(ns.getattr(attr.ino).unwrap().size, 20);
        assert_eq!(ns.read(opened.fh, 8, 100).unwrap(), &b"after unlink"[..]);
        ns.release(opened.fh).unwrap();
        assert_eq!(ns.getattr(attr.ino), Err(Errno::ENOENT));
        // A file replaced by a rename keeps its data for the handles open on it.
        let old = write_file(&ns, ROOT, "f", b"old");
        let reader = ns.open(old, libc::O_RDONLY).unwrap();
        write_file(&ns, ROOT, ".f.new", b"new");
        ns.rename(ROOT, ".f.new", ROOT, "f", 0).unwrap();
        assert_eq!(ns.read(reader.fh, 0, 100).unwrap(), &b"old"[..]);
        assert_eq!(read_all(&ns, ns.lookup(ROOT, "f").unwrap().ino), b"new");
        ns.release(reader.fh).unwrap();
        assert!(ns.orphans.lock().unwrap().is_empty());
    }

    #[test]
    fn hard_links_share_one_node() {
        let dir = tempfile::tempdir().unwrap();
        let ino = {
            let ns = namespace(dir.path());
            let d = ns.mkdir(ROOT, "d", 0o755).unwrap().ino;
            let ino = write_file(&ns, ROOT, "a", b"one buffer");
            assert_eq!(ns.link(ino, d, "b").unwrap().ino, ino);
            assert_eq!(
                ns.link(d, ROOT, "dd"),
                Err(Errno::EPERM),
                "no links to directories"
            );
            assert_eq!(ns.lookup(d, "b").unwrap().nlink, Some(2));
            ns.unlink(ROOT, "a").unwrap();
            assert_eq!(read_all(&ns, ns.lookup(d, "b").unwrap().ino), b"one buffer");
            ns.link(ino, ROOT, "c").unwrap();
            ns.rename(ROOT, "c", d, "c2", 0).unwrap();
            ino
        };
        let ns = namespace(dir.path());
        assert_eq!(ns.lookup(d_of(&ns), "c2").unwrap().ino, ino);
        assert_eq!(ns.lookup(d_of(&ns), "b").unwrap().nlink, Some(2));
        ns.unlink(d_of(&ns), "b").unwrap();
        ns.unlink(d_of(&ns), "c2").unwrap();
        assert_eq!(ns.getattr(ino), Err(Errno::ENOENT));
    }

    fn d_of(ns: &Namespace) -> u64 {
        ns.lookup(ROOT, "d").unwrap().ino
    }

    /// The committed row of `ino`: mode, uid, gid, mtime.
    fn committed_row(ns: &Namespace, ino: u64) -> Option<(u32, u32, u32, i64)> {
        use rusqlite::OptionalExtension;
        ns.store()
            .db()
            .read(|c| -> Result<_, crate::db::DbError> {
                let sql = "SELECT mode, uid, gid, mtime_ns FROM seamfs_tree WHERE ino = ?1";
                let row = |r: &rusqlite::Row| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
                Ok(c.conn().query_row(sql, [ino], row).optional()?)
            })
            .unwrap()
    }

    #[test]
    fn a_writers_own_changes_are_committed_at_its_close() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let writer = Some(42);
        // As `tar x` does: create, write, futimens, fchown, fchmod, close.
        let (attr, opened) = ns
            .create_as(ROOT, "f", 0o600, Some((0, 0)), writer)
            .unwrap();
        ns.write(opened.fh, 0, b"content").unwrap();
        let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        let changes = [
            AttrChanges {
                mtime: Some(then),
                atime: Some(then),
                ..AttrChanges::default()
            },
            AttrChanges {
                uid: Some(7),
                gid: Some(8),
                ..AttrChanges::default()
            },
            AttrChanges {
                mode: Some(0o644),
                ..AttrChanges::default()
            },
        ];
        for change in changes {
            ns.set_attrs(attr.ino, change, None, None, writer).unwrap();
        }
        let a = ns.getattr(attr.ino).unwrap();
        assert_eq!(
            (a.perm, a.uid, a.gid, a.mtime),
            (0o644, Some(7), Some(8), then)
        );
        assert_eq!(committed_row(&ns, attr.ino), None, "nothing committed yet");
        ns.flush(opened.fh).unwrap();
        // Journaled by the close (see `fs::journal`), committed by the next transaction.
        assert_eq!(committed_row(&ns, attr.ino), None);
        assert_eq!(ns.journal.waiting(), 1);
        ns.save_unsaved().unwrap();
        let committed = Some((0o644, 7, 8, tree::to_ns(then)));
        assert_eq!(committed_row(&ns, attr.ino), committed);
        // Once closed (the release comes later), the writer's changes are committed at once.
        let chmod = |mode| AttrChanges {
            mode: Some(mode),
            ..AttrChanges::default()
        };
        ns.set_attrs(attr.ino, chmod(0o604), None, None, writer)
            .unwrap();
        assert_eq!(committed_row(&ns, attr.ino).unwrap().0, 0o604);
        ns.release(opened.fh).unwrap();
        // Another process's change is committed before it returns, whoever has the file open.
        let opened = ns.open_by(attr.ino, libc::O_WRONLY, writer).unwrap();
        ns.set_attrs(attr.ino, chmod(0o640), None, None, Some(43))
            .unwrap();
        assert_eq!(committed_row(&ns, attr.ino).unwrap().0, 0o640);
        ns.release(opened.fh).unwrap();
        drop(ns);
        let ns = namespace(dir.path());
        let a = ns.lookup(ROOT, "f").unwrap();
        assert_eq!(
            (a.perm, a.uid, a.gid, a.mtime),
            (0o640, Some(7), Some(8), then)
        );
        assert_eq!(read_all(&ns, a.ino), b"content");
    }

    #[test]
    fn unsaved_rows_go_with_the_next_transaction_that_commits() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let root = Some((0, 0));
        let (f, f_open) = ns.create_as(ROOT, "f", 0o644, root, Some(1)).unwrap();
        ns.mkdir(ROOT, "d", 0o755).unwrap();
        assert!(committed_row(&ns, f.ino).is_some(), "saved by the mkdir");
        let (g, g_open) = ns.create_as(ROOT, "g", 0o644, root, Some(1)).unwrap();
        // A change refused after the unsaved rows were written: they are unsaved again.
        assert_eq!(ns.rmdir(ROOT, "missing"), Err(Errno::ENOENT));
        assert_eq!(committed_row(&ns, g.ino), None);
        ns.release(g_open.fh).unwrap();
        assert_eq!(ns.journal.waiting(), 1, "journaled by its close");
        ns.symlink(ROOT, "l", "g").unwrap();
        assert!(committed_row(&ns, g.ino).is_some(), "saved by the symlink");
        ns.release(f_open.fh).unwrap();
    }
}

/// Finding 2 of issue 13: a tree change whose commit fails leaves nothing in memory.
#[cfg(all(test, feature = "fault-injection"))]
mod failed_commits {
    use super::*;
    use crate::checksum::Checksum;
    use crate::fs::test_support::{names, namespace, write_file};

    /// A file still open (created, not closed: its rows are in memory only, not journaled)
    /// survives a failed commit, and no inode number is given out twice: the kernel still
    /// knows the first file by it.
    #[test]
    fn a_failed_commit_keeps_the_files_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let db = ns.store().db().clone();
        let (open, opened) = ns.create(ROOT, "open", 0o644).unwrap();
        ns.write(opened.fh, 0, b"before ").unwrap();
        db.fail_next_commits(1);
        assert_eq!(ns.mkdir(ROOT, "lost", 0o755).unwrap_err(), Errno::ENOSPC);
        assert_eq!(ns.lookup(ROOT, "open").unwrap().ino, open.ino);
        // A failed rename of the open file leaves it where it was.
        db.fail_next_commits(1);
        assert!(ns.rename(ROOT, "open", ROOT, "moved", 0).is_err());
        assert_eq!(ns.lookup(ROOT, "open").unwrap().ino, open.ino);
        assert_eq!(ns.lookup(ROOT, "moved").unwrap_err(), Errno::ENOENT);
        let (other, other_opened) = ns.create(ROOT, "other", 0o644).unwrap();
        assert_ne!(other.ino, open.ino, "an inode number given out twice");
        ns.release(other_opened.fh).unwrap();
        ns.write(opened.fh, 7, b"and after").unwrap();
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
        let expect = b"before and after";
        assert_eq!(crate::fs::test_support::read_all(&ns, open.ino), expect);
        drop(ns);
        let ns = namespace(dir.path());
        let ino = ns.lookup(ROOT, "open").unwrap().ino;
        assert_eq!(crate::fs::test_support::read_all(&ns, ino), expect);
        assert!(ns.lookup(ROOT, "other").is_ok());
    }

    #[test]
    fn a_failed_commit_leaves_the_tree_as_committed() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let d = ns.mkdir(ROOT, "d", 0o755).unwrap().ino;
        let f = write_file(&ns, d, "f", b"kept");
        let db = ns.store().db().clone();

        db.fail_next_commits(1);
        assert_eq!(ns.mkdir(ROOT, "lost", 0o755).unwrap_err(), Errno::ENOSPC);
        assert_eq!(ns.lookup(ROOT, "lost").unwrap_err(), Errno::ENOENT);
        db.fail_next_commits(1);
        assert!(ns.rename(d, "f", ROOT, "moved", 0).is_err());
        assert_eq!(ns.lookup(d, "f").unwrap().ino, f);
        db.fail_next_commits(1);
        assert!(ns.unlink(d, "f").is_err());
        db.fail_next_commits(1);
        assert!(ns.symlink(d, "link", "f").is_err());
        assert_eq!(names(&ns, d), [".", "..", "f"].map(String::from));
        db.fail_next_commits(1);
        assert!(ns.rmdir(ROOT, "d").is_err());
        // A claim whose commit fails is not held either.
        db.fail_next_commits(1);
        let (_, opened) = ns.create(d, "g.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, format!("{}\n", Checksum::of(b"g")).as_bytes())
            .unwrap();
        assert!(ns.flush(opened.fh).is_err());
        ns.release(opened.fh).unwrap();
        assert!(!ns.claims.contains(d, "g"));
        // A new file's close is journaled (see `fs::journal`): a commit failing after it keeps
        // the file, and the next commit saves it.
        let (_, opened) = ns.create_as(d, "new", 0o644, None, Some(1)).unwrap();
        ns.write(opened.fh, 0, b"kept too").unwrap();
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
        db.fail_next_commits(1);
        assert_eq!(ns.save_unsaved(), Err(Errno::ENOSPC));
        let new = ns.lookup(d, "new").unwrap().ino;
        assert_eq!(crate::fs::test_support::read_all(&ns, new), b"kept too");

        // Once commits work again, everything does, and a reopen shows the same tree.
        ns.mkdir(ROOT, "later", 0o755).unwrap();
        drop(ns);
        let ns = namespace(dir.path());
        assert!(ns.lookup(ROOT, "lost").is_err());
        assert!(ns.lookup(ROOT, "later").is_ok());
        assert_eq!(names(&ns, d), [".", "..", "f", "new"].map(String::from));
    }
}
