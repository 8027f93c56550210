//! The filesystem logic of the mount, in plain Rust: what each name resolves to, the attributes
//! of every inode, opening, reading, writing and publishing files, and the tree operations.
//! The FUSE adapter (`fs::fuse`) only translates; tests drive this type directly.
//!
//! Layout: the root is the writable tree plus `by-checksum/` (every stored buffer),
//! `as-<celltype>/` (a buffer converted to a cell type, see `fs::views`) and `.seamfs/stats`.
//! Each tree file `F` has a virtual `F.CHECKSUM`, each directory `D` a virtual `D.INDEX` and
//! `D.CHECKSUM`. Writing a sidecar is a claim, checked against its subject when closed.
//!
//! Lock order (to stay deadlock-free): an `Unpublished` slot, then `conn`, then `tree`. The tree
//! lock is never held while waiting for a slot.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use nix::errno::Errno;

use super::claims::Claims;
use super::handles::{
    ClaimHandle, DirEntry, Handle, Handles, Listing, Stream, TreeFileHandle, Unpublished,
};
use super::index::{self, DecompressedCache};
use super::inodes::{self, Dynamic, Inodes, Sidecar};
use super::tree::{self, NodeKind, ROOT, Tree, TreeError};
use super::views::{ViewError, Views};
use crate::buffer::Buffer;
use crate::buffer_info::BufferInfo;
use crate::celltype::CellType;
use crate::checksum::Checksum;
use crate::db::{Conn, Database};
use crate::store::{BufferTier, DiskStore, PendingWrite, StoreError};

/// Result of a filesystem operation: the errno tells the kernel what went wrong.
pub type FsResult<T> = Result<T, Errno>;

/// Attribute and entry lifetime of immutable inodes (buffers, fixed directories): they never change.
pub const IMMUTABLE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Lifetime of tree entries: every change goes through this mount, so the kernel stays coherent;
/// a short TTL still bounds the effect of anything unforeseen.
pub const TREE_TTL: Duration = Duration::from_secs(10);
/// Virtual sidecars change with their subject: never cached.
pub const VOLATILE_TTL: Duration = Duration::ZERO;

/// Block size for copying a published buffer into a pending write.
const COPY_BLOCK: usize = 1 << 20;
/// How many entries one readdir call prepares (a kernel reply holds about 50).
const LISTING_BATCH: usize = 256;

/// The three kinds of inode the mount has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

/// Attributes of an inode, with how long the kernel may cache them.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub mtime: SystemTime,
    pub ttl: Duration,
}

/// How the kernel should cache an open file's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Content never changes behind the kernel's back: keep the page cache across opens.
    Keep,
    /// Content is computed per open (virtual files): bypass the page cache.
    Direct,
    /// Default: the page cache is dropped at open.
    Normal,
}

/// An open file: the handle, its cache mode, and a backing file the kernel may read directly
/// (FUSE passthrough) if it can.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub fh: u64,
    pub cache: CacheMode,
    pub backing: Option<PathBuf>,
}

/// Options of a mount.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub read_only: bool,
}

/// The mounted filesystem's state.
pub struct Namespace {
    store: DiskStore,
    reads: Arc<dyn BufferTier>,
    db: Database,
    tree: RwLock<Tree>,
    views: Views,
    /// Bumped by every tree change; keys the `.INDEX` cache.
    version: AtomicU64,
    index_cache: Mutex<HashMap<u64, (u64, Bytes)>>,
    decompressed: DecompressedCache,
    inodes: Inodes,
    handles: Handles,
    unpublished: Unpublished,
    /// `X.CHECKSUM` written before `X` existed (persisted).
    claims: Claims,
    options: Options,
    started: SystemTime,
}

impl Namespace {
    /// Open the namespace over a store: `db` is the store's `seamless.db` (see `database_path`),
    /// holding the tree beside the seamless-database tables; `reads` is the tier stack reads go
    /// through (RAM over disk, or the disk store itself).
    pub fn new(
        store: DiskStore,
        reads: Arc<dyn BufferTier>,
        db: Database,
        options: Options,
    ) -> anyhow::Result<Self> {
        let (tree, claims) = db
            .transaction(|c| Ok::<_, TreeError>((Tree::load(c.conn())?, Claims::load(c.conn())?)))
            .map_err(|e| {
                anyhow::anyhow!("cannot load the tree from {}: {e}", db.path().display())
            })?;
        tracing::info!(entries = tree.len(), db = %db.path().display(), "tree loaded");
        Ok(Namespace {
            store,
            reads,
            db,
            tree: RwLock::new(tree),
            views: Views::default(),
            version: AtomicU64::new(0),
            index_cache: Mutex::default(),
            decompressed: DecompressedCache::default(),
            inodes: Inodes::default(),
            handles: Handles::default(),
            unpublished: Unpublished::default(),
            claims,
            options,
            started: SystemTime::now(),
        })
    }

    pub fn store(&self) -> &DiskStore {
        &self.store
    }

    // ----- names and attributes -----

