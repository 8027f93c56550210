//! The `.npy` format as numpy 2.4's `np.save` writes it and `np.load` reads it.
//!
//! Hand-written because checksums need the exact bytes: numpy's header dict repr, the 21-space
//! growth-axis reserve, 64-byte alignment and version choice (no npy crate writes these), and a
//! reader that takes every version, byte order, Fortran order and structured dtype.

use bytes::Bytes;

use num_traits::ToPrimitive;

use super::literal_eval::{Lit, filter_header, literal_eval};
use super::pyrepr::str_repr;
use super::{CellError, PyErrorKind};
use crate::value::{
    ByteOrder, DType, Field, Layout, NdArray, StructDType, new_strides, packed_strides,
};

pub const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy reserves room for the growth axis to reach this many digits.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
const ARRAY_ALIGN: usize = 64;
/// `np.load`'s default `max_header_size`: longer headers are refused.
const MAX_HEADER_SIZE: usize = 10_000;

/// `repr()` of a shape tuple: `()`, `(3,)`, `(2, 3)`.
pub fn shape_repr(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// numpy's `dtype.descr` repr for a struct (with `('', '|V<n>')` for padding), or the
/// typestr repr for a builtin dtype.
pub fn descr_repr(dtype: &DType) -> String {
    match dtype {
        DType::Simple { .. } | DType::DateTime { .. } => str_repr(&dtype.typestr()),
        DType::Struct(s) => {
            let mut parts = Vec::new();
            let mut cursor = 0;
            for f in &s.fields {
                if f.offset > cursor {
                    parts.push(format!("('', '|V{}')", f.offset - cursor));
                }
                let mut part = format!("({}, {}", str_repr(&f.name), descr_repr(&f.dtype));
                if !f.shape.is_empty() {
                    part.push_str(&format!(", {}", shape_repr(&f.shape)));
                }
                part.push(')');
                parts.push(part);
                cursor = f.offset + f.dtype.itemsize() * f.shape.iter().product::<usize>();
            }
            if s.itemsize > cursor {
                parts.push(format!("('', '|V{}')", s.itemsize - cursor));
            }
            format!("[{}]", parts.join(", "))
        }
    }
}

/// Reorder element data between C order and Fortran order (`to_fortran`: C → F).
fn reorder(data: &[u8], shape: &[usize], itemsize: usize, to_fortran: bool) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let mut out = vec![0u8; data.len()];
    let mut index = vec![0usize; shape.len()];
    for c in 0..n {
        // The Fortran linear index of the C-order multi-index `index`.
        let mut f = 0;
        for d in (0..shape.len()).rev() {
            f = f * shape[d] + index[d];
        }
        let (src, dst) = if to_fortran { (c, f) } else { (f, c) };
        out[dst * itemsize..(dst + 1) * itemsize]
            .copy_from_slice(&data[src * itemsize..(src + 1) * itemsize]);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

/// The `np.save(buf, arr, allow_pickle=False)` bytes of an array.
pub fn write(a: &NdArray) -> Vec<u8> {
    // np.save writes Fortran order for an array that is F- and not C-contiguous.
    let fortran = a.f_contiguous() && !a.c_contiguous();
    let mut header = format!(
        "{{'descr': {}, 'fortran_order': {}, 'shape': {}, }}",
        descr_repr(&a.dtype),
        if fortran { "True" } else { "False" },
        shape_repr(&a.shape)
    );
    let growth_axis = if fortran {
        a.shape.last()
    } else {
        a.shape.first()
    };
    if let Some(n) = growth_axis {
        header.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(n.to_string().len())));
    }
    let mut out = wrap_header(&header);
    if fortran {
        out.extend_from_slice(&reorder(&a.data, &a.shape, a.dtype.itemsize(), true));
    } else {
        out.extend_from_slice(&a.data);
    }
    out
}

