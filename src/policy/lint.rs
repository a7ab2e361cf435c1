//! `saker policy lint`: what is wrong or risky in an audit policy. Checks
//! on the text (groups, resources, rule shapes) and checks that ask the
//! policy about probe requests (what a secret write is logged at, whether
//! `kubectl exec` is logged, whether health checks are dropped), each
//! reported at the line that decides it.

use std::collections::BTreeMap;

use crate::diag::{Code, Diagnostic};

use super::known;
use super::matcher::{resource_pattern_matches, rule_matches, Request};
use super::probes::{describe, Universe, VERBS};
use super::{GroupResources, Level, Policy, Rule, Spanned};

/// Lints a parsed policy.
pub fn lint(p: &Policy) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if p.rules.is_empty() {
        out.push(
            Diagnostic::error(
                Code::EmptyRules,
                "the policy has no rules: the API server logs nothing",
            )
            .at(&p.file, p.rules_pos, p.rules_pos + 5),
        );
        return out;
    }
    for r in &p.rules {
        shape(p, r, &mut out);
    }
    shadowed(p, &mut out);
    let u = Universe::of(p);
    sensitive(p, &u, &mut out);
    read_bodies(p, &u, &mut out);
    pods_subresources(p, &u, &mut out);
    high_volume(p, &mut out);
    stages(p, &mut out);
    catch_all(p, &mut out);
    out.sort_by_key(|d| (d.span.map_or(0, |s| s.0), std::cmp::Reverse(d.severity)));
    out
}

fn at(p: &Policy, d: Diagnostic, s: &Spanned) -> Diagnostic {
    d.at(&p.file, s.pos, s.pos + s.value.len().max(1))
}

fn at_rule(p: &Policy, d: Diagnostic, r: &Rule) -> Diagnostic {
    d.at(&p.file, r.pos, r.pos + 5)
}

/// Checks on one rule's text.
fn shape(p: &Policy, r: &Rule, out: &mut Vec<Diagnostic>) {
    if !r.non_resource_urls.is_empty() && (!r.resources.is_empty() || !r.namespaces.is_empty()) {
        let pos = r.urls_pos.unwrap_or(r.pos);
        out.push(
            Diagnostic::error(
                Code::UrlsWithResources,
                "a rule cannot have both nonResourceURLs and resources or namespaces: the API server refuses the policy",
            )
            .at(&p.file, pos, pos + "nonResourceURLs".len())
            .help("split it into two rules"),
        );
    }
    for gr in &r.resources {
        let g = &gr.group;
        if g.value.contains('/') {
            let bare = g.value.split('/').next().unwrap_or_default();
            out.push(at(
                p,
                Diagnostic::error(
                    Code::GroupVersion,
                    format!("`{}` is a group with a version: groups are written without one, so this entry never matches", g.value),
                )
                .help(format!("write `group: \"{bare}\"`")),
                g,
            ));
        }
        if !gr.resource_names.is_empty() && gr.resources.is_empty() {
            out.push(at(
                p,
                Diagnostic::error(
                    Code::NamesWithoutResources,
                    "resourceNames without resources: the names are ignored and the entry matches every resource of the group",
                ),
                &gr.resource_names[0],
            ));
        }
        if !g.value.contains('/') && known::known_group(&g.value) {
            for res in &gr.resources {
                let base = res.value.split('/').next().unwrap_or_default();
                if base == "*"
                    || known::groups_of(base).is_none()
                    || known::served_from(base, &g.value)
                {
                    continue;
                }
                let right = known::groups_of(base).unwrap_or(&[]);
                let names: Vec<String> = right.iter().map(|g| format!("\"{g}\"")).collect();
                let shown = if g.value.is_empty() {
                    "the core group (\"\")".to_string()
                } else {
                    format!("`{}`", g.value)
                };
                out.push(at(
                    p,
                    Diagnostic::error(
                        Code::WrongGroup,
                        format!("`{base}` is not served from {shown}: this entry never matches it"),
                    )
                    .help(format!("list it under group {}", names.join(" or "))),
                    res,
                ));
            }
        }
    }
}

