//! The numpy semantics the value conversions need: `np.array(json_value)` (the dtype and shape
//! numpy infers for `plain → binary`), an array as a JSON value (`binary → plain`, as orjson's
//! `OPT_SERIALIZE_NUMPY` writes it), numpy scalars as Python values, and `np.array(bytes)`.
//! Buffers are written and read by the `binary`/`mixed` codecs; this only builds values.

use bytes::Bytes;
use num_bigint::BigInt;
use num_traits::ToPrimitive;

use crate::value::{ByteOrder, DType, Layout, NdArray, Value};

/// Why a JSON value has no array form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArrayError {
    #[error("{0} has no array form (expected a number or a list of numbers)")]
    NotNumeric(&'static str),
    #[error("the nested lists are ragged (not rectangular), so they have no array form")]
    Ragged,
    #[error("the list holds {0}, so numpy would make an object array")]
    Object(&'static str),
    #[error("the list holds strings, so numpy would make a unicode array, which binary cannot store")]
    Unicode,
}

/// `np.array(b)`: a 0-d `S<len>` array (`b""` gives `|S1` holding one NUL).
pub fn bytes_array(b: &[u8]) -> NdArray {
    let data = if b.is_empty() { vec![0u8] } else { b.to_vec() };
    NdArray {
        dtype: DType::Simple { kind: 'S', order: ByteOrder::NotApplicable, size: data.len() },
        shape: Vec::new(),
        layout: Layout::C,
        data: Bytes::from(data),
    }
}

pub fn is_bytes_dtype(dtype: &DType) -> bool {
    matches!(dtype, DType::Simple { kind: 'S', .. })
}

/// numpy's `str(dtype)` for the dtypes `from_json` builds.
pub fn dtype_name(dtype: &DType) -> &'static str {
    match dtype {
        DType::Simple { kind: 'b', .. } => "bool",
        DType::Simple { kind: 'u', .. } => "uint64",
        DType::Simple { kind: 'i', .. } => "int64",
        _ => "float64",
    }
}

/// A parsed value reduced to a scalar, as the `possible` conversions need it: a numpy scalar
/// (or 0-d array) becomes the Python scalar, a 0-d bytes array stays as it is (its `str()` is
/// numpy's), containers and arrays are refused (`Err` names what the value is).
pub fn scalar_value(value: Value) -> Result<Value, String> {
    match value {
        Value::Dict(_) => Err("a dict".into()),
        Value::List(_) | Value::Tuple(_) => Err("a list".into()),
        Value::Array(a) if !a.shape.is_empty() => Err(format!("an array of shape {:?}", a.shape)),
        Value::Array(a) if is_bytes_dtype(&a.dtype) => Ok(Value::Array(a)),
        Value::Array(a) | Value::Scalar(a) => {
            element(&a.dtype, &a.data, false).ok_or_else(|| format!("a numpy {} scalar", describe(&a.dtype)))
        }
        other => Ok(other),
    }
}

/// The value numpy gives for a 0-d bytes array's element: the bytes without trailing NULs.
pub fn bytes_element(a: &NdArray) -> Value {
    let end = a.data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    Value::Bytes(a.data.slice(..end))
}

/// `str()` of a 0-d bytes array in numpy 2: `np.bytes_(b'...')`.
pub fn bytes_scalar_repr(a: &NdArray) -> String {
    let Value::Bytes(b) = bytes_element(a) else { unreachable!() };
    format!("np.bytes_({})", python_bytes_repr(&b))
}

/// Python's `repr(bytes)`.
fn python_bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') { '"' } else { '\'' };
    let mut out = format!("b{quote}");
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            c if c == quote as u8 => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push(quote);
    out
}

/// A short description of a dtype for messages (`|S3`, `<f8`, `a struct`).
fn describe(dtype: &DType) -> String {
    match dtype {
        DType::Simple { kind, order, size } => {
            let o = match order {
                ByteOrder::Little => '<',
                ByteOrder::Big => '>',
                ByteOrder::NotApplicable => '|',
            };
            format!("{o}{kind}{size}")
        }
        DType::Struct(_) => "structured".into(),
    }
}

