//! The data part of a mixed container read as seamless-core's `from_stream` reads it: the form
//! and the data header (`jsons`) are walked with Python's own semantics (subscripting, `pop`,
//! `sorted`, `len`, `range`, truthiness, the asserts), so that a corrupt form or header fails
//! with the class Python raises (`KeyError`, `IndexError`, `TypeError`, `AttributeError`,
//! `AssertionError`, `ValueError`) at the step where Python stops.

use std::cmp::Ordering;

use bytes::Bytes;
use num_bigint::BigInt;
use num_traits::{Signed, ToPrimitive, Zero};

use super::npy::aligned_dtype;
use super::{CellError, PyErrorKind, with_stack};
use crate::value::{ByteOrder, DType, Field, Key, Layout, NdArray, StructDType, Value};

fn error(kind: PyErrorKind, message: impl Into<String>) -> CellError {
    CellError::new(kind, message)
}

/// Python's `type(x).__name__` for a JSON value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::None => "NoneType",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) | Value::Surrogates(_) => "str",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        _ => "object",
    }
}

/// Python truthiness (of JSON values, which all have one).
fn truthy(v: &Value) -> bool {
    super::scalar::truth(v).unwrap_or(true)
}

/// An int index (`bool` counts), as Python accepts for list subscripts.
fn as_index(key: &Value) -> Option<BigInt> {
    match key {
        Value::Int(i) => Some(i.clone()),
        Value::Bool(b) => Some(BigInt::from(*b as u8)),
        _ => None,
    }
}

/// A Python index into a sequence of `len` items (negative from the end).
fn resolve(i: &BigInt, len: usize) -> Option<usize> {
    let i = if i.is_negative() { i + len } else { i.clone() };
    i.to_usize().filter(|&i| i < len)
}

/// The dict key a JSON value makes (JSON objects have str keys only, so only a str can match).
fn dict_key(key: &Value) -> Result<Option<Key>, CellError> {
    match key {
        Value::Str(s) => Ok(Some(Key::Str(s.clone()))),
        Value::List(_) | Value::Dict(_) => Err(error(
            PyErrorKind::TypeError,
            format!("unhashable type: '{}'", type_name(key)),
        )),
        _ => Ok(None),
    }
}

/// `obj[key]`.
fn getitem(obj: &Value, key: &Value) -> Result<Value, CellError> {
    match obj {
        Value::Dict(d) => dict_key(key)?
            .and_then(|k| d.get(&k).cloned())
            .ok_or_else(|| error(PyErrorKind::KeyError, format!("{key:?}"))),
        Value::List(items) => {
            let i = as_index(key).ok_or_else(|| {
                error(
                    PyErrorKind::TypeError,
                    format!(
                        "list indices must be integers or slices, not {}",
                        type_name(key)
                    ),
                )
            })?;
            resolve(&i, items.len())
                .map(|i| items[i].clone())
                .ok_or_else(|| error(PyErrorKind::IndexError, "list index out of range"))
        }
        Value::Str(s) => {
            let i = as_index(key)
                .ok_or_else(|| error(PyErrorKind::TypeError, "string indices must be integers"))?;
            let chars: Vec<char> = s.chars().collect();
            resolve(&i, chars.len())
                .map(|i| Value::Str(chars[i].to_string()))
                .ok_or_else(|| error(PyErrorKind::IndexError, "string index out of range"))
        }
        _ => Err(error(
            PyErrorKind::TypeError,
            format!("'{}' object is not subscriptable", type_name(obj)),
        )),
    }
}

/// `obj[key] = value`.
fn setitem(obj: &mut Value, key: &Value, value: Value) -> Result<(), CellError> {
    match obj {
        Value::Dict(d) => {
            let k = dict_key(key)?.ok_or_else(|| {
                // A non-str key would be added to the dict; JSON data never needs one.
                error(PyErrorKind::TypeError, "a non-str key in mixed data")
            })?;
            d.insert(k, value);
            Ok(())
        }
        Value::List(items) => {
            let i = as_index(key).ok_or_else(|| {
                error(
                    PyErrorKind::TypeError,
                    "list indices must be integers or slices",
                )
            })?;
            let i = resolve(&i, items.len()).ok_or_else(|| {
                error(
                    PyErrorKind::IndexError,
                    "list assignment index out of range",
                )
            })?;
            items[i] = value;
            Ok(())
        }
        _ => Err(error(
            PyErrorKind::TypeError,
            format!(
                "'{}' object does not support item assignment",
                type_name(obj)
            ),
        )),
    }
}

