//! GKE: a Cloud Logging `LogEntry` whose `protoPayload` is the `AuditLog`
//! of a Kubernetes request (`serviceName` `k8s.io`), converted into the
//! audit `Event` the API server would have written, so that every `ka.*`
//! field means what it means on a self-managed cluster. The mapping, field
//! by field, is in the README ("Managed clusters"); in short:
//!
//! | Event | from the entry |
//! |---|---|
//! | `auditID` | `insertId`, else `operation.id` |
//! | `stage` | `ResponseStarted` for the first entry of a long-running operation (`operation.first` without `operation.last`), else `ResponseComplete` |
//! | `verb` | the last segment of `methodName` (`io.k8s.core.v1.pods.exec.create` → `create`) |
//! | `objectRef`, `requestURI` | `resourceName` (else `authorizationInfo[0].resource`, else `methodName`), read as the API server reads a request path |
//! | `user` | `authenticationInfo.principalEmail`, `.groups` |
//! | `sourceIPs`, `userAgent` | `requestMetadata.callerIp`, `.callerSuppliedUserAgent` |
//! | `responseStatus` | a `Status` `response`'s code, else `status.code` (gRPC) mapped to HTTP, else 403 when `authorizationInfo` was not granted, else 200 for an OK `status`, else none |
//! | `requestObject`, `responseObject` | `request`, `response` without `@type` |
//! | `annotations` | `labels` |
//! | `requestReceivedTimestamp`, `stageTimestamp` | `timestamp` |
//!
//! Nothing is invented: what the entry does not say stays absent. Entries
//! of other services are counted as `not_audit_event`. The cluster is
//! `resource.labels.cluster_name`.

use std::borrow::Cow;

use super::{with_buffer, Layer, OnEvent, OnSkip, Skip};
use crate::event::scan::Tape;
use crate::event::{decode_event, json, key_of, with_tape, Scanned, Top};

mod text;

use text::EventText;

/// Verbs a `methodName` may end with: the API server's verbs, and the
/// lower-cased HTTP methods of non-resource requests.
const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "post",
    "put",
    "head",
    "options",
];

/// Converts an entry (its top-level keys and `protoPayload` read off the
/// tape of the decoder's one validating scan of the document) into the
/// event: its JSON text is written once, with its top-level keys noted
/// where they were written and the tape of its large values built from the
/// entry's ([`text`]), so the text is not scanned again.
pub(super) fn entry(
    top: &Top,
    payload: &Payload,
    scanned: Scanned,
    layer: Layer,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) {
    let e = Entry::read(top, payload, scanned);
    if !e.is_kubernetes() {
        return on_skip(Skip::NotAuditEvent);
    }
    let cluster = e
        .resource
        .and_then(|r| e.doc.path(r, &["labels", "cluster_name"]))
        .and_then(json::string);
    let layer = layer.naming(cluster.as_deref());
    with_buffer(|buf| {
        with_tape(|tape| {
            let keys = convert(&e, buf, tape, scanned);
            // Everything the conversion writes is compact JSON, and what it
            // copies from the entry is compact where the entry is.
            tape.set_compact(scanned.tape.is_compact());
            // The text is JSON written from validated pieces: valid UTF-8.
            let Ok(text) = std::str::from_utf8(buf) else {
                return on_skip(Skip::InvalidJson);
            };
            #[cfg(debug_assertions)]
            {
                let mut scan = Tape::default();
                scan.scan(text).expect("the converted event is JSON");
                text::assert_same_values(tape, &scan, text);
                assert!(
                    !tape.is_compact() || scan.is_compact(),
                    "a converted event marked compact has whitespace: {text}"
                );
            }
            let mut event = Top::default();
            for (key, at) in keys {
                event.set(key, &text[at.0..at.1]);
            }
            let doc = Scanned { tape, base: text };
            decode_event(text, event, layer.cluster, doc, on_event, on_skip)
        })
    })
}

/// The keys of a `protoPayload` (an `AuditLog`) that the conversion reads,
/// as raw JSON. Read off the tape of the entry, in the pass that reads its
/// [`Top`]: a `protoPayload` that is not an object makes the entry
/// `not_audit_event`; a repeated key counts as its last value.
#[derive(Debug, Default)]
pub struct Payload<'a> {
    service: Option<&'a str>,
    method: Option<&'a str>,
    resource_name: Option<&'a str>,
    authentication: Option<&'a str>,
    authorization: Option<&'a str>,
    metadata: Option<&'a str>,
    status: Option<&'a str>,
    request: Option<&'a str>,
    response: Option<&'a str>,
}

