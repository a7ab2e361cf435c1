//! Sliding windows in event time, per key, for `aggregate:` rules
//! (DESIGN 2.3). The code never reads a clock: the engine hands it events
//! with their tick and tells it how far evaluation may go (the watermark).
//!
//! A key is evaluated only at the ticks where its condition `C` can change:
//! ticks with events, ticks where something leaves its window, and the end
//! of a `for`. Between those ticks `C` is constant, so the alerts are
//! exactly those of evaluating every tick. Ticks are evaluated in order
//! across all keys of the rule.

pub mod capped;
pub mod retire;
pub mod snapshot;
pub mod spec;
pub mod state;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use lru::LruCache;

pub use spec::{Cmp, Measure, Spec, Threshold};
use state::{AlertState, KeyState};

/// The values of a rule's `by` fields (`<NA>` for missing ones); empty for
/// a rule without `by`.
pub type Key = Arc<[String]>;

/// Strings a key's values are rendered into, reused from event to event so
/// that a key already held is looked up without an allocation. It only
/// grows: each string keeps its allocation.
#[derive(Debug, Default)]
pub struct KeyBuffer(Vec<String>);

impl KeyBuffer {
    /// At least `n` strings, holding anything (use the first `n`); hand
    /// them back with [`KeyBuffer::give_back`].
    pub fn take(&mut self, n: usize) -> Vec<String> {
        let mut buf = std::mem::take(&mut self.0);
        if buf.len() < n {
            buf.resize_with(n, String::new);
        }
        buf
    }

    pub fn give_back(&mut self, buf: Vec<String>) {
        self.0 = buf;
    }
}

/// A change of a key's alert state, at a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub tick: i64,
    pub key: Key,
    pub firing: bool,
    /// The measured value at that tick (count, distinct values, or rate).
    pub value: f64,
    /// Tick at which the alert fired.
    pub since: i64,
}

/// A key's measured value at a tick it was evaluated at, recorded only when
/// asked ([`Window::record`]): between two such ticks the value does not
/// change, so these are the whole curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub tick: i64,
    pub key: Key,
    pub value: f64,
    /// Matching events of the key in the window at that tick.
    pub events: u64,
    /// Whether the key's alert is firing after this tick.
    pub firing: bool,
    /// Whether this is the first tick the key was evaluated at (since its
    /// state was last created).
    pub first: bool,
}

/// Limits on the state of one rule.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_keys: usize,
    pub max_values_per_key: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_keys: 100_000,
            max_values_per_key: 10_000,
        }
    }
}

/// Counters a window keeps about itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowStats {
    pub evictions: u64,
    pub late_events: u64,
    pub values_refused: u64,
}

/// The windows of one rule: every key's state and the queue of ticks at
/// which keys must be evaluated.
pub struct Window {
    pub spec: Spec,
    limits: Limits,
    keys: LruCache<Key, KeyState>,
    queue: BinaryHeap<Reverse<(i64, u64, Key)>>,
    seq: u64,
    /// Every tick up to this one has been evaluated.
    frontier: i64,
    /// The first tick of the whole stream (any event), for key-less rules.
    stream_start: Option<i64>,
    /// Resolves of firing keys that the key cap evicted, not yet returned.
    evicted: Vec<Transition>,
    /// The samples of evaluated ticks, when recorded ([`Window::record`]).
    samples: Option<Vec<Sample>>,
    pub stats: WindowStats,
}

impl Window {
    pub fn new(spec: Spec, limits: Limits) -> Self {
        Window {
            spec,
            limits,
            keys: capped::lru(limits.max_keys),
            queue: BinaryHeap::new(),
            seq: 0,
            frontier: i64::MIN,
            stream_start: None,
            evicted: Vec::new(),
            samples: None,
            stats: WindowStats::default(),
        }
    }

    /// Records a [`Sample`] at every tick a key is evaluated at, until
    /// switched off; [`Window::take_samples`] hands them out. Off by
    /// default: the evaluation then only tests that it is off.
    pub fn record(&mut self, on: bool) {
        self.samples = on.then(|| self.samples.take().unwrap_or_default());
    }

