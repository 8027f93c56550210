//! SHA-256 checksums, the identity of every Seamless buffer.
//!
//! Owns the `Checksum` value type, its text form (64 lower-case hex digits), the exact parsing
//! rules of seamless-core's `Checksum(str)` (Python `bytes.fromhex`: upper case accepted, ASCII
//! whitespace allowed between byte pairs), the `.CHECKSUM` sidecar format (spec §1.1–1.2), and
//! fast streaming checksums of whole files (plain here, `.gz`/`.zst` in `compressed`).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::sync_channel;

use sha2::{Digest, Sha256};

mod compressed;
pub use compressed::{Compression, DecodeError};

/// Size of the read blocks used when hashing a stream (larger than Python's 64 KiB: fewer syscalls).
const STREAM_BLOCK: usize = 1 << 20;
/// Block size of the read-ahead pipeline in `of_file`: small enough that a block just copied
/// from the page cache is still in L2 when it is hashed.
const PIPE_BLOCK: usize = 256 << 10;
/// Blocks in flight between the reader thread and the hashing thread.
const PIPE_DEPTH: usize = 4;

/// A SHA-256 checksum: 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum([u8; 32]);

/// Why a text or file could not be read as a checksum. The messages are seamless-core's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("non-hexadecimal number found in fromhex() arg at position {0}")]
    NonHex(usize),
    #[error("Incorrect length: {0}, must be 32")]
    Length(usize),
    #[error("File does not contain a SHA-256 checksum")]
    NotAChecksumFile,
}

impl Checksum {
    /// Checksum of a byte buffer.
    pub fn of(data: &[u8]) -> Self {
        Checksum(Sha256::digest(data).into())
    }

