//! Values from Python `repr` text, for vector cases whose `value` the generator could not
//! encode (`null`) and which give only `value_repr`: Python literals (None/True/False, ints,
//! floats, str/bytes, lists, tuples, dicts, sets, `set()`) and numpy's array repr
//! `array([...])` / `array([...], dtype=...)`, including complex and datetime64 arrays.
//!
//! `ruff_python_parser` parses the text as one Python expression; this module only walks the
//! tree, accepting what `ast.literal_eval` accepts plus the `array(...)` call.

use std::sync::LazyLock;

use bytes::Bytes;
use num_bigint::BigInt;
use num_traits::ToPrimitive;
use regex::Regex;
use ruff_python_ast::{Expr, ExprCall, Number, Operator, UnaryOp};
use ruff_python_parser::parse_expression;
use ruff_text_size::Ranged;

use crate::celltype::literal_eval::int_literal;
use crate::celltype::{binary, scalar, with_stack};
use crate::value::{ByteOrder, DType, Dict, Layout, NdArray, Value};

static SURROGATE_ESCAPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\(u[dD][89a-fA-F]|U0000[dD][89a-fA-F])").expect("valid regex"));

/// The value a Python `repr` (or literal) denotes.
pub fn parse(text: &str) -> Result<Value, String> {
    let parsed = parse_expression(text.trim())
        .map_err(|e| format!("{text:?} is not a Python expression: {e}"))?;
    Parser { text: text.trim() }.value(&parsed.syntax().body)
}

/// A number as Python evaluates a literal: complex only arises from `j` literals.
#[derive(Debug, Clone, PartialEq)]
enum Num {
    Int(BigInt),
    Float(f64),
    Complex(f64, f64),
}

impl Num {
    fn parts(&self) -> (f64, f64) {
        match self {
            Num::Int(i) => (i.to_f64().unwrap_or(f64::INFINITY), 0.0),
            Num::Float(x) => (*x, 0.0),
            Num::Complex(re, im) => (*re, *im),
        }
    }

    fn neg(self) -> Num {
        match self {
            Num::Int(i) => Num::Int(-i),
            Num::Float(x) => Num::Float(-x),
            Num::Complex(re, im) => Num::Complex(-re, -im),
        }
    }

    /// `a + b` for a real and a complex part (`1.+2.j`), as `ast.literal_eval` allows.
    fn add(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Num::Int(a + b),
            (a, b @ Num::Complex(..)) | (a @ Num::Complex(..), b) => {
                let ((ar, ai), (br, bi)) = (a.parts(), b.parts());
                Num::Complex(ar + br, ai + bi)
            }
            (a, b) => Num::Float(a.parts().0 + b.parts().0),
        }
    }
}

/// One leaf of an `array([...])`: a value, or a complex number (no `Value` holds one).
enum Leaf {
    Value(Value),
    Complex(f64, f64),
}

struct Parser<'a> {
    text: &'a str,
}

