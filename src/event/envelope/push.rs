//! What an HTTP receiver needs for the clouds that push: a Kinesis Data
//! Firehose HTTP endpoint delivery (EKS through a CloudWatch Logs
//! subscription) and a Pub/Sub push request (GKE through a log sink).
//!
//! ```
//! use saker::event::envelope::{firehose_delivery, firehose_response};
//! let body = br#"{"requestId":"r-1","timestamp":1700000000000,"records":[{"data":"e30="}]}"#;
//! let delivery = firehose_delivery(body).unwrap();
//! assert_eq!(delivery.records, vec![b"{}".to_vec()]);
//! // Each record is then decoded as a document (`decode_document`); the
//! // answer, once its events are evaluated:
//! let answer = firehose_response(&delivery.request_id, 1700000000123, None);
//! assert_eq!(answer, r#"{"requestId":"r-1","timestamp":1700000000123}"#);
//! ```
//!
//! Both bodies are also understood by [`crate::event::decode_document`]
//! when they come as a plain document (a file, a Kafka message).

use serde::{Deserialize, Serialize};

use super::base64_decode;

/// Why a body is not a Firehose delivery or a Pub/Sub push request. Each
/// variant's message is fit for a `400` answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not JSON of the expected shape, e.g. `{"records": 1}`.
    #[error("not a {what} request: {source}")]
    Shape {
        what: &'static str,
        source: serde_json::Error,
    },
    /// `records[index].data` is not base64, e.g. `{"data": "%%"}`.
    #[error("record {index}: data is not base64: {source}")]
    RecordData {
        index: usize,
        source: base64::DecodeError,
    },
    /// `message.data` is absent (`{"message": {}}`).
    #[error("the Pub/Sub message has no data")]
    NoMessageData,
    /// `message.data` is not base64.
    #[error("the Pub/Sub message's data is not base64: {0}")]
    MessageData(base64::DecodeError),
    /// A body without the push wrapper that is not a document either,
    /// e.g. `hello`.
    #[error("neither a Pub/Sub push request nor a JSON document: {0}")]
    Unwrapped(serde_json::Error),
}

/// A Firehose HTTP endpoint delivery, its records decoded from base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirehoseDelivery {
    /// To be echoed in the answer.
    pub request_id: String,
    /// When Firehose sent it (ms since the epoch).
    pub timestamp: Option<i64>,
    /// Each record's payload: for a CloudWatch Logs subscription, a gzip'd
    /// subscription payload, to be decoded as a document.
    pub records: Vec<Vec<u8>>,
}

#[derive(Deserialize)]
struct RawDelivery {
    #[serde(rename = "requestId")]
    request_id: String,
    timestamp: Option<i64>,
    records: Vec<RawRecord>,
}

#[derive(Deserialize)]
struct RawRecord {
    data: String,
}

/// Reads a Firehose delivery request's body
/// (`{"requestId", "timestamp", "records": [{"data": base64}]}`).
pub fn firehose_delivery(body: &[u8]) -> Result<FirehoseDelivery, Error> {
    let raw: RawDelivery = serde_json::from_slice(body).map_err(|source| Error::Shape {
        what: "Firehose delivery",
        source,
    })?;
    let records = raw
        .records
        .iter()
        .enumerate()
        .map(|(index, r)| {
            base64_decode(&r.data).map_err(|source| Error::RecordData { index, source })
        })
        .collect::<Result<_, _>>()?;
    Ok(FirehoseDelivery {
        request_id: raw.request_id,
        timestamp: raw.timestamp,
        records,
    })
}

/// The decoded record payloads of a Firehose delivery request.
pub fn firehose_records(body: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    firehose_delivery(body).map(|d| d.records)
}

#[derive(Serialize)]
struct Response<'a> {
    #[serde(rename = "requestId")]
    request_id: &'a str,
    timestamp: i64,
    #[serde(rename = "errorMessage", skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
}

/// The JSON body Firehose expects in answer: `requestId` echoed, the
/// answer's time (`now_ms`), and `errorMessage` on failure.
pub fn firehose_response(request_id: &str, now_ms: i64, error: Option<&str>) -> String {
    let r = Response {
        request_id,
        timestamp: now_ms,
        error_message: error,
    };
    // A struct of strings and a number always serialises.
    serde_json::to_string(&r).unwrap_or_default()
}

/// A Pub/Sub push request's message, its data decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubMessage {
    /// For a Cloud Logging sink: one `LogEntry`, to be decoded as a
    /// document.
    pub data: Vec<u8>,
    pub message_id: Option<String>,
    pub publish_time: Option<String>,
    pub subscription: Option<String>,
}

#[derive(Deserialize)]
struct RawPush {
    message: RawMessage,
    subscription: Option<String>,
}

/// Pub/Sub writes the id and the time twice, in both cases (`messageId`
/// and `message_id`), so each spelling is a field of its own.
#[derive(Deserialize)]
struct RawMessage {
    data: Option<String>,
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    #[serde(rename = "message_id")]
    message_id_snake: Option<String>,
    #[serde(rename = "publishTime")]
    publish_time: Option<String>,
    #[serde(rename = "publish_time")]
    publish_time_snake: Option<String>,
}

/// Reads a Pub/Sub push request's body
/// (`{"message": {"data": base64, "messageId", "publishTime"}, "subscription"}`).
pub fn pubsub_push(body: &[u8]) -> Result<PubSubMessage, Error> {
    let raw: RawPush = serde_json::from_slice(body).map_err(|source| Error::Shape {
        what: "Pub/Sub push",
        source,
    })?;
    let data = raw.message.data.ok_or(Error::NoMessageData)?;
    Ok(PubSubMessage {
        data: base64_decode(&data).map_err(Error::MessageData)?,
        message_id: raw.message.message_id.or(raw.message.message_id_snake),
        publish_time: raw.message.publish_time.or(raw.message.publish_time_snake),
        subscription: raw.subscription,
    })
}

