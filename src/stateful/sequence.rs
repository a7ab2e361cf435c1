//! One sequence rule's partial matches (DESIGN 2.4): per key, at most one
//! partial per step reached, in an LRU of keys. Events arrive here already
//! in application order (event time, then input order); times never go
//! back. A heap of start times drops partials that can no longer complete.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use lru::LruCache;

use super::snapshot::RecordError;
use super::{Key, StateStats};
use crate::window::snapshot::KeyTable;

/// What one event is in one step: its key and the output values that step
/// needs, rendered when the event was read.
#[derive(Debug, Clone, PartialEq)]
pub struct StepHit {
    pub step: usize,
    pub key: Key,
    pub values: Vec<Option<String>>,
}

/// An event's part in a sequence rule: the steps it matches (in step
/// order), detached from the event.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqHit {
    pub audit_id: Option<String>,
    pub steps: Vec<StepHit>,
    /// The completing event's own output values; filled only when the
    /// event matches the last step.
    pub plain: Vec<Option<String>>,
}

/// One step's event, as a partial match keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub time_ns: i64,
    pub audit_id: Option<String>,
    pub values: Vec<Option<String>>,
}

/// A partial match: its start (its first step's time) and its events.
#[derive(Debug, Clone)]
struct Partial {
    start: i64,
    events: Vec<StepRecord>,
}

impl Partial {
    fn last(&self) -> i64 {
        self.events.last().map_or(self.start, |e| e.time_ns)
    }
}

/// A sequence completed by an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub key: Key,
    pub time_ns: i64,
    pub steps: Vec<StepRecord>,
    pub plain: Vec<Option<String>>,
}

/// A key's partials, one slot per step but the last.
struct Slots {
    slots: Vec<Option<Partial>>,
    /// Which expiry entry is this key's current one.
    generation: u64,
}

impl Slots {
    fn min_start(&self) -> Option<i64> {
        self.slots.iter().flatten().map(|p| p.start).min()
    }
}

/// The partial matches of one sequence rule.
pub struct SequenceState {
    steps: usize,
    within_ns: i64,
    keys: LruCache<Key, Slots>,
    /// (a lower bound of a key's earliest start, generation, key).
    expiry: BinaryHeap<Reverse<(i64, u64, Key)>>,
    generation: u64,
    partials: usize,
    pub stats: StateStats,
}

impl SequenceState {
    pub fn new(steps: usize, within_ns: i64, max_keys: usize) -> Self {
        SequenceState {
            steps,
            within_ns,
            keys: crate::window::capped::lru(max_keys),
            expiry: BinaryHeap::new(),
            generation: 0,
            partials: 0,
            stats: StateStats::default(),
        }
    }

    /// Keys holding at least one partial.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Partial matches held.
    pub fn partials(&self) -> usize {
        self.partials
    }

    /// Applies one event at `time_ns`; returns the sequences it completes.
    pub fn apply(&mut self, time_ns: i64, hit: SeqHit) -> Vec<Completed> {
        self.expire(time_ns);
        let mut done = Vec::new();
        let SeqHit {
            audit_id,
            steps,
            plain,
        } = hit;
        let mut plain = Some(plain);
        let mut audit_id = Some(audit_id);
        let hits = steps.len();
        // From the last step down, so one event never moves a partial on twice.
        for (n, s) in steps.into_iter().rev().enumerate() {
            if s.step >= self.steps {
                continue;
            }
            // The last step handled takes the audit ID; the others a copy.
            let audit_id = if n + 1 == hits {
                audit_id.take().flatten()
            } else {
                audit_id.clone().flatten()
            };
            let record = StepRecord {
                time_ns,
                audit_id,
                values: s.values,
            };
            if s.step == 0 {
                self.start(s.key, time_ns, record);
            } else if let Some(c) = self.advance(s.step, s.key, time_ns, record, &mut plain) {
                done.push(c);
            }
        }
        done
    }

