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
    /// A builtin dtype: `kind` is numpy's kind character (`b i u f c S U V O`), `size` the
    /// item size in bytes (`S3` → 3, `U3` → 12).
    Simple {
        kind: char,
        order: ByteOrder,
        size: usize,
    },
    /// `datetime64` (`kind` `'M'`) or `timedelta64` (`'m'`): 8-byte integers counting `unit`s.
    /// `unit` is numpy's normalised unit text: `s`, `ms`, `us`, `25s` (a multiple), or `generic`
    /// (no unit yet, typestr `<M8`).
    DateTime {
        kind: char,
        order: ByteOrder,
        unit: String,
    },
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

/// Memory layout of the array the value came from: numpy's byte strides. The data are always
/// kept in C order; the strides decide what numpy's flags say (`.npy` `fortran_order`, the mixed
/// form's `contiguous`/`strides`), so they are kept exactly as numpy has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The strides of a new C-ordered array (`np.empty(shape)`; all zero if the array is empty).
    C,
    /// The strides of a new Fortran-ordered array, for an array that is not also C-contiguous.
    F,
    /// Any other strides: a view (sliced, transposed, broadcast, a new axis), or a contiguous
    /// array whose strides differ from a new one's (on axes of length 0 or 1).
    Strided(Vec<i64>),
}

impl Layout {
    /// The layout of an array with these numpy strides: `C` or `F` where they are exactly a new
    /// array's, else `Strided`.
    pub fn of_strides(shape: &[usize], itemsize: usize, strides: Vec<i64>) -> Layout {
        if strides == new_strides(shape, itemsize, false) {
            Layout::C
        } else if strides == new_strides(shape, itemsize, true)
            && !flag_contiguous(shape, itemsize, &strides, false)
        {
            Layout::F
        } else {
            Layout::Strided(strides)
        }
    }
}

/// The strides numpy gives a new array (`np.empty(shape, order=...)`): all zero when the array
/// is empty.
pub fn new_strides(shape: &[usize], itemsize: usize, fortran: bool) -> Vec<i64> {
    if shape.contains(&0) {
        return vec![0; shape.len()];
    }
    packed_strides(shape, itemsize, fortran)
}

/// Contiguous strides in C or Fortran order, an axis of length 0 counting as 1: what
/// `reshape` gives a 1-d buffer (`np.frombuffer(...).reshape(shape, order=...)`).
pub fn packed_strides(shape: &[usize], itemsize: usize, fortran: bool) -> Vec<i64> {
    let mut strides = vec![0i64; shape.len()];
    let mut step = itemsize as i64;
    for d in fastest_last(shape.len(), fortran) {
        strides[d] = step;
        step *= shape[d].max(1) as i64;
    }
    strides
}

/// The axes from the fastest-varying one: the last first in C order, the first in Fortran order.
fn fastest_last(ndim: usize, fortran: bool) -> Box<dyn Iterator<Item = usize>> {
    if fortran {
        Box::new(0..ndim)
    } else {
        Box::new((0..ndim).rev())
    }
}

