//! The checksum tools against the Python originals: `seamfs checksum`, `checksum-file` and
//! `checksum-index` (and their `seamless-*` argv[0] aliases) run beside `seamless-checksum`,
//! `seamless-checksum-file` and `seamless-checksum-index` from `.venv` on the same inputs; stdout,
//! stderr, exit codes and every written file must be identical.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a tool run shows the user.
#[derive(Debug, PartialEq)]
struct Outcome {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

fn run(program: &Path, args: &[&OsStr], cwd: &Path) -> Outcome {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    Outcome {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

/// A Python tool from the reference venv. Missing venv = failure, never a skip.
fn python_tool(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: the Python reference environment is needed; run scripts/setup-python",
        path.display()
    );
    path
}

fn seamfs() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_seamfs"))
}

/// A `seamless-*` symlink to our binary, so that it is invoked under the Python tool's name.
fn alias(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    if !link.exists() {
        symlink(seamfs(), &link).unwrap();
    }
    link
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zstd_sized(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 3).unwrap()
}

/// A zstd frame written by a streaming encoder: no content size in the header.
fn zstd_unsized(data: &[u8]) -> Vec<u8> {
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    encoder.include_contentsize(false).unwrap();
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// Inputs for the single-file tools, valid and broken, by name.
fn single_file_inputs(dir: &Path) -> Vec<&'static str> {
    let hello = b"hello\n";
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let truncated_gz = gzip(hello)[..15].to_vec();
    let half = |data: &[u8]| data[..data.len() / 2].to_vec();
    let mut bad_crc = gzip(hello);
    let n = bad_crc.len();
    bad_crc[n - 8..n - 4].copy_from_slice(&[0, 0, 0, 0]);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("f.txt", hello.to_vec()),
        ("empty", vec![]),
        ("big.bin", big.clone()),
        ("f.txt.gz", gzip(hello)),
        ("big.bin.gz", gzip(&big)),
        ("multi.gz", [gzip(hello), gzip(b"world\n")].concat()),
        (
            "padded.gz",
            [gzip(hello), vec![0, 0, 0], gzip(b"x")].concat(),
        ),
        ("empty.gz", vec![]),
        ("f.txt.zst", zstd_sized(hello)),
        ("big.bin.zst", zstd_sized(&big)),
        ("nosize.zst", zstd_unsized(hello)),
        ("big-nosize.zst", zstd_unsized(&big)),
        (
            "two-frames.zst",
            [zstd_sized(hello), zstd_sized(b"world\n")].concat(),
        ),
        (
            "two-unsized.zst",
            [zstd_unsized(hello), zstd_unsized(b"world\n")].concat(),
        ),
        (
            "unsized-then-junk.zst",
            [zstd_unsized(hello), b"junk".to_vec()].concat(),
        ),
        (
            "sized-then-junk.zst",
            [zstd_sized(hello), b"junk".to_vec()].concat(),
        ),
        ("empty.zst", vec![]),
        ("suffix.gz.zst", zstd_sized(&gzip(hello))),
        ("not-gzip.gz", b"garbage".to_vec()),
        ("one-byte.gz", b"\x1f".to_vec()),
        ("truncated.gz", truncated_gz),
        ("bad-crc.gz", bad_crc),
        (
            "bad-deflate.gz",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage!".to_vec(),
        ),
        ("trailing.gz", [gzip(hello), b"x".to_vec()].concat()),
        ("not-zstd.zst", b"garbage".to_vec()),
        ("truncated.zst", half(&zstd_unsized(&big))),
        ("idx.INDEX", b"{}\n".to_vec()),
        ("x.INDEX.gz", gzip(b"{}\n")),
        (".INDEX", b"hidden\n".to_vec()),
        ("naïve ünïcødé.txt", b"\xc3\xa9\n".to_vec()),
        ("it's", b"quote\n".to_vec()),
    ];
    let mut names: Vec<&'static str> = files.iter().map(|(name, _)| *name).collect();
    for (name, data) in files {
        write(dir, name, &data);
    }
    fs::create_dir(dir.join("a-dir")).unwrap();
    symlink("f.txt", dir.join("link-to-file")).unwrap();
    symlink("nowhere", dir.join("broken-link")).unwrap();
    names.extend([
        "a-dir",
        "link-to-file",
        "broken-link",
        "missing",
        "missing.gz",
        "sub/missing",
    ]);
    names
}

