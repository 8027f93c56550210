//! Checksums of `.gz` and `.zst` files taken over their decompressed content, streamed, with the
//! exact acceptance rules and error texts of seamless-core's `decompress_bytes` (spec §1.3).
//!
//! Python decompresses the whole file in memory with `gzip.decompress` or python-zstandard; here
//! the same decisions are replayed on a stream so that no file is ever held in RAM. Where those
//! libraries have quirks (trailing NUL padding between gzip members, zstd one-shot decoding that
//! stops after the first frame, silent acceptance of a truncated last zstd frame in the streaming
//! fallback), the quirk is reproduced on purpose: the checksum is an identity and must match.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

use flate2::{Crc, Decompress, FlushDecompress, Status};
use zstd::zstd_safe::{self, DCtx, InBuffer, OutBuffer};

use super::{Checksum, Hasher};

/// Read-ahead for compressed input.
const INPUT_BLOCK: usize = 1 << 20;
/// Decompressed output is hashed in blocks of this size (fits in L2).
const OUTPUT_BLOCK: usize = 256 << 10;

/// Python: `gzip._read_exact`/`decompress` raise this `EOFError` text on any truncation.
const GZIP_EOF: &str = "Compressed file ended before the end-of-stream marker was reached";

/// The compression a file name announces, as seamless-core's `strip_compression_suffix` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
}

impl Compression {
    /// Split a final `.zst` (checked first) or `.gz` off a name. Only the last suffix counts.
    pub fn strip_suffix(name: &[u8]) -> (&[u8], Option<Compression>) {
        if let Some(base) = name.strip_suffix(b".zst") {
            (base, Some(Compression::Zstd))
        } else if let Some(base) = name.strip_suffix(b".gz") {
            (base, Some(Compression::Gzip))
        } else {
            (name, None)
        }
    }

    /// Checksum of the decompressed content of `file`, read from its current position.
    pub fn checksum(self, file: impl Read + Seek) -> Result<Checksum, DecodeError> {
        match self {
            Compression::Gzip => gzip_checksum(file),
            Compression::Zstd => zstd_checksum(file),
        }
    }
}

/// Why a compressed file could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Reading the file failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The content is not valid; the text is the one the Python libraries raise.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(text: impl Into<String>) -> DecodeError {
    DecodeError::Invalid(text.into())
}

// ---------------------------------------------------------------------------------------------
// gzip: Python's `gzip.decompress`, member by member.

/// Hash the concatenation of all gzip members, exactly as `gzip.decompress` accepts them.
fn gzip_checksum(file: impl Read) -> Result<Checksum, DecodeError> {
    let mut input = BufReader::with_capacity(INPUT_BLOCK, file);
    let mut hasher = Hasher::new();
    let mut out = vec![0u8; OUTPUT_BLOCK];
    while read_gzip_header(&mut input)? {
        inflate_member(&mut input, &mut hasher, &mut out)?;
        skip_nul_padding(&mut input)?;
    }
    Ok(hasher.finish())
}

/// Python `fp.read(n)`: up to `n` bytes, fewer only at end of file.
fn read_up_to(input: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(n);
    input.take(n as u64).read_to_end(&mut data)?;
    Ok(data)
}

/// Python `gzip._read_exact`.
fn read_exact_gz(input: &mut impl Read, n: usize) -> Result<Vec<u8>, DecodeError> {
    let data = read_up_to(input, n)?;
    if data.len() < n {
        return Err(invalid(GZIP_EOF));
    }
    Ok(data)
}

/// Python `gzip._read_gzip_header`: false at a clean end of input.
fn read_gzip_header(input: &mut impl BufRead) -> Result<bool, DecodeError> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    let magic = read_up_to(input, 2)?;
    if magic.is_empty() {
        return Ok(false);
    }
    if magic != b"\x1f\x8b" {
        return Err(invalid(format!(
            "Not a gzipped file ({})",
            python_bytes_repr(&magic)
        )));
    }
    let fixed = read_exact_gz(input, 8)?;
    if fixed[0] != 8 {
        return Err(invalid("Unknown compression method"));
    }
    let flags = fixed[1];
    if flags & FEXTRA != 0 {
        let len = read_exact_gz(input, 2)?;
        read_exact_gz(input, u16::from_le_bytes([len[0], len[1]]) as usize)?;
    }
    // Names and comments end at a NUL or, without complaint, at the end of the input.
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let mut skipped = Vec::new();
            input.read_until(0, &mut skipped)?;
        }
    }
    if flags & FHCRC != 0 {
        read_exact_gz(input, 2)?;
    }
    Ok(true)
}

