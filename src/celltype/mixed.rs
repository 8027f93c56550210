//! The `mixed` cell type (spec §2.8): `get_form` (storage and form, exact key order), pure-plain
//! values as Python json, pure-binary values as `.npy`, and the `\x94SEAMLESS-MIXED` container
//! for everything in between; and parsing all three back.

use std::borrow::Cow;

use bytes::Bytes;

use super::json_parse::{Dialect, parse, parse_with_depth};
use super::json_python::{self, Style};
use super::npy::{self, is_native};
use super::pyrepr::{PY_RECURSION_LIMIT, exceeded, sorted_keys};
use super::text::decode_utf8;
use super::{CellError, PyErrorKind, with_stack};
use crate::value::{ByteOrder, DType, Dict, Field, Key, Layout, NdArray, Value};

pub const MIXED_MAGIC: &[u8] = b"\x94SEAMLESS-MIXED";
/// The inner stream's magic; a buffer starting with it is rejected (`AssertionError`).
const SEAMLESS_MAGIC: &[u8] = b"\x93SEAMLESS";

/// How a value is stored: JSON, `.npy`, or the mixed container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    PurePlain,
    PureBinary,
    MixedPlain,
}

impl Storage {
    pub fn name(self) -> &'static str {
        match self {
            Storage::PurePlain => "pure-plain",
            Storage::PureBinary => "pure-binary",
            Storage::MixedPlain => "mixed-plain",
        }
    }
}

fn type_error(message: impl Into<String>) -> CellError {
    CellError::new(PyErrorKind::TypeError, message)
}

/// A form dict with string keys in the given order.
fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::Dict(
        pairs
            .into_iter()
            .map(|(k, v)| (Key::Str(k.into()), v))
            .collect(),
    )
}

fn int_list(xs: impl IntoIterator<Item = i64>) -> Value {
    Value::List(xs.into_iter().map(Value::int).collect())
}

/// A `bytes` value as numpy sees it: a 0-d `S<n>` array (`S1` holding a NUL for `b""`).
pub fn bytes_array(b: &[u8]) -> NdArray {
    let mut data = b.to_vec();
    if data.is_empty() {
        data.push(0);
    }
    NdArray {
        dtype: DType::simple('S', ByteOrder::NotApplicable, data.len()),
        shape: vec![],
        layout: Layout::C,
        data: data.into(),
    }
}

/// The `(storage, form)` seamless-core's `get_form` computes.
pub fn get_form(v: &Value) -> Result<(Storage, Value), CellError> {
    form_at(v, 0)
}

fn form_at(v: &Value, depth: usize) -> Result<(Storage, Value), CellError> {
    with_stack(|| form_at_inner(v, depth))
}

fn form_at_inner(v: &Value, depth: usize) -> Result<(Storage, Value), CellError> {
    if depth > PY_RECURSION_LIMIT {
        return Err(CellError::new(
            PyErrorKind::RecursionError,
            "maximum recursion depth exceeded in get_form",
        ));
    }
    let plain = |s: &str| Ok((Storage::PurePlain, Value::str(s)));
    match v {
        Value::None => plain("null"),
        Value::Bool(_) => plain("boolean"),
        Value::Int(_) => plain("integer"),
        Value::Float(_) => plain("number"),
        Value::Str(_) | Value::Surrogates(_) | Value::Checksum(_) => plain("string"),
        Value::Bytes(b) => Ok((Storage::PureBinary, array_form(&bytes_array(b))?)),
        Value::Array(a) => Ok((Storage::PureBinary, array_form(a)?)),
        Value::Scalar(a) => match a.dtype {
            DType::Simple {
                kind: 'i' | 'u', ..
            } => plain("integer"),
            DType::Simple { kind: 'f', .. } => plain("number"),
            DType::Simple { kind: 'U', .. } => plain("string"),
            // np.bytes_ is a bytes: an `S` array; np.void: its struct form.
            DType::Simple { kind: 'S', .. } => Ok((Storage::PureBinary, array_form(a)?)),
            DType::Struct(_) => Ok((Storage::PureBinary, item_form_checked(&a.dtype)?)),
            _ => Err(type_error(format!(
                "<class 'numpy.{}'>",
                a.dtype.numpy_name()
            ))),
        },
        Value::Dict(d) => dict_form(d, depth),
        Value::Set(_) => Err(type_error("<class 'set'>")),
        Value::Date(_) => Err(type_error("<class 'datetime.date'>")),
        Value::DateTime(_) => Err(type_error("<class 'datetime.datetime'>")),
        Value::List(items) | Value::Tuple(items) => list_form(items, depth),
    }
}

