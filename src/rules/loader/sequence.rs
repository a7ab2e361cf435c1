//! The `sequence:` key of a rule (DESIGN 2.4), read into a [`SequenceDef`]:
//! `within` and the steps, each with a name, a condition and a `by` list.
//! Structural mistakes become diagnostics here, all of them, not only the
//! first; the compiler checks what the steps mean.

use std::sync::Arc;

use super::super::yaml::Node;
use super::{Loc, Text};
use crate::diag::{did_you_mean, Code, Diagnostic, SourceFile};

/// A rule's `sequence:` as written.
#[derive(Debug, Clone)]
pub struct SequenceDef {
    pub within: Option<Text>,
    pub steps: Vec<StepDef>,
    /// The `sequence:` value.
    pub loc: Loc,
}

/// One step as written.
#[derive(Debug, Clone)]
pub struct StepDef {
    pub name: String,
    pub name_loc: Loc,
    pub condition: Text,
    /// The `by` fields, each its own text (for positions).
    pub by: Vec<Text>,
    /// The `by` value (for problems with the whole list).
    pub by_loc: Loc,
}

const SEQUENCE_KEYS: &[&str] = &["within", "steps"];
const STEP_KEYS: &[&str] = &["name", "condition", "by"];

fn err(file: &Arc<SourceFile>, node: &Node, len: usize, msg: String) -> Diagnostic {
    Loc::of(file, node).diag(Diagnostic::error(Code::Sequence, msg), len)
}

fn warn_unknown(file: &Arc<SourceFile>, map: &Node, known: &[&str], diags: &mut Vec<Diagnostic>) {
    for (k, _) in map.as_map().unwrap_or_default() {
        let Some(name) = k.as_str() else { continue };
        if !known.contains(&name) {
            let d = Diagnostic::warning(
                Code::UnknownKey,
                format!("unknown key `{name}`; it is ignored"),
            )
            .help_opt(did_you_mean(name, known.iter().copied()));
            diags.push(Loc::of(file, k).diag(d, name.len()));
        }
    }
}

/// Reads `sequence:`; `None` (with diagnostics) when it cannot be used.
pub(super) fn sequence_of(
    file: &Arc<SourceFile>,
    rule: &str,
    node: &Node,
    diags: &mut Vec<Diagnostic>,
) -> Option<SequenceDef> {
    let before = diags.iter().filter(|d| d.is_error()).count();
    if node.as_map().is_none() {
        diags.push(err(file, node, 1, format!("the sequence of rule `{rule}` must be a mapping with `within` and `steps`, found {}", node.type_name())));
        return None;
    }
    warn_unknown(file, node, SEQUENCE_KEYS, diags);
    let within = match node.get("within") {
        None => {
            diags.push(
                err(
                    file,
                    node,
                    1,
                    format!("the sequence of rule `{rule}` is missing `within`"),
                )
                .help("add e.g. `within: 10m`: how long from the first step to the last"),
            );
            None
        }
        Some(w) => match Text::from_node(file, w) {
            Some(t) => Some(t),
            None => {
                diags.push(err(
                    file,
                    w,
                    1,
                    format!(
                        "`within` must be a duration such as 10m, found {}",
                        w.type_name()
                    ),
                ));
                None
            }
        },
    };
    let mut steps = Vec::new();
    match node.get("steps").map(|s| (s, s.as_seq())) {
        None => diags.push(
            err(
                file,
                node,
                1,
                format!("the sequence of rule `{rule}` is missing `steps`"),
            )
            .help("add `steps:`, a list of at least two `{name, condition, by}`"),
        ),
        Some((s, None)) => diags.push(err(
            file,
            s,
            1,
            format!("`steps` must be a list of steps, found {}", s.type_name()),
        )),
        Some((s, Some(items))) => {
            for item in items {
                if let Some(step) = step_of(file, item, diags) {
                    if let Some(first) = steps.iter().find(|p: &&StepDef| p.name == step.name) {
                        let (line, _) = crate::diag::line_col(&file.text, first.name_loc.pos);
                        diags.push(
                            step.name_loc
                                .diag(Diagnostic::error(Code::Sequence, format!("step name `{}` is used twice in rule `{rule}`", step.name)), step.name.len())
                                .help(format!("the first `{}` is on line {line}; `%STEP.FIELD` needs names that tell steps apart", step.name)),
                        );
                        continue;
                    }
                    steps.push(step);
                }
            }
            if items.len() == 1 {
                diags.push(err(file, s, 1, format!("the sequence of rule `{rule}` has one step; a sequence needs at least two")).help("a single step is an ordinary rule: use `condition:`"));
            }
            if items.is_empty() {
                diags.push(err(
                    file,
                    s,
                    1,
                    format!("the sequence of rule `{rule}` has no steps"),
                ));
            }
        }
    }
    let failed = diags.iter().filter(|d| d.is_error()).count() > before;
    (!failed)
        .then(|| SequenceDef {
            within: within.clone(),
            steps,
            loc: Loc::of(file, node),
        })
        .filter(|s| s.within.is_some())
}