impl Parser<'_> {
    fn source(&self, node: &impl Ranged) -> &str {
        &self.text[node.range()]
    }

    fn unsupported(&self, node: &impl Ranged, what: &str) -> String {
        format!("{what} in {:?} is not supported", self.source(node))
    }

    fn value(&self, e: &Expr) -> Result<Value, String> {
        with_stack(|| self.value_inner(e))
    }

    fn value_inner(&self, e: &Expr) -> Result<Value, String> {
        Ok(match e {
            Expr::NoneLiteral(_) => Value::None,
            Expr::BooleanLiteral(b) => Value::Bool(b.value),
            Expr::StringLiteral(s) => Value::Str(self.str_literal(e, s.value.to_str())?),
            Expr::BytesLiteral(b) => {
                Value::Bytes(Bytes::from(b.value.bytes().collect::<Vec<u8>>()))
            }
            Expr::List(l) => Value::List(self.values(&l.elts)?),
            Expr::Tuple(t) => Value::Tuple(self.values(&t.elts)?),
            Expr::Set(s) => Value::Set(self.values(&s.elts)?),
            Expr::Dict(d) => {
                let mut dict = Dict::new();
                for item in &d.items {
                    let key = item
                        .key
                        .as_ref()
                        .ok_or_else(|| self.unsupported(e, "`**` unpacking"))?;
                    dict.insert(
                        super::decode_key(&self.value(key)?),
                        self.value(&item.value)?,
                    );
                }
                Value::Dict(dict)
            }
            Expr::Call(call)
                if self.callee(call) == "set"
                    && call.arguments.args.is_empty()
                    && call.arguments.keywords.is_empty() =>
            {
                Value::Set(Vec::new())
            }
            Expr::Call(call) if self.callee(call) == "array" => Value::Array(self.array(call)?),
            _ => match self.number(e)? {
                Num::Int(i) => Value::Int(i),
                Num::Float(x) => Value::Float(x),
                Num::Complex(..) => {
                    return Err(self.unsupported(e, "a complex number outside a numpy array"));
                }
            },
        })
    }

    fn values(&self, items: &[Expr]) -> Result<Vec<Value>, String> {
        items.iter().map(|x| self.value(x)).collect()
    }

    /// ruff replaces lone surrogate escapes (`'\ud800'`) by U+FFFD; refuse rather than guess.
    fn str_literal(&self, e: &Expr, s: &str) -> Result<String, String> {
        if s.contains('\u{FFFD}') && SURROGATE_ESCAPE.is_match(self.source(e)) {
            return Err(self.unsupported(e, "a lone surrogate"));
        }
        Ok(s.to_string())
    }

    fn callee<'c>(&self, call: &'c ExprCall) -> &'c str {
        match call.func.as_ref() {
            Expr::Name(n) => n.id.as_str(),
            _ => "",
        }
    }

    fn number(&self, e: &Expr) -> Result<Num, String> {
        match e {
            Expr::NumberLiteral(n) => Ok(match &n.value {
                Number::Int(i) => Num::Int(
                    int_literal(&i.to_string()).ok_or_else(|| self.unsupported(e, "the int"))?,
                ),
                Number::Float(x) => Num::Float(*x),
                Number::Complex { real, imag } => Num::Complex(*real, *imag),
            }),
            // `repr(float('nan'))`, `repr(float('inf'))`.
            Expr::Name(n) if n.id.as_str() == "nan" => Ok(Num::Float(f64::NAN)),
            Expr::Name(n) if n.id.as_str() == "inf" => Ok(Num::Float(f64::INFINITY)),
            Expr::UnaryOp(u) if u.op == UnaryOp::USub => Ok(self.number(&u.operand)?.neg()),
            Expr::UnaryOp(u) if u.op == UnaryOp::UAdd => self.number(&u.operand),
            Expr::BinOp(b) if matches!(b.op, Operator::Add | Operator::Sub) => {
                let right = self.number(&b.right)?;
                let right = if b.op == Operator::Sub {
                    right.neg()
                } else {
                    right
                };
                Ok(self.number(&b.left)?.add(right))
            }
            _ => Err(self.unsupported(e, "this expression")),
        }
    }

    /// numpy's `array(data, dtype=...)` repr.
    fn array(&self, call: &ExprCall) -> Result<NdArray, String> {
        let [data] = &call.arguments.args[..] else {
            return Err(self.unsupported(call, "an array call without exactly one data argument"));
        };
        let mut dtype = None;
        for kw in &call.arguments.keywords {
            match kw.arg.as_ref().map(|a| a.as_str()) {
                Some("dtype") => dtype = Some(self.dtype(&kw.value)?),
                _ => return Err(self.unsupported(&kw.value, "an array keyword other than dtype")),
            }
        }
        let mut shape = Vec::new();
        let mut leaves = Vec::new();
        self.flatten(data, 0, &mut shape, &mut leaves)?;
        let has_complex = leaves.iter().any(|l| matches!(l, Leaf::Complex(..)));
        let dtype = match dtype {
            Some(d) => d,
            None if has_complex => DType::simple('c', ByteOrder::Little, 16),
            None => {
                // numpy's dtype inference for Python leaves, as `binary` does it.
                let flat = leaves.into_iter().filter_map(|l| match l {
                    Leaf::Value(v) => Some(v),
                    Leaf::Complex(..) => None,
                });
                let inferred = binary::to_numpy(&Value::List(flat.collect()))
                    .map_err(|e| format!("{:?}: {e}", self.source(data)))?;
                return Ok(NdArray { shape, ..inferred });
            }
        };
        let mut bytes = Vec::new();
        for leaf in &leaves {
            bytes.extend(
                element(&dtype, leaf).map_err(|why| format!("{:?}: {why}", self.source(data)))?,
            );
        }
        Ok(NdArray {
            dtype,
            shape,
            layout: Layout::C,
            data: bytes.into(),
        })
    }

    /// The leaves of nested lists in C order; `shape` gets one entry per nesting level.
    fn flatten(
        &self,
        e: &Expr,
        depth: usize,
        shape: &mut Vec<usize>,
        leaves: &mut Vec<Leaf>,
    ) -> Result<(), String> {
        let items = match e {
            Expr::List(l) => &l.elts,
            Expr::Tuple(t) => &t.elts,
            _ => {
                if depth != shape.len() {
                    return Err(self.unsupported(e, "a ragged array"));
                }
                leaves.push(match self.number(e) {
                    Ok(Num::Complex(re, im)) => Leaf::Complex(re, im),
                    _ => Leaf::Value(self.value(e)?),
                });
                return Ok(());
            }
        };
        if depth == shape.len() && leaves.is_empty() {
            shape.push(items.len());
        } else if shape.get(depth) != Some(&items.len()) {
            return Err(self.unsupported(e, "a ragged array"));
        }
        items
            .iter()
            .try_for_each(|x| self.flatten(x, depth + 1, shape, leaves))
    }

    /// `dtype='<i4'`, `dtype='datetime64[s]'`, or a numpy type name (`dtype=int32`).
    fn dtype(&self, e: &Expr) -> Result<DType, String> {
        let name = match e {
            Expr::StringLiteral(s) => s.value.to_str(),
            Expr::Name(n) => n.id.as_str(),
            _ => return Err(self.unsupported(e, "this dtype")),
        };
        dtype_named(name).ok_or_else(|| self.unsupported(e, "the dtype"))
    }
}

