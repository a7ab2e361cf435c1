//! Layers, nesting and the cluster names of envelopes; each shape's
//! conversion field by field is in tests/golden/managed/.

use std::io::Write;

use base64::Engine as _;

use super::{aks, eks, MAX_DEPTH};
use crate::event::{decode_document, Skip};

const EV: &str = r#"{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","stageTimestamp":"2024-01-01T00:00:01Z"}"#;

fn decode(doc: &[u8]) -> (Vec<(String, Option<String>)>, Vec<Skip>) {
    let (mut events, mut skips) = (Vec::new(), Vec::new());
    decode_document(
        doc,
        |e| events.push((e.raw.to_string(), e.cluster.map(str::to_string))),
        |s| skips.push(s),
    );
    (events, skips)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(b).unwrap();
    g.finish().unwrap()
}

fn pubsub(doc: &[u8]) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(doc);
    format!(r#"{{"message":{{"data":"{data}"}},"subscription":"s"}}"#)
}

#[test]
fn envelopes_nest_up_to_the_limit() {
    let mut doc = EV.to_string();
    for _ in 0..MAX_DEPTH {
        doc = pubsub(doc.as_bytes());
    }
    assert_eq!(decode(doc.as_bytes()).0.len(), 1);
    let deeper = pubsub(doc.as_bytes());
    assert_eq!(
        decode(deeper.as_bytes()),
        (vec![], vec![Skip::NotAuditEvent])
    );
}

#[test]
fn gzip_members_and_concatenated_documents_are_all_read() {
    let two = [gzip(EV.as_bytes()), gzip(format!("{EV}\n{EV}").as_bytes())].concat();
    let (events, skips) = decode(&two);
    assert_eq!((events.len(), skips), (3, vec![]));
    let (events, skips) = decode(&gzip(format!("{EV} {{\"broken").as_bytes()));
    assert_eq!((events.len(), skips), (1, vec![Skip::InvalidJson]));
    assert_eq!(decode(&gzip(b"klog text")).1, vec![Skip::NotJson]);
    assert_eq!(decode(&gzip(b"")).1, vec![Skip::Blank]);
    let mut corrupt = gzip(EV.as_bytes());
    corrupt.truncate(corrupt.len() / 2);
    assert_eq!(decode(&corrupt).1, vec![Skip::InvalidJson]);
}

#[test]
fn an_inner_cluster_wins_over_an_outer_one() {
    let cw = format!(
        r#"{{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/inner/cluster","logStream":"kube-apiserver-audit-1","logEvents":[{{"message":{}}}]}}"#,
        serde_json::to_string(EV).unwrap()
    );
    let (events, _) = decode(pubsub(cw.as_bytes()).as_bytes());
    assert_eq!(events[0].1.as_deref(), Some("inner"));
    assert_eq!(decode(EV.as_bytes()).0[0].1, None);
}

#[test]
fn empty_and_odd_envelopes_are_not_events() {
    for doc in [
        r#"{"records":[]}"#,
        r#"{"records":{}}"#,
        r#"{"Records":[{"kinesis":{}}]}"#,
        r#"{"awslogs":{}}"#,
        r#"{"message":"text"}"#,
        r#"{"messageType":"OTHER"}"#,
        r#"{"messageType":"DATA_MESSAGE"}"#,
        r#"{"properties":{}}"#,
        r#"{"protoPayload":{"serviceName":"compute.googleapis.com"}}"#,
        r#"{"protoPayload":"k8s.io"}"#,
        r#"{"protoPayload":{"serviceName":"k8s.io"},"protoPayload":{"serviceName":"k8s.io"}}"#,
        r#"{"category":"kube-audit","properties":{"log":3}}"#,
    ] {
        assert_eq!(
            decode(doc.as_bytes()),
            (vec![], vec![Skip::NotAuditEvent]),
            "{doc}"
        );
    }
}

#[test]
fn cluster_names() {
    assert_eq!(
        eks::cluster_of_log_group("/aws/eks/prod/cluster"),
        Some("prod")
    );
    for group in [
        "/aws/eks//cluster",
        "/aws/eks/a/b/cluster",
        "/aws/lambda/x",
        "/aws/eks/prod",
    ] {
        assert_eq!(eks::cluster_of_log_group(group), None, "{group}");
    }
    let id = "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ContainerService/managedClusters/dev";
    assert_eq!(aks::cluster_of_resource_id(id), Some("dev"));
    assert_eq!(aks::cluster_of_resource_id(&id.to_uppercase()), Some("DEV"));
    assert_eq!(aks::cluster_of_resource_id("/x/MANAGEDCLUSTERS/"), None);
    // A resource group may bear the name; the cluster is the last segment.
    let rg = "/SUBSCRIPTIONS/S/RESOURCEGROUPS/MANAGEDCLUSTERS/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD";
    assert_eq!(aks::cluster_of_resource_id(rg), Some("PROD"));
    // A sub-resource's id: found from the start.
    assert_eq!(
        aks::cluster_of_resource_id("/s/managedClusters/prod/agentPools/np1"),
        Some("prod")
    );
    assert_eq!(
        aks::cluster_of_resource_id("/s/managedClusters/prod/x/managedClusters/"),
        Some("prod")
    );
    assert_eq!(
        aks::cluster_of_resource_id("/x/connectedClusters/arc"),
        None
    );
}

#[test]
fn a_null_payload_is_no_entry() {
    let doc = EV.replacen('{', r#"{"protoPayload":null,"#, 1);
    assert_eq!(decode(doc.as_bytes()).0.len(), 1);
}

#[test]
fn a_log_read_in_one_pass_decodes_as_the_two_passes_do() {
    let log = serde_json::to_string(EV).unwrap();
    let aks = |log: &str| {
        format!(
            r#"{{"records":[{{"category":"kube-audit","resourceId":"/s/managedClusters/c","properties":{{"log":{log}}}}},{{"category":"kube-audit","properties":{{"log":{log}}}}}]}}"#
        )
    };
    let eks = |message: &str| {
        format!(
            r#"{{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/c/cluster","logStream":"kube-apiserver-audit-1","logEvents":[{{"id":"1","message":{message}}},{{"id":"2","message":{message}}}]}}"#
        )
    };
    for doc in [aks(&log), eks(&log)] {
        let (events, skips) = decode(doc.as_bytes());
        assert_eq!(events.len(), 2, "{doc}");
        assert!(skips.is_empty(), "{doc}: {skips:?}");
        assert_eq!(events[0].0, EV);
        assert_eq!(events[0].1.as_deref(), Some("c"));
    }
    // A quote that lost its backslash ends the string: the envelope is
    // not JSON, though what follows would read as the event.
    let broken = log.replacen("{\\\"", "{x\"", 1);
    for doc in [aks(&broken), eks(&broken)] {
        let (events, skips) = decode(doc.as_bytes());
        assert!(events.is_empty(), "{doc}");
        assert_eq!(skips, vec![Skip::InvalidJson], "{doc}");
    }
    // Pretty-printed, or with an escape the one pass does not take: read
    // the general way, to the same events.
    let spaced = serde_json::to_string(&EV.replace(',', ", ")).unwrap();
    let escaped = log.replace("Event", "\\u0045vent");
    for log in [spaced, escaped] {
        let (events, skips) = decode(aks(&log).as_bytes());
        assert_eq!(events.len(), 2, "{log}");
        assert!(skips.is_empty());
    }
}
