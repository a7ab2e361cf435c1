//! `--threads N`: the same alerts, in the same order, and the same counts
//! as on one thread.

use super::*;

fn run_file(path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--input", path.to_str().unwrap(), "--no-summary"];
    args.extend_from_slice(extra);
    saker().args(&args).output().expect("run saker")
}

/// Runs `path` with `extra` and each `--threads` value, and demands the
/// alerts of `one` (the same run on one thread), byte for byte.
fn same_under_threads(one: &Output, path: &Path, extra: &[&str], threads: &[&str]) {
    for t in threads {
        let many = run_file(path, &[extra, &["--threads", t]].concat());
        assert!(
            many.status.success(),
            "{}",
            String::from_utf8_lossy(&many.stderr)
        );
        assert!(
            one.stdout == many.stdout,
            "--threads {t} changed the alerts"
        );
    }
}

/// The bundled sample with its times moved to October `day`.
fn sample_on_day(day: usize) -> String {
    let sample = std::fs::read_to_string(root().join("examples/audit-sample.jsonl")).unwrap();
    let mut out = String::new();
    for line in sample.lines() {
        out.push_str(&line.replace("2024-10-29T1", &format!("2024-10-{day:02}T1")));
        out.push('\n');
    }
    out
}

#[test]
fn threads_give_the_same_output_as_one_thread() {
    // The bundled sample, repeated with shifted times so that windowed
    // rules fire and resolve across many batches, plus noise: klog lines,
    // blank lines and a line over the limit.
    let mut data = String::new();
    for copy in 0..40 {
        data.push_str(&sample_on_day(1 + copy % 28));
        data.push_str("I1029 12:00:00.000000       1 klog line\n\n");
        if copy == 7 {
            data.push_str(&"x".repeat(3 << 20));
            data.push('\n');
        }
    }
    let dir = std::env::temp_dir().join(format!("saker-threads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.jsonl");
    std::fs::write(&path, &data).unwrap();
    let one = run_file(&path, &["--rule-matching", "all"]);
    assert!(one.status.success());
    let lines = String::from_utf8_lossy(&one.stdout).lines().count();
    assert!(lines > 1000, "enough alerts to compare: {lines}");
    same_under_threads(&one, &path, &["--rule-matching", "all"], &["2", "3", "0"]);
    // The counts agree too.
    let summary = |o: &Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| l.starts_with("saker:") && !l.contains("events/s"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let one = saker()
        .args(["run", "--input", path.to_str().unwrap()])
        .output()
        .unwrap();
    let two = saker()
        .args(["run", "--input", path.to_str().unwrap(), "--threads", "2"])
        .output()
        .unwrap();
    assert_eq!(summary(&one), summary(&two));
    assert!(
        summary(&two)
            .iter()
            .any(|l| l.contains("1 lines over the length limit")),
        "{:?}",
        summary(&two)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn skipped_lines_are_logged_with_their_input_line_numbers_under_threads() {
    // Workers number lines within their job; the ordering thread logs the
    // skips with the input's numbers, the first few per reason, as one
    // thread does. Bad lines every 300 lines of the sample (780 KB per
    // copy), so that the logged ones are spread over many jobs.
    let sample = std::fs::read_to_string(root().join("examples/audit-sample.jsonl")).unwrap();
    let mut data = String::new();
    for (i, line) in sample.lines().cycle().take(3000).enumerate() {
        data.push_str(line);
        data.push('\n');
        match i % 300 {
            17 => data.push_str("{\"kind\": truncated\n"),
            101 => data.push_str("[1,2]\n"),
            _ => {}
        }
    }
    let dir = std::env::temp_dir().join(format!("saker-threads-skips-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.jsonl");
    std::fs::write(&path, &data).unwrap();
    // The warnings, without their times.
    let warnings = |threads: &str| {
        let out = run_file(&path, &["--threads", threads]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("skipped"))
            .map(|l| l[l.find("WARN").unwrap()..].to_string())
            .collect::<Vec<_>>()
    };
    let one = warnings("1");
    assert!(
        one.iter().any(|l| l.contains("line=1227 ")),
        "the fifth truncated line is logged: {one:#?}"
    );
    assert_eq!(one.len(), 5 + 5 + 2, "{one:#?}");
    for threads in ["2", "3"] {
        assert_eq!(warnings(threads), one, "--threads {threads}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stdin_under_threads_gives_the_alerts_of_a_file_on_one_thread() {
    // A live input: its batches go to the workers as they come, and are
    // taken back before the source waits and before each idle check.
    let data: String = (1..=20).map(sample_on_day).collect();
    let dir = std::env::temp_dir().join(format!("saker-threads-stdin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.jsonl");
    std::fs::write(&path, &data).unwrap();
    let one = run_file(&path, &["--rule-matching", "all"]);
    assert!(one.status.success());
    let many = run_with_stdin(
        &[
            "run",
            "--no-summary",
            "--rule-matching",
            "all",
            "--threads",
            "2",
        ],
        data.as_bytes(),
    );
    assert!(
        many.status.success(),
        "{}",
        String::from_utf8_lossy(&many.stderr)
    );
    let lines = String::from_utf8_lossy(&one.stdout).lines().count();
    assert!(lines > 500, "enough alerts to compare: {lines}");
    assert!(
        one.stdout == many.stdout,
        "stdin on two threads changed the alerts"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn first_seen_alerts_under_threads_are_those_of_one_thread() {
    // A worker leaves a first-seen alert unrendered; the ordering thread,
    // which alone knows whether the key is new, reads the event again
    // from its batch. Lines of one event, EventLists of three and of
    // twelve (deep in a line a worker renders it) and `kubectl logs
    // --prefix` lines, over several batches, so that an event is found
    // again by its line and its place in the line.
    let rules = r#"
- rule: First Get By User In Namespace
  desc: test
  condition: ka.verb = get
  aggregate: first_seen over 1m by ka.user.name, ka.target.namespace
  output: first get by %ka.user.name in %ka.target.namespace (pod %ka.target.name, %ka.auditid)
  priority: NOTICE
  source: k8s_audit
"#;
    let event = |i: usize| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a{i}","stage":"ResponseComplete","verb":"get","user":{{"username":"u{}"}},"objectRef":{{"resource":"pods","namespace":"n{}","name":"p{i}"}},"stageTimestamp":"2024-10-29T{:02}:{:02}:{:02}Z"}}"#,
            i % 7,
            (i / 40 + i % 3) % 11,
            10 + i / 3600,
            i / 60 % 60,
            i % 60
        )
    };
    let mut data = String::new();
    let mut i = 0;
    while i < 6000 {
        match (i / 4) % 3 {
            0 => data.push_str(&event(i)),
            1 => {
                // Three events, or twelve: from the eighth on, a worker
                // renders the alert itself.
                let n = if i % 8 == 4 { 12 } else { 3 };
                let items: Vec<String> = (i..i + n).map(event).collect();
                data.push_str(&format!(
                    r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
                    items.join(",")
                ));
                i += n - 1;
            }
            _ => data.push_str(&format!(
                "[pod/kube-apiserver-x/kube-apiserver] 2024-10-29T12:00:00.000000000Z {}",
                event(i)
            )),
        }
        data.push('\n');
        i += 1;
    }
    let dir = std::env::temp_dir().join(format!("saker-threads-seen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (path, rules_path) = (dir.join("events.jsonl"), dir.join("rules.yaml"));
    std::fs::write(&path, &data).unwrap();
    std::fs::write(&rules_path, rules).unwrap();
    let rules_arg = ["--rules", rules_path.to_str().unwrap()];
    let one = run_file(&path, &rules_arg);
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let text = String::from_utf8_lossy(&one.stdout);
    let alerts = text.lines().count();
    assert!(alerts > 50, "enough first-seen alerts to compare: {alerts}");
    assert!(text.contains("(pod p"), "{text}");
    same_under_threads(&one, &path, &rules_arg, &["2", "3"]);
    let _ = std::fs::remove_dir_all(&dir);
}
