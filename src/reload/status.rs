//! What the reloads did, for the metrics (`saker_reloads_total`,
//! `saker_reload_failures_total`, `saker_reload_last_success` and its
//! timestamp) and for the metrics listener's `/readyz`, whose body says
//! when the last reload failed and why. It keeps answering 200 then: the
//! rules that were running still run, and one bad edit of a ConfigMap seen
//! by every replica must not take them all out of a Service.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::event::time::format_rfc3339_nanos;
use crate::sink::metrics::{head, MetricSource};

/// The reload counters and the last outcome, shared by the reload thread,
/// the driver and the metrics listener.
#[derive(Debug)]
pub struct Status {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    reloads: u64,
    failures: u64,
    /// When the running rules were loaded (at start, or the last reload).
    loaded_at: SystemTime,
    /// The last reload's failure, unless a later one succeeded.
    failed: Option<(SystemTime, String)>,
}

impl Status {
    /// The status of a run whose rules were just loaded.
    pub fn new() -> Arc<Status> {
        Arc::new(Status {
            inner: Mutex::new(Inner {
                reloads: 0,
                failures: 0,
                loaded_at: SystemTime::now(),
                failed: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A reload was applied: the new rules run.
    pub fn succeeded(&self) {
        let mut s = self.lock();
        s.reloads += 1;
        s.loaded_at = SystemTime::now();
        s.failed = None;
    }

    /// A reload was refused for `why` (one line, with the position).
    pub fn failed(&self, why: &str) {
        let mut s = self.lock();
        s.failures += 1;
        s.failed = Some((SystemTime::now(), why.to_string()));
    }

    /// Reloads applied and refused so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.lock();
        (s.reloads, s.failures)
    }

    /// The body of `/readyz`: `ready`, then, if the last reload failed,
    /// when and why, and since when the running rules run.
    pub fn readiness(&self) -> String {
        let s = self.lock();
        let mut out = String::from("ready\n");
        if let Some((at, why)) = &s.failed {
            let _ = writeln!(out, "last reload failed at {}: {why}", rfc3339(*at));
            let _ = writeln!(
                out,
                "still running the rules loaded at {}",
                rfc3339(s.loaded_at)
            );
        }
        out
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn rfc3339(t: SystemTime) -> String {
    let ns = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    format_rfc3339_nanos(ns)
}

impl MetricSource for Status {
    fn render(&self, o: &mut String) {
        let s = self.lock();
        head(
            o,
            "saker_reloads_total",
            "counter",
            "Reloads applied: a new rule set running.",
        );
        let _ = writeln!(o, "saker_reloads_total {}", s.reloads);
        head(
            o,
            "saker_reload_failures_total",
            "counter",
            "Reloads refused (the new config or rules did not load); the running rules stayed.",
        );
        let _ = writeln!(o, "saker_reload_failures_total {}", s.failures);
        head(
            o,
            "saker_reload_last_success",
            "gauge",
            "Whether the last reload succeeded (1 before any reload).",
        );
        let _ = writeln!(
            o,
            "saker_reload_last_success {}",
            u8::from(s.failed.is_none())
        );
        head(
            o,
            "saker_reload_last_success_timestamp_seconds",
            "gauge",
            "When the running rules were loaded (at start or by the last successful reload).",
        );
        let _ = writeln!(
            o,
            "saker_reload_last_success_timestamp_seconds {:.3}",
            unix_seconds(s.loaded_at)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn a_failure_shows_until_a_reload_succeeds() {
        let status = Status::new();
        assert_eq!(status.readiness(), "ready\n");
        let render = |s: &Status| {
            let mut o = String::new();
            s.render(&mut o);
            o
        };
        let started = metric(
            &render(&status),
            "saker_reload_last_success_timestamp_seconds",
        );
        assert!(started > 1.7e9, "a unix time: {started}");
        status.failed("r.yaml:4:14: error[unknown-field]: unknown field `ka.verbb`");
        let text = render(&status);
        assert_eq!(metric(&text, "saker_reload_failures_total"), 1.0);
        assert_eq!(metric(&text, "saker_reload_last_success"), 0.0);
        assert_eq!(metric(&text, "saker_reloads_total"), 0.0);
        let body = status.readiness();
        assert!(
            body.starts_with("ready\nlast reload failed at 20"),
            "{body}"
        );
        assert!(
            body.contains("Z: r.yaml:4:14: error[unknown-field]"),
            "{body}"
        );
        assert!(body.contains("still running the rules loaded at"), "{body}");
        status.succeeded();
        let text = render(&status);
        assert_eq!(metric(&text, "saker_reloads_total"), 1.0);
        assert_eq!(metric(&text, "saker_reload_failures_total"), 1.0);
        assert_eq!(metric(&text, "saker_reload_last_success"), 1.0);
        assert!(metric(&text, "saker_reload_last_success_timestamp_seconds") >= started);
        assert_eq!(status.readiness(), "ready\n");
        assert_eq!(status.counts(), (1, 1));
    }
}
