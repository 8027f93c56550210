//! Python's text forms of values: `repr()` of floats, strings and bytes, `str()` of any value
//! (text cell types, the `str` cell type and `bytes` write these), and the shortest round-trip
//! float digits both JSON writers lay out.
//!
//! Hand-written because the bytes must equal CPython's: no crate formats Python reprs.

use std::cmp::Ordering;

use num_bigint::BigInt;

use super::unicode_printable::is_printable;
use super::{CellError, PyErrorKind, py_digits, with_stack};
use crate::value::{ByteOrder, DType, Date, DateTime, Key, NdArray, Value, f16_to_f64, f64_to_f16};

/// How deeply nested containers may be for `repr`, `json.dumps` and `get_form`: Python's
/// default recursion limit.
pub const PY_RECURSION_LIMIT: usize = 1000;

/// The shortest round-trip decimal digits of a finite non-zero `x` (as Python `repr` and orjson
/// pick them, via Ryu) and the decimal exponent `e` such that `|x| = d1.d2d3… × 10^e`.
fn shortest_digits(x: f64) -> (String, i32) {
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(x.abs());
    let (mantissa, exp) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().expect("ryu writes a decimal exponent")),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = format!("{int_part}{frac_part}");
    let first = all.find(|c| c != '0').unwrap_or(0);
    let digits = all[first..].trim_end_matches('0');
    let e = int_part.len() as i32 - 1 - first as i32 + exp;
    (digits.to_string(), e)
}

/// Lay out shortest digits: positional for `lo <= e <= hi`, else `d[.ddd]e±X` (`pad2`: at least
/// two exponent digits, as Python writes `1e-07`; orjson writes `1e-7`).
fn layout(x: f64, lo: i32, hi: i32, pad2: bool) -> String {
    let mut out = String::from(if x.is_sign_negative() { "-" } else { "" });
    if x == 0.0 {
        out.push_str("0.0");
        return out;
    }
    let (d, e) = shortest_digits(x);
    if (lo..=hi).contains(&e) {
        if e < 0 {
            out.push_str("0.");
            out.push_str(&"0".repeat((-e - 1) as usize));
            out.push_str(&d);
        } else {
            let ip = (e + 1) as usize;
            if d.len() <= ip {
                out.push_str(&d);
                out.push_str(&"0".repeat(ip - d.len()));
                out.push_str(".0");
            } else {
                out.push_str(&d[..ip]);
                out.push('.');
                out.push_str(&d[ip..]);
            }
        }
    } else {
        out.push_str(&d[..1]);
        if d.len() > 1 {
            out.push('.');
            out.push_str(&d[1..]);
        }
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        if pad2 {
            out.push_str(&format!("{:02}", e.abs()));
        } else {
            out.push_str(&e.abs().to_string());
        }
    }
    out
}

/// orjson's float text for a finite float (spec §2.1); callers write NaN/inf as `null`.
pub fn orjson_float(x: f64) -> String {
    layout(x, -5, 15, false)
}

/// Python `repr(float)`: `1e-05`, `1e+16`, `0.0001`, `nan`, `inf`, `-inf`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        layout(x, -4, 15, true)
    }
}

/// numpy's `str()` of a float16/float32 scalar: the shortest digits that read back as the same
/// value (`short`), positional when `1e-4 <= |value| < 10^cutoff` (numpy's cutoff: 3 digits
/// for float16, 6 for float32), else scientific with a signed two-digit exponent.
fn numpy_float_str(value: f64, short: f64, cutoff: i32) -> String {
    if !value.is_finite() {
        return float_repr(value);
    }
    let a = value.abs();
    if a == 0.0 || (1e-4..10f64.powi(cutoff)).contains(&a) {
        layout(short, i32::MIN, i32::MAX, true)
    } else {
        layout(short, 1, 0, true)
    }
}

