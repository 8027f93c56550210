//! The memmap offload tier, with GSEGUtils `lazy_disk_cache` semantics (spec lazy-disk-cache.md
//! §1–§5) and its bugs fixed.
//!
//! An `OffloadEntry` holds one block of bytes (an array's C-order data) that is:
//! * in RAM (caching disabled),
//! * memmap-backed (`Mapped`): the bytes live in `<stem>.dat` (raw, no header) and are mapped,
//! * or offloaded: only the `.dat` file remains; `load(mode)` maps it again (lazily, no copy).
//!
//! Writing the `.dat` follows GSEGUtils' order: `<stem>.dat.tmp`, write, fsync, keep the old
//! file's mode, rename, fsync the directory. Data is streamed in chunks no larger than the
//! memory budget (10 % of available memory, 64 MiB if unknown), straight from the source, so
//! offloading never makes a second full copy in RAM.
//!
//! Fixed relative to GSEGUtils: every state change and every `with_bytes` call runs under the
//! entry's lock (no offload can pull bytes from under a reader); automatic re-offloading
//! happens even when the closure fails; the temp file is created with `O_EXCL|O_NOFOLLOW`;
//! purge-on-drop unlinks the `.dat` only if it is still the file this entry wrote (same inode), so
//! a stale entry never deletes a newer entry's file; an ephemeral file is only created when
//! caching is enabled; there is no zero-filling `w+` load mode.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use memmap2::{Mmap, MmapMut, MmapOptions};

/// Chunk size when the available memory cannot be read (GSEGUtils' fallback).
pub const FALLBACK_CHUNK_BYTES: usize = 64 << 20;

/// Settings of an entry (GSEGUtils' `LazyDiskCacheConfig`).
#[derive(Clone, Debug, Default)]
pub struct OffloadConfig {
    /// Keep the bytes in a `.dat` file (memmap-backed) rather than in RAM.
    pub enable_caching: bool,
    /// The `.dat` path is this path with its last suffix replaced by `.dat`; `None`: a private
    /// temporary file (created only once caching is enabled).
    pub cache_path: Option<PathBuf>,
    /// Remove the entry's own `.dat` when the entry is dropped.
    pub purge_on_drop: bool,
    /// Offload after construction, after `enable_caching`, and after every `with_bytes`.
    pub automatic_offloading: bool,
}

/// Where an entry's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residence {
    Ram,
    Mapped,
    Offloaded,
}

/// How `load` maps the `.dat` (GSEGUtils' `r`, `r+`, `c`; `w+`, which zero-fills, is left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    ReadOnly,
    ReadWrite,
    /// Private copy-on-write: changes are discarded at the next offload.
    CopyOnWrite,
}

/// Errors of the offload tier.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path} has {actual} bytes but the entry has {expected}: it was changed by someone else"
    )]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error(
        "the entry is mapped read-only; load it with LoadMode::ReadWrite or CopyOnWrite to change it"
    )]
    ReadOnly,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OffloadError + '_ {
    move |source| OffloadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

enum Data {
    Ram(Vec<u8>),
    MappedRo(Mmap),
    MappedRw(MmapMut),
    Offloaded,
}

impl Data {
    fn residence(&self) -> Residence {
        match self {
            Data::Ram(_) => Residence::Ram,
            Data::MappedRo(_) | Data::MappedRw(_) => Residence::Mapped,
            Data::Offloaded => Residence::Offloaded,
        }
    }
}

struct State {
    data: Data,
    caching: bool,
    /// `(device, inode)` of the `.dat` this entry wrote: purge only that file.
    written: Option<(u64, u64)>,
}

/// One block of bytes that can live in RAM, in a mapped `.dat`, or only on disk.
pub struct OffloadEntry {
    state: Mutex<State>,
    path: PathBuf,
    ephemeral: bool,
    len: u64,
    purge_on_drop: bool,
    automatic_offloading: bool,
}

impl OffloadEntry {
    /// An entry over bytes already in RAM (taken, not copied).
    pub fn new(data: Vec<u8>, config: OffloadConfig) -> Result<Self, OffloadError> {
        let entry = Self::empty(data.len() as u64, &config);
        entry.lock().data = Data::Ram(data);
        if config.enable_caching {
            entry.enable_caching()?;
        }
        Ok(entry)
    }

    /// An entry whose `len` bytes come from a reader, streamed straight into the `.dat` in
    /// budget-sized chunks (never held in RAM whole). Caching is enabled whatever `config` says.
    pub fn from_reader(
        reader: impl Read,
        len: u64,
        config: OffloadConfig,
    ) -> Result<Self, OffloadError> {
        let entry = Self::empty(len, &config);
        {
            let mut state = entry.lock();
            state.caching = true;
            entry.write_dat(&mut state, Source::Reader(Box::new(reader)))?;
        }
        if config.automatic_offloading {
            entry.offload()?;
        }
        Ok(entry)
    }

