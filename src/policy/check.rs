//! `saker policy check`: for each loaded rule, whether a policy logs the
//! requests the rule looks for, at the level the rule's fields need.
//!
//! A rule's requests come from what its condition requires of `ka.verb`,
//! `ka.target.resource`, `ka.target.subresource`, `ka.user.name` and
//! `ka.target.namespace` (any value when it requires none). Its level
//! comes from the fields it reads: `ka.req.*` and other request-body
//! fields need `Request`, response-body fields `RequestResponse`, the rest
//! `Metadata`. The policy is then asked about every combination.

use std::collections::{BTreeMap, HashSet};

use crate::fields::{Arg, FieldDef, Source};
use crate::rules::predicate::{Node, NodeId, OperandId, OperandProg, Program};
use crate::rules::stateful::{Sequence, StatefulRule};
use crate::rules::{CompiledRule, OutputPart, RuleSet};

use super::known;
use super::matcher::{Request, ResourceAttrs};
use super::probes::{describe, Universe, VERBS};
use super::{Level, Policy};

/// The level of the event a field's value lives in.
pub fn field_level(def: &FieldDef, arg: &Arg) -> Level {
    let from_root = |first: Option<&str>| match first {
        Some("requestObject") => Level::Request,
        Some("responseObject") => Level::RequestResponse,
        _ => Level::Metadata,
    };
    match def.source {
        Source::Path(p) | Source::ListPath(p) => from_root(p.first().copied()),
        Source::JsonPointer => match arg {
            Arg::Pointer(segments) => from_root(segments.first().map(String::as_str)),
            _ => Level::Metadata,
        },
        Source::TargetPodName => Level::RequestResponse,
        Source::Subjects(..)
        | Source::RoleRules(_)
        | Source::FirstContainerImage
        | Source::FirstContainerRepository
        | Source::AnyContainerPrivileged
        | Source::ServicePorts
        | Source::VolumeHostPaths
        | Source::VolumeHostPathMatch
        | Source::FlexVolumeDrivers
        | Source::VolumeTypes
        | Source::Container(..) => Level::Request,
        _ => Level::Metadata,
    }
}

/// The highest level any field below operand `op` needs, with the field.
fn operand_level(p: &Program, op: OperandId, best: &mut (Level, String)) {
    match &p.operands[op as usize] {
        OperandProg::Field(def, arg) => {
            let l = field_level(def, arg);
            if l > best.0 {
                let name = match arg {
                    Arg::Pointer(segments) => format!("{}[/{}]", def.name, segments.join("/")),
                    _ => def.name.to_string(),
                };
                *best = (l, name);
            }
        }
        OperandProg::Transform(_, args) => {
            for &a in args {
                operand_level(p, a, best);
            }
        }
        OperandProg::Literal(_) => {}
    }
}

fn node_level(p: &Program, id: u32, seen: &mut HashSet<u32>, best: &mut (Level, String)) {
    if !seen.insert(id) {
        return;
    }
    match &p.nodes[id as usize] {
        Node::And(items) | Node::Or(items) => {
            for &i in items {
                node_level(p, i, seen, best);
            }
        }
        Node::Not(i) => node_level(p, *i, seen, best),
        Node::Check(c) => operand_level(p, c.lhs, best),
    }
}

/// What one rule needs from the policy.
#[derive(Debug, Clone)]
pub struct Needs {
    /// The level its condition needs, and the field that needs it.
    pub condition: (Level, String),
    /// The level its output (and `by`/`distinct`) needs.
    pub output: (Level, String),
    pub verbs: Option<Vec<String>>,
    pub resources: Option<Vec<String>>,
    pub subresources: Option<Vec<String>>,
    pub users: Option<Vec<String>>,
    pub namespaces: Option<Vec<String>>,
}

fn required(set: &RuleSet, root: NodeId, field: &'static str) -> Option<Vec<String>> {
    let op = set.program.field_operand(field)?;
    let mut v: Vec<String> = set.program.required_values(root, op)?.into_iter().collect();
    v.sort();
    Some(v)
}

pub fn needs(set: &RuleSet, rule: &CompiledRule) -> Needs {
    let mut outputs: Vec<OperandId> = rule
        .output
        .iter()
        .filter_map(|part| match part {
            OutputPart::Value(op) => Some(*op),
            _ => None,
        })
        .collect();
    if let Some(agg) = &rule.aggregate {
        outputs.extend(agg.by.iter().map(|(_, op)| *op));
        outputs.extend(agg.distinct);
    }
    if let Some(StatefulRule::FirstSeen(f)) = &rule.stateful {
        outputs.extend(f.by.iter().map(|(_, op)| *op));
    }
    needs_at(set, rule.root, &outputs)
}

