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

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::rules::stateful::StatefulRule;
use crate::rules::RuleSet;
use crate::stateful::sequence::SeqHit;
use crate::window::Key;

/// Which windowed rules a consuming instance forwards: those whose `by`
/// fields do not include `partition_key` (all of them when no key is
/// declared; key-less rules always). Indexed like `rules.rules`.
/// Sequence rules too, unless every step's `by` includes the key;
/// first-seen rules stay in the input partition.
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
            _ => false,
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
    pub lo: Option<i64>,
    pub hi: Option<i64>,
}

impl Outbox {
    pub fn saw(&mut self, tick: i64) {
        self.lo = Some(self.lo.map_or(tick, |l| l.min(tick)));
        self.hi = Some(self.hi.map_or(tick, |h| h.max(tick)));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.hits.is_empty() && self.hi.is_none()
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
}

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
        let sequences = rules
            .rules
            .iter()
            .filter(|r| matches!(r.stateful, Some(StatefulRule::Sequence(_))))
            .count();
        assert_eq!(
            named(None).len(),
            windowed + sequences,
            "nothing known: every windowed and sequence rule"
        );
        // Keyed by user: the key-less absence rule travels (a rule by user
        // and namespace has all of a key's events in one partition), and
        // the sequences with a step not joined on the user.
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
            !by_ns.iter().any(|n| n.starts_with("First ")),
            "first-seen rules stay: {by_ns:?}"
        );
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
        };
        let text = serde_json::to_vec(&r).unwrap();
        assert_eq!(Record::time_range(&text), Some((10 * S, 20 * S)));
        assert_eq!(serde_json::from_slice::<Record>(&text).unwrap(), r);
    }
}
