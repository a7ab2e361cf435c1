//! Alertmanager output (API v2, `POST /api/v2/alerts`). Every URL gets every
//! alert, as Prometheus does for an HA pair. The engine never waits: alerts
//! go into a bounded queue per URL, and a thread per URL sends them in
//! batches, retrying with backoff. Windowed alerts are re-sent while firing
//! (`endsAt` = now + 4 × resend interval), and their resolve is re-sent for a
//! few minutes, since Alertmanager keeps no state for resolved alerts.
//! Per-event alerts carry `startsAt` = event time and `endsAt` = now + expiry.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{Alert, AlertSink};
use crate::event::time;
use crate::fields::extract::Val;
use crate::rules::Priority;

/// How long a resolve keeps being re-sent.
const RESOLVE_RESEND_FOR: Duration = Duration::from_secs(300);
/// Alerts per POST.
const BATCH: usize = 64;
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Settings of the Alertmanager output.
#[derive(Debug, Clone)]
pub struct Settings {
    pub urls: Vec<String>,
    pub resend: Duration,
    pub expiry: Duration,
    pub queue_cap: usize,
    pub bearer_token: Option<String>,
    pub timeout: Duration,
    /// PEM file of the CA that signs the Alertmanager's (or proxy's) TLS
    /// certificate; without it, the bundled public roots are trusted.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Where one Alertmanager listens.
#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    tls: bool,
    host: String,
    port: u16,
    /// Path prefix before `/api/v2/alerts` (for Alertmanagers behind a proxy).
    prefix: String,
}

/// Parses `http[s]://host[:port][/prefix]`.
fn endpoint(url: &str) -> Result<Endpoint, String> {
    let (tls, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => {
            return Err(format!(
                "{url}: expected http://host:port or https://host:port"
            ))
        }
    };
    let (hostport, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url}: bad port `{p}`"))?,
        ),
        None => (hostport, if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(Endpoint {
        url: url.to_string(),
        tls,
        host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
        port,
        prefix: prefix.to_string(),
    })
}

/// Counters of the output, for the summary and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct SendStats {
    pub sent: u64,
    pub attempts: u64,
    pub failures: u64,
    pub rejected: u64,
    pub dropped: u64,
    pub queued: u64,
}

struct Item {
    alert: Value,
    windowed: bool,
}

/// A windowed alert being re-sent.
struct Tracked {
    alert: Value,
    firing: bool,
    next: Instant,
    until: Option<Instant>,
}

#[derive(Default)]
struct State {
    queues: Vec<VecDeque<Item>>,
    tracked: HashMap<String, Tracked>,
    stats: SendStats,
    /// Per URL, how many alerts at the front of its queue are being sent;
    /// they are never dropped.
    inflight: Vec<usize>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    settings: Settings,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// The TLS client settings: the given CA, or the bundled public roots.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The Alertmanager output. Clones share the same queues and threads.
#[derive(Clone)]
pub struct AlertmanagerSink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AlertmanagerSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertmanagerSink")
            .field("urls", &self.shared.settings.urls)
            .finish()
    }
}

impl AlertmanagerSink {
    /// Checks the URLs and starts one sender per URL and the resend timer.
    pub fn start(settings: Settings) -> Result<Self, String> {
        let endpoints: Vec<Endpoint> = settings
            .urls
            .iter()
            .map(|u| endpoint(u))
            .collect::<Result<_, _>>()?;
        let tls = if endpoints.iter().any(|e| e.tls) || settings.ca_file.is_some() {
            Some(tls_config(settings.ca_file.as_deref())?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            tls,
            state: Mutex::new(State {
                queues: endpoints.iter().map(|_| VecDeque::new()).collect(),
                inflight: vec![0; endpoints.len()],
                ..State::default()
            }),
            wake: Condvar::new(),
            settings,
        });
        for (i, ep) in endpoints.into_iter().enumerate() {
            let shared = shared.clone();
            thread::spawn(move || sender(&shared, i, &ep));
        }
        let timer = shared.clone();
        thread::spawn(move || resender(&timer));
        Ok(AlertmanagerSink { shared })
    }

