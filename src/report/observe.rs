//! What the report observes of the engine ([`crate::engine::observe`]):
//! each windowed rule's keys' values at every evaluated tick, and the audit
//! events behind the alerts, in bounded memory.
//!
//! - Values: a rule follows at most [`Caps::followed_keys`] keys at a time,
//!   each as a [`Series`]. A key that fired is never dropped; when the table
//!   is full a new key takes the place of the unfired key with the lowest
//!   peak, once its value is above that peak (or it fires). A key followed
//!   after its first evaluated tick is marked `partial`.
//! - Events: a per-event rule's last matching event (its alert is emitted
//!   next); per windowed rule, the last matching events of the most
//!   recently active keys; per sequence rule, the step events by audit ID;
//!   per first-seen rule, the events whose key may be new. All are
//!   [`EventRow`]s, capped (LRU) per rule.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;
use serde::Serialize;

use crate::engine::observe::{Measured, Observer};
use crate::event::{time, Event};
use crate::fields::{self, extract, Arg, FieldDef};
use crate::rules::stateful::StatefulRule;
use crate::rules::RuleSet;
use crate::sink::{Alert, StatefulInfo};
use crate::window::Key;

use super::series::Series;
use super::{Caps, KeySeries};

/// One audit event, as the page lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventRow {
    #[serde(serialize_with = "rfc3339")]
    pub time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verb: Option<Box<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Box<str>>,
    /// `resource` or `resource/subresource`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Box<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Box<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Box<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Box<str>>,
    #[serde(rename = "auditID", skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<Box<str>>,
    /// The sequence step this event was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

fn rfc3339<S: serde::Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time::format_rfc3339_nanos(*ns))
}

