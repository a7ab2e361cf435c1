//! Aggregated ClusterRoles. The API server's aggregation controller sets
//! the rules of a ClusterRole with an `aggregationRule` to the union of the
//! rules of every other ClusterRole one of its `clusterRoleSelectors`
//! matches (duplicates dropped); since an aggregated role's rules change
//! when its sources do, the union is transitive. Each rule keeps the role
//! it was written in, so a report can say where a grant comes from.

use std::collections::BTreeMap;

use super::{Operator, PolicyRule, Role, RoleKind, Selector};

/// Whether a label selector matches a set of labels (the selector's
/// requirements ANDed; an empty selector matches everything).
pub fn matches(sel: &Selector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|r| {
            let value = labels.get(&r.key);
            match r.operator {
                Operator::In => value.is_some_and(|v| r.values.contains(v)),
                Operator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                Operator::Exists => value.is_some(),
                Operator::DoesNotExist => value.is_none(),
            }
        })
}

/// A rule and the index of the role it was written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedRule<'a> {
    pub rule: &'a PolicyRule,
    pub source: usize,
}

/// The rules in effect for every role, by index into `roles`: its own,
/// plus, for an aggregated ClusterRole, those of the ClusterRoles it
/// selects (first, so a grant is credited to the role that wrote it; an
/// exported aggregated role already lists copies of them).
pub fn effective_rules(roles: &[Role]) -> Vec<Vec<SourcedRule<'_>>> {
    (0..roles.len())
        .map(|i| {
            let mut out: Vec<SourcedRule<'_>> = Vec::new();
            let mut seen = vec![false; roles.len()];
            collect(roles, i, &mut seen, &mut out);
            out
        })
        .collect()
}

fn collect<'a>(roles: &'a [Role], i: usize, seen: &mut [bool], out: &mut Vec<SourcedRule<'a>>) {
    seen[i] = true;
    let role = &roles[i];
    if let Some(selectors) = &role.aggregation {
        for (j, other) in roles.iter().enumerate() {
            let selected = other.kind == RoleKind::ClusterRole
                && selectors.iter().any(|s| matches(s, &other.labels));
            if selected && !seen[j] {
                collect(roles, j, seen, out);
            }
        }
    }
    for rule in &role.rules {
        if !out.iter().any(|r| r.rule == rule) {
            out.push(SourcedRule { rule, source: i });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::Requirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn cluster_role(
        name: &str,
        l: &[(&str, &str)],
        verb: &str,
        agg: Option<Vec<Selector>>,
    ) -> Role {
        Role {
            kind: RoleKind::ClusterRole,
            namespace: String::new(),
            name: name.into(),
            labels: labels(l),
            rules: vec![PolicyRule {
                verbs: vec![verb.into()],
                api_groups: vec![String::new()],
                resources: vec!["pods".into()],
                ..PolicyRule::default()
            }],
            aggregation: agg,
        }
    }

    fn expr(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn selectors_follow_label_selector_semantics() {
        let l = labels(&[("tier", "web"), ("env", "prod")]);
        let with = |match_labels: &[(&str, &str)], e: Vec<Requirement>| Selector {
            match_labels: labels(match_labels),
            match_expressions: e,
        };
        assert!(matches(&with(&[], vec![]), &l), "empty selects all");
        assert!(matches(&with(&[("tier", "web")], vec![]), &l));
        assert!(!matches(&with(&[("tier", "db")], vec![]), &l));
        assert!(matches(
            &with(&[], vec![expr("env", Operator::In, &["prod", "qa"])]),
            &l
        ));
        assert!(!matches(
            &with(&[], vec![expr("env", Operator::NotIn, &["prod"])]),
            &l
        ));
        assert!(
            matches(&with(&[], vec![expr("zone", Operator::NotIn, &["a"])]), &l),
            "NotIn holds for a missing label"
        );
        assert!(matches(
            &with(&[], vec![expr("env", Operator::Exists, &[])]),
            &l
        ));
        assert!(!matches(
            &with(&[], vec![expr("env", Operator::DoesNotExist, &[])]),
            &l
        ));
        assert!(
            !matches(
                &with(
                    &[("tier", "web")],
                    vec![expr("env", Operator::DoesNotExist, &[])]
                ),
                &l
            ),
            "requirements are ANDed"
        );
    }

    #[test]
    fn aggregation_is_transitive_and_credits_the_source() {
        let sel = |k: &str| {
            Some(vec![Selector {
                match_labels: labels(&[(k, "true")]),
                match_expressions: vec![],
            }])
        };
        let roles = vec![
            cluster_role("top", &[], "get", sel("to-top")),
            cluster_role("middle", &[("to-top", "true")], "list", sel("to-middle")),
            cluster_role("leaf", &[("to-middle", "true")], "watch", None),
            // A loop back to the top must not recurse forever.
            cluster_role("loop", &[("to-middle", "true")], "get", sel("to-top")),
        ];
        let eff = effective_rules(&roles);
        let verbs = |i: usize| -> Vec<(&str, &str)> {
            eff[i]
                .iter()
                .map(|r| (r.rule.verbs[0].as_str(), roles[r.source].name.as_str()))
                .collect()
        };
        assert_eq!(
            verbs(0),
            vec![("watch", "leaf"), ("get", "loop"), ("list", "middle")],
            "get is credited to the first role that wrote it"
        );
        assert_eq!(verbs(2), vec![("watch", "leaf")]);
    }
}
