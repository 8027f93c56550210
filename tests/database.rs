//! The Seamless database server: `seamfs database` over real HTTP on 127.0.0.1, against the
//! curl transcript of the real seamless-database (tests/interop/appendix_a.json), the real
//! seamless-remote DatabaseClient, and the real Python server on the same SQLite files.
//! The Python reference environment (.venv, made by scripts/setup-python) is required.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use seamfs::Checksum;
use seamfs::db::{BucketProbe, Conflict, Database, DbError, ExpressionKey, JsonMap};
use serde_json::{Value, json};

mod common;
use common::{
    assert_slow_body_refused, assert_slow_head_closed, connect, open_descriptors,
    python_json_lines, python_tool, read_until_closed, repo, rss_mib, wait_until_released,
};

const SEAMFS: &str = env!("CARGO_BIN_EXE_seamfs");
/// Generous bound for a process to do something it should do at once; only a hang exceeds it.
const PATIENCE: Duration = Duration::from_secs(60);

fn cs(c: char) -> String {
    c.to_string().repeat(64)
}

// ---- servers ----

/// A database server process (ours or the Python one), stopped with SIGTERM on drop.
struct Server {
    child: Child,
    url: String,
    _stdout: Option<BufReader<ChildStdout>>,
}

impl Server {
    /// `seamfs database DB --port 0 --host 127.0.0.1 EXTRA...`, once it prints its address.
    fn seamfs(db: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(SEAMFS)
            .arg("database")
            .arg(db)
            .args(["--port", "0", "--host", "127.0.0.1"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start seamfs database");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let url = read_served_url(&mut stdout);
        Server {
            child,
            url,
            _stdout: Some(stdout),
        }
    }

    /// The real seamless-database on a free port, found through its status file.
    fn python(db: &Path) -> Server {
        let status = db.with_extension("status.json");
        std::fs::write(&status, "{}").unwrap();
        let child = Command::new(python_tool("seamless-database"))
            .arg(db)
            .args([
                "--port-range",
                "40000",
                "48999",
                "--host",
                "127.0.0.1",
                "--writable",
                "--status-file",
            ])
            .arg(&status)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Python seamless-database");
        let port = wait_for_running(&status);
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _stdout: None,
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal the server");
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        wait_exit(&mut self.child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

fn read_served_url(stdout: &mut impl BufRead) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("seamfs database exited before serving; its output:\n{seen}");
        }
        if let Some(url) = line
            .trim()
            .strip_prefix("Serving the Seamless database on ")
        {
            return url.to_string();
        }
        seen.push_str(&line);
    }
}

/// Wait for a status file to say `"status": "running"`; returns its port.
fn wait_for_running(status: &Path) -> u16 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(Value::Object(map)) =
            serde_json::from_slice::<Value>(&std::fs::read(status).unwrap_or_default())
            && map.get("status") == Some(&json!("running"))
        {
            return map["port"].as_u64().unwrap() as u16;
        }
        assert!(
            Instant::now() < deadline,
            "the server never reported running in {}",
            status.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait for a process we expect to exit by itself.
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

/// Run `seamfs ARGS` to completion: (exit code, stdout, stderr).
fn run_seamfs(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(SEAMFS).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

// ---- requests ----

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

/// One request: (status, body text).
fn request(url: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rq = client().request(method, format!("{url}{path}"));
    if let Some(body) = body {
        rq = rq.body(body.to_string());
    }
    let resp = rq.send().expect("HTTP request");
    (resp.status().as_u16(), resp.text().unwrap())
}

fn get(url: &str, body: &Value) -> (u16, String) {
    request(url, "GET", "/", Some(&body.to_string()))
}

fn put(url: &str, body: &Value) -> (u16, String) {
    request(url, "PUT", "/", Some(&body.to_string()))
}

struct Case {
    method: String,
    path: String,
    body: Option<String>,
    python: (u16, String),
    ours: (u16, String),
}

fn appendix_a() -> Vec<Case> {
    let text = std::fs::read_to_string(repo().join("tests/interop/appendix_a.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let answer = |v: &Value| {
        (
            v["status"].as_u64().unwrap() as u16,
            v["response"].as_str().unwrap().to_string(),
        )
    };
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            method: c["method"].as_str().unwrap().into(),
            path: c["path"].as_str().unwrap().into(),
            body: c["body"].as_str().map(String::from),
            python: answer(c),
            ours: c.get("ours").map(answer).unwrap_or_else(|| answer(c)),
        })
        .collect()
}

/// Replay the transcript; each answer must be `expected(case)`.
fn replay_transcript(url: &str, expected: impl Fn(&Case) -> &(u16, String)) {
    for (i, case) in appendix_a().iter().enumerate() {
        let got = request(url, &case.method, &case.path, case.body.as_deref());
        assert_eq!(
            &got,
            expected(case),
            "case {i}: {} {} {:?}",
            case.method,
            case.path,
            case.body
        );
    }
}

// ---- the transcript ----

#[test]
fn appendix_a_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("seamless.db");
    let server = Server::seamfs(&db_path, &["--writable"]);
    replay_transcript(&server.url, |c| &c.ours);
    assert!(server.stop().success());
    // A clean stop checkpoints the WAL into the file.
    assert!(!db_path.with_extension("db-wal").exists());

    // The columns are encoded as the Python server encodes them (spec Appendix A dump).
    let conn = rusqlite::Connection::open(&db_path).unwrap();
    let one = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        one("SELECT buffer_info FROM buffer_info"),
        format!(
            "{{\n  \"dtype\": \"<f8\",\n  \"is_json\": false,\n  \"is_utf8\": true,\n  \"json_type\": \"list\",\n  \"length\": null,\n  \"members\": 3,\n  \"shape\": [\n    2,\n    3\n  ],\n  \"str2text\": \"{}\",\n  \"unknown_field\": 3\n}}",
            cs('e')
        )
    );
    assert_eq!(
        one("SELECT metadata FROM meta_data"),
        format!(
            r#"{{"schema_version":1,"tf_checksum":"{}","result_checksum":"{}"}}"#,
            cs('a'),
            cs('c')
        )
    );
    assert_eq!(
        one("SELECT group_concat(path, '|') FROM expression"),
        r#"["x", 0]|[]"#
    );
    assert_eq!(
        one("SELECT freshness_tokens FROM bucket_probe"),
        r#"{"t":2}"#
    );
    // No duplicate rows (Python: 4 rev rows, 3 irreproducible rows).
    assert_eq!(
        one("SELECT CAST(COUNT(*) AS TEXT) FROM rev_transformation"),
        "3"
    );
    assert_eq!(
        one(
            "SELECT group_concat(metadata, '|') FROM irreproducible_transformation WHERE checksum LIKE 'f%'"
        ),
        r#""""#
    );
}

#[test]
fn python_server_gives_the_recorded_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::python(&dir.path().join("seamless.db"));
    replay_transcript(&server.url, |c| &c.python);
}

