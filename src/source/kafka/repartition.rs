//! The sending half of repartitioning: the matches of forwarded windowed,
//! sequence and first-seen rules ([`crate::engine::forward`]) go to the repartition topic
//! (`<group>-saker-repartition`), to the partition their key hashes to
//! (SHA-256 of the key values; key-less rules to partition 0), in JSON
//! [`Record`]s, one per (input partition, repartition partition) and flush.
//!
//! Matches are merged while they wait (same rule, tick, key and value: one
//! entry with a count), so a rule that matches every event (the absence
//! rule) costs one entry per tick, not one per event; a first-seen rule's
//! matches of one tick and key merge too, keeping the earliest event's
//! alert. Every record carries
//! its input partition's mark (the highest tick it has reached); a stage
//! partition that got no match from an input partition still hears of its
//! progress, at most every [`MARK_EVERY`].
//!
//! The producer is idempotent, so records of one input partition reach a
//! stage partition in the order they were sent (its matches before its
//! mark). Input offsets are committed only after [`Forwarder::settle`]
//! saw every record sent so far acknowledged by the broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use ring::digest::{digest, SHA256};

use super::Counters;
use crate::engine::forward::{Outbox, Record, Seen, SeqMatch, SeqStep, RECORD_VERSION};
use crate::rules::RuleSet;
use crate::stateful::first_seen::Rendered;
use crate::window::Key;

/// How often buffered matches are sent while input flows.
pub const FORWARD_EVERY: Duration = Duration::from_millis(20);
/// How often a stage partition that gets no matches hears of an input
/// partition's progress.
pub const MARK_EVERY: Duration = Duration::from_millis(200);

/// The repartition topic of a consumer group.
pub fn topic_name(group: &str) -> String {
    format!("{group}-saker-repartition")
}

/// The repartition partition of a key: 0 for the empty key (key-less
/// rules), else the first 8 bytes of the SHA-256 of its values (each
/// ended by `\u{1f}`), modulo the partition count. The same in every
/// process and version.
pub fn partition_of(key: &[String], partitions: i32) -> i32 {
    if key.is_empty() || partitions <= 1 {
        return 0;
    }
    let mut text = String::new();
    for v in key {
        text.push_str(v);
        text.push('\u{1f}');
    }
    let d = digest(&SHA256, text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    (u64::from_be_bytes(first) % partitions as u64) as i32
}

/// Delivery reports of the forwarding producer.
#[derive(Default)]
pub struct Deliveries {
    counters: Arc<Counters>,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.counters.forward_acked.fetch_add(1, Relaxed);
            }
            Err((e, _)) => {
                if self.failed.fetch_add(1, Relaxed) < 5 {
                    tracing::warn!("kafka: a forwarded record was not delivered: {e}");
                }
                self.counters.forward_failures.fetch_add(1, Relaxed);
            }
        }
    }
}

type EntryKey = (String, i64, Key, Option<String>);
/// The input offsets of a merged match's occurrences.
type Offsets = Vec<i64>;
/// First-seen matches merge by rule, tick and key; the earliest event
/// (time, then input order) gives the time and the alert.
type SeenKey = (String, i64, Key);
type SeenFirst = (i64, Option<Rendered>, Offsets);

/// What one input partition has waiting for the stage partitions.
struct Waiting {
    /// Partitions of its topic.
    n: i32,
    res: i64,
    hi: Option<i64>,
    /// Per stage partition: merged matches, lowest tick since the last
    /// record, the mark last sent and when.
    entries: Vec<BTreeMap<EntryKey, Offsets>>,
    seqs: Vec<Vec<SeqMatch>>,
    seen: Vec<BTreeMap<SeenKey, SeenFirst>>,
    lo: Vec<Option<i64>>,
    sent_hi: Vec<Option<i64>>,
    sent_at: Vec<Option<Instant>>,
}

