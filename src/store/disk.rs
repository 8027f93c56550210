//! The disk tier: a Seamless-compatible buffer directory.
//!
//! Layout under the store root:
//! * `buffers/<first 2 hex>/<hex>`: one read-only file per buffer, named by its SHA-256. This is
//!   the prefixed layout seamless-remote's `BufferClient` reads in directory mode (point its
//!   `directory` at `<root>/buffers`).
//! * `tmp/<pid>-<n>-<random>`: files being written. They live on the same filesystem as
//!   `buffers/`, so committing is one `rename(2)`.
//! * `quarantine/<hex>`: corrupt files moved aside by `fsck`.
//!
//! Crash safety: a buffer is written to a temp file, fsynced, its checksum verified, made
//! read-only, renamed into place, and the prefix directory fsynced. A store's own `buffers/`
//! gets all 256 prefix directories at open (one fsync), so that is the only fsync of a
//! directory a new buffer waits for; other folders get them as needed (and an fsync each). A crash at any point leaves
//! either no file under `buffers/` or the whole verified one. Temp files of dead writers are
//! removed when a store is opened (and by `fsck`).
//!
//! A deferred commit (`commit_deferred`, the mount's `close()`) verifies and renames the same
//! way but skips both fsyncs; `sync_deferred` later makes every such buffer durable with one
//! `syncfs`, and the caller keeps a ledger of them so that a power loss in between is repaired
//! (`fs::deferred`).
//!
//! Committing content that is already stored skips the fsync (the stored copy is durable) and
//! drops the temp file on a background thread: freeing a large file's blocks takes long (about
//! 1.2 s per GiB here) and the caller is often a FUSE `close()`. The file stays in `tmp/` under the writer's pid until then, so a crash leaves it to
//! the stale-temp cleaning of the next `open`.
//!
//! Reads map the file (`memmap2`) and hand out a zero-copy `Buffer`. They do not re-hash: the name
//! was verified when the file was written, and `verify`/`fsck` check it on demand.
//!
//! The same type serves a hashserver buffer folder (`open_folder`, the `file://` tier): the
//! buffers are then directly in the folder, in the hashserver's `prefix` layout
//! (`<dir>/<2 hex>/<hex>`, marked by a `.HASHSERVER_PREFIX` file) or its `flat` layout
//! (`<dir>/<hex>`); temp files go to `<dir>/.seamfs-tmp/`, which hashservers and seamless
//! clients ignore. Compressed forms (`<hex>.zst`, `<hex>.gz`) are not read.
//!
//! `open_deployment` uses a running Seamless deployment's buffer directory in place (`mount
//! --buffers`): it must exist, its layout is read as hashserver reads an extra directory's
//! (the sentinel means prefix, otherwise flat) and nothing is written into it at open; opened
//! read-only, nothing is written into it at all (writes and removals are refused).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use bytes::Bytes;

use super::running_hash::RunningHash;
use super::{Counters, Listing, Reader, Stats, StoreError, Tier, TierWrite};
use crate::buffer::Buffer;
use crate::checksum::Checksum;

/// Block size for streamed writes and re-hashing.
const BLOCK: usize = 1 << 20;

/// Where buffer files sit in their directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `<dir>/<first 2 hex>/<hex>` (a store's `buffers/`, hashserver `--layout prefix`).
    Prefix,
    /// `<dir>/<hex>` (hashserver `--layout flat`, the key layout of the `s3://` tier).
    Flat,
}

/// The sentinel file a hashserver writes into a prefix-layout buffer folder.
pub const PREFIX_SENTINEL: &str = ".HASHSERVER_PREFIX";

impl Layout {
    /// The layout of an existing buffer folder: the sentinel or a 2-hex subdirectory means
    /// prefix, a 64-hex file at the top means flat; `None` for an empty folder.
    pub fn detect(dir: &Path) -> Option<Layout> {
        if dir.join(PREFIX_SENTINEL).exists() {
            return Some(Layout::Prefix);
        }
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && name.len() == 2 && u8::from_str_radix(name, 16).is_ok() {
                return Some(Layout::Prefix);
            }
            if !is_dir && Checksum::parse_strict(name).is_some() {
                return Some(Layout::Flat);
            }
        }
        None
    }
}

/// A buffer directory on disk. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct DiskStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `"disk"` for a store's own directory, `"file"` for a buffer directory used as a lower tier.
    name: &'static str,
    root: PathBuf,
    buffers: PathBuf,
    layout: Layout,
    tmp: PathBuf,
    /// Where `quarantine` moves corrupt files.
    quarantine: PathBuf,
    counters: Counters,
    next_temp: AtomicU64,
    stale_removed_at_open: usize,
    /// Bytes of the buffer files (see `Usage`).
    usage: Usage,
    /// Installs and removals since the last `take_changes`, once `track_changes` was called
    /// (by `Bounded`, whose eviction index follows them instead of listing the directory).
    changes: Mutex<Option<Vec<Change>>>,
    /// Writes and removals are refused (`open_deployment` read-only).
    read_only: bool,
}

/// A buffer file that appeared (with its size) or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Installed(Checksum, u64),
    Removed(Checksum),
}

/// The bytes held, counted by a background scan of the prefix directories at open; installs and
/// removals in a prefix directory the scan has passed are counted as they happen (the scan
/// counts the others), so nothing is counted twice.
#[derive(Debug, Default)]
struct Usage {
    bytes: AtomicU64,
    /// The next prefix directory the scan will read (256: done). Held while one is read.
    scan_next: Mutex<u16>,
}

impl Usage {
    /// Count `delta` bytes of a change in prefix directory `prefix`.
    fn change(&self, prefix: u8, grow: bool, size: u64) {
        let next = self.scan_next.lock().expect("usage lock");
        if u16::from(prefix) < *next {
            if grow {
                self.bytes.fetch_add(size, Ordering::Relaxed);
            } else {
                self.bytes.fetch_sub(size, Ordering::Relaxed);
            }
        }
    }

    fn known(&self) -> Option<u64> {
        let done = *self.scan_next.lock().expect("usage lock") > 0xff;
        done.then(|| self.bytes.load(Ordering::Relaxed))
    }
}

/// The directories of a `DiskStore`.
struct Dirs {
    root: PathBuf,
    buffers: PathBuf,
    layout: Layout,
    tmp: PathBuf,
    quarantine: PathBuf,
    read_only: bool,
}

impl Dirs {
    /// A hashserver buffer folder: the buffers directly in it, seamfs's own files hidden.
    fn folder(dir: PathBuf, layout: Layout, read_only: bool) -> Dirs {
        Dirs {
            buffers: dir.clone(),
            layout,
            tmp: dir.join(".seamfs-tmp"),
            quarantine: dir.join(".seamfs-quarantine"),
            root: dir,
            read_only,
        }
    }
}

/// Result of checking a stored file against its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact,
    Missing,
    Corrupt { actual: Checksum },
}

