//! Lazily hashed ("kept") files over a real FUSE mount: edits of big files, writes far past the
//! end and `truncate -s` are not hashed at close, and their checksum is right whenever asked
//! (compared with a native twin of the file), across unlink, rename, gc, identical rewrites and
//! a kill -9 of the daemon. FUSE missing is a failure, never a skip.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use seamfs::Checksum;

mod common;
use common::{Mount, Scratch, close, fill_disk, get_xattr, is_mounted, seamfs_hashserver, xattr};

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// open (no O_TRUNC) + pwrite + close.
fn pwrite(path: &Path, offset: u64, data: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(data, offset).unwrap();
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// What `cat F.CHECKSUM` says.
fn sidecar_of(path: &Path) -> Checksum {
    let mut name = path.as_os_str().to_owned();
    name.push(".CHECKSUM");
    Checksum::from_sidecar(&std::fs::read(PathBuf::from(name)).unwrap()).unwrap()
}

fn checksum_of_file(path: &Path) -> Checksum {
    Checksum::of_file(File::open(path).unwrap()).unwrap()
}

/// The kept temp files of a store.
fn kept_files(store: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(store.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("kept-")
        })
        .collect()
}

/// What `by-checksum/<checksum>` of the mount serves.
fn by_checksum(m: &Mount, checksum: &Checksum) -> std::io::Result<Vec<u8>> {
    std::fs::read(m.path(&format!("by-checksum/{}", checksum.hex())))
}

/// The bytes of a buffer in the store's `buffers/`, if it is there.
fn stored(store: &Path, checksum: &Checksum) -> Option<Vec<u8>> {
    let hex = checksum.hex();
    std::fs::read(store.join("buffers").join(&hex[..2]).join(&hex)).ok()
}

/// The rows of `seamfs_kept` in the store's database.
fn kept_rows(store: &Path) -> i64 {
    let conn = rusqlite::Connection::open(store.join("seamless.db")).unwrap();
    conn.query_row("SELECT count(*) FROM seamfs_kept", [], |r| r.get(0))
        .unwrap()
}

/// kill -9 of the daemon, and its dead mount detached.
fn crash(m: &mut Mount) {
    let mut child = m.child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    Command::new("fusermount3")
        .arg("-u")
        .arg(&m.mnt)
        .status()
        .unwrap();
    assert!(!is_mounted(&m.mnt));
}

/// Write `F.CHECKSUM` claiming `checksum` in one write (as `echo HEX > F.CHECKSUM`); the error
/// of the write, else that of the close.
fn claim(path: &Path, checksum: &Checksum) -> Result<(), (&'static str, std::io::Error)> {
    let mut name = path.as_os_str().to_owned();
    name.push(".CHECKSUM");
    let mut file = File::create(PathBuf::from(name)).unwrap();
    std::io::Write::write_all(&mut file, format!("{checksum}\n").as_bytes())
        .map_err(|e| ("write", e))?;
    close(file).map_err(|e| ("close", e))
}

/// `path` shows `data`, its `.CHECKSUM` names those bytes, and no file is kept any more.
fn assert_published(m: &Mount, path: &Path, data: &[u8]) {
    assert_eq!(sidecar_of(path), Checksum::of(data));
    assert!(std::fs::read(path).unwrap() == data);
    assert!(kept_files(&m.store).is_empty());
    assert_eq!(kept_rows(&m.store), 0);
}

/// `h` in the mount and `twin` natively: 4 MiB of `seed`, then a write at 1 GiB (kept: 1 GiB
/// to hash). Returns the mount's kept file.
fn kept_with_a_gib_to_hash(m: &Mount, twin: &Path, seed: u64) -> PathBuf {
    let data = random_bytes(seed, 4 << 20);
    for path in [&m.path("h"), twin] {
        std::fs::write(path, &data).unwrap();
        pwrite(path, 1 << 30, b"end");
    }
    let ino = std::fs::metadata(m.path("h")).unwrap().ino();
    m.store.join("tmp").join(format!("kept-{ino}"))
}

