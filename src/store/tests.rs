//! The conformance suite every tier passes, run from this one place for each backend (add a
//! backend to `backends` and it is held to the same rules). The network tiers run against real
//! servers on 127.0.0.1 (the Python hashserver 1.1.0, moto's S3 server).

use std::any::Any;
use std::sync::Arc;

use super::test_servers::{moto_s3, python_hashserver, s3_address};
use super::*;

/// A tier whose reads are not local (no path, ranged reads): what a remote tier looks like.
struct NotLocal(DiskStore);

struct RangedBytes(Buffer);

impl RangedRead for RangedBytes {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let data = self.0.as_slice();
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
}

impl Tier for NotLocal {
    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError> {
        self.0.length(checksum)
    }

    fn open_read(&self, checksum: &Checksum) -> Result<Option<Reader>, StoreError> {
        Ok(self
            .0
            .get(checksum)?
            .map(|b| Reader::Ranged(Box::new(RangedBytes(b)))))
    }

    fn begin_write(&self) -> Result<Box<dyn TierWrite>, StoreError> {
        Tier::begin_write(&self.0)
    }

    fn list(&self) -> Listing {
        self.0.list()
    }

    fn remove(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        self.0.remove(checksum)
    }

    fn stats(&self) -> Stats {
        self.0.stats()
    }
}

/// A backend under test: its name, the tier, what keeps it alive (a temp directory, a server),
/// and whether it can list and delete (a hashserver can do neither).
type UnderTest = (&'static str, Arc<dyn Tier>, Box<dyn Any>, bool);

/// A fresh, empty instance of every backend.
fn backends() -> Vec<UnderTest> {
    let ram = || MemoryTier::new(RamConfig::new(64 << 20, None));
    let disk_dir = tempfile::tempdir().unwrap();
    let disk = DiskStore::open(disk_dir.path()).unwrap();
    let layered_dir = tempfile::tempdir().unwrap();
    let under = DiskStore::open(layered_dir.path()).unwrap();
    let bounded_dir = tempfile::tempdir().unwrap();
    let bounded = Bounded::new(DiskStore::open(bounded_dir.path()).unwrap(), 1 << 30);
    let ranged_dir = tempfile::tempdir().unwrap();
    let ranged = NotLocal(DiskStore::open(ranged_dir.path()).unwrap());
    let file_dir = tempfile::tempdir().unwrap();
    let file = addr::open(&format!("file://{}", file_dir.path().display())).unwrap();
    let flat_dir = tempfile::tempdir().unwrap();
    let flat = addr::open(&format!("file://{}?layout=flat", flat_dir.path().display())).unwrap();
    let hashserver = python_hashserver(None, "prefix");
    let http = addr::open(&format!("{}?timeout=5s", hashserver.url())).unwrap();
    let s3_server = moto_s3("conformance");
    let s3 = addr::open(&s3_address(&s3_server, "conformance/some/prefix", "")).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache_server = python_hashserver(None, "flat");
    let cache = Layered::cache(
        Arc::new(DiskStore::open(cache_dir.path()).unwrap()),
        addr::open(&cache_server.url()).unwrap(),
    );
    vec![
        ("memory", Arc::new(ram()), Box::new(()), true),
        ("disk", Arc::new(disk), Box::new(disk_dir), true),
        ("file (prefix folder)", file, Box::new(file_dir), true),
        ("file (flat folder)", flat, Box::new(flat_dir), true),
        (
            "bounded disk",
            Arc::new(bounded),
            Box::new(bounded_dir),
            true,
        ),
        ("not local", Arc::new(ranged), Box::new(ranged_dir), true),
        (
            "ram over disk",
            Arc::new(Layered::new(
                Arc::new(ram()),
                Arc::new(under),
                Writes::ToSlow,
            )),
            Box::new(layered_dir),
            true,
        ),
        ("http (hashserver 1.1.0)", http, Box::new(hashserver), false),
        ("s3 (moto)", s3, Box::new(s3_server), true),
        (
            "disk cache over http",
            Arc::new(cache),
            Box::new((cache_dir, cache_server)),
            true,
        ),
    ]
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed * 7) % 251) as u8)
        .collect()
}

fn for_each_backend(check: impl Fn(&str, &dyn Tier, bool)) {
    for (name, tier, _keep, lists) in backends() {
        check(name, tier.as_ref(), lists);
    }
}

#[test]
fn put_get_has_length_list_remove() {
    for_each_backend(|name, tier, lists| {
        let data = content(1, 3000);
        let cs = Checksum::of(&data);
        assert!(!tier.has(&cs).unwrap(), "{name}");
        assert!(tier.get(&cs).unwrap().is_none(), "{name}");
        assert_eq!(tier.put(&Buffer::new(data.clone())).unwrap(), cs, "{name}");
        assert!(tier.has(&cs).unwrap(), "{name}");
        assert_eq!(tier.length(&cs).unwrap(), Some(3000), "{name}");
        assert_eq!(
            tier.get(&cs).unwrap().unwrap().as_slice(),
            &data[..],
            "{name}"
        );
        if lists {
            let listed: Vec<Checksum> = tier.list().map(Result::unwrap).collect();
            assert_eq!(listed, vec![cs], "{name}");
        } else {
            assert!(
                tier.list().next().unwrap().is_err(),
                "{name}: listing is refused"
            );
            assert!(tier.remove(&cs).is_err(), "{name}: removal is refused");
            return;
        }
        if let Some(path) = tier.local_path(&cs) {
            assert_eq!(std::fs::read(path).unwrap(), data, "{name}");
        }
        let empty = Buffer::new(Vec::new());
        tier.put(&empty).unwrap();
        assert_eq!(tier.length(&empty.checksum()).unwrap(), Some(0), "{name}");
        assert!(tier.remove(&cs).unwrap(), "{name}");
        assert!(!tier.has(&cs).unwrap(), "{name}");
        assert!(!tier.remove(&cs).unwrap(), "{name}");
        assert!(tier.local_path(&cs).is_none(), "{name}");
    });
}