/// A dtype by typestr (`<i4`, `<M8[s]`) or numpy name (`int32`, `datetime64[s]`, `timedelta64`).
fn dtype_named(name: &str) -> Option<DType> {
    if let Some(d) = DType::from_typestr(name) {
        return Some(d);
    }
    // `datetime64[unit]` is `M8[unit]` by another name.
    for (prefix, kind) in [("datetime64", 'M'), ("timedelta64", 'm')] {
        if let Some(unit) = name.strip_prefix(prefix) {
            return DType::from_typestr(&format!("<{kind}8{unit}"));
        }
    }
    let (kind, bits) = match name {
        "bool" => ('b', 8),
        "complex" => ('c', 128),
        "float" => ('f', 64),
        "int" => ('i', 64),
        _ => ["int", "uint", "float", "complex"]
            .iter()
            .find_map(|prefix| {
                let bits: usize = name.strip_prefix(prefix)?.parse().ok()?;
                Some((
                    prefix
                        .chars()
                        .next()
                        .expect("non-empty")
                        .to_ascii_lowercase(),
                    bits,
                ))
            })?,
    };
    let kind = if name.starts_with("uint") { 'u' } else { kind };
    DType::from_typestr(&format!("<{kind}{}", bits / 8))
}

/// One leaf's bytes in a little-endian (or byte-order free) builtin dtype.
fn element(dtype: &DType, leaf: &Leaf) -> Result<Vec<u8>, String> {
    if let DType::DateTime {
        kind,
        order: ByteOrder::Little,
        unit,
    } = dtype
    {
        return Ok(datetime_element(*kind, unit, leaf)?.to_le_bytes().to_vec());
    }
    let DType::Simple { kind, order, size } = *dtype else {
        return Err("structured dtypes are not supported".into());
    };
    if order == ByteOrder::Big {
        return Err("big-endian dtypes are not supported".into());
    }
    // The leaf as a number, if it is one (bool counts, as in numpy).
    let number = match leaf {
        Leaf::Complex(re, im) => Some((*re, *im)),
        Leaf::Value(Value::Int(i)) => Some((Num::Int(i.clone()).parts().0, 0.0)),
        Leaf::Value(Value::Float(x)) => Some((*x, 0.0)),
        Leaf::Value(Value::Bool(b)) => Some((*b as u8 as f64, 0.0)),
        Leaf::Value(_) => None,
    };
    let float = |x: f64, size| match size {
        2 => crate::value::f64_to_f16(x).to_le_bytes().to_vec(),
        4 => (x as f32).to_le_bytes().to_vec(),
        _ => x.to_le_bytes().to_vec(),
    };
    Ok(match (kind, leaf, number) {
        ('b', Leaf::Value(v), _) => vec![scalar::truth(v).map_err(|e| e.to_string())? as u8],
        ('i' | 'u', Leaf::Value(Value::Int(i)), _) => {
            let fill = if i.sign() == num_bigint::Sign::Minus {
                0xff
            } else {
                0
            };
            let mut raw = i.to_signed_bytes_le();
            raw.resize(size, fill);
            raw.truncate(size);
            raw
        }
        ('i' | 'u', Leaf::Value(Value::Bool(b)), _) => {
            let mut raw = vec![*b as u8];
            raw.resize(size, 0);
            raw
        }
        ('f', _, Some((re, _))) => float(re, size),
        ('c', _, Some((re, im))) => [float(re, size / 2), float(im, size / 2)].concat(),
        ('U', Leaf::Value(Value::Str(s)), _) => {
            let mut raw: Vec<u8> = s.chars().flat_map(|c| (c as u32).to_le_bytes()).collect();
            raw.resize(size, 0);
            raw
        }
        ('S', Leaf::Value(Value::Bytes(b)), _) => {
            let mut raw = b.to_vec();
            raw.resize(size, 0);
            raw
        }
        _ => {
            return Err(format!(
                "this element cannot be stored as {}",
                dtype.typestr()
            ));
        }
    })
}

