//! Delivery for the HTTP outputs (Alertmanager, `--http-output`): one
//! bounded queue per destination URL, a sender task per destination on the
//! network runtime that posts batches (as many alerts per request as the
//! receiver takes), retries with exponential backoff, and counts what
//! happened. The engine's side (`push`) only takes a short lock and wakes
//! the sender: it never waits on the network.
//!
//! When a queue is full the oldest per-event alert goes first, then the
//! oldest windowed one (a firing or a resolve matters longer); alerts being
//! sent are never dropped. Every drop is counted and logged.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value;
use tokio::sync::Notify;

use super::http::Poster;
use super::metrics::{escape, head};
use crate::runtime;

/// First wait after a failed request; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One alert waiting to be sent.
#[derive(Debug, Clone)]
pub struct Item {
    pub body: Value,
    /// A windowed alert (kept longer than per-event ones when full).
    pub windowed: bool,
    /// The owner's name for the alert, handed back when it is settled.
    pub tag: Option<Arc<str>>,
}

/// What became of a tagged alert at one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Accepted,
    /// A 4xx answer: sending it again would not help.
    Rejected,
    /// Pushed out of a full queue.
    Dropped,
}

/// Called with (destination, tag, outcome) outside the delivery's lock.
pub type OnSettled = Box<dyn Fn(usize, &Arc<str>, Settled) + Send + Sync>;

/// How a destination's requests look.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Up to this many alerts as one JSON array (Alertmanager).
    Array(usize),
    /// One alert per request, the alert itself as the body (Falco's
    /// `http_output`).
    One,
}

/// Counters of one destination, or summed over several.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Alerts the receiver accepted.
    pub sent: u64,
    pub attempts: u64,
    /// Requests that failed (network, timeout, 5xx, 408, 429) and were retried.
    pub failures: u64,
    /// Alerts refused with a 4xx answer (or a redirect).
    pub rejected: u64,
    pub dropped: u64,
    /// Alerts waiting (including those being sent).
    pub queued: u64,
}

impl Stats {
    fn add(mut self, o: Stats) -> Stats {
        self.sent += o.sent;
        self.attempts += o.attempts;
        self.failures += o.failures;
        self.rejected += o.rejected;
        self.dropped += o.dropped;
        self.queued += o.queued;
        self
    }
}

/// One destination's queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) items: VecDeque<Item>,
    /// How many alerts at the front are being sent; they are never dropped.
    pub(crate) inflight: usize,
    pub(crate) stats: Stats,
}

impl Queue {
    /// Appends an alert; when the queue holds `cap` already, first removes
    /// (and returns) the oldest per-event alert not in flight, or failing
    /// that the oldest windowed one not in flight.
    pub(crate) fn push(&mut self, item: Item, cap: usize) -> Option<Item> {
        let mut victim = None;
        if self.items.len() >= cap.max(1) {
            let busy = self.inflight;
            let at = self
                .items
                .iter()
                .skip(busy)
                .position(|i| !i.windowed)
                .map(|p| p + busy)
                .or((busy < self.items.len()).then_some(busy));
            victim = at.and_then(|v| self.items.remove(v));
            if victim.is_some() {
                self.stats.dropped += 1;
            }
        }
        self.items.push_back(item);
        victim
    }
}

struct Shared {
    /// `Alertmanager`, `HTTP output`: for logs.
    name: &'static str,
    urls: Vec<Url>,
    queues: Mutex<Vec<Queue>>,
    wake: Vec<Notify>,
    cap: usize,
    shape: Shape,
    poster: Poster,
    on_settled: Option<OnSettled>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Queue>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn settle(&self, dest: usize, items: &[Item], how: Settled) {
        if let Some(f) = &self.on_settled {
            for tag in items.iter().filter_map(|i| i.tag.as_ref()) {
                f(dest, tag, how);
            }
        }
    }
}

/// The queues and senders of one output. Clones share them.
#[derive(Clone)]
pub struct Delivery {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("name", &self.shared.name)
            .field("urls", &self.shared.urls)
            .finish()
    }
}

/// What a [`Delivery`] is made of.
pub struct Options {
    pub name: &'static str,
    pub urls: Vec<Url>,
    pub queue_cap: usize,
    pub shape: Shape,
    pub poster: Poster,
    pub on_settled: Option<OnSettled>,
}

