//! The journal of closed files (issue 14): what makes a file's `close()` survive a kill -9 of
//! the daemon without one SQLite transaction per file.
//!
//! A file's own writer changes its tree rows in memory only (`fs::tree`: the new file, the
//! attributes set before `close()`, and at publish its content). At `close()` (FLUSH) the rows
//! it changed, whole, and the buffer it published are appended to the journal file
//! `seamfs-journal` beside `seamless.db` with one `write()`, no fsync: the page cache survives a
//! kill -9 of the daemon. The rows stay unsaved in memory and are written to SQLite by the next
//! transaction of any kind (`Namespace::transaction`), with the buffers' BufferInfo and ledger
//! rows and the sequence number of the last record they cover (`seamfs_journal.applied`), all in
//! that one transaction. The committer thread runs such a transaction `TICK` after files were
//! closed, a close runs one itself when `GROUP` records are waiting, and `fsync`, `fsyncdir`,
//! gc and unmounting run one before they go on. Once nothing waits, the journal is emptied.
//!
//! At start (`replay`, before the tree is loaded; also before an offline gc), the records after
//! `applied` are written to SQLite in order in one transaction, their buffers added to the
//! ledger of unsynced buffers (`fs::deferred`, which then checks them), and the journal emptied.
//! Each record carries a checksum of its text; replay stops at the first damaged or missing one
//! (a power loss may keep any part of the unsynced journal and WAL), so SQLite always holds a
//! prefix of the changes in order: a power loss may lose recent closes, as without the journal,
//! and never makes a file name a buffer that is not checked.
//!
//! If the transaction that saves the journaled rows fails (a full disk), the tree is reloaded
//! from SQLite and the waiting records are put back into it (`Journal::restore`): what a
//! `close()` acknowledged stays, and the next transaction tries again. So do the rows of files
//! still being written, which no record holds yet (`Journal::snapshot`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value as Json, json};

use crate::buffer_info::BufferInfo;
use crate::checksum::Checksum;
use crate::db::{Conn, Database, DbError};

use super::deferred::{self, Deferred};
use super::namespace::Namespace;
use super::ticker::Ticker;
use super::tree::{self, Node, Tree, TreeError};

/// The journal's file name, beside the tree's database.
const FILE_NAME: &str = "seamfs-journal";
/// How many closed files may wait in the journal before a close saves them itself.
pub const GROUP: usize = 512;
/// Past this size, a journal that never empties (closes arrive during every commit) is
/// rewritten with only its waiting records.
#[cfg(not(test))]
const COMPACT_AT: u64 = 8 << 20;
#[cfg(test)]
const COMPACT_AT: u64 = 4 << 10;
/// How soon after a close the committer saves the waiting files.
const TICK: Duration = Duration::from_millis(20);
/// The longest the committer waits after failed commits (a full disk) before it tries again:
/// it doubles its wait from `TICK` on, so a full disk is not retried, and logged, every tick.
/// Other commits (a close's group, fsync, any tree change) still try at once.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The last record written to SQLite.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS seamfs_journal (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    applied INTEGER NOT NULL
)";

/// A buffer published through the journal: its BufferInfo length and ledger row (given by
/// `Deferred::give_id`) are written when its record is saved.
pub struct Published {
    pub checksum: Checksum,
    pub size: u64,
    pub ledger: i64,
}

/// One close: the rows it changed (directories without their children) and its buffer.
struct Record {
    seq: u64,
    rows: Vec<(u64, Node)>,
    buffer: Option<Published>,
}

struct State {
    /// None for a read-only database, or after a failed write could not be undone (every
    /// close then commits its own transaction).
    file: Option<File>,
    len: u64,
    next_seq: u64,
    /// Records not yet saved to SQLite by a committed transaction.
    waiting: Vec<Record>,
    /// After failed commits of the committer: when it tries again, and the delay before that.
    backoff: Option<(Instant, Duration)>,
}

/// The journal of the mount's tree database.
pub struct Journal {
    path: PathBuf,
    state: Mutex<State>,
}

/// What a transaction writes for the waiting records (`Journal::saving`).
pub struct Saving {
    upto: u64,
    buffers: Vec<(Checksum, u64, i64)>,
}

fn path_of(db: &Database) -> PathBuf {
    db.path().with_file_name(FILE_NAME)
}

