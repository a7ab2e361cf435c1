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
    time: Shown<time::Rfc3339Nanos>,
    rule: &'a str,
    priority: &'a str,
    source: &'a str,
    tags: &'a [String],
    output: Shown<FalcoLine<'a>>,
    output_fields: OutputFields<'a>,
    hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aggregate: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence: Option<Value>,
}

/// Falco's `output` line: `HH:MM:SS.nnnnnnnnn: Priority message`.
pub fn falco_line(alert: &Alert) -> String {
    FalcoLine(alert).to_string()
}

/// An alert's [`falco_line`], written where it is shown.
struct FalcoLine<'a>(&'a Alert<'a>);

impl std::fmt::Display for FalcoLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = self.0;
        write!(
            f,
            "{}: {} {}",
            time::Clock(a.time_ns),
            a.priority.as_str(),
            a.message
        )
    }
}

/// A value serialised as the JSON string of its `Display`, with no
/// `String` made for it first.
struct Shown<T>(T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// An alert's output fields as a JSON object, serialised from the alert
/// itself. A field named twice is written once, where it first appears,
/// with the value it has last, as an insertion-ordered map keyed by name
/// holds it (rules never name a field twice: the compiler drops repeats).
struct OutputFields<'a>(&'a [(&'a str, Option<Val<'a>>)]);

impl Serialize for OutputFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let fields = self.0;
        let first = |i: usize| fields[..i].iter().all(|(n, _)| *n != fields[i].0);
        let unique = (0..fields.len()).filter(|&i| first(i)).count();
        let mut map = s.serialize_map(Some(unique))?;
        for (i, (name, _)) in fields.iter().enumerate() {
            if first(i) {
                let last = fields.iter().rposition(|(n, _)| n == name).unwrap_or(i);
                map.serialize_entry(name, &JsonVal(fields[last].1.as_ref()))?;
            }
        }
        map.end()
    }
}

/// A field's value, serialised in place: missing is `null`, a list an
/// array of strings, a number a number.
struct JsonVal<'a>(Option<&'a Val<'a>>);

impl Serialize for JsonVal<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_unit(),
            Some(Val::Str(v)) => s.serialize_str(v),
            Some(Val::Num(n)) => s.serialize_u64(*n),
            Some(Val::List(items)) => s.collect_seq(items.iter().map(|v| v.as_ref())),
        }
    }
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
    JsonAlert {
        time: Shown(time::Rfc3339Nanos(alert.time_ns)),
        rule: alert.rule,
        priority: alert.priority.as_str(),
        source: "k8s_audit",
        tags: alert.tags,
        output: Shown(FalcoLine(alert)),
        output_fields: OutputFields(&alert.fields),
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

/// This machine's name (empty when unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::rules::Priority;

    fn alert<'a>(fields: Vec<(&'a str, Option<Val<'a>>)>, message: &str) -> Alert<'a> {
        Alert {
            time_ns: 1_730_204_535_861_424_000,
            rule: "R \"quoted\"",
            desc: "d",
            priority: Priority::Warning,
            tags: &[],
            message: message.to_string(),
            fields,
            aggregate: None,
            stateful: None,
            labels: &[],
            annotations: &[],
        }
    }

    /// What the alert's output fields were before they were serialised in
    /// place: a map built of owned names and values.
    fn as_map(fields: &[(&str, Option<Val>)]) -> Map<String, Value> {
        fields
            .iter()
            .map(|(name, v)| {
                let v = match v {
                    None => Value::Null,
                    Some(Val::Str(s)) => Value::String(s.to_string()),
                    Some(Val::Num(n)) => Value::from(*n),
                    Some(Val::List(items)) => {
                        Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
                    }
                };
                (name.to_string(), v)
            })
            .collect()
    }

    #[test]
    fn a_line_is_the_value_written_out_and_fields_read_as_a_map_reads_them() {
        let cases = [
            alert(Vec::new(), "nothing"),
            alert(
                vec![
                    (
                        "ka.user.name",
                        Some(Val::Str(Cow::Borrowed("dév \"x\"\n\u{1}"))),
                    ),
                    ("ka.target.name", None),
                    ("len", Some(Val::Num(7))),
                    ("ka.user.groups", Some(Val::List(Vec::new()))),
                    (
                        "ka.sourceips",
                        Some(Val::List(vec!["10.0.0.1".into(), "::1".into()])),
                    ),
                    // Named twice: once, at the first place, with the last value.
                    ("ka.user.name", Some(Val::Str(Cow::Borrowed("second")))),
                ],
                "tab\there \\ \"and\" \u{7f} é",
            ),
        ];
        for a in &cases {
            let mut sink = StdoutSink::new(Vec::new(), Format::Json);
            sink.emit(a).unwrap();
            let line = String::from_utf8(sink.into_inner()).unwrap();
            let value = falco_json(a, &hostname());
            // The line on stdout is the value --http-output posts.
            assert_eq!(line, format!("{value}\n"));
            assert_eq!(value["output_fields"], Value::Object(as_map(&a.fields)));
            assert_eq!(value["time"], "2024-10-29T12:22:15.861424000Z");
            assert_eq!(
                value["output"],
                format!("12:22:15.861424000: Warning {}", a.message)
            );
            let keys: Vec<&String> = value["output_fields"].as_object().unwrap().keys().collect();
            let mut names: Vec<&str> = Vec::new();
            for (n, _) in &a.fields {
                if !names.contains(n) {
                    names.push(n);
                }
            }
            assert_eq!(keys, names);
        }
    }
}
