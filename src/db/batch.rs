//! Group commit of the mount's many small changes. `Database::batched` runs each change in a
//! savepoint of one open transaction on the writer connection; the transaction is committed
//! `WINDOW` after its first change (by the committer thread), as soon as it holds `LIMIT`
//! changes, before any other transaction, before any read (so every connection sees what was
//! acknowledged), on `Database::sync`, and when the database is closed.
//!
//! Why: in WAL mode a commit writes and (at `synchronous=NORMAL`) does not sync, yet it still
//! costs 10-100 µs on this kind of machine against a few µs for a savepoint; untarring small
//! files makes about four tree changes per file. The price: changes acknowledged less than
//! `WINDOW` ago are lost if the process is killed (a power loss could lose them before too);
//! `fsync`/`fsyncdir` in the mount call `Database::sync`, which commits and syncs the WAL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use rusqlite::Connection;

use super::{Conn, DbError, Result, lock};

/// How long a change may wait in the open batch.
pub const WINDOW: Duration = Duration::from_millis(20);
/// A batch is committed at once when it holds this many changes.
const LIMIT: usize = 2000;

/// The writer connection and its open batch.
pub struct Writer {
    pub conn: Connection,
    /// Changes in the open batch transaction (0: none is open).
    pending: usize,
    /// Woken when a batch opens.
    committer: Option<Thread>,
    /// Whether a batch is open, for readers that do not take the lock.
    open: Arc<AtomicBool>,
}

impl Writer {
    pub fn new(conn: Connection, open: Arc<AtomicBool>) -> Self {
        Writer {
            conn,
            pending: 0,
            committer: None,
            open,
        }
    }

    /// Commit the open batch, if any. If the commit fails the batch is rolled back: its changes
    /// are lost (logged), the database stays consistent.
    pub fn commit(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        self.pending = 0;
        self.open.store(false, Ordering::Release);
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            tracing::error!(error = %e, "could not commit a batch of tree changes: they are lost");
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        Ok(())
    }

    /// Run `f` as one change of the open batch (opening one if needed): kept if it returns Ok,
    /// undone if it returns Err.
    pub fn run<T, E: From<DbError>>(
        &mut self,
        f: impl FnOnce(&Conn) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        if self.pending == 0 {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(DbError::from)?;
            self.open.store(true, Ordering::Release);
            if let Some(committer) = &self.committer {
                committer.unpark();
            }
        }
        // Counted before it runs: from here on a transaction is open.
        self.pending += 1;
        self.conn
            .execute_batch("SAVEPOINT change")
            .map_err(DbError::from)?;
        match f(&Conn { conn: &self.conn }) {
            Ok(value) => {
                self.conn
                    .execute_batch("RELEASE change")
                    .map_err(DbError::from)?;
                if self.pending >= LIMIT {
                    self.commit()?;
                }
                Ok(value)
            }
            Err(e) => {
                let _ = self
                    .conn
                    .execute_batch("ROLLBACK TO change; RELEASE change");
                Err(e)
            }
        }
    }
}

/// The thread that commits a batch `WINDOW` after it opened. Dropping it commits what is left.
pub struct Committer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    pub fn start(writer: Arc<Mutex<Writer>>) -> Result<Committer> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let shared = writer.clone();
        let thread = std::thread::Builder::new()
            .name("seamfs-db-commit".into())
            .spawn(move || run(&shared, &flag))
            .map_err(|e| DbError::Schema(format!("cannot start the commit thread: {e}")))?;
        lock(&writer).committer = Some(thread.thread().clone());
        Ok(Committer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn run(writer: &Mutex<Writer>, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        std::thread::park();
        if !stop.load(Ordering::Acquire) {
            std::thread::sleep(WINDOW);
        }
        // An error is logged by `commit`; the next batch starts afresh.
        let _ = lock(writer).commit();
    }
}

#[cfg(test)]
mod tests {
    use crate::db::Database;

    fn count(db: &Database) -> i64 {
        db.read(|c| {
            Ok::<_, crate::db::DbError>(
                c.conn()
                    .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?,
            )
        })
        .unwrap()
    }

    fn insert(db: &Database, v: i64) -> Result<(), crate::db::DbError> {
        db.batched(|c| {
            c.conn().execute("INSERT INTO t VALUES (?1)", [v])?;
            Ok(())
        })
    }

    #[test]
    fn batched_changes_are_seen_by_readers_undone_alone_and_kept_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Database::open(&path, true).unwrap();
        db.transaction(|c| {
            c.conn()
                .execute_batch("CREATE TABLE t (v INTEGER UNIQUE)")?;
            Ok::<_, crate::db::DbError>(())
        })
        .unwrap();
        insert(&db, 1).unwrap();
        insert(&db, 2).unwrap();
        // A failing change (a duplicate) is undone, its neighbours stay.
        assert!(insert(&db, 2).is_err());
        insert(&db, 3).unwrap();
        // A reader on another connection sees every acknowledged change at once.
        assert_eq!(count(&db), 3);
        // The committer commits a batch nobody reads.
        insert(&db, 4).unwrap();
        std::thread::sleep(super::WINDOW * 5);
        let other = Database::open(&path, false).unwrap();
        assert_eq!(count(&other), 4);
        // What is pending when the database closes is committed.
        insert(&db, 5).unwrap();
        drop(db);
        assert_eq!(count(&other), 5);
        let db = Database::open(&path, true).unwrap();
        insert(&db, 6).unwrap();
        db.sync().unwrap();
        assert_eq!(count(&other), 6);
    }
}
