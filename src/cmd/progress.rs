//! The progress bar of a long replay, on stderr.

use std::time::{Duration, Instant};

/// A one-line progress display on stderr, redrawn at most every 200 ms.
pub struct ProgressBar {
    total: Option<u64>,
    enabled: bool,
    last: Instant,
    start: Instant,
}

impl ProgressBar {
    pub fn new(total: Option<u64>, enabled: bool) -> Self {
        let now = Instant::now();
        ProgressBar {
            total,
            enabled,
            last: now,
            start: now,
        }
    }

    pub fn update(&mut self, bytes: u64, events: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = events as f64 / secs;
        let line = match self.total {
            Some(total) if total > 0 => {
                let frac = (bytes as f64 / total as f64).min(1.0);
                let filled = (frac * 30.0) as usize;
                let eta = if frac > 0.0 { secs / frac - secs } else { 0.0 };
                format!(
                    "[{}{}] {:5.1}%  {} events  {:.0} ev/s  eta {:.0}s",
                    "#".repeat(filled),
                    " ".repeat(30 - filled),
                    frac * 100.0,
                    events,
                    rate,
                    eta
                )
            }
            _ => format!("{events} events  {rate:.0} ev/s"),
        };
        eprint!("\r{line}\x1b[K");
    }

    pub fn finish(&self) {
        if self.enabled {
            eprint!("\r\x1b[K");
        }
    }
}
