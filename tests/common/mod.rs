//! Shared by the mount tests: a real `seamfs mount` of the built binary that unmounts on drop,
//! and small helpers (sidecar text, xattrs, the Python reference tools).
#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seamfs::Checksum;

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
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: the FUSE tests cannot run"
        );
        std::fs::create_dir_all(&mnt).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_seamfs"))
            .arg("mount")
            .arg(&mnt)
            .arg("--store")
            .arg(&store)
            .args(if extra.iter().any(|a| a.starts_with("--db-port")) {
                &[][..]
            } else {
                &["--db-port", "0"][..]
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

/// A free TCP port on 127.0.0.1 (for `--db-port`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
}

pub fn sidecar(data: &[u8]) -> String {
    format!("{}\n", Checksum::of(data))
}

pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the length given.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

pub fn python_tool(name: &str) -> PathBuf {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    assert!(
        tool.exists(),
        "{} is missing: run scripts/setup-python",
        tool.display()
    );
    tool
}