/// Magic, version, length and padding around a header, as numpy's `_wrap_header_guess_version`:
/// version 1.0 if it fits a u16 length, else 2.0, and 3.0 (UTF-8) if it is not latin-1.
fn wrap_header(header: &str) -> Vec<u8> {
    let latin1: Option<Vec<u8>> = header
        .chars()
        .map(|c| u8::try_from(c as u32).ok())
        .collect();
    let (major, encoded) = match latin1 {
        Some(bytes) => (1u8, bytes),
        None => (3u8, header.as_bytes().to_vec()),
    };
    let padded_len = |prefix: usize| {
        let hlen = encoded.len() + 1;
        hlen + ARRAY_ALIGN - (prefix + hlen) % ARRAY_ALIGN
    };
    let major = if major == 1 && padded_len(10) > u16::MAX as usize {
        2
    } else {
        major
    };
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[major, 0]);
    let total = if major == 1 {
        let total = padded_len(10);
        out.extend_from_slice(&(total as u16).to_le_bytes());
        total
    } else {
        let total = padded_len(12);
        out.extend_from_slice(&(total as u32).to_le_bytes());
        total
    };
    out.extend_from_slice(&encoded);
    out.resize(out.len() + total - encoded.len() - 1, b' ');
    out.push(b'\n');
    out
}

/// A `.npy` header: what numpy learns before it reads the data.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    /// The dtype as the header describes it (struct dtypes packed, padding as offsets).
    pub dtype: DType,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Where the array data starts in the buffer.
    pub data_offset: usize,
}

/// Which reader's rules apply to a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRules {
    /// `np.load`: a version 3.0 header is UTF-8, every other one latin-1.
    NpLoad,
    /// seamless-core's `parse_npy_header`: version 1.0 is read as 1.0, every other version
    /// (3.0 included) as 2.0, so every header is latin-1.
    Seamless,
}

fn npy_error(kind: PyErrorKind, message: impl Into<String>) -> CellError {
    CellError::new(kind, message)
}

fn value_error(message: impl Into<String>) -> CellError {
    npy_error(PyErrorKind::ValueError, message)
}

/// numpy's `_read_bytes`: exactly `n` bytes or `ValueError("EOF: ...")`.
fn read_bytes<'a>(buf: &'a [u8], at: usize, n: usize, what: &str) -> Result<&'a [u8], CellError> {
    let have = buf.len().saturating_sub(at);
    if have < n {
        return Err(value_error(format!(
            "EOF: reading {what}, expected {n} bytes got {have}"
        )));
    }
    Ok(&buf[at..at + n])
}

/// Read and check the header of a `.npy` buffer as numpy does (every version, the
/// `max_header_size` limit); the data are not looked at.
pub fn read_header(buf: &[u8]) -> Result<NpyHeader, CellError> {
    read_header_with(buf, HeaderRules::NpLoad)
}

/// `read_header` under the given reader's rules; a negative dimension is an error here.
pub fn read_header_with(buf: &[u8], rules: HeaderRules) -> Result<NpyHeader, CellError> {
    let (parsed, data_offset) = header_parts(buf, rules)?;
    let shape = parsed
        .shape
        .iter()
        .map(|&n| {
            usize::try_from(n).map_err(|_| value_error("negative dimensions are not allowed"))
        })
        .collect::<Result<_, _>>()?;
    Ok(NpyHeader {
        dtype: parsed.dtype,
        fortran_order: parsed.fortran_order,
        shape,
        data_offset,
    })
}