/// Every file under `dir` (sorted, relative) with its bytes: what a tool left behind.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().to_path_buf(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Sidecar files a tool wrote, taken out of `dir` so the next tool starts from the same state.
fn take_new_files(dir: &Path, before: &[(PathBuf, Vec<u8>)]) -> Vec<(PathBuf, Vec<u8>)> {
    let new: Vec<_> = snapshot(dir)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    for (path, _) in &new {
        fs::remove_file(dir.join(path)).unwrap();
    }
    new
}

#[test]
fn checksum_prints_what_seamless_checksum_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let python = python_tool("seamless-checksum");
    let aliased = alias(dir, "seamless-checksum");
    for name in single_file_inputs(dir) {
        let arg = [OsStr::new(name)];
        let expected = run(&python, &arg, dir);
        assert_eq!(
            run(&aliased, &arg, dir),
            expected,
            "seamless-checksum alias on {name}"
        );
        let ours = run(&seamfs(), &[OsStr::new("checksum"), OsStr::new(name)], dir);
        assert_eq!(ours, expected, "seamfs checksum on {name}");
    }
}

#[test]
fn checksum_file_writes_what_seamless_checksum_file_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    fs::create_dir(&dir).unwrap();
    let python = python_tool("seamless-checksum-file");
    let aliased = alias(tmp.path(), "seamless-checksum-file");
    let names = single_file_inputs(&dir);
    let before = snapshot(&dir);
    for name in names {
        let arg = [OsStr::new(name)];
        let expected = run(&python, &arg, &dir);
        let expected_files = take_new_files(&dir, &before);
        for (program, args) in [
            (aliased.clone(), vec![OsStr::new(name)]),
            (
                seamfs(),
                vec![OsStr::new("checksum-file"), OsStr::new(name)],
            ),
        ] {
            assert_eq!(
                run(&program, &args, &dir),
                expected,
                "{} on {name}",
                program.display()
            );
            assert_eq!(
                take_new_files(&dir, &before),
                expected_files,
                "files written for {name}"
            );
        }
    }
}

#[test]
fn several_files_behave_like_one_run_each() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let python = python_tool("seamless-checksum");
    let names = ["f.txt", "missing", "f.txt.gz", "not-gzip.gz", "empty"];
    single_file_inputs(dir);
    let mut stdout = String::new();
    let mut stderr = String::new();
    for name in names {
        let one = run(&python, &[OsStr::new(name)], dir);
        stdout += &one.stdout;
        stderr += &one.stderr;
    }
    let mut args = vec![OsStr::new("checksum")];
    args.extend(names.iter().map(OsStr::new));
    let ours = run(&seamfs(), &args, dir);
    assert_eq!(
        ours,
        Outcome {
            stdout,
            stderr,
            code: Some(1)
        }
    );

    let all_good = run(
        &seamfs(),
        &[
            OsStr::new("checksum"),
            OsStr::new("f.txt"),
            OsStr::new("empty"),
        ],
        dir,
    );
    assert_eq!(all_good.code, Some(0));
    assert_eq!(all_good.stdout.lines().count(), 2);
}

#[test]
fn undecodable_file_names_are_quoted_like_python() {
    let tmp = tempfile::tempdir().unwrap();
    let name = OsStr::from_bytes(b"caf\xe9-missing");
    let expected = run(&python_tool("seamless-checksum"), &[name], tmp.path());
    assert_eq!(
        run(&seamfs(), &[OsStr::new("checksum"), name], tmp.path()),
        expected
    );
}

