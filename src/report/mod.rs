//! `saker report`'s library part: a [`Collector`] is the [`AlertSink`] a
//! replay's alerts go to instead of stdout; [`Collector::finish`] turns what
//! it gathered into [`ReportData`], the one model that the page's embedded
//! JSON, its charts (`charts`, drawn with plotters' SVG backend), its HTML
//! (`html`) and the terminal table (`table`) are rendered from. Everything
//! that grows with the input is aggregated or capped here ([`Caps`]), so a
//! replay of millions of events still gives a page a browser opens quickly.

pub mod charts;
mod collect;
pub mod html;
pub mod observe;
mod series;
pub mod table;

use std::collections::BTreeMap;

use serde::Serialize;

pub use collect::Collector;
pub use observe::EventRow;

/// How much of each kind is listed on the page; what is beyond is counted
/// and said (`ReportData::caps`).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Alerts listed per rule, with their output and fields.
    pub alerts_per_rule: usize,
    /// Time buckets of each rule's timeline lane.
    pub buckets: usize,
    /// Keys of a windowed rule drawn against its threshold.
    pub keys_per_rule: usize,
    /// Keys of a windowed rule whose values are followed at a time (those
    /// drawn are chosen among them).
    pub followed_keys: usize,
    /// Points of a key's line (and alerts drawn on it).
    pub points_per_key: usize,
    /// Listed alerts of each rule that carry the events behind them.
    pub alerts_with_events: usize,
    /// Events shown behind one alert (the last ones).
    pub events_per_alert: usize,
    /// Events the whole page carries behind its alerts.
    pub event_rows: usize,
    /// Keys of a windowed rule whose last events are held.
    pub keys_with_events: usize,
    /// Events held per sequence or first-seen rule until their alerts.
    pub held_events: usize,
    /// Completed sequences drawn per sequence rule.
    pub sequences_per_rule: usize,
    /// Identities listed, by alerts.
    pub identities: usize,
    /// Resources and verbs listed per identity.
    pub touched: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            alerts_per_rule: 50,
            buckets: 120,
            keys_per_rule: 8,
            followed_keys: 64,
            points_per_key: 200,
            alerts_with_events: 20,
            events_per_alert: 20,
            event_rows: 3_000,
            keys_with_events: 1_000,
            held_events: 10_000,
            sequences_per_rule: 20,
            identities: 15,
            touched: 10,
        }
    }
}

/// Everything the page shows, and carries as JSON
/// (`<script type="application/json" id="saker-report-data">`).
#[derive(Debug, Serialize)]
pub struct ReportData {
    pub input: String,
    /// Event time of the first and last alert (RFC 3339), if any.
    pub first_alert: Option<String>,
    pub last_alert: Option<String>,
    pub alerts_total: u64,
    /// Alerts per rule, as `saker run` would print them (a windowed rule's
    /// firing and resolved alerts both count).
    pub alerts_by_rule: BTreeMap<String, u64>,
    /// One lane per rule that alerted, most severe first.
    pub rules: Vec<RuleData>,
    /// The identities (`ka.user.name`) behind the most alerts.
    pub identities: Vec<Identity>,
    pub health: Health,
    /// What was capped, in words; empty when nothing was.
    pub caps: Vec<String>,
    pub policy: Option<PolicyData>,
}

#[derive(Debug, Serialize)]
pub struct RuleData {
    pub name: String,
    pub priority: &'static str,
    /// `event`, `windowed`, `sequence` or `first-seen`.
    pub kind: &'static str,
    pub alerts: u64,
    /// The lane: alert counts in equal time buckets over the alerts' span.
    pub buckets: Vec<Bucket>,
    /// The first alerts, with what the event carried.
    pub listed: Vec<Listed>,
    /// A windowed rule's keys: the measured value at every evaluated tick,
    /// its alerts and firing periods.
    pub keys: Vec<KeySeries>,
    /// A sequence rule's completed sequences: their steps' events.
    pub sequences: Vec<Sequence>,
}

#[derive(Debug, Serialize)]
pub struct Bucket {
    pub start_ns: i64,
    pub end_ns: i64,
    pub count: u64,
    /// The output of the bucket's first alert.
    pub first_output: String,
    /// The first listed alert in the bucket (its index in `listed`).
    pub alert: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub time: String,
    pub time_ns: i64,
    pub output: String,
    /// `firing` or `resolved` for a windowed rule.
    pub state: Option<&'static str>,
    /// A windowed rule's key (its values, `, `-joined).
    pub key: Option<String>,
    /// The audit events behind the alert: the event of a per-event or
    /// first-seen rule, a sequence's steps, the last matching events of a
    /// windowed key in the window (capped).
    pub events: Vec<EventRow>,
    /// How many events are behind it in all.
    pub events_total: u64,
    /// What of them is not shown, and why.
    pub events_note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeySeries {
    /// The values of the `by` fields, `, `-joined.
    pub key: String,
    pub threshold: f64,
    pub window: String,
    /// `(time_ns, value)` at the ticks the key was evaluated at: the value
    /// holds until the next point. At most `Caps::points_per_key` (the
    /// lowest and highest of each interval kept when there were more).
    pub points: Vec<(i64, f64)>,
    /// Ticks evaluated in all.
    pub evaluated: u64,
    pub peak: f64,
    /// Whether the line starts after the key's first evaluated tick.
    pub partial: bool,
    /// `(time_ns, value, firing)` at each alert.
    pub alerts: Vec<(i64, f64, bool)>,
    /// Firing periods: start, and end when it resolved.
    pub periods: Vec<(i64, Option<i64>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sequence {
    pub key: String,
    pub within: String,
    /// `(step, time_ns, audit ID)`.
    pub steps: Vec<(String, i64, Option<String>)>,
    /// The sequence's alert in the rule's `listed`, if listed.
    pub alert: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct Identity {
    pub name: String,
    pub alerts: u64,
    pub by_rule: BTreeMap<String, u64>,
    /// Events of this identity over the whole input, by resource and by
    /// verb (most first, capped).
    pub events: u64,
    pub resources: Vec<(String, u64)>,
    pub verbs: Vec<(String, u64)>,
}

/// The input's health.
#[derive(Debug, Default, Serialize)]
pub struct Health {
    pub lines: u64,
    pub events: u64,
    /// Lines skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Events later than the lateness of windowed, sequence and first-seen
    /// rules.
    pub late_events: u64,
    /// Keys evicted from windowed, sequence and first-seen state.
    pub evictions: u64,
}

/// `saker policy simulate` on the same input, with retention.
#[derive(Debug, Serialize)]
pub struct PolicyData {
    pub path: String,
    pub events: u64,
    pub recorded_bytes: u64,
    pub kept_bytes: u64,
    /// The `policy simulate` table and the retention estimate, as text.
    pub table: String,
    pub retention: String,
}

/// Identity, resource and verb of one event label set, as counted while
/// replaying: `(user, verb, resource) -> events`.
pub type Touched = Vec<((String, String, String), u64)>;
