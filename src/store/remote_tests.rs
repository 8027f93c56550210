//! Read-through through network tiers, against real servers on 127.0.0.1: streamed and verified
//! downloads into the local disk, shared downloads, the negative cache, a corrupt remote, a
//! remote that is down or dies mid-transfer.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::test_servers::{moto_s3, python_hashserver, s3_address};
use super::*;

fn content(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 7) as u8)
        .collect()
}

/// A local disk read cache over the tier at `address`; the cache's own disk tier too.
fn cached(address: &str) -> (Layered, DiskStore, Arc<dyn Tier>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskStore::open(dir.path()).unwrap();
    let remote = addr::open(address).unwrap();
    (
        Layered::cache(Arc::new(disk.clone()), remote.clone()),
        disk,
        remote,
        dir,
    )
}

/// Put `data` into a flat hashserver folder the way an external writer would.
fn place(folder: &std::path::Path, data: &[u8]) -> Checksum {
    let checksum = Checksum::of(data);
    std::fs::write(folder.join(checksum.hex()), data).unwrap();
    checksum
}

#[test]
fn a_remote_buffer_streams_into_the_local_disk_verified() {
    let folder = tempfile::tempdir().unwrap();
    let server = python_hashserver(Some(folder.path()), "flat");
    let data = content(1, 5 << 20);
    let checksum = place(folder.path(), &data);
    let (store, disk, _, _dir) = cached(&server.url());

    assert_eq!(store.length(&checksum).unwrap(), Some(5 << 20));
    let reader = store.open_read(&checksum).unwrap().unwrap();
    assert_eq!(reader.len(), 5 << 20);
    assert_eq!(&reader.range(0, 4096).unwrap()[..], &data[..4096]);
    let all = reader.range(0, data.len()).unwrap();
    assert!(all[..] == data[..], "the whole buffer arrives intact");
    assert!(disk.has(&checksum).unwrap(), "kept in the local disk");
    assert_eq!(disk.verify(&checksum).unwrap(), Verdict::Intact);
    // The next read is local: the remote is not asked again.
    drop(server);
    let again = store.get(&checksum).unwrap().unwrap();
    assert!(again.as_slice() == &data[..]);
}

