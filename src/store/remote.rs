//! What every network tier shares (`http.rs`, a hashserver; `s3.rs`, an object store): the
//! `Backend` a network tier implements in a few async calls, and `RemoteTier`, which makes a
//! backend a synchronous `Tier` that users can trust:
//!
//! * **Runtime.** Network I/O runs on one small tokio runtime owned by this module (threads
//!   `seamfs-remote`). The `Tier` methods are synchronous: they hand their future to that runtime
//!   and wait on a channel, so a FUSE thread or a `spawn_blocking` caller never blocks one of the
//!   runtime's own workers, and the daemon's HTTP runtime never waits on the network.
//! * **Timeouts and retries.** Every request has a timeout; failures that may pass (connection
//!   refused, 5xx, a timeout) are retried with backoff. A remote that still fails is remembered
//!   as down for a moment (`down_for`), so a burst of lookups fails at once instead of waiting a
//!   timeout each; after that it is tried again: it recovers by itself. A down remote is an error
//!   (EIO, with its address in the log), never "not found".
//! * **Negative cache.** A buffer the remote does not have is remembered as missing for
//!   `negative_ttl` (short: buffers appear on remotes all the time).
//! * **Verified read-through.** A download streams into a pending write of the tier above
//!   (`Tier::read_through`), whose commit verifies the SHA-256 before the buffer is kept. Readers
//!   of a big buffer are served while it streams, except its last `VERIFY_HOLD` bytes, which are
//!   served only once the whole buffer is verified: a reader never reaches the end of a buffer
//!   that turns out corrupt (it gets EIO), and buffers up to that size are verified before any
//!   byte is served. Concurrent readers of one checksum share one download; they read the
//!   received bytes through a handle of their own on the pending file (`TierWrite::read_back`),
//!   so a reader never waits for the writer's I/O, nor the writer for a reader's. A download that
//!   breaks off resumes with a ranged request where it stopped.
//! * **Read-ahead.** A body is received on the runtime up to `READ_AHEAD` chunks ahead of the
//!   download thread that writes and hashes it (`read_ahead`), so the connection never waits
//!   for the disk or the hasher.
//! * **Writes** are staged in a local temp file (they may arrive out of order), hashed at commit,
//!   and only then uploaded, so a remote never receives bytes under the wrong checksum.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::disk::Sealed;
use super::{
    CostProfile, Counters, DiskStore, Listing, PendingWrite, RangedRead, Reader, Stats, StoreError,
    Tier, TierWrite, ask_lacking, ask_lacking_lengths,
};
use crate::checksum::Checksum;

/// Buffers up to this size are verified before any byte is served; of a bigger one, this tail.
pub const VERIFY_HOLD: u64 = 1 << 20;

/// How a network tier behaves on a slow or failing remote (address query parameters
/// `timeout`, `retries`, `negative-ttl`, `down-for`; see `addr`).
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Longest wait for one request (connect, headers, or the next chunk of a body).
    pub timeout: Duration,
    /// Extra attempts after a failure that may pass.
    pub retries: u32,
    /// How long a missing buffer is remembered as missing.
    pub negative_ttl: Duration,
    /// How long a remote that failed every attempt is not tried again.
    pub down_for: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            timeout: Duration::from_secs(10),
            retries: 2,
            negative_ttl: Duration::from_secs(2),
            down_for: Duration::from_secs(1),
        }
    }
}

/// Why a remote request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// May pass: connection refused or reset, a timeout, a 5xx. Retried.
    #[error("{0}")]
    Unavailable(String),
    /// Will not pass by retrying (a 4xx, a refused upload).
    #[error("{0}")]
    Refused(String),
}

/// A stream of body chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, RemoteError>> + Send>>;

/// The body of a GET: the buffer's full length and its bytes from the requested offset.
pub struct Body {
    pub total: u64,
    pub chunks: ByteStream,
}

