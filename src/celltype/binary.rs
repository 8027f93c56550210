//! The `binary` cell type (spec §2.7): bytes as is, anything else through `np.array(value)` and
//! the pure-binary branch of `mixed`; parsing accepts only pure-binary buffers.

use num_bigint::BigInt;
use num_traits::ToPrimitive;

use super::mixed::{self, Storage};
use super::pyrepr::py_str;
use super::{CellError, PyErrorKind};
use crate::value::{ByteOrder, DType, Layout, NdArray, Value, new_strides};

/// Serialize as `binary`.
pub fn serialize(value: &Value) -> Result<Vec<u8>, CellError> {
    match value {
        Value::Bytes(b) => Ok(b.to_vec()),
        _ => mixed::serialize(&Value::Array(to_numpy(value)?)),
    }
}

/// Parse a `binary` buffer: `.npy`, or a non-JSON text as a 0-d `S` array; JSON and mixed
/// containers are rejected with seamless-core's bare `TypeError`.
pub fn deserialize(buf: &[u8]) -> Result<Value, CellError> {
    match mixed::deserialize_with_storage(buf)? {
        (Storage::PureBinary, v) => Ok(v),
        (storage, _) => Err(
            CellError::new(PyErrorKind::TypeError, "").with_detail(format!(
                "the buffer holds {} data, not a numpy array; read it as mixed",
                storage.name()
            )),
        ),
    }
}

/// `np.array(a)` copies in memory order (`order='K'`, numpy's `PyArray_NewLikeArray`): a new
/// C- or Fortran-ordered array where `a` is C- or F-contiguous, else one whose axes run in the
/// order of `a`'s stride sizes (largest first, ties in axis order).
fn copied(a: &NdArray) -> NdArray {
    let item = a.dtype.itemsize();
    let strides = if a.c_contiguous() {
        new_strides(&a.shape, item, false)
    } else if a.f_contiguous() {
        new_strides(&a.shape, item, true)
    } else {
        let old = a.strides();
        let mut axes: Vec<usize> = (0..a.shape.len()).collect();
        axes.sort_by_key(|&d| std::cmp::Reverse(old[d].unsigned_abs()));
        let mut strides = vec![0i64; a.shape.len()];
        let mut step = item as i64;
        for &d in axes.iter().rev() {
            strides[d] = step;
            step *= a.shape[d] as i64;
        }
        strides
    };
    NdArray {
        layout: Layout::of_strides(&a.shape, item, strides),
        ..a.clone()
    }
}

/// What numpy makes of a Python leaf when building an array from nested lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Leaf {
    Bool,
    Int,
    Float,
    Bytes,
    Str,
    Object,
}

fn leaf_kind(v: &Value) -> Leaf {
    match v {
        Value::Bool(_) => Leaf::Bool,
        Value::Int(_) => Leaf::Int,
        Value::Float(_) => Leaf::Float,
        Value::Str(_) | Value::Surrogates(_) => Leaf::Str,
        Value::Bytes(_) => Leaf::Bytes,
        _ => Leaf::Object,
    }
}

fn object_error() -> CellError {
    CellError::new(
        PyErrorKind::TypeError,
        "mixed-binary (PyObject inside Numpy) is not supported",
    )
}

