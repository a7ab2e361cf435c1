//! The envelopes that managed clusters' audit logs arrive in, opened as part
//! of decoding a document, in every input and without a flag:
//!
//! - EKS ([`eks`]): a CloudWatch Logs subscription payload (`messageType`,
//!   `logGroup`, `logStream`, `logEvents[].message`), gzip'd where the cloud
//!   delivers it so, and base64'd inside a Firehose delivery
//!   (`records[].data`), a Lambda Kinesis event (`Records[].kinesis.data`)
//!   or a Lambda CloudWatch Logs event (`awslogs.data`);
//! - GKE ([`gke`]): a Cloud Logging `LogEntry` whose `protoPayload` is a
//!   Kubernetes `AuditLog`, converted into an audit `Event`; also inside a
//!   Pub/Sub push message (`message.data`);
//! - AKS ([`aks`]): Azure diagnostic records (`records[]`, or one record),
//!   the audit event in `properties.log`.
//!
//! An envelope is recognised by its top-level keys, which [`super::Top`]
//! locates along with an event's own (none of them is a key of an audit
//! event), so a plain event pays nothing for this. The document inside an
//! envelope is decoded like any document, so layers nest (base64, then gzip,
//! then CloudWatch Logs), up to [`MAX_DEPTH`]. Events keep the cluster name
//! the envelope carries (`ka.cluster`).
//!
//! [`push`] has what the HTTP receiver needs to answer Firehose and read a
//! Pub/Sub push request.

mod aks;
mod cursor;
mod eks;
mod gke;
mod push;

use std::io::Read;

use base64::Engine as _;
use serde_json::value::RawValue;

use super::{decode_bytes, json, Layer, OnEvent, OnSkip, Scanned, Skip, Top};

pub use gke::Payload;
pub use push::{
    firehose_delivery, firehose_records, firehose_response, pubsub_delivery, pubsub_message,
    pubsub_push, Error, FirehoseDelivery, PubSubMessage,
};

/// Envelopes nested deeper than this are not opened (counted as
/// `not_audit_event`): real ones are at most four deep (Firehose record,
/// base64, gzip, CloudWatch Logs message).
pub const MAX_DEPTH: u8 = 6;

/// The most a gzip'd document may inflate to; beyond, it is counted as
/// `too_long`. A CloudWatch Logs payload inflates to about 1 MiB at most.
pub const MAX_INFLATED: u64 = 64 << 20;

/// Whether a document starts with gzip's magic bytes.
pub fn is_gzip(doc: &[u8]) -> bool {
    doc.starts_with(&[0x1f, 0x8b])
}

thread_local! {
    /// A buffer for the documents envelopes hold, kept between documents.
    static BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Calls `f` with an empty buffer that is kept for the next call on this
/// thread (an envelope's event is written or unescaped into it, and lives
/// while it is decoded), so that no document allocates one. A nested call
/// (an envelope inside an envelope's document) gets a buffer of its own.
pub(crate) fn with_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = BUFFER.take();
    buf.clear();
    let r = f(&mut buf);
    if buf.capacity() <= KEPT_BUFFER {
        BUFFER.set(buf);
    }
    r
}

/// The largest buffer [`with_buffer`] keeps (a CloudWatch Logs payload
/// holds about 1 MiB).
const KEPT_BUFFER: usize = 2 << 20;

/// Base64 as the clouds write it (the standard alphabet; padding accepted
/// whether present or not).
pub(crate) fn base64_decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    const ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(s.trim())
}

/// Inflates a gzip'd document (one or more gzip members) and decodes the
/// JSON documents it holds: one, or several one after another (as Firehose
/// writes them to S3).
pub(crate) fn inflate(doc: &[u8], layer: Layer, on_event: &mut OnEvent, on_skip: &mut OnSkip) {
    let Some(inner) = layer.deeper() else {
        return on_skip(Skip::NotAuditEvent);
    };
    let mut text = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(doc)
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut text);
    match read {
        Err(_) => return on_skip(Skip::InvalidJson),
        Ok(n) if n as u64 > MAX_INFLATED => return on_skip(Skip::TooLong),
        Ok(_) => {}
    }
    let mut values = serde_json::Deserializer::from_slice(&text).into_iter::<&RawValue>();
    match values.next() {
        None => on_skip(Skip::Blank),
        // Not JSON: classified as any document is (log text, garbage).
        Some(Err(_)) => decode_bytes(&text, inner, on_event, on_skip),
        Some(Ok(first)) => {
            decode_bytes(first.get().as_bytes(), inner, on_event, on_skip);
            for value in values {
                match value {
                    Ok(v) => decode_bytes(v.get().as_bytes(), inner, on_event, on_skip),
                    Err(_) => return on_skip(Skip::InvalidJson),
                }
            }
        }
    }
}

