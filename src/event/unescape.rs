//! Reading a JSON string whose value is itself a document (an AKS `log`,
//! an EKS `message`) when the pass that also scans it
//! (`scan::Tape::scan_string`) does not take it: one pass that finds the
//! string's end, checks it against JSON's rules and writes its value,
//! unescaped, into a buffer the caller reuses. Such a string has an escape
//! every few bytes (each quote of the document inside), so the pass copies
//! sixteen bytes at a time as one block, finds the bytes that need work in
//! it (`"`, `\`, a control character: [`super::scan::block_stops`], SSE2
//! where the machine has it), keeps the block up to the first of them, and
//! goes on after it.

use super::scan::block_stops;

/// Appends the value of the JSON string that starts at `b[open]` (a quote)
/// to `out`, and returns the index just past its closing quote. `None` if
/// it is not a valid JSON string (a control character, a bad escape, a
/// lone surrogate, no end), as serde_json judges one; `out` then holds a
/// part of the value.
pub fn string_into(b: &[u8], open: usize, out: &mut Vec<u8>) -> Option<usize> {
    if b.get(open) != Some(&b'"') {
        return None;
    }
    let mut r = open + 1;
    loop {
        // Plain bytes up to the next one that needs work: the whole block is
        // appended, then cut back to its plain part.
        match b.get(r..r + 16).map(<&[u8; 16]>::try_from) {
            Some(Ok(block)) => {
                out.extend_from_slice(block);
                let stops = block_stops(block);
                if stops == 0 {
                    r += 16;
                    continue;
                }
                let t = stops.trailing_zeros() as usize;
                out.truncate(out.len() - 16 + t);
                r += t;
            }
            _ => {
                // The last bytes, one at a time.
                let c = *b.get(r)?;
                if c != b'"' && c != b'\\' && c >= 0x20 {
                    out.push(c);
                    r += 1;
                    continue;
                }
            }
        }
        match b[r] {
            b'"' => return Some(r + 1),
            b'\\' => {}
            _ => return None,
        }
        // Most escapes are a document's quotes and backslashes: kept here,
        // the rest in `escape`.
        match b.get(r + 1) {
            Some(&e @ (b'"' | b'\\')) => {
                out.push(e);
                r += 2;
            }
            _ => {
                let mut ch = [0u8; 4];
                let (read, written) = escape(b, r, &mut ch)?;
                out.extend_from_slice(&ch[..written]);
                r += read;
            }
        }
    }
}

/// Writes the character of the escape at `b[pos]` (a backslash) at the
/// start of `out` (which has room for 4 bytes); returns how many bytes it
/// read and wrote.
#[inline]
fn escape(b: &[u8], pos: usize, out: &mut [u8]) -> Option<(usize, usize)> {
    let simple = match *b.get(pos + 1)? {
        c @ (b'"' | b'\\' | b'/') => c,
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'u' => return unicode(b, pos, out),
        _ => return None,
    };
    out[0] = simple;
    Some((2, 1))
}

