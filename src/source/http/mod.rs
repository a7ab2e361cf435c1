//! The HTTP(S) receiver (`--input http`): what the API server's audit
//! webhook backend (`--audit-webhook-config-file`) and the clouds' push
//! pipelines post. `POST /k8s-audit` (Falco's path) and `POST /audit` take
//! an `EventList` or an `Event`; `POST /firehose` a Kinesis Data Firehose
//! HTTP endpoint delivery and `POST /pubsub` a Pub/Sub push message
//! ([`push`]); `/healthz` and `/readyz` answer on the same listener.
//!
//! A request is answered `200` only after its events were evaluated and
//! their alerts handed to the flushed outputs (the driver's
//! acknowledgement), so a sender that retries after a crash loses nothing.
//! Memory is bounded by a budget of bytes ([`queue::Budget`]): a full
//! budget answers `429` with `Retry-After` (once the body is read and
//! dropped, so that a sender still writing it gets the answer and not a
//! broken connection), a body over `--max-body-bytes`
//! (as sent or inflated) `413`, a body that cannot be decoded `400` with
//! the reason, and missing or wrong credentials `401`/`403` ([`auth`]).
//!
//! The listener runs on the network runtime; the engine pulls requests from
//! a queue on its own thread, as one stream: several API servers feed one
//! cluster's windows, and `--lateness` (40s by default on this input)
//! absorbs the webhook backend's batching delay between them. A request
//! is one batch per message it holds (a Firehose delivery has one per
//! record), and is answered once its last batch is acknowledged.

pub mod auth;
pub mod ingest;
pub mod metrics;
pub mod push;
pub mod queue;
pub mod secrets;
pub mod server;
pub mod tls;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use queue::{Budget, Outcome, Pending, Queue};
use secrets::SecretFile;

use super::{Ack, Batch, BeforeWait, Body, Next, Source, StreamId};

/// How long `next` waits for a request before reporting the stream idle.
const POLL: Duration = Duration::from_millis(250);

/// Settings of the receiver.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Certificate and key (PEM), re-read when they change.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// CA whose client certificates the audit paths require.
    pub client_ca: Option<PathBuf>,
    /// Tokens the audit paths (as bearer tokens) and `/pubsub` accept.
    pub tokens: Option<Arc<SecretFile>>,
    /// Access keys `/firehose` accepts.
    pub access_keys: Option<Arc<SecretFile>>,
    pub max_body_bytes: u64,
    /// Bytes that requests waiting or being evaluated may hold in all.
    pub queue_bytes: u64,
}

/// What the listener and the source share.
pub struct Shared {
    queue: Queue,
    budget: Budget,
    tls: Option<Arc<rustls::ServerConfig>>,
    client_certs: bool,
    tokens: Option<Arc<SecretFile>>,
    access_keys: Option<Arc<SecretFile>>,
    max_body_bytes: u64,
    counters: Arc<metrics::Counters>,
    stopping: AtomicBool,
}

impl Shared {
    fn release(&self, n: u64) {
        self.budget.release(n);
        self.counters.queue_bytes.store(self.budget.used(), Relaxed);
    }
}

/// The receiver as a [`Source`]: each message of a request is a batch;
/// the request is answered once its last one is acknowledged.
pub struct HttpSource {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Requests handed to the driver (the last perhaps only in part) and
    /// not yet answered, in order.
    inflight: VecDeque<Inflight>,
    /// The position of the next batch.
    next_id: i64,
}

/// A request being evaluated.
struct Inflight {
    pending: Pending,
    /// The position of its first message's batch; the others follow.
    first: i64,
    /// Messages handed to the driver.
    handed: usize,
    /// Events its acknowledged batches held.
    events: u64,
}

impl Inflight {
    fn last(&self) -> i64 {
        self.first + self.pending.docs.len() as i64 - 1
    }

    fn whole(&self) -> bool {
        self.handed == self.pending.docs.len()
    }
}