/// numpy's `C_CONTIGUOUS` (or, with `fortran`, `F_CONTIGUOUS`) flag: axes of length 1 do not
/// count, and an empty array is both.
fn flag_contiguous(shape: &[usize], itemsize: usize, strides: &[i64], fortran: bool) -> bool {
    if shape.contains(&0) {
        return true;
    }
    let mut expected = itemsize as i64;
    for d in fastest_last(shape.len(), fortran) {
        if shape[d] != 1 {
            if strides[d] != expected {
                return false;
            }
            expected *= shape[d] as i64;
        }
    }
    true
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
            DType::DateTime { .. } => 8,
            DType::Struct(s) => s.itemsize,
        }
    }

    /// A builtin dtype; the byte order of one-byte and byte-string kinds is always `|`, as numpy normalises it.
    pub fn simple(kind: char, order: ByteOrder, size: usize) -> DType {
        let order = if matches!(kind, 'b' | 'S' | 'V' | 'O') || (size == 1 && kind != 'U') {
            ByteOrder::NotApplicable
        } else {
            order
        };
        DType::Simple { kind, order, size }
    }

    /// numpy's `dtype.str` of a builtin dtype (`<f8`, `|b1`, `|S3`, `<U2`, `<M8[s]`, `<m8` for a
    /// generic timedelta); `|V<n>` for structs.
    pub fn typestr(&self) -> String {
        match self {
            DType::Simple { kind: 'O', .. } => "|O".into(),
            DType::Simple { kind, order, size } => {
                let n = if *kind == 'U' { size / 4 } else { *size };
                format!("{}{kind}{n}", order.symbol())
            }
            DType::DateTime { kind, order, unit } if unit == "generic" => {
                format!("{}{kind}8", order.symbol())
            }
            DType::DateTime { kind, order, unit } => format!("{}{kind}8[{unit}]", order.symbol()),
            DType::Struct(s) => format!("|V{}", s.itemsize),
        }
    }

    /// Parse a numpy typestr such as `<f8`, `>i4`, `|S3`, `=u2`, `f8`, `?`, `d` (the forms a `.npy`
    /// header or `np.dtype(str)` accepts for builtin types).
    pub fn from_typestr(s: &str) -> Option<DType> {
        let (order, rest) = match s.chars().next()? {
            '<' | '=' => (ByteOrder::Little, &s[1..]),
            '>' => (ByteOrder::Big, &s[1..]),
            '|' => (ByteOrder::Little, &s[1..]),
            _ => (ByteOrder::Little, s),
        };
        let kind = rest.chars().next()?;
        let digits = &rest[kind.len_utf8()..];
        if matches!(kind, 'M' | 'm') {
            return datetime_dtype(kind, order, digits);
        }
        if digits.is_empty() {
            let (kind, size) = match kind {
                '?' => ('b', 1),
                'b' => ('i', 1),
                'B' => ('u', 1),
                'h' => ('i', 2),
                'H' => ('u', 2),
                'i' => ('i', 4),
                'I' => ('u', 4),
                'l' | 'q' => ('i', 8),
                'L' | 'Q' => ('u', 8),
                'e' => ('f', 2),
                'f' => ('f', 4),
                'd' => ('f', 8),
                'O' => ('O', 8),
                _ => return None,
            };
            return Some(DType::simple(kind, order, size));
        }
        let n: usize = digits.parse().ok()?;
        let size = match kind {
            'b' if n == 1 => 1,
            'i' | 'u' if matches!(n, 1 | 2 | 4 | 8) => n,
            'f' if matches!(n, 2 | 4 | 8 | 16) => n,
            'c' if matches!(n, 8 | 16 | 32) => n,
            'S' | 'V' => n,
            'U' => n.checked_mul(4)?,
            _ => return None,
        };
        Some(DType::simple(kind, order, size))
    }

    /// numpy's scalar type name: `float64`, `int32`, `bool`, `bytes_`, `void`.
    pub fn numpy_name(&self) -> String {
        match self {
            DType::Simple { kind, size, .. } => match kind {
                'b' => "bool".into(),
                'i' => format!("int{}", size * 8),
                'u' => format!("uint{}", size * 8),
                'f' => format!("float{}", size * 8),
                'c' => format!("complex{}", size * 8),
                'S' => "bytes_".into(),
                'U' => "str_".into(),
                'O' => "object_".into(),
                _ => "void".into(),
            },
            DType::DateTime { kind: 'M', .. } => "datetime64".into(),
            DType::DateTime { .. } => "timedelta64".into(),
            DType::Struct(_) => "void".into(),
        }
    }
}

impl ByteOrder {
    /// The first character of numpy's `dtype.str`.
    fn symbol(self) -> char {
        match self {
            ByteOrder::Little => '<',
            ByteOrder::Big => '>',
            ByteOrder::NotApplicable => '|',
        }
    }
}

/// numpy's datetime units, in the spelling `dtype.str` uses.
const DATETIME_UNITS: [&str; 13] = [
    "Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as",
];

