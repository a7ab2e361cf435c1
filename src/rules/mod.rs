//! Rules: Falco-format rules files → definitions (`loader`) → conditions
//! parsed (`parser`, grammar in `grammar/condition.pest`) → compiled once
//! into a flat [`Program`] (`compile`, `predicate`). [`RuleSet::matches`]
//! is what the engine calls per event.

pub mod aggregate;
pub mod ast;
pub mod compile;
pub mod fingerprint;
pub mod first_seen;
pub mod index;
pub mod ipnet;
pub mod lint;
pub mod loader;
pub mod parser;
pub mod predicate;
pub mod stateful;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Code, Diagnostic, SourceFile};
use crate::event::Event;
use crate::fields::extract::Val;
use crate::window;
pub use index::Candidate;
use index::RuleIndex;
use predicate::{EvalCtx, NodeId, OperandId, Program};

/// The rule files shipped with Saker, embedded in the binary.
pub const DEFAULT_RULES: &[(&str, &str)] = &[
    (
        "rules/k8s_audit.yaml",
        include_str!("../../rules/k8s_audit.yaml"),
    ),
    (
        "rules/k8s_audit_windowed.yaml",
        include_str!("../../rules/k8s_audit_windowed.yaml"),
    ),
    (
        "rules/k8s_audit_stateful.yaml",
        include_str!("../../rules/k8s_audit_stateful.yaml"),
    ),
];

/// Falco's priorities, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

impl Priority {
    /// Case-insensitive; `INFO` is `Informational`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "emergency" => Priority::Emergency,
            "alert" => Priority::Alert,
            "critical" => Priority::Critical,
            "error" => Priority::Error,
            "warning" => Priority::Warning,
            "notice" => Priority::Notice,
            "info" | "informational" => Priority::Informational,
            "debug" => Priority::Debug,
            _ => return None,
        })
    }

    /// The name Falco prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }
}

/// A piece of a compiled output template.
#[derive(Debug, Clone)]
pub enum OutputPart {
    Text(String),
    /// A field of the event (per-event rules).
    Value(OperandId),
    /// The value of the `by` field at this index (windowed rules).
    Key(usize),
    /// `%agg.value`, `%agg.threshold`, ... (windowed rules).
    Agg(AggField),
}

/// The `%agg.*` fields of windowed rules' outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggField {
    Value,
    Threshold,
    Window,
    For,
    State,
}

impl AggField {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "agg.value" => AggField::Value,
            "agg.threshold" => AggField::Threshold,
            "agg.window" => AggField::Window,
            "agg.for" => AggField::For,
            "agg.state" => AggField::State,
            _ => return None,
        })
    }
}

/// The windowed part of a rule with `aggregate:`.
#[derive(Debug)]
pub struct Aggregate {
    pub spec: window::Spec,
    /// `by` fields: as written, and their operands.
    pub by: Vec<(String, OperandId)>,
    /// The field of `distinct(...)`.
    pub distinct: Option<OperandId>,
    /// The threshold as written (`1/min`, `20`).
    pub threshold_text: String,
    pub window_text: String,
    pub hold_text: Option<String>,
}

/// Settings that change how rules compile.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// The tick of windowed rules (`--resolution`); windows and `for`
    /// durations must be whole multiples of it.
    pub resolution_ns: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            resolution_ns: 1_000_000_000,
        }
    }
}

#[derive(Debug)]
pub struct CompiledRule {
    pub name: String,
    pub desc: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub root: NodeId,
    pub output: Vec<OutputPart>,
    /// Field tokens of the output, as written, in order of appearance.
    pub output_fields: Vec<(String, OutputPart)>,
    /// Present on windowed rules.
    pub aggregate: Option<Aggregate>,
    /// Present on sequence and first-seen rules.
    pub stateful: Option<stateful::StatefulRule>,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
}

/// Every compiled rule, in definition order, sharing one program.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub program: Program,
    pub rules: Vec<CompiledRule>,
    index: RuleIndex,
}

impl RuleSet {
    pub fn new(program: Program, rules: Vec<CompiledRule>) -> Self {
        let index = RuleIndex::build(&program, &rules);
        RuleSet {
            program,
            rules,
            index,
        }
    }

