//! Line-oriented inputs as a [`Source`]: stdin, a file, a followed file.
//! Each batch is every whole line buffered (up to a read's worth), so a
//! file goes through the engine without a copy. Live inputs (stdin,
//! `--follow`) are read on a thread ([`super::live::ChannelReader`]) whose
//! reads time out, which this source reports as [`Next::Idle`].

use std::io::{self, Read};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::lines::{Chunk, Line, LineReader};
use super::live::ChannelReader;
use super::position::{InputPosition, Tracker};
use super::{Batch, BeforeWait, Body, Input, Next, Source, StreamId};

/// How long a live read waits before the driver looks at the wall clock.
pub const LIVE_POLL: Duration = Duration::from_millis(250);

/// A byte stream read as lines: one stream, no acknowledgements.
pub struct LineSource<R> {
    lines: LineReader<R>,
    max_line: usize,
    live: bool,
    name: String,
    ended: bool,
    /// Where the bytes read come from, and the stream offset this
    /// reader's first byte is at.
    tracker: Option<(Arc<Tracker>, u64)>,
    /// Set by SIGTERM or SIGINT: the source stops.
    stop: Option<Arc<AtomicBool>>,
}

impl<R: Read> LineSource<R> {
    /// Lines of `reader`; `live` when it is a stream that goes quiet rather
    /// than ends (its reads then time out with `ErrorKind::TimedOut`).
    pub fn new(reader: R, max_line: usize, live: bool, name: impl Into<String>) -> Self {
        LineSource {
            lines: LineReader::new(reader, max_line),
            max_line,
            live,
            name: name.into(),
            ended: false,
            tracker: None,
            stop: None,
        }
    }

    /// Reports positions through `tracker`; this reader's first byte is at
    /// stream offset `base`.
    pub fn with_positions(mut self, tracker: Arc<Tracker>, base: u64) -> Self {
        self.tracker = Some((tracker, base));
        self
    }

    /// Stops (as [`Next::Stop`]) once `stop` is set, between batches.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }
}

/// A line source over an opened stdin or file.
pub type Opened = LineSource<Box<dyn Read + Send>>;

/// Opens `input`: stdin and followed files live, through a reading thread;
/// a plain file read directly. Returns the source and, for a plain file,
/// its size (for a progress bar).
pub fn open(input: &Input, follow: bool, max_line: usize) -> io::Result<(Opened, Option<u64>)> {
    let live = follow || matches!(input, Input::Stdin);
    let opened = if live {
        input.open_live(follow).map(|r| {
            let reader: Box<dyn Read + Send> = Box::new(ChannelReader::spawn(r, LIVE_POLL));
            (reader, None)
        })
    } else {
        input.open()
    };
    let (reader, size) = opened.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot open input {}: {e}", input.describe()),
        )
    })?;
    Ok((
        LineSource::new(reader, max_line, live, input.describe()),
        size,
    ))
}

impl<R: Read> Source for LineSource<R> {
    fn next(&mut self, before_wait: &mut BeforeWait) -> io::Result<Next<'_>> {
        if self.ended {
            return Ok(Next::End);
        }
        if super::stopped(self.stop.as_deref()) {
            self.ended = true;
            return Ok(Next::Stop);
        }
        let live = self.live;
        let mut hook_err = Ok(());
        let chunk = self.lines.next_chunk(&mut || {
            if live && hook_err.is_ok() {
                // A line source asks for no acknowledgements.
                hook_err = before_wait().map(drop);
            }
        });
        hook_err?;
        let body = match chunk {
            Ok(Some(Chunk::Lines(text))) => Body::Lines {
                text,
                max_line: self.max_line,
            },
            Ok(Some(Chunk::TooLong)) => Body::Line(Line::TooLong),
            Ok(None) => {
                self.ended = true;
                return Ok(Next::End);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(Next::Idle),
            Err(e) => return Err(e),
        };
        Ok(Next::Batch(Batch {
            stream: StreamId(0),
            body,
            ack: None,
        }))
    }

    fn live(&self) -> bool {
        self.live
    }

    fn bytes(&self) -> u64 {
        self.lines.bytes_read
    }

    fn position(&self) -> Option<InputPosition> {
        let (tracker, base) = self.tracker.as_ref()?;
        tracker.position(base + self.lines.consumed())
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_one_stream_of_whole_lines_then_ends() {
        let mut src = LineSource::new(&b"a\nb\nc"[..], 100, false, "t");
        let mut got = Vec::new();
        loop {
            match src.next(&mut || panic!("a file never waits")).unwrap() {
                Next::Batch(b) => {
                    assert_eq!(b.stream, StreamId(0));
                    assert!(b.ack.is_none());
                    match b.body {
                        Body::Lines { text, max_line } => {
                            assert_eq!(max_line, 100);
                            got.push(String::from_utf8_lossy(text).into_owned())
                        }
                        other => panic!("{other:?}"),
                    }
                }
                Next::End => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got.concat(), "a\nb\nc");
        assert!(matches!(
            src.next(&mut || Ok(Vec::new())).unwrap(),
            Next::End
        ));
        assert_eq!(src.bytes(), 5);
    }
}
