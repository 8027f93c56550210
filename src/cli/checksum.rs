//! `seamfs checksum`, `checksum-file`, `checksum-index`: the seamless-core checksum tools
//! (`seamless-checksum`, `seamless-checksum-file`, `seamless-checksum-index`), byte-compatible:
//! same output, same sidecar names, same `Error: <message>` texts (spec §1.3).
//!
//! The Python scripts take exactly one argument. `checksum` and `checksum-file` here accept
//! several FILEs: each is handled in turn exactly as the script would handle it alone (one output
//! line or error line per file), and the exit code is 1 if any of them failed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::LazyLock;

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use regex::Regex;

use crate::celltype::{self, CellType};
use crate::checksum::{Checksum, Compression, DecodeError};
use crate::value::{Dict, Key, Value};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  seamfs checksum data.npy            # 64 hex digits, then the file name\n  seamfs checksum *.json.gz           # hashed after decompression"
)]
pub struct ChecksumArgs {
    /// Files to hash; `.zst`/`.gz` files are hashed after decompression. One line per file.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  seamfs checksum-file results.npy    # writes results.npy.CHECKSUM\n  seamfs checksum-file run1/*.json"
)]
pub struct ChecksumFileArgs {
    /// Files to hash; each gets a sidecar (`f.txt` → `f.txt.CHECKSUM`, `g.gz` → `g.CHECKSUM`,
    /// `x.INDEX` → `x.CHECKSUM`).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  seamfs checksum-index run1          # writes run1.INDEX and run1.CHECKSUM beside run1/\n  cat run1.CHECKSUM"
)]
pub struct ChecksumIndexArgs {
    /// Directory to index: writes DIR.INDEX (relative path → checksum, as a `plain` buffer) and
    /// DIR.CHECKSUM (the checksum of DIR.INDEX).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// `seamless-checksum`: print the checksum of each file.
pub fn run_checksum(args: ChecksumArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = io::stdout().lock();
    for_each_file(&args.files, |path| {
        let checksum = file_checksum(path)?;
        // A closed stdout is not the file's fault, but still a failure worth reporting.
        writeln!(stdout, "{checksum}").map_err(|e| os_error_text(&e, None))
    })
}

/// `seamless-checksum-file`: write a `.CHECKSUM` sidecar for each file.
pub fn run_checksum_file(args: ChecksumFileArgs) -> anyhow::Result<ExitCode> {
    for_each_file(&args.files, |path| {
        let checksum = file_checksum(path)?;
        write_sidecar(path.as_os_str(), checksum)
    })
}

/// `seamless-checksum-index`: write `<dir>.INDEX` and `<dir>.CHECKSUM`.
pub fn run_checksum_index(args: ChecksumIndexArgs) -> anyhow::Result<ExitCode> {
    // Python: `dirname = args.directory.rstrip(os.sep)`.
    let raw = args.dir.as_os_str().as_bytes();
    let dirname =
        OsStr::from_bytes(&raw[..raw.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1)]);
    let is_dir = std::fs::metadata(dirname)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    if !is_dir {
        return Err(anyhow!("'{}' is not a directory", python_str(dirname)));
    }
    let index = build_index(Path::new(dirname)).map_err(|e| anyhow!(e))?;
    let mut index_path = dirname.to_os_string();
    index_path.push(".INDEX");
    std::fs::write(&index_path, &index)
        .map_err(|e| anyhow!(os_error_text(&e, Some(&index_path))))?;
    write_sidecar(dirname, Checksum::of(&index)).map_err(|e| anyhow!(e))?;
    Ok(ExitCode::SUCCESS)
}

