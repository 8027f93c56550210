//! The filesystem logic of the mount, in plain Rust: the `Namespace` state and the dispatch of
//! name resolution, attributes, listing, opening and reading to the code for each kind of inode.
//! The FUSE adapter (`fs::fuse`) only translates; tests drive this type directly.
//!
//! Layout: the root is the writable tree plus `by-checksum/` (every stored buffer),
//! `as-<celltype>/` (a buffer converted to a cell type, see `fs::views`) and `.seamfs/stats`
//! (see `fs::fixed`). Each tree file `F` has a virtual `F.CHECKSUM`, each directory `D` a virtual
//! `D.INDEX` and `D.CHECKSUM`. Writing a sidecar is a claim, checked against its subject when
//! closed (see `fs::sidecars`). Writes and publishing are in `fs::write`, tree operations in
//! `fs::tree_ops`, extended attributes in `fs::xattr`.
//!
//! Lock order (to stay deadlock-free): an `Unpublished` slot, then `conn`, then `tree`. The tree
//! lock is never held while waiting for a slot.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use nix::errno::Errno;

pub use super::attr::{Attr, CacheMode, Kind, Opened};
use super::attr::{TREE_TTL, VOLATILE_TTL};
use super::claims::Claims;
use super::deferred::Deferred;
use super::error::{FsResult, store_errno, tree_errno};
use super::fixed::{buffer_attr, fixed_child, fixed_entries};
use super::handles::{DirEntry, Handle, Handles, Listing, Stream, TreeFileHandle, Unpublished};
use super::index::DecompressedCache;
use super::inodes::{self, Dynamic, Inodes, Sidecar};
use super::journal::{self, Journal};
use super::sidecars::{CHECKSUM_SIDECAR_LEN, FreshSidecars, sidecar_text};
use super::tree::{Node, NodeKind, ROOT, Special, Tree, TreeError};
use super::views::Views;
use super::xattr::UserXattrs;
use crate::checksum::Checksum;
use crate::db::client::RemoteRecords;
use crate::db::{Conn, Database};
use crate::store::{Reader, Store, Tier};

/// How many entries one readdir call prepares (a kernel reply holds about 50).
pub(super) const LISTING_BATCH: usize = 256;

/// Options of a mount.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub read_only: bool,
    /// List the virtual sidecars in directory listings (they are always looked up).
    pub list_sidecars: bool,
    /// A shared seamless-database for BufferInfo and view results (`--database-url`).
    pub database_url: Option<String>,
}

/// The mounted filesystem's state.
pub struct Namespace {
    /// Published buffers not yet fsynced: the syncer and the ledger (see `fs::deferred`).
    /// First, so that it is dropped (a final sync) while the store is still open and locked.
    pub(super) deferred: Deferred,
    /// Closed files whose rows are not in SQLite yet (see `fs::journal`).
    pub(super) journal: Journal,
    /// Garbage collections reading the committed references now: closes commit meanwhile.
    pub(super) collecting: std::sync::atomic::AtomicUsize,
    pub(super) store: Arc<Store>,
    pub(super) db: Database,
    pub(super) tree: RwLock<Tree>,
    pub(super) views: Views,
    /// Bumped by every tree change; keys the `.INDEX` cache.
    pub(super) version: AtomicU64,
    pub(super) index_cache: Mutex<HashMap<u64, (u64, Bytes)>>,
    pub(super) decompressed: DecompressedCache,
    pub(super) inodes: Inodes,
    pub(super) handles: Handles,
    pub(super) unpublished: Unpublished,
    /// Files removed (unlinked, or replaced by a rename) while open: they live, in memory only,
    /// until their last handle is released.
    pub(super) orphans: Mutex<HashMap<u64, Node>>,
    /// `X.CHECKSUM` written before `X` existed (persisted).
    pub(super) claims: Claims,
    /// Sidecars removed with `rm` (dir, sidecar name): not found until written again or their
    /// subject changes, so that unlink-then-create (`tar x` over an existing file) works.
    pub(super) unlinked_sidecars: Mutex<HashSet<(u64, String)>>,
    /// Sidecar names a copier process just made possible (see `Namespace::lookup_by`).
    pub(super) fresh_sidecars: Mutex<FreshSidecars>,
    /// Extended attributes users set on tree entries (persisted).
    pub(super) xattrs: UserXattrs,
    pub(super) options: Options,
    pub(super) started: SystemTime,
    /// The report of the last garbage collection run through `user.seamfs.gc`.
    pub(super) gc_report: Mutex<String>,
    /// Names the kernel may cache that no longer resolve (removed by gc).
    pub(super) invalidations: Mutex<Vec<(u64, String)>>,
}