// ---- the real client ----

/// Output of tests/interop/db_client.py against `url`, one JSON value per call.
fn client_run(url: &str) -> Vec<Value> {
    python_json_lines("db_client.py", &[url.as_ref()])
}

#[test]
fn seamless_remote_client_gets_what_the_python_server_gives() {
    let dir = tempfile::tempdir().unwrap();
    let python = Server::python(&dir.path().join("py.db"));
    let ours = Server::seamfs(&dir.path().join("rs.db"), &["--writable"]);
    let expected = client_run(&python.url);
    let got = client_run(&ours.url);
    // Same tables, columns, types and indexes (plus our one extra index).
    let schema = |name: &str| -> Vec<(String, String)> {
        let conn = rusqlite::Connection::open(dir.path().join(name)).unwrap();
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut ours_schema = schema("rs.db");
    ours_schema.retain(|(name, _)| name != "rev_transformation_checksum");
    assert_eq!(ours_schema, schema("py.db"));
    // The same rows, byte for byte (JSON columns included), but for the duplicate rev row.
    let rows = |name: &str, table: &str| -> Vec<Vec<rusqlite::types::Value>> {
        let conn = rusqlite::Connection::open(dir.path().join(name)).unwrap();
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
            .unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    for table in [
        "transformation",
        "meta_data",
        "bucket_probe",
        "irreproducible_transformation",
    ] {
        assert_eq!(rows("rs.db", table), rows("py.db", table), "{table}");
    }
    assert_eq!(expected.len(), got.len());
    for (mut want, have) in expected.into_iter().zip(got) {
        // Deliberate difference: a result stored twice for one transformation is listed once.
        if want["call"] == "get_rev_transformations" {
            want["result"] = json!([cs('a')]);
        }
        assert_eq!(have, want);
    }
}

// ---- the same files, both servers ----

/// The GET requests of the transcript that the Python server answers without crashing.
fn final_state_queries() -> Vec<String> {
    let mut queries: Vec<String> = appendix_a()
        .into_iter()
        .filter(|c| c.method == "GET" && c.python.0 != 500)
        .filter_map(|c| c.body)
        .collect();
    queries.dedup();
    queries
}

fn answers(url: &str, queries: &[String]) -> Vec<(u16, String)> {
    queries
        .iter()
        .map(|q| request(url, "GET", "/", Some(q)))
        .collect()
}

#[test]
fn a_file_written_by_the_python_server_is_read_by_ours() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("seamless.db");
    let queries = final_state_queries();
    let python = Server::python(&db);
    replay_transcript(&python.url, |c| &c.python);
    let written = answers(&python.url, &queries);
    python.stop();
    let ours = Server::seamfs(&db, &[]);
    assert_eq!(answers(&ours.url, &queries), written);
}

#[test]
fn a_file_written_by_ours_is_served_by_the_python_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("seamless.db");
    let queries = final_state_queries();
    let ours = Server::seamfs(&db, &["--writable"]);
    replay_transcript(&ours.url, |c| &c.ours);
    let written = answers(&ours.url, &queries);
    assert!(ours.stop().success());
    // The Python CLI cannot open a file read-only (spec §5.4), so it opens it writable.
    let python = Server::python(&db);
    assert_eq!(answers(&python.url, &queries), written);
}

