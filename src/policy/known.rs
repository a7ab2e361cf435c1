//! What the linter knows about the built-in API: which group each resource
//! is served from, and whether it lives in a namespace.

/// `(resource, groups it is served from, namespaced)`.
const RESOURCES: &[(&str, &[&str], bool)] = &[
    ("pods", &[""], true),
    ("services", &[""], true),
    ("secrets", &[""], true),
    ("configmaps", &[""], true),
    ("serviceaccounts", &[""], true),
    ("endpoints", &[""], true),
    ("events", &["", "events.k8s.io"], true),
    ("persistentvolumeclaims", &[""], true),
    ("replicationcontrollers", &[""], true),
    ("limitranges", &[""], true),
    ("resourcequotas", &[""], true),
    ("podtemplates", &[""], true),
    ("bindings", &[""], true),
    ("namespaces", &[""], false),
    ("nodes", &[""], false),
    ("persistentvolumes", &[""], false),
    ("componentstatuses", &[""], false),
    ("deployments", &["apps"], true),
    ("replicasets", &["apps"], true),
    ("daemonsets", &["apps"], true),
    ("statefulsets", &["apps"], true),
    ("controllerrevisions", &["apps"], true),
    ("jobs", &["batch"], true),
    ("cronjobs", &["batch"], true),
    ("horizontalpodautoscalers", &["autoscaling"], true),
    ("ingresses", &["networking.k8s.io"], true),
    ("networkpolicies", &["networking.k8s.io"], true),
    ("ingressclasses", &["networking.k8s.io"], false),
    ("endpointslices", &["discovery.k8s.io"], true),
    ("poddisruptionbudgets", &["policy"], true),
    ("roles", &["rbac.authorization.k8s.io"], true),
    ("rolebindings", &["rbac.authorization.k8s.io"], true),
    ("clusterroles", &["rbac.authorization.k8s.io"], false),
    ("clusterrolebindings", &["rbac.authorization.k8s.io"], false),
    ("tokenreviews", &["authentication.k8s.io"], false),
    ("selfsubjectreviews", &["authentication.k8s.io"], false),
    ("subjectaccessreviews", &["authorization.k8s.io"], false),
    ("selfsubjectaccessreviews", &["authorization.k8s.io"], false),
    ("selfsubjectrulesreviews", &["authorization.k8s.io"], false),
    ("localsubjectaccessreviews", &["authorization.k8s.io"], true),
    (
        "certificatesigningrequests",
        &["certificates.k8s.io"],
        false,
    ),
    (
        "mutatingwebhookconfigurations",
        &["admissionregistration.k8s.io"],
        false,
    ),
    (
        "validatingwebhookconfigurations",
        &["admissionregistration.k8s.io"],
        false,
    ),
    (
        "validatingadmissionpolicies",
        &["admissionregistration.k8s.io"],
        false,
    ),
    (
        "customresourcedefinitions",
        &["apiextensions.k8s.io"],
        false,
    ),
    ("apiservices", &["apiregistration.k8s.io"], false),
    ("storageclasses", &["storage.k8s.io"], false),
    ("volumeattachments", &["storage.k8s.io"], false),
    ("csidrivers", &["storage.k8s.io"], false),
    ("csinodes", &["storage.k8s.io"], false),
    ("csistoragecapacities", &["storage.k8s.io"], true),
    ("priorityclasses", &["scheduling.k8s.io"], false),
    ("leases", &["coordination.k8s.io"], true),
    ("runtimeclasses", &["node.k8s.io"], false),
    ("flowschemas", &["flowcontrol.apiserver.k8s.io"], false),
    (
        "prioritylevelconfigurations",
        &["flowcontrol.apiserver.k8s.io"],
        false,
    ),
];

/// Groups that served workloads in old releases (`extensions` until 1.16,
/// 1.22 for ingresses): still accepted without a finding.
const LEGACY: &[(&str, &str)] = &[
    ("deployments", "extensions"),
    ("replicasets", "extensions"),
    ("daemonsets", "extensions"),
    ("ingresses", "extensions"),
    ("networkpolicies", "extensions"),
    ("podsecuritypolicies", "extensions"),
    ("podsecuritypolicies", "policy"),
    ("cronjobs", "batch"),
];

/// The groups serving a built-in resource (its name without subresource).
pub fn groups_of(resource: &str) -> Option<&'static [&'static str]> {
    RESOURCES
        .iter()
        .find(|(r, _, _)| *r == resource)
        .map(|(_, g, _)| *g)
}

/// The group to use for a resource in probes: its first group, or `None`
/// for resources the table does not know (custom resources).
pub fn group_of(resource: &str) -> Option<&'static str> {
    groups_of(resource).map(|g| g[0])
}

/// Whether a known resource is namespaced (unknown ones are assumed to be).
pub fn namespaced(resource: &str) -> bool {
    RESOURCES
        .iter()
        .find(|(r, _, _)| *r == resource)
        .is_none_or(|(_, _, n)| *n)
}

/// Whether `group` is a group the table knows (so a resource missing from
/// it is really misplaced, not a custom resource).
pub fn known_group(group: &str) -> bool {
    RESOURCES.iter().any(|(_, gs, _)| gs.contains(&group))
        || LEGACY.iter().any(|(_, g)| *g == group)
        || matches!(
            group,
            "metrics.k8s.io"
                | "resource.k8s.io"
                | "apiserverinternal.k8s.io"
                | "storagemigration.k8s.io"
        )
}

/// Whether a built-in resource is served from `group` (legacy groups
/// included).
pub fn served_from(resource: &str, group: &str) -> bool {
    groups_of(resource).is_some_and(|g| g.contains(&group))
        || LEGACY.iter().any(|(r, g)| *r == resource && *g == group)
}
