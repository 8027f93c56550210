//! The `conversions` section of a vectors file: each entry is checked against our conversion
//! matrix, and an entry carrying `buffer_hex` is really converted and its result compared.
//!
//! A real conversion passes when ok/failed and the result checksum agree (error classes are not
//! compared: seamfs has one error kind, decision 7 of `conversions.md`). A difference is a
//! deviation only when the conversion took a path that departs from the reference on purpose
//! (`Departure`, docs/compat.md); any other difference fails.

use serde_json::Value as Json;

use super::Outcome;
use crate::buffer::Buffer;
use crate::celltype::CellType;
use crate::celltype::convert::{self, Departure, Output, matrix};

/// Check one entry of the `conversions` section.
pub fn check_case(case: &Json) -> Outcome {
    match check(case) {
        Ok(outcome) => outcome,
        Err(problem) => Outcome::Failed(problem),
    }
}

fn check(case: &Json) -> Result<Outcome, String> {
    let from = celltype_field(case, "source")?;
    let to = celltype_field(case, "target")?;
    match case.get("buffer_hex").and_then(Json::as_str) {
        Some(hex) => check_conversion(case, from, to, hex),
        None => check_matrix_entry(case, from, to),
    }
}

pub(super) fn celltype_field(case: &Json, key: &str) -> Result<CellType, String> {
    let name = case
        .get(key)
        .and_then(Json::as_str)
        .ok_or_else(|| format!("the case has no '{key}'"))?;
    name.parse::<CellType>().map_err(|e| e.to_string())
}

/// Compare a matrix entry (category, equivalence, chain, effective class, legs) with ours.
fn check_matrix_entry(case: &Json, from: CellType, to: CellType) -> Result<Outcome, String> {
    let entry =
        matrix::entry(from, to).ok_or("a cell type converted to itself is not a matrix entry")?;
    let mut ours = serde_json::json!({
        "category": entry.category(),
        "effective_class": matrix::effective_class(from, to).map(|c| c.name()),
        "legs": matrix::legs(from, to).iter()
            .map(|l| serde_json::json!([l.from.name(), l.to.name(), l.class.name()]))
            .collect::<Vec<_>>(),
    });
    match entry {
        matrix::Entry::Equivalent(a, b) => {
            ours["equivalent_to"] = serde_json::json!([a.name(), b.name()])
        }
        matrix::Entry::Chain(via) => ours["chain_via"] = serde_json::json!(via.name()),
        matrix::Entry::Own(_) => {}
    }
    let mut differences = Vec::new();
    for key in [
        "category",
        "equivalent_to",
        "chain_via",
        "effective_class",
        "legs",
    ] {
        let expected = case.get(key).unwrap_or(&Json::Null);
        let got = ours.get(key).unwrap_or(&Json::Null);
        if expected != got {
            differences.push(format!("{key}: expected {expected}, got {got}"));
        }
    }
    Ok(if differences.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(differences.join("; "))
    })
}

/// Convert the case's buffer and compare ok/failed and the result checksum.
fn check_conversion(
    case: &Json,
    from: CellType,
    to: CellType,
    hex: &str,
) -> Result<Outcome, String> {
    let bytes = hex::decode(hex).map_err(|e| format!("bad buffer_hex: {e}"))?;
    let expected_ok = case
        .get("ok")
        .and_then(Json::as_bool)
        .ok_or("the case has no 'ok'")?;
    let expected = case.get("result_checksum").and_then(Json::as_str);
    let (got, departures) = match convert::convert(&Buffer::new(bytes), from, to) {
        Ok(c) => (Ok(c.output), c.departures),
        Err(e) => (Err(e.to_string()), e.departures),
    };
    let difference = match (&got, expected_ok) {
        (Ok(out), true) if Some(out.checksum().hex().as_str()) == expected => {
            return Ok(Outcome::Passed);
        }
        (Err(_), false) => return Ok(Outcome::Passed),
        (Ok(out), true) => format!(
            "result {} instead of {}",
            describe(out),
            expected.unwrap_or("none")
        ),
        (Ok(out), false) => format!("converted to {} where the reference fails", describe(out)),
        (Err(e), true) => format!("failed where the reference succeeds: {e}"),
    };
    Ok(judge(difference, &departures))
}

/// A difference from the reference is a deviation when the run departed from the reference on
/// purpose (the reasons are listed), and a failure otherwise.
pub(super) fn judge(difference: String, departures: &[Departure]) -> Outcome {
    if departures.is_empty() {
        return Outcome::Failed(difference);
    }
    let reasons: Vec<&str> = departures.iter().map(|d| d.reason()).collect();
    Outcome::Deviation(format!("{}: {difference}", reasons.join("; ")))
}

pub(super) fn describe(out: &Output) -> String {
    match out {
        Output::Buffer(b) => format!("{} ({} bytes)", b.checksum(), b.len()),
        Output::Reference(cs) => format!("the referenced checksum {cs}"),
    }
}