fn applied(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT applied FROM seamfs_journal WHERE id = 1", [], |r| {
        r.get(0)
    })
    .optional()
    .map(|a| a.unwrap_or(0))
}

fn set_applied(conn: &Connection, upto: u64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO seamfs_journal (id, applied) VALUES (1, ?1)")?
        .execute([upto])?;
    Ok(())
}

impl Journal {
    /// Open the journal of `db` for appending (after `replay`).
    pub fn open(db: &Database) -> anyhow::Result<Journal> {
        let mut state = State {
            file: None,
            len: 0,
            next_seq: 1,
            waiting: Vec::new(),
            backoff: None,
        };
        let path = path_of(db);
        if db.is_writable() {
            // `replay` made the table.
            let applied = db.read(|c| Ok::<_, DbError>(applied(c.conn())?))?;
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
            state.len = file.metadata()?.len();
            state.file = Some(file);
            state.next_seq = applied + 1;
        }
        Ok(Journal {
            path,
            state: Mutex::new(state),
        })
    }

    /// Append one close's record. On an error nothing is appended (a torn record is cut off)
    /// and the caller commits the change itself.
    pub fn append(&self, rows: Vec<(u64, Node)>, buffer: Option<Published>) -> std::io::Result<()> {
        let mut state = self.state.lock().expect("journal lock");
        let seq = state.next_seq;
        let line = encode(seq, &rows, buffer.as_ref());
        let len = state.len;
        let Some(file) = state.file.as_mut() else {
            return Err(std::io::Error::from(std::io::ErrorKind::Unsupported));
        };
        if let Err(e) = file.write_all(&line) {
            if file.set_len(len).is_err() {
                tracing::error!(
                    "the journal of closed files cannot be repaired; closes commit one by one"
                );
                state.file = None;
            }
            return Err(e);
        }
        state.len += line.len() as u64;
        state.next_seq += 1;
        state.waiting.push(Record { seq, rows, buffer });
        Ok(())
    }

    pub fn waiting(&self) -> usize {
        self.state.lock().expect("journal lock").waiting.len()
    }

    /// Whether the committer should commit now: records wait, and no backoff holds it back.
    fn commit_due(&self) -> bool {
        let state = self.state.lock().expect("journal lock");
        !state.waiting.is_empty() && state.backoff.is_none_or(|(at, _)| Instant::now() >= at)
    }

    /// The committer's commit succeeded or failed (see `BACKOFF_MAX`).
    fn commit_tried(&self, committed: bool) {
        let mut state = self.state.lock().expect("journal lock");
        state.backoff = (!committed).then(|| {
            let delay = state
                .backoff
                .map_or(TICK, |(_, delay)| (delay * 2).min(BACKOFF_MAX));
            (Instant::now() + delay, delay)
        });
    }

    /// What a transaction must write for the records waiting now (call it with the tree lock
    /// held, in the transaction that saves the tree's unsaved rows, so both cover the same
    /// records).
    pub fn saving(&self) -> Saving {
        let state = self.state.lock().expect("journal lock");
        let upto = state.waiting.last().map_or(0, |r| r.seq);
        let buffers = state
            .waiting
            .iter()
            .filter_map(|r| r.buffer.as_ref())
            .map(|b| (b.checksum, b.size, b.ledger))
            .collect();
        Saving { upto, buffers }
    }

    /// Write the BufferInfo and ledger rows of `saving`, and its mark, in the caller's
    /// transaction.
    pub fn write(&self, c: &Conn, saving: &Saving, deferred: &Deferred) -> Result<(), TreeError> {
        if saving.upto == 0 {
            return Ok(());
        }
        for (checksum, size, ledger) in &saving.buffers {
            c.merge_buffer_info(checksum, &BufferInfo::with_length(*size as usize).to_map())?;
            deferred.ledger(c.conn(), *ledger, checksum)?;
        }
        set_applied(c.conn(), saving.upto)?;
        Ok(())
    }

