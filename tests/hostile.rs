//! Hostile local clients against a real mount (issue 13): a flood of half-sent HTTP requests
//! must never take descriptors from the filesystem, and what the HTTP database accepts from a
//! client must never change what the mount serves.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

mod common;
use common::{Mount, free_port, open_descriptors, xattr};
use seamfs::Checksum;
use serde_json::json;

/// The descriptor limit the flooded mount runs with: low, so that a flood larger than it would
/// take every descriptor if HTTP connections were not capped.
const MOUNT_NOFILE: u64 = 4096;
/// Half-sent requests in the flood (more than `MOUNT_NOFILE`).
const FLOOD: usize = 10_000;
/// Files the mount holds open at once during the flood.
const FILES: usize = 300;

fn status_of(url: &str) -> Result<(u16, String), reqwest::Error> {
    let response = reqwest::blocking::Client::new()
        .get(format!("{url}/healthcheck"))
        .send()?;
    Ok((response.status().as_u16(), response.text()?))
}

/// ~10 000 idle half-sent requests against the mount's HTTP database: it keeps at most its
/// cap (a quarter of its descriptors), answers the next client 503, and meanwhile the mount
/// writes and reads hundreds of files held open at once without EMFILE; once the flood's
/// connections time out, HTTP serves again.
#[test]
fn an_http_flood_never_starves_the_mount() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, store) = (dir.path().join("mnt"), dir.path().join("store"));
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let extra = ["--db-port", &port.to_string(), "--http-head-timeout", "15"];
    let mut command = Mount::command(&mnt, &store, &extra);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: MOUNT_NOFILE,
                rlim_max: MOUNT_NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let m = Mount::start(command, mnt, store);
    let pid = m.child.as_ref().unwrap().id();
    assert_eq!(status_of(&url).unwrap().0, 200);
    let cap = MOUNT_NOFILE as usize / 4;

    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut flood = Vec::with_capacity(FLOOD);
    let mut refused = 0;
    while flood.len() < FLOOD && refused < 3 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            // A request head that never ends.
            Ok(mut tcp) => {
                let _ = tcp.write_all(b"PUT / HTTP/1.1\r\nhost: x\r\ncontent-le");
                flood.push(tcp);
            }
            Err(_) => refused += 1,
        }
    }

    // The filesystem has descriptors for hundreds of files open at once.
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

    assert_eq!(
        refused, 0,
        "connections were refused: the accept loop is stuck"
    );
    let held = open_descriptors(pid);
    assert!(
        held < cap + 200,
        "the mount holds {held} descriptors under the flood (cap {cap})"
    );

    // The next client is told why it is not served.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        match status_of(&url) {
            Ok(answer) => break answer,
            // All the rejecters busy with the flood: closed unanswered. Retry.
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("no answer while flooded: {e}"),
        }
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Too many connections"), "{body}");

    // The flood's connections time out; HTTP serves again while they are still open here.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(status_of(&url), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "HTTP never recovered from the flood"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(flood);
    m.stop();
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
