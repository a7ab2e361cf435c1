//! Property tests: the condition parser, the event decoder and the line
//! reader never panic, and the line reader agrees with a naive splitter.

use proptest::prelude::*;
use saker::event::decode_document;
use saker::rules::parser::{parse_condition, parse_output};
use saker::source::lines::{Line, LineReader};

/// Condition-like text: tokens of the language glued at random.
fn condition_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("ka.verb".to_string()),
        Just("ka.user.groups".to_string()),
        Just("jevt.value[/a/b]".to_string()),
        Just("and".to_string()),
        Just("or".to_string()),
        Just("not".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("=".to_string()),
        Just("!=".to_string()),
        Just("in".to_string()),
        Just("exists".to_string()),
        Just("contains".to_string()),
        Just("\"q\\\"x\"".to_string()),
        Just("'s'".to_string()),
        Just(",".to_string()),
        Just("tolower(".to_string()),
        Just("val(".to_string()),
        "[a-z_]{1,6}",
        "[ -~]{0,3}",
    ];
    prop::collection::vec(token, 0..24).prop_map(|t| t.join(" "))
}

/// A well-formed condition over a small grammar.
fn well_formed() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[a-z]{1,8}".prop_map(|v| format!("ka.verb = {v}")),
        "[a-z]{1,8}".prop_map(|v| format!("ka.target.name startswith \"{v}\"")),
        prop::collection::vec("[a-z]{1,5}", 0..4)
            .prop_map(|v| format!("ka.user.groups intersects ({})", v.join(", "))),
        Just("ka.uri.param[x] exists".to_string()),
        "[a-z][a-z0-9_]{0,6}".prop_filter("not a keyword", |m| !["and", "or", "not"]
            .contains(&m.as_str())),
    ];
    leaf.prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parser_never_panics(s in condition_soup()) {
        let _ = parse_condition(&s);
        let _ = parse_output(&s);
    }

    #[test]
    fn parser_never_panics_on_any_text(s in "\\PC{0,80}") {
        let _ = parse_condition(&s);
        let _ = parse_output(&s);
    }

    #[test]
    fn well_formed_conditions_parse(s in well_formed()) {
        prop_assert!(parse_condition(&s).is_ok(), "{}", s);
    }

    #[test]
    fn syntax_errors_point_inside_the_text(s in condition_soup()) {
        if let Err(e) = parse_condition(&s) {
            prop_assert!(e.span.0 <= s.len() + 1);
        }
    }

    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        decode_document(&bytes, |_| {}, |_| {});
    }

    #[test]
    fn decoder_never_panics_on_jsonish(s in "[\\[\\]{}\":,0-9a-zA-Z ]{0,200}") {
        decode_document(s.as_bytes(), |_| {}, |_| {});
        let wrapped = format!("{{\"auditID\":\"x\",\"stageTimestamp\":\"2024-01-01T00:00:00Z\",\"requestObject\":{s}}}");
        decode_document(wrapped.as_bytes(), |_| {}, |_| {});
    }

    #[test]
    fn line_reader_matches_naive_split(
        lines in prop::collection::vec("[a-z\\r]{0,40}", 0..30),
        max in 1usize..50,
        trailing_newline in any::<bool>(),
    ) {
        let mut input = lines.join("\n");
        if trailing_newline && !input.is_empty() {
            input.push('\n');
        }
        let mut expected: Vec<Option<String>> = Vec::new();
        for p in input.split_inclusive('\n') {
            let body = p.strip_suffix('\n').unwrap_or(p);
            expected.push(if body.len() > max { None } else { Some(body.strip_suffix('\r').unwrap_or(body).to_string()) });
        }
        let mut reader = LineReader::new(input.as_bytes(), max);
        let mut got = Vec::new();
        while let Some(l) = reader.next_line(&mut || {}).unwrap() {
            got.push(match l {
                Line::Text(t) => Some(String::from_utf8(t.to_vec()).unwrap()),
                Line::TooLong => None,
            });
        }
        prop_assert_eq!(got, expected);
    }
}