/// Whether every request rule `b` matches is matched by rule `a`.
fn covers(a: &Rule, b: &Rule) -> bool {
    fn list(a: &[Spanned], b: &[Spanned]) -> bool {
        a.is_empty() || (!b.is_empty() && b.iter().all(|x| a.iter().any(|y| y.value == x.value)))
    }
    if !list(&a.users, &b.users)
        || !list(&a.user_groups, &b.user_groups)
        || !list(&a.verbs, &b.verbs)
    {
        return false;
    }
    let a_res = !a.namespaces.is_empty() || !a.resources.is_empty();
    let b_res = !b.namespaces.is_empty() || !b.resources.is_empty();
    if a_res {
        // `b` must be a resource rule inside `a`'s namespaces and resources.
        if !b_res || !list(&a.namespaces, &b.namespaces) {
            return false;
        }
        if a.resources.is_empty() {
            return true;
        }
        if b.resources.is_empty() {
            return false;
        }
        return b
            .resources
            .iter()
            .all(|gb| a.resources.iter().any(|ga| group_covers(ga, gb)));
    }
    if !a.non_resource_urls.is_empty() {
        return !b_res
            && !b.non_resource_urls.is_empty()
            && b.non_resource_urls.iter().all(|u| {
                a.non_resource_urls
                    .iter()
                    .any(|s| url_covers(&s.value, &u.value))
            });
    }
    true
}

fn url_covers(spec: &str, other: &str) -> bool {
    if spec == "*" || spec == other {
        return true;
    }
    match spec.strip_suffix('*') {
        Some(prefix) => other.starts_with(prefix.trim_end_matches('*')),
        None => false,
    }
}

fn group_covers(a: &GroupResources, b: &GroupResources) -> bool {
    if a.group.value != b.group.value {
        return false;
    }
    if a.resources.is_empty() {
        return true;
    }
    let names_ok = a.resource_names.is_empty()
        || (!b.resource_names.is_empty()
            && b.resource_names
                .iter()
                .all(|n| a.resource_names.iter().any(|m| m.value == n.value)));
    if !names_ok {
        return false;
    }
    if b.resources.is_empty() {
        return a.resources.iter().any(|r| r.value == "*") && a.resource_names.is_empty();
    }
    b.resources.iter().all(|rb| {
        a.resources.iter().any(|ra| {
            if ra.value == rb.value || ra.value == "*" {
                return true;
            }
            // A concrete `resource[/sub]` in `b` matched by a pattern in `a`.
            if rb.value.contains('*') {
                return false;
            }
            let (res, sub) = rb.value.split_once('/').unwrap_or((&rb.value, ""));
            resource_pattern_matches(&ra.value, res, sub)
        })
    })
}

fn shadowed(p: &Policy, out: &mut Vec<Diagnostic>) {
    for (j, b) in p.rules.iter().enumerate() {
        if let Some(i) = (0..j).find(|&i| covers(&p.rules[i], b)) {
            let a = &p.rules[i];
            out.push(at_rule(
                p,
                Diagnostic::warning(
                    Code::Shadowed,
                    format!(
                        "this rule never applies: every request it matches is matched first by the rule at line {} (level {})",
                        p.line_of(a.pos),
                        a.level
                    ),
                )
                .help("move it above that rule, or remove it"),
                b,
            ));
        }
    }
}

/// The worst level each rule gives to a set of probes, with an example.
fn worst_by_rule(
    p: &Policy,
    probes: impl Iterator<Item = Request>,
    above: Level,
) -> BTreeMap<usize, (Level, Request)> {
    let mut by_rule: BTreeMap<usize, (Level, Request)> = BTreeMap::new();
    for req in probes {
        let d = p.decide(&req);
        if let Some(i) = d.rule.filter(|_| d.level > above) {
            let e = by_rule.entry(i).or_insert((d.level, req.clone()));
            if d.level > e.0 {
                *e = (d.level, req);
            }
        }
    }
    by_rule
}

