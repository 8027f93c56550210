//! The 13 Seamless cell types: names, and the entry points that turn values into buffers
//! (`serialize`) and buffers into values (`deserialize`), byte-identical to seamless-core 0.1.4.
//!
//! One codec per file: the two JSON dialects, text types, `.npy`, the mixed container, and the
//! conversion engine between cell types.

use std::fmt;
use std::str::FromStr;

use crate::value::Value;

pub mod convert;
pub mod ipython;
pub mod python;
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
#[error("unknown cell type '{0}'; expected one of: binary, mixed, text, python, ipython, plain, yaml, str, bytes, int, float, bool, checksum")]
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
}

/// A serialization or parsing failure: the Python error class and a message saying what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct CellError {
    pub kind: PyErrorKind,
    pub message: String,
}

/// Serialize a value as `celltype` (seamless-core `serialize_sync`).
pub fn serialize(value: &Value, celltype: CellType) -> Result<Vec<u8>, CellError> {
    let _ = (value, celltype);
    Err(CellError { kind: PyErrorKind::TypeError, message: "serialization is not built yet".into() })
}

/// Parse a buffer as `celltype` (seamless-core `Buffer.get_value`), validating as it does.
pub fn deserialize(buffer: &[u8], celltype: CellType) -> Result<Value, CellError> {
    let _ = (buffer, celltype);
    Err(CellError { kind: PyErrorKind::TypeError, message: "parsing is not built yet".into() })
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
