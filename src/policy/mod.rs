//! Kubernetes audit policies (`audit.k8s.io/v1` `Policy`): the model and
//! its reader, with every problem placed at `file:line:col`. [`matcher`]
//! decides a request's level with the API server's exact semantics;
//! [`lint`], [`check`] and [`simulate`] are `saker policy lint|check|simulate`;
//! [`retention`] is how long the API server's log files last at the
//! simulated volume.

pub mod check;
pub mod known;
pub mod lint;
pub mod matcher;
pub mod probes;
pub mod retention;
pub mod simulate;

use std::fmt;
use std::sync::Arc;

use crate::diag::{did_you_mean, Code, Diagnostic, SourceFile};
use crate::rules::yaml::{self, Node};

/// How much of a request is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub const ALL: [Level; 4] = [
        Level::None,
        Level::Metadata,
        Level::Request,
        Level::RequestResponse,
    ];

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stages an audit event can be written at.
pub const STAGES: [&str; 4] = [
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

/// A string of a policy with its byte offset in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    pub value: String,
    pub pos: usize,
}

/// One `group` entry of a rule's `resources`.
#[derive(Debug, Clone)]
pub struct GroupResources {
    pub pos: usize,
    /// The API group without version; `""` is the core group.
    pub group: Spanned,
    pub resources: Vec<Spanned>,
    pub resource_names: Vec<Spanned>,
}

/// One rule of the policy, in order.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Offset of the rule's first key.
    pub pos: usize,
    pub level: Level,
    pub users: Vec<Spanned>,
    pub user_groups: Vec<Spanned>,
    pub verbs: Vec<Spanned>,
    pub resources: Vec<GroupResources>,
    pub namespaces: Vec<Spanned>,
    pub non_resource_urls: Vec<Spanned>,
    pub omit_stages: Vec<Spanned>,
    pub omit_managed_fields: Option<bool>,
    /// Where `resources:` and `nonResourceURLs:` are, for messages.
    pub resources_pos: Option<usize>,
    pub urls_pos: Option<usize>,
}

impl Rule {
    /// A rule with no conditions: it matches every request.
    pub fn is_catch_all(&self) -> bool {
        self.users.is_empty()
            && self.user_groups.is_empty()
            && self.verbs.is_empty()
            && self.resources.is_empty()
            && self.namespaces.is_empty()
            && self.non_resource_urls.is_empty()
    }
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub file: Arc<SourceFile>,
    pub omit_stages: Vec<Spanned>,
    pub omit_managed_fields: bool,
    pub rules: Vec<Rule>,
    /// Where `rules:` is (or the document, when it is missing).
    pub rules_pos: usize,
}

impl Policy {
    /// `file:line` of a byte offset.
    pub fn line_of(&self, pos: usize) -> usize {
        crate::diag::line_col(&self.file.text, pos).0
    }

    /// `name:line` of a byte offset, for messages.
    pub fn place(&self, pos: usize) -> String {
        format!("{}:{}", self.file.name, self.line_of(pos))
    }
}

const POLICY_KEYS: [&str; 5] = ["apiVersion", "kind", "metadata", "rules", "omitStages"];
const POLICY_KEYS_MORE: [&str; 1] = ["omitManagedFields"];
const RULE_KEYS: [&str; 10] = [
    "level",
    "users",
    "userGroups",
    "verbs",
    "resources",
    "namespaces",
    "nonResourceURLs",
    "omitStages",
    "omitManagedFields",
    "_",
];
const GROUP_KEYS: [&str; 3] = ["group", "resources", "resourceNames"];

