//! WAL checkpoints off the write path. SQLite normally checkpoints inside the commit that
//! fills the WAL past 1000 pages, and that checkpoint copies pages and fsyncs, so now and then
//! one commit (and every request waiting on it) stalls for as long as the disk takes. Here a
//! thread with its own connection runs passive checkpoints, alongside new commits, shortly after
//! writes happen. A passive checkpoint that overlaps commits cannot let the WAL restart from its
//! beginning, so under nonstop writes the writer still checkpoints itself past
//! `WRITER_LIMIT_PAGES`; by then most pages are already copied, so that catch-up is short.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::{Result, open_connection};

/// WAL size (pages) at which the writer checkpoints itself (SQLite's default is 1000).
pub const WRITER_LIMIT_PAGES: u32 = 4000;
/// Pause after a checkpoint, so that a burst of commits is checkpointed together.
const GATHER: Duration = Duration::from_millis(100);
/// Checkpoint at least this often while the database is open.
const IDLE_WAKE: Duration = Duration::from_secs(2);

/// The checkpointing thread. `written` wakes it; dropping it stops and joins it.
pub struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Start checkpointing `path` (already in WAL mode).
    pub fn start(path: &Path) -> Result<Checkpointer> {
        let conn = open_connection(path, true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("seamfs-db-checkpoint".into())
            .spawn(move || run(&conn, &flag))
            .map_err(|e| {
                super::DbError::Schema(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    /// Tell the thread that the WAL has grown.
    pub fn written(&self) {
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(IDLE_WAKE);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("WAL checkpoint failed (will retry): {e}");
        }
        std::thread::sleep(GATHER);
    }
}