fn step_of(file: &Arc<SourceFile>, item: &Node, diags: &mut Vec<Diagnostic>) -> Option<StepDef> {
    if item.as_map().is_none() {
        diags.push(err(
            file,
            item,
            1,
            format!(
                "a step must be a mapping with `name`, `condition` and `by`, found {}",
                item.type_name()
            ),
        ));
        return None;
    }
    warn_unknown(file, item, STEP_KEYS, diags);
    let mut missing = Vec::new();
    for k in STEP_KEYS {
        if item.get(k).is_none() {
            missing.push(format!("`{k}`"));
        }
    }
    if !missing.is_empty() {
        let name = item
            .get("name")
            .and_then(Node::as_str)
            .map_or(String::new(), |n| format!(" `{n}`"));
        diags.push(err(file, item, 1, format!("step{name} is missing {}", missing.join(", "))).help("every step needs `name`, `condition` and `by` (the fields that join it to the other steps)"));
        return None;
    }
    let name_node = item.get("name")?;
    let name = match name_node.as_str().map(str::trim) {
        Some(n) if is_step_name(n) => n.to_string(),
        _ => {
            diags.push(err(file, name_node, 1, "a step name must be an identifier (letters, digits, `_`), used as `%NAME.FIELD` in the output".into()));
            return None;
        }
    };
    let cond_node = item.get("condition")?;
    let Some(condition) = Text::from_node(file, cond_node) else {
        diags.push(err(
            file,
            cond_node,
            1,
            format!(
                "the condition of step `{name}` must be a string, found {}",
                cond_node.type_name()
            ),
        ));
        return None;
    };
    let by_node = item.get("by")?;
    let entries: Vec<&Node> = match by_node.as_seq() {
        Some(items) => items.iter().collect(),
        None if by_node.as_str().is_some() => vec![by_node],
        None => Vec::new(),
    };
    let mut by = Vec::new();
    for e in &entries {
        match Text::from_node(file, e) {
            Some(t) => by.push(t),
            None => diags.push(err(
                file,
                e,
                1,
                format!(
                    "a `by` entry of step `{name}` must be a field name, found {}",
                    e.type_name()
                ),
            )),
        }
    }
    if by.is_empty() {
        diags.push(
            err(
                file,
                by_node,
                1,
                format!("step `{name}` needs at least one `by` field"),
            )
            .help("`by` lists the fields whose values join the steps, e.g. `by: [ka.user.name]`"),
        );
        return None;
    }
    Some(StepDef {
        name,
        name_loc: Loc::of(file, name_node),
        condition,
        by,
        by_loc: Loc::of(file, by_node),
    })
}

fn is_step_name(n: &str) -> bool {
    n.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
