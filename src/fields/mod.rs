//! The field catalog: every `ka.*`, `jevt.*`/`json.*` and `evt.*` field a
//! condition or output may name, with its list-ness, argument rules and
//! description. `saker fields` prints this table. Extraction lives in
//! [`extract`].

pub mod extract;

use std::fmt;

/// What a field's `[arg]` may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgSpec {
    /// No argument allowed.
    None,
    /// An optional decimal index without leading zeros: `[0]`, `[3]`.
    Index,
    /// A required free-text key: `ka.uri.param[command]`.
    Key,
    /// A required RFC 6901 JSON pointer: `jevt.value[/requestObject/spec]`.
    Pointer,
}

/// Containers of a pod spec that the per-container fields can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerList {
    Containers,
    InitContainers,
    EphemeralContainers,
}

impl ContainerList {
    pub fn key(self) -> &'static str {
        match self {
            ContainerList::Containers => "containers",
            ContainerList::InitContainers => "initContainers",
            ContainerList::EphemeralContainers => "ephemeralContainers",
        }
    }
}

/// A per-container value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerSub {
    Name,
    Image,
    ImageRepository,
    Command,
    Args,
    Privileged,
    AllowPrivilegeEscalation,
    ReadOnlyFs,
    RunAsUser,
    EffRunAsUser,
    RunAsGroup,
    EffRunAsGroup,
    ProcMount,
    AddCapabilities,
    HostPort,
}

/// How a field's value is found in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The value at a path of object keys from the event's root.
    Path(&'static [&'static str]),
    /// The elements of the array at a path.
    ListPath(&'static [&'static str]),
    /// Binding subjects of a given `kind` (`None`: every subject as JSON).
    Subjects(Option<&'static str>, SubjectName),
    /// `requestObject.rules[*].<key>[*]`.
    RoleRules(&'static str),
    UriParam,
    TargetPodName,
    AlwaysTrue,
    FirstContainerImage,
    FirstContainerRepository,
    AnyContainerPrivileged,
    ServicePorts,
    VolumeHostPaths,
    VolumeHostPathMatch,
    FlexVolumeDrivers,
    VolumeTypes,
    SourceIps,
    Container(ContainerList, ContainerSub),
    JsonPointer,
    JsonObj,
    RawTime,
    IsoTime,
    ClockTime,
    EventSource,
    /// The cluster the envelope of the event names ([`crate::event::Event::cluster`]).
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectName {
    Json,
    Name,
    NamespacedName,
}

/// One entry of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    pub name: &'static str,
    pub list: bool,
    pub arg: ArgSpec,
    pub source: Source,
    pub desc: &'static str,
}

impl fmt::Display for FieldDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arg = match self.arg {
            ArgSpec::None => "",
            ArgSpec::Index => "[index]",
            ArgSpec::Key => "[key]",
            ArgSpec::Pointer => "[/json/pointer]",
        };
        write!(f, "{}{arg}", self.name)
    }
}

const fn f(name: &'static str, source: Source, desc: &'static str) -> FieldDef {
    FieldDef {
        name,
        list: false,
        arg: ArgSpec::None,
        source,
        desc,
    }
}

const fn list(name: &'static str, arg: ArgSpec, source: Source, desc: &'static str) -> FieldDef {
    FieldDef {
        name,
        list: true,
        arg,
        source,
        desc,
    }
}

const fn keyed(name: &'static str, source: Source, desc: &'static str) -> FieldDef {
    FieldDef {
        name,
        list: false,
        arg: ArgSpec::Key,
        source,
        desc,
    }
}

use ArgSpec::Index;
use Source::*;

const RO: &str = "requestObject";

