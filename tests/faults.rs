//! The fault-injection suite: a full disk under a real FUSE mount, hostile writes to virtual
//! files, and kill -9 during mixed load. After every fault: the store passes `seamfs fsck`,
//! every acknowledged write is present and exact, and nothing half-written is visible.
//!
//! Needs root (tmpfs stores) and /dev/fuse; it fails loudly without them.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use seamfs::Checksum;

mod common;
use common::{Mount, Scratch, close, fill_disk, free_port, get_xattr, gzip, is_mounted};

/// Mount the scratch store, with the HTTP database on `port` if given (0: none).
fn start(scratch: &Scratch, port: Option<u16>) -> Mount {
    start_serving(scratch, port, None)
}

/// Mount the scratch store, with the HTTP database on `db` (none if not given) and the buffer
/// server on `buffers` (a free port if not given); returns once both ports answer.
fn start_serving(scratch: &Scratch, db: Option<u16>, buffers: Option<u16>) -> Mount {
    let db_arg = format!("--db-port={}", db.unwrap_or(0));
    let buffer_arg = format!("--buffer-port={}", buffers.unwrap_or(0));
    let mount = Mount::on(scratch.mnt(), scratch.store(), &[&db_arg, &buffer_arg]);
    let deadline = Instant::now() + Duration::from_secs(60);
    for port in [db, buffers].into_iter().flatten() {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "port {port} never opened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    mount
}

/// SIGKILL. The dead mount stays attached (every access fails with ENOTCONN) until `unmount`:
/// detached earlier, the load would go on in the bare directory beneath.
fn kill9(mut m: Mount) {
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}

fn alive(m: &mut Mount) -> bool {
    matches!(m.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
}

fn unmount(mnt: &Path) {
    for _ in 0..50 {
        if !is_mounted(mnt) {
            return;
        }
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(mnt)
            .stderr(Stdio::null())
            .status();
        if is_mounted(mnt) {
            let _ = Command::new("umount").arg("-l").arg(mnt).status();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} stays mounted", mnt.display());
}

/// `seamfs fsck STORE` must report a clean store.
fn assert_fsck_clean(store: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .arg("fsck")
        .arg(store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck found problems:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let quarantine = store.join("quarantine");
    let quarantined = fs::read_dir(&quarantine).map(|d| d.count()).unwrap_or(0);
    assert_eq!(quarantined, 0, "fsck quarantined buffers");
}

/// Whatever a tree file shows, its sidecar names exactly those bytes and `by-checksum/` serves
/// exactly them.
fn assert_consistent(m: &Mount, rel: &str) -> Option<Vec<u8>> {
    let data = fs::read(m.path(rel)).ok()?;
    let claimed = fs::read_to_string(m.path(&format!("{rel}.CHECKSUM"))).unwrap();
    let actual = Checksum::of(&data);
    assert_eq!(
        claimed.trim(),
        actual.hex(),
        "{rel}.CHECKSUM names other bytes"
    );
    // (The empty buffer's `by-checksum/` entry is finding 7, fixed apart.)
    if !data.is_empty() {
        let stored = fs::read(m.path(&format!("by-checksum/{}", actual.hex()))).unwrap();
        assert_eq!(
            Checksum::of(&stored),
            actual,
            "by-checksum/ serves other bytes"
        );
    }
    Some(data)
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    data
}

/// Write `data` in 256 KiB pieces and close; Ok only if every write and the close succeeded.
fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    for piece in data.chunks(256 << 10) {
        file.write_all(piece)?;
    }
    close(file)
}

/// Write `data` second half first, so that a large file is kept unhashed at close (see
/// `fs::kept`); Ok only if every write and the close succeeded.
fn write_out_of_order(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = File::create(path)?;
    let half = data.len() / 2;
    file.write_all_at(&data[half..], half as u64)?;
    file.write_all_at(&data[..half], 0)?;
    close(file)
}

/// Finding 1: on a full store, a writer gets an error from write() or close(), and nothing wrong
/// is stored: every visible file's sidecar and `by-checksum/` entry name its exact bytes, and
/// fsck is clean. The disk fills at a different point in each round.
#[test]
fn a_full_disk_fails_the_writer_and_stores_nothing_wrong() {
    let scratch = Scratch::new(Some(20));
    let mut rng = StdRng::seed_from_u64(13);
    let m = start(&scratch, None);
    let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
    for round in 0..4 {
        // A file that fits, of a random size, so the next write runs out at a random point.
        let len = rng.random_range(1..6 << 20);
        let filler = random_bytes(&mut rng, len);
        let name = format!("filler-{round}");
        // Every other filler is kept unhashed at close (if large enough): its checksum is
        // computed when asked, on the full disk.
        let write = if round % 2 == 0 {
            write_file
        } else {
            write_out_of_order
        };
        write(&m.path(&name), &filler).expect("the filler fits");
        kept.push((name, filler));
        let big = random_bytes(&mut rng, 24 << 20);
        let name = format!("big-{round}");
        let result = write_file(&m.path(&name), &big);
        assert!(
            result.is_err(),
            "24 MiB into a 20 MiB store reported success"
        );
        let errno = result.unwrap_err().raw_os_error();
        assert!(
            matches!(errno, Some(libc::ENOSPC) | Some(libc::EIO)),
            "unexpected error {errno:?}"
        );
        // Whatever the failed writer left visible is self-consistent (or absent). The kernel
        // may write cached pages back after the close, into an edit of what was published:
        // storing that edit then needs space, so its checksum may also be ENOSPC for now.
        let full = fs::read(m.path(&format!("{name}.CHECKSUM")))
            .is_err_and(|e| e.raw_os_error() == Some(libc::ENOSPC));
        if !full && let Some(shown) = assert_consistent(&m, &name) {
            assert!(shown != big, "the failed file shows all its bytes");
        }
        for (name, data) in &kept {
            assert_eq!(assert_consistent(&m, name).as_ref(), Some(data), "{name}");
        }
        // Give the space back for the next round: the failed file and the oldest filler.
        let _ = fs::remove_file(m.path(&name));
        if kept.len() > 1 {
            let (old, _) = kept.remove(0);
            fs::remove_file(m.path(&old)).unwrap();
        }
        let gc = Command::new(env!("CARGO_BIN_EXE_seamfs"))
            .args(["gc", "--mounted"])
            .arg(&m.mnt)
            .output()
            .unwrap();
        assert!(
            gc.status.success(),
            "{}",
            String::from_utf8_lossy(&gc.stderr)
        );
    }
    // A small file still works once there is space.
    write_file(&m.path("after"), b"space is back").unwrap();
    m.stop();
    assert_fsck_clean(&scratch.store());
    let m = start(&scratch, None);
    for (name, data) in &kept {
        assert_eq!(assert_consistent(&m, name).as_ref(), Some(data), "{name}");
    }
    assert_eq!(fs::read(m.path("after")).unwrap(), b"space is back");
    m.stop();
}

/// An edit of a large file is kept unhashed at close, as an overlay of its stored buffer (see
/// `fs::kept`). On a full disk, asking for its checksum still works when the edit restored
/// stored content (nothing to copy), and otherwise fails with ENOSPC (storing it means
/// copying the rest of the file in), never EIO; once there is space again it works, and every
/// answer names the exact bytes.
#[test]
fn checksums_of_kept_edits_on_a_full_disk() {
    use std::os::unix::fs::FileExt;
    let scratch = Scratch::new(Some(20));
    let mut rng = StdRng::seed_from_u64(29);
    let m = start(&scratch, None);
    let original = random_bytes(&mut rng, 6 << 20);
    for name in ["same", "changed"] {
        write_file(&m.path(name), &original).unwrap();
    }
    let edit = |name: &str, bytes: &[u8]| {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(m.path(name))
            .unwrap();
        file.write_all_at(bytes, 1 << 20).unwrap();
        close(file).unwrap();
    };
    edit("same", &original[1 << 20..(1 << 20) + 4096]);
    edit("changed", b"new bytes");
    let mut changed = original.clone();
    changed[1 << 20..(1 << 20) + 9].copy_from_slice(b"new bytes");
    fill_disk(&scratch.store(), 0);

    let sidecar = |name: &str| fs::read_to_string(m.path(&format!("{name}.CHECKSUM")));
    assert_eq!(
        sidecar("same").unwrap().trim(),
        Checksum::of(&original).hex()
    );
    assert_eq!(assert_consistent(&m, "same").unwrap(), original);
    // (The background hasher may have stored it before the disk filled.)
    match sidecar("changed") {
        Ok(text) => assert_eq!(text.trim(), Checksum::of(&changed).hex()),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}"),
    }
    assert_eq!(fs::read(m.path("changed")).unwrap(), changed);

    fs::remove_file(scratch.store().join("filler")).unwrap();
    assert_eq!(assert_consistent(&m, "changed").unwrap(), changed);
    m.stop();
    assert_fsck_clean(&scratch.store());
}

/// A kept file whose write fails after its close, while its writer still has it open (a full
/// disk; the kernel writes cached pages back when it likes, here forced with
/// `sync_file_range`): its sidecar names the bytes it shows, or says ENOSPC while even the
/// tree row cannot be committed, never EIO (the flaky
/// `a_full_disk_fails_the_writer_and_stores_nothing_wrong` met EIO with the kernel's own
/// timing); once the writer is gone and there is space again it is right.
#[test]
fn a_kept_file_whose_late_write_fails_on_a_full_disk_stays_consistent() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let scratch = Scratch::new(Some(20));
    let mut rng = StdRng::seed_from_u64(43);
    let m = start(&scratch, None);
    let data = random_bytes(&mut rng, 6 << 20);
    write_out_of_order(&m.path("k"), &data).unwrap();
    fill_disk(&scratch.store(), 0);
    let writer = fs::OpenOptions::new()
        .write(true)
        .open(m.path("k"))
        .unwrap();
    // Appended: new blocks, which the full disk refuses (at write() or at the write-back).
    let wrote = writer.write_all_at(&random_bytes(&mut rng, 2 << 20), data.len() as u64);
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a valid descriptor; the whole file.
    assert_eq!(
        unsafe { libc::sync_file_range(writer.as_raw_fd(), 0, 0, flags) },
        0
    );
    match fs::read_to_string(m.path("k.CHECKSUM")) {
        Ok(_) => {
            let shown = assert_consistent(&m, "k").expect("k is readable");
            assert!(shown.starts_with(&data), "k lost acknowledged bytes");
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}"),
    }
    let closed = close(writer);
    assert!(
        wrote.is_err() || closed.is_err(),
        "2 MiB more on a full disk reported success"
    );
    fs::remove_file(scratch.store().join("filler")).unwrap();
    let shown = assert_consistent(&m, "k").expect("k is readable");
    assert!(shown.starts_with(&data), "k lost acknowledged bytes");
    m.stop();
    assert_fsck_clean(&scratch.store());
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// Finding 3: a write far past the end of a sidecar (a claim) fails with EFBIG instead of
/// making the daemon allocate it, and streaming 300 MiB into a sidecar is refused at once.
#[test]
fn writes_to_virtual_files_have_bounded_memory() {
    let scratch = Scratch::new(None);
    let mut m = start(&scratch, None);
    let pid = m.child.as_ref().unwrap().id();
    let dd = Command::new("dd")
        .args(["if=/dev/zero", "bs=1", "count=1", "seek=1T", "conv=notrunc"])
        .arg(format!("of={}", m.path("zz.CHECKSUM").display()))
        .output()
        .unwrap();
    assert!(!dd.status.success(), "a 1 TiB sidecar was accepted");
    let err = String::from_utf8_lossy(&dd.stderr);
    assert!(err.contains("File too large"), "dd said: {err}");
    assert!(alive(&mut m), "the daemon died");

    // 300 MiB streamed into the sidecar of an existing file and of a missing one.
    write_file(&m.path("f"), b"subject").unwrap();
    for name in ["f.CHECKSUM", "missing.CHECKSUM"] {
        let mut file = File::create(m.path(name)).unwrap();
        let block = vec![b'0'; 1 << 20];
        let mut refused = None;
        for _ in 0..300 {
            if let Err(e) = file.write_all(&block) {
                refused = Some(e);
                break;
            }
        }
        let err = refused.expect("300 MiB into a sidecar was accepted");
        assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{name}: {err}");
        drop(file);
    }
    assert!(alive(&mut m), "the daemon died");
    assert!(rss(pid) < 256 << 20, "the daemon holds {} bytes", rss(pid));
    // A genuine claim still works.
    write_file(
        &m.path("g.CHECKSUM"),
        format!("{}\n", Checksum::of(b"g")).as_bytes(),
    )
    .unwrap();
    write_file(&m.path("g"), b"g").unwrap();
    assert_eq!(
        fs::read_to_string(m.path("g.CHECKSUM")).unwrap().trim(),
        Checksum::of(b"g").hex()
    );
    m.stop();
}

/// What the load of one cycle attempted and what was acknowledged.
#[derive(Default)]
struct Ledger {
    /// Files closed without error: name → exact content checksum.
    files: Vec<(String, Checksum)>,
    /// Files attempted but not acknowledged: name → the content they would have had.
    attempted: Vec<(String, Checksum)>,
    /// Transformation records answered 200: transformation → result.
    records: Vec<(Checksum, Checksum)>,
    /// Buffers PUT to the buffer server and answered 200/201.
    puts: Vec<Checksum>,
    /// Buffers PUT but not acknowledged.
    attempted_puts: Vec<Checksum>,
}

impl Ledger {
    fn extend(&mut self, other: &Ledger) {
        self.files.extend(other.files.iter().cloned());
        self.attempted.extend(other.attempted.iter().cloned());
        self.records.extend(other.records.iter().cloned());
        self.puts.extend(other.puts.iter().cloned());
        self.attempted_puts
            .extend(other.attempted_puts.iter().cloned());
    }
}

/// Write files through the mount until it goes away; `fsync` every other one.
fn fuse_writer(root: PathBuf, prefix: String, seed: u64) -> Ledger {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ledger = Ledger::default();
    for i in 0.. {
        let len = if rng.random_bool(0.5) {
            rng.random_range(0..4096)
        } else {
            rng.random_range(4096..512 << 10)
        };
        let data = random_bytes(&mut rng, len);
        let name = format!("{prefix}-{i}");
        let checksum = Checksum::of(&data);
        ledger.attempted.push((name.clone(), checksum));
        let written = (|| {
            let mut file = File::create(root.join(&name))?;
            for piece in data.chunks(128 << 10) {
                file.write_all(piece)?;
            }
            if i % 2 == 0 {
                file.sync_all()?;
            }
            close(file)
        })();
        match written {
            Ok(()) => ledger.files.push((name, checksum)),
            Err(_) => return ledger,
        }
    }
    unreachable!()
}

/// An HTTP client that gives up on a dead server after 10 s.
fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// PUT transformation records over HTTP until the server goes away.
fn http_writer(port: u16, seed: u64) -> Ledger {
    let client = client();
    let mut ledger = Ledger::default();
    for i in 0u64.. {
        let tf = Checksum::of(format!("tf {seed} {i}").as_bytes());
        let result = Checksum::of(format!("result {seed} {i}").as_bytes());
        let body = format!(
            r#"{{"type": "transformation", "checksum": "{}", "value": "{}"}}"#,
            tf.hex(),
            result.hex()
        );
        let response = client
            .put(format!("http://127.0.0.1:{port}/"))
            .body(body)
            .send();
        match response {
            Ok(r) if r.status().as_u16() == 200 => ledger.records.push((tf, result)),
            Ok(r) => panic!("PUT answered {}: {:?}", r.status(), r.text()),
            Err(_) => return ledger,
        }
    }
    unreachable!()
}

/// PUT buffers (hashserver protocol) to the mount's buffer server until it goes away; every
/// other one gzip-compressed (`Content-Encoding: gzip`), as seamless-remote may send them.
fn buffer_writer(port: u16, seed: u64) -> Ledger {
    let mut rng = StdRng::seed_from_u64(seed);
    let client = client();
    let mut ledger = Ledger::default();
    for i in 0u64.. {
        let len = if rng.random_bool(0.5) {
            rng.random_range(1..4096)
        } else {
            rng.random_range(4096..128 << 10)
        };
        let data = random_bytes(&mut rng, len);
        let checksum = Checksum::of(&data);
        ledger.attempted_puts.push(checksum);
        let request = client.put(format!("http://127.0.0.1:{port}/{}", checksum.hex()));
        let request = if i % 2 == 0 {
            request.body(data)
        } else {
            request.header("Content-Encoding", "gzip").body(gzip(&data))
        };
        match request.send() {
            Ok(r) if matches!(r.status().as_u16(), 200 | 201) => ledger.puts.push(checksum),
            Ok(r) => panic!("buffer PUT answered {}: {:?}", r.status(), r.text()),
            Err(_) => return ledger,
        }
    }
    unreachable!()
}

/// Read views of JSON files written before the cycle until the mount goes away.
fn view_reader(root: PathBuf, sources: Vec<Checksum>) {
    for round in 0.. {
        for (i, checksum) in sources.iter().enumerate() {
            let view = ["as-plain", "as-text", "as-int", "as-python"][(round + i) % 4];
            if !root.exists() {
                return;
            }
            match fs::read(root.join(format!("{view}/{}", checksum.hex()))) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return,
                Err(_) => {}
            }
        }
        if round > 100_000 {
            return;
        }
    }
}

fn db_get(client: &reqwest::blocking::Client, port: u16, body: String) -> (u16, String) {
    let response = client
        .get(format!("http://127.0.0.1:{port}/"))
        .body(body)
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// After a crash: every acknowledged file, record and buffer PUT is present and exact, and every
/// file in the tree is whole (its sidecar and `by-checksum/` name its exact bytes): an
/// unacknowledged write is absent, empty or complete, an unacknowledged PUT absent or complete.
fn check_after_crash(m: &Mount, port: u16, buffer_port: u16, ledger: &Ledger) {
    for (name, checksum) in &ledger.files {
        let data = assert_consistent(m, name).unwrap_or_else(|| panic!("{name} was lost"));
        assert_eq!(Checksum::of(&data), *checksum, "{name} changed");
    }
    for (name, checksum) in &ledger.attempted {
        if let Some(data) = assert_consistent(m, name) {
            let seen = Checksum::of(&data);
            assert!(
                data.is_empty() || seen == *checksum,
                "{name} is half-written ({} bytes)",
                data.len()
            );
        }
    }
    // One client (one connection) for every check: a client per request costs a thread each.
    let client = reqwest::blocking::Client::new();
    for (tf, result) in &ledger.records {
        let query = format!(
            r#"{{"type": "transformation", "checksum": "{}"}}"#,
            tf.hex()
        );
        let (status, body) = db_get(&client, port, query);
        assert_eq!(status, 200, "record of {tf} lost: {body}");
        assert!(
            body.contains(&result.hex()),
            "record of {tf} changed: {body}"
        );
    }
    for checksum in &ledger.puts {
        let stored = fs::read(m.path(&format!("by-checksum/{}", checksum.hex())))
            .unwrap_or_else(|e| panic!("buffer {checksum} PUT and lost: {e}"));
        assert_eq!(
            Checksum::of(&stored),
            *checksum,
            "buffer {checksum} changed"
        );
        let served = client
            .get(format!("http://127.0.0.1:{buffer_port}/{}", checksum.hex()))
            .send()
            .unwrap();
        assert_eq!(
            served.status().as_u16(),
            200,
            "buffer {checksum} not served"
        );
        assert_eq!(
            Checksum::of(&served.bytes().unwrap()),
            *checksum,
            "buffer {checksum} served changed"
        );
    }
    for checksum in &ledger.attempted_puts {
        if let Ok(stored) = fs::read(m.path(&format!("by-checksum/{}", checksum.hex()))) {
            assert_eq!(
                Checksum::of(&stored),
                *checksum,
                "buffer {checksum} is half-written ({} bytes)",
                stored.len()
            );
        }
    }
}

/// kill -9 during mixed load (FUSE writers, some fsyncing; HTTP database PUTs; buffer PUTs to
/// the buffer server; view conversions), 20 times: after each, fsck is clean and nothing
/// acknowledged is lost.
#[test]
fn kill_9_during_mixed_load_loses_nothing_acknowledged() {
    let scratch = Scratch::new(None);
    let mut rng = StdRng::seed_from_u64(9);
    let mut ledger = Ledger::default();
    let mut last = Ledger::default();
    // JSON sources for the views.
    let m = start(&scratch, None);
    let mut sources = Vec::new();
    for i in 0..8 {
        let text = format!("{{\"n\": {i}, \"list\": [1, 2, {}]}}\n", i * 7);
        write_file(&m.path(&format!("source-{i}.json")), text.as_bytes()).unwrap();
        sources.push(Checksum::of(text.as_bytes()));
    }
    m.stop();
    for cycle in 0..20 {
        let started = Instant::now();
        let (port, buffer_port) = (free_port(), free_port());
        let m = start_serving(&scratch, Some(port), Some(buffer_port));
        // What the last cycle did is checked after every crash, everything at the end.
        check_after_crash(&m, port, buffer_port, &last);
        let threads: Vec<std::thread::JoinHandle<Ledger>> = vec![
            {
                let root = m.mnt.clone();
                let seed = rng.random();
                std::thread::spawn(move || fuse_writer(root, format!("c{cycle}-a"), seed))
            },
            {
                let root = m.mnt.clone();
                let seed = rng.random();
                std::thread::spawn(move || fuse_writer(root, format!("c{cycle}-b"), seed))
            },
            {
                let seed = rng.random();
                std::thread::spawn(move || http_writer(port, seed))
            },
            {
                let seed = rng.random();
                std::thread::spawn(move || buffer_writer(buffer_port, seed))
            },
            {
                let seed = rng.random();
                std::thread::spawn(move || buffer_writer(buffer_port, seed))
            },
            {
                let root = m.mnt.clone();
                let sources = sources.clone();
                std::thread::spawn(move || {
                    view_reader(root, sources);
                    Ledger::default()
                })
            },
        ];
        std::thread::sleep(Duration::from_millis(rng.random_range(100..400)));
        kill9(m);
        last = Ledger::default();
        for thread in threads {
            last.extend(&thread.join().expect("a load thread panicked"));
        }
        ledger.extend(&last);
        unmount(&scratch.mnt());
        assert_fsck_clean(&scratch.store());
        eprintln!("cycle {cycle}: {:?}", started.elapsed());
    }
    let (port, buffer_port) = (free_port(), free_port());
    let m = start_serving(&scratch, Some(port), Some(buffer_port));
    check_after_crash(&m, port, buffer_port, &ledger);
    eprintln!(
        "20 kill -9 cycles: {} files, {} records and {} buffer PUTs acknowledged, \
         {} writes and {} PUTs attempted",
        ledger.files.len(),
        ledger.records.len(),
        ledger.puts.len(),
        ledger.attempted.len(),
        ledger.attempted_puts.len()
    );
    assert!(
        ledger.files.len() >= 20,
        "too little load: {}",
        ledger.files.len()
    );
    assert!(
        ledger.records.len() >= 20,
        "too few records: {}",
        ledger.records.len()
    );
    // Each PUT is stored durably (fsynced) before its answer, so a cycle sees only a few.
    assert!(
        ledger.puts.len() >= 10,
        "too few buffer PUTs: {}",
        ledger.puts.len()
    );
    m.stop();
}

/// A full disk at random points of writes, SQLite commits (injected: SQLite often reuses WAL
/// space it already has) and gc: an operation either fails with an error and leaves nothing (a
/// failed mkdir is not listed, also after a restart: finding 2), or succeeds and stays; fsck is
/// clean. Needs the `fault-injection` feature (scripts/test builds with it).
#[test]
fn a_full_disk_during_commits_and_gc_keeps_the_store_whole() {
    let scratch = Scratch::new(Some(8));
    let mut rng = StdRng::seed_from_u64(2);
    let m = start(&scratch, None);
    let mut made = Vec::new();
    let mut refused = Vec::new();
    for round in 0..12 {
        fill_disk(&scratch.store(), rng.random_range(0..48 << 10));
        if round % 2 == 1 {
            fs::write(scratch.store().join("fail-next-commit"), b"").unwrap_or_default();
        }
        let dir = format!("d{round}");
        match fs::create_dir(m.path(&dir)) {
            Ok(()) => {
                made.push((dir.clone(), String::new()));
                let file = format!("{dir}/f");
                let data = format!("round {round}");
                if write_file(&m.path(&file), data.as_bytes()).is_ok() {
                    made.push((file, data));
                }
            }
            Err(e) => {
                assert!(
                    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EIO)),
                    "{e}"
                );
                assert!(!m.path(&dir).exists(), "a failed mkdir left {dir}");
                refused.push(dir);
            }
        }
        // gc on a full disk: an error or a report, never a broken store.
        let _ = Command::new(env!("CARGO_BIN_EXE_seamfs"))
            .args(["gc", "--mounted"])
            .arg(&m.mnt)
            .output()
            .unwrap();
        fs::remove_file(scratch.store().join("filler")).unwrap();
        let _ = fs::remove_file(scratch.store().join("fail-next-commit"));
        check_made(&m, &made);
    }
    eprintln!("{} made, {} refused", made.len(), refused.len());
    assert!(
        !refused.is_empty(),
        "no commit failed: run with --features fault-injection (scripts/test does)"
    );
    m.stop();
    assert_fsck_clean(&scratch.store());
    let m = start(&scratch, None);
    check_made(&m, &made);
    for dir in &refused {
        assert!(!m.path(dir).exists(), "{dir} appeared after a restart");
    }
    m.stop();
}

