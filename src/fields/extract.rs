//! Reads one field's value(s) out of an event. `None` means "not available"
//! (Falco's `<NA>`): every comparison with it is false.

use std::borrow::Cow;

use super::{Arg, ContainerList, ContainerSub, FieldDef, Source, SubjectName};
use crate::event::json::{self, Kind};
use crate::event::{time, Event};

/// An extracted value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Str(Cow<'a, str>),
    List(Vec<Cow<'a, str>>),
    /// Only transformers (`len`) produce numbers.
    Num(u64),
}

impl Val<'_> {
    /// Text rendering for outputs: lists as `(a,b)`, as Falco prints them.
    pub fn render(&self) -> Cow<'_, str> {
        match self {
            Val::Str(s) => Cow::Borrowed(s.as_ref()),
            Val::Num(n) => Cow::Owned(n.to_string()),
            Val::List(items) => Cow::Owned(format!("({})", items.join(","))),
        }
    }
}

pub fn extract<'a>(ev: &Event<'a>, def: &FieldDef, arg: &Arg) -> Option<Val<'a>> {
    // Every k8saudit field needs the event to carry an auditID.
    if def.name.starts_with("ka.") && ev.top.audit_id.is_none() {
        return None;
    }
    let idx = match arg {
        Arg::Index(i) => Some(*i),
        _ => None,
    };
    match def.source {
        Source::Path(keys) => at_path(ev, keys).map(|v| scalar(ev, v)),
        Source::ListPath(keys) => {
            let v = at_path(ev, keys)?;
            Some(Val::List(
                ev.elements(v)?.into_iter().map(json::text).collect(),
            ))
        }
        Source::Subjects(kind, name) => subjects(ev, kind, name),
        Source::RoleRules(key) => {
            let rules = select(
                ev.elements(ev.key("requestObject").and_then(|o| ev.get(o, "rules"))?)?,
                idx,
            )?;
            let mut out = Vec::new();
            for rule in rules {
                if let Some(items) = ev.get(rule, key).and_then(|v| ev.elements(v)) {
                    out.extend(
                        items
                            .into_iter()
                            .filter(|v| !json::is_null(v))
                            .map(json::text),
                    );
                }
            }
            Some(Val::List(out))
        }
        Source::UriParam => {
            let Arg::Key(key) = arg else { return None };
            let uri = json::string(ev.key("requestURI")?)?;
            query_param(&uri, key).map(|v| Val::Str(Cow::Owned(v)))
        }
        Source::TargetPodName => {
            let obj = ev.key("objectRef")?;
            let resource = ev.get(obj, "resource").and_then(json::string)?;
            let sub = ev.get(obj, "subresource").and_then(json::string);
            if resource != "pods" || sub.is_some_and(|s| !s.is_empty()) {
                return None;
            }
            ev.path(ev.key("responseObject")?, &["metadata", "name"])
                .map(|v| scalar(ev, v))
        }
        Source::AlwaysTrue => Some(Val::Str(Cow::Borrowed("true"))),
        Source::FirstContainerImage => first_image(ev).map(Val::Str),
        Source::FirstContainerRepository => first_image(ev).map(|i| Val::Str(repository(i))),
        Source::AnyContainerPrivileged => {
            let cs = containers(ev, ContainerList::Containers, None)?;
            let any = cs.iter().any(|c| {
                ev.path(c, &["securityContext", "privileged"])
                    .is_some_and(|v| v == "true")
            });
            Some(Val::Str(Cow::Borrowed(if any { "true" } else { "false" })))
        }
        Source::ServicePorts => {
            let ports = spec_array(ev, "ports", idx)?;
            Some(Val::List(ports.into_iter().map(json::text).collect()))
        }
        Source::VolumeHostPaths => volume_values(ev, idx, &["hostPath", "path"]),
        Source::FlexVolumeDrivers => volume_values(ev, idx, &["flexVolume", "driver"]),
        Source::VolumeHostPathMatch => {
            let Arg::Key(key) = arg else { return None };
            let Some(Val::List(paths)) = volume_values(ev, None, &["hostPath", "path"]) else {
                return None;
            };
            let hit = paths.iter().any(|p| match key.strip_suffix('*') {
                Some(prefix) => p.starts_with(prefix),
                None => p == key,
            });
            Some(Val::Str(Cow::Borrowed(if hit { "true" } else { "false" })))
        }
        Source::VolumeTypes => {
            let volumes = spec_array(ev, "volumes", idx)?;
            let mut out = Vec::new();
            for v in volumes {
                for (k, _) in json::entries(v)? {
                    if k != "name" {
                        out.push(k);
                    }
                }
            }
            Some(Val::List(out))
        }
        Source::SourceIps => {
            let ips = select(ev.elements(ev.key("sourceIPs")?)?, idx)?;
            Some(Val::List(ips.into_iter().map(json::text).collect()))
        }
        Source::Container(list, sub) => container_values(ev, list, sub, idx),
        Source::JsonPointer => {
            let Arg::Pointer(segments) = arg else {
                return None;
            };
            pointer(ev, segments).map(|v| scalar(ev, v))
        }
        Source::JsonObj => Some(Val::Str(Cow::Owned(json::pretty(ev.raw)))),
        Source::RawTime => Some(Val::Str(Cow::Owned(ev.time_ns.to_string()))),
        Source::IsoTime => Some(Val::Str(Cow::Owned(time::format_rfc3339_nanos(ev.time_ns)))),
        Source::ClockTime => Some(Val::Str(Cow::Owned(time::format_clock(ev.time_ns)))),
        Source::EventSource => Some(Val::Str(Cow::Borrowed("k8s_audit"))),
        Source::Cluster => ev.cluster.map(|c| Val::Str(Cow::Borrowed(c))),
    }
}