impl Delivery {
    /// Starts a sender per URL on the network runtime.
    pub fn start(o: Options) -> std::io::Result<Self> {
        let rt = runtime::handle()?;
        let n = o.urls.len();
        let shared = Arc::new(Shared {
            name: o.name,
            urls: o.urls,
            queues: Mutex::new((0..n).map(|_| Queue::default()).collect()),
            wake: (0..n).map(|_| Notify::new()).collect(),
            cap: o.queue_cap,
            shape: o.shape,
            poster: o.poster,
            on_settled: o.on_settled,
        });
        for dest in 0..n {
            rt.spawn(sender(shared.clone(), dest));
        }
        Ok(Delivery { shared })
    }

    pub fn destinations(&self) -> usize {
        self.shared.urls.len()
    }

    /// Queues an alert for every destination.
    pub fn push_all(&self, item: &Item) {
        for dest in 0..self.destinations() {
            self.push(dest, item.clone());
        }
    }

    /// Queues an alert for one destination.
    pub fn push(&self, dest: usize, item: Item) {
        let s = &self.shared;
        let (victim, dropped) = {
            let mut queues = s.lock();
            let Some(q) = queues.get_mut(dest) else {
                return;
            };
            (q.push(item, s.cap), q.stats.dropped)
        };
        if let Some(v) = victim {
            if dropped.is_power_of_two() {
                tracing::warn!(url = %s.urls[dest], dropped, "{} queue full: oldest alerts dropped", s.name);
            }
            s.settle(dest, std::slice::from_ref(&v), Settled::Dropped);
        }
        s.wake[dest].notify_one();
    }

    /// Counters summed over the destinations.
    pub fn stats(&self) -> Stats {
        self.stats_by_url()
            .into_iter()
            .fold(Stats::default(), |a, (_, s)| a.add(s))
    }

    /// Counters per destination URL.
    pub fn stats_by_url(&self) -> Vec<(String, Stats)> {
        let queues = self.shared.lock();
        self.shared
            .urls
            .iter()
            .zip(queues.iter())
            .map(|(u, q)| {
                let mut s = q.stats;
                s.queued = q.items.len() as u64;
                (u.to_string(), s)
            })
            .collect()
    }

    /// Whether every queue is empty and nothing is being sent.
    pub fn idle(&self) -> bool {
        self.shared
            .lock()
            .iter()
            .all(|q| q.items.is_empty() && q.inflight == 0)
    }

    /// Waits until every queued alert is delivered (or refused), or until
    /// `deadline`.
    pub fn drain_until(&self, deadline: Instant) -> bool {
        loop {
            if self.idle() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `{prefix}_*` metrics: summed when `by_url` is false, else one
    /// series per destination with a `url` label.
    pub fn render(&self, o: &mut String, prefix: &str, by_url: bool) {
        let name = self.shared.name;
        let rows: Vec<(String, Stats)> = if by_url {
            self.stats_by_url()
                .into_iter()
                .map(|(u, s)| (format!("{{url=\"{}\"}}", escape(&u)), s))
                .collect()
        } else {
            vec![(String::new(), self.stats())]
        };
        let metric = format!("{prefix}_queue_length");
        head(
            o,
            &metric,
            "gauge",
            &format!("Alerts waiting to be sent to {name}."),
        );
        for (labels, s) in &rows {
            let _ = writeln!(o, "{metric}{labels} {}", s.queued);
        }
        let counters: [(&str, String, Getter); 5] = [
            (
                "alerts_sent_total",
                format!("Alerts {name} accepted."),
                |s| s.sent,
            ),
            ("requests_total", format!("Requests sent to {name}."), |s| {
                s.attempts
            }),
            (
                "request_failures_total",
                "Requests that failed (network, 5xx, 408, 429) and were retried.".into(),
                |s| s.failures,
            ),
            (
                "alerts_rejected_total",
                format!("Alerts {name} refused with a 4xx answer."),
                |s| s.rejected,
            ),
            (
                "alerts_dropped_total",
                "Alerts dropped because a queue was full.".into(),
                |s| s.dropped,
            ),
        ];
        for (suffix, help, get) in counters {
            let metric = format!("{prefix}_{suffix}");
            head(o, &metric, "counter", &help);
            for (labels, s) in &rows {
                let _ = writeln!(o, "{metric}{labels} {}", get(s));
            }
        }
    }
}

/// Reads one counter of [`Stats`].
type Getter = fn(&Stats) -> u64;

/// Takes the next batch of destination `dest` (marking it in flight), or
/// `None` when its queue is empty.
fn next_batch(s: &Shared, dest: usize) -> Option<Vec<Item>> {
    let mut queues = s.lock();
    let q = queues.get_mut(dest)?;
    if q.items.is_empty() {
        return None;
    }
    let n = match s.shape {
        Shape::Array(max) => q.items.len().min(max.max(1)),
        Shape::One => 1,
    };
    q.inflight = n;
    Some(q.items.iter().take(n).cloned().collect())
}

fn body_of(shape: Shape, batch: &[Item]) -> Vec<u8> {
    let bytes = match shape {
        Shape::One => serde_json::to_vec(&batch[0].body),
        Shape::Array(_) => serde_json::to_vec(&batch.iter().map(|i| &i.body).collect::<Vec<_>>()),
    };
    // A `Value` always serialises.
    bytes.unwrap_or_default()
}

/// What to do with an answer.
enum Outcome {
    Accepted,
    Rejected(u16, String),
    Retry(String),
}

fn outcome(answer: Result<super::http::Answer, reqwest::Error>) -> Outcome {
    match answer {
        Ok(a) if (200..300).contains(&a.status) => Outcome::Accepted,
        Ok(a) if (300..500).contains(&a.status) && a.status != 408 && a.status != 429 => {
            Outcome::Rejected(a.status, a.body)
        }
        Ok(a) => Outcome::Retry(format!("HTTP {}: {}", a.status, a.body.trim())),
        Err(e) => Outcome::Retry(error_chain(&e)),
    }
}

/// An error with its causes (`error sending request: connection refused`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(text, ": {c}");
        cause = c.source();
    }
    text
}

