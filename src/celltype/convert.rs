//! The conversion engine between the 13 cell types (spec §3 and `conversions.md`).
//!
//! `convert` runs the steps the reference converter (legacy Seamless 0.14) executes for a pair
//! (`matrix::steps`), each with that converter's semantics, minus the bugs listed at the top of
//! `conversions.md` (see `Departure` and docs/compat.md). It returns the result buffer (the very
//! same `Buffer` when the checksum is kept) and the BufferInfo facts learned on the way.

pub mod matrix;
mod numpy;

use std::fmt;

use crate::buffer::Buffer;
use crate::buffer_info::{Facts, Flag, PartnerField, json_type_of};
use crate::celltype::mixed::{MIXED_MAGIC, bytes_array};
use crate::celltype::npy::MAGIC as NPY_MAGIC;
use crate::celltype::{self, CellError, CellType, ipython, python, yaml};
use crate::checksum::Checksum;
use crate::value::Value;
use matrix::{Class, Leg};

use CellType::*;

/// Buffers for `int`, `float` and `bool` steps are at most this long (seamless's limit).
const MAX_SCALAR_BUFFER: usize = 1000;

/// The result of a conversion.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The converted buffer: the source `Buffer` itself when the checksum is kept.
    Buffer(Buffer),
    /// `checksum → X` of a buffer that holds one checksum: the result is that checksum, whose
    /// buffer the caller looks up.
    Reference(Checksum),
}

impl Output {
    pub fn checksum(&self) -> Checksum {
        match self {
            Output::Buffer(b) => b.checksum(),
            Output::Reference(cs) => *cs,
        }
    }
}

/// A successful conversion.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub output: Output,
    /// BufferInfo facts learned about the source, the intermediate and the result buffers.
    pub facts: Facts,
    /// Where this conversion knowingly differs from the reference converter.
    pub departures: Vec<Departure>,
}

/// A refused or failed conversion.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConvertError {
    pub from: CellType,
    pub to: CellType,
    /// The step that failed, when the conversion runs in several steps.
    pub step: Option<(CellType, CellType)>,
    pub reason: String,
    /// What was learned before the failure (true facts only; a failure never marks valid
    /// content as invalid). Boxed to keep the error small.
    pub facts: Box<Facts>,
    pub departures: Vec<Departure>,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot convert from {} to {}", self.from, self.to)?;
        if let Some((a, b)) = self.step {
            write!(f, " (at the step {a} → {b})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A deliberate difference from the reference converter (decisions 1–5 of `conversions.md`,
/// and the codec's refusal of numpy text for expressions; listed in docs/compat.md). A conversion reports the ones whose code path it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Departure {
    /// `binary → plain` gives the array as a JSON value, not a JSON string of compact JSON.
    BinaryToPlainAsValue,
    /// No 1000-byte limit on `binary ↔ plain` (the reference crashes above it).
    NoSizeLimit,
    /// `plain → binary` refuses a list numpy would make a unicode array (the reference writes
    /// its first element).
    NoUnicodeArray,
    /// YAML is read with PyYAML 1.1 semantics, as the `yaml` validator does (the reference
    /// converter used ruamel.yaml, YAML 1.2).
    Yaml11,
    /// `checksum → X` dereferences a buffer holding one checksum (the reference fails).
    ChecksumDereference,
    /// An expression with a path wrote a numpy array or record as text (Python `str()`), which
    /// the codec refuses rather than imitate numpy's printing (docs/compat.md, cell types).
    NoNumpyText,
}

impl Departure {
    /// Why, in one line (the compat report prints it).
    pub fn reason(self) -> &'static str {
        match self {
            Departure::BinaryToPlainAsValue => {
                "binary → plain gives the array as a JSON value (decision 1)"
            }
            Departure::NoSizeLimit => "no 1000-byte limit on binary ↔ plain (decision 2)",
            Departure::NoUnicodeArray => {
                "plain → binary refuses lists numpy turns into unicode arrays (decision 3)"
            }
            Departure::Yaml11 => {
                "YAML read with PyYAML 1.1 semantics, not ruamel.yaml 1.2 (decision 4)"
            }
            Departure::ChecksumDereference => "checksum → X dereferences the checksum (decision 5)",
            Departure::NoNumpyText => "no str() of numpy arrays and records (codec deviation)",
        }
    }
}