/// The parsed header dict and the data offset of a buffer.
fn header_parts(buf: &[u8], rules: HeaderRules) -> Result<(ParsedHeader, usize), CellError> {
    let magic = read_bytes(buf, 0, 8, "magic string")?;
    if &magic[..6] != MAGIC {
        return Err(value_error(format!(
            "the magic string is not correct; expected {}, got {}",
            super::pyrepr::bytes_repr(MAGIC),
            super::pyrepr::bytes_repr(&magic[..6])
        )));
    }
    let version = (magic[6], magic[7]);
    // np.load refuses versions other than 1.0, 2.0 and 3.0; seamless-core reads them as 2.0.
    let (len_size, utf8) = match (rules, version) {
        (_, (1, 0)) => (2, false),
        (HeaderRules::NpLoad, (2, 0)) | (HeaderRules::Seamless, _) => (4, false),
        (HeaderRules::NpLoad, (3, 0)) => (4, true),
        (HeaderRules::NpLoad, v) => return Err(value_error(format!("Invalid version {v:?}"))),
    };
    let len_bytes = read_bytes(buf, 8, len_size, "array header length")?;
    let hlen = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | b as usize);
    let start = 8 + len_size;
    let raw = read_bytes(buf, start, hlen, "array header")?;
    let header: String = if utf8 {
        std::str::from_utf8(raw)
            .map_err(|e| {
                npy_error(
                    PyErrorKind::UnicodeDecodeError,
                    format!("'utf-8' codec can't decode the .npy header: {e}"),
                )
            })?
            .to_string()
    } else {
        raw.iter().map(|&b| b as char).collect()
    };
    if header.chars().count() > MAX_HEADER_SIZE {
        return Err(value_error(format!(
            "Header info length ({}) is large and may not be safe to load securely (numpy's limit is {MAX_HEADER_SIZE})",
            header.chars().count()
        )));
    }
    // numpy retries a header that is not Python syntax with Python 2's `L` suffixes removed,
    // for versions up to 2.0 (which is every version under seamless-core's reading).
    let retry = rules == HeaderRules::Seamless || version <= (2, 0);
    Ok((parse_header(&header, retry)?, start + hlen))
}

/// Read a `.npy` buffer as seamless-core reads it (`parse_npy_header` + `np.frombuffer` +
/// `reshape`); data after the array are ignored, as numpy ignores them. Struct dtypes come back
/// in their aligned form (seamless-core converts them with `astype`).
pub fn read(buf: &[u8]) -> Result<NdArray, CellError> {
    let (header, data_offset) = header_parts(buf, HeaderRules::Seamless)?;
    let ParsedHeader {
        dtype,
        fortran_order: fortran,
        shape,
        bool_dims,
    } = header;
    if let DType::Simple { kind: 'O', .. } = dtype {
        return Err(value_error(
            "cannot create an OBJECT array from memory buffer",
        ));
    }
    let (count, shape) = frombuffer_shape(&shape, dtype.itemsize(), buf.len() - data_offset)?;
    let nbytes = count
        .checked_mul(dtype.itemsize())
        .ok_or_else(|| value_error("array is too big"))?;
    if buf.len() - data_offset < nbytes {
        return Err(value_error("buffer is smaller than requested size"));
    }
    if bool_dims {
        return Err(npy_error(
            PyErrorKind::TypeError,
            "'bool' object cannot be interpreted as an integer",
        ));
    }
    let data = &buf[data_offset..data_offset + nbytes];
    let multi_axis = shape.iter().filter(|&&n| n > 1).count() > 1;
    let data = if fortran && multi_axis {
        reorder(data, &shape, dtype.itemsize(), false)
    } else {
        data.to_vec()
    };
    // `reshape` of the 1-d buffer gives packed strides.
    let strides = packed_strides(&shape, dtype.itemsize(), fortran);
    let mut layout = Layout::of_strides(&shape, dtype.itemsize(), strides);
    let aligned = aligned_dtype(&dtype);
    // seamless-core copies every array whose dtype is not a native builtin or string with
    // `astype` (struct dtypes to their aligned form): a new array, in the same order.
    if astype_copies(&dtype) {
        let probe = NdArray {
            dtype: dtype.clone(),
            shape: shape.clone(),
            layout,
            data: Bytes::new(),
        };
        let fortran = !probe.c_contiguous() && probe.f_contiguous();
        layout = Layout::of_strides(
            &shape,
            aligned.itemsize(),
            new_strides(&shape, aligned.itemsize(), fortran),
        );
    }
    let data = if aligned != dtype {
        repack(&dtype, &aligned, &data, count)
    } else {
        data
    };
    Ok(NdArray {
        dtype: aligned,
        shape,
        layout,
        data: Bytes::from(data),
    })
}

/// Whether seamless-core's `deserialize` converts an array of this dtype with `astype`: unless
/// `dt.base.isbuiltin` (a native builtin number or bool), a native `S`/`U` string, or one of its
/// builtin list (which adds nothing).
fn astype_copies(dtype: &DType) -> bool {
    match dtype {
        DType::Simple { kind, order, .. } => *order == ByteOrder::Big || *kind == 'V',
        DType::DateTime { .. } | DType::Struct(_) => true,
    }
}

