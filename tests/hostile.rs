//! Hostile local clients against a real mount and a real `seamfs hashserver` (issue 13): a
//! flood of half-sent HTTP requests or trickling bodies must never take descriptors from the
//! filesystem, nor keep the servers from answering; what the HTTP database accepts from a client
//! must never change what the mount serves.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;
use common::{
    Mount, assert_slow_body_refused, assert_slow_head_closed, connect, files_under, flood,
    free_port, open_descriptors, rss_mib, wait_until_released, xattr,
};
use seamfs::Checksum;
use serde_json::json;

/// The descriptor limit the flooded servers run with: low, so that a flood larger than it would
/// take every descriptor if HTTP connections were not capped.
const SERVER_NOFILE: u64 = 4096;
/// Half-sent requests in a flood (more than `SERVER_NOFILE`; the mount's two ports get half
/// each, which keeps this test process under its own limit of 20 000).
const FLOOD: usize = 10_000;
/// Files the mount holds open at once during the flood.
const FILES: usize = 300;

/// One flood at a time: two would take more descriptors than this test process has.
static FLOODING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A flood may run (a flood test that failed still lets the next one run).
fn one_flood_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    FLOODING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn status_of(url: &str) -> Result<(u16, String), reqwest::Error> {
    let response = reqwest::blocking::Client::new()
        .get(format!("{url}/healthcheck"))
        .send()?;
    Ok((response.status().as_u16(), response.text()?))
}

/// Run `command` with at most `SERVER_NOFILE` descriptors.
fn limit_descriptors(command: &mut Command) {
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: SERVER_NOFILE,
                rlim_max: SERVER_NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// The flooded server tells the next client why it is not served: `503 ... Too many
/// connections`.
fn assert_refused_with_503(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        match status_of(url) {
            Ok(answer) => break answer,
            // All the rejecters busy with the flood: closed unanswered. Retry.
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("{url}: no answer while flooded: {e}"),
        }
    };
    assert_eq!(status, 503, "{url}: {body}");
    assert!(body.contains("Too many connections"), "{url}: {body}");
}