/// Multi-row answers come in the Python server's row order (same SQL shapes, same indexes).
#[test]
fn multi_row_answers_come_in_the_python_order() {
    let dir = tempfile::tempdir().unwrap();
    let python = Server::python(&dir.path().join("py.db"));
    let ours = Server::seamfs(&dir.path().join("rs.db"), &["--writable"]);
    let conv = |sem: char, syn: &[char]| {
        json!({"type": "semantic_to_syntactic", "checksum": cs(sem), "celltype": "python", "subcelltype": "t",
               "value": syn.iter().map(|c| cs(*c)).collect::<Vec<_>>()})
    };
    let expr = |input: char, path: Value, celltype: &str| {
        json!({"type": "expression", "checksum": cs(input), "path": path, "celltype": celltype,
               "target_celltype": "plain", "value": cs('9')})
    };
    let puts = [
        conv('e', &['3', '1', '2']),
        conv('f', &['1']),
        conv('d', &['1']),
        expr('c', json!(["b"]), "mixed"),
        expr('a', json!([]), "text"),
        expr('b', json!({"k": [1, "x"]}), "plain"),
        json!({"type": "transformation", "checksum": cs('c'), "value": cs('8')}),
        json!({"type": "transformation", "checksum": cs('a'), "value": cs('8')}),
        json!({"type": "transformation", "checksum": cs('b'), "value": cs('8')}),
        json!({"type": "irreproducible", "checksum": cs('5'), "result": cs('7')}),
        json!({"type": "irreproducible", "checksum": cs('5'), "result": cs('6')}),
    ];
    let gets = [
        json!({"type": "semantic_to_syntactic", "checksum": cs('e'), "celltype": "python", "subcelltype": "t"}),
        json!({"type": "syntactic_to_semantic", "checksum": cs('1'), "celltype": "python", "subcelltype": "t"}),
        json!({"type": "rev_expression", "checksum": cs('9')}),
        json!({"type": "rev_transformations", "checksum": cs('8')}),
        json!({"type": "irreproducible", "checksum": cs('5')}),
    ];
    for server in [&python, &ours] {
        for rq in &puts {
            assert_eq!(put(&server.url, rq), (200, "OK".into()), "{rq}");
        }
    }
    for rq in &gets {
        assert_eq!(get(&ours.url, rq), get(&python.url, rq), "{rq}");
    }
}

// ---- CLI behaviour ----

#[test]
fn read_only_mode_serves_gets_and_refuses_puts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("seamless.db");
    let writer = Server::seamfs(&db, &["--writable"]);
    assert_eq!(
        put(
            &writer.url,
            &json!({"type": "transformation", "checksum": cs('a'), "value": cs('b')})
        )
        .0,
        200
    );
    writer.stop();

    let reader = Server::seamfs(&db, &[]);
    assert_eq!(
        get(
            &reader.url,
            &json!({"type": "transformation", "checksum": cs('a')})
        ),
        (200, cs('b'))
    );
    let refused = (405, "ERROR: Database server is read-only".to_string());
    assert_eq!(
        put(
            &reader.url,
            &json!({"type": "transformation", "checksum": cs('a'), "value": cs('c')})
        ),
        refused
    );
    assert_eq!(request(&reader.url, "PUT", "/", Some("not json")), refused);
    assert_eq!(
        get(
            &reader.url,
            &json!({"type": "transformation", "checksum": cs('a')})
        ),
        (200, cs('b'))
    );

    let missing = dir.path().join("missing.db");
    let (code, _, stderr) = run_seamfs(&["database", missing.to_str().unwrap(), "--port", "0"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("must exist when --writable is not set"),
        "{stderr}"
    );
    assert!(!missing.exists());
}

