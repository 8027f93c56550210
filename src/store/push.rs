//! Write-through to a push target (`--push ADDRESS`): every buffer committed or put through the
//! store's tiers is queued and uploaded in the background.
//!
//! The queue is a SQLite file in the store, `push-queue.db` (table `queue`: checksum, when it was
//! queued, attempts, when to try next, the last error), written when the buffer is committed,
//! so it survives a crash or `kill -9`: what is queued is pushed after a restart. One thread
//! pushes the oldest due buffers, up to 64 at a time; a buffer the target already has is not
//! uploaded again (like seamless-core's buffer writer asks `/has-now` first; one batched
//! question per 64); a failure is retried with exponential backoff (0.5 s doubling, at most
//! 60 s), and everything queued is due again at a restart. `stats` gives the counters shown in
//! `.seamfs/stats`; `wait_pushed` lets `fsync()` wait until a buffer is on the target.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use super::{Evict, Kept, Listing, Reader, Stats, StoreError, Tier, TierWrite, addr, copy_into};
use crate::buffer::Buffer;
use crate::checksum::Checksum;

/// The longest pause between two attempts at one buffer.
const MAX_BACKOFF: f64 = 60.0;
/// How many due buffers the pusher takes at a time (the target is asked about them at once).
const BATCH: u32 = 64;

/// Counters of the push queue (`.seamfs/stats` → `"push"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PushStats {
    pub target: String,
    /// Buffers waiting in the queue (in flight included).
    pub queued: u64,
    pub in_flight: u64,
    /// Failed attempts since the store was opened (each is retried).
    pub failed: u64,
    /// Buffers pushed (or found already there) since the store was opened.
    pub pushed: u64,
    /// Bytes uploaded since the store was opened.
    pub bytes: u64,
    pub last_error: Option<String>,
}

/// The persistent queue and its pusher.
pub struct PushQueue {
    target: Arc<dyn Tier>,
    address: String,
    path: PathBuf,
    db: Mutex<Connection>,
    progress: Mutex<PushStats>,
    in_flight: Mutex<HashSet<Checksum>>,
    changed: Condvar,
    stop: AtomicBool,
}

