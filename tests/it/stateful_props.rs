//! Property test of sequence and first-seen rules: random out-of-order
//! streams through the engine (on one thread and on two) give exactly the
//! alerts of a naive model written straight from DESIGN 2.4 and 2.5.

use std::collections::HashMap;

use proptest::prelude::*;
use saker::engine::windows::WindowOptions;
use saker::engine::{Engine, RuleMatching};
use saker::rules::{RuleSet, RuleSource};
use saker::sink::stdout::{Format, StdoutSink};
use saker::source::clock::SystemClock;
use saker::source::driver::Driver;
use saker::source::lines::Line;
use saker::source::stream::LineSource;

const RULES: &str = r#"
- rule: Seq3
  desc: >
    three steps whose first two overlap, by user, within 10s; the first
    step's test of the key (not bob) narrows the later steps too
  sequence:
    within: 10s
    steps:
      - {name: a, condition: "ka.verb in (create, update) and ka.user.name != bob", by: [ka.user.name]}
      - {name: b, condition: "ka.verb in (update, patch)", by: [ka.user.name]}
      - {name: c, condition: "ka.verb = delete", by: [ka.user.name]}
  output: "%c.ka.user.name"
  priority: WARNING
  source: k8s_audit
- rule: Pair
  desc: a create then a delete, by user, within 2s
  sequence:
    within: 2s
    steps:
      - {name: a, condition: "ka.verb = create", by: [ka.user.name]}
      - {name: b, condition: "ka.verb = delete", by: [ka.user.name]}
  output: "%b.ka.user.name"
  priority: WARNING
  source: k8s_audit
- rule: Seen
  desc: a user not seen for 10s
  condition: ka.verb in (get, delete)
  aggregate: first_seen over 10s by ka.user.name
  output: "%ka.user.name"
  priority: NOTICE
  source: k8s_audit
"#;

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
const BASE: i64 = 1_730_203_200 * S;
const WINDOW: i64 = 10; // ticks of 1s
const LATENESS: i64 = 5; // ticks

#[derive(Debug, Clone)]
struct Ev {
    time: i64,
    user: Option<&'static str>,
    verb: &'static str,
}

fn stream() -> impl Strategy<Value = Vec<Ev>> {
    let one = (
        -32i64..32,
        prop_oneof![Just(Some("alice")), Just(Some("bob")), Just(None)],
        prop_oneof![
            Just("create"),
            Just("update"),
            Just("patch"),
            Just("delete"),
            Just("get")
        ],
    );
    prop::collection::vec(one, 0..40).prop_map(|v| {
        v.into_iter()
            .enumerate()
            // Half a second apart, jittered by up to 8s in quarter seconds:
            // late events, exact boundaries and reordering all happen.
            .map(|(i, (jitter, user, verb))| Ev {
                time: BASE + (i as i64 * 500 + jitter * 250).max(0) * MS,
                user,
                verb,
            })
            .collect()
    })
}

fn line(i: usize, e: &Ev) -> String {
    let user = e.user.map_or(String::new(), |u| {
        format!(r#""user":{{"username":"{u}"}},"#)
    });
    format!(
        r#"{{"auditID":"e{i}","stage":"ResponseComplete","verb":"{}",{user}"objectRef":{{"resource":"things","namespace":"default","name":"x"}},"stageTimestamp":"{}"}}"#,
        e.verb,
        saker::event::time::format_rfc3339_nanos(e.time)
    )
}

/// One alert, as compared: rule, time, key, and the steps' audit IDs or
/// the first-seen `previous` time.
type Got = (String, i64, Vec<String>, Vec<String>);

fn rules() -> RuleSet {
    let loaded = saker::rules::load(&[RuleSource::Embedded("props.yaml", RULES)]);
    loaded.rules.expect("the property rules load")
}

fn parse(out: Vec<u8>) -> Vec<Got> {
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let a: serde_json::Value = serde_json::from_str(l).unwrap();
            let time = saker::event::time::parse_rfc3339(a["time"].as_str().unwrap()).unwrap();
            let rule = a["rule"].as_str().unwrap().to_string();
            let strs = |v: &serde_json::Value| -> Vec<String> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap_or("null").to_string())
                    .collect()
            };
            if rule != "Seen" {
                let s = &a["sequence"];
                let ids = s["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|st| st["auditID"].as_str().unwrap().to_string())
                    .collect();
                (rule, time, strs(&s["key"]), ids)
            } else {
                let g = &a["aggregate"];
                assert_eq!(g["state"], "new");
                let prev = g["previous"]
                    .as_str()
                    .map(|p| saker::event::time::parse_rfc3339(p).unwrap().to_string());
                (
                    rule,
                    time,
                    vec![g["key"]["ka.user.name"].as_str().unwrap().to_string()],
                    prev.into_iter().collect(),
                )
            }
        })
        .collect()
}

