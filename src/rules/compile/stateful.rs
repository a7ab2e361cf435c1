//! Compiles the stateful parts of rules: a `sequence:` (its steps' conditions
//! with the rule's condition and exceptions, their `by` keys, its output with
//! `%STEP.FIELD`) and an `aggregate: first_seen …` clause.

use super::super::ast::{FieldRef, Operand};
use super::super::first_seen;
use super::super::loader::{RuleDef, SequenceDef, StepDef, Text};
use super::super::parser::{parse_condition, parse_output, OutputPiece};
use super::super::predicate::{Node, NodeId, OperandId, OperandProg};
use super::super::stateful::{FirstSeen, SeqPart, Sequence, Step};
use super::{Compiler, Ctx, Errors};
use crate::diag::{did_you_mean, Code};
use crate::fields;
use crate::window::spec::{format_duration, parse_duration};

impl Compiler<'_> {
    /// Compiles `aggregate: first_seen …`.
    pub(super) fn first_seen(&mut self, def: &RuleDef, text: &Text) -> Result<FirstSeen, Errors> {
        let ctx = Ctx {
            text,
            owner: format!("the aggregate of rule `{}`", def.name),
        };
        let res = self.options.resolution_ns;
        let clause = first_seen::parse(&text.text, res).map_err(|errs| {
            errs.into_iter()
                .map(|e| ctx.err(Code::FirstSeen, e.message, e.span).help_opt(e.help))
                .collect::<Vec<_>>()
        })?;
        let by: Vec<Operand> = clause.by.iter().cloned().map(Operand::Field).collect();
        let by = self.key_fields(&by, &ctx, Code::Aggregate)?;
        Ok(FirstSeen {
            window: (clause.window_ns / res.max(1)) as i64,
            window_text: clause.window_text,
            resolution_ns: res,
            by,
        })
    }

    /// Scalar fields of a key, as written and compiled; a list field is an
    /// error with `code`.
    fn key_fields(
        &mut self,
        by: &[Operand],
        ctx: &Ctx,
        code: Code,
    ) -> Result<Vec<(String, OperandId)>, Errors> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for f in by {
            let span = f.span();
            let written = &ctx.text.text[span.0..span.1];
            match self.operand(f, ctx) {
                Ok((_, true)) => errors.push(
                    ctx.err(
                        code,
                        format!(
                            "`by` field `{written}` is a list field; a key needs a single value"
                        ),
                        span,
                    )
                    .help("use a scalar field, or an element such as `field[0]`"),
                ),
                Ok((id, false)) => out.push((written.to_string(), id)),
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// Compiles a `sequence:`; `common` holds the rule's condition and
    /// exceptions, which every step must also match.
    pub(super) fn sequence(
        &mut self,
        def: &RuleDef,
        seq: &SequenceDef,
        common: &[NodeId],
    ) -> Result<Sequence, Errors> {
        let mut errors = Vec::new();
        let within_ns = seq
            .within
            .as_ref()
            .map(|w| self.within(def, w, &mut errors))
            .unwrap_or(0);
        let mut steps = Vec::new();
        for s in &seq.steps {
            match self.step(def, s, common) {
                Ok(step) => steps.push(step),
                Err(e) => {
                    errors.extend(e);
                    // A stand-in, so that the output is still checked
                    // against every step's name.
                    let node = self.program.push_node(Node::And(Vec::new()));
                    steps.push(Step {
                        name: s.name.clone(),
                        node,
                        matches: node,
                        by: Vec::new(),
                        values: Vec::new(),
                        from_key: Vec::new(),
                    });
                }
            }
        }
        if let Some(first) = seq.steps.first() {
            for s in &seq.steps[1..] {
                if s.by.len() != first.by.len() {
                    errors.push(
                        s.by_loc
                            .diag(
                                crate::diag::Diagnostic::error(
                                    Code::SequenceKey,
                                    format!(
                                        "step `{}` of rule `{}` has {} `by` field(s), step `{}` has {}",
                                        s.name,
                                        def.name,
                                        s.by.len(),
                                        first.name,
                                        first.by.len()
                                    ),
                                ),
                                1,
                            )
                            .label(format!("{} here", s.by.len()))
                            .help("every step's key is the tuple of its `by` values; the tuples must line up"),
                    );
                }
            }
        }
        if errors.is_empty() {
            self.narrow_by_first_step(&mut steps);
        }
        let audit = fields::lookup("ka.auditid").expect("the catalog has ka.auditid");
        let audit_id = self.program.push_operand(OperandProg::Field(
            audit,
            audit.check_arg(None).unwrap_or(fields::Arg::None),
        ));
        let mut sequence = Sequence {
            within_ns,
            within_text: seq
                .within
                .as_ref()
                .map(|w| w.text.trim().to_string())
                .unwrap_or_default(),
            resolution_ns: self.options.resolution_ns,
            steps,
            audit_id,
            output: Vec::new(),
            output_fields: Vec::new(),
            plain: Vec::new(),
        };
        if let Err(e) = self.sequence_output(def, &mut sequence) {
            errors.extend(e);
        }
        for step in &mut sequence.steps {
            step.from_key = step
                .values
                .iter()
                .map(|op| step.by.iter().position(|(_, b)| b == op))
                .collect();
        }
        if errors.is_empty() {
            Ok(sequence)
        } else {
            Err(errors)
        }
    }

    /// Sets each later step's [`Step::matches`]: its condition and those
    /// tests of the first step's condition (its top-level `and`s) that read
    /// only key fields this step reads at the same place of its `by`.
    ///
    /// Why this changes no alert: every key a sequence holds was started
    /// by a first-step event, whose key values passed those tests. A field
    /// (not a transform) yields text, and a key is compared as text, so an
    /// event whose same field fails them has a key the state never holds:
    /// applying it would find nothing and touch nothing (not even the
    /// keys' LRU order). What it does change: such an event is not counted
    /// as late for the rule, since it could never have taken part.
    fn narrow_by_first_step(&mut self, steps: &mut [Step]) {
        let Some((first, rest)) = steps.split_first_mut() else {
            return;
        };
        let mut tests = Vec::new();
        self.program.conjuncts(first.node, &mut tests);
        for step in rest {
            if step.by.len() != first.by.len() {
                continue;
            }
            let shared: Vec<OperandId> = first
                .by
                .iter()
                .zip(&step.by)
                .filter(|((_, a), (_, b))| {
                    a == b && matches!(self.program.operands[*a as usize], OperandProg::Field(..))
                })
                .map(|((_, a), _)| *a)
                .collect();
            // Tests the step has already (the rule's own condition and
            // exceptions are in every step) are not evaluated twice.
            let mut own = Vec::new();
            self.program.conjuncts(step.node, &mut own);
            let implied: Vec<NodeId> = tests
                .iter()
                .copied()
                .filter(|&t| !own.contains(&t) && self.program.reads_only(t, &shared))
                .collect();
            if !implied.is_empty() {
                let mut items = vec![step.node];
                items.extend(implied);
                step.matches = self.program.push_node(Node::And(items));
            }
        }
    }

    fn within(&self, def: &RuleDef, w: &Text, errors: &mut Errors) -> i64 {
        let ctx = Ctx {
            text: w,
            owner: format!("the sequence of rule `{}`", def.name),
        };
        let text = w.text.trim();
        let span = (0, w.text.len().max(1));
        let res = self.options.resolution_ns;
        match parse_duration(text) {
            Some(ns) if ns > 0 && (res == 0 || ns % res == 0) => ns as i64,
            Some(0) => {
                errors.push(ctx.err(
                    Code::Sequence,
                    "`within` must be longer than zero".into(),
                    span,
                ));
                0
            }
            Some(_) => {
                errors.push(
                    ctx.err(
                        Code::Sequence,
                        format!(
                            "`within` {text} is not a whole number of ticks of the resolution ({})",
                            format_duration(res)
                        ),
                        span,
                    )
                    .help("change the duration or --resolution"),
                );
                0
            }
            None => {
                errors.push(
                    ctx.err(
                        Code::Sequence,
                        format!("`within` `{text}` is not a duration"),
                        span,
                    )
                    .help("write e.g. 30s, 10m, 1h30m"),
                );
                0
            }
        }
    }

    fn step(&mut self, def: &RuleDef, s: &StepDef, common: &[NodeId]) -> Result<Step, Errors> {
        let ctx = Ctx {
            text: &s.condition,
            owner: format!("step `{}` of rule `{}`", s.name, def.name),
        };
        let mut errors = Vec::new();
        let node = match parse_condition(&s.condition.text) {
            Ok(expr) => self.expr(&expr, &ctx).map_err(|e| errors.extend(e)).ok(),
            Err(e) => {
                errors.push(
                    ctx.err(Code::Syntax, e.message, e.span)
                        .label(format!("expected {}", e.expected)),
                );
                None
            }
        };
        let mut by = Vec::new();
        for t in &s.by {
            let ctx = Ctx {
                text: t,
                owner: format!("the `by` of step `{}` of rule `{}`", s.name, def.name),
            };
            match by_field(t) {
                Some(f) => match self.key_fields(&[f], &ctx, Code::SequenceKey) {
                    Ok(mut k) => by.append(&mut k),
                    Err(e) => errors.extend(e),
                },
                None => errors.push(ctx.err(
                    Code::SequenceKey,
                    format!("`{}` is not a field", t.text),
                    (0, t.text.len().max(1)),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let node = node.expect("no errors");
        let node = if common.is_empty() {
            node
        } else {
            let mut items = vec![node];
            items.extend_from_slice(common);
            self.program.push_node(Node::And(items))
        };
        Ok(Step {
            name: s.name.clone(),
            node,
            matches: node,
            by,
            values: Vec::new(),
            from_key: Vec::new(),
        })
    }

    /// The output of a sequence: `%FIELD` of the completing event, and
    /// `%STEP.FIELD` of a step's event.
    fn sequence_output(&mut self, def: &RuleDef, seq: &mut Sequence) -> Result<(), Errors> {
        let ctx = Ctx {
            text: &def.output,
            owner: format!("the output of rule `{}`", def.name),
        };
        let pieces = parse_output(&def.output.text)
            .map_err(|e| vec![ctx.err(Code::Output, e.message, e.span)])?;
        let names: Vec<String> = seq.steps.iter().map(|s| s.name.clone()).collect();
        // Operands already compiled, by name as written: plain, and per step.
        let mut plain_names: Vec<String> = Vec::new();
        let mut step_names: Vec<Vec<String>> = vec![Vec::new(); seq.steps.len()];
        let mut errors = Vec::new();
        for p in pieces {
            let op = match p {
                OutputPiece::Text(t) => {
                    seq.output.push(SeqPart::Text(t));
                    continue;
                }
                OutputPiece::Token(op) => op,
            };
            let span = op.span();
            let written = def.output.text[span.0..span.1].to_string();
            let part = match split_step(&op, &names) {
                Split::Plain => {
                    let i = match plain_names.iter().position(|n| *n == written) {
                        Some(i) => i,
                        None => match self.operand(&op, &ctx) {
                            Ok((id, _)) => {
                                seq.plain.push(id);
                                plain_names.push(written.clone());
                                seq.plain.len() - 1
                            }
                            Err(e) => {
                                errors.extend(e);
                                continue;
                            }
                        },
                    };
                    SeqPart::Plain(i)
                }
                Split::Step(step, stripped) => {
                    let i = match step_names[step].iter().position(|n| *n == written) {
                        Some(i) => i,
                        None => match self.operand(&stripped, &ctx) {
                            Ok((id, _)) => {
                                seq.steps[step].values.push(id);
                                step_names[step].push(written.clone());
                                seq.steps[step].values.len() - 1
                            }
                            Err(e) => {
                                errors.extend(e);
                                continue;
                            }
                        },
                    };
                    SeqPart::Step(step, i)
                }
                Split::UnknownStep(prefix, pspan) => {
                    errors.push(
                        ctx.err(
                            Code::StepField,
                            format!("`%{written}`: rule `{}` has no step `{prefix}`", def.name),
                            pspan,
                        )
                        .label("not a step name")
                        .help(
                            did_you_mean(&prefix, names.iter().map(String::as_str))
                                .unwrap_or_else(|| format!("its steps: {}", names.join(", "))),
                        ),
                    );
                    continue;
                }
                Split::Mixed(mspan) => {
                    errors.push(ctx.err(
                        Code::StepField,
                        format!("`%{written}` mixes fields of different steps"),
                        mspan,
                    ));
                    continue;
                }
            };
            if !seq.output_fields.iter().any(|(n, _)| *n == written) {
                seq.output_fields.push((written, part.clone()));
            }
            seq.output.push(part);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Moves an operand parsed behind a `%` back by one byte.
fn shift(op: &mut Operand) {
    match op {
        Operand::Field(f) => f.span = (f.span.0 - 1, f.span.1 - 1),
        Operand::Literal(_, s) => *s = (s.0 - 1, s.1 - 1),
        Operand::Transform(t) => {
            t.span = (t.span.0 - 1, t.span.1 - 1);
            t.args.iter_mut().for_each(shift);
        }
    }
}

/// A `by` entry parsed as one field (`ka.user.name`, `field[arg]`) or a
/// transformer of fields (`concat("system:serviceaccount:", ka.target.namespace, ":", ka.target.name)`).
fn by_field(t: &Text) -> Option<Operand> {
    let pieces = parse_output(&format!("%{}", t.text)).ok()?;
    match pieces.as_slice() {
        [OutputPiece::Token(op)] if op.span().1 == t.text.len() + 1 => {
            let mut op = op.clone();
            shift(&mut op);
            Some(op)
        }
        _ => None,
    }
}

enum Split {
    Plain,
    /// The step and the token without its `STEP.` prefixes.
    Step(usize, Operand),
    UnknownStep(String, (usize, usize)),
    Mixed((usize, usize)),
}

/// Whether an output token is `%STEP.FIELD` (also inside a transformer).
fn split_step(op: &Operand, steps: &[String]) -> Split {
    let mut found: Option<usize> = None;
    let mut problem = None;
    let stripped = strip(op, steps, &mut found, &mut problem);
    match (problem, found) {
        (Some(p), _) => p,
        (None, Some(step)) => Split::Step(step, stripped),
        (None, None) => Split::Plain,
    }
}

fn strip(
    op: &Operand,
    steps: &[String],
    found: &mut Option<usize>,
    problem: &mut Option<Split>,
) -> Operand {
    match op {
        Operand::Field(f) => {
            if fields::lookup(&f.name).is_some() {
                return op.clone();
            }
            let Some((prefix, rest)) = f.name.split_once('.') else {
                return op.clone();
            };
            let pspan = (f.span.0, f.span.0 + prefix.len());
            match steps.iter().position(|s| s == prefix) {
                Some(i) => {
                    if found.is_some_and(|j| j != i) {
                        *problem = Some(Split::Mixed(f.span));
                    }
                    *found = Some(i);
                    Operand::Field(FieldRef {
                        name: rest.to_string(),
                        arg: f.arg.clone(),
                        span: (pspan.1 + 1, f.span.1),
                    })
                }
                None if fields::lookup(rest).is_some() && !matches!(prefix, "ka" | "jevt") => {
                    *problem = Some(Split::UnknownStep(prefix.to_string(), pspan));
                    op.clone()
                }
                None => op.clone(),
            }
        }
        Operand::Transform(t) => {
            let mut t = t.clone();
            t.args = t
                .args
                .iter()
                .map(|a| strip(a, steps, found, problem))
                .collect();
            Operand::Transform(t)
        }
        Operand::Literal(..) => op.clone(),
    }
}

#[cfg(test)]
mod tests {
    use crate::event::decode_document;
    use crate::rules::stateful::StatefulRule;
    use crate::rules::{load, RuleSet, RuleSource};

    const RULES: &str = r#"
- rule: Same Key Field
  desc: d
  sequence:
    within: 10m
    steps:
      - name: grant
        condition: ka.verb = create and not ka.user.name startswith "system:" and ka.target.namespace != kube-system
        by: [ka.user.name]
      - name: use
        condition: ka.verb = delete
        by: [ka.user.name]
  output: o
  priority: WARNING
  source: k8s_audit
- rule: Other Key Field
  desc: d
  sequence:
    within: 10m
    steps:
      - name: made
        condition: ka.verb = create and ka.resp.name != ignored
        by: [ka.resp.name]
      - name: used
        condition: ka.verb = delete
        by: [ka.target.name]
  output: o
  priority: WARNING
  source: k8s_audit
"#;

    fn set() -> RuleSet {
        load(&[RuleSource::Embedded("rules.yaml", RULES)])
            .rules
            .expect("rules load")
    }

    /// (the step's condition, what the step is tried against) on a delete
    /// by `user` in `namespace`.
    fn step_results(set: &RuleSet, rule: usize, user: &str, namespace: &str) -> (bool, bool) {
        let Some(StatefulRule::Sequence(s)) = &set.rules[rule].stateful else {
            panic!("rule {rule} is a sequence");
        };
        let step = &s.steps[1];
        let doc = format!(
            r#"{{"auditID":"a","stage":"ResponseComplete","verb":"delete","user":{{"username":"{user}"}},"objectRef":{{"resource":"pods","namespace":"{namespace}","name":"ignored"}},"stageTimestamp":"2024-10-29T12:00:00Z"}}"#
        );
        let mut out = None;
        decode_document(
            doc.as_bytes(),
            |ev| {
                let mut cx = set.context();
                out = Some((
                    set.program.eval(step.node, &ev, &mut cx),
                    set.program.eval(step.matches, &ev, &mut cx),
                ));
            },
            |_| {},
        );
        out.expect("the event decodes")
    }

    #[test]
    fn a_later_step_takes_the_first_steps_tests_of_a_shared_key_field() {
        let set = set();
        assert_eq!(step_results(&set, 0, "alice", "default"), (true, true));
        // The first step refuses this key: no partial can hold it.
        assert_eq!(
            step_results(&set, 0, "system:serviceaccount:a:b", "default"),
            (true, false)
        );
        // The first step's test of a field outside the key is not taken.
        assert_eq!(step_results(&set, 0, "alice", "kube-system"), (true, true));
    }

    #[test]
    fn a_key_read_from_another_field_takes_nothing() {
        let set = set();
        let Some(StatefulRule::Sequence(s)) = &set.rules[1].stateful else {
            panic!("rule 1 is a sequence");
        };
        assert_eq!(s.steps[1].matches, s.steps[1].node);
        assert_eq!(step_results(&set, 1, "alice", "default"), (true, true));
    }
}