impl DiskStore {
    /// Open (creating if needed) the store at `root`, and remove temp files left by dead writers.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_named(root, "disk")
    }

    /// `open`, with the tier's name in the counters (`"file"` for a lower tier).
    pub fn open_named(root: impl AsRef<Path>, name: &'static str) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        let dirs = Dirs {
            buffers: root.join("buffers"),
            layout: Layout::Prefix,
            tmp: root.join("tmp"),
            quarantine: root.join("quarantine"),
            root,
            read_only: false,
        };
        let store = Self::open_dirs(dirs, name)?;
        store.create_prefix_dirs()?;
        Ok(store)
    }

    /// Create the 256 prefix directories a store's `buffers/` can have, with one fsync, so that
    /// storing a buffer never waits for the fsync that makes a new prefix directory durable (a
    /// fresh store's first files would each pay one).
    fn create_prefix_dirs(&self) -> Result<(), StoreError> {
        let mut created = false;
        for prefix in 0..=0xffu8 {
            let dir = self.inner.buffers.join(format!("{prefix:02x}"));
            match fs::create_dir(&dir) {
                Ok(()) => created = true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io(&dir, e)),
            }
        }
        if created {
            sync_dir(&self.inner.buffers)?;
        }
        Ok(())
    }

    /// A hashserver buffer folder as a tier (see the module doc): its layout is detected, or
    /// `layout` (default prefix, with the hashserver's sentinel) for a new, empty folder.
    pub fn open_folder(dir: impl AsRef<Path>, layout: Option<Layout>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let detected = Layout::detect(&dir);
        if let (Some(found), Some(wanted)) = (detected, layout)
            && found != wanted
        {
            return Err(StoreError::Invalid(format!(
                "the buffer folder {} has the {found:?} layout, not {wanted:?}",
                dir.display()
            )));
        }
        let layout = detected.or(layout).unwrap_or(Layout::Prefix);
        if layout == Layout::Prefix && detected.is_none() {
            let sentinel = dir.join(PREFIX_SENTINEL);
            fs::write(&sentinel, "1\n").map_err(|e| StoreError::io(&sentinel, e))?;
        }
        Self::open_dirs(Dirs::folder(dir, layout, false), "file")
    }

    /// A deployment's existing buffer directory, used in place (see the module doc). Its layout
    /// is the one hashserver gives a directory it did not create: prefix if the
    /// `.HASHSERVER_PREFIX` sentinel (which a prefix-layout hashserver writes at start) or a
    /// prefix subdirectory is there, else flat. Nothing is written at open; `read_only` refuses
    /// every write and removal later too.
    pub fn open_deployment(dir: impl AsRef<Path>, read_only: bool) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        let dir = match dir.canonicalize() {
            Ok(dir) if dir.is_dir() => dir,
            _ => {
                return Err(StoreError::Invalid(format!(
                    "--buffers {}: no such directory (give the buffer directory of a \
                     hashserver; seamfs uses it in place and does not create it)",
                    dir.display()
                )));
            }
        };
        let layout = Layout::detect(&dir).unwrap_or(Layout::Flat);
        Self::open_dirs(Dirs::folder(dir, layout, read_only), "disk")
    }

    fn open_dirs(dirs: Dirs, name: &'static str) -> Result<Self, StoreError> {
        let Dirs {
            root,
            buffers,
            layout,
            tmp,
            quarantine,
            read_only,
        } = dirs;
        let mut removed = 0;
        if !read_only {
            for dir in [&root, &buffers, &tmp] {
                fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
            }
            removed = remove_stale_temps(&tmp)?;
        }
        if removed > 0 {
            tracing::info!(removed, root = %root.display(), "removed temp files of interrupted writes");
        }
        let store = DiskStore {
            inner: Arc::new(Inner {
                name,
                root,
                buffers,
                layout,
                tmp,
                quarantine,
                counters: Counters::default(),
                next_temp: AtomicU64::new(0),
                stale_removed_at_open: removed,
                usage: Usage::default(),
                changes: Mutex::new(None),
                read_only,
            }),
        };
        store.start_usage_scan();
        Ok(store)
    }

    /// Count the bytes held, one prefix directory at a time, on a background thread.
    fn start_usage_scan(&self) {
        let inner = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("seamfs-disk-usage".into())
            .spawn(move || {
                for prefix in 0..=0xffu16 {
                    let Some(inner) = inner.upgrade() else { return };
                    let mut next = inner.usage.scan_next.lock().expect("usage lock");
                    let (dir, last) = match inner.layout {
                        Layout::Prefix => (inner.buffers.join(format!("{prefix:02x}")), prefix),
                        // One directory: counted at once, under the lock.
                        Layout::Flat => (inner.buffers.clone(), 0xff),
                    };
                    let bytes: u64 = fs::read_dir(&dir)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter(|e| {
                            Checksum::parse_strict(&e.file_name().to_string_lossy()).is_some()
                        })
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum();
                    inner.usage.bytes.fetch_add(bytes, Ordering::Relaxed);
                    *next = last + 1;
                    if last == 0xff {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot count the store's bytes (no thread)");
        }
    }

    /// From now on, remember every install and removal for `take_changes`.
    pub fn track_changes(&self) {
        let mut changes = self.inner.changes.lock().expect("changes lock");
        changes.get_or_insert_with(Vec::new);
    }

    /// The installs and removals since the last call, oldest first (none unless tracked).
    pub fn take_changes(&self) -> Vec<Change> {
        let mut changes = self.inner.changes.lock().expect("changes lock");
        changes.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn changed(&self, change: Change) {
        if let Some(changes) = self.inner.changes.lock().expect("changes lock").as_mut() {
            changes.push(change);
        }
    }

    /// Bytes of the stored buffers, once the scan started at `open` has finished.
    pub fn bytes(&self) -> Option<u64> {
        self.inner.usage.known()
    }

    /// Wait until `bytes` is known (tests, `gc`).
    pub fn wait_for_usage(&self) -> u64 {
        loop {
            if let Some(bytes) = self.bytes() {
                return bytes;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Remove the kept writes (`TierWrite::keep`) of earlier processes that `named` does not
    /// name (their owner's record of them was never committed); returns how many.
    pub fn remove_orphan_kept(&self, named: &HashSet<PathBuf>) -> Result<usize, StoreError> {
        remove_orphan_kept(&self.inner.tmp, named)
    }

    /// How many temp files of dead writers `open` removed.
    pub fn stale_temps_removed_at_open(&self) -> usize {
        self.inner.stale_removed_at_open
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The directory seamless-remote's `BufferClient` should be pointed at.
    pub fn buffers_dir(&self) -> &Path {
        &self.inner.buffers
    }

    /// Where the buffer's file is (or would be): usable as a FUSE passthrough backing file.
    pub fn path_of(&self, checksum: &Checksum) -> PathBuf {
        let hex = checksum.hex();
        match self.inner.layout {
            Layout::Prefix => self.inner.buffers.join(&hex[..2]).join(hex),
            Layout::Flat => self.inner.buffers.join(hex),
        }
    }

    /// How the buffer files are laid out.
    pub fn layout(&self) -> Layout {
        self.inner.layout
    }

    /// Start writing a buffer whose content arrives piecewise (e.g. FUSE writes).
    pub fn begin_write(&self) -> Result<PendingWrite, StoreError> {
        self.check_writable()?;
        let n = self.inner.next_temp.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{n}-{:016x}", std::process::id(), rand::random::<u64>());
        let path = self.inner.tmp.join(name);
        // O_EXCL + O_NOFOLLOW: never write through something planted at the temp name.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        // Held until the process ends: tells cleaners in other PID namespaces the file is live.
        lock_exclusive(&file, false).map_err(|e| StoreError::io(&path, e))?;
        Ok(PendingWrite {
            store: self.clone(),
            file,
            path,
            len: 0,
            hash: RunningHash::new(),
            poisoned: None,
            done: false,
            kept: false,
            base: None,
        })
    }

    /// A write kept with `PendingWrite::keep` by an earlier process: `path` must be a kept temp
    /// file of this store. None if it is gone. Its base, if it was an overlay, is given again
    /// with `overlay`.
    pub fn resume(&self, path: &Path) -> Result<Option<PendingWrite>, StoreError> {
        self.check_writable()?;
        let ours = path.parent() == Some(self.inner.tmp.as_path())
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(KEPT_PREFIX));
        if !ours {
            return Ok(None);
        }
        // A commit that failed after verifying the bytes (a full disk at the rename) left the
        // file read-only; it is still this store's own temp file (an installed one is renamed
        // away), so it is made writable again: a daemon that is not root could not open it.
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o200 == 0 => {
                fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                    .map_err(|e| StoreError::io(path, e))?;
            }
            _ => {}
        }
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(path, e)),
        };
        lock_exclusive(&file, false).map_err(|e| StoreError::io(path, e))?;
        let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        Ok(Some(PendingWrite {
            store: self.clone(),
            file,
            path: path.to_path_buf(),
            len,
            hash: RunningHash::lost(),
            poisoned: None,
            done: false,
            kept: true,
            base: None,
        }))
    }

    /// Store everything a reader yields (streamed, never held in RAM whole).
    pub fn put_reader(&self, mut reader: impl Read) -> Result<Checksum, StoreError> {
        let mut pending = self.begin_write()?;
        let mut block = vec![0u8; BLOCK];
        loop {
            let n = match reader.read(&mut block) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("<input stream>", e)),
            };
            let offset = pending.len();
            pending.write_at(offset, &block[..n])?;
        }
        pending.commit(None)
    }

    /// Re-hash a stored file and compare it with its name.
    pub fn verify(&self, checksum: &Checksum) -> Result<Verdict, StoreError> {
        let path = self.path_of(checksum);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Verdict::Missing),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let actual = Checksum::of_reader(file).map_err(|e| StoreError::io(&path, e))?;
        Ok(if actual == *checksum {
            Verdict::Intact
        } else {
            Verdict::Corrupt { actual }
        })
    }

    /// Move a (corrupt) buffer file to `quarantine/<hex>`; returns the new path.
    pub fn quarantine(&self, checksum: &Checksum) -> Result<PathBuf, StoreError> {
        self.check_writable()?;
        let dir = &self.inner.quarantine;
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let from = self.path_of(checksum);
        let to = dir.join(checksum.hex());
        let size = fs::metadata(&from).map(|m| m.len()).unwrap_or(0);
        fs::rename(&from, &to).map_err(|e| StoreError::io(&from, e))?;
        self.inner.usage.change(checksum.as_bytes()[0], false, size);
        self.changed(Change::Removed(*checksum));
        sync_dir(
            from.parent()
                .expect("buffer files live in a prefix directory"),
        )?;
        Ok(to)
    }

    /// Every stored checksum, read lazily one prefix directory at a time (fit for millions).
    /// Names that are not a 64-digit lower-case hex under their own prefix are skipped.
    pub fn iter(&self) -> StoredChecksums {
        StoredChecksums {
            buffers: self.inner.buffers.clone(),
            layout: self.inner.layout,
            next_prefix: 0,
            current: None,
        }
    }

    /// Put `temp` (complete, fsynced, verified) in place as `checksum`. Returns false, leaving
    /// `temp` alone, if the buffer is already stored.
    fn install(
        &self,
        temp: &Path,
        checksum: &Checksum,
        size: u64,
        durable: bool,
        keep_temp: bool,
    ) -> Result<bool, StoreError> {
        let target = self.path_of(checksum);
        let prefix_dir = target
            .parent()
            .expect("buffer files live in a prefix directory");
        self.ensure_prefix_dir(prefix_dir)?;
        // RENAME_NOREPLACE (or a link, which never replaces either): two writers of one
        // checksum never both count it as new.
        let placed = if keep_temp {
            fs::hard_link(temp, &target)
        } else {
            rename_noreplace(temp, &target)
        };
        match placed {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Ok(false),
            Err(e) => return Err(StoreError::io(&target, e)),
        }
        self.inner.usage.change(checksum.as_bytes()[0], true, size);
        self.changed(Change::Installed(*checksum, size));
        if durable {
            sync_dir(prefix_dir)?;
        }
        Ok(true)
    }

    /// Wait until the temp files of commits that found their buffer already stored are removed
    /// (they are removed in the background, see the module doc).
    pub fn wait_for_removals(&self) {
        let (done, finished) = mpsc::channel();
        if remover().send(Removal::Notify(done)).is_ok() {
            let _ = finished.recv();
        }
    }

    /// Whether writes and removals are refused (a deployment's directory opened read-only).
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.inner.read_only {
            return Err(StoreError::io(
                &self.inner.buffers,
                io::Error::from_raw_os_error(libc::EROFS),
            ));
        }
        Ok(())
    }

    fn ensure_prefix_dir(&self, dir: &Path) -> Result<(), StoreError> {
        if dir.is_dir() {
            return Ok(());
        }
        match fs::create_dir(dir) {
            Ok(()) => sync_dir(&self.inner.buffers),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(StoreError::io(dir, e)),
        }
    }
}

