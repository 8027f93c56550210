//! Validation of the `python` cell type: accept exactly what CPython 3.11 `ast.parse` accepts.
//!
//! `ruff_python_parser` (pinned `=0.0.10`, target 3.11) does the parsing. Its parse errors and
//! "unsupported syntax" errors (3.12+ syntax) reject. On top of it come the CPython 3.11 rules
//! ruff does not have, measured in `deps-parity.md` §1: NUL bytes and a leading BOM, the
//! tokenizer limits (200 nested brackets, 100 indentation levels), the AST depth limit, and the
//! 3.11-only f-string rules (format specs nested deeper than 2, `f'{*a}'`, `f'{x!r }'`).
//!
//! The parser and the AST visitor recurse, so a 10^6-deep input would overflow a normal stack and
//! abort the process. Validation therefore runs on a thread with a large *reserved* stack (only
//! the pages touched are committed), and the AST is dropped on that thread too.

use ruff_python_ast::token::{TokenKind, Tokens};
use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{Expr, InterpolatedStringElement, Mod, PythonVersion, Stmt};
use ruff_python_parser::{Mode, ParseOptions, parse_unchecked};
use ruff_text_size::{Ranged, TextSize};

/// CPython's tokenizer `MAXLEVEL`: 200 nested brackets pass, 201 fail.
const MAX_BRACKET_DEPTH: usize = 200;
/// CPython's tokenizer `MAXINDENT`: 99 indentation levels pass, 100 fail.
const MAX_INDENT_LEVELS: usize = 100;
/// CPython 3.11's AST construction depth (3 × the default recursion limit of 1000, minus the
/// caller's frames): deeper statement/expression trees fail with "maximum recursion depth
/// exceeded during ast construction". Measured: 2985 levels pass.
const MAX_AST_DEPTH: usize = 2985;
/// CPython 3.11: `f'{x:{y:{z}}}'` fails with "f-string: expressions nested too deeply".
const MAX_FORMAT_SPEC_NESTING: usize = 2;
/// Stack reserved for the parse thread; enough for 10^6-deep expressions.
const BIG_STACK_BYTES: usize = 1 << 30;

/// Ok if `text` is a valid Python 3.11 module; otherwise why not (with line and column).
pub fn validate(text: &str) -> Result<(), String> {
    if let Some(pos) = text.find('\0') {
        return Err(at(
            text,
            pos,
            "source code string cannot contain null bytes",
        ));
    }
    if text.starts_with('\u{feff}') {
        return Err(at(
            text,
            0,
            "invalid non-printable character U+FEFF (a byte order mark; remove it)",
        ));
    }
    on_big_stack("python validator", || validate_on_big_stack(text))?
}

/// Run `work` on a thread with a 1 GiB reserved stack (only touched pages are committed), for
/// parsers that recurse as deep as their input nests. Also used by the yaml validator.
pub(crate) fn on_big_stack<T: Send>(
    what: &str,
    work: impl FnOnce() -> T + Send,
) -> Result<T, String> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(what.into())
            .stack_size(BIG_STACK_BYTES)
            .spawn_scoped(scope, work)
            .map_err(|e| format!("cannot start a thread for the {what}: {e}"))?
            .join()
            .map_err(|_| format!("the {what} panicked on this input"))
    })
}

fn validate_on_big_stack(text: &str) -> Result<(), String> {
    let options = ParseOptions::from(Mode::Module).with_target_version(PythonVersion::PY311);
    let parsed = parse_unchecked(text, options);
    if let Some(err) = parsed.errors().first() {
        return Err(at(
            text,
            err.location.start().to_usize(),
            &err.error.to_string(),
        ));
    }
    if let Some(err) = parsed.unsupported_syntax_errors().first() {
        return Err(at(text, err.range.start().to_usize(), &err.to_string()));
    }
    check_tokens(text, parsed.tokens())?;
    let mut checker = AstChecker::default();
    if let Mod::Module(module) = parsed.syntax() {
        checker.visit_body(&module.body);
    }
    match checker.error {
        Some((pos, message)) => Err(at(text, pos.to_usize(), message)),
        None => Ok(()),
    }
}

