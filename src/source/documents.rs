//! The audit documents inside one message (a Kafka message, an HTTP body).
//! A message holds one event or `EventList` (possibly pretty-printed over
//! several lines), or several events separated by newlines; each document
//! is handed on as a [`Line`], so the engine decodes, counts and skips it
//! exactly as it would a line of a file.

use serde::de::IgnoredAny;

use crate::event::decode_document;
use crate::source::lines::Line;

/// Calls `f` with each document of `payload`, in order. A document longer
/// than `max_bytes` is passed as [`Line::TooLong`].
pub fn for_each<'p, E>(
    payload: &'p [u8],
    max_bytes: usize,
    mut f: impl FnMut(Line<'p>) -> Result<(), E>,
) -> Result<(), E> {
    // A gzip'd message (a CloudWatch Logs payload) is binary: one document,
    // not to be trimmed or split at its newline bytes.
    if crate::event::envelope::is_gzip(payload) {
        return f(if payload.len() > max_bytes {
            Line::TooLong
        } else {
            Line::Text(payload)
        });
    }
    let text = trim_end(payload);
    let single = match memchr::memchr(b'\n', text) {
        None => true,
        // Several lines: one pretty-printed document, or one per line.
        Some(_) => {
            matches!(trim_start(text).first(), Some(b'{' | b'['))
                && serde_json::from_slice::<IgnoredAny>(text).is_ok()
        }
    };
    let mut one = |doc: &'p [u8]| {
        if doc.len() > max_bytes {
            f(Line::TooLong)
        } else {
            f(Line::Text(doc))
        }
    };
    if single {
        return one(text);
    }
    for line in text.split(|&b| b == b'\n') {
        one(line.strip_suffix(b"\r").unwrap_or(line))?;
    }
    Ok(())
}

/// The earliest and latest event time (ns) in a message, if it holds any
/// event.
pub fn time_range(payload: &[u8]) -> Option<(i64, i64)> {
    let mut range: Option<(i64, i64)> = None;
    let _ = for_each(payload, usize::MAX, |line| {
        if let Line::Text(doc) = line {
            decode_document(
                crate::source::lines::strip_prefixes(doc),
                |ev| {
                    let t = ev.time_ns;
                    range = Some(range.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
                },
                |_| {},
            );
        }
        Ok::<(), ()>(())
    });
    range
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &b[..n]
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(payload: &[u8], max: usize) -> Vec<Option<String>> {
        let mut out = Vec::new();
        for_each(payload, max, |l| {
            out.push(match l {
                Line::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                Line::TooLong => None,
            });
            Ok::<(), ()>(())
        })
        .unwrap();
        out
    }

    const EV: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","verb":"get","stageTimestamp":"2024-01-01T00:00:01Z"}"#;

    #[test]
    fn one_event_is_one_document() {
        assert_eq!(
            docs(format!("{EV}\n").as_bytes(), 1 << 20),
            [Some(EV.into())]
        );
    }

    #[test]
    fn newline_separated_events_are_split() {
        let p = format!("{EV}\r\n{EV}\n\n{EV}");
        let d = docs(p.as_bytes(), 1 << 20);
        assert_eq!(d.len(), 4, "{d:?}");
        assert_eq!(
            d[2],
            Some(String::new()),
            "the blank line is passed on, to be counted"
        );
    }

    #[test]
    fn a_pretty_printed_event_list_stays_whole() {
        let p = format!("{{\n  \"kind\": \"EventList\",\n  \"items\": [\n{EV},\n{EV}\n  ]\n}}\n");
        let d = docs(p.as_bytes(), 1 << 20);
        assert_eq!(d.len(), 1);
        assert!(d[0].as_ref().unwrap().contains("EventList"));
    }

    #[test]
    fn garbage_is_passed_on_to_be_skipped() {
        assert_eq!(
            docs(b"\x00\xff not json", 100),
            [Some("\u{0}\u{fffd} not json".into())]
        );
        assert_eq!(docs(b"{\"broken\": \nstill broken", 100).len(), 2);
    }

    #[test]
    fn a_gzip_message_is_one_document_untrimmed() {
        let gz = b"\x1f\x8b\x08\n{\"a\":1}\n \n";
        assert_eq!(
            docs(gz, 100),
            [Some(String::from_utf8_lossy(gz).into_owned())]
        );
        assert_eq!(docs(gz, 4), [None]);
    }

    #[test]
    fn documents_over_the_limit_are_too_long() {
        assert_eq!(
            docs(format!("{EV}\nx").as_bytes(), 10),
            [None, Some("x".into())]
        );
    }

    #[test]
    fn time_range_spans_every_event() {
        let late = EV.replace("00:00:01", "00:00:09");
        let p = format!("{late}\n{EV}\nnot json");
        let (lo, hi) = time_range(p.as_bytes()).unwrap();
        assert_eq!(hi - lo, 8_000_000_000);
        assert_eq!(time_range(b"nothing here"), None);
    }
}
