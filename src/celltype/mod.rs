//! The 13 Seamless cell types: names, and the entry points that turn values into buffers
//! (`serialize`) and buffers into values (`deserialize`), byte-identical to seamless-core 0.1.4.
//!
//! One codec per file: the two JSON dialects, text types, `.npy`, the mixed container, and the
//! conversion engine between cell types.

use std::fmt;
use std::str::FromStr;

use crate::value::Value;

pub mod binary;
pub mod convert;
pub mod expression;
pub mod ipython;
pub mod json_orjson;
pub mod json_parse;
pub mod json_python;
pub mod literal_eval;
pub mod mixed;
mod mixed_stream;
pub mod npy;
pub mod py_digits;
pub mod pyrepr;
pub mod python;
pub mod scalar;
pub mod text;
mod unicode_printable;
pub mod yaml;

/// A Seamless cell type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CellType {
    Binary,
    Mixed,
    Text,
    Python,
    Ipython,
    Plain,
    Yaml,
    Str,
    Bytes,
    Int,
    Float,
    Bool,
    Checksum,
}

impl CellType {
    /// All 13, in seamless-core's order.
    pub const ALL: [CellType; 13] = [
        CellType::Binary,
        CellType::Mixed,
        CellType::Text,
        CellType::Python,
        CellType::Ipython,
        CellType::Plain,
        CellType::Yaml,
        CellType::Str,
        CellType::Bytes,
        CellType::Int,
        CellType::Float,
        CellType::Bool,
        CellType::Checksum,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CellType::Binary => "binary",
            CellType::Mixed => "mixed",
            CellType::Text => "text",
            CellType::Python => "python",
            CellType::Ipython => "ipython",
            CellType::Plain => "plain",
            CellType::Yaml => "yaml",
            CellType::Str => "str",
            CellType::Bytes => "bytes",
            CellType::Int => "int",
            CellType::Float => "float",
            CellType::Bool => "bool",
            CellType::Checksum => "checksum",
        }
    }
}

impl fmt::Display for CellType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown cell type name.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown cell type '{0}'; expected one of: binary, mixed, text, python, ipython, plain, yaml, str, bytes, int, float, bool, checksum"
)]
pub struct UnknownCellType(pub String);

impl FromStr for CellType {
    type Err = UnknownCellType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CellType::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownCellType(s.to_string()))
    }
}

/// The Python exception class seamless-core raises for a failure; compared against the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyErrorKind {
    TypeError,
    ValueError,
    UnicodeDecodeError,
    OverflowError,
    AssertionError,
    UnicodeEncodeError,
    IndexError,
    RecursionError,
    /// `json.JSONDecodeError` (a `ValueError`), where seamless-core lets it escape.
    JSONDecodeError,
    /// `tokenize.TokenError`, from numpy's retry of a `.npy` header that did not parse.
    TokenError,
    /// numpy's error for a unicode scalar holding a code point beyond U+10FFFF.
    SystemError,
    /// A missing key in a corrupt mixed form or data header.
    KeyError,
    /// A method called on the wrong type in a corrupt mixed form or data header.
    AttributeError,
}

impl PyErrorKind {
    /// The Python class name, as the vectors write it.
    pub fn name(self) -> &'static str {
        match self {
            PyErrorKind::TypeError => "TypeError",
            PyErrorKind::ValueError => "ValueError",
            PyErrorKind::UnicodeDecodeError => "UnicodeDecodeError",
            PyErrorKind::OverflowError => "OverflowError",
            PyErrorKind::AssertionError => "AssertionError",
            PyErrorKind::UnicodeEncodeError => "UnicodeEncodeError",
            PyErrorKind::IndexError => "IndexError",
            PyErrorKind::RecursionError => "RecursionError",
            PyErrorKind::JSONDecodeError => "JSONDecodeError",
            PyErrorKind::TokenError => "TokenError",
            PyErrorKind::SystemError => "SystemError",
            PyErrorKind::KeyError => "KeyError",
            PyErrorKind::AttributeError => "AttributeError",
        }
    }
}

/// A serialization or parsing failure: the Python error class, the message Python gives (compared
/// against the vectors), and, where Python's message alone does not say what is wrong, a detail.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    pub kind: PyErrorKind,
    pub message: String,
    pub detail: Option<String>,
}

impl CellError {
    pub fn new(kind: PyErrorKind, message: impl Into<String>) -> Self {
        CellError {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    /// Add an explanation for the user (not part of the Python-compatible message).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.detail, self.message.is_empty()) {
            (Some(detail), true) => write!(f, "{}: {detail}", self.kind.name()),
            (Some(detail), false) => write!(f, "{}: {} ({detail})", self.kind.name(), self.message),
            (None, _) => write!(f, "{}: {}", self.kind.name(), self.message),
        }
    }
}

impl std::error::Error for CellError {}

/// Run one step of a recursive walk over a value with enough stack. Values may nest up to the
/// nesting limits (254 for orjson, 1000 for Python), which in debug builds is more than a 2 MB
/// thread stack holds; the stack is grown on the heap when it runs low.
pub(crate) fn with_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, f)
}

/// Serialize a value as `celltype` (seamless-core `serialize_sync`).
pub fn serialize(value: &Value, celltype: CellType) -> Result<Vec<u8>, CellError> {
    // A Checksum object is first replaced by its hex, whatever the cell type.
    let hex;
    let value = match value {
        Value::Checksum(c) => {
            hex = Value::Str(c.hex());
            &hex
        }
        _ => value,
    };
    match celltype {
        CellType::Binary => binary::serialize(value),
        CellType::Mixed => mixed::serialize(value),
        CellType::Text | CellType::Python | CellType::Ipython | CellType::Yaml => {
            text::serialize(value)
        }
        CellType::Plain => scalar::serialize_plain(value),
        CellType::Str | CellType::Int | CellType::Float | CellType::Bool => {
            scalar::serialize(value, celltype)
        }
        CellType::Bytes => text::serialize_bytes(value),
        CellType::Checksum => scalar::serialize_checksum(value),
    }
}

/// Parse a buffer as `celltype` (seamless-core `Buffer.get_value`), validating as it does.
/// A `bytes` buffer parses to `Value::Bytes` (seamless-core returns the `Buffer` itself).
pub fn deserialize(buffer: &[u8], celltype: CellType) -> Result<Value, CellError> {
    match celltype {
        CellType::Binary => binary::deserialize(buffer),
        CellType::Mixed => mixed::deserialize(buffer),
        CellType::Text | CellType::Python | CellType::Ipython | CellType::Yaml => {
            text::deserialize(buffer, celltype)
        }
        CellType::Plain => scalar::deserialize_plain(buffer),
        CellType::Str | CellType::Int | CellType::Float | CellType::Bool => {
            scalar::deserialize(buffer, celltype)
        }
        CellType::Bytes => Ok(Value::Bytes(bytes::Bytes::copy_from_slice(buffer))),
        CellType::Checksum => scalar::deserialize_checksum(buffer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in CellType::ALL {
            assert_eq!(c.name().parse::<CellType>().unwrap(), c);
        }
        assert!("cson".parse::<CellType>().is_err());
    }
}
