//! Prometheus metrics: the engine's own `saker_*` counters and the per-event
//! counter `kube_audit_event_count`, served in Prometheus' text format with
//! `/healthz` and `/readyz` by an HTTP listener (`--metrics-listen`, hyper on
//! the network runtime), which also takes `POST /-/reload`. Outputs and the
//! Kafka consumer add their own metrics through [`MetricSource`].
//!
//! Metric names are written here, not by a client library, so the counter
//! keeps exactly the name users' rules expect (no forced `_total` suffix):
//! `rate(kube_audit_event_count{verb="create", resource="secrets"}[1m]) > 1`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::event::Skip;
use crate::reload::{Answer, Cause, Trigger};

/// Buckets of the per-event processing time, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 1e-3, 1e-2, 1e-1,
];

/// Everything the metrics endpoint reports. The engine updates it; the
/// listener renders it.
#[derive(Debug, Default)]
pub struct Registry {
    /// The input the counters are about: `stdin` or `file`.
    pub source: String,
    pub lines: u64,
    pub events: u64,
    pub skipped: [u64; Skip::ALL.len()],
    /// Rule names, in rule order.
    pub rules: Vec<String>,
    pub matches: Vec<u64>,
    /// Per rule: per-event alerts, windowed firing, windowed resolved.
    pub alerts: Vec<[u64; 3]>,
    pub window_keys: u64,
    pub window_evictions: u64,
    pub late_events: u64,
    /// Per rule, for sequence and first-seen rules: keys, partial
    /// matches, evictions and late events.
    pub stateful: Vec<Option<crate::stateful::RuleNumbers>>,
    /// Parts that report their own metrics: every output with a queue
    /// (Alertmanager, HTTP outputs), the Kafka consumer.
    pub extra: Vec<Arc<dyn MetricSource>>,
    latency_counts: [u64; LATENCY_BUCKETS.len()],
    latency_sum: f64,
    latency_n: u64,
    audit: AuditCounter,
}

/// `kube_audit_event_count`, by a configurable set of labels. Label sets
/// are found by a hash of the borrowed values, so counting an event that
/// belongs to a known set allocates nothing.
#[derive(Debug, Default)]
struct AuditCounter {
    labels: Vec<String>,
    counts: HashMap<u64, Vec<(Vec<String>, u64)>, foldhash::fast::RandomState>,
    /// The label sets' hash, seeded per process: the values come from
    /// whoever sends requests, who must not be able to pile sets into one
    /// bucket.
    hasher: foldhash::fast::RandomState,
    sets: usize,
    cap: usize,
    overflow: u64,
}

fn hash_values<S: AsRef<str>>(state: &foldhash::fast::RandomState, values: &[S]) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = state.build_hasher();
    for v in values {
        v.as_ref().hash(&mut h);
    }
    h.finish()
}

/// A part of the program that renders its own metrics into the exposition.
pub trait MetricSource: Send + Sync + std::fmt::Debug {
    fn render(&self, out: &mut String);
}

/// Writes the `# HELP` and `# TYPE` lines of a metric.
pub fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes counters without labels: (name, help, value) each.
pub fn counters(o: &mut String, rows: &[(&str, &str, &std::sync::atomic::AtomicU64)]) {
    for (name, help, v) in rows {
        head(o, name, "counter", help);
        let _ = writeln!(o, "{name} {}", v.load(std::sync::atomic::Ordering::Relaxed));
    }
}

/// Which alert a rule produced.
#[derive(Debug, Clone, Copy)]
pub enum AlertKind {
    Event = 0,
    Firing = 1,
    Resolved = 2,
}

impl Registry {
    pub fn new(rules: Vec<String>, labels: Vec<String>, cap: usize) -> Self {
        let n = rules.len();
        Registry {
            rules,
            matches: vec![0; n],
            alerts: vec![[0; 3]; n],
            audit: AuditCounter {
                labels,
                cap,
                ..AuditCounter::default()
            },
            ..Registry::default()
        }
    }

    /// A reload: the rules are now `rules`; `by_name` gives, per new rule,
    /// the old rule of the same name, whose counters it goes on with. The
    /// series of rules gone are dropped; new rules start at zero.
    pub fn set_rules(&mut self, rules: Vec<String>, by_name: &[Option<usize>]) {
        self.matches = crate::engine::reload::by_name(by_name, &self.matches);
        self.alerts = crate::engine::reload::by_name(by_name, &self.alerts);
        self.stateful = vec![None; rules.len()];
        self.rules = rules;
    }

    /// Events counted by label set (the values in the order of the labels),
    /// and the events of label sets beyond the cap.
    pub fn event_counts(&self) -> (Vec<(&[String], u64)>, u64) {
        let sets = self
            .audit
            .counts
            .values()
            .flatten()
            .map(|(k, n)| (k.as_slice(), *n))
            .collect();
        (sets, self.audit.overflow)
    }

