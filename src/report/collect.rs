//! The [`Collector`]: an [`AlertSink`] that keeps, per rule, every alert's
//! time (8 bytes each, for the lane's buckets) and a capped sample of the
//! rest, and counts alerts per identity.

use std::collections::{BTreeMap, HashMap};
use std::io;

use crate::event::time;
use crate::rules::Priority;
use crate::sink::{Alert, AlertSink, StatefulInfo};

use super::{
    Bucket, Caps, Health, Identity, KeySeries, Listed, PolicyData, ReportData, RuleData, Sequence,
    Touched,
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
    keys: Vec<KeySeries>,
    keys_capped: u64,
    points_capped: u64,
    sequences: Vec<Sequence>,
    sequences_capped: u64,
}

/// Seconds whose first alert's output a lane keeps.
const OUTPUT_SECONDS: usize = 10_000;

#[derive(Default)]
pub struct Collector {
    caps: Caps,
    lanes: Vec<Lane>,
    by_name: HashMap<String, usize>,
    /// Alerts per identity, per rule.
    identities: HashMap<String, BTreeMap<String, u64>>,
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

fn key_text(key: &[(String, String)]) -> String {
    key.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Collector {
    pub fn new(caps: Caps) -> Self {
        Collector {
            caps,
            ..Collector::default()
        }
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
                    keys: Vec::new(),
                    keys_capped: 0,
                    points_capped: 0,
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
            if lane.keys_capped > 0 {
                notes.push(format!(
                    "{}: {} more keys' alerts not drawn",
                    lane.name, lane.keys_capped
                ));
            }
            if lane.points_capped > 0 {
                notes.push(format!(
                    "{}: {} firing/resolve points beyond {} per key not drawn",
                    lane.name, lane.points_capped, caps.points_per_key
                ));
            }
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
                keys: lane.keys,
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
        let b = (((t - start) as f64 / width) as usize).min(n - 1);
        *counts.entry(b).or_insert(0) += 1;
    }
    counts
        .into_iter()
        .map(|(b, count)| {
            let start_ns = start + (b as f64 * width) as i64;
            let end_ns = start + ((b + 1) as f64 * width) as i64;
            let second = |t: i64| t.div_euclid(1_000_000_000);
            Bucket {
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
        let lane = self.lane(alert);
        lane.times.push(alert.time_ns);
        let output = crate::sink::stdout::falco_line(alert);
        if lane.outputs.len() < OUTPUT_SECONDS {
            lane.outputs
                .entry(alert.time_ns.div_euclid(1_000_000_000))
                .or_insert_with(|| output.clone());
        }
        if lane.listed.len() < caps.alerts_per_rule {
            let mut audit_ids = Vec::new();
            if let Some(StatefulInfo::Sequence { steps, .. }) = &alert.stateful {
                audit_ids = steps.iter().filter_map(|s| s.audit_id.clone()).collect();
            }
            lane.listed.push(Listed {
                time: time::format_rfc3339_nanos(alert.time_ns),
                time_ns: alert.time_ns,
                output,
                state: alert
                    .aggregate
                    .as_ref()
                    .map(|a| if a.firing { "firing" } else { "resolved" }),
                fields: alert
                    .fields
                    .iter()
                    .filter_map(|(n, v)| {
                        v.as_ref().map(|v| (n.to_string(), v.render().into_owned()))
                    })
                    .collect(),
                audit_ids,
            });
        }
        if let Some(a) = &alert.aggregate {
            let key = key_text(&a.key);
            let found = lane.keys.iter().position(|k| k.key == key);
            let i = match found {
                Some(i) => Some(i),
                None if lane.keys.len() < caps.keys_per_rule => {
                    lane.keys.push(KeySeries {
                        key,
                        threshold: a.threshold,
                        window: a.window.clone(),
                        points: Vec::new(),
                        periods: Vec::new(),
                    });
                    Some(lane.keys.len() - 1)
                }
                None => None,
            };
            match i {
                None => lane.keys_capped += 1,
                Some(i) => {
                    let k = &mut lane.keys[i];
                    if k.points.len() < caps.points_per_key {
                        k.points.push((alert.time_ns, a.value, a.firing));
                        if a.firing {
                            k.periods.push((a.starts_at_ns, None));
                        } else if let Some(p) = k.periods.last_mut() {
                            p.1 = Some(a.ends_at_ns.unwrap_or(alert.time_ns));
                        }
                    } else {
                        lane.points_capped += 1;
                    }
                }
            }
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
