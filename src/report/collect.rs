//! The [`Collector`]: an [`AlertSink`] that keeps, per rule, every alert's
//! time (8 bytes each, for the lane's buckets) and a capped sample of the
//! rest, with the events behind the first alerts, and counts alerts per
//! identity. What the engine's observer saw ([`Observed`]) is shared with
//! it: the events behind alerts, and the windowed keys' values.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use crate::engine::observe::Observer;
use crate::event::time;
use crate::rules::{Priority, RuleSet};
use crate::sink::{Alert, AlertSink, StatefulInfo};

use super::observe::{key_text, Handle, Observed};
use super::{
    Bucket, Caps, Health, Identity, Listed, PolicyData, ReportData, RuleData, Sequence, Touched,
};

/// What one rule's alerts left.
struct Lane {
    name: String,
    priority: Priority,
    kind: &'static str,
    times: Vec<i64>,
    /// The output of the first alert of each second (capped), for the
    /// buckets' hover text.
    outputs: BTreeMap<i64, String>,
    listed: Vec<Listed>,
    /// Listed alerts without their events: beyond the rule's share, and
    /// beyond the page's.
    without_events: u64,
    over_budget: u64,
    sequences: Vec<Sequence>,
    sequences_capped: u64,
}

/// Seconds whose first alert's output a lane keeps.
const OUTPUT_SECONDS: usize = 10_000;

pub struct Collector {
    caps: Caps,
    lanes: Vec<Lane>,
    by_name: HashMap<String, usize>,
    /// Alerts per identity, per rule.
    identities: HashMap<String, BTreeMap<String, u64>>,
    observed: Arc<Mutex<Observed>>,
    /// Events the listed alerts carry, in all.
    rows: usize,
}

/// The identity an alert is about: the first output field that is a
/// `ka.user.name` (of a sequence step too), else the window key's.
fn identity(alert: &Alert) -> Option<String> {
    let field = alert
        .fields
        .iter()
        .find(|(n, v)| (*n == "ka.user.name" || n.ends_with(".ka.user.name")) && v.is_some())
        .and_then(|(_, v)| v.as_ref().map(|v| v.render().into_owned()));
    field.or_else(|| {
        alert
            .aggregate
            .as_ref()
            .and_then(|a| a.key.iter().find(|(k, _)| k == "ka.user.name"))
            .map(|(_, v)| v.clone())
    })
}

impl Collector {
    /// A collector for a replay of `rules`.
    pub fn new(caps: Caps, rules: &RuleSet) -> Self {
        Collector {
            caps,
            lanes: Vec::new(),
            by_name: HashMap::new(),
            identities: HashMap::new(),
            observed: Arc::new(Mutex::new(Observed::new(caps, rules))),
            rows: 0,
        }
    }

    /// The observer to give the engine ([`crate::engine::Engine::observe`]).
    pub fn observer(&self) -> Box<dyn Observer> {
        Box::new(Handle(self.observed.clone()))
    }

    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lane(&mut self, alert: &Alert) -> &mut Lane {
        let i = match self.by_name.get(alert.rule) {
            Some(i) => *i,
            None => {
                let kind = match (&alert.aggregate, &alert.stateful) {
                    (Some(_), _) => "windowed",
                    (_, Some(StatefulInfo::Sequence { .. })) => "sequence",
                    (_, Some(StatefulInfo::FirstSeen { .. })) => "first-seen",
                    _ => "event",
                };
                self.lanes.push(Lane {
                    name: alert.rule.to_string(),
                    priority: alert.priority,
                    kind,
                    times: Vec::new(),
                    outputs: BTreeMap::new(),
                    listed: Vec::new(),
                    without_events: 0,
                    over_budget: 0,
                    sequences: Vec::new(),
                    sequences_capped: 0,
                });
                self.by_name
                    .insert(alert.rule.to_string(), self.lanes.len() - 1);
                self.lanes.len() - 1
            }
        };
        &mut self.lanes[i]
    }