    fn empty(len: u64, config: &OffloadConfig) -> Self {
        let (path, ephemeral) = match &config.cache_path {
            Some(p) => (p.with_extension("dat"), false),
            None => (ephemeral_path(), true),
        };
        OffloadEntry {
            state: Mutex::new(State {
                data: Data::Offloaded,
                caching: false,
                written: None,
            }),
            path,
            ephemeral,
            len,
            purge_on_drop: config.purge_on_drop,
            automatic_offloading: config.automatic_offloading,
        }
    }

    /// The `.dat` file (it exists once caching has been enabled).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn residence(&self) -> Residence {
        self.lock().data.residence()
    }

    /// Move the bytes into the `.dat` and map it (RAM → Mapped); then offload if automatic.
    pub fn enable_caching(&self) -> Result<(), OffloadError> {
        {
            let mut state = self.lock();
            if state.caching {
                return Ok(());
            }
            state.caching = true;
            if let Data::Ram(bytes) = std::mem::replace(&mut state.data, Data::Offloaded) {
                let written = self.write_dat(&mut state, Source::Slice(&bytes));
                if written.is_err() {
                    state.data = Data::Ram(bytes);
                    state.caching = false;
                }
                written?;
            }
        }
        if self.automatic_offloading {
            self.offload()?;
        }
        Ok(())
    }

    /// Back to RAM: copy the bytes out of the `.dat` and remove the file (GSEGUtils leaves it
    /// behind, a leak).
    pub fn disable_caching(&self) -> Result<(), OffloadError> {
        let mut state = self.lock();
        if !state.caching {
            return Ok(());
        }
        self.load_locked(&mut state, LoadMode::ReadOnly)?;
        let bytes = match &state.data {
            Data::MappedRo(m) => m[..self.len as usize].to_vec(),
            Data::MappedRw(m) => m[..self.len as usize].to_vec(),
            Data::Ram(v) => v.clone(),
            Data::Offloaded => unreachable!("loaded above"),
        };
        state.data = Data::Ram(bytes);
        state.caching = false;
        if let Some(id) = state.written.take() {
            remove_if_same(&self.path, id);
        }
        Ok(())
    }

    /// Mapped → Offloaded: write back (msync) and unmap. A no-op in RAM (caching disabled) or
    /// when already offloaded.
    pub fn offload(&self) -> Result<(), OffloadError> {
        let mut state = self.lock();
        self.offload_locked(&mut state)
    }

    /// Offloaded → Mapped, mapping the `.dat` lazily (no byte is read until touched).
    pub fn load(&self, mode: LoadMode) -> Result<(), OffloadError> {
        let mut state = self.lock();
        self.load_locked(&mut state, mode)
    }

    /// Read the bytes, loading them first if offloaded (and offloading again afterwards when
    /// automatic offloading is on, even if `f` panics or fails). The entry is locked meanwhile.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, OffloadError> {
        let mut state = self.lock();
        let was_offloaded = matches!(state.data, Data::Offloaded);
        if was_offloaded {
            self.load_locked(&mut state, LoadMode::ReadOnly)?;
        }
        let guard = ReoffloadGuard {
            entry: self,
            state,
            armed: was_offloaded && self.automatic_offloading,
        };
        let result = f(guard.bytes());
        guard.finish()?;
        Ok(result)
    }

    /// Change the bytes in place (RAM, or a read-write / copy-on-write mapping).
    pub fn with_bytes_mut<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, OffloadError> {
        let mut state = self.lock();
        if matches!(state.data, Data::Offloaded) {
            self.load_locked(&mut state, LoadMode::ReadWrite)?;
        }
        match &mut state.data {
            Data::Ram(v) => Ok(f(v)),
            Data::MappedRw(m) => Ok(f(m)),
            Data::MappedRo(_) => Err(OffloadError::ReadOnly),
            Data::Offloaded => unreachable!("loaded above"),
        }
    }

    /// The entry's lock. A panic inside `with_bytes` poisons it, but the guard has put the state
    /// back in order by then (re-offloaded), so the entry stays usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn offload_locked(&self, state: &mut State) -> Result<(), OffloadError> {
        match &state.data {
            Data::Ram(_) => {
                tracing::info!(path = %self.path.display(), "caching disabled: offload() ignored")
            }
            Data::Offloaded => {}
            Data::MappedRw(m) => {
                m.flush().map_err(io_err(&self.path))?;
                state.data = Data::Offloaded;
            }
            Data::MappedRo(_) => state.data = Data::Offloaded,
        }
        Ok(())
    }

    fn load_locked(&self, state: &mut State, mode: LoadMode) -> Result<(), OffloadError> {
        if !matches!(state.data, Data::Offloaded) {
            return Ok(());
        }
        let writable = mode == LoadMode::ReadWrite;
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        let actual = file.metadata().map_err(io_err(&self.path))?.len();
        if actual != self.len.max(1) {
            return Err(OffloadError::SizeMismatch {
                path: self.path.clone(),
                expected: self.len,
                actual,
            });
        }
        state.data = map_file(&file, self.len, mode).map_err(io_err(&self.path))?;
        Ok(())
    }

    /// Write the `.dat` atomically from `source`, then map it read-write (→ Mapped).
    fn write_dat(&self, state: &mut State, source: Source<'_>) -> Result<(), OffloadError> {
        let tmp = suffixed(&self.path, ".tmp");
        let result = self.write_tmp(&tmp, source).and_then(|file| {
            keep_mode(&self.path, &file).map_err(io_err(&self.path))?;
            fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
            sync_parent(&self.path)?;
            let meta = file.metadata().map_err(io_err(&self.path))?;
            state.written = Some((meta.dev(), meta.ino()));
            state.data =
                map_file(&file, self.len, LoadMode::ReadWrite).map_err(io_err(&self.path))?;
            Ok(())
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_tmp(&self, tmp: &Path, source: Source<'_>) -> Result<File, OffloadError> {
        if let Some(dir) = tmp.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        // A leftover temp file (or a planted symlink) is removed, never written through.
        match fs::remove_file(tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(tmp)(e)),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW)
            .open(tmp)
            .map_err(io_err(tmp))?;
        let chunk = chunk_budget();
        match source {
            Source::Slice(bytes) => {
                for piece in bytes.chunks(chunk) {
                    file.write_all(piece).map_err(io_err(tmp))?;
                }
            }
            Source::Reader(reader) => {
                copy_exact(reader, &mut file, self.len, chunk).map_err(io_err(tmp))?
            }
        }
        if self.len == 0 {
            // numpy's memmap quirk, kept for interop: an empty array has a 1-byte `.dat`.
            file.write_all(&[0]).map_err(io_err(tmp))?;
        }
        file.sync_all().map_err(io_err(tmp))?;
        Ok(file)
    }
}

impl Drop for OffloadEntry {
    fn drop(&mut self) {
        let written = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .written;
        if let Some(id) = written
            && (self.purge_on_drop || self.ephemeral)
        {
            remove_if_same(&self.path, id);
        }
    }
}

/// Unlink `path` only if it is still the file `(dev, inode)`: a newer entry may have replaced it.
fn remove_if_same(path: &Path, (dev, ino): (u64, u64)) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.dev() == dev && m.ino() == ino => {
            if let Err(e) = fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "could not purge offload file");
            }
        }
        _ => {}
    }
}

