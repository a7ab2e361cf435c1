//! The state directory (`--state-dir`): where a run keeps what a restart
//! needs so that it loses nothing. Two files, each written atomically
//! (a temporary file in the directory, fsync, rename, fsync of the
//! directory):
//!
//! - `state.json` ([`StateFile`]): a snapshot of the stream's event-time
//!   state ([`Snapshot`]), and for a file input the position it stands at
//!   (P0). Written every `--state-interval` and when the run stops.
//! - `position.json` ([`PositionFile`], file inputs only): the position
//!   up to which alerts have been flushed to the outputs (P1), written at
//!   most once a second as the outputs are flushed.
//!
//! A restart restores the snapshot, re-reads P0..P1 without alerts (the
//! warm-up), and goes on from P1 ([`restore`]). A file that cannot be
//! read, parsed, or that belongs to another input, version or resolution
//! is renamed aside (`NAME.corrupt-UNIXTIME`), reported and counted, and
//! never trusted. One directory serves one saker instance.

pub mod keeper;
pub mod metrics;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::engine::windows::snapshot::{RestoreReport, Snapshot};
use crate::engine::windows::{WindowOptions, Windows};
use crate::rules::RuleSet;
use crate::source::position::FilePosition;
use metrics::StateMetrics;

/// The snapshot's file name.
pub const STATE_FILE: &str = "state.json";
/// The flushed position's file name.
pub const POSITION_FILE: &str = "position.json";
/// What both files say they are.
pub const FORMAT: &str = "saker-state-dir";
/// Their layout's version.
pub const VERSION: u32 = 1;

/// The input a state directory's files belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum InputId {
    Stdin,
    Http,
    File { path: String },
}

impl std::fmt::Display for InputId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputId::Stdin => f.write_str("stdin"),
            InputId::Http => f.write_str("the HTTP receiver"),
            InputId::File { path } => write!(f, "file {path}"),
        }
    }
}

/// `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    pub format: String,
    pub version: u32,
    pub input: InputId,
    /// Counts the snapshots written into this directory.
    pub generation: u64,
    pub written_unix_ms: u64,
    /// For a file: where the input stands in the state (P0).
    pub position: Option<FilePosition>,
    pub state: Snapshot,
}

/// `position.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionFile {
    pub format: String,
    pub version: u32,
    pub input: InputId,
    /// The snapshot this position goes on from (0: none, the run started
    /// from `start` with empty state).
    pub generation: u64,
    /// Where that snapshot's state stands (P0).
    pub start: FilePosition,
    /// Alerts of everything read before this are out (P1).
    pub flushed: FilePosition,
}

/// Why the state directory cannot be used: a configuration error.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("--state-dir {path}: cannot create it: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("--state-dir {path}: not writable: {source}")]
    NotWritable { path: PathBuf, source: io::Error },
}

/// An opened state directory.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
}

/// How many bytes a write took, for logs and metrics.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub bytes: u64,
    pub seconds: f64,
}