    /// One event with these label values (in the order of the labels).
    pub fn count_event<S: AsRef<str>>(&mut self, values: &[S]) {
        let a = &mut self.audit;
        let bucket = a.counts.entry(hash_values(&a.hasher, values)).or_default();
        if let Some((_, n)) = bucket.iter_mut().find(|(k, _)| {
            k.iter()
                .map(String::as_str)
                .eq(values.iter().map(AsRef::as_ref))
        }) {
            *n += 1;
        } else if a.sets < a.cap {
            bucket.push((values.iter().map(|v| v.as_ref().to_string()).collect(), 1));
            a.sets += 1;
        } else {
            a.overflow += 1;
        }
    }

    pub fn observe_latency(&mut self, seconds: f64) {
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.latency_counts[i] += 1;
            }
        }
        self.latency_sum += seconds;
        self.latency_n += 1;
    }

    pub fn alert(&mut self, rule: usize, kind: AlertKind) {
        if let Some(a) = self.alerts.get_mut(rule) {
            a[kind as usize] += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        head(
            &mut o,
            "kube_audit_event_count",
            "counter",
            "Audit events seen, by the configured labels.",
        );
        let mut rows: Vec<(&Vec<String>, &u64)> = self
            .audit
            .counts
            .values()
            .flatten()
            .map(|(k, n)| (k, n))
            .collect();
        rows.sort();
        for (values, n) in rows {
            let labels: Vec<String> = self
                .audit
                .labels
                .iter()
                .zip(values)
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(o, "kube_audit_event_count{{{}}} {n}", labels.join(","));
        }
        head(
            &mut o,
            "saker_kube_audit_label_sets_overflow_total",
            "counter",
            "Events not counted in kube_audit_event_count because its label sets reached the cap.",
        );
        let _ = writeln!(
            o,
            "saker_kube_audit_label_sets_overflow_total {}",
            self.audit.overflow
        );
        head(&mut o, "saker_lines_total", "counter", "Input lines read.");
        let _ = writeln!(
            o,
            "saker_lines_total{{source=\"{}\"}} {}",
            self.source, self.lines
        );
        head(
            &mut o,
            "saker_events_total",
            "counter",
            "Input by outcome: decoded audit events, or skipped lines by reason.",
        );
        let _ = writeln!(
            o,
            "saker_events_total{{source=\"{}\",outcome=\"decoded\"}} {}",
            self.source, self.events
        );
        for s in Skip::ALL {
            let _ = writeln!(
                o,
                "saker_events_total{{source=\"{}\",outcome=\"skipped\",reason=\"{}\"}} {}",
                self.source,
                s.as_str(),
                self.skipped[s as usize]
            );
        }
        head(
            &mut o,
            "saker_rule_matches_total",
            "counter",
            "Events that matched each rule's condition.",
        );
        for (r, n) in self.rules.iter().zip(&self.matches) {
            let _ = writeln!(o, "saker_rule_matches_total{{rule=\"{}\"}} {n}", escape(r));
        }
        head(
            &mut o,
            "saker_alerts_total",
            "counter",
            "Alerts by rule and state (event: per-event rules).",
        );
        for (r, a) in self.rules.iter().zip(&self.alerts) {
            for (state, n) in ["event", "firing", "resolved"].iter().zip(a) {
                let _ = writeln!(
                    o,
                    "saker_alerts_total{{rule=\"{}\",state=\"{state}\"}} {n}",
                    escape(r)
                );
            }
        }
        head(
            &mut o,
            "saker_window_keys",
            "gauge",
            "Keys held by windowed rules.",
        );
        let _ = writeln!(o, "saker_window_keys {}", self.window_keys);
        head(
            &mut o,
            "saker_window_evictions_total",
            "counter",
            "Keys evicted from windowed rules by the key cap.",
        );
        let _ = writeln!(o, "saker_window_evictions_total {}", self.window_evictions);
        head(
            &mut o,
            "saker_late_events_total",
            "counter",
            "Events that arrived after their tick was evaluated.",
        );
        let _ = writeln!(o, "saker_late_events_total {}", self.late_events);
        self.render_stateful(&mut o);
        head(
            &mut o,
            "saker_event_processing_seconds",
            "histogram",
            "Time to evaluate one event and hand its alerts to the outputs.",
        );
        for (b, n) in LATENCY_BUCKETS.iter().zip(&self.latency_counts) {
            let _ = writeln!(o, "saker_event_processing_seconds_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "saker_event_processing_seconds_bucket{{le=\"+Inf\"}} {}",
            self.latency_n
        );
        let _ = writeln!(o, "saker_event_processing_seconds_sum {}", self.latency_sum);
        let _ = writeln!(o, "saker_event_processing_seconds_count {}", self.latency_n);
        for source in &self.extra {
            source.render(&mut o);
        }
        o
    }
}

impl Registry {
    /// Per sequence and first-seen rule: keys, partials, evictions, late events.
    fn render_stateful(&self, o: &mut String) {
        if self.stateful.iter().all(Option::is_none) {
            return;
        }
        type Get = fn(&crate::stateful::RuleNumbers) -> u64;
        let metrics: [(&str, &str, &str, Get); 4] = [
            (
                "saker_stateful_keys",
                "gauge",
                "Keys held by a sequence or first-seen rule.",
                |n| n.keys,
            ),
            (
                "saker_sequence_partials",
                "gauge",
                "Partial matches held by a sequence rule.",
                |n| n.partials,
            ),
            (
                "saker_stateful_evictions_total",
                "counter",
                "Keys a sequence or first-seen rule evicted at the key cap.",
                |n| n.evictions,
            ),
            (
                "saker_stateful_late_events_total",
                "counter",
                "Events of a sequence or first-seen rule that arrived late and took no part.",
                |n| n.late_events,
            ),
        ];
        for (name, kind, help, get) in metrics {
            head(o, name, kind, help);
            for (rule, n) in self.rules.iter().zip(&self.stateful) {
                if let Some(n) = n {
                    let _ = writeln!(o, "{name}{{rule=\"{}\"}} {}", escape(rule), get(n));
                }
            }
        }
    }
}

pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A registry shared between the engine and the listener.
pub type Shared = Arc<Mutex<Registry>>;

/// Resolves `--metrics-listen`: a bare port (`9464`, `:9464`) means
/// loopback; anything else is used as given.
pub fn listen_address(spec: &str) -> io::Result<SocketAddr> {
    let port_only = spec.trim_start_matches(':');
    if !port_only.is_empty() && port_only.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = port_only
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad port"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    spec.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot resolve {spec}"),
        )
    })
}

