//! Property tests of the managed clusters' envelopes: no bytes inside an
//! envelope (a CloudWatch message, an AKS log, base64 or gzip data, the
//! fields of a GKE entry) can panic the decoder or a field read on what it
//! decodes, and wrapping an event in any envelope hands the same event on.

use std::io::Write;

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::json;

use saker::event::decode_document;
use saker::fields::extract::extract;
use saker::fields::{catalog, Arg, ArgSpec};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// Decodes `doc` and reads every field without an argument of each event.
fn decode_and_read(doc: &[u8]) -> Vec<String> {
    let mut raws = Vec::new();
    decode_document(
        doc,
        |ev| {
            for def in catalog().iter().filter(|f| f.arg == ArgSpec::None) {
                let _ = extract(&ev, def, &Arg::None);
            }
            raws.push(ev.raw.to_string());
        },
        |_| {},
    );
    raws
}

/// Every field without an argument of each event of `doc`, as text.
fn fields_of(doc: &[u8]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    decode_document(
        doc,
        |ev| {
            let values = catalog()
                .iter()
                .filter(|f| f.arg == ArgSpec::None)
                .map(|def| format!("{}={:?}", def.name, extract(&ev, def, &Arg::None)))
                .collect();
            out.push(values);
        },
        |_| {},
    );
    out
}

/// Every envelope `payload` (a document's bytes) can arrive in.
fn wrappings(payload: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(payload).into_owned();
    let cloudwatch = |message: &str| {
        json!({"messageType": "DATA_MESSAGE", "logGroup": "/aws/eks/c/cluster",
               "logStream": "kube-apiserver-audit-1", "logEvents": [{"id": "1", "timestamp": 1, "message": message}]})
        .to_string()
    };
    let cw = cloudwatch(&text);
    vec![
        cw.clone().into_bytes(),
        gzip(cw.as_bytes()),
        gzip(payload),
        [&[0x1f, 0x8b][..], payload].concat(),
        json!({"records": [{"data": b64(&gzip(cw.as_bytes()))}, {"data": b64(payload)}]}).to_string().into_bytes(),
        json!({"Records": [{"kinesis": {"data": b64(payload)}}]}).to_string().into_bytes(),
        json!({"awslogs": {"data": b64(payload)}}).to_string().into_bytes(),
        json!({"message": {"data": b64(payload)}, "subscription": "s"}).to_string().into_bytes(),
        json!({"records": [{"category": "kube-audit", "resourceId": "/x/managedClusters/a", "properties": {"log": text}}]})
            .to_string()
            .into_bytes(),
        json!({"category": "kube-audit-admin", "properties": {"log": text}}).to_string().into_bytes(),
    ]
}

/// A GKE entry with `value` (JSON text, or a string when it is not JSON)
/// in every field the conversion reads.
fn gke_entries(value: &str, name: &str, code: i64) -> Vec<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
    let mut out = Vec::new();
    for key in [
        "authenticationInfo",
        "authorizationInfo",
        "requestMetadata",
        "status",
        "request",
        "response",
        "resourceName",
        "methodName",
    ] {
        let mut p = json!({"serviceName": "k8s.io", "methodName": format!("io.k8s.{name}"),
            "resourceName": name, "status": {"code": code}, "authorizationInfo": [{"granted": false}],
            "response": {"kind": "Status", "code": code}});
        p[key] = v.clone();
        let entry = json!({"insertId": v.clone(), "operation": v.clone(), "labels": v.clone(),
            "resource": {"labels": {"cluster_name": v.clone()}}, "timestamp": "2024-01-01T00:00:00Z",
            "protoPayload": p});
        out.push(entry.to_string().into_bytes());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn no_bytes_inside_an_envelope_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        for doc in wrappings(&bytes) {
            decode_and_read(&doc);
        }
    }

    #[test]
    fn no_json_inside_an_envelope_panics(s in "[\\[\\]{}\":,0-9a-zA-Z/. ]{0,120}") {
        for doc in wrappings(s.as_bytes()) {
            decode_and_read(&doc);
        }
        let ev = format!(r#"{{"kind":"Event","auditID":"a","stageTimestamp":"2024-01-01T00:00:00Z","requestObject":{s}}}"#);
        for doc in wrappings(ev.as_bytes()) {
            decode_and_read(&doc);
        }
    }

    #[test]
    fn no_gke_entry_panics(
        value in "[\\[\\]{}\":,0-9a-z/. ]{0,80}",
        name in "[a-z0-9/.]{0,40}",
        code in -3i64..40,
    ) {
        for doc in gke_entries(&value, &name, code) {
            let raws = decode_and_read(&doc);
            let converted = fields_of(&doc);
            prop_assert_eq!(raws.len(), converted.len());
            for (raw, fields) in raws.iter().zip(converted) {
                // The converted text is not scanned again: it must be JSON,
                // and read as a plain event it must give the same fields
                // (but `ka.cluster`, which only the entry names).
                prop_assert!(serde_json::from_str::<serde_json::Value>(raw).is_ok(), "{}", raw);
                let but_cluster = |f: Vec<String>| -> Vec<String> {
                    f.into_iter().filter(|v| !v.starts_with("ka.cluster=")).collect()
                };
                let plain: Vec<Vec<String>> = fields_of(raw.as_bytes()).into_iter().map(but_cluster).collect();
                prop_assert_eq!(vec![but_cluster(fields)], plain);
            }
            // Inside a larger document (an array after another entry, a
            // Pub/Sub push message) the entry gives the same fields.
            let alone = fields_of(&doc);
            let text = String::from_utf8_lossy(&doc);
            let array = format!("[{text}, {text}]");
            prop_assert_eq!(fields_of(array.as_bytes()), [alone.clone(), alone.clone()].concat());
            let pushed = json!({"message": {"data": b64(&doc)}, "subscription": "s"}).to_string();
            prop_assert_eq!(fields_of(pushed.as_bytes()), alone);
        }
    }

    #[test]
    fn an_envelope_hands_its_event_on_unchanged(pod in "[a-z0-9-]{1,20}", second in 0u32..60) {
        let ev = super::exec_event(&pod, second);
        // Every wrapping of the event but the corrupt gzip holds it once.
        let docs = wrappings(ev.as_bytes());
        for (i, doc) in docs.iter().enumerate() {
            let raws = decode_and_read(doc);
            let want = match i {
                3 => 0,
                4 => 2,
                _ => 1,
            };
            prop_assert_eq!(raws.len(), want, "wrapping {}", i);
            for raw in raws {
                prop_assert_eq!(&raw, &ev);
            }
        }
    }
}
