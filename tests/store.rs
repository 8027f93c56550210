//! Storage tiers end to end: the disk buffer directory (crash safety under kill -9, concurrent
//! use, fsck), the RAM cache (eviction order, caps, tempref decay under a fake clock), the
//! layered store, the offload tier, and the named-array store against the real GSEGUtils.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use seamfs::store::{DiskStore, Tier, Verdict};
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
        .args([
            "kill_9_during_large_writes_leaves_only_verified_buffers",
            "--exact",
            "--nocapture",
        ])
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
    assert!(
        stored.len() >= 3,
        "the committed buffers survive: {stored:?}"
    );
    for cs in &stored {
        assert_eq!(store.verify(cs).unwrap(), Verdict::Intact);
    }
    let expected: Vec<Checksum> = (0..stored.len() as u64)
        .map(|s| Checksum::of(&content(s, 8 << 20)))
        .collect();
    let mut sorted = stored.clone();
    sorted.sort();
    let mut expected_sorted = expected;
    expected_sorted.sort();
    assert_eq!(
        sorted, expected_sorted,
        "only whole buffers, in the order written"
    );
    let temps = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert_eq!(
        temps, 0,
        "opening the store removed the dead writer's temp file"
    );
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
    assert_eq!(
        store.iter().map(Result::unwrap).collect::<Vec<_>>(),
        vec![cs]
    );
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
    std::fs::set_permissions(
        &bad_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(&bad_path, b"flipped\n").unwrap();
    // A temp file from a writer that no longer exists (pid far above pid_max).
    std::fs::write(dir.path().join("tmp/999999999-0-0"), b"partial").unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .arg("fsck")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "corruption found: exit 1\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(&bad.checksum().hex()), "{stdout}");
    assert!(!bad_path.exists());
    assert!(
        dir.path()
            .join("quarantine")
            .join(bad.checksum().hex())
            .exists()
    );
    assert!(!dir.path().join("tmp/999999999-0-0").exists());

    let again = Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .arg("fsck")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(store.verify(&good.checksum()).unwrap(), Verdict::Intact);
}

// ---------------------------------------------------------------------------------------------
// RAM tier and layering

use seamfs::store::eviction::{ManualClock, TemprefParams};
use seamfs::store::{Layered, MemoryTier, RamConfig, StoreError, Writes};

/// A RAM tier (manual clock) over a fresh disk store, and the combinator of the two.
struct RamOverDisk {
    _dir: tempfile::TempDir,
    disk: DiskStore,
    ram: MemoryTier,
    layered: Arc<Layered>,
    clock: Arc<ManualClock>,
}

fn ram_over_disk(soft_cap: u64, hard_cap: u64) -> RamOverDisk {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskStore::open(dir.path()).unwrap();
    let clock = Arc::new(ManualClock::default());
    let ram = MemoryTier::with_clock(RamConfig::new(soft_cap, Some(hard_cap)), clock.clone());
    let layered = Arc::new(Layered::new(
        Arc::new(ram.clone()),
        Arc::new(disk.clone()),
        Writes::ToSlow,
    ));
    RamOverDisk {
        _dir: dir,
        disk,
        ram,
        layered,
        clock,
    }
}

fn tempref_of(interest: f64) -> Option<TemprefParams> {
    Some(TemprefParams {
        interest,
        ..TemprefParams::default()
    })
}

#[test]
fn eviction_goes_by_ascending_interest_and_offloads_first() {
    // seamless-core's own check: interests 0.5, 1, 2, 3 and a 2.5 KB soft cap.
    let t = ram_over_disk(2500, 1 << 20);
    let bufs: Vec<Buffer> = (0..4).map(|i| Buffer::new(content(i, 1000))).collect();
    let cs: Vec<Checksum> = bufs.iter().map(Buffer::checksum).collect();
    t.ram.tempref(&cs[0], tempref_of(0.5));
    t.ram.hold(&cs[1]);
    for _ in 0..2 {
        t.ram.hold(&cs[2]);
    }
    for _ in 0..3 {
        t.ram.hold(&cs[3]);
    }
    assert_eq!(t.ram.interest(&cs[2]), 2.0);
    for i in [3, 2, 1, 0] {
        t.ram.put(&bufs[i]).unwrap(); // the RAM tier alone does not evict
    }
    let report = t.layered.evict_once().unwrap();
    assert_eq!(report.evicted, [cs[0], cs[1]]);
    assert!(t.ram.ram_bytes() <= 2500);
    let in_ram: Vec<bool> = cs.iter().map(|c| t.ram.has(c).unwrap()).collect();
    assert_eq!(in_ram, [false, false, true, true]);
    assert!(
        t.disk.has(&cs[0]).unwrap() && t.disk.has(&cs[1]).unwrap(),
        "evicted buffers were offloaded"
    );
    assert!(!t.disk.has(&cs[3]).unwrap(), "write-back: not on disk");
    let stats = t.ram.stats();
    let ram_stats = stats.tier("ram").unwrap();
    assert_eq!(
        (ram_stats.evictions, ram_stats.offloads, ram_stats.bytes),
        (2, 2, Some(2000))
    );
    // References survive eviction; the bytes come back from the disk, as a map (no fill).
    assert_eq!(t.ram.interest(&cs[1]), 1.0);
    assert_eq!(t.layered.get(&cs[1]).unwrap().unwrap(), bufs[1]);
    let after = t.layered.stats();
    assert_eq!(after.tier("disk").unwrap().hits, 1);
    assert_eq!(after.tier("ram").unwrap().misses, 1);
    assert!(
        !t.ram.has(&cs[1]).unwrap(),
        "a local map is not copied into RAM"
    );
}

