//! Mounts with remote tiers, against real servers on 127.0.0.1: the Python hashserver 1.1.0 and
//! moto's S3 server (`scripts/setup-python`). Every mount is a real FUSE mount of the `seamfs`
//! binary, unmounted on drop.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seamfs::Checksum;
use serde_json::Value;

mod common;

use common::seamfs_hashserver;
use common::test_servers::{
    self, Server, moto_s3, python_hashserver, python_hashserver_on, s3_address,
};

/// A running `seamfs mount`, unmounted (SIGTERM) on drop.
struct Mount {
    child: Option<Child>,
    mnt: PathBuf,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    /// A mount without a RAM tier (reads reach the disk and the remotes).
    fn new(extra: &[&str]) -> Mount {
        Mount::fresh(extra, false)
    }

    /// A mount with the default RAM tier, as users run it.
    fn with_ram_tier(extra: &[&str]) -> Mount {
        Mount::fresh(extra, true)
    }

    fn fresh(extra: &[&str], ram: bool) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
        Mount::launch(mnt, store, dir, extra, ram)
    }

    fn start(mnt: PathBuf, store: PathBuf, dir: tempfile::TempDir, extra: &[&str]) -> Mount {
        Mount::launch(mnt, store, dir, extra, false)
    }

    fn launch(
        mnt: PathBuf,
        store: PathBuf,
        dir: tempfile::TempDir,
        extra: &[&str],
        ram: bool,
    ) -> Mount {
        assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing");
        std::fs::create_dir_all(&mnt).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_seamfs"))
            .arg("mount")
            .arg(&mnt)
            .arg("--store")
            .arg(&store)
            .arg("--no-db")
            .args(if ram {
                &[][..]
            } else {
                &["--ram-cache", "0"][..]
            })
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start seamfs mount");
        let mount = Mount {
            child: Some(child),
            mnt,
            store,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !mount.mounted() {
            assert!(Instant::now() < deadline, "seamfs did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
        mount
    }

    fn mounted(&self) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let wanted = self.mnt.to_string_lossy().to_string();
        info.lines()
            .any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    fn stats(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path(".seamfs/stats")).unwrap()).unwrap()
    }

    /// Stop the mount: SIGTERM (`hard`: SIGKILL, as a crash), then unmount what is left.
    /// Returns the store and the temp dir to mount again.
    fn stop(mut self, hard: bool) -> (PathBuf, PathBuf, tempfile::TempDir) {
        self.terminate(hard);
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        (self.mnt.clone(), self.store.clone(), dir)
    }

    fn terminate(&mut self, hard: bool) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let signal = if hard {
            nix::sys::signal::Signal::SIGKILL
        } else {
            nix::sys::signal::Signal::SIGTERM
        };
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
        let _ = child.wait();
        if self.mounted() {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mnt)
                .status();
        }
        if self.mounted() {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.terminate(false);
    }
}

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 2_654_435_761 + seed as u64) as u8 ^ seed)
        .collect()
}

/// One HTTP client for the whole test binary (making one per request costs tens of ms).
fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::blocking::Client::new)
}

fn hashserver_put(server: &Server, data: &[u8]) -> Checksum {
    let checksum = Checksum::of(data);
    let response = client()
        .put(format!("{}/{}", server.url(), checksum.hex()))
        .body(data.to_vec())
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    checksum
}

fn hashserver_has(server: &Server, checksums: &[Checksum]) -> Vec<bool> {
    ask_about(server, "has", checksums)
}

fn hashserver_lengths(server: &Server, checksums: &[Checksum]) -> Vec<u64> {
    ask_about(server, "buffer-length", checksums)
}

