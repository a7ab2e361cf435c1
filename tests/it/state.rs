//! `saker run --state-dir`: a `--follow` run killed mid-stream and
//! restarted loses no alert and repeats only those of the input read since
//! the last saved position (also across a rotation during the downtime);
//! a corrupt or foreign state file is set aside and reported; stdin's
//! state survives a restart through the snapshot.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

use super::net::wait_until;
use super::*;

const RULES: &str = r#"
- rule: Burst
  desc: three lists in 4s by one user
  condition: ka.verb = list
  aggregate: count >= 3 over 4s by ka.user.name
  output: "%ka.user.name listed %agg.value times"
  priority: WARNING
  source: k8s_audit
- rule: Pair
  desc: a thing created, then deleted within two minutes
  sequence:
    within: 2m
    steps:
      - {name: made, condition: "ka.verb = create", by: [ka.target.name]}
      - {name: gone, condition: "ka.verb = delete", by: [ka.target.name]}
  output: "%made.ka.auditid then %gone.ka.auditid"
  priority: WARNING
  source: k8s_audit
- rule: Get
  desc: every get
  condition: ka.verb = get
  output: "get %ka.auditid"
  priority: NOTICE
  source: k8s_audit
"#;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("saker-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const BASE: i64 = 1_730_203_200; // 2024-10-29T12:00:00Z

fn event(id: &str, ms: i64, verb: &str, user: &str, name: &str) -> String {
    let t = saker::event::time::format_rfc3339_nanos((BASE * 1000 + ms) * 1_000_000);
    format!(
        r#"{{"auditID":"{id}","stage":"ResponseComplete","verb":"{verb}","user":{{"username":"{user}"}},"objectRef":{{"resource":"things","namespace":"default","name":"{name}"}},"stageTimestamp":"{t}"}}"#
    )
}

/// `n` events 200 ms apart in event time: one user at a time lists five
/// times in four seconds (Burst fires and resolves every 20 events),
/// things are created and deleted a second later (Pair), gets alert on
/// their own; a thing created at the start is deleted 98 s later; a
/// last event 100 s later moves the watermark past everything.
fn stream(n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let ms = i as i64 * 200;
        let user = ["ann", "bo", "cy"][(i / 20) % 3];
        let id = format!("e{i}");
        out.push(match i % 4 {
            0 => event(&id, ms, "get", user, "x"),
            1 => event(&id, ms, "list", user, "x"),
            2 => event(&id, ms, "create", user, &format!("p{i}")),
            _ => event(
                &id,
                ms,
                "delete",
                user,
                &format!("p{}", i.saturating_sub(5)),
            ),
        });
        if i == 10 {
            out.push(event("long-made", ms, "create", "ann", "long"));
        }
        if i == 500 {
            out.push(event("long-gone", ms, "delete", "bo", "long"));
        }
    }
    out.push(event("end", n as i64 * 200 + 100_000, "watch", "ann", "x"));
    out
}

fn spawn(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = saker()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn saker");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn append(path: &Path, lines: &[String]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    f.write_all(text.as_bytes()).unwrap();
}

/// A count of each alert line.
fn counted(lines: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l.clone()).or_default() += 1;
    }
    m
}

