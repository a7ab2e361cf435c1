//! The HTTPS receiver (`--input http`) as the API server's audit webhook
//! backend meets it: real TLS with openssl-made certificates, client
//! certificates and tokens, several senders that retry non-2xx answers
//! with backoff (as the webhook backend does), refusals, a SIGKILL under
//! load, and a certificate replaced while running. Requests are made by
//! curl, an HTTP client that is not ours.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::net::*;
use super::pki::Pki;
use super::*;

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("saker-http-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A CA, a server certificate, a client certificate it signs, one from
/// another CA, and a token file.
pub fn pki(dir: &Path) -> Pki {
    let p = Pki::new(&dir.join("pki"));
    p.ca("ca");
    p.ca("other");
    p.cert("server", "127.0.0.1", "ca", true);
    p.cert("apiserver", "kube-apiserver", "ca", false);
    p.cert("stranger", "stranger", "other", false);
    std::fs::write(p.dir.join("token"), "s3cret-token\n").unwrap();
    p
}

/// Starts the receiver on `port` with TLS, client certificates and the
/// token; alerts go to `out`.
pub fn receiver(p: &Pki, port: u16, out: &Path, extra: &[&str]) -> Killed {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap();
    let child = receiver_command(p, port, extra)
        .stdout(Stdio::from(out))
        .spawn()
        .unwrap();
    wait_up(p, port);
    Killed(child)
}

/// `saker run --input http` on `port` with TLS, client certificates and
/// the token, and `extra` flags; stdout still to be set.
pub fn receiver_command(p: &Pki, port: u16, extra: &[&str]) -> Command {
    let mut c = saker();
    c.args([
        "run",
        "--input",
        "http",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .args([
        "--tls-cert",
        &p.path("server.pem"),
        "--tls-key",
        &p.path("server.key"),
    ])
    .args([
        "--tls-client-ca",
        &p.path("ca.pem"),
        "--http-token-file",
        &p.path("token"),
    ])
    .arg("--no-summary")
    .args(extra)
    .stderr(Stdio::null());
    c
}

pub fn wait_up(p: &Pki, port: u16) {
    let up = wait_until(Duration::from_secs(20), || {
        (curl(p, port, "/healthz", &Post::get()).0 == 200).then_some(())
    });
    assert!(up.is_some(), "the receiver did not come up on {port}");
}

/// How a request is made.
#[derive(Clone, Copy)]
pub struct Post<'a> {
    pub body: Option<&'a Path>,
    pub cert: Option<&'a str>,
    pub token: Option<&'a str>,
    /// More headers, as `name: value`.
    pub headers: &'a [&'a str],
}

impl Post<'_> {
    pub fn get() -> Self {
        Post {
            body: None,
            cert: None,
            token: None,
            headers: &[],
        }
    }
}

/// One request by curl: (status, body); status 0 when no HTTP answer came
/// (a refused TLS handshake, a closed port).
pub fn curl(p: &Pki, port: u16, path: &str, req: &Post) -> (u16, String) {
    let a = curl_answer(p, port, path, req);
    (a.code, a.body)
}

/// What curl got back.
pub struct Answer {
    pub code: u16,
    pub body: String,
    /// The response's headers, names lowercased.
    pub head: String,
}

pub fn curl_answer(p: &Pki, port: u16, path: &str, req: &Post) -> Answer {
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--max-time",
        "60",
        "--cacert",
        &p.path("ca.pem"),
        "-D",
        "/dev/stderr",
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(name) = req.cert {
        c.args([
            "--cert",
            &p.path(&format!("{name}.pem")),
            "--key",
            &p.path(&format!("{name}.key")),
        ]);
    }
    if let Some(t) = req.token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    for h in req.headers {
        c.args(["-H", h]);
    }
    if let Some(body) = req.body {
        c.args(["-H", "Content-Type: application/json", "--data-binary"]);
        c.arg(format!("@{}", body.display()));
    }
    c.arg(format!("https://127.0.0.1:{port}{path}"));
    let out = c.output().expect("curl (installed by scripts/test)");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Answer {
        code: code.trim().parse().unwrap_or(0),
        body: body.to_string(),
        head: String::from_utf8_lossy(&out.stderr).to_ascii_lowercase(),
    }
}

