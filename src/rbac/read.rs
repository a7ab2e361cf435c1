//! Reading RBAC objects from YAML nodes that remember their positions
//! (`rules/yaml.rs`), checking what the API server's validation checks.
//! Objects of other kinds are ignored, so a directory of manifests works.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diag::{did_you_mean, Code, Diagnostic, SourceFile};
use crate::rules::yaml::{self, Node};

use super::{
    Binding, BindingKind, Objects, Operator, PolicyRule, Requirement, Role, RoleKind, Selector,
    Subject, SubjectKind,
};

const RULE_KEYS: [&str; 5] = [
    "apiGroups",
    "resources",
    "verbs",
    "resourceNames",
    "nonResourceURLs",
];

pub(super) fn read_file(
    file: &Arc<SourceFile>,
    objects: &mut Objects,
    diags: &mut Vec<Diagnostic>,
) {
    let docs = match yaml::parse(&file.text) {
        Ok(d) => d,
        Err(e) => {
            diags.push(
                Diagnostic::error(Code::Yaml, format!("invalid YAML: {}", e.message)).at(
                    file,
                    e.pos,
                    e.pos + 1,
                ),
            );
            return;
        }
    };
    let mut r = Reader {
        file: file.clone(),
        diags,
    };
    for doc in &docs {
        r.object(doc, objects);
    }
}

struct Reader<'d> {
    file: Arc<SourceFile>,
    diags: &'d mut Vec<Diagnostic>,
}

