//! The hashserver 1.1.0 wire rules that do not touch the disk: checksum validation with its
//! exact messages, the 400 validation bodies (FastAPI + pydantic, first error only), the JSON
//! list bodies of `/has` & co., `Accept-Encoding` / `Content-Encoding` negotiation, Starlette's
//! `Range` parsing and the `FileResponse` stat headers (spec §1, §2, §5).
//!
//! The texts are byte for byte the Python server's (hashserver-transcript.md); they are built by
//! hand here because they mimic pydantic and Starlette output, not a format a crate produces.

use serde_json::{Map, Value, json};

use crate::checksum::{Checksum, ChecksumError, Compression};

/// One stored form of a buffer: the raw bytes or a compressed file (`.zst`, `.gz`).
pub type Form = Option<Compression>;

/// The three forms, in the order hashserver prefers them when nothing else decides.
pub const FORMS: [Form; 3] = [None, Some(Compression::Zstd), Some(Compression::Gzip)];

/// File name suffix of a form.
pub fn suffix(form: Form) -> &'static str {
    match form {
        None => "",
        Some(Compression::Zstd) => ".zst",
        Some(Compression::Gzip) => ".gz",
    }
}

/// `Content-Encoding` value of a compressed form.
pub fn content_encoding(compression: Compression) -> &'static str {
    match compression {
        Compression::Zstd => "zstd",
        Compression::Gzip => "gzip",
    }
}

/// hashserver's `parse_checksum` on a text: odd length, then `bytes.fromhex`, then 32 bytes.
/// The error is the `ValueError` text pydantic wraps as `"Value error, <text>"`.
pub fn parse_checksum(text: &str) -> Result<Checksum, String> {
    if text.chars().count() % 2 == 1 {
        return Err("Wrong length".into());
    }
    Checksum::parse(text).map_err(|e| match e {
        ChecksumError::NonHex(_) => e.to_string(),
        _ => "Wrong length".into(),
    })
}

/// The 400 body of hashserver's validation handler: `{"message":"Invalid data","exception":…}`
/// with pydantic's first error (`type`, `loc`, `msg`, `input`; `ctx` dropped).
pub fn validation_body(kind: &str, loc: Value, msg: &str, input: Value) -> String {
    let mut error = Map::new();
    error.insert("type".into(), json!(kind));
    error.insert("loc".into(), loc);
    error.insert("msg".into(), json!(msg));
    error.insert("input".into(), input);
    let mut body = Map::new();
    body.insert("message".into(), json!("Invalid data"));
    body.insert("exception".into(), Value::Object(error));
    Value::Object(body).to_string()
}

/// The validation body for a bad checksum in the URL path.
pub fn path_error(text: &str, msg: &str) -> String {
    validation_body(
        "value_error",
        json!(["path", "checksum"]),
        &format!("Value error, {msg}"),
        json!(text),
    )
}

/// Why a checksum list body was refused.
#[derive(Debug, PartialEq)]
pub enum ListError {
    /// 400 with this validation body.
    Invalid(String),
    /// 500 `Internal Server Error` (a non-string element makes hashserver raise `TypeError`).
    Internal,
}

/// Read the JSON list body of `/has`, `/has-now` and `/buffer-length` as FastAPI does: only a
/// JSON content type is parsed as JSON, anything else is validated as raw text (and fails).
pub fn parse_list_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<Checksum>, ListError> {
    if body.is_empty() {
        return Err(ListError::Invalid(validation_body(
            "missing",
            json!(["body"]),
            "Field required",
            Value::Null,
        )));
    }
    let text = String::from_utf8_lossy(body);
    let value = if content_type.is_some_and(is_json_content_type) {
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => value,
            Err(e) => {
                return Err(ListError::Invalid(validation_body(
                    "json_invalid",
                    json!(["body", python_error_position(&text, &e)]),
                    "JSON decode error",
                    json!({}),
                )));
            }
        }
    } else {
        Value::String(text.into_owned())
    };
    let Value::Array(items) = value else {
        return Err(ListError::Invalid(validation_body(
            "list_type",
            json!(["body"]),
            "Input should be a valid list",
            value,
        )));
    };
    check_items(&items)
}