/// The element count `np.frombuffer` reads (`count = prod(shape)`; a negative count means "all
/// that is there") and the shape `reshape` then gives, with its errors.
fn frombuffer_shape(
    shape: &[i64],
    itemsize: usize,
    available: usize,
) -> Result<(usize, Vec<usize>), CellError> {
    if itemsize == 0 {
        return Err(value_error("itemsize cannot be zero in type"));
    }
    let product = shape
        .iter()
        .try_fold(1i64, |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| value_error("array is too big"))?;
    let count = if product < 0 {
        if !available.is_multiple_of(itemsize) {
            return Err(value_error(
                "buffer size must be a multiple of element size",
            ));
        }
        available / itemsize
    } else {
        usize::try_from(product).map_err(|_| value_error("array is too big"))?
    };
    let unknown = shape.iter().filter(|&&n| n == -1).count();
    if shape.iter().any(|&n| n < -1) || unknown > 1 {
        return Err(value_error(format!(
            "cannot reshape array of size {count} into shape {shape:?}"
        )));
    }
    let known: usize = shape
        .iter()
        .filter(|&&n| n >= 0)
        .map(|&n| n as usize)
        .product();
    let dims = shape
        .iter()
        .map(|&n| match n {
            -1 if known != 0 && count % known == 0 => Ok(count / known),
            -1 => Err(value_error(format!(
                "cannot reshape array of size {count} into shape {shape:?}"
            ))),
            n => Ok(n as usize),
        })
        .collect::<Result<Vec<usize>, _>>()?;
    Ok((count, dims))
}

/// A header dict as numpy's `_read_array_header` checks it, before the checks of its readers.
struct ParsedHeader {
    dtype: DType,
    fortran_order: bool,
    /// Python ints (bools count as ints), possibly negative at this point.
    shape: Vec<i64>,
    /// Whether any shape entry is a bool.
    bool_dims: bool,
}

/// The `descr`, `fortran_order` and `shape` of a header dict literal, checked as numpy checks
/// them.
fn parse_header(header: &str, retry: bool) -> Result<ParsedHeader, CellError> {
    let cannot_parse = || value_error(format!("Cannot parse header: {header:?}"));
    let lit = match literal_eval(header) {
        Ok(lit) => lit,
        Err(Some(e)) => return Err(e),
        Err(None) if retry => match literal_eval(&filter_header(header)?) {
            Ok(lit) => lit,
            Err(Some(e)) => return Err(e),
            Err(None) => return Err(cannot_parse()),
        },
        Err(None) => return Err(cannot_parse()),
    };
    let Lit::Dict(entries) = lit else {
        return Err(value_error(format!("Header is not a dictionary: {lit:?}")));
    };
    let get = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| matches!(k, Lit::Str(s) if s == name))
            .map(|(_, v)| v)
    };
    let (Some(descr), Some(fortran), Some(shape), 3) = (
        get("descr"),
        get("fortran_order"),
        get("shape"),
        entries.len(),
    ) else {
        return Err(value_error(
            "Header does not contain the correct keys (descr, fortran_order, shape)",
        ));
    };
    let bool_dims =
        matches!(shape, Lit::Tuple(items) if items.iter().any(|x| matches!(x, Lit::Bool(_))));
    let shape = match shape {
        Lit::Tuple(items) => items
            .iter()
            .map(|x| match x {
                Lit::Int(n) => n.to_i64().ok_or_else(|| value_error("array is too big")),
                Lit::Bool(b) => Ok(*b as i64),
                _ => Err(value_error(format!("shape is not valid: {shape:?}"))),
            })
            .collect::<Result<Vec<i64>, _>>()?,
        _ => return Err(value_error(format!("shape is not valid: {shape:?}"))),
    };
    let Lit::Bool(fortran) = fortran else {
        return Err(value_error(format!(
            "fortran_order is not a valid bool: {fortran:?}"
        )));
    };
    let dtype = descr_to_dtype(descr)
        .map_err(|why| value_error(format!("descr is not a valid dtype descriptor: {why}")))?;
    Ok(ParsedHeader {
        dtype,
        fortran_order: *fortran,
        shape,
        bool_dims,
    })
}