    /// Resolve `name` in directory `parent`. The result is an entry handed to the kernel: it
    /// counts as one lookup of a dynamic inode, until `forget`.
    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        if parent == inodes::BY_CHECKSUM {
            let checksum = Checksum::parse_strict(name).ok_or(Errno::ENOENT)?;
            return self.buffer_entry(checksum);
        }
        if let Some(celltype) = inodes::as_dir_celltype(parent) {
            let checksum = Checksum::parse_strict(name).ok_or(Errno::ENOENT)?;
            let result = self.view(checksum, celltype)?;
            return self.buffer_entry(result);
        }
        if parent == inodes::SEAMFS_DIR {
            return if name == inodes::STATS_NAME {
                self.getattr(inodes::STATS_FILE)
            } else {
                Err(Errno::ENOENT)
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

    /// What a virtual name stands for: a sidecar of an existing subject, or a pending claim.
    fn virtual_key(&self, parent: u64, name: &str) -> FsResult<Dynamic> {
        let (subject, sidecar) = Sidecar::split(name).ok_or(Errno::ENOENT)?;
        let subject_ino = self.read_tree().lookup(parent, subject);
        if let Ok(subject_ino) = subject_ino
            && self.has_sidecar(subject_ino, sidecar)
        {
            return Ok(Dynamic::Sidecar(subject_ino, sidecar));
        }
        if sidecar == Sidecar::Checksum && self.claims.contains(parent, subject) {
            return Ok(Dynamic::Claim(parent, subject.to_string()));
        }
        Err(Errno::ENOENT)
    }

    /// Files have a `.CHECKSUM`; directories (but not the root) have both sidecars.
    fn has_sidecar(&self, ino: u64, sidecar: Sidecar) -> bool {
        match self.read_tree().get(ino).map(|n| &n.kind) {
            Some(NodeKind::File { .. }) => sidecar == Sidecar::Checksum,
            Some(NodeKind::Dir(_)) => ino != ROOT,
            _ => false,
        }
    }

    /// Attributes of any inode.
    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        if ino == inodes::BY_CHECKSUM
            || ino == inodes::SEAMFS_DIR
            || inodes::as_dir_celltype(ino).is_some()
        {
            return Ok(self.fixed_attr(ino, Kind::Dir, 0, 0o555));
        }
        if ino == inodes::STATS_FILE {
            let size = self.stats_json().len() as u64;
            return Ok(Attr {
                ttl: VOLATILE_TTL,
                ..self.fixed_attr(ino, Kind::File, size, 0o444)
            });
        }
        if ino >= inodes::DYNAMIC_BASE {
            return match self.inodes.resolve(ino).ok_or(Errno::ENOENT)? {
                Dynamic::Buffer(checksum) => Ok(buffer_attr(ino, self.buffer_size(checksum)?)),
                Dynamic::Sidecar(subject, sidecar) => {
                    let mtime = self.read_tree().get(subject).ok_or(Errno::ENOENT)?.mtime;
                    // An index that cannot be built (logged) still has attributes, so that
                    // `ls -l` and `rm -r` work; reading it reports the error.
                    let size = self
                        .sidecar_content(subject, sidecar)
                        .map_or(0, |c| c.len() as u64);
                    Ok(Attr {
                        ino,
                        kind: Kind::File,
                        size,
                        perm: 0o444,
                        mtime,
                        ttl: VOLATILE_TTL,
                    })
                }
                Dynamic::Claim(dir, subject) => {
                    let size = if self.claims.contains(dir, &subject) {
                        65
                    } else {
                        0
                    };
                    Ok(Attr {
                        ino,
                        kind: Kind::File,
                        size,
                        perm: 0o644,
                        mtime: self.started,
                        ttl: VOLATILE_TTL,
                    })
                }
            };
        }
        self.tree_attr(ino)
    }

    fn tree_attr(&self, ino: u64) -> FsResult<Attr> {
        // Copy what is needed and release the tree lock before looking at unpublished writes.
        let (kind, size, perm, mtime) = {
            let tree = self.read_tree();
            let node = tree.get(ino).ok_or(Errno::ENOENT)?;
            let (kind, size) = match &node.kind {
                NodeKind::Dir(children) => (Kind::Dir, children.len() as u64),
                NodeKind::File { size, .. } => (Kind::File, *size),
                NodeKind::Symlink(target) => (Kind::Symlink, target.len() as u64),
            };
            (kind, size, node.mode as u16, node.mtime)
        };
        let size = match self.unpublished.existing(ino) {
            Some(slot) => slot
                .lock()
                .expect("slot lock")
                .as_ref()
                .map_or(size, PendingWrite::len),
            None => size,
        };
        Ok(Attr {
            ino,
            kind,
            size,
            perm,
            mtime,
            ttl: TREE_TTL,
        })
    }

    fn fixed_attr(&self, ino: u64, kind: Kind, size: u64, perm: u16) -> Attr {
        Attr {
            ino,
            kind,
            size,
            perm,
            mtime: self.started,
            ttl: IMMUTABLE_TTL,
        }
    }

    /// A stored buffer as an entry for the kernel (counted, see `lookup`).
    fn buffer_entry(&self, checksum: Checksum) -> FsResult<Attr> {
        let size = self.buffer_size(checksum)?;
        Ok(buffer_attr(
            self.inodes.acquire(Dynamic::Buffer(checksum)),
            size,
        ))
    }

    fn buffer_size(&self, checksum: Checksum) -> FsResult<u64> {
        self.reads
            .length(&checksum)
            .map_err(store_errno)?
            .ok_or(Errno::ENOENT)
    }

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

    fn is_tree(&self, ino: u64) -> bool {
        ino < inodes::FIXED_BASE
    }

    // ----- directories -----

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
            entries.push(DirEntry {
                ino: inodes::STATS_FILE,
                name: inodes::STATS_NAME.into(),
                kind: Kind::File,
            });
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

    /// Every stored buffer as a `by-checksum/` entry, streamed from the store.
    fn stored_buffers(&self) -> Box<dyn Iterator<Item = DirEntry> + Send> {
        // Reported inode numbers are derived, not recorded: a listing costs no memory per entry.
        Box::new(self.store.iter().filter_map(move |r| match r {
            Ok(checksum) => Some(DirEntry {
                ino: inodes::buffer_ino(&checksum),
                name: checksum.hex(),
                kind: Kind::File,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "listing by-checksum/: skipping an unreadable entry");
                None
            }
        }))
    }

    /// A tree directory's entries with their sidecars, each sidecar before its subject (so that
    /// `rm -r` removes the no-op sidecar first and the subject after).
    fn tree_entries(&self, dir: u64) -> FsResult<Vec<DirEntry>> {
        let tree = self.read_tree();
        let children = tree.children(dir).map_err(tree_errno)?;
        let mut out = Vec::with_capacity(children.len() * 2);
        for (name, ino) in children {
            let node = tree.get(*ino).ok_or(Errno::EIO)?;
            let (kind, sidecars): (Kind, &[Sidecar]) = match node.kind {
                NodeKind::Dir(_) => (Kind::Dir, &[Sidecar::Index, Sidecar::Checksum]),
                NodeKind::File { .. } => (Kind::File, &[Sidecar::Checksum]),
                NodeKind::Symlink(_) => (Kind::Symlink, &[]),
            };
            for sidecar in sidecars {
                let sidecar_name = format!("{name}{}", sidecar.suffix());
                if !children.contains_key(&sidecar_name) {
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

    // ----- opening, reading, writing -----

    /// Open a file. `flags` are the `open(2)` flags.
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<Opened> {
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
        if ino == inodes::STATS_FILE {
            return self.open_bytes(Bytes::from(self.stats_json()), writable);
        }
        match self.inodes.resolve(ino).ok_or(Errno::ENOENT)? {
            Dynamic::Buffer(checksum) => {
                if writable {
                    return Err(Errno::EACCES);
                }
                let buffer = self
                    .reads
                    .get(&checksum)
                    .map_err(store_errno)?
                    .ok_or(Errno::ENOENT)?;
                let fh = self.handles.insert(Handle::Bytes(buffer.bytes().clone()));
                let path = self.store.path_of(&checksum);
                let backing = path.exists().then_some(path);
                Ok(Opened {
                    fh,
                    cache: CacheMode::Keep,
                    backing,
                })
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

    fn open_claim(&self, dir: u64, subject: String, sidecar: Sidecar) -> Opened {
        let claim = ClaimHandle {
            dir,
            subject,
            sidecar,
            data: Mutex::default(),
        };
        let fh = self.handles.insert(Handle::Claim(claim));
        Opened {
            fh,
            cache: CacheMode::Direct,
            backing: None,
        }
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

    /// Read up to `size` bytes at `offset`.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let handle = self.handles.get(fh).ok_or(Errno::EBADF)?;
        match &*handle {
            Handle::Bytes(bytes) => Ok(slice(bytes, offset, size)),
            Handle::TreeFile(file) => self.read_tree_file(file, offset, size),
            Handle::Claim(claim) => Ok(slice(
                &Bytes::from(claim.data.lock().expect("claim lock").clone()),
                offset,
                size,
            )),
            Handle::Dir(_) => Err(Errno::EISDIR),
        }
    }

    fn read_tree_file(&self, file: &TreeFileHandle, offset: u64, size: u32) -> FsResult<Bytes> {
        if let Some(slot) = self.unpublished.existing(file.ino) {
            let slot = slot.lock().expect("slot lock");
            if let Some(pending) = slot.as_ref() {
                let len = pending.len().saturating_sub(offset).min(size as u64) as usize;
                let mut out = vec![0u8; len];
                let mut done = 0;
                while done < len {
                    let n = pending
                        .read_at(offset + done as u64, &mut out[done..])
                        .map_err(store_errno)?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                out.truncate(done);
                return Ok(Bytes::from(out));
            }
        }
        let buffer = self.published_buffer(file)?;
        Ok(slice(buffer.bytes(), offset, size))
    }

    /// The file's published buffer, kept in the handle while the file does not change.
    fn published_buffer(&self, file: &TreeFileHandle) -> FsResult<Buffer> {
        let checksum = self.file_checksum(file.ino)?;
        let mut snapshot = file.snapshot.lock().expect("snapshot lock");
        if let Some(buffer) = snapshot.as_ref()
            && buffer.checksum() == checksum
        {
            return Ok(buffer.clone());
        }
        let buffer = self.load(checksum)?;
        *snapshot = Some(buffer.clone());
        Ok(buffer)
    }

    fn file_checksum(&self, ino: u64) -> FsResult<Checksum> {
        match self.read_tree().get(ino).map(|n| &n.kind) {
            Some(NodeKind::File { checksum, .. }) => Ok(*checksum),
            Some(NodeKind::Dir(_)) => Err(Errno::EISDIR),
            _ => Err(Errno::ENOENT),
        }
    }

    /// A stored buffer; its absence from the store is an I/O error (the tree refers to it).
    fn load(&self, checksum: Checksum) -> FsResult<Buffer> {
        if checksum == tree::empty_checksum() {
            return Ok(Buffer::with_checksum(Bytes::new(), checksum));
        }
        match self.reads.get(&checksum).map_err(store_errno)? {
            Some(buffer) => Ok(Buffer::with_checksum(buffer.bytes().clone(), checksum)),
            None => {
                tracing::error!(%checksum, "a tree file refers to a buffer the store does not have");
                Err(Errno::EIO)
            }
        }
    }

    /// Write `data` at `offset`; returns the number of bytes written.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let handle = self.handles.get(fh).ok_or(Errno::EBADF)?;
        match &*handle {
            Handle::TreeFile(file) if file.writable => {
                let slot = self.unpublished.slot(file.ino);
                let mut slot = slot.lock().expect("slot lock");
                let pending = self.pending_for(file.ino, &mut slot)?;
                pending.write_at(offset, data).map_err(store_errno)?;
                Ok(data.len() as u32)
            }
            Handle::Claim(claim) => {
                let mut buf = claim.data.lock().expect("claim lock");
                let end = offset as usize + data.len();
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[offset as usize..end].copy_from_slice(data);
                Ok(data.len() as u32)
            }
            _ => Err(Errno::EBADF),
        }
    }

    /// The pending write of a tree file, started from its published content if needed.
    fn pending_for<'a>(
        &self,
        ino: u64,
        slot: &'a mut Option<PendingWrite>,
    ) -> FsResult<&'a mut PendingWrite> {
        if slot.is_none() {
            let mut pending = self.store.begin_write().map_err(store_errno)?;
            let published = self.load(self.file_checksum(ino)?)?;
            for (i, block) in published.as_slice().chunks(COPY_BLOCK).enumerate() {
                pending
                    .write_at((i * COPY_BLOCK) as u64, block)
                    .map_err(store_errno)?;
            }
            *slot = Some(pending);
        }
        Ok(slot.as_mut().expect("just filled"))
    }

    fn truncate(&self, ino: u64, size: u64, keep_open: bool) -> FsResult<()> {
        let slot = self.unpublished.slot(ino);
        {
            let mut slot = slot.lock().expect("slot lock");
            if slot.is_none() && size == 0 {
                // Truncating to nothing needs no copy of the old content.
                *slot = Some(self.store.begin_write().map_err(store_errno)?);
            }
            self.pending_for(ino, &mut slot)?
                .set_len(size)
                .map_err(store_errno)?;
        }
        if keep_open { Ok(()) } else { self.publish(ino) }
    }

    /// Close of one file descriptor: publish the file's writes.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.get(fh).ok_or(Errno::EBADF)?;
        match &*handle {
            Handle::TreeFile(file) if file.writable => self.publish(file.ino),
            Handle::Claim(claim) => self.check_claim(claim),
            _ => Ok(()),
        }
    }

    /// `fsync`: publishing is what makes the content durable.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        self.flush(fh)
    }

    /// The last reference to an open file is gone.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.remove(fh).ok_or(Errno::EBADF)?;
        let Handle::TreeFile(file) = &*handle else {
            return Ok(());
        };
        let exists = self.read_tree().get(file.ino).is_some();
        if !exists {
            // Unlinked while open: once nobody has it open, its writes go nowhere.
            if !self.handles.tree_file_open(file.ino) {
                self.unpublished.discard(file.ino);
            }
            return Ok(());
        }
        let published = if file.writable {
            self.publish(file.ino)
        } else {
            Ok(())
        };
        self.unpublished.drop_if_clean(file.ino);
        published
    }

    /// Publish a tree file's pending writes: the buffer is verified and renamed into the store,
    /// then the tree row is committed. Readers see the old content until then.
    pub fn publish(&self, ino: u64) -> FsResult<()> {
        let Some(slot) = self.unpublished.existing(ino) else {
            return Ok(());
        };
        let mut slot = slot.lock().expect("slot lock");
        let Some(pending) = slot.take() else {
            return Ok(());
        };
        let size = pending.len();
        let started = std::time::Instant::now();
        let checksum = pending.commit(None).map_err(|e| {
            tracing::error!(ino, error = %e, "could not publish a written file");
            Errno::EIO
        })?;
        // The tree row, the buffer's BufferInfo and the end of a pending claim on the file are
        // committed together.
        let info = BufferInfo::with_length(size as usize).to_map();
        let result = self.mutate(|tree, c| match tree.get(ino) {
            Some(node) => {
                let name = node.name.clone();
                let claimed = self.claims.remove(c.conn(), node.parent, &name)?;
                tree.set_content(c.conn(), ino, checksum, size)?;
                c.merge_buffer_info(&checksum, &info)?;
                Ok(Some((name, claimed)))
            }
            None => Ok(None),
        });
        drop(slot);
        let Some((name, claimed)) = result? else {
            return Ok(());
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(path = %self.read_tree().path(ino), %checksum, size, elapsed_ms, "published");
        match claimed {
            Some(claimed) if claimed != checksum => {
                tracing::error!(
                    file = %self.read_tree().path(ino), %claimed, actual = %checksum,
                    "{name}.CHECKSUM was written before {name} and does not match its content"
                );
                Err(Errno::EIO)
            }
            _ => Ok(()),
        }
    }

    /// A sidecar written by the user: accepted if it matches its subject, else EIO.
    fn check_claim(&self, claim: &ClaimHandle) -> FsResult<()> {
        let data = claim.data.lock().expect("claim lock").clone();
        let subject = self.read_tree().lookup(claim.dir, &claim.subject);
        let Ok(subject) = subject else {
            let claimed = Checksum::from_sidecar(&data).map_err(|_| {
                tracing::error!(subject = %claim.subject, "a .CHECKSUM file must hold 64 hex digits");
                Errno::EIO
            })?;
            return self
                .db
                .transaction(|c| {
                    self.claims
                        .insert(c.conn(), claim.dir, &claim.subject, claimed)
                })
                .map_err(tree_errno);
        };
        self.publish(subject)?;
        let actual = self.sidecar_content(subject, claim.sidecar)?;
        let matches = match claim.sidecar {
            Sidecar::Checksum => {
                Checksum::from_sidecar(&data).ok() == Checksum::from_sidecar(&actual).ok()
            }
            Sidecar::Index => data == actual,
        };
        if matches {
            return Ok(());
        }
        let path = self.read_tree().path(subject);
        let written = match claim.sidecar {
            Sidecar::Checksum => String::from_utf8_lossy(&data).trim_end().to_string(),
            Sidecar::Index => Checksum::of(&data).hex(),
        };
        tracing::error!(
            subject = %path, written = %written, actual = %String::from_utf8_lossy(&sidecar_checksum_text(&actual, claim.sidecar)).trim_end(),
            "the written {} does not match the content; refused", claim.sidecar.suffix()
        );
        Err(Errno::EIO)
    }

    // ----- virtual content -----

    /// The bytes of a virtual sidecar.
    fn sidecar_content(&self, subject: u64, sidecar: Sidecar) -> FsResult<Bytes> {
        let is_dir = matches!(
            self.read_tree().get(subject).map(|n| &n.kind),
            Some(NodeKind::Dir(_))
        );
        match (sidecar, is_dir) {
            (Sidecar::Checksum, false) => {
                Ok(Bytes::from(sidecar_text(self.file_checksum(subject)?)))
            }
            (Sidecar::Checksum, true) => Ok(Bytes::from(sidecar_text(Checksum::of(
                &self.index_of(subject)?,
            )))),
            (Sidecar::Index, true) => self.index_of(subject),
            (Sidecar::Index, false) => Err(Errno::ENOENT),
        }
    }

    /// The `.INDEX` of a directory, cached until the tree changes.
    fn index_of(&self, dir: u64) -> FsResult<Bytes> {
        let version = self.version.load(Ordering::Acquire);
        if let Some((v, bytes)) = self.index_cache.lock().expect("index cache lock").get(&dir)
            && *v == version
        {
            return Ok(bytes.clone());
        }
        let files = self.read_tree().files_under(dir).map_err(tree_errno)?;
        let built = index::index_buffer(&files, |checksum, compression| {
            self.decompressed.get_or_compute(checksum, compression, || {
                index::decompressed_checksum(&self.store.path_of(&checksum), compression)
            })
        });
        let bytes = Bytes::from(built.map_err(|e| {
            tracing::error!(dir = %self.read_tree().path(dir), error = %e, "cannot build the .INDEX");
            Errno::EIO
        })?);
        self.index_cache
            .lock()
            .expect("index cache lock")
            .insert(dir, (version, bytes.clone()));
        Ok(bytes)
    }

    /// `.seamfs/stats`: counters of the store tiers and of the mount, as JSON.
    fn stats_json(&self) -> Vec<u8> {
        let stats = serde_json::json!({
            "tiers": self.reads.stats().tiers,
            "tree_entries": self.read_tree().len(),
            "dynamic_inodes": self.inodes.len(),
            "store": self.store.root(),
        });
        let mut out = serde_json::to_vec_pretty(&stats).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The result of viewing `checksum` as `celltype` (see `fs::views`).
    fn view(&self, checksum: Checksum, celltype: CellType) -> FsResult<Checksum> {
        self.views.resolve(&self.db, self.reads.as_ref(), checksum, celltype).map_err(|e| match e {
            ViewError::Missing(_) => Errno::ENOENT,
            ViewError::Impossible(reason) => {
                tracing::info!(%checksum, %celltype, "as-{celltype}/{checksum}: {reason}");
                Errno::EINVAL
            }
            other => {
                tracing::error!(%checksum, %celltype, error = %other, "as-{celltype}/{checksum} failed");
                Errno::EIO
            }
        })
    }

    // ----- extended attributes -----

    /// `user.seamless.checksum` on files and buffers; `user.seamless.celltype` where known.
    pub fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
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

    /// Names of the extended attributes of `ino`.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<String>> {
        let Ok(checksum) = self.content_checksum(ino) else {
            return Ok(Vec::new());
        };
        let mut names = vec![CHECKSUM_XATTR.to_string()];
        if self.known_celltype(checksum).is_some() {
            names.push(CELLTYPE_XATTR.to_string());
        }
        Ok(names)
    }

    fn known_celltype(&self, checksum: Checksum) -> Option<CellType> {
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

    // ----- tree operations -----

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

    fn claim_by_rename(&self, parent: u64, name: &str, target: Dynamic) -> FsResult<()> {
        let source = self.read_tree().lookup(parent, name).map_err(tree_errno)?;
        self.publish(source)?;
        let content = self.load(self.file_checksum(source)?)?;
        let (dir, subject, sidecar) = match target {
            Dynamic::Sidecar(subject, sidecar) => {
                let node = self
                    .read_tree()
                    .get(subject)
                    .cloned()
                    .ok_or(Errno::ENOENT)?;
                (node.parent, node.name, sidecar)
            }
            Dynamic::Claim(dir, subject) => (dir, subject, Sidecar::Checksum),
            Dynamic::Buffer(_) => return Err(Errno::EINVAL),
        };
        let claim = ClaimHandle {
            dir,
            subject,
            sidecar,
            data: Mutex::new(content.as_slice().to_vec()),
        };
        self.check_claim(&claim)?;
        self.mutate(|tree, c| tree.remove(c.conn(), parent, name, false))
            .map(|_| ())
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

    fn writable(&self) -> FsResult<()> {
        if self.options.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// Run one tree mutation in one SQLite transaction (which may record more, e.g. BufferInfo).
    fn mutate<T>(
        &self,
        change: impl FnOnce(&mut Tree, &Conn) -> Result<T, TreeError>,
    ) -> FsResult<T> {
        let out = self
            .db
            .transaction(|c| {
                let mut tree = self.tree.write().expect("tree lock");
                change(&mut tree, c)
            })
            .map_err(tree_errno)?;
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }

    fn read_tree(&self) -> std::sync::RwLockReadGuard<'_, Tree> {
        self.tree.read().expect("tree lock")
    }

    /// Filesystem statistics of the store's disk: (blocks, free, available, files, free files,
    /// block size).
    pub fn statfs(&self) -> FsResult<nix::sys::statvfs::Statvfs> {
        nix::sys::statvfs::statvfs(self.store.root())
    }
}

/// Extended attribute holding a file's checksum.
pub const CHECKSUM_XATTR: &str = "user.seamless.checksum";
/// Extended attribute holding the cell type a buffer is, once known.
pub const CELLTYPE_XATTR: &str = "user.seamless.celltype";

/// `<store>/seamless.db`: the database file the tree, BufferInfo and the HTTP side share.
pub fn database_path(store_root: &Path) -> PathBuf {
    store_root.join("seamless.db")
}

/// Attributes of an immutable buffer (`by-checksum/`, `as-*/`). Content-addressed bytes have no
/// time of their own: the epoch (as in the Nix store) keeps `tar`/`cp -p` of views reproducible.
fn buffer_attr(ino: u64, size: u64) -> Attr {
    Attr {
        ino,
        kind: Kind::File,
        size,
        perm: 0o444,
        mtime: std::time::UNIX_EPOCH,
        ttl: IMMUTABLE_TTL,
    }
}

/// `hex + "\n"`, the Seamless `.CHECKSUM` format.
fn sidecar_text(checksum: Checksum) -> Vec<u8> {
    format!("{checksum}\n").into_bytes()
}

fn sidecar_checksum_text(content: &[u8], sidecar: Sidecar) -> Vec<u8> {
    match sidecar {
        Sidecar::Checksum => content.to_vec(),
        Sidecar::Index => sidecar_text(Checksum::of(content)),
    }
}

/// The fixed directories of the root, by name.
fn fixed_child(name: &str) -> Option<u64> {
    match name {
        inodes::BY_CHECKSUM_NAME => Some(inodes::BY_CHECKSUM),
        inodes::SEAMFS_DIR_NAME => Some(inodes::SEAMFS_DIR),
        _ => name
            .strip_prefix("as-")
            .and_then(|c| c.parse::<CellType>().ok())
            .map(inodes::as_dir),
    }
}

fn fixed_entries() -> Vec<DirEntry> {
    let dir = |ino, name: String| DirEntry {
        ino,
        name,
        kind: Kind::Dir,
    };
    let mut out = vec![dir(inodes::BY_CHECKSUM, inodes::BY_CHECKSUM_NAME.into())];
    out.extend(
        CellType::ALL
            .iter()
            .map(|c| dir(inodes::as_dir(*c), inodes::as_dir_name(*c))),
    );
    out.push(dir(inodes::SEAMFS_DIR, inodes::SEAMFS_DIR_NAME.into()));
    out
}

fn slice(bytes: &Bytes, offset: u64, size: u32) -> Bytes {
    let start = (offset as usize).min(bytes.len());
    let end = start.saturating_add(size as usize).min(bytes.len());
    bytes.slice(start..end)
}

fn tree_errno(e: TreeError) -> Errno {
    if matches!(e, TreeError::Db(_) | TreeError::Database(_)) {
        tracing::error!(error = %e, "tree database error");
    }
    Errno::from_raw(e.errno())
}

fn store_errno(e: StoreError) -> Errno {
    tracing::error!(error = %e, "store error");
    match e {
        StoreError::Io { source, .. } => source.raw_os_error().map_or(Errno::EIO, Errno::from_raw),
        StoreError::Full(_) => Errno::ENOSPC,
        StoreError::Corrupt { .. } => Errno::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(root: &Path) -> Namespace {
        let store = DiskStore::open(root).unwrap();
        let db = Database::open(database_path(root), true).unwrap();
        Namespace::new(store.clone(), Arc::new(store), db, Options::default()).unwrap()
    }

    fn write_file(ns: &Namespace, parent: u64, name: &str, data: &[u8]) -> u64 {
        let (attr, opened) = ns.create(parent, name, 0o644).unwrap();
        for (i, chunk) in data.chunks(7).enumerate() {
            ns.write(opened.fh, (i * 7) as u64, chunk).unwrap();
        }
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
        attr.ino
    }

    fn read_all(ns: &Namespace, ino: u64) -> Vec<u8> {
        let opened = ns.open(ino, libc::O_RDONLY).unwrap();
        let data = ns.read(opened.fh, 0, u32::MAX).unwrap().to_vec();
        ns.release(opened.fh).unwrap();
        data
    }

    fn names(ns: &Namespace, dir: u64) -> Vec<String> {
        let fh = ns.opendir(dir).unwrap();
        let mut out = Vec::new();
        loop {
            let batch = ns.readdir(fh, out.len() as u64).unwrap();
            if batch.is_empty() {
                break;
            }
            out.extend(batch.into_iter().map(|e| e.name));
        }
        ns.releasedir(fh);
        out
    }

    #[test]
    fn write_publish_read_and_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let ino = write_file(&ns, ROOT, "hello.txt", b"hello\n");
        assert_eq!(read_all(&ns, ino), b"hello\n");
        let sidecar = ns.lookup(ROOT, "hello.txt.CHECKSUM").unwrap();
        assert_eq!(sidecar.size, 65);
        assert_eq!(
            read_all(&ns, sidecar.ino),
            b"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\n"
        );
        let buffer = ns
            .lookup(
                inodes::BY_CHECKSUM,
                "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            )
            .unwrap();
        assert_eq!(read_all(&ns, buffer.ino), b"hello\n");
        assert_eq!(
            ns.getxattr(ino, "user.seamless.checksum").unwrap(),
            Checksum::of(b"hello\n").hex().into_bytes()
        );
        assert_eq!(
            ns.lookup(inodes::BY_CHECKSUM, &Checksum::of(b"nope").hex()),
            Err(Errno::ENOENT)
        );
    }

    #[test]
    fn overwrite_in_the_middle_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let ino = write_file(&ns, ROOT, "f", b"abcdefgh");
        let opened = ns.open(ino, libc::O_RDWR).unwrap();
        ns.write(opened.fh, 2, b"XY").unwrap();
        assert_eq!(ns.read(opened.fh, 0, 100).unwrap(), &b"abXYefgh"[..]);
        ns.setattr(ino, None, Some(5), None, Some(opened.fh))
            .unwrap();
        ns.release(opened.fh).unwrap();
        assert_eq!(read_all(&ns, ino), b"abXYe");
        ns.setattr(ino, None, Some(0), None, None).unwrap();
        assert_eq!(ns.getattr(ino).unwrap().size, 0);
        assert_eq!(read_all(&ns, ino), b"");
    }

    #[test]
    fn listing_puts_sidecars_before_subjects() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let d = ns.mkdir(ROOT, "d", 0o755).unwrap().ino;
        write_file(&ns, d, "a", b"x");
        ns.symlink(d, "l", "a").unwrap();
        assert_eq!(names(&ns, d), [".", "..", "a.CHECKSUM", "a", "l"]);
        let root = names(&ns, ROOT);
        assert!(
            root.contains(&"by-checksum".to_string()) && root.contains(&"as-plain".to_string())
        );
        assert_eq!(&root[root.len() - 3..], ["d.INDEX", "d.CHECKSUM", "d"]);
        assert_eq!(
            names(&ns, inodes::BY_CHECKSUM)[2..],
            [Checksum::of(b"x").hex()]
        );
    }

    #[test]
    fn by_checksum_listing_streams_in_small_takes() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let mut expected: Vec<String> = (0..300u32)
            .map(|i| {
                let buffer = Buffer::new(i.to_le_bytes().to_vec());
                ns.store().put(&buffer).unwrap();
                buffer.checksum().hex()
            })
            .collect();
        let fh = ns.opendir(inodes::BY_CHECKSUM).unwrap();
        let mut listed = Vec::new();
        loop {
            // The kernel takes only what fits in its reply; here 7 at a time.
            let batch = ns.readdir(fh, listed.len() as u64).unwrap();
            if batch.is_empty() {
                break;
            }
            listed.extend(batch.into_iter().take(7).map(|e| e.name));
        }
        let mut names: Vec<String> = listed[2..].to_vec();
        names.sort();
        expected.sort();
        assert_eq!(names, expected);
        // A rewind starts over.
        assert_eq!(ns.readdir(fh, 2).unwrap().len(), LISTING_BATCH);
        ns.releasedir(fh);
    }

    #[test]
    fn claims_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        write_file(&ns, ROOT, "f", b"x");
        let good = format!("{}\n", Checksum::of(b"x"));
        let (_, opened) = ns.create(ROOT, "f.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, good.as_bytes()).unwrap();
        assert_eq!(ns.flush(opened.fh), Ok(()));
        ns.release(opened.fh).unwrap();
        let (_, opened) = ns.create(ROOT, "f.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, format!("{}\n", Checksum::of(b"y")).as_bytes())
            .unwrap();
        assert_eq!(ns.flush(opened.fh), Err(Errno::EIO));
        ns.release(opened.fh).unwrap();
        // A claim before its subject exists is checked when the subject is published.
        let (_, opened) = ns.create(ROOT, "g.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, good.as_bytes()).unwrap();
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
        assert_eq!(ns.lookup(ROOT, "g.CHECKSUM").unwrap().size, 65);
        let (_, opened) = ns.create(ROOT, "g", 0o644).unwrap();
        ns.write(opened.fh, 0, b"not x").unwrap();
        assert_eq!(ns.flush(opened.fh), Err(Errno::EIO));
        ns.release(opened.fh).unwrap();
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

    fn claim(ns: &Namespace, parent: u64, name: &str, content: &[u8]) {
        let (_, opened) = ns.create(parent, name, 0o644).unwrap();
        ns.write(opened.fh, 0, &sidecar_text(Checksum::of(content)))
            .unwrap();
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
    }

    #[test]
    fn pending_claims_survive_reopen_and_leave_with_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = {
            let ns = namespace(dir.path());
            let d = ns.mkdir(ROOT, "d", 0o755).unwrap().ino;
            claim(&ns, ROOT, "g.CHECKSUM", b"x");
            claim(&ns, ROOT, "h.CHECKSUM", b"x");
            claim(&ns, d, "e.CHECKSUM", b"x");
            d
        };
        let ns = namespace(dir.path());
        assert_eq!(ns.lookup(ROOT, "g.CHECKSUM").unwrap().size, 65);
        assert_eq!(
            read_all(&ns, ns.lookup(ROOT, "g.CHECKSUM").unwrap().ino),
            sidecar_text(Checksum::of(b"x"))
        );
        // Still checked after the restart, and consumed by the check.
        let (_, opened) = ns.create(ROOT, "g", 0o644).unwrap();
        ns.write(opened.fh, 0, b"not x").unwrap();
        assert_eq!(ns.flush(opened.fh), Err(Errno::EIO));
        ns.release(opened.fh).unwrap();
        write_file(&ns, ROOT, "h", b"x");
        ns.rmdir(ROOT, "d").unwrap();
        assert_eq!(ns.lookup(d, "e.CHECKSUM"), Err(Errno::ENOENT));
        drop(ns);
        let ns = namespace(dir.path());
        assert_eq!(
            ns.lookup(ROOT, "g.CHECKSUM").unwrap().size,
            65,
            "g's own sidecar"
        );
        assert!(ns.claims.get(ROOT, "g").is_none() && ns.claims.get(ROOT, "h").is_none());
        assert!(
            ns.claims.get(d, "e").is_none(),
            "claims of a removed directory are gone"
        );
    }

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
