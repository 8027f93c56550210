//! The `ipython` cell type: IPython syntax transformed to Python as IPython 9's
//! `TransformerManager().transform_cell` does on Python 3.11, then validated as Python.
//!
//! The steps are IPython's (`IPython/core/inputtransformer2.py`): cleanup (leading blank lines,
//! common indentation, `>>>` and `In [1]:` prompts), `%%cell` magics, then token transforms
//! found by tokenizing the cell as Python (`tokenize`): `x = %magic`, `x = !cmd`, `%magic`,
//! `!cmd`, `!!cmd`, `?obj`, `obj?`, `obj??`, `,f a b`, `;f a`, `/f a`, one at a time until
//! nothing changes. Hand-written because the output must be byte-identical to IPython's.

mod tokenize;

use std::sync::LazyLock;

use regex::Regex;
use tokenize::{Kind, Token, tokens_by_line};

/// IPython `TRANSFORM_LOOP_LIMIT`.
const TRANSFORM_LOOP_LIMIT: usize = 500;

/// The Python source IPython would run for `text` (`transform_cell`).
pub fn transform(text: &str) -> Result<String, String> {
    let mut cell = text.to_string();
    if !cell.ends_with('\n') {
        cell.push('\n');
    }
    let mut lines = splitlines(&cell);
    lines = leading_empty_lines(lines);
    lines = splitlines(&dedent(&lines.concat()));
    lines = classic_prompt(lines);
    lines = ipython_prompt(lines);
    lines = cell_magic(lines);
    for _ in 0..TRANSFORM_LOOP_LIMIT {
        match one_token_transform(&lines)? {
            Some(changed) => lines = changed,
            None => return Ok(lines.concat()),
        }
    }
    Err(format!(
        "IPython input transformation still changing after {TRANSFORM_LOOP_LIMIT} iterations"
    ))
}

/// Ok if `text` is IPython whose Python translation is valid Python 3.11.
pub fn validate(text: &str) -> Result<(), String> {
    super::python::validate(&transform(text)?)
}

/// Python's `str.isspace`.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// `str.splitlines(keepends=True)`.
fn splitlines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\r' if chars.peek().is_some_and(|&(_, n)| n == '\n') => {
                chars.next();
                i + 2
            }
            '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => i + c.len_utf8(),
            _ => continue,
        };
        lines.push(text[start..end].to_string());
        start = end;
    }
    if start < text.len() {
        lines.push(text[start..].to_string());
    }
    lines
}

/// IPython `leading_empty_lines`.
fn leading_empty_lines(lines: Vec<String>) -> Vec<String> {
    match lines
        .iter()
        .position(|l| !l.is_empty() && !l.chars().all(py_space))
    {
        Some(first) => lines[first..].to_vec(),
        None => lines,
    }
}

/// `textwrap.dedent` (3.11): whitespace-only lines emptied, then the common margin removed.
fn dedent(text: &str) -> String {
    let segments: Vec<String> = text
        .split('\n')
        .map(|s| {
            if !s.is_empty() && s.chars().all(|c| c == ' ' || c == '\t') {
                String::new()
            } else {
                s.to_string()
            }
        })
        .collect();
    let mut margin: Option<&str> = None;
    for segment in &segments {
        let indent_len = segment.len() - segment.trim_start_matches([' ', '\t']).len();
        if indent_len == segment.len() {
            continue; // no character after the indentation on this line
        }
        let indent = &segment[..indent_len];
        margin = Some(match margin {
            None => indent,
            Some(m) if indent.starts_with(m) => m,
            Some(m) if m.starts_with(indent) => indent,
            Some(m) => {
                &m[..m
                    .bytes()
                    .zip(indent.bytes())
                    .take_while(|(a, b)| a == b)
                    .count()]
            }
        });
    }
    let margin = margin.unwrap_or("");
    segments
        .iter()
        .map(|s| s.strip_prefix(margin).unwrap_or(s))
        .collect::<Vec<_>>()
        .join("\n")
}

