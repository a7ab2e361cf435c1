//! `saker run --state-dir`: the state directory opened, the saved state
//! restored into the engine, a file input resumed where the state stands
//! (re-reading without alerts up to where the alerts were out), and the
//! [`Keeper`] the driver updates as the run goes.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use saker::engine::Engine;
use saker::sink::AlertSink;
use saker::source::lines::{Line, LineReader};
use saker::source::live::ChannelReader;
use saker::source::stream::{LineSource, Opened, LIVE_POLL};
use saker::source::{resume, Input};
use saker::state::keeper::Keeper;
use saker::state::metrics::StateMetrics;
use saker::state::{self, InputId, StateDir};

use crate::cli::run::{InputSettings, StateSettings};

/// How often a followed file is looked at when it has nothing new.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// What the run needs from the state directory.
pub struct Prepared {
    pub keeper: Keeper,
    /// For stdin or a file: the line source, resumed.
    pub lines: Option<Opened>,
}

/// Which input the state belongs to.
fn input_id(input: &InputSettings) -> InputId {
    match input {
        InputSettings::Lines {
            input: Input::File(p),
            ..
        } => InputId::File {
            path: std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string(),
        },
        InputSettings::Lines { .. } => InputId::Stdin,
        InputSettings::Http(_) | InputSettings::Kafka(_) => InputId::Http,
    }
}

/// Opens the state directory and restores from it; for stdin and files,
/// opens the input too. An error is a configuration error (exit 2).
pub fn prepare(
    settings: &StateSettings,
    input: &InputSettings,
    max_line: usize,
    engine: &mut Engine,
    sink: &mut dyn AlertSink,
    stop: Arc<AtomicBool>,
    metrics: Arc<StateMetrics>,
) -> Result<Prepared, String> {
    let dir = StateDir::open(&settings.dir).map_err(|e| e.to_string())?;
    let id = input_id(input);
    let started = std::time::Instant::now();
    let restored = state::restore(&dir, &id, engine.rules(), engine.window_options(), &metrics);
    let generation = restored.generation;
    match (restored.windows, &restored.report) {
        (Some(mut w), Some(report)) => {
            engine.swap_windows(&mut w);
            tracing::info!(
                dir = %dir.path().display(),
                generation,
                seconds = format!("{:.3}", started.elapsed().as_secs_f64()),
                window_keys = engine.window_keys(),
                restored = ?report.restored,
                fresh = ?report.fresh,
                dropped = ?report.dropped,
                "state restored"
            );
        }
        _ => tracing::info!(dir = %dir.path().display(), "no saved state: starting fresh"),
    }
    let (lines, start) = match input {
        InputSettings::Lines {
            input: Input::File(path),
            follow,
        } => {
            let (source, start) = resume_file(
                path,
                *follow,
                max_line,
                restored.start.as_ref(),
                restored.flushed.as_ref(),
                engine,
                stop,
            )?;
            (Some(source), Some(start))
        }
        InputSettings::Lines { input, .. } => {
            let reader: Box<dyn Read + Send> = Box::new(ChannelReader::spawn(
                input.open_live(false).map_err(|e| e.to_string())?,
                LIVE_POLL,
            ));
            let source = LineSource::new(reader, max_line, true, input.describe()).with_stop(stop);
            (Some(source), None)
        }
        _ => (None, None),
    };
    let refreshed = engine.refresh_firing(sink).map_err(|e| e.to_string())?;
    if refreshed > 0 {
        tracing::info!(
            alerts = refreshed,
            "firing alerts of the restored state re-sent"
        );
    }
    let keeper = Keeper::new(dir, id, generation, start, settings.interval, metrics);
    Ok(Prepared { keeper, lines })
}

/// Opens `path` where the state stands, re-reads without alerts up to
/// `flushed`, and returns the line source from there, with the position
/// the keeper starts from.
fn resume_file(
    path: &Path,
    follow: bool,
    max_line: usize,
    start: Option<&saker::source::position::FilePosition>,
    flushed: Option<&saker::source::position::FilePosition>,
    engine: &mut Engine,
    stop: Arc<AtomicBool>,
) -> Result<(Opened, saker::source::position::FilePosition), String> {
    let mut r =
        resume::open(path, follow, FOLLOW_POLL, start, flushed).map_err(|e| e.to_string())?;
    for note in &r.notes {
        tracing::warn!(input = %path.display(), "{note}");
    }
    let begin = r
        .tracker
        .position(0)
        .ok_or("no position at the start")?
        .resolve()
        .map_err(|e| e.to_string())?;
    if r.warm_up {
        let (mut events, mut lines) = (0u64, 0u64);
        let mut reader = LineReader::new(&mut r.follower, max_line);
        while let Some(line) = reader.next_line(&mut || {}).map_err(|e| e.to_string())? {
            lines += 1;
            if let Line::Text(text) = line {
                events += engine.warm_up(text).0;
            }
        }
        tracing::info!(
            input = %path.display(),
            files = ?r.files,
            lines,
            events,
            "re-read without alerts up to the flushed position"
        );
        r.follower.stop_at(None);
    }
    let base = r.follower.emitted();
    tracing::info!(input = %path.display(), files = ?r.files, offset = begin.offset, "resuming");
    let reader: Box<dyn Read + Send> = if follow {
        Box::new(ChannelReader::spawn(Box::new(r.follower), LIVE_POLL))
    } else {
        Box::new(r.follower)
    };
    let source = LineSource::new(reader, max_line, follow, path.display().to_string())
        .with_positions(r.tracker, base)
        .with_stop(stop);
    Ok((source, start.cloned().unwrap_or(begin)))
}
