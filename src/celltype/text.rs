//! The text cell types (`text`, `python`, `ipython`, `yaml`) and `bytes`: newline rules, strict
//! UTF-8 with Python's error messages, and validation through the python/ipython/yaml hooks.

use super::pyrepr::py_str;
use super::{CellError, CellType, PyErrorKind, ipython, python, yaml};
use crate::value::Value;

/// Strict UTF-8 decoding with CPython's `UnicodeDecodeError` message.
pub fn decode_utf8(buf: &[u8]) -> Result<&str, CellError> {
    std::str::from_utf8(buf).map_err(|e| {
        let pos = e.valid_up_to();
        let (len, reason) = match e.error_len() {
            None => (buf.len() - pos, "unexpected end of data"),
            // A valid lead byte followed by a bad byte is a continuation error for CPython.
            Some(n) if (0xc2..=0xf4).contains(&buf[pos]) => (n, "invalid continuation byte"),
            Some(n) => (n, "invalid start byte"),
        };
        let what = if len == 1 {
            format!("byte 0x{:02x} in position {pos}", buf[pos])
        } else {
            format!("bytes in position {pos}-{}", pos + len - 1)
        };
        CellError::new(
            PyErrorKind::UnicodeDecodeError,
            format!("'utf-8' codec can't decode {what}: {reason}"),
        )
    })
}

/// CPython's `UnicodeEncodeError` for a str holding a lone surrogate.
pub fn surrogate_error(units: &[u32]) -> CellError {
    let pos = units
        .iter()
        .position(|u| (0xd800..0xe000).contains(u))
        .unwrap_or(0);
    CellError::new(
        PyErrorKind::UnicodeEncodeError,
        format!(
            "'utf-8' codec can't encode character '\\u{:x}' in position {pos}: surrogates not allowed",
            units[pos]
        ),
    )
}

/// How seamless-core puts a text into a `ValueError`: over 1000 characters, the first 920,
/// `...` and the last 50.
pub fn shorten(text: &str) -> String {
    let n = text.chars().count();
    if n <= 1000 {
        return text.to_string();
    }
    let head: String = text.chars().take(920).collect();
    let tail: String = text.chars().skip(n - 50).collect();
    format!("{head}...{tail}")
}

/// Python `str(value)` as UTF-8 text, with bytes decoded first (the text-type rule).
fn as_text(value: &Value) -> Result<String, CellError> {
    match value {
        Value::Bytes(b) => Ok(decode_utf8(b)?.to_string()),
        Value::Surrogates(u) => Err(surrogate_error(u)),
        _ => py_str(value),
    }
}

/// Serialize as a text type: `str(value).rstrip("\n") + "\n"`, no validation.
pub fn serialize(value: &Value) -> Result<Vec<u8>, CellError> {
    let text = as_text(value)?;
    let mut out = text.trim_end_matches('\n').as_bytes().to_vec();
    out.push(b'\n');
    Ok(out)
}

/// Parse a text type: strict UTF-8, trailing newlines removed, then validated for python,
/// ipython and yaml (`ValueError` with the text, as seamless-core raises it).
pub fn deserialize(buf: &[u8], celltype: CellType) -> Result<Value, CellError> {
    let text = decode_utf8(buf)?.trim_end_matches('\n');
    let checked = match celltype {
        CellType::Python => python::validate(text),
        CellType::Ipython => ipython::transform(text).and_then(|source| python::validate(&source)),
        CellType::Yaml => yaml::validate(text),
        _ => Ok(()),
    };
    match checked {
        Ok(()) => Ok(Value::str(text)),
        Err(why) => Err(CellError::new(PyErrorKind::ValueError, shorten(text))
            .with_detail(format!("not valid {celltype}: {why}"))),
    }
}

/// Serialize as `bytes`: bytes as is, numpy data raw in C order, anything else
/// `str(value).rstrip("\n")` in UTF-8 with **no** newline added.
pub fn serialize_bytes(value: &Value) -> Result<Vec<u8>, CellError> {
    match value {
        Value::Bytes(b) => Ok(b.to_vec()),
        Value::Array(a) | Value::Scalar(a) => Ok(a.data.to_vec()),
        Value::Surrogates(u) => Err(surrogate_error(u)),
        _ => Ok(py_str(value)?.trim_end_matches('\n').as_bytes().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_errors_read_like_python() {
        let msg = |b: &[u8]| decode_utf8(b).unwrap_err().message;
        assert_eq!(
            msg(b"\xff\n"),
            "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
        );
        assert_eq!(
            msg(b"ab\xe2\x28"),
            "'utf-8' codec can't decode byte 0xe2 in position 2: invalid continuation byte"
        );
        assert_eq!(
            msg(b"a\xf0\x9f\x98"),
            "'utf-8' codec can't decode bytes in position 1-3: unexpected end of data"
        );
    }

    #[test]
    fn newline_rules() {
        assert_eq!(serialize(&Value::str("a\n\n\n")).unwrap(), b"a\n");
        assert_eq!(serialize(&Value::str("crlf\r\n")).unwrap(), b"crlf\r\n");
        assert_eq!(serialize(&Value::str("")).unwrap(), b"\n");
        assert_eq!(serialize(&Value::Float(1e-7)).unwrap(), b"1e-07\n");
        assert_eq!(serialize_bytes(&Value::str("text\n\n")).unwrap(), b"text");
        assert_eq!(
            deserialize(b"hello\r\n\n", CellType::Text).unwrap(),
            Value::str("hello\r")
        );
    }

    #[test]
    fn long_texts_are_shortened_in_errors() {
        let text = "x".repeat(1500);
        let short = shorten(&text);
        assert_eq!(short.len(), 920 + 3 + 50);
    }
}
