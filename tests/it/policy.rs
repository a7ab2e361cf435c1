//! `saker policy lint|check|simulate` as a user runs them, on the
//! well-known policies (copies in tests/policies) and the shipped example.

use super::*;

fn run(args: &[&str]) -> Output {
    saker()
        .current_dir(root())
        .args(args)
        .output()
        .expect("run saker")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const POLICIES: [&str; 4] = [
    "kubernetes-docs-example",
    "gce-cos",
    "falco-k8saudit",
    "runbook-example",
];

#[test]
fn lint_of_the_well_known_policies_matches_the_golden_files() {
    for name in POLICIES {
        let path = format!("tests/policies/{name}.yaml");
        let o = run(&["policy", "lint", &path]);
        assert_golden(&golden(&format!("policy/{name}.lint.txt")), &stdout(&o));
        let errors = stdout(&o).lines().any(|l| l.starts_with("error["));
        assert_eq!(o.status.code(), Some(if errors { 1 } else { 0 }), "{name}");
    }
}

#[test]
fn the_runbook_policy_is_flagged_for_secret_values_and_no_catch_all() {
    let o = run(&["policy", "lint", "tests/policies/runbook-example.yaml"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("error[sensitive-body]: secrets are logged at RequestResponse"),
        "{out}"
    );
    assert!(
        out.contains("--> tests/policies/runbook-example.yaml:17:3"),
        "{out}"
    );
    assert!(out.contains("warning[no-catch-all]"), "{out}");
}

#[test]
fn gce_and_the_shipped_example_lint_clean() {
    let o = run(&["policy", "lint", "tests/policies/gce-cos.yaml"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("0 error(s), 0 warning(s)"),
        "{}",
        stdout(&o)
    );
    let o = run(&["policy", "lint", "examples/audit-policy.yaml"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).ends_with("examples/audit-policy.yaml: 0 error(s), 0 warning(s), 0 note(s)\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn falco_policy_lists_deployments_in_the_wrong_group() {
    let o = run(&[
        "policy",
        "lint",
        "--format",
        "json",
        "tests/policies/falco-k8saudit.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let wrong: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "wrong-group")
        .collect();
    assert_eq!(wrong.len(), 1, "{v}");
    assert_eq!(wrong[0]["line"], 14);
    assert_eq!(wrong[0]["column"], 27);
    assert_eq!(wrong[0]["severity"], "error");
    assert!(wrong[0]["help"].as_str().unwrap().contains("\"apps\""));
    assert_eq!(v["errors"], 3);
}

#[test]
fn unreadable_and_malformed_policies() {
    let o = run(&["policy", "lint", "tests/policies/missing.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let dir = std::env::temp_dir().join(format!("saker-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Requets\n",
    )
    .unwrap();
    let o = run(&["policy", "lint", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("bad.yaml:4:10") && out.contains("did you mean `Request`?"),
        "{out}"
    );
}

#[test]
fn check_tells_which_rules_a_policy_starves() {
    // The shipped example covers every shipped rule.
    let o = run(&["policy", "check", "examples/audit-policy.yaml"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("0 partly logged, 0 never logged"), "{out}");
    assert!(
        !out.lines()
            .any(|l| l.starts_with("never") || l.starts_with("partly")),
        "{out}"
    );

    // The docs example logs RBAC at Metadata: the body-reading RBAC rules
    // can never fire, and the deciding line is named.
    let o = run(&[
        "policy",
        "check",
        "tests/policies/kubernetes-docs-example.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let reports: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let get = |name: &str| reports.iter().find(|r| r["rule"] == name).unwrap().clone();
    let crb = get("Binding To Privileged Role Or Group");
    assert_eq!(crb["verdict"], "never");
    assert_eq!(crb["needs"], "Request");
    assert_eq!(crb["short"][0]["policy_line"], 67);
    assert_eq!(crb["short"][0]["level"], "Metadata");
    assert_eq!(get("Exec Into Pod")["verdict"], "ok");

    // The runbook logs exec only for admin's writes: partly; GCE drops
    // events, so event deletion is never seen.
    let o = run(&["policy", "check", "tests/policies/runbook-example.yaml"]);
    let out = stdout(&o);
    assert!(out.contains("partly            Exec Into Pod"), "{out}");
    let o = run(&["policy", "check", "tests/policies/gce-cos.yaml"]);
    let out = stdout(&o);
    assert!(
        out.contains("never             Kubernetes Events Deleted"),
        "{out}"
    );
    assert!(
        out.contains("decided by tests/policies/gce-cos.yaml:75 (level None)"),
        "{out}"
    );
}

/// A recorded event: `verb` on `resource` at `level`, with bodies.
fn recorded(id: &str, verb: &str, resource: &str, stage: &str, user: &str, body: usize) -> String {
    let obj = format!(r#"{{"kind":"X","data":"{}"}}"#, "v".repeat(body));
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"{id}","stage":"{stage}","requestURI":"/api/v1/namespaces/a/{resource}","verb":"{verb}","user":{{"username":"{user}","groups":["system:authenticated"]}},"objectRef":{{"resource":"{resource}","namespace":"a","name":"n","apiVersion":"v1"}},"responseStatus":{{"code":200}},"requestObject":{obj},"responseObject":{obj},"stageTimestamp":"2024-10-29T12:00:00Z"}}"#
    )
}

#[test]
fn simulate_gives_levels_and_kept_volume_by_rule() {
    let dir = std::env::temp_dir().join(format!("saker-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let events = dir.join("events.jsonl");
    let lines = [
        recorded("s1", "create", "secrets", "ResponseComplete", "alice", 1000),
        recorded("s2", "create", "secrets", "RequestReceived", "alice", 1000),
        recorded("p1", "create", "pods", "ResponseComplete", "alice", 1000),
        recorded("p2", "get", "pods", "ResponseComplete", "alice", 1000),
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"h1","stage":"ResponseComplete","requestURI":"/healthz","verb":"get","user":{"username":"system:anonymous","groups":["system:unauthenticated"]},"stageTimestamp":"2024-10-29T12:00:00Z"}"#.to_string(),
        "not an event".to_string(),
    ];
    std::fs::write(&events, lines.join("\n")).unwrap();
    let ev = events.to_str().unwrap();
    let o = run(&[
        "policy",
        "simulate",
        "examples/audit-policy.yaml",
        "--input",
        ev,
        "--format",
        "json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = &v["total"];
    assert_eq!(t["events"], 5);
    // RequestReceived (omitted) and /healthz (None) are dropped.
    assert_eq!(t["kept"], 3, "{v}");
    assert_eq!(t["by_level"]["Metadata"], 2, "{v}");
    assert_eq!(t["by_level"]["Request"], 1, "{v}");
    assert_eq!(t["by_level"]["None"], 2, "{v}");
    assert_eq!(v["skipped_lines"], 1);
    // The kept secret has no bodies; the created pod keeps its request.
    let by_line = |line: u64| {
        v["by_rule"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["policy_line"] == line)
            .cloned()
            .unwrap_or_else(|| panic!("no rule at line {line}: {v}"))
    };
    let secrets = by_line(51);
    assert!(secrets["kept_bytes"].as_u64().unwrap() < 600, "{secrets}");
    let writes = by_line(61);
    let kept = writes["kept_bytes"].as_u64().unwrap();
    let recorded = writes["recorded_bytes"].as_u64().unwrap();
    assert!(
        kept > 1000 && kept < recorded - 1000,
        "request body kept, response dropped: {writes}"
    );

    // Per-event verdicts.
    let o = run(&[
        "policy",
        "simulate",
        "examples/audit-policy.yaml",
        "--input",
        ev,
        "--events",
    ]);
    let verdicts: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let level = |id: &str| verdicts.iter().find(|x| x["audit_id"] == id).unwrap()["level"].clone();
    assert_eq!(level("s1"), "Metadata");
    assert_eq!(level("s2"), "None");
    assert_eq!(level("p1"), "Request");
    assert_eq!(level("p2"), "Metadata");
    assert_eq!(level("h1"), "None");
    let report = String::from_utf8_lossy(&o.stderr);
    assert!(report.contains("5 events"), "{report}");
}

/// A generated day: one `get` of a pod a minute from 2025-06-01T00:00Z to
/// 2025-06-02T00:00Z (1441 events, a span of exactly 86 400 s), each line
/// padded to 2 000 bytes, so the policy (Metadata for reads) keeps
/// 1441 × 2001 bytes a day.
fn generated_day(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..=1440u32 {
        let (day, hour, minute) = (1 + i / 1440, (i / 60) % 24, i % 60);
        let head = format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"day-{i:04}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/pods/web-{i}","verb":"get","user":{{"username":"alice","groups":["system:authenticated"]}},"objectRef":{{"resource":"pods","namespace":"shop","name":"web-{i}","apiVersion":"v1"}},"responseStatus":{{"code":200}},"stageTimestamp":"2025-06-{day:02}T{hour:02}:{minute:02}:00.000000Z","userAgent":""#
        );
        let pad = 2000 - head.len() - 2;
        text.push_str(&head);
        text.push_str(&"x".repeat(pad));
        text.push_str("\"}\n");
    }
    let path = dir.join("day.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn simulate_says_how_long_the_api_server_keeps_the_sample() {
    let o = run(&[
        "policy",
        "simulate",
        "examples/audit-policy.yaml",
        "--input",
        "examples/audit-sample.jsonl",
        "--audit-log-maxage=30",
        "--audit-log-maxbackup=10",
        "--audit-log-maxsize=100",
        "--audit-log-compress",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_golden(&golden("policy/simulate-sample.retention.txt"), &stdout(&o));
}

#[test]
fn simulate_retention_on_a_generated_day_names_the_limiting_flag() {
    let dir = std::env::temp_dir().join(format!("saker-retention-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let day = generated_day(&dir);
    let day = day.to_str().unwrap();
    let simulate = |extra: &[&str], format: &str| {
        let mut args = vec![
            "policy",
            "simulate",
            "examples/audit-policy.yaml",
            "--input",
            day,
            "--format",
            format,
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
    };
    // 2.88 MB a day: two 1 MiB backups last 0.73 days, short of a week.
    let backups = [
        "--audit-log-maxage=7",
        "--audit-log-maxbackup=2",
        "--audit-log-maxsize=1",
    ];
    assert_golden(
        &golden("policy/simulate-day.maxbackup.txt"),
        &simulate(&backups, "text"),
    );
    let v: serde_json::Value = serde_json::from_str(&simulate(&backups, "json")).unwrap();
    let r = &v["retention"];
    assert_eq!(r["bytes_per_day"], 1441 * 2001, "{r}");
    assert_eq!(r["limited_by"], "maxbackup", "{r}");
    let kept = r["retained_days"].as_f64().unwrap();
    let expected = 2.0 * 1048576.0 / (1441.0 * 2001.0);
    assert!((kept - expected).abs() < 1e-4, "{kept} vs {expected}");
    // A week of 2 883 441 bytes a day in 1 MiB files: 19.25, so 20.
    assert_eq!(r["suggested_maxbackup"], 20, "{r}");

    // Fifty backups last 18 days: the week's age limit deletes first.
    let age = [
        "--audit-log-maxage=7",
        "--audit-log-maxbackup=50",
        "--audit-log-maxsize=1",
    ];
    assert_golden(
        &golden("policy/simulate-day.maxage.txt"),
        &simulate(&age, "text"),
    );
    let v: serde_json::Value = serde_json::from_str(&simulate(&age, "json")).unwrap();
    let r = &v["retention"];
    assert_eq!(r["limited_by"], "maxage", "{r}");
    assert_eq!(r["retained_days"], 7.0, "{r}");
    assert_eq!(r["suggested_maxbackup"], 20, "{r}");

    // The API server's defaults delete nothing.
    let v: serde_json::Value = serde_json::from_str(&simulate(&[], "json")).unwrap();
    let r = &v["retention"];
    assert!(
        r["limited_by"].is_null() && r["retained_days"].is_null(),
        "{r}"
    );
    assert_eq!(r["maxsize_mb"], 100, "{r}");
    std::fs::remove_dir_all(&dir).ok();
}