/// Run `job` on every file; print `Error: <message>` for each failure and keep going.
fn for_each_file(
    files: &[PathBuf],
    mut job: impl FnMut(&Path) -> Result<(), String>,
) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for path in files {
        if let Err(message) = job(path) {
            eprintln!("Error: {message}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The checksum seamless-core's tools give a file: of its decompressed content when the name
/// ends in `.zst` or `.gz`. The error is the Python exception text.
pub fn file_checksum(path: &Path) -> Result<Checksum, String> {
    let file = File::open(path).map_err(|e| os_error_text(&e, Some(path.as_os_str())))?;
    // Python's open() refuses directories itself (after opening them), naming the file.
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        let e = io::Error::from_raw_os_error(libc::EISDIR);
        return Err(os_error_text(&e, Some(path.as_os_str())));
    }
    // Read errors from an open file carry no file name in Python.
    match Compression::strip_suffix(path.as_os_str().as_bytes()).1 {
        None => Checksum::of_file(file).map_err(|e| os_error_text(&e, None)),
        Some(compression) => compression.checksum(file).map_err(|e| match e {
            DecodeError::Io(e) => os_error_text(&e, None),
            DecodeError::Invalid(text) => text,
        }),
    }
}

/// Sidecar name of `_write_checksum`: a final `.zst`/`.gz` removed, then a final `.INDEX`
/// extension removed (`os.path.splitext`), then `.CHECKSUM` appended.
fn sidecar_name(name: &OsStr) -> OsString {
    let (base, _) = Compression::strip_suffix(name.as_bytes());
    let base = if base.ends_with(b".INDEX") {
        python_splitext_root(base)
    } else {
        base
    };
    let mut sidecar = base.to_vec();
    sidecar.extend_from_slice(b".CHECKSUM");
    OsString::from_vec(sidecar)
}

/// `os.path.splitext(p)[0]`: the extension starts at the last dot of the last path component,
/// unless only dots precede it there (`.INDEX` has no extension).
fn python_splitext_root(path: &[u8]) -> &[u8] {
    let name_start = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    match path[name_start..].iter().rposition(|&b| b == b'.') {
        Some(dot)
            if path[name_start..name_start + dot]
                .iter()
                .any(|&b| b != b'.') =>
        {
            &path[..name_start + dot]
        }
        _ => path,
    }
}

/// Write `hex + "\n"` to the sidecar of `name`.
fn write_sidecar(name: &OsStr, checksum: Checksum) -> Result<(), String> {
    let sidecar = sidecar_name(name);
    std::fs::write(&sidecar, format!("{checksum}\n")).map_err(|e| os_error_text(&e, Some(&sidecar)))
}

// ---------------------------------------------------------------------------------------------
// Directory index

/// The index buffer of a directory: `plain` serialization of {relative path: checksum hex}.
fn build_index(dirname: &Path) -> Result<Vec<u8>, String> {
    let mut files = Vec::new();
    walk(dirname, &[], &mut files);
    let checksums = hash_all(&files);
    let mut index = Dict::new();
    // Python stops at the first failing file in walk order; the same one is reported here.
    for ((key, _), checksum) in files.into_iter().zip(checksums) {
        let checksum = checksum?;
        let (key, _) = Compression::strip_suffix(&key);
        index.insert(python_key(key), Value::Str(checksum.hex()));
    }
    celltype::serialize(&Value::Dict(index), CellType::Plain).map_err(|e| e.message)
}

/// Collect `(key, path)` for every file under `dir` in Python `os.walk` order: top-down, a
/// directory's files (in readdir order) before its subdirectories (in readdir order). Symlinks to
/// directories are listed as directories but not entered; symlinks to files are files. Unreadable
/// directories are skipped silently, as `os.walk` does without `onerror`.
fn walk(dir: &Path, rel: &[u8], out: &mut Vec<(Vec<u8>, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let Ok(entries) = entries.collect::<Result<Vec<_>, _>>() else {
        return;
    };
    let mut subdirs = Vec::new();
    for entry in entries {
        let file_type = entry.file_type().ok();
        let is_link = file_type.is_some_and(|t| t.is_symlink());
        let is_dir = match file_type {
            Some(t) if t.is_dir() => true,
            // scandir's is_dir() follows links and answers false when stat fails.
            _ => std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()),
        };
        let key = join_key(rel, entry.file_name().as_bytes());
        if !is_dir {
            out.push((key, entry.path()));
        } else if !is_link {
            subdirs.push((key, entry.path()));
        }
    }
    for (key, path) in subdirs {
        walk(&path, &key, out);
    }
}

/// `os.path.join(dirtail, filename)` with an empty `dirtail` at the top.
fn join_key(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        return name.to_vec();
    }
    [rel, b"/", name].concat()
}

/// Hash every file on all cores, in the order given; a progress bar on stderr if it is a terminal.
fn hash_all(files: &[(Vec<u8>, PathBuf)]) -> Vec<Result<Checksum, String>> {
    let progress = if io::stderr().is_terminal() {
        ProgressBar::new(files.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} files {elapsed} (eta {eta})")
                .expect("valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let results = files
        .par_iter()
        .map(|(_, path)| {
            let result = file_checksum(path);
            progress.inc(1);
            result
        })
        .collect();
    progress.finish_and_clear();
    results
}

// ---------------------------------------------------------------------------------------------
// Python error texts

/// `str(OSError)`: `[Errno N] <strerror>: '<filename>'`, or without the file name.
fn os_error_text(error: &io::Error, filename: Option<&OsStr>) -> String {
    let Some(code) = error.raw_os_error() else {
        return error.to_string();
    };
    // Rust's text is glibc's strerror (as Python's) plus " (os error N)".
    let full = error.to_string();
    let strerror = full
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&full);
    match filename {
        Some(name) => format!("[Errno {code}] {strerror}: {}", python_str_repr(name)),
        None => format!("[Errno {code}] {strerror}"),
    }
}

/// A file name as Python holds it: UTF-8, with each undecodable byte as a lone surrogate
/// (`surrogateescape`). `Err(byte)` stands for such a surrogate.
fn python_chars(name: &OsStr) -> Vec<Result<char, u8>> {
    let mut chars = Vec::new();
    for chunk in name.as_bytes().utf8_chunks() {
        chars.extend(chunk.valid().chars().map(Ok));
        chars.extend(chunk.invalid().iter().map(|&b| Err(b)));
    }
    chars
}

/// A relative path as the str key Python builds from it: undecodable bytes become lone
/// surrogates (which the `plain` serializer refuses, as orjson does).
fn python_key(path: &[u8]) -> Key {
    match std::str::from_utf8(path) {
        Ok(text) => Key::Str(text.to_string()),
        Err(_) => Key::Surrogates(
            python_chars(OsStr::from_bytes(path))
                .into_iter()
                .map(|c| c.map_or_else(|b| 0xdc00 + u32::from(b), u32::from))
                .collect(),
        ),
    }
}

/// A file name as Python prints it to stderr (surrogates as `\udcXX`, `backslashreplace`).
fn python_str(name: &OsStr) -> String {
    python_chars(name)
        .into_iter()
        .map(|c| match c {
            Ok(c) => c.to_string(),
            Err(b) => format!("\\udc{b:02x}"),
        })
        .collect()
}

/// Characters `str.isprintable()` rejects: categories Cc, Cf, Cs, Co, Cn, Zl, Zp, Zs (but space).
static NON_PRINTABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]$").expect("valid class")
});

