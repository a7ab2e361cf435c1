//! Where loaded text came from: a [`Loc`] in a rules file, and condition
//! [`Text`] that remembers which YAML scalar each appended piece came from,
//! so a diagnostic found while compiling points at the right file and
//! column.

use std::sync::Arc;

use super::super::yaml::{self, Node};
use crate::diag::{Diagnostic, SourceFile};

/// A place in a rules file.
#[derive(Debug, Clone)]
pub struct Loc {
    pub file: Arc<SourceFile>,
    pub pos: usize,
}

impl Loc {
    pub(super) fn of(file: &Arc<SourceFile>, node: &Node) -> Loc {
        Loc {
            file: file.clone(),
            pos: node.pos,
        }
    }

    pub fn diag(&self, d: Diagnostic, len: usize) -> Diagnostic {
        d.at(&self.file, self.pos, self.pos + len)
    }
}

/// Text assembled from one or more YAML scalars (appends concatenate), with
/// enough to map an offset in the text back to the file.
#[derive(Debug, Clone)]
pub struct Text {
    pub text: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
struct Piece {
    start: usize,
    loc: Loc,
    value: Arc<str>,
}

impl Text {
    pub(super) fn from_node(file: &Arc<SourceFile>, node: &Node) -> Option<Text> {
        let value = node.as_str()?.to_string();
        Some(Text {
            pieces: vec![Piece {
                start: 0,
                loc: Loc::of(file, node),
                value: value.clone().into(),
            }],
            text: value,
        })
    }

    /// No text, placed at `node` (a sequence rule without `condition`).
    pub(super) fn empty_at(file: &Arc<SourceFile>, node: &Node) -> Text {
        Text {
            pieces: vec![Piece {
                start: 0,
                loc: Loc::of(file, node),
                value: "".into(),
            }],
            text: String::new(),
        }
    }

    pub(super) fn append(&mut self, other: Text) {
        self.text.push(' ');
        let base = self.text.len();
        self.text.push_str(&other.text);
        self.pieces.extend(other.pieces.into_iter().map(|mut p| {
            p.start += base;
            p
        }));
    }

    /// The file and byte offset of a byte offset in the text.
    pub fn locate(&self, offset: usize) -> (Arc<SourceFile>, usize) {
        let piece = self
            .pieces
            .iter()
            .rev()
            .find(|p| p.start <= offset)
            .unwrap_or(&self.pieces[0]);
        let at = yaml::value_offset_to_file(
            &piece.loc.file.text,
            piece.loc.pos,
            &piece.value,
            offset.saturating_sub(piece.start),
        );
        (piece.loc.file.clone(), at)
    }

    /// A diagnostic placed on a span of this text.
    pub fn diag(&self, d: Diagnostic, span: (usize, usize)) -> Diagnostic {
        let (file, start) = self.locate(span.0);
        let (_, end) = self.locate(span.1.max(span.0 + 1) - 1);
        d.at(&file, start, end + 1)
    }
}