/// How long a client may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics`, `/healthz` and `/readyz` on the network runtime, and
/// with `reload`, `POST /-/reload` (answered once the reload is applied:
/// 200, or 500 with why it failed) and the last reload's failure in the
/// body of `/readyz`. Binding happens here, so a taken port is an error of
/// this call.
pub fn serve(
    addr: SocketAddr,
    registry: Shared,
    reload: Option<Trigger>,
) -> io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let rt = crate::runtime::handle()?;
    let listener = {
        let _entered = rt.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    rt.spawn(accept(listener, registry, reload));
    Ok(bound)
}

async fn accept(listener: tokio::net::TcpListener, registry: Shared, reload: Option<Trigger>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: wait, then go on.
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (registry, reload) = (registry.clone(), reload.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let is_reload = req.uri().path() == "/-/reload";
                let answered = (!is_reload).then(|| answer(&req, &registry, reload.as_ref()));
                let reload = reload.clone();
                async move {
                    Ok::<_, Infallible>(match answered {
                        Some(a) => a,
                        None => answer_reload(req.method(), reload.as_ref()).await,
                    })
                }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

fn text(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// `POST` (or `PUT`) `/-/reload`, as Prometheus has it: answered once the
/// new rules run (200), or the load failed (500, why), or the run is ending
/// (503).
async fn answer_reload(method: &Method, reload: Option<&Trigger>) -> Response<Full<Bytes>> {
    let Some(trigger) = reload else {
        return text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
    };
    if method != Method::POST && method != Method::PUT {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use POST to reload\n".into(),
        );
    }
    let ending = || {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not applied: the run is ending\n".into(),
        )
    };
    let Some(answer) = trigger.request_answer(Cause::Http) else {
        return ending();
    };
    match answer.await {
        Ok(Answer::Applied(done)) => text(StatusCode::OK, "text/plain", done),
        Ok(Answer::Failed(why)) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", why),
        Ok(Answer::Ending) | Err(_) => ending(),
    }
}

fn answer(
    req: &Request<Incoming>,
    registry: &Shared,
    reload: Option<&Trigger>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let body = registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .render();
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            )
        }
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        // Ready while the process runs, with the rules it has: a failed
        // reload is reported here, not by failing the probe.
        "/readyz" => text(
            StatusCode::OK,
            "text/plain",
            reload.map_or_else(|| "ready\n".into(), |t| t.status().readiness()),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_runbook_counter_by_its_exact_name() {
        let mut r = Registry::new(
            vec!["R".into()],
            vec!["verb".into(), "resource".into(), "user".into()],
            2,
        );
        r.count_event(&["create", "secrets", "al\"ice"]);
        r.count_event(&["create", "secrets", "al\"ice"]);
        r.count_event(&["get", "pods", "bob"]);
        r.count_event(&["list", "pods", "bob"]);
        r.alert(0, AlertKind::Firing);
        r.observe_latency(3e-6);
        let text = r.render();
        assert!(
            text.contains("# TYPE kube_audit_event_count counter\n"),
            "{text}"
        );
        assert!(text.contains("kube_audit_event_count{verb=\"create\",resource=\"secrets\",user=\"al\\\"ice\"} 2\n"), "{text}");
        assert!(
            text.contains("saker_kube_audit_label_sets_overflow_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("saker_alerts_total{rule=\"R\",state=\"firing\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("saker_event_processing_seconds_bucket{le=\"0.000005\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("kube_audit_event_count_total"));
    }

    #[test]
    fn bare_ports_listen_on_loopback() {
        assert_eq!(
            listen_address("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            listen_address(":9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            listen_address("0.0.0.0:9464").unwrap(),
            "0.0.0.0:9464".parse().unwrap()
        );
    }
}
