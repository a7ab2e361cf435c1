//! The Kafka source: a consumer in a consumer group, one stream per
//! assigned partition.
//!
//! Windowed state is kept per partition (the driver keeps each stream's
//! windows). A windowed or first-seen rule whose `by` fields include the field the topic
//! is keyed by (`--kafka-partition-key`) is counted in the input
//! partition's windows; every other one is repartitioned
//! ([`repartition`]): its matches are forwarded to the group's
//! repartition topic, partitioned by the rule's key, which the same group
//! consumes as *stage* streams (their batches are [`Body::Forwarded`]).
//!
//! Delivery is at-least-once. The driver acknowledges a message once its
//! alerts are out and the outputs flushed, and only acknowledged offsets
//! are committed: every `commit_interval`, when partitions are revoked, and
//! at shutdown (periodic commits are asynchronous; a stop with the broker
//! gone is bounded). When a partition arrives (at start, after a restart,
//! after a rebalance) the source asks the driver to reset its stream, and
//! its windows are rebuilt by a warm-up replay ([`warmup`]) of the messages
//! before the resume position, without alerts. A stage partition is reset
//! on assignment, and its committed offset carries its watermark, which the
//! rebuilt windows start from.

mod counters;
pub mod produce;
pub mod repartition;
pub mod warmup;

pub use counters::Counters;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::{documents, Ack, Batch, BeforeWait, Body, Next, Source, StreamId};

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
    /// The field the input topics are keyed by, if known: stateful rules
    /// grouped by it are not repartitioned.
    pub partition_key: Option<String>,
    /// Partitions of the repartition topic when Saker creates it.
    pub repartition_partitions: i32,
    /// How long an input partition may stand still before a stage
    /// partition's watermark leaves it out.
    pub idle_timeout: Duration,
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
            if repartition::producer_option(k) {
                continue; // the repartition producer's
            }
            if repartition::IDEMPOTENCE_OWNED.contains(&k.as_str()) {
                tracing::warn!(
                    "-X {k}={v} ignored: the repartition producer is idempotent (acks=all, with retries), and the consumers do not produce"
                );
                continue;
            }
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

/// The offsets to commit, shared with the rebalance callback: one past the
/// last acknowledged message per partition.
#[derive(Default)]
struct Positions {
    next: HashMap<String, HashMap<i32, i64>>,
    /// One past the last message handed out per partition: the offset
    /// expected next. Ahead of `next` while batches are evaluated on worker
    /// threads (`--threads`).
    handed: HashMap<String, HashMap<i32, i64>>,
    /// The watermark (ns) of each stage partition when its position was
    /// acknowledged (its alerts up to there out), committed with it as the
    /// offset's metadata ([`WATERMARK_METADATA`]).
    watermarks: HashMap<(String, i32), i64>,
    /// Whether anything was acknowledged since the last commit.
    dirty: bool,
    /// Partitions revoked since the source last looked.
    revoked: Vec<(String, i32)>,
    /// Stage partitions assigned since the source last looked: rebuilt at
    /// once, not when their next record arrives (none may, for a while).
    assigned: Vec<(String, i32)>,
}

impl Positions {
    /// A partition resumes at `offset`: committed from there until a
    /// message is acknowledged, and expected there next.
    fn start(&mut self, topic: &str, p: i32, offset: i64) {
        self.next
            .entry(topic.to_string())
            .or_default()
            .insert(p, offset);
        self.handed
            .entry(topic.to_string())
            .or_default()
            .insert(p, offset);
    }

    /// A partition is no longer ours (revoked), or its position stands as
    /// committed (a warm-up cut short).
    fn forget(&mut self, topic: &str, p: i32) {
        for positions in [&mut self.next, &mut self.handed] {
            if let Some(parts) = positions.get_mut(topic) {
                parts.remove(&p);
            }
        }
    }