static BASE: &[FieldDef] = &[
    f("ka.auditid", Path(&["auditID"]), "Unique id of the request; shared by all stages of one request"),
    f("ka.cluster", Cluster, "Name of the managed cluster the event came from (GKE's cluster_name, EKS's log group /aws/eks/NAME/cluster, AKS's managedClusters/NAME); no value on plain audit events"),
    f("ka.stage", Path(&["stage"]), "Stage of the request (RequestReceived, ResponseStarted, ResponseComplete, Panic)"),
    f("ka.auth.decision", Path(&["annotations", "authorization.k8s.io/decision"]), "Authorization decision (allow or forbid)"),
    f("ka.auth.reason", Path(&["annotations", "authorization.k8s.io/reason"]), "Why the request was authorized (e.g. the RBAC binding)"),
    f("ka.auth.openshift.decision", Path(&["annotations", "authentication.openshift.io/decision"]), "OpenShift authentication decision"),
    f("ka.auth.openshift.username", Path(&["annotations", "authentication.openshift.io/username"]), "User name OpenShift's authentication saw"),
    f("ka.validations.admission.policy.failure", Path(&["annotations", "validation.policy.admission.k8s.io/validation_failure"]), "Failures reported by ValidatingAdmissionPolicies"),
    f("ka.security.pod.violations", Path(&["annotations", "pod-security.kubernetes.io/audit-violations"]), "Pod Security Admission violations in audit mode"),
    f("ka.user.name", Path(&["user", "username"]), "Name of the user who made the request"),
    list("ka.user.groups", ArgSpec::None, ListPath(&["user", "groups"]), "Groups of the user who made the request"),
    f("ka.impuser.name", Path(&["impersonatedUser", "username"]), "Name of the impersonated user, if any"),
    f("ka.verb", Path(&["verb"]), "The request's verb (get, list, watch, create, update, patch, delete, ...)"),
    f("ka.uri", Path(&["requestURI"]), "The request URI, path and query string"),
    keyed("ka.uri.param", UriParam, "First value of a query parameter of the request URI, e.g. ka.uri.param[command]"),
    f("ka.target.name", Path(&["objectRef", "name"]), "Name of the object the request is about"),
    f("ka.target.namespace", Path(&["objectRef", "namespace"]), "Namespace of the object; absent for cluster-scoped objects"),
    f("ka.target.resource", Path(&["objectRef", "resource"]), "Resource of the object (pods, secrets, ...)"),
    f("ka.target.subresource", Path(&["objectRef", "subresource"]), "Subresource (exec, attach, log, status, ...)"),
    f("ka.target.pod.name", TargetPodName, "Name of the pod in the response, for requests on pods without a subresource"),
    list("ka.req.binding.subjects", ArgSpec::None, Subjects(None, SubjectName::Json), "Subjects of a (cluster) role binding, each as JSON"),
    list("ka.req.binding.subjects.user_names", ArgSpec::None, Subjects(Some("User"), SubjectName::Name), "Names of the User subjects of a binding"),
    list("ka.req.binding.subjects.serviceaccount_names", ArgSpec::None, Subjects(Some("ServiceAccount"), SubjectName::Name), "Names of the ServiceAccount subjects of a binding"),
    list("ka.req.binding.subjects.serviceaccount_ns_names", ArgSpec::None, Subjects(Some("ServiceAccount"), SubjectName::NamespacedName), "namespace:name of the ServiceAccount subjects of a binding"),
    list("ka.req.binding.subjects.group_names", ArgSpec::None, Subjects(Some("Group"), SubjectName::Name), "Names of the Group subjects of a binding"),
    f("ka.req.binding.role", Path(&[RO, "roleRef", "name"]), "Role a binding refers to"),
    keyed("ka.req.binding.subject.has_name", AlwaysTrue, "Deprecated; always \"true\" (kept for old rules)"),
    f("ka.req.configmap.name", Path(&["objectRef", "name"]), "Name of the configmap (same as ka.target.name)"),
    f("ka.req.configmap.obj", Path(&[RO, "data"]), "The data of a configmap in the request, as JSON"),
    f("ka.req.container.image", FirstContainerImage, "Deprecated; image of the pod's first container"),
    f("ka.req.container.image.repository", FirstContainerRepository, "Deprecated; repository of the pod's first container image"),
    f("ka.req.pod.host_ipc", Path(&[RO, "spec", "hostIPC"]), "The pod's hostIPC setting"),
    f("ka.req.pod.host_network", Path(&[RO, "spec", "hostNetwork"]), "The pod's hostNetwork setting"),
    f("ka.req.container.host_network", Path(&[RO, "spec", "hostNetwork"]), "Deprecated alias of ka.req.pod.host_network"),
    f("ka.req.pod.host_pid", Path(&[RO, "spec", "hostPID"]), "The pod's hostPID setting"),
    f("ka.req.container.privileged", AnyContainerPrivileged, "Deprecated; \"true\" if any container of the pod is privileged"),
    f("ka.req.pod.run_as_user", Path(&[RO, "spec", "securityContext", "runAsUser"]), "runAsUser of the pod's security context"),
    f("ka.req.pod.run_as_group", Path(&[RO, "spec", "securityContext", "runAsGroup"]), "runAsGroup of the pod's security context"),
    list("ka.req.role.rules", ArgSpec::None, ListPath(&[RO, "rules"]), "Rules of a (cluster) role, each as JSON"),
    list("ka.req.role.rules.apiGroups", Index, RoleRules("apiGroups"), "API groups of a role's rules ([N]: rule N only)"),
    list("ka.req.role.rules.nonResourceURLs", Index, RoleRules("nonResourceURLs"), "Non-resource URLs of a role's rules ([N]: rule N only)"),
    list("ka.req.role.rules.verbs", Index, RoleRules("verbs"), "Verbs of a role's rules ([N]: rule N only)"),
    list("ka.req.role.rules.resources", Index, RoleRules("resources"), "Resources of a role's rules ([N]: rule N only)"),
    f("ka.req.pod.fs_group", Path(&[RO, "spec", "securityContext", "fsGroup"]), "fsGroup of the pod's security context"),
    list("ka.req.pod.supplemental_groups", ArgSpec::None, ListPath(&[RO, "spec", "securityContext", "supplementalGroups"]), "Supplemental groups of the pod's security context"),
    f("ka.req.service.type", Path(&[RO, "spec", "type"]), "Type of a service (ClusterIP, NodePort, LoadBalancer, ...)"),
    list("ka.req.service.ports", Index, ServicePorts, "Ports of a service, each as JSON ([N]: port N only)"),
    list("ka.req.pod.volumes.hostpath", Index, VolumeHostPaths, "hostPath paths of the pod's volumes ([N]: volume N only)"),
    keyed("ka.req.volume.hostpath", VolumeHostPathMatch, "Deprecated; \"true\" if a hostPath volume is the given path (or starts with it, when it ends in *)"),
    list("ka.req.pod.volumes.flexvolume_driver", Index, FlexVolumeDrivers, "flexVolume drivers of the pod's volumes"),
    list("ka.req.pod.volumes.volume_type", Index, VolumeTypes, "Types of the pod's volumes (hostPath, configMap, emptyDir, ...)"),
    f("ka.resp.name", Path(&["responseObject", "metadata", "name"]), "Name of the object in the response"),
    f("ka.response.code", Path(&["responseStatus", "code"]), "HTTP status code of the response, as text (\"201\")"),
    f("ka.response.reason", Path(&["responseStatus", "reason"]), "Reason of the response status (Forbidden, NotFound, ...)"),
    f("ka.useragent", Path(&["userAgent"]), "User agent of the client"),
    list("ka.sourceips", Index, SourceIps, "Source IPs of the request ([N]: one of them)"),
    f("ka.cluster.name", Path(&["annotations", "cluster_name"]), "Cluster name annotation, when the producer sets one"),
];

