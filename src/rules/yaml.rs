//! A small YAML tree that remembers where every node starts, so rule-loading
//! errors can point at `file:line:col`. Built from `libyaml-safer`'s event
//! parser (a safe port of libyaml, as lenient as the YAML readers Falco users
//! rely on, and it reports positions) rather than a serde model.

use std::collections::HashMap;

use libyaml_safer::{EventData, Mark, Parser, ScalarStyle};

/// One YAML node and the byte offset in the file where it starts.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    /// Byte offset of the node's first character in the file.
    pub pos: usize,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub struct Scalar {
    pub value: String,
    pub style: Style,
}

/// How a scalar was written; decides whether `true` is a boolean and how a
/// condition's text maps back onto the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    Block,
}

impl Node {
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.value.as_str())
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// `true`/`false` in any of YAML 1.2's spellings, for plain scalars.
    pub fn as_bool(&self) -> Option<bool> {
        let s = self.as_scalar()?;
        if s.style != Style::Plain {
            return None;
        }
        match s.value.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    /// A plain `~`/`null` or an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s) if s.style == Style::Plain
            && matches!(s.value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// Looks up a key of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A short name of the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(_) if self.is_null() => "null",
            NodeKind::Scalar(_) => "a scalar",
            NodeKind::Seq(_) => "a sequence",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error with the byte offset where the parser stopped.
#[derive(Debug, Clone)]
pub struct YamlError {
    pub pos: usize,
    pub message: String,
}

/// Parses every document of `text`; null documents are dropped.
pub fn parse(text: &str) -> Result<Vec<Node>, YamlError> {
    let lines = LineStarts::new(text);
    let mut input = text.as_bytes();
    let mut parser = Parser::new();
    parser.set_input_string(&mut input);
    let mut stack: Vec<Frame> = Vec::new();
    let mut docs = Vec::new();
    let mut anchors: HashMap<String, Node> = HashMap::new();
    loop {
        let ev = parser.parse().map_err(|e| YamlError {
            pos: e.problem_mark().map_or(0, |m| lines.byte_offset(text, &m)),
            message: e.problem().to_string(),
        })?;
        let pos = lines.byte_offset(text, &ev.start_mark);
        let (node, anchor) = match ev.data {
            EventData::StreamEnd => break,
            EventData::Scalar {
                value,
                style,
                anchor,
                ..
            } => {
                let style = match style {
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                    _ => Style::Plain,
                };
                (
                    Node {
                        kind: NodeKind::Scalar(Scalar { value, style }),
                        pos,
                    },
                    anchor,
                )
            }
            EventData::SequenceStart { anchor, .. } => {
                stack.push(Frame {
                    pos,
                    anchor,
                    map: false,
                    items: Vec::new(),
                });
                continue;
            }
            EventData::MappingStart { anchor, .. } => {
                stack.push(Frame {
                    pos,
                    anchor,
                    map: true,
                    items: Vec::new(),
                });
                continue;
            }
            EventData::SequenceEnd | EventData::MappingEnd => {
                let Some(frame) = stack.pop() else { continue };
                let kind = if frame.map {
                    let mut entries = Vec::with_capacity(frame.items.len() / 2);
                    let mut it = frame.items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        entries.push((k, v));
                    }
                    NodeKind::Map(entries)
                } else {
                    NodeKind::Seq(frame.items)
                };
                (
                    Node {
                        kind,
                        pos: frame.pos,
                    },
                    frame.anchor,
                )
            }
            EventData::Alias { anchor } => match anchors.get(&anchor) {
                Some(node) => (node.clone(), None),
                None => {
                    return Err(YamlError {
                        pos,
                        message: format!("unknown alias `*{anchor}`"),
                    });
                }
            },
            _ => continue,
        };
        if let Some(a) = anchor {
            anchors.insert(a, node.clone());
        }
        match stack.last_mut() {
            Some(frame) => frame.items.push(node),
            None => docs.push(node),
        }
    }
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Byte offsets of the start of each line, to turn libyaml's (line,
/// column-in-characters) marks into byte offsets.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineStarts(starts)
    }

    fn byte_offset(&self, text: &str, mark: &Mark) -> usize {
        let Some(&start) = self.0.get(mark.line as usize) else {
            return text.len();
        };
        let rest = &text[start..];
        rest.char_indices()
            .nth(mark.column as usize)
            .map(|(i, _)| start + i)
            .unwrap_or(start + rest.len())
    }
}