/// What a conversion accumulates while its steps run.
#[derive(Default)]
struct Run {
    facts: Facts,
    departures: Vec<Departure>,
}

impl Run {
    fn depart(&mut self, d: Departure) {
        if !self.departures.contains(&d) {
            self.departures.push(d);
        }
    }
}

/// Convert `buffer` from cell type `from` to `to`.
pub fn convert(buffer: &Buffer, from: CellType, to: CellType) -> Result<Conversion, ConvertError> {
    let mut run = Run::default();
    run.facts.about(buffer.checksum()).length = Some(buffer.len() as u64);
    let steps = matrix::steps(from, to);
    let mut output = Output::Buffer(buffer.clone());
    for step in &steps {
        let Output::Buffer(current) = &output else {
            // Only `checksum → X` gives a reference, and it is always a single step.
            unreachable!("a reference is always the last step");
        };
        match run_step(current, step.run, &mut run) {
            Ok(next) => {
                if let (Some(field), Output::Buffer(out)) = (step_partner(step), &next) {
                    run.facts
                        .partners(current.checksum(), out.checksum(), field, false);
                }
                output = next;
            }
            Err(reason) => {
                let step = (steps.len() > 1).then_some((step.from, step.to));
                let (facts, departures) = (Box::new(run.facts), run.departures);
                return Err(ConvertError {
                    from,
                    to,
                    step,
                    reason,
                    facts,
                    departures,
                });
            }
        }
    }
    Ok(Conversion {
        output,
        facts: run.facts,
        departures: run.departures,
    })
}

/// The forward conversion field the reference converter records for every non-trivial step
/// named `str → text`, `text → str`, `binary ↔ bytes` or `binary ↔ plain` (even when the
/// checksum is kept: `binary2bytes` of a non-bytes array is the array itself).
fn step_partner(step: &matrix::Step) -> Option<PartnerField> {
    if step.run.class == Class::Trivial {
        return None;
    }
    Some(match (step.from, step.to) {
        (Str, Text) => PartnerField::StrText,
        (Text, Str) => PartnerField::TextStr,
        (Binary, Bytes) => PartnerField::BinaryBytes,
        (Bytes, Binary) => PartnerField::BytesBinary,
        (Binary, Plain) => PartnerField::BinaryJson,
        (Plain, Binary) => PartnerField::JsonBinary,
        _ => return None,
    })
}

/// One terminal conversion; `Err` holds the reason.
fn run_step(buf: &Buffer, leg: Leg, run: &mut Run) -> Result<Output, String> {
    let Leg { from, to, class } = leg;
    if matches!(
        class,
        Class::Reinterpret | Class::Reformat | Class::Possible
    ) && matches!(to, Int | Float | Bool)
        && buf.len() > MAX_SCALAR_BUFFER
    {
        return Err(format!(
            "the buffer is {} bytes; {to} buffers are at most {MAX_SCALAR_BUFFER}",
            buf.len()
        ));
    }
    match class {
        Class::Trivial => Ok(Output::Buffer(buf.clone())),
        Class::Forbidden => Err("this conversion is forbidden".into()),
        Class::Reinterpret => reinterpret(buf, from, to, run),
        Class::Reformat => reformat(buf, from, to, run).map(Output::Buffer),
        Class::Possible => possible(buf, from, to, run).map(Output::Buffer),
        Class::Values => values(buf, from, to, run),
    }
}

