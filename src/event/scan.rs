//! The structural scan: one pass over a document that validates it as JSON
//! (RFC 8259, as strictly as serde_json) and records where every value is,
//! so that rules then find any nested value without scanning text again.
//!
//! The result is a [`Tape`]: one [`Node`] per value, in document order, each
//! with the byte span of its text, the span of its key when it sits in an
//! object, and the index of its next sibling. A container's children follow
//! it on the tape; looking a key up walks the object's children only,
//! jumping over their bodies. Strings are crossed sixteen bytes at a time
//! with SSE2 on x86-64 (eight at a time as one machine word elsewhere),
//! stopping only at a quote, a backslash or a control character.
//!
//! Everything is validated here, once: structure, every string (escapes,
//! no raw control characters; UTF-8 is checked before), every number and
//! literal, and that nothing but whitespace follows the value. Nesting depth
//! is not limited (the scan keeps its own stack, not the thread's).

use std::cell::Cell;

/// Where one value is. Offsets are bytes into the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// The value's text: `text[start..end]`.
    pub start: u32,
    pub end: u32,
    /// The raw (quoted) key of an object entry: `text[key..key_end]`;
    /// `key == key_end` for array elements and the root.
    pub key: u32,
    pub key_end: u32,
    /// The index of the next value in the same container; 0 for the last.
    next: u32,
    /// Its key is known to hold no escape (the scan saw no backslash in
    /// it): then the key's text between its quotes is the key itself.
    /// `false` when it is not known (a tape built by hand).
    plain_key: bool,
}

impl Node {
    /// The key between its quotes, when it is known to hold no escape.
    pub(crate) fn plain_key<'t>(&self, text: &'t str) -> Option<&'t str> {
        if self.plain_key {
            text.get(self.key as usize + 1..self.key_end as usize - 1)
        } else {
            None
        }
    }
}

/// The nodes of one scanned document, reused from document to document.
#[derive(Debug, Default)]
pub struct Tape {
    nodes: Vec<Node>,
    /// Open containers while scanning: node index, last child index, and
    /// whether it is an object.
    stack: Vec<(u32, u32, bool)>,
    /// The scanned text has no whitespace outside its strings, so every
    /// value on the tape is already compact JSON. `false` when not known
    /// (a tape built by hand).
    compact: bool,
}

/// Why a document is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not valid JSON at this byte offset.
    At(usize),
    /// Over 4 GiB: offsets would not fit the tape.
    TooLarge,
}

impl Tape {
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The index of the node whose text starts at byte `start`.
    pub fn at(&self, start: usize) -> Option<usize> {
        let start = u32::try_from(start).ok()?;
        self.nodes.binary_search_by_key(&start, |n| n.start).ok()
    }

    /// The children of container node `i` (none for scalars).
    pub fn children(&self, i: usize) -> Children<'_> {
        let node = self.nodes[i];
        let first = match self.nodes.get(i + 1) {
            Some(n) if n.start < node.end => i + 1,
            _ => 0,
        };
        Children {
            nodes: &self.nodes,
            next: first,
        }
    }

    /// Lets go of the memory a very large document needed.
    pub fn trim(&mut self) {
        const KEEP: usize = 1 << 16;
        if self.nodes.capacity() > KEEP {
            self.nodes = Vec::new();
        }
        if self.stack.capacity() > KEEP {
            self.stack = Vec::new();
        }
    }

    /// Scans `text`, replacing what the tape held.
    pub fn scan(&mut self, text: &str) -> Result<(), Invalid> {
        if u32::try_from(text.len()).is_err() {
            return Err(Invalid::TooLarge);
        }
        self.nodes.clear();
        self.stack.clear();
        self.compact = false;
        SPACED.with(|s| s.set(false));
        Scanner {
            b: text.as_bytes(),
            tape: self,
        }
        .run()
        .map_err(Invalid::At)?;
        self.compact = !SPACED.with(Cell::get);
        Ok(())
    }

    /// Whether every value on the tape is compact JSON as written (the
    /// scanned text has no whitespace outside its strings).
    pub(crate) fn is_compact(&self) -> bool {
        self.compact
    }
}

impl Tape {
    /// Adds the node of a value whose text starts at `start`, linked from
    /// its previous sibling in the open container. Returns its index.
    #[inline(always)]
    fn open(&mut self, start: u32, key: Key) -> u32 {
        let idx = self.nodes.len() as u32;
        if let Some((_, last, _)) = self.stack.last_mut() {
            if *last != 0 {
                self.nodes[*last as usize].next = idx;
            }
            *last = idx;
        }
        self.nodes.push(Node {
            start,
            end: start,
            key: key.0,
            key_end: key.1,
            next: 0,
            plain_key: key.2,
        });
        idx
    }

