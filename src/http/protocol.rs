//! The seamless-database request protocol, independent of the HTTP machinery: a GET or PUT JSON
//! body in, a status and a `text/plain` body out, with the Python server's exact texts
//! (spec §5.1, Appendix A). Where the Python server answers 500 for a client's mistake (body not
//! an object, malformed JSON on PUT, a checksum of the wrong length or not a string, a null where
//! a checksum must be stored), this answers 400 with the message the same request with a
//! non-hex checksum gets (docs/compat.md, "Database").

use serde_json::{Map, Value, json};

use crate::checksum::Checksum;
use crate::db::{BucketProbe, Conflict, Conn, Database, DbError, ExpressionKey, JsonMap, pyjson};

/// The answer to one request: HTTP status and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    fn ok(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
        }
    }
    fn json(value: &Value) -> Reply {
        Reply::ok(pyjson::dumps(value))
    }
    fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            body: format!("ERROR: {message}"),
        }
    }
    fn bad(message: &str) -> Reply {
        Reply::error(400, message)
    }
    fn unknown_key() -> Reply {
        Reply::error(404, "Unknown key")
    }
}

/// The protocol version the Python server announces (its package is 2.1.0, the protocol 2.2).
const PROTOCOL: [&str; 3] = ["seamless", "database", "2.2"];

const MALFORMED: &str = "Malformed request";
const OUT_OF_RANGE: &str =
    "Malformed request: a number is beyond the range of a float (JSON has no Infinity)";

/// The 11 request types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Protocol,
    BufferInfo,
    SyntacticToSemantic,
    SemanticToSyntactic,
    Transformation,
    Metadata,
    BucketProbe,
    Expression,
    Irreproducible,
    RevExpression,
    RevTransformations,
}

impl Kind {
    fn from_request(rq: &Map<String, Value>) -> Option<Kind> {
        Some(match rq.get("type")?.as_str()? {
            "protocol" => Kind::Protocol,
            "buffer_info" => Kind::BufferInfo,
            "syntactic_to_semantic" => Kind::SyntacticToSemantic,
            "semantic_to_syntactic" => Kind::SemanticToSyntactic,
            "transformation" => Kind::Transformation,
            "metadata" => Kind::Metadata,
            "bucket_probe" => Kind::BucketProbe,
            "expression" => Kind::Expression,
            "irreproducible" => Kind::Irreproducible,
            "rev_expression" => Kind::RevExpression,
            "rev_transformations" => Kind::RevTransformations,
            _ => return None,
        })
    }
}

/// Parse the body as a JSON object with a known `type`.
fn parse_request(body: &[u8]) -> Result<(Kind, Map<String, Value>), Reply> {
    let Ok(Value::Object(rq)) = serde_json::from_slice::<Value>(body) else {
        return Err(Reply::bad(MALFORMED));
    };
    let kind = Kind::from_request(&rq).ok_or_else(|| Reply::bad(MALFORMED))?;
    Ok((kind, rq))
}

/// Whether a number literal in `value` is a float beyond the range of a double (`1e999`).
/// Python's `json.loads` reads it as `inf` and seamless-database stores `Infinity`, which is
/// not JSON: every strict reader of the record (ours included) would fail on it afterwards, so
/// a PUT carrying one is refused instead (docs/compat.md).
fn has_infinite_number(value: &Value) -> bool {
    match value {
        Value::Number(n) => pyjson::is_infinite_float(n),
        Value::Array(items) => items.iter().any(has_infinite_number),
        Value::Object(map) => map.values().any(has_infinite_number),
        _ => false,
    }
}

/// The request's `checksum`: `Ok(None)` for an explicit null (Python treats it as "no key").
fn request_checksum(rq: &Map<String, Value>) -> Result<Option<Checksum>, Reply> {
    match rq.get("checksum") {
        None => Err(Reply::bad(MALFORMED)),
        Some(Value::Null) => Ok(None),
        Some(v) => checksum_value(v)
            .map(Some)
            .ok_or_else(|| Reply::bad(MALFORMED)),
    }
}

/// A JSON string read as a checksum with Python `bytes.fromhex` rules; anything else is None.
fn checksum_value(v: &Value) -> Option<Checksum> {
    Checksum::parse(v.as_str()?).ok()
}

fn string_field<'a>(rq: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    rq.get(key)?.as_str()
}

/// Answer a GET request body on one of the database's read connections.
pub fn answer_get(db: &Database, body: &[u8]) -> Reply {
    db.read(|conn| Ok::<_, DbError>(handle_get(conn, body)))
        .unwrap_or_else(internal_error)
}