/// numpy's `descr_to_dtype`: a typestr, `(descr, shape)`, or a list of fields (padding
/// fields `''` skipped).
fn descr_to_dtype(lit: &Lit) -> Result<DType, String> {
    match lit {
        Lit::Str(s) => {
            DType::from_typestr(s).ok_or_else(|| format!("data type {s:?} not understood"))
        }
        // A sub-array dtype: only a shape of () keeps the array readable as itself.
        Lit::Tuple(parts) => match parts.as_slice() {
            [d, Lit::Tuple(dims)] if dims.is_empty() => descr_to_dtype(d),
            _ => Err("a sub-array dtype at the top level".into()),
        },
        Lit::List(items) => struct_dtype(items),
        _ => Err(format!("a {} is not a dtype", lit.type_name())),
    }
}

fn struct_dtype(items: &[Lit]) -> Result<DType, String> {
    let mut fields: Vec<Field> = Vec::new();
    let mut offset = 0usize;
    for item in items {
        let (Lit::Tuple(parts) | Lit::List(parts)) = item else {
            return Err("a struct descr entry is not a tuple".into());
        };
        let (name, descr, dims) = match parts.as_slice() {
            [n, d] => (n, d, None),
            [n, d, s] => (n, d, Some(s)),
            _ => return Err("a struct descr entry has neither 2 nor 3 items".into()),
        };
        let name = match name {
            Lit::Str(s) => s.clone(),
            // (title, name): the title is not kept.
            Lit::Tuple(t) if t.len() == 2 => match &t[1] {
                Lit::Str(s) => s.clone(),
                _ => return Err("a struct field name is not a string".into()),
            },
            _ => return Err("a struct field name is not a string".into()),
        };
        let dtype = descr_to_dtype(descr)?;
        let shape = match dims {
            None => Vec::new(),
            Some(Lit::Tuple(dims)) => dims.iter().map(dim).collect::<Result<_, _>>()?,
            Some(d) => vec![dim(d)?],
        };
        let size = shape
            .iter()
            .try_fold(dtype.itemsize(), |a, &n| a.checked_mul(n))
            .ok_or("sub-array overflows")?;
        // A sub-array dtype's type is void too, so an unnamed sub-array field is padding.
        let padding = name.is_empty()
            && (matches!(dtype, DType::Simple { kind: 'V', .. }) || !shape.is_empty());
        if !padding {
            if fields.iter().any(|f| f.name == name) {
                return Err("name already used as a name or title".into());
            }
            fields.push(Field {
                name,
                dtype,
                shape,
                offset,
            });
        }
        offset = offset.checked_add(size).ok_or("struct size overflows")?;
    }
    Ok(DType::Struct(StructDType {
        fields,
        itemsize: offset,
        aligned: false,
    }))
}

/// One sub-array dimension: a non-negative int.
fn dim(d: &Lit) -> Result<usize, String> {
    match d {
        Lit::Int(n) => n
            .to_usize()
            .ok_or_else(|| "a sub-array dimension is negative".to_string()),
        Lit::Bool(b) => Ok(*b as usize),
        _ => Err("a sub-array dimension is not an integer".into()),
    }
}

/// The alignment numpy gives a dtype in an aligned struct.
pub fn alignment(dtype: &DType) -> usize {
    match dtype {
        DType::Simple {
            kind: 'b' | 'S' | 'V',
            ..
        } => 1,
        DType::Simple { kind: 'U', .. } => 4,
        DType::Simple {
            kind: 'c', size, ..
        } => size / 2,
        DType::Simple { size, .. } => (*size).max(1),
        DType::DateTime { .. } => 8,
        DType::Struct(s) => s
            .fields
            .iter()
            .map(|f| alignment(&f.dtype))
            .max()
            .unwrap_or(1),
    }
}

