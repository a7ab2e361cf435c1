//! Rebuilding a partition's windows when it is assigned: the messages
//! before the resume position that can still affect a window are re-read
//! with a separate, group-less reader and replayed into the windows without
//! emitting alerts (a warm-up replay).
//!
//! The replay starts at the first message whose events are all at least
//! one horizon (longest window and `for`, plus lateness) older than the
//! newest event of the last messages already processed. The broker's time
//! index gives a first guess (exact when producers stamp messages with the
//! event time, as `saker produce` does); the guess is then checked against the events
//! themselves and moved back, doubling the step, until it is early enough,
//! so a broker whose timestamps mean something else only costs a longer
//! replay, never a shorter one.
//!
//! The reader is assigned its partition once and moved with seeks: an
//! assign that replaces a started assignment stops the fetcher
//! asynchronously, and a second change before that stop is done (the next
//! probe's assign, or the reader's close) makes the bundled librdkafka abort
//! (see `CHANGE_SPACING` in `mod.rs`). A read for the search gives up after
//! [`PROBE_WAIT`] without a message. tansu 0.6, the broker of
//! the tests, answers a fetch that starts inside a record batch with the
//! batches after it, or with nothing when that batch is the last: a probe
//! there used to wait the whole warm-up timeout. The event time reached is
//! the newest of the last 64 messages before the resume offset, read in one
//! pass; when none of them comes back with events, the replay starts at
//! the partition's first offset, which every broker serves. A start is
//! accepted only when the message read there is the one at that offset and
//! its events are all early enough; anything else moves it earlier, which
//! only makes the replay longer.
//!
//! A stop (SIGTERM, SIGINT) cuts a warm-up short: every wait on the broker
//! is made in slices ([`bounded`]) and the stop flag is looked at between
//! them, so a stop in the middle of a storm of assignments is not held up
//! by a slow broker.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::source::documents;

/// What a warm-up replayed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Replay {
    /// First offset replayed (the resume offset when nothing was).
    pub from: i64,
    pub messages: u64,
    /// Probes made to find the start.
    pub probes: u32,
    /// Whether the replay reached the resume offset.
    pub complete: bool,
}

/// The first wait of a broker request made in slices; each next one is
/// twice as long, up to [`LONGEST_SLICE`] (a slow broker still gets long
/// enough to answer).
const FIRST_SLICE: Duration = Duration::from_millis(250);
/// The longest slice: how long a stop may wait for a request in flight.
const LONGEST_SLICE: Duration = Duration::from_secs(2);
/// How long a read for the search goes without a message before it gives
/// up (at most the warm-up timeout).
const PROBE_WAIT: Duration = Duration::from_secs(2);
/// The messages before the resume offset searched for the event time reached.
const LATEST_WITHIN: i64 = 64;

/// Makes `request` (given how long it may wait) until it answers otherwise
/// than by timing out or `timeout` has passed; the waits are slices of
/// `timeout`, and none is made once `stop` is set (then the error is
/// [`KafkaError::Canceled`]).
pub fn bounded<T>(
    timeout: Duration,
    stop: &AtomicBool,
    mut request: impl FnMut(Duration) -> KafkaResult<T>,
) -> KafkaResult<T> {
    let started = Instant::now();
    let mut slice = FIRST_SLICE;
    loop {
        if stop.load(Relaxed) {
            return Err(KafkaError::Canceled);
        }
        let left = timeout.saturating_sub(started.elapsed());
        let result = request(left.min(slice));
        let timed_out = matches!(&result, Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OperationTimedOut));
        if !timed_out || started.elapsed() >= timeout {
            return result;
        }
        slice = (slice * 2).min(LONGEST_SLICE);
    }
}

/// Whether a seek failed only because the fetcher has not started yet (or
/// is still stopping), or timed out: then it is made again, while the
/// warm-up timeout lasts.
fn retry_seek(result: &KafkaResult<()>) -> bool {
    match result {
        // The call's own failure (`seek_partitions`) carries only a name.
        Err(KafkaError::Seek(name)) => name.contains("TIMED_OUT"),
        Err(e) => matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::State | RDKafkaErrorCode::PreviousInProgress)
        ),
        Ok(()) => false,
    }
}

/// A message's offset and its event-time range, if it has events.
type First = (i64, Option<(i64, i64)>);

/// A consumer outside the group that reads one partition at any offset.
pub struct Reader {
    consumer: BaseConsumer,
    topic: String,
    partition: i32,
    timeout: Duration,
    /// The event-time range of a message: its audit events', or a
    /// repartition record's.
    times: fn(&[u8]) -> Option<(i64, i64)>,
    /// Set on SIGTERM, SIGINT: the warm-up gives up at once.
    stop: Arc<AtomicBool>,
    /// Whether the partition is assigned (then it is moved by seeks).
    assigned: Cell<bool>,
}

