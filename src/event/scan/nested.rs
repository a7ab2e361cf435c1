//! The scan of a document held as the text of a JSON string (an AKS `log`,
//! an EKS `message`), done in the same pass that unescapes it.
//!
//! Such a string is the document with each quote written `\"` and each
//! backslash `\\`, an escape every few bytes. Unescaping it first and then
//! scanning the result reads every byte twice, and the unescaping stops at
//! every escape. Here the escaped text is read once: a `\"` is a quote of
//! the document (the structure the scan looks for anyway), and each value
//! is written to the caller's buffer as it is read, the insides of strings
//! sixteen bytes at a time (each block written whole, then cut back to
//! where it stops). The tape's offsets are those of the unescaped text.
//!
//! The pass takes the documents the API server writes: an object or array
//! in compact JSON (no whitespace outside strings), inside a string whose
//! only escapes are `\"`, `\\` and `\/`. Anything else (whitespace, a `\n`
//! or `\u00e9` of the outer string, an invalid document, an outer string
//! that ends before the document does) makes it give up, and the caller
//! reads the string the general way ([`crate::event::unescape`], then
//! [`Tape::scan`]), which also says why a document is refused. The tests
//! hold the one pass to the two wherever it takes a string (the same end,
//! text and tape), on near-JSON, long documents and mangled escapes, and
//! check that it takes every valid compact ASCII document they make.
//!
//! Its state machine has the shape of the plain scan's (`Scanner::run`) and
//! shares its tape operations; it is written apart because each of its
//! steps also writes, and the plain scan is the hot path of every event.

use super::{block_stops, literal, number, special, Key, Tape, NO_KEY};

impl Tape {
    /// Reads the JSON string at `b[open]` (a quote) whose value is a
    /// compact JSON object or array, appends the value to `out` and scans
    /// it onto the tape, in one pass; offsets on the tape are from where
    /// the value starts in `out`. Returns the index just past the string's
    /// closing quote. `None` when this pass does not take the string: then
    /// `out` holds a part of the value and the tape is not usable.
    pub(crate) fn scan_string(
        &mut self,
        b: &[u8],
        open: usize,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        if b.get(open) != Some(&b'"') || !matches!(b.get(open + 1), Some(b'{' | b'[')) {
            return None;
        }
        u32::try_from(b.len()).ok()?;
        self.nodes.clear();
        self.stack.clear();
        self.compact = false;
        let base = out.len();
        let end = Nested {
            b,
            tape: self,
            out,
            base,
        }
        .run(open + 1)?;
        // No whitespace was taken outside strings.
        self.compact = true;
        Some(end)
    }
}

struct Nested<'b, 't, 'o> {
    b: &'b [u8],
    tape: &'t mut Tape,
    /// The unescaped text is written from `base` on, as the input is read.
    out: &'o mut Vec<u8>,
    base: usize,
}

