//! A named-array store on GSEGUtils' codec: `<key>.npy` + `<key>.meta.json` (schema_version 1)
//! in one directory, readable and writable by `GSEGUtils.lazy_disk_cache.DiskBackedStore`
//! (spec lazy-disk-cache.md §3).
//!
//! Reads map the `.npy` and hand out its data region without a copy. Writes follow GSEGUtils'
//! order (`.npy.tmp` + fsync, `.meta.json.tmp` + fsync, rename, rename, directory fsync), with
//! its bugs fixed:
//! * keys are checked against GSEGUtils' 7-clause denylist and the 241-byte limit before any
//!   path is built (no traversal, no separators, no device names);
//! * temp files are created with `O_EXCL|O_NOFOLLOW` after removing whatever sits at the temp
//!   name, so a planted symlink is never written through;
//! * the old sidecar is removed (and the directory fsynced) before the new `.npy` is renamed in,
//!   so a crash leaves the old pair, no pair, or the new pair, never a new `.npy` with an old
//!   sidecar; pairs torn by other writers are detected on read (shape, dtype, data length, and
//!   for pairs we wrote a fingerprint of the `.npy`);
//! * readers and writers take an `flock` on `.seamfs-named-store.lock` (shared / exclusive), so
//!   threads and processes using the store at once never see a half-replaced pair.
//!
//! The `.npy` header bytes come from `celltype::npy` (numpy's exact writer).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::buffer::Buffer;
use crate::celltype::npy;
use crate::value::{DType, Layout, NdArray};

const NPY_SUFFIX: &str = ".npy";
const META_SUFFIX: &str = ".meta.json";
const TMP_SUFFIX: &str = ".tmp";
const LEGACY_PICKLE_SUFFIX: &str = ".pkl";
/// The only entry class this store writes and reads (GSEGUtils' allow-list has it by default).
const CLASS_NAME: &str = "DiskBackedNDArray";
/// 255-byte file names minus the longest suffix, `.meta.json.tmp`.
pub const MAX_KEY_BYTES: usize = 241;
/// Extra sidecar field (Python ignores unknown fields): `<npy length>:<sha256 of its ends>`.
const FINGERPRINT_FIELD: &str = "seamfs_npy_fingerprint";
/// How much of each end of the `.npy` the fingerprint covers.
const FINGERPRINT_SPAN: usize = 64 << 10;
const LOCK_FILE: &str = ".seamfs-named-store.lock";

/// Errors of the named-array store.
#[derive(Debug, thiserror::Error)]
pub enum NamedStoreError {
    #[error(
        "Invalid store key {key:?}: the key {clause}; a store key must be a single path segment \
         (no '/', '\\' or ':'), not '', '.', '..' or a reserved Win32 device name such as CON or \
         COM1, free of control characters, not ending in a space or a dot, and at most 241 bytes"
    )]
    InvalidKey { key: String, clause: &'static str },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("array {key:?} cannot be used: {reason}")]
    Unusable { key: String, reason: String },
    #[error("array {key:?} cannot be stored: {reason}")]
    Unstorable { key: String, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NamedStoreError + '_ {
    move |source| NamedStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// GSEGUtils' key denylist, clause by clause in its order, plus the length limit.
pub fn validate_key(key: &str) -> Result<(), NamedStoreError> {
    let refuse = |clause| {
        Err(NamedStoreError::InvalidKey {
            key: key.to_string(),
            clause,
        })
    };
    if matches!(key, "" | "." | "..") {
        return refuse("is empty or a reserved path name");
    }
    if key.chars().any(|c| (c as u32) < 0x20 || c == '\x7f') {
        return refuse("contains a control character");
    }
    if key.starts_with(['/', '\\']) || key.contains(':') {
        return refuse("is an absolute or drive-relative path");
    }
    if key.contains(['/', '\\']) {
        return refuse("contains a path separator");
    }
    if is_device_name(&device_stem(key).to_uppercase()) {
        return refuse("is empty or a reserved path name");
    }
    if key.ends_with([' ', '.']) {
        return refuse("ends in a space or a dot");
    }
    if key.len() > MAX_KEY_BYTES {
        return refuse("is longer than 241 bytes (the file name limit minus '.meta.json.tmp')");
    }
    Ok(())
}

/// The pre-dot stem with interior spaces before the dot stripped (GSEGUtils' `_device_stem`).
fn device_stem(key: &str) -> String {
    let stem = key.split('.').next().unwrap_or("");
    if !key.contains('.') {
        return stem.to_string();
    }
    let trailing_start = key.trim_end_matches([' ', '.']).len();
    let cut = trailing_start.min(stem.len());
    format!("{}{}", stem[..cut].trim_end_matches(' '), &stem[cut..])
}

fn is_device_name(upper: &str) -> bool {
    const NAMES: [&str; 6] = ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];
    if NAMES.contains(&upper) {
        return true;
    }
    let Some(rest) = upper
        .strip_prefix("COM")
        .or_else(|| upper.strip_prefix("LPT"))
    else {
        return false;
    };
    let mut chars = rest.chars();
    matches!(
        (chars.next(), chars.next()),
        (Some('0'..='9' | '¹' | '²' | '³'), None)
    )
}

/// The entry flags GSEGUtils keeps in the sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryFlags {
    pub purge_disk_on_gc: bool,
    pub automatic_offloading: bool,
    pub enable_caching: bool,
}

