//! Mounts with remote tiers, against real servers on 127.0.0.1: the Python hashserver 1.1.0 and
//! moto's S3 server (`scripts/setup-python`). Every mount is a real FUSE mount of the `seamfs`
//! binary, unmounted on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seamfs::Checksum;
use serde_json::Value;

#[path = "../src/store/test_servers.rs"]
#[allow(dead_code)]
mod test_servers;

use test_servers::{Server, moto_s3, python_hashserver, python_hashserver_on, s3_address};

/// A running `seamfs mount`, unmounted (SIGTERM) on drop.
struct Mount {
    child: Option<Child>,
    mnt: PathBuf,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    fn new(extra: &[&str]) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
        Mount::start(mnt, store, dir, extra)
    }

    fn start(mnt: PathBuf, store: PathBuf, dir: tempfile::TempDir, extra: &[&str]) -> Mount {
        assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing");
        std::fs::create_dir_all(&mnt).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_seamfs"))
            .arg("mount")
            .arg(&mnt)
            .arg("--store")
            .arg(&store)
            .args(["--no-db", "--ram-cache", "0"])
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

fn hashserver_put(server: &Server, data: &[u8]) -> Checksum {
    let checksum = Checksum::of(data);
    let response = reqwest::blocking::Client::new()
        .put(format!("{}/{}", server.url(), checksum.hex()))
        .body(data.to_vec())
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    checksum
}

fn hashserver_has(server: &Server, checksums: &[Checksum]) -> Vec<bool> {
    let body: Vec<String> = checksums.iter().map(Checksum::hex).collect();
    reqwest::blocking::Client::new()
        .get(format!("{}/has", server.url()))
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
    let a = Mount::start(mnt, store, dir, &["--push", &url]);
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
}

#[test]
fn a_corrupt_remote_is_refused_by_the_mount() {
    let s3 = moto_s3("bad");
    let claimed = content(6, 5000);
    let checksum = Checksum::of(&claimed);
    let put = reqwest::blocking::Client::new()
        .put(format!("{}/bad/{}", s3.url(), checksum.hex()))
        .body(content(7, 5000))
        .send()
        .unwrap();
    assert!(put.status().is_success());
    let b = Mount::new(&["--remote", &s3_address(&s3, "bad", "&retries=0")]);
    let path = b.path(&format!("by-checksum/{}", checksum.hex()));
    assert_eq!(errno_of(std::fs::read(&path)), libc::EIO);
    assert!(b.mounted());
    let listed = std::fs::read_dir(b.path("by-checksum")).unwrap().count();
    assert_eq!(listed, 0, "nothing of the corrupt buffer was kept");
}

/// seamless-core's `Checksum.resolve()` through seamless-remote with the mount's `by-checksum/`
/// as a `bufferfolder`: a buffer only the hashserver has is fetched by the mount on lookup.
#[test]
fn seamless_resolves_through_by_checksum_as_a_bufferfolder() {
    let server = python_hashserver(None, "prefix");
    let data = content(8, 300_000);
    let checksum = hashserver_put(&server, &data);
    let b = Mount::new(&["--remote", &server.url()]);
    let script = r#"
import sys
import seamless_remote.buffer_remote as remote
from seamless import Checksum
remote.define_extern_client("mount", "bufferfolder", directory=sys.argv[1])
remote.activate(no_main=True, extern_clients=["mount"])
buffer = Checksum(sys.argv[2]).resolve()
sys.stdout.buffer.write(buffer.content)
"#;
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(b.path("by-checksum"))
        .arg(checksum.hex())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout == data, "resolve() returned other bytes");
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
