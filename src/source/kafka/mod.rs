//! The Kafka source: a consumer in a consumer group, one stream per
//! assigned partition.
//!
//! Windowed state is kept per partition (the driver keeps each stream's
//! windows), so keys are partition-local, and a topic must be keyed by the
//! field the windowed rules group by (the user, for the shipped rules) for
//! every event of a key to meet in one window.
//!
//! Delivery is at-least-once. The driver acknowledges a message once its
//! alerts are out and the outputs flushed, and only acknowledged offsets
//! are committed: every `commit_interval`, when partitions are revoked, and
//! at shutdown. When a partition arrives (at start, after a restart, after
//! a rebalance) the source asks the driver to reset its stream, and its
//! windows are rebuilt by a warm-up replay ([`warmup`]) of the messages
//! before the resume position, without alerts.

pub mod produce;
pub mod warmup;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::{documents, Ack, Batch, Body, Next, Source, StreamId};
use crate::sink::metrics::{escape, head, MetricSource};

/// Settings of the Kafka source.
#[derive(Debug, Clone)]
pub struct Settings {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: String,
    /// `-X key=value` pairs, passed to librdkafka as given.
    pub options: Vec<(String, String)>,
    /// How often processed offsets are committed.
    pub commit_interval: Duration,
    /// Documents longer than this are skipped and counted.
    pub max_document_bytes: usize,
    /// How long a warm-up waits for the broker before giving up.
    pub warmup_timeout: Duration,
}

/// Options that would break at-least-once delivery if a user set them.
const OWNED_OPTIONS: [&str; 2] = ["enable.auto.commit", "enable.auto.offset.store"];

impl Settings {
    /// The group consumer's librdkafka configuration.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("client.id", "saker")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "1000")
            .set("enable.partition.eof", "false")
            .set_log_level(RDKafkaLogLevel::Warning);
        for (k, v) in &self.options {
            if OWNED_OPTIONS.contains(&k.as_str()) {
                tracing::warn!(
                    "-X {k}={v} ignored: Saker commits offsets itself, after alerts are out"
                );
                continue;
            }
            c.set(k, v);
        }
        c.set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        c
    }
}

/// Parses a `-X key=value` argument.
pub fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "`{s}` is not key=value (e.g. -X security.protocol=ssl)"
        )),
    }
}

/// Counters of the consumer, shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    /// Messages that held no audit event.
    pub messages_skipped: AtomicU64,
    pub warmups: AtomicU64,
    pub warmup_messages: AtomicU64,
    pub warmups_incomplete: AtomicU64,
    /// Messages received again at an offset already processed by this
    /// process (after a rebalance gave the partition back).
    pub redelivered: AtomicU64,
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    pub rebalances: AtomicU64,
    pub errors: AtomicU64,
    /// Consumer lag (high watermark − committed offset) per assigned
    /// partition, from librdkafka's statistics.
    lag: Mutex<BTreeMap<(String, i32), i64>>,
}

impl Counters {
    /// A one-line summary.
    pub fn describe(&self) -> String {
        format!(
            "{} messages ({} without events), {} warm-ups replaying {} messages ({} incomplete), {} commits ({} failed), {} rebalance events, {} redelivered, {} errors",
            self.messages.load(Relaxed),
            self.messages_skipped.load(Relaxed),
            self.warmups.load(Relaxed),
            self.warmup_messages.load(Relaxed),
            self.warmups_incomplete.load(Relaxed),
            self.commits.load(Relaxed),
            self.commit_failures.load(Relaxed),
            self.rebalances.load(Relaxed),
            self.redelivered.load(Relaxed),
            self.errors.load(Relaxed),
        )
    }

