//! Seamless expressions: a buffer of one cell type, optionally indexed by a path, read as
//! another cell type (legacy `_evaluate_expression`, non-deep case; `conversions.md` §6.1–6.2).
//!
//! An empty path is a plain conversion (`convert::convert`). A non-empty path parses the buffer
//! as its cell type, walks the path the way `_get_subpath` does (a missing step gives *no
//! result*, not an error), and writes the sub-value with the target cell type's serializer,
//! without the conversion table and without validation, as the reference does. This module
//! also owns the path's database form: `json.dumps(path)`, the `expression.path` column.

use std::fmt;

use num_bigint::BigInt;
use serde_json::Value as Json;

use crate::buffer::Buffer;
use crate::celltype::convert::matrix::{self, Class, Entry};
use crate::celltype::convert::{self, Departure, Output};
use crate::celltype::json_python::{self, Style};
use crate::celltype::pyrepr::type_name;
use crate::celltype::{self, CellType};
use crate::value::{Key, Layout, NdArray, Value};

/// One step of an expression path: a dict key or a list/array index (negative counts from
/// the end, as in Python).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathItem {
    Key(String),
    Index(i64),
}

/// A path that is not a list of str and int items.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "invalid expression path {path}: {reason}; a path is a JSON list of str keys and int indices, e.g. [\"x\", 0]"
)]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

/// Parse a path as the `Expression` constructor accepts it: `null` or a list of str/int items,
/// or a str holding such a list in JSON (`"[\"x\", 0]"`, the database column form).
pub fn parse_path(json: &Json) -> Result<Vec<PathItem>, PathError> {
    let fail = |reason: String| PathError {
        path: json.to_string(),
        reason,
    };
    match json {
        Json::Null => Ok(Vec::new()),
        Json::String(s) if s.starts_with('[') => {
            let inner: Json =
                serde_json::from_str(s).map_err(|e| fail(format!("not JSON ({e})")))?;
            parse_path(&inner)
        }
        Json::Array(items) => items
            .iter()
            .map(|item| parse_item(item).map_err(fail))
            .collect(),
        _ => Err(fail("not a list".into())),
    }
}

fn parse_item(item: &Json) -> Result<PathItem, String> {
    match item {
        Json::String(s) => Ok(PathItem::Key(s.clone())),
        Json::Number(n) => n
            .as_i64()
            .map(PathItem::Index)
            .ok_or_else(|| format!("the index {n} is not an integer in the 64-bit range")),
        other => Err(format!("the item {other} is neither a str nor an int")),
    }
}

/// The path as JSON (what `db::ExpressionKey::path` holds).
pub fn path_json(path: &[PathItem]) -> Json {
    Json::Array(
        path.iter()
            .map(|item| match item {
                PathItem::Key(k) => Json::String(k.clone()),
                PathItem::Index(i) => Json::from(*i),
            })
            .collect(),
    )
}

/// `json.dumps(path)`: the `expression.path` column text (`[]`, `["x", 0]`, non-ASCII escaped).
pub fn path_text(path: &[PathItem]) -> String {
    let list = Value::List(path.iter().map(item_value).collect());
    // A list of str and int always has a json.dumps form.
    json_python::write(&list, Style::Compact).expect("a path of str and int items is JSON")
}

fn item_value(item: &PathItem) -> Value {
    match item {
        PathItem::Key(k) => Value::Str(k.clone()),
        PathItem::Index(i) => Value::Int(BigInt::from(*i)),
    }
}

/// An evaluated expression.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The result; `None` when the path leads nowhere (a missing key, an index past the end,
    /// or a `null`), which the reference treats as "no result", not as an error.
    pub result: Option<Output>,
    /// Where the evaluation knowingly differs from the reference (empty paths only: the
    /// conversion engine's departures).
    pub departures: Vec<Departure>,
}

/// A failed expression: it names both cell types and the path.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ExpressionError {
    pub from: CellType,
    pub to: CellType,
    /// `json.dumps(path)`.
    pub path: String,
    pub reason: String,
    pub departures: Vec<Departure>,
}

impl fmt::Display for ExpressionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot evaluate the expression with path {} from {} to {}: {}",
            self.path, self.from, self.to, self.reason
        )
    }
}

