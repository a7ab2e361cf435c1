//! Reads Falco-format rules files into definitions: lists, macros and rules,
//! with Falco's redefinition, `append`, `override`, `enabled` and version
//! semantics. Nothing is compiled here; conditions stay text with a map back
//! to the YAML they came from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::yaml::{self, Node};
use super::Priority;
use crate::diag::{Code, Diagnostic, SourceFile};

mod sequence;
mod text;
mod values;

pub use sequence::{SequenceDef, StepDef};
pub use text::{Loc, Text};
use values::*;

/// The Falco rules engine version whose rules-file features Saker accepts.
pub const ENGINE_VERSION: (u64, u64, u64) = (0, 40, 0);
/// The k8saudit plugin version whose field set Saker implements.
pub const K8SAUDIT_VERSION: (u64, u64, u64) = (0, 18, 0);
/// The json plugin version whose fields Saker implements.
pub const JSON_PLUGIN_VERSION: (u64, u64, u64) = (0, 7, 4);

#[derive(Debug, Clone)]
pub struct ListDef {
    pub name: String,
    pub items: Vec<String>,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct MacroDef {
    pub name: String,
    pub condition: Text,
    pub loc: Loc,
}

/// One exception of a rule, as written.
#[derive(Debug, Clone)]
pub struct ExceptionDef {
    pub name: String,
    /// `true` when `fields` is a single name (the scalar form).
    pub scalar: bool,
    pub fields: Vec<(String, Loc)>,
    pub comps: Vec<(String, Loc)>,
    pub values: Vec<(Node, Arc<SourceFile>)>,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct RuleDef {
    pub name: String,
    pub desc: String,
    pub condition: Text,
    pub output: Text,
    pub priority: Priority,
    pub source: Option<String>,
    pub enabled: bool,
    pub tags: BTreeSet<String>,
    pub exceptions: Vec<ExceptionDef>,
    pub skip_if_unknown_filter: bool,
    /// The `aggregate:` clause of a windowed rule.
    pub aggregate: Option<Text>,
    /// The `sequence:` of a sequence rule.
    pub sequence: Option<SequenceDef>,
    /// Extra Alertmanager labels and annotations.
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub loc: Loc,
}

impl RuleDef {
    pub fn source(&self) -> &str {
        self.source.as_deref().unwrap_or("syscall")
    }
}

/// Everything defined by the files loaded so far, in definition order.
#[derive(Debug, Default)]
pub struct Definitions {
    pub lists: Vec<ListDef>,
    pub macros: Vec<MacroDef>,
    pub rules: Vec<RuleDef>,
    list_index: HashMap<String, usize>,
    macro_index: HashMap<String, usize>,
    rule_index: HashMap<String, usize>,
    pub diagnostics: Vec<Diagnostic>,
    /// Per file, how many rules were skipped for each foreign source.
    pub skipped_sources: BTreeMap<String, BTreeMap<String, usize>>,
}

impl Definitions {
    pub fn list(&self, name: &str) -> Option<&ListDef> {
        self.list_index.get(name).map(|&i| &self.lists[i])
    }

    pub fn macro_def(&self, name: &str) -> Option<&MacroDef> {
        self.macro_index.get(name).map(|&i| &self.macros[i])
    }

    /// Reads one rules file; problems go to `self.diagnostics`.
    pub fn load(&mut self, file: Arc<SourceFile>) {
        let docs = match yaml::parse(&file.text) {
            Ok(docs) => docs,
            Err(e) => {
                let d = Diagnostic::error(Code::Yaml, format!("invalid YAML: {}", e.message));
                self.diagnostics.push(d.at(&file, e.pos, e.pos + 1));
                return;
            }
        };
        for doc in &docs {
            let Some(items) = doc.as_seq() else {
                let d = Diagnostic::error(Code::YamlStructure, "a rules file must be a sequence of items (`- rule: ...`, `- macro: ...`, `- list: ...`)");
                self.diagnostics.push(Loc::of(&file, doc).diag(d, 1));
                continue;
            };
            for item in items {
                if let Err(d) = self.load_item(&file, item) {
                    self.diagnostics.push(*d);
                }
            }
        }
    }