/// The fields an [`EventRow`] is read with.
struct RowFields([&'static FieldDef; 8]);

impl RowFields {
    fn new() -> Self {
        let f = |name| fields::lookup(name).expect("a built-in field");
        RowFields([
            f("ka.verb"),
            f("ka.user.name"),
            f("ka.target.resource"),
            f("ka.target.subresource"),
            f("ka.target.namespace"),
            f("ka.target.name"),
            f("ka.response.code"),
            f("ka.auditid"),
        ])
    }

    fn row(&self, ev: &Event<'_>) -> EventRow {
        let get = |i: usize| {
            extract::extract(ev, self.0[i], &Arg::None).map(|v| Box::from(v.render().as_ref()))
        };
        let resource = match (get(2), get(3)) {
            (Some(r), Some(s)) => Some(format!("{r}/{s}").into()),
            (r, _) => r,
        };
        EventRow {
            time: ev.time_ns,
            verb: get(0),
            user: get(1),
            resource,
            namespace: get(4),
            name: get(5),
            code: get(6),
            audit_id: get(7),
            step: None,
        }
    }
}

/// The events behind one alert.
#[derive(Debug, Default)]
pub struct Behind {
    /// The last ones (at most the cap), in time order.
    pub rows: Vec<EventRow>,
    /// How many there were in all (at least `rows.len()`).
    pub total: u64,
    /// What could not be shown, if anything.
    pub note: Option<String>,
}

/// A key's value and alerts, while followed.
struct Track {
    series: Series,
    peak: f64,
    first_ns: i64,
    fired_ns: Option<i64>,
    partial: bool,
    /// `(time_ns, value, firing)` of each alert, capped.
    alerts: Vec<(i64, f64, bool)>,
    periods: Vec<(i64, Option<i64>)>,
}

/// A key's last matching events: the last ones up to the tick it was last
/// evaluated at (as many as an alert shows), and those after it, which a
/// later alert may still count (at most [`PENDING`] times as many).
struct Recent {
    rows: VecDeque<EventRow>,
    /// The last tick evaluated.
    evaluated: i64,
    firing: bool,
    /// `(time_ns, events in the window)` at the key's last state changes.
    changes: VecDeque<(i64, u64)>,
}

struct Windowed {
    resolution_ns: i64,
    /// The window, in ticks.
    window: i64,
    threshold: f64,
    window_text: String,
    tracked: HashMap<Key, Track>,
    /// The lowest peak among the unfired keys followed, once computed.
    floor: Option<f64>,
    /// The keys evaluated (at most [`KEYS_COUNTED`]).
    seen: HashSet<Key>,
    alerts_unfollowed: u64,
    recent: LruCache<Key, Recent>,
}

enum Obs {
    /// A per-event rule: its last matching event.
    Event(Option<EventRow>),
    Windowed(Box<Windowed>),
    /// A sequence rule's step events, by audit ID.
    Sequence(LruCache<Box<str>, EventRow>),
    /// A first-seen rule's events whose key may be new, by key.
    FirstSeen(LruCache<Vec<String>, VecDeque<EventRow>>),
}

/// Everything observed, per rule (indexed like the rule set).
pub struct Observed {
    caps: Caps,
    fields: RowFields,
    rules: Vec<Obs>,
    by_name: HashMap<String, usize>,
}

/// Events of one first-seen key held until its alert.
const FIRST_SEEN_PER_KEY: usize = 4;

/// How many times an alert's events a windowed key holds at most.
const PENDING: usize = 10;

/// Distinct keys of a windowed rule counted, for the page to say how many
/// it draws of how many.
const KEYS_COUNTED: usize = 100_000;

impl Recent {
    /// Drops the events that no alert at or after the evaluated tick can
    /// show: those with `n` later ones at or before that tick.
    fn prune(&mut self, n: usize, resolution_ns: i64) {
        let n = n.max(1);
        let evaluated = |r: &EventRow| r.time.div_euclid(resolution_ns) <= self.evaluated;
        while self.rows.len() > n && (evaluated(&self.rows[n]) || self.rows.len() > PENDING * n) {
            self.rows.pop_front();
        }
    }
}

impl Observed {
    pub fn new(caps: Caps, set: &RuleSet) -> Self {
        let rules = set
            .rules
            .iter()
            .map(|r| match (&r.aggregate, &r.stateful) {
                (Some(a), _) => Obs::Windowed(Box::new(Windowed {
                    resolution_ns: (a.spec.resolution_ns as i64).max(1),
                    window: a.spec.window,
                    threshold: a.spec.threshold.as_f64(),
                    window_text: a.window_text.clone(),
                    tracked: HashMap::new(),
                    floor: None,
                    seen: HashSet::new(),
                    alerts_unfollowed: 0,
                    recent: crate::window::capped::lru(caps.keys_with_events),
                })),
                (_, Some(StatefulRule::Sequence(_))) => {
                    Obs::Sequence(crate::window::capped::lru(caps.held_events))
                }
                (_, Some(StatefulRule::FirstSeen(_))) => {
                    Obs::FirstSeen(crate::window::capped::lru(caps.held_events))
                }
                _ => Obs::Event(None),
            })
            .collect();
        let by_name = set
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        Observed {
            caps,
            fields: RowFields::new(),
            rules,
            by_name,
        }
    }

    /// The rule's index, by name.
    pub fn rule(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    fn event(&mut self, rule: usize, key: Option<&[String]>, ev: &Event<'_>) {
        let shown = self.caps.events_per_alert;
        let Some(obs) = self.rules.get_mut(rule) else {
            return;
        };
        let row = self.fields.row(ev);
        match obs {
            Obs::Event(last) => *last = Some(row),
            Obs::Windowed(w) => {
                let Some(key) = key else { return };
                if !w.recent.contains(key) {
                    let fresh = Recent {
                        rows: VecDeque::new(),
                        evaluated: i64::MIN,
                        firing: false,
                        changes: VecDeque::new(),
                    };
                    w.recent.put(Key::from(key), fresh);
                }
                let Some(recent) = w.recent.get_mut(key) else {
                    return;
                };
                recent.rows.push_back(row);
                recent.prune(shown, w.resolution_ns);
            }
            Obs::Sequence(held) => {
                if let Some(id) = row.audit_id.clone() {
                    held.put(id, row);
                }
            }
            Obs::FirstSeen(held) => {
                let Some(key) = key else { return };
                if !held.contains(key) {
                    held.put(key.to_vec(), VecDeque::new());
                }
                let Some(rows) = held.get_mut(key) else {
                    return;
                };
                if rows.len() == FIRST_SEEN_PER_KEY {
                    rows.pop_front();
                }
                rows.push_back(row);
            }
        }
    }

    fn measured(&mut self, m: Measured) {
        let (followed, points) = (self.caps.followed_keys.max(1), self.caps.points_per_key);
        let shown = self.caps.events_per_alert;
        let Some(Obs::Windowed(w)) = self.rules.get_mut(m.rule) else {
            return;
        };
        if m.first && w.seen.len() < KEYS_COUNTED && !w.seen.contains(&m.key) {
            w.seen.insert(m.key.clone());
        }
        if let Some(r) = w.recent.peek_mut(&m.key) {
            r.evaluated = m.time_ns.div_euclid(w.resolution_ns);
            r.prune(shown, w.resolution_ns);
            if r.firing != m.firing {
                if r.changes.len() == 8 {
                    r.changes.pop_front();
                }
                r.changes.push_back((m.time_ns, m.events));
                r.firing = m.firing;
            }
        }
        if let Some(t) = w.tracked.get_mut(&m.key) {
            t.series.push(m.time_ns, m.value);
            if m.value > t.peak || (m.firing && t.fired_ns.is_none()) {
                w.floor = None;
            }
            t.peak = t.peak.max(m.value);
            if m.firing && t.fired_ns.is_none() {
                t.fired_ns = Some(m.time_ns);
            }
            return;
        }
        if w.tracked.len() >= followed {
            let floor = *w.floor.get_or_insert_with(|| {
                w.tracked
                    .values()
                    .filter(|t| t.fired_ns.is_none())
                    .map(|t| t.peak)
                    .fold(f64::INFINITY, f64::min)
            });
            if floor.is_infinite() || (!m.firing && m.value <= floor) {
                return;
            }
            let victim = w
                .tracked
                .iter()
                .filter(|(_, t)| t.fired_ns.is_none())
                .min_by(|a, b| {
                    a.1.peak
                        .total_cmp(&b.1.peak)
                        .then(b.1.first_ns.cmp(&a.1.first_ns))
                })
                .map(|(k, _)| k.clone());
            if let Some(k) = victim {
                w.tracked.remove(&k);
            }
        }
        let mut series = Series::new(points);
        series.push(m.time_ns, m.value);
        w.floor = None;
        w.tracked.insert(
            m.key,
            Track {
                series,
                peak: m.value,
                first_ns: m.time_ns,
                fired_ns: m.firing.then_some(m.time_ns),
                partial: !m.first,
                alerts: Vec::new(),
                periods: Vec::new(),
            },
        );
    }

    /// A windowed rule's alert, drawn on its key's line if the key is
    /// followed.
    pub fn windowed_alert(&mut self, rule: usize, alert: &Alert) {
        let points = self.caps.points_per_key;
        let (Some(Obs::Windowed(w)), Some(a)) = (self.rules.get_mut(rule), &alert.aggregate) else {
            return;
        };
        let key: Vec<String> = a.key.iter().map(|(_, v)| v.clone()).collect();
        let Some(t) = w.tracked.get_mut(key.as_slice()) else {
            w.alerts_unfollowed += 1;
            return;
        };
        if t.alerts.len() < points {
            t.alerts.push((alert.time_ns, a.value, a.firing));
            if a.firing {
                t.periods.push((a.starts_at_ns, None));
            } else if let Some(p) = t.periods.last_mut() {
                p.1 = Some(a.ends_at_ns.unwrap_or(alert.time_ns));
            }
        }
    }

    /// The events behind `alert` of rule `rule`: at most `n` of them.
    pub fn behind(&mut self, rule: usize, alert: &Alert, n: usize) -> Behind {
        let Some(obs) = self.rules.get_mut(rule) else {
            return Behind::default();
        };
        match obs {
            Obs::Event(last) => match last.take() {
                Some(row) if row.time == alert.time_ns => Behind {
                    rows: vec![row],
                    total: 1,
                    note: None,
                },
                _ => Behind {
                    total: 1,
                    note: Some("the event was not held".into()),
                    ..Behind::default()
                },
            },
            Obs::Windowed(w) => windowed_behind(w, alert, n),
            Obs::Sequence(held) => {
                let Some(StatefulInfo::Sequence { steps, .. }) = &alert.stateful else {
                    return Behind::default();
                };
                let mut rows = Vec::new();
                for s in steps {
                    let row = s.audit_id.as_deref().and_then(|id| held.peek(id));
                    if let Some(row) = row {
                        let mut row = row.clone();
                        row.step = Some(s.name.clone());
                        rows.push(row);
                    }
                }
                let missing = steps.len() - rows.len();
                Behind {
                    total: steps.len() as u64,
                    note: (missing > 0).then(|| format!("{missing} step event(s) no longer held")),
                    rows,
                }
            }
            Obs::FirstSeen(held) => {
                let Some(StatefulInfo::FirstSeen { key, .. }) = &alert.stateful else {
                    return Behind::default();
                };
                let key: Vec<String> = key.iter().map(|(_, v)| v.clone()).collect();
                let row = held
                    .peek(&key)
                    .and_then(|rows| rows.iter().find(|r| r.time == alert.time_ns))
                    .cloned();
                Behind {
                    total: 1,
                    note: row.is_none().then(|| "the event was no longer held".into()),
                    rows: row.into_iter().collect(),
                }
            }
        }
    }

    /// A windowed rule's keys to draw (those that fired first, then the
    /// highest peaks, at most `keys`), and what was left out, in words.
    pub fn series(&mut self, rule: usize, name: &str, notes: &mut Vec<String>) -> Vec<KeySeries> {
        let caps = self.caps;
        let Some(Obs::Windowed(w)) = self.rules.get_mut(rule) else {
            return Vec::new();
        };
        let mut tracks: Vec<(Key, Track)> = w.tracked.drain().collect();
        tracks.sort_by(|a, b| {
            let fired = |t: &Track| t.fired_ns.unwrap_or(i64::MAX);
            fired(&a.1)
                .cmp(&fired(&b.1))
                .then(b.1.peak.total_cmp(&a.1.peak))
                .then(a.0.cmp(&b.0))
        });
        tracks.truncate(caps.keys_per_rule);
        if w.seen.len() > tracks.len() {
            let of = if w.seen.len() >= KEYS_COUNTED {
                format!("more than {KEYS_COUNTED}")
            } else {
                w.seen.len().to_string()
            };
            notes.push(format!(
                "{name}: {} of {of} keys drawn (those that fired first, then the highest peaks, of at most {} followed at a time)",
                tracks.len(),
                caps.followed_keys
            ));
        }
        if w.alerts_unfollowed > 0 {
            notes.push(format!(
                "{name}: {} alerts of keys not followed are not drawn",
                w.alerts_unfollowed
            ));
        }
        let reduced = tracks
            .iter()
            .filter(|(_, t)| t.series.pushed() > caps.points_per_key as u64)
            .count();
        if reduced > 0 {
            notes.push(format!(
                "{name}: {reduced} key(s) evaluated at more than {} ticks are drawn with {} points at most (the lowest and highest value of each interval kept)",
                caps.points_per_key, caps.points_per_key
            ));
        }
        let partial = tracks.iter().filter(|(_, t)| t.partial).count();
        if partial > 0 {
            notes.push(format!(
                "{name}: the line of {partial} key(s) starts where it was first followed, after its first evaluated tick"
            ));
        }
        tracks
            .into_iter()
            .map(|(key, t)| KeySeries {
                key: key_text(&key),
                threshold: w.threshold,
                window: w.window_text.clone(),
                evaluated: t.series.pushed(),
                peak: t.peak,
                partial: t.partial,
                points: t.series.finish(),
                alerts: t.alerts,
                periods: t.periods,
            })
            .collect()
    }
}

/// `a, b` for a key's values.
pub fn key_text(key: &[String]) -> String {
    key.join(", ")
}

fn windowed_behind(w: &mut Windowed, alert: &Alert, n: usize) -> Behind {
    let Some(a) = &alert.aggregate else {
        return Behind::default();
    };
    let key: Vec<String> = a.key.iter().map(|(_, v)| v.clone()).collect();
    let res = w.resolution_ns;
    let tick = alert.time_ns.div_euclid(res);
    let inside = |t: i64| {
        let t = t.div_euclid(res);
        t > tick - w.window && t <= tick
    };
    let Some(recent) = w.recent.peek(key.as_slice()) else {
        return Behind {
            note: Some("the key's events were not held (more recently active keys were)".into()),
            ..Behind::default()
        };
    };
    let rows: Vec<EventRow> = recent
        .rows
        .iter()
        .filter(|r| inside(r.time))
        .cloned()
        .collect();
    let counted = recent
        .changes
        .iter()
        .rev()
        .find(|(t, _)| *t == alert.time_ns)
        .map(|(_, n)| *n);
    let total = counted.unwrap_or(rows.len() as u64).max(rows.len() as u64);
    let skip = rows.len().saturating_sub(n);
    let rows: Vec<EventRow> = rows.into_iter().skip(skip).collect();
    let note = if (rows.len() as u64) < total {
        Some(format!(
            "the last {} of the {total} matching events of the key in the window",
            rows.len()
        ))
    } else {
        None
    };
    Behind { rows, total, note }
}

/// The observer the engine is given: the [`Observed`] it shares with the
/// report's collector.
pub struct Handle(pub Arc<Mutex<Observed>>);

impl Observer for Handle {
    fn event(&mut self, rule: usize, key: Option<&[String]>, ev: &Event<'_>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .event(rule, key, ev);
    }

    fn measured(&mut self, m: Measured) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .measured(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, RuleMatching};
    use crate::report::{Collector, Health};
    use crate::rules::RuleSource;
    use crate::sink::AlertSink;
    use crate::source::lines::Line;

    const RULES: &str = r#"
- rule: Burst
  desc: gets of one user
  condition: ka.verb = get
  aggregate: count > 2 over 10s by ka.user.name
  output: "%ka.user.name %agg.value"
  priority: WARNING
  source: k8s_audit
- rule: Delete
  desc: any delete
  condition: ka.verb = delete
  output: "%ka.user.name deleted"
  priority: NOTICE
  source: k8s_audit
- rule: Patch Then Delete
  desc: a patch, then a delete by the same user
  sequence:
    within: 10s
    steps:
      - {name: patched, condition: ka.verb = patch, by: [ka.user.name]}
      - {name: deleted, condition: ka.verb = delete, by: [ka.user.name]}
  output: "%deleted.ka.user.name"
  priority: WARNING
  source: k8s_audit
- rule: New Lister
  desc: a user listing, not seen listing for 2s
  condition: ka.verb = list
  aggregate: first_seen over 2s by ka.user.name
  output: "%ka.user.name lists"
  priority: NOTICE
  source: k8s_audit
"#;

    fn set() -> RuleSet {
        crate::rules::load(&[RuleSource::Embedded("rules.yaml", RULES)])
            .rules
            .expect("rules")
    }

    fn line(sec: u32, verb: &str, user: &str) -> String {
        format!(
            r#"{{"auditID":"{user}-{sec}","stage":"ResponseComplete","verb":"{verb}","user":{{"username":"{user}"}},"objectRef":{{"resource":"pods","namespace":"ns","name":"p{sec}"}},"responseStatus":{{"code":200}},"stageTimestamp":"2024-10-29T12:00:{sec:02}Z"}}"#
        )
    }

    const T0: i64 = 1_730_203_200_000_000_000;
    const S: i64 = 1_000_000_000;

    #[test]
    fn a_replay_gives_every_evaluated_tick_and_the_events_behind_each_alert() {
        let set = set();
        let mut collector = Collector::new(Caps::default(), &set);
        let mut engine = Engine::new(&set, RuleMatching::First);
        engine.observe(collector.observer());
        // alice gets at 0..=5 s, bob once at 3 s, carol patches at 3 s and
        // deletes at 4 s, dave lists at 5 s (after the first-seen rule's
        // learning period).
        let mut lines: Vec<String> = (0..6).map(|s| line(s, "get", "alice")).collect();
        lines.insert(3, line(3, "get", "bob"));
        lines.insert(4, line(3, "patch", "carol"));
        lines.insert(6, line(4, "delete", "carol"));
        lines.push(line(5, "list", "dave"));
        for l in &lines {
            engine
                .process_line(Line::Text(l.as_bytes()), &mut collector)
                .unwrap();
        }
        engine.finish(&mut collector).unwrap();
        collector.flush().unwrap();
        let data = collector.finish("test".into(), Health::default(), &Vec::new(), 0, None);
        let burst = data.rules.iter().find(|r| r.name == "Burst").unwrap();
        let alice = burst.keys.iter().find(|k| k.key == "alice").unwrap();
        // Up by one a second to 6, then down by one a second from 10 s as
        // the events leave the 10 s window.
        let expected: Vec<(i64, f64)> = (0..6)
            .map(|s| (T0 + s * S, (s + 1) as f64))
            .chain((10..16).map(|s| (T0 + s * S, (15 - s) as f64)))
            .collect();
        assert_eq!(alice.points, expected);
        assert_eq!(
            (alice.evaluated, alice.peak, alice.partial),
            (12, 6.0, false)
        );
        assert_eq!(
            alice.alerts,
            [(T0 + 2 * S, 3.0, true), (T0 + 13 * S, 2.0, false)]
        );
        assert_eq!(alice.periods, [(T0 + 2 * S, Some(T0 + 13 * S))]);
        // alice fired, so she is drawn first; bob never did.
        assert_eq!(burst.keys[0].key, "alice");
        assert_eq!(
            burst.keys[1].points,
            [(T0 + 3 * S, 1.0), (T0 + 13 * S, 0.0)]
        );
        // The firing alert: the three events in its window (of the six
        // alice's key had seen when it was emitted).
        let firing = &burst.listed[0];
        assert_eq!(firing.state, Some("firing"));
        assert_eq!(firing.events_total, 3);
        let ids: Vec<_> = firing
            .events
            .iter()
            .map(|e| e.audit_id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["alice-0", "alice-1", "alice-2"]);
        let e = &firing.events[0];
        assert_eq!(
            (e.verb.as_deref(), e.user.as_deref(), e.resource.as_deref()),
            (Some("get"), Some("alice"), Some("pods"))
        );
        assert_eq!(
            (e.namespace.as_deref(), e.name.as_deref(), e.code.as_deref()),
            (Some("ns"), Some("p0"), Some("200"))
        );
        // The resolve at 13 s: its window (3 s, 13 s] holds 4 and 5.
        let resolved = &burst.listed[1];
        assert_eq!(resolved.events_total, 2);
        assert_eq!(resolved.events.len(), 2);
        // A per-event alert: its own event.
        let delete = data.rules.iter().find(|r| r.name == "Delete").unwrap();
        let ids: Vec<_> = delete.listed[0]
            .events
            .iter()
            .map(|e| e.audit_id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["carol-4"]);
        // A sequence: its step events, named.
        let seq = data
            .rules
            .iter()
            .find(|r| r.name == "Patch Then Delete")
            .unwrap();
        let steps: Vec<_> = seq.listed[0]
            .events
            .iter()
            .map(|e| (e.step.as_deref().unwrap(), e.audit_id.as_deref().unwrap()))
            .collect();
        assert_eq!(steps, [("patched", "carol-3"), ("deleted", "carol-4")]);
        assert_eq!(seq.listed[0].events_total, 2);
        // A first-seen alert: its event.
        let new = data.rules.iter().find(|r| r.name == "New Lister").unwrap();
        let ids: Vec<_> = new.listed[0]
            .events
            .iter()
            .map(|e| e.audit_id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["dave-5"]);
        assert!(data.caps.is_empty(), "{:?}", data.caps);
    }

    #[test]
    fn events_behind_alerts_are_capped_per_alert_and_per_page_and_said() {
        let set = set();
        let caps = Caps {
            events_per_alert: 2,
            event_rows: 5,
            ..Caps::default()
        };
        let mut collector = Collector::new(caps, &set);
        let mut engine = Engine::new(&set, RuleMatching::First);
        engine.observe(collector.observer());
        // carol's deletes at 30 s move the watermark past both of alice's
        // alerts at once (after carol's first alert).
        let lines = (0..6)
            .map(|s| line(s, "get", "alice"))
            .chain((30..32).map(|s| line(s, "delete", "carol")));
        for l in lines {
            engine
                .process_line(Line::Text(l.as_bytes()), &mut collector)
                .unwrap();
        }
        engine.finish(&mut collector).unwrap();
        let data = collector.finish("test".into(), Health::default(), &Vec::new(), 0, None);
        let ids = |l: &crate::report::Listed| -> Vec<String> {
            l.events
                .iter()
                .map(|e| e.audit_id.as_deref().unwrap().to_string())
                .collect()
        };
        let burst = data.rules.iter().find(|r| r.name == "Burst").unwrap();
        // The firing alert at 2 s (alice's key held all six events then):
        // the last two of the three in its window.
        assert_eq!(ids(&burst.listed[0]), ["alice-1", "alice-2"]);
        assert_eq!(burst.listed[0].events_total, 3);
        let note = burst.listed[0].events_note.as_deref().unwrap();
        assert!(note.contains("last 2 of the 3"), "{note}");
        // The resolve at 13 s, evaluated in the same step: the two events
        // of its window.
        assert_eq!(ids(&burst.listed[1]), ["alice-4", "alice-5"]);
        // The deletes: the first takes the first of the page's five
        // events, the second comes when they are gone.
        let delete = data.rules.iter().find(|r| r.name == "Delete").unwrap();
        assert_eq!(ids(&delete.listed[0]), ["carol-30"]);
        assert!(delete.listed[1].events.is_empty());
        let said =
            "Delete: 1 listed alerts without their events (the page carries 5 events at most)";
        assert!(data.caps.iter().any(|c| c == said), "{:?}", data.caps);
        // Beyond a rule's first alerts, none carries its events.
        let caps = Caps {
            alerts_with_events: 1,
            ..Caps::default()
        };
        let mut collector = Collector::new(caps, &set);
        let mut engine = Engine::new(&set, RuleMatching::First);
        engine.observe(collector.observer());
        for s in 0..6 {
            let l = line(s, "get", "alice");
            engine
                .process_line(Line::Text(l.as_bytes()), &mut collector)
                .unwrap();
        }
        engine.finish(&mut collector).unwrap();
        let data = collector.finish("test".into(), Health::default(), &Vec::new(), 0, None);
        let burst = data.rules.iter().find(|r| r.name == "Burst").unwrap();
        assert_eq!(burst.listed[0].events.len(), 3);
        assert!(burst.listed[1].events.is_empty());
        let said = "Burst: 1 listed alerts without their events (the first 1 carry them)";
        assert!(data.caps.iter().any(|c| c == said), "{:?}", data.caps);
    }

    fn measured(key: &str, sec: i64, value: f64, firing: bool, first: bool) -> Measured {
        Measured {
            rule: 0,
            time_ns: T0 + sec * S,
            key: Key::from(vec![key.to_string()]),
            value,
            events: value as u64,
            firing,
            first,
        }
    }

    #[test]
    fn keys_that_fired_stay_followed_and_a_higher_key_takes_the_lowest_place() {
        let caps = Caps {
            followed_keys: 2,
            keys_per_rule: 2,
            ..Caps::default()
        };
        let mut o = Observed::new(caps, &set());
        o.measured(measured("a", 0, 5.0, true, true));
        o.measured(measured("b", 0, 1.0, false, true));
        // c is not above b's peak: not followed.
        o.measured(measured("c", 1, 1.0, false, true));
        // d goes above it: it takes b's place, from its second tick on.
        o.measured(measured("d", 1, 1.0, false, true));
        o.measured(measured("d", 2, 2.0, false, false));
        // e fires: a fired too, so d's place is e's.
        o.measured(measured("e", 3, 9.0, true, true));
        // f fires when every key followed has fired: not followed.
        o.measured(measured("f", 4, 9.0, true, true));
        let mut notes = Vec::new();
        let keys = o.series(0, "Burst", &mut notes);
        let drawn: Vec<(&str, bool)> = keys.iter().map(|k| (k.key.as_str(), k.partial)).collect();
        assert_eq!(drawn, [("a", false), ("e", false)]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("Burst: 2 of 6 keys drawn"),
            "{notes:?}"
        );
        // d was followed from a tick that was not its first.
        let mut o = Observed::new(caps, &set());
        o.measured(measured("a", 0, 1.0, false, true));
        o.measured(measured("b", 0, 1.0, false, true));
        o.measured(measured("d", 2, 2.0, false, false));
        let keys = o.series(0, "Burst", &mut Vec::new());
        let d = keys.iter().find(|k| k.key == "d").unwrap();
        assert!(d.partial);
        assert_eq!(d.points, [(T0 + 2 * S, 2.0)]);
    }
}
