//! The API server's RBAC decision for one request (as in
//! `plugin/pkg/auth/authorizer/rbac`): a rule allows a resource request
//! when its verbs, API groups, resources (`*`, `resource/subresource`,
//! `*/subresource`) and resource names match; a non-resource request when
//! its verbs and URLs (`*`, exact, `prefix*`) do. ClusterRoleBindings grant
//! everywhere; RoleBindings only in their namespace, whatever role they
//! refer to. Members of `system:masters` are allowed everything before
//! RBAC is asked.

use super::PolicyRule;

/// The group the API server lets do anything, RBAC or not.
pub const SUPERUSER_GROUP: &str = "system:masters";

/// What a request asks for, as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Resource {
        group: String,
        resource: String,
        subresource: String,
        /// The object's name; empty for lists, creates and collections.
        name: String,
    },
    /// A path such as `/healthz` or `/logs/`.
    NonResource { path: String },
}

/// A request: a verb on a target, in a namespace (empty: cluster scope or
/// all namespaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub verb: String,
    pub namespace: String,
    pub target: Target,
}

/// How a rule relates to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The rule allows the request.
    Allows,
    /// The rule would allow it for some named objects only: it lists
    /// `resourceNames` and the request names none.
    NamedOnly,
    No,
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    let combined = if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    };
    rule.resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
    })
}

fn url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().any(|u| {
        u == "*"
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// Whether `rule` grants `req` (`RuleAllows`), with `resourceNames` on an
/// unnamed request told apart.
pub fn rule_grants(rule: &PolicyRule, req: &Request) -> Grant {
    if !has(&rule.verbs, &req.verb) {
        return Grant::No;
    }
    match &req.target {
        Target::NonResource { path } => {
            if url_matches(rule, path) {
                Grant::Allows
            } else {
                Grant::No
            }
        }
        Target::Resource {
            group,
            resource,
            subresource,
            name,
        } => {
            if !has(&rule.api_groups, group) || !resource_matches(rule, resource, subresource) {
                Grant::No
            } else if rule.resource_names.is_empty() || rule.resource_names.contains(name) {
                Grant::Allows
            } else if name.is_empty() {
                Grant::NamedOnly
            } else {
                Grant::No
            }
        }
    }
}

/// Whether a binding in `binding_ns` (empty: a ClusterRoleBinding) takes
/// part in deciding `req`. With `all_namespaces`, a RoleBinding counts in
/// its own namespace, whichever that is.
pub fn binding_applies(binding_ns: &str, req: &Request, all_namespaces: bool) -> bool {
    if binding_ns.is_empty() {
        return true;
    }
    // Non-resource requests have no namespace: only cluster bindings.
    matches!(req.target, Target::Resource { .. }) && (all_namespaces || binding_ns == req.namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        PolicyRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: Vec::new(),
        }
    }

    fn req(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Request {
        Request {
            verb: verb.into(),
            namespace: "kube-system".into(),
            target: Target::Resource {
                group: group.into(),
                resource: resource.into(),
                subresource: sub.into(),
                name: name.into(),
            },
        }
    }

    #[test]
    fn verbs_groups_and_resources_match_exactly_or_by_wildcard() {
        let logs = req("get", "", "pods", "log", "");
        assert_eq!(
            rule_grants(&rule(&["get"], &[""], &["pods/log"], &[]), &logs),
            Grant::Allows
        );
        assert_eq!(
            rule_grants(&rule(&["*"], &["*"], &["*"], &[]), &logs),
            Grant::Allows
        );
        assert_eq!(
            rule_grants(&rule(&["get"], &[""], &["*/log"], &[]), &logs),
            Grant::Allows
        );
        // `pods` does not cover its subresources, nor does `pods/*`.
        assert_eq!(
            rule_grants(&rule(&["get"], &[""], &["pods"], &[]), &logs),
            Grant::No
        );
        assert_eq!(
            rule_grants(&rule(&["get"], &[""], &["pods/*"], &[]), &logs),
            Grant::No
        );
        assert_eq!(
            rule_grants(&rule(&["list"], &[""], &["pods/log"], &[]), &logs),
            Grant::No
        );
        assert_eq!(
            rule_grants(&rule(&["get"], &["apps"], &["pods/log"], &[]), &logs),
            Grant::No
        );
        // `*/log` needs a subresource.
        let pods = req("get", "", "pods", "", "");
        assert_eq!(
            rule_grants(&rule(&["get"], &[""], &["*/log"], &[]), &pods),
            Grant::No
        );
        let deploy = req("get", "apps", "deployments", "", "");
        assert_eq!(
            rule_grants(&rule(&["get"], &["apps"], &["deployments"], &[]), &deploy),
            Grant::Allows
        );
        assert_eq!(
            rule_grants(&rule(&["get"], &[""], &["deployments"], &[]), &deploy),
            Grant::No
        );
    }

    #[test]
    fn resource_names_grant_only_named_requests() {
        let r = rule(&["get"], &[""], &["pods/log"], &["kube-apiserver-cp1"]);
        assert_eq!(
            rule_grants(&r, &req("get", "", "pods", "log", "kube-apiserver-cp1")),
            Grant::Allows
        );
        assert_eq!(
            rule_grants(&r, &req("get", "", "pods", "log", "web")),
            Grant::No
        );
        assert_eq!(
            rule_grants(&r, &req("get", "", "pods", "log", "")),
            Grant::NamedOnly
        );
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_prefix() {
        let mut r = rule(&["get"], &[], &[], &[]);
        r.non_resource_urls = vec!["/logs/*".into(), "/healthz".into()];
        let url = |p: &str| Request {
            verb: "get".into(),
            namespace: String::new(),
            target: Target::NonResource { path: p.into() },
        };
        assert_eq!(
            rule_grants(&r, &url("/logs/kube-apiserver.log")),
            Grant::Allows
        );
        assert_eq!(rule_grants(&r, &url("/healthz")), Grant::Allows);
        assert_eq!(rule_grants(&r, &url("/healthz/etcd")), Grant::No);
        assert!(!binding_applies("kube-system", &url("/logs/"), true));
    }

    #[test]
    fn role_bindings_grant_in_their_namespace_only() {
        let r = req("get", "", "pods", "log", "");
        assert!(binding_applies("", &r, false));
        assert!(binding_applies("kube-system", &r, false));
        assert!(!binding_applies("default", &r, false));
        assert!(binding_applies("default", &r, true));
        let cluster = Request {
            namespace: String::new(),
            ..r
        };
        assert!(!binding_applies("kube-system", &cluster, false));
    }
}
