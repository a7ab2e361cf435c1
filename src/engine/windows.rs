//! The windowed half of the engine: feeds matching events of `aggregate:`
//! rules into their windows, moves the watermark, and turns window
//! transitions into alerts, in tick order across rules.

pub mod carry;
pub mod snapshot;

use std::borrow::Cow;

use crate::event::Event;
use crate::fields::extract::Val;
use crate::rules::predicate::{EvalCtx, OperandId};
use crate::rules::{AggField, Aggregate, CompiledRule, OutputPart, RuleSet};
use crate::sink::{AggregateInfo, Alert};
use crate::stateful::{Outcome, Stateful};
use crate::window::{Key, Limits, Sample, Transition, Window, WindowStats};

/// Settings of event-time evaluation.
#[derive(Debug, Clone, Copy)]
pub struct WindowOptions {
    /// How far behind the highest event time the watermark stays.
    pub lateness_ns: u64,
    pub limits: Limits,
}

impl Default for WindowOptions {
    fn default() -> Self {
        WindowOptions {
            lateness_ns: 5_000_000_000,
            limits: Limits::default(),
        }
    }
}

/// One window per windowed rule, and the event-time clock they share.
pub struct Windows {
    windows: Vec<Option<Window>>,
    /// The indexes of `windows` that hold a window, so that the per-event
    /// passes skip the rules that are not windowed ([`Windows::reindex`]).
    active: Vec<usize>,
    resolution_ns: i64,
    lateness: i64,
    /// The highest tick seen.
    max_tick: Option<i64>,
    /// The one key of rules without `by`, shared rather than rebuilt.
    no_key: Key,
    /// Strings a key is rendered into, reused from event to event.
    key_buffer: crate::window::KeyBuffer,
    /// Sequence and first-seen state, on the same event-time clock.
    pub stateful: Stateful,
    /// The counters of windows a reload let go, so totals never go back.
    retired: WindowStats,
    /// Which windowed rules these windows hold (see [`Role`]).
    role: Role,
    /// A stage stream's input partitions and their progress.
    pub marks: Option<super::forward::Marks>,
    /// An input partition's sightings of forwarded first-seen keys.
    pub sightings: super::forward::Sightings,
}

/// Which windowed rules a stream's windows hold when some are forwarded
/// to the repartition topic ([`super::forward`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every rule: no repartitioning.
    All,
    /// An input partition: the rules not forwarded.
    Input,
    /// A partition of the repartition topic: only the rules forwarded.
    Stage,
}

impl Windows {
    pub fn new(rules: &RuleSet, options: WindowOptions) -> Self {
        let windows: Vec<Option<Window>> = rules
            .rules
            .iter()
            .map(|r| {
                r.aggregate
                    .as_ref()
                    .map(|a| Window::new(a.spec.clone(), options.limits))
            })
            .collect();
        let resolution_ns = resolution_of(rules);
        let mut w = Windows {
            windows,
            active: Vec::new(),
            resolution_ns,
            lateness: (options.lateness_ns as i64) / resolution_ns,
            max_tick: None,
            no_key: Key::from(Vec::new()),
            key_buffer: Default::default(),
            stateful: Stateful::new(rules, options.limits.max_keys, resolution_ns),
            retired: WindowStats::default(),
            role: Role::All,
            marks: None,
            sightings: super::forward::Sightings::new(options.limits.max_keys),
        };
        w.reindex();
        w
    }

    /// Lists the windows held again, after `windows` changed.
    fn reindex(&mut self) {
        self.active = (0..self.windows.len())
            .filter(|&i| self.windows[i].is_some())
            .collect();
    }