/// Secrets and other credentials logged with their bodies. At `Request`
/// only verbs whose request body is the object leak it (a TokenRequest's
/// token is in its response, a TokenReview's in its request); at
/// `RequestResponse` every verb does.
fn sensitive(p: &Policy, u: &Universe, out: &mut Vec<Diagnostic>) {
    const WRITES: &[&str] = &["create", "update", "patch"];
    /// A resource whose bodies hold credentials.
    struct Sensitive {
        group: &'static str,
        resource: &'static str,
        sub: &'static str,
        verbs: &'static [&'static str],
        /// Verbs whose request body holds the value.
        request_leaks: &'static [&'static str],
        what: &'static str,
    }
    let cases = [
        Sensitive {
            group: "",
            resource: "secrets",
            sub: "",
            verbs: &VERBS,
            request_leaks: WRITES,
            what: "secret values",
        },
        Sensitive {
            group: "",
            resource: "configmaps",
            sub: "",
            verbs: &VERBS,
            request_leaks: WRITES,
            what: "configuration, often credentials too",
        },
        Sensitive {
            group: "",
            resource: "serviceaccounts",
            sub: "token",
            verbs: &["create"],
            request_leaks: &[],
            what: "the issued service account token",
        },
        Sensitive {
            group: "authentication.k8s.io",
            resource: "tokenreviews",
            sub: "",
            verbs: &["create"],
            request_leaks: &["create"],
            what: "the bearer token under review",
        },
    ];
    for Sensitive {
        group,
        resource,
        sub,
        verbs,
        request_leaks,
        what,
    } in cases
    {
        let res = if sub.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{sub}")
        };
        let leaking = u.requests(group, resource, sub, verbs).filter(|req| {
            let level = p.decide(req).level;
            level == Level::RequestResponse
                || (level == Level::Request && request_leaks.contains(&req.verb.as_str()))
        });
        for (i, (level, example)) in worst_by_rule(p, leaking, Level::Metadata) {
            let bodies = if level == Level::Request {
                "request bodies"
            } else {
                "request and response bodies"
            };
            out.push(at_rule(
                p,
                Diagnostic::error(
                    Code::SensitiveBody,
                    format!(
                        "{res} are logged at {level} by this rule (e.g. {}): their {bodies} hold {what}, which end up in the audit log",
                        describe(&example)
                    ),
                )
                .help(format!("log {res} at Metadata in an earlier rule")),
                &p.rules[i],
            ));
        }
    }
}

/// Reads logged with their (large) response bodies.
fn read_bodies(p: &Policy, u: &Universe, out: &mut Vec<Diagnostic>) {
    let mut resources: Vec<(String, String)> = [
        "pods",
        "services",
        "deployments",
        "nodes",
        "namespaces",
        "roles",
        "endpoints",
    ]
    .iter()
    .map(|r| (known::group_of(r).unwrap_or("").to_string(), r.to_string()))
    .collect();
    for r in &p.rules {
        for gr in &r.resources {
            for res in &gr.resources {
                if !res.value.contains('*') && !res.value.contains('/') {
                    resources.push((gr.group.value.clone(), res.value.clone()));
                }
            }
        }
    }
    resources.sort();
    resources.dedup();
    let mut found: BTreeMap<usize, (Level, Request)> = BTreeMap::new();
    for (group, resource) in &resources {
        if matches!(resource.as_str(), "secrets" | "configmaps") {
            continue; // reported as sensitive
        }
        let probes = u.requests(group, resource, "", &["get", "list", "watch"]);
        for (i, v) in worst_by_rule(p, probes, Level::Request) {
            found.entry(i).or_insert(v);
        }
    }
    for (i, (_, example)) in found {
        out.push(at_rule(
            p,
            Diagnostic::warning(
                Code::ReadResponseBodies,
                format!(
                    "get, list and watch are logged at RequestResponse by this rule (e.g. {}): every read's response body goes into the log, and a list can be megabytes",
                    describe(&example)
                ),
            )
            .help("log reads at Metadata or Request in an earlier rule (add `verbs: [get, list, watch]`)"),
            &p.rules[i],
        ));
    }
}

