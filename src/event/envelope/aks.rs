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

use super::{text_document, Layer, OnEvent, OnSkip, Skip};
use crate::event::{decode_bytes, json};

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
        if !(c.eq_ignore_ascii_case("kube-audit") || c.eq_ignore_ascii_case("kube-audit-admin")) {
            return on_skip(Skip::OtherLog);
        }
    }
    let Some(log) = properties.and_then(|p| json::get(p, "log")) else {
        return on_skip(Skip::NotAuditEvent);
    };
    let cluster = resource_id.as_deref().and_then(cluster_of_resource_id);
    let layer = layer.naming(cluster);
    match json::string(log) {
        Some(text) => decode_bytes(text.as_bytes(), layer, on_event, &mut |skip| {
            if skip == Skip::InvalidJson && ends_mid_document(&text) {
                on_skip(Skip::Truncated)
            } else {
                on_skip(skip)
            }
        }),
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
