//! Whole-program tests: the built `saker` binary run as a user runs it, plus
//! property tests of the parser, decoder and line reader. One test binary.

mod alertmanager;
mod cli;
mod config;
mod corpus;
mod diagnostics;
mod falco_format;
mod hostile;
mod http_input;
mod http_output;
mod http_push;
mod kafka;
mod kafka_failures;
mod live;
mod managed;
mod managed_props;
mod metrics;
mod net;
mod parallel;
mod pki;
mod policy;
mod props;
mod rbac;
mod reload;
mod repartition;
mod report;
mod rules;
mod sequences;
mod snapshot_props;
mod state;
mod stateful_props;
mod windows;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `saker` binary built for these tests.
pub fn saker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_saker"))
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn golden(rel: &str) -> PathBuf {
    root().join("tests/golden").join(rel)
}

/// Runs saker with `args`, feeding `stdin`.
pub fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = saker()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn saker");
    let mut pipe = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // saker may stop reading early on a broken pipe; that is its business.
        let _ = pipe.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait saker");
    writer.join().expect("stdin writer");
    out
}

/// Parses stdout as JSON alert lines; panics on anything else.
pub fn alerts(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The value of output field `field` in each alert, in order.
pub fn output_field(alerts: &[serde_json::Value], field: &str) -> Vec<String> {
    alerts
        .iter()
        .map(|a| {
            a["output_fields"][field]
                .as_str()
                .unwrap_or_else(|| panic!("alert without {field}: {a}"))
                .to_string()
        })
        .collect()
}

/// Compares `actual` with the golden file; `SAKER_BLESS=1` rewrites it.
pub fn assert_golden(path: &Path, actual: &str) {
    if std::env::var_os("SAKER_BLESS").is_some() {
        std::fs::write(path, actual).expect("bless golden file");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "missing golden file {} ({e}); run with SAKER_BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let mut diff = String::new();
        for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
            if e != a {
                diff.push_str(&format!(
                    "line {}:\n  expected: {e}\n  actual:   {a}\n",
                    i + 1
                ));
            }
        }
        panic!(
            "{} differs from the output ({} vs {} lines):\n{diff}\nrerun with SAKER_BLESS=1 to accept",
            path.display(),
            expected.lines().count(),
            actual.lines().count()
        );
    }
}

/// One audit event line: a `kubectl exec` into `pod` (fires "Exec Into Pod").
pub fn exec_event(pod: &str, second: u32) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-{pod}","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/shop/pods/{pod}/exec?command=sh\u0026container=app","verb":"get","user":{{"username":"alice","groups":["system:authenticated"]}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods","namespace":"shop","name":"{pod}","apiVersion":"v1","subresource":"exec"}},"responseStatus":{{"metadata":{{}},"code":101}},"requestReceivedTimestamp":"2024-10-29T12:22:{second:02}.000001Z","stageTimestamp":"2024-10-29T12:22:{second:02}.000002Z"}}"#
    )
}

/// `saker test` on a golden test file passes every test in it.
pub fn assert_rule_tests_pass(file: &str) {
    let out = saker()
        .args(["test", golden(file).to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{file}:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" passed, 0 failed"), "{text}");
}