/// The tokenizer limits, and whitespace after an f-string conversion (`f'{x!r }'`), which 3.11
/// rejects and the PEP 701 tokenizer allows.
fn check_tokens(text: &str, tokens: &Tokens) -> Result<(), String> {
    let mut depth = 0usize;
    // 3.11 parses each f-string expression with a fresh tokenizer, so bracket depth restarts.
    let mut outer_depths = Vec::new();
    let mut indent = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        match token.kind() {
            TokenKind::Lpar | TokenKind::Lsqb | TokenKind::Lbrace => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    return Err(at(
                        text,
                        token.start().to_usize(),
                        "too many nested parentheses",
                    ));
                }
            }
            TokenKind::Rpar | TokenKind::Rsqb | TokenKind::Rbrace => {
                depth = depth.saturating_sub(1)
            }
            TokenKind::FStringStart => outer_depths.push(std::mem::take(&mut depth)),
            TokenKind::FStringEnd => depth = outer_depths.pop().unwrap_or(0),
            TokenKind::Indent => {
                indent += 1;
                if indent >= MAX_INDENT_LEVELS {
                    return Err(at(
                        text,
                        token.start().to_usize(),
                        "too many levels of indentation",
                    ));
                }
            }
            TokenKind::Dedent => indent = indent.saturating_sub(1),
            TokenKind::Exclamation => {
                if let (Some(name), Some(next)) = (tokens.get(i + 1), tokens.get(i + 2))
                    && name.kind() == TokenKind::Name
                    && next.start() != name.end()
                {
                    return Err(at(
                        text,
                        name.end().to_usize(),
                        "f-string: expecting '}' right after the conversion character (Python 3.11)",
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Walks the AST for the limits CPython 3.11 enforces while building it. Stops descending at
/// the first error, which also bounds its own recursion.
#[derive(Default)]
struct AstChecker {
    depth: usize,
    /// Nesting of interpolations through format specs, within the innermost f-string.
    spec_nesting: usize,
    error: Option<(TextSize, &'static str)>,
}

impl AstChecker {
    /// Enter one AST level; false (and the error recorded) when that is too deep.
    fn enter(&mut self, node: &impl Ranged) -> bool {
        if self.error.is_some() {
            return false;
        }
        self.depth += 1;
        if self.depth > MAX_AST_DEPTH {
            self.error = Some((
                node.start(),
                "too complex: maximum recursion depth exceeded during ast construction",
            ));
            return false;
        }
        true
    }
}

impl<'a> Visitor<'a> for AstChecker {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        if self.enter(stmt) {
            visitor::walk_stmt(self, stmt);
        }
        self.depth -= 1;
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        if self.enter(expr) {
            // An f-string inside an expression starts its own format-spec nesting count.
            let outer = std::mem::take(&mut self.spec_nesting);
            visitor::walk_expr(self, expr);
            self.spec_nesting = outer;
        }
        self.depth -= 1;
    }

    fn visit_interpolated_string_element(&mut self, element: &'a InterpolatedStringElement) {
        let InterpolatedStringElement::Interpolation(interpolation) = element else {
            return;
        };
        if self.error.is_some() {
            return;
        }
        if self.spec_nesting >= MAX_FORMAT_SPEC_NESTING {
            self.error = Some((
                interpolation.start(),
                "f-string: expressions nested too deeply",
            ));
            return;
        }
        if matches!(*interpolation.expression, Expr::Starred(_)) {
            self.error = Some((
                interpolation.expression.start(),
                "f-string: can't use starred expression here",
            ));
            return;
        }
        self.visit_expr(&interpolation.expression);
        if let Some(spec) = &interpolation.format_spec {
            self.spec_nesting += 1;
            for inner in &spec.elements {
                self.visit_interpolated_string_element(inner);
            }
            self.spec_nesting -= 1;
        }
    }
}

/// `message` prefixed with the 1-based line and column (in characters) of byte `pos`.
fn at(text: &str, pos: usize, message: &str) -> String {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("invalid Python 3.11 (line {line}, column {column}): {message}")
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_what_ast_parse_accepts() {
        for ok in [
            "",
            "x = 1",
            "def f(a, a): return",
            "return 1",
            "f'{x:{y}}'",
            "match x:\n case 1: pass",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn rejects_with_position() {
        let err = validate("x = 1\ndef f(:").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        for bad in [
            "\0",
            "\u{feff}x=1",
            "%timeit x",
            "type X = int",
            "f'{x:{y:{z}}}'",
            "f'{*a}'",
            "f'{x!r }'",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits() {
        let parens = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        assert!(validate(&parens(200)).is_ok());
        assert!(validate(&parens(201)).is_err());
        let nested_ifs = |n: usize| {
            (0..n)
                .map(|i| format!("{}if x:\n", " ".repeat(i)))
                .collect::<String>()
                + &" ".repeat(n)
                + "pass"
        };
        assert!(validate(&nested_ifs(99)).is_ok());
        assert!(validate(&nested_ifs(100)).is_err());
        assert!(validate(&format!("{}1", "-".repeat(1_000_000))).is_err());
        assert!(validate(&format!("x{}", "+x".repeat(1_000_000))).is_err());
    }
}
