//! The wiring of the pipeline: lines in, events decoded, rules matched,
//! alerts out to a sink, and every outcome counted. Windowed rules go
//! through [`windows`].

pub mod windows;

use std::io;

use windows::{WindowOptions, Windows};

use crate::event::{decode_document, Event, Skip};
use crate::rules::RuleSet;
use crate::sink::{Alert, AlertSink};
use crate::source::lines::{strip_prefixes, Line};

/// Falco's `rule_matching`: stop at the first matching rule, or try all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RuleMatching {
    #[default]
    First,
    All,
}

/// Counters of everything the engine did.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub lines: u64,
    pub events: u64,
    pub skipped: [u64; Skip::ALL.len()],
    /// Events that matched at least one rule.
    pub matched: u64,
    /// Alerts per rule, indexed like `RuleSet::rules`.
    pub alerts: Vec<u64>,
}

impl Stats {
    pub fn skipped(&self, s: Skip) -> u64 {
        self.skipped[s as usize]
    }

    pub fn total_alerts(&self) -> u64 {
        self.alerts.iter().sum()
    }
}

/// How many skipped lines of each kind are logged before only counting.
const LOGGED_SKIPS: u64 = 5;

pub struct Engine<'r> {
    rules: &'r RuleSet,
    matching: RuleMatching,
    windows: Windows,
    pub stats: Stats,
}

impl<'r> Engine<'r> {
    pub fn new(rules: &'r RuleSet, matching: RuleMatching) -> Self {
        Engine::with_options(rules, matching, WindowOptions::default())
    }

    pub fn with_options(
        rules: &'r RuleSet,
        matching: RuleMatching,
        options: WindowOptions,
    ) -> Self {
        Engine {
            rules,
            matching,
            windows: Windows::new(rules, options),
            stats: Stats {
                alerts: vec![0; rules.rules.len()],
                ..Stats::default()
            },
        }
    }

    /// End of input: every remaining tick of the windowed rules is
    /// evaluated (absence rules only up to the last event's tick).
    pub fn finish(&mut self, sink: &mut dyn AlertSink) -> io::Result<()> {
        let transitions = self.windows.advance(true);
        self.emit_windowed(transitions, sink)
    }

    /// A live input has been quiet for `idle_ns` since its last event.
    pub fn idle(&mut self, idle_ns: u64, sink: &mut dyn AlertSink) -> io::Result<()> {
        let transitions = self.windows.idle(idle_ns);
        self.emit_windowed(transitions, sink)
    }

    fn emit_windowed(
        &mut self,
        transitions: Vec<(usize, crate::window::Transition)>,
        sink: &mut dyn AlertSink,
    ) -> io::Result<()> {
        let res = self.windows.resolution_ns();
        for (i, t) in transitions {
            self.stats.alerts[i] += 1;
            sink.emit(&windows::alert(&self.rules.rules[i], &t, res))?;
        }
        Ok(())
    }

    /// Processes one input line (prefixes stripped here).
    pub fn process_line(&mut self, line: Line, sink: &mut dyn AlertSink) -> io::Result<()> {
        self.stats.lines += 1;
        let text = match line {
            Line::TooLong => {
                self.skip(Skip::TooLong);
                return Ok(());
            }
            Line::Text(t) => strip_prefixes(t),
        };
        if text.is_empty() {
            self.skip(Skip::Blank);
            return Ok(());
        }
        let mut result = Ok(());
        let mut skips = Vec::new();
        decode_document(
            text,
            |ev| {
                if result.is_ok() {
                    result = self.process_event(&ev, sink);
                }
            },
            |s| skips.push(s),
        );
        for s in skips {
            self.skip(s);
        }
        result
    }

    fn skip(&mut self, reason: Skip) {
        let n = &mut self.stats.skipped[reason as usize];
        *n += 1;
        // Log text between events is normal for `kubectl logs` input: it is
        // counted and shown at debug level; anything else is worth a warning.
        let (line, count) = (self.stats.lines, *n);
        match reason {
            Skip::Blank => {}
            Skip::NotJson => tracing::debug!(line, "skipped input: {}", reason.describe()),
            _ if count <= LOGGED_SKIPS => {
                tracing::warn!(
                    line,
                    reason = reason.as_str(),
                    "skipped input: {}",
                    reason.describe()
                );
                if count == LOGGED_SKIPS {
                    tracing::warn!(
                        reason = reason.as_str(),
                        "further lines skipped for this reason are only counted"
                    );
                }
            }
            _ => {}
        }
    }

    /// Evaluates the rules on one event and hands alerts to the sink.
    pub fn process_event<'a>(
        &mut self,
        ev: &Event<'a>,
        sink: &mut dyn AlertSink,
    ) -> io::Result<()> {
        self.stats.events += 1;
        let mut matched = false;
        let mut cx = self.rules.context();
        let rules = self.rules;
        let windowed = self.windows.any();
        let tick = self.windows.tick_of(ev.time_ns);
        if windowed {
            self.windows.observe(tick);
        }
        let mut alerted = false;
        for &i in rules.candidates(ev, &mut cx) {
            let rule = &rules.rules[i];
            if rule.aggregate.is_some() {
                // Windowed rules count every matching event, whatever
                // `--rule-matching` says about per-event alerts.
                if rules.matches(i, ev, &mut cx) {
                    matched = true;
                    self.windows.add(rules, i, tick, ev, &mut cx);
                }
                continue;
            }
            if alerted && self.matching == RuleMatching::First {
                continue;
            }
            if !rules.matches(i, ev, &mut cx) {
                continue;
            }
            alerted = true;
            matched = true;
            self.stats.alerts[i] += 1;
            let alert = Alert {
                time_ns: ev.time_ns,
                rule: &rule.name,
                priority: rule.priority,
                tags: &rule.tags,
                message: self.rules.render_output(i, ev, &mut cx),
                fields: self.rules.output_values(i, ev, &mut cx),
                aggregate: None,
            };
            sink.emit(&alert)?;
        }
        if matched {
            self.stats.matched += 1;
        }
        if windowed {
            let transitions = self.windows.advance(false);
            self.emit_windowed(transitions, sink)?;
        }
        Ok(())
    }

    /// A human summary for stderr.
    pub fn summary(&self, input: &str, bytes: u64, seconds: f64) -> String {
        let s = &self.stats;
        let mut out = format!(
            "saker: {input}: {} lines, {} events, {} alerts in {:.2}s ({:.0} events/s, {:.1} MB/s)\n",
            s.lines,
            s.events,
            s.total_alerts(),
            seconds,
            s.events as f64 / seconds.max(1e-9),
            bytes as f64 / 1e6 / seconds.max(1e-9),
        );
        if self.windows.any() {
            let w = self.windows.stats();
            out.push_str(&format!(
                "saker: windows: {} keys held, {} late events, {} keys evicted, {} distinct values refused\n",
                self.windows.keys(),
                w.late_events,
                w.evictions,
                w.values_refused
            ));
        }
        let skipped: Vec<String> = Skip::ALL
            .iter()
            .filter(|r| s.skipped(**r) > 0)
            .map(|r| format!("{} {}", s.skipped(*r), r.describe()))
            .collect();
        if !skipped.is_empty() {
            out.push_str(&format!("saker: skipped: {}\n", skipped.join(", ")));
        }
        let mut by_rule: Vec<(u64, &str)> = self
            .rules
            .rules
            .iter()
            .zip(&s.alerts)
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| (*n, r.name.as_str()))
            .collect();
        by_rule.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        for (n, name) in by_rule {
            out.push_str(&format!("saker:   {n:>8}  {name}\n"));
        }
        out
    }
}