    fn load_item(&mut self, file: &Arc<SourceFile>, item: &Node) -> Result<(), Box<Diagnostic>> {
        let err = |node: &Node, code: Code, msg: String| -> Box<Diagnostic> {
            Box::new(Loc::of(file, node).diag(Diagnostic::error(code, msg), 1))
        };
        let Some(entries) = item.as_map() else {
            return Err(err(
                item,
                Code::YamlStructure,
                format!("expected a mapping item, found {}", item.type_name()),
            ));
        };
        let kind = [
            "required_engine_version",
            "required_plugin_versions",
            "list",
            "macro",
            "rule",
        ]
        .into_iter()
        .find(|k| item.get(k).is_some());
        match kind {
            Some("required_engine_version") => self.engine_version(file, item),
            Some("required_plugin_versions") => self.plugin_versions(file, item),
            Some("list") => self.load_list(file, item),
            Some("macro") => self.load_macro(file, item),
            Some("rule") => self.load_rule(file, item),
            _ => {
                let key = entries.first().map(|(k, _)| k).unwrap_or(item);
                let d = Diagnostic::warning(Code::UnknownItem, "unknown top-level item; expected rule, macro, list, required_engine_version or required_plugin_versions");
                self.diagnostics.push(Loc::of(file, key).diag(d, 1));
                Ok(())
            }
        }
    }

    fn warn_unknown_keys(&mut self, file: &Arc<SourceFile>, item: &Node, known: &[&str]) {
        for (k, _) in item.as_map().unwrap_or_default() {
            let name = k.as_str().unwrap_or_default();
            if !known.contains(&name) {
                let d = Diagnostic::warning(
                    Code::UnknownKey,
                    format!("unknown key `{name}`; it is ignored"),
                )
                .help_opt(crate::diag::did_you_mean(name, known.iter().copied()));
                self.diagnostics.push(Loc::of(file, k).diag(d, name.len()));
            }
        }
    }

    fn engine_version(
        &mut self,
        file: &Arc<SourceFile>,
        item: &Node,
    ) -> Result<(), Box<Diagnostic>> {
        let node = item.get("required_engine_version").expect("checked");
        let text = node.as_str().unwrap_or_default();
        let required = match text.parse::<u64>() {
            Ok(n) => Some((0, n, 0)),
            Err(_) => parse_semver(text),
        };
        let Some(required) = required else {
            let d = Diagnostic::error(
                Code::EngineVersion,
                format!("`{text}` is not a version (expected a number or x.y.z)"),
            );
            return Err(Box::new(Loc::of(file, node).diag(d, text.len().max(1))));
        };
        if required > ENGINE_VERSION {
            let d = Diagnostic::error(
                Code::EngineVersion,
                format!(
                    "rules require engine version {}, but Saker implements the rules format of Falco engine {}",
                    fmt_ver(required),
                    fmt_ver(ENGINE_VERSION)
                ),
            );
            return Err(Box::new(Loc::of(file, node).diag(d, text.len().max(1))));
        }
        Ok(())
    }