/// Evaluate the expression `buffer` (of cell type `from`) at `path`, read as `to`.
pub fn evaluate(
    buffer: &Buffer,
    path: &[PathItem],
    from: CellType,
    to: CellType,
) -> Result<Evaluation, ExpressionError> {
    let fail = |reason: String, departures: Vec<Departure>| ExpressionError {
        from,
        to,
        path: path_text(path),
        reason,
        departures,
    };
    // The reference checks the pair even when the path makes the table irrelevant.
    if matches!(matrix::entry(from, to), Some(Entry::Own(Class::Forbidden))) {
        return Err(fail("this conversion is forbidden".into(), Vec::new()));
    }
    if path.is_empty() {
        return match convert::convert(buffer, from, to) {
            Ok(c) => Ok(Evaluation {
                result: Some(c.output),
                departures: c.departures,
            }),
            Err(e) => {
                let reason = match e.step {
                    Some((a, b)) => format!("at the step {a} → {b}: {}", e.reason),
                    None => e.reason,
                };
                Err(fail(reason, e.departures))
            }
        };
    }
    if !matches!(from, CellType::Mixed | CellType::Plain | CellType::Binary) {
        return Err(fail(
            format!("a path can index only into mixed, plain or binary, not {from}"),
            Vec::new(),
        ));
    }
    let value = celltype::deserialize(buffer.as_slice(), from)
        .map_err(|e| fail(format!("the buffer is not valid {from}: {e}"), Vec::new()))?;
    let Some(sub) = get_subpath(value, path).map_err(|e| fail(e, Vec::new()))? else {
        return Ok(Evaluation {
            result: None,
            departures: Vec::new(),
        });
    };
    let bytes = celltype::serialize(&sub, to).map_err(|e| {
        let departures = if writes_numpy_text(&sub, to) {
            vec![Departure::NoNumpyText]
        } else {
            Vec::new()
        };
        fail(
            format!("the sub-value cannot be written as {to}: {e}"),
            departures,
        )
    })?;
    Ok(Evaluation {
        result: Some(Output::Buffer(Buffer::new(bytes))),
        departures: Vec::new(),
    })
}

/// Whether writing `value` as `to` needs Python's `str()` of a numpy array or of a numpy scalar
/// with no Python value (a record), which the codec does not reproduce.
fn writes_numpy_text(value: &Value, to: CellType) -> bool {
    use CellType::*;
    matches!(to, Text | Python | Ipython | Yaml | Str | Bytes) && holds_numpy_text(value)
}

fn holds_numpy_text(value: &Value) -> bool {
    match value {
        Value::Array(_) => true,
        Value::Scalar(a) => a.scalar_to_python().is_none(),
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            items.iter().any(holds_numpy_text)
        }
        Value::Dict(d) => d.values().any(holds_numpy_text),
        _ => false,
    }
}

/// `_get_subpath`: `Ok(None)` when the path leads nowhere; an error where Python raises.
fn get_subpath(value: Value, path: &[PathItem]) -> Result<Option<Value>, String> {
    let mut value = value;
    for item in path {
        let next = match (&value, item) {
            (Value::None, _) => None,
            (Value::List(items) | Value::Tuple(items), PathItem::Index(i)) => {
                resolve_index(*i, items.len())?.map(|n| items[n].clone())
            }
            (Value::Array(a), PathItem::Index(i)) => array_item(a, *i)?,
            (Value::List(_) | Value::Tuple(_) | Value::Array(_), PathItem::Key(_)) => None,
            (Value::Dict(d), PathItem::Key(k)) => d.get(&Key::Str(k.clone())).cloned(),
            (Value::Dict(d), PathItem::Index(i)) => d.get(&Key::Int(BigInt::from(*i))).cloned(),
            (other, _) => {
                return Err(format!(
                    "a '{}' value cannot be indexed with a path",
                    type_name(other)
                ));
            }
        };
        match next {
            Some(v) => value = v,
            None => return Ok(None),
        }
    }
    Ok(match value {
        Value::None => None,
        v => Some(v),
    })
}

/// A Python index into a sequence of `len` items: `None` at or past the end (the reference
/// checks `item >= len` first), an `IndexError` before the start.
fn resolve_index(i: i64, len: usize) -> Result<Option<usize>, String> {
    let len = len as i64;
    if i >= len {
        return Ok(None);
    }
    let n = if i < 0 { i + len } else { i };
    if n < 0 {
        return Err(format!(
            "the index {i} is out of range for a sequence of {len} items"
        ));
    }
    Ok(Some(n as usize))
}

