//! Every diagnostic code, in one place (as vrl's `compiler/codes.rs`). A
//! code is printed in brackets after the severity (`error[unknown-field]`),
//! appears in `--format json` findings, and `saker check --explain CODE`
//! prints its explanation. Codes are never reused or renamed: tools and
//! users grep for them.

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $explain:literal;)*) => {
        /// The kind of a [`super::Diagnostic`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as printed (`unknown-field`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// What the code means, what triggers it and how to fix it.
            pub fn explain(self) -> &'static str {
                match self {
                    $(Code::$variant => $explain,)*
                }
            }
        }
    };
}

codes! {
    // Rules files: reading and structure.
    /// A rules or test file cannot be read.
    Read = "read", "The file could not be read (missing, unreadable or not UTF-8).\nExample: `saker check missing.yaml`.\nFix: check the path and the file's permissions and encoding.";
    /// The text is not valid YAML.
    Yaml = "yaml", "The file is not valid YAML: the parser stopped at the position shown.\nExample: `- rule: [unclosed`.\nFix: correct the YAML syntax at the caret.";
    /// Valid YAML, but not shaped like a rules file.
    YamlStructure = "yaml-structure", "The YAML is valid but not a rules file: a rules file is a sequence of items (`- rule: ...`, `- macro: ...`, `- list: ...`), each a mapping.\nExample: a file holding `rule: x` (a mapping, not a sequence).\nFix: make every item a `- key: value` mapping in a top-level sequence.";
    /// A top-level item of an unknown kind (a warning; it is ignored).
    UnknownItem = "unknown-item", "A top-level item is none of rule, macro, list, required_engine_version or required_plugin_versions; it is ignored.\nExample: `- rules: x`.\nFix: correct the item's first key.";
    /// A key no rule, macro or list has (a warning; it is ignored).
    UnknownKey = "unknown-key", "An item has a key that Saker does not know; it is ignored (a warning in rules files, an error in audit policies). In a `saker run --config` file, a key that is not a long flag of `saker run` (or is given twice) is an error.\nExample: `- rule: x` with `priorty: WARNING`; `rule_matching: all` in a config file.\nFix: correct the key; the message suggests the nearest known one.";
    /// A required key is missing.
    MissingKey = "missing-key", "A rule, macro or list lacks a key it needs (a rule needs condition, output and priority unless it appends or overrides).\nExample: `- rule: x` with only `condition:`.\nFix: add the keys the message lists.";
    /// `required_engine_version` is not a version.
    EngineVersion = "engine-version", "`required_engine_version` is not a number or x.y.z version, or asks for a newer engine than Saker implements.\nExample: `- required_engine_version: soon`.\nFix: give a version such as `0.26.0`.";
    /// `required_plugin_versions` is malformed.
    PluginVersion = "plugin-version", "`required_plugin_versions` must be a sequence of {name, version} (with optional alternatives).\nExample: `- required_plugin_versions: k8saudit`.\nFix: write `- required_plugin_versions: [{name: k8saudit, version: 0.1.0}]`.";
    /// A deprecated form that still works (a warning).
    Deprecated = "deprecated", "A form Falco deprecated, still accepted.\nExample: a standalone `- rule: x` with only `enabled: false`.\nFix: use `override: {enabled: replace}`.";
    /// `append` to something not defined yet.
    AppendMissing = "append-missing", "A list, macro or rule uses `append` (or `override`) but nothing of that name was defined before it.\nExample: `- list: extra, items: [a], append: true` with no earlier `extra`.\nFix: load the file that defines it first, or drop `append`.";
    /// A malformed `override`.
    Override = "override", "An `override` is malformed: a mode other than append or replace, an override for a key the item does not give, a key given without its override, or `override` together with `append: true`.\nExample: `override: {condition: merge}`.\nFix: use `append` or `replace` for keys the item also gives.";
    /// A rule redefined with a different source.
    Redefinition = "redefinition", "A rule was defined again with another `source` than the first definition.\nExample: `- rule: x, source: syscall` after `- rule: x, source: k8s_audit`.\nFix: give the rules different names.";
    /// An unknown `priority`.
    Priority = "priority", "`priority` is not one of Falco's priorities: EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFORMATIONAL (INFO), DEBUG.\nExample: `priority: HIGH`.\nFix: use one of those.";
    /// A malformed exception.
    Exception = "exception", "An exception is malformed: fields and values differ in number, a comparison operator is unknown, or an append tries to add fields.\nExample: `exceptions: [{name: e, fields: [ka.user.name, ka.verb], values: [[alice]]}]`.\nFix: give each value tuple one value per field.";
    // Conditions and outputs.
    /// The condition or output does not parse.
    Syntax = "syntax", "The condition does not parse: the caret shows where the grammar expected something else (an operator, a value, a closing parenthesis).\nExample: `condition: ka.verb = `.\nFix: complete the expression; the message says what was expected.";
    /// An unknown field.
    UnknownField = "unknown-field", "The condition or output uses a field Saker does not know.\nExample: `ka.usr.name`.\nFix: `saker fields` lists every field; the message suggests the nearest one.";
    /// A field given a wrong argument.
    FieldArgument = "field-argument", "A field was given an argument it does not take, or lacks one it needs, or the argument has the wrong form.\nExample: `ka.user.name[0]`, or `ka.req.pod.containers.image` with a non-numeric index.\nFix: see `saker fields` for each field's argument.";
    /// A macro that is not defined.
    UndefinedMacro = "undefined-macro", "A bare identifier in a condition is neither a field nor a defined macro.\nExample: `condition: kevt and kcreat`.\nFix: define the macro, or correct its name (the message suggests one).";
    /// A list that is not defined.
    UndefinedList = "undefined-list", "A name inside `( … )` is not a defined list and is not quoted.\nExample: `ka.user.name in (admins)` without `- list: admins`.\nFix: define the list, or quote the value if it is a literal.";
    /// Macros that use each other.
    MacroCycle = "macro-cycle", "Macros reference each other in a cycle, so none can be expanded.\nExample: `- macro: a, condition: b` and `- macro: b, condition: a`.\nFix: break the cycle.";
    /// An operator a list-valued field does not take.
    ListOperator = "list-operator", "A list-valued field was compared with an operator other than `exists`, `in` or `intersects`.\nExample: `ka.req.pod.containers.image = nginx`.\nFix: use `in` (every value in the set) or `intersects` (any value).";
    /// An operator that does not apply to k8s audit fields.
    OperatorType = "operator-type", "The operator works on byte buffers (`bcontains`, `bstartswith`); k8s audit fields are strings.\nExample: `ka.uri bcontains 2f`.\nFix: use `contains` or `startswith`.";
    /// An operator given a value of the wrong shape.
    OperatorValue = "operator-value", "The operator takes a single value and was given a list, or takes a list and was given a single value.\nExample: `ka.verb = (get, list)`.\nFix: use `in (get, list)`, or a single value.";
    /// A non-numeric value compared numerically.
    Number = "number", "A numeric comparison (`<`, `<=`, `>`, `>=`, or a numeric field) was given a value that is not a number.\nExample: `ka.response.code >= ok`.\nFix: compare with a number.";
    /// A regex that does not compile.
    Regex = "regex", "The pattern of `regex` (or a glob) does not compile.\nExample: `ka.uri regex \"(\"`.\nFix: correct the pattern; `regex` is a full-string match.";
    /// A transformer called wrongly.
    Transformer = "transformer", "A transformer (`tolower`, `toupper`, `b64`, `basename`, `len`, `val`) got the wrong number or kind of arguments.\nExample: `tolower(ka.user.name, ka.verb)`.\nFix: give it one field.";
    /// An output template that cannot be rendered.
    Output = "output", "The output template refers to something it cannot render: an unknown field, or `%agg.*` in a rule without `aggregate:`.\nExample: `output: \"%agg.value\"` in a per-event rule.\nFix: use fields the rule has.";
    /// A value of `innet` that is not a network.
    Network = "network", "A value of `innet` is not an IP address or a network in address/prefix form.\nExample: `ka.sourceips innet (10.0.0.0/33)`.\nFix: write networks as 10.0.0.0/8 or fd00::/8.";
    /// A condition on a field the rule's events never carry (a warning).
    StageField = "stage-field", "The condition needs a field that the events it can match never carry, so the rule can never fire (a lint warning).\nExample: a condition on `ka.resp.name` (response bodies) in a rule that only matches `get` requests, whose responses are not logged with the object.\nFix: use a field the events carry, or match the stage and level that carry it.";
    /// `in` against an empty set (a warning).
    EmptySet = "empty-set", "`in` or `intersects` compares against a set that is empty (an empty list), so the test is always false, or always true under `not` (a lint warning).\nExample: `ka.user.name in (admins)` with `- list: admins, items: []`.\nFix: fill the list, or drop the test.";
    /// An allow-list that passes on an empty list field (a warning).
    UnguardedListIn = "unguarded-list-in", "A list-valued field is tested with `in` without requiring it to hold values: in Falco's semantics an empty list is inside every set, so an allow-list passes for an event whose field is empty (a lint warning).\nExample: `ka.req.pod.containers.image.repository in (trusted_images)` for a pod whose containers name no image.\nFix: add `len(FIELD) > 0 and` before the test.";
    /// A malformed or inconsistent `aggregate:` clause.
    Aggregate = "aggregate", "The `aggregate:` clause does not parse or does not hold together: a window or `for` not a multiple of the resolution, `<` with `by`, a rate threshold without a unit, a list field in `by`.\nExample: `aggregate: count < 1 over 5m by ka.user.name`.\nFix: see DESIGN 2.3; absence rules (`<`, `<=`) have no `by`.";
    /// A malformed `sequence:`.
    Sequence = "sequence", "The `sequence:` of a rule does not hold together: `within` or `steps` missing, a step without `name`, `condition` or `by`, two steps with one name, a single step, `within` not a duration or not a multiple of the resolution, or `sequence` together with `aggregate`.\nExample: `sequence: {within: 10m, steps: [{name: a, condition: kcreate, by: [ka.user.name]}]}` (one step).\nFix: see DESIGN 2.4: at least two named steps, each with a condition and `by`.";
    /// Steps whose keys cannot be joined.
    SequenceKey = "sequence-key", "The steps' `by` lists cannot be joined into one key: they have different lengths, or a `by` field is a list field (a key needs one value).\nExample: step `created` with `by: [ka.target.namespace, ka.resp.name]`, step `shell` with `by: [ka.target.name]`.\nFix: give every step a `by` list of the same length, of scalar fields, in the same order of meaning.";
    /// `%STEP.FIELD` naming no step.
    StepField = "step-field", "The output of a sequence rule uses `%STEP.FIELD` with a STEP that is not one of the rule's step names.\nExample: `%shel.ka.user.name` in a rule whose steps are `created` and `shell`.\nFix: use a step's name, or `%FIELD` for the completing event's field.";
    /// A malformed `first_seen` clause.
    FirstSeen = "first-seen", "An `aggregate: first_seen ...` clause takes no threshold and no `for`: it fires on a key not seen within its window.\nExample: `aggregate: first_seen > 1 over 7d by ka.user.name`.\nFix: write `aggregate: first_seen over 7d by ka.user.name` (DESIGN 2.5).";
    // Rule tests.
    /// A malformed rule test file.
    TestFile = "test-file", "A `saker test` file is malformed: no `tests:`, a test without `expect`, an expected alert without `rule`.\nExample: `tests: 5`.\nFix: see the format in `saker test --help` and rules/tests/.";
    // RBAC objects (`saker rbac`).
    /// An RBAC list item that is not an object.
    NotAnObject = "not-an-object", "An item of an RBAC export (a List's `items`, a document of a multi-document file) is not a mapping.\nExample: `items: [ClusterRole]`.\nFix: export with `kubectl get roles,rolebindings,clusterroles,clusterrolebindings -A -o yaml`.";
    // Audit policies (`saker policy`).
    /// A file with no policy in it.
    EmptyPolicy = "empty-policy", "The file holds no audit policy document.\nExample: an empty file.\nFix: give an audit.k8s.io/v1 Policy.";
    /// A policy without rules.
    EmptyRules = "empty-rules", "The policy has no `rules`: the API server logs nothing.\nExample: `kind: Policy` alone.\nFix: add rules, ending with a catch-all.";
    /// Not a Policy document.
    NotAPolicy = "not-a-policy", "The document is not an audit Policy: it is not a mapping, or its `kind` is not Policy.\nExample: a file holding a list of rules without the Policy around them.\nFix: wrap the rules in `apiVersion: audit.k8s.io/v1`, `kind: Policy`, `rules:`.";
    /// A removed or unknown policy apiVersion.
    ApiVersion = "api-version", "`apiVersion` is not audit.k8s.io/v1 (v1alpha1 and v1beta1 were removed in Kubernetes 1.24).\nExample: `apiVersion: audit.k8s.io/v1beta1`.\nFix: write `apiVersion: audit.k8s.io/v1`.";
    /// A value of the wrong type in a policy or an RBAC object.
    BadValue = "bad-value", "A key of an audit policy, an RBAC object or a `saker run --config` file has a value of the wrong type or shape (a list expected and a string found, a boolean expected, a Role without a namespace, a value the flag would refuse, …); the API server, or `saker run`, refuses it.\nExample: `rules: Metadata` in a policy; `threads: many` in a config file.\nFix: give the type the message names.";
    /// A policy rule without a level.
    MissingLevel = "missing-level", "A policy rule has no `level`; the API server refuses the policy.\nExample: `- resources: [{group: \"\"}]` alone.\nFix: add `level: Metadata` (or another level).";
    /// An unknown audit level.
    BadLevel = "bad-level", "`level` is not None, Metadata, Request or RequestResponse; the API server refuses the policy.\nExample: `level: Full`.\nFix: use one of the four levels.";
    /// An unknown stage.
    BadStage = "bad-stage", "`omitStages` names something that is not a stage: RequestReceived, ResponseStarted, ResponseComplete, Panic.\nExample: `omitStages: [Received]`.\nFix: use the stage names.";
    /// Secrets or similar logged with their values.
    SensitiveBody = "sensitive-body", "The policy logs request or response bodies of objects that hold credentials (secrets, configmaps, token requests and reviews), so the audit log holds the secrets themselves.\nExample: `level: RequestResponse` for `resources: [{group: \"\"}]`.\nFix: log those resources at Metadata, before broader rules.";
    /// A resource listed under the wrong group.
    WrongGroup = "wrong-group", "A resource is listed under an API group that does not serve it, so the entry never matches.\nExample: `{group: \"\", resources: [deployments]}`.\nFix: list it under its group (`apps`).";
    /// A group written with a version.
    GroupVersion = "group-version", "A group is written with a version (`apps/v1`); groups are matched without one, so the entry never matches.\nExample: `group: apps/v1`.\nFix: write `group: apps`.";
    /// resourceNames without resources.
    NamesWithoutResources = "names-without-resources", "`resourceNames` without `resources`: the names are ignored and the entry matches every resource of the group.\nExample: `{group: \"\", resourceNames: [kubeconfig]}`.\nFix: add the resources the names belong to.";
    /// nonResourceURLs together with resources.
    UrlsWithResources = "urls-with-resources", "A rule has both `nonResourceURLs` and `resources` or `namespaces`; the API server refuses the policy.\nExample: `nonResourceURLs: [/healthz]` with `resources:` in one rule.\nFix: split it into two rules.";
    /// A rule that an earlier one always takes first.
    Shadowed = "shadowed", "Every request this rule matches is matched by an earlier rule, so it never applies (the first matching rule decides).\nExample: a catch-all `level: Metadata` before `level: RequestResponse` for secrets.\nFix: move the narrower rule before the broader one.";
    /// No rule that matches everything at the end.
    NoCatchAll = "no-catch-all", "No rule matches every request, so requests no rule names are not logged.\nExample: a policy whose last rule names only pods.\nFix: end with `- level: Metadata`.";
    /// RequestReceived not omitted.
    RequestReceived = "request-received", "The RequestReceived stage is not omitted: every request is logged twice, once before it runs.\nExample: a policy without `omitStages: [RequestReceived]`.\nFix: add it at the policy level.";
    /// Reads logged with their response bodies.
    ReadResponseBodies = "read-response-bodies", "get, list or watch is logged at RequestResponse: the log holds whole objects and lists, the largest share of its volume.\nExample: `level: RequestResponse` with no `verbs:`.\nFix: log reads at Metadata or Request.";
    /// `pods` meant to cover `pods/exec`.
    PodsSubresource = "pods-subresource", "exec, attach or portforward (`pods/exec`, …) are not logged, or logged lower than pods: `pods` does not cover its subresources.\nExample: `resources: [{group: \"\", resources: [pods]}]` at Request, then `level: None`.\nFix: name `pods/exec` and `pods/attach` too.";
    /// Noisy traffic not reduced.
    HighVolume = "high-volume", "Traffic that makes most of an audit log (kube-proxy watches, node and lease updates, health checks, events) is logged at Request or above, or at all.\nExample: no rule for `system:kube-proxy` watches.\nFix: drop it with `level: None` first, as the GCE policy does.";
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Code {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_explained() {
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len(), "a code is used twice");
        for c in Code::ALL {
            assert!(c.explain().contains("Example:"), "{c} has no example");
            assert_eq!(c.as_str().parse::<Code>(), Ok(*c));
        }
    }
}