/// numpy's NaT (not-a-time): the smallest int64.
const NAT: i64 = i64::MIN;

/// A datetime64/timedelta64 element as numpy's repr writes it: `'NaT'`, an int count of units
/// (timedelta64), or an ISO date/time string (datetime64) counted in `unit` since 1970-01-01.
fn datetime_element(kind: char, unit: &str, leaf: &Leaf) -> Result<i64, String> {
    match leaf {
        Leaf::Value(Value::Str(s)) if s == "NaT" => Ok(NAT),
        Leaf::Value(Value::Int(i)) if kind == 'm' => i
            .to_i64()
            .ok_or_else(|| format!("{i} does not fit a timedelta64")),
        Leaf::Value(Value::Str(s)) if kind == 'M' => datetime_count(s, unit)
            .ok_or_else(|| format!("{s:?} is not an ISO datetime64[{unit}] value")),
        _ => Err(format!(
            "this element cannot be stored as a {kind}8[{unit}]"
        )),
    }
}

/// The unit count of an ISO `YYYY[-MM[-DD[THH[:MM[:SS[.fraction]]]]]]` text, as numpy stores it
/// (rounded down to a whole unit). `None` for text that is not such a date or a unit it cannot use.
fn datetime_count(text: &str, unit: &str) -> Option<i64> {
    static ISO: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(-?\d{4,})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d)(?::(\d\d)(?::(\d\d)(?:\.(\d{1,18}))?)?)?)?)?)?$")
            .expect("valid regex")
    });
    let caps = ISO.captures(text)?;
    let num = |i: usize, default: i64| {
        caps.get(i)
            .map_or(Some(default), |m| m.as_str().parse().ok())
    };
    let (year, month, day) = (num(1, 1970)?, num(2, 1)?, num(3, 1)?);
    let split = unit.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
    let (multiple, base) = unit.split_at(split);
    let multiple: i128 = if multiple.is_empty() {
        1
    } else {
        multiple.parse().ok().filter(|&m| m > 0)?
    };
    let count: i128 = match base {
        "Y" => (year - 1970).into(),
        "M" => ((year - 1970) * 12 + month - 1).into(),
        _ => {
            let fraction = caps.get(7).map_or("", |m| m.as_str());
            let attos = format!("{fraction:0<18}").parse::<i128>().ok()?;
            let seconds = days_from_civil(year, month, day) * 86400
                + num(4, 0)? * 3600
                + num(5, 0)? * 60
                + num(6, 0)?;
            let unit_attos: i128 = match base {
                "W" => 7 * 86400 * 10i128.pow(18),
                "D" => 86400 * 10i128.pow(18),
                "h" => 3600 * 10i128.pow(18),
                "m" => 60 * 10i128.pow(18),
                "s" => 10i128.pow(18),
                "ms" => 10i128.pow(15),
                "us" => 10i128.pow(12),
                "ns" => 10i128.pow(9),
                "ps" => 10i128.pow(6),
                "fs" => 1000,
                "as" => 1,
                _ => return None,
            };
            (i128::from(seconds) * 10i128.pow(18) + attos).div_euclid(unit_attos)
        }
    };
    count.div_euclid(multiple).try_into().ok()
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Key;

    fn p(text: &str) -> Value {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn python_literals() {
        assert_eq!(p("None"), Value::None);
        assert_eq!(
            p("[True, -3, 2.5, 'a\\n', b'\\x00']"),
            Value::List(vec![
                Value::Bool(true),
                Value::int(-3),
                Value::Float(2.5),
                Value::str("a\n"),
                Value::Bytes(Bytes::from_static(b"\0")),
            ])
        );
        assert_eq!(
            p("123456789012345678901234567890"),
            Value::Int("123456789012345678901234567890".parse().unwrap())
        );
        assert_eq!(p("0x1_0"), Value::int(16));
        assert_eq!(p("-inf"), Value::Float(f64::NEG_INFINITY));
        assert!(matches!(p("nan"), Value::Float(x) if x.is_nan()));
        assert_eq!(p("(1,)"), Value::Tuple(vec![Value::int(1)]));
        assert_eq!(p("{1, 2}"), Value::Set(vec![Value::int(1), Value::int(2)]));
        assert_eq!(p("set()"), Value::Set(vec![]));
        let Value::Dict(d) = p("{'a': {1, 2}, 2: None}") else {
            panic!("not a dict")
        };
        assert_eq!(
            d.keys().cloned().collect::<Vec<_>>(),
            vec![Key::Str("a".into()), Key::Int(2.into())]
        );
        assert_eq!(
            d[&Key::Str("a".into())],
            Value::Set(vec![Value::int(1), Value::int(2)])
        );
    }

    #[test]
    fn numpy_arrays() {
        let Value::Array(a) = p("array([1.+2.j])") else {
            panic!("not an array")
        };
        assert_eq!(
            (a.dtype.typestr(), a.shape.clone()),
            ("<c16".to_string(), vec![1])
        );
        assert_eq!(
            &a.data[..],
            &[1.0f64.to_le_bytes(), 2.0f64.to_le_bytes()].concat()[..]
        );
        let Value::Array(a) = p("array([[1, 2], [3, 4]], dtype=int32)") else {
            panic!()
        };
        assert_eq!(
            (a.dtype.typestr(), a.shape),
            ("<i4".to_string(), vec![2, 2])
        );
        assert_eq!(&a.data[..8], &[1, 0, 0, 0, 2, 0, 0, 0]);
        let Value::Array(a) = p("array([1, 2.5])") else {
            panic!()
        };
        assert_eq!(a.dtype.typestr(), "<f8");
        let Value::Array(a) = p("array([], dtype=float64)") else {
            panic!()
        };
        assert_eq!(
            (a.dtype.typestr(), a.shape, a.data.len()),
            ("<f8".to_string(), vec![0], 0)
        );
    }

    /// numpy 2.4's `repr(a)`, `a.dtype.str` and `a.tobytes().hex()` for datetime arrays.
    #[test]
    fn datetime_arrays_match_numpy() {
        let cases = [
            (
                "array(['1970-01-01T00:00:01',                 'NaT',\n       '1969-12-31T23:59:59'], dtype='datetime64[s]')",
                "<M8[s]",
                "01000000000000000000000000000080ffffffffffffffff",
            ),
            (
                "array(['2024-02-29T12:34:56.789123'], dtype='datetime64[us]')",
                "<M8[us]",
                "8366aa7c84120600",
            ),
            (
                "array(['1900-03-01', '2262-04-11'], dtype='datetime64[D]')",
                "<M8[D]",
                "5c9cffffffffffffffa0010000000000",
            ),
            (
                "array(['1999-12', '1950-01'], dtype='datetime64[M]')",
                "<M8[M]",
                "670100000000000010ffffffffffffff",
            ),
            (
                "array(['1969', '2001'], dtype='datetime64[Y]')",
                "<M8[Y]",
                "ffffffffffffffff1f00000000000000",
            ),
            (
                "array(['1970-01-01T00:00:50', '1969-12-31T23:59:35'],\n      dtype='datetime64[25s]')",
                "<M8[25s]",
                "0200000000000000ffffffffffffffff",
            ),
            (
                "array([    3,    -2, 'NaT'], dtype='timedelta64[ms]')",
                "<m8[ms]",
                "0300000000000000feffffffffffffff0000000000000080",
            ),
            (
                "array(['NaT'], dtype=datetime64)",
                "<M8",
                "0000000000000080",
            ),
            (
                "array(['1970-01-01T00:00:00.000000001'], dtype='datetime64[ns]')",
                "<M8[ns]",
                "0100000000000000",
            ),
        ];
        for (text, typestr, data) in cases {
            let Value::Array(a) = p(text) else {
                panic!("{text}: not an array")
            };
            assert_eq!(
                (a.dtype.typestr(), hex::encode(&a.data)),
                (typestr.into(), data.into()),
                "{text}"
            );
        }
    }

    #[test]
    fn unsupported_text_is_an_error() {
        for bad in [
            "1+2j",
            "'\\ud800'",
            "array([[1], 2])",
            "f(1)",
            "{**a}",
            "1 +",
            "array([1], dtype='>i4')",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }
}
