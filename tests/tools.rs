//! Ordinary tools on a real mount: cp, rsync, tar, git, sqlite3, editors' save patterns, Python
//! `tempfile` and the Python `seamless-checksum-index`, in both sidecar modes. Each test compares
//! what the tool leaves in the mount with the same tree on a plain directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

mod common;
use common::{Mount, python_tool};

/// Run `program` with `args`; panics with its stderr unless it exits 0. Returns stdout.
fn run(program: &str, args: &[&str], cwd: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `sh -c script` in `cwd`, which must succeed; returns stdout.
fn sh(script: &str, cwd: &Path) -> String {
    run("sh", &["-c", script], cwd)
}

/// Every entry below `root` as relative path → what it is (file content, symlink target, dir).
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let seen = if meta.is_symlink() {
            format!("-> {}", std::fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            walk(root, &path, out);
            "dir".to_string()
        } else {
            let data = std::fs::read(&path).unwrap();
            format!("{} bytes, {}", data.len(), seamfs::Checksum::of(&data))
        };
        out.insert(rel, seen);
    }
}

/// A small tree with the shapes tools trip over: empty file and directory, dot file, non-ASCII
/// name, a symlink, binary content, nesting.
fn make_tree(root: &Path) {
    let binary: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let files: [(&str, &[u8]); 6] = [
        ("a.txt", b"x\n"),
        ("empty", b""),
        (".hidden", b"h\n"),
        ("sub/b.bin", &binary),
        ("sub/deeper/z \u{e9}.json", b"{\"a\": 1}\n"),
        ("sub/c.txt", b"c\n"),
    ];
    for (rel, data) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
    }
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a value of the length given.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {name} on {}", path.display());
}

/// `rsync -a` again must find nothing to do: no line of `--itemize-changes`.
fn assert_rsync_settled(from: &Path, to: &Path, extra: &[&str]) {
    let from = format!("{}/", from.display());
    let to = format!("{}/", to.display());
    let mut args = vec!["-a", "--itemize-changes"];
    args.extend(extra);
    args.extend([from.as_str(), to.as_str()]);
    let changes = run("rsync", &args, Path::new("/"));
    assert_eq!(changes, "", "a second rsync still had work to do");
}

fn is_sidecar(rel: &str) -> bool {
    rel.ends_with(".CHECKSUM") || rel.ends_with(".INDEX")
}

/// Each copy lists what `src` lists, but for sidecars where they are not listed; those are
/// still found, with the content `src` has.
fn assert_copy(copy: &Path, src: &Path, listed: bool, what: &str) {
    let mut expected = tree(src);
    let sidecars: Vec<String> = expected.keys().filter(|r| is_sidecar(r)).cloned().collect();
    if !listed {
        expected.retain(|rel, _| !is_sidecar(rel));
    }
    assert_eq!(tree(copy), expected, "{what}");
    for rel in sidecars {
        assert_eq!(
            std::fs::read(copy.join(&rel)).unwrap_or_else(|e| panic!("{what}: {rel}: {e}")),
            std::fs::read(src.join(&rel)).unwrap(),
            "{what}: {rel}"
        );
    }
}

/// cp -a, rsync -a, tar c | tar x of `src` into `dst_root/{cp,rsync,tar}` on the mount; each copy
/// must equal `src` (see `assert_copy`), a second rsync must find nothing to do, and tar c of
/// the mount must succeed.
fn round_trips(src: &Path, dst_root: &Path, listed: bool) {
    let cp = dst_root.join("cp");
    run(
        "cp",
        &["-a", src.to_str().unwrap(), cp.to_str().unwrap()],
        Path::new("/"),
    );
    assert_copy(&cp, src, listed, "cp -a");
    let rs = dst_root.join("rsync");
    let (from, to) = (format!("{}/", src.display()), format!("{}/", rs.display()));
    run("rsync", &["-a", &from, &to], Path::new("/"));
    assert_copy(&rs, src, listed, "rsync -a");
    assert_rsync_settled(src, &rs, &[]);
    let tar = dst_root.join("tar");
    std::fs::create_dir(&tar).unwrap();
    sh(
        &format!(
            "tar -C '{}' -cf - . | tar -C '{}' -xf -",
            src.display(),
            tar.display()
        ),
        Path::new("/"),
    );
    assert_copy(&tar, src, listed, "tar c | tar x");
    // Archiving the mount: no "file changed as we read it", and the archive holds the tree.
    let out = tempfile::tempdir().unwrap();
    sh(
        &format!(
            "tar -C '{}' -cf - . | tar -C '{}' -xf -",
            tar.display(),
            out.path().display()
        ),
        Path::new("/"),
    );
    assert_eq!(tree(out.path()), tree(&tar), "tar c of the mount");
}

