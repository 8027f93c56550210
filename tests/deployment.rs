//! `seamfs mount --buffers BUFFERDIR --database seamless.db`: a running Seamless deployment (the
//! real Python hashserver 1.1.0 and seamless-database) mounted in place while its services keep
//! running on the same files, in both hashserver layouts; the mount's buffer server beside the
//! Python hashserver on the one buffer directory; and `--read-only`, which leaves both untouched.
//! The Python reference environments (.venv, .venv-hashserver) are required.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mount, free_port, python_tool, sidecar, venv_bin};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// Generous bound for a process to do something it should do at once; only a hang exceeds it.
const PATIENCE: Duration = Duration::from_secs(60);

/// A Python service process, killed on drop.
struct Service {
    child: Child,
    url: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let deadline = Instant::now() + PATIENCE;
        while let Ok(None) = self.child.try_wait() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The real hashserver 1.1.0, writable, on `dir` in `layout`; its URL from the uvicorn line.
fn hashserver(dir: &Path, layout: &str) -> Service {
    let mut child = Command::new(venv_bin(".venv-hashserver", "hashserver"))
        .arg(dir)
        .args([
            "--writable",
            "--layout",
            layout,
            "--port-range",
            "40000",
            "48999",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python hashserver");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "hashserver exited"
        );
        if let Some(rest) = line.split("Uvicorn running on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    Service { child, url }
}

/// The real seamless-database, writable, on `db` (created by it); its port from the status file.
fn database(db: &Path) -> Service {
    let status = db.with_extension("status.json");
    std::fs::write(&status, "{}").unwrap();
    let child = Command::new(python_tool("seamless-database"))
        .arg(db)
        .args(["--port-range", "40000", "48999", "--host", "127.0.0.1"])
        .args(["--writable", "--status-file"])
        .arg(&status)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the Python seamless-database");
    let deadline = Instant::now() + PATIENCE;
    let port = loop {
        let text = std::fs::read(&status).unwrap_or_default();
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&text)
            && map.get("status") == Some(&json!("running"))
        {
            break map["port"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "seamless-database never ran");
        std::thread::sleep(Duration::from_millis(50));
    };
    Service {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn http(method: &str, url: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let client = reqwest::blocking::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let resp = client
        .request(method.parse().unwrap(), url)
        .body(body)
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.bytes().unwrap().to_vec())
}

/// A database protocol request (`GET` or `PUT` with a JSON body); status and text.
fn record(method: &str, url: &str, body: Value) -> (u16, String) {
    let (status, text) = http(method, url, body.to_string().into_bytes());
    (status, String::from_utf8(text).unwrap())
}

/// A deployment in a fresh directory: hashserver on `buffers/` in `layout`, seamless-database on
/// `database/seamless.db`.
struct Deployment {
    dir: tempfile::TempDir,
    layout: String,
    hashserver: Service,
    database: Service,
}

impl Deployment {
    fn start(layout: &str) -> Deployment {
        let dir = tempfile::Builder::new()
            .prefix("deploy-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("buffers")).unwrap();
        std::fs::create_dir(dir.path().join("database")).unwrap();
        let hashserver = hashserver(&dir.path().join("buffers"), layout);
        let database = database(&dir.path().join("database/seamless.db"));
        Deployment {
            dir,
            layout: layout.to_string(),
            hashserver,
            database,
        }
    }

    fn buffers(&self) -> PathBuf {
        self.dir.path().join("buffers")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("database/seamless.db")
    }

    /// Where the hashserver keeps buffer `cs` in the deployment's layout.
    fn buffer_file(&self, cs: &str) -> PathBuf {
        match self.layout.as_str() {
            "flat" => self.buffers().join(cs),
            _ => self.buffers().join(&cs[..2]).join(cs),
        }
    }

    /// Mount it (store in the same directory) with the database on `port`, plus `extra`; without
    /// a buffer server unless `extra` has `--buffer-port`.
    fn mount(&self, port: u16, extra: &[&str]) -> Mount {
        let (buffers, db) = (self.buffers(), self.db());
        let mut args = vec![
            "--buffers",
            buffers.to_str().unwrap(),
            "--database",
            db.to_str().unwrap(),
        ];
        if !extra.contains(&"--buffer-port") {
            args.push("--no-buffer-server");
        }
        let port = port.to_string();
        args.extend(["--db-port", port.as_str()]);
        args.extend(extra);
        Mount::on(
            self.dir.path().join("mnt"),
            self.dir.path().join("store"),
            &args,
        )
    }

    /// PUT `data` into the Python hashserver; returns its checksum.
    fn put_buffer(&self, data: &[u8]) -> String {
        let cs = seamfs::Checksum::of(data).hex();
        let (status, _) = http(
            "PUT",
            &format!("{}/{cs}", self.hashserver.url),
            data.to_vec(),
        );
        assert_eq!(status, 200, "the Python hashserver refused a PUT");
        cs
    }
}

/// The tables, indexes and journal mode of a SQLite file (what "not converted" compares).
fn schema(db: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT type || ' ' || name || ' ' || ifnull(sql, '') FROM sqlite_master ORDER BY name",
        )
        .unwrap();
    let mut rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.push(
        conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap(),
    );
    rows
}

/// Every file under `dir` (relative path → SHA-256 of its bytes), and every directory.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                out.insert(rel + "/", String::new());
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(rel, seamfs::Checksum::of(&bytes).hex());
            }
        }
    }
    out
}