impl Reader {
    /// `config` is the group consumer's configuration; group settings are
    /// replaced so that this reader never joins the group or commits.
    /// `stop` set cuts the warm-up short ([`Reader::stopped`]).
    pub fn new(
        config: &ClientConfig,
        topic: &str,
        partition: i32,
        timeout: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, String> {
        // librdkafka wants a group id even for assign(); this one is never
        // joined (no subscribe) and never committed to.
        let group = format!("{}.saker-warmup", config.get("group.id").unwrap_or("saker"));
        let mut config = config.clone();
        config
            .set("group.id", group)
            .remove("group.instance.id")
            .remove("partition.assignment.strategy")
            .remove("statistics.interval.ms")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // Probes read one message: do not let the broker sit on a fetch.
            .set("fetch.wait.max.ms", "20");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| format!("cannot create the warm-up reader: {e}"))?;
        Ok(Reader {
            consumer,
            topic: topic.to_string(),
            partition,
            timeout,
            times: documents::time_range,
            stop,
            assigned: Cell::new(false),
        })
    }

    /// Whether a stop cut (or will cut) the warm-up short.
    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Reads messages whose event times `times` tells (a repartition
    /// topic's records).
    pub fn with_times(mut self, times: fn(&[u8]) -> Option<(i64, i64)>) -> Self {
        self.times = times;
        self
    }

    fn watermarks(&self) -> Result<(i64, i64), String> {
        bounded(self.timeout, &self.stop, |t| {
            self.consumer
                .fetch_watermarks(&self.topic, self.partition, t)
        })
        .map_err(|e| format!("cannot read the partition's offsets: {e}"))
    }

    /// Moves the reader to `offset`: the first time by assigning the
    /// partition, then by seeking (see the module's header). A seek made
    /// before the fetcher has started is made again.
    fn seek(&self, offset: i64) -> Result<(), String> {
        let at = || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(offset))
                .map(|()| tpl)
                .map_err(|e| e.to_string())
        };
        if !self.assigned.get() {
            self.consumer.assign(&at()?).map_err(|e| e.to_string())?;
            self.assigned.set(true);
            return Ok(());
        }
        let started = Instant::now();
        loop {
            let left = self.timeout.saturating_sub(started.elapsed());
            // The seek's own outcome is the partition's error in the list.
            let result = self
                .consumer
                .seek_partitions(at()?, left.min(LONGEST_SLICE).max(Duration::from_millis(1)))
                .and_then(
                    |tpl| match tpl.find_partition(&self.topic, self.partition) {
                        Some(e) => e.error(),
                        None => Ok(()),
                    },
                );
            if !retry_seek(&result) || left.is_zero() || self.stopped() {
                return result.map_err(|e| format!("cannot seek the warm-up reader: {e}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Calls `f` with each message from `from` on, until `f` returns false
    /// or no message arrives within `wait`, or a stop comes (then returns
    /// false).
    fn read_from(
        &self,
        from: i64,
        wait: Duration,
        mut f: impl FnMut(i64, &[u8]) -> bool,
    ) -> Result<bool, String> {
        self.seek(from)?;
        let mut waited = Instant::now();
        loop {
            if self.stopped() {
                return Ok(false);
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    waited = Instant::now();
                    if m.topic() != self.topic
                        || m.partition() != self.partition
                        || m.offset() < from
                    {
                        continue;
                    }
                    if !f(m.offset(), m.payload().unwrap_or(&[])) {
                        return Ok(true);
                    }
                }
                Some(Err(e)) => tracing::debug!("warm-up reader: {e}"),
                None if waited.elapsed() >= wait => return Ok(false),
                None => {}
            }
        }
    }

    /// The first message at or after `offset`, if it is before `resume`: its
    /// offset and its event-time range (none without events).
    fn first_at(&self, offset: i64, resume: i64) -> Result<Option<First>, String> {
        if self.stopped() {
            return Err("stopping".to_string());
        }
        let mut first = None;
        self.read_from(offset, PROBE_WAIT.min(self.timeout), |o, p| {
            if o < resume {
                first = Some((o, (self.times)(p)));
            }
            false
        })?;
        Ok(first)
    }

    /// The newest event time of the messages from `from` to `resume`, read in
    /// one pass; `None` when none came back with events.
    fn latest_before(&self, from: i64, resume: i64) -> Result<Option<i64>, String> {
        if self.stopped() {
            return Err("stopping".to_string());
        }
        let mut latest: Option<i64> = None;
        self.read_from(from, PROBE_WAIT.min(self.timeout), |o, p| {
            if o >= resume {
                return false;
            }
            if let Some((_, hi)) = (self.times)(p) {
                latest = Some(latest.map_or(hi, |l| l.max(hi)));
            }
            o + 1 < resume
        })?;
        Ok(latest)
    }

    /// The broker's guess of the first offset at or after `time_ns`.
    fn offset_for_time(&self, time_ns: i64) -> Option<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.topic,
            self.partition,
            Offset::Offset(time_ns.div_euclid(1_000_000)),
        )
        .ok()?;
        let found = bounded(self.timeout, &self.stop, |t| {
            self.consumer.offsets_for_times(tpl.clone(), t)
        })
        .ok()?;
        match found.find_partition(&self.topic, self.partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    /// Finds where to start and replays every message before `resume`
    /// through `replay`: one horizon before the event time reached at
    /// `resume`, or before `until` (ns) if that is earlier.
    pub fn warm_up(
        &self,
        resume: i64,
        horizon_ns: i64,
        until: Option<i64>,
        mut replay: impl FnMut(&[u8]),
    ) -> Result<Replay, String> {
        let mut out = Replay {
            from: resume,
            complete: true,
            ..Replay::default()
        };
        let (low, _high) = self.watermarks()?;
        if resume <= low {
            return Ok(out);
        }
        // The event time reached at the resume position: the newest event of
        // the last messages before it, read in one pass. None of them with
        // events, or none served (tansu inside a record batch): the whole
        // partition is replayed, from its first offset, which every broker
        // serves.
        out.probes += 1;
        let floor = low.max(resume - LATEST_WITHIN);
        let start = match self.latest_before(floor, resume)? {
            None => low,
            Some(latest) => {
                let target = until.map_or(latest, |u| u.min(latest)) - horizon_ns;
                let mut start = self
                    .offset_for_time(target)
                    .unwrap_or(low)
                    .clamp(low, resume - 1);
                let mut step = 1;
                // Early enough when the message at `start` itself (not a
                // later one a broker sent instead) has all its events at or
                // before the target.
                while start > low {
                    out.probes += 1;
                    match self.first_at(start, resume)? {
                        Some((o, Some((_, newest)))) if o == start && newest <= target => break,
                        _ => {}
                    }
                    start = (start - step).max(low);
                    step *= 2;
                }
                start
            }
        };
        out.from = start;
        out.complete = self.read_from(start, self.timeout, |offset, p| {
            if offset >= resume {
                return false;
            }
            replay(p);
            out.messages += 1;
            offset + 1 < resume
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed_out<T>() -> KafkaResult<T> {
        Err(KafkaError::OffsetFetch(RDKafkaErrorCode::OperationTimedOut))
    }

    #[test]
    fn a_request_that_times_out_is_made_again_in_growing_slices_until_the_timeout() {
        let mut waits = Vec::new();
        let r: KafkaResult<()> = bounded(Duration::from_millis(30), &AtomicBool::new(false), |t| {
            waits.push(t);
            std::thread::sleep(t.min(Duration::from_millis(5)));
            timed_out()
        });
        assert!(r.is_err());
        assert!(waits.len() > 1, "{waits:?}");
        assert!(
            waits.iter().all(|w| *w <= Duration::from_millis(30)),
            "{waits:?}"
        );
    }

    #[test]
    fn slices_double_up_to_the_longest() {
        let mut waits = Vec::new();
        let mut left = 6;
        let r = bounded(Duration::from_secs(3600), &AtomicBool::new(false), |t| {
            waits.push(t);
            left -= 1;
            if left == 0 {
                Ok(7)
            } else {
                timed_out()
            }
        });
        assert_eq!(r.unwrap(), 7);
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 2000, 2000]);
    }

    #[test]
    fn a_seek_is_made_again_only_while_the_fetcher_is_not_started() {
        let err = |c| Err(KafkaError::OffsetFetch(c));
        assert!(retry_seek(&err(RDKafkaErrorCode::State)));
        assert!(retry_seek(&err(RDKafkaErrorCode::PreviousInProgress)));
        assert!(!retry_seek(&err(RDKafkaErrorCode::UnknownPartition)));
        assert!(!retry_seek(&Ok(())));
        // seek_partitions' own failure carries librdkafka's name of it.
        assert!(retry_seek(&Err(KafkaError::Seek("_TIMED_OUT".into()))));
        assert!(!retry_seek(&Err(KafkaError::Seek("_INVALID_ARG".into()))));
    }

    #[test]
    fn another_error_is_returned_at_once() {
        let mut calls = 0;
        let r: KafkaResult<()> = bounded(Duration::from_secs(60), &AtomicBool::new(false), |_| {
            calls += 1;
            Err(KafkaError::OffsetFetch(RDKafkaErrorCode::UnknownPartition))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn no_request_is_made_once_stopped_nor_after_a_stop_comes() {
        let stop = AtomicBool::new(true);
        let mut calls = 0;
        let r: KafkaResult<()> = bounded(Duration::from_secs(60), &stop, |_| {
            calls += 1;
            timed_out()
        });
        assert!(matches!(r, Err(KafkaError::Canceled)));
        assert_eq!(calls, 0);
        let stop = AtomicBool::new(false);
        let r: KafkaResult<()> = bounded(Duration::from_secs(60), &stop, |_| {
            calls += 1;
            stop.store(true, Relaxed);
            timed_out()
        });
        assert!(matches!(r, Err(KafkaError::Canceled)));
        assert_eq!(calls, 1);
    }
}