    fn lag(&self) -> MutexGuard<'_, BTreeMap<(String, i32), i64>> {
        self.lag.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MetricSource for Counters {
    fn render(&self, o: &mut String) {
        for (name, help, v) in [
            (
                "saker_kafka_messages_total",
                "Kafka messages consumed.",
                &self.messages,
            ),
            (
                "saker_kafka_bytes_total",
                "Bytes of Kafka messages consumed.",
                &self.bytes,
            ),
            (
                "saker_kafka_messages_skipped_total",
                "Kafka messages that held no audit event (skipped, their offsets committed).",
                &self.messages_skipped,
            ),
            (
                "saker_kafka_warmups_total",
                "Partitions whose windows were rebuilt by a warm-up replay.",
                &self.warmups,
            ),
            (
                "saker_kafka_warmup_messages_total",
                "Messages re-read by warm-up replays (no alerts emitted).",
                &self.warmup_messages,
            ),
            (
                "saker_kafka_warmups_incomplete_total",
                "Warm-up replays that timed out before the resume offset.",
                &self.warmups_incomplete,
            ),
            (
                "saker_kafka_redelivered_messages_total",
                "Messages received again after this process had processed them.",
                &self.redelivered,
            ),
            (
                "saker_kafka_commits_total",
                "Offset commits that succeeded.",
                &self.commits,
            ),
            (
                "saker_kafka_commit_failures_total",
                "Offset commits that failed.",
                &self.commit_failures,
            ),
            (
                "saker_kafka_rebalances_total",
                "Partition assignments and revocations.",
                &self.rebalances,
            ),
            (
                "saker_kafka_errors_total",
                "Consumer errors reported by librdkafka.",
                &self.errors,
            ),
        ] {
            head(o, name, "counter", help);
            let _ = writeln!(o, "{name} {}", v.load(Relaxed));
        }
        head(
            o,
            "saker_kafka_consumer_lag",
            "gauge",
            "Messages behind the high watermark, per assigned partition (from the committed offset).",
        );
        for ((topic, p), lag) in self.lag().iter() {
            let _ = writeln!(
                o,
                "saker_kafka_consumer_lag{{topic=\"{}\",partition=\"{p}\"}} {lag}",
                escape(topic)
            );
        }
    }
}

/// The offsets to commit, shared with the rebalance callback: one past the
/// last acknowledged message per partition.
#[derive(Default)]
struct Positions {
    next: HashMap<String, HashMap<i32, i64>>,
    /// Whether anything was acknowledged since the last commit.
    dirty: bool,
    /// Partitions revoked since the source last looked.
    revoked: Vec<(String, i32)>,
}

impl Positions {
    fn list(&self, only: Option<&TopicPartitionList>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (topic, parts) in &self.next {
            for (&p, &o) in parts {
                let wanted = only.is_none_or(|l| l.find_partition(topic, p).is_some());
                if wanted {
                    let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
                }
            }
        }
        tpl
    }
}

struct Context {
    positions: Arc<Mutex<Positions>>,
    counters: Arc<Counters>,
}

fn lock(p: &Mutex<Positions>) -> MutexGuard<'_, Positions> {
    p.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        let mut lag = self.counters.lag();
        lag.clear();
        for (name, topic) in &statistics.topics {
            for (&p, part) in &topic.partitions {
                // Assigned partitions whose high watermark is known; before
                // the first commit, lag counts from the log start.
                if p >= 0 && part.desired && part.hi_offset >= 0 {
                    let from = part.committed_offset.max(part.lo_offset).max(0);
                    lag.insert((name.clone(), p), (part.hi_offset - from).max(0));
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.counters.errors.fetch_add(1, Relaxed);
        tracing::warn!("kafka: {error}: {reason}");
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.counters.rebalances.fetch_add(1, Relaxed);
        match rebalance {
            Rebalance::Revoke(tpl) => {
                // Hand over exactly what was processed: the driver flushes
                // and acknowledges every message before it polls again, so
                // the acknowledged offsets are all there is.
                let mut d = lock(&self.positions);
                let positions = d.list(Some(tpl));
                if positions.count() > 0 {
                    match consumer.commit(&positions, CommitMode::Sync) {
                        Ok(()) => self.counters.commits.fetch_add(1, Relaxed),
                        Err(e) => {
                            tracing::warn!("kafka: commit on revoke failed: {e}");
                            self.counters.commit_failures.fetch_add(1, Relaxed)
                        }
                    };
                }
                for e in tpl.elements() {
                    if let Some(parts) = d.next.get_mut(e.topic()) {
                        parts.remove(&e.partition());
                    }
                    d.revoked.push((e.topic().to_string(), e.partition()));
                }
                tracing::info!(partitions = %describe(tpl), "kafka: partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %describe(tpl), "kafka: partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!("kafka: rebalance error: {e}"),
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    let v: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect();
    v.join(",")
}

/// How long a poll waits before the driver looks at the clock.
const POLL: Duration = Duration::from_millis(100);
/// How many messages without events are logged before only counting.
const LOGGED_SKIPS: u64 = 5;

/// A consumer in a group, as a [`Source`]: each message is a batch of its
/// partition's stream, acknowledged at its offset.
pub struct KafkaSource {
    settings: Settings,
    config: ClientConfig,
    consumer: BaseConsumer<Context>,
    positions: Arc<Mutex<Positions>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    /// (topic, partition) of each stream id handed out.
    streams: Vec<(String, i32)>,
    ids: HashMap<(String, i32), StreamId>,
    /// The payload of the message in hand.
    payload: Vec<u8>,
    /// A message held back while its partition's stream is reset.
    held: Option<(StreamId, i64)>,
    last_commit: Instant,
}

impl KafkaSource {
    /// Joins the group and subscribes. `stop` (set on SIGTERM, SIGINT) ends
    /// the stream after the message in hand.
    pub fn open(
        settings: &Settings,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Self> {
        let config = settings.consumer_config();
        let positions = Arc::new(Mutex::new(Positions::default()));
        let context = Context {
            positions: positions.clone(),
            counters: counters.clone(),
        };
        let consumer: BaseConsumer<Context> = config
            .create_with_context(context)
            .map_err(|e| io::Error::other(format!("cannot create the Kafka consumer: {e}")))?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| io::Error::other(format!("cannot subscribe to {topics:?}: {e}")))?;
        tracing::info!(
            brokers = %settings.brokers,
            group = %settings.group,
            topics = ?settings.topics,
            "kafka: consuming"
        );
        Ok(KafkaSource {
            settings: settings.clone(),
            config,
            consumer,
            positions,
            counters,
            stop,
            streams: Vec::new(),
            ids: HashMap::new(),
            payload: Vec::new(),
            held: None,
            last_commit: Instant::now(),
        })
    }

    fn stream_id(&mut self, topic: &str, p: i32) -> StreamId {
        if let Some(id) = self.ids.get(&(topic.to_string(), p)) {
            return *id;
        }
        let id = StreamId(self.streams.len() as u64);
        self.streams.push((topic.to_string(), p));
        self.ids.insert((topic.to_string(), p), id);
        id
    }

    fn batch(&self, stream: StreamId, offset: i64) -> Next<'_> {
        Next::Batch(Batch {
            stream,
            body: Body::Message(&self.payload),
            ack: Some(offset),
        })
    }

    /// Commits every acknowledged position.
    fn commit(&self) {
        let mut d = lock(&self.positions);
        if !d.dirty {
            return;
        }
        let positions = d.list(None);
        d.dirty = false;
        drop(d);
        if positions.count() == 0 {
            return;
        }
        // Synchronous: one round trip per interval, and its outcome is known.
        match self.consumer.commit(&positions, CommitMode::Sync) {
            Ok(()) => {
                self.counters.commits.fetch_add(1, Relaxed);
            }
            Err(e) => {
                tracing::warn!("kafka: commit failed: {e}");
                self.counters.commit_failures.fetch_add(1, Relaxed);
                lock(&self.positions).dirty = true;
            }
        }
    }
}

impl Source for KafkaSource {
    fn next(&mut self, before_wait: &mut dyn FnMut() -> io::Result<()>) -> io::Result<Next<'_>> {
        if let Some((stream, offset)) = self.held.take() {
            return Ok(self.batch(stream, offset));
        }
        let revoked = lock(&self.positions).revoked.pop();
        if let Some((topic, p)) = revoked {
            if let Some(id) = self.ids.remove(&(topic, p)) {
                return Ok(Next::Closed(id));
            }
        }
        if self.stop.load(Relaxed) {
            tracing::info!("kafka: stopping: committing and leaving the group");
            return Ok(Next::Stop);
        }
        if self.last_commit.elapsed() >= self.settings.commit_interval {
            self.last_commit = Instant::now();
            self.commit();
        }
        // Nothing in hand: let alerts out before waiting for more.
        let mut polled = self.consumer.poll(Duration::ZERO);
        if polled.is_none() {
            before_wait()?;
            polled = self.consumer.poll(POLL);
        }
        let (topic, p, offset) = match polled {
            None => return Ok(Next::Idle),
            Some(Err(e)) => {
                self.counters.errors.fetch_add(1, Relaxed);
                tracing::warn!("kafka: {e}");
                return Ok(Next::Idle);
            }
            Some(Ok(m)) => {
                let payload = m.payload().unwrap_or(&[]);
                self.counters.messages.fetch_add(1, Relaxed);
                self.counters.bytes.fetch_add(payload.len() as u64, Relaxed);
                self.payload.clear();
                self.payload.extend_from_slice(payload);
                (m.topic().to_string(), m.partition(), m.offset())
            }
        };
        let stream = self.stream_id(&topic, p);
        // The offset expected next is the one to commit; another one means
        // the partition moved (rebalance, restart) and its windows are
        // rebuilt before this message.
        let expected = lock(&self.positions)
            .next
            .get(&topic)
            .and_then(|t| t.get(&p))
            .copied();
        if expected != Some(offset) {
            if let Some(n) = expected.filter(|&n| offset < n) {
                self.counters
                    .redelivered
                    .fetch_add((n - offset) as u64, Relaxed);
            }
            // Until the message is acknowledged, a resume starts here.
            lock(&self.positions)
                .next
                .entry(topic)
                .or_default()
                .insert(p, offset);
            self.held = Some((stream, offset));
            return Ok(Next::Reset(stream));
        }
        Ok(self.batch(stream, offset))
    }

    fn ack(&mut self, ack: Ack) -> io::Result<()> {
        let Some((topic, p)) = self.streams.get(ack.stream.0 as usize) else {
            return Ok(());
        };
        if ack.events == 0 {
            let n = self.counters.messages_skipped.fetch_add(1, Relaxed) + 1;
            if n <= LOGGED_SKIPS {
                tracing::warn!(
                    topic,
                    partition = p,
                    offset = ack.position,
                    "kafka: message holds no audit event; skipped"
                );
            }
        }
        let mut d = lock(&self.positions);
        // A partition revoked meanwhile is no longer ours to commit.
        if let Some(next) = d.next.get_mut(topic).and_then(|t| t.get_mut(p)) {
            *next = ack.position + 1;
            d.dirty = true;
        }
        Ok(())
    }

    fn replay(
        &mut self,
        stream: StreamId,
        horizon_ns: i64,
        doc: &mut dyn FnMut(&[u8]),
    ) -> io::Result<()> {
        let Some((topic, p)) = self.streams.get(stream.0 as usize).cloned() else {
            return Ok(());
        };
        let Some((_, resume)) = self.held.filter(|(s, _)| *s == stream) else {
            return Ok(());
        };
        if resume > 0 {
            self.warm_up(&topic, p, resume, horizon_ns, doc);
        }
        Ok(())
    }

    fn live(&self) -> bool {
        true
    }

    fn bytes(&self) -> u64 {
        self.counters.bytes.load(Relaxed)
    }

    fn describe(&self) -> String {
        format!("kafka {}", self.settings.topics.join(","))
    }

    /// Commits what was acknowledged and leaves the group.
    fn close(&mut self) -> io::Result<()> {
        self.commit();
        Ok(())
    }
}

impl KafkaSource {
    /// Replays the messages of a partition before `resume` into `doc`.
    fn warm_up(&self, topic: &str, p: i32, resume: i64, horizon: i64, doc: &mut dyn FnMut(&[u8])) {
        let (settings, counters) = (&self.settings, &self.counters);
        let started = Instant::now();
        let reader = match warmup::Reader::new(&self.config, topic, p, settings.warmup_timeout) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(topic, partition = p, "kafka: {e}; windows start empty");
                counters.warmups_incomplete.fetch_add(1, Relaxed);
                return;
            }
        };
        let result = reader.warm_up(resume, horizon, |payload| {
            let _ = documents::for_each(payload, settings.max_document_bytes, |line| {
                if let crate::source::lines::Line::Text(text) = line {
                    doc(text);
                }
                Ok::<(), ()>(())
            });
        });
        match result {
            Ok(r) if r.probes == 0 => {} // nothing before the resume offset
            Ok(r) => {
                counters.warmups.fetch_add(1, Relaxed);
                counters.warmup_messages.fetch_add(r.messages, Relaxed);
                if !r.complete {
                    counters.warmups_incomplete.fetch_add(1, Relaxed);
                    tracing::warn!(topic, partition = p, "kafka: warm-up replay timed out before offset {resume}; some windows may start short");
                }
                tracing::info!(
                    topic,
                    partition = p,
                    from = r.from,
                    to = resume,
                    messages = r.messages,
                    probes = r.probes,
                    seconds = started.elapsed().as_secs_f64(),
                    "kafka: windows rebuilt by warm-up replay"
                );
            }
            Err(e) => {
                counters.warmups.fetch_add(1, Relaxed);
                counters.warmups_incomplete.fetch_add(1, Relaxed);
                tracing::warn!(
                    topic,
                    partition = p,
                    "kafka: warm-up failed: {e}; windows start empty"
                );
            }
        }
    }
}
