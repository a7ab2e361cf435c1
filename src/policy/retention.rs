//! How long the API server really keeps its audit log files, at the volume a
//! simulated policy keeps. The API server writes `--audit-log-path` through
//! lumberjack: it rotates the file when the next write would pass
//! `--audit-log-maxsize` megabytes (MiB, 1024 × 1024 bytes; 0 means
//! lumberjack's default of 100), and after each rotation deletes backups
//! beyond the newest `--audit-log-maxbackup` (0: keep every backup) and
//! backups rotated more than `--audit-log-maxage` days ago (0: no age
//! limit). `--audit-log-compress` gzips the backups: that saves disk, but
//! rotation and counting go by files of uncompressed size, so it does not
//! change how many days are kept.

use super::simulate::Simulation;

/// Bytes in lumberjack's megabyte.
pub const MIB: u64 = 1024 * 1024;
/// lumberjack's file size when `MaxSize` is 0.
pub const DEFAULT_MAXSIZE_MB: u64 = 100;
/// gzip (level 6, as Go's `gzip.NewWriter`) output over input on audit
/// JSON lines: measured on `examples/audit-sample.jsonl` (0.145; the test
/// `gzip_ratio_matches_the_bundled_sample` measures it again).
pub const GZIP_RATIO: f64 = 0.145;
const DAY_SECONDS: f64 = 86_400.0;

/// The API server's `--audit-log-*` rotation flags, as it spells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogFlags {
    /// `--audit-log-maxage`, days; 0 is no age limit.
    pub maxage: u64,
    /// `--audit-log-maxbackup`; 0 keeps every backup.
    pub maxbackup: u64,
    /// `--audit-log-maxsize`, MiB; 0 is lumberjack's default of 100.
    pub maxsize: u64,
    /// `--audit-log-compress`.
    pub compress: bool,
}

impl LogFlags {
    /// The size at which the file is rotated, in MiB.
    pub fn effective_maxsize(&self) -> u64 {
        if self.maxsize == 0 {
            DEFAULT_MAXSIZE_MB
        } else {
            self.maxsize
        }
    }

    fn file_bytes(&self) -> f64 {
        self.effective_maxsize() as f64 * MIB as f64
    }
}

/// Which flag deletes the oldest logs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    Maxage,
    Maxbackup,
}

impl Limit {
    pub fn flag(self) -> &'static str {
        match self {
            Limit::Maxage => "--audit-log-maxage",
            Limit::Maxbackup => "--audit-log-maxbackup",
        }
    }
}

/// The estimate; `None` where a value does not exist (no limit at all, or
/// no time span to scale the volume from). Days are rounded to 0.0001.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Retention {
    pub maxage: u64,
    pub maxbackup: u64,
    /// The effective `--audit-log-maxsize` (100 when given as 0).
    pub maxsize_mb: u64,
    pub compress: bool,
    /// Seconds between the first and the last recorded event.
    pub span_seconds: f64,
    /// Bytes the policy keeps (event lines with their newline), scaled
    /// from the span to a day; `None` when the events span no time.
    pub bytes_per_day: Option<u64>,
    /// Days one file of `maxsize` holds.
    pub days_per_file: Option<f64>,
    /// Days of logs always on disk: right after a rotation, when the
    /// current file is empty. `None`: nothing is ever deleted.
    pub retained_days: Option<f64>,
    pub limited_by: Option<Limit>,
    /// The smallest `--audit-log-maxbackup` that keeps `maxage` days at
    /// this `maxsize`.
    pub suggested_maxbackup: Option<u64>,
    /// The smallest `--audit-log-maxsize` that keeps `maxage` days with
    /// this `maxbackup`.
    pub suggested_maxsize_mb: Option<u64>,
    /// Disk used at most: the current file plus the backups kept (gzip'd
    /// at [`GZIP_RATIO`] when compressed). `None` when unbounded.
    pub disk_bytes: Option<u64>,
    /// The ratio used for compressed backups.
    pub gzip_ratio: Option<f64>,
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Days for people: hours or minutes below a day.
fn days(d: f64) -> String {
    if d >= 1.0 {
        format!("{d:.1} days")
    } else if d * 24.0 >= 1.0 {
        format!("{:.1} hours", d * 24.0)
    } else {
        format!("{:.1} minutes", d * 1440.0)
    }
}