/// What the webhook backend does with a batch: post it, and on anything
/// but 2xx wait (doubling, up to 2 s) and post it again. Returns when it
/// was accepted.
fn send_like_the_webhook(p: &Pki, port: &Mutex<u16>, body: &Path) -> Instant {
    let mut backoff = Duration::from_millis(50);
    let start = Instant::now();
    loop {
        let to = *port.lock().unwrap();
        let req = Post {
            body: Some(body),
            cert: Some("apiserver"),
            token: Some("s3cret-token"),
            headers: &[],
        };
        let (code, _) = curl(p, to, "/k8s-audit", &req);
        if (200..300).contains(&code) {
            return Instant::now();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "a batch was never accepted (last {code})"
        );
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// An `EventList` of `n` execs into pods `{tag}-0` … (one alert each).
fn batch(dir: &Path, tag: &str, n: usize) -> PathBuf {
    let items: Vec<String> = (0..n)
        .map(|i| exec_event(&format!("{tag}-{i}"), (i % 60) as u32))
        .collect();
    let path = dir.join(format!("{tag}.json"));
    std::fs::write(
        &path,
        format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
            items.join(",")
        ),
    )
    .unwrap();
    path
}

/// How many "Exec Into Pod" alerts name each pod, in the JSON lines of
/// `files`.
pub fn alerts_by_pod(files: &[&Path]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap_or_default().lines() {
            let Ok(a) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if a["rule"] != "Exec Into Pod" {
                continue;
            }
            if let Some(pod) = a["output_fields"]["ka.target.name"].as_str() {
                *out.entry(pod.to_string()).or_default() += 1;
            }
        }
    }
    out
}

pub fn stop(mut k: Killed) {
    // SIGTERM: what was taken in is evaluated and answered first.
    let _ = Command::new("kill")
        .args(["-TERM", &k.0.id().to_string()])
        .status();
    let _ = wait_until(Duration::from_secs(10), || k.0.try_wait().ok().flatten());
}

#[test]
fn concurrent_senders_get_every_alert_exactly_once() {
    every_alert_exactly_once("senders", &[]);
}

#[test]
fn concurrent_senders_get_every_alert_exactly_once_on_worker_threads() {
    every_alert_exactly_once("senders-threads", &["--threads", "2"]);
}

