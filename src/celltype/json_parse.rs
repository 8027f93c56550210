//! JSON parsing in the two dialects seamless-core reads: `orjson.loads` (plain and the scalar
//! cell types) and Python `json.loads` (mixed buffers, mixed headers).
//!
//! Hand-written rather than serde_json because the dialects differ from serde_json exactly where
//! acceptance matters: Python accepts `NaN`/`Infinity`, lone surrogate escapes and unbounded ints;
//! orjson turns integers beyond 64 bits into floats, keeps `-0` an int and rejects nesting deeper
//! than 1024. Recursion depth is bounded before the stack is at risk (10^6 `[` is an error).

use num_bigint::BigInt;

use crate::value::{Dict, Key, Value};

/// Which JSON reader to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `orjson.loads`: strict RFC 8259, 64-bit ints (else float), overflow to inf rejected.
    Orjson,
    /// Python `json.loads`: `NaN`/`Infinity`/`-Infinity`, unbounded ints, lone surrogates.
    Python,
}

/// orjson's nesting limit (yyjson's), and the depth Python's recursion limit allows in practice.
const ORJSON_MAX_DEPTH: usize = 1024;
const PYTHON_MAX_DEPTH: usize = 990;
/// Python 3.11's limit on digits converted to an int (`sys.get_int_max_str_digits()`).
const PYTHON_MAX_INT_DIGITS: usize = 4300;

/// Parse `text` as one JSON document; the error says what is wrong and where.
pub fn parse(text: &str, dialect: Dialect) -> Result<Value, String> {
    parse_with_depth(text, dialect).map_err(|(why, _)| why)
}

/// `parse`, the error also saying whether it is the nesting limit (Python's `RecursionError`).
pub fn parse_with_depth(text: &str, dialect: Dialect) -> Result<Value, (String, bool)> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
        dialect,
        too_deep: false,
    };
    let mut run = || {
        p.skip_ws();
        let v = p.value()?;
        p.skip_ws();
        if p.pos != p.s.len() {
            return Err(p.err("extra data after the JSON value"));
        }
        Ok(v)
    };
    let result = run();
    result.map_err(|why| (why, p.too_deep))
}

/// A container being filled: a list, or a dict with the key whose value comes next.
enum Open {
    List(Vec<Value>),
    Dict(Dict, String),
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    dialect: Dialect,
    /// Set when the nesting limit stopped the parse.
    too_deep: bool,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    /// One JSON value. Iterative, with an explicit stack of open containers, so that nesting
    /// depth costs heap, not call stack.
    fn value(&mut self) -> Result<Value, String> {
        let mut stack: Vec<Open> = Vec::new();
        loop {
            self.skip_ws();
            let mut done = match self.s.get(self.pos) {
                Some(b'[') => {
                    self.open(stack.len() + 1)?;
                    if self.eat("]") {
                        Value::List(Vec::new())
                    } else {
                        stack.push(Open::List(Vec::new()));
                        continue;
                    }
                }
                Some(b'{') => {
                    self.open(stack.len() + 1)?;
                    if self.eat("}") {
                        Value::Dict(Dict::new())
                    } else {
                        let key = self.key()?;
                        stack.push(Open::Dict(Dict::new(), key));
                        continue;
                    }
                }
                _ => self.scalar()?,
            };
            // Attach the finished value to its container; close containers that end here.
            loop {
                self.skip_ws();
                match stack.last_mut() {
                    None => return Ok(done),
                    Some(Open::List(items)) => {
                        items.push(done);
                        if self.eat(",") {
                            break;
                        }
                        if !self.eat("]") {
                            return Err(self.err("expected ',' or ']' in an array"));
                        }
                    }
                    Some(Open::Dict(map, key)) => {
                        // Python dicts (and orjson) keep the first position and the last value of a repeated key.
                        map.insert(Key::Str(std::mem::take(key)), done);
                        if self.eat(",") {
                            *key = self.key()?;
                            break;
                        }
                        if !self.eat("}") {
                            return Err(self.err("expected ',' or '}' in an object"));
                        }
                    }
                }
                done = match stack.pop() {
                    Some(Open::List(items)) => Value::List(items),
                    Some(Open::Dict(map, _)) => Value::Dict(map),
                    None => unreachable!("a container was open"),
                };
            }
        }
    }