/// Reinterpret: the checksum is kept if the buffer is valid as the target.
fn reinterpret(
    buf: &Buffer,
    from: CellType,
    to: CellType,
    run: &mut Run,
) -> Result<Output, String> {
    let cs = buf.checksum();
    if to == Binary {
        let ok = buf.as_slice().starts_with(NPY_MAGIC);
        run.facts.about(cs).set_flag(Flag::Numpy, ok);
        return if ok {
            Ok(Output::Buffer(buf.clone()))
        } else {
            Err("the buffer is not a .npy array".into())
        };
    }
    let text = decode_text(buf, run)?;
    match to {
        Plain => match celltype::deserialize(buf.as_slice(), Plain) {
            Ok(v) => learn_json(run, cs, &v),
            Err(e) => {
                run.facts.about(cs).set_flag(Flag::Json, false);
                // The codec's explanation says what is wrong; Python's message is the text itself.
                return Err(e
                    .detail
                    .unwrap_or_else(|| format!("not valid JSON: {}", e.message)));
            }
        },
        Text => {}
        Python => python::validate(&text).map_err(|e| format!("not valid Python: {e}"))?,
        Ipython => {
            // As the reference: IPython's transform must succeed; the result is not parsed.
            ipython::transform(&text).map_err(|e| format!("not valid IPython: {e}"))?;
        }
        Yaml => {
            run.depart(Departure::Yaml11);
            yaml::validate(&text).map_err(|e| format!("not valid YAML: {e}"))?;
        }
        _ => unreachable!("{from} → {to} is not a reinterpret pair"),
    }
    Ok(Output::Buffer(buf.clone()))
}

/// Reformat: always works on a valid source; may give a new buffer.
fn reformat(buf: &Buffer, from: CellType, to: CellType, run: &mut Run) -> Result<Buffer, String> {
    let cs = buf.checksum();
    match (from, to) {
        (_, Int | Float | Bool) | (Int | Float | Bool, Str) => {
            let value = parse(buf, from)?;
            emit(buf, &python_cast(value, to), to, run)
        }
        (Bytes, Binary | Mixed) => bytes_to_array(buf, to, run),
        (Binary | Mixed, Bytes) => array_to_bytes(buf, from, run),
        (Plain, Text) => match parse(buf, Plain)? {
            Value::Str(s) => {
                let out = emit(buf, &Value::Str(s), Text, run)?;
                run.facts
                    .partners(cs, out.checksum(), PartnerField::StrText, true);
                Ok(out)
            }
            _ => {
                run.facts.guarantee(cs, buf.as_slice(), Text);
                Ok(buf.clone())
            }
        },
        (Text, Plain) => match celltype::deserialize(buf.as_slice(), Plain) {
            Ok(v) => {
                learn_json(run, cs, &v);
                Ok(buf.clone())
            }
            Err(_) => text_to_str(buf, run),
        },
        (Text, Str) => text_to_str(buf, run),
        (Str, Text) => {
            let value = parse(buf, Str)?;
            let out = emit(buf, &value, Text, run)?;
            run.facts
                .partners(cs, out.checksum(), PartnerField::StrText, true);
            Ok(out)
        }
        (Yaml, Plain) => {
            let text = decode_text(buf, run)?;
            run.depart(Departure::Yaml11);
            let value = yaml::to_value(&text).map_err(|e| format!("not valid YAML: {e}"))?;
            emit(buf, &value, Plain, run)
        }
        (Ipython, Python) => {
            let text = decode_text(buf, run)?;
            emit(buf, &Value::Str(ipython_to_python(&text)?), Python, run)
        }
        _ => unreachable!("{from} → {to} is not a reformat pair"),
    }
}

/// seamless `ipython2python`: IPython's transform, with `_ = ` before every line that calls a
/// magic (`get_ipython().run_…`), so that its result is not echoed.
fn ipython_to_python(text: &str) -> Result<String, String> {
    let code = ipython::transform(text).map_err(|e| format!("not valid IPython: {e}"))?;
    Ok(code
        .split_inclusive('\n')
        .map(|line| {
            if line.starts_with("get_ipython().run_") {
                format!("_ = {line}")
            } else {
                line.to_string()
            }
        })
        .collect())
}

/// `text → str`: the text becomes a JSON string.
fn text_to_str(buf: &Buffer, run: &mut Run) -> Result<Buffer, String> {
    let text = decode_text(buf, run)?;
    let out = emit(buf, &Value::Str(text), Str, run)?;
    run.facts
        .partners(buf.checksum(), out.checksum(), PartnerField::TextStr, true);
    Ok(out)
}