impl DiskStore {
    /// A memory map of the buffer's file (zero-copy), without counting a read. Not re-hashed:
    /// the name was verified when the file was written, and `verify`/`fsck` check it on demand.
    pub fn map(&self, checksum: &Checksum) -> Result<Option<Reader>, StoreError> {
        let path = self.path_of(checksum);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let len = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        if len == 0 {
            return Ok(Some(Reader::Bytes(Buffer::with_checksum(
                Bytes::new(),
                *checksum,
            ))));
        }
        // SAFETY: stored files are read-only and never modified in place (writes go through a
        // temp file and rename), so the mapping's bytes cannot change under the reader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| StoreError::io(&path, e))?;
        Ok(Some(Reader::Bytes(Buffer::with_checksum(
            Bytes::from_owner(map),
            *checksum,
        ))))
    }
}

impl Tier for DiskStore {
    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError> {
        let path = self.path_of(checksum);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// A memory map of the file (zero-copy); see `map`.
    fn open_read(&self, checksum: &Checksum) -> Result<Option<Reader>, StoreError> {
        let found = self.map(checksum)?;
        self.inner.counters.lookup(found.is_some());
        Ok(found)
    }

    fn begin_write(&self) -> Result<Box<dyn TierWrite>, StoreError> {
        Ok(Box::new(DiskStore::begin_write(self)?))
    }

    fn resume_write(&self, path: &Path) -> Result<Option<Box<dyn TierWrite>>, StoreError> {
        Ok(self
            .resume(path)?
            .map(|w| Box::new(w) as Box<dyn TierWrite>))
    }

    fn list(&self) -> Listing {
        Box::new(self.iter())
    }

    fn local_path(&self, checksum: &Checksum) -> Option<PathBuf> {
        let path = self.path_of(checksum);
        path.is_file().then_some(path)
    }

    /// The file is renamed into `tmp/` at once (so the name is gone when this returns) and
    /// unlinked in the background: freeing a large file's blocks takes long.
    fn remove(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        self.check_writable()?;
        let path = self.path_of(checksum);
        let size = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let n = self.inner.next_temp.fetch_add(1, Ordering::Relaxed);
        let doomed = self
            .inner
            .tmp
            .join(format!("{}-{n}-removed", std::process::id()));
        match fs::rename(&path, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io(&path, e)),
        }
        self.inner.usage.change(checksum.as_bytes()[0], false, size);
        self.changed(Change::Removed(*checksum));
        remove_later(Some(doomed), None);
        Ok(true)
    }

    fn stats(&self) -> Stats {
        let mut disk = self.inner.counters.snapshot(self.inner.name);
        disk.bytes = self.bytes();
        Stats { tiers: vec![disk] }
    }
}

/// A buffer being written: a temp file in the store. Dropping it without `commit` removes it.
pub struct PendingWrite {
    store: DiskStore,
    file: File,
    path: PathBuf,
    len: u64,
    /// Hash of the bytes written in order so far (on a hasher thread for large files).
    hash: RunningHash,
    /// Why an earlier write or resize failed: the file's bytes are then unknown.
    poisoned: Option<String>,
    done: bool,
    /// Kept across restarts (`keep`): dropping it leaves the file.
    kept: bool,
    /// The stored buffer this write edits, when it is an overlay (see `overlay`).
    base: Option<Base>,
}