/// `\uXXXX`, or a surrogate pair `\uD83D\uDE00`.
fn unicode(b: &[u8], pos: usize, out: &mut [u8]) -> Option<(usize, usize)> {
    let hi = hex4(b.get(pos + 2..pos + 6)?)?;
    let (c, read) = match hi {
        0xD800..=0xDBFF => {
            if b.get(pos + 6..pos + 8)? != b"\\u" {
                return None;
            }
            let lo = hex4(b.get(pos + 8..pos + 12)?)?;
            if !(0xDC00..=0xDFFF).contains(&lo) {
                return None;
            }
            (0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00), 12)
        }
        0xDC00..=0xDFFF => return None,
        _ => (hi, 6),
    };
    let written = char::from_u32(c)?.encode_utf8(out).len();
    Some((read, written))
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, &d| {
        let v = (d as char).to_digit(16)?;
        Some(n << 4 | v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `string_into` on a whole input, as `Some(value)` or `None`.
    fn read(s: &str) -> Option<String> {
        let mut out = Vec::new();
        let end = string_into(s.as_bytes(), 0, &mut out)?;
        (end == s.len()).then(|| String::from_utf8(out).expect("valid UTF-8"))
    }

    #[test]
    fn values_and_ends() {
        assert_eq!(read(r#""""#).as_deref(), Some(""));
        assert_eq!(read(r#""a\"b\\c\/d""#).as_deref(), Some(r#"a"b\c/d"#));
        assert_eq!(
            read(r#""\b\f\n\r\t\u0026\u00e9\uD83D\uDE00""#).as_deref(),
            Some("\u{8}\u{c}\n\r\t&é😀")
        );
        let long = format!("\"{}\\\"{}\"", "x".repeat(70), "y".repeat(40));
        assert_eq!(
            read(&long),
            Some(format!("{}\"{}", "x".repeat(70), "y".repeat(40)))
        );
        let mut out = Vec::new();
        assert_eq!(string_into(br#"{"k":"v\"w","z":1}"#, 5, &mut out), Some(11));
        assert_eq!(out, br#"v"w"#);
    }

    #[test]
    fn escapes_at_every_offset_of_the_blocks() {
        // An escape of each kind at each offset over several sixteen-byte
        // blocks (a `\\u` escape straddling one too), in a string of
        // documents' quotes.
        for escape in [
            "\\\"",
            "\\\\",
            "\\n",
            "\\u00e9",
            "\\uD83D\\uDE00",
            "\\q",
            "\u{1}",
        ] {
            for n in 0..140 {
                let s = format!(
                    "\"{}{escape}{}\\\"x\"",
                    "a".repeat(n),
                    "\\\"b".repeat(n % 7)
                );
                let theirs = serde_json::from_str::<String>(&s).ok();
                assert_eq!(read(&s), theirs, "{s:?}");
            }
        }
    }

    #[test]
    fn invalid_strings_are_refused() {
        for s in [
            "\"",
            "\"abc",
            "\"a\\",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12g4\"",
            "\"\\uD800\"",
            "\"\\uD800\\n\"",
            "\"\\uD800\\u0041\"",
            "\"\\uDC00\"",
            "\"a\nb\"",
            "\"tab\there\"",
            "x",
        ] {
            assert_eq!(read(s), None, "{s:?}");
        }
    }

    /// Strings made of the pieces that matter: plain text, quotes,
    /// backslashes, escapes (good and bad), control characters, and
    /// non-ASCII characters; long enough to span several blocks.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z ]{0,40}",
            Just("\\\"".to_string()),
            Just("\\\\".to_string()),
            Just("\\n".to_string()),
            Just("\\u0026".to_string()),
            Just("\\uD83D\\uDE00".to_string()),
            Just("\\uD83D".to_string()),
            Just("\\uDE00".to_string()),
            Just("\\u00".to_string()),
            Just("\\q".to_string()),
            Just("\\".to_string()),
            Just("\"".to_string()),
            Just("\u{1}".to_string()),
            Just("é€😀".to_string()),
            "[a-z\"\\\\]{50,90}",
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json(pieces in prop::collection::vec(piece(), 0..60), close in any::<bool>()) {
            let body: String = pieces.concat();
            let s = if close { format!("\"{body}\"") } else { format!("\"{body}") };
            let ours = {
                let mut out = Vec::new();
                string_into(s.as_bytes(), 0, &mut out)
                    .map(|end| (String::from_utf8(out).expect("valid UTF-8"), end))
            };
            // serde_json reads one string value from the start and says
            // where it ended.
            let mut values = serde_json::Deserializer::from_str(&s).into_iter::<String>();
            let theirs = match values.next() {
                Some(Ok(v)) => Some((v, values.byte_offset())),
                _ => None,
            };
            prop_assert_eq!(ours, theirs);
        }
    }
}
