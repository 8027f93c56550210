//! Real FUSE mounts of the `seamfs` binary, used through `std::fs` and ordinary tools.
//! Every test mounts on a fresh temp directory and store; a guard unmounts on drop, failures
//! included, so no mount is left behind. FUSE missing is a failure, never a skip.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use seamfs::celltype::CellType;
use seamfs::compat::Outcome;
use seamfs::compat::conversions::check_case;
use seamfs::{Buffer, Checksum};
use serde_json::{Value, json};

mod common;
use common::{Mount, free_port, is_mounted, python_tool, sidecar, xattr};

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    data
}

#[test]
fn write_then_read_back_every_size() {
    let m = Mount::new();
    let mut rng = StdRng::seed_from_u64(1);
    std::fs::create_dir(m.path("sizes")).unwrap();
    for size in [
        1usize,
        100,
        4095,
        4096,
        65537,
        (1 << 20) + 3,
        16 << 20,
        256 << 20,
    ] {
        let data = random_bytes(&mut rng, size);
        let path = m.path(&format!("sizes/f{size}"));
        std::fs::write(&path, &data).unwrap();
        let back = std::fs::read(&path).unwrap();
        assert!(
            back == data,
            "content of a {size}-byte file differs after write"
        );
        let checksum = std::fs::read_to_string(m.path(&format!("sizes/f{size}.CHECKSUM"))).unwrap();
        assert_eq!(checksum, sidecar(&data), "sidecar of the {size}-byte file");
        let stored = std::fs::read(m.path(&format!("by-checksum/{}", checksum.trim()))).unwrap();
        assert!(
            stored == data,
            "by-checksum/ copy of the {size}-byte file differs"
        );
        assert_eq!(
            xattr(&path, "user.seamless.checksum").unwrap(),
            checksum.trim().as_bytes()
        );
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn sequential_and_random_writes_publish_on_close() {
    let m = Mount::new();
    let path = m.path("f.bin");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"0123456789").unwrap();
    file.seek(SeekFrom::Start(3)).unwrap();
    file.write_all(b"abc").unwrap();
    file.set_len(8).unwrap();
    drop(file);
    assert_eq!(std::fs::read(&path).unwrap(), b"012abc67");
    assert_eq!(
        std::fs::read_to_string(m.path("f.bin.CHECKSUM")).unwrap(),
        sidecar(b"012abc67")
    );
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"XY").unwrap();
    drop(file);
    assert_eq!(std::fs::read(&path).unwrap(), b"012abc67XY");
    assert_eq!(
        std::fs::read_to_string(m.path("f.bin.CHECKSUM")).unwrap(),
        sidecar(b"012abc67XY")
    );
}

#[test]
fn sidecars_and_index_equal_the_python_tools() {
    let m = Mount::new();
    let plain = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"hello\n").unwrap();
    let gz = gz.finish().unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("d/a.txt", b"x".to_vec()),
        ("d/empty", Vec::new()),
        ("d/.hidden", b"h\n".to_vec()),
        ("d/sub/b.txt", b"y".to_vec()),
        ("d/sub/c.dat.gz", gz),
        ("d/sub/deeper/z \u{e9}.json", b"{\"a\": 1}\n".to_vec()),
    ];
    for root in [m.mnt.as_path(), plain.path()] {
        for (rel, data) in &files {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, data).unwrap();
        }
        std::fs::create_dir_all(root.join("d/empty-dir")).unwrap();
    }
    let status = Command::new(python_tool("seamless-checksum-index"))
        .arg(plain.path().join("d"))
        .status()
        .unwrap();
    assert!(status.success(), "seamless-checksum-index failed");
    for name in ["d.INDEX", "d.CHECKSUM"] {
        let ours = std::fs::read(m.path(name)).unwrap();
        let theirs = std::fs::read(plain.path().join(name)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "{name} differs"
        );
    }
    let status = Command::new(python_tool("seamless-checksum-index"))
        .arg(plain.path().join("d/sub"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read(m.path("d/sub.INDEX")).unwrap(),
        std::fs::read(plain.path().join("d/sub.INDEX")).unwrap()
    );
    for (rel, _) in files.iter().filter(|(rel, _)| !rel.ends_with(".gz")) {
        let status = Command::new(python_tool("seamless-checksum-file"))
            .arg(plain.path().join(rel))
            .status()
            .unwrap();
        assert!(status.success());
        let sidecar_name = format!("{rel}.CHECKSUM");
        assert_eq!(
            std::fs::read(m.path(&sidecar_name)).unwrap(),
            std::fs::read(plain.path().join(&sidecar_name)).unwrap(),
            "{sidecar_name} differs"
        );
    }
    // cp -r out of the mount yields the files only (see tests/tools.rs for --list-sidecars).
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(m.path("d"))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(out.path().join("d/a.txt").exists() && !out.path().join("d/a.txt.CHECKSUM").exists());
}