impl Default for EntryFlags {
    /// What a plain caching `DiskBackedStore` writes; `enable_caching` makes Python map the
    /// data again on load.
    fn default() -> Self {
        EntryFlags {
            purge_disk_on_gc: true,
            automatic_offloading: false,
            enable_caching: true,
        }
    }
}

/// An array read from the store: its data maps the `.npy` (no copy).
#[derive(Clone, Debug)]
pub struct NamedArray {
    /// The `.npy` header's `descr` literal, e.g. `'<f8'` or `[('a', '<i2'), ('b', '<f8')]`.
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Bytes per element as stored (packed for structured dtypes).
    pub itemsize: usize,
    pub data: Buffer,
    pub flags: EntryFlags,
}

/// A directory of named arrays.
pub struct NamedArrayStore {
    dir: PathBuf,
}

impl NamedArrayStore {
    /// Open (creating if needed) the store directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, NamedStoreError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(NamedArrayStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keys with a `<key>.npy` regular file and a valid name (GSEGUtils' rescan rule).
    pub fn keys(&self) -> Result<Vec<String>, NamedStoreError> {
        let mut keys = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(|n| n.strip_suffix(NPY_SUFFIX)) else {
                continue;
            };
            let regular = entry.file_type().is_ok_and(|t| t.is_file());
            if regular && validate_key(key).is_ok() {
                keys.push(key.to_string());
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Store a C-ordered array under `key`, replacing any previous pair.
    pub fn put(
        &self,
        key: &str,
        array: &NdArray,
        flags: EntryFlags,
    ) -> Result<(), NamedStoreError> {
        validate_key(key)?;
        check_storable(key, array)?;
        let header = npy_header(array);
        let fingerprint = fingerprint(&header, &array.data);
        let meta = sidecar_json(array, flags, &fingerprint);
        let _lock = self.lock_dir(true)?;
        let npy_tmp = self.path(key, &format!("{NPY_SUFFIX}{TMP_SUFFIX}"));
        let meta_tmp = self.path(key, &format!("{META_SUFFIX}{TMP_SUFFIX}"));
        let result = self.write_pair(
            key,
            &header,
            &array.data,
            meta.as_bytes(),
            &npy_tmp,
            &meta_tmp,
        );
        if result.is_err() {
            let _ = fs::remove_file(&npy_tmp);
            let _ = fs::remove_file(&meta_tmp);
        }
        result
    }

    /// The array under `key`; `None` if either half of the pair is missing (a legacy `.pkl` is
    /// never opened). A pair that does not belong together is an `Unusable` error.
    pub fn get(&self, key: &str) -> Result<Option<NamedArray>, NamedStoreError> {
        validate_key(key)?;
        let _lock = self.lock_dir(false)?;
        let npy_path = self.path(key, NPY_SUFFIX);
        let meta_path = self.path(key, META_SUFFIX);
        if !npy_path.exists() || !meta_path.exists() {
            if self.path(key, LEGACY_PICKLE_SUFFIX).exists() {
                tracing::info!(
                    key,
                    "legacy .pkl cache file is never unpickled: treated as a miss"
                );
            }
            return Ok(None);
        }
        let unusable = |reason: String| NamedStoreError::Unusable {
            key: key.to_string(),
            reason,
        };
        let meta_text = fs::read(&meta_path).map_err(io_err(&meta_path))?;
        let meta: Json = serde_json::from_slice(&meta_text).map_err(|e| {
            unusable(format!(
                "{} is not valid JSON ({e}); rewrite or purge the key",
                meta_path.display()
            ))
        })?;
        let flags = read_sidecar(&meta).map_err(unusable)?;
        self.check_contained(&npy_path)?;
        let file = File::open(&npy_path).map_err(io_err(&npy_path))?;
        // SAFETY: pairs are replaced by rename, never rewritten in place, so the mapped inode
        // keeps its bytes for as long as the mapping lives.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(&npy_path))?;
        let map = Bytes::from_owner(map);
        let header =
            npy::read_header(&map).map_err(|e| unusable(format!("{}: {e}", npy_path.display())))?;
        let itemsize =
            check_pair(&meta, &header, &map).map_err(|e| unusable(format!("torn pair: {e}")))?;
        let nbytes = header.shape.iter().product::<usize>() * itemsize;
        let data = Buffer::new(map.slice(header.data_offset..header.data_offset + nbytes));
        Ok(Some(NamedArray {
            descr: npy::descr_repr(&header.dtype),
            fortran_order: header.fortran_order,
            shape: header.shape,
            itemsize,
            data,
            flags,
        }))
    }

    /// Remove the key's pair and temp files (never following symlinks; `.pkl` is left alone,
    /// as GSEGUtils does). Returns whether anything was removed.
    pub fn purge(&self, key: &str) -> Result<bool, NamedStoreError> {
        validate_key(key)?;
        let _lock = self.lock_dir(true)?;
        let mut removed = false;
        for suffix in [
            META_SUFFIX,
            ".meta.json.tmp",
            ".npy.tmp",
            ".dat.tmp",
            NPY_SUFFIX,
            ".dat",
        ] {
            let path = self.path(key, suffix);
            match fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        sync_dir(&self.dir)?;
        Ok(removed)
    }

    fn path(&self, key: &str, suffix: &str) -> PathBuf {
        self.dir.join(format!("{key}{suffix}"))
    }

    fn write_pair(
        &self,
        key: &str,
        header: &[u8],
        data: &[u8],
        meta: &[u8],
        npy_tmp: &Path,
        meta_tmp: &Path,
    ) -> Result<(), NamedStoreError> {
        write_new_file(npy_tmp, &[header, data])?;
        write_new_file(meta_tmp, &[meta])?;
        let meta_path = self.path(key, META_SUFFIX);
        // Drop the old sidecar first: from here a crash leaves a `.npy` without a sidecar (a
        // miss), never a new `.npy` beside the old sidecar.
        match fs::remove_file(&meta_path) {
            Ok(()) => sync_dir(&self.dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&meta_path)(e)),
        }
        let npy_path = self.path(key, NPY_SUFFIX);
        fs::rename(npy_tmp, &npy_path).map_err(io_err(&npy_path))?;
        fs::rename(meta_tmp, &meta_path).map_err(io_err(&meta_path))?;
        sync_dir(&self.dir)
    }

    /// `flock` on the store's lock file (exclusive for writers, shared for readers), held until
    /// the returned file is dropped. Every call opens the file anew, so the lock also separates
    /// threads of one process. A reader of a directory it cannot write goes without.
    fn lock_dir(&self, exclusive: bool) -> Result<Option<File>, NamedStoreError> {
        let path = self.dir.join(LOCK_FILE);
        let opened = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        let file = match opened {
            Ok(f) => f,
            Err(_) if !exclusive => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let operation = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: plain syscall on an owned, open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
            return Err(io_err(&path)(io::Error::last_os_error()));
        }
        Ok(Some(file))
    }

    /// An adopted (symlinked) `.npy` may be read only if it resolves inside the store.
    fn check_contained(&self, path: &Path) -> Result<(), NamedStoreError> {
        let base = fs::canonicalize(&self.dir).map_err(io_err(&self.dir))?;
        let target = fs::canonicalize(path).map_err(io_err(path))?;
        if target.starts_with(&base) {
            Ok(())
        } else {
            Err(NamedStoreError::Unusable {
                key: path.display().to_string(),
                reason: format!(
                    "it resolves outside the store directory, to {}",
                    target.display()
                ),
            })
        }
    }
}

/// What this store can write: C order, no object dtype, data matching the shape.
fn check_storable(key: &str, array: &NdArray) -> Result<(), NamedStoreError> {
    let refuse = |reason: &str| {
        Err(NamedStoreError::Unstorable {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if array.layout != Layout::C {
        return refuse(
            "only C-ordered arrays are stored (GSEGUtils writes C order); convert it first",
        );
    }
    if matches!(array.dtype, DType::Simple { kind: 'O', .. }) {
        return refuse("object arrays cannot be stored without pickle");
    }
    if array.data.len() != array.len() * array.dtype.itemsize() {
        return refuse("its data length does not match its shape and dtype");
    }
    Ok(())
}

/// numpy's `.npy` header for the array (magic, version, length, dict, padding).
fn npy_header(array: &NdArray) -> Vec<u8> {
    // `npy::write` of a C-ordered array is header + data; with no data it is the header alone,
    // which lets the data be streamed from where it is instead of copied behind the header.
    let empty = NdArray {
        dtype: array.dtype.clone(),
        shape: array.shape.clone(),
        layout: Layout::C,
        data: Bytes::new(),
    };
    npy::write(&empty)
}

/// `<npy length>:<sha256 over the first and last 64 KiB of the .npy>`.
fn fingerprint(header: &[u8], data: &[u8]) -> String {
    let total = header.len() + data.len();
    let head_end = total.min(FINGERPRINT_SPAN);
    let tail_start = total.saturating_sub(FINGERPRINT_SPAN).max(head_end);
    let mut hasher = Sha256::new();
    for range in [0..head_end, tail_start..total] {
        feed(&mut hasher, header, data, range);
    }
    format!("{total}:{}", hex::encode(hasher.finalize()))
}

/// Hash bytes `range` of the concatenation `header ++ data`.
fn feed(hasher: &mut Sha256, header: &[u8], data: &[u8], range: std::ops::Range<usize>) {
    let h = header.len();
    if range.end <= h {
        hasher.update(&header[range]);
    } else if range.start >= h {
        hasher.update(&data[range.start - h..range.end - h]);
    } else {
        hasher.update(&header[range.start..]);
        hasher.update(&data[..range.end - h]);
    }
}

/// The sidecar exactly as Python's `json.dump(meta, f, ensure_ascii=False)` writes it, plus the
/// fingerprint field.
fn sidecar_json(array: &NdArray, flags: EntryFlags, fingerprint: &str) -> String {
    let shape: Vec<String> = array.shape.iter().map(usize::to_string).collect();
    let dtype = Json::String(array.dtype.typestr()).to_string();
    format!(
        "{{\"schema_version\": 1, \"lazy_disk_cache_class\": \"{CLASS_NAME}\", \"shape\": [{}], \
         \"dtype\": {dtype}, \"purge_disk_on_gc\": {}, \"automatic_offloading\": {}, \
         \"enable_caching\": {}, \"{FINGERPRINT_FIELD}\": \"{fingerprint}\"}}",
        shape.join(", "),
        flags.purge_disk_on_gc,
        flags.automatic_offloading,
        flags.enable_caching
    )
}

/// Check the fields Python checks (strictly: `schema_version` must be the integer 1) and read
/// the flags (defaults as in Python when absent).
fn read_sidecar(meta: &Json) -> Result<EntryFlags, String> {
    if meta.get("schema_version").and_then(Json::as_u64) != Some(1) {
        return Err(format!(
            "unsupported schema_version {:?} (expected 1)",
            meta.get("schema_version")
        ));
    }
    match meta.get("lazy_disk_cache_class").and_then(Json::as_str) {
        Some(CLASS_NAME) => {}
        other => {
            return Err(format!(
                "unknown lazy_disk_cache_class {other:?} (expected {CLASS_NAME:?})"
            ));
        }
    }
    let flag =
        |name: &str, default: bool| meta.get(name).and_then(Json::as_bool).unwrap_or(default);
    Ok(EntryFlags {
        purge_disk_on_gc: flag("purge_disk_on_gc", true),
        automatic_offloading: flag("automatic_offloading", false),
        enable_caching: flag("enable_caching", false),
    })
}

/// Check that the sidecar describes this `.npy` (catching pairs torn by an interrupted writer);
/// returns the stored item size.
fn check_pair(meta: &Json, header: &npy::NpyHeader, file: &[u8]) -> Result<usize, String> {
    let meta_shape: Option<Vec<usize>> = meta
        .get("shape")
        .and_then(Json::as_array)
        .and_then(|a| a.iter().map(|v| v.as_u64().map(|n| n as usize)).collect());
    if let Some(shape) = &meta_shape
        && *shape != header.shape
    {
        return Err(format!(
            "the sidecar says shape {shape:?}, the .npy {:?}",
            header.shape
        ));
    }
    let meta_dtype = meta
        .get("dtype")
        .and_then(Json::as_str)
        .ok_or("the sidecar has no dtype")?;
    let itemsize = DType::from_typestr(meta_dtype)
        .map(|d| d.itemsize())
        .ok_or_else(|| format!("the sidecar dtype {meta_dtype:?} is not a numpy type string"))?;
    // A struct's typestr (`|V<n>`) says too little to compare; GSEGUtils writes `dtype.str`.
    if !matches!(header.dtype, DType::Struct(_)) && header.dtype.typestr() != meta_dtype {
        return Err(format!(
            "the sidecar says dtype {meta_dtype}, the .npy {}",
            header.dtype.typestr()
        ));
    }
    let count: usize = header.shape.iter().product();
    let data_len = file.len() - header.data_offset;
    if data_len != count * itemsize {
        return Err(format!(
            "the .npy holds {data_len} data bytes, the sidecar describes {}",
            count * itemsize
        ));
    }
    if let Some(expected) = meta.get(FINGERPRINT_FIELD).and_then(Json::as_str) {
        let (head, data) = file.split_at(header.data_offset);
        if fingerprint(head, data) != expected {
            return Err("the .npy is not the one this sidecar was written with".into());
        }
    }
    Ok(itemsize)
}

/// Create `path` afresh (removing what was there, never following a symlink), write the parts,
/// fsync.
fn write_new_file(path: &Path, parts: &[&[u8]]) -> Result<(), NamedStoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(path)(e)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))?;
    for part in parts {
        for chunk in part.chunks(super::offload::chunk_budget()) {
            file.write_all(chunk).map_err(io_err(path))?;
        }
    }
    file.sync_all().map_err(io_err(path))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), NamedStoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rule_follows_gsegutils() {
        for ok in [
            ".hidden",
            "a.b",
            "a.npy",
            "a b",
            " lead",
            "ü-日本",
            "*?<>|\"",
            "rrim_pack_(range,r16,d8,z1e-05)",
        ] {
            assert!(validate_key(ok).is_ok(), "{ok:?}");
        }
        let refused = [
            ("", "reserved"),
            ("..", "reserved"),
            ("a\nb", "control"),
            ("/etc/passwd", "absolute"),
            ("C:evil", "absolute"),
            ("ab:cd", "absolute"),
            ("../x", "separator"),
            ("a\\b", "separator"),
            ("CON .txt", "reserved"),
            ("con.npy", "reserved"),
            ("COM1.dat", "reserved"),
            ("lpt9", "reserved"),
            ("COM¹", "reserved"),
            ("trail.", "ends in"),
            ("...", "ends in"),
            ("nul  ", "ends in"),
        ];
        for (key, clause) in refused {
            let err = validate_key(key).unwrap_err().to_string();
            assert!(err.contains(clause), "{key:?}: {err}");
        }
        assert!(validate_key(&"k".repeat(241)).is_ok());
        assert!(validate_key(&"k".repeat(242)).is_err());
    }
}
