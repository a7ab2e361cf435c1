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
//! The cluster is the segment after `managedClusters/` in `resourceId`
//! (Azure writes resource ids in any case; the name is kept as written).

use std::borrow::Cow;

use serde::Deserialize;

use super::{base64_decode, text_document, Held, Layer, OnEvent, OnSkip, Skip};
use crate::event::{decode_bytes, json};

/// A record of a `records` array: Azure's, or Firehose's (`data`).
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    category: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "resourceId")]
    resource_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    properties: Option<Properties<'a>>,
    #[serde(borrow, default)]
    data: Option<Held<'a>>,
}

#[derive(Deserialize)]
struct Properties<'a> {
    #[serde(borrow, default)]
    log: Option<Held<'a>>,
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
    match serde_json::from_str::<Vec<Record>>(raw) {
        Ok(records) => emit(&records, layer, on_event, on_skip),
        Err(_) => false,
    }
}

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow)]
    records: Vec<Record<'a>>,
}

/// [`records`] for a whole `{"records": [...]}` document.
pub(super) fn document(
    raw: &str,
    layer: Layer,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) -> bool {
    match serde_json::from_str::<Document>(raw) {
        Ok(d) => emit(&d.records, layer, on_event, on_skip),
        Err(_) => false,
    }
}

fn emit(records: &[Record], layer: Layer, on_event: &mut OnEvent, on_skip: &mut OnSkip) -> bool {
    let plain = |r: &Record| match (&r.data, &r.properties) {
        (Some(Held::Other), _) => false,
        (_, Some(p)) => !matches!(p.log, Some(Held::Other)),
        _ => true,
    };
    if records.is_empty() || !records.iter().all(plain) {
        return false;
    }
    for r in records {
        if let Some(Held::Text(data)) = &r.data {
            match base64_decode(data) {
                Ok(bytes) => decode_bytes(&bytes, layer, on_event, on_skip),
                Err(_) => on_skip(Skip::InvalidJson),
            }
            continue;
        }
        if let Some(c) = r.category.as_deref() {
            if !is_audit(c) {
                on_skip(Skip::OtherLog);
                continue;
            }
        }
        let Some(Held::Text(log)) = r.properties.as_ref().and_then(|p| p.log.as_ref()) else {
            on_skip(Skip::NotAuditEvent);
            continue;
        };
        let cluster = r.resource_id.as_deref().and_then(cluster_of_resource_id);
        audit_text(log, layer.naming(cluster), on_event, on_skip);
    }
    true
}

fn is_audit(category: &str) -> bool {
    category.eq_ignore_ascii_case("kube-audit") || category.eq_ignore_ascii_case("kube-audit-admin")
}

/// An audit event as JSON text; cut off, it is `truncated`.
fn audit_text(text: &str, layer: Layer, on_event: &mut OnEvent, on_skip: &mut OnSkip) {
    decode_bytes(text.as_bytes(), layer, on_event, &mut |skip| {
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
        Some(text) => audit_text(&text, layer, on_event, on_skip),
        None => text_document(log, layer, on_event, on_skip),
    }
}

/// Whether `text` is the start of a JSON document that was cut off.
fn ends_mid_document(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_err_and(|e| e.is_eof())
}

/// `prod` of `/subscriptions/…/managedClusters/prod` (any case).
pub(super) fn cluster_of_resource_id(id: &str) -> Option<&str> {
    let mut parts = id.split('/');
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case("managedClusters") {
            return parts.next().filter(|n| !n.is_empty());
        }
    }
    None
}
