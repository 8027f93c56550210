//! The Seamless database: the SQLite schema of seamless-database 2.1 and the queries on it.
//!
//! `Database` is a cheap, cloneable handle on one `seamless.db` file: one writer connection
//! behind a mutex and a small pool of read-only connections (WAL journal, so reads never wait
//! for the writer). Every record type of the protocol has a typed method, here for one-shot use
//! and on `Conn` for use inside `Database::read` / `Database::transaction` (so a caller can
//! commit its own tables and, say, a BufferInfo together). The rules the Python server enforces
//! when it stores a record (buffer-info slot types, execution-record identity, bucket kinds,
//! expression constraints, the 409 conflicts) live in `records.rs`, next to the SQL.

mod checkpoint;
pub mod client;
pub mod pyjson;
mod records;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use serde_json::{Map, Value};

use crate::checksum::Checksum;

pub use records::{BUCKET_KINDS, BucketProbe, Conflict, ExpressionKey, IrreproducibleRecord};

/// Number of read-only connections in the pool (more than the runtime's worker threads).
const READERS: usize = 4;

/// A JSON object, as buffer info, execution records and freshness tokens are stored.
pub type JsonMap = Map<String, Value>;

/// What can go wrong with a database operation.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The record breaks a rule of the Python server (bad slot type, constraint violation …).
    #[error("invalid record: {0}")]
    Invalid(String),
    /// The record contradicts what is stored (the protocol's 409 answers, and one 404).
    #[error("{}", .0.message())]
    Conflict(Conflict),
    /// The transaction ran but could not be committed (a full disk, an I/O error): SQLite
    /// rolled all of it back.
    #[error("could not commit to the database: {0}")]
    Commit(rusqlite::Error),
    #[error("the database {0} is opened read-only")]
    ReadOnly(PathBuf),
    /// The file's tables cannot be used or upgraded (seamless-database's migration rule).
    #[error("{0}")]
    Schema(String),
    /// A stored value cannot be read back (not JSON, not a checksum).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("Database file '{0}' must exist when --writable is not set")]
    Missing(PathBuf),
    #[error(
        "--database {0}: no such file (give the seamless.db of a running seamless-database, \
         which creates it; seamfs uses it in place and never creates or converts it)"
    )]
    Deployment(PathBuf),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// A connection inside `Database::read` or `Database::transaction`; all record methods live here.
/// `conn()` gives the raw `rusqlite::Connection` for a caller's own tables in the same file.
pub struct Conn<'a> {
    conn: &'a Connection,
}

impl<'a> Conn<'a> {
    pub fn conn(&self) -> &'a Connection {
        self.conn
    }
}

struct Inner {
    path: PathBuf,
    /// A deployment's database file attached as `seamless` (see `open_beside`), and whether the
    /// writer may change it.
    records: Option<(PathBuf, bool)>,
    // Field order is drop order: the readers and the checkpointer close first, so that the
    // writer is the last connection and checkpoints the WAL into the file on close.
    readers: Vec<Mutex<Connection>>,
    checkpointer: Option<checkpoint::Checkpointer>,
    /// None when opened read-only.
    writer: Option<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Changes held for this database and not written yet (see `Pending`).
    pending: Mutex<Option<Weak<dyn Pending>>>,
    /// How many of the next commits fail on purpose (the fault-injection suite's hook).
    #[cfg(feature = "fault-injection")]
    failing_commits: std::sync::atomic::AtomicU32,
}

/// Changes a component holds for the database and writes later (the mount's journal of closed
/// files, `fs::journal`, committed in groups): readers that must see every acknowledged change
/// (the HTTP database) have them written first (`Database::pending`).
pub trait Pending: Send + Sync {
    /// Whether anything waits (cheap).
    fn waiting(&self) -> bool;
    /// Write what waits, in a transaction of its own (a failure is logged by the holder).
    fn write_pending(&self);
}

/// A handle on one seamless-database SQLite file. Clone it freely; it is Send + Sync.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

impl Database {
    /// Open `path`. Writable: the file and its tables are created if missing, the journal is
    /// switched to WAL and the legacy `meta_data` migration runs. Read-only: the file must exist
    /// and nothing in it is changed.
    pub fn open(path: impl AsRef<Path>, writable: bool) -> Result<Database> {
        Database::open_with(path.as_ref(), writable, None)
    }

    /// Open `side`, a file for seamfs's own tables only (created if missing, in WAL mode), with
    /// a Seamless deployment's existing database file `records` attached as `seamless`: the
    /// records (buffer info, transformations, expressions …) are read and written in place
    /// there, unqualified table names reaching them because `side` has no table of that name.
    /// Nothing of `records` is converted: no table, index or journal mode is changed, and with
    /// `records_writable` false nothing is written to it at all.
    pub fn open_beside(side: &Path, records: &Path, records_writable: bool) -> Result<Database> {
        let records = records
            .canonicalize()
            .map_err(|_| DbError::Deployment(records.to_path_buf()))?;
        Database::open_with(side, true, Some((records, records_writable)))
    }

