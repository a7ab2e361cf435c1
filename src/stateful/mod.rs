//! Keyed state of sequence rules (DESIGN 2.4) and first-seen rules
//! (DESIGN 2.5), for one stream. It never reads a clock: the engine hands
//! it what events matched, with their times, and the watermark.
//!
//! What an event contributes is detached from the event when it is read
//! (its keys and the output values it may need, as strings): a [`Hit`].
//! Hits wait in a queue until the watermark passes their tick, and are then
//! applied in (event time, input order) order, so applied times never go
//! back. An event whose tick is at or below the watermark when it arrives
//! is late: counted, never applied.

pub mod carry;
pub mod first_seen;
pub mod queue;
pub mod sequence;
pub mod snapshot;

use std::cmp::Ordering;

use crate::rules::stateful::StatefulRule;
use crate::rules::RuleSet;
pub use crate::window::Key;
use first_seen::{FirstSeenState, New, SeenHit};
use sequence::{Completed, SeqHit, SequenceState};

/// Counters one rule's state keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateStats {
    pub evictions: u64,
    pub late_events: u64,
}

/// What one event contributes to one stateful rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Hit {
    Sequence(SeqHit),
    FirstSeen(SeenHit),
}

/// What reading an event of a first-seen rule did ([`Stateful::read_first_seen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// At or below the watermark: counted, dropped.
    Late,
    /// Applied at once; nothing waits.
    Applied,
    /// It waits for the watermark; `render` is whether it may raise an
    /// alert, so whether its alert is worth rendering now.
    Waits { render: bool },
}

/// What applying an event produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed(Completed),
    New(New),
}

/// A rule's state.
enum RuleState {
    Sequence(SequenceState),
    FirstSeen(FirstSeenState),
}

/// A hit waiting for the watermark.
struct Waiting {
    time_ns: i64,
    seq: u64,
    rule: usize,
    hit: Hit,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time_ns, self.seq).cmp(&(other.time_ns, other.seq))
    }
}

/// Per-rule numbers, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RuleNumbers {
    pub keys: u64,
    pub partials: u64,
    pub evictions: u64,
    pub late_events: u64,
}

/// The sequence and first-seen state of one stream.
pub struct Stateful {
    rules: Vec<Option<RuleState>>,
    resolution_ns: i64,
    waiting: queue::Queue<Waiting>,
    seq: u64,
    /// Every tick up to this one has been applied.
    applied: i64,
    /// Whether a first-seen rule has not seen an event yet (its learning
    /// period starts at the next one).
    unstarted: bool,
    /// The longest span a rule's state depends on, in nanoseconds.
    span_ns: i64,
    /// Per rule, the counters already handed out by [`Stateful::drain_counts`].
    reported: Vec<StateStats>,
    /// Where a first-seen key is rendered to be looked up, so that a key
    /// already held costs no allocation ([`Stateful::take_key_buffer`]).
    key_buffer: crate::window::KeyBuffer,
}

impl Stateful {
    pub fn new(rules: &RuleSet, max_keys: usize, resolution_ns: i64) -> Self {
        let states = rules
            .rules
            .iter()
            .map(|r| {
                r.stateful.as_ref().map(|s| match s {
                    StatefulRule::Sequence(q) => RuleState::Sequence(SequenceState::new(
                        q.steps.len(),
                        q.within_ns,
                        max_keys,
                    )),
                    StatefulRule::FirstSeen(f) => {
                        RuleState::FirstSeen(FirstSeenState::new(f.window, max_keys))
                    }
                })
            })
            .collect();
        let span_ns = rules
            .rules
            .iter()
            .filter_map(|r| r.stateful.as_ref().map(StatefulRule::span_ns))
            .max()
            .unwrap_or(0);
        Stateful {
            rules: states,
            resolution_ns: resolution_ns.max(1),
            waiting: queue::Queue::default(),
            seq: 0,
            applied: i64::MIN,
            unstarted: true,
            span_ns,
            reported: vec![StateStats::default(); rules.rules.len()],
            key_buffer: Default::default(),
        }
    }

