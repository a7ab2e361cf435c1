//! `saker rbac who-can VERB RESOURCE[.GROUP][/SUBRESOURCE] [-n NS] FILE...`:
//! the subjects an RBAC export lets make a request, each with the bindings
//! and roles that grant it. `system:masters` is always listed: the API
//! server allows it everything without asking RBAC.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::aggregate::effective_rules;
use super::authorizer::{binding_applies, rule_grants, Grant, Request, Target, SUPERUSER_GROUP};
use super::{Objects, ReadError, RoleKind, Subject, SubjectKind};

/// What `who-can` is asked, as the command line gives it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub verb: String,
    /// `pods`, `pods/log`, `deployments.apps`, `deployments.apps/scale`,
    /// or a non-resource URL starting with `/`.
    pub resource: String,
    /// Empty: a cluster-scoped request (or one across all namespaces).
    pub namespace: String,
    pub all_namespaces: bool,
    /// The object's name, for rules with `resourceNames`.
    pub name: String,
    pub files: Vec<PathBuf>,
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WhoCanError {
    /// A query that cannot be a request (`who-can get /healthz -n x`).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// One binding that grants the request to a subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Via {
    /// `ClusterRoleBinding/NAME` or `RoleBinding/NAMESPACE/NAME`;
    /// `(implicit)` for system:masters.
    pub binding: String,
    /// `ClusterRole/NAME` or `Role/NAMESPACE/NAME`; `(superuser)` for
    /// system:masters.
    pub role: String,
    /// The ClusterRole whose rule grants it, when the bound role has it
    /// through aggregation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// When the grant is only for these object names (the rule lists
    /// `resourceNames` and the query names no object).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
}

/// A subject that can, with every way it can.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub kind: SubjectKind,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub via: Vec<Via>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub subjects: Vec<Entry>,
    /// Bindings whose role is not among the objects read: they grant
    /// nothing here (as in the API server, where the role is missing).
    #[serde(skip)]
    pub missing_roles: Vec<String>,
}

/// Turns `VERB RESOURCE` and the flags into the request RBAC decides.
pub fn request(s: &Settings) -> Result<Request, WhoCanError> {
    if s.verb.is_empty() {
        return Err(WhoCanError::Usage("the verb is empty".into()));
    }
    let namespace = if s.all_namespaces {
        String::new()
    } else {
        s.namespace.clone()
    };
    if s.resource.starts_with('/') {
        if !namespace.is_empty() || s.all_namespaces || !s.name.is_empty() {
            return Err(WhoCanError::Usage(format!(
                "{} is a non-resource URL: it has no namespace and no name",
                s.resource
            )));
        }
        return Ok(Request {
            verb: s.verb.clone(),
            namespace,
            target: Target::NonResource {
                path: s.resource.clone(),
            },
        });
    }
    let (kind, subresource) = s.resource.split_once('/').unwrap_or((&s.resource, ""));
    let (resource, group) = kind.split_once('.').unwrap_or((kind, ""));
    if resource.is_empty() || subresource.contains('/') {
        return Err(WhoCanError::Usage(format!(
            "`{}` is not RESOURCE[.GROUP][/SUBRESOURCE] (e.g. pods/log, deployments.apps)",
            s.resource
        )));
    }
    Ok(Request {
        verb: s.verb.clone(),
        namespace,
        target: Target::Resource {
            group: group.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            name: s.name.clone(),
        },
    })
}

/// A user subject named `system:serviceaccount:NS:NAME` is that service
/// account: the API server compares user names.
fn normalise(s: &Subject) -> Subject {
    if s.kind == SubjectKind::User {
        if let Some((ns, name)) = s
            .name
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'))
        {
            return Subject {
                kind: SubjectKind::ServiceAccount,
                namespace: ns.to_string(),
                name: name.to_string(),
            };
        }
    }
    s.clone()
}

/// Who the objects let make `req`.
pub fn who_can(objects: &Objects, req: &Request, all_namespaces: bool) -> Report {
    let effective = effective_rules(&objects.roles);
    let mut found: BTreeMap<Subject, Vec<Via>> = BTreeMap::new();
    let mut missing = Vec::new();
    found
        .entry(Subject {
            kind: SubjectKind::Group,
            namespace: String::new(),
            name: SUPERUSER_GROUP.into(),
        })
        .or_default()
        .push(Via {
            binding: "(implicit)".into(),
            role: "(superuser)".into(),
            from: None,
            resource_names: Vec::new(),
        });
    for b in &objects.bindings {
        if !binding_applies(&b.namespace, req, all_namespaces) {
            continue;
        }
        let role_ns = match b.role_kind {
            RoleKind::Role => b.namespace.as_str(),
            RoleKind::ClusterRole => "",
        };
        let Some(ri) = objects
            .roles
            .iter()
            .position(|r| r.kind == b.role_kind && r.namespace == role_ns && r.name == b.role_name)
        else {
            missing.push(format!(
                "{} refers to {}, which is not in the files",
                b.id(),
                b.role_id()
            ));
            continue;
        };
        for sr in &effective[ri] {
            let names = match rule_grants(sr.rule, req) {
                Grant::No => continue,
                Grant::Allows => Vec::new(),
                Grant::NamedOnly => sr.rule.resource_names.clone(),
            };
            let via = Via {
                binding: b.id(),
                role: b.role_id(),
                from: (sr.source != ri).then(|| objects.roles[sr.source].id()),
                resource_names: names,
            };
            for s in &b.subjects {
                let list = found.entry(normalise(s)).or_default();
                if !list.contains(&via) {
                    list.push(via.clone());
                }
            }
        }
    }
    let subjects = found
        .into_iter()
        .map(|(s, mut via)| {
            via.sort();
            Entry {
                kind: s.kind,
                name: s.name,
                namespace: (s.kind == SubjectKind::ServiceAccount).then_some(s.namespace),
                via,
            }
        })
        .collect();
    Report {
        subjects,
        missing_roles: missing,
    }
}