/// Where the bytes of a `.dat` come from.
enum Source<'a> {
    Slice(&'a [u8]),
    Reader(Box<dyn Read + 'a>),
}

/// Holds the entry locked during `with_bytes`; re-offloads when dropped if armed.
struct ReoffloadGuard<'a> {
    entry: &'a OffloadEntry,
    state: std::sync::MutexGuard<'a, State>,
    armed: bool,
}

impl ReoffloadGuard<'_> {
    fn bytes(&self) -> &[u8] {
        match &self.state.data {
            Data::Ram(v) => v,
            Data::MappedRo(m) => &m[..self.entry.len as usize],
            Data::MappedRw(m) => &m[..self.entry.len as usize],
            Data::Offloaded => unreachable!("loaded before the guard was made"),
        }
    }

    /// The normal end of an access: re-offload (if armed) and report a failure to do so.
    fn finish(mut self) -> Result<(), OffloadError> {
        if !self.armed {
            return Ok(());
        }
        self.armed = false;
        self.entry.offload_locked(&mut self.state)
    }
}

impl Drop for ReoffloadGuard<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = self.entry.offload_locked(&mut self.state)
        {
            tracing::warn!(error = %e, "re-offload after a failed access did not succeed");
        }
    }
}

/// Map `len` bytes of `file` (an empty entry maps nothing).
fn map_file(file: &File, len: u64, mode: LoadMode) -> io::Result<Data> {
    if len == 0 {
        return Ok(Data::Ram(Vec::new()));
    }
    let mut options = MmapOptions::new();
    options.len(len as usize);
    // SAFETY: the `.dat` belongs to this entry; other processes changing it underneath is the
    // same contract as numpy.memmap (GSEGUtils shares the file the same way).
    unsafe {
        Ok(match mode {
            LoadMode::ReadOnly => Data::MappedRo(options.map(file)?),
            LoadMode::ReadWrite => Data::MappedRw(options.map_mut(file)?),
            LoadMode::CopyOnWrite => Data::MappedRw(options.map_copy(file)?),
        })
    }
}