static JSON: &[FieldDef] = &[
    FieldDef {
        name: "jevt.value",
        list: false,
        arg: ArgSpec::Pointer,
        source: JsonPointer,
        desc: "Value at a JSON pointer in the event, e.g. jevt.value[/objectRef/resource]",
    },
    f("jevt.obj", JsonObj, "The whole event as indented JSON"),
    f(
        "jevt.rawtime",
        RawTime,
        "Event time in nanoseconds since the epoch",
    ),
    f(
        "jevt.time",
        IsoTime,
        "Event time, RFC 3339 with nanoseconds (UTC)",
    ),
    FieldDef {
        name: "json.value",
        list: false,
        arg: ArgSpec::Pointer,
        source: JsonPointer,
        desc: "Alias of jevt.value",
    },
    f("json.obj", JsonObj, "Alias of jevt.obj"),
    f("json.rawtime", RawTime, "Alias of jevt.rawtime"),
    f(
        "evt.time",
        ClockTime,
        "Event time as HH:MM:SS.nnnnnnnnn (UTC)",
    ),
    f(
        "evt.time.iso8601",
        IsoTime,
        "Event time, RFC 3339 with nanoseconds (UTC)",
    ),
    f(
        "evt.datetime",
        IsoTime,
        "Event time, RFC 3339 with nanoseconds (UTC)",
    ),
    f(
        "evt.rawtime",
        RawTime,
        "Event time in nanoseconds since the epoch",
    ),
    f(
        "evt.source",
        EventSource,
        "The event source, always k8s_audit",
    ),
];

