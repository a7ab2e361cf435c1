//! Repartitioning of windowed and sequence rules (`--input kafka`): what the consuming
//! instance forwards of a matching event, the record it travels in, and the
//! event-time watermark of a stateful partition that receives records from
//! every input partition.
//!
//! A windowed rule whose `by` fields do not include the input's partition
//! key (`--kafka-partition-key`) is *forwarded*: the engine does not count
//! its matches in the input partition's windows, it puts them in an
//! [`Outbox`] (rule, tick, key, `distinct()` value) that the source sends to
//! the repartition topic. A partition of that topic is a *stage* stream:
//! its windows hold only forwarded rules, fed from [`Record`]s, and its
//! watermark is the lowest over the input partitions that feed it
//! ([`Marks`]), so a quiet or lagging input partition holds it back instead
//! of making a window look empty.
//!
//! A first-seen rule's matches travel too (key, event time, and the alert
//! rendered for the event should its key be new). The consuming instance
//! remembers where its partition last saw each key ([`Sightings`]): an
//! event whose key it saw earlier within the window cannot be new, so it
//! is forwarded as a bare sighting, without its alert rendered.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::fields::extract::Val;
use crate::rules::stateful::StatefulRule;
use crate::rules::RuleSet;
use crate::stateful::first_seen::Rendered;
use crate::stateful::sequence::SeqHit;
use crate::window::Key;

/// Which stateful rules a consuming instance forwards: those whose `by`
/// fields do not include `partition_key` (all of them when no key is
/// declared; key-less rules always). Indexed like `rules.rules`.
/// Sequence rules too, unless every step's `by` includes the key, and
/// first-seen rules whose `by` does not include it.
pub fn forwarded_rules(rules: &RuleSet, partition_key: Option<&str>) -> Vec<bool> {
    let keyed = |by: &[(String, crate::rules::predicate::OperandId)]| {
        partition_key.is_some_and(|k| by.iter().any(|(name, _)| name == k))
    };
    rules
        .rules
        .iter()
        .map(|r| match (&r.aggregate, &r.stateful) {
            (Some(a), _) => !keyed(&a.by),
            (None, Some(StatefulRule::Sequence(q))) => !q.steps.iter().all(|s| keyed(&s.by)),
            (None, Some(StatefulRule::FirstSeen(f))) => !keyed(&f.by),
            (None, None) => false,
        })
        .collect()
}

/// A windowed match to forward (its input offset is the batch's).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub rule: usize,
    pub tick: i64,
    pub key: Key,
    pub value: Option<String>,
}

/// What the engine found to forward in one batch: the matches, and the
/// lowest and highest tick of every event of the batch (matching or not),
/// which the source partition's watermark mark is made of.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Nanoseconds per tick.
    pub res: i64,
    pub entries: Vec<Entry>,
    /// Sequence rules' hits: rule, event time.
    pub hits: Vec<(usize, i64, SeqHit)>,
    /// First-seen rules' matches.
    pub seen: Vec<Seen>,
    pub lo: Option<i64>,
    pub hi: Option<i64>,
}

impl Outbox {
    pub fn saw(&mut self, tick: i64) {
        self.lo = Some(self.lo.map_or(tick, |l| l.min(tick)));
        self.hi = Some(self.hi.map_or(tick, |h| h.max(tick)));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.hits.is_empty() && self.seen.is_empty() && self.hi.is_none()
    }
}

/// A first-seen match to forward: the rule, the event's tick and time, the
/// key, and the alert should the key be new (`None`: a sighting that
/// cannot be new, see [`Sightings`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub rule: usize,
    pub tick: i64,
    pub time_ns: i64,
    pub key: Key,
    pub rendered: Option<Rendered>,
}

/// Where one input partition last saw each key of its forwarded first-seen
/// rules (tick and event time), so that an event whose key it saw earlier
/// within the window is forwarded without its alert rendered: the earlier
/// sighting reaches the stateful partition too, before it (in event time),
/// so the key is not new there either. Bounded like first-seen state
/// (`--max-keys` per rule); a key let go only costs a rendering.
pub struct Sightings {
    max_keys: usize,
    rules: HashMap<usize, LruCache<Key, (i64, i64)>>,
}

impl Sightings {
    pub fn new(max_keys: usize) -> Self {
        Sightings {
            max_keys: max_keys.max(1),
            rules: HashMap::new(),
        }
    }