/// The request in words: `get pods/log in namespace kube-system`.
pub fn describe(req: &Request) -> String {
    match &req.target {
        Target::NonResource { path } => format!("{} {path}", req.verb),
        Target::Resource {
            group,
            resource,
            subresource,
            name,
        } => {
            let mut s = format!("{} {resource}", req.verb);
            if !group.is_empty() {
                s.push_str(&format!(".{group}"));
            }
            if !subresource.is_empty() {
                s.push_str(&format!("/{subresource}"));
            }
            if !name.is_empty() {
                s.push_str(&format!(" named {name}"));
            }
            if req.namespace.is_empty() {
                s.push_str(" cluster-wide");
            } else {
                s.push_str(&format!(" in namespace {}", req.namespace));
            }
            s
        }
    }
}

fn kind_name(k: SubjectKind) -> &'static str {
    match k {
        SubjectKind::User => "User",
        SubjectKind::Group => "Group",
        SubjectKind::ServiceAccount => "ServiceAccount",
    }
}

/// The human report.
pub fn render(req: &Request, all_namespaces: bool, r: &Report) -> String {
    let scope = if all_namespaces {
        " (in any namespace)"
    } else {
        ""
    };
    let mut s = format!(
        "who can {}{scope}: {} subject(s)\n",
        describe(req),
        r.subjects.len()
    );
    for e in &r.subjects {
        match &e.namespace {
            Some(ns) => s.push_str(&format!("{} {ns}/{}\n", kind_name(e.kind), e.name)),
            None => s.push_str(&format!("{} {}\n", kind_name(e.kind), e.name)),
        }
        for v in &e.via {
            if v.binding == "(implicit)" {
                s.push_str(
                    "  always allowed: the API server's superuser group, RBAC is not asked\n",
                );
                continue;
            }
            s.push_str(&format!("  {} -> {}", v.binding, v.role));
            if let Some(f) = &v.from {
                s.push_str(&format!(" (aggregated from {f})"));
            }
            if !v.resource_names.is_empty() {
                s.push_str(&format!(" (only names: {})", v.resource_names.join(", ")));
            }
            s.push('\n');
        }
    }
    s
}

/// The whole command: reads the files, answers, and renders text or JSON.
/// Warnings (bindings to roles not in the files) come back beside it.
pub fn run(s: &Settings) -> Result<(String, Vec<String>), WhoCanError> {
    let req = request(s)?;
    if s.files.is_empty() {
        return Err(WhoCanError::Usage("no RBAC files given".into()));
    }
    let (objects, _) = Objects::load(&s.files)?;
    let report = who_can(&objects, &req, s.all_namespaces);
    let warnings = report.missing_roles.clone();
    let out = if s.json {
        // Serialising plain strings and vectors cannot fail.
        serde_json::to_string(&report).unwrap_or_default() + "\n"
    } else {
        render(&req, s.all_namespaces, &report)
    };
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(verb: &str, resource: &str, ns: &str) -> Settings {
        Settings {
            verb: verb.into(),
            resource: resource.into(),
            namespace: ns.into(),
            all_namespaces: false,
            name: String::new(),
            files: Vec::new(),
            json: false,
        }
    }

    #[test]
    fn resources_are_given_as_kubectl_spells_them() {
        let target = |r: &str| request(&settings("get", r, "")).map(|q| q.target);
        let res = |g: &str, r: &str, sub: &str| Target::Resource {
            group: g.into(),
            resource: r.into(),
            subresource: sub.into(),
            name: String::new(),
        };
        assert_eq!(target("pods/log").unwrap(), res("", "pods", "log"));
        assert_eq!(
            target("deployments.apps").unwrap(),
            res("apps", "deployments", "")
        );
        assert_eq!(
            target("certificatesigningrequests.certificates.k8s.io/approval").unwrap(),
            res(
                "certificates.k8s.io",
                "certificatesigningrequests",
                "approval"
            )
        );
        assert_eq!(
            target("/logs/").unwrap(),
            Target::NonResource {
                path: "/logs/".into()
            }
        );
        assert!(target("pods/log/x").is_err());
        assert!(target(".apps").is_err());
        assert!(request(&settings("get", "/healthz", "kube-system")).is_err());
    }

    #[test]
    fn user_subjects_naming_service_accounts_are_service_accounts() {
        let s = normalise(&Subject {
            kind: SubjectKind::User,
            namespace: String::new(),
            name: "system:serviceaccount:kube-system:fluentd".into(),
        });
        assert_eq!(s.kind, SubjectKind::ServiceAccount);
        assert_eq!(
            (s.namespace.as_str(), s.name.as_str()),
            ("kube-system", "fluentd")
        );
    }
}