fn scalar<'a>(ev: &Event<'a>, v: &'a str) -> Val<'a> {
    Val::Str(ev.text(v))
}

/// The value at a path of keys from the event's root.
fn at_path<'a>(ev: &Event<'a>, keys: &[&str]) -> Option<&'a str> {
    let (first, rest) = keys.split_first()?;
    ev.path(ev.key(first)?, rest)
}

/// Follows JSON-pointer segments: object keys, or array indexes.
fn pointer<'a>(ev: &Event<'a>, segments: &[String]) -> Option<&'a str> {
    let Some((first, rest)) = segments.split_first() else {
        return Some(ev.root());
    };
    let mut v = ev.key(first)?;
    for seg in rest {
        v = match json::kind(v) {
            Kind::Object => ev.get(v, seg)?,
            Kind::Array => ev.index(v, seg.parse().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Keeps element `idx` only, when an index is given; out of range is "not
/// available".
fn select<T>(mut items: Vec<T>, idx: Option<usize>) -> Option<Vec<T>> {
    match idx {
        None => Some(items),
        Some(i) if i < items.len() => Some(vec![items.swap_remove(i)]),
        Some(_) => None,
    }
}

fn spec_array<'a>(ev: &Event<'a>, key: &str, idx: Option<usize>) -> Option<Vec<&'a str>> {
    let arr = ev.path(ev.key("requestObject")?, &["spec", key])?;
    select(ev.elements(arr)?, idx)
}

fn containers<'a>(ev: &Event<'a>, list: ContainerList, idx: Option<usize>) -> Option<Vec<&'a str>> {
    spec_array(ev, list.key(), idx)
}

fn volume_values<'a>(ev: &Event<'a>, idx: Option<usize>, keys: &[&str]) -> Option<Val<'a>> {
    let volumes = spec_array(ev, "volumes", idx)?;
    Some(Val::List(
        volumes
            .into_iter()
            .filter_map(|v| ev.path(v, keys))
            .map(json::text)
            .collect(),
    ))
}

fn first_image<'a>(ev: &Event<'a>) -> Option<Cow<'a, str>> {
    let c = containers(ev, ContainerList::Containers, Some(0))?;
    ev.get(c[0], "image").map(json::text)
}

/// The image without tag or digest, cut as the k8saudit plugin cuts it: at
/// the first `:`, then at the first `@`.
fn repository(image: Cow<'_, str>) -> Cow<'_, str> {
    let end = image.find(':').unwrap_or(image.len());
    let end = image[..end].find('@').unwrap_or(end);
    match image {
        Cow::Borrowed(s) => Cow::Borrowed(&s[..end]),
        Cow::Owned(s) => Cow::Owned(s[..end].to_string()),
    }
}

fn subjects<'a>(ev: &Event<'a>, kind: Option<&str>, name: SubjectName) -> Option<Val<'a>> {
    let subjects = ev.key("requestObject").and_then(|o| ev.get(o, "subjects"));
    let Some(subjects) = subjects else {
        // Binding fields with a kind filter give an empty list when there
        // are no subjects; the raw subjects field is not available.
        return kind.map(|_| Val::List(Vec::new()));
    };
    let items = ev.elements(subjects)?;
    let mut out = Vec::new();
    for s in items {
        if let Some(kind) = kind {
            if ev.get(s, "kind").and_then(json::string).as_deref() != Some(kind) {
                continue;
            }
        }
        let field = |k| ev.get(s, k).map(json::text).unwrap_or_default();
        out.push(match name {
            SubjectName::Json => json::text(s),
            SubjectName::Name => field("name"),
            SubjectName::NamespacedName => {
                Cow::Owned(format!("{}:{}", field("namespace"), field("name")))
            }
        });
    }
    Some(Val::List(out))
}