    fn start(&mut self, key: Key, time_ns: i64, record: StepRecord) {
        if self.steps < 2 {
            return;
        }
        if let Some(slots) = self.keys.get_mut(&key) {
            match &mut slots.slots[0] {
                // A later start replaces the partial; its vector is reused.
                Some(p) => {
                    p.start = time_ns;
                    p.events.clear();
                    p.events.push(record);
                }
                slot @ None => {
                    *slot = Some(Partial {
                        start: time_ns,
                        events: vec![record],
                    });
                    self.partials += 1;
                }
            }
            return;
        }
        let partial = Partial {
            start: time_ns,
            events: vec![record],
        };
        self.generation += 1;
        let mut slots = Slots {
            slots: vec![None; self.steps - 1],
            generation: self.generation,
        };
        slots.slots[0] = Some(partial);
        self.partials += 1;
        self.schedule(time_ns, self.generation, key.clone());
        if let Some((old, evicted)) = self.keys.push(key.clone(), slots) {
            if old != key {
                self.stats.evictions += 1;
                self.partials -= evicted.slots.iter().flatten().count();
            }
        }
    }

    fn advance(
        &mut self,
        step: usize,
        key: Key,
        time_ns: i64,
        record: StepRecord,
        plain: &mut Option<Vec<Option<String>>>,
    ) -> Option<Completed> {
        let within = self.within_ns;
        let last = step + 1 == self.steps;
        let slots = self.keys.get_mut(&key)?;
        let ok = slots.slots[step - 1]
            .as_ref()
            .is_some_and(|p| time_ns - p.start <= within && time_ns >= p.last());
        if !ok {
            return None;
        }
        let mut p = slots.slots[step - 1].take()?;
        p.events.push(record);
        let mut result = None;
        if last {
            self.partials -= 1;
            result = Some(Completed {
                key: key.clone(),
                time_ns,
                steps: p.events,
                plain: plain.take().unwrap_or_default(),
            });
        } else {
            match &slots.slots[step] {
                Some(there) if there.start > p.start => self.partials -= 1,
                Some(_) => {
                    slots.slots[step] = Some(p);
                    self.partials -= 1;
                }
                None => slots.slots[step] = Some(p),
            }
        }
        if slots.slots.iter().all(Option::is_none) {
            self.keys.pop(&key);
        }
        result
    }

    fn schedule(&mut self, start: i64, generation: u64, key: Key) {
        self.expiry.push(Reverse((start, generation, key.clone())));
        if self.expiry.len() > 2 * self.keys.len() + 64 {
            // Entries of keys evicted or emptied: rebuild from the live keys.
            self.expiry = self
                .keys
                .iter()
                .filter_map(|(k, s)| s.min_start().map(|m| Reverse((m, s.generation, k.clone()))))
                .collect();
            if !self.keys.contains(&key) {
                self.expiry.push(Reverse((start, generation, key)));
            }
        }
    }

    /// Drops every partial whose start is more than `within` before `now`.
    fn expire(&mut self, now: i64) {
        while let Some(Reverse((start, _, _))) = self.expiry.peek() {
            if now - *start <= self.within_ns {
                return;
            }
            let Some(Reverse((_, generation, key))) = self.expiry.pop() else {
                return;
            };
            let within = self.within_ns;
            let Some(slots) = self.keys.peek_mut(&key) else {
                continue;
            };
            if slots.generation != generation {
                continue;
            }
            for slot in slots.slots.iter_mut() {
                if slot.as_ref().is_some_and(|p| now - p.start > within) {
                    *slot = None;
                    self.partials -= 1;
                }
            }
            match slots.min_start() {
                Some(m) => self.expiry.push(Reverse((m, generation, key))),
                None => {
                    self.keys.pop(&key);
                }
            }
        }
    }
}

impl SequenceState {
    /// The rule's partials as plain data (keys least recently used first).
    pub fn record(&self) -> SequenceRecord {
        let mut table = KeyTable::with_capacity(self.keys.len());
        let held = self
            .keys
            .iter()
            .rev()
            .map(|(k, s)| {
                table.index(k);
                SlotsRecord {
                    generation: s.generation,
                    slots: s
                        .slots
                        .iter()
                        .map(|p| {
                            p.as_ref().map(|p| PartialRecord {
                                start: p.start,
                                events: p.events.clone(),
                            })
                        })
                        .collect(),
                }
            })
            .collect();
        // In heap order, so equal states save equal records.
        let mut entries: Vec<&(i64, u64, Key)> = self.expiry.iter().map(|Reverse(e)| e).collect();
        entries.sort_unstable();
        let expiry: Vec<(i64, u64, u32)> = entries
            .into_iter()
            .map(|(start, g, k)| (*start, *g, table.index(k)))
            .collect();
        SequenceRecord {
            keys: table.keys,
            held,
            expiry,
            generation: self.generation,
            stats: self.stats,
        }
    }

