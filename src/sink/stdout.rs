//! Alerts on standard output: Falco's JSON lines (what falcosidekick and
//! Falco tooling read) or Falco's one-line text format.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{AggregateInfo, Alert, AlertSink, StatefulInfo};
use crate::event::time;
use crate::fields::extract::Val;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

pub struct StdoutSink<W: Write> {
    out: W,
    format: Format,
    hostname: String,
}

impl<W: Write> StdoutSink<W> {
    pub fn new(out: W, format: Format) -> Self {
        StdoutSink {
            out,
            format,
            hostname: hostname(),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[derive(Serialize)]
struct JsonAlert<'a> {
    time: String,
    rule: &'a str,
    priority: &'a str,
    source: &'a str,
    tags: &'a [String],
    output: String,
    output_fields: Map<String, Value>,
    hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aggregate: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence: Option<Value>,
}

/// Falco's `output` line: `HH:MM:SS.nnnnnnnnn: Priority message`.
pub fn falco_line(alert: &Alert) -> String {
    format!(
        "{}: {} {}",
        time::format_clock(alert.time_ns),
        alert.priority.as_str(),
        alert.message
    )
}

impl<W: Write> AlertSink for StdoutSink<W> {
    fn emit(&mut self, alert: &Alert) -> io::Result<()> {
        match self.format {
            Format::Text => writeln!(self.out, "{}", falco_line(alert)),
            Format::Json => {
                serde_json::to_writer(&mut self.out, &json_alert(alert, &self.hostname))?;
                self.out.write_all(b"\n")
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Falco's JSON alert, as printed on stdout and posted by `--http-output`.
pub fn falco_json(alert: &Alert, hostname: &str) -> Value {
    // Serialising a struct of strings, maps and numbers cannot fail.
    serde_json::to_value(json_alert(alert, hostname)).unwrap_or(Value::Null)
}

fn json_alert<'a>(alert: &'a Alert, hostname: &'a str) -> JsonAlert<'a> {
    let fields = alert
        .fields
        .iter()
        .map(|(name, v)| (name.to_string(), to_json(v.as_ref())))
        .collect();
    JsonAlert {
        time: time::format_rfc3339_nanos(alert.time_ns),
        rule: alert.rule,
        priority: alert.priority.as_str(),
        source: "k8s_audit",
        tags: alert.tags,
        output: falco_line(alert),
        output_fields: fields,
        hostname,
        aggregate: alert
            .aggregate
            .as_ref()
            .map(aggregate_json)
            .or_else(|| alert.stateful.as_ref().and_then(first_seen_json)),
        sequence: alert.stateful.as_ref().and_then(sequence_json),
    }
}

/// `{state, key, value, threshold, window, for, starts_at, ends_at}`.
pub fn aggregate_json(a: &AggregateInfo) -> Value {
    let key: Map<String, Value> = a
        .key
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "state": if a.firing { "firing" } else { "resolved" },
        "key": key,
        "value": number(a.value),
        "threshold": number(a.threshold),
        "window": a.window,
        "for": a.hold,
        "starts_at": time::format_rfc3339_nanos(a.starts_at_ns),
        "ends_at": a.ends_at_ns.map(time::format_rfc3339_nanos),
    })
}

/// `{within, key: [values], steps: [{name, time, auditID}, …]}`.
pub fn sequence_json(s: &StatefulInfo) -> Option<Value> {
    let StatefulInfo::Sequence { within, key, steps } = s else {
        return None;
    };
    let steps: Vec<Value> = steps
        .iter()
        .map(|st| {
            serde_json::json!({
                "name": st.name,
                "time": time::format_rfc3339_nanos(st.time_ns),
                "auditID": st.audit_id,
            })
        })
        .collect();
    Some(serde_json::json!({"within": within, "key": key, "steps": steps}))
}

/// `{state: "new", key, window, previous}` of a first-seen alert.
pub fn first_seen_json(s: &StatefulInfo) -> Option<Value> {
    let StatefulInfo::FirstSeen {
        key,
        window,
        previous_ns,
    } = s
    else {
        return None;
    };
    let key: Map<String, Value> = key
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Some(serde_json::json!({
        "state": "new",
        "key": key,
        "window": window,
        "previous": previous_ns.map(time::format_rfc3339_nanos),
    }))
}

/// Integers as JSON integers, others as floats.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

/// Missing values are `null`, lists are arrays, numbers are numbers.
fn to_json(v: Option<&Val>) -> Value {
    match v {
        None => Value::Null,
        Some(Val::Str(s)) => Value::String(s.to_string()),
        Some(Val::Num(n)) => Value::from(*n),
        Some(Val::List(items)) => {
            Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
        }
    }
}

/// This machine's name (empty when unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