impl<'a> Payload<'a> {
    /// The payload at tape node `i` of `text`; `None` if it is not an
    /// object.
    pub(crate) fn read(text: &'a str, tape: &Tape, i: usize) -> Option<Payload<'a>> {
        let node = tape.nodes()[i];
        if text.as_bytes()[node.start as usize] != b'{' {
            return None;
        }
        let mut p = Payload::default();
        for (_, n) in tape.children(i) {
            let slot = match &*key_of(text, n) {
                "serviceName" => &mut p.service,
                "methodName" => &mut p.method,
                "resourceName" => &mut p.resource_name,
                "authenticationInfo" => &mut p.authentication,
                "authorizationInfo" => &mut p.authorization,
                "requestMetadata" => &mut p.metadata,
                "status" => &mut p.status,
                "request" => &mut p.request,
                "response" => &mut p.response,
                _ => continue,
            };
            *slot = Some(&text[n.start as usize..n.end as usize]);
        }
        Some(p)
    }
}

/// The parts of a `LogEntry` and its `AuditLog` that the conversion reads,
/// as raw JSON.
struct Entry<'a> {
    /// The entry's tape, for lookups in its values.
    doc: Scanned<'a>,
    insert_id: Option<&'a str>,
    /// `operation.id`, `.first` and `.last`.
    operation_id: Option<&'a str>,
    first: bool,
    last: bool,
    /// `requestMetadata.callerIp` (or `callerIP`) and
    /// `.callerSuppliedUserAgent`, when strings.
    caller_ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    /// `authenticationInfo.principalEmail` (a string) and `.groups` (an
    /// array).
    principal: Option<&'a str>,
    groups: Option<&'a str>,
    timestamp: Option<&'a str>,
    labels: Option<&'a str>,
    resource: Option<&'a str>,
    service: Option<Cow<'a, str>>,
    method: Option<Cow<'a, str>>,
    resource_name: Option<Cow<'a, str>>,
    authorization: Option<&'a str>,
    status: Option<&'a str>,
    request: Option<&'a str>,
    response: Option<&'a str>,
}

