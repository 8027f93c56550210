//! The Python `json.dumps` writer: pure-plain `mixed` buffers (`indent=2, sort_keys=True`) and the
//! mixed container's form and data headers (compact `", "`/`": "` separators, insertion order).
//!
//! Hand-written because the bytes must equal CPython's: `ensure_ascii` escapes with surrogate
//! pairs, `NaN`/`Infinity`, Python float `repr` (`1e-05`), unbounded ints, Python's key conversion
//! and key sorting rules. No JSON crate writes this dialect.

use super::pyrepr::{PY_RECURSION_LIMIT, float_repr, sorted_keys};
use super::{CellError, PyErrorKind, with_stack};
use crate::value::{Key, Value};

/// The two `json.dumps` settings seamless-core uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `json.dumps(v, sort_keys=True, indent=2)`.
    IndentedSorted,
    /// `json.dumps(v)`: one line, keys in insertion order.
    Compact,
}

/// The `json.dumps` text of `value`.
pub fn write(value: &Value, style: Style) -> Result<String, CellError> {
    let mut out = String::new();
    Writer { style }.value(value, 0, &mut out)?;
    Ok(out)
}

struct Writer {
    style: Style,
}

fn not_serializable(name: &str) -> CellError {
    // The message of seamless's `default` hook, which sees every type json cannot write.
    CellError::new(
        PyErrorKind::TypeError,
        format!("{name} is not JSON serializable"),
    )
}

/// `json`'s float text: Python repr, with `NaN`/`Infinity`/`-Infinity` for the non-finite values.
pub fn float_text(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        float_repr(x)
    }
}

/// A dict key as `json.dumps` turns it into a string, as code points (a str key may hold lone
/// surrogates, which `json.dumps` writes as `\udXXX` escapes).
fn key_text(k: &Key) -> Result<Vec<u32>, CellError> {
    let text: String = match k {
        Key::Surrogates(units) => return Ok(units.clone()),
        Key::Str(s) => s.clone(),
        Key::Int(i) => i.to_string(),
        Key::Float(bits) => float_text(f64::from_bits(*bits)),
        Key::Bool(b) => if *b { "true" } else { "false" }.into(),
        Key::None => "null".into(),
        Key::Bytes(_) => return Err(bad_key("bytes")),
        Key::Date(_) => return Err(bad_key("datetime.date")),
        Key::DateTime(_) => return Err(bad_key("datetime.datetime")),
        Key::Other(name) => return Err(bad_key(name)),
    };
    Ok(text.chars().map(|c| c as u32).collect())
}

/// `json.dumps`'s error for a dict key of an unsupported type.
fn bad_key(name: &str) -> CellError {
    CellError::new(
        PyErrorKind::TypeError,
        format!("keys must be str, int, float, bool or None, not {name}"),
    )
}

impl Writer {
    fn value(&self, v: &Value, depth: usize, out: &mut String) -> Result<(), CellError> {
        with_stack(|| self.value_inner(v, depth, out))
    }

    fn value_inner(&self, v: &Value, depth: usize, out: &mut String) -> Result<(), CellError> {
        match v {
            Value::None => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(x) => out.push_str(&float_text(*x)),
            Value::Str(s) => write_str(s.chars().map(|c| c as u32), out),
            Value::Surrogates(u) => write_str(u.iter().copied(), out),
            Value::Checksum(c) => write_str(c.hex().chars().map(|c| c as u32), out),
            // seamless's `default` hook turns numpy numbers into Python numbers.
            Value::Scalar(a) => match a.scalar_to_python() {
                Some(Value::Bool(_)) | None => return Err(not_serializable(&a.dtype.numpy_name())),
                Some(p) => self.value(&p, depth, out)?,
            },
            Value::Bytes(_) => return Err(not_serializable("bytes")),
            Value::Set(_) => return Err(not_serializable("set")),
            Value::Date(_) => return Err(not_serializable("date")),
            Value::DateTime(_) => return Err(not_serializable("datetime")),
            Value::Array(_) => return Err(not_serializable("ndarray")),
            Value::List(items) | Value::Tuple(items) => self.list(items, depth + 1, out)?,
            Value::Dict(d) => {
                let keys: Vec<&Key> = match self.style {
                    Style::IndentedSorted => sorted_keys(d.keys())?,
                    Style::Compact => d.keys().collect(),
                };
                let entries = keys
                    .into_iter()
                    .map(|k| Ok((key_text(k)?, &d[k])))
                    .collect::<Result<Vec<_>, CellError>>()?;
                self.dict(&entries, depth + 1, out)?;
            }
        }
        Ok(())
    }