    /// The transaction that wrote `saving` committed: its records no longer wait, and once
    /// none does the file is emptied.
    pub fn saved(&self, saving: &Saving) {
        if saving.upto == 0 {
            return;
        }
        let mut state = self.state.lock().expect("journal lock");
        state.waiting.retain(|r| r.seq > saving.upto);
        let emptied = if state.waiting.is_empty() && state.len > 0 {
            state.file.as_ref().map(|f| f.set_len(0).map(|()| 0))
        } else if state.len > COMPACT_AT {
            Some(self.rewrite(&mut state))
        } else {
            None
        };
        match emptied {
            Some(Ok(len)) => state.len = len,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "could not shrink the journal of closed files (its saved records stay, skipped at replay)");
            }
            None => {}
        }
    }

    /// Replace the journal by one holding only the waiting records (written beside it, then
    /// renamed over it: a kill -9 finds the old or the new one whole). Returns its length.
    fn rewrite(&self, state: &mut State) -> std::io::Result<u64> {
        let lines: Vec<u8> = state
            .waiting
            .iter()
            .flat_map(|r| encode(r.seq, &r.rows, r.buffer.as_ref()))
            .collect();
        let fresh = self.path.with_extension("new");
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .truncate(false)
            .open(&fresh)?;
        file.set_len(0)?;
        file.write_all(&lines)?;
        std::fs::rename(&fresh, &self.path)?;
        state.file = Some(file);
        Ok(lines.len() as u64)
    }

    /// The rows of the files being written now (changed, not journaled yet), and the place of
    /// this moment among the records. Call it with the tree lock held (closes append under it).
    pub fn snapshot(&self, tree: &Tree) -> Snapshot {
        Snapshot {
            at: self.state.lock().expect("journal lock").next_seq,
            rows: tree.unjournaled(),
        }
    }

    /// After the tree was reloaded from SQLite (a failed commit): put back the waiting
    /// records' rows and the `snapshots` (taken in order by the failed transaction, of files
    /// still being written), each in its place among the records, so the newest row of a
    /// file wins.
    pub fn restore(&self, tree: &mut Tree, snapshots: Vec<Snapshot>) {
        let state = self.state.lock().expect("journal lock");
        let mut snapshots = snapshots.into_iter().peekable();
        for record in &state.waiting {
            while let Some(snapshot) = snapshots.next_if(|s| s.at <= record.seq) {
                snapshot.restore(tree);
            }
            for (ino, node) in &record.rows {
                tree.restore(*ino, node.clone(), true);
            }
        }
        snapshots.for_each(|snapshot| snapshot.restore(tree));
    }
}

/// What `Journal::snapshot` took: rows not journaled yet, and the sequence number the next
/// record was to get then.
pub struct Snapshot {
    at: u64,
    rows: Vec<(u64, Node)>,
}

impl Snapshot {
    fn restore(self, tree: &mut Tree) {
        for (ino, node) in self.rows {
            tree.restore(ino, node, false);
        }
    }
}

/// One record as a line: JSON, a tab, the first 16 hex digits of its SHA-256, a newline.
fn encode(seq: u64, rows: &[(u64, Node)], buffer: Option<&Published>) -> Vec<u8> {
    let rows: Vec<Json> = rows
        .iter()
        .map(|(ino, node)| {
            Json::Array(
                tree::whole_row(*ino, node)
                    .into_iter()
                    .map(to_json)
                    .collect(),
            )
        })
        .collect();
    let buffer = buffer.map(|b| json!([b.checksum.hex(), b.size]));
    let body = json!({"seq": seq, "rows": rows, "buffer": buffer}).to_string();
    let digest = Checksum::of(body.as_bytes()).hex();
    format!("{body}\t{}\n", &digest[..16]).into_bytes()
}

fn to_json(value: Value) -> Json {
    match value {
        Value::Integer(i) => json!(i),
        Value::Text(t) => json!(t),
        _ => Json::Null,
    }
}

fn from_json(value: &Json) -> Option<Value> {
    match value {
        Json::Null => Some(Value::Null),
        Json::Number(n) => n.as_i64().map(Value::Integer),
        Json::String(s) => Some(Value::Text(s.clone())),
        _ => None,
    }
}

/// A record read back: its sequence number, rows and buffer; None if the line is damaged or
/// incomplete.
type Replayed = (u64, Vec<Vec<Value>>, Option<(Checksum, u64)>);