/// `bytes → binary/mixed`: an `.npy` buffer (or, for mixed, a mixed container or JSON) is kept;
/// other UTF-8 text becomes a str for mixed; anything else becomes a 0-d `S` array.
fn bytes_to_array(buf: &Buffer, to: CellType, run: &mut Run) -> Result<Buffer, String> {
    let (cs, bytes) = (buf.checksum(), buf.as_slice());
    if bytes.starts_with(NPY_MAGIC) || (to == Mixed && bytes.starts_with(MIXED_MAGIC)) {
        run.facts.guarantee(cs, bytes, to);
        return Ok(buf.clone());
    }
    if to == Mixed && std::str::from_utf8(bytes).is_ok() {
        run.facts.about(cs).set_flag(Flag::Utf8, true);
        if let Ok(v) = celltype::deserialize(bytes, Plain) {
            learn_json(run, cs, &v);
            return Ok(buf.clone());
        }
        return text_to_str(buf, run);
    }
    // The `bytes2binary` field is recorded by `convert` (forward only: the array's bytes are
    // NUL-padded, so they need not give the source back).
    emit(buf, &Value::Array(bytes_array(bytes)), to, run)
}

/// `binary/mixed → bytes`: an `S` array gives its raw bytes; anything else is kept.
fn array_to_bytes(buf: &Buffer, from: CellType, run: &mut Run) -> Result<Buffer, String> {
    if from == Mixed && !buf.as_slice().starts_with(NPY_MAGIC) {
        return Ok(buf.clone());
    }
    match parse(buf, Binary)? {
        Value::Array(a) | Value::Scalar(a) if numpy::is_bytes_dtype(&a.dtype) => {
            let out = new_buffer(buf, a.data.to_vec());
            run.facts.about(out.checksum()).length = Some(out.len() as u64);
            run.facts.partners(
                buf.checksum(),
                out.checksum(),
                PartnerField::BinaryBytes,
                true,
            );
            Ok(out)
        }
        _ => Ok(buf.clone()),
    }
}

/// Possible: a scalar value cast to `int/float/bool/str`.
fn possible(buf: &Buffer, from: CellType, to: CellType, run: &mut Run) -> Result<Buffer, String> {
    let bytes = buf.as_slice();
    if (from, to) == (Mixed, Str) {
        if bytes.starts_with(NPY_MAGIC) {
            return Err("a .npy array has no str form".into());
        }
        if bytes.starts_with(MIXED_MAGIC) {
            return Err("a Seamless mixed container has no str form".into());
        }
    }
    let value = numpy::scalar_value(parse(buf, from)?)
        .map_err(|what| format!("{what} has no {to} form"))?;
    emit(buf, &python_cast(value, to), to, run)
}

/// Value conversions: everything with `checksum`, and binary ↔ plain.
fn values(buf: &Buffer, from: CellType, to: CellType, run: &mut Run) -> Result<Output, String> {
    match (from, to) {
        (_, Checksum) => {
            let out = Buffer::new(buf.checksum().hex().into_bytes());
            run.facts.about(out.checksum()).length = Some(64);
            Ok(Output::Buffer(out))
        }
        (Checksum, _) => dereference(buf, to, run),
        (Binary, Plain) => {
            note_size(buf, run);
            let value = parse(buf, Binary)?;
            let json = numpy::to_json(&value)?;
            let out = emit(buf, &json, Plain, run)?;
            run.depart(Departure::BinaryToPlainAsValue);
            run.facts.partners(
                buf.checksum(),
                out.checksum(),
                PartnerField::BinaryJson,
                true,
            );
            Ok(Output::Buffer(out))
        }
        (Plain, Binary) => {
            note_size(buf, run);
            plain_to_binary(buf, run).map(Output::Buffer)
        }
        _ => unreachable!("{from} → {to} is not a values pair"),
    }
}

fn note_size(buf: &Buffer, run: &mut Run) {
    if buf.len() > MAX_SCALAR_BUFFER {
        run.depart(Departure::NoSizeLimit);
    }
}

