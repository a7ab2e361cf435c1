//! Coverage on an outside corpus: the default rules run over Panther's
//! Kubernetes rule tests (tests/corpus/panther/, Apache-2.0), one event at a
//! time, so what fires per category cannot silently change.

use std::collections::BTreeMap;

use saker::engine::{Engine, RuleMatching};
use saker::rules;
use saker::sink::stdout::{Format, StdoutSink};
use saker::source::lines::Line;
use serde_json::{json, Map, Value};

use super::root;

fn corpus_file(name: &str) -> String {
    let path = root().join("tests/corpus/panther").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn records() -> Vec<Value> {
    corpus_file("plain.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a corpus line is JSON"))
        .collect()
}

fn expectations() -> Vec<Value> {
    serde_json::from_str(&corpus_file("expected.json")).expect("expected.json is JSON")
}

/// Panther's `2022-11-29 00:09:04.38` as RFC 3339; other text unchanged.
fn rfc3339(t: &str) -> String {
    let b = t.as_bytes();
    if b.len() > 10 && b[10] == b' ' && b[..4].iter().all(u8::is_ascii_digit) {
        format!("{}T{}Z", &t[..10], &t[11..])
    } else {
        t.to_string()
    }
}

fn is_rfc3339(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str)
        .is_some_and(|t| t.len() > 10 && t.as_bytes()[10] == b'T')
}

/// The corpus README's repair: what a real API server always writes.
fn repair(event: &Value, n: usize) -> Map<String, Value> {
    let mut e = event.as_object().cloned().expect("an event is an object");
    e.entry("kind").or_insert(json!("Event"));
    e.entry("apiVersion").or_insert(json!("audit.k8s.io/v1"));
    let code = e.get("responseStatus").and_then(|s| s.get("code")).cloned();
    let stage = if code == Some(json!(101)) {
        "ResponseStarted"
    } else {
        "ResponseComplete"
    };
    e.entry("stage").or_insert(json!(stage));
    e.entry("auditID").or_insert(json!(format!("panther-{n}")));
    for key in ["stageTimestamp", "requestReceivedTimestamp"] {
        if let Some(t) = e.get(key).and_then(Value::as_str).map(rfc3339) {
            e.insert(key.to_string(), json!(t));
        }
    }
    if !is_rfc3339(e.get("stageTimestamp")) && !is_rfc3339(e.get("requestReceivedTimestamp")) {
        let t = e
            .get("p_event_time")
            .and_then(Value::as_str)
            .unwrap_or("2022-11-29 00:09:04.38");
        e.insert("stageTimestamp".into(), json!(rfc3339(t)));
    }
    e
}

/// Runs the default rules over `lines` as one stream; the alerts' rule names
/// (and, for windowed alerts, their state) in order.
fn run(lines: &[String]) -> Vec<(String, String)> {
    let loaded = rules::load(&rules::default_sources());
    let set = loaded.rules.expect("the default rules load");
    let mut sink = StdoutSink::new(Vec::new(), Format::Json);
    let mut engine = Engine::new(&set, RuleMatching::All);
    for l in lines {
        engine
            .process_line(Line::Text(l.as_bytes()), &mut sink)
            .expect("write to memory");
    }
    engine.finish(&mut sink).expect("write to memory");
    let out = String::from_utf8(sink.into_inner()).expect("alerts are UTF-8");
    out.lines()
        .map(|l| {
            let a: Value = serde_json::from_str(l).expect("an alert is JSON");
            let state = a["aggregate"]["state"].as_str().unwrap_or("").to_string();
            (a["rule"].as_str().unwrap_or("").to_string(), state)
        })
        .collect()
}

fn fired_alone(event: &Map<String, Value>) -> Vec<String> {
    let mut rules: Vec<String> = run(&[Value::Object(event.clone()).to_string()])
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    rules.sort();
    rules.dedup();
    rules
}

#[derive(Default)]
struct Tally {
    positives: usize,
    fired: usize,
    negatives: usize,
    quiet: usize,
}

