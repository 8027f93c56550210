//! The orjson writer: `orjson.dumps(value, option=OPT_INDENT_2 | OPT_SORT_KEYS)`, which `plain`,
//! `str`, `int`, `float`, `bool`, `checksum` and directory indexes use.
//!
//! Hand-written because checksums depend on every byte: orjson's float layout (spec §2.1), its
//! escapes (DEL, U+2028/2029 raw), its 64-bit int range and 254-level nesting limit, and its error
//! messages, which no JSON crate reproduces (serde_json's float layout changes between versions).

use num_bigint::BigInt;

use super::pyrepr::orjson_float;
use super::{CellError, PyErrorKind, with_stack};
use crate::value::{Key, Value};

/// Containers nested deeper than this make orjson raise "Recursion limit reached".
const MAX_DEPTH: usize = 254;

/// The orjson bytes of `value` (no trailing newline). `unchecksum`: write Checksum objects as
/// their hex, as seamless-core's `unchecksum` does before `plain` serialization; otherwise they
/// are rejected as orjson rejects them.
pub fn write(value: &Value, unchecksum: bool) -> Result<Vec<u8>, CellError> {
    let mut out = Vec::new();
    Writer { unchecksum }.value(value, 0, &mut out)?;
    Ok(out)
}

struct Writer {
    unchecksum: bool,
}

fn type_error(message: impl Into<String>) -> CellError {
    CellError::new(PyErrorKind::TypeError, message)
}

/// orjson's error for a str (value or dict key) holding lone surrogates.
fn surrogates_error() -> CellError {
    type_error("str is not valid UTF-8: surrogates not allowed")
}

fn not_serializable(name: &str) -> CellError {
    type_error(format!("Type is not JSON serializable: {name}"))
}

fn write_int(i: &BigInt, out: &mut Vec<u8>) -> Result<(), CellError> {
    let fits = i64::try_from(i).is_ok() || u64::try_from(i).is_ok();
    if !fits {
        return Err(type_error("Integer exceeds 64-bit range"));
    }
    out.extend_from_slice(i.to_string().as_bytes());
    Ok(())
}

fn newline_indent(depth: usize, out: &mut Vec<u8>) {
    out.push(b'\n');
    out.resize(out.len() + 2 * depth, b' ');
}

fn check_depth(depth: usize) -> Result<(), CellError> {
    if depth > MAX_DEPTH {
        return Err(type_error("Recursion limit reached"));
    }
    Ok(())
}

impl Writer {
    fn value(&self, value: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), CellError> {
        with_stack(|| self.value_inner(value, depth, out))
    }

    fn value_inner(&self, value: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), CellError> {
        match value {
            Value::None => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => write_int(i, out)?,
            Value::Float(x) if x.is_finite() => out.extend_from_slice(orjson_float(*x).as_bytes()),
            Value::Float(_) => out.extend_from_slice(b"null"),
            Value::Str(s) => write_str(s, out),
            Value::Checksum(c) if self.unchecksum => write_str(&c.hex(), out),
            Value::Checksum(_) => return Err(not_serializable("Checksum")),
            Value::Surrogates(_) => return Err(surrogates_error()),
            Value::Bytes(_) => return Err(not_serializable("bytes")),
            Value::Set(_) => return Err(not_serializable("set")),
            Value::Date(d) => write_str(&d.isoformat(), out),
            Value::DateTime(t) => write_str(&t.isoformat('T'), out),
            Value::Array(_) => return Err(not_serializable("numpy.ndarray")),
            Value::Scalar(a) => {
                return Err(not_serializable(&format!("numpy.{}", a.dtype.numpy_name())));
            }
            Value::List(items) | Value::Tuple(items) => self.list(items, depth + 1, out)?,
            Value::Dict(d) => {
                let mut entries = Vec::with_capacity(d.len());
                for (k, v) in d {
                    match k {
                        Key::Str(s) => entries.push((s.as_str(), v)),
                        // A str key, but orjson cannot encode it as UTF-8.
                        Key::Surrogates(_) => return Err(surrogates_error()),
                        _ => return Err(type_error("Dict key must be str")),
                    }
                }
                // Sorted by code point, which is the UTF-8 byte order `str` comparison gives.
                entries.sort_by(|a, b| a.0.cmp(b.0));
                self.dict(&entries, depth + 1, out)?;
            }
        }
        Ok(())
    }