    /// Enter a container at `depth`, checking the dialect's nesting limit.
    fn open(&mut self, depth: usize) -> Result<(), String> {
        let max = match self.dialect {
            Dialect::Orjson => ORJSON_MAX_DEPTH,
            Dialect::Python => PYTHON_MAX_DEPTH,
        };
        if depth > max {
            self.too_deep = true;
            return Err(self.err(&format!("nesting deeper than {max} levels")));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    /// An object key and its `:`.
    fn key(&mut self) -> Result<String, String> {
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b'"') {
            return Err(self.err("expected a string key in an object"));
        }
        let Value::Str(key) = self.string()? else {
            return Err(self.err("a lone surrogate in an object key is not supported"));
        };
        self.skip_ws();
        if !self.eat(":") {
            return Err(self.err("expected ':' after an object key"));
        }
        Ok(key)
    }

    fn scalar(&mut self) -> Result<Value, String> {
        let python = self.dialect == Dialect::Python;
        match self.s.get(self.pos) {
            None => Err(self.err("expected a JSON value, found the end of the text")),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => {
                if python && self.eat("-Infinity") {
                    return Ok(Value::Float(f64::NEG_INFINITY));
                }
                self.number()
            }
            _ if self.eat("true") => Ok(Value::Bool(true)),
            _ if self.eat("false") => Ok(Value::Bool(false)),
            _ if self.eat("null") => Ok(Value::None),
            _ if python && self.eat("NaN") => Ok(Value::Float(f64::NAN)),
            _ if python && self.eat("Infinity") => Ok(Value::Float(f64::INFINITY)),
            _ => Err(self.err("expected a JSON value")),
        }
    }

    /// A string: `Str`, or `Surrogates` once a lone surrogate escape appears (Python dialect).
    fn string(&mut self) -> Result<Value, String> {
        self.pos += 1;
        let mut out = String::new();
        let mut units: Option<Vec<u32>> = None;
        loop {
            let start = self.pos;
            while let Some(&b) = self.s.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            let run = &self.text[start..self.pos];
            match &mut units {
                Some(u) => u.extend(run.chars().map(|c| c as u32)),
                None => out.push_str(run),
            }
            match self.s.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(match units {
                        Some(u) => Value::Surrogates(u),
                        None => Value::Str(out),
                    });
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let unit = self.escape()?;
                    match (&mut units, char::from_u32(unit)) {
                        (Some(u), _) => u.push(unit),
                        (None, Some(c)) => out.push(c),
                        (None, None) => {
                            let mut u: Vec<u32> = out.chars().map(|c| c as u32).collect();
                            u.push(unit);
                            units = Some(u);
                        }
                    }
                }
                Some(_) => return Err(self.err("control character inside a string")),
            }
        }
    }

    fn escape(&mut self) -> Result<u32, String> {
        let c = *self
            .s
            .get(self.pos)
            .ok_or_else(|| self.err("unterminated escape"))?;
        self.pos += 1;
        Ok(match c {
            b'"' => 0x22,
            b'\\' => 0x5c,
            b'/' => 0x2f,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => 0x0a,
            b'r' => 0x0d,
            b't' => 0x09,
            b'u' => return self.unicode_escape(),
            _ => return Err(self.err("invalid escape")),
        })
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("truncated \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.err("invalid \\u escape"))?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.err("invalid \\u escape"));
        }
        self.pos += 4;
        Ok(u32::from_str_radix(text, 16).expect("checked hex digits"))
    }

    fn unicode_escape(&mut self) -> Result<u32, String> {
        let hi = self.hex4()?;
        if (0xd800..0xdc00).contains(&hi) && self.s[self.pos..].starts_with(b"\\u") {
            let save = self.pos;
            self.pos += 2;
            let lo = self.hex4()?;
            if (0xdc00..0xe000).contains(&lo) {
                return Ok(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00));
            }
            self.pos = save;
        }
        if (0xd800..0xe000).contains(&hi) && self.dialect == Dialect::Orjson {
            return Err(self.err("lone surrogate escape"));
        }
        Ok(hi)
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        self.eat("-");
        match self.s.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err("invalid number")),
        }
        let mut is_float = false;
        if self.s.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
                return Err(self.err("invalid number: digits expected after '.'"));
            }
            self.digits();
            is_float = true;
        }
        if let Some(b'e' | b'E') = self.s.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.s.get(self.pos) {
                self.pos += 1;
            }
            if !self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
                return Err(self.err("invalid number: digits expected in the exponent"));
            }
            self.digits();
            is_float = true;
        }
        let text = &self.text[start..self.pos];
        if is_float {
            return self.float(text);
        }
        match self.dialect {
            Dialect::Python if text.trim_start_matches('-').len() > PYTHON_MAX_INT_DIGITS => {
                Err(self.err("integer with more than 4300 digits"))
            }
            Dialect::Python => Ok(Value::Int(
                text.parse::<BigInt>().expect("checked integer syntax"),
            )),
            Dialect::Orjson => {
                if let Ok(i) = text.parse::<i64>() {
                    Ok(Value::int(i))
                } else if let Ok(u) = text.parse::<u64>() {
                    Ok(Value::int(u))
                } else {
                    // orjson reads integers beyond 64 bits as floats.
                    self.float(text)
                }
            }
        }
    }

    fn float(&self, text: &str) -> Result<Value, String> {
        let x: f64 = text.parse().map_err(|_| self.err("invalid number"))?;
        if x.is_infinite() && self.dialect == Dialect::Orjson {
            return Err(self.err("number out of range"));
        }
        Ok(Value::Float(x))
    }

    fn digits(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }
}

