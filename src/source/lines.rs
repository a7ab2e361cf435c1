//! Splits a byte stream into lines without ever holding more than the line
//! limit: a longer line is skipped (reported as [`Line::TooLong`]) while it
//! streams past. Also strips what `kubectl logs` puts in front of a line.

use std::io::{self, Read};

/// One item from the reader.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line without its `\n` (a trailing `\r` is removed too).
    Text(&'a [u8]),
    /// A line longer than the limit; its bytes were discarded.
    TooLong,
}

pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_line: usize,
    /// Inside a too-long line: drop bytes until the next `\n`.
    discarding: bool,
    eof: bool,
    /// Bytes consumed from `inner` so far.
    pub bytes_read: u64,
}

const CHUNK: usize = 256 * 1024;

impl<R: Read> LineReader<R> {
    pub fn new(inner: R, max_line: usize) -> Self {
        LineReader {
            inner,
            buf: vec![0; CHUNK.min(max_line.max(1).saturating_add(1)).max(4096)],
            start: 0,
            end: 0,
            max_line: max_line.max(1),
            discarding: false,
            eof: false,
            bytes_read: 0,
        }
    }

    /// Bytes of the input handed out (or skipped as too long) so far: the
    /// stream offset right after the last line or chunk returned.
    pub fn consumed(&self) -> u64 {
        self.bytes_read - (self.end - self.start) as u64
    }

    /// The next line; `before_read` runs whenever the reader is about to
    /// wait for more input (the place to flush outputs on a live stream):
    /// when it says so with `ErrorKind::WouldBlock`, as a live input's
    /// [`super::live::ChannelReader`] does before it waits.
    pub fn next_line(&mut self, before_read: &mut dyn FnMut()) -> io::Result<Option<Line<'_>>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let (s, e) = (self.start, self.start + i);
                self.start = e + 1;
                if self.discarding {
                    self.discarding = false;
                    return Ok(Some(Line::TooLong));
                }
                if e - s > self.max_line {
                    return Ok(Some(Line::TooLong));
                }
                return Ok(Some(Line::Text(trim_cr(&self.buf[s..e]))));
            }
            if self.eof {
                return Ok(self.rest().map(|r| match r {
                    Some((s, e)) => Line::Text(trim_cr(&self.buf[s..e])),
                    None => Line::TooLong,
                }));
            }
            self.fill(before_read)?;
        }
    }

    /// Every whole line buffered, at once: a [`Chunk::Lines`] of lines each
    /// ended by `\n` (the last line of the input may lack it), to be cut with
    /// [`split_lines`]; or a line over the limit that streamed past.
    pub fn next_chunk(&mut self, before_read: &mut dyn FnMut()) -> io::Result<Option<Chunk<'_>>> {
        loop {
            let buffered = &self.buf[self.start..self.end];
            if self.discarding {
                if let Some(i) = memchr::memchr(b'\n', buffered) {
                    self.start += i + 1;
                    self.discarding = false;
                    return Ok(Some(Chunk::TooLong));
                }
            } else if let Some(i) = memchr::memrchr(b'\n', buffered) {
                let (s, e) = (self.start, self.start + i + 1);
                self.start = e;
                return Ok(Some(Chunk::Lines(&self.buf[s..e])));
            }
            if self.eof {
                return Ok(self.rest().map(|r| match r {
                    Some((s, e)) => Chunk::Lines(&self.buf[s..e]),
                    None => Chunk::TooLong,
                }));
            }
            self.fill(before_read)?;
        }
    }

    /// At the end of the input: the unterminated last line, if any, as a
    /// range of the buffer, or `Some(None)` when it is over the limit.
    fn rest(&mut self) -> Option<Option<(usize, usize)>> {
        if self.start == self.end && !self.discarding {
            return None;
        }
        let (s, e) = (self.start, self.end);
        self.start = self.end;
        let too_long = std::mem::take(&mut self.discarding) || e - s > self.max_line;
        Some((!too_long).then_some((s, e)))
    }

    /// No whole line is buffered: makes room (dropping the start of a line
    /// over the limit), then reads once.
    fn fill(&mut self, before_read: &mut dyn FnMut()) -> io::Result<()> {
        if self.discarding || self.end - self.start > self.max_line {
            self.discarding = true;
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grow = (self.buf.len() * 2).min(self.max_line.saturating_add(CHUNK));
            self.buf.resize(grow.max(self.buf.len() + 1), 0);
        }
        let mut warned = false;
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A live reader has nothing yet: its next read waits. (A
                // reader that says so twice is a non-blocking file: an
                // error.)
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !warned => {
                    warned = true;
                    before_read()
                }
                Err(e) => return Err(e),
            }
        };
        self.bytes_read += n as u64;
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        Ok(())
    }
}

/// Whole lines handed out at once by [`LineReader::next_chunk`].
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Lines each ended by `\n`, but perhaps the input's last.
    Lines(&'a [u8]),
    /// A line longer than the limit; its bytes were discarded.
    TooLong,
}