    fn plugin_versions(
        &mut self,
        file: &Arc<SourceFile>,
        item: &Node,
    ) -> Result<(), Box<Diagnostic>> {
        let node = item.get("required_plugin_versions").expect("checked");
        let Some(entries) = node.as_seq() else {
            let d = Diagnostic::error(
                Code::PluginVersion,
                "required_plugin_versions must be a sequence of {name, version}",
            );
            return Err(Box::new(Loc::of(file, node).diag(d, 1)));
        };
        for entry in entries {
            let mut candidates = vec![entry];
            candidates.extend(
                entry
                    .get("alternatives")
                    .and_then(Node::as_seq)
                    .unwrap_or_default(),
            );
            let mut verdicts = Vec::new();
            for c in &candidates {
                let name = c.get("name").and_then(Node::as_str);
                let version = c
                    .get("version")
                    .and_then(Node::as_str)
                    .and_then(parse_semver);
                let (Some(name), Some(version)) = (name, version) else {
                    let d = Diagnostic::error(
                        Code::PluginVersion,
                        "each required plugin needs a `name` and a semantic `version`",
                    );
                    return Err(Box::new(Loc::of(file, c).diag(d, 1)));
                };
                verdicts.push((name, version, plugin_satisfied(name, version)));
            }
            if verdicts.iter().any(|v| v.2 == Some(true)) {
                continue;
            }
            let (name, version, known) = verdicts[0];
            if known == Some(false) {
                let provided = if name == "json" {
                    JSON_PLUGIN_VERSION
                } else {
                    K8SAUDIT_VERSION
                };
                let d = Diagnostic::error(
                    Code::PluginVersion,
                    format!("rules require plugin `{name}` {} but Saker provides the fields of {name} {}", fmt_ver(version), fmt_ver(provided)),
                );
                return Err(Box::new(Loc::of(file, entry).diag(d, 1)));
            }
            let d = Diagnostic::warning(
                Code::PluginVersion,
                format!(
                    "plugin `{name}` is not part of Saker; rules that use its fields will not load"
                ),
            );
            self.diagnostics.push(Loc::of(file, entry).diag(d, 1));
        }
        Ok(())
    }

    fn load_list(&mut self, file: &Arc<SourceFile>, item: &Node) -> Result<(), Box<Diagnostic>> {
        self.warn_unknown_keys(file, item, &["list", "items", "append", "override"]);
        let name_node = item.get("list").expect("checked");
        let name = scalar_name(file, name_node, "list")?;
        let mode = self.mode(file, item, "items", &["items"])?;
        let items_node = item.get("items");
        let items = match items_node {
            None if mode.is_none() => return Err(missing(file, item, "list", &name, "items")),
            None => Vec::new(),
            Some(n) => match n.as_seq() {
                Some(seq) => seq
                    .iter()
                    .map(|i| i.as_str().map(str::to_string).ok_or(i))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|bad| {
                        let d = Diagnostic::error(
                            Code::YamlStructure,
                            format!(
                                "list items must be strings or numbers, found {}",
                                bad.type_name()
                            ),
                        );
                        Box::new(Loc::of(file, bad).diag(d, 1))
                    })?,
                None if n.is_null() => Vec::new(),
                None => {
                    let d = Diagnostic::error(Code::YamlStructure, "`items` must be a sequence");
                    return Err(Box::new(Loc::of(file, n).diag(d, 1)));
                }
            },
        };
        // Items naming an earlier list are inlined now, as Falco does.
        let mut expanded = Vec::with_capacity(items.len());
        for it in items {
            match self.list(&it) {
                Some(l) => expanded.extend(l.items.iter().cloned()),
                None => expanded.push(it),
            }
        }
        let loc = Loc::of(file, name_node);
        match (mode, self.list_index.get(&name)) {
            (Some(Mode::Append), Some(&i)) => self.lists[i].items.extend(expanded),
            (Some(Mode::Append), None) => {
                let d = Diagnostic::error(
                    Code::AppendMissing,
                    format!("list `{name}` uses append, but no list by that name exists yet"),
                );
                return Err(Box::new(loc.diag(d, name.len())));
            }
            (_, Some(&i)) => {
                self.lists[i] = ListDef {
                    name,
                    items: expanded,
                    loc,
                }
            }
            (_, None) => {
                self.list_index.insert(name.clone(), self.lists.len());
                self.lists.push(ListDef {
                    name,
                    items: expanded,
                    loc,
                });
            }
        }
        Ok(())
    }

