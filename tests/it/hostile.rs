//! Hostile input: whatever arrives, saker neither panics nor stops, exits 0,
//! and every valid event around the garbage still alerts.

use super::*;

/// A small deterministic generator (xorshift) so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn garbage_lines(rng: &mut Rng) -> Vec<Vec<u8>> {
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let deep_in_event = exec_event("deep", 1).replace(
        "\"sourceIPs\":[\"10.0.0.1\"]",
        &format!("\"sourceIPs\":{}{}", "[".repeat(50_000), "]".repeat(50_000)),
    );
    let mut invalid_utf8 = exec_event("bad-utf8", 1).into_bytes();
    let at = invalid_utf8.len() / 2;
    invalid_utf8[at] = 0xff;
    let mut lines: Vec<Vec<u8>> = vec![
        deep_array.into_bytes(),
        deep_object.into_bytes(),
        deep_in_event.into_bytes(),
        invalid_utf8,
        // A multi-megabyte line (over the 1 MiB default limit) ...
        format!("{{\"auditID\":\"big\",\"x\":\"{}\"}}", "a".repeat(3 << 20)).into_bytes(),
        // ... and one under it that is valid JSON but not an event.
        format!("{{\"x\":\"{}\"}}", "b".repeat(900_000)).into_bytes(),
        // Wrong JSON types everywhere.
        br#"{"kind":"Event","auditID":5,"verb":[1],"objectRef":"x","user":7,"stageTimestamp":"2024-10-29T12:22:01Z"}"#.to_vec(),
        br#"{"kind":"Event","auditID":"x","objectRef":{"resource":{"a":1},"subresource":["exec"]},"requestObject":[1,2],"stageTimestamp":"2024-10-29T12:22:01Z"}"#.to_vec(),
        br#"{"kind":"Event","auditID":"x","stageTimestamp":12345}"#.to_vec(),
        br#"{"kind":"EventList","items":{"not":"a list"}}"#.to_vec(),
        br#"{"kind":"EventList","items":[1,"two",null,{"kind":"Event"}]}"#.to_vec(),
        b"[1, 2, 3]".to_vec(),
        b"null".to_vec(),
        b"\"just a string\"".to_vec(),
        b"{\"a\":\"\\ud800\"}".to_vec(),
        b"\0\0\0\0".to_vec(),
        b"[pod/x/y] ".to_vec(),
        b"2024-10-29T12:21:44.214173123Z".to_vec(),
    ];
    // Truncated copies of a valid event.
    let ev = exec_event("trunc", 1);
    for cut in [1, 10, ev.len() / 2, ev.len() - 1] {
        lines.push(ev.as_bytes()[..cut].to_vec());
    }
    // Random bytes, without newlines so they stay one line each.
    for _ in 0..200 {
        let n = (rng.next() % 300) as usize;
        lines.push(
            rng.bytes(n)
                .into_iter()
                .map(|b| if b == b'\n' { b' ' } else { b })
                .collect(),
        );
    }
    lines
}

#[test]
fn garbage_between_valid_events() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let garbage = garbage_lines(&mut rng);
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for (i, g) in garbage.iter().enumerate() {
        let pod = format!("valid-{i}");
        input.extend_from_slice(exec_event(&pod, (i % 60) as u32).as_bytes());
        input.push(b'\n');
        expected.push(pod);
        input.extend_from_slice(g);
        input.push(b'\n');
    }
    // A final valid event without a trailing newline.
    input.extend_from_slice(exec_event("last", 59).as_bytes());
    expected.push("last".into());

    let out = run_with_stdin(&["run"], &input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pods: Vec<String> = output_field(&alerts(&out), "ka.target.name")
        .into_iter()
        .filter(|p| p.starts_with("valid-") || p == "last")
        .collect();
    assert_eq!(pods, expected);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lines over the length limit"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn line_limit_is_configurable_and_counted() {
    let input = format!(
        "{}\n{}\n",
        exec_event("short", 1),
        exec_event(&"x".repeat(5000), 2)
    );
    let out = run_with_stdin(&["run", "--max-line-bytes", "2000"], input.as_bytes());
    assert!(out.status.success());
    assert_eq!(alerts(&out).len(), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 lines over the length limit"));
}

#[test]
fn random_bytes_only() {
    let mut rng = Rng(42);
    let input = rng.bytes(2 << 20);
    let out = run_with_stdin(&["run"], &input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn closed_stdout_is_not_an_error() {
    // `saker run | head -1`: the reader goes away; saker stops quietly.
    let mut child = saker()
        .args(["run", "--no-summary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    let line = format!("{}\n", exec_event("p", 1));
    for _ in 0..20_000 {
        if stdin.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    assert_eq!(out.status.code(), Some(0));
}
