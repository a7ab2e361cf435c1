//! The shipped rules: their `saker test` file passes, and every rule has a
//! case that fires it and a near miss that must not.

use std::collections::BTreeSet;

use super::*;

#[test]
fn shipped_rule_tests_pass() {
    let file = root().join("rules/tests/k8s_audit_test.yaml");
    let stateful = root().join("rules/tests/k8s_audit_stateful_test.yaml");
    let out = saker()
        .args(["test", file.to_str().unwrap(), stateful.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
    // The embedded copy is the same file.
    let embedded = saker().arg("test").output().unwrap();
    assert!(embedded.status.success());
}

#[test]
fn every_shipped_rule_has_a_firing_case_and_a_near_miss() {
    let loaded = saker::rules::load(&saker::rules::default_sources());
    let set = loaded.rules.expect("default rules load");
    assert!(set.rules.len() >= 25, "only {} rules", set.rules.len());
    let mut tests = Vec::new();
    for file in ["k8s_audit_test.yaml", "k8s_audit_stateful_test.yaml"] {
        let text = std::fs::read_to_string(root().join("rules/tests").join(file)).unwrap();
        let docs = saker::rules::yaml::parse(&text).unwrap();
        tests.extend(docs[0].get("tests").unwrap().as_seq().unwrap().to_vec());
    }
    let mut fired = BTreeSet::new();
    let mut near_misses = Vec::new();
    for t in tests {
        let name = t.get("name").unwrap().as_str().unwrap();
        for e in t.get("expect").unwrap().as_seq().unwrap() {
            fired.insert(e.get("rule").unwrap().as_str().unwrap().to_string());
        }
        if let Some((subject, _)) = name.split_once(": near miss") {
            // Other rules may fire on a near miss's events (an exec is an
            // exec), never the rule it is a near miss of.
            assert!(
                !t.get("expect").unwrap().as_seq().unwrap().iter().any(|e| e
                    .get("rule")
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .starts_with(subject)),
                "near miss {name} expects its rule"
            );
            near_misses.push(subject.to_string());
        }
    }
    for r in &set.rules {
        assert!(fired.contains(&r.name), "no test fires rule {:?}", r.name);
        assert!(
            near_misses.iter().any(|s| r.name.starts_with(s.as_str())),
            "no near miss for rule {:?}",
            r.name
        );
        assert!(
            r.tags
                .iter()
                .any(|t| t.starts_with('T')
                    && t[1..].chars().next().is_some_and(|c| c.is_ascii_digit())),
            "rule {:?} has no MITRE ATT&CK technique tag",
            r.name
        );
    }
}

#[test]
fn failing_rule_test_prints_a_diff_and_exits_1() {
    let file = golden("ruletest/failing.yaml");
    let out = saker()
        .args(["test", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("- expected: "), "{text}");
    assert!(text.contains("+ got:"), "{text}");
    assert!(
        text.contains("output_fields.ka.user.name: expected \"bob\", got \"alice\""),
        "{text}"
    );
    assert!(text.contains("+ extra:"), "{text}");
    assert!(text.contains("rule tests: 1 passed, 2 failed"), "{text}");
}

#[test]
fn unusable_test_files_exit_2() {
    let out = saker()
        .args(["test", "/nonexistent/tests.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/tests.yaml"));
    let bad_rules = golden("ruletest/bad_rules.yaml");
    let out = saker()
        .args(["test", bad_rules.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the rule files do not load"), "{err}");
    assert!(err.contains("several_errors.yaml:9:25"), "{err}");
}
