//! Where a file input resumes after a restart: the saved position's file
//! found again by its identity (at the path, or among the rotated files
//! beside it), the rotated files written after it, then the file at the
//! path. Also where the warm-up (re-reading without alerts) stops: the
//! flushed position.
//!
//! Rotated files are looked for in the path's directory, among names that
//! start with the path's name up to its first dot (`audit.log` →
//! `audit-2024-…log`, `audit.log.1`), compressed ones (`.gz`, …) left out.
//! Those written after the saved file are read in modification-time order.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::live::Follower;
use super::position::{identity, FilePosition, Tracker};

/// An opened resume.
pub struct Resume {
    /// Reads from the resume point on; stopped at the flushed position
    /// while [`Resume::warm_up`] is set.
    pub follower: Follower,
    pub tracker: Arc<Tracker>,
    /// Whether the follower first yields the bytes to re-read without
    /// alerts (up to the flushed position), then ends until
    /// `stop_at(None)`.
    pub warm_up: bool,
    /// The files read, in order, for the log.
    pub files: Vec<PathBuf>,
    /// What could not be found, for the log.
    pub notes: Vec<String>,
}

struct Candidate {
    path: PathBuf,
    file: File,
    id: (u64, u64),
    modified: SystemTime,
}

fn candidate(path: &Path) -> Option<Candidate> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(Candidate {
        path: path.to_path_buf(),
        id: identity(&meta),
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        file,
    })
}

/// The rotated files beside `path` (not `path` itself).
fn siblings(path: &Path, current: (u64, u64)) -> Vec<Candidate> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let stem = name.split('.').next().unwrap_or(name);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n != name
                && n.starts_with(stem)
                && ![".gz", ".zst", ".bz2", ".xz", ".zip"]
                    .iter()
                    .any(|z| n.ends_with(z))
        })
        .filter_map(|e| candidate(&e.path()))
        .filter(|c| c.id != current)
        .collect()
}

/// Opens `path` to resume at `start` (its start when `None`), re-reading
/// without alerts up to `flushed`. `follow`: wait for more at the end.
pub fn open(
    path: &Path,
    follow: bool,
    poll: Duration,
    start: Option<&FilePosition>,
    flushed: Option<&FilePosition>,
) -> std::io::Result<Resume> {
    let current = candidate(path).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("cannot open input {}", path.display()),
        )
    })?;
    let mut notes = Vec::new();
    let (chain, offset) = match start {
        None => (vec![current], 0),
        Some(p) if p.is_in(&current.file) => (vec![current], p.offset),
        Some(p) => {
            let mut others = siblings(path, current.id);
            match others.iter().position(|c| p.is_in(&c.file)) {
                Some(i) => {
                    let saved = others.swap_remove(i);
                    let mut newer: Vec<Candidate> = others
                        .into_iter()
                        .filter(|c| c.modified > saved.modified)
                        .collect();
                    newer.sort_by_key(|c| c.modified);
                    let mut chain = vec![saved];
                    chain.extend(newer);
                    chain.push(current);
                    (chain, p.offset)
                }
                None => {
                    notes.push(format!(
                        "the file the saved state was read from (device {}, inode {}, offset {}) is gone from {} and the files rotated beside it: reading {} from its start",
                        p.dev,
                        p.ino,
                        p.offset,
                        path.display(),
                        path.display()
                    ));
                    (vec![current], 0)
                }
            }
        }
    };
    let stop = flushed.and_then(|f| {
        let k = chain.iter().position(|c| f.is_in(&c.file))?;
        (k > 0 || f.offset >= offset).then_some((k, f.offset))
    });
    if flushed.is_some() && stop.is_none() {
        notes.push(
            "the flushed position is not in the files found: alerts since the saved state may repeat"
                .into(),
        );
    }
    let files = chain.iter().map(|c| c.path.clone()).collect();
    let mut files_iter = chain.into_iter().map(|c| c.file);
    let first = files_iter
        .next()
        .ok_or_else(|| std::io::Error::other("no file to read"))?;
    let tracker = Arc::new(Tracker::default());
    let mut follower = Follower::chain(path, poll, first, offset, files_iter.collect())?
        .tracked(tracker.clone())?;
    if !follow {
        follower = follower.no_wait();
    }
    let warm_up = stop.is_some_and(|(k, off)| k > 0 || off > offset);
    follower.stop_at(stop.filter(|_| warm_up));
    Ok(Resume {
        follower,
        tracker,
        warm_up,
        files,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_all(f: &mut Follower) -> String {
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn resumes_in_a_rotated_file_then_goes_on_with_the_new_ones() {
        let dir = std::env::temp_dir().join(format!("saker-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        std::fs::write(&path, b"a1\na2\na3\n").unwrap();
        let f = File::open(&path).unwrap();
        let tracker = Tracker::default();
        tracker.begin(0, super::super::position::FileRef::new(&f).unwrap(), 0);
        let start = tracker.position(3).unwrap().resolve().unwrap();
        let flushed = tracker.position(6).unwrap().resolve().unwrap();
        // Rotated twice while stopped.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::rename(&path, dir.join("audit-1.log")).unwrap();
        std::fs::write(&path, b"b1\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::rename(&path, dir.join("audit-2.log")).unwrap();
        std::fs::write(&path, b"c1\n").unwrap();
        std::fs::write(dir.join("audit-0.log.gz"), b"zip").unwrap();
        let mut r = open(
            &path,
            false,
            Duration::from_millis(5),
            Some(&start),
            Some(&flushed),
        )
        .unwrap();
        assert!(r.warm_up && r.notes.is_empty(), "{:?}", r.notes);
        assert_eq!(read_all(&mut r.follower), "a2\n", "the warm-up");
        r.follower.stop_at(None);
        let base = r.follower.emitted();
        assert_eq!(read_all(&mut r.follower), "a3\nb1\nc1\n");
        let end = r.tracker.position(base + 9).unwrap().resolve().unwrap();
        assert!(end.is_in(&File::open(&path).unwrap()));
        assert_eq!(end.offset, 3);
        // The saved file deleted: the current file from its start.
        std::fs::remove_file(dir.join("audit-1.log")).unwrap();
        let mut r = open(
            &path,
            false,
            Duration::from_millis(5),
            Some(&start),
            Some(&flushed),
        )
        .unwrap();
        assert!(!r.warm_up);
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        assert_eq!(read_all(&mut r.follower), "c1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
