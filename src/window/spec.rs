//! What a windowed rule measures and compares: the compiled form of an
//! `aggregate:` clause, in ticks of the resolution.

/// What is measured over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Count,
    /// Count divided by the window expressed in `unit_ns`.
    Rate {
        unit_ns: u64,
    },
    /// Distinct present values of a field (the field is the engine's business).
    Distinct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Cmp {
    pub fn as_str(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
        }
    }

    /// `<` and `<=`: the condition holds when events are missing.
    pub fn is_absence(self) -> bool {
        matches!(self, Cmp::Lt | Cmp::Le)
    }
}

/// An exact decimal threshold, `num / den` with `den` a power of ten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub num: u128,
    pub den: u128,
}

impl Threshold {
    /// Parses `12`, `0.5`, `1.25`.
    pub fn parse(text: &str) -> Option<Threshold> {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 12
        {
            return None;
        }
        let den = 10u128.pow(frac.len() as u32);
        let num = format!("{int}{frac}").parse::<u128>().ok()?;
        Some(Threshold { num, den })
    }

    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

/// A compiled `aggregate:` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub measure: Measure,
    pub cmp: Cmp,
    pub threshold: Threshold,
    /// Window length `W`, in ticks.
    pub window: i64,
    /// `for` duration, in ticks (0 when absent).
    pub hold: i64,
    /// Whether the rule has `by` fields.
    pub keyed: bool,
    /// The resolution, for converting ticks to time.
    pub resolution_ns: u64,
}

impl Spec {
    /// The measured value as reported: the count, the number of distinct
    /// values, or the rate in the threshold's unit.
    pub fn value(&self, n: u64) -> f64 {
        match self.measure {
            Measure::Rate { unit_ns } => n as f64 * unit_ns as f64 / self.window_ns() as f64,
            _ => n as f64,
        }
    }

    pub fn window_ns(&self) -> u128 {
        self.window as u128 * u128::from(self.resolution_ns)
    }

    /// `C`: whether `n` (count or distinct values) satisfies the comparison,
    /// compared exactly (`rate > 1/min over 1m` ⇔ `count > 1`).
    pub fn holds(&self, n: u64) -> bool {
        // n/1 cmp num/den, or for rates n*unit/window cmp num/den.
        let (lhs, rhs) = match self.measure {
            Measure::Rate { unit_ns } => (
                u128::from(n) * u128::from(unit_ns) * self.threshold.den,
                self.threshold.num * self.window_ns(),
            ),
            _ => (u128::from(n) * self.threshold.den, self.threshold.num),
        };
        match self.cmp {
            Cmp::Gt => lhs > rhs,
            Cmp::Ge => lhs >= rhs,
            Cmp::Lt => lhs < rhs,
            Cmp::Le => lhs <= rhs,
        }
    }
}

/// Parses `30s`, `1m`, `5m`, `1h30m`, `250ms` into nanoseconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1_000_000, 2)
        } else if rest.starts_with('d') {
            (86_400_000_000_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000_000_000, 1)
        } else if rest.starts_with('m') {
            (60_000_000_000, 1)
        } else if rest.starts_with('s') {
            (1_000_000_000, 1)
        } else {
            return None;
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

/// Renders nanoseconds back as a compact duration (`1h30m`, `90s` → `1m30s`).
pub fn format_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ns;
    for (unit, name) in [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
    ] {
        if rest >= unit {
            out.push_str(&format!("{}{name}", rest / unit));
            rest %= unit;
        }
    }
    if rest > 0 {
        out.push_str(&format!("{rest}ns"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(measure: Measure, cmp: Cmp, t: &str, window_s: i64) -> Spec {
        Spec {
            measure,
            cmp,
            threshold: Threshold::parse(t).unwrap(),
            window: window_s,
            hold: 0,
            keyed: false,
            resolution_ns: 1_000_000_000,
        }
    }

    #[test]
    fn rates_compare_exactly() {
        let per_min = Measure::Rate {
            unit_ns: 60_000_000_000,
        };
        let per_s = Measure::Rate {
            unit_ns: 1_000_000_000,
        };
        // rate > 1/min over 1m <=> count > 1
        let s = spec(per_min, Cmp::Gt, "1", 60);
        assert!(!s.holds(1) && s.holds(2));
        // rate > 1/s over 1m <=> count > 60
        let s = spec(per_s, Cmp::Gt, "1", 60);
        assert!(!s.holds(60) && s.holds(61));
        // rate >= 0.5/min over 30s <=> count >= 0.25
        let s = spec(per_min, Cmp::Ge, "0.5", 30);
        assert!(!s.holds(0) && s.holds(1));
        assert_eq!(spec(per_min, Cmp::Gt, "1", 120).value(3), 1.5);
    }

    #[test]
    fn counts_and_absence() {
        let s = spec(Measure::Count, Cmp::Lt, "1", 600);
        assert!(s.holds(0) && !s.holds(1));
        let s = spec(Measure::Distinct, Cmp::Ge, "15", 1800);
        assert!(!s.holds(14) && s.holds(15));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_duration("5m"), Some(300_000_000_000));
        for bad in ["", "5", "m", "1x", "1.5m", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(5_400_000_000_000), "1h30m");
        assert_eq!(format_duration(90_000_000_000), "1m30s");
        assert_eq!(
            Threshold::parse("1.25"),
            Some(Threshold { num: 125, den: 100 })
        );
        assert_eq!(Threshold::parse("7"), Some(Threshold { num: 7, den: 1 }));
        assert_eq!(Threshold::parse("x"), None);
    }
}