    fn open_with(
        path: &Path,
        writable: bool,
        records: Option<(PathBuf, bool)>,
    ) -> Result<Database> {
        let path = path.to_path_buf();
        if !writable && !path.exists() {
            return Err(DbError::Missing(path));
        }
        let attach = |conn: &Connection, records_writable: bool| match &records {
            Some((file, _)) => schema::attach_records(conn, file, records_writable),
            None => Ok(()),
        };
        let (writer, checkpointer) = if writable {
            let conn = open_connection(&path, true)?;
            match &records {
                None => schema::create(&conn)?,
                Some((_, records_writable)) => {
                    schema::create_side(&conn)?;
                    attach(&conn, *records_writable)?;
                }
            }
            // The checkpointer thread does the work; this only bounds the WAL when writes never
            // pause long enough for its passive checkpoints to complete (see checkpoint.rs).
            conn.execute_batch(&format!(
                "PRAGMA wal_autocheckpoint={}",
                checkpoint::WRITER_LIMIT_PAGES
            ))?;
            (
                Some(Mutex::new(conn)),
                Some(checkpoint::Checkpointer::start(&path)?),
            )
        } else {
            (None, None)
        };
        let readers = (0..READERS)
            .map(|_| -> Result<Mutex<Connection>> {
                let conn = open_connection(&path, false)?;
                attach(&conn, false)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>>>()?;
        check_readable(&path, &readers[0])?;
        if let Some((file, _)) = &records {
            schema::check_records(&lock(&readers[0]), file)?;
        }
        let inner = Inner {
            path,
            records,
            readers,
            checkpointer,
            writer,
            next_reader: AtomicUsize::new(0),
            pending: Mutex::new(None),
            #[cfg(feature = "fault-injection")]
            failing_commits: Default::default(),
        };
        Ok(Database {
            inner: Arc::new(inner),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Register the holder of changes not written yet (one per database; it is not kept alive).
    pub fn set_pending(&self, holder: Weak<dyn Pending>) {
        *self.inner.pending.lock().expect("pending lock") = Some(holder);
    }

    /// The holder of changes not written yet, if it has any now.
    pub fn pending(&self) -> Option<Arc<dyn Pending>> {
        let holder = self.inner.pending.lock().expect("pending lock");
        holder.as_ref()?.upgrade().filter(|h| h.waiting())
    }

    pub fn is_writable(&self) -> bool {
        self.inner.writer.is_some()
    }

    /// Whether the Seamless records (buffer info, expressions …) can be written: false for a
    /// read-only database and for a deployment's database attached read-only.
    pub fn records_writable(&self) -> bool {
        self.is_writable() && self.inner.records.as_ref().is_none_or(|(_, w)| *w)
    }

    /// The deployment's database file the records live in, if it is not this file.
    pub fn records_path(&self) -> Option<&Path> {
        self.inner.records.as_ref().map(|(file, _)| file.as_path())
    }

    /// Run `f` on a read-only connection (it sees the last committed state).
    pub fn read<T, E: From<DbError>>(&self, f: impl FnOnce(&Conn) -> Result<T, E>) -> Result<T, E> {
        let guard = self.reader();
        f(&Conn { conn: &guard })
    }

    /// Run `f` in one `BEGIN IMMEDIATE` transaction on the writer: committed if `f` returns Ok,
    /// rolled back if it returns Err.
    pub fn transaction<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transaction_or_undo(f, |_| Ok(()))
    }

    /// `transaction`, for callers that mirror rows in memory as they write them: if the commit
    /// fails (`DbError::Commit`, everything rolled back), `undo` runs on the writer, which then
    /// shows the last committed state, before any other transaction can start.
    pub fn transaction_or_undo<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, E>,
        undo: impl FnOnce(&Conn) -> Result<(), E>,
    ) -> Result<T, E> {
        self.transaction_or_undo_then(f, undo, || ())
    }

    /// `transaction_or_undo`, and `committed` runs once the commit succeeded, still holding
    /// the writer (before any other transaction can start).
    pub fn transaction_or_undo_then<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, E>,
        undo: impl FnOnce(&Conn) -> Result<(), E>,
        committed: impl FnOnce(),
    ) -> Result<T, E> {
        let writer = self
            .inner
            .writer
            .as_ref()
            .ok_or_else(|| DbError::ReadOnly(self.inner.path.clone()))?;
        let mut guard = lock(writer);
        let tx = guard
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(DbError::from)?;
        let value = f(&Conn { conn: &tx })?;
        if let Err(e) = self.injected_commit_failure().and_then(|()| tx.commit()) {
            // The transaction is rolled back (dropped unfinished, or by SQLite itself).
            tracing::error!(error = %e, db = %self.inner.path.display(), "a transaction could not be committed");
            undo(&Conn { conn: &guard })?;
            return Err(DbError::Commit(e).into());
        }
        committed();
        if let Some(checkpointer) = &self.inner.checkpointer {
            checkpointer.written();
        }
        Ok(value)
    }

    /// Make every committed change durable against power loss (`fsync`, `fsyncdir`): commits at
    /// `synchronous=NORMAL` do not sync the WAL, so sync it here.
    pub fn sync(&self) -> Result<()> {
        let wal = PathBuf::from(format!("{}-wal", self.inner.path.display()));
        match std::fs::File::open(&wal).and_then(|f| f.sync_data()) {
            // No WAL: everything is checkpointed into the database file, which SQLite synced.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DbError::Schema(format!(
                "cannot sync {}: {e}",
                wal.display()
            ))),
            Ok(()) => Ok(()),
        }
    }

    /// Make the next `n` commits fail as on a full disk (`SQLITE_FULL`), for the fault suite.
    /// A running process (a mount) is reached through a file `fail-next-commit` beside the
    /// database: the next commit removes it and fails. A file `crash-at-next-commit` makes the
    /// next commit abort the process instead (a kill -9 at that very point).
    #[cfg(feature = "fault-injection")]
    pub fn fail_next_commits(&self, n: u32) {
        self.inner.failing_commits.store(n, Ordering::SeqCst);
    }

    #[cfg(feature = "fault-injection")]
    fn injected_commit_failure(&self) -> rusqlite::Result<()> {
        let failing = &self.inner.failing_commits;
        let counted =
            failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if std::fs::remove_file(self.inner.path.with_file_name("crash-at-next-commit")).is_ok() {
            std::process::abort();
        }
        let trigger = self.inner.path.with_file_name("fail-next-commit");
        if counted.is_ok() || std::fs::remove_file(trigger).is_ok() {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("injected commit failure".into()),
            ));
        }
        Ok(())
    }

    #[cfg(not(feature = "fault-injection"))]
    fn injected_commit_failure(&self) -> rusqlite::Result<()> {
        Ok(())
    }

    /// A free reader if there is one (round robin, no waiting), else wait for the next in turn.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let readers = &self.inner.readers;
        let start = self.inner.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..readers.len() {
            if let Ok(guard) = readers[(start + i) % readers.len()].try_lock() {
                return guard;
            }
        }
        lock(&readers[start % readers.len()])
    }

    // One-shot versions of the record methods of `Conn` (see records.rs for the rules).

    pub fn get_transformation(&self, tf: &Checksum) -> Result<Option<Checksum>> {
        self.read(|c| c.get_transformation(tf))
    }
    pub fn set_transformation(&self, tf: &Checksum, result: &Checksum) -> Result<()> {
        self.transaction(|c| c.set_transformation(tf, result))
    }
    pub fn get_rev_transformations(&self, result: &Checksum) -> Result<Vec<Checksum>> {
        self.read(|c| c.get_rev_transformations(result))
    }
    pub fn get_buffer_info(&self, checksum: &Checksum) -> Result<Option<JsonMap>> {
        self.read(|c| c.get_buffer_info(checksum))
    }
    pub fn merge_buffer_info(&self, checksum: &Checksum, info: &JsonMap) -> Result<()> {
        self.transaction(|c| c.merge_buffer_info(checksum, info))
    }
    pub fn get_semantic_to_syntactic(
        &self,
        semantic: &Checksum,
        celltype: &str,
        subcelltype: &str,
    ) -> Result<Vec<Checksum>> {
        self.read(|c| c.get_semantic_to_syntactic(semantic, celltype, subcelltype))
    }
    pub fn get_syntactic_to_semantic(
        &self,
        syntactic: &Checksum,
        celltype: &str,
        subcelltype: &str,
    ) -> Result<Vec<Checksum>> {
        self.read(|c| c.get_syntactic_to_semantic(syntactic, celltype, subcelltype))
    }
    pub fn add_semantic_to_syntactic(
        &self,
        semantic: &Checksum,
        celltype: &str,
        subcelltype: &str,
        syntactic: &[Checksum],
    ) -> Result<()> {
        self.transaction(|c| {
            c.add_semantic_to_syntactic(semantic, celltype, subcelltype, syntactic)
        })
    }
    pub fn get_expression(&self, key: &ExpressionKey) -> Result<Option<Checksum>> {
        self.read(|c| c.get_expression(key))
    }
    pub fn set_expression(&self, key: &ExpressionKey, result: &Checksum) -> Result<()> {
        self.transaction(|c| c.set_expression(key, result))
    }
    pub fn get_rev_expressions(&self, result: &Checksum) -> Result<Vec<ExpressionKey>> {
        self.read(|c| c.get_rev_expressions(result))
    }
    pub fn get_execution_record(&self, tf: &Checksum) -> Result<Option<Value>> {
        self.read(|c| c.get_execution_record(tf))
    }
    pub fn set_execution_record(
        &self,
        tf: &Checksum,
        result: &Checksum,
        record: &JsonMap,
    ) -> Result<()> {
        self.transaction(|c| c.set_execution_record(tf, result, record))
    }
    pub fn get_irreproducible(
        &self,
        tf: &Checksum,
        result: Option<&Checksum>,
    ) -> Result<Vec<IrreproducibleRecord>> {
        self.read(|c| c.get_irreproducible(tf, result))
    }
    pub fn mark_irreproducible(&self, tf: &Checksum, result: &Checksum) -> Result<()> {
        self.transaction(|c| c.mark_irreproducible(tf, result))
    }
    pub fn get_bucket_probe(&self, kind: &str, label: &str) -> Result<Option<BucketProbe>> {
        self.read(|c| c.get_bucket_probe(kind, label))
    }
    pub fn set_bucket_probe(&self, probe: &BucketProbe) -> Result<()> {
        self.transaction(|c| c.set_bucket_probe(probe))
    }
}