/// A child's form inside a container, with `"storage"` appended when it is not pure-plain.
fn tagged(storage: Storage, form: Value) -> Value {
    if storage == Storage::PurePlain {
        return form;
    }
    let mut d = match form {
        Value::Dict(d) => d,
        other => Dict::from([(Key::Str("type".into()), other)]),
    };
    d.insert(Key::Str("storage".into()), Value::str(storage.name()));
    Value::Dict(d)
}

fn dict_form(d: &Dict, depth: usize) -> Result<(Storage, Value), CellError> {
    if d.is_empty() {
        return Ok((
            Storage::PurePlain,
            obj(vec![("type", Value::str("object"))]),
        ));
    }
    let mut props = Dict::new();
    let mut all_plain = true;
    for (k, child) in d {
        let (storage, form) = form_at(child, depth + 1)?;
        all_plain &= storage == Storage::PurePlain;
        props.insert(k.clone(), tagged(storage, form));
    }
    let storage = if all_plain {
        Storage::PurePlain
    } else {
        Storage::MixedPlain
    };
    Ok((
        storage,
        obj(vec![
            ("type", Value::str("object")),
            ("properties", Value::Dict(props)),
        ]),
    ))
}

fn list_form(items: &[Value], depth: usize) -> Result<(Storage, Value), CellError> {
    let shape = int_list([items.len() as i64]);
    if items.is_empty() {
        let form = obj(vec![
            ("type", Value::str("array")),
            ("items", Value::None),
            ("identical", Value::Bool(true)),
            ("shape", shape),
        ]);
        return Ok((Storage::PurePlain, form));
    }
    let children = items
        .iter()
        .map(|x| form_at(x, depth + 1))
        .collect::<Result<Vec<_>, _>>()?;
    let all_plain = children.iter().all(|(s, _)| *s == Storage::PurePlain);
    let storage = if all_plain {
        Storage::PurePlain
    } else {
        Storage::MixedPlain
    };
    let identical = children.iter().all(|c| same_form(c, &children[0]));
    let items_form = if identical {
        let (s, f) = children.into_iter().next().expect("non-empty");
        tagged(s, f)
    } else {
        Value::List(children.into_iter().map(|(s, f)| tagged(s, f)).collect())
    };
    let form = obj(vec![
        ("type", Value::str("array")),
        ("items", items_form),
        ("identical", Value::Bool(identical)),
        ("shape", shape),
    ]);
    Ok((storage, form))
}

/// Python `==` on (storage, form) pairs: forms hold only str/int/bool/None/list/dict.
fn same_form(a: &(Storage, Value), b: &(Storage, Value)) -> bool {
    a.0 == b.0 && form_eq(&a.1, &b.1)
}

/// `==` on forms, safe for forms nested past the native stack (the derived `PartialEq` is not).
fn form_eq(a: &Value, b: &Value) -> bool {
    with_stack(|| match (a, b) {
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| form_eq(p, q))
        }
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| form_eq(p, q)))
        }
        _ => a == b,
    })
}

/// `str(dtype)`-style repr used in seamless-core's errors: `dtype('<M8')`, `dtype([('a', '<i4')])`.
fn dtype_repr(dtype: &DType) -> String {
    format!("dtype({})", npy::descr_repr(dtype))
}

/// Check that seamless-core can store this dtype as binary; the error it raises otherwise.
pub fn check_dtype(dtype: &DType) -> Result<(), CellError> {
    if let DType::Simple { kind: 'O', .. } = dtype {
        return Err(type_error(
            "mixed-binary (PyObject inside Numpy) is not supported",
        ));
    }
    if !is_native(dtype) {
        return Err(type_error("dtypes must be native"));
    }
    match dtype {
        DType::Simple {
            kind: 'b' | 'i' | 'u' | 'f' | 'S' | 'U',
            ..
        } => Ok(()),
        DType::Simple { kind: 'c', .. } => Err(type_error(dtype.numpy_name())),
        DType::Struct(s) if s.aligned => s.fields.iter().try_for_each(|f| check_dtype(&f.dtype)),
        _ => Err(type_error(format!(
            "('Composite dtypes must be memory-aligned', {})",
            dtype_repr(dtype)
        ))),
    }
}

