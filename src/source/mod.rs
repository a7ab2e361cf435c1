//! Sources of audit data, behind one trait. A [`Source`] hands out batches
//! of documents, each from a stream (a Kafka partition; the one stream of
//! stdin or a file) and perhaps with an acknowledgement to return once its
//! alerts are out; [`driver::Driver`] pulls them through the engine.
//!
//! - [`stream::LineSource`]: stdin, files and followed files, as lines;
//! - [`kafka`]: a consumer group, one stream per partition.
//!
//! A new input is one file implementing [`Source`], plus its settings.

pub mod clock;
pub mod documents;
pub mod driver;
pub mod http;
pub mod kafka;
pub mod lines;
pub mod live;
pub mod position;
pub mod ranges;
pub mod resume;
pub mod stream;

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use lines::Line;

/// Which stream of a source a batch belongs to. Each stream has its own
/// windows and event-time clock (a Kafka partition's events are ordered
/// only within it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// Returned to the source once a batch's alerts are handed to the outputs
/// *and the outputs flushed*: what a Kafka source commits, what an HTTP
/// receiver answers 200 for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub stream: StreamId,
    /// The source's own position (a Kafka offset to commit, a request id).
    pub position: i64,
    /// Events the batch held (0: it held none and was skipped).
    pub events: u64,
}