/// A rule listing `pods` whose exec/attach/port-forward requests end up
/// lower than the rule meant.
fn pods_subresources(p: &Policy, u: &Universe, out: &mut Vec<Diagnostic>) {
    for (ri, r) in p.rules.iter().enumerate() {
        if r.level == Level::None {
            continue;
        }
        for gr in r.resources.iter().filter(|g| g.group.value.is_empty()) {
            let Some(pods) = gr.resources.iter().find(|s| s.value == "pods") else {
                continue;
            };
            'sub: for sub in ["exec", "attach", "portforward"] {
                for req in u.requests("", "pods", "", &["create", "get"]) {
                    if !rule_matches(r, &req) || p.decide(&req).rule != Some(ri) {
                        continue;
                    }
                    let mut sreq = req.clone();
                    if let Some(a) = &mut sreq.resource {
                        a.subresource = sub.to_string();
                    }
                    let d = p.decide(&sreq);
                    if d.level < r.level {
                        let how = match d.rule {
                            Some(i) => format!(
                                "logged at {} by the rule at line {}",
                                d.level,
                                p.line_of(p.rules[i].pos)
                            ),
                            None => "not logged at all (no rule matches)".to_string(),
                        };
                        let msg = format!(
                            "`pods` does not match pods/{sub}: {} is {how}, while `pods` is logged at {}",
                            describe(&sreq),
                            r.level
                        );
                        let help = "list subresources explicitly: \"pods/exec\", \"pods/attach\", \"pods/portforward\" (or \"pods/*\")";
                        let d = if d.level == Level::None {
                            Diagnostic::warning(Code::PodsSubresource, msg)
                        } else {
                            Diagnostic::info(Code::PodsSubresource, msg)
                        };
                        out.push(at(p, d.help(help), pods));
                        break 'sub;
                    }
                }
            }
        }
    }
}

/// Known high-volume, low-value traffic, as probe requests.
fn noisy() -> Vec<(&'static str, Vec<Request>)> {
    let proxy: (&str, &[&str]) = ("system:kube-proxy", &["system:authenticated"]);
    let node: (&str, &[&str]) = (
        "system:node:node-1",
        &["system:nodes", "system:authenticated"],
    );
    let anon: (&str, &[&str]) = ("system:anonymous", &["system:unauthenticated"]);
    let authed: (&str, &[&str]) = ("monitor", &["system:authenticated"]);
    let res = Request::to_resource;
    vec![
        (
            "kube-proxy's watches of endpoints and services",
            vec![
                res(proxy, "watch", ["", "endpoints", ""], "", ""),
                res(proxy, "watch", ["", "services", ""], "", ""),
                res(
                    proxy,
                    "watch",
                    ["discovery.k8s.io", "endpointslices", ""],
                    "",
                    "",
                ),
            ],
        ),
        (
            "nodes reading their own node and its status",
            vec![
                res(node, "get", ["", "nodes", ""], "", ""),
                res(node, "get", ["", "nodes", "status"], "", ""),
            ],
        ),
        (
            "health and version checks",
            ["/healthz", "/readyz", "/livez", "/version"]
                .iter()
                .flat_map(|path| [Request::to_url(anon, path), Request::to_url(authed, path)])
                .collect(),
        ),
        (
            "events",
            vec![
                res(node, "create", ["", "events", ""], "default", ""),
                res(node, "patch", ["", "events", ""], "default", ""),
                res(
                    node,
                    "create",
                    ["events.k8s.io", "events", ""],
                    "default",
                    "",
                ),
            ],
        ),
    ]
}

