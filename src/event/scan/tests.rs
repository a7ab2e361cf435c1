//! The scan against serde_json (which documents are JSON) and against the
//! lazy scanner of `json` (where each value is).

use proptest::prelude::*;
use serde::de::IgnoredAny;

use super::{Invalid, Tape};
use crate::event::json;

fn accepts(text: &str) -> bool {
    Tape::default().scan(text).is_ok()
}

fn serde_accepts(text: &str) -> bool {
    serde_json::from_str::<IgnoredAny>(text).is_ok()
}

/// Every node's text against the lazy scanner: the entries of each object
/// and the elements of each array, span for span.
fn check_spans(text: &str) {
    let mut tape = Tape::default();
    tape.scan(text).unwrap();
    let nodes = tape.nodes();
    assert_eq!(nodes[0].end as usize, text.trim_end().len());
    // Compact exactly when no whitespace is outside the strings.
    assert_eq!(tape.is_compact(), json::compact(text) == text, "{text:?}");
    for (i, n) in nodes.iter().enumerate() {
        let v = &text[n.start as usize..n.end as usize];
        assert!(serde_accepts(v), "node {i}: {v:?}");
        let children: Vec<(&str, &str)> = tape
            .children(i)
            .map(|(_, c)| {
                (
                    &text[c.key as usize..c.key_end as usize],
                    &text[c.start as usize..c.end as usize],
                )
            })
            .collect();
        // A key is read as written exactly when it holds no escape.
        for (_, c) in tape.children(i) {
            let raw = &text[c.key as usize..c.key_end as usize];
            let plain = (json::kind(v) == json::Kind::Object && !raw.contains('\\'))
                .then(|| &raw[1..raw.len() - 1]);
            assert_eq!(c.plain_key(text), plain, "{raw:?}");
        }
        match json::kind(v) {
            json::Kind::Object => assert_eq!(children, json::raw_entries(v).unwrap()),
            json::Kind::Array => {
                let elements: Vec<(&str, &str)> = json::elements(v)
                    .unwrap()
                    .into_iter()
                    .map(|e| ("", e))
                    .collect();
                assert_eq!(children, elements);
            }
            _ => assert!(children.is_empty()),
        }
        assert_eq!(tape.at(n.start as usize), Some(i));
    }
}

#[test]
fn documents() {
    for text in [
        r#"{"a": {"b": [1, "x\u0026y", {"c": true}]}, "d": "e", "k\"q": 2, "f": -1.5e3}"#,
        r#"  [ 1 , [2,3] , {} , [] , "" , null , false , 0 , -0.0e+1 ]  "#,
        r#"{"a":{"b":{"c":{}}},"e":[[[]]]}"#,
        r#""just a string""#,
        "12",
        "\"a long string with no escapes in it at all, over sixteen bytes\"",
        "\"ünïcödé and \\\" and \\\\ and \\/ \\b\\f\\n\\r\\t \\uD83D\\ude00\"",
        "{\"x\":\"\\ud800\"}",
        // Keys with an escape past the first sixteen bytes, and in the
        // last bytes of the text.
        "{\"a key longer than sixteen bytes\\\"q\":1,\"plain key, also long enough\":2,\"k\\n\":3}",
    ] {
        assert!(accepts(text), "{text}");
        assert!(serde_accepts(text), "{text}");
        check_spans(text);
    }
}

#[test]
fn refusals() {
    for text in [
        "",
        " ",
        "{",
        "}",
        "[",
        "]",
        "{\"a\"",
        "{\"a\":",
        "{\"a\":1,}",
        "[1,]",
        "[,1]",
        "{\"a\" 1}",
        "{a:1}",
        "{\"a\":1 \"b\":2}",
        "[1 2]",
        "01",
        "1.",
        ".5",
        "1e",
        "1e+",
        "-",
        "+1",
        "tru",
        "nul",
        "falsey",
        "[true false]",
        "\"\\x\"",
        "\"\\u12g4\"",
        "\"\\u12\"",
        "\"tab\there\"",
        "\"nl\nhere\"",
        "\"unterminated",
        "{\"a\":1}}",
        "[1]]",
        "{\"a\":1} x",
        "[}",
        "{]",
        "{\"a\":[1}",
        "{1:2}",
        "\"\\\"",
        "\u{0}",
        "[\"a\u{1f}b\"]",
    ] {
        assert!(!accepts(text), "{text:?} accepted");
        assert!(!serde_accepts(text), "{text:?} accepted by serde_json");
    }
}

#[test]
fn deep_nesting_needs_no_thread_stack() {
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    assert!(accepts(&deep));
    let unbalanced = format!("{}{}", "[".repeat(200_000), "]".repeat(199_999));
    assert!(!accepts(&unbalanced));
}

#[test]
fn refusal_says_where() {
    assert_eq!(Tape::default().scan("[1"), Err(Invalid::At(2)));
    assert_eq!(Tape::default().scan("{\"a\":tru}"), Err(Invalid::At(5)));
}

