//! One first-seen rule's state (DESIGN 2.5): the last tick each key was
//! seen, in an LRU. Events arrive in application order.

use lru::LruCache;

use super::{Key, StateStats};

/// What was rendered for an event when it was read: the alert it would
/// raise, should its key turn out to be new.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub message: String,
    pub fields: Vec<Option<crate::fields::extract::Val<'static>>>,
}

/// An event's part in a first-seen rule, detached from the event.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenHit {
    pub key: Key,
    /// `None` when the event cannot raise an alert: its key was seen
    /// within the window when it was read, or it falls in the learning
    /// period.
    pub rendered: Option<Rendered>,
}

/// A new key.
#[derive(Debug, Clone, PartialEq)]
pub struct New {
    pub key: Key,
    pub time_ns: i64,
    /// The key's last-seen tick, from before the window (evicted keys and
    /// keys never seen have none).
    pub previous: Option<i64>,
    pub rendered: Rendered,
}

/// Last-seen ticks of one first-seen rule.
pub struct FirstSeenState {
    /// The window in ticks.
    window: i64,
    keys: LruCache<Key, i64>,
    /// The tick of the first event the rule's state saw (matching or not):
    /// the learning period starts there.
    pub first_tick: Option<i64>,
    pub stats: StateStats,
}

impl FirstSeenState {
    pub fn new(window: i64, max_keys: usize) -> Self {
        FirstSeenState {
            window,
            keys: crate::window::capped::lru(max_keys),
            first_tick: None,
            stats: StateStats::default(),
        }
    }

    /// The rule's last-seen ticks as plain data (least recently used first).
    pub fn record(&self) -> FirstSeenRecord {
        FirstSeenRecord {
            keys: self
                .keys
                .iter()
                .rev()
                .map(|(k, t)| (k.to_vec(), *t))
                .collect(),
            first_tick: self.first_tick,
            stats: self.stats,
        }
    }

    /// A rule's state from a snapshot ([`FirstSeenState::record`]).
    pub fn from_record(window: i64, max_keys: usize, r: FirstSeenRecord) -> Self {
        let mut s = FirstSeenState::new(window, max_keys);
        for (k, t) in r.keys {
            if s.keys.push(Key::from(k), t).is_some() {
                s.stats.evictions += 1;
            }
        }
        s.first_tick = r.first_tick;
        s.stats.evictions += r.stats.evictions;
        s.stats.late_events = r.stats.late_events;
        s
    }

    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Whether `tick` is in the learning period of a stream whose first
    /// tick is `first`.
    pub fn learning(&self, tick: i64, first: i64) -> bool {
        tick < first.saturating_add(self.window)
    }

    /// If `key` was seen within the window before `tick`, moves its
    /// last-seen tick up to `tick` and returns true: an event that can be
    /// neither new nor make another event new, applied at once.
    pub fn touch_if_recent(&mut self, key: &[String], tick: i64) -> bool {
        match self.keys.get_mut(key) {
            Some(last) if *last > tick - self.window => {
                *last = (*last).max(tick);
                true
            }
            _ => false,
        }
    }

    /// Applies an event; `first` is the stream's first tick.
    pub fn apply(&mut self, tick: i64, time_ns: i64, hit: SeenHit, first: i64) -> Option<New> {
        let learning = self.learning(tick, first);
        // One lookup for a key already held (most events), which also
        // makes it the most recently used.
        let previous = match self.keys.get_mut(&hit.key) {
            // A later sighting may have been applied ahead of this event
            // (`touch_if_recent`): the last-seen tick never goes back.
            Some(last) => Some(std::mem::replace(last, (*last).max(tick))),
            None => {
                if self.keys.push(hit.key.clone(), tick).is_some() {
                    self.stats.evictions += 1;
                }
                None
            }
        };
        let recent = previous.is_some_and(|l| l > tick - self.window);
        if learning || recent {
            return None;
        }
        // Without a rendering, the key was recent when the event was read
        // and has been evicted since: it is not new.
        let rendered = hit.rendered?;
        Some(New {
            key: hit.key,
            time_ns,
            previous,
            rendered,
        })
    }
}

/// A first-seen rule's state in a snapshot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FirstSeenRecord {
    /// (key, last-seen tick), least recently used first.
    pub keys: Vec<(Vec<String>, i64)>,
    pub first_tick: Option<i64>,
    pub stats: StateStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(k: &str) -> SeenHit {
        SeenHit {
            key: Key::from(vec![k.to_string()]),
            rendered: Some(Rendered {
                message: k.to_string(),
                fields: Vec::new(),
            }),
        }
    }

    #[test]
    fn new_only_outside_the_window_and_after_learning() {
        let mut s = FirstSeenState::new(10, 100);
        assert!(s.apply(0, 0, hit("a"), 0).is_none(), "learning");
        assert!(s.apply(10, 0, hit("b"), 0).is_some());
        assert!(s.apply(19, 0, hit("b"), 0).is_none(), "seen at 10");
        let new = s.apply(29, 0, hit("b"), 0).expect("10 is out of (19, 29]");
        assert_eq!(new.previous, Some(19));
    }

    #[test]
    fn touch_if_recent_agrees_with_apply() {
        let mut s = FirstSeenState::new(10, 100);
        s.apply(12, 0, hit("a"), 0);
        let k = hit("a").key;
        assert!(!s.touch_if_recent(&k, 22), "12 is not in (12, 22]");
        assert!(s.touch_if_recent(&k, 21), "12 is in (11, 21]");
        // The sighting moved to 21: 30 is within its window, 31 is not.
        assert!(s.touch_if_recent(&k, 30));
        assert!(!s.touch_if_recent(&k, 40));
        assert!(!s.touch_if_recent(&hit("z").key, 9), "never seen");
        assert!(s.learning(9, 0) && !s.learning(10, 0));
        // What apply says of the same key agrees: seen at 30, so not new
        // at 39; seen at 39, so not new at 48, and new at 58.
        assert!(s.apply(39, 0, hit("a"), 0).is_none(), "30 is in (29, 39]");
        assert!(s.apply(48, 0, hit("a"), 0).is_none(), "39 is in (38, 48]");
        assert!(
            s.apply(58, 0, hit("a"), 0).is_some(),
            "48 is not in (48, 58]"
        );
    }
}