impl Namespace {
    /// Open the namespace over a store: the tree lives in the store's `seamless.db` beside the
    /// seamless-database tables; buffers are read and written through the store's tier stack.
    pub fn new(store: Arc<Store>, options: Options) -> anyhow::Result<Self> {
        let db = store.db().clone();
        super::deferred::recover(&store)?;
        let deferred = Deferred::start(db.clone())?;
        let journal = Journal::open(&db)?;
        let remote = options
            .database_url
            .as_deref()
            .map(RemoteRecords::new)
            .transpose()
            .map_err(|e| anyhow::anyhow!(e))?;
        let (tree, claims, xattrs, views, kept) = db
            .transaction(|c| {
                let conn = c.conn();
                Ok::<_, TreeError>((
                    Tree::load(conn)?,
                    Claims::load(conn)?,
                    UserXattrs::load(conn)?,
                    Views::open(conn, remote)?,
                    super::kept::load(conn)?,
                ))
            })
            .map_err(|e| {
                anyhow::anyhow!("cannot load the tree from {}: {e}", db.path().display())
            })?;
        tracing::info!(entries = tree.len(), db = %db.path().display(), "tree loaded");
        let ns = Namespace {
            store,
            db,
            tree: RwLock::new(tree),
            views,
            version: AtomicU64::new(0),
            index_cache: Mutex::default(),
            decompressed: DecompressedCache::default(),
            inodes: Inodes::default(),
            handles: Handles::default(),
            unpublished: Unpublished::default(),
            orphans: Mutex::default(),
            claims,
            unlinked_sidecars: Mutex::default(),
            fresh_sidecars: Mutex::default(),
            xattrs,
            options,
            started: SystemTime::now(),
            deferred,
            journal,
            collecting: Default::default(),
            gc_report: Mutex::default(),
            invalidations: Mutex::default(),
        };
        ns.resume_kept(kept);
        Ok(ns)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store's tier stack: every buffer is read and written through it.
    pub(super) fn tiers(&self) -> &dyn Tier {
        self.store.tiers().as_ref()
    }

    /// Resolve `name` in directory `parent`. The result is an entry handed to the kernel: it
    /// counts as one lookup of a dynamic inode, until `forget`.
    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        if name.len() > super::tree_ops::NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        // A checksum not stored may be a kept file's content (see `fs::kept`).
        if parent == inodes::BY_CHECKSUM {
            let checksum = Checksum::parse_strict(name).ok_or(Errno::ENOENT)?;
            return self.after_kept(|| self.buffer_entry(checksum));
        }
        if let Some(celltype) = inodes::as_dir_celltype(parent) {
            let checksum = Checksum::parse_strict(name).ok_or(Errno::ENOENT)?;
            let result = self.after_kept(|| self.view(checksum, celltype))?;
            return self.buffer_entry(result);
        }
        if parent == inodes::SEAMFS_DIR {
            return match name {
                inodes::STATS_NAME => self.getattr(inodes::STATS_FILE),
                inodes::CLAIMS_NAME => self.getattr(inodes::CLAIMS_FILE),
                _ => Err(Errno::ENOENT),
            };
        }
        if parent == ROOT
            && let Some(ino) = fixed_child(name)
        {
            return self.getattr(ino);
        }
        let found = self.read_tree().lookup(parent, name);
        match found {
            Ok(ino) => self.getattr(ino),
            Err(TreeError::NotFound) => {
                let key = self.virtual_key(parent, name)?;
                self.getattr(self.inodes.acquire(key))
            }
            Err(e) => Err(tree_errno(e)),
        }
    }