/// The buffer an overlay write edits: the write's bytes below `len` that are holes in its temp
/// file were never written, and read as `file`'s bytes.
struct Base {
    file: File,
    /// Shrinks when the write is truncated below it (the bytes past a truncation are gone).
    len: u64,
}

/// Where a kept write lives, and how much of its base (if it is an overlay) still shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub path: PathBuf,
    pub base_len: u64,
}

/// Allocation granularity assumed for overlays: the partial blocks a write touches are filled
/// from the base first, so a data block of the temp file is always whole. 4 KiB is the block
/// size of ext4, xfs and tmpfs pages; a larger block size is refused in `overlay`.
const OVERLAY_BLOCK: u64 = 4096;

/// Name prefix of kept temp files: not a pid, so the stale-temp cleaning leaves them alone.
const KEPT_PREFIX: &str = "kept-";

impl PendingWrite {
    /// Write `data` at `offset` (the file grows as needed; gaps read as zeros). Interrupted
    /// writes are retried; any other failure (a full disk) poisons the pending write.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.check_poison()?;
        let written = self
            .fill_edges(offset, offset + data.len() as u64)
            .and_then(|()| self.file.write_all_at(data, offset));
        if let Err(e) = written {
            return Err(self.poison(e));
        }
        self.hash.wrote(&self.file, offset, data);
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }

    /// `write_at` of shared bytes: the running hash takes these very bytes instead of reading
    /// them back from the file.
    pub fn write_bytes(&mut self, offset: u64, data: Bytes) -> Result<(), StoreError> {
        self.check_poison()?;
        if let Err(e) = self.file.write_all_at(&data, offset) {
            return Err(self.poison(e));
        }
        self.hash.wrote_shared(&self.file, offset, &data);
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }

    /// Truncate or extend (with zeros) to `len` bytes.
    pub fn set_len(&mut self, len: u64) -> Result<(), StoreError> {
        self.check_poison()?;
        self.hash.truncating(len);
        // The base's bytes past a cut are gone, also when the file grows again.
        if let Err(e) = self.file.set_len(len) {
            return Err(self.poison(e));
        }
        if let Some(base) = &mut self.base {
            base.len = base.len.min(len);
        }
        self.len = len;
        Ok(())
    }

    /// Read back what was written so far; returns the number of bytes read (0 at the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let want = buf.len().min(self.len.saturating_sub(offset) as usize);
        let io = |e| StoreError::io(&self.path, e);
        let Some(base) = &self.base else {
            return self.file.read_at(&mut buf[..want], offset).map_err(io);
        };
        let mut done = 0;
        while done < want {
            let at = offset + done as u64;
            let (from_base, end) = self.segment(base, at).map_err(io)?;
            let n = (want - done).min((end - at) as usize);
            let source = if from_base { &base.file } else { &self.file };
            source
                .read_exact_at(&mut buf[done..done + n], at)
                .map_err(io)?;
            done += n;
        }
        Ok(done)
    }

    /// Make this write an overlay of the stored buffer in `base`: its bytes below `len` that
    /// are holes in the temp file (never written) read as `base`'s. A small edit of a large
    /// file then copies nothing; the base is copied in (by the kernel) only when the write is
    /// committed. False (nothing changed) if the temp file's filesystem cannot tell holes from
    /// data, or the write is not a fresh one of exactly `len` bytes of holes (or a resumed
    /// kept one: its base is given again after a restart).
    pub fn overlay(&mut self, base: File, len: u64) -> Result<bool, StoreError> {
        self.check_poison()?;
        let io = |e| StoreError::io(&self.path, e);
        if self.base.is_some() {
            return Ok(false);
        }
        if !self.kept {
            // A fresh write (a resumed one was checked when it began): `len` bytes, all
            // holes, on a filesystem that reports holes.
            let meta = self.file.metadata().map_err(io)?;
            let all_holes = matches!(seek_data(&self.file, 0), Ok(None));
            let block = std::os::unix::fs::MetadataExt::blksize(&meta);
            if self.len != len || meta.len() != len || !all_holes || block > OVERLAY_BLOCK {
                return Ok(false);
            }
        }
        self.hash = RunningHash::lost();
        self.base = Some(Base { file: base, len });
        Ok(true)
    }

    /// Keep the pending bytes across a restart of this process: the temp file is renamed to
    /// `tmp/kept-<tag>` (which the stale-temp cleaning leaves alone) and is no longer removed
    /// when this write is dropped. `DiskStore::resume` opens it again.
    pub fn keep(&mut self, tag: &str) -> Result<Kept, StoreError> {
        self.check_poison()?;
        if !self.kept {
            let to = self.store.inner.tmp.join(format!("{KEPT_PREFIX}{tag}"));
            fs::rename(&self.path, &to).map_err(|e| StoreError::io(&self.path, e))?;
            self.path = to;
            self.kept = true;
            // The running hash is not kept; a hasher thread would only read on.
            self.hash.truncating(0);
            self.hash = RunningHash::lost();
        }
        Ok(Kept {
            path: self.path.clone(),
            base_len: self.base.as_ref().map_or(0, |b| b.len),
        })
    }

    /// Whether committing must re-read the bytes to hash them (they were not written in order).
    pub fn needs_rehash(&self) -> bool {
        self.base.is_some() || !self.hash.covers(self.len)
    }

    /// Where `at` (below `len`) is read from in an overlay: (from the base, up to where).
    fn segment(&self, base: &Base, at: u64) -> io::Result<(bool, u64)> {
        if at >= base.len {
            return Ok((false, self.len));
        }
        match seek_data(&self.file, at)? {
            Some(data) if data == at => Ok((false, seek_hole(&self.file, at)?.min(self.len))),
            Some(data) => Ok((true, data.min(base.len))),
            None => Ok((true, base.len)),
        }
    }

    /// Before writing `[start, end)` into an overlay: the partly written blocks at both ends
    /// that are still holes get the base's bytes first, so that every data block of the temp
    /// file is whole.
    fn fill_edges(&self, start: u64, end: u64) -> io::Result<()> {
        let Some(base) = &self.base else {
            return Ok(());
        };
        let mut edges = vec![];
        if !start.is_multiple_of(OVERLAY_BLOCK) {
            edges.push(start - start % OVERLAY_BLOCK);
        }
        if !end.is_multiple_of(OVERLAY_BLOCK) && edges.last() != Some(&(end - end % OVERLAY_BLOCK))
        {
            edges.push(end - end % OVERLAY_BLOCK);
        }
        for block in edges.into_iter().filter(|b| *b < base.len) {
            if seek_data(&self.file, block)? == Some(block) {
                continue;
            }
            let len = OVERLAY_BLOCK.min(base.len - block) as usize;
            let mut bytes = vec![0u8; len];
            base.file.read_exact_at(&mut bytes, block)?;
            self.file.write_all_at(&bytes, block)?;
        }
        Ok(())
    }

    /// Copy the base's bytes into every hole below its length (in the kernel: no bytes pass
    /// through this process), so the temp file holds the whole buffer.
    fn materialize(&mut self) -> io::Result<()> {
        let Some(base) = &self.base else {
            return Ok(());
        };
        let mut at = 0;
        while at < base.len {
            let data = seek_data(&self.file, at)?.unwrap_or(u64::MAX);
            if data > at {
                let end = data.min(base.len);
                copy_range(&base.file, &self.file, at, end - at)?;
                at = end;
            } else {
                at = seek_hole(&self.file, at)?;
            }
        }
        // Only now: a copy that failed half-way leaves an overlay that still reads right (the
        // blocks copied hold the base's bytes).
        self.base = None;
        Ok(())
    }

    /// The checksum of an overlay read through its base, if that buffer is stored already.
    fn stored_overlay(&self) -> io::Result<Option<Checksum>> {
        if self.base.is_none() {
            return Ok(None);
        }
        let actual = Checksum::of_reader(OverlayReader { write: self, at: 0 })?;
        Ok(self.store.path_of(&actual).exists().then_some(actual))
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Finish: trim the file to the written length, hash (the hasher thread finishes the
    /// tail), check against `known` (if the caller hashed too); content already stored is
    /// dropped in the background without an fsync; new content is fsynced, installed under the
    /// checksum, and the directory fsynced.
    /// Returns the checksum.
    ///
    /// The checksum is always computed here from the bytes that went to the file: for in-order
    /// writes from the running hash of exactly those bytes, otherwise by re-reading the file.
    /// So a name in `buffers/` always matches its content, whatever the caller claims; a pending
    /// write that saw a failed write is refused (`StoreError::Poisoned`).
    pub fn commit(self, known: Option<Checksum>) -> Result<Checksum, StoreError> {
        self.commit_as(known, true)
    }

    /// `commit` without the fsyncs: the buffer is verified and renamed into place, and its
    /// directory is remembered for `sync_deferred`, which makes it durable. Until then a power
    /// loss may leave the name with other bytes, so the caller records the checksum in the
    /// deferred ledger (`store::deferred`), which is verified at the next start.
    pub fn commit_deferred(self, known: Option<Checksum>) -> Result<Checksum, StoreError> {
        self.commit_as(known, false)
    }

    fn commit_as(mut self, known: Option<Checksum>, durable: bool) -> Result<Checksum, StoreError> {
        let actual = self.verify_bytes(known, false)?;
        if self.store.path_of(&actual).exists() {
            // Already stored (and durable): the copy is dropped unsynced, off the caller's path.
            self.drop_duplicate();
            return Ok(actual);
        }
        if durable {
            self.file
                .sync_all()
                .map_err(|e| StoreError::io(&self.path, e))?;
        } else {
            deferred_roots()
                .lock()
                .expect("deferred lock")
                .insert(self.store.inner.buffers.clone());
        }
        // A kept file is linked, not renamed: its name (and the row naming it) stays valid
        // until the caller has committed the buffer's tree row, then the caller removes it
        // (`Namespace::publish`). A crash in between finds the kept file and resumes it.
        let installed = self
            .store
            .install(&self.path, &actual, self.len, durable, self.kept)?;
        if installed {
            self.store.inner.counters.put();
            self.done = true;
        } else {
            // Stored meanwhile by another writer.
            self.drop_duplicate();
        }
        Ok(actual)
    }

    /// Hash and check the bytes as `commit` does, but leave them in the temp file instead of
    /// storing them (a write bound elsewhere: a network tier's staged upload). The file is
    /// removed when the `Sealed` is dropped.
    pub fn seal(mut self, known: Option<Checksum>) -> Result<Sealed, StoreError> {
        let checksum = self.verify_bytes(known, true)?;
        Ok(Sealed {
            pending: self,
            checksum,
        })
    }

    /// Trim to the written length, hash, check against `known`, and make the file read-only.
    /// An overlay's base is copied in first; if that fails (a full disk) and `whole_file` is
    /// not asked for, an overlay whose content is stored already (an edit that wrote the same
    /// bytes again) is hashed through its base instead: it needs no space.
    fn verify_bytes(
        &mut self,
        known: Option<Checksum>,
        whole_file: bool,
    ) -> Result<Checksum, StoreError> {
        self.check_poison()?;
        let path = self.path.clone();
        let io = |e| StoreError::io(&path, e);
        if let Err(e) = self.materialize() {
            return match self.stored_overlay().map_err(io)? {
                Some(actual) if !whole_file => check_known(known, actual),
                _ => Err(io(e)),
            };
        }
        // A failed write may have left bytes past `len` (it was refused above, but trim anyway:
        // the stored file is exactly the bytes counted).
        if self.file.metadata().map_err(io)?.len() != self.len {
            self.hash.truncating(self.len);
            self.file.set_len(self.len).map_err(io)?;
        }
        let actual = self.final_checksum()?;
        check_known(known, actual)?;
        let read_only = fs::Permissions::from_mode(0o444);
        self.file
            .set_permissions(read_only)
            .map_err(|e| StoreError::io(&self.path, e))?;
        Ok(actual)
    }

    /// Remove the temp file of content that is already stored, off the caller's path. A
    /// duplicate of the descriptor goes along, so that closing ours does not free the blocks
    /// here either.
    /// A kept file's name stays: the caller removes it once the tree row is committed (see
    /// `commit_as`); its blocks too are freed off the caller's path, when the remover closes
    /// the duplicate descriptor.
    fn drop_duplicate(&mut self) {
        let file = self.file.try_clone().ok();
        remove_later((!self.kept).then(|| self.path.clone()), file);
        self.done = true;
    }

    /// Give up: the temp file is removed.
    pub fn abort(self) {}

    /// Make every later write fail (as on a full disk): the descriptor becomes read-only.
    #[cfg(test)]
    fn break_writes(&mut self) {
        self.file = File::open(&self.path).unwrap();
    }

    fn check_poison(&self) -> Result<(), StoreError> {
        match &self.poisoned {
            Some(reason) => Err(StoreError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Remember that the file's bytes are unknown; returns the error to report now.
    fn poison(&mut self, e: io::Error) -> StoreError {
        self.poisoned = Some(e.to_string());
        self.hash = RunningHash::lost();
        StoreError::io(&self.path, e)
    }

    /// The running hash if every byte went in order, else a re-read of the file. Waits for
    /// the hasher thread, which meanwhile hashes the tail of the write.
    fn final_checksum(&mut self) -> Result<Checksum, StoreError> {
        let hash = std::mem::replace(&mut self.hash, RunningHash::lost());
        let io = |e| StoreError::io(&self.path, e);
        match hash.finish(self.len).map_err(io)? {
            Some(checksum) => Ok(checksum),
            None => Checksum::of_file(File::open(&self.path).map_err(io)?).map_err(io),
        }
    }
}

/// `actual`, unless the caller expected other bytes.
fn check_known(known: Option<Checksum>, actual: Checksum) -> Result<Checksum, StoreError> {
    match known {
        Some(expected) if expected != actual => Err(StoreError::Corrupt { expected, actual }),
        _ => Ok(actual),
    }
}

/// The bytes of a pending write as a reader (an overlay's unwritten ones from its base).
struct OverlayReader<'a> {
    write: &'a PendingWrite,
    at: u64,
}

impl Read for OverlayReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.write.read_at(self.at, buf).map_err(io::Error::other)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// A verified pending write kept in its temp file (see `PendingWrite::seal`).
pub struct Sealed {
    pending: PendingWrite,
    checksum: Checksum,
}

impl Sealed {
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    pub fn path(&self) -> &Path {
        &self.pending.path
    }

    pub fn len(&self) -> u64 {
        self.pending.len
    }

    pub fn is_empty(&self) -> bool {
        self.pending.len == 0
    }
}

impl TierWrite for PendingWrite {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        PendingWrite::write_at(self, offset, data)
    }

    fn write_bytes(&mut self, offset: u64, data: Bytes) -> Result<(), StoreError> {
        PendingWrite::write_bytes(self, offset, data)
    }

    fn set_len(&mut self, len: u64) -> Result<(), StoreError> {
        PendingWrite::set_len(self, len)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        PendingWrite::read_at(self, offset, buf)
    }

    /// The temp file, unless this is an overlay (its unwritten bytes are the base's).
    fn read_back(&self) -> Option<File> {
        if self.base.is_some() {
            return None;
        }
        self.file.try_clone().ok()
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn commit(self: Box<Self>, expected: Option<Checksum>) -> Result<Checksum, StoreError> {
        PendingWrite::commit(*self, expected)
    }

    fn commit_deferred(
        self: Box<Self>,
        expected: Option<Checksum>,
    ) -> Result<Checksum, StoreError> {
        PendingWrite::commit_deferred(*self, expected)
    }

    fn needs_rehash(&self) -> bool {
        PendingWrite::needs_rehash(self)
    }

    fn keep(&mut self, tag: &str) -> Result<Option<Kept>, StoreError> {
        PendingWrite::keep(self, tag).map(Some)
    }

    fn overlay(&mut self, base: File, len: u64) -> Result<bool, StoreError> {
        PendingWrite::overlay(self, base, len)
    }
}

impl std::fmt::Debug for PendingWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PendingWrite({}, {} bytes)",
            self.path.display(),
            self.len
        )
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        if !self.done
            && !self.kept
            && let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove temp file");
        }
    }
}