fn container_values<'a>(
    ev: &Event<'a>,
    list: ContainerList,
    sub: ContainerSub,
    idx: Option<usize>,
) -> Option<Val<'a>> {
    let cs = containers(ev, list, idx)?;
    let sc = |c: &'a str, key: &str| ev.path(c, &["securityContext", key]).map(json::text);
    let pod_default = |key: &str| {
        ev.key("requestObject")
            .and_then(|o| ev.path(o, &["spec", "securityContext", key]))
            .map(json::text)
            .unwrap_or(Cow::Borrowed("0"))
    };
    let mut out: Vec<Cow<'a, str>> = Vec::with_capacity(cs.len());
    for c in cs {
        match sub {
            ContainerSub::Name => out.extend(ev.get(c, "name").map(json::text)),
            ContainerSub::Image => out.extend(ev.get(c, "image").map(json::text)),
            ContainerSub::ImageRepository => {
                out.extend(ev.get(c, "image").map(json::text).map(repository))
            }
            ContainerSub::Command | ContainerSub::Args => {
                let key = if sub == ContainerSub::Command {
                    "command"
                } else {
                    "args"
                };
                if let Some(parts) = ev.get(c, key).and_then(|v| ev.elements(v)) {
                    let words: Vec<Cow<str>> = parts.into_iter().map(json::text).collect();
                    out.push(Cow::Owned(words.join(" ")));
                }
            }
            ContainerSub::Privileged => out.extend(sc(c, "privileged")),
            ContainerSub::AllowPrivilegeEscalation => out.extend(sc(c, "allowPrivilegeEscalation")),
            ContainerSub::ReadOnlyFs => out.extend(sc(c, "readOnlyRootFilesystem")),
            ContainerSub::RunAsUser => out.extend(sc(c, "runAsUser")),
            ContainerSub::RunAsGroup => out.extend(sc(c, "runAsGroup")),
            ContainerSub::ProcMount => out.extend(sc(c, "procMount")),
            ContainerSub::EffRunAsUser => {
                out.push(sc(c, "runAsUser").unwrap_or_else(|| pod_default("runAsUser")))
            }
            ContainerSub::EffRunAsGroup => {
                out.push(sc(c, "runAsGroup").unwrap_or_else(|| pod_default("runAsGroup")))
            }
            ContainerSub::AddCapabilities => {
                if let Some(caps) = ev
                    .path(c, &["securityContext", "capabilities", "add"])
                    .and_then(|v| ev.elements(v))
                {
                    out.extend(caps.into_iter().map(json::text));
                }
            }
            ContainerSub::HostPort => {
                for port in ev
                    .get(c, "ports")
                    .and_then(|v| ev.elements(v))
                    .unwrap_or_default()
                {
                    let p = ev
                        .get(port, "hostPort")
                        .or_else(|| ev.get(port, "containerPort"));
                    out.extend(p.map(json::text));
                }
            }
        }
    }
    if out.is_empty() && matches!(sub, ContainerSub::Command | ContainerSub::Args) {
        return None;
    }
    Some(Val::List(out))
}