/// A `datetime64`/`timedelta64` dtype from what follows its kind in a typestr: `8[s]`, `8[25ms]`,
/// `8[generic]`, `8` or nothing (generic). The unit is normalised as numpy does: a multiplier of 1
/// is dropped (`[01s]` → `[s]`), `μs` becomes `us`.
fn datetime_dtype(kind: char, order: ByteOrder, rest: &str) -> Option<DType> {
    let meta = match rest {
        "" | "8" => {
            return Some(DType::DateTime {
                kind,
                order,
                unit: "generic".into(),
            });
        }
        _ => rest.strip_prefix("8[")?.strip_suffix(']')?,
    };
    let split = meta
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(meta.len());
    let (digits, base) = meta.split_at(split);
    let base = if base == "μs" { "us" } else { base };
    // numpy keeps the multiplier in a C int.
    let multiple: i32 = if digits.is_empty() {
        1
    } else {
        digits.parse().ok()?
    };
    let unit = match base {
        "generic" if multiple == 1 => "generic".to_string(),
        _ if !DATETIME_UNITS.contains(&base) => return None,
        _ if multiple == 1 => base.to_string(),
        _ => format!("{multiple}{base}"),
    };
    Some(DType::DateTime { kind, order, unit })
}

impl Date {
    /// Python `date.isoformat()`: `2001-12-14`.
    pub fn isoformat(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl DateTime {
    /// Python `datetime.isoformat(sep)` (also orjson's datetime text with `sep = 'T'`):
    /// microseconds only when non-zero, `+HH:MM` offset only when aware.
    pub fn isoformat(&self, sep: char) -> String {
        let mut out = format!(
            "{}{sep}{:02}:{:02}:{:02}",
            self.date.isoformat(),
            self.hour,
            self.minute,
            self.second
        );
        if self.microsecond != 0 {
            out.push_str(&format!(".{:06}", self.microsecond));
        }
        if let Some(offset) = self.utc_offset {
            let sign = if offset < 0 { '-' } else { '+' };
            let abs = offset.unsigned_abs();
            out.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60));
            if abs % 60 != 0 {
                out.push_str(&format!(":{:02}", abs % 60));
            }
        }
        out
    }
}

impl NdArray {
    /// numpy's byte strides of the array.
    pub fn strides(&self) -> Vec<i64> {
        let item = self.dtype.itemsize();
        match &self.layout {
            Layout::C => new_strides(&self.shape, item, false),
            Layout::F => new_strides(&self.shape, item, true),
            Layout::Strided(s) => s.clone(),
        }
    }

    /// numpy's `flags.c_contiguous`.
    pub fn c_contiguous(&self) -> bool {
        flag_contiguous(&self.shape, self.dtype.itemsize(), &self.strides(), false)
    }

    /// numpy's `flags.f_contiguous`.
    pub fn f_contiguous(&self) -> bool {
        flag_contiguous(&self.shape, self.dtype.itemsize(), &self.strides(), true)
    }

    /// Number of elements (product of the shape; 1 for 0-d).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `index` (C order) as a Python value (`arr.tolist()` element), for bool, int, uint,
    /// float, `S` and `U` dtypes; `None` for other dtypes or an index out of range.
    pub fn element(&self, index: usize) -> Option<Value> {
        let DType::Simple { kind, order, size } = self.dtype else {
            return None;
        };
        let raw = self.data.get(index * size..(index + 1) * size)?;
        let mut le = raw.to_vec();
        if order == ByteOrder::Big {
            le.reverse();
        }
        let mut wide = [0u8; 8];
        match (kind, size) {
            ('b', 1) => Some(Value::Bool(raw[0] != 0)),
            ('i', 1 | 2 | 4 | 8) => {
                let fill = if le[size - 1] & 0x80 != 0 { 0xff } else { 0 };
                wide.fill(fill);
                wide[..size].copy_from_slice(&le);
                Some(Value::int(i64::from_le_bytes(wide)))
            }
            ('u', 1 | 2 | 4 | 8) => {
                wide[..size].copy_from_slice(&le);
                Some(Value::int(u64::from_le_bytes(wide)))
            }
            ('f', 2) => Some(Value::Float(f16_to_f64(u16::from_le_bytes([le[0], le[1]])))),
            ('f', 4) => Some(Value::Float(f32::from_le_bytes(le.try_into().ok()?) as f64)),
            ('f', 8) => Some(Value::Float(f64::from_le_bytes(le.try_into().ok()?))),
            // numpy's tolist() drops trailing NULs of byte and unicode strings.
            ('S', _) => Some(Value::Bytes(Bytes::copy_from_slice(trim_nuls(raw)))),
            ('U', _) => {
                let units: Vec<u32> = le
                    .chunks(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4-byte units")))
                    .collect();
                let len = units.iter().rposition(|&u| u != 0).map_or(0, |p| p + 1);
                Some(
                    match units[..len]
                        .iter()
                        .map(|&u| char::from_u32(u))
                        .collect::<Option<String>>()
                    {
                        Some(s) => Value::Str(s),
                        None => Value::Surrogates(units[..len].to_vec()),
                    },
                )
            }
            _ => None,
        }
    }

    /// The Python value of a numpy scalar (`np.float64(1.5)` → `1.5`), as `.item()` gives it.
    pub fn scalar_to_python(&self) -> Option<Value> {
        self.element(0)
    }
}

fn trim_nuls(raw: &[u8]) -> &[u8] {
    &raw[..raw.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)]
}

