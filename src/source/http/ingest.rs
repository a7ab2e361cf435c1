//! What every posting path does with a request: its body read within
//! `--max-body-bytes` and the byte budget, inflated when it comes with
//! `Content-Encoding: gzip` (within the same limits), and, once the path
//! has turned it into documents, queued for the engine and answered when
//! the engine says their alerts are out. A path only says how its body
//! becomes documents and how its answers look.

use std::io::Read;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use hyper::{Request, StatusCode};
use tokio::sync::oneshot;

use super::queue::{Outcome, Pending};
use super::Shared;

/// How long a client may take to send its whole body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes inflated at a time.
const INFLATE_CHUNK: usize = 64 << 10;

/// Why a request was not taken: its status code and a reason for the
/// sender. A `429` also says when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: StatusCode,
    pub reason: String,
}

impl Failure {
    pub fn new(code: StatusCode, reason: impl Into<String>) -> Self {
        Failure {
            code,
            reason: reason.into(),
        }
    }

    pub fn too_large(max: u64) -> Self {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {max} bytes (--max-body-bytes)"),
        )
    }

    pub fn full() -> Self {
        Failure::new(StatusCode::TOO_MANY_REQUESTS, "the queue is full; retry")
    }
}

/// Bytes of the budget a request holds, given back when it is dropped
/// (unless handed to the queue with the request).
pub struct Held<'s> {
    s: &'s Shared,
    n: u64,
}

impl<'s> Held<'s> {
    fn new(s: &'s Shared) -> Self {
        Held { s, n: 0 }
    }

    /// Holds `n` bytes in all: more taken from the budget (a full budget
    /// is a `429`), or the surplus given back.
    pub fn resize(&mut self, n: u64) -> Result<(), Failure> {
        if n > self.n {
            if !self.s.budget.reserve(n - self.n) {
                return Err(Failure::full());
            }
        } else {
            self.s.release(self.n - n);
        }
        self.n = n;
        self.s
            .counters
            .queue_bytes
            .store(self.s.budget.used(), Relaxed);
        Ok(())
    }

    /// The bytes, now the queued request's to give back.
    fn hand_over(mut self) -> u64 {
        std::mem::take(&mut self.n)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.n > 0 {
            self.s.release(self.n);
        }
    }
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

fn encoding(req: &Request<Incoming>) -> Result<Encoding, Failure> {
    let Some(v) = req.headers().get(CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let v = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match v.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        _ => Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {v} is not supported (gzip is)"),
        )),
    }
}

/// The body, read within the size limit and the byte budget, and
/// inflated if it is gzip'd; with the budget it holds.
pub async fn body(req: Request<Incoming>, s: &Shared) -> Result<(Vec<u8>, Held<'_>), Failure> {
    let max = s.max_body_bytes;
    let encoding = encoding(&req)?;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(Failure::too_large(max));
    }
    // Reserve what the body declares up front; a body without a length
    // reserves as it arrives.
    let mut held = Held::new(s);
    if let Err(full) = held.resize(declared.unwrap_or(0)) {
        // Read the body before answering, so that the sender, still
        // writing it, gets the `429` and not a connection cut under it.
        drain(req.into_body(), max).await;
        return Err(full);
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, read(req.into_body(), &mut held)).await {
        Ok(read) => read?,
        Err(_) => {
            return Err(Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            ))
        }
    };
    s.counters.bytes.fetch_add(body.len() as u64, Relaxed);
    let body = match encoding {
        Encoding::Identity => body,
        Encoding::Gzip => inflate(&body, max, &mut held)?,
    };
    Ok((body, held))
}

/// Reads and drops a body of at most `max` bytes (its length is known to
/// be within it), in the time a body may take.
async fn drain(mut body: Incoming, max: u64) {
    let mut n = 0u64;
    let _ = tokio::time::timeout(BODY_TIMEOUT, async {
        while let Some(Ok(frame)) = body.frame().await {
            n += frame.data_ref().map_or(0, |d| d.len() as u64);
            if n > max {
                break;
            }
        }
    })
    .await;
}