/// The index in the stream of the event whose reading made `alert` come
/// out: a get's own event; for a window transition or a completed pair at
/// tick T, the first event at or past T + the 5 s lateness (the
/// watermark passes T then).
fn cause(alert: &str, stream: &[String]) -> usize {
    let a: serde_json::Value = serde_json::from_str(alert).unwrap();
    let index_of = |id: &str| {
        stream
            .iter()
            .position(|l| l.contains(&format!(r#""auditID":"{id}""#)))
            .unwrap_or_else(|| panic!("no event {id}"))
    };
    match a["rule"].as_str().unwrap() {
        "Get" => index_of(a["output"].as_str().unwrap().rsplit(' ').next().unwrap()),
        _ => {
            let t = saker::event::time::parse_rfc3339(a["time"].as_str().unwrap()).unwrap();
            let due = (t.div_euclid(1_000_000_000) + 5) * 1_000_000_000;
            stream
                .iter()
                .position(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let at = v["stageTimestamp"].as_str().unwrap();
                    saker::event::time::parse_rfc3339(at).unwrap() >= due
                })
                .unwrap()
        }
    }
}

fn collect(rx: &mpsc::Receiver<String>, into: &mut Vec<String>) {
    while let Ok(l) = rx.try_recv() {
        into.push(l);
    }
}

/// Kills a `--follow` run mid-stream (the windows and the long sequence
/// open), writes the rest while it is down (after rotating the file if
/// `rotate`), restarts it on the same state directory.
fn kill_and_restart(name: &str, rotate: bool) {
    kill_and_restart_with(name, rotate, &[]);
}

fn kill_and_restart_with(name: &str, rotate: bool, extra: &[&str]) {
    let dir = tmp(name);
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let lines = stream(700);
    // What one run over the whole file gives.
    let whole = dir.join("whole.log");
    append(&whole, &lines);
    let reference = saker()
        .args(["run", "--no-summary", "--rules", rules.to_str().unwrap()])
        .args(["--input", whole.to_str().unwrap(), "--state-dir"])
        .arg(dir.join("whole-state"))
        .output()
        .unwrap();
    assert!(reference.status.success());
    let reference: Vec<String> = String::from_utf8(reference.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert!(reference.len() > 200, "{} alerts", reference.len());

    let log = dir.join("audit.log");
    let state = dir.join("state");
    let args = [
        &[
            "run",
            "--no-summary",
            "--follow",
            "--rules",
            rules.to_str().unwrap(),
            "--input",
            log.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--state-interval",
            "2s",
        ][..],
        extra,
    ]
    .concat();
    append(&log, &lines[..50]);
    let (mut first, rx) = spawn(&args);
    // Ten lines every 100 ms for four seconds, then SIGKILL mid-stream.
    let mut written = 50;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        append(&log, &lines[written..written + 10]);
        written += 10;
    }
    signal(&first, "-KILL");
    first.wait().unwrap();
    let mut before = Vec::new();
    std::thread::sleep(Duration::from_millis(200));
    collect(&rx, &mut before);
    // Where the alerts were out: the flushed position saved, unless the
    // kill fell between a snapshot and the position written after it (the
    // snapshot's position then; its alerts were flushed before it).
    let read = |name: &str| -> serde_json::Value {
        std::fs::read(state.join(name)).map_or(serde_json::Value::Null, |b| {
            serde_json::from_slice(&b).unwrap()
        })
    };
    let (saved, snapshot) = (read("position.json"), read("state.json"));
    let flushed_at = if saved["generation"] == snapshot["generation"] || snapshot.is_null() {
        saved["flushed"]["offset"].as_u64().unwrap()
    } else {
        snapshot["position"]["offset"].as_u64().unwrap()
    } as usize;
    // The index of the first event after the flushed position.
    let mut offset = 0;
    let after_flushed = lines
        .iter()
        .position(|l| {
            let past = offset >= flushed_at;
            offset += l.len() + 1;
            past
        })
        .unwrap_or(lines.len());
    assert!(after_flushed > 50, "a position was saved during the run");

    if rotate {
        std::fs::rename(&log, dir.join("audit.log.1")).unwrap();
    }
    append(&log, &lines[written..]);
    let (second, rx) = spawn(&args);
    let mut after = Vec::new();
    let all = |before: &[String], after: &[String]| -> bool {
        let got = counted(&[before, after].concat());
        reference.iter().all(|r| got.contains_key(r))
    };
    let done = wait_until(Duration::from_secs(60), || {
        collect(&rx, &mut after);
        all(&before, &after).then_some(())
    });
    signal(&second, "-TERM");
    let out = second.wait_with_output().unwrap();
    collect(&rx, &mut after);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        done.is_some(),
        "alerts lost: {} of {} missing\n{stderr}",
        reference
            .iter()
            .filter(|r| !counted(&[before.clone(), after.clone()].concat()).contains_key(*r))
            .count(),
        reference.len()
    );
    assert!(out.status.success(), "{stderr}");

    // Nothing that one run would not have given, nothing twice within a run.
    let union = counted(&[before.clone(), after.clone()].concat());
    let want = counted(&reference);
    assert!(
        union.keys().all(|k| want.contains_key(k)),
        "unexpected alerts"
    );
    assert!(counted(&before).values().all(|&n| n == 1));
    assert!(counted(&after).values().all(|&n| n == 1));
    // Repeated: exactly the alerts the first run gave for what it read
    // after the last flushed position it saved (at most a second of input).
    let repeated: Vec<&String> = before.iter().filter(|l| after.contains(l)).collect();
    let beyond: Vec<&String> = before
        .iter()
        .filter(|l| cause(l, &lines) >= after_flushed)
        .collect();
    assert_eq!(repeated, beyond, "repeated alerts");
    assert!(
        repeated.len() * 2 < before.len(),
        "{} of {} alerts repeated",
        repeated.len(),
        before.len()
    );
    // The sequence and a window spanned the kill.
    let long = reference
        .iter()
        .find(|l| l.contains("long-made then long-gone"))
        .expect("the long pair completes");
    assert!(after.contains(long) && !before.contains(long));
    eprintln!(
        "{name}: {} alerts before the kill, {} after, {} repeated (input after the saved position: {} events)",
        before.len(),
        after.len(),
        repeated.len(),
        written.saturating_sub(after_flushed)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_follow_run_restarts_losing_no_alert_and_repeating_few() {
    kill_and_restart("kill", false);
}

#[test]
fn a_killed_follow_run_on_worker_threads_restarts_losing_no_alert_and_repeating_few() {
    // The saved position is where the alerts the workers' batches gave
    // were out, so exactly those after it come again.
    kill_and_restart_with("kill-threads", false, &["--threads", "2"]);
}

#[test]
fn a_restart_finishes_the_file_rotated_while_it_was_down() {
    kill_and_restart("rotate", true);
}

fn denied(s: u32) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"d{s}","stage":"ResponseComplete","requestURI":"/api/v1/configmaps","verb":"list","user":{{"username":"mallory"}},"objectRef":{{"resource":"configmaps","apiVersion":"v1"}},"responseStatus":{{"code":403}},"stageTimestamp":"2024-10-29T12:00:{s:02}Z"}}"#
    ) + "\n"
}

