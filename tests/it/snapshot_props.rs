//! Property tests of state export and import (`Windows::snapshot`,
//! `Windows::restore`): a stream cut anywhere, its state saved as JSON and
//! restored into a fresh engine, goes on to give exactly the alerts the
//! uncut stream gives; restored into a changed rule set, the unchanged
//! rules go on as before and the changed ones as if they had just started.

use proptest::prelude::*;
use saker::engine::windows::snapshot::Snapshot;
use saker::engine::windows::WindowOptions;
use saker::engine::{Engine, RuleMatching};
use saker::rules::{RuleSet, RuleSource};
use saker::sink::stdout::{Format, StdoutSink};
use saker::source::lines::Line;

const RULES: &str = r#"
- rule: Burst
  desc: three lists in 5s by user, held 2s
  condition: ka.verb = list
  aggregate: count >= 3 over 5s by ka.user.name for 2s
  output: "%ka.user.name %agg.value"
  priority: WARNING
  source: k8s_audit
- rule: Many
  desc: three names read in 10s by user
  condition: ka.verb in (get, list)
  aggregate: distinct(ka.target.name) >= 3 over 10s by ka.user.name
  output: "%ka.user.name %agg.value"
  priority: WARNING
  source: k8s_audit
- rule: Silent
  desc: nothing for 4s
  condition: ka.auditid exists
  aggregate: count < 1 over 4s
  output: "silent"
  priority: WARNING
  source: k8s_audit
- rule: Pair
  desc: a create then a delete of one name by user within 6s
  sequence:
    within: 6s
    steps:
      - {name: a, condition: "ka.verb = create", by: [ka.user.name, ka.target.name]}
      - {name: b, condition: "ka.verb = delete", by: [ka.user.name, ka.target.name]}
  output: "%a.ka.auditid then %b.ka.auditid"
  priority: WARNING
  source: k8s_audit
- rule: Seen
  desc: a user not seen getting for 8s
  condition: ka.verb = get
  aggregate: first_seen over 8s by ka.user.name
  output: "%ka.user.name %ka.auditid"
  priority: NOTICE
  source: k8s_audit
"#;

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
const BASE: i64 = 1_730_203_200 * S;

#[derive(Debug, Clone)]
struct Ev {
    time: i64,
    user: &'static str,
    verb: &'static str,
    name: &'static str,
}

fn events(n: usize) -> impl Strategy<Value = Vec<Ev>> {
    let one = (
        -12i64..12,
        prop_oneof![Just("alice"), Just("bob"), Just("carol")],
        prop_oneof![Just("list"), Just("get"), Just("create"), Just("delete")],
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")],
        0i64..40,
    );
    prop::collection::vec(one, 0..n).prop_map(|v| {
        let mut t = 0i64;
        v.into_iter()
            .map(|(jitter, user, verb, name, gap)| {
                // Mostly 300 ms apart, now and then a quiet gap of seconds,
                // jittered by up to 3 s: late events and silences happen.
                t += if gap == 0 { 9_000 } else { 300 };
                Ev {
                    time: BASE + (t + jitter * 250).max(0) * MS,
                    user,
                    verb,
                    name,
                }
            })
            .collect()
    })
}

fn line(i: usize, e: &Ev) -> String {
    format!(
        r#"{{"auditID":"e{i}","stage":"ResponseComplete","verb":"{}","user":{{"username":"{}"}},"objectRef":{{"resource":"things","namespace":"default","name":"{}"}},"stageTimestamp":"{}"}}"#,
        e.verb,
        e.user,
        e.name,
        saker::event::time::format_rfc3339_nanos(e.time)
    )
}

fn load(text: &str) -> RuleSet {
    let src = RuleSource::Embedded(
        "snapshot.yaml",
        Box::leak(text.to_string().into_boxed_str()),
    );
    saker::rules::load(&[src])
        .rules
        .expect("the property rules load")
}

fn options() -> WindowOptions {
    WindowOptions {
        lateness_ns: (3 * S) as u64,
        ..WindowOptions::default()
    }
}

type Sink = StdoutSink<Vec<u8>>;

fn feed(engine: &mut Engine, sink: &mut Sink, events: &[(usize, &Ev)]) {
    for (i, e) in events {
        engine
            .process_line(Line::Text(line(*i, e).as_bytes()), sink)
            .unwrap();
    }
}

