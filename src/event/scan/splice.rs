//! A tape for text written from pieces of scanned documents (GKE's
//! conversion): the nodes of a piece are taken from the tape it was
//! scanned into and moved to where it was written, instead of scanning the
//! written text again. They are the nodes a scan of the written text gives
//! for those values (the tests hold them to that); what is not on such a
//! tape is read from its text.

use std::ops::Range;

use super::{Node, Tape};

impl Tape {
    /// Empties the tape, to build one node by node.
    pub(crate) fn clear(&mut self) {
        self.nodes.clear();
        self.stack.clear();
        // Values copied in may hold whitespace.
        self.compact = false;
    }

    /// Says that the text the tape was built for has no whitespace outside
    /// its strings (its writer knows: it wrote compact JSON from the pieces
    /// of a compact document).
    pub(crate) fn set_compact(&mut self, compact: bool) {
        self.compact = compact;
    }

    /// Appends a node without children yet: its text at `span`, its key
    /// (raw, quoted) at `key` (an empty span for none). Returns its index.
    pub(crate) fn push(&mut self, span: (usize, usize), key: (usize, usize)) -> usize {
        let at = |x: usize| u32::try_from(x).expect("the written text is under 4 GiB");
        self.nodes.push(Node {
            start: at(span.0),
            end: at(span.1),
            key: at(key.0),
            key_end: at(key.1),
            next: 0,
            // Not known here: read through its text.
            plain_key: false,
        });
        self.nodes.len() - 1
    }

    /// The nodes of value `i` and everything inside it.
    pub(crate) fn subtree(&self, i: usize) -> Range<usize> {
        let end = self.nodes[i].end;
        let last = self.nodes[i + 1..].partition_point(|n| n.start < end);
        i..i + 1 + last
    }

    /// Appends `from`'s nodes `range` (whole values: a subtree, or the
    /// last siblings of a container with what is inside them), their text
    /// and keys moved by `delta` bytes. Links that leave the range are cut,
    /// so the first appended value has no next sibling. Returns its index.
    pub(crate) fn push_moved(&mut self, from: &Tape, range: Range<usize>, delta: i64) -> usize {
        let first = self.nodes.len();
        let (start, end) = (range.start, range.end);
        assert!(
            u32::try_from(first + (end - start)).is_ok(),
            "node count fits"
        );
        // Offsets and indices in u32 arithmetic that wraps: every result is
        // a position in the written text (under 4 GiB) or on this tape.
        let d = delta as u32;
        let shift = (first as u32).wrapping_sub(start as u32);
        let last = end as u32;
        self.nodes
            .extend(from.nodes[start..end].iter().map(|n| Node {
                start: n.start.wrapping_add(d),
                end: n.end.wrapping_add(d),
                // An array element has no key: an empty span at 0.
                key: if n.key == n.key_end {
                    0
                } else {
                    n.key.wrapping_add(d)
                },
                key_end: if n.key == n.key_end {
                    0
                } else {
                    n.key_end.wrapping_add(d)
                },
                next: if n.next == 0 || n.next >= last {
                    0
                } else {
                    n.next.wrapping_add(shift)
                },
                plain_key: n.plain_key,
            }));
        first
    }

    /// Gives node `i` its key, a span of the written text (whose escapes
    /// are not known here: it is read through its text).
    pub(crate) fn set_key(&mut self, i: usize, key: (usize, usize)) {
        let n = &mut self.nodes[i];
        n.key = u32::try_from(key.0).expect("under 4 GiB");
        n.key_end = u32::try_from(key.1).expect("under 4 GiB");
        n.plain_key = false;
    }
}
