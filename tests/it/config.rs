//! `saker run --config FILE` and `--print-config`, and logs fit for a
//! service: no colour on a pipe, JSON lines with `--log-format json`.

use std::path::Path;
use std::process::Output;

use super::*;

fn config_dir() -> PathBuf {
    golden("config")
}

fn sample() -> String {
    root()
        .join("examples/audit-sample.jsonl")
        .display()
        .to_string()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `saker run --config NAME.yaml` in the config goldens is refused with exit
/// code 2 and prints exactly `NAME.expected` on stderr.
fn refused_golden(name: &str) {
    let dir = config_dir();
    let out = saker()
        .current_dir(&dir)
        .args(["run", "--config", &format!("{name}.yaml")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_golden(
        &dir.join(format!("{name}.expected")),
        &String::from_utf8(out.stderr).unwrap(),
    );
}

fn print_config(args: &[&str], cwd: &Path) -> String {
    let out = ok(saker()
        .current_dir(cwd)
        .args(["run", "--print-config"])
        .args(args)
        .output()
        .unwrap());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn config_file_gives_the_same_alerts_as_its_flags() {
    let rules = |f: &str| root().join(f).display().to_string();
    let flags = ok(saker()
        .args(["run", "--input", &sample(), "--rule-matching", "all"])
        .args(["--rules", &rules("tests/golden/run/two_rules.yaml")])
        .args(["--rules", &rules("rules/k8s_audit.yaml")])
        .args(["--max-keys", "1000", "--no-summary"])
        .output()
        .unwrap());
    // From another directory: the file's relative paths are its own.
    let file = ok(saker()
        .current_dir(std::env::temp_dir())
        .args(["run", "--config"])
        .arg(config_dir().join("sample.yaml"))
        .output()
        .unwrap());
    let a = alerts(&file);
    assert_eq!(a, alerts(&flags));
    // The file's settings took effect: two_rules.yaml's rules besides the
    // defaults, and rule-matching all (an exec alerts for both files).
    let rules: Vec<&str> = a.iter().map(|x| x["rule"].as_str().unwrap()).collect();
    let execs = |rule| rules.iter().filter(|r| **r == rule).count();
    assert!(execs("Any Exec") > 0, "{rules:?}");
    assert!(execs("Exec Into Pod") >= execs("Any Exec") - 1, "{rules:?}");
    assert!(file.stderr.is_empty(), "no-summary: true");
}

#[test]
fn flags_override_the_file() {
    let dir = config_dir();
    // output: json in the file; text on the command line.
    let out = ok(saker()
        .current_dir(&dir)
        .args(["run", "--config", "sample.yaml", "--output", "text"])
        .output()
        .unwrap());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.is_empty() && !text.starts_with('{'), "{text}");
    // A repeatable flag replaces the file's list.
    let only = root().join("tests/golden/run/two_rules.yaml");
    let printed = print_config(
        &["--config", "sample.yaml", "--rules", only.to_str().unwrap()],
        &dir,
    );
    assert!(
        printed.contains(&format!("rules:\n  - {}\n", only.display())),
        "{printed}"
    );
    assert!(!printed.contains("k8s_audit.yaml"), "{printed}");
    // The global --log-level, before `run` too, overrides the file.
    let printed = print_config(&["--config", "sample.yaml", "--log-level", "debug"], &dir);
    assert!(printed.contains("\nlog-level: debug\n"), "{printed}");
    let out = ok(saker()
        .current_dir(&dir)
        .args(["--log-level", "error", "run", "--print-config"])
        .args(["--config", "sample.yaml"])
        .output()
        .unwrap());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\nlog-level: error\n"));
}

#[test]
fn an_unknown_key_is_placed_with_a_suggestion() {
    refused_golden("unknown_key");
}

#[test]
fn a_wrong_type_is_placed() {
    refused_golden("wrong_type");
}

#[test]
fn print_config_round_trips() {
    let tmp = std::env::temp_dir().join(format!("saker-print-config-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let first = print_config(
        &[
            "--config",
            "sample.yaml",
            "--max-keys",
            "7",
            "--input",
            "kafka",
            "--kafka-brokers",
            "127.0.0.1:9092",
            "--kafka-topic",
            "audit",
            "-X",
            "a=b=c",
        ],
        &config_dir(),
    );
    // Every key is there, paths absolute, the defaults filled in.
    assert!(first.contains("\nrule-matching: all\n"), "{first}");
    assert!(first.contains("\nmax-keys: 7\n"), "{first}");
    assert!(first.contains("\nresolution: 1s\n"), "{first}");
    assert!(first.contains("\n  - /"), "{first}");
    assert!(first.contains("\ninput: kafka\n"), "{first}");
    assert!(first.contains("\nfollow: false\n"), "{first}");
    assert!(first.contains("\nkafka-option:\n  - a=b=c\n"), "{first}");
    let printed = tmp.join("printed.yaml");
    std::fs::write(&printed, &first).unwrap();
    let again = print_config(&["--config", printed.to_str().unwrap()], &tmp);
    assert_eq!(first, again);
    std::fs::remove_dir_all(&tmp).unwrap();
    // Without a config file: the defaults.
    let defaults = print_config(&[], &config_dir());
    assert!(defaults.contains("\ninput: \"-\"\n"), "{defaults}");
    assert!(defaults.contains("\nlateness: null\n"), "{defaults}");
}

#[test]
fn print_config_checks_the_settings_first() {
    let out = saker()
        .args([
            "run",
            "--print-config",
            "--input",
            "kafka",
            "--kafka-brokers",
            "127.0.0.1:1",
            "--kafka-topic",
            "t",
            "--state-dir",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--state-dir does not apply to --input kafka"));
}

#[test]
fn settings_that_go_together_only_as_flags_are_refused_with_a_note() {
    let tmp = std::env::temp_dir().join(format!("saker-tls-{}.yaml", std::process::id()));
    std::fs::write(&tmp, "input: http\ntls-cert: cert.pem\n").unwrap();
    let out = saker()
        .args(["run", "--config"])
        .arg(&tmp)
        .output()
        .unwrap();
    std::fs::remove_file(&tmp).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key"), "{err}");
    assert!(err.contains("were given as flags"), "{err}");
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let out = saker()
        .args(["run", "--config", "/nonexistent/saker.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read config file /nonexistent/saker.yaml"),
        "{err}"
    );
}

#[test]
fn the_example_config_runs() {
    let out = ok(saker()
        .current_dir(std::env::temp_dir())
        .args(["run", "--no-summary", "--config"])
        .arg(root().join("examples/saker.yaml"))
        .output()
        .unwrap());
    let expected = ok(saker()
        .args(["run", "--no-summary", "--input", &sample()])
        .output()
        .unwrap());
    assert_eq!(alerts(&out), alerts(&expected));
    assert!(!alerts(&out).is_empty());
}

/// A file whose one line is JSON but not an audit event: a warning.
fn not_an_event(test: &str) -> PathBuf {
    let name = format!("saker-{test}-{}.jsonl", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, "{\"kind\":0}\n").unwrap();
    path
}

#[test]
fn no_colour_in_logs_on_a_pipe() {
    let input = not_an_event("pipe");
    let out = ok(saker()
        .args(["run", "--no-summary", "--input"])
        .arg(&input)
        .output()
        .unwrap());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("WARN skipped input"), "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");
    std::fs::remove_file(input).unwrap();
}

/// stderr of `saker run` on a terminal (util-linux `script` gives it one).
fn on_a_terminal(no_color: Option<&str>) -> String {
    let input = not_an_event("terminal");
    let command = format!(
        "{} run --no-summary --progress never --input {}",
        env!("CARGO_BIN_EXE_saker"),
        input.display()
    );
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &command, "/dev/null"]);
    script.stdin(Stdio::null()).env_remove("NO_COLOR");
    if let Some(v) = no_color {
        script.env("NO_COLOR", v);
    }
    let out = script.output().expect("util-linux script runs");
    std::fs::remove_file(input).unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn colour_only_on_a_terminal_without_no_color() {
    let coloured = on_a_terminal(None);
    assert!(coloured.contains("WARN"), "{coloured:?}");
    assert!(coloured.contains("\x1b["), "{coloured:?}");
    let plain = on_a_terminal(Some("1"));
    assert!(plain.contains("WARN skipped input"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
    // An empty NO_COLOR does not count (no-color.org).
    assert!(on_a_terminal(Some("")).contains("\x1b["));
}

#[test]
fn json_logs_are_one_object_a_line() {
    let input = not_an_event("json");
    let out = ok(saker()
        .args(["--log-format", "json", "run", "--no-summary", "--input"])
        .arg(&input)
        .output()
        .unwrap());
    std::fs::remove_file(input).unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert_eq!(lines[0]["level"], "WARN");
    assert_eq!(lines[0]["fields"]["reason"], "not_audit_event");
}