/// What a condition (`root`) and the fields rendered with it need.
fn needs_at(set: &RuleSet, root: NodeId, outputs: &[OperandId]) -> Needs {
    let p = &set.program;
    let mut condition = (Level::Metadata, String::new());
    node_level(p, root, &mut HashSet::new(), &mut condition);
    let mut output = (Level::Metadata, String::new());
    for op in outputs {
        operand_level(p, *op, &mut output);
    }
    Needs {
        condition,
        output,
        verbs: required(set, root, "ka.verb"),
        resources: required(set, root, "ka.target.resource"),
        subresources: required(set, root, "ka.target.subresource"),
        users: required(set, root, "ka.user.name"),
        namespaces: required(set, root, "ka.target.namespace"),
    }
}

/// What each step of a sequence needs: its condition and `by` fields, and
/// its output fields (the completing step also renders `%FIELD`), named
/// `RULE (step NAME)`.
fn step_needs(set: &RuleSet, rule: &CompiledRule, seq: &Sequence) -> Vec<(String, Needs)> {
    let last = seq.steps.len().saturating_sub(1);
    seq.steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let mut outputs: Vec<OperandId> = step.by.iter().map(|(_, op)| *op).collect();
            outputs.extend(&step.values);
            if i == last {
                outputs.extend(&seq.plain);
            }
            let mut n = needs_at(set, step.node, &outputs);
            // An event without its key takes no part in the step: the `by`
            // fields are needed as much as the condition.
            for (_, op) in &step.by {
                operand_level(&set.program, *op, &mut n.condition);
            }
            (format!("{} (step {})", rule.name, step.name), n)
        })
        .collect()
}

/// Whether a rule's events are logged well enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Every request it looks for is logged at the level it needs.
    Ok,
    /// It fires, but some output fields print `<NA>`.
    OutputIncomplete,
    /// It watches every resource, and the policy drops or lowers some
    /// (usually known noise); what is logged is logged well enough.
    Mostly,
    /// Some of the requests it looks for are dropped or logged too low.
    Partly,
    /// None of its requests are logged at the level its condition needs.
    Never,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::OutputIncomplete => "output-incomplete",
            Verdict::Mostly => "mostly",
            Verdict::Partly => "partly",
            Verdict::Never => "never",
        }
    }
}

/// The policy's answer for one rule.
#[derive(Debug, Clone)]
pub struct RuleReport {
    pub rule: String,
    pub needs: Needs,
    pub verdict: Verdict,
    pub probes: usize,
    /// Probes logged below the condition's level, by the policy rule that
    /// decided them (`None`: no rule matched), with the level and an example.
    pub short: BTreeMap<Option<usize>, (Level, String, usize)>,
    /// Policy rules that log the rule's requests well enough.
    pub deciding: Vec<usize>,
}

/// Checks every enabled rule against the policy.
pub fn check(policy: &Policy, set: &RuleSet) -> Vec<RuleReport> {
    let u = Universe::of(policy);
    set.rules
        .iter()
        .filter(|r| r.enabled)
        .flat_map(|r| match &r.stateful {
            Some(StatefulRule::Sequence(seq)) => step_needs(set, r, seq),
            _ => vec![(r.name.clone(), needs(set, r))],
        })
        .map(|(name, n)| check_needs(policy, name, n, &u))
        .collect()
}

