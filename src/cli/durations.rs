//! Duration flags (`5s`, `1m`, `1h30m`), parsed with the rules' own
//! duration syntax.

use std::time::Duration;

/// A duration that may be zero (`0` or `0s`), in nanoseconds.
pub fn parse_or_zero(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    saker::window::spec::parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration (e.g. 0s, 5s, 1m)"))
}

/// A duration longer than zero, in nanoseconds.
pub fn parse_nonzero(s: &str) -> Result<u64, String> {
    match saker::window::spec::parse_duration(s) {
        Some(0) => Err("must be longer than zero".into()),
        Some(ns) => Ok(ns),
        None => Err(format!("`{s}` is not a duration (e.g. 1s, 500ms, 5m)")),
    }
}

pub fn std_nonzero(s: &str) -> Result<Duration, String> {
    parse_nonzero(s).map(Duration::from_nanos)
}

pub fn std_or_zero(s: &str) -> Result<Duration, String> {
    parse_or_zero(s).map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_or_zero("0"), Ok(0));
        assert_eq!(parse_nonzero("1m"), Ok(60_000_000_000));
        assert!(parse_nonzero("0s").is_err());
        assert!(parse_or_zero("soon").is_err());
        assert_eq!(std_or_zero("5s"), Ok(Duration::from_secs(5)));
    }
}