/// `seamfs gc --dry-run ARGS`, which must fail; what it says.
fn gc_refused(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .args(["gc", "--dry-run"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "gc ran");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn in_place_round_trips(layout: &str) {
    let deployment = Deployment::start(layout);
    let db_schema = schema(&deployment.db());
    let from_python = deployment.put_buffer(format!("put by Python ({layout})\n").as_bytes());
    let db_port = free_port();
    let db_url = format!("http://127.0.0.1:{db_port}");
    let (python_db, python_buffers) = (&deployment.database.url, &deployment.hashserver.url);
    let mount = deployment.mount(db_port, &[]);

    // A buffer PUT into the Python hashserver, before and while mounted, is under by-checksum/.
    let while_mounted = deployment.put_buffer(b"put while mounted\n");
    for (cs, text) in [
        (&from_python, format!("put by Python ({layout})\n")),
        (&while_mounted, "put while mounted\n".to_string()),
    ] {
        let read = std::fs::read(mount.path(&format!("by-checksum/{cs}"))).unwrap();
        assert_eq!(read, text.as_bytes());
    }

    // A file written into the mount is fetched from the Python hashserver by checksum, and is
    // stored in the directory's own layout.
    let data = format!("written into the mount ({layout})\n");
    std::fs::write(mount.path("result.txt"), &data).unwrap();
    let cs = std::fs::read_to_string(mount.path("result.txt.CHECKSUM")).unwrap();
    assert_eq!(cs, sidecar(data.as_bytes()));
    let cs = cs.trim().to_string();
    let (status, body) = http("GET", &format!("{python_buffers}/{cs}"), vec![]);
    assert_eq!((status, body), (200, data.clone().into_bytes()));
    let file = deployment.buffer_file(&cs);
    assert!(file.is_file(), "{} missing", file.display());

    // Records put into the Python seamless-database are what the mount's database serves;
    // the BufferInfo the mount recorded for its file is what the Python database serves.
    let tf = "a".repeat(64);
    let put = json!({"type": "transformation", "checksum": tf, "value": cs});
    assert_eq!(record("PUT", python_db, put), (200, "OK".into()));
    let get = json!({"type": "transformation", "checksum": tf});
    assert_eq!(record("GET", &db_url, get.clone()), (200, cs.clone()));
    let info = json!({"type": "buffer_info", "checksum": cs});
    let (status, text) = record("GET", python_db, info.clone());
    assert_eq!(status, 200, "{text}");
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored["length"], json!(data.len()), "{text}");
    // And a record put through the mount is served by the Python database.
    let tf2 = "b".repeat(64);
    let put = json!({"type": "transformation", "checksum": tf2, "value": from_python});
    assert_eq!(record("PUT", &db_url, put), (200, "OK".into()));
    let get2 = json!({"type": "transformation", "checksum": tf2});
    assert_eq!(
        record("GET", python_db, get2.clone()),
        (200, from_python.clone())
    );

    // gc never removes from the deployment's buffer directory.
    let said = gc_refused(&["--mounted".as_ref(), mount.mnt.as_os_str()]);
    assert!(said.contains("deployment"), "{said}");

    // The tree lives in the store's side file: it survives a remount; the store has no
    // seamless.db of its own.
    assert!(mount.stop().success());
    let store = deployment.dir.path().join("store");
    assert!(store.join("seamfs.db").is_file());
    assert!(!store.join("seamless.db").exists());
    let mount = deployment.mount(db_port, &[]);
    assert_eq!(
        std::fs::read_to_string(mount.path("result.txt")).unwrap(),
        data
    );
    assert!(mount.stop().success());

    // Without --database the store is refused (its seamless.db would show an empty tree).
    let said = gc_refused(&[store.as_os_str()]);
    assert!(said.contains("--database"), "{said}");

    // The database file is not converted, and the Python services still work on both files.
    assert_eq!(schema(&deployment.db()), db_schema);
    assert_eq!(record("GET", python_db, get), (200, cs.clone()));
    assert_eq!(record("GET", python_db, get2).0, 200);
    let later = deployment.put_buffer(b"after the mount\n");
    let (status, body) = http("GET", &format!("{python_buffers}/{later}"), vec![]);
    assert_eq!((status, body.as_slice()), (200, &b"after the mount\n"[..]));
}

#[test]
fn a_prefix_layout_deployment_is_mounted_in_place() {
    in_place_round_trips("prefix");
}

#[test]
fn a_flat_layout_deployment_is_mounted_in_place() {
    in_place_round_trips("flat");
}

#[test]
fn a_read_only_mount_leaves_the_deployment_untouched() {
    let deployment = Deployment::start("prefix");
    let text = b"read me\n";
    let cs = deployment.put_buffer(text);
    let tf = "c".repeat(64);
    let put = json!({"type": "transformation", "checksum": tf, "value": cs});
    assert_eq!(
        record("PUT", &deployment.database.url, put),
        (200, "OK".into())
    );
    let buffers_before = snapshot(&deployment.buffers());
    let db_before = snapshot(&deployment.dir.path().join("database"));

    let db_port = free_port();
    let mount = deployment.mount(db_port, &["--read-only"]);
    assert_eq!(
        std::fs::read(mount.path(&format!("by-checksum/{cs}"))).unwrap(),
        text
    );
    let listed: Vec<String> = std::fs::read_dir(mount.path("by-checksum"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed, std::slice::from_ref(&cs));
    // A view is computed (kept in RAM), not recorded.
    let view = std::fs::read(mount.path(&format!("as-text/{cs}"))).unwrap();
    assert_eq!(view, text);
    let get = json!({"type": "transformation", "checksum": tf});
    let db_url = format!("http://127.0.0.1:{db_port}");
    assert_eq!(record("GET", &db_url, get), (200, cs.clone()));
    let refused = std::fs::write(mount.path("new.txt"), b"x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS));
    assert!(mount.stop().success());

    assert_eq!(snapshot(&deployment.buffers()), buffers_before);
    assert_eq!(snapshot(&deployment.dir.path().join("database")), db_before);
}

/// The mount's buffer server and the Python hashserver on one buffer directory: each serves what
/// the other stored, at the hashserver's path, and the mount answers `/has` from the directory as
/// it is now.
fn both_buffer_servers_share_the_directory(layout: &str) {
    let deployment = Deployment::start(layout);
    let (db_port, buffer_port) = (free_port(), free_port());
    let port = buffer_port.to_string();
    let mount = deployment.mount(db_port, &["--buffer-port", &port]);
    let ours = format!("http://127.0.0.1:{buffer_port}");
    let python = &deployment.hashserver.url;

    // A PUT to the mount's port lands where the hashserver keeps it, and the hashserver serves it.
    let data = format!("put to the mount's buffer port ({layout})\n").into_bytes();
    let cs = seamfs::Checksum::of(&data).hex();
    assert_eq!(http("PUT", &format!("{ours}/{cs}"), data.clone()).0, 200);
    let file = deployment.buffer_file(&cs);
    assert_eq!(std::fs::read(&file).unwrap(), data, "{}", file.display());
    assert_eq!(http("GET", &format!("{python}/{cs}"), vec![]), (200, data));

    // A PUT to the hashserver is served by the mount's port.
    let data = format!("put to the Python hashserver ({layout})\n").into_bytes();
    let theirs = deployment.put_buffer(&data);
    assert_eq!(
        http("GET", &format!("{ours}/{theirs}"), vec![]),
        (200, data)
    );

    // `/has` on the mount's port: a buffer the hashserver writes after a "no" is then a "yes".
    let data = format!("written by the hashserver later ({layout})\n").into_bytes();
    let later = seamfs::Checksum::of(&data).hex();
    // (A JSON body needs its content type: without one the hashservers read it as a string.)
    let has = |cs: &str| {
        let resp = reqwest::blocking::Client::new()
            .get(format!("{ours}/has"))
            .json(&json!([cs]))
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    assert_eq!(has(&later), (200, "[false]".into()));
    assert_eq!(deployment.put_buffer(&data), later);
    assert_eq!(has(&later), (200, "[true]".into()));
    assert_eq!(http("GET", &format!("{ours}/{later}"), vec![]), (200, data));
    assert!(mount.stop().success());
}

#[test]
fn a_prefix_layout_deployment_shares_its_buffers_with_the_mount_buffer_server() {
    both_buffer_servers_share_the_directory("prefix");
}

#[test]
fn a_flat_layout_deployment_shares_its_buffers_with_the_mount_buffer_server() {
    both_buffer_servers_share_the_directory("flat");
}
