//! Turns definitions into a [`Program`]: conditions parsed, named lists
//! expanded, macros inlined (each compiled once and shared), exceptions
//! appended, fields resolved to extractors, regexes compiled, outputs parsed.
//! Every problem becomes a diagnostic pointing at the rules file.

use std::collections::HashMap;

use regex::Regex;

use super::aggregate::{self, MeasureAst};
use super::ast::{Compare, Expr, Op, Operand, Rhs, TransformKind, Value};
use super::ipnet::IpNet;
use super::loader::{Definitions, ExceptionDef, Loc, RuleDef, Text};
use super::parser::{parse_condition, parse_output, OutputPiece};
use super::predicate::{
    Check, Glob, Node, NodeId, OperandId, OperandProg, Program, Test, ValueSet,
};
use super::stateful::StatefulRule;
use super::yaml::Node as YamlNode;
use super::{AggField, Aggregate, CompiledRule, LoadOptions, OutputPart, RuleSet};
use crate::diag::{did_you_mean, Code, Diagnostic};
use crate::fields::{self, ArgSpec};
use crate::window::Spec;

mod exceptions;
mod stateful;

/// Compiles every enabled `k8s_audit` rule of `defs`.
pub fn compile(defs: &Definitions, options: &LoadOptions) -> (RuleSet, Vec<Diagnostic>) {
    let mut c = Compiler {
        defs,
        options: *options,
        program: Program::default(),
        macros: HashMap::new(),
        diags: Vec::new(),
    };
    let mut rules = Vec::new();
    for def in &defs.rules {
        if let Some(rule) = c.rule(def) {
            rules.push(rule);
        }
    }
    // Falco parses every macro, used or not; report syntax errors in the
    // ones no k8s_audit rule reached (their fields may be another source's).
    for m in &defs.macros {
        if c.macros.contains_key(&m.name) {
            continue;
        }
        if let Err(e) = parse_condition(&m.condition.text) {
            let ctx = Ctx {
                text: &m.condition,
                owner: format!("macro `{}`", m.name),
            };
            c.diags.push(
                ctx.err(Code::Syntax, e.message, e.span)
                    .label(format!("expected {}", e.expected)),
            );
        }
    }
    let mut diags = c.diags;
    dedup(&mut diags);
    (RuleSet::new(c.program, rules), diags)
}

fn dedup(diags: &mut Vec<Diagnostic>) {
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| {
        seen.insert((
            d.code,
            d.message.clone(),
            d.span,
            d.file.as_ref().map(|f| f.name.clone()),
        ))
    });
}

enum MacroState {
    InProgress,
    Done(NodeId),
    Failed(Vec<Diagnostic>),
}

/// Where the text being compiled came from, for placing diagnostics.
struct Ctx<'t> {
    text: &'t Text,
    /// "rule `X`" or "macro `Y`".
    owner: String,
}

impl Ctx<'_> {
    fn err(&self, code: Code, msg: String, span: (usize, usize)) -> Diagnostic {
        self.text.diag(
            Diagnostic::error(code, format!("{msg} (in {})", self.owner)),
            span,
        )
    }
}

struct Compiler<'d> {
    defs: &'d Definitions,
    options: LoadOptions,
    program: Program,
    macros: HashMap<String, MacroState>,
    diags: Vec<Diagnostic>,
}

type Errors = Vec<Diagnostic>;

/// What an output template may use: the event's fields (per-event), `by`
/// fields and `%agg.*` (windowed), or both (first-seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputKind {
    PerEvent,
    Windowed,
    FirstSeen,
}

impl OutputKind {
    fn of(windowed: bool, first_seen: bool) -> Self {
        match (windowed, first_seen) {
            (_, true) => OutputKind::FirstSeen,
            (true, false) => OutputKind::Windowed,
            (false, false) => OutputKind::PerEvent,
        }
    }
}

/// A rule's output template and its field tokens (name as written, source).
type CompiledOutput = (Vec<OutputPart>, Vec<(String, OutputPart)>);