const CONTAINER_SUBS: &[(&str, ContainerSub, &str)] = &[
    ("name", ContainerSub::Name, "Names of the containers"),
    ("image", ContainerSub::Image, "Images of the containers"),
    (
        "image.repository",
        ContainerSub::ImageRepository,
        "Image repositories of the containers (image without tag or digest)",
    ),
    (
        "command",
        ContainerSub::Command,
        "Commands of the containers, each joined with spaces",
    ),
    (
        "args",
        ContainerSub::Args,
        "Arguments of the containers, each joined with spaces",
    ),
    (
        "privileged",
        ContainerSub::Privileged,
        "securityContext.privileged of the containers",
    ),
    (
        "allow_privilege_escalation",
        ContainerSub::AllowPrivilegeEscalation,
        "securityContext.allowPrivilegeEscalation of the containers",
    ),
    (
        "read_only_fs",
        ContainerSub::ReadOnlyFs,
        "securityContext.readOnlyRootFilesystem of the containers",
    ),
    (
        "run_as_user",
        ContainerSub::RunAsUser,
        "securityContext.runAsUser of the containers",
    ),
    (
        "eff_run_as_user",
        ContainerSub::EffRunAsUser,
        "Effective user of the containers: theirs, else the pod's, else 0",
    ),
    (
        "run_as_group",
        ContainerSub::RunAsGroup,
        "securityContext.runAsGroup of the containers",
    ),
    (
        "eff_run_as_group",
        ContainerSub::EffRunAsGroup,
        "Effective group of the containers: theirs, else the pod's, else 0",
    ),
    (
        "proc_mount",
        ContainerSub::ProcMount,
        "securityContext.procMount of the containers",
    ),
    (
        "add_capabilities",
        ContainerSub::AddCapabilities,
        "Capabilities added by the containers' security contexts",
    ),
    (
        "host_port",
        ContainerSub::HostPort,
        "Host ports of the containers (containerPort when hostPort is unset)",
    ),
];

/// The whole catalog, built once.
pub fn catalog() -> &'static [FieldDef] {
    static CATALOG: std::sync::OnceLock<Vec<FieldDef>> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut all: Vec<FieldDef> = BASE.to_vec();
        for (list, prefix) in [
            (ContainerList::Containers, "ka.req.pod.containers."),
            (ContainerList::InitContainers, "ka.req.pod.initContainers."),
            (
                ContainerList::EphemeralContainers,
                "ka.req.pod.ephemeralContainers.",
            ),
        ] {
            for (sub_name, sub, desc) in CONTAINER_SUBS {
                if list == ContainerList::EphemeralContainers && *sub == ContainerSub::HostPort {
                    continue;
                }
                let name: &'static str = Box::leak(format!("{prefix}{sub_name}").into_boxed_str());
                let desc: &'static str = match list {
                    ContainerList::Containers => desc,
                    other => Box::leak(format!("{desc} ({} only)", other.key()).into_boxed_str()),
                };
                all.push(list_field(name, Source::Container(list, *sub), desc));
            }
        }
        all.extend_from_slice(JSON);
        all
    })
}

