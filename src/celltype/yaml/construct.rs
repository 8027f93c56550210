//! PyYAML's `SafeConstructor` over the composed node graph: the YAML 1.1 types (null, bool,
//! int of any size, float, binary, timestamp, omap, pairs, set, str, seq, map), merge keys
//! (`<<`, which mutate the shared node as in PyYAML) and Python key equality (`1`, `1.0` and
//! `true` are one key; the first key is kept and the last value wins).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use bytes::Bytes;
use indexmap::IndexMap;
use num_bigint::BigInt;
use num_traits::Zero;
use regex::Regex;

use super::compose::{Document, MAP, MERGE, NodeId, NodeKind, SEQ, STR, Surrogates, VALUE};
use crate::value::{Date, DateTime, Dict, Key, Value};

/// What construction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Only whether PyYAML would succeed: each node is constructed once, collections are not
    /// kept, so alias-heavy documents stay linear.
    Validate,
    /// The full value; aliased nodes are copied.
    Build,
}

/// How many `=` keys `construct_scalar` may follow (Python's recursion limit stops a cycle).
const MAX_SCALAR_INDIRECTION: usize = 1000;

/// Upper bound on the values copied for aliases: Python shares an aliased object, a `Value`
/// tree copies it, so a "billion laughs" document must stop somewhere.
const MAX_COPIED_VALUES: usize = 10_000_000;

/// Why construction failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// PyYAML's `safe_load` fails too.
    Invalid(String),
    /// PyYAML loads it, but the value cannot be a `Value` (only in `Mode::Build`).
    Unrepresentable(String),
}

/// Construct the document's value (PyYAML `construct_document`); None for an empty stream.
pub(super) fn construct(mut doc: Document, mode: Mode) -> Result<Value, Failure> {
    let Some(root) = doc.root else {
        return Ok(Value::None);
    };
    let mut constructor = Constructor {
        doc: &mut doc,
        mode,
        memo: HashMap::new(),
        in_progress: HashSet::new(),
        copied: 0,
        unrepresentable: None,
    };
    let result = constructor.object(root);
    match (result, constructor.unrepresentable) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some(why)) => Err(Failure::Unrepresentable(why)),
        (Err(e), None) => Err(Failure::Invalid(e)),
    }
}

struct Constructor<'d> {
    doc: &'d mut Document,
    mode: Mode,
    memo: HashMap<NodeId, Value>,
    in_progress: HashSet<NodeId>,
    /// Values copied so far for aliases.
    copied: usize,
    /// Set when construction stops because the value cannot be a `Value` (not a YAML error).
    unrepresentable: Option<String>,
}