impl Reader<'_> {
    fn error(&mut self, node: &Node, code: Code, msg: impl Into<String>) {
        let len = node.as_str().map_or(1, |s| s.len().max(1));
        self.diags
            .push(Diagnostic::error(code, msg).at(&self.file, node.pos, node.pos + len));
    }

    /// A string value of `key`, required.
    fn required<'n>(&mut self, obj: &'n Node, key: &str, what: &str) -> Option<&'n str> {
        match obj.get(key) {
            Some(v) => match v.as_scalar() {
                Some(s) if !v.is_null() && !s.value.is_empty() => Some(s.value.as_str()),
                _ => {
                    self.error(
                        v,
                        Code::BadValue,
                        format!("{what} `{key}` must be a non-empty string"),
                    );
                    None
                }
            },
            None => {
                self.error(obj, Code::MissingKey, format!("{what} has no `{key}`"));
                None
            }
        }
    }

    fn strings(&mut self, v: Option<&Node>, what: &str) -> Vec<String> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Vec::new();
        };
        let Some(items) = v.as_seq() else {
            self.error(
                v,
                Code::BadValue,
                format!("`{what}` must be a list of strings"),
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|i| match i.as_scalar() {
                Some(s) => Some(s.value.clone()),
                None => {
                    self.error(
                        i,
                        Code::BadValue,
                        format!("`{what}` must hold strings, not {}", i.type_name()),
                    );
                    None
                }
            })
            .collect()
    }

    fn object(&mut self, node: &Node, objects: &mut Objects) {
        if node.as_map().is_none() {
            self.error(
                node,
                Code::NotAnObject,
                format!(
                    "expected a Kubernetes object (a mapping), not {}",
                    node.type_name()
                ),
            );
            return;
        }
        let Some(kind) = self.required(node, "kind", "an object") else {
            return;
        };
        match kind {
            "Role" | "ClusterRole" => {
                if let Some(r) = self.role(node, kind == "Role") {
                    objects.roles.push(r);
                }
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                if let Some(b) = self.binding(node, kind == "RoleBinding") {
                    objects.bindings.push(b);
                }
            }
            k if k == "List" || k.ends_with("List") => match node.get("items") {
                Some(items) if items.is_null() => {}
                Some(items) => match items.as_seq() {
                    Some(seq) => seq.iter().for_each(|i| self.object(i, objects)),
                    None => self.error(items, Code::BadValue, "`items` must be a list of objects"),
                },
                None => self.error(node, Code::MissingKey, format!("a {k} has no `items`")),
            },
            _ => {}
        }
    }

    /// `metadata.name` and, for namespaced kinds, `metadata.namespace`.
    fn metadata<'n>(
        &mut self,
        node: &'n Node,
        kind: &str,
        namespaced: bool,
    ) -> Option<(String, String, Option<&'n Node>)> {
        let Some(meta) = node.get("metadata").filter(|m| m.as_map().is_some()) else {
            self.error(
                node,
                Code::MissingKey,
                format!("a {kind} has no `metadata`"),
            );
            return None;
        };
        let name = self
            .required(meta, "name", &format!("a {kind}'s metadata"))?
            .to_string();
        let namespace = if namespaced {
            self.required(
                meta,
                "namespace",
                &format!("a {kind} is namespaced: its metadata"),
            )?
            .to_string()
        } else {
            String::new()
        };
        Some((name, namespace, meta.get("labels")))
    }

    fn role(&mut self, node: &Node, namespaced: bool) -> Option<Role> {
        let kind = if namespaced { "Role" } else { "ClusterRole" };
        let (name, namespace, labels) = self.metadata(node, kind, namespaced)?;
        let labels = self.labels(labels);
        let rules = match node.get("rules").filter(|r| !r.is_null()) {
            None => Vec::new(),
            Some(v) => match v.as_seq() {
                Some(items) => items
                    .iter()
                    .filter_map(|i| self.rule(i, namespaced))
                    .collect(),
                None => {
                    self.error(v, Code::BadValue, "`rules` must be a list of rules");
                    Vec::new()
                }
            },
        };
        let aggregation = match node.get("aggregationRule").filter(|a| !a.is_null()) {
            Some(a) if namespaced => {
                self.error(
                    a,
                    Code::BadValue,
                    "only a ClusterRole can have an `aggregationRule`",
                );
                None
            }
            Some(a) => Some(self.aggregation(a)),
            None => None,
        };
        Some(Role {
            kind: if namespaced {
                RoleKind::Role
            } else {
                RoleKind::ClusterRole
            },
            namespace,
            name,
            labels,
            rules,
            aggregation,
        })
    }

    fn labels(&mut self, v: Option<&Node>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return out;
        };
        let Some(entries) = v.as_map() else {
            self.error(v, Code::BadValue, "`labels` must be a mapping of strings");
            return out;
        };
        for (k, val) in entries {
            match (k.as_str(), val.as_str()) {
                (Some(k), Some(val)) => {
                    out.insert(k.to_string(), val.to_string());
                }
                _ => self.error(val, Code::BadValue, "a label's value must be a string"),
            }
        }
        out
    }

    fn rule(&mut self, item: &Node, namespaced: bool) -> Option<PolicyRule> {
        let Some(entries) = item.as_map() else {
            self.error(
                item,
                Code::BadValue,
                format!("a rule is a mapping, not {}", item.type_name()),
            );
            return None;
        };
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !RULE_KEYS.contains(&key) {
                let d =
                    Diagnostic::error(Code::UnknownKey, format!("unknown key `{key}` in a rule"))
                        .at(&self.file, k.pos, k.pos + key.len().max(1))
                        .help_opt(did_you_mean(key, RULE_KEYS));
                self.diags.push(d);
            }
        }
        let rule = PolicyRule {
            verbs: self.strings(item.get("verbs"), "verbs"),
            api_groups: self.strings(item.get("apiGroups"), "apiGroups"),
            resources: self.strings(item.get("resources"), "resources"),
            resource_names: self.strings(item.get("resourceNames"), "resourceNames"),
            non_resource_urls: self.strings(item.get("nonResourceURLs"), "nonResourceURLs"),
        };
        if rule.verbs.is_empty() {
            self.error(
                item,
                Code::MissingKey,
                "a rule needs `verbs` (the API server refuses it)",
            );
        }
        let urls = !rule.non_resource_urls.is_empty();
        if urls && namespaced {
            self.error(
                item,
                Code::BadValue,
                "a Role's rules cannot have `nonResourceURLs` (only a ClusterRole's)",
            );
        } else if urls && !(rule.resources.is_empty() && rule.api_groups.is_empty()) {
            self.error(
                item,
                Code::BadValue,
                "a rule has `resources` or `nonResourceURLs`, not both",
            );
        } else if !urls && (rule.resources.is_empty() || rule.api_groups.is_empty()) {
            self.error(
                item,
                Code::MissingKey,
                "a resource rule needs `apiGroups` and `resources` (`\"\"` is the core group)",
            );
        }
        Some(rule)
    }

    fn aggregation(&mut self, a: &Node) -> Vec<Selector> {
        let Some(sel) = a.get("clusterRoleSelectors").filter(|s| !s.is_null()) else {
            return Vec::new();
        };
        let Some(items) = sel.as_seq() else {
            self.error(
                sel,
                Code::BadValue,
                "`clusterRoleSelectors` must be a list of label selectors",
            );
            return Vec::new();
        };
        items.iter().filter_map(|i| self.selector(i)).collect()
    }

    fn selector(&mut self, node: &Node) -> Option<Selector> {
        if node.as_map().is_none() {
            self.error(node, Code::BadValue, "a label selector is a mapping");
            return None;
        }
        let mut s = Selector {
            match_labels: self.labels(node.get("matchLabels")),
            match_expressions: Vec::new(),
        };
        let Some(exprs) = node.get("matchExpressions").filter(|e| !e.is_null()) else {
            return Some(s);
        };
        let Some(exprs) = exprs.as_seq() else {
            self.error(exprs, Code::BadValue, "`matchExpressions` must be a list");
            return Some(s);
        };
        for e in exprs {
            let key = self.required(e, "key", "a match expression")?.to_string();
            let op = self.required(e, "operator", "a match expression")?;
            let operator = match op {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    const OPS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];
                    let at = e.get("operator").unwrap_or(e);
                    let d = Diagnostic::error(
                        Code::BadValue,
                        format!("`{other}` is not an operator (In, NotIn, Exists, DoesNotExist)"),
                    )
                    .at(&self.file, at.pos, at.pos + other.len().max(1))
                    .help_opt(did_you_mean(other, OPS));
                    self.diags.push(d);
                    continue;
                }
            };
            let values = self.strings(e.get("values"), "values");
            let needs_values = matches!(operator, Operator::In | Operator::NotIn);
            if needs_values == values.is_empty() {
                let msg = if needs_values {
                    format!("`{op}` needs `values`")
                } else {
                    format!("`{op}` takes no `values`")
                };
                self.error(e, Code::BadValue, msg);
            }
            s.match_expressions.push(Requirement {
                key,
                operator,
                values,
            });
        }
        Some(s)
    }

    fn binding(&mut self, node: &Node, namespaced: bool) -> Option<Binding> {
        let kind = if namespaced {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        let (name, namespace, _) = self.metadata(node, kind, namespaced)?;
        let role = self.role_ref(node, kind, namespaced);
        let subjects = match node.get("subjects").filter(|s| !s.is_null()) {
            None => Vec::new(),
            Some(v) => match v.as_seq() {
                Some(items) => items
                    .iter()
                    .filter_map(|i| self.subject(i, &namespace, kind))
                    .collect(),
                None => {
                    self.error(v, Code::BadValue, "`subjects` must be a list");
                    Vec::new()
                }
            },
        };
        let (role_kind, role_name) = role?;
        Some(Binding {
            kind: if namespaced {
                BindingKind::RoleBinding
            } else {
                BindingKind::ClusterRoleBinding
            },
            namespace,
            name,
            role_kind,
            role_name,
            subjects,
        })
    }

    fn role_ref(
        &mut self,
        node: &Node,
        kind: &str,
        namespaced: bool,
    ) -> Option<(RoleKind, String)> {
        let Some(role_ref) = node.get("roleRef").filter(|r| r.as_map().is_some()) else {
            self.error(
                node,
                Code::MissingKey,
                format!("a {kind} needs a `roleRef`"),
            );
            return None;
        };
        let role_kind = match self.required(role_ref, "kind", "a roleRef")? {
            "ClusterRole" => RoleKind::ClusterRole,
            "Role" if namespaced => RoleKind::Role,
            other => {
                let at = role_ref.get("kind").unwrap_or(role_ref);
                let allowed = if namespaced {
                    "Role or ClusterRole"
                } else {
                    "ClusterRole"
                };
                self.error(
                    at,
                    Code::BadValue,
                    format!("a {kind} refers to a {allowed}, not `{other}`"),
                );
                return None;
            }
        };
        let name = self.required(role_ref, "name", "a roleRef")?.to_string();
        Some((role_kind, name))
    }

    /// A subject; a service account without a namespace takes the
    /// RoleBinding's (a ClusterRoleBinding must name it, as the API server
    /// requires).
    fn subject(&mut self, node: &Node, binding_ns: &str, binding_kind: &str) -> Option<Subject> {
        if node.as_map().is_none() {
            self.error(
                node,
                Code::BadValue,
                "a subject is a mapping with `kind` and `name`",
            );
            return None;
        }
        let kind = match self.required(node, "kind", "a subject")? {
            "User" => SubjectKind::User,
            "Group" => SubjectKind::Group,
            "ServiceAccount" => SubjectKind::ServiceAccount,
            other => {
                const KINDS: [&str; 3] = ["User", "Group", "ServiceAccount"];
                let at = node.get("kind").unwrap_or(node);
                let d = Diagnostic::error(
                    Code::BadValue,
                    format!("`{other}` is not a subject kind (User, Group, ServiceAccount)"),
                )
                .at(&self.file, at.pos, at.pos + other.len().max(1))
                .help_opt(did_you_mean(other, KINDS));
                self.diags.push(d);
                return None;
            }
        };
        let name = self.required(node, "name", "a subject")?.to_string();
        let given = node
            .get("namespace")
            .and_then(Node::as_str)
            .unwrap_or_default();
        let namespace = match kind {
            SubjectKind::ServiceAccount if !given.is_empty() => given.to_string(),
            SubjectKind::ServiceAccount if !binding_ns.is_empty() => binding_ns.to_string(),
            SubjectKind::ServiceAccount => {
                self.error(
                    node,
                    Code::MissingKey,
                    format!("a ServiceAccount subject of a {binding_kind} needs a `namespace`"),
                );
                return None;
            }
            _ => String::new(),
        };
        Some(Subject {
            kind,
            namespace,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Objects, Vec<Diagnostic>) {
        Objects::parse(&[Arc::new(SourceFile {
            name: "rbac.yaml".into(),
            text: text.into(),
        })])
    }

    #[test]
    fn reads_a_json_list_as_kubectl_prints_it() {
        let (o, d) = parse(
            r#"{"apiVersion":"v1","kind":"List","items":[
              {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding",
               "metadata":{"name":"b","namespace":"kube-system"},
               "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},
               "subjects":[{"kind":"ServiceAccount","name":"fluentd"}]},
              {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole",
               "metadata":{"name":"view","labels":{"a":"b"}},
               "rules":[{"apiGroups":[""],"resources":["pods/log"],"verbs":["get"]}]}]}"#,
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(o.bindings.len(), 1);
        let b = &o.bindings[0];
        assert_eq!(
            (b.id(), b.role_id()),
            (
                "RoleBinding/kube-system/b".into(),
                "ClusterRole/view".into()
            )
        );
        // The service account's namespace defaults to the binding's.
        assert_eq!(b.subjects[0].namespace, "kube-system");
        assert_eq!(o.roles[0].labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(o.roles[0].rules[0].resources, ["pods/log"]);
    }

    #[test]
    fn every_problem_of_a_file_is_reported_in_place() {
        let (_, d) = parse(
            "kind: Role\nmetadata: {name: r}\nrules: []\n---\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: Role, name: r}\n---\nkind: ClusterRole\nmetadata: {name: c}\nrules:\n- {apiGroups: [''], resources: [pods], verbs: [get], nonResourceURLs: [/x]}\n",
        );
        let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        let all = all.join("\n");
        assert!(
            all.contains("rbac.yaml:2:11") && all.contains("a Role is namespaced"),
            "{all}"
        );
        assert!(
            all.contains("rbac.yaml:7:17") && all.contains("refers to a ClusterRole, not `Role`"),
            "{all}"
        );
        assert!(
            all.contains("rbac.yaml:12:3") && all.contains("not both"),
            "{all}"
        );
        assert_eq!(d.len(), 3, "{all}");
    }
}