/// Until the background hasher is seen working on `kept` (copying its base in).
fn wait_until_hashing(kept: &Path) {
    eventually("the background hasher starts on the kept file", || {
        std::fs::metadata(kept).is_ok_and(|meta| meta.blocks() * 512 >= 1 << 20)
    });
}

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_pwrite_at_4_gib_and_truncate_4g_are_sparse_and_checksummed_right() {
    let m = Mount::new();
    let native = tempfile::tempdir_in("/var/tmp").unwrap();
    let small = random_bytes(1, 4096);
    for name in ["p", "t"] {
        std::fs::write(m.path(name), &small).unwrap();
        std::fs::write(native.path().join(name), &small).unwrap();
    }
    for root in [m.mnt.as_path(), native.path()] {
        pwrite(&root.join("p"), 4 << 30, b"x");
        truncate(&root.join("t"), 4 << 30);
    }
    assert_eq!(std::fs::metadata(m.path("p")).unwrap().len(), (4 << 30) + 1);
    assert_eq!(std::fs::metadata(m.path("t")).unwrap().len(), 4 << 30);
    // Kept unhashed, and sparse: a few blocks, not 4 GiB.
    let kept = kept_files(&m.store);
    assert_eq!(kept.len(), 2, "{kept:?}");
    for file in &kept {
        assert!(std::fs::metadata(file).unwrap().blocks() * 512 < 1 << 20);
    }
    for name in ["p", "t"] {
        let twin = checksum_of_file(&native.path().join(name));
        assert_eq!(sidecar_of(&m.path(name)), twin, "{name}.CHECKSUM");
        let hex = twin.hex();
        let stored = m.store.join("buffers").join(&hex[..2]).join(&hex);
        assert!(
            std::fs::metadata(stored).unwrap().blocks() * 512 < 1 << 20,
            "stored sparse"
        );
    }
    assert!(kept_files(&m.store).is_empty());
}

#[test]
fn an_edit_in_the_middle_of_a_big_file() {
    let m = Mount::new();
    let mut expected = random_bytes(2, 64 << 20);
    std::fs::write(m.path("big"), &expected).unwrap();
    pwrite(&m.path("big"), 30 << 20, b"edited in the middle");
    expected[30 << 20..(30 << 20) + 20].copy_from_slice(b"edited in the middle");
    assert_eq!(kept_files(&m.store).len(), 1);
    assert!(std::fs::read(m.path("big")).unwrap() == expected);
    let checksum = Checksum::of(&expected);
    assert_eq!(
        xattr(&m.path("big"), "user.seamless.checksum").unwrap(),
        checksum.hex().into_bytes()
    );
    assert_eq!(sidecar_of(&m.path("big")), checksum);
    assert!(std::fs::read(m.path(&format!("by-checksum/{}", checksum.hex()))).unwrap() == expected);
    // Edited again and left alone: the background hasher publishes it.
    pwrite(&m.path("big"), 1, b"again");
    expected[1..6].copy_from_slice(b"again");
    eventually("the idle kept file is hashed", || {
        kept_files(&m.store).is_empty()
    });
    assert_eq!(sidecar_of(&m.path("big")), Checksum::of(&expected));
}

#[test]
fn kill_9_with_kept_files_then_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    let mut edited = random_bytes(3, 16 << 20);
    let mut grown = random_bytes(4, 5000);
    {
        let mut m = Mount::on(mnt.clone(), store.clone(), &[]);
        std::fs::write(m.path("edited"), &edited).unwrap();
        std::fs::write(m.path("grown"), &grown).unwrap();
        pwrite(&m.path("edited"), 10 << 20, b"before the crash");
        truncate(&m.path("grown"), 40 << 20);
        assert_eq!(kept_files(&store).len(), 2);
        crash(&mut m);
    }
    edited[10 << 20..(10 << 20) + 16].copy_from_slice(b"before the crash");
    grown.resize(40 << 20, 0);
    let m = Mount::on(mnt, store, &[]);
    assert!(std::fs::read(m.path("edited")).unwrap() == edited);
    assert!(std::fs::read(m.path("grown")).unwrap() == grown);
    assert_eq!(sidecar_of(&m.path("edited")), Checksum::of(&edited));
    assert_eq!(sidecar_of(&m.path("grown")), Checksum::of(&grown));
    assert!(kept_files(&m.store).is_empty());
}

