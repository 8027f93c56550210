//! The `expressions` section of a vectors file: each case (source cell type, path, target cell
//! type, buffer) is evaluated with `celltype::expression::evaluate` and compared with the
//! reference: ok/failed, "no result", and the result checksum.
//!
//! As for conversions, error classes are not compared (decision 7 of `conversions.md`), and a
//! difference is a deviation only when the evaluation took a path that departs from the
//! reference on purpose (`Departure`, docs/compat.md); any other difference fails.

use serde_json::Value as Json;

use super::Outcome;
use super::conversions::{self, celltype_field, judge};
use crate::buffer::Buffer;
use crate::celltype::convert::Output;
use crate::celltype::expression::{self, Evaluation};

/// Check one entry of the `expressions` section.
pub fn check_case(case: &Json) -> Outcome {
    match check(case) {
        Ok(outcome) => outcome,
        Err(problem) => Outcome::Failed(problem),
    }
}

fn check(case: &Json) -> Result<Outcome, String> {
    let from = celltype_field(case, "source")?;
    let to = celltype_field(case, "target")?;
    let path = expression::parse_path(case.get("path").unwrap_or(&Json::Null))
        .map_err(|e| e.to_string())?;
    let hex = case
        .get("buffer_hex")
        .and_then(Json::as_str)
        .ok_or("the case has no 'buffer_hex'")?;
    let bytes = hex::decode(hex).map_err(|e| format!("bad buffer_hex: {e}"))?;
    let expected_ok = case
        .get("ok")
        .and_then(Json::as_bool)
        .ok_or("the case has no 'ok'")?;
    let expected = case.get("result_checksum").and_then(Json::as_str);
    let (got, departures) = match expression::evaluate(&Buffer::new(bytes), &path, from, to) {
        Ok(Evaluation { result, departures }) => (Ok(result), departures),
        Err(e) => (Err(e.to_string()), e.departures),
    };
    let difference = match (&got, expected_ok) {
        (Ok(result), true)
            if result.as_ref().map(|o| o.checksum().hex()).as_deref() == expected =>
        {
            return Ok(Outcome::Passed);
        }
        (Err(_), false) => return Ok(Outcome::Passed),
        (Ok(result), true) => format!(
            "result {} instead of {}",
            describe(result),
            expected.unwrap_or("no result")
        ),
        (Ok(result), false) => format!("gave {} where the reference fails", describe(result)),
        (Err(e), true) => format!("failed where the reference succeeds: {e}"),
    };
    Ok(judge(difference, &departures))
}

fn describe(result: &Option<Output>) -> String {
    match result {
        None => "no result".into(),
        Some(out) => conversions::describe(out),
    }
}
