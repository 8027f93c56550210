//! Storage tiers end to end: the disk buffer directory (crash safety under kill -9, concurrent
//! use, fsck), the RAM cache (eviction order, caps, tempref decay under a fake clock), the
//! layered store, the offload tier, and the named-array store against the real GSEGUtils.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use seamfs::store::{BufferTier, DiskStore, Verdict};
use seamfs::{Buffer, Checksum};

/// Deterministic pseudo-random content of `len` bytes.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Disk tier

/// Env var that turns the kill test into its own child writer.
const CHILD_ENV: &str = "SEAMFS_STORE_TEST_CHILD_DIR";

/// The child: write 8 MiB buffers in 64 KiB pieces forever, announcing each one.
fn run_child_writer(dir: &str) -> ! {
    let store = DiskStore::open(dir).unwrap();
    for seed in 0.. {
        println!("begin {seed}");
        let data = content(seed, 8 << 20);
        let mut w = store.begin_write().unwrap();
        for (i, piece) in data.chunks(64 << 10).enumerate() {
            w.write_at((i * (64 << 10)) as u64, piece).unwrap();
        }
        w.commit(None).unwrap();
    }
    unreachable!()
}

#[test]
fn kill_9_during_large_writes_leaves_only_verified_buffers() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        run_child_writer(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["kill_9_during_large_writes_leaves_only_verified_buffers", "--exact", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Kill while the fourth buffer is being written (three are committed by then).
    loop {
        let line = lines.next().expect("child ended early").unwrap();
        if line == "begin 3" {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store = DiskStore::open(dir.path()).unwrap();
    let stored: Vec<Checksum> = store.iter().map(Result::unwrap).collect();
    assert!(stored.len() >= 3, "the committed buffers survive: {stored:?}");
    for cs in &stored {
        assert_eq!(store.verify(cs).unwrap(), Verdict::Intact);
    }
    let expected: Vec<Checksum> = (0..stored.len() as u64).map(|s| Checksum::of(&content(s, 8 << 20))).collect();
    let mut sorted = stored.clone();
    sorted.sort();
    let mut expected_sorted = expected;
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted, "only whole buffers, in the order written");
    let temps = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert_eq!(temps, 0, "opening the store removed the dead writer's temp file");
}

#[test]
fn disk_store_concurrent_readers_and_writers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DiskStore::open(dir.path()).unwrap());
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..40u64 {
                    // Threads overlap on half of their buffers: the same content written twice.
                    let seed = if i % 2 == 0 { i } else { 1000 * (t + 1) + i };
                    let buf = Buffer::new(content(seed, 1000 + (seed as usize % 7) * 5000));
                    store.put(&buf).unwrap();
                    let back = store.get(&buf.checksum()).unwrap().expect("just written");
                    assert_eq!(back, buf);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let count = store.iter().count();
    assert_eq!(count, 20 + 6 * 20);
    for cs in store.iter() {
        assert_eq!(store.verify(&cs.unwrap()).unwrap(), Verdict::Intact);
    }
}

#[test]
fn put_reader_streams_and_iter_skips_foreign_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path()).unwrap();
    let data = content(7, 3 << 20);
    let cs = store.put_reader(&data[..]).unwrap();
    assert_eq!(cs, Checksum::of(&data));
    let prefix = store.path_of(&cs).parent().unwrap().to_path_buf();
    std::fs::write(prefix.join(format!("{}.LOCK", cs.hex())), b"").unwrap();
    std::fs::write(prefix.join("ff".repeat(32)), b"wrong prefix dir").unwrap();
    assert_eq!(store.iter().map(Result::unwrap).collect::<Vec<_>>(), vec![cs]);
}

#[test]
fn fsck_quarantines_corrupt_buffers_and_removes_stale_temps() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path()).unwrap();
    let good = Buffer::new(b"good\n".to_vec());
    let bad = Buffer::new(b"bad\n".to_vec());
    store.put(&good).unwrap();
    store.put(&bad).unwrap();
    let bad_path = store.path_of(&bad.checksum());
    std::fs::set_permissions(&bad_path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&bad_path, b"flipped\n").unwrap();
    // A temp file from a writer that no longer exists (pid far above pid_max).
    std::fs::write(dir.path().join("tmp/999999999-0-0"), b"partial").unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_seamfs")).arg("fsck").arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "corruption found: exit 1\n{stdout}\n{stderr}");
    assert!(stdout.contains(&bad.checksum().hex()), "{stdout}");
    assert!(!bad_path.exists());
    assert!(dir.path().join("quarantine").join(bad.checksum().hex()).exists());
    assert!(!dir.path().join("tmp/999999999-0-0").exists());

    let again = Command::new(env!("CARGO_BIN_EXE_seamfs")).arg("fsck").arg(dir.path()).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stdout));
    assert_eq!(store.verify(&good.checksum()).unwrap(), Verdict::Intact);
}