    fn load_macro(&mut self, file: &Arc<SourceFile>, item: &Node) -> Result<(), Box<Diagnostic>> {
        self.warn_unknown_keys(file, item, &["macro", "condition", "append", "override"]);
        let name_node = item.get("macro").expect("checked");
        let name = scalar_name(file, name_node, "macro")?;
        let mode = self.mode(file, item, "condition", &["condition"])?;
        let Some(cond) = item.get("condition") else {
            return Err(missing(file, item, "macro", &name, "condition"));
        };
        let condition = text_of(file, cond, "condition")?;
        let loc = Loc::of(file, name_node);
        match (mode, self.macro_index.get(&name)) {
            (Some(Mode::Append), Some(&i)) => self.macros[i].condition.append(condition),
            (Some(Mode::Append), None) => {
                let d = Diagnostic::error(
                    Code::AppendMissing,
                    format!("macro `{name}` uses append, but no macro by that name exists yet"),
                );
                return Err(Box::new(loc.diag(d, name.len())));
            }
            (_, Some(&i)) => {
                self.macros[i] = MacroDef {
                    name,
                    condition,
                    loc,
                }
            }
            (_, None) => {
                self.macro_index.insert(name.clone(), self.macros.len());
                self.macros.push(MacroDef {
                    name,
                    condition,
                    loc,
                });
            }
        }
        Ok(())
    }

    /// Reads `append: true` or `override: {key: append|replace}`. Returns
    /// the mode for `main_key` (the key lists and macros can override).
    fn mode(
        &self,
        file: &Arc<SourceFile>,
        item: &Node,
        main_key: &str,
        allowed: &[&str],
    ) -> Result<Option<Mode>, Box<Diagnostic>> {
        let overrides = self.overrides(file, item, allowed)?;
        Ok(overrides.get(main_key).copied())
    }

    fn overrides(
        &self,
        file: &Arc<SourceFile>,
        item: &Node,
        allowed: &[&str],
    ) -> Result<HashMap<String, Mode>, Box<Diagnostic>> {
        let mut out = HashMap::new();
        let append = item.get("append");
        let ov = item.get("override");
        if let (Some(a), Some(_)) = (append, ov) {
            let d = Diagnostic::error(
                Code::Override,
                "`override` and `append: true` cannot be used together; use override only",
            );
            return Err(Box::new(Loc::of(file, a).diag(d, 6)));
        }
        if let Some(a) = append {
            if a.as_bool() == Some(true) {
                for k in allowed {
                    if item.get(k).is_some() {
                        out.insert(k.to_string(), Mode::Append);
                    }
                }
            }
        }
        if let Some(ov) = ov {
            let Some(entries) = ov.as_map() else {
                let d = Diagnostic::error(
                    Code::Override,
                    "`override` must map keys to `append` or `replace`",
                );
                return Err(Box::new(Loc::of(file, ov).diag(d, 1)));
            };
            for (k, v) in entries {
                let key = k.as_str().unwrap_or_default();
                let mode = match v.as_str() {
                    Some("append") => Mode::Append,
                    Some("replace") => Mode::Replace,
                    _ => {
                        let d = Diagnostic::error(
                            Code::Override,
                            format!("override of `{key}` must be `append` or `replace`"),
                        );
                        return Err(Box::new(Loc::of(file, v).diag(d, 1)));
                    }
                };
                if item.get(key).is_none() {
                    let d = Diagnostic::error(Code::Override, format!("an override for `{key}` was given but `{key}` is not defined in this item"));
                    return Err(Box::new(Loc::of(file, k).diag(d, key.len())));
                }
                out.insert(key.to_string(), mode);
            }
            for k in allowed {
                if item.get(k).is_some() && !out.contains_key(*k) {
                    let d = Diagnostic::error(
                        Code::Override,
                        format!("unexpected key `{k}`: no corresponding entry under `override`"),
                    );
                    let node = item
                        .as_map()
                        .unwrap_or_default()
                        .iter()
                        .find(|(kk, _)| kk.as_str() == Some(k))
                        .map(|(kk, _)| kk)
                        .unwrap_or(item);
                    return Err(Box::new(Loc::of(file, node).diag(d, k.len())));
                }
            }
        }
        Ok(out)
    }

