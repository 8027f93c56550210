//! Durability of published files without an fsync per `close()`.
//!
//! Publishing a written file commits its buffer with `TierWrite::commit_deferred` (verified and
//! renamed into place, not fsynced) and, in the same SQLite transaction as the tree row, adds
//! its checksum to the ledger table `seamfs_deferred`. So every committed tree row whose buffer
//! may not be on disk yet is named in the ledger, atomically with the row itself, whatever part
//! of the WAL a power loss keeps.
//!
//! * A syncer thread makes the buffers durable in groups: one `syncfs` of the store's
//!   filesystem (`store::disk::sync_deferred`) about every `SYNC_INTERVAL` while files are
//!   being published. The ledger rows covered by it are deleted by the next tree transaction
//!   (`trim`), so the syncer itself never writes SQLite.
//! * `fsync()`/`fdatasync()` of a file fsyncs its buffer file and directory, and `fsync()` of a
//!   directory syncs every deferred buffer at once (`Deferred::sync_now`), each before the WAL
//!   is synced: durable on return.
//! * At start (`recover`), every buffer still in the ledger is re-hashed. One that a power loss
//!   left missing or with other bytes is removed from the store, and the files naming it become
//!   empty (a file never shows bytes that do not match its checksum; a file that was not
//!   fsynced may be lost, as on any filesystem). Then the ledger is cleared.
//!
//! A kill -9 of the daemon loses nothing here: the kernel still has the page cache, so the
//! check at the next start finds every buffer whole.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, params};

use crate::checksum::Checksum;
use crate::db::{Database, DbError};
use crate::store::{Store, StoreError, disk};

use super::tree;

/// How often the syncer makes published buffers durable while files are being published.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The ledger. Ids are given by the mount (`Deferred::record`), not by AUTOINCREMENT, whose
/// `sqlite_sequence` row would add a page to every publish's transaction.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS seamfs_deferred (
    id INTEGER PRIMARY KEY,
    checksum CHAR(64) NOT NULL
)";

/// Add ledger row `id` naming `checksum`, in the caller's transaction.
fn insert(conn: &Connection, id: i64, checksum: &Checksum) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO seamfs_deferred (id, checksum) VALUES (?1, ?2)")?
        .execute(params![id, checksum.hex()])?;
    Ok(())
}

/// Add ledger rows naming `checksums` (buffers of files replayed from the journal of closed
/// files, see `fs::journal`), in the caller's transaction.
pub(super) fn relist(conn: &Connection, checksums: &[Checksum]) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    let last: i64 = conn.query_row(
        "SELECT coalesce(max(id), 0) FROM seamfs_deferred",
        [],
        |r| r.get(0),
    )?;
    for (id, checksum) in (last + 1..).zip(checksums) {
        insert(conn, id, checksum)?;
    }
    Ok(())
}

/// Replay the journal of closed files (`fs::journal`), then check every buffer in the ledger
/// (see the module doc) and clear it. Returns the number of buffers that were lost.
pub fn recover(store: &Store) -> anyhow::Result<usize> {
    let db = store.db();
    if !db.is_writable() {
        return Ok(0);
    }
    super::journal::replay(db)?;
    let listed: Vec<String> = db.transaction(|c| {
        c.conn().execute_batch(SCHEMA)?;
        let listed = {
            let mut stmt = c
                .conn()
                .prepare("SELECT DISTINCT checksum FROM seamfs_deferred")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()?
        };
        if listed.is_empty() {
            renew_schema(c.conn())?;
        }
        Ok::<_, DbError>(listed)
    })?;
    if listed.is_empty() {
        return Ok(0);
    }
    let mut lost = Vec::new();
    for hex in &listed {
        let Some(checksum) = Checksum::parse_strict(hex) else {
            continue;
        };
        if !is_whole(store, &checksum)? {
            lost.push(checksum);
        }
    }
    let empty = tree::empty_checksum();
    for checksum in &lost {
        store.tiers().remove(checksum)?;
        if *checksum == empty {
            store.tiers().begin_write()?.commit(Some(empty))?;
        }
    }
    let emptied = db.transaction(|c| {
        let mut emptied = 0;
        for checksum in lost.iter().filter(|c| **c != empty) {
            emptied += c.conn().execute(
                "UPDATE seamfs_tree SET checksum = ?1, size = 0 WHERE checksum = ?2",
                params![empty.hex(), checksum.hex()],
            )?;
        }
        c.conn().execute("DELETE FROM seamfs_deferred", [])?;
        renew_schema(c.conn())?;
        Ok::<_, DbError>(emptied)
    })?;
    if !lost.is_empty() {
        tracing::error!(
            buffers = lost.len(),
            files = emptied,
            "buffers published without fsync were lost or damaged before they reached the disk \
             (power loss?): they were removed and the files naming them are now empty"
        );
    }
    tracing::debug!(checked = listed.len(), "deferred buffers checked");
    Ok(lost.len())
}