    fn open(&self, depth: usize, out: &mut String) -> Result<(), CellError> {
        if depth > PY_RECURSION_LIMIT {
            return Err(CellError::new(
                PyErrorKind::RecursionError,
                "maximum recursion depth exceeded while encoding a JSON object",
            ));
        }
        if self.style == Style::IndentedSorted {
            newline_indent(depth, out);
        }
        Ok(())
    }

    fn separator(&self, depth: usize, out: &mut String) {
        match self.style {
            Style::IndentedSorted => {
                out.push(',');
                newline_indent(depth, out);
            }
            Style::Compact => out.push_str(", "),
        }
    }

    fn close(&self, depth: usize, out: &mut String) {
        if self.style == Style::IndentedSorted {
            newline_indent(depth - 1, out);
        }
    }

    fn list(&self, items: &[Value], depth: usize, out: &mut String) -> Result<(), CellError> {
        if items.is_empty() {
            out.push_str("[]");
            return Ok(());
        }
        out.push('[');
        self.open(depth, out)?;
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                self.separator(depth, out);
            }
            self.value(item, depth, out)?;
        }
        self.close(depth, out);
        out.push(']');
        Ok(())
    }

    fn dict(
        &self,
        entries: &[(Vec<u32>, &Value)],
        depth: usize,
        out: &mut String,
    ) -> Result<(), CellError> {
        if entries.is_empty() {
            out.push_str("{}");
            return Ok(());
        }
        out.push('{');
        self.open(depth, out)?;
        for (n, (k, v)) in entries.iter().enumerate() {
            if n > 0 {
                self.separator(depth, out);
            }
            write_str(k.iter().copied(), out);
            out.push_str(": ");
            self.value(v, depth, out)?;
        }
        self.close(depth, out);
        out.push('}');
        Ok(())
    }
}

fn newline_indent(depth: usize, out: &mut String) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// A JSON string with `ensure_ascii`: printable ASCII raw, short escapes, everything else as
/// lower-case `\uXXXX` per UTF-16 unit.
fn write_str(chars: impl Iterator<Item = u32>, out: &mut String) {
    out.push('"');
    for c in chars {
        match c {
            0x22 => out.push_str("\\\""),
            0x5c => out.push_str("\\\\"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            0x09 => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            0x20..=0x7e => out.push(c as u8 as char),
            0x10000.. => {
                let v = c - 0x10000;
                out.push_str(&format!(
                    "\\u{:04x}\\u{:04x}",
                    0xd800 + (v >> 10),
                    0xdc00 + (v & 0x3ff)
                ));
            }
            _ => out.push_str(&format!("\\u{c:04x}")),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Dict;

    #[test]
    fn indented_sorted_and_compact() {
        let mut d = Dict::new();
        d.insert(Key::Str("é".into()), Value::str("ü😀"));
        d.insert(
            Key::Str("a".into()),
            Value::List(vec![Value::Float(1e-5), Value::Float(f64::NAN)]),
        );
        let v = Value::Dict(d);
        assert_eq!(
            write(&v, Style::IndentedSorted).unwrap(),
            "{\n  \"a\": [\n    1e-05,\n    NaN\n  ],\n  \"\\u00e9\": \"\\u00fc\\ud83d\\ude00\"\n}"
        );
        assert_eq!(
            write(&v, Style::Compact).unwrap(),
            "{\"\\u00e9\": \"\\u00fc\\ud83d\\ude00\", \"a\": [1e-05, NaN]}"
        );
    }

    #[test]
    fn non_str_keys_are_converted_after_sorting() {
        let mut d = Dict::new();
        d.insert(Key::Int(10.into()), Value::int(1));
        d.insert(Key::Int(9.into()), Value::int(2));
        assert_eq!(
            write(&Value::Dict(d), Style::IndentedSorted).unwrap(),
            "{\n  \"9\": 2,\n  \"10\": 1\n}"
        );
    }

    #[test]
    fn deep_nesting_is_a_recursion_error() {
        let mut v = Value::List(vec![Value::int(1)]);
        for _ in 0..PY_RECURSION_LIMIT - 1 {
            v = Value::List(vec![v]);
        }
        assert!(write(&v, Style::IndentedSorted).is_ok());
        let v = Value::List(vec![v]);
        assert_eq!(
            write(&v, Style::Compact).unwrap_err().kind,
            PyErrorKind::RecursionError
        );
        assert_eq!(
            super::super::pyrepr::py_repr(&v, 0).unwrap_err().kind,
            PyErrorKind::RecursionError
        );
    }
}
