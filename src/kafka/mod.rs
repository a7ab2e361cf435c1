//! The Kafka deployment: a consumer in a consumer group feeding the engine.
//!
//! Windowed state is kept per partition: each assigned partition has its
//! own windows and its own event-time clock, swapped into the engine for
//! each of its messages. Keys are therefore partition-local, and a topic
//! must be keyed by the field the windowed rules group by (the user, for
//! the shipped rules) for every event of a key to meet in one window.
//!
//! Delivery is at-least-once. A message's offset is committed only after
//! its events were evaluated and the outputs flushed; commits happen every
//! `commit_interval`, when partitions are revoked, and at shutdown. When a
//! partition arrives (at start, after a restart, after a rebalance) its
//! windows are rebuilt by a warm-up replay ([`warmup`]) of the messages
//! before the resume position, without alerts.

pub mod payload;
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

use crate::engine::windows::Windows;
use crate::engine::Engine;
use crate::sink::metrics::{escape, head, MetricSource};
use crate::sink::AlertSink;

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

/// What the rebalance callback shares with the processing loop: the
/// outputs (flushed before any commit) and the next offset per partition.
struct Delivery {
    sink: Box<dyn AlertSink + Send>,
    /// Next offset to commit per (topic, partition): one past the last
    /// processed message.
    next: HashMap<String, HashMap<i32, i64>>,
    /// Whether anything was processed since the last commit.
    dirty: bool,
    /// Partitions revoked since the loop last looked.
    revoked: Vec<(String, i32)>,
    /// The last output error, returned by the loop.
    error: Option<io::Error>,
}

