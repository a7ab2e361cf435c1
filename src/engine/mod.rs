//! The wiring of the pipeline: lines in, events decoded, rules matched,
//! alerts out to a sink, and every outcome counted. Windowed rules go
//! through [`windows`].

pub mod capture;
pub mod forward;
pub mod observe;
pub mod parallel;
pub mod reload;
pub mod rules;
pub mod stateful;
pub mod windows;

use std::borrow::Cow;
use std::io;

use std::time::Instant;

pub use rules::Rules;
use windows::{WindowOptions, Windows};

use crate::fields::{self, Arg, FieldDef};
use crate::sink::metrics::{AlertKind, Registry, Shared};

use crate::event::{decode_document, Event, Skip};
use crate::rules::predicate::{EvalCtx, OperandId};
use crate::rules::stateful::StatefulRule;
use crate::rules::RuleSet;
use crate::sink::{Alert, AlertSink};
use crate::source::lines::{strip_prefixes, Line};
use crate::stateful::Hit;

/// Falco's `rule_matching`: stop at the first matching rule, or try all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// Alerts per rule, indexed like `RuleSet::rules`.
    pub alerts: Vec<u64>,
}

impl Stats {
    /// No counts yet, for a set of `rules` rules.
    pub fn for_rules(rules: usize) -> Self {
        Stats {
            alerts: vec![0; rules],
            ..Stats::default()
        }
    }

    pub fn skipped(&self, s: Skip) -> u64 {
        self.skipped[s as usize]
    }

    pub fn total_alerts(&self) -> u64 {
        self.alerts.iter().sum()
    }
}

/// How many skipped lines of each kind are logged before only counting.
const LOGGED_SKIPS: u64 = 5;

/// Events between two updates of the metrics registry's totals (the
/// per-event counts are updated at every event).
const TOTALS_EVERY: u32 = 64;

/// Whether the `count`th skip for `reason` is logged.
fn logs(reason: Skip, count: u64) -> bool {
    match reason {
        Skip::Blank => false,
        Skip::NotJson => tracing::enabled!(tracing::Level::DEBUG),
        _ => count <= LOGGED_SKIPS,
    }
}

/// Logs the `count`th skip for `reason`, at input line `line`. Log text
/// between events is normal for `kubectl logs` input: it is counted and
/// shown at debug level; anything else is worth a warning, the first few
/// times.
fn log_skip(line: u64, reason: Skip, count: u64) {
    if !logs(reason, count) {
        return;
    }
    if reason == Skip::NotJson {
        tracing::debug!(line, "skipped input: {}", reason.describe());
        return;
    }
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

pub struct Engine<'r> {
    rules: Rules<'r>,
    matching: RuleMatching,
    window_options: WindowOptions,
    windows: Windows,
    pub stats: Stats,
    metrics: Option<Metrics>,
    /// Keys held by window states swapped out (Kafka partitions), when
    /// the caller keeps several.
    keys_elsewhere: Option<u64>,
    /// A worker of [`parallel`]: events are matched here, but their alerts
    /// and windowed matches are captured for the ordering thread.
    capture: Option<capture::Capture>,
    /// A worker's place in its batch: the event it reads next.
    doc: parallel::DocAt,
    /// Whether [`Engine::publish`] writes the totals (lines, events, skips,
    /// window state); a worker only adds its per-event counts.
    publish_totals: bool,
    /// Events counted in the registry since its totals were last brought
    /// up to date ([`Engine::publish`]).
    unpublished: u32,
    /// Evictions and late events of sequence and first-seen rules, per rule,
    /// over every stream's state.
    stateful_counts: Vec<crate::stateful::StateStats>,
    /// Told the events behind matches and the windowed rules' values
    /// ([`Engine::observe`]); none for `saker run`.
    observer: Option<Box<dyn observe::Observer + 'r>>,
    /// Repartitioning, when the input is a Kafka topic ([`forward`]).
    repartition: Option<Repartition>,
}

/// Which windowed rules are forwarded, and what was found to forward.
struct Repartition {
    partition_key: Option<String>,
    idle: std::time::Duration,
    /// Indexed like the rules.
    forwarded: Vec<bool>,
    /// Forwarded rules by name (records name their rule).
    by_name: std::collections::HashMap<String, usize>,
    outbox: forward::Outbox,
    /// Records or entries that could not be applied (logged a few times).
    refused: u64,
}

impl Repartition {
    fn new(rules: &RuleSet, partition_key: Option<String>, idle: std::time::Duration) -> Self {
        let forwarded = forward::forwarded_rules(rules, partition_key.as_deref());
        let by_name = rules
            .rules
            .iter()
            .enumerate()
            .filter(|(i, _)| forwarded[*i])
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        Repartition {
            partition_key,
            idle,
            forwarded,
            by_name,
            outbox: forward::Outbox::default(),
            refused: 0,
        }
    }

    fn refuse(&mut self, why: std::fmt::Arguments) {
        self.refused += 1;
        if self.refused <= LOGGED_SKIPS {
            tracing::warn!("repartition: {why}");
        }
    }
}