/// `plain → binary`: a number becomes a 0-d array, a rectangular list of numbers an array.
fn plain_to_binary(buf: &Buffer, run: &mut Run) -> Result<Buffer, String> {
    let cs = buf.checksum();
    let value = parse(buf, Plain)?;
    let scalar = matches!(value, Value::Int(_) | Value::Float(_) | Value::Bool(_));
    let array = match numpy::from_json(&value) {
        Ok(a) => a,
        Err(e) => {
            if e == numpy::ArrayError::Unicode {
                run.depart(Departure::NoUnicodeArray);
            }
            let info = run.facts.about(cs);
            info.set_flag(Flag::JsonNumericArray, false);
            // A string may still convert to a number (`"12"` → 12): only other values are
            // surely not numeric scalars (seamless records false for strings too).
            if !matches!(value, Value::Str(_) | Value::Surrogates(_)) {
                info.set_flag(Flag::JsonNumericScalar, false);
            }
            return Err(e.to_string());
        }
    };
    let flag = if scalar {
        Flag::JsonNumericScalar
    } else {
        Flag::JsonNumericArray
    };
    run.facts.about(cs).set_flag(flag, true);
    let (dtype, shape) = (array.dtype.numpy_name(), array.shape.clone());
    let out = emit(buf, &Value::Array(array), Binary, run)?;
    run.facts.about(out.checksum()).set_array(&dtype, &shape);
    run.facts
        .partners(cs, out.checksum(), PartnerField::JsonBinary, true);
    Ok(out)
}

/// `checksum → X`: a buffer holding one checksum (bare 64 hex digits, or as a JSON string)
/// converts to that checksum; a list or dict of checksums (a deep cell) only to plain, kept.
fn dereference(buf: &Buffer, to: CellType, run: &mut Run) -> Result<Output, String> {
    let bytes = buf.as_slice();
    if bytes.len() == 64
        && let Some(cs) = std::str::from_utf8(bytes)
            .ok()
            .and_then(Checksum::parse_strict)
    {
        run.depart(Departure::ChecksumDereference);
        return Ok(Output::Reference(cs));
    }
    let not_a_checksum =
        "the buffer does not hold a checksum (64 hex digits, or a JSON list or dict of them)";
    let value = celltype::deserialize(bytes, Plain).map_err(|_| not_a_checksum.to_string())?;
    match &value {
        Value::Str(s) => {
            let cs = Checksum::parse_strict(s).ok_or_else(|| not_a_checksum.to_string())?;
            run.depart(Departure::ChecksumDereference);
            Ok(Output::Reference(cs))
        }
        Value::List(_) | Value::Dict(_) if holds_only_checksums(&value) => {
            if to != Plain {
                return Err(
                    "a list or dict of checksums (a deep cell) converts only to plain".into(),
                );
            }
            run.depart(Departure::ChecksumDereference);
            learn_json(run, buf.checksum(), &value);
            Ok(Output::Buffer(buf.clone()))
        }
        _ => Err(not_a_checksum.into()),
    }
}

/// seamless `validate_checksum`: every leaf of nested lists and dicts is a 64-hex checksum.
fn holds_only_checksums(value: &Value) -> bool {
    match value {
        Value::Str(s) => Checksum::parse_strict(s).is_some(),
        Value::List(items) => items.iter().all(holds_only_checksums),
        Value::Dict(d) => d.values().all(holds_only_checksums),
        _ => false,
    }
}

/// Python's `int(v)`, `float(v)`, `bool(v)` or `str(v)` before serializing as `to`. The
/// serializers already apply that cast, except that the `str` serializer keeps a bool a bool;
/// a 0-d bytes array is cast as its element, and prints (`str()`) as numpy's repr.
fn python_cast(value: Value, to: CellType) -> Value {
    match value {
        Value::Bool(b) if to == Str => Value::Str(if b { "True" } else { "False" }.into()),
        Value::Array(a) if numpy::is_bytes_dtype(&a.dtype) && to == Str => {
            Value::Str(numpy::bytes_scalar_repr(&a))
        }
        Value::Array(a) if numpy::is_bytes_dtype(&a.dtype) => numpy::bytes_element(&a),
        other => other,
    }
}

