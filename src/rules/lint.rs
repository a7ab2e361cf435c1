//! Lints for rules that load but can never fire, or whose allow-lists always
//! pass: warnings, placed like every other diagnostic. They run on the
//! syntax tree with macros expanded, after a clean compile.
//!
//! - `stage-field`: the rule requires a stage (`ka.stage = RequestReceived`)
//!   whose events never carry a field it also requires (`ka.response.code`:
//!   no response yet). A comparison with a missing field is false, so the
//!   rule can never fire.
//! - `empty-set`: the rule requires `in`/`intersects` against a set that is
//!   empty once lists are expanded; nothing is in an empty set, so the rule
//!   can never fire (an `in` on a list field holds only for an empty list).
//!   An empty list under `not` is left alone: that is an allow-list waiting
//!   for its items, and it excludes nothing.
//! - `unguarded-list-in`: `in` (or `innet`) on a list field holds when the list is empty
//!   (an empty list is inside every set, as in Falco), so an allow-list
//!   written that way passes for an object that names nothing. Guard it in the
//!   same conjunction with `len(FIELD) > 0`.

use std::collections::HashSet;

use super::ast::{Compare, Expr, Op, Operand, Rhs, TransformKind, Value};
use super::loader::{Definitions, RuleDef, Text};
use super::parser::parse_condition;
use crate::diag::{Code, Diagnostic};
use crate::fields::{self, Source};

/// Lints every rule of `defs`; one warning per problem and place.
pub fn lint(defs: &Definitions) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for rule in defs.rules.iter().filter(|r| r.enabled) {
        let Ok(expr) = parse_condition(&rule.condition.text) else {
            continue;
        };
        let mut walk = Walk {
            defs,
            rule,
            required: Vec::new(),
            found: Vec::new(),
            stack: Vec::new(),
        };
        walk.expr(&expr, &rule.condition, true, true, &[]);
        walk.stage_fields();
        for (code, text, span, d) in walk.found {
            if seen.insert((code, text.text.clone(), span)) {
                out.push(text.diag(d, span));
            }
        }
    }
    out
}

/// A comparison the rule needs to hold, and where it was written.
struct Required<'d> {
    compare: Compare,
    text: &'d Text,
    via: Option<String>,
}

struct Walk<'d> {
    defs: &'d Definitions,
    rule: &'d RuleDef,
    required: Vec<Required<'d>>,
    found: Vec<(Code, &'d Text, (usize, usize), Diagnostic)>,
    /// Macros being expanded, innermost last (a cycle is a load error).
    stack: Vec<String>,
}

impl<'d> Walk<'d> {
    /// `positive`: the expression must be true for the rule to fire
    /// (false under an odd number of `not`s); `required`: it sits on the
    /// rule's top-level conjunction, so it must hold for every match.
    fn expr(
        &mut self,
        e: &Expr,
        text: &'d Text,
        positive: bool,
        required: bool,
        siblings: &[Expr],
    ) {
        match e {
            Expr::And(items) => {
                for i in items {
                    self.expr(i, text, positive, required && positive, items);
                }
            }
            Expr::Or(items) => {
                for i in items {
                    self.expr(i, text, positive, required && items.len() == 1, items);
                }
            }
            // `a and not X in (...)`: `a` still guards `X`.
            Expr::Not(inner) => self.expr(inner, text, !positive, false, siblings),
            Expr::Macro(name, _) => self.macro_ref(name, positive, required),
            Expr::Compare(c) => self.compare(c, text, positive, required, siblings),
        }
    }

    fn macro_ref(&mut self, name: &str, positive: bool, required: bool) {
        if self.stack.iter().any(|m| m == name) {
            return;
        }
        let Some(def) = self.defs.macros.iter().rev().find(|m| m.name == name) else {
            return;
        };
        let Ok(expr) = parse_condition(&def.condition.text) else {
            return;
        };
        self.stack.push(name.to_string());
        self.expr(&expr, &def.condition, positive, required, &[]);
        self.stack.pop();
    }

    fn owner(&self) -> String {
        match self.stack.last() {
            Some(m) => format!("rule `{}`, in macro `{m}`", self.rule.name),
            None => format!("rule `{}`", self.rule.name),
        }
    }

    fn compare(
        &mut self,
        c: &Compare,
        text: &'d Text,
        positive: bool,
        required: bool,
        siblings: &[Expr],
    ) {
        if matches!(c.op, Op::In | Op::Intersects) {
            if let Some(values) = self.set_values(&c.rhs) {
                if values.is_empty() && positive && required {
                    self.empty_set(c, text);
                }
            }
        }
        if matches!(c.op, Op::In | Op::InNet)
            && list_field(&c.lhs).is_some()
            && !guarded(&c.lhs, siblings)
        {
            self.unguarded(c, text);
        }
        if positive && required {
            self.required.push(Required {
                compare: c.clone(),
                text,
                via: self.stack.last().cloned(),
            });
        }
    }

    /// The values of an `in`/`intersects` set once lists are expanded.
    fn set_values(&self, rhs: &Rhs) -> Option<Vec<String>> {
        let expand = |v: &Value| match (v.quoted, self.defs.list(&v.text)) {
            (false, Some(l)) => l.items.clone(),
            _ => vec![v.text.clone()],
        };
        match rhs {
            Rhs::List(items, _) => Some(items.iter().flat_map(expand).collect()),
            Rhs::ListName(name, _) => self.defs.list(name).map(|l| l.items.clone()),
            _ => None,
        }
    }