/// `array[i]`: a sub-array, or a numpy scalar for a 1-d array.
fn array_item(a: &NdArray, i: i64) -> Result<Option<Value>, String> {
    let Some((&rows, rest)) = a.shape.split_first() else {
        return Err("a 0-d array cannot be indexed (len() of unsized object)".into());
    };
    let Some(row) = resolve_index(i, rows)? else {
        return Ok(None);
    };
    let size = rest.iter().product::<usize>() * a.dtype.itemsize();
    let sub = NdArray {
        dtype: a.dtype.clone(),
        shape: rest.to_vec(),
        layout: row_layout(a, rest),
        data: a.data.slice(row * size..(row + 1) * size),
    };
    Ok(Some(if rest.is_empty() {
        Value::Scalar(sub)
    } else {
        Value::Array(sub)
    }))
}

/// The layout of a row of `a`: a view with the remaining strides.
fn row_layout(a: &NdArray, rest: &[usize]) -> Layout {
    Layout::of_strides(rest, a.dtype.itemsize(), a.strides().split_off(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(json: &str) -> Vec<PathItem> {
        parse_path(&serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn path_text_is_json_dumps() {
        assert_eq!(path_text(&[]), "[]");
        assert_eq!(path_text(&path(r#"["x", 0, -1]"#)), r#"["x", 0, -1]"#);
        assert_eq!(path_text(&path(r#"["é"]"#)), r#"["\u00e9"]"#);
        assert_eq!(path(r#""[\"a\", 2]""#), path(r#"["a", 2]"#));
        assert!(path(r#"null"#).is_empty());
        assert!(parse_path(&serde_json::json!([1.5])).is_err());
        assert!(parse_path(&serde_json::json!({"a": 1})).is_err());
    }

    /// Rows of Fortran-ordered arrays are strided views; their `binary`/`mixed` buffers are
    /// numpy's (checksums from seamless-core 0.1.4 `serialize_sync(np.asfortranarray(..)[i], ..)`).
    #[test]
    fn rows_of_fortran_arrays_serialize_as_numpy_views() {
        let f2 = "934e554d5059010076007b276465736372273a20273c6938272c2027666f727472616e5f6f72646572273a20547275652c20277368617065273a2028322c2033292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a000000000000000003000000000000000100000000000000040000000000000002000000000000000500000000000000";
        let f3 = "934e554d5059010076007b276465736372273a20273c6934272c2027666f727472616e5f6f72646572273a20547275652c20277368617065273a2028322c20332c2032292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a00000000060000000200000008000000040000000a00000001000000070000000300000009000000050000000b000000";
        let cases = [
            (
                f2,
                0,
                CellType::Binary,
                "eed7c944a674e7e9a3f4baf8393c37b9f169123e13a884a08b151a39da2adef5",
            ),
            (
                f2,
                -1,
                CellType::Mixed,
                "3fe5daa8933719a7e92ff2deb637069d6449a5ed02f3f2a64ee857a891068b98",
            ),
            (
                f3,
                1,
                CellType::Binary,
                "13f5f533ec54a20d9c547bcd66e3949023ae22552db9d94d2f3b20c600d275f9",
            ),
            (
                f3,
                1,
                CellType::Mixed,
                "58ea45a68c2d1f0e1ba92f45d9a0c5d791c173a0dd390e8732121b9c6a260578",
            ),
        ];
        for (hex, index, to, expected) in cases {
            let buffer = Buffer::new(hex::decode(hex).unwrap());
            let e = evaluate(&buffer, &[PathItem::Index(index)], CellType::Binary, to).unwrap();
            assert_eq!(
                e.result.unwrap().checksum().hex(),
                expected,
                "row {index} as {to}"
            );
        }
    }

    #[test]
    fn subpaths_follow_python_indexing() {
        let v =
            celltype::deserialize(br#"{"a": [1, 2, null], "b": "s"}"#, CellType::Plain).unwrap();
        let get = |p: &str| get_subpath(v.clone(), &path(p));
        assert_eq!(get(r#"["a", -3]"#), Ok(Some(Value::int(1))));
        assert_eq!(get(r#"["a", 3]"#), Ok(None));
        assert_eq!(get(r#"["a", 2]"#), Ok(None));
        assert_eq!(get(r#"["a", "x"]"#), Ok(None));
        assert_eq!(get(r#"["missing", 0]"#), Ok(None));
        assert!(get(r#"["a", -4]"#).is_err());
        assert!(get(r#"["b", 0]"#).is_err());
    }
}