#[test]
fn reads_are_temprefs_and_weak_entries_go_first() {
    let t = ram_over_disk(4500, 1 << 20);
    let bufs: Vec<Buffer> = (10..15).map(|i| Buffer::new(content(i, 1000))).collect();
    let cs: Vec<Checksum> = bufs.iter().map(Buffer::checksum).collect();
    for i in 0..2 {
        t.ram.hold(&cs[i]);
        t.layered.put(&bufs[i]).unwrap();
    }
    t.layered.put(&bufs[2]).unwrap();
    t.layered.put(&bufs[3]).unwrap();
    let _ = t.layered.get(&cs[2]).unwrap(); // a read: 2 gets a tempref of 128
    t.layered.put(&bufs[4]).unwrap(); // 5000 > 4500: one weak entry goes, the older one
    let in_ram: Vec<bool> = cs.iter().map(|c| t.ram.has(c).unwrap()).collect();
    assert_eq!(in_ram, [true, true, true, false, true]);
    assert!(t.ram.has_tempref(&cs[2]));
}

#[test]
fn recomputation_cost_protects_derived_buffers() {
    let t = ram_over_disk(2500, 1 << 20);
    let bufs: Vec<Buffer> = (20..23).map(|i| Buffer::new(content(i, 1000))).collect();
    let cs: Vec<Checksum> = bufs.iter().map(Buffer::checksum).collect();
    t.ram.derived(&cs[0], 3600.0);
    t.ram.derived(&cs[2], 3600.0);
    for (c, b) in cs.iter().zip(&bufs) {
        t.ram.hold(c); // equal interest: 1 each
        t.layered.put(b).unwrap();
    }
    let in_ram: Vec<bool> = cs.iter().map(|c| t.ram.has(c).unwrap()).collect();
    assert_eq!(
        in_ram,
        [true, false, true],
        "the cheap one goes although it is the newest"
    );
}

#[test]
fn pinned_buffers_are_never_evicted() {
    let t = ram_over_disk(1000, 1 << 20);
    let pinned = Buffer::new(content(25, 900));
    t.layered.pin(&pinned.checksum(), true);
    t.layered.put(&pinned).unwrap();
    for i in 0..5 {
        t.layered.put(&Buffer::new(content(26 + i, 900))).unwrap();
    }
    t.layered.evict_once().unwrap();
    assert!(t.ram.has(&pinned.checksum()).unwrap());
    assert_eq!(t.ram.ram_bytes(), 900);
}

#[test]
fn a_full_ram_tier_makes_room_when_soft_equals_hard() {
    // Soft cap = hard cap: the tier must not freeze with the first buffers it got.
    let t = ram_over_disk(3000, 3000);
    let bufs: Vec<Buffer> = (60..70).map(|i| Buffer::new(content(i, 1000))).collect();
    for b in &bufs {
        t.layered.put(b).unwrap();
        assert!(t.ram.ram_bytes() <= 3000);
    }
    let last = bufs.last().unwrap().checksum();
    assert!(
        t.ram.has(&last).unwrap(),
        "the newest buffer got in and stays"
    );
    assert!(t.ram.stats().tiers[0].evictions >= 7);
}

