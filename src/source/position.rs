//! Where in a file the input stands, in a form that survives a restart:
//! the file's identity (device and inode, and a digest of its first bytes,
//! so a reused inode is not taken for the file) and a byte offset.
//!
//! A [`Tracker`] is shared by a reader of files (the [`super::live::Follower`])
//! and the line source above it: the reader notes where in the stream of
//! bytes it handed out each file begins; the source turns the stream offset
//! of the lines it has handed out into an [`InputPosition`].

use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

/// At most this many leading bytes identify a file's content.
pub const HEAD_BYTES: u64 = 4096;

/// A position in a file, saved in the state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    pub dev: u64,
    pub ino: u64,
    /// How many leading bytes `head_sha256` covers (the offset, up to
    /// [`HEAD_BYTES`]: bytes before the offset were read, so they exist).
    pub head_len: u64,
    pub head_sha256: String,
    /// Bytes of the file before the position.
    pub offset: u64,
}

/// An open file that a position refers to.
#[derive(Debug)]
pub struct FileRef {
    file: File,
    pub dev: u64,
    pub ino: u64,
    /// The digest of the first [`HEAD_BYTES`], once the file has them.
    full_head: OnceLock<String>,
}

impl FileRef {
    pub fn new(file: &File) -> io::Result<Arc<FileRef>> {
        let (dev, ino) = identity(&file.metadata()?);
        Ok(Arc::new(FileRef {
            file: file.try_clone()?,
            dev,
            ino,
            full_head: OnceLock::new(),
        }))
    }

    /// The digest of the first `len` bytes (fewer if the file is shorter).
    fn head(&self, len: u64) -> io::Result<String> {
        if len == HEAD_BYTES {
            if let Some(h) = self.full_head.get() {
                return Ok(h.clone());
            }
        }
        let h = head_digest(&self.file, len)?;
        if len == HEAD_BYTES {
            let _ = self.full_head.set(h.clone());
        }
        Ok(h)
    }
}

/// A position in the input: cheap to take, turned into a
/// [`FilePosition`] only when saved.
#[derive(Debug, Clone)]
pub struct InputPosition {
    pub file: Arc<FileRef>,
    pub offset: u64,
}

impl InputPosition {
    pub fn resolve(&self) -> io::Result<FilePosition> {
        let head_len = self.offset.min(HEAD_BYTES);
        Ok(FilePosition {
            dev: self.file.dev,
            ino: self.file.ino,
            head_len,
            head_sha256: self.file.head(head_len)?,
            offset: self.offset,
        })
    }
}

impl FilePosition {
    /// Whether `file` is the file this position is in: same device and
    /// inode, at least `offset` bytes, and the same first bytes.
    pub fn is_in(&self, file: &File) -> bool {
        let Ok(meta) = file.metadata() else {
            return false;
        };
        identity(&meta) == (self.dev, self.ino)
            && meta.len() >= self.offset
            && head_digest(file, self.head_len).is_ok_and(|h| h == self.head_sha256)
    }
}

/// Where, in the stream of bytes a reader hands out, each file begins.
#[derive(Debug, Default)]
pub struct Tracker {
    segments: Mutex<Vec<Segment>>,
}

#[derive(Debug)]
struct Segment {
    /// Stream offset of the segment's first byte.
    stream: u64,
    /// File offset of that byte.
    offset: u64,
    file: Arc<FileRef>,
}

impl Tracker {
    /// From stream offset `stream` on, bytes come from `file` at `offset`.
    pub fn begin(&self, stream: u64, file: Arc<FileRef>, offset: u64) {
        let mut s = self.segments.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the last segment or two are ever looked up.
        let excess = s.len().saturating_sub(8);
        s.drain(..excess);
        s.push(Segment {
            stream,
            offset,
            file,
        });
    }

    /// The file position of stream offset `stream`.
    pub fn position(&self, stream: u64) -> Option<InputPosition> {
        let s = self.segments.lock().unwrap_or_else(PoisonError::into_inner);
        let seg = s.iter().rev().find(|seg| seg.stream <= stream)?;
        Some(InputPosition {
            file: seg.file.clone(),
            offset: seg.offset + (stream - seg.stream),
        })
    }
}

#[cfg(unix)]
pub fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
pub fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (0, m.len())
}

fn head_digest(file: &File, len: u64) -> io::Result<String> {
    let mut buf = vec![0u8; len as usize];
    let mut got = 0;
    while got < buf.len() {
        let n = read_at(file, &mut buf[got..], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(hex(digest(&SHA256, &buf).as_ref()))
}

/// Reads into `buf` from offset `at` of `file`, as `pread` does.
#[cfg(unix)]
pub(crate) fn read_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, at)
}

#[cfg(not(unix))]
pub(crate) fn read_at(_file: &File, _buf: &mut [u8], _at: u64) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_position_knows_its_file_and_not_another_at_the_same_path() {
        let dir = std::env::temp_dir().join(format!("saker-pos-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        std::fs::write(&path, b"one\ntwo\n").unwrap();
        let f = File::open(&path).unwrap();
        let tracker = Tracker::default();
        tracker.begin(0, FileRef::new(&f).unwrap(), 0);
        let p = tracker.position(4).unwrap().resolve().unwrap();
        assert_eq!((p.offset, p.head_len), (4, 4));
        assert!(p.is_in(&File::open(&path).unwrap()));
        // It grows: still the file.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"three\n")
            .unwrap();
        assert!(p.is_in(&File::open(&path).unwrap()));
        // Replaced by other content: not the file, whatever the inode.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"uno\ndos\n").unwrap();
        assert!(!p.is_in(&File::open(&path).unwrap()));
        // A second file begins at stream offset 9 (after a closing newline).
        std::fs::write(dir.join("b.log"), b"x\n").unwrap();
        let g = File::open(dir.join("b.log")).unwrap();
        tracker.begin(9, FileRef::new(&g).unwrap(), 0);
        assert_eq!(tracker.position(8).unwrap().offset, 8);
        let q = tracker.position(11).unwrap();
        assert_eq!(q.offset, 2);
        assert!(q.resolve().unwrap().is_in(&g));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