/// The alerts a sink got, one JSON line each.
fn lines(sink: Sink) -> Vec<String> {
    String::from_utf8(sink.into_inner())
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn of_rule(lines: &[String], rule: &str) -> Vec<String> {
    let tag = format!(r#""rule":"{rule}""#);
    lines.iter().filter(|l| l.contains(&tag)).cloned().collect()
}

/// Runs `before` through an engine of `set`, saves its state through JSON.
fn saved(set: &RuleSet, before: &[(usize, &Ev)]) -> (Vec<String>, Snapshot) {
    let mut engine = Engine::with_options(set, RuleMatching::All, options());
    let mut sink = StdoutSink::new(Vec::new(), Format::Json);
    feed(&mut engine, &mut sink, before);
    let json = serde_json::to_vec(&engine.snapshot()).unwrap();
    (lines(sink), serde_json::from_slice(&json).unwrap())
}

/// Restores `snapshot` into an engine of `set`, feeds `after`, finishes.
fn continued(set: &RuleSet, snapshot: Snapshot, after: &[(usize, &Ev)]) -> Vec<String> {
    let mut engine = Engine::with_options(set, RuleMatching::All, options());
    let before = snapshot.clone();
    engine.restore(snapshot).expect("the snapshot restores");
    assert_eq!(
        engine.snapshot(),
        before,
        "the restored state saves as it was saved"
    );
    let mut sink = StdoutSink::new(Vec::new(), Format::Json);
    feed(&mut engine, &mut sink, after);
    engine.finish(&mut sink).unwrap();
    lines(sink)
}

/// The whole stream through one engine: alerts before and after the cut.
fn uncut(
    set: &RuleSet,
    before: &[(usize, &Ev)],
    after: &[(usize, &Ev)],
) -> (Vec<String>, Vec<String>) {
    let mut engine = Engine::with_options(set, RuleMatching::All, options());
    let mut sink = StdoutSink::new(Vec::new(), Format::Json);
    feed(&mut engine, &mut sink, before);
    let head = lines(std::mem::replace(
        &mut sink,
        StdoutSink::new(Vec::new(), Format::Json),
    ));
    feed(&mut engine, &mut sink, after);
    engine.finish(&mut sink).unwrap();
    (head, lines(sink))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_restored_state_goes_on_exactly_as_the_uncut_stream(evs in events(80), cut in 0usize..80) {
        let set = load(RULES);
        let indexed: Vec<(usize, &Ev)> = evs.iter().enumerate().collect();
        let cut = cut.min(indexed.len());
        let (before, after) = indexed.split_at(cut);
        let (head, snapshot) = saved(&set, before);
        let tail = continued(&set, snapshot, after);
        let (want_head, want_tail) = uncut(&set, before, after);
        prop_assert_eq!(head, want_head);
        prop_assert_eq!(tail, want_tail);
    }

    #[test]
    fn a_changed_rule_set_keeps_the_unchanged_rules_and_restarts_the_changed(
        evs in events(60), later in events(40),
    ) {
        let old = load(RULES);
        // Burst's threshold changes, Many's list gains a verb, Seen is
        // removed and Fresh added; Silent and Pair are untouched.
        let new_text = RULES
            .replace("count >= 3 over 5s", "count >= 2 over 5s")
            .replace("ka.verb in (get, list)", "ka.verb in (get, list, watch)")
            .replace("- rule: Seen", "- rule: Fresh");
        let new = load(&new_text);
        // The continuation starts after the saved stream's last event and
        // lateness, as after a pause.
        let end = evs.iter().map(|e| e.time).max().unwrap_or(BASE);
        let later: Vec<Ev> = later
            .into_iter()
            .map(|mut e| {
                e.time += end - BASE + 10 * S;
                e
            })
            .collect();
        let all: Vec<Ev> = evs.iter().chain(&later).cloned().collect();
        let indexed: Vec<(usize, &Ev)> = all.iter().enumerate().collect();
        let (before, after) = indexed.split_at(evs.len());
        let (_, snapshot) = saved(&old, before);
        let mut engine = Engine::with_options(&new, RuleMatching::All, options());
        let report = engine.restore(snapshot).expect("restores");
        prop_assert_eq!(&report.restored, &["Silent", "Pair"]);
        prop_assert_eq!(&report.fresh, &["Burst", "Many", "Fresh"]);
        prop_assert_eq!(&report.dropped, &["Burst", "Many", "Seen"]);
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        feed(&mut engine, &mut sink, after);
        engine.finish(&mut sink).unwrap();
        let got = lines(sink);
        // Unchanged rules: as the uncut stream under the old rules.
        let (_, old_tail) = uncut(&old, before, after);
        for rule in ["Silent", "Pair"] {
            prop_assert_eq!(of_rule(&got, rule), of_rule(&old_tail, rule), "{}", rule);
        }
        // Changed and new rules: as an engine of the new rules that sees
        // only the continuation.
        let (_, fresh_tail) = uncut(&new, &[], after);
        for rule in ["Burst", "Many", "Fresh"] {
            prop_assert_eq!(of_rule(&got, rule), of_rule(&fresh_tail, rule), "{}", rule);
        }
    }
}

#[test]
fn a_snapshot_of_another_resolution_or_lateness_is_refused() {
    let set = load(RULES);
    let e = Ev {
        time: BASE,
        user: "alice",
        verb: "list",
        name: "a",
    };
    let (_, snapshot) = saved(&set, &[(0, &e)]);
    let mut engine = Engine::with_options(&set, RuleMatching::All, WindowOptions::default());
    let err = engine.restore(snapshot.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "saved with a lateness of 3 ticks, running with 5"
    );
    let mut other = snapshot.clone();
    other.version = 99;
    assert!(engine
        .restore(other)
        .unwrap_err()
        .to_string()
        .contains("version 99"));
    let mut other = snapshot;
    other.resolution_ns = 2 * S;
    assert!(matches!(
        engine.restore(other),
        Err(saker::engine::windows::snapshot::RestoreError::Resolution { .. })
    ));
}
