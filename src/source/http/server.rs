//! The receiver's listener, on the network runtime (hyper, HTTP/1.1, TLS by
//! tokio-rustls): connections, routes and plain-text answers, each answer
//! counted. The audit paths' bodies must be an audit `Event` or
//! `EventList`; the cloud push paths are [`super::push`]; who may post
//! where is [`super::auth`]; reading, queueing and acknowledging is
//! [`super::ingest`], shared by every path.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::IgnoredAny;

use super::{auth, ingest, push, Shared};

/// Paths that take audit events.
pub const AUDIT_PATHS: [&str; 2] = ["/k8s-audit", "/audit"];
/// Firehose's HTTP endpoint delivery.
pub const FIREHOSE_PATH: &str = "/firehose";
/// A Pub/Sub push subscription's deliveries.
pub const PUBSUB_PATH: &str = "/pubsub";
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// What a full queue asks the sender to wait, in seconds.
const RETRY_AFTER_SECONDS: &str = "1";

pub type Answer = Response<Full<Bytes>>;

/// A plain-text answer.
pub fn answer(code: StatusCode, text: impl Into<String>) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(text.into() + "\n")));
    *r.status_mut() = code;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    with_retry_after(r)
}

/// A `429` says when to try again.
pub fn with_retry_after(mut r: Answer) -> Answer {
    if r.status() == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    }
    r
}

/// The paths that take posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Audit,
    Firehose,
    PubSub,
}

fn route_of(path: &str) -> Option<Route> {
    match path {
        p if AUDIT_PATHS.contains(&p) => Some(Route::Audit),
        FIREHOSE_PATH => Some(Route::Firehose),
        PUBSUB_PATH => Some(Route::PubSub),
        _ => None,
    }
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
    let known = route_of(&path).is_some() || path == "/healthz" || path == "/readyz";
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
    match (req.method(), path, route_of(path)) {
        (&Method::GET, "/healthz", _) => (answer(StatusCode::OK, "ok"), 0),
        (&Method::GET, "/readyz", _) if s.stopping.load(Relaxed) => {
            (answer(StatusCode::SERVICE_UNAVAILABLE, "shutting down"), 0)
        }
        (&Method::GET, "/readyz", _) => (answer(StatusCode::OK, "ready"), 0),
        (&Method::POST, _, Some(Route::Audit)) => audit(req, verified, s).await,
        (&Method::POST, _, Some(Route::Firehose)) => push::firehose(req, s).await,
        (&Method::POST, _, Some(Route::PubSub)) => push::pubsub(req, s).await,
        (_, _, Some(r)) => (
            answer(
                StatusCode::METHOD_NOT_ALLOWED,
                match r {
                    Route::Audit => "POST an audit EventList or Event",
                    Route::Firehose => "POST a Firehose HTTP endpoint delivery",
                    Route::PubSub => "POST a Pub/Sub push message",
                },
            ),
            0,
        ),
        _ => (
            answer(
                StatusCode::NOT_FOUND,
                "not found; POST audit events to /k8s-audit or /audit, Firehose deliveries to /firehose, Pub/Sub pushes to /pubsub",
            ),
            0,
        ),
    }
}

/// The audit paths: the body, checked to be an `EventList` or an `Event`,
/// is one message.
async fn audit(req: Request<Incoming>, verified: bool, s: &Shared) -> (Answer, u64) {
    let taken = async {
        auth::audit(&req, verified, s)?;
        let (body, held) = ingest::body(req, s).await?;
        check(&body).map_err(|why| ingest::Failure::new(StatusCode::BAD_REQUEST, why))?;
        ingest::submit(vec![body], held, s).await
    };
    match taken.await {
        Ok(events) => (answer(StatusCode::OK, "ok"), events),
        Err(f) => (answer(f.code, f.reason), 0),
    }
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
}