    #[inline(always)]
    fn set_end(&mut self, idx: u32, end: u32) {
        self.nodes[idx as usize].end = end;
    }

    /// Ends the innermost open container at `end` (past its bracket);
    /// `None` when none is open.
    fn close_container(&mut self, end: u32) -> Option<()> {
        let (open, _, _) = self.stack.pop()?;
        self.set_end(open, end);
        Some(())
    }
}

/// The children of one container, in order.
pub struct Children<'t> {
    nodes: &'t [Node],
    next: usize,
}

impl<'t> Iterator for Children<'t> {
    type Item = (usize, &'t Node);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == 0 {
            return None;
        }
        let i = self.next;
        let node = &self.nodes[i];
        self.next = node.next as usize;
        Some((i, node))
    }
}

struct Scanner<'b, 't> {
    b: &'b [u8],
    tape: &'t mut Tape,
}

type Scan<T> = Result<T, usize>;

/// The span of a value's key, and whether it holds no escape.
type Key = (u32, u32, bool);

/// An array element's or the root's: an empty span.
const NO_KEY: Key = (0, 0, false);

impl Scanner<'_, '_> {
    fn run(&mut self) -> Scan<()> {
        let b = self.b;
        let mut i = skip_ws(b, 0);
        let mut key = NO_KEY;
        'value: loop {
            let idx = self.push(i, key);
            let Some(&c) = b.get(i) else { return Err(i) };
            match c {
                b'{' | b'[' => {
                    self.tape.stack.push((idx, 0, c == b'{'));
                    i = skip_ws(b, i + 1);
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
                b'"' => i = self.end(idx, string_end(b, i)?.0),
                b't' => i = self.end(idx, literal(b, i, b"true")?),
                b'f' => i = self.end(idx, literal(b, i, b"false")?),
                b'n' => i = self.end(idx, literal(b, i, b"null")?),
                b'-' | b'0'..=b'9' => i = self.end(idx, number(b, i)?),
                _ => return Err(i),
            }
            // After a value: a comma and the next one, or the end of
            // containers, or the end of the document.
            loop {
                i = skip_ws(b, i);
                let Some(&(_, _, is_object)) = self.tape.stack.last() else {
                    return if i == b.len() { Ok(()) } else { Err(i) };
                };
                match b.get(i) {
                    Some(b',') => {
                        i = skip_ws(b, i + 1);
                        if is_object {
                            (key, i) = self.key(i)?;
                        } else {
                            key = NO_KEY;
                        }
                        continue 'value;
                    }
                    Some(b'}') if is_object => i = self.close(i)?,
                    Some(b']') if !is_object => i = self.close(i)?,
                    _ => return Err(i),
                }
            }
        }
    }

    /// Adds the node of a value starting at `i`, linked from its previous
    /// sibling.
    #[inline(always)]
    fn push(&mut self, i: usize, key: Key) -> u32 {
        self.tape.open(i as u32, key)
    }

    #[inline(always)]
    fn end(&mut self, idx: u32, end: usize) -> usize {
        self.tape.set_end(idx, end as u32);
        end
    }

    /// Closes the innermost container at its bracket `b[i]`.
    fn close(&mut self, i: usize) -> Scan<usize> {
        self.tape.close_container(i as u32 + 1).ok_or(i)?;
        Ok(i + 1)
    }

    /// An object key and its colon at `i`: the key's span and where its
    /// value starts.
    fn key(&mut self, i: usize) -> Scan<(Key, usize)> {
        if self.b.get(i) != Some(&b'"') {
            return Err(i);
        }
        let (end, escaped) = string_end(self.b, i)?;
        let j = skip_ws(self.b, end);
        if self.b.get(j) != Some(&b':') {
            return Err(j);
        }
        let value = skip_ws(self.b, j + 1);
        Ok(((i as u32, end as u32, !escaped), value))
    }
}

thread_local! {
    /// Whether the scan on this thread has skipped whitespace: set off the
    /// hot path, so that the loop over tokens keeps no flag of its own.
    static SPACED: Cell<bool> = const { Cell::new(false) };
}

/// Past the whitespace at `i`.
#[inline(always)]
fn skip_ws(b: &[u8], i: usize) -> usize {
    // Whitespace is below `!`: compact JSON, which has none between its
    // tokens, costs one test.
    if b.get(i).is_some_and(|&c| c > b' ') {
        return i;
    }
    past_ws(b, i)
}

