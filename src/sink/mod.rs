//! Where alerts go. Each sink takes [`Alert`]s from the engine in order.
//! The HTTP outputs (`alertmanager`, `http_output`) share `delivery` (queues,
//! batches, retries) and `http` (the client); they and the metrics listener
//! run on the one network runtime (`runtime`).

pub mod alertmanager;
pub mod delivery;
pub mod http;
pub mod http_output;
pub mod metrics;
pub mod stdout;

use std::io;

use crate::fields::extract::Val;
use crate::rules::Priority;

/// One alert, as the engine hands it to sinks.
#[derive(Debug)]
pub struct Alert<'a> {
    /// Event time, nanoseconds since the epoch.
    pub time_ns: i64,
    pub rule: &'a str,
    /// The rule's description.
    pub desc: &'a str,
    pub priority: Priority,
    pub tags: &'a [String],
    /// The rule's output, rendered (without Falco's time/priority prefix).
    pub message: String,
    pub fields: Vec<(&'a str, Option<Val<'a>>)>,
    /// Present on alerts of windowed rules.
    pub aggregate: Option<AggregateInfo>,
    /// Present on alerts of sequence and first-seen rules (which go to
    /// outputs like per-event alerts: `aggregate` is `None`).
    pub stateful: Option<StatefulInfo>,
    /// The rule's extra Alertmanager labels and annotations.
    pub labels: &'a [(String, String)],
    pub annotations: &'a [(String, String)],
}

/// The window state behind a windowed rule's alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateInfo {
    /// Firing, or resolved.
    pub firing: bool,
    /// The `by` fields and their values.
    pub key: Vec<(String, String)>,
    /// The measure at the alert's tick (a rate in the threshold's unit).
    pub value: f64,
    pub threshold: f64,
    pub window: String,
    pub hold: Option<String>,
    /// When the alert fired, nanoseconds since the epoch.
    pub starts_at_ns: i64,
    /// When it resolved.
    pub ends_at_ns: Option<i64>,
}

/// The state behind a sequence or first-seen rule's alert.
#[derive(Debug, Clone, PartialEq)]
pub enum StatefulInfo {
    /// A completed sequence: `within` as written, the joined key values in
    /// `by` order, and each step's event.
    Sequence {
        within: String,
        key: Vec<String>,
        steps: Vec<StepInfo>,
    },
    /// A key not seen within the window: the `by` fields and values, and
    /// the start of the key's last-seen tick before the window.
    FirstSeen {
        key: Vec<(String, String)>,
        window: String,
        previous_ns: Option<i64>,
    },
}

/// One step's event in a completed sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct StepInfo {
    pub name: String,
    pub time_ns: i64,
    pub audit_id: Option<String>,
}

pub trait AlertSink {
    fn emit(&mut self, alert: &Alert) -> io::Result<()>;
    /// Re-asserts a windowed alert that is still firing, for outputs that
    /// keep alert state (Alertmanager) after this process lost track of it
    /// (a Kafka partition rebuilt by a warm-up replay). Streams of alert
    /// lines ignore it: they printed the alert when it fired.
    fn refresh(&mut self, _alert: &Alert) -> io::Result<()> {
        Ok(())
    }
    /// Called when the engine is about to wait for input, and at the end.
    fn flush(&mut self) -> io::Result<()>;
}

/// Sends to several outputs in turn (stdout, Alertmanager, HTTP outputs).
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