    /// Whether an event of `rule` with `key` at `tick` (`time_ns`) was
    /// preceded here by a sighting of the key within `window` ticks (then it
    /// cannot be new); remembers the latest sighting.
    pub fn covered(
        &mut self,
        rule: usize,
        key: &[String],
        tick: i64,
        time_ns: i64,
        window: i64,
    ) -> bool {
        let cap = self.max_keys;
        let seen = self
            .rules
            .entry(rule)
            .or_insert_with(|| crate::window::capped::lru(cap));
        match seen.get_mut(key) {
            Some((last_tick, last_ns)) if *last_ns <= time_ns => {
                let covered = *last_tick > tick - window;
                (*last_tick, *last_ns) = (tick, time_ns);
                covered
            }
            // An event earlier than the latest sighting: what came before
            // it here is not known any more.
            Some(_) => false,
            None => {
                seen.push(Key::from(key), (tick, time_ns));
                false
            }
        }
    }

    pub fn keys(&self) -> usize {
        self.rules.values().map(LruCache::len).sum()
    }
}

/// An output value of a forwarded first-seen alert, as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WireVal {
    Num(u64),
    Str(String),
    List(Vec<String>),
}

impl WireVal {
    pub fn of(v: &Val) -> Self {
        match v {
            Val::Num(n) => WireVal::Num(*n),
            Val::Str(s) => WireVal::Str(s.to_string()),
            Val::List(l) => WireVal::List(l.iter().map(|s| s.to_string()).collect()),
        }
    }

    pub fn into_val(self) -> Val<'static> {
        match self {
            WireVal::Num(n) => Val::Num(n),
            WireVal::Str(s) => Val::Str(Cow::Owned(s)),
            WireVal::List(l) => Val::List(l.into_iter().map(Cow::Owned).collect()),
        }
    }
}

/// A forwarded first-seen alert: its message and output values.
pub type WireRendered = (String, Vec<Option<WireVal>>);

impl Seen {
    pub fn wire(rendered: &Rendered) -> WireRendered {
        let fields = rendered
            .fields
            .iter()
            .map(|f| f.as_ref().map(WireVal::of))
            .collect();
        (rendered.message.clone(), fields)
    }

    pub fn unwire((message, fields): WireRendered) -> Rendered {
        Rendered {
            message,
            fields: fields
                .into_iter()
                .map(|f| f.map(WireVal::into_val))
                .collect(),
        }
    }
}

/// One message of the repartition topic: what one input partition sent to
/// one stage partition since its last message. JSON, so that it can be read
/// with any Kafka tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Format version.
    pub v: u32,
    /// Nanoseconds per tick of the sender's rules.
    pub res: i64,
    /// The input topic and partition it comes from, and how many
    /// partitions that topic has.
    pub t: String,
    pub p: i32,
    pub n: i32,
    /// The repartition partition it was sent to: partition 0 holds the
    /// key-less rules, whose windows start with the stream's first event
    /// (`lo`).
    pub r: i32,
    /// Lowest tick of the events since the last message to this stage
    /// partition, and the highest tick the input partition has reached.
    pub lo: i64,
    pub hi: i64,
    /// The lowest input offset the matches came from.
    pub b: i64,
    /// Matches: rule name, tick, key values, `distinct()` value, and the
    /// input offsets (from `b`) of the messages they occurred in, one per
    /// occurrence, ascending.
    pub e: Vec<Match>,
    /// Sequence steps matched, one per event and key ([`SeqMatch`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub s: Vec<SeqMatch>,
    /// First-seen matches ([`SeenMatch`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub f: Vec<SeenMatch>,
}

/// First-seen matches of one rule, tick and key, merged: rule name, event
/// time (ns) of the earliest, key values, its alert should the key be new
/// (none for a sighting that cannot be new), and the input offsets (from
/// the record's base offset) of the messages they occurred in, ascending.
pub type SeenMatch = (String, i64, Vec<String>, Option<WireRendered>, Vec<i64>);

/// An event's part in a sequence rule, for one key: rule name, event time
/// (ns), input offset, audit ID, the steps it matches with that key (step,
/// key values, the step's output values), and the completing event's own
/// output values (with the last step only).
pub type SeqMatch = (
    String,
    i64,
    i64,
    Option<String>,
    Vec<SeqStep>,
    Vec<Option<String>>,
);