/// Answer a GET request body.
pub fn handle_get(db: &Conn, body: &[u8]) -> Reply {
    let (kind, rq) = match parse_request(body) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let outcome = match kind {
        Kind::Protocol => Ok(Reply::json(&json!(PROTOCOL))),
        Kind::BucketProbe => get_bucket_probe(db, &rq),
        _ => match request_checksum(&rq) {
            Ok(checksum) => get_record(db, kind, checksum, &rq),
            Err(reply) => return reply,
        },
    };
    outcome.unwrap_or_else(internal_error)
}

/// The fields a GET needs besides the checksum, checked before the lookup (so that a null
/// checksum still gets the field errors, as in Python).
enum Lookup {
    Plain,
    Conversion(String, String),
    Expression(String, String, Value),
    Irreproducible(Option<Checksum>),
}

fn lookup_fields(kind: Kind, rq: &Map<String, Value>) -> Result<Lookup, Reply> {
    Ok(match kind {
        Kind::SemanticToSyntactic => {
            let (c, s) = conversion_fields(rq, "Malformed semantic-to-syntactic request")?;
            Lookup::Conversion(c, s)
        }
        Kind::SyntacticToSemantic => {
            let (c, s) = conversion_fields(rq, "Malformed syntactic-to-semantic request")?;
            Lookup::Conversion(c, s)
        }
        Kind::Expression => {
            let (c, t, p) = expression_fields(rq, "Malformed expression request")?;
            Lookup::Expression(c, t, p)
        }
        Kind::Irreproducible => Lookup::Irreproducible(irreproducible_filter(rq)?),
        _ => Lookup::Plain,
    })
}

fn get_record(
    db: &Conn,
    kind: Kind,
    checksum: Option<Checksum>,
    rq: &Map<String, Value>,
) -> Result<Reply, DbError> {
    let lookup = match lookup_fields(kind, rq) {
        Ok(lookup) => lookup,
        Err(reply) => return Ok(reply),
    };
    let Some(cs) = checksum else {
        return Ok(Reply::unknown_key());
    };
    let found = match (kind, lookup) {
        (Kind::Transformation, _) => db.get_transformation(&cs)?.map(|r| Reply::ok(r.hex())),
        (Kind::RevTransformations, _) => non_empty(db.get_rev_transformations(&cs)?).map(|l| checksum_list(&l)),
        (Kind::BufferInfo, _) => db.get_buffer_info(&cs)?.map(|info| Reply::json(&Value::Object(info))),
        (Kind::SemanticToSyntactic, Lookup::Conversion(c, s)) => {
            non_empty(db.get_semantic_to_syntactic(&cs, &c, &s)?).map(|l| checksum_list(&l))
        }
        (Kind::SyntacticToSemantic, Lookup::Conversion(c, s)) => {
            non_empty(db.get_syntactic_to_semantic(&cs, &c, &s)?).map(|l| checksum_list(&l))
        }
        (Kind::Expression, Lookup::Expression(celltype, target_celltype, path)) => {
            let key = ExpressionKey { input: cs, path, celltype, target_celltype };
            db.get_expression(&key)?.map(|r| Reply::ok(r.hex()))
        }
        (Kind::RevExpression, _) => non_empty(db.get_rev_expressions(&cs)?).map(|keys| {
            let list = keys
                .into_iter()
                .map(|k| {
                    json!({"checksum": k.input.hex(), "path": k.path, "celltype": k.celltype,
                           "target_celltype": k.target_celltype, "result": cs.hex()})
                })
                .collect();
            Reply::json(&Value::Array(list))
        }),
        (Kind::Metadata, _) => db.get_execution_record(&cs)?.map(|record| Reply::json(&record)),
        (Kind::Irreproducible, Lookup::Irreproducible(filter)) => {
            non_empty(db.get_irreproducible(&cs, filter.as_ref())?).map(|records| {
                let list = records
                    .into_iter()
                    .map(|r| json!({"checksum": r.checksum.hex(), "result": r.result.hex(), "metadata": r.metadata}))
                    .collect();
                Reply::json(&Value::Array(list))
            })
        }
        _ => unreachable!("protocol and bucket_probe are answered in handle_get; lookup_fields matches kind"),
    };
    Ok(found.unwrap_or_else(Reply::unknown_key))
}

fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

fn checksum_list(list: &[Checksum]) -> Reply {
    Reply::json(&Value::Array(
        list.iter().map(|c| Value::String(c.hex())).collect(),
    ))
}

/// `celltype` and `subcelltype` of a conversion request (strings).
fn conversion_fields(rq: &Map<String, Value>, message: &str) -> Result<(String, String), Reply> {
    match (
        string_field(rq, "celltype"),
        string_field(rq, "subcelltype"),
    ) {
        (Some(c), Some(s)) => Ok((c.to_string(), s.to_string())),
        _ => Err(Reply::bad(message)),
    }
}

