//! Kept files: the mount's dirty inodes, hashed lazily.
//!
//! A large file (`LAZY_MIN` bytes or more) whose writes did not arrive in order (an edit in the
//! middle, a write past the end, a `truncate -s`) is not hashed when it is closed: hashing would
//! read the whole file on the caller's `close()`. Its pending write stays in its temp file,
//! renamed to `tmp/kept-<ino>` in the store (`TierWrite::keep`), and a row of `seamfs_kept`
//! names it, with the stored buffer it edits if it is an overlay (`TierWrite::overlay`: an edit
//! of a large published file copies nothing until it is hashed). The row is committed with the
//! tree row's new mtime in one transaction, so a kill -9 loses nothing `close()` acknowledged.
//! Readers read the pending write; `stat` shows its size.
//!
//! A kept file is hashed and published (`Namespace::publish`) when:
//! * its checksum is asked for: `F.CHECKSUM`, the checksum xattr, an `.INDEX` or directory
//!   checksum, a `by-checksum/` or `as-<celltype>/` name that is not stored (yet), `fsync`, a
//!   claim about it, a rename onto a claim;
//! * it has been idle for `IDLE` and nobody has it open for writing (the background hasher, `start_hasher`),
//!   so most checksums are ready when asked, and the database, the buffer port and a push
//!   target get the buffer soon after the last write, as for any other file once published.
//!
//! Until then the tree row keeps the previous checksum (and gc keeps the buffers of both the
//! row and the kept file's base). Small files and files written in order are hashed as they are
//! written and published at close as before: keeping them would gain nothing.
//!
//! Restart: `Namespace::new` resumes every kept file from its row (`Tier::resume_write`) and the
//! hasher publishes it soon after; rows of files removed meanwhile are dropped with their temp
//! file. Power loss: a kept file was not fsynced, so like any unsynced file it may come back
//! with some of its last writes missing (an overlay's missing blocks read as the base's), or
//! lost (its row), never with a wrong checksum: the checksum is computed from the bytes there
//! when it is hashed. `fsync` hashes and commits the file, then makes it durable.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use rusqlite::{Connection, OptionalExtension, params};

use super::error::FsResult;
use super::namespace::Namespace;
use super::ticker::Ticker;
use super::tree::{AttrChanges, NodeKind};
use crate::checksum::Checksum;
use crate::store::{Kept, TierWrite};

/// Files from this size on are kept unhashed at close when their writes were not in order, and
/// edited as overlays of their stored buffer (smaller ones cost little to re-hash or copy).
pub const LAZY_MIN: u64 = 4 << 20;
/// How long a kept file must be left alone before the background hasher publishes it.
pub const IDLE: Duration = Duration::from_secs(3);
/// How often the background hasher looks for idle kept files.
const TICK: Duration = Duration::from_secs(1);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS seamfs_kept (
    ino INTEGER NOT NULL PRIMARY KEY,
    path TEXT NOT NULL,
    base CHAR(64),
    base_len INTEGER NOT NULL DEFAULT 0
)";

/// A kept file in memory: its temp file, and the mtime recorded with it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptFile {
    pub path: PathBuf,
    pub mtime: SystemTime,
}

/// A row of `seamfs_kept`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub ino: u64,
    pub path: PathBuf,
    /// The stored buffer an overlay edits, and how much of it still shows.
    pub base: Option<(Checksum, u64)>,
}

const SELECT: &str = "SELECT ino, path, base, base_len FROM seamfs_kept";

/// Every kept file's row (creating the table on first use).
pub fn load(conn: &Connection) -> rusqlite::Result<Vec<Row>> {
    conn.execute_batch(SCHEMA)?;
    let mut statement = conn.prepare(SELECT)?;
    let rows = statement.query_map([], Row::read)?;
    rows.collect()
}

/// The row of `ino`, if it is kept.
fn load_one(conn: &Connection, ino: u64) -> rusqlite::Result<Option<Row>> {
    conn.prepare_cached(&format!("{SELECT} WHERE ino = ?1"))?
        .query_row([ino], Row::read)
        .optional()
}

impl Row {
    fn read(r: &rusqlite::Row) -> rusqlite::Result<Row> {
        let base: Option<String> = r.get(2)?;
        let base_len: u64 = r.get(3)?;
        Ok(Row {
            ino: r.get(0)?,
            path: PathBuf::from(r.get::<_, String>(1)?),
            base: base
                .as_deref()
                .and_then(Checksum::parse_strict)
                .map(|b| (b, base_len)),
        })
    }
}