fn float32_str(x: f32) -> String {
    if !x.is_finite() {
        return float_repr(x as f64);
    }
    // The shortest f32 digits, re-read as f64, keep exactly those digits.
    let mut buf = ryu::Buffer::new();
    let short: f64 = buf
        .format_finite(x)
        .parse()
        .expect("ryu writes a valid float");
    numpy_float_str(x as f64, short, 6)
}

fn float16_str(bits: u16) -> String {
    let x = f16_to_f64(bits);
    if !x.is_finite() {
        return float_repr(x);
    }
    let short = (0..17)
        .map(|p| {
            format!("{x:.p$e}")
                .parse::<f64>()
                .expect("a formatted float parses")
        })
        .find(|&y| f64_to_f16(y) == bits)
        .unwrap_or(x);
    numpy_float_str(x, short, 3)
}

/// Python `repr()` of a str given as code points (which may include lone surrogates).
pub fn str_repr_units(chars: impl Iterator<Item = u32> + Clone) -> String {
    let has_single = chars.clone().any(|c| c == '\'' as u32);
    let has_double = chars.clone().any(|c| c == '"' as u32);
    let quote = if has_single && !has_double { '"' } else { '\'' };
    let mut out = String::new();
    out.push(quote);
    for c in chars {
        match c {
            0x5c => out.push_str("\\\\"),
            0x09 => out.push_str("\\t"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            _ if c == quote as u32 => {
                out.push('\\');
                out.push(quote);
            }
            _ if is_printable(c) => {
                out.push(char::from_u32(c).expect("printable code points are chars"))
            }
            _ if c <= 0xff => out.push_str(&format!("\\x{c:02x}")),
            _ if c <= 0xffff => out.push_str(&format!("\\u{c:04x}")),
            _ => out.push_str(&format!("\\U{c:08x}")),
        }
    }
    out.push(quote);
    out
}

/// Python `repr(str)`.
pub fn str_repr(s: &str) -> String {
    str_repr_units(s.chars().map(|c| c as u32))
}

/// Python `repr(bytes)`: `b'abc'`, `b'\x00'`.
pub fn bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = format!("b{quote}");
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if c == quote as u8 => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(c as char),
            _ => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push(quote);
    out
}

/// Python's type name of a value, as `type(x).__name__` in error messages.
pub fn type_name(v: &Value) -> String {
    match v {
        Value::None => "NoneType".into(),
        Value::Bool(_) => "bool".into(),
        Value::Int(_) => "int".into(),
        Value::Float(_) => "float".into(),
        Value::Str(_) | Value::Surrogates(_) => "str".into(),
        Value::Bytes(_) => "bytes".into(),
        Value::List(_) => "list".into(),
        Value::Tuple(_) => "tuple".into(),
        Value::Dict(_) => "dict".into(),
        Value::Array(_) => "ndarray".into(),
        Value::Scalar(a) => a.dtype.numpy_name(),
        Value::Checksum(_) => "Checksum".into(),
        Value::Set(_) => "set".into(),
        Value::Date(_) => "date".into(),
        Value::DateTime(_) => "datetime".into(),
    }
}

/// Python `str(value)`. A str with lone surrogates has no UTF-8 form, so callers handle
/// `Value::Surrogates` at the top level themselves; inside containers it is a repr like any str.
pub fn py_str(v: &Value) -> Result<String, CellError> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        Value::Checksum(c) => Ok(c.hex()),
        Value::Scalar(a) => scalar_str(a),
        _ => py_repr(v, STR_CALL_DEPTH),
    }
}

/// The recursion depth `str(value)` starts from in seamless-core's `_serialize` called from a
/// script's top level (`<module>`, `serialize_sync`, `_serialize`): values nested 997 deep fail
/// there, as in Python. (At 996, CPython 3.11 fails too for some innermost values, such as a
/// cached small int in a list, depending on the interpreter's warm-up: see docs/compat.md.)
const STR_CALL_DEPTH: usize = 3;