#[test]
fn hard_cap_is_never_exceeded() {
    // A RAM tier alone refuses what does not fit under the hard cap, clearly.
    let ram = MemoryTier::new(RamConfig::new(1000, Some(2000)));
    ram.put(&Buffer::new(content(30, 1500))).unwrap();
    let err = ram.put(&Buffer::new(content(31, 1000))).unwrap_err();
    assert!(matches!(err, StoreError::Full(_)), "{err}");
    assert!(err.to_string().contains("hard cap"), "{err}");
    assert_eq!(ram.ram_bytes(), 1500);
    // So does a streamed write into it, before allocating (a write at a huge offset).
    let mut w = ram.begin_write().unwrap();
    assert!(matches!(
        w.write_at(1 << 40, b"x"),
        Err(StoreError::Full(_))
    ));

    // Over a disk tier, a buffer larger than the hard cap goes straight there.
    let t = ram_over_disk(1000, 2000);
    let big = Buffer::new(content(32, 3000));
    t.layered.put(&big).unwrap();
    assert!(!t.ram.has(&big.checksum()).unwrap());
    assert!(t.disk.has(&big.checksum()).unwrap());
    for i in 0..20 {
        let buffer = Buffer::new(content(40 + i, 700));
        t.ram.hold(&buffer.checksum());
        t.layered.put(&buffer).unwrap();
        assert!(t.ram.ram_bytes() <= 2000);
    }
}

#[test]
fn tempref_decays_and_lapses_after_28_seconds() {
    let t = ram_over_disk(1 << 20, 1 << 21);
    let buf = Buffer::new(content(50, 100));
    let cs = buf.checksum();
    t.layered.put(&buf).unwrap();
    t.ram.tempref(&cs, None);
    let mut curve = Vec::new();
    for _ in 0..5 {
        curve.push(t.ram.interest(&cs));
        t.clock.advance(2.0);
    }
    assert_eq!(curve, [128.0, 64.0, 32.0, 16.0, 8.0]);
    t.clock.advance(27.9 - 10.0);
    t.layered.evict_once().unwrap();
    assert!(t.ram.has_tempref(&cs), "still alive at 27.9 s");
    t.clock.advance(0.2);
    t.layered.evict_once().unwrap();
    assert!(!t.ram.has_tempref(&cs), "lapsed at 28.1 s");
    assert_eq!(t.ram.interest(&cs), 0.0);
    assert!(
        t.ram.has(&cs).unwrap(),
        "a lapsed entry stays in RAM as a weak entry"
    );
    // Renewal restarts the fade.
    t.ram.tempref(&cs, None);
    t.clock.advance(20.0);
    t.ram.tempref(&cs, tempref_of(1.0));
    assert_eq!(t.ram.interest(&cs), 128.0);
}

