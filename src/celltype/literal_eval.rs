//! Python's `ast.literal_eval` (3.11), as numpy uses it to read `.npy` headers: the text is
//! parsed as one Python expression (ruff's parser, which follows CPython's grammar) and the tree
//! is walked with exactly literal_eval's rules: constants, tuples, lists, sets, `set()`, dicts,
//! signed numbers and `real ± complex`. Anything else is `ValueError("malformed node or
//! string")`; an unhashable dict key or set element is Python's `TypeError`.

use num_bigint::BigInt;
use num_traits::ToPrimitive;
use ruff_python_ast::{Expr, Number, Operator, UnaryOp};
use ruff_python_parser::parse_expression;

use super::{CellError, PyErrorKind, with_stack};

/// A value `ast.literal_eval` can return.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    None,
    Bool(bool),
    Int(BigInt),
    Float(f64),
    Complex(f64, f64),
    Str(String),
    Bytes(Vec<u8>),
    Ellipsis,
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    /// Elements in insertion order, duplicates (by Python `==`) dropped.
    Set(Vec<Lit>),
    /// Entries in insertion order; a repeated key keeps its first place and its last value.
    Dict(Vec<(Lit, Lit)>),
}

impl Lit {
    /// Python's `type(x).__name__`, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Lit::None => "NoneType",
            Lit::Bool(_) => "bool",
            Lit::Int(_) => "int",
            Lit::Float(_) => "float",
            Lit::Complex(..) => "complex",
            Lit::Str(_) => "str",
            Lit::Bytes(_) => "bytes",
            Lit::Ellipsis => "ellipsis",
            Lit::Tuple(_) => "tuple",
            Lit::List(_) => "list",
            Lit::Set(_) => "set",
            Lit::Dict(_) => "dict",
        }
    }

    /// The value as a Python number (`bool` counts as int), for `==` between numbers.
    fn number(&self) -> Option<(f64, f64)> {
        match self {
            Lit::Bool(b) => Some((*b as u8 as f64, 0.0)),
            Lit::Int(i) => Some((i.to_f64().unwrap_or(f64::INFINITY), 0.0)),
            Lit::Float(x) => Some((*x, 0.0)),
            Lit::Complex(re, im) => Some((*re, *im)),
            _ => None,
        }
    }

    /// Python `==` between hashable literals (`1 == 1.0 == True`, tuples item by item).
    pub fn py_eq(&self, other: &Lit) -> bool {
        if let (Lit::Int(a), Lit::Int(b)) = (self, other) {
            return a == b;
        }
        if let (Some(a), Some(b)) = (self.number(), other.number()) {
            return a == b;
        }
        match (self, other) {
            (Lit::Tuple(a), Lit::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.py_eq(y))
            }
            _ => self == other,
        }
    }

    /// `hash(x)` succeeds: not a list, dict or set, nor a tuple holding one.
    fn check_hashable(&self) -> Result<(), CellError> {
        match self {
            Lit::List(_) | Lit::Dict(_) | Lit::Set(_) => Err(CellError::new(
                PyErrorKind::TypeError,
                format!("unhashable type: '{}'", self.type_name()),
            )),
            Lit::Tuple(items) => items.iter().try_for_each(Lit::check_hashable),
            _ => Ok(()),
        }
    }
}

/// `ast.literal_eval(text)`: a `SyntaxError` (as `Err(None)`) when the text is not one Python
/// expression, else the value or the `ValueError`/`TypeError` literal_eval raises.
pub fn literal_eval(text: &str) -> Result<Lit, Option<CellError>> {
    let text = text.trim_start_matches([' ', '\t']);
    // Python refuses source holding NUL bytes, and brackets nested deeper than its tokenizer's
    // 200 levels, with a SyntaxError.
    if text.contains('\0') || bracket_depth(text) > MAX_BRACKET_DEPTH {
        return Err(None);
    }
    let parsed = parse_expression(text).map_err(|_| None)?;
    convert(&parsed.syntax().body).map_err(Some)
}

/// CPython's tokenizer limit on nested brackets (`MAXLEVEL`).
const MAX_BRACKET_DEPTH: usize = 200;

