//! Open file and directory handles, and the unpublished writes of tree files.
//!
//! A handle says how reads and writes on one `open()` are served. The unpublished content of a
//! tree file (`Unpublished`) belongs to the inode, not to a handle: every handle on the file sees
//! the same bytes, and the first close publishes them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::kept::KeptFile;
use crate::buffer::Buffer;
use crate::checksum::Checksum;
use crate::store::{Reader, TierWrite};

/// What an open file handle reads from (and writes to).
pub enum Handle {
    /// Immutable bytes: a virtual file's content fixed at open.
    Bytes(Bytes),
    /// A stored buffer: a strong reference in the tiers (`Tier::hold`) while it is open. Read
    /// through the tier's reader: a buffer being downloaded from a remote is served as it
    /// arrives.
    Buffer(Checksum, Reader),
    /// A file of the writable tree.
    TreeFile(TreeFileHandle),
    /// A sidecar being written: a claim about its subject, checked when closed.
    Claim(ClaimHandle),
    /// A directory being listed.
    Dir(Mutex<Listing>),
}

/// An open tree file. `snapshot` caches the published buffer the handle last read from.
pub struct TreeFileHandle {
    pub ino: u64,
    pub writable: bool,
    /// The process that opened it, if known.
    pub opener: Option<u32>,
    /// A `close()` of one of its descriptors was seen (FLUSH): from then on, changes to the file
    /// are committed at once (see `Namespace::set_attrs`).
    pub closed: AtomicBool,
    pub snapshot: Mutex<Option<Buffer>>,
}

/// What a claim is about, the bytes written so far, and the mode and mtime set through the
/// handle (`futimens`, `fchmod`), recorded when the claim is accepted.
pub struct ClaimHandle {
    pub dir: u64,
    pub subject: String,
    pub sidecar: super::inodes::Sidecar,
    pub data: Mutex<Vec<u8>>,
    pub attrs: Mutex<SetAttrs>,
}

/// Mode and mtime a tool set on a sidecar.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SetAttrs {
    pub mode: Option<u32>,
    pub mtime: Option<std::time::SystemTime>,
}

/// A directory listing in progress. `entries` are fixed at `opendir`; `by-checksum/` continues
/// with a stream of stored checksums that is never held whole.
pub struct Listing {
    pub entries: Vec<DirEntry>,
    pub stream: Option<Stream>,
}

/// The streamed part of a listing: entries produced but not yet taken by the kernel are kept in
/// `window`, which starts at stream position `start`.
pub struct Stream {
    pub source: Box<dyn Iterator<Item = DirEntry> + Send>,
    pub window: std::collections::VecDeque<DirEntry>,
    pub start: u64,
}

impl Stream {
    pub fn new(source: Box<dyn Iterator<Item = DirEntry> + Send>) -> Self {
        Stream {
            source,
            window: Default::default(),
            start: 0,
        }
    }

    /// Up to `batch` entries from stream position `position` on; None if `position` lies
    /// before the window (a rewind: the caller restarts the stream).
    pub fn from(&mut self, position: u64, batch: usize) -> Option<Vec<DirEntry>> {
        if position < self.start {
            return None;
        }
        while self.start < position {
            let consumed = self.window.pop_front().or_else(|| self.source.next());
            if consumed.is_none() {
                return Some(Vec::new());
            }
            self.start += 1;
        }
        while self.window.len() < batch {
            match self.source.next() {
                Some(entry) => self.window.push_back(entry),
                None => break,
            }
        }
        Some(self.window.iter().cloned().collect())
    }
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub name: String,
    pub kind: super::attr::Kind,
}

/// Table of open handles.
#[derive(Default)]
pub struct Handles {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Handle>>>,
}