/// Cuts a [`Chunk::Lines`] into lines, as [`LineReader::next_line`] would
/// have returned them (a line over `max_line` is [`Line::TooLong`]).
pub fn split_lines<'a, E>(
    chunk: &'a [u8],
    max_line: usize,
    mut f: impl FnMut(Line<'a>) -> Result<(), E>,
) -> Result<(), E> {
    let mut rest = chunk;
    while !rest.is_empty() {
        let (line, after) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = after;
        f(if line.len() > max_line.max(1) {
            Line::TooLong
        } else {
            Line::Text(trim_cr(line))
        })?;
    }
    Ok(())
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Removes `kubectl logs` decorations: a `--prefix` tag (`[pod/NAME/C] `)
/// and a `--timestamps` RFC 3339 time followed by a space, in either order,
/// and surrounding blanks.
pub fn strip_prefixes(mut line: &[u8]) -> &[u8] {
    if crate::event::envelope::is_gzip(line) {
        return line;
    }
    line = line.trim_ascii();
    for _ in 0..2 {
        if let Some(rest) = strip_pod_prefix(line) {
            line = rest.trim_ascii_start();
        } else if let Some(rest) = strip_timestamp(line) {
            line = rest.trim_ascii_start();
        } else {
            break;
        }
    }
    line
}

fn strip_pod_prefix(line: &[u8]) -> Option<&[u8]> {
    // `[pod/x/y] ...`, but not a JSON array (`[{`, `[[`, `[]`, `["`, `[1`).
    let second = *line.get(1)?;
    if line[0] != b'['
        || matches!(second, b'{' | b'[' | b']' | b'"' | b'-' | b'0'..=b'9')
        || second.is_ascii_whitespace()
    {
        return None;
    }
    let close = line.windows(2).position(|w| w == b"] ")?;
    Some(&line[close + 2..])
}

fn strip_timestamp(line: &[u8]) -> Option<&[u8]> {
    // 2024-10-29T12:21:44.214173123Z
    let looks = line.len() > 20
        && line[..4].iter().all(u8::is_ascii_digit)
        && line[4] == b'-'
        && line[7] == b'-'
        && line[10] == b'T';
    if !looks {
        return None;
    }
    let space = line.iter().position(|&b| b == b' ')?;
    Some(&line[space + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line(&mut || {}).unwrap() {
            out.push(match l {
                Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
                Line::TooLong => "<too long>".into(),
            });
        }
        out
    }

    #[test]
    fn splits_and_limits() {
        assert_eq!(lines(b"a\r\nbb\n\nccc", 10), ["a", "bb", "", "ccc"]);
        let long = format!("x\n{}\ny\n{}", "z".repeat(50_000), "w".repeat(60_000));
        assert_eq!(
            lines(long.as_bytes(), 1000),
            ["x", "<too long>", "y", "<too long>"]
        );
        assert_eq!(lines(b"12345\n123456\n", 5), ["12345", "<too long>"]);
    }

    /// The same input read as chunks and cut with `split_lines`.
    fn chunked(input: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk(&mut || {}).unwrap() {
            match c {
                Chunk::TooLong => out.push("<too long>".into()),
                Chunk::Lines(l) => split_lines(l, max, |line| {
                    out.push(match line {
                        Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
                        Line::TooLong => "<too long>".into(),
                    });
                    Ok::<(), ()>(())
                })
                .unwrap(),
            }
        }
        out
    }

    #[test]
    fn chunks_cut_into_the_same_lines() {
        let long = format!("x\n{}\ny\n{}", "z".repeat(50_000), "w".repeat(60_000));
        let big = "q".repeat(3 * CHUNK + 7);
        let cases: Vec<(Vec<u8>, usize)> = vec![
            (b"a\r\nbb\n\nccc".to_vec(), 10),
            (long.clone().into_bytes(), 1000),
            (format!("{long}\n").into_bytes(), 1000),
            (b"12345\n123456\n".to_vec(), 5),
            (format!("{big}\n{big}").into_bytes(), 4 * CHUNK),
            (format!("{big}\nshort\n{big}\n").into_bytes(), CHUNK),
            (Vec::new(), 10),
        ];
        for (input, max) in cases {
            assert_eq!(chunked(&input, max), lines(&input, max), "max {max}");
        }
    }

    #[test]
    fn big_lines_within_limit() {
        let line = "q".repeat(3 * CHUNK + 7);
        let input = format!("{line}\n{line}");
        let got = lines(input.as_bytes(), 4 * CHUNK);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|l| l.len() == line.len()));
    }

    #[test]
    fn prefixes() {
        let s = |x: &str| String::from_utf8_lossy(strip_prefixes(x.as_bytes())).into_owned();
        assert_eq!(s("2024-10-29T12:21:44.214173123Z {\"a\":1}"), "{\"a\":1}");
        assert_eq!(
            s("[pod/kube-apiserver-x/kube-apiserver] {\"a\":1}"),
            "{\"a\":1}"
        );
        assert_eq!(
            s("[pod/a/b] 2024-10-29T12:21:44.214173123Z {\"a\":1}\r"),
            "{\"a\":1}"
        );
        assert_eq!(s("[{\"a\":1}]"), "[{\"a\":1}]");
        assert_eq!(
            s("I0215 11:51:31.123456 1 file.go:123] msg"),
            "I0215 11:51:31.123456 1 file.go:123] msg"
        );
    }
}
