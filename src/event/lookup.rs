//! Lookups in a scanned document: a value of the document is found by its
//! tape node, and its keys and elements are read off the tape without
//! scanning text; a value that is not on the tape (text written elsewhere)
//! is read from its text ([`super::json`]), with the same answers.

use std::borrow::Cow;

use super::json;
use super::scan::{Node, Tape};

/// A document's tape and the text it indexes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scanned<'a> {
    pub tape: &'a Tape,
    pub base: &'a str,
}

impl<'a> Scanned<'a> {
    /// The tape node of `v`, a slice of `base` that starts and ends where
    /// a value does.
    pub fn node(&self, v: &str) -> Option<usize> {
        let offset = self.offset_of(v)?;
        let i = self.tape.at(offset)?;
        (self.tape.nodes()[i].end as usize == offset + v.len()).then_some(i)
    }

    /// Where `v` starts in `base`, if it is a slice of it.
    fn offset_of(&self, v: &str) -> Option<usize> {
        (v.as_ptr() as usize)
            .checked_sub(self.base.as_ptr() as usize)
            .filter(|offset| offset + v.len() <= self.base.len())
    }

    fn text_of(&self, n: &Node) -> &'a str {
        &self.base[n.start as usize..n.end as usize]
    }

    fn key_of(&self, n: &Node) -> &'a str {
        &self.base[n.key as usize..n.key_end as usize]
    }

    /// Whether the key of entry `n` is `key`: compared as it is written
    /// when the scan saw no escape in it.
    fn key_is(&self, n: &Node, key: &str) -> bool {
        match n.plain_key(self.base) {
            Some(plain) => plain == key,
            None => json::key_is(self.key_of(n), key),
        }
    }

    /// `v` as Falco renders it ([`json::text`]). A value of a document with
    /// no whitespace outside its strings is already compact, and is not
    /// read again for whitespace.
    pub fn text(&self, v: &'a str) -> Cow<'a, str> {
        if self.tape.is_compact()
            && json::kind(v) != json::Kind::String
            && self.offset_of(v).is_some()
        {
            return Cow::Borrowed(v);
        }
        json::text(v)
    }

    /// The value of `key` in object `parent` (the first one, if repeated).
    pub fn get(&self, parent: &'a str, key: &str) -> Option<&'a str> {
        let Some(i) = self.node(parent) else {
            return json::get(parent, key);
        };
        if json::kind(parent) != json::Kind::Object {
            return None;
        }
        self.tape
            .children(i)
            .find(|(_, n)| self.key_is(n, key))
            .map(|(_, n)| self.text_of(n))
    }

    /// The values of several keys of object `v` (the first of each, if
    /// repeated).
    pub fn pick<const N: usize>(&self, v: &'a str, keys: [&str; N]) -> [Option<&'a str>; N] {
        let Some(i) = self.node(v) else {
            return json::pick(v, keys);
        };
        let mut found = [None; N];
        if json::kind(v) != json::Kind::Object {
            return found;
        }
        for (_, n) in self.tape.children(i) {
            for (slot, key) in found.iter_mut().zip(keys) {
                if slot.is_none() && self.key_is(n, key) {
                    *slot = Some(self.text_of(n));
                }
            }
            if found.iter().all(Option::is_some) {
                break;
            }
        }
        found
    }

    /// Walks a path of object keys.
    pub fn path(&self, mut v: &'a str, keys: &[&str]) -> Option<&'a str> {
        for k in keys {
            v = self.get(v, k)?;
        }
        Some(v)
    }

    /// The elements of array `v`.
    pub fn elements(&self, v: &'a str) -> Option<Vec<&'a str>> {
        let Some(i) = self.node(v) else {
            return json::elements(v);
        };
        if json::kind(v) != json::Kind::Array {
            return None;
        }
        Some(
            self.tape
                .children(i)
                .map(|(_, n)| self.text_of(n))
                .collect(),
        )
    }

    /// Element `idx` of array `v`.
    pub fn index(&self, v: &'a str, idx: usize) -> Option<&'a str> {
        let Some(i) = self.node(v) else {
            return json::index(v, idx);
        };
        if json::kind(v) != json::Kind::Array {
            return None;
        }
        self.tape.children(i).nth(idx).map(|(_, n)| self.text_of(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_matched_escaped_or_not() {
        let text = r#"{"o":{"nam":"c","n\u0061me":"a","name":"d","name2":"b"},"p":1}"#;
        let mut tape = Tape::default();
        tape.scan(text).unwrap();
        let doc = Scanned {
            tape: &tape,
            base: text,
        };
        let o = doc.get(text, "o").unwrap();
        // The first entry of the key, escaped or not.
        assert_eq!(doc.get(o, "name"), Some(r#""a""#));
        assert_eq!(doc.get(o, "nam"), Some(r#""c""#));
        assert_eq!(doc.get(o, "name2"), Some(r#""b""#));
        assert_eq!(doc.get(o, "n\\u0061me"), None);
        assert_eq!(doc.get(o, "nome"), None);
        assert_eq!(
            doc.pick(o, ["name2", "name", "x"]),
            [Some(r#""b""#), Some(r#""a""#), None]
        );
        assert_eq!(doc.path(text, &["p"]), Some("1"));
    }
}