/// Python `repr(str)` of a file name.
fn python_str_repr(name: &OsStr) -> String {
    let chars = python_chars(name);
    let has = |q: char| chars.contains(&Ok(q));
    let quote = if has('\'') && !has('"') { '"' } else { '\'' };
    let mut text = String::from(quote);
    for c in chars {
        match c {
            Err(b) => text.push_str(&format!("\\udc{b:02x}")),
            Ok(c) if c == quote || c == '\\' => {
                text.push('\\');
                text.push(c);
            }
            Ok('\t') => text.push_str("\\t"),
            Ok('\n') => text.push_str("\\n"),
            Ok('\r') => text.push_str("\\r"),
            Ok(c) if c != ' ' && NON_PRINTABLE.is_match(c.encode_utf8(&mut [0; 4])) => text
                .push_str(&match c as u32 {
                    n @ 0..=0xff => format!("\\x{n:02x}"),
                    n @ 0x100..=0xffff => format!("\\u{n:04x}"),
                    n => format!("\\U{n:08x}"),
                }),
            Ok(c) => text.push(c),
        }
    }
    text.push(quote);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn sidecar_names_follow_write_checksum() {
        let cases = [
            ("f.txt", "f.txt.CHECKSUM"),
            ("g.txt.gz", "g.txt.CHECKSUM"),
            ("idx.INDEX", "idx.CHECKSUM"),
            ("x.INDEX.gz", "x.CHECKSUM"),
            ("x.INDEX.zst", "x.CHECKSUM"),
            (".INDEX", ".INDEX.CHECKSUM"),
            ("d/.INDEX", "d/.INDEX.CHECKSUM"),
            ("..INDEX", "..INDEX.CHECKSUM"),
            ("a.b/..c.INDEX", "a.b/..c.CHECKSUM"),
            ("dir", "dir.CHECKSUM"),
            ("data.gz", "data.CHECKSUM"),
        ];
        for (name, sidecar) in cases {
            assert_eq!(sidecar_name(os(name)), OsString::from(sidecar), "{name}");
        }
    }

    #[test]
    fn reprs_match_python() {
        assert_eq!(python_str_repr(os("missing")), "'missing'");
        assert_eq!(python_str_repr(os("it's")), "\"it's\"");
        assert_eq!(python_str_repr(os("é\"'x")), "'é\"\\'x'");
        assert_eq!(
            python_str_repr(os("a\tb\\\u{7f}\u{a0}\u{2028}\u{e000}😀")),
            "'a\\tb\\\\\\x7f\\xa0\\u2028\\ue000😀'"
        );
        let raw = OsStr::from_bytes(b"a\xffb");
        assert_eq!(python_str_repr(raw), "'a\\udcffb'");
        assert_eq!(python_str(raw), "a\\udcffb");
    }

    #[test]
    fn os_errors_read_like_python() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            os_error_text(&e, Some(os("x"))),
            "[Errno 2] No such file or directory: 'x'"
        );
        assert_eq!(
            os_error_text(&e, None),
            "[Errno 2] No such file or directory"
        );
    }
}