/// A hashserver's answer about a list of checksums (`/has`, `/buffer-length`).
fn ask_about<T: serde::de::DeserializeOwned>(
    server: &Server,
    route: &str,
    checksums: &[Checksum],
) -> T {
    let body: Vec<String> = checksums.iter().map(Checksum::hex).collect();
    client()
        .get(format!("{}/{route}", server.url()))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn write_file(path: &Path, data: &[u8], fsync: bool) {
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(data).unwrap();
    if fsync {
        file.sync_all().unwrap();
    }
}

fn errno_of(result: std::io::Result<Vec<u8>>) -> i32 {
    result.unwrap_err().raw_os_error().unwrap_or(0)
}

#[test]
fn a_mount_reads_a_buffer_put_into_the_python_hashserver() {
    let server = python_hashserver(None, "prefix");
    let data = content(1, 3 << 20);
    let checksum = hashserver_put(&server, &data);
    let b = Mount::new(&["--remote", &server.url()]);
    let listing = |m: &Mount| -> Vec<String> {
        std::fs::read_dir(m.path("by-checksum"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect()
    };
    assert!(
        listing(&b).is_empty(),
        "by-checksum/ lists only local buffers"
    );
    let path = b.path(&format!("by-checksum/{}", checksum.hex()));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 20);
    assert!(std::fs::read(&path).unwrap() == data);
    assert_eq!(listing(&b), vec![checksum.hex()], "kept locally once read");
    let unknown = Checksum::of(b"nobody has this");
    let err = std::fs::metadata(b.path(&format!("by-checksum/{}", unknown.hex()))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
}

/// A buffer still downloading is opened with direct I/O (read straight into the reader's
/// memory): small reads at odd offsets and a shared memory map of that very open still work.
#[test]
fn a_buffer_read_and_mapped_while_it_downloads() {
    use std::os::unix::fs::FileExt;
    let server = python_hashserver(None, "flat");
    let data = content(9, 9 << 20);
    let checksum = hashserver_put(&server, &data);
    let b = Mount::new(&["--remote", &server.url()]);
    let file = std::fs::File::open(b.path(&format!("by-checksum/{}", checksum.hex()))).unwrap();
    for offset in [4095usize, 1_000_003, (9 << 20) - 5000] {
        let mut piece = [0u8; 1000];
        file.read_exact_at(&mut piece, offset as u64).unwrap();
        assert_eq!(&piece[..], &data[offset..offset + 1000], "at {offset}");
    }
    // SAFETY: the buffer is immutable; the map is only read.
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("a direct-I/O open can be mapped");
    assert!(map[..] == data[..], "the mapped bytes are the buffer's");
}

#[test]
fn a_file_written_in_one_mount_is_readable_by_checksum_in_another() {
    let server = python_hashserver(None, "prefix");
    let a = Mount::new(&["--push", &server.url()]);
    let b = Mount::new(&["--remote", &server.url()]);
    let data = content(2, 200_000);
    write_file(&a.path("shared.bin"), &data, true);
    let checksum = Checksum::of(&data);
    // fsync returned: the buffer is on the hashserver.
    assert_eq!(hashserver_has(&server, &[checksum]), vec![true]);
    let read = std::fs::read(b.path(&format!("by-checksum/{}", checksum.hex()))).unwrap();
    assert!(read == data);
    let push = &a.stats()["push"];
    assert_eq!(push["queued"], 0, "{push}");
    assert!(push["pushed"].as_u64().unwrap() >= 1, "{push}");
}

#[test]
fn s3_as_push_target_and_remote() {
    let s3 = moto_s3("mounts");
    let address = s3_address(&s3, "mounts/buffers", "");
    let a = Mount::new(&["--push", &address]);
    let b = Mount::new(&["--remote", &address]);
    let data = content(3, 5 << 20);
    write_file(&a.path("big.bin"), &data, true);
    let checksum = Checksum::of(&data);
    let read = std::fs::read(b.path(&format!("by-checksum/{}", checksum.hex()))).unwrap();
    assert!(read == data);
    // The key layout is the hashserver's flat one under the prefix.
    let listing = reqwest::blocking::get(format!("{}/mounts?prefix=buffers/", s3.url()))
        .unwrap()
        .text()
        .unwrap();
    let key = format!("<Key>buffers/{}</Key>", checksum.hex());
    assert!(listing.contains(&key), "{listing}");
}

/// The first bytes of a big remote buffer are served while the rest streams, also through the
/// RAM tier users have by default (it used to copy the whole download before the first byte).
/// The remote stalls after 2 MiB until the test lets it go on: the first read must not wait.
#[test]
fn the_first_bytes_of_a_remote_buffer_do_not_wait_for_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(7, 8 << 20);
    let (source, go) = (dir.path().join("buffer"), dir.path().join("go"));
    std::fs::write(&source, &data).unwrap();
    let server = stalling_hashserver(&source, 2 << 20, &go);
    let b = Mount::with_ram_tier(&["--remote", &server.url()]);
    let path = b.path(&format!("by-checksum/{}", Checksum::of(&data).hex()));
    let (sent, first) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path).unwrap();
        let mut head = vec![0u8; 4096];
        file.read_exact(&mut head).unwrap();
        sent.send(head).unwrap();
        let mut rest = Vec::new();
        file.read_to_end(&mut rest).unwrap();
        rest
    });
    let head = first.recv_timeout(Duration::from_secs(20));
    std::fs::write(&go, b"").unwrap();
    let head = head.expect("the first 4 KiB waited for the whole download");
    assert_eq!(head, data[..4096]);
    let rest = reader.join().unwrap();
    assert!(rest == data[4096..], "the rest arrives intact");
}

