//! The receiver's listener, on the network runtime (hyper, HTTP/1.1, TLS by
//! tokio-rustls): routes, authentication, the body read within its limits,
//! checked to be an audit `Event` or `EventList`, queued for the engine,
//! and answered once the engine says its alerts are out.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::IgnoredAny;
use tokio::sync::oneshot;

use super::queue::{Outcome, Pending};
use super::Shared;

/// Paths that take audit events.
pub const AUDIT_PATHS: [&str; 2] = ["/k8s-audit", "/audit"];
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send its whole body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// What a full queue asks the sender to wait, in seconds.
const RETRY_AFTER_SECONDS: &str = "1";

type Answer = Response<Full<Bytes>>;

fn answer(code: StatusCode, text: impl Into<String>) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(text.into() + "\n")));
    *r.status_mut() = code;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Accepts connections until the process ends.
pub async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let acceptor = shared.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("http input: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve(TokioIo::new(tcp), peer, false, shared).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await;
                    match handshake {
                        Ok(Ok(tls)) => {
                            let verified = tls.get_ref().1.peer_certificates().is_some();
                            serve(TokioIo::new(tls), peer, verified, shared).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "http input: TLS handshake failed: {e}")
                        }
                        Err(_) => tracing::debug!(%peer, "http input: TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve<I>(io: I, peer: SocketAddr, verified: bool, shared: Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(req, peer, verified, &shared).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, "http input: connection ended: {e}");
    }
}

async fn handle(req: Request<Incoming>, peer: SocketAddr, verified: bool, s: &Shared) -> Answer {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let (answer, events) = route(req, verified, s).await;
    let known = AUDIT_PATHS.contains(&path.as_str()) || path == "/healthz" || path == "/readyz";
    s.counters.answered(
        if known { &path } else { "other" },
        answer.status().as_u16(),
        &peer.ip().to_string(),
        events,
        started.elapsed().as_secs_f64(),
    );
    answer
}

/// The answer, and the events it carried when it was evaluated.
async fn route(req: Request<Incoming>, verified: bool, s: &Shared) -> (Answer, u64) {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/healthz") => (answer(StatusCode::OK, "ok"), 0),
        (&Method::GET, "/readyz") if s.stopping.load(Relaxed) => {
            (answer(StatusCode::SERVICE_UNAVAILABLE, "shutting down"), 0)
        }
        (&Method::GET, "/readyz") => (answer(StatusCode::OK, "ready"), 0),
        (&Method::POST, p) if AUDIT_PATHS.contains(&p) => match refusal(&req, verified, s) {
            Some(refusal) => (refusal, 0),
            None => ingest(req, s).await,
        },
        (_, p) if AUDIT_PATHS.contains(&p) => (
            answer(
                StatusCode::METHOD_NOT_ALLOWED,
                "POST an audit EventList or Event",
            ),
            0,
        ),
        _ => (
            answer(
                StatusCode::NOT_FOUND,
                "not found; POST audit events to /k8s-audit or /audit",
            ),
            0,
        ),
    }
}

