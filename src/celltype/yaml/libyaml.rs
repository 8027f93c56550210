//! A safe wrapper over `unsafe-libyaml` used only as a YAML 1.1 scanner (tokens) and event
//! parser. Everything PyYAML does above the parser (composing, resolving, constructing) is ours.

use std::mem::MaybeUninit;
use std::ptr::addr_of_mut;

/// A position in the input: byte offset and 0-based line and column (in characters).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Mark {
    pub index: usize,
    pub line: usize,
    pub column: usize,
}

impl Mark {
    fn from_sys(mark: unsafe_libyaml::yaml_mark_t) -> Mark {
        Mark {
            index: mark.index as usize,
            line: mark.line as usize,
            column: mark.column as usize,
        }
    }
}

/// A token's kind, reduced to what the tab rule needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenKind {
    PlainScalar,
    DoubleQuotedScalar,
    /// A literal (`|`) or folded (`>`) scalar, header included.
    BlockScalar,
    StreamEnd,
    Other,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Token {
    pub kind: TokenKind,
    pub start: Mark,
    pub end: Mark,
}

/// A libyaml scanner or parser error.
#[derive(Debug)]
pub(super) struct Error {
    pub problem: String,
    /// Where the construct being scanned started (e.g. the `%` of a directive).
    pub context_mark: Mark,
    /// The full message: problem, position and context.
    pub message: String,
}

impl From<Error> for String {
    fn from(error: Error) -> String {
        error.message
    }
}

/// A parse event with owned data.
#[derive(Debug)]
pub(super) enum Event {
    StreamStart,
    StreamEnd,
    /// `implicit`: the document has no `---`.
    DocumentStart {
        implicit: bool,
    },
    DocumentEnd,
    Alias {
        anchor: String,
    },
    Scalar {
        anchor: Option<String>,
        tag: Option<String>,
        value: String,
        plain_implicit: bool,
    },
    SequenceStart {
        anchor: Option<String>,
        tag: Option<String>,
    },
    SequenceEnd,
    MappingStart {
        anchor: Option<String>,
        tag: Option<String>,
    },
    MappingEnd,
}

/// A libyaml parser over a borrowed UTF-8 input. Boxed because libyaml keeps a pointer to it.
pub(super) struct Parser<'a> {
    raw: Box<MaybeUninit<unsafe_libyaml::yaml_parser_t>>,
    _input: &'a [u8],
}

