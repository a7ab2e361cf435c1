//! A forward reader of an envelope's JSON text (an AKS `records` document,
//! a CloudWatch Logs payload), for the envelopes that hold their document
//! as JSON text: the reader walks the envelope's objects and arrays, and
//! the document string is read once, unescaped into the caller's buffer and
//! scanned as its end is found ([`Cursor::document_into`]), instead of a
//! serde_json pass over the whole envelope that would unescape it into a
//! new string to be scanned again.
//!
//! Everything it passes over is checked as serde_json would: the structure
//! here, each value skipped by serde_json itself (they are small: names,
//! ids, times), strings by their rules. So a document it reads to the end
//! is valid JSON, and anything else is refused (`None`), for the decoder to
//! classify the slow way.

use std::borrow::Cow;

use serde::de::IgnoredAny;

use crate::event::scan::{self, Tape};
use crate::event::{give_tape, json, take_tape, unescape};

pub(super) struct Cursor<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, i: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte after whitespace (which is passed).
    pub fn peek(&mut self) -> Option<u8> {
        self.i = json::skip_ws(self.bytes(), self.i);
        self.bytes().get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// Reads an object: `f` is called with each key (unescaped) and must
    /// read or skip its value.
    pub fn object(&mut self, mut f: impl FnMut(&str, &mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            f(&key, self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Reads an array: `f` is called at each element and must read or skip
    /// it.
    pub fn array(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            f(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Passes over a value, checked by serde_json.
    pub fn skip(&mut self) -> Option<()> {
        self.peek()?;
        if self.bytes()[self.i] == b'"' {
            return self.string().map(drop);
        }
        let end = json::end_of_value(self.bytes(), self.i)?;
        let value = self.text.get(self.i..end)?;
        serde_json::from_str::<IgnoredAny>(value).ok()?;
        self.i = end;
        Some(())
    }

    /// A string's value, borrowed when it has no escapes.
    pub fn string(&mut self) -> Option<Cow<'a, str>> {
        if self.peek()? != b'"' {
            return None;
        }
        // Most are plain: the first quote, backslash or control character
        // is the closing quote.
        let stop = scan::special(self.bytes(), self.i + 1);
        if self.bytes().get(stop) == Some(&b'"') {
            let value = self.text.get(self.i + 1..stop)?;
            self.i = stop + 1;
            return Some(Cow::Borrowed(value));
        }
        let end = json::end_of_string(self.bytes(), self.i)?;
        let value = serde_json::from_str::<String>(self.text.get(self.i..end)?).ok()?;
        self.i = end;
        Some(Cow::Owned(value))
    }

    /// Appends a string's value, unescaped, to `out`.
    pub fn string_into(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.peek()?;
        self.i = unescape::string_into(self.bytes(), self.i, out)?;
        Some(())
    }

    /// Appends the value of a string that holds a document to `out`, and
    /// scans it in the same pass where it is compact JSON
    /// ([`Tape::scan_string`]): `Some(Some(tape))` then, on a tape of this
    /// thread's pool (to give back once decoded). `Some(None)` when the
    /// string was only unescaped, to be decoded the general way.
    pub fn document_into(&mut self, out: &mut Vec<u8>) -> Option<Option<Tape>> {
        self.peek()?;
        let base = out.len();
        let mut tape = take_tape();
        if let Some(end) = tape.scan_string(self.bytes(), self.i, out) {
            self.i = end;
            return Some(Some(tape));
        }
        give_tape(tape);
        out.truncate(base);
        self.string_into(out).map(|()| None)
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `text` through the cursor: every string unescaped, every other
    /// value skipped; whether it read a whole valid document.
    fn read_all(text: &str) -> bool {
        fn value(c: &mut Cursor, out: &mut Vec<u8>) -> Option<()> {
            match c.peek()? {
                b'{' => c.object(|_, c| value(c, out)),
                b'[' => c.array(|c| value(c, out)),
                b'"' => c.string_into(out),
                _ => c.skip(),
            }
        }
        let mut c = Cursor::new(text);
        let mut out = Vec::new();
        value(&mut c, &mut out).is_some() && c.at_end()
    }

    #[test]
    fn agrees_with_serde_json_on_what_is_json() {
        for text in [
            r#"{}"#,
            r#"[]"#,
            r#"{"a":[1,2.5e3,true,null,{"b":"c\"d"}],"e":{}} "#,
            r#" {"k\u0041":"v"}"#,
            r#"{"a":1,}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":tru}"#,
            r#"{"a":[1,}]}"#,
            r#"{"a":[1}"#,
            r#"{"a":"x"#,
            r#"{"a":01}"#,
            r#"{"a":"\q"}"#,
            r#"{"a":1}x"#,
            r#"{"a" 1}"#,
            r#"{1:2}"#,
            r#"[1 2]"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":{"b":[{"c":-0.5}]},"d":"\u00e9"}"#,
        ] {
            let serde = serde_json::from_str::<IgnoredAny>(text).is_ok();
            assert_eq!(read_all(text), serde, "{text}");
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let mut c = Cursor::new(r#" "plain" "a\nb" "#);
        assert!(matches!(c.string(), Some(Cow::Borrowed("plain"))));
        assert_eq!(c.string().as_deref(), Some("a\nb"));
        assert!(c.at_end());
    }
}