/// What a Pub/Sub push endpoint was sent: a push request (`Some`, its
/// message), or, from a subscription without the wrapper
/// (`--push-no-wrapper`), the message's data itself (`None`: the body is
/// the document). A JSON object whose `message` is an object is a push
/// request (a `LogEntry` has no `message` key); anything else must be a
/// JSON document, or gzip'd.
pub fn pubsub_delivery(body: &[u8]) -> Result<Option<PubSubMessage>, Error> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        message: Option<&'a serde_json::value::RawValue>,
    }
    if super::is_gzip(body) {
        return Ok(None);
    }
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    if start.map(|i| body[i]) == Some(b'{') {
        let probe: Probe = serde_json::from_slice(body).map_err(Error::Unwrapped)?;
        if probe.message.is_some_and(|m| m.get().starts_with('{')) {
            return pubsub_push(body).map(Some);
        }
        return Ok(None);
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(Error::Unwrapped)?;
    Ok(None)
}

/// The decoded data of a Pub/Sub push request's message.
pub fn pubsub_message(body: &[u8]) -> Result<Vec<u8>, Error> {
    pubsub_push(body).map(|m| m.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firehose_deliveries() {
        let body = br#"{"requestId":"a","timestamp":5,"records":[{"data":"eyJhIjoxfQ=="},{"data":"e30"}]}"#;
        let d = firehose_delivery(body).unwrap();
        assert_eq!((d.request_id.as_str(), d.timestamp), ("a", Some(5)));
        assert_eq!(d.records, vec![br#"{"a":1}"#.to_vec(), b"{}".to_vec()]);
        let bad = br#"{"requestId":"a","records":[{"data":"e30="},{"data":"%%"}]}"#;
        assert!(matches!(
            firehose_records(bad),
            Err(Error::RecordData { index: 1, .. })
        ));
        assert!(matches!(
            firehose_records(b"{\"records\":1}"),
            Err(Error::Shape { .. })
        ));
        assert_eq!(
            firehose_response("a", 7, Some("bad \"x\"")),
            r#"{"requestId":"a","timestamp":7,"errorMessage":"bad \"x\""}"#
        );
    }

    #[test]
    fn pubsub_pushes() {
        let body = br#"{"message":{"data":"e30=","messageId":"1","publishTime":"2024-01-01T00:00:00Z"},"subscription":"projects/p/subscriptions/s"}"#;
        let m = pubsub_push(body).unwrap();
        assert_eq!(m.data, b"{}");
        assert_eq!(m.message_id.as_deref(), Some("1"));
        assert_eq!(
            m.subscription.as_deref(),
            Some("projects/p/subscriptions/s")
        );
        // As Pub/Sub sends it: the id and the time in both spellings.
        let both = br#"{"message":{"attributes":{"k":"v"},"data":"e30=","messageId":"7","message_id":"7","publishTime":"2024-01-01T00:00:00Z","publish_time":"2024-01-01T00:00:00Z"},"subscription":"s"}"#;
        let m = pubsub_push(both).unwrap();
        assert_eq!(m.message_id.as_deref(), Some("7"));
        assert_eq!(m.publish_time.as_deref(), Some("2024-01-01T00:00:00Z"));
        let snake = br#"{"message":{"data":"e30=","message_id":"8"}}"#;
        assert_eq!(pubsub_push(snake).unwrap().message_id.as_deref(), Some("8"));
        assert!(matches!(
            pubsub_message(br#"{"message":{}}"#),
            Err(Error::NoMessageData)
        ));
        assert!(matches!(
            pubsub_message(br#"{"message":{"data":"!"}}"#),
            Err(Error::MessageData(_))
        ));
        assert!(matches!(pubsub_message(b"[]"), Err(Error::Shape { .. })));
    }

    #[test]
    fn pubsub_deliveries_with_and_without_the_wrapper() {
        let wrapped = br#" {"message":{"data":"e30=","attributes":{"a":"b"},"messageId":"9"},"subscription":"s"}"#;
        let m = pubsub_delivery(wrapped).unwrap().unwrap();
        assert_eq!(
            (m.data.as_slice(), m.message_id.as_deref()),
            (&b"{}"[..], Some("9"))
        );
        // A LogEntry as the body: no wrapper.
        let entry = br#"{"insertId":"x","protoPayload":{"methodName":"io.k8s.core.v1.pods.get"}}"#;
        assert!(pubsub_delivery(entry).unwrap().is_none());
        // `message` that is not an object is some document's own key.
        assert!(pubsub_delivery(br#"{"message":"hello"}"#)
            .unwrap()
            .is_none());
        assert!(pubsub_delivery(br#"[{"insertId":"x"}]"#).unwrap().is_none());
        assert!(pubsub_delivery(b"\x1f\x8b\x08 gzip'd").unwrap().is_none());
        // The wrapper, broken: its own errors.
        assert!(matches!(
            pubsub_delivery(br#"{"message":{"data":"%%"}}"#),
            Err(Error::MessageData(_))
        ));
        assert!(matches!(
            pubsub_delivery(br#"{"message":{"attributes":{}}}"#),
            Err(Error::NoMessageData)
        ));
        for bad in [&b"hello"[..], b"{\"message\":", b"", b"  "] {
            assert!(
                matches!(pubsub_delivery(bad), Err(Error::Unwrapped(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
