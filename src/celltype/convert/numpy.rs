//! The numpy semantics the value conversions need on top of the codecs: which plain values
//! `np.array` turns into a storable array (`plain → binary`), an array as the JSON value orjson's
//! `OPT_SERIALIZE_NUMPY` writes (`binary → plain`), and numpy scalars as Python values.

use crate::celltype::PyErrorKind;
use crate::celltype::binary::to_numpy;
use crate::celltype::pyrepr::bytes_repr;
use crate::value::{DType, NdArray, Value};

/// Why a plain value has no array form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArrayError {
    #[error("{0} has no array form (expected a number or a list of numbers)")]
    NotNumeric(&'static str),
    #[error("the nested lists are not rectangular, so they have no array form ({0})")]
    Ragged(String),
    #[error(
        "the list holds null or dicts, so numpy would make an object array, which binary cannot store"
    )]
    Object,
    #[error(
        "the list holds strings, so numpy would make a unicode array, which binary cannot store"
    )]
    Unicode,
}

pub fn is_bytes_dtype(dtype: &DType) -> bool {
    matches!(dtype, DType::Simple { kind: 'S', .. })
}

/// `np.array(value)` for a parsed plain value: a number gives a 0-d array, a rectangular list of
/// numbers and bools an `int64`/`uint64`/`float64`/`bool` array. Anything else is refused
/// (seamless refuses it too, except unicode arrays, which it writes as broken buffers).
pub fn from_json(value: &Value) -> Result<NdArray, ArrayError> {
    match value {
        Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::List(_) => {}
        Value::Str(_) | Value::Surrogates(_) => return Err(ArrayError::NotNumeric("a string")),
        Value::Dict(_) => return Err(ArrayError::NotNumeric("a dict")),
        Value::None => return Err(ArrayError::NotNumeric("null")),
        _ => return Err(ArrayError::NotNumeric("this value")),
    }
    let array = to_numpy(value).map_err(|e| match e.kind {
        PyErrorKind::ValueError => ArrayError::Ragged(e.message),
        _ => ArrayError::Object,
    })?;
    match array.dtype {
        DType::Simple { kind: 'U', .. } => Err(ArrayError::Unicode),
        _ => Ok(array),
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
        Value::Array(a) | Value::Scalar(a) => a
            .scalar_to_python()
            .ok_or_else(|| format!("a numpy {} scalar", a.dtype.numpy_name())),
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
    let Value::Bytes(b) = bytes_element(a) else {
        unreachable!("bytes_element gives bytes")
    };
    format!("np.bytes_({})", bytes_repr(&b))
}

/// An array (or numpy scalar) as the JSON value orjson writes for it: nested lists, a 0-d array
/// as its element. Bytes, structured and other dtypes have no JSON form.
pub fn to_json(value: &Value) -> Result<Value, String> {
    let a = match value {
        Value::Array(a) | Value::Scalar(a) => a,
        _ => return Err("the buffer does not hold a numpy array".into()),
    };
    let no_form = || format!("arrays of dtype {} have no JSON form", a.dtype.typestr());
    if !matches!(
        a.dtype,
        DType::Simple {
            kind: 'b' | 'i' | 'u' | 'f',
            size: 1 | 2 | 4 | 8,
            ..
        }
    ) {
        return Err(no_form());
    }
    let items = (0..a.len()).map(|i| {
        a.element(i)
            .map(|v| json_float(v, &a.dtype))
            .ok_or_else(no_form)
    });
    let items = items.collect::<Result<Vec<_>, _>>()?;
    Ok(nest(&mut items.into_iter(), &a.shape))
}

/// orjson writes a float32 or float16 element with the shortest float32 digits (`0.1`, not
/// the widened `0.10000000149011612`); the JSON value is that text read back as a double.
fn json_float(v: Value, dtype: &DType) -> Value {
    match (v, dtype) {
        (Value::Float(x), DType::Simple { size: 2 | 4, .. }) if x.is_finite() => {
            let digits = ryu::Buffer::new().format_finite(x as f32).to_string();
            Value::Float(digits.parse().expect("ryu writes a valid float"))
        }
        (v, _) => v,
    }
}

/// Nested lists of `shape` from a C-order stream of elements.
fn nest(items: &mut impl Iterator<Item = Value>, shape: &[usize]) -> Value {
    match shape.split_first() {
        None => items.next().expect("one element per index"),
        Some((&n, rest)) => Value::List((0..n).map(|_| nest(items, rest)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::celltype::mixed::bytes_array;
    use crate::value::{ByteOrder, Layout};
    use bytes::Bytes;

    fn list(items: Vec<Value>) -> Value {
        Value::List(items)
    }

    #[test]
    fn plain_values_as_arrays() {
        let ints = from_json(&list(vec![Value::int(1), Value::Bool(true)])).unwrap();
        assert_eq!(ints.dtype.numpy_name(), "int64");
        let ragged = list(vec![
            list(vec![Value::int(1)]),
            list(vec![Value::int(2), Value::int(3)]),
        ]);
        assert!(matches!(from_json(&ragged), Err(ArrayError::Ragged(_))));
        assert_eq!(
            from_json(&list(vec![Value::int(1), Value::str("a")])),
            Err(ArrayError::Unicode)
        );
        assert_eq!(
            from_json(&list(vec![Value::int(1), Value::None])),
            Err(ArrayError::Object)
        );
        assert_eq!(
            from_json(&Value::str("a")),
            Err(ArrayError::NotNumeric("a string"))
        );
    }

    #[test]
    fn arrays_as_json_values() {
        let a = from_json(&list(vec![list(vec![Value::int(-1), Value::int(2)])])).unwrap();
        assert_eq!(
            to_json(&Value::Array(a)).unwrap(),
            list(vec![list(vec![Value::int(-1), Value::int(2)])])
        );
        let f32s = NdArray {
            dtype: DType::simple('f', ByteOrder::Little, 4),
            shape: vec![],
            layout: Layout::C,
            data: Bytes::from(0.1f32.to_le_bytes().to_vec()),
        };
        assert_eq!(
            to_json(&Value::Scalar(f32s.clone())).unwrap(),
            Value::Float(0.1)
        );
        assert_eq!(
            scalar_value(Value::Scalar(f32s)).unwrap(),
            Value::Float(0.1f32 as f64)
        );
        let f16 = NdArray {
            dtype: DType::simple('f', ByteOrder::Little, 2),
            data: Bytes::from_static(&[0x66, 0x2e]),
            ..bytes_array(b"")
        };
        assert_eq!(
            to_json(&Value::Scalar(f16)).unwrap(),
            Value::Float(0.099975586)
        );
        assert!(to_json(&Value::Array(bytes_array(b"abc"))).is_err());
    }

    #[test]
    fn bytes_scalars() {
        assert_eq!(bytes_element(&bytes_array(b"")), Value::Bytes(Bytes::new()));
        assert_eq!(
            bytes_scalar_repr(&bytes_array(b"hello world\n")),
            "np.bytes_(b'hello world\\n')"
        );
    }
}
