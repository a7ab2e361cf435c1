//! `--http-output`: alerts posted one per request as Falco JSON, to a
//! loopback receiver that refuses what falcosidekick refuses (falcosidekick
//! itself is not packaged for this machine). The receiver is hyper on its
//! own tokio runtime; it counts connections, so keep-alive shows.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::net::*;
use super::*;

/// Falco's priorities, as falcosidekick parses them.
const PRIORITIES: [&str; 8] = [
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "informational",
    "debug",
];

/// What the receiver saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Accepted bodies, in arrival order.
    pub accepted: Vec<Value>,
    /// Why each refused body was refused.
    pub refused: Vec<String>,
    pub connections: usize,
    /// The request targets, as sent (absolute through a proxy).
    pub targets: Vec<String>,
}

/// falcosidekick's checks on a posted alert: `None` when it takes it.
fn refusal(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    if content_type != Some("application/json") {
        return Some(format!("content type {content_type:?}"));
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Some(format!("not JSON: {e}")),
    };
    let priority = v["priority"].as_str().unwrap_or("").to_ascii_lowercase();
    if !PRIORITIES.contains(&priority.as_str()) {
        return Some(format!("unknown priority in {v}"));
    }
    if v["rule"].as_str().is_none_or(str::is_empty) || v["time"].as_str().is_none() {
        return Some(format!("no rule or time in {v}"));
    }
    if v["output_fields"].as_object().is_none_or(|m| m.is_empty()) {
        return Some(format!("empty output_fields in {v}"));
    }
    None
}

