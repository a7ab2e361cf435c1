//! Numbers about the state directory, for the metrics listener.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::sink::metrics::{head, MetricSource};

/// Snapshots written, positions saved, restores refused.
#[derive(Debug, Default)]
pub struct StateMetrics {
    restore_failures: AtomicU64,
    snapshots: AtomicU64,
    snapshot_failures: AtomicU64,
    snapshot_bytes: AtomicU64,
    /// Of the last snapshot, in microseconds.
    snapshot_micros: AtomicU64,
    positions: AtomicU64,
    rules_restored: AtomicU64,
    rules_fresh: AtomicU64,
}

impl StateMetrics {
    pub fn restore_failed(&self) {
        self.restore_failures.fetch_add(1, Relaxed);
    }

    pub fn restore_failures(&self) -> u64 {
        self.restore_failures.load(Relaxed)
    }

    pub fn restored(&self, restored: usize, fresh: usize) {
        self.rules_restored.store(restored as u64, Relaxed);
        self.rules_fresh.store(fresh as u64, Relaxed);
    }

    pub fn snapshot_written(&self, bytes: u64, seconds: f64) {
        self.snapshots.fetch_add(1, Relaxed);
        self.snapshot_bytes.store(bytes, Relaxed);
        self.snapshot_micros.store((seconds * 1e6) as u64, Relaxed);
    }

    pub fn snapshot_failed(&self) {
        self.snapshot_failures.fetch_add(1, Relaxed);
    }

    pub fn position_saved(&self) {
        self.positions.fetch_add(1, Relaxed);
    }
}

impl MetricSource for StateMetrics {
    fn render(&self, o: &mut String) {
        let rows: [(&str, &str, &str, u64); 7] = [
            (
                "saker_state_restore_failures_total",
                "counter",
                "State files not trusted at start (corrupt, truncated or foreign) and set aside.",
                self.restore_failures.load(Relaxed),
            ),
            (
                "saker_state_snapshots_total",
                "counter",
                "Snapshots of the event-time state written to the state directory.",
                self.snapshots.load(Relaxed),
            ),
            (
                "saker_state_snapshot_failures_total",
                "counter",
                "Snapshots that could not be written.",
                self.snapshot_failures.load(Relaxed),
            ),
            (
                "saker_state_snapshot_bytes",
                "gauge",
                "Size of the last snapshot written.",
                self.snapshot_bytes.load(Relaxed),
            ),
            (
                "saker_state_positions_saved_total",
                "counter",
                "Flushed input positions saved to the state directory.",
                self.positions.load(Relaxed),
            ),
            (
                "saker_state_rules_restored",
                "gauge",
                "Rules whose state was restored at start.",
                self.rules_restored.load(Relaxed),
            ),
            (
                "saker_state_rules_fresh",
                "gauge",
                "Stateful rules that started fresh at start (new or changed).",
                self.rules_fresh.load(Relaxed),
            ),
        ];
        for (name, kind, help, v) in rows {
            head(o, name, kind, help);
            let _ = writeln!(o, "{name} {v}");
        }
        let name = "saker_state_snapshot_seconds";
        head(o, name, "gauge", "Time the last snapshot took to write.");
        let _ = writeln!(
            o,
            "{name} {}",
            self.snapshot_micros.load(Relaxed) as f64 / 1e6
        );
    }
}