/// `obj.get(key, default)` on what must be a dict.
fn get_or<'a>(obj: &'a Value, key: &str, default: &'a Value) -> Result<&'a Value, CellError> {
    match obj {
        Value::Dict(d) => Ok(d.get(&Key::Str(key.into())).unwrap_or(default)),
        _ => Err(error(
            PyErrorKind::AttributeError,
            format!("'{}' object has no attribute 'get'", type_name(obj)),
        )),
    }
}

/// `key in obj` for a dict (the forms' asserts only test dicts).
fn contains(obj: &Value, key: &str) -> Result<bool, CellError> {
    match obj {
        Value::Dict(d) => Ok(d.contains_key(&Key::Str(key.into()))),
        Value::List(items) => Ok(items.iter().any(|x| matches!(x, Value::Str(s) if s == key))),
        Value::Str(s) => Ok(s.contains(key)),
        _ => Err(error(
            PyErrorKind::TypeError,
            format!("argument of type '{}' is not iterable", type_name(obj)),
        )),
    }
}

/// `len(obj)`.
fn len(obj: &Value) -> Result<usize, CellError> {
    match obj {
        Value::Dict(d) => Ok(d.len()),
        Value::List(items) => Ok(items.len()),
        Value::Str(s) => Ok(s.chars().count()),
        _ => Err(error(
            PyErrorKind::TypeError,
            format!("object of type '{}' has no len()", type_name(obj)),
        )),
    }
}

/// The items `for x in obj` yields.
fn iterate(obj: &Value) -> Result<Vec<Value>, CellError> {
    match obj {
        Value::Dict(d) => Ok(d
            .keys()
            .map(|k| match k {
                Key::Str(s) => Value::Str(s.clone()),
                _ => Value::None,
            })
            .collect()),
        Value::List(items) => Ok(items.clone()),
        Value::Str(s) => Ok(s.chars().map(|c| Value::Str(c.to_string())).collect()),
        _ => Err(error(
            PyErrorKind::TypeError,
            format!("'{}' object is not iterable", type_name(obj)),
        )),
    }
}

/// Python `a < b` for JSON scalars; `None` where Python raises `TypeError`.
fn less(a: &Value, b: &Value) -> Option<bool> {
    let num = |v: &Value| match v {
        Value::Int(i) => i.to_f64(),
        Value::Bool(b) => Some(*b as u8 as f64),
        Value::Float(x) => Some(*x),
        _ => None,
    };
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x < y),
        (Value::Int(x), Value::Int(y)) => Some(x < y),
        _ => Some(num(a)? < num(b)?),
    }
}

/// `sorted(obj)`.
fn sorted(obj: &Value) -> Result<Vec<Value>, CellError> {
    let mut items = iterate(obj)?;
    if items.windows(2).any(|w| less(&w[1], &w[0]).is_none()) {
        return Err(error(
            PyErrorKind::TypeError,
            "'<' not supported between these instances",
        ));
    }
    items.sort_by(|a, b| match less(a, b) {
        Some(true) => Ordering::Less,
        _ if less(b, a) == Some(true) => Ordering::Greater,
        _ => Ordering::Equal,
    });
    Ok(items)
}

fn is_str(v: &Value, s: &str) -> bool {
    matches!(v, Value::Str(x) if x == s)
}

fn assertion(what: &str) -> CellError {
    CellError::new(PyErrorKind::AssertionError, "")
        .with_detail(format!("corrupt mixed buffer: {what}"))
}

