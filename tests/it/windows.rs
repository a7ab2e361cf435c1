//! Windowed rules end to end: the semantics cases of DESIGN 2.3 as rule
//! tests, the command-line settings, and the alert shape.

use super::*;

fn events(list: &[(u32, &str)]) -> String {
    list.iter()
        .map(|(sec, user)| {
            format!(
                r#"{{"auditID":"a{sec}","stage":"ResponseComplete","verb":"get","user":{{"username":"{user}"}},"objectRef":{{"resource":"burst","namespace":"default"}},"stageTimestamp":"2024-10-29T12:00:{sec:02}.250000Z"}}"#
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn semantics_cases_pass() {
    for file in ["windows/semantics_test.yaml", "windows/absence_test.yaml"] {
        assert_rule_tests_pass(file);
    }
}

#[test]
fn aggregate_diagnostics() {
    super::diagnostics::check_golden("aggregate_errors", 1);
}

#[test]
fn alert_carries_the_aggregate() {
    let rules = golden("windows/rules.yaml");
    let input = events(&[(0, "alice"), (2, "alice"), (4, "alice")]);
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
    assert_eq!(a.len(), 2);
    let agg = &a[0]["aggregate"];
    assert_eq!(agg["state"], "firing");
    assert_eq!(agg["key"], serde_json::json!({"ka.user.name": "alice"}));
    assert_eq!(agg["value"], 3);
    assert_eq!(agg["threshold"], 3);
    assert_eq!(agg["window"], "10s");
    assert_eq!(agg["for"], serde_json::Value::Null);
    assert_eq!(agg["starts_at"], "2024-10-29T12:00:04.000000000Z");
    assert_eq!(agg["ends_at"], serde_json::Value::Null);
    assert_eq!(a[0]["time"], "2024-10-29T12:00:04.000000000Z");
    assert_eq!(a[0]["output"], "12:00:04.000000000: Warning alice 3");
    assert_eq!(a[1]["aggregate"]["state"], "resolved");
    assert_eq!(
        a[1]["aggregate"]["ends_at"],
        "2024-10-29T12:00:10.000000000Z"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("saker: windows: "), "{err}");
}

#[test]
fn lateness_decides_what_is_late() {
    let rules = golden("windows/rules.yaml");
    let input = events(&[(10, "alice"), (14, "alice"), (11, "alice")]);
    let run = |lateness: &str| {
        let out = run_with_stdin(
            &[
                "run",
                "--rules",
                rules.to_str().unwrap(),
                "--lateness",
                lateness,
            ],
            input.as_bytes(),
        );
        assert!(out.status.success());
        alerts(&out)
            .iter()
            .map(|a| {
                (
                    a["aggregate"]["state"].as_str().unwrap().to_string(),
                    a["time"].as_str().unwrap()[11..19].to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    // Within 5s the event at 11 is in time: three events at tick 14.
    assert_eq!(
        run("5s"),
        [
            ("firing".into(), "12:00:14".into()),
            ("resolved".into(), "12:00:20".into())
        ]
    );
    // With no lateness it is late: it counts only from tick 15 on.
    assert_eq!(
        run("0s"),
        [
            ("firing".into(), "12:00:15".into()),
            ("resolved".into(), "12:00:20".into())
        ]
    );
}

#[test]
fn resolution_must_divide_windows() {
    let rules = golden("windows/rules.yaml");
    let out = saker()
        .args([
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--resolution",
            "7s",
            "--input",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("not a whole number of ticks of the resolution (7s)"));
    let out = saker()
        .args(["run", "--resolution", "fast"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn key_cap_evicts_and_counts() {
    let rules = golden("windows/rules.yaml");
    let input = events(&[(0, "a"), (1, "b"), (2, "c"), (3, "d")]);
    let out = run_with_stdin(
        &["run", "--rules", rules.to_str().unwrap(), "--max-keys", "2"],
        input.as_bytes(),
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 keys evicted"), "{err}");
}