/// A step of a [`SeqMatch`]: step, key values, the step's output values.
pub type SeqStep = (usize, Vec<String>, Vec<Option<String>>);

/// A forwarded match in a [`Record`]: rule name, tick, key values,
/// `distinct()` value, and its occurrences' input offsets (from the
/// record's base offset). A stage partition applies an occurrence once:
/// after a crash, the input is forwarded again from its committed offset,
/// and what the stage already applied from that input partition is
/// recognised by its offset and skipped.
pub type Match = (String, i64, Vec<String>, Option<String>, Vec<i64>);

pub const RECORD_VERSION: u32 = 1;

impl Record {
    /// The event-time range of a record's payload (for a warm-up's search
    /// of where to start), in nanoseconds.
    pub fn time_range(payload: &[u8]) -> Option<(i64, i64)> {
        #[derive(Deserialize)]
        struct Head {
            res: i64,
            lo: i64,
            hi: i64,
        }
        let h: Head = serde_json::from_slice(payload).ok()?;
        Some((h.lo.saturating_mul(h.res), h.hi.saturating_mul(h.res)))
    }
}

/// What applying a record (or the wall clock) did to a stage stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Its watermark in nanoseconds, once it has one.
    pub watermark_ns: Option<i64>,
    /// Occurrences skipped as already applied.
    pub duplicates: u64,
}

/// The progress of one input partition, as a stage partition saw it.
#[derive(Debug, Clone, Copy)]
struct Mark {
    tick: i64,
    /// When (wall clock) its tick last moved on; `None` during a warm-up.
    advanced: Option<Instant>,
}

/// The input partitions feeding one stage partition, and how far each has
/// come: the stage's watermark.
#[derive(Debug)]
pub struct Marks {
    marks: BTreeMap<(String, i32), Mark>,
    /// The highest input offset applied, per input partition.
    applied: BTreeMap<(String, i32), i64>,
    /// Occurrences skipped because they were applied already.
    pub duplicates: u64,
    /// Partition count of each input topic seen.
    topics: BTreeMap<String, i32>,
    /// When the stage stream started (or its warm-up ended): an input
    /// partition never heard from holds the watermark for one idle timeout
    /// from then.
    since: Instant,
    /// The watermark last applied (ticks), for the metrics.
    pub watermark: Option<i64>,
}

impl Marks {
    pub fn new(now: Instant) -> Self {
        Marks {
            marks: BTreeMap::new(),
            applied: BTreeMap::new(),
            duplicates: 0,
            topics: BTreeMap::new(),
            since: now,
            watermark: None,
        }
    }

    /// A record from input partition (`topic`, `p`) of `n` reached `hi`.
    pub fn update(&mut self, topic: &str, p: i32, n: i32, hi: i64, now: Option<Instant>) {
        let known = self.topics.entry(topic.to_string()).or_insert(n);
        *known = (*known).max(n);
        let m = self.marks.entry((topic.to_string(), p)).or_insert(Mark {
            tick: hi,
            advanced: now,
        });
        if hi > m.tick {
            m.tick = hi;
            m.advanced = now;
        }
    }

    /// The highest offset of input partition (`topic`, `p`) applied here.
    pub fn applied(&self, topic: &str, p: i32) -> Option<i64> {
        self.applied.get(&(topic.to_string(), p)).copied()
    }

    /// Offsets up to `to` of input partition (`topic`, `p`) are applied.
    pub fn set_applied(&mut self, topic: &str, p: i32, to: i64) {
        let a = self.applied.entry((topic.to_string(), p)).or_insert(to);
        *a = (*a).max(to);
    }

    /// A warm-up ended: every input partition's idle time starts now.
    pub fn restart_clock(&mut self, now: Instant) {
        self.since = now;
        for m in self.marks.values_mut() {
            m.advanced = Some(now);
        }
    }

