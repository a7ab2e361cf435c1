//! `saker test`: rule unit tests in the spirit of `promtool test rules`.
//!
//! A test file (YAML) names the rule files to load (relative to the test
//! file; none means the embedded default rules), and a list of tests. Each
//! test gives input events, inline (a JSON object, or a string holding a raw
//! input line) or as a JSONL file, and the exact list of alerts expected, in
//! order. An expected alert names its `rule` and may pin `priority`, `time`,
//! `output`, a subset of `output_fields`, and for windowed rules `state`
//! (firing or resolved) and `key` (the `by` fields' values). For a
//! first-seen rule, `state` is `new`, `key` the `by` fields' values and
//! `previous` the key's last-seen time before the window (or null). For a
//! sequence rule, `key` is the list of joined key values and `steps` the
//! list of the steps' audit IDs, in step order.
//!
//! ```yaml
//! rule_files: [../k8s_audit.yaml]
//! rule_matching: first     # optional
//! resolution: 1s           # optional, for windowed rules
//! lateness: 5s             # optional
//! max_keys: 100000         # optional, the key cap per rule (--max-keys)
//! tests:
//!   - name: kubectl exec fires
//!     events:
//!       - {"auditID": "1", "stage": "ResponseStarted", "verb": "get", ...}
//!     expect:
//!       - rule: Exec Into Pod
//!         output_fields: {ka.user.name: alice}
//!   - name: reading pod logs does not
//!     input: logs.jsonl
//!     expect: []
//!   - name: a privileged pod, then a shell in it
//!     input: privileged-then-exec.jsonl
//!     expect:
//!       - rule: Shell In Pod With Host Access
//!         key: [shop, web-1]
//!         steps: [created-audit-id, exec-audit-id]
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::diag::{Code, Diagnostic, SourceFile};
use crate::engine::windows::WindowOptions;
use crate::engine::{Engine, RuleMatching};
use crate::event::time;
use crate::rules;
use crate::rules::yaml::{self, Node, NodeKind, Style};
use crate::sink::stdout::{Format, StdoutSink};
use crate::source::clock::SystemClock;
use crate::source::driver::Driver;
use crate::source::stream::LineSource;

/// The outcome of one test file.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    /// Human-readable results: one line per test, a diff per failure.
    pub text: String,
}

/// Why a test file could not be run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The file cannot be read (`saker test missing.yaml`).
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not a test file: bad YAML, no `tests:`, a malformed test
    /// (`tests: 5`). Carries the rendered diagnostic with its position.
    #[error("{0}")]
    Format(String),
    /// The rule files it names do not load; carries their diagnostics.
    #[error("{file}: the rule files do not load:\n{diagnostics}")]
    Rules { file: String, diagnostics: String },
}