#[test]
fn sidecar_writes_are_claims() {
    let m = Mount::new();
    std::fs::write(m.path("f"), b"content").unwrap();
    std::fs::write(m.path("f.CHECKSUM"), sidecar(b"content")).unwrap();
    // A wrong claim about a complete file fails its write.
    let mut wrong = std::fs::File::create(m.path("f.CHECKSUM")).unwrap();
    assert_eq!(
        wrong
            .write_all(sidecar(b"other").as_bytes())
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EIO)
    );
    drop(wrong);
    // So a shell redirect fails too (shells ignore errors of close).
    let wrong = format!("echo {} > f.CHECKSUM", Checksum::of(b"other"));
    let status = Command::new("sh")
        .arg("-c")
        .arg(&wrong)
        .current_dir(&m.mnt)
        .status();
    assert!(!status.unwrap().success(), "{wrong} must fail");
    // cp reports the refused close.
    let source = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(source.path(), sidecar(b"other")).unwrap();
    let cp = Command::new("cp")
        .arg(source.path())
        .arg(m.path("f.CHECKSUM"))
        .output()
        .unwrap();
    assert!(!cp.status.success(), "cp of a wrong sidecar must fail");
    assert_eq!(
        std::fs::read_to_string(m.path("f.CHECKSUM")).unwrap(),
        sidecar(b"content")
    );
    // A tree copied in with sidecars first: the claim waits for its subject.
    std::fs::write(m.path("g.CHECKSUM"), sidecar(b"g")).unwrap();
    std::fs::write(m.path("g"), b"g").unwrap();
    assert_eq!(
        std::fs::read_to_string(m.path("g.CHECKSUM")).unwrap(),
        sidecar(b"g")
    );
    // rm -r works although sidecars are listed.
    std::fs::create_dir_all(m.path("t/u")).unwrap();
    std::fs::write(m.path("t/u/v"), b"v").unwrap();
    let status = Command::new("rm")
        .arg("-r")
        .arg(m.path("t"))
        .status()
        .unwrap();
    assert!(status.success(), "rm -r of a tree with sidecars");
    assert!(!m.path("t").exists() && !m.path("t.INDEX").exists());
}

#[test]
fn tree_and_buffers_survive_remount() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    let mut rng = StdRng::seed_from_u64(2);
    let big = random_bytes(&mut rng, 3 << 20);
    {
        let m = Mount::on(mnt.clone(), store.clone(), &[]);
        std::fs::create_dir_all(m.path("a/b")).unwrap();
        std::fs::write(m.path("a/b/big"), &big).unwrap();
        std::fs::write(m.path("a/small"), b"small").unwrap();
        std::os::unix::fs::symlink("b/big", m.path("a/link")).unwrap();
        std::fs::set_permissions(
            m.path("a/small"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        std::fs::rename(m.path("a/small"), m.path("a/renamed")).unwrap();
        assert!(m.stop().success(), "seamfs exits 0 on SIGTERM");
    }
    assert!(!is_mounted(&mnt));
    let m = Mount::on(mnt, store, &[]);
    assert!(std::fs::read(m.path("a/b/big")).unwrap() == big);
    assert_eq!(std::fs::read(m.path("a/renamed")).unwrap(), b"small");
    assert_eq!(
        std::fs::read_link(m.path("a/link")).unwrap(),
        Path::new("b/big")
    );
    assert!(std::fs::read(m.path("a/link")).unwrap() == big);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(m.path("a/renamed"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let listed: Vec<String> = std::fs::read_dir(m.path("by-checksum"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        listed.contains(&Checksum::of(&big).hex())
            && listed.contains(&Checksum::of(b"small").hex())
    );
}

#[test]
fn concurrent_readers_and_writers() {
    let m = Mount::new();
    std::fs::create_dir(m.path("c")).unwrap();
    let shared = random_bytes(&mut StdRng::seed_from_u64(3), 8 << 20);
    std::fs::write(m.path("c/shared"), &shared).unwrap();
    let shared_path = m.path(&format!("by-checksum/{}", Checksum::of(&shared)));
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let m = &m;
            let shared = &shared;
            let shared_path = &shared_path;
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(100 + t);
                for i in 0..12 {
                    let len = rng.random_range(0..600_000);
                    let data = random_bytes(&mut rng, len);
                    let path = m.path(&format!("c/w{t}-{i}"));
                    let mut file = std::fs::File::create(&path).unwrap();
                    for chunk in data.chunks(65536) {
                        file.write_all(chunk).unwrap();
                    }
                    drop(file);
                    assert!(std::fs::read(&path).unwrap() == data);
                    assert_eq!(
                        std::fs::read_to_string(m.path(&format!("c/w{t}-{i}.CHECKSUM"))).unwrap(),
                        sidecar(&data)
                    );
                    let mut reader = std::fs::File::open(shared_path).unwrap();
                    let mut back = Vec::new();
                    reader.read_to_end(&mut back).unwrap();
                    assert!(&back == shared);
                }
            });
        }
    });
    assert_eq!(std::fs::read_dir(m.path("c")).unwrap().count(), 1 + 4 * 12);
}