/// Reads a policy file. Returns the policy when it could be read at all,
/// and every problem found on the way (errors for anything the API server
/// would refuse or that cannot mean what it says).
pub fn parse(file: Arc<SourceFile>) -> (Option<Policy>, Vec<Diagnostic>) {
    let mut r = Reader {
        file: file.clone(),
        diags: Vec::new(),
    };
    let docs = match yaml::parse(&file.text) {
        Ok(d) => d,
        Err(e) => {
            let d = Diagnostic::error(Code::Yaml, format!("invalid YAML: {}", e.message)).at(
                &file,
                e.pos,
                e.pos + 1,
            );
            return (None, vec![d]);
        }
    };
    let Some(doc) = docs.first() else {
        let d = Diagnostic::error(Code::EmptyPolicy, "the file holds no policy").at(&file, 0, 0);
        return (None, vec![d]);
    };
    let Some(entries) = doc.as_map() else {
        r.error(
            doc,
            Code::NotAPolicy,
            format!("a policy is a mapping, not {}", doc.type_name()),
        );
        return (None, r.diags);
    };
    let mut policy = Policy {
        file: file.clone(),
        omit_stages: Vec::new(),
        omit_managed_fields: false,
        rules: Vec::new(),
        rules_pos: doc.pos,
    };
    let mut saw_rules = false;
    for (k, v) in entries {
        let key = k.as_str().unwrap_or_default();
        match key {
            "apiVersion" => match v.as_str() {
                Some("audit.k8s.io/v1") => {}
                Some(other @ ("audit.k8s.io/v1beta1" | "audit.k8s.io/v1alpha1")) => r.warn(
                    v,
                    Code::ApiVersion,
                    format!("{other} was removed in Kubernetes 1.24; use audit.k8s.io/v1"),
                ),
                _ => r.error(v, Code::ApiVersion, "apiVersion must be audit.k8s.io/v1"),
            },
            "kind" => {
                if v.as_str() != Some("Policy") {
                    r.error(v, Code::NotAPolicy, "kind must be Policy");
                }
            }
            "metadata" => {}
            "omitStages" => policy.omit_stages = r.stages(v),
            "omitManagedFields" => policy.omit_managed_fields = r.boolean(v).unwrap_or(false),
            "rules" => {
                saw_rules = true;
                policy.rules_pos = k.pos;
                if v.is_null() {
                    continue;
                }
                match v.as_seq() {
                    Some(items) => {
                        policy.rules = items.iter().filter_map(|item| r.rule(item)).collect()
                    }
                    None => r.error(
                        v,
                        Code::BadValue,
                        format!("rules must be a list, not {}", v.type_name()),
                    ),
                }
            }
            other => r.unknown_key(k, other, POLICY_KEYS.iter().chain(&POLICY_KEYS_MORE)),
        }
    }
    if !saw_rules {
        r.error(
            doc,
            Code::EmptyRules,
            "the policy has no `rules`: the API server logs nothing",
        );
    }
    (Some(policy), r.diags)
}

struct Reader {
    file: Arc<SourceFile>,
    diags: Vec<Diagnostic>,
}

impl Reader {
    fn span(&self, node: &Node) -> (usize, usize) {
        let len = node.as_str().map_or(1, |s| s.len().max(1));
        (node.pos, node.pos + len)
    }

    fn error(&mut self, node: &Node, code: Code, msg: impl Into<String>) {
        let (s, e) = self.span(node);
        self.diags
            .push(Diagnostic::error(code, msg).at(&self.file, s, e));
    }

    fn warn(&mut self, node: &Node, code: Code, msg: impl Into<String>) {
        let (s, e) = self.span(node);
        self.diags
            .push(Diagnostic::warning(code, msg).at(&self.file, s, e));
    }

