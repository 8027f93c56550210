//! The orjson-based cell types: `plain`, `checksum`, and the scalars `str`, `int`, `float`,
//! `bool` with Python's `str()`/`int()`/`float()`/`bool()` conversions (spec §2.2, §2.3, §2.6).

use num_bigint::BigInt;
use num_traits::{FromPrimitive, ToPrimitive, Zero};

use super::json_parse::{Dialect, parse};
use super::pyrepr::{parse_py_float, parse_py_int, py_str, type_name};
use super::text::{decode_utf8, shorten};
use super::{CellError, CellType, PyErrorKind, json_orjson};
use crate::value::Value;

/// orjson bytes of `value` plus `"\n"`; `unchecksum` as in `json_orjson::write`.
fn orjson_line(value: &Value, unchecksum: bool) -> Result<Vec<u8>, CellError> {
    let mut out = json_orjson::write(value, unchecksum)?;
    out.push(b'\n');
    Ok(out)
}

/// Serialize as `plain`: Checksum objects anywhere are written as their hex, then orjson.
pub fn serialize_plain(value: &Value) -> Result<Vec<u8>, CellError> {
    super::pyrepr::check_unchecksum_depth(value)?;
    orjson_line(value, true)
}

/// Parse a `plain` buffer: strict UTF-8, trailing newlines removed, `orjson.loads`.
pub fn deserialize_plain(buf: &[u8]) -> Result<Value, CellError> {
    let text = decode_utf8(buf)?.trim_end_matches('\n');
    parse(text, Dialect::Orjson).map_err(|why| {
        CellError::new(PyErrorKind::ValueError, shorten(text))
            .with_detail(format!("not valid JSON: {why}"))
    })
}

/// Serialize as `str`, `int`, `float` or `bool`.
pub fn serialize(value: &Value, celltype: CellType) -> Result<Vec<u8>, CellError> {
    // int/float/bool decode a bytes value first; str keeps it (giving "b'...'").
    let decoded;
    let value = match value {
        Value::Bytes(b) if celltype != CellType::Str => {
            decoded = Value::str(decode_utf8(b)?);
            &decoded
        }
        _ => value,
    };
    let converted = match celltype {
        CellType::Str => match value {
            // A bool is not converted: True is written `true`.
            Value::Bool(_) | Value::Str(_) | Value::Surrogates(_) => value.clone(),
            _ => Value::Str(py_str(value)?),
        },
        CellType::Int => Value::Int(to_int(value)?),
        CellType::Float => Value::Float(to_float(value)?),
        CellType::Bool => Value::Bool(truth(value)?),
        _ => unreachable!("scalar::serialize is only called for str, int, float and bool"),
    };
    orjson_line(&converted, false)
}

/// Parse as `str`, `int`, `float` or `bool`: `plain`, then Python's conversion if the value is not
/// already of that type (a bool counts as an int).
pub fn deserialize(buf: &[u8], celltype: CellType) -> Result<Value, CellError> {
    let v = deserialize_plain(buf)?;
    Ok(match (celltype, &v) {
        (CellType::Str, Value::Str(_))
        | (CellType::Int, Value::Int(_) | Value::Bool(_))
        | (CellType::Float, Value::Float(_))
        | (CellType::Bool, Value::Bool(_)) => v,
        (CellType::Str, _) => Value::Str(py_str(&v)?),
        (CellType::Int, _) => Value::Int(to_int(&v)?),
        (CellType::Float, _) => Value::Float(to_float(&v)?),
        (CellType::Bool, _) => Value::Bool(truth(&v)?),
        _ => unreachable!("scalar::deserialize is only called for str, int, float and bool"),
    })
}

/// Python `int(value)`.
pub fn to_int(value: &Value) -> Result<BigInt, CellError> {
    match value {
        Value::Bool(b) => Ok(BigInt::from(*b as u8)),
        Value::Int(i) => Ok(i.clone()),
        Value::Float(x) if x.is_nan() => Err(CellError::new(
            PyErrorKind::ValueError,
            "cannot convert float NaN to integer",
        )),
        Value::Float(x) if x.is_infinite() => Err(CellError::new(
            PyErrorKind::OverflowError,
            "cannot convert float infinity to integer",
        )),
        Value::Float(x) => Ok(BigInt::from_f64(x.trunc()).expect("finite floats convert")),
        Value::Str(s) => parse_py_int(s),
        Value::Bytes(b) => parse_py_int(decode_utf8(b)?),
        Value::Surrogates(_) => parse_py_int(&py_str(value)?),
        Value::Scalar(a) => match a.scalar_to_python() {
            Some(v) => to_int(&v),
            None => Err(int_type_error(value)),
        },
        _ => Err(int_type_error(value)),
    }
}

fn int_type_error(value: &Value) -> CellError {
    CellError::new(
        PyErrorKind::TypeError,
        format!(
            "int() argument must be a string, a bytes-like object or a real number, not '{}'",
            type_name(value)
        ),
    )
}