/// `np.dtype(dtype, align=True)` for the fields in order: offsets rounded up to each field's
/// alignment, the item size to the largest.
pub fn aligned_dtype(dtype: &DType) -> DType {
    let DType::Struct(s) = dtype else {
        return dtype.clone();
    };
    let mut offset = 0usize;
    let mut fields = Vec::with_capacity(s.fields.len());
    for f in &s.fields {
        let dtype = aligned_dtype(&f.dtype);
        let align = alignment(&dtype);
        offset = offset.div_ceil(align) * align;
        let size = dtype.itemsize() * f.shape.iter().product::<usize>();
        fields.push(Field {
            name: f.name.clone(),
            dtype,
            shape: f.shape.clone(),
            offset,
        });
        offset += size;
    }
    let align = alignment(dtype);
    let itemsize = offset.div_ceil(align) * align;
    DType::Struct(StructDType {
        fields,
        itemsize,
        aligned: true,
    })
}

/// Copy `count` records from the `from` layout into the `to` layout (same fields), padding zeroed.
fn repack(from: &DType, to: &DType, data: &[u8], count: usize) -> Vec<u8> {
    let mut out = vec![0u8; to.itemsize() * count];
    for r in 0..count {
        let src = &data[r * from.itemsize()..(r + 1) * from.itemsize()];
        let dst = &mut out[r * to.itemsize()..(r + 1) * to.itemsize()];
        repack_record(from, to, src, dst);
    }
    out
}

fn repack_record(from: &DType, to: &DType, src: &[u8], dst: &mut [u8]) {
    match (from, to) {
        (DType::Struct(a), DType::Struct(b)) => {
            for (fa, fb) in a.fields.iter().zip(&b.fields) {
                let n: usize = fa.shape.iter().product();
                for i in 0..n {
                    let sa = fa.offset + i * fa.dtype.itemsize();
                    let sb = fb.offset + i * fb.dtype.itemsize();
                    repack_record(
                        &fa.dtype,
                        &fb.dtype,
                        &src[sa..sa + fa.dtype.itemsize()],
                        &mut dst[sb..sb + fb.dtype.itemsize()],
                    );
                }
            }
        }
        _ => dst.copy_from_slice(src),
    }
}

