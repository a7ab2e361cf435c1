//! The HTTP(S) receiver (`--input http`): what the API server's audit
//! webhook backend (`--audit-webhook-config-file`) and push pipelines post.
//! `POST /k8s-audit` (Falco's path) and `POST /audit` take an `EventList` or
//! an `Event`; `/healthz` and `/readyz` answer on the same listener.
//!
//! A request is answered `200` only after its events were evaluated and
//! their alerts handed to the flushed outputs (the driver's
//! acknowledgement), so a sender that retries after a crash loses nothing.
//! Memory is bounded by a budget of bytes ([`queue::Budget`]): a full
//! budget answers `429` with `Retry-After`, a body over `--max-body-bytes`
//! `413` (refused on its declared length, or as soon as it passes the
//! limit), a body that is not an audit Event or EventList `400` with the
//! reason, and missing or wrong credentials `401`/`403`.
//!
//! The listener runs on the network runtime; the engine pulls requests from
//! a queue on its own thread, as one stream: several API servers feed one
//! cluster's windows, and `--lateness` (40s by default on this input)
//! absorbs the webhook backend's batching delay between them.

pub mod metrics;
pub mod queue;
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

use super::{Ack, Batch, Body, Next, Source, StreamId};

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
    /// Bearer tokens the audit paths accept (one per line of the file).
    pub tokens: Option<Vec<String>>,
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
    tokens: Option<Vec<String>>,
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

/// The receiver as a [`Source`]: each request is a batch, acknowledged by
/// answering it.
pub struct HttpSource {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Requests handed to the driver and not yet acknowledged, in order.
    inflight: VecDeque<(i64, Pending)>,
    next_id: i64,
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
        tracing::info!("http input: listening on {scheme}://{addr}/k8s-audit");
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

impl Source for HttpSource {
    fn next(&mut self, before_wait: &mut dyn FnMut() -> io::Result<()>) -> io::Result<Next<'_>> {
        if self.stop.load(Relaxed) {
            self.shared.stopping.store(true, Relaxed);
            return Ok(Next::Stop);
        }
        let pending = match self.shared.queue.pop(Duration::ZERO) {
            Some(p) => p,
            None => {
                before_wait()?;
                match self.shared.queue.pop(POLL) {
                    Some(p) => p,
                    None => return Ok(Next::Idle),
                }
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.inflight.push_back((id, pending));
        let body = self.inflight.back().map_or(&[][..], |(_, p)| &p.body[..]);
        Ok(Next::Batch(Batch {
            stream: StreamId(0),
            body: Body::Message(body),
            ack: Some(id),
        }))
    }

    fn ack(&mut self, ack: Ack) -> io::Result<()> {
        while let Some((id, p)) = self.inflight.pop_front() {
            if id > ack.position {
                self.inflight.push_front((id, p));
                break;
            }
            self.shared.release(p.reserved);
            let events = if id == ack.position { ack.events } else { 0 };
            let _ = p.respond.send(Outcome::Done { events });
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
            .chain(self.inflight.drain(..).map(|(_, p)| p))
        {
            self.shared.release(p.reserved);
            let _ = p.respond.send(Outcome::Unavailable);
        }
        Ok(())
    }
}