/// Runs the tests of one file. `text` is the file's content; `path` locates
/// the rule files and inputs it names.
pub fn run_file(path: &Path, text: &str) -> Result<Report, SetupError> {
    let file = Arc::new(SourceFile {
        name: path.display().to_string(),
        text: text.to_string(),
    });
    let docs = yaml::parse(text).map_err(|e| {
        let d = Diagnostic::error(Code::Yaml, format!("invalid YAML: {}", e.message)).at(
            &file,
            e.pos,
            e.pos + 1,
        );
        SetupError::Format(d.to_string())
    })?;
    let root = docs
        .first()
        .filter(|d| d.as_map().is_some())
        .ok_or_else(|| {
            SetupError::Format(format!(
                "{}: a test file is a mapping with `tests:`",
                file.name
            ))
        })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let bad = |node: &Node, msg: &str| {
        SetupError::Format(
            Diagnostic::error(Code::TestFile, msg.to_string())
                .at(&file, node.pos, node.pos + 1)
                .to_string(),
        )
    };

    let sources = match root.get("rule_files") {
        None => rules::default_sources(),
        Some(n) => {
            let items = n
                .as_seq()
                .ok_or_else(|| bad(n, "`rule_files` must be a list of paths"))?;
            let paths: Vec<PathBuf> = items
                .iter()
                .filter_map(Node::as_str)
                .map(|p| base.join(p))
                .collect();
            rules::expand_paths(&paths).map_err(|e| SetupError::Read {
                path: file.name.clone(),
                source: e,
            })?
        }
    };
    let matching = match root.get("rule_matching").and_then(Node::as_str) {
        None | Some("first") => RuleMatching::First,
        Some("all") => RuleMatching::All,
        Some(_) => {
            return Err(bad(
                root.get("rule_matching").unwrap_or(root),
                "`rule_matching` is `first` or `all`",
            ))
        }
    };
    let duration = |key: &str, default: u64| -> Result<u64, SetupError> {
        match root.get(key) {
            None => Ok(default),
            Some(n) => n
                .as_str()
                .and_then(crate::window::spec::parse_duration)
                .filter(|&d| d > 0)
                .ok_or_else(|| bad(n, &format!("`{key}` must be a duration such as 1s or 5m"))),
        }
    };
    let options = rules::LoadOptions {
        resolution_ns: duration("resolution", 1_000_000_000)?,
    };
    let mut window_options = WindowOptions {
        lateness_ns: duration("lateness", 5_000_000_000)?,
        ..WindowOptions::default()
    };
    if let Some(n) = root.get("max_keys") {
        window_options.limits.max_keys = n
            .as_str()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&k| k > 0)
            .ok_or_else(|| bad(n, "`max_keys` must be a positive number"))?;
    }
    let loaded = rules::load_with(&sources, &options);
    let Some(set) = loaded.rules else {
        let diagnostics = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(ToString::to_string)
            .collect();
        return Err(SetupError::Rules {
            file: file.name.clone(),
            diagnostics,
        });
    };
    let tests = root
        .get("tests")
        .and_then(Node::as_seq)
        .ok_or_else(|| bad(root, "missing `tests:` (a list of tests)"))?;

    let mut report = Report::default();
    for (i, test) in tests.iter().enumerate() {
        let name = test
            .get("name")
            .and_then(Node::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("test #{}", i + 1));
        let input = test_input(test, base).map_err(|m| bad(test, &m))?;
        let expect = test.get("expect").ok_or_else(|| {
            bad(
                test,
                "each test needs `expect:` (a list of alerts, or [] for none)",
            )
        })?;
        let expected: Vec<&Node> = match expect.as_seq() {
            Some(items) => items.iter().collect(),
            None if expect.is_null() => Vec::new(),
            None => return Err(bad(expect, "`expect` must be a list")),
        };
        let actual = run_events(&set, matching, window_options, &input);
        match compare(&expected, &actual) {
            None => {
                report.passed += 1;
                let _ = writeln!(report.text, "ok    {}: {name}", file.name);
            }
            Some(diff) => {
                report.failed += 1;
                let _ = writeln!(report.text, "FAIL  {}: {name}\n{diff}", file.name);
            }
        }
    }
    Ok(report)
}

/// The raw input lines of a test.
fn test_input(test: &Node, base: &Path) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if let Some(events) = test.get("events") {
        let items = events.as_seq().ok_or("`events` must be a list")?;
        for e in items {
            // A string is a raw input line (noise, a --timestamps prefix,
            // an EventList); anything else is an event to serialise.
            match &e.kind {
                NodeKind::Scalar(s) => out.extend_from_slice(s.value.as_bytes()),
                _ => out.extend_from_slice(to_json(e).to_string().as_bytes()),
            }
            out.push(b'\n');
        }
    }
    if let Some(p) = test.get("input").and_then(Node::as_str) {
        let path = base.join(p);
        let data = std::fs::read(&path)
            .map_err(|e| format!("cannot read input {}: {e}", path.display()))?;
        out.extend_from_slice(&data);
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    Ok(out)
}