/// Work for the background remover thread.
enum Removal {
    /// Unlink a redundant temp file (unless it is unlinked already), then close the descriptor
    /// kept open on it.
    File(Option<PathBuf>, Option<File>),
    /// Reply once everything sent before is done.
    Notify(mpsc::Sender<()>),
}

/// The process's temp file remover (one thread, started on first use).
fn remover() -> &'static mpsc::Sender<Removal> {
    static REMOVER: OnceLock<mpsc::Sender<Removal>> = OnceLock::new();
    REMOVER.get_or_init(|| {
        let (send, receive) = mpsc::channel();
        std::thread::Builder::new()
            .name("seamfs-temp-remover".into())
            .spawn(move || remove_files(receive))
            .expect("start the temp file remover thread");
        send
    })
}

/// Hand a redundant temp file to the remover (removed right here if that thread is gone).
fn remove_later(path: Option<PathBuf>, file: Option<File>) {
    if let Err(mpsc::SendError(removal)) = remover().send(Removal::File(path, file)) {
        removal.run();
    }
}

fn remove_files(receive: mpsc::Receiver<Removal>) {
    for removal in receive {
        removal.run();
    }
}

impl Removal {
    fn run(self) {
        match self {
            Removal::File(path, file) => {
                if let Some(path) = path
                    && let Err(e) = fs::remove_file(&path)
                {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a redundant temp file");
                }
                drop(file);
            }
            Removal::Notify(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Iterator over stored checksums (see `DiskStore::iter`).
pub struct StoredChecksums {
    buffers: PathBuf,
    layout: Layout,
    next_prefix: u16,
    current: Option<(u8, fs::ReadDir)>,
}

impl Iterator for StoredChecksums {
    type Item = Result<Checksum, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((prefix, dir)) = &mut self.current {
                match dir.next() {
                    Some(Ok(entry)) => {
                        let prefix = (self.layout == Layout::Prefix).then_some(*prefix);
                        if let Some(cs) = stored_name(&entry.file_name(), prefix) {
                            return Some(Ok(cs));
                        }
                        continue;
                    }
                    Some(Err(e)) => return Some(Err(StoreError::io(&self.buffers, e))),
                    None => self.current = None,
                }
            }
            if self.next_prefix > 0xff {
                return None;
            }
            let prefix = self.next_prefix as u8;
            let dir = match self.layout {
                Layout::Prefix => {
                    self.next_prefix += 1;
                    self.buffers.join(format!("{prefix:02x}"))
                }
                Layout::Flat => {
                    self.next_prefix = 0x100;
                    self.buffers.clone()
                }
            };
            match fs::read_dir(&dir) {
                Ok(rd) => self.current = Some((prefix, rd)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Some(Err(StoreError::io(&dir, e))),
            }
        }
    }
}

/// The checksum a file name (under prefix directory `prefix`, if any) stands for, if it is one.
fn stored_name(name: &std::ffi::OsStr, prefix: Option<u8>) -> Option<Checksum> {
    let name = name.to_str()?;
    let is_lower_hex = name
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let cs = Checksum::parse_strict(name).filter(|_| is_lower_hex)?;
    prefix.is_none_or(|p| cs.as_bytes()[0] == p).then_some(cs)
}

/// Delete the kept temp files (`tmp/kept-*`) that `named` does not name; returns how many were
/// removed. A crash between keeping a write and committing the row that names it leaves one.
fn remove_orphan_kept(tmp: &Path, named: &HashSet<PathBuf>) -> Result<usize, StoreError> {
    let mut removed = 0;
    for entry in fs::read_dir(tmp).map_err(|e| StoreError::io(tmp, e))? {
        let entry = entry.map_err(|e| StoreError::io(tmp, e))?;
        let path = entry.path();
        let kept = entry.file_name().to_string_lossy().starts_with(KEPT_PREFIX);
        if kept && !named.contains(&path) {
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
    }
    Ok(removed)
}

/// Delete the temp files in `tmp` whose writer is gone; returns how many were removed.
fn remove_stale_temps(tmp: &Path) -> Result<usize, StoreError> {
    let mut removed = 0;
    for entry in fs::read_dir(tmp).map_err(|e| StoreError::io(tmp, e))? {
        let path = entry.map_err(|e| StoreError::io(tmp, e))?.path();
        if is_stale_temp(&path) {
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
    }
    Ok(removed)
}

/// A temp file is stale when the process in its name is gone and nobody holds its lock.
fn is_stale_temp(path: &Path) -> bool {
    let Some(pid) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return false; // not one of ours: leave it alone
    };
    if process_alive(pid) {
        return false;
    }
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    else {
        return false;
    };
    lock_exclusive(&file, true).is_ok()
}

fn process_alive(pid: i32) -> bool {
    // kill(pid, 0) fails with ESRCH only when no such process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// `flock(LOCK_EX)`, optionally non-blocking. The lock lives as long as the open file.
fn lock_exclusive(file: &File, nonblocking: bool) -> io::Result<()> {
    let flags = libc::LOCK_EX | if nonblocking { libc::LOCK_NB } else { 0 };
    // SAFETY: plain syscall on a valid, owned file descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `rename(2)` that fails with EEXIST instead of replacing an existing target.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths; renameat2 only reads them.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The buffer directories that received a deferred commit since the last `sync_deferred`.
fn deferred_roots() -> &'static Mutex<std::collections::BTreeSet<PathBuf>> {
    static ROOTS: OnceLock<Mutex<std::collections::BTreeSet<PathBuf>>> = OnceLock::new();
    ROOTS.get_or_init(Mutex::default)
}

/// Make every buffer committed with `commit_deferred` so far durable: one `syncfs` per
/// filesystem holding such buffers (the files, their names and the prefix directories at once,
/// instead of two fsyncs per buffer). A directory whose sync fails stays remembered.
pub fn sync_deferred() -> Result<(), StoreError> {
    let roots = std::mem::take(&mut *deferred_roots().lock().expect("deferred lock"));
    let mut failed = None;
    for root in &roots {
        let synced = match File::open(root) {
            // A store removed meanwhile has nothing left to make durable.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            opened => opened,
        };
        let synced = synced.and_then(|d| {
            // SAFETY: syncfs only reads the descriptor, which `d` keeps open.
            match unsafe { libc::syncfs(d.as_raw_fd()) } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        });
        if let Err(e) = synced {
            deferred_roots()
                .lock()
                .expect("deferred lock")
                .insert(root.clone());
            failed = Some(StoreError::io(root, e));
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The first data (not a hole) at or after `at`; None if there is none before the end.
fn seek_data(file: &File, at: u64) -> io::Result<Option<u64>> {
    // SAFETY: plain syscall on a valid, owned descriptor; only pread/pwrite use it otherwise,
    // so moving its offset is harmless.
    let r = unsafe { libc::lseek(file.as_raw_fd(), at as libc::off_t, libc::SEEK_DATA) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        _ => Err(e),
    }
}

/// The first hole at or after `at` (the end of the file counts as one).
fn seek_hole(file: &File, at: u64) -> io::Result<u64> {
    // SAFETY: as in `seek_data`.
    let r = unsafe { libc::lseek(file.as_raw_fd(), at as libc::off_t, libc::SEEK_HOLE) };
    if r >= 0 {
        Ok(r as u64)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Copy `len` bytes at `at` from one file into the other at the same offset, in the kernel
/// (`copy_file_range`), through this process where the kernel cannot.
fn copy_range(from: &File, to: &File, at: u64, len: u64) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        let (mut off_in, mut off_out) = ((at + done) as libc::loff_t, (at + done) as libc::loff_t);
        let want = (len - done).min(1 << 30) as usize;
        // SAFETY: valid descriptors and offsets owned by this frame.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off_in,
                to.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        match n {
            n if n > 0 => done += n as u64,
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            _ => {
                let e = io::Error::last_os_error();
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP)
                ) {
                    return Err(e);
                }
                let mut block = vec![0u8; BLOCK.min((len - done) as usize)];
                from.read_exact_at(&mut block, at + done)?;
                to.write_all_at(&block, at + done)?;
                done += block.len() as u64;
            }
        }
    }
    Ok(())
}

/// fsync a directory, so renames and creations in it are durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let buf = Buffer::new(b"hello\n".to_vec());
        store.put(&buf).unwrap();
        let cs = buf.checksum();
        let hex = cs.hex();
        let path = dir.path().join("buffers").join(&hex[..2]).join(&hex);
        assert_eq!(store.path_of(&cs), path);
        assert_eq!(fs::read(&path).unwrap(), b"hello\n");
        assert_eq!(store.get(&cs).unwrap().unwrap().as_slice(), b"hello\n");
        assert_eq!(store.length(&cs).unwrap(), Some(6));
        assert_eq!(store.verify(&cs).unwrap(), Verdict::Intact);
        assert_eq!(
            store.iter().map(Result::unwrap).collect::<Vec<_>>(),
            vec![cs]
        );
        let empty = Buffer::new(Vec::new());
        store.put(&empty).unwrap();
        assert_eq!(store.get(&empty.checksum()).unwrap().unwrap().len(), 0);
    }

    #[test]
    fn out_of_order_writes_are_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let mut w = store.begin_write().unwrap();
        w.write_at(3, b"lo\n").unwrap();
        w.write_at(0, b"hel").unwrap();
        let mut back = [0u8; 6];
        assert_eq!(w.read_at(0, &mut back).unwrap(), 6);
        assert_eq!(&back, b"hello\n");
        assert_eq!(w.commit(None).unwrap(), Checksum::of(b"hello\n"));
    }

    /// A stored buffer of `len` pseudo-random bytes; returns it and its file, opened.
    fn stored(store: &DiskStore, len: usize, seed: u8) -> (Vec<u8>, File) {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
            .collect();
        let checksum = store.put(&Buffer::new(data.clone())).unwrap();
        (data, File::open(store.path_of(&checksum)).unwrap())
    }

    fn read_back(w: &PendingWrite) -> Vec<u8> {
        let mut back = vec![0xeeu8; w.len() as usize];
        assert_eq!(w.read_at(0, &mut back).unwrap(), back.len());
        back
    }

    #[test]
    fn an_overlay_edits_a_stored_buffer_without_copying_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let len = 3 * OVERLAY_BLOCK as usize + 1000;
        let (mut expected, base) = stored(&store, len, 7);
        let mut w = store.begin_write().unwrap();
        w.set_len(len as u64).unwrap();
        assert!(w.overlay(base, len as u64).unwrap());
        // Partial blocks at both ends, and one inside a single block.
        w.write_at(4090, b"across a block edge").unwrap();
        w.write_at(9000, b"x").unwrap();
        expected[4090..4109].copy_from_slice(b"across a block edge");
        expected[9000] = b'x';
        assert!(w.needs_rehash());
        assert_eq!(read_back(&w), expected);
        // Only the written blocks are data in the temp file: the base was not copied.
        let data_blocks = (0..len as u64)
            .step_by(OVERLAY_BLOCK as usize)
            .filter(|b| seek_data(&w.file, *b).unwrap() == Some(*b))
            .count();
        assert_eq!(data_blocks, 3);
        // A cut drops the base's bytes past it, also when the file grows again.
        w.set_len(10_000).unwrap();
        w.set_len(len as u64 + 10).unwrap();
        expected.truncate(10_000);
        expected.resize(len + 10, 0);
        assert_eq!(read_back(&w), expected);
        w.write_at(len as u64 + 5, b"end").unwrap();
        expected[len + 5..len + 8].copy_from_slice(b"end");
        let checksum = w.commit(None).unwrap();
        assert_eq!(checksum, Checksum::of(&expected));
        assert_eq!(fs::read(store.path_of(&checksum)).unwrap(), expected);
    }

    #[test]
    fn a_kept_write_survives_the_process_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let len = 5 * OVERLAY_BLOCK as usize;
        let (mut expected, base) = stored(&store, len, 3);
        let base_path = store.path_of(&Checksum::of(&expected));
        let mut w = store.begin_write().unwrap();
        w.set_len(len as u64).unwrap();
        assert!(w.overlay(base, len as u64).unwrap());
        w.write_at(5000, b"edit").unwrap();
        expected[5000..5004].copy_from_slice(b"edit");
        let kept = w.keep("42").unwrap();
        assert_eq!(kept.path, dir.path().join("tmp").join("kept-42"));
        assert_eq!(kept.base_len, len as u64);
        drop(w);
        assert!(kept.path.exists(), "dropping a kept write leaves its file");
        // The stale-temp cleaning of a new opening leaves kept files alone.
        let store = DiskStore::open(dir.path()).unwrap();
        assert!(
            store
                .resume(&dir.path().join("elsewhere"))
                .unwrap()
                .is_none()
        );
        let mut w = store.resume(&kept.path).unwrap().unwrap();
        assert!(
            w.overlay(File::open(&base_path).unwrap(), kept.base_len)
                .unwrap()
        );
        assert_eq!(read_back(&w), expected);
        w.write_at(0, b"more").unwrap();
        expected[..4].copy_from_slice(b"more");
        let checksum = w.commit_deferred(None).unwrap();
        assert_eq!(checksum, Checksum::of(&expected));
        assert_eq!(fs::read(store.path_of(&checksum)).unwrap(), expected);
        // Linked, not renamed: a crash before the caller commits its tree row finds it.
        assert_eq!(
            fs::read(&kept.path).unwrap(),
            expected,
            "the kept name stays"
        );
    }

    /// A kept write whose content is already stored leaves its name to the caller (which
    /// removes it once the tree row is committed): the background remover never takes it, so
    /// the next edit of the same file can be kept under that name at once.
    #[test]
    fn a_kept_duplicate_leaves_its_name_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let len = 2 * OVERLAY_BLOCK as usize;
        let (data, base) = stored(&store, len, 5);
        let mut w = store.begin_write().unwrap();
        w.set_len(len as u64).unwrap();
        assert!(w.overlay(base, len as u64).unwrap());
        w.write_at(10, &data[10..20]).unwrap();
        let kept = w.keep("7").unwrap();
        assert_eq!(w.commit_deferred(None).unwrap(), Checksum::of(&data));
        assert!(kept.path.exists(), "the kept name stays");
        fs::remove_file(&kept.path).unwrap(); // as the caller does after its commit
        let mut next = store.begin_write().unwrap();
        next.write_at(0, b"the next edit").unwrap();
        assert_eq!(next.keep("7").unwrap().path, kept.path);
        store.wait_for_removals();
        assert_eq!(fs::read(&kept.path).unwrap(), b"the next edit");
    }

