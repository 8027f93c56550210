//! The buffer server: `seamfs hashserver` over real HTTP on 127.0.0.1, side by side with the real
//! hashserver 1.1.0 (.venv-hashserver, made by scripts/setup-python) in the same test: raw
//! requests, the real seamless-remote BufferClient and seamless-core buffer_writer
//! (tests/interop/buffer_client.py), both servers on one directory, bad input and the CLI.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

mod common;
use common::{files_under, free_port, gzip, is_mounted, python_json_lines, venv_bin};

const SEAMFS: &str = env!("CARGO_BIN_EXE_seamfs");
/// Generous bound for a process to do something it should do at once; only a hang exceeds it.
const PATIENCE: Duration = Duration::from_secs(60);
/// `Hello world!\n` and its SHA-256 (the transcript's buffer).
const HELLO: &[u8] = b"Hello world!\n";
const HELLO_CS: &str = "0ba904eae8773b70c75333db4de2f3ac45a8ad4ddba1b242f0b3cfc199391dd8";

fn sha256(data: &[u8]) -> String {
    seamfs::Checksum::of(data).hex()
}

// ---- servers ----

/// A buffer server process (ours or the Python one), stopped on drop.
struct Server {
    child: Child,
    url: String,
    /// The buffer directory it serves.
    dir: PathBuf,
}

impl Server {
    /// `seamfs hashserver DIR --port 0 EXTRA...`
    fn seamfs(dir: &Path, extra: &[&str]) -> Server {
        let child = Command::new(SEAMFS)
            .arg("hashserver")
            .arg(dir)
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start seamfs hashserver");
        Server::announced(child, dir)
    }