    fn list(&self, items: &[Value], depth: usize, out: &mut Vec<u8>) -> Result<(), CellError> {
        check_depth(depth)?;
        if items.is_empty() {
            out.extend_from_slice(b"[]");
            return Ok(());
        }
        out.push(b'[');
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            newline_indent(depth, out);
            self.value(item, depth, out)?;
        }
        newline_indent(depth - 1, out);
        out.push(b']');
        Ok(())
    }

    fn dict(
        &self,
        entries: &[(&str, &Value)],
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CellError> {
        check_depth(depth)?;
        if entries.is_empty() {
            out.extend_from_slice(b"{}");
            return Ok(());
        }
        out.push(b'{');
        for (n, (k, v)) in entries.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            newline_indent(depth, out);
            write_str(k, out);
            out.extend_from_slice(b": ");
            self.value(v, depth, out)?;
        }
        newline_indent(depth - 1, out);
        out.push(b'}');
        Ok(())
    }
}

/// A JSON string as orjson writes it: short escapes, other C0 controls as `\u00xx`, the rest raw.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Dict;

    fn text(v: &Value) -> String {
        String::from_utf8(write(v, false).unwrap()).unwrap()
    }

    #[test]
    fn nested_and_sorted() {
        let mut inner = Dict::new();
        inner.insert(Key::Str("z".into()), Value::None);
        inner.insert(Key::Str("y".into()), Value::Bool(true));
        let mut d = Dict::new();
        d.insert(Key::Str("b".into()), Value::int(1));
        d.insert(
            Key::Str("a".into()),
            Value::List(vec![Value::int(1), Value::int(2), Value::Dict(inner)]),
        );
        assert_eq!(
            text(&Value::Dict(d)),
            "{\n  \"a\": [\n    1,\n    2,\n    {\n      \"y\": true,\n      \"z\": null\n    }\n  ],\n  \"b\": 1\n}"
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            text(&Value::str(
                "\x00\x01\x08\t\n\x0b\x0c\r\x1f\"\\/\x7f\u{2028}"
            )),
            "\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\\\"\\\\/\x7f\u{2028}\""
        );
    }

    #[test]
    fn limits() {
        assert_eq!(
            write(&Value::Int(BigInt::from(u64::MAX) + 1), false)
                .unwrap_err()
                .message,
            "Integer exceeds 64-bit range"
        );
        let mut v = Value::List(vec![]);
        for _ in 0..253 {
            v = Value::List(vec![v]);
        }
        assert!(write(&v, false).is_ok());
        let v = Value::List(vec![v]);
        assert_eq!(
            write(&v, false).unwrap_err().message,
            "Recursion limit reached"
        );
    }

    #[test]
    fn key_errors_in_insertion_order() {
        // orjson checks keys in insertion order: `{1: 2, '\ud800': 1}` fails on the int key.
        let error = |keys: Vec<Key>| {
            let d: Dict = keys.into_iter().map(|k| (k, Value::int(1))).collect();
            write(&Value::Dict(d), false).unwrap_err().message
        };
        let surrogate = Key::Surrogates(vec![0xd800]);
        assert_eq!(
            error(vec![surrogate.clone(), Key::Int(1.into())]),
            "str is not valid UTF-8: surrogates not allowed"
        );
        assert_eq!(
            error(vec![Key::Int(1.into()), surrogate]),
            "Dict key must be str"
        );
    }
}
