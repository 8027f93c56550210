//! The record types of seamless-database and their SQL: what each read returns, and the rules
//! the Python server applies when it stores a record (spec §5.1–5.3). Column encodings follow
//! the Python server exactly (`buffer_info` pretty and sorted, `expression.path` as
//! `json.dumps(path)`, JSON columns minified by SQLite's `json()`), so either server reads the
//! other's file. Multi-row reads use the same SQL shape as peewee, so rows come back in the
//! same order. Two deliberate differences: no duplicate `rev_transformation` rows and no
//! duplicate `irreproducible_transformation` rows.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::pyjson;
use super::{Conn, DbError, JsonMap, Result};
use crate::checksum::Checksum;

/// The bucket kinds a `bucket_probe` record may have.
pub const BUCKET_KINDS: [&str; 5] = ["node", "environment", "node_env", "queue", "queue_node"];

/// Celltypes that may be indexed into with a non-empty expression path.
const PATH_CELLTYPES: [&str; 3] = ["mixed", "plain", "binary"];

/// A stored record contradicts a new one. `message()` and `status()` are the Python server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    IrreproducibleExists,
    TransformationResultMismatch,
    MetadataResultMismatch,
    MetadataDiffers,
    NotTheIrreproducibleResult,
    StoredMetadataResultMismatch,
}

impl Conflict {
    pub fn message(&self) -> &'static str {
        match self {
            Conflict::IrreproducibleExists => "Transformation already has irreproducible records",
            Conflict::TransformationResultMismatch => {
                "Transformation result does not match execution record result"
            }
            Conflict::MetadataResultMismatch => {
                "Execution record result does not match stored metadata result"
            }
            Conflict::MetadataDiffers => "Execution record already exists with different metadata",
            Conflict::NotTheIrreproducibleResult => {
                "Transformation does not have the irreproducible result"
            }
            Conflict::StoredMetadataResultMismatch => {
                "Stored metadata result does not match irreproducible result"
            }
        }
    }

    /// HTTP status: 409, except the one the Python server answers with 404.
    pub fn status(&self) -> u16 {
        match self {
            Conflict::NotTheIrreproducibleResult => 404,
            _ => 409,
        }
    }
}

/// The key of an `expression` record. `path` is any JSON value; it is stored as `json.dumps(path)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpressionKey {
    pub input: Checksum,
    pub path: Value,
    pub celltype: String,
    pub target_celltype: String,
}

/// One `irreproducible_transformation` row. `metadata` is the execution record that was
/// stored for the transformation, or the JSON string `""` if there was none.
#[derive(Debug, Clone, PartialEq)]
pub struct IrreproducibleRecord {
    pub checksum: Checksum,
    pub result: Checksum,
    pub metadata: Value,
}

/// A `bucket_probe` record.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketProbe {
    pub bucket_kind: String,
    pub label: String,
    pub bucket_checksum: Checksum,
    pub captured_at: String,
    pub freshness_tokens: JsonMap,
}

/// What is stored about one transformation: its result and its execution record.
struct StoredOutcome {
    result: Option<Checksum>,
    record: Option<StoredRecord>,
}

/// A `meta_data` row: the result it is for and the record's minified JSON text.
struct StoredRecord {
    result: Checksum,
    text: String,
}