fn record(
    conn: &Connection,
    ino: u64,
    kept: &Kept,
    base: Option<Checksum>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO seamfs_kept (ino, path, base, base_len) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        ino,
        kept.path.to_string_lossy(),
        base.map(|b| b.hex()),
        kept.base_len
    ])?;
    Ok(())
}

/// Remove a kept temp file (logged if it cannot be; already gone is fine).
pub(super) fn remove_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a kept file");
    }
}

/// Drop the row of `ino`, in the caller's transaction.
pub fn forget(conn: &Connection, ino: u64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM seamfs_kept WHERE ino = ?1")?
        .execute([ino])?;
    Ok(())
}

impl Namespace {
    /// A written file was closed: keep it unhashed if that saves reading it whole (see the
    /// module doc), else publish it.
    pub(super) fn close_written(&self, ino: u64) -> FsResult<()> {
        if self.keep(ino)? {
            Ok(())
        } else {
            self.publish(ino)
        }
    }

    /// Keep the pending write of `ino` (and record it); false if it should be published now.
    fn keep(&self, ino: u64) -> FsResult<bool> {
        let Some(slot) = self.unpublished.existing(ino) else {
            return Ok(false);
        };
        let mut slot = slot.lock().expect("slot lock");
        let Some(pending) = slot.as_mut() else {
            return Ok(false);
        };
        if pending.len() < LAZY_MIN || !pending.needs_rehash() {
            return Ok(false);
        }
        // A file removed while open lives in memory only; a claim about it is checked at close.
        let Some(node) = self.read_tree().get(ino).cloned() else {
            return Ok(false);
        };
        if self.claims.get(node.parent, &node.name).is_some() {
            return Ok(false);
        }
        if self
            .unpublished
            .kept(ino)
            .is_some_and(|k| k.mtime == node.mtime)
        {
            return Ok(true);
        }
        // A write that cannot be kept (or failed: poisoned) is published, which reports it.
        let Ok(Some(kept)) = pending.keep(&ino.to_string()) else {
            return Ok(false);
        };
        let base = self.unpublished.base(ino);
        self.mutate(|tree, c| {
            record(c.conn(), ino, &kept, base)?;
            let mtime = AttrChanges {
                mtime: Some(node.mtime),
                ..AttrChanges::default()
            };
            tree.set_attr(c.conn(), ino, &mtime)
        })?;
        let mtime = node.mtime;
        self.unpublished.mark_kept(
            ino,
            KeptFile {
                path: kept.path,
                mtime,
            },
        );
        tracing::debug!(ino, size = pending.len(), "kept unhashed");
        Ok(true)
    }

    /// Hash and publish every kept file; returns how many there were.
    pub(super) fn publish_kept(&self) -> FsResult<usize> {
        let kept = self.unpublished.kept_inos();
        for ino in &kept {
            self.publish(*ino)?;
        }
        Ok(kept.len())
    }

    /// `find`, run again after every kept file is published if it found nothing: a checksum
    /// asked for may be the content of a kept file, or of one the background hasher is
    /// publishing right now (no longer marked kept: waited for).
    pub(super) fn after_kept<T>(&self, find: impl Fn() -> FsResult<T>) -> FsResult<T> {
        match find() {
            Err(Errno::ENOENT) => {
                self.publish_kept()?;
                self.unpublished.wait_for_publishes();
                find()
            }
            found => found,
        }
    }

    /// Publish the kept files nobody wrote to for `idle` and nobody has open for writing;
    /// returns how many were published.
    pub fn hash_idle(&self, idle: Duration) -> usize {
        let now = SystemTime::now();
        let mut published = 0;
        for ino in self.unpublished.kept_inos() {
            let quiet = self
                .unpublished
                .changed_at(ino)
                .is_none_or(|t| now.duration_since(t).is_ok_and(|d| d >= idle));
            if !quiet || self.handles.tree_file_writable(ino) {
                continue;
            }
            match self.publish(ino) {
                Ok(()) => published += 1,
                Err(e) => tracing::warn!(ino, error = %e, "could not hash a kept file"),
            }
        }
        published
    }

    /// Drop the pending writes of `ino` (a removed file), its kept temp file and row included.
    pub(super) fn discard_unpublished(&self, ino: u64) {
        let kept = self.unpublished.take_kept(ino);
        self.unpublished.discard(ino);
        if let Some(kept) = kept {
            self.forget_kept(ino, &kept);
        }
    }

    /// Remove a kept file's temp file and row (its write was dropped or failed).
    pub(super) fn forget_kept(&self, ino: u64, kept: &KeptFile) {
        remove_file(&kept.path);
        self.forget_row(ino);
    }