async fn read(mut body: Incoming, held: &mut Held<'_>) -> Result<Vec<u8>, Failure> {
    let max = held.s.max_body_bytes;
    let mut out = Vec::with_capacity(held.n as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let len = (out.len() + data.len()) as u64;
        if len > max {
            return Err(Failure::too_large(max));
        }
        if len > held.n {
            held.resize(len)?;
        }
        out.extend_from_slice(data);
    }
    Ok(out)
}

/// Inflates a gzip'd body to at most `max` bytes, holding the budget for
/// both the compressed and the inflated bytes as it goes.
fn inflate(gz: &[u8], max: u64, held: &mut Held<'_>) -> Result<Vec<u8>, Failure> {
    let mut decoder = flate2::read::MultiGzDecoder::new(gz);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; INFLATE_CHUNK];
    loop {
        let n = decoder.read(&mut chunk).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid gzip (Content-Encoding: gzip): {e}"),
            )
        })?;
        if n == 0 {
            break;
        }
        if (out.len() + n) as u64 > max {
            return Err(Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body inflates to over {max} bytes (--max-body-bytes)"),
            ));
        }
        held.resize((gz.len() + out.len() + n) as u64)?;
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// Queues `docs` (each one message of documents) for the engine and waits
/// for their evaluation: the events they held, once their alerts are out.
pub async fn submit(docs: Vec<Vec<u8>>, mut held: Held<'_>, s: &Shared) -> Result<u64, Failure> {
    let size: usize = docs.iter().map(Vec::len).sum();
    held.resize(size as u64)?;
    if docs.is_empty() {
        return Ok(0);
    }
    let (tx, rx) = oneshot::channel();
    s.queue.push(Pending {
        docs,
        respond: tx,
        reserved: held.hand_over(),
    });
    match rx.await {
        Ok(Outcome::Done { events }) => Ok(events),
        Ok(Outcome::Unavailable) | Err(_) => Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down; send again",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use crate::source::http::queue::{Budget, Queue};

    fn shared(budget: u64, max: u64) -> Shared {
        Shared {
            queue: Queue::default(),
            budget: Budget::new(budget),
            tls: None,
            client_certs: false,
            tokens: None,
            access_keys: None,
            max_body_bytes: max,
            counters: Default::default(),
            stopping: Default::default(),
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflation_stays_within_the_limit_and_the_budget() {
        let text = vec![b'x'; 300_000];
        let gz = gzip(&text);
        let s = shared(1 << 20, 1 << 20);
        let mut held = Held::new(&s);
        assert_eq!(inflate(&gz, 1 << 20, &mut held).unwrap(), text);
        assert_eq!(held.n, (gz.len() + text.len()) as u64);
        assert_eq!(s.budget.used(), held.n);
        drop(held);
        assert_eq!(s.budget.used(), 0, "given back when dropped");

        let mut held = Held::new(&s);
        let e = inflate(&gz, 200_000, &mut held).unwrap_err();
        assert_eq!(e.code, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.reason.contains("inflates to over 200000"), "{}", e.reason);

        let small = shared(100_000, 1 << 20);
        let mut held = Held::new(&small);
        assert_eq!(
            inflate(&gz, 1 << 20, &mut held).unwrap_err().code,
            StatusCode::TOO_MANY_REQUESTS
        );

        let mut held = Held::new(&s);
        let e = inflate(b"\x1f\x8bnot gzip", 1 << 20, &mut held).unwrap_err();
        assert_eq!(e.code, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_held_budget_resizes_both_ways() {
        let s = shared(100, 100);
        let mut held = Held::new(&s);
        held.resize(80).unwrap();
        assert_eq!(
            held.resize(101).unwrap_err().code,
            StatusCode::TOO_MANY_REQUESTS
        );
        held.resize(30).unwrap();
        assert_eq!(s.budget.used(), 30);
        assert_eq!(held.hand_over(), 30);
        assert_eq!(
            s.budget.used(),
            30,
            "the queue gives it back, not the guard"
        );
    }
}
