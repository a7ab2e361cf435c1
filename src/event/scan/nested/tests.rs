//! The one-pass reading of a document string against the two passes it
//! stands for: [`unescape::string_into`], then [`Tape::scan`] of the result.

use proptest::prelude::*;

use super::super::tests::{jsonish, long_jsonish};
use super::Tape;
use crate::event::unescape;

/// What the two passes make of the string at `b[open]`, appended to a
/// buffer holding `prefix`: where the string ends, the value, and the tape
/// (`None` where either pass refuses).
fn two_passes(b: &[u8], open: usize, prefix: &[u8]) -> Option<(usize, Vec<u8>, Tape)> {
    let mut out = prefix.to_vec();
    let end = unescape::string_into(b, open, &mut out)?;
    let value = out.split_off(prefix.len());
    let mut tape = Tape::default();
    tape.scan(std::str::from_utf8(&value).ok()?).ok()?;
    Some((end, value, tape))
}

/// Checks the one pass against the two on the string at `b[open]`;
/// returns whether the one pass took it.
fn check(b: &[u8], open: usize, prefix: &[u8]) -> bool {
    let mut out = prefix.to_vec();
    let mut tape = Tape::default();
    let Some(end) = tape.scan_string(b, open, &mut out) else {
        return false;
    };
    let (theirs_end, theirs_value, theirs_tape) =
        two_passes(b, open, prefix).unwrap_or_else(|| {
            panic!(
                "taken by one pass, refused by two: {:?}",
                String::from_utf8_lossy(b)
            )
        });
    assert_eq!(&out[..prefix.len()], prefix, "the buffer's start is kept");
    assert_eq!(end, theirs_end);
    assert_eq!(
        String::from_utf8_lossy(&out[prefix.len()..]),
        String::from_utf8_lossy(&theirs_value)
    );
    assert_eq!(
        tape.nodes(),
        theirs_tape.nodes(),
        "{:?}",
        String::from_utf8_lossy(b)
    );
    assert_eq!(tape.is_compact(), theirs_tape.is_compact());
    true
}

/// `text` as the value of a JSON string, in an envelope: the string's bytes
/// and where it opens.
fn in_envelope(text: &str, tail: &str) -> (Vec<u8>, usize) {
    let lead = "{\"records\":[{\"log\":";
    let s = format!("{lead}{}{tail}", serde_json::to_string(text).unwrap());
    (s.into_bytes(), lead.len())
}

#[test]
fn documents_as_the_api_server_writes_them() {
    for text in [
        r#"{"kind":"Event","verb":"get","user":{"username":"a","groups":["x","y"]},"n":-1.5e3,"ok":true,"no":false,"z":null}"#,
        r#"[1,[2,3],{},[],"",null,false,0,-0.0e+1]"#,
        r#"{"a":{"b":{"c":{}}},"e":[[[]]]}"#,
        r#"{"k\"q":"v\\w","u":"\u003cb\u003e","s":"a/b","t":"\n\t\r\b\f","p":"\/"}"#,
        r#"{"a long key with no escapes in it at all":"and a value over sixteen bytes long"}"#,
        r#"{"ünïcödé":"é€😀"}"#,
        "{}",
        "[]",
    ] {
        for tail in [
            "",
            "}]}",
            ",\"stream\":\"stdout\"}]}",
            ",\"a\\\"b\":\"\\\"\"}]}",
        ] {
            let (b, open) = in_envelope(text, tail);
            assert!(check(&b, open, b""), "{text} not taken");
            assert!(check(&b, open, b"earlier documents"), "{text} not taken");
            // Some encoders write every `/` as `\/`.
            let slashes = String::from_utf8(b).unwrap().replace('/', "\\/");
            assert!(check(slashes.as_bytes(), open, b""), "{slashes} not taken");
        }
    }
}