fn stdin_run(state: &Path, input: &str) -> Output {
    let out = run_with_stdin(
        &[
            "run",
            "--no-summary",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        input.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn stdin_state_survives_a_restart_through_the_snapshot() {
    let dir = tmp("stdin");
    // Twenty denials in a minute fire Forbidden Burst; the run ends after
    // twelve, mid-window; the second run gets the rest and events that
    // move the watermark on.
    let first: String = (0..12).map(denied).collect();
    let allowed = |s: u32| denied(s).replace(r#""code":403"#, r#""code":200"#);
    let second: String = (12..20).map(denied).chain((25..50).map(allowed)).collect();
    let a = alerts(&stdin_run(&dir.join("split"), &first));
    let b = alerts(&stdin_run(&dir.join("split"), &second));
    let whole = alerts(&stdin_run(&dir.join("whole"), &(first.clone() + &second)));
    let rules = |v: &[serde_json::Value]| -> Vec<String> {
        v.iter()
            .map(|a| a["rule"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!rules(&a).contains(&"Forbidden Burst".to_string()), "{a:?}");
    assert!(rules(&b).contains(&"Forbidden Burst".to_string()), "{b:?}");
    assert_eq!([a, b].concat(), whole);
    // Without the state directory the second half alone does not fire.
    let cold = alerts(&run_with_stdin(&["run", "--no-summary"], second.as_bytes()));
    assert!(!rules(&cold).contains(&"Forbidden Burst".to_string()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_or_foreign_state_file_is_set_aside_and_reported() {
    let dir = tmp("corrupt");
    let state = dir.join("state");
    stdin_run(&state, &denied(1));
    let good = std::fs::read(state.join("state.json")).unwrap();
    // Truncated: reported with its path and why, set aside, a fresh run.
    std::fs::write(state.join("state.json"), &good[..good.len() / 2]).unwrap();
    let out = stdin_run(&state, &denied(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&state.join("state.json").display().to_string()),
        "{err}"
    );
    assert!(err.contains("truncated"), "{err}");
    let aside: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    // The run wrote a good one again.
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    assert_eq!(again["format"], "saker-state-dir");
    // Garbage, and a state of stdin used for a file: never trusted.
    let mut reasons = HashMap::new();
    for (what, bytes) in [("garbage", b"\x00\xffnot json".to_vec()), ("foreign", good)] {
        std::fs::write(state.join("state.json"), bytes).unwrap();
        let input = dir.join("in.log");
        std::fs::write(&input, denied(3)).unwrap();
        let out = saker()
            .args(["run", "--no-summary", "--input", input.to_str().unwrap()])
            .arg("--state-dir")
            .arg(&state)
            .output()
            .unwrap();
        assert!(out.status.success());
        reasons.insert(what, String::from_utf8_lossy(&out.stderr).into_owned());
    }
    assert!(reasons["garbage"].contains("malformed"), "{reasons:?}");
    assert!(
        reasons["foreign"].contains("belongs to stdin"),
        "{reasons:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
