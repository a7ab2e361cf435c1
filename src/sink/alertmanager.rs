//! Alertmanager output (API v2, `POST /api/v2/alerts`). Every URL gets every
//! alert, as Prometheus does for an HA pair; queues, batches and retries are
//! `delivery.rs`'s. On top of that, this output keeps windowed alerts alive:
//! a firing one is re-sent every resend interval (`endsAt` = now + 4 ×
//! resend interval), and a resolve is re-sent for a few minutes, since
//! Alertmanager keeps no state for resolved alerts. Per-event alerts carry
//! `startsAt` = event time and `endsAt` = now + expiry.
//!
//! A resolve is held until its firing alert has been settled (accepted,
//! refused or dropped) by that Alertmanager and `resolve_delay` has passed
//! since. A replayed file resolves an alert moments after it fires;
//! Alertmanager would merge the two before its `group_wait` ends and never
//! notify anyone. Held, the firing is notified first, then the resolve.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::delivery::{self, Delivery, Item, Shape};
use super::http::{self, ClientSettings, Poster};
use super::metrics::MetricSource;
use super::{Alert, AlertSink};
use crate::event::time;
use crate::fields::extract::Val;
use crate::rules::Priority;

/// Kept here for callers that knew it from this module.
pub use super::Fanout;

/// How long a resolve keeps being re-sent.
const RESOLVE_RESEND_FOR: Duration = Duration::from_secs(300);
/// Alerts per POST.
const BATCH: usize = 64;
/// How often the re-send timer looks at the tracked alerts.
const TICK: Duration = Duration::from_millis(200);

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
    /// How long after its firing alert was accepted a resolve may be sent.
    pub resolve_delay: Duration,
}

/// Counters of the output, for the summary and metrics.
pub type SendStats = delivery::Stats;

