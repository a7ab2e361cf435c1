//! Live inputs: a quiet stdin moves event time with the wall clock, and
//! `--follow` reads across log rotation without losing or repeating lines.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::net::now_rfc3339;
use super::*;

/// Collects stdout lines of a child on a thread.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &mpsc::Receiver<String>, n: usize, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < limit {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(l);
        }
    }
    got
}

#[test]
fn quiet_stdin_fires_absence_before_input_ends() {
    quiet_stdin_fires_absence(&[]);
}

#[test]
fn quiet_stdin_fires_absence_before_input_ends_on_worker_threads() {
    // The workers' batch is taken back before the idle check moves the
    // windows on, and before the reader waits.
    quiet_stdin_fires_absence(&["--threads", "2"]);
}

fn quiet_stdin_fires_absence(extra: &[&str]) {
    let rules = golden("live/silent.yaml");
    let mut child = saker()
        .args([
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--lateness",
            "0s",
            "--no-summary",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        r#"{{"auditID":"1","verb":"get","stageTimestamp":"{}"}}"#,
        now_rfc3339()
    )
    .unwrap();
    stdin.flush().unwrap();
    // stdin stays open: only the wall clock can make this fire.
    let got = wait_for(&rx, 1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "no alert while the stream was quiet");
    let a: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(a["rule"], "Silent");
    assert_eq!(a["aggregate"]["state"], "firing");
    // The next event resolves it.
    writeln!(
        stdin,
        r#"{{"auditID":"2","verb":"get","stageTimestamp":"{}"}}"#,
        now_rfc3339()
    )
    .unwrap();
    stdin.flush().unwrap();
    let got = wait_for(&rx, 1, Duration::from_secs(15));
    let a: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(a["aggregate"]["state"], "resolved");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn follow_survives_rotation() {
    follow_through_rotation("follow", &[]);
}

#[test]
fn follow_survives_rotation_on_worker_threads() {
    // Each alert comes out while the file is followed: what the workers
    // hold is taken back before the reader waits for more.
    follow_through_rotation("follow-threads", &["--threads", "2"]);
}

fn follow_through_rotation(name: &str, extra: &[&str]) {
    let dir = std::env::temp_dir().join(format!("saker-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("audit.log");
    let write = |path: &std::path::Path, pods: std::ops::Range<u32>| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for i in pods {
            writeln!(f, "{}", exec_event(&format!("pod-{i}"), i % 60)).unwrap();
        }
    };
    write(&log, 0..5);
    let mut child = saker()
        .args([
            "run",
            "--input",
            log.to_str().unwrap(),
            "--follow",
            "--no-summary",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let mut got = wait_for(&rx, 5, Duration::from_secs(15));
    write(&log, 5..8);
    // Rotate as the API server does: rename, then create a new file.
    std::fs::rename(&log, dir.join("audit-2024-10-29T12-00-00.000.log")).unwrap();
    write(&log, 8..12);
    got.extend(wait_for(&rx, 7, Duration::from_secs(15)));
    // Appends to the new file keep coming.
    write(&log, 12..13);
    got.extend(wait_for(&rx, 1, Duration::from_secs(15)));
    let _ = child.kill();
    let _ = child.wait();
    let pods: Vec<String> = got
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["output_fields"]["ka.target.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: Vec<String> = (0..13).map(|i| format!("pod-{i}")).collect();
    assert_eq!(pods, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn follow_needs_a_file() {
    let out = saker().args(["run", "--follow"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