#[test]
fn streamed_writes_out_of_order_and_resized() {
    for_each_backend(|name, tier, _| {
        let data = content(2, 10_007);
        let mut w = tier.begin_write().unwrap();
        w.write_at(5000, &data[5000..]).unwrap();
        w.write_at(0, &data[..5000]).unwrap();
        w.write_at(10_007, b"tail to cut").unwrap();
        w.set_len(10_007).unwrap();
        assert_eq!(w.len(), 10_007, "{name}");
        let mut back = vec![0u8; 20];
        assert_eq!(w.read_at(4990, &mut back).unwrap(), 20, "{name}");
        assert_eq!(&back[..], &data[4990..5010], "{name}");
        assert_eq!(w.read_at(10_000, &mut back).unwrap(), 7, "{name}");
        assert_eq!(w.commit(None).unwrap(), Checksum::of(&data), "{name}");
        assert_eq!(
            tier.get(&Checksum::of(&data)).unwrap().unwrap().as_slice(),
            &data[..]
        );
    });
}

#[test]
fn ranged_reads_at_odd_offsets() {
    for_each_backend(|name, tier, _| {
        let data = content(3, 70_001);
        let cs = tier.put(&Buffer::new(data.clone())).unwrap();
        let reader = tier.open_read(&cs).unwrap().unwrap();
        assert_eq!(reader.len(), 70_001, "{name}");
        for (offset, len) in [
            (0, 1),
            (1, 4095),
            (4097, 65_537),
            (69_999, 10),
            (70_001, 5),
            (90_000, 1),
        ] {
            let got = reader.range(offset, len).unwrap();
            let start = (offset as usize).min(data.len());
            let end = (start + len).min(data.len());
            assert_eq!(&got[..], &data[start..end], "{name} at {offset}+{len}");
        }
        use std::io::{Read, Seek, SeekFrom};
        let mut cursor = reader.cursor();
        cursor.seek(SeekFrom::End(-3)).unwrap();
        let mut tail = Vec::new();
        cursor.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, &data[69_998..], "{name}");
        assert!(cursor.seek(SeekFrom::Current(-100_000)).is_err(), "{name}");
    });
}

#[test]
fn concurrent_writers_of_the_same_checksum() {
    for (name, tier, _keep, lists) in backends() {
        let data = Arc::new(content(4, 300_000));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (tier, data) = (tier.clone(), data.clone());
                std::thread::spawn(move || {
                    let mut w = tier.begin_write().unwrap();
                    for (i, piece) in data.chunks(65_536).enumerate() {
                        w.write_at((i * 65_536) as u64, piece).unwrap();
                    }
                    w.commit(Some(Checksum::of(&data))).unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), Checksum::of(&data), "{name}");
        }
        if lists {
            let listed: Vec<Checksum> = tier.list().map(Result::unwrap).collect();
            assert_eq!(listed, vec![Checksum::of(&data)], "{name}");
        }
        let stored = tier.get(&Checksum::of(&data)).unwrap().unwrap();
        assert_eq!(stored.as_slice(), &data[..], "{name}");
    }
}

#[test]
fn a_failing_commit_stores_nothing() {
    for_each_backend(|name, tier, lists| {
        let mut w = tier.begin_write().unwrap();
        w.write_at(0, b"abc").unwrap();
        let wrong = Checksum::of(b"abd");
        let err = w.commit(Some(wrong)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{name}: {err}");
        assert!(!tier.has(&Checksum::of(b"abc")).unwrap(), "{name}");
        assert!(!tier.has(&wrong).unwrap(), "{name}");
        if lists {
            assert_eq!(tier.list().count(), 0, "{name}");
        }
        // A dropped write leaves nothing either.
        let mut w = tier.begin_write().unwrap();
        w.write_at(0, b"dropped").unwrap();
        drop(w);
        assert!(!tier.has(&Checksum::of(b"dropped")).unwrap(), "{name}");
        if lists {
            assert_eq!(tier.list().count(), 0, "{name}");
        }
    });
}

#[test]
fn reads_from_a_tier_that_is_not_local_fill_the_fast_tier() {
    for (hard, big_in_ram) in [(64 << 20, true), (2 << 20, false)] {
        let dir = tempfile::tempdir().unwrap();
        let slow = Arc::new(NotLocal(DiskStore::open(dir.path()).unwrap()));
        let ram = MemoryTier::new(RamConfig::new(hard / 2, Some(hard)));
        let layered = Layered::new(Arc::new(ram.clone()), slow.clone(), Writes::ToSlow);
        let small = Buffer::new(content(5, 100_000));
        let big = Buffer::new(content(6, 3 << 20));
        for buffer in [&small, &big] {
            slow.put(buffer).unwrap();
            let read = layered.get(&buffer.checksum()).unwrap().unwrap();
            assert_eq!(read.as_slice(), buffer.as_slice());
        }
        assert!(ram.has(&small.checksum()).unwrap());
        assert_eq!(
            ram.has(&big.checksum()).unwrap(),
            big_in_ram,
            "hard cap {hard}"
        );
    }
}
