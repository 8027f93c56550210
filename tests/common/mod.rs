//! What the FUSE test files share: a guard over a running `seamfs mount` that unmounts on drop,
//! and small helpers (sidecar text, xattrs, the Python reference tools, raw HTTP clients).
#![allow(dead_code)] // each test crate uses a part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seamfs::Checksum;

#[path = "../../src/store/test_servers.rs"]
pub mod test_servers;

/// A running `seamfs mount`; dropping it unmounts (SIGTERM, then fusermount3/umount -l).
pub struct Mount {
    pub child: Option<Child>,
    pub mnt: PathBuf,
    pub store: PathBuf,
    pub _dir: Option<tempfile::TempDir>,
}

impl Mount {
    pub fn new() -> Mount {
        Mount::with(&[])
    }

    /// A fresh mount and store with extra arguments (e.g. `--list-sidecars`).
    pub fn with(extra: &[&str]) -> Mount {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut mount = Mount::on(dir.path().join("mnt"), dir.path().join("store"), extra);
        mount._dir = Some(dir);
        mount
    }

    /// Mount `store` on `mnt` (created if needed) with extra arguments.
    pub fn on(mnt: PathBuf, store: PathBuf, extra: &[&str]) -> Mount {
        let command = Mount::command(&mnt, &store, extra);
        Mount::start(command, mnt, store)
    }

    /// The `seamfs mount` command `on` runs (the database on a free port unless `extra` says).
    pub fn command(mnt: &Path, store: &Path, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_seamfs"));
        command
            .arg("mount")
            .arg(mnt)
            .arg("--store")
            .arg(store)
            .args(if extra.iter().any(|a| a.starts_with("--db-port")) {
                &[][..]
            } else {
                &["--db-port", "0"][..]
            })
            .args(extra)
            // SEAMFS_TEST_LOG=debug shows more of what a mount under test does.
            .env(
                "RUST_LOG",
                std::env::var("SEAMFS_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null());
        command
    }

    /// Run a mount `command` for `mnt` (created if needed) and wait until it is mounted.
    pub fn start(mut command: Command, mnt: PathBuf, store: PathBuf) -> Mount {
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: the FUSE tests cannot run"
        );
        std::fs::create_dir_all(&mnt).unwrap();
        let child = command.spawn().expect("start seamfs mount");
        let mount = Mount {
            child: Some(child),
            mnt,
            store,
            _dir: None,
        };
        mount.wait_mounted();
        mount
    }

    pub fn wait_mounted(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(&self.mnt) {
            assert!(
                Instant::now() < deadline,
                "seamfs did not mount {} within 60 s",
                self.mnt.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Unmount and wait for the process; returns its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate().expect("seamfs was running")
    }

    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let status = child.wait().ok();
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mnt)
                .status();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        status
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.terminate();
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
}

/// `seamfs hashserver DIR --writable` on a free port, with `extra` arguments (`--remote URL`,
/// `--push URL`).
pub fn seamfs_hashserver(dir: &Path, extra: &[&str]) -> test_servers::Server {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_seamfs"));
    command
        .arg("hashserver")
        .arg(dir)
        .args(["--writable", "--port", &port.to_string()])
        .args(extra);
    test_servers::start(command, port, "/healthcheck", None)
}

/// A free port on 127.0.0.1 (bound and released: another process could take it meanwhile, which
/// only fails the test loudly).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `data` gzip-compressed (an upload with `Content-Encoding: gzip`).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Files under `dir` (relative paths), sorted; for "nothing left behind" checks.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

/// What `seamless-checksum` writes into a `.CHECKSUM` file for `data`.
pub fn sidecar(data: &[u8]) -> String {
    format!("{}\n", Checksum::of(data))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A program of a Python reference environment (`VENV/bin/NAME`); fails loudly if it is missing.
pub fn venv_bin(venv: &str, name: &str) -> PathBuf {
    let path = repo().join(venv).join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: these tests need the Python reference environments; run scripts/setup-python",
        path.display()
    );
    path
}

/// A tool of the reference Python environment (`.venv/bin/NAME`).
pub fn python_tool(name: &str) -> PathBuf {
    venv_bin(".venv", name)
}

/// Run `tests/interop/SCRIPT ARGS…` in the reference environment; its stdout, one JSON value
/// per line (the real Python clients' answers).
pub fn python_json_lines(script: &str, args: &[&std::ffi::OsStr]) -> Vec<serde_json::Value> {
    let out = Command::new(python_tool("python"))
        .arg(repo().join("tests/interop").join(script))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The extended attribute `name` of `path`, if it has one.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    get_xattr(path, name).ok()
}

/// The extended attribute `name` of `path`, or the errno of `getxattr`.
pub fn get_xattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the length given.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    match len {
        0.. => Ok(buf[..len as usize].to_vec()),
        _ => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
    }
}

/// Close, reporting the error `close(2)` gives (where a FUSE flush failure arrives).
pub fn close(file: std::fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    // SAFETY: the descriptor is ours and closed exactly once.
    if unsafe { libc::close(file.into_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A directory under /tmp with a tmpfs of `size_mib` MiB mounted on `store/` (if asked), and
/// `mnt/` for the FUSE mount. Dropping it unmounts the tmpfs and removes everything.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    tmpfs: bool,
}

impl Scratch {
    pub fn new(tmpfs_mib: Option<u64>) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("seamfs-scratch-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        if let Some(mib) = tmpfs_mib {
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(dir.path().join("store"))
                .status()
                .expect("run mount");
            assert!(status.success(), "mounting a tmpfs needs root");
        }
        Scratch {
            dir,
            tmpfs: tmpfs_mib.is_some(),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.tmpfs {
            let _ = Command::new("umount").arg(self.store()).status();
        }
    }
}

/// Fill the tmpfs under `store` with `store/filler`, then free `slack` bytes of it.
pub fn fill_disk(store: &Path, slack: u64) {
    use std::io::Write;
    let path = store.join("filler");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let block = vec![0xa5u8; 64 << 10];
    while file.write_all(&block).is_ok() {}
    while file.write_all(&[0x5a]).is_ok() {}
    let len = file.metadata().unwrap().len();
    file.set_len(len.saturating_sub(slack)).unwrap();
}

// ---- raw HTTP clients, for the tests of broken and hostile ones ----

/// A raw TCP connection to `url` (`http://host:port`); reads give up after 60 s.
pub fn connect(url: &str) -> std::net::TcpStream {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    tcp
}

/// Read until the server closes the connection (or resets it): what it sent, and when it closed.
pub fn read_until_closed(tcp: &mut std::net::TcpStream) -> (String, Duration) {
    use std::io::Read;
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tcp.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server neither answered nor closed: {e}"),
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        start.elapsed(),
    )
}

/// Resident memory of process `pid`, in MiB.
pub fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib / 1024
}

/// Descriptors process `pid` has open.
pub fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Send `byte` every 200 ms (100 times at most) until the server closes the connection.
pub fn trickle(mut tcp: std::net::TcpStream, byte: &'static [u8]) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    std::thread::spawn(move || {
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(200));
            if tcp.write_all(byte).is_err() {
                return;
            }
        }
    })
}