#[test]
fn every_position_in_a_block() {
    // The quote, the escape or the control character at each offset around
    // the sixteen-byte blocks, over several of them, from several starting
    // offsets.
    for pad in 0..3 {
        for n in 0..140 {
            let body = "a".repeat(n);
            let lead = " ".repeat(pad);
            assert!(accepts(&format!("{lead}\"{body}\"")));
            assert!(accepts(&format!("{lead}\"{body}\\n{body}\"")));
            assert!(!accepts(&format!("{lead}\"{body}\u{1}{body}\"")));
            assert!(!accepts(&format!("{lead}\"{body}")));
            check_spans(&format!("{lead}[\"{body}\",\"{body}\\\"\"]"));
        }
    }
}

#[test]
fn backslash_runs_across_blocks() {
    // Runs of backslashes ending before, at and after offset 64, past
    // several of the sixteen-byte blocks a string is crossed in: an odd
    // run escapes the quote after it (the string goes on), an even one
    // does not (the string ends there).
    for lead in 55..70 {
        for run in 0..8 {
            let text = format!("[\"{}{}\"]", "a".repeat(lead), "\\".repeat(run));
            let closed = format!("{text}\"]");
            let expect = serde_accepts(&text);
            assert_eq!(accepts(&text), expect, "{lead} + {run}: {text:?}");
            assert_eq!(accepts(&closed), serde_accepts(&closed), "{closed:?}");
            if expect {
                check_spans(&text);
            }
        }
    }
}

/// JSON-like text: fragments of tokens, so that near misses are common.
pub(super) fn jsonish() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        " ",
        "\"a\"",
        "\"b\\\"\"",
        "\"\\u00e9\"",
        "\"\\q\"",
        "\"",
        "1",
        "-2.5e3",
        "0",
        "01",
        "1.",
        "true",
        "false",
        "null",
        "nul",
        "\\",
        "\t",
        "\n",
        "\"x\ty\"",
        "\"long string over sixteen bytes\"",
        "é",
    ]);
    prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

/// Longer JSON-like text, over many sixteen-byte blocks: mostly valid
/// pieces with a near miss now and then.
pub(super) fn long_jsonish() -> impl Strategy<Value = String> {
    let valid = prop::sample::select(vec![
        "{\"key\":\"value\"}",
        "[1,2.5,-3e2,true,false,null]",
        "\"a string with \\\" and \\\\ inside it\"",
        "\"\\\\\\\\\\\\\"",
        "\"\\u00e9\\n\\t\"",
        "{\"a\":{\"b\":[{},[],\"\"]}}",
        " \"é\" ",
        "\n0\n",
    ]);
    let near_miss = prop::sample::select(vec![
        ",", ":", "\"", "\\", "\"x\ty\"", "01", "é", "\"\\q\"", "[}",
    ]);
    let piece = prop_oneof![30 => valid, 1 => near_miss];
    prop::collection::vec(piece, 0..40).prop_map(|p| {
        // Joined as the elements of one array, so that most are valid.
        format!("[{}]", p.join(","))
    })
}

proptest! {
    #[test]
    fn same_verdict_as_serde_json(text in jsonish()) {
        prop_assert_eq!(accepts(&text), serde_accepts(&text), "{:?}", text);
        if accepts(&text) {
            check_spans(&text);
        }
    }

    #[test]
    fn long_documents_have_the_verdict_of_serde_json(text in long_jsonish()) {
        prop_assert_eq!(accepts(&text), serde_accepts(&text), "{:?}", text);
        if accepts(&text) {
            check_spans(&text);
        }
    }

    #[test]
    fn any_bytes_are_a_verdict_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(text) = std::str::from_utf8(&bytes) {
            prop_assert_eq!(accepts(text), serde_accepts(text));
        }
    }
}

#[test]
fn long_documents_are_mostly_valid() {
    // The strategy above must give valid documents, or its test would
    // only ever compare refusals.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let valid = (0..200)
        .filter(|_| {
            let text = long_jsonish().new_tree(&mut runner).unwrap().current();
            accepts(&text)
        })
        .count();
    assert!(valid > 50, "{valid} of 200 valid");
}

#[test]
fn compactness() {
    for (text, compact) in [
        (r#"{"a":[1,{"b":"x y"}],"c":"\t"}"#, true),
        (r#"{"a": 1}"#, false),
        ("[1,\n2]", false),
        (" 1", false),
        ("1 ", false),
        ("\"a b\"", true),
    ] {
        let mut tape = Tape::default();
        tape.scan(text).unwrap();
        assert_eq!(tape.is_compact(), compact, "{text:?}");
        tape.clear();
        assert!(
            !tape.is_compact(),
            "a tape built by hand is not known compact"
        );
    }
    // A refused document says nothing.
    let mut tape = Tape::default();
    assert!(tape.scan("[1,]").is_err());
    assert!(!tape.is_compact());
}