impl Handles {
    pub fn insert(&self, handle: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.open
            .lock()
            .expect("handle table lock")
            .insert(fh, Arc::new(handle));
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Arc<Handle>> {
        self.open
            .lock()
            .expect("handle table lock")
            .get(&fh)
            .cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<Handle>> {
        self.open.lock().expect("handle table lock").remove(&fh)
    }

    /// Whether any handle is open on tree file `ino` (deciding when a removed file's
    /// unpublished writes can be dropped).
    pub fn tree_file_open(&self, ino: u64) -> bool {
        self.open
            .lock()
            .expect("handle table lock")
            .values()
            .any(|h| matches!(&**h, Handle::TreeFile(t) if t.ino == ino))
    }

    /// The open claim handles about `subject` in `dir`.
    pub fn claims_on(&self, dir: u64, subject: &str) -> Vec<Arc<Handle>> {
        self.open
            .lock()
            .expect("handle table lock")
            .values()
            .filter(|h| matches!(&***h, Handle::Claim(c) if c.dir == dir && c.subject == subject))
            .cloned()
            .collect()
    }

    /// Whether process `pid` has tree file `ino` open for writing and not closed yet: its close
    /// commits what the process changes about the file meanwhile (see `Namespace::set_attrs`).
    pub fn tree_file_written_by(&self, ino: u64, pid: u32) -> bool {
        self.open
            .lock()
            .expect("handle table lock")
            .values()
            .any(|h| {
                matches!(&**h, Handle::TreeFile(t) if t.ino == ino && t.writable
                    && t.opener == Some(pid) && !t.closed.load(Ordering::Acquire))
            })
    }

    /// Whether tree file `ino` is open for writing (it is still being written).
    pub fn tree_file_writable(&self, ino: u64) -> bool {
        self.open
            .lock()
            .expect("handle table lock")
            .values()
            .any(|h| matches!(&**h, Handle::TreeFile(t) if t.ino == ino && t.writable))
    }
}

/// A dirty inode's pending content; lock it to read or write.
pub type Slot = Arc<Mutex<Option<Box<dyn TierWrite>>>>;

/// The unpublished writes of tree files, one temp file in the store per dirty inode.
#[derive(Default)]
pub struct Unpublished {
    files: Mutex<HashMap<u64, Slot>>,
    /// When each file's unpublished content last changed (its mtime and ctime until published).
    changed: Mutex<HashMap<u64, std::time::SystemTime>>,
    /// Files closed without being hashed (see `fs::kept`).
    kept: Mutex<HashMap<u64, KeptFile>>,
    /// The published buffer each overlay write edits (see `TierWrite::overlay`).
    bases: Mutex<HashMap<u64, Checksum>>,
}

impl Unpublished {
    /// The slot of `ino` (created empty if needed). Lock it to read or write the pending content.
    pub fn slot(&self, ino: u64) -> Slot {
        self.files
            .lock()
            .expect("unpublished lock")
            .entry(ino)
            .or_default()
            .clone()
    }

    /// Wait until no publish is in progress: a publish holds its file's slot until its tree
    /// row is committed.
    pub fn wait_for_publishes(&self) {
        let slots: Vec<Slot> = self
            .files
            .lock()
            .expect("unpublished lock")
            .values()
            .cloned()
            .collect();
        for slot in slots {
            drop(slot.lock().expect("slot lock"));
        }
    }

    /// The slot of `ino` if it exists.
    pub fn existing(&self, ino: u64) -> Option<Slot> {
        self.files
            .lock()
            .expect("unpublished lock")
            .get(&ino)
            .cloned()
    }

    /// Forget `ino` (its pending writes are dropped, removing the temp file unless it is kept:
    /// see `Namespace::discard_unpublished`).
    pub fn discard(&self, ino: u64) {
        self.files.lock().expect("unpublished lock").remove(&ino);
        self.published(ino);
        self.bases.lock().expect("bases lock").remove(&ino);
    }

    /// The pending write of `ino` is an overlay of the published buffer `base`.
    pub fn set_base(&self, ino: u64, base: Checksum) {
        self.bases.lock().expect("bases lock").insert(ino, base);
    }

    /// The published buffer the pending write of `ino` is an overlay of, if it is one.
    pub fn base(&self, ino: u64) -> Option<Checksum> {
        self.bases.lock().expect("bases lock").get(&ino).copied()
    }

    /// `ino` was closed without being hashed: its pending write is kept in `kept.path`.
    pub fn mark_kept(&self, ino: u64, kept: KeptFile) {
        self.kept.lock().expect("kept lock").insert(ino, kept);
    }

    /// The kept state of `ino`, if it is kept.
    pub fn kept(&self, ino: u64) -> Option<KeptFile> {
        self.kept.lock().expect("kept lock").get(&ino).cloned()
    }

    /// Whether `ino` is kept (closed, not hashed yet).
    pub fn is_kept(&self, ino: u64) -> bool {
        let kept = self.kept.lock().expect("kept lock");
        !kept.is_empty() && kept.contains_key(&ino)
    }

    /// Every kept file.
    pub fn kept_inos(&self) -> Vec<u64> {
        self.kept
            .lock()
            .expect("kept lock")
            .keys()
            .copied()
            .collect()
    }

    /// `ino`'s pending write is being published or dropped: it is no longer kept nor an
    /// overlay. Returns what was kept.
    pub fn take_kept(&self, ino: u64) -> Option<KeptFile> {
        self.bases.lock().expect("bases lock").remove(&ino);
        self.kept.lock().expect("kept lock").remove(&ino)
    }

    /// The unpublished content of `ino` changed now.
    pub fn mark_changed(&self, ino: u64) {
        let now = std::time::SystemTime::now();
        self.changed.lock().expect("changed lock").insert(ino, now);
    }

    /// When the unpublished content of `ino` last changed, if it has any.
    pub fn changed_at(&self, ino: u64) -> Option<std::time::SystemTime> {
        let changed = self.changed.lock().expect("changed lock");
        if changed.is_empty() {
            return None;
        }
        changed.get(&ino).copied()
    }

    /// `ino` was published (or dropped): its tree row has the times again.
    pub fn published(&self, ino: u64) {
        self.changed.lock().expect("changed lock").remove(&ino);
    }

    /// Drop the slot of `ino` if it holds nothing and nobody else holds it, so that the table
    /// only grows with files being written. Race-free: slots are handed out under the same lock.
    pub fn drop_if_clean(&self, ino: u64) {
        let mut files = self.files.lock().expect("unpublished lock");
        let clean = files.get(&ino).is_some_and(|slot| {
            Arc::strong_count(slot) == 1 && slot.try_lock().is_ok_and(|pending| pending.is_none())
        });
        if clean {
            files.remove(&ino);
        }
    }
}
