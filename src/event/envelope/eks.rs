//! EKS: a CloudWatch Logs subscription payload.
//!
//! ```json
//! {"messageType": "DATA_MESSAGE", "owner": "123456789012",
//!  "logGroup": "/aws/eks/prod/cluster", "logStream": "kube-apiserver-audit-0a1b…",
//!  "subscriptionFilters": ["to-saker"], "policyLevel": "ACCOUNT_LEVEL_POLICY",
//!  "logEvents": [{"id": "…", "timestamp": 1700000000000, "message": "{\"kind\":\"Event\",…}"}]}
//! ```
//!
//! Each message of a `DATA_MESSAGE` is decoded as a document (an audit
//! `Event` on the audit log stream). A `CONTROL_MESSAGE` (sent when a
//! subscription is created, to check the destination) is counted as
//! `control_message`. An EKS log group also holds the API server's,
//! authenticator's and controllers' own logs: their messages are counted
//! as `other_log`. Keys not read here (`owner`, `policyLevel`, …) are
//! ignored. The cluster is the `<name>` of the log group
//! `/aws/eks/<name>/cluster`.

use std::borrow::Cow;

use serde::Deserialize;

use super::{text_document, Held, Layer, OnEvent, OnSkip, Skip};
use crate::event::{decode_bytes, json};

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(borrow, default, rename = "messageType")]
    message_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "logGroup")]
    log_group: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "logStream")]
    log_stream: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "logEvents")]
    log_events: Option<Vec<LogEvent<'a>>>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow, default)]
    message: Option<Held<'a>>,
}

pub(super) fn payload(
    raw: &str,
    message_type: &str,
    layer: Layer,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) {
    match json::string(message_type).as_deref() {
        Some("DATA_MESSAGE") => {}
        Some("CONTROL_MESSAGE") => return on_skip(Skip::ControlMessage),
        _ => return on_skip(Skip::NotAuditEvent),
    }
    // One pass that unescapes the messages as it reads them; a payload of
    // another shape is read the slower way.
    if let Ok(p) = serde_json::from_str::<Payload>(raw) {
        let plain = p
            .log_events
            .as_ref()
            .is_some_and(|e| e.iter().all(|m| matches!(m.message, Some(Held::Text(_)))));
        if plain {
            let cluster = p.log_group.as_deref().and_then(cluster_of_log_group);
            let other = other_stream(cluster, p.log_stream.as_deref());
            let layer = layer.naming(cluster);
            for e in p.log_events.iter().flatten() {
                match &e.message {
                    Some(Held::Text(_)) if other => on_skip(Skip::OtherLog),
                    Some(Held::Text(m)) => decode_bytes(m.as_bytes(), layer, on_event, on_skip),
                    _ => on_skip(Skip::NotAuditEvent),
                }
            }
            return;
        }
    }
    let (mut group, mut stream, mut events) = (None, None, None);
    for (k, v) in json::raw_entries(raw).unwrap_or_default() {
        match k {
            "\"logGroup\"" => group = json::string(v),
            "\"logStream\"" => stream = json::string(v),
            "\"logEvents\"" => events = json::elements(v),
            _ => {}
        }
    }
    let cluster = group.as_deref().and_then(cluster_of_log_group);
    let other_log = other_stream(cluster, stream.as_deref());
    let layer = layer.naming(cluster);
    let Some(events) = events else {
        return on_skip(Skip::NotAuditEvent);
    };
    for event in events {
        match json::get(event, "message") {
            Some(_) if other_log => on_skip(Skip::OtherLog),
            Some(message) => text_document(message, layer, on_event, on_skip),
            None => on_skip(Skip::NotAuditEvent),
        }
    }
}

/// Reads a payload in one pass that unescapes the messages as it reads
/// them. Returns false, having decoded nothing, for a payload of another
/// shape (read the slower way).
pub(super) fn document(
    raw: &str,
    layer: Layer,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) -> bool {
    let Ok(p) = serde_json::from_str::<Payload>(raw) else {
        return false;
    };
    match p.message_type.as_deref() {
        Some("DATA_MESSAGE") => {}
        Some("CONTROL_MESSAGE") => {
            on_skip(Skip::ControlMessage);
            return true;
        }
        _ => return false,
    }
    let plain = p
        .log_events
        .as_ref()
        .is_some_and(|e| e.iter().all(|m| matches!(m.message, Some(Held::Text(_)))));
    if !plain {
        return false;
    }
    let cluster = p.log_group.as_deref().and_then(cluster_of_log_group);
    let other = other_stream(cluster, p.log_stream.as_deref());
    let layer = layer.naming(cluster);
    for e in p.log_events.iter().flatten() {
        match &e.message {
            Some(Held::Text(_)) if other => on_skip(Skip::OtherLog),
            Some(Held::Text(m)) => decode_bytes(m.as_bytes(), layer, on_event, on_skip),
            _ => on_skip(Skip::NotAuditEvent),
        }
    }
    true
}

/// Whether the messages are of an EKS log stream other than the audit log.
fn other_stream(cluster: Option<&str>, stream: Option<&str>) -> bool {
    cluster.is_some() && stream.is_some_and(|s| !s.starts_with("kube-apiserver-audit"))
}

/// `prod` of `/aws/eks/prod/cluster`.
pub(super) fn cluster_of_log_group(group: &str) -> Option<&str> {
    let name = group.strip_prefix("/aws/eks/")?.strip_suffix("/cluster")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}