impl Constructor<'_> {
    /// PyYAML `construct_object`: each node once (aliases share it), by its tag.
    fn object(&mut self, id: NodeId) -> Result<Value, String> {
        if let Some(value) = self.memo.get(&id) {
            // Validate mode keeps only scalars and stand-ins, so there is nothing to bound.
            if self.mode == Mode::Build {
                self.copied += weight(value);
            }
            if self.copied > MAX_COPIED_VALUES {
                return Err(self.unrepresentable(format!(
                    "the document expands to more than {MAX_COPIED_VALUES} copied values through aliases"
                )));
            }
            return Ok(value.clone());
        }
        let tag = self.doc.nodes[id].tag.clone();
        let collection = is_collection_tag(&tag);
        if self.in_progress.contains(&id) {
            // PyYAML builds collections through generators, so a collection may contain
            // itself; anything else recursing into itself is a RecursionError.
            return match (collection, self.mode) {
                (true, Mode::Validate) => Ok(empty_like(&tag)),
                (true, Mode::Build) => {
                    let why = self.error(id, "a recursive structure (an alias inside its own anchor) has no value outside Python");
                    Err(self.unrepresentable(why))
                }
                (false, _) => Err(self.error(id, "found unconstructable recursive node")),
            };
        }
        self.in_progress.insert(id);
        let value = self.by_tag(id, &tag);
        self.in_progress.remove(&id);
        let value = value?;
        let kept = if collection && self.mode == Mode::Validate {
            empty_like(&tag)
        } else {
            value.clone()
        };
        self.memo.insert(id, kept);
        Ok(value)
    }

    /// Record why the value cannot be built; the returned error stops construction.
    fn unrepresentable(&mut self, why: String) -> String {
        self.unrepresentable = Some(why.clone());
        why
    }

    fn by_tag(&mut self, id: NodeId, tag: &str) -> Result<Value, String> {
        let Some(name) = tag.strip_prefix("tag:yaml.org,2002:") else {
            return Err(self.undefined(id, tag));
        };
        match name {
            "null" => self.scalar(id).map(|_| Value::None),
            "bool" => self.bool(id),
            "int" => self.int(id),
            "float" => self.float(id),
            "binary" => self.binary(id),
            "timestamp" => self.timestamp(id),
            "omap" | "pairs" => self.pairs(id, name),
            "set" => Ok(Value::Set(
                self.mapping(id)?.into_iter().map(|(k, _)| k).collect(),
            )),
            "str" => self.string(id),
            "seq" => self.sequence(id),
            "map" => self.map(id),
            _ => Err(self.undefined(id, tag)),
        }
    }

    fn undefined(&self, id: NodeId, tag: &str) -> String {
        self.error(id, &format!("could not determine a constructor for the tag '{tag}' (only YAML 1.1 standard types are allowed)"))
    }

    fn error(&self, id: NodeId, message: &str) -> String {
        let node = &self.doc.nodes[id];
        format!("{message} (line {}, column {})", node.line, node.column)
    }

    /// SafeConstructor `construct_scalar`: a scalar's text, or the `=` value of a mapping.
    fn scalar(&self, id: NodeId) -> Result<String, String> {
        self.scalar_node(id, 0)
            .map(|leaf| match &self.doc.nodes[leaf].kind {
                NodeKind::Scalar { value, .. } => value.clone(),
                _ => unreachable!("scalar_node returns scalar nodes"),
            })
    }

    /// The scalar node `construct_scalar` reads for `id` (following `=` keys).
    fn scalar_node(&self, id: NodeId, depth: usize) -> Result<NodeId, String> {
        if depth > MAX_SCALAR_INDIRECTION {
            return Err(self.error(
                id,
                "maximum recursion depth exceeded while reading a scalar",
            ));
        }
        match &self.doc.nodes[id].kind {
            NodeKind::Scalar { .. } => Ok(id),
            NodeKind::Mapping(pairs) => {
                match pairs
                    .iter()
                    .find(|(key, _)| self.doc.nodes[*key].tag == VALUE)
                {
                    Some(&(_, value)) => self.scalar_node(value, depth + 1),
                    None => Err(self.error(id, "expected a scalar node, but found mapping")),
                }
            }
            NodeKind::Sequence(_) => {
                Err(self.error(id, "expected a scalar node, but found sequence"))
            }
        }
    }

    fn string(&mut self, id: NodeId) -> Result<Value, String> {
        let leaf = self.scalar_node(id, 0)?;
        let NodeKind::Scalar { value, surrogates } = &self.doc.nodes[leaf].kind else {
            unreachable!("scalar_node returns scalar nodes")
        };
        match (surrogates, self.mode) {
            (Surrogates::None, _) | (Surrogates::Ambiguous, Mode::Validate) => {
                Ok(Value::Str(value.clone()))
            }
            (Surrogates::Known(points), _) => Ok(Value::Surrogates(points.clone())),
            (Surrogates::Ambiguous, Mode::Build) => {
                let why = self.error(leaf, "a string mixing surrogate escapes with U+FFFD characters cannot be rebuilt exactly");
                Err(self.unrepresentable(why))
            }
        }
    }

    fn bool(&self, id: NodeId) -> Result<Value, String> {
        let text = self.scalar(id)?;
        match text.to_lowercase().as_str() {
            "yes" | "true" | "on" => Ok(Value::Bool(true)),
            "no" | "false" | "off" => Ok(Value::Bool(false)),
            _ => Err(self.error(id, &format!("invalid boolean {text:?}"))),
        }
    }

    fn int(&self, id: NodeId) -> Result<Value, String> {
        let text = self.scalar(id)?;
        construct_int(&text)
            .map(Value::Int)
            .ok_or_else(|| self.error(id, &format!("invalid integer {text:?}")))
    }

    fn float(&self, id: NodeId) -> Result<Value, String> {
        let text = self.scalar(id)?;
        construct_float(&text)
            .map(Value::Float)
            .ok_or_else(|| self.error(id, &format!("invalid float {text:?}")))
    }

    fn binary(&self, id: NodeId) -> Result<Value, String> {
        let text = self.scalar(id)?;
        if !text.is_ascii() {
            return Err(self.error(id, "failed to convert base64 data into ascii"));
        }
        decode_base64(text.as_bytes())
            .map(|b| Value::Bytes(Bytes::from(b)))
            .map_err(|e| self.error(id, &format!("failed to decode base64 data: {e}")))
    }

    fn timestamp(&self, id: NodeId) -> Result<Value, String> {
        let NodeKind::Scalar { value, .. } = &self.doc.nodes[id].kind else {
            return Err(self.error(id, "expected a scalar node for a timestamp"));
        };
        construct_timestamp(value).map_err(|e| self.error(id, &e))
    }

    fn sequence(&mut self, id: NodeId) -> Result<Value, String> {
        let NodeKind::Sequence(items) = &self.doc.nodes[id].kind else {
            return Err(self.error(id, "expected a sequence node, but found mapping or scalar"));
        };
        let items = items.clone();
        items
            .into_iter()
            .map(|item| self.object(item))
            .collect::<Result<_, _>>()
            .map(Value::List)
    }

    /// `!!omap` / `!!pairs`: a sequence of one-item mappings → a list of 2-tuples.
    fn pairs(&mut self, id: NodeId, name: &str) -> Result<Value, String> {
        let NodeKind::Sequence(items) = &self.doc.nodes[id].kind else {
            return Err(self.error(
                id,
                &format!("while constructing {name}: expected a sequence"),
            ));
        };
        let mut pairs = Vec::new();
        for item in items.clone() {
            let (key, value) = match &self.doc.nodes[item].kind {
                NodeKind::Mapping(p) if p.len() == 1 => p[0],
                NodeKind::Mapping(p) => {
                    return Err(self.error(item, &format!("while constructing {name}: expected a single mapping item, but found {} items", p.len())));
                }
                _ => {
                    return Err(self.error(
                        item,
                        &format!("while constructing {name}: expected a mapping of length 1"),
                    ));
                }
            };
            pairs.push(Value::Tuple(vec![self.object(key)?, self.object(value)?]));
        }
        Ok(Value::List(pairs))
    }

    fn map(&mut self, id: NodeId) -> Result<Value, String> {
        let entries = self.mapping(id)?;
        if self.mode == Mode::Validate {
            return Ok(Value::Dict(Dict::new()));
        }
        let mut dict = IndexMap::with_capacity(entries.len());
        for (key, value) in entries {
            dict.insert(to_key(&key).map_err(|e| self.error(id, &e))?, value);
        }
        Ok(Value::Dict(dict))
    }

    /// SafeConstructor `construct_mapping`: merge keys flattened, keys hashable, Python key
    /// equality; entries in insertion order.
    fn mapping(&mut self, id: NodeId) -> Result<Vec<(Value, Value)>, String> {
        if !matches!(self.doc.nodes[id].kind, NodeKind::Mapping(_)) {
            return Err(self.error(id, "expected a mapping node, but found sequence or scalar"));
        }
        self.flatten(id)?;
        let NodeKind::Mapping(pairs) = &self.doc.nodes[id].kind else {
            unreachable!("checked above")
        };
        let mut entries: Vec<(Value, Value)> = Vec::with_capacity(pairs.len());
        let mut index: HashMap<EqKey, usize> = HashMap::new();
        for (key_node, value_node) in pairs.clone() {
            let key = self.object(key_node)?;
            let eq = eq_key(&key).ok_or_else(|| {
                self.error(
                    key_node,
                    "while constructing a mapping: found unhashable key",
                )
            })?;
            let value = self.object(value_node)?;
            match index.get(&eq) {
                Some(&i) => entries[i].1 = value,
                None => {
                    index.insert(eq, entries.len());
                    entries.push((key, value));
                }
            }
        }
        Ok(entries)
    }

    /// SafeConstructor `flatten_mapping`, step by step as PyYAML does it: a merge entry is
    /// removed from the node *before* its value is flattened, so a mapping merging itself
    /// terminates, and merged entries go before the mapping's own, in place (the node is shared
    /// by its aliases).
    fn flatten(&mut self, id: NodeId) -> Result<(), String> {
        let mut merged = Vec::new();
        let mut index = 0;
        while let NodeKind::Mapping(pairs) = &self.doc.nodes[id].kind
            && index < pairs.len()
        {
            let (key, value) = pairs[index];
            match self.doc.nodes[key].tag.as_str() {
                MERGE => {
                    if let NodeKind::Mapping(pairs) = &mut self.doc.nodes[id].kind {
                        pairs.remove(index);
                    }
                    merged.extend(self.merged_pairs(value)?);
                }
                VALUE => {
                    self.doc.nodes[key].tag = STR.to_string();
                    index += 1;
                }
                _ => index += 1,
            }
        }
        if !merged.is_empty()
            && let NodeKind::Mapping(pairs) = &mut self.doc.nodes[id].kind
        {
            merged.append(pairs);
            *pairs = merged;
        }
        Ok(())
    }

    /// The entries a merge key's value contributes: a mapping, or a list of mappings where
    /// earlier mappings win (they come last).
    fn merged_pairs(&mut self, value: NodeId) -> Result<Vec<(NodeId, NodeId)>, String> {
        match &self.doc.nodes[value].kind {
            NodeKind::Mapping(_) => {
                self.flatten(value)?;
                Ok(self.mapping_pairs(value))
            }
            NodeKind::Sequence(subnodes) => {
                let mut groups = Vec::new();
                for sub in subnodes.clone() {
                    if !matches!(self.doc.nodes[sub].kind, NodeKind::Mapping(_)) {
                        return Err(self.error(
                            sub,
                            "while constructing a mapping: expected a mapping for merging",
                        ));
                    }
                    self.flatten(sub)?;
                    groups.push(self.mapping_pairs(sub));
                }
                Ok(groups.into_iter().rev().flatten().collect())
            }
            NodeKind::Scalar { .. } => Err(self.error(
                value,
                "while constructing a mapping: expected a mapping or list of mappings for merging",
            )),
        }
    }

    fn mapping_pairs(&self, id: NodeId) -> Vec<(NodeId, NodeId)> {
        match &self.doc.nodes[id].kind {
            NodeKind::Mapping(pairs) => pairs.clone(),
            _ => Vec::new(),
        }
    }
}