#[test]
fn concurrent_readers_share_one_download() {
    let s3 = moto_s3("shared");
    let address = s3_address(&s3, "shared/buffers", "");
    let data = Arc::new(content(2, 3 << 20));
    let checksum = addr::open(&address)
        .unwrap()
        .put(&Buffer::new(data.to_vec()))
        .unwrap();
    let (store, _disk, remote, _dir) = cached(&address);
    let store = Arc::new(store);
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (store, data) = (store.clone(), data.clone());
            std::thread::spawn(move || {
                let reader = store.open_read(&checksum).unwrap().unwrap();
                assert!(reader.range(0, data.len()).unwrap()[..] == data[..]);
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    let stats = remote.stats();
    assert_eq!(
        stats.tiers[0].hits, 1,
        "one GET for eight readers: {stats:?}"
    );
}

#[test]
fn a_missing_buffer_is_remembered_for_the_negative_ttl() {
    let folder = tempfile::tempdir().unwrap();
    let server = python_hashserver(Some(folder.path()), "flat");
    let (store, _, _, _dir) = cached(&format!("{}?negative-ttl=700ms", server.url()));
    let data = content(3, 1000);
    let checksum = Checksum::of(&data);
    assert!(store.open_read(&checksum).unwrap().is_none());
    place(folder.path(), &data);
    assert!(
        !store.has(&checksum).unwrap(),
        "still remembered as missing"
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(store.has(&checksum).unwrap(), "asked again after the TTL");
    assert_eq!(store.get(&checksum).unwrap().unwrap().as_slice(), &data[..]);
}

/// moto stores whatever it is given: a remote that serves wrong bytes under a checksum.
fn corrupt_s3(len: usize) -> (test_servers::Server, String, Checksum, Vec<u8>) {
    let s3 = moto_s3("corrupt");
    let address = s3_address(&s3, "corrupt", "&retries=0");
    let claimed = content(4, len);
    let checksum = Checksum::of(&claimed);
    let mut served = claimed.clone();
    served[len - 1] ^= 1;
    let put = reqwest::blocking::Client::new()
        .put(format!("{}/corrupt/{}", s3.url(), checksum.hex()))
        .body(served.clone())
        .send()
        .unwrap();
    assert!(put.status().is_success());
    (s3, address, checksum, served)
}

#[test]
fn a_corrupt_remote_is_refused() {
    // Small: nothing is served at all.
    let (_s3, address, checksum, _) = corrupt_s3(1000);
    let (store, disk, _, _dir) = cached(&address);
    let Err(err) = store.open_read(&checksum) else {
        panic!("a read that must fail succeeded")
    };
    assert!(err.to_string().contains("wrong bytes"), "{err}");
    assert!(!disk.has(&checksum).unwrap());

    // Big: the head may be served while it streams, the tail never: the reader gets an error
    // before the end, and nothing is kept.
    let (_s3, address, checksum, served) = corrupt_s3(3 << 20);
    let (store, disk, _, _dir) = cached(&address);
    let reader = store.open_read(&checksum).unwrap().unwrap();
    assert_eq!(&reader.range(0, 100).unwrap()[..], &served[..100]);
    let tail = reader.range((3 << 20) - 10, 10);
    assert!(tail.is_err(), "the unverified tail is refused");
    assert!(reader.range(0, 3 << 20).is_err());
    assert!(!disk.has(&checksum).unwrap());
}

#[test]
fn a_down_remote_is_an_error_not_a_hang_and_recovers() {
    let folder = tempfile::tempdir().unwrap();
    let mut server = python_hashserver(Some(folder.path()), "flat");
    let url = server.url();
    let data = content(5, 2000);
    let checksum = place(folder.path(), &data);
    let (store, _, _, _dir) = cached(&format!("{url}?timeout=2s&retries=1&down-for=300ms"));
    server.kill();

    let started = Instant::now();
    let Err(err) = store.open_read(&checksum) else {
        panic!("a read that must fail succeeded")
    };
    assert!(
        err.to_string().contains(&url),
        "the address is in the error: {err}"
    );
    assert_eq!(err.errno(), libc::EIO);
    assert!(store.has(&checksum).is_err(), "down is not 'missing'");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "bounded by the timeout"
    );

    // The same server comes back on the same port: the tier recovers by itself.
    let port = url.rsplit(':').next().unwrap().parse().unwrap();
    let _back = test_servers::python_hashserver_on(folder.path(), "flat", port);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(store.get(&checksum).unwrap().unwrap().as_slice(), &data[..]);
}

/// A hashserver stand-in that dies in the middle of a body: it answers the first GET with the
/// full length but only `cut` bytes, then closes; with `resume`, it answers a `Range: bytes=N-`
/// request with the rest, else it refuses every later connection (the remote is gone).
fn dying_server(
    data: Arc<Vec<u8>>,
    cut: usize,
    resume: bool,
) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 4096];
            let len = stream.read(&mut request).unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..len]).to_string();
            if n == 0 {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", data.len());
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&data[..cut]);
                continue; // dropped: the connection closes mid-body
            }
            if !resume {
                return; // the listener closes: connections are refused
            }
            let from: usize = request
                .split("bytes=")
                .nth(1)
                .and_then(|r| r.split('-').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {from}-{}/{}\r\n\r\n",
                data.len() - from,
                data.len() - 1,
                data.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&data[from..]);
            return;
        }
    });
    (url, thread)
}

#[test]
fn a_transfer_broken_off_resumes_where_it_stopped() {
    let data = Arc::new(content(6, 3 << 20));
    let checksum = Checksum::of(&data);
    let (url, server) = dying_server(data.clone(), 1 << 20, true);
    let (store, disk, _, _dir) = cached(&format!("{url}?timeout=2s"));
    let reader = store.open_read(&checksum).unwrap().unwrap();
    assert!(reader.range(0, data.len()).unwrap()[..] == data[..]);
    assert!(disk.has(&checksum).unwrap());
    server.join().unwrap();
}

#[test]
fn a_remote_killed_mid_read_gives_an_error_and_nothing_is_kept() {
    let data = Arc::new(content(7, 3 << 20));
    let checksum = Checksum::of(&data);
    let (url, server) = dying_server(data.clone(), 1 << 20, false);
    let (store, disk, _, _dir) = cached(&format!("{url}?timeout=2s&retries=1"));
    let reader = store.open_read(&checksum).unwrap().unwrap();
    let err = reader.range(0, data.len()).unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
    assert!(!disk.has(&checksum).unwrap());
    server.join().unwrap();
}

