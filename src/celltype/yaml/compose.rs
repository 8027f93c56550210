//! PyYAML's composer and YAML 1.1 resolver over libyaml events: one document at most, anchors
//! and aliases (an alias shares the node, as in PyYAML), implicit tags for plain scalars.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::libyaml::{Event, Mark, Parser};
use super::reader::{Prepared, line_column};

pub(super) const STR: &str = "tag:yaml.org,2002:str";
pub(super) const SEQ: &str = "tag:yaml.org,2002:seq";
pub(super) const MAP: &str = "tag:yaml.org,2002:map";
pub(super) const MERGE: &str = "tag:yaml.org,2002:merge";
pub(super) const VALUE: &str = "tag:yaml.org,2002:value";

/// PyYAML fails with RecursionError beyond about this many nested nodes (measured 491–493,
/// depending on the node kinds; it is Python's recursion limit, not a YAML rule).
const MAX_DEPTH: usize = 492;

pub(super) type NodeId = usize;

/// Lone surrogates in a scalar (`"\ud83d"`), which a Rust `String` cannot hold.
#[derive(Debug)]
pub(super) enum Surrogates {
    None,
    /// The value's code points.
    Known(Vec<u32>),
    /// Surrogate escapes and genuine U+FFFD in one document: which is which is not known.
    Ambiguous,
}

#[derive(Debug)]
pub(super) enum NodeKind {
    Scalar {
        value: String,
        surrogates: Surrogates,
    },
    Sequence(Vec<NodeId>),
    Mapping(Vec<(NodeId, NodeId)>),
}

#[derive(Debug)]
pub(super) struct Node {
    pub tag: String,
    pub kind: NodeKind,
    /// 1-based line and column, for error messages.
    pub line: usize,
    pub column: usize,
}

/// The node graph of the single document; `root` is None for an empty stream.
pub(super) struct Document {
    pub nodes: Vec<Node>,
    pub root: Option<NodeId>,
}

/// Compose the events of the prepared text into the document graph (PyYAML `get_single_node`).
pub(super) fn compose(prepared: &Prepared) -> Result<Document, String> {
    let text = prepared.text.as_str();
    let mut composer = Composer {
        prepared,
        text,
        parser: Parser::new(text.as_bytes()),
        nodes: Vec::new(),
        anchors: HashMap::new(),
    };
    composer.next()?; // stream start
    let (event, start, _) = composer.next()?;
    let root = match event {
        Event::StreamEnd => {
            composer.check_ignored_directives(0, usize::MAX, true, start)?;
            None
        }
        Event::DocumentStart { implicit } => {
            composer.check_ignored_directives(0, start.index, implicit, start)?;
            let first = composer.next()?;
            let root = composer.node(first, 1)?;
            let (_, _, document_end) = composer.next()?;
            match composer.next()? {
                (Event::StreamEnd, stream_end, _) => {
                    composer.check_ignored_directives(
                        document_end.index,
                        usize::MAX,
                        true,
                        stream_end,
                    )?;
                }
                (_, mark, _) => {
                    return Err(format!(
                        "expected a single document in the stream, but found another document (line {}, column {})",
                        mark.line + 1,
                        mark.column + 1
                    ));
                }
            }
            Some(root)
        }
        other => {
            return Err(format!(
                "unexpected YAML event {other:?} at the start of the stream"
            ));
        }
    };
    Ok(Document {
        nodes: composer.nodes,
        root,
    })
}

struct Composer<'a> {
    prepared: &'a Prepared,
    text: &'a str,
    parser: Parser<'a>,
    nodes: Vec<Node>,
    anchors: HashMap<String, NodeId>,
}

