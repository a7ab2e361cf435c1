//! A plain file read by the worker threads themselves (`--threads` on
//! `--input FILE`, without `--follow` or a state directory): the source
//! hands out byte ranges of the file instead of its bytes, and each worker
//! reads its range with positioned reads into its job's buffer. The
//! ordering thread then neither reads nor copies the input, and a worker
//! decodes bytes its own core has just read, instead of bytes another
//! core wrote.
//!
//! A range holds the lines that *start* in it. A worker reads the byte
//! before its range (a line starts at the range's first byte only if that
//! byte is a `\n`), the range, and past the range's end to the end of its
//! last line. So each line is read whole by one worker, and the lines are those
//! [`super::lines::LineReader`] hands out: a line over the limit is read
//! only up to one byte over it, and the range it starts in skips it
//! (`Line::TooLong`).

use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::position::read_at;
use super::{Batch, BeforeWait, Body, Next, Source, StreamId};

/// Bytes of the file per range: the size of a job ([`crate::engine::parallel`]).
pub const RANGE_BYTES: u64 = 256 * 1024;

/// The first read past a range's end, for the rest of its last line; each
/// further read doubles, up to [`RANGE_BYTES`].
const FIRST_TAIL_READ: usize = 4096;

/// Lines of a file that start in `start..end`.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    /// The file's name, for errors.
    pub name: Arc<str>,
    pub start: u64,
    pub end: u64,
    /// Lines longer than this are skipped.
    pub max_line: usize,
}

impl PartialEq for FileRange {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
            && (self.start, self.end, self.max_line) == (other.start, other.end, other.max_line)
    }
}

impl Eq for FileRange {}

impl FileRange {
    /// Writes the lines that start in the range into `out` from `at` on,
    /// each with its `\n` (the file's last line may lack it), and a line
    /// over the limit cut one byte over it; returns where they are in
    /// `out` (an empty range when no line starts in the range). What `out`
    /// holds past `at` is overwritten, and `out` is grown, never shrunk: a
    /// buffer used again holds bytes already, which spares zeroing it
    /// before each read.
    pub fn read_lines(&self, out: &mut Vec<u8>, at: usize) -> io::Result<Range<usize>> {
        self.read(out, at).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read {} at byte {}: {e}", self.name, self.start),
            )
        })
    }

    fn read(&self, out: &mut Vec<u8>, at: usize) -> io::Result<Range<usize>> {
        // A line starts at the range's first byte when the byte before is
        // the end of a line. That byte is read on its own: the range is
        // then read from its start, at the same alignment in the buffer as
        // in the file's pages, which the kernel copies fastest.
        let after_line = self.start == 0 || {
            let mut before = [0u8; 1];
            read_at(&self.file, &mut before, self.start - 1)? == 1 && before[0] == b'\n'
        };
        let want = usize::try_from(self.end.saturating_sub(self.start)).unwrap_or(usize::MAX);
        let got = read_into(&self.file, self.start, want, out, at)?;
        let read = &out[at..at + got];
        // The first line that starts in the range: at its first byte, or
        // after the first `\n` (the end of a line that started before).
        let first = if after_line {
            0
        } else {
            memchr::memchr(b'\n', read).map_or(got, |i| i + 1)
        };
        if first >= got {
            return Ok(at..at);
        }
        let (lines, mut end) = (at + first, at + got);
        let at_end_of_file = got < want;
        if !at_end_of_file && out[end - 1] != b'\n' {
            let last = lines + memchr::memrchr(b'\n', &out[lines..end]).map_or(0, |i| i + 1);
            end = self.finish_line(last, end, out)?;
        }
        Ok(lines..end)
    }

    /// Reads the rest of the line that starts at `out[last]` and crosses
    /// the range's end (read up to `out[end]`): up to its `\n`, the end of
    /// the file, or one byte over the limit (which is enough to tell that
    /// it is too long). Returns where the line ends in `out`.
    fn finish_line(&self, last: usize, mut end: usize, out: &mut Vec<u8>) -> io::Result<usize> {
        let keep = self.max_line.max(1).saturating_add(1);
        let mut at = self.end;
        let mut step = FIRST_TAIL_READ;
        loop {
            let have = end - last;
            if have >= keep {
                return Ok(last + keep);
            }
            let n = read_into(&self.file, at, step.min(keep - have), out, end)?;
            if n == 0 {
                return Ok(end);
            }
            if let Some(i) = memchr::memchr(b'\n', &out[end..end + n]) {
                return Ok(end + i + 1);
            }
            (at, end) = (at + n as u64, end + n);
            step = (step * 2).min(RANGE_BYTES as usize);
        }
    }
}

