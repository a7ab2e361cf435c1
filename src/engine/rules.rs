//! The rule set an [`super::Engine`] runs: borrowed from the caller (tests,
//! benches, `saker test`) or shared and owned ([`Arc`]), so that a running
//! engine can be handed another set on a reload without borrowing from
//! anything that outlives it. Either way the engine reads it through
//! `Deref`, and an old set is freed once the engine and its workers let
//! go of it.

use std::ops::Deref;
use std::sync::Arc;

use crate::rules::RuleSet;

/// A rule set, borrowed or shared.
#[derive(Debug, Clone)]
pub enum Rules<'r> {
    Borrowed(&'r RuleSet),
    Shared(Arc<RuleSet>),
}

impl Deref for Rules<'_> {
    type Target = RuleSet;

    fn deref(&self) -> &RuleSet {
        match self {
            Rules::Borrowed(r) => r,
            Rules::Shared(r) => r,
        }
    }
}

impl<'r> From<&'r RuleSet> for Rules<'r> {
    fn from(r: &'r RuleSet) -> Self {
        Rules::Borrowed(r)
    }
}

impl From<Arc<RuleSet>> for Rules<'_> {
    fn from(r: Arc<RuleSet>) -> Self {
        Rules::Shared(r)
    }
}

impl From<RuleSet> for Rules<'_> {
    fn from(r: RuleSet) -> Self {
        Rules::Shared(Arc::new(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_read_the_same_set_and_a_shared_one_is_freed() {
        let set = crate::rules::load(&crate::rules::default_sources())
            .rules
            .expect("default rules");
        let n = set.rules.len();
        let borrowed = Rules::from(&set);
        assert_eq!(borrowed.rules.len(), n);
        let shared = Arc::new(
            crate::rules::load(&crate::rules::default_sources())
                .rules
                .unwrap(),
        );
        let weak = Arc::downgrade(&shared);
        let rules = Rules::from(shared);
        let copy = rules.clone();
        assert_eq!(copy.rules.len(), n);
        drop(rules);
        assert!(weak.upgrade().is_some(), "a clone still holds it");
        drop(copy);
        assert!(weak.upgrade().is_none(), "the last holder freed it");
    }
}
