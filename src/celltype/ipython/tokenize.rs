//! Python 3.11's pure-Python `tokenize` module, as far as IPython's input transformer looks at
//! it: IPython finds `%magic`, `!cmd` and `obj?` by tokenizing the cell as Python, and on
//! Python 3.11 `!` and `?` come out as ERRORTOKENs (3.12 tokenizes differently). Positions
//! are (0-based line, byte column).

use std::sync::LazyLock;

use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Name,
    Number,
    String,
    Op,
    ErrorToken,
    Newline,
    Nl,
    Comment,
    Indent,
    Dedent,
    EndMarker,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub kind: Kind,
    pub string: String,
    /// (0-based line, byte column) of the first character.
    pub start: (usize, usize),
}

/// Tokens grouped into logical lines (IPython `make_tokens_by_line`): a group ends at a
/// NEWLINE, or at an NL outside brackets. Tokenizing stops quietly at an unterminated string
/// or statement (IPython catches `TokenError`); an inconsistent dedent is an error, as in
/// IPython.
pub(super) fn tokens_by_line(lines: &[String]) -> Result<Vec<Vec<Token>>, String> {
    let mut groups: Vec<Vec<Token>> = vec![Vec::new()];
    let mut depth = 0usize;
    let mut tokenizer = Tokenizer {
        lines,
        tokens: Vec::new(),
    };
    let result = tokenizer.run();
    for token in tokenizer.tokens {
        let kind = token.kind;
        let closes = matches!(kind, Kind::Newline) || (kind == Kind::Nl && depth == 0);
        if kind == Kind::Op && matches!(token.string.as_str(), "(" | "[" | "{") {
            depth += 1;
        } else if kind == Kind::Op && matches!(token.string.as_str(), ")" | "]" | "}") {
            depth = depth.saturating_sub(1);
        }
        groups.last_mut().expect("never empty").push(token);
        if closes {
            groups.push(Vec::new());
        }
    }
    match result {
        Err(Stop::Indentation(message)) => return Err(message),
        Err(Stop::Eof) | Ok(()) => {}
    }
    if groups.last().is_some_and(Vec::is_empty) {
        groups.pop();
    }
    Ok(groups)
}

enum Stop {
    /// `TokenError` (EOF in a multi-line string or statement): IPython keeps what it has.
    Eof,
    /// `IndentationError`: IPython's transform fails.
    Indentation(String),
}

struct Tokenizer<'a> {
    lines: &'a [String],
    tokens: Vec<Token>,
}

const TABSIZE: usize = 8;

/// What `tokenize` does when a string continues past its line.
struct OpenString {
    /// Triple-quoted (ends at the closing triple quote) or a backslash-continued single quote.
    triple: bool,
    quote: char,
    /// The string's text so far.
    text: String,
}