impl Nested<'_, '_, '_> {
    /// Where the next byte of the unescaped text goes, from its start.
    #[inline(always)]
    fn at(&self) -> u32 {
        (self.out.len() - self.base) as u32
    }

    /// Copies `b[from..to]`, a few bytes (a number), to the text.
    #[inline(always)]
    fn copy(&mut self, from: usize, to: usize) {
        match self.b.get(from..from + 16).map(<&[u8; 16]>::try_from) {
            Some(Ok(block)) if to - from <= 16 => {
                let kept = self.out.len() + (to - from);
                self.out.extend_from_slice(block);
                self.out.truncate(kept);
            }
            _ => self.out.extend_from_slice(&self.b[from..to]),
        }
    }

    /// Copies the input from `j` up to the next quote, backslash or
    /// control character to the text, sixteen bytes at a time; returns
    /// where that byte is.
    #[inline(always)]
    fn copy_plain(&mut self, mut j: usize) -> usize {
        let b = self.b;
        while let Some(Ok(block)) = b.get(j..j + 16).map(<&[u8; 16]>::try_from) {
            let kept = self.out.len();
            self.out.extend_from_slice(block);
            let stops = block_stops(block);
            if stops != 0 {
                let t = stops.trailing_zeros() as usize;
                self.out.truncate(kept + t);
                return j + t;
            }
            j += 16;
        }
        let stop = special(b, j);
        self.out.extend_from_slice(&b[j..stop]);
        stop
    }

    /// The document from `b[i]` to the closing quote of the outer string:
    /// the index past that quote.
    fn run(&mut self, mut i: usize) -> Option<usize> {
        let b = self.b;
        let mut key = NO_KEY;
        'value: loop {
            let idx = self.tape.open(self.at(), key);
            match *b.get(i)? {
                c @ (b'{' | b'[') => {
                    self.tape.stack.push((idx, 0, c == b'{'));
                    self.out.push(c);
                    i += 1;
                    let close = if c == b'{' { b'}' } else { b']' };
                    if b.get(i) == Some(&close) {
                        i = self.close(i)?;
                    } else if c == b'{' {
                        (key, i) = self.key(i)?;
                        continue 'value;
                    } else {
                        key = NO_KEY;
                        continue 'value;
                    }
                }
                b'\\' => {
                    let (end, _) = self.string(i)?;
                    i = self.end(idx, end);
                }
                b't' => i = self.word(idx, i, b"true")?,
                b'f' => i = self.word(idx, i, b"false")?,
                b'n' => i = self.word(idx, i, b"null")?,
                b'-' | b'0'..=b'9' => {
                    let end = number(b, i).ok()?;
                    self.copy(i, end);
                    i = self.end(idx, end);
                }
                _ => return None,
            }
            loop {
                let Some(&(_, _, is_object)) = self.tape.stack.last() else {
                    // The root value is done: the outer string must end here.
                    return (b.get(i) == Some(&b'"')).then_some(i + 1);
                };
                match b.get(i) {
                    Some(b',') => {
                        self.out.push(b',');
                        i += 1;
                        if is_object {
                            (key, i) = self.key(i)?;
                        } else {
                            key = NO_KEY;
                        }
                        continue 'value;
                    }
                    Some(b'}') if is_object => i = self.close(i)?,
                    Some(b']') if !is_object => i = self.close(i)?,
                    _ => return None,
                }
            }
        }
    }

    /// Ends value `idx` where the text is now; `end` is where the input is.
    fn end(&mut self, idx: u32, end: usize) -> usize {
        let at = self.at();
        self.tape.set_end(idx, at);
        end
    }

    /// `true`, `false` or `null` at `i`.
    fn word(&mut self, idx: u32, i: usize, word: &'static [u8]) -> Option<usize> {
        let end = literal(self.b, i, word).ok()?;
        self.out.extend_from_slice(word);
        Some(self.end(idx, end))
    }

    /// Closes the innermost container at its bracket `b[i]`.
    fn close(&mut self, i: usize) -> Option<usize> {
        self.out.push(self.b[i]);
        self.tape.close_container(self.at())?;
        Some(i + 1)
    }

    /// An object key at `i` and its colon: the key's span (in the
    /// unescaped text) and where its value starts.
    fn key(&mut self, i: usize) -> Option<(Key, usize)> {
        let start = self.at();
        let (end, escaped) = self.string(i)?;
        if self.b.get(end) != Some(&b':') {
            return None;
        }
        let key_end = self.at();
        self.out.push(b':');
        Some(((start, key_end, !escaped), end + 1))
    }

    /// A string of the document at `i`, written `\"…\"`: the index past
    /// its closing `\"`, and whether it holds an escape of its own (written
    /// `\\` and the escape's letter, or `\\\"`, `\\\\`, `\\\/`). The
    /// backslashes that the outer string added are dropped.
    #[inline(always)]
    fn string(&mut self, i: usize) -> Option<(usize, bool)> {
        let b = self.b;
        // A `"` alone is the outer string's end.
        if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'"') {
            return None;
        }
        self.out.push(b'"');
        let mut j = i + 2;
        let mut escaped = false;
        loop {
            j = self.copy_plain(j);
            // A quote here ends the outer string inside the document's.
            if b.get(j) != Some(&b'\\') {
                return None;
            }
            match b.get(j + 1) {
                Some(b'"') => {
                    self.out.push(b'"');
                    return Some((j + 2, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.out.push(b'\\');
                    j = match b.get(j + 2) {
                        Some(b'\\') => match b.get(j + 3) {
                            Some(&c @ (b'"' | b'\\' | b'/')) => {
                                self.out.push(c);
                                j + 4
                            }
                            _ => return None,
                        },
                        Some(&c @ (b'/' | b'b' | b'f' | b'n' | b'r' | b't')) => {
                            self.out.push(c);
                            j + 3
                        }
                        Some(b'u') => match b.get(j + 2..j + 7) {
                            Some(u) if u[1..].iter().all(u8::is_ascii_hexdigit) => {
                                self.out.extend_from_slice(u);
                                j + 7
                            }
                            _ => return None,
                        },
                        _ => return None,
                    };
                }
                // `\/`: a slash of the document.
                Some(b'/') => {
                    self.out.push(b'/');
                    j += 2;
                }
                // A control character of the document (invalid in its
                // string), or a character the outer string escaped.
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests;