/// `np.array(value)` for Python values (numbers, str, bytes, nested lists/tuples of them) and
/// numpy values; dicts, None and other objects give numpy's object arrays, which seamless rejects.
pub fn to_numpy(value: &Value) -> Result<NdArray, CellError> {
    match value {
        Value::Array(a) | Value::Scalar(a) => return Ok(copied(a)),
        Value::List(_) | Value::Tuple(_) => {}
        _ => return build(&[value], vec![]),
    }
    // numpy discovers the shape level by level: every node of a level must be a sequence of
    // the same length (one more dimension), or none may be (the leaves, in C order).
    let mut shape = Vec::new();
    let mut level = vec![value];
    loop {
        let sequences: Vec<&[Value]> = level
            .iter()
            .filter_map(|v| match v {
                Value::List(items) | Value::Tuple(items) => Some(items.as_slice()),
                _ => None,
            })
            .collect();
        if sequences.is_empty() {
            break;
        }
        if shape.len() == MAX_DIMS {
            return Err(CellError::new(
                PyErrorKind::ValueError,
                format!(
                    "setting an array element with a sequence. The requested array would exceed the maximum number of dimension of {MAX_DIMS}."
                ),
            ));
        }
        let n = sequences[0].len();
        if sequences.len() != level.len() || sequences.iter().any(|s| s.len() != n) {
            return Err(inhomogeneous(&shape));
        }
        shape.push(n);
        level = sequences.into_iter().flatten().collect();
    }
    if level.iter().any(|v| matches!(v, Value::Array(_))) {
        return Err(CellError::new(
            PyErrorKind::TypeError,
            "a list of numpy arrays is not supported as binary",
        )
        .with_detail("stack the arrays into one array first"));
    }
    build(&level, shape)
}

/// numpy's `NPY_MAXDIMS`.
const MAX_DIMS: usize = 64;

/// numpy's error for ragged nesting, after the dimensions it could discover.
fn inhomogeneous(shape: &[usize]) -> CellError {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    CellError::new(
        PyErrorKind::ValueError,
        format!(
            "setting an array element with a sequence. The requested array has an inhomogeneous shape after {} dimensions. The detected shape was {tuple} + inhomogeneous part.",
            shape.len()
        ),
    )
}

/// The array numpy builds from these leaves: bool < int64 (uint64 beyond, float64 if signs mix) <
/// float64; any str gives a `U` array, all bytes an `S` array, anything else an object array.
fn build(leaves: &[&Value], shape: Vec<usize>) -> Result<NdArray, CellError> {
    let kind = leaves
        .iter()
        .map(|v| leaf_kind(v))
        .max()
        .unwrap_or(Leaf::Float);
    let has = |k: Leaf| leaves.iter().any(|v| leaf_kind(v) == k);
    // A Python int beyond 64 bits makes an object array, whatever else is there.
    let huge = |v: &Value| matches!(v, Value::Int(i) if i64::try_from(i).is_err() && u64::try_from(i).is_err());
    if kind == Leaf::Object
        || leaves.iter().any(|v| huge(v))
        || (has(Leaf::Bytes) && leaves.iter().any(|v| leaf_kind(v) != Leaf::Bytes))
    {
        return Err(object_error());
    }
    let (dtype, data) = match kind {
        Leaf::Bool => (
            DType::simple('b', ByteOrder::NotApplicable, 1),
            leaves
                .iter()
                .map(|v| matches!(v, Value::Bool(true)) as u8)
                .collect(),
        ),
        Leaf::Int => int_array(leaves)?,
        Leaf::Float => (
            DType::simple('f', ByteOrder::Little, 8),
            floats(leaves).flat_map(f64::to_le_bytes).collect(),
        ),
        Leaf::Bytes => {
            let raw: Vec<&[u8]> = leaves
                .iter()
                .map(|v| match v {
                    Value::Bytes(b) => &b[..],
                    _ => &[][..],
                })
                .collect();
            let width = raw.iter().map(|b| b.len()).max().unwrap_or(0).max(1);
            let mut data = Vec::with_capacity(width * raw.len());
            for b in raw {
                data.extend_from_slice(b);
                data.resize(data.len() + width - b.len(), 0);
            }
            (DType::simple('S', ByteOrder::NotApplicable, width), data)
        }
        Leaf::Str => unicode_array(leaves)?,
        Leaf::Object => unreachable!("rejected above"),
    };
    Ok(NdArray {
        dtype,
        shape,
        layout: Layout::C,
        data: data.into(),
    })
}

fn as_int(v: &Value) -> BigInt {
    match v {
        Value::Int(i) => i.clone(),
        Value::Bool(b) => BigInt::from(*b as u8),
        _ => unreachable!("only ints and bools reach int arrays"),
    }
}