impl Tokenizer<'_> {
    fn push(&mut self, kind: Kind, string: &str, start: (usize, usize)) {
        self.tokens.push(Token {
            kind,
            string: string.to_string(),
            start,
        });
    }

    /// The DEDENTs for the open indentation levels and the ENDMARKER.
    fn finish(&mut self, lnum: usize, levels: usize) {
        for _ in 1..levels {
            self.push(Kind::Dedent, "", (lnum, 0));
        }
        self.push(Kind::EndMarker, "", (lnum, 0));
    }

    /// `tokenize._tokenize` (3.11), without the ENCODING token.
    fn run(&mut self) -> Result<(), Stop> {
        let lines = self.lines;
        let mut depth = 0usize;
        let mut continued = false;
        let mut indents = vec![0usize];
        let mut open: Option<(OpenString, (usize, usize))> = None;
        let mut lnum = 0usize;
        loop {
            let line: &str = lines.get(lnum).map_or("", String::as_str);
            let mut pos = 0;
            if let Some((string, start)) = &mut open {
                if line.is_empty() {
                    return Err(Stop::Eof);
                }
                match string_end(line, 0, string.quote, string.triple) {
                    Some(end) => {
                        pos = end;
                        let text = format!("{}{}", string.text, &line[..end]);
                        let start = *start;
                        self.push(Kind::String, &text, start);
                        open = None;
                    }
                    None if !string.triple
                        && !line.ends_with("\\\n")
                        && !line.ends_with("\\\r\n") =>
                    {
                        let text = format!("{}{line}", string.text);
                        let start = *start;
                        self.push(Kind::ErrorToken, &text, start);
                        open = None;
                        lnum += 1;
                        continue;
                    }
                    None => {
                        string.text.push_str(line);
                        lnum += 1;
                        continue;
                    }
                }
            } else if depth == 0 && !continued {
                if line.is_empty() {
                    self.finish(lnum, indents.len());
                    return Ok(());
                }
                let mut column = 0;
                for c in line.chars() {
                    match c {
                        ' ' => column += 1,
                        '\t' => column = (column / TABSIZE + 1) * TABSIZE,
                        '\x0c' => column = 0,
                        _ => break,
                    }
                    pos += 1;
                }
                if pos == line.len() {
                    self.finish(lnum, indents.len());
                    return Ok(());
                }
                let rest = &line[pos..];
                if rest.starts_with(['#', '\r', '\n']) {
                    if rest.starts_with('#') {
                        let comment = rest.trim_end_matches(['\r', '\n']);
                        self.push(Kind::Comment, comment, (lnum, pos));
                        pos += comment.len();
                    }
                    self.push(Kind::Nl, &line[pos..], (lnum, pos));
                    lnum += 1;
                    continue;
                }
                if column > *indents.last().expect("never empty") {
                    indents.push(column);
                    self.push(Kind::Indent, &line[..pos], (lnum, 0));
                }
                while column < *indents.last().expect("never empty") {
                    if !indents.contains(&column) {
                        return Err(Stop::Indentation(format!(
                            "IndentationError: unindent does not match any outer indentation level (line {})",
                            lnum + 1
                        )));
                    }
                    indents.pop();
                    self.push(Kind::Dedent, "", (lnum, pos));
                }
            } else {
                if line.is_empty() {
                    return Err(Stop::Eof);
                }
                continued = false;
            }

            while pos < line.len() {
                let Some(caps) = PSEUDO_TOKEN.captures(&line[pos..]) else {
                    let c = line[pos..].chars().next().expect("pos < len");
                    self.push(
                        Kind::ErrorToken,
                        &line[pos..pos + c.len_utf8()],
                        (lnum, pos),
                    );
                    pos += c.len_utf8();
                    continue;
                };
                let token_match = caps.get(1).expect("group 1 always takes part");
                let (start, end) = (pos + token_match.start(), pos + token_match.end());
                pos = end;
                if start == end {
                    continue;
                }
                let token = &line[start..end];
                let initial = token.chars().next().expect("non-empty");
                if initial.is_ascii_digit() || (initial == '.' && token != "." && token != "...") {
                    self.push(Kind::Number, token, (lnum, start));
                } else if initial == '\r' || initial == '\n' {
                    self.push(
                        if depth > 0 { Kind::Nl } else { Kind::Newline },
                        token,
                        (lnum, start),
                    );
                } else if initial == '#' {
                    self.push(Kind::Comment, token, (lnum, start));
                } else if let Some(quote) = triple_quote(token) {
                    match string_end(line, pos, quote, true) {
                        Some(end) => {
                            pos = end;
                            self.push(Kind::String, &line[start..end], (lnum, start));
                        }
                        None => {
                            open = Some((
                                OpenString {
                                    triple: true,
                                    quote,
                                    text: line[start..].to_string(),
                                },
                                (lnum, start),
                            ));
                            break;
                        }
                    }
                } else if let Some(quote) = single_quote(token) {
                    if token.ends_with('\n') {
                        open = Some((
                            OpenString {
                                triple: false,
                                quote,
                                text: line[start..].to_string(),
                            },
                            (lnum, start),
                        ));
                        break;
                    }
                    self.push(Kind::String, token, (lnum, start));
                } else if initial.is_alphabetic() || initial == '_' {
                    self.push(Kind::Name, token, (lnum, start));
                } else if initial == '\\' {
                    continued = true;
                } else {
                    if "([{".contains(initial) {
                        depth += 1;
                    } else if ")]}".contains(initial) {
                        depth = depth.saturating_sub(1);
                    }
                    self.push(Kind::Op, token, (lnum, start));
                }
            }
            lnum += 1;
        }
    }
}

/// tokenize's string prefixes: any order and case of b/r/u/f combinations Python allows.
const PREFIX: &str = "(?:[bB][rR]?|[rR][bBfF]?|[uU]|[fF][rR]?)?";