    /// A rule's partials from a snapshot ([`SequenceState::record`]).
    pub fn from_record(
        steps: usize,
        within_ns: i64,
        max_keys: usize,
        r: SequenceRecord,
    ) -> Result<Self, RecordError> {
        let mut s = SequenceState::new(steps, within_ns, max_keys);
        let n = r.keys.len();
        let keys: Vec<Key> = r.keys.into_iter().map(Key::from).collect();
        if r.held.len() > n {
            return Err(RecordError::TooManyStates);
        }
        for (i, slots) in r.held.into_iter().enumerate() {
            if slots.slots.len() + 1 != steps || slots.slots.iter().all(Option::is_none) {
                return Err(RecordError::Slots {
                    found: slots.slots.len(),
                    steps,
                });
            }
            let slots = Slots {
                generation: slots.generation,
                slots: slots
                    .slots
                    .into_iter()
                    .map(|p| {
                        p.map(|p| Partial {
                            start: p.start,
                            events: p.events,
                        })
                    })
                    .collect(),
            };
            s.partials += slots.slots.iter().flatten().count();
            if let Some((_, evicted)) = s.keys.push(keys[i].clone(), slots) {
                s.partials -= evicted.slots.iter().flatten().count();
                s.stats.evictions += 1;
            }
        }
        for (start, g, index) in r.expiry {
            let key = keys
                .get(index as usize)
                .cloned()
                .ok_or(RecordError::NoSuchKey { index, keys: n })?;
            s.expiry.push(Reverse((start, g, key)));
        }
        s.generation = r.generation;
        s.stats.evictions += r.stats.evictions;
        s.stats.late_events = r.stats.late_events;
        Ok(s)
    }
}

/// A sequence rule's partials in a snapshot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SequenceRecord {
    /// Every key named: first those held (least recently used first), then
    /// those only the expiry heap names.
    pub keys: Vec<Vec<String>>,
    /// The slots of `keys[i]`, for each key held.
    pub held: Vec<SlotsRecord>,
    /// (a lower bound of a key's earliest start, generation, index into `keys`).
    pub expiry: Vec<(i64, u64, u32)>,
    pub generation: u64,
    pub stats: StateStats,
}

/// One key's slots in a snapshot: a partial per step but the last.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlotsRecord {
    pub generation: u64,
    pub slots: Vec<Option<PartialRecord>>,
}

/// A partial match in a snapshot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartialRecord {
    pub start: i64,
    pub events: Vec<StepRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        Key::from(vec![k.to_string()])
    }

    fn hit(steps: &[usize], k: &str) -> SeqHit {
        SeqHit {
            audit_id: None,
            steps: steps
                .iter()
                .map(|&step| StepHit {
                    step,
                    key: key(k),
                    values: Vec::new(),
                })
                .collect(),
            plain: Vec::new(),
        }
    }

    #[test]
    fn steps_in_order_within_the_span_complete_once() {
        let mut s = SequenceState::new(2, 10, 100);
        assert!(s.apply(0, hit(&[0], "a")).is_empty());
        assert_eq!(s.partials(), 1);
        let done = s.apply(10, hit(&[1], "a"));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].steps.len(), 2);
        assert_eq!((s.partials(), s.keys()), (0, 0));
        assert!(s.apply(11, hit(&[1], "a")).is_empty());
    }

    #[test]
    fn partials_past_the_span_are_dropped() {
        let mut s = SequenceState::new(3, 10, 100);
        s.apply(0, hit(&[0], "a"));
        s.apply(5, hit(&[1], "a"));
        s.apply(20, hit(&[0], "b"));
        assert_eq!((s.partials(), s.keys()), (1, 1));
    }

    #[test]
    fn the_lru_evicts_and_counts() {
        let mut s = SequenceState::new(2, 1_000, 2);
        for (t, k) in ["a", "b", "c"].iter().enumerate() {
            s.apply(t as i64, hit(&[0], k));
        }
        assert_eq!(s.stats.evictions, 1);
        assert!(s.apply(5, hit(&[1], "a")).is_empty());
        assert_eq!(s.apply(5, hit(&[1], "c")).len(), 1);
    }
}