/// A network tier's few operations (async, on the remote runtime).
pub trait Backend: Send + Sync + 'static {
    /// The tier's name in stats (`"http"`, `"s3"`).
    fn kind(&self) -> &'static str;
    /// The address, for logs and errors.
    fn address(&self) -> &str;
    /// What a download from here costs (seamless-core's cost profiles).
    fn cost(&self) -> CostProfile;
    /// The length of each buffer, `None` where absent (one batch).
    fn lengths(
        &self,
        checksums: Vec<Checksum>,
    ) -> impl Future<Output = Result<Vec<Option<u64>>, RemoteError>> + Send;
    /// Whether each buffer is present (one batch; may be cheaper than `lengths`).
    fn present(
        &self,
        checksums: Vec<Checksum>,
    ) -> impl Future<Output = Result<Vec<bool>, RemoteError>> + Send {
        let lengths = self.lengths(checksums);
        async move { Ok(lengths.await?.iter().map(Option::is_some).collect()) }
    }
    /// The buffer's bytes from `offset` on; `None` if absent.
    fn get(
        &self,
        checksum: Checksum,
        offset: u64,
    ) -> impl Future<Output = Result<Option<Body>, RemoteError>> + Send;
    /// Upload a verified local file as the buffer `checksum`.
    fn put_file(
        &self,
        checksum: Checksum,
        path: PathBuf,
        len: u64,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// Delete the buffer; false if it was not there.
    fn remove(&self, checksum: Checksum) -> impl Future<Output = Result<bool, RemoteError>> + Send;
    /// Every stored checksum.
    fn list(&self) -> impl Future<Output = Result<Vec<Checksum>, RemoteError>> + Send;
    /// Most checksums one `lengths`/`present` call should carry.
    fn batch_size(&self) -> usize {
        1000
    }
}

/// The runtime network tiers run on (started on first use, two worker threads).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("seamfs-remote")
            .enable_all()
            .build()
            .expect("start the remote I/O runtime")
    })
}

/// How many chunks of a body are received ahead of the download that writes them.
const READ_AHEAD: usize = 16;

/// `chunks`, received on the runtime up to `READ_AHEAD` chunks ahead of their consumer: the
/// connection keeps reading while the download writes and hashes what came before. (The HTTP
/// client reads on only once its last chunk is taken, so a download that takes its chunks one
/// by one went stop-and-go, at 0.45-0.8 GB/s where curl got 2.4 GB/s from the same server.)
/// The reading stops when the stream is dropped, ends or fails.
fn read_ahead(mut chunks: ByteStream) -> ByteStream {
    let (send, receive) = tokio::sync::mpsc::channel(READ_AHEAD);
    runtime().spawn(async move {
        loop {
            let next = tokio::select! {
                next = chunks.next() => next,
                () = send.closed() => return,
            };
            let Some(next) = next else { return };
            let failed = next.is_err();
            if send.send(next).await.is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(receive, |mut receive| async {
        let next = receive.recv().await?;
        Some((next, receive))
    }))
}

/// Run `future` on the remote runtime and wait for it from this (non-runtime) thread.
pub fn wait<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    let (send, receive) = mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = send.send(future.await);
    });
    receive
        .recv()
        .expect("the remote runtime dropped a request")
}

/// Retry `request` with backoff while it fails in a way that may pass; each attempt is bounded by
/// the timeout.
async fn with_retries<T, F, Fut>(options: &RemoteOptions, request: F) -> Result<T, RemoteError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, RemoteError>>,
{
    let mut attempt = 0;
    loop {
        let result = match tokio::time::timeout(options.timeout, request()).await {
            Ok(result) => result,
            Err(_) => Err(RemoteError::Unavailable(format!(
                "no answer within {:?}",
                options.timeout
            ))),
        };
        match result {
            Err(RemoteError::Unavailable(why)) if attempt < options.retries => {
                attempt += 1;
                tracing::debug!(attempt, error = %why, "retrying a remote request");
                tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt - 1)).await;
            }
            other => return other,
        }
    }
}

type Downloads = Arc<Mutex<HashMap<Checksum, Arc<Download>>>>;

/// A `Backend` as a `Tier` (see the module doc). Share it as `Arc`.
pub struct RemoteTier<B: Backend> {
    backend: Arc<B>,
    options: RemoteOptions,
    counters: Counters,
    /// Writes are staged here before their upload; reads without a tier above land here.
    staging: DiskStore,
    _staging_dir: tempfile::TempDir,
    missing: Mutex<HashMap<Checksum, Instant>>,
    down_until: Mutex<Option<(Instant, String)>>,
    downloads: Downloads,
    /// This tier, for the writes it hands out.
    me: std::sync::Weak<RemoteTier<B>>,
}

