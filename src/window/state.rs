//! The state of one key of a windowed rule: per-tick counters over the
//! window (never a list of events), the last-seen ticks of distinct values,
//! and where its alert stands.

use std::collections::{HashMap, VecDeque};

/// Where a key's alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AlertState {
    Inactive,
    /// `C` became true at `since`; fires at `since + for` if it holds.
    Pending {
        since: i64,
    },
    /// Fired at `since`.
    Firing {
        since: i64,
    },
}

/// Ticks at which one distinct value was seen: the latest one already
/// evaluated, and those not evaluated yet (at most the lateness apart).
#[derive(Debug, Default)]
struct Seen {
    evaluated: Option<i64>,
    pending: Vec<i64>,
}

#[derive(Debug)]
pub struct KeyState {
    /// (tick, matching events at that tick), ordered by tick; covers the
    /// window behind the last evaluated tick and every tick after it.
    counts: VecDeque<(i64, u32)>,
    /// For `distinct`: per value, where it was seen.
    values: HashMap<String, Seen>,
    /// The first tick at which this key is evaluated.
    pub first_tick: i64,
    /// The last tick at which this key was evaluated (`i64::MIN`: none yet).
    pub evaluated_to: i64,
    /// The tick of this key's entry in the evaluation queue, if any.
    pub scheduled: Option<i64>,
    pub alert: AlertState,
}

impl KeyState {
    pub fn new(first_tick: i64) -> Self {
        KeyState {
            counts: VecDeque::new(),
            values: HashMap::new(),
            first_tick,
            evaluated_to: i64::MIN,
            scheduled: None,
            alert: AlertState::Inactive,
        }
    }

    /// Whether the key has been evaluated at any tick yet.
    pub fn started(&self) -> bool {
        self.evaluated_to != i64::MIN
    }

    /// Moves the first evaluated tick earlier (only before any evaluation).
    pub fn restart(&mut self, first_tick: i64) {
        debug_assert!(!self.started());
        self.first_tick = first_tick;
    }

    /// Records a matching event at `tick`. Returns false if a new distinct
    /// value was refused because the key already holds `value_cap` values.
    pub fn add(&mut self, tick: i64, value: Option<&str>, value_cap: usize) -> bool {
        let pos = self.counts.partition_point(|(t, _)| *t < tick);
        match self.counts.get_mut(pos) {
            Some((t, n)) if *t == tick => *n = n.saturating_add(1),
            _ => self.counts.insert(pos, (tick, 1)),
        }
        let Some(v) = value else { return true };
        if !self.values.contains_key(v) {
            if self.values.len() >= value_cap {
                return false;
            }
            self.values.insert(v.to_string(), Seen::default());
        }
        let Some(seen) = self.values.get_mut(v) else {
            return true;
        };
        if tick <= self.evaluated_to {
            seen.evaluated = Some(seen.evaluated.map_or(tick, |e| e.max(tick)));
        } else if !seen.pending.contains(&tick) {
            seen.pending.push(tick);
        }
        true
    }

    /// What a rule measures at tick `t`: distinct values, or events.
    pub fn measure(&self, measure: super::Measure, t: i64, w: i64) -> u64 {
        match measure {
            super::Measure::Distinct => self.distinct(t, w),
            _ => self.count(t, w),
        }
    }

