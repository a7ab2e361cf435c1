//! Sequence and first-seen state as plain data, for snapshots: per rule,
//! its partials or last-seen ticks ([`RuleRecord`]) and the hits still
//! waiting for the watermark ([`WaitingRecord`], with their order
//! numbers, so they are applied in the same order after a restore).

use serde::{Deserialize, Serialize};

use super::first_seen::{FirstSeenRecord, FirstSeenState, Rendered, SeenHit};
use super::sequence::{SeqHit, SequenceRecord, SequenceState, StepHit};
use super::{Hit, Key, RuleState, StateStats, Stateful, Waiting};
use crate::fields::extract::Val;
use crate::rules::stateful::StatefulRule;
use crate::rules::RuleSet;

/// Why saved sequence or first-seen state was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("more key states than keys")]
    TooManyStates,
    #[error("an entry names key {index} of {keys}")]
    NoSuchKey { index: u32, keys: usize },
    #[error("a key holds {found} partial slots (or none used) where the rule has {steps} steps")]
    Slots { found: usize, steps: usize },
    #[error("the saved state is of a {saved} rule, the rule is a {now} rule")]
    Kind {
        saved: &'static str,
        now: &'static str,
    },
    #[error("a waiting event is for step {step} of a {steps}-step sequence")]
    Step { step: usize, steps: usize },
}

/// One stateful rule's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RuleRecord {
    Sequence(SequenceRecord),
    FirstSeen(FirstSeenRecord),
}

/// A hit waiting for the watermark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingRecord {
    pub time_ns: i64,
    pub seq: u64,
    pub hit: HitRecord,
}

/// A [`Hit`] as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HitRecord {
    Sequence {
        audit_id: Option<String>,
        /// (step, key, captured values).
        steps: Vec<(usize, Vec<String>, Vec<Option<String>>)>,
        plain: Vec<Option<String>>,
    },
    FirstSeen {
        key: Vec<String>,
        /// The alert rendered when the event was read: message and fields.
        rendered: Option<(String, Vec<Option<ValRecord>>)>,
    },
}

/// An output field's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ValRecord {
    Str(String),
    List(Vec<String>),
    Num(u64),
}

impl ValRecord {
    fn of(v: &Val<'static>) -> Self {
        match v {
            Val::Str(s) => ValRecord::Str(s.to_string()),
            Val::List(l) => ValRecord::List(l.iter().map(|s| s.to_string()).collect()),
            Val::Num(n) => ValRecord::Num(*n),
        }
    }

    fn val(self) -> Val<'static> {
        match self {
            ValRecord::Str(s) => Val::Str(s.into()),
            ValRecord::List(l) => Val::List(l.into_iter().map(Into::into).collect()),
            ValRecord::Num(n) => Val::Num(n),
        }
    }
}

impl HitRecord {
    fn of(hit: &Hit) -> Self {
        match hit {
            Hit::Sequence(h) => HitRecord::Sequence {
                audit_id: h.audit_id.clone(),
                steps: h
                    .steps
                    .iter()
                    .map(|s| (s.step, s.key.to_vec(), s.values.clone()))
                    .collect(),
                plain: h.plain.clone(),
            },
            Hit::FirstSeen(h) => HitRecord::FirstSeen {
                key: h.key.to_vec(),
                rendered: h.rendered.as_ref().map(|r| {
                    (
                        r.message.clone(),
                        r.fields
                            .iter()
                            .map(|f| f.as_ref().map(ValRecord::of))
                            .collect(),
                    )
                }),
            },
        }
    }

    fn hit(self) -> Hit {
        match self {
            HitRecord::Sequence {
                audit_id,
                steps,
                plain,
            } => Hit::Sequence(SeqHit {
                audit_id,
                steps: steps
                    .into_iter()
                    .map(|(step, key, values)| StepHit {
                        step,
                        key: Key::from(key),
                        values,
                    })
                    .collect(),
                plain,
            }),
            HitRecord::FirstSeen { key, rendered } => Hit::FirstSeen(SeenHit {
                key: Key::from(key),
                rendered: rendered.map(|(message, fields)| Rendered {
                    message,
                    fields: fields.into_iter().map(|f| f.map(ValRecord::val)).collect(),
                }),
            }),
        }
    }
}

/// The parts of the state that all stateful rules of a stream share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatefulClock {
    /// The order number of the last hit pushed.
    pub seq: u64,
    /// Every tick up to this one has been applied.
    pub applied: i64,
}