/// Estimates retention from a simulation's kept volume and time span.
pub fn estimate(sim: &Simulation, flags: &LogFlags) -> Retention {
    let span = sim.span_seconds();
    let kept = (sim.total.kept_bytes + sim.total.kept) as f64;
    let per_day = (span > 0.0).then(|| kept * DAY_SECONDS / span);
    let file = flags.file_bytes();
    let maxage = flags.maxage as f64;
    // Days the backups hold, when their count limits at all.
    let by_count = match per_day {
        Some(v) if flags.maxbackup > 0 && v > 0.0 => Some(flags.maxbackup as f64 * file / v),
        _ => None,
    };
    // Without a volume, the count limit is unknown unless there is none.
    let count_unknown = per_day.is_none() && flags.maxbackup > 0;
    let limit = match (flags.maxage > 0, by_count) {
        _ if count_unknown => None,
        (true, Some(c)) if c < maxage => Some((c, Limit::Maxbackup)),
        (true, _) => Some((maxage, Limit::Maxage)),
        (false, Some(c)) => Some((c, Limit::Maxbackup)),
        (false, None) => None,
    };
    let positive = per_day.filter(|v| *v > 0.0);
    let suggested_maxbackup = positive
        .filter(|_| flags.maxage > 0)
        .map(|v| (maxage * v / file).ceil() as u64);
    let suggested_maxsize_mb = positive
        .filter(|_| flags.maxage > 0 && flags.maxbackup > 0)
        .map(|v| (maxage * v / flags.maxbackup as f64 / MIB as f64).ceil() as u64);
    let ratio = if flags.compress { GZIP_RATIO } else { 1.0 };
    let disk_bytes = limit.and_then(|(_, by)| {
        let backups = match by {
            Limit::Maxbackup => flags.maxbackup as f64,
            Limit::Maxage => {
                let needed = per_day.map(|v| (maxage * v / file).ceil())?;
                if flags.maxbackup > 0 {
                    needed.min(flags.maxbackup as f64)
                } else {
                    needed
                }
            }
        };
        Some((file + backups * file * ratio) as u64)
    });
    Retention {
        maxage: flags.maxage,
        maxbackup: flags.maxbackup,
        maxsize_mb: flags.effective_maxsize(),
        compress: flags.compress,
        span_seconds: (span * 1000.0).round() / 1000.0,
        bytes_per_day: per_day.map(|v| v.round() as u64),
        days_per_file: positive.map(|v| round4(file / v)),
        retained_days: limit.map(|(d, _)| round4(d)),
        limited_by: limit.map(|(_, by)| by),
        suggested_maxbackup,
        suggested_maxsize_mb,
        disk_bytes,
        gzip_ratio: flags.compress.then_some(GZIP_RATIO),
    }
}

fn size(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else {
        format!("{:.2} MB", b / 1e6)
    }
}

/// The human report, a paragraph after the simulation's.
pub fn render(r: &Retention) -> String {
    let mut s = format!(
        "\nretention with --audit-log-maxage={} --audit-log-maxbackup={} --audit-log-maxsize={} --audit-log-compress={}:\n",
        r.maxage, r.maxbackup, r.maxsize_mb, r.compress
    );
    match r.bytes_per_day {
        Some(v) => s.push_str(&format!(
            "  the policy keeps {} a day (scaled from {} s of events)\n",
            size(v as f64),
            r.span_seconds
        )),
        None => s.push_str("  the events span no time: the daily volume is unknown\n"),
    }
    if let Some(d) = r.days_per_file {
        s.push_str(&format!(
            "  one {} MiB file holds {}\n",
            r.maxsize_mb,
            days(d)
        ));
    }
    match (r.retained_days, r.limited_by) {
        (Some(d), Some(by)) => {
            s.push_str(&format!(
                "  logs are kept {}, limited by {}",
                days(d),
                by.flag()
            ));
            if by == Limit::Maxbackup && r.maxage > 0 {
                s.push_str(&format!(
                    " (--audit-log-maxage={} is never reached)",
                    r.maxage
                ));
            }
            s.push('\n');
        }
        _ if r.maxbackup > 0 && r.bytes_per_day.is_none() => {
            s.push_str("  how long the backups last depends on the volume: unknown\n")
        }
        _ => s.push_str(
            "  nothing is ever deleted (maxage and maxbackup are 0): the disk is the limit\n",
        ),
    }
    match (r.suggested_maxbackup, r.limited_by) {
        (Some(b), Some(Limit::Maxage)) if b < r.maxbackup => s.push_str(&format!(
            "  --audit-log-maxbackup={b} would keep the same {} days\n",
            r.maxage
        )),
        (Some(b), Some(Limit::Maxbackup)) => suggest(&mut s, r, b),
        _ => {}
    }
    if let Some(d) = r.disk_bytes {
        s.push_str(&format!("  disk used at most: {}", size(d as f64)));
        if let Some(g) = r.gzip_ratio {
            s.push_str(&format!(
                " (backups gzip'd, estimated at {g} of their size)"
            ));
        }
        s.push('\n');
    }
    if r.bytes_per_day.is_some() && r.span_seconds < 3600.0 {
        s.push_str(
            "  note: the events span less than an hour; record a day for a steadier estimate\n",
        );
    }
    s
}

