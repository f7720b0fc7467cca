//! A YAML document as a tree of nodes that each know their byte span in the file.
//!
//! Built from saphyr-parser's event stream rather than a serde deserializer so that every field,
//! key and list item keeps its position for later checks (duplicate ports, unknown dependencies),
//! duplicate keys are reported instead of silently overwritten, and anchors/aliases and `<<`
//! merge keys behave as users of docker compose files expect.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::diagnostic::{Diagnostic, Diagnostics, SourceFile};

/// One YAML value with its span.
#[derive(Debug, Clone)]
pub struct Node {
    /// Byte range in the source.
    pub span: Range<usize>,
    /// The value.
    pub kind: NodeKind,
}

/// The shape of a YAML value.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A scalar: its text, and whether it was written plain (unquoted), where `null`, `true`
    /// and numbers mean what they look like.
    Scalar {
        /// The text after YAML unescaping.
        value: String,
        /// Unquoted and not a block scalar.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping in document order. Keys are kept as nodes for their spans.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar's text, if this is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// True for `~`, `null`, `Null`, `NULL` and the empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What kind of value this is, for "expected a mapping, found a list" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "null",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// Parse one YAML document. Syntax errors, duplicate keys and unsupported constructs are
/// recorded in `diags`; the tree is returned only when the document is well formed.
pub fn parse(source: &Arc<SourceFile>, diags: &mut Diagnostics) -> Option<Node> {
    let text = &source.text;
    let offsets = CharOffsets::new(text);
    let mut builder = Builder {
        source,
        offsets: &offsets,
        stack: Vec::new(),
        anchors: HashMap::new(),
        documents: 0,
        root: None,
        diags,
    };
    for event in Parser::new_from_str(text) {
        match event {
            Ok((event, span)) => {
                if !builder.on_event(event, span) {
                    return None;
                }
            }
            Err(e) => {
                let at = offsets.byte(e.marker().index());
                builder.diags.push(
                    Diagnostic::error(
                        "yaml::syntax",
                        format!("invalid YAML: {}", e.info()),
                        source,
                        at..at,
                    )
                    .with_help("check indentation and that every `key: value` pair has a space after the colon"),
                );
                return None;
            }
        }
    }
    builder.root
}

/// saphyr counts in characters; miette and we count in bytes.
struct CharOffsets {
    /// Byte offset of every char index, present only for non-ASCII text.
    table: Option<Vec<usize>>,
    len: usize,
}

impl CharOffsets {
    fn new(text: &str) -> Self {
        let table = (!text.is_ascii()).then(|| {
            text.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .collect()
        });
        Self {
            table,
            len: text.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        match &self.table {
            None => char_index.min(self.len),
            Some(t) => t.get(char_index).copied().unwrap_or(self.len),
        }
    }
}

enum Frame {
    Seq {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

struct Builder<'a> {
    source: &'a Arc<SourceFile>,
    offsets: &'a CharOffsets,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    documents: usize,
    root: Option<Node>,
    diags: &'a mut Diagnostics,
}

impl Builder<'_> {
    fn span(&self, span: Span) -> Range<usize> {
        self.offsets.byte(span.start.index())..self.offsets.byte(span.end.index())
    }

    /// Returns false to stop parsing.
    fn on_event(&mut self, event: Event<'_>, span: Span) -> bool {
        let range = self.span(span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    self.diags.push(
                        Diagnostic::error(
                            "yaml::multiple-documents",
                            "an ecosystem file holds exactly one YAML document",
                            self.source,
                            range,
                        )
                        .with_help("remove the `---` separator and everything after it, or move it to its own file"),
                    );
                    return false;
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                if let Some(tag) = tag {
                    // Only the core-schema tags that do not change our reading are accepted.
                    if !(tag.handle == "!!"
                        && matches!(
                            tag.suffix.as_str(),
                            "str" | "int" | "bool" | "null" | "float"
                        ))
                        && (tag.handle != "tag:yaml.org,2002:")
                    {
                        self.diags.push(
                            Diagnostic::error(
                                "yaml::tag",
                                format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix),
                                self.source,
                                range.clone(),
                            )
                            .with_help("write the value without a tag"),
                        );
                    }
                }
                let plain = matches!(style, ScalarStyle::Plain);
                let node = Node {
                    span: range,
                    kind: NodeKind::Scalar {
                        value: value.into_owned(),
                        plain,
                    },
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(target) => {
                    let mut node = target.clone();
                    // Errors in aliased content point at the anchor; the alias itself is where
                    // the value is used, which matters for scalars.
                    if matches!(node.kind, NodeKind::Scalar { .. }) {
                        node.span = range;
                    }
                    self.push_value(node);
                }
                None => {
                    self.diags.push(Diagnostic::error(
                        "yaml::alias",
                        "alias refers to an unknown anchor",
                        self.source,
                        range,
                    ));
                    return false;
                }
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                start: range.start,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                start: range.start,
                anchor,
                entries: Vec::new(),
                pending_key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return true;
                };
                let (node, anchor) = match frame {
                    Frame::Seq {
                        start,
                        anchor,
                        items,
                    } => {
                        let end = items.last().map_or(range.end, |n| n.span.end).max(start);
                        (
                            Node {
                                span: start..end,
                                kind: NodeKind::Seq(items),
                            },
                            anchor,
                        )
                    }
                    Frame::Map {
                        start,
                        anchor,
                        entries,
                        ..
                    } => {
                        let end = entries
                            .last()
                            .map_or(range.end, |(_, v)| v.span.end)
                            .max(start);
                        (
                            Node {
                                span: start..end,
                                kind: NodeKind::Map(entries),
                            },
                            anchor,
                        )
                    }
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        true
    }

    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => {
                match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(key) => {
                        if let (Some(k), false) = (key.as_scalar(), is_merge_key(&key))
                            && let Some((first, _)) =
                                entries.iter().find(|(e, _)| e.as_scalar() == Some(k))
                        {
                            self.diags.push(
                                Diagnostic::error(
                                    "yaml::duplicate-key",
                                    format!("duplicate key `{k}`"),
                                    self.source,
                                    key.span.clone(),
                                )
                                .with_label("defined again here")
                                .with_secondary(first.span.clone(), "first defined here")
                                .with_help("a key may appear once in a mapping: merge the two or remove one"),
                            );
                        }
                        entries.push((key, node));
                    }
                }
            }
        }
    }
}