/// Runs the engine over the input and returns the JSON alerts.
fn run_events(
    set: &rules::RuleSet,
    matching: RuleMatching,
    options: WindowOptions,
    input: &[u8],
) -> Vec<Value> {
    let mut engine = Engine::with_options(set, matching, options);
    let mut sink = StdoutSink::new(Vec::new(), Format::Json);
    let mut source = LineSource::new(input, 1 << 20, false, "test input");
    // Reading memory and writing to a Vec cannot fail.
    let _ = Driver::new(&mut engine, &mut sink, SystemClock).run(&mut source);
    String::from_utf8_lossy(&sink.into_inner())
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `None` when the alerts match; otherwise a readable diff.
fn compare(expected: &[&Node], actual: &[Value]) -> Option<String> {
    let ok =
        expected.len() == actual.len() && expected.iter().zip(actual).all(|(e, a)| matches(e, a));
    if ok {
        return None;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  expected {} alert(s), got {}:",
        expected.len(),
        actual.len()
    );
    let n = expected.len().max(actual.len());
    for i in 0..n {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if matches(e, a) => {
                let _ = writeln!(out, "    = {}", describe_actual(a));
            }
            (Some(e), Some(a)) => {
                let _ = writeln!(out, "    - expected: {}", to_json(e));
                let _ = writeln!(out, "    + got:      {}", describe_actual(a));
                for why in mismatches(e, a) {
                    let _ = writeln!(out, "                {why}");
                }
            }
            (Some(e), None) => {
                let _ = writeln!(out, "    - missing:  {}", to_json(e));
            }
            (None, Some(a)) => {
                let _ = writeln!(out, "    + extra:    {}", describe_actual(a));
            }
            (None, None) => {}
        }
    }
    Some(out)
}

fn describe_actual(a: &Value) -> String {
    let mut short = Map::new();
    for k in [
        "rule",
        "priority",
        "time",
        "output_fields",
        "aggregate",
        "sequence",
    ] {
        if let Some(v) = a.get(k) {
            short.insert(k.to_string(), v.clone());
        }
    }
    Value::Object(short).to_string()
}

fn matches(e: &Node, a: &Value) -> bool {
    mismatches(e, a).is_empty()
}

/// What differs between an expected alert and an actual one.
fn mismatches(e: &Node, a: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let get = |k: &str| a.get(k).cloned().unwrap_or(Value::Null);
    for (k, v) in e.as_map().unwrap_or_default() {
        let key = k.as_str().unwrap_or_default();
        match key {
            "rule" | "output" => {
                if get(key).as_str() != v.as_str() {
                    out.push(format!("{key}: expected {:?}, got {}", v.as_str().unwrap_or_default(), get(key)));
                }
            }
            "priority" => {
                let want = v.as_str().and_then(rules::Priority::parse);
                let got = get("priority").as_str().and_then(rules::Priority::parse);
                if want.is_none() || want != got {
                    out.push(format!("priority: expected {:?}, got {}", v.as_str().unwrap_or_default(), get("priority")));
                }
            }
            "time" => {
                let want = v.as_str().and_then(time::parse_rfc3339);
                let got = get("time").as_str().and_then(time::parse_rfc3339);
                if want.is_none() || want != got {
                    out.push(format!("time: expected {:?}, got {}", v.as_str().unwrap_or_default(), get("time")));
                }
            }
            "state" => {
                let got = a.pointer("/aggregate/state").cloned().unwrap_or(Value::Null);
                if got.as_str() != v.as_str() {
                    out.push(format!("state: expected {:?}, got {got}", v.as_str().unwrap_or_default()));
                }
            }
            "key" => {
                let got = a
                    .pointer("/sequence/key")
                    .or_else(|| a.pointer("/aggregate/key"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let want = field_json(v);
                if got != want {
                    out.push(format!("key: expected {want}, got {got}"));
                }
            }
            "steps" => {
                let got: Value = a
                    .pointer("/sequence/steps")
                    .and_then(Value::as_array)
                    .map(|s| s.iter().map(|st| st["auditID"].clone()).collect())
                    .unwrap_or(Value::Null);
                let want = field_json(v);
                if got != want {
                    out.push(format!("steps: expected audit IDs {want}, got {got}"));
                }
            }
            "previous" => {
                let got = a.pointer("/aggregate/previous").cloned().unwrap_or(Value::Null);
                let want = v.as_str().filter(|_| !v.is_null()).and_then(time::parse_rfc3339);
                let got_ns = got.as_str().and_then(time::parse_rfc3339);
                if (v.is_null() && !got.is_null()) || (!v.is_null() && (want.is_none() || want != got_ns)) {
                    out.push(format!("previous: expected {}, got {got}", to_json(v)));
                }
            }
            "output_fields" => {
                let fields = get("output_fields");
                for (fk, fv) in v.as_map().unwrap_or_default() {
                    let name = fk.as_str().unwrap_or_default();
                    let got = fields.get(name).cloned().unwrap_or(Value::Null);
                    let want = field_json(fv);
                    if got != want {
                        out.push(format!("output_fields.{name}: expected {want}, got {got}"));
                    }
                }
            }
            other => out.push(format!(
                "unknown key `{other}` in an expected alert (use rule, priority, time, output, output_fields, state, key, steps, previous)"
            )),
        }
    }
    if e.get("rule").is_none() {
        out.push("an expected alert needs `rule`".into());
    }
    out
}

/// Expected field values are strings (all audit fields are), lists of
/// strings, or null for "not available".
fn field_json(n: &Node) -> Value {
    match &n.kind {
        NodeKind::Scalar(_) if n.is_null() => Value::Null,
        NodeKind::Scalar(s) => Value::String(s.value.clone()),
        NodeKind::Seq(items) => Value::Array(items.iter().map(field_json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), field_json(v)))
                .collect(),
        ),
    }
}

