//! A window's state as plain data, for snapshots ([`Window::snapshot`],
//! [`Window::restore`]): every key (least recently used first, so the LRU
//! order comes back), its counters, distinct values and alert state, the
//! evaluation queue (with its order numbers, so keys due at one tick are
//! evaluated in the same order), the frontier, the stream start, pending
//! resolves of evicted keys and the counters. Field names are short: a
//! large state holds one record per key.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::state::{KeyRecord, KeyState};
use super::{Key, Limits, Spec, Transition, Window, WindowStats};

/// A window's state ([`Window::snapshot`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    /// Every key the state refers to: first the keys held, least recently
    /// used first, then keys that only the queue or a pending resolve
    /// names.
    pub keys: Vec<Vec<String>>,
    /// The state of `keys[i]`, for each key held.
    pub held: Vec<KeyRecord>,
    /// The evaluation queue: (tick, order, index into `keys`).
    pub queue: Vec<(i64, u64, u32)>,
    pub seq: u64,
    pub frontier: i64,
    pub stream_start: Option<i64>,
    /// Resolves of evicted firing keys not yet returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evicted: Vec<TransitionRecord>,
    pub stats: WindowStats,
}

/// A [`Transition`] in a snapshot (its key an index into the keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionRecord {
    pub tick: i64,
    pub key: u32,
    pub firing: bool,
    pub value: f64,
    pub since: i64,
}

/// Why a window's saved state was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowRecordError {
    #[error("more key states ({held}) than keys ({keys})")]
    TooManyStates { held: usize, keys: usize },
    #[error("a queue entry or resolve names key {index} of {keys}")]
    NoSuchKey { index: u32, keys: usize },
    #[error("the counters of a key are not in tick order")]
    Unordered,
}

/// Interns keys into a table, so heaps name them by index. Keys are told
/// apart by their allocation: a queue entry shares its key's `Arc` with
/// the key held, and comparing pointers is much cheaper than hashing the
/// values (two equal keys in two allocations just appear twice).
pub(crate) struct KeyTable {
    pub keys: Vec<Vec<String>>,
    index: std::collections::HashMap<usize, u32>,
}

impl KeyTable {
    pub fn with_capacity(n: usize) -> Self {
        KeyTable {
            keys: Vec::with_capacity(n),
            index: std::collections::HashMap::with_capacity(n),
        }
    }

    pub fn index(&mut self, key: &Key) -> u32 {
        let at = Arc::as_ptr(key) as *const String as usize;
        let next = self.keys.len() as u32;
        let i = *self.index.entry(at).or_insert(next);
        if i == next {
            self.keys.push(key.to_vec());
        }
        i
    }
}

impl Window {
    /// The window's whole state, as plain data.
    pub fn snapshot(&self) -> WindowRecord {
        let mut table = KeyTable::with_capacity(self.keys.len() + self.queue.len());
        let mut held = Vec::with_capacity(self.keys.len());
        // `iter` goes from the most recently used: save the other way round.
        for (key, state) in self.keys.iter().rev() {
            table.index(key);
            held.push(state.record());
        }
        // In queue order (tick and order number are unique), so that keys
        // only the queue names get the same indexes whatever the heap's
        // layout: equal states save equal records.
        let mut entries: Vec<&(i64, u64, Key)> = self.queue.iter().map(|Reverse(e)| e).collect();
        entries.sort_unstable_by_key(|(tick, seq, _)| (*tick, *seq));
        let queue: Vec<(i64, u64, u32)> = entries
            .into_iter()
            .map(|(tick, seq, key)| (*tick, *seq, table.index(key)))
            .collect();
        let evicted = self
            .evicted
            .iter()
            .map(|t| TransitionRecord {
                tick: t.tick,
                key: table.index(&t.key),
                firing: t.firing,
                value: t.value,
                since: t.since,
            })
            .collect();
        WindowRecord {
            keys: table.keys,
            held,
            queue,
            seq: self.seq,
            frontier: self.frontier,
            stream_start: self.stream_start,
            evicted,
            stats: self.stats,
        }
    }