/// Sends destination `dest`'s queue, for the life of the process.
async fn sender(s: Arc<Shared>, dest: usize) {
    let mut backoff = FIRST_BACKOFF;
    let url = s.urls[dest].clone();
    loop {
        let Some(batch) = next_batch(&s, dest) else {
            s.wake[dest].notified().await;
            continue;
        };
        let answer = s.poster.post(&url, body_of(s.shape, &batch)).await;
        let result = outcome(answer);
        let settled = {
            let mut queues = s.lock();
            let q = &mut queues[dest];
            q.stats.attempts += 1;
            let n = batch.len().min(q.items.len());
            q.inflight = 0;
            match &result {
                Outcome::Accepted => {
                    q.items.drain(..n);
                    q.stats.sent += n as u64;
                    Some(Settled::Accepted)
                }
                Outcome::Rejected(..) => {
                    q.items.drain(..n);
                    q.stats.rejected += n as u64;
                    Some(Settled::Rejected)
                }
                Outcome::Retry(why) => {
                    q.stats.failures += 1;
                    if q.stats.failures.is_power_of_two() {
                        tracing::warn!(url = %url, error = %why, "sending to {} failed; retrying", s.name);
                    }
                    None
                }
            }
        };
        match (settled, result) {
            (Some(how), result) => {
                if let Outcome::Rejected(code, body) = result {
                    tracing::error!(url = %url, code, body = %body.trim(), "{} rejected alerts", s.name);
                }
                s.settle(dest, &batch, how);
                backoff = FIRST_BACKOFF;
            }
            (None, _) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_queue_drops_per_event_alerts_first_and_never_in_flight_ones() {
        let mut q = Queue::default();
        let a = |n: u32, windowed: bool| Item {
            body: json!({"n": n}),
            windowed,
            tag: None,
        };
        let left = |q: &Queue| -> Vec<u64> {
            q.items
                .iter()
                .map(|i| i.body["n"].as_u64().unwrap())
                .collect()
        };
        assert!(q.push(a(1, false), 3).is_none());
        q.push(a(2, true), 3);
        q.push(a(3, false), 3);
        q.inflight = 1; // alert 1 is being sent
        let gone = q.push(a(4, true), 3).expect("a drop");
        assert_eq!(gone.body["n"], 3);
        assert_eq!(
            left(&q),
            [1, 2, 4],
            "3 (per-event, not in flight) goes first"
        );
        q.push(a(5, true), 3);
        assert_eq!(
            left(&q),
            [1, 4, 5],
            "then the oldest windowed one not in flight"
        );
        assert_eq!(q.stats.dropped, 2);
    }

    #[test]
    fn only_refusals_other_than_timeouts_and_throttling_are_final() {
        let answer = |status: u16| {
            Ok(super::super::http::Answer {
                status,
                body: String::new(),
            })
        };
        assert!(matches!(outcome(answer(200)), Outcome::Accepted));
        assert!(matches!(outcome(answer(400)), Outcome::Rejected(400, _)));
        assert!(matches!(outcome(answer(301)), Outcome::Rejected(301, _)));
        for retried in [408, 429, 500, 503] {
            assert!(
                matches!(outcome(answer(retried)), Outcome::Retry(_)),
                "{retried}"
            );
        }
    }
}