/// The form of an element type.
fn item_form(dtype: &DType) -> Value {
    let bytesize = Value::int(dtype.itemsize() as i64);
    match dtype {
        DType::Simple { kind, .. } => {
            let ty = match kind {
                'b' => "boolean",
                'i' | 'u' => "integer",
                'f' => "number",
                _ => "string",
            };
            let mut pairs = vec![("type", Value::str(ty)), ("bytesize", bytesize)];
            if matches!(kind, 'i' | 'u') {
                pairs.push(("unsigned", Value::Bool(*kind == 'u')));
            }
            obj(pairs)
        }
        DType::DateTime { .. } => {
            unreachable!("check_dtype rejects datetime dtypes before any form")
        }
        DType::Struct(s) => {
            let props: Dict = s
                .fields
                .iter()
                .map(|f| (Key::Str(f.name.clone()), field_form(f)))
                .collect();
            let order = Value::List(s.fields.iter().map(|f| Value::str(&f.name)).collect());
            obj(vec![
                ("type", Value::str("object")),
                ("properties", Value::Dict(props)),
                ("bytesize", bytesize),
                ("order", order),
            ])
        }
    }
}

fn field_form(f: &Field) -> Value {
    if f.shape.is_empty() {
        return item_form(&f.dtype);
    }
    obj(vec![
        ("type", Value::str("tuple")),
        ("items", item_form(&f.dtype)),
        ("identical", Value::Bool(true)),
        ("shape", int_list(f.shape.iter().map(|&n| n as i64))),
    ])
}

/// The form of a struct scalar (`np.void`): its element type.
fn item_form_checked(dtype: &DType) -> Result<Value, CellError> {
    check_dtype(dtype)?;
    Ok(item_form(dtype))
}

/// seamless-core's `is_contiguous`: numpy's `C_CONTIGUOUS` flag and, stricter, every stride
/// exactly the C-order one (an axis of length 0 or 1 included).
fn is_contiguous(a: &NdArray) -> bool {
    if !a.c_contiguous() {
        return false;
    }
    let mut stride = a.dtype.itemsize() as i64;
    for (n, s) in a.shape.iter().zip(a.strides()).rev() {
        if s != stride {
            return false;
        }
        stride *= *n as i64;
    }
    true
}

/// The form of a numpy array, with numpy's own strides where it is not contiguous.
fn array_form(a: &NdArray) -> Result<Value, CellError> {
    check_dtype(&a.dtype)?;
    let contiguous = is_contiguous(a);
    let mut pairs = vec![
        ("type", Value::str("array")),
        ("items", item_form(&a.dtype)),
        ("identical", Value::Bool(true)),
        ("shape", int_list(a.shape.iter().map(|&n| n as i64))),
        ("contiguous", Value::Bool(contiguous)),
    ];
    if !contiguous {
        pairs.push(("strides", int_list(a.strides())));
    }
    Ok(obj(pairs))
}

/// Serialize as `mixed`.
pub fn serialize(value: &Value) -> Result<Vec<u8>, CellError> {
    super::pyrepr::check_unchecksum_depth(value)?;
    let (storage, form) = get_form(value)?;
    match storage {
        Storage::PurePlain => {
            let top = match value {
                Value::Scalar(a) => Cow::Owned(
                    a.scalar_to_python()
                        .expect("get_form accepts only numeric and str numpy scalars"),
                ),
                _ => Cow::Borrowed(value),
            };
            let mut out = json_python::write(&top, Style::IndentedSorted)?.into_bytes();
            out.push(b'\n');
            Ok(out)
        }
        Storage::PureBinary => pure_binary(value),
        Storage::MixedPlain => {
            check_form_copy_depth(&form, "", FORM_COPY_FRAME)?;
            container(value, &form)
        }
    }
}

/// Where `to_stream`'s `deepcopy(form)` runs for a call from a script's top level: above
/// `<module>`, `serialize_sync`, `_serialize`, `serialize` and `to_stream`.
const FORM_COPY_FRAME: usize = 6;