    /// Matching events with tick in `(t - w, t]`.
    pub fn count(&self, t: i64, w: i64) -> u64 {
        self.counts
            .iter()
            .skip_while(|(tick, _)| *tick <= t - w)
            .take_while(|(tick, _)| *tick <= t)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// Distinct values seen with tick in `(t - w, t]`.
    pub fn distinct(&self, t: i64, w: i64) -> u64 {
        let inside = |x: i64| x > t - w && x <= t;
        self.values
            .values()
            .filter(|s| s.evaluated.is_some_and(inside) || s.pending.iter().any(|&p| inside(p)))
            .count() as u64
    }

    /// Marks tick `t` evaluated and forgets what can no longer matter to
    /// ticks after it.
    pub fn evaluated(&mut self, t: i64, w: i64) {
        self.evaluated_to = t;
        while self.counts.front().is_some_and(|(tick, _)| *tick <= t - w) {
            self.counts.pop_front();
        }
        self.values.retain(|_, s| {
            if let Some(m) = s.pending.iter().copied().filter(|&p| p <= t).max() {
                s.evaluated = Some(s.evaluated.map_or(m, |e| e.max(m)));
                s.pending.retain(|&p| p > t);
            }
            s.evaluated.is_some_and(|e| e > t - w) || !s.pending.is_empty()
        });
    }

    /// The next tick after `t` at which the measure can change: an event
    /// tick not yet evaluated, or the tick at which something leaves the
    /// window.
    pub fn next_change(&self, t: i64, w: i64) -> Option<i64> {
        let next_event = self
            .counts
            .iter()
            .map(|(tick, _)| *tick)
            .find(|&tick| tick > t);
        let next_expiry = self
            .counts
            .iter()
            .map(|(tick, _)| *tick)
            .find(|&tick| tick > t - w && tick <= t)
            .map(|tick| tick + w);
        let value_expiry = self
            .values
            .values()
            .filter_map(|s| s.evaluated)
            .filter(|&e| e > t - w)
            .map(|e| e + w)
            .min();
        [next_event, next_expiry, value_expiry]
            .into_iter()
            .flatten()
            .filter(|&x| x > t)
            .min()
    }

    /// Whether nothing is left in the window at or after tick `t`.
    pub fn is_empty_after(&self, t: i64, w: i64) -> bool {
        self.count(t, w) == 0 && self.counts.iter().all(|(tick, _)| *tick <= t)
    }

    /// Memory the key holds: counters and values.
    pub fn size(&self) -> usize {
        self.counts.len() + self.values.len()
    }

    /// The key's state as saved in a snapshot.
    pub fn record(&self) -> KeyRecord {
        let mut values: Vec<(String, Option<i64>, Vec<i64>)> = self
            .values
            .iter()
            .map(|(v, s)| (v.clone(), s.evaluated, s.pending.clone()))
            .collect();
        // In value order, so that equal states save equal records.
        values.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        KeyRecord {
            counts: self.counts.iter().copied().collect(),
            values,
            first_tick: self.first_tick,
            evaluated_to: self.evaluated_to,
            scheduled: self.scheduled,
            alert: self.alert,
        }
    }

    /// The key's state from a snapshot; `None` if its counters are not in
    /// tick order (the evaluation relies on it).
    pub fn from_record(r: KeyRecord) -> Option<Self> {
        if r.counts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return None;
        }
        Some(KeyState {
            counts: r.counts.into(),
            values: r
                .values
                .into_iter()
                .map(|(v, evaluated, pending)| (v, Seen { evaluated, pending }))
                .collect(),
            first_tick: r.first_tick,
            evaluated_to: r.evaluated_to,
            scheduled: r.scheduled,
            alert: r.alert,
        })
    }
}

/// One key's state in a snapshot ([`KeyState::record`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    /// (tick, matching events at that tick), in tick order.
    #[serde(rename = "c")]
    pub counts: Vec<(i64, u32)>,
    /// For `distinct`: (value, latest tick evaluated, ticks not evaluated yet).
    #[serde(rename = "v", default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<(String, Option<i64>, Vec<i64>)>,
    #[serde(rename = "f")]
    pub first_tick: i64,
    #[serde(rename = "e")]
    pub evaluated_to: i64,
    #[serde(rename = "s")]
    pub scheduled: Option<i64>,
    #[serde(rename = "a")]
    pub alert: AlertState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide() {
        let mut k = KeyState::new(10);
        for t in [10, 10, 12, 15] {
            k.add(t, None, 10);
        }
        assert_eq!(k.count(10, 5), 2);
        assert_eq!(k.count(14, 5), 3);
        assert_eq!(k.count(15, 5), 2);
        assert_eq!(k.next_change(10, 5), Some(12));
        k.evaluated(15, 5);
        assert_eq!(k.count(16, 5), 2);
        assert_eq!(k.next_change(15, 5), Some(17));
    }

    #[test]
    fn distinct_with_late_and_future_values() {
        let mut k = KeyState::new(0);
        k.add(1, Some("a"), 10);
        k.add(3, Some("b"), 10);
        k.add(3, Some("a"), 10);
        assert_eq!(k.distinct(1, 5), 1);
        assert_eq!(k.distinct(3, 5), 2);
        k.evaluated(3, 5);
        k.add(2, Some("c"), 10); // late
        assert_eq!(k.distinct(4, 5), 3);
        assert_eq!(k.distinct(8, 5), 0);
        assert!(!k.add(4, Some("z"), 3), "value cap");
    }
}
