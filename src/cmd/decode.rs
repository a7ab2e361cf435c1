//! `saker decode`: reads any input as `run` does and prints the audit
//! events found in it, one per line (for GKE the converted event, for AKS
//! the inner event, for EKS each message), or chosen fields of each; the
//! count of what was skipped, by reason, and of events per cluster goes to
//! stderr. It shows what a pipeline delivers to the rules.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use saker::event::{decode_document, json, Event, Skip};
use saker::fields::extract::{extract, Val};
use saker::fields::{Arg, FieldDef};
use saker::source::kafka::{Counters, KafkaSource};
use saker::source::lines::{split_lines, strip_prefixes, Line};
use saker::source::{documents, stream, Ack, Body, Next, Source};

use crate::cli::decode::DecodeSettings;
use crate::cli::run::InputSettings;

pub fn decode(settings: DecodeSettings) -> ExitCode {
    let mut source: Box<dyn Source> = match &settings.input {
        InputSettings::Kafka(k) => {
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
                    return fail(format_args!("cannot handle signals: {e}"));
                }
            }
            match KafkaSource::open(k, Arc::new(Counters::default()), stop, false) {
                Ok(s) => Box::new(s),
                Err(e) => return fail(e),
            }
        }
        InputSettings::Lines { input, follow } => {
            match stream::open(input, *follow, settings.max_line_bytes) {
                Ok((s, _)) => Box::new(s),
                Err(e) => return fail(e),
            }
        }
        InputSettings::Http(_) => return fail("saker decode reads stdin, a file or Kafka"),
    };
    let mut printer = Printer {
        out: io::BufWriter::with_capacity(64 * 1024, io::stdout().lock()),
        fields: &settings.fields,
        tally: Tally::default(),
    };
    match printer.drain(source.as_mut(), settings.max_line_bytes) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
        Err(e) => return fail(e),
    }
    if let Err(e) = source.close() {
        return fail(e);
    }
    eprint!("{}", printer.tally.summary(&source.describe()));
    ExitCode::SUCCESS
}

fn fail(what: impl std::fmt::Display) -> ExitCode {
    eprintln!("saker: {what}");
    ExitCode::from(2)
}

/// What was read: documents, events (per cluster) and skips.
#[derive(Default)]
struct Tally {
    documents: u64,
    events: u64,
    skipped: [u64; Skip::ALL.len()],
    clusters: BTreeMap<String, u64>,
}

impl Tally {
    fn summary(&self, input: &str) -> String {
        let mut out = format!(
            "saker: decode {input}: {} documents, {} events\n",
            self.documents, self.events
        );
        if !self.clusters.is_empty() {
            let c: Vec<String> = self
                .clusters
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            out.push_str(&format!("saker: events by cluster: {}\n", c.join(", ")));
        }
        let skipped: Vec<String> = Skip::ALL
            .iter()
            .filter(|r| self.skipped[**r as usize] > 0)
            .map(|r| {
                format!(
                    "{} {} ({})",
                    self.skipped[*r as usize],
                    r.describe(),
                    r.as_str()
                )
            })
            .collect();
        if !skipped.is_empty() {
            out.push_str(&format!("saker: skipped: {}\n", skipped.join(", ")));
        }
        out
    }
}

struct Printer<'f, W: Write> {
    out: W,
    fields: &'f [&'static FieldDef],
    tally: Tally,
}

impl<W: Write> Printer<'_, W> {
    fn drain(&mut self, source: &mut dyn Source, max: usize) -> io::Result<()> {
        loop {
            let batch = {
                let out = &mut self.out;
                match source.next(&mut || out.flush().map(|()| Vec::new()))? {
                    Next::Batch(b) => b,
                    Next::Idle | Next::Reset(_) | Next::Closed(_) => continue,
                    Next::End | Next::Stop => return self.out.flush(),
                }
            };
            let before = self.tally.events;
            match batch.body {
                Body::Line(line) => self.line(line)?,
                Body::Lines { text, max_line } => split_lines(text, max_line, |l| self.line(l))?,
                Body::Message(m) => documents::for_each(m, max, |l| self.line(l))?,
                Body::FileRange(range) => {
                    let mut buf = Vec::new();
                    let at = range.read_lines(&mut buf, 0)?;
                    split_lines(&buf[at], range.max_line, |l| self.line(l))?
                }
                // Never handed out here: decoding does not repartition.
                Body::Forwarded(_) => {}
            }
            if let Some(position) = batch.ack {
                let ack = Ack {
                    stream: batch.stream,
                    position,
                    events: self.tally.events - before,
                };
                self.out.flush()?;
                source.ack(ack)?;
            }
        }
    }

    fn line(&mut self, line: Line) -> io::Result<()> {
        self.tally.documents += 1;
        let text = match line {
            Line::TooLong => {
                self.tally.skipped[Skip::TooLong as usize] += 1;
                return Ok(());
            }
            Line::Text(t) => strip_prefixes(t),
        };
        let mut result = Ok(());
        let (out, fields, tally) = (&mut self.out, self.fields, &mut self.tally);
        let mut skipped = [0u64; Skip::ALL.len()];
        decode_document(
            text,
            |ev| {
                tally.events += 1;
                if let Some(c) = ev.cluster {
                    *tally.clusters.entry(c.to_string()).or_default() += 1;
                }
                if result.is_ok() {
                    result = print(out, &ev, fields);
                }
            },
            |s| skipped[s as usize] += 1,
        );
        for (t, n) in tally.skipped.iter_mut().zip(skipped) {
            *t += n;
        }
        result
    }
}

/// One event on one line: the event's JSON (compacted), or the chosen
/// fields as a JSON object (`null` where a field has no value).
fn print(out: &mut impl Write, ev: &Event, fields: &[&'static FieldDef]) -> io::Result<()> {
    if fields.is_empty() {
        out.write_all(json::compact(ev.raw).as_bytes())?;
        return out.write_all(b"\n");
    }
    let mut obj = serde_json::Map::new();
    for def in fields {
        let v = match extract(ev, def, &Arg::None) {
            None => serde_json::Value::Null,
            Some(Val::Str(s)) => serde_json::Value::String(s.into_owned()),
            Some(Val::Num(n)) => serde_json::Value::from(n),
            Some(Val::List(items)) => items
                .into_iter()
                .map(|s| serde_json::Value::String(s.into_owned()))
                .collect(),
        };
        obj.insert(def.name.to_string(), v);
    }
    serde_json::to_writer(&mut *out, &obj)?;
    out.write_all(b"\n")
}