/// Parse `buf` as `celltype`, the way the reference converter does: `binary` needs the `.npy`
/// magic (seamless-core 0.1.4 also reads UTF-8 text as a bytes array; the legacy code did not).
fn parse(buf: &Buffer, celltype: CellType) -> Result<Value, String> {
    if celltype == Binary && !buf.as_slice().starts_with(NPY_MAGIC) {
        return Err("the buffer is not a .npy array".into());
    }
    celltype::deserialize(buf.as_slice(), celltype)
        .map_err(|e| format!("not a valid {celltype} buffer: {}", why(&e)))
}

/// The buffer as text (strict UTF-8, trailing newlines removed), recording `is_utf8`.
fn decode_text(buf: &Buffer, run: &mut Run) -> Result<String, String> {
    let ok = std::str::from_utf8(buf.as_slice()).is_ok();
    run.facts.about(buf.checksum()).set_flag(Flag::Utf8, ok);
    match celltype::deserialize(buf.as_slice(), Text) {
        Ok(Value::Str(s)) => Ok(s),
        Ok(other) => unreachable!("text parses to a str, not {other:?}"),
        Err(e) => Err(format!("not UTF-8 text: {}", why(&e))),
    }
}

/// A codec error as a reason: Python's message, with the explanation where there is one
/// (some Python errors, such as the bare `TypeError` of a non-array binary, have no message).
fn why(e: &CellError) -> String {
    match (e.message.is_empty(), &e.detail) {
        (true, Some(detail)) => detail.clone(),
        (true, None) => e.kind.name().to_string(),
        (false, Some(detail)) => format!("{} ({detail})", e.message),
        (false, None) => e.message.clone(),
    }
}

/// Record that a buffer parsed as JSON, and its top-level type.
fn learn_json(run: &mut Run, cs: Checksum, value: &Value) {
    let info = run.facts.about(cs);
    match json_type_of(value) {
        Some(t) => info.set_json_type(t),
        None => info.set_flag(Flag::Json, true),
    }
}

/// Serialize `value` as `celltype` into the result buffer, and record what it is.
fn emit(
    source: &Buffer,
    value: &Value,
    celltype: CellType,
    run: &mut Run,
) -> Result<Buffer, String> {
    let bytes = celltype::serialize(value, celltype)
        .map_err(|e| format!("the value cannot be written as {celltype}: {}", why(&e)))?;
    let out = new_buffer(source, bytes);
    run.facts
        .guarantee(out.checksum(), out.as_slice(), celltype);
    Ok(out)
}

