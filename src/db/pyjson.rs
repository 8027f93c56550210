//! Python `json` semantics for `serde_json::Value`, as seamless-database uses them: `json.dumps`
//! (compact with `", "`/`": "` separators, and `sort_keys=True, indent=2`), and Python `==` on
//! parsed JSON (used to compare execution records).
//!
//! The writing is the codec's Python-json writer (`celltype::json_python`); this module only
//! reads a `serde_json::Value` the way `json.loads` would (an integer literal is an int of any
//! size, anything with `.`/`e` a float) into the codec's value model.

use serde_json::{Map, Value};
use std::cmp::Ordering;

use crate::celltype::json_python::{self, Style};
use crate::value::{Dict, Key, Value as PyValue};

/// `json.dumps(value)`: one line, `", "` and `": "` separators, keys in stored order.
pub fn dumps(value: &Value) -> String {
    write(value, Style::Compact)
}

/// `json.dumps(value, sort_keys=True, indent=2)`: the `buffer_info` column format.
pub fn dumps_sorted_indent2(value: &Value) -> String {
    write(value, Style::IndentedSorted)
}

fn write(value: &Value, style: Style) -> String {
    // Parsed JSON has only str keys and JSON types, which json.dumps always writes; the one
    // failure left is Python's recursion limit, which a request body cannot reach (it would
    // have failed json.loads in Python just the same).
    json_python::write(&to_python(value), style)
        .unwrap_or_else(|e| panic!("json.dumps of parsed JSON failed: {e:?}"))
}

/// The Python value `json.loads` gives for this JSON.
fn to_python(value: &Value) -> PyValue {
    match value {
        Value::Null => PyValue::None,
        Value::Bool(b) => PyValue::Bool(*b),
        Value::Number(n) => {
            let text = n.to_string();
            if is_integer_literal(&text) {
                PyValue::Int(text.parse().expect("a JSON integer literal is an integer"))
            } else {
                PyValue::Float(text.parse().expect("a JSON number literal is a float"))
            }
        }
        Value::String(s) => PyValue::Str(s.clone()),
        Value::Array(items) => PyValue::List(items.iter().map(to_python).collect()),
        Value::Object(map) => PyValue::Dict(
            map.iter()
                .map(|(k, v)| (Key::Str(k.clone()), to_python(v)))
                .collect::<Dict>(),
        ),
    }
}

fn is_integer_literal(text: &str) -> bool {
    !text.contains(['.', 'e', 'E'])
}

/// Whether `json.loads` reads this number as a float that is not finite (`1e999` is `inf`,
/// which `json.dumps` writes as `Infinity`, not JSON). An integer literal of any size is an int.
pub fn is_infinite_float(number: &serde_json::Number) -> bool {
    let text = number.to_string();
    !is_integer_literal(&text) && text.parse::<f64>().is_ok_and(|f| !f.is_finite())
}

/// Python `==` between two parsed JSON values: dict order does not matter, and numbers compare
/// by value across int/float/bool (`1 == 1.0 == True`).
pub fn python_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| python_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => maps_eq(x, y),
        _ => match (numeric(a), numeric(b)) {
            (Some(x), Some(y)) => x.cmp_value(&y) == Some(Ordering::Equal),
            _ => false,
        },
    }
}

fn maps_eq(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    x.len() == y.len()
        && x.iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| python_eq(v, w)))
}

/// A JSON number or bool seen as a Python number.
enum Numeric {
    Int(num_bigint::BigInt),
    Float(f64),
}

impl Numeric {
    fn cmp_value(&self, other: &Numeric) -> Option<Ordering> {
        use num_traits::ToPrimitive;
        match (self, other) {
            (Numeric::Int(x), Numeric::Int(y)) => Some(x.cmp(y)),
            (Numeric::Float(x), Numeric::Float(y)) => x.partial_cmp(y),
            // Python compares int and float exactly; an f64 holding an integer value is exact.
            (Numeric::Int(i), Numeric::Float(f)) | (Numeric::Float(f), Numeric::Int(i)) => {
                if f.fract() != 0.0 || !f.is_finite() {
                    return Some(Ordering::Less); // never equal
                }
                let as_int = num_bigint::BigInt::from(f.to_i128()?);
                Some(if *i == as_int {
                    Ordering::Equal
                } else {
                    Ordering::Less
                })
            }
        }
    }
}

fn numeric(v: &Value) -> Option<Numeric> {
    match v {
        Value::Bool(b) => Some(Numeric::Int((*b as i32).into())),
        Value::Number(n) => {
            let text = n.to_string();
            if is_integer_literal(&text) {
                text.parse().ok().map(Numeric::Int)
            } else {
                text.parse().ok().map(Numeric::Float)
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn compact_matches_python() {
        let v = parse(
            r#"{"b": [1, 2.0, 1e5, -0, 1E-7, 123456789012345678901234567890], "a": "é\u007f\n", "c": {}}"#,
        );
        assert_eq!(
            dumps(&v),
            r#"{"b": [1, 2.0, 100000.0, 0, 1e-07, 123456789012345678901234567890], "a": "\u00e9\u007f\n", "c": {}}"#
        );
        assert_eq!(dumps(&parse(r#""😀""#)), r#""\ud83d\ude00""#);
    }

    #[test]
    fn pretty_sorted_matches_python() {
        let v = parse(
            r#"{"length": 13, "dtype": "<f8", "shape": [2, 3], "e": [], "m": {"z": 1, "a": {}}}"#,
        );
        assert_eq!(
            dumps_sorted_indent2(&v),
            "{\n  \"dtype\": \"<f8\",\n  \"e\": [],\n  \"length\": 13,\n  \"m\": {\n    \"a\": {},\n    \"z\": 1\n  },\n  \"shape\": [\n    2,\n    3\n  ]\n}"
        );
    }

    #[test]
    fn python_equality() {
        assert!(python_eq(
            &parse(r#"{"a": 1, "b": [true]}"#),
            &parse(r#"{"b": [1.0], "a": 1.0}"#)
        ));
        assert!(!python_eq(&parse(r#"{"a": 1}"#), &parse(r#"{"a": "1"}"#)));
        assert!(!python_eq(&parse(r#"{"a": 1.5}"#), &parse(r#"{"a": 1}"#)));
        assert!(!python_eq(
            &parse(r#"{"a": 1}"#),
            &parse(r#"{"a": 1, "b": 2}"#)
        ));
    }
}