#[test]
fn rename_unlink_and_gc_of_kept_files() {
    let m = Mount::new();
    let mut data = random_bytes(5, 8 << 20);
    std::fs::write(m.path("a"), &data).unwrap();
    pwrite(&m.path("a"), 5 << 20, b"kept");
    data[5 << 20..(5 << 20) + 4].copy_from_slice(b"kept");
    std::fs::rename(m.path("a"), m.path("b")).unwrap();
    // Garbage collection through the mount leaves the kept file and its base alone.
    let name = std::ffi::CString::new("user.seamfs.gc").unwrap();
    let dir = std::ffi::CString::new(m.path(".seamfs").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C strings and a value of the length given.
    let r = unsafe { libc::setxattr(dir.as_ptr(), name.as_ptr(), b"run".as_ptr().cast(), 3, 0) };
    assert_eq!(r, 0, "gc through user.seamfs.gc");
    assert_eq!(kept_files(&m.store).len(), 1);
    assert!(std::fs::read(m.path("b")).unwrap() == data);
    assert_eq!(sidecar_of(&m.path("b")), Checksum::of(&data));
    // An unlinked kept file leaves nothing behind.
    pwrite(&m.path("b"), 0, b"gone");
    assert_eq!(kept_files(&m.store).len(), 1);
    std::fs::remove_file(m.path("b")).unwrap();
    // (FUSE sends the release of the last close asynchronously: until then it is open.)
    eventually("the kept file of an unlinked file is removed", || {
        kept_files(&m.store).is_empty()
    });
}

#[test]
fn an_identical_rewrite_is_dropped() {
    let m = Mount::new();
    let data = random_bytes(6, 8 << 20);
    std::fs::write(m.path("first"), &data).unwrap();
    std::fs::write(m.path("again"), &data).unwrap();
    assert_eq!(sidecar_of(&m.path("again")), Checksum::of(&data));
    let hex = Checksum::of(&data).hex();
    assert!(m.store.join("buffers").join(&hex[..2]).join(&hex).exists());
    eventually("the duplicate temp file is removed", || {
        std::fs::read_dir(m.store.join("tmp")).unwrap().count() == 0
    });
    assert!(std::fs::read(m.path("again")).unwrap() == data);
}

/// `fsync()` of an edited big file returns once its new content is hashed, published and
/// durable: found by its checksum at once, and there after a kill -9 right after. Writing on
/// after the fsync through the same descriptor works and is published at the next one; a kept
/// (closed) file is published by an fsync through a read-only descriptor (`sync FILE`).
#[test]
fn fsync_of_a_kept_file_publishes_it_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    let mut m = Mount::on(mnt.clone(), store.clone(), &[]);
    let mut data = random_bytes(7, 8 << 20);
    std::fs::write(m.path("f"), &data).unwrap();
    let file = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    file.write_all_at(b"!", 6 << 20).unwrap();
    data[6 << 20] = b'!';
    file.sync_all().unwrap();
    let checksum = Checksum::of(&data);
    assert!(kept_files(&store).is_empty(), "hashed by the fsync");
    assert_eq!(kept_rows(&store), 0);
    assert!(stored(&store, &checksum).unwrap() == data);
    assert!(by_checksum(&m, &checksum).unwrap() == data);
    assert_eq!(sidecar_of(&m.path("f")), checksum);
    file.write_all_at(b"?", 7 << 20).unwrap();
    data[7 << 20] = b'?';
    file.sync_data().unwrap();
    assert!(stored(&store, &Checksum::of(&data)).unwrap() == data);
    drop(file);
    // Edited, closed (kept), then `sync f`: an fsync through a read-only descriptor.
    pwrite(&m.path("f"), 1, b"sync");
    data[1..5].copy_from_slice(b"sync");
    assert_eq!(kept_files(&store).len(), 1);
    File::open(m.path("f")).unwrap().sync_all().unwrap();
    let checksum = Checksum::of(&data);
    assert!(kept_files(&store).is_empty(), "hashed by the fsync");
    assert!(stored(&store, &checksum).unwrap() == data);
    crash(&mut m);
    let m = Mount::on(mnt, store, &[]);
    assert!(std::fs::read(m.path("f")).unwrap() == data);
    assert_eq!(sidecar_of(&m.path("f")), checksum);
    assert!(by_checksum(&m, &checksum).unwrap() == data);
}

