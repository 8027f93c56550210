//! Every disk access of the buffer server: where a buffer's forms live (prefix or flat layout,
//! main and extra directories), existence and lengths (with `.BUFFERLENGTH` sidecars and
//! compressed forms), lock files, verification of a file against its name, and uploads streamed
//! to a temp file while hashed.
//!
//! A server over a tier stack (the mount's store, or `seamfs hashserver --remote/--push` over its
//! directory) writes through the stack (the disk tier's temp dir, fsync and verification, then
//! the push queue); a plain `seamfs hashserver` writes `<cs>-<random>` temp files beside the
//! target, as hashserver does. Either way the buffer lands at the directory's own path, so the
//! Python hashserver can share the directory.
//!
//! Compressed uploads are decompressed on the way in and stored raw (docs/compat.md): every
//! reader of the directory (the mount, `BufferClient` in directory mode) can then use them.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::Digest;

use super::dir_index::{DirIndex, Look};
use super::protocol::{Form, suffix};
use crate::checksum::{Checksum, Compression};
use crate::store::disk::PREFIX_SENTINEL;
use crate::store::{
    Layout, Reader, Store, StoreError, Tier, TierWrite, ask_lacking, ask_lacking_lengths,
};

/// Verified files remembered; past this the memory is cleared (and files re-hashed once more).
const VERIFIED_LIMIT: usize = 1 << 20;

/// The hash a directory names its buffers by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha3_256,
}

impl Algorithm {
    /// The name hashserver uses (`--hash-algorithm`, corruption messages).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha-256",
            Algorithm::Sha3_256 => "sha3-256",
        }
    }

    fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha3_256 => Hasher::Sha3(Box::default()),
        }
    }

    /// The checksum of a whole file.
    fn of_file(self, file: File) -> io::Result<Checksum> {
        match self {
            Algorithm::Sha256 => Checksum::of_file(file),
            Algorithm::Sha3_256 => {
                let mut hasher = self.hasher();
                io::copy(
                    &mut io::BufReader::with_capacity(1 << 20, file),
                    &mut hasher,
                )?;
                Ok(hasher.finish())
            }
        }
    }
}

/// Boxed: SHA3's state is three times SHA-256's (one hasher per upload).
enum Hasher {
    Sha256(sha2::Sha256),
    Sha3(Box<sha3::Sha3_256>),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha3(h) => h.update(data),
        }
    }

    fn finish(self) -> Checksum {
        let raw: [u8; 32] = match self {
            Hasher::Sha256(h) => h.finalize().into(),
            Hasher::Sha3(h) => (*h).finalize().into(),
        };
        Checksum::from_slice(&raw).expect("32 bytes")
    }
}

