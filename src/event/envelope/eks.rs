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

use super::cursor::Cursor;
use super::{text_document, with_buffer, Layer, OnEvent, OnSkip, Skip};
use crate::event::scan::Tape;
use crate::event::{decode_bytes, decode_prescanned, give_tape, json};

/// A payload as the one pass over it reads it: its messages unescaped into
/// the pass's buffer, at `messages`.
#[derive(Default)]
struct Payload<'a> {
    message_type: Option<Cow<'a, str>>,
    log_group: Option<Cow<'a, str>>,
    log_stream: Option<Cow<'a, str>>,
    /// Each message's text in the buffer, and its tape when it was scanned
    /// as it was unescaped.
    messages: Option<Vec<(usize, usize, Option<Tape>)>>,
}

/// Reads a payload in one pass that unescapes its messages into `buf` as
/// it finds them. `None` for a payload of another shape (a message that is
/// not a string, a repeated key, invalid JSON), read the slower way.
fn read<'a>(raw: &'a str, buf: &mut Vec<u8>) -> Option<Payload<'a>> {
    let mut p = Payload::default();
    let mut c = Cursor::new(raw);
    c.object(|key, c| match key {
        "messageType" => set(&mut p.message_type, c.string()?),
        "logGroup" => set(&mut p.log_group, c.string()?),
        "logStream" => set(&mut p.log_stream, c.string()?),
        "logEvents" => {
            let mut messages = Vec::new();
            c.array(|c| {
                let mut message = None;
                c.object(|key, c| match key {
                    "message" => {
                        let start = buf.len();
                        let tape = c.document_into(buf)?;
                        set(&mut message, (start, buf.len(), tape))
                    }
                    _ => c.skip(),
                })?;
                messages.push(message?);
                Some(())
            })?;
            set(&mut p.messages, messages)
        }
        _ => c.skip(),
    })?;
    c.at_end().then_some(p)
}

fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// Decodes the messages of a payload read in one pass.
fn emit(p: Payload, buf: &[u8], layer: Layer, on_event: &mut OnEvent, on_skip: &mut OnSkip) {
    let cluster = p.log_group.as_deref().and_then(cluster_of_log_group);
    let other = other_stream(cluster, p.log_stream.as_deref());
    let layer = layer.naming(cluster);
    for (start, end, tape) in p.messages.into_iter().flatten() {
        let text = &buf[start..end];
        match &tape {
            _ if other => on_skip(Skip::OtherLog),
            Some(tape) => decode_prescanned(text, tape, layer, on_event, on_skip),
            None => decode_bytes(text, layer, on_event, on_skip),
        }
        if let Some(tape) = tape {
            give_tape(tape);
        }
    }
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
    let fast = with_buffer(|buf| match read(raw, buf) {
        Some(p) if p.messages.is_some() => {
            emit(p, buf, layer, on_event, on_skip);
            true
        }
        _ => false,
    });
    if fast {
        return;
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

/// Reads a whole payload document in the one pass. Returns false, having
/// decoded nothing, for a payload of another shape (read the slower way).
pub(super) fn document(
    raw: &str,
    layer: Layer,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) -> bool {
    with_buffer(|buf| {
        let Some(p) = read(raw, buf) else {
            return false;
        };
        match p.message_type.as_deref() {
            Some("DATA_MESSAGE") if p.messages.is_some() => {
                emit(p, buf, layer, on_event, on_skip);
                true
            }
            Some("CONTROL_MESSAGE") => {
                on_skip(Skip::ControlMessage);
                true
            }
            _ => false,
        }
    })
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
