//! The receiver's numbers, rendered into the metrics endpoint: requests by
//! path and status, bytes and events received, bytes held in the queue, the
//! time from a request's arrival to its answer, and requests and events per
//! sender address (at most [`MAX_SENDERS`] of them; the rest are `other`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::sink::metrics::{counters, escape, head, MetricSource};

/// Sender addresses counted apart.
pub const MAX_SENDERS: usize = 256;
/// Buckets of the answer time, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default)]
pub struct Counters {
    pub bytes: AtomicU64,
    pub events: AtomicU64,
    /// Bytes reserved by requests not yet answered.
    pub queue_bytes: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    senders: BTreeMap<String, (u64, u64)>,
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Counters {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One answered request.
    pub fn answered(&self, path: &str, code: u16, sender: &str, events: u64, seconds: f64) {
        let mut i = self.lock();
        *i.requests.entry((path.to_string(), code)).or_default() += 1;
        let known = i.senders.contains_key(sender) || i.senders.len() < MAX_SENDERS;
        let s = i
            .senders
            .entry(if known { sender } else { "other" }.to_string())
            .or_default();
        s.0 += 1;
        s.1 += events;
        for (b, le) in i.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *b += 1;
            }
        }
        i.sum += seconds;
        i.count += 1;
        drop(i);
        self.events.fetch_add(events, Relaxed);
    }

    /// Requests answered, by status.
    pub fn by_status(&self) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for ((_, code), n) in &self.lock().requests {
            *out.entry(*code).or_default() += n;
        }
        out
    }
}

impl MetricSource for Counters {
    fn render(&self, o: &mut String) {
        let i = self.lock();
        head(
            o,
            "saker_http_requests_total",
            "counter",
            "Requests the receiver answered, by path and status code.",
        );
        for ((path, code), n) in &i.requests {
            let _ = writeln!(
                o,
                "saker_http_requests_total{{path=\"{}\",code=\"{code}\"}} {n}",
                escape(path)
            );
        }
        counters(
            o,
            &[
                (
                    "saker_http_received_bytes_total",
                    "Bytes of request bodies read.",
                    &self.bytes,
                ),
                (
                    "saker_http_events_total",
                    "Audit events in requests answered 200.",
                    &self.events,
                ),
            ],
        );
        head(
            o,
            "saker_http_queue_bytes",
            "gauge",
            "Bytes held by requests not yet answered (bounded by --http-queue-bytes).",
        );
        let _ = writeln!(
            o,
            "saker_http_queue_bytes {}",
            self.queue_bytes.load(Relaxed)
        );
        let name = "saker_http_request_duration_seconds";
        head(
            o,
            name,
            "histogram",
            "Time from a request's arrival to its answer.",
        );
        for (b, le) in i.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {b}");
        }
        let _ = writeln!(
            o,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            i.count, i.sum, i.count
        );
        head(
            o,
            "saker_http_sender_requests_total",
            "counter",
            "Requests answered, per sender address.",
        );
        for (s, (n, _)) in &i.senders {
            let _ = writeln!(
                o,
                "saker_http_sender_requests_total{{sender=\"{}\"}} {n}",
                escape(s)
            );
        }
        head(
            o,
            "saker_http_sender_events_total",
            "counter",
            "Events in requests answered 200, per sender address.",
        );
        for (s, (_, e)) in &i.senders {
            let _ = writeln!(
                o,
                "saker_http_sender_events_total{{sender=\"{}\"}} {e}",
                escape(s)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_beyond_the_cap_are_other() {
        let c = Counters::default();
        for n in 0..MAX_SENDERS + 3 {
            c.answered("/audit", 200, &format!("10.0.0.{n}"), 2, 0.003);
        }
        let mut text = String::new();
        c.render(&mut text);
        assert!(
            text.contains("saker_http_sender_events_total{sender=\"other\"} 6"),
            "{text}"
        );
        assert!(text.contains("saker_http_requests_total{path=\"/audit\",code=\"200\"} 259"));
        assert!(text.contains("saker_http_request_duration_seconds_bucket{le=\"0.005\"} 259"));
        assert_eq!(c.events.load(Relaxed), 518);
    }
}