    /// Whether any rule is stateful.
    pub fn any(&self) -> bool {
        self.rules.iter().any(Option::is_some)
    }

    /// How far back the state depends on events (the longest `within` or
    /// first-seen window); zero without stateful rules.
    pub fn span_ns(&self) -> i64 {
        if self.any() {
            self.span_ns
        } else {
            0
        }
    }

    /// The stream saw an event at `tick` (matching or not).
    pub fn observe(&mut self, tick: i64) {
        if !self.unstarted {
            return;
        }
        self.unstarted = false;
        for r in self.rules.iter_mut().flatten() {
            if let RuleState::FirstSeen(f) = r {
                f.first_tick.get_or_insert(tick);
            }
        }
    }

    /// A stateful partition of the repartition topic heard that one of its
    /// input partitions started at `tick`: the stream starts at the
    /// earliest of them (the learning period of first-seen rules).
    pub fn observe_earliest(&mut self, tick: i64) {
        self.unstarted = false;
        for r in self.rules.iter_mut().flatten() {
            if let RuleState::FirstSeen(f) = r {
                f.first_tick = Some(f.first_tick.map_or(tick, |t| t.min(tick)));
            }
        }
    }

    /// What an event of first-seen rule `rule` with `key` at `time_ns`,
    /// read by the thread that applies it, does to the state, found with
    /// one lookup of the key. A key seen within the window by the events
    /// already applied makes the event neither new nor able to make a
    /// waiting event new (those are earlier, so the sighting is recent for
    /// them too): only its last-seen tick moves, so it moves now, and the
    /// event does not wait.
    pub fn read_first_seen(&mut self, rule: usize, key: &[String], time_ns: i64) -> Read {
        let tick = time_ns.div_euclid(self.resolution_ns);
        let late = tick <= self.applied;
        let Some(Some(RuleState::FirstSeen(f))) = self.rules.get_mut(rule) else {
            return if late {
                Read::Late
            } else {
                Read::Waits { render: true }
            };
        };
        if late {
            f.stats.late_events += 1;
            return Read::Late;
        }
        if f.touch_if_recent(key, tick) {
            return Read::Applied;
        }
        // Not recent: new unless in the learning period.
        let render = f.first_tick.is_none_or(|first| !f.learning(tick, first));
        Read::Waits { render }
    }

    /// An event of stateful rule `rule`, at `time_ns`, in input order. A
    /// late event is counted and dropped; returns whether it was kept.
    pub fn push(&mut self, rule: usize, time_ns: i64, mut hit: Hit) -> bool {
        match &mut hit {
            Hit::FirstSeen(h) => match self.read_first_seen(rule, &h.key, time_ns) {
                Read::Late => return false,
                Read::Applied => return true,
                // What the reading thread left out, a worker may have
                // rendered.
                Read::Waits { render } => {
                    if !render {
                        h.rendered = None;
                    }
                }
            },
            Hit::Sequence(_) => {
                if time_ns.div_euclid(self.resolution_ns) <= self.applied {
                    if let Some(Some(s)) = self.rules.get_mut(rule) {
                        s.stats_mut().late_events += 1;
                    }
                    return false;
                }
            }
        }
        self.wait(rule, time_ns, hit);
        true
    }

    /// Strings to render a first-seen key into ([`crate::window::KeyBuffer`]);
    /// hand them back with [`Stateful::return_key_buffer`].
    pub fn take_key_buffer(&mut self, n: usize) -> Vec<String> {
        self.key_buffer.take(n)
    }

    pub fn return_key_buffer(&mut self, buf: Vec<String>) {
        self.key_buffer.give_back(buf);
    }