fn is_collection_tag(tag: &str) -> bool {
    matches!(tag, SEQ | MAP)
        || matches!(
            tag,
            "tag:yaml.org,2002:set" | "tag:yaml.org,2002:omap" | "tag:yaml.org,2002:pairs"
        )
}

/// A stand-in of the right Python type for a collection that is not kept.
fn empty_like(tag: &str) -> Value {
    match tag {
        MAP => Value::Dict(Dict::new()),
        "tag:yaml.org,2002:set" => Value::Set(Vec::new()),
        _ => Value::List(Vec::new()),
    }
}

/// Number of values in `value` (for the alias copy bound).
fn weight(value: &Value) -> usize {
    match value {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            1 + items.iter().map(weight).sum::<usize>()
        }
        Value::Dict(dict) => 1 + dict.values().map(|v| 1 + weight(v)).sum::<usize>(),
        _ => 1,
    }
}

/// Python equality classes of hashable key values: `True == 1 == 1.0`, aware datetimes equal
/// by instant. None for unhashable values (list, dict, set).
#[derive(Debug, PartialEq, Eq, Hash)]
enum EqKey {
    None,
    Number(BigInt),
    /// A non-integral float (bits), or NaN.
    Float(u64),
    Str(String),
    Surrogates(Vec<u32>),
    Bytes(Bytes),
    Date(Date),
    Naive(DateTime),
    /// Microseconds since 0001-01-01 UTC.
    Aware(i128),
}

