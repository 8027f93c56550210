//! The `mixed` cell type (spec §2.8).

use super::{CellError, PyErrorKind};
use crate::value::Value;

pub fn serialize(_value: &Value) -> Result<Vec<u8>, CellError> {
    Err(CellError::new(PyErrorKind::TypeError, "mixed serialization is being built"))
}

pub fn deserialize(_buf: &[u8]) -> Result<Value, CellError> {
    Err(CellError::new(PyErrorKind::TypeError, "mixed parsing is being built"))
}