/// `copy.deepcopy(form)` under Python's recursion limit, as `to_stream` does it for a mixed-plain
/// container before writing anything. Each container costs two frames (`deepcopy` and its
/// copier) and each `deepcopy` calls `id(x)` (a C call that counts one more); a tuple (`shape`,
/// `strides`) copies its items in a list comprehension, one frame more. The first entry past the
/// limit, in the copy's order, decides the message.
fn check_form_copy_depth(form: &Value, key: &str, frame: usize) -> Result<(), CellError> {
    let calling = " while calling a Python object";
    exceeded(frame, "")?;
    exceeded(frame + 1, calling)?;
    with_stack(|| match form {
        Value::List(items) if matches!(key, "shape" | "strides") => {
            exceeded(frame + 2, "")?;
            items
                .iter()
                .try_for_each(|x| check_form_copy_depth(x, "", frame + 3))
        }
        Value::List(items) => {
            exceeded(frame + 2, calling)?;
            items
                .iter()
                .try_for_each(|x| check_form_copy_depth(x, "", frame + 2))
        }
        Value::Dict(d) => {
            exceeded(frame + 2, calling)?;
            d.iter().try_for_each(|(k, v)| {
                let name = match k {
                    Key::Str(s) => s.as_str(),
                    _ => "",
                };
                // The key's copy reaches as deep as the value's first steps.
                check_form_copy_depth(&Value::None, "", frame + 2)?;
                check_form_copy_depth(v, name, frame + 2)
            })
        }
        _ => Ok(()),
    })
}

/// A pure-binary value as `.npy`, including seamless-core's `U`-array bug: a unicode array is
/// written as the Python json of `arr.tolist()[0]` (spec §2.7).
fn pure_binary(value: &Value) -> Result<Vec<u8>, CellError> {
    let array = match value {
        Value::Bytes(b) => bytes_array(b),
        Value::Array(a) | Value::Scalar(a) => a.clone(),
        _ => unreachable!("only bytes and numpy values are pure-binary"),
    };
    if let DType::Simple { kind: 'U', .. } = array.dtype {
        let first = unicode_first(&array)?;
        let mut out = json_python::write(&first, Style::IndentedSorted)?.into_bytes();
        out.push(b'\n');
        return Ok(out);
    }
    Ok(npy::write(&array))
}

/// `arr.tolist()[0]` of a `U` array: the first character of a 0-d array, else the first item.
fn unicode_first(a: &NdArray) -> Result<Value, CellError> {
    let index_error = |what: &str| {
        CellError::new(
            PyErrorKind::IndexError,
            format!("{what} index out of range"),
        )
    };
    let element = |i: usize| a.element(i).expect("a U array holds its elements");
    if a.shape.is_empty() {
        return match element(0) {
            Value::Str(s) => s
                .chars()
                .next()
                .map(|c| Value::str(c.to_string()))
                .ok_or_else(|| index_error("string")),
            Value::Surrogates(u) => Ok(super::json_parse::units_to_value(vec![u[0]])),
            _ => unreachable!("unicode elements are strings"),
        };
    }
    if a.shape[0] == 0 {
        return Err(index_error("list"));
    }
    // The first sub-array along axis 0, as nested lists.
    let inner: usize = a.shape[1..].iter().product();
    let mut flat = (0..inner).map(element);
    Ok(nest(&a.shape[1..], &mut flat))
}

fn nest(shape: &[usize], flat: &mut impl Iterator<Item = Value>) -> Value {
    match shape.split_first() {
        None => flat.next().expect("enough elements"),
        Some((&n, rest)) => Value::List((0..n).map(|_| nest(rest, flat)).collect()),
    }
}

/// Whether a value holds binary leaves (its storage is not pure-plain).
fn has_binary(v: &Value) -> bool {
    with_stack(|| match v {
        Value::Bytes(_) | Value::Array(_) => true,
        Value::Scalar(a) => matches!(a.dtype, DType::Struct(_)),
        Value::Dict(d) => d.values().any(has_binary),
        Value::List(l) | Value::Tuple(l) => l.iter().any(has_binary),
        _ => false,
    })
}

/// The element bytes of a binary leaf in C order (`arr.reshape(-1)`).
fn leaf_bytes(v: &Value) -> Bytes {
    match v {
        Value::Bytes(b) => bytes_array(b).data,
        Value::Array(a) | Value::Scalar(a) => a.data.clone(),
        _ => unreachable!("binary leaves are bytes and numpy values"),
    }
}