    /// A window of rule `spec` with the state `record` saved. The key cap
    /// is `limits`' (keys beyond a lowered cap are evicted, least recently
    /// used first, and counted).
    pub fn restore(
        spec: Spec,
        limits: Limits,
        record: WindowRecord,
    ) -> Result<Window, WindowRecordError> {
        let WindowRecord {
            keys,
            held,
            queue,
            seq,
            frontier,
            stream_start,
            evicted,
            stats,
        } = record;
        let n = keys.len();
        if held.len() > n {
            return Err(WindowRecordError::TooManyStates {
                held: held.len(),
                keys: n,
            });
        }
        let keys: Vec<Key> = keys.into_iter().map(Arc::from).collect();
        let key = |index: u32| {
            keys.get(index as usize)
                .cloned()
                .ok_or(WindowRecordError::NoSuchKey { index, keys: n })
        };
        let mut w = Window::new(spec, limits);
        w.seq = seq;
        w.frontier = frontier;
        w.stream_start = stream_start;
        w.stats = stats;
        for (i, r) in held.into_iter().enumerate() {
            let state = KeyState::from_record(r).ok_or(WindowRecordError::Unordered)?;
            if let Some((old, state)) = w.keys.push(keys[i].clone(), state) {
                // As in `add`: a firing alert whose key goes resolves.
                w.resolve_evicted(old, state);
            }
        }
        let mut heap = Vec::with_capacity(queue.len());
        for (tick, seq, index) in queue {
            heap.push(Reverse((tick, seq, key(index)?)));
        }
        w.queue = BinaryHeap::from(heap);
        for t in evicted {
            w.evicted.push(Transition {
                tick: t.tick,
                key: key(t.key)?,
                firing: t.firing,
                value: t.value,
                since: t.since,
            });
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cmp, Measure, Threshold};
    use super::*;

    fn spec(measure: Measure) -> Spec {
        Spec {
            measure,
            cmp: Cmp::Ge,
            threshold: Threshold::parse("3").unwrap(),
            window: 10,
            hold: 2,
            keyed: true,
            resolution_ns: 1_000_000_000,
        }
    }

    fn key(s: &str) -> Key {
        Arc::from(vec![s.to_string()])
    }

    fn limits(max_keys: usize) -> Limits {
        Limits {
            max_keys,
            max_values_per_key: 100,
        }
    }

    /// Feeds `events` (tick, key, value) with a lateness of 3; returns
    /// the transitions as (tick, key, firing).
    fn feed(w: &mut Window, events: &[(i64, &str, &str)]) -> Vec<(i64, String, bool)> {
        let mut out = Vec::new();
        for (t, k, v) in events {
            w.add(*t, key(k), Some(v));
            out.extend(w.advance(t - 3, None));
        }
        out.into_iter()
            .map(|t| (t.tick, t.key[0].clone(), t.firing))
            .collect()
    }

    #[test]
    fn a_restored_window_goes_on_exactly_as_the_original() {
        let first: Vec<(i64, &str, &str)> = (0..30)
            .map(|i| {
                (
                    100 + i / 2,
                    ["a", "b", "c"][i as usize % 3],
                    ["x", "y", "z", "w"][i as usize % 4],
                )
            })
            .collect();
        let rest: Vec<(i64, &str, &str)> = (0..30)
            .map(|i| {
                (
                    115 + i,
                    ["a", "b", "d"][i as usize % 3],
                    ["x", "q"][i as usize % 2],
                )
            })
            .collect();
        for measure in [Measure::Count, Measure::Distinct] {
            let mut original = Window::new(spec(measure), limits(100));
            feed(&mut original, &first);
            let record = original.snapshot();
            let json = serde_json::to_string(&record).unwrap();
            let back: WindowRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(back, record);
            let mut restored = Window::restore(spec(measure), limits(100), back).unwrap();
            assert_eq!(
                restored.snapshot(),
                record,
                "a snapshot of the restored window is the same"
            );
            let a = feed(&mut original, &rest);
            let b = feed(&mut restored, &rest);
            assert!(!a.is_empty());
            assert_eq!(a, b);
            let end = |w: &mut Window| w.advance(i64::MAX, None).len();
            assert_eq!(end(&mut original), end(&mut restored));
        }
    }

    #[test]
    fn the_lru_order_survives_and_a_lower_cap_evicts_the_oldest() {
        let mut w = Window::new(spec(Measure::Count), limits(100));
        feed(
            &mut w,
            &[(1, "a", ""), (2, "b", ""), (3, "c", ""), (4, "a", "")],
        );
        let record = w.snapshot();
        assert_eq!(
            record.keys[..3],
            [vec!["b".to_string()], vec!["c".into()], vec!["a".into()]]
        );
        let r = Window::restore(spec(Measure::Count), limits(2), record).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.stats.evictions, 1);
        assert!(r.keys.peek(&key("b")).is_none());
    }

    #[test]
    fn broken_records_are_refused_not_trusted() {
        let mut w = Window::new(spec(Measure::Count), limits(100));
        feed(&mut w, &[(1, "a", ""), (2, "b", "")]);
        let good = w.snapshot();
        let mut bad = good.clone();
        bad.queue.push((5, 99, 40));
        assert!(matches!(
            Window::restore(spec(Measure::Count), limits(10), bad),
            Err(WindowRecordError::NoSuchKey { index: 40, .. })
        ));
        let mut bad = good.clone();
        bad.held[0].counts = vec![(5, 1), (4, 1)];
        assert_eq!(
            Window::restore(spec(Measure::Count), limits(10), bad).err(),
            Some(WindowRecordError::Unordered)
        );
        let mut bad = good;
        bad.held.extend(bad.held.clone());
        assert!(Window::restore(spec(Measure::Count), limits(10), bad).is_err());
    }
}
