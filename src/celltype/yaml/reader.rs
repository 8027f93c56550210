//! The checks PyYAML's reader and scanner make that libyaml does not make the same way, run
//! before the event parser: printable characters, the leading BOM, the tab rule, and the
//! `\uD800`-style surrogate escapes PyYAML accepts and libyaml rejects.

use regex::Regex;
use std::sync::LazyLock;

use super::libyaml::{Parser, TokenKind};

/// A surrogate escape (`"\ud83d"`), which libyaml rejects: its byte offset (the backslash)
/// and the code point PyYAML builds from it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Surrogate {
    pub offset: usize,
    pub code_point: u32,
}

/// The text libyaml should parse, with what was changed in it.
pub(super) struct Prepared {
    pub text: String,
    /// Surrogate escapes inside double-quoted scalars, rewritten to `\uFFFD`.
    pub surrogates: Vec<Surrogate>,
    /// Whether the source itself holds U+FFFD (then a U+FFFD in a scalar is ambiguous).
    pub has_replacement_char: bool,
    /// Offsets of unknown directives (`%FOO`) that were turned into comments: PyYAML ignores
    /// them, libyaml rejects them; they still require an explicit `---` after them.
    pub ignored_directives: Vec<usize>,
}

/// PyYAML `Reader.check_printable`, the one-BOM skip, the tab rule, surrogate escapes and
/// unknown directives.
pub(super) fn prepare(text: &str) -> Result<Prepared, String> {
    check_printable(text)?;
    // PyYAML skips one U+FEFF at the very start of the stream only.
    let original = text.strip_prefix('\u{feff}').unwrap_or(text);
    let candidates = surrogate_escapes(original);
    let mut scanned = original.to_string();
    for s in &candidates {
        rewrite_escape(&mut scanned, s.offset, 0xFFFD);
    }
    let mut ignored_directives = Vec::new();
    let quoted = loop {
        match scan_and_check_tabs(&scanned)? {
            Scan::Done(quoted) => break quoted,
            Scan::UnknownDirective(offset) => {
                scanned.replace_range(offset..offset + 1, "#");
                ignored_directives.push(offset);
            }
        }
    };
    // Only escapes inside double-quoted scalars are escapes; elsewhere they are plain text.
    let surrogates: Vec<Surrogate> = candidates
        .into_iter()
        .filter(|s| {
            quoted
                .iter()
                .any(|&(start, end)| start <= s.offset && s.offset < end)
        })
        .collect();
    let mut prepared = original.to_string();
    for s in &surrogates {
        rewrite_escape(&mut prepared, s.offset, 0xFFFD);
    }
    for &offset in &ignored_directives {
        prepared.replace_range(offset..offset + 1, "#");
    }
    static REPLACEMENT_ESCAPE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\\(u|U0000)fffd").unwrap());
    let has_replacement_char =
        original.contains('\u{fffd}') || REPLACEMENT_ESCAPE.is_match(original);
    Ok(Prepared {
        text: prepared,
        surrogates,
        has_replacement_char,
        ignored_directives,
    })
}

/// Reject characters PyYAML's reader refuses (NUL, C0/C1 controls except TAB, LF, CR and NEL,
/// DEL, U+FFFE/U+FFFF).
fn check_printable(text: &str) -> Result<(), String> {
    let printable = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
            || c >= '\u{10000}'
    };
    match text.char_indices().find(|&(_, c)| !printable(c)) {
        None => Ok(()),
        Some((pos, c)) => {
            let (line, column) = line_column(text, pos);
            Err(format!(
                "unacceptable character #x{:04x}: special characters are not allowed (line {line}, column {column})",
                c as u32
            ))
        }
    }
}

/// Every `\uXXXX` / `\UXXXXXXXX` escape of a surrogate code point, wherever it is. Whether it is
/// really an escape (inside a double-quoted scalar) is decided later from the tokens.
fn surrogate_escapes(text: &str) -> Vec<Surrogate> {
    static ESCAPE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\\+(?:u[dD][89a-fA-F][0-9a-fA-F]{2}|U0000[dD][89a-fA-F][0-9a-fA-F]{2})")
            .unwrap()
    });
    ESCAPE
        .find_iter(text)
        .filter_map(|m| {
            let s = m.as_str();
            let slashes = s.bytes().take_while(|&b| b == b'\\').count();
            // `\\u…` is an escaped backslash followed by plain text.
            (slashes % 2 == 1).then(|| {
                let digits = &s[slashes + 1..];
                Surrogate {
                    offset: m.start() + slashes - 1,
                    code_point: u32::from_str_radix(digits, 16).unwrap(),
                }
            })
        })
        .collect()
}

/// Replace the hex digits of the escape starting at `offset` (its backslash) by `code_point`,
/// keeping the length, so no token moves.
fn rewrite_escape(text: &mut String, offset: usize, code_point: u32) {
    let width = if text.as_bytes()[offset + 1] == b'u' {
        4
    } else {
        8
    };
    let digits = format!("{code_point:0width$X}");
    text.replace_range(offset + 2..offset + 2 + width, &digits);
}

enum Scan {
    /// The byte ranges of the double-quoted scalars.
    Done(Vec<(usize, usize)>),
    /// libyaml stopped at an unknown directive starting at this offset.
    UnknownDirective(usize),
}

/// Scan the whole stream (surfacing libyaml's scanner errors) and apply PyYAML's tab rule:
/// its scanner skips only spaces between tokens and ends a plain scalar at a tab, and a block
/// scalar header may be followed only by spaces and a comment.
fn scan_and_check_tabs(text: &str) -> Result<Scan, String> {
    let mut parser = Parser::new(text.as_bytes());
    let mut quoted = Vec::new();
    let mut previous_end = 0;
    loop {
        let token = match parser.next_token() {
            Ok(token) => token,
            Err(e) if e.problem == "found unknown directive name" => {
                return Ok(Scan::UnknownDirective(e.context_mark.index));
            }
            Err(e) => return Err(e.message),
        };
        let (start, end) = (token.start.index, token.end.index);
        if start > previous_end {
            check_gap(text, previous_end, start)?;
        }
        match token.kind {
            TokenKind::PlainScalar => {
                if let Some(tab) = text[start..end].find('\t') {
                    return Err(tab_error(text, start + tab));
                }
            }
            TokenKind::BlockScalar => {
                let header_end = text[start..end]
                    .find(['\n', '\r'])
                    .map_or(end, |i| start + i);
                check_gap(text, start, header_end)?;
            }
            TokenKind::DoubleQuotedScalar => quoted.push((start, end)),
            TokenKind::StreamEnd => return Ok(Scan::Done(quoted)),
            TokenKind::Other => {}
        }
        previous_end = previous_end.max(end);
    }
}

/// A tab in text between tokens is an error unless it is inside a `#` comment.
fn check_gap(text: &str, start: usize, end: usize) -> Result<(), String> {
    let mut in_comment = false;
    for (i, c) in text[start..end].char_indices() {
        match c {
            '#' => in_comment = true,
            '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => in_comment = false,
            '\t' if !in_comment => return Err(tab_error(text, start + i)),
            _ => {}
        }
    }
    Ok(())
}

fn tab_error(text: &str, pos: usize) -> String {
    let (line, column) = line_column(text, pos);
    format!(
        "found character '\\t' that cannot start any token (line {line}, column {column}); YAML indentation and separation must use spaces"
    )
}

/// 1-based line and column (in characters) of byte `pos`.
pub(super) fn line_column(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}