#[test]
fn background_eviction_loop_lapses_temprefs() {
    let t = ram_over_disk(1 << 20, 1 << 21);
    let cs = Checksum::of(b"lapsing");
    t.ram.tempref(&cs, None);
    t.clock.advance(60.0);
    let _loop = t
        .layered
        .start_eviction_loop(std::time::Duration::from_millis(10));
    // Poll (no timing assertion: the loop only has to run at some point).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while t.ram.has_tempref(&cs) {
        assert!(
            std::time::Instant::now() < deadline,
            "the eviction loop never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn layered_store_concurrent_readers_and_writers() {
    let t = ram_over_disk(20_000, 40_000);
    let threads: Vec<_> = (0..6u64)
        .map(|n| {
            let (layered, ram) = (t.layered.clone(), t.ram.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..60u64 {
                    let buf =
                        Buffer::new(content(n * 1000 + i % 30, 1000 + (i as usize % 5) * 900));
                    layered.put(&buf).unwrap();
                    assert!(ram.ram_bytes() <= 40_000);
                    mine.push(buf);
                    let old = &mine[(i as usize * 7) % mine.len()];
                    assert_eq!(layered.get(&old.checksum()).unwrap().as_ref(), Some(old));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = t.layered.stats();
    let ram_stats = stats.tier("ram").unwrap();
    assert!(
        ram_stats.evictions > 0 && ram_stats.offloads > 0,
        "{stats:?}"
    );
    assert!(t.ram.ram_bytes() <= 20_000);
    // Every buffer is somewhere: nothing was lost by eviction.
    for n in 0..6u64 {
        for i in 0..30 {
            let cs = Checksum::of(&content(n * 1000 + i, 1000 + (i as usize % 5) * 900));
            assert!(t.layered.has(&cs).unwrap());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Offload tier and named-array store (against the real GSEGUtils 0.6.0)

use seamfs::gseg::{EntryFlags, NamedArrayStore, NamedStoreError};
use seamfs::value::{ByteOrder, DType, Layout, NdArray};

/// The GSEGUtils interpreter; the interop tests fail (not skip) without it.
fn gseg_python() -> std::path::PathBuf {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-gseg/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-python to build the GSEGUtils 0.6.0 environment",
        python.display()
    );
    python
}

/// Run a Python snippet with `dir` as `sys.argv[1]`; returns its stdout parsed as JSON.
fn run_gseg(script: &str, dir: &std::path::Path) -> serde_json::Value {
    let out = Command::new(gseg_python())
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "GSEGUtils script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const GSEG_PRELUDE: &str = r#"
import io, json, sys
from pathlib import Path
import numpy as np
from GSEGUtils.lazy_disk_cache import DiskBackedNDArray, DiskBackedStore, LazyDiskCacheConfig
d = Path(sys.argv[1])
store = DiskBackedStore(
    config=LazyDiskCacheConfig(enable_caching=True, cache_path=d, purge_disk_on_gc=True, automatic_offloading=False),
    factory=DiskBackedNDArray,
)
"#;

#[test]
fn named_store_reads_what_gsegutils_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "{GSEG_PRELUDE}{}",
        r#"
arrays = {
    "f64": np.arange(12.).reshape(3, 4),
    "i32": np.arange(10, dtype=np.int32),
    "be_f32": np.arange(4, dtype=">f4"),
    "bool": np.array([True, False, True]),
    "rec": np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "<i2"), ("b", "<f8")]),
    "c64_fortran": np.asfortranarray(np.arange(6, dtype=np.complex64).reshape(2, 3)),
    "u8 rgb.x": np.arange(18, dtype=np.uint8).reshape(2, 3, 3),
}
for k, a in arrays.items():
    store.add_data_to_store(k, a)
store.offload(pickle_container=True)
print(json.dumps({k: {"shape": list(a.shape), "data": np.ascontiguousarray(a).tobytes().hex()} for k, a in arrays.items()}))
"#
    );
    let expected = run_gseg(&script, dir.path());
    let store = NamedArrayStore::open(dir.path()).unwrap();
    let keys = store.keys().unwrap();
    assert_eq!(keys.len(), 7, "{keys:?}");
    for (key, want) in expected.as_object().unwrap() {
        let array = store
            .get(key)
            .unwrap()
            .unwrap_or_else(|| panic!("{key} is missing"));
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(array.shape, shape, "{key}");
        assert_eq!(
            hex::encode(array.data.as_slice()),
            want["data"].as_str().unwrap(),
            "{key}"
        );
        assert!(
            !array.fortran_order,
            "{key}: GSEGUtils stores the C-order memmap"
        );
    }
    let rec = store.get("rec").unwrap().unwrap();
    assert_eq!(
        (rec.descr.as_str(), rec.itemsize),
        ("[('a', '<i2'), ('b', '<f8')]", 10)
    );
    assert_eq!(store.get("be_f32").unwrap().unwrap().descr, "'>f4'");
}

/// A little-endian float64 array.
fn f64_array(values: &[f64], shape: Vec<usize>) -> NdArray {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    NdArray {
        dtype: DType::Simple {
            kind: 'f',
            order: ByteOrder::Little,
            size: 8,
        },
        shape,
        layout: Layout::C,
        data: data.into(),
    }
}

#[test]
fn gsegutils_reads_what_the_named_store_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let store = NamedArrayStore::open(dir.path()).unwrap();
    let values: Vec<f64> = (0..12).map(|i| i as f64 * 0.5).collect();
    store
        .put(
            "f64",
            &f64_array(&values, vec![3, 4]),
            EntryFlags::default(),
        )
        .unwrap();
    let be = NdArray {
        dtype: DType::Simple {
            kind: 'f',
            order: ByteOrder::Big,
            size: 4,
        },
        shape: vec![4],
        layout: Layout::C,
        data: [0f32, 1.0, 2.0, 3.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<u8>>()
            .into(),
    };
    store.put("be_f32", &be, EntryFlags::default()).unwrap();
    let flags = EntryFlags {
        purge_disk_on_gc: false,
        automatic_offloading: false,
        enable_caching: true,
    };
    store
        .put("empty", &f64_array(&[], vec![0, 3]), flags)
        .unwrap();
    let script = format!(
        "{GSEG_PRELUDE}{}",
        r#"
out = {}
for k in sorted(store.keys()):
    e = store[k]
    a = np.asarray(e)
    saved = io.BytesIO()
    np.save(saved, a, allow_pickle=False)
    out[k] = {
        "shape": list(a.shape), "dtype": a.dtype.str, "data": a.tobytes().hex(),
        "npy_is_np_save": saved.getvalue() == (d / f"{k}.npy").read_bytes(),
        "purge": e.purge_disk_on_gc,
    }
print(json.dumps(out))
"#
    );
    let seen = run_gseg(&script, dir.path());
    assert_eq!(seen.as_object().unwrap().len(), 3, "{seen}");
    let want_f64: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(seen["f64"]["data"].as_str().unwrap(), hex::encode(want_f64));
    assert_eq!(seen["f64"]["shape"], serde_json::json!([3, 4]));
    assert_eq!(seen["be_f32"]["dtype"], ">f4");
    assert_eq!(
        seen["be_f32"]["data"].as_str().unwrap(),
        hex::encode(be.data.as_ref())
    );
    assert_eq!(seen["empty"]["shape"], serde_json::json!([0, 3]));
    assert_eq!(seen["empty"]["purge"], false);
    for key in ["f64", "be_f32", "empty"] {
        assert_eq!(
            seen[key]["npy_is_np_save"], true,
            "{key}: our .npy is byte-identical to np.save"
        );
    }
    let meta = std::fs::read_to_string(dir.path().join("f64.meta.json")).unwrap();
    assert!(
        meta.starts_with(r#"{"schema_version": 1, "lazy_disk_cache_class": "DiskBackedNDArray", "shape": [3, 4], "dtype": "<f8", "purge_disk_on_gc": true, "automatic_offloading": false, "enable_caching": true, "#),
        "{meta}"
    );
}

#[test]
fn named_store_refuses_bad_keys_symlinks_and_torn_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let store = NamedArrayStore::open(dir.path().join("store")).unwrap();
    let a = f64_array(&[1.0, 2.0, 3.0], vec![3]);
    for key in ["../escape", "a/b", "CON", "x:y", "dot."] {
        assert!(
            matches!(
                store.put(key, &a, EntryFlags::default()),
                Err(NamedStoreError::InvalidKey { .. })
            ),
            "{key}"
        );
    }
    assert!(!dir.path().join("escape.npy").exists());

    // A symlink planted at the temp name is replaced, never written through.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    std::os::unix::fs::symlink(&victim, store.dir().join("k.npy.tmp")).unwrap();
    store.put("k", &a, EntryFlags::default()).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    assert_eq!(
        store.get("k").unwrap().unwrap().data.as_slice(),
        a.data.as_ref()
    );

    // A torn pair: another writer replaced k.npy (same shape) but not its sidecar.
    let b = f64_array(&[7.0, 8.0, 9.0], vec![3]);
    store.put("other", &b, EntryFlags::default()).unwrap();
    std::fs::copy(store.dir().join("other.npy"), store.dir().join("k.npy")).unwrap();
    let err = store.get("k").unwrap_err();
    assert!(
        matches!(err, NamedStoreError::Unusable { .. }) && err.to_string().contains("torn"),
        "{err}"
    );
    // ... and with another shape, caught even without our fingerprint (as from a Python writer).
    let meta_path = store.dir().join("other.meta.json");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    let python_style = meta
        .split(", \"seamfs_npy_fingerprint\"")
        .next()
        .unwrap()
        .to_string()
        + "}";
    std::fs::write(&meta_path, python_style).unwrap();
    store
        .put(
            "longer",
            &f64_array(&[1.0; 5], vec![5]),
            EntryFlags::default(),
        )
        .unwrap();
    std::fs::copy(
        store.dir().join("longer.npy"),
        store.dir().join("other.npy"),
    )
    .unwrap();
    assert!(
        store
            .get("other")
            .unwrap_err()
            .to_string()
            .contains("shape")
    );

    // A missing half is a miss; purge removes the pair.
    std::fs::remove_file(store.dir().join("longer.meta.json")).unwrap();
    assert!(store.get("longer").unwrap().is_none());
    assert!(store.purge("k").unwrap());
    assert!(store.get("k").unwrap().is_none());
}

#[test]
fn named_store_concurrent_writers_and_readers_of_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(NamedArrayStore::open(dir.path()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..15 {
                    let fill = (t * 100 + i) as f64;
                    store
                        .put(
                            "shared",
                            &f64_array(&[fill; 5000], vec![5000]),
                            EntryFlags::default(),
                        )
                        .unwrap();
                    // Whatever a reader sees is one whole array written by someone.
                    let seen = store
                        .get("shared")
                        .unwrap()
                        .expect("the pair is never half-replaced under the lock");
                    let first = &seen.data.as_slice()[..8];
                    assert!(seen.data.as_slice().chunks(8).all(|c| c == first));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