impl Composer<'_> {
    fn next(&mut self) -> Result<(Event, Mark, Mark), String> {
        Ok(self.parser.next_event()?)
    }

    /// Directives (even ignored ones) between `from` and `to` must be followed by an explicit
    /// `---` (PyYAML: "expected '<document start>'").
    fn check_ignored_directives(
        &self,
        from: usize,
        to: usize,
        implicit: bool,
        mark: Mark,
    ) -> Result<(), String> {
        let directive_before = self
            .prepared
            .ignored_directives
            .iter()
            .any(|&d| from <= d && d < to);
        if directive_before && implicit {
            return Err(self.at(mark, "expected '<document start>' after a directive"));
        }
        Ok(())
    }

    /// Compose the node that starts with `first`, at nesting `depth`.
    fn node(&mut self, first: (Event, Mark, Mark), depth: usize) -> Result<NodeId, String> {
        let (event, start, end) = first;
        if depth > MAX_DEPTH {
            return Err(self.at(
                start,
                &format!("nesting deeper than {MAX_DEPTH} levels (PyYAML's recursion limit)"),
            ));
        }
        let (anchor, tag, kind) =
            match event {
                Event::Alias { anchor } => {
                    return self.anchors.get(&anchor).copied().ok_or_else(|| {
                        self.at(start, &format!("found undefined alias '{anchor}'"))
                    });
                }
                Event::Scalar {
                    anchor,
                    tag,
                    value,
                    plain_implicit,
                } => {
                    let tag = match tag.as_deref() {
                        None | Some("!") => {
                            resolve_scalar(&value, plain_implicit || tag.is_some()).to_string()
                        }
                        Some(explicit) => explicit.to_string(),
                    };
                    let surrogates = self.surrogate_code_points(&value, start, end);
                    (anchor, tag, NodeKind::Scalar { value, surrogates })
                }
                Event::SequenceStart { anchor, tag } => (
                    anchor,
                    collection_tag(tag, SEQ),
                    NodeKind::Sequence(Vec::new()),
                ),
                Event::MappingStart { anchor, tag } => (
                    anchor,
                    collection_tag(tag, MAP),
                    NodeKind::Mapping(Vec::new()),
                ),
                other => return Err(self.at(start, &format!("unexpected YAML event {other:?}"))),
            };
        let id = self.nodes.len();
        let (line, column) = (start.line + 1, start.column + 1);
        self.nodes.push(Node {
            tag,
            kind,
            line,
            column,
        });
        if let Some(anchor) = anchor
            && self.anchors.insert(anchor.clone(), id).is_some()
        {
            return Err(self.at(start, &format!("found duplicate anchor '{anchor}'")));
        }
        match self.nodes[id].kind {
            NodeKind::Scalar { .. } => {}
            NodeKind::Sequence(_) => loop {
                let next = self.next()?;
                if matches!(next.0, Event::SequenceEnd) {
                    break;
                }
                let item = self.node(next, depth + 1)?;
                if let NodeKind::Sequence(items) = &mut self.nodes[id].kind {
                    items.push(item);
                }
            },
            NodeKind::Mapping(_) => loop {
                let next = self.next()?;
                if matches!(next.0, Event::MappingEnd) {
                    break;
                }
                let key = self.node(next, depth + 1)?;
                let value_event = self.next()?;
                let value = self.node(value_event, depth + 1)?;
                if let NodeKind::Mapping(pairs) = &mut self.nodes[id].kind {
                    pairs.push((key, value));
                }
            },
        }
        Ok(id)
    }

    /// The code points of a scalar whose source held surrogate escapes (rewritten to U+FFFD
    /// for libyaml): each U+FFFD that came from an escape gets its surrogate back.
    fn surrogate_code_points(&self, value: &str, start: Mark, end: Mark) -> Surrogates {
        let inside: Vec<u32> = self
            .prepared
            .surrogates
            .iter()
            .filter(|s| start.index <= s.offset && s.offset < end.index)
            .map(|s| s.code_point)
            .collect();
        if inside.is_empty() {
            return Surrogates::None;
        }
        let replacements = value.matches('\u{fffd}').count();
        if replacements != inside.len() || self.prepared.has_replacement_char {
            return Surrogates::Ambiguous;
        }
        let mut originals = inside.into_iter();
        Surrogates::Known(
            value
                .chars()
                .map(|c| {
                    if c == '\u{fffd}' {
                        originals.next().unwrap_or(0xfffd)
                    } else {
                        c as u32
                    }
                })
                .collect(),
        )
    }

    fn at(&self, mark: Mark, message: &str) -> String {
        let (line, column) = line_column(self.text, mark.index.min(self.text.len()));
        format!("{message} (line {line}, column {column})")
    }
}

fn collection_tag(tag: Option<String>, default: &str) -> String {
    match tag {
        Some(tag) if tag != "!" => tag,
        _ => default.to_string(),
    }
}

/// PyYAML's YAML 1.1 implicit resolvers, in registration order (first match wins).
static RESOLVERS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    [
        ("tag:yaml.org,2002:bool", r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$"),
        (
            "tag:yaml.org,2002:float",
            r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        ),
        (
            "tag:yaml.org,2002:int",
            r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
        ),
        (MERGE, r"^(?:<<)$"),
        ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$"),
        (
            "tag:yaml.org,2002:timestamp",
            r"^(?:[0-9]{4}-[0-9][0-9]-[0-9][0-9]|[0-9]{4}-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$",
        ),
        (VALUE, r"^(?:=)$"),
        ("tag:yaml.org,2002:yaml", r"^(?:!|&|\*)$"),
    ]
    .into_iter()
    .map(|(tag, re)| (tag, Regex::new(re).unwrap()))
    .collect()
});

/// The tag PyYAML's resolver gives a scalar; `implicit` is true for a plain scalar without a
/// tag or any scalar tagged `!`.
fn resolve_scalar(value: &str, implicit: bool) -> &'static str {
    if !implicit {
        return STR;
    }
    RESOLVERS
        .iter()
        .find(|(_, re)| py_match(re, value))
        .map_or(STR, |(tag, _)| tag)
}

/// Python `re.match` with a pattern ending in `$`: `$` also matches before a final newline.
fn py_match(re: &Regex, value: &str) -> bool {
    re.is_match(value) || value.strip_suffix('\n').is_some_and(|v| re.is_match(v))
}