#[inline(never)]
fn past_ws(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(j) {
        j += 1;
    }
    if j > i {
        SPACED.with(|s| s.set(true));
    }
    j
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Scan<usize> {
    match b.get(i..i + word.len()) {
        Some(w) if w == word => Ok(i + word.len()),
        _ => Err(i),
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` at `i`.
fn number(b: &[u8], mut i: usize) -> Scan<usize> {
    let digits = |b: &[u8], i: usize| {
        let n = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            Err(i)
        } else {
            Ok(i + n)
        }
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits(b, i)?,
        _ => return Err(i),
    };
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = digits(b, i)?;
    }
    Ok(i)
}

/// `b[i]` is an opening quote: the index just past the closing one, with
/// every escape and character of the string checked, and whether it holds
/// an escape.
#[inline(always)]
fn string_end(b: &[u8], i: usize) -> Scan<(usize, bool)> {
    // Most strings hold no escape: their first stop is the closing quote.
    let j = special(b, i + 1);
    if b.get(j) == Some(&b'"') {
        return Ok((j + 1, false));
    }
    escaped_string_end(b, j).map(|end| (end, true))
}

/// The rest of a string from its first backslash (or the byte that makes
/// it invalid) at `j`.
#[inline(never)]
fn escaped_string_end(b: &[u8], mut j: usize) -> Scan<usize> {
    loop {
        match b.get(j) {
            Some(b'"') => return Ok(j + 1),
            Some(b'\\') => {
                j = match b.get(j + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j + 2,
                    Some(b'u') => match b.get(j + 2..j + 6) {
                        Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => j + 6,
                        _ => return Err(j),
                    },
                    _ => return Err(j),
                }
            }
            _ => return Err(j),
        }
        j = special(b, j);
    }
}

/// The index of the first quote, backslash or control character at or after
/// `j` (or `b.len()`): sixteen bytes at a time with SSE2 where the machine
/// has it, then eight at a time as one word (SIMD within a register), then
/// byte by byte.
pub(crate) fn special(b: &[u8], mut j: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        j = sse2::special(b, j);
        // It stops early only at a hit.
        if j + 16 <= b.len() {
            return j;
        }
    }
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTE: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASH: u64 = u64::from_ne_bytes([b'\\'; 8]);
    // The high bit of each byte below `n` (n <= 0x80); the lowest one found is
    // exact (a borrow only runs towards higher bytes).
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH;
    while let Some(word) = b.get(j..j + 8) {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let hits = below(w ^ QUOTE, 1) | below(w ^ BACKSLASH, 1) | below(w, 0x20);
        if hits != 0 {
            return j + (hits.trailing_zeros() / 8) as usize;
        }
        j += 8;
    }
    while let Some(&c) = b.get(j) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return j;
        }
        j += 1;
    }
    j
}

/// The quotes, backslashes and control characters of a block of sixteen
/// bytes: bit `k` is set when `block[k]` is one. With SSE2 where the machine
/// has it; the unescaping of document strings ([`super::unescape`]) reads
/// its blocks through this too.
pub(crate) fn block_stops(block: &[u8; 16]) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::stops(block)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        let mut mask = 0;
        for (k, &c) in block.iter().enumerate() {
            if c == b'"' || c == b'\\' || c < 0x20 {
                mask |= 1 << k;
            }
        }
        mask
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };

    /// Bit `k` set for each quote, backslash or control character at
    /// `block[k]`.
    #[inline(always)]
    pub(super) fn stops(block: &[u8; 16]) -> u32 {
        let v = load_unaligned_m128i(block);
        // `v < 0x20` unsigned: min(v, 0x1f) == v.
        let control = cmp_eq_mask_i8_m128i(min_u8_m128i(v, set_splat_i8_m128i(0x1f)), v);
        let hits = bitor_m128i(
            bitor_m128i(
                cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b'"' as i8)),
                cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b'\\' as i8)),
            ),
            control,
        );
        move_mask_i8_m128i(hits) as u32
    }

    /// Sixteen bytes at a time: the first quote, backslash or control
    /// character at or after `j`, or where fewer than sixteen bytes are left.
    pub(super) fn special(b: &[u8], mut j: usize) -> usize {
        while let Some(Ok(block)) = b.get(j..j + 16).map(<&[u8; 16]>::try_from) {
            let mask = stops(block);
            if mask != 0 {
                return j + mask.trailing_zeros() as usize;
            }
            j += 16;
        }
        j
    }
}

mod nested;
mod splice;

#[cfg(test)]
mod tests;
