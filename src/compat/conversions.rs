//! The `conversions` section of a vectors file: each entry is checked against our conversion
//! matrix, and an entry carrying `buffer_hex` is really converted and its result compared.

use super::Outcome;

/// Check one entry of the `conversions` section.
pub fn check_case(case: &serde_json::Value) -> Outcome {
    let _ = case;
    Outcome::Failed("conversion checks are not built yet".into())
}