/// Up to `count` connections to `port` on 127.0.0.1, each holding a request head that never
/// ends; and how many connects were refused or timed out (it stops after 3).
pub fn flood(port: u16, count: usize) -> (Vec<std::net::TcpStream>, usize) {
    use std::io::Write;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut held = Vec::with_capacity(count);
    let mut refused = 0;
    while held.len() < count && refused < 3 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(mut tcp) => {
                let _ = tcp.write_all(b"PUT / HTTP/1.1\r\nhost: x\r\ncontent-le");
                held.push(tcp);
            }
            Err(_) => refused += 1,
        }
    }
    (held, refused)
}

/// Wait (up to `patience`) until process `pid` is back to at most `rss_before` + 8 MiB resident
/// and `fds_before` descriptors: what a burst of connections took is handed back.
pub fn wait_until_released(pid: u32, rss_before: u64, fds_before: usize, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let (rss, fds) = (rss_mib(pid), open_descriptors(pid));
        if rss <= rss_before + 8 && fds <= fds_before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after the connections closed: {rss} MiB resident (before: {rss_before}), \
             {fds} descriptors (before: {fds_before})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A client that has sent a request head and the start of its body trickles the rest in
/// (`byte` every 200 ms): the server must answer `408` with the reason and close within 10 s.
pub fn assert_slow_body_refused(mut tcp: std::net::TcpStream, byte: &'static [u8]) {
    let writer = trickle(tcp.try_clone().unwrap(), byte);
    let (answer, closed_after) = read_until_closed(&mut tcp);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("request body not received in time"),
        "{answer}"
    );
    assert!(closed_after < Duration::from_secs(10), "{closed_after:?}");
    writer.join().unwrap();
}

/// A client that trickles a request head in (a byte every 200 ms after its first line) is
/// closed before `within` (the server's head timeout and some slack).
pub fn assert_slow_head_closed(url: &str, within: Duration) {
    use std::io::Write;
    let mut tcp = connect(url);
    tcp.write_all(b"GET /healthcheck HTTP/1.1\r\n").unwrap();
    let writer = trickle(tcp.try_clone().unwrap(), b"x");
    let (_, closed_after) = read_until_closed(&mut tcp);
    assert!(closed_after < within, "{closed_after:?}");
    writer.join().unwrap();
}