    /// The kernel dropped `nlookup` lookups of `ino` (FUSE FORGET): a dynamic inode it no longer
    /// holds leaves the table (see `fs::inodes`).
    pub fn forget(&self, ino: u64, nlookup: u64) {
        self.inodes.forget(ino, nlookup);
    }

    /// Attributes of any inode.
    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        if ino == inodes::BY_CHECKSUM
            || ino == inodes::SEAMFS_DIR
            || inodes::as_dir_celltype(ino).is_some()
        {
            return Ok(self.fixed_attr(ino, Kind::Dir, 0, 0o555));
        }
        if ino == inodes::STATS_FILE || ino == inodes::CLAIMS_FILE {
            let size = self.fixed_file(ino).len() as u64;
            return Ok(Attr {
                ttl: VOLATILE_TTL,
                ..self.fixed_attr(ino, Kind::File, size, 0o444)
            });
        }
        if !self.is_tree(ino) {
            return match self.inodes.resolve(ino).ok_or(Errno::ENOENT)? {
                Dynamic::Buffer(checksum) => Ok(buffer_attr(ino, self.buffer_size(checksum)?)),
                Dynamic::Sidecar(subject, sidecar) => {
                    let mut mtime = self.read_tree().get(subject).ok_or(Errno::ENOENT)?.mtime;
                    let mut perm = 0o444;
                    if let Some(set) = self.sidecar_attr(subject, sidecar) {
                        (mtime, perm) = (set.mtime, set.mode as u16);
                    }
                    // A `.CHECKSUM` is one line of known length: a `stat` does not hash a
                    // kept file for it. An index that cannot be built (logged) still has
                    // attributes, so that `ls -l` and `rm -r` work; reading it reports the error.
                    let size = match sidecar {
                        Sidecar::Checksum => CHECKSUM_SIDECAR_LEN,
                        Sidecar::Index => self
                            .sidecar_content(subject, sidecar)
                            .map_or(0, |c| c.len() as u64),
                    };
                    Ok(Attr::plain(
                        ino,
                        Kind::File,
                        size,
                        perm,
                        mtime,
                        VOLATILE_TTL,
                    ))
                }
                Dynamic::Claim(dir, subject) => {
                    let claimed = self.claims.get(dir, &subject);
                    let set = claimed
                        .and_then(|c| self.claims.attr(dir, &format!("{subject}.CHECKSUM"), c));
                    Ok(Attr::plain(
                        ino,
                        Kind::File,
                        if claimed.is_some() {
                            CHECKSUM_SIDECAR_LEN
                        } else {
                            0
                        },
                        set.map_or(0o644, |s| s.mode as u16),
                        set.map_or(self.started, |s| s.mtime),
                        VOLATILE_TTL,
                    ))
                }
            };
        }
        self.tree_attr(ino)
    }

    fn tree_attr(&self, ino: u64) -> FsResult<Attr> {
        // The size is the pending write's if there is one, else the tree row's. The slot is
        // locked first (the lock order) and held while the tree is read: a publish in progress
        // (the background hasher's, of a kept file) holds it until the new row is in the
        // tree, so the size is never the row's from before that publish, which the kernel
        // would keep for `TREE_TTL` and cut the file's reads to.
        let slot = self.unpublished.existing(ino);
        let pending = slot.as_ref().map(|slot| slot.lock().expect("slot lock"));
        let pending_len = pending.as_ref().and_then(|p| p.as_ref().map(|w| w.len()));
        let (kind, size, rdev, node) = {
            let tree = self.read_tree();
            let orphan = self.orphan(ino);
            let node = tree.get(ino).or(orphan.as_ref()).ok_or(Errno::ENOENT)?;
            let nlink = match &orphan {
                Some(_) => Some(0),
                None => Some(tree.link_count(ino)),
            };
            let (kind, size, rdev) = match &node.kind {
                NodeKind::Dir(children) => (Kind::Dir, children.len() as u64, 0),
                NodeKind::File { size, .. } => (Kind::File, *size, 0),
                NodeKind::Symlink(target) => (Kind::Symlink, target.len() as u64, 0),
                NodeKind::Special { kind, rdev } => (special_kind(*kind), 0, *rdev as u32),
            };
            let meta = (
                node.mode as u16,
                node.mtime,
                node.ctime,
                node.uid,
                node.gid,
                node.atime,
            );
            (kind, size, rdev, (meta, nlink))
        };
        drop(pending);
        // An unpublished write moved the node's times in memory already (`Tree::modified`).
        let ((perm, mtime, ctime, uid, gid, atime), nlink) = node;
        let size = pending_len.unwrap_or(size);
        Ok(Attr {
            ino,
            kind,
            size,
            perm,
            mtime,
            ttl: TREE_TTL,
            uid,
            gid,
            rdev,
            ctime: Some(ctime),
            atime: Some(atime),
            nlink,
        })
    }

    /// A removed file still open (see `orphans`).
    pub(super) fn orphan(&self, ino: u64) -> Option<Node> {
        let orphans = self.orphans.lock().expect("orphans lock");
        if orphans.is_empty() {
            return None;
        }
        orphans.get(&ino).cloned()
    }

    /// Whether `ino` is a tree node (and not a tree inode that became a sidecar's alias).
    pub(super) fn is_tree(&self, ino: u64) -> bool {
        ino < inodes::FIXED_BASE && !self.inodes.is_alias(ino)
    }

    /// Start listing a directory.
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let dot = |name: &str, ino: u64| DirEntry {
            ino,
            name: name.to_string(),
            kind: Kind::Dir,
        };
        let mut entries = vec![dot(".", ino), dot("..", self.parent_of(ino))];
        let mut stream = None;
        if ino == inodes::BY_CHECKSUM {
            stream = Some(Stream::new(self.stored_buffers()));
        } else if ino == inodes::SEAMFS_DIR {
            for (ino, name) in [
                (inodes::STATS_FILE, inodes::STATS_NAME),
                (inodes::CLAIMS_FILE, inodes::CLAIMS_NAME),
            ] {
                entries.push(DirEntry {
                    ino,
                    name: name.into(),
                    kind: Kind::File,
                });
            }
        } else if inodes::as_dir_celltype(ino).is_none() {
            if ino == ROOT {
                entries.extend(fixed_entries());
            }
            entries.extend(self.tree_entries(ino)?);
        }
        Ok(self
            .handles
            .insert(Handle::Dir(Mutex::new(Listing { entries, stream }))))
    }

    /// Entries of an open directory from position `offset` on (an empty result ends the listing).
    /// The entry at index `i` of the result has position `offset + i + 1` for the next call.
    pub fn readdir(&self, fh: u64, offset: u64) -> FsResult<Vec<DirEntry>> {
        let handle = self.handles.get(fh).ok_or(Errno::EBADF)?;
        let Handle::Dir(listing) = &*handle else {
            return Err(Errno::ENOTDIR);
        };
        let mut listing = listing.lock().expect("listing lock");
        let fixed = listing.entries.len() as u64;
        if offset < fixed {
            return Ok(listing.entries[offset as usize..]
                .iter()
                .take(LISTING_BATCH)
                .cloned()
                .collect());
        }
        let Some(stream) = &mut listing.stream else {
            return Ok(Vec::new());
        };
        let position = offset - fixed;
        if let Some(entries) = stream.from(position, LISTING_BATCH) {
            return Ok(entries);
        }
        // A rewind (rewinddir/seekdir back): start the stream again.
        *stream = Stream::new(self.stored_buffers());
        Ok(stream.from(position, LISTING_BATCH).unwrap_or_default())
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles.remove(fh);
    }

    /// A tree directory's entries, with their sidecars if they are listed (`--list-sidecars`),
    /// each sidecar before its subject (so that `rm -r` removes the no-op sidecar first and the
    /// subject after, and `tar`/`cp` copies carry a claim before its subject).
    pub(super) fn tree_entries(&self, dir: u64) -> FsResult<Vec<DirEntry>> {
        let tree = self.read_tree();
        let children = tree.children(dir).map_err(tree_errno)?;
        let mut out = Vec::with_capacity(children.len() * 2);
        for (name, ino) in children {
            let node = tree.get(*ino).ok_or(Errno::EIO)?;
            let (kind, mut sidecars): (Kind, &[Sidecar]) = match node.kind {
                NodeKind::Dir(_) => (Kind::Dir, &[Sidecar::Index, Sidecar::Checksum]),
                NodeKind::File { .. } => (Kind::File, &[Sidecar::Checksum]),
                NodeKind::Symlink(_) => (Kind::Symlink, &[]),
                NodeKind::Special { kind, .. } => (special_kind(kind), &[]),
            };
            if !self.options.list_sidecars {
                sidecars = &[];
            }
            let unlinked = self.unlinked_sidecars.lock().expect("unlinked lock");
            for sidecar in sidecars {
                let sidecar_name = format!("{name}{}", sidecar.suffix());
                if !children.contains_key(&sidecar_name)
                    && !unlinked.contains(&(dir, sidecar_name.clone()))
                {
                    out.push(DirEntry {
                        ino: inodes::sidecar_ino(*ino, *sidecar),
                        name: sidecar_name,
                        kind: Kind::File,
                    });
                }
            }
            out.push(DirEntry {
                ino: *ino,
                name: name.clone(),
                kind,
            });
        }
        Ok(out)
    }

    fn parent_of(&self, ino: u64) -> u64 {
        if self.is_tree(ino) {
            self.read_tree().get(ino).map_or(ROOT, |n| n.parent)
        } else {
            ROOT
        }
    }

    /// Open a file. `flags` are the `open(2)` flags.
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<Opened> {
        self.open_by(ino, flags, None)
    }

    /// `open` on behalf of process `by` (see `set_attrs`).
    pub fn open_by(&self, ino: u64, flags: i32, by: Option<u32>) -> FsResult<Opened> {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if self.is_tree(ino) {
            if writable {
                self.writable()?;
            }
            match self.read_tree().get(ino).map(|n| &n.kind) {
                Some(NodeKind::File { .. }) => {}
                Some(NodeKind::Dir(_)) => return Err(Errno::EISDIR),
                _ => return Err(Errno::ENOENT),
            }
            let handle = TreeFileHandle {
                ino,
                writable,
                opener: by,
                closed: Default::default(),
                snapshot: Mutex::new(None),
            };
            let fh = self.handles.insert(Handle::TreeFile(handle));
            let cache = if writable {
                CacheMode::Normal
            } else {
                CacheMode::Keep
            };
            return Ok(Opened {
                fh,
                cache,
                backing: None,
            });
        }
        if ino == inodes::STATS_FILE || ino == inodes::CLAIMS_FILE {
            return self.open_bytes(Bytes::from(self.fixed_file(ino)), writable);
        }
        match self.inodes.resolve(ino).ok_or(Errno::ENOENT)? {
            Dynamic::Buffer(checksum) => {
                if writable {
                    return Err(Errno::EACCES);
                }
                let reader = self
                    .tiers()
                    .open_read(&checksum)
                    .map_err(store_errno)?
                    .ok_or(Errno::ENOENT)?;
                self.tiers().hold(&checksum);
                // A buffer still arriving (a download) is read through the daemon: straight
                // into the reader's memory, not through a second copy in the page cache.
                let cache = match reader {
                    Reader::Ranged(_) => CacheMode::Streamed,
                    Reader::Bytes(_) => CacheMode::Keep,
                };
                let fh = self.handles.insert(Handle::Buffer(checksum, reader));
                let backing = self.tiers().local_path(&checksum);
                Ok(Opened { fh, cache, backing })
            }
            Dynamic::Sidecar(subject, sidecar) => {
                if writable {
                    let node = self
                        .read_tree()
                        .get(subject)
                        .cloned()
                        .ok_or(Errno::ENOENT)?;
                    return Ok(self.open_claim(node.parent, node.name, sidecar));
                }
                self.open_bytes(self.sidecar_content(subject, sidecar)?, false)
            }
            Dynamic::Claim(dir, subject) => {
                if writable {
                    return Ok(self.open_claim(dir, subject, Sidecar::Checksum));
                }
                let claimed = self.claims.get(dir, &subject);
                self.open_bytes(
                    Bytes::from(claimed.map(sidecar_text).unwrap_or_default()),
                    false,
                )
            }
        }
    }

    /// Content of `.seamfs/stats` or `.seamfs/claims`.
    fn fixed_file(&self, ino: u64) -> Vec<u8> {
        if ino == inodes::CLAIMS_FILE {
            self.claims_text()
        } else {
            self.stats_json()
        }
    }

    fn open_bytes(&self, bytes: Bytes, writable: bool) -> FsResult<Opened> {
        if writable {
            return Err(Errno::EACCES);
        }
        let fh = self.handles.insert(Handle::Bytes(bytes));
        Ok(Opened {
            fh,
            cache: CacheMode::Direct,
            backing: None,
        })
    }

    /// Read up to `size` bytes at `offset`.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let handle = self.handles.get(fh).ok_or(Errno::EBADF)?;
        match &*handle {
            Handle::Bytes(bytes) => Ok(slice(bytes, offset, size)),
            Handle::Buffer(_, reader) => reader.range(offset, size as usize).map_err(|e| {
                tracing::error!(error = %e, "reading a stored buffer failed");
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
            }),
            Handle::TreeFile(file) => self.read_tree_file(file, offset, size),
            Handle::Claim(claim) => Ok(slice(
                &Bytes::from(claim.data.lock().expect("claim lock").clone()),
                offset,
                size,
            )),
            Handle::Dir(_) => Err(Errno::EISDIR),
        }
    }

    pub(super) fn writable(&self) -> FsResult<()> {
        if self.options.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// Run one tree mutation (which may record more, e.g. BufferInfo) in one transaction: all or
    /// nothing (see `transaction`).
    pub(super) fn mutate<T>(
        &self,
        change: impl FnOnce(&mut Tree, &Conn) -> Result<T, TreeError>,
    ) -> FsResult<T> {
        let out = self.transaction(|c| {
            let mut tree = self.tree.write().expect("tree lock");
            change(&mut tree, c)
        })?;
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }

    /// Make every published file and every tree change so far durable (`fsyncdir`).
    pub fn sync(&self) -> FsResult<()> {
        self.save_unsaved()?;
        self.deferred.sync_now().map_err(|e| {
            tracing::error!(error = %e, "could not make published buffers durable");
            Errno::EIO
        })?;
        self.sync_tree()
    }

    /// Make every tree change so far durable (after `fsync` made the file's buffer durable).
    pub fn sync_tree(&self) -> FsResult<()> {
        self.save_unsaved()?;
        self.db.sync().map_err(|e| {
            tracing::error!(error = %e, "could not make the tree durable");
            Errno::EIO
        })
    }

    /// Run `f` in one SQLite transaction. The tree, the claims and the user attributes apply a
    /// change in memory as soon as its rows are written; if the commit then fails (a full disk),
    /// SQLite has rolled the rows back, and all three are reloaded from the committed rows before
    /// any other change can start, so memory never keeps what the database lost. What lives
    /// in memory only until a later commit is put back into the tree: the journal's records
    /// and the rows of files still being written (`Journal::restore`).
    ///
    /// Every transaction first writes the tree's unsaved rows (see `fs::tree`: what a file's
    /// writer changed before closing it), so no committed row can refer to a node that has none,
    /// and last those changed meanwhile, with the journal's mark (see `fs::journal`).
    pub(super) fn transaction<T>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, TreeError>,
    ) -> FsResult<T> {
        // Ledger rows a finished sync covered go with this transaction (see `fs::deferred`),
        // and so do the journal's waiting records (see `fs::journal`).
        let mut trimmed = None;
        let saving = std::cell::Cell::new(None);
        // The files being written, before `f`, at its end and at a failed commit: put back
        // if the commit fails.
        let snapshots = std::cell::RefCell::new(Vec::new());
        let out = self
            .db
            .transaction_or_undo_then(
                |c| {
                    let mut saved = Vec::new();
                    let out = (|| {
                        {
                            let mut tree = self.tree.write().expect("tree lock");
                            snapshots.borrow_mut().push(self.journal.snapshot(&tree));
                            saved.push(tree.save_unsaved(c.conn())?);
                        }
                        let out = f(c)?;
                        // The journal's mark is taken last, under the tree lock: a close that
                        // journaled its rows while `f` ran is covered too, so no record older
                        // than a change of `f` (a rename or unlink of that very file) can be
                        // replayed over it after a crash.
                        let journaled = {
                            let mut tree = self.tree.write().expect("tree lock");
                            snapshots.borrow_mut().push(self.journal.snapshot(&tree));
                            saved.push(tree.save_unsaved(c.conn())?);
                            self.journal.saving()
                        };
                        self.journal.write(c, &journaled, &self.deferred)?;
                        Ok((out, journaled, self.deferred.trim(c.conn())?))
                    })();
                    match out {
                        Ok((out, journaled, upto)) => {
                            trimmed = upto;
                            saving.set(Some(journaled));
                            Ok(out)
                        }
                        Err(e) => {
                            // Rolled back: those rows are not written after all.
                            let mut tree = self.tree.write().expect("tree lock");
                            for rows in saved {
                                tree.unsaved_again(rows);
                            }
                            Err(e)
                        }
                    }
                },
                |c| {
                    let mut tree = self.tree.write().expect("tree lock");
                    // And the files created or changed while the commit ran.
                    let mut snapshots = snapshots.take();
                    snapshots.push(self.journal.snapshot(&tree));
                    tree.reload(c.conn())?;
                    self.journal.restore(&mut tree, snapshots);
                    self.claims.replace(Claims::load(c.conn())?);
                    self.xattrs.replace(UserXattrs::load(c.conn())?);
                    self.version.fetch_add(1, Ordering::AcqRel);
                    Ok(())
                },
                // Before the next transaction, which must not save these records again.
                || {
                    if let Some(saved) = saving.take() {
                        self.journal.saved(&saved);
                    }
                },
            )
            .map_err(tree_errno)?;
        if let Some(upto) = trimmed {
            self.deferred.trimmed(upto);
        }
        Ok(out)
    }

    /// Commit the tree's unsaved rows and the journal's waiting records now, if any.
    pub(super) fn save_unsaved(&self) -> FsResult<()> {
        if self.read_tree().has_unsaved() || self.journal.waiting() > 0 {
            self.transaction(|_| Ok(()))?;
        }
        Ok(())
    }

    /// What a file's writer changed before its `close()`: journaled, so that it survives a
    /// kill -9 (see `fs::journal`), or committed if the journal cannot take it.
    pub(super) fn journal_closed(&self) -> FsResult<()> {
        let appended = {
            let mut tree = self.tree.write().expect("tree lock");
            let rows = tree.take_unjournaled();
            if rows.is_empty() {
                return Ok(());
            }
            self.journal.append(rows, None)
        };
        match appended {
            Ok(()) => {
                self.journaled();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not journal a closed file; committing it");
                self.save_unsaved()
            }
        }
    }

    /// A record is in the journal: every `journal::GROUP` records are committed. The close is
    /// acknowledged either way: a failed commit (logged) keeps the records for the next one.
    pub(super) fn journaled(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        if self.journal.waiting() >= journal::GROUP {
            let _ = self.save_unsaved();
        }
    }

    /// Change the tree in memory only, for changes the next transaction saves (see
    /// `fs::tree`).
    pub(super) fn change_unsaved<T>(
        &self,
        change: impl FnOnce(&mut Tree) -> Result<T, TreeError>,
    ) -> FsResult<T> {
        let out = change(&mut self.tree.write().expect("tree lock")).map_err(tree_errno)?;
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }

    pub(super) fn read_tree(&self) -> std::sync::RwLockReadGuard<'_, Tree> {
        self.tree.read().expect("tree lock")
    }

    /// Filesystem statistics of the store's disk: (blocks, free, available, files, free files,
    /// block size).
    pub fn statfs(&self) -> FsResult<nix::sys::statvfs::Statvfs> {
        nix::sys::statvfs::statvfs(self.store.root())
    }
}

