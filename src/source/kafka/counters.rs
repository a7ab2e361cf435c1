//! The Kafka source's counters and gauges, shared with the metrics
//! endpoint (`saker_kafka_*`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::sink::metrics::{counters, escape, head, MetricSource};

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
    /// Messages received again at an offset this process had already
    /// processed while it kept the partition (the consumer's fetch position
    /// went back); they are skipped, not processed again.
    pub redelivered: AtomicU64,
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    pub rebalances: AtomicU64,
    pub errors: AtomicU64,
    /// Matches forwarded to the repartition topic (before merging).
    pub forwarded: AtomicU64,
    /// Records sent to the repartition topic, their bytes, those the
    /// broker acknowledged and those it did not.
    pub forward_messages: AtomicU64,
    pub forward_bytes: AtomicU64,
    pub forward_acked: AtomicU64,
    pub forward_failures: AtomicU64,
    /// Records consumed from the repartition topic.
    pub repartition_messages: AtomicU64,
    /// Forwarded occurrences a stage partition had applied already (sent
    /// again after a crash), skipped.
    pub repartition_duplicates: AtomicU64,
    /// Repartition lag per assigned repartition partition.
    repartition_lag: Mutex<BTreeMap<i32, i64>>,
    /// Watermark (ns) of each stage partition held here.
    watermarks: Mutex<BTreeMap<i32, i64>>,
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

    pub(super) fn lag(&self) -> MutexGuard<'_, BTreeMap<(String, i32), i64>> {
        self.lag.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn repartition_lag(&self) -> MutexGuard<'_, BTreeMap<i32, i64>> {
        self.repartition_lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn watermarks(&self) -> MutexGuard<'_, BTreeMap<i32, i64>> {
        self.watermarks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl MetricSource for Counters {
    fn render(&self, o: &mut String) {
        counters(
            o,
            &[
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
                (
                    "saker_kafka_forwarded_matches_total",
                    "Matches of repartitioned windowed, sequence and first-seen rules forwarded to the repartition topic.",
                    &self.forwarded,
                ),
                (
                    "saker_kafka_forwarded_records_total",
                    "Records sent to the repartition topic.",
                    &self.forward_messages,
                ),
                (
                    "saker_kafka_forwarded_bytes_total",
                    "Bytes of the records sent to the repartition topic.",
                    &self.forward_bytes,
                ),
                (
                    "saker_kafka_forwarded_acknowledged_total",
                    "Records the broker acknowledged on the repartition topic.",
                    &self.forward_acked,
                ),
                (
                    "saker_kafka_forward_failures_total",
                    "Records the broker did not take on the repartition topic.",
                    &self.forward_failures,
                ),
                (
                    "saker_kafka_repartition_records_total",
                    "Records consumed from the repartition topic.",
                    &self.repartition_messages,
                ),
                (
                    "saker_kafka_repartition_duplicates_total",
                    "Forwarded matches sent again after a crash and skipped (already applied).",
                    &self.repartition_duplicates,
                ),
            ],
        );
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
        head(
            o,
            "saker_kafka_repartition_lag",
            "gauge",
            "Records behind the high watermark, per assigned partition of the repartition topic.",
        );
        for (p, lag) in self.repartition_lag().iter() {
            let _ = writeln!(o, "saker_kafka_repartition_lag{{partition=\"{p}\"}} {lag}");
        }
        head(
            o,
            "saker_kafka_repartition_watermark_seconds",
            "gauge",
            "Event-time watermark of each partition of the repartition topic held here (the lowest over the input partitions feeding it, minus the lateness).",
        );
        for (p, ns) in self.watermarks().iter() {
            let _ = writeln!(
                o,
                "saker_kafka_repartition_watermark_seconds{{partition=\"{p}\"}} {:.3}",
                *ns as f64 / 1e9
            );
        }
    }
}