/// A result buffer; the source itself when the bytes come out the same (shared, not copied).
fn new_buffer(source: &Buffer, bytes: Vec<u8>) -> Buffer {
    if source.as_slice() == bytes.as_slice() {
        source.clone()
    } else {
        Buffer::new(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(bytes: &[u8], from: CellType, to: CellType) -> Result<Conversion, ConvertError> {
        convert(&Buffer::new(bytes.to_vec()), from, to)
    }

    #[test]
    fn trivial_serves_the_same_buffer() {
        let src = Buffer::new(b"not even json".to_vec());
        let c = convert(&src, Text, Bytes).unwrap();
        let Output::Buffer(out) = c.output else {
            panic!()
        };
        assert!(std::ptr::eq(
            out.as_slice().as_ptr(),
            src.as_slice().as_ptr()
        ));
    }

    #[test]
    fn errors_name_both_cell_types() {
        let e = conv(b"x = 1\n", Python, Int).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot convert from python to int: this conversion is forbidden"
        );
        let e = conv(b"plain text\n", Mixed, Binary).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot convert from mixed to binary: "),
            "{e}"
        );
        let e = conv(b"\xff", Bytes, Python).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot convert from bytes to python (at the step bytes → text): "),
            "{e}"
        );
    }

    #[test]
    fn to_checksum_writes_bare_hex() {
        let c = conv(b"hello\n", Text, Checksum).unwrap();
        let Output::Buffer(out) = c.output else {
            panic!()
        };
        assert_eq!(out.as_slice(), Checksum::of(b"hello\n").hex().as_bytes());
    }

    #[test]
    fn checksum_dereferences() {
        let target = Checksum::of(b"hello\n");
        let c = conv(target.hex().as_bytes(), Checksum, Text).unwrap();
        assert_eq!(c.output, Output::Reference(target));
        assert_eq!(c.departures, vec![Departure::ChecksumDereference]);
        let mut with_newline = target.hex().into_bytes();
        with_newline.push(b'\n');
        assert!(conv(&with_newline, Checksum, Text).is_err());
    }

    fn out_bytes(c: Conversion) -> Vec<u8> {
        let Output::Buffer(b) = c.output else {
            panic!("a reference")
        };
        b.as_slice().to_vec()
    }

    #[test]
    fn binary_and_plain_round_trip_as_values() {
        let plain = b"[\n  [\n    1,\n    2\n  ],\n  [\n    3,\n    4\n  ]\n]\n";
        let to_binary = conv(plain, Plain, Binary).unwrap();
        let npy = out_bytes(to_binary.clone());
        let info = to_binary.facts.get(&Checksum::of(&npy)).unwrap();
        assert_eq!(
            (info.dtype.as_deref(), info.shape.clone()),
            (Some("int64"), Some(vec![2, 2]))
        );
        assert_eq!(
            to_binary
                .facts
                .get(&Checksum::of(plain))
                .unwrap()
                .json2binary,
            Some(Checksum::of(&npy))
        );
        let back = conv(&npy, Binary, Plain).unwrap();
        assert_eq!(back.departures, vec![Departure::BinaryToPlainAsValue]);
        assert_eq!(out_bytes(back), plain);
        let e = conv(b"[1, \"a\"]", Plain, Binary).unwrap_err();
        assert_eq!(e.departures, vec![Departure::NoUnicodeArray]);
        // A failed plain → binary keeps the JSON facts.
        let info = e.facts.get(&Checksum::of(b"[1, \"a\"]")).unwrap();
        assert_eq!(
            (info.is_json, info.is_json_numeric_array),
            (None, Some(false))
        );
    }

    #[test]
    fn text_and_str() {
        let c = conv(b"hello\n", Text, Plain).unwrap();
        let (src, out) = (Checksum::of(b"hello\n"), Checksum::of(b"\"hello\"\n"));
        assert_eq!(c.facts.get(&src).unwrap().text2str, Some(out));
        assert_eq!(c.facts.get(&out).unwrap().str2text, Some(src));
        assert_eq!(out_bytes(c), b"\"hello\"\n");
        assert_eq!(
            out_bytes(conv(b"[1, 2]\n", Text, Plain).unwrap()),
            b"[1, 2]\n"
        );
        assert_eq!(out_bytes(conv(b"true\n", Str, Text).unwrap()), b"True\n");
        assert_eq!(
            out_bytes(conv(b"hello world\n", Mixed, Str).unwrap()),
            b"\"np.bytes_(b'hello world\\\\n')\"\n"
        );
    }

    #[test]
    fn bytes_become_a_bytes_array() {
        let c = conv(b"\xff\x00", Bytes, Binary).unwrap();
        let npy = out_bytes(c.clone());
        assert!(npy.starts_with(NPY_MAGIC));
        let src = c.facts.get(&Checksum::of(b"\xff\x00")).unwrap();
        assert_eq!(src.bytes2binary, Some(Checksum::of(&npy)));
        assert_eq!(
            c.facts
                .get(&Checksum::of(&npy))
                .and_then(|i| i.binary2bytes),
            None
        );
        assert_eq!(out_bytes(conv(&npy, Binary, Bytes).unwrap()), b"\xff\x00");
    }

    #[test]
    fn scalar_steps_refuse_long_buffers() {
        let long = vec![b' '; 1001];
        let e = conv(&long, Str, Int).unwrap_err();
        assert!(e.reason.contains("at most 1000"), "{e}");
    }
}