    /// A kept write whose commit failed after its bytes were verified (and made read-only)
    /// is resumed writable, so that a daemon that is not root can go on writing it.
    #[test]
    fn a_kept_write_left_read_only_by_a_failed_commit_resumes_writable() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let mut w = store.begin_write().unwrap();
        w.write_at(0, b"verified").unwrap();
        let kept = w.keep("9").unwrap();
        drop(w);
        fs::set_permissions(&kept.path, fs::Permissions::from_mode(0o444)).unwrap();
        let mut w = store.resume(&kept.path).unwrap().unwrap();
        let mode = fs::metadata(&kept.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        w.write_at(8, b", then written").unwrap();
        assert_eq!(read_back(&w), b"verified, then written");
    }

    /// Write `data` in order in odd-sized pieces; past 1 MiB a hasher thread takes over.
    fn write_in_order(w: &mut PendingWrite, data: &[u8], from: usize) {
        for (i, piece) in data[from..].chunks(300_001).enumerate() {
            w.write_at((from + i * 300_001) as u64, piece).unwrap();
        }
    }

    #[test]
    fn large_writes_are_hashed_in_the_background_or_reread() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();

        let mut w = store.begin_write().unwrap();
        write_in_order(&mut w, &data, 0);
        assert_eq!(
            w.commit(Some(Checksum::of(&data))).unwrap(),
            Checksum::of(&data)
        );