impl Delivery {
    fn positions(&self, only: Option<&TopicPartitionList>) -> TopicPartitionList {
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

    /// Flushes the outputs; then the positions may be committed.
    fn flush(&mut self) -> bool {
        match self.sink.flush() {
            Ok(()) => true,
            Err(e) => {
                self.error.get_or_insert(e);
                false
            }
        }
    }
}

struct Context {
    delivery: Arc<Mutex<Delivery>>,
    counters: Arc<Counters>,
}

fn lock(d: &Mutex<Delivery>) -> MutexGuard<'_, Delivery> {
    d.lock().unwrap_or_else(PoisonError::into_inner)
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
                // Hand over exactly what was processed: flush, commit, and
                // let the loop drop the partitions' windows.
                let mut d = lock(&self.delivery);
                if d.flush() {
                    let positions = d.positions(Some(tpl));
                    if positions.count() > 0 {
                        match consumer.commit(&positions, CommitMode::Sync) {
                            Ok(()) => self.counters.commits.fetch_add(1, Relaxed),
                            Err(e) => {
                                tracing::warn!("kafka: commit on revoke failed: {e}");
                                self.counters.commit_failures.fetch_add(1, Relaxed)
                            }
                        };
                    }
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

/// One assigned partition's state in the loop.
struct Partition {
    windows: Windows,
    last_message: Instant,
}

/// How long a poll waits before the loop looks at the clock.
const POLL: Duration = Duration::from_millis(100);
/// How long a partition must be quiet before its watermark follows the
/// wall clock.
const IDLE: Duration = Duration::from_secs(1);
/// How often buffered alerts are written out while messages keep coming.
const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// How many messages without events are logged before only counting.
const LOGGED_SKIPS: u64 = 5;

/// What the consumer did, for the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub messages: u64,
    pub bytes: u64,
}

/// Consumes until `stop` is set (SIGTERM, SIGINT), then finishes the
/// message in hand, flushes the outputs, commits and leaves the group.
pub fn run(
    settings: &Settings,
    engine: &mut Engine,
    sink: Box<dyn AlertSink + Send>,
    counters: Arc<Counters>,
    stop: &AtomicBool,
) -> io::Result<Summary> {
    let config = settings.consumer_config();
    let delivery = Arc::new(Mutex::new(Delivery {
        sink,
        next: HashMap::new(),
        dirty: false,
        revoked: Vec::new(),
        error: None,
    }));
    let context = Context {
        delivery: delivery.clone(),
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
    let mut parts: HashMap<String, HashMap<i32, Partition>> = HashMap::new();
    let mut last_commit = Instant::now();
    let mut last_flush = Instant::now();
    let mut last_tick = Instant::now();
    let horizon = engine.horizon_ns();
    let windowed = engine.windowed();
    while !stop.load(Relaxed) {
        // Nothing in hand: let alerts out before waiting for more.
        let mut polled = consumer.poll(Duration::ZERO);
        if polled.is_none() {
            flush(&delivery)?;
            last_flush = Instant::now();
            polled = consumer.poll(POLL);
        }
        {
            let mut d = lock(&delivery);
            if let Some(e) = d.error.take() {
                return Err(e);
            }
            for (topic, p) in d.revoked.drain(..) {
                if let Some(t) = parts.get_mut(&topic) {
                    t.remove(&p);
                }
            }
        }
        match polled {
            None => {}
            Some(Err(e)) => {
                counters.errors.fetch_add(1, Relaxed);
                tracing::warn!("kafka: {e}");
            }
            Some(Ok(m)) => {
                let (topic, p, offset) = (m.topic(), m.partition(), m.offset());
                let payload = m.payload().unwrap_or(&[]);
                let mut rebuilt = false;
                if !parts.contains_key(topic) {
                    parts.insert(topic.to_string(), HashMap::new());
                }
                let part = parts
                    .get_mut(topic)
                    .expect("inserted above")
                    .entry(p)
                    .or_insert_with(|| Partition {
                        windows: engine.new_windows(),
                        last_message: Instant::now(),
                    });
                // The offset expected next is the one to commit; another one
                // means the partition moved (rebalance, restart) and its
                // windows are rebuilt.
                let expected = lock(&delivery)
                    .next
                    .get(topic)
                    .and_then(|t| t.get(&p))
                    .copied();
                if expected != Some(offset) {
                    if let Some(n) = expected.filter(|&n| offset < n) {
                        counters.redelivered.fetch_add((n - offset) as u64, Relaxed);
                    }
                    part.windows = engine.new_windows();
                    rebuilt = windowed && offset > 0;
                    if rebuilt {
                        rebuild(
                            settings, &config, engine, part, topic, p, offset, horizon, &counters,
                        );
                    }
                }
                counters.messages.fetch_add(1, Relaxed);
                counters.bytes.fetch_add(payload.len() as u64, Relaxed);
                engine.swap_windows(&mut part.windows);
                let mut d = lock(&delivery);
                if rebuilt {
                    // Alertmanager forgets a firing alert nobody re-sends.
                    let n = engine.refresh_firing(d.sink.as_mut())?;
                    if n > 0 {
                        tracing::info!(
                            topic,
                            partition = p,
                            alerts = n,
                            "kafka: firing alerts re-sent after the warm-up"
                        );
                    }
                }
                let before = engine.stats.events;
                let result =
                    payload::for_each_document(payload, settings.max_document_bytes, |line| {
                        engine.process_line(line, d.sink.as_mut())
                    });
                engine.swap_windows(&mut part.windows);
                result?;
                if engine.stats.events == before {
                    let n = counters.messages_skipped.fetch_add(1, Relaxed) + 1;
                    if n <= LOGGED_SKIPS {
                        tracing::warn!(
                            topic,
                            partition = p,
                            offset,
                            "kafka: message holds no audit event; skipped"
                        );
                    }
                }
                // The topic's name is copied once, not per message.
                match d.next.get_mut(topic) {
                    Some(t) => {
                        t.insert(p, offset + 1);
                    }
                    None => {
                        d.next
                            .insert(topic.to_string(), HashMap::from([(p, offset + 1)]));
                    }
                }
                d.dirty = true;
                part.last_message = Instant::now();
            }
        }
        // A steady stream never leaves the loop idle: alerts still go out
        // within a few milliseconds of their event.
        if last_flush.elapsed() >= FLUSH_EVERY {
            flush(&delivery)?;
            last_flush = Instant::now();
        }
        if windowed && last_tick.elapsed() >= Duration::from_millis(250) {
            last_tick = Instant::now();
            let mut d = lock(&delivery);
            for part in parts.values_mut().flat_map(HashMap::values_mut) {
                let quiet = part.last_message.elapsed();
                if quiet >= IDLE {
                    engine.swap_windows(&mut part.windows);
                    let r = engine.idle(quiet.as_nanos() as u64, d.sink.as_mut());
                    engine.swap_windows(&mut part.windows);
                    r?;
                }
            }
            let keys = parts
                .values()
                .flat_map(HashMap::values)
                .map(|p| p.windows.keys())
                .sum();
            engine.publish_window_keys(keys);
        }
        if last_commit.elapsed() >= settings.commit_interval {
            last_commit = Instant::now();
            commit(&consumer, &delivery)?;
        }
    }
    tracing::info!("kafka: stopping: committing and leaving the group");
    commit(&consumer, &delivery)?;
    drop(consumer);
    let error = lock(&delivery).error.take();
    match error {
        Some(e) => Err(e),
        None => Ok(Summary {
            messages: counters.messages.load(Relaxed),
            bytes: counters.bytes.load(Relaxed),
        }),
    }
}

/// Writes buffered alerts out (offsets are not committed here).
fn flush(delivery: &Mutex<Delivery>) -> io::Result<()> {
    let mut d = lock(delivery);
    if d.flush() {
        Ok(())
    } else {
        Err(d.error.take().unwrap_or_else(|| io::Error::other("flush")))
    }
}

/// Flushes the outputs and commits every processed position.
fn commit(consumer: &BaseConsumer<Context>, delivery: &Mutex<Delivery>) -> io::Result<()> {
    let mut d = lock(delivery);
    if !d.dirty {
        return Ok(());
    }
    if !d.flush() {
        return Err(d.error.take().unwrap_or_else(|| io::Error::other("flush")));
    }
    let positions = d.positions(None);
    d.dirty = false;
    drop(d);
    if positions.count() == 0 {
        return Ok(());
    }
    // Synchronous: one round trip per interval, and its outcome is known.
    match consumer.commit(&positions, CommitMode::Sync) {
        Ok(()) => {
            consumer.context().counters.commits.fetch_add(1, Relaxed);
        }
        Err(e) => {
            tracing::warn!("kafka: commit failed: {e}");
            consumer
                .context()
                .counters
                .commit_failures
                .fetch_add(1, Relaxed);
            lock(delivery).dirty = true;
        }
    }
    Ok(())
}

/// Rebuilds a partition's windows from the messages before `resume`.
#[allow(clippy::too_many_arguments)]
fn rebuild(
    settings: &Settings,
    config: &ClientConfig,
    engine: &mut Engine,
    part: &mut Partition,
    topic: &str,
    p: i32,
    resume: i64,
    horizon: i64,
    counters: &Counters,
) {
    let started = Instant::now();
    let reader = match warmup::Reader::new(config, topic, p, settings.warmup_timeout) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(topic, partition = p, "kafka: {e}; windows start empty");
            counters.warmups_incomplete.fetch_add(1, Relaxed);
            return;
        }
    };
    engine.swap_windows(&mut part.windows);
    let result = reader.warm_up(resume, horizon, |payload| {
        let _ = payload::for_each_document(payload, settings.max_document_bytes, |line| {
            if let crate::source::lines::Line::Text(doc) = line {
                engine.warm_up(doc);
            }
            Ok::<(), ()>(())
        });
    });
    engine.swap_windows(&mut part.windows);
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