fn probes(n: &Needs, u: &Universe, policy: &Policy) -> Vec<Request> {
    let verbs: Vec<String> = n
        .verbs
        .clone()
        .unwrap_or_else(|| VERBS.iter().map(|v| v.to_string()).collect());
    let resources: Vec<String> = n.resources.clone().unwrap_or_else(|| {
        let mut r: Vec<String> = [
            "pods",
            "secrets",
            "configmaps",
            "deployments",
            "services",
            "namespaces",
            "nodes",
            "roles",
            "clusterrolebindings",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for pr in &policy.rules {
            for gr in &pr.resources {
                r.extend(
                    gr.resources
                        .iter()
                        .filter(|s| !s.value.contains('*'))
                        .map(|s| s.value.split('/').next().unwrap_or_default().to_string()),
                );
            }
        }
        r.sort();
        r.dedup();
        r
    });
    let subs: Vec<String> = n
        .subresources
        .clone()
        .unwrap_or_else(|| vec![String::new()]);
    let identities: Vec<(String, Vec<String>)> = match &n.users {
        Some(users) => users
            .iter()
            .map(|u| {
                let groups = if u == "system:anonymous" {
                    vec!["system:unauthenticated".to_string()]
                } else {
                    vec!["system:authenticated".to_string()]
                };
                (u.clone(), groups)
            })
            .collect(),
        None => u.identities.clone(),
    };
    let mut out = Vec::new();
    for res in &resources {
        let group = known::group_of(res).unwrap_or("").to_string();
        let namespaces: Vec<String> = match &n.namespaces {
            Some(ns) => ns.clone(),
            None if known::namespaced(res) => u.namespaces.clone(),
            None => vec![String::new()],
        };
        for sub in &subs {
            for (user, groups) in &identities {
                for verb in &verbs {
                    for ns in &namespaces {
                        out.push(Request {
                            user: user.clone(),
                            groups: groups.clone(),
                            verb: verb.clone(),
                            resource: Some(ResourceAttrs {
                                group: group.clone(),
                                resource: res.clone(),
                                subresource: sub.clone(),
                                namespace: ns.clone(),
                                name: "x".into(),
                            }),
                            path: String::new(),
                        });
                    }
                }
            }
        }
    }
    out
}

fn check_needs(policy: &Policy, rule: String, n: Needs, u: &Universe) -> RuleReport {
    let reqs = probes(&n, u, policy);
    let need = n.condition.0.max(Level::Metadata);
    let mut short: BTreeMap<Option<usize>, (Level, String, usize)> = BTreeMap::new();
    let mut deciding = Vec::new();
    let mut ok = 0;
    let mut output_ok = 0;
    for req in &reqs {
        let d = policy.decide(req);
        if d.level >= need {
            ok += 1;
            if d.level >= n.output.0 {
                output_ok += 1;
            }
            if let Some(i) = d.rule {
                if !deciding.contains(&i) {
                    deciding.push(i);
                }
            }
        } else {
            let e = short.entry(d.rule).or_insert((d.level, describe(req), 0));
            e.2 += 1;
        }
    }
    deciding.sort();
    let verdict = if ok == 0 {
        Verdict::Never
    } else if ok < reqs.len() && n.resources.is_none() {
        Verdict::Mostly
    } else if ok < reqs.len() {
        Verdict::Partly
    } else if output_ok < ok {
        Verdict::OutputIncomplete
    } else {
        Verdict::Ok
    };
    RuleReport {
        rule,
        needs: n,
        verdict,
        probes: reqs.len(),
        short,
        deciding,
    }
}

/// A human rendering of one report.
pub fn render(policy: &Policy, r: &RuleReport) -> String {
    let n = &r.needs;
    let what = |v: &Option<Vec<String>>, any: &str| match v {
        Some(v) => v.join("|"),
        None => any.to_string(),
    };
    let mut res = what(&n.resources, "any resource");
    if let Some(subs) = &n.subresources {
        res = format!("{res}/{}", subs.join("|"));
    }
    let why = if n.condition.1.is_empty() {
        String::new()
    } else {
        format!(", for {}", n.condition.1)
    };
    let mut s = format!(
        "{:<17} {}\n    needs {}{why}: {} of {res}",
        r.verdict.as_str(),
        r.rule,
        n.condition.0,
        what(&n.verbs, "any verb"),
    );
    if let Some(users) = &n.users {
        s.push_str(&format!(" by {}", users.join("|")));
    }
    s.push('\n');
    if !r.deciding.is_empty() {
        let lines: Vec<String> = r
            .deciding
            .iter()
            .map(|&i| policy.line_of(policy.rules[i].pos).to_string())
            .collect();
        s.push_str(&format!(
            "    logged well enough by the policy rule(s) at line {}\n",
            lines.join(", ")
        ));
    }
    for (rule, (level, example, count)) in &r.short {
        let place = match rule {
            Some(i) => format!("{} (level {level})", policy.place(policy.rules[*i].pos)),
            None => "no policy rule (not logged)".to_string(),
        };
        s.push_str(&format!(
            "    {count} of {} probe requests decided by {place}, e.g. {example}\n",
            r.probes
        ));
    }
    if r.verdict == Verdict::OutputIncomplete {
        s.push_str(&format!(
            "    output field {} needs {}: it prints <NA>\n",
            n.output.1, n.output.0
        ));
    }
    s
}