/// Replace a ledger table from before the mount gave the ids (AUTOINCREMENT) by the current
/// one; the ledger is empty when this runs.
fn renew_schema(conn: &Connection) -> rusqlite::Result<()> {
    let sql: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'seamfs_deferred'",
        [],
        |r| r.get(0),
    )?;
    if sql.contains("AUTOINCREMENT") {
        conn.execute_batch("DROP TABLE seamfs_deferred")?;
        conn.execute_batch(SCHEMA)?;
    }
    Ok(())
}

/// Whether the stored buffer exists and hashes to its name. It is hashed as a stream from the
/// disk tier, where a ledgered buffer was committed; one no longer there may still be whole in
/// another tier (a RAM tier, a remote it was pushed to).
fn is_whole(store: &Store, checksum: &Checksum) -> Result<bool, StoreError> {
    match store.verify(checksum)? {
        disk::Verdict::Intact => Ok(true),
        disk::Verdict::Corrupt { .. } => Ok(false),
        disk::Verdict::Missing => Ok(store
            .tiers()
            .get(checksum)?
            .is_some_and(|b| Checksum::of(b.bytes()) == *checksum)),
    }
}

/// Where the ledger stands: the last id given, ids recorded (committed), made durable, and
/// deleted.
#[derive(Default)]
struct Marks {
    given: AtomicI64,
    recorded: AtomicI64,
    synced: AtomicI64,
    trimmed: AtomicI64,
}

struct Shared {
    marks: Marks,
    stop: Mutex<bool>,
    wake: Condvar,
    /// Serialises syncs, so that `synced` only moves past what a finished sync covered.
    syncing: Mutex<()>,
}

impl Shared {
    /// Make everything recorded so far durable.
    fn sync(&self) -> Result<(), StoreError> {
        let _one = self.syncing.lock().expect("sync lock");
        let upto = self.marks.recorded.load(Ordering::Acquire);
        if upto <= self.marks.synced.load(Ordering::Acquire) {
            return Ok(());
        }
        disk::sync_deferred()?;
        self.marks.synced.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }
}