#[test]
fn status_file_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("seamless.db");
    let status = dir.path().join("status.json");
    // The launcher may create the file after starting the server: it waits for it.
    let mut child = Command::new(SEAMFS)
        .args([
            "database",
            db.to_str().unwrap(),
            "--writable",
            "--port",
            "0",
            "--status-file",
        ])
        .arg(&status)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(
        &status,
        r#"{"workdir": "/x", "log": "/x/log", "status": "starting", "pid": 1}"#,
    )
    .unwrap();
    let port = wait_for_running(&status);
    assert_eq!(
        std::fs::read_to_string(&status).unwrap(),
        format!(
            "{{\"workdir\": \"/x\", \"log\": \"/x/log\", \"status\": \"running\", \"pid\": 1, \"port\": {port}}}\n"
        )
    );
    assert_eq!(
        request(
            &format!("http://127.0.0.1:{port}"),
            "GET",
            "/healthcheck",
            None
        ),
        (200, "OK".into())
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(wait_exit(&mut child).success());

    // Failures: a bad --timeout marks the file failed; a non-object or non-JSON file is refused.
    std::fs::write(&status, "{}").unwrap();
    let (code, _, stderr) = run_seamfs(&[
        "database",
        db.to_str().unwrap(),
        "--writable",
        "--port",
        "0",
        "--timeout",
        "0",
        "--status-file",
        status.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--timeout must be a positive number"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&status).unwrap(),
        "{\"status\": \"failed\"}\n"
    );
    for (contents, message) in [
        ("[1]", "must contain a JSON object"),
        ("nope", "is not valid JSON"),
    ] {
        std::fs::write(&status, contents).unwrap();
        let (code, _, stderr) = run_seamfs(&[
            "database",
            db.to_str().unwrap(),
            "--writable",
            "--port",
            "0",
            "--status-file",
            status.to_str().unwrap(),
        ]);
        assert_eq!(code, 1);
        assert!(stderr.contains(message), "{stderr}");
    }
}

#[test]
fn inactivity_timeout_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::seamfs(
        &dir.path().join("seamless.db"),
        &["--writable", "--timeout", "0.3"],
    );
    assert!(wait_exit(&mut server.child).success());
}

#[test]
fn signals_stop_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for signal in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT] {
        let mut server = Server::seamfs(&dir.path().join("seamless.db"), &["--writable"]);
        assert_eq!(request(&server.url, "GET", "/healthcheck", None).0, 200);
        server.signal(signal);
        assert!(wait_exit(&mut server.child).success(), "{signal}");
    }
}

/// Three consecutive ports below the ephemeral range that are free right now.
fn free_port_triple() -> u16 {
    (21000..29000)
        .step_by(7)
        .find(|&start| {
            (start..start + 3).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        })
        .expect("no free port range")
}

#[test]
fn port_range_picks_free_ports_and_reports_exhaustion() {
    let dir = tempfile::tempdir().unwrap();
    let start = free_port_triple();
    let range = [start.to_string(), (start + 2).to_string()];
    let mut servers = Vec::new();
    let mut ports = Vec::new();
    for i in 0..3 {
        let status = dir.path().join(format!("status{i}.json"));
        std::fs::write(&status, "{}").unwrap();
        let child = Command::new(SEAMFS)
            .args([
                "database",
                dir.path().join("seamless.db").to_str().unwrap(),
                "--writable",
            ])
            .args(["--port-range", &range[0], &range[1], "--status-file"])
            .arg(&status)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        ports.push(wait_for_running(&status));
        servers.push(Server {
            child,
            url: String::new(),
            _stdout: None,
        });
    }
    ports.sort();
    assert_eq!(ports, [start, start + 1, start + 2]);
    let db = dir.path().join("seamless.db");
    let (code, _, stderr) = run_seamfs(&[
        "database",
        db.to_str().unwrap(),
        "--port-range",
        &range[0],
        &range[1],
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "No free port available in range {}-{}",
            range[0], range[1]
        )),
        "{stderr}"
    );

    let (code, _, stderr) =
        run_seamfs(&["database", db.to_str().unwrap(), "--port-range", "10", "5"]);
    assert_eq!(
        (
            code,
            stderr.contains("START must be less than or equal to END")
        ),
        (1, true),
        "{stderr}"
    );
    let (code, _, stderr) = run_seamfs(&[
        "database",
        db.to_str().unwrap(),
        "--port-range",
        "1",
        "70000",
    ]);
    assert_eq!(
        (code, stderr.contains("between 0 and 65535")),
        (1, true),
        "{stderr}"
    );
    let (code, _, _) = run_seamfs(&[
        "database",
        db.to_str().unwrap(),
        "--port",
        "1",
        "--port-range",
        "1",
        "2",
    ]);
    assert_eq!(code, 2);
}