/// numpy `str()` of a numpy scalar: the Python value's text.
fn scalar_str(a: &NdArray) -> Result<String, CellError> {
    if let DType::Simple {
        kind: 'f',
        size: size @ (2 | 4),
        order,
    } = a.dtype
    {
        let mut raw = a.data[..size].to_vec();
        if order == ByteOrder::Big {
            raw.reverse();
        }
        return Ok(if size == 4 {
            float32_str(f32::from_le_bytes(raw.try_into().expect("4 bytes")))
        } else {
            float16_str(u16::from_le_bytes(raw.try_into().expect("2 bytes")))
        });
    }
    match a.scalar_to_python() {
        Some(Value::Str(s)) => Ok(s),
        Some(v) => py_repr(&v, 0),
        None => Err(CellError::new(
            PyErrorKind::TypeError,
            format!(
                "cannot format a numpy {} scalar as Python text",
                a.dtype.numpy_name()
            ),
        )),
    }
}

fn too_deep() -> CellError {
    CellError::new(
        PyErrorKind::RecursionError,
        "maximum recursion depth exceeded while getting the repr of an object",
    )
}

/// Python `repr(value)`; `depth` counts enclosing containers.
pub fn py_repr(v: &Value, depth: usize) -> Result<String, CellError> {
    with_stack(|| py_repr_inner(v, depth))
}

fn py_repr_inner(v: &Value, depth: usize) -> Result<String, CellError> {
    if depth >= PY_RECURSION_LIMIT {
        return Err(too_deep());
    }
    let items = |items: &[Value]| -> Result<Vec<String>, CellError> {
        items.iter().map(|x| py_repr(x, depth + 1)).collect()
    };
    Ok(match v {
        Value::None => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(x) => float_repr(*x),
        Value::Str(s) => str_repr(s),
        Value::Surrogates(u) => str_repr_units(u.iter().copied()),
        Value::Bytes(b) => bytes_repr(b),
        Value::List(l) => format!("[{}]", items(l)?.join(", ")),
        Value::Tuple(t) if t.len() == 1 => format!("({},)", items(t)?[0]),
        Value::Tuple(t) => format!("({})", items(t)?.join(", ")),
        Value::Dict(d) => {
            let parts: Result<Vec<String>, CellError> = d
                .iter()
                .map(|(k, x)| Ok(format!("{}: {}", key_repr(k), py_repr(x, depth + 1)?)))
                .collect();
            format!("{{{}}}", parts?.join(", "))
        }
        Value::Checksum(c) => str_repr(&c.hex()),
        Value::Scalar(a) => scalar_repr(a)?,
        Value::Set(s) if s.is_empty() => "set()".into(),
        Value::Set(s) => format!("{{{}}}", items(s)?.join(", ")),
        Value::Date(d) => date_repr(d),
        Value::DateTime(t) => datetime_repr(t),
        Value::Array(_) => {
            return Err(CellError::new(
                PyErrorKind::TypeError,
                "numpy array text (str/repr) is not supported: convert the array to a list first",
            ));
        }
    })
}

/// numpy 2 `repr()` of a scalar: `np.float64(1.5)`, `np.True_`.
fn scalar_repr(a: &NdArray) -> Result<String, CellError> {
    if let DType::Simple { kind: 'b', .. } = a.dtype {
        let truth = a.data.first().is_some_and(|&b| b != 0);
        return Ok(if truth { "np.True_" } else { "np.False_" }.into());
    }
    Ok(format!("np.{}({})", a.dtype.numpy_name(), scalar_str(a)?))
}

/// `repr(datetime.date(...))`.
fn date_repr(d: &Date) -> String {
    format!("datetime.date({}, {}, {})", d.year, d.month, d.day)
}

