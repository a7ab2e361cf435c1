//! `--threads N`: the same alerts, in the same order, and the same counts
//! as on one thread.

use super::*;

fn run_file(path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--input", path.to_str().unwrap(), "--no-summary"];
    args.extend_from_slice(extra);
    saker().args(&args).output().expect("run saker")
}

#[test]
fn threads_give_the_same_output_as_one_thread() {
    // The bundled sample, repeated with shifted times so that windowed
    // rules fire and resolve across many batches, plus noise: klog lines,
    // blank lines and a line over the limit.
    let sample = std::fs::read_to_string(root().join("examples/audit-sample.jsonl")).unwrap();
    let mut data = String::new();
    for copy in 0..40 {
        for line in sample.lines() {
            data.push_str(
                &line.replace("2024-10-29T1", &format!("2024-10-{:02}T1", 1 + copy % 28)),
            );
            data.push('\n');
        }
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
    for threads in ["2", "3", "0"] {
        let many = run_file(&path, &["--rule-matching", "all", "--threads", threads]);
        assert!(
            many.status.success(),
            "{}",
            String::from_utf8_lossy(&many.stderr)
        );
        assert!(
            one.stdout == many.stdout,
            "--threads {threads} changed the alerts"
        );
    }
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
}

#[test]
fn threads_need_a_file() {
    let o = run_with_stdin(&["run", "--threads", "2"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--threads applies to --input FILE"));
}
