//! RFC 3339 timestamps: parsing audit timestamps into nanoseconds since the
//! Unix epoch, and formatting them back for output.

/// Parses `2024-10-29T12:22:15.861424Z` (any fraction up to nanoseconds, `Z`
/// or a `±hh:mm` offset) into nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    // Two or four ASCII digits at a fixed place, read as they stand (no
    // sign, no overflow possible).
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b.get(r)?.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let off = (h * 60 + m) * 60;
            if *c == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Formats nanoseconds since the epoch as `2024-10-29T12:22:15.861424000Z`.
pub fn format_rfc3339_nanos(ns: i64) -> String {
    Rfc3339Nanos(ns).to_string()
}

/// Nanoseconds since the epoch, displayed as [`format_rfc3339_nanos`]
/// formats them (written straight into an output, with no string between).
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339Nanos(pub i64);

impl std::fmt::Display for Rfc3339Nanos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = self.0;
        let (secs, nanos) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        // Every i64 of nanoseconds falls in the years 1677 to 2262.
        let mut b = *b"0000-00-00T00:00:00.000000000Z";
        digits(&mut b[0..4], y);
        digits(&mut b[5..7], m);
        digits(&mut b[8..10], d);
        clock(&mut b[11..29], rem, nanos);
        f.write_str(std::str::from_utf8(&b).unwrap_or_default())
    }
}

/// `v` in decimal, right-aligned in `out`, padded with zeros (`v` is not
/// negative and fits).
#[inline]
fn digits(out: &mut [u8], mut v: i64) {
    for c in out.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// `HH:MM:SS.nnnnnnnnn` of `rem` seconds into the day and `nanos`, into
/// an 18-byte `out`.
#[inline]
fn clock(out: &mut [u8], rem: i64, nanos: i64) {
    digits(&mut out[0..2], rem / 3600);
    out[2] = b':';
    digits(&mut out[3..5], rem / 60 % 60);
    out[5] = b':';
    digits(&mut out[6..8], rem % 60);
    out[8] = b'.';
    digits(&mut out[9..18], nanos);
}

/// Falco's text-output time, `HH:MM:SS.nnnnnnnnn` (UTC).
pub fn format_clock(ns: i64) -> String {
    Clock(ns).to_string()
}

/// Nanoseconds since the epoch, displayed as [`format_clock`] formats them.
#[derive(Debug, Clone, Copy)]
pub struct Clock(pub i64);

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (secs, nanos) = (
            self.0.div_euclid(1_000_000_000),
            self.0.rem_euclid(1_000_000_000),
        );
        let mut b = [0u8; 18];
        clock(&mut b, secs.rem_euclid(86_400), nanos);
        f.write_str(std::str::from_utf8(&b).unwrap_or_default())
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ns = parse_rfc3339("2024-10-29T12:22:15.861424Z").unwrap();
        assert_eq!(ns, 1_730_204_535_861_424_000);
        assert_eq!(format_rfc3339_nanos(ns), "2024-10-29T12:22:15.861424000Z");
        assert_eq!(format_clock(ns), "12:22:15.861424000");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00.123456789123Z").map(|n| n % 1_000_000_000),
            Some(123_456_789)
        );
        assert_eq!(format_rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            format_rfc3339_nanos(i64::MIN),
            "1677-09-21T00:12:43.145224192Z"
        );
        assert_eq!(
            format_rfc3339_nanos(i64::MAX),
            "2262-04-11T23:47:16.854775807Z"
        );
        assert_eq!(format_clock(i64::MIN), "00:12:43.145224192");
        assert_eq!(format_clock(0), "00:00:00.000000000");
    }

    proptest::proptest! {
        /// The digits written in place are those `format!` writes, and the
        /// text parses back to the same instant.
        #[test]
        fn formats_as_format_does(ns in proptest::num::i64::ANY) {
            let (secs, nanos) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
            let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
            let (y, m, d) = civil_from_days(days);
            let (h, mi, s) = (rem / 3600, rem / 60 % 60, rem % 60);
            let clock = format!("{h:02}:{mi:02}:{s:02}.{nanos:09}");
            proptest::prop_assert_eq!(format_clock(ns), clock.clone());
            let full = format_rfc3339_nanos(ns);
            proptest::prop_assert_eq!(&full, &format!("{y:04}-{m:02}-{d:02}T{clock}Z"));
            // (The whole seconds of the earliest second there is do not
            // fit in nanoseconds: parsing refuses that one second.)
            if ns >= i64::MIN + 1_000_000_000 {
                proptest::prop_assert_eq!(parse_rfc3339(&full), Some(ns));
            }
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2024-10-29",
            "2024-13-01T00:00:00Z",
            "2024-10-29T12:22:15.Z",
            "2024-10-29T12:22:15",
            "x024-10-29T12:22:15Z",
            "2024-10-29T12:22:15Zjunk",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }
}