/// IPython 9's `classic_prompt` (doctest mode): `>>> ` and `... ` prompts are stripped when a
/// `>>>` line appears outside a triple-quoted string, and the stripped segments dedented.
fn classic_prompt(lines: Vec<String>) -> Vec<String> {
    static INITIAL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*>>>").unwrap());
    static PS1: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*>>>[ \t]?").unwrap());
    static PS2: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*\.\.\.[ \t]?").unwrap());
    let in_triple = triple_quote_mask(&lines, &PS1, &PS2, &INITIAL);
    if !lines
        .iter()
        .zip(&in_triple)
        .any(|(l, &t)| !t && INITIAL.is_match(l))
    {
        return lines;
    }
    let mut stripped = Vec::with_capacity(lines.len());
    let mut out = Vec::with_capacity(lines.len());
    for (line, &triple) in lines.iter().zip(&in_triple) {
        let new = if triple {
            line.clone()
        } else if PS1.is_match(line) {
            PS1.replace(line, "").into_owned()
        } else {
            PS2.replace(line, "").into_owned()
        };
        stripped.push(new != *line);
        out.push(new);
    }
    let mut result = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        let j = (i..out.len())
            .find(|&k| in_triple[k] != in_triple[i])
            .unwrap_or(out.len());
        if !in_triple[i] && stripped[i..j].iter().any(|&s| s) {
            result.extend(splitlines(&dedent(&out[i..j].concat())));
        } else {
            result.extend_from_slice(&out[i..j]);
        }
        i = j;
    }
    result
}

/// IPython `PromptStripper._triple_quote_mask`: true for lines inside a triple-quoted string
/// whose prompts must be kept.
fn triple_quote_mask(lines: &[String], ps1: &Regex, ps2: &Regex, initial: &Regex) -> Vec<bool> {
    static STRING_PREFIX: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)^[rubf]*\n?\z").unwrap());
    let mut mask = Vec::with_capacity(lines.len());
    let mut in_triple: Option<&str> = None;
    let mut preserve = false;
    let mut seen_prompt = false;
    for line in lines {
        mask.push(in_triple.is_some() && preserve);
        for (start, quote) in triple_quotes(line) {
            match in_triple {
                None => {
                    in_triple = Some(quote);
                    let before = &line[..start];
                    let without_ps1 = ps1.replace(before, "");
                    let without_prompts = ps2.replace(&without_ps1, "");
                    let prompted_code = without_prompts != before && seen_prompt;
                    preserve = !prompted_code
                        && STRING_PREFIX.is_match(without_prompts.trim_matches(py_space));
                    *mask.last_mut().expect("pushed above") = preserve;
                }
                Some(open) if open == quote => {
                    in_triple = None;
                    preserve = false;
                }
                Some(_) => {}
            }
        }
        seen_prompt = seen_prompt || initial.is_match(line);
    }
    mask
}

/// Non-overlapping `"""` / `'''` not preceded by a backslash (`(?<!\\)("""|''')`).
fn triple_quotes(line: &str) -> Vec<(usize, &'static str)> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 3 <= bytes.len() {
        let quote = match &bytes[i..i + 3] {
            b"\"\"\"" => "\"\"\"",
            b"'''" => "'''",
            _ => {
                i += 1;
                continue;
            }
        };
        if i > 0 && bytes[i - 1] == b'\\' {
            i += 1;
            continue;
        }
        found.push((i, quote));
        i += 3;
    }
    found
}

/// IPython `ipython_prompt`: `In [1]: ` and `...: ` prompts, when the first line has one or
/// the second line has one.
fn ipython_prompt(lines: Vec<String>) -> Vec<String> {
    static PROMPT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:(?:(?:\[nav\]|\[ins\])? )?In \[\d+\]: |\s*\.{3,}: ?)").unwrap()
    });
    let has_prompt = lines.first().is_some_and(|l| PROMPT.is_match(l))
        || lines.get(1).is_some_and(|l| PROMPT.is_match(l));
    if !has_prompt {
        return lines;
    }
    lines
        .iter()
        .map(|l| PROMPT.replace(l, "").into_owned())
        .collect()
}