/// With `--push`, `fsync()` of an edited big file returns once the new buffer is on the push
/// target (a `seamfs hashserver` on 127.0.0.1).
#[test]
fn fsync_of_a_kept_file_waits_for_the_push() {
    let target = tempfile::tempdir().unwrap();
    let server = seamfs_hashserver(target.path(), &[]);
    let m = Mount::with(&["--push", &server.url()]);
    let mut data = random_bytes(8, 8 << 20);
    std::fs::write(m.path("f"), &data).unwrap();
    let file = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    file.write_all_at(b"!", 5 << 20).unwrap();
    data[5 << 20] = b'!';
    file.sync_all().unwrap();
    let checksum = Checksum::of(&data);
    let response = reqwest::blocking::get(format!("{}/{}", server.url(), checksum.hex())).unwrap();
    assert_eq!(response.status().as_u16(), 200, "not on the push target");
    assert!(response.bytes().unwrap()[..] == data[..]);
}

/// `F.CHECKSUM` written about a kept (edited, unhashed) file is judged against its new
/// content: a matching claim succeeds, a wrong one (the content before the edit) fails its
/// write with EIO as for any complete file; a claim written while the file is open for the
/// edit is checked when it is closed.
#[test]
fn claims_about_a_kept_file() {
    let m = Mount::new();
    let f = m.path("f");
    let mut data = random_bytes(9, 8 << 20);
    std::fs::write(&f, &data).unwrap();
    let before = Checksum::of(&data);
    pwrite(&f, 3 << 20, b"claimed");
    data[3 << 20..(3 << 20) + 7].copy_from_slice(b"claimed");
    let after = Checksum::of(&data);
    assert_eq!(kept_files(&m.store).len(), 1);
    // A kept file is complete: the write itself fails, so a shell redirect reports it.
    let (call, refused) = claim(&f, &before).unwrap_err();
    assert_eq!((call, refused.raw_os_error()), ("write", Some(libc::EIO)));
    claim(&f, &after).unwrap();
    assert_eq!(sidecar_of(&f), after);
    assert!(std::fs::read(&f).unwrap() == data);
    // A claim written before the edit is complete, matching it: accepted at close.
    pwrite(&f, 1, b"k");
    data[1] = b'k';
    let file = OpenOptions::new().write(true).open(&f).unwrap();
    let next = {
        let mut next = data.clone();
        next[2] = b'n';
        next
    };
    claim(&f, &Checksum::of(&next)).unwrap();
    file.write_all_at(b"n", 2).unwrap();
    close(file).unwrap();
    data = next;
    assert_eq!(sidecar_of(&f), Checksum::of(&data));
    assert!(std::fs::read(m.path(".seamfs/claims")).unwrap().is_empty());
    // ... and not matching it (renamed onto the name, as rsync does): the close fails, and
    // the file keeps what it had, its edit acknowledged by the close before included.
    pwrite(&f, 3, b"k");
    data[3] = b'k';
    let file = OpenOptions::new().write(true).open(&f).unwrap();
    std::fs::write(m.path("tmp"), format!("{before}\n")).unwrap();
    std::fs::rename(m.path("tmp"), m.path("f.CHECKSUM")).unwrap();
    file.write_all_at(b"w", 4).unwrap();
    let refused = close(file).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EIO), "{refused}");
    assert_published(&m, &f, &data);
}

/// `by-checksum/` and `as-bytes/` of a kept file's new checksum, asked before the background
/// hasher ran, find it; the checksum before the edit stays served with its old bytes.
#[test]
fn views_of_a_kept_files_new_checksum_before_it_is_hashed() {
    let m = Mount::new();
    let mut data = random_bytes(10, 8 << 20);
    std::fs::write(m.path("v"), &data).unwrap();
    let old = data.clone();
    let mut twin = data.clone();
    pwrite(&m.path("v"), 7 << 20, b"by");
    data[7 << 20..(7 << 20) + 2].copy_from_slice(b"by");
    std::fs::write(m.path("w"), &twin).unwrap();
    pwrite(&m.path("w"), 2 << 20, b"as");
    twin[2 << 20..(2 << 20) + 2].copy_from_slice(b"as");
    let asked = Instant::now();
    assert_eq!(kept_files(&m.store).len(), 2);
    assert!(by_checksum(&m, &Checksum::of(&data)).unwrap() == data);
    let view = m.path(&format!("as-bytes/{}", Checksum::of(&twin).hex()));
    assert!(std::fs::read(view).unwrap() == twin);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "asked after the idle time: the background hasher may have run"
    );
    assert!(by_checksum(&m, &Checksum::of(&old)).unwrap() == old);
    assert_eq!(sidecar_of(&m.path("v")), Checksum::of(&data));
    assert_eq!(sidecar_of(&m.path("w")), Checksum::of(&twin));
}

