//! The API server's policy evaluation (`k8s.io/apiserver/pkg/audit/policy`):
//! the first rule that matches a request decides its level; a request no
//! rule matches is not logged. Empty lists match everything.

use super::{GroupResources, Level, Policy, Rule, Spanned};

/// The attributes of a request that a policy looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Request {
    pub user: String,
    pub groups: Vec<String>,
    pub verb: String,
    /// `None` for a non-resource request (`/healthz`, `/version`, ...).
    pub resource: Option<ResourceAttrs>,
    /// The URL path of a non-resource request.
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ResourceAttrs {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    /// `""` for cluster-scoped resources.
    pub namespace: String,
    pub name: String,
}

impl Request {
    /// A resource request: `what` is `[group, resource, subresource]`.
    pub fn to_resource(
        (user, groups): (&str, &[&str]),
        verb: &str,
        [group, resource, subresource]: [&str; 3],
        namespace: &str,
        name: &str,
    ) -> Request {
        Request {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            verb: verb.into(),
            resource: Some(ResourceAttrs {
                group: group.into(),
                resource: resource.into(),
                subresource: subresource.into(),
                namespace: namespace.into(),
                name: name.into(),
            }),
            path: String::new(),
        }
    }

    /// A `get` of a non-resource URL.
    pub fn to_url((user, groups): (&str, &[&str]), path: &str) -> Request {
        Request {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            verb: "get".into(),
            resource: None,
            path: path.into(),
        }
    }
}

/// What the policy does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The rule that matched, by index.
    pub rule: Option<usize>,
    pub level: Level,
}

impl Policy {
    /// The first matching rule and its level (`None` when nothing matches).
    pub fn decide(&self, req: &Request) -> Decision {
        match self.rules.iter().position(|r| rule_matches(r, req)) {
            Some(i) => Decision {
                rule: Some(i),
                level: self.rules[i].level,
            },
            None => Decision {
                rule: None,
                level: Level::None,
            },
        }
    }

    /// The stages rule `i` does not log: the policy's and its own.
    pub fn omitted_stages(&self, i: usize) -> Vec<&str> {
        let mut out: Vec<&str> = self.omit_stages.iter().map(|s| s.value.as_str()).collect();
        for s in &self.rules[i].omit_stages {
            if !out.contains(&s.value.as_str()) {
                out.push(&s.value);
            }
        }
        out
    }

    /// Whether rule `i` drops `managedFields` from logged bodies.
    pub fn omits_managed_fields(&self, i: usize) -> bool {
        self.rules[i]
            .omit_managed_fields
            .unwrap_or(self.omit_managed_fields)
    }
}

fn has(list: &[Spanned], v: &str) -> bool {
    list.iter().any(|s| s.value == v)
}

/// `ruleMatches` of the API server.
pub fn rule_matches(r: &Rule, req: &Request) -> bool {
    if !r.users.is_empty() && !has(&r.users, &req.user) {
        return false;
    }
    if !r.user_groups.is_empty() && !req.groups.iter().any(|g| has(&r.user_groups, g)) {
        return false;
    }
    if !r.verbs.is_empty() && !has(&r.verbs, &req.verb) {
        return false;
    }
    if !r.namespaces.is_empty() || !r.resources.is_empty() {
        return resource_matches(r, req);
    }
    if !r.non_resource_urls.is_empty() {
        return req.resource.is_none()
            && r.non_resource_urls
                .iter()
                .any(|spec| path_matches(&req.path, &spec.value));
    }
    true
}

/// `pathMatches`: `*`, an exact path, or a prefix ending in `*`.
pub fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || spec
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

fn resource_matches(r: &Rule, req: &Request) -> bool {
    let Some(a) = &req.resource else {
        return false;
    };
    if !r.namespaces.is_empty() && !has(&r.namespaces, &a.namespace) {
        return false;
    }
    if r.resources.is_empty() {
        return true;
    }
    r.resources.iter().any(|gr| group_matches(gr, a))
}

/// One `resources` entry against a request.
pub fn group_matches(gr: &GroupResources, a: &ResourceAttrs) -> bool {
    if gr.group.value != a.group {
        return false;
    }
    if gr.resources.is_empty() {
        return true;
    }
    if !gr.resource_names.is_empty() && !has(&gr.resource_names, &a.name) {
        return false;
    }
    gr.resources
        .iter()
        .any(|res| resource_pattern_matches(&res.value, &a.resource, &a.subresource))
}