/// Python `float(value)`.
pub fn to_float(value: &Value) -> Result<f64, CellError> {
    match value {
        Value::Bool(b) => Ok(*b as u8 as f64),
        Value::Int(i) => match i.to_f64() {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(CellError::new(
                PyErrorKind::OverflowError,
                "int too large to convert to float",
            )),
        },
        Value::Float(x) => Ok(*x),
        Value::Str(s) => parse_py_float(s),
        Value::Surrogates(_) => parse_py_float(&py_str(value)?),
        Value::Scalar(a) => match a.scalar_to_python() {
            Some(v) => to_float(&v),
            None => Err(float_type_error(value)),
        },
        _ => Err(float_type_error(value)),
    }
}

fn float_type_error(value: &Value) -> CellError {
    CellError::new(
        PyErrorKind::TypeError,
        format!(
            "float() argument must be a string or a real number, not '{}'",
            type_name(value)
        ),
    )
}

/// Python `bool(value)` (truthiness); numpy arrays of more or less than one element are ambiguous.
pub fn truth(value: &Value) -> Result<bool, CellError> {
    Ok(match value {
        Value::None => false,
        Value::Bool(b) => *b,
        Value::Int(i) => !i.is_zero(),
        Value::Float(x) => *x != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Surrogates(u) => !u.is_empty(),
        Value::Bytes(b) => !b.is_empty(),
        Value::List(l) | Value::Tuple(l) => !l.is_empty(),
        Value::Dict(d) => !d.is_empty(),
        Value::Checksum(_) | Value::Date(_) | Value::DateTime(_) => true,
        Value::Set(s) => !s.is_empty(),
        Value::Array(a) | Value::Scalar(a) => {
            if a.len() != 1 {
                let what = if a.is_empty() {
                    "an empty array"
                } else {
                    "an array with more than one element"
                };
                return Err(CellError::new(
                    PyErrorKind::ValueError,
                    format!("The truth value of {what} is ambiguous. Use a.any() or a.all()"),
                ));
            }
            a.data.iter().take(a.dtype.itemsize()).any(|&b| b != 0)
        }
    })
}

/// Serialize as `checksum`: orjson + `"\n"` with no validation (spec §2.6); unlike `plain`,
/// Checksum objects nested in lists or dicts are not converted (orjson rejects them).
pub fn serialize_checksum(value: &Value) -> Result<Vec<u8>, CellError> {
    orjson_line(value, false)
}

/// Parse a `checksum` buffer: only a bare 64-character hex text (any case) is accepted, and
/// returned unchanged. Anything else raises the `TypeError` seamless-core raises.
pub fn deserialize_checksum(buf: &[u8]) -> Result<Value, CellError> {
    let text = std::str::from_utf8(buf)
        .ok()
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()));
    match text {
        Some(t) => Ok(Value::str(t)),
        None => Err(
            CellError::new(PyErrorKind::TypeError, "<class 'seamless.Buffer'>").with_detail(
                "a checksum buffer must be exactly 64 hex characters, with no newline or quotes",
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_serialization() {
        let ser = |v: Value, c| String::from_utf8(serialize(&v, c).unwrap()).unwrap();
        assert_eq!(ser(Value::Bool(true), CellType::Str), "true\n");
        assert_eq!(ser(Value::None, CellType::Str), "\"None\"\n");
        assert_eq!(
            ser(Value::Bytes(b"abc".to_vec().into()), CellType::Str),
            "\"b'abc'\"\n"
        );
        assert_eq!(ser(Value::Float(-3.9), CellType::Int), "-3\n");
        assert_eq!(ser(Value::str(" 7 "), CellType::Int), "7\n");
        assert_eq!(ser(Value::int(1), CellType::Float), "1.0\n");
        assert_eq!(ser(Value::Float(f64::NAN), CellType::Float), "null\n");
        assert_eq!(ser(Value::str("false"), CellType::Bool), "true\n");
        assert_eq!(
            serialize(&Value::Float(f64::INFINITY), CellType::Int)
                .unwrap_err()
                .kind,
            PyErrorKind::OverflowError
        );
    }

    #[test]
    fn scalar_parsing() {
        assert_eq!(
            deserialize(b"true\n", CellType::Int).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(deserialize(b"2.7\n", CellType::Int).unwrap(), Value::int(2));
        assert_eq!(
            deserialize(b"{\"a\":1}", CellType::Str).unwrap(),
            Value::str("{'a': 1}")
        );
        assert_eq!(
            deserialize(b"-0", CellType::Float).unwrap(),
            Value::Float(0.0)
        );
        assert_eq!(
            deserialize(b"18446744073709551616", CellType::Str).unwrap(),
            Value::str("1.8446744073709552e+19")
        );
        let e = deserialize(b"null", CellType::Float).unwrap_err();
        assert_eq!(
            e.message,
            "float() argument must be a string or a real number, not 'NoneType'"
        );
    }

    #[test]
    fn checksum_cells() {
        let hex = "0123456789ABCDEF".repeat(4);
        assert_eq!(
            deserialize_checksum(hex.as_bytes()).unwrap(),
            Value::str(&hex)
        );
        let written = serialize_checksum(&Value::str(&hex)).unwrap();
        assert_eq!(
            deserialize_checksum(&written).unwrap_err().message,
            "<class 'seamless.Buffer'>"
        );
    }
}