/// pydantic validates every element and reports the first failure; a `TypeError` raised by the
/// validator (any non-string, non-null element) escapes as a 500 wherever it is in the list.
fn check_items(items: &[Value]) -> Result<Vec<Checksum>, ListError> {
    if items
        .iter()
        .any(|v| !matches!(v, Value::String(_) | Value::Null))
    {
        return Err(ListError::Internal);
    }
    let mut checksums = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let error = match item {
            Value::String(text) => match parse_checksum(text) {
                Ok(cs) => {
                    checksums.push(cs);
                    continue;
                }
                Err(msg) => ("value_error", format!("Value error, {msg}")),
            },
            _ => ("string_type", "Input should be a valid string".to_string()),
        };
        return Err(ListError::Invalid(validation_body(
            error.0,
            json!(["body", index]),
            &error.1,
            item.clone(),
        )));
    }
    Ok(checksums)
}

/// FastAPI's test: media type `application/json` or any `application/*+json`.
fn is_json_content_type(value: &str) -> bool {
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

/// The character offset Python's `json` reports (`JSONDecodeError.pos`): the end of the text
/// for a premature end, else the offending character.
fn python_error_position(text: &str, error: &serde_json::Error) -> usize {
    if error.classify() == serde_json::error::Category::Eof {
        return text.chars().count();
    }
    let mut offset = 0;
    for (i, line) in text.split('\n').enumerate() {
        if i + 1 == error.line() {
            return offset + error.column().saturating_sub(1);
        }
        offset += line.chars().count() + 1;
    }
    offset
}

/// A compressed upload's `Content-Encoding` (`zstd`/`gzip`, trimmed, any case); any other value
/// means the body is raw.
pub fn upload_compression(header: Option<&str>) -> Option<Compression> {
    match header?.trim().to_ascii_lowercase().as_str() {
        "zstd" => Some(Compression::Zstd),
        "gzip" => Some(Compression::Gzip),
        _ => None,
    }
}

/// The order in which stored forms are tried for a GET (hashserver's `_parse_accept_encoding`):
/// accepted encodings by q (then position), then raw, `.zst`, `.gz` for the rest.
pub fn preferred_forms(accept_encoding: Option<&str>) -> Vec<Form> {
    let mut parsed: Vec<(f64, usize, Option<Form>)> = Vec::new();
    for (index, (name, q)) in accept_items(accept_encoding).into_iter().enumerate() {
        let form = match name.as_str() {
            "gzip" => Some(Some(Compression::Gzip)),
            "zstd" | "x-zstd" => Some(Some(Compression::Zstd)),
            "identity" => Some(None),
            // `*` adds the forms not named in the default order, as the fallback below does.
            _ => continue,
        };
        parsed.push((q, index, form));
    }
    parsed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut ordered: Vec<Form> = Vec::new();
    for form in parsed.into_iter().filter_map(|(_, _, form)| form) {
        if !ordered.contains(&form) {
            ordered.push(form);
        }
    }
    for form in FORMS {
        if !ordered.contains(&form) {
            ordered.push(form);
        }
    }
    ordered
}

/// Whether a client sending this `Accept-Encoding` can read `form`: raw always; a compressed
/// form if there is no header at all, or if it is named (or `*` is) with q > 0.
pub fn accepts(accept_encoding: Option<&str>, compression: Compression) -> bool {
    let Some(header) = accept_encoding else {
        return true;
    };
    let name = content_encoding(compression);
    accept_items(Some(header))
        .iter()
        .any(|(item, _)| item == name || item == "*" || (name == "zstd" && item == "x-zstd"))
}

/// `(encoding, q)` of each item with q > 0 (an unparsable q counts as 0, as in hashserver).
fn accept_items(header: Option<&str>) -> Vec<(String, f64)> {
    let Some(header) = header.filter(|h| !h.is_empty()) else {
        return Vec::new();
    };
    let mut items = Vec::new();
    for item in header.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0;
        for param in parts {
            if let Some(value) = param.strip_prefix("q=") {
                q = value.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
        if q > 0.0 {
            items.push((name, q));
        }
    }
    items
}

/// What a `Range` header asks of a file of `size` bytes (Starlette `FileResponse` rules).
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: the whole file, 200.
    Full,
    /// 206 with these `[start, end)` ranges, sorted and merged when more than one.
    Parts(Vec<(u64, u64)>),
    /// 400 with this plain-text message.
    Malformed(&'static str),
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Most ranges Starlette serves; a header with more is ignored (the whole file is sent).
const MAX_RANGES: usize = 100;

pub fn parse_range(header: &str, size: u64) -> RangeRequest {
    let Some((units, spec)) = header.split_once('=') else {
        return RangeRequest::Malformed("Malformed range header.");
    };
    if !units.trim().eq_ignore_ascii_case("bytes") {
        return RangeRequest::Malformed("Only support bytes range");
    }
    if spec.matches(',').count() + 1 > MAX_RANGES {
        return RangeRequest::Full;
    }
    let mut ranges = Vec::new();
    for part in spec.split(',').map(str::trim) {
        if part.is_empty() || part == "-" {
            continue;
        }
        let Some((start, end)) = part.split_once('-') else {
            continue;
        };
        if let Some(range) = one_range(start.trim(), end.trim(), size) {
            ranges.push(range);
        }
    }
    if ranges.is_empty() {
        return RangeRequest::Malformed("Range header: range must be requested");
    }
    if ranges
        .iter()
        .any(|&(start, _)| start < 0 || start as u64 >= size)
    {
        return RangeRequest::Unsatisfiable;
    }
    if ranges.iter().any(|&(start, end)| start >= end) {
        return RangeRequest::Malformed("Range header: start must be less than end");
    }
    let mut ranges: Vec<(u64, u64)> = ranges
        .into_iter()
        .map(|(s, e)| (s as u64, e as u64))
        .collect();
    if ranges.len() > 1 {
        ranges.sort();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        ranges = merged;
    }
    RangeRequest::Parts(ranges)
}

/// One `start-end` item as Starlette reads it (Python ints: a sign is allowed); None if not
/// numeric.
fn one_range(start: &str, end: &str, size: u64) -> Option<(i128, i128)> {
    let size = size as i128;
    let int = |s: &str| s.replace('_', "").parse::<i128>().ok();
    if start.is_empty() {
        let tail = int(end)?;
        return Some(((size - tail).max(0), size));
    }
    let first = int(start)?;
    let last = if end.is_empty() {
        None
    } else {
        Some(int(end)?)
    };
    let stop = match last {
        Some(last) if last < size => last + 1,
        _ => size,
    };
    Some((first, stop))
}

/// Python's `st_mtime` float of a file: seconds plus nanoseconds × 1e-9, as CPython computes it.
pub fn python_mtime(secs: i64, nanos: i64) -> f64 {
    secs as f64 + nanos as f64 * 1e-9
}

/// Starlette's `etag`: the MD5 of `"{st_mtime}-{st_size}"` (Python float repr), quoted.
pub fn etag(mtime: f64, size: u64) -> String {
    use md5::{Digest, Md5};
    let text = format!("{}-{size}", python_float_repr(mtime));
    format!("\"{}\"", hex::encode(Md5::digest(text.as_bytes())))
}

/// Python `repr(float)` for the values a file time takes (shortest round trip, `.0` kept).
fn python_float_repr(value: f64) -> String {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format(value);
    // ryu writes `1e16` where Python writes `1e+16`; mtimes never come near, but stay exact.
    match text.split_once('e') {
        Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
        _ => text.to_string(),
    }
}

/// `email.utils.formatdate(mtime, usegmt=True)`: `Sun, 06 Dec 2026 02:50:02 GMT`.
pub fn http_date(mtime: f64) -> String {
    let secs = mtime.floor() as i64;
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[month as usize - 1],
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "0ba904eae8773b70c75333db4de2f3ac45a8ad4ddba1b242f0b3cfc199391dd8";

    #[test]
    fn checksum_errors_are_the_transcripts() {
        assert_eq!(
            path_error("0ba904eae8", &parse_checksum("0ba904eae8").unwrap_err()),
            r#"{"message":"Invalid data","exception":{"type":"value_error","loc":["path","checksum"],"msg":"Value error, Wrong length","input":"0ba904eae8"}}"#
        );
        let bad = format!("xx{}", &HELLO[2..]);
        assert_eq!(
            parse_checksum(&bad).unwrap_err(),
            "non-hexadecimal number found in fromhex() arg at position 0"
        );
        assert_eq!(parse_checksum(&HELLO[..63]).unwrap_err(), "Wrong length");
        assert_eq!(parse_checksum(&HELLO.to_uppercase()).unwrap().hex(), HELLO);
    }

    #[test]
    fn list_bodies_fail_as_fastapi_does() {
        let json = Some("application/json");
        let one = format!(r#"["{HELLO}"]"#);
        assert_eq!(parse_list_body(json, one.as_bytes()).unwrap().len(), 1);
        assert_eq!(parse_list_body(json, b"[]").unwrap(), vec![]);
        let err = |ct, body: &[u8]| match parse_list_body(ct, body) {
            Err(ListError::Invalid(text)) => text,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err(None, one.as_bytes()),
            format!(
                r#"{{"message":"Invalid data","exception":{{"type":"list_type","loc":["body"],"msg":"Input should be a valid list","input":"[\"{HELLO}\"]"}}}}"#
            )
        );
        assert_eq!(
            err(json, b""),
            r#"{"message":"Invalid data","exception":{"type":"missing","loc":["body"],"msg":"Field required","input":null}}"#
        );
        assert_eq!(
            err(json, b"["),
            r#"{"message":"Invalid data","exception":{"type":"json_invalid","loc":["body",1],"msg":"JSON decode error","input":{}}}"#
        );
        assert_eq!(
            err(json, format!(r#"["{HELLO}", "0ba904eae8"]"#).as_bytes()),
            r#"{"message":"Invalid data","exception":{"type":"value_error","loc":["body",1],"msg":"Value error, Wrong length","input":"0ba904eae8"}}"#
        );
        assert_eq!(parse_list_body(json, b"[12345]"), Err(ListError::Internal));
        assert_eq!(
            parse_list_body(json, b"[\"00\", 1]"),
            Err(ListError::Internal)
        );
    }

    #[test]
    fn accept_encoding_order() {
        let gz = Some(Compression::Gzip);
        let zst = Some(Compression::Zstd);
        assert_eq!(preferred_forms(None), vec![None, zst, gz]);
        assert_eq!(preferred_forms(Some("gzip, deflate")), vec![gz, None, zst]);
        assert_eq!(
            preferred_forms(Some("zstd;q=0.5, gzip;q=0.9, identity;q=0")),
            vec![gz, zst, None]
        );
        assert_eq!(preferred_forms(Some("identity")), vec![None, zst, gz]);
        assert!(accepts(None, Compression::Zstd));
        assert!(!accepts(Some("gzip, deflate"), Compression::Zstd));
        assert!(accepts(Some("gzip, deflate"), Compression::Gzip));
        assert!(accepts(Some("*"), Compression::Zstd));
        assert!(!accepts(Some("gzip;q=0"), Compression::Gzip));
    }

    #[test]
    fn ranges_as_starlette() {
        assert_eq!(
            parse_range("bytes=0-4", 13),
            RangeRequest::Parts(vec![(0, 5)])
        );
        assert_eq!(
            parse_range("bytes=-3", 13),
            RangeRequest::Parts(vec![(10, 13)])
        );
        assert_eq!(
            parse_range("bytes=5-", 13),
            RangeRequest::Parts(vec![(5, 13)])
        );
        assert_eq!(
            parse_range("bytes=5-100", 13),
            RangeRequest::Parts(vec![(5, 13)])
        );
        assert_eq!(
            parse_range("bytes=0-1, 1-3, 8-9", 13),
            RangeRequest::Parts(vec![(0, 4), (8, 10)])
        );
        assert_eq!(parse_range("bytes=13-", 13), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), RangeRequest::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=4-2", 13),
            RangeRequest::Malformed("Range header: start must be less than end")
        );
        assert_eq!(
            parse_range("items=0-1", 13),
            RangeRequest::Malformed("Only support bytes range")
        );
        assert_eq!(
            parse_range("bytes", 13),
            RangeRequest::Malformed("Malformed range header.")
        );
        assert_eq!(
            parse_range("bytes=x-y", 13),
            RangeRequest::Malformed("Range header: range must be requested")
        );
    }

    #[test]
    fn stat_headers_as_starlette() {
        use md5::Digest;
        // Python: formatdate(1765000000.5, usegmt=True); md5(b"1765000000.5-13")
        assert_eq!(http_date(1765000000.5), "Sat, 06 Dec 2025 05:46:40 GMT");
        assert_eq!(http_date(0.0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(python_float_repr(1765000000.0), "1765000000.0");
        assert_eq!(
            python_float_repr(python_mtime(1765000000, 123456789)),
            "1765000000.1234567"
        );
        assert_eq!(
            etag(1765000000.5, 13),
            format!("\"{}\"", hex::encode(md5::Md5::digest(b"1765000000.5-13")))
        );
    }
}