/// Directories (empty content) and files made with success are there, exact.
fn check_made(m: &Mount, made: &[(String, String)]) {
    for (name, data) in made {
        if data.is_empty() {
            assert!(m.path(name).is_dir(), "{name} vanished");
        } else {
            assert_eq!(fs::read_to_string(m.path(name)).unwrap(), *data, "{name}");
        }
    }
}

/// The checksums in the deferred ledger (`fs::deferred`) of a store whose daemon is dead.
fn ledgered(store: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(store.join("seamless.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT checksum FROM seamfs_deferred")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The records a dead mount left in its journal of closed files (`fs::journal`).
fn journaled(store: &Path) -> String {
    fs::read_to_string(store.join("seamfs-journal")).unwrap_or_default()
}

/// Issue 14: a close is acknowledged once its record is in the journal of closed files
/// (`fs::journal`), before any SQLite transaction. 1 000 files of 4 KiB, kill -9 right after
/// the last close: the journal holds closes not committed yet (checked, else the round is
/// repeated); after a restart every file has its exact content, `.CHECKSUM` and
/// `by-checksum/` entry; a clean stop empties the journal; fsck is clean.
#[test]
fn kill_9_right_after_many_closes_keeps_every_file() {
    let scratch = Scratch::new(None);
    let mut rng = StdRng::seed_from_u64(1414);
    for round in 0..5 {
        let m = start(&scratch, None);
        let dir = format!("r{round}");
        fs::create_dir(m.path(&dir)).unwrap();
        let mut expected = Vec::new();
        for i in 0..1000 {
            let data = random_bytes(&mut rng, 4096);
            let rel = format!("{dir}/f{i}");
            write_file(&m.path(&rel), &data).unwrap();
            expected.push((rel, data));
        }
        kill9(m);
        unmount(&scratch.mnt());
        let exercised = !journaled(&scratch.store()).is_empty();
        assert_fsck_clean(&scratch.store());
        let m = start(&scratch, None);
        for (rel, data) in &expected {
            assert_eq!(assert_consistent(&m, rel).as_ref(), Some(data), "{rel}");
        }
        drop(m);
        unmount(&scratch.mnt());
        assert!(
            journaled(&scratch.store()).is_empty(),
            "a clean stop empties the journal"
        );
        assert_fsck_clean(&scratch.store());
        if exercised {
            return;
        }
    }
    panic!("the committer always caught up before the kill: the journal was never exercised");
}

/// Issue 14: `fsync()` commits what waits in the journal of closed files and syncs the WAL:
/// when it returns, the rows of the files closed before it, and its own, are in `seamless.db`
/// (read by another connection while the mount runs); they survive a kill -9 too.
#[test]
fn fsync_commits_the_journal_of_closed_files() {
    let scratch = Scratch::new(None);
    let m = start(&scratch, None);
    for i in 0..50 {
        write_file(&m.path(&format!("f{i}")), format!("closed {i}").as_bytes()).unwrap();
    }
    let mut file = File::create(m.path("synced")).unwrap();
    file.write_all(b"fsynced").unwrap();
    file.sync_all().unwrap();
    let conn = rusqlite::Connection::open(scratch.store().join("seamless.db")).unwrap();
    let committed: i64 = conn
        .query_row(
            "SELECT count(*) FROM seamfs_tree WHERE name LIKE 'f%' AND size > 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(committed, 50);
    let synced: String = conn
        .query_row(
            "SELECT checksum FROM seamfs_tree WHERE name = 'synced'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(synced, Checksum::of(b"fsynced").hex());
    drop(conn);
    close(file).unwrap();
    kill9(m);
    unmount(&scratch.mnt());
    let m = start(&scratch, None);
    assert_eq!(fs::read(m.path("synced")).unwrap(), b"fsynced");
    for i in 0..50 {
        assert_eq!(
            fs::read(m.path(&format!("f{i}"))).unwrap(),
            format!("closed {i}").as_bytes()
        );
    }
    drop(m);
    unmount(&scratch.mnt());
    assert_fsck_clean(&scratch.store());
}

/// Issue 14: `close()` publishes without an fsync; a power loss before the group sync may leave
/// a buffer's name with other bytes. Simulated: kill -9 right after the writes, then the bytes
/// of a closed (not fsynced) file's buffer replaced as if they never reached the disk. At the
/// next start the damaged buffer is removed and both files naming it are empty (never wrong
/// bytes); the fsynced file and another closed one are exact; fsck is clean.
#[test]
fn a_power_loss_before_the_group_sync_leaves_no_wrong_bytes() {
    let scratch = Scratch::new(None);
    let mut rng = StdRng::seed_from_u64(14);
    for round in 0..5 {
        let m = start(&scratch, None);
        let fsynced = random_bytes(&mut rng, 300 << 10);
        let lost = random_bytes(&mut rng, 200 << 10);
        let kept = random_bytes(&mut rng, 100 << 10);
        let mut file = File::create(m.path(&format!("fsynced{round}"))).unwrap();
        file.write_all(&fsynced).unwrap();
        file.sync_all().unwrap();
        close(file).unwrap();
        write_file(&m.path(&format!("lost{round}")), &lost).unwrap();
        write_file(&m.path(&format!("twin{round}")), &lost).unwrap();
        write_file(&m.path(&format!("kept{round}")), &kept).unwrap();
        kill9(m);
        unmount(&scratch.mnt());
        let hex = Checksum::of(&lost).hex();
        // Ledgered, or in the journal of closed files (whose buffers are ledgered at replay).
        if !ledgered(&scratch.store()).contains(&hex) && !journaled(&scratch.store()).contains(&hex)
        {
            // The group sync ran between the writes: nothing for a power loss to damage.
            continue;
        }
        let path = scratch.store().join("buffers").join(&hex[..2]).join(&hex);
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        fs::write(&path, vec![0u8; lost.len()]).unwrap();

        let m = start(&scratch, None);
        let read = |name: &str| assert_consistent(&m, &format!("{name}{round}")).unwrap();
        assert_eq!(read("fsynced"), fsynced);
        assert_eq!(read("kept"), kept);
        assert!(read("lost").is_empty(), "a damaged buffer is served");
        assert!(read("twin").is_empty(), "a damaged buffer is served");
        assert!(!m.path(&format!("by-checksum/{hex}")).exists());
        drop(m);
        unmount(&scratch.mnt());
        assert_fsck_clean(&scratch.store());
        assert!(
            ledgered(&scratch.store()).is_empty(),
            "a clean stop clears the ledger"
        );
        return;
    }
    panic!("the group sync always ran before the kill: the ledger was never exercised");
}

/// Issue 14: `tar x` into the mount, then kill -9. tar sets each file's mtime, owner and mode
/// through the open file before closing it, and the mount journals those with the file at its
/// close (`fs::journal`, committed in groups): after a restart every extracted file has its content,
/// mode, mtime and owner. A file created and written but not closed before the kill was never
/// acknowledged: it is gone or empty.
#[test]
fn files_closed_before_a_kill_9_keep_content_and_attributes() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let scratch = Scratch::new(None);
    let source = scratch.dir.path().join("source");
    fs::create_dir_all(source.join("d")).unwrap();
    let mut rng = StdRng::seed_from_u64(14);
    let when = |i: u32| std::time::UNIX_EPOCH + Duration::from_secs(1_234_567_890 + i as u64);
    let mut expected = Vec::new();
    for i in 0..60u32 {
        let rel = format!("d/f{i}");
        let data = random_bytes(&mut rng, 4096);
        let mut file = File::create(source.join(&rel)).unwrap();
        file.write_all(&data).unwrap();
        file.set_modified(when(i)).unwrap();
        let mode = [0o600, 0o640, 0o755][i as usize % 3];
        file.set_permissions(fs::Permissions::from_mode(mode))
            .unwrap();
        std::os::unix::fs::fchown(&file, Some(1000 + i), Some(2000 + i)).unwrap();
        expected.push((rel, data, mode, i));
    }
    let archive = scratch.dir.path().join("files.tar");
    let tar = |args: &[&std::ffi::OsStr]| {
        let status = Command::new("tar").args(args).status().expect("run tar");
        assert!(status.success(), "tar {args:?}");
    };
    tar(&[
        "cf".as_ref(),
        archive.as_os_str(),
        "-C".as_ref(),
        source.as_os_str(),
        "d".as_ref(),
    ]);
    let m = start(&scratch, None);
    tar(&[
        "xf".as_ref(),
        archive.as_os_str(),
        "-C".as_ref(),
        m.mnt.as_os_str(),
    ]);
    // Written, its mode set, but still open when the daemon dies.
    let mut unclosed = File::create(m.path("unclosed")).unwrap();
    unclosed.write_all(b"never acknowledged").unwrap();
    unclosed
        .set_permissions(fs::Permissions::from_mode(0o600))
        .unwrap();
    kill9(m);
    drop(unclosed);
    unmount(&scratch.mnt());

    let m = start(&scratch, None);
    for (rel, data, mode, i) in &expected {
        let path = m.path(rel);
        assert_eq!(&fs::read(&path).unwrap(), data, "{rel}");
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, *mode, "{rel}");
        assert_eq!(meta.modified().unwrap(), when(*i), "{rel}");
        assert_eq!((meta.uid(), meta.gid()), (1000 + i, 2000 + i), "{rel}");
    }
    if let Ok(meta) = fs::metadata(m.path("unclosed")) {
        assert_eq!(meta.len(), 0, "unacknowledged bytes were kept");
    }
    drop(m);
    unmount(&scratch.mnt());
    assert_fsck_clean(&scratch.store());
}

/// The buffer file of `checksum` in `store` (prefix layout), read directly.
fn stored_buffer(store: &Path, checksum: &Checksum) -> Option<Vec<u8>> {
    let hex = checksum.hex();
    fs::read(store.join("buffers").join(&hex[..2]).join(&hex)).ok()
}

/// Every file in `store/buffers/` is named by the SHA-256 of its bytes: nothing half-written is
/// visible there.
fn assert_buffer_dir_whole(store: &Path) {
    for entry in walkdir::WalkDir::new(store.join("buffers")) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let data = fs::read(entry.path()).unwrap();
        assert_eq!(
            Checksum::of(&data).hex(),
            name,
            "{} is not the buffer it is named after ({} bytes)",
            entry.path().display(),
            data.len()
        );
    }
}

/// `seamfs gc STORE` (the store not mounted).
fn gc_offline(store: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .arg("gc")
        .arg(store)
        .output()
        .unwrap()
}

/// `seamfs gc STORE` run offline on a full disk (a tmpfs filled to a random slack before each
/// round): it either succeeds or fails with a message saying why; either way every buffer the
/// tree references is still there and exact, nothing half-written is visible, and fsck is
/// clean once space is back. With space back, gc removes the garbage it had to leave.
#[test]
fn a_full_disk_during_offline_gc_removes_nothing_wrongly() {
    let scratch = Scratch::new(Some(8));
    let mut rng = StdRng::seed_from_u64(4);
    let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
    let mut garbage: Vec<Checksum> = Vec::new();
    let (mut succeeded, mut failed) = (0, 0);
    for round in 0..8 {
        let m = start(&scratch, None);
        for i in 0..4 {
            let len = rng.random_range(1..64 << 10);
            let data = random_bytes(&mut rng, len);
            let name = format!("k{round}-{i}");
            write_file(&m.path(&name), &data).unwrap();
            kept.push((name, data));
            let len = rng.random_range(1..64 << 10);
            let doomed = random_bytes(&mut rng, len);
            let name = format!("g{round}-{i}");
            write_file(&m.path(&name), &doomed).unwrap();
            fs::remove_file(m.path(&name)).unwrap();
            garbage.push(Checksum::of(&doomed));
        }
        m.stop();
        fill_disk(&scratch.store(), rng.random_range(0..256 << 10));
        let gc = gc_offline(&scratch.store());
        let stderr = String::from_utf8_lossy(&gc.stderr);
        if gc.status.success() {
            succeeded += 1;
            for checksum in &garbage {
                assert!(
                    stored_buffer(&scratch.store(), checksum).is_none(),
                    "gc reported success and kept garbage {checksum}"
                );
            }
            garbage.clear();
        } else {
            failed += 1;
            assert!(
                stderr.contains("No space left on device") || stderr.contains("disk is full"),
                "gc failed without saying why: {stderr}"
            );
        }
        for (name, data) in &kept {
            let stored = stored_buffer(&scratch.store(), &Checksum::of(data));
            assert_eq!(stored.as_ref(), Some(data), "gc removed or changed {name}");
        }
        assert_buffer_dir_whole(&scratch.store());
        fs::remove_file(scratch.store().join("filler")).unwrap();
        assert_fsck_clean(&scratch.store());
    }
    eprintln!("offline gc on a full disk: {succeeded} succeeded, {failed} failed");
    let gc = gc_offline(&scratch.store());
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    for checksum in &garbage {
        assert!(stored_buffer(&scratch.store(), checksum).is_none());
    }
    let m = start(&scratch, None);
    for (name, data) in &kept {
        assert_eq!(assert_consistent(&m, name).as_ref(), Some(data), "{name}");
    }
    m.stop();
}

/// A RAM tier over a disk tier on a full tmpfs (filled to a random slack before each round):
/// whole buffers put into RAM (as view results are) while eviction must offload them to the
/// full disk. Every put either fails with an error or leaves its buffer readable (in RAM, or on
/// disk); a failed offload keeps the buffer in RAM; no half-written file is ever visible in
/// `buffers/` and no temp file is left; the RAM tier's counters match what it holds.
#[test]
fn a_full_disk_during_ram_offload_keeps_every_buffer_readable() {
    use seamfs::Buffer;
    use seamfs::store::{DiskStore, Layered, MemoryTier, RamConfig, Tier, Writes};
    use std::sync::Arc;

    let scratch = Scratch::new(Some(4));
    let mut rng = StdRng::seed_from_u64(5);
    let disk = DiskStore::open(scratch.store()).unwrap();
    let ram = Arc::new(MemoryTier::new(RamConfig::new(512 << 10, Some(1 << 20))));
    let layered = Layered::new(ram.clone(), Arc::new(disk.clone()), Writes::ToSlow);
    let mut accepted: Vec<(Checksum, Vec<u8>)> = Vec::new();
    let (mut refused, mut failed_passes) = (0, 0);
    let mut ram_puts = 0;
    for _round in 0..10 {
        fill_disk(&scratch.store(), rng.random_range(0..256 << 10));
        for _ in 0..12 {
            let len = rng.random_range(16 << 10..192 << 10);
            let data = random_bytes(&mut rng, len);
            let checksum = Checksum::of(&data);
            let in_ram_before = ram.has(&checksum).unwrap();
            match layered.put(&Buffer::new(data.clone())) {
                Ok(stored) => {
                    assert_eq!(stored, checksum);
                    if ram.has(&checksum).unwrap() && !in_ram_before {
                        ram_puts += 1;
                    }
                    accepted.push((checksum, data));
                }
                Err(e) => {
                    refused += 1;
                    let message = e.to_string();
                    assert!(
                        message.contains("No space left") || message.contains("full"),
                        "a refused put says why: {message}"
                    );
                }
            }
        }
        if layered.evict_once().is_err() {
            failed_passes += 1;
        }
        check_tiers(&layered, &ram, &disk, &accepted, &scratch.store());
        fs::remove_file(scratch.store().join("filler")).unwrap();
    }
    // With space back, an eviction pass offloads what RAM could not hand over.
    layered.evict_once().unwrap();
    check_tiers(&layered, &ram, &disk, &accepted, &scratch.store());
    let ram_stats = ram.stats();
    let counters = ram_stats.tier("ram").unwrap();
    assert_eq!(counters.puts, ram_puts, "RAM puts counted {counters:?}");
    eprintln!(
        "{} puts accepted ({ram_puts} into RAM), {refused} refused, {failed_passes} eviction \
         passes failed, {} offloads",
        accepted.len(),
        counters.offloads
    );
    assert!(
        refused + failed_passes > 0,
        "the disk never ran full: the test tested nothing"
    );
}

/// What `a_full_disk_during_ram_offload_keeps_every_buffer_readable` checks after each round.
fn check_tiers(
    layered: &seamfs::store::Layered,
    ram: &seamfs::store::MemoryTier,
    disk: &seamfs::store::DiskStore,
    accepted: &[(Checksum, Vec<u8>)],
    store: &Path,
) {
    use seamfs::store::Tier;
    let mut in_ram = 0;
    for (checksum, data) in accepted {
        let reader = layered
            .open_read(checksum)
            .unwrap()
            .unwrap_or_else(|| panic!("{checksum} was accepted and is gone"));
        let bytes = reader.range(0, data.len()).unwrap();
        assert_eq!(&bytes[..], &data[..], "{checksum} changed");
        if ram.has(checksum).unwrap() {
            in_ram += data.len() as u64;
        } else {
            assert_eq!(
                stored_buffer(store, checksum).as_ref(),
                Some(data),
                "{checksum} left RAM without reaching the disk"
            );
        }
    }
    let stats = ram.stats();
    let counters = stats.tier("ram").unwrap();
    assert_eq!(
        counters.bytes,
        Some(in_ram),
        "RAM bytes counted {counters:?}"
    );
    assert!(in_ram <= ram.config().hard_cap, "RAM over its hard cap");
    // Every buffer that left RAM went down to the disk, which never had it before.
    assert_eq!(counters.evictions, counters.offloads, "{counters:?}");
    disk.wait_for_removals();
    assert_buffer_dir_whole(store);
    let temp: Vec<_> = fs::read_dir(store.join("tmp"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(temp.is_empty(), "temp files left: {temp:?}");
}

/// Commits that fail while files are being written (a full disk under the committer of the
/// journal of closed files): every close succeeds, and every file is there with its exact
/// bytes, now and after a restart. (A failed commit used to reload the tree with only the
/// closed files put back: a file open at that moment vanished, and its close was lost.)
#[test]
fn failed_commits_while_files_are_written_lose_no_file() {
    let scratch = Scratch::new(None);
    let mut rng = StdRng::seed_from_u64(41);
    let m = start(&scratch, None);
    let trigger = scratch.store().join("fail-next-commit");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failer = {
        let (trigger, stop) = (trigger.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut failed = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if !trigger.exists() && fs::write(&trigger, b"").is_ok() {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            failed
        })
    };
    let mut written = Vec::new();
    for i in 0..200 {
        let name = format!("f{i}");
        let len = rng.random_range(1..64 << 10);
        let data = random_bytes(&mut rng, len);
        let mut file = File::create(m.path(&name)).unwrap();
        let half = data.len() / 2;
        file.write_all(&data[..half]).unwrap();
        if i % 10 == 0 {
            // Open across a tick of the committer (20 ms), whose commit fails.
            std::thread::sleep(Duration::from_millis(30));
        }
        file.write_all(&data[half..]).unwrap();
        close(file).unwrap_or_else(|e| panic!("the close of {name} failed: {e}"));
        written.push((name, data));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let failed = failer.join().unwrap();
    let _ = fs::remove_file(&trigger);
    assert!(
        failed > 2,
        "only {failed} commits failed: run with --features fault-injection (scripts/test does)"
    );
    for (name, data) in &written {
        assert_eq!(assert_consistent(&m, name).as_ref(), Some(data), "{name}");
    }
    m.stop();
    assert_fsck_clean(&scratch.store());
    let m = start(&scratch, None);
    for (name, data) in &written {
        assert_eq!(assert_consistent(&m, name).as_ref(), Some(data), "{name}");
    }
    m.stop();
}

/// Issue 14, kept files: the commit that publishes a kept file (an edited big file, hashed
/// when its checksum is asked) fails, as on a full disk (an injected SQLite commit failure).
/// Asking fails with ENOSPC (the checksum xattr, then the sidecar), and nothing is lost: the file
/// keeps its edited bytes, stays kept, and the next ask gives their checksum, also across a
/// restart.
#[test]
fn a_failed_commit_of_a_kept_file_loses_nothing() {
    let scratch = Scratch::new(None);
    let mut rng = StdRng::seed_from_u64(15);
    let trigger = scratch.store().join("fail-next-commit");
    let mut data = random_bytes(&mut rng, 8 << 20);
    let mut m = start(&scratch, None);
    fs::write(m.path("f"), &data).unwrap();
    for round in 0..2 {
        edit_in_place(&m, "f", &mut data, (round + 1) << 20);
        fs::write(&trigger, b"").unwrap();
        let failed = match round {
            0 => get_xattr(&m.path("f"), "user.seamless.checksum").map(|_| ()),
            _ => fs::read(m.path("f.CHECKSUM"))
                .map(|_| ())
                .map_err(|e| e.raw_os_error().unwrap()),
        };
        assert!(
            !trigger.exists(),
            "no commit failed: run with --features fault-injection (scripts/test does)"
        );
        assert_eq!(failed, Err(libc::ENOSPC), "round {round}");
        assert!(fs::read(m.path("f")).unwrap() == data, "the edit is lost");
        if round == 1 {
            m.stop();
            m = start(&scratch, None);
            assert!(fs::read(m.path("f")).unwrap() == data, "lost at restart");
        }
        assert_sidecar_names(&m, "f", &data);
        assert!(fs::read(m.path("f")).unwrap() == data);
    }
    m.stop();
    assert_fsck_clean(&scratch.store());
}

/// A kill -9 between storing a kept file's new buffer and committing its tree row (the
/// injected crash aborts the daemon at that commit) loses nothing: after the restart the file
/// shows its edited bytes and their checksum. (The kept file used to be renamed into the store,
/// so its row named a missing file and the file went back to its content before the edit.)
#[test]
fn a_crash_while_a_kept_file_is_published_loses_nothing() {
    let scratch = Scratch::new(None);
    let mut rng = StdRng::seed_from_u64(16);
    let trigger = scratch.store().join("crash-at-next-commit");
    let mut data = random_bytes(&mut rng, 8 << 20);
    let m = start(&scratch, None);
    fs::write(m.path("f"), &data).unwrap();
    edit_in_place(&m, "f", &mut data, 3 << 20);
    fs::write(&trigger, b"").unwrap();
    // Asking for the checksum publishes the kept file: its commit crashes the daemon.
    assert!(
        fs::read(m.path("f.CHECKSUM")).is_err(),
        "the daemon is gone"
    );
    assert!(
        !trigger.exists(),
        "no commit crashed: run with --features fault-injection (scripts/test does)"
    );
    m.stop();
    let m = start(&scratch, None);
    assert!(fs::read(m.path("f")).unwrap() == data, "the edit is lost");
    assert_sidecar_names(&m, "f", &data);
    m.stop();
    assert_fsck_clean(&scratch.store());
}

/// Write `edit` at `at` into tree file `name` (opened without truncating: a big file becomes a
/// kept file at its close), and into `data`, its expected content.
fn edit_in_place(m: &Mount, name: &str, data: &mut [u8], at: usize) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new()
        .write(true)
        .open(m.path(name))
        .unwrap();
    file.write_all_at(b"edit", at as u64).unwrap();
    close(file).unwrap();
    data[at..at + 4].copy_from_slice(b"edit");
}

/// `name.CHECKSUM` names `data`.
fn assert_sidecar_names(m: &Mount, name: &str, data: &[u8]) {
    let sidecar = fs::read(m.path(&format!("{name}.CHECKSUM"))).unwrap();
    assert_eq!(
        Checksum::from_sidecar(&sidecar).unwrap(),
        Checksum::of(data)
    );
}
