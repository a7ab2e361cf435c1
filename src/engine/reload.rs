//! A running engine switched to another rule set (a reload), between two
//! batches. Rules are paired by name; a windowed, sequence or first-seen
//! rule whose fingerprint ([`RuleSet::fingerprint`]) is unchanged keeps its
//! state, moved in memory, in the engine's windows and in every other
//! stream's ([`Windows::carry`]). A rule removed or changed is finished
//! first, as at the end of an input: what the events it was given still
//! imply is emitted, and its firing alerts resolve. Counters follow rule
//! names, so a rule that stays keeps counting.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use super::windows::Windows;
use super::{Engine, RuleMatching, Rules};
use crate::rules::RuleSet;
use crate::sink::AlertSink;

/// How the rules of two sets pair up.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Per new rule: the old rule whose state it takes over.
    pub kept: Vec<Option<usize>>,
    /// Per new rule: the old rule of the same name, changed or not.
    pub by_name: Vec<Option<usize>>,
    pub report: ReloadReport,
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Rules of the new set that the old one did not have.
    pub added: Vec<String>,
    /// Rules of the old set that the new one does not have.
    pub removed: Vec<String>,
    /// Rules whose definition changed (condition with its macros and lists,
    /// clause, `by` fields, enabled): a windowed or stateful one starts fresh.
    pub changed: Vec<String>,
    /// Windowed, sequence and first-seen rules unchanged: they kept their state.
    pub kept: Vec<String>,
    /// Per-event rules unchanged.
    pub unchanged: usize,
    /// Alerts the rules let go produced as they were finished.
    pub alerts: usize,
    /// Stream states converted: the engine's and every other stream's.
    pub streams: usize,
}

impl Plan {
    /// Pairs the rules of `new` with those of `old` by name, and keeps the
    /// state of those whose fingerprint is the same.
    pub fn new(old: &RuleSet, new: &RuleSet) -> Plan {
        let index: HashMap<&str, usize> = old
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        let mut plan = Plan {
            kept: Vec::with_capacity(new.rules.len()),
            by_name: Vec::with_capacity(new.rules.len()),
            report: ReloadReport::default(),
        };
        let report = &mut plan.report;
        for (j, r) in new.rules.iter().enumerate() {
            let old_i = index.get(r.name.as_str()).copied();
            plan.by_name.push(old_i);
            let Some(i) = old_i else {
                report.added.push(r.name.clone());
                plan.kept.push(None);
                continue;
            };
            let same = old.fingerprint(i) == new.fingerprint(j);
            let keyed = r.aggregate.is_some() || r.stateful.is_some();
            plan.kept.push((same && keyed).then_some(i));
            match (same, keyed) {
                (false, _) => report.changed.push(r.name.clone()),
                (true, true) => report.kept.push(r.name.clone()),
                (true, false) => report.unchanged += 1,
            }
        }
        let names: std::collections::HashSet<&str> =
            new.rules.iter().map(|r| r.name.as_str()).collect();
        report.removed = old
            .rules
            .iter()
            .filter(|r| !names.contains(r.name.as_str()))
            .map(|r| r.name.clone())
            .collect();
        plan
    }
}

/// `old` counters, one per old rule, laid out per new rule by `by_name`.
pub fn by_name<T: Clone + Default>(by_name: &[Option<usize>], old: &[T]) -> Vec<T> {
    by_name
        .iter()
        .map(|i| i.and_then(|i| old.get(i).cloned()).unwrap_or_default())
        .collect()
}