    /// The real hashserver 1.1.0 on a free port.
    fn python(dir: &Path, extra: &[&str]) -> Server {
        let child = Command::new(venv_bin(".venv-hashserver", "hashserver"))
            .arg(dir)
            .args(["--port-range", "40000", "48999"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the Python hashserver");
        Server::announced(child, dir)
    }

    /// Read stderr up to the `Uvicorn running on http://HOST:PORT` line, then keep draining it.
    fn announced(mut child: Child, dir: &Path) -> Server {
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let url = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("the server exited before serving; its output:\n{seen}");
            }
            if let Some(rest) = line.split("Uvicorn running on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
            seen.push_str(&line);
        };
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Server {
            child,
            url,
            dir: dir.to_path_buf(),
        }
    }

    fn stop(mut self) -> ExitStatus {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        wait_exit(&mut self.child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- requests ----

#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

fn req(method: &'static str, path: impl Into<String>) -> Req {
    Req {
        method,
        path: path.into(),
        headers: Vec::new(),
        body: None,
    }
}

impl Req {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Req {
        self.headers.push((name, value.into()));
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = Some(body.into());
        self
    }
    fn json(self, body: &str) -> Req {
        self.header("content-type", "application/json").body(body)
    }
}

/// What we compare of an answer: status, the headers that carry meaning, the body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Headers that depend on the process or the moment, not on the protocol.
const VOLATILE: &[&str] = &[
    "date",
    "server",
    "etag",
    "last-modified",
    "transfer-encoding",
    "location",
];

fn send(url: &str, r: &Req, keep: &[&str]) -> Answer {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
    let mut rq = client.request(method, format!("{url}{}", r.path));
    for (name, value) in &r.headers {
        rq = rq.header(*name, value);
    }
    if let Some(body) = &r.body {
        rq = rq.body(body.clone());
    }
    let resp = rq.send().expect("HTTP request");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter(|(n, _)| !VOLATILE.contains(&n.as_str()) || keep.contains(&n.as_str()))
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let body = resp.bytes().unwrap().to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// The same requests to both servers (each on its own directory), answer by answer; a body
/// that names the server's directory (corruption messages) names `<DIR>` instead.
fn compare(python: &Server, ours: &Server, requests: &[Req]) {
    let relative = |server: &Server, mut answer: Answer| {
        let dir = server.dir.display().to_string();
        let body = String::from_utf8_lossy(&answer.body).replace(&dir, "<DIR>");
        if body.len() != answer.body.len() {
            answer.body = body.into_bytes();
            answer.headers.remove("content-length");
        }
        answer
    };
    for r in requests {
        let want = relative(python, send(&python.url, r, &[]));
        let got = relative(ours, send(&ours.url, r, &[]));
        assert_eq!(got, want, "{} {} {:?}", r.method, r.path, r.headers);
    }
}

// ---- the protocol, request by request ----

/// 3 MiB of varied bytes.
fn big_body() -> Vec<u8> {
    (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn sha3_hex(data: &[u8]) -> String {
    use sha3::Digest;
    sha3::Sha3_256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn protocol_requests() -> Vec<Req> {
    let zeros = "0".repeat(64);
    let json_list = format!(r#"["{HELLO_CS}", "{zeros}"]"#);
    let gz_body = gzip(b"zipped buffer\n");
    let gz_cs = sha256(b"zipped buffer\n");
    let zst_cs = sha256(b"zstd buffer\n");
    let zst_body = zstd::encode_all(&b"zstd buffer\n"[..], 0).unwrap();
    let prom = sha256(b"promised");
    // Past the size hashed on the writer's thread, so a hashing thread takes over.
    let big = big_body();
    let big_cs = sha256(&big);
    vec![
        req("PUT", format!("/{big_cs}")).body(big.clone()),
        req("GET", format!("/{big_cs}")),
        req("PUT", format!("/{}", sha256(b"not the big body"))).body(big.clone()),
        req("GET", "/healthcheck"),
        req("HEAD", "/healthcheck"),
        req("GET", format!("/{zeros}")),
        req("PUT", format!("/{HELLO_CS}")).body(HELLO),
        req("PUT", format!("/{HELLO_CS}")).body(HELLO),
        req("PUT", format!("/{HELLO_CS}")).body("wrong body, not read"),
        req("PUT", format!("/{zeros}")).body("something else"),
        req("PUT", format!("/{zeros}")),
        req("PUT", "/0ba904eae8").body(HELLO),
        req("PUT", format!("/xx{}", &HELLO_CS[2..])).body(HELLO),
        req("GET", format!("/{HELLO_CS}")),
        req("GET", format!("/{}", HELLO_CS.to_uppercase())),
        req("GET", format!("/{HELLO_CS}")).header("range", "bytes=0-4"),
        req("GET", format!("/{HELLO_CS}")).header("range", "bytes=-3"),
        req("GET", format!("/{HELLO_CS}")).header("range", "bytes=5-"),
        req("GET", format!("/{HELLO_CS}")).header("range", "bytes=13-"),
        req("GET", format!("/{HELLO_CS}")).header("range", "bytes=4-2"),
        req("GET", format!("/{HELLO_CS}")).header("range", "lines=1-2"),
        req("HEAD", format!("/{HELLO_CS}")),
        req("GET", format!("/{}", &HELLO_CS[..50])),
        req("GET", format!("/{}", &HELLO_CS[..63])),
        req("GET", format!("/0b{}", &HELLO_CS[..60])),
        req("GET", "/has").json(&json_list),
        req("GET", "/has-now").json(&json_list),
        req("GET", "/buffer-length").json(&json_list),
        req("GET", "/has").body(format!(r#"["{HELLO_CS}"]"#)),
        req("GET", "/has")
            .header("content-type", "text/plain")
            .body(format!(r#"["{HELLO_CS}"]"#)),
        req("GET", "/has").json("[]"),
        req("GET", "/has"),
        req("GET", "/has").json(&format!(r#""{HELLO_CS}""#)),
        req("GET", "/has").json(&format!(r#"["{HELLO_CS}", "0ba904eae8"]"#)),
        req("GET", "/has").json(r#"{"a": 1}"#),
        req("GET", "/has").json("[12345]"),
        req("GET", "/has").json("["),
        req("GET", "/has").json("[null]"),
        req("POST", "/has").json(&json_list),
        req("PUT", "/has"),
        req("PUT", "/healthcheck"),
        req("PUT", format!("/promise/{prom}")),
        req("GET", "/has").json(&format!(r#"["{prom}"]"#)),
        req("GET", "/has-now").json(&format!(r#"["{prom}"]"#)),
        req("GET", "/buffer-length").json(&format!(r#"["{prom}"]"#)),
        req("PUT", format!("/{prom}")).body("promised"),
        req("GET", format!("/{prom}")),
        req("GET", "/buffer-length").json(&format!(r#"["{prom}"]"#)),
        req("PUT", "/promise/0ba904eae8"),
        req("GET", format!("/promise/{prom}")),
        req("PUT", format!("/{gz_cs}"))
            .header("content-encoding", "gzip")
            .body(gz_body.clone()),
        req("GET", "/buffer-length").json(&format!(r#"["{gz_cs}"]"#)),
        req("PUT", format!("/{zeros}"))
            .header("content-encoding", "gzip")
            .body(gz_body),
        req("PUT", format!("/{}", sha256(b"x")))
            .header("content-encoding", "gzip")
            .body("x"),
        req("PUT", format!("/{zst_cs}"))
            .header("content-encoding", " ZSTD ")
            .body(zst_body),
        req("PUT", format!("/{}", sha256(b"br?")))
            .header("content-encoding", "br")
            .body("br?"),
        req("GET", "/"),
        req("GET", "/a/b"),
        req("GET", "/has/"),
        req("DELETE", format!("/{HELLO_CS}")),
        req("POST", format!("/{HELLO_CS}")).body(HELLO),
        req("OPTIONS", format!("/{HELLO_CS}"))
            .header("origin", "http://example.org")
            .header("access-control-request-method", "PUT"),
        req("OPTIONS", format!("/{HELLO_CS}"))
            .header("origin", "http://example.org")
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "x-thing"),
        req("GET", "/healthcheck").header("origin", "http://example.org"),
    ]
}

/// A writable Python hashserver on `<dir>/py` and `seamfs hashserver` on `<dir>/rs`.
fn writable_pair(dir: &Path) -> (Server, Server) {
    let (py_dir, rs_dir) = (dir.join("py"), dir.join("rs"));
    std::fs::create_dir_all(&py_dir).unwrap();
    std::fs::create_dir_all(&rs_dir).unwrap();
    (
        Server::python(&py_dir, &["--writable"]),
        Server::seamfs(&rs_dir, &["--writable"]),
    )
}

#[test]
fn every_route_answers_as_the_python_hashserver() {
    let dir = tempfile::tempdir().unwrap();
    let (python, ours) = writable_pair(dir.path());
    let (py_dir, rs_dir) = (python.dir.clone(), ours.dir.clone());
    compare(&python, &ours, &protocol_requests());
    // The directories hold the same files, but for the compressed uploads, which we store raw
    // (docs/compat.md) and hashserver as sent (with a length sidecar).
    let normalise = |names: Vec<String>| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| !n.ends_with(".BUFFERLENGTH"))
            .map(|n| {
                n.trim_end_matches(".gz")
                    .trim_end_matches(".zst")
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        normalise(files_under(&rs_dir)),
        normalise(files_under(&py_dir))
    );
    assert!(python.stop().success());
    assert!(ours.stop().success());
}

#[test]
fn read_only_flat_and_sha3_servers_answer_as_the_python_hashserver() {
    let dir = tempfile::tempdir().unwrap();
    for (name, options) in [
        ("ro", &["--layout", "flat"][..]),
        (
            "sha3",
            &[
                "--writable",
                "--layout",
                "flat",
                "--hash-algorithm",
                "sha3-256",
            ][..],
        ),
    ] {
        let (py_dir, rs_dir) = (
            dir.path().join(format!("py-{name}")),
            dir.path().join(format!("rs-{name}")),
        );
        for d in [&py_dir, &rs_dir] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join(HELLO_CS), HELLO).unwrap();
        }
        let python = Server::python(&py_dir, options);
        let ours = Server::seamfs(&rs_dir, options);
        let sha3 = "6825d69119b014b3d5ac9b17ce68bf98b66190c5e34397781b3776dca9c23539";
        compare(
            &python,
            &ours,
            &[
                req("GET", format!("/{HELLO_CS}")),
                req("PUT", format!("/{HELLO_CS}")).body(HELLO),
                req("PUT", format!("/promise/{HELLO_CS}")),
                req("PUT", format!("/{sha3}")).body(HELLO),
                req("GET", format!("/{sha3}")),
                req("GET", "/has").json(&format!(r#"["{sha3}", "{HELLO_CS}"]"#)),
            ],
        );
        if name == "sha3" {
            // Only bodies that both servers read to the end: a read-only server answers a PUT
            // 405, and a stored checksum 201, before the body is sent (a broken pipe).
            compare(
                &python,
                &ours,
                &[
                    req("PUT", format!("/{}", sha3_hex(&big_body()))).body(big_body()),
                    req("PUT", format!("/{}", sha3_hex(b"not the big body"))).body(big_body()),
                ],
            );
        }
        assert_eq!(files_under(&rs_dir), files_under(&py_dir), "{name}");
    }
}

// ---- the real clients ----

/// Output of tests/interop/buffer_client.py against `url` serving `dir`, one JSON value per call.
fn client_run(url: &str, dir: &Path) -> Vec<Value> {
    python_json_lines("buffer_client.py", &[url.as_ref(), dir.as_os_str()])
}

/// What the client must see from us, given what it saw from hashserver.
fn expected_from_ours(python: Vec<Value>) -> Vec<Value> {
    python
        .into_iter()
        .map(|mut v| {
            // Deliberate difference: a zstd-only buffer is sent decompressed to a client that
            // does not accept zstd (aiohttp), instead of failing in the client.
            if v["call"] == "get zst-only" {
                v = serde_json::json!({"call": "get zst-only", "result": {"bytes": "zstd-only buffer\n"}});
            }
            v
        })
        .collect()
}

#[test]
fn seamless_clients_get_what_the_python_hashserver_gives() {
    let dir = tempfile::tempdir().unwrap();
    let (python, ours) = writable_pair(dir.path());
    let (py_dir, rs_dir) = (python.dir.clone(), ours.dir.clone());
    let want = client_run(&python.url, &py_dir);
    assert!(want.len() > 25, "{want:?}");
    let got = client_run(&ours.url, &rs_dir);
    assert_eq!(got, expected_from_ours(want));
}

// ---- one directory, both servers ----

#[test]
fn both_servers_serve_one_directory_with_identical_answers() {
    let dir = tempfile::tempdir().unwrap();
    let buffers = dir.path().join("buffers");
    std::fs::create_dir_all(&buffers).unwrap();
    let python = Server::python(&buffers, &["--writable"]);
    let ours = Server::seamfs(&buffers, &["--writable"]);
    let stored_by = |server: &Server, data: &[u8]| {
        let r = req("PUT", format!("/{}", sha256(data))).body(data);
        assert_eq!(send(&server.url, &r, &[]).status, 200);
        sha256(data)
    };
    let by_python = stored_by(&python, b"written by the Python server");
    let by_us = stored_by(&ours, b"written by seamfs");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let big_cs = stored_by(&ours, &big);
    let stamps = ["etag", "last-modified"];
    for cs in [&by_python, &by_us, &big_cs] {
        for r in [
            req("GET", format!("/{cs}")),
            req("GET", format!("/{cs}")).header("range", "bytes=10-20"),
            req("PUT", format!("/{cs}")).body("already there"),
            req("GET", "/buffer-length").json(&format!(r#"["{cs}"]"#)),
        ] {
            assert_eq!(
                send(&ours.url, &r, &stamps),
                send(&python.url, &r, &stamps),
                "{r:?}"
            );
        }
    }
    // A corrupt file: the same answer, naming the same path.
    let victim = stored_by(&python, b"to be corrupted");
    let path = buffers.join(&victim[..2]).join(&victim);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&path, b"to be korrupted").unwrap();
    let r = req("GET", format!("/{victim}"));
    let answer = send(&ours.url, &r, &[]);
    assert_eq!(answer, send(&python.url, &r, &[]));
    assert_eq!(answer.status, 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("File corruption"));
}

// ---- bad input ----

/// Send raw bytes on a fresh connection, then close it; returns what the server answered.
fn raw_exchange(url: &str, bytes: &[u8], half_close: bool) -> String {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(bytes).unwrap();
    if half_close {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn bad_uploads_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let buffers = dir.path().join("buffers");
    std::fs::create_dir_all(&buffers).unwrap();
    let ours = Server::seamfs(&buffers, &["--writable"]);
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let cs = sha256(&data);

    // A truncated upload: the connection ends before Content-Length bytes came.
    let head = format!(
        "PUT /{cs} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    let mut truncated = head.clone().into_bytes();
    truncated.extend_from_slice(&data[..1_000_000]);
    raw_exchange(&ours.url, &truncated, true);

    // A client that disconnects mid-PUT without a word.
    {
        let mut stream = TcpStream::connect(ours.url.trim_start_matches("http://")).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&data[..2_500_000]).unwrap();
    }

    // A body that does not match, and a compressed body that is not.
    let wrong = req("PUT", format!("/{cs}")).body(&data[1..]);
    assert_eq!(send(&ours.url, &wrong, &[]).body, b"Incorrect checksum");
    let bad_gzip = req("PUT", format!("/{cs}"))
        .header("content-encoding", "gzip")
        .body(&data[..1000]);
    assert_eq!(
        send(&ours.url, &bad_gzip, &[]).body,
        b"Invalid compressed payload"
    );
    let cut_gzip = req("PUT", format!("/{cs}"))
        .header("content-encoding", "gzip")
        .body(&gzip(&data)[..10_000]);
    assert_eq!(send(&ours.url, &cut_gzip, &[]).body, b"Incorrect checksum");

    // Oversized headers: refused with 431, nothing read further.
    let huge = format!(
        "GET /healthcheck HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let answer = raw_exchange(&ours.url, huge.as_bytes(), false);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // Malformed checksums never reach the disk.
    for path in ["/0ba9", "/zz", &format!("/{}", "g".repeat(64))] {
        assert_eq!(
            send(&ours.url, &req("PUT", path).body("x"), &[]).status,
            400
        );
    }

    // Nothing stored, no temp file left (uploads that broke off are cleaned up at once).
    let deadline = Instant::now() + PATIENCE;
    while files_under(&buffers) != [".HASHSERVER_PREFIX"] {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            files_under(&buffers)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server is still fine, and the real upload works.
    let good = req("PUT", format!("/{cs}")).body(data.clone());
    assert_eq!(send(&ours.url, &good, &[]).status, 200);
    assert_eq!(
        send(&ours.url, &req("GET", format!("/{cs}")), &[]).body,
        data
    );
}

// ---- the command line ----

fn run(program: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(program).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn startup_errors_match_the_python_hashserver() {
    let dir = tempfile::tempdir().unwrap();
    let buffers = dir.path().join("buffers");
    std::fs::create_dir_all(&buffers).unwrap();
    let b = buffers.to_str().unwrap();
    let missing = dir.path().join("missing");
    let m = missing.to_str().unwrap();
    let python = venv_bin(".venv-hashserver", "hashserver");
    let seamfs_as_hashserver = dir.path().join("hashserver");
    std::os::unix::fs::symlink(SEAMFS, &seamfs_as_hashserver).unwrap();
    for (args, message) in [
        (
            vec![b, "--port-range", "5", "1"],
            "--port-range START must be less than or equal to END",
        ),
        (vec![b, "--port", "1", "--port-range", "2", "3"], ""),
        (vec![m], "does not exist"),
        (
            vec![b, "--layout", "weird"],
            "Layout must be 'flat' or 'prefix'",
        ),
        (vec![b, "--hash-algorithm", "md5"], ""),
        (
            vec![b, "--timeout", "0"],
            "--timeout must be a positive number",
        ),
        (
            vec![b, "--lock-timeout", "0"],
            "--lock-timeout must be a positive number",
        ),
    ] {
        let (py_code, py_err) = run(&python, &args);
        let (code, err) = run(&seamfs_as_hashserver, &args);
        assert_eq!(code, py_code, "{args:?}: {err}");
        assert!(
            py_err.contains(message) && err.contains(message),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn the_seamless_config_launch_template_works_through_the_alias() {
    let dir = tempfile::tempdir().unwrap();
    let buffers = dir.path().join("buffers");
    std::fs::create_dir_all(&buffers).unwrap();
    let alias = dir.path().join("hashserver");
    std::os::unix::fs::symlink(SEAMFS, &alias).unwrap();
    let status = dir.path().join("status.json");
    std::fs::write(&status, r#"{"pid": 1, "status": "starting"}"#).unwrap();
    // hashserver --port-range A B --status-file F --timeout T DIR --writable
    let mut child = Command::new(&alias)
        .args(["--port-range", "40000", "48999", "--status-file"])
        .arg(&status)
        .args(["--timeout", "2"])
        .arg(&buffers)
        .arg("--writable")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let port = loop {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<Value>(&text)
            && v["status"] == "running"
        {
            assert_eq!(v["pid"], 1);
            break v["port"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "never running: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let url = format!("http://127.0.0.1:{port}");
    assert_eq!(send(&url, &req("GET", "/healthcheck"), &[]).body, b"OK");
    let put = req("PUT", format!("/{HELLO_CS}")).body(HELLO);
    assert_eq!(send(&url, &put, &[]).status, 200);
    // Idle for --timeout seconds: exits 0 by itself.
    assert!(wait_exit(&mut child).success());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "OK\n");
    assert!(buffers.join(&HELLO_CS[..2]).join(HELLO_CS).exists());
    assert!(buffers.join(".HASHSERVER_PREFIX").exists());
}

// ---- the mount's buffer server ----

/// `seamfs mount MNT --store STORE --no-db --buffer-port PORT`, unmounted on drop.
struct Mount {
    child: Child,
    mnt: PathBuf,
    url: String,
}

impl Mount {
    fn new(mnt: &Path, store: &Path) -> Mount {
        Mount::with(mnt, store, &[])
    }

    fn with(mnt: &Path, store: &Path, extra: &[&str]) -> Mount {
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: the FUSE tests cannot run"
        );
        std::fs::create_dir_all(mnt).unwrap();
        let port = free_port();
        let child = Command::new(SEAMFS)
            .arg("mount")
            .arg(mnt)
            .arg("--store")
            .arg(store)
            .args(["--no-db", "--buffer-port", &port.to_string()])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start seamfs mount");
        let deadline = Instant::now() + PATIENCE;
        while !is_mounted(mnt) {
            assert!(Instant::now() < deadline, "seamfs did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mount {
            child,
            mnt: mnt.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mnt)
                .status();
        }
    }
}

#[test]
fn the_mount_serves_its_store_by_checksum_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount::new(&dir.path().join("mnt"), &dir.path().join("store"));
    round_trips(&mount);
}

#[test]
fn the_mount_serves_buffers_held_in_its_ram_tier() {
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount::with(
        &dir.path().join("mnt"),
        &dir.path().join("store"),
        &["--ram-cache", "64M"],
    );
    round_trips(&mount);
}

/// A buffer PUT over HTTP is a file under by-checksum/; a file written into the mount is
/// served by its checksum.
fn round_trips(mount: &Mount) {
    // A buffer PUT over HTTP is at once a file under by-checksum/.
    let data = b"uploaded by a Seamless worker\n";
    let cs = sha256(data);
    let put = req("PUT", format!("/{cs}")).body(&data[..]);
    assert_eq!(send(&mount.url, &put, &[]).status, 200);
    assert_eq!(
        std::fs::read(mount.mnt.join("by-checksum").join(&cs)).unwrap(),
        data
    );
    // A file written into the mount is served by its checksum.
    let written: Vec<u8> = (0..1_500_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(mount.mnt.join("result.bin"), &written).unwrap();
    let sidecar = std::fs::read_to_string(mount.mnt.join("result.bin.CHECKSUM")).unwrap();
    assert_eq!(sidecar.trim(), sha256(&written));
    let get = req("GET", format!("/{}", sidecar.trim()));
    assert_eq!(send(&mount.url, &get, &[]).body, written);
    let has = req("GET", "/has").json(&format!(r#"["{cs}", "{}"]"#, sidecar.trim()));
    assert_eq!(send(&mount.url, &has, &[]).body, b"[true,true]");
}

#[test]
fn seamless_clients_get_from_the_mount_what_the_python_hashserver_gives() {
    let dir = tempfile::tempdir().unwrap();
    let py_dir = dir.path().join("py");
    std::fs::create_dir_all(&py_dir).unwrap();
    let python = Server::python(&py_dir, &["--writable"]);
    let store = dir.path().join("store");
    let mount = Mount::new(&dir.path().join("mnt"), &store);
    let want = client_run(&python.url, &py_dir);
    let got = client_run(&mount.url, &store.join("buffers"));
    assert_eq!(got, expected_from_ours(want));
    // What the clients stored is a file of the mount.
    let probe = mount
        .mnt
        .join("by-checksum")
        .join(sha256(b"probe buffer\n"));
    assert_eq!(std::fs::read(probe).unwrap(), b"probe buffer\n");
}

#[test]
fn a_taken_port_fails_and_says_so_in_the_status_file() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let status = dir.path().join("status.json");
    std::fs::write(&status, "{}").unwrap();
    let out = Command::new(SEAMFS)
        .arg("hashserver")
        .arg(dir.path())
        .args(["--port", &port, "--status-file"])
        .arg(&status)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&status).unwrap()).unwrap();
    assert_eq!(written["status"], "failed");
}