#[test]
fn a_remote_killed_mid_use_gives_eio_and_the_mount_recovers() {
    let folder = tempfile::tempdir().unwrap();
    let mut server = python_hashserver(Some(folder.path()), "prefix");
    let port = server.port;
    let first = hashserver_put(&server, &content(4, 1 << 20));
    let data = content(5, 2 << 20);
    let second = hashserver_put(&server, &data);
    let remote = format!("{}?timeout=2s&retries=1&down-for=200ms", server.url());
    let b = Mount::new(&["--remote", &remote]);
    std::fs::read(b.path(&format!("by-checksum/{}", first.hex()))).unwrap();
    server.kill();
    let started = Instant::now();
    let path = b.path(&format!("by-checksum/{}", second.hex()));
    assert_eq!(errno_of(std::fs::read(&path)), libc::EIO);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "no hang past the timeout"
    );
    assert!(b.mounted(), "the mount is alive");
    // What is cached locally still reads.
    std::fs::read(b.path(&format!("by-checksum/{}", first.hex()))).unwrap();
    let _back = python_hashserver_on(folder.path(), "prefix", port);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::fs::read(&path).unwrap() == data,
        "correct after the restart"
    );
}

#[test]
fn a_killed_mount_pushes_its_whole_queue_after_restart() {
    let folder = tempfile::tempdir().unwrap();
    let mut server = python_hashserver(Some(folder.path()), "prefix");
    let port = server.port;
    let url = server.url();
    server.kill(); // the target is down: everything stays queued
    let a = Mount::new(&["--push", &format!("{url}?timeout=1s&retries=0")]);
    let checksums: Vec<Checksum> = (0..20u8)
        .map(|i| {
            let data = content(10 + i, 10_000 + i as usize);
            write_file(&a.path(&format!("f{i}")), &data, false);
            Checksum::of(&data)
        })
        .collect();
    let queued = a.stats()["push"]["queued"].as_u64().unwrap();
    // The 20 files and the empty buffer the first create stored (every tree file names a stored
    // buffer, an empty one too).
    assert_eq!(queued, 21);
    let (mnt, store, dir) = a.stop(true); // kill -9
    let server = python_hashserver_on(folder.path(), "prefix", port);
    // Through a forwarder that counts requests: after the restart the whole queue is due at
    // once and the target is asked about it in one batch, not once per buffer.
    let logs = tempfile::tempdir().unwrap();
    let (proxy, log) = forwarder(&server, logs.path(), None);
    let a = Mount::start(mnt, store, dir, &["--push", &proxy.url()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while hashserver_has(&server, &checksums).contains(&false) {
        assert!(
            Instant::now() < deadline,
            "queue not pushed: {}",
            a.stats()["push"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.stats()["push"]["queued"] != 0 {
        assert!(Instant::now() < deadline, "{}", a.stats()["push"]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let asked = forwarded(&log, "GET /has");
    assert!(asked <= 2, "21 queued buffers cost {asked} /has requests");
}

/// A moto S3 server whose bucket `bad` holds other bytes under the checksum of `content(seed)`.
fn corrupt_s3(seed: u8) -> (Server, Checksum) {
    let s3 = moto_s3("bad");
    let checksum = Checksum::of(&content(seed, 5000));
    let put = reqwest::blocking::Client::new()
        .put(format!("{}/bad/{}", s3.url(), checksum.hex()))
        .body(content(seed + 1, 5000))
        .send()
        .unwrap();
    assert!(put.status().is_success());
    (s3, checksum)
}

#[test]
fn a_corrupt_remote_is_refused_by_the_mount() {
    let (s3, checksum) = corrupt_s3(6);
    let b = Mount::new(&["--remote", &s3_address(&s3, "bad", "&retries=0")]);
    let path = b.path(&format!("by-checksum/{}", checksum.hex()));
    assert_eq!(errno_of(std::fs::read(&path)), libc::EIO);
    assert!(b.mounted());
    let listed = std::fs::read_dir(b.path("by-checksum")).unwrap().count();
    assert_eq!(listed, 0, "nothing of the corrupt buffer was kept");
}

/// What seamless-core's `Checksum.resolve()` returns through seamless-remote with one extern
/// read client: `kind` `hashserver` (a URL) or `bufferfolder` (a directory).
fn seamless_resolve(kind: &str, location: &str, checksum: &Checksum) -> Vec<u8> {
    let hex = checksum.hex();
    let args: Vec<&OsStr> = vec![kind.as_ref(), location.as_ref(), hex.as_ref()];
    let lines = common::python_json_lines("resolve.py", &args);
    let content = lines[0]["content_hex"]
        .as_str()
        .unwrap_or_else(|| panic!("resolve() found nothing: {lines:?}"));
    (0..content.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&content[i..i + 2], 16).unwrap())
        .collect()
}

/// `resolve()` with the mount's `by-checksum/` as a `bufferfolder`: a buffer only the
/// hashserver has is fetched by the mount on lookup.
#[test]
fn seamless_resolves_through_by_checksum_as_a_bufferfolder() {
    let server = python_hashserver(None, "prefix");
    let data = content(8, 300_000);
    let checksum = hashserver_put(&server, &data);
    let b = Mount::new(&["--remote", &server.url()]);
    let by_checksum = b.path("by-checksum").to_string_lossy().to_string();
    let resolved = seamless_resolve("bufferfolder", &by_checksum, &checksum);
    assert!(resolved == data, "resolve() returned other bytes");
}

/// `resolve()` with the mount's buffer port as a `hashserver`: a buffer only the remote
/// hashserver has is read through by the mount's buffer server, and a file written into the
/// mount is served by its checksum.
#[test]
fn seamless_resolves_through_the_mounts_buffer_port() {
    let server = python_hashserver(None, "prefix");
    let remote_only = content(11, 400_000);
    let remote_checksum = hashserver_put(&server, &remote_only);
    let port = common::free_port().to_string();
    let b = Mount::new(&["--remote", &server.url(), "--buffer-port", &port]);
    let url = format!("http://127.0.0.1:{port}");
    let resolved = seamless_resolve("hashserver", &url, &remote_checksum);
    assert!(resolved == remote_only, "resolve() returned other bytes");
    assert!(
        b.path(&format!("by-checksum/{}", remote_checksum.hex()))
            .exists(),
        "kept in the mount's store once read"
    );
    let written = content(12, 70_000);
    write_file(&b.path("written.bin"), &written, false);
    let resolved = seamless_resolve("hashserver", &url, &Checksum::of(&written));
    assert!(resolved == written, "resolve() returned other bytes");
}

fn http_get(server: &Server, checksum: &Checksum) -> (u16, Vec<u8>) {
    let response = client()
        .get(format!("{}/{}", server.url(), checksum.hex()))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().unwrap().to_vec())
}

/// `seamfs hashserver --remote/--push` in front of the Python hashserver: a buffer only the
/// remote has is served (verified, then kept in the directory, which the Python hashserver can
/// serve as well), an upload is pushed, an unknown buffer is 404 and a corrupt remote refused.
#[test]
fn the_hashserver_fronts_remote_tiers() {
    let remote = python_hashserver(None, "prefix");
    let dir = tempfile::tempdir().unwrap();
    let front = seamfs_hashserver(
        dir.path(),
        &["--remote", &remote.url(), "--push", &remote.url()],
    );
    let remote_only = content(13, 2 << 20);
    let checksum = hashserver_put(&remote, &remote_only);
    assert_eq!(hashserver_has(&front, &[checksum]), vec![true]);
    let (status, body) = http_get(&front, &checksum);
    assert_eq!(status, 200);
    assert!(body == remote_only, "served other bytes");
    let hex = checksum.hex();
    let kept = dir.path().join(&hex[..2]).join(&hex);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !kept.exists() {
        assert!(Instant::now() < deadline, "not kept in DIR");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::read(&kept).unwrap() == remote_only, "kept in DIR");
    let same_dir = python_hashserver(Some(dir.path()), "prefix");
    assert!(http_get(&same_dir, &checksum).1 == remote_only);
    // An upload is stored in DIR and pushed to the remote.
    let uploaded = content(14, 300_000);
    let uploaded_checksum = hashserver_put(&front, &uploaded);
    let deadline = Instant::now() + Duration::from_secs(30);
    while hashserver_has(&remote, &[uploaded_checksum]) != vec![true] {
        assert!(Instant::now() < deadline, "the upload was not pushed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(http_get(&remote, &uploaded_checksum).1 == uploaded);
    let unknown = Checksum::of(b"nobody has this");
    assert_eq!(http_get(&front, &unknown).0, 404);
    assert_eq!(hashserver_has(&front, &[unknown]), vec![false]);
}

/// `tests/interop/forwarder.py` on a free port in front of `upstream`, logging every request it
/// passes on (`METHOD PATH` per line) to the returned file; with `cut_after`, a buffer's body is
/// cut off after that many bytes.
fn forwarder(upstream: &Server, dir: &Path, cut_after: Option<u64>) -> (Server, PathBuf) {
    let port = common::free_port();
    let log = dir.join("forwarded.log");
    let mut command = Command::new(common::python_tool("python"));
    command
        .arg(common::repo().join("tests/interop/forwarder.py"))
        .args([port.to_string(), upstream.port.to_string()])
        .arg(&log)
        .args(cut_after.map(|n| n.to_string()));
    (
        test_servers::start(command, port, "/healthcheck", None),
        log,
    )
}

/// How many requests the forwarder's `log` holds that start with `prefix`.
fn forwarded(log: &Path, prefix: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

/// `seamfs hashserver --remote` (the Python hashserver behind a logging forwarder) and 1 000
/// checksums: 200 of buffers on the remote, 100 in the front's directory, 700 nowhere.
struct ManyBuffers {
    front: Server,
    log: PathBuf,
    checksums: Vec<Checksum>,
    /// The length of each buffer, 0 for those stored nowhere (as `/buffer-length` answers).
    lengths: Vec<u64>,
    _remote: Server,
    _proxy: Server,
    _dir: tempfile::TempDir,
}

fn many_buffers_behind_a_front() -> ManyBuffers {
    let remote = python_hashserver(None, "flat");
    let dir = tempfile::tempdir().unwrap();
    let (proxy, log) = forwarder(&remote, dir.path(), None);
    let front_dir = dir.path().join("front");
    std::fs::create_dir(&front_dir).unwrap();
    let front = seamfs_hashserver(&front_dir, &["--remote", &proxy.url()]);
    let (mut checksums, mut lengths) = (Vec::new(), Vec::new());
    for i in 0..1000u32 {
        let data = format!("buffer {i}").into_bytes();
        checksums.push(match i % 10 {
            0 | 1 => hashserver_put(&remote, &data),
            2 => hashserver_put(&front, &data),
            _ => Checksum::of(&data),
        });
        lengths.push(if i % 10 < 3 { data.len() as u64 } else { 0 });
    }
    ManyBuffers {
        front,
        log,
        checksums,
        lengths,
        _remote: remote,
        _proxy: proxy,
        _dir: dir,
    }
}

/// A `/has` of 1 000 checksums to `seamfs hashserver --remote` costs the remote one batched
/// `/has` (not one request per checksum), and answers as asking one checksum at a time does.
#[test]
fn the_hashserver_asks_the_remote_about_many_buffers_in_one_batch() {
    let many = many_buffers_behind_a_front();
    let before = forwarded(&many.log, "GET /has");
    let batched = hashserver_has(&many.front, &many.checksums);
    let asked = forwarded(&many.log, "GET /has") - before;
    let expected: Vec<bool> = many.lengths.iter().map(|&l| l > 0).collect();
    assert_eq!(batched, expected);
    assert!(
        asked <= 2,
        "one /has of 1 000 checksums cost {asked} /has requests to the remote"
    );
    let one_by_one: Vec<bool> = many
        .checksums
        .iter()
        .map(|c| hashserver_has(&many.front, &[*c])[0])
        .collect();
    assert_eq!(
        one_by_one, batched,
        "the batch answers as single questions do"
    );
}

/// The same for `/buffer-length`: one batched `/buffer-length` to the remote, the lengths of
/// buffers on the remote and in the front's directory, 0 for the others.
#[test]
fn the_hashserver_asks_the_remote_for_many_lengths_in_one_batch() {
    let many = many_buffers_behind_a_front();
    let before = forwarded(&many.log, "GET /buffer-length");
    let batched = hashserver_lengths(&many.front, &many.checksums);
    let asked = forwarded(&many.log, "GET /buffer-length") - before;
    assert_eq!(batched, many.lengths);
    assert!(
        asked <= 2,
        "one /buffer-length of 1 000 checksums cost {asked} requests to the remote"
    );
    let one_by_one: Vec<u64> = many
        .checksums
        .iter()
        .map(|c| hashserver_lengths(&many.front, &[*c])[0])
        .collect();
    assert_eq!(
        one_by_one, batched,
        "the batch answers as single questions do"
    );
}

/// A buffer of `mib` MiB (distinct blocks of `content(seed)`) stored in the flat buffer
/// directory `dir` under its checksum, as the Python hashserver serves it.
fn big_buffer(dir: &Path, seed: u8, mib: u64) -> Checksum {
    let temp = dir.join("writing");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&temp).unwrap());
    let mut block = content(seed, 1 << 20);
    for i in 0..mib {
        block[..8].copy_from_slice(&i.to_le_bytes());
        file.write_all(&block).unwrap();
    }
    drop(file);
    let checksum = Checksum::of_reader(std::fs::File::open(&temp).unwrap()).unwrap();
    std::fs::rename(&temp, dir.join(checksum.hex())).unwrap();
    checksum
}

/// The peak resident set of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

fn ranged_get(server: &Server, checksum: &Checksum, range: &str) -> reqwest::blocking::Response {
    client()
        .get(format!("{}/{}", server.url(), checksum.hex()))
        .header("range", range)
        .send()
        .unwrap()
}

/// `seamfs hashserver --remote` serves a 256 MiB buffer only the remote has in bounded memory:
/// streamed as it downloads (its peak RSS stays far below the buffer's size), whole or ranged,
/// and the bytes are right.
#[test]
fn the_hashserver_streams_a_big_remote_buffer_in_bounded_memory() {
    const MIB: u64 = 1 << 20;
    let remote_dir = tempfile::tempdir().unwrap();
    let whole = big_buffer(remote_dir.path(), 16, 256);
    let ranged = big_buffer(remote_dir.path(), 17, 256);
    let remote = python_hashserver(Some(remote_dir.path()), "flat");
    let dir = tempfile::tempdir().unwrap();
    let front = seamfs_hashserver(dir.path(), &["--remote", &remote.url()]);
    let response = client()
        .get(format!("{}/{}", front.url(), whole.hex()))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(256 * MIB));
    assert_eq!(
        Checksum::of_reader(response).unwrap(),
        whole,
        "served other bytes"
    );
    let (start, end) = (200 * MIB + 12_345, 201 * MIB + 777);
    let response = ranged_get(&front, &ranged, &format!("bytes={start}-{}", end - 1));
    assert_eq!(response.status(), 206);
    let content_range = response.headers()["content-range"].to_str().unwrap();
    assert_eq!(
        content_range,
        format!("bytes {start}-{}/{}", end - 1, 256 * MIB)
    );
    let body = response.bytes().unwrap();
    let mut expected = vec![0u8; (end - start) as usize];
    let source = std::fs::File::open(remote_dir.path().join(ranged.hex())).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&source, &mut expected, start).unwrap();
    assert!(body[..] == expected[..], "the range has other bytes");
    let peak = peak_rss(front.child.id());
    assert!(
        peak < 96 * MIB,
        "serving two 256 MiB remote buffers peaked at {} MiB of RSS",
        peak / MIB
    );
}

/// Several ranges of a buffer still downloading: one `multipart/byteranges` body, as long as
/// its `Content-Length` says, with each range's bytes.
#[test]
fn the_hashserver_serves_ranges_of_a_remote_buffer_as_multipart() {
    let remote_dir = tempfile::tempdir().unwrap();
    let checksum = big_buffer(remote_dir.path(), 18, 4);
    let data = std::fs::read(remote_dir.path().join(checksum.hex())).unwrap();
    let remote = python_hashserver(Some(remote_dir.path()), "flat");
    let dir = tempfile::tempdir().unwrap();
    let front = seamfs_hashserver(dir.path(), &["--remote", &remote.url()]);
    let response = ranged_get(&front, &checksum, "bytes=10-19, 3000000-3000099");
    assert_eq!(response.status(), 206);
    let length = response.content_length().unwrap();
    let body = response.bytes().unwrap();
    assert_eq!(body.len() as u64, length);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("Content-Range: bytes 10-19/4194304"),
        "{text}"
    );
    let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(find(&data[10..20]) && find(&data[3_000_000..3_000_100]));
}

/// A remote that breaks off mid-body (here after 8 MiB of 64, and no retries): the answer, a
/// 200 already sent, ends short of its `Content-Length` (the connection is dropped), so the
/// client sees an error, never a cut-off buffer that looks whole; nothing is kept.
#[test]
fn the_hashserver_cuts_off_a_body_when_the_remote_breaks_off() {
    let remote_dir = tempfile::tempdir().unwrap();
    let checksum = big_buffer(remote_dir.path(), 19, 64);
    let remote = python_hashserver(Some(remote_dir.path()), "flat");
    let dir = tempfile::tempdir().unwrap();
    let (proxy, _log) = forwarder(&remote, dir.path(), Some(8 << 20));
    let front_dir = dir.path().join("front");
    std::fs::create_dir(&front_dir).unwrap();
    let remote_address = format!("{}?retries=0", proxy.url());
    let front = seamfs_hashserver(&front_dir, &["--remote", &remote_address]);
    let mut response = client()
        .get(format!("{}/{}", front.url(), checksum.hex()))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(64 << 20));
    let mut received = 0u64;
    let read = std::io::copy(&mut response, &mut CountingSink(&mut received));
    assert!(
        read.is_err(),
        "the body ended cleanly after {received} bytes"
    );
    assert!(received < 64 << 20, "{received}");
    let hex = checksum.hex();
    assert!(
        !front_dir.join(&hex[..2]).join(&hex).exists(),
        "nothing kept"
    );
}

/// A writer that only counts.
struct CountingSink<'a>(&'a mut u64);

impl Write for CountingSink<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        *self.0 += data.len() as u64;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A remote that answers with the wrong bytes is refused: nothing served, nothing kept.
#[test]
fn the_hashserver_refuses_a_corrupt_remote() {
    let (s3, checksum) = corrupt_s3(15);
    let dir = tempfile::tempdir().unwrap();
    let front = seamfs_hashserver(
        dir.path(),
        &["--remote", &s3_address(&s3, "bad", "&retries=0")],
    );
    assert_eq!(http_get(&front, &checksum).0, 404);
    let hex = checksum.hex();
    assert!(
        !dir.path().join(&hex[..2]).join(&hex).exists(),
        "nothing kept"
    );
}

/// `seamfs database` on a free port, writable, over a new file in `dir`.
fn database_server(dir: &Path) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .arg("database")
        .arg(dir.join("shared.db"))
        .args(["--writable", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::blocking::get(format!("{url}/healthcheck")).is_err() {
        assert!(Instant::now() < deadline, "seamfs database did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, url)
}

#[test]
fn a_view_computed_in_one_mount_is_reused_by_another_through_the_database() {
    let server = python_hashserver(None, "prefix");
    let dir = tempfile::tempdir().unwrap();
    let (mut database, db_url) = database_server(dir.path());
    let a = Mount::new(&["--push", &server.url(), "--database-url", &db_url]);
    let b = Mount::new(&["--remote", &server.url(), "--database-url", &db_url]);
    let json = b"[1, 2, 3]\n".to_vec();
    write_file(&a.path("cell.json"), &json, true);
    let checksum = Checksum::of(&json);
    let view = format!("as-binary/{}", checksum.hex());
    let in_a = std::fs::read(a.path(&view)).unwrap();
    assert!(in_a.starts_with(b"\x93NUMPY"), "a new buffer: a .npy array");
    assert_eq!(a.stats()["conversions"], 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.stats()["push"]["queued"] != 0 {
        assert!(Instant::now() < deadline, "{}", a.stats()["push"]);
        std::thread::sleep(Duration::from_millis(50));
    }
    let in_b = std::fs::read(b.path(&view)).unwrap();
    assert_eq!(in_a, in_b);
    assert_eq!(b.stats()["conversions"], 0, "B reused A's result");
    let _ = database.kill();
    let _ = database.wait();
}

/// A hashserver (stdlib Python) serving one buffer, `data`, that stalls in the middle of every
/// body: after `head` bytes it waits until the file `go` exists, then sends the rest. A reader
/// that needs the whole buffer before its first byte waits for `go`; one that streams does not.
pub fn stalling_hashserver(data: &Path, head: u64, go: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut command = Command::new("python3");
    command
        .args(["-c", STALLING_HASHSERVER])
        .arg(data)
        .arg(head.to_string())
        .arg(go)
        .arg(port.to_string());
    test_servers::start(command, port, "/healthcheck", None)
}

const STALLING_HASHSERVER: &str = r#"
import hashlib, json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
data_path, head, go, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
data = open(data_path, "rb").read()
ours = hashlib.sha256(data).hexdigest()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def answer(self, status, body, extra=()):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        path = self.path.strip("/")
        if path == "healthcheck":
            return self.answer(200, b"OK")
        if path in ("has", "buffer-length"):
            asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            known = [(c == ours) if path == "has" else (len(data) if c == ours else 0) for c in asked]
            return self.answer(200, json.dumps(known).encode(), [("Content-Type", "application/json")])
        if path != ours:
            return self.answer(404, b"Not found")
        start = int(self.headers.get("Range", "bytes=0-")[6:].rstrip("-"))
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = max(start, head)
        self.wfile.write(data[start:cut])
        self.wfile.flush()
        while not os.path.exists(go):
            time.sleep(0.01)
        self.wfile.write(data[cut:])

ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;