/// First value of query parameter `key` in a request URI, percent-decoded.
fn query_param(uri: &str, key: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split(['&', ';']).find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::{lookup, Arg};
    use super::*;
    use crate::event::decode_document;

    fn field(event: &str, name: &str, arg: Option<&str>) -> Option<Val<'static>> {
        let def = lookup(name).unwrap();
        let arg: Arg = def.check_arg(arg).unwrap();
        let mut out = None;
        decode_document(
            event.as_bytes(),
            |ev| out = Some(extract(&ev, def, &arg).map(owned)),
            |s| panic!("{s:?}"),
        );
        out.unwrap()
    }

    fn owned(v: Val) -> Val<'static> {
        let own = |s: Cow<str>| Cow::Owned(s.into_owned());
        match v {
            Val::Str(s) => Val::Str(own(s)),
            Val::List(items) => Val::List(items.into_iter().map(own).collect()),
            Val::Num(n) => Val::Num(n),
        }
    }

    const POD: &str = r#"{"auditID":"1","stageTimestamp":"2024-01-01T00:00:00Z","verb":"create","requestURI":"/api/v1/namespaces/default/pods/p/exec?command=sh\u0026command=-c\u0026stdin=true","user":{"username":"alice","groups":["a","b"]},"objectRef":{"resource":"pods","namespace":"default"},"responseStatus":{"code":201},"requestObject":{"spec":{"hostNetwork":true,"securityContext":{"runAsUser":1000},"containers":[{"name":"c1","image":"nginx:1.2@sha256:x","securityContext":{"privileged":true,"capabilities":{"add":["SYS_ADMIN","NET_ADMIN"]}},"ports":[{"containerPort":80},{"hostPort":8080,"containerPort":81}],"command":["sh","-c"]},{"name":"c2","image":"reg.io/app"}],"volumes":[{"name":"v","hostPath":{"path":"/etc"}},{"name":"w","emptyDir":{}}]}}}"#;

    fn strs(v: Option<Val>) -> Vec<String> {
        match v {
            Some(Val::List(items)) => items.into_iter().map(|s| s.into_owned()).collect(),
            Some(Val::Str(s)) => vec![s.into_owned()],
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn objects_render_compact_with_or_without_whitespace() {
        // The same configmap data written compactly and spread out: both
        // give the compact text (the first as written, the second
        // rewritten), spaces inside strings kept.
        let compact = r#"{"auditID":"1","stageTimestamp":"2024-01-01T00:00:00Z","requestObject":{"data":{"k":"a b","n":[1,2]}},"responseStatus":{"code":200}}"#;
        let spread = r#"{ "auditID": "1", "stageTimestamp": "2024-01-01T00:00:00Z",
            "requestObject": { "data": { "k": "a b", "n": [1, 2] } }, "responseStatus": { "code": 200 } }"#;
        for event in [compact, spread] {
            assert_eq!(
                strs(field(event, "ka.req.configmap.obj", None)),
                [r#"{"k":"a b","n":[1,2]}"#]
            );
            assert_eq!(strs(field(event, "ka.response.code", None)), ["200"]);
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(strs(field(POD, "ka.user.name", None)), ["alice"]);
        assert_eq!(strs(field(POD, "ka.response.code", None)), ["201"]);
        assert_eq!(strs(field(POD, "ka.req.pod.host_network", None)), ["true"]);
        assert_eq!(field(POD, "ka.target.name", None), None);
        assert_eq!(strs(field(POD, "ka.uri.param", Some("command"))), ["sh"]);
        assert_eq!(field(POD, "ka.uri.param", Some("tty")), None);
        assert_eq!(
            strs(field(
                POD,
                "jevt.value",
                Some("/requestObject/spec/containers/1/name")
            )),
            ["c2"]
        );
        assert_eq!(
            strs(field(POD, "jevt.value", Some("/objectRef"))),
            [r#"{"resource":"pods","namespace":"default"}"#]
        );
        assert_eq!(
            strs(field(POD, "ka.req.container.privileged", None)),
            ["true"]
        );
        assert_eq!(
            strs(field(POD, "ka.req.volume.hostpath", Some("/et*"))),
            ["true"]
        );
        assert_eq!(
            strs(field(POD, "ka.req.volume.hostpath", Some("/"))),
            ["false"]
        );
    }

    #[test]
    fn lists() {
        assert_eq!(strs(field(POD, "ka.user.groups", None)), ["a", "b"]);
        assert_eq!(
            strs(field(POD, "ka.req.pod.containers.image.repository", None)),
            ["nginx", "reg.io/app"]
        );
        assert_eq!(
            strs(field(POD, "ka.req.pod.containers.image", Some("1"))),
            ["reg.io/app"]
        );
        assert_eq!(field(POD, "ka.req.pod.containers.image", Some("2")), None);
        assert_eq!(
            strs(field(POD, "ka.req.pod.containers.privileged", None)),
            ["true"]
        );
        assert_eq!(
            strs(field(POD, "ka.req.pod.containers.add_capabilities", None)),
            ["SYS_ADMIN", "NET_ADMIN"]
        );
        assert_eq!(
            strs(field(POD, "ka.req.pod.containers.host_port", None)),
            ["80", "8080"]
        );
        assert_eq!(
            strs(field(POD, "ka.req.pod.containers.eff_run_as_user", None)),
            ["1000", "1000"]
        );
        assert_eq!(
            strs(field(POD, "ka.req.pod.containers.command", None)),
            ["sh -c"]
        );
        assert_eq!(
            strs(field(POD, "ka.req.pod.volumes.hostpath", None)),
            ["/etc"]
        );
        assert_eq!(
            strs(field(POD, "ka.req.pod.volumes.volume_type", None)),
            ["hostPath", "emptyDir"]
        );
        assert_eq!(field(POD, "ka.req.pod.initContainers.image", None), None);
        assert_eq!(
            strs(field(POD, "ka.req.binding.subjects.user_names", None)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn needs_audit_id() {
        let ev = r#"{"verb":"get","stageTimestamp":"2024-01-01T00:00:00Z"}"#;
        assert_eq!(field(ev, "ka.verb", None), None);
        assert_eq!(strs(field(ev, "jevt.value", Some("/verb"))), ["get"]);
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("a%20b+c%zz%"), "a b c%zz%");
    }
}