/// The metrics registry and the fields that label `kube_audit_event_count`.
struct Metrics {
    registry: Shared,
    labels: Vec<(&'static FieldDef, Arg)>,
    /// Each label's field as an operand of the rules, when a rule reads
    /// it: its value is then the one the rules computed for the event.
    ops: Vec<Option<OperandId>>,
    /// Per event: the rules that matched and the alerts produced.
    matched: Vec<usize>,
    alerts: Vec<(usize, AlertKind)>,
}

/// The rules' operand of each label's field, where a rule reads it
/// (`kube_audit_event_count`'s labels take no argument).
fn label_ops(rules: &RuleSet, labels: &[(&'static FieldDef, Arg)]) -> Vec<Option<OperandId>> {
    labels
        .iter()
        .map(|(def, arg)| match arg {
            Arg::None => rules.program.field_operand(def.name),
            _ => None,
        })
        .collect()
}

/// Adds the matches and alerts noted since the last call to `r`.
fn drain_rule_counts(
    matched: &mut Vec<usize>,
    alerts: &mut Vec<(usize, AlertKind)>,
    r: &mut Registry,
) {
    for i in matched.drain(..) {
        if let Some(n) = r.matches.get_mut(i) {
            *n += 1;
        }
    }
    for (i, kind) in alerts.drain(..) {
        r.alert(i, kind);
    }
}

/// Resolves `name=field` pairs for `kube_audit_event_count` labels.
pub fn metric_labels(spec: &str) -> Result<Vec<(String, &'static FieldDef)>, String> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let (name, field) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not name=field"))?;
            let (name, field) = (name.trim(), field.trim());
            let valid_name = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(format!("`{name}` is not a Prometheus label name"));
            }
            let def = fields::lookup(field).ok_or_else(|| format!("unknown field `{field}`"))?;
            if def.list || def.check_arg(None).is_err() {
                return Err(format!(
                    "field `{field}` cannot label a metric (it is a list or needs an argument)"
                ));
            }
            Ok((name.to_string(), def))
        })
        .collect()
}

impl<'r> Engine<'r> {
    /// An engine running `rules`: a `&RuleSet` it borrows, or an
    /// `Arc<RuleSet>` it shares (which a reload can replace).
    pub fn new(rules: impl Into<Rules<'r>>, matching: RuleMatching) -> Self {
        Engine::with_options(rules, matching, WindowOptions::default())
    }

    pub fn with_options(
        rules: impl Into<Rules<'r>>,
        matching: RuleMatching,
        options: WindowOptions,
    ) -> Self {
        let rules = rules.into();
        let n = rules.rules.len();
        Engine {
            windows: Windows::new(&rules, options),
            rules,
            matching,
            window_options: options,
            stats: Stats::for_rules(n),
            metrics: None,
            keys_elsewhere: None,
            capture: None,
            doc: parallel::DocAt::default(),
            publish_totals: true,
            unpublished: 0,
            stateful_counts: vec![Default::default(); n],
            observer: None,
            repartition: None,
        }
    }

    /// Tells `observer` the events behind the rules' matches and every
    /// windowed key's value at each tick it is evaluated at (see
    /// [`observe`]), from now on, in every window state of this engine.
    pub fn observe(&mut self, observer: Box<dyn observe::Observer + 'r>) {
        self.observer = Some(observer);
        self.windows.record(true);
    }

    /// Forwards the windowed rules whose `by` fields do not include
    /// `partition_key` (the field the input topic is keyed by, if known)
    /// instead of counting them here; `idle` is how long an input
    /// partition may stand still before a stage partition's watermark
    /// leaves it out. Returns the names of the rules forwarded; with none,
    /// nothing changes.
    pub fn repartition(
        &mut self,
        partition_key: Option<String>,
        idle: std::time::Duration,
    ) -> Vec<String> {
        let r = Repartition::new(&self.rules, partition_key, idle);
        let names: Vec<String> = r.by_name.keys().cloned().collect();
        if names.is_empty() {
            return names;
        }
        self.windows.restrict(windows::Role::Input, &r.forwarded);
        self.repartition = Some(r);
        let mut names = names;
        names.sort();
        names
    }

    /// Whether some windowed rules are forwarded.
    pub fn forwarding(&self) -> bool {
        self.repartition.is_some()
    }

    /// What the batches since the last call found to forward.
    pub fn take_outbox(&mut self) -> Option<forward::Outbox> {
        let r = self.repartition.as_mut()?;
        let mut out = (!r.outbox.is_empty()).then(|| std::mem::take(&mut r.outbox))?;
        out.res = self.windows.resolution_ns();
        Some(out)
    }

    /// Fresh windows for a partition of the repartition topic (`stage`) or
    /// of the input.
    pub fn new_windows_for(&self, stage: bool) -> Windows {
        let mut w = self.new_windows();
        if let Some(r) = &self.repartition {
            let role = if stage {
                windows::Role::Stage
            } else {
                windows::Role::Input
            };
            w.restrict(role, &r.forwarded);
        }
        w
    }

