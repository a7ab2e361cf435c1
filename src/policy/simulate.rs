//! `saker policy simulate`: what a policy would do with recorded events.
//! Each event is turned back into the request it records and put to the
//! policy: its level, the rule that decides it, and how many bytes of it
//! the policy would keep (bodies cut to the level; events of omitted
//! stages dropped), summed by policy rule.

use std::collections::BTreeMap;
use std::io::Read;

use crate::event::{decode_document, json, Event};
use crate::source::lines::{strip_prefixes, Line, LineReader};

use super::matcher::{Request, ResourceAttrs};
use super::{Level, Policy};

/// The request an audit event records.
pub fn request_of(ev: &Event) -> Option<Request> {
    let s = |raw: Option<&str>| {
        raw.and_then(json::string)
            .map(|c| c.into_owned())
            .unwrap_or_default()
    };
    let user = ev.key("user");
    let groups = user
        .and_then(|u| json::get(u, "groups"))
        .and_then(json::elements)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|g| json::string(g).map(|c| c.into_owned()))
        .collect();
    let verb = s(ev.key("verb"));
    if verb.is_empty() {
        return None;
    }
    let uri = s(ev.key("requestURI"));
    let resource = ev.key("objectRef").map(|o| ResourceAttrs {
        group: s(json::get(o, "apiGroup")),
        resource: s(json::get(o, "resource")),
        subresource: s(json::get(o, "subresource")),
        namespace: s(json::get(o, "namespace")),
        name: s(json::get(o, "name")),
    });
    Some(Request {
        user: s(user.and_then(|u| json::get(u, "username"))),
        groups,
        verb,
        path: uri.split('?').next().unwrap_or_default().to_string(),
        resource,
    })
}

/// Bytes of the event a policy would keep at `level`.
pub fn kept_bytes(ev: &Event, level: Level) -> u64 {
    let total = ev.raw.len() as u64;
    let len = |k: &str| ev.key(k).map_or(0, |v| v.len() as u64 + k.len() as u64 + 4);
    match level {
        Level::None => 0,
        Level::Metadata => total.saturating_sub(len("requestObject") + len("responseObject")),
        Level::Request => total.saturating_sub(len("responseObject")),
        Level::RequestResponse => total,
    }
}

/// Totals for one deciding policy rule (or none).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub events: u64,
    /// Events the policy keeps (level above None and stage not omitted).
    pub kept: u64,
    pub recorded_bytes: u64,
    pub kept_bytes: u64,
    pub by_level: [u64; 4],
}

/// The outcome of a simulation.
#[derive(Debug, Default)]
pub struct Simulation {
    /// By deciding rule index; `None` for requests no rule matches.
    pub by_rule: BTreeMap<Option<usize>, Tally>,
    pub total: Tally,
    /// Lines that held no audit event.
    pub skipped: u64,
    /// Events recorded at a lower level than the policy gives them: their
    /// kept size is what was recorded, an underestimate.
    pub underestimated: u64,
    /// The earliest and latest event times seen (ns since the epoch), the
    /// span [`super::retention`] scales the kept volume to a day from.
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
}

impl Simulation {
    /// Seconds between the earliest and the latest event.
    pub fn span_seconds(&self) -> f64 {
        match (self.first_ns, self.last_ns) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e9,
            _ => 0.0,
        }
    }

    fn saw_time(&mut self, ns: i64) {
        self.first_ns = Some(self.first_ns.map_or(ns, |f| f.min(ns)));
        self.last_ns = Some(self.last_ns.map_or(ns, |l| l.max(ns)));
    }
}

/// An event's time: `stageTimestamp`, else `requestReceivedTimestamp`.
fn event_time(ev: &Event) -> Option<i64> {
    ["stageTimestamp", "requestReceivedTimestamp"]
        .iter()
        .find_map(|k| ev.key(k).and_then(json::string))
        .and_then(|t| crate::event::time::parse_rfc3339(&t))
}

/// One event's verdict, for `--events`.
#[derive(Debug, serde::Serialize)]
pub struct EventVerdict {
    pub audit_id: String,
    pub stage: String,
    pub request: String,
    pub level: &'static str,
    pub rule_line: Option<usize>,
    pub kept_bytes: u64,
    pub recorded_bytes: u64,
}

