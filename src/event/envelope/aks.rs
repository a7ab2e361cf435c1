//! AKS: an Azure diagnostic record, from a diagnostic setting's Event Hub
//! (read over its Kafka endpoint) or storage account.
//!
//! ```json
//! {"records": [{"category": "kube-audit", "time": "2024-03-20T10:00:00Z",
//!   "resourceId": "/SUBSCRIPTIONS/…/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD",
//!   "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
//!   "properties": {"log": "{\"kind\":\"Event\",…}", "stream": "stdout", "pod": "kube-apiserver-…"}}]}
//! ```
//!
//! Records of the categories `kube-audit` and `kube-audit-admin` hold an
//! audit event in `properties.log`, as JSON text (or, from some exporters,
//! as an object). Records of every other category (`kube-apiserver`,
//! `guard`, `cluster-autoscaler`, … — klog text) are counted as
//! `other_log`. Azure cuts a record's `log` at its size limit: JSON text
//! that ends mid-document is counted as `truncated`, apart from garbage.
//! The cluster is the segment after `managedClusters/` in `resourceId`: the
//! last one when the id ends with it (as Azure's records do), else the
//! first (Azure writes resource ids in any case; the name is kept as
//! written).

use std::borrow::Cow;

use super::cursor::Cursor;
use super::{base64_decode, text_document, with_buffer, Layer, OnEvent, OnSkip, Skip};
use crate::event::scan::Tape;
use crate::event::{decode_bytes, decode_prescanned, give_tape, json};

/// A record of a `records` array, as the one pass over it reads it: Azure's
/// (its `log` unescaped into the pass's buffer, at `log`), or Firehose's
/// (`data`).
#[derive(Default)]
struct Record<'a> {
    category: Option<Cow<'a, str>>,
    resource_id: Option<Cow<'a, str>>,
    /// Where the `log` text is in the buffer.
    log: Option<(usize, usize)>,
    /// The `log` text's tape, when it was scanned as it was unescaped.
    tape: Option<Tape>,
    data: Option<Cow<'a, str>>,
}

/// Decodes a `records` array in one pass over it (the `log` texts
/// unescaped as they are read). Returns false, having decoded nothing, when
/// the array has a shape this pass does not take (a `log` object, a record
/// that is not an object): the caller then reads it record by record.
pub(super) fn records(
    raw: &str,
    layer: Layer,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) -> bool {
    with_buffer(|buf| {
        let mut c = Cursor::new(raw);
        match read_records(&mut c, buf) {
            Some(records) if c.at_end() => emit(records, buf, layer, on_event, on_skip),
            _ => false,
        }
    })
}

/// [`records`] for a whole `{"records": [...]}` document.
pub(super) fn document(
    raw: &str,
    layer: Layer,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) -> bool {
    with_buffer(|buf| {
        let mut c = Cursor::new(raw);
        let mut records = None;
        let read = c.object(|key, c| match key {
            "records" if records.is_none() => {
                records = Some(read_records(c, buf)?);
                Some(())
            }
            // A repeated `records`: read the slow way.
            "records" => None,
            _ => c.skip(),
        });
        match (read, records) {
            (Some(()), Some(records)) if c.at_end() => emit(records, buf, layer, on_event, on_skip),
            _ => false,
        }
    })
}

fn read_records<'a>(c: &mut Cursor<'a>, buf: &mut Vec<u8>) -> Option<Vec<Record<'a>>> {
    let mut records = Vec::new();
    c.array(|c| {
        let mut r = Record::default();
        c.object(|key, c| match key {
            "category" => set(&mut r.category, c.string()?),
            "resourceId" => set(&mut r.resource_id, c.string()?),
            "data" => set(&mut r.data, c.string()?),
            "properties" => c.object(|key, c| match key {
                "log" if r.log.is_none() => {
                    let start = buf.len();
                    r.tape = c.document_into(buf)?;
                    r.log = Some((start, buf.len()));
                    Some(())
                }
                "log" => None,
                _ => c.skip(),
            }),
            _ => c.skip(),
        })?;
        records.push(r);
        Some(())
    })?;
    Some(records)
}