#[test]
fn default_rules_on_the_panther_corpus_fire_as_recorded_per_category() {
    let records = records();
    let expected = expectations();
    assert_eq!(
        records.len(),
        expected.len(),
        "expected.json is out of step"
    );
    let mut by_category: BTreeMap<String, Tally> = BTreeMap::new();
    let mut mismatches = Vec::new();
    for (n, (r, x)) in records.iter().zip(&expected).enumerate() {
        assert_eq!(
            r["case"], x["case"],
            "record {n} is not the one expected.json describes"
        );
        let fires = fired_alone(&repair(&r["event"], n));
        let want: Vec<String> = x["fires"]
            .as_array()
            .expect("fires is a list")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect();
        if fires != want {
            mismatches.push(format!(
                "  {n} {} / {}: expected {want:?}, got {fires:?}",
                x["category"], x["case"]
            ));
        }
        let t = by_category
            .entry(x["category"].as_str().unwrap_or_default().to_string())
            .or_default();
        let has_reason = x
            .get("reason")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        match x["scored"].as_str() {
            Some("positive") => {
                assert_eq!(r["expected"], json!(true), "record {n}");
                t.positives += 1;
                t.fired += usize::from(!fires.is_empty());
                assert!(
                    !fires.is_empty() || has_reason,
                    "positive {n} is quiet without a reason"
                );
            }
            Some("negative") => {
                assert_eq!(r["expected"], json!(false), "record {n}");
                t.negatives += 1;
                t.quiet += usize::from(fires.is_empty());
                assert!(
                    fires.is_empty() || has_reason,
                    "negative {n} fires without a reason"
                );
            }
            Some("windowed" | "lookup") => assert_eq!(r["expected"], json!(true), "record {n}"),
            other => panic!("record {n}: unknown scoring {other:?}"),
        }
    }
    let mut table = String::from("category: positives fired / scored, negatives quiet / all\n");
    let mut total = Tally::default();
    for (cat, t) in &by_category {
        table += &format!(
            "  {cat}: {}/{}, {}/{}\n",
            t.fired, t.positives, t.quiet, t.negatives
        );
        total.positives += t.positives;
        total.fired += t.fired;
        total.negatives += t.negatives;
        total.quiet += t.quiet;
    }
    println!("{table}");
    assert!(
        mismatches.is_empty(),
        "{table}rules fired differently:\n{}",
        mismatches.join("\n")
    );
    assert!(total.positives > 40 && total.negatives > 100, "{table}");
    assert!(
        total.fired * 100 >= total.positives * 95,
        "{table}only {}/{} positives fire",
        total.fired,
        total.positives
    );
    assert!(
        total.quiet * 100 >= total.negatives * 85,
        "{table}only {}/{} negatives stay quiet",
        total.quiet,
        total.negatives
    );
}

/// The event of the corpus record with this category and case, repaired.
fn shape(category: &str, case: &str) -> Map<String, Value> {
    let records = records();
    let (n, r) = records
        .iter()
        .enumerate()
        .find(|(_, r)| r["category"] == category && r["case"] == case)
        .unwrap_or_else(|| panic!("no corpus record {category} / {case}"));
    repair(&r["event"], n)
}

/// `count` copies of `event`, `step_ms` apart from 2022-11-29T00:00:00Z, each
/// with its own auditID; `vary` changes each copy (its index given).
fn burst(
    event: &Map<String, Value>,
    count: usize,
    step_ms: usize,
    vary: &dyn Fn(&mut Map<String, Value>, usize),
) -> Vec<String> {
    (0..count)
        .map(|i| {
            let mut e = event.clone();
            let ms = i * step_ms;
            let t = format!(
                "2022-11-29T00:{:02}:{:02}.{:03}Z",
                ms / 60_000,
                ms / 1000 % 60,
                ms % 1000
            );
            e.insert("stageTimestamp".into(), json!(t));
            e.insert("requestReceivedTimestamp".into(), json!(t));
            e.insert("auditID".into(), json!(format!("burst-{i}")));
            vary(&mut e, i);
            Value::Object(e).to_string()
        })
        .collect()
}

fn fires_windowed(lines: &[String], rule: &str) -> bool {
    run(lines).iter().any(|(r, s)| r == rule && s == "firing")
}

fn rename(e: &mut Map<String, Value>, i: usize) {
    if let Some(Value::Object(o)) = e.get_mut("objectRef") {
        o.insert("name".into(), json!(format!("secret-{i:02}")));
    }
}

fn same(_: &mut Map<String, Value>, _: usize) {}

#[test]
fn windowed_rules_count_the_corpus_threshold_positives() {
    // 403 bursts: Panther's "403 from public IP" shape (a kube-system service
    // account's denied watch), twenty times in a minute.
    let denied = shape("forbidden-burst", "EKS 403 from Public IP");
    assert!(fires_windowed(
        &burst(&denied, 20, 2500, &same),
        "Forbidden Burst"
    ));
    assert!(!fires_windowed(
        &burst(&denied, 19, 2500, &same),
        "Forbidden Burst"
    ));

    // Denied secret reads: a 403 and a 404 on get, ten within ten minutes.
    for case in [
        "EKS failed secret get (403 Forbidden)",
        "EKS failed secret get (404 Not Found)",
    ] {
        let refused = shape("secret-access-denied", case);
        assert!(
            fires_windowed(
                &burst(&refused, 10, 30_000, &rename),
                "Secret Access Denied Burst"
            ),
            "{case}"
        );
        assert!(
            !fires_windowed(
                &burst(&refused, 9, 30_000, &rename),
                "Secret Access Denied Burst"
            ),
            "{case}"
        );
    }
    let read = shape("secret-access-denied", "Successful secret get");
    assert!(!fires_windowed(
        &burst(&read, 30, 10_000, &rename),
        "Secret Access Denied Burst"
    ));

    // Enumeration: fifteen different secrets read (or refused) within 30m.
    for case in ["User Gets a Secret", "User Gets Secret - Access Denied"] {
        let get = shape("secret-enumeration", case);
        assert!(
            fires_windowed(&burst(&get, 15, 60_000, &rename), "Secret Enumeration"),
            "{case}"
        );
        assert!(
            !fires_windowed(&burst(&get, 30, 60_000, &same), "Secret Enumeration"),
            "{case}"
        );
    }
}