fn recorded_level(ev: &Event) -> Level {
    ev.key("level")
        .and_then(json::string)
        .and_then(|l| Level::parse(&l))
        .unwrap_or(if ev.key("responseObject").is_some() {
            Level::RequestResponse
        } else if ev.key("requestObject").is_some() {
            Level::Request
        } else {
            Level::Metadata
        })
}

/// Runs the policy over every event of `input`; `each` sees every event's
/// verdict.
pub fn simulate(
    policy: &Policy,
    input: impl Read,
    max_line: usize,
    mut each: impl FnMut(EventVerdict),
) -> std::io::Result<Simulation> {
    let mut sim = Simulation::default();
    let mut lines = LineReader::new(input, max_line);
    while let Some(line) = lines.next_line(&mut || {})? {
        let Line::Text(text) = line else {
            sim.skipped += 1;
            continue;
        };
        let mut any = false;
        decode_document(
            strip_prefixes(text),
            |ev| {
                let Some(req) = request_of(&ev) else { return };
                any = true;
                if let Some(ns) = event_time(&ev) {
                    sim.saw_time(ns);
                }
                let d = policy.decide(&req);
                let stage = ev
                    .key("stage")
                    .and_then(json::string)
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                let dropped = d
                    .rule
                    .is_some_and(|i| policy.omitted_stages(i).contains(&stage.as_str()));
                let level = if dropped { Level::None } else { d.level };
                let recorded = ev.raw.len() as u64;
                let kept = kept_bytes(&ev, level);
                if level > recorded_level(&ev) {
                    sim.underestimated += 1;
                }
                for t in [sim.by_rule.entry(d.rule).or_default(), &mut sim.total] {
                    t.events += 1;
                    t.recorded_bytes += recorded;
                    t.kept_bytes += kept;
                    t.by_level[level as usize] += 1;
                    if level > Level::None {
                        t.kept += 1;
                    }
                }
                each(EventVerdict {
                    audit_id: ev
                        .key("auditID")
                        .and_then(json::string)
                        .map(|c| c.into_owned())
                        .unwrap_or_default(),
                    stage,
                    request: super::probes::describe(&req),
                    level: level.as_str(),
                    rule_line: d.rule.map(|i| policy.line_of(policy.rules[i].pos)),
                    kept_bytes: kept,
                    recorded_bytes: recorded,
                });
            },
            |_| {},
        );
        if !any {
            sim.skipped += 1;
        }
    }
    Ok(sim)
}

fn mb(b: u64) -> String {
    format!("{:.2} MB", b as f64 / 1e6)
}

/// The human report.
pub fn render(policy: &Policy, sim: &Simulation) -> String {
    let mut s = String::new();
    let t = &sim.total;
    let pct = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            a as f64 * 100.0 / b as f64
        }
    };
    s.push_str(&format!(
        "{} events ({}) recorded; this policy keeps {} events, {} ({:.1}% of the bytes)\n",
        t.events,
        mb(t.recorded_bytes),
        t.kept,
        mb(t.kept_bytes),
        pct(t.kept_bytes, t.recorded_bytes)
    ));
    s.push_str(&format!(
        "by level: None {}, Metadata {}, Request {}, RequestResponse {}\n\n",
        t.by_level[0], t.by_level[1], t.by_level[2], t.by_level[3]
    ));
    let rows: Vec<(String, &Tally)> = sim
        .by_rule
        .iter()
        .map(|(rule, tally)| {
            let name = match rule {
                Some(i) => format!(
                    "{} {}",
                    policy.place(policy.rules[*i].pos),
                    policy.rules[*i].level
                ),
                None => "no rule (not logged)".to_string(),
            };
            (name, tally)
        })
        .collect();
    let w = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max(11);
    s.push_str(&format!(
        "{:<w$} {:>9} {:>9} {:>12} {:>12}\n",
        "policy rule", "events", "kept", "recorded", "kept bytes"
    ));
    for (name, tally) in rows {
        s.push_str(&format!(
            "{:<w$} {:>9} {:>9} {:>12} {:>12}\n",
            name,
            tally.events,
            tally.kept,
            mb(tally.recorded_bytes),
            mb(tally.kept_bytes)
        ));
    }
    if sim.underestimated > 0 {
        s.push_str(&format!(
            "\n{} events were recorded at a lower level than this policy gives them; their kept size is the recorded size, so the total is a lower bound\n",
            sim.underestimated
        ));
    }
    if sim.skipped > 0 {
        s.push_str(&format!("{} lines held no audit event\n", sim.skipped));
    }
    s
}