/// A kept file edited again before it is hashed (a pwrite elsewhere, a truncate down, one up,
/// a write in the regrown part): its checksum is that of the final bytes.
#[test]
fn a_kept_file_edited_again_before_it_is_hashed() {
    let m = Mount::new();
    let f = m.path("f");
    let native = tempfile::tempdir_in("/var/tmp").unwrap();
    let twin = native.path().join("f");
    let data = random_bytes(11, 9 << 20);
    std::fs::write(&f, &data).unwrap();
    std::fs::write(&twin, &data).unwrap();
    for path in [&f, &twin] {
        pwrite(path, 100, b"first");
        pwrite(path, 8 << 20, b"second");
        truncate(path, (6 << 20) + 1234);
        truncate(path, 12 << 20);
        pwrite(path, 10 << 20, b"third");
        pwrite(path, (6 << 20) + 1000, b"across the cut");
    }
    assert_eq!(kept_files(&m.store).len(), 1);
    assert!(std::fs::read(&f).unwrap() == std::fs::read(&twin).unwrap());
    assert_eq!(sidecar_of(&f), checksum_of_file(&twin));
    assert!(kept_files(&m.store).is_empty());
}

/// A kept file whose hashing fails (its store's disk is full when its base is copied in):
/// asking its checksum fails with ENOSPC, its bytes stay readable and it stays kept; once
/// there is room again the checksum is right.
#[test]
fn a_kept_file_whose_hashing_fails_reports_enospc_and_recovers() {
    let scratch = Scratch::new(Some(48));
    let m = Mount::on(scratch.mnt(), scratch.store(), &[]);
    let f = m.path("f");
    let mut data = random_bytes(12, 16 << 20);
    std::fs::write(&f, &data).unwrap();
    pwrite(&f, 9 << 20, b"no room");
    data[9 << 20..(9 << 20) + 7].copy_from_slice(b"no room");
    assert_eq!(kept_files(&m.store).len(), 1);
    fill_disk(&scratch.store(), 0);
    let mut name = f.as_os_str().to_owned();
    name.push(".CHECKSUM");
    let failed = std::fs::read(PathBuf::from(&name)).unwrap_err();
    assert_eq!(failed.raw_os_error(), Some(libc::ENOSPC), "{failed}");
    assert_eq!(get_xattr(&f, "user.seamless.checksum"), Err(libc::ENOSPC));
    assert!(std::fs::read(&f).unwrap() == data);
    assert_eq!(kept_files(&m.store).len(), 1);
    assert_eq!(kept_rows(&m.store), 1);
    std::fs::remove_file(scratch.store().join("filler")).unwrap();
    assert_published(&m, &f, &data);
}

/// A kept file renamed, hard-linked and unlinked under one of its names while unhashed: every
/// name's checksum is that of its new content; replaced by a rename, it leaves nothing.
#[test]
fn rename_link_and_replace_of_an_unhashed_kept_file() {
    let m = Mount::new();
    let mut data = random_bytes(13, 8 << 20);
    std::fs::write(m.path("a"), &data).unwrap();
    pwrite(&m.path("a"), 4 << 20, b"renamed");
    data[4 << 20..(4 << 20) + 7].copy_from_slice(b"renamed");
    std::fs::rename(m.path("a"), m.path("b")).unwrap();
    std::fs::hard_link(m.path("b"), m.path("c")).unwrap();
    assert_eq!(kept_files(&m.store).len(), 1);
    assert_eq!(sidecar_of(&m.path("c")), Checksum::of(&data));
    pwrite(&m.path("c"), 6 << 20, b"linked");
    data[6 << 20..(6 << 20) + 6].copy_from_slice(b"linked");
    std::fs::remove_file(m.path("b")).unwrap();
    assert_eq!(kept_files(&m.store).len(), 1, "c still names it");
    assert!(std::fs::read(m.path("c")).unwrap() == data);
    assert_eq!(sidecar_of(&m.path("c")), Checksum::of(&data));
    pwrite(&m.path("c"), 0, b"replaced");
    std::fs::write(m.path("other"), b"other").unwrap();
    std::fs::rename(m.path("other"), m.path("c")).unwrap();
    eventually("the kept file of a replaced file is removed", || {
        kept_files(&m.store).is_empty()
    });
    assert_eq!(kept_rows(&m.store), 0);
    assert_eq!(sidecar_of(&m.path("c")), Checksum::of(b"other"));
}