/// One element of a numeric or bool dtype as a Python value. `json` selects orjson's view of
/// float32/float16 (the shortest float32 text, read back as a double) over Python's (the exact
/// widening). `None` for dtypes without a Python scalar form here (bytes, structs, longdouble).
fn element(dtype: &DType, raw: &[u8], json: bool) -> Option<Value> {
    let DType::Simple { kind, order, size } = dtype else { return None };
    let mut b = raw.get(..*size)?.to_vec();
    if *order == ByteOrder::Big {
        b.reverse();
    }
    let le = |n: usize| -> [u8; 8] {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(&b[..n]);
        w
    };
    Some(match (kind, size) {
        ('b', 1) => Value::Bool(b[0] != 0),
        ('u', 1 | 2 | 4 | 8) => Value::Int(BigInt::from(u64::from_le_bytes(le(*size)))),
        ('i', 1 | 2 | 4 | 8) => {
            // Sign-extend from the element width.
            let shift = 64 - 8 * *size as u32;
            Value::Int(BigInt::from((i64::from_le_bytes(le(*size)) << shift) >> shift))
        }
        ('f', 8) => Value::Float(f64::from_le_bytes(le(8))),
        ('f', 4) => Value::Float(f32_value(f32::from_le_bytes([b[0], b[1], b[2], b[3]]), json)),
        ('f', 2) => Value::Float(f32_value(f16_to_f32(u16::from_le_bytes([b[0], b[1]])), json)),
        _ => return None,
    })
}

fn f32_value(x: f32, json: bool) -> f64 {
    if json && x.is_finite() {
        ryu::Buffer::new().format_finite(x).parse().expect("ryu writes a valid float")
    } else {
        x as f64
    }
}

/// IEEE half precision to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = (h >> 10) & 0x1f;
    let frac = (h & 0x3ff) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        0x1f if frac == 0.0 => sign * f32::INFINITY,
        0x1f => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e as i32 - 15),
    }
}

/// An array (or numpy scalar) as the JSON value orjson writes for it: nested lists, a 0-d array
/// as its element. Bytes and structured dtypes have no JSON form.
pub fn to_json(value: &Value) -> Result<Value, String> {
    let a = match value {
        Value::Array(a) | Value::Scalar(a) => a,
        _ => return Err("the buffer does not hold a numpy array".into()),
    };
    let itemsize = a.dtype.itemsize();
    let no_form = || format!("arrays of dtype {} have no JSON form", describe(&a.dtype));
    let mut items = Vec::with_capacity(a.len());
    for raw in a.data.chunks(itemsize.max(1)).take(a.len()) {
        items.push(element(&a.dtype, raw, true).ok_or_else(no_form)?);
    }
    if a.len() == 0 && element(&a.dtype, &vec![0u8; itemsize], true).is_none() {
        return Err(no_form());
    }
    Ok(nest(&mut items.into_iter(), &a.shape))
}

/// Nested lists of `shape` from a C-order stream of elements.
fn nest(items: &mut impl Iterator<Item = Value>, shape: &[usize]) -> Value {
    match shape.split_first() {
        None => items.next().expect("one element per index"),
        Some((&n, rest)) => Value::List((0..n).map(|_| nest(items, rest)).collect()),
    }
}

/// `np.array(value)` for a parsed plain value, refused where the result would not be a
/// numeric or bool array (seamless then fails, or writes a broken buffer for unicode arrays).
pub fn from_json(value: &Value) -> Result<NdArray, ArrayError> {
    match value {
        Value::Bool(_) | Value::Int(_) | Value::Float(_) => scalar_array(value),
        Value::List(_) => list_array(value),
        Value::Str(_) | Value::Surrogates(_) => Err(ArrayError::NotNumeric("a string")),
        Value::Dict(_) => Err(ArrayError::NotNumeric("a dict")),
        Value::None => Err(ArrayError::NotNumeric("null")),
        _ => Err(ArrayError::NotNumeric("this value")),
    }
}