impl Conn<'_> {
    // ---- transformation / rev_transformation ----

    pub fn get_transformation(&self, tf: &Checksum) -> Result<Option<Checksum>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT result FROM transformation WHERE checksum = ?1")?;
        let text: Option<String> = stmt.query_row([tf.hex()], |r| r.get(0)).optional()?;
        text.map(|t| stored_checksum("transformation", &t))
            .transpose()
    }

    /// Store (or overwrite) the result of `tf`, and the reverse entry (once per pair).
    pub fn set_transformation(&self, tf: &Checksum, result: &Checksum) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO transformation (checksum, result) VALUES (?1, ?2) \
                 ON CONFLICT(checksum) DO UPDATE SET result = excluded.result",
            )?
            .execute([tf.hex(), result.hex()])?;
        self.ensure_rev_transformation(tf, result)
    }

    /// The transformations recorded as giving `result` (empty if none).
    pub fn get_rev_transformations(&self, result: &Checksum) -> Result<Vec<Checksum>> {
        let mut stmt = self.conn.prepare_cached(
            r#"SELECT "t1"."id", "t1"."result", "t1"."checksum" FROM "rev_transformation" AS "t1" WHERE ("t1"."result" = ?1)"#,
        )?;
        let rows = stmt.query_map([result.hex()], |r| r.get::<_, String>(2))?;
        rows.map(|t| stored_checksum("rev_transformation", &t?))
            .collect()
    }

    fn ensure_rev_transformation(&self, tf: &Checksum, result: &Checksum) -> Result<()> {
        self.conn
            .prepare_cached(
                // `+result`: look the pair up through the checksum index, never by result.
                "INSERT INTO rev_transformation (result, checksum) SELECT ?1, ?2 WHERE NOT EXISTS \
                 (SELECT 1 FROM rev_transformation WHERE checksum = ?2 AND +result = ?1)",
            )?
            .execute([result.hex(), tf.hex()])?;
        Ok(())
    }

    /// The stored transformation result of `tf` and its execution record (result, JSON text).
    fn stored_outcome(&self, tf: &Checksum) -> Result<StoredOutcome> {
        let result = self.get_transformation(tf)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT result, metadata FROM meta_data WHERE checksum = ?1")?;
        let row: Option<(String, String)> = stmt
            .query_row([tf.hex()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let record = match row {
            Some((result, text)) => Some(StoredRecord {
                result: stored_checksum("meta_data", &result)?,
                text,
            }),
            None => None,
        };
        Ok(StoredOutcome { result, record })
    }

    // ---- buffer_info ----

    pub fn get_buffer_info(&self, checksum: &Checksum) -> Result<Option<JsonMap>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT buffer_info FROM buffer_info WHERE checksum = ?1")?;
        let text: Option<String> = stmt.query_row([checksum.hex()], |r| r.get(0)).optional()?;
        text.map(|t| stored_object("buffer_info", &t)).transpose()
    }

    /// Merge `info` into the stored record (`dict.update`: a null overwrites). The known slots
    /// are type-checked as SeamlessBufferInfo does; other keys are stored as they come.
    pub fn merge_buffer_info(&self, checksum: &Checksum, info: &JsonMap) -> Result<()> {
        check_buffer_info(info)?;
        let stored = self.get_buffer_info(checksum)?;
        let mut merged = stored.clone().unwrap_or_default();
        for (key, value) in info {
            merged.insert(key.clone(), value.clone());
        }
        if stored.as_ref() == Some(&merged) {
            // Known already (content stored before): no row to write.
            return Ok(());
        }
        let text = pyjson::dumps_sorted_indent2(&Value::Object(merged));
        self.conn
            .prepare_cached(
                "INSERT INTO buffer_info (checksum, buffer_info) VALUES (?1, ?2) \
                 ON CONFLICT(checksum) DO UPDATE SET buffer_info = excluded.buffer_info",
            )?
            .execute([checksum.hex(), text])?;
        Ok(())
    }

    // ---- semantic_to_syntactic / syntactic_to_semantic ----

    pub fn get_semantic_to_syntactic(
        &self,
        semantic: &Checksum,
        celltype: &str,
        subcelltype: &str,
    ) -> Result<Vec<Checksum>> {
        self.conversion_rows(
            r#"SELECT "t1"."syntactic", "t1"."celltype", "t1"."subcelltype", "t1"."semantic" FROM "syntactic_to_semantic" AS "t1" WHERE ((("t1"."semantic" = ?1) AND ("t1"."celltype" = ?2)) AND ("t1"."subcelltype" = ?3))"#,
            semantic,
            celltype,
            subcelltype,
            0,
        )
    }

    pub fn get_syntactic_to_semantic(
        &self,
        syntactic: &Checksum,
        celltype: &str,
        subcelltype: &str,
    ) -> Result<Vec<Checksum>> {
        self.conversion_rows(
            r#"SELECT "t1"."syntactic", "t1"."celltype", "t1"."subcelltype", "t1"."semantic" FROM "syntactic_to_semantic" AS "t1" WHERE ((("t1"."syntactic" = ?1) AND ("t1"."celltype" = ?2)) AND ("t1"."subcelltype" = ?3))"#,
            syntactic,
            celltype,
            subcelltype,
            3,
        )
    }

    fn conversion_rows(
        &self,
        sql: &str,
        key: &Checksum,
        celltype: &str,
        subcelltype: &str,
        column: usize,
    ) -> Result<Vec<Checksum>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![key.hex(), celltype, subcelltype], |r| {
            r.get::<_, String>(column)
        })?;
        rows.map(|t| stored_checksum("syntactic_to_semantic", &t?))
            .collect()
    }

    /// Record that each of `syntactic` is a syntactic form of `semantic`; known pairs are kept.
    pub fn add_semantic_to_syntactic(
        &self,
        semantic: &Checksum,
        celltype: &str,
        subcelltype: &str,
        syntactic: &[Checksum],
    ) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO syntactic_to_semantic (syntactic, celltype, subcelltype, semantic) \
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for s in syntactic {
            stmt.execute(params![s.hex(), celltype, subcelltype, semantic.hex()])?;
        }
        Ok(())
    }

    // ---- expression / rev_expression ----

    pub fn get_expression(&self, key: &ExpressionKey) -> Result<Option<Checksum>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT result FROM expression WHERE input_checksum = ?1 AND path = ?2 \
             AND celltype = ?3 AND target_celltype = ?4",
        )?;
        let path = pyjson::dumps(&key.path);
        let text: Option<String> = stmt
            .query_row(
                params![key.input.hex(), path, key.celltype, key.target_celltype],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| stored_checksum("expression", &t)).transpose()
    }

    /// Store (or overwrite) the result of an expression, under the Python server's constraints.
    pub fn set_expression(&self, key: &ExpressionKey, result: &Checksum) -> Result<()> {
        let path = pyjson::dumps(&key.path);
        check_expression(key, &path)?;
        self.conn
            .prepare_cached(
                "INSERT INTO expression (input_checksum, path, celltype, target_celltype, result) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(input_checksum, path, celltype, target_celltype) \
                 DO UPDATE SET result = excluded.result",
            )?
            .execute(params![key.input.hex(), path, key.celltype, key.target_celltype, result.hex()])?;
        Ok(())
    }

    /// The expressions recorded as giving `result` (empty if none).
    pub fn get_rev_expressions(&self, result: &Checksum) -> Result<Vec<ExpressionKey>> {
        let mut stmt = self.conn.prepare_cached(
            r#"SELECT "t1"."input_checksum", "t1"."path", "t1"."celltype", "t1"."target_celltype", "t1"."validator", "t1"."validator_language", "t1"."result" FROM "expression" AS "t1" WHERE ("t1"."result" = ?1)"#,
        )?;
        let rows = stmt.query_map([result.hex()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })?;
        rows.map(|row| {
            let (input, path, celltype, target_celltype) = row?;
            Ok(ExpressionKey {
                input: stored_checksum("expression", &input)?,
                path: stored_json("expression", &path)?,
                celltype,
                target_celltype,
            })
        })
        .collect()
    }

    // ---- metadata (execution records) ----

    pub fn get_execution_record(&self, tf: &Checksum) -> Result<Option<Value>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT metadata FROM meta_data WHERE checksum = ?1")?;
        let text: Option<String> = stmt.query_row([tf.hex()], |r| r.get(0)).optional()?;
        text.map(|t| stored_json("meta_data", &t)).transpose()
    }

    /// Store the execution record of `tf` → `result` (spec §5.2): validated, refused with a
    /// `Conflict` if it contradicts what is stored, idempotent for an equal record. Also records
    /// the transformation result and its reverse entry.
    pub fn set_execution_record(
        &self,
        tf: &Checksum,
        result: &Checksum,
        record: &JsonMap,
    ) -> Result<()> {
        check_execution_record(tf, result, record)?;
        if self.has_irreproducible(tf)? {
            return Err(DbError::Conflict(Conflict::IrreproducibleExists));
        }
        let stored = self.stored_outcome(tf)?;
        if stored.result.is_some_and(|r| r != *result) {
            return Err(DbError::Conflict(Conflict::TransformationResultMismatch));
        }
        if let Some(record_row) = &stored.record {
            if record_row.result != *result {
                return Err(DbError::Conflict(Conflict::MetadataResultMismatch));
            }
            let existing = stored_json("meta_data", &record_row.text)?;
            if !pyjson::python_eq(&existing, &Value::Object(record.clone())) {
                return Err(DbError::Conflict(Conflict::MetadataDiffers));
            }
        }
        if stored.result.is_none() {
            self.conn
                .prepare_cached("INSERT INTO transformation (checksum, result) VALUES (?1, ?2)")?
                .execute([tf.hex(), result.hex()])?;
        }
        self.ensure_rev_transformation(tf, result)?;
        if stored.record.is_none() {
            let text = pyjson::dumps(&Value::Object(record.clone()));
            self.conn
                .prepare_cached(
                    "INSERT INTO meta_data (checksum, result, metadata) VALUES (?1, ?2, json(?3))",
                )?
                .execute([tf.hex(), result.hex(), text])?;
        }
        Ok(())
    }

    // ---- irreproducible ----

    fn has_irreproducible(&self, tf: &Checksum) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT 1 FROM irreproducible_transformation WHERE checksum = ?1 LIMIT 1",
        )?;
        Ok(stmt.exists([tf.hex()])?)
    }

    /// The irreproducible records of `tf`, optionally only those with `result` (empty if none).
    pub fn get_irreproducible(
        &self,
        tf: &Checksum,
        result: Option<&Checksum>,
    ) -> Result<Vec<IrreproducibleRecord>> {
        let mut stmt = self.conn.prepare_cached(
            r#"SELECT "t1"."id", "t1"."result", "t1"."checksum", "t1"."metadata" FROM "irreproducible_transformation" AS "t1" WHERE ("t1"."checksum" = ?1)"#,
        )?;
        let rows = stmt.query_map([tf.hex()], |r| {
            Ok((r.get::<_, String>(1)?, r.get::<_, String>(3)?))
        })?;
        let mut records = Vec::new();
        for row in rows {
            let (row_result, metadata) = row?;
            let row_result = stored_checksum("irreproducible_transformation", &row_result)?;
            if result.is_some_and(|r| *r != row_result) {
                continue;
            }
            let metadata = stored_json("irreproducible_transformation", &metadata)?;
            records.push(IrreproducibleRecord {
                checksum: *tf,
                result: row_result,
                metadata,
            });
        }
        Ok(records)
    }

    /// Declare `tf` → `result` irreproducible: keep its execution record in an irreproducible
    /// row (once), and forget the transformation result, its reverse entry and the record.
    pub fn mark_irreproducible(&self, tf: &Checksum, result: &Checksum) -> Result<()> {
        let stored = self.stored_outcome(tf)?;
        if stored.result.is_some_and(|r| r != *result) {
            return Err(DbError::Conflict(Conflict::NotTheIrreproducibleResult));
        }
        if stored
            .record
            .as_ref()
            .is_some_and(|row| row.result != *result)
        {
            return Err(DbError::Conflict(Conflict::StoredMetadataResultMismatch));
        }
        let metadata = stored
            .record
            .map(|row| row.text)
            .unwrap_or_else(|| "\"\"".to_string());
        self.conn
            .prepare_cached(
                "INSERT INTO irreproducible_transformation (result, checksum, metadata) \
                 SELECT ?1, ?2, json(?3) WHERE NOT EXISTS (SELECT 1 FROM irreproducible_transformation \
                 WHERE checksum = ?2 AND result = ?1 AND metadata = json(?3))",
            )?
            .execute([result.hex(), tf.hex(), metadata])?;
        if stored.result.is_some() {
            self.conn
                .prepare_cached("DELETE FROM transformation WHERE checksum = ?1")?
                .execute([tf.hex()])?;
            self.conn
                .prepare_cached(
                    "DELETE FROM rev_transformation WHERE checksum = ?1 AND +result = ?2",
                )?
                .execute([tf.hex(), result.hex()])?;
        }
        self.conn
            .prepare_cached("DELETE FROM meta_data WHERE checksum = ?1")?
            .execute([tf.hex()])?;
        Ok(())
    }

    // ---- bucket_probe ----

    pub fn get_bucket_probe(&self, kind: &str, label: &str) -> Result<Option<BucketProbe>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT bucket_kind, label, bucket_checksum, captured_at, freshness_tokens \
             FROM bucket_probe WHERE bucket_kind = ?1 AND label = ?2",
        )?;
        let row: Option<(String, String, String, String, String)> = stmt
            .query_row([kind, label], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((bucket_kind, label, checksum, captured_at, tokens)) = row else {
            return Ok(None);
        };
        Ok(Some(BucketProbe {
            bucket_kind,
            label,
            bucket_checksum: stored_checksum("bucket_probe", &checksum)?,
            captured_at,
            freshness_tokens: stored_object("bucket_probe", &tokens)?,
        }))
    }

    /// Store (or replace) the probe for (kind, label).
    pub fn set_bucket_probe(&self, probe: &BucketProbe) -> Result<()> {
        check_bucket_probe(probe)?;
        let tokens = pyjson::dumps(&Value::Object(probe.freshness_tokens.clone()));
        self.conn
            .prepare_cached(
                "INSERT INTO bucket_probe (bucket_kind, label, bucket_checksum, captured_at, freshness_tokens) \
                 VALUES (?1, ?2, ?3, ?4, json(?5)) ON CONFLICT(bucket_kind, label) DO UPDATE SET \
                 bucket_checksum = excluded.bucket_checksum, captured_at = excluded.captured_at, \
                 freshness_tokens = excluded.freshness_tokens",
            )?
            .execute(params![probe.bucket_kind, probe.label, probe.bucket_checksum.hex(), probe.captured_at, tokens])?;
        Ok(())
    }
}