fn list_field(name: &'static str, source: Source, desc: &'static str) -> FieldDef {
    FieldDef {
        name,
        list: true,
        arg: ArgSpec::Index,
        source,
        desc,
    }
}

pub fn lookup(name: &str) -> Option<&'static FieldDef> {
    catalog().iter().find(|f| f.name == name)
}

/// A field argument, validated against the field's [`ArgSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Arg {
    None,
    Index(usize),
    Key(String),
    /// Decoded pointer segments (`~1` → `/`, `~0` → `~`); empty = whole event.
    Pointer(Vec<String>),
}

/// Why a field argument is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    Required,
    NotAllowed,
    BadIndex,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArgError::Required => "requires an argument but none provided",
            ArgError::NotAllowed => "does not allow nor require an argument but one is provided",
            ArgError::BadIndex => "takes an index argument: a decimal number without leading zeros",
        })
    }
}

impl FieldDef {
    pub fn check_arg(&self, arg: Option<&str>) -> Result<Arg, ArgError> {
        match (self.arg, arg) {
            (ArgSpec::None, None) | (ArgSpec::Index, None) => Ok(Arg::None),
            (ArgSpec::None, Some(_)) => Err(ArgError::NotAllowed),
            (ArgSpec::Key | ArgSpec::Pointer, None) => Err(ArgError::Required),
            (ArgSpec::Index, Some(a)) => {
                let valid = !a.is_empty()
                    && a.bytes().all(|b| b.is_ascii_digit())
                    && (a == "0" || !a.starts_with('0'));
                a.parse()
                    .ok()
                    .filter(|_| valid)
                    .map(Arg::Index)
                    .ok_or(ArgError::BadIndex)
            }
            (ArgSpec::Key, Some(a)) => Ok(Arg::Key(a.to_string())),
            (ArgSpec::Pointer, Some(a)) => Ok(Arg::Pointer(parse_pointer(a))),
        }
    }
}

/// Splits an RFC 6901 pointer into its unescaped segments.
pub fn parse_pointer(p: &str) -> Vec<String> {
    let p = p.strip_prefix('/').unwrap_or(p);
    if p.is_empty() {
        return Vec::new();
    }
    p.split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_every_ka_field() {
        let ka = catalog()
            .iter()
            .filter(|f| f.name.starts_with("ka."))
            .count();
        assert_eq!(ka, 101);
        let mut names: Vec<_> = catalog().iter().map(|f| f.name).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len(), "duplicate field names");
        assert!(lookup("ka.req.pod.ephemeralContainers.host_port").is_none());
        assert!(lookup("ka.req.pod.initContainers.host_port").is_some());
    }

    #[test]
    fn args() {
        let idx = lookup("ka.req.role.rules.verbs").unwrap();
        assert_eq!(idx.check_arg(Some("0")), Ok(Arg::Index(0)));
        assert_eq!(idx.check_arg(Some("01")), Err(ArgError::BadIndex));
        assert_eq!(idx.check_arg(None), Ok(Arg::None));
        let key = lookup("ka.uri.param").unwrap();
        assert_eq!(key.check_arg(None), Err(ArgError::Required));
        assert_eq!(
            lookup("ka.verb").unwrap().check_arg(Some("x")),
            Err(ArgError::NotAllowed)
        );
        assert_eq!(parse_pointer("/a~1~0b/c"), vec!["a/~b", "c"]);
    }
}
