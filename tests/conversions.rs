//! The conversion engine against the Python vectors: the 156 matrix entries of `vectors.json`
//! the 2 412 real conversions and the 1 080 expressions of `conversion-vectors.json` (run by the
//! reference converter), through the same `compat` functions `seamfs compat-check` uses.

use std::collections::BTreeMap;

use seamfs::Buffer;
use seamfs::celltype::CellType;
use seamfs::celltype::convert::{Departure, convert};
use seamfs::celltype::expression::{self, PathItem};
use seamfs::compat::Outcome;
use seamfs::compat::conversions::check_case;
use serde_json::Value;

fn cases(file: &str) -> Vec<Value> {
    section(file, "conversions")
}

fn section(file: &str, name: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc[name]
        .as_array()
        .unwrap_or_else(|| panic!("{file} has no {name} section"))
        .clone()
}

/// Run every case; panic listing the failures; return the deviations by pair.
fn run_all(cases: &[Value]) -> (usize, BTreeMap<String, usize>) {
    let mut passed = 0;
    let mut deviations = BTreeMap::new();
    let mut failures = Vec::new();
    for case in cases {
        let id = case.get("id").and_then(Value::as_str).unwrap_or("matrix");
        let pair = format!(
            "{}→{}",
            case["source"].as_str().unwrap(),
            case["target"].as_str().unwrap()
        );
        match check_case(case) {
            Outcome::Passed => passed += 1,
            Outcome::Deviation(_) => *deviations.entry(pair).or_insert(0) += 1,
            Outcome::Failed(why) => {
                failures.push(format!("{id} {pair} ({}): {why}", case["input_label"]))
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    (passed, deviations)
}

#[test]
fn all_156_matrix_entries() {
    let cases = cases("vectors.json");
    assert_eq!(cases.len(), 156);
    let (passed, deviations) = run_all(&cases);
    assert_eq!((passed, deviations.len()), (156, 0));
}

#[test]
fn all_2412_reference_conversions() {
    let cases = cases("conversion-vectors.json");
    assert_eq!(cases.len(), 2412);
    let (passed, deviations) = run_all(&cases);
    let n: usize = deviations.values().sum();
    eprintln!("{passed} passed, {n} deviations: {deviations:?}");
    // Deviations come only from the decisions of conversions.md: binary ↔ plain (and the chains
    // through binary → plain), YAML reading, and checksum → X.
    for pair in deviations.keys() {
        let (from, to) = pair.split_once('→').unwrap();
        let explained = from == "checksum"
            || from == "yaml"
            || to == "yaml"
            || (from == "binary" && ["plain", "text", "python", "ipython", "yaml"].contains(&to))
            || (to == "binary" && ["plain", "str", "int", "float", "bool"].contains(&from));
        assert!(explained, "unexpected deviations for {pair}");
    }
    assert_eq!(passed + n, 2412);
}

#[test]
fn failed_conversions_name_both_cell_types() {
    for case in cases("conversion-vectors.json") {
        let from: CellType = case["source"].as_str().unwrap().parse().unwrap();
        let to: CellType = case["target"].as_str().unwrap().parse().unwrap();
        let bytes = hex::decode(case["buffer_hex"].as_str().unwrap()).unwrap();
        if let Err(e) = convert(&Buffer::new(bytes), from, to) {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("cannot convert from {from} to {to}")),
                "{msg}"
            );
            assert!(!e.reason.is_empty(), "{msg}");
        }
    }
}

/// The conversion fields (`text2str`, `binary2json`, …) the reference recorded are the ones we
/// learn, wherever we took the reference's path and got its result.
#[test]
fn conversion_fields_match_the_reference() {
    let mut compared = 0;
    for case in cases("conversion-vectors.json") {
        if check_case(&case) != Outcome::Passed || case["ok"] != Value::Bool(true) {
            continue;
        }
        let from: CellType = case["source"].as_str().unwrap().parse().unwrap();
        let to: CellType = case["target"].as_str().unwrap().parse().unwrap();
        let bytes = hex::decode(case["buffer_hex"].as_str().unwrap()).unwrap();
        let conversion = convert(&Buffer::new(bytes), from, to).unwrap();
        if !conversion.departures.is_empty() {
            continue;
        }
        let facts = conversion.facts;
        for (hex, info) in case["buffer_info"].as_object().unwrap() {
            let checksum = seamfs::Checksum::parse_strict(hex).unwrap();
            let ours = facts.get(&checksum).map(|i| i.to_map()).unwrap_or_default();
            for (key, value) in info
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.contains('2'))
            {
                assert_eq!(ours.get(key), Some(value), "{} {key} of {hex}", case["id"]);
                compared += 1;
            }
        }
    }
    assert!(compared > 100, "only {compared} fields compared");
}