impl<'a> Entry<'a> {
    fn read(top: &Top<'a>, p: &Payload<'a>, doc: Scanned<'a>) -> Entry<'a> {
        let [op_id, first, last] = top
            .operation
            .map_or([None; 3], |o| doc.pick(o, ["id", "first", "last"]));
        let [ip, ip_upper, agent] = p.metadata.map_or([None; 3], |m| {
            doc.pick(m, ["callerIp", "callerIP", "callerSuppliedUserAgent"])
        });
        let [principal, groups] = p
            .authentication
            .map_or([None; 2], |a| doc.pick(a, ["principalEmail", "groups"]));
        let string = |v: Option<&'a str>| v.filter(|v| json::kind(v) == json::Kind::String);
        Entry {
            doc,
            insert_id: top.insert_id,
            operation_id: op_id,
            first: first == Some("true"),
            last: last == Some("true"),
            caller_ip: string(ip.or(ip_upper)),
            user_agent: string(agent),
            principal: string(principal),
            groups: groups.filter(|v| json::kind(v) == json::Kind::Array),
            timestamp: top.timestamp,
            labels: top.labels,
            resource: top.resource,
            service: p.service.and_then(json::string),
            method: p.method.and_then(json::string),
            resource_name: p.resource_name.and_then(json::string),
            authorization: p.authorization,
            status: p.status,
            request: p.request,
            response: p.response,
        }
    }

    fn is_kubernetes(&self) -> bool {
        self.service.as_deref() == Some("k8s.io")
            || self
                .method
                .as_deref()
                .is_some_and(|m| m.starts_with("io.k8s."))
    }
}

/// Where each top-level key's value is in an event's text.
type Keys = Vec<(&'static str, (usize, usize))>;

/// Writes the audit `Event` JSON text of an entry into `buf` (emptied
/// first) and the tape of its large values into `tape`; says where each
/// top-level key's value is.
fn convert(e: &Entry, buf: &mut Vec<u8>, tape: &mut Tape, scanned: Scanned) -> Keys {
    let mut out = EventText::new(std::mem::take(buf), tape, scanned);
    out.raw("kind", "\"Event\"");
    out.raw("apiVersion", "\"audit.k8s.io/v1\"");
    let id = [e.insert_id, e.operation_id]
        .into_iter()
        .flatten()
        .find(|v| json::kind(v) == json::Kind::String);
    if let Some(id) = id {
        out.raw("auditID", id);
    }
    out.raw(
        "stage",
        if e.first && !e.last {
            "\"ResponseStarted\""
        } else {
            "\"ResponseComplete\""
        },
    );
    let target = target(e);
    if let Some(uri) = target
        .as_ref()
        .and_then(|t| t.uri.as_deref())
        .or(non_resource_uri(e))
    {
        out.str("requestURI", uri);
    }
    if let Some(verb) = e.method.as_deref().and_then(verb_of_method) {
        out.str("verb", verb);
    }
    if let Some(user) = user(e) {
        out.raw("user", &user);
    }
    if let Some(ip) = e.caller_ip {
        out.with("sourceIPs", |b| {
            b.push(b'[');
            b.extend_from_slice(ip.as_bytes());
            b.push(b']');
        });
    }
    if let Some(agent) = e.user_agent {
        out.raw("userAgent", agent);
    }
    if let Some(t) = &target {
        out.raw("objectRef", &t.object_ref());
    }
    if let Some(status) = response_status(e) {
        out.raw("responseStatus", &status);
    }
    for (key, body) in [("requestObject", e.request), ("responseObject", e.response)] {
        if let Some(body) = body.filter(|v| json::kind(v) == json::Kind::Object) {
            out.body(key, body);
        }
    }
    if let Some(ts) = e.timestamp.filter(|v| json::kind(v) == json::Kind::String) {
        out.raw("requestReceivedTimestamp", ts);
        out.raw("stageTimestamp", ts);
    }
    if let Some(labels) = e.labels.filter(|v| json::kind(v) == json::Kind::Object) {
        out.raw("annotations", labels);
    }
    let (text, keys) = out.end();
    *buf = text;
    keys
}

/// A JSON object being written; values are raw JSON or strings to escape.
struct Obj(Vec<u8>);

impl Obj {
    fn new() -> Obj {
        // Room for the small objects written here (`user`, `objectRef`,
        // `responseStatus`): grown from one byte, each took four or five
        // reallocations.
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        Obj(out)
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        self.0.push(b'"');
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    /// `value` is JSON text taken from the (validated) entry.
    fn raw(&mut self, key: &str, value: &str) {
        self.key(key);
        self.0.extend_from_slice(value.as_bytes());
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        push_str(&mut self.0, value);
    }

    fn end(mut self) -> Vec<u8> {
        self.0.push(b'}');
        self.0
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Most strings hold nothing to escape (serde_json escapes quotes,
    // backslashes and control characters, as `special` finds them): they
    // are written as they are, without serde_json's pass over each byte.
    if crate::event::scan::special(s.as_bytes(), 0) == s.len() {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}

/// The verb at the end of a `methodName`.
fn verb_of_method(method: &str) -> Option<&str> {
    let verb = method.rsplit('.').next()?;
    VERBS.contains(&verb).then_some(verb)
}

/// A non-resource request's path, when the entry names one (`/readyz`).
fn non_resource_uri<'e>(e: &'e Entry) -> Option<&'e str> {
    e.resource_name.as_deref().filter(|r| r.starts_with('/'))
}

/// What a request is about, as the API server's request info has it.
#[derive(Debug, PartialEq)]
struct Target<'a> {
    /// `""` for the core group.
    group: Cow<'a, str>,
    version: &'a str,
    resource: &'a str,
    subresource: Option<&'a str>,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    /// The request's path, when the target came from a resource name.
    uri: Option<String>,
}

impl Target<'_> {
    fn object_ref(&self) -> String {
        let mut o = Obj::new();
        o.str("resource", self.resource);
        if let Some(ns) = self.namespace {
            o.str("namespace", ns);
        }
        if let Some(name) = self.name {
            o.str("name", name);
        }
        if !self.group.is_empty() {
            o.str("apiGroup", &self.group);
        }
        o.str("apiVersion", self.version);
        if let Some(sub) = self.subresource {
            o.str("subresource", sub);
        }
        String::from_utf8(o.end()).unwrap_or_default()
    }
}

fn target<'e>(e: &'e Entry) -> Option<Target<'e>> {
    if let Some(t) = e.resource_name.as_deref().and_then(target_of_resource_name) {
        return Some(t);
    }
    let authorized = e
        .authorization
        .and_then(|a| e.doc.index(a, 0))
        .and_then(|a| e.doc.get(a, "resource"))
        .and_then(json::string);
    if let Some(Cow::Borrowed(r)) = authorized {
        if let Some(t) = target_of_resource_name(r) {
            return Some(t);
        }
    }
    e.method.as_deref().and_then(target_of_method)
}