/// The mount's deferred durability: the syncer thread and the ledger marks.
pub struct Deferred {
    shared: Arc<Shared>,
    db: Database,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Deferred {
    pub fn start(db: Database) -> std::io::Result<Deferred> {
        let shared = Arc::new(Shared {
            marks: Marks {
                given: AtomicI64::new(last_id(&db)),
                ..Marks::default()
            },
            stop: Mutex::new(false),
            wake: Condvar::new(),
            syncing: Mutex::new(()),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("seamfs-syncer".into())
            .spawn(move || syncer(&for_thread))?;
        Ok(Deferred {
            shared,
            db,
            thread: Some(thread),
        })
    }

    /// Record, in the caller's transaction, that `checksum` was committed without an fsync.
    /// Returns the ledger row's id, to pass to `recorded` once the transaction has committed.
    /// Ids grow in commit order: they are given inside the transaction, which holds the
    /// database's only writer.
    pub fn record(&self, conn: &Connection, checksum: &Checksum) -> rusqlite::Result<i64> {
        let id = self.shared.marks.given.fetch_add(1, Ordering::AcqRel) + 1;
        insert(conn, id, checksum)?;
        Ok(id)
    }

    /// A ledger id for a buffer published through the journal of closed files (`fs::journal`):
    /// its row is written by `ledger` in the transaction that saves the journaled file.
    pub fn give_id(&self) -> i64 {
        self.shared.marks.given.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Write ledger row `id` (from `give_id`) naming `checksum`, in the caller's transaction,
    /// unless a finished sync already made that buffer durable.
    pub fn ledger(&self, conn: &Connection, id: i64, checksum: &Checksum) -> rusqlite::Result<()> {
        if id <= self.shared.marks.synced.load(Ordering::Acquire) {
            return Ok(());
        }
        insert(conn, id, checksum)
    }

    /// The ledger row `id` is committed.
    pub fn recorded(&self, id: i64) {
        self.shared.marks.recorded.fetch_max(id, Ordering::AcqRel);
    }

    /// Make every published buffer durable now (`fsync`, `fsyncdir`).
    pub fn sync_now(&self) -> Result<(), StoreError> {
        self.shared.sync()
    }

    /// Delete, in the caller's transaction, the ledger rows a finished sync covered. Call
    /// `trimmed` with the result once that transaction has committed.
    pub fn trim(&self, conn: &Connection) -> rusqlite::Result<Option<i64>> {
        let synced = self.shared.marks.synced.load(Ordering::Acquire);
        if synced <= self.shared.marks.trimmed.load(Ordering::Acquire) {
            return Ok(None);
        }
        conn.prepare_cached("DELETE FROM seamfs_deferred WHERE id <= ?1")?
            .execute([synced])?;
        Ok(Some(synced))
    }

    pub fn trimmed(&self, upto: i64) {
        self.shared.marks.trimmed.fetch_max(upto, Ordering::AcqRel);
    }
}

impl Drop for Deferred {
    /// A clean stop: everything durable and the ledger empty, so the next start checks nothing.
    fn drop(&mut self) {
        *self.shared.stop.lock().expect("stop lock") = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let done = self
            .shared
            .sync()
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                let upto = self.shared.marks.synced.load(Ordering::Acquire);
                if upto <= self.shared.marks.trimmed.load(Ordering::Acquire) {
                    return Ok(());
                }
                self.db
                    .transaction(|c| {
                        c.conn()
                            .execute("DELETE FROM seamfs_deferred WHERE id <= ?1", [upto])?;
                        Ok::<_, DbError>(())
                    })
                    .map_err(anyhow::Error::from)
            });
        if let Err(e) = done {
            tracing::warn!(error = %e, "published buffers stay in the deferred ledger (checked at the next start)");
        }
    }
}

/// The largest ledger id in the table (0 if none; `recover` leaves it empty when it can write).
fn last_id(db: &Database) -> i64 {
    db.read(|c| {
        let sql = "SELECT coalesce(max(id), 0) FROM seamfs_deferred";
        Ok::<_, DbError>(c.conn().query_row(sql, [], |r| r.get(0))?)
    })
    .unwrap_or(0)
}

fn syncer(shared: &Shared) {
    let mut stop = shared.stop.lock().expect("stop lock");
    while !*stop {
        stop = shared
            .wake
            .wait_timeout(stop, SYNC_INTERVAL)
            .expect("stop lock")
            .0;
        if *stop {
            break;
        }
        drop(stop);
        if let Err(e) = shared.sync() {
            tracing::error!(error = %e, "could not make published buffers durable (will retry)");
        }
        stop = shared.stop.lock().expect("stop lock");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::fs::test_support::{namespace, read_all, write_file};
    use crate::fs::tree::ROOT;

    fn ledger(db: &Database) -> Vec<String> {
        db.read(|c| {
            let mut stmt = c
                .conn()
                .prepare("SELECT checksum FROM seamfs_deferred ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok::<_, DbError>(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .unwrap()
    }

    #[test]
    fn published_buffers_are_ledgered_until_synced() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        write_file(&ns, ROOT, "a", b"first");
        let db = ns.store().db().clone();
        // Written with the file's rows when the journal is committed (see `fs::journal`).
        assert!(ledger(&db).is_empty());
        ns.save_unsaved().unwrap();
        assert_eq!(ledger(&db), vec![Checksum::of(b"first").hex()]);
        // fsync: synced now; the next tree transaction deletes the covered rows.
        ns.sync().unwrap();
        write_file(&ns, ROOT, "b", b"second");
        ns.save_unsaved().unwrap();
        assert_eq!(ledger(&db), vec![Checksum::of(b"second").hex()]);
        drop(ns);
        // A clean stop leaves nothing to check.
        assert!(ledger(&Database::open(dir.path().join("seamless.db"), false).unwrap()).is_empty());
    }

    #[test]
    fn a_ledger_from_before_given_ids_is_checked_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        write_file(&namespace(dir.path()), ROOT, "a", b"kept");
        let db = Database::open(dir.path().join("seamless.db"), true).unwrap();
        let old = format!(
            "DROP TABLE seamfs_deferred;
             CREATE TABLE seamfs_deferred (id INTEGER PRIMARY KEY AUTOINCREMENT, checksum CHAR(64) NOT NULL);
             INSERT INTO seamfs_deferred (checksum) VALUES ('{}');",
            Checksum::of(b"kept").hex()
        );
        db.transaction(|c| Ok::<_, DbError>(c.conn().execute_batch(&old)?))
            .unwrap();
        drop(db);
        let ns = namespace(dir.path());
        let db = ns.store().db().clone();
        assert!(ledger(&db).is_empty(), "checked and cleared");
        let sql: String = db
            .read(|c| {
                let sql = "SELECT sql FROM sqlite_master WHERE name = 'seamfs_deferred'";
                Ok::<_, DbError>(c.conn().query_row(sql, [], |r| r.get(0))?)
            })
            .unwrap();
        assert!(!sql.contains("AUTOINCREMENT"), "{sql}");
        assert_eq!(read_all(&ns, ns.lookup(ROOT, "a").unwrap().ino), b"kept");
        write_file(&ns, ROOT, "b", b"new");
        write_file(&ns, ROOT, "c", b"newer");
        ns.save_unsaved().unwrap();
        // Both, in order (only `new` may be gone already, if the group sync ran in between).
        let expected = [Checksum::of(b"new").hex(), Checksum::of(b"newer").hex()];
        let rows = ledger(&db);
        assert!(!rows.is_empty() && expected.ends_with(&rows), "{rows:?}");
    }

    #[test]
    fn a_buffer_damaged_before_its_sync_is_removed_and_its_files_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let damaged = write_file(&ns, ROOT, "damaged", b"lost in a power cut");
        write_file(&ns, ROOT, "copy", b"lost in a power cut");
        write_file(&ns, ROOT, "whole", b"made it to the disk");
        drop(ns);
        // What a power loss can leave: ledger rows kept by the WAL, a buffer file whose data
        // never reached the disk (here: other bytes of the same length).
        let lost = Checksum::of(b"lost in a power cut");
        let kept = Checksum::of(b"made it to the disk");
        let db = Database::open(dir.path().join("seamless.db"), true).unwrap();
        db.transaction(|c| {
            insert(c.conn(), 1, &lost)?;
            insert(c.conn(), 2, &kept)?;
            Ok::<_, DbError>(())
        })
        .unwrap();
        drop(db);
        let hex = lost.hex();
        let path = dir.path().join("buffers").join(&hex[..2]).join(&hex);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, vec![0u8; 19]).unwrap();

        let ns = namespace(dir.path());
        assert_eq!(read_all(&ns, damaged), b"");
        let copy = ns.lookup(ROOT, "copy").unwrap();
        assert_eq!(copy.size, 0);
        assert_eq!(read_all(&ns, copy.ino), b"");
        let whole = ns.lookup(ROOT, "whole").unwrap();
        assert_eq!(read_all(&ns, whole.ino), b"made it to the disk");
        assert!(!path.exists(), "the damaged buffer is removed");
        assert!(ledger(ns.store().db()).is_empty());
    }
}