/// A 0-d array of a Python scalar: `<i8` (`<u8` above the int64 range), `<f8`, `|b1`.
fn scalar_array(value: &Value) -> Result<NdArray, ArrayError> {
    let kind = match value {
        Value::Bool(_) => Kind::Bool,
        Value::Float(_) => Kind::Float,
        Value::Int(i) if i.to_i64().is_some() => Kind::Int,
        Value::Int(i) if i.to_u64().is_some() => Kind::UInt,
        _ => return Err(ArrayError::NotNumeric("an integer beyond 64 bits")),
    };
    Ok(build(kind, Vec::new(), &[value]))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Int,
    UInt,
    Float,
}

fn list_array(value: &Value) -> Result<NdArray, ArrayError> {
    let shape = shape_of(value);
    let mut leaves = Vec::new();
    collect(value, &shape, &mut leaves)?;
    if leaves.iter().any(|v| matches!(v, Value::None)) {
        return Err(ArrayError::Object("null"));
    }
    if leaves.iter().any(|v| matches!(v, Value::Dict(_))) {
        return Err(ArrayError::Object("a dict"));
    }
    if leaves.iter().any(|v| matches!(v, Value::Str(_) | Value::Surrogates(_))) {
        return Err(ArrayError::Unicode);
    }
    let ints: Vec<BigInt> = leaves
        .iter()
        .filter_map(|v| match v {
            Value::Int(i) => Some(i.clone()),
            _ => None,
        })
        .collect();
    let kind = if leaves.is_empty() || leaves.iter().any(|v| matches!(v, Value::Float(_))) {
        Kind::Float
    } else if ints.is_empty() {
        Kind::Bool
    } else if ints.iter().all(|i| i.to_i64().is_some()) {
        Kind::Int
    } else if ints.iter().all(|i| i.to_u64().is_some()) {
        Kind::UInt
    } else {
        // numpy 2 falls back to float64 for ints that fit neither int64 nor uint64 together.
        Kind::Float
    };
    Ok(build(kind, shape, &leaves))
}

/// The shape numpy sees: the lengths along the first element at each depth.
fn shape_of(value: &Value) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut v = value;
    while let Value::List(items) = v {
        shape.push(items.len());
        match items.first() {
            Some(first) => v = first,
            None => break,
        }
    }
    shape
}

/// The leaves in C order, checking that every list has the shape's length at its depth.
fn collect<'a>(value: &'a Value, shape: &[usize], out: &mut Vec<&'a Value>) -> Result<(), ArrayError> {
    match (value, shape.split_first()) {
        (Value::List(items), Some((&n, rest))) if items.len() == n => {
            items.iter().try_for_each(|item| collect(item, rest, out))
        }
        (Value::List(_), _) => Err(ArrayError::Ragged),
        (_, Some(_)) => Err(ArrayError::Ragged),
        (leaf, None) => {
            out.push(leaf);
            Ok(())
        }
    }
}

