//! The command line as a user meets it: commands, flags, exit codes, input
//! shapes, the summary.

use super::*;

fn sample() -> String {
    root()
        .join("examples/audit-sample.jsonl")
        .display()
        .to_string()
}

#[test]
fn sample_with_default_rules_matches_golden_alerts() {
    let out = saker()
        .args(["run", "--input", &sample()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = String::new();
    for mut a in alerts(&out) {
        // The host name is the machine's; everything else is deterministic.
        a.as_object_mut().unwrap().remove("hostname");
        lines.push_str(&a.to_string());
        lines.push('\n');
    }
    assert_golden(&golden("run/audit-sample.alerts.jsonl"), &lines);
}

#[test]
fn alert_shape_is_falcos() {
    let out = run_with_stdin(&["run"], exec_event("web-1", 5).as_bytes());
    assert!(out.status.success());
    let a = &alerts(&out)[0];
    for key in [
        "time",
        "rule",
        "priority",
        "source",
        "tags",
        "output",
        "output_fields",
        "hostname",
    ] {
        assert!(a.get(key).is_some(), "missing {key} in {a}");
    }
    assert_eq!(a["source"], "k8s_audit");
    assert_eq!(a["priority"], "Notice");
    assert_eq!(a["time"], "2024-10-29T12:22:05.000002000Z");
    assert_eq!(a["output_fields"]["ka.target.name"], "web-1");
    assert_eq!(a["output_fields"]["ka.uri.param[command]"], "sh");
    assert!(a["output"]
        .as_str()
        .unwrap()
        .starts_with("12:22:05.000002000: Notice Exec into pod"));
    assert!(a["tags"].as_array().unwrap().iter().any(|t| t == "T1609"));
}

#[test]
fn text_output_is_falcos_line() {
    let out = run_with_stdin(
        &["run", "--output", "text"],
        exec_event("web-1", 5).as_bytes(),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("12:22:05.000002000: Notice Exec into pod (user=alice pod=web-1 ns=shop"),
        "{text}"
    );
}

#[test]
fn stdin_eventlist_array_and_prefixes() {
    let e1 = exec_event("a", 1);
    let e2 = exec_event("b", 2);
    let e3 = exec_event("c", 3);
    let e4 = exec_event("d", 4);
    let input = format!(
        "{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[{e1},{e2}]}}\n[{e3}]\r\n[pod/kube-apiserver-x/kube-apiserver] 2024-10-29T12:21:44.214173123Z {e4}\n"
    );
    let out = run_with_stdin(&["run"], input.as_bytes());
    let pods = output_field(&alerts(&out), "ka.target.name");
    assert_eq!(pods, ["a", "b", "c", "d"]);
}

#[test]
fn rule_matching_all_and_first() {
    let rules = golden("run/two_rules.yaml");
    let ev = exec_event("p", 1);
    let first = run_with_stdin(&["run", "--rules", rules.to_str().unwrap()], ev.as_bytes());
    let names: Vec<_> = alerts(&first)
        .iter()
        .map(|a| a["rule"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["Any Exec"]);
    let all = run_with_stdin(
        &[
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--rule-matching",
            "all",
        ],
        ev.as_bytes(),
    );
    let names: Vec<_> = alerts(&all)
        .iter()
        .map(|a| a["rule"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["Any Exec", "Exec By Alice"]);
}

#[test]
fn summary_counts_skips_and_alerts() {
    let input = format!(
        "klog text line\n\n{{\"kind\":0}}\n{}\n{{truncated\n",
        exec_event("p", 1)
    );
    let out = run_with_stdin(&["run"], input.as_bytes());
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("5 lines, 1 events, 1 alerts"), "{err}");
    assert!(
        err.contains("1 lines that are not JSON (log text)"),
        "{err}"
    );
    assert!(
        err.contains("1 data not recognized as a k8s audit event"),
        "{err}"
    );
    assert!(err.contains("1 invalid or truncated JSON"), "{err}");
    assert!(err.contains("1  Exec Into Pod"), "{err}");
    let quiet = run_with_stdin(&["run", "--no-summary"], input.as_bytes());
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("events,"));
}

#[test]
fn exit_codes() {
    // Rules that fail to load: 1.
    let bad = golden("diagnostics/several_errors.yaml");
    let out = saker()
        .args([
            "run",
            "--rules",
            bad.to_str().unwrap(),
            "--input",
            &sample(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    // A missing input file, an unknown flag: 2.
    let out = saker()
        .args(["run", "--input", "/nonexistent/audit.log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open input"));
    // A directory, on one thread or several, followed or not: 2, and said.
    let dir = std::env::temp_dir();
    for extra in [&[][..], &["--threads", "2"], &["--follow"]] {
        let out = saker()
            .args(["run", "--input", dir.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("cannot open input") && stderr.contains("it is a directory"),
            "{extra:?}: {stderr}"
        );
    }
    let out = saker().args(["run", "--frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Check: 0 for good rules, 1 for bad ones.
    assert_eq!(
        saker().arg("check").output().unwrap().status.code(),
        Some(0)
    );
    assert_eq!(
        saker()
            .args(["check", bad.to_str().unwrap()])
            .output()
            .unwrap()
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn rules_directory_loads_in_name_order() {
    let dir = golden("run/rules_dir");
    let out = run_with_stdin(
        &["run", "--rules", dir.to_str().unwrap()],
        exec_event("p", 1).as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 20-append.yaml extends the macro defined in 10-base.yaml.
    let a = alerts(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["rule"], "Exec In Shop");
}

#[test]
fn fields_lists_every_field() {
    let out = saker().arg("fields").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // Falco's 100, and ka.cluster (the managed cluster's name).
    assert_eq!(text.lines().filter(|l| l.starts_with("ka.")).count(), 101);
    assert!(text.contains("ka.cluster "));
    assert!(text.contains("jevt.value[/json/pointer]"));
    let json = saker().args(["fields", "--json"]).output().unwrap();
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8(json.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["name"], "ka.auditid");
}

#[test]
fn help_explains_run() {
    let out = saker().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--rules",
        "--input",
        "--output",
        "--rule-matching",
        "--max-line-bytes",
        "--progress",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn progress_bar_on_request() {
    let out = saker()
        .args(["run", "--progress", "always", "--input", &sample()])
        .output()
        .unwrap();
    assert!(out.status.success());
    // The bar is cleared at the end; the escape that clears it is there.
    assert!(String::from_utf8_lossy(&out.stderr).contains("\r\x1b[K"));
}

#[test]
fn every_code_a_diagnostic_prints_is_explained() {
    // The codes printed by the diagnostics goldens all have an explanation.
    let dir = root().join("tests/golden/diagnostics");
    let mut seen = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        for line in text.lines() {
            let rest = line
                .strip_prefix("error[")
                .or_else(|| line.strip_prefix("warning["));
            if let Some((code, _)) = rest.and_then(|r| r.split_once("]:")) {
                seen.insert(code.to_string());
            }
        }
    }
    assert!(seen.len() >= 5, "{seen:?}");
    for code in &seen {
        let out = saker().args(["check", "--explain", code]).output().unwrap();
        assert!(
            out.status.success(),
            "{code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(code.as_str()) && text.contains("Example:"),
            "{text}"
        );
    }
}

#[test]
fn explain_lists_codes_and_suggests_on_a_typo() {
    let out = saker()
        .args(["check", "--explain", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.lines().count() >= 40, "{list}");
    assert!(list.contains("unknown-field "), "{list}");
    let out = saker()
        .args(["check", "--explain", "unknown-feild"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean `unknown-field`?"), "{err}");
}