    pub(super) fn forget_row(&self, ino: u64) {
        if let Err(e) = self.transaction(|c| Ok(forget(c.conn(), ino)?)) {
            tracing::warn!(ino, error = %e, "could not drop the row of a kept file");
        }
    }

    /// At start: the kept files of the last run become pending writes again (see the module
    /// doc). A row whose file is gone, or whose inode is no longer a file, is dropped; a kept
    /// file without a row is removed.
    pub(super) fn resume_kept(&self, rows: Vec<Row>) {
        // A kept file no row names was kept just before a crash, its row never committed: its
        // `close()` never returned, so it goes. (A row's file stays, even one left for a
        // person to look at below.)
        let named = rows.iter().map(|row| row.path.clone()).collect();
        match self.store.remove_orphan_kept(&named) {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "removed kept files whose row was never committed"),
            Err(e) => tracing::warn!(error = %e, "could not look for orphaned kept files"),
        }
        for row in rows {
            let is_file = matches!(
                self.read_tree().get(row.ino).map(|n| &n.kind),
                Some(NodeKind::File { .. })
            );
            let resumed = if is_file {
                self.resume_one(&row)
            } else {
                Ok(None)
            };
            let mtime = self.read_tree().get(row.ino).map(|n| n.mtime);
            match (resumed, mtime) {
                (Ok(Some(write)), Some(mtime)) => {
                    *self.unpublished.slot(row.ino).lock().expect("slot lock") = Some(write);
                    self.unpublished.mark_changed(row.ino);
                    let kept = KeptFile {
                        path: row.path,
                        mtime,
                    };
                    self.unpublished.mark_kept(row.ino, kept);
                    tracing::info!(ino = row.ino, "resumed a kept file; it is hashed soon");
                }
                (Err(e), _) => {
                    // Left where it is, for a person to look at; the row goes.
                    tracing::error!(
                        path = %row.path.display(), error = %e,
                        "a kept file could not be resumed: the file shows its previous content"
                    );
                    self.forget_row(row.ino);
                }
                _ => {
                    let kept = KeptFile {
                        path: row.path,
                        mtime: SystemTime::UNIX_EPOCH,
                    };
                    self.forget_kept(row.ino, &kept);
                }
            }
        }
    }

    /// A kept file whose hash or commit failed (a full disk while its base was copied in)
    /// still has its temp file and row: open it again, so that nothing `close()` acknowledged
    /// is lost (the hasher tries again later). None if it cannot be.
    pub(super) fn reopen_kept(&self, ino: u64, kept: KeptFile) -> Option<Box<dyn TierWrite>> {
        let row = self
            .db
            .read(|c| -> Result<_, crate::db::DbError> { Ok(load_one(c.conn(), ino)?) })
            .ok()??;
        match self.resume_one(&row) {
            Ok(Some(write)) => {
                self.unpublished.mark_changed(ino);
                self.unpublished.mark_kept(ino, kept);
                Some(write)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(
                    path = %row.path.display(), error = %e,
                    "a kept file could not be reopened: it is left there, the file shows its \
                     previous content"
                );
                None
            }
        }
    }

    /// A kept file whose buffer `checksum` was committed but whose tree row could not be (a
    /// full disk): kept again as an edit of that buffer (an overlay of it: nothing copied), its
    /// row naming that buffer, so that a restart resumes it too. None (logged) if that fails:
    /// the file then shows its previous content.
    pub(super) fn keep_committed(
        &self,
        ino: u64,
        checksum: Checksum,
        kept: KeptFile,
    ) -> Option<Box<dyn TierWrite>> {
        let mut write = match self.edit_of(ino, checksum) {
            Ok(write) => write,
            Err(e) => {
                tracing::error!(ino, %checksum, error = %e, "a kept file could not be kept again: it shows its previous content");
                return None;
            }
        };
        let again = match write.keep(&ino.to_string()) {
            Ok(Some(again)) => again,
            result => {
                tracing::error!(ino, %checksum, ?result, "a kept file could not be kept again: it shows its previous content");
                return None;
            }
        };
        let base = self.unpublished.base(ino);
        // The buffer was stored without an fsync, and its ledger row went with the failed
        // transaction: recorded again, so that a power loss before the next sync is repaired.
        let recorded = self.transaction(|c| {
            record(c.conn(), ino, &again, base)?;
            Ok(self.deferred.record(c.conn(), &checksum)?)
        });
        match recorded {
            Ok(ledger) => self.deferred.recorded(ledger),
            Err(e) => tracing::error!(
                ino, %checksum, error = %e,
                "the row of a kept file could not be updated: until it is hashed, a restart \
                 shows its content before the last edits"
            ),
        }
        self.unpublished.mark_changed(ino);
        let mtime = kept.mtime;
        self.unpublished.mark_kept(
            ino,
            KeptFile {
                path: again.path,
                mtime,
            },
        );
        Some(write)
    }

    fn resume_one(&self, row: &Row) -> anyhow::Result<Option<Box<dyn TierWrite>>> {
        let Some(mut write) = self.tiers().resume_write(&row.path)? else {
            return Ok(None);
        };
        if let Some((base, len)) = row.base {
            let path = self
                .tiers()
                .local_path(&base)
                .ok_or_else(|| anyhow::anyhow!("the buffer {base} it edits is not stored"))?;
            let file = std::fs::File::open(&path)?;
            anyhow::ensure!(
                write.overlay(file, len)?,
                "the buffer {base} it edits cannot be read under it"
            );
            self.unpublished.set_base(row.ino, base);
        }
        Ok(Some(write))
    }
}