#[test]
fn a_bounded_disk_over_a_remote_drops_what_the_remote_has_and_fetches_it_again() {
    let folder = tempfile::tempdir().unwrap();
    let server = python_hashserver(Some(folder.path()), "flat");
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        remotes: vec![server.url()],
        disk_cache: Some(2_500_000),
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), &options, "test").unwrap();
    store.disk_bytes(); // counted: eviction can run
    let local = Buffer::new(content(20, 1_000_000));
    store.tiers().put(&local).unwrap(); // written here, on no remote
    let remote: Vec<Vec<u8>> = (0..4).map(|i| content(21 + i, 1_000_000)).collect();
    let checksums: Vec<Checksum> = remote.iter().map(|d| place(folder.path(), d)).collect();
    for (checksum, data) in checksums.iter().zip(&remote) {
        assert!(store.tiers().get(checksum).unwrap().unwrap().as_slice() == &data[..]);
        std::thread::sleep(Duration::from_millis(20)); // distinct use times
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.disk_bytes() > 2_500_000 {
        assert!(
            Instant::now() < deadline,
            "the eviction loop bounds the disk"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kept = store.verify(&local.checksum()).unwrap();
    assert_eq!(kept, Verdict::Intact, "the unpushed buffer is kept");
    for (checksum, data) in checksums.iter().zip(&remote) {
        let again = store.tiers().get(checksum).unwrap().unwrap();
        assert!(again.as_slice() == &data[..], "fetched again on demand");
    }
}

/// A gate a test opens: writes after the first `STALL_AFTER` bytes wait for it.
#[derive(Default)]
struct Gate {
    /// (a write is waiting, the gate is open)
    state: std::sync::Mutex<(bool, bool)>,
    changed: std::sync::Condvar,
}

impl Gate {
    fn wait_until(&self, done: impl Fn(&(bool, bool)) -> bool) {
        let mut state = self.state.lock().unwrap();
        while !done(&state) {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

const STALL_AFTER: u64 = 2 << 20;

/// A disk tier whose pending writes stall (inside `write_bytes`) until the gate opens: a slow
/// disk under a download.
struct Stalling {
    disk: DiskStore,
    gate: Arc<Gate>,
}

struct StallingWrite {
    inner: Box<dyn TierWrite>,
    gate: Arc<Gate>,
}

impl Tier for Stalling {
    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError> {
        self.disk.length(checksum)
    }
    fn open_read(&self, checksum: &Checksum) -> Result<Option<Reader>, StoreError> {
        Tier::open_read(&self.disk, checksum)
    }
    fn begin_write(&self) -> Result<Box<dyn TierWrite>, StoreError> {
        Ok(Box::new(StallingWrite {
            inner: Tier::begin_write(&self.disk)?,
            gate: self.gate.clone(),
        }))
    }
    fn list(&self) -> Listing {
        self.disk.list()
    }
    fn remove(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        self.disk.remove(checksum)
    }
    fn stats(&self) -> Stats {
        self.disk.stats()
    }
}

impl TierWrite for StallingWrite {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.inner.write_at(offset, data)
    }
    fn write_bytes(&mut self, offset: u64, data: Bytes) -> Result<(), StoreError> {
        if self.inner.len() >= STALL_AFTER {
            self.gate.state.lock().unwrap().0 = true;
            self.gate.changed.notify_all();
            self.gate.wait_until(|&(_, open)| open);
        }
        self.inner.write_bytes(offset, data)
    }
    fn set_len(&mut self, len: u64) -> Result<(), StoreError> {
        self.inner.set_len(len)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        self.inner.read_at(offset, buf)
    }
    fn read_back(&self) -> Option<std::fs::File> {
        self.inner.read_back()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn commit(self: Box<Self>, expected: Option<Checksum>) -> Result<Checksum, StoreError> {
        self.inner.commit(expected)
    }
}

/// A reader of a download is served the bytes already received while the download's writer is
/// stuck in a slow write: readers do not wait for the writer's I/O (they read the pending
/// file through a handle of their own).
#[test]
fn a_download_is_read_while_its_writer_is_busy() {
    let folder = tempfile::tempdir().unwrap();
    let server = python_hashserver(Some(folder.path()), "flat");
    let data = content(30, 8 << 20);
    let checksum = place(folder.path(), &data);
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let cache: Arc<dyn Tier> = Arc::new(Stalling {
        disk: DiskStore::open(dir.path()).unwrap(),
        gate: gate.clone(),
    });
    let remote = addr::open(&server.url()).unwrap();
    let reader = remote.read_through(&checksum, &cache).unwrap();
    let reader = Arc::new(reader.unwrap().unwrap());
    gate.wait_until(|&(waiting, _)| waiting);
    let (sent, received) = std::sync::mpsc::channel();
    let first = reader.clone();
    let thread = std::thread::spawn(move || sent.send(first.range(0, 1 << 20).unwrap()));
    // Generous: a reader that waits for the stalled writer never gets an answer.
    let head = received.recv_timeout(Duration::from_secs(30));
    gate.open();
    thread.join().unwrap().ok();
    let head = head.expect("the received bytes are read while the writer is stalled");
    assert!(head[..] == data[..1 << 20]);
    assert!(reader.range(0, data.len()).unwrap()[..] == data[..]);
}