    /// Keeps only the windows of `role` (`forwarded` indexed like the
    /// rules); called again after a reload, with the new rules' list.
    pub fn restrict(&mut self, role: Role, forwarded: &[bool]) {
        self.role = role;
        for (i, w) in self.windows.iter_mut().enumerate() {
            let fwd = forwarded.get(i).copied().unwrap_or(false);
            let keep = match role {
                Role::All => true,
                Role::Input => !fwd,
                Role::Stage => fwd,
            };
            if !keep {
                *w = None;
            }
        }
        self.reindex();
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Evaluates every tick up to `watermark` (a stage stream's, from its
    /// input partitions' marks).
    pub fn advance_until(&mut self, watermark: i64) -> Vec<(usize, Transition)> {
        self.advance_to(watermark, None)
    }

    /// The lateness allowed, in ticks.
    pub fn lateness_ticks(&self) -> i64 {
        self.lateness
    }

    /// Whether any rule is windowed, sequence or first-seen.
    pub fn any(&self) -> bool {
        !self.active.is_empty() || self.stateful.any()
    }

    pub fn tick_of(&self, time_ns: i64) -> i64 {
        time_ns.div_euclid(self.resolution_ns)
    }

    /// The stream saw an event at `tick` (matching or not).
    pub fn observe(&mut self, tick: i64) {
        for &i in &self.active {
            if let Some(w) = &mut self.windows[i] {
                w.observe(tick);
            }
        }
        self.stateful.observe(tick);
        self.max_tick = Some(self.max_tick.map_or(tick, |m| m.max(tick)));
    }

    /// A matching event of windowed rule `i`.
    pub fn add<'a>(
        &mut self,
        rules: &RuleSet,
        i: usize,
        tick: i64,
        ev: &Event<'a>,
        cx: &mut EvalCtx<'a>,
    ) {
        let Some(agg) = rules.rules[i].aggregate.as_ref() else {
            return;
        };
        // The key is rendered into reused strings and looked up as it is:
        // it is copied only when the window does not hold it yet.
        let mut buf = self.take_key_buffer(agg.by.len());
        let key = &mut buf[..agg.by.len()];
        render_key(rules, &agg.by, ev, cx, key);
        let value = agg.distinct.and_then(|op| rules.program.value(op, ev, cx));
        let value = value.as_ref().map(Val::render);
        self.add_borrowed(i, tick, key, value.as_deref());
        self.return_key_buffer(buf);
    }

    /// The key (values of the `by` fields) and the `distinct()` value of a
    /// matching event of windowed rule `i`; `None` if `i` is not windowed.
    pub fn key_of<'a>(
        &self,
        rules: &RuleSet,
        i: usize,
        ev: &Event<'a>,
        cx: &mut EvalCtx<'a>,
    ) -> Option<(Key, Option<String>)> {
        let agg = rules.rules[i].aggregate.as_ref()?;
        let key: Key = if agg.by.is_empty() {
            self.no_key.clone()
        } else {
            let mut parts = vec![String::new(); agg.by.len()];
            render_key(rules, &agg.by, ev, cx, &mut parts);
            parts.into()
        };
        let value = agg
            .distinct
            .and_then(|op| rules.program.value(op, ev, cx))
            .map(|v| v.render().into_owned());
        Some((key, value))
    }

    /// A matching event of windowed rule `i`, its key already computed. For
    /// `distinct()` rules an event without the value keeps the key alive
    /// and is counted in its window.
    pub fn add_keyed(&mut self, i: usize, tick: i64, key: Key, value: Option<&str>) {
        if let Some(Some(w)) = self.windows.get_mut(i) {
            w.add(tick, key, value);
        }
    }

    /// [`Windows::add_keyed`] with the key's values borrowed (copied only
    /// for a key the window does not hold).
    pub fn add_borrowed(&mut self, i: usize, tick: i64, key: &[String], value: Option<&str>) {
        if let Some(Some(w)) = self.windows.get_mut(i) {
            w.add_borrowed(tick, key, value);
        }
    }

    /// Strings to render a windowed key into ([`crate::window::KeyBuffer`]);
    /// handed back with [`Windows::return_key_buffer`].
    pub fn take_key_buffer(&mut self, n: usize) -> Vec<String> {
        self.key_buffer.take(n)
    }

    pub fn return_key_buffer(&mut self, buf: Vec<String>) {
        self.key_buffer.give_back(buf);
    }

    /// Evaluates every tick the watermark has passed; `end` evaluates
    /// everything left (end of input), absence rules only up to the last
    /// event's tick.
    pub fn advance(&mut self, end: bool) -> Vec<(usize, Transition)> {
        let Some(max_tick) = self.max_tick else {
            return Vec::new();
        };
        let (watermark, cap) = if end {
            (i64::MAX, Some(max_tick))
        } else {
            (max_tick - self.lateness, None)
        };
        self.advance_to(watermark, cap)
    }

    /// A live stream has been quiet for `idle_ns` of wall-clock time since
    /// its last event: the watermark moves on by that much, so alerts
    /// resolve and absence rules fire.
    pub fn idle(&mut self, idle_ns: u64) -> Vec<(usize, Transition)> {
        let Some(max_tick) = self.max_tick else {
            return Vec::new();
        };
        let watermark = max_tick - self.lateness + (idle_ns as i64) / self.resolution_ns;
        self.advance_to(watermark, None)
    }

