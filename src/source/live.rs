//! Live inputs: standard input and followed files are read on a thread that
//! hands chunks to the engine through a bounded channel, so the engine can
//! wake up when nothing arrives (to move the watermark with the wall clock)
//! and input is never buffered without bound.
//!
//! `Follower` reads a file like `tail -F`: at its end it waits for more, and
//! when the path is renamed away and created anew (what the API server's
//! `--audit-log-maxsize` rotation does) it finishes the old file, then goes
//! on with the new one from its start, losing and repeating nothing.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::position::{FileRef, Tracker};

/// Chunks in flight between the reading thread and the engine.
const CHANNEL_CHUNKS: usize = 16;
const CHUNK: usize = 64 * 1024;

/// A `Read` over chunks produced by a thread. When nothing is there, `read`
/// first fails with `ErrorKind::WouldBlock` (the caller's moment to flush
/// what it holds, see [`super::lines::LineReader`]); the next `read` waits
/// at most `timeout` and then fails with `ErrorKind::TimedOut`, which the
/// caller treats as "nothing arrived yet".
pub struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    timeout: Duration,
    done: bool,
    /// `WouldBlock` was returned: the next read waits.
    warned: bool,
}

impl ChannelReader {
    /// Reads `source` on a new thread.
    pub fn spawn(mut source: Box<dyn Read + Send>, timeout: Duration) -> Self {
        let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
        thread::spawn(move || loop {
            let mut buf = vec![0; CHUNK];
            match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send(Ok(buf)).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Not to be taken for this reader's own "nothing yet".
                    let e = match e.kind() {
                        io::ErrorKind::WouldBlock => {
                            io::Error::other(format!("{e} (the input is in non-blocking mode)"))
                        }
                        _ => e,
                    };
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        });
        ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
            timeout,
            done: false,
            warned: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            let next = match self.rx.try_recv() {
                Err(TryRecvError::Empty) if !self.warned => {
                    self.warned = true;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Err(TryRecvError::Empty) => self.rx.recv_timeout(self.timeout),
                Ok(chunk) => Ok(chunk),
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            };
            self.warned = false;
            match next {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::TimedOut.into()),
                Err(RecvTimeoutError::Disconnected) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Follows a file by name across rename-and-create rotation and truncation.
pub struct Follower {
    path: PathBuf,
    file: File,
    /// Bytes read from the current file (its offset).
    offset: u64,
    /// The last byte handed out, to close a partial line at a rotation.
    last: Option<u8>,
    poll: Duration,
    /// Set when the current file was replaced: finish it first.
    pending_switch: bool,
    /// Files to read to their end after the current one, in order (the
    /// rotated files found at a restart, then the path's file).
    queue: VecDeque<File>,
    /// Whether to wait at the end for more; otherwise the input ends there.
    follow: bool,
    /// Bytes handed out in all (closing newlines included).
    emitted: u64,
    /// Told where each file begins in the bytes handed out.
    tracker: Option<Arc<Tracker>>,
    /// Files finished since the start.
    switched: usize,
    /// Read no further than this offset of the file after this many
    /// switches: the end of a warm-up.
    stop: Option<(usize, u64)>,
}

impl Follower {
    /// Opens `path` and starts at its beginning.
    pub fn open(path: &Path, poll: Duration) -> io::Result<Self> {
        Follower::chain(path, poll, open_named(path)?, 0, Vec::new())
    }

    /// Reads `file` from `offset`, then each of `rest` in turn, then
    /// follows `path` (the last file read should be the file at `path`).
    pub fn chain(
        path: &Path,
        poll: Duration,
        mut file: File,
        offset: u64,
        rest: Vec<File>,
    ) -> io::Result<Self> {
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))?;
        }
        Ok(Follower {
            path: path.to_path_buf(),
            file,
            offset,
            last: None,
            poll,
            pending_switch: false,
            queue: rest.into(),
            follow: true,
            emitted: 0,
            tracker: None,
            switched: 0,
            stop: None,
        })
    }

    /// Ends the input at the end of the last file instead of waiting.
    pub fn no_wait(mut self) -> Self {
        self.follow = false;
        self
    }

    /// Tells `tracker` where each file begins in the bytes handed out.
    pub fn tracked(mut self, tracker: Arc<Tracker>) -> io::Result<Self> {
        tracker.begin(self.emitted, FileRef::new(&self.file)?, self.offset);
        self.tracker = Some(tracker);
        Ok(self)
    }

    /// Reads end (as at the end of the input) at `offset` of the file
    /// reached after `switches` files were finished; `None` lifts it.
    pub fn stop_at(&mut self, stop: Option<(usize, u64)>) {
        self.stop = stop;
    }

