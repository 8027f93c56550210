//! The `.npy` format as numpy 2.4's `np.save` writes it and `np.load` reads it.
//!
//! Hand-written because checksums need the exact bytes: numpy's header dict repr, the 21-space
//! growth-axis reserve, 64-byte alignment and version choice (no npy crate writes these), and a
//! reader that takes every version, byte order, Fortran order and structured dtype.

use bytes::Bytes;

use super::pyrepr::str_repr;
use crate::value::{ByteOrder, DType, Field, Layout, NdArray, StructDType};

pub const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy reserves room for the growth axis to reach this many digits.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
const ARRAY_ALIGN: usize = 64;
/// `np.load`'s default `max_header_size`: longer headers are refused.
const MAX_HEADER_SIZE: usize = 10_000;
/// Nesting allowed in a header literal (struct dtypes within struct dtypes).
const MAX_LITERAL_DEPTH: usize = 64;

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
    let fortran = a.layout == Layout::F;
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

/// Read and check the header of a `.npy` buffer as numpy does (every version, the
/// `max_header_size` limit, object dtypes refused); the data are not looked at.
pub fn read_header(buf: &[u8]) -> Result<NpyHeader, String> {
    if !buf.starts_with(MAGIC) || buf.len() < 8 {
        return Err("not an .npy buffer (no \\x93NUMPY magic and version)".into());
    }
    // numpy reads version 1.0 with a u16 length and every other version as 2.0 (u32, latin-1);
    // version 3.0 headers are UTF-8 by the format's definition (docs/compat.md).
    let (len_size, utf8) = match (buf[6], buf[7]) {
        (1, 0) => (2, false),
        (3, _) => (4, true),
        _ => (4, false),
    };
    let len_bytes = buf
        .get(8..8 + len_size)
        .ok_or(".npy header length is truncated")?;
    let hlen = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | b as usize);
    let start = 8 + len_size;
    let raw = buf.get(start..start.saturating_add(hlen)).ok_or_else(|| {
        format!(
            ".npy header claims {hlen} bytes but the buffer has only {}",
            buf.len() - start
        )
    })?;
    let header: String = if utf8 {
        std::str::from_utf8(raw)
            .map_err(|_| ".npy version 3 header is not UTF-8")?
            .to_string()
    } else {
        raw.iter().map(|&b| b as char).collect()
    };
    if header.chars().count() > MAX_HEADER_SIZE {
        return Err(format!(
            "Header info length ({}) is large and may not be safe to load securely (numpy's limit is {MAX_HEADER_SIZE})",
            header.chars().count()
        ));
    }
    let (dtype, fortran_order, shape) = parse_header(&header)?;
    Ok(NpyHeader {
        dtype,
        fortran_order,
        shape,
        data_offset: start + hlen,
    })
}