    /// The watermark in ticks, before lateness. Without `now` (a warm-up),
    /// the lowest mark over every input partition, `None` while one has not
    /// been heard from. With `now`, input partitions whose mark has not
    /// moved for `idle` are left out (one never heard from counts from when
    /// the stage started); when every one is idle the stream is quiet, and
    /// the highest mark moves on with the wall clock since the last advance
    /// (the same rule as a quiet partition's without repartitioning).
    pub fn watermark(
        &self,
        now: Option<Instant>,
        idle: Duration,
        resolution_ns: i64,
    ) -> Option<i64> {
        let mut low: Option<i64> = None;
        let mut high: Option<(i64, Instant)> = None;
        let mut all_idle = true;
        for (topic, &n) in &self.topics {
            for p in 0..n {
                let mark = self.marks.get(&(topic.clone(), p));
                let Some(now) = now else {
                    let m = mark?;
                    low = Some(low.map_or(m.tick, |l| l.min(m.tick)));
                    all_idle = false;
                    continue;
                };
                match mark {
                    None if now.duration_since(self.since) < idle => return None,
                    None => {}
                    Some(m) => {
                        let at = m.advanced.unwrap_or(self.since);
                        if high.is_none_or(|(h, a)| m.tick > h || (m.tick == h && at > a)) {
                            high = Some((m.tick, at));
                        }
                        if now.duration_since(at) < idle {
                            all_idle = false;
                            low = Some(low.map_or(m.tick, |l| l.min(m.tick)));
                        }
                    }
                }
            }
        }
        if !all_idle {
            return low;
        }
        let (tick, at) = high?;
        let quiet = now?.duration_since(at).as_nanos() as i64;
        Some(tick + quiet / resolution_ns.max(1))
    }

    /// Input partitions heard from.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn marks(now: Instant, parts: &[(i32, i64)]) -> Marks {
        let mut m = Marks::new(now);
        for &(p, hi) in parts {
            m.update("audit", p, 4, hi, Some(now));
        }
        m
    }

    #[test]
    fn the_watermark_is_the_lowest_mark_of_every_input_partition() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(30);
        // Three of four partitions heard from: the fourth holds it.
        let mut m = marks(t0, &[(0, 100), (1, 120), (2, 90)]);
        assert_eq!(m.watermark(Some(t0), idle, S), None);
        assert_eq!(m.watermark(None, idle, S), None);
        m.update("audit", 3, 4, 110, Some(t0));
        assert_eq!(m.watermark(Some(t0), idle, S), Some(90));
        assert_eq!(m.watermark(None, idle, S), Some(90));
        // A mark never goes back.
        m.update("audit", 2, 4, 80, Some(t0));
        assert_eq!(m.watermark(Some(t0), idle, S), Some(90));
    }

    #[test]
    fn an_idle_partition_is_left_out_and_a_quiet_stream_follows_the_wall_clock() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(10);
        let mut m = marks(t0, &[(0, 100), (1, 100), (2, 100), (3, 50)]);
        let t1 = t0 + Duration::from_secs(5);
        for p in 0..3 {
            m.update("audit", p, 4, 200, Some(t1));
        }
        // Partition 3 lags: it holds the watermark back until it is idle.
        assert_eq!(m.watermark(Some(t1), idle, S), Some(50));
        let t2 = t0 + Duration::from_secs(11);
        assert_eq!(m.watermark(Some(t2), idle, S), Some(200));
        // Everything quiet for 10 s or more: the highest mark moves on with
        // the wall clock since the last advance.
        let t3 = t1 + Duration::from_secs(12);
        assert_eq!(m.watermark(Some(t3), idle, S), Some(212));
        // A partition never heard from holds it for one idle timeout.
        let mut n = marks(t0, &[(0, 100), (1, 100), (2, 100)]);
        assert_eq!(
            n.watermark(Some(t0 + Duration::from_secs(9)), idle, S),
            None
        );
        n.update("audit", 0, 4, 101, Some(t0 + Duration::from_secs(9)));
        assert_eq!(
            n.watermark(Some(t0 + Duration::from_secs(10)), idle, S),
            Some(101)
        );
    }

    #[test]
    fn rules_grouped_by_the_partition_key_stay_and_the_others_are_forwarded() {
        let rules = crate::rules::load(&crate::rules::default_sources())
            .rules
            .expect("default rules");
        let named = |key: Option<&str>| -> Vec<String> {
            let f = forwarded_rules(&rules, key);
            let mut v: Vec<String> = rules
                .rules
                .iter()
                .zip(f)
                .filter(|(_, f)| *f)
                .map(|(r, _)| r.name.clone())
                .collect();
            v.sort();
            v
        };
        let windowed = rules.rules.iter().filter(|r| r.aggregate.is_some()).count();
        let stateful = rules.rules.iter().filter(|r| r.stateful.is_some()).count();
        assert_eq!(
            named(None).len(),
            windowed + stateful,
            "nothing known: every windowed, sequence and first-seen rule"
        );
        // Keyed by user: the key-less absence rule travels (a rule by user
        // and namespace has all of a key's events in one partition), and
        // the sequences with a step not joined on the user; the first-seen
        // rules (by user, by user and user agent) stay.
        assert_eq!(
            named(Some("ka.user.name")),
            [
                "Audit Stream Silent",
                "Ephemeral Container Then Shell",
                "Requested Service Account Token Used",
                "Shell In Pod With Host Access"
            ]
        );
        let by_ns = named(Some("ka.target.namespace"));
        assert!(by_ns.contains(&"Forbidden Burst".to_string()), "{by_ns:?}");
        assert!(!by_ns.contains(&"Mass Deletion Of Workloads".to_string()));
        assert!(!by_ns.contains(&"Exec Then Events Deleted".to_string()));
        assert!(
            by_ns.contains(&"First Cluster-Wide Secret List By Identity".to_string())
                && by_ns.contains(&"Service Account Used With New Client".to_string()),
            "first-seen rules by user travel: {by_ns:?}"
        );
    }

    #[test]
    fn a_sighting_here_within_the_window_covers_a_later_event() {
        let mut s = Sightings::new(2);
        let k = |u: &str| vec![u.to_string()];
        // Window of 10 ticks; times in ns are the ticks times 100.
        assert!(!s.covered(0, &k("alice"), 5, 500, 10), "never seen");
        assert!(s.covered(0, &k("alice"), 14, 1400, 10), "5 is in (4, 14]");
        assert!(
            !s.covered(0, &k("alice"), 24, 2400, 10),
            "14 is not in (14, 24]"
        );
        // An event earlier than the latest sighting is not covered, and
        // does not move it back.
        assert!(!s.covered(0, &k("alice"), 20, 2000, 10));
        assert!(s.covered(0, &k("alice"), 30, 3000, 10), "24 is in (20, 30]");
        // The same tick, later in time: covered; rules are kept apart.
        assert!(s.covered(0, &k("alice"), 30, 3001, 10));
        assert!(!s.covered(1, &k("alice"), 30, 3002, 10));
        // Bounded: a third key lets the least recent go.
        assert!(!s.covered(0, &k("bob"), 31, 3100, 10));
        assert!(!s.covered(0, &k("carol"), 32, 3200, 10));
        assert_eq!(s.keys(), 3);
        assert!(!s.covered(0, &k("alice"), 33, 3300, 10), "alice was let go");
    }

    /// One key-less windowed rule, forwarded.
    const BUSY: &str = r#"