/// IPython `cell_magic`: a first line `%%name args` turns the whole cell into one call.
fn cell_magic(lines: Vec<String>) -> Vec<String> {
    static HELP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^%%\w+\?").unwrap());
    let Some(first) = lines.first() else {
        return lines;
    };
    if !first.starts_with("%%") || HELP.is_match(first) {
        return lines;
    }
    let (name, args) = partition(first[2..].trim_end_matches(py_space), ' ');
    let body = lines[1..].concat();
    vec![format!(
        "get_ipython().run_cell_magic({}, {}, {})\n",
        py_repr(name),
        py_repr(args),
        py_repr(&body)
    )]
}

/// `str.partition(sep)` without the separator.
fn partition(s: &str, sep: char) -> (&str, &str) {
    s.split_once(sep).unwrap_or((s, ""))
}

/// The token transforms IPython looks for; lower priority numbers win at the same position.
#[derive(Debug, Clone, Copy)]
enum Transform {
    MagicAssign,
    SystemAssign,
    EscapedCommand,
    /// With the position of the `?`.
    HelpEnd((usize, usize)),
}

impl Transform {
    fn priority(self) -> u8 {
        match self {
            Transform::HelpEnd(_) => 5,
            _ => 10,
        }
    }
}

/// IPython `do_one_token_transform`: apply the earliest transform found; None if none applies.
fn one_token_transform(lines: &[String]) -> Result<Option<Vec<String>>, String> {
    let groups = tokens_by_line(lines)?;
    let mut candidates: Vec<((usize, usize), Transform)> = [
        find_magic_assign(&groups)?.map(|start| (start, Transform::MagicAssign)),
        find_system_assign(&groups, lines).map(|start| (start, Transform::SystemAssign)),
        find_escaped_command(&groups).map(|start| (start, Transform::EscapedCommand)),
        find_help_end(&groups).map(|(start, q)| (start, Transform::HelpEnd(q))),
    ]
    .into_iter()
    .flatten()
    .collect();
    // A stable sort, as Python's `sorted`: ties keep the order above.
    candidates.sort_by_key(|&(start, t)| (start, t.priority()));
    for (start, transform) in candidates {
        let result = match transform {
            Transform::MagicAssign => Some(magic_assign(lines, start)),
            Transform::SystemAssign => Some(system_assign(lines, start)),
            Transform::EscapedCommand => escaped_command(lines, start),
            Transform::HelpEnd(q) => help_end(lines, start, q),
        };
        // None is IPython's SyntaxError from a transform: try the next candidate.
        if let Some(changed) = result {
            return Ok(Some(changed));
        }
    }
    Ok(None)
}

