//! Python `json` semantics for `serde_json::Value`, as seamless-database uses them: `json.dumps`
//! (compact with `", "`/`": "` separators, and `sort_keys=True, indent=2`), and Python `==` on
//! parsed JSON (used to compare execution records).
//!
//! Hand-written because the bytes must match Python's exactly: numbers are re-read the way
//! `json.loads` reads them (an integer stays an integer of any size, anything with `.`/`e` is a
//! float printed with `repr`), strings are escaped with `ensure_ascii`, and key order is kept.

use serde_json::{Map, Number, Value};
use std::cmp::Ordering;

/// `json.dumps(value)`: one line, `", "` and `": "` separators, keys in stored order.
pub fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write_compact(&mut out, value);
    out
}

/// `json.dumps(value, sort_keys=True, indent=2)`: the `buffer_info` column format.
pub fn dumps_sorted_indent2(value: &Value) -> String {
    let mut out = String::new();
    write_pretty(&mut out, value, 0);
    out
}

fn write_compact(out: &mut String, value: &Value) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_compact(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_compact(out, item);
            }
            out.push('}');
        }
        scalar => write_scalar(out, scalar),
    }
}

fn write_pretty(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i > 0 { ",\n" } else { "\n" });
                indent(out, level + 1);
                write_pretty(out, item, level + 1);
            }
            out.push('\n');
            indent(out, level);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                out.push_str(if i > 0 { ",\n" } else { "\n" });
                indent(out, level + 1);
                write_string(out, key);
                out.push_str(": ");
                write_pretty(out, item, level + 1);
            }
            out.push('\n');
            indent(out, level);
            out.push('}');
        }
        other => write_compact(out, other),
    }
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_scalar(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(_) | Value::Object(_) => write_compact(out, value),
    }
}

/// The JSON text of a number, as `json.loads` + `json.dumps` gives it back.
fn write_number(out: &mut String, n: &Number) {
    let text = n.to_string();
    if is_integer_literal(&text) {
        // Python int: arbitrary size, and "-0" is 0.
        let digits = text.trim_start_matches('-');
        if digits.bytes().all(|b| b == b'0') {
            out.push('0');
        } else {
            out.push_str(&text);
        }
    } else {
        out.push_str(&float_repr(text.parse::<f64>().unwrap_or(f64::NAN)));
    }
}

fn is_integer_literal(text: &str) -> bool {
    !text.contains(['.', 'e', 'E'])
}

/// Python `float.__repr__` as json.dumps writes it (`Infinity`/`NaN` for the specials):
/// shortest round-trip digits, fixed notation for exponents -4..16, else `d.ddde+XX`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "1.5e-5".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if x < 0.0 { "-" } else { "" };
    let body = if (-4..16).contains(&exp) {
        fixed_notation(&digits, exp)
    } else {
        let rest = &digits[1..];
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{}{frac}e{esign}{:02}", &digits[..1], exp.abs())
    };
    format!("{sign}{body}")
}

fn fixed_notation(digits: &str, exp: i32) -> String {
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("0.{zeros}{digits}");
    }
    let point = exp as usize + 1;
    if digits.len() > point {
        format!("{}.{}", &digits[..point], &digits[point..])
    } else {
        format!("{digits}{}.0", "0".repeat(point - digits.len()))
    }
}

/// A JSON string with Python's `ensure_ascii` escaping (`\u00e9`, surrogate pairs, `\u007f`).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
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
    x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| python_eq(v, w)))
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
                Some(if *i == as_int { Ordering::Equal } else { Ordering::Less })
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
        let v = parse(r#"{"b": [1, 2.0, 1e5, -0, 1E-7, 123456789012345678901234567890], "a": "é\u007f\n", "c": {}}"#);
        assert_eq!(
            dumps(&v),
            r#"{"b": [1, 2.0, 100000.0, 0, 1e-07, 123456789012345678901234567890], "a": "\u00e9\u007f\n", "c": {}}"#
        );
        assert_eq!(dumps(&parse(r#""😀""#)), r#""\ud83d\ude00""#);
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (123.456, "123.456"),
            (-2.5e300, "-2.5e+300"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "{x}");
        }
    }

    #[test]
    fn pretty_sorted_matches_python() {
        let v = parse(r#"{"length": 13, "dtype": "<f8", "shape": [2, 3], "e": [], "m": {"z": 1, "a": {}}}"#);
        assert_eq!(
            dumps_sorted_indent2(&v),
            "{\n  \"dtype\": \"<f8\",\n  \"e\": [],\n  \"length\": 13,\n  \"m\": {\n    \"a\": {},\n    \"z\": 1\n  },\n  \"shape\": [\n    2,\n    3\n  ]\n}"
        );
    }

    #[test]
    fn python_equality() {
        assert!(python_eq(&parse(r#"{"a": 1, "b": [true]}"#), &parse(r#"{"b": [1.0], "a": 1.0}"#)));
        assert!(!python_eq(&parse(r#"{"a": 1}"#), &parse(r#"{"a": "1"}"#)));
        assert!(!python_eq(&parse(r#"{"a": 1.5}"#), &parse(r#"{"a": 1}"#)));
        assert!(!python_eq(&parse(r#"{"a": 1}"#), &parse(r#"{"a": 1, "b": 2}"#)));
    }
}