/// Inflate one raw-deflate member body, hash it, and check its CRC/length trailer.
fn inflate_member(
    input: &mut impl BufRead,
    hasher: &mut Hasher,
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let mut inflater = Decompress::new(false);
    let mut crc = Crc::new();
    loop {
        let chunk = input.fill_buf()?;
        let at_end = chunk.is_empty();
        let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
        let status = inflater
            .decompress(chunk, out, FlushDecompress::None)
            .map_err(|e| invalid(zlib_error_text(e.message())))?;
        let consumed = (inflater.total_in() - in_before) as usize;
        let produced = (inflater.total_out() - out_before) as usize;
        input.consume(consumed);
        hasher.update(&out[..produced]);
        crc.update(&out[..produced]);
        if status == Status::StreamEnd {
            break;
        }
        if at_end && produced == 0 {
            return Err(invalid(GZIP_EOF));
        }
    }
    let trailer = read_up_to(input, 8)?;
    if trailer.len() < 8 {
        return Err(invalid(GZIP_EOF));
    }
    let stored_crc = u32::from_le_bytes(trailer[0..4].try_into().expect("4 bytes"));
    let stored_len = u32::from_le_bytes(trailer[4..8].try_into().expect("4 bytes"));
    if stored_crc != crc.sum() {
        return Err(invalid("CRC check failed"));
    }
    if stored_len != inflater.total_out() as u32 {
        return Err(invalid("Incorrect length of data produced"));
    }
    Ok(())
}

/// Python's `zlib.error` text. Raw inflate only fails with Z_DATA_ERROR (-3); zlib's own message
/// follows, or Python's fallback text when zlib gives none.
fn zlib_error_text(message: Option<&str>) -> String {
    format!(
        "Error -3 while decompressing data: {}",
        message.unwrap_or("invalid input data")
    )
}

/// `gzip.decompress` strips NUL bytes after each member (`lstrip(b"\x00")`).
fn skip_nul_padding(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        let zeros = chunk.iter().take_while(|&&b| b == 0).count();
        let done = zeros < chunk.len();
        input.consume(zeros);
        if done {
            return Ok(());
        }
    }
}

/// Python `repr(bytes)`, as it appears in `BadGzipFile('Not a gzipped file (%r)')`.
fn python_bytes_repr(data: &[u8]) -> String {
    let quote = if data.contains(&b'\'') && !data.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut text = format!("b{quote}");
    for &b in data {
        match b {
            b'\\' => text.push_str("\\\\"),
            b'\t' => text.push_str("\\t"),
            b'\n' => text.push_str("\\n"),
            b'\r' => text.push_str("\\r"),
            _ if b as char == quote => text.push_str(&format!("\\{quote}")),
            0x20..=0x7e => text.push(b as char),
            _ => text.push_str(&format!("\\x{b:02x}")),
        }
    }
    text.push(quote);
    text
}

// ---------------------------------------------------------------------------------------------
// zstd: python-zstandard 0.25 `ZstdDecompressor.decompress`, falling back to `stream_reader().read()`.

/// seamless-core tries a one-shot decompression first and, on any `ZstdError`, decompresses the
/// same bytes again with a stream reader. Both paths are replayed here on the file.
fn zstd_checksum(mut file: impl Read + Seek) -> Result<Checksum, DecodeError> {
    let start = file.stream_position()?;
    if let Some(checksum) = zstd_one_shot(&mut file)? {
        return Ok(checksum);
    }
    file.seek(SeekFrom::Start(start))?;
    zstd_stream_reader(file)
}