/// `core/v1/namespaces/NS/pods/NAME/exec`, `rbac.authorization.k8s.io/v1/clusterroles/NAME`,
/// `core/v1/namespaces/NS/pods` (a list): group, version, then the path
/// after `/api/v1` or `/apis/GROUP/VERSION`.
fn target_of_resource_name(name: &str) -> Option<Target<'_>> {
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() < 3 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let (group, version) = (parts[0], parts[1]);
    let mut t = request_info(group, version, &parts[2..])?;
    t.uri = Some(match group {
        "core" => format!("/api/{}", &name[5..]),
        _ => format!("/apis/{name}"),
    });
    Some(t)
}

/// The API server's reading of a resource path (its `RequestInfoFactory`):
/// `namespaces/NS/RESOURCE/NAME/SUBRESOURCE`, where `namespaces/NS` alone
/// (or with `status` or `finalize`) is the namespace object itself.
fn request_info<'a>(group: &'a str, version: &'a str, mut parts: &[&'a str]) -> Option<Target<'a>> {
    let mut namespace = None;
    if parts.first() == Some(&"namespaces") && parts.len() > 1 {
        namespace = Some(parts[1]);
        if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
            parts = &parts[2..];
        }
    }
    Some(Target {
        group: Cow::Borrowed(if group == "core" { "" } else { group }),
        version,
        resource: parts.first()?,
        name: parts.get(1).copied(),
        subresource: parts.get(2).copied(),
        namespace,
        uri: None,
    })
}

/// `io.k8s.GROUP.VERSION.RESOURCE[.SUBRESOURCE].VERB`, when the entry names
/// no resource: no namespace or name then, and the group as `methodName`
/// abbreviates it, completed for the built-in groups.
fn target_of_method(method: &str) -> Option<Target<'_>> {
    let rest = method.strip_prefix("io.k8s.")?;
    let parts: Vec<&str> = rest.split('.').collect();
    let v = parts
        .iter()
        .position(|p| is_version(p))
        .filter(|&v| v > 0)?;
    let after = &parts[v + 1..];
    let (resource, subresource) = match after {
        [r, verb] if VERBS.contains(verb) => (*r, None),
        [r, s, verb] if VERBS.contains(verb) => (*r, Some(*s)),
        _ => return None,
    };
    let group = parts[..v].join(".");
    Some(Target {
        group: Cow::Owned(full_group(&group)),
        version: parts[v],
        resource,
        subresource,
        namespace: None,
        name: None,
        uri: None,
    })
}

fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0
        && ["", "alpha", "beta"].iter().any(|tag| {
            rest[digits..].strip_prefix(tag).is_some_and(|n| {
                n.bytes().all(|b| b.is_ascii_digit()) && (tag.is_empty() == n.is_empty())
            })
        })
}

fn full_group(short: &str) -> String {
    match short {
        "core" => String::new(),
        "rbac" => "rbac.authorization.k8s.io".into(),
        "flowcontrol" => "flowcontrol.apiserver.k8s.io".into(),
        "admissionregistration"
        | "apiextensions"
        | "apiregistration"
        | "authentication"
        | "authorization"
        | "certificates"
        | "coordination"
        | "discovery"
        | "events"
        | "networking"
        | "node"
        | "resource"
        | "scheduling"
        | "storage" => {
            format!("{short}.k8s.io")
        }
        _ => short.into(),
    }
}