impl HttpSource {
    /// Listens on `settings.listen` (port 0 picks one: see
    /// [`HttpSource::local_addr`]). `stop` (SIGTERM, SIGINT) ends the
    /// stream; requests not yet evaluated are then answered `503`.
    pub fn start(
        settings: &Settings,
        counters: Arc<metrics::Counters>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Self> {
        let tls = match &settings.tls {
            None => None,
            Some((cert, key)) => Some(
                tls::server_config(cert, key, settings.client_ca.as_deref())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            ),
        };
        let shared = Arc::new(Shared {
            queue: Queue::default(),
            budget: Budget::new(settings.queue_bytes),
            tls,
            client_certs: settings.client_ca.is_some(),
            tokens: settings.tokens.clone(),
            access_keys: settings.access_keys.clone(),
            max_body_bytes: settings.max_body_bytes,
            counters,
            stopping: AtomicBool::new(false),
        });
        let handle = crate::runtime::handle()?;
        let std_listener = std::net::TcpListener::bind(settings.listen).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", settings.listen),
            )
        })?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _entered = handle.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        handle.spawn(server::accept(listener, shared.clone()));
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(
            "http input: listening on {scheme}://{addr} (/k8s-audit, /audit, /firehose, /pubsub)"
        );
        Ok(HttpSource {
            shared,
            addr,
            stop,
            inflight: VecDeque::new(),
            next_id: 0,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl HttpSource {
    /// The next message of the request being handed out, if it has one.
    fn next_message(&mut self) -> Option<Next<'_>> {
        let r = self.inflight.back_mut().filter(|r| !r.whole())?;
        let position = r.first + r.handed as i64;
        let body = &r.pending.docs[r.handed][..];
        r.handed += 1;
        Some(Next::Batch(Batch {
            stream: StreamId(0),
            body: Body::Message(body),
            ack: Some(position),
        }))
    }

    /// The next request, waiting at most `POLL` after `before_wait`.
    fn pop(&mut self, before_wait: &mut BeforeWait) -> io::Result<Option<Pending>> {
        if let Some(p) = self.shared.queue.pop(Duration::ZERO) {
            return Ok(Some(p));
        }
        for ack in before_wait()? {
            self.ack(ack)?;
        }
        Ok(self.shared.queue.pop(POLL))
    }
}

impl Source for HttpSource {
    fn next(&mut self, before_wait: &mut BeforeWait) -> io::Result<Next<'_>> {
        // A request begun is handed out whole, even when asked to stop.
        if self.inflight.back().is_some_and(|r| !r.whole()) {
            return Ok(self.next_message().unwrap_or(Next::Idle));
        }
        loop {
            if self.stop.load(Relaxed) {
                self.shared.stopping.store(true, Relaxed);
                return Ok(Next::Stop);
            }
            let Some(pending) = self.pop(before_wait)? else {
                return Ok(Next::Idle);
            };
            if pending.docs.is_empty() {
                // Nothing to evaluate (the handlers do not queue these).
                self.shared.release(pending.reserved);
                let _ = pending.respond.send(Outcome::Done { events: 0 });
                continue;
            }
            let first = self.next_id;
            self.next_id += pending.docs.len() as i64;
            self.inflight.push_back(Inflight {
                pending,
                first,
                handed: 0,
                events: 0,
            });
            return Ok(self.next_message().unwrap_or(Next::Idle));
        }
    }

    fn ack(&mut self, ack: Ack) -> io::Result<()> {
        if let Some(r) = self
            .inflight
            .iter_mut()
            .find(|r| (r.first..=r.last()).contains(&ack.position))
        {
            r.events += ack.events;
        }
        while let Some(r) = self.inflight.front() {
            if r.last() > ack.position || !r.whole() {
                break;
            }
            if let Some(r) = self.inflight.pop_front() {
                self.shared.release(r.pending.reserved);
                let _ = r.pending.respond.send(Outcome::Done { events: r.events });
            }
        }
        Ok(())
    }

    fn live(&self) -> bool {
        true
    }

    fn bytes(&self) -> u64 {
        self.shared.counters.bytes.load(Relaxed)
    }

    fn describe(&self) -> String {
        format!("http {}", self.addr)
    }

    /// Requests not evaluated are answered `503`, so their senders retry
    /// against the next instance.
    fn close(&mut self) -> io::Result<()> {
        self.shared.stopping.store(true, Relaxed);
        let waiting = self.shared.queue.drain();
        for p in waiting
            .into_iter()
            .chain(self.inflight.drain(..).map(|r| r.pending))
        {
            self.shared.release(p.reserved);
            let _ = p.respond.send(Outcome::Unavailable);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn source() -> HttpSource {
        let shared = Arc::new(Shared {
            queue: Queue::default(),
            budget: Budget::new(100),
            tls: None,
            client_certs: false,
            tokens: None,
            access_keys: None,
            max_body_bytes: 100,
            counters: Default::default(),
            stopping: AtomicBool::new(false),
        });
        HttpSource {
            shared,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stop: Arc::new(AtomicBool::new(false)),
            inflight: VecDeque::new(),
            next_id: 0,
        }
    }

    fn queue(s: &HttpSource, docs: &[&str]) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        let reserved = docs.iter().map(|d| d.len() as u64).sum();
        assert!(s.shared.budget.reserve(reserved));
        s.shared.queue.push(Pending {
            docs: docs.iter().map(|d| d.as_bytes().to_vec()).collect(),
            respond: tx,
            reserved,
        });
        rx
    }

    /// The next batch's message and position.
    fn next(s: &mut HttpSource) -> Option<(String, i64)> {
        match s.next(&mut || Ok(Vec::new())).unwrap() {
            Next::Batch(Batch {
                body: Body::Message(m),
                ack: Some(at),
                ..
            }) => Some((String::from_utf8_lossy(m).into_owned(), at)),
            _ => None,
        }
    }

    fn ack(s: &mut HttpSource, position: i64, events: u64) {
        let stream = StreamId(0);
        s.ack(Ack {
            stream,
            position,
            events,
        })
        .unwrap();
    }

    #[test]
    fn a_request_is_answered_once_its_last_message_is_acknowledged() {
        let mut s = source();
        let mut first = queue(&s, &["a", "bb", "ccc"]);
        let mut second = queue(&s, &["d"]);
        assert_eq!(next(&mut s), Some(("a".into(), 0)));
        assert_eq!(next(&mut s), Some(("bb".into(), 1)));
        ack(&mut s, 0, 2);
        ack(&mut s, 1, 0);
        assert!(
            first.try_recv().is_err(),
            "not answered before its last message"
        );
        // Asked to stop in the middle: the request is still handed out whole.
        s.stop.store(true, Relaxed);
        assert_eq!(next(&mut s), Some(("ccc".into(), 2)));
        ack(&mut s, 2, 5);
        assert_eq!(first.try_recv(), Ok(Outcome::Done { events: 7 }));
        assert_eq!(s.shared.budget.used(), 1, "its bytes given back");
        assert!(matches!(
            s.next(&mut || Ok(Vec::new())).unwrap(),
            Next::Stop
        ));
        s.close().unwrap();
        assert_eq!(second.try_recv(), Ok(Outcome::Unavailable));
        assert_eq!(s.shared.budget.used(), 0);
    }
}
