//! Multi-core evaluation of a file (`--threads N`). A reader thread takes
//! the source's batches of whole lines; worker threads decode the events and match
//! the rules, capturing per-event alerts and the keys of windowed matches;
//! this thread takes the batches back in input order and, event by event,
//! emits the per-event alerts and feeds the windows. The output is the
//! same, in the same order, as on one thread.

use std::collections::BTreeMap;
use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::event::decode_document;
use crate::fields::extract::Val;
use crate::reload::{Pending, Reloads};
use crate::rules::RuleSet;
use crate::sink::{Alert, AlertSink};
use crate::source::lines::{split_lines, strip_prefixes, Line};
use crate::source::{Body, Next, Source};
use crate::stateful::first_seen::{Rendered, SeenHit};
use crate::stateful::{Hit, Read};
use crate::window::Key;

use super::{Engine, Stats};

/// Where a worker's event is in its batch: its line's bytes, and its place
/// among that line's events. The ordering thread reads the event again from
/// there when it needs what a worker left out: the alert of a first-seen
/// key, which only the stream's state can tell is new, and which is
/// rendered only then.
#[derive(Debug, Default, Clone, Copy)]
pub struct DocAt {
    pub start: usize,
    pub end: usize,
    pub index: usize,
}

/// From this place in a line on (an EventList, an envelope of records), a
/// worker renders a first-seen alert itself: the ordering thread reads a
/// line again for each alert it renders, so it does that for the first
/// events of a line only, and a line is read again at most this many times.
pub const RENDER_IN_WORKER_FROM: usize = 8;

/// What a worker found in one event.
#[derive(Debug, Default)]
pub struct Captured {
    pub tick: i64,
    pub time_ns: i64,
    pub doc: DocAt,
    /// What it contributes to sequence and first-seen rules.
    pub stateful: Vec<(usize, crate::stateful::Hit)>,
    /// Windowed rules it matched: rule, key, `distinct()` value.
    pub windowed: Vec<(usize, Key, Option<String>)>,
    pub alerts: Vec<OwnedAlert>,
}

/// A per-event alert detached from its event.
#[derive(Debug)]
pub struct OwnedAlert {
    pub rule: usize,
    pub time_ns: i64,
    pub message: String,
    pub fields: Vec<Option<Val<'static>>>,
}

impl OwnedAlert {
    pub fn of(rule: usize, a: &Alert) -> Self {
        OwnedAlert {
            rule,
            time_ns: a.time_ns,
            message: a.message.clone(),
            fields: a
                .fields
                .iter()
                .map(|(_, v)| v.as_ref().map(owned))
                .collect(),
        }
    }
}

fn owned(v: &Val) -> Val<'static> {
    match v {
        Val::Str(s) => Val::Str(s.to_string().into()),
        Val::List(l) => Val::List(l.iter().map(|s| s.to_string().into()).collect()),
        Val::Num(n) => Val::Num(*n),
    }
}

impl Stats {
    /// Adds another engine's counts.
    pub fn absorb(&mut self, other: &Stats) {
        self.lines += other.lines;
        self.events += other.events;
        for (a, b) in self.skipped.iter_mut().zip(other.skipped) {
            *a += b;
        }
        for (a, b) in self.alerts.iter_mut().zip(&other.alerts) {
            *a += b;
        }
    }
}