    /// The report: `touched` is the events counted by (user, verb,
    /// resource) during the replay, `overflow` those beyond its cap.
    pub fn finish(
        self,
        input: String,
        health: Health,
        touched: &Touched,
        touched_overflow: u64,
        policy: Option<PolicyData>,
    ) -> ReportData {
        let caps = self.caps;
        let mut notes = Vec::new();
        let first = self
            .lanes
            .iter()
            .filter_map(|l| l.times.iter().min())
            .min()
            .copied();
        let last = self
            .lanes
            .iter()
            .filter_map(|l| l.times.iter().max())
            .max()
            .copied();
        let span = first.zip(last).map(|(a, b)| (a, b.max(a + 1)));
        let mut alerts_by_rule = BTreeMap::new();
        let mut rules = Vec::new();
        let mut observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
        for lane in self.lanes {
            let n = lane.times.len() as u64;
            alerts_by_rule.insert(lane.name.clone(), n);
            if n > lane.listed.len() as u64 {
                notes.push(format!(
                    "{}: {} of {n} alerts listed",
                    lane.name,
                    lane.listed.len()
                ));
            }
            if lane.without_events > 0 {
                notes.push(format!(
                    "{}: {} listed alerts without their events (the first {} carry them)",
                    lane.name, lane.without_events, caps.alerts_with_events
                ));
            }
            if lane.over_budget > 0 {
                notes.push(format!(
                    "{}: {} listed alerts without their events (the page carries {} events at most)",
                    lane.name, lane.over_budget, caps.event_rows
                ));
            }
            let keys = match observed.rule(&lane.name) {
                Some(i) if lane.kind == "windowed" => observed.series(i, &lane.name, &mut notes),
                _ => Vec::new(),
            };
            if lane.sequences_capped > 0 {
                notes.push(format!(
                    "{}: {} more completed sequences not drawn",
                    lane.name, lane.sequences_capped
                ));
            }
            let buckets = span.map_or_else(Vec::new, |s| buckets(&lane, s, caps.buckets));
            rules.push(RuleData {
                name: lane.name,
                priority: lane.priority.as_str(),
                kind: lane.kind,
                alerts: n,
                buckets,
                listed: lane.listed,
                keys,
                sequences: lane.sequences,
            });
        }
        // Most severe first (Priority orders Emergency first), then most alerts.
        rules.sort_by(|a, b| {
            let p = |r: &RuleData| Priority::parse(r.priority).map_or(99, |p| p as u8);
            p(a).cmp(&p(b))
                .then(b.alerts.cmp(&a.alerts))
                .then(a.name.cmp(&b.name))
        });
        let identities = identities(self.identities, touched, caps, &mut notes);
        if touched_overflow > 0 {
            notes.push(format!(
                "{touched_overflow} events of (user, verb, resource) combinations beyond the counter's cap are not in the identities' resources and verbs"
            ));
        }
        ReportData {
            input,
            first_alert: first.map(time::format_rfc3339_nanos),
            last_alert: last.map(time::format_rfc3339_nanos),
            alerts_total: alerts_by_rule.values().sum(),
            alerts_by_rule,
            rules,
            identities,
            health,
            caps: notes,
            policy,
        }
    }
}

