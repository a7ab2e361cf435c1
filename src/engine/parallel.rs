//! Multi-core evaluation of any input (`--threads N`). The driver copies
//! the source's batches into jobs (a plain file's ranges it does not copy:
//! the worker reads them, [`crate::source::ranges`]); worker threads
//! decode the events and
//! match the rules, capturing per-event alerts and the keys of windowed and
//! stateful matches; the driver takes the jobs back in input order and,
//! event by event, emits the per-event alerts and feeds the stream's
//! windows. The output is the same, in the same order, as on one thread.

use std::collections::BTreeMap;
use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use crate::event::decode_document;
use crate::fields::extract::Val;
use crate::rules::RuleSet;
use crate::sink::{Alert, AlertSink};
use crate::source::documents;
use crate::source::lines::{split_lines, strip_prefixes, Line};
use crate::source::position::InputPosition;
use crate::source::ranges::FileRange;
use crate::source::{Body, StreamId};
use crate::stateful::first_seen::{Rendered, SeenHit};
use crate::stateful::{Hit, Read};
use crate::window::Key;

use super::capture::{self, Capture, Captured, Reader, StatefulHit};
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
    /// Emits what a worker captured for one event of the batch `data` (the
    /// reader's current event, `c`), and moves the windows on.
    pub fn apply(
        &mut self,
        c: Captured,
        read: &mut Reader,
        data: &[u8],
        sink: &mut dyn AlertSink,
    ) -> io::Result<()> {
        let rules: &RuleSet = &self.rules;
        for a in read.alerts() {
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
            // Keys are copied into reused strings and looked up as they
            // are: a key is allocated only when it is kept.
            let mut buf = self.windows.take_key_buffer(0);
            for (i, key, value) in read.windowed() {
                let n = key.write_into(&mut buf);
                self.windows.add_borrowed(i, c.tick, &buf[..n], value);
            }
            self.windows.return_key_buffer(buf);
            while let Some((i, hit)) = read.next_stateful() {
                match hit {
                    StatefulHit::FirstSeen { key, rendered } => {
                        let key = read.key(key);
                        self.apply_seen(i, c.time_ns, key, rendered, data, c.doc)
                    }
                    StatefulHit::Sequence(hit) => {
                        self.windows.stateful.push(i, c.time_ns, Hit::Sequence(hit));
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
    fn apply_seen(
        &mut self,
        i: usize,
        time_ns: i64,
        key: capture::Key,
        rendered: Option<Rendered>,
        data: &[u8],
        at: DocAt,
    ) {
        let state = &mut self.windows.stateful;
        let mut buf = state.take_key_buffer(0);
        let n = key.write_into(&mut buf);
        if let Read::Waits { render } = state.read_first_seen(i, &buf[..n], time_ns) {
            let rendered = match (render, rendered) {
                (false, _) => None,
                (true, Some(r)) => Some(r),
                (true, None) => alert_from_batch(&self.rules, i, data, at),
            };
            let key = Key::from(&buf[..n]);
            state.wait(i, time_ns, Hit::FirstSeen(SeenHit { key, rendered }));
        }
        state.return_key_buffer(buf);
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

/// A job grows until it holds this many bytes, or the source is about to
/// wait, or the driver needs everything evaluated.
const JOB_BYTES: usize = 256 * 1024;

/// How the source framed a piece of a job.
#[derive(Debug, Clone)]
enum Framing {
    /// Whole lines; lines over `max_line` are skipped.
    Lines { max_line: usize },
    /// A line over the limit, skipped while it streamed past.
    TooLong,
    /// A message ([`documents::for_each`]).
    Message { max_document: usize },
    /// Lines of a file that start in a range of it: the worker reads them
    /// into the job's buffer ([`crate::source::ranges`]).
    Range(FileRange),
}

/// One batch of the source inside a job: its bytes, its stream, and what
/// to acknowledge once its alerts are out.
#[derive(Debug)]
pub struct Piece {
    pub stream: StreamId,
    pub ack: Option<i64>,
    /// Where the source stood after this batch (files, for the state
    /// directory).
    pub position: Option<InputPosition>,
    framing: Framing,
    start: usize,
    end: usize,
    /// Filled in by the worker: the events the piece held, and how many
    /// of the job's captured events are its.
    pub events: u64,
    pub captured: usize,
}

/// Batches of the source, copied out, numbered.
struct Job {
    seq: u64,
    /// The rule set's generation the job was read under.
    generation: u64,
    /// The pieces' bytes: `data[..used]`, then what the worker reads of
    /// the file ranges among them (the rest is left from an earlier job).
    data: Vec<u8>,
    used: usize,
    /// Bytes of the file ranges among its pieces, which the worker reads.
    range_bytes: u64,
    pieces: Vec<Piece>,
    /// Empty, for the worker to capture the job's events into.
    capture: Capture,
}

/// A job evaluated.
pub struct Done {
    /// The job's number, in the order jobs were sent.
    pub seq: u64,
    pub stats: Stats,
    pub pieces: Vec<Piece>,
    /// The pieces' events, in order.
    pub capture: Capture,
    /// The job's bytes, which its events' [`DocAt`]s point into.
    pub data: Vec<u8>,
}

/// Worker threads that decode and match the batches of any source, for
/// [`crate::source::driver::Driver`]: it copies batches into jobs with
/// [`Pool::add`], sends them with [`Pool::send`], takes them back in order
/// with [`Pool::next_done`] and applies each event ([`Engine::apply`]) in
/// its stream's windows, so that windows, sequences and the order of alerts
/// are those of one thread.
pub struct Pool<'r> {
    /// Workers end once this is dropped, with the pool.
    work: mpsc::SyncSender<Job>,
    /// A job evaluated, or why it could not be (a file range that could
    /// not be read, a worker's panic), with the job's number.
    done: mpsc::Receiver<(u64, io::Result<Done>)>,
    /// What workers copy their engine from when the rule set changes.
    template: Arc<Mutex<Engine<'r>>>,
    generation: u64,
    building: Job,
    /// Buffers of applied jobs, to copy the next ones into, and their
    /// captures, to capture the next ones into.
    free: Vec<Vec<u8>>,
    free_captures: Vec<Capture>,
    next_seq: u64,
    next_apply: u64,
    ready: BTreeMap<u64, io::Result<Done>>,
    /// Jobs sent and not yet applied, at most: four per worker (measured
    /// faster than two on two cores; BENCHMARKS, 2026-12-03).
    limit: usize,
}

impl<'r> Pool<'r> {
    /// Starts `threads` workers in `scope`, each with its own copy of
    /// `engine`'s rules and settings.
    pub fn start<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        engine: &Engine<'r>,
        threads: usize,
    ) -> Pool<'r>
    where
        'r: 'scope,
    {
        let (work_tx, work_rx) = mpsc::sync_channel::<Job>(threads * 4);
        let work_rx = Arc::new(Mutex::new(work_rx));
        let (done_tx, done_rx) = mpsc::channel::<(u64, io::Result<Done>)>();
        let template = Arc::new(Mutex::new(engine.worker()));
        for _ in 0..threads {
            let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
            let template = template.clone();
            let mut worker = engine.worker();
            scope.spawn(move || {
                let mut generation = 0;
                loop {
                    let next = work_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(mut job)) = next else {
                        return;
                    };
                    let evaluated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        if job.generation != generation {
                            generation = job.generation;
                            worker = template
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .worker();
                        }
                        worker.capture = Some(std::mem::take(&mut job.capture));
                        worker.evaluate(&mut job)
                    }));
                    // The driver applies the jobs before this one, then stops
                    // with the error, instead of waiting for it forever.
                    let failed = match evaluated {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(panic) => Some(io::Error::other(format!(
                            "a worker thread panicked: {}",
                            panic
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_default()
                        ))),
                    };
                    if let Some(e) = failed {
                        let _ = done_tx.send((job.seq, Err(e)));
                        return;
                    }
                    let fresh = Stats::for_rules(worker.rules.rules.len());
                    let done = Done {
                        seq: job.seq,
                        stats: std::mem::replace(&mut worker.stats, fresh),
                        pieces: job.pieces,
                        capture: worker
                            .capture
                            .replace(Capture::default())
                            .unwrap_or_default(),
                        data: job.data,
                    };
                    if done_tx.send((done.seq, Ok(done))).is_err() {
                        return;
                    }
                }
            });
        }
        Pool {
            work: work_tx,
            done: done_rx,
            template,
            generation: 0,
            building: Job {
                seq: 0,
                generation: 0,
                data: Vec::new(),
                used: 0,
                range_bytes: 0,
                pieces: Vec::new(),
                capture: Capture::default(),
            },
            free: Vec::new(),
            free_captures: Vec::new(),
            next_seq: 0,
            next_apply: 0,
            ready: BTreeMap::new(),
            limit: threads * 4,
        }
    }

    /// Copies a batch into the job being built, or, for a file range, notes
    /// it for the worker to read ([`Pool::full`] says when to send the
    /// job). A stage stream's records ([`Body::Forwarded`]) are the
    /// driver's own: handed back.
    pub fn add<'b>(
        &mut self,
        stream: StreamId,
        body: Body<'b>,
        ack: Option<i64>,
        max_document: usize,
    ) -> Result<(), Body<'b>> {
        let data = &mut self.building.data;
        let start = self.building.used;
        // Bytes past `used` are left from an earlier job: a copied batch
        // replaces them, a file range is read over them.
        let mut copy = |bytes: &[u8]| {
            data.truncate(start);
            data.extend_from_slice(bytes);
        };
        let framing = match body {
            Body::Lines { text, max_line } => {
                copy(text);
                Framing::Lines { max_line }
            }
            Body::Line(Line::Text(text)) => {
                copy(text);
                data.push(b'\n');
                Framing::Lines {
                    max_line: usize::MAX,
                }
            }
            Body::Line(Line::TooLong) => Framing::TooLong,
            Body::FileRange(range) => {
                self.building.range_bytes += range.end - range.start;
                Framing::Range(range)
            }
            Body::Message(m) => {
                copy(m);
                Framing::Message { max_document }
            }
            Body::Forwarded(_) => return Err(body),
        };
        let end = match framing {
            Framing::Lines { .. } | Framing::Message { .. } => data.len(),
            Framing::TooLong | Framing::Range(_) => start,
        };
        self.building.used = end;
        self.building.pieces.push(Piece {
            stream,
            ack,
            position: None,
            framing,
            start,
            end,
            events: 0,
            captured: 0,
        });
        Ok(())
    }

    /// Where the source stood after the batch last added.
    pub fn set_position(&mut self, position: Option<InputPosition>) {
        if let Some(p) = self.building.pieces.last_mut() {
            p.position = position;
        }
    }

    /// Whether the job being built is big enough to send.
    pub fn full(&self) -> bool {
        self.building.used as u64 + self.building.range_bytes >= JOB_BYTES as u64
    }

    /// Sends the job being built, if it holds anything. Blocks while the
    /// workers hold as many jobs as their queue takes.
    pub fn send(&mut self) -> io::Result<()> {
        if self.building.pieces.is_empty() {
            return Ok(());
        }
        // Not cleared: what it holds is overwritten (a file range is read
        // over it without zeroing it first).
        let data = self.free.pop().unwrap_or_default();
        let job = Job {
            seq: self.next_seq,
            generation: self.generation,
            data: std::mem::replace(&mut self.building.data, data),
            used: std::mem::take(&mut self.building.used),
            range_bytes: std::mem::take(&mut self.building.range_bytes),
            pieces: std::mem::take(&mut self.building.pieces),
            capture: self.free_captures.pop().unwrap_or_default(),
        };
        self.next_seq += 1;
        // Refused once every worker has stopped (after a panic or a read
        // that failed).
        self.work.send(job).map_err(|_| stopped())
    }

    /// Jobs sent and not yet taken back.
    fn in_flight(&self) -> u64 {
        self.next_seq - self.next_apply
    }

    /// The next job in order: waiting for it when `wait` is set or when
    /// more jobs are out than the limit; `None` once none is out (or, not
    /// waiting, when the next is not done yet). An error, in its turn, for
    /// a job that could not be evaluated (a file range that could not be
    /// read, a worker's panic).
    pub fn next_done(&mut self, wait: bool) -> io::Result<Option<Done>> {
        loop {
            if let Some(done) = self.ready.remove(&self.next_apply) {
                self.next_apply += 1;
                return done.map(Some);
            }
            if self.in_flight() == 0 {
                return Ok(None);
            }
            let got = if wait || self.in_flight() > self.limit as u64 {
                self.done.recv().ok()
            } else {
                match self.done.try_recv() {
                    Err(mpsc::TryRecvError::Empty) => return Ok(None),
                    got => got.ok(),
                }
            };
            match got {
                Some((seq, done)) => {
                    self.ready.insert(seq, done);
                }
                // Every worker stopped, the next job not done: the first
                // failure says why.
                None => {
                    let first = self.ready.values_mut().find(|d| d.is_err());
                    return Err(match first.map(|d| std::mem::replace(d, Err(stopped()))) {
                        Some(Err(e)) => e,
                        _ => stopped(),
                    });
                }
            }
        }
    }

    /// How many jobs were sent so far: the next one sent is numbered this.
    pub fn sent(&self) -> u64 {
        self.next_seq
    }

    /// Takes back the buffer and the capture of an applied job.
    pub fn recycle(&mut self, data: Vec<u8>, mut capture: Capture) {
        capture.clear();
        self.free.push(data);
        self.free_captures.push(capture);
    }

    /// The engine's rule set changed (nothing is out): workers copy it
    /// before their next job.
    pub fn reloaded(&mut self, engine: &Engine<'r>) {
        *self.template.lock().unwrap_or_else(PoisonError::into_inner) = engine.worker();
        self.generation += 1;
    }
}