impl Waiting {
    fn new(n: i32, res: i64, partitions: usize) -> Self {
        Waiting {
            n,
            res,
            hi: None,
            entries: vec![BTreeMap::new(); partitions],
            seqs: vec![Vec::new(); partitions],
            seen: vec![BTreeMap::new(); partitions],
            lo: vec![None; partitions],
            sent_hi: vec![None; partitions],
            sent_at: vec![None; partitions],
        }
    }
}

/// Sends forwarded matches to the repartition topic.
pub struct Forwarder {
    producer: BaseProducer<Deliveries>,
    topic: String,
    partitions: i32,
    waiting: Mutex<HashMap<(String, i32), Waiting>>,
    counters: Arc<Counters>,
}

/// Librdkafka properties passed from `-X` to the repartition producer: how
/// to reach and authenticate to the brokers, and the producer's own
/// properties ([`producer_option`]); not the consumer's settings.
fn shared_option(key: &str) -> bool {
    producer_option(key) || connection_option(key)
}

/// librdkafka's producer-only properties that shape what is sent (batching,
/// compression, timeouts). Given with `-X`, they apply to the repartition
/// producer and are kept from the consumers, which would only log that they
/// ignore them. Not `acks` nor `retries` ([`IDEMPOTENCE_OWNED`]).
pub fn producer_option(key: &str) -> bool {
    [
        "linger.ms",
        "queue.buffering.max.ms",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "batch.num.messages",
        "batch.size",
        "compression.type",
        "compression.codec",
        "compression.level",
        "request.timeout.ms",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "sticky.partitioning.linger.ms",
    ]
    .contains(&key)
}

/// Producer properties the repartition producer's idempotence fixes
/// (librdkafka refuses it with other values): not passed to it, and not to
/// the consumers either, which would ignore them.
pub const IDEMPOTENCE_OWNED: [&str; 4] = [
    "acks",
    "request.required.acks",
    "retries",
    "message.send.max.retries",
];

fn connection_option(key: &str) -> bool {
    [
        "security.",
        "ssl.",
        "sasl.",
        "socket.",
        "broker.",
        "client.",
        "api.version",
    ]
    .iter()
    .any(|p| key.starts_with(p))
}

