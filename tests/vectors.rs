//! The Python-generated vectors (tests/data/vectors.json) through the `compat` runner, one test
//! per section; round-trip property tests for every cell type §2 says round-trips; and bad input
//! (random, truncated, absurd lengths, deep nesting) that must give errors, never panics.

use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;
use seamfs::celltype::{self, CellType, PyErrorKind};
use seamfs::compat::{self, Outcome, same};
use seamfs::value::{ByteOrder, DType, Dict, Key, Layout, NdArray, Value};
use serde_json::Value as Json;

fn vectors() -> Json {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("tests/data/vectors.json"))
        .expect("valid JSON")
}

/// Run a section; fail listing every failing case. Deviations are reported, not failed.
fn assert_section(doc: &Json, section: &str) {
    let results = compat::run_section(doc, section);
    assert!(
        !results.is_empty(),
        "section {section} is missing from the vectors"
    );
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(why) => Some(format!("{}: {why}", r.id)),
            _ => None,
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} {section} cases failed:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
}

/// The edge classes of issue 15 (tests/data/edge-vectors.json.gz, `gen_random_vectors.py 15
/// 2000 edge`): non-contiguous arrays, `.npy` headers as numpy reads them, Unicode digits,
/// error classes of corrupt buffers, deep nesting.
#[test]
fn edge_vectors() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/edge-vectors.json.gz");
    let doc = compat::read_vectors(&path).expect("tests/data/edge-vectors.json.gz");
    for section in ["serialize", "deserialize", "invalid_serialize"] {
        assert_section(&doc, section);
    }
}

#[test]
fn serialize_section() {
    assert_section(&vectors(), "serialize");
}

#[test]
fn deserialize_section() {
    assert_section(&vectors(), "deserialize");
}

#[test]
fn invalid_serialize_section() {
    assert_section(&vectors(), "invalid_serialize");
}

// ---------------------------------------------------------------- round trips

fn key_str() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z]{0,3}"]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
        Just(-0.0),
        Just(1e16),
        Just(1e-5),
        Just(5e-324)
    ]
}

fn int64() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::int),
        any::<u64>().prop_map(Value::int)
    ]
}

/// Values orjson can write and read back unchanged (up to key order).
fn plain_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        int64(),
        float().prop_map(Value::Float),
        any::<String>().prop_map(Value::Str)
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::List),
            prop::collection::vec((key_str(), inner), 0..5).prop_map(|kv| Value::Dict(
                kv.into_iter().map(|(k, v)| (Key::Str(k), v)).collect()
            )),
        ]
    })
}

/// Dict keys sorted recursively, as both JSON writers with sorted keys give them back.
fn sorted(v: &Value) -> Value {
    match v {
        Value::List(items) => Value::List(items.iter().map(sorted).collect()),
        Value::Dict(d) => {
            let mut pairs: Vec<(Key, Value)> =
                d.iter().map(|(k, x)| (k.clone(), sorted(x))).collect();
            pairs.sort_by(|a, b| match (&a.0, &b.0) {
                (Key::Str(x), Key::Str(y)) => x.cmp(y),
                _ => std::cmp::Ordering::Equal,
            });
            Value::Dict(pairs.into_iter().collect())
        }
        other => other.clone(),
    }
}

/// A C-order array of a storable dtype with random data (no NaN payload issues: bytes compare).
fn array(min_dims: usize) -> impl Strategy<Value = NdArray> {
    let dtype = prop_oneof![
        Just(DType::simple('b', ByteOrder::NotApplicable, 1)),
        Just(DType::simple('i', ByteOrder::Little, 1)),
        Just(DType::simple('i', ByteOrder::Little, 4)),
        Just(DType::simple('u', ByteOrder::Little, 8)),
        Just(DType::simple('f', ByteOrder::Little, 4)),
        Just(DType::simple('f', ByteOrder::Little, 8)),
        Just(DType::simple('S', ByteOrder::NotApplicable, 3)),
    ];
    (dtype, prop::collection::vec(1usize..4, min_dims..4)).prop_flat_map(|(dtype, shape)| {
        let n = shape.iter().product::<usize>() * dtype.itemsize();
        prop::collection::vec(any::<u8>(), n).prop_map(move |mut data| {
            if let DType::Simple { kind: 'b', .. } = dtype {
                data.iter_mut().for_each(|b| *b &= 1);
            }
            NdArray {
                dtype: dtype.clone(),
                shape: shape.clone(),
                layout: Layout::C,
                data: Bytes::from(data),
            }
        })
    })
}

/// Values the mixed container holds: plain leaves (NaN, big ints, any text) and arrays, in dicts
/// and lists (the container keeps insertion order).
fn mixed_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        int64(),
        any::<i128>().prop_map(Value::int),
        any::<f64>().prop_map(Value::Float),
        any::<String>().prop_map(Value::Str),
        array(0).prop_map(Value::Array),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Value::List),
            prop::collection::vec((key_str(), inner), 1..4).prop_map(|kv| Value::Dict(
                kv.into_iter()
                    .map(|(k, v)| (Key::Str(k), v))
                    .collect::<Dict>()
            )),
        ]
    })
}