fn user(e: &Entry) -> Option<String> {
    let (name, groups) = (e.principal, e.groups);
    if name.is_none() && groups.is_none() {
        return None;
    }
    let mut o = Obj::new();
    if let Some(n) = name {
        o.raw("username", n);
    }
    if let Some(g) = groups {
        o.raw("groups", g);
    }
    String::from_utf8(o.end()).ok()
}

/// `responseStatus`, from what the entry says (see the module's table).
fn response_status(e: &Entry) -> Option<String> {
    let mut o = Obj::new();
    if let Some(resp) = e.response.filter(|r| is_status(e.doc, r)) {
        if let Some(code) = e.doc.get(resp, "code").filter(|c| c.parse::<u16>().is_ok()) {
            o.raw("metadata", "{}");
            for key in ["status", "message", "reason"] {
                if let Some(v) = e
                    .doc
                    .get(resp, key)
                    .filter(|v| json::kind(v) == json::Kind::String)
                {
                    o.raw(key, v);
                }
            }
            o.raw("code", code);
            return String::from_utf8(o.end()).ok();
        }
    }
    let grpc = e
        .status
        .and_then(|s| e.doc.get(s, "code"))
        .and_then(|c| c.parse::<u32>().ok())
        .filter(|&c| c != 0);
    // A status without a code is OK (proto3 leaves a zero out): 200, the
    // HTTP code google.rpc.Code gives OK. No status at all says nothing.
    let ok = e
        .status
        .is_some_and(|s| json::kind(s) == json::Kind::Object);
    let code = match grpc {
        Some(c) => http_of_grpc(c)?,
        None if denied(e) => 403,
        None if ok => 200,
        None => return None,
    };
    o.raw("metadata", "{}");
    if let Some(msg) = e
        .status
        .and_then(|s| e.doc.get(s, "message"))
        .filter(|v| json::kind(v) == json::Kind::String && grpc.is_some())
    {
        o.raw("message", msg);
    }
    o.raw("code", &code.to_string());
    String::from_utf8(o.end()).ok()
}

/// A `meta/v1` `Status` object (what the API server answers a failed
/// request, and some deletes, with).
fn is_status(doc: Scanned, v: &str) -> bool {
    if let Some((ty, _)) = leading_type(v) {
        return ty.ends_with(".Status");
    }
    let get = |key| doc.get(v, key).and_then(json::string);
    get("kind").as_deref() == Some("Status") || get("@type").is_some_and(|t| t.ends_with(".Status"))
}

/// An object whose first key is `@type` (where Cloud Logging puts it), with
/// a value without escapes: the value, and the object's text after the
/// entry (`"kind":"Pod",…}` or `}`), without scanning the rest.
fn leading_type(v: &str) -> Option<(&str, &str)> {
    let rest = v
        .strip_prefix('{')?
        .trim_start()
        .strip_prefix("\"@type\"")?;
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let end = memchr::memchr2(b'"', b'\\', rest.as_bytes())?;
    if rest.as_bytes()[end] != b'"' {
        return None;
    }
    let (ty, after) = (&rest[..end], rest[end + 1..].trim_start());
    match after.as_bytes().first() {
        Some(b',') => Some((ty, after[1..].trim_start())),
        Some(b'}') => Some((ty, after)),
        _ => None,
    }
}

/// Whether an authorization check of the request was not granted.
fn denied(e: &Entry) -> bool {
    e.authorization
        .and_then(|a| e.doc.elements(a))
        .unwrap_or_default()
        .iter()
        .any(|a| e.doc.get(a, "granted") == Some("false"))
}

/// The HTTP status of a `google.rpc.Code`, as `google.rpc.Code` documents
/// the correspondence; `None` for a code it does not know.
pub(super) fn http_of_grpc(code: u32) -> Option<u16> {
    Some(match code {
        0 => 200,
        1 => 499,
        2 => 500,
        3 => 400,
        4 => 504,
        5 => 404,
        6 => 409,
        7 => 403,
        8 => 429,
        9 => 400,
        10 => 409,
        11 => 400,
        12 => 501,
        13 => 500,
        14 => 503,
        15 => 500,
        16 => 401,
        _ => return None,
    })
}

/// How [`without_type`] wrote an object.
enum Cut {
    /// As it was: it has no `@type`.
    Verbatim,
    /// `{` and its text from byte `rest` on: `@type` was its first entry.
    Leading { rest: usize },
    /// Entry by entry.
    Rewritten,
}