    /// Applies one record of the repartition topic to the stage stream's
    /// windows in the engine, and evaluates what its watermark passed.
    /// Without `now` it is a warm-up: nothing is emitted and no input
    /// partition counts as idle. Returns the stage's watermark and the
    /// occurrences skipped as already applied.
    pub fn apply_record(
        &mut self,
        payload: &[u8],
        now: Option<Instant>,
        sink: Option<&mut dyn AlertSink>,
    ) -> io::Result<forward::Progress> {
        let none = forward::Progress::default();
        let Some(rep) = self.repartition.as_mut() else {
            return Ok(none);
        };
        let record: forward::Record = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => {
                rep.refuse(format_args!("a record that is not one was skipped: {e}"));
                return Ok(none);
            }
        };
        let res = self.windows.resolution_ns();
        if record.v != forward::RECORD_VERSION || record.res != res {
            rep.refuse(format_args!(
                "a record of format {} at {} ns per tick was skipped (this instance: {}, {res} ns)",
                record.v,
                record.res,
                forward::RECORD_VERSION
            ));
            return Ok(none);
        }
        // Only key-less rules care where the stream starts, and they are
        // all in partition 0; elsewhere an absence window must not start.
        if record.r == 0 {
            self.windows.observe(record.lo);
        }
        // First-seen rules learn from the stream's first event: the
        // earliest any input partition reported.
        self.windows.stateful.observe_earliest(record.lo);
        let started = now.unwrap_or_else(Instant::now);
        let marks = self
            .windows
            .marks
            .get_or_insert_with(|| forward::Marks::new(started));
        // Occurrences at or below this offset were applied already (sent
        // again after a crash of the instance that forwarded them).
        let applied = marks.applied(&record.t, record.p);
        let mut last = applied;
        let mut duplicates = 0u64;
        for (name, tick, key, value, offsets) in record.e {
            let Some(&i) = rep.by_name.get(&name) else {
                rep.refuse(format_args!(
                    "a match of rule `{name}`, which this instance does not forward, was skipped"
                ));
                continue;
            };
            let key: crate::window::Key = key.into();
            for d in offsets {
                let offset = record.b.saturating_add(d);
                last = Some(last.map_or(offset, |l| l.max(offset)));
                if applied.is_some_and(|a| offset <= a) {
                    duplicates += 1;
                    continue;
                }
                self.windows
                    .add_keyed(i, tick, key.clone(), value.as_deref());
            }
        }
        for (name, time_ns, offset, audit_id, steps, plain) in record.s {
            let Some(&i) = rep.by_name.get(&name) else {
                rep.refuse(format_args!(
                    "a step of rule `{name}`, which this instance does not forward, was skipped"
                ));
                continue;
            };
            last = Some(last.map_or(offset, |l| l.max(offset)));
            if applied.is_some_and(|a| offset <= a) {
                duplicates += 1;
                continue;
            }
            let steps = steps
                .into_iter()
                .map(|(step, key, values)| crate::stateful::sequence::StepHit {
                    step,
                    key: key.into(),
                    values,
                })
                .collect();
            let hit = crate::stateful::sequence::SeqHit {
                audit_id,
                steps,
                plain,
            };
            self.windows
                .stateful
                .push(i, time_ns, crate::stateful::Hit::Sequence(hit));
        }
        for (name, time_ns, key, rendered, offsets) in record.f {
            let Some(&i) = rep.by_name.get(&name) else {
                rep.refuse(format_args!(
                    "a first-seen match of rule `{name}`, which this instance does not forward, was skipped"
                ));
                continue;
            };
            // Applied once: the earliest occurrence not applied yet, or none.
            let fresh = offsets
                .iter()
                .map(|d| record.b.saturating_add(*d))
                .filter(|&o| applied.is_none_or(|a| o > a))
                .count();
            if let Some(top) = offsets.iter().max() {
                let top = record.b.saturating_add(*top);
                last = Some(last.map_or(top, |l| l.max(top)));
            }
            duplicates += (offsets.len() - fresh) as u64;
            if fresh == 0 {
                continue;
            }
            let hit = crate::stateful::first_seen::SeenHit {
                key: key.into(),
                rendered: rendered.map(forward::Seen::unwire),
            };
            self.windows
                .stateful
                .push(i, time_ns, crate::stateful::Hit::FirstSeen(hit));
        }
        if let Some(marks) = &mut self.windows.marks {
            marks.update(&record.t, record.p, record.n, record.hi, now);
            marks.duplicates += duplicates;
            if let Some(last) = last {
                marks.set_applied(&record.t, record.p, last);
            }
        }
        Ok(forward::Progress {
            watermark_ns: self.advance_stage(now, sink)?,
            duplicates,
        })
    }

    /// A stage stream's watermark with the wall clock at `now`: input
    /// partitions idle are left out, a quiet stream moves on.
    pub fn stage_idle(
        &mut self,
        now: Instant,
        sink: &mut dyn AlertSink,
    ) -> io::Result<Option<i64>> {
        self.advance_stage(Some(now), Some(sink))
    }

    /// A stage stream's warm-up replay ended at `now`. `resumed` is the
    /// watermark (ns) its alerts had been emitted up to when the position
    /// the replay ended at was committed: what the replay rebuilt up to
    /// there is evaluated without alerts, and the watermark never goes
    /// below it (an input partition silent through the whole replay is not
    /// in the replayed marks, yet it held the watermark or was idle then).
    pub fn stage_warmed(&mut self, now: Instant, resumed: Option<i64>) {
        let res = self.windows.resolution_ns();
        let marks = self
            .windows
            .marks
            .get_or_insert_with(|| forward::Marks::new(now));
        marks.restart_clock(now);
        let Some(ns) = resumed else { return };
        let watermark = ns.div_euclid(res);
        marks.watermark = Some(marks.watermark.map_or(watermark, |w| w.max(watermark)));
        let _ = self.windows.advance_until(watermark);
        let _ = self.windows.stateful.release(watermark);
    }

    fn advance_stage(
        &mut self,
        now: Option<Instant>,
        sink: Option<&mut dyn AlertSink>,
    ) -> io::Result<Option<i64>> {
        let (Some(rep), Some(marks)) = (&self.repartition, &self.windows.marks) else {
            return Ok(None);
        };
        let res = self.windows.resolution_ns();
        let Some(mark) = marks.watermark(now, rep.idle, res) else {
            // Still waiting for an input partition: the watermark stands
            // where it was (after a restart, where it was committed).
            return Ok(marks.watermark.map(|w| w.saturating_mul(res)));
        };
        let watermark = mark - self.windows.lateness_ticks();
        let transitions = self.windows.advance_until(watermark);
        let outcomes = self.windows.stateful.release(watermark);
        let mut reached = watermark;
        if let Some(m) = &mut self.windows.marks {
            reached = m.watermark.map_or(watermark, |w| w.max(watermark));
            m.watermark = Some(reached);
        }
        if let Some(sink) = sink {
            self.emit_windowed(transitions, sink)?;
            self.emit_stateful(outcomes, sink)?;
        }
        self.publish(None);
        Ok(Some(reached.saturating_mul(res)))
    }

    /// Reports to a metrics registry; `labels` are the fields that label
    /// `kube_audit_event_count`, `cap` the number of label sets kept.
    pub fn with_metrics(
        mut self,
        labels: Vec<(String, &'static FieldDef)>,
        cap: usize,
    ) -> (Self, Shared) {
        let names = self.rules.rules.iter().map(|r| r.name.clone()).collect();
        let registry: Shared = std::sync::Arc::new(std::sync::Mutex::new(Registry::new(
            names,
            labels.iter().map(|(n, _)| n.clone()).collect(),
            cap,
        )));
        let labels: Vec<_> = labels.into_iter().map(|(_, d)| (d, Arg::None)).collect();
        self.metrics = Some(Metrics {
            registry: registry.clone(),
            ops: label_ops(&self.rules, &labels),
            labels,
            matched: Vec::new(),
            alerts: Vec::new(),
        });
        (self, registry)
    }

    /// A worker for [`parallel`]: it shares this engine's rules, settings
    /// and metrics registry, captures instead of emitting, and leaves the
    /// totals to this engine.
    fn worker(&self) -> Engine<'r> {
        let mut w = Engine::with_options(self.rules.clone(), self.matching, self.window_options);
        w.capture = Some(capture::Capture::default());
        w.publish_totals = false;
        w.metrics = self.metrics.as_ref().map(|m| Metrics {
            registry: m.registry.clone(),
            labels: m.labels.clone(),
            ops: m.ops.clone(),
            matched: Vec::new(),
            alerts: Vec::new(),
        });
        w
    }

    /// The values of `kube_audit_event_count`'s labels for `ev`: those the
    /// rules computed when a rule reads the field, else extracted.
    fn label_values<'a>(
        rules: &RuleSet,
        m: &Metrics,
        ev: &Event<'a>,
        cx: &mut EvalCtx<'a>,
    ) -> Vec<Cow<'a, str>> {
        m.labels
            .iter()
            .zip(&m.ops)
            .map(|((def, arg), op)| {
                let v = match op {
                    Some(op) => rules.program.value(*op, ev, cx),
                    None => fields::extract::extract(ev, def, arg),
                };
                match v {
                    Some(fields::extract::Val::Str(s)) => s,
                    Some(other) => Cow::Owned(other.render().into_owned()),
                    None => Cow::Borrowed(""),
                }
            })
            .collect()
    }

    /// Counts an event (its labels' values, when it started) in the
    /// metrics registry, or, with `None`, brings the registry's totals up
    /// to date.
    pub(crate) fn publish(&mut self, event: Option<(&[Cow<str>], Instant)>) {
        let Some(m) = &mut self.metrics else { return };
        let labels = event.map(|(values, _)| values);
        let w = self.windows.stats();
        let keys = self.keys_elsewhere.unwrap_or(self.windows.keys() as u64);
        let mut r = m
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(values) = labels {
            r.count_event(values);
        }
        if let Some((_, started)) = event {
            r.observe_latency(started.elapsed().as_secs_f64());
        }
        drain_rule_counts(&mut m.matched, &mut m.alerts, &mut r);
        // The totals (gauges of the whole state, which take a pass over
        // every rule) are brought up to date every few events, and always
        // when called without an event: at the end of each batch and of
        // the input, after a skipped line, an idle check or a reload.
        if event.is_some() {
            self.unpublished += 1;
            if self.unpublished < TOTALS_EVERY {
                return;
            }
        }
        self.unpublished = 0;
        if self.publish_totals {
            r.lines = self.stats.lines;
            r.events = self.stats.events;
            r.skipped = self.stats.skipped;
            r.window_keys = keys;
            r.window_evictions = w.evictions;
            r.late_events = w.late_events;
            self.windows
                .stateful
                .drain_counts(&mut self.stateful_counts);
            r.stateful = self.windows.stateful.numbers();
            for (n, c) in r.stateful.iter_mut().zip(&self.stateful_counts) {
                if let Some(n) = n {
                    n.evictions = c.evictions;
                    n.late_events = c.late_events;
                }
            }
        }
    }

    /// Late events and evicted keys of the windowed rules, and of the
    /// sequence and first-seen rules, of the state swapped in.
    pub fn state_counts(&self) -> (crate::window::WindowStats, crate::stateful::StateStats) {
        (self.windows.stats(), self.windows.stateful.stats())
    }

    /// End of input: every remaining tick of the windowed rules is
    /// evaluated (absence rules only up to the last event's tick).
    pub fn finish(&mut self, sink: &mut dyn AlertSink) -> io::Result<()> {
        let transitions = self.windows.advance(true);
        self.emit_windowed(transitions, sink)?;
        let outcomes = self.windows.release(true);
        self.emit_stateful(outcomes, sink)?;
        self.publish(None);
        Ok(())
    }

    /// A live input has been quiet for `idle_ns` since its last event.
    pub fn idle(&mut self, idle_ns: u64, sink: &mut dyn AlertSink) -> io::Result<()> {
        let transitions = self.windows.idle(idle_ns);
        self.emit_windowed(transitions, sink)?;
        let outcomes = self.windows.release_idle(idle_ns);
        self.emit_stateful(outcomes, sink)?;
        self.publish(None);
        Ok(())
    }

    /// Fresh window state for another stream (a Kafka partition), to be
    /// swapped in with [`Engine::swap_windows`].
    pub fn new_windows(&self) -> Windows {
        let mut w = Windows::new(&self.rules, self.window_options);
        w.record(self.observer.is_some());
        w
    }

    /// Exchanges the engine's window state with `other`: events processed
    /// next count in `other`'s windows, on `other`'s event-time clock.
    pub fn swap_windows(&mut self, other: &mut Windows) {
        self.windows
            .stateful
            .drain_counts(&mut self.stateful_counts);
        std::mem::swap(&mut self.windows, other);
    }

    /// The rules the engine runs.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The settings its windows are built with.
    pub fn window_options(&self) -> WindowOptions {
        self.window_options
    }

    /// The state of the windows in the engine ([`Windows::snapshot`]).
    pub fn snapshot(&self) -> windows::snapshot::Snapshot {
        self.windows.snapshot(&self.rules)
    }

    /// Replaces the windows in the engine by those `snapshot` restores for
    /// this engine's rules ([`Windows::restore`]); on an error the engine
    /// keeps its windows.
    pub fn restore(
        &mut self,
        snapshot: windows::snapshot::Snapshot,
    ) -> Result<windows::snapshot::RestoreReport, windows::snapshot::RestoreError> {
        let (mut restored, report) = Windows::restore(&self.rules, self.window_options, snapshot)?;
        restored.record(self.observer.is_some());
        self.swap_windows(&mut restored);
        Ok(report)
    }

    /// Reports `keys` as the keys held by windowed rules, for a caller that
    /// keeps several window states (see [`Engine::swap_windows`]).
    pub fn publish_window_keys(&mut self, keys: usize) {
        self.keys_elsewhere = Some(keys as u64);
        self.publish(None);
    }

    /// Keys held by the windows in the engine.
    pub fn window_keys(&self) -> usize {
        self.windows.keys()
    }

    /// See [`Windows::horizon_ns`].
    pub fn horizon_ns(&self) -> i64 {
        self.windows.horizon_ns()
    }

    /// Re-asserts every firing windowed alert to the outputs that keep alert
    /// state ([`AlertSink::refresh`]): after a warm-up replay rebuilt them
    /// without emitting anything.
    pub fn refresh_firing(&mut self, sink: &mut dyn AlertSink) -> io::Result<usize> {
        let res = self.windows.resolution_ns();
        let firing = self.windows.firing();
        for (i, t) in &firing {
            sink.refresh(&windows::alert(&self.rules.rules[*i], t, res))?;
        }
        Ok(firing.len())
    }

    /// Whether any loaded rule is windowed.
    pub fn windowed(&self) -> bool {
        self.windows.any()
    }

    /// Replays one input document into the windows only: per-event rules are
    /// not evaluated, transitions are computed (so firing state is rebuilt)
    /// but not emitted, and nothing is counted in [`Stats`]. Returns the
    /// number of events and the highest event time seen.
    pub fn warm_up(&mut self, doc: &[u8]) -> (u64, Option<i64>) {
        let rules: &RuleSet = &self.rules;
        let mut n = 0;
        let mut latest: Option<i64> = None;
        decode_document(
            strip_prefixes(doc),
            |ev| {
                n += 1;
                latest = Some(latest.map_or(ev.time_ns, |t| t.max(ev.time_ns)));
                let mut cx = rules.context();
                let tick = self.windows.tick_of(ev.time_ns);
                self.windows.observe(tick);
                for &c in rules.candidates(&ev, &mut cx) {
                    let i = c.rule;
                    // Forwarded rules are rebuilt in their stage partitions.
                    if self.repartition.as_ref().is_some_and(|r| r.forwarded[i]) {
                        continue;
                    }
                    if rules.rules[i].stateful.is_some() {
                        stateful::push(rules, c, &ev, &mut cx, &mut self.windows.stateful, |_| {});
                    } else if rules.rules[i].aggregate.is_some() && rules.matches(i, &ev, &mut cx) {
                        self.windows.add(rules, i, tick, &ev, &mut cx);
                    }
                }
                self.windows.advance(false);
                self.windows.release(false);
            },
            |_| {},
        );
        // What a warm-up measured is not observed (nor are its events).
        self.windows.drain_samples(|_, _| {});
        (n, latest)
    }

    fn emit_windowed(
        &mut self,
        transitions: Vec<(usize, crate::window::Transition)>,
        sink: &mut dyn AlertSink,
    ) -> io::Result<()> {
        let res = self.windows.resolution_ns();
        self.emit_windowed_at(transitions, res, sink)
    }

    /// As [`Engine::emit_windowed`], for ticks of `res` nanoseconds.
    fn emit_windowed_at(
        &mut self,
        transitions: Vec<(usize, crate::window::Transition)>,
        res: i64,
        sink: &mut dyn AlertSink,
    ) -> io::Result<()> {
        // An observer is told each tick's values just before that tick's
        // alerts.
        let mut samples = Vec::new();
        if self.observer.is_some() {
            self.windows
                .drain_samples(|rule, s| samples.push((rule, s)));
            samples.sort_by_key(|(_, s)| s.tick);
        }
        let mut samples = samples.into_iter().peekable();
        let mut tell = |observer: &mut Option<Box<dyn observe::Observer + 'r>>, upto: i64| {
            let Some(o) = observer else { return };
            while let Some((rule, s)) = samples.next_if(|(_, s)| s.tick <= upto) {
                o.measured(observe::Measured {
                    rule,
                    time_ns: s.tick * res,
                    key: s.key,
                    value: s.value,
                    events: s.events,
                    firing: s.firing,
                    first: s.first,
                });
            }
        };
        for (i, t) in transitions {
            tell(&mut self.observer, t.tick);
            self.stats.alerts[i] += 1;
            if let Some(m) = &mut self.metrics {
                m.alerts.push((
                    i,
                    if t.firing {
                        AlertKind::Firing
                    } else {
                        AlertKind::Resolved
                    },
                ));
            }
            sink.emit(&windows::alert(&self.rules.rules[i], &t, res))?;
        }
        tell(&mut self.observer, i64::MAX);
        Ok(())
    }

    /// Emits the alerts of sequences completed and keys first seen.
    fn emit_stateful(
        &mut self,
        outcomes: Vec<(usize, crate::stateful::Outcome)>,
        sink: &mut dyn AlertSink,
    ) -> io::Result<()> {
        let res = self.windows.resolution_ns();
        self.emit_stateful_at(outcomes, res, sink)
    }

    /// As [`Engine::emit_stateful`], for ticks of `res` nanoseconds.
    fn emit_stateful_at(
        &mut self,
        outcomes: Vec<(usize, crate::stateful::Outcome)>,
        res: i64,
        sink: &mut dyn AlertSink,
    ) -> io::Result<()> {
        for (i, o) in outcomes {
            let Some(alert) = stateful::alert(&self.rules.rules[i], o, res) else {
                continue;
            };
            self.stats.alerts[i] += 1;
            if let Some(m) = &mut self.metrics {
                m.alerts.push((i, AlertKind::Event));
            }
            sink.emit(&alert)?;
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
        let no_event = skips.len() as u64 > 0 && self.metrics.is_some();
        for s in skips {
            self.skip(s);
        }
        if no_event {
            self.publish(None);
        }
        result
    }

    fn skip(&mut self, reason: Skip) {
        let n = &mut self.stats.skipped[reason as usize];
        *n += 1;
        let (line, count) = (self.stats.lines, *n);
        match &mut self.capture {
            // A worker numbers lines within its job: the ordering thread
            // logs what it keeps, in input order, with the input's numbers.
            Some(c) => {
                if logs(reason, count) {
                    c.skip(line, reason);
                }
            }
            None => log_skip(line, reason, count),
        }
    }

    /// Takes in a worker's counts of a job, and logs the skips it kept
    /// (its lines numbered within the job), as one thread would have.
    pub fn absorb_job(&mut self, stats: &Stats, skips: &[(u64, Skip)]) {
        let (lines, mut counts) = (self.stats.lines, self.stats.skipped);
        for &(line, reason) in skips {
            let count = &mut counts[reason as usize];
            *count += 1;
            log_skip(lines + line, reason, *count);
        }
        self.stats.absorb(stats);
    }

    /// Evaluates the rules on one event and hands alerts to the sink.
    pub fn process_event<'a>(
        &mut self,
        ev: &Event<'a>,
        sink: &mut dyn AlertSink,
    ) -> io::Result<()> {
        self.stats.events += 1;
        let started = self.metrics.is_some().then(Instant::now);
        let rules: &RuleSet = &self.rules;
        let mut cx = rules.context();
        let windowed = self.windows.any();
        let tick = self.windows.tick_of(ev.time_ns);
        if let Some(c) = &mut self.capture {
            c.event(tick, ev.time_ns, self.doc);
            self.doc.index += 1;
        } else if windowed {
            self.windows.observe(tick);
        }
        if let Some(r) = &mut self.repartition {
            r.outbox.saw(tick);
        }
        let mut alerted = false;
        for &c in rules.candidates(ev, &mut cx) {
            let i = c.rule;
            let rule = &rules.rules[i];
            if rule.stateful.is_some() {
                // Sequence and first-seen rules see every event, whatever
                // `--rule-matching` says. The hit waits in the stream's
                // state (or is captured, in a worker).
                if let Some(r) = self.repartition.as_mut().filter(|r| r.forwarded[i]) {
                    // Kept by the stage partition its key goes to.
                    let matched = match rule.stateful {
                        Some(StatefulRule::Sequence(_)) => {
                            match stateful::sequence(rules, c, ev, &mut cx) {
                                Some(h) => {
                                    r.outbox.hits.push((i, ev.time_ns, h));
                                    true
                                }
                                _ => false,
                            }
                        }
                        _ => {
                            let sightings = &mut self.windows.sightings;
                            let covered = |key: &[String], window| {
                                sightings.covered(i, key, tick, ev.time_ns, window)
                            };
                            match stateful::forwarded_seen(rules, i, ev, &mut cx, covered) {
                                Some(h) => {
                                    r.outbox.seen.push(forward::Seen {
                                        rule: i,
                                        tick,
                                        time_ns: ev.time_ns,
                                        key: h.key,
                                        rendered: h.rendered,
                                    });
                                    true
                                }
                                None => false,
                            }
                        }
                    };
                    if matched {
                        if let Some(m) = &mut self.metrics {
                            m.matched.push(i);
                        }
                    }
                    continue;
                }
                let matched = match self.capture.as_mut() {
                    Some(captured) => stateful::capture(rules, c, ev, &mut cx, captured),
                    None => {
                        let observer = &mut self.observer;
                        let seen = |hit: &Hit| {
                            if let Some(o) = observer {
                                match hit {
                                    Hit::Sequence(_) => o.event(i, None, ev),
                                    Hit::FirstSeen(h) if h.rendered.is_some() => {
                                        o.event(i, Some(&h.key), ev)
                                    }
                                    Hit::FirstSeen(_) => {}
                                }
                            }
                        };
                        stateful::push(rules, c, ev, &mut cx, &mut self.windows.stateful, seen)
                    }
                };
                if matched {
                    if let Some(m) = &mut self.metrics {
                        m.matched.push(i);
                    }
                }
                continue;
            }
            if rule.aggregate.is_some() {
                // Windowed rules count every matching event, whatever
                // `--rule-matching` says about per-event alerts.
                if rules.matches(i, ev, &mut cx) {
                    if let Some(m) = &mut self.metrics {
                        m.matched.push(i);
                    }
                    if let Some(r) = self.repartition.as_mut().filter(|r| r.forwarded[i]) {
                        if let Some((key, value)) = self.windows.key_of(rules, i, ev, &mut cx) {
                            r.outbox.entries.push(forward::Entry {
                                rule: i,
                                tick,
                                key,
                                value,
                            });
                        }
                        continue;
                    }
                    match self.capture.as_mut() {
                        Some(c) => windows::capture(rules, i, ev, &mut cx, c),
                        None => match &mut self.observer {
                            None => self.windows.add(rules, i, tick, ev, &mut cx),
                            Some(o) => {
                                if let Some((key, value)) =
                                    self.windows.key_of(rules, i, ev, &mut cx)
                                {
                                    o.event(i, Some(&key), ev);
                                    self.windows.add_keyed(i, tick, key, value.as_deref());
                                }
                            }
                        },
                    }
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
            self.stats.alerts[i] += 1;
            if let Some(m) = &mut self.metrics {
                m.matched.push(i);
                m.alerts.push((i, AlertKind::Event));
            }
            let alert = Alert {
                time_ns: ev.time_ns,
                rule: &rule.name,
                priority: rule.priority,
                tags: &rule.tags,
                message: rules.render_output(i, ev, &mut cx),
                fields: rules.output_values(i, ev, &mut cx),
                aggregate: None,
                stateful: None,
                desc: &rule.desc,
                labels: &rule.labels,
                annotations: &rule.annotations,
            };
            match self.capture.as_mut() {
                Some(c) => c.alert(parallel::OwnedAlert::of(i, &alert)),
                None => {
                    if let Some(o) = &mut self.observer {
                        o.event(i, None, ev);
                    }
                    sink.emit(&alert)?
                }
            }
        }
        // The metrics' labels, while the rules' values are at hand.
        let labels = match (&self.metrics, started) {
            (Some(m), Some(_)) => Self::label_values(rules, m, ev, &mut cx),
            _ => Vec::new(),
        };
        if windowed && self.capture.is_none() {
            let transitions = self.windows.advance(false);
            self.emit_windowed(transitions, sink)?;
            let outcomes = self.windows.release(false);
            self.emit_stateful(outcomes, sink)?;
        }
        if let Some(started) = started {
            self.publish(Some((&labels, started)));
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
                self.keys_elsewhere
                    .map_or(self.windows.keys(), |k| k as usize),
                w.late_events,
                w.evictions,
                w.values_refused
            ));
        }
        if self.windows.stateful.any() {
            let st = self.windows.stateful.stats();
            out.push_str(&format!(
                "saker: sequences and first-seen: {} keys held, {} late events, {} keys evicted\n",
                self.windows.stateful.keys(),
                st.late_events,
                st.evictions
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::stdout::{Format, StdoutSink};

    /// A denied list of configmaps: only rule Forbidden Burst counts it (a
    /// denied secret would also count for Secret Access Denied Burst).
    fn denied(s: u32) -> String {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"d{s}","stage":"ResponseComplete","requestURI":"/api/v1/configmaps","verb":"list","user":{{"username":"mallory"}},"objectRef":{{"resource":"configmaps","apiVersion":"v1"}},"responseStatus":{{"code":403}},"stageTimestamp":"2024-10-29T12:00:{s:02}Z"}}"#
        )
    }

    fn rules() -> RuleSet {
        crate::rules::load(&crate::rules::default_sources())
            .rules
            .expect("default rules")
    }

    /// `kube_audit_event_count`'s label sets, whether a label's field is
    /// one the rules read (its value taken from them) or not (extracted),
    /// are those of extracting every label from every event, and the
    /// totals are up to date at the end.
    #[test]
    fn metric_labels_count_what_extracting_them_counts() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/audit-sample.jsonl");
        let sample = std::fs::read_to_string(path).expect("bundled sample");
        let spec =
            "verb=ka.verb,resource=ka.target.resource,agent=ka.useragent,reason=ka.response.reason";
        let labels = metric_labels(spec).unwrap();
        let set = rules();
        let read: Vec<bool> = labels
            .iter()
            .map(|(_, d)| set.program.field_operand(d.name).is_some())
            .collect();
        assert!(read.contains(&true) && read.contains(&false), "{read:?}");
        let (mut engine, registry) =
            Engine::new(&set, RuleMatching::All).with_metrics(labels.clone(), 10_000);
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        let mut expected: std::collections::BTreeMap<Vec<String>, u64> = Default::default();
        for line in sample.lines() {
            engine
                .process_line(Line::Text(line.as_bytes()), &mut sink)
                .unwrap();
            decode_document(
                line.as_bytes(),
                |ev| {
                    let values = labels
                        .iter()
                        .map(
                            |(_, def)| match fields::extract::extract(&ev, def, &Arg::None) {
                                Some(v) => v.render().into_owned(),
                                None => String::new(),
                            },
                        )
                        .collect();
                    *expected.entry(values).or_default() += 1;
                },
                |_| {},
            );
        }
        let text = registry.lock().unwrap().render();
        let counted: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("kube_audit_event_count{"))
            .collect();
        assert_eq!(counted.len(), expected.len());
        for (values, n) in &expected {
            let want = format!(
                "verb=\"{}\",resource=\"{}\",agent=\"{}\",reason=\"{}\"}} {n}",
                values[0], values[1], values[2], values[3]
            );
            assert!(
                counted.iter().any(|l| l.ends_with(&want)),
                "{want} in {counted:#?}"
            );
        }
        // The totals lag by under 64 events until the end of a batch (here,
        // of the input) brings them up to date.
        let decoded = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("saker_events_total{") && l.contains("decoded"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        let events = expected.values().sum::<u64>();
        assert!(
            decoded(&text).is_some_and(|n| n + 64 > events && n <= events),
            "{text}"
        );
        engine.finish(&mut sink).unwrap();
        let text = registry.lock().unwrap().render();
        assert_eq!(decoded(&text), Some(events), "{text}");
    }

    fn run(engine: &mut Engine, sink: &mut StdoutSink<Vec<u8>>, range: std::ops::Range<u32>) {
        for s in range {
            engine
                .process_line(Line::Text(denied(s).as_bytes()), sink)
                .unwrap();
        }
    }

    #[test]
    fn warm_up_rebuilds_windows_without_alerting_or_counting() {
        let set = rules();
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        // Nineteen denials replayed, then one processed: the twentieth fires.
        let mut engine = Engine::new(&set, RuleMatching::First);
        for s in 0..19 {
            assert_eq!(
                engine.warm_up(denied(s).as_bytes()),
                (
                    1,
                    Some(1_730_203_200_000_000_000 + i64::from(s) * 1_000_000_000)
                )
            );
        }
        assert_eq!(engine.stats.events, 0, "a replay is not counted");
        // Nothing fired yet, so there is nothing to re-assert.
        assert_eq!(engine.refresh_firing(&mut sink).unwrap(), 0);
        run(&mut engine, &mut sink, 19..30);
        engine.finish(&mut sink).unwrap();
        let out = String::from_utf8(sink.into_inner()).unwrap();
        assert!(out.contains("\"rule\":\"Forbidden Burst\""), "{out}");
        assert!(out.contains("was denied 20 times"), "{out}");
        // Without the replay, the same eleven events do not fire.
        let mut cold = Engine::new(&set, RuleMatching::First);
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        run(&mut cold, &mut sink, 19..30);
        cold.finish(&mut sink).unwrap();
        assert!(!String::from_utf8(sink.into_inner())
            .unwrap()
            .contains("Forbidden Burst"));
    }

    /// Records what reaches `emit` and `refresh`.
    #[derive(Default)]
    struct Recorder {
        emitted: Vec<String>,
        refreshed: Vec<String>,
    }

    impl AlertSink for Recorder {
        fn emit(&mut self, a: &Alert) -> io::Result<()> {
            self.emitted.push(a.rule.to_string());
            Ok(())
        }
        fn refresh(&mut self, a: &Alert) -> io::Result<()> {
            let key = &a.aggregate.as_ref().expect("windowed").key;
            self.refreshed.push(format!("{} {key:?}", a.rule));
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn alerts_that_fired_during_a_warm_up_are_refreshed_not_emitted() {
        let set = rules();
        let mut engine = Engine::new(&set, RuleMatching::First);
        for s in 0..30 {
            engine.warm_up(denied(s).as_bytes());
        }
        let mut rec = Recorder::default();
        assert_eq!(engine.refresh_firing(&mut rec).unwrap(), 1);
        assert!(rec.emitted.is_empty());
        assert_eq!(rec.refreshed.len(), 1);
        assert!(
            rec.refreshed[0].starts_with("Forbidden Burst"),
            "{:?}",
            rec.refreshed
        );
        assert!(rec.refreshed[0].contains("mallory"), "{:?}", rec.refreshed);
    }

    #[test]
    fn swapped_windows_are_separate_streams() {
        let set = rules();
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        let mut engine = Engine::new(&set, RuleMatching::First);
        let mut other = engine.new_windows();
        // Ten denials in each of two partitions: no key reaches twenty.
        run(&mut engine, &mut sink, 0..10);
        engine.swap_windows(&mut other);
        run(&mut engine, &mut sink, 10..20);
        engine.finish(&mut sink).unwrap();
        engine.swap_windows(&mut other);
        engine.finish(&mut sink).unwrap();
        assert!(!String::from_utf8(sink.into_inner())
            .unwrap()
            .contains("Forbidden Burst"));
        assert_eq!(engine.stats.events, 20);
        assert!(
            engine.horizon_ns() >= 30 * 60 * 1_000_000_000,
            "Secret Enumeration's 30m"
        );
    }
}
