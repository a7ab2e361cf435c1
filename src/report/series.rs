//! One windowed key's values over time, in bounded memory however long the
//! replay: a [`Series`] holds at most twice its cap of `(time, value)`
//! points; when full it keeps the lowest and the highest point of each run
//! of four, so peaks (and the troughs between them) survive every
//! reduction.

/// A key's values at the ticks it was evaluated at, reduced as it grows.
#[derive(Debug, Clone)]
pub struct Series {
    points: Vec<(i64, f64)>,
    cap: usize,
    /// Points pushed in all.
    pushed: u64,
}

impl Series {
    /// A series drawn with at most `cap` points (at least 4).
    pub fn new(cap: usize) -> Self {
        Series {
            points: Vec::new(),
            cap: cap.max(4),
            pushed: 0,
        }
    }

    pub fn push(&mut self, time_ns: i64, value: f64) {
        self.pushed += 1;
        self.points.push((time_ns, value));
        if self.points.len() >= 2 * self.cap {
            self.reduce(self.cap);
        }
    }

    /// Points pushed in all.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// The points to draw (at most the cap), in time order.
    pub fn finish(mut self) -> Vec<(i64, f64)> {
        if self.points.len() > self.cap {
            self.reduce(self.cap);
        }
        self.points
    }

    /// Keeps at most `target` points: the lowest and the highest of each of
    /// `target / 2` equal runs, in time order.
    fn reduce(&mut self, target: usize) {
        let groups = (target / 2).max(1);
        let size = self.points.len().div_ceil(groups);
        let mut out = Vec::with_capacity(target);
        for run in self.points.chunks(size) {
            let (mut lo, mut hi) = (0, 0);
            for (i, p) in run.iter().enumerate() {
                if p.1 < run[lo].1 {
                    lo = i;
                }
                if p.1 > run[hi].1 {
                    hi = i;
                }
            }
            let (a, b) = (lo.min(hi), lo.max(hi));
            out.push(run[a]);
            if b != a {
                out.push(run[b]);
            }
        }
        self.points = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_series_is_kept_whole() {
        let mut s = Series::new(10);
        for t in 0..10 {
            s.push(t, t as f64);
        }
        assert_eq!(s.pushed(), 10);
        assert_eq!(
            s.finish(),
            (0..10).map(|t| (t, t as f64)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_long_series_keeps_its_peaks_and_troughs_within_the_cap() {
        let mut s = Series::new(20);
        // A saw-tooth with one spike to 1000 at t = 7777.
        for t in 0..10_000i64 {
            let v = if t == 7777 { 1000.0 } else { (t % 100) as f64 };
            s.push(t, v);
        }
        assert_eq!(s.pushed(), 10_000);
        let p = s.finish();
        assert!(p.len() <= 20, "{}", p.len());
        assert!(p.windows(2).all(|w| w[0].0 < w[1].0), "time order");
        assert!(p.contains(&(7777, 1000.0)), "{p:?}");
        assert!(p.iter().any(|x| x.1 == 0.0), "a trough survives: {p:?}");
    }
}