fn round_trip(v: &Value, celltype: CellType) -> Value {
    let buf = celltype::serialize(v, celltype)
        .unwrap_or_else(|e| panic!("serialize {v:?} as {celltype}: {e}"));
    celltype::deserialize(&buf, celltype)
        .unwrap_or_else(|e| panic!("parse {v:?} as {celltype}: {e}"))
}

fn has_array(v: &Value) -> bool {
    match v {
        Value::Array(_) => true,
        Value::List(l) => l.iter().any(has_array),
        Value::Dict(d) => d.values().any(has_array),
        _ => false,
    }
}

proptest! {
    #[test]
    fn plain_round_trips(v in plain_value()) {
        prop_assert!(same(&round_trip(&v, CellType::Plain), &sorted(&v)));
    }

    #[test]
    fn mixed_round_trips(v in mixed_value()) {
        let back = round_trip(&v, CellType::Mixed);
        // Pure-plain values are written with sorted keys; containers with arrays keep insertion order.
        let want = if has_array(&v) { v.clone() } else { sorted(&v) };
        match (&v, &back) {
            // A top-level 0-d non-S array comes back as a numpy scalar.
            (Value::Array(a), Value::Scalar(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(same(&back, &want), "{:?} came back as {:?}", v, back),
        }
    }

    #[test]
    fn binary_arrays_round_trip(a in array(1)) {
        prop_assert_eq!(round_trip(&Value::Array(a.clone()), CellType::Binary), Value::Array(a));
    }

    #[test]
    fn text_round_trips(s in any::<String>().prop_map(|s| s.trim_end_matches('\n').to_string())) {
        prop_assert_eq!(round_trip(&Value::Str(s.clone()), CellType::Text), Value::Str(s));
    }

    #[test]
    fn scalars_round_trip(i in int64(), x in float(), b in any::<bool>(), s in any::<String>()) {
        prop_assert_eq!(round_trip(&i, CellType::Int), i);
        prop_assert!(same(&round_trip(&Value::Float(x), CellType::Float), &Value::Float(x)));
        prop_assert_eq!(round_trip(&Value::Bool(b), CellType::Bool), Value::Bool(b));
        prop_assert_eq!(round_trip(&Value::Str(s.clone()), CellType::Str), Value::Str(s));
    }

    #[test]
    fn random_buffers_never_panic(buf in prop::collection::vec(any::<u8>(), 0..64), prefix in 0usize..3) {
        let magic: &[u8] = [&b""[..], b"\x93NUMPY\x01\x00", b"\x94SEAMLESS-MIXED\x0bmixed-plain"][prefix];
        let buf = [magic, &buf].concat();
        for celltype in CellType::ALL {
            let _ = celltype::deserialize(&buf, celltype);
        }
    }
}

// ---------------------------------------------------------------- bad input

fn parse_error(buf: &[u8], celltype: CellType) -> celltype::CellError {
    celltype::deserialize(buf, celltype).expect_err("bad input must be rejected")
}

#[test]
fn truncated_npy_and_mixed_are_errors() {
    let arr = NdArray {
        dtype: DType::simple('f', ByteOrder::Little, 8),
        shape: vec![4],
        layout: Layout::C,
        data: Bytes::from(vec![0u8; 32]),
    };
    let mut dict = Dict::new();
    dict.insert(Key::Str("a".into()), Value::Array(arr.clone()));
    for (value, celltype) in [
        (Value::Array(arr), CellType::Binary),
        (Value::Dict(dict), CellType::Mixed),
    ] {
        let full = celltype::serialize(&value, celltype).unwrap();
        for cut in [full.len() - 1, full.len() / 2, 20, 12] {
            let e = parse_error(&full[..cut], celltype);
            assert!(!e.to_string().is_empty(), "truncated at {cut}");
        }
    }
}

#[test]
fn absurd_length_fields_do_not_allocate() {
    let mut npy = b"\x93NUMPY\x02\x00\xff\xff\xff\x7f{'descr'".to_vec();
    npy.extend_from_slice(&[b' '; 8]);
    let e = parse_error(&npy, CellType::Binary);
    assert!(e.to_string().contains("EOF: reading array header"), "{e}");

    // A shape whose byte count overflows.
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 8), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    assert_eq!(
        parse_error(&npy, CellType::Binary).kind,
        PyErrorKind::ValueError
    );

    let mut mixed = b"\x94SEAMLESS-MIXED\x0bmixed-plain".to_vec();
    mixed.extend_from_slice(&u32::MAX.to_le_bytes());
    // Python slices what is there and fails to decode an empty form.
    assert_eq!(
        parse_error(&mixed, CellType::Mixed).kind,
        PyErrorKind::JSONDecodeError
    );
}

#[test]
fn deep_nesting_is_an_error() {
    let deep = "[".repeat(1_000_000);
    for celltype in [CellType::Plain, CellType::Str, CellType::Int] {
        assert_eq!(
            parse_error(deep.as_bytes(), celltype).kind,
            PyErrorKind::ValueError
        );
    }
    // Python json.loads fails, so the mixed buffer is a 0-d bytes array, as in seamless-core.
    assert!(matches!(
        celltype::deserialize(deep.as_bytes(), CellType::Mixed),
        Ok(Value::Array(_))
    ));
    let mut v = Value::List(vec![]);
    for _ in 0..100_000 {
        v = Value::List(vec![v]);
    }
    // seamless-core's unchecksum() hits Python's recursion limit before orjson's.
    assert_eq!(
        celltype::serialize(&v, CellType::Plain).unwrap_err().kind,
        PyErrorKind::RecursionError
    );
    assert_eq!(
        celltype::serialize(&v, CellType::Mixed).unwrap_err().kind,
        PyErrorKind::RecursionError
    );
    assert_eq!(
        celltype::serialize(&v, CellType::Text).unwrap_err().kind,
        PyErrorKind::RecursionError
    );
    // Dropping a value this deep must not overflow the stack either.
    dismantle(v);
}

/// Drop a deeply nested list iteratively (the default drop recurses).
fn dismantle(mut v: Value) {
    while let Value::List(mut items) = v {
        v = items.pop().unwrap_or(Value::None);
    }
}

#[test]
fn invalid_utf8_is_a_unicode_decode_error() {
    for celltype in [
        CellType::Plain,
        CellType::Text,
        CellType::Python,
        CellType::Yaml,
        CellType::Str,
        CellType::Mixed,
    ] {
        let e = parse_error(b"ok\xc3", celltype);
        assert_eq!(e.kind, PyErrorKind::UnicodeDecodeError, "{celltype}");
        assert_eq!(
            e.message,
            "'utf-8' codec can't decode byte 0xc3 in position 2: unexpected end of data"
        );
    }
}

#[test]
fn fortran_arrays_keep_their_layout_through_npy() {
    let data: Vec<u8> = (0..6i32).flat_map(i32::to_le_bytes).collect();
    let a = NdArray {
        dtype: DType::simple('i', ByteOrder::Little, 4),
        shape: vec![3, 2],
        layout: Layout::F,
        data: data.into(),
    };
    assert_eq!(
        celltype::deserialize(
            &celltype::serialize(&Value::Array(a.clone()), CellType::Binary).unwrap(),
            CellType::Binary
        )
        .unwrap(),
        Value::Array(a)
    );
}

// ---------------------------------------------------------------- command line

fn seamfs(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_seamfs"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run seamfs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn encode_and_decode_round_trip_on_the_command_line() {
    // ser-180: {"arr": np.arange(3, dtype="<i4"), "x": 1} as mixed.
    let input = br#"{"arr": {"$ndarray": {"dtype": "<i4", "shape": [3], "data_hex": "000000000100000002000000"}}, "x": 1}"#;
    let out = seamfs(&["encode", "--celltype", "mixed"], input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        seamfs::Checksum::of(&out.stdout).hex(),
        "f6e75a4ddf828132e66e21c9923c7a9946045dcc2e629397298b64a3f4944db2"
    );
    let decoded = seamfs(&["decode", "--celltype", "mixed"], &out.stdout);
    assert!(decoded.status.success());
    let again = seamfs(&["encode", "--celltype", "mixed"], &decoded.stdout);
    assert_eq!(again.stdout, out.stdout);

    let bad = seamfs(&["decode", "--celltype", "plain"], b"[1,]");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a valid plain cell"));
}

#[test]
fn compat_check_reports_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.json");
    let doc = serde_json::json!({
        "deserialize": [
            {"id": "good", "celltype": "int", "buffer_hex": "310a", "expected": {"ok": true, "value": 1}},
            {"id": "bad", "celltype": "int", "buffer_hex": "310a", "expected": {"ok": true, "value": 2}},
            {"id": "ipy", "celltype": "ipython", "buffer_hex": "78203d2031",
             "expected": {"ok": false, "error_type": "ValueError", "error_message": "x = 1"}}
        ]
    });
    std::fs::write(&path, doc.to_string()).unwrap();
    let out = seamfs(&["compat-check", path.to_str().unwrap()], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL deserialize bad"), "{text}");
    assert!(text.contains("deviation deserialize ipy"), "{text}");
    assert_eq!(text.lines().last(), Some("1 passed, 1 failed"));
}

// ---------------------------------------------------------------- random values vs seamless-core

/// Random values and buffers run through the real seamless-core in the reference venv
/// (tests/gen_random_vectors.py), then through the compat runner: any difference fails.
#[test]
fn random_values_match_seamless_core() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-python to build the reference environment",
        python.display()
    );
    for seed in ["11", "12"] {
        let out = std::process::Command::new(&python)
            .arg(root.join("tests/gen_random_vectors.py"))
            .args([seed, "150"])
            .output()
            .expect("run the vectors generator");
        assert!(
            out.status.success(),
            "generator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Json = serde_json::from_slice(&out.stdout).expect("generator output is JSON");
        for section in ["serialize", "deserialize", "invalid_serialize"] {
            assert_section(&doc, section);
        }
    }
}