/// Why the request may not post, if it may not: the client certificate
/// and the bearer token, as configured.
fn refusal(req: &Request<Incoming>, verified: bool, s: &Shared) -> Option<Answer> {
    if s.client_certs && !verified {
        return Some(answer(
            StatusCode::UNAUTHORIZED,
            "a client certificate is required",
        ));
    }
    let tokens = s.tokens.as_ref()?;
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return Some(answer(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
        ));
    };
    let known = tokens
        .iter()
        .any(|t| constant_time_eq(t.as_bytes(), given.trim().as_bytes()));
    (!known).then(|| answer(StatusCode::FORBIDDEN, "the bearer token is not accepted"))
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads, checks and queues the body; waits for its evaluation.
async fn ingest(req: Request<Incoming>, s: &Shared) -> (Answer, u64) {
    let max = s.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return (too_large(max), 0);
    }
    // Reserve what the body declares up front; a body without a length
    // reserves as it arrives.
    let mut reserved = 0u64;
    if let Some(n) = declared {
        if !s.budget.reserve(n) {
            return (full(), 0);
        }
        reserved = n;
    }
    let read =
        tokio::time::timeout(BODY_TIMEOUT, read_body(req.into_body(), s, &mut reserved)).await;
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(refusal)) => {
            s.release(reserved);
            return (*refusal, 0);
        }
        Err(_) => {
            s.release(reserved);
            return (
                answer(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive in time",
                ),
                0,
            );
        }
    };
    s.counters.bytes.fetch_add(body.len() as u64, Relaxed);
    if let Err(reason) = check(&body) {
        s.release(reserved);
        return (answer(StatusCode::BAD_REQUEST, reason), 0);
    }
    let (tx, rx) = oneshot::channel();
    s.counters.queue_bytes.store(s.budget.used(), Relaxed);
    s.queue.push(Pending {
        body,
        respond: tx,
        reserved,
    });
    match rx.await {
        Ok(Outcome::Done { events }) => (answer(StatusCode::OK, "ok"), events),
        Ok(Outcome::Unavailable) | Err(_) => (
            answer(StatusCode::SERVICE_UNAVAILABLE, "shutting down; send again"),
            0,
        ),
    }
}

fn too_large(max: u64) -> Answer {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over {max} bytes (--max-body-bytes)"),
    )
}

fn full() -> Answer {
    let mut a = answer(StatusCode::TOO_MANY_REQUESTS, "the queue is full; retry");
    a.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    a
}

/// The body, within the size limit and the byte budget.
async fn read_body(
    mut body: Incoming,
    s: &Shared,
    reserved: &mut u64,
) -> Result<Vec<u8>, Box<Answer>> {
    let mut out = Vec::with_capacity(*reserved as usize);
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| answer(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let len = (out.len() + data.len()) as u64;
        if len > s.max_body_bytes {
            return Err(Box::new(too_large(s.max_body_bytes)));
        }
        if len > *reserved {
            if !s.budget.reserve(len - *reserved) {
                return Err(Box::new(full()));
            }
            *reserved = len;
        }
        out.extend_from_slice(data);
    }
    Ok(out)
}

/// The body must be an audit `EventList` or `Event` in valid JSON; nothing
/// of a body that is not is evaluated.
pub fn check(body: &[u8]) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    #[allow(non_snake_case)]
    struct Shape {
        kind: Option<String>,
        items: Option<Vec<IgnoredAny>>,
        auditID: Option<IgnoredAny>,
    }
    let shape: Shape =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON object: {e}"))?;
    match (shape.kind.as_deref(), &shape.items, &shape.auditID) {
        (Some("EventList"), Some(_), _) => Ok(()),
        (Some("EventList"), None, _) => Err("an EventList without items".into()),
        (Some("Event"), _, _) | (None, None, Some(_)) => Ok(()),
        (None, Some(_), _) => Ok(()),
        (Some(other), _, _) => Err(format!("kind {other} is not an audit Event or EventList")),
        (None, None, None) => {
            Err("not an audit Event or EventList (no kind, items or auditID)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_event_lists_and_events_pass() {
        assert!(
            check(br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}"#).is_ok()
        );
        assert!(check(br#"{"kind":"Event","auditID":"1"}"#).is_ok());
        assert!(check(br#"{"auditID":"1","verb":"get"}"#).is_ok());
        assert!(check(br#"{"items":[{"auditID":"1"}]}"#).is_ok());
        for (body, why) in [
            (&b"garbage"[..], "not a JSON object"),
            (br#"{"kind":"EventList","items":[1,"#, "not a JSON object"),
            (br#"{"kind":"Pod"}"#, "kind Pod"),
            (br#"{"kind":"EventList"}"#, "without items"),
            (br#"{"hello":1}"#, "no kind"),
            (br#"[1,2]"#, "not a JSON object"),
        ] {
            let e = check(body).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