    /// Queues a hit that [`Stateful::read_first_seen`] said waits.
    pub fn wait(&mut self, rule: usize, time_ns: i64, hit: Hit) {
        self.seq += 1;
        self.waiting.push(Waiting {
            time_ns,
            seq: self.seq,
            rule,
            hit,
        });
    }

    /// Applies every waiting event whose tick is at or below `watermark`,
    /// in order; returns what they produced, in that order.
    pub fn release(&mut self, watermark: i64) -> Vec<(usize, Outcome)> {
        let mut out = Vec::new();
        while let Some(w) = self.waiting.peek() {
            let tick = w.time_ns.div_euclid(self.resolution_ns);
            if tick > watermark {
                break;
            }
            let Some(w) = self.waiting.pop() else {
                break;
            };
            self.apply(w, &mut out);
        }
        self.applied = self.applied.max(watermark);
        out
    }

    /// Applies one waiting hit to its rule's state.
    fn apply(&mut self, w: Waiting, out: &mut Vec<(usize, Outcome)>) {
        let tick = w.time_ns.div_euclid(self.resolution_ns);
        match (self.rules.get_mut(w.rule), w.hit) {
            (Some(Some(RuleState::Sequence(s))), Hit::Sequence(h)) => out.extend(
                s.apply(w.time_ns, h)
                    .into_iter()
                    .map(|c| (w.rule, Outcome::Completed(c))),
            ),
            (Some(Some(RuleState::FirstSeen(f))), Hit::FirstSeen(h)) => {
                let first = f.first_tick.unwrap_or(i64::MIN);
                if let Some(n) = f.apply(tick, w.time_ns, h, first) {
                    out.push((w.rule, Outcome::New(n)));
                }
            }
            _ => {}
        }
    }

    /// Keys held by all stateful rules.
    pub fn keys(&self) -> usize {
        self.rules.iter().flatten().map(RuleState::keys).sum()
    }

    /// Counters summed over all stateful rules.
    pub fn stats(&self) -> StateStats {
        let mut s = StateStats::default();
        for r in self.rules.iter().flatten() {
            s.evictions += r.stats().evictions;
            s.late_events += r.stats().late_events;
        }
        s
    }

    /// Adds to `totals` (per rule) what the counters grew by since the last
    /// call: a caller that swaps several streams' state keeps exact totals.
    pub fn drain_counts(&mut self, totals: &mut [StateStats]) {
        for ((r, seen), total) in self.rules.iter().zip(&mut self.reported).zip(totals) {
            if let Some(r) = r {
                let now = r.stats();
                total.evictions += now.evictions - seen.evictions;
                total.late_events += now.late_events - seen.late_events;
                *seen = now;
            }
        }
    }

    /// Per rule (indexed like `RuleSet::rules`): keys, partials, evictions
    /// and late events; `None` for rules that are not stateful.
    pub fn numbers(&self) -> Vec<Option<RuleNumbers>> {
        self.rules
            .iter()
            .map(|r| {
                r.as_ref().map(|r| RuleNumbers {
                    keys: r.keys() as u64,
                    partials: match r {
                        RuleState::Sequence(s) => s.partials() as u64,
                        RuleState::FirstSeen(_) => 0,
                    },
                    evictions: r.stats().evictions,
                    late_events: r.stats().late_events,
                })
            })
            .collect()
    }
}

impl RuleState {
    fn keys(&self) -> usize {
        match self {
            RuleState::Sequence(s) => s.keys(),
            RuleState::FirstSeen(f) => f.keys(),
        }
    }

    fn stats(&self) -> StateStats {
        match self {
            RuleState::Sequence(s) => s.stats,
            RuleState::FirstSeen(f) => f.stats,
        }
    }

    fn stats_mut(&mut self) -> &mut StateStats {
        match self {
            RuleState::Sequence(s) => &mut s.stats,
            RuleState::FirstSeen(f) => &mut f.stats,
        }
    }
}