impl Forwarder {
    /// Creates the repartition topic with `partitions` partitions unless it
    /// exists (then its own partition count is used), and the producer.
    pub fn open(
        brokers: &str,
        options: &[(String, String)],
        topic: &str,
        partitions: i32,
        counters: Arc<Counters>,
    ) -> Result<Self, String> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("client.id", "saker-repartition")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        for (k, v) in options.iter().filter(|(k, _)| shared_option(k)) {
            config.set(k, v);
        }
        super::produce::create_topic(&config, topic, partitions)?;
        let producer: BaseProducer<Deliveries> = config
            .create_with_context(Deliveries {
                counters: counters.clone(),
                failed: AtomicU64::new(0),
            })
            .map_err(|e| format!("cannot create the repartition producer: {e}"))?;
        let found = partition_count(&producer, topic)?;
        if found != partitions {
            tracing::info!(
                topic,
                partitions = found,
                "kafka: the repartition topic exists with its own partition count; using it"
            );
        }
        Ok(Forwarder {
            producer,
            topic: topic.to_string(),
            partitions: found,
            waiting: Mutex::new(HashMap::new()),
            counters,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<(String, i32), Waiting>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes what the engine found in the batch at `offset` of input
    /// partition (`topic`, `p`), a topic of `n` partitions.
    pub fn add(&self, topic: &str, p: i32, n: i32, offset: i64, outbox: Outbox, rules: &RuleSet) {
        let res = outbox.res;
        let parts = self.partitions as usize;
        let mut all = self.waiting();
        let w = all
            .entry((topic.to_string(), p))
            .or_insert_with(|| Waiting::new(n, res, parts));
        w.n = n;
        w.res = res;
        if let Some(hi) = outbox.hi {
            w.hi = Some(w.hi.map_or(hi, |h| h.max(hi)));
        }
        if let Some(lo) = outbox.lo {
            for l in &mut w.lo {
                *l = Some(l.map_or(lo, |x| x.min(lo)));
            }
        }
        for e in outbox.entries {
            let r = partition_of(&e.key, self.partitions) as usize;
            let name = rules.rules[e.rule].name.clone();
            w.entries[r]
                .entry((name, e.tick, e.key, e.value))
                .or_default()
                .push(offset);
            self.counters.forwarded.fetch_add(1, Relaxed);
        }
        // A sequence hit goes, key by key, to the partition of each key
        // (steps with different keys never meet in one partial match).
        for (rule, time_ns, hit) in outbox.hits {
            let name = &rules.rules[rule].name;
            let last = hit.steps.last().map(|s| s.step);
            let mut by_key: Vec<(Key, Vec<SeqStep>, bool)> = Vec::new();
            for step in hit.steps {
                let is_last = Some(step.step) == last;
                let values = (step.step, step.key.to_vec(), step.values);
                match by_key.iter_mut().find(|(k, _, _)| *k == step.key) {
                    Some((_, steps, l)) => {
                        steps.push(values);
                        *l |= is_last;
                    }
                    None => by_key.push((step.key, vec![values], is_last)),
                }
            }
            for (key, steps, has_last) in by_key {
                let r = partition_of(&key, self.partitions) as usize;
                let plain = if has_last {
                    hit.plain.clone()
                } else {
                    Vec::new()
                };
                w.seqs[r].push((
                    name.clone(),
                    time_ns,
                    offset,
                    hit.audit_id.clone(),
                    steps,
                    plain,
                ));
                self.counters.forwarded.fetch_add(1, Relaxed);
            }
        }
        for Seen {
            rule,
            tick,
            time_ns,
            key,
            rendered,
        } in outbox.seen
        {
            let r = partition_of(&key, self.partitions) as usize;
            let name = rules.rules[rule].name.clone();
            let first = w.seen[r]
                .entry((name, tick, key))
                .or_insert_with(|| (time_ns, rendered.clone(), Vec::new()));
            if time_ns < first.0 {
                (first.0, first.1) = (time_ns, rendered);
            }
            first.2.push(offset);
            self.counters.forwarded.fetch_add(1, Relaxed);
        }
    }

    /// Sends what waits: every stage partition's matches, and marks that
    /// moved on (those without matches at most every [`MARK_EVERY`], or
    /// now with `marks`).
    pub fn flush(&self, marks: bool) -> Result<(), String> {
        let now = Instant::now();
        let mut all = self.waiting();
        for ((topic, p), w) in all.iter_mut() {
            let Some(hi) = w.hi else { continue };
            for r in 0..self.partitions as usize {
                let moved = w.sent_hi[r].is_none_or(|s| hi > s);
                let due =
                    marks || w.sent_at[r].is_none_or(|at| now.duration_since(at) >= MARK_EVERY);
                let empty = w.entries[r].is_empty() && w.seqs[r].is_empty() && w.seen[r].is_empty();
                if empty && !(moved && due) {
                    continue;
                }
                let entries = std::mem::take(&mut w.entries[r]);
                let seqs = std::mem::take(&mut w.seqs[r]);
                let seen = std::mem::take(&mut w.seen[r]);
                let base = entries
                    .values()
                    .chain(seen.values().map(|(_, _, o)| o))
                    .filter_map(|o| o.first().copied())
                    .min()
                    .unwrap_or(0);
                let record = Record {
                    v: RECORD_VERSION,
                    res: w.res,
                    t: topic.clone(),
                    p: *p,
                    n: w.n,
                    r: r as i32,
                    lo: w.lo[r].take().unwrap_or(hi).min(hi),
                    hi,
                    b: base,
                    e: entries
                        .into_iter()
                        .map(|((rule, tick, key, value), offsets)| {
                            let rel = offsets.iter().map(|o| o - base).collect();
                            (rule, tick, key.to_vec(), value, rel)
                        })
                        .collect(),
                    s: seqs,
                    f: seen
                        .into_iter()
                        .map(|((rule, _, key), (time_ns, rendered, offsets))| {
                            let rel = offsets.iter().map(|o| o - base).collect();
                            let rendered = rendered.as_ref().map(Seen::wire);
                            (rule, time_ns, key.to_vec(), rendered, rel)
                        })
                        .collect(),
                };
                let payload = serde_json::to_vec(&record)
                    .map_err(|e| format!("cannot encode a repartition record: {e}"))?;
                self.send(r as i32, &payload, hi.saturating_mul(w.res) / 1_000_000)?;
                w.sent_hi[r] = Some(hi);
                w.sent_at[r] = Some(now);
            }
        }
        drop(all);
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn send(&self, partition: i32, payload: &[u8], ms: i64) -> Result<(), String> {
        let mut record = BaseRecord::<(), [u8]>::to(&self.topic)
            .partition(partition)
            .payload(payload);
        if ms > 0 {
            record = record.timestamp(ms);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(format!("cannot forward a record: {e}")),
            }
        }
        self.counters.forward_messages.fetch_add(1, Relaxed);
        self.counters
            .forward_bytes
            .fetch_add(payload.len() as u64, Relaxed);
        Ok(())
    }

    /// Sends what waits and waits (up to `timeout`) until the broker has
    /// acknowledged every record sent: then the input offsets of what was
    /// forwarded may be committed. `Ok(false)`: not yet, try again later.
    /// An error: a record was lost, and the process must not commit.
    pub fn settle(&self, timeout: Duration) -> Result<bool, String> {
        self.flush(false)?;
        let flushed = self.producer.flush(timeout).is_ok();
        if self.producer.context().failed.load(Relaxed) > 0 {
            return Err(
                "a forwarded record was not delivered; exiting without committing, so that a restart forwards it again".into(),
            );
        }
        Ok(flushed)
    }

    /// Whether a record was lost.
    pub fn failed(&self) -> bool {
        self.producer.context().failed.load(Relaxed) > 0
    }
}

/// The partition count of `topic`, once the broker knows it.
fn partition_count(producer: &BaseProducer<Deliveries>, topic: &str) -> Result<i32, String> {
    let start = Instant::now();
    loop {
        let md = producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| format!("cannot read the metadata of {topic}: {e}"))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len() as i32);
        if n > 0 {
            return Ok(n);
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("topic {topic} has no partitions"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_gets_connection_and_producer_options_only() {
        for k in [
            "ssl.ca.location",
            "sasl.mechanism",
            "security.protocol",
            "batch.num.messages",
            "linger.ms",
            "compression.type",
        ] {
            assert!(shared_option(k), "{k}");
        }
        for k in [
            "group.id",
            "session.timeout.ms",
            "fetch.wait.max.ms",
            "auto.offset.reset",
            "enable.idempotence",
        ] {
            assert!(!shared_option(k), "{k}");
        }
        assert!(producer_option("batch.num.messages") && !producer_option("ssl.ca.location"));
    }

    #[test]
    fn keys_spread_over_partitions_and_key_less_rules_use_the_first() {
        assert_eq!(partition_of(&[], 8), 0);
        let k = |s: &str| vec![s.to_string()];
        let mut seen = std::collections::BTreeSet::new();
        for u in 0..64 {
            let p = partition_of(&k(&format!("user{u}")), 8);
            assert!((0..8).contains(&p));
            assert_eq!(p, partition_of(&k(&format!("user{u}")), 8), "stable");
            seen.insert(p);
        }
        assert_eq!(seen.len(), 8, "64 users reach every partition");
        // The values are kept apart: ("ab", "c") is not ("a", "bc").
        let ab_c = vec!["ab".to_string(), "c".to_string()];
        let a_bc = vec!["a".to_string(), "bc".to_string()];
        let differ = (2..40).any(|n| partition_of(&ab_c, n) != partition_of(&a_bc, n));
        assert!(differ);
        assert_eq!(topic_name("saker"), "saker-saker-repartition");
    }
}
