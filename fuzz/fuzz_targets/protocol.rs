//! The seamless-database protocol handler on a real SQLite file: any body, as a GET or a PUT
//! (first byte even or odd), gets an answer that is never a failure on our side (5xx).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use seamfs::db::{Database, DbError};
use seamfs::http::protocol::{Reply, handle_get, handle_put};

fn database() -> &'static Database {
    static DB: OnceLock<(tempfile::TempDir, Database)> = OnceLock::new();
    &DB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::open(dir.path().join("seamless.db"), true).expect("open database");
        (dir, db)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let db = database();
    let reply: Reply = if mode % 2 == 0 {
        db.read(|c| Ok::<_, DbError>(handle_get(c, body))).unwrap()
    } else {
        db.transaction(|c| Ok::<_, DbError>(handle_put(c, body))).unwrap()
    };
    assert!(reply.status < 500, "{} {}", reply.status, reply.body);
});