/// What [`Stateful::snapshot`] saves of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatefulRuleRecord {
    pub state: RuleRecord,
    pub waiting: Vec<WaitingRecord>,
    /// The counters already reported to the metrics.
    pub reported: StateStats,
}

impl Stateful {
    /// The shared clock, and each stateful rule's state (indexed like
    /// `RuleSet::rules`; `None` for the others).
    pub fn snapshot(&self) -> (StatefulClock, Vec<Option<StatefulRuleRecord>>) {
        let mut waiting: Vec<Vec<WaitingRecord>> = vec![Vec::new(); self.rules.len()];
        let mut all: Vec<&Waiting> = self.waiting.iter().collect();
        all.sort_unstable();
        for w in all {
            if let Some(list) = waiting.get_mut(w.rule) {
                list.push(WaitingRecord {
                    time_ns: w.time_ns,
                    seq: w.seq,
                    hit: HitRecord::of(&w.hit),
                });
            }
        }
        let rules = self
            .rules
            .iter()
            .zip(waiting)
            .zip(&self.reported)
            .map(|((r, waiting), reported)| {
                r.as_ref().map(|r| StatefulRuleRecord {
                    state: match r {
                        RuleState::Sequence(s) => RuleRecord::Sequence(s.record()),
                        RuleState::FirstSeen(f) => RuleRecord::FirstSeen(f.record()),
                    },
                    waiting,
                    reported: *reported,
                })
            })
            .collect();
        let clock = StatefulClock {
            seq: self.seq,
            applied: self.applied,
        };
        (clock, rules)
    }

    /// The state of `rules` with the saved `clock`; each stateful rule
    /// takes its entry of `saved` (indexed like `rules.rules`) or starts
    /// fresh where it is `None`.
    pub fn restore(
        rules: &RuleSet,
        max_keys: usize,
        resolution_ns: i64,
        clock: StatefulClock,
        saved: Vec<Option<StatefulRuleRecord>>,
    ) -> Result<Stateful, (usize, RecordError)> {
        let mut s = Stateful::new(rules, max_keys, resolution_ns);
        s.seq = clock.seq;
        s.applied = clock.applied;
        for (i, record) in saved.into_iter().enumerate() {
            let (Some(record), Some(rule)) = (record, rules.rules.get(i)) else {
                continue;
            };
            let state = match (&rule.stateful, record.state) {
                (Some(StatefulRule::Sequence(q)), RuleRecord::Sequence(r)) => RuleState::Sequence(
                    SequenceState::from_record(q.steps.len(), q.within_ns, max_keys, r)
                        .map_err(|e| (i, e))?,
                ),
                (Some(StatefulRule::FirstSeen(f)), RuleRecord::FirstSeen(r)) => {
                    RuleState::FirstSeen(FirstSeenState::from_record(f.window, max_keys, r))
                }
                (now, saved) => {
                    let kind = |seq: bool| if seq { "sequence" } else { "first-seen" };
                    return Err((
                        i,
                        RecordError::Kind {
                            saved: kind(matches!(saved, RuleRecord::Sequence(_))),
                            now: match now {
                                None => "stateless",
                                Some(n) => kind(matches!(n, StatefulRule::Sequence(_))),
                            },
                        },
                    ));
                }
            };
            if let (RuleState::Sequence(_), Some(StatefulRule::Sequence(q))) =
                (&state, &rule.stateful)
            {
                let steps = q.steps.len();
                for w in &record.waiting {
                    if let HitRecord::Sequence { steps: hs, .. } = &w.hit {
                        if let Some((step, _, _)) = hs.iter().find(|(step, _, _)| *step >= steps) {
                            return Err((i, RecordError::Step { step: *step, steps }));
                        }
                    }
                }
            }
            let matches_kind = |h: &HitRecord| {
                matches!(
                    (&state, h),
                    (RuleState::Sequence(_), HitRecord::Sequence { .. })
                        | (RuleState::FirstSeen(_), HitRecord::FirstSeen { .. })
                )
            };
            for w in record.waiting.into_iter().filter(|w| matches_kind(&w.hit)) {
                s.waiting.push(Waiting {
                    time_ns: w.time_ns,
                    seq: w.seq,
                    rule: i,
                    hit: w.hit.hit(),
                });
            }
            s.reported[i] = record.reported;
            s.rules[i] = Some(state);
        }
        s.unstarted = s.rules.iter().flatten().any(|r| match r {
            RuleState::FirstSeen(f) => f.first_tick.is_none(),
            RuleState::Sequence(_) => false,
        });
        Ok(s)
    }
}