/// PyYAML's verdict on a buffer, from the reference venv: whether `yaml.safe_load` accepts its
/// text, and the `plain` buffer of the value (None when it has none).
#[derive(serde::Deserialize)]
struct PyYaml {
    valid: bool,
    plain: Option<String>,
}

const PYYAML_ORACLE: &str = r#"
import json, sys, yaml
from seamless.checksum.serialize import serialize_sync
out = []
for h in json.load(sys.stdin):
    try:
        value = yaml.safe_load(bytes.fromhex(h).decode().rstrip("\n"))
    except Exception:
        out.append({"valid": False, "plain": None})
        continue
    try:
        plain = serialize_sync(value, "plain").hex()
    except Exception:
        plain = None
    out.append({"valid": True, "plain": plain})
print(json.dumps(out))
"#;

fn pyyaml(buffers: &[String]) -> Vec<PyYaml> {
    use std::io::Write;
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-python",
        python.display()
    );
    let mut child = std::process::Command::new(&python)
        .args(["-c", PYYAML_ORACLE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the reference Python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(buffers).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the PyYAML oracle failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The YAML deviations (decision 4) are exactly PyYAML's answers: wherever a conversion differs
/// from the reference only by reading YAML, our YAML step agrees with PyYAML 6 `safe_load`.
#[test]
fn yaml_deviations_are_pyyaml_results() {
    use seamfs::celltype::convert::{Departure, Output};
    let mut cases_to_check = Vec::new();
    for case in cases("conversion-vectors.json") {
        if !matches!(check_case(&case), Outcome::Deviation(_)) {
            continue;
        }
        let from: CellType = case["source"].as_str().unwrap().parse().unwrap();
        let to: CellType = case["target"].as_str().unwrap().parse().unwrap();
        let bytes = hex::decode(case["buffer_hex"].as_str().unwrap()).unwrap();
        let departures = match convert(&Buffer::new(bytes), from, to) {
            Ok(c) => c.departures,
            Err(e) => e.departures,
        };
        if departures == [Departure::Yaml11] {
            // The buffer the YAML step reads: the source itself, or its text (mixed → text unwraps).
            let source = Buffer::new(hex::decode(case["buffer_hex"].as_str().unwrap()).unwrap());
            let input = match from {
                CellType::Yaml => source,
                _ => match convert(&source, from, CellType::Text).unwrap().output {
                    Output::Buffer(b) => b,
                    Output::Reference(_) => unreachable!(),
                },
            };
            cases_to_check.push((case["id"].clone(), from, hex::encode(input.as_slice())));
        }
    }
    let buffers: Vec<String> = cases_to_check
        .iter()
        .map(|(_, _, hex)| hex.clone())
        .collect();
    for ((id, from, hex), oracle) in cases_to_check.iter().zip(pyyaml(&buffers)) {
        let buffer = Buffer::new(hex::decode(hex).unwrap());
        if *from == CellType::Yaml {
            let ours = convert(&buffer, CellType::Yaml, CellType::Plain)
                .ok()
                .map(|c| match c.output {
                    Output::Buffer(b) => hex::encode(b.as_slice()),
                    Output::Reference(_) => unreachable!(),
                });
            assert_eq!(ours, oracle.plain, "{id}: yaml → plain differs from PyYAML");
        } else {
            let ours = convert(&buffer, CellType::Text, CellType::Yaml).is_ok();
            assert_eq!(
                ours, oracle.valid,
                "{id}: yaml validation differs from PyYAML"
            );
        }
    }
}

/// `seamfs convert` end to end: stdin in, buffer or checksum out, errors on stderr with exit 1.
#[test]
fn convert_command() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let run = |args: &[&str], input: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seamfs"))
            .arg("convert")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&["--from", "text", "--to", "str"], b"hello\n");
    assert!(out.status.success());
    assert_eq!(out.stdout, b"\"hello\"\n");
    let out = run(&["--from", "text", "--to", "str", "--checksum"], b"hello\n");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", seamfs::Checksum::of(b"\"hello\"\n"))
    );
    let out = run(&["--from", "python", "--to", "int"], b"x = 1\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("cannot convert from python to int: this conversion is forbidden"),
        "{err}"
    );
    let target = seamfs::Checksum::of(b"hello\n").hex();
    let out = run(&["--from", "checksum", "--to", "text"], target.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("use --checksum")
    );
    let out = run(
        &["--from", "checksum", "--to", "text", "--checksum"],
        target.as_bytes(),
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{target}\n")
    );
}