    fn list(&self, only: Option<&TopicPartitionList>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (topic, parts) in &self.next {
            for (&p, &o) in parts {
                let wanted = only.is_none_or(|l| l.find_partition(topic, p).is_some());
                if wanted {
                    let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
                    let w = self.watermarks.get(&(topic.clone(), p));
                    if let (Some(w), Some(mut e)) = (w, tpl.find_partition(topic, p)) {
                        e.set_metadata(format!("{WATERMARK_METADATA}{w}"));
                    }
                }
            }
        }
        tpl
    }
}

/// A polled message as its topic, partition and offset, its payload copied
/// into `payload` and counted (apart, for the repartition topic `stage`).
fn take_message(
    polled: Option<rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'_>>>,
    counters: &Counters,
    stage: Option<&str>,
    payload: &mut Vec<u8>,
) -> Option<rdkafka::error::KafkaResult<(String, i32, i64)>> {
    Some(polled?.map(|m| {
        let bytes = m.payload().unwrap_or(&[]);
        if stage == Some(m.topic()) {
            counters.repartition_messages.fetch_add(1, Relaxed);
        } else {
            counters.messages.fetch_add(1, Relaxed);
            counters.bytes.fetch_add(bytes.len() as u64, Relaxed);
        }
        payload.clear();
        payload.extend_from_slice(bytes);
        (m.topic().to_string(), m.partition(), m.offset())
    }))
}

/// How a stage partition's committed offset carries its watermark.
const WATERMARK_METADATA: &str = "saker-watermark-ns=";

/// The watermark in a committed offset's metadata, if Saker put one there.
fn parse_watermark(metadata: &str) -> Option<i64> {
    metadata.strip_prefix(WATERMARK_METADATA)?.parse().ok()
}

struct Context {
    /// Set on SIGTERM, SIGINT.
    stop: Arc<AtomicBool>,
    /// Asynchronous commits whose outcome has not been reported yet.
    pending_commits: AtomicU64,
    positions: Arc<Mutex<Positions>>,
    counters: Arc<Counters>,
    forwarder: Option<Arc<repartition::Forwarder>>,
    /// When the last assignment change (an assign or a revoke) was made.
    changed: Mutex<Option<Instant>>,
}

/// How long after an assignment change the next one is made, and the group
/// left. The bundled librdkafka (2.12) stops a removed partition's fetcher
/// asynchronously and, until that is done, still counts the fetcher as
/// started: a change that removes the partition again before then (an
/// assign that replaces an assignment, then the unassign of a stop, all
/// within milliseconds under load) asks for a second stop, and its reply
/// fails an assertion (`rktp->rktp_started`, rdkafka_assignment.c), which
/// aborts the process. Seen in CI on SIGTERM right after a rebalance;
/// librdkafka issue 5573, fixed after the release rdkafka 0.39 bundles.
/// A stop takes the fetcher milliseconds; a second is far more than that.
const CHANGE_SPACING: Duration = Duration::from_secs(1);

/// How long a commit waits for the broker to acknowledge forwarded records
/// (then it is postponed to the next interval).
const SETTLE: Duration = Duration::from_secs(5);
/// At a stop (SIGTERM, SIGINT), how long the last commit waits for the
/// forwarded records' acknowledgements, and then for the commit's own
/// outcome: with the broker gone, a stop is bounded (see [`LEAVE_WITHIN`]).
const SETTLE_ON_STOP: Duration = Duration::from_secs(2);
const CONFIRM_ON_STOP: Duration = Duration::from_secs(2);
/// How long leaving the group (librdkafka's consumer close, with the
/// revoke's commit) may take at exit. With the broker gone it would wait
/// for the group coordinator for up to the session timeout (45 s by
/// default); the group drops a member that left this way after its
/// session timeout.
pub const LEAVE_WITHIN: Duration = Duration::from_secs(4);