impl<B: Backend> RemoteTier<B> {
    pub fn new(backend: B, options: RemoteOptions) -> Result<Arc<Self>, StoreError> {
        let staging_dir = tempfile::Builder::new()
            .prefix("seamfs-remote-")
            .tempdir()
            .map_err(|e| StoreError::io(std::env::temp_dir(), e))?;
        let staging = DiskStore::open_named(staging_dir.path(), "staging")?;
        Ok(Arc::new_cyclic(|me| RemoteTier {
            backend: Arc::new(backend),
            options,
            counters: Counters::default(),
            staging,
            _staging_dir: staging_dir,
            missing: Mutex::default(),
            down_until: Mutex::default(),
            downloads: Downloads::default(),
            me: me.clone(),
        }))
    }

    pub fn address(&self) -> &str {
        self.backend.address()
    }

    /// One request with timeout and retries, run on the runtime. A remote that failed every
    /// attempt is not asked again for `down_for` (the same error is returned at once).
    fn call<T, F, Fut>(&self, request: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, RemoteError>> + Send,
    {
        if let Some((until, why)) = &*self.down_until.lock().expect("down lock")
            && Instant::now() < *until
        {
            return Err(self.error(&format!("unavailable: {why}")));
        }
        let options = self.options.clone();
        match wait(async move { with_retries(&options, request).await }) {
            Ok(value) => Ok(value),
            Err(RemoteError::Unavailable(why)) => {
                tracing::error!(remote = self.address(), error = %why, "remote unavailable");
                let until = Instant::now() + self.options.down_for;
                *self.down_until.lock().expect("down lock") = Some((until, why.clone()));
                Err(self.error(&format!("unavailable: {why}")))
            }
            Err(RemoteError::Refused(why)) => {
                tracing::error!(remote = self.address(), error = %why, "remote refused a request");
                Err(self.error(&format!("refused: {why}")))
            }
        }
    }

    /// `ask` the remote about `checksums` in batches of the backend's size, but not about what
    /// the negative cache knows to be missing (answered `T::default()`); every answer that
    /// `missing` calls missing is remembered as such, the others are forgotten.
    fn batched<T, F, Fut>(
        &self,
        checksums: &[Checksum],
        ask: F,
        missing: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError>
    where
        T: Default + Clone + Send + 'static,
        F: Fn(Arc<B>, Vec<Checksum>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<Vec<T>, RemoteError>> + Send,
    {
        let mut answers = vec![T::default(); checksums.len()];
        let unknown: Vec<usize> = (0..checksums.len())
            .filter(|&i| !self.known_missing(&checksums[i]))
            .collect();
        for batch in unknown.chunks(self.backend.batch_size()) {
            let asked: Vec<Checksum> = batch.iter().map(|&i| checksums[i]).collect();
            let (backend, ask) = (self.backend.clone(), ask.clone());
            let answer = self.call(move || ask(backend.clone(), asked.clone()))?;
            for (&i, answer) in batch.iter().zip(answer) {
                self.remember_missing(&checksums[i], missing(&answer));
                answers[i] = answer;
            }
        }
        Ok(answers)
    }

    fn error(&self, what: &str) -> StoreError {
        StoreError::io(self.address(), io::Error::other(format!("remote {what}")))
    }

    fn known_missing(&self, checksum: &Checksum) -> bool {
        let mut missing = self.missing.lock().expect("negative cache lock");
        match missing.get(checksum) {
            Some(since) if since.elapsed() < self.options.negative_ttl => true,
            Some(_) => {
                missing.remove(checksum);
                false
            }
            None => false,
        }
    }

    fn remember_missing(&self, checksum: &Checksum, is_missing: bool) {
        let mut missing = self.missing.lock().expect("negative cache lock");
        if is_missing {
            if missing.len() > 100_000 {
                let ttl = self.options.negative_ttl;
                missing.retain(|_, since| since.elapsed() < ttl);
            }
            missing.insert(*checksum, Instant::now());
        } else {
            missing.remove(checksum);
        }
    }

    /// Download `checksum` into `cache` (verified there by its commit), or join the download
    /// in progress. `None` if the remote does not have it.
    fn fetch(
        &self,
        checksum: &Checksum,
        cache: &Arc<dyn Tier>,
    ) -> Result<Option<Reader>, StoreError> {
        if self.known_missing(checksum) {
            self.counters.lookup(false);
            return Ok(None);
        }
        let (download, first) = {
            let mut downloads = self.downloads.lock().expect("downloads lock");
            match downloads.get(checksum) {
                Some(d) => (d.clone(), false),
                None => {
                    let d = Arc::new(Download::new(*checksum, cache.clone()));
                    downloads.insert(*checksum, d.clone());
                    (d, true)
                }
            }
        };
        if first {
            let started = self.start(&download);
            if !matches!(started, Ok(true)) {
                self.downloads
                    .lock()
                    .expect("downloads lock")
                    .remove(checksum);
            }
            match started {
                Ok(true) => {}
                Ok(false) => download.finish(Outcome::Missing),
                Err(e) => download.finish(Outcome::Failed(e.to_string())),
            }
        }
        download.reader()
    }

    /// Send the GET; when the remote has the buffer, stream it on a thread of its own into a
    /// pending write of the cache. Returns whether the remote has it.
    fn start(&self, download: &Arc<Download>) -> Result<bool, StoreError> {
        let checksum = download.checksum;
        let backend = self.backend.clone();
        let body = self.call(move || backend.clone().get_owned(checksum, 0))?;
        self.counters.lookup(body.is_some());
        let Some(body) = body else {
            self.remember_missing(&checksum, true);
            return Ok(false);
        };
        self.remember_missing(&checksum, false);
        download.begin(body.total, download.cache.begin_write()?);
        let streamer = Streamer {
            download: download.clone(),
            backend: self.backend.clone(),
            options: self.options.clone(),
            address: self.address().to_string(),
            chunks: read_ahead(body.chunks),
            downloads: self.downloads.clone(),
        };
        // Always on a thread of its own, even for a small buffer: the streamer waits on the
        // runtime with `block_on`, which the caller's thread may not do (a blocking-pool thread
        // of another runtime, say); the caller waits on the download instead.
        std::thread::Builder::new()
            .name("seamfs-download".into())
            .spawn(move || streamer.run())
            .map_err(|e| StoreError::io(self.address(), e))?;
        Ok(true)
    }

    /// Upload a verified staged file.
    fn upload(&self, sealed: &Sealed) -> Result<(), StoreError> {
        let (backend, checksum) = (self.backend.clone(), sealed.checksum());
        let (path, len) = (sealed.path().to_path_buf(), sealed.len());
        self.call(move || backend.clone().put_owned(checksum, path.clone(), len))?;
        self.remember_missing(&checksum, false);
        self.counters.put();
        Ok(())
    }
}

/// Owned-argument forms of the backend calls (futures that own an `Arc` of the backend can be
/// retried and sent to the runtime).
trait OwnedCalls<B: Backend> {
    fn lengths_owned(
        self,
        c: Vec<Checksum>,
    ) -> impl Future<Output = Result<Vec<Option<u64>>, RemoteError>> + Send;
    fn present_owned(
        self,
        c: Vec<Checksum>,
    ) -> impl Future<Output = Result<Vec<bool>, RemoteError>> + Send;
    fn get_owned(
        self,
        c: Checksum,
        offset: u64,
    ) -> impl Future<Output = Result<Option<Body>, RemoteError>> + Send;
    fn put_owned(
        self,
        c: Checksum,
        path: PathBuf,
        len: u64,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
}

impl<B: Backend> OwnedCalls<B> for Arc<B> {
    async fn lengths_owned(self, c: Vec<Checksum>) -> Result<Vec<Option<u64>>, RemoteError> {
        self.lengths(c).await
    }
    async fn present_owned(self, c: Vec<Checksum>) -> Result<Vec<bool>, RemoteError> {
        self.present(c).await
    }
    async fn get_owned(self, c: Checksum, offset: u64) -> Result<Option<Body>, RemoteError> {
        self.get(c, offset).await
    }
    async fn put_owned(self, c: Checksum, path: PathBuf, len: u64) -> Result<(), RemoteError> {
        self.put_file(c, path, len).await
    }
}

impl<B: Backend> Tier for RemoteTier<B> {
    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError> {
        Ok(self.length_many(std::slice::from_ref(checksum))?[0])
    }

    fn has(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        Ok(self.has_many(std::slice::from_ref(checksum))?[0])
    }

    /// Asked in batches of the backend's size; what the negative cache knows is not asked.
    fn has_many(&self, checksums: &[Checksum]) -> Result<Vec<bool>, StoreError> {
        self.batched(checksums, |b, c| b.present_owned(c), |present| !present)
    }

    /// As `has_many` (`/buffer-length` of a hashserver, a HEAD each on S3).
    fn length_many(&self, checksums: &[Checksum]) -> Result<Vec<Option<u64>>, StoreError> {
        self.batched(checksums, |b, c| b.lengths_owned(c), Option::is_none)
    }

    /// Without a tier above, the download is kept in the staging directory (and dropped from
    /// it once open: the reader maps it).
    fn open_read(&self, checksum: &Checksum) -> Result<Option<Reader>, StoreError> {
        let staging: Arc<dyn Tier> = Arc::new(self.staging.clone());
        let reader = self.fetch(checksum, &staging)?;
        if let Some(reader) = reader {
            let whole = Reader::Bytes(reader.into_buffer(*checksum)?);
            let _ = self.staging.remove(checksum);
            return Ok(Some(whole));
        }
        Ok(None)
    }

    fn read_through(
        &self,
        checksum: &Checksum,
        cache: &Arc<dyn Tier>,
    ) -> Option<Result<Option<Reader>, StoreError>> {
        Some(self.fetch(checksum, cache))
    }

    fn begin_write(&self) -> Result<Box<dyn TierWrite>, StoreError> {
        Ok(Box::new(StagedWrite {
            pending: self.staging.begin_write()?,
            tier: self.me.upgrade().expect("a tier in use is alive"),
        }))
    }

    fn list(&self) -> Listing {
        let backend = self.backend.clone();
        match self.call(move || {
            let backend = backend.clone();
            async move { backend.list().await }
        }) {
            Ok(all) => Box::new(all.into_iter().map(Ok)),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn remove(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        let (backend, checksum) = (self.backend.clone(), *checksum);
        let removed = self.call(move || {
            let backend = backend.clone();
            async move { backend.remove(checksum).await }
        })?;
        self.remember_missing(&checksum, true);
        Ok(removed)
    }

    fn stats(&self) -> Stats {
        Stats {
            tiers: vec![self.counters.snapshot(self.backend.kind())],
        }
    }

    fn fetch_cost(&self, _checksum: &Checksum, size: u64) -> f64 {
        self.backend.cost().cost(size)
    }
}

/// A write staged in a local temp file, uploaded at commit once its checksum is known.
struct StagedWrite<B: Backend> {
    pending: PendingWrite,
    tier: Arc<RemoteTier<B>>,
}

impl<B: Backend> TierWrite for StagedWrite<B> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.pending.write_at(offset, data)
    }

    fn set_len(&mut self, len: u64) -> Result<(), StoreError> {
        self.pending.set_len(len)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        self.pending.read_at(offset, buf)
    }

    fn read_back(&self) -> Option<std::fs::File> {
        self.pending.read_back()
    }

    fn len(&self) -> u64 {
        self.pending.len()
    }

    fn commit(self: Box<Self>, expected: Option<Checksum>) -> Result<Checksum, StoreError> {
        let sealed = self.pending.seal(expected)?;
        self.tier.upload(&sealed)?;
        Ok(sealed.checksum())
    }
}

/// How a download ended.
enum Outcome {
    /// Verified and kept in the cache: read it from there.
    Ready(Arc<Reader>),
    Missing,
    Failed(String),
}

/// One download of one buffer, shared by every reader of it.
struct Download {
    checksum: Checksum,
    /// The tier the buffer is downloaded into.
    cache: Arc<dyn Tier>,
    state: Mutex<Progress>,
    changed: Condvar,
    /// The pending write in the cache, until its commit. Its own lock: the streamer holds it
    /// while it writes, readers only when the write has no file to read back (`read_back`),
    /// so readers and the writer do not wait for each other's I/O.
    sink: Mutex<Option<Box<dyn TierWrite>>>,
}

#[derive(Default)]
struct Progress {
    /// The buffer's length, once the remote answered.
    total: Option<u64>,
    /// Bytes `[0, received)` are written.
    received: u64,
    /// The sink's file, read by readers without the sink's lock (`TierWrite::read_back`).
    read_back: Option<Arc<std::fs::File>>,
    outcome: Option<Outcome>,
}

impl Download {
    fn new(checksum: Checksum, cache: Arc<dyn Tier>) -> Self {
        Download {
            checksum,
            cache,
            state: Mutex::default(),
            changed: Condvar::new(),
            sink: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.state.lock().expect("download lock")
    }

    fn lock_sink(&self) -> std::sync::MutexGuard<'_, Option<Box<dyn TierWrite>>> {
        self.sink.lock().expect("download sink lock")
    }

    fn begin(&self, total: u64, sink: Box<dyn TierWrite>) {
        let read_back = sink.read_back().map(Arc::new);
        *self.lock_sink() = Some(sink);
        let mut state = self.lock();
        state.total = Some(total);
        state.read_back = read_back;
        self.changed.notify_all();
    }

    fn finish(&self, outcome: Outcome) {
        self.lock_sink().take();
        let mut state = self.lock();
        // Readers now read the outcome; the temp file's space is not held for them.
        state.read_back = None;
        state.outcome = Some(outcome);
        self.changed.notify_all();
    }

    /// Read received bytes from the sink; `None` once it is being committed.
    fn read_sink(&self, offset: u64, buf: &mut [u8]) -> Option<io::Result<usize>> {
        let sink = self.lock_sink();
        let read = sink.as_ref()?.read_at(offset, buf);
        Some(read.map_err(io::Error::other))
    }

    /// Wait until the download has started (a small buffer: ended), then hand out a reader.
    fn reader(self: &Arc<Self>) -> Result<Option<Reader>, StoreError> {
        let mut state = self.lock();
        loop {
            match &state.outcome {
                Some(Outcome::Missing) => return Ok(None),
                Some(Outcome::Failed(why)) => {
                    return Err(StoreError::io(
                        self.checksum.hex(),
                        io::Error::other(why.clone()),
                    ));
                }
                Some(Outcome::Ready(_)) => break,
                // A small buffer is served only once verified: wait for the end here, so a
                // corrupt one fails at open.
                None if state.total.is_some_and(|t| t > VERIFY_HOLD) => break,
                None => state = self.changed.wait(state).expect("download lock"),
            }
        }
        let total = state.total.unwrap_or(0);
        Ok(Some(Reader::Ranged(Box::new(Streaming {
            download: self.clone(),
            total,
        }))))
    }
}

/// A reader of a buffer being downloaded (see the module doc: the tail waits for verification).
struct Streaming {
    download: Arc<Download>,
    total: u64,
}

impl RangedRead for Streaming {
    fn len(&self) -> u64 {
        self.total
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let end = self.total.min(offset.saturating_add(buf.len() as u64));
        if offset >= end {
            return Ok(0);
        }
        let servable = self.total.saturating_sub(VERIFY_HOLD);
        let buf = &mut buf[..(end - offset) as usize];
        let mut state = self.download.lock();
        loop {
            match &state.outcome {
                Some(Outcome::Ready(reader)) => {
                    let reader = reader.clone();
                    drop(state);
                    return reader.read_at(offset, buf);
                }
                Some(Outcome::Failed(why)) => return Err(io::Error::other(why.clone())),
                Some(Outcome::Missing) => {
                    return Err(io::Error::other("the remote no longer has the buffer"));
                }
                None if end <= state.received && end <= servable => {
                    let read_back = state.read_back.clone();
                    drop(state);
                    if let Some(file) = read_back {
                        return std::os::unix::fs::FileExt::read_at(&*file, buf, offset);
                    }
                    if let Some(read) = self.download.read_sink(offset, buf) {
                        return read;
                    }
                    // The sink is being committed: wait for the outcome.
                    state = self.download.lock();
                    if state.outcome.is_none() {
                        state = self.download.changed.wait(state).expect("download lock");
                    }
                }
                None => state = self.download.changed.wait(state).expect("download lock"),
            }
        }
    }
}

/// Streams one body into its download's sink, resuming where a broken transfer stopped.
struct Streamer<B: Backend> {
    download: Arc<Download>,
    backend: Arc<B>,
    options: RemoteOptions,
    address: String,
    chunks: ByteStream,
    downloads: Downloads,
}

impl<B: Backend> Streamer<B> {
    fn run(mut self) {
        let checksum = self.download.checksum;
        let outcome = match self.transfer() {
            Ok(()) => self.commit(),
            Err(why) => Outcome::Failed(why),
        };
        if let Outcome::Failed(why) = &outcome {
            tracing::error!(remote = %self.address, %checksum, error = %why, "download failed");
        }
        self.downloads
            .lock()
            .expect("downloads lock")
            .remove(&checksum);
        self.download.finish(outcome);
    }

    /// Every byte into the sink (timeouts per chunk, resumed up to `retries` times).
    fn transfer(&mut self) -> Result<(), String> {
        let total = self.download.lock().total.unwrap_or(0);
        let mut resumes = 0;
        loop {
            let timeout = self.options.timeout;
            let next = runtime()
                .block_on(async { tokio::time::timeout(timeout, self.chunks.next()).await });
            let chunk = match next {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(None) => {
                    let received = self.download.lock().received;
                    if received == total {
                        return Ok(());
                    }
                    let why = format!("the body ended after {received} of {total} bytes");
                    self.resume(&mut resumes, &why)?;
                    continue;
                }
                Ok(Some(Err(e))) => {
                    self.resume(&mut resumes, &e.to_string())?;
                    continue;
                }
                Err(_) => {
                    self.resume(&mut resumes, &format!("no data within {timeout:?}"))?;
                    continue;
                }
            };
            // Only this thread changes `received`; the write holds only the sink's lock.
            let at = self.download.lock().received;
            let len = chunk.len() as u64;
            if at + len > total {
                return Err(format!(
                    "the remote sent more than the {total} bytes it announced"
                ));
            }
            {
                let mut sink = self.download.lock_sink();
                let sink = sink.as_mut().expect("a running download has a sink");
                sink.write_bytes(at, chunk).map_err(|e| e.to_string())?;
            }
            self.download.lock().received = at + len;
            self.download.changed.notify_all();
        }
    }

    /// Ask again from where the transfer stopped, or give up with `why`.
    fn resume(&mut self, resumes: &mut u32, why: &str) -> Result<(), String> {
        if *resumes >= self.options.retries {
            return Err(format!("{} ({why})", self.address));
        }
        *resumes += 1;
        let offset = self.download.lock().received;
        tracing::warn!(remote = %self.address, error = %why, offset, "download broke off: resuming");
        let (backend, checksum) = (self.backend.clone(), self.download.checksum);
        let options = self.options.clone();
        let body = runtime()
            .block_on(with_retries(&options, || {
                backend.clone().get_owned(checksum, offset)
            }))
            .map_err(|e| format!("{} ({e})", self.address))?
            .ok_or_else(|| {
                format!(
                    "{}: the buffer disappeared during the download",
                    self.address
                )
            })?;
        self.chunks = read_ahead(body.chunks);
        Ok(())
    }

    /// Commit the sink: the cache verifies the bytes against the checksum.
    fn commit(&self) -> Outcome {
        let checksum = self.download.checksum;
        let sink = self.download.lock_sink().take();
        let Some(sink) = sink else {
            return Outcome::Failed("download lost its sink".into());
        };
        match sink.commit(Some(checksum)) {
            Ok(_) => match self.committed_reader() {
                Ok(Some(reader)) => Outcome::Ready(Arc::new(reader)),
                Ok(None) => Outcome::Failed("the downloaded buffer vanished from the cache".into()),
                Err(e) => Outcome::Failed(e.to_string()),
            },
            Err(StoreError::Corrupt { actual, .. }) => Outcome::Failed(format!(
                "{} sent wrong bytes for {checksum} (their checksum is {actual}): refused",
                self.address
            )),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// The committed buffer for the download's readers: its local file read with `pread` when
    /// the cache has one, not the cache's memory map. A download's reader typically goes through
    /// the whole buffer once (a client streaming it over HTTP); every mapped page it touched
    /// would stay in the daemon's resident set, so serving a 4 GiB buffer would show as 4 GiB.
    fn committed_reader(&self) -> Result<Option<Reader>, StoreError> {
        let (cache, checksum) = (&self.download.cache, self.download.checksum);
        if let Some(path) = cache.local_path(&checksum)
            && let Ok(file) = std::fs::File::open(&path)
        {
            let len = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
            return Ok(Some(Reader::Ranged(Box::new(FileRange { file, len }))));
        }
        cache.open_read(&checksum)
    }
}

/// A local file read piecewise with `pread` (see `Streamer::committed_reader`).
struct FileRange {
    file: std::fs::File,
    len: u64,
}

impl RangedRead for FileRange {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.len.saturating_sub(offset) as usize);
        std::os::unix::fs::FileExt::read_at(&self.file, &mut buf[..want], offset)
    }
}

/// Several read-only tiers tried in order (`--remote A --remote B`): the first that has a buffer
/// serves it. A tier that fails is skipped; when none has the buffer and one failed, the failure
/// is returned (a remote that is down is not "missing"). Nothing is written, listed or removed
/// here: the tier above (`Layered::cache`) keeps those local.
pub struct Remotes {
    tiers: Vec<Arc<dyn Tier>>,
}

impl Remotes {
    pub fn new(tiers: Vec<Arc<dyn Tier>>) -> Self {
        Remotes { tiers }
    }

    /// The first answer that is `Some`, trying the tiers in order.
    fn first<T>(
        &self,
        ask: impl Fn(&dyn Tier) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut failure = None;
        for tier in &self.tiers {
            match ask(tier.as_ref()) {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
        }
        failure.map_or(Ok(None), Err)
    }

    /// `fill` in `answers` from each tier in turn (each fills only what the ones before it left
    /// at the default); a failure is returned only when some answer is still the default.
    fn each_for_the_rest<T: Default + PartialEq>(
        &self,
        mut answers: Vec<T>,
        fill: impl Fn(&dyn Tier, &mut [T]) -> Result<(), StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut failure = None;
        for tier in &self.tiers {
            if let Err(e) = fill(tier.as_ref(), &mut answers) {
                failure = Some(e);
            }
        }
        match failure {
            Some(e) if answers.contains(&T::default()) => Err(e),
            _ => Ok(answers),
        }
    }
}

impl Tier for Remotes {
    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError> {
        self.first(|t| t.length(checksum))
    }

    fn has(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        Ok(self
            .first(|t| Ok(t.has(checksum)?.then_some(())))?
            .is_some())
    }

    /// Each tier in turn is asked, in one call, about what the ones before it lack. As with
    /// `has`, a failure is returned only when some buffer was found nowhere.
    fn has_many(&self, checksums: &[Checksum]) -> Result<Vec<bool>, StoreError> {
        self.each_for_the_rest(vec![false; checksums.len()], |tier, found| {
            ask_lacking(tier, checksums, found)
        })
    }

    /// As `has_many`.
    fn length_many(&self, checksums: &[Checksum]) -> Result<Vec<Option<u64>>, StoreError> {
        self.each_for_the_rest(vec![None; checksums.len()], |tier, lengths| {
            ask_lacking_lengths(tier, checksums, lengths)
        })
    }

    fn open_read(&self, checksum: &Checksum) -> Result<Option<Reader>, StoreError> {
        self.first(|t| t.open_read(checksum))
    }

    fn read_through(
        &self,
        checksum: &Checksum,
        cache: &Arc<dyn Tier>,
    ) -> Option<Result<Option<Reader>, StoreError>> {
        Some(self.first(|t| match t.read_through(checksum, cache) {
            Some(result) => result,
            None => t.open_read(checksum),
        }))
    }

    fn begin_write(&self) -> Result<Box<dyn TierWrite>, StoreError> {
        Err(StoreError::Invalid(
            "--remote tiers are only read; push buffers with --push".into(),
        ))
    }

    fn list(&self) -> Listing {
        Box::new(std::iter::empty())
    }

    fn remove(&self, _checksum: &Checksum) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn stats(&self) -> Stats {
        Stats {
            tiers: self.tiers.iter().flat_map(|t| t.stats().tiers).collect(),
        }
    }

    fn fetch_cost(&self, checksum: &Checksum, size: u64) -> f64 {
        self.tiers
            .first()
            .map_or(f64::INFINITY, |t| t.fetch_cost(checksum, size))
    }
}