#[test]
fn cp_rsync_tar_round_trip_a_plain_tree() {
    let m = Mount::new();
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    round_trips(src.path(), &m.mnt, false);
    // Listings show exactly the user's files: find, diff -r, du.
    let found = sh("find . | sort", &m.path("rsync"));
    let expected = sh("find . | sort", src.path());
    assert_eq!(found, expected, "find lists no sidecars");
    run(
        "diff",
        &[
            "-r",
            src.path().to_str().unwrap(),
            m.path("cp").to_str().unwrap(),
        ],
        Path::new("/"),
    );
    assert!(
        m.path("cp/sub.INDEX").exists(),
        "sidecars are still looked up"
    );
    // Stored bytes count once: by-checksum/ (another name for the same buffers) counts nothing.
    let du = sh("du -s -B1 by-checksum | cut -f1", &m.mnt);
    assert_eq!(du.trim(), "0");
    let du_tree: u64 = sh("du -s -B1 rsync | cut -f1", &m.mnt)
        .trim()
        .parse()
        .unwrap();
    assert!(du_tree >= 200_000, "tree files count: {du_tree}");
}

#[test]
fn rsync_xattrs_round_trip() {
    let m = Mount::new();
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let a = src.path().join("a.txt");
    xattr_set(&a, "user.note", b"hello");
    let into = m.path("in");
    run(
        "rsync",
        &[
            "-aX",
            &format!("{}/", src.path().display()),
            into.to_str().unwrap(),
        ],
        Path::new("/"),
    );
    assert_eq!(
        common::xattr(&into.join("a.txt"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    assert_rsync_settled(src.path(), &into, &["-X"]);
    // Out of the mount (our xattrs come along) and back in: equal values and removals are fine.
    let out = tempfile::tempdir().unwrap();
    let from = format!("{}/", into.display());
    run(
        "rsync",
        &["-aX", &from, out.path().to_str().unwrap()],
        Path::new("/"),
    );
    let back = m.path("back");
    let out_from = format!("{}/", out.path().display());
    run(
        "rsync",
        &["-aX", &out_from, back.to_str().unwrap()],
        Path::new("/"),
    );
    assert_eq!(tree(&back), tree(src.path()));
    run(
        "rsync",
        &["-aX", &from, back.to_str().unwrap()],
        Path::new("/"),
    );
    assert_rsync_settled(&into, &back, &["-X"]);
}

#[test]
fn round_trips_of_a_tree_with_sidecars_by_default() {
    let m = Mount::new();
    let src = tempfile::tempdir().unwrap();
    // Sidecars as Seamless tools write them: D.INDEX beside D, F.CHECKSUM beside F.
    make_tree(&src.path().join("d"));
    std::fs::write(src.path().join("f"), b"f\n").unwrap();
    run(
        python_tool("seamless-checksum-index").to_str().unwrap(),
        &["d"],
        src.path(),
    );
    run(
        python_tool("seamless-checksum-file").to_str().unwrap(),
        &["f"],
        src.path(),
    );
    round_trips(src.path(), &m.mnt, false);
    assert_eq!(
        std::fs::read_to_string(m.path(".seamfs/claims")).unwrap(),
        "",
        "every claim was checked"
    );
}

#[test]
fn round_trips_of_a_tree_with_listed_sidecars() {
    let listed = Mount::with(&["--list-sidecars"]);
    make_tree(&listed.path("t/d"));
    std::fs::write(listed.path("t/f"), b"f\n").unwrap();
    // Out of the mount with its sidecars.
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("t");
    run(
        "cp",
        &[
            "-a",
            listed.path("t").to_str().unwrap(),
            copy.to_str().unwrap(),
        ],
        Path::new("/"),
    );
    assert!(copy.join("d.INDEX").exists() && copy.join("d/sub/c.txt.CHECKSUM").exists());
    // D.INDEX equals what seamless-checksum-index gives for the tree as listed.
    let check = tempfile::tempdir().unwrap();
    run(
        "cp",
        &[
            "-a",
            copy.join("d").to_str().unwrap(),
            check.path().to_str().unwrap(),
        ],
        Path::new("/"),
    );
    run(
        python_tool("seamless-checksum-index").to_str().unwrap(),
        &["d"],
        check.path(),
    );
    for name in ["d.INDEX", "d.CHECKSUM"] {
        assert_eq!(
            std::fs::read_to_string(check.path().join(name)).unwrap(),
            std::fs::read_to_string(copy.join(name)).unwrap(),
            "{name}"
        );
    }
    // And back into a mount that lists sidecars.
    let m = Mount::with(&["--list-sidecars"]);
    round_trips(&copy, &m.mnt, true);
    assert_eq!(
        std::fs::read_to_string(m.path(".seamfs/claims")).unwrap(),
        ""
    );
}

#[test]
fn git_works_in_the_mount() {
    let m = Mount::new();
    let repo = m.path("repo");
    std::fs::create_dir(&repo).unwrap();
    make_tree(&repo);
    let git = |args: &[&str]| {
        let mut all = vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "gc.auto=0",
        ];
        all.extend(args);
        run("git", &all, &repo)
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "first"]);
    std::fs::write(repo.join("a.txt"), b"changed\n").unwrap();
    git(&["commit", "-qam", "second"]);
    git(&["gc", "-q"]);
    git(&["fsck", "--strict"]);
    assert_eq!(git(&["status", "--porcelain"]), "");
    assert_eq!(git(&["log", "--oneline"]).lines().count(), 2);
}

#[test]
fn sqlite_with_wal() {
    let m = Mount::new();
    let script = r#"
import sqlite3, sys
path = sys.argv[1]
db = sqlite3.connect(path)
assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, v TEXT)")
for n in range(20):
    with db:
        db.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {n} {i}" * 10,) for i in range(100)])
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == (n + 1) * 100
    reader.close()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
db = sqlite3.connect(path)
assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
print(db.execute("SELECT count(*) FROM t").fetchone()[0])
"#;
    let out = run("python3", &["-c", script, "db.sqlite"], &m.mnt);
    assert_eq!(out.trim(), "2000");
    let cli = run("sqlite3", &["db.sqlite", "SELECT count(*) FROM t;"], &m.mnt);
    assert_eq!(cli.trim(), "2000");
}