/// The walk's state: the data header (`jsons`, whose `[0]` are the buffer offsets) and the
/// binary area.
pub struct Stream<'a> {
    pub jsons: Value,
    pub area: &'a [u8],
}

impl Stream<'_> {
    /// `_from_stream(None, "mixed-plain", form, jsons, buffer)`: the rebuilt value.
    pub fn read(&mut self, form: &Value) -> Result<Value, CellError> {
        self.plain(None, form)
    }

    /// `jsons.pop(1)`.
    fn pop_data(&mut self) -> Result<Value, CellError> {
        match &mut self.jsons {
            Value::List(items) if items.len() > 1 => Ok(items.remove(1)),
            Value::List(_) => Err(error(PyErrorKind::IndexError, "pop index out of range")),
            Value::Dict(_) => Err(error(PyErrorKind::KeyError, "1")),
            other => Err(error(
                PyErrorKind::AttributeError,
                format!("'{}' object has no attribute 'pop'", type_name(other)),
            )),
        }
    }

    /// `_from_stream_plain(data, form, ...)`; `data` is `None` for the top level (and for a
    /// child whose data is JSON `null`: Python then pops the next data, and drops it after).
    fn plain(&mut self, data: Option<&mut Value>, form: &Value) -> Result<Value, CellError> {
        with_stack(|| {
            let ty = getitem(form, &Value::str("type"))?;
            let mut popped;
            let data = match data {
                Some(d) if !matches!(d, Value::None) => d,
                _ => {
                    popped = self.pop_data()?;
                    &mut popped
                }
            };
            if is_str(&ty, "object") {
                let props = getitem(form, &Value::str("properties"))?;
                for key in sorted(&props)? {
                    let item_form = getitem(&props, &key)?;
                    if !matches!(item_form, Value::Dict(_)) {
                        continue;
                    }
                    let storage = get_or(&item_form, "storage", &Value::str("pure-plain"))?.clone();
                    self.sub(data, &key, &storage, &item_form)?;
                }
            } else if is_str(&ty, "tuple") || is_str(&ty, "array") {
                let shape = getitem(form, &Value::str("shape"))?;
                if len(&shape)? != 1 {
                    return Err(assertion("an array form's shape is not 1-d"));
                }
                let items = getitem(form, &Value::str("items"))?;
                let count = match getitem(&shape, &Value::int(0))? {
                    Value::Int(n) => n,
                    Value::Bool(b) => BigInt::from(b as u8),
                    other => {
                        return Err(error(
                            PyErrorKind::TypeError,
                            format!(
                                "'{}' object cannot be interpreted as an integer",
                                type_name(&other)
                            ),
                        ));
                    }
                };
                let mut n = BigInt::zero();
                while n < count {
                    let identical = truthy(&getitem(form, &Value::str("identical"))?);
                    let item_form = if identical {
                        items.clone()
                    } else {
                        getitem(&items, &Value::Int(n.clone()))?
                    };
                    if matches!(item_form, Value::Dict(_)) {
                        let storage =
                            get_or(&item_form, "storage", &Value::str("pure-plain"))?.clone();
                        self.sub(data, &Value::Int(n.clone()), &storage, &item_form)?;
                    } else if identical {
                        break; // Every other round would skip the same way.
                    }
                    n += 1;
                }
            } else {
                return Err(error(PyErrorKind::TypeError, format!("({ty:?}, {form:?})")));
            }
            Ok(std::mem::replace(data, Value::None))
        })
    }

    /// `_from_stream_sub(parent_data, sub, storage, form, ...)`.
    fn sub(
        &mut self,
        parent: &mut Value,
        sub: &Value,
        storage: &Value,
        form: &Value,
    ) -> Result<(), CellError> {
        let Value::Str(storage_name) = storage else {
            return Err(error(
                PyErrorKind::AttributeError,
                format!(
                    "'{}' object has no attribute 'endswith'",
                    type_name(storage)
                ),
            ));
        };
        if !storage_name.ends_with("plain") {
            if !contains(form, "type")? {
                return Err(assertion("a binary form without a type"));
            }
            let ty = getitem(form, &Value::str("type"))?;
            let (my_form, shape) = if is_str(&ty, "array") {
                let shape = getitem(form, &Value::str("shape"))?;
                (getitem(form, &Value::str("items"))?, Some(shape))
            } else if is_str(&ty, "tuple") {
                let my_form = getitem(form, &Value::str("items"))?;
                let shape = getitem(&my_form, &Value::str("shape"))?;
                (my_form, Some(shape))
            } else if is_str(&ty, "object") {
                (form.clone(), None)
            } else {
                return Err(assertion("a binary form of an unknown type"));
            };
            let offset = self.pop_offset()?;
            let next = getitem(&getitem(&self.jsons, &Value::int(0))?, &Value::int(0))?;
            let size = subtract(&next, &offset)?;
            let value = self.load(storage, &my_form, &offset, &size, shape.as_ref())?;
            setitem(parent, sub, value)?;
        }
        if storage_name.starts_with("pure") {
            return Ok(());
        }
        let mut child = getitem(parent, sub)?;
        if storage_name != "mixed-plain" {
            return Err(error(PyErrorKind::ValueError, storage_name.clone()));
        }
        // The child is rebuilt in place in Python (the same object); here it is put back.
        if matches!(child, Value::None) {
            self.plain(None, form)?;
            return Ok(());
        }
        let rebuilt = self.plain(Some(&mut child), form)?;
        setitem(parent, sub, rebuilt)
    }

    /// `jsons[0].pop(0)`.
    fn pop_offset(&mut self) -> Result<Value, CellError> {
        let offsets = match &mut self.jsons {
            Value::List(items) if !items.is_empty() => &mut items[0],
            Value::List(_) => {
                return Err(error(PyErrorKind::IndexError, "list index out of range"));
            }
            Value::Dict(_) => return Err(error(PyErrorKind::KeyError, "0")),
            other => {
                return Err(error(
                    PyErrorKind::TypeError,
                    format!("'{}' object is not subscriptable", type_name(other)),
                ));
            }
        };
        match offsets {
            Value::List(items) if !items.is_empty() => Ok(items.remove(0)),
            Value::List(_) => Err(error(PyErrorKind::IndexError, "pop from empty list")),
            Value::Dict(_) => Err(error(PyErrorKind::KeyError, "0")),
            other => Err(error(
                PyErrorKind::AttributeError,
                format!("'{}' object has no attribute 'pop'", type_name(other)),
            )),
        }
    }

    /// `_load_from_buffer`: an array (or, without a shape, one record) from the binary area.
    fn load(
        &self,
        storage: &Value,
        form: &Value,
        offset: &Value,
        size: &Value,
        shape: Option<&Value>,
    ) -> Result<Value, CellError> {
        let dtype = form_to_dtype(form, storage)?;
        let shape0 = shape
            .cloned()
            .unwrap_or_else(|| Value::List(vec![Value::int(1)]));
        let count = product(&shape0)?;
        let expected = count.map(|c| c * BigInt::from(dtype.itemsize()));
        let size_int = match size {
            Value::Int(i) => Some(i.clone()),
            Value::Bool(b) => Some(BigInt::from(*b as u8)),
            Value::Float(x) if x.fract() == 0.0 => num_traits::FromPrimitive::from_f64(*x),
            _ => None,
        };
        if expected.is_none() || expected != size_int {
            return Err(assertion("an array's size does not match its data"));
        }
        let dims = iterate(&shape0)?
            .iter()
            .map(dimension)
            .collect::<Result<Vec<usize>, _>>()?;
        // Python copies these bytes with memmove, unchecked: outside the area it reads
        // whatever memory follows. Refused here.
        let start = as_index(offset).and_then(|o| o.to_usize());
        let nbytes = size_int.and_then(|s| s.to_usize());
        let data = match (start, nbytes) {
            (Some(s), Some(n)) if s.checked_add(n).is_some_and(|e| e <= self.area.len()) => {
                Bytes::copy_from_slice(&self.area[s..s + n])
            }
            _ => {
                return Err(error(
                    PyErrorKind::ValueError,
                    "a mixed array's offsets point outside the binary area",
                ));
            }
        };
        let array = NdArray {
            dtype,
            shape: dims,
            layout: Layout::C,
            data,
        };
        Ok(if shape.is_none() {
            Value::Scalar(NdArray {
                shape: vec![],
                ..array
            })
        } else {
            Value::Array(array)
        })
    }
}