fn stopped() -> io::Error {
    io::Error::other("the worker threads stopped")
}

impl Engine<'_> {
    /// A worker's evaluation of a job: every piece as one thread would
    /// process it, alerts and windowed matches captured. A file range is
    /// read first, into the job's buffer.
    fn evaluate(&mut self, job: &mut Job) -> io::Result<()> {
        for piece in &mut job.pieces {
            if let Framing::Range(range) = &piece.framing {
                let at = range.read_lines(&mut job.data, job.used)?;
                job.used = at.end;
                (piece.start, piece.end) = (at.start, at.end);
                piece.framing = Framing::Lines {
                    max_line: range.max_line,
                };
            }
        }
        let mut discard = Discard;
        let base = job.data.as_ptr() as usize;
        for piece in &mut job.pieces {
            let (events, captured) = (self.stats.events, self.captured());
            let text = &job.data[piece.start..piece.end];
            let mut one = |engine: &mut Self, line: Line| {
                if let Line::Text(t) = &line {
                    let start = t.as_ptr() as usize - base;
                    engine.doc = DocAt {
                        start,
                        end: start + t.len(),
                        index: 0,
                    };
                }
                engine.process_line(line, &mut discard)
            };
            let _ = match &piece.framing {
                Framing::TooLong => self.process_line(Line::TooLong, &mut discard),
                Framing::Lines { max_line } => split_lines(text, *max_line, |l| one(self, l)),
                Framing::Message { max_document } => {
                    documents::for_each(text, *max_document, |l| one(self, l))
                }
                // Read above.
                Framing::Range(_) => Ok(()),
            };
            piece.events = self.stats.events - events;
            piece.captured = self.captured() - captured;
        }
        Ok(())
    }

    fn captured(&self) -> usize {
        self.capture.as_ref().map_or(0, Capture::len)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RuleMatching;
    use crate::sink::stdout::{Format, StdoutSink};
    use crate::source::lines::LineReader;
    use crate::source::stream::LineSource;
    use crate::source::{Next, Source};

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
                engine.finish(&mut sink).unwrap();
            } else {
                let mut source = LineSource::new(&data[..], 1 << 20, false, "test");
                crate::source::driver::Driver::new(
                    &mut engine,
                    &mut sink,
                    crate::source::clock::SystemClock,
                )
                .run_threads(&mut source, threads)
                .unwrap();
            }
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
        fn next(&mut self, w: &mut crate::source::BeforeWait) -> io::Result<Next<'_>> {
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
                n => driver.run_threads(&mut source, n).unwrap(),
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

    /// A file handed out in ranges that alternate between
    /// [`Body::FileRange`] (read by a worker over what its buffer held)
    /// and the same lines copied ([`Body::Lines`]), several to a job.
    struct MixedSource {
        file: Arc<std::fs::File>,
        len: u64,
        next: u64,
        n: usize,
        copied: Vec<u8>,
    }

    impl Source for MixedSource {
        fn next(&mut self, _: &mut crate::source::BeforeWait) -> io::Result<Next<'_>> {
            if self.next >= self.len {
                return Ok(Next::End);
            }
            let range = FileRange {
                file: self.file.clone(),
                name: "mixed".into(),
                start: self.next,
                end: self.next + 50_000,
                max_line: 1 << 20,
            };
            self.next = range.end;
            self.n += 1;
            let body = if self.n % 3 == 0 {
                let at = range.read_lines(&mut self.copied, 0)?;
                Body::Lines {
                    text: &self.copied[at],
                    max_line: 1 << 20,
                }
            } else {
                Body::FileRange(range)
            };
            Ok(Next::Batch(crate::source::Batch {
                stream: crate::source::StreamId(0),
                body,
                ack: None,
            }))
        }
        fn live(&self) -> bool {
            false
        }
        fn bytes(&self) -> u64 {
            self.next.min(self.len)
        }
        fn describe(&self) -> String {
            "mixed".into()
        }
    }

    #[test]
    fn ranges_and_copied_batches_in_reused_buffers_give_what_one_thread_gives() {
        let set = crate::rules::load(&crate::rules::default_sources())
            .rules
            .expect("default rules");
        let data = input();
        let path = std::env::temp_dir().join(format!("saker-mixed-{}", std::process::id()));
        std::fs::write(&path, &data).unwrap();
        let mut engine = Engine::new(&set, RuleMatching::All);
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        let mut lines = LineReader::new(&data[..], 1 << 20);
        while let Some(line) = lines.next_line(&mut || {}).unwrap() {
            engine.process_line(line, &mut sink).unwrap();
        }
        engine.finish(&mut sink).unwrap();
        let one = sink.into_inner();
        let mut engine = Engine::new(&set, RuleMatching::All);
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        let mut source = MixedSource {
            file: Arc::new(std::fs::File::open(&path).unwrap()),
            len: data.len() as u64,
            next: 0,
            n: 0,
            copied: Vec::new(),
        };
        crate::source::driver::Driver::new(
            &mut engine,
            &mut sink,
            crate::source::clock::SystemClock,
        )
        .run_threads(&mut source, 2)
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(source.n > 60, "many ranges: {}", source.n);
        assert_eq!(
            engine.stats.lines,
            data.iter().filter(|&&b| b == b'\n').count() as u64
        );
        assert!(sink.into_inner() == one, "the alerts differ");
    }

    /// Ranges of a file, those numbered in `bad` of a directory, which
    /// cannot be read.
    struct FailingSource {
        file: Arc<std::fs::File>,
        dir: Arc<std::fs::File>,
        len: u64,
        n: u64,
        bad: Vec<u64>,
    }

    impl Source for FailingSource {
        fn next(&mut self, _: &mut crate::source::BeforeWait) -> io::Result<Next<'_>> {
            let start = self.n * 20_000;
            if start >= self.len {
                return Ok(Next::End);
            }
            let file = if self.bad.contains(&self.n) {
                &self.dir
            } else {
                &self.file
            };
            self.n += 1;
            Ok(Next::Batch(crate::source::Batch {
                stream: crate::source::StreamId(0),
                body: Body::FileRange(FileRange {
                    file: file.clone(),
                    name: "the-input".into(),
                    start,
                    end: start + 20_000,
                    max_line: 1 << 20,
                }),
                ack: None,
            }))
        }
        fn live(&self) -> bool {
            false
        }
        fn bytes(&self) -> u64 {
            0
        }
        fn describe(&self) -> String {
            "failing".into()
        }
    }

    #[test]
    fn a_range_that_cannot_be_read_stops_the_run_after_the_jobs_before_it() {
        let set = crate::rules::load(&crate::rules::default_sources())
            .rules
            .expect("default rules");
        let data = input();
        let path = std::env::temp_dir().join(format!("saker-failing-{}", std::process::id()));
        std::fs::write(&path, &data).unwrap();
        let run = |bad: Vec<u64>| {
            let mut engine = Engine::new(&set, RuleMatching::All);
            let mut sink = StdoutSink::new(Vec::new(), Format::Json);
            let mut source = FailingSource {
                file: Arc::new(std::fs::File::open(&path).unwrap()),
                dir: Arc::new(std::fs::File::open(std::env::temp_dir()).unwrap()),
                len: data.len() as u64,
                n: 0,
                bad,
            };
            let result = crate::source::driver::Driver::new(
                &mut engine,
                &mut sink,
                crate::source::clock::SystemClock,
            )
            .run_threads(&mut source, 2);
            (result, String::from_utf8(sink.into_inner()).unwrap())
        };
        let (all, everything) = run(Vec::new());
        assert!(all.is_ok());
        // One job fails (one worker stops), then two (both stop, and the
        // next job cannot be sent): the first failure is the run's error.
        for bad in [vec![40], vec![40, 60]] {
            let (failed, before) = run(bad.clone());
            let e = failed.expect_err("the directory cannot be read");
            assert!(
                e.to_string()
                    .contains("cannot read the-input at byte 800000"),
                "{bad:?}: {e}"
            );
            // The jobs before the one that failed were applied, as one
            // thread applies them.
            let (n, all) = (before.lines().count(), everything.lines().count());
            assert!(n > 20 && n < all, "{bad:?}: {n} of {all}");
            assert!(everything.starts_with(&before), "{bad:?}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