/// The flags that would keep `maxage` days.
fn suggest(s: &mut String, r: &Retention, b: u64) {
    s.push_str(&format!(
        "  to keep {} days: --audit-log-maxbackup={b} (at --audit-log-maxsize={})",
        r.maxage, r.maxsize_mb
    ));
    if let Some(m) = r.suggested_maxsize_mb {
        s.push_str(&format!(
            ", or --audit-log-maxsize={m} (at --audit-log-maxbackup={})",
            r.maxbackup
        ));
    }
    s.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulation that kept `bytes` (newlines included) over `span` s.
    fn sim(bytes: u64, span: f64) -> Simulation {
        let mut s = Simulation::default();
        s.total.kept_bytes = bytes;
        s.first_ns = Some(0);
        s.last_ns = Some((span * 1e9) as i64);
        s
    }

    fn flags(maxage: u64, maxbackup: u64, maxsize: u64) -> LogFlags {
        LogFlags {
            maxage,
            maxbackup,
            maxsize,
            compress: false,
        }
    }

    #[test]
    fn backups_limit_before_maxage() {
        // 1 GiB a day, 10 files of 100 MiB: 0.98 days, far short of 30.
        let r = estimate(&sim(1 << 30, 86_400.0), &flags(30, 10, 100));
        assert_eq!(r.bytes_per_day, Some(1 << 30));
        assert_eq!(r.limited_by, Some(Limit::Maxbackup));
        assert_eq!(r.retained_days, Some(0.9766));
        // 30 GiB over 100 MiB files: 307.2, so 308.
        assert_eq!(r.suggested_maxbackup, Some(308));
        assert_eq!(r.suggested_maxsize_mb, Some(3072));
        assert_eq!(r.disk_bytes, Some(11 * 100 * MIB));
    }

    #[test]
    fn maxage_limits_before_backups() {
        // 10 MiB a day: 10 backups of 100 MiB last 100 days, maxage is 7.
        let r = estimate(&sim(10 * MIB, 86_400.0), &flags(7, 10, 100));
        assert_eq!(r.limited_by, Some(Limit::Maxage));
        assert_eq!(r.retained_days, Some(7.0));
        assert_eq!(r.suggested_maxbackup, Some(1));
        // One backup holds the week, plus the current file.
        assert_eq!(r.disk_bytes, Some(2 * 100 * MIB));
    }

    #[test]
    fn zero_means_no_limit_and_default_size() {
        let r = estimate(&sim(MIB, 3600.0), &flags(0, 0, 0));
        assert_eq!(r.maxsize_mb, 100);
        assert_eq!(r.retained_days, None);
        assert_eq!(r.limited_by, None);
        assert_eq!(r.suggested_maxbackup, None);
        assert_eq!(r.disk_bytes, None);
        // maxbackup 0 keeps all: only the age limits.
        let r = estimate(&sim(1 << 40, 3600.0), &flags(3, 0, 10));
        assert_eq!(r.limited_by, Some(Limit::Maxage));
        assert_eq!(r.retained_days, Some(3.0));
        // maxage 0: only the count limits.
        let r = estimate(&sim(100 * MIB, 86_400.0), &flags(0, 5, 100));
        assert_eq!(r.limited_by, Some(Limit::Maxbackup));
        assert_eq!(r.retained_days, Some(5.0));
        assert_eq!(r.suggested_maxbackup, None);
    }

    #[test]
    fn no_span_leaves_the_volume_unknown() {
        let r = estimate(&sim(1000, 0.0), &flags(30, 10, 100));
        assert_eq!(r.bytes_per_day, None);
        assert_eq!(r.limited_by, None);
        assert!(render(&r).contains("unknown"), "{}", render(&r));
        // With no count limit, maxage decides whatever the volume.
        let r = estimate(&sim(1000, 0.0), &flags(30, 0, 100));
        assert_eq!(r.limited_by, Some(Limit::Maxage));
    }

    #[test]
    fn compression_saves_disk_not_days() {
        let plain = estimate(&sim(1 << 30, 86_400.0), &flags(30, 10, 100));
        let gz = estimate(
            &sim(1 << 30, 86_400.0),
            &LogFlags {
                compress: true,
                ..flags(30, 10, 100)
            },
        );
        assert_eq!(plain.retained_days, gz.retained_days);
        let expected = (100.0 * MIB as f64 * (1.0 + 10.0 * GZIP_RATIO)) as u64;
        assert_eq!(gz.disk_bytes, Some(expected));
    }

    #[test]
    fn gzip_ratio_matches_the_bundled_sample() {
        use std::io::Write;
        let text = include_str!("../../examples/audit-sample.jsonl");
        let events: String = text
            .lines()
            .filter(|l| l.starts_with('{'))
            .flat_map(|l| [l, "\n"])
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(events.as_bytes()).expect("gzip in memory");
        let out = gz.finish().expect("gzip in memory");
        let measured = out.len() as f64 / events.len() as f64;
        assert!(
            (measured - GZIP_RATIO).abs() < 0.01,
            "measured {measured:.4}, GZIP_RATIO is {GZIP_RATIO}"
        );
    }
}