/// How the documents of a batch are framed.
#[derive(Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// One line of a line-oriented input.
    Line(Line<'a>),
    /// Whole lines, each ended by `\n` but perhaps the input's last; lines
    /// over `max_line` bytes are skipped and counted.
    Lines { text: &'a [u8], max_line: usize },
    /// The lines of a file that start in a range of it, for the worker
    /// that evaluates them to read ([`ranges`]).
    FileRange(ranges::FileRange),
    /// A message: one event, an `EventList`, an array, or events one per
    /// line ([`documents::for_each`]); documents over the size limit are
    /// skipped and counted.
    Message(&'a [u8]),
    /// A record of the repartition topic ([`crate::engine::forward::Record`]):
    /// matches forwarded by the instances reading the input, for a stage
    /// stream.
    Forwarded(&'a [u8]),
}

/// One batch of documents.
#[derive(Debug)]
pub struct Batch<'a> {
    pub stream: StreamId,
    pub body: Body<'a>,
    /// Where the batch ends, when the source wants to hear once its alerts
    /// are out (the driver then returns an [`Ack`] with it).
    pub ack: Option<i64>,
}

/// What a source has next.
#[derive(Debug)]
pub enum Next<'a> {
    Batch(Batch<'a>),
    /// Nothing arrived for a while (a live source's poll interval).
    Idle,
    /// The stream's state must be rebuilt before its next batch (a Kafka
    /// partition assigned, or resumed at another position): the driver
    /// starts it afresh and asks [`Source::replay`] for what came before.
    Reset(StreamId),
    /// The stream is gone from this process (a Kafka partition revoked):
    /// its state is dropped.
    Closed(StreamId),
    /// The input ended (a file, a closed stdin): every remaining tick is
    /// evaluated.
    End,
    /// Asked to stop (SIGTERM): no more batches, but a stream has no end,
    /// so nothing is evaluated beyond what arrived.
    Stop,
}

/// What a source calls just before it would block: the driver finishes
/// evaluating the batches it holds (on worker threads, with `--threads`),
/// flushes the outputs and returns the acknowledgements that are now due,
/// which the source applies ([`Source::ack`]) before it waits.
pub type BeforeWait<'w> = dyn FnMut() -> io::Result<Vec<Ack>> + 'w;

/// An input. `next` must return at least every few hundred milliseconds
/// ([`Next::Idle`] when nothing came) so the driver can follow the wall
/// clock on a quiet stream; it calls `before_wait` just before it would
/// block.
pub trait Source {
    fn next(&mut self, before_wait: &mut BeforeWait) -> io::Result<Next<'_>>;

    /// A batch's alerts are out and the outputs flushed. Called in batch
    /// order, at the latest before the source waits (from within `next`,
    /// with what `before_wait` returns). With `--threads`, batches handed
    /// out since are still being evaluated; those of a stream the source
    /// closes ([`Next::Closed`]) are dropped unacknowledged.
    fn ack(&mut self, _ack: Ack) -> io::Result<()> {
        Ok(())
    }

    /// Feeds `doc` with the documents of `stream` from before where it
    /// resumes, going back at least `horizon_ns` of event time, so that its
    /// windows can be rebuilt without alerts. Sources that cannot look back
    /// feed nothing.
    fn replay(
        &mut self,
        _stream: StreamId,
        _horizon_ns: i64,
        _doc: &mut dyn FnMut(&[u8]),
    ) -> io::Result<()> {
        Ok(())
    }

    /// Whether a stop (SIGTERM, SIGINT) cut the last replay short: the
    /// stream's windows are partial, so the driver neither uses them nor
    /// re-sends their alerts, and the source stops at its next call.
    fn replay_cut(&self) -> bool {
        false
    }

    /// Whether the source is live (stdin, `--follow`, Kafka): when it goes
    /// quiet, event time follows the wall clock. A file is not.
    fn live(&self) -> bool;

    /// Bytes read so far.
    fn bytes(&self) -> u64;

    /// For a file: where the input stands after the last batch handed
    /// out (what a restart resumes from). Others have none.
    fn position(&self) -> Option<position::InputPosition> {
        None
    }

    /// For the summary and logs.
    fn describe(&self) -> String;

    /// Whether `stream` is a stage stream (a partition of the repartition
    /// topic), whose windows hold the forwarded rules.
    fn stage(&self, _stream: StreamId) -> bool {
        false
    }

    /// What the engine found to forward in the last batch of `stream`
    /// (an input partition). Called before that batch is acknowledged: a
    /// source that forwards makes the records durable before it lets the
    /// acknowledgement count.
    fn forward(
        &mut self,
        _stream: StreamId,
        _outbox: crate::engine::forward::Outbox,
        _rules: &crate::rules::RuleSet,
    ) -> io::Result<()> {
        Ok(())
    }

    /// What a stage stream's last record or idle check did (its watermark,
    /// duplicates skipped): for the metrics, and kept with its committed
    /// position.
    fn progress(&mut self, _stream: StreamId, _progress: crate::engine::forward::Progress) {}

    /// The watermark (ns) a stage stream had reached when its position
    /// that [`Source::replay`] resumed from was committed: its alerts up to
    /// there are out.
    fn resumed_watermark(&mut self, _stream: StreamId) -> Option<i64> {
        None
    }

    /// After the last batch: make the last acknowledgements durable
    /// (Kafka's final commit) and let go of the input.
    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The error for an input that names a directory (which opens, but whose
/// reads fail with a bare "Is a directory").
fn a_directory() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "it is a directory; give a file of audit events (JSON lines), - for stdin, kafka or http",
    )
}

/// Whether `stop` (SIGTERM, SIGINT) was set: a source that has one stops
/// between batches.
pub(crate) fn stopped(stop: Option<&std::sync::atomic::AtomicBool>) -> bool {
    stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
}

/// Where events are read from.
#[derive(Debug, Clone)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    pub fn parse(s: &str) -> Input {
        if s == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(s))
        }
    }

    /// Opens the input; returns the reader and, for files, the size.
    pub fn open(&self) -> io::Result<(Box<dyn Read + Send>, Option<u64>)> {
        match self {
            Input::Stdin => Ok((Box::new(io::stdin()), None)),
            Input::File(p) => {
                let f = File::open(p)?;
                let m = f.metadata().ok();
                if m.as_ref().is_some_and(|m| m.is_dir()) {
                    return Err(a_directory());
                }
                let len = m.filter(|m| m.is_file()).map(|m| m.len());
                Ok((Box::new(f), len))
            }
        }
    }

    /// Opens the input for a reading thread: stdin, or a file followed
    /// across rotation when `follow` is set.
    pub fn open_live(&self, follow: bool) -> io::Result<Box<dyn Read + Send>> {
        if let Input::File(p) = self {
            if std::fs::metadata(p).is_ok_and(|m| m.is_dir()) {
                return Err(a_directory());
            }
        }
        match self {
            Input::Stdin => Ok(Box::new(io::stdin())),
            Input::File(p) if follow => Ok(Box::new(live::Follower::open(
                p,
                std::time::Duration::from_millis(200),
            )?)),
            Input::File(p) => Ok(Box::new(File::open(p)?)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Input::Stdin => "stdin".into(),
            Input::File(p) => p.display().to_string(),
        }
    }
}