// ---- the Python server's rules ----

/// SeamlessBufferInfo's slot checks: `length` an int ≥ 0 (a bool passes, as in Python), the
/// `is_*` slots bools; null is always allowed.
fn check_buffer_info(info: &JsonMap) -> Result<()> {
    const BOOL_SLOTS: [&str; 6] = [
        "is_utf8",
        "is_json",
        "is_json_numeric_array",
        "is_json_numeric_scalar",
        "is_numpy",
        "is_seamless_mixed",
    ];
    if let Some(length) = info.get("length") {
        let ok = match length {
            Value::Null | Value::Bool(_) => true,
            Value::Number(n) => {
                let text = n.to_string();
                !text.contains(['.', 'e', 'E']) && !text.starts_with('-') || text == "-0"
            }
            _ => false,
        };
        if !ok {
            return Err(DbError::Invalid(format!(
                "buffer info length must be an integer >= 0, not {length}"
            )));
        }
    }
    for slot in BOOL_SLOTS {
        if let Some(v) = info.get(slot)
            && !matches!(v, Value::Null | Value::Bool(_))
        {
            return Err(DbError::Invalid(format!(
                "buffer info {slot} must be a boolean, not {v}"
            )));
        }
    }
    Ok(())
}

/// seamless-database's expression constraints: `json.dumps(path)` at most 100 characters, a
/// non-empty path only on mixed/plain/binary, celltype names at most 20 characters.
fn check_expression(key: &ExpressionKey, path_text: &str) -> Result<()> {
    let path_len = match &key.path {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        other => {
            return Err(DbError::Invalid(format!(
                "expression path must be a list, not {other}"
            )));
        }
    };
    let violation = if path_text.len() > 100 {
        Some("the path is longer than 100 characters as JSON")
    } else if path_len > 0 && !PATH_CELLTYPES.contains(&key.celltype.as_str()) {
        Some("a non-empty path needs celltype mixed, plain or binary")
    } else if key.celltype.chars().count() > 20 || key.target_celltype.chars().count() > 20 {
        Some("celltype names are at most 20 characters")
    } else {
        None
    };
    match violation {
        Some(why) => Err(DbError::Invalid(why.into())),
        None => Ok(()),
    }
}