#[test]
fn process_errors_are_clear() {
    let m = Mount::new();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_seamfs"))
            .arg("mount")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let other = tempfile::tempdir().unwrap();
    let (code, err) = run(&[
        m.mnt.as_os_str(),
        "--store".as_ref(),
        other.path().as_os_str(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("busy"), "{err}");
    let free = other.path().join("free");
    std::fs::create_dir(&free).unwrap();
    let (code, err) = run(&[
        free.as_os_str(),
        "--store".as_ref(),
        m.store.as_os_str(),
        "--no-db".as_ref(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("in use by another seamfs process"), "{err}");
    let (code, err) = run(&[
        other.path().join("no/such/dir").as_os_str(),
        "--no-db".as_ref(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("does not exist and cannot be created"),
        "{err}"
    );
    // A non-empty mount point is refused (its files would be hidden) unless --nonempty.
    let full = other.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let (code, err) = run(&[full.as_os_str(), "--no-db".as_ref()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("is not empty") && err.contains("--nonempty"),
        "{err}"
    );
    let nonempty = Mount::on(full.clone(), other.path().join("store2"), &["--nonempty"]);
    assert!(!nonempty.path("x").exists());
    drop(nonempty);
    assert!(full.join("x").exists());
    // A daemon that dies leaves a stale mount point behind.
    let mut m = m;
    m.child.as_mut().unwrap().kill().unwrap();
    m.child.as_mut().unwrap().wait().unwrap();
    let (code, err) = run(&[
        m.mnt.as_os_str(),
        "--store".as_ref(),
        other.path().as_os_str(),
        "--no-db".as_ref(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("stale mount") && err.contains("fusermount3 -u"),
        "{err}"
    );
}

/// One operation of the model test.
#[derive(Debug)]
enum Op {
    Write {
        file: String,
        data: Vec<u8>,
    },
    Patch {
        file: String,
        offset: u64,
        data: Vec<u8>,
    },
    Append {
        file: String,
        data: Vec<u8>,
    },
    Truncate {
        file: String,
        len: u64,
    },
    Mkdir {
        dir: String,
    },
    Rmdir {
        dir: String,
    },
    Unlink {
        file: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Symlink {
        link: String,
        target: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
}

fn random_op(rng: &mut StdRng) -> Op {
    let names = ["a", "b", "c.txt", "d/e", "d/f", "g/h", "d"];
    let dirs = ["d", "g", "d/x"];
    let name = |rng: &mut StdRng| names[rng.random_range(0..names.len())].to_string();
    let data = |rng: &mut StdRng| {
        let len = rng.random_range(0..5000);
        random_bytes(rng, len)
    };
    match rng.random_range(0..12) {
        10 => Op::Symlink {
            link: name(rng),
            target: name(rng),
        },
        11 => Op::Chmod {
            path: name(rng),
            mode: [0o600, 0o644, 0o755, 0o400][rng.random_range(0..4)],
        },
        0 | 1 => Op::Write {
            file: name(rng),
            data: data(rng),
        },
        2 => Op::Patch {
            file: name(rng),
            offset: rng.random_range(0..6000),
            data: data(rng),
        },
        3 => Op::Append {
            file: name(rng),
            data: data(rng),
        },
        4 => Op::Truncate {
            file: name(rng),
            len: rng.random_range(0..6000),
        },
        5 => Op::Mkdir {
            dir: dirs[rng.random_range(0..dirs.len())].to_string(),
        },
        6 => Op::Rmdir {
            dir: dirs[rng.random_range(0..dirs.len())].to_string(),
        },
        7 => Op::Unlink { file: name(rng) },
        _ => Op::Rename {
            from: name(rng),
            to: name(rng),
        },
    }
}

/// Apply an op under `root`; the outcome is the errno (0 for success), compared between roots.
fn apply(root: &Path, op: &Op) -> i32 {
    use std::fs::{self, OpenOptions};
    let result: std::io::Result<()> = match op {
        Op::Write { file, data } => fs::write(root.join(file), data),
        Op::Patch { file, offset, data } => OpenOptions::new()
            .write(true)
            .open(root.join(file))
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(*offset))?;
                f.write_all(data)
            }),
        Op::Append { file, data } => OpenOptions::new()
            .append(true)
            .open(root.join(file))
            .and_then(|mut f| f.write_all(data)),
        Op::Truncate { file, len } => OpenOptions::new()
            .write(true)
            .open(root.join(file))
            .and_then(|f| f.set_len(*len)),
        Op::Mkdir { dir } => fs::create_dir(root.join(dir)),
        Op::Rmdir { dir } => fs::remove_dir(root.join(dir)),
        Op::Unlink { file } => fs::remove_file(root.join(file)),
        Op::Rename { from, to } => fs::rename(root.join(from), root.join(to)),
        Op::Symlink { link, target } => std::os::unix::fs::symlink(target, root.join(link)),
        Op::Chmod { path, mode } => fs::set_permissions(
            root.join(path),
            std::os::unix::fs::PermissionsExt::from_mode(*mode),
        ),
    };
    result.err().map_or(0, |e| e.raw_os_error().unwrap_or(-1))
}

/// What the model test compares of one entry.
#[derive(Debug, PartialEq)]
enum Seen {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

/// Every real entry under `root` (sidecars excluded), with its permission bits and content.
fn snapshot(root: &Path) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.ends_with(".CHECKSUM") || rel.ends_with(".INDEX") {
            continue;
        }
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&entry.metadata().unwrap().permissions())
                & 0o7777;
        let seen = if entry.file_type().is_symlink() {
            Seen::Link(std::fs::read_link(entry.path()).unwrap())
        } else if entry.file_type().is_dir() {
            Seen::Dir(mode)
        } else {
            Seen::File(mode, std::fs::read(entry.path()).unwrap_or_default())
        };
        out.insert(rel, seen);
    }
    out
}

#[test]
fn model_random_operations_match_a_plain_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    let mut m = Mount::on(mnt.clone(), store.clone(), &[]);
    let model = tempfile::tempdir().unwrap();
    let under_test = m.path("model");
    std::fs::create_dir(&under_test).unwrap();
    // Fixed seed; SEAMFS_MODEL_SEED explores others (the failing step prints its op).
    let seed = std::env::var("SEAMFS_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eaf5);
    let mut rng = StdRng::seed_from_u64(seed);
    for step in 0..400 {
        if step % 150 == 149 {
            // A restart in the middle of the sequence: the tree must come back as it was.
            assert!(m.stop().success());
            m = Mount::on(mnt.clone(), store.clone(), &[]);
        }
        let op = random_op(&mut rng);
        let expected = apply(model.path(), &op);
        let actual = apply(&under_test, &op);
        assert_eq!(
            actual, expected,
            "step {step}: {op:?} gave errno {actual} on the mount, {expected} on disk"
        );
        if step % 20 == 19 {
            let snap = snapshot(&under_test);
            assert_eq!(
                snap,
                snapshot(model.path()),
                "trees differ after step {step}"
            );
            for (rel, seen) in snap {
                if let Seen::File(_, content) = seen {
                    let sidecar_path = under_test.join(format!("{rel}.CHECKSUM"));
                    assert_eq!(
                        std::fs::read_to_string(sidecar_path).unwrap(),
                        sidecar(&content),
                        "{rel}.CHECKSUM"
                    );
                }
            }
        }
    }
}

/// Every `as-<celltype>/` view against the reference conversions whose source cell type is the
/// one the mount detects for the buffer: same bytes when the reference succeeded, EINVAL when it
/// refused (cases where this implementation deliberately differs are left to tests/conversions.rs).
#[test]
fn as_celltype_views_match_the_vectors() {
    let m = Mount::new();
    let path = format!(
        "{}/tests/data/conversion-vectors.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases: Vec<&Value> = doc["conversions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|case| {
            let bytes = hex::decode(case["buffer_hex"].as_str().unwrap()).unwrap();
            let detected = seamfs::buffer_info::detect_celltype(&bytes).0;
            case["source"].as_str() == Some(detected.name()) && check_case(case) == Outcome::Passed
        })
        .collect();
    std::fs::create_dir(m.path("vectors")).unwrap();
    let mut written = std::collections::BTreeSet::new();
    for case in &cases {
        let bytes = hex::decode(case["buffer_hex"].as_str().unwrap()).unwrap();
        std::fs::write(
            m.path(&format!(
                "vectors/{}",
                case["buffer_checksum"].as_str().unwrap()
            )),
            bytes,
        )
        .unwrap();
        written.insert(case["buffer_checksum"].as_str().unwrap().to_string());
    }
    // Buffers another process adds to the store are listed too; with them the listing takes
    // many readdir calls through the kernel: nothing is skipped or repeated.
    let store = seamfs::store::DiskStore::open(&m.store).unwrap();
    for i in 0..400u32 {
        let buffer = Buffer::new(format!("extra {i}\n").into_bytes());
        seamfs::store::Tier::put(&store, &buffer).unwrap();
        written.insert(buffer.checksum().hex());
    }
    let listed = |dir: &str| -> Vec<String> {
        std::fs::read_dir(m.path(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let stored: std::collections::BTreeSet<String> = listed("by-checksum").into_iter().collect();
    assert!(
        written.len() > 300 && written.is_subset(&stored),
        "{} written, {} listed",
        written.len(),
        stored.len()
    );
    assert_eq!(listed("by-checksum").len(), stored.len());
    assert_eq!(listed("vectors").len(), written.len() - 400);
    let mut targets = std::collections::BTreeSet::new();
    for case in &cases {
        let target: CellType = case["target"].as_str().unwrap().parse().unwrap();
        let view = m.path(&format!(
            "as-{target}/{}",
            case["buffer_checksum"].as_str().unwrap()
        ));
        match (case["ok"].as_bool().unwrap(), std::fs::read(&view)) {
            (true, Ok(bytes)) => {
                let expected = case["result_checksum"].as_str().unwrap();
                assert_eq!(
                    Checksum::of(&bytes).hex(),
                    expected,
                    "{} {view:?}",
                    case["id"]
                );
                targets.insert(target);
            }
            (false, Err(e)) => assert_eq!(
                e.raw_os_error(),
                Some(libc::EINVAL),
                "{} {view:?}",
                case["id"]
            ),
            (ok, got) => panic!(
                "{} {view:?}: reference ok={ok}, mount gave {:?}",
                case["id"],
                got.map(|b| b.len())
            ),
        }
    }
    assert_eq!(
        targets.len(),
        13,
        "every cell type viewed at least once: {targets:?}"
    );
    // A checksum-preserving view is the very same inode as the buffer.
    let json = b"{\n  \"a\": 1\n}\n";
    std::fs::write(m.path("j.json"), json).unwrap();
    let hex = Checksum::of(json).hex();
    let ino = |p: PathBuf| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    assert_eq!(
        ino(m.path(&format!("as-plain/{hex}"))),
        ino(m.path(&format!("by-checksum/{hex}")))
    );
    let unknown = m.path(&format!("as-int/{}", Checksum::of(b"never stored")));
    assert_eq!(
        std::fs::read(unknown).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    assert_eq!(
        xattr(&m.path("j.json"), "user.seamless.celltype").unwrap(),
        b"plain"
    );
}

fn db_get(port: u16, body: Value) -> (u16, String) {
    let response = reqwest::blocking::Client::new()
        .request(reqwest::Method::GET, format!("http://127.0.0.1:{port}/"))
        .body(body.to_string())
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

#[test]
fn http_database_answers_while_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let m = Mount::on(
        dir.path().join("mnt"),
        dir.path().join("store"),
        &["--db-port", &port.to_string()],
    );
    std::fs::write(m.path("n.json"), b"42\n").unwrap();
    let hex = Checksum::of(b"42\n").hex();
    let (status, body) = db_get(port, json!({"type": "buffer_info", "checksum": hex}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["length"],
        json!(3)
    );
    // Each file's BufferInfo is there as soon as it is closed (closes are committed in groups:
    // the database commits what waits before it answers), asked at once by a warm client.
    let client = reqwest::blocking::Client::new();
    for i in 0..20 {
        let data = format!("{i}\n");
        std::fs::write(m.path(&format!("quick{i}.json")), &data).unwrap();
        let query = json!({"type": "buffer_info", "checksum": Checksum::of(data.as_bytes()).hex()});
        let response = client
            .request(reqwest::Method::GET, format!("http://127.0.0.1:{port}/"))
            .body(query.to_string())
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "quick{i}.json");
    }
    // A view is recorded as an expression, and what was learned as BufferInfo.
    assert_eq!(
        std::fs::read(m.path(&format!("as-int/{hex}"))).unwrap(),
        b"42\n"
    );
    let text = std::fs::read(m.path(&format!("as-text/{hex}"))).unwrap();
    let query = json!({"type": "expression", "checksum": hex, "path": [], "celltype": "plain", "target_celltype": "text"});
    assert_eq!(db_get(port, query), (200, Checksum::of(&text).hex()));
    let (_, info) = db_get(port, json!({"type": "buffer_info", "checksum": hex}));
    assert_eq!(
        serde_json::from_str::<Value>(&info).unwrap()["is_json"],
        json!(true)
    );
    // A buffer stored through the HTTP side's store is visible under by-checksum/ too.
    let direct = seamfs::store::DiskStore::open(&m.store).unwrap();
    let buffer = Buffer::new(b"from elsewhere".to_vec());
    seamfs::store::Tier::put(&direct, &buffer).unwrap();
    assert_eq!(
        std::fs::read(m.path(&format!("by-checksum/{}", buffer.checksum()))).unwrap(),
        b"from elsewhere"
    );
}

#[test]
fn daemon_mode_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .arg("mount")
        .arg(&mnt)
        .arg("--store")
        .arg(&store)
        .args(["--no-db", "--daemon"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The daemon is not our child: a guard without a process still unmounts on failure.
    let guard = Mount {
        child: None,
        mnt: mnt.clone(),
        store: store.clone(),
        _dir: None,
    };
    assert!(is_mounted(&mnt), "the daemon returns once mounted");
    // The daemon itself holds the store lock (taken after the fork): its pid is in mount.lock,
    // a second mount of the store and an fsck are refused while it runs.
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let daemon_pid = stdout
        .split("daemon pid ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no daemon pid in {stdout:?}"));
    let owner = std::fs::read_to_string(store.join("mount.lock")).unwrap();
    assert_eq!(owner.trim(), daemon_pid);
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let second = Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .arg("mount")
        .arg(&other)
        .arg("--store")
        .arg(&store)
        .arg("--no-db")
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(!is_mounted(&other));
    let refused = String::from_utf8_lossy(&second.stderr);
    assert!(
        refused.contains("in use") && refused.contains(daemon_pid),
        "{refused}"
    );
    let fsck = Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .arg("fsck")
        .arg(&store)
        .output()
        .unwrap();
    assert!(!fsck.status.success());
    assert!(String::from_utf8_lossy(&fsck.stderr).contains("in use"));
    std::fs::write(mnt.join("kept"), b"kept").unwrap();
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success());
    drop(guard);
    // The daemon releases the store lock when unmounted; a read-only mount then sees the tree.
    let deadline = Instant::now() + Duration::from_secs(60);
    let m = loop {
        let child = Command::new(env!("CARGO_BIN_EXE_seamfs"))
            .arg("mount")
            .arg(&mnt)
            .arg("--store")
            .arg(&store)
            .args(["--no-db", "--read-only"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut m = Mount {
            child: Some(child),
            mnt: mnt.clone(),
            store: store.clone(),
            _dir: None,
        };
        let started = Instant::now();
        while !is_mounted(&mnt)
            && m.child.as_mut().unwrap().try_wait().unwrap().is_none()
            && started.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_mounted(&mnt) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the read-only mount never came up"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(std::fs::read(m.path("kept")).unwrap(), b"kept");
    assert_eq!(
        std::fs::write(m.path("new"), b"x")
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EROFS)
    );
}

fn dynamic_inodes(m: &Mount) -> u64 {
    let stats: Value =
        serde_json::from_slice(&std::fs::read(m.path(".seamfs/stats")).unwrap()).unwrap();
    stats["dynamic_inodes"]
        .as_u64()
        .expect("stats report dynamic_inodes")
}

/// The kernel's FORGET empties the daemon's inode table: `drop_caches` makes the kernel evict
/// the dentries and inodes of every name that was `stat`ed.
#[test]
fn forgotten_inodes_leave_the_daemon_table() {
    use seamfs::store::{DiskStore, Tier};
    const NAMES: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    let disk = DiskStore::open(&store).unwrap();
    let checksums: Vec<Checksum> = (0..NAMES)
        .map(|i| {
            let buffer = Buffer::new(i.to_le_bytes().to_vec());
            disk.put(&buffer).unwrap();
            buffer.checksum()
        })
        .collect();
    drop(disk);
    let m = Mount::on(mnt, store, &[]);
    for checksum in &checksums {
        let len = std::fs::metadata(m.path(&format!("by-checksum/{checksum}")))
            .unwrap()
            .len();
        assert_eq!(len, 8);
    }
    assert!(std::fs::metadata(m.path(&format!("as-bytes/{}", checksums[0]))).is_ok());
    assert_eq!(dynamic_inodes(&m), NAMES);
    std::fs::write("/proc/sys/vm/drop_caches", "2")
        .expect("writing /proc/sys/vm/drop_caches needs root; the FUSE tests run as root");
    // FORGET is processed asynchronously by the daemon: wait for it (bounded, for failures only).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut left = dynamic_inodes(&m);
    while left != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = dynamic_inodes(&m);
    }
    assert_eq!(left, 0, "the kernel forgot every by-checksum name");
    // Forgotten names come back on the next lookup, with the same inode number.
    let a = std::fs::metadata(m.path(&format!("by-checksum/{}", checksums[1]))).unwrap();
    let b = std::fs::metadata(m.path(&format!("as-bytes/{}", checksums[1]))).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&a),
        std::os::unix::fs::MetadataExt::ino(&b)
    );
    assert_eq!(dynamic_inodes(&m), 1);
}

#[test]
fn cli_rough_edges_are_gone() {
    let seamfs = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_seamfs"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            err,
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    // --store naming a file: said once, plainly, with no colour codes in a pipe.
    let mnt = dir.path().join("mnt");
    let (code, _, err) = seamfs(&[
        "mount".as_ref(),
        mnt.as_os_str(),
        "--store".as_ref(),
        file.as_os_str(),
        "--no-db".as_ref(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("not a directory") && !err.contains("os error"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "ANSI codes in a pipe: {err:?}");
    assert!(!mnt.exists(), "nothing created for a refused mount");
    let (code, _, err) = seamfs(&["fsck".as_ref(), "--store".as_ref(), file.as_os_str()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not a directory"), "{err}");
    // help --help, and examples in every subcommand's help.
    let (code, out, _) = seamfs(&["help".as_ref(), "--help".as_ref()]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Commands:"));
    for sub in [
        "mount",
        "checksum",
        "checksum-file",
        "checksum-index",
        "encode",
        "decode",
        "compat-check",
        "convert",
        "conversions",
        "database",
        "fsck",
        "unmount",
    ] {
        let (code, out, _) = seamfs(&[sub.as_ref(), "--help".as_ref()]);
        assert_eq!(code, Some(0));
        assert!(
            out.contains(&format!("seamfs {sub}")),
            "{sub} --help has no example:\n{out}"
        );
    }
    // --db-port-range: the first free port; a range with none says so.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, _, err) = seamfs(&[
        "mount".as_ref(),
        mnt.as_os_str(),
        "--store".as_ref(),
        dir.path().join("s2").as_os_str(),
        "--db-port-range".as_ref(),
        port.as_ref(),
        port.as_ref(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot serve the HTTP database") && err.contains("--db-port-range"),
        "{err}"
    );
    let next = (taken.local_addr().unwrap().port() + 50).to_string();
    let ranged = Mount::on(
        mnt.clone(),
        dir.path().join("s3"),
        &["--db-port-range", &port, &next],
    );
    assert!(is_mounted(&ranged.mnt));
    drop(ranged);
    // unmount: a daemon mount goes away; a second unmount says it is not mounted.
    let store = dir.path().join("store");
    let status = Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .args([
            "mount".as_ref(),
            mnt.as_os_str(),
            "--store".as_ref(),
            store.as_os_str(),
        ])
        .args(["--no-db", "--daemon"])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(mnt.join("f"), b"kept").unwrap();
    let (code, _, err) = seamfs(&["unmount".as_ref(), mnt.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!is_mounted(&mnt));
    let (code, _, err) = seamfs(&["unmount".as_ref(), mnt.as_os_str()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is not mounted"), "{err}");
}

/// Issue 13, finding 7: a file created and closed without a write (`touch`) names the empty
/// buffer in its sidecar; that buffer is in `by-checksum/`, also after a remount.
#[test]
fn a_touched_file_names_a_stored_empty_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    let m = Mount::on(mnt.clone(), store.clone(), &[]);
    let status = Command::new("touch").arg(m.path("empty")).status().unwrap();
    assert!(status.success());
    let empty = Checksum::of(b"").hex();
    assert_eq!(
        std::fs::read_to_string(m.path("empty.CHECKSUM")).unwrap(),
        format!("{empty}\n")
    );
    let by_checksum = format!("by-checksum/{empty}");
    assert_eq!(std::fs::read(m.path(&by_checksum)).unwrap(), b"");
    m.stop();
    let m = Mount::on(mnt, store, &[]);
    assert_eq!(std::fs::read(m.path(&by_checksum)).unwrap(), b"");
}

/// Issue 13, finding 7: a name that is not UTF-8 cannot exist in the tree, so looking it up is
/// ENOENT (as for any missing name); creating one is EINVAL.
#[test]
fn a_missing_non_utf8_name_is_enoent() {
    let m = Mount::new();
    std::fs::create_dir(m.path("d")).unwrap();
    for dir in [m.mnt.clone(), m.path("d")] {
        let name = dir.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        let stat = std::fs::metadata(&name).unwrap_err();
        assert_eq!(
            stat.raw_os_error(),
            Some(libc::ENOENT),
            "{}",
            name.display()
        );
        let remove = std::fs::remove_file(&name).unwrap_err();
        assert_eq!(remove.raw_os_error(), Some(libc::ENOENT));
        let create = std::fs::write(&name, b"x").unwrap_err();
        assert_eq!(create.raw_os_error(), Some(libc::EINVAL));
    }
}

fn stats(m: &Mount) -> Value {
    serde_json::from_slice(&std::fs::read(m.path(".seamfs/stats")).unwrap()).unwrap()
}

fn tier_stat(stats: &Value, tier: &str, field: &str) -> u64 {
    let tiers = stats["tiers"].as_array().unwrap();
    let found = tiers.iter().find(|t| t["tier"] == tier);
    found.unwrap_or_else(|| panic!("no tier {tier} in {stats}"))[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} for {tier} in {stats}"))
}

/// The anonymous (heap) resident memory of a process, in bytes.
fn anonymous_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// 48 views of 1.6 MB through a 16 MiB RAM tier: the RAM tier evicts (offloading to the disk
/// tier), stays under its cap, the daemon's heap stays small, and a view evicted from RAM is read
/// back from the disk tier, not converted again.
#[test]
fn ram_tier_evicts_views_to_the_disk_tier() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::on(
        dir.path().join("mnt"),
        dir.path().join("store"),
        &["--ram-cache", "16M"],
    );
    let before = stats(&m);
    assert_eq!(
        before["store"].as_str().unwrap(),
        dir.path()
            .join("store")
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
    );
    let mut expected = Vec::new();
    for k in 0..48i64 {
        let values: Vec<i64> = (0..200_000).map(|i| i * 48 + k).collect();
        let json = serde_json::to_vec(&values).unwrap();
        let name = format!("v{k}.json");
        std::fs::write(m.path(&name), &json).unwrap();
        let hex = std::fs::read_to_string(m.path(&format!("{name}.CHECKSUM"))).unwrap();
        let converted = match check_conversion(&json) {
            Some(buffer) => buffer,
            None => panic!("plain -> binary gave no buffer"),
        };
        assert!(converted.len() > 1_600_000);
        expected.push((hex.trim().to_string(), converted));
    }
    for (hex, converted) in &expected {
        let view = std::fs::read(m.path(&format!("as-binary/{hex}"))).unwrap();
        assert!(view == converted.as_slice(), "as-binary/{hex} differs");
    }
    let after = stats(&m);
    let ram_bytes = tier_stat(&after, "ram", "bytes");
    assert!(ram_bytes <= 16 << 20, "{after}");
    assert!(tier_stat(&after, "ram", "evictions") > 0, "{after}");
    assert!(tier_stat(&after, "ram", "offloads") > 0, "{after}");
    assert_eq!(after["conversions"], 48, "{after}");
    let pid = m.child.as_ref().unwrap().id();
    let anon = anonymous_rss(pid);
    eprintln!("daemon anonymous RSS {anon} bytes; stats {after}");
    assert!(anon <= 116 << 20, "daemon anonymous RSS {anon} bytes");
    // Every view again: the evicted ones come from the disk tier, none is converted again.
    let disk_hits = tier_stat(&after, "disk", "hits");
    for (hex, converted) in &expected {
        let view = std::fs::read(m.path(&format!("as-binary/{hex}"))).unwrap();
        assert!(
            view == converted.as_slice(),
            "as-binary/{hex} differs on re-read"
        );
    }
    let again = stats(&m);
    assert_eq!(again["conversions"], 48, "{again}");
    assert!(
        tier_stat(&again, "disk", "hits") >= disk_hits + 30,
        "evicted views were read from the disk tier: {again}"
    );
    assert!(tier_stat(&again, "ram", "bytes") <= 16 << 20, "{again}");
}

/// What `as-binary/` must serve for a JSON source (the library's plain -> binary conversion).
fn check_conversion(json: &[u8]) -> Option<Buffer> {
    let conversion = seamfs::celltype::convert::convert(
        &Buffer::new(json.to_vec()),
        CellType::Plain,
        CellType::Binary,
    )
    .ok()?;
    match conversion.output {
        seamfs::celltype::convert::Output::Buffer(buffer) => Some(buffer),
        _ => None,
    }
}

/// `seamfs ARGS...`: (success, stdout, stderr).
fn seamfs(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn gc_mounted(m: &Mount, extra: &[&str]) -> String {
    let mut args: Vec<&std::ffi::OsStr> = vec!["gc".as_ref(), "--mounted".as_ref()];
    args.push(m.mnt.as_os_str());
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let (ok, out, err) = seamfs(&args);
    assert!(ok, "gc failed: {err}");
    out
}

/// Writing 1 GiB, deleting it and collecting garbage gives the space back; what a file, a
/// claim, a pin or (unless --include-results) a view record references stays.
#[test]
fn gc_gives_space_back_and_keeps_what_is_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::on(dir.path().join("mnt"), dir.path().join("store"), &[]);
    let mut rng = StdRng::seed_from_u64(9);
    // 1 GiB in 1 MiB writes, distinct content.
    let mut big = std::fs::File::create(m.path("big")).unwrap();
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        rng.fill_bytes(&mut block);
        big.write_all(&block).unwrap();
    }
    drop(big);
    let big_hex = std::fs::read_to_string(m.path("big.CHECKSUM")).unwrap();
    let big_hex = big_hex.trim();
    // A file that stays; a buffer only a claim names; a buffer only a pin keeps; a view result.
    std::fs::write(m.path("kept"), b"kept").unwrap();
    std::fs::write(m.path("claimed-src"), b"claimed").unwrap();
    std::fs::write(m.path("pinned-src"), b"pinned").unwrap();
    std::fs::remove_file(m.path("claimed-src")).unwrap();
    std::fs::write(m.path("later.CHECKSUM"), sidecar(b"claimed")).unwrap();
    let pinned = Checksum::of(b"pinned").hex();
    let (ok, _, err) = seamfs(&[
        "pin".as_ref(),
        pinned.as_ref(),
        "--mounted".as_ref(),
        m.mnt.as_os_str(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        xattr(&m.path("pinned-src"), "user.seamless.pin").as_deref(),
        Some(&b"1"[..])
    );
    std::fs::remove_file(m.path("pinned-src")).unwrap();
    let source = serde_json::to_vec(&(0..1000).collect::<Vec<i64>>()).unwrap();
    std::fs::write(m.path("view-src.json"), &source).unwrap();
    let view = std::fs::read(m.path(&format!("as-binary/{}", Checksum::of(&source)))).unwrap();
    std::fs::remove_file(m.path("view-src.json")).unwrap();
    // A view whose source stays: gc --include-results drops its result, reading it recomputes it.
    let kept_source = serde_json::to_vec(&(0..500).collect::<Vec<i64>>()).unwrap();
    std::fs::write(m.path("view-kept.json"), &kept_source).unwrap();
    let kept_view_path = m.path(&format!("as-binary/{}", Checksum::of(&kept_source)));
    let kept_view = std::fs::read(&kept_view_path).unwrap();

    std::fs::remove_file(m.path("big")).unwrap();
    let before = tier_stat(&stats(&m), "disk", "bytes");
    let dry = gc_mounted(&m, &["--dry-run"]);
    assert!(dry.contains(big_hex) && dry.contains("would free"), "{dry}");
    assert!(
        m.path(&format!("by-checksum/{big_hex}")).exists(),
        "a dry run removes nothing"
    );
    let report = gc_mounted(&m, &[]);
    assert!(
        report.contains(&format!("{big_hex} 1073741824")),
        "{report}"
    );
    let after = tier_stat(&stats(&m), "disk", "bytes");
    assert!(before - after >= 1 << 30, "{before} -> {after}");
    let buffers_bytes: u64 = walkdir::WalkDir::new(m.store.join("buffers"))
        .into_iter()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|md| md.is_file())
        .map(|md| md.len())
        .sum();
    assert!(
        buffers_bytes < 1 << 20,
        "{buffers_bytes} bytes left in buffers/"
    );
    assert!(!m.path(&format!("by-checksum/{big_hex}")).exists());
    for kept in [&b"kept"[..], b"claimed", b"pinned"] {
        let path = m.path(&format!("by-checksum/{}", Checksum::of(kept)));
        assert_eq!(std::fs::read(path).unwrap(), kept);
    }
    let result = Checksum::of(&view).hex();
    assert!(!report.contains(&result), "a view result is kept: {report}");
    assert!(
        report.contains(&Checksum::of(&source).hex()),
        "the view's source goes"
    );
    let report = gc_mounted(&m, &["--include-results"]);
    assert!(report.contains(&result), "{report}");
    assert!(report.contains(&Checksum::of(&kept_view).hex()), "{report}");
    let conversions = stats(&m)["conversions"].as_u64().unwrap();
    assert_eq!(std::fs::read(&kept_view_path).unwrap(), kept_view);
    assert_eq!(stats(&m)["conversions"].as_u64().unwrap(), conversions + 1);
    // Offline, the store is collected the same way (the command takes the store lock).
    let store = m.store.clone();
    assert!(m.stop().success());
    let (ok, out, err) = seamfs(&["gc".as_ref(), store.as_os_str()]);
    assert!(ok, "{err}");
    assert!(out.contains("freed 0 bytes in 0 buffers"), "{out}");
}

/// Garbage collection while writers create, rewrite and delete files (often with content that
/// was just unreferenced) never removes a buffer a file or a claim points at.
#[test]
fn gc_during_concurrent_writes_never_removes_a_referenced_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::on(dir.path().join("mnt"), dir.path().join("store"), &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (mnt, stop) = (m.mnt.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            // Straight through the attribute (as `seamfs gc --mounted` does), as often as possible.
            let control = CString::new(mnt.join(".seamfs").as_os_str().as_bytes()).unwrap();
            let name = CString::new("user.seamfs.gc").unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: valid C strings and a value of the length given.
                let r = unsafe {
                    libc::setxattr(
                        control.as_ptr(),
                        name.as_ptr(),
                        b"run".as_ptr().cast(),
                        3,
                        0,
                    )
                };
                assert_eq!(r, 0, "gc failed: {}", std::io::Error::last_os_error());
                runs += 1;
            }
            runs
        })
    };
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let mnt = m.mnt.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(100 + w);
                let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                for i in 0..150 {
                    // A small pool of contents: a write often re-stores a buffer gc may be removing.
                    let pick = rng.random_range(0..12u64);
                    let len = 1 + (pick as usize * 37_003) % 200_000;
                    let content: Vec<u8> = (0..len).map(|j| (j as u64 * 7 + pick) as u8).collect();
                    let name = format!("w{w}-{}", rng.random_range(0..6));
                    match i % 5 {
                        4 => {
                            let _ = std::fs::remove_file(mnt.join(&name));
                            model.remove(&name);
                        }
                        3 => {
                            // A claim on a file that does not exist yet names the buffer.
                            let claim = format!("w{w}-claim{i}");
                            std::fs::write(mnt.join(&name), &content).unwrap();
                            std::fs::remove_file(mnt.join(&name)).unwrap();
                            model.remove(&name);
                            std::fs::write(
                                mnt.join(format!("{claim}.CHECKSUM")),
                                sidecar(&content),
                            )
                            .unwrap();
                            model.insert(format!("claim:{claim}"), content);
                        }
                        _ => {
                            std::fs::write(mnt.join(&name), &content).unwrap();
                            model.insert(name, content);
                        }
                    }
                }
                model
            })
        })
        .collect();
    let models: Vec<BTreeMap<String, Vec<u8>>> =
        writers.into_iter().map(|t| t.join().unwrap()).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = collector.join().unwrap();
    assert!(runs > 0);
    gc_mounted(&m, &[]);
    for model in &models {
        for (name, content) in model {
            let path = match name.strip_prefix("claim:") {
                Some(claim) => {
                    let claimed = std::fs::read_to_string(m.path(&format!("{claim}.CHECKSUM")));
                    assert_eq!(claimed.unwrap(), sidecar(content));
                    m.path(&format!("by-checksum/{}", Checksum::of(content)))
                }
                None => m.path(name),
            };
            assert!(
                std::fs::read(&path).unwrap() == *content,
                "{}",
                path.display()
            );
        }
    }
    let store = m.store.clone();
    assert!(m.stop().success());
    let (ok, out, err) = seamfs(&["fsck".as_ref(), store.as_os_str()]);
    assert!(ok, "{out}{err}");
}

/// Writes, truncations and chowns drop set-ID bits as on a local filesystem (seamfs does it
/// itself, `FUSE_HANDLE_KILLPRIV_V2`), and `stat` right after shows it: set-user-ID always (a
/// root writer, with CAP_FSETID, keeps it), set-group-ID with group execution, or without it
/// for a writer outside the file's group.
#[test]
fn writes_truncations_and_chowns_drop_set_id_bits() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let m = Mount::with(&["--allow-other"]);
    let reachable = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(m.mnt.parent().unwrap(), reachable).unwrap();
    std::fs::set_permissions(&m.mnt, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mode_after = |name: &str, mode: u32, change: &str, as_nobody: bool| {
        let path = m.path(name);
        std::fs::write(&path, b"before").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(change).arg("sh").arg(&path);
        if as_nobody {
            sh.uid(65534).gid(65534);
        }
        assert!(sh.status().unwrap().success(), "{change} on {mode:o}");
        std::fs::metadata(&path).unwrap().mode() & 0o7777
    };
    let append = r#"echo more >> "$1""#;
    let truncate = r#"truncate -s 1 "$1""#;
    let chown = r#"chown 65534 "$1""#;
    // (file, mode, change, by nobody (else root), mode after, why)
    let cases = [
        ("w1", 0o4777, append, true, 0o777, "set-user-ID goes"),
        (
            "w2",
            0o2777,
            append,
            true,
            0o777,
            "set-group-ID goes with group execution",
        ),
        (
            "w3",
            0o2767,
            append,
            true,
            0o767,
            "and for a writer outside the group",
        ),
        ("w4", 0o6777, append, false, 0o6777, "root keeps them"),
        ("t1", 0o6777, truncate, true, 0o777, "truncation as a write"),
        ("t2", 0o6777, truncate, false, 0o6777, "root keeps them"),
        ("c1", 0o6777, chown, false, 0o777, "chown drops them"),
        (
            "c2",
            0o2767,
            chown,
            false,
            0o2767,
            "but not set-group-ID without group execution",
        ),
    ];
    for (name, mode, change, as_nobody, after, why) in cases {
        assert_eq!(
            mode_after(name, mode, change, as_nobody),
            after,
            "{name}: {why}"
        );
    }
    assert_eq!(std::fs::read(m.path("w1")).unwrap(), b"beforemore\n");
}