fn decode(line: &[u8]) -> Option<Replayed> {
    let line = std::str::from_utf8(line.strip_suffix(b"\n")?).ok()?;
    let (body, digest) = line.rsplit_once('\t')?;
    if Checksum::of(body.as_bytes()).hex()[..16] != *digest {
        return None;
    }
    let record: Json = serde_json::from_str(body).ok()?;
    let seq = record["seq"].as_u64()?;
    let rows = record["rows"]
        .as_array()?
        .iter()
        .map(|row| row.as_array()?.iter().map(from_json).collect())
        .collect::<Option<Vec<Vec<Value>>>>()?;
    let buffer = match &record["buffer"] {
        Json::Null => None,
        b => Some((Checksum::parse_strict(b[0].as_str()?)?, b[1].as_u64()?)),
    };
    Some((seq, rows, buffer))
}

/// Write the records a stopped mount left in the journal of `db` to SQLite (see the module
/// doc), then empty the journal. A read-only database is left alone.
pub fn replay(db: &Database) -> anyhow::Result<()> {
    if !db.is_writable() {
        return Ok(());
    }
    let path = path_of(db);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let replayed = db.transaction(|c| {
        let conn = c.conn();
        conn.execute_batch(SCHEMA)?;
        let first = applied(conn)?;
        if text.is_empty() {
            return Ok::<_, TreeError>(0);
        }
        tree::create_schema(conn)?;
        let mut last = first;
        let mut buffers = Vec::new();
        for line in text.split_inclusive(|b| *b == b'\n') {
            let Some((seq, rows, buffer)) = decode(line) else {
                tracing::warn!(journal = %path.display(), "the journal of closed files ends in a damaged record (power loss?); the rest is dropped");
                break;
            };
            if seq <= first {
                continue;
            }
            if seq != last + 1 {
                tracing::warn!(journal = %path.display(), seq, expected = last + 1, "the journal of closed files misses records (power loss?); the rest is dropped");
                break;
            }
            for row in rows {
                tree::insert_values(conn, row)?;
            }
            if let Some((checksum, size)) = buffer {
                c.merge_buffer_info(&checksum, &BufferInfo::with_length(size as usize).to_map())?;
                buffers.push(checksum);
            }
            last = seq;
        }
        deferred::relist(conn, &buffers)?;
        set_applied(conn, last)?;
        Ok(last - first)
    })?;
    if !text.is_empty() {
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
            .map_err(|e| anyhow::anyhow!("cannot empty {}: {e}", path.display()))?;
    }
    if replayed > 0 {
        tracing::info!(closes = replayed, "closed files replayed from the journal");
    }
    Ok(())
}

/// Readers of the database (the HTTP database) see closed files at once: what waits in the
/// journal is committed before they read (see `db::Pending`).
impl crate::db::Pending for Namespace {
    fn waiting(&self) -> bool {
        self.journal.waiting() > 0
    }

    fn write_pending(&self) {
        // A failure is logged by the transaction; the records stay for the next commit.
        let _ = self.save_unsaved();
    }
}

