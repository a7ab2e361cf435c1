//! The converted event's text, written key by key, with a tape of the
//! large values it copies from the entry (the request and response bodies,
//! the labels): their nodes are taken from the entry's tape and moved to
//! where they were written, so the event's text is not scanned again. The
//! values written here (the user, `objectRef`, strings) are small and not
//! on the tape: a rule's lookup in them reads their text ([`crate::event::json`]),
//! as for any value that is not on an event's tape. Nor is the event itself:
//! the top-level keys an event captures are found through
//! [`crate::event::Top`], filled from the spans written here; a lookup of
//! any other top-level key reads the whole converted text.

use super::{without_type, Cut, Keys, Obj};
use crate::event::scan::Tape;
use crate::event::Scanned;

/// The event's text being written, where each top-level value is, and the
/// tape of the values copied from the entry.
pub(super) struct EventText<'t> {
    obj: Obj,
    keys: Keys,
    nodes: &'t mut Tape,
    from: Scanned<'t>,
}

type Span = (usize, usize);

impl<'t> EventText<'t> {
    pub(super) fn new(mut buf: Vec<u8>, nodes: &'t mut Tape, from: Scanned<'t>) -> Self {
        buf.clear();
        buf.push(b'{');
        nodes.clear();
        EventText {
            obj: Obj(buf),
            keys: Vec::with_capacity(16),
            nodes,
            from,
        }
    }

    /// Writes `key` and, with `write`, its value: the spans of both.
    fn entry(&mut self, key: &'static str, write: impl FnOnce(&mut Vec<u8>)) -> (Span, Span) {
        self.obj.key(key);
        let len = self.obj.0.len();
        // `"key":` was just written.
        let key_span = (len - key.len() - 3, len - 1);
        write(&mut self.obj.0);
        let span = (len, self.obj.0.len());
        self.keys.push((key, span));
        (key_span, span)
    }

    /// The tape node of `value` if it is a container of the entry, and
    /// where it is in the entry's text.
    fn node_of(&self, value: &str) -> Option<(usize, usize)> {
        // Only containers; and only while every offset of the written text
        // fits the tape's.
        if !matches!(value.as_bytes().first(), Some(b'{' | b'['))
            || u32::try_from(self.obj.0.len()).is_err()
        {
            return None;
        }
        let i = self.from.node(value)?;
        Some((i, self.from.tape.nodes()[i].start as usize))
    }

    /// `value` is JSON text: a value of the (validated) entry, or written
    /// from its pieces. A container of the entry goes on the tape.
    pub(super) fn raw(&mut self, key: &'static str, value: &str) {
        let (k, v) = self.entry(key, |b| b.extend_from_slice(value.as_bytes()));
        if let Some((i, offset)) = self.node_of(value) {
            self.copy(i, offset, k, v);
        }
    }

    /// Entry node `i` (at `offset` in the entry) and what is inside it,
    /// written at `span` after `key`.
    fn copy(&mut self, i: usize, offset: usize, key: Span, span: Span) {
        let tape = self.from.tape;
        let first = self
            .nodes
            .push_moved(tape, tape.subtree(i), span.0 as i64 - offset as i64);
        self.nodes.set_key(first, key);
    }

    /// `value` written as a JSON string.
    pub(super) fn str(&mut self, key: &'static str, value: &str) {
        self.with(key, |b| super::push_str(b, value));
    }

    /// A value written by `write`.
    pub(super) fn with(&mut self, key: &'static str, write: impl FnOnce(&mut Vec<u8>)) {
        self.entry(key, write);
    }

    /// A request or response body (an object of the entry), without its
    /// `@type`. Written entry by entry (`@type` elsewhere than first), it
    /// stays off the tape.
    pub(super) fn body(&mut self, key: &'static str, body: &str) {
        let (mut cut, from) = (Cut::Rewritten, self.from);
        let (k, v) = self.entry(key, |b| cut = without_type(from, body, b));
        let Some((i, offset)) = self.node_of(body) else {
            return;
        };
        let tape = self.from.tape;
        match cut {
            Cut::Verbatim => self.copy(i, offset, k, v),
            Cut::Leading { rest } => {
                // `{` and the entries after `@type`, which stay as they
                // were: their nodes move by one distance.
                self.nodes.push(v, k);
                if let Some((second, _)) = tape.children(i).nth(1) {
                    let moved = v.0 as i64 + 1 - (offset + rest) as i64;
                    self.nodes
                        .push_moved(tape, second..tape.subtree(i).end, moved);
                }
            }
            Cut::Rewritten => {}
        }
    }