/// Writes an object (`v`, an object) without its `@type` key (the
/// protobuf type Cloud Logging adds to `request` and `response`).
fn without_type(doc: Scanned, v: &str, out: &mut Vec<u8>) -> Cut {
    if let Some((_, rest)) = leading_type(v) {
        out.push(b'{');
        out.extend_from_slice(rest.as_bytes());
        return Cut::Leading {
            rest: v.len() - rest.len(),
        };
    }
    if doc.get(v, "@type").is_none() {
        out.extend_from_slice(v.as_bytes());
        return Cut::Verbatim;
    }
    out.push(b'{');
    let mut first = true;
    for (k, val) in json::raw_entries(v)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !json::key_is(k, "@type"))
    {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(k.as_bytes());
        out.push(b':');
        out.extend_from_slice(val.as_bytes());
    }
    out.push(b'}');
    Cut::Rewritten
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A string is written as serde_json writes it, whether it holds
        /// something to escape or not.
        #[test]
        fn strings_are_written_as_serde_json_writes_them(s in "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}/é])*") {
            let mut ours = b"x".to_vec();
            push_str(&mut ours, &s);
            let theirs = serde_json::to_vec(&s).unwrap();
            prop_assert_eq!(&ours[1..], &theirs[..]);
        }
    }

    /// `group/version/resource namespace name subresource uri`, `-` for none.
    fn t(name: &str) -> Option<String> {
        target_of_resource_name(name).map(|t| {
            let o = |v: Option<&str>| v.unwrap_or("-").to_string();
            format!(
                "{}/{}/{} {} {} {} {}",
                t.group,
                t.version,
                t.resource,
                o(t.namespace),
                o(t.name),
                o(t.subresource),
                o(t.uri.as_deref())
            )
        })
    }

    #[test]
    fn resource_names_read_as_request_paths() {
        let cases = [
            (
                "core/v1/namespaces/default/pods/web/exec",
                "/v1/pods default web exec /api/v1/namespaces/default/pods/web/exec",
            ),
            (
                "rbac.authorization.k8s.io/v1/clusterroles/admin",
                "rbac.authorization.k8s.io/v1/clusterroles - admin - /apis/rbac.authorization.k8s.io/v1/clusterroles/admin",
            ),
            ("core/v1/secrets", "/v1/secrets - - - /api/v1/secrets"),
            (
                "core/v1/namespaces/kube-system/pods",
                "/v1/pods kube-system - - /api/v1/namespaces/kube-system/pods",
            ),
            // The namespace object itself, and its subresources.
            (
                "core/v1/namespaces/prod",
                "/v1/namespaces prod prod - /api/v1/namespaces/prod",
            ),
            (
                "core/v1/namespaces/prod/finalize",
                "/v1/namespaces prod prod finalize /api/v1/namespaces/prod/finalize",
            ),
        ];
        for (name, want) in cases {
            assert_eq!(t(name).as_deref(), Some(want), "{name}");
        }
        assert_eq!(t("/readyz"), None);
        assert_eq!(t("core/v1"), None);
        assert_eq!(t("core//pods"), None);
    }

    #[test]
    fn methods_name_the_verb_and_a_target_without_a_resource_name() {
        assert_eq!(
            verb_of_method("io.k8s.core.v1.pods.exec.create"),
            Some("create")
        );
        assert_eq!(
            verb_of_method("io.k8s.core.v1.pods.deletecollection"),
            Some("deletecollection")
        );
        assert_eq!(verb_of_method("io.k8s.readyz"), None);
        let m = target_of_method("io.k8s.rbac.v1.clusterroles.create").unwrap();
        assert_eq!(
            (m.group.as_ref(), m.version, m.resource),
            ("rbac.authorization.k8s.io", "v1", "clusterroles")
        );
        let m = target_of_method("io.k8s.core.v1.pods.portforward.create").unwrap();
        assert_eq!((m.group.as_ref(), m.subresource), ("", Some("portforward")));
        let m = target_of_method("io.k8s.apps.v1beta2.deployments.get").unwrap();
        assert_eq!((m.group.as_ref(), m.version), ("apps", "v1beta2"));
        assert!(target_of_method("io.k8s.readyz").is_none());
        assert!(target_of_method("io.k8s.core.vx.pods.get").is_none());
        assert!(is_version("v1") && is_version("v2beta1") && is_version("v1alpha3"));
        assert!(
            !is_version("v")
                && !is_version("vbeta1")
                && !is_version("v1beta")
                && !is_version("version")
        );
    }

    #[test]
    fn grpc_codes_map_to_the_api_servers_http_codes() {
        assert_eq!(http_of_grpc(7), Some(403));
        assert_eq!(http_of_grpc(16), Some(401));
        assert_eq!(http_of_grpc(5), Some(404));
        assert_eq!(http_of_grpc(6), Some(409));
        assert_eq!(http_of_grpc(10), Some(409));
        assert_eq!(http_of_grpc(3), Some(400));
        assert_eq!(http_of_grpc(17), None);
    }

    /// Text on no tape: lookups read it.
    fn unscanned(tape: &Tape) -> Scanned<'_> {
        Scanned { tape, base: "" }
    }

    fn without_type(v: &str) -> Option<String> {
        let mut out = Vec::new();
        let tape = Tape::default();
        (json::kind(v) == json::Kind::Object).then(|| {
            let _ = super::without_type(unscanned(&tape), v, &mut out);
            String::from_utf8(out).unwrap()
        })
    }

    fn is_status(v: &str) -> bool {
        super::is_status(unscanned(&Tape::default()), v)
    }

    #[test]
    fn type_is_dropped_and_the_rest_kept_in_order() {
        assert_eq!(
            without_type(r#"{"@type":"core.k8s.io/v1.Pod","kind":"Pod", "spec" : {"a":1}}"#)
                .as_deref(),
            Some(r#"{"kind":"Pod", "spec" : {"a":1}}"#)
        );
        assert_eq!(without_type(r#"{"@type":"x"}"#).as_deref(), Some("{}"));
        assert_eq!(
            without_type(r#"{ "@type" : "x" , "a":1 }"#).as_deref(),
            Some(r#"{"a":1 }"#)
        );
        assert_eq!(
            without_type(r#"{"a":1,"@type":"x\"y","b":2}"#).as_deref(),
            Some(r#"{"a":1,"b":2}"#)
        );
        assert_eq!(
            without_type(r#"{"@type":"x\"y","b":2}"#).as_deref(),
            Some(r#"{"b":2}"#)
        );
        assert!(is_status(r#"{"@type":"core.k8s.io/v1.Status","code":1}"#));
        assert!(!is_status(
            r#"{"@type":"core.k8s.io/v1.Pod","kind":"Status"}"#
        ));
        assert!(is_status(r#"{"kind":"Status"}"#));
        assert_eq!(without_type("[1]"), None);
        // Without a `@type` key the object is kept as written; a key spelt
        // with escapes is still found.
        assert_eq!(
            without_type(r#"{"kind": "Pod", "spec": {"@typo": 1}}"#).as_deref(),
            Some(r#"{"kind": "Pod", "spec": {"@typo": 1}}"#)
        );
        assert_eq!(
            without_type(r#"{"kind":"Pod","\u0040type":"x"}"#).as_deref(),
            Some(r#"{"kind":"Pod"}"#)
        );
        assert!(is_status(r#"{"a":"\u0026","\u006bind":"Status"}"#));
        assert!(!is_status(r#"{"a":"\u0026","spec":{"kind":"Status"}}"#));
    }

    #[test]
    fn the_payload_is_read_off_the_tape() {
        let text = r#"{"protoPayload":{"methodName":"a","x":{"methodName":"inner"},"\u0073erviceName":"k8s.io","methodName":"b","status":null}}"#;
        let mut tape = Tape::default();
        tape.scan(text).unwrap();
        let p = Payload::read(text, &tape, 1).expect("an object");
        // The last of a repeated key; an escaped key is the key it spells;
        // a nested object's keys are not the payload's; `null` is kept raw.
        assert_eq!(p.method, Some(r#""b""#));
        assert_eq!(p.service, Some(r#""k8s.io""#));
        assert_eq!(p.status, Some("null"));
        assert_eq!(p.request, None);
        for not_object in [r#"{"protoPayload":"x"}"#, r#"{"protoPayload":[{}]}"#] {
            tape.scan(not_object).unwrap();
            assert!(
                Payload::read(not_object, &tape, 1).is_none(),
                "{not_object}"
            );
        }
    }
}