impl Compiler<'_> {
    fn rule(&mut self, def: &RuleDef) -> Option<CompiledRule> {
        let ctx = Ctx {
            text: &def.condition,
            owner: format!("rule `{}`", def.name),
        };
        let mut errors = Vec::new();
        // A sequence needs no condition of its own: its steps have theirs.
        let no_condition = def.sequence.is_some() && def.condition.text.trim().is_empty();
        let cond = match parse_condition(&def.condition.text) {
            _ if no_condition => None,
            Ok(expr) => self.expr(&expr, &ctx).map_err(|e| errors.extend(e)).ok(),
            Err(e) => {
                let d = ctx
                    .err(Code::Syntax, e.message, e.span)
                    .label(format!("expected {}", e.expected));
                errors.push(d);
                None
            }
        };
        let mut root_items: Vec<NodeId> = cond.into_iter().collect();
        for exc in &def.exceptions {
            match self.exception(def, exc) {
                Ok(Some(node)) => root_items.push(self.program.push_node(Node::Not(node))),
                Ok(None) => {}
                Err(e) => errors.extend(e),
            }
        }
        let mut stateful = None;
        let first_seen = def
            .aggregate
            .as_ref()
            .is_some_and(|t| super::first_seen::is_first_seen(&t.text));
        let agg = match &def.aggregate {
            Some(text) if first_seen => {
                match self.first_seen(def, text) {
                    Ok(f) => stateful = Some(StatefulRule::FirstSeen(f)),
                    Err(e) => errors.extend(e),
                }
                None
            }
            Some(text) => match self.aggregate(def, text) {
                Ok(a) => Some(a),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            },
            None => None,
        };
        if let Some(seq) = &def.sequence {
            if def.aggregate.is_some() {
                errors.push(
                    def.loc
                        .diag(
                            Diagnostic::error(
                                Code::Sequence,
                                format!("rule `{}` has both `sequence` and `aggregate`", def.name),
                            ),
                            def.name.len(),
                        )
                        .help("a rule is either a sequence or windowed; split it into two rules"),
                );
            }
            match self.sequence(def, seq, &root_items) {
                Ok(q) => {
                    // The rule matches an event that matches any step (the
                    // rule index and `saker policy check` read this).
                    let steps = q.steps.iter().map(|s| s.node).collect();
                    root_items = vec![self.program.push_node(Node::Or(steps))];
                    stateful = Some(StatefulRule::Sequence(q));
                }
                Err(e) => errors.extend(e),
            }
        }
        let windowed = def.aggregate.is_some() && !first_seen;
        let output = match &def.sequence {
            // A sequence's output is compiled with its steps.
            Some(_) => Some((Vec::new(), Vec::new())),
            None => self
                .output(def, OutputKind::of(windowed, first_seen), agg.as_ref())
                .map_err(|e| errors.extend(e))
                .ok(),
        };
        if !errors.is_empty() {
            let only_unknown = errors.iter().all(|d| d.code == Code::UnknownField);
            if def.skip_if_unknown_filter && only_unknown {
                for mut d in errors {
                    d.severity = crate::diag::Severity::Warning;
                    d.message
                        .push_str("; the rule is skipped (skip-if-unknown-filter)");
                    self.diags.push(d);
                }
            } else {
                self.diags.extend(errors);
            }
            return None;
        }
        let root = if root_items.len() == 1 {
            root_items[0]
        } else {
            self.program.push_node(Node::And(root_items))
        };
        let (output, output_fields) = output?;
        Some(CompiledRule {
            name: def.name.clone(),
            desc: def.desc.clone(),
            priority: def.priority,
            tags: def.tags.iter().cloned().collect(),
            enabled: def.enabled,
            root,
            output,
            output_fields,
            aggregate: agg,
            stateful,
            labels: def.labels.clone(),
            annotations: def.annotations.clone(),
        })
    }

    fn expr(&mut self, e: &Expr, ctx: &Ctx) -> Result<NodeId, Errors> {
        match e {
            Expr::And(items) | Expr::Or(items) => {
                let mut ids = Vec::with_capacity(items.len());
                let mut errors = Vec::new();
                for i in items {
                    match self.expr(i, ctx) {
                        Ok(id) => ids.push(id),
                        Err(e) => errors.extend(e),
                    }
                }
                if !errors.is_empty() {
                    return Err(errors);
                }
                Ok(self.program.push_shared(if matches!(e, Expr::And(_)) {
                    Node::And(ids)
                } else {
                    Node::Or(ids)
                }))
            }
            Expr::Not(inner) => {
                let id = self.expr(inner, ctx)?;
                Ok(self.program.push_shared(Node::Not(id)))
            }
            Expr::Macro(name, span) => self.macro_ref(name, *span, ctx),
            Expr::Compare(c) => self.compare(c, ctx),
        }
    }

    fn macro_ref(&mut self, name: &str, span: (usize, usize), ctx: &Ctx) -> Result<NodeId, Errors> {
        match self.macros.get(name) {
            Some(MacroState::Done(id)) => return Ok(*id),
            Some(MacroState::Failed(e)) => return Err(e.clone()),
            Some(MacroState::InProgress) => {
                return Err(vec![ctx.err(
                    Code::MacroCycle,
                    format!("reference loop in macro `{name}`"),
                    span,
                )]);
            }
            None => {}
        }
        let Some(def) = self.defs.macro_def(name) else {
            let hint = did_you_mean(name, self.defs.macros.iter().map(|m| m.name.as_str()));
            let what = if self.defs.list(name).is_some() {
                "is a list, not a macro; write it inside ( )"
            } else {
                "is not defined"
            };
            return Err(vec![ctx
                .err(Code::UndefinedMacro, format!("macro `{name}` {what}"), span)
                .label("unknown macro")
                .help_opt(hint)]);
        };
        self.macros.insert(name.to_string(), MacroState::InProgress);
        let mctx = Ctx {
            text: &def.condition,
            owner: format!("macro `{name}`"),
        };
        let result = match parse_condition(&def.condition.text) {
            Ok(expr) => self.expr(&expr, &mctx),
            Err(e) => Err(vec![mctx
                .err(Code::Syntax, e.message, e.span)
                .label(format!("expected {}", e.expected))]),
        };
        match &result {
            Ok(id) => {
                self.program.memoize(*id);
                self.macros.insert(name.to_string(), MacroState::Done(*id))
            }
            Err(e) => self
                .macros
                .insert(name.to_string(), MacroState::Failed(e.clone())),
        };
        result
    }

    fn compare(&mut self, c: &Compare, ctx: &Ctx) -> Result<NodeId, Errors> {
        let (lhs, list) = self.operand(&c.lhs, ctx)?;
        let numeric = matches!(&c.lhs, Operand::Transform(t) if t.kind == TransformKind::Len);
        let field_name = match &c.lhs {
            Operand::Field(f) => f.name.clone(),
            other => format!("{:?}", other.span()),
        };
        if list && !matches!(c.op, Op::Exists | Op::In | Op::Intersects | Op::InNet) {
            return Err(vec![ctx.err(
                Code::ListOperator,
                format!("list field `{field_name}` only supports the operators `exists`, `in`, `intersects` and `innet`"),
                c.op_span,
            )]);
        }
        if matches!(c.op, Op::BContains | Op::BStartsWith) {
            return Err(vec![ctx.err(
                Code::OperatorType,
                format!(
                    "operator `{}` works on byte buffers; k8s audit fields are strings",
                    c.op.as_str()
                ),
                c.op_span,
            )]);
        }
        let test = match &c.rhs {
            Rhs::None => Test::Exists,
            Rhs::Operand(o) => {
                let (rhs, _) = self.operand(o, ctx)?;
                Test::Operand(c.op, rhs)
            }
            Rhs::Value(v) => self.scalar_test(c.op, v, numeric, ctx)?,
            Rhs::List(items, _) => {
                if c.op == Op::InNet {
                    self.check_networks(items, ctx)?;
                }
                let values = self.expand_values(items);
                self.list_test(c.op, values, c.op_span, ctx)?
            }
            Rhs::ListName(name, span) => match self.defs.list(name) {
                Some(l) => {
                    let values = l.items.clone();
                    self.list_test(c.op, values, c.op_span, ctx)?
                }
                None => {
                    let hint = did_you_mean(name, self.defs.lists.iter().map(|l| l.name.as_str()));
                    return Err(vec![ctx
                        .err(
                            Code::UndefinedList,
                            format!("list `{name}` is not defined"),
                            *span,
                        )
                        .help_opt(hint)]);
                }
            },
        };
        Ok(self.program.push_shared(Node::Check(Check { lhs, test })))
    }

    /// `innet`'s networks, each error placed on the element (or the list
    /// name) it comes from.
    fn check_networks(&self, items: &[Value], ctx: &Ctx) -> Result<(), Errors> {
        let errors: Errors = items
            .iter()
            .flat_map(|v| {
                self.expand_values(std::slice::from_ref(v))
                    .into_iter()
                    .filter(|n| IpNet::parse(n).is_none())
                    .map(move |n| {
                        ctx.err(
                            Code::Network,
                            format!("`{n}` is not an IP address or network (address/prefix)"),
                            v.span,
                        )
                        .help("write networks as 10.0.0.0/8 or fd00::/8")
                    })
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Elements of a literal list, with names of defined lists replaced by
    /// their items (Falco expands lists inside parentheses).
    fn expand_values(&self, items: &[Value]) -> Vec<String> {
        let mut out = Vec::with_capacity(items.len());
        for v in items {
            match (v.quoted, self.defs.list(&v.text)) {
                (false, Some(l)) => out.extend(l.items.iter().cloned()),
                _ => out.push(v.text.clone()),
            }
        }
        out
    }

    fn list_test(
        &mut self,
        op: Op,
        values: Vec<String>,
        op_span: (usize, usize),
        ctx: &Ctx,
    ) -> Result<Test, Errors> {
        Ok(match op {
            Op::In => Test::In(ValueSet::new(values)),
            Op::Intersects => Test::Intersects(ValueSet::new(values)),
            Op::PMatch => Test::PMatch(values),
            Op::InNet => {
                let mut nets = Vec::with_capacity(values.len());
                for v in &values {
                    match IpNet::parse(v) {
                        Some(n) => nets.push(n),
                        None => {
                            return Err(vec![ctx
                                .err(
                                    Code::Network,
                                    format!(
                                        "`{v}` is not an IP address or network (address/prefix)"
                                    ),
                                    op_span,
                                )
                                .help("write networks as 10.0.0.0/8 or fd00::/8")])
                        }
                    }
                }
                Test::InNet(nets)
            }
            other => {
                return Err(vec![ctx.err(
                    Code::OperatorValue,
                    format!(
                        "operator `{}` takes a single value, not a list",
                        other.as_str()
                    ),
                    op_span,
                )])
            }
        })
    }

    fn scalar_test(&mut self, op: Op, v: &Value, numeric: bool, ctx: &Ctx) -> Result<Test, Errors> {
        // A bare value that names a one-item list stands for that item.
        let mut text = v.text.clone();
        if !v.quoted {
            if let Some(l) = self.defs.list(&v.text) {
                if l.items.len() == 1 {
                    text = l.items[0].clone();
                }
            }
        }
        Ok(match op {
            Op::Exists | Op::In | Op::Intersects | Op::InNet | Op::PMatch => {
                // The grammar only lets list operators take lists.
                return Err(vec![ctx.err(
                    Code::OperatorValue,
                    format!("operator `{}` needs a list", op.as_str()),
                    v.span,
                )]);
            }
            Op::Glob | Op::IGlob | Op::Regex | Op::IContains => {
                value_test(op, &text).map_err(|msg| vec![ctx.err(Code::Regex, msg, v.span)])?
            }
            Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge if numeric => {
                match parse_number(&text) {
                    Some(n) => Test::Num(op, n, format_num(n)),
                    None => {
                        return Err(vec![ctx.err(
                            Code::Number,
                            format!("`{text}` is not a number; the left side is numeric"),
                            v.span,
                        )])
                    }
                }
            }
            Op::Lt | Op::Le | Op::Gt | Op::Ge => match parse_number(&text) {
                Some(n) => Test::Num(op, n, format_num(n)),
                None => Test::Str(op, text),
            },
            _ => Test::Str(op, text),
        })
    }

    /// Compiles an operand; returns its id and whether it yields a list.
    fn operand(&mut self, o: &Operand, ctx: &Ctx) -> Result<(OperandId, bool), Errors> {
        match o {
            Operand::Literal(text, _) => Ok((
                self.program
                    .push_operand(OperandProg::Literal(text.clone())),
                false,
            )),
            Operand::Field(f) => {
                let Some(def) = fields::lookup(&f.name) else {
                    let hint = did_you_mean(&f.name, fields::catalog().iter().map(|d| d.name));
                    return Err(vec![ctx
                        .err(
                            Code::UnknownField,
                            format!("unknown field `{}`", f.name),
                            f.span,
                        )
                        .label("not a known field")
                        .help_opt(
                            hint.or_else(|| Some("`saker fields` lists every field".into())),
                        )]);
                };
                let arg = def.check_arg(f.arg.as_deref()).map_err(|e| {
                    let hint = match def.arg {
                        ArgSpec::Key => format!("write `{}[key]`", def.name),
                        ArgSpec::Pointer => format!("write `{}[/json/pointer]`", def.name),
                        ArgSpec::Index => format!("write `{}` or `{}[0]`", def.name, def.name),
                        ArgSpec::None => format!("write `{}` without brackets", def.name),
                    };
                    vec![ctx
                        .err(
                            Code::FieldArgument,
                            format!("field `{}` {e}", def.name),
                            f.span,
                        )
                        .help(hint)]
                })?;
                Ok((
                    self.program.push_operand(OperandProg::Field(def, arg)),
                    def.list,
                ))
            }
            Operand::Transform(t) => {
                let mut args = Vec::new();
                let mut list = false;
                for a in &t.args {
                    let (id, l) = self.operand(a, ctx)?;
                    args.push(id);
                    list |= l;
                }
                let arity_ok = match t.kind {
                    TransformKind::Join => args.len() == 2,
                    TransformKind::Concat => args.len() >= 2,
                    _ => args.len() == 1,
                };
                if !arity_ok {
                    return Err(vec![ctx.err(
                        Code::Transformer,
                        format!("wrong number of arguments for `{}()`", t.kind.name()),
                        t.span,
                    )]);
                }
                let list = list
                    && !matches!(
                        t.kind,
                        TransformKind::Len | TransformKind::Join | TransformKind::Concat
                    );
                Ok((
                    self.program
                        .push_operand(OperandProg::Transform(t.kind, args)),
                    list,
                ))
            }
        }
    }

    /// Compiles the `aggregate:` clause of a windowed rule.
    fn aggregate(&mut self, def: &RuleDef, text: &Text) -> Result<Aggregate, Errors> {
        let ctx = Ctx {
            text,
            owner: format!("the aggregate of rule `{}`", def.name),
        };
        let clause = aggregate::parse(&text.text, self.options.resolution_ns).map_err(|errs| {
            errs.into_iter()
                .map(|e| ctx.err(Code::Aggregate, e.message, e.span).help_opt(e.help))
                .collect::<Vec<_>>()
        })?;
        let mut errors = Vec::new();
        let mut scalar_operand =
            |c: &mut Self, f: &super::ast::FieldRef, what: &str| -> Option<OperandId> {
                match c.operand(&Operand::Field(f.clone()), &ctx) {
                    Ok((_, true)) => {
                        errors.push(ctx.err(
                            Code::Aggregate,
                            format!(
                                "{what} `{}` is a list field; it needs a single value",
                                f.name
                            ),
                            f.span,
                        ));
                        None
                    }
                    Ok((id, false)) => Some(id),
                    Err(e) => {
                        errors.extend(e);
                        None
                    }
                }
            };
        let mut by = Vec::new();
        for f in &clause.by {
            if let Some(id) = scalar_operand(self, f, "`by` field") {
                by.push((text.text[f.span.0..f.span.1].to_string(), id));
            }
        }
        let distinct = match &clause.measure {
            MeasureAst::Distinct(f) => scalar_operand(self, f, "the distinct field"),
            _ => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let res = self.options.resolution_ns;
        let spec = Spec {
            measure: aggregate::measure_of(&clause),
            cmp: clause.cmp,
            threshold: clause.threshold,
            window: (clause.window_ns / res) as i64,
            hold: clause.hold.as_ref().map_or(0, |h| (h.0 / res) as i64),
            keyed: !clause.by.is_empty(),
            resolution_ns: res,
        };
        Ok(Aggregate {
            spec,
            by,
            distinct,
            threshold_text: clause.threshold_text,
            window_text: clause.window_text,
            hold_text: clause.hold.map(|h| h.1),
        })
    }

    fn output(
        &mut self,
        def: &RuleDef,
        kind: OutputKind,
        agg: Option<&Aggregate>,
    ) -> Result<CompiledOutput, Errors> {
        let windowed = kind == OutputKind::Windowed;
        let ctx = Ctx {
            text: &def.output,
            owner: format!("the output of rule `{}`", def.name),
        };
        let pieces = parse_output(&def.output.text)
            .map_err(|e| vec![ctx.err(Code::Output, e.message, e.span)])?;
        let mut parts = Vec::new();
        let mut fields_out: Vec<(String, OutputPart)> = Vec::new();
        let mut errors = Vec::new();
        for p in pieces {
            match p {
                OutputPiece::Text(t) => parts.push(OutputPart::Text(t)),
                OutputPiece::Token(op) => {
                    let span = op.span();
                    let name = def.output.text[span.0..span.1].to_string();
                    if let Some(part) =
                        self.windowed_token(&name, kind, agg, &ctx, span, &mut errors)
                    {
                        if !fields_out.iter().any(|(n, _)| *n == name) {
                            fields_out.push((name, part.clone()));
                        }
                        parts.push(part);
                        continue;
                    }
                    if windowed {
                        continue;
                    }
                    match self.operand(&op, &ctx) {
                        Ok((id, _)) => {
                            if !fields_out.iter().any(|(n, _)| *n == name) {
                                fields_out.push((name, OutputPart::Value(id)));
                            }
                            parts.push(OutputPart::Value(id));
                        }
                        Err(e) => errors.extend(e),
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok((parts, fields_out))
        } else {
            Err(errors)
        }
    }
}

impl Compiler<'_> {
    /// An output token of a windowed rule (`%agg.*`, a `by` field), or an
    /// error for tokens windowed rules cannot use; `None` for a per-event
    /// rule's ordinary field.
    fn windowed_token(
        &self,
        name: &str,
        kind: OutputKind,
        agg: Option<&Aggregate>,
        ctx: &Ctx,
        span: (usize, usize),
        errors: &mut Errors,
    ) -> Option<OutputPart> {
        let agg_field = AggField::parse(name);
        if kind != OutputKind::Windowed {
            if let (Some(f), OutputKind::FirstSeen) = (agg_field, kind) {
                return Some(OutputPart::Agg(f));
            }
            if agg_field.is_some() {
                errors.push(ctx.err(
                    Code::Output,
                    format!("`%{name}` is only available in windowed rules (with `aggregate:`)"),
                    span,
                ));
                return Some(OutputPart::Text(String::new()));
            }
            return None;
        }
        if let Some(f) = agg_field {
            return Some(OutputPart::Agg(f));
        }
        let Some(agg) = agg else {
            // The aggregate clause failed to compile; its errors are reported.
            return Some(OutputPart::Text(String::new()));
        };
        if let Some(i) = agg.by.iter().position(|(b, _)| b == name) {
            return Some(OutputPart::Key(i));
        }
        let by: Vec<&str> = agg.by.iter().map(|(b, _)| b.as_str()).collect();
        errors.push(
            ctx.err(
                Code::Output,
                format!("a windowed rule's output can use %agg.value, %agg.threshold, %agg.window, %agg.for, %agg.state and its `by` fields, not `%{name}`"),
                span,
            )
            .help(if by.is_empty() { "this rule has no `by` fields".to_string() } else { format!("its `by` fields: {}", by.join(", ")) }),
        );
        Some(OutputPart::Text(String::new()))
    }
}

/// The test of a string operator against one constant (`glob`, `iglob`,
/// `regex` full-match, `icontains` with the constant lower-cased once, or a
/// plain string comparison). Errors only for an invalid regex.
fn value_test(op: Op, text: &str) -> Result<Test, String> {
    Ok(match op {
        Op::Glob | Op::IGlob => Test::Glob(Glob::new(text, op == Op::IGlob)),
        Op::Regex => match Regex::new(&format!("^(?:{text})$")) {
            Ok(re) => Test::Regex(re),
            Err(e) => {
                let msg = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("invalid regex")
                    .trim()
                    .to_string();
                return Err(format!("invalid regular expression: {msg}"));
            }
        },
        Op::IContains => Test::Str(op, text.to_ascii_lowercase()),
        _ => Test::Str(op, text.to_string()),
    })
}

/// A numeric constant as text, as it is compared with string fields.
fn format_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn parse_number(s: &str) -> Option<f64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok().map(|n| n as f64);
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}
