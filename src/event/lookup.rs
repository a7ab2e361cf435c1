//! Lookups in a scanned document: a value of the document is found by its
//! tape node, and its keys and elements are read off the tape without
//! scanning text; a value that is not on the tape (text written elsewhere)
//! is read from its text ([`super::json`]), with the same answers.

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
        let offset = (v.as_ptr() as usize).checked_sub(self.base.as_ptr() as usize)?;
        if offset + v.len() > self.base.len() {
            return None;
        }
        let i = self.tape.at(offset)?;
        (self.tape.nodes()[i].end as usize == offset + v.len()).then_some(i)
    }

    fn text_of(&self, n: &Node) -> &'a str {
        &self.base[n.start as usize..n.end as usize]
    }

    fn key_of(&self, n: &Node) -> &'a str {
        &self.base[n.key as usize..n.key_end as usize]
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
            .find(|(_, n)| json::key_is(self.key_of(n), key))
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
                if slot.is_none() && json::key_is(self.key_of(n), key) {
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