/// One array dimension, as numpy takes it: a non-negative int.
fn dimension(d: &Value) -> Result<usize, CellError> {
    match d {
        Value::Int(n) => n.to_usize().ok_or_else(|| {
            error(
                PyErrorKind::ValueError,
                "negative dimensions are not allowed",
            )
        }),
        other => Err(error(
            PyErrorKind::TypeError,
            format!(
                "'{}' object cannot be interpreted as an integer",
                type_name(other)
            ),
        )),
    }
}

/// `a - b` for the buffer offsets.
fn subtract(a: &Value, b: &Value) -> Result<Value, CellError> {
    let int = |v: &Value| match v {
        Value::Int(i) => Some(i.clone()),
        Value::Bool(b) => Some(BigInt::from(*b as u8)),
        _ => None,
    };
    let float = |v: &Value| match v {
        Value::Float(x) => Some(*x),
        other => int(other).and_then(|i| i.to_f64()),
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Ok(Value::Int(x - y)),
        _ => match (float(a), float(b)) {
            (Some(x), Some(y)) => Ok(Value::Float(x - y)),
            _ => Err(error(
                PyErrorKind::TypeError,
                format!(
                    "unsupported operand type(s) for -: '{}' and '{}'",
                    type_name(a),
                    type_name(b)
                ),
            )),
        },
    }
}

