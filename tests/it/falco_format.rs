//! Falco rules-file features beyond the shipped rules: exceptions, appends,
//! overrides, disabled rules, transformers and operators, end to end.

use super::*;

fn run_rules(rules: &str, input: &str) -> Vec<serde_json::Value> {
    let path = golden(rules);
    let out = run_with_stdin(
        &[
            "run",
            "--rules",
            path.to_str().unwrap(),
            "--rule-matching",
            "all",
        ],
        input.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    alerts(&out)
}

fn names(alerts: &[serde_json::Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["rule"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn exceptions_in_both_forms() {
    let ev = |user: &str, ns: &str| {
        exec_event("p", 1)
            .replace("\"alice\"", &format!("{user:?}"))
            .replace("\"namespace\":\"shop\"", &format!("\"namespace\":{ns:?}"))
    };
    let input = [
        ev("alice", "shop"),
        ev("bob", "shop"),
        ev("carol", "ci"),
        ev("carol", "shop"),
        ev("dave", "x"),
    ]
    .join("\n");
    let got = run_rules("falco/exceptions.yaml", &input);
    let users = output_field(&got, "ka.user.name");
    // alice: excepted by the single-field form; bob: by a list value;
    // carol in ci: by the two-field form; dave: by a value from a named list.
    assert_eq!(users, ["carol", "carol"]);
    // The second rule excepts carol in ci through `jevt.value[/objectRef/namespace]`.
    let rules: Vec<_> = got
        .iter()
        .map(|a| a["rule"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rules, ["Exec", "Exec With Field Argument Exception"]);
}

#[test]
fn operators_and_transformers() {
    // The user name is base64 ("alice") for the b64() check.
    let input = exec_event("web-Frontend-1", 7).replace("\"alice\"", "\"YWxpY2U=\"");
    let got = names(&run_rules("falco/operators.yaml", &input));
    assert_eq!(
        got,
        [
            "eq",
            "ne-missing-is-false-not",
            "contains",
            "icontains",
            "startswith",
            "endswith",
            "glob",
            "iglob",
            "regex-full",
            "in",
            "intersects-list",
            "in-list-all",
            "pmatch",
            "exists",
            "tolower",
            "toupper",
            "len-list",
            "len-string",
            "basename",
            "b64",
            "val",
            "json-pointer",
            "numeric-string-compare",
            "concat",
            "join"
        ]
    );
}

#[test]
fn append_override_and_enabled() {
    let got = names(&run_rules(
        "falco/append_override.yaml",
        &exec_event("p", 1),
    ));
    assert_eq!(
        got,
        ["Appended Condition", "Replaced Priority", "Enabled Again"]
    );
    let a = &run_rules("falco/append_override.yaml", &exec_event("p", 1))[1];
    assert_eq!(a["priority"], "Critical");
    assert_eq!(a["tags"], serde_json::json!(["a", "b"]));
}

#[test]
fn missing_values_render_na_and_null() {
    let got = run_rules("falco/missing.yaml", &exec_event("p", 1));
    assert_eq!(got.len(), 1);
    assert!(
        got[0]["output"]
            .as_str()
            .unwrap()
            .ends_with("impersonated=<NA> groups=(system:authenticated)"),
        "{}",
        got[0]["output"]
    );
    assert_eq!(
        got[0]["output_fields"]["ka.impuser.name"],
        serde_json::Value::Null
    );
    assert_eq!(
        got[0]["output_fields"]["ka.user.groups"],
        serde_json::json!(["system:authenticated"])
    );
}