impl Engine<'_> {
    /// Runs `rules` from now on, with `matching`. The windows in the engine
    /// and each of `parked` (other streams' windows, see
    /// [`Engine::swap_windows`]) are converted; what the rules let go still
    /// produce goes to `sink`. Call it between two batches: events already
    /// given to the engine were evaluated by the old rules, the next ones
    /// are evaluated by the new.
    pub fn reload<'w>(
        &mut self,
        rules: Arc<RuleSet>,
        matching: RuleMatching,
        parked: impl IntoIterator<Item = &'w mut Windows>,
        sink: &mut dyn AlertSink,
    ) -> io::Result<ReloadReport> {
        let plan = Plan::new(&self.rules, &rules);
        self.windows
            .stateful
            .drain_counts(&mut self.stateful_counts);
        let options = self.window_options;
        let repartition = self
            .repartition
            .as_ref()
            .map(|r| super::Repartition::new(&rules, r.partition_key.clone(), r.idle));
        let mut let_go = vec![self.windows.carry(&plan.kept, &rules, options)];
        if let Some(r) = &repartition {
            let role = self.windows.role();
            self.windows.restrict(role, &r.forwarded);
        }
        for w in parked {
            let_go.push(w.carry(&plan.kept, &rules, options));
            if let Some(r) = &repartition {
                let role = w.role();
                w.restrict(role, &r.forwarded);
            }
        }
        let mut report = plan.report;
        report.streams = let_go.len();
        let before = self.stats.total_alerts();
        for g in let_go {
            self.emit_windowed_at(g.windowed, g.resolution_ns, sink)?;
            self.emit_stateful_at(g.stateful, g.resolution_ns, sink)?;
        }
        report.alerts = (self.stats.total_alerts() - before) as usize;
        self.stats.alerts = by_name(&plan.by_name, &self.stats.alerts);
        self.stateful_counts = by_name(&plan.by_name, &self.stateful_counts);
        if let Some(m) = &mut self.metrics {
            let mut r = m
                .registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            super::drain_rule_counts(&mut m.matched, &mut m.alerts, &mut r);
            let names = rules.rules.iter().map(|r| r.name.clone()).collect();
            r.set_rules(names, &plan.by_name);
        }
        self.rules = Rules::Shared(rules);
        if let Some(m) = &mut self.metrics {
            // The new rules' operands.
            m.ops = super::label_ops(&self.rules, &m.labels);
        }
        self.matching = matching;
        if repartition.is_some() {
            self.repartition = repartition;
        }
        self.publish(None);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSource;
    use crate::sink::stdout::{Format, StdoutSink};
    use crate::source::lines::Line;

    /// Three denials a second make "Burst" (5 in 10s) fire; "Exec" is a
    /// per-event rule.
    const RULES: &str = r#"
- rule: Burst
  desc: d
  condition: ka.response.code = 403
  aggregate: count > 4 over 10s by ka.user.name
  output: "%ka.user.name denied %agg.value times"
  priority: WARNING
  source: k8s_audit
- rule: Exec
  desc: d
  condition: ka.target.subresource = exec
  output: "exec by %ka.user.name"
  priority: NOTICE
  source: k8s_audit
"#;

    fn set(text: &str) -> Arc<RuleSet> {
        let text: &'static str = Box::leak(text.to_string().into_boxed_str());
        let loaded = crate::rules::load(&[RuleSource::Embedded("r.yaml", text)]);
        Arc::new(loaded.rules.expect("rules load"))
    }

    fn denied(user: &str, s: u32) -> String {
        format!(
            r#"{{"auditID":"{user}{s}","stage":"ResponseComplete","verb":"list","user":{{"username":"{user}"}},"objectRef":{{"resource":"configmaps"}},"responseStatus":{{"code":403}},"stageTimestamp":"2024-10-29T12:00:{s:02}Z"}}"#
        )
    }

    fn feed(engine: &mut Engine, sink: &mut StdoutSink<Vec<u8>>, lines: &[String]) {
        for l in lines {
            engine.process_line(Line::Text(l.as_bytes()), sink).unwrap();
        }
    }

    fn alerts(sink: StdoutSink<Vec<u8>>) -> Vec<String> {
        String::from_utf8(sink.into_inner())
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!(
                    "{} {}",
                    v["rule"].as_str().unwrap(),
                    v["output"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn the_plan_pairs_rules_by_name_and_fingerprint() {
        let old = set(RULES);
        let new = set(&format!(
            "{}\n- rule: Added\n  desc: d\n  condition: ka.verb = get\n  output: o\n  priority: INFO\n  source: k8s_audit\n",
            RULES.replace("count > 4", "count > 5").replace("- rule: Exec", "- rule: Exec2")
        ));
        let plan = Plan::new(&old, &new);
        assert_eq!(plan.report.changed, ["Burst"]);
        assert_eq!(plan.report.added, ["Exec2", "Added"]);
        assert_eq!(plan.report.removed, ["Exec"]);
        assert!(plan.report.kept.is_empty());
        assert_eq!(plan.kept, [None, None, None]);
        assert_eq!(plan.by_name, [Some(0), None, None]);
        // Same text: everything kept or unchanged.
        let plan = Plan::new(&old, &set(RULES));
        assert_eq!(plan.report.kept, ["Burst"]);
        assert_eq!(plan.report.unchanged, 1);
        assert_eq!(plan.kept, [Some(0), None]);
    }

    /// The reference: ten denials and an exec with one rule set.
    fn without_reload() -> Vec<String> {
        let rules = set(RULES);
        let mut engine = Engine::new(rules, RuleMatching::First);
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        let lines: Vec<String> = (0..10).map(|s| denied("mallory", s)).collect();
        feed(&mut engine, &mut sink, &lines);
        engine.finish(&mut sink).unwrap();
        alerts(sink)
    }

    #[test]
    fn a_kept_window_counts_across_a_reload_that_moves_it() {
        let expected = without_reload();
        assert_eq!(
            expected,
            [
                "Burst 12:00:04.000000000: Warning mallory denied 5 times",
                "Burst 12:00:15.000000000: Warning mallory denied 4 times"
            ]
        );
        let (mut engine, registry) =
            Engine::new(set(RULES), RuleMatching::First).with_metrics(Vec::new(), 10);
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        let lines: Vec<String> = (0..10).map(|s| denied("mallory", s)).collect();
        feed(&mut engine, &mut sink, &lines[..3]);
        // A rule added before Burst moves it to index 1.
        let added = format!(
            "- rule: First\n  desc: d\n  condition: ka.verb = delete\n  output: o\n  priority: INFO\n  source: k8s_audit\n{RULES}"
        );
        let report = engine
            .reload(set(&added), RuleMatching::First, [], &mut sink)
            .unwrap();
        assert_eq!(report.kept, ["Burst"]);
        assert_eq!(report.added, ["First"]);
        assert_eq!(report.streams, 1);
        assert_eq!(report.alerts, 0);
        feed(&mut engine, &mut sink, &lines[3..]);
        engine.finish(&mut sink).unwrap();
        assert_eq!(alerts(sink), expected);
        let text = registry.lock().unwrap().render();
        assert!(
            text.contains("saker_rule_matches_total{rule=\"Burst\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("saker_rule_matches_total{rule=\"First\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("saker_alerts_total{rule=\"Burst\",state=\"firing\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_changed_rule_is_finished_and_starts_fresh() {
        let mut engine = Engine::new(set(RULES), RuleMatching::First);
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        let lines: Vec<String> = (0..10).map(|s| denied("mallory", s)).collect();
        // Five denials in: the count reaches 5 at 12:00:04, but the watermark
        // (5s behind) has not evaluated it yet.
        feed(&mut engine, &mut sink, &lines[..5]);
        let mut other = engine.new_windows();
        let changed = set(&RULES.replace("count > 4", "count > 6"));
        let report = engine
            .reload(changed, RuleMatching::First, [&mut other], &mut sink)
            .unwrap();
        assert_eq!(report.changed, ["Burst"]);
        assert_eq!(report.streams, 2);
        // The old rule, finished, fired and resolved on what it had.
        assert_eq!(report.alerts, 2);
        // The new one starts from nothing: five more denials are not seven.
        feed(&mut engine, &mut sink, &lines[5..]);
        engine.finish(&mut sink).unwrap();
        assert_eq!(
            alerts(sink),
            [
                "Burst 12:00:04.000000000: Warning mallory denied 5 times",
                "Burst 12:00:10.000000000: Warning mallory denied 4 times"
            ]
        );
    }

    #[test]
    fn a_parked_stream_keeps_its_state_and_takes_the_new_rules() {
        let mut engine = Engine::new(set(RULES), RuleMatching::First);
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        let lines: Vec<String> = (0..10).map(|s| denied("mallory", s)).collect();
        // Three denials in a stream that is then parked.
        feed(&mut engine, &mut sink, &lines[..3]);
        let mut parked = engine.new_windows();
        engine.swap_windows(&mut parked);
        let exec = r#"{"auditID":"e","stage":"ResponseStarted","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"pods","subresource":"exec"},"stageTimestamp":"2024-10-29T12:00:00Z"}"#;
        let renamed = set(&RULES.replace("exec by", "exec (new output) by"));
        engine
            .reload(renamed, RuleMatching::First, [&mut parked], &mut sink)
            .unwrap();
        engine
            .process_line(Line::Text(exec.as_bytes()), &mut sink)
            .unwrap();
        engine.swap_windows(&mut parked);
        feed(&mut engine, &mut sink, &lines[3..]);
        engine.finish(&mut sink).unwrap();
        assert_eq!(
            alerts(sink),
            [
                "Exec 12:00:00.000000000: Notice exec (new output) by alice",
                "Burst 12:00:04.000000000: Warning mallory denied 5 times",
                "Burst 12:00:15.000000000: Warning mallory denied 4 times"
            ]
        );
    }

    #[test]
    fn reloading_the_same_rules_anywhere_changes_no_alert() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/audit-sample.jsonl");
        let sample = std::fs::read_to_string(path).expect("bundled sample");
        let load = || {
            Arc::new(
                crate::rules::load(&crate::rules::default_sources())
                    .rules
                    .unwrap(),
            )
        };
        // Two sets loaded apart, switched between: paired by fingerprint.
        let sets = [load(), load()];
        let run = |every: Option<usize>| {
            let mut engine = Engine::new(sets[0].clone(), RuleMatching::All);
            let mut sink = StdoutSink::new(Vec::new(), Format::Json);
            let mut reports = Vec::new();
            for (n, line) in sample.lines().enumerate() {
                if every.is_some_and(|k| n % k == k - 1) {
                    let next = sets[(reports.len() + 1) % 2].clone();
                    let r = engine
                        .reload(next, RuleMatching::All, [], &mut sink)
                        .unwrap();
                    reports.push(r);
                }
                engine
                    .process_line(Line::Text(line.as_bytes()), &mut sink)
                    .unwrap();
            }
            engine.finish(&mut sink).unwrap();
            (String::from_utf8(sink.into_inner()).unwrap(), reports)
        };
        let (expected, _) = run(None);
        assert!(expected.lines().count() > 40, "the sample alerts");
        assert!(expected.contains("\"aggregate\""), "windowed alerts too");
        for every in [1, 7, 100] {
            let (got, reports) = run(Some(every));
            assert!(!reports.is_empty());
            for r in &reports {
                assert!(r.added.is_empty() && r.removed.is_empty() && r.changed.is_empty());
                assert!(!r.kept.is_empty(), "windowed and stateful rules kept");
                assert_eq!(r.alerts, 0);
            }
            assert!(
                got == expected,
                "a reload every {every} lines changed the alerts"
            );
        }
    }
}