    fn empty_set(&mut self, c: &Compare, text: &'d Text) {
        let d = Diagnostic::warning(
            Code::EmptySet,
            format!(
                "`{}` against an empty set is never true for a value, so this rule can never fire (in {})",
                op_name(c.op),
                self.owner()
            ),
        )
        .label("the set is empty")
        .help("add items to the list, or drop the comparison");
        self.found.push((Code::EmptySet, text, set_span(c), d));
    }

    fn unguarded(&mut self, c: &Compare, text: &'d Text) {
        let name = list_field(&c.lhs).unwrap_or_default();
        let d = Diagnostic::warning(
            Code::UnguardedListIn,
            format!(
                "`{name} {op} (...)` also holds when `{name}` has no values (an empty list is inside every set) (in {})",
                self.owner(),
                op = c.op.as_str()
            ),
        )
        .label("passes for an empty list")
        .help(format!(
            "require values in the same conjunction: `len({name}) > 0 and {name} {} (...)`",
            c.op.as_str()
        ));
        self.found
            .push((Code::UnguardedListIn, text, c.lhs.span(), d));
    }

    /// `stage-field`: a required stage whose events lack a required field.
    fn stage_fields(&mut self) {
        let mut stages: Option<Vec<String>> = None;
        for r in &self.required {
            if !matches!(&r.compare.lhs, Operand::Field(f) if f.name == "ka.stage") {
                continue;
            }
            let values = match (&r.compare.op, &r.compare.rhs) {
                (Op::Eq, Rhs::Value(v)) => vec![v.text.clone()],
                (Op::In, rhs) => self.set_values(rhs).unwrap_or_default(),
                _ => continue,
            };
            stages = Some(match stages {
                None => values,
                Some(s) => s.into_iter().filter(|x| values.contains(x)).collect(),
            });
        }
        let Some(stages) = stages.filter(|s| !s.is_empty()) else {
            return;
        };
        for r in &self.required {
            let Some(part) = event_part(&r.compare.lhs) else {
                continue;
            };
            if stages.iter().all(|s| !stage_carries(s, part)) {
                let owner = match &r.via {
                    Some(m) => format!("rule `{}`, in macro `{m}`", self.rule.name),
                    None => format!("rule `{}`", self.rule.name),
                };
                let d = Diagnostic::warning(
                    Code::StageField,
                    format!(
                        "events of stage {} carry no `{part}`, so this comparison is never true and the rule can never fire (in {owner})",
                        stages.join(", ")
                    ),
                )
                .label(format!("no `{part}` at this stage"))
                .help("match a stage that carries it (ResponseComplete), or drop the comparison");
                self.found
                    .push((Code::StageField, r.text, r.compare.lhs.span(), d));
            }
        }
    }
}

fn op_name(op: Op) -> &'static str {
    if op == Op::In {
        "in"
    } else {
        "intersects"
    }
}

fn set_span(c: &Compare) -> (usize, usize) {
    match &c.rhs {
        Rhs::List(_, span) | Rhs::ListName(_, span) => *span,
        _ => c.op_span,
    }
}

/// The name of a list-valued field compared directly.
fn list_field(o: &Operand) -> Option<&str> {
    match o {
        Operand::Field(f) => fields::lookup(&f.name).filter(|d| d.list).map(|d| d.name),
        _ => None,
    }
}

/// Is there `len(FIELD) > 0` (or `>= 1`, `!= 0`) among `siblings`?
fn guarded(lhs: &Operand, siblings: &[Expr]) -> bool {
    let Operand::Field(field) = lhs else {
        return false;
    };
    siblings.iter().any(|s| {
        let Expr::Compare(c) = s else { return false };
        let Operand::Transform(t) = &c.lhs else {
            return false;
        };
        let same = matches!(t.args.as_slice(), [Operand::Field(f)] if f.name == field.name);
        let Rhs::Value(v) = &c.rhs else { return false };
        t.kind == TransformKind::Len
            && same
            && matches!(
                (c.op, v.text.as_str()),
                (Op::Gt, "0") | (Op::Ge, "1") | (Op::Ne, "0")
            )
    })
}

/// The top-level key of the audit event a field reads, when that is a part
/// some stages lack.
fn event_part(o: &Operand) -> Option<&'static str> {
    let Operand::Field(f) = o else { return None };
    let def = fields::lookup(&f.name)?;
    let key = match def.source {
        Source::Path(p) | Source::ListPath(p) => p.first().copied()?,
        Source::JsonPointer => {
            let pointer = f.arg.as_deref()?.strip_prefix('/')?;
            pointer.split('/').next()?
        }
        _ => return None,
    };
    ["responseStatus", "responseObject"]
        .into_iter()
        .find(|k| *k == key)
}

/// Whether events of `stage` can carry `part` (audit.k8s.io/v1).
fn stage_carries(stage: &str, part: &str) -> bool {
    match stage {
        "RequestReceived" => false,
        "ResponseStarted" => part == "responseStatus",
        _ => true,
    }
}