#[test]
fn a_port_in_use_is_an_immediate_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let db = dir.path().join("seamless.db");
    let (code, _, stderr) = run_seamfs(&[
        "database",
        db.to_str().unwrap(),
        "--writable",
        "--port",
        &port,
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("127.0.0.1 port {port} already in use")),
        "{stderr}"
    );
}

#[test]
fn the_seamless_config_launch_template_works_through_the_alias() {
    let dir = tempfile::tempdir().unwrap();
    let alias = dir.path().join("seamless-database");
    std::os::unix::fs::symlink(SEAMFS, &alias).unwrap();
    let status = dir.path().join("status.json");
    std::fs::write(
        &status,
        r#"{"workdir": "w", "log": "l", "command": "c", "uid": 0, "pid": 1, "status": "starting"}"#,
    )
    .unwrap();
    let start = free_port_triple();
    let mut child = Command::new(&alias)
        .args([
            "--port-range",
            &start.to_string(),
            &(start + 2).to_string(),
            "--status-file",
        ])
        .arg(&status)
        .args(["--timeout", "600", "--writable"])
        .arg(dir.path().join("seamless.db"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let port = wait_for_running(&status);
    assert!((start..=start + 2).contains(&port));
    assert_eq!(
        request(
            &format!("http://127.0.0.1:{port}"),
            "GET",
            "/healthcheck",
            None
        ),
        (200, "OK".into())
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(wait_exit(&mut child).success());
}

// ---- protocol details beyond the transcript ----

#[test]
fn protocol_details_and_deliberate_differences() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::seamfs(&dir.path().join("seamless.db"), &["--writable"]);
    let url = server.url.as_str();
    let bad = |m: &str| (400u16, format!("ERROR: {m}"));

    // Headers, HEAD, other paths and methods.
    let resp = client()
        .get(format!("{url}/anything"))
        .body(r#"{"type": "protocol"}"#)
        .send()
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        client()
            .head(format!("{url}/healthcheck"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        request(url, "PATCH", "/", Some("{}")),
        (405, "405: Method Not Allowed".into())
    );
    assert_eq!(
        request(url, "POST", "/healthcheck", None),
        (405, "405: Method Not Allowed".into())
    );

    // Checksums: Python bytes.fromhex rules; wrong length, non-string, null on PUT → 400.
    let spaced = format!(
        "{} {}",
        cs('A').get(..32).unwrap(),
        cs('a').get(..32).unwrap()
    );
    assert_eq!(
        put(
            url,
            &json!({"type": "transformation", "checksum": spaced, "value": cs('B')})
        ),
        (200, "OK".into())
    );
    assert_eq!(
        get(url, &json!({"type": "transformation", "checksum": cs('a')})),
        (200, cs('b'))
    );
    assert_eq!(
        put(
            url,
            &json!({"type": "transformation", "checksum": "ab", "value": cs('b')})
        ),
        bad("Malformed request")
    );
    assert_eq!(
        put(
            url,
            &json!({"type": "transformation", "checksum": null, "value": cs('b')})
        ),
        bad("Malformed request")
    );
    assert_eq!(
        put(
            url,
            &json!({"type": "metadata", "checksum": cs('3'), "result": "44", "value": {}})
        ),
        bad("Malformed PUT metadata request")
    );
    assert_eq!(
        get(
            url,
            &json!({"type": "irreproducible", "checksum": cs('3'), "result": 5})
        ),
        bad("Malformed irreproducible request")
    );
    assert_eq!(
        get(url, &json!({"type": "buffer_info", "checksum": null})),
        (404, "ERROR: Unknown key".into())
    );
    assert_eq!(
        get(
            url,
            &json!({"type": "semantic_to_syntactic", "checksum": null})
        ),
        bad("Malformed semantic-to-syntactic request")
    );
    assert_eq!(
        put(url, &json!({"type": "rev_expression", "checksum": null})),
        bad("Unknown request type")
    );

    // Buffer info: Python's int test lets a bool through as a length; floats are refused.
    let d = cs('d');
    assert_eq!(
        put(
            url,
            &json!({"type": "buffer_info", "checksum": d, "value": {"length": true, "z": "é"}})
        )
        .0,
        200
    );
    assert_eq!(
        put(
            url,
            &json!({"type": "buffer_info", "checksum": d, "value": {"length": 1.5}})
        ),
        bad("Malformed PUT buffer info request")
    );
    assert_eq!(
        get(url, &json!({"type": "buffer_info", "checksum": d})),
        (200, r#"{"length": true, "z": "\u00e9"}"#.into())
    );

    // Execution record given as JSON text, and compared as Python dicts (1 == 1.0).
    let (t, r) = (cs('6'), cs('7'));
    let rec = json!({"schema_version": 1, "tf_checksum": t, "result_checksum": r, "x": 1e5});
    assert_eq!(
        put(
            url,
            &json!({"type": "metadata", "checksum": t, "result": r, "value": rec.to_string()})
        )
        .0,
        200
    );
    let same = json!({"x": 100000, "result_checksum": r, "tf_checksum": t, "schema_version": true});
    assert_eq!(
        put(
            url,
            &json!({"type": "metadata", "checksum": t, "result": r, "value": same})
        ),
        (200, "OK".into())
    );
    assert_eq!(
        get(url, &json!({"type": "metadata", "checksum": t})),
        (
            200,
            format!(
                r#"{{"schema_version": 1, "tf_checksum": "{t}", "result_checksum": "{r}", "x": 100000.0}}"#
            )
        )
    );

    // Expression paths of any JSON shape; a scalar path is a constraint violation.
    let key = json!({"type": "expression", "checksum": cs('c'), "path": {"k": "é"}, "celltype": "mixed", "target_celltype": "plain"});
    let mut with_value = key.clone();
    with_value["value"] = json!(cs('e'));
    assert_eq!(put(url, &with_value).0, 200);
    assert_eq!(get(url, &key), (200, cs('e')));
    with_value["path"] = json!(5);
    assert_eq!(
        put(url, &with_value),
        bad("Malformed expression request (constraint violation)")
    );
    with_value["path"] = json!([]);
    with_value["celltype"] = json!(7);
    assert_eq!(put(url, &with_value), bad("Malformed expression request"));

    // Bucket probes: tokens as JSON text; non-string fields are malformed.
    let probe = json!({"type": "bucket_probe", "bucket_kind": "queue_node", "label": "q", "bucket_checksum": cs('b'),
                       "freshness_tokens": "{\"a\": [1, 2]}", "captured_at": "now"});
    assert_eq!(put(url, &probe).0, 200);
    assert_eq!(
        get(
            url,
            &json!({"type": "bucket_probe", "bucket_kind": "queue_node", "label": "q"})
        )
        .1,
        format!(
            r#"{{"bucket_kind": "queue_node", "label": "q", "bucket_checksum": "{}", "captured_at": "now", "freshness_tokens": {{"a": [1, 2]}}}}"#,
            cs('b')
        )
    );
    assert_eq!(
        get(
            url,
            &json!({"type": "bucket_probe", "bucket_kind": "queue_node", "label": 5})
        ),
        bad("Malformed bucket_probe request")
    );

    // Semantic-to-syntactic: a bad element stores nothing.
    let s2s = json!({"type": "semantic_to_syntactic", "checksum": cs('9'), "celltype": "plain", "subcelltype": "x", "value": [cs('1'), "bad"]});
    assert_eq!(
        put(url, &s2s),
        bad("Malformed PUT semantic-to-syntactic request")
    );
    assert_eq!(get(url, &json!({"type": "semantic_to_syntactic", "checksum": cs('9'), "celltype": "plain", "subcelltype": "x"})).0, 404);

    // Bodies above 16 MiB.
    let huge = format!(
        r#"{{"type": "protocol", "pad": "{}"}}"#,
        "x".repeat(17 << 20)
    );
    assert_eq!(request(url, "PUT", "/", Some(&huge)).0, 413);
    assert_eq!(request(url, "GET", "/", Some(&huge)).0, 413);
}

/// PUTs from many connections at once are applied in batches: every one is answered after
/// it is committed, and each sees the ones before it.
#[test]
fn concurrent_puts_are_all_committed() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("seamless.db"), true).unwrap();
    let server = seamfs::http::spawn(
        db,
        "127.0.0.1",
        0,
        true,
        seamfs::http::Limits::for_this_process(),
    )
    .unwrap();
    let url = server.url();
    let key = |t: usize, i: usize| format!("{:032x}{:032x}", t + 1, i);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let url = url.clone();
            scope.spawn(move || {
                for i in 0..40 {
                    let tf = key(t, i);
                    let rec = json!({"schema_version": 1, "tf_checksum": tf, "result_checksum": cs('e')});
                    assert_eq!(put(&url, &json!({"type": "metadata", "checksum": tf, "result": cs('e'), "value": rec})).0, 200);
                    // Right after the answer, the record is visible, and a different one conflicts.
                    assert_eq!(get(&url, &json!({"type": "transformation", "checksum": tf})), (200, cs('e')));
                    let other = json!({"schema_version": 2, "tf_checksum": tf, "result_checksum": cs('e')});
                    assert_eq!(
                        put(&url, &json!({"type": "metadata", "checksum": tf, "result": cs('e'), "value": other})),
                        (409, "ERROR: Execution record already exists with different metadata".into())
                    );
                }
            });
        }
    });
    let (status, body) = get(
        &url,
        &json!({"type": "rev_transformations", "checksum": cs('e')}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&body).unwrap().len(),
        8 * 40
    );
}

