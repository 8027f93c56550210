//! The content of a directory's virtual `D.INDEX`: what `seamless-checksum-index D` writes for
//! the same tree (spec §1.3): every file below `D` keyed by its relative path, a final `.gz`/`.zst`
//! removed from the key and the content decompressed before hashing, serialized as `plain`.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::celltype::{self, CellType};
use crate::checksum::Checksum;
use crate::checksum::Compression;
use crate::store::Reader;
use crate::value::{Dict, Key, Value};

/// The index key of a relative path and the compression its content is in (seamless-core's
/// `strip_compression_suffix`: a final `.zst`, else `.gz`).
pub fn index_key(path: &str) -> (&str, Option<Compression>) {
    let (stem, compression) = Compression::strip_suffix(path.as_bytes());
    // Only an ASCII suffix was removed, so the stem is still valid UTF-8.
    (&path[..stem.len()], compression)
}

/// Checksum of the decompressed content of a stored buffer, streamed from its reader.
pub fn decompressed_checksum(
    reader: &Reader,
    compression: Compression,
) -> std::io::Result<Checksum> {
    compression
        .checksum(reader.cursor())
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Decompressed checksums already computed, by checksum of the compressed buffer (and whether
/// it was read as gzip).
#[derive(Default)]
pub struct DecompressedCache(Mutex<HashMap<(Checksum, bool), Checksum>>);

impl DecompressedCache {
    pub fn get_or_compute(
        &self,
        checksum: Checksum,
        compression: Compression,
        compute: impl FnOnce() -> std::io::Result<Checksum>,
    ) -> std::io::Result<Checksum> {
        let key = (checksum, compression == Compression::Gzip);
        if let Some(known) = self.0.lock().expect("cache lock").get(&key) {
            return Ok(*known);
        }
        let result = compute()?;
        self.0.lock().expect("cache lock").insert(key, result);
        Ok(result)
    }
}

/// The `.INDEX` buffer for `files` (relative path, checksum of the file as stored), in the order
/// given; a later file with the same key wins, as in Python's walk.
pub fn index_buffer(
    files: &[(String, Checksum)],
    mut decompressed: impl FnMut(Checksum, Compression) -> std::io::Result<Checksum>,
) -> std::io::Result<Vec<u8>> {
    let mut entries: Vec<(String, Checksum)> = Vec::with_capacity(files.len());
    for (path, checksum) in files {
        let (key, compression) = index_key(path);
        let value = match compression {
            Some(c) => decompressed(*checksum, c)?,
            None => *checksum,
        };
        entries.push((key.to_string(), value));
    }
    // The plain serializer sorts keys itself; insertion order only decides duplicate keys.
    let mut dict = Dict::new();
    for (key, value) in entries {
        dict.insert(Key::Str(key), Value::Str(value.hex()));
    }
    celltype::serialize(&Value::Dict(dict), CellType::Plain)
        .map_err(|e| std::io::Error::other(format!("serializing the index: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn keys_drop_one_compression_suffix() {
        assert_eq!(
            index_key("a/b.txt.gz"),
            ("a/b.txt", Some(Compression::Gzip))
        );
        assert_eq!(index_key("x.gz.zst"), ("x.gz", Some(Compression::Zstd)));
        assert_eq!(index_key("plain"), ("plain", None));
    }

    #[test]
    fn spec_example() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"hello\n").unwrap();
        let gz = crate::Buffer::new(gz.finish().unwrap());
        let files = vec![
            ("a.txt".to_string(), Checksum::of(b"x")),
            ("empty".to_string(), Checksum::of(b"")),
            ("sub/b.txt".to_string(), Checksum::of(b"y")),
            ("sub/c.dat.gz".to_string(), gz.checksum()),
        ];
        let reader = Reader::Bytes(gz);
        let index = index_buffer(&files, |_, c| decompressed_checksum(&reader, c)).unwrap();
        assert_eq!(
            Checksum::of(&index).hex(),
            "f278b786bbe0a27d950658048e5f7879a7689d11865e4157441eeca997a5a819"
        );
    }
}