/// The flood's connections time out (head timeout): `url` serves again while they are still
/// open on the client's side.
fn assert_recovers(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(status_of(url), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "{url} never recovered from the flood"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The filesystem has descriptors for hundreds of files open at once: created, written, and
/// read back while all held open.
fn assert_fuse_serves(m: &Mount) {
    let mut writers: Vec<_> = (0..FILES)
        .map(|i| std::fs::File::create(m.path(&format!("f{i}"))).expect("create under the flood"))
        .collect();
    for (i, file) in writers.iter_mut().enumerate() {
        file.write_all(format!("file {i}\n").as_bytes())
            .expect("write under the flood");
    }
    drop(writers);
    let readers: Vec<_> = (0..FILES)
        .map(|i| std::fs::File::open(m.path(&format!("f{i}"))).expect("open under the flood"))
        .collect();
    for (i, file) in readers.iter().enumerate() {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut &*file, &mut text).expect("read under the flood");
        assert_eq!(text, format!("file {i}\n"));
    }
    drop(readers);
    let hex = std::fs::read_to_string(m.path("f7.CHECKSUM")).unwrap();
    assert_eq!(
        std::fs::read(m.path(&format!("by-checksum/{}", hex.trim()))).unwrap(),
        b"file 7\n"
    );
}

/// A buffer PUT whose body trickles in (1 byte per 200 ms, far under the body deadline's rate)
/// is answered `408` with the reason and closed; nothing of it is stored. A head that trickles
/// in is closed once the server's `head_timeout` has passed.
/// Both PUT paths: a small body (read whole before the disk work) and a big one (streamed).
fn assert_slow_put_closed(url: &str, head_timeout: Duration) -> Vec<Checksum> {
    let checksums = [1000, 100_000].map(|len| {
        let body = vec![b'x'; len];
        let checksum = Checksum::of(&body);
        let mut tcp = connect(url);
        let head = format!(
            "PUT /{} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\nx",
            checksum.hex(),
            body.len()
        );
        tcp.write_all(head.as_bytes()).unwrap();
        assert_slow_body_refused(tcp, b"x");
        checksum
    });
    assert_slow_head_closed(url, head_timeout + Duration::from_secs(5));
    checksums.to_vec()
}

/// ~10 000 idle half-sent requests against the mount's servers, half to the HTTP database and
/// half to the buffer server (hashserver protocol), at once: each keeps at most its cap (a
/// quarter of the descriptors), answers the next client 503, and meanwhile the mount writes and
/// reads hundreds of files held open at once without EMFILE; once the flood's connections time
/// out, both serve again. A buffer PUT that trickles in is then answered 408 and closed, with
/// nothing stored, while the filesystem goes on.
#[test]
fn an_http_flood_never_starves_the_mount() {
    let _flooding = one_flood_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    let (db_port, buffer_port) = (free_port(), free_port());
    let db_url = format!("http://127.0.0.1:{db_port}");
    let buffer_url = format!("http://127.0.0.1:{buffer_port}");
    let extra = [
        "--db-port",
        &db_port.to_string(),
        "--buffer-port",
        &buffer_port.to_string(),
        "--http-head-timeout",
        "15",
        "--http-body-timeout",
        "1",
    ];
    let mut command = Mount::command(&mnt, &store, &extra);
    limit_descriptors(&mut command);
    let m = Mount::start(command, mnt, store);
    let pid = m.child.as_ref().unwrap().id();
    assert_eq!(status_of(&db_url).unwrap().0, 200);
    assert_eq!(status_of(&buffer_url).unwrap().0, 200);
    let cap = SERVER_NOFILE as usize / 4;

    let (db_flood, db_refused) = flood(db_port, FLOOD / 2);
    let (buffer_flood, buffer_refused) = flood(buffer_port, FLOOD / 2);
    assert_fuse_serves(&m);
    assert_eq!(
        (db_refused, buffer_refused),
        (0, 0),
        "connections were refused: an accept loop is stuck"
    );
    let held = open_descriptors(pid);
    assert!(
        held < 2 * cap + 200,
        "the mount holds {held} descriptors under the flood (cap {cap} per server)"
    );
    assert_refused_with_503(&db_url);
    assert_refused_with_503(&buffer_url);

    assert_recovers(&db_url);
    assert_recovers(&buffer_url);
    for slow in assert_slow_put_closed(&buffer_url, Duration::from_secs(15)) {
        assert!(
            !m.path(&format!("by-checksum/{}", slow.hex())).exists(),
            "a part of the slow upload was stored"
        );
    }
    std::fs::write(m.path("after"), b"after the flood").unwrap();
    assert_eq!(std::fs::read(m.path("after")).unwrap(), b"after the flood");
    drop((db_flood, buffer_flood));
    m.stop();
}

/// A running `seamfs hashserver`, killed on drop (also when a test fails).
struct Hashserver(Child);

impl Drop for Hashserver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `seamfs hashserver DIR --writable` on `port`, limited to `SERVER_NOFILE` descriptors.
fn hashserver(dir: &Path, port: u16) -> Hashserver {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seamfs"));
    command
        .arg("hashserver")
        .arg(dir)
        .args(["--writable", "--port", &port.to_string()])
        .args(["--http-head-timeout", "5", "--http-body-timeout", "1"]);
    limit_descriptors(&mut command);
    let server = Hashserver(command.spawn().expect("start seamfs hashserver"));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(status_of(&url), Ok((200, _))) {
        assert!(Instant::now() < deadline, "seamfs hashserver never served");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// `seamfs hashserver` under a flood of ~10 000 half-sent requests (more than its descriptor
/// limit): it holds at most its cap, answers the next client 503, serves again once the flood
/// times out and hands the memory and descriptors back when it closes; a trickling PUT body is
/// answered 408 and closed, and leaves no file behind; a complete PUT still works.
#[test]
fn the_hashserver_refuses_floods_and_closes_slow_clients() {
    let _flooding = one_flood_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let server = hashserver(dir.path(), port);
    let pid = server.0.id();
    let before = files_under(dir.path());
    let (rss_before, fds_before) = (rss_mib(pid), open_descriptors(pid));
    let cap = SERVER_NOFILE as usize / 4;

    let (held, refused) = flood(port, FLOOD);
    assert_eq!(
        refused, 0,
        "connections were refused: the accept loop is stuck"
    );
    let open = open_descriptors(pid);
    assert!(
        open < cap + 100,
        "the hashserver holds {open} descriptors under the flood (cap {cap})"
    );
    assert_refused_with_503(&url);
    assert_recovers(&url);
    drop(held);
    wait_until_released(pid, rss_before, fds_before, Duration::from_secs(30));

    assert_slow_put_closed(&url, Duration::from_secs(5));
    assert_eq!(
        files_under(dir.path()),
        before,
        "the slow upload left files"
    );
    let data = b"after the flood\n";
    let checksum = Checksum::of(data);
    let answer = reqwest::blocking::Client::new()
        .put(format!("{url}/{}", checksum.hex()))
        .body(&data[..])
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let got = reqwest::blocking::get(format!("{url}/{}", checksum.hex())).unwrap();
    assert_eq!(got.bytes().unwrap().as_ref(), data);
    drop(server);
}

fn put(url: &str, record: serde_json::Value) {
    let response = reqwest::blocking::Client::new()
        .put(url)
        .body(record.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{record}");
}

fn get(url: &str, query: serde_json::Value) -> String {
    let response = reqwest::blocking::Client::new()
        .get(url)
        .body(query.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{query}");
    response.text().unwrap()
}

/// The attack of issue 13, finding 5: a local process PUTs an `expression` row saying that a
/// text converts to an unrelated buffer, and a `buffer_info` saying that a JSON buffer is a
/// Numpy array. The mount still serves what the buffers are (views and the celltype xattr),
/// also after a restart; HTTP clients still read the records, and the mount's own answers
/// replace the false ones in the shared tables.
#[test]
fn http_records_cannot_poison_the_views() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let extra = ["--db-port", &port.to_string()];
    let m = Mount::on(mnt.clone(), store.clone(), &extra);
    let code = b"x = 1\n";
    let json = b"{\"a\": [1, 2]}\n";
    let secret = b"an unrelated buffer\n";
    for (name, bytes) in [
        ("code.txt", &code[..]),
        ("data.json", json),
        ("secret", secret),
    ] {
        std::fs::write(m.path(name), bytes).unwrap();
    }
    let (code_hex, json_hex, secret_hex) = (
        Checksum::of(code).hex(),
        Checksum::of(json).hex(),
        Checksum::of(secret).hex(),
    );
    let false_expression = json!({"type": "expression", "checksum": code_hex, "path": [],
        "celltype": "text", "target_celltype": "python", "value": secret_hex});
    put(&url, false_expression.clone());
    put(
        &url,
        json!({"type": "buffer_info", "checksum": json_hex, "value": {"is_numpy": true}}),
    );
    // HTTP clients see what was PUT.
    let mut query = false_expression.clone();
    query.as_object_mut().unwrap().remove("value");
    assert_eq!(get(&url, query.clone()), secret_hex);

    let check = |m: &Mount| {
        assert_eq!(
            std::fs::read(m.path(&format!("as-python/{code_hex}"))).unwrap(),
            code
        );
        // The celltype xattr shows only what the mount detected (nothing yet, or plain).
        let celltype = xattr(&m.path("data.json"), "user.seamless.celltype");
        assert!(
            matches!(celltype.as_deref(), None | Some(b"plain")),
            "{celltype:?}"
        );
        let plain = std::fs::read(m.path(&format!("as-plain/{json_hex}"))).unwrap();
        assert_eq!(plain, json);
        assert_eq!(
            xattr(&m.path("data.json"), "user.seamless.celltype").as_deref(),
            Some(&b"plain"[..])
        );
    };
    check(&m);
    // The mount's own answer is shared: it replaced the false row.
    assert_eq!(get(&url, query.clone()), code_hex);
    let info: serde_json::Value = serde_json::from_str(&get(
        &url,
        json!({"type": "buffer_info", "checksum": json_hex}),
    ))
    .unwrap();
    assert_eq!(info["is_numpy"], json!(false), "{info}");

    // Poisoned again, then a restart: the mount still uses only what it worked out itself.
    put(&url, false_expression);
    put(
        &url,
        json!({"type": "buffer_info", "checksum": json_hex, "value": {"is_numpy": true}}),
    );
    m.stop();
    let m = Mount::on(mnt, store, &extra);
    check(&m);
    m.stop();
}