    /// Bytes handed out so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Whether the path now names another file than the one open.
    fn replaced(&self) -> bool {
        let Ok(on_disk) = std::fs::metadata(&self.path) else {
            // Renamed away and not created yet: keep reading the old one.
            return false;
        };
        let Ok(open) = self.file.metadata() else {
            return false;
        };
        !same_file(&open, &on_disk)
    }

    /// Goes on with `next` from its start; returns a newline to hand out
    /// first if the last file ended inside a line.
    fn switch(&mut self, next: File) -> io::Result<bool> {
        self.file = next;
        self.offset = 0;
        self.switched += 1;
        let close = self.last.is_some_and(|b| b != b'\n');
        if let Some(t) = &self.tracker {
            t.begin(
                self.emitted + u64::from(close),
                FileRef::new(&self.file)?,
                0,
            );
        }
        Ok(close)
    }

    fn hand_out(&mut self, buf: &mut [u8], n: usize) -> usize {
        self.offset += n as u64;
        self.emitted += n as u64;
        self.last = Some(buf[n - 1]);
        n
    }
}

/// Opens a followed file; an error names it (a rotated-in file the
/// process may not read must say which).
fn open_named(path: &Path) -> io::Result<File> {
    File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.ino() == b.ino() && a.dev() == b.dev()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() <= b.len()
}

impl Read for Follower {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let mut limit = buf.len();
            if let Some((at, offset)) = self.stop {
                if at == self.switched {
                    let left = offset.saturating_sub(self.offset);
                    if left == 0 {
                        return Ok(0);
                    }
                    limit = limit.min(left as usize);
                }
            }
            let n = self.file.read(&mut buf[..limit])?;
            if n > 0 {
                return Ok(self.hand_out(buf, n));
            }
            // At the end of the current file.
            let next = match self.queue.pop_front() {
                Some(f) => Some(f),
                None if self.pending_switch => {
                    self.pending_switch = false;
                    Some(open_named(&self.path)?)
                }
                None => None,
            };
            if let Some(next) = next {
                // The old file is drained: go on with the next one, closing
                // a partial last line so it does not join the next one.
                if self.switch(next)? {
                    buf[0] = b'\n';
                    return Ok(self.hand_out(buf, 1));
                }
                continue;
            }
            if self.replaced() {
                // Read the old file to its end once more before switching.
                self.pending_switch = true;
                continue;
            }
            if self.file.metadata().is_ok_and(|m| m.len() < self.offset) {
                // Truncated in place (copytruncate): start again from the top.
                self.file = open_named(&self.path)?;
                self.offset = 0;
                if let Some(t) = &self.tracker {
                    t.begin(self.emitted, FileRef::new(&self.file)?, 0);
                }
                continue;
            }
            if !self.follow {
                return Ok(0);
            }
            thread::sleep(self.poll);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_error_names_the_file() {
        let path = std::env::temp_dir().join("saker-no-such-dir/audit.log");
        let e = Follower::open(&path, Duration::from_millis(5))
            .err()
            .expect("no such file");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(
            e.to_string().starts_with(&format!("{}: ", path.display())),
            "{e}"
        );
    }
    use std::io::Write;

    #[test]
    fn follows_across_rename_and_create() {
        let dir = std::env::temp_dir().join(format!("saker-follow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        std::fs::write(&path, b"one\ntwo\npart").unwrap();
        let mut f = Follower::open(&path, Duration::from_millis(5)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 3];
        while got.len() < 12 {
            let n = f.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"one\ntwo\npart");
        // Rotate: rename, then create a new file at the path.
        std::fs::rename(&path, dir.join("audit-2024-01-01T00-00-00.000.log")).unwrap();
        let mut new = File::create(&path).unwrap();
        new.write_all(b"three\n").unwrap();
        while got.len() < 19 {
            let n = f.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"one\ntwo\npart\nthree\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn channel_reader_times_out_then_delivers() {
        let (mut w, r) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut reader = ChannelReader::spawn(Box::new(r), Duration::from_millis(20));
        let mut buf = [0u8; 8];
        assert_eq!(
            reader.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(
            reader.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        w.write_all(b"hi").unwrap();
        let mut n = 0;
        for _ in 0..100 {
            match reader.read(&mut buf) {
                Ok(k) => {
                    n = k;
                    break;
                }
                Err(_) => continue,
            }
        }
        assert_eq!(&buf[..n], b"hi");
        drop(w);
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                _ => continue,
            }
        }
    }
}