    /// Checksum of everything a reader yields, streamed in 1 MiB blocks.
    pub fn of_reader(mut reader: impl Read) -> std::io::Result<Self> {
        let mut hasher = Hasher::new();
        let mut block = vec![0u8; STREAM_BLOCK];
        loop {
            match reader.read(&mut block) {
                Ok(0) => break,
                Ok(n) => hasher.update(&block[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(hasher.finish())
    }

    /// Checksum of the rest of an open file, in bounded memory. The first block is read here:
    /// most files (think of a directory index) end within it and need no thread. The rest is
    /// read on a second thread so that copying from the kernel overlaps hashing (SHA-NI hashes
    /// at about memory-copy speed; this is what brings us level with `openssl dgst`).
    pub fn of_file(mut file: File) -> std::io::Result<Self> {
        let expected = file.metadata()?.len().min(PIPE_BLOCK as u64) as usize;
        let mut head = Vec::with_capacity(expected + 1);
        (&mut file).take(PIPE_BLOCK as u64).read_to_end(&mut head)?;
        let mut hasher = Hasher::new();
        hasher.update(&head);
        if head.len() < PIPE_BLOCK {
            return Ok(hasher.finish());
        }
        hash_pipelined(file, hasher)
    }

    /// Raw bytes, as stored by `Checksum`.
    pub fn from_slice(raw: &[u8]) -> Result<Self, ChecksumError> {
        let arr: [u8; 32] = raw
            .try_into()
            .map_err(|_| ChecksumError::Length(raw.len()))?;
        Ok(Checksum(arr))
    }

    /// Parse with Python `bytes.fromhex` rules, then require exactly 32 bytes.
    pub fn parse(text: &str) -> Result<Self, ChecksumError> {
        let raw = python_fromhex(text)?;
        Self::from_slice(&raw)
    }

    /// Strict form used for file names and URLs: exactly 64 hex digits, either case.
    pub fn parse_strict(text: &str) -> Option<Self> {
        if text.len() != 64 {
            return None;
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(text, &mut raw).ok()?;
        Some(Checksum(raw))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lower-case hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Write `hex + "\n"` (65 bytes) to `path`, adding `.CHECKSUM` unless the name already ends in it.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(sidecar_path(path), format!("{}\n", self.hex()))
    }

    /// Read a `.CHECKSUM` sidecar (the suffix is added as in `save`).
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let raw = std::fs::read(sidecar_path(path))?;
        Ok(Self::from_sidecar(&raw)?)
    }

    /// Parse the contents of a `.CHECKSUM` file: the first 100 characters, trailing whitespace
    /// stripped, must be exactly 64 hex digits.
    pub fn from_sidecar(raw: &[u8]) -> Result<Self, ChecksumError> {
        let text = String::from_utf8_lossy(raw);
        let head: String = text.chars().take(100).collect();
        let trimmed = head.trim_end_matches(is_python_whitespace);
        Self::parse_strict(trimmed).ok_or(ChecksumError::NotAChecksumFile)
    }
}

/// Continue `hasher` over `reader`, with a reader thread filling recycled blocks while this
/// thread hashes.
fn hash_pipelined(mut reader: impl Read + Send, mut hasher: Hasher) -> std::io::Result<Checksum> {
    let (full_tx, full_rx) = sync_channel::<std::io::Result<(Vec<u8>, usize)>>(PIPE_DEPTH);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(PIPE_DEPTH);
    for _ in 0..PIPE_DEPTH {
        empty_tx
            .send(vec![0u8; PIPE_BLOCK])
            .expect("the receiver is alive");
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // Ends when the hashing side hangs up (its channels are dropped) or at end of file.
            while let Ok(mut block) = empty_rx.recv() {
                match fill_block(&mut reader, &mut block) {
                    Ok(0) => break,
                    Ok(n) => {
                        if full_tx.send(Ok((block, n))).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        for message in full_rx {
            let (block, n) = message?;
            hasher.update(&block[..n]);
            // The reader may already have finished; then the block is simply dropped.
            let _ = empty_tx.send(block);
        }
        Ok(hasher.finish())
    })
}

/// Read until `block` is full or the input ends; returns the number of bytes read.
fn fill_block(reader: &mut impl Read, block: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < block.len() {
        match reader.read(&mut block[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Failure of `Checksum::load`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Invalid(#[from] ChecksumError),
}

/// `path` with `.CHECKSUM` appended unless its name already ends in `.CHECKSUM`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let name = path.as_os_str().to_string_lossy();
    if name.ends_with(".CHECKSUM") {
        path.to_path_buf()
    } else {
        PathBuf::from(format!("{name}.CHECKSUM"))
    }
}

/// Python `str.isspace` for the characters `rstrip()` removes that matter here.
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python `bytes.fromhex`: pairs of hex digits, ASCII whitespace allowed before each pair.
fn python_fromhex(text: &str) -> Result<Vec<u8>, ChecksumError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::with_capacity(chars.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i], ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c') {
            i += 1;
            continue;
        }
        let hi = chars[i].to_digit(16).ok_or(ChecksumError::NonHex(i))?;
        let lo = chars
            .get(i + 1)
            .and_then(|c| c.to_digit(16))
            .ok_or(ChecksumError::NonHex(i + 1))?;
        out.push((hi * 16 + lo) as u8);
        i += 2;
    }
    Ok(out)
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.hex())
    }
}

impl FromStr for Checksum {
    type Err = ChecksumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Checksum::parse(s)
    }
}

/// Incremental SHA-256, for data that arrives in pieces (streams, FUSE writes).
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Self {
        Hasher(Sha256::new())
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(self) -> Checksum {
        Checksum(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_checksums() {
        assert_eq!(Checksum::of(b"").hex(), EMPTY);
        assert_eq!(
            Checksum::of(b"hello\n").hex(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
    }

    #[test]
    fn parse_follows_fromhex() {
        let upper = EMPTY.to_uppercase();
        assert_eq!(Checksum::parse(&upper).unwrap().hex(), EMPTY);
        let spaced: String = EMPTY
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(Checksum::parse(&spaced).unwrap().hex(), EMPTY);
        assert_eq!(Checksum::parse("abcd"), Err(ChecksumError::Length(2)));
        assert_eq!(Checksum::parse("zz"), Err(ChecksumError::NonHex(0)));
        assert_eq!(Checksum::parse("a"), Err(ChecksumError::NonHex(1)));
    }

    #[test]
    fn save_and_load_a_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("f.txt");
        let checksum = Checksum::of(b"hello\n");
        checksum.save(&data).unwrap();
        let written = std::fs::read(dir.path().join("f.txt.CHECKSUM")).unwrap();
        assert_eq!(written, format!("{checksum}\n").into_bytes());
        assert_eq!(Checksum::load(&data).unwrap(), checksum);
        std::fs::write(dir.path().join("g.CHECKSUM"), "nope").unwrap();
        assert!(matches!(
            Checksum::load(&dir.path().join("g")),
            Err(LoadError::Invalid(ChecksumError::NotAChecksumFile))
        ));
    }

    #[test]
    fn sidecar_rules() {
        let ok = format!("{EMPTY}\n\n  ");
        assert_eq!(Checksum::from_sidecar(ok.as_bytes()).unwrap().hex(), EMPTY);
        let leading = format!(" {EMPTY}");
        assert!(Checksum::from_sidecar(leading.as_bytes()).is_err());
        assert!(Checksum::from_sidecar(b"abc").is_err());
        assert_eq!(
            sidecar_path(Path::new("a.txt")),
            PathBuf::from("a.txt.CHECKSUM")
        );
        assert_eq!(
            sidecar_path(Path::new("a.CHECKSUM")),
            PathBuf::from("a.CHECKSUM")
        );
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        assert_eq!(Checksum::of_reader(&data[..]).unwrap(), Checksum::of(&data));
        assert_eq!(
            hash_pipelined(&data[..], Hasher::new()).unwrap(),
            Checksum::of(&data)
        );
        let mut head = Hasher::new();
        head.update(&data[..1000]);
        assert_eq!(
            hash_pipelined(&data[1000..], head).unwrap(),
            Checksum::of(&data)
        );
    }

    #[test]
    fn file_checksum_small_and_large() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 10, PIPE_BLOCK, PIPE_BLOCK + 1, 5 * PIPE_BLOCK + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &data).unwrap();
            let file = File::open(&path).unwrap();
            assert_eq!(
                Checksum::of_file(file).unwrap(),
                Checksum::of(&data),
                "length {len}"
            );
        }
    }
}