/// A str value, or `Surrogates` if a lone surrogate makes it unrepresentable as UTF-8.
pub fn units_to_value(units: Vec<u32>) -> Value {
    match units
        .iter()
        .map(|&u| char::from_u32(u))
        .collect::<Option<String>>()
    {
        Some(s) => Value::Str(s),
        None => Value::Surrogates(units),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orjson(t: &str) -> Result<Value, String> {
        parse(t, Dialect::Orjson)
    }

    #[test]
    fn orjson_number_rules() {
        assert_eq!(orjson("-0").unwrap(), Value::int(0));
        assert_eq!(
            orjson("18446744073709551615").unwrap(),
            Value::int(u64::MAX)
        );
        assert_eq!(
            orjson("18446744073709551616").unwrap(),
            Value::Float(18446744073709551616.0)
        );
        assert_eq!(orjson("1E-400").unwrap(), Value::Float(0.0));
        for bad in [
            "1e400",
            "01",
            "1.",
            "[1,]",
            "\"\\ud800\"",
            "NaN",
            "\u{feff}1",
            "",
            " ",
            "\"a\u{1}\"",
            "1 2",
        ] {
            assert!(orjson(bad).is_err(), "{bad:?}");
        }
        assert_eq!(orjson(" 1 \r\n").unwrap(), Value::int(1));
    }

    #[test]
    fn python_dialect() {
        let p = |t| parse(t, Dialect::Python);
        assert!(matches!(p("NaN").unwrap(), Value::Float(x) if x.is_nan()));
        assert_eq!(p("-Infinity").unwrap(), Value::Float(f64::NEG_INFINITY));
        assert_eq!(p("1e400").unwrap(), Value::Float(f64::INFINITY));
        assert_eq!(p("\"\\ud800\"").unwrap(), Value::Surrogates(vec![0xd800]));
        assert_eq!(
            p("\"é\\ud800x\"").unwrap(),
            Value::Surrogates(vec![0xe9, 0xd800, 0x78])
        );
        assert_eq!(p("\"\\ud83d\\ude00\"").unwrap(), Value::str("😀"));
        assert_eq!(
            p("123456789012345678901234567890").unwrap(),
            Value::Int("123456789012345678901234567890".parse().unwrap())
        );
    }

    #[test]
    fn duplicate_keys_keep_first_position_last_value() {
        let Value::Dict(d) = orjson(r#"{"a":1,"b":2,"a":3}"#).unwrap() else {
            panic!()
        };
        let items: Vec<_> = d.into_iter().collect();
        assert_eq!(
            items,
            vec![
                (Key::Str("a".into()), Value::int(3)),
                (Key::Str("b".into()), Value::int(2))
            ]
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(1_000_000);
        assert!(orjson(&deep).unwrap_err().contains("nesting"));
        let ok = format!("{}{}", "[".repeat(1024), "]".repeat(1024));
        assert!(orjson(&ok).is_ok());
        let too_deep = format!("{}{}", "[".repeat(1025), "]".repeat(1025));
        assert!(orjson(&too_deep).is_err());
    }
}