/// Index of the first `=` outside brackets in a logical line (IPython `_find_assign_op`).
fn find_assign_op(line: &[Token]) -> Option<usize> {
    let mut depth = 0usize;
    for (i, token) in line.iter().enumerate() {
        match token.string.as_str() {
            "=" if depth == 0 => return Some(i),
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// `x = %magic args`: the position of the `%`.
fn find_magic_assign(groups: &[Vec<Token>]) -> Result<Option<(usize, usize)>, String> {
    for line in groups {
        let Some(ix) = find_assign_op(line) else {
            continue;
        };
        if line.len() >= ix + 2 && line[ix + 1].string == "%" {
            // IPython indexes `line[ix + 2]` here unguarded: an IndexError fails the cell.
            let next = line
                .get(ix + 2)
                .ok_or("IndexError while looking for a magic assignment")?;
            if next.kind == Kind::Name {
                return Ok(Some(line[ix + 1].start));
            }
        }
    }
    Ok(None)
}

/// `x = !cmd` (Python < 3.12 tokenizes `!` as an ERRORTOKEN): the position of the `!`.
fn find_system_assign(groups: &[Vec<Token>], lines: &[String]) -> Option<(usize, usize)> {
    for line in groups {
        let Some(ix) = find_assign_op(line) else {
            continue;
        };
        let physical = lines.get(line[ix].start.0).map_or("", String::as_str);
        if physical.trim_matches(py_space).starts_with('=')
            || line.len() < ix + 2
            || line[ix + 1].kind != Kind::ErrorToken
        {
            continue;
        }
        for token in line[ix + 1..]
            .iter()
            .take_while(|t| t.kind == Kind::ErrorToken)
        {
            if token.string == "!" {
                return Some(token.start);
            }
            if !token.string.chars().all(py_space) || token.string.is_empty() {
                break;
            }
        }
    }
    None
}

/// A line starting with one of `! ? % , ; /`: its position.
fn find_escaped_command(groups: &[Vec<Token>]) -> Option<(usize, usize)> {
    groups.iter().find_map(|line| {
        let first = line
            .iter()
            .find(|t| !matches!(t.kind, Kind::Indent | Kind::Dedent))?;
        matches!(first.string.as_str(), "!" | "?" | "%" | "," | ";" | "/").then_some(first.start)
    })
}

/// A logical line ending in `?`: the position of its first token and of the `?`.
fn find_help_end(groups: &[Vec<Token>]) -> Option<((usize, usize), (usize, usize))> {
    groups.iter().find_map(|line| {
        if line.len() <= 2 || line[line.len() - 2].string != "?" {
            return None;
        }
        let first = line
            .iter()
            .find(|t| !matches!(t.kind, Kind::Indent | Kind::Dedent))?;
        Some((first.start, line[line.len() - 2].start))
    })
}

/// The last line of a backslash-continued line (may be `lines.len()`, as in IPython).
fn end_of_continued_line(lines: &[String], start: usize) -> usize {
    let mut end = start;
    while lines[end].ends_with("\\\n") {
        end += 1;
        if end >= lines.len() {
            break;
        }
    }
    end
}

/// The continued line from `start` joined into one, backslashes removed.
fn assemble_continued_line(lines: &[String], (line, col): (usize, usize), end: usize) -> String {
    let mut parts = vec![&lines[line][col..]];
    parts.extend(
        lines[(line + 1).min(lines.len())..(end + 1).min(lines.len())]
            .iter()
            .map(String::as_str),
    );
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let trimmed = p.trim_end_matches(py_space);
            if i < last {
                trimmed
                    .char_indices()
                    .last()
                    .map_or("", |(j, _)| &trimmed[..j])
            } else {
                trimmed
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replace `lines[start..=end]` by one line.
fn splice(lines: &[String], start: usize, end: usize, new_line: String) -> Vec<String> {
    let mut out = lines[..start].to_vec();
    out.push(new_line);
    out.extend_from_slice(&lines[(end + 1).min(lines.len())..]);
    out
}

fn magic_assign(lines: &[String], start: (usize, usize)) -> Vec<String> {
    let lhs = &lines[start.0][..start.1];
    let end = end_of_continued_line(lines, start.0);
    let rhs = assemble_continued_line(lines, start, end);
    let (name, args) = partition(&rhs[1..], ' ');
    let call = format!(
        "get_ipython().run_line_magic({}, {})",
        py_repr(name),
        py_repr(args)
    );
    splice(lines, start.0, end, format!("{lhs}{call}\n"))
}

fn system_assign(lines: &[String], start: (usize, usize)) -> Vec<String> {
    let lhs = &lines[start.0][..start.1];
    let end = end_of_continued_line(lines, start.0);
    let rhs = assemble_continued_line(lines, start, end);
    let call = format!("get_ipython().getoutput({})", py_repr(&rhs[1..]));
    splice(lines, start.0, end, format!("{lhs}{call}\n"))
}

/// `!cmd`, `!!cmd`, `?obj`, `??obj`, `%magic`, `,f a b`, `;f a b`, `/f a b`; None where
/// IPython raises SyntaxError (`/` without a name).
fn escaped_command(lines: &[String], start: (usize, usize)) -> Option<Vec<String>> {
    let indent = &lines[start.0][..start.1];
    let end = end_of_continued_line(lines, start.0);
    let line = assemble_continued_line(lines, start, end);
    let (escape, content) = match line.get(..2) {
        Some(two @ ("!!" | "??")) => (two, &line[2..]),
        _ => line.split_at(1),
    };
    let (name, args) = partition(content, ' ');
    let call = match escape {
        "!" => format!("get_ipython().system({})", py_repr(content)),
        "!!" => format!("get_ipython().getoutput({})", py_repr(content)),
        "?" | "??" if content.is_empty() => "get_ipython().show_usage()".to_string(),
        "?" | "??" => help_call(content, escape),
        "%" => format!(
            "get_ipython().run_line_magic({}, {})",
            py_repr(name),
            py_repr(args)
        ),
        "," => format!(
            "{name}(\"{}\")",
            args.split(py_space)
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join("\", \"")
        ),
        ";" => format!("{name}(\"{args}\")"),
        _ if name.is_empty() => return None,
        _ => format!(
            "{name}({})",
            args.split(py_space)
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Some(splice(lines, start.0, end, format!("{indent}{call}\n")))
}

/// IPython `_make_help_call`.
fn help_call(target: &str, escape: &str) -> String {
    let method = if escape == "??" {
        "pinfo2"
    } else if target.contains('*') {
        "psearch"
    } else {
        "pinfo"
    };
    format!(
        "get_ipython().run_line_magic({}, {})",
        py_repr(method),
        py_repr(target)
    )
}

/// `obj?` / `obj.attr??` at the end of a logical line; None (IPython: SyntaxError) if what
/// precedes the `?` is not a name path.
fn help_end(lines: &[String], start: (usize, usize), q: (usize, usize)) -> Option<Vec<String>> {
    static HELP_END: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(%{0,2}[\w*&&\D][\w*]*(?:\.[\w*&&\D][\w*]*|\[-?[0-9]+\])*)(\?\??)\n?\z")
            .unwrap()
    });
    let piece = lines[start.0..=q.0].concat();
    let (indent, content) = piece.split_at(start.1);
    let caps = HELP_END.captures(content)?;
    let call = help_call(&caps[1], &caps[2]);
    Some(splice(lines, start.0, q.0, format!("{indent}{call}\n")))
}

/// Python `repr()` of a str.
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !py_printable(c) => {
                let code = c as u32;
                match code {
                    0..=0xff => out.push_str(&format!("\\x{code:02x}")),
                    0x100..=0xffff => out.push_str(&format!("\\u{code:04x}")),
                    _ => out.push_str(&format!("\\U{code:08x}")),
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable` for one character: not a control, format, private-use or
/// separator character (space excepted). Unassigned code points, which Python also escapes,
/// are not known here.
fn py_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let code = c as u32;
    let format = matches!(
        code,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x180e | 0x200b..=0x200f | 0x202a..=0x202e
            | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x13438
            | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f
    );
    let private_use = matches!(code, 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd);
    let noncharacter = matches!(code, 0xfffe | 0xffff);
    !(c.is_control() || py_space(c) || format || private_use || noncharacter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics_shell_and_help() {
        assert_eq!(
            transform("%time x").unwrap(),
            "get_ipython().run_line_magic('time', 'x')\n"
        );
        assert_eq!(
            transform("x = !ls").unwrap(),
            "x = get_ipython().getoutput('ls')\n"
        );
        assert_eq!(
            transform("obj?").unwrap(),
            "get_ipython().run_line_magic('pinfo', 'obj')\n"
        );
        assert_eq!(
            transform("%%bash\necho 'hi'").unwrap(),
            "get_ipython().run_cell_magic('bash', '', \"echo 'hi'\\n\")\n"
        );
        assert_eq!(transform("x = 1").unwrap(), "x = 1\n");
    }

    #[test]
    fn repr_like_python() {
        assert_eq!(py_repr("a'b"), "\"a'b\"");
        assert_eq!(py_repr("a'\"b"), "'a\\'\"b'");
        assert_eq!(py_repr("é\u{0}\u{a0}\u{1F600}"), "'é\\x00\\xa0\u{1F600}'");
    }
}