/// seamless-core's `mul(shape)`: the product of the dimensions, `None` where Python's product
/// is not a number (a str or list repeated), `TypeError` where Python cannot multiply.
fn product(shape: &Value) -> Result<Option<BigInt>, CellError> {
    let mut acc = Some(BigInt::from(1));
    for d in iterate(shape)? {
        acc = match (acc, &d) {
            (Some(a), Value::Int(n)) => Some(a * n),
            (Some(a), Value::Bool(b)) => Some(a * (*b as u8)),
            (Some(_), Value::Str(_) | Value::List(_)) | (None, Value::Int(_) | Value::Bool(_)) => {
                None
            }
            _ => {
                return Err(error(
                    PyErrorKind::TypeError,
                    format!("can't multiply by '{}'", type_name(&d)),
                ));
            }
        };
    }
    Ok(acc)
}

/// `form_to_dtype(form, storage)` for a binary node.
fn form_to_dtype(form: &Value, storage: &Value) -> Result<DType, CellError> {
    Ok(dtype_of(form, storage, true)?.0)
}

/// `_form_to_dtype`: the dtype and, for a `tuple` form, its shape.
fn dtype_of(
    form: &Value,
    storage: &Value,
    toplevel: bool,
) -> Result<(DType, Option<Value>), CellError> {
    with_stack(|| {
        let none = Value::None;
        let ty = match form {
            Value::Str(_) => form.clone(),
            other => get_or(other, "type", &none)?.clone(),
        };
        if is_str(storage, "pure-plain")
            || is_str(storage, "mixed-plain")
            || (is_str(&ty, "array") && !toplevel)
        {
            // A Python-object slot: seamless-core copies raw pointers into it.
            return Err(error(
                PyErrorKind::ValueError,
                "a mixed array of Python objects is not supported",
            ));
        }
        let named = |name: &str| is_str(&ty, name);
        if named("string") || named("integer") || named("number") || named("boolean") {
            return scalar_dtype(form).map(|d| (d, None));
        }
        if named("tuple") || named("array") {
            if !truthy(&getitem(form, &Value::str("identical"))?) {
                return Err(assertion("a binary array form is not identical"));
            }
            let (item, item_shape) =
                dtype_of(&getitem(form, &Value::str("items"))?, storage, false)?;
            if item_shape.is_some() {
                return Err(assertion("a shape inside items"));
            }
            let shape = if named("tuple") {
                Some(getitem(form, &Value::str("shape"))?)
            } else {
                None
            };
            return Ok((item, shape));
        }
        if named("object") {
            return struct_dtype(form, storage).map(|d| (d, None));
        }
        Err(error(PyErrorKind::TypeError, format!("{ty:?}")))
    })
}

