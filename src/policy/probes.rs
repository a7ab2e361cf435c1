//! Probe requests: the identities, namespaces and names a policy is asked
//! about (those it mentions, and ordinary ones), so `lint` and `check` go
//! through the matcher ([`super::Policy::decide`]) instead of re-reading
//! the policy's rules.

use super::known;
use super::matcher::{Request, ResourceAttrs};
use super::Policy;

/// Every verb the API server uses in authorization attributes.
pub const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Identities, namespaces and names to probe a policy with: those it
/// mentions, and ordinary ones.
pub struct Universe {
    pub identities: Vec<(String, Vec<String>)>,
    pub namespaces: Vec<String>,
    pub names: Vec<String>,
}

impl Universe {
    pub fn of(p: &Policy) -> Universe {
        let auth = "system:authenticated".to_string();
        let mut identities = vec![("jane".to_string(), vec![auth.clone()])];
        for r in &p.rules {
            for u in &r.users {
                identities.push((u.value.clone(), vec![auth.clone()]));
            }
            for g in &r.user_groups {
                let groups = if g.value == "system:unauthenticated" {
                    vec![g.value.clone()]
                } else {
                    vec![g.value.clone(), auth.clone()]
                };
                identities.push((format!("member-of:{}", g.value), groups));
            }
        }
        identities.push((
            "system:anonymous".into(),
            vec!["system:unauthenticated".into()],
        ));
        identities.sort();
        identities.dedup();
        // The ordinary user first: examples then read "by any user".
        if let Some(i) = identities.iter().position(|(u, _)| u == "jane") {
            let jane = identities.remove(i);
            identities.insert(0, jane);
        }
        let mut namespaces = vec![
            "default".to_string(),
            "kube-system".to_string(),
            "team-a".to_string(),
        ];
        let mut names = vec!["x".to_string()];
        for r in &p.rules {
            namespaces.extend(
                r.namespaces
                    .iter()
                    .map(|n| n.value.clone())
                    .filter(|n| !n.is_empty()),
            );
            for gr in &r.resources {
                names.extend(gr.resource_names.iter().map(|n| n.value.clone()));
            }
        }
        namespaces.sort();
        namespaces.dedup();
        names.sort();
        names.dedup();
        Universe {
            identities,
            namespaces,
            names,
        }
    }

    /// Every probe request on `group`/`resource`/`sub` with one of `verbs`.
    pub fn requests<'a>(
        &'a self,
        group: &'a str,
        resource: &'a str,
        sub: &'a str,
        verbs: &'a [&'a str],
    ) -> impl Iterator<Item = Request> + 'a {
        let cluster = [String::new()];
        let namespaces: Vec<String> = if known::namespaced(resource) {
            self.namespaces.clone()
        } else {
            cluster.to_vec()
        };
        self.identities.iter().flat_map(move |(user, groups)| {
            let namespaces = namespaces.clone();
            verbs.iter().flat_map(move |verb| {
                let namespaces = namespaces.clone();
                namespaces.into_iter().flat_map(move |ns| {
                    self.names.iter().map(move |name| Request {
                        user: user.clone(),
                        groups: groups.clone(),
                        verb: verb.to_string(),
                        resource: Some(ResourceAttrs {
                            group: group.to_string(),
                            resource: resource.to_string(),
                            subresource: sub.to_string(),
                            namespace: ns.clone(),
                            name: name.clone(),
                        }),
                        path: String::new(),
                    })
                })
            })
        })
    }
}

/// A short description of a probe request.
pub fn describe(req: &Request) -> String {
    let who = if req.user == "jane" {
        "any user".to_string()
    } else if let Some(g) = req.user.strip_prefix("member-of:") {
        format!("a member of {g}")
    } else {
        format!("user {}", req.user)
    };
    match &req.resource {
        Some(a) => {
            let res = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            let ns = if a.namespace.is_empty() {
                String::new()
            } else {
                format!(" in {}", a.namespace)
            };
            format!("`{}` of {res}{ns} by {who}", req.verb)
        }
        None => format!("`{}` of {} by {who}", req.verb, req.path),
    }
}