/// The IEEE half-precision float nearest to `x` (ties to even), as numpy's `float16(x)`.
pub fn f64_to_f16(x: f64) -> u16 {
    let sign = if x.is_sign_negative() { 0x8000 } else { 0 };
    if x.is_nan() {
        return 0x7e00;
    }
    let a = x.abs();
    // Halfway between the largest finite half (65504) and the next step rounds to infinity.
    if a >= 65520.0 {
        return sign | 0x7c00;
    }
    // Largest finite-or-infinite pattern whose value is <= a (positive patterns are ordered).
    let (mut lo, mut hi) = (0u16, 0x7c00u16);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if f16_to_f64(mid) <= a {
            lo = mid
        } else {
            hi = mid - 1
        }
    }
    let below = lo;
    let pick = if below == 0x7c00 {
        below
    } else {
        let (d_below, d_above) = (a - f16_to_f64(below), f16_to_f64(below + 1) - a);
        if d_below < d_above || (d_below == d_above && below % 2 == 0) {
            below
        } else {
            below + 1
        }
    };
    sign | pick
}

/// An IEEE half-precision float, widened exactly.
pub fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((bits >> 10) & 0x1f) as i32;
    let frac = (bits & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats() {
        // Values from numpy: np.float16(x).view(np.uint16).
        for (x, bits) in [
            (0.5, 0x3800),
            (-1.5, 0xbe00),
            (65504.0, 0x7bff),
            (1e9, 0x7c00),
            (0.1, 0x2e66),
            (2.0f64.powi(-24), 1),
        ] {
            assert_eq!(f64_to_f16(x), bits, "{x}");
        }
        for bits in [0x3800u16, 0xbe00, 0x7bff, 1, 0x2e66] {
            assert_eq!(f64_to_f16(f16_to_f64(bits)), bits);
        }
    }

    #[test]
    fn datetime_typestrs() {
        // Input → numpy 2.4's `np.dtype(input).str`.
        for (input, str_) in [
            ("<M8[s]", "<M8[s]"),
            ("M8[1s]", "<M8[s]"),
            ("M8[01s]", "<M8[s]"),
            ("=m8[us]", "<m8[us]"),
            ("M8[μs]", "<M8[us]"),
            ("|M8[25s]", "<M8[25s]"),
            (">M8[D]", ">M8[D]"),
            ("m8[Y]", "<m8[Y]"),
            ("M8[2147483647s]", "<M8[2147483647s]"),
            ("<M8[generic]", "<M8"),
            ("M8[1generic]", "<M8"),
            ("M8", "<M8"),
            ("<m", "<m8"),
        ] {
            let dtype = DType::from_typestr(input).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(
                (dtype.typestr(), dtype.itemsize()),
                (str_.to_string(), 8),
                "{input}"
            );
            assert_eq!(DType::from_typestr(str_), Some(dtype), "{str_}");
        }
        let generic = DType::DateTime {
            kind: 'm',
            order: ByteOrder::Little,
            unit: "generic".into(),
        };
        assert_eq!(DType::from_typestr("<m8"), Some(generic));
        for bad in [
            "M8[]",
            "M8[2]",
            "M8[xs]",
            "M8[ s]",
            "M8[-1s]",
            "M8[s]x",
            "M4[s]",
            "M[s]",
            "M8[2147483648s]",
        ] {
            assert_eq!(DType::from_typestr(bad), None, "{bad}");
        }
    }
}
