//! The paths that clouds push to:
//!
//! - `POST /firehose`, Kinesis Data Firehose's HTTP endpoint delivery
//!   (EKS audit logs through a CloudWatch Logs subscription): the access
//!   key checked, the body (gzip'd when the stream's content encoding is
//!   on) read as `{"requestId", "timestamp", "records": [{"data"}]}`, each
//!   record's base64 decoded into one document (typically a gzip'd
//!   CloudWatch Logs payload), and every answer in Firehose's JSON
//!   (`requestId`, `timestamp`, `errorMessage` when it failed), which
//!   Firehose requires; it retries anything but `200`.
//! - `POST /pubsub`, a Pub/Sub push subscription (GKE audit logs through a
//!   Cloud Logging sink): a push request's `message.data`, or the body
//!   itself from a subscription without the wrapper, is one document (a
//!   `LogEntry`). Pub/Sub acknowledges on `200` and slows down on `429`.
//!
//! Both then go the way of every posting path ([`super::ingest`]): queued,
//! evaluated, answered `200` once their alerts are out.

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use super::ingest::{self, Failure};
use super::server::{answer, with_retry_after, Answer};
use super::{auth, Shared};
use crate::event::envelope::{firehose_delivery, firehose_response, pubsub_delivery};

/// The header Firehose names its request in; the answer echoes it.
const FIREHOSE_REQUEST_ID: HeaderName = HeaderName::from_static("x-amz-firehose-request-id");

/// `POST /firehose`: the answer, and the events the delivery held.
pub async fn firehose(req: Request<Incoming>, s: &Shared) -> (Answer, u64) {
    let mut request_id = req
        .headers()
        .get(FIREHOSE_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match firehose_delivered(req, s, &mut request_id).await {
        Ok(events) => (firehose_answer(StatusCode::OK, request_id, None), events),
        Err(f) => (firehose_answer(f.code, request_id, Some(&f.reason)), 0),
    }
}

/// Takes the delivery in; learns its request id from the body when the
/// header did not give it.
async fn firehose_delivered(
    req: Request<Incoming>,
    s: &Shared,
    request_id: &mut Option<String>,
) -> Result<u64, Failure> {
    auth::firehose(&req, s)?;
    let (body, held) = ingest::body(req, s).await?;
    let delivery = firehose_delivery(&body)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    drop(body);
    request_id.get_or_insert(delivery.request_id);
    ingest::submit(delivery.records, held, s).await
}

/// Firehose's answer: JSON, with the request id echoed and the time.
fn firehose_answer(code: StatusCode, request_id: Option<String>, error: Option<&str>) -> Answer {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let body = firehose_response(request_id.as_deref().unwrap_or(""), now_ms, error);
    let mut r = Response::new(http_body_util::Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_retry_after(r)
}

/// `POST /pubsub`: the answer, and the events the message held.
pub async fn pubsub(req: Request<Incoming>, s: &Shared) -> (Answer, u64) {
    match pubsub_delivered(req, s).await {
        Ok(events) => (answer(StatusCode::OK, "ok"), events),
        Err(f) => (answer(f.code, f.reason), 0),
    }
}

async fn pubsub_delivered(req: Request<Incoming>, s: &Shared) -> Result<u64, Failure> {
    auth::pubsub(&req, s)?;
    let (body, held) = ingest::body(req, s).await?;
    let document = match pubsub_delivery(&body) {
        Ok(Some(message)) => message.data,
        Ok(None) => body,
        Err(e) => return Err(Failure::new(StatusCode::BAD_REQUEST, e.to_string())),
    };
    ingest::submit(vec![document], held, s).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text(a: Answer) -> String {
        let bytes = a.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn firehose_answers_are_its_json() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let a = firehose_answer(
            StatusCode::TOO_MANY_REQUESTS,
            Some("r-1".into()),
            Some("full"),
        );
        assert_eq!(a.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(a.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(a.headers()[hyper::header::RETRY_AFTER], "1");
        let v: serde_json::Value = serde_json::from_str(&rt.block_on(text(a))).unwrap();
        assert_eq!(v["requestId"], "r-1");
        assert_eq!(v["errorMessage"], "full");
        assert!(v["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
        let ok = firehose_answer(StatusCode::OK, None, None);
        assert!(!ok.headers().contains_key(hyper::header::RETRY_AFTER));
        let v: serde_json::Value = serde_json::from_str(&rt.block_on(text(ok))).unwrap();
        assert_eq!(v["requestId"], "");
        assert!(v.get("errorMessage").is_none());
    }
}
