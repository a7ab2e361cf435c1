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

use super::{text_document, Layer, OnEvent, OnSkip, Skip};
use crate::event::json;

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
    let other_log = cluster.is_some()
        && stream
            .as_deref()
            .is_some_and(|s| !s.starts_with("kube-apiserver-audit"));
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

/// `prod` of `/aws/eks/prod/cluster`.
pub(super) fn cluster_of_log_group(group: &str) -> Option<&str> {
    let name = group.strip_prefix("/aws/eks/")?.strip_suffix("/cluster")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}
