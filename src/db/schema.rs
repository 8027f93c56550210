//! The seamless-database 2.1 SQLite schema: the exact DDL peewee creates (same tables, columns,
//! types and index names, in the same order) plus one index, the connection pragmas, and the one
//! migration rule of the Python server (a legacy empty two-column `meta_data` table is dropped
//! and recreated).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::DbError;

/// The DDL, byte for byte as peewee 4.5 emits it for seamless-database 2.1 (alphabetical order).
pub(super) const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS "bucket_probe" ("bucket_kind" VARCHAR(20) NOT NULL, "label" TEXT NOT NULL, "bucket_checksum" CHAR(64) NOT NULL, "captured_at" TEXT NOT NULL, "freshness_tokens" TEXT NOT NULL, PRIMARY KEY ("bucket_kind", "label"));
CREATE INDEX IF NOT EXISTS "bucket_probe_bucket_checksum" ON "bucket_probe" ("bucket_checksum");
CREATE TABLE IF NOT EXISTS "buffer_info" ("checksum" CHAR(64) NOT NULL PRIMARY KEY, "buffer_info" TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS "expression" ("input_checksum" CHAR(64) NOT NULL, "path" VARCHAR(100) NOT NULL, "celltype" VARCHAR(20) NOT NULL, "target_celltype" VARCHAR(20) NOT NULL, "validator" CHAR(64), "validator_language" VARCHAR(20), "result" CHAR(64) NOT NULL, PRIMARY KEY ("input_checksum", "path", "celltype", "target_celltype"));
CREATE INDEX IF NOT EXISTS "expression_result" ON "expression" ("result");
CREATE TABLE IF NOT EXISTS "irreproducible_transformation" ("id" INTEGER NOT NULL PRIMARY KEY, "result" CHAR(64) NOT NULL, "checksum" CHAR(64) NOT NULL, "metadata" TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS "irreproducible_transformation_result" ON "irreproducible_transformation" ("result");
CREATE INDEX IF NOT EXISTS "irreproducible_transformation_checksum" ON "irreproducible_transformation" ("checksum");
CREATE TABLE IF NOT EXISTS "meta_data" ("checksum" CHAR(64) NOT NULL PRIMARY KEY, "result" CHAR(64) NOT NULL, "metadata" TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS "meta_data_result" ON "meta_data" ("result");
CREATE TABLE IF NOT EXISTS "rev_transformation" ("id" INTEGER NOT NULL PRIMARY KEY, "result" CHAR(64) NOT NULL, "checksum" CHAR(64) NOT NULL);
CREATE INDEX IF NOT EXISTS "rev_transformation_result" ON "rev_transformation" ("result");
CREATE TABLE IF NOT EXISTS "syntactic_to_semantic" ("syntactic" CHAR(64) NOT NULL, "celltype" TEXT NOT NULL, "subcelltype" TEXT NOT NULL, "semantic" CHAR(64) NOT NULL, PRIMARY KEY ("syntactic", "celltype", "subcelltype", "semantic"));
CREATE INDEX IF NOT EXISTS "syntactic_to_semantic_syntactic" ON "syntactic_to_semantic" ("syntactic");
CREATE INDEX IF NOT EXISTS "syntactic_to_semantic_semantic" ON "syntactic_to_semantic" ("semantic");
CREATE TABLE IF NOT EXISTS "transformation" ("checksum" CHAR(64) NOT NULL PRIMARY KEY, "result" CHAR(64) NOT NULL);
CREATE INDEX IF NOT EXISTS "transformation_result" ON "transformation" ("result");
"#;

/// One index more than the Python server makes: without it, checking that a (transformation,
/// result) pair is not stored twice scans every row of that result, and popular results have
/// many. The name is the one peewee would give it; the Python server does not mind it.
const EXTRA_DDL: &str = r#"CREATE INDEX IF NOT EXISTS "rev_transformation_checksum" ON "rev_transformation" ("checksum");"#;

/// Pragmas on every connection. The Python server's cache size and constraint settings; but a
/// WAL journal with `synchronous=NORMAL` instead of `delete` + `OFF`, so that readers never wait
/// for the writer and a crash cannot corrupt the file (see docs/compat.md).
const PRAGMAS: &str = "PRAGMA cache_size=-64000; PRAGMA foreign_keys=1; \
    PRAGMA ignore_check_constraints=0; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;";

/// The tables of the DDL: what a deployment's database file must hold (`check_records`).
const TABLES: [&str; 8] = [
    "bucket_probe",
    "buffer_info",
    "expression",
    "irreproducible_transformation",
    "meta_data",
    "rev_transformation",
    "syntactic_to_semantic",
    "transformation",
];

/// The schema name a deployment's database file is attached under.
pub const RECORDS_SCHEMA: &str = "seamless";

/// Settings for any connection to the file.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(PRAGMAS)
}

/// On the writer connection: switch to WAL, apply the migration rule, create what is missing.
pub fn create(conn: &Connection) -> Result<(), DbError> {
    // journal_mode returns a row, so it cannot go through execute_batch.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!("SQLite kept journal mode {mode}: readers may wait for the writer");
    }
    migrate_meta_data(conn)?;
    conn.execute_batch(DDL)?;
    conn.execute_batch(EXTRA_DDL)?;
    Ok(())
}

/// On the writer of a side file (`Database::open_beside`): WAL, and none of the Seamless tables,
/// which must resolve to the attached deployment file. Runs before the attach: an unqualified
/// `journal_mode` would switch every attached file.
pub fn create_side(conn: &Connection) -> Result<(), DbError> {
    let mode: String = conn.query_row("PRAGMA main.journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!("SQLite kept journal mode {mode}: readers may wait for the writer");
    }
    let mut stmt =
        conn.prepare("SELECT 1 FROM main.sqlite_master WHERE type='table' AND name=?1")?;
    for table in TABLES {
        if stmt.exists([table])? {
            return Err(DbError::Schema(format!(
                "the side file holds a Seamless table ({table}); it must hold seamfs's own tables only"
            )));
        }
    }
    Ok(())
}

/// Attach a deployment's database file as `seamless`, read-only unless `writable`. Only the
/// connection's settings apply to it (busy timeout, foreign keys); its journal mode stays what
/// seamless-database chose.
pub fn attach_records(conn: &Connection, file: &Path, writable: bool) -> Result<(), DbError> {
    let mode = if writable { "rw" } else { "ro" };
    let uri = format!("file:{}?mode={mode}", uri_path(file));
    conn.execute(&format!("ATTACH DATABASE ?1 AS {RECORDS_SCHEMA}"), [uri])?;
    Ok(())
}

/// A path as the path part of an SQLite URI: `%`, `?` and `#` would end or change it.
fn uri_path(file: &Path) -> String {
    let mut out = String::new();
    for c in file.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The attached deployment file must already have every table (seamfs does not create them).
pub fn check_records(conn: &Connection, file: &Path) -> Result<(), DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT 1 FROM {RECORDS_SCHEMA}.sqlite_master WHERE type='table' AND name=?1"
    ))?;
    let mut missing = Vec::new();
    for table in TABLES {
        if !stmt.exists([table])? {
            missing.push(table);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(DbError::Schema(format!(
        "--database {}: not a seamless-database file (it lacks the tables {}); \
         start seamless-database --writable on it once, which creates them",
        file.display(),
        missing.join(", ")
    )))
}

/// seamless-database's rule: `meta_data` with exactly (checksum, result, metadata) is current;
/// with exactly (checksum, metadata) and empty it is dropped (and recreated by the DDL); any
/// other shape is an error the user must resolve.
fn migrate_meta_data(conn: &Connection) -> Result<(), DbError> {
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='meta_data'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(());
    }
    let mut stmt = conn.prepare("PRAGMA table_info(meta_data)")?;
    let columns: Vec<String> = stmt
        .query_map([], |r| r.get(1))?
        .collect::<Result<_, _>>()?;
    let mut sorted = columns.clone();
    sorted.sort();
    if sorted == ["checksum", "metadata", "result"] {
        return Ok(());
    }
    if sorted == ["checksum", "metadata"] {
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM meta_data", [], |r| r.get(0))?;
        if rows == 0 {
            conn.execute_batch("DROP TABLE meta_data")?;
            return Ok(());
        }
        return Err(DbError::Schema(
            "Existing legacy 'meta_data' table is non-empty and cannot be upgraded automatically"
                .into(),
        ));
    }
    Err(DbError::Schema(format!(
        "Unsupported schema for 'meta_data': columns={columns:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        configure(&conn).unwrap();
        conn
    }

    #[test]
    fn creates_every_table_and_is_idempotent() {
        let conn = memory();
        create(&conn).unwrap();
        create(&conn).unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type='table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 8);
    }

    #[test]
    fn legacy_meta_data_is_replaced_only_when_empty() {
        let conn = memory();
        conn.execute_batch("CREATE TABLE meta_data (checksum CHAR(64) PRIMARY KEY, metadata TEXT)")
            .unwrap();
        create(&conn).unwrap();
        let cols: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('meta_data')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(cols, 3);

        let conn = memory();
        conn.execute_batch(
            "CREATE TABLE meta_data (checksum CHAR(64) PRIMARY KEY, metadata TEXT);
             INSERT INTO meta_data VALUES ('a', '{}');",
        )
        .unwrap();
        let err = create(&conn).unwrap_err().to_string();
        assert!(err.contains("non-empty"), "{err}");

        let conn = memory();
        conn.execute_batch("CREATE TABLE meta_data (x TEXT)")
            .unwrap();
        assert!(
            create(&conn)
                .unwrap_err()
                .to_string()
                .contains("Unsupported schema")
        );
    }
}