#[test]
fn what_it_leaves_to_the_two_passes() {
    for escaped in [
        // Whitespace, outside strings and escaped.
        r#""{\"a\": 1}""#,
        r#""{\"a\":1}\n""#,
        r#"" {\"a\":1}""#,
        // A character the outer string escaped.
        r#""{\"a\":\"\u00e9\"}""#,
        // Not an object or array.
        r#""\"just a string\"""#,
        r#""12""#,
        // Invalid documents and strings.
        r#""{\"a\":1""#,
        r#""{\"a\":1}}""#,
        r#""{\"a\":\"x\ny\"}""#,
        r#""{\"a\":\"\\q\"}""#,
        r#""{\"a\":01}""#,
        // The outer string ends inside the document, and the envelope
        // goes on as if it were the document's.
        r#""{\"a\":\"x"#,
        r#""{x"k\":1}""#,
        r#""{\"a\":1,x"b\":2}""#,
        r#""[1,"b\"]""#,
        r#""{\"a\":"#,
        "\"{\\\"a\\\":\"}\"",
    ] {
        let b = escaped.as_bytes();
        let mut tape = Tape::default();
        assert_eq!(
            tape.scan_string(b, 0, &mut Vec::new()),
            None,
            "{escaped} taken"
        );
    }
}

#[test]
fn strings_at_every_offset_of_the_blocks() {
    for n in 0..70 {
        let body = "a".repeat(n);
        for text in [
            format!(r#"{{"{body}":"{body}"}}"#),
            format!(r#"["{body}\"","\\{body}",1]"#),
            format!(r#"{{"k{body}\u0026":[{body:?}]}}"#),
        ] {
            for tail in ["", "}", ",\"pod\":\"kube-apiserver-1\"}]}"] {
                let (b, open) = in_envelope(&text, tail);
                assert!(check(&b, open, b""), "{text}");
            }
        }
    }
}

#[test]
fn every_backslash_replaced() {
    // Each backslash of escaped documents in turn made another byte, or
    // taken out: a `\"` without its own ends the outer string early.
    for text in [
        r#"{"kind":"Event","user":{"groups":["a","b\"c"]},"n":1,"o":{},"l":[]}"#,
        r#"[{"k\\":"\u0026"},"x/y",true,null]"#,
    ] {
        let escaped = serde_json::to_string(text).unwrap();
        for (at, _) in escaped.match_indices('\\') {
            for by in ["x", "\"", " ", "", "\\\\"] {
                let mut s = escaped.clone();
                s.replace_range(at..at + 1, by);
                let b = format!("{s},\"k\":\"v\\\"w\"}}]}}");
                check(b.as_bytes(), 0, b"");
            }
        }
    }
}

/// An escaped document with something put in at one place, or put in
/// place of one character, so that near misses of the outer string's
/// escapes are common (a `\"` whose backslash became another byte ends the
/// outer string early).
fn mangled() -> impl Strategy<Value = (String, usize, &'static str, bool)> {
    let insert = prop::sample::select(vec![
        "\\", "\\\\", "\"", "\\\"", "\\/", "\\n", "\\u00e9", " ", "\\\\u", "\u{1}", "x",
    ]);
    (long_jsonish(), any::<usize>(), insert, any::<bool>())
}

proptest! {
    #[test]
    fn agrees_with_the_two_passes(text in jsonish(), tail in prop::sample::select(vec!["", "}", ",\"stream\":\"stdout\"}]}", ",\"k\":\"v\\\"w\"}"])) {
        let (b, open) = in_envelope(&text, tail);
        check(&b, open, b"");
    }

    #[test]
    fn long_documents_agree_with_the_two_passes(text in long_jsonish()) {
        // Compact, as the API server writes them, so that most are taken.
        let compact = crate::event::json::compact(&text);
        let (b, open) = in_envelope(&compact, "}]}");
        let taken = check(&b, open, b"prefix");
        if serde_json::from_str::<serde::de::IgnoredAny>(&compact).is_ok() && compact.is_ascii() {
            prop_assert!(taken, "{:?} not taken", compact);
        }
    }

    #[test]
    fn mangled_strings_agree_with_the_two_passes((text, at, insert, replace) in mangled()) {
        let escaped = serde_json::to_string(&crate::event::json::compact(&text)).unwrap();
        let mut at = at % escaped.len();
        while !escaped.is_char_boundary(at) {
            at -= 1;
        }
        let s = if replace {
            let mut s = escaped.clone();
            let next = at + s[at..].chars().next().map_or(0, char::len_utf8);
            s.replace_range(at..next, insert);
            s
        } else {
            format!("{}{insert}{}", &escaped[..at], &escaped[at..])
        };
        // Inside an envelope that goes on, as the outer string would.
        let b = format!("{s},\"k\":\"v\\\"w\"}}]}}");
        check(b.as_bytes(), 0, b"");
    }
}