/// A lane's alerts counted in `n` equal buckets over `span`.
fn buckets(lane: &Lane, (start, end): (i64, i64), n: usize) -> Vec<Bucket> {
    let n = n.max(1);
    let width = ((end - start) as f64 / n as f64).max(1.0);
    let mut counts: BTreeMap<usize, u64> = BTreeMap::new();
    for t in &lane.times {
        *counts
            .entry((((t - start) as f64 / width) as usize).min(n - 1))
            .or_insert(0) += 1;
    }
    let index = |t: i64| (((t - start) as f64 / width) as usize).min(n - 1);
    counts
        .into_iter()
        .map(|(b, count)| {
            let start_ns = start + (b as f64 * width) as i64;
            let end_ns = start + ((b + 1) as f64 * width) as i64;
            let second = |t: i64| t.div_euclid(1_000_000_000);
            Bucket {
                alert: lane.listed.iter().position(|l| index(l.time_ns) == b),
                start_ns,
                end_ns,
                count,
                first_output: lane
                    .outputs
                    .range(second(start_ns)..=second(end_ns))
                    .next()
                    .map(|(_, o)| o.clone())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn top(map: BTreeMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<_> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

fn identities(
    alerts: HashMap<String, BTreeMap<String, u64>>,
    touched: &Touched,
    caps: Caps,
    notes: &mut Vec<String>,
) -> Vec<Identity> {
    let mut list: Vec<(String, BTreeMap<String, u64>)> = alerts.into_iter().collect();
    list.sort_by(|a, b| {
        let n = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
        n(&b.1).cmp(&n(&a.1)).then(a.0.cmp(&b.0))
    });
    if list.len() > caps.identities {
        notes.push(format!(
            "{} of {} identities listed",
            caps.identities,
            list.len()
        ));
        list.truncate(caps.identities);
    }
    list.into_iter()
        .map(|(name, by_rule)| {
            let mut resources = BTreeMap::new();
            let mut verbs = BTreeMap::new();
            let mut events = 0;
            for ((user, verb, resource), n) in touched {
                if *user == name {
                    events += n;
                    *verbs.entry(verb.clone()).or_insert(0) += n;
                    let r = if resource.is_empty() {
                        "(no resource)"
                    } else {
                        resource
                    };
                    *resources.entry(r.to_string()).or_insert(0) += n;
                }
            }
            Identity {
                alerts: by_rule.values().sum(),
                name,
                by_rule,
                events,
                resources: top(resources, caps.touched),
                verbs: top(verbs, caps.touched),
            }
        })
        .collect()
}

impl AlertSink for Collector {
    fn emit(&mut self, alert: &Alert) -> io::Result<()> {
        let caps = self.caps;
        let who = identity(alert).unwrap_or_else(|| "(no user)".to_string());
        *self
            .identities
            .entry(who)
            .or_default()
            .entry(alert.rule.to_string())
            .or_insert(0) += 1;
        let rule = self.observed().rule(alert.rule);
        if let (Some(i), Some(_)) = (rule, &alert.aggregate) {
            self.observed().windowed_alert(i, alert);
        }
        let budget = caps.event_rows.saturating_sub(self.rows);
        let lane = self.lane(alert);
        lane.times.push(alert.time_ns);
        let output = crate::sink::stdout::falco_line(alert);
        if lane.outputs.len() < OUTPUT_SECONDS {
            lane.outputs
                .entry(alert.time_ns.div_euclid(1_000_000_000))
                .or_insert_with(|| output.clone());
        }
        let listed = lane.listed.len() < caps.alerts_per_rule;
        let carries = listed && lane.listed.len() < caps.alerts_with_events;
        if listed && !carries {
            lane.without_events += 1;
        }
        if carries && budget == 0 {
            lane.over_budget += 1;
        }
        let behind = match rule {
            Some(i) if carries && budget > 0 => {
                let n = caps.events_per_alert.min(budget);
                let b = self
                    .observed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .behind(i, alert, n);
                Some(b)
            }
            _ => None,
        };
        self.rows += behind.as_ref().map_or(0, |b| b.rows.len());
        let lane = self.lane(alert);
        if listed {
            let behind = behind.unwrap_or_default();
            lane.listed.push(Listed {
                time: time::format_rfc3339_nanos(alert.time_ns),
                time_ns: alert.time_ns,
                output,
                state: alert
                    .aggregate
                    .as_ref()
                    .map(|a| if a.firing { "firing" } else { "resolved" }),
                key: alert
                    .aggregate
                    .as_ref()
                    .map(|a| key_text(&a.key.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>())),
                events: behind.rows,
                events_total: behind.total,
                events_note: behind.note,
            });
        }
        if let Some(StatefulInfo::Sequence { within, key, steps }) = &alert.stateful {
            if lane.sequences.len() < caps.sequences_per_rule {
                lane.sequences.push(Sequence {
                    key: key.join(", "),
                    within: within.clone(),
                    steps: steps
                        .iter()
                        .map(|s| (s.name.clone(), s.time_ns, s.audit_id.clone()))
                        .collect(),
                    alert: listed.then(|| lane.listed.len() - 1),
                });
            } else {
                lane.sequences_capped += 1;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
