//! Rules indexed by the `ka.target.resource` values their conditions
//! require, so an event is only tried against the rules (and, for a
//! sequence, the steps) that can match it.

use std::collections::{HashMap, HashSet};

use super::predicate::{EvalCtx, OperandId, Program};
use super::stateful::StatefulRule;
use super::CompiledRule;
use crate::event::Event;
use crate::fields::extract::Val;

/// A rule to try on an event, and which of its sequence steps can match
/// it: bit `n` for step `n`; steps from the 64th on are always tried. All
/// bits are set for rules that are not sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub rule: usize,
    pub steps: u64,
}

impl Candidate {
    /// Whether step `n` of the rule can match the event.
    pub fn step(&self, n: usize) -> bool {
        n >= 64 || self.steps & (1 << n) != 0
    }
}

#[derive(Debug, Default)]
pub(super) struct RuleIndex {
    operand: Option<OperandId>,
    /// For each resource some rule requires: the rules to try, in order.
    by_resource: HashMap<String, Vec<Candidate>>,
    /// Rules to try for any other resource (or none): those that do not
    /// require a resource, with the steps that do not.
    other: Vec<Candidate>,
}

/// The resources a rule requires: one set for the rule, or one per step of
/// a sequence (`None`: any resource).
enum Required {
    Rule(Option<HashSet<String>>),
    Steps(Vec<Option<HashSet<String>>>),
}

impl Required {
    /// The steps that can match an event on `resource` (`None`: a resource
    /// no rule names, or none), as a mask; `None` if the rule cannot.
    fn mask(&self, resource: Option<&str>) -> Option<u64> {
        let fits = |set: &Option<HashSet<String>>| match (set, resource) {
            (None, _) => true,
            (Some(s), Some(r)) => s.contains(r),
            (Some(_), None) => false,
        };
        match self {
            Required::Rule(set) => fits(set).then_some(u64::MAX),
            Required::Steps(steps) => {
                let mut mask = 0u64;
                for (n, set) in steps.iter().enumerate() {
                    if fits(set) {
                        mask |= if n >= 63 { u64::MAX << 63 } else { 1 << n };
                    }
                }
                (mask != 0 || steps.len() > 64).then_some(mask)
            }
        }
    }

    fn values(&self) -> Vec<&String> {
        match self {
            Required::Rule(set) => set.iter().flatten().collect(),
            Required::Steps(steps) => steps.iter().flatten().flatten().collect(),
        }
    }
}

impl RuleIndex {
    pub(super) fn build(program: &Program, rules: &[CompiledRule]) -> Self {
        let Some(op) = program.field_operand("ka.target.resource") else {
            return RuleIndex {
                operand: None,
                by_resource: HashMap::new(),
                other: (0..rules.len())
                    .map(|rule| Candidate {
                        rule,
                        steps: u64::MAX,
                    })
                    .collect(),
            };
        };
        let required: Vec<Required> = rules
            .iter()
            .map(|r| match &r.stateful {
                Some(StatefulRule::Sequence(s)) => Required::Steps(
                    s.steps
                        .iter()
                        .map(|step| program.required_values(step.node, op))
                        .collect(),
                ),
                _ => Required::Rule(program.required_values(r.root, op)),
            })
            .collect();
        let list = |resource: Option<&str>| -> Vec<Candidate> {
            required
                .iter()
                .enumerate()
                .filter_map(|(rule, req)| req.mask(resource).map(|steps| Candidate { rule, steps }))
                .collect()
        };
        let resources: HashSet<&String> = required.iter().flat_map(Required::values).collect();
        let by_resource = resources
            .into_iter()
            .map(|r| (r.clone(), list(Some(r))))
            .collect();
        RuleIndex {
            operand: Some(op),
            by_resource,
            other: list(None),
        }
    }

    /// The rules that can match this event, in definition order.
    pub(super) fn candidates<'a>(
        &self,
        program: &Program,
        ev: &Event<'a>,
        cx: &mut EvalCtx<'a>,
    ) -> &[Candidate] {
        let Some(op) = self.operand else {
            return &self.other;
        };
        match program.value(op, ev, cx) {
            Some(Val::Str(r)) => self.by_resource.get(r.as_ref()).unwrap_or(&self.other),
            _ => &self.other,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::event::decode_document;
    use crate::rules::{load, RuleSource};

    const RULES: &str = r#"
- rule: Exec Then Wipe
  desc: d
  sequence:
    within: 10m
    steps:
      - name: exec
        condition: ka.target.resource = pods and ka.target.subresource = exec
        by: [ka.user.name]
      - name: wipe
        condition: ka.target.resource in (events, configmaps)
        by: [ka.user.name]
  output: o
  priority: WARNING
  source: k8s_audit
- rule: Any Delete
  desc: d
  condition: ka.verb = delete
  output: o
  priority: WARNING
  source: k8s_audit
- rule: Secrets Only
  desc: d
  condition: ka.target.resource = secrets
  output: o
  priority: WARNING
  source: k8s_audit
"#;

    /// (rule, steps) of the candidates for an event on `resource`.
    fn candidates(resource: Option<&str>) -> Vec<(usize, u64)> {
        let set = load(&[RuleSource::Embedded("rules.yaml", RULES)])
            .rules
            .expect("rules load");
        let object = resource.map_or(String::new(), |r| {
            format!(r#","objectRef":{{"resource":"{r}"}}"#)
        });
        let doc = format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","verb":"get"{object},"stageTimestamp":"2024-10-29T12:00:00Z"}}"#
        );
        let mut out = Vec::new();
        decode_document(
            doc.as_bytes(),
            |ev| {
                let mut cx = set.context();
                out = set
                    .candidates(&ev, &mut cx)
                    .iter()
                    .map(|c| (c.rule, c.steps))
                    .collect();
            },
            |_| {},
        );
        out
    }

    #[test]
    fn a_sequence_is_tried_with_only_the_steps_the_resource_allows() {
        assert_eq!(candidates(Some("pods")), [(0, 0b01), (1, u64::MAX)]);
        assert_eq!(candidates(Some("configmaps")), [(0, 0b10), (1, u64::MAX)]);
        assert_eq!(candidates(Some("events")), [(0, 0b10), (1, u64::MAX)]);
        assert_eq!(candidates(Some("secrets")), [(1, u64::MAX), (2, u64::MAX)]);
        assert_eq!(candidates(Some("nodes")), [(1, u64::MAX)]);
        assert_eq!(candidates(None), [(1, u64::MAX)]);
    }

    #[test]
    fn steps_past_the_mask_are_always_tried() {
        let c = super::Candidate { rule: 0, steps: 0 };
        assert!(!c.step(0) && !c.step(63) && c.step(64) && c.step(200));
    }
}