struct Frame {
    pos: usize,
    anchor: Option<String>,
    map: bool,
    items: Vec<Node>,
}

/// Maps byte offsets inside a scalar's *value* back to byte offsets in the
/// file. YAML folding, block indentation and quoting change the text, so the
/// value is aligned with the source greedily: each value character is found at
/// or after the previous match, skipping what YAML removed.
pub fn value_offset_to_file(text: &str, scalar_pos: usize, value: &str, offset: usize) -> usize {
    let src = text.as_bytes();
    let val = value.as_bytes();
    let mut s = scalar_pos.min(src.len());
    // Skip a block indicator line (`>`, `|`, `>-`, ...) and an opening quote.
    if let Some(&c) = src.get(s) {
        if c == b'>' || c == b'|' {
            while s < src.len() && src[s] != b'\n' {
                s += 1;
            }
        } else if c == b'"' || c == b'\'' {
            s += 1;
        }
    }
    let mut v = 0;
    while v < offset.min(val.len()) {
        let want = val[v];
        let limit = (s + 256).min(src.len());
        match src[s..limit].iter().position(|&b| b == want) {
            Some(skip) if want.is_ascii_whitespace() || skip <= 16 => s += skip + 1,
            Some(skip)
                if src[s..s + skip]
                    .iter()
                    .all(|b| b.is_ascii_whitespace() || *b == b'\\') =>
            {
                s += skip + 1
            }
            // A folded newline: the value has a space where the file has a
            // line break and indentation.
            _ if want == b' ' => {
                while s < src.len() && src[s].is_ascii_whitespace() {
                    s += 1;
                }
            }
            _ => s += 1,
        }
        v += 1;
    }
    // Land on the next non-blank character if the value has one there.
    if val.get(v).is_some_and(|c| !c.is_ascii_whitespace()) {
        while s < src.len() && src[s].is_ascii_whitespace() {
            s += 1;
        }
    }
    s.min(src.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_kinds() {
        let text = "- rule: a\n  enabled: false\n  items: [x, 'y z']\n";
        let docs = parse(text).unwrap();
        let item = &docs[0].as_seq().unwrap()[0];
        assert_eq!(item.get("rule").unwrap().as_str(), Some("a"));
        assert_eq!(item.get("enabled").unwrap().as_bool(), Some(false));
        let items = item.get("items").unwrap().as_seq().unwrap();
        assert_eq!(items[1].as_str(), Some("y z"));
        assert_eq!(&text[items[1].pos..items[1].pos + 5], "'y z'");
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("- a: [1, 2\n- b: c\n").unwrap_err();
        assert!(err.pos > 0);
    }

    #[test]
    fn folded_condition_maps_back() {
        let text = "- macro: m\n  condition: >\n    ka.verb = get and\n    ka.nope exists\n";
        let docs = parse(text).unwrap();
        let cond = docs[0].as_seq().unwrap()[0].get("condition").unwrap();
        let value = cond.as_str().unwrap();
        let at = value.find("ka.nope").unwrap();
        let off = value_offset_to_file(text, cond.pos, value, at);
        assert!(text[off..].starts_with("ka.nope"), "{:?}", &text[off..]);
    }

    #[test]
    fn quoted_condition_maps_back() {
        let text = "- macro: m\n  condition: \"ka.verb = \\\"get\\\" and bad\"\n";
        let docs = parse(text).unwrap();
        let cond = docs[0].as_seq().unwrap()[0].get("condition").unwrap();
        let value = cond.as_str().unwrap();
        let at = value.find("bad").unwrap();
        let off = value_offset_to_file(text, cond.pos, value, at);
        assert!(text[off..].starts_with("bad"), "{:?}", &text[off..]);
    }
}
#[cfg(test)]
mod lenient_tests {
    #[test]
    fn flow_sequence_closed_at_key_indent() {
        let text = "    - list: a\n      items: [\n        \"x\",\n        \"y\"\n      ]\n    \n    - list: b\n      items:\n        [\n          c,\n        ]\n";
        let docs = super::parse(text).unwrap();
        assert_eq!(docs[0].as_seq().unwrap().len(), 2);
    }
}