#[test]
fn editors_save_patterns() {
    let m = Mount::new();
    let dir = m.mnt.as_path();
    std::fs::write(dir.join("doc.txt"), b"one\n").unwrap();
    // Write a temp file and rename it over the original (most editors, atomic saves).
    std::fs::write(dir.join(".doc.txt.swp"), b"two\n").unwrap();
    std::fs::rename(dir.join(".doc.txt.swp"), dir.join("doc.txt")).unwrap();
    assert_eq!(std::fs::read(dir.join("doc.txt")).unwrap(), b"two\n");
    // Backup~ by rename, then a new file (emacs).
    std::fs::rename(dir.join("doc.txt"), dir.join("doc.txt~")).unwrap();
    std::fs::write(dir.join("doc.txt"), b"three\n").unwrap();
    assert_eq!(std::fs::read(dir.join("doc.txt~")).unwrap(), b"two\n");
    // vim itself, with backups on.
    run(
        "vim",
        &[
            "-u",
            "NONE",
            "-i",
            "NONE",
            "-n",
            "-es",
            "-c",
            "set backup writebackup backupcopy=auto",
            "-c",
            "normal Gofour",
            "-c",
            "wq",
            "doc.txt",
        ],
        dir,
    );
    assert_eq!(
        std::fs::read(dir.join("doc.txt")).unwrap(),
        b"three\nfour\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("doc.txt.CHECKSUM")).unwrap(),
        common::sidecar(b"three\nfour\n")
    );
}