/// `tokenize.PseudoToken`, anchored at the slice start; group 1 is the token.
static PSEUDO_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    let digits = "[0-9](?:_?[0-9])*";
    let exponent = format!("[eE][-+]?{digits}");
    let pointfloat = format!(r"(?:{digits}\.(?:{digits})?|\.{digits})(?:{exponent})?");
    let expfloat = format!("{digits}{exponent}");
    let floatnumber = format!("(?:{pointfloat}|{expfloat})");
    let imagnumber = format!("(?:{digits}[jJ]|{floatnumber}[jJ])");
    let intnumber = "(?:0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+|(?:0(?:_?0)*|[1-9](?:_?[0-9])*))";
    let number = format!("(?:{imagnumber}|{floatnumber}|{intnumber})");
    let mut operators = vec![
        "!=", "%", "%=", "&", "&=", "(", ")", "*", "**", "**=", "*=", "+", "+=", ",", "-", "-=",
        "->", ".", "...", "/", "//", "//=", "/=", ":", ":=", ";", "<", "<<", "<<=", "<=", "=",
        "==", ">", ">=", ">>", ">>=", "@", "@=", "[", "]", "^", "^=", "{", "|", "|=", "}", "~",
    ];
    // tokenize sorts them in reverse, so a longer operator is tried before its prefix.
    operators.sort_unstable_by(|a, b| b.cmp(a));
    let special = operators
        .iter()
        .map(|o| regex::escape(o))
        .collect::<Vec<_>>()
        .join("|");
    let funny = format!(r"(?:\r?\n|{special})");
    let triple = format!(r#"(?:{PREFIX}'''|{PREFIX}""")"#);
    let cont_str = format!(
        r#"(?:{PREFIX}'[^\n'\\]*(?:\\.[^\n'\\]*)*(?:'|\\\r?\n)|{PREFIX}"[^\n"\\]*(?:\\.[^\n"\\]*)*(?:"|\\\r?\n))"#
    );
    let pseudo_extras = format!(r"(?:\\\r?\n|\z|#[^\r\n]*|{triple})");
    Regex::new(&format!(
        r"^[ \x0c\t]*({pseudo_extras}|{number}|{funny}|{cont_str}|\w+)"
    ))
    .expect("valid regex")
});

/// The quote character of a token that opens a triple-quoted string (`rb'''`).
fn triple_quote(token: &str) -> Option<char> {
    let body = token.trim_start_matches(|c: char| "bBrRuUfF".contains(c));
    (token.len() - body.len() <= 2 && (body == "'''" || body == "\"\"\""))
        .then(|| body.chars().next().expect("non-empty"))
}

/// The quote character of a token that opens a single-quoted string.
fn single_quote(token: &str) -> Option<char> {
    let body = token.trim_start_matches(|c: char| "bBrRuUfF".contains(c));
    let quote = body.chars().next()?;
    (token.len() - body.len() <= 2 && (quote == '\'' || quote == '"')).then_some(quote)
}

/// Where the string closes in `line` from `from` (tokenize's `endpats`): a backslash escapes
/// the next character except a line break; the closing quote is one quote or three.
fn string_end(line: &str, from: usize, quote: char, triple: bool) -> Option<usize> {
    let mut chars = line[from..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some((_, next)) if next != '\n' => continue,
                _ => return None,
            }
        }
        if c == quote {
            let rest = &line[from + i..];
            let closing = if triple { 3 } else { 1 };
            if rest.chars().take(closing).filter(|&q| q == quote).count() == closing {
                return Some(from + i + closing);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<(Kind, String)> {
        let lines: Vec<String> = source.split_inclusive('\n').map(str::to_string).collect();
        tokens_by_line(&lines)
            .unwrap()
            .into_iter()
            .flatten()
            .map(|t| (t.kind, t.string))
            .collect()
    }

    #[test]
    fn ipython_escapes_are_error_tokens() {
        let tokens = kinds("x = !ls\n");
        assert_eq!(tokens[2], (Kind::ErrorToken, " ".to_string()));
        assert_eq!(tokens[3], (Kind::ErrorToken, "!".to_string()));
        assert_eq!(kinds("a //= 1\n")[1], (Kind::Op, "//=".to_string()));
        assert_eq!(
            kinds("s = '''a\nb''' + rb'c'\n")[2],
            (Kind::String, "'''a\nb'''".to_string())
        );
    }
}