fn high_volume(p: &Policy, out: &mut Vec<Diagnostic>) {
    for (what, probes) in noisy() {
        let mut worst: Option<(Level, usize, Request)> = None;
        for req in probes {
            let d = p.decide(&req);
            if let Some(i) = d.rule.filter(|_| d.level > Level::None) {
                if worst.as_ref().is_none_or(|w| d.level > w.0) {
                    worst = Some((d.level, i, req));
                }
            }
        }
        let Some((level, i, example)) = worst else {
            continue;
        };
        let msg = format!(
            "{what} are logged at {level} by this rule (e.g. {}): high-volume, low-value traffic",
            describe(&example)
        );
        let d = if level >= Level::Request {
            Diagnostic::warning(Code::HighVolume, msg)
        } else {
            Diagnostic::info(Code::HighVolume, msg)
        };
        out.push(at_rule(
            p,
            d.help("drop it with `level: None` in an early rule"),
            &p.rules[i],
        ));
    }
}

fn stages(p: &Policy, out: &mut Vec<Diagnostic>) {
    if p.omit_stages.iter().any(|s| s.value == "RequestReceived") {
        return;
    }
    let logging: Vec<&Rule> = p
        .rules
        .iter()
        .filter(|r| {
            r.level != Level::None && !r.omit_stages.iter().any(|s| s.value == "RequestReceived")
        })
        .collect();
    if let Some(first) = logging.first() {
        let lines: Vec<String> = logging
            .iter()
            .map(|r| p.line_of(r.pos).to_string())
            .collect();
        out.push(at_rule(
            p,
            Diagnostic::warning(
                Code::RequestReceived,
                format!(
                    "RequestReceived is not omitted (rules at line {}): every request is logged once when it arrives and again when it completes",
                    lines.join(", ")
                ),
            )
            .help("add `omitStages: [\"RequestReceived\"]` at the top of the policy"),
            first,
        ));
    }
}

