//! Lazy access into raw JSON text that has already been validated (the
//! event decoder validates every document): look a key up, walk an array,
//! read a string, without building a tree. A small scanner skips values by
//! matching brackets and quotes; everything borrows from the input, and only
//! strings with escapes and re-rendered objects allocate. Given text that is
//! not valid JSON, every function returns `None` rather than panicking.

use std::borrow::Cow;

/// The JSON type of a raw value, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Other,
}

pub fn kind(v: &str) -> Kind {
    match v.as_bytes().first() {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::String,
        _ => Kind::Other,
    }
}

pub fn is_null(v: &str) -> bool {
    v == "null"
}

pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `b[i]` is an opening quote; returns the index just past the closing one.
pub(crate) fn end_of_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    // Most strings (keys, names) are short: look at them byte by byte before
    // handing longer ones to the vectorised search.
    let short = b
        .get(j..)?
        .iter()
        .take(24)
        .position(|&c| c == b'"' || c == b'\\');
    match short {
        Some(k) if b[j + k] == b'"' => return Some(j + k + 1),
        Some(k) => j += k,
        None => {}
    }
    loop {
        let k = memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        j += k;
        if b[j] == b'\\' {
            j += 2;
        } else {
            return Some(j + 1);
        }
    }
}

/// The index just past the value that starts at `i`.
pub(crate) fn end_of_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => end_of_string(b, i),
        open @ (b'{' | b'[') => {
            // In valid JSON only the matching bracket kind changes the depth
            // of this value; strings are skipped whole.
            let close = if open == b'{' { b'}' } else { b']' };
            let mut depth = 0usize;
            let mut j = i;
            loop {
                j += memchr::memchr3(b'"', open, close, b.get(j..)?)?;
                match b[j] {
                    b'"' => j = end_of_string(b, j)?,
                    c if c == open => {
                        depth += 1;
                        j += 1;
                    }
                    _ => {
                        depth -= 1;
                        j += 1;
                        if depth == 0 {
                            return Some(j);
                        }
                    }
                }
            }
        }
        _ => {
            let rest = b.get(i..)?;
            let len = rest
                .iter()
                .position(|&c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            (len > 0).then_some(i + len)
        }
    }
}

/// The entries of an object with their keys still raw (quoted, escaped), in
/// one scan.
pub fn raw_entries(v: &str) -> Option<Vec<(&str, &str)>> {
    if kind(v) != Kind::Object {
        return None;
    }
    let mut out = Vec::new();
    scan_object(v, |k, val| {
        out.push((k, val));
        None::<()>
    });
    Some(out)
}

/// Calls `f(raw_key, value)` for each entry of an object until it returns
/// `Some`. Keys are raw (still escaped).
fn scan_object<'a, T>(v: &'a str, mut f: impl FnMut(&'a str, &'a str) -> Option<T>) -> Option<T> {
    let b = v.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = end_of_string(b, i)?;
        let key = v.get(i..key_end)?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value_end = end_of_value(b, i)?;
        if let Some(t) = f(key, v.get(i..value_end)?) {
            return Some(t);
        }
        i = skip_ws(b, value_end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            _ => return None,
        }
    }
}

/// Whether a raw (quoted, possibly escaped) key equals `key`.
pub fn key_is(raw_key: &str, key: &str) -> bool {
    let inner = &raw_key[1..raw_key.len() - 1];
    // An escape makes the raw text longer than what it stands for: a key of
    // another length can only match through escapes.
    match inner.len().cmp(&key.len()) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => inner == key && !inner.contains('\\'),
        std::cmp::Ordering::Greater => {
            inner.contains('\\') && serde_json::from_str::<String>(raw_key).is_ok_and(|k| k == key)
        }
    }
}

/// The value of `key` in a JSON object (the first one, if repeated).
pub fn get<'a>(v: &'a str, key: &str) -> Option<&'a str> {
    scan_object(v, |k, val| key_is(k, key).then_some(val))
}

/// The values of several keys of an object, in one scan (the first of
/// each, if repeated).
pub fn pick<'a, const N: usize>(v: &'a str, keys: [&str; N]) -> [Option<&'a str>; N] {
    let mut found = [None; N];
    scan_object(v, |k, val| {
        for (slot, key) in found.iter_mut().zip(keys) {
            if slot.is_none() && key_is(k, key) {
                *slot = Some(val);
            }
        }
        found.iter().all(Option::is_some).then_some(())
    });
    found
}

/// Walks a path of object keys.
pub fn path<'a>(mut v: &'a str, keys: &[&str]) -> Option<&'a str> {
    for k in keys {
        v = get(v, k)?;
    }
    Some(v)
}