// ---- the library API ----

#[test]
fn library_api_transactions_and_typed_records() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Database>();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seamless.db");
    assert!(matches!(
        Database::open(&path, false),
        Err(DbError::Missing(_))
    ));
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    let err = Database::open(&garbage, false)
        .err()
        .expect("not a database")
        .to_string();
    assert!(
        err.contains("garbage.db") && err.contains("not a database"),
        "{err}"
    );
    let db = Database::open(&path, true).unwrap();
    let a = Checksum::parse(&cs('a')).unwrap();
    let b = Checksum::parse(&cs('b')).unwrap();

    // A caller's own table and a buffer info in one transaction; an Err rolls both back.
    let info: JsonMap = serde_json::from_str(r#"{"length": 3, "is_utf8": true}"#).unwrap();
    db.transaction(|tx| {
        tx.conn().execute_batch(
            "CREATE TABLE IF NOT EXISTS tree (name TEXT PRIMARY KEY, checksum CHAR(64))",
        )?;
        tx.conn()
            .execute("INSERT INTO tree VALUES ('f', ?1)", [a.hex()])?;
        tx.merge_buffer_info(&a, &info)
    })
    .unwrap();
    let failed: Result<(), DbError> = db.transaction(|tx| {
        tx.conn()
            .execute("INSERT INTO tree VALUES ('g', ?1)", [b.hex()])?;
        tx.merge_buffer_info(&b, &info)?;
        Err(DbError::Invalid("changed my mind".into()))
    });
    assert!(failed.is_err());
    let names: i64 = db
        .read(|c| {
            Ok::<_, DbError>(
                c.conn()
                    .query_row("SELECT COUNT(*) FROM tree", [], |r| r.get(0))?,
            )
        })
        .unwrap();
    assert_eq!(names, 1);
    assert_eq!(db.get_buffer_info(&a).unwrap().unwrap(), info);
    assert_eq!(db.get_buffer_info(&b).unwrap(), None);

    // Typed records and conflicts.
    db.set_transformation(&a, &b).unwrap();
    assert_eq!(db.get_transformation(&a).unwrap(), Some(b));
    let record: JsonMap = serde_json::from_value(
        json!({"schema_version": 1, "tf_checksum": a.hex(), "result_checksum": a.hex()}),
    )
    .unwrap();
    match db.set_execution_record(&a, &a, &record) {
        Err(DbError::Conflict(c)) => assert_eq!(c, Conflict::TransformationResultMismatch),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let key = ExpressionKey {
        input: a,
        path: json!(["x"]),
        celltype: "plain".into(),
        target_celltype: "int".into(),
    };
    db.set_expression(&key, &b).unwrap();
    assert_eq!(db.get_rev_expressions(&b).unwrap(), vec![key]);
    let probe = BucketProbe {
        bucket_kind: "node".into(),
        label: "n".into(),
        bucket_checksum: b,
        captured_at: "t".into(),
        freshness_tokens: JsonMap::new(),
    };
    db.set_bucket_probe(&probe).unwrap();
    assert_eq!(db.get_bucket_probe("node", "n").unwrap(), Some(probe));

    // The same database served in-process.
    let server = seamfs::http::spawn(
        db.clone(),
        "127.0.0.1",
        0,
        true,
        seamfs::http::Limits::for_this_process(),
    )
    .unwrap();
    assert_eq!(
        get(
            &server.url(),
            &json!({"type": "transformation", "checksum": a.hex()})
        ),
        (200, b.hex())
    );
    server.stop().unwrap();
}

// ---- broken and hostile clients (issue 13, findings 4 and 7) ----

/// A client trickling its body gets 408 and is closed; one trickling its head, or idle on a
/// keep-alive connection, is closed after the head timeout; a large body sent at a decent rate
/// passes although it takes longer than the body timeout.
#[test]
fn slow_clients_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::seamfs(
        &dir.path().join("seamless.db"),
        &[
            "--writable",
            "--http-head-timeout",
            "1",
            "--http-body-timeout",
            "1",
        ],
    );
    let mut tcp = connect(&server.url);
    tcp.write_all(b"PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{")
        .unwrap();
    assert_slow_body_refused(tcp, b" ");

    assert_slow_head_closed(&server.url, Duration::from_secs(10));

    let mut tcp = connect(&server.url);
    tcp.write_all(b"GET /healthcheck HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let (answer, closed_after) = read_until_closed(&mut tcp);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed_after < Duration::from_secs(10), "{closed_after:?}");

    // 3 MiB in 30 pieces over about 2 s: 1.5 MiB/s, above the 1 MiB/s that extends the deadline.
    let filler = "a".repeat(3 << 20);
    let body = json!({"type": "buffer_info", "checksum": cs('1'), "value": {"filler": filler}})
        .to_string();
    let mut tcp = connect(&server.url);
    let head = format!(
        "PUT / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).unwrap();
    for piece in body.as_bytes().chunks(body.len().div_ceil(30)) {
        tcp.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(66));
    }
    let (answer, _) = read_until_closed(&mut tcp);
    assert!(!answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Over `--http-max-connections`, a client gets a clear 503 at once; a slot freed is usable.
#[test]
fn the_connection_cap_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::seamfs(
        &dir.path().join("seamless.db"),
        &["--writable", "--http-max-connections", "3"],
    );
    let mut held: Vec<_> = (0..3)
        .map(|_| {
            let mut tcp = connect(&server.url);
            tcp.write_all(b"GET /healthcheck HTTP/1.1\r\nhost: x\r\n\r\n")
                .unwrap();
            let mut answer = [0u8; 512];
            let n = tcp.read(&mut answer).unwrap();
            assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
            tcp
        })
        .collect();
    let (status, body) = request(&server.url, "GET", "/healthcheck", None);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("Too many connections (the server takes 3 at once)"),
        "{body}"
    );
    held.pop();
    let deadline = Instant::now() + PATIENCE;
    while request(&server.url, "GET", "/healthcheck", None).0 != 200 {
        assert!(Instant::now() < deadline, "the freed slot never served");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 10 000 connections that each sent a request and then sit idle: the server holds no more
/// than its cap, and once they close, its memory and descriptors are back where they were.
#[test]
fn ten_thousand_idle_connections_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::seamfs(
        &dir.path().join("seamless.db"),
        &["--writable", "--http-max-connections", "4000"],
    );
    let pid = server.child.id();
    assert_eq!(request(&server.url, "GET", "/healthcheck", None).0, 200);
    let (rss_before, fds_before) = (rss_mib(pid), open_descriptors(pid));
    let mut idle = Vec::new();
    for _ in 0..10_000 {
        let mut tcp = connect(&server.url);
        tcp.write_all(b"GET /healthcheck HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        idle.push(tcp);
    }
    let mut served = 0;
    for tcp in &mut idle {
        let mut answer = [0u8; 512];
        if let Ok(n) = tcp.read(&mut answer)
            && answer[..n].starts_with(b"HTTP/1.1 200")
        {
            served += 1;
        }
    }
    assert_eq!(served, 4_000, "the cap is 4000");
    assert!(open_descriptors(pid) < fds_before + 4_100);
    drop(idle);
    wait_until_released(pid, rss_before, fds_before, PATIENCE);
}