fn every_alert_exactly_once(name: &str, extra: &[&str]) {
    let dir = tmp(name);
    let p = pki(&dir);
    let port = free_port();
    let out = dir.join("alerts.jsonl");
    let saker = receiver(&p, port, &out, extra);
    let port = Arc::new(Mutex::new(port));
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let batches: Vec<PathBuf> = (0..5)
                .map(|b| batch(&dir, &format!("s{s}b{b}"), 400))
                .collect();
            let (p, port) = (Pki::new(&p.dir), port.clone());
            std::thread::spawn(move || {
                for b in &batches {
                    send_like_the_webhook(&p, &port, b);
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    stop(saker);
    let got = alerts_by_pod(&[&out]);
    assert_eq!(got.len(), 4 * 5 * 400, "every event alerted");
    assert!(got.values().all(|&n| n == 1), "no alert twice");
}

#[test]
fn refusals_say_why_and_a_full_queue_is_retried() {
    let dir = tmp("refusals");
    let p = pki(&dir);
    let port = free_port();
    let out = dir.join("alerts.jsonl");
    let small = batch(&dir, "small", 3);
    let big = batch(&dir, "big", 2000);
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{\"kind\":\"EventList\",\"items\":[{\"auditID\":").unwrap();
    let saker = receiver(&p, port, &out, &["--max-body-bytes", "600000"]);
    let good = Post {
        body: Some(&small),
        cert: Some("apiserver"),
        token: Some("s3cret-token"),
        headers: &[],
    };
    let cases = [
        (
            "no client certificate",
            Post { cert: None, ..good },
            401,
            "client certificate",
        ),
        (
            "no token",
            Post {
                token: None,
                ..good
            },
            401,
            "bearer token",
        ),
        (
            "a wrong token",
            Post {
                token: Some("guess"),
                ..good
            },
            403,
            "not accepted",
        ),
        (
            "a garbage body",
            Post {
                body: Some(&garbage),
                ..good
            },
            400,
            "not a JSON object",
        ),
        (
            "an oversized body",
            Post {
                body: Some(&big),
                ..good
            },
            413,
            "--max-body-bytes",
        ),
    ];
    for (what, req, code, why) in cases {
        let (got, body) = curl(&p, port, "/k8s-audit", &req);
        assert_eq!(got, code, "{what}: {body}");
        assert!(body.contains(why), "{what}: {body}");
    }
    // A certificate from another CA: the handshake itself is refused.
    let stranger = Post {
        cert: Some("stranger"),
        ..good
    };
    assert_eq!(curl(&p, port, "/k8s-audit", &stranger).0, 0);
    assert_eq!(curl(&p, port, "/k8s-audit", &good).0, 200);
    stop(saker);
    // Nothing of the refused requests was evaluated: three alerts only.
    assert_eq!(alerts_by_pod(&[&out]).len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression: a body longer than `--max-line-bytes` was answered 200 and
/// skipped whole as one over-long line.
#[test]
fn a_body_longer_than_the_line_limit_is_evaluated() {
    let dir = tmp("long");
    let p = pki(&dir);
    let port = free_port();
    let out = dir.join("alerts.jsonl");
    let long = batch(&dir, "long", 400);
    assert!(std::fs::metadata(&long).unwrap().len() > 100_000);
    let saker = receiver(&p, port, &out, &["--max-line-bytes", "100000"]);
    let req = Post {
        body: Some(&long),
        cert: Some("apiserver"),
        token: Some("s3cret-token"),
        headers: &[],
    };
    assert_eq!(curl(&p, port, "/k8s-audit", &req).0, 200);
    assert_eq!(alerts_by_pod(&[&out]).len(), 400);
    stop(saker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_queue_answers_429_until_it_drains() {
    let dir = tmp("full");
    let p = pki(&dir);
    let port = free_port();
    let a = batch(&dir, "a", 400);
    let b = batch(&dir, "b", 400);
    let max = std::fs::metadata(&a).unwrap().len() + 1000;
    // Output that nobody reads yet: the first batch's alerts fill the pipe,
    // so it stays in the queue, holding the whole byte budget.
    let (max_s, metrics_port) = (max.to_string(), free_port());
    let metrics = metrics_port.to_string();
    let extra = [
        "--max-body-bytes",
        &max_s,
        "--http-queue-bytes",
        &max_s,
        "--metrics-listen",
        &metrics,
    ];
    let mut child: Child = receiver_command(&p, port, &extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let saker = Killed(child);
    wait_up(&p, port);
    let pa = Pki::new(&p.dir);
    let first = std::thread::spawn(move || {
        let req = Post {
            body: Some(&a),
            cert: Some("apiserver"),
            token: Some("s3cret-token"),
            headers: &[],
        };
        curl(&pa, port, "/k8s-audit", &req).0
    });
    // The first batch holds the budget once it is read and queued.
    let held = wait_until(Duration::from_secs(30), || {
        let m = http_ok(metrics_port, "/metrics")?;
        let line = m
            .lines()
            .find(|l| l.starts_with("saker_http_queue_bytes "))?;
        (line.split(' ').nth(1)? != "0").then_some(())
    });
    assert!(held.is_some(), "the first batch never got into the queue");
    let req = Post {
        body: Some(&b),
        cert: Some("apiserver"),
        token: Some("s3cret-token"),
        headers: &[],
    };
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "--cacert",
        &p.path("ca.pem"),
        "--cert",
        &p.path("apiserver.pem"),
        "--key",
        &p.path("apiserver.key"),
        "-H",
        "Authorization: Bearer s3cret-token",
        "--data-binary",
    ]);
    c.arg(format!("@{}", b.display()))
        .arg(format!("https://127.0.0.1:{port}/k8s-audit"));
    let out = c.output().unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(head.starts_with("http/1.1 429"), "{head}{err}");
    assert!(head.contains("retry-after: 1"), "{head}");
    // Reading the output lets the first batch through; then the second is
    // accepted.
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut all);
        all
    });
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(curl(&p, port, "/k8s-audit", &req).0, 200);
    stop(saker);
    let text = reader.join().unwrap();
    let execs = text
        .lines()
        .filter(|l| l.contains("\"rule\":\"Exec Into Pod\""))
        .count();
    assert_eq!(execs, 800, "both batches alerted, once");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigkill_under_load_loses_no_answered_batch() {
    no_answered_batch_lost("kill", &[]);
}

#[test]
fn sigkill_under_load_loses_no_answered_batch_on_worker_threads() {
    // A request is answered once the workers' alerts of all its documents
    // are out, whichever order the workers finish in.
    no_answered_batch_lost("kill-threads", &["--threads", "2"]);
}

fn no_answered_batch_lost(name: &str, extra: &[&str]) {
    let dir = tmp(name);
    let p = pki(&dir);
    let port_n = free_port();
    let (out1, out2) = (dir.join("first.jsonl"), dir.join("second.jsonl"));
    let first = receiver(&p, port_n, &out1, extra);
    let port = Arc::new(Mutex::new(port_n));
    let answered = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let senders: Vec<_> = (0..3)
        .map(|s| {
            let batches: Vec<(String, PathBuf)> = (0..12)
                .map(|b| {
                    let tag = format!("k{s}b{b}");
                    let path = batch(&dir, &tag, 400);
                    (tag, path)
                })
                .collect();
            let (p, port, answered) = (Pki::new(&p.dir), port.clone(), answered.clone());
            std::thread::spawn(move || {
                for (tag, b) in &batches {
                    let at = send_like_the_webhook(&p, &port, b);
                    answered.lock().unwrap().push((tag.clone(), at));
                }
            })
        })
        .collect();
    // Kill once some batches are in, while the senders keep going.
    assert!(
        wait_until(Duration::from_secs(60), || (answered.lock().unwrap().len()
            >= 6)
            .then_some(()))
        .is_some()
    );
    let mut first = first;
    first.0.kill().unwrap();
    let _ = first.0.wait();
    let killed_at = Instant::now();
    drop(first);
    std::thread::sleep(Duration::from_millis(500));
    let second = receiver(&p, port_n, &out2, extra);
    for s in senders {
        s.join().unwrap();
    }
    stop(second);
    let before = alerts_by_pod(&[&out1]);
    let all = alerts_by_pod(&[&out1, &out2]);
    let answered = answered.lock().unwrap();
    assert_eq!(answered.len(), 36);
    let mut early = 0;
    for (tag, at) in answered.iter() {
        for i in 0..400 {
            let pod = format!("{tag}-{i}");
            assert!(all.contains_key(&pod), "{pod} never alerted");
            if *at < killed_at {
                assert!(
                    before.contains_key(&pod),
                    "{pod} was answered 200 before the kill but its alert is missing"
                );
            }
        }
        early += usize::from(*at < killed_at);
    }
    assert!(early >= 6, "{early}");
    // Batches evaluated but not answered before the kill come again.
    let twice = all.values().filter(|&&n| n > 1).count();
    eprintln!("sigkill: {early} of 36 batches answered before the kill; {twice} alerts repeated after the restart");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_replaced_certificate_is_served_to_new_connections() {
    let dir = tmp("rotate");
    let p = pki(&dir);
    let port = free_port();
    let out = dir.join("alerts.jsonl");
    let saker = receiver(&p, port, &out, &[]);
    let old = p.fingerprint_of(&p.dir.join("server.pem"));
    assert_eq!(p.served_fingerprint(port), old);
    // What cert-manager does: new files in place (written aside, renamed).
    p.cert("server-new", "127.0.0.1", "ca", true);
    std::fs::rename(p.dir.join("server-new.key"), p.dir.join("server.key")).unwrap();
    std::fs::rename(p.dir.join("server-new.pem"), p.dir.join("server.pem")).unwrap();
    let new = p.fingerprint_of(&p.dir.join("server.pem"));
    assert_ne!(new, old);
    let served = wait_until(Duration::from_secs(10), || {
        let f = p.served_fingerprint(port);
        (f == new).then_some(f)
    });
    assert!(served.is_some(), "still serving the old certificate");
    // And requests still work on it.
    let b = batch(&dir, "after", 2);
    let req = Post {
        body: Some(&b),
        cert: Some("apiserver"),
        token: Some("s3cret-token"),
        headers: &[],
    };
    assert_eq!(curl(&p, port, "/k8s-audit", &req).0, 200);
    stop(saker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listening_beyond_loopback_needs_tls_and_authentication() {
    let out = saker()
        .args(["run", "--input", "http", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-cert")
            && err.contains("--tls-client-ca, --http-token-file or --http-access-key-file"),
        "{err}"
    );
    let dir = tmp("beyond");
    let p = pki(&dir);
    let (cert, key) = (p.path("server.pem"), p.path("server.key"));
    let out = saker()
        .args([
            "run",
            "--input",
            "http",
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("an authentication method") && !err.contains("TLS (--tls-cert"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