/// The path of an expression case, parsed.
fn case_path(case: &Value) -> Vec<PathItem> {
    expression::parse_path(&case["path"]).unwrap()
}

#[test]
fn all_1080_reference_expressions() {
    let cases = section("conversion-vectors.json", "expressions");
    assert_eq!(cases.len(), 1080);
    let mut passed = 0;
    let mut deviations = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        match seamfs::compat::expressions::check_case(case) {
            Outcome::Passed => passed += 1,
            Outcome::Deviation(why) => {
                let reason = why.split(':').next().unwrap().to_string();
                *deviations.entry(reason).or_insert(0) += 1;
            }
            Outcome::Failed(why) => failures.push(format!("{id}: {why}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{passed} passed, deviations: {deviations:?}");
    // Only two documented reasons: binary → plain with an empty path (decision 1), and numpy
    // arrays/records written as text or str (the codec writes no numpy str()).
    let expected: BTreeMap<String, usize> = [
        (Departure::BinaryToPlainAsValue.reason().to_string(), 2),
        (Departure::NoNumpyText.reason().to_string(), 14),
    ]
    .into();
    assert_eq!(deviations, expected);
    assert_eq!(passed, 1080 - 16);
}

/// A failed expression names both cell types and the path; "no result" is not an error.
#[test]
fn expression_errors_name_cell_types_and_path() {
    let (mut errors, mut empty) = (0, 0);
    for case in section("conversion-vectors.json", "expressions") {
        let from: CellType = case["source"].as_str().unwrap().parse().unwrap();
        let to: CellType = case["target"].as_str().unwrap().parse().unwrap();
        let path = case_path(&case);
        let buffer = Buffer::new(hex::decode(case["buffer_hex"].as_str().unwrap()).unwrap());
        match expression::evaluate(&buffer, &path, from, to) {
            Err(e) => {
                let text = expression::path_text(&path);
                let expected = format!("with path {text} from {from} to {to}: ");
                assert!(e.to_string().contains(&expected), "{e}");
                errors += 1;
            }
            Ok(evaluation) if evaluation.result.is_none() => empty += 1,
            Ok(_) => {}
        }
    }
    assert_eq!(empty, 740);
    assert!(errors > 100, "only {errors} errors");
    let buffer = Buffer::new(b"x = 1\n".to_vec());
    let e = expression::evaluate(
        &buffer,
        &[PathItem::Index(0)],
        CellType::Python,
        CellType::Int,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("from python to int: this conversion is forbidden"),
        "{e}"
    );
    let e = expression::evaluate(
        &buffer,
        &[PathItem::Index(0)],
        CellType::Text,
        CellType::Plain,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("a path can index only into mixed, plain or binary, not text"),
        "{e}"
    );
}

/// The `expression.path` column holds `json.dumps(path)`: what `path_text` writes is what the
/// database stores for `path_json`, and a stored row is found again under it.
#[test]
fn expression_paths_are_database_keys() {
    use seamfs::db::{Database, ExpressionKey};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seamless.db");
    let db = Database::open(&file, true).unwrap();
    let result = seamfs::Checksum::of(b"1.5\n");
    let mut seen = std::collections::HashSet::new();
    let mut paths: Vec<Vec<PathItem>> = section("conversion-vectors.json", "expressions")
        .iter()
        .map(case_path)
        .collect();
    paths.retain(|p| seen.insert(p.clone()));
    assert_eq!(paths.len(), 18);
    paths.push(vec![PathItem::Key("é \"q\"".into()), PathItem::Index(-2)]);
    for path in &paths {
        assert_eq!(
            seamfs::db::pyjson::dumps(&expression::path_json(path)),
            expression::path_text(path)
        );
        let key = ExpressionKey {
            input: seamfs::Checksum::of(b"{}\n"),
            path: expression::path_json(path),
            celltype: "plain".into(),
            target_celltype: "float".into(),
        };
        db.transaction(|c| c.set_expression(&key, &result)).unwrap();
        assert_eq!(db.get_expression(&key).unwrap(), Some(result));
    }
    let sql = rusqlite::Connection::open(&file).unwrap();
    let stored: Vec<String> = sql
        .prepare("SELECT path FROM expression ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        stored.contains(&r#"["a", "b", 2, "c"]"#.to_string()),
        "{stored:?}"
    );
    assert!(
        stored.contains(&r#"["\u00e9 \"q\"", -2]"#.to_string()),
        "{stored:?}"
    );
    assert!(stored.contains(&"[]".to_string()), "{stored:?}");
}
