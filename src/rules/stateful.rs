//! The compiled form of stateful rules: `sequence:` (DESIGN 2.4) and
//! `aggregate: first_seen …` (DESIGN 2.5). Compiled by
//! `compile/stateful.rs`; their state lives in `crate::stateful`.

use super::predicate::{NodeId, OperandId};

/// The stateful part of a rule.
#[derive(Debug)]
pub enum StatefulRule {
    Sequence(Sequence),
    FirstSeen(FirstSeen),
}

impl StatefulRule {
    /// The tick the rule was compiled for (`--resolution`).
    pub fn resolution_ns(&self) -> u64 {
        match self {
            StatefulRule::Sequence(s) => s.resolution_ns,
            StatefulRule::FirstSeen(f) => f.resolution_ns,
        }
    }

    /// How far back in event time the rule's state depends on events.
    pub fn span_ns(&self) -> i64 {
        match self {
            StatefulRule::Sequence(s) => s.within_ns,
            StatefulRule::FirstSeen(f) => f.window * f.resolution_ns as i64,
        }
    }
}

/// A `sequence:` rule: ordered steps joined by key within a span.
#[derive(Debug)]
pub struct Sequence {
    pub within_ns: i64,
    /// `within` as written.
    pub within_text: String,
    pub resolution_ns: u64,
    pub steps: Vec<Step>,
    /// `ka.auditid`, recorded for each step's event.
    pub audit_id: OperandId,
    /// The output template; `%FIELD` of the completing event is
    /// [`SeqPart::Plain`], `%STEP.FIELD` [`SeqPart::Step`].
    pub output: Vec<SeqPart>,
    /// Field tokens of the output, as written, in order of appearance.
    pub output_fields: Vec<(String, SeqPart)>,
    /// Fields of the completing event that the output uses.
    pub plain: Vec<OperandId>,
}

/// One step of a sequence.
#[derive(Debug)]
pub struct Step {
    pub name: String,
    /// The step's condition, with the rule's condition and exceptions.
    pub node: NodeId,
    /// What an event is tried against: `node`, and for a step after the
    /// first, the first step's tests of the key's fields where this step's
    /// key reads the same field (a key that fails them never starts a
    /// partial, so an event with that key can take no part here).
    pub matches: NodeId,
    /// The `by` fields as written and their operands.
    pub by: Vec<(String, OperandId)>,
    /// Fields of this step's event that the output uses (`%STEP.FIELD`).
    pub values: Vec<OperandId>,
    /// Per value, the place in `by` of the same operand: such a value is
    /// the key's (every step of a sequence has the same key), so a hit
    /// leaves it out and the alert takes it from the key.
    pub from_key: Vec<Option<usize>>,
}

/// A piece of a sequence's output.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqPart {
    Text(String),
    /// Index into [`Sequence::plain`].
    Plain(usize),
    /// Step, and index into that step's [`Step::values`].
    Step(usize, usize),
}

/// An `aggregate: first_seen over D by F, …` rule.
#[derive(Debug)]
pub struct FirstSeen {
    /// The window in ticks.
    pub window: i64,
    pub window_text: String,
    pub resolution_ns: u64,
    /// The `by` fields as written and their operands.
    pub by: Vec<(String, OperandId)>,
}