/// Reads up to `len` bytes of `file` from offset `pos` into `out` at `at`
/// (growing it as needed); fewer only at the end of the file. Returns how
/// many.
fn read_into(file: &File, pos: u64, len: usize, out: &mut Vec<u8>, at: usize) -> io::Result<usize> {
    if out.len() < at + len {
        out.resize(at + len, 0);
    }
    let buf = &mut out[at..at + len];
    let mut got = 0;
    while got < len {
        match read_at(file, &mut buf[got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A plain file as ranges, for the workers to read: one stream, no
/// acknowledgements. The ranges cover the file as long as it was when it
/// was opened; its last line is read to its end, should the file have
/// grown since (to read on as it grows, `--follow` reads it as a stream).
pub struct RangeSource {
    file: Arc<File>,
    name: Arc<str>,
    max_line: usize,
    /// The start of the next range.
    next: u64,
    /// The file's length when it was opened.
    len: u64,
    ended: bool,
    stop: Option<Arc<AtomicBool>>,
}

impl RangeSource {
    pub fn open(path: &Path, max_line: usize) -> io::Result<RangeSource> {
        let file = File::open(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open input {}: {e}", path.display()),
            )
        })?;
        let len = file.metadata()?.len();
        Ok(RangeSource {
            file: Arc::new(file),
            name: path.display().to_string().into(),
            max_line,
            next: 0,
            len,
            ended: false,
            stop: None,
        })
    }

    /// Stops (as [`Next::Stop`]) once `stop` is set, between ranges.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The file's size when it was opened.
    pub fn size(&self) -> u64 {
        self.len
    }
}

impl Source for RangeSource {
    fn next(&mut self, _before_wait: &mut BeforeWait) -> io::Result<Next<'_>> {
        if super::stopped(self.stop.as_deref()) {
            self.ended = true;
            return Ok(Next::Stop);
        }
        if self.ended || self.next >= self.len {
            self.ended = true;
            return Ok(Next::End);
        }
        let start = self.next;
        self.next = start.saturating_add(RANGE_BYTES).min(self.len);
        Ok(Next::Batch(Batch {
            stream: StreamId(0),
            body: Body::FileRange(FileRange {
                file: self.file.clone(),
                name: self.name.clone(),
                start,
                end: self.next,
                max_line: self.max_line,
            }),
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
        self.name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::lines::{split_lines, Line, LineReader};
    use proptest::prelude::*;
    use std::io::Write;

    /// What [`LineReader`] hands out for `data`: each line, or `None` for
    /// one over the limit.
    fn reader_lines(data: &[u8], max_line: usize) -> Vec<Option<Vec<u8>>> {
        let mut r = LineReader::new(data, max_line);
        let mut out = Vec::new();
        while let Some(line) = r.next_line(&mut || {}).unwrap() {
            out.push(match line {
                Line::Text(t) => Some(t.to_vec()),
                Line::TooLong => None,
            });
        }
        out
    }

    /// The lines of `data` read range by range, `range` bytes each.
    fn range_lines(data: &[u8], range: u64, max_line: usize) -> Vec<Option<Vec<u8>>> {
        let path = std::env::temp_dir().join(format!(
            "saker-ranges-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, data).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let mut out = Vec::new();
        // Past its first bytes, line ends a wrong read would take.
        let mut buf = [&b"held"[..], &[b'\n'; 252]].concat();
        let mut start = 0;
        while start < data.len() as u64 {
            let r = FileRange {
                file: file.clone(),
                name: "t".into(),
                start,
                end: start + range,
                max_line,
            };
            // Written after what the buffer holds, as a job's pieces are,
            // over what earlier ranges left there.
            let at = r.read_lines(&mut buf, 4).unwrap();
            assert_eq!(&buf[..4], b"held");
            split_lines(&buf[at], max_line, |line| {
                out.push(match line {
                    Line::Text(t) => Some(t.to_vec()),
                    Line::TooLong => None,
                });
                Ok::<(), ()>(())
            })
            .unwrap();
            start += range;
        }
        std::fs::remove_file(&path).unwrap();
        out
    }

    #[test]
    fn ranges_cut_between_lines_and_inside_them() {
        let data = b"ab\ncd\n\nefghij\nk";
        for range in 1..=16 {
            assert_eq!(
                range_lines(data, range, 100),
                reader_lines(data, 100),
                "range {range}"
            );
        }
        // A line over the limit, wherever the ranges cut it.
        let data = b"a\nxxxxxxxxxxxxxxxxxxxx\nb\r\nyyyyyyyyyyyy";
        for range in 1..=8 {
            assert_eq!(
                range_lines(data, range, 5),
                reader_lines(data, 5),
                "range {range}"
            );
        }
    }

    #[test]
    fn a_range_with_no_line_start_reads_nothing() {
        let path = std::env::temp_dir().join(format!("saker-ranges-none-{}", std::process::id()));
        std::fs::write(&path, b"0123456789\n").unwrap();
        let r = FileRange {
            file: Arc::new(File::open(&path).unwrap()),
            name: "t".into(),
            start: 3,
            end: 6,
            max_line: 100,
        };
        let mut buf = b"kept".to_vec();
        assert_eq!(r.read_lines(&mut buf, 4).unwrap(), 4..4);
        assert_eq!(&buf[..4], b"kept");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn ranges_cover_the_file_as_opened_and_its_last_line_whole() {
        let path = std::env::temp_dir().join(format!("saker-ranges-grow-{}", std::process::id()));
        std::fs::write(&path, b"a\nb\nc").unwrap();
        let mut source = RangeSource::open(&path, 100).unwrap();
        // Written after it was opened: the last line goes on, then a new one.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"dd\ne\n")
            .unwrap();
        let mut lines = Vec::new();
        loop {
            match source.next(&mut || Ok(Vec::new())).unwrap() {
                Next::Batch(b) => {
                    let Body::FileRange(r) = b.body else {
                        panic!("a file range")
                    };
                    assert!(r.end <= 5, "{r:?}");
                    let mut buf = Vec::new();
                    let at = r.read_lines(&mut buf, 0).unwrap();
                    lines.extend(buf[at].split(|&c| c == b'\n').map(|l| l.to_vec()));
                }
                Next::End => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(lines, [&b"a"[..], b"b", b"cdd", b""]);
        assert_eq!(source.bytes(), 5);
        std::fs::remove_file(&path).unwrap();
    }

    proptest! {
        /// Range by range, the lines are those the line reader hands out,
        /// for any bytes, any range size and any limit.
        #[test]
        fn ranges_give_the_line_readers_lines(
            pieces in prop::collection::vec(
                prop_oneof![Just(b"\n".to_vec()), Just(b"\r\n".to_vec()), "[a-c]{0,30}".prop_map(String::into_bytes)],
                0..60,
            ),
            range in 1u64..64,
            max_line in 1usize..40,
        ) {
            let data = pieces.concat();
            prop_assert_eq!(range_lines(&data, range, max_line), reader_lines(&data, max_line));
        }
    }
}