/// `repr(datetime.datetime(...))`: trailing zero seconds/microseconds are omitted, as Python does.
fn datetime_repr(t: &DateTime) -> String {
    let d = &t.date;
    let mut fields = vec![
        d.year as u32,
        d.month as u32,
        d.day as u32,
        t.hour as u32,
        t.minute as u32,
    ];
    if t.second != 0 || t.microsecond != 0 {
        fields.push(t.second as u32);
    }
    if t.microsecond != 0 {
        fields.push(t.microsecond);
    }
    let fields: Vec<String> = fields.iter().map(u32::to_string).collect();
    let mut out = format!("datetime.datetime({}", fields.join(", "));
    match t.utc_offset {
        None => {}
        Some(0) => out.push_str(", tzinfo=datetime.timezone.utc"),
        Some(offset) => {
            let (days, seconds) = (offset.div_euclid(86_400), offset.rem_euclid(86_400));
            let delta = if days != 0 {
                format!("days={days}, seconds={seconds}")
            } else {
                format!("seconds={seconds}")
            };
            out.push_str(&format!(
                ", tzinfo=datetime.timezone(datetime.timedelta({delta}))"
            ));
        }
    }
    out.push(')');
    out
}

/// Python `repr()` of a dict key.
pub fn key_repr(k: &Key) -> String {
    match k {
        Key::Str(s) => str_repr(s),
        Key::Surrogates(u) => str_repr_units(u.iter().copied()),
        Key::Int(i) => i.to_string(),
        Key::Float(bits) => float_repr(f64::from_bits(*bits)),
        Key::Bool(b) => if *b { "True" } else { "False" }.into(),
        Key::None => "None".into(),
        Key::Bytes(b) => bytes_repr(b),
        Key::Date(d) => date_repr(d),
        Key::DateTime(t) => datetime_repr(t),
        Key::Other(name) => format!("<{name} object>"),
    }
}

/// Python's type name of a key.
fn key_type(k: &Key) -> &str {
    match k {
        Key::Str(_) | Key::Surrogates(_) => "str",
        Key::Int(_) => "int",
        Key::Float(_) => "float",
        Key::Bool(_) => "bool",
        Key::None => "NoneType",
        Key::Bytes(_) => "bytes",
        Key::Date(_) => "datetime.date",
        Key::DateTime(_) => "datetime.datetime",
        Key::Other(name) => name,
    }
}

/// A key as a number, if Python orders it numerically (int, float, bool).
fn key_number(k: &Key) -> Option<f64> {
    use num_traits::ToPrimitive;
    match k {
        Key::Int(i) => Some(i.to_f64().unwrap_or(f64::INFINITY)),
        Key::Float(bits) => Some(f64::from_bits(*bits)),
        Key::Bool(b) => Some(*b as u8 as f64),
        _ => None,
    }
}

/// Python `a < b` for two keys, or the `TypeError` Python raises.
fn key_less(a: &Key, b: &Key) -> Result<bool, CellError> {
    match (a, b) {
        (Key::Str(x), Key::Str(y)) => Ok(x < y),
        (Key::Int(x), Key::Int(y)) => Ok(x < y),
        _ => match (key_number(a), key_number(b)) {
            (Some(x), Some(y)) => Ok(x < y),
            _ => Err(CellError::new(
                PyErrorKind::TypeError,
                format!(
                    "'<' not supported between instances of '{}' and '{}'",
                    key_type(a),
                    key_type(b)
                ),
            )),
        },
    }
}

/// The keys in Python `sorted()` order, or the `TypeError` Python raises for unorderable keys.
/// Like CPython's sort, the first comparison made is "later item < earlier item".
pub fn sorted_keys<'a>(keys: impl Iterator<Item = &'a Key>) -> Result<Vec<&'a Key>, CellError> {
    let mut keys: Vec<&Key> = keys.collect();
    for pair in keys.windows(2) {
        key_less(pair[1], pair[0])?;
    }
    keys.sort_by(|a, b| match key_less(a, b) {
        Ok(true) => Ordering::Less,
        _ if key_less(b, a).unwrap_or(false) => Ordering::Greater,
        _ => Ordering::Equal,
    });
    Ok(keys)
}