/// Read a `.npy` buffer as numpy does; data after the array are ignored, as numpy ignores them.
/// Struct dtypes come back in their aligned form (seamless-core converts them with `astype`).
pub fn read(buf: &[u8]) -> Result<NdArray, String> {
    let NpyHeader {
        dtype,
        fortran_order: fortran,
        shape,
        data_offset,
    } = read_header(buf)?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .ok_or("array shape overflows")?;
    let nbytes = count
        .checked_mul(dtype.itemsize())
        .ok_or("array size overflows")?;
    let data = &buf[data_offset..];
    if data.len() < nbytes {
        return Err(format!(
            "EOF: reading array data, expected {nbytes} bytes got {}",
            data.len()
        ));
    }
    let data = &data[..nbytes];
    let multi_axis = shape.iter().filter(|&&n| n > 1).count() > 1;
    let (data, layout) = if fortran && multi_axis {
        (reorder(data, &shape, dtype.itemsize(), false), Layout::F)
    } else {
        (data.to_vec(), Layout::C)
    };
    let aligned = aligned_dtype(&dtype);
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

/// The `(descr, fortran_order, shape)` of a header dict literal, checked as numpy checks it.
fn parse_header(header: &str) -> Result<(DType, bool, Vec<usize>), String> {
    // Python refuses source text holding NUL bytes before parsing it.
    if header.contains('\0') {
        return Err(format!(
            "Cannot parse header: it contains a NUL byte: {header:?}"
        ));
    }
    let mut p = Literal {
        s: header.as_bytes(),
        pos: 0,
    };
    let lit = p.parse(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(format!("header is not a single Python literal: {header:?}"));
    }
    let Lit::Dict(entries) = lit else {
        return Err(format!("header is not a dict: {header:?}"));
    };
    let mut keys: Vec<&str> = entries
        .iter()
        .map(|(k, _)| match k {
            Lit::Str(s) => Ok(s.as_str()),
            _ => Err("header keys must be strings".to_string()),
        })
        .collect::<Result<_, _>>()?;
    keys.sort();
    if keys != ["descr", "fortran_order", "shape"] {
        return Err(format!(
            "header does not contain the correct keys: {keys:?}"
        ));
    }
    let get = |name: &str| {
        &entries
            .iter()
            .find(|(k, _)| matches!(k, Lit::Str(s) if s == name))
            .expect("checked keys")
            .1
    };
    let shape = match get("shape") {
        Lit::Tuple(items) => items
            .iter()
            .map(|x| match x {
                Lit::Int(n) => usize::try_from(*n).map_err(|_| format!("shape is not valid: {n}")),
                _ => Err("shape is not valid: a non-integer entry".to_string()),
            })
            .collect::<Result<Vec<usize>, String>>()?,
        _ => return Err("shape is not valid: not a tuple".into()),
    };
    let fortran = match get("fortran_order") {
        Lit::Bool(b) => *b,
        _ => return Err("fortran_order is not a valid bool".into()),
    };
    let dtype = descr_to_dtype(get("descr"))?;
    if let DType::Simple { kind: 'O', .. } = dtype {
        return Err("Object arrays cannot be loaded when allow_pickle=False".into());
    }
    Ok((dtype, fortran, shape))
}

/// numpy's `descr_to_dtype`: a typestr, or a list of fields (padding fields `''` skipped).
fn descr_to_dtype(lit: &Lit) -> Result<DType, String> {
    match lit {
        Lit::Str(s) => {
            DType::from_typestr(s).ok_or_else(|| format!("descr is not a supported dtype: {s:?}"))
        }
        Lit::List(items) => {
            let mut fields = Vec::new();
            let mut offset = 0usize;
            for item in items {
                let Lit::Tuple(parts) = item else {
                    return Err("a struct descr entry is not a tuple".into());
                };
                let name = match parts.first() {
                    Some(Lit::Str(s)) => s.clone(),
                    // (title, name) pairs.
                    Some(Lit::Tuple(t)) if t.len() == 2 => match &t[1] {
                        Lit::Str(s) => s.clone(),
                        _ => return Err("a struct field name is not a string".into()),
                    },
                    _ => return Err("a struct field name is not a string".into()),
                };
                let dtype =
                    descr_to_dtype(parts.get(1).ok_or("a struct descr entry has no type")?)?;
                let shape = match parts.get(2) {
                    None => Vec::new(),
                    Some(Lit::Tuple(dims)) => dims
                        .iter()
                        .map(|d| match d {
                            Lit::Int(n) => usize::try_from(*n)
                                .map_err(|_| "a sub-array dimension is negative".to_string()),
                            _ => Err("a sub-array dimension is not an integer".to_string()),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(Lit::Int(n)) => {
                        vec![usize::try_from(*n).map_err(|_| "a sub-array dimension is negative")?]
                    }
                    Some(_) => return Err("a sub-array shape is not a tuple".into()),
                };
                let count = shape
                    .iter()
                    .try_fold(1usize, |a, &n| a.checked_mul(n))
                    .ok_or("sub-array overflows")?;
                let size = dtype
                    .itemsize()
                    .checked_mul(count)
                    .ok_or("sub-array overflows")?;
                let padding = name.is_empty() && matches!(dtype, DType::Simple { kind: 'V', .. });
                if !padding {
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
        _ => Err("descr is neither a typestr nor a list of fields".into()),
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

/// A Python literal as it appears in `.npy` headers.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

/// A small `ast.literal_eval` for header dicts: strings, ints, True/False/None, tuples, lists, dicts.
struct Literal<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Literal<'_> {
    /// Whitespace and `#` comments, which `ast.literal_eval` skips.
    fn skip_ws(&mut self) {
        loop {
            match self.s.get(self.pos) {
                Some(b) if b.is_ascii_whitespace() => self.pos += 1,
                Some(b'#') => {
                    while self.s.get(self.pos).is_some_and(|&b| b != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn err(&self, what: &str) -> String {
        format!("malformed .npy header: {what} at offset {}", self.pos)
    }

    fn parse(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_LITERAL_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.skip_ws();
        match self.s.get(self.pos) {
            Some(b'\'' | b'"') => self.string(false),
            // `u'...'` (Python 2 headers) and raw `r'...'` are str literals too.
            Some(&p @ (b'u' | b'U' | b'r' | b'R'))
                if matches!(self.s.get(self.pos + 1), Some(b'\'' | b'"')) =>
            {
                self.pos += 1;
                self.string(matches!(p, b'r' | b'R'))
            }
            // `(x)` without a comma is just `x`, as in Python.
            Some(b'(') => self.sequence(b')', depth).map(|(mut items, comma)| {
                if items.len() == 1 && !comma {
                    items.remove(0)
                } else {
                    Lit::Tuple(items)
                }
            }),
            Some(b'[') => self
                .sequence(b']', depth)
                .map(|(items, _)| Lit::List(items)),
            Some(b'{') => self.dict(depth),
            Some(b'-' | b'0'..=b'9') => self.int(),
            _ => {
                for (word, lit) in [
                    ("True", Lit::Bool(true)),
                    ("False", Lit::Bool(false)),
                    ("None", Lit::None),
                ] {
                    if self.s[self.pos..].starts_with(word.as_bytes()) {
                        self.pos += word.len();
                        return Ok(lit);
                    }
                }
                Err(self.err("unexpected token"))
            }
        }
    }

    /// A quoted str literal with Python's escapes; a malformed `\x`/`\u`/`\U` escape is a syntax
    /// error, an unknown escape keeps its backslash (as Python does).
    fn string(&mut self, raw: bool) -> Result<Lit, String> {
        let quote = self.s[self.pos];
        self.pos += 1;
        let mut out = String::new();
        loop {
            let b = *self
                .s
                .get(self.pos)
                .ok_or_else(|| self.err("unterminated string"))?;
            if b == quote {
                self.pos += 1;
                return Ok(Lit::Str(out));
            }
            if b != b'\\' || raw {
                // Copy one character (the header is a str, so the bytes are valid UTF-8); in a
                // raw string a backslash also keeps the character after it, quote included.
                let char_len = |lead: u8| match lead {
                    0x00..=0x7f => 1,
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    _ => 4,
                };
                let mut len = char_len(b);
                if b == b'\\' {
                    len += self.s.get(self.pos + 1).map_or(0, |&next| char_len(next));
                }
                let end = (self.pos + len).min(self.s.len());
                let piece = std::str::from_utf8(&self.s[self.pos..end])
                    .map_err(|_| self.err("string is not UTF-8"))?;
                out.push_str(piece);
                self.pos = end;
                continue;
            }
            let c = *self
                .s
                .get(self.pos + 1)
                .ok_or_else(|| self.err("unterminated escape"))?;
            self.pos += 2;
            let simple = match c {
                b'\\' => Some('\\'),
                b'\'' => Some('\''),
                b'"' => Some('"'),
                b'a' => Some('\u{7}'),
                b'b' => Some('\u{8}'),
                b'f' => Some('\u{c}'),
                b'n' => Some('\n'),
                b'r' => Some('\r'),
                b't' => Some('\t'),
                b'v' => Some('\u{b}'),
                _ => None,
            };
            match (simple, c) {
                (Some(ch), _) => out.push(ch),
                // A backslash-newline continues the line.
                (None, b'\n') => {}
                (None, b'0'..=b'7') => {
                    let digits = self.s[self.pos - 1..]
                        .iter()
                        .take(3)
                        .take_while(|d| (b'0'..=b'7').contains(d))
                        .count();
                    let text = std::str::from_utf8(&self.s[self.pos - 1..self.pos - 1 + digits])
                        .expect("octal digits");
                    out.push(
                        char::from_u32(u32::from_str_radix(text, 8).expect("octal"))
                            .expect("below 0x200"),
                    );
                    self.pos += digits - 1;
                }
                (None, b'x' | b'u' | b'U') => {
                    let n = match c {
                        b'x' => 2,
                        b'u' => 4,
                        _ => 8,
                    };
                    let hex = self
                        .s
                        .get(self.pos..self.pos + n)
                        .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                    let code = hex
                        .and_then(|h| u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
                        .and_then(char::from_u32)
                        .ok_or_else(|| self.err("truncated \\x, \\u or \\U escape in a string"))?;
                    out.push(code);
                    self.pos += n;
                }
                (None, _) => {
                    out.push('\\');
                    self.pos -= 1;
                }
            }
        }
    }

    fn int(&mut self) -> Result<Lit, String> {
        let start = self.pos;
        if self.s[self.pos] == b'-' {
            self.pos += 1;
        }
        while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        // Python 2 long literals (`3L`) appear in old files; numpy strips the suffix.
        let end = self.pos;
        if self.s.get(self.pos) == Some(&b'L') {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..end]).expect("ASCII digits");
        let digits = text.trim_start_matches('-');
        if digits.len() > 1 && digits.starts_with('0') && digits.bytes().any(|b| b != b'0') {
            return Err(self.err("leading zeros in a decimal integer literal are not permitted"));
        }
        text.parse()
            .map(Lit::Int)
            .map_err(|_| self.err("invalid integer"))
    }

    /// The items up to `close`, and whether any comma was seen.
    fn sequence(&mut self, close: u8, depth: usize) -> Result<(Vec<Lit>, bool), String> {
        self.pos += 1;
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            self.skip_ws();
            if self.s.get(self.pos) == Some(&close) {
                self.pos += 1;
                return Ok((items, comma));
            }
            items.push(self.parse(depth + 1)?);
            self.skip_ws();
            match self.s.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    comma = true;
                }
                Some(&c) if c == close => {}
                _ => return Err(self.err("expected ',' or a closing bracket")),
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Lit, String> {
        self.pos += 1;
        let mut entries = Vec::new();
        loop {
            self.skip_ws();
            if self.s.get(self.pos) == Some(&b'}') {
                self.pos += 1;
                return Ok(Lit::Dict(entries));
            }
            let k = self.parse(depth + 1)?;
            self.skip_ws();
            if self.s.get(self.pos) != Some(&b':') {
                return Err(self.err("expected ':'"));
            }
            self.pos += 1;
            let v = self.parse(depth + 1)?;
            entries.push((k, v));
            self.skip_ws();
            match self.s.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
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
        assert!(
            read(b"\x93NUMPY\x01\x00\xff\xff{")
                .unwrap_err()
                .contains("claims")
        );
        assert!(read(b"\x93NUMPY\x02\x00\xff\xff\xff\xff").is_err());
        let with_header = |h: &str| {
            let mut buf = b"\x93NUMPY\x01\x00".to_vec();
            buf.extend_from_slice(&(h.len() as u16).to_le_bytes());
            buf.extend_from_slice(h.as_bytes());
            buf
        };
        let deep = format!("{{'descr': {}", "[".repeat(5_000));
        assert!(read(&with_header(&deep)).unwrap_err().contains("too deep"));
        let long = format!(
            "{{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }}{}",
            " ".repeat(20_000)
        );
        assert!(read(&with_header(&long)).unwrap_err().contains("large"));
        let mut short = write(&f8(&[1.0, 2.0], vec![2], Layout::C));
        short.truncate(short.len() - 1);
        assert!(read(&short).unwrap_err().contains("EOF"));
    }

    #[test]
    fn header_literals_follow_python() {
        let parse = |descr: &str| {
            parse_header(&format!(
                "{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }} # note"
            ))
            .map(|(d, _, _)| d.typestr())
        };
        assert_eq!(parse(r"'\x3cf8'").unwrap(), "<f8");
        assert_eq!(parse(r"u'<i4'").unwrap(), "<i4");
        assert_eq!(parse(r"R'>i4'").unwrap(), ">i4");
        assert!(
            parse(r"r'\x3cf8'").is_err(),
            "raw strings keep their backslashes"
        );
        assert!(parse("'<f\08'").is_err());
        assert!(parse(r"'\u2'").is_err());
        let shape = |shape: &str| {
            parse_header(&format!(
                "{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}}}"
            ))
        };
        assert_eq!(shape("(00,)").unwrap().2, vec![0]);
        assert!(shape("(00)").is_err(), "a parenthesised int is not a tuple");
        assert!(shape("(01,)").is_err());
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
