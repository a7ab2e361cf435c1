//! Rebuilding a partition's windows when it is assigned: the messages
//! before the resume position that can still affect a window are re-read
//! with a separate, group-less reader and replayed into the windows without
//! emitting alerts (a warm-up replay).
//!
//! The replay starts at the first message whose events are all at least
//! one horizon (longest window and `for`, plus lateness) older than the
//! last message already processed. The broker's time index gives a first
//! guess (exact when producers stamp messages with the event time, as
//! `saker produce` does); the guess is then checked against the events
//! themselves and moved back, doubling the step, until it is early enough,
//! so a broker whose timestamps mean something else only costs a longer
//! replay, never a shorter one.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
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

/// A consumer outside the group that reads one partition at any offset.
pub struct Reader {
    consumer: BaseConsumer,
    topic: String,
    partition: i32,
    timeout: Duration,
    /// The event-time range of a message: its audit events', or a
    /// repartition record's.
    times: fn(&[u8]) -> Option<(i64, i64)>,
}

impl Reader {
    /// `config` is the group consumer's configuration; group settings are
    /// replaced so that this reader never joins the group or commits.
    pub fn new(
        config: &ClientConfig,
        topic: &str,
        partition: i32,
        timeout: Duration,
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
        })
    }

    /// Reads messages whose event times `times` tells (a repartition
    /// topic's records).
    pub fn with_times(mut self, times: fn(&[u8]) -> Option<(i64, i64)>) -> Self {
        self.times = times;
        self
    }

    fn watermarks(&self) -> Result<(i64, i64), String> {
        self.consumer
            .fetch_watermarks(&self.topic, self.partition, self.timeout)
            .map_err(|e| format!("cannot read the partition's offsets: {e}"))
    }

    fn seek(&self, offset: i64) -> Result<(), String> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(offset))
            .map_err(|e| e.to_string())?;
        self.consumer.assign(&tpl).map_err(|e| e.to_string())
    }

    /// Calls `f` with each message from `from` on, until `f` returns false
    /// or no message arrives within the timeout (then returns false).
    fn read_from(&self, from: i64, mut f: impl FnMut(i64, &[u8]) -> bool) -> Result<bool, String> {
        self.seek(from)?;
        let mut waited = Instant::now();
        loop {
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
                None if waited.elapsed() >= self.timeout => return Ok(false),
                None => {}
            }
        }
    }

    /// The event-time range of the first message at or after `offset`.
    fn times_at(&self, offset: i64) -> Result<Option<(i64, i64)>, String> {
        let mut range = None;
        self.read_from(offset, |_, p| {
            range = (self.times)(p);
            false
        })?;
        Ok(range)
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
        let found = self.consumer.offsets_for_times(tpl, self.timeout).ok()?;
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
        // the last messages processed (skipping messages without events).
        let mut latest = None;
        let mut at = resume - 1;
        while latest.is_none() && at >= low && resume - at <= 64 {
            out.probes += 1;
            latest = self.times_at(at)?.map(|(_, hi)| hi);
            at -= 1;
        }
        let start = match latest {
            None => low.max(resume - 64),
            Some(latest) => {
                let target = until.map_or(latest, |u| u.min(latest)) - horizon_ns;
                let mut start = self
                    .offset_for_time(target)
                    .unwrap_or(low)
                    .clamp(low, resume - 1);
                let mut step = 1;
                // Early enough when the first message's events are all at or
                // before the target.
                while start > low {
                    out.probes += 1;
                    match self.times_at(start)? {
                        Some((earliest, _)) if earliest <= target => break,
                        _ => {}
                    }
                    start = (start - step).max(low);
                    step *= 2;
                }
                start
            }
        };
        out.from = start;
        out.complete = self.read_from(start, |offset, p| {
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
