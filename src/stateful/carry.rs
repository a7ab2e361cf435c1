//! The sequence and first-seen state of one stream, handed to another rule
//! set (a reload): the state of each rule kept moves over, with its waiting
//! hits, and the rules let go apply what they still hold, as at the end of
//! an input.

use super::{Outcome, RuleState, Stateful, Waiting};
use crate::rules::RuleSet;

impl Stateful {
    /// Replaces the state by one for `new`: new rule `j` takes the state
    /// (and waiting hits) of old rule `kept[j]`, if any; the others start
    /// fresh. The hits of the old rules not kept are applied now, in their
    /// order; their outcomes are returned, indexed like the old rules. The
    /// clock (what was applied, the order numbers) carries over.
    pub fn carry(
        &mut self,
        kept: &[Option<usize>],
        new: &RuleSet,
        max_keys: usize,
    ) -> Vec<(usize, Outcome)> {
        let mut fresh = Stateful::new(new, max_keys, self.resolution_ns);
        let mut moved_to: Vec<Option<usize>> = vec![None; self.rules.len()];
        for (j, old) in kept.iter().enumerate() {
            let Some(i) = *old else { continue };
            if new.rules.get(j).is_none_or(|r| r.stateful.is_none()) {
                continue;
            }
            if let Some(state) = self.rules.get_mut(i).and_then(Option::take) {
                fresh.rules[j] = Some(state);
                fresh.reported[j] = self.reported[i];
                moved_to[i] = Some(j);
            }
        }
        let mut out = Vec::new();
        // Smallest first: the kept hits go into the new queue in order, and
        // the others are applied in order.
        while let Some(w) = self.waiting.pop() {
            match moved_to.get(w.rule).copied().flatten() {
                Some(j) => fresh.waiting.push(Waiting { rule: j, ..w }),
                None => self.apply(w, &mut out),
            }
        }
        fresh.seq = self.seq;
        fresh.applied = self.applied;
        fresh.unstarted = fresh.rules.iter().flatten().any(|r| match r {
            RuleState::FirstSeen(f) => f.first_tick.is_none(),
            RuleState::Sequence(_) => false,
        });
        *self = fresh;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSource;
    use crate::stateful::first_seen::SeenHit;
    use crate::stateful::{Hit, Key};

    const RULES: &str = r#"
- rule: Seen
  desc: d
  condition: ka.verb = get
  aggregate: first_seen over 1h by ka.user.name
  output: "new %ka.user.name"
  priority: INFO
  source: k8s_audit
- rule: Other
  desc: d
  condition: ka.verb = list
  aggregate: first_seen over 1h by ka.user.name
  output: "new %ka.user.name"
  priority: INFO
  source: k8s_audit
"#;

    fn set(text: &'static str) -> RuleSet {
        let loaded = crate::rules::load(&[RuleSource::Embedded("r.yaml", text)]);
        assert!(loaded.diagnostics.iter().all(|d| !d.is_error()));
        loaded
            .rules
            .unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))
    }

    fn hit(user: &str) -> Hit {
        Hit::FirstSeen(SeenHit {
            key: Key::from(vec![user.to_string()]),
            rendered: None,
        })
    }

    #[test]
    fn kept_state_moves_to_its_new_index_and_the_rest_is_applied() {
        let old = set(RULES);
        let mut s = Stateful::new(&old, 100, 1_000_000_000);
        s.observe(0);
        // alice seen by Seen, applied; bob by Seen and carol by Other wait.
        s.push(0, 1_000_000_000, hit("alice"));
        assert!(s.release(1).is_empty(), "learning period");
        s.push(0, 3_000_000_000, hit("bob"));
        s.push(1, 4_000_000_000, hit("carol"));
        // The new set has only Seen, at index 0 still; Other is let go.
        let new = set(&RULES[..RULES.find("- rule: Other").unwrap()]);
        let applied = s.carry(&[Some(0)], &new, 100);
        assert!(applied.is_empty(), "Other was learning: {applied:?}");
        assert_eq!(s.keys(), 1, "alice kept");
        assert_eq!(s.waiting.iter().count(), 1, "bob still waits");
        assert!(!s.unstarted);
        // bob, released, is applied to the kept state.
        s.release(10);
        assert_eq!(s.keys(), 2);
    }
}