/// Kept files unlinked while the background hasher works on them: each is removed as soon as
/// the hasher is seen starting on it (its base copied into its kept file; then 1 GiB to hash).
/// The daemon lives on, and after a restart no kept file and no row is left.
#[test]
fn unlink_while_the_background_hasher_works() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    let mut m = Mount::on(mnt.clone(), store.clone(), &[]);
    let mut left: Vec<(PathBuf, PathBuf)> = (0..4)
        .map(|i| {
            let name = m.path(&format!("u{i}"));
            std::fs::write(&name, random_bytes(20 + i, 4 << 20)).unwrap();
            pwrite(&name, 1 << 30, b"end");
            let ino = std::fs::metadata(&name).unwrap().ino();
            (name, store.join("tmp").join(format!("kept-{ino}")))
        })
        .collect();
    assert_eq!(kept_files(&store).len(), left.len());
    let mut while_hashing = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !left.is_empty() {
        assert!(Instant::now() < deadline, "the hasher never took {left:?}");
        left.retain(|(name, kept)| {
            let hashing = match std::fs::metadata(kept) {
                Ok(meta) => meta.blocks() * 512 >= 1 << 20,
                Err(_) => true, // published meanwhile: removed all the same
            };
            if hashing {
                while_hashing += std::fs::metadata(kept).is_ok() as usize;
                std::fs::remove_file(name).unwrap();
            }
            !hashing
        });
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(while_hashing > 0, "no file was removed while being hashed");
    assert!(
        matches!(m.child.as_mut().unwrap().try_wait(), Ok(None)),
        "the daemon died"
    );
    eventually("the kept files of unlinked files are removed", || {
        kept_files(&store).is_empty()
    });
    m.stop();
    let m = Mount::on(mnt, store.clone(), &[]);
    assert!(kept_files(&store).is_empty());
    assert_eq!(kept_rows(&store), 0);
    std::fs::write(m.path("after"), b"after").unwrap();
    assert_eq!(sidecar_of(&m.path("after")), Checksum::of(b"after"));
}

/// kill -9 while the background hasher works on a kept file (seen copying its base in; then
/// 1 GiB to hash): after a restart the file reads and checksums as its native twin, and
/// nothing is left kept once its checksum was asked.
#[test]
fn kill_9_while_the_background_hasher_works() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    let mut m = Mount::on(mnt.clone(), store.clone(), &[]);
    let native = tempfile::tempdir_in("/var/tmp").unwrap();
    let twin = native.path().join("h");
    let kept = kept_with_a_gib_to_hash(&m, &twin, 30);
    wait_until_hashing(&kept);
    crash(&mut m);
    assert!(kept.exists(), "killed before the hasher finished");
    let m = Mount::on(mnt, store.clone(), &[]);
    let expected = checksum_of_file(&twin);
    assert_eq!(checksum_of_file(&m.path("h")), expected);
    assert_eq!(sidecar_of(&m.path("h")), expected);
    assert!(kept_files(&store).is_empty());
    assert_eq!(kept_rows(&store), 0);
}

/// Attributes answered while the background hasher publishes a kept file (here those `link()`
/// returns, in the middle of hashing 1 GiB) give its size, not the size from before the edit:
/// the kernel keeps them and cuts the file's reads to that size.
#[test]
fn attributes_asked_while_the_background_hasher_publishes() {
    let m = Mount::new();
    let native = tempfile::tempdir_in("/var/tmp").unwrap();
    let twin = native.path().join("h");
    let kept = kept_with_a_gib_to_hash(&m, &twin, 31);
    wait_until_hashing(&kept);
    std::fs::hard_link(m.path("h"), m.path("link")).unwrap();
    let len = std::fs::metadata(&twin).unwrap().len();
    assert_eq!(std::fs::metadata(m.path("link")).unwrap().len(), len);
    assert_eq!(std::fs::metadata(m.path("h")).unwrap().len(), len);
    assert_eq!(checksum_of_file(&m.path("h")), checksum_of_file(&twin));
}