        // An overwrite of bytes already handed to the hasher.
        let mut w = store.begin_write().unwrap();
        write_in_order(&mut w, &data, 0);
        w.write_at(100, b"changed").unwrap();
        let mut changed = data.clone();
        changed[100..107].copy_from_slice(b"changed");
        assert_eq!(w.commit(None).unwrap(), Checksum::of(&changed));

        // A truncation below the hashed end, then the rest written again in order.
        let mut w = store.begin_write().unwrap();
        write_in_order(&mut w, &data[..3_000_000], 0);
        w.set_len(2_000_000).unwrap();
        write_in_order(&mut w, &data, 2_000_000);
        assert_eq!(w.commit(None).unwrap(), Checksum::of(&data));

        // A refused claim leaves nothing behind.
        let mut w = store.begin_write().unwrap();
        write_in_order(&mut w, &data, 0);
        let err = w.commit(Some(Checksum::of(&changed))).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }));
        assert_eq!(store.iter().count(), 2);
    }

    #[test]
    fn shared_chunks_are_hashed_as_written_mixed_with_read_back_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let shared = Bytes::from(data.clone());
        let pieces: Vec<(usize, usize)> = (0..data.len())
            .step_by(300_001)
            .map(|at| (at, (at + 300_001).min(data.len())))
            .collect();

        // Every other piece shared, the rest copied: the hasher reads back only the latter.
        let mut w = store.begin_write().unwrap();
        for (i, &(from, to)) in pieces.iter().enumerate() {
            if i % 2 == 0 {
                w.write_bytes(from as u64, shared.slice(from..to)).unwrap();
            } else {
                w.write_at(from as u64, &data[from..to]).unwrap();
            }
        }
        assert_eq!(
            w.commit(Some(Checksum::of(&data))).unwrap(),
            Checksum::of(&data)
        );

        // A shared chunk out of order (a gap) falls back to re-reading the file.
        let mut w = store.begin_write().unwrap();
        let (from, to) = pieces[5];
        w.write_bytes(from as u64, shared.slice(from..to)).unwrap();
        for &(from, to) in &pieces {
            w.write_bytes(from as u64, shared.slice(from..to)).unwrap();
        }
        assert_eq!(w.commit(None).unwrap(), Checksum::of(&data));
    }

    #[test]
    fn committing_a_stored_buffer_removes_the_temp_file_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        for _ in 0..3 {
            let mut w = store.begin_write().unwrap();
            w.write_at(0, b"same").unwrap();
            assert_eq!(w.commit(None).unwrap(), Checksum::of(b"same"));
        }
        store.wait_for_removals();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(
            store
                .get(&Checksum::of(b"same"))
                .unwrap()
                .unwrap()
                .as_slice(),
            b"same"
        );
    }

    #[test]
    fn a_failed_write_poisons_the_pending_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let mut w = store.begin_write().unwrap();
        w.write_at(0, b"first part, ").unwrap();
        w.break_writes();
        assert!(matches!(
            w.write_at(12, b"lost"),
            Err(StoreError::Io { .. })
        ));
        // Even a later write that would succeed, and the commit, are refused.
        assert!(matches!(w.write_at(12, b"x"), Err(StoreError::Poisoned(_))));
        assert!(matches!(w.set_len(3), Err(StoreError::Poisoned(_))));
        let err = w.commit(None).unwrap_err();
        assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
        assert_eq!(store.iter().count(), 0);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn usage_counts_installs_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        store.put(&Buffer::new(vec![1u8; 1000])).unwrap();
        let reopened = DiskStore::open(dir.path()).unwrap();
        assert_eq!(reopened.wait_for_usage(), 1000);
        reopened.put(&Buffer::new(vec![2u8; 500])).unwrap();
        reopened.put(&Buffer::new(vec![2u8; 500])).unwrap();
        assert_eq!(reopened.bytes(), Some(1500));
        assert!(reopened.remove(&Checksum::of(&[1u8; 1000])).unwrap());
        assert_eq!(reopened.bytes(), Some(500));
        reopened.wait_for_removals();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn wrong_known_checksum_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let mut w = store.begin_write().unwrap();
        w.write_at(0, b"abc").unwrap();
        let err = w.commit(Some(Checksum::of(b"abd"))).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }));
        assert_eq!(store.iter().count(), 0);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_deployment_folder_is_used_in_place() {
        // No sentinel: flat, as hashserver reads a directory; the sentinel is not written.
        let flat = tempfile::tempdir().unwrap();
        let store = DiskStore::open_deployment(flat.path(), false).unwrap();
        assert_eq!(store.layout(), Layout::Flat);
        let cs = store.put(&Buffer::new(b"flat\n".to_vec())).unwrap();
        assert!(flat.path().join(cs.hex()).is_file());
        assert!(!flat.path().join(PREFIX_SENTINEL).exists());

        let prefix = tempfile::tempdir().unwrap();
        fs::write(prefix.path().join(PREFIX_SENTINEL), "1\n").unwrap();
        let store = DiskStore::open_deployment(prefix.path(), false).unwrap();
        assert_eq!(store.layout(), Layout::Prefix);
        let cs = store.put(&Buffer::new(b"prefix\n".to_vec())).unwrap();
        let hex = cs.hex();
        assert!(prefix.path().join(&hex[..2]).join(&hex).is_file());

        // Read-only: readable, nothing created, writes and removals refused.
        let before: Vec<_> = fs::read_dir(prefix.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        fs::remove_dir(prefix.path().join(".seamfs-tmp")).unwrap();
        let store = DiskStore::open_deployment(prefix.path(), true).unwrap();
        assert_eq!(store.get(&cs).unwrap().unwrap().as_slice(), b"prefix\n");
        let refused = store.put(&Buffer::new(b"new".to_vec())).unwrap_err();
        assert!(refused.to_string().contains("Read-only"), "{refused}");
        assert!(store.remove(&cs).is_err());
        assert!(!prefix.path().join(".seamfs-tmp").exists());
        assert_eq!(
            fs::read_dir(prefix.path()).unwrap().count(),
            before.len() - 1
        );

        let missing = prefix.path().join("nope");
        assert!(DiskStore::open_deployment(&missing, false).is_err());
    }
}