    /// The text, and where each top-level value is.
    pub(super) fn end(mut self) -> (Vec<u8>, Keys) {
        self.obj.0.push(b'}');
        (self.obj.0, self.keys)
    }
}

/// Every node of `built` is the node of `scan` with the same text and key,
/// and a container's children are the same on both; a key `built` reads as
/// written is one the scan found plain. Shared with the decoder's
/// own check in debug builds.
#[cfg(any(test, debug_assertions))]
pub(super) fn assert_same_values(built: &Tape, scan: &Tape, text: &str) {
    let spans = |t: &Tape, i: usize| {
        let n = t.nodes()[i];
        (n.start, n.end, n.key, n.key_end)
    };
    for j in 0..built.nodes().len() {
        let start = built.nodes()[j].start as usize;
        let m = scan
            .at(start)
            .unwrap_or_else(|| panic!("no value at {start}: {text}"));
        assert_eq!(spans(built, j), spans(scan, m), "{text}");
        // A built node may not know its key is plain, but never claims a
        // key with an escape is.
        if built.nodes()[j].plain_key(text).is_some() {
            assert!(scan.nodes()[m].plain_key(text).is_some(), "{text}");
        }
        let kids = |t: &Tape, i: usize| t.children(i).map(|(c, _)| spans(t, c)).collect::<Vec<_>>();
        assert_eq!(kids(built, j), kids(scan, m), "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{convert, Entry};
    use super::*;
    use crate::event::{read_top, Read};

    /// Converts `entry`: every node of the tape built must be the scan's
    /// node of the same value (text, key, next sibling), and the bodies and
    /// labels must be on it.
    fn check(entry: &str, on_tape: &[&str]) {
        let mut tape = Tape::default();
        tape.scan(entry).expect("the entry is JSON");
        let Read::Top(top, _) = read_top(entry, &tape, 0) else {
            panic!("an entry");
        };
        let from = Scanned {
            tape: &tape,
            base: entry,
        };
        let e = Entry::read(&top, top.proto_payload.as_ref().expect("a payload"), from);
        let (mut buf, mut built) = (Vec::new(), Tape::default());
        let _ = convert(&e, &mut buf, &mut built, from);
        let text = String::from_utf8(buf).expect("UTF-8");
        let mut scan = Tape::default();
        scan.scan(&text).expect("the event is JSON");
        assert_same_values(&built, &scan, &text);
        let keys: Vec<&str> = scan
            .children(0)
            .filter(|(i, _)| built.at(scan.nodes()[*i].start as usize).is_some())
            .map(|(_, n)| &text[n.key as usize + 1..n.key_end as usize - 1])
            .collect();
        assert_eq!(keys, on_tape, "{text}");
    }

    #[test]
    fn the_built_tape_is_the_scans() {
        let payload = |request: &str, response: &str| {
            format!(
                r#"{{"insertId":"i","timestamp":"2024-01-01T00:00:00Z","labels":{{"a":"b","c":["d",{{"e":1}}]}},
                "operation":{{"id":"o"}},"protoPayload":{{"serviceName":"k8s.io",
                "methodName":"io.k8s.core.v1.pods.create","resourceName":"core/v1/namespaces/ns/pods/p",
                "authenticationInfo":{{"principalEmail":"u@x","groups":["g1","g2"]}},
                "requestMetadata":{{"callerIp":"10.0.0.1","callerSuppliedUserAgent":"kubectl"}},
                "status":{{"code":7,"message":"no"}},"request":{request},"response":{response}}}}}"#
            )
        };
        // Bodies as they were, with `@type` first (then nothing, or more),
        // with `@type` elsewhere, nested arrays and whitespace.
        let all = ["requestObject", "responseObject", "annotations"];
        for (request, response, want) in [
            (
                r#"{"kind":"Pod","spec":{"containers":[{"name":"c","args":["a",1,true,null]}]}}"#,
                "{}",
                &all[..],
            ),
            (
                r#"{"@type":"core.k8s.io/v1.Pod","kind":"Pod", "spec" : {"a":[[],{}]}}"#,
                r#"{"@type":"core.k8s.io/v1.Status"}"#,
                &all[..],
            ),
            (
                r#"{ "kind":"Pod","@type":"x","spec":{"a":1} }"#,
                r#"{"@type" : "core.k8s.io/v1.Status" ,  "code":403,"kind":"Status"}"#,
                &all[1..],
            ),
        ] {
            check(&payload(request, response), want);
        }
        check(
            r#"{"protoPayload":{"methodName":"io.k8s.core.v1.nodes.list"}}"#,
            &[],
        );
    }
}