/// Copy every binary leaf into `area` depth-first, dict keys in sorted order; record the ends.
fn collect_binary(v: &Value, offsets: &mut Vec<i64>, area: &mut Vec<u8>) -> Result<(), CellError> {
    with_stack(|| collect_binary_inner(v, offsets, area))
}

fn collect_binary_inner(
    v: &Value,
    offsets: &mut Vec<i64>,
    area: &mut Vec<u8>,
) -> Result<(), CellError> {
    match v {
        Value::Dict(d) => {
            for k in sorted_keys(d.keys())? {
                collect_child(&d[k], offsets, area)?;
            }
        }
        Value::List(l) | Value::Tuple(l) => {
            for child in l {
                collect_child(child, offsets, area)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// seamless-core walks every container below a mixed-plain one, pure-plain ones included, so
/// their dict keys are sorted too (and unorderable keys fail there as well).
fn collect_child(
    child: &Value,
    offsets: &mut Vec<i64>,
    area: &mut Vec<u8>,
) -> Result<(), CellError> {
    if matches!(child, Value::Dict(_) | Value::List(_) | Value::Tuple(_)) {
        collect_binary(child, offsets, area)?;
    } else if has_binary(child) {
        area.extend_from_slice(&leaf_bytes(child));
        offsets.push(area.len() as i64);
    }
    Ok(())
}

/// The value with binary leaves replaced by `0` and tuples turned into lists (the `data` part).
fn placeholders(v: &Value) -> Value {
    with_stack(|| match v {
        Value::Dict(d) => Value::Dict(
            d.iter()
                .map(|(k, x)| (k.clone(), placeholders(x)))
                .collect(),
        ),
        Value::List(l) | Value::Tuple(l) => Value::List(l.iter().map(placeholders).collect()),
        _ if has_binary(v) => Value::int(0),
        _ => v.clone(),
    })
}

/// The `\x94SEAMLESS-MIXED` container (spec §2.8.1).
fn container(value: &Value, form: &Value) -> Result<Vec<u8>, CellError> {
    let mut offsets = vec![0i64];
    let mut area = Vec::new();
    collect_binary(value, &mut offsets, &mut area)?;
    let jsons = Value::List(vec![int_list(offsets), placeholders(value)]);
    let form_json = json_python::write(form, Style::Compact)?;
    let jsons_json = json_python::write(&jsons, Style::Compact)?;
    let storage = Storage::MixedPlain.name();
    let mut out = MIXED_MAGIC.to_vec();
    out.push(storage.len() as u8);
    out.extend_from_slice(storage.as_bytes());
    out.extend_from_slice(&(form_json.len() as u32).to_le_bytes());
    out.extend_from_slice(form_json.as_bytes());
    out.extend_from_slice(SEAMLESS_MAGIC);
    out.extend_from_slice(&(jsons_json.len() as u64).to_le_bytes());
    out.extend_from_slice(&(area.len() as u64).to_le_bytes());
    out.extend_from_slice(jsons_json.as_bytes());
    out.extend_from_slice(&area);
    Ok(out)
}

/// Parse a `mixed` buffer.
pub fn deserialize(buf: &[u8]) -> Result<Value, CellError> {
    deserialize_with_storage(buf).map(|(_, v)| v)
}

fn value_error(what: impl Into<String>) -> CellError {
    CellError::new(PyErrorKind::ValueError, what)
}

/// Parse a `mixed` buffer and say how it was stored (`binary` accepts only pure-binary).
pub fn deserialize_with_storage(buf: &[u8]) -> Result<(Storage, Value), CellError> {
    if buf.starts_with(npy::MAGIC) {
        let a = npy::read(buf)?;
        // numpy returns a 0-d array of a non-`S` dtype as a scalar, in native byte order.
        let v = if a.shape.is_empty() && !matches!(a.dtype, DType::Simple { kind: 'S', .. }) {
            let a = native_scalar(a);
            check_str_scalar(&a)?;
            Value::Scalar(a)
        } else {
            Value::Array(a)
        };
        return Ok((Storage::PureBinary, v));
    }
    if buf.starts_with(MIXED_MAGIC) {
        return Ok((Storage::MixedPlain, read_container(buf)?));
    }
    if buf.starts_with(SEAMLESS_MAGIC) {
        return Err(CellError::new(PyErrorKind::AssertionError, "").with_detail(
            "the buffer starts with the inner \\x93SEAMLESS marker, not with \\x94SEAMLESS-MIXED",
        ));
    }
    let text = decode_utf8(buf)?;
    match parse(text, Dialect::Python) {
        Ok(v) => Ok((Storage::PurePlain, v)),
        Err(_) => Ok((Storage::PureBinary, Value::Array(bytes_array(buf)))),
    }
}

/// numpy cannot make a `str` scalar of a code point beyond U+10FFFF: it raises `SystemError`.
fn check_str_scalar(a: &NdArray) -> Result<(), CellError> {
    if let DType::Simple { kind: 'U', .. } = a.dtype {
        let units = a.data.chunks_exact(4);
        if units
            .map(|u| u32::from_le_bytes(u.try_into().expect("4 bytes")))
            .any(|c| c > 0x10FFFF)
        {
            return Err(CellError::new(
                PyErrorKind::SystemError,
                "invalid maximum character passed to PyUnicode_New",
            ));
        }
    }
    Ok(())
}

/// A numpy scalar in native (little-endian) byte order, as numpy scalars always are.
fn native_scalar(mut a: NdArray) -> NdArray {
    // Complex numbers swap each half on its own, unicode strings each 4-byte unit.
    let part = match &mut a.dtype {
        DType::Simple {
            kind,
            order: order @ ByteOrder::Big,
            size,
        } => {
            *order = ByteOrder::Little;
            match kind {
                'c' => *size / 2,
                'U' => 4,
                _ => *size,
            }
        }
        DType::DateTime {
            order: order @ ByteOrder::Big,
            ..
        } => {
            *order = ByteOrder::Little;
            8
        }
        _ => return a,
    };
    let mut data = a.data.to_vec();
    data.chunks_mut(part.max(1)).for_each(<[u8]>::reverse);
    a.data = data.into();
    a
}

/// Python's `data[start:end]`: clamped to the buffer, empty where `end` is before `start`.
fn py_slice(buf: &[u8], start: usize, end: usize) -> &[u8] {
    let start = start.min(buf.len());
    &buf[start..end.clamp(start, buf.len())]
}

/// Python's `data[start:start + n]`.
fn slice(buf: &[u8], start: usize, n: usize) -> &[u8] {
    py_slice(buf, start, start.saturating_add(n))
}

/// `np.frombuffer(raw, uint32/uint64)[0]` (or `.tolist()[0]`): the first little-endian word, an
/// `IndexError` for no bytes and a `ValueError` for a partial word.
fn first_word(raw: &[u8], size: usize, index_message: &str) -> Result<u64, CellError> {
    if raw.is_empty() {
        return Err(CellError::new(PyErrorKind::IndexError, index_message));
    }
    if !raw.len().is_multiple_of(size) {
        return Err(value_error(
            "buffer size must be a multiple of element size",
        ));
    }
    let mut word = [0u8; 8];
    word[..size].copy_from_slice(&raw[..size]);
    Ok(u64::from_le_bytes(word))
}

/// Python `json.loads` of bytes seamless-core decodes as UTF-8 first.
fn json_loads(raw: &[u8]) -> Result<Value, CellError> {
    let text = decode_utf8(raw)?;
    parse_with_depth(text, Dialect::Python).map_err(|(why, too_deep)| {
        if too_deep {
            CellError::new(
                PyErrorKind::RecursionError,
                "maximum recursion depth exceeded while decoding a JSON array from a unicode string",
            )
        } else {
            CellError::new(PyErrorKind::JSONDecodeError, why)
        }
    })
}

/// Read a mixed container in seamless-core's order of steps (`deserialize`, then
/// `from_stream`), so that a corrupt buffer fails with the error class Python gives.
fn read_container(buf: &[u8]) -> Result<Value, CellError> {
    // The lengths are numpy scalars (`uint8`, then `uint32`), so Python's offset arithmetic
    // wraps around as theirs does: a storage length of 250 lands the form length near the start.
    let storage_len = *buf.get(MIXED_MAGIC.len()).ok_or_else(|| {
        CellError::new(
            PyErrorKind::IndexError,
            "index 0 is out of bounds for axis 0 with size 0",
        )
    })?;
    let start = MIXED_MAGIC.len() as u8 + 1;
    let form_len_at = start.wrapping_add(storage_len);
    let storage = py_slice(buf, start as usize, form_len_at as usize);
    let form_at = form_len_at.wrapping_add(4);
    let form_len = first_word(
        py_slice(buf, form_len_at as usize, form_at as usize),
        4,
        "index 0 is out of bounds for axis 0 with size 0",
    )? as u32;
    let stream_at = (form_at as u32).wrapping_add(form_len);
    let form = py_slice(buf, form_at as usize, stream_at as usize);
    let storage = decode_utf8(storage)?;
    let form = json_loads(form)?;
    let stream = py_slice(buf, stream_at as usize, usize::MAX);
    match storage {
        "mixed-plain" => {}
        "pure-plain" => {
            return Err(CellError::new(PyErrorKind::AssertionError, "")
                .with_detail("a pure-plain mixed container holds bytes, not a str"));
        }
        "pure-binary" => return npy::read(stream).map(Value::Array),
        other => return Err(value_error(other)),
    }
    if !stream.starts_with(SEAMLESS_MAGIC) {
        return Err(CellError::new(PyErrorKind::AssertionError, "")
            .with_detail("mixed buffer lacks the inner \\x93SEAMLESS marker"));
    }
    let magic = SEAMLESS_MAGIC.len();
    let index_error = "list index out of range";
    let jsons_len = first_word(slice(stream, magic, 8), 8, index_error)?;
    let area_len = first_word(slice(stream, magic + 8, 8), 8, index_error)?;
    let expected = (magic as u128 + 16) + jsons_len as u128 + area_len as u128;
    if stream.len() as u128 != expected {
        return Err(
            CellError::new(PyErrorKind::AssertionError, "").with_detail(format!(
                "mixed buffer inner length is {}, its header says {expected}",
                stream.len()
            )),
        );
    }
    let jsons_len = jsons_len as usize;
    let jsons = json_loads(&stream[magic + 16..magic + 16 + jsons_len])?;
    let area = &stream[magic + 16 + jsons_len..];
    super::mixed_stream::Stream { jsons, area }.read(&form)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::celltype::binary;

    fn datetime_array(typestr: &str, shape: Vec<usize>, data: &str) -> NdArray {
        NdArray {
            dtype: DType::from_typestr(typestr).expect("a datetime typestr"),
            shape,
            layout: Layout::C,
            data: hex::decode(data).expect("hex").into(),
        }
    }

    /// seamless-core 0.1.4's errors for datetime values (measured with numpy 2.4).
    #[test]
    fn datetime_values_are_rejected_as_seamless_does() {
        let composite =
            |t: &str| format!("('Composite dtypes must be memory-aligned', dtype('{t}'))");
        for (typestr, message) in [
            ("<M8[s]", composite("<M8[s]")),
            ("<m8[ms]", composite("<m8[ms]")),
            ("<M8", composite("<M8")),
            ("<M8[25s]", composite("<M8[25s]")),
            (">M8[s]", "dtypes must be native".into()),
        ] {
            let array = Value::Array(datetime_array(typestr, vec![1], "0100000000000000"));
            for serializer in [serialize, binary::serialize] {
                let e = serializer(&array).unwrap_err();
                assert_eq!(
                    (e.kind.name(), e.message),
                    ("TypeError", message.clone()),
                    "{typestr}"
                );
            }
        }
        let scalar = Value::Scalar(datetime_array("<M8[s]", vec![], "0100000000000000"));
        assert_eq!(
            serialize(&scalar).unwrap_err().message,
            "<class 'numpy.datetime64'>"
        );
        assert_eq!(
            binary::serialize(&scalar).unwrap_err().message,
            composite("<M8[s]")
        );
    }

    /// `np.save(np.array(5, dtype='>M8[s]'))` reads back as the native scalar `np.datetime64(5, 's')`.
    #[test]
    fn big_endian_datetime_scalars_read_native() {
        let buf = npy::write(&datetime_array(">M8[s]", vec![], "0000000000000005"));
        let value = binary::deserialize(&buf).unwrap();
        assert_eq!(
            value,
            Value::Scalar(datetime_array("<M8[s]", vec![], "0500000000000000"))
        );
    }
}