fn open_connection(path: &Path, writable: bool) -> Result<Connection> {
    let flags = if writable {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        // For `ATTACH 'file:…?mode=ro'` (see `schema::attach_records`).
        | OpenFlags::SQLITE_OPEN_URI;
    let opened = Connection::open_with_flags(path, flags).and_then(|conn| {
        schema::configure(&conn)?;
        Ok(conn)
    });
    let conn = opened.map_err(|source| DbError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Fail at open, with the path, if the file is not an SQLite database (rather than at the
/// first request).
fn check_readable(path: &Path, reader: &Mutex<Connection>) -> Result<()> {
    lock(reader)
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|source| DbError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(())
}

/// A poisoned lock only means another thread panicked mid-call; SQLite rolled back, go on.
fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seamless-database file as the Python server leaves it: its tables, rollback journal.
    fn python_style_file(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(schema::DDL).unwrap();
    }

    fn journal_mode(path: &Path) -> String {
        let conn = Connection::open(path).unwrap();
        conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn records_live_in_the_attached_file_and_the_rest_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let (side, records) = (dir.path().join("seamfs.db"), dir.path().join("seamless.db"));
        python_style_file(&records);
        let cs = Checksum::of(b"x");
        let info: JsonMap = serde_json::from_str(r#"{"length": 1}"#).unwrap();
        let db = Database::open_beside(&side, &records, true).unwrap();
        assert!(db.records_writable());
        db.transaction(|c| -> Result<()> {
            c.conn()
                .execute_batch("CREATE TABLE IF NOT EXISTS seamfs_own (x TEXT)")?;
            c.merge_buffer_info(&cs, &info)
        })
        .unwrap();
        drop(db);
        // The record is in the deployment's file, which keeps its journal mode and tables; the
        // own table is in the side file, which has no Seamless table.
        assert_eq!(
            Database::open(&records, false)
                .unwrap()
                .get_buffer_info(&cs)
                .unwrap(),
            Some(info.clone())
        );
        assert_eq!(journal_mode(&records), "delete");
        let tables = |path: &Path| -> Vec<String> {
            let conn = Connection::open(path).unwrap();
            let mut stmt = conn
                .prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(tables(&side), ["seamfs_own"]);
        assert!(!tables(&records).contains(&"seamfs_own".to_string()));

        // Read-only: records are read, not written.
        let db = Database::open_beside(&side, &records, false).unwrap();
        assert!(!db.records_writable());
        assert_eq!(db.get_buffer_info(&cs).unwrap(), Some(info.clone()));
        assert!(db.merge_buffer_info(&Checksum::of(b"y"), &info).is_err());

        // A missing file or one without the tables is refused, and not created or changed.
        let missing = dir.path().join("none.db");
        let err = Database::open_beside(&side, &missing, true).err().unwrap();
        assert!(err.to_string().contains("no such file"), "{err}");
        assert!(!missing.exists());
        let empty = dir.path().join("empty.db");
        Connection::open(&empty)
            .unwrap()
            .execute_batch("CREATE TABLE other (x)")
            .unwrap();
        let err = Database::open_beside(&side, &empty, true).err().unwrap();
        assert!(err.to_string().contains("lacks the tables"), "{err}");
    }
}