impl Drop for Namespace {
    /// Unmounting with a file still open for writing: what its writer changed is kept.
    fn drop(&mut self) {
        if let Err(e) = self.save_unsaved() {
            tracing::error!(%e, "could not save the last tree changes at unmount");
        }
    }
}

fn special_kind(kind: Special) -> Kind {
    match kind {
        Special::Fifo => Kind::Fifo,
        Special::Socket => Kind::Socket,
        Special::CharDevice => Kind::CharDevice,
        Special::BlockDevice => Kind::BlockDevice,
    }
}

pub(super) fn slice(bytes: &Bytes, offset: u64, size: u32) -> Bytes {
    let start = (offset as usize).min(bytes.len());
    let end = start.saturating_add(size as usize).min(bytes.len());
    bytes.slice(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::celltype::CellType;
    use crate::checksum::Checksum;
    use crate::fs::test_support::{names, namespace, namespace_with, write_file};

    #[test]
    fn sidecars_are_looked_up_but_not_listed_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let d = ns.mkdir(ROOT, "d", 0o755).unwrap().ino;
        write_file(&ns, d, "a", b"x");
        assert_eq!(names(&ns, d), [".", "..", "a"]);
        assert_eq!(names(&ns, ROOT).last().unwrap(), "d");
        assert_eq!(ns.lookup(d, "a.CHECKSUM").unwrap().size, 65);
        assert!(ns.lookup(ROOT, "d.INDEX").unwrap().size > 0);
    }

    #[test]
    fn listing_puts_sidecars_before_subjects() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            list_sidecars: true,
            ..Options::default()
        };
        let ns = namespace_with(dir.path(), options);
        let d = ns.mkdir(ROOT, "d", 0o755).unwrap().ino;
        write_file(&ns, d, "a", b"x");
        ns.symlink(d, "l", "a").unwrap();
        assert_eq!(names(&ns, d), [".", "..", "a.CHECKSUM", "a", "l"]);
        let root = names(&ns, ROOT);
        assert!(
            root.contains(&"by-checksum".to_string()) && root.contains(&"as-plain".to_string())
        );
        assert_eq!(&root[root.len() - 3..], ["d.INDEX", "d.CHECKSUM", "d"]);
        // The created file's empty content is a stored buffer too.
        let mut stored = names(&ns, inodes::BY_CHECKSUM)[2..].to_vec();
        stored.sort();
        let mut expected = [Checksum::of(b"x").hex(), Checksum::of(b"").hex()];
        expected.sort();
        assert_eq!(stored, expected);
    }

    #[test]
    fn forgotten_lookups_leave_the_inode_table() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let file = write_file(&ns, ROOT, "f", b"x");
        let hex = Checksum::of(b"x").hex();
        let buffer = ns.lookup(inodes::BY_CHECKSUM, &hex).unwrap().ino;
        assert_eq!(ns.lookup(inodes::BY_CHECKSUM, &hex).unwrap().ino, buffer);
        // The same buffer through a view, a sidecar, and tree/fixed inodes: no new table entries.
        assert_eq!(
            ns.lookup(inodes::as_dir(CellType::Bytes), &hex)
                .unwrap()
                .ino,
            buffer
        );
        let sidecar = ns.lookup(ROOT, "f.CHECKSUM").unwrap().ino;
        assert_eq!(ns.lookup(ROOT, "f").unwrap().ino, file);
        assert_eq!(ns.inodes.len(), 1);
        // A claim is tabled too.
        let (claim, opened) = ns.create(ROOT, "g.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, sidecar_text(Checksum::of(b"x")).as_slice())
            .unwrap();
        ns.release(opened.fh).unwrap();
        assert_eq!(ns.inodes.len(), 2);
        ns.forget(buffer, 2);
        assert_eq!(ns.getattr(buffer).unwrap().size, 1, "one lookup still held");
        ns.forget(buffer, 1);
        ns.forget(claim.ino, 1);
        ns.forget(sidecar, 1);
        ns.forget(file, 1);
        assert_eq!(ns.inodes.len(), 0);
        assert_eq!(ns.getattr(buffer), Err(Errno::ENOENT));
        assert_eq!(ns.getattr(file).unwrap().size, 1);
        assert_eq!(ns.getattr(sidecar).unwrap().size, 65);
        // Re-created by name, with the same derived number.
        assert_eq!(ns.lookup(inodes::BY_CHECKSUM, &hex).unwrap().ino, buffer);
    }
}