/// The identity checks of an execution record (spec §5.2).
fn check_execution_record(tf: &Checksum, result: &Checksum, record: &JsonMap) -> Result<()> {
    let is_int = |v: &Value| match v {
        Value::Bool(_) => true,
        Value::Number(n) => !n.to_string().contains(['.', 'e', 'E']),
        _ => false,
    };
    let is_str = |v: Option<&Value>, want: &str| matches!(v, Some(Value::String(s)) if s == want);
    if !record.get("schema_version").is_some_and(is_int) {
        return Err(DbError::Invalid("schema_version must be an integer".into()));
    }
    if !is_str(record.get("tf_checksum"), &tf.hex()) {
        return Err(DbError::Invalid(
            "tf_checksum must be the transformation checksum".into(),
        ));
    }
    if !is_str(record.get("result_checksum"), &result.hex()) {
        return Err(DbError::Invalid(
            "result_checksum must be the result checksum".into(),
        ));
    }
    match record.get("checksum_fields") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(fields))
            if fields
                .iter()
                .all(|f| matches!(f, Value::String(s) if !s.is_empty())) =>
        {
            Ok(())
        }
        Some(_) => Err(DbError::Invalid(
            "checksum_fields must be a list of non-empty strings".into(),
        )),
    }
}

fn check_bucket_probe(probe: &BucketProbe) -> Result<()> {
    if !BUCKET_KINDS.contains(&probe.bucket_kind.as_str()) {
        return Err(DbError::Invalid(format!(
            "bucket_kind must be one of {BUCKET_KINDS:?}"
        )));
    }
    if probe.label.is_empty() || probe.captured_at.is_empty() {
        return Err(DbError::Invalid(
            "label and captured_at must be non-empty".into(),
        ));
    }
    Ok(())
}

// ---- reading stored columns ----

fn stored_checksum(table: &'static str, text: &str) -> Result<Checksum> {
    Checksum::parse(text).map_err(|e| DbError::Corrupt {
        table,
        detail: format!("{text:?}: {e}"),
    })
}

fn stored_json(table: &'static str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| DbError::Corrupt {
        table,
        detail: format!("not JSON: {e}"),
    })
}

fn stored_object(table: &'static str, text: &str) -> Result<JsonMap> {
    match stored_json(table, text)? {
        Value::Object(map) => Ok(map),
        _ => Err(DbError::Corrupt {
            table,
            detail: "not a JSON object".into(),
        }),
    }
}