    fn advance_to(&mut self, watermark: i64, cap: Option<i64>) -> Vec<(usize, Transition)> {
        let mut out = Vec::new();
        for &i in &self.active {
            match &mut self.windows[i] {
                Some(w) if w.due(watermark, cap) => {
                    out.extend(w.advance(watermark, cap).into_iter().map(|t| (i, t)))
                }
                Some(w) => w.pass(watermark, cap),
                None => {}
            }
        }
        // Tick order across rules; definition order within a tick.
        if out.len() > 1 {
            out.sort_by_key(|(i, t)| (t.tick, *i));
        }
        out
    }

    /// Records every windowed rule's samples ([`Window::record`]).
    pub fn record(&mut self, on: bool) {
        for w in self.windows.iter_mut().flatten() {
            w.record(on);
        }
    }

    /// Hands the samples recorded since the last call to `f`, with the
    /// rule's index; nothing to do when not recording.
    pub fn drain_samples(&mut self, mut f: impl FnMut(usize, Sample)) {
        for (i, w) in self.windows.iter_mut().enumerate() {
            if let Some(w) = w {
                for s in w.take_samples() {
                    f(i, s);
                }
            }
        }
    }

    /// Every firing key of every windowed rule.
    pub fn firing(&self) -> Vec<(usize, Transition)> {
        let mut out: Vec<(usize, Transition)> = Vec::new();
        for (i, w) in self.windows.iter().enumerate() {
            if let Some(w) = w {
                out.extend(w.firing().into_iter().map(|t| (i, t)));
            }
        }
        out.sort_by(|a, b| (a.1.tick, a.0, &a.1.key).cmp(&(b.1.tick, b.0, &b.1.key)));
        out
    }

    /// Counters summed over all windows.
    pub fn stats(&self) -> WindowStats {
        let mut s = self.retired;
        for w in self.windows.iter().flatten() {
            s.evictions += w.stats.evictions;
            s.late_events += w.stats.late_events;
            s.values_refused += w.stats.values_refused;
        }
        s
    }

    /// Keys held across all windows.
    pub fn keys(&self) -> usize {
        self.windows.iter().flatten().map(Window::len).sum()
    }

    pub fn resolution_ns(&self) -> i64 {
        self.resolution_ns
    }

    /// How far back in event time the state at a tick depends on events:
    /// the longest window plus its `for` (or sequence `within`, or
    /// first-seen window), plus the lateness allowed, plus one tick. Zero
    /// when no rule is windowed or stateful.
    pub fn horizon_ns(&self) -> i64 {
        let stateful = match self.stateful.span_ns() {
            0 => 0,
            span => span + (self.lateness + 1) * self.resolution_ns,
        };
        self.windows
            .iter()
            .flatten()
            .map(|w| (w.spec.window + w.spec.hold + self.lateness + 1) * self.resolution_ns)
            .max()
            .unwrap_or(0)
            .max(stateful)
    }

    /// Applies the waiting events of sequence and first-seen rules that
    /// the watermark has passed (all of them at the end of input).
    pub fn release(&mut self, end: bool) -> Vec<(usize, Outcome)> {
        match (self.max_tick, end) {
            (_, true) => self.stateful.release(i64::MAX),
            (Some(max_tick), false) => self.stateful.release(max_tick - self.lateness),
            (None, false) => Vec::new(),
        }
    }

    /// As [`Windows::release`], on a live stream quiet for `idle_ns`.
    pub fn release_idle(&mut self, idle_ns: u64) -> Vec<(usize, Outcome)> {
        let Some(max_tick) = self.max_tick else {
            return Vec::new();
        };
        self.stateful
            .release(max_tick - self.lateness + (idle_ns as i64) / self.resolution_ns)
    }
}

/// The tick of a rule set's windowed and stateful rules (one `--resolution`
/// for all); a second when it has none.
fn resolution_of(rules: &RuleSet) -> i64 {
    rules
        .rules
        .iter()
        .find_map(|r| {
            r.aggregate
                .as_ref()
                .map(|a| a.spec.resolution_ns)
                .or(r.stateful.as_ref().map(|s| s.resolution_ns()))
        })
        .map_or(1_000_000_000, |ns| ns as i64)
        .max(1)
}