/// Whether a dtype's byte order is native (little-endian here) or not applicable.
pub fn is_native(dtype: &DType) -> bool {
    match dtype {
        DType::Simple { order, .. } | DType::DateTime { order, .. } => *order != ByteOrder::Big,
        DType::Struct(s) => s.fields.iter().all(|f| is_native(&f.dtype)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f8(values: &[f64], shape: Vec<usize>, layout: Layout) -> NdArray {
        let data: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        NdArray {
            dtype: DType::simple('f', ByteOrder::Little, 8),
            shape,
            layout,
            data: data.into(),
        }
    }

    #[test]
    fn writes_numpy_bytes() {
        let out = write(&f8(&[0.0, 1.0, 2.5], vec![3], Layout::C));
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }";
        assert_eq!(&out[..10], b"\x93NUMPY\x01\x00v\x00");
        assert_eq!(&out[10..10 + header.len()], header.as_bytes());
        assert_eq!(out.len(), 128 + 24);
        assert_eq!(out[127], b'\n');
        let back = read(&out).unwrap();
        assert_eq!(back, f8(&[0.0, 1.0, 2.5], vec![3], Layout::C));
    }

    #[test]
    fn fortran_round_trip() {
        let a = f8(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], vec![2, 3], Layout::F);
        let out = write(&a);
        let data = &out[out.len() - 48..];
        assert_eq!(&data[8..16], &3.0f64.to_le_bytes());
        assert_eq!(read(&out).unwrap(), a);
        // The header alone, without touching (or needing) the data.
        let header = read_header(&out[..out.len() - 48]).unwrap();
        assert_eq!(
            header,
            NpyHeader {
                dtype: DType::simple('f', ByteOrder::Little, 8),
                fortran_order: true,
                shape: vec![2, 3],
                data_offset: out.len() - 48,
            }
        );
    }

    /// `np.save` of datetime64/timedelta64 arrays (numpy 2.4): typestr, shape, data hex.
    #[test]
    fn datetime_arrays_match_numpy() {
        for (typestr, shape, data) in [
            ("<M8[s]", vec![2], "01000000000000000200000000000000"),
            (
                "<m8[ms]",
                vec![3],
                "0300000000000000feffffffffffffff0000000000000080",
            ),
            ("<M8", vec![2], "00000000000000800000000000000080"),
            (">M8[25s]", vec![2], "00000000000000010000000000000002"),
            ("<M8[us]", vec![], "0100000000000000"),
        ] {
            let array = NdArray {
                dtype: DType::from_typestr(typestr).expect("a datetime typestr"),
                shape: shape.clone(),
                layout: Layout::C,
                data: hex::decode(data).expect("hex").into(),
            };
            let header = format!(
                "{{'descr': '{typestr}', 'fortran_order': False, 'shape': {}, }}",
                shape_repr(&shape)
            );
            let mut expected = b"\x93NUMPY\x01\x00v\x00".to_vec();
            expected.extend(format!("{header:<117}\n").bytes());
            expected.extend(&array.data);
            assert_eq!(write(&array), expected, "{typestr}");
            assert_eq!(read(&expected).unwrap(), array, "{typestr}");
        }
    }

    #[test]
    fn bad_headers_are_errors() {
        let message = |buf: &[u8]| read(buf).unwrap_err().to_string();
        assert!(message(b"\x93NUMPY\x01\x00\xff\xff{").contains("EOF: reading array header"));
        assert!(read(b"\x93NUMPY\x02\x00\xff\xff\xff\xff").is_err());
        let with_header = |h: &str| {
            let mut buf = b"\x93NUMPY\x01\x00".to_vec();
            buf.extend_from_slice(&(h.len() as u16).to_le_bytes());
            buf.extend_from_slice(h.as_bytes());
            buf
        };
        // numpy's retry through tokenize gives up on the open brackets.
        let deep = format!("{{'descr': {}", "[".repeat(5_000));
        let e = read(&with_header(&deep)).unwrap_err();
        assert_eq!(e.kind, PyErrorKind::TokenError);
        let long = format!(
            "{{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }}{}",
            " ".repeat(20_000)
        );
        assert!(message(&with_header(&long)).contains("large"));
        let mut short = write(&f8(&[1.0, 2.0], vec![2], Layout::C));
        short.truncate(short.len() - 1);
        assert!(message(&short).contains("smaller than requested"));
    }

    #[test]
    fn header_literals_follow_python() {
        let parse = |descr: &str| {
            parse_header(
                &format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }} # note"),
                true,
            )
            .map(|h| h.dtype.typestr())
        };
        assert_eq!(parse(r"'\x3cf8'").unwrap(), "<f8");
        assert_eq!(parse(r"u'<i4'").unwrap(), "<i4");
        assert_eq!(parse(r"R'>i4'").unwrap(), ">i4");
        assert_eq!(parse("'<' 'f8'").unwrap(), "<f8");
        assert!(
            parse(r"r'\x3cf8'").is_err(),
            "raw strings keep their backslashes"
        );
        assert!(parse("'<f\08'").is_err());
        assert!(parse(r"'\u2'").is_err());
        let shape = |shape: &str| {
            parse_header(
                &format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}}}"),
                true,
            )
            .map(|h| (h.shape, h.bool_dims))
        };
        assert_eq!(shape("(00,)").unwrap(), (vec![0], false));
        assert_eq!(shape("(2L, 0x3)").unwrap(), (vec![2, 3], false));
        assert_eq!(shape("(True,)").unwrap(), (vec![1], true));
        assert!(shape("(00)").is_err(), "a parenthesised int is not a tuple");
        assert!(shape("(01,)").is_err());
        assert!(shape("(1+1,)").is_err(), "literal_eval refuses arithmetic");
    }

    #[test]
    fn unaligned_structs_are_aligned_on_read() {
        let header =
            "{'descr': [('a', '<i4'), ('b', '<f8')], 'fortran_order': False, 'shape': (1,), }";
        let mut buf = wrap_header(header);
        buf.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        let a = read(&buf).unwrap();
        let DType::Struct(s) = &a.dtype else { panic!() };
        assert_eq!((s.itemsize, s.fields[1].offset, s.aligned), (16, 8, true));
        assert_eq!(&a.data[8..16], &1.0f64.to_le_bytes());
        assert_eq!(
            descr_repr(&a.dtype),
            "[('a', '<i4'), ('', '|V4'), ('b', '<f8')]"
        );
    }
}