fn engine_alerts(set: &RuleSet, events: &[Ev], threads: usize) -> Vec<Got> {
    let options = WindowOptions {
        lateness_ns: (LATENESS * S) as u64,
        ..WindowOptions::default()
    };
    let mut engine = Engine::with_options(set, RuleMatching::First, options);
    let mut sink = StdoutSink::new(Vec::new(), Format::Json);
    let text: String = events
        .iter()
        .enumerate()
        .map(|(i, e)| line(i, e) + "\n")
        .collect();
    if threads == 1 {
        for l in text.lines() {
            engine
                .process_line(Line::Text(l.as_bytes()), &mut sink)
                .unwrap();
        }
        engine.finish(&mut sink).unwrap();
    } else {
        // The driver evaluates what is left at the end of the input.
        let mut source = LineSource::new(text.as_bytes(), 1 << 20, false, "props");
        Driver::new(&mut engine, &mut sink, SystemClock)
            .run_threads(&mut source, threads)
            .unwrap();
    }
    parse(sink.into_inner())
}

/// A step's partial matches by key: start time and the events' indexes.
type Partials<'a> = HashMap<&'a str, (i64, Vec<usize>)>;

/// DESIGN 2.4 and 2.5, naively: late events found by replaying the
/// watermark, the others sorted into application order, sequences applied
/// step by step from the last down, first-seen found by scanning back.
fn model(events: &[Ev]) -> Vec<Got> {
    let tick = |t: i64| t.div_euclid(S);
    let mut watermark = i64::MIN;
    let mut max_tick = i64::MIN;
    let mut applied: Vec<(i64, usize)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if tick(e.time) > watermark {
            applied.push((e.time, i));
        }
        max_tick = max_tick.max(tick(e.time));
        watermark = watermark.max(max_tick - LATENESS);
    }
    applied.sort();
    let first_tick = events.first().map(|e| tick(e.time));
    // (rule, within, verbs of each step, a user the first step refuses)
    type SeqModel<'a> = (&'a str, i64, &'a [&'a [&'a str]], Option<&'a str>);
    let sequences: [SeqModel; 2] = [
        (
            "Seq3",
            10 * S,
            &[&["create", "update"], &["update", "patch"], &["delete"]],
            Some("bob"),
        ),
        ("Pair", 2 * S, &[&["create"], &["delete"]], None),
    ];
    // partial[rule][step][key] = (start, audit IDs so far)
    let mut partial: Vec<Vec<Partials>> = sequences
        .iter()
        .map(|(_, _, st, _)| vec![HashMap::new(); st.len() - 1])
        .collect();
    let mut out = Vec::new();
    let mut seen: Vec<(&str, i64)> = Vec::new();
    for &(t, i) in &applied {
        let e = &events[i];
        for (r, (name, within, steps, refused)) in sequences.iter().enumerate() {
            let Some(user) = e.user else { continue };
            let partial = &mut partial[r];
            let n = steps.len();
            for step in (0..n).rev() {
                if !steps[step].contains(&e.verb) {
                    continue;
                }
                if step == 0 {
                    if *refused != Some(user) {
                        partial[0].insert(user, (t, vec![i]));
                    }
                    continue;
                }
                let Some(p) = partial[step - 1].get(user).cloned() else {
                    continue;
                };
                let last = events[*p.1.last().unwrap()].time;
                if t - p.0 > *within || t < last {
                    continue;
                }
                partial[step - 1].remove(user);
                let mut ids = p.1.clone();
                ids.push(i);
                if step == n - 1 {
                    let ids = ids.iter().map(|j| format!("e{j}")).collect();
                    out.push((name.to_string(), t, vec![user.to_string()], ids));
                } else {
                    match partial[step].get(user) {
                        Some(q) if q.0 > p.0 => {}
                        _ => {
                            partial[step].insert(user, (p.0, ids));
                        }
                    }
                }
            }
        }
        if ["get", "delete"].contains(&e.verb) {
            let key = e.user.unwrap_or("<NA>");
            let tk = tick(t);
            let earlier: Vec<i64> = seen
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, x)| *x)
                .collect();
            let in_window = earlier.iter().any(|&x| x > tk - WINDOW && x <= tk);
            let learning = first_tick.is_some_and(|f| tk < f + WINDOW);
            if !in_window && !learning {
                let prev = earlier.iter().max().map(|x| (x * S).to_string());
                out.push((
                    "Seen".to_string(),
                    t,
                    vec![key.to_string()],
                    prev.into_iter().collect(),
                ));
            }
            seen.push((key, tk));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn sequences_and_first_seen_match_the_naive_model(events in stream()) {
        let set = rules();
        let want = model(&events);
        let one = engine_alerts(&set, &events, 1);
        prop_assert_eq!(&one, &want);
        let two = engine_alerts(&set, &events, 2);
        prop_assert_eq!(&two, &want);
    }
}