- rule: Busy
  desc: key-less
  condition: ka.verb = get
  aggregate: count >= 3 over 10s
  output: "%agg.value gets (%agg.state)"
  priority: WARNING
  source: k8s_audit
"#;

    /// An engine holding one stage stream's windows.
    fn stage(set: &RuleSet) -> crate::engine::Engine<'_> {
        let mut e = crate::engine::Engine::new(set, crate::engine::RuleMatching::First);
        assert_eq!(e.repartition(None, Duration::from_secs(30)), ["Busy"]);
        let mut w = e.new_windows_for(true);
        e.swap_windows(&mut w);
        e
    }

    /// Input partition `p` reached tick `hi`, with `n` matches there (at
    /// input offset `hi`).
    fn record(p: i32, hi: i64, n: usize) -> Vec<u8> {
        let e = match n {
            0 => Vec::new(),
            n => vec![("Busy".to_string(), hi, Vec::new(), None, vec![0; n])],
        };
        let r = Record {
            v: RECORD_VERSION,
            res: S,
            t: "audit".into(),
            p,
            n: 4,
            r: 0,
            lo: hi,
            hi,
            b: hi,
            e,
            s: Vec::new(),
            f: Vec::new(),
        };
        serde_json::to_vec(&r).unwrap()
    }

    /// Bursts of gets: 8 ticks of every 40, one match per input partition.
    fn busy(t: i64) -> usize {
        usize::from(t % 40 < 8)
    }

    fn lines(sink: crate::sink::stdout::StdoutSink<Vec<u8>>) -> Vec<String> {
        let text = String::from_utf8(sink.into_inner()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_rebuilt_stage_starts_at_its_committed_watermark_without_the_silent_partition() {
        use crate::sink::stdout::{Format, StdoutSink};
        let set = crate::rules::load(&[crate::rules::RuleSource::Embedded("busy.yaml", BUSY)])
            .rules
            .expect("rules");
        let t0 = Instant::now();
        let after = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut before = StdoutSink::new(Vec::new(), Format::Json);
        // Input partition 3 reaches tick 10 and falls silent; 31 s later,
        // partitions 0 to 2 bring ticks 0 to 100: partition 3 is idle, left
        // out, and the watermark follows the others.
        let mut e = stage(&set);
        e.apply_record(&record(3, 10, 0), Some(t0), Some(&mut before))
            .unwrap();
        let mut committed = None;
        for t in 0..=100 {
            for p in 0..3 {
                let progress = e
                    .apply_record(&record(p, t, busy(t)), Some(after(31.0)), Some(&mut before))
                    .unwrap();
                committed = progress.watermark_ns;
            }
        }
        assert_eq!(
            committed,
            Some(95 * S),
            "the lowest of partitions 0-2, less 5 s"
        );
        let emitted = lines(before);
        assert!(emitted.len() >= 4, "{emitted:?}");
        // A crash. The partition is rebuilt elsewhere from its records since
        // tick 40 (more than a horizon, 16 s, before the committed watermark;
        // partition 3's record is older), with the watermark committed with
        // them.
        let mut rebuilt = stage(&set);
        for t in 40..=100 {
            for p in 0..3 {
                rebuilt
                    .apply_record(&record(p, t, busy(t)), None, None)
                    .unwrap();
            }
        }
        let t1 = after(40.0);
        rebuilt.stage_warmed(t1, committed);
        // Then both see ticks 101 to 130, and the wall clock moves on until
        // partition 3, never heard from by the rebuilt one, is idle there too.
        let (mut went_on, mut restarted) = (
            StdoutSink::new(Vec::new(), Format::Json),
            StdoutSink::new(Vec::new(), Format::Json),
        );
        for t in 101..=130 {
            for p in 0..3 {
                let r = record(p, t, busy(t));
                e.apply_record(&r, Some(after(41.0)), Some(&mut went_on))
                    .unwrap();
                let waits = rebuilt
                    .apply_record(&r, Some(after(41.0)), Some(&mut restarted))
                    .unwrap();
                assert_eq!(
                    waits.watermark_ns,
                    Some(95 * S),
                    "held at the committed one"
                );
            }
        }
        let end = after(70.5);
        assert_eq!(e.stage_idle(end, &mut went_on).unwrap(), Some(125 * S));
        assert_eq!(
            rebuilt.stage_idle(end, &mut restarted).unwrap(),
            Some(125 * S)
        );
        let (want, got) = (lines(went_on), lines(restarted));
        assert!(!want.is_empty(), "the burst at tick 120 fires");
        // The burst of ticks 80-87 resolves at 97: the rebuilt windows
        // knew it from the replay.
        assert!(
            want.iter()
                .any(|l| l.contains("00:01:37") && l.contains("resolved")),
            "{want:?}"
        );
        assert_eq!(got, want, "nothing lost, nothing emitted again");
    }

    #[test]
    fn a_record_names_its_time_range() {
        let r = Record {
            v: RECORD_VERSION,
            res: S,
            t: "audit".into(),
            p: 1,
            n: 4,
            r: 0,
            lo: 10,
            hi: 20,
            b: 700,
            e: vec![(
                "Burst".into(),
                12,
                vec!["alice".into()],
                None,
                vec![0, 1, 5],
            )],
            s: Vec::new(),
            f: vec![(
                "First".into(),
                15 * S,
                vec!["bob".into()],
                Some(Seen::wire(&Rendered {
                    message: "new: bob".into(),
                    fields: vec![
                        Some(Val::Str("bob".into())),
                        None,
                        Some(Val::Num(3)),
                        Some(Val::List(vec!["a".into(), "b".into()])),
                    ],
                })),
                vec![2],
            )],
        };
        let text = serde_json::to_vec(&r).unwrap();
        assert_eq!(Record::time_range(&text), Some((10 * S, 20 * S)));
        assert_eq!(serde_json::from_slice::<Record>(&text).unwrap(), r);
        let rendered = Seen::unwire(r.f[0].3.clone().unwrap());
        assert_eq!(rendered.fields[2], Some(Val::Num(3)));
        assert_eq!(Seen::wire(&rendered), r.f[0].3.clone().unwrap());
    }
}
