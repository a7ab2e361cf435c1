//! A stream's windows handed to another rule set (a reload), in memory:
//! the [`Window`] and the sequence and first-seen state of every rule kept
//! move to the rule's new index, nothing is copied, and the rules let go are
//! finished as at the end of an input. [`super::snapshot`] is the same
//! per-rule exchange through plain data, for a restart.

use super::{resolution_of, WindowOptions, Windows};
use crate::rules::RuleSet;
use crate::stateful::Outcome;
use crate::window::{Transition, Window};

/// What the rules a reload let go still produced from the events they
/// were given: indexed like the old rules, at the old tick.
#[derive(Debug, Default)]
pub struct LetGo {
    pub windowed: Vec<(usize, Transition)>,
    pub stateful: Vec<(usize, Outcome)>,
    pub resolution_ns: i64,
}

impl Windows {
    /// Replaces these windows (built for `old`) by windows for `new`: new
    /// rule `j` takes the state of old rule `kept[j]`, if any (the caller
    /// pairs rules whose fingerprint is unchanged); the other new rules
    /// start fresh. The event-time clock carries over, so a fresh rule sees
    /// the stream go on. Rules not kept are finished: returned is what
    /// they still produce.
    pub fn carry(
        &mut self,
        kept: &[Option<usize>],
        new: &RuleSet,
        options: WindowOptions,
    ) -> LetGo {
        let resolution_ns = resolution_of(new);
        let same_clock = resolution_ns == self.resolution_ns;
        let mut old = std::mem::take(&mut self.windows);
        let windows = new
            .rules
            .iter()
            .enumerate()
            .map(|(j, r)| {
                let a = r.aggregate.as_ref()?;
                let moved = kept
                    .get(j)
                    .copied()
                    .flatten()
                    .filter(|_| same_clock)
                    .and_then(|i| old.get_mut(i).and_then(Option::take));
                Some(moved.unwrap_or_else(|| Window::new(a.spec.clone(), options.limits)))
            })
            .collect();
        let mut let_go = LetGo {
            resolution_ns: self.resolution_ns,
            ..LetGo::default()
        };
        for (i, w) in old.into_iter().enumerate() {
            let Some(w) = w else { continue };
            let (transitions, stats) = w.retire(self.max_tick);
            self.retired.evictions += stats.evictions;
            self.retired.late_events += stats.late_events;
            self.retired.values_refused += stats.values_refused;
            let_go
                .windowed
                .extend(transitions.into_iter().map(|t| (i, t)));
        }
        let_go.windowed.sort_by_key(|(i, t)| (t.tick, *i));
        let stateful_kept: Vec<Option<usize>> = match same_clock {
            true => kept.to_vec(),
            false => vec![None; new.rules.len()],
        };
        let_go.stateful = self
            .stateful
            .carry(&stateful_kept, new, options.limits.max_keys);
        self.windows = windows;
        self.reindex();
        // Sightings are kept by rule index, which a reload may change: an
        // empty set only costs renderings.
        self.sightings = super::super::forward::Sightings::new(options.limits.max_keys);
        if !same_clock {
            // Only when one of the sets has no windowed or stateful rule:
            // nothing was kept, and ticks of another size start over.
            self.stateful =
                crate::stateful::Stateful::new(new, options.limits.max_keys, resolution_ns);
            self.max_tick = None;
        }
        self.resolution_ns = resolution_ns;
        self.lateness = (options.lateness_ns as i64) / resolution_ns;
        let_go
    }
}