    /// The samples recorded since the last call (none when not recording).
    pub fn take_samples(&mut self) -> Vec<Sample> {
        self.samples
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Every key whose alert is firing, as the transition that fired it
    /// (with the value at the last evaluated tick), in no particular order.
    pub fn firing(&self) -> Vec<Transition> {
        self.keys
            .iter()
            .filter_map(|(key, state)| match state.alert {
                AlertState::Firing { since } => {
                    let at = state.evaluated_to.max(since);
                    let n = state.measure(self.spec.measure, at, self.spec.window);
                    Some(Transition {
                        tick: since,
                        key: key.clone(),
                        firing: true,
                        value: self.spec.value(n),
                        since,
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The stream saw an event (matching or not) at `tick`. Key-less rules
    /// start once a whole window has been observed after the first one.
    pub fn observe(&mut self, tick: i64) {
        if self.spec.keyed {
            return;
        }
        // Most events are at or after the start: nothing to do, and no key
        // to build.
        if self.stream_start.is_some_and(|start| tick >= start) {
            return;
        }
        let key: Key = Arc::from(Vec::new());
        match self.stream_start {
            None => {
                self.stream_start = Some(tick);
                self.keys
                    .push(key.clone(), KeyState::new(tick + self.spec.window - 1));
            }
            // An earlier event (late or not) moves the start back, as long as
            // evaluation has not begun; ticks already passed stay passed.
            Some(start) if tick < start => {
                self.stream_start = Some(tick);
                match self.keys.peek_mut(&key) {
                    Some(state) if !state.started() => state.restart(tick + self.spec.window - 1),
                    _ => return,
                }
            }
            Some(_) => return,
        }
        self.schedule_first(key);
    }

    /// Schedules a key's first evaluation, if that is earlier than what is
    /// scheduled.
    fn schedule_first(&mut self, key: Key) {
        let next = self.frontier_next();
        let Some(state) = self.keys.peek_mut(&key) else {
            return;
        };
        let at = state.first_tick.max(next);
        if state.scheduled.is_none_or(|s| at < s) {
            state.scheduled = Some(at);
            self.push(at, key);
        }
    }

    fn frontier_next(&self) -> i64 {
        self.frontier.saturating_add(1)
    }

    fn push(&mut self, tick: i64, key: Key) {
        self.seq += 1;
        self.queue.push(Reverse((tick, self.seq, key)));
    }

    /// A matching event of `key` at `tick`; `value` is the `distinct` field's
    /// value, if the rule counts distinct values and the event has one.
    pub fn add(&mut self, tick: i64, key: Key, value: Option<&str>) {
        let parts = key.clone();
        self.add_with(tick, &parts, move || key, value);
    }

    /// [`Window::add`] with the key as borrowed values: it is copied into a
    /// [`Key`] only when the window does not hold it yet.
    pub fn add_borrowed(&mut self, tick: i64, key: &[String], value: Option<&str>) {
        self.add_with(tick, key, || Key::from(key), value);
    }

    fn add_with(
        &mut self,
        tick: i64,
        key: &[String],
        owned: impl FnOnce() -> Key,
        value: Option<&str>,
    ) {
        if tick <= self.frontier {
            self.stats.late_events += 1;
        }
        // A key already held (most events) is looked up once.
        let due = match self.update(tick, key, value) {
            Some(due) => due,
            None => {
                self.insert(tick, owned());
                self.update(tick, key, value).flatten()
            }
        };
        if let Some((at, key)) = due {
            self.push(at, key);
        }
    }

    /// Takes a new key in, evicting the least recent one at the cap.
    fn insert(&mut self, tick: i64, key: Key) {
        let first = if self.spec.keyed {
            tick
        } else {
            tick + self.spec.window - 1
        };
        if let Some((old, state)) = self.keys.push(key.clone(), KeyState::new(first)) {
            if old != key {
                self.resolve_evicted(old, state);
            }
        }
    }

    /// The cap pushed `key` out: counted, and a firing alert must not be
    /// left firing forever. Its key is gone, so it resolves at the next
    /// tick evaluated.
    fn resolve_evicted(&mut self, key: Key, state: KeyState) {
        self.stats.evictions += 1;
        if let AlertState::Firing { since } = state.alert {
            let tick = self.frontier.saturating_add(1).max(state.evaluated_to + 1);
            let n = state.measure(self.spec.measure, tick, self.spec.window);
            self.evicted.push(Transition {
                tick,
                key,
                firing: false,
                value: self.spec.value(n),
                since,
            });
        }
    }

    /// Counts the event in `key`'s state: `None` when the key is not held,
    /// else the tick to schedule the key at, if that is earlier than what
    /// is scheduled.
    fn update(
        &mut self,
        tick: i64,
        key: &[String],
        value: Option<&str>,
    ) -> Option<Option<(i64, Key)>> {
        let (cap, keyed, frontier) = (
            self.limits.max_values_per_key,
            self.spec.keyed,
            self.frontier,
        );
        let (held, state) = self.keys.get_key_value_mut(key)?;
        // A key is evaluated from its first matching event on; an earlier
        // event moves that back while nothing is evaluated.
        if keyed && tick < state.first_tick && !state.started() {
            state.restart(tick);
        }
        if !state.add(tick, value, cap) {
            self.stats.values_refused += 1;
        }
        let at = tick.max(frontier.saturating_add(1)).max(state.first_tick);
        Some(if state.scheduled.is_none_or(|s| at < s) {
            state.scheduled = Some(at);
            Some((at, held.clone()))
        } else {
            None
        })
    }

    /// Evaluates every tick up to `watermark` and returns the alert
    /// transitions in tick order. `absence_until` caps the ticks at which an
    /// absence rule (`<`, `<=`) may be evaluated (the last event's tick at
    /// the end of a file); ticks beyond it stay unevaluated for such rules.
    pub fn advance(&mut self, watermark: i64, absence_until: Option<i64>) -> Vec<Transition> {
        let mut out = std::mem::take(&mut self.evicted);
        let limit = self.limit(watermark, absence_until);
        while let Some(Reverse((tick, _, _))) = self.queue.peek() {
            if *tick > limit {
                break;
            }
            let Some(Reverse((tick, _, key))) = self.queue.pop() else {
                break;
            };
            self.evaluate(tick, key, &mut out);
        }
        self.pass(watermark, absence_until);
        out
    }

    /// Whether [`Window::advance`] to `watermark` has anything to return:
    /// a resolve the key cap evicted, or a key due at or before it. Most
    /// events move the watermark past no key's tick; for them
    /// [`Window::pass`] is all there is to do.
    #[inline]
    pub fn due(&self, watermark: i64, absence_until: Option<i64>) -> bool {
        let limit = self.limit(watermark, absence_until);
        !self.evicted.is_empty()
            || self
                .queue
                .peek()
                .is_some_and(|Reverse((tick, _, _))| *tick <= limit)
    }

    /// Every tick up to the watermark counts as evaluated: the end of
    /// [`Window::advance`], and all of it when the window is not
    /// [`Window::due`].
    #[inline]
    pub fn pass(&mut self, watermark: i64, absence_until: Option<i64>) {
        let limit = self.limit(watermark, absence_until);
        if limit > self.frontier {
            self.frontier = limit;
        }
    }

    #[inline]
    fn limit(&self, watermark: i64, absence_until: Option<i64>) -> i64 {
        match absence_until {
            Some(cap) if self.spec.cmp.is_absence() => watermark.min(cap),
            _ => watermark,
        }
    }

    /// The earliest tick still waiting to be evaluated.
    pub fn next_tick(&self) -> Option<i64> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    fn evaluate(&mut self, tick: i64, key: Key, out: &mut Vec<Transition>) {
        let spec = self.spec.clone();
        let w = spec.window;
        let Some(state) = self.keys.peek_mut(&key) else {
            return;
        };
        if state.scheduled != Some(tick) {
            return; // superseded by an earlier entry for the same key
        }
        state.scheduled = None;
        if tick <= state.evaluated_to {
            return;
        }
        let n = state.measure(spec.measure, tick, w);
        let c = spec.holds(n);
        let value = spec.value(n);
        let mut emit = |firing: bool, since: i64| {
            out.push(Transition {
                tick,
                key: key.clone(),
                firing,
                value,
                since,
            })
        };
        state.alert = match state.alert {
            AlertState::Inactive if c && spec.hold == 0 => {
                emit(true, tick);
                AlertState::Firing { since: tick }
            }
            AlertState::Inactive if c => AlertState::Pending { since: tick },
            AlertState::Pending { .. } if !c => AlertState::Inactive,
            AlertState::Pending { since } if tick >= since + spec.hold => {
                emit(true, tick);
                AlertState::Firing { since: tick }
            }
            AlertState::Firing { since } if !c => {
                emit(false, since);
                AlertState::Inactive
            }
            other => other,
        };
        if let Some(samples) = &mut self.samples {
            samples.push(Sample {
                tick,
                key: key.clone(),
                value,
                events: match spec.measure {
                    Measure::Distinct => state.count(tick, w),
                    _ => n,
                },
                firing: matches!(state.alert, AlertState::Firing { .. }),
                first: !state.started(),
            });
        }
        state.evaluated(tick, w);
        // The next tick at which anything can change for this key.
        let mut next = state.next_change(tick, w);
        if let AlertState::Pending { since } = state.alert {
            next = Some(next.map_or(since + spec.hold, |n| n.min(since + spec.hold)));
        }
        let idle = state.alert == AlertState::Inactive && state.is_empty_after(tick, w);
        if let Some(at) = next {
            state.scheduled = Some(at);
            self.push(at, key);
        } else if idle && spec.keyed {
            // Nothing left: the key can go (a new event recreates it).
            self.keys.pop(&key);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(cmp: Cmp, threshold: &str, window: i64, hold: i64, keyed: bool) -> Spec {
        Spec {
            measure: Measure::Count,
            cmp,
            threshold: Threshold::parse(threshold).unwrap(),
            window,
            hold,
            keyed,
            resolution_ns: 1_000_000_000,
        }
    }

    pub(crate) fn key(s: &str) -> Key {
        Arc::from(vec![s.to_string()])
    }

    pub(crate) fn ticks(ts: &[Transition]) -> Vec<(i64, bool)> {
        ts.iter().map(|t| (t.tick, t.firing)).collect()
    }

    #[test]
    fn fires_and_resolves_without_for() {
        let mut w = Window::new(spec(Cmp::Gt, "2", 10, 0, true), Limits::default());
        for t in [100, 101, 102] {
            w.add(t, key("a"), None);
        }
        // count > 2 first at 102; the event at 100 leaves at 110.
        assert_eq!(ticks(&w.advance(200, None)), [(102, true), (110, false)]);
    }

    #[test]
    fn for_interrupted_and_held() {
        let mut w = Window::new(spec(Cmp::Gt, "1", 5, 3, true), Limits::default());
        w.add(10, key("a"), None);
        w.add(11, key("a"), None); // C true 11..=14, false at 15: interrupted (needs 11..=14)
        assert_eq!(ticks(&w.advance(30, None)), [(14, true), (15, false)]);
        let mut w = Window::new(spec(Cmp::Gt, "1", 5, 4, true), Limits::default());
        w.add(10, key("a"), None);
        w.add(11, key("a"), None); // C true 11..=14 only; for 4 needs 11..=15
        assert!(w.advance(30, None).is_empty());
    }

    #[test]
    fn keyless_absence_starts_after_a_whole_window_and_stops_at_the_cap() {
        let mut w = Window::new(spec(Cmp::Lt, "1", 10, 0, false), Limits::default());
        w.observe(100);
        w.add(100, Arc::from(Vec::new()), None);
        // First evaluable tick 109: count 1, C false. Event leaves at 110.
        assert_eq!(ticks(&w.advance(105, None)), []);
        assert_eq!(ticks(&w.advance(1_000, Some(109))), []);
        let mut w = Window::new(spec(Cmp::Lt, "1", 10, 0, false), Limits::default());
        w.observe(100);
        w.add(100, Arc::from(Vec::new()), None);
        assert_eq!(ticks(&w.advance(1_000, Some(150))), [(110, true)]);
    }

    #[test]
    fn late_events_count_for_later_ticks_only() {
        let mut w = Window::new(spec(Cmp::Gt, "1", 10, 0, true), Limits::default());
        w.add(100, key("a"), None);
        assert!(w.advance(105, None).is_empty());
        w.add(101, key("a"), None); // late: ticks up to 105 are done
        assert_eq!(w.stats.late_events, 1);
        assert_eq!(ticks(&w.advance(200, None)), [(106, true), (110, false)]);
    }

    #[test]
    fn evicting_a_firing_key_resolves_it() {
        let mut w = Window::new(
            spec(Cmp::Gt, "0", 10, 0, true),
            Limits {
                max_keys: 1,
                max_values_per_key: 10,
            },
        );
        w.add(100, key("a"), None);
        assert_eq!(ticks(&w.advance(100, None)), [(100, true)]);
        w.add(101, key("b"), None);
        let t = w.advance(101, None);
        assert_eq!(ticks(&t), [(101, false), (101, true)]);
        assert_eq!(t[0].key, key("a"));
        assert_eq!(w.stats.evictions, 1);
    }

    #[test]
    fn recorded_samples_are_every_evaluated_tick_with_the_value_then() {
        let mut w = Window::new(spec(Cmp::Gt, "1", 3, 0, true), Limits::default());
        w.add(10, key("a"), None);
        w.add(11, key("a"), None);
        assert!(w.advance(11, None).len() == 1);
        assert!(w.take_samples().is_empty(), "not recording");
        w.record(true);
        w.add(12, key("a"), None);
        w.advance(100, None);
        let got: Vec<(i64, f64, u64, bool, bool)> = w
            .take_samples()
            .iter()
            .map(|s| (s.tick, s.value, s.events, s.firing, s.first))
            .collect();
        // 12: three in the window; 13 and 14: the events at 10 and 11
        // leave; 15: the last one does.
        assert_eq!(
            got,
            [
                (12, 3.0, 3, true, false),
                (13, 2.0, 2, true, false),
                (14, 1.0, 1, false, false),
                (15, 0.0, 0, false, false)
            ]
        );
        assert!(w.take_samples().is_empty(), "handed out once");
        w.record(false);
        w.add(20, key("b"), None);
        w.advance(30, None);
        assert!(w.take_samples().is_empty());
    }

    #[test]
    fn lru_evicts_and_counts() {
        let mut w = Window::new(
            spec(Cmp::Gt, "5", 10, 0, true),
            Limits {
                max_keys: 2,
                max_values_per_key: 10,
            },
        );
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            w.add(i as i64, key(k), None);
        }
        assert_eq!(w.stats.evictions, 1);
        assert_eq!(w.len(), 2);
    }
}

#[cfg(test)]
mod model {
    //! The windows against a naive model that evaluates every tick of every
    //! key, exactly as DESIGN 2.3 words it, on random out-of-order streams.

    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    struct Ev {
        tick: i64,
        key: u8,
        value: u8,
    }

    #[derive(Debug)]
    struct Case {
        spec: Spec,
        lateness: i64,
        events: Vec<Ev>,
    }

    fn key_of(spec: &Spec, k: u8) -> Key {
        if spec.keyed {
            Arc::from(vec![format!("k{k}")])
        } else {
            Arc::from(Vec::new())
        }
    }

    /// (tick, key, firing, value) from the real windows.
    fn real(c: &Case) -> Vec<(i64, Key, bool, u64)> {
        let mut w = Window::new(
            c.spec.clone(),
            Limits {
                max_keys: 1_000,
                max_values_per_key: 1_000,
            },
        );
        let mut out = Vec::new();
        let mut max_tick = i64::MIN;
        for e in &c.events {
            w.observe(e.tick);
            let v = e.value.to_string();
            let value = (c.spec.measure == Measure::Distinct).then_some(v.as_str());
            w.add(e.tick, key_of(&c.spec, e.key), value);
            max_tick = max_tick.max(e.tick);
            // As the engine moves it: only a window with something due
            // evaluates; the others just pass the watermark.
            if w.due(max_tick - c.lateness, None) {
                out.extend(w.advance(max_tick - c.lateness, None));
            } else {
                w.pass(max_tick - c.lateness, None);
            }
        }
        out.extend(w.advance(i64::MAX, Some(max_tick)));
        out.into_iter()
            .map(|t| (t.tick, t.key, t.firing, t.value as u64))
            .collect()
    }

    /// The same from the definition: every tick, every key known so far.
    fn naive(c: &Case) -> Vec<(i64, Key, bool, u64)> {
        let s = &c.spec;
        let mut received: Vec<Ev> = Vec::new();
        let mut states: BTreeMap<Key, AlertState> = BTreeMap::new();
        let mut out = Vec::new();
        let lowest = c.events.iter().map(|e| e.tick).min().unwrap_or(0);
        let mut frontier = lowest - 1;
        let mut eval = |upto: i64, received: &Vec<Ev>, frontier: &mut i64, out: &mut Vec<_>| {
            for t in (*frontier + 1)..=upto {
                let keys: BTreeSet<Key> = received.iter().map(|e| key_of(s, e.key)).collect();
                for k in keys {
                    let mine: Vec<&Ev> =
                        received.iter().filter(|e| key_of(s, e.key) == k).collect();
                    let start = if s.keyed {
                        mine.iter().map(|e| e.tick).min().unwrap_or(i64::MAX)
                    } else {
                        received.iter().map(|e| e.tick).min().unwrap_or(i64::MAX) + s.window - 1
                    };
                    if t < start {
                        continue;
                    }
                    let inside: Vec<&&Ev> = mine
                        .iter()
                        .filter(|e| e.tick > t - s.window && e.tick <= t)
                        .collect();
                    let n = match s.measure {
                        Measure::Distinct => inside
                            .iter()
                            .map(|e| e.value)
                            .collect::<BTreeSet<_>>()
                            .len() as u64,
                        _ => inside.len() as u64,
                    };
                    let c = s.holds(n);
                    let st = states.entry(k.clone()).or_insert(AlertState::Inactive);
                    *st = match *st {
                        AlertState::Inactive if c && s.hold == 0 => {
                            out.push((t, k.clone(), true, s.value(n) as u64));
                            AlertState::Firing { since: t }
                        }
                        AlertState::Inactive if c => AlertState::Pending { since: t },
                        AlertState::Pending { .. } if !c => AlertState::Inactive,
                        AlertState::Pending { since } if t >= since + s.hold => {
                            out.push((t, k.clone(), true, s.value(n) as u64));
                            AlertState::Firing { since: t }
                        }
                        AlertState::Firing { .. } if !c => {
                            out.push((t, k.clone(), false, s.value(n) as u64));
                            AlertState::Inactive
                        }
                        other => other,
                    };
                }
            }
            *frontier = (*frontier).max(upto);
        };
        let mut max_tick = i64::MIN;
        for e in &c.events {
            received.push(e.clone());
            max_tick = max_tick.max(e.tick);
            eval(max_tick - c.lateness, &received, &mut frontier, &mut out);
        }
        let end = if s.cmp.is_absence() {
            max_tick
        } else {
            max_tick + s.window + s.hold + 2
        };
        eval(end, &received, &mut frontier, &mut out);
        out
    }

    fn sorted(mut v: Vec<(i64, Key, bool, u64)>) -> Vec<(i64, Key, bool, u64)> {
        v.sort();
        v
    }

    fn case() -> impl Strategy<Value = Case> {
        let measure = prop_oneof![
            Just(Measure::Count),
            Just(Measure::Distinct),
            Just(Measure::Rate {
                unit_ns: 2_000_000_000
            })
        ];
        (
            measure,
            0..4usize,
            0u32..5,
            1i64..8,
            0i64..5,
            any::<bool>(),
            0i64..4,
            prop::collection::vec((0i64..40, 0u8..3, 0u8..4), 0..40),
        )
            .prop_map(
                |(measure, cmp, threshold, window, hold, keyed, lateness, raw)| {
                    let cmp = [Cmp::Gt, Cmp::Ge, Cmp::Lt, Cmp::Le][cmp];
                    // `<` and `<=` are only allowed without `by`.
                    let keyed = keyed && !cmp.is_absence();
                    let spec = Spec {
                        measure,
                        cmp,
                        threshold: Threshold {
                            num: u128::from(threshold),
                            den: 1,
                        },
                        window,
                        hold,
                        keyed,
                        resolution_ns: 1_000_000_000,
                    };
                    // Mostly increasing ticks with jitter, like a real stream.
                    let mut base = 1_000;
                    let events = raw
                        .into_iter()
                        .map(|(step, key, value)| {
                            base += step / 8;
                            Ev {
                                tick: base - (step % 5),
                                key,
                                value,
                            }
                        })
                        .collect();
                    Case {
                        spec,
                        lateness,
                        events,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn windows_agree_with_the_naive_model(c in case()) {
            prop_assert_eq!(sorted(real(&c)), sorted(naive(&c)), "spec {:?} lateness {} events {:?}", c.spec, c.lateness, c.events);
        }
    }
}