impl PushQueue {
    /// Open (creating) `<root>/push-queue.db` for pushing to `address`.
    pub fn open(root: &Path, address: &str) -> Result<Arc<Self>, StoreError> {
        let target = addr::open(address)?;
        // Shown in stats and logs without its parameters (an s3:// address may carry keys).
        let address = address.split('?').next().unwrap_or(address);
        let path = root.join("push-queue.db");
        let db_error = |e: rusqlite::Error| StoreError::io(&path, std::io::Error::other(e));
        let db = Connection::open(&path).map_err(db_error)?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS queue (
                 checksum TEXT PRIMARY KEY,
                 queued_at REAL NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_try REAL NOT NULL DEFAULT 0,
                 last_error TEXT
             );
             -- A restart is a fresh start: what waited for its backoff is due at once (the
             -- target may be back), and asked about in one batch.
             UPDATE queue SET next_try = 0;",
        )
        .map_err(db_error)?;
        Ok(Arc::new(PushQueue {
            target,
            address: address.to_string(),
            path,
            db: Mutex::new(db),
            progress: Mutex::new(PushStats {
                target: address.to_string(),
                ..PushStats::default()
            }),
            in_flight: Mutex::default(),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        }))
    }

    fn db_error(&self, e: rusqlite::Error) -> StoreError {
        StoreError::io(&self.path, std::io::Error::other(e))
    }

    /// Queue a buffer (durably; a buffer already queued stays queued once).
    pub fn enqueue(&self, checksum: &Checksum) -> Result<(), StoreError> {
        self.db
            .lock()
            .expect("push db lock")
            .execute(
                "INSERT OR IGNORE INTO queue (checksum, queued_at) VALUES (?1, ?2)",
                params![checksum.hex(), now()],
            )
            .map_err(|e| self.db_error(e))?;
        self.changed.notify_all();
        Ok(())
    }

    fn is_queued(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        self.db
            .lock()
            .expect("push db lock")
            .query_row(
                "SELECT 1 FROM queue WHERE checksum = ?1",
                [checksum.hex()],
                |_| Ok(()),
            )
            .optional()
            .map(|row| row.is_some())
            .map_err(|e| self.db_error(e))
    }

    /// Wait until `checksum` is no longer queued (pushed), at most `timeout`; whether it was.
    pub fn wait_pushed(&self, checksum: &Checksum, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_queued(checksum)? {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let progress = self.progress.lock().expect("push progress lock");
            let _ = self
                .changed
                .wait_timeout(progress, left.min(Duration::from_millis(200)));
        }
    }

    pub fn stats(&self) -> PushStats {
        let queued = self
            .db
            .lock()
            .expect("push db lock")
            .query_row("SELECT count(*) FROM queue", [], |r| r.get::<_, u64>(0))
            .unwrap_or(0);
        let in_flight = self.in_flight.lock().expect("in flight lock").len() as u64;
        PushStats {
            queued,
            in_flight,
            ..self.progress.lock().expect("push progress lock").clone()
        }
    }

    /// The due buffers, oldest first.
    fn due(&self, limit: u32) -> Result<Vec<(Checksum, u32)>, StoreError> {
        let db = self.db.lock().expect("push db lock");
        let mut query = db
            .prepare(
                "SELECT checksum, attempts FROM queue WHERE next_try <= ?1 \
                 ORDER BY queued_at LIMIT ?2",
            )
            .map_err(|e| self.db_error(e))?;
        let rows = query
            .query_map(params![now(), limit], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
            })
            .map_err(|e| self.db_error(e))?;
        Ok(rows
            .filter_map(Result::ok)
            .filter_map(|(hex, attempts)| Some((Checksum::parse_strict(&hex)?, attempts)))
            .collect())
    }

    /// Start the pusher thread, reading buffers from `source`; it stops when the handle drops.
    pub fn start(self: &Arc<Self>, source: Arc<dyn Tier>) -> PushLoop {
        let queue: Weak<PushQueue> = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("seamfs-push".into())
            .spawn(move || {
                while let Some(queue) = queue.upgrade() {
                    if queue.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    queue.push_due(source.as_ref());
                }
            })
            .expect("start the push thread");
        PushLoop {
            queue: self.clone(),
            thread: Some(thread),
        }
    }

    /// Push what is due now, or wait a little for more.
    fn push_due(&self, source: &dyn Tier) {
        let due = match self.due(BATCH) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the push queue");
                Vec::new()
            }
        };
        if due.is_empty() {
            let progress = self.progress.lock().expect("push progress lock");
            let _ = self
                .changed
                .wait_timeout(progress, Duration::from_millis(250));
            return;
        }
        // One question for the batch; if it fails, each upload fails (or succeeds) on its own.
        let checksums: Vec<Checksum> = due.iter().map(|(checksum, _)| *checksum).collect();
        let there = self
            .target
            .has_many(&checksums)
            .unwrap_or_else(|_| vec![false; checksums.len()]);
        for ((checksum, attempts), there) in due.into_iter().zip(there) {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            self.in_flight
                .lock()
                .expect("in flight lock")
                .insert(checksum);
            let result = if there {
                Ok(0)
            } else {
                self.push_one(source, &checksum)
            };
            self.in_flight
                .lock()
                .expect("in flight lock")
                .remove(&checksum);
            if let Err(e) = self.settle(&checksum, attempts, result) {
                tracing::error!(error = %e, "cannot update the push queue");
            }
            self.changed.notify_all();
        }
    }

    /// Upload one buffer (the target lacks it); the bytes uploaded.
    fn push_one(&self, source: &dyn Tier, checksum: &Checksum) -> Result<u64, StoreError> {
        let Some(reader) = source.open_read(checksum)? else {
            // Removed by gc before it was pushed: nothing is left to push.
            tracing::warn!(%checksum, "a queued buffer is no longer in the store: dropped from the push queue");
            return Ok(0);
        };
        copy_into(&reader, self.target.as_ref(), checksum)?;
        Ok(reader.len())
    }

    /// Record the outcome: pushed buffers leave the queue, failed ones wait for their backoff.
    fn settle(
        &self,
        checksum: &Checksum,
        attempts: u32,
        result: Result<u64, StoreError>,
    ) -> Result<(), StoreError> {
        let db = self.db.lock().expect("push db lock");
        let mut progress = self.progress.lock().expect("push progress lock");
        match result {
            Ok(bytes) => {
                db.execute("DELETE FROM queue WHERE checksum = ?1", [checksum.hex()])
                    .map_err(|e| self.db_error(e))?;
                progress.pushed += 1;
                progress.bytes += bytes;
            }
            Err(e) => {
                let backoff = (0.5 * 2f64.powi(attempts as i32)).min(MAX_BACKOFF);
                tracing::warn!(target = %self.address, %checksum, error = %e, backoff, "push failed; will retry");
                db.execute(
                    "UPDATE queue SET attempts = attempts + 1, next_try = ?2, last_error = ?3 \
                     WHERE checksum = ?1",
                    params![checksum.hex(), now() + backoff, e.to_string()],
                )
                .map_err(|e| self.db_error(e))?;
                progress.failed += 1;
                progress.last_error = Some(e.to_string());
            }
        }
        Ok(())
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The pusher thread; dropping it stops the thread (what is queued stays queued).
pub struct PushLoop {
    queue: Arc<PushQueue>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PushLoop {
    /// The queue this loop pushes.
    pub fn queue(&self) -> &Arc<PushQueue> {
        &self.queue
    }
}

impl Drop for PushLoop {
    fn drop(&mut self) {
        self.queue.stop.store(true, Ordering::Relaxed);
        self.queue.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The store's tiers with every committed or put buffer queued for the push target.
pub struct Pushing {
    tiers: Arc<dyn Tier>,
    queue: Arc<PushQueue>,
}

impl Pushing {
    pub fn new(tiers: Arc<dyn Tier>, queue: Arc<PushQueue>) -> Self {
        Pushing { tiers, queue }
    }
}

impl Tier for Pushing {
    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError> {
        self.tiers.length(checksum)
    }
    fn has(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        self.tiers.has(checksum)
    }
    fn has_many(&self, checksums: &[Checksum]) -> Result<Vec<bool>, StoreError> {
        self.tiers.has_many(checksums)
    }
    fn length_many(&self, checksums: &[Checksum]) -> Result<Vec<Option<u64>>, StoreError> {
        self.tiers.length_many(checksums)
    }
    fn open_read(&self, checksum: &Checksum) -> Result<Option<Reader>, StoreError> {
        self.tiers.open_read(checksum)
    }
    fn begin_write(&self) -> Result<Box<dyn TierWrite>, StoreError> {
        Ok(Box::new(QueuedWrite {
            write: self.tiers.begin_write()?,
            queue: self.queue.clone(),
        }))
    }
    fn resume_write(&self, path: &Path) -> Result<Option<Box<dyn TierWrite>>, StoreError> {
        Ok(self.tiers.resume_write(path)?.map(|write| {
            Box::new(QueuedWrite {
                write,
                queue: self.queue.clone(),
            }) as Box<dyn TierWrite>
        }))
    }
    fn list(&self) -> Listing {
        self.tiers.list()
    }
    fn local_path(&self, checksum: &Checksum) -> Option<PathBuf> {
        self.tiers.local_path(checksum)
    }
    fn remove(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        self.tiers.remove(checksum)
    }
    fn stats(&self) -> Stats {
        self.tiers.stats()
    }
    fn fetch_cost(&self, checksum: &Checksum, size: u64) -> f64 {
        self.tiers.fetch_cost(checksum, size)
    }
    fn hold(&self, checksum: &Checksum) {
        self.tiers.hold(checksum)
    }
    fn release(&self, checksum: &Checksum) {
        self.tiers.release(checksum)
    }
    fn pin(&self, checksum: &Checksum, pinned: bool) {
        self.tiers.pin(checksum, pinned)
    }
    fn derived(&self, checksum: &Checksum, cpu_seconds: f64) {
        self.tiers.derived(checksum, cpu_seconds)
    }
    fn evictor(&self) -> Option<&dyn Evict> {
        self.tiers.evictor()
    }
    fn read_through(
        &self,
        checksum: &Checksum,
        cache: &Arc<dyn Tier>,
    ) -> Option<Result<Option<Reader>, StoreError>> {
        self.tiers.read_through(checksum, cache)
    }
    fn get(&self, checksum: &Checksum) -> Result<Option<Buffer>, StoreError> {
        self.tiers.get(checksum)
    }
    fn put(&self, buffer: &Buffer) -> Result<Checksum, StoreError> {
        let checksum = self.tiers.put(buffer)?;
        self.queue.enqueue(&checksum)?;
        Ok(checksum)
    }
}

/// A write that queues its buffer for the push target once committed.
struct QueuedWrite {
    write: Box<dyn TierWrite>,
    queue: Arc<PushQueue>,
}

impl TierWrite for QueuedWrite {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.write.write_at(offset, data)
    }
    fn set_len(&mut self, len: u64) -> Result<(), StoreError> {
        self.write.set_len(len)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        self.write.read_at(offset, buf)
    }
    fn read_back(&self) -> Option<std::fs::File> {
        self.write.read_back()
    }
    fn len(&self) -> u64 {
        self.write.len()
    }
    fn commit(self: Box<Self>, expected: Option<Checksum>) -> Result<Checksum, StoreError> {
        let checksum = self.write.commit(expected)?;
        self.queue.enqueue(&checksum)?;
        Ok(checksum)
    }
    fn commit_deferred(
        self: Box<Self>,
        expected: Option<Checksum>,
    ) -> Result<Checksum, StoreError> {
        let checksum = self.write.commit_deferred(expected)?;
        self.queue.enqueue(&checksum)?;
        Ok(checksum)
    }
    fn needs_rehash(&self) -> bool {
        self.write.needs_rehash()
    }
    fn keep(&mut self, tag: &str) -> Result<Option<Kept>, StoreError> {
        self.write.keep(tag)
    }
    fn overlay(&mut self, base: std::fs::File, len: u64) -> Result<bool, StoreError> {
        self.write.overlay(base, len)
    }
}