/// `http[s]://host[:port][/prefix]` → `…/prefix/api/v2/alerts`.
fn alerts_url(base: &str) -> Result<reqwest::Url, http::Error> {
    let mut url = http::parse_url(base)?;
    let path = format!("{}/api/v2/alerts", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

/// A windowed alert being re-sent.
struct Tracked {
    alert: Value,
    firing: bool,
    next: Instant,
    /// For a resolve: re-sent until then, once no destination holds it.
    until: Option<Instant>,
    /// Per destination: when the firing alert was first settled there.
    fired: Vec<Option<Instant>>,
    /// Per destination: the resolve waits to be sent.
    held: Vec<bool>,
}

struct State {
    tracked: HashMap<Arc<str>, Tracked>,
}

struct Shared {
    /// Shared with the delivery's settle callback.
    state: Arc<Mutex<State>>,
    settings: Settings,
    delivery: Delivery,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The Alertmanager output. Clones share the same queues and tasks.
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
    pub fn start(settings: Settings) -> Result<Self, http::Error> {
        let urls = settings
            .urls
            .iter()
            .map(|u| alerts_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        let poster = Poster::new(&ClientSettings {
            timeout: settings.timeout,
            ca_file: settings.ca_file.clone(),
            bearer_token: settings.bearer_token.clone(),
        })?;
        let state = Arc::new(Mutex::new(State {
            tracked: HashMap::new(),
        }));
        let on_settled: delivery::OnSettled = {
            let state = state.clone();
            Box::new(move |dest, tag, _how| first_settled(&state, dest, tag))
        };
        let delivery = Delivery::start(delivery::Options {
            name: "Alertmanager",
            urls,
            queue_cap: settings.queue_cap,
            shape: Shape::Array(BATCH),
            poster,
            on_settled: Some(on_settled),
        })?;
        let shared = Arc::new(Shared {
            state,
            settings,
            delivery,
        });
        crate::runtime::handle()?.spawn(resender(shared.clone()));
        Ok(AlertmanagerSink { shared })
    }

    pub fn stats(&self) -> SendStats {
        self.shared.delivery.stats()
    }

    /// Resolves waiting for their firing alert to settle (one per
    /// destination).
    pub fn held(&self) -> usize {
        self.shared
            .lock()
            .tracked
            .values()
            .map(|t| t.held.iter().filter(|h| **h).count())
            .sum()
    }

    /// Waits until every queued alert is delivered and every held resolve
    /// sent, or until `limit` passes (plus the resolve delay while resolves
    /// are held, so that a replay's last resolves go out).
    pub fn drain(&self, limit: Duration) -> bool {
        let start = Instant::now();
        let mut deadline = start + limit;
        if self.held() > 0 {
            deadline += self.shared.settings.resolve_delay;
        }
        loop {
            if self.held() == 0 && self.shared.delivery.idle() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The delivery settled a tracked firing alert at `dest`: its resolve may
/// follow after the resolve delay.
fn first_settled(state: &Mutex<State>, dest: usize, tag: &Arc<str>) {
    let mut s = lock(state);
    if let Some(slot @ None) = s.tracked.get_mut(tag).and_then(|t| t.fired.get_mut(dest)) {
        *slot = Some(Instant::now());
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

fn fingerprint(alert: &Value) -> Arc<str> {
    alert["labels"].to_string().into()
}

/// What `emit` decided under the lock, done after it (a push may call back).
enum Route {
    All(Item),
    To(Vec<usize>, Item),
}

impl AlertmanagerSink {
    fn send(&self, what: Route) {
        let d = &self.shared.delivery;
        match what {
            Route::All(item) => d.push_all(&item),
            Route::To(dests, item) => {
                for dest in dests {
                    d.push(dest, item.clone());
                }
            }
        }
    }

    /// Tracks a windowed alert and says where it goes now.
    fn track(&self, am: Value, firing: bool) -> Route {
        let settings = &self.shared.settings;
        let n = self.shared.delivery.destinations();
        let fp = fingerprint(&am);
        let now = Instant::now();
        let mut s = self.shared.lock();
        let before = s.tracked.remove(&fp);
        let item = |tag: bool| Item {
            body: am.clone(),
            windowed: true,
            tag: tag.then(|| fp.clone()),
        };
        if firing {
            // A refresh of a firing alert keeps what is known of its delivery.
            let fired = match before {
                Some(t) if t.firing => t.fired,
                _ => vec![None; n],
            };
            s.tracked.insert(
                fp.clone(),
                Tracked {
                    alert: am.clone(),
                    firing: true,
                    next: now + settings.resend,
                    until: None,
                    fired,
                    held: vec![false; n],
                },
            );
            return Route::All(item(true));
        }
        // A resolve: held where its firing alert has not been settled long
        // enough ago. Without a tracked firing (a restart), nothing to wait for.
        let (fired, held) = match before {
            Some(t) if t.firing => {
                let held = t
                    .fired
                    .iter()
                    .map(|f| !released(*f, settings.resolve_delay, now))
                    .collect();
                (t.fired, held)
            }
            _ => (vec![Some(now); n], vec![false; n]),
        };
        let ready: Vec<usize> = (0..n).filter(|d| !held[*d]).collect();
        let all_ready = ready.len() == n;
        let out = item(false);
        s.tracked.insert(
            fp,
            Tracked {
                alert: am.clone(),
                firing: false,
                next: now + settings.resend,
                until: all_ready.then_some(now + RESOLVE_RESEND_FOR),
                fired,
                held,
            },
        );
        Route::To(ready, out)
    }
}

impl AlertSink for AlertmanagerSink {
    fn emit(&mut self, alert: &Alert) -> io::Result<()> {
        let settings = &self.shared.settings;
        let am = to_alertmanager(alert, settings.expiry, settings.resend);
        let what = match &alert.aggregate {
            Some(agg) => self.track(am, agg.ends_at_ns.is_none()),
            None => Route::All(Item {
                body: am,
                windowed: false,
                tag: None,
            }),
        };
        self.send(what);
        Ok(())
    }

    /// A firing alert this process re-learned: sent and tracked for
    /// re-sending, like a new one (Alertmanager merges it by its labels).
    fn refresh(&mut self, alert: &Alert) -> io::Result<()> {
        self.emit(alert)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MetricSource for AlertmanagerSink {
    fn render(&self, out: &mut String) {
        self.shared
            .delivery
            .render(out, "saker_alertmanager", false);
        super::metrics::head(
            out,
            "saker_alertmanager_resolves_held",
            "gauge",
            "Resolves waiting until their firing alert was accepted and the resolve delay passed.",
        );
        let _ = writeln!(out, "saker_alertmanager_resolves_held {}", self.held());
    }
}

/// Re-sends firing windowed alerts and recent resolves, and releases held
/// resolves, for the life of the process.
async fn resender(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let sends = due(&shared, Instant::now());
        let sink = AlertmanagerSink {
            shared: shared.clone(),
        };
        for what in sends {
            sink.send(what);
        }
    }
}

/// Whether a resolve may go where its firing alert was settled at `fired`.
fn released(fired: Option<Instant>, delay: Duration, now: Instant) -> bool {
    fired.is_some_and(|at| at.checked_add(delay).is_some_and(|t| now >= t))
}

/// What the timer sends at `now`.
fn due(shared: &Shared, now: Instant) -> Vec<Route> {
    let settings = &shared.settings;
    let mut s = shared.lock();
    s.tracked
        .retain(|_, t| t.held.iter().any(|h| *h) || t.until.is_none_or(|u| now < u));
    let mut out = Vec::new();
    for (fp, t) in s.tracked.iter_mut() {
        let item = Item {
            body: t.alert.clone(),
            windowed: true,
            tag: t.firing.then(|| fp.clone()),
        };
        if t.firing {
            if t.next <= now {
                t.next = now + settings.resend;
                t.alert["endsAt"] =
                    Value::String(rfc3339(now_ns() + 4 * settings.resend.as_nanos() as i64));
                out.push(Route::All(Item {
                    body: t.alert.clone(),
                    ..item
                }));
            }
            continue;
        }
        let release: Vec<usize> = (0..t.held.len())
            .filter(|&d| t.held[d] && released(t.fired[d], settings.resolve_delay, now))
            .collect();
        for &d in &release {
            t.held[d] = false;
        }
        if !release.is_empty() && t.held.iter().all(|h| !h) {
            t.until = Some(now + RESOLVE_RESEND_FOR);
        }
        let resend = t.next <= now;
        if resend {
            t.next = now + settings.resend;
        }
        let dests: Vec<usize> = (0..t.held.len())
            .filter(|d| !t.held[*d] && (resend || release.contains(d)))
            .collect();
        if !dests.is_empty() {
            out.push(Route::To(dests, item));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = |s: &str| alerts_url(s).map(|u| u.to_string());
        assert_eq!(
            u("http://127.0.0.1:9093").unwrap(),
            "http://127.0.0.1:9093/api/v2/alerts"
        );
        assert_eq!(
            u("http://am.local/alertmanager/").unwrap(),
            "http://am.local/alertmanager/api/v2/alerts"
        );
        let e = alerts_url("https://am.example.com").unwrap();
        assert_eq!(e.scheme(), "https");
        assert_eq!(e.port_or_known_default(), Some(443));
        assert!(alerts_url("am:9093").is_err());
    }

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(label_name("ka.user.name"), "ka_user_name");
        assert_eq!(label_name("ka.uri.param[command]"), "ka_uri_param_command_");
        assert_eq!(label_name("1x"), "_1x");
    }
}
