//! The value model: what a cell holds once its buffer is parsed.
//!
//! It mirrors the Python values seamless-core handles, because serialization is byte-identical
//! only if the value keeps every distinction Python makes: dict insertion order (mixed checksums
//! depend on it), ints beyond 64 bits, `-0.0`/NaN/inf, tuples vs lists, bytes vs str, numpy arrays
//! (dtype, shape, memory layout) and numpy scalars, and `Checksum` objects.

use bytes::Bytes;
use indexmap::IndexMap;
use num_bigint::BigInt;

use crate::checksum::Checksum;

/// A Python value as seamless-core sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(BigInt),
    Float(f64),
    Str(String),
    /// A Python `str` holding lone surrogates (not representable as UTF-8), as code points.
    Surrogates(Vec<u32>),
    Bytes(Bytes),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Dict),
    /// A numpy `ndarray`.
    Array(NdArray),
    /// A numpy scalar (`np.float64(3.5)`): a 0-d array that Python treats as a scalar.
    Scalar(NdArray),
    Checksum(Checksum),
    /// A Python `set` (YAML `!!set`), in construction order.
    Set(Vec<Value>),
    /// A `datetime.date` (YAML timestamps without a time).
    Date(Date),
    /// A `datetime.datetime` (YAML timestamps with a time).
    DateTime(DateTime),
}

/// A `datetime.date`; always a valid calendar date (years 1–9999).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// A `datetime.datetime` with microseconds and an optional fixed UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub microsecond: u32,
    /// Offset from UTC in seconds (`datetime.timezone`); `None` for a naive datetime.
    pub utc_offset: Option<i32>,
}

/// Insertion-ordered dict. Keys are values because Python allows non-str keys (`{1: 2}`),
/// which some cell types accept and others reject with a specific error.
pub type Dict = IndexMap<Key, Value>;

/// A hashable dict key: the key types Python JSON encoders know how to handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Str(String),
    Int(BigInt),
    /// A float key, by its bit pattern.
    Float(u64),
    Bool(bool),
    None,
    Bytes(Bytes),
    Date(Date),
    DateTime(DateTime),
    /// A str key holding lone surrogates (PyYAML loads `"\ud83d\ude00"` so), as code points.
    Surrogates(Vec<u32>),
    /// Any other key type (a tuple, …), kept by its Python type name for error messages.
    Other(String),
}

/// Byte order of a numpy dtype, as in `dtype.str`'s first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    Little,
    Big,
    /// `|`: single bytes, strings, bools.
    NotApplicable,
}

/// A numpy dtype.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DType {
    /// A builtin dtype: `kind` is numpy's kind character (`b i u f c S U V M m O`), `size` the
    /// item size in bytes (`S3` → 3, `U3` → 12).
    Simple { kind: char, order: ByteOrder, size: usize },
    /// A structured dtype.
    Struct(StructDType),
}

/// A structured numpy dtype (records).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StructDType {
    pub fields: Vec<Field>,
    pub itemsize: usize,
    /// `isalignedstruct`: numpy's `align=True` flag.
    pub aligned: bool,
}

/// One field of a structured dtype; `shape` is non-empty for a sub-array field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub offset: usize,
}

/// Memory layout of the array the value came from. The data are always kept in C order; the
/// layout records what numpy would see, which decides `.npy` `fortran_order` and the mixed form's
/// `contiguous`/`strides`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    C,
    /// Fortran-contiguous and not C-contiguous (e.g. a transposed 2-D array).
    F,
    /// A non-contiguous view with these byte strides.
    Strided(Vec<i64>),
}

/// A numpy array: dtype, shape, and the raw element bytes in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub layout: Layout,
    pub data: Bytes,
}

impl DType {
    /// Item size in bytes.
    pub fn itemsize(&self) -> usize {
        match self {
            DType::Simple { size, .. } => *size,
            DType::Struct(s) => s.itemsize,
        }
    }
}

impl NdArray {
    /// Number of elements (product of the shape; 1 for 0-d).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Value {
    /// Convenience constructor for a str value.
    pub fn str(s: impl Into<String>) -> Self {
        Value::Str(s.into())
    }

    /// Convenience constructor for an int value.
    pub fn int(i: impl Into<BigInt>) -> Self {
        Value::Int(i.into())
    }
}