/// Sets a key's value once: a repeated key is left to the slow way (which
/// takes the last one, as serde_json's structs would refuse it).
fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

fn emit(
    records: Vec<Record>,
    buf: &[u8],
    layer: Layer,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) -> bool {
    if records.is_empty() {
        return false;
    }
    for r in records {
        emit_record(&r, buf, layer, on_event, on_skip);
        if let Some(tape) = r.tape {
            give_tape(tape);
        }
    }
    true
}

fn emit_record(r: &Record, buf: &[u8], layer: Layer, on_event: &mut OnEvent, on_skip: &mut OnSkip) {
    if let Some(data) = &r.data {
        return match base64_decode(data) {
            Ok(bytes) => decode_bytes(&bytes, layer, on_event, on_skip),
            Err(_) => on_skip(Skip::InvalidJson),
        };
    }
    if let Some(c) = r.category.as_deref() {
        if !is_audit(c) {
            return on_skip(Skip::OtherLog);
        }
    }
    let Some((start, end)) = r.log else {
        return on_skip(Skip::NotAuditEvent);
    };
    let cluster = r.resource_id.as_deref().and_then(cluster_of_resource_id);
    let (text, layer) = (&buf[start..end], layer.naming(cluster));
    match &r.tape {
        Some(tape) => decode_prescanned(text, tape, layer, on_event, on_skip),
        None => audit_text(text, layer, on_event, on_skip),
    }
}

fn is_audit(category: &str) -> bool {
    category.eq_ignore_ascii_case("kube-audit") || category.eq_ignore_ascii_case("kube-audit-admin")
}

/// An audit event as JSON text; cut off, it is `truncated`.
fn audit_text(text: &[u8], layer: Layer, on_event: &mut OnEvent, on_skip: &mut OnSkip) {
    decode_bytes(text, layer, on_event, &mut |skip| {
        if skip == Skip::InvalidJson && ends_mid_document(text) {
            on_skip(Skip::Truncated)
        } else {
            on_skip(skip)
        }
    })
}

pub(super) fn record(raw: &str, layer: Layer, on_event: &mut OnEvent, on_skip: &mut OnSkip) {
    let (mut category, mut properties, mut resource_id) = (None, None, None);
    for (k, v) in json::raw_entries(raw).unwrap_or_default() {
        match k {
            "\"category\"" => category = json::string(v),
            "\"properties\"" => properties = Some(v),
            "\"resourceId\"" => resource_id = json::string(v),
            _ => {}
        }
    }
    if let Some(c) = category.as_deref() {
        if !is_audit(c) {
            return on_skip(Skip::OtherLog);
        }
    }
    let Some(log) = properties.and_then(|p| json::get(p, "log")) else {
        return on_skip(Skip::NotAuditEvent);
    };
    let cluster = resource_id.as_deref().and_then(cluster_of_resource_id);
    let layer = layer.naming(cluster);
    match json::string(log) {
        Some(text) => audit_text(text.as_bytes(), layer, on_event, on_skip),
        None => text_document(log, layer, on_event, on_skip),
    }
}

/// Whether `text` is the start of a JSON document that was cut off.
fn ends_mid_document(text: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(text).is_err_and(|e| e.is_eof())
}

/// `prod` of `/subscriptions/…/managedClusters/prod` (any case).
pub(super) fn cluster_of_resource_id(id: &str) -> Option<&str> {
    // Azure's records name the cluster last: looked at from the end first.
    let mut last = id.rsplitn(3, '/');
    if let (Some(name), Some(kind)) = (last.next(), last.next()) {
        if kind.eq_ignore_ascii_case("managedClusters") && !name.is_empty() {
            return Some(name);
        }
    }
    let mut parts = id.split('/');
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case("managedClusters") {
            return parts.next().filter(|n| !n.is_empty());
        }
    }
    None
}