    pub fn stats(&self) -> SendStats {
        let s = self.shared.lock();
        let mut stats = s.stats;
        stats.queued = s.queues.iter().map(|q| q.len() as u64).sum();
        stats
    }

    /// Waits until every queued alert is delivered, or `limit` passes.
    pub fn drain(&self, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            {
                let s = self.shared.lock();
                if s.queues.iter().all(VecDeque::is_empty) && s.inflight.iter().all(|&n| n == 0) {
                    return true;
                }
            }
            if start.elapsed() >= limit {
                return false;
            }
            self.shared.wake.notify_all();
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn rfc3339(ns: i64) -> String {
    time::format_rfc3339_nanos(ns)
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn severity(p: Priority) -> &'static str {
    match p {
        Priority::Emergency | Priority::Alert | Priority::Critical => "critical",
        Priority::Error | Priority::Warning => "warning",
        _ => "info",
    }
}

/// Whether an output field may become a label: scalar, short, and not a
/// time (a timestamp in a label makes every alert a new series).
fn labelable(name: &str, v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 256
        && !name.contains("time")
        && !name.starts_with("agg.")
        && !name.ends_with(".obj")
}

/// The Alertmanager alert for one of ours.
pub fn to_alertmanager(alert: &Alert, expiry: Duration, resend: Duration) -> Value {
    let mut labels = Map::new();
    labels.insert("alertname".into(), Value::String(alert.rule.to_string()));
    labels.insert(
        "severity".into(),
        Value::String(severity(alert.priority).into()),
    );
    labels.insert(
        "priority".into(),
        Value::String(alert.priority.as_str().into()),
    );
    labels.insert("source".into(), Value::String("k8s_audit".into()));
    match &alert.aggregate {
        Some(agg) => {
            for (k, v) in &agg.key {
                labels.insert(label_name(k), Value::String(v.clone()));
            }
        }
        None => {
            for (name, v) in &alert.fields {
                if let Some(Val::Str(s)) = v {
                    if labelable(name, s) {
                        labels
                            .entry(label_name(name))
                            .or_insert_with(|| Value::String(s.to_string()));
                    }
                }
            }
        }
    }
    for (k, v) in alert.labels {
        labels.insert(label_name(k), Value::String(v.clone()));
    }
    let mut annotations = Map::new();
    annotations.insert("summary".into(), Value::String(alert.message.clone()));
    if !alert.desc.is_empty() {
        annotations.insert("description".into(), Value::String(alert.desc.to_string()));
    }
    for (k, v) in alert.annotations {
        annotations.insert(label_name(k), Value::String(v.clone()));
    }
    let (starts, ends) = match &alert.aggregate {
        Some(agg) => match agg.ends_at_ns {
            Some(end) => (agg.starts_at_ns, end),
            None => (agg.starts_at_ns, now_ns() + 4 * resend.as_nanos() as i64),
        },
        None => (alert.time_ns, now_ns() + expiry.as_nanos() as i64),
    };
    json!({"labels": labels, "annotations": annotations, "startsAt": rfc3339(starts), "endsAt": rfc3339(ends)})
}

fn fingerprint(alert: &Value) -> String {
    alert["labels"].to_string()
}

impl AlertSink for AlertmanagerSink {
    fn emit(&mut self, alert: &Alert) -> io::Result<()> {
        let settings = &self.shared.settings;
        let am = to_alertmanager(alert, settings.expiry, settings.resend);
        let windowed = alert.aggregate.is_some();
        let mut s = self.shared.lock();
        if let Some(agg) = &alert.aggregate {
            let now = Instant::now();
            s.tracked.insert(
                fingerprint(&am),
                Tracked {
                    alert: am.clone(),
                    firing: agg.ends_at_ns.is_none(),
                    next: now + settings.resend,
                    until: agg.ends_at_ns.map(|_| now + RESOLVE_RESEND_FOR),
                },
            );
        }
        enqueue(&mut s, settings.queue_cap, &am, windowed);
        drop(s);
        self.shared.wake.notify_all();
        Ok(())
    }

    /// A firing alert this process re-learned: sent and tracked for
    /// re-sending, like a new one (Alertmanager merges it by its labels).
    fn refresh(&mut self, alert: &Alert) -> io::Result<()> {
        self.emit(alert)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.shared.wake.notify_all();
        Ok(())
    }
}

/// Adds an alert to every URL's queue, dropping the oldest per-event alert
/// (or, failing that, the oldest windowed one) when a queue is full. Alerts
/// being sent are never dropped.
fn enqueue(s: &mut State, cap: usize, alert: &Value, windowed: bool) {
    let mut dropped = 0;
    for (q, &busy) in s.queues.iter_mut().zip(&s.inflight) {
        if q.len() >= cap.max(1) {
            let victim = q
                .iter()
                .skip(busy)
                .position(|i| !i.windowed)
                .map(|p| p + busy)
                .or((busy < q.len()).then_some(busy));
            if let Some(v) = victim {
                q.remove(v);
                dropped += 1;
            }
        }
        q.push_back(Item {
            alert: alert.clone(),
            windowed,
        });
    }
    if dropped > 0 {
        s.stats.dropped += dropped;
        if s.stats.dropped.is_power_of_two() {
            tracing::warn!(
                dropped = s.stats.dropped,
                "Alertmanager queue full: oldest alerts dropped"
            );
        }
    }
}

/// Re-sends firing windowed alerts and recent resolves.
fn resender(shared: &Shared) {
    loop {
        thread::sleep(Duration::from_millis(200));
        let settings = &shared.settings;
        let mut s = shared.lock();
        if s.stop {
            return;
        }
        let now = Instant::now();
        s.tracked.retain(|_, t| t.until.is_none_or(|u| now < u));
        let due: Vec<Value> = s
            .tracked
            .values_mut()
            .filter(|t| t.next <= now)
            .map(|t| {
                t.next = now + settings.resend;
                if t.firing {
                    t.alert["endsAt"] =
                        Value::String(rfc3339(now_ns() + 4 * settings.resend.as_nanos() as i64));
                }
                t.alert.clone()
            })
            .collect();
        for a in &due {
            enqueue(&mut s, settings.queue_cap, a, true);
        }
        drop(s);
        if !due.is_empty() {
            shared.wake.notify_all();
        }
    }
}

/// Sends queue `i` to one Alertmanager, forever.
fn sender(shared: &Shared, i: usize, ep: &Endpoint) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let batch: Vec<Value> = {
            let mut s = shared.lock();
            while s.queues[i].is_empty() && !s.stop {
                s = shared
                    .wake
                    .wait_timeout(s, Duration::from_millis(200))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if s.stop && s.queues[i].is_empty() {
                return;
            }
            let n = s.queues[i].len().min(BATCH);
            s.inflight[i] = n;
            s.queues[i]
                .iter()
                .take(n)
                .map(|it| it.alert.clone())
                .collect()
        };
        let result = post(
            ep,
            &Value::Array(batch.clone()),
            &shared.settings,
            shared.tls.as_ref(),
        );
        let mut s = shared.lock();
        s.stats.attempts += 1;
        match result {
            Ok((code, _)) if (200..300).contains(&code) => {
                let n = batch.len().min(s.queues[i].len());
                s.queues[i].drain(..n);
                s.stats.sent += n as u64;
                s.inflight[i] = 0;
                backoff = Duration::from_millis(100);
            }
            Ok((code, body)) if (400..500).contains(&code) => {
                // Alertmanager refused these alerts: retrying will not help.
                tracing::error!(url = %ep.url, code, body = %body.trim(), "Alertmanager rejected alerts");
                let n = batch.len().min(s.queues[i].len());
                s.queues[i].drain(..n);
                s.stats.rejected += n as u64;
                s.inflight[i] = 0;
            }
            other => {
                s.stats.failures += 1;
                s.inflight[i] = 0;
                let why = match other {
                    Ok((code, body)) => format!("HTTP {code}: {}", body.trim()),
                    Err(e) => e.to_string(),
                };
                if s.stats.failures.is_power_of_two() {
                    tracing::warn!(url = %ep.url, error = %why, "sending to Alertmanager failed; retrying");
                }
                drop(s);
                thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One `POST /api/v2/alerts` over HTTP/1.1 (over TLS for https): (status,
/// body).
fn post(
    ep: &Endpoint,
    alerts: &Value,
    settings: &Settings,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> io::Result<(u16, String)> {
    let body = alerts.to_string();
    let addr = (ep.host.as_str(), ep.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, settings.timeout)?;
    tcp.set_read_timeout(Some(settings.timeout))?;
    tcp.set_write_timeout(Some(settings.timeout))?;
    let auth = settings
        .bearer_token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {}/api/v2/alerts HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
        ep.prefix,
        ep.host,
        ep.port,
        body.len()
    );
    let response = if ep.tls {
        let config = tls.ok_or_else(|| io::Error::other("no TLS configuration"))?;
        let name = rustls::pki_types::ServerName::try_from(ep.host.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = rustls::ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        exchange(rustls::StreamOwned::new(conn, tcp), request.as_bytes())?
    } else {
        exchange(tcp, request.as_bytes())?
    };
    let text = String::from_utf8_lossy(&response);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// Writes a request and reads the whole response (the server closes).
fn exchange<S: Read + Write>(mut stream: S, request: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut response = Vec::new();
    match stream.take(1 << 20).read_to_end(&mut response) {
        Ok(_) => Ok(response),
        // A TLS peer that closes without close_notify: keep what arrived.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => Ok(response),
        Err(e) => Err(e),
    }
}

/// Sends to several outputs in turn (stdout and Alertmanager).
pub struct Fanout(pub Vec<Box<dyn AlertSink + Send>>);

impl AlertSink for Fanout {
    fn emit(&mut self, alert: &Alert) -> io::Result<()> {
        for s in &mut self.0 {
            s.emit(alert)?;
        }
        Ok(())
    }

    fn refresh(&mut self, alert: &Alert) -> io::Result<()> {
        for s in &mut self.0 {
            s.refresh(alert)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        for s in &mut self.0 {
            s.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = endpoint("http://127.0.0.1:9093").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str()),
            ("127.0.0.1", 9093, "")
        );
        let e = endpoint("http://am.local/alertmanager/").unwrap();
        assert_eq!((e.port, e.prefix.as_str()), (80, "/alertmanager"));
        let e = endpoint("https://am.example.com").unwrap();
        assert!(e.tls);
        assert_eq!(e.port, 443);
        assert!(endpoint("am:9093").is_err());
    }

    #[test]
    fn a_full_queue_drops_per_event_alerts_first_and_never_in_flight_ones() {
        let mut s = State {
            queues: vec![VecDeque::new()],
            inflight: vec![0],
            ..State::default()
        };
        let a = |n: u32| json!({"n": n});
        enqueue(&mut s, 3, &a(1), false);
        enqueue(&mut s, 3, &a(2), true);
        enqueue(&mut s, 3, &a(3), false);
        s.inflight[0] = 1; // alert 1 is being sent
        enqueue(&mut s, 3, &a(4), true);
        let left: Vec<u64> = s.queues[0]
            .iter()
            .map(|i| i.alert["n"].as_u64().unwrap())
            .collect();
        assert_eq!(left, [1, 2, 4], "3 (per-event, not in flight) goes first");
        enqueue(&mut s, 3, &a(5), true);
        let left: Vec<u64> = s.queues[0]
            .iter()
            .map(|i| i.alert["n"].as_u64().unwrap())
            .collect();
        assert_eq!(
            left,
            [1, 4, 5],
            "then the oldest windowed one not in flight"
        );
        assert_eq!(s.stats.dropped, 2);
    }

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(label_name("ka.user.name"), "ka_user_name");
        assert_eq!(label_name("ka.uri.param[command]"), "ka_uri_param_command_");
        assert_eq!(label_name("1x"), "_1x");
    }
}