impl Engine<'_> {
    /// Emits what a worker captured for one event of the batch `data`, and
    /// moves the windows on.
    fn apply(&mut self, c: Captured, data: &[u8], sink: &mut dyn AlertSink) -> io::Result<()> {
        let rules: &RuleSet = &self.rules;
        for a in c.alerts {
            let rule = &rules.rules[a.rule];
            let names = rules.output_field_names(a.rule);
            let alert = Alert {
                time_ns: a.time_ns,
                rule: &rule.name,
                priority: rule.priority,
                tags: &rule.tags,
                message: a.message,
                fields: names.into_iter().zip(a.fields).collect(),
                aggregate: None,
                stateful: None,
                desc: &rule.desc,
                labels: &rule.labels,
                annotations: &rule.annotations,
            };
            sink.emit(&alert)?;
        }
        if self.windows.any() {
            self.windows.observe(c.tick);
            for (i, key, value) in c.windowed {
                self.windows.add_keyed(i, c.tick, key, value.as_deref());
            }
            for (i, hit) in c.stateful {
                match hit {
                    Hit::FirstSeen(h) => self.apply_seen(i, c.time_ns, h, data, c.doc),
                    hit => {
                        self.windows.stateful.push(i, c.time_ns, hit);
                    }
                }
            }
            let transitions = self.windows.advance(false);
            self.emit_windowed(transitions, sink)?;
            let outcomes = self.windows.release(false);
            self.emit_stateful(outcomes, sink)?;
        }
        Ok(())
    }

    /// A worker's first-seen hit, which carries the key only (or, deep in
    /// a line, its alert too): looked up here, and when the key may be new
    /// and the alert is not there, it is rendered from the event, read
    /// again from the batch. As [`crate::stateful::Stateful::push`], an event that cannot
    /// raise an alert keeps none.
    fn apply_seen(&mut self, i: usize, time_ns: i64, mut h: SeenHit, data: &[u8], at: DocAt) {
        let state = &mut self.windows.stateful;
        if let Read::Waits { render } = state.read_first_seen(i, &h.key, time_ns) {
            if !render {
                h.rendered = None;
            } else if h.rendered.is_none() {
                h.rendered = alert_from_batch(&self.rules, i, data, at);
            }
            state.wait(i, time_ns, Hit::FirstSeen(h));
        }
    }
}

/// The alert of first-seen rule `i` for the event at `at` in `data`.
fn alert_from_batch(rules: &RuleSet, i: usize, data: &[u8], at: DocAt) -> Option<Rendered> {
    let line = data.get(at.start..at.end)?;
    let mut n = 0;
    let mut out = None;
    decode_document(
        strip_prefixes(line),
        |ev| {
            if n == at.index {
                let mut cx = rules.context();
                out = super::stateful::seen_alert(rules, i, &ev, &mut cx);
            }
            n += 1;
        },
        |_| {},
    );
    out
}

/// A batch of the input, numbered.
struct Batch {
    seq: u64,
    /// Lines of the input before this batch.
    first_line: u64,
    /// Whole lines; or, for `TooLong`, a line over the limit that was
    /// skipped while it streamed past.
    data: Vec<u8>,
    too_long: bool,
    max_line: usize,
}

struct Done {
    seq: u64,
    stats: Stats,
    events: Vec<Captured>,
    /// The batch, which its events' [`DocAt`]s point into.
    data: Vec<u8>,
}