/// Copy exactly `len` bytes from `reader` to `out` through one buffer of at most `chunk` bytes.
fn copy_exact(mut reader: impl Read, out: &mut File, len: u64, chunk: usize) -> io::Result<()> {
    let mut block = vec![0u8; chunk.min(len as usize).max(1)];
    let mut left = len;
    while left > 0 {
        let want = block.len().min(left as usize);
        reader.read_exact(&mut block[..want])?;
        out.write_all(&block[..want])?;
        left -= want as u64;
    }
    Ok(())
}

/// GSEGUtils' chunk budget: 10 % of the available memory, 64 MiB when that is unknown.
pub fn chunk_budget() -> usize {
    available_memory()
        .map_or(FALLBACK_CHUNK_BYTES, |a| (a / 10) as usize)
        .max(1)
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `path` with `suffix` appended to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// A rewrite keeps the permission bits of the file it replaces (as GSEGUtils' `.dat` route does).
fn keep_mode(target: &Path, new: &File) -> io::Result<()> {
    match fs::symlink_metadata(target) {
        Ok(old) => new.set_permissions(fs::Permissions::from_mode(
            old.permissions().mode() & 0o7777,
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// fsync the directory holding `path`.
pub(crate) fn sync_parent(path: &Path) -> Result<(), OffloadError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// A fresh private `.dat` name in the system temp directory (the file is made on first write).
fn ephemeral_path() -> PathBuf {
    let name = format!(
        "seamfs-offload-{}-{:016x}.dat",
        std::process::id(),
        rand::random::<u64>()
    );
    std::env::temp_dir().join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, automatic: bool) -> OffloadConfig {
        OffloadConfig {
            enable_caching: true,
            cache_path: Some(dir.join("k.npy")),
            purge_on_drop: true,
            automatic_offloading: automatic,
        }
    }

    #[test]
    fn states_and_raw_dat_layout() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100u8).collect();
        let e = OffloadEntry::new(data.clone(), config(dir.path(), false)).unwrap();
        assert_eq!(e.path(), dir.path().join("k.dat"));
        assert_eq!(e.residence(), Residence::Mapped);
        assert_eq!(fs::read(e.path()).unwrap(), data, "raw bytes, no header");
        e.offload().unwrap();
        assert_eq!(e.residence(), Residence::Offloaded);
        e.load(LoadMode::ReadWrite).unwrap();
        e.with_bytes_mut(|b| b[0] = 42).unwrap();
        e.offload().unwrap();
        assert_eq!(
            fs::read(e.path()).unwrap()[0],
            42,
            "r+ writes reach the file"
        );
        e.load(LoadMode::CopyOnWrite).unwrap();
        e.with_bytes_mut(|b| b[0] = 7).unwrap();
        e.offload().unwrap();
        assert_eq!(
            e.with_bytes(|b| b[0]).unwrap(),
            42,
            "copy-on-write changes are discarded"
        );
        let path = e.path().to_path_buf();
        drop(e);
        assert!(!path.exists(), "purged on drop");
    }

    #[test]
    fn automatic_offloading_and_a_stale_entry_does_not_purge_a_newer_file() {
        let dir = tempfile::tempdir().unwrap();
        let old = OffloadEntry::new(vec![1; 10], config(dir.path(), true)).unwrap();
        assert_eq!(old.residence(), Residence::Offloaded);
        assert_eq!(old.with_bytes(|b| b.to_vec()).unwrap(), vec![1; 10]);
        assert_eq!(
            old.residence(),
            Residence::Offloaded,
            "re-offloaded after access"
        );
        let new = OffloadEntry::new(vec![2; 10], config(dir.path(), true)).unwrap();
        drop(old);
        assert_eq!(new.with_bytes(|b| b.to_vec()).unwrap(), vec![2; 10]);
    }

    #[test]
    fn a_panicking_access_still_re_offloads() {
        let dir = tempfile::tempdir().unwrap();
        let e = OffloadEntry::new(vec![5; 10], config(dir.path(), true)).unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            e.with_bytes(|_| panic!("reader failed")).unwrap();
        }));
        assert!(caught.is_err());
        assert_eq!(e.residence(), Residence::Offloaded);
        assert_eq!(
            e.with_bytes(|b| b[0]).unwrap(),
            5,
            "the entry is still usable"
        );
    }

    #[test]
    fn planted_symlink_at_the_temp_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("k.dat.tmp")).unwrap();
        let e = OffloadEntry::new(vec![3; 5], config(dir.path(), false)).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(fs::read(e.path()).unwrap(), vec![3; 5]);
    }

    #[test]
    fn streaming_from_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let e = OffloadEntry::from_reader(&data[..], 5000, config(dir.path(), true)).unwrap();
        assert_eq!(e.residence(), Residence::Offloaded);
        assert_eq!(e.with_bytes(|b| b.to_vec()).unwrap(), data);
    }
}