    /// The rules that can match this event, in definition order, with the
    /// sequence steps that can.
    pub fn candidates<'a>(&self, ev: &Event<'a>, cx: &mut EvalCtx<'a>) -> &[Candidate] {
        self.index.candidates(&self.program, ev, cx)
    }

    /// Fresh per-event evaluation state.
    pub fn context<'a>(&self) -> EvalCtx<'a> {
        EvalCtx::new(&self.program)
    }

    /// Whether rule `i` matches the event.
    pub fn matches<'a>(&self, i: usize, ev: &Event<'a>, cx: &mut EvalCtx<'a>) -> bool {
        let rule = &self.rules[i];
        rule.enabled && self.program.eval(rule.root, ev, cx)
    }

    /// The rule's output with values filled in (`<NA>` when missing).
    pub fn render_output<'a>(&self, i: usize, ev: &Event<'a>, cx: &mut EvalCtx<'a>) -> String {
        let mut out = String::new();
        for part in &self.rules[i].output {
            match part {
                OutputPart::Text(t) => out.push_str(t),
                OutputPart::Value(id) => match self.program.value(*id, ev, cx) {
                    Some(v) => out.push_str(&v.render()),
                    None => out.push_str("<NA>"),
                },
                // Windowed parts are rendered by the engine, not per event.
                OutputPart::Key(_) | OutputPart::Agg(_) => out.push_str("<NA>"),
            }
        }
        out
    }

    /// The output fields' values for JSON output.
    /// The names of rule `i`'s output fields, in the order of
    /// [`RuleSet::output_values`].
    pub fn output_field_names(&self, i: usize) -> Vec<&str> {
        self.rules[i]
            .output_fields
            .iter()
            .map(|(name, _)| name.as_str())
            .collect()
    }

    pub fn output_values<'a>(
        &self,
        i: usize,
        ev: &Event<'a>,
        cx: &mut EvalCtx<'a>,
    ) -> Vec<(&str, Option<Val<'a>>)> {
        self.rules[i]
            .output_fields
            .iter()
            .map(|(name, part)| match part {
                OutputPart::Value(id) => (name.as_str(), self.program.value(*id, ev, cx)),
                _ => (name.as_str(), None),
            })
            .collect()
    }
}

/// The result of loading rules: the rule set if there were no errors, and
/// every diagnostic (errors and warnings) in file order.
pub struct Loaded {
    pub rules: Option<RuleSet>,
    pub diagnostics: Vec<Diagnostic>,
    /// Summaries of rules skipped for their source, one line per file.
    pub notes: Vec<String>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Where rules come from.
#[derive(Debug, Clone)]
pub enum RuleSource {
    File(PathBuf),
    Embedded(&'static str, &'static str),
}

/// Expands `--rules` arguments: a directory stands for its `*.yaml` and
/// `*.yml` files in name order.
pub fn expand_paths(paths: &[PathBuf]) -> std::io::Result<Vec<RuleSource>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            files.sort();
            out.extend(files.into_iter().map(RuleSource::File));
        } else {
            out.push(RuleSource::File(p.clone()));
        }
    }
    Ok(out)
}

/// The embedded default rules.
pub fn default_sources() -> Vec<RuleSource> {
    DEFAULT_RULES
        .iter()
        .map(|(n, t)| RuleSource::Embedded(n, t))
        .collect()
}

/// Loads and compiles rule files, in order, with default options.
pub fn load(sources: &[RuleSource]) -> Loaded {
    load_with(sources, &LoadOptions::default())
}

/// Loads and compiles rule files, in order.
pub fn load_with(sources: &[RuleSource], options: &LoadOptions) -> Loaded {
    let mut defs = loader::Definitions::default();
    let mut diagnostics = Vec::new();
    for src in sources {
        let file = match src {
            RuleSource::Embedded(name, text) => SourceFile {
                name: name.to_string(),
                text: text.to_string(),
            },
            RuleSource::File(path) => match read(path) {
                Ok(f) => f,
                Err(d) => {
                    diagnostics.push(*d);
                    continue;
                }
            },
        };
        defs.load(Arc::new(file));
    }
    defs.drop_foreign_rules();
    let notes = defs
        .skipped_sources
        .iter()
        .map(|(file, by_source)| {
            let total: usize = by_source.values().sum();
            let detail: Vec<String> = by_source.iter().map(|(s, n)| format!("{s}: {n}")).collect();
            format!(
                "{file}: skipped {total} rule(s) whose source is not k8s_audit ({})",
                detail.join(", ")
            )
        })
        .collect();
    diagnostics.append(&mut defs.diagnostics);
    let load_failed = diagnostics.iter().any(Diagnostic::is_error);
    let (set, mut compile_diags) = compile::compile(&defs, options);
    diagnostics.append(&mut compile_diags);
    let ok = !load_failed && !diagnostics.iter().any(Diagnostic::is_error);
    if ok {
        diagnostics.extend(lint::lint(&defs));
    }
    // Report in file order, then position; problems without a place first.
    let order: Vec<String> = sources
        .iter()
        .map(|s| match s {
            RuleSource::File(p) => p.display().to_string(),
            RuleSource::Embedded(n, _) => n.to_string(),
        })
        .collect();
    diagnostics.sort_by_key(|d| {
        let file = d
            .file
            .as_ref()
            .and_then(|f| order.iter().position(|n| *n == f.name));
        (file.map_or(0, |i| i + 1), d.span.map_or(0, |s| s.0))
    });
    Loaded {
        rules: ok.then_some(set),
        diagnostics,
        notes,
    }
}

fn read(path: &Path) -> Result<SourceFile, Box<Diagnostic>> {
    let fail = |msg: String| Box::new(Diagnostic::error(Code::Read, msg));
    let bytes = std::fs::read(path)
        .map_err(|e| fail(format!("cannot read rules file {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| fail(format!("rules file {} is not UTF-8", path.display())))?;
    Ok(SourceFile {
        name: path.display().to_string(),
        text,
    })
}