impl<'a> Parser<'a> {
    pub fn new(input: &'a [u8]) -> Parser<'a> {
        let mut raw = Box::new(MaybeUninit::<unsafe_libyaml::yaml_parser_t>::uninit());
        // SAFETY: `raw` is a stable heap allocation that outlives the parser (freed in Drop
        // after `yaml_parser_delete`), and `input` outlives `self` by the lifetime.
        unsafe {
            let parser = raw.as_mut_ptr();
            if unsafe_libyaml::yaml_parser_initialize(parser).fail {
                panic!("libyaml could not allocate a parser");
            }
            // UTF-8 given explicitly: libyaml would otherwise drop a leading BOM itself, and the
            // caller has already removed the one PyYAML drops.
            unsafe_libyaml::yaml_parser_set_encoding(parser, unsafe_libyaml::YAML_UTF8_ENCODING);
            unsafe_libyaml::yaml_parser_set_input_string(
                parser,
                input.as_ptr(),
                input.len() as u64,
            );
        }
        Parser { raw, _input: input }
    }

    fn ptr(&mut self) -> *mut unsafe_libyaml::yaml_parser_t {
        self.raw.as_mut_ptr()
    }

    /// The next token (scanner level).
    pub fn next_token(&mut self) -> Result<Token, Error> {
        let mut token = MaybeUninit::<unsafe_libyaml::yaml_token_t>::uninit();
        // SAFETY: the parser is initialized; a token filled by `yaml_parser_scan` is deleted
        // once its fields are copied.
        unsafe {
            if unsafe_libyaml::yaml_parser_scan(self.ptr(), token.as_mut_ptr()).fail {
                return Err(self.error());
            }
            let token = &mut *token.as_mut_ptr();
            let kind = match token.type_ {
                unsafe_libyaml::YAML_SCALAR_TOKEN => match token.data.scalar.style {
                    unsafe_libyaml::YAML_PLAIN_SCALAR_STYLE => TokenKind::PlainScalar,
                    unsafe_libyaml::YAML_DOUBLE_QUOTED_SCALAR_STYLE => {
                        TokenKind::DoubleQuotedScalar
                    }
                    unsafe_libyaml::YAML_LITERAL_SCALAR_STYLE
                    | unsafe_libyaml::YAML_FOLDED_SCALAR_STYLE => TokenKind::BlockScalar,
                    _ => TokenKind::Other,
                },
                unsafe_libyaml::YAML_STREAM_END_TOKEN => TokenKind::StreamEnd,
                _ => TokenKind::Other,
            };
            let result = Token {
                kind,
                start: Mark::from_sys(token.start_mark),
                end: Mark::from_sys(token.end_mark),
            };
            unsafe_libyaml::yaml_token_delete(token);
            Ok(result)
        }
    }

    /// The next event with its start and end marks.
    pub fn next_event(&mut self) -> Result<(Event, Mark, Mark), Error> {
        let mut event = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
        // SAFETY: as in `next_token`; strings are copied out before `yaml_event_delete`.
        unsafe {
            if unsafe_libyaml::yaml_parser_parse(self.ptr(), event.as_mut_ptr()).fail {
                return Err(self.error());
            }
            let event = &mut *event.as_mut_ptr();
            let (start, end) = (
                Mark::from_sys(event.start_mark),
                Mark::from_sys(event.end_mark),
            );
            let owned = match event.type_ {
                unsafe_libyaml::YAML_STREAM_START_EVENT => Event::StreamStart,
                unsafe_libyaml::YAML_STREAM_END_EVENT => Event::StreamEnd,
                unsafe_libyaml::YAML_DOCUMENT_START_EVENT => Event::DocumentStart {
                    implicit: event.data.document_start.implicit,
                },
                unsafe_libyaml::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
                unsafe_libyaml::YAML_ALIAS_EVENT => Event::Alias {
                    anchor: c_string(event.data.alias.anchor).unwrap_or_default(),
                },
                unsafe_libyaml::YAML_SCALAR_EVENT => {
                    let s = event.data.scalar;
                    let bytes = std::slice::from_raw_parts(s.value, s.length as usize);
                    Event::Scalar {
                        anchor: c_string(s.anchor),
                        tag: c_string(s.tag),
                        value: String::from_utf8_lossy(bytes).into_owned(),
                        plain_implicit: s.plain_implicit,
                    }
                }
                unsafe_libyaml::YAML_SEQUENCE_START_EVENT => Event::SequenceStart {
                    anchor: c_string(event.data.sequence_start.anchor),
                    tag: c_string(event.data.sequence_start.tag),
                },
                unsafe_libyaml::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
                unsafe_libyaml::YAML_MAPPING_START_EVENT => Event::MappingStart {
                    anchor: c_string(event.data.mapping_start.anchor),
                    tag: c_string(event.data.mapping_start.tag),
                },
                _ => Event::MappingEnd,
            };
            unsafe_libyaml::yaml_event_delete(event);
            Ok((owned, start, end))
        }
    }

    /// libyaml's error, worded like PyYAML's: problem, where, and the context.
    fn error(&mut self) -> Error {
        // SAFETY: reads plain fields of the initialized parser; the strings are static.
        unsafe {
            let p = &*self.ptr();
            let problem =
                c_string(p.problem as *mut u8).unwrap_or_else(|| "unknown YAML error".into());
            let mark = Mark::from_sys(p.problem_mark);
            let message = match c_string(p.context as *mut u8) {
                Some(context) => format!(
                    "{context}: {problem} (line {}, column {})",
                    mark.line + 1,
                    mark.column + 1
                ),
                None => format!(
                    "{problem} (line {}, column {})",
                    mark.line + 1,
                    mark.column + 1
                ),
            };
            Error {
                problem,
                context_mark: Mark::from_sys(p.context_mark),
                message,
            }
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: the parser was initialized in `new` and is deleted exactly once.
        unsafe { unsafe_libyaml::yaml_parser_delete(addr_of_mut!(*self.raw.as_mut_ptr())) }
    }
}

/// A NUL-terminated libyaml string, or None for a null pointer.
unsafe fn c_string(ptr: *mut u8) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: libyaml strings are NUL-terminated and valid for the event's lifetime.
    let cstr = unsafe { std::ffi::CStr::from_ptr(ptr as *const std::ffi::c_char) };
    Some(String::from_utf8_lossy(cstr.to_bytes()).into_owned())
}