/// `celltype`, `target_celltype` (strings) and `path` (any JSON) of an expression request.
fn expression_fields(
    rq: &Map<String, Value>,
    message: &str,
) -> Result<(String, String, Value), Reply> {
    match (
        string_field(rq, "celltype"),
        string_field(rq, "target_celltype"),
        rq.get("path"),
    ) {
        (Some(c), Some(t), Some(p)) => Ok((c.to_string(), t.to_string(), p.clone())),
        _ => Err(Reply::bad(message)),
    }
}

/// The optional `result` filter of an irreproducible GET.
fn irreproducible_filter(rq: &Map<String, Value>) -> Result<Option<Checksum>, Reply> {
    match rq.get("result") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => checksum_value(v)
            .map(Some)
            .ok_or_else(|| Reply::bad("Malformed irreproducible request")),
    }
}

fn get_bucket_probe(db: &Conn, rq: &Map<String, Value>) -> Result<Reply, DbError> {
    let (Some(kind), Some(label)) = (string_field(rq, "bucket_kind"), string_field(rq, "label"))
    else {
        return Ok(Reply::bad("Malformed bucket_probe request"));
    };
    Ok(match db.get_bucket_probe(kind, label)? {
        Some(p) => Reply::json(&json!({
            "bucket_kind": p.bucket_kind, "label": p.label, "bucket_checksum": p.bucket_checksum.hex(),
            "captured_at": p.captured_at, "freshness_tokens": Value::Object(p.freshness_tokens),
        })),
        None => Reply::unknown_key(),
    })
}

/// Answer a PUT request body inside a write transaction. A 5xx reply means the caller must
/// roll back what this request wrote.
pub fn handle_put(db: &Conn, body: &[u8]) -> Reply {
    let (kind, rq) = match parse_request(body) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    if rq.values().any(has_infinite_number) {
        return Reply::bad(OUT_OF_RANGE);
    }
    if kind == Kind::BucketProbe {
        return put_bucket_probe(db, &rq);
    }
    let checksum = match request_checksum(&rq) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    if matches!(
        kind,
        Kind::Protocol | Kind::SyntacticToSemantic | Kind::RevTransformations | Kind::RevExpression
    ) {
        return Reply::bad("Unknown request type");
    }
    let Some(cs) = checksum else {
        return Reply::bad(MALFORMED);
    };
    let outcome = match kind {
        Kind::Transformation => put_transformation(db, &cs, &rq),
        Kind::BufferInfo => put_buffer_info(db, &cs, &rq),
        Kind::SemanticToSyntactic => put_semantic_to_syntactic(db, &cs, &rq),
        Kind::Expression => put_expression(db, &cs, &rq),
        Kind::Metadata => put_metadata(db, &cs, &rq),
        Kind::Irreproducible => put_irreproducible(db, &cs, &rq),
        _ => unreachable!("the PUT-less types are answered above"),
    };
    outcome.unwrap_or_else(internal_error)
}

/// Turn the outcome of a store into a reply: `Invalid` → 400 with the request type's message.
fn stored(outcome: Result<(), DbError>, invalid_message: &str) -> Result<Reply, DbError> {
    match outcome {
        Ok(()) => Ok(Reply::ok("OK")),
        Err(DbError::Invalid(_)) => Ok(Reply::bad(invalid_message)),
        Err(DbError::Conflict(c)) => Ok(conflict(c)),
        Err(e) => Err(e),
    }
}

fn conflict(c: Conflict) -> Reply {
    Reply::error(c.status(), c.message())
}

fn put_transformation(db: &Conn, tf: &Checksum, rq: &Map<String, Value>) -> Result<Reply, DbError> {
    const MESSAGE: &str = "Malformed PUT transformation result request: value must be a checksum";
    let Some(result) = rq.get("value").and_then(checksum_value) else {
        return Ok(Reply::bad(MESSAGE));
    };
    stored(db.set_transformation(tf, &result), MESSAGE)
}

fn put_buffer_info(db: &Conn, cs: &Checksum, rq: &Map<String, Value>) -> Result<Reply, DbError> {
    const MESSAGE: &str = "Malformed PUT buffer info request";
    let Some(Value::Object(info)) = rq.get("value") else {
        return Ok(Reply::bad(MESSAGE));
    };
    stored(db.merge_buffer_info(cs, info), MESSAGE)
}