async fn receive(req: Request<Incoming>, seen: Arc<Mutex<Seen>>) -> Response<Full<Bytes>> {
    let target = req.uri().to_string();
    let ctype = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut s = seen.lock().unwrap();
    s.targets.push(target);
    let (status, text) = match refusal(ctype.as_deref(), &body) {
        None => {
            s.accepted.push(serde_json::from_slice(&body).unwrap());
            (StatusCode::OK, "")
        }
        Some(why) => {
            s.refused.push(why);
            (StatusCode::BAD_REQUEST, "bad alert\n")
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r
}

/// A falcosidekick-like receiver on 127.0.0.1:`port`; stops when dropped.
pub struct Receiver {
    pub seen: Arc<Mutex<Seen>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start(port: u16) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
        let shared = seen.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.lock().unwrap().connections += 1;
                let seen = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(receive(req, seen).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            seen,
            _runtime: runtime,
        }
    }

    pub fn accepted(&self) -> usize {
        self.seen.lock().unwrap().accepted.len()
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saker-it-http-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The bundled sample, then its first lines again fifteen minutes later:
/// the shipped absence rule fires in the silence and resolves after it.
fn replay_file(dir: &Path) -> PathBuf {
    let sample = std::fs::read_to_string(root().join("examples/audit-sample.jsonl")).unwrap();
    let mut text = sample.clone();
    for line in sample.lines().filter(|l| l.starts_with('{')).take(5) {
        let mut e: Value = serde_json::from_str(line).unwrap();
        e["requestReceivedTimestamp"] = "2025-06-01T00:15:00.000000Z".into();
        e["stageTimestamp"] = "2025-06-01T00:15:00.000001Z".into();
        text.push_str(&e.to_string());
        text.push('\n');
    }
    let path = dir.join("replay.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

fn rule_args() -> Vec<String> {
    vec![
        "--rules".into(),
        root().join("rules").display().to_string(),
        "--rules".into(),
        golden("http_output/rules.yaml").display().to_string(),
    ]
}

/// `saker: http-output: N alerts sent in …` → the numbers, in order.
fn summary_numbers(stderr: &str) -> Vec<u64> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("saker: http-output:"))
        .unwrap_or_else(|| panic!("no http-output summary in: {stderr}"));
    line.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[test]
fn every_alert_of_a_replay_reaches_a_falcosidekick_like_receiver_as_stdout_prints_it() {
    let dir = tmp("replay");
    let port = free_port();
    let receiver = Receiver::start(port);
    let input = replay_file(&dir);
    let mut args = vec![
        "run".to_string(),
        "--input".into(),
        input.display().to_string(),
    ];
    args.extend(rule_args());
    args.extend(["--http-output".into(), format!("http://127.0.0.1:{port}/")]);
    let out = saker().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let printed = alerts(&out);
    let seen = receiver.seen.lock().unwrap();
    assert!(seen.refused.is_empty(), "refused: {:?}", seen.refused);
    assert_eq!(
        seen.accepted, printed,
        "the receiver got what stdout printed"
    );
    let states = |rule: &str| -> Vec<String> {
        printed
            .iter()
            .filter(|a| a["rule"] == rule)
            .map(|a| a["aggregate"]["state"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(states("Audit Stream Silent"), ["firing", "resolved"]);
    let busy = states("Busy Identity Test");
    assert!(
        busy.contains(&"firing".to_string()) && busy.contains(&"resolved".to_string()),
        "{busy:?}"
    );
    let silent = printed
        .iter()
        .find(|a| a["rule"] == "Audit Stream Silent")
        .unwrap();
    assert_eq!(silent["output_fields"]["agg.window"], "10m", "{silent}");
    assert_eq!(silent["output_fields"]["agg.value"], "0", "{silent}");
    let busy = printed
        .iter()
        .find(|a| a["rule"] == "Busy Identity Test")
        .unwrap();
    assert!(busy["output_fields"]["ka.user.name"].is_string(), "{busy}");
    assert_eq!(busy["output_fields"]["agg.threshold"], "10", "{busy}");
    assert!(printed.len() > 30, "{} alerts", printed.len());
    // One connection, kept alive, carried the alerts.
    assert!(
        seen.connections * 4 < seen.accepted.len(),
        "{} connections for {} alerts",
        seen.connections,
        seen.accepted.len()
    );
    let n = printed.len() as u64;
    assert_eq!(summary_numbers(&stderr), [n, n, 0, 0, 0], "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits for a metric line that starts with `prefix` and returns its value.
fn metric(port: u16, prefix: &str) -> Option<u64> {
    http_ok(port, "/metrics")?
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Replays the sample to a receiver that comes up only after saker has read
/// all of it; returns saker's output and the receiver.
fn late_receiver(queue: usize) -> (std::process::Output, Receiver, u64) {
    let dir = tmp(&format!("late-{queue}"));
    let (port, metrics_port) = (free_port(), free_port());
    let input = replay_file(&dir);
    let mut args = vec![
        "run".to_string(),
        "--input".into(),
        input.display().to_string(),
    ];
    args.extend(rule_args());
    args.extend([
        "--http-output".into(),
        format!("http://127.0.0.1:{port}/"),
        "--http-output-queue".into(),
        queue.to_string(),
        "--http-output-drain".into(),
        "60s".into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
    ]);
    let child = saker()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("{{url=\"http://127.0.0.1:{port}/\"}} ");
    let events = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .count() as u64;
    // All events are read and the receiver is still down: saker is draining.
    let decoded = r#"saker_events_total{source="file",outcome="decoded"} "#;
    let failures = format!("saker_http_output_request_failures_total{url}");
    wait_until(Duration::from_secs(20), || {
        (metric(metrics_port, decoded)? == events && metric(metrics_port, &failures)? >= 2)
            .then_some(())
    })
    .expect("saker never read the whole input and failed to send");
    // The end of input's last alerts follow the last event at once.
    std::thread::sleep(Duration::from_millis(500));
    let dropped = metric(
        metrics_port,
        &format!("saker_http_output_alerts_dropped_total{url}"),
    )
    .expect("the dropped counter");
    let receiver = Receiver::start(port);
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (out, receiver, dropped)
}

#[test]
fn a_receiver_that_comes_back_gets_everything_queued() {
    let (out, receiver, dropped) = late_receiver(10_000);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(dropped, 0);
    let printed = alerts(&out);
    assert_eq!(receiver.seen.lock().unwrap().accepted, printed);
    let n = summary_numbers(&stderr);
    assert_eq!(n[0], printed.len() as u64, "{stderr}");
    assert!(n[2] >= 2, "failed requests were counted: {stderr}");
    assert_eq!((n[3], n[4]), (0, 0), "{stderr}");
}

#[test]
fn a_small_queue_drops_the_oldest_per_event_alerts_and_counts_them() {
    let (out, receiver, dropped) = late_receiver(5);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let printed = alerts(&out);
    let got = receiver.seen.lock().unwrap().accepted.clone();
    let n = summary_numbers(&stderr);
    let (sent, failed, dropped_total) = (n[0], n[2], n[4]);
    assert_eq!(sent, got.len() as u64, "{stderr}");
    assert!(failed >= 2, "{stderr}");
    assert!(dropped > 0 && dropped_total >= dropped, "{stderr}");
    assert_eq!(
        sent + dropped_total,
        printed.len() as u64,
        "nothing lost silently: {stderr}"
    );
    // What arrived is what stdout printed, in order, less the drops: the
    // windowed alerts (the last ones printed) outlast per-event ones.
    let mut rest = printed.iter();
    for a in &got {
        assert!(rest.any(|p| p == a), "not printed, or out of order: {a}");
    }
    let windowed = printed
        .iter()
        .filter(|a| a.get("aggregate").is_some())
        .count();
    assert!(
        got.iter().filter(|a| a.get("aggregate").is_some()).count() >= windowed.min(4),
        "windowed alerts were dropped before per-event ones: {got:?}"
    );
}

fn exec_input(dir: &Path) -> PathBuf {
    let path = dir.join("exec.jsonl");
    let text: String = (0..3)
        .map(|i| exec_event(&format!("p-{i}"), i) + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn run_with_proxy_env(input: &Path, url: &str, env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = saker();
    cmd.args([
        "run",
        "--input",
        &input.display().to_string(),
        "--http-output",
        url,
    ]);
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn http_proxy_is_used_and_no_proxy_bypasses_it() {
    let dir = tmp("proxy");
    let input = exec_input(&dir);
    // The receiver plays the proxy: saker asks it for a host that does not
    // resolve, in absolute form.
    let port = free_port();
    let proxy = Receiver::start(port);
    let out = run_with_proxy_env(
        &input,
        "http://sidekick.invalid:2801/",
        &[("HTTP_PROXY", format!("http://127.0.0.1:{port}"))],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http-output: 3 alerts sent"), "{stderr}");
    assert_eq!(proxy.accepted(), 3);
    assert!(
        proxy
            .seen
            .lock()
            .unwrap()
            .targets
            .iter()
            .all(|t| t == "http://sidekick.invalid:2801/"),
        "{:?}",
        proxy.seen.lock().unwrap().targets
    );
    // NO_PROXY: a proxy that is down is not asked for the receiver's host.
    let direct_port = free_port();
    let direct = Receiver::start(direct_port);
    let out = run_with_proxy_env(
        &input,
        &format!("http://127.0.0.1:{direct_port}/"),
        &[
            ("HTTP_PROXY", format!("http://127.0.0.1:{}", free_port())),
            ("NO_PROXY", "127.0.0.1".into()),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("http-output: 3 alerts sent in 3 requests, 0 failed"),
        "{stderr}"
    );
    assert_eq!(direct.accepted(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_http_output_urls_exit_2() {
    let out = run_with_stdin(&["run", "--http-output", "sidekick:2801"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--http-output: sidekick:2801"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