#[test]
fn python_tempfile() {
    let m = Mount::new();
    let script = r#"
import os, sys, tempfile
d = sys.argv[1]
with tempfile.TemporaryFile(dir=d) as f:
    f.write(b"x" * 100000)
    f.seek(0)
    assert f.read() == b"x" * 100000
with tempfile.NamedTemporaryFile(dir=d) as f:
    f.write(b"named")
    f.flush()
    assert open(f.name, "rb").read() == b"named"
fd, name = tempfile.mkstemp(dir=d)
os.write(fd, b"mk")
os.close(fd)
assert open(name, "rb").read() == b"mk"
os.unlink(name)
with tempfile.TemporaryDirectory(dir=d) as t:
    open(os.path.join(t, "f"), "w").write("f")
fixed = lambda e: e.startswith("as-") or e in ("by-checksum", ".seamfs")
print(sorted(e for e in os.listdir(d) if not fixed(e)))
"#;
    let out = run(
        "python3",
        &["-c", script, m.mnt.to_str().unwrap()],
        Path::new("/"),
    );
    assert_eq!(out.trim(), "[]", "nothing left behind");
}

#[test]
fn python_checksum_index_inside_the_mount() {
    for extra in [&[][..], &["--list-sidecars"][..]] {
        let m = Mount::with(extra);
        make_tree(&m.path("d"));
        run(
            python_tool("seamless-checksum-index").to_str().unwrap(),
            &["d"],
            &m.mnt,
        );
        let plain = tempfile::tempdir().unwrap();
        run(
            "cp",
            &[
                "-a",
                m.path("d").to_str().unwrap(),
                plain.path().to_str().unwrap(),
            ],
            Path::new("/"),
        );
        run(
            env!("CARGO_BIN_EXE_seamfs"),
            &["checksum-index", "d"],
            plain.path(),
        );
        for name in ["d.INDEX", "d.CHECKSUM"] {
            assert_eq!(
                std::fs::read_to_string(m.path(name)).unwrap(),
                std::fs::read_to_string(plain.path().join(name)).unwrap(),
                "{name} with {extra:?}"
            );
        }
    }
}

#[test]
fn copies_inside_the_mount_and_appends() {
    let m = Mount::new();
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(m.path("big"), &data).unwrap();
    // cp uses copy_file_range: the copy takes the same buffer.
    run("cp", &["big", "copy"], &m.mnt);
    assert_eq!(std::fs::read(m.path("copy")).unwrap(), data);
    assert_eq!(
        std::fs::read(m.path("copy.CHECKSUM")).unwrap(),
        std::fs::read(m.path("big.CHECKSUM")).unwrap()
    );
    // O_APPEND writes go to the end, also across opens.
    sh("echo a >> log && echo b >> log && printf c >> log", &m.mnt);
    assert_eq!(std::fs::read(m.path("log")).unwrap(), b"a\nb\nc");
}

/// A copier that creates `D.INDEX` (a claim about a directory it has not made yet) and then
/// `D.CHECKSUM`, both with `O_EXCL`, as `cp -a` does when the source lists them in that order:
/// the second must not fail with EEXIST although the first claim makes it visible.
#[test]
fn a_copier_creates_both_sidecars_of_a_directory_before_it() {
    use std::io::Write;
    let m = Mount::new();
    let src = tempfile::tempdir().unwrap();
    make_tree(&src.path().join("d"));
    run(
        python_tool("seamless-checksum-index").to_str().unwrap(),
        &["d"],
        src.path(),
    );
    let dst = m.path("copy");
    std::fs::create_dir(&dst).unwrap();
    for name in ["d.INDEX", "d.CHECKSUM"] {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dst.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        file.write_all(&std::fs::read(src.path().join(name)).unwrap())
            .unwrap();
    }
    run(
        "cp",
        &[
            "-a",
            src.path().join("d").to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
        Path::new("/"),
    );
    assert_eq!(
        std::fs::read_to_string(m.path(".seamfs/claims")).unwrap(),
        "",
        "both claims were checked"
    );
    for name in ["d.INDEX", "d.CHECKSUM"] {
        assert_eq!(
            std::fs::read(dst.join(name)).unwrap(),
            std::fs::read(src.path().join(name)).unwrap(),
            "{name}"
        );
    }
}
