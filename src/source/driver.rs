//! The one loop that runs every input through the engine. It pulls batches
//! from a [`Source`], keeps each stream's windows (swapped into the engine
//! for that stream's batches), rebuilds a stream's state when the source
//! resets it, moves quiet live streams on with the wall clock, flushes the
//! outputs, and acknowledges each batch once its alerts are out.
//!
//! Between two batches it switches the engine to a reloaded rule set
//! ([`Reloads`]), converting every stream's state.
//!
//! The clock is passed in ([`Clock`]), so tests drive idle time and flush
//! intervals by hand.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use super::clock::Clock;
use super::lines::split_lines;
use super::position::InputPosition;
use super::{documents, Ack, Body, Next, Source, StreamId};
use crate::engine::parallel::{self, Pool};
use crate::engine::windows::snapshot::Snapshot;
use crate::engine::windows::Windows;
use crate::engine::{forward, Engine};
use crate::reload::{Pending, Reloads};
use crate::sink::AlertSink;

/// Timing of the loop.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a live stream must be quiet before its event time follows
    /// the wall clock.
    pub idle: Duration,
    /// How often quiet streams are looked at.
    pub idle_check: Duration,
    /// How often buffered alerts are written out while a live stream keeps
    /// the loop busy (they are also written whenever it is about to wait).
    pub flush_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            idle: Duration::from_secs(1),
            idle_check: Duration::from_millis(250),
            flush_every: Duration::from_millis(5),
        }
    }
}

/// How the input finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// It ended; every remaining tick was evaluated.
    End,
    /// It was stopped; what was read is evaluated and acknowledged.
    Stopped,
}

/// Documents of a message longer than this are skipped, unless set
/// otherwise (`--max-line-bytes`).
const DEFAULT_MAX_DOCUMENT: usize = 1 << 20;
/// Lines between two progress reports.
const PROGRESS_EVERY: u64 = 4096;

/// Keeps the state of a single-stream source (stdin, a file, the HTTP
/// receiver) across restarts: the state directory's [`crate::state::keeper::Keeper`].
/// Failures are the keeper's to log and count; they never stop the run.
pub trait Checkpoint {
    /// The outputs were flushed: the alerts of everything read up to
    /// `position` are out.
    fn flushed(&mut self, position: Option<&InputPosition>, now: Instant);
    /// Whether a snapshot is due.
    fn due(&mut self, now: Instant) -> bool;
    /// Saves `snapshot`, the state as of `position`; the outputs are
    /// flushed.
    fn save(&mut self, snapshot: Snapshot, position: Option<&InputPosition>, now: Instant);
}

struct StreamState {
    /// The stream's windows while another stream's are in the engine.
    parked: Windows,
    last_event: Instant,
    /// A partition of the repartition topic: its watermark comes from its
    /// input partitions' marks.
    stage: bool,
}

/// Runs a source through an engine into a sink.
pub struct Driver<'d, 'r, C: Clock> {
    engine: &'d mut Engine<'r>,
    sink: &'d mut dyn AlertSink,
    clock: C,
    timing: Timing,
    max_document: usize,
    streams: HashMap<StreamId, StreamState>,
    /// The stream whose windows are in the engine.
    current: Option<StreamId>,
    /// Whether a second stream was ever seen: window keys are then summed
    /// over all of them for the metrics.
    several: bool,
    acks: Vec<Ack>,
    progress: Option<Box<dyn FnMut(u64, u64) + 'd>>,
    checkpoint: Option<&'d mut dyn Checkpoint>,
    reloads: Option<&'d mut Reloads>,
    /// With workers: where the source stood after the last batch whose
    /// alerts were emitted.
    applied: Option<InputPosition>,
    /// Streams the source closed while the workers held batches of
    /// theirs, and how many jobs had been sent then: those jobs' pieces of
    /// the stream are dropped.
    closed: HashMap<StreamId, u64>,
    /// The lines of a file range read on this thread (without workers).
    range_buffer: Vec<u8>,
}

impl<'d, 'r, C: Clock> Driver<'d, 'r, C> {
    pub fn new(engine: &'d mut Engine<'r>, sink: &'d mut dyn AlertSink, clock: C) -> Self {
        Driver {
            engine,
            sink,
            clock,
            timing: Timing::default(),
            max_document: DEFAULT_MAX_DOCUMENT,
            streams: HashMap::new(),
            current: None,
            several: false,
            acks: Vec::new(),
            progress: None,
            checkpoint: None,
            reloads: None,
            applied: None,
            closed: HashMap::new(),
            range_buffer: Vec::new(),
        }
    }

    /// Switches to the rule sets `reloads` hands over, between batches.
    pub fn reloads(mut self, reloads: &'d mut Reloads) -> Self {
        self.reloads = Some(reloads);
        self
    }