/// A YAML node as JSON, with YAML 1.2 core-schema typing of plain scalars.
pub fn to_json(n: &Node) -> Value {
    match &n.kind {
        NodeKind::Scalar(s) if s.style == Style::Plain => {
            if n.is_null() {
                Value::Null
            } else if let Some(b) = n.as_bool() {
                Value::Bool(b)
            } else if let Ok(i) = s.value.parse::<i64>() {
                Value::from(i)
            } else if let Some(f) = s.value.parse::<f64>().ok().filter(|f| f.is_finite()) {
                Value::from(f)
            } else {
                Value::String(s.value.clone())
            }
        }
        NodeKind::Scalar(s) => Value::String(s.value.clone()),
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_json(v)))
                .collect(),
        ),
    }
}

/// The tests shipped for the default rules, embedded in the binary so that
/// `saker test` with no arguments checks them.
pub const DEFAULT_TESTS: (&str, &str) = (
    "rules/tests/k8s_audit_test.yaml",
    include_str!("../rules/tests/k8s_audit_test.yaml"),
);

/// The tests of the shipped sequence and first-seen rules, embedded too.
pub const DEFAULT_STATEFUL_TESTS: (&str, &str) = (
    "rules/tests/k8s_audit_stateful_test.yaml",
    include_str!("../rules/tests/k8s_audit_stateful_test.yaml"),
);

/// Runs the embedded tests of the default rules.
pub fn run_default() -> Result<Report, SetupError> {
    let mut report = run_file(Path::new(DEFAULT_TESTS.0), DEFAULT_TESTS.1)?;
    let more = run_file(
        Path::new(DEFAULT_STATEFUL_TESTS.0),
        DEFAULT_STATEFUL_TESTS.1,
    )?;
    report.passed += more.passed;
    report.failed += more.failed;
    report.text.push_str(&more.text);
    Ok(report)
}

/// Runs a test file from disk.
pub fn run_path(path: &Path) -> Result<Report, SetupError> {
    let text = std::fs::read_to_string(path).map_err(|e| SetupError::Read {
        path: path.display().to_string(),
        source: e,
    })?;
    run_file(path, &text)
}
