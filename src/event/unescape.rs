//! Reading a JSON string whose value is itself a document (an AKS `log`,
//! an EKS `message`): one pass that finds the string's end, checks it
//! against JSON's rules and writes its value, unescaped, into a buffer the
//! caller reuses. Such a string has an escape every few bytes (each quote
//! of the document inside), so the pass reads 8 bytes at a time, finds the
//! bytes that need work (`"`, `\`, a control character) with word
//! arithmetic, and copies the bytes between them as whole words.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of each byte of `x` that is zero (exactly: no carry
/// crosses bytes).
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x) & HIGH
}

/// The high bit of each byte of `x` below 0x20.
fn control_bytes(x: u64) -> u64 {
    !(((x & LOW7) + 0x6060_6060_6060_6060) | x) & HIGH
}

/// The high bit of each byte of `x` that ends a run of plain string bytes.
fn stops(x: u64) -> u64 {
    zero_bytes(x ^ (ONES * u64::from(b'"')))
        | zero_bytes(x ^ (ONES * u64::from(b'\\')))
        | control_bytes(x)
}

/// Appends the value of the JSON string that starts at `b[open]` (a quote)
/// to `out`, and returns the index just past its closing quote. `None` if
/// it is not a valid JSON string (a control character, a bad escape, a
/// lone surrogate, no end), as serde_json judges one; `out` then holds a
/// part of the value.
pub fn string_into(b: &[u8], open: usize, out: &mut Vec<u8>) -> Option<usize> {
    if b.get(open) != Some(&b'"') {
        return None;
    }
    let mut w = out.len();
    let mut r = open + 1;
    let end = 'words: loop {
        // Room for two words and the longest escape's bytes.
        if w + 24 > out.len() {
            out.resize(2 * out.len() + 64, 0);
        }
        let Some(word) = b.get(r..r + 8) else {
            // The last bytes, one at a time.
            match b.get(r) {
                None => break None,
                Some(b'"') => break Some(r + 1),
                Some(b'\\') => match escape(b, r, &mut out[w..]) {
                    Some((read, written)) => {
                        r += read;
                        w += written;
                        continue;
                    }
                    None => break None,
                },
                Some(&c) if c < 0x20 => break None,
                Some(&c) => {
                    out[w] = c;
                    w += 1;
                    r += 1;
                    continue;
                }
            }
        };
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes);
        // The word is written whole; `w` then moves past what was plain.
        out[w..w + 8].copy_from_slice(&bytes);
        let mut m = stops(x);
        // Bytes of this word already read.
        let mut k = 0;
        loop {
            if m == 0 {
                w += 8 - k;
                r += 8;
                continue 'words;
            }
            let t = (m.trailing_zeros() / 8) as usize;
            w += t - k;
            let pos = r + t;
            match b[pos] {
                b'"' => break 'words Some(pos + 1),
                b'\\' => {}
                _ => break 'words None,
            }
            // Most escapes are a document's quotes and backslashes: kept
            // here, the rest in `escape`.
            match b.get(pos + 1) {
                Some(&e @ (b'"' | b'\\')) => {
                    out[w] = e;
                    w += 1;
                    k = t + 2;
                }
                _ => {
                    let Some((read, written)) = escape(b, pos, &mut out[w..]) else {
                        break 'words None;
                    };
                    w += written;
                    k = t + read;
                }
            }
            if k >= 8 {
                r += k;
                continue 'words;
            }
            // The rest of the word, after the escape.
            m &= u64::MAX << (k * 8);
            out[w..w + 8].copy_from_slice(&(x >> (k * 8)).to_le_bytes());
        }
    };
    out.truncate(w);
    end
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
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json(pieces in prop::collection::vec(piece(), 0..40), close in any::<bool>()) {
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