/// The alert for a window transition of `rule`.
pub fn alert<'r>(rule: &'r CompiledRule, t: &Transition, resolution_ns: i64) -> Alert<'r> {
    let agg = rule.aggregate.as_ref().expect("windowed rule");
    let info = AggregateInfo {
        firing: t.firing,
        key: agg
            .by
            .iter()
            .map(|(n, _)| n.clone())
            .zip(t.key.iter().cloned())
            .collect(),
        value: t.value,
        threshold: agg.spec.threshold.as_f64(),
        window: agg.window_text.clone(),
        hold: agg.hold_text.clone(),
        starts_at_ns: t.since * resolution_ns,
        ends_at_ns: (!t.firing).then_some(t.tick * resolution_ns),
    };
    let render = |part: &OutputPart| -> Cow<'static, str> {
        match part {
            OutputPart::Text(s) => Cow::Owned(s.clone()),
            OutputPart::Key(i) => Cow::Owned(t.key.get(*i).cloned().unwrap_or_default()),
            OutputPart::Agg(f) => Cow::Owned(agg_text(*f, agg, &info)),
            OutputPart::Value(_) => Cow::Borrowed("<NA>"),
        }
    };
    let message: String = rule.output.iter().map(render).collect();
    let mut fields: Vec<(&str, Option<Val>)> = rule
        .output_fields
        .iter()
        .map(|(name, part)| {
            let v = match part {
                OutputPart::Value(_) | OutputPart::Text(_) => None,
                other => Some(Val::Str(Cow::Owned(render(other).into_owned()))),
            };
            (name.as_str(), v)
        })
        .collect();
    // Never an empty `output_fields` (falcosidekick refuses those): the
    // `by` fields and the `agg.*` values follow the template's own fields.
    let by = agg.by.iter().zip(t.key.iter());
    let by = by.map(|((name, _), v)| (name.as_str(), v.clone()));
    let aggs = AGG_FIELDS
        .iter()
        .filter(|(_, f)| *f != AggField::For || agg.hold_text.is_some())
        .map(|(name, f)| (*name, agg_text(*f, agg, &info)));
    for (name, v) in by.chain(aggs) {
        if !fields.iter().any(|(n, _)| *n == name) {
            fields.push((name, Some(Val::Str(Cow::Owned(v)))));
        }
    }
    Alert {
        time_ns: t.tick * resolution_ns,
        rule: &rule.name,
        priority: rule.priority,
        tags: &rule.tags,
        message,
        fields,
        aggregate: Some(info),
        stateful: None,
        desc: &rule.desc,
        labels: &rule.labels,
        annotations: &rule.annotations,
    }
}

/// The `agg.*` fields every windowed alert carries in `output_fields`
/// (`agg.for` only when the rule has a `for`).
const AGG_FIELDS: [(&str, AggField); 5] = [
    ("agg.value", AggField::Value),
    ("agg.threshold", AggField::Threshold),
    ("agg.window", AggField::Window),
    ("agg.state", AggField::State),
    ("agg.for", AggField::For),
];

fn agg_text(f: AggField, agg: &Aggregate, info: &AggregateInfo) -> String {
    match f {
        AggField::Value => format_number(info.value),
        AggField::Threshold => agg.threshold_text.clone(),
        AggField::Window => agg.window_text.clone(),
        AggField::For => agg.hold_text.clone().unwrap_or_else(|| "0s".into()),
        AggField::State => if info.firing { "firing" } else { "resolved" }.into(),
    }
}

/// `3`, `1.5`, `0.333`: integers without a fraction, others to 3 places.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A matching event of windowed rule `i`, captured by a `--threads` worker
/// for the ordering thread.
pub fn capture<'a>(
    rules: &RuleSet,
    i: usize,
    ev: &Event<'a>,
    cx: &mut EvalCtx<'a>,
    c: &mut super::capture::Capture,
) {
    let Some(agg) = rules.rules[i].aggregate.as_ref() else {
        return;
    };
    let key = c.key(rules, &agg.by, ev, cx);
    let value = agg.distinct.and_then(|op| rules.program.value(op, ev, cx));
    c.windowed(i, key, value.as_ref().map(Val::render).as_deref());
}

/// Renders the values of a rule's `by` fields into `out` (one string per
/// field, reused: each is cleared first), `<NA>` for a missing value: the
/// key of a windowed or first-seen rule.
pub fn render_key<'a>(
    rules: &RuleSet,
    by: &[(String, OperandId)],
    ev: &Event<'a>,
    cx: &mut EvalCtx<'a>,
    out: &mut [String],
) {
    for (slot, (_, op)) in out.iter_mut().zip(by) {
        slot.clear();
        match rules.program.value(*op, ev, cx) {
            Some(v) => slot.push_str(&v.render()),
            None => slot.push_str("<NA>"),
        }
    }
}