/// Element `i` of an array.
pub fn index(v: &str, i: usize) -> Option<&str> {
    let mut n = 0;
    scan_array(v, |item| {
        n += 1;
        (n == i + 1).then_some(item)
    })
}

/// The elements of a JSON array.
pub fn elements(v: &str) -> Option<Vec<&str>> {
    if kind(v) != Kind::Array {
        return None;
    }
    let mut out = Vec::new();
    scan_array(v, |item| {
        out.push(item);
        None::<()>
    });
    Some(out)
}

/// Calls `f` on each element of an array until it returns `Some`.
fn scan_array<'a, T>(v: &'a str, mut f: impl FnMut(&'a str) -> Option<T>) -> Option<T> {
    let b = v.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return None;
    }
    loop {
        let end = end_of_value(b, i)?;
        if let Some(t) = f(v.get(i..end)?) {
            return Some(t);
        }
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            _ => return None,
        }
    }
}

/// The entries of a JSON object, in order, with unescaped keys.
pub fn entries(v: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let raw = raw_entries(v)?;
    Some(
        raw.into_iter()
            .map(|(k, val)| (string(k).unwrap_or_default(), val))
            .collect(),
    )
}

/// A JSON string's value; `None` for other types.
pub fn string(v: &str) -> Option<Cow<'_, str>> {
    if kind(v) != Kind::String || v.len() < 2 {
        return None;
    }
    let inner = &v[1..v.len() - 1];
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(v).ok().map(Cow::Owned)
}

/// A value as Falco renders it: strings unquoted, everything else as
/// compact JSON (numbers and booleans as written).
pub fn text(v: &str) -> Cow<'_, str> {
    match string(v) {
        Some(s) => s,
        None => compact(v),
    }
}

/// Removes insignificant whitespace, keeping key order and escapes.
pub fn compact(s: &str) -> Cow<'_, str> {
    let needs = {
        let mut in_str = false;
        let mut esc = false;
        s.bytes().any(|b| {
            if in_str {
                if esc {
                    esc = false;
                } else if b == b'\\' {
                    esc = true;
                } else if b == b'"' {
                    in_str = false;
                }
                false
            } else if b == b'"' {
                in_str = true;
                false
            } else {
                b.is_ascii_whitespace()
            }
        })
    };
    if !needs {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut esc = false;
    for c in s.chars() {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Re-renders JSON with a two-space indent, as Go's `json.Indent` does.
pub fn pretty(s: &str) -> String {
    let compacted = compact(s);
    let mut out = String::with_capacity(compacted.len() * 2);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    let mut chars = compacted.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                if matches!(chars.peek(), Some('}') | Some(']')) {
                    out.push(chars.next().unwrap_or(']'));
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let v = r#"{"a": {"b": [1, "x\u0026y", {"c": true}]}, "d": "e", "k\"q": 2, "f": -1.5e3}"#;
        let b = path(v, &["a", "b"]).unwrap();
        assert_eq!(kind(b), Kind::Array);
        assert_eq!(text(index(b, 0).unwrap()), "1");
        assert_eq!(text(index(b, 1).unwrap()), "x&y");
        assert_eq!(text(index(b, 2).unwrap()), r#"{"c":true}"#);
        assert_eq!(index(b, 3), None);
        assert_eq!(string(get(v, "d").unwrap()).unwrap(), "e");
        assert_eq!(get(v, "k\"q"), Some("2"));
        assert_eq!(get(v, "f"), Some("-1.5e3"));
        assert!(get(v, "zz").is_none());
        assert!(get(b, "a").is_none());
        assert_eq!(entries(v).unwrap().len(), 4);
        assert_eq!(elements("[]").unwrap().len(), 0);
        assert_eq!(elements("[ 1 , [2,3] ]").unwrap(), vec!["1", "[2,3]"]);
        assert!(get("{}", "a").is_none());
        assert_eq!(
            pick(r#"{"d":1,"a":2,"d":3,"b":4}"#, ["d", "b", "z"]),
            [Some("1"), Some("4"), None]
        );
        assert_eq!(pick("[1]", ["a"]), [None]);
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for s in [
            "",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":[1,",
            "[",
            "[1",
            "\"",
            "\"\\",
            "{\"a\":1,}",
            "}",
            "{\"a\" 1}",
        ] {
            let _ = get(s, "a");
            let _ = elements(s);
            let _ = entries(s);
            let _ = string(s);
            let _ = index(s, 1);
        }
    }

    #[test]
    fn pretty_like_go() {
        assert_eq!(
            pretty(r#"{"a":[1,2],"b":{},"c":"x, y"}"#),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": \"x, y\"\n}"
        );
    }
}