/// A tree with everything `os.walk` treats specially.
fn index_tree(dir: &Path) {
    let hello = b"hello\n";
    write(dir, "a.txt", b"x");
    write(dir, "empty", b"");
    write(dir, ".hidden", b"secret");
    write(dir, "sub/b.txt", b"y");
    write(dir, "sub/c.dat.gz", &gzip(hello));
    write(dir, "sub/.deeper/d.zst", &zstd_unsized(b"deep"));
    write(dir, "sub/sub2/e.INDEX", b"{}\n");
    write(dir, "collide/x", b"plain x");
    write(dir, "collide/x.gz", &gzip(b"gzipped x"));
    write(dir, "collide/y.zst", &zstd_sized(b"zstd y"));
    write(dir, "collide/y.gz", &gzip(b"gzipped y"));
    write(dir, "ünïcødé/naïve €.txt", "ω".as_bytes());
    write(dir, "many/1", b"1");
    for i in 0..40 {
        write(dir, &format!("many/f{i}"), format!("{i}").as_bytes());
    }
    fs::create_dir_all(dir.join("empty-dir/empty-too")).unwrap();
    symlink("a.txt", dir.join("link-to-file")).unwrap();
    symlink("sub", dir.join("link-to-dir")).unwrap();
    symlink("../a.txt", dir.join("sub/link-up")).unwrap();
}

/// Run Python and ours on the same tree (so that readdir order is the same) and compare.
fn compare_index(parent: &Path, dir_arg: &OsStr) {
    let python = python_tool("seamless-checksum-index");
    let aliased = alias(parent, "seamless-checksum-index");
    let before = snapshot(parent);
    let expected = run(&python, &[dir_arg], parent);
    let expected_files = take_new_files(parent, &before);
    for (program, args) in [
        (aliased, vec![dir_arg]),
        (seamfs(), vec![OsStr::new("checksum-index"), dir_arg]),
    ] {
        assert_eq!(
            run(&program, &args, parent),
            expected,
            "{} {dir_arg:?}",
            program.display()
        );
        assert_eq!(
            take_new_files(parent, &before),
            expected_files,
            "files written for {dir_arg:?}"
        );
    }
}

#[test]
fn checksum_index_writes_what_seamless_checksum_index_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path();
    index_tree(&parent.join("d"));
    fs::create_dir(parent.join("void")).unwrap();
    index_tree(&parent.join("data.gz"));
    index_tree(&parent.join("old.INDEX"));
    symlink("d", parent.join("d-link")).unwrap();
    write(parent, "plain-file", b"not a dir");
    fs::create_dir(parent.join("broken")).unwrap();
    symlink("nowhere", parent.join("broken/dangling")).unwrap();
    write(parent, "bad/ok.txt", b"ok");
    write(parent, "bad/corrupt.gz", b"not gzip");
    let cases: [&[u8]; 13] = [
        b"d",
        b"d/",
        b"d//",
        b"./d",
        b"d-link",
        b"void",
        b"data.gz",
        b"old.INDEX",
        b"plain-file",
        b"missing",
        b"broken",
        b"bad",
        b"/",
    ];
    for case in cases {
        compare_index(parent, OsStr::from_bytes(case));
    }
    // The index of the example in the spec (§1.3), byte for byte.
    let example = parent.join("example");
    write(&example, "a.txt", b"x");
    write(&example, "empty", b"");
    write(&example, "sub/b.txt", b"y");
    write(&example, "sub/c.dat.gz", &gzip(b"hello\n"));
    let ours = run(
        &seamfs(),
        &[OsStr::new("checksum-index"), OsStr::new("example")],
        parent,
    );
    assert_eq!(
        ours,
        Outcome {
            stdout: String::new(),
            stderr: String::new(),
            code: Some(0)
        }
    );
    assert_eq!(
        fs::read_to_string(parent.join("example.CHECKSUM")).unwrap(),
        "f278b786bbe0a27d950658048e5f7879a7689d11865e4157441eeca997a5a819\n"
    );
}

#[test]
fn checksum_index_of_undecodable_names_fails_like_python() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path();
    let dir = parent.join("raw");
    fs::create_dir(&dir).unwrap();
    let name = OsString::from(OsStr::from_bytes(b"caf\xe9"));
    fs::write(dir.join(name), b"bytes").unwrap();
    compare_index(parent, OsStr::new("raw"));
}