    fn load_rule(&mut self, file: &Arc<SourceFile>, item: &Node) -> Result<(), Box<Diagnostic>> {
        const KEYS: &[&str] = &[
            "rule",
            "desc",
            "condition",
            "output",
            "priority",
            "source",
            "enabled",
            "tags",
            "exceptions",
            "append",
            "override",
            "skip-if-unknown-filter",
            "warn_evttypes",
            "capture",
            "capture_duration",
            "aggregate",
            "sequence",
            "labels",
            "annotations",
        ];
        self.warn_unknown_keys(file, item, KEYS);
        let name_node = item.get("rule").expect("checked");
        let name = scalar_name(file, name_node, "rule")?;
        let loc = Loc::of(file, name_node);
        let overrides = self.overrides(
            file,
            item,
            &[
                "condition",
                "output",
                "desc",
                "tags",
                "exceptions",
                "priority",
                "enabled",
                "skip-if-unknown-filter",
                "aggregate",
                "labels",
                "annotations",
            ],
        )?;
        let has_body = ["condition", "output", "desc", "priority"]
            .iter()
            .any(|k| item.get(k).is_some());
        let existing = self.rule_index.get(&name).copied();

        if !overrides.is_empty() || (!has_body && item.get("enabled").is_some()) {
            let Some(i) = existing else {
                let what = if overrides.is_empty() {
                    "has `enabled`"
                } else {
                    "uses append or override"
                };
                let d = Diagnostic::error(
                    Code::AppendMissing,
                    format!("rule `{name}` {what}, but no rule by that name exists yet"),
                );
                return Err(Box::new(loc.diag(d, name.len())));
            };
            if overrides.is_empty() {
                let d = Diagnostic::warning(
                    Code::Deprecated,
                    "a standalone `enabled` item is deprecated; use `override: {enabled: replace}`",
                );
                self.diagnostics.push(loc.diag(d, name.len()));
            }
            return self.modify_rule(file, item, i, &overrides);
        }

        let mut missing_keys = Vec::new();
        for k in ["condition", "output", "priority"] {
            // A sequence's conditions are its steps'.
            if item.get(k).is_none() && !(k == "condition" && item.get("sequence").is_some()) {
                missing_keys.push(k);
            }
        }
        if !missing_keys.is_empty() {
            let d = Diagnostic::error(
                Code::MissingKey,
                format!(
                    "rule `{name}` is missing {}",
                    missing_keys
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            return Err(Box::new(loc.diag(d, name.len())));
        }
        let sequence = match item.get("sequence") {
            Some(node) => match sequence::sequence_of(file, &name, node, &mut self.diagnostics) {
                Some(s) => Some(s),
                // Its problems are reported; the rule is not defined.
                None => return Ok(()),
            },
            None => None,
        };
        let condition = match item.get("condition") {
            Some(node) => text_of(file, node, "condition")?,
            None => Text::empty_at(file, name_node),
        };
        let output_node = item.get("output").expect("checked");
        let mut output = text_of(file, output_node, "output")?;
        output.text = output.text.trim().to_string();
        let rule = RuleDef {
            desc: item
                .get("desc")
                .and_then(Node::as_str)
                .unwrap_or_default()
                .trim()
                .to_string(),
            condition,
            output,
            // A bad priority is reported, but the rule is still compiled so
            // that its other problems are reported too.
            priority: priority_of(file, item.get("priority").expect("checked")).unwrap_or_else(
                |d| {
                    self.diagnostics.push(*d);
                    Priority::Debug
                },
            ),
            source: item
                .get("source")
                .and_then(Node::as_str)
                .map(str::to_string),
            enabled: bool_of(file, item.get("enabled"), true)?,
            tags: tags_of(file, item.get("tags"))?,
            exceptions: exceptions_of(file, item.get("exceptions"))?,
            skip_if_unknown_filter: bool_of(file, item.get("skip-if-unknown-filter"), false)?,
            aggregate: item
                .get("aggregate")
                .map(|n| text_of(file, n, "aggregate"))
                .transpose()?,
            sequence,
            labels: string_map(file, item.get("labels"), "labels")?,
            annotations: string_map(file, item.get("annotations"), "annotations")?,
            loc,
            name: name.clone(),
        };
        match existing {
            Some(i) => {
                if let (Some(a), Some(b)) = (&self.rules[i].source, &rule.source) {
                    if a != b {
                        let d = Diagnostic::error(Code::Redefinition, format!("rule `{name}` has been re-defined with a different source ({b}, was {a})"));
                        return Err(Box::new(rule.loc.diag(d, name.len())));
                    }
                }
                self.rules[i] = rule;
            }
            None => {
                self.rule_index.insert(name, self.rules.len());
                self.rules.push(rule);
            }
        }
        Ok(())
    }

    fn modify_rule(
        &mut self,
        file: &Arc<SourceFile>,
        item: &Node,
        i: usize,
        ov: &HashMap<String, Mode>,
    ) -> Result<(), Box<Diagnostic>> {
        let mode = |k: &str| ov.get(k).copied();
        let rule = &mut self.rules[i];
        if let Some(m) = mode("condition") {
            let t = text_of(file, item.get("condition").expect("checked"), "condition")?;
            match m {
                Mode::Append => rule.condition.append(t),
                Mode::Replace => rule.condition = t,
            }
        }
        if let Some(m) = mode("output") {
            let mut t = text_of(file, item.get("output").expect("checked"), "output")?;
            t.text = t.text.trim().to_string();
            match m {
                Mode::Append => rule.output.append(t),
                Mode::Replace => rule.output = t,
            }
        }
        if let Some(m) = mode("desc") {
            let d = item
                .get("desc")
                .and_then(Node::as_str)
                .unwrap_or_default()
                .trim()
                .to_string();
            match m {
                Mode::Append => rule.desc = format!("{} {d}", rule.desc),
                Mode::Replace => rule.desc = d,
            }
        }
        if let Some(m) = mode("tags") {
            let tags = tags_of(file, item.get("tags"))?;
            if m == Mode::Replace {
                rule.tags.clear();
            }
            rule.tags.extend(tags);
        }
        if mode("priority").is_some() {
            rule.priority = priority_of(file, item.get("priority").expect("checked"))?;
        }
        if mode("aggregate").is_some() {
            rule.aggregate = Some(text_of(
                file,
                item.get("aggregate").expect("checked"),
                "aggregate",
            )?);
        }
        for (key, target) in [
            ("labels", &mut rule.labels),
            ("annotations", &mut rule.annotations),
        ] {
            if let Some(m) = mode(key) {
                let new = string_map(file, item.get(key), key)?;
                if m == Mode::Replace {
                    target.clear();
                }
                for (k, v) in new {
                    target.retain(|(old, _)| *old != k);
                    target.push((k, v));
                }
            }
        }
        if mode("skip-if-unknown-filter").is_some() {
            rule.skip_if_unknown_filter = bool_of(file, item.get("skip-if-unknown-filter"), false)?;
        }
        if mode("enabled").is_some() || ov.is_empty() {
            rule.enabled = bool_of(file, item.get("enabled"), true)?;
        }
        if let Some(m) = mode("exceptions") {
            let new = exceptions_of(file, item.get("exceptions"))?;
            match m {
                Mode::Replace => rule.exceptions = new,
                Mode::Append => {
                    for exc in new {
                        match rule.exceptions.iter_mut().find(|e| e.name == exc.name) {
                            Some(old) => {
                                if item.get("exceptions").is_some()
                                    && !exc.fields.is_empty()
                                    && exc
                                        .fields
                                        .iter()
                                        .map(|f| &f.0)
                                        .ne(old.fields.iter().map(|f| &f.0))
                                {
                                    let d = Diagnostic::error(Code::Exception, "cannot append exception fields to an existing exception, only values");
                                    return Err(Box::new(exc.loc.diag(d, exc.name.len())));
                                }
                                old.values.extend(exc.values);
                            }
                            None => rule.exceptions.push(exc),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Rules with a source other than `k8s_audit` are dropped (and counted
    /// per file); Saker only sees Kubernetes audit events.
    pub fn drop_foreign_rules(&mut self) {
        let mut kept = Vec::with_capacity(self.rules.len());
        for r in self.rules.drain(..) {
            if r.source() == "k8s_audit" {
                kept.push(r);
            } else {
                *self
                    .skipped_sources
                    .entry(r.loc.file.name.clone())
                    .or_default()
                    .entry(r.source().to_string())
                    .or_default() += 1;
            }
        }
        self.rules = kept;
        self.rule_index = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Append,
    Replace,
}

#[cfg(test)]
mod tests;