fn lock(p: &Mutex<Positions>) -> MutexGuard<'_, Positions> {
    p.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        let mut lag = self.counters.lag();
        let mut stage_lag = self.counters.repartition_lag();
        lag.clear();
        stage_lag.clear();
        let stage = self.forwarder.as_ref().map(|f| f.topic());
        for (name, topic) in &statistics.topics {
            for (&p, part) in &topic.partitions {
                // Assigned partitions whose high watermark is known; before
                // the first commit, lag counts from the log start.
                if p >= 0 && part.desired && part.hi_offset >= 0 {
                    let from = part.committed_offset.max(part.lo_offset).max(0);
                    let n = (part.hi_offset - from).max(0);
                    if Some(name.as_str()) == stage {
                        stage_lag.insert(p, n);
                    } else {
                        lag.insert((name.clone(), p), n);
                    }
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
    /// The outcome of an asynchronous commit (the periodic and the last
    /// ones): a failed one is made again at the next interval.
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        // A synchronous commit's (a revoke's) is counted where it is made.
        let outstanding = self
            .pending_commits
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        if outstanding.is_err() {
            return;
        }
        match result {
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

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.counters.rebalances.fetch_add(1, Relaxed);
        self.space_from_last_change();
        match rebalance {
            Rebalance::Revoke(tpl) => {
                // Hand over exactly what was processed: the driver
                // acknowledges every message it evaluated before the source
                // polls again, and drops those still out on worker threads
                // (`next` reports the revoke before anything else), which
                // the next owner reads again from the offsets committed here.
                let settle = if self.stop.load(Relaxed) {
                    SETTLE_ON_STOP
                } else {
                    SETTLE
                };
                let settled = match &self.forwarder {
                    None => Ok(true),
                    Some(f) => f.settle(settle),
                };
                let mut d = lock(&self.positions);
                let positions = d.list(Some(tpl));
                if !matches!(settled, Ok(true)) {
                    tracing::warn!("kafka: forwarded records not acknowledged; revoked partitions not committed ({settled:?})");
                } else if positions.count() > 0 {
                    match consumer.commit(&positions, CommitMode::Sync) {
                        Ok(()) => self.counters.commits.fetch_add(1, Relaxed),
                        Err(e) => {
                            tracing::warn!("kafka: commit on revoke failed: {e}");
                            self.counters.commit_failures.fetch_add(1, Relaxed)
                        }
                    };
                }
                for e in tpl.elements() {
                    d.forget(e.topic(), e.partition());
                    d.watermarks.remove(&(e.topic().to_string(), e.partition()));
                    // Not ours any more: not to be rebuilt (nor committed).
                    d.assigned
                        .retain(|(t, q)| !(t == e.topic() && *q == e.partition()));
                    d.revoked.push((e.topic().to_string(), e.partition()));
                }
                tracing::info!(partitions = %describe(tpl), "kafka: partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                if let Some(stage) = self.forwarder.as_ref().map(|f| f.topic()) {
                    let mut d = lock(&self.positions);
                    for e in tpl.elements_for_topic(stage) {
                        d.assigned.push((e.topic().to_string(), e.partition()));
                    }
                }
                tracing::info!(partitions = %describe(tpl), "kafka: partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!("kafka: rebalance error: {e}"),
        }
    }

    /// librdkafka has made the change (assign or unassign) by now.
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        *self.changed.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }
}

impl Context {
    /// Waits until [`CHANGE_SPACING`] has passed since the last assignment
    /// change, if one was made.
    fn space_from_last_change(&self) {
        let last = *self.changed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(left) = last.and_then(|t| CHANGE_SPACING.checked_sub(t.elapsed())) {
            std::thread::sleep(left);
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
    /// Repartitioning: the producer, and the partition count of each input
    /// topic.
    forwarder: Option<Arc<repartition::Forwarder>>,
    input_partitions: HashMap<String, i32>,
    last_forward: Instant,
    /// The offset of the last batch handed out (what `forward` is about).
    in_hand: i64,
    /// Stage streams warmed up, and the watermark committed with the
    /// position they resumed from.
    resumed: HashMap<StreamId, i64>,
    /// A stage partition rebuilt on assignment, from its committed offset.
    warming: Option<(StreamId, i64)>,
    /// A stop cut the last warm-up short (see [`Source::replay_cut`]).
    cut: bool,
    /// The partition whose already processed messages are being skipped.
    skipping: Option<(String, i32)>,
    /// A message polled in the poll that revoked partitions, handed out
    /// after their [`Next::Closed`] (its payload in `payload`).
    stashed: Option<(String, i32, i64)>,
}

impl KafkaSource {
    /// Joins the group and subscribes. `stop` (set on SIGTERM, SIGINT) ends
    /// the stream after the message in hand.
    /// With `forwarding` (the engine forwards some stateful rules), the
    /// group's repartition topic is created if needed and consumed too.
    pub fn open(
        settings: &Settings,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        forwarding: bool,
    ) -> io::Result<Self> {
        let config = settings.consumer_config();
        let positions = Arc::new(Mutex::new(Positions::default()));
        let forwarder = if forwarding {
            let f = repartition::Forwarder::open(
                &settings.brokers,
                &settings.options,
                &repartition::topic_name(&settings.group),
                settings.repartition_partitions,
                counters.clone(),
            )
            .map_err(io::Error::other)?;
            Some(Arc::new(f))
        } else {
            None
        };
        let context = Context {
            stop: stop.clone(),
            pending_commits: AtomicU64::new(0),
            changed: Mutex::new(None),
            positions: positions.clone(),
            counters: counters.clone(),
            forwarder: forwarder.clone(),
        };
        let consumer: BaseConsumer<Context> = config
            .create_with_context(context)
            .map_err(|e| io::Error::other(format!("cannot create the Kafka consumer: {e}")))?;
        let mut input_partitions = HashMap::new();
        if forwarding {
            for t in &settings.topics {
                input_partitions.insert(t.clone(), input_partition_count(&consumer, t)?);
            }
        }
        let mut topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        if let Some(f) = &forwarder {
            topics.push(f.topic());
            tracing::info!(
                topic = f.topic(),
                partitions = f.partitions(),
                "kafka: repartitioning stateful rules through the repartition topic"
            );
        }
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
            forwarder,
            input_partitions,
            last_forward: Instant::now(),
            in_hand: 0,
            resumed: HashMap::new(),
            warming: None,
            cut: false,
            skipping: None,
            stashed: None,
        })
    }

    fn is_stage(&self, topic: &str) -> bool {
        self.forwarder.as_ref().is_some_and(|f| f.topic() == topic)
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

    /// The next message, waiting at most `wait` ([`take_message`]).
    fn poll(&mut self, wait: Duration) -> Option<rdkafka::error::KafkaResult<(String, i32, i64)>> {
        let stage = self.forwarder.as_deref().map(|f| f.topic());
        let polled = self.consumer.poll(wait);
        take_message(polled, &self.counters, stage, &mut self.payload)
    }

    fn batch(&mut self, stream: StreamId, offset: i64) -> Next<'_> {
        self.in_hand = offset;
        if let Some((topic, p)) = self.streams.get(stream.0 as usize) {
            let mut d = lock(&self.positions);
            if let Some(next) = d.handed.get_mut(topic).and_then(|t| t.get_mut(p)) {
                *next = offset + 1;
            }
        }
        let stage = self
            .streams
            .get(stream.0 as usize)
            .is_some_and(|(t, _)| self.is_stage(t));
        Next::Batch(Batch {
            stream,
            body: if stage {
                Body::Forwarded(&self.payload)
            } else {
                Body::Message(&self.payload)
            },
            ack: Some(offset),
        })
    }

    /// Commits every acknowledged position, once what was forwarded is
    /// acknowledged by the broker (waiting up to `settle` for that).
    /// Returns whether nothing is left to commit.
    fn commit(&self, settle: Duration) -> io::Result<bool> {
        if !lock(&self.positions).dirty {
            return Ok(true);
        }
        if let Some(f) = &self.forwarder {
            if !f.settle(settle).map_err(io::Error::other)? {
                tracing::warn!("kafka: forwarded records not yet acknowledged; commit postponed");
                return Ok(false);
            }
        }
        let mut d = lock(&self.positions);
        if !d.dirty {
            return Ok(true);
        }
        let positions = d.list(None);
        d.dirty = false;
        drop(d);
        if positions.count() == 0 {
            return Ok(true);
        }
        // Asynchronous: a synchronous commit waits for the coordinator for
        // as long as it takes (forever, with the broker gone); the outcome
        // comes to `Context::commit_callback` on a later poll.
        let pending = &self.consumer.context().pending_commits;
        pending.fetch_add(1, Relaxed);
        match self.consumer.commit(&positions, CommitMode::Async) {
            Ok(()) => Ok(true),
            Err(e) => {
                pending.fetch_sub(1, Relaxed);
                tracing::warn!("kafka: commit failed: {e}");
                self.counters.commit_failures.fetch_add(1, Relaxed);
                lock(&self.positions).dirty = true;
                Ok(false)
            }
        }
    }

    /// Waits up to `limit` for the outcome of the commits made; whether
    /// they all succeeded.
    fn confirm_commits(&self, limit: Duration) -> bool {
        let started = Instant::now();
        let context = self.consumer.context();
        let failures = self.counters.commit_failures.load(Relaxed);
        while context.pending_commits.load(Relaxed) > 0 && started.elapsed() < limit {
            // Serves the commit callback; a message polled here is not
            // processed, so its offset is not committed either.
            let _ = self.consumer.poll(Duration::from_millis(50));
        }
        context.pending_commits.load(Relaxed) == 0
            && self.counters.commit_failures.load(Relaxed) == failures
    }
}

/// The partition count of an input topic (what a stage partition's
/// watermark waits for).
fn input_partition_count(consumer: &BaseConsumer<Context>, topic: &str) -> io::Result<i32> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(|e| io::Error::other(format!("cannot read the metadata of {topic}: {e}")))?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len() as i32)
        .filter(|n| *n > 0)
        .ok_or_else(|| io::Error::other(format!("topic {topic} has no partitions")))
}

impl Source for KafkaSource {
    fn next(&mut self, before_wait: &mut BeforeWait) -> io::Result<Next<'_>> {
        if let Some((stream, offset)) = self.held.take() {
            if !self.cut {
                return Ok(self.batch(stream, offset));
            }
            // Its windows are partial: the message waits for the next owner.
        }
        loop {
            let revoked = lock(&self.positions).revoked.pop();
            let Some((topic, p)) = revoked else { break };
            if self.is_stage(&topic) {
                self.counters.watermarks().remove(&p);
            }
            if let Some(id) = self.ids.remove(&(topic, p)) {
                return Ok(Next::Closed(id));
            }
        }
        // Looked at before any warm-up: each may wait on the broker, and a
        // rebalance can bring many partitions at once.
        if self.stop.load(Relaxed) {
            let not_rebuilt = std::mem::take(&mut lock(&self.positions).assigned);
            tracing::info!(
                not_rebuilt = not_rebuilt.len(),
                cut_short = self.cut,
                "kafka: stopping: committing and leaving the group (repartition partitions assigned but not rebuilt, and a warm-up a stop cut short, keep their committed positions)"
            );
            return Ok(Next::Stop);
        }
        let assigned = lock(&self.positions).assigned.pop();
        if let Some((topic, p)) = assigned {
            if let Some(stream) = self.warm_on_assignment(topic, p) {
                return Ok(Next::Reset(stream));
            }
        }
        if self.last_commit.elapsed() >= self.settings.commit_interval {
            self.last_commit = Instant::now();
            self.commit(SETTLE)?;
        }
        if let Some(f) = &self.forwarder {
            if f.failed() {
                return Err(io::Error::other(
                    "a forwarded record was not delivered; exiting without committing, so that a restart forwards it again",
                ));
            }
            if self.last_forward.elapsed() >= repartition::FORWARD_EVERY {
                self.last_forward = Instant::now();
                f.flush(false).map_err(io::Error::other)?;
            }
        }
        let polled = match self.stashed.take() {
            Some(m) => Some(Ok(m)),
            None => self.poll(Duration::ZERO),
        };
        if !lock(&self.positions).revoked.is_empty() {
            // That poll revoked partitions while batches of them may still
            // be out on worker threads: the driver hears of it first, and
            // drops them (see `pre_rebalance`). (rdkafka returns no message
            // from a poll that ran a rebalance; one would wait here all the
            // same.)
            if let Some(Ok(m)) = polled {
                self.stashed = Some(m);
            }
            return self.next(before_wait);
        }
        let polled = match polled {
            Some(m) => Some(m),
            None => {
                // Nothing in hand: let alerts out before waiting.
                if let Some(f) = &self.forwarder {
                    f.flush(false).map_err(io::Error::other)?;
                }
                for ack in before_wait()? {
                    self.ack(ack)?;
                }
                self.poll(POLL)
            }
        };
        let (topic, p, offset) = match polled {
            None => return Ok(Next::Idle),
            Some(Err(e)) => {
                self.counters.errors.fetch_add(1, Relaxed);
                tracing::warn!("kafka: {e}");
                return Ok(Next::Idle);
            }
            Some(Ok(m)) => m,
        };
        let stream = self.stream_id(&topic, p);
        // The offset expected next is the one after the last handed out;
        // another one means the partition moved (rebalance, restart) and its
        // windows are rebuilt before this message.
        let expected = lock(&self.positions)
            .handed
            .get(&topic)
            .and_then(|t| t.get(&p))
            .copied();
        if let Some(n) = expected.filter(|&n| offset < n) {
            // The partition stayed ours (a revoke forgets its position) and
            // every message before `n` is processed and acknowledged here or
            // before the position it was assigned at: the consumer's fetch
            // position went back (librdkafka, seen on tansu, restarts a
            // partition's fetch from its committed offset now and then).
            // Processing it again would only repeat its alerts.
            self.counters.redelivered.fetch_add(1, Relaxed);
            if self.skipping.as_ref() != Some(&(topic.clone(), p)) {
                tracing::info!(
                    topic,
                    partition = p,
                    offset,
                    processed_up_to = n,
                    "kafka: messages already processed delivered again; skipped"
                );
                self.skipping = Some((topic, p));
            }
            return Ok(Next::Idle);
        }
        if self
            .skipping
            .as_ref()
            .is_some_and(|(t, q)| *t == topic && *q == p)
        {
            self.skipping = None;
        }
        if expected != Some(offset) {
            // Until the message is acknowledged, a resume starts here.
            lock(&self.positions).start(&topic, p, offset);
            self.held = Some((stream, offset));
            return Ok(Next::Reset(stream));
        }
        Ok(self.batch(stream, offset))
    }

    fn ack(&mut self, ack: Ack) -> io::Result<()> {
        let Some((topic, p)) = self.streams.get(ack.stream.0 as usize) else {
            return Ok(());
        };
        if ack.events == 0 && !self.is_stage(topic) {
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
        // The outputs were flushed before this acknowledgement: the
        // alerts up to the stage's last reported watermark are out.
        let watermark = if self.is_stage(topic) {
            self.counters.watermarks().get(p).copied()
        } else {
            None
        };
        let mut d = lock(&self.positions);
        // A partition revoked meanwhile is no longer ours to commit.
        if let Some(next) = d.next.get_mut(topic).and_then(|t| t.get_mut(p)) {
            *next = (*next).max(ack.position + 1);
            d.dirty = true;
            if let Some(w) = watermark {
                d.watermarks.insert((topic.clone(), *p), w);
            }
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
        let held = self.held.filter(|(s, _)| *s == stream);
        let Some((_, resume)) = held.or_else(|| self.warming.take().filter(|(s, _)| *s == stream))
        else {
            return Ok(());
        };
        if resume > 0 {
            let committed = if self.is_stage(&topic) {
                self.committed_watermark(&topic, p)
            } else {
                None
            };
            if let Some(w) = committed {
                self.resumed.insert(stream, w);
                // Committed again with the offset until a record moves it.
                lock(&self.positions)
                    .watermarks
                    .insert((topic.clone(), p), w);
            }
            if self.warm_up(&topic, p, resume, horizon_ns, committed, doc) {
                // Nothing of it is committed: its windows are partial, and
                // what its next owner resumes from is what was committed.
                self.cut = true;
                self.resumed.remove(&stream);
                let mut d = lock(&self.positions);
                d.forget(&topic, p);
                d.watermarks.remove(&(topic.clone(), p));
                tracing::info!(
                    topic,
                    partition = p,
                    "kafka: stopping: warm-up replay cut short; the partition's committed position stands"
                );
            }
        }
        Ok(())
    }

    fn replay_cut(&self) -> bool {
        self.cut
    }

    fn resumed_watermark(&mut self, stream: StreamId) -> Option<i64> {
        self.resumed.remove(&stream)
    }

    fn stage(&self, stream: StreamId) -> bool {
        self.streams
            .get(stream.0 as usize)
            .is_some_and(|(t, _)| self.is_stage(t))
    }

    fn forward(
        &mut self,
        stream: StreamId,
        outbox: crate::engine::forward::Outbox,
        rules: &crate::rules::RuleSet,
    ) -> io::Result<()> {
        let (Some(f), Some((topic, p))) = (&self.forwarder, self.streams.get(stream.0 as usize))
        else {
            return Ok(());
        };
        let n = self.input_partitions.get(topic).copied().unwrap_or(1);
        f.add(topic, *p, n, self.in_hand, outbox, rules);
        Ok(())
    }

    fn progress(&mut self, stream: StreamId, progress: crate::engine::forward::Progress) {
        self.counters
            .repartition_duplicates
            .fetch_add(progress.duplicates, Relaxed);
        if let (Some((_, p)), Some(ns)) =
            (self.streams.get(stream.0 as usize), progress.watermark_ns)
        {
            self.counters.watermarks().insert(*p, ns);
        }
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
        if let Some(f) = &self.forwarder {
            f.flush(true).map_err(io::Error::other)?;
            // The outputs are flushed: every stage partition's alerts are
            // out up to its last watermark, the wall clock's moves included.
            let latest: Vec<(i32, i64)> = self
                .counters
                .watermarks()
                .iter()
                .map(|(p, w)| (*p, *w))
                .collect();
            let mut d = lock(&self.positions);
            for (p, w) in latest {
                let key = (f.topic().to_string(), p);
                let held = d.next.get(&key.0).is_some_and(|t| t.contains_key(&p));
                if held && d.watermarks.get(&key) != Some(&w) {
                    d.watermarks.insert(key, w);
                    d.dirty = true;
                }
            }
        }
        if !self.commit(SETTLE_ON_STOP)? || !self.confirm_commits(CONFIRM_ON_STOP) {
            tracing::warn!(
                "kafka: broker unreachable: the last positions are not committed; a restart re-reads from the last commit"
            );
        }
        // Leaving the group unassigns everything (see CHANGE_SPACING).
        self.consumer.context().space_from_last_change();
        Ok(())
    }
}

impl KafkaSource {
    /// The committed offset of a partition, and the watermark committed
    /// with it (a stage partition's), if any.
    fn committed(&self, topic: &str, p: i32) -> Option<(i64, Option<i64>)> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, p);
        let committed = match warmup::bounded(self.settings.warmup_timeout, &self.stop, |t| {
            self.consumer.committed_offsets(tpl.clone(), t)
        }) {
            Ok(c) => c,
            Err(_) if self.stop.load(Relaxed) => return None, // stopping
            Err(e) => {
                tracing::warn!(
                    topic,
                    partition = p,
                    "kafka: cannot read the committed offset: {e}"
                );
                return None;
            }
        };
        let e = committed.find_partition(topic, p)?;
        let Offset::Offset(offset) = e.offset() else {
            return None;
        };
        let w = parse_watermark(e.metadata());
        tracing::debug!(topic, partition = p, offset, watermark_ns = ?w, "kafka: committed position");
        Some((offset, w))
    }

    fn committed_watermark(&self, topic: &str, p: i32) -> Option<i64> {
        self.committed(topic, p)?.1
    }

    /// A stage partition just assigned, with a committed offset: its stream
    /// is reset (its windows rebuilt) now. Its windows may hold alerts that
    /// only the wall clock brings out (resolves, the absence rule when the
    /// stream is silent), and no record may come to trigger a rebuild.
    fn warm_on_assignment(&mut self, topic: String, p: i32) -> Option<StreamId> {
        if self.ids.contains_key(&(topic.clone(), p)) {
            return None; // a record of it came first and reset it
        }
        let (resume, _) = self.committed(&topic, p).filter(|(o, _)| *o > 0)?;
        let stream = self.stream_id(&topic, p);
        lock(&self.positions).start(&topic, p, resume);
        self.warming = Some((stream, resume));
        Some(stream)
    }

    /// Replays the messages of a partition before `resume` into `doc`,
    /// from one horizon before the event time reached there, or before
    /// `watermark` (ns) if that is earlier: a stage partition's windows
    /// hold what its watermark had not passed yet. Returns whether a stop
    /// cut it short.
    fn warm_up(
        &self,
        topic: &str,
        p: i32,
        resume: i64,
        horizon: i64,
        watermark: Option<i64>,
        doc: &mut dyn FnMut(&[u8]),
    ) -> bool {
        let (settings, counters) = (&self.settings, &self.counters);
        let started = Instant::now();
        let stage = self.is_stage(topic);
        let timeout = settings.warmup_timeout;
        let reader = match warmup::Reader::new(&self.config, topic, p, timeout, self.stop.clone()) {
            Ok(r) if stage => r.with_times(crate::engine::forward::Record::time_range),
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(topic, partition = p, "kafka: {e}; windows start empty");
                counters.warmups_incomplete.fetch_add(1, Relaxed);
                return self.stop.load(Relaxed);
            }
        };
        let result = reader.warm_up(resume, horizon, watermark, |payload| {
            if stage {
                return doc(payload);
            }
            let _ = documents::for_each(payload, settings.max_document_bytes, |line| {
                if let crate::source::lines::Line::Text(text) = line {
                    doc(text);
                }
                Ok::<(), ()>(())
            });
        });
        if reader.stopped() && !result.as_ref().is_ok_and(|r| r.complete) {
            return true;
        }
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
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_options_are_kept_from_the_consumer() {
        let settings = Settings {
            brokers: "127.0.0.1:9092".into(),
            topics: vec!["audit".into()],
            group: "g".into(),
            options: [
                ("batch.num.messages", "1"),
                ("fetch.wait.max.ms", "10"),
                ("acks", "1"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec(),
            commit_interval: Duration::from_secs(1),
            max_document_bytes: 1 << 20,
            warmup_timeout: Duration::from_secs(30),
            partition_key: None,
            repartition_partitions: 8,
            idle_timeout: Duration::from_secs(60),
        };
        let c = settings.consumer_config();
        assert_eq!(c.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(c.get("batch.num.messages"), None);
        assert_eq!(c.get("acks"), None);
    }
}
