//! Rules indexed by the `ka.target.resource` and `ka.verb` values their
//! conditions require, so an event is only tried against the rules (and,
//! for a sequence, the steps) that can match it.

use std::collections::{HashMap, HashSet};

/// The index's maps are looked up once per event each, with the event's
/// values; built once from the rules' (foldhash: see `ValueSet`).
type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

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

/// The fields an index is keyed by, in lookup order.
const KEYS: [&str; 2] = ["ka.target.resource", "ka.verb"];

#[derive(Debug, Default)]
pub(super) struct RuleIndex {
    /// The operand of each field of [`KEYS`] some rule reads (`None`: no
    /// rule reads it, so it narrows nothing).
    operands: [Option<OperandId>; 2],
    /// For each resource some rule requires, then each verb: the rules
    /// to try, in order.
    by_resource: Map<ByVerb>,
    /// For any other resource (or none).
    other: ByVerb,
}

#[derive(Debug, Default)]
struct ByVerb {
    by_verb: Map<Vec<Candidate>>,
    /// For any other verb (or none).
    other: Vec<Candidate>,
}

/// The values a condition requires of each field of [`KEYS`] (`None`: any
/// value).
type Needs = [Option<HashSet<String>>; 2];

/// What a rule requires: one [`Needs`] for the rule, or one per step of a
/// sequence.
enum Required {
    Rule(Needs),
    Steps(Vec<Needs>),
}

impl Required {
    /// The steps that can match an event with these values of [`KEYS`]
    /// (`None`: a value no rule names, or none), as a mask; `None` if the
    /// rule cannot.
    fn mask(&self, values: [Option<&str>; 2]) -> Option<u64> {
        let fits = |needs: &Needs| {
            needs
                .iter()
                .zip(values)
                .all(|(set, value)| match (set, value) {
                    (None, _) => true,
                    (Some(s), Some(v)) => s.contains(v),
                    (Some(_), None) => false,
                })
        };
        match self {
            Required::Rule(needs) => fits(needs).then_some(u64::MAX),
            Required::Steps(steps) => {
                let mut mask = 0u64;
                for (n, needs) in steps.iter().enumerate() {
                    if fits(needs) {
                        mask |= if n >= 63 { u64::MAX << 63 } else { 1 << n };
                    }
                }
                (mask != 0 || steps.len() > 64).then_some(mask)
            }
        }
    }

    /// Every value named for field `k` of [`KEYS`].
    fn values(&self, k: usize) -> Vec<&String> {
        match self {
            Required::Rule(needs) => needs[k].iter().flatten().collect(),
            Required::Steps(steps) => steps.iter().flat_map(|n| n[k].iter().flatten()).collect(),
        }
    }
}

impl RuleIndex {
    pub(super) fn build(program: &Program, rules: &[CompiledRule]) -> Self {
        let operands = KEYS.map(|k| program.field_operand(k));
        let needs = |node| operands.map(|op| op.and_then(|op| program.required_values(node, op)));
        let required: Vec<Required> = rules
            .iter()
            .map(|r| match &r.stateful {
                Some(StatefulRule::Sequence(s)) => {
                    Required::Steps(s.steps.iter().map(|step| needs(step.node)).collect())
                }
                _ => Required::Rule(needs(r.root)),
            })
            .collect();
        let list = |values: [Option<&str>; 2]| -> Vec<Candidate> {
            required
                .iter()
                .enumerate()
                .filter_map(|(rule, req)| req.mask(values).map(|steps| Candidate { rule, steps }))
                .collect()
        };
        let named =
            |k: usize| -> HashSet<&String> { required.iter().flat_map(|r| r.values(k)).collect() };
        let verbs = named(1);
        let by_verb = |resource: Option<&str>| ByVerb {
            by_verb: verbs
                .iter()
                .map(|v| ((*v).clone(), list([resource, Some(v)])))
                .collect(),
            other: list([resource, None]),
        };
        RuleIndex {
            operands,
            by_resource: named(0)
                .into_iter()
                .map(|r| (r.clone(), by_verb(Some(r))))
                .collect(),
            other: by_verb(None),
        }
    }

    /// The rules that can match this event, in definition order.
    pub(super) fn candidates<'a>(
        &self,
        program: &Program,
        ev: &Event<'a>,
        cx: &mut EvalCtx<'a>,
    ) -> &[Candidate] {
        let mut value = |k: usize| match self.operands[k].map(|op| program.value(op, ev, cx)) {
            Some(Some(Val::Str(v))) => Some(v),
            _ => None,
        };
        let by_verb = match value(0) {
            Some(r) => self.by_resource.get(r.as_ref()).unwrap_or(&self.other),
            None => &self.other,
        };
        match value(1) {
            Some(v) => by_verb.by_verb.get(v.as_ref()).unwrap_or(&by_verb.other),
            None => &by_verb.other,
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

    /// (rule, steps) of the candidates for a delete of `resource`.
    fn candidates(resource: Option<&str>) -> Vec<(usize, u64)> {
        candidates_of(resource, Some("delete"))
    }

    /// (rule, steps) of the candidates for `verb` on `resource`.
    fn candidates_of(resource: Option<&str>, verb: Option<&str>) -> Vec<(usize, u64)> {
        let set = load(&[RuleSource::Embedded("rules.yaml", RULES)])
            .rules
            .expect("rules load");
        let object = resource.map_or(String::new(), |r| {
            format!(r#","objectRef":{{"resource":"{r}"}}"#)
        });
        let verb = verb.map_or(String::new(), |v| format!(r#","verb":"{v}""#));
        let doc = format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete"{verb}{object},"stageTimestamp":"2024-10-29T12:00:00Z"}}"#
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
    fn a_rule_that_requires_a_verb_is_tried_only_on_it() {
        assert_eq!(candidates_of(Some("pods"), Some("get")), [(0, 0b01)]);
        assert_eq!(candidates_of(Some("secrets"), Some("get")), [(2, u64::MAX)]);
        assert_eq!(candidates_of(Some("nodes"), Some("get")), []);
        assert_eq!(candidates_of(Some("nodes"), None), []);
        assert_eq!(candidates_of(None, Some("delete")), [(1, u64::MAX)]);
    }

    #[test]
    fn steps_past_the_mask_are_always_tried() {
        let c = super::Candidate { rule: 0, steps: 0 };
        assert!(!c.step(0) && !c.step(63) && c.step(64) && c.step(200));
    }
}
