//! Sequence and first-seen rules end to end: the semantics cases of DESIGN
//! 2.4 and 2.5 as rule tests, their diagnostics, and the alerts' shape.

use super::*;

#[test]
fn semantics_cases_pass() {
    for file in [
        "sequences/semantics_test.yaml",
        "sequences/eviction_test.yaml",
    ] {
        assert_rule_tests_pass(file);
    }
}

#[test]
fn sequence_diagnostics() {
    super::diagnostics::check_golden("sequence_errors", 1);
}

fn ev(id: &str, sec: u32, verb: &str, resource: &str, user: &str) -> String {
    format!(
        r#"{{"auditID":"{id}","stage":"ResponseComplete","verb":"{verb}","user":{{"username":"{user}"}},"objectRef":{{"resource":"{resource}","namespace":"default","name":"x"}},"stageTimestamp":"2024-10-29T12:00:{sec:02}.500Z"}}"#
    )
}

#[test]
fn alerts_carry_the_sequence_and_the_first_seen_state() {
    let rules = golden("sequences/rules.yaml");
    let input = [
        ev("a1", 0, "create", "seq", "alice"),
        ev("b1", 4, "delete", "seq", "alice"),
        ev("f1", 12, "get", "fs", "bob"),
    ]
    .join("\n");
    let out = run_with_stdin(
        &["run", "--rules", rules.to_str().unwrap()],
        input.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = alerts(&out);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0]["rule"], "AB");
    assert_eq!(a[0]["time"], "2024-10-29T12:00:04.500000000Z");
    assert_eq!(
        a[0]["sequence"],
        serde_json::json!({
            "within": "10s",
            "key": ["alice"],
            "steps": [
                {"name": "a", "time": "2024-10-29T12:00:00.500000000Z", "auditID": "a1"},
                {"name": "b", "time": "2024-10-29T12:00:04.500000000Z", "auditID": "b1"},
            ],
        })
    );
    assert_eq!(
        a[0]["output"],
        "12:00:04.500000000: Warning alice a=a1 b=b1 last=b1"
    );
    assert!(a[0].get("aggregate").is_none());
    assert_eq!(a[1]["rule"], "First");
    assert_eq!(
        a[1]["aggregate"],
        serde_json::json!({"state": "new", "key": {"ka.user.name": "bob"}, "window": "10s", "previous": null})
    );
    assert_eq!(
        a[1]["output"],
        "12:00:12.500000000: Notice bob new in 10s (new)"
    );
    assert_eq!(a[1]["output_fields"]["agg.state"], "new");
}

#[test]
fn text_output_and_summary_count_the_state() {
    let rules = golden("sequences/rules.yaml");
    let input = [
        ev("a1", 0, "create", "seq", "alice"),
        ev("x1", 30, "create", "seq", "bob"),
        ev("b1", 10, "delete", "seq", "alice"),
    ]
    .join("\n");
    let out = run_with_stdin(
        &[
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--output",
            "text",
        ],
        input.as_bytes(),
    );
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "the late delete completes nothing");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sequences and first-seen: 1 keys held, 1 late events, 0 keys evicted"),
        "{err}"
    );
}
