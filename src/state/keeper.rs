//! [`Keeper`]: what the driver calls as a run goes, to keep the state
//! directory up to date ([`Checkpoint`]): the flushed position at most
//! once a second ([`POSITION_EVERY`]), a snapshot every interval and when
//! the run stops. A write that fails is logged and counted; the run goes on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::metrics::StateMetrics;
use super::{
    unix_ms, InputId, PositionFile, StateDir, StateFile, FORMAT, POSITION_FILE, STATE_FILE, VERSION,
};
use crate::engine::windows::snapshot::Snapshot;
use crate::source::driver::Checkpoint;
use crate::source::position::{FilePosition, InputPosition};

/// The flushed position is saved at most this often: a restart repeats
/// at most the alerts of about this long (plus one flush interval).
pub const POSITION_EVERY: Duration = Duration::from_secs(1);

/// Keeps a state directory for one input.
pub struct Keeper {
    dir: StateDir,
    input: InputId,
    /// The last snapshot written (0: none yet).
    generation: u64,
    /// Where that snapshot's state stands; at first, where the run started.
    start: Option<FilePosition>,
    interval: Duration,
    last_snapshot: Option<Instant>,
    last_position: Option<Instant>,
    /// The position last written, as (device, inode, offset).
    written: Option<(u64, u64, u64)>,
    metrics: Arc<StateMetrics>,
    /// Whether the last write failed (logged once until one succeeds).
    failing: bool,
}

impl Keeper {
    /// `generation` and `start` are what the run resumed from (0 and the
    /// input's first position on a fresh start).
    pub fn new(
        dir: StateDir,
        input: InputId,
        generation: u64,
        start: Option<FilePosition>,
        interval: Duration,
        metrics: Arc<StateMetrics>,
    ) -> Self {
        Keeper {
            dir,
            input,
            generation,
            start,
            interval,
            last_snapshot: None,
            last_position: None,
            written: None,
            metrics,
            failing: false,
        }
    }

    fn failed(&mut self, what: &str, e: std::io::Error) {
        if !self.failing {
            tracing::warn!(dir = %self.dir.path().display(), "cannot write the {what}: {e}");
        }
        self.failing = true;
    }

    fn write_position(&mut self, flushed: FilePosition) {
        let start = self.start.clone().unwrap_or_else(|| flushed.clone());
        let file = PositionFile {
            format: FORMAT.into(),
            version: VERSION,
            input: self.input.clone(),
            generation: self.generation,
            start,
            flushed: flushed.clone(),
        };
        match self.dir.write_atomic(POSITION_FILE, |w| {
            serde_json::to_writer(w, &file).map_err(Into::into)
        }) {
            Ok(_) => {
                self.written = Some((flushed.dev, flushed.ino, flushed.offset));
                self.metrics.position_saved();
                self.failing = false;
            }
            Err(e) => self.failed("flushed position", e),
        }
    }
}

impl Checkpoint for Keeper {
    fn flushed(&mut self, position: Option<&InputPosition>, now: Instant) {
        let Some(p) = position else { return };
        if self.written == Some((p.file.dev, p.file.ino, p.offset)) {
            return;
        }
        if self
            .last_position
            .is_some_and(|t| now.duration_since(t) < POSITION_EVERY)
        {
            return;
        }
        self.last_position = Some(now);
        match p.resolve() {
            Ok(flushed) => self.write_position(flushed),
            Err(e) => self.failed("flushed position", e),
        }
    }

    fn due(&mut self, now: Instant) -> bool {
        let last = *self.last_snapshot.get_or_insert(now);
        now.duration_since(last) >= self.interval
    }

    /// `now` is when the snapshot was taken, before it was copied out.
    fn save(&mut self, snapshot: Snapshot, position: Option<&InputPosition>, now: Instant) {
        self.last_snapshot = Some(now);
        let position = match position.map(InputPosition::resolve).transpose() {
            Ok(p) => p,
            Err(e) => return self.failed("snapshot's input position", e),
        };
        let file = StateFile {
            format: FORMAT.into(),
            version: VERSION,
            input: self.input.clone(),
            generation: self.generation + 1,
            written_unix_ms: unix_ms(),
            position: position.clone(),
            state: snapshot,
        };
        let keys: usize = file
            .state
            .rules
            .iter()
            .map(|r| r.window.as_ref().map_or(0, |w| w.held.len()))
            .sum();
        let written = self.dir.write_atomic(STATE_FILE, |w| {
            serde_json::to_writer(w, &file).map_err(Into::into)
        });
        match written {
            Ok(w) => {
                self.generation += 1;
                // From when the driver took the snapshot: copying the state
                // out, serialising, writing and syncing.
                let seconds = now.elapsed().as_secs_f64().max(w.seconds);
                self.metrics.snapshot_written(w.bytes, seconds);
                self.failing = false;
                tracing::info!(
                    file = %self.dir.path().join(STATE_FILE).display(),
                    bytes = w.bytes,
                    seconds = format!("{seconds:.3}"),
                    window_keys = keys,
                    generation = self.generation,
                    "state snapshot written"
                );
                if let Some(p) = position {
                    self.start = Some(p.clone());
                    self.last_position = Some(now);
                    self.write_position(p);
                }
            }
            Err(e) => {
                self.metrics.snapshot_failed();
                self.failed("state snapshot", e);
            }
        }
    }
}