/// Start the committer: it saves the journal's waiting records to SQLite `TICK` after they
/// were written, until dropped. A failure is logged; the records stay for a later try (see
/// `BACKOFF_MAX`).
pub fn start_committer(ns: &Arc<Namespace>) -> std::io::Result<Ticker> {
    Ticker::start("seamfs-committer", ns, TICK, |ns| {
        if ns.journal.commit_due() {
            ns.journal.commit_tried(ns.save_unsaved().is_ok());
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::fs::inodes;
    use crate::fs::test_support::{namespace, read_all, write_file};
    use crate::fs::tree::ROOT;

    /// Rows of the tree table under `parent`.
    fn committed_rows(db: &Database, parent: u64) -> i64 {
        db.read(|c| {
            let sql = "SELECT count(*) FROM seamfs_tree WHERE parent = ?1 AND ino != ?1";
            Ok::<_, DbError>(c.conn().query_row(sql, [parent], |r| r.get(0))?)
        })
        .unwrap()
    }

    /// What a kill -9 of the mount leaves: its store as it is now (files, WAL, journal), copied
    /// while the namespace lives on.
    fn killed_copy(store: &Path, to: &Path) {
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(store)
            .arg(to)
            .status()
            .unwrap();
        assert!(copied.success());
    }

    fn content(i: usize) -> Vec<u8> {
        format!("file number {i}\n").repeat(i + 1).into_bytes()
    }

    #[test]
    fn closed_files_survive_a_kill_in_the_journal_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let ns = namespace(&store);
        let d = ns.mkdir(ROOT, "d", 0o755).unwrap().ino;
        let then = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        for i in 0..20 {
            let by = Some(std::process::id());
            let (attr, opened) = ns.create_as(d, &format!("f{i}"), 0o600, None, by).unwrap();
            ns.write(opened.fh, 0, &content(i)).unwrap();
            ns.set_attrs(
                attr.ino,
                tree::AttrChanges {
                    mtime: Some(then),
                    ..Default::default()
                },
                None,
                Some(opened.fh),
                by,
            )
            .unwrap();
            ns.flush(opened.fh).unwrap();
            ns.release(opened.fh).unwrap();
        }
        // An empty file (`touch`): its create alone is journaled.
        let (_, opened) = ns.create(d, "empty", 0o644).unwrap();
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
        assert_eq!(
            committed_rows(ns.store().db(), d),
            0,
            "no transaction per close"
        );
        assert_eq!(ns.journal.waiting(), 21);
        let journal = store.join(FILE_NAME);
        assert!(std::fs::metadata(&journal).unwrap().len() > 0);

        let copy = dir.path().join("killed");
        killed_copy(&store, &copy);
        let again = namespace(&copy);
        let d = again.lookup(ROOT, "d").unwrap().ino;
        for i in 0..20 {
            let attr = again.lookup(d, &format!("f{i}")).unwrap();
            assert_eq!(read_all(&again, attr.ino), content(i), "f{i}");
            assert_eq!(attr.mtime, then);
            assert_eq!(attr.perm, 0o600);
            let hex = Checksum::of(&content(i)).hex();
            let sidecar = again.lookup(d, &format!("f{i}.CHECKSUM")).unwrap();
            assert_eq!(
                read_all(&again, sidecar.ino),
                format!("{hex}\n").into_bytes()
            );
            let by = again.lookup(inodes::BY_CHECKSUM, &hex).unwrap();
            assert_eq!(read_all(&again, by.ino), content(i));
            let info = again
                .store()
                .db()
                .get_buffer_info(&Checksum::of(&content(i)))
                .unwrap()
                .unwrap();
            assert_eq!(info["length"], json!(content(i).len()));
        }
        assert_eq!(again.lookup(d, "empty").unwrap().size, 0);
        assert_eq!(
            committed_rows(again.store().db(), d),
            21,
            "replayed into SQLite"
        );
        assert_eq!(std::fs::metadata(copy.join(FILE_NAME)).unwrap().len(), 0);
        // A second restart replays nothing again (the mark), and the original commits as usual.
        drop(again);
        let third = namespace(&copy);
        assert_eq!(third.read_tree().children(d).unwrap().len(), 21);
        drop(ns);
        let original = namespace(&store);
        let d = original.lookup(ROOT, "d").unwrap().ino;
        assert_eq!(committed_rows(original.store().db(), d), 21);
        assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0);
    }

    /// A file closed while another transaction runs, and that transaction then removes the
    /// file (a rename or unlink racing the writer's close): the transaction's mark covers the
    /// close's record, so a crash right after does not bring the file back.
    #[test]
    fn a_close_during_a_transaction_is_not_replayed_over_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let ns = namespace(&store);
        let (_, opened) = ns.create(ROOT, "f", 0o644).unwrap();
        ns.write(opened.fh, 0, b"closed while a transaction runs")
            .unwrap();
        ns.sync_tree().unwrap();
        ns.transaction(|c| {
            // The writer's close, on another FUSE thread...
            ns.flush(opened.fh).unwrap();
            // ... and then this transaction's own change of the same file.
            ns.tree
                .write()
                .unwrap()
                .remove(c.conn(), ROOT, "f", false)?;
            Ok(())
        })
        .unwrap();
        ns.release(opened.fh).unwrap();
        let copy = dir.path().join("killed");
        killed_copy(&store, &copy);
        let again = namespace(&copy);
        assert_eq!(again.lookup(ROOT, "f"), Err(nix::errno::Errno::ENOENT));
    }

    /// Readers of the database (the HTTP database) see a closed file at once: the namespace,
    /// registered as the database's pending holder, commits the journal before they read.
    #[test]
    fn readers_of_the_database_see_closed_files_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ns = Arc::new(namespace(dir.path()));
        let db = ns.store().db().clone();
        let holder: std::sync::Weak<Namespace> = Arc::downgrade(&ns);
        db.set_pending(holder);
        assert!(db.pending().is_none(), "nothing waits");
        write_file(&ns, ROOT, "f", b"closed");
        let checksum = Checksum::of(b"closed");
        assert_eq!(
            db.get_buffer_info(&checksum).unwrap(),
            None,
            "journaled only"
        );
        db.pending().expect("the close waits").write_pending();
        assert!(db.get_buffer_info(&checksum).unwrap().is_some());
        assert!(db.pending().is_none());
    }

    #[test]
    fn a_damaged_record_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let ns = namespace(&store);
        for i in 0..3 {
            write_file(&ns, ROOT, &format!("f{i}"), &content(i));
        }
        let copy = dir.path().join("killed");
        killed_copy(&store, &copy);
        // What a power loss may leave: the last record cut short, a record of garbage after it.
        let journal = copy.join(FILE_NAME);
        let text = std::fs::read(&journal).unwrap();
        let last = text[..text.len() - 1]
            .iter()
            .rposition(|b| *b == b'\n')
            .unwrap()
            + 1;
        let mut damaged = text[..last + 20].to_vec();
        damaged.extend_from_slice(b"\0\0\0\0\n{\"seq\": 4}\tffffffffffffffff\n");
        std::fs::write(&journal, damaged).unwrap();
        let again = namespace(&copy);
        assert_eq!(
            read_all(&again, again.lookup(ROOT, "f0").unwrap().ino),
            content(0)
        );
        assert_eq!(
            read_all(&again, again.lookup(ROOT, "f1").unwrap().ino),
            content(1)
        );
        assert_eq!(again.lookup(ROOT, "f2"), Err(nix::errno::Errno::ENOENT));
        // New closes follow the replayed ones.
        write_file(&again, ROOT, "g", b"after");
        drop(again);
        let third = namespace(&copy);
        assert_eq!(
            read_all(&third, third.lookup(ROOT, "g").unwrap().ino),
            b"after"
        );
        assert_eq!(third.lookup(ROOT, "f2"), Err(nix::errno::Errno::ENOENT));
    }

    #[test]
    fn fsync_gc_and_a_full_group_commit_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let db = ns.store().db().clone();
        write_file(&ns, ROOT, "synced", b"synced");
        ns.sync_tree().unwrap();
        assert_eq!(committed_rows(&db, ROOT), 1);
        assert_eq!(ns.journal.waiting(), 0);
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len(),
            0
        );
        // gc reads committed references: a journaled file's buffer stays.
        write_file(&ns, ROOT, "journaled", b"journaled");
        ns.setxattr(inodes::SEAMFS_DIR, crate::fs::xattr::GC_XATTR, b"run")
            .unwrap();
        let ino = ns.lookup(ROOT, "journaled").unwrap().ino;
        assert_eq!(read_all(&ns, ino), b"journaled");
        assert_eq!(committed_rows(&db, ROOT), 2);
        // Every GROUP closes commit.
        for i in 0..GROUP {
            write_file(&ns, ROOT, &format!("g{i}"), &content(i % 7));
        }
        assert_eq!(ns.journal.waiting(), 0);
        assert_eq!(committed_rows(&db, ROOT) as usize, 2 + GROUP);
    }

    #[test]
    fn a_journal_that_never_empties_is_rewritten_with_its_waiting_records() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("seamless.db"), true).unwrap();
        db.transaction(|c| tree::Tree::load(c.conn()).map(drop))
            .unwrap();
        replay(&db).unwrap();
        let journal = Journal::open(&db).unwrap();
        let file = |i: u64| {
            let now = std::time::SystemTime::now();
            let node = Node {
                parent: tree::ROOT,
                name: format!("f{i}"),
                kind: tree::NodeKind::File {
                    checksum: Checksum::of(b""),
                    size: 0,
                },
                mode: 0o644,
                mtime: now,
                ctime: now,
                atime: now,
                uid: None,
                gid: None,
            };
            vec![(100 + i, node)]
        };
        for i in 0..20 {
            journal.append(file(i), None).unwrap();
        }
        // Saved up to here, while one more close came in (so the journal does not empty).
        let saving = journal.saving();
        journal.append(file(20), None).unwrap();
        let deferred = Deferred::start(db.clone()).unwrap();
        db.transaction(|c| journal.write(c, &saving, &deferred))
            .unwrap();
        journal.saved(&saving);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 1, "only the waiting record is left");
        assert_eq!(journal.waiting(), 1);
        journal.append(file(21), None).unwrap();
        drop(journal);
        // A restart replays the two records after the mark, not the saved ones.
        replay(&db).unwrap();
        let names: Vec<String> = db
            .read(|c| {
                let mut stmt = c
                    .conn()
                    .prepare("SELECT name FROM seamfs_tree WHERE ino >= 100 ORDER BY ino")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok::<_, DbError>(rows.collect::<rusqlite::Result<Vec<String>>>()?)
            })
            .unwrap();
        assert_eq!(names, ["f20", "f21"]);
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn a_failed_commit_keeps_what_the_journal_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let db = ns.store().db().clone();
        let d = ns.mkdir(ROOT, "d", 0o755).unwrap().ino;
        for i in 0..5 {
            write_file(&ns, d, &format!("f{i}"), &content(i));
        }
        db.fail_next_commits(1);
        assert!(ns.save_unsaved().is_err());
        assert_eq!(committed_rows(&db, d), 0);
        for i in 0..5 {
            let ino = ns.lookup(d, &format!("f{i}")).unwrap().ino;
            assert_eq!(
                read_all(&ns, ino),
                content(i),
                "f{i} after the failed commit"
            );
        }
        // A failed mkdir (its own transaction, which also carries the journaled files).
        db.fail_next_commits(1);
        assert!(ns.mkdir(ROOT, "e", 0o755).is_err());
        assert_eq!(ns.lookup(ROOT, "e"), Err(nix::errno::Errno::ENOENT));
        assert_eq!(ns.read_tree().children(d).unwrap().len(), 5);
        ns.save_unsaved().unwrap();
        assert_eq!(committed_rows(&db, d), 5);
        drop(ns);
        let again = namespace(dir.path());
        for i in 0..5 {
            let ino = again.lookup(d, &format!("f{i}")).unwrap().ino;
            assert_eq!(read_all(&again, ino), content(i));
        }
    }

    /// On a full disk, gc (how space comes back) still runs, and keeps the buffers of the
    /// closed files it could not commit.
    #[cfg(feature = "fault-injection")]
    #[test]
    fn gc_runs_when_the_journal_cannot_be_committed() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let db = ns.store().db().clone();
        write_file(&ns, ROOT, "gone", b"removed before the gc");
        ns.unlink(ROOT, "gone").unwrap();
        write_file(&ns, ROOT, "waiting", b"closed, not committed");
        db.fail_next_commits(1);
        ns.setxattr(inodes::SEAMFS_DIR, crate::fs::xattr::GC_XATTR, b"run")
            .unwrap();
        let tiers = ns.store().tiers();
        assert!(!tiers.has(&Checksum::of(b"removed before the gc")).unwrap());
        assert!(tiers.has(&Checksum::of(b"closed, not committed")).unwrap());
        assert_eq!(ns.journal.waiting(), 1);
        ns.save_unsaved().unwrap();
        let ino = ns.lookup(ROOT, "waiting").unwrap().ino;
        assert_eq!(read_all(&ns, ino), b"closed, not committed");
    }

    /// After failed commits the committer waits longer each time (up to `BACKOFF_MAX`), and
    /// tries at every tick again once one succeeded.
    #[test]
    fn the_committer_backs_off_after_failed_commits() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        write_file(&ns, ROOT, "f", b"waiting");
        let journal = &ns.journal;
        assert!(journal.commit_due());
        journal.commit_tried(false);
        assert!(!journal.commit_due(), "tried again at once");
        std::thread::sleep(TICK * 2);
        assert!(journal.commit_due());
        for _ in 0..20 {
            journal.commit_tried(false);
        }
        let delay = journal.state.lock().unwrap().backoff.unwrap().1;
        assert_eq!(delay, BACKOFF_MAX);
        journal.commit_tried(true);
        assert!(journal.commit_due());
        ns.save_unsaved().unwrap();
        assert!(!journal.commit_due(), "nothing waits");
    }
}
