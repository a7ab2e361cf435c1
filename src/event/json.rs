//! Lazy access into raw JSON: look a key up, walk an array, read a string,
//! without building a tree. Everything borrows from the input buffer; only
//! strings with escapes and re-rendered objects allocate.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// The JSON type of a raw value, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Other,
}

pub fn kind(v: &RawValue) -> Kind {
    match v.get().as_bytes().first() {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::String,
        _ => Kind::Other,
    }
}

pub fn is_null(v: &RawValue) -> bool {
    v.get() == "null"
}

/// The value of `key` in a JSON object (the first one, if repeated).
pub fn get<'a>(v: &'a RawValue, key: &str) -> Option<&'a RawValue> {
    if kind(v) != Kind::Object {
        return None;
    }
    let mut found = None;
    let seed = FindKey {
        key,
        found: &mut found,
    };
    let mut de = serde_json::Deserializer::from_str(v.get());
    // The seed stops the scan with an error as soon as the key is found.
    let _ = de.deserialize_map(seed);
    found
}

/// Walks a path of object keys.
pub fn path<'a>(mut v: &'a RawValue, keys: &[&str]) -> Option<&'a RawValue> {
    for k in keys {
        v = get(v, k)?;
    }
    Some(v)
}

/// Element `i` of an array.
pub fn index(v: &RawValue, i: usize) -> Option<&RawValue> {
    elements(v)?.into_iter().nth(i)
}

/// The elements of a JSON array.
pub fn elements(v: &RawValue) -> Option<Vec<&RawValue>> {
    if kind(v) != Kind::Array {
        return None;
    }
    serde_json::from_str::<Vec<&RawValue>>(v.get()).ok()
}

/// The entries of a JSON object, in order.
pub fn entries(v: &RawValue) -> Option<Vec<(Cow<'_, str>, &RawValue)>> {
    if kind(v) != Kind::Object {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(v.get());
    de.deserialize_map(Entries).ok()
}

/// A JSON string's value; `None` for other types.
pub fn string(v: &RawValue) -> Option<Cow<'_, str>> {
    if kind(v) != Kind::String {
        return None;
    }
    match serde_json::from_str::<&str>(v.get()) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(v.get()).ok().map(Cow::Owned),
    }
}

/// A value as Falco renders it: strings unquoted, everything else as
/// compact JSON (numbers and booleans as written).
pub fn text(v: &RawValue) -> Cow<'_, str> {
    match string(v) {
        Some(s) => s,
        None => compact(v.get()),
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

struct FindKey<'k, 'a, 'f> {
    key: &'k str,
    found: &'f mut Option<&'a RawValue>,
}

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("found")
    }
}

impl<'de, 'f> DeserializeSeed<'de> for FindKey<'_, 'de, 'f> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'f> Visitor<'de> for FindKey<'_, 'de, 'f> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            if k == self.key {
                *self.found = Some(map.next_value::<&'de RawValue>()?);
                return Err(de::Error::custom(Stop));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

struct Entries;

impl<'de> Visitor<'de> for Entries {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            out.push((k, map.next_value::<&'de RawValue>()?));
        }
        Ok(out)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom("not an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn lookups() {
        let v = raw(r#"{"a": {"b": [1, "x\u0026y", {"c": true}]}, "d": "e"}"#);
        let b = path(v, &["a", "b"]).unwrap();
        assert_eq!(kind(b), Kind::Array);
        assert_eq!(text(index(b, 0).unwrap()), "1");
        assert_eq!(text(index(b, 1).unwrap()), "x&y");
        assert_eq!(text(index(b, 2).unwrap()), r#"{"c":true}"#);
        assert_eq!(string(get(v, "d").unwrap()).unwrap(), "e");
        assert!(get(v, "zz").is_none());
        assert!(get(b, "a").is_none());
        assert_eq!(entries(v).unwrap().len(), 2);
    }

    #[test]
    fn pretty_like_go() {
        assert_eq!(
            pretty(r#"{"a":[1,2],"b":{},"c":"x, y"}"#),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": \"x, y\"\n}"
        );
    }
}