fn eq_key(value: &Value) -> Option<EqKey> {
    Some(match value {
        Value::None => EqKey::None,
        Value::Bool(b) => EqKey::Number(BigInt::from(*b as u8)),
        Value::Int(i) => EqKey::Number(i.clone()),
        Value::Float(f) if f.is_nan() => EqKey::Float(f64::NAN.to_bits()),
        Value::Float(f) if f.is_finite() && f.fract() == 0.0 => EqKey::Number(float_to_bigint(*f)),
        Value::Float(f) => EqKey::Float(f.to_bits()),
        Value::Str(s) => EqKey::Str(s.clone()),
        Value::Surrogates(points) => EqKey::Surrogates(points.clone()),
        Value::Bytes(b) => EqKey::Bytes(b.clone()),
        Value::Date(d) => EqKey::Date(*d),
        Value::DateTime(dt) => match dt.utc_offset {
            None => EqKey::Naive(*dt),
            Some(offset) => EqKey::Aware(utc_micros(dt) - offset as i128 * 1_000_000),
        },
        _ => return None,
    })
}

/// An integral finite float as an exact integer (floats above 2^127 do not fit an i128).
fn float_to_bigint(f: f64) -> BigInt {
    if f == 0.0 {
        return BigInt::zero();
    }
    let bits = f.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1075;
    let mantissa = BigInt::from((bits & ((1 << 52) - 1)) | (1 << 52));
    let magnitude = if exponent >= 0 {
        mantissa << exponent as usize
    } else {
        mantissa >> (-exponent) as usize
    };
    if f.is_sign_negative() {
        -magnitude
    } else {
        magnitude
    }
}