/// Evaluates `source` on `threads` workers, to its end, or until
/// `reloads` hands over a rule set: the reader then stops between two
/// batches, everything read before is evaluated and emitted, and the set
/// is returned for the caller to switch to before calling this again. The
/// caller's `engine` holds the windows, the counters and the metrics. Only
/// a source that is not live and has one stream and no acknowledgements (a
/// file) can be read this way.
pub fn run(
    source: &mut (dyn Source + Send),
    engine: &mut Engine,
    threads: usize,
    sink: &mut dyn AlertSink,
    reloads: Option<&mut Reloads>,
) -> io::Result<Option<Pending>> {
    if source.live() {
        return Err(io::Error::other("parallel evaluation needs a file"));
    }
    let n_rules = engine.rules.rules.len();
    let line_base = engine.stats.lines;
    let workers: Vec<Engine> = (0..threads).map(|_| engine.worker()).collect();
    let (work_tx, work_rx) = mpsc::sync_channel::<Batch>(threads * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    std::thread::scope(|scope| {
        // Buffers go back to the reader once a worker is done with them, so
        // the input is copied into memory that is already mapped.
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        let reader = scope.spawn(move || read_batches(source, work_tx, free_rx, reloads));
        for mut worker in workers {
            let work_rx = work_rx.clone();
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                // A worker's sink is never written: alerts are captured.
                let mut discard = Discard;
                loop {
                    let next = work_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(batch)) = next else {
                        return;
                    };
                    worker.line_base = line_base + batch.first_line;
                    if batch.too_long {
                        let _ = worker.process_line(Line::TooLong, &mut discard);
                    } else {
                        let base = batch.data.as_ptr() as usize;
                        let _ = split_lines(&batch.data, batch.max_line, |line| {
                            if let Line::Text(t) = &line {
                                let start = t.as_ptr() as usize - base;
                                worker.doc = DocAt {
                                    start,
                                    end: start + t.len(),
                                    index: 0,
                                };
                            }
                            worker.process_line(line, &mut discard)
                        });
                    }
                    let done = Done {
                        seq: batch.seq,
                        stats: std::mem::replace(
                            &mut worker.stats,
                            Stats {
                                alerts: vec![0; n_rules],
                                ..Stats::default()
                            },
                        ),
                        events: worker.capture.replace(Vec::new()).unwrap_or_default(),
                        data: batch.data,
                    };
                    if done_tx.send(done).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // Put the batches back in order.
        let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
        let mut next = 0u64;
        let mut result = Ok(());
        for done in done_rx {
            pending.insert(done.seq, done);
            while let Some(done) = pending.remove(&next) {
                next += 1;
                if result.is_err() {
                    continue;
                }
                engine.stats.absorb(&done.stats);
                for c in done.events {
                    if let Err(e) = engine.apply(c, &done.data, sink) {
                        result = Err(e);
                        break;
                    }
                }
                // The buffer goes back to the reader once its events are in.
                let _ = free_tx.send(done.data);
                engine.publish(None);
            }
        }
        let pending = reader
            .join()
            .map_err(|_| io::Error::other("the reader thread panicked"))??;
        result?;
        engine.publish(None);
        Ok(pending)
    })
}

/// A sink for workers, whose alerts are captured instead.
struct Discard;

impl AlertSink for Discard {
    fn emit(&mut self, _: &Alert) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Copies the source's batches into numbered buffers for the workers,
/// until the end of the source or a reload.
fn read_batches(
    source: &mut (dyn Source + Send),
    tx: mpsc::SyncSender<Batch>,
    free: mpsc::Receiver<Vec<u8>>,
    mut reloads: Option<&mut Reloads>,
) -> io::Result<Option<Pending>> {
    let mut seq = 0;
    let mut lines = 0u64;
    loop {
        if let Some(pending) = reloads.as_mut().and_then(|r| r.take()) {
            return Ok(Some(pending));
        }
        let mut data = free.try_recv().unwrap_or_default();
        data.clear();
        let (too_long, max_line) = match source.next(&mut || Ok(()))? {
            Next::Batch(b) => match b.body {
                Body::Lines { text, max_line } => {
                    data.extend_from_slice(text);
                    (false, max_line)
                }
                Body::Line(Line::TooLong) => (true, 0),
                Body::Line(Line::Text(text)) => {
                    data.extend_from_slice(text);
                    data.push(b'\n');
                    (false, usize::MAX)
                }
                Body::Message(_) | Body::Forwarded(_) => {
                    return Err(io::Error::other("parallel evaluation reads lines only"))
                }
            },
            Next::End | Next::Stop => return Ok(None),
            Next::Idle | Next::Reset(_) | Next::Closed(_) => continue,
        };
        let first_line = lines;
        lines += match too_long {
            true => 1,
            false => memchr::memchr_iter(b'\n', &data).count() as u64,
        };
        let batch = Batch {
            seq,
            first_line,
            data,
            too_long,
            max_line,
        };
        if tx.send(batch).is_err() {
            return Ok(None);
        }
        seq += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RuleMatching;
    use crate::sink::stdout::{Format, StdoutSink};
    use crate::source::lines::LineReader;
    use crate::source::stream::LineSource;

    /// The sample, eight times over with shifted days, so batches split it.
    fn input() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/audit-sample.jsonl");
        let sample = std::fs::read_to_string(path).expect("bundled sample");
        let mut out = String::new();
        for day in 1..=8 {
            out.push_str(&sample.replace("2024-10-29T", &format!("2024-10-{day:02}T")));
        }
        out.into_bytes()
    }

    fn metrics_text(registry: &crate::sink::metrics::Shared) -> String {
        let r = registry.lock().unwrap();
        r.render()
            .lines()
            .filter(|l| !l.contains("saker_event_processing_seconds"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn metrics_and_alerts_match_one_thread() {
        let set = crate::rules::load(&crate::rules::default_sources())
            .rules
            .expect("default rules");
        let data = input();
        let labels = crate::engine::metric_labels(
            "verb=ka.verb,resource=ka.target.resource,user=ka.user.name",
        )
        .unwrap();
        let run = |threads: usize| {
            let engine = Engine::new(&set, RuleMatching::All);
            let (mut engine, registry) = engine.with_metrics(labels.clone(), 10_000);
            let mut sink = StdoutSink::new(Vec::new(), Format::Json);
            if threads == 1 {
                let mut lines = LineReader::new(&data[..], 1 << 20);
                while let Some(line) = lines.next_line(&mut || {}).unwrap() {
                    engine.process_line(line, &mut sink).unwrap();
                }
            } else {
                let mut source = LineSource::new(&data[..], 1 << 20, false, "test");
                run(&mut source, &mut engine, threads, &mut sink, None).unwrap();
            }
            engine.finish(&mut sink).unwrap();
            (sink.into_inner(), metrics_text(&registry))
        };
        let (alerts_one, metrics_one) = run(1);
        let (alerts_two, metrics_two) = run(2);
        assert!(alerts_one.len() > 10_000);
        assert!(alerts_one == alerts_two, "alerts differ");
        assert_eq!(metrics_one, metrics_two);
        assert!(
            metrics_two.contains("kube_audit_event_count{verb=\"create\""),
            "{metrics_two}"
        );
    }

    /// A source that hands a rule set to the driver while it reads its
    /// `at`-th batch.
    struct ReloadingSource<'a> {
        inner: LineSource<&'a [u8]>,
        calls: usize,
        at: usize,
        hand: Option<(
            std::sync::mpsc::Sender<crate::reload::Pending>,
            crate::rules::RuleSet,
        )>,
    }

    impl Source for ReloadingSource<'_> {
        fn next(&mut self, w: &mut dyn FnMut() -> io::Result<()>) -> io::Result<Next<'_>> {
            if self.calls == self.at {
                if let Some((tx, rules)) = self.hand.take() {
                    let status = crate::reload::status::Status::new();
                    let cause = crate::reload::Cause::Signal;
                    let p = crate::reload::Pending::new(rules, RuleMatching::All, cause, status);
                    tx.send(p).unwrap();
                }
            }
            self.calls += 1;
            self.inner.next(w)
        }
        fn live(&self) -> bool {
            false
        }
        fn bytes(&self) -> u64 {
            self.inner.bytes()
        }
        fn describe(&self) -> String {
            "test".into()
        }
    }

    #[test]
    fn a_reload_between_batches_gives_what_one_thread_gives() {
        let load = |extra: &'static str| {
            let mut sources = crate::rules::default_sources();
            sources.push(crate::rules::RuleSource::Embedded("extra.yaml", extra));
            crate::rules::load(&sources).rules.expect("rules")
        };
        let added = "- rule: Any Get\n  desc: d\n  condition: ka.verb = get\n  output: get %ka.uri\n  priority: INFO\n  source: k8s_audit\n";
        let data = input();
        let run = |threads: usize| {
            let (tx, mut reloads) = crate::reload::Reloads::channel();
            let mut engine = Engine::new(load("[]"), RuleMatching::All);
            let mut sink = StdoutSink::new(Vec::new(), Format::Json);
            let mut source = ReloadingSource {
                inner: LineSource::new(&data[..], 1 << 20, false, "test"),
                calls: 0,
                at: 3,
                hand: Some((tx, load(added))),
            };
            let mut driver = crate::source::driver::Driver::new(
                &mut engine,
                &mut sink,
                crate::source::clock::SystemClock,
            )
            .reloads(&mut reloads);
            match threads {
                1 => driver.run(&mut source).unwrap(),
                n => driver.run_parallel(&mut source, n).unwrap(),
            };
            drop(driver);
            assert!(source.calls > 5, "the reload came mid-input");
            String::from_utf8(sink.into_inner()).unwrap()
        };
        let one = run(1);
        let gets = one.matches("\"rule\":\"Any Get\"").count();
        let all_gets = String::from_utf8_lossy(&data)
            .matches("\"verb\":\"get\"")
            .count();
        assert!(gets > 0 && gets < all_gets, "{gets} of {all_gets}");
        assert!(run(2) == one, "the alerts differ");
    }
}
