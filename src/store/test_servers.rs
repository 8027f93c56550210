//! Real servers on 127.0.0.1 for the network tiers' tests: the Python hashserver 1.1.0
//! (`.venv-hashserver`) and moto's S3 server (`.venv-s3`), both made by `scripts/setup-python`.
//! Each runs on a free port and is killed when its handle is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process, killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stop the server now (the remote going down).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn venv_program(venv: &str, program: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(venv)
        .join("bin")
        .join(program);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup-python",
        path.display()
    );
    path
}

/// Start `command`, serving on `port`, and wait until `ready_path` answers (a 2xx).
pub fn start(
    mut command: Command,
    port: u16,
    ready_path: &str,
    dir: Option<tempfile::TempDir>,
) -> Server {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut server = Server {
        child,
        port,
        _dir: dir,
    };
    let url = format!("{}{ready_path}", server.url());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if reqwest::blocking::get(&url).is_ok_and(|r| r.status().is_success()) {
            return server;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("{command:?} exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{command:?} did not answer {url}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Python hashserver 1.1.0, writable, serving `dir` (a new temp dir when `None`) in the
/// given layout (`prefix` or `flat`).
pub fn python_hashserver(dir: Option<&Path>, layout: &str) -> Server {
    let temp = dir
        .is_none()
        .then(|| tempfile::tempdir().expect("temp dir"));
    let dir = dir.map_or_else(
        || temp.as_ref().unwrap().path().to_path_buf(),
        Path::to_path_buf,
    );
    let mut server = python_hashserver_on(&dir, layout, free_port());
    server._dir = temp;
    server
}

/// `python_hashserver` on a given port (a server coming back after it went down).
pub fn python_hashserver_on(dir: &Path, layout: &str, port: u16) -> Server {
    let mut command = Command::new(venv_program(".venv-hashserver", "hashserver"));
    command
        .arg(dir)
        .args(["--writable", "--host", "127.0.0.1", "--layout", layout])
        .args(["--port", &port.to_string()]);
    start(command, port, "/healthcheck", None)
}

/// moto's S3 server with one empty bucket, `bucket`.
pub fn moto_s3(bucket: &str) -> Server {
    let port = free_port();
    let mut command = Command::new(venv_program(".venv-s3", "moto_server"));
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let server = start(command, port, "/", None);
    let made = reqwest::blocking::Client::new()
        .put(format!("{}/{bucket}", server.url()))
        .send()
        .expect("create the bucket");
    assert!(
        made.status().is_success(),
        "create bucket: {}",
        made.status()
    );
    server
}

/// The `s3://` address of `bucket/prefix` on a moto server (test credentials, plain http).
pub fn s3_address(server: &Server, bucket_and_prefix: &str, extra: &str) -> String {
    format!(
        "s3://{bucket_and_prefix}?endpoint={}&allow_http=true&region=us-east-1\
         &access_key_id=test&secret_access_key=test{extra}",
        server.url()
    )
}
