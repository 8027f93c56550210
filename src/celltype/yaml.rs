//! The `yaml` cell type: accept exactly what PyYAML 6 `safe_load` accepts (YAML 1.1, one
//! document), and build PyYAML's values for `yaml → plain`.
//!
//! libyaml (`unsafe-libyaml`) is used only as the scanner and event parser, as PyYAML's own
//! reader/scanner/parser behave like it; the layers above it are written here after PyYAML
//! (`deps-parity.md` §2): `reader` (printable characters, BOM, the tab rule, surrogate escapes),
//! `compose` (single document, anchors, the YAML 1.1 resolver) and `construct`
//! (SafeConstructor). Loading runs on a thread with a large reserved stack, because alias
//! chains make construction recurse as deep as the document is long.

mod compose;
mod construct;
mod libyaml;
mod reader;

use crate::value::Value;
use construct::{Failure, Mode};

/// Ok if PyYAML's `safe_load` accepts `text`; otherwise what is wrong, and where.
pub fn validate(text: &str) -> Result<(), String> {
    load_on_big_stack(text, Mode::Validate).map(|_| ())
}

/// The value `yaml.safe_load(text)` returns. Fails also for the few documents PyYAML loads but
/// a `Value` cannot hold (self-containing collections, keys with lone surrogates).
pub fn to_value(text: &str) -> Result<Value, String> {
    load_on_big_stack(text, Mode::Build)
}

fn load_on_big_stack(text: &str, mode: Mode) -> Result<Value, String> {
    super::python::on_big_stack("YAML loader", || load(text, mode))?.map_err(
        |failure| match failure {
            Failure::Invalid(e) => format!("invalid YAML (PyYAML safe_load would fail): {e}"),
            Failure::Unrepresentable(e) => {
                format!("valid YAML, but its value cannot be built here: {e}")
            }
        },
    )
}

fn load(text: &str, mode: Mode) -> Result<Value, Failure> {
    let prepared = reader::prepare(text).map_err(Failure::Invalid)?;
    let document = compose::compose(&prepared).map_err(Failure::Invalid)?;
    construct::construct(document, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Date, DateTime, Key};

    fn dict(pairs: Vec<(Key, Value)>) -> Value {
        Value::Dict(pairs.into_iter().collect())
    }

    #[test]
    fn yaml_1_1_values() {
        let value = to_value("a: yes\nb: 0777\nc: 1:30\nd: 2001-12-14\ne: 2001-12-14 21:59:43.10 -5\nf: !!binary aGk=").unwrap();
        let date = Date {
            year: 2001,
            month: 12,
            day: 14,
        };
        let expected = dict(vec![
            (Key::Str("a".into()), Value::Bool(true)),
            (Key::Str("b".into()), Value::int(511)),
            (Key::Str("c".into()), Value::int(90)),
            (Key::Str("d".into()), Value::Date(date)),
            (
                Key::Str("e".into()),
                Value::DateTime(DateTime {
                    date,
                    hour: 21,
                    minute: 59,
                    second: 43,
                    microsecond: 100_000,
                    utc_offset: Some(-5 * 3600),
                }),
            ),
            (Key::Str("f".into()), Value::Bytes("hi".into())),
        ]);
        assert_eq!(value, expected);
        assert_eq!(to_value("").unwrap(), Value::None);
    }

    #[test]
    fn merge_keys_and_python_key_equality() {
        let value =
            to_value("b: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\nk: {1: a, 1.0: b, true: c}")
                .unwrap();
        let Value::Dict(top) = value else { panic!() };
        let merged = dict(vec![
            (Key::Str("x".into()), Value::int(1)),
            (Key::Str("y".into()), Value::int(3)),
        ]);
        assert_eq!(top[&Key::Str("m".into())], merged);
        assert_eq!(
            top[&Key::Str("k".into())],
            dict(vec![(Key::Int(1.into()), Value::str("c"))])
        );
    }

    #[test]
    fn rejects_what_safe_load_rejects() {
        for bad in [
            "a: 1\n---\nb: 2",
            "!!python/object:os.system x",
            "a\0",
            "a:\t1",
            "[1, 2",
            "a: *x",
            "{[1]: 2}",
            "2001-02-29",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn recursion_and_alias_bombs_stay_bounded() {
        assert_eq!(validate("&a [*a]"), Ok(()));
        assert!(to_value("&a [*a]").unwrap_err().contains("recursive"));
        let chain: String = (1..20_000)
            .map(|i| format!("a{i}: &a{i} [*a{}]\n", i - 1))
            .collect::<String>()
            .replacen("[*a0]", "[0]", 1);
        assert_eq!(validate(&chain), Ok(()));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb += &format!("a{i}: &a{i} [{refs}]\n");
        }
        assert_eq!(validate(&bomb), Ok(()));
        assert!(to_value(&bomb).unwrap_err().contains("copied values"));
    }

    #[test]
    fn surrogate_escapes_as_pyyaml_builds_them() {
        assert_eq!(
            to_value("\"\\ud83d\\ude00\"").unwrap(),
            Value::Surrogates(vec![0xd83d, 0xde00])
        );
        assert_eq!(
            to_value("plain \\ud83d").unwrap(),
            Value::str("plain \\ud83d")
        );
        // A genuine U+FFFD beside an escape: valid, but which is which cannot be told apart.
        let mixed = "[\"\\ud83d\", \"\u{fffd}\"]";
        assert_eq!(validate(mixed), Ok(()));
        assert!(to_value(mixed).unwrap_err().starts_with("valid YAML"));
    }
}