fn catch_all(p: &Policy, out: &mut Vec<Diagnostic>) {
    if p.rules.iter().any(Rule::is_catch_all) {
        return;
    }
    let last = p.rules.last().expect("rules are not empty here");
    out.push(at_rule(
        p,
        Diagnostic::warning(
            Code::NoCatchAll,
            "no final catch-all rule: requests no rule matches are not logged at all",
        )
        .help("end the policy with `- level: Metadata` (and omitStages: [\"RequestReceived\"])"),
        last,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Severity;

    /// `(check, severity, line)` of every finding.
    fn findings(text: &str) -> Vec<(&'static str, Severity, usize)> {
        let (p, d) = super::super::tests::policy(text);
        assert!(d.is_empty(), "{d:?}");
        let p = p.unwrap();
        lint(&p)
            .into_iter()
            .map(|d| (d.code.as_str(), d.severity, d.line_col().map_or(0, |l| l.0)))
            .collect()
    }

    fn has(f: &[(&'static str, Severity, usize)], code: &str, sev: Severity, line: usize) -> bool {
        f.iter().any(|x| x.0 == code && x.1 == sev && x.2 == line)
    }

    fn codes(f: &[(&'static str, Severity, usize)]) -> Vec<&'static str> {
        f.iter().map(|x| x.0).collect()
    }

    const HEAD: &str =
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n";
    const TAIL: &str = "- level: Metadata\n";

    fn with(rules: &str) -> String {
        format!("{HEAD}{rules}{TAIL}")
    }

    #[test]
    fn a_clean_policy_has_no_findings() {
        let f = findings(&with(concat!(
            "- level: None\n  nonResourceURLs: [\"/healthz*\", \"/readyz*\", \"/livez*\", \"/version\"]\n",
            "- level: None\n  users: [\"system:kube-proxy\"]\n  verbs: [watch]\n  resources:\n  - group: \"\"\n    resources: [endpoints, services]\n  - group: discovery.k8s.io\n    resources: [endpointslices]\n",
            "- level: None\n  userGroups: [\"system:nodes\"]\n  verbs: [get]\n  resources:\n  - group: \"\"\n    resources: [nodes, nodes/status]\n",
            "- level: None\n  verbs: [create, update, patch]\n  resources:\n  - group: \"\"\n    resources: [events]\n  - group: events.k8s.io\n    resources: [events]\n",
        )));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn empty_rules() {
        assert_eq!(codes(&findings("rules: []\n")), ["empty-rules"]);
    }

    #[test]
    fn shadowed_rules() {
        let f = findings(&with(concat!(
            "- level: Metadata\n  resources:\n  - group: \"\"\n    resources: [\"*\"]\n",
            "- level: Request\n  verbs: [create]\n  resources:\n  - group: \"\"\n    resources: [pods, pods/exec]\n",
            "- level: Request\n  resources:\n  - group: apps\n",
        )));
        assert!(has(&f, "shadowed", Severity::Warning, 9), "{f:?}");
        assert!(
            !f.iter().any(|x| x.0 == "shadowed" && x.2 == 14),
            "another group is not shadowed: {f:?}"
        );
        // A narrower user list is covered; a different one is not.
        let f = findings(&with(concat!(
            "- level: None\n  users: [a, b]\n",
            "- level: Request\n  users: [a]\n  verbs: [get]\n",
            "- level: Request\n  users: [c]\n",
            "- level: None\n  nonResourceURLs: [\"/api*\"]\n",
            "- level: None\n  nonResourceURLs: [\"/apis/x\"]\n",
        )));
        assert!(has(&f, "shadowed", Severity::Warning, 7), "{f:?}");
        assert!(!f.iter().any(|x| x.0 == "shadowed" && x.2 == 10), "{f:?}");
        assert!(has(&f, "shadowed", Severity::Warning, 14), "{f:?}");
        // A rule after a catch-all is shadowed.
        let f = findings(&format!("{HEAD}{TAIL}- level: None\n  users: [x]\n"));
        assert!(has(&f, "shadowed", Severity::Warning, 6), "{f:?}");
    }

    #[test]
    fn secrets_and_tokens_with_bodies_directly_or_through_a_broad_rule() {
        let f = findings(&with(
            "- level: RequestResponse\n  resources:\n  - group: \"\"\n    resources: [secrets]\n",
        ));
        assert!(has(&f, "sensitive-body", Severity::Error, 5), "{f:?}");
        let f = findings(&with("- level: Request\n  verbs: [create, update]\n"));
        let sensitive: Vec<_> = f.iter().filter(|x| x.0 == "sensitive-body").collect();
        assert_eq!(
            sensitive.len(),
            3,
            "secrets, configmaps and tokenreviews: {f:?}"
        );
        // Request-level deletes carry no object; token requests carry no token.
        let f = findings(&with("- level: Request\n  verbs: [delete, deletecollection]\n- level: Request\n  resources:\n  - group: \"\"\n    resources: [serviceaccounts/token]\n"));
        assert!(!codes(&f).contains(&"sensitive-body"), "{f:?}");
        let f = findings(&with("- level: RequestResponse\n  resources:\n  - group: \"\"\n    resources: [serviceaccounts/token]\n"));
        assert!(has(&f, "sensitive-body", Severity::Error, 5), "{f:?}");
        // Metadata first makes a broad rule after it harmless.
        let f = findings(&with("- level: Metadata\n  resources:\n  - group: \"\"\n    resources: [secrets, configmaps, serviceaccounts/token]\n  - group: authentication.k8s.io\n    resources: [tokenreviews]\n- level: Request\n  verbs: [create]\n"));
        assert!(!codes(&f).contains(&"sensitive-body"), "{f:?}");
    }

    #[test]
    fn no_catch_all() {
        let f = findings(&format!("{HEAD}- level: Metadata\n  verbs: [get]\n"));
        assert!(has(&f, "no-catch-all", Severity::Warning, 5), "{f:?}");
        assert!(!codes(&findings(&with(""))).contains(&"no-catch-all"));
    }

    #[test]
    fn request_received_not_omitted() {
        let f = findings("rules:\n- level: None\n  users: [x]\n- level: Metadata\n  verbs: [get]\n- level: Metadata\n  omitStages: [RequestReceived]\n");
        assert!(has(&f, "request-received", Severity::Warning, 4), "{f:?}");
        let f = findings("rules:\n- level: Metadata\n  omitStages: [RequestReceived]\n");
        assert!(!codes(&f).contains(&"request-received"), "{f:?}");
    }

    #[test]
    fn reads_at_request_response() {
        let f = findings(&with("- level: RequestResponse\n  resources:\n  - group: apps\n    resources: [deployments]\n"));
        assert!(
            has(&f, "read-response-bodies", Severity::Warning, 5),
            "{f:?}"
        );
        let f = findings(&with("- level: RequestResponse\n  verbs: [create]\n  resources:\n  - group: apps\n    resources: [deployments]\n"));
        assert!(!codes(&f).contains(&"read-response-bodies"), "{f:?}");
    }

    #[test]
    fn high_volume_traffic() {
        // At Request: a warning; at Metadata (the catch-all): a note.
        let f = findings(&with(
            "- level: Request\n  nonResourceURLs: [\"/healthz*\"]\n",
        ));
        assert!(has(&f, "high-volume", Severity::Warning, 5), "{f:?}");
        let infos: Vec<_> = f
            .iter()
            .filter(|x| x.0 == "high-volume" && x.1 == Severity::Info)
            .collect();
        assert_eq!(infos.len(), 3, "kube-proxy, node reads, events: {f:?}");
    }

    #[test]
    fn pods_where_subresources_were_meant() {
        let f = findings(&format!(
            "{HEAD}- level: Request\n  resources:\n  - group: \"\"\n    resources: [pods]\n"
        ));
        assert!(has(&f, "pods-subresource", Severity::Warning, 8), "{f:?}");
        let f = findings(&with(
            "- level: Request\n  resources:\n  - group: \"\"\n    resources: [pods]\n",
        ));
        assert!(
            has(&f, "pods-subresource", Severity::Info, 8),
            "logged lower: a note; {f:?}"
        );
        let f = findings(&format!("{HEAD}- level: Request\n  resources:\n  - group: \"\"\n    resources: [pods, pods/exec, pods/attach, pods/portforward]\n"));
        assert!(!codes(&f).contains(&"pods-subresource"), "{f:?}");
    }

    #[test]
    fn groups_and_shapes() {
        let f = findings(&with(concat!(
            "- level: Request\n  resources:\n  - group: rbac.authorization.k8s.io/v1\n    resources: [roles]\n",
            "- level: Request\n  resources:\n  - group: \"\"\n    resources: [deployments, pods]\n",
            "- level: Request\n  resources:\n  - group: \"\"\n    resourceNames: [x]\n",
            "- level: None\n  nonResourceURLs: [\"/x\"]\n  resources:\n  - group: \"\"\n",
            "- level: Request\n  resources:\n  - group: example.com\n    resources: [widgets]\n",
            "- level: Request\n  resources:\n  - group: extensions\n    resources: [deployments]\n",
        )));
        assert!(has(&f, "group-version", Severity::Error, 7), "{f:?}");
        assert!(has(&f, "wrong-group", Severity::Error, 12), "{f:?}");
        assert!(
            has(&f, "names-without-resources", Severity::Error, 16),
            "{f:?}"
        );
        assert!(has(&f, "urls-with-resources", Severity::Error, 18), "{f:?}");
        assert_eq!(
            f.iter().filter(|x| x.0 == "wrong-group").count(),
            1,
            "custom and legacy groups pass: {f:?}"
        );
    }
}