impl Write for Hasher {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.update(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One buffer directory and its layout.
#[derive(Clone, Debug)]
pub struct BufferDir {
    pub root: PathBuf,
    pub layout: Layout,
}

impl BufferDir {
    /// An extra directory: prefix layout if it holds the sentinel, else flat.
    pub fn detect(root: PathBuf) -> BufferDir {
        let layout = if root.join(PREFIX_SENTINEL).exists() {
            Layout::Prefix
        } else {
            Layout::Flat
        };
        BufferDir { root, layout }
    }

    /// The directory a buffer's files go in.
    fn dir_of(&self, checksum: &Checksum) -> PathBuf {
        match self.layout {
            Layout::Prefix => self.root.join(&checksum.hex()[..2]),
            Layout::Flat => self.root.clone(),
        }
    }

    /// The raw form's path; the other forms add a suffix.
    pub fn base_path(&self, checksum: &Checksum) -> PathBuf {
        self.dir_of(checksum).join(checksum.hex())
    }
}

/// A stored form found for a GET.
#[derive(Debug)]
pub struct Found {
    pub path: PathBuf,
    pub form: Form,
    pub meta: fs::Metadata,
}

/// Where the server keeps its buffers, and how it writes them.
pub struct Backend {
    main: BufferDir,
    extra: Vec<BufferDir>,
    algorithm: Algorithm,
    /// A tier stack whose top tier is the main directory: the mount's store, or a directory
    /// with remote tiers (`seamfs hashserver --remote/--push`). Uploads go through it (to be
    /// pushed), and buffers not (yet) in the directories are read from it (RAM, remotes).
    tiers: Option<Arc<dyn Tier>>,
    /// Files whose content was checked against their name, by identity (see `verified`).
    verified: Mutex<HashMap<Checksum, FileId>>,
    /// Listings of prefix directories for `/has`.
    index: DirIndex,
}

/// What identifies one version of a file: rewriting or replacing it changes one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl Backend {
    /// A hashserver directory (`seamfs hashserver DIR`).
    pub fn directory(main: BufferDir, extra: Vec<BufferDir>, algorithm: Algorithm) -> Backend {
        Backend {
            main,
            extra,
            algorithm,
            tiers: None,
            verified: Mutex::new(HashMap::new()),
            index: DirIndex::default(),
        }
    }

    /// The mount's store: its disk tier's buffer directory (prefix layout, SHA-256) and, for
    /// what is not there, its tier stack.
    pub fn store(store: &Store) -> Backend {
        let main = BufferDir {
            root: store.root().join("buffers"),
            layout: Layout::Prefix,
        };
        Backend::tiered(main, Vec::new(), store.tiers().clone())
    }

    /// A directory (SHA-256) whose tier heads `tiers` (see `Backend::tiers`), with `extra`
    /// read-only directories.
    pub fn tiered(main: BufferDir, extra: Vec<BufferDir>, tiers: Arc<dyn Tier>) -> Backend {
        Backend {
            main,
            extra,
            algorithm: Algorithm::Sha256,
            tiers: Some(tiers),
            verified: Mutex::new(HashMap::new()),
            index: DirIndex::default(),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn main(&self) -> &BufferDir {
        &self.main
    }

    /// Directories to look in, main first.
    fn dirs(&self) -> impl Iterator<Item = &BufferDir> {
        std::iter::once(&self.main).chain(&self.extra)
    }

    /// The first form that exists, in `order`, in the main directory, then in each extra one.
    pub fn find(&self, checksum: &Checksum, order: &[Form]) -> Option<Found> {
        self.dirs().find_map(|dir| {
            let base = dir.base_path(checksum);
            order.iter().find_map(|&form| {
                let path = with_suffix(&base, form);
                let meta = fs::metadata(&path).ok()?;
                Some(Found { path, form, meta })
            })
        })
    }

    /// Whether any form of each buffer exists in any directory or tier (`/has`). A prefix
    /// directory is looked at once per call, from a remembered listing while it is unchanged
    /// (`dir_index`); a flat one by a `stat` per form.
    pub fn has_many(&self, checksums: &[Checksum]) -> Vec<bool> {
        let mut looks: HashMap<PathBuf, Look> = HashMap::new();
        let in_dirs = |checksum: &Checksum| {
            self.dirs().any(|dir| {
                let base = dir.base_path(checksum);
                match dir.layout {
                    Layout::Prefix => looks
                        .entry(dir.dir_of(checksum))
                        .or_insert_with_key(|path| self.index.look(path))
                        .has(checksum, &base),
                    Layout::Flat => Look::Unsettled.has(checksum, &base),
                }
            })
        };
        let mut found: Vec<bool> = checksums.iter().map(in_dirs).collect();
        if let Some(tiers) = &self.tiers {
            ask_tiers(tiers.as_ref(), checksums, &mut found);
        }
        found
    }

    /// A reader of the buffer from the tier stack, when it is in none of the directories (a
    /// store's RAM tier holds buffers before they reach the disk; a remote is read through,
    /// verified, and its reader serves the bytes as they arrive).
    pub fn from_tiers(&self, checksum: &Checksum) -> io::Result<Option<Reader>> {
        let Some(tiers) = &self.tiers else {
            return Ok(None);
        };
        tiers.open_read(checksum).map_err(store_io)
    }

    /// The decompressed lengths (`/buffer-length`): the raw file's size, else a sidecar, else a
    /// compressed form decompressed, else what the tier stack knows (one `length_many` for
    /// what the directories lack: a remote tier asks in batches); 0 when absent, as hashserver
    /// answers.
    pub fn lengths(&self, checksums: &[Checksum]) -> Vec<u64> {
        let mut lengths: Vec<Option<u64>> = checksums
            .iter()
            .map(|c| self.dirs().find_map(|dir| length_in(&dir.base_path(c))))
            .collect();
        if let Some(tiers) = &self.tiers {
            lengths_from_tiers(tiers.as_ref(), checksums, &mut lengths);
        }
        lengths.into_iter().map(|l| l.unwrap_or(0)).collect()
    }

    /// The lock files a GET waits for: the directory's (or prefix directory's) `.LOCK` and
    /// `<path>.LOCK`. As in hashserver, the directory lock is always the main directory's.
    pub fn lock_paths(&self, checksum: &Checksum, path: Option<&Path>) -> Vec<PathBuf> {
        let mut locks = vec![self.main.dir_of(checksum).join(".LOCK")];
        let path = path.map_or_else(|| self.main.base_path(checksum), Path::to_path_buf);
        locks.push(with_suffix_str(&path, ".LOCK"));
        locks
    }

    /// Whether `file` (opened at `found`) holds the content its name says, re-hashing it unless
    /// this very file (same inode, size, mtime and ctime) was checked before.
    pub fn verify(&self, checksum: &Checksum, found: &Found, file: &File) -> io::Result<bool> {
        let id = FileId::of(&found.meta);
        if self.verified.lock().unwrap().get(checksum) == Some(&id) {
            return Ok(true);
        }
        if self.algorithm.of_file(file.try_clone()?)? != *checksum {
            return Ok(false);
        }
        self.remember_verified(checksum, id);
        Ok(true)
    }

    fn remember_verified(&self, checksum: &Checksum, id: FileId) {
        let mut verified = self.verified.lock().unwrap();
        if verified.len() >= VERIFIED_LIMIT {
            verified.clear();
        }
        verified.insert(*checksum, id);
    }

    /// Whether a PUT finds the buffer already stored: its raw form, or the very form the upload
    /// names (or, over a tier stack, any tier). The file is made read-only, as hashserver does.
    pub fn already_stored(&self, checksum: &Checksum, upload: Form) -> bool {
        let base = self.main.base_path(checksum);
        let mut forms = vec![None];
        if upload.is_some() {
            forms.push(upload);
        }
        let on_disk = forms.into_iter().any(|form| {
            let path = with_suffix(&base, form);
            let stored = path.is_file();
            if stored && self.tiers.is_none() {
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o444));
            }
            stored
        });
        on_disk
            || self
                .tiers
                .as_ref()
                .is_some_and(|t| t.has(checksum).unwrap_or(false))
    }

    /// Start an upload of `checksum`, whose body is compressed as `compression` says.
    pub fn begin_upload(
        &self,
        checksum: Checksum,
        compression: Option<Compression>,
    ) -> io::Result<Upload<'_>> {
        let target = match &self.tiers {
            Some(tiers) => Target::Store(tiers.begin_write().map_err(store_io)?),
            None => Target::Temp(self.temp_file(&checksum)?),
        };
        let hasher = match target {
            // The store's writer hashes (SHA-256) what it writes.
            Target::Store(_) => None,
            Target::Temp(_) => Some(self.algorithm.hasher()),
        };
        let sink = Sink {
            target,
            hasher,
            len: 0,
        };
        let decoder = match compression {
            None => Decoder::Raw(sink),
            Some(Compression::Gzip) => Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(sink))),
            Some(Compression::Zstd) => {
                Decoder::Zstd(Box::new(zstd::stream::write::Decoder::new(sink)?))
            }
        };
        Ok(Upload {
            backend: self,
            checksum,
            decoder,
        })
    }

    /// A `<cs>-<random>` temp file in the buffer's directory (created `3775` when missing).
    fn temp_file(&self, checksum: &Checksum) -> io::Result<TempFile> {
        let dir = self.main.dir_of(checksum);
        if self.main.layout == Layout::Prefix && !dir.is_dir() {
            match fs::create_dir(&dir) {
                Ok(()) => {
                    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o3775));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let path = dir.join(format!("{}-{:016x}", checksum.hex(), rand::random::<u64>()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        Ok(TempFile {
            file: io::BufWriter::with_capacity(1 << 20, file),
            path: Some(path),
        })
    }
}

/// Mark what the tier stack holds of what the directories lack: one `has_many` (a remote
/// tier asks in batches). If that fails (a remote down while another has some), each is
/// asked on its own, so that what any tier holds is still found.
fn ask_tiers(tiers: &dyn Tier, checksums: &[Checksum], found: &mut [bool]) {
    let Err(e) = ask_lacking(tiers, checksums, found) else {
        return;
    };
    tracing::warn!(error = %e, "/has: the tiers failed a batch; asking one by one");
    for (answer, checksum) in found.iter_mut().zip(checksums) {
        *answer = *answer || tiers.has(checksum).unwrap_or(false);
    }
}

/// As `ask_tiers`, for lengths.
fn lengths_from_tiers(tiers: &dyn Tier, checksums: &[Checksum], lengths: &mut [Option<u64>]) {
    let Err(e) = ask_lacking_lengths(tiers, checksums, lengths) else {
        return;
    };
    tracing::warn!(error = %e, "/buffer-length: the tiers failed a batch; asking one by one");
    for (length, checksum) in lengths.iter_mut().zip(checksums) {
        *length = length.or_else(|| tiers.length(checksum).ok().flatten());
    }
}

/// The decompressed length of the buffer stored at `base` (in some form), if any.
fn length_in(base: &Path) -> Option<u64> {
    if let Ok(meta) = fs::metadata(base) {
        return Some(meta.len());
    }
    if let Some(length) = read_sidecar(base) {
        return Some(length);
    }
    [Compression::Zstd, Compression::Gzip]
        .into_iter()
        .find_map(|c| decompressed_length(&with_suffix(base, Some(c)), c))
}

/// Decompress a stored compressed form piece by piece into `send` (false: stop, the receiver is
/// gone), hashing on the way; an error at the end if the content is not `checksum`'s.
pub fn stream_decompressed(
    path: &Path,
    compression: Compression,
    algorithm: Algorithm,
    checksum: &Checksum,
    mut send: impl FnMut(bytes::Bytes) -> bool,
) -> io::Result<()> {
    let file = io::BufReader::new(File::open(path)?);
    let mut reader: Box<dyn io::Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
    };
    let mut hasher = algorithm.hasher();
    loop {
        let mut block = vec![0u8; 256 << 10];
        let n = reader.read(&mut block)?;
        if n == 0 {
            break;
        }
        block.truncate(n);
        hasher.update(&block);
        if !send(bytes::Bytes::from(block)) {
            return Ok(());
        }
    }
    if hasher.finish() != *checksum {
        return Err(io::Error::other(format!(
            "{} does not decompress to {checksum}",
            path.display()
        )));
    }
    Ok(())
}

/// `<base>.BUFFERLENGTH`: the decimal decompressed length.
fn read_sidecar(base: &Path) -> Option<u64> {
    let text = fs::read_to_string(with_suffix_str(base, ".BUFFERLENGTH")).ok()?;
    text.trim().parse().ok()
}

/// Decompress a whole compressed file to count its bytes (hashserver's last resort).
fn decompressed_length(path: &Path, compression: Compression) -> Option<u64> {
    let file = io::BufReader::new(File::open(path).ok()?);
    let mut counter = io::sink();
    let n = match compression {
        Compression::Gzip => io::copy(&mut flate2::read::GzDecoder::new(file), &mut counter),
        Compression::Zstd => io::copy(
            &mut zstd::stream::read::Decoder::new(file).ok()?,
            &mut counter,
        ),
    };
    n.ok()
}

/// The path of `form` of the buffer whose raw form is at `base`.
pub(super) fn with_suffix(base: &Path, form: Form) -> PathBuf {
    with_suffix_str(base, suffix(form))
}

fn with_suffix_str(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn store_io(e: StoreError) -> io::Error {
    match e {
        StoreError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

/// Wait while any of `locks` exists and is younger than `timeout` (polled every second).
pub async fn wait_for_locks(locks: &[PathBuf], timeout: Duration) {
    for lock in locks {
        loop {
            let Ok(meta) = tokio::fs::metadata(lock).await else {
                break;
            };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .unwrap_or_default();
            if age > timeout {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// How an upload ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (or found stored meanwhile): 200 `OK`.
    Stored,
    /// The content's hash is not the checksum in the URL: 400 `Incorrect checksum`.
    Mismatch,
    /// The compressed body could not be decoded: 400 `Invalid compressed payload`.
    BadPayload,
}

/// An upload in progress. Dropping it unfinished removes its temp file.
pub struct Upload<'a> {
    backend: &'a Backend,
    checksum: Checksum,
    decoder: Decoder,
}

/// The decoders are boxed: their state is hundreds of bytes, the raw sink's a few.
enum Decoder {
    Raw(Sink),
    Gzip(Box<flate2::write::GzDecoder<Sink>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Sink>>),
}

/// Marks an I/O error of the disk (not of the decoder) as it travels through a decoder.
#[derive(Debug)]
struct DiskError(io::Error);

impl std::fmt::Display for DiskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DiskError {}

/// Split an error from a decoder into the disk's (Err) or the payload's (Ok(BadPayload)).
fn classify(e: io::Error) -> io::Result<Outcome> {
    if e.get_ref().is_some_and(|inner| inner.is::<DiskError>()) {
        let inner = e.into_inner().expect("checked above");
        Err(inner.downcast::<DiskError>().expect("checked above").0)
    } else {
        Ok(Outcome::BadPayload)
    }
}

impl Upload<'_> {
    /// Take the next piece of the body. `Ok(Some(outcome))` ends the upload early (bad payload).
    pub fn write(&mut self, data: &[u8]) -> io::Result<Option<Outcome>> {
        let result = match &mut self.decoder {
            Decoder::Raw(sink) => sink.write_all(data),
            Decoder::Gzip(d) => d.write_all(data),
            Decoder::Zstd(d) => d.write_all(data),
        };
        match result {
            Ok(()) => Ok(None),
            Err(e) => classify(e).map(Some),
        }
    }

    /// The body is complete: check the hash and install the file.
    pub fn finish(self) -> io::Result<Outcome> {
        let Upload {
            backend,
            checksum,
            decoder,
        } = self;
        let sink = match decoder {
            Decoder::Raw(sink) => sink,
            Decoder::Gzip(mut d) => match d.try_finish() {
                Ok(()) => d.finish().map_err(|e| io::Error::other(e.to_string()))?,
                Err(e) => return end_of_stream(e),
            },
            Decoder::Zstd(mut d) => match d.flush() {
                Ok(()) => d.into_inner(),
                Err(e) => return end_of_stream(e),
            },
        };
        sink.commit(backend, checksum)
    }
}

/// A compressed body that ended early hashes what was decoded, so hashserver answers it with
/// `Incorrect checksum`; other decoder errors are a bad payload.
fn end_of_stream(e: io::Error) -> io::Result<Outcome> {
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::WriteZero => Ok(Outcome::Mismatch),
        _ => classify(e),
    }
}

/// Where decoded bytes go: the file, and the hasher.
struct Sink {
    target: Target,
    hasher: Option<Hasher>,
    len: u64,
}

enum Target {
    Store(Box<dyn TierWrite>),
    Temp(TempFile),
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let disk = |e: io::Error| io::Error::other(DiskError(e));
        match &mut self.target {
            Target::Store(pending) => pending
                .write_at(self.len, data)
                .map_err(|e| disk(store_io(e)))?,
            Target::Temp(temp) => temp.file.write_all(data).map_err(disk)?,
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(data);
        }
        self.len += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn commit(self, backend: &Backend, checksum: Checksum) -> io::Result<Outcome> {
        let base = backend.main.base_path(&checksum);
        match self.target {
            Target::Store(pending) => match pending.commit(Some(checksum)) {
                Ok(_) => {}
                Err(StoreError::Corrupt { .. }) => return Ok(Outcome::Mismatch),
                Err(e) => return Err(store_io(e)),
            },
            Target::Temp(temp) => {
                let actual = self.hasher.expect("temp uploads hash").finish();
                if actual != checksum {
                    return Ok(Outcome::Mismatch);
                }
                temp.install(&base)?;
            }
        }
        // The raw form is the one stored now: a stale sidecar would contradict it.
        let _ = fs::remove_file(with_suffix_str(&base, ".BUFFERLENGTH"));
        if let Ok(meta) = fs::metadata(&base) {
            backend.remember_verified(&checksum, FileId::of(&meta));
        }
        Ok(Outcome::Stored)
    }
}

/// A `<cs>-<random>` file beside its target; removed on drop unless installed.
struct TempFile {
    file: io::BufWriter<File>,
    path: Option<PathBuf>,
}

impl TempFile {
    /// Flush, make read-only and rename onto `target`, unless `target` exists already (then the
    /// temp file is just removed).
    fn install(mut self, target: &Path) -> io::Result<()> {
        self.file.flush()?;
        let path = self.path.as_ref().expect("not installed yet");
        fs::set_permissions(path, fs::Permissions::from_mode(0o444))?;
        if !target.exists() {
            fs::rename(path, target)?;
            self.path = None;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = &self.path
            && let Err(e) = fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove an upload's temp file");
        }
    }
}