/// `_form_to_dtype_scalar`: `np.dtype("S<n>" | "=i<n>" | "=u<n>" | "=f<n>" | "|b1")`.
fn scalar_dtype(form: &Value) -> Result<DType, CellError> {
    let ty = getitem(form, &Value::str("type"))?;
    if is_str(&ty, "boolean") {
        return Ok(DType::simple('b', ByteOrder::NotApplicable, 1));
    }
    let size = getitem(form, &Value::str("bytesize"))?;
    let size = match &size {
        Value::Int(n) => n.to_usize(),
        _ => None,
    };
    let not_understood = || error(PyErrorKind::TypeError, "data type not understood");
    let (kind, order) = if is_str(&ty, "string") {
        ('S', ByteOrder::NotApplicable)
    } else if is_str(&ty, "number") {
        ('f', ByteOrder::Little)
    } else if truthy(get_or(form, "unsigned", &Value::None)?) {
        ('u', ByteOrder::Little)
    } else {
        ('i', ByteOrder::Little)
    };
    let size = size.ok_or_else(not_understood)?;
    let valid = match kind {
        'S' => true,
        'f' => matches!(size, 2 | 4 | 8),
        _ => matches!(size, 1 | 2 | 4 | 8),
    };
    if !valid {
        return Err(not_understood());
    }
    Ok(DType::simple(kind, order, size))
}

/// An `object` form: `np.dtype(fields, align=True)` after seamless-core's asserts.
fn struct_dtype(form: &Value, storage: &Value) -> Result<DType, CellError> {
    if !contains(form, "order")? {
        return Err(assertion("a struct form without an order"));
    }
    if contains(form, "shape")? {
        return Err(assertion("a struct form with a shape"));
    }
    let order = getitem(form, &Value::str("order"))?;
    let props = getitem(form, &Value::str("properties"))?;
    let Value::Dict(prop_map) = &props else {
        return Err(error(
            PyErrorKind::AttributeError,
            format!("'{}' object has no attribute 'keys'", type_name(&props)),
        ));
    };
    let names = iterate(&order)?;
    for n in &names {
        dict_key(n)?;
    }
    let same = names
        .iter()
        .all(|n| matches!(n, Value::Str(s) if prop_map.contains_key(&Key::Str(s.clone()))))
        && prop_map.keys().all(|k| {
            names
                .iter()
                .any(|n| matches!((n, k), (Value::Str(a), Key::Str(b)) if a == b))
        });
    if !same {
        return Err(assertion("a struct form's order and properties differ"));
    }
    let mut fields: Vec<Field> = Vec::new();
    for name in &names {
        let prop = getitem(&props, name)?;
        let item_storage = get_or(&prop, "storage", storage)?.clone();
        let (dtype, shape) = dtype_of(&prop, &item_storage, false)?;
        let Value::Str(name) = name else {
            unreachable!("checked above")
        };
        if fields.iter().any(|f| &f.name == name) {
            return Err(error(
                PyErrorKind::ValueError,
                format!("field '{name}' occurs more than once"),
            ));
        }
        let shape = match &shape {
            None => vec![],
            Some(d @ Value::Int(_)) => vec![dimension(d)?],
            Some(Value::List(dims)) => dims.iter().map(dimension).collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(error(
                    PyErrorKind::TypeError,
                    "a sub-array shape is not a tuple",
                ));
            }
        };
        fields.push(Field {
            name: name.clone(),
            dtype,
            shape,
            offset: 0,
        });
    }
    Ok(aligned_dtype(&DType::Struct(StructDType {
        fields,
        itemsize: 0,
        aligned: true,
    })))
}