impl StateDir {
    /// Creates `dir` if missing and checks that a file can be written in it.
    pub fn open(dir: &Path) -> Result<StateDir, StateDirError> {
        fs::create_dir_all(dir).map_err(|source| StateDirError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
        let d = StateDir {
            dir: dir.to_path_buf(),
        };
        let probe = format!(".probe-{}", std::process::id());
        d.write_atomic(&probe, |w| w.write_all(b"ok\n"))
            .and_then(|_| fs::remove_file(dir.join(&probe)))
            .map_err(|source| StateDirError::NotWritable {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(d)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `name` atomically: into a temporary file in the directory,
    /// fsync, rename over `name`, fsync of the directory.
    pub fn write_atomic(
        &self,
        name: &str,
        write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    ) -> io::Result<Written> {
        let started = std::time::Instant::now();
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        write(&mut w)?;
        let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        drop(file);
        fs::rename(&tmp, self.dir.join(name))?;
        File::open(&self.dir)?.sync_all()?;
        Ok(Written {
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Renames `name` aside as `name.corrupt-UNIXTIME`, logs why, counts it.
    pub fn set_aside(&self, name: &str, reason: &str, metrics: &StateMetrics) {
        let from = self.dir.join(name);
        let to = self
            .dir
            .join(format!("{name}.corrupt-{}", unix_ms() / 1000));
        metrics.restore_failed();
        match fs::rename(&from, &to) {
            Ok(()) => tracing::warn!(
                file = %from.display(),
                moved_to = %to.display(),
                "state file not trusted ({reason}); set aside, starting without it"
            ),
            Err(e) => tracing::warn!(
                file = %from.display(),
                "state file not trusted ({reason}); could not set it aside: {e}"
            ),
        }
    }

    /// Reads and parses `name`; `None` if it does not exist. A file that
    /// cannot be read, parsed, or is of another format, version or input
    /// is set aside.
    fn read<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        input: &InputId,
        metrics: &StateMetrics,
        header: impl Fn(&T) -> (&str, u32, &InputId),
    ) -> Option<T> {
        let path = self.dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.set_aside(name, &format!("cannot read it: {e}"), metrics);
                return None;
            }
        };
        let value: T = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                let why = match serde_json::from_slice::<Header>(&bytes) {
                    Ok(h) if h.format != FORMAT => {
                        format!("not a saker state file (format {:?})", h.format)
                    }
                    Ok(h) if h.version != VERSION => {
                        format!("version {}, this build reads version {VERSION}", h.version)
                    }
                    _ if e.is_eof() => format!("truncated: {e}"),
                    _ => format!("malformed: {e}"),
                };
                self.set_aside(name, &why, metrics);
                return None;
            }
        };
        let (format, version, of) = header(&value);
        let why = if format != FORMAT {
            format!("not a saker state file (format {format:?})")
        } else if version != VERSION {
            format!("version {version}, this build reads version {VERSION}")
        } else if of != input {
            format!("it belongs to {of}, not {input}")
        } else {
            return Some(value);
        };
        self.set_aside(name, &why, metrics);
        None
    }
}

/// The first keys of either file, to say why one did not parse.
#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a restart starts from.
pub struct Restored {
    /// The restored windows, or `None` to start fresh.
    pub windows: Option<Windows>,
    pub report: Option<RestoreReport>,
    /// The generation of the snapshot restored (0: none).
    pub generation: u64,
    /// For a file: where the state stands (P0); `None` reads the file
    /// from its start.
    pub start: Option<FilePosition>,
    /// For a file: up to where the alerts were out (P1): re-read from
    /// `start` to here without alerts.
    pub flushed: Option<FilePosition>,
}

/// Reads the state directory for `input`: the snapshot restored into a
/// `Windows` of `rules` (rules whose fingerprint changed start fresh), and
/// for a file, where to resume. Never fails: whatever cannot be trusted is
/// set aside and the run starts without it.
pub fn restore(
    dir: &StateDir,
    input: &InputId,
    rules: &RuleSet,
    options: WindowOptions,
    metrics: &StateMetrics,
) -> Restored {
    let file_input = matches!(input, InputId::File { .. });
    let state: Option<StateFile> = dir.read(STATE_FILE, input, metrics, |s: &StateFile| {
        (&s.format, s.version, &s.input)
    });
    let state = state.filter(|s| {
        if file_input && s.position.is_none() {
            dir.set_aside(STATE_FILE, "it holds no input position", metrics);
            return false;
        }
        true
    });
    let positions: Option<PositionFile> = if file_input {
        dir.read(POSITION_FILE, input, metrics, |p: &PositionFile| {
            (&p.format, p.version, &p.input)
        })
    } else {
        None
    };
    let mut out = Restored {
        windows: None,
        report: None,
        generation: 0,
        start: None,
        flushed: None,
    };
    let mut lost_generation = None;
    if let Some(s) = state {
        match Windows::restore(rules, options, s.state) {
            Ok((windows, report)) => {
                out.windows = Some(windows);
                out.report = Some(report);
                out.generation = s.generation;
                out.start = s.position;
            }
            Err(e) => {
                dir.set_aside(STATE_FILE, &e.to_string(), metrics);
                lost_generation = Some(s.generation);
            }
        }
    }
    if let Some(p) = positions {
        match (&out.windows, lost_generation) {
            // The snapshot this position goes on from.
            (Some(_), _) if p.generation == out.generation => out.flushed = Some(p.flushed),
            // A newer snapshot than the position (a stop between the two
            // writes): its alerts were flushed before it was written.
            (Some(_), _) => out.flushed = out.start.clone(),
            // No snapshot yet: empty state at the run's start.
            (None, None) if p.generation == 0 => {
                out.start = Some(p.start);
                out.flushed = Some(p.flushed);
            }
            // The state is lost: go on after what was flushed, without it.
            (None, _) => {
                tracing::warn!(
                    "no usable snapshot for position generation {}: resuming after the flushed position with empty state",
                    p.generation
                );
                out.start = Some(p.flushed.clone());
                out.flushed = Some(p.flushed);
            }
        }
    }
    if let Some(r) = &out.report {
        metrics.restored(r.restored.len(), r.fresh.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::keeper::Keeper;
    use super::*;
    use crate::source::driver::Checkpoint;
    use crate::source::position::{FileRef, Tracker};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn rules() -> RuleSet {
        crate::rules::load(&crate::rules::default_sources())
            .rules
            .expect("default rules")
    }

    #[test]
    fn a_restart_resumes_from_the_snapshot_and_re_reads_to_the_flushed_position() {
        let dir = std::env::temp_dir().join(format!("saker-statedir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let set = rules();
        let options = WindowOptions::default();
        let metrics = Arc::new(StateMetrics::default());
        let log = dir.join("audit.log");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&log, "x\n".repeat(100)).unwrap();
        let input = InputId::File {
            path: log.display().to_string(),
        };
        let tracker = Tracker::default();
        tracker.begin(0, FileRef::new(&File::open(&log).unwrap()).unwrap(), 0);
        let at = |n: u64| tracker.position(n).unwrap();
        let state = StateDir::open(&dir.join("state")).unwrap();
        let mut keeper = Keeper::new(
            state,
            input.clone(),
            0,
            Some(at(0).resolve().unwrap()),
            Duration::from_secs(30),
            metrics.clone(),
        );
        let t0 = Instant::now();
        // Flushed positions before any snapshot: a restart re-reads from
        // the start of the run up to the last one saved (once a second).
        keeper.flushed(Some(&at(10)), t0);
        keeper.flushed(Some(&at(20)), t0 + Duration::from_millis(500));
        let state = StateDir::open(&dir.join("state")).unwrap();
        let r = restore(&state, &input, &set, options, &metrics);
        assert!(r.windows.is_none());
        assert_eq!(
            (r.start.unwrap().offset, r.flushed.unwrap().offset),
            (0, 10)
        );
        // A snapshot at 30, then a flushed position at 50.
        keeper.save(
            Windows::new(&set, options).snapshot(&set),
            Some(&at(30)),
            t0 + Duration::from_secs(2),
        );
        keeper.flushed(Some(&at(50)), t0 + Duration::from_secs(4));
        let r = restore(&state, &input, &set, options, &metrics);
        assert_eq!(r.generation, 1);
        assert!(r.windows.is_some());
        assert_eq!(
            (r.start.unwrap().offset, r.flushed.unwrap().offset),
            (30, 50)
        );
        // Another input's directory: set aside, counted.
        let other = InputId::Stdin;
        let r = restore(&state, &other, &set, options, &metrics);
        assert!(r.windows.is_none());
        assert_eq!(metrics.restore_failures(), 1);
        assert!(!state.path().join(STATE_FILE).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_directory_is_a_configuration_error() {
        let file = std::env::temp_dir().join(format!("saker-statefile-{}", std::process::id()));
        fs::write(&file, b"not a directory").unwrap();
        let err = StateDir::open(&file.join("sub")).unwrap_err();
        assert!(err.to_string().contains("cannot create it"), "{err}");
        fs::remove_file(&file).unwrap();
    }
}