/// seamless-core's `unchecksum(value)`, run before `plain` and `mixed` serialization, walks
/// every container under Python's recursion limit, three frames a level (`unchecksum`,
/// `_unchecksum_list`/`_dict`, the comprehension), with an `isinstance(value, (list, tuple))`
/// check in between for anything but a dict. Reproduced for a call from a script's top level
/// (the frames `<module>`, `serialize_sync` and `_serialize` below the first `unchecksum`): the
/// first entry past the limit, in the walk's order, decides the message.
pub fn check_unchecksum_depth(value: &Value) -> Result<(), CellError> {
    unchecksum_at(value, 4)
}

/// Python's `RecursionError` for an entry (a frame or a C-level call) at recursion depth `at`,
/// if that is past the limit; `where_` is CPython's suffix (`" in __instancecheck__"`).
pub fn exceeded(at: usize, where_: &str) -> Result<(), CellError> {
    if at > PY_RECURSION_LIMIT {
        return Err(CellError::new(
            PyErrorKind::RecursionError,
            format!("maximum recursion depth exceeded{where_}"),
        ));
    }
    Ok(())
}

fn unchecksum_at(value: &Value, frame: usize) -> Result<(), CellError> {
    exceeded(frame, "")?;
    let children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Checksum(_) => return Ok(()),
        Value::Dict(d) => {
            exceeded(frame + 2, "")?;
            Box::new(d.values())
        }
        Value::List(items) | Value::Tuple(items) => {
            exceeded(frame + 1, " in __instancecheck__")?;
            exceeded(frame + 2, "")?;
            Box::new(items.iter())
        }
        _ => return exceeded(frame + 1, " in __instancecheck__"),
    };
    with_stack(|| {
        children
            .into_iter()
            .try_for_each(|c| unchecksum_at(c, frame + 3))
    })
}

/// Python `int(text)` for base 10 (digits of any script), or `ValueError` naming the text as
/// Python does.
pub fn parse_py_int(text: &str) -> Result<BigInt, CellError> {
    let bad = || {
        CellError::new(
            PyErrorKind::ValueError,
            format!("invalid literal for int() with base 10: {}", str_repr(text)),
        )
    };
    let ascii = py_digits::to_ascii(text);
    let t = ascii.trim_matches(py_digits::ASCII_SPACE);
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = strip_underscores(body).ok_or_else(bad)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let magnitude: BigInt = digits.parse().map_err(|_| bad())?;
    Ok(if neg { -magnitude } else { magnitude })
}

/// Remove single underscores between digits, as Python number literals allow; `None` if an
/// underscore is misplaced.
fn strip_underscores(s: &str) -> Option<String> {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let ok =
                i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit();
            if !ok {
                return None;
            }
        }
    }
    Some(s.replace('_', ""))
}

/// Python `float(text)` (digits of any script), or `ValueError` naming the text as Python does.
pub fn parse_py_float(text: &str) -> Result<f64, CellError> {
    let bad = || {
        CellError::new(
            PyErrorKind::ValueError,
            format!("could not convert string to float: {}", str_repr(text)),
        )
    };
    let ascii = py_digits::to_ascii(text);
    let t = ascii.trim_matches(py_digits::ASCII_SPACE);
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = body.to_ascii_lowercase();
    let magnitude = if lower == "inf" || lower == "infinity" {
        f64::INFINITY
    } else if lower == "nan" {
        f64::NAN
    } else {
        let plain = strip_underscores(body).ok_or_else(bad)?;
        if !is_decimal_literal(&plain) {
            return Err(bad());
        }
        plain.parse::<f64>().map_err(|_| bad())?
    };
    Ok(if neg { -magnitude } else { magnitude })
}