/// `<<: *defaults` merges the keys of another mapping (YAML 1.1, used widely in compose files).
pub fn is_merge_key(key: &Node) -> bool {
    matches!(&key.kind, NodeKind::Scalar { value, plain: true } if value == "<<")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> (Option<Node>, Diagnostics) {
        let src = SourceFile::new("t.yaml", text);
        let mut diags = Diagnostics::default();
        (parse(&src, &mut diags), diags)
    }

    #[test]
    fn spans_are_bytes() {
        let (node, diags) = parse_str("a: é\nb: [1, 2]\n");
        assert!(diags.is_empty());
        let NodeKind::Map(entries) = node.unwrap().kind else {
            panic!("not a map")
        };
        assert_eq!(entries[1].0.span, 6..7);
        let NodeKind::Seq(items) = &entries[1].1.kind else {
            panic!("not a seq")
        };
        assert_eq!(items[1].span, 13..14);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let (_, diags) = parse_str("a: 1\na: 2\n");
        assert!(diags.has_errors());
    }

    #[test]
    fn aliases_copy_values() {
        let (node, diags) = parse_str("x: &p 8000\ny: *p\n");
        assert!(diags.is_empty());
        let NodeKind::Map(entries) = node.unwrap().kind else {
            panic!()
        };
        assert_eq!(entries[1].1.as_scalar(), Some("8000"));
    }
}