/// The deepest bracket nesting of the text (brackets inside strings counted too: an
/// over-estimate only for headers no writer produces).
fn bracket_depth(text: &str) -> usize {
    let mut depth = 0usize;
    let mut max = 0;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn malformed(e: &Expr) -> CellError {
    let kind = format!("{e:?}");
    let node = kind.split(['(', ' ', '{']).next().unwrap_or("node");
    CellError::new(
        PyErrorKind::ValueError,
        format!("malformed node or string: <ast.{node} object>"),
    )
}

fn convert(e: &Expr) -> Result<Lit, CellError> {
    with_stack(|| convert_inner(e))
}

fn convert_inner(e: &Expr) -> Result<Lit, CellError> {
    Ok(match e {
        Expr::NoneLiteral(_) => Lit::None,
        Expr::BooleanLiteral(b) => Lit::Bool(b.value),
        Expr::StringLiteral(s) => Lit::Str(s.value.to_str().to_string()),
        Expr::BytesLiteral(b) => Lit::Bytes(b.value.bytes().collect()),
        Expr::EllipsisLiteral(_) => Lit::Ellipsis,
        Expr::NumberLiteral(_) => num(e)?,
        Expr::Tuple(t) => Lit::Tuple(t.elts.iter().map(convert).collect::<Result<_, _>>()?),
        Expr::List(l) => Lit::List(l.elts.iter().map(convert).collect::<Result<_, _>>()?),
        Expr::Set(s) => {
            let mut items: Vec<Lit> = Vec::new();
            for x in &s.elts {
                let v = convert(x)?;
                v.check_hashable()?;
                if !items.iter().any(|y| y.py_eq(&v)) {
                    items.push(v);
                }
            }
            Lit::Set(items)
        }
        Expr::Call(c)
            if matches!(c.func.as_ref(), Expr::Name(n) if n.id.as_str() == "set")
                && c.arguments.args.is_empty()
                && c.arguments.keywords.is_empty() =>
        {
            Lit::Set(Vec::new())
        }
        Expr::Dict(d) => {
            // `dict(zip(map(_convert, keys), map(_convert, values)))`: key, value, then insert.
            let mut entries: Vec<(Lit, Lit)> = Vec::new();
            for item in &d.items {
                // A `**x` entry has no key: `_convert(None)` is malformed.
                let key = convert(item.key.as_ref().ok_or_else(|| malformed(e))?)?;
                let value = convert(&item.value)?;
                key.check_hashable()?;
                match entries.iter_mut().find(|(k, _)| k.py_eq(&key)) {
                    Some(entry) => entry.1 = value,
                    None => entries.push((key, value)),
                }
            }
            Lit::Dict(entries)
        }
        Expr::BinOp(b) if matches!(b.op, Operator::Add | Operator::Sub) => {
            let left = signed_num(&b.left)?;
            let right = num(&b.right)?;
            match (left, right) {
                (l @ (Lit::Int(_) | Lit::Float(_)), Lit::Complex(re, im)) => {
                    let (lr, _) = l.number().expect("a number");
                    if b.op == Operator::Add {
                        Lit::Complex(lr + re, im)
                    } else {
                        Lit::Complex(lr - re, -im)
                    }
                }
                _ => return Err(malformed(e)),
            }
        }
        _ => signed_num(e)?,
    })
}

/// `_convert_num`: a number constant (not a bool).
fn num(e: &Expr) -> Result<Lit, CellError> {
    let Expr::NumberLiteral(n) = e else {
        return Err(malformed(e));
    };
    Ok(match &n.value {
        Number::Int(i) => Lit::Int(int_literal(&i.to_string()).ok_or_else(|| malformed(e))?),
        Number::Float(x) => Lit::Float(*x),
        Number::Complex { real, imag } => Lit::Complex(*real, *imag),
    })
}

/// `_convert_signed_num`: `+n`, `-n` or `n`.
fn signed_num(e: &Expr) -> Result<Lit, CellError> {
    match e {
        Expr::UnaryOp(u) if matches!(u.op, UnaryOp::USub | UnaryOp::UAdd) => {
            let n = num(&u.operand)?;
            Ok(if u.op == UnaryOp::UAdd {
                n
            } else {
                match n {
                    Lit::Int(i) => Lit::Int(-i),
                    Lit::Float(x) => Lit::Float(-x),
                    Lit::Complex(re, im) => Lit::Complex(-re, -im),
                    other => other,
                }
            })
        }
        _ => num(e),
    }
}

/// A Python int literal's value (underscores, `0x`/`0o`/`0b` prefixes allowed).
pub fn int_literal(token: &str) -> Option<BigInt> {
    let t = token.replace('_', "").to_ascii_lowercase();
    let (radix, digits) = match t.get(..2) {
        Some("0x") => (16, &t[2..]),
        Some("0o") => (8, &t[2..]),
        Some("0b") => (2, &t[2..]),
        _ => (10, &t[..]),
    };
    BigInt::parse_bytes(digits.as_bytes(), radix)
}

/// What `tokenize.generate_tokens` makes of a header numpy failed to parse, as numpy's
/// `_filter_header` uses it for version 1.0/2.0 headers: `Err(TokenError)` where tokenize gives
/// up (brackets or a triple-quoted string still open at the end, or a trailing backslash), else
/// the text with Python 2's `L` suffix removed from int literals.
pub fn filter_header(text: &str) -> Result<String, CellError> {
    let token_error =
        |what: &str| CellError::new(PyErrorKind::TokenError, format!("('{what}', (2, 0))"));
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut depth: i64 = 0;
    let mut i = 0;
    let mut after_number = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    out.push(chars[i]);
                    i += 1;
                }
                after_number = false;
                continue;
            }
            '\'' | '"' => {
                let triple = chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c);
                let quote_len = if triple { 3 } else { 1 };
                let start = i;
                i += quote_len;
                let mut closed = false;
                while i < chars.len() {
                    if chars[i] == '\\' {
                        i += 2;
                        continue;
                    }
                    if !triple && chars[i] == '\n' {
                        break;
                    }
                    if chars[i] == c && (!triple || chars[i..].starts_with(&[c, c, c])) {
                        i += quote_len;
                        closed = true;
                        break;
                    }
                    i += 1;
                }
                if triple && !closed {
                    return Err(token_error("EOF in multi-line string"));
                }
                if !closed {
                    // tokenize makes the lone quote an error token and reads on after it.
                    out.push(c);
                    i = start + 1;
                    after_number = false;
                    continue;
                }
                out.extend(&chars[start..i.min(chars.len())]);
                after_number = false;
                continue;
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            'L' if after_number
                && !chars
                    .get(i + 1)
                    .is_some_and(|n| n.is_alphanumeric() || *n == '_') =>
            {
                i += 1;
                after_number = false;
                continue;
            }
            _ => {}
        }
        // A number token: digits, or letters/dots continuing one (`0x1f`, `1.5e3`).
        let starts_number = c.is_ascii_digit()
            && !(i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
            || after_number && (c.is_ascii_alphanumeric() || c == '.' || c == '_') && c != 'L';
        after_number = starts_number;
        out.push(c);
        i += 1;
    }
    let continued = text
        .trim_end_matches([' ', '\t', '\n', '\r', '\x0c'])
        .ends_with('\\');
    // tokenize counts brackets without matching them: any imbalance is an open statement.
    if depth != 0 || continued {
        return Err(token_error("EOF in multi-line statement"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(t: &str) -> Result<Lit, Option<PyErrorKind>> {
        literal_eval(t).map_err(|e| e.map(|e| e.kind))
    }

    #[test]
    fn literal_eval_follows_python() {
        assert_eq!(eval("(1,)"), Ok(Lit::Tuple(vec![Lit::Int(1.into())])));
        assert_eq!(eval("  -0x10"), Ok(Lit::Int((-16).into())));
        assert_eq!(eval("'a' 'b'"), Ok(Lit::Str("ab".into())));
        assert_eq!(
            eval("{1: 'a', True: 'b'}"),
            Ok(Lit::Dict(vec![(Lit::Int(1.into()), Lit::Str("b".into()))]))
        );
        assert_eq!(eval("1+2j"), Ok(Lit::Complex(1.0, 2.0)));
        assert_eq!(eval("1+1"), Err(Some(PyErrorKind::ValueError)));
        assert_eq!(eval("-(-1)"), Err(Some(PyErrorKind::ValueError)));
        assert_eq!(eval("-True"), Err(Some(PyErrorKind::ValueError)));
        assert_eq!(eval("{**{}}"), Err(Some(PyErrorKind::ValueError)));
        assert_eq!(eval("{[1]: 2}"), Err(Some(PyErrorKind::TypeError)));
        assert_eq!(eval("{1: 2"), Err(None));
    }

    #[test]
    fn filter_header_drops_python2_longs() {
        assert_eq!(filter_header("(2L, 3L)").unwrap(), "(2, 3)");
        assert_eq!(filter_header("'2L'").unwrap(), "'2L'");
        assert_eq!(
            filter_header("{'a': x\", (1L,)}").unwrap(),
            "{'a': x\", (1,)}"
        );
        assert_eq!(
            filter_header("{'a': (1,").unwrap_err().kind,
            PyErrorKind::TokenError
        );
    }
}