/// What `ZstdDecompressor.decompress(data)` does. `None` where it raises `ZstdError` (then
/// seamless-core falls back to the stream reader); `Some` with the checksum where it succeeds.
fn zstd_one_shot(file: &mut (impl Read + Seek)) -> Result<Option<Checksum>, DecodeError> {
    // The largest zstd frame header is 18 bytes.
    let head = read_up_to(file, 18)?;
    let expected = match declared_content_size(&head) {
        Some(0) => return Ok(Some(Checksum::of(b""))),
        Some(size) => size,
        None => return Ok(None),
    };
    file.seek(SeekFrom::Current(-(head.len() as i64)))?;
    let mut dctx = DCtx::create();
    let mut produced = 0u64;
    let mut hasher = Hasher::new();
    let mut input = BufReader::with_capacity(INPUT_BLOCK, file);
    let mut out = vec![0u8; OUTPUT_BLOCK];
    loop {
        let chunk = input.fill_buf()?;
        let at_end = chunk.is_empty();
        let mut inbuf = InBuffer::around(chunk);
        let mut outbuf = OutBuffer::around(&mut out[..]);
        // Decoding errors make Python fall back; they are reported by the stream reader.
        let Ok(hint) = dctx.decompress_stream(&mut outbuf, &mut inbuf) else {
            return Ok(None);
        };
        let (consumed, written) = (inbuf.pos, outbuf.pos());
        input.consume(consumed);
        hasher.update(&out[..written]);
        produced += written as u64;
        // Python decodes into a buffer of exactly the declared size: more output does not fit.
        if produced > expected {
            return Ok(None);
        }
        if hint == 0 {
            // The first frame is complete; Python ignores anything after it.
            return Ok((produced == expected).then(|| hasher.finish()));
        }
        if at_end && consumed == 0 && written == 0 {
            return Ok(None); // truncated frame: "did not decompress full frame"
        }
    }
}

/// The content size python-zstandard reads with `ZSTD_getFrameHeader` on the first frame:
/// `None` where it raises (header incomplete or invalid, or size not recorded).
fn declared_content_size(head: &[u8]) -> Option<u64> {
    // A skippable frame's header reports its own length as the content size (not 0 as
    // `ZSTD_getFrameContentSize` would); decoding then yields no bytes, so a non-zero length fails.
    let magic = u32::from_le_bytes(head.get(..4)?.try_into().ok()?);
    if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
        let length = u32::from_le_bytes(head.get(4..8)?.try_into().ok()?);
        return (length == 0).then_some(0);
    }
    zstd_safe::get_frame_content_size(head).ok().flatten()
}

/// What `stream_reader(io.BytesIO(data)).read()` returns: every frame in sequence until the input
/// ends (a truncated last frame is accepted as far as it goes), or the first decoding error.
fn zstd_stream_reader(file: impl Read) -> Result<Checksum, DecodeError> {
    let mut dctx = DCtx::create();
    let mut hasher = Hasher::new();
    let mut input = BufReader::with_capacity(INPUT_BLOCK, file);
    let mut out = vec![0u8; OUTPUT_BLOCK];
    loop {
        let chunk = input.fill_buf()?;
        let at_end = chunk.is_empty();
        let mut inbuf = InBuffer::around(chunk);
        let mut outbuf = OutBuffer::around(&mut out[..]);
        dctx.decompress_stream(&mut outbuf, &mut inbuf)
            .map_err(|code| {
                invalid(format!(
                    "zstd decompress error: {}",
                    zstd_safe::get_error_name(code)
                ))
            })?;
        let (consumed, written) = (inbuf.pos, outbuf.pos());
        input.consume(consumed);
        hasher.update(&out[..written]);
        if at_end && written == 0 {
            return Ok(hasher.finish());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_follow_strip_compression_suffix() {
        assert_eq!(
            Compression::strip_suffix(b"a.gz"),
            (&b"a"[..], Some(Compression::Gzip))
        );
        assert_eq!(
            Compression::strip_suffix(b"a.gz.zst"),
            (&b"a.gz"[..], Some(Compression::Zstd))
        );
        assert_eq!(
            Compression::strip_suffix(b"a.zst.gz"),
            (&b"a.zst"[..], Some(Compression::Gzip))
        );
        assert_eq!(Compression::strip_suffix(b"a.tgz"), (&b"a.tgz"[..], None));
        assert_eq!(Compression::strip_suffix(b"a.txt"), (&b"a.txt"[..], None));
    }

    #[test]
    fn bytes_repr_matches_python() {
        assert_eq!(python_bytes_repr(b"ga"), "b'ga'");
        assert_eq!(python_bytes_repr(b"\x1f"), "b'\\x1f'");
        assert_eq!(python_bytes_repr(b"'x"), "b\"'x\"");
        assert_eq!(python_bytes_repr(b"'\""), "b'\\'\"'");
        assert_eq!(python_bytes_repr(b"\\\n"), "b'\\\\\\n'");
    }
}