fn put_semantic_to_syntactic(
    db: &Conn,
    semantic: &Checksum,
    rq: &Map<String, Value>,
) -> Result<Reply, DbError> {
    const MESSAGE: &str = "Malformed PUT semantic-to-syntactic request";
    let Some(Value::Array(items)) = rq.get("value") else {
        return Ok(Reply::bad(MESSAGE));
    };
    let (celltype, subcelltype) = match conversion_fields(rq, MESSAGE) {
        Ok(f) => f,
        Err(reply) => return Ok(reply),
    };
    let Some(syntactic) = items.iter().map(checksum_value).collect::<Option<Vec<_>>>() else {
        return Ok(Reply::bad(MESSAGE));
    };
    stored(
        db.add_semantic_to_syntactic(semantic, &celltype, &subcelltype, &syntactic),
        MESSAGE,
    )
}

fn put_expression(db: &Conn, input: &Checksum, rq: &Map<String, Value>) -> Result<Reply, DbError> {
    const MESSAGE: &str = "Malformed expression request";
    let Some(result) = rq.get("value").and_then(checksum_value) else {
        return Ok(Reply::bad(MESSAGE));
    };
    let (celltype, target_celltype, path) = match expression_fields(rq, MESSAGE) {
        Ok(f) => f,
        Err(reply) => return Ok(reply),
    };
    let key = ExpressionKey {
        input: *input,
        path,
        celltype,
        target_celltype,
    };
    stored(
        db.set_expression(&key, &result),
        "Malformed expression request (constraint violation)",
    )
}

fn put_metadata(db: &Conn, tf: &Checksum, rq: &Map<String, Value>) -> Result<Reply, DbError> {
    const MESSAGE: &str = "Malformed PUT metadata request";
    let (Some(record), Some(result)) = (
        rq.get("value").and_then(object_or_json_text),
        rq.get("result").and_then(checksum_value),
    ) else {
        return Ok(Reply::bad(MESSAGE));
    };
    stored(db.set_execution_record(tf, &result, &record), MESSAGE)
}

fn put_irreproducible(db: &Conn, tf: &Checksum, rq: &Map<String, Value>) -> Result<Reply, DbError> {
    const MESSAGE: &str = "Malformed 'irreproducible' request";
    let Some(result) = rq.get("result").and_then(checksum_value) else {
        return Ok(Reply::bad(MESSAGE));
    };
    stored(db.mark_irreproducible(tf, &result), MESSAGE)
}

fn put_bucket_probe(db: &Conn, rq: &Map<String, Value>) -> Reply {
    const MESSAGE: &str = "Malformed PUT bucket_probe request";
    let probe = (|| {
        Some(BucketProbe {
            bucket_kind: string_field(rq, "bucket_kind")?.to_string(),
            label: string_field(rq, "label")?.to_string(),
            bucket_checksum: checksum_value(rq.get("bucket_checksum")?)?,
            captured_at: string_field(rq, "captured_at")?.to_string(),
            freshness_tokens: object_or_json_text(rq.get("freshness_tokens")?)?,
        })
    })();
    let Some(probe) = probe else {
        return Reply::bad(MESSAGE);
    };
    stored(db.set_bucket_probe(&probe), MESSAGE).unwrap_or_else(internal_error)
}

/// A JSON object, or a string holding the JSON text of one (execution records, tokens).
fn object_or_json_text(v: &Value) -> Option<JsonMap> {
    match v {
        Value::Object(map) => Some(map.clone()),
        Value::String(text) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        },
        _ => None,
    }
}

/// A failure on our side (SQLite, a corrupt row): 500 with the reason, and a log line.
pub fn internal_error(e: DbError) -> Reply {
    tracing::error!("database request failed: {e}");
    Reply::error(500, &format!("Internal server error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Database, DbError};

    fn put(db: &Database, body: &str) -> Reply {
        db.transaction(|c| Ok::<_, DbError>(handle_put(c, body.as_bytes())))
            .unwrap()
    }

    /// Found by the `protocol` fuzz target: a buffer_info PUT with `1e999` stored `Infinity`,
    /// and every later PUT for that checksum failed with 500 "corrupt row".
    #[test]
    fn a_float_beyond_range_is_refused_and_leaves_the_record_readable() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("seamless.db"), true).unwrap();
        let cs = "dd".repeat(32);
        let infinite = format!(
            r#"{{"type": "buffer_info", "checksum": "{cs}", "value": {{"x": [1, {{"y": -1e999}}]}}}}"#
        );
        let reply = put(&db, &infinite);
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert!(reply.body.contains("Infinity"), "{}", reply.body);
        let big_int = format!(
            r#"{{"type": "buffer_info", "checksum": "{cs}", "value": {{"big": 1{}}}}}"#,
            "0".repeat(400)
        );
        assert_eq!(
            put(&db, &big_int).status,
            200,
            "a big integer is a Python int"
        );
        let next = format!(
            r#"{{"type": "buffer_info", "checksum": "{cs}", "value": {{"shape": [4, 3], "x": 1e300}}}}"#
        );
        let reply = put(&db, &next);
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}