/// `res` of a policy against a resource and subresource: `*`, `resource`,
/// `resource/subresource`, `*/subresource` or `resource/*`.
pub fn resource_pattern_matches(res: &str, resource: &str, subresource: &str) -> bool {
    if res == "*" {
        return true;
    }
    let combined_matches = if subresource.is_empty() {
        res == resource
    } else {
        res.len() == resource.len() + 1 + subresource.len()
            && res.starts_with(resource)
            && res[resource.len()..].starts_with('/')
            && res.ends_with(subresource)
    };
    combined_matches
        || (!subresource.is_empty() && res.strip_prefix("*/") == Some(subresource))
        || res.strip_suffix("/*") == Some(resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        let (p, d) = super::super::tests::policy(text);
        assert!(d.is_empty(), "{d:?}");
        p.unwrap()
    }

    fn res(who: (&str, &[&str]), verb: &str, what: [&str; 3], ns: &str, name: &str) -> Request {
        Request::to_resource(who, verb, what, ns, name)
    }

    fn url(path: &str) -> Request {
        Request::to_url(("u", &["system:authenticated"]), path)
    }

    #[test]
    fn first_match_wins_and_nothing_matched_is_none() {
        let p = policy("rules:\n- level: RequestResponse\n  users: [admin]\n- level: Metadata\n  verbs: [get]\n");
        let admin_get = res(("admin", &[]), "get", ["", "pods", ""], "a", "x");
        assert_eq!(
            p.decide(&admin_get),
            Decision {
                rule: Some(0),
                level: Level::RequestResponse
            }
        );
        assert_eq!(
            p.decide(&res(("bob", &[]), "get", ["", "pods", ""], "a", "x"))
                .rule,
            Some(1)
        );
        assert_eq!(
            p.decide(&res(("bob", &[]), "list", ["", "pods", ""], "a", "x"))
                .level,
            Level::None
        );
    }

    #[test]
    fn user_groups_need_one_common_group() {
        let p = policy("rules:\n- level: None\n  userGroups: [system:nodes]\n- level: Metadata\n");
        assert_eq!(
            p.decide(&res(
                ("n", &["system:authenticated", "system:nodes"]),
                "get",
                ["", "nodes", ""],
                "",
                "n"
            ))
            .level,
            Level::None
        );
        assert_eq!(
            p.decide(&res(
                ("n", &["system:authenticated"]),
                "get",
                ["", "nodes", ""],
                "",
                "n"
            ))
            .level,
            Level::Metadata
        );
    }

    #[test]
    fn resources_subresources_wildcards_and_names() {
        let p = policy(concat!(
            "rules:\n",
            "- level: Request\n  resources:\n  - group: \"\"\n    resources: [\"pods/exec\"]\n",
            "- level: RequestResponse\n  resources:\n  - group: \"\"\n    resources: [\"*/status\"]\n",
            "- level: None\n  resources:\n  - group: \"\"\n    resources: [\"configmaps\"]\n    resourceNames: [leader]\n",
            "- level: Metadata\n  resources:\n  - group: \"apps\"\n    resources: [\"deployments/*\"]\n",
            "- level: Request\n  resources:\n  - group: \"\"\n    resources: [\"pods\"]\n",
        ));
        let d = |r: &str, s: &str, name: &str, g: &str| {
            p.decide(&res(("u", &[]), "get", [g, r, s], "ns", name))
                .rule
        };
        assert_eq!(d("pods", "exec", "x", ""), Some(0));
        assert_eq!(d("pods", "status", "x", ""), Some(1));
        assert_eq!(d("nodes", "status", "x", ""), Some(1));
        assert_eq!(d("configmaps", "", "leader", ""), Some(2));
        assert_eq!(d("configmaps", "", "other", ""), None);
        assert_eq!(d("deployments", "scale", "x", "apps"), Some(3));
        assert_eq!(
            d("deployments", "", "x", "apps"),
            Some(3),
            "`deployments/*` matches the resource too, as in the API server"
        );
        assert_eq!(d("pods", "", "x", ""), Some(4));
        assert_eq!(
            d("pods", "log", "x", ""),
            None,
            "`pods` does not cover `pods/log`"
        );
    }

    #[test]
    fn namespaces_and_cluster_scope() {
        let p = policy("rules:\n- level: Request\n  namespaces: [\"kube-system\"]\n- level: Metadata\n  namespaces: [\"\"]\n");
        assert_eq!(
            p.decide(&res(
                ("u", &[]),
                "get",
                ["", "pods", ""],
                "kube-system",
                "x"
            ))
            .rule,
            Some(0)
        );
        assert_eq!(
            p.decide(&res(("u", &[]), "get", ["", "nodes", ""], "", "x"))
                .rule,
            Some(1)
        );
        assert_eq!(
            p.decide(&res(("u", &[]), "get", ["", "pods", ""], "default", "x"))
                .rule,
            None
        );
        assert_eq!(
            p.decide(&url("/healthz")).rule,
            None,
            "namespaces make it a resource rule"
        );
    }

    #[test]
    fn non_resource_urls() {
        let p = policy("rules:\n- level: None\n  nonResourceURLs: [\"/healthz*\", \"/version\"]\n- level: Metadata\n");
        assert_eq!(p.decide(&url("/healthz")).level, Level::None);
        assert_eq!(p.decide(&url("/healthz/etcd")).level, Level::None);
        assert_eq!(p.decide(&url("/version")).level, Level::None);
        assert_eq!(p.decide(&url("/versions")).level, Level::Metadata);
        assert_eq!(
            p.decide(&res(("u", &[]), "get", ["", "pods", ""], "a", "x"))
                .level,
            Level::Metadata
        );
        assert!(path_matches("/api/v1", "/api*"));
        assert!(path_matches("/anything", "*"));
    }

    #[test]
    fn stages_are_the_union_of_policy_and_rule() {
        let p = policy("omitStages: [RequestReceived]\nrules:\n- level: Metadata\n  omitStages: [ResponseStarted, RequestReceived]\n");
        assert_eq!(p.omitted_stages(0), ["RequestReceived", "ResponseStarted"]);
    }
}