/// Write the leaves as little-endian elements of `kind`.
fn build(kind: Kind, shape: Vec<usize>, leaves: &[&Value]) -> NdArray {
    let (dtype_kind, order, size) = match kind {
        Kind::Bool => ('b', ByteOrder::NotApplicable, 1),
        Kind::Int => ('i', ByteOrder::Little, 8),
        Kind::UInt => ('u', ByteOrder::Little, 8),
        Kind::Float => ('f', ByteOrder::Little, 8),
    };
    let mut data = Vec::with_capacity(leaves.len() * size);
    for leaf in leaves {
        let (b, i, f) = match leaf {
            Value::Bool(b) => (*b, BigInt::from(*b as u8), *b as u8 as f64),
            Value::Int(i) => (i.sign() != num_bigint::Sign::NoSign, i.clone(), i.to_f64().unwrap_or(f64::NAN)),
            Value::Float(f) => (*f != 0.0, BigInt::from(0), *f),
            _ => unreachable!("only numbers and bools reach the array builder"),
        };
        match kind {
            Kind::Bool => data.push(b as u8),
            Kind::Int => data.extend_from_slice(&i.to_i64().expect("checked range").to_le_bytes()),
            Kind::UInt => data.extend_from_slice(&i.to_u64().expect("checked range").to_le_bytes()),
            Kind::Float => data.extend_from_slice(&f.to_le_bytes()),
        }
    }
    NdArray {
        dtype: DType::Simple { kind: dtype_kind, order, size },
        shape,
        layout: Layout::C,
        data: Bytes::from(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: Vec<Value>) -> Value {
        Value::List(items)
    }

    #[test]
    fn numpy_dtype_inference() {
        let ints = list(vec![Value::int(1), Value::Bool(true)]);
        assert_eq!(dtype_name(&from_json(&ints).unwrap().dtype), "int64");
        let floats = list(vec![Value::int(1), Value::Float(2.5)]);
        assert_eq!(dtype_name(&from_json(&floats).unwrap().dtype), "float64");
        let big = list(vec![Value::int(1u64 << 63)]);
        assert_eq!(dtype_name(&from_json(&big).unwrap().dtype), "uint64");
        let big_neg = list(vec![Value::int(1u64 << 63), Value::int(-1)]);
        assert_eq!(dtype_name(&from_json(&big_neg).unwrap().dtype), "float64");
        let empty = from_json(&list(vec![])).unwrap();
        assert_eq!((dtype_name(&empty.dtype), empty.shape.clone()), ("float64", vec![0]));
        let nested = from_json(&list(vec![list(vec![]), list(vec![])])).unwrap();
        assert_eq!(nested.shape, vec![2, 0]);
        let ragged = list(vec![list(vec![Value::int(1)]), list(vec![Value::int(2), Value::int(3)])]);
        assert_eq!(from_json(&ragged), Err(ArrayError::Ragged));
        assert_eq!(from_json(&list(vec![Value::int(1), list(vec![])])), Err(ArrayError::Ragged));
        assert_eq!(from_json(&list(vec![Value::int(1), Value::str("a")])), Err(ArrayError::Unicode));
        assert_eq!(from_json(&list(vec![Value::int(1), Value::None])), Err(ArrayError::Object("null")));
        assert_eq!(from_json(&Value::int(1u64 << 63)).unwrap().dtype, DType::Simple { kind: 'u', order: ByteOrder::Little, size: 8 });
    }

    #[test]
    fn arrays_as_json_values() {
        let a = from_json(&list(vec![list(vec![Value::int(-1), Value::int(2)])])).unwrap();
        assert_eq!(to_json(&Value::Array(a)).unwrap(), list(vec![list(vec![Value::int(-1), Value::int(2)])]));
        let f32s = NdArray {
            dtype: DType::Simple { kind: 'f', order: ByteOrder::Little, size: 4 },
            shape: vec![],
            layout: Layout::C,
            data: Bytes::from(0.1f32.to_le_bytes().to_vec()),
        };
        assert_eq!(to_json(&Value::Scalar(f32s.clone())).unwrap(), Value::Float(0.1));
        assert_eq!(scalar_value(Value::Scalar(f32s)).unwrap(), Value::Float(0.1f32 as f64));
        assert!(to_json(&Value::Array(bytes_array(b"abc"))).is_err());
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0x2e66), 0.099975586);
    }

    #[test]
    fn bytes_arrays() {
        let a = bytes_array(b"");
        assert_eq!((a.dtype.itemsize(), &a.data[..]), (1, &b"\0"[..]));
        assert_eq!(bytes_element(&a), Value::Bytes(Bytes::new()));
        assert_eq!(bytes_scalar_repr(&bytes_array(b"hello world\n")), "np.bytes_(b'hello world\\n')");
        assert_eq!(python_bytes_repr(b"it's\x00"), "b\"it's\\x00\"");
    }
}