/// `digits[.digits][e[+-]digits]` with at least one mantissa digit (Python's float syntax).
fn is_decimal_literal(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int_part, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok =
        digits_ok(int_part) && digits_ok(frac) && !(int_part.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits_ok(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_follow_both_layouts() {
        for (x, orjson, python) in [
            (1e16, "1e+16", "1e+16"),
            (1e15, "1000000000000000.0", "1000000000000000.0"),
            (1e-5, "0.00001", "1e-05"),
            (1.5e-5, "0.000015", "1.5e-05"),
            (1e-7, "1e-7", "1e-07"),
            (0.0001, "0.0001", "0.0001"),
            (5e-324, "5e-324", "5e-324"),
            (-0.0, "-0.0", "-0.0"),
            (
                123456789012345.67,
                "123456789012345.67",
                "123456789012345.67",
            ),
            (
                1.7976931348623157e308,
                "1.7976931348623157e+308",
                "1.7976931348623157e+308",
            ),
        ] {
            assert_eq!(orjson_float(x), orjson, "{x}");
            assert_eq!(float_repr(x), python, "{x}");
        }
    }

    #[test]
    fn numpy_small_floats() {
        assert_eq!(float16_str(f64_to_f16(65504.0)), "6.55e+04");
        assert_eq!(float16_str(f64_to_f16(1000.0)), "1e+03");
        assert_eq!(float16_str(f64_to_f16(0.1)), "0.1");
        assert_eq!(float32_str(1e-4), "1e-04");
        assert_eq!(float32_str(65504.0), "65504.0");
        assert_eq!(float32_str(123456789.0), "1.2345679e+08");
        assert_eq!(float32_str(999999.0), "999999.0");
        assert_eq!(float32_str(1e6), "1e+06");
        assert_eq!(float32_str(7096083.0), "7.096083e+06");
    }

    #[test]
    fn reprs_match_python() {
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'\"b"), "'a\\'\"b'");
        assert_eq!(str_repr("\x00\t\u{7f}é\u{a0}😀"), "'\\x00\\t\\x7fé\\xa0😀'");
        assert_eq!(bytes_repr(b"abc"), "b'abc'");
        assert_eq!(bytes_repr(b"\x00'"), "b\"\\x00'\"");
        let mut d = crate::value::Dict::new();
        d.insert(Key::Str("b".into()), Value::int(1));
        d.insert(Key::Str("a".into()), Value::Tuple(vec![Value::Float(1e-7)]));
        assert_eq!(py_str(&Value::Dict(d)).unwrap(), "{'b': 1, 'a': (1e-07,)}");
    }

    #[test]
    fn python_number_parsing() {
        assert_eq!(parse_py_int(" 7 ").unwrap(), BigInt::from(7));
        assert_eq!(parse_py_int("1_000").unwrap(), BigInt::from(1000));
        assert_eq!(
            parse_py_int("x").unwrap_err().message,
            "invalid literal for int() with base 10: 'x'"
        );
        assert!(parse_py_int("1__0").is_err());
        assert_eq!(parse_py_float("1e-7").unwrap(), 1e-7);
        assert!(parse_py_float("-Infinity").unwrap().is_infinite());
        assert_eq!(parse_py_float(".5").unwrap(), 0.5);
        assert!(parse_py_float("1e").is_err());
        assert!(parse_py_float("0x10").is_err());
    }

    #[test]
    fn mixed_key_types_do_not_sort() {
        let keys = [Key::Int(1.into()), Key::Str("x".into())];
        let e = sorted_keys(keys.iter()).unwrap_err();
        assert_eq!(
            e.message,
            "'<' not supported between instances of 'str' and 'int'"
        );
        let keys = [Key::Int(10.into()), Key::Int(9.into())];
        assert_eq!(sorted_keys(keys.iter()).unwrap(), vec![&keys[1], &keys[0]]);
    }
}