fn utc_micros(dt: &DateTime) -> i128 {
    let days = days_from_civil(dt.date) as i128;
    let seconds =
        days * 86_400 + dt.hour as i128 * 3600 + dt.minute as i128 * 60 + dt.second as i128;
    seconds * 1_000_000 + dt.microsecond as i128
}

/// Days since 0001-01-01 (proleptic Gregorian).
fn days_from_civil(d: Date) -> i64 {
    let (y, m) = (d.year as i64, d.month as i64);
    let before_year = (y - 1) * 365 + (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400;
    let before_month: i64 = (1..m)
        .map(|month| days_in_month(d.year, month as u8) as i64)
        .sum();
    before_year + before_month + d.day as i64 - 1
}

/// The dict key for a constructed hashable value.
fn to_key(value: &Value) -> Result<Key, String> {
    Ok(match value {
        Value::None => Key::None,
        Value::Bool(b) => Key::Bool(*b),
        Value::Int(i) => Key::Int(i.clone()),
        Value::Float(f) => Key::Float(f.to_bits()),
        Value::Str(s) => Key::Str(s.clone()),
        Value::Bytes(b) => Key::Bytes(b.clone()),
        Value::Date(d) => Key::Date(*d),
        Value::DateTime(dt) => Key::DateTime(*dt),
        Value::Surrogates(points) => Key::Surrogates(points.clone()),
        _ => return Err("found unhashable key".into()),
    })
}

/// Python's `str.isspace`, which `int()` and `float()` strip.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python `int(text, base)` for ASCII digits (sign, surrounding whitespace, a matching
/// `0x`/`0o`/`0b` prefix). Underscores were already removed by the caller.
fn py_int(text: &str, base: u32) -> Option<BigInt> {
    let text = text.trim_matches(py_space);
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let prefix = match base {
        16 => "0x",
        8 => "0o",
        2 => "0b",
        _ => "",
    };
    let digits = match digits.get(..2) {
        Some(p) if !prefix.is_empty() && p.eq_ignore_ascii_case(prefix) => &digits[2..],
        _ => digits,
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    let magnitude = BigInt::parse_bytes(digits.as_bytes(), base)?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Python `float(text)`.
fn py_float(text: &str) -> Option<f64> {
    let text = text.trim_matches(py_space);
    if !text.is_ascii() || text.contains('_') {
        return None;
    }
    text.parse::<f64>().ok()
}

/// SafeConstructor `construct_yaml_int`.
fn construct_int(text: &str) -> Option<BigInt> {
    let value = text.replace('_', "");
    let (sign, value) = match value.chars().next()? {
        '-' => (-1, &value[1..]),
        '+' => (1, &value[1..]),
        _ => (1, &value[..]),
    };
    let magnitude = if value == "0" {
        BigInt::zero()
    } else if let Some(bin) = value.strip_prefix("0b") {
        py_int(bin, 2)?
    } else if let Some(hex) = value.strip_prefix("0x") {
        py_int(hex, 16)?
    } else if value.starts_with('0') {
        py_int(value, 8)?
    } else if value.contains(':') {
        value.split(':').try_fold(BigInt::zero(), |acc, part| {
            Some(acc * 60 + py_int(part, 10)?)
        })?
    } else {
        py_int(value, 10)?
    };
    Some(magnitude * sign)
}

/// SafeConstructor `construct_yaml_float`.
fn construct_float(text: &str) -> Option<f64> {
    let value = text.replace('_', "").to_lowercase();
    let (sign, value) = match value.chars().next()? {
        '-' => (-1.0, &value[1..]),
        '+' => (1.0, &value[1..]),
        _ => (1.0, &value[..]),
    };
    if value == ".inf" {
        Some(sign * f64::INFINITY)
    } else if value == ".nan" {
        Some(f64::NAN)
    } else if value.contains(':') {
        // Python sums from the last part up: value += digit * base; base *= 60.
        let digits = value
            .split(':')
            .map(py_float)
            .collect::<Option<Vec<f64>>>()?;
        let mut total = 0.0;
        let mut base = 1.0;
        for digit in digits.into_iter().rev() {
            total += digit * base;
            base *= 60.0;
        }
        Some(sign * total)
    } else {
        Some(sign * py_float(value)?)
    }
}

/// `binascii.a2b_base64` in its default (non-strict) mode, as `base64.decodebytes` uses it:
/// characters outside the alphabet are skipped, and padding ends the data.
fn decode_base64(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let (mut quad, mut left, mut pads) = (0u8, 0u32, 0u8);
    for &c in data {
        if c == b'=' {
            if quad >= 2 {
                pads += 1;
                if quad + pads >= 4 {
                    return Ok(out);
                }
            }
            continue;
        }
        let Some(v) = base64_value(c) else { continue };
        pads = 0;
        match quad {
            0 => left = v,
            1 => {
                out.push(((left << 2) | (v >> 4)) as u8);
                left = v & 0x0f;
            }
            2 => {
                out.push(((left << 4) | (v >> 2)) as u8);
                left = v & 0x03;
            }
            _ => out.push(((left << 6) | v) as u8),
        }
        quad = (quad + 1) % 4;
    }
    match quad {
        0 => Ok(out),
        1 => Err("Invalid base64-encoded string: number of data characters cannot be 1 more than a multiple of 4".into()),
        _ => Err("Incorrect padding".into()),
    }
}

fn base64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// SafeConstructor `construct_yaml_timestamp`: a date, or a datetime (fraction cut to
/// microseconds; `Z` or a `±hh[:mm]` offset makes it aware). Invalid dates fail like Python's
/// `datetime` constructors.
fn construct_timestamp(text: &str) -> Result<Value, String> {
    static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"^(?P<year>[0-9][0-9][0-9][0-9])-(?P<month>[0-9][0-9]?)-(?P<day>[0-9][0-9]?)",
            r"(?:(?:[Tt]|[ \t]+)(?P<hour>[0-9][0-9]?):(?P<minute>[0-9][0-9]):(?P<second>[0-9][0-9])",
            r"(?:\.(?P<fraction>[0-9]*))?",
            r"(?:[ \t]*(?P<tz>Z|(?P<tz_sign>[-+])(?P<tz_hour>[0-9][0-9]?)(?::(?P<tz_minute>[0-9][0-9]))?))?)?$"
        ))
        .unwrap()
    });
    // Python's `$` also matches before a final newline.
    let caps = TIMESTAMP
        .captures(text)
        .or_else(|| TIMESTAMP.captures(text.strip_suffix('\n')?))
        .ok_or_else(|| format!("invalid timestamp {text:?}"))?;
    let number = |name: &str| {
        caps.name(name)
            .map_or(0, |m| m.as_str().parse::<u32>().unwrap_or(0))
    };
    let (year, month, day) = (number("year"), number("month"), number("day"));
    if !(1..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year as u16, month as u8) as u32
    {
        return Err(format!("invalid date in timestamp {text:?}"));
    }
    let date = Date {
        year: year as u16,
        month: month as u8,
        day: day as u8,
    };
    if caps.name("hour").is_none() {
        return Ok(Value::Date(date));
    }
    let (hour, minute, second) = (number("hour"), number("minute"), number("second"));
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("invalid time in timestamp {text:?}"));
    }
    let microsecond = caps
        .name("fraction")
        .filter(|m| !m.as_str().is_empty())
        .map_or(0, |m| {
            let digits: String = m
                .as_str()
                .chars()
                .chain(std::iter::repeat('0'))
                .take(6)
                .collect();
            digits.parse::<u32>().unwrap_or(0)
        });
    let utc_offset = match caps.name("tz_sign") {
        Some(sign) => {
            let seconds = (number("tz_hour") * 3600 + number("tz_minute") * 60) as i32;
            if seconds >= 86_400 {
                return Err(format!(
                    "UTC offset must be strictly between -24 and 24 hours in timestamp {text:?}"
                ));
            }
            Some(if sign.as_str() == "-" {
                -seconds
            } else {
                seconds
            })
        }
        None => caps.name("tz").map(|_| 0),
    };
    Ok(Value::DateTime(DateTime {
        date,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        microsecond,
        utc_offset,
    }))
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_like_pyyaml() {
        for (text, expected) in [
            ("0777", 511),
            ("0b101", 5),
            ("0x1F", 31),
            ("-1_000", -1000),
            ("1:30", 90),
            ("+0", 0),
            ("00", 0),
        ] {
            assert_eq!(construct_int(text), Some(BigInt::from(expected)), "{text}");
        }
        assert_eq!(construct_int("0o17"), Some(BigInt::from(15)));
        assert_eq!(construct_int("089"), None);
        assert_eq!(construct_int(""), None);
    }

    #[test]
    fn floats_like_pyyaml() {
        assert_eq!(construct_float("1_000.5"), Some(1000.5));
        assert_eq!(construct_float("190:20:30.15"), Some(685230.15));
        assert_eq!(construct_float("-.INF"), Some(f64::NEG_INFINITY));
        assert!(construct_float(".NaN").unwrap().is_nan());
        assert_eq!(construct_float("1e3"), Some(1000.0));
    }

    #[test]
    fn base64_is_lenient_like_binascii() {
        assert_eq!(decode_base64(b"aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64(b"aGVsbG8=trailing").unwrap(), b"hello");
        assert!(decode_base64(b"aGVsbG8").is_err());
        assert!(decode_base64(b"a").is_err());
    }

    #[test]
    fn key_equality_is_pythons() {
        assert_eq!(eq_key(&Value::Bool(true)), eq_key(&Value::int(1)));
        assert_eq!(eq_key(&Value::Float(1.0)), eq_key(&Value::int(1)));
        assert_eq!(
            eq_key(&Value::Float(1e300)),
            Some(EqKey::Number(float_to_bigint(1e300)))
        );
        assert_ne!(eq_key(&Value::Float(0.5)), eq_key(&Value::int(0)));
        assert_eq!(eq_key(&Value::List(vec![])), None);
    }
}