    /// Keeps the state directory up to date as the run goes. With one, the
    /// end of the input is a pause, not the end of the stream: what the
    /// watermark passed is evaluated, the rest is saved for the next run.
    pub fn checkpoint(mut self, checkpoint: &'d mut dyn Checkpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Documents of a message longer than this are skipped and counted.
    pub fn max_document(mut self, bytes: usize) -> Self {
        self.max_document = bytes;
        self
    }

    /// Called now and then with the bytes read and the events seen.
    pub fn progress(mut self, f: impl FnMut(u64, u64) + 'd) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Pulls `source` until it ends or is stopped, then closes it.
    pub fn run(&mut self, source: &mut dyn Source) -> io::Result<Finished> {
        self.run_on(source, None)
    }

    /// As [`Driver::run`], with `threads` workers decoding and matching
    /// ([`Pool`]): the same alerts, in the same order. Batches are copied
    /// into jobs as they come; the driver takes them back in order before
    /// anything that needs the stream's state as of its last batch (an
    /// idle check, a reset, a reload, a snapshot, the end) and before the
    /// source waits, so a quiet stream's alerts and acknowledgements are
    /// not held back. Repartitioning (the engine forwards matches) runs on
    /// one thread.
    pub fn run_threads(&mut self, source: &mut dyn Source, threads: usize) -> io::Result<Finished> {
        if threads <= 1 {
            return self.run(source);
        }
        if self.engine.forwarding() {
            tracing::warn!(
                threads,
                "--threads: repartitioning rules are evaluated on one thread"
            );
            return self.run(source);
        }
        tracing::info!(threads, "decoding and matching on worker threads");
        std::thread::scope(|scope| {
            let mut pool = Pool::start(scope, self.engine, threads);
            self.run_on(source, Some(&mut pool))
        })
    }

    fn run_on(
        &mut self,
        source: &mut dyn Source,
        mut pool: Option<&mut Pool<'r>>,
    ) -> io::Result<Finished> {
        let live = source.live();
        let now = self.clock.now();
        let (mut last_flush, mut last_check) = (now, now);
        let mut next_progress = PROGRESS_EVERY;
        let keeping = self.checkpoint.is_some();
        let finished = loop {
            if let Some(pending) = self.reloads.as_mut().and_then(|r| r.take()) {
                self.drain(pool.as_deref_mut())?;
                self.reload(pending)?;
                if let Some(p) = pool.as_deref_mut() {
                    p.reloaded(self.engine);
                }
            }
            // Before the source polls again (a Kafka revoke commits what
            // was acknowledged by then).
            self.acknowledge(source)?;
            let mut flushed = false;
            // What is out once the outputs are flushed, should the source
            // flush them before it waits.
            let before = if keeping { source.position() } else { None };
            let next = source.next(&mut || {
                flushed = true;
                self.drain(pool.as_deref_mut())?;
                self.sink.flush()?;
                Ok(std::mem::take(&mut self.acks))
            })?;
            if flushed {
                last_flush = self.clock.now();
                if let Some(c) = &mut self.checkpoint {
                    c.flushed(before.as_ref(), last_flush);
                }
            }
            match next {
                Next::Batch(batch) => {
                    let (stream, position) = (batch.stream, batch.ack);
                    let body = match pool.as_deref_mut() {
                        None => Some(batch.body),
                        Some(p) => match p.add(stream, batch.body, position, self.max_document) {
                            Err(body) => Some(body),
                            Ok(()) => {
                                let at = if keeping { source.position() } else { None };
                                self.queued(p, at)?;
                                None
                            }
                        },
                    };
                    if let Some(body) = body {
                        // Not a worker's: what came before goes first.
                        self.drain(pool.as_deref_mut())?;
                        let stage = matches!(body, Body::Forwarded(_));
                        let progress = self.batch(stream, position, stage, body)?;
                        if let Some(outbox) = self.engine.take_outbox() {
                            source.forward(stream, outbox, self.engine.rules())?;
                        }
                        if let Some(progress) = progress {
                            source.progress(stream, progress);
                        }
                    }
                }
                Next::Idle => {}
                Next::Reset(stream) => {
                    self.drain(pool.as_deref_mut())?;
                    let stage = source.stage(stream);
                    self.reset(source, stream, stage)?
                }
                Next::Closed(stream) => {
                    // What the workers hold of it is dropped when it comes
                    // back: not acknowledged, so the stream's next owner
                    // reads it.
                    if let Some(p) = pool.as_deref_mut() {
                        self.send(p)?;
                        self.closed.insert(stream, p.sent());
                    }
                    self.close_stream(stream)
                }
                Next::End => {
                    self.drain(pool.as_deref_mut())?;
                    if !keeping {
                        self.finish_all()?;
                    }
                    break Finished::End;
                }
                Next::Stop => {
                    self.drain(pool.as_deref_mut())?;
                    break Finished::Stopped;
                }
            }
            if self.engine.stats.lines >= next_progress {
                next_progress = self.engine.stats.lines + PROGRESS_EVERY;
                if let Some(f) = &mut self.progress {
                    f(source.bytes(), self.engine.stats.events);
                }
            }
            if live || keeping {
                let now = self.clock.now();
                if now.duration_since(last_flush) >= self.timing.flush_every {
                    self.sink.flush()?;
                    last_flush = now;
                    let position = match pool {
                        Some(_) => self.applied.clone(),
                        None => source.position(),
                    };
                    if let Some(c) = &mut self.checkpoint {
                        c.flushed(position.as_ref(), now);
                    }
                }
                if live && now.duration_since(last_check) >= self.timing.idle_check {
                    last_check = now;
                    self.drain(pool.as_deref_mut())?;
                    self.follow_wall_clock(now, source)?;
                }
                if self.checkpoint.as_mut().is_some_and(|c| c.due(now)) {
                    self.drain(pool.as_deref_mut())?;
                    self.save(source)?;
                }
            }
        };
        self.sink.flush()?;
        self.acknowledge(source)?;
        if keeping {
            self.save(source)?;
        }
        source.close()?;
        Ok(finished)
    }

    /// Runs a batch through the engine on this thread; for a stage
    /// stream's record, returns what it did.
    fn batch(
        &mut self,
        stream: StreamId,
        ack: Option<i64>,
        stage: bool,
        body: Body,
    ) -> io::Result<Option<forward::Progress>> {
        self.enter(stream, stage);
        let before = self.engine.stats.events;
        let progress = self.process(body)?;
        // The metrics' totals as of the batch's end.
        self.engine.publish(None);
        let now = self.clock.now();
        self.evaluated(stream, ack, self.engine.stats.events - before, now);
        Ok(progress)
    }

    /// A batch of `stream` holding `events` is out: the stream was busy at
    /// `now`, and the batch is acknowledged once the outputs are flushed.
    fn evaluated(&mut self, stream: StreamId, ack: Option<i64>, events: u64, now: Instant) {
        if events > 0 {
            if let Some(s) = self.streams.get_mut(&stream) {
                s.last_event = now;
            }
        }
        if let Some(position) = ack {
            self.acks.push(Ack {
                stream,
                position,
                events,
            });
        }
    }

    /// A batch was copied into the pool, the source standing at `at`
    /// after it: sends the job once it is full, and applies the jobs the
    /// workers have finished (waiting only when too many are out).
    fn queued(&mut self, pool: &mut Pool<'r>, at: Option<InputPosition>) -> io::Result<()> {
        pool.set_position(at);
        if pool.full() {
            self.send(pool)?;
        }
        while let Some(done) = pool.next_done(false)? {
            self.apply(pool, done)?;
        }
        Ok(())
    }

    /// Sends what the pool holds and applies every job it has out.
    fn drain(&mut self, pool: Option<&mut Pool<'r>>) -> io::Result<()> {
        let Some(pool) = pool else { return Ok(()) };
        self.send(pool)?;
        while let Some(done) = pool.next_done(true)? {
            self.apply(pool, done)?;
        }
        Ok(())
    }

    /// Sends the job the pool is building. Should every worker have
    /// stopped (each on a job it could not evaluate), the jobs before the
    /// first of those are applied, and its error is the run's.
    fn send(&mut self, pool: &mut Pool<'r>) -> io::Result<()> {
        let Err(stopped) = pool.send() else {
            return Ok(());
        };
        while let Some(done) = pool.next_done(true)? {
            self.apply(pool, done)?;
        }
        Err(stopped)
    }

    /// Emits a job the workers evaluated, piece by piece in the stream's
    /// windows, and records the pieces' acknowledgements; the pieces of a
    /// stream closed meanwhile are dropped.
    fn apply(&mut self, pool: &mut Pool<'r>, mut done: parallel::Done) -> io::Result<()> {
        self.engine.absorb_job(&done.stats, done.capture.skips());
        let seq = done.seq;
        let mut read = done.capture.read();
        let now = self.clock.now();
        for piece in done.pieces {
            if self.closed.get(&piece.stream) > Some(&seq) {
                read.skip(piece.captured);
                continue;
            }
            self.enter(piece.stream, false);
            for _ in 0..piece.captured {
                let Some(c) = read.next_event() else { break };
                self.engine.apply(c, &mut read, &done.data, self.sink)?;
            }
            self.evaluated(piece.stream, piece.ack, piece.events, now);
            if piece.position.is_some() {
                self.applied = piece.position;
            }
        }
        // Jobs before `sent` are all applied once this one is.
        self.closed.retain(|_, sent| *sent > seq + 1);
        self.engine.publish(None);
        drop(read);
        pool.recycle(done.data, done.capture);
        Ok(())
    }

    /// Flushes the outputs and saves the state as of the source's position.
    fn save(&mut self, source: &mut dyn Source) -> io::Result<()> {
        self.sink.flush()?;
        let now = self.clock.now();
        let position = source.position();
        let snapshot = self.engine.snapshot();
        tracing::debug!(
            seconds = format!("{:.3}", now.elapsed().as_secs_f64()),
            "state copied out for a snapshot"
        );
        if let Some(c) = &mut self.checkpoint {
            c.save(snapshot, position.as_ref(), now);
        }
        Ok(())
    }

    /// Switches the engine to a reloaded rule set: every stream's state is
    /// converted, the engine's and those parked.
    fn reload(&mut self, pending: Pending) -> io::Result<()> {
        let started = Instant::now();
        let parked = self.streams.values_mut().map(|s| &mut s.parked);
        let report =
            self.engine
                .reload(pending.rules.clone(), pending.matching, parked, self.sink)?;
        let current = self.current;
        let parked: usize = self
            .streams
            .iter()
            .filter(|(id, _)| Some(**id) != current)
            .map(|(_, s)| s.parked.keys())
            .sum();
        let keys = parked + self.engine.window_keys();
        if self.several {
            self.engine.publish_window_keys(keys);
        }
        pending.applied(&report, started.elapsed(), keys);
        Ok(())
    }

    /// Flushes the outputs and acknowledges what was processed.
    fn acknowledge(&mut self, source: &mut dyn Source) -> io::Result<()> {
        if self.acks.is_empty() {
            return Ok(());
        }
        self.sink.flush()?;
        for ack in self.acks.drain(..) {
            source.ack(ack)?;
        }
        Ok(())
    }

    /// Runs a batch through the engine; a stage stream's record returns
    /// what it did.
    fn process(&mut self, body: Body) -> io::Result<Option<forward::Progress>> {
        let (engine, sink) = (&mut *self.engine, &mut *self.sink);
        match body {
            Body::Line(line) => engine.process_line(line, sink),
            Body::Lines { text, max_line } => {
                split_lines(text, max_line, |line| engine.process_line(line, sink))
            }
            Body::FileRange(range) => {
                let at = range.read_lines(&mut self.range_buffer, 0)?;
                let buf = &self.range_buffer;
                split_lines(&buf[at], range.max_line, |line| {
                    engine.process_line(line, sink)
                })
            }
            Body::Message(message) => documents::for_each(message, self.max_document, |doc| {
                engine.process_line(doc, sink)
            }),
            Body::Forwarded(record) => {
                return engine
                    .apply_record(record, Some(self.clock.now()), Some(sink))
                    .map(Some)
            }
        }
        .map(|()| None)
    }

    /// Puts `stream`'s windows into the engine (a new stream starts empty).
    fn enter(&mut self, stream: StreamId, stage: bool) {
        if self.current == Some(stream) {
            return;
        }
        if let Some(cur) = self.current {
            if let Some(s) = self.streams.get_mut(&cur) {
                self.engine.swap_windows(&mut s.parked);
            }
        }
        let now = self.clock.now();
        // The first stream takes the windows the engine holds (restored
        // ones, after a restart); a later one starts empty.
        // A stage stream's windows hold other rules: it never takes them.
        let first = self.current.is_none() && self.streams.is_empty() && !stage;
        if !self.streams.contains_key(&stream) {
            self.several |= !self.streams.is_empty();
            let parked = self.engine.new_windows_for(stage);
            self.streams.insert(
                stream,
                StreamState {
                    parked,
                    last_event: now,
                    stage,
                },
            );
        }
        if !first {
            if let Some(s) = self.streams.get_mut(&stream) {
                self.engine.swap_windows(&mut s.parked);
            }
        }
        self.current = Some(stream);
    }

    /// Starts `stream` afresh and rebuilds its windows from what the source
    /// can replay; alerts that the replay finds still firing are re-sent to
    /// the outputs that keep alert state.
    fn reset(&mut self, source: &mut dyn Source, stream: StreamId, stage: bool) -> io::Result<()> {
        self.enter(stream, stage);
        let mut fresh = self.engine.new_windows_for(stage);
        self.engine.swap_windows(&mut fresh);
        if !self.engine.windowed() {
            return Ok(());
        }
        let horizon = self.engine.horizon_ns();
        let engine = &mut *self.engine;
        source.replay(stream, horizon, &mut |doc| {
            if stage {
                let _ = engine.apply_record(doc, None, None);
            } else {
                engine.warm_up(doc);
            }
        })?;
        if source.replay_cut() {
            return Ok(());
        }
        if stage {
            // Its alerts up to the committed watermark are out: the rebuilt
            // windows start there, whatever the replayed marks say.
            let resumed = source.resumed_watermark(stream);
            self.engine.stage_warmed(self.clock.now(), resumed);
            if resumed.is_some() {
                let progress = forward::Progress {
                    watermark_ns: resumed,
                    duplicates: 0,
                };
                source.progress(stream, progress);
            }
        }
        let n = self.engine.refresh_firing(self.sink)?;
        if n > 0 {
            tracing::info!(
                stream = stream.0,
                alerts = n,
                "firing alerts re-sent after rebuilding a stream's windows"
            );
        }
        Ok(())
    }

    fn close_stream(&mut self, stream: StreamId) {
        if self.current == Some(stream) {
            // The engine holds its windows: put a fresh set in their place.
            let mut fresh = self.engine.new_windows();
            self.engine.swap_windows(&mut fresh);
            self.current = None;
        }
        self.streams.remove(&stream);
    }

    /// End of input: every stream's remaining ticks are evaluated.
    fn finish_all(&mut self) -> io::Result<()> {
        let mut ids: Vec<StreamId> = self.streams.keys().copied().collect();
        ids.sort();
        if ids.is_empty() {
            return self.engine.finish(self.sink);
        }
        for id in ids {
            let stage = self.streams.get(&id).is_some_and(|s| s.stage);
            self.enter(id, stage);
            self.engine.finish(self.sink)?;
        }
        Ok(())
    }

    /// Streams quiet for a while move on with the wall clock, so alerts
    /// resolve and absence rules fire when nothing arrives.
    fn follow_wall_clock(&mut self, now: Instant, source: &mut dyn Source) -> io::Result<()> {
        if self.engine.windowed() || self.engine.forwarding() {
            let mut quiet: Vec<(StreamId, Duration)> = self
                .streams
                .iter()
                .filter(|(_, s)| !s.stage)
                .map(|(id, s)| (*id, now.duration_since(s.last_event)))
                .filter(|(_, q)| *q >= self.timing.idle)
                .collect();
            quiet.sort();
            for (id, q) in quiet {
                self.enter(id, false);
                self.engine.idle(q.as_nanos() as u64, self.sink)?;
            }
            // A stage stream's input partitions may have gone idle.
            let mut stages: Vec<StreamId> = self
                .streams
                .iter()
                .filter(|(_, s)| s.stage)
                .map(|(id, _)| *id)
                .collect();
            stages.sort();
            for id in stages {
                self.enter(id, true);
                if let Some(ns) = self.engine.stage_idle(now, self.sink)? {
                    let progress = forward::Progress {
                        watermark_ns: Some(ns),
                        duplicates: 0,
                    };
                    source.progress(id, progress);
                }
            }
        }
        if self.several {
            let parked: usize = self
                .streams
                .iter()
                .filter(|(id, _)| Some(**id) != self.current)
                .map(|(_, s)| s.parked.keys())
                .sum();
            let current = self.current.map_or(0, |_| self.engine.window_keys());
            self.engine.publish_window_keys(parked + current);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    use super::*;
    use crate::engine::RuleMatching;
    use crate::rules::RuleSet;
    use crate::sink::Alert;
    use crate::source::clock::FakeClock;
    use crate::source::lines::Line;
    use crate::source::{Batch, BeforeWait};

    type Log = Rc<RefCell<Vec<String>>>;

    fn rules() -> RuleSet {
        crate::rules::load(&crate::rules::default_sources())
            .rules
            .expect("default rules")
    }

    /// A 403 for `user` at second `s` of the day (Forbidden Burst counts
    /// twenty in a minute).
    fn denied(user: &str, s: u32) -> String {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"d{s}","stage":"ResponseComplete","requestURI":"/api/v1/configmaps","verb":"list","user":{{"username":"{user}"}},"objectRef":{{"resource":"configmaps","apiVersion":"v1"}},"responseStatus":{{"code":403}},"stageTimestamp":"2024-10-29T12:{:02}:{:02}Z"}}"#,
            s / 60,
            s % 60
        )
    }

    /// An exec into a pod: a per-event alert.
    fn exec(n: u32) -> String {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"e{n}","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/default/pods/web/exec?command=sh","verb":"create","user":{{"username":"alice"}},"objectRef":{{"resource":"pods","namespace":"default","name":"web","subresource":"exec"}},"responseStatus":{{"code":101}},"stageTimestamp":"2024-10-29T12:22:{:02}Z"}}"#,
            n % 60
        )
    }

    enum Step {
        /// A document of a stream, perhaps to acknowledge; the clock moves
        /// on by the duration first.
        Doc(u64, String, Option<i64>, Duration),
        /// Nothing arrives while the clock moves on.
        Idle(Duration),
        Reset(u64),
        Closed(u64),
        /// Hands the default rules plus these to the driver.
        Reload(&'static str),
        End,
    }

    /// A scripted source on a fake clock, logging what the driver asks.
    struct Script<'c> {
        steps: VecDeque<Step>,
        clock: &'c FakeClock,
        log: Log,
        live: bool,
        doc: String,
        /// What `replay` feeds.
        history: Vec<String>,
        reloads: Option<std::sync::mpsc::Sender<Pending>>,
    }

    impl<'c> Script<'c> {
        fn new(clock: &'c FakeClock, log: &Log, live: bool, steps: Vec<Step>) -> Self {
            Script {
                steps: steps.into(),
                clock,
                log: log.clone(),
                live,
                doc: String::new(),
                history: Vec::new(),
                reloads: None,
            }
        }
    }

    impl Source for Script<'_> {
        fn next(&mut self, before_wait: &mut BeforeWait) -> io::Result<Next<'_>> {
            match self.steps.pop_front().unwrap_or(Step::End) {
                Step::Doc(stream, doc, ack, after) => {
                    self.clock.advance(after);
                    self.doc = doc;
                    Ok(Next::Batch(Batch {
                        stream: StreamId(stream),
                        body: Body::Line(Line::Text(self.doc.as_bytes())),
                        ack,
                    }))
                }
                Step::Idle(d) => {
                    if self.live {
                        for ack in before_wait()? {
                            self.ack(ack)?;
                        }
                    }
                    self.clock.advance(d);
                    Ok(Next::Idle)
                }
                Step::Reset(s) => Ok(Next::Reset(StreamId(s))),
                Step::Reload(extra) => {
                    let mut sources = crate::rules::default_sources();
                    sources.push(crate::rules::RuleSource::Embedded("extra.yaml", extra));
                    let rules = crate::rules::load(&sources).rules.expect("rules");
                    let status = crate::reload::status::Status::new();
                    let cause = crate::reload::Cause::Files;
                    let p = Pending::new(rules, RuleMatching::First, cause, status);
                    self.log.borrow_mut().push("reload".into());
                    if let Some(tx) = &self.reloads {
                        tx.send(p).unwrap();
                    }
                    Ok(Next::Idle)
                }
                Step::Closed(s) => Ok(Next::Closed(StreamId(s))),
                Step::End => Ok(Next::End),
            }
        }

        fn ack(&mut self, ack: Ack) -> io::Result<()> {
            self.log
                .borrow_mut()
                .push(format!("ack {} {}", ack.position, ack.events));
            Ok(())
        }

        fn replay(
            &mut self,
            stream: StreamId,
            _horizon_ns: i64,
            doc: &mut dyn FnMut(&[u8]),
        ) -> io::Result<()> {
            self.log.borrow_mut().push(format!("replay {}", stream.0));
            for d in &self.history {
                doc(d.as_bytes());
            }
            Ok(())
        }

        fn live(&self) -> bool {
            self.live
        }

        fn bytes(&self) -> u64 {
            0
        }

        fn describe(&self) -> String {
            "script".into()
        }
    }

    /// Logs alerts (with the fake time they left, in ms from the start)
    /// and flushes.
    struct Recorder<'c> {
        log: Log,
        clock: &'c FakeClock,
        start: Instant,
    }

    impl<'c> Recorder<'c> {
        /// Logs into `log`, with times since now on `clock`.
        fn new(log: &Log, clock: &'c FakeClock) -> Self {
            Recorder {
                log: log.clone(),
                clock,
                start: clock.now(),
            }
        }
    }

    impl AlertSink for Recorder<'_> {
        fn emit(&mut self, a: &Alert) -> io::Result<()> {
            let state = match &a.aggregate {
                Some(agg) if agg.firing => " firing",
                Some(_) => " resolved",
                None => "",
            };
            let ms = self.clock.now().duration_since(self.start).as_millis();
            self.log
                .borrow_mut()
                .push(format!("emit {}{state} @{ms}", a.rule));
            Ok(())
        }
        fn refresh(&mut self, a: &Alert) -> io::Result<()> {
            self.log.borrow_mut().push(format!("refresh {}", a.rule));
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.log.borrow_mut().push("flush".into());
            Ok(())
        }
    }

    /// Runs `steps`; returns the log.
    fn drive(live: bool, steps: Vec<Step>, history: Vec<String>) -> Vec<String> {
        drive_on(1, live, steps, history)
    }

    /// Runs `steps` with `threads` workers; returns the log.
    fn drive_on(threads: usize, live: bool, steps: Vec<Step>, history: Vec<String>) -> Vec<String> {
        let set = rules();
        let clock = FakeClock::default();
        let log: Log = Rc::default();
        let mut engine = Engine::new(&set, RuleMatching::First);
        let mut sink = Recorder::new(&log, &clock);
        let mut source = Script::new(&clock, &log, live, steps);
        source.history = history;
        Driver::new(&mut engine, &mut sink, &clock)
            .run_threads(&mut source, threads)
            .unwrap();
        let out = log.borrow().clone();
        out
    }

    #[test]
    fn a_reload_between_batches_converts_every_stream() {
        let set = rules();
        let clock = FakeClock::default();
        let log: Log = Rc::default();
        let mut engine = Engine::new(&set, RuleMatching::First);
        let mut sink = Recorder::new(&log, &clock);
        // Ten denials of mallory in stream 0 and of eve in stream 1; then a
        // rule is added; ten more of each. Forbidden Burst counts twenty
        // in both streams across the reload (each fires and resolves at
        // the end of the file, stream by stream); the new rule sees the
        // last ten of each.
        let mut steps: Vec<Step> = Vec::new();
        for s in 0..10 {
            steps.push(Step::Doc(0, denied("mallory", s), None, Duration::ZERO));
            steps.push(Step::Doc(1, denied("eve", s), None, Duration::ZERO));
        }
        steps.push(Step::Reload(
            "- rule: Denied\n  desc: d\n  condition: ka.response.code = 403\n  output: denied\n  priority: INFO\n  source: k8s_audit\n",
        ));
        for s in 10..20 {
            steps.push(Step::Doc(1, denied("eve", s), None, Duration::ZERO));
            steps.push(Step::Doc(0, denied("mallory", s), None, Duration::ZERO));
        }
        steps.push(Step::End);
        let mut source = Script::new(&clock, &log, false, steps);
        let (tx, mut reloads) = Reloads::channel();
        source.reloads = Some(tx);
        Driver::new(&mut engine, &mut sink, &clock)
            .reloads(&mut reloads)
            .run(&mut source)
            .unwrap();
        let log = log.borrow().clone();
        let before = log.iter().position(|l| l == "reload").unwrap();
        assert!(alerts(&log[..before]).is_empty(), "{log:?}");
        let after = alerts(&log[before..]);
        assert_eq!(after.iter().filter(|a| **a == "emit Denied").count(), 20);
        let bursts: Vec<&&str> = after.iter().filter(|a| a.contains("Burst")).collect();
        assert_eq!(
            bursts,
            [
                &"emit Forbidden Burst firing",
                &"emit Forbidden Burst resolved",
                &"emit Forbidden Burst firing",
                &"emit Forbidden Burst resolved"
            ],
            "{log:?}"
        );
        assert_eq!(engine.rules().rules.len(), set.rules.len() + 1);
    }

    fn burst(user: &str) -> Vec<Step> {
        (0..20)
            .map(|s| Step::Doc(0, denied(user, s), None, Duration::from_millis(1)))
            .collect()
    }

    fn alerts(log: &[String]) -> Vec<&str> {
        log.iter()
            .filter(|l| l.starts_with("emit"))
            .map(|l| l.split(" @").next().unwrap_or(l))
            .collect()
    }

    /// Logs what the driver asks of a state keeper.
    struct Keeper {
        log: Log,
        due_at: usize,
        calls: usize,
    }

    impl Checkpoint for Keeper {
        fn flushed(&mut self, _: Option<&InputPosition>, _: Instant) {
            self.log.borrow_mut().push("flushed".into());
        }
        fn due(&mut self, _: Instant) -> bool {
            self.calls += 1;
            self.calls == self.due_at
        }
        fn save(&mut self, snapshot: Snapshot, _: Option<&InputPosition>, _: Instant) {
            let keys: usize = snapshot
                .rules
                .iter()
                .map(|r| r.window.as_ref().map_or(0, |w| w.held.len()))
                .sum();
            self.log.borrow_mut().push(format!("save {keys}"));
        }
    }

    #[test]
    fn with_a_checkpoint_the_end_is_a_pause_and_the_state_is_saved() {
        let set = rules();
        let clock = FakeClock::default();
        let log: Log = Rc::default();
        let mut engine = Engine::new(&set, RuleMatching::First);
        let mut sink = Recorder::new(&log, &clock);
        let mut source = Script::new(&clock, &log, false, burst("mallory"));
        let mut keeper = Keeper {
            log: log.clone(),
            due_at: 10,
            calls: 0,
        };
        Driver::new(&mut engine, &mut sink, &clock)
            .checkpoint(&mut keeper)
            .run(&mut source)
            .unwrap();
        let log = log.borrow().clone();
        // Twenty denials: the burst's tick is not passed by the watermark,
        // and the end does not evaluate it; the state is saved twice (when
        // due, and at the end), each time after a flush.
        assert!(alerts(&log).is_empty(), "{log:?}");
        let saves: Vec<usize> = log
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with("save"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(saves.len(), 2, "{log:?}");
        assert!(saves.iter().all(|&i| log[i - 1] == "flush"), "{log:?}");
        // What was saved is the stream's state, which the engine holds.
        assert!(engine.window_keys() > 0);
        assert_eq!(log[saves[1]], format!("save {}", engine.window_keys()));
    }

    #[test]
    fn a_quiet_live_stream_follows_the_wall_clock() {
        let mut steps = burst("mallory");
        steps.extend((0..60).map(|_| Step::Idle(Duration::from_secs(1))));
        let log = drive(true, steps, Vec::new());
        let emitted: Vec<&String> = log.iter().filter(|l| l.starts_with("emit")).collect();
        assert_eq!(emitted.len(), 2, "{log:?}");
        // Fired once the watermark (last tick 19 − 5s lateness + quiet
        // time) reached tick 19, and resolved at tick 60, both while the
        // stream was quiet, at the wall-clock times those take.
        let at = |l: &str| -> u64 { l.rsplit('@').next().unwrap().parse().unwrap() };
        assert!(emitted[0].starts_with("emit Forbidden Burst firing"));
        assert!((5_000..6_300).contains(&at(emitted[0])), "{emitted:?}");
        assert!(emitted[1].starts_with("emit Forbidden Burst resolved"));
        assert!((46_000..47_300).contains(&at(emitted[1])), "{emitted:?}");
    }

    #[test]
    fn a_file_does_not_follow_the_wall_clock() {
        let mut steps = burst("mallory");
        steps.extend((0..60).map(|_| Step::Idle(Duration::from_secs(1))));
        let log = drive(false, steps, Vec::new());
        // Evaluated at its end only: the firing and its resolve, in event
        // time, at the last instant.
        assert_eq!(
            alerts(&log),
            [
                "emit Forbidden Burst firing",
                "emit Forbidden Burst resolved"
            ]
        );
        assert!(
            log.iter()
                .filter(|l| l.starts_with("emit"))
                .all(|l| l.ends_with("@60020")),
            "{log:?}"
        );
        assert_eq!(
            log.iter().filter(|l| *l == "flush").count(),
            1,
            "only at the end"
        );
    }

    #[test]
    fn a_busy_live_stream_is_flushed_every_interval() {
        // 20 events 1 ms apart and never a wait: flushed at 5, 10, 15 and
        // 20 ms, then once at the end.
        let steps = (0..20)
            .map(|n| Step::Doc(0, exec(n), None, Duration::from_millis(1)))
            .collect();
        let log = drive(true, steps, Vec::new());
        let flushes: Vec<usize> = log
            .iter()
            .enumerate()
            .filter(|(_, l)| *l == "flush")
            .map(|(i, _)| log[..i].iter().filter(|l| l.starts_with("emit")).count())
            .collect();
        assert_eq!(flushes, [5, 10, 15, 20, 20], "{log:?}");
    }

    #[test]
    fn a_batch_is_acknowledged_after_its_alerts_are_flushed() {
        let steps = vec![
            Step::Doc(0, exec(1), Some(7), Duration::ZERO),
            Step::Doc(0, "not an event".into(), Some(8), Duration::ZERO),
            Step::Doc(0, exec(2), Some(9), Duration::ZERO),
            Step::End,
        ];
        let log = drive(true, steps, Vec::new());
        assert_eq!(
            log,
            [
                "emit Exec Into Pod @0",
                "flush",
                "ack 7 1",
                "flush",
                "ack 8 0",
                "emit Exec Into Pod @0",
                "flush",
                "ack 9 1",
                "flush",
            ]
        );
    }

    #[test]
    fn streams_keep_their_own_windows_and_a_reset_replays_history() {
        // Ten denials in each of two streams: no key reaches twenty.
        let mut steps: Vec<Step> = (0..20)
            .map(|s| Step::Doc(u64::from(s % 2), denied("mallory", s), None, Duration::ZERO))
            .collect();
        steps.push(Step::End);
        assert!(alerts(&drive(false, steps, Vec::new())).is_empty());
        // Stream 1 reset: nineteen denials replayed (no alerts, not
        // counted), then one more fires.
        let history: Vec<String> = (0..19).map(|s| denied("mallory", s)).collect();
        let steps = vec![
            Step::Reset(1),
            Step::Doc(1, denied("mallory", 19), None, Duration::ZERO),
            Step::End,
        ];
        let log = drive(false, steps, history.clone());
        assert_eq!(log[0], "replay 1");
        assert_eq!(
            alerts(&log),
            [
                "emit Forbidden Burst firing",
                "emit Forbidden Burst resolved"
            ]
        );
        // Thirty replayed (the watermark passes the twentieth): the alert
        // that fired during the replay is re-sent (refresh), not emitted; a
        // closed stream's state is gone.
        let history = (0..30).map(|s| denied("mallory", s)).collect();
        let steps = vec![
            Step::Reset(1),
            Step::Closed(1),
            Step::Doc(1, denied("mallory", 30), None, Duration::ZERO),
            Step::End,
        ];
        let log = drive(false, steps, history);
        assert_eq!(log[..2], ["replay 1", "refresh Forbidden Burst"]);
        assert!(alerts(&log).is_empty(), "{log:?}");
    }

    /// Whether every acknowledgement comes after a flush of every alert
    /// emitted before it.
    fn acks_follow_flushes(log: &[String]) -> bool {
        let mut unflushed = false;
        for l in log {
            if l.starts_with("emit") {
                unflushed = true;
            } else if l == "flush" {
                unflushed = false;
            } else if l.starts_with("ack") && unflushed {
                return false;
            }
        }
        true
    }

    #[test]
    fn workers_give_the_alerts_and_acknowledgements_of_one_thread() {
        let history: Vec<String> = (0..19).map(|s| denied("eve", s)).collect();
        let reset = || {
            let mut steps = vec![Step::Reset(1)];
            steps.extend((19..25).map(|s| Step::Doc(1, denied("eve", s), None, Duration::ZERO)));
            steps.push(Step::Closed(0));
            steps.extend((0..30).map(|s| Step::Doc(0, denied("bob", s), None, Duration::ZERO)));
            steps.push(Step::End);
            steps
        };
        let quiet = || {
            let mut steps = burst("mallory");
            steps.extend((0..60).map(|_| Step::Idle(Duration::from_secs(1))));
            steps
        };
        let acks = |log: &[String]| -> Vec<String> {
            log.iter()
                .filter(|l| l.starts_with("ack"))
                .cloned()
                .collect()
        };
        for live in [false, true] {
            // Two streams, some documents not events, every batch
            // acknowledged, the source waiting now and then.
            let steps = || {
                let mut s = Vec::new();
                for n in 0..40u32 {
                    let doc = match n % 3 {
                        0 => exec(n),
                        1 => denied("mallory", n),
                        _ => "not an event".into(),
                    };
                    s.push(Step::Doc(
                        u64::from(n % 2),
                        doc,
                        Some(i64::from(n)),
                        Duration::ZERO,
                    ));
                    if n % 7 == 0 {
                        s.push(Step::Idle(Duration::from_millis(300)));
                    }
                }
                s.push(Step::End);
                s
            };
            let one = drive_on(1, live, steps(), Vec::new());
            let two = drive_on(2, live, steps(), Vec::new());
            assert_eq!(alerts(&one), alerts(&two), "live {live}");
            assert_eq!(acks(&one), acks(&two), "live {live}");
            assert_eq!(acks(&two).len(), 40);
            assert!(acks_follow_flushes(&two), "{two:?}");
            // An acknowledgement comes after its batch's alerts.
            let emits_before = |log: &[String], ack: &str| {
                let at = log.iter().position(|l| l.starts_with(ack)).unwrap();
                log[..at].iter().filter(|l| l.starts_with("emit")).count()
            };
            assert!(
                emits_before(&two, "ack 39 ")
                    >= alerts(&one).iter().filter(|a| a.contains("Exec")).count()
            );

            let one = drive_on(1, live, reset(), history.clone());
            let two = drive_on(2, live, reset(), history.clone());
            assert_eq!(alerts(&one), alerts(&two), "live {live}");
            assert!(
                alerts(&two).contains(&"emit Forbidden Burst firing"),
                "{two:?}"
            );
        }
        // On a quiet live stream, the wall clock moves the windows on at
        // the same times.
        let one = drive_on(1, true, quiet(), Vec::new());
        let two = drive_on(2, true, quiet(), Vec::new());
        let emitted = |log: &[String]| -> Vec<String> {
            log.iter()
                .filter(|l| l.starts_with("emit"))
                .cloned()
                .collect()
        };
        assert_eq!(emitted(&one), emitted(&two));
        assert_eq!(emitted(&two).len(), 2, "{two:?}");
    }

    #[test]
    fn a_closed_streams_batches_still_on_the_workers_are_dropped() {
        let steps = || {
            // A rebalance revokes streams 1 and 2, one `Closed` each.
            vec![
                Step::Doc(0, exec(1), Some(1), Duration::ZERO),
                Step::Doc(1, exec(2), Some(2), Duration::ZERO),
                Step::Doc(2, exec(5), Some(5), Duration::ZERO),
                Step::Doc(1, exec(3), Some(3), Duration::ZERO),
                Step::Closed(1),
                Step::Closed(2),
                Step::Doc(0, exec(4), Some(4), Duration::ZERO),
                Step::End,
            ]
        };
        let acks = |log: &[String]| -> Vec<String> {
            log.iter()
                .filter(|l| l.starts_with("ack"))
                .cloned()
                .collect()
        };
        // On one thread a batch is evaluated before the next is read.
        let one = drive_on(1, true, steps(), Vec::new());
        assert_eq!(
            acks(&one),
            ["ack 1 1", "ack 2 1", "ack 5 1", "ack 3 1", "ack 4 1"]
        );
        assert_eq!(alerts(&one).len(), 5);
        // With workers, streams 1 and 2's batches were still out when they
        // closed: neither alerted nor acknowledged (their next owner reads
        // them).
        let two = drive_on(2, true, steps(), Vec::new());
        assert_eq!(acks(&two), ["ack 1 1", "ack 4 1"], "{two:?}");
        assert_eq!(alerts(&two).len(), 2, "{two:?}");
        assert!(acks_follow_flushes(&two), "{two:?}");
    }
}