    fn unknown_key<'a>(&mut self, k: &Node, key: &str, known: impl Iterator<Item = &'a &'a str>) {
        let known: Vec<&str> = known.copied().filter(|k| *k != "_").collect();
        let (s, e) = self.span(k);
        self.diags.push(
            Diagnostic::error(
                Code::UnknownKey,
                format!("unknown key `{key}` (the API server refuses the policy)"),
            )
            .at(&self.file, s, e)
            .help_opt(did_you_mean(key, known.iter().copied())),
        );
    }

    fn boolean(&mut self, v: &Node) -> Option<bool> {
        let b = v.as_bool();
        if b.is_none() {
            self.error(v, Code::BadValue, "expected true or false");
        }
        b
    }

    fn strings(&mut self, v: &Node, what: &str) -> Vec<Spanned> {
        if v.is_null() {
            return Vec::new();
        }
        let Some(items) = v.as_seq() else {
            self.error(
                v,
                Code::BadValue,
                format!("{what} must be a list of strings, not {}", v.type_name()),
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|i| match i.as_str() {
                Some(s) if i.as_scalar().is_some() => Some(Spanned {
                    value: s.to_string(),
                    pos: i.pos,
                }),
                _ => {
                    self.error(
                        i,
                        Code::BadValue,
                        format!("{what} must hold strings, not {}", i.type_name()),
                    );
                    None
                }
            })
            .collect()
    }

    fn stages(&mut self, v: &Node) -> Vec<Spanned> {
        let stages = self.strings(v, "omitStages");
        for s in &stages {
            if !STAGES.contains(&s.value.as_str()) {
                let d = Diagnostic::error(
                    Code::BadStage,
                    format!("`{}` is not a stage ({})", s.value, STAGES.join(", ")),
                )
                .at(&self.file, s.pos, s.pos + s.value.len().max(1))
                .help_opt(did_you_mean(&s.value, STAGES));
                self.diags.push(d);
            }
        }
        stages
    }

    fn rule(&mut self, item: &Node) -> Option<Rule> {
        let Some(entries) = item.as_map() else {
            self.error(
                item,
                Code::BadValue,
                format!("a rule is a mapping, not {}", item.type_name()),
            );
            return None;
        };
        let mut rule = Rule {
            pos: entries.first().map_or(item.pos, |(k, _)| k.pos),
            level: Level::None,
            users: Vec::new(),
            user_groups: Vec::new(),
            verbs: Vec::new(),
            resources: Vec::new(),
            namespaces: Vec::new(),
            non_resource_urls: Vec::new(),
            omit_stages: Vec::new(),
            omit_managed_fields: None,
            resources_pos: None,
            urls_pos: None,
        };
        let mut level = None;
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            match key {
                "level" => match v.as_str().and_then(Level::parse) {
                    Some(l) => level = Some(l),
                    None => {
                        let got = v.as_str().unwrap_or_default().to_string();
                        let (s, e) = self.span(v);
                        self.diags.push(
                            Diagnostic::error(
                                Code::BadLevel,
                                format!("`{got}` is not a level (None, Metadata, Request, RequestResponse)"),
                            )
                            .at(&self.file, s, e)
                            .help_opt(did_you_mean(&got, Level::ALL.map(Level::as_str))),
                        );
                        level = Some(Level::None);
                    }
                },
                "users" => rule.users = self.strings(v, "users"),
                "userGroups" => rule.user_groups = self.strings(v, "userGroups"),
                "verbs" => rule.verbs = self.strings(v, "verbs"),
                "namespaces" => rule.namespaces = self.strings(v, "namespaces"),
                "nonResourceURLs" => {
                    rule.urls_pos = Some(k.pos);
                    rule.non_resource_urls = self.strings(v, "nonResourceURLs");
                }
                "omitStages" => rule.omit_stages = self.stages(v),
                "omitManagedFields" => rule.omit_managed_fields = self.boolean(v),
                "resources" => {
                    rule.resources_pos = Some(k.pos);
                    rule.resources = self.groups(v);
                }
                other => self.unknown_key(k, other, RULE_KEYS.iter()),
            }
        }
        match level {
            Some(l) => rule.level = l,
            None => self.error(item, Code::MissingLevel, "a rule needs a `level`"),
        }
        Some(rule)
    }

    fn groups(&mut self, v: &Node) -> Vec<GroupResources> {
        if v.is_null() {
            return Vec::new();
        }
        let Some(items) = v.as_seq() else {
            self.error(
                v,
                Code::BadValue,
                format!("resources must be a list of groups, not {}", v.type_name()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let Some(entries) = item.as_map() else {
                self.error(
                    item,
                    Code::BadValue,
                    "each resources entry is a mapping with `group`, `resources`, `resourceNames`",
                );
                continue;
            };
            let mut gr = GroupResources {
                pos: entries.first().map_or(item.pos, |(k, _)| k.pos),
                group: Spanned {
                    value: String::new(),
                    pos: item.pos,
                },
                resources: Vec::new(),
                resource_names: Vec::new(),
            };
            for (k, v) in entries {
                match k.as_str().unwrap_or_default() {
                    "group" => {
                        gr.group = Spanned {
                            value: v.as_str().unwrap_or_default().to_string(),
                            pos: v.pos,
                        }
                    }
                    "resources" => gr.resources = self.strings(v, "resources"),
                    "resourceNames" => gr.resource_names = self.strings(v, "resourceNames"),
                    other => self.unknown_key(k, other, GROUP_KEYS.iter()),
                }
            }
            out.push(gr);
        }
        out
    }
}

/// Reads and parses a policy file; an unreadable file is an `Err`.
pub fn load(path: &std::path::Path) -> Result<(Option<Policy>, Vec<Diagnostic>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(parse(Arc::new(SourceFile {
        name: path.display().to_string(),
        text,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn policy(text: &str) -> (Option<Policy>, Vec<Diagnostic>) {
        parse(Arc::new(SourceFile {
            name: "p.yaml".into(),
            text: text.into(),
        }))
    }

    #[test]
    fn reads_rules_with_positions() {
        let (p, d) = policy(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  resources:\n  - group: \"\"\n    resources: [\"pods/exec\"]\n- level: None\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let p = p.unwrap();
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.line_of(p.rules[0].pos), 5);
        assert_eq!(p.rules[0].resources[0].resources[0].value, "pods/exec");
        assert_eq!(p.line_of(p.rules[0].resources[0].resources[0].pos), 8);
        assert!(p.rules[1].is_catch_all());
        assert_eq!(p.omit_stages[0].value, "RequestReceived");
    }

    #[test]
    fn bad_input_is_placed_and_explained() {
        let (_, d) = policy(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadta\n  verb: [get]\n  omitStages: [RequestRecieved]\n",
        );
        let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        let all = text.join("\n");
        assert!(
            all.contains("p.yaml:4:10") && all.contains("did you mean `Metadata`?"),
            "{all}"
        );
        assert!(
            all.contains("unknown key `verb`") && all.contains("did you mean `verbs`?"),
            "{all}"
        );
        assert!(all.contains("did you mean `RequestReceived`?"), "{all}");
        assert!(d.iter().all(|d| d.is_error()));
    }

    #[test]
    fn a_policy_without_rules_is_an_error() {
        let (_, d) = policy("apiVersion: audit.k8s.io/v1\nkind: Policy\n");
        assert_eq!(d[0].code, Code::EmptyRules);
        let (_, d) = policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n");
        assert!(
            d.is_empty(),
            "an empty list is the linter's finding, not a parse error"
        );
    }
}