/// Start the background hasher: it publishes kept files once idle (see the module doc), until
/// dropped.
pub fn start_hasher(ns: &Arc<Namespace>) -> std::io::Result<Ticker> {
    Ticker::start("seamfs-kept-hasher", ns, TICK, |ns| {
        ns.hash_idle(IDLE);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::inodes;
    use crate::fs::test_support::{namespace, read_all};
    use crate::fs::tree::ROOT;

    /// Content a little over `LAZY_MIN`, different per `seed`.
    fn big(seed: u8) -> Vec<u8> {
        (0..LAZY_MIN as usize + 12_345)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
            .collect()
    }

    fn create(ns: &Namespace, name: &str, data: &[u8]) -> u64 {
        let (attr, opened) = ns.create(ROOT, name, 0o644).unwrap();
        for (i, chunk) in data.chunks(1 << 20).enumerate() {
            ns.write(opened.fh, (i << 20) as u64, chunk).unwrap();
        }
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
        attr.ino
    }

    /// open + pwrite + close.
    fn pwrite(ns: &Namespace, ino: u64, offset: u64, data: &[u8]) {
        let opened = ns.open(ino, libc::O_WRONLY).unwrap();
        ns.write(opened.fh, offset, data).unwrap();
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
    }

    fn edit(expected: &mut Vec<u8>, offset: usize, data: &[u8]) {
        if expected.len() < offset + data.len() {
            expected.resize(offset + data.len(), 0);
        }
        expected[offset..offset + data.len()].copy_from_slice(data);
    }

    fn sidecar(ns: &Namespace, name: &str) -> Checksum {
        let attr = ns.lookup(ROOT, &format!("{name}.CHECKSUM")).unwrap();
        Checksum::from_sidecar(&read_all(ns, attr.ino)).unwrap()
    }

    fn kept_rows(ns: &Namespace) -> i64 {
        ns.db
            .read(|c| -> Result<i64, crate::db::DbError> {
                Ok(c.conn()
                    .query_row("SELECT count(*) FROM seamfs_kept", [], |r| r.get(0))?)
            })
            .unwrap()
    }

    #[test]
    fn an_edit_of_a_big_file_is_kept_and_hashed_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let mut expected = big(1);
        let ino = create(&ns, "f", &expected);
        assert!(
            !ns.unpublished.is_kept(ino),
            "written in order: hashed at close"
        );
        pwrite(&ns, ino, 5_000_000, b"XY");
        edit(&mut expected, 5_000_000, b"XY");
        assert!(ns.unpublished.is_kept(ino));
        assert_eq!(kept_rows(&ns), 1);
        assert_eq!(ns.getattr(ino).unwrap().size, expected.len() as u64);
        assert_eq!(read_all(&ns, ino), expected);
        // A by-checksum name of the new content finds it: the kept file is hashed for it.
        let by_checksum = ns.lookup(inodes::BY_CHECKSUM, &Checksum::of(&expected).hex());
        assert_eq!(by_checksum.unwrap().size, expected.len() as u64);
        assert!(!ns.unpublished.is_kept(ino));
        assert_eq!(kept_rows(&ns), 0);
        // A write far past the end (sparse), then the sidecar and the xattr.
        pwrite(&ns, ino, 64 << 20, b"z");
        edit(&mut expected, 64 << 20, b"z");
        assert!(ns.unpublished.is_kept(ino));
        assert_eq!(sidecar(&ns, "f"), Checksum::of(&expected));
        assert_eq!(
            ns.getxattr(ino, "user.seamless.checksum").unwrap(),
            Checksum::of(&expected).hex().into_bytes()
        );
        assert_eq!(read_all(&ns, ino), expected);
        // truncate -s: sparse, kept, and right.
        ns.setattr(ino, None, Some(100 << 20), None, None).unwrap();
        expected.resize(100 << 20, 0);
        assert!(ns.unpublished.is_kept(ino));
        assert_eq!(ns.hash_idle(Duration::ZERO), 1);
        assert_eq!(sidecar(&ns, "f"), Checksum::of(&expected));
    }

    #[test]
    fn a_checksum_asked_while_the_hasher_works_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let ns = std::sync::Arc::new(namespace(dir.path()));
        let mut expected = big(4);
        let ino = create(&ns, "f", &expected);
        // A write far past the end: 1 GiB to hash, long enough to ask in the middle.
        pwrite(&ns, ino, 1 << 30, b"end");
        edit(&mut expected, 1 << 30, b"end");
        assert!(ns.unpublished.is_kept(ino));
        let hasher = {
            let ns = ns.clone();
            std::thread::spawn(move || ns.hash_idle(Duration::ZERO))
        };
        // Once the hasher has taken the file, it is no longer marked kept.
        while ns.unpublished.is_kept(ino) {
            std::thread::yield_now();
        }
        let checksum = Checksum::of(&expected);
        let by_checksum = ns.lookup(inodes::BY_CHECKSUM, &checksum.hex()).unwrap();
        assert_eq!(by_checksum.size, expected.len() as u64);
        assert_eq!(sidecar(&ns, "f"), checksum);
        assert_eq!(hasher.join().unwrap(), 1);
    }

    #[test]
    fn kept_files_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = big(2);
        let ino = {
            let ns = namespace(dir.path());
            let ino = create(&ns, "f", &expected);
            pwrite(&ns, ino, 12_345, b"edited");
            assert!(ns.unpublished.is_kept(ino));
            ino
        };
        edit(&mut expected, 12_345, b"edited");
        let kept = dir.path().join("tmp").join(format!("kept-{ino}"));
        assert!(kept.exists());
        // What a crash between keeping a write and committing its row leaves.
        let orphan = dir.path().join("tmp").join("kept-999999");
        std::fs::write(&orphan, b"never acknowledged").unwrap();
        let ns = namespace(dir.path());
        assert!(
            !orphan.exists(),
            "a kept file without a row is removed at start"
        );
        assert!(ns.unpublished.is_kept(ino));
        assert_eq!(read_all(&ns, ino), expected);
        // Not idle yet (resumed just now); then hashed by the background hasher's pass.
        assert_eq!(ns.hash_idle(Duration::from_secs(3600)), 0);
        assert_eq!(ns.hash_idle(Duration::ZERO), 1);
        assert!(!kept.exists());
        assert_eq!(kept_rows(&ns), 0);
        assert_eq!(sidecar(&ns, "f"), Checksum::of(&expected));
    }

    #[test]
    fn rename_and_unlink_of_a_kept_file() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let mut expected = big(3);
        let ino = create(&ns, "a", &expected);
        pwrite(&ns, ino, 1, b"1");
        edit(&mut expected, 1, b"1");
        ns.rename(ROOT, "a", ROOT, "b", 0).unwrap();
        assert!(ns.unpublished.is_kept(ino));
        assert_eq!(sidecar(&ns, "b"), Checksum::of(&expected));
        pwrite(&ns, ino, 2, b"2");
        let kept = ns.unpublished.kept(ino).unwrap();
        ns.unlink(ROOT, "b").unwrap();
        assert!(!kept.path.exists());
        assert_eq!(kept_rows(&ns), 0);
        assert!(!ns.unpublished.is_kept(ino));
    }

    #[test]
    fn gc_leaves_kept_files_and_their_bases() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let mut expected = big(4);
        let ino = create(&ns, "g", &expected);
        pwrite(&ns, ino, 3 << 20, b"gc");
        edit(&mut expected, 3 << 20, b"gc");
        let other = create(&ns, "other", b"other");
        // (As the mount's gc does: the journal of closed files committed first.)
        ns.save_unsaved().unwrap();
        let report = ns.store().gc(crate::store::GcOptions::default()).unwrap();
        // (Only the empty buffer, stored when the files were created, is unreferenced.)
        assert!(
            report.removed.iter().all(|(_, size)| *size == 0),
            "{report:?}"
        );
        assert!(ns.unpublished.is_kept(ino));
        assert_eq!(read_all(&ns, ino), expected);
        assert_eq!(sidecar(&ns, "g"), Checksum::of(&expected));
        assert_eq!(read_all(&ns, other), b"other");
    }
}