impl<'c> Layer<'c> {
    /// The layer inside this one, unless that is too deep.
    fn deeper(self) -> Option<Layer<'c>> {
        (self.depth < MAX_DEPTH).then_some(Layer {
            cluster: self.cluster,
            depth: self.depth + 1,
        })
    }

    /// The same depth, with the cluster an envelope names (else the one
    /// named further out).
    fn naming(self, cluster: Option<&'c str>) -> Layer<'c> {
        Layer {
            cluster: cluster.or(self.cluster),
            depth: self.depth,
        }
    }
}

/// The envelopes whose first key names them (`{"records": …` as Azure
/// writes its records, `{"messageType": …` as CloudWatch Logs writes its
/// payloads), read in one pass that also unescapes the documents inside,
/// before any other look at the document. Returns whether it read `text`;
/// false for anything else (an audit event, which starts otherwise, pays
/// for looking at its first key).
pub(crate) fn by_first_key(
    text: &str,
    layer: Layer,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) -> bool {
    let key = first_key(text);
    if key != Some("records") && key != Some("messageType") {
        return false;
    }
    let Some(inner) = layer.deeper() else {
        return false;
    };
    match key {
        Some("records") => aks::document(text, inner, on_event, on_skip),
        _ => eks::document(text, inner, on_event, on_skip),
    }
}

/// The first key of a JSON object, when it has no escapes.
fn first_key(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('{')?.trim_start().strip_prefix('"')?;
    let end = memchr::memchr2(b'"', b'\\', rest.as_bytes())?;
    (rest.as_bytes()[end] == b'"').then(|| &rest[..end])
}

/// Opens the envelope whose top-level keys are in `top`.
pub(crate) fn open<'d>(
    raw: &'d str,
    top: &Top<'d>,
    scanned: Scanned<'d>,
    layer: Layer<'d>,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) {
    let Some(inner) = layer.deeper() else {
        return on_skip(Skip::NotAuditEvent);
    };
    if let Some(kind) = top.message_type {
        eks::payload(raw, kind, inner, on_event, on_skip)
    } else if let Some(payload) = &top.proto_payload {
        gke::entry(top, payload, scanned, inner, on_event, on_skip)
    } else if let Some(records) = top.records {
        if !aks::records(records, inner, on_event, on_skip) {
            each(records, on_skip, |record, on_skip| {
                match json::get(record, "data") {
                    // Firehose (and Kinesis) records: base64 of the payload.
                    Some(data) => base64_document(data, inner, on_event, on_skip),
                    None => aks::record(record, inner, on_event, on_skip),
                }
            })
        }
    } else if let Some(records) = top.kinesis_records {
        each(records, on_skip, |record, on_skip| {
            match json::path(record, &["kinesis", "data"]) {
                Some(data) => base64_document(data, inner, on_event, on_skip),
                None => on_skip(Skip::NotAuditEvent),
            }
        })
    } else if let Some(logs) = top.awslogs {
        match json::get(logs, "data") {
            Some(data) => base64_document(data, inner, on_event, on_skip),
            None => on_skip(Skip::NotAuditEvent),
        }
    } else if let Some(message) = top.message {
        // A Pub/Sub push request: the LogEntry is the message's data.
        match json::get(message, "data") {
            Some(data) => base64_document(data, inner, on_event, on_skip),
            None => on_skip(Skip::NotAuditEvent),
        }
    } else {
        aks::record(raw, inner, on_event, on_skip)
    }
}

/// Calls `f` with each element of a JSON array; not an array (or an empty
/// one): nothing there is an event.
fn each<'d>(array: &'d str, on_skip: &mut OnSkip, mut f: impl FnMut(&'d str, &mut OnSkip)) {
    match json::elements(array) {
        Some(items) if !items.is_empty() => {
            for item in items {
                f(item, on_skip)
            }
        }
        _ => on_skip(Skip::NotAuditEvent),
    }
}

/// Decodes the document that a JSON string holds in base64.
fn base64_document(value: &str, layer: Layer, on_event: &mut OnEvent, on_skip: &mut OnSkip) {
    let Some(text) = json::string(value) else {
        return on_skip(Skip::NotAuditEvent);
    };
    match base64_decode(&text) {
        Ok(bytes) => decode_bytes(&bytes, layer, on_event, on_skip),
        Err(_) => on_skip(Skip::InvalidJson),
    }
}

/// Decodes the document that a JSON string holds as text (an EKS message,
/// an AKS `log`), or that a JSON object is.
fn text_document(value: &str, layer: Layer, on_event: &mut OnEvent, on_skip: &mut OnSkip) {
    match json::kind(value) {
        json::Kind::String => match json::string(value) {
            Some(text) => decode_bytes(text.as_bytes(), layer, on_event, on_skip),
            None => on_skip(Skip::NotAuditEvent),
        },
        json::Kind::Object => decode_bytes(value.as_bytes(), layer, on_event, on_skip),
        _ => on_skip(Skip::NotAuditEvent),
    }
}

#[cfg(test)]
mod tests;