fn floats<'a>(leaves: &'a [&'a Value]) -> impl Iterator<Item = f64> + 'a {
    leaves.iter().map(|v| match v {
        Value::Float(x) => *x,
        Value::Bool(b) => *b as u8 as f64,
        Value::Int(i) => i.to_f64().unwrap_or(f64::INFINITY),
        _ => unreachable!("only numbers reach float arrays"),
    })
}

fn int_array(leaves: &[&Value]) -> Result<(DType, Vec<u8>), CellError> {
    let ints: Vec<BigInt> = leaves.iter().map(|v| as_int(v)).collect();
    if let Ok(xs) = ints
        .iter()
        .map(i64::try_from)
        .collect::<Result<Vec<i64>, _>>()
    {
        return Ok((
            DType::simple('i', ByteOrder::Little, 8),
            xs.into_iter().flat_map(i64::to_le_bytes).collect(),
        ));
    }
    if let Ok(xs) = ints
        .iter()
        .map(u64::try_from)
        .collect::<Result<Vec<u64>, _>>()
    {
        return Ok((
            DType::simple('u', ByteOrder::Little, 8),
            xs.into_iter().flat_map(u64::to_le_bytes).collect(),
        ));
    }
    if ints
        .iter()
        .all(|i| i64::try_from(i).is_ok() || u64::try_from(i).is_ok())
    {
        return Ok((
            DType::simple('f', ByteOrder::Little, 8),
            floats(leaves).flat_map(f64::to_le_bytes).collect(),
        ));
    }
    Err(object_error())
}

/// A `U` array: each leaf as `str()`, UTF-32LE, NUL-padded to the longest.
fn unicode_array(leaves: &[&Value]) -> Result<(DType, Vec<u8>), CellError> {
    let texts: Vec<Vec<u32>> = leaves
        .iter()
        .map(|v| match v {
            Value::Surrogates(u) => Ok(u.clone()),
            other => Ok(py_str(other)?.chars().map(|c| c as u32).collect()),
        })
        .collect::<Result<_, CellError>>()?;
    let width = texts.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut data = Vec::with_capacity(width * 4 * texts.len());
    for t in &texts {
        for i in 0..width {
            data.extend_from_slice(&t.get(i).copied().unwrap_or(0).to_le_bytes());
        }
    }
    Ok((DType::simple('U', ByteOrder::Little, width * 4), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_coercion() {
        let a = to_numpy(&Value::List(vec![Value::int(1), Value::Float(1.5)])).unwrap();
        assert_eq!((a.dtype.typestr(), a.shape), ("<f8".to_string(), vec![2]));
        let a = to_numpy(&Value::List(vec![Value::int(u64::MAX)])).unwrap();
        assert_eq!(a.dtype.typestr(), "<u8");
        let a = to_numpy(&Value::List(vec![Value::int(u64::MAX), Value::int(-1)])).unwrap();
        assert_eq!(a.dtype.typestr(), "<f8");
        let a = to_numpy(&Value::Bool(true)).unwrap();
        assert_eq!((a.dtype.typestr(), a.shape.len()), ("|b1".to_string(), 0));
        let ragged = Value::List(vec![Value::List(vec![Value::int(1)]), Value::int(2)]);
        assert!(
            to_numpy(&ragged)
                .unwrap_err()
                .message
                .contains("inhomogeneous shape after 1 dimensions. The detected shape was (2,)")
        );
        assert_eq!(to_numpy(&Value::None).unwrap_err(), object_error());
    }

    #[test]
    fn unicode_bug_path() {
        assert_eq!(serialize(&Value::str("hello")).unwrap(), b"\"h\"\n");
        assert_eq!(
            serialize(&Value::List(vec![Value::int(1), Value::str("a")])).unwrap(),
            b"\"1\"\n"
        );
        assert_eq!(
            serialize(&Value::str("")).unwrap_err().kind,
            PyErrorKind::IndexError
        );
    }
}
