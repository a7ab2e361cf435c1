//! The Alertmanager output against real Alertmanagers (Debian's
//! `prometheus-alertmanager` 0.25, installed by scripts/test), on 127.0.0.1.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::net::*;
use super::pki::Pki;
use super::*;

/// Starts an Alertmanager on `port`, notifying the webhook at `hook`.
fn alertmanager(dir: &Path, port: u16, hook: u16) -> Killed {
    alertmanager_waiting(dir, port, hook, "0s")
}

/// An Alertmanager whose route waits `group_wait` before a first
/// notification, as real routes do (30s by default).
fn alertmanager_waiting(dir: &Path, port: u16, hook: u16, group_wait: &str) -> Killed {
    let bin = "/usr/bin/prometheus-alertmanager";
    assert!(
        Path::new(bin).exists(),
        "prometheus-alertmanager is not installed: run scripts/test, which installs it"
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("am.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: ['...']\n  group_wait: {group_wait}\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook}/\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .current_dir(dir)
        .args([
            "--config.file=am.yml".to_string(),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while http_ok(port, "/-/ready").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "Alertmanager did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Killed(child)
}

/// A webhook receiver: collects the JSON bodies Alertmanager posts.
fn webhook() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            s.set_read_timeout(Some(Duration::from_secs(2))).ok();
            // Read headers, then Content-Length bytes of body.
            loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        if let Ok(v) = serde_json::from_str(&body[..len]) {
                            sink.lock().unwrap().push(v);
                        }
                        break;
                    }
                }
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, got)
}

fn alerts_in(port: u16) -> Vec<Value> {
    http_ok(port, "/api/v2/alerts")
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default()
}

fn denied(i: u32) -> String {
    format!(
        r#"{{"auditID":"d{i}","stage":"ResponseComplete","verb":"get","user":{{"username":"intruder"}},"objectRef":{{"resource":"secrets","namespace":"ci"}},"responseStatus":{{"metadata":{{}},"code":403}},"stageTimestamp":"{}"}}"#,
        now_rfc3339()
    )
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saker-it-am-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn windowed_alert_fires_in_alertmanager_and_its_resolve_reaches_the_receiver() {
    let dir = tmp("window");
    let (hook, received) = webhook();
    let (am_port, metrics_port) = (free_port(), free_port());
    let _am = alertmanager(&dir, am_port, hook);
    let rules = golden("alertmanager/rules.yaml");
    let (_saker, mut stdin) = spawn_saker(&[
        "run",
        "--rules",
        rules.to_str().unwrap(),
        "--lateness",
        "0s",
        "--alertmanager",
        &format!("http://127.0.0.1:{am_port}"),
        "--alertmanager-resend",
        "1s",
        "--alertmanager-resolve-delay",
        "1s",
        "--metrics-listen",
        &format!("127.0.0.1:{metrics_port}"),
        "--no-summary",
    ]);
    for i in 0..3 {
        writeln!(stdin, "{}", denied(i)).unwrap();
    }
    stdin.flush().unwrap();
    // Firing: visible in Alertmanager with our labels and annotations.
    let alert = wait_until(Duration::from_secs(20), || {
        alerts_in(am_port)
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "Forbidden Burst Test")
    })
    .expect("the windowed alert never reached Alertmanager");
    let labels = &alert["labels"];
    assert_eq!(labels["severity"], "warning");
    assert_eq!(labels["priority"], "Warning");
    assert_eq!(labels["source"], "k8s_audit");
    assert_eq!(labels["team"], "platform");
    assert_eq!(labels["ka_user_name"], "intruder");
    assert_eq!(
        labels.as_object().unwrap().len(),
        6,
        "unexpected labels: {labels}"
    );
    assert_eq!(
        alert["annotations"]["description"],
        "three 403s within two seconds by one user"
    );
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks.example.com/forbidden"
    );
    assert!(alert["annotations"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("intruder was denied 3 times (firing)"));
    // Quiet stream: the window drains, the alert resolves, and Alertmanager
    // tells the receiver (send_resolved: true).
    let resolved = wait_until(Duration::from_secs(30), || {
        received
            .lock()
            .unwrap()
            .iter()
            .find(|n| n["status"] == "resolved")
            .cloned()
    })
    .expect("the resolve never reached the webhook receiver");
    assert_eq!(
        resolved["alerts"][0]["labels"]["alertname"],
        "Forbidden Burst Test"
    );
    // The output's counters are on the metrics endpoint.
    let metrics = http_ok(metrics_port, "/metrics").expect("metrics");
    let sent: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("saker_alertmanager_alerts_sent_total "))
        .and_then(|v| v.parse().ok())
        .expect("saker_alertmanager_alerts_sent_total");
    assert!(sent >= 2, "firing and resolved were sent: {metrics}");
    assert!(
        metrics.contains("saker_alertmanager_queue_length 0"),
        "{metrics}"
    );
    drop(stdin);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ha_pair_gets_everything_and_a_restart_loses_nothing() {
    let (dir1, dir2) = (tmp("ha1"), tmp("ha2"));
    let (hook, _received) = webhook();
    let (p1, p2) = (free_port(), free_port());
    let _am1 = alertmanager(&dir1, p1, hook);
    let am2 = alertmanager(&dir2, p2, hook);
    let rules = golden("alertmanager/rules.yaml");
    let (_saker, mut stdin) = spawn_saker(&[
        "run",
        "--rules",
        rules.to_str().unwrap(),
        "--alertmanager",
        &format!("http://127.0.0.1:{p1}"),
        "--alertmanager",
        &format!("http://127.0.0.1:{p2}"),
        "--no-summary",
    ]);
    let count = |port: u16| {
        alerts_in(port)
            .iter()
            .filter(|a| a["labels"]["alertname"] == "Exec Test")
            .count()
    };
    for i in 0..5 {
        writeln!(stdin, "{}", exec_event(&format!("before-{i}"), i)).unwrap();
    }
    stdin.flush().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || (count(p1) == 5
            && count(p2) == 5)
            .then_some(()))
        .is_some(),
        "both members should have 5 alerts, have {} and {}: {:?}",
        count(p1),
        count(p2),
        alerts_in(p1)
    );
    // Stop the second member, keep sending, then start it again.
    drop(am2);
    for i in 0..5 {
        writeln!(stdin, "{}", exec_event(&format!("during-{i}"), 10 + i)).unwrap();
    }
    stdin.flush().unwrap();
    assert!(wait_until(Duration::from_secs(20), || (count(p1) == 10).then_some(())).is_some());
    std::thread::sleep(Duration::from_secs(2));
    let _am2 = alertmanager(&dir2, p2, hook);
    // Alertmanager keeps alerts in memory: what it had before its stop is
    // gone with it. What saker queued while it was down must all arrive.
    let during = |port: u16| {
        alerts_in(port)
            .iter()
            .filter(|a| {
                a["labels"]["ka_target_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("during-"))
            })
            .count()
    };
    let got = wait_until(Duration::from_secs(30), || (during(p2) == 5).then_some(()));
    assert!(
        got.is_some(),
        "after its restart the second member has {} of the 5 alerts sent while it was down",
        during(p2)
    );
    assert_eq!(during(p1), 5);
    // Per-event labels: the scalar output fields, never a timestamp.
    let a = alerts_in(p2)
        .into_iter()
        .find(|a| a["labels"]["ka_target_name"] == "during-3")
        .expect("during-3");
    assert_eq!(a["labels"]["ka_user_name"], "alice");
    assert!(
        a["labels"].get("evt_time").is_none(),
        "a timestamp became a label: {}",
        a["labels"]
    );
    drop(stdin);
    let _ = std::fs::remove_dir_all(&dir1);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn tls_with_a_custom_ca_and_a_bearer_token_through_a_proxy() {
    let dir = tmp("tls");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let (hook, _received) = webhook();
    let (am_port, proxy_port) = (free_port(), free_port());
    let _am = alertmanager(&dir.join("am"), am_port, hook);
    // A private CA and a certificate for 127.0.0.1 signed by it.
    let pki = Pki::new(&dir);
    pki.ca("ca");
    pki.cert("srv", "127.0.0.1", "ca", true);
    // nginx terminates TLS and checks the token, as a proxy in front of
    // Alertmanager would.
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  server {{\n    listen 127.0.0.1:{proxy_port} ssl;\n    ssl_certificate {d}/srv.pem;\n    ssl_certificate_key {d}/srv.key;\n    location / {{\n      if ($http_authorization != \"Bearer s3cret\") {{ return 401 \"bad token\\n\"; }}\n      proxy_pass http://127.0.0.1:{am_port};\n    }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let nginx = "/usr/sbin/nginx";
    assert!(
        Path::new(nginx).exists(),
        "nginx is not installed: run scripts/test, which installs it"
    );
    let _proxy = Killed(
        Command::new(nginx)
            .args(["-c", &format!("{d}/nginx.conf"), "-p", &format!("{d}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            proxy_port
        ))
        .ok())
        .is_some(),
        "nginx did not start"
    );
    std::fs::write(dir.join("token"), "s3cret\n").unwrap();
    std::fs::write(dir.join("wrong"), "guess\n").unwrap();
    let events: String = (0..3)
        .map(|i| exec_event(&format!("tls-{i}"), i) + "\n")
        .collect();
    std::fs::write(dir.join("events.jsonl"), events).unwrap();
    let rules = golden("alertmanager/rules.yaml");
    let run = |token: &str| {
        saker()
            .args([
                "run",
                "--rules",
                rules.to_str().unwrap(),
                "--input",
                &format!("{d}/events.jsonl"),
                "--alertmanager",
                &format!("https://127.0.0.1:{proxy_port}"),
                "--alertmanager-ca-file",
                &format!("{d}/ca.pem"),
                "--alertmanager-bearer-token-file",
                &format!("{d}/{token}"),
            ])
            .output()
            .unwrap()
    };
    let out = run("token");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("alertmanager: 3 alerts sent"), "{err}");
    let tls_alerts = alerts_in(am_port)
        .iter()
        .filter(|a| {
            a["labels"]["ka_target_name"]
                .as_str()
                .is_some_and(|n| n.starts_with("tls-"))
        })
        .count();
    assert_eq!(tls_alerts, 3);
    // A wrong token: the proxy answers 401, which is logged and counted.
    let out = run("wrong");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 rejected"), "{err}");
    assert!(err.contains("bad token"), "the 4xx body is logged: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Last night's incident: `users` identities each denied three times within
/// a second, a minute apart (each fires "Forbidden Burst Test" and resolves).
fn last_night(users: u32) -> String {
    let mut out = String::new();
    for u in 0..users {
        for k in 0..3 {
            out.push_str(&format!(
                r#"{{"auditID":"n{u}-{k}","stage":"ResponseComplete","verb":"get","user":{{"username":"intruder-{u}"}},"objectRef":{{"resource":"secrets","namespace":"ci"}},"responseStatus":{{"metadata":{{}},"code":403}},"stageTimestamp":"2024-10-29T02:0{u}:00.{k}00000Z"}}"#
            ));
            out.push('\n');
        }
    }
    out
}

#[test]
fn a_replayed_incident_notifies_every_windowed_alert_firing_then_resolved() {
    let dir = tmp("replay");
    let (hook, received) = webhook();
    let am_port = free_port();
    let _am = alertmanager_waiting(&dir.join("am"), am_port, hook, "1s");
    let input = dir.join("last-night.jsonl");
    std::fs::write(&input, last_night(3)).unwrap();
    let rules = golden("alertmanager/rules.yaml");
    let out = saker()
        .args([
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--alertmanager",
            &format!("http://127.0.0.1:{am_port}"),
            "--alertmanager-resolve-delay",
            "3s",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let printed = alerts(&out);
    assert_eq!(printed.len(), 6, "three firing, three resolved");
    // The drain waited for the held resolves: all six were accepted.
    assert!(err.contains("alertmanager: 6 alerts sent"), "{err}");
    // (notification index, status) of each user's alert at the receiver.
    let states = |user: &str| -> Vec<(usize, String)> {
        let got = received.lock().unwrap();
        got.iter()
            .enumerate()
            .flat_map(|(i, n)| {
                n["alerts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|a| a["labels"]["ka_user_name"] == user)
                    .map(move |a| (i, a["status"].as_str().unwrap_or("").to_string()))
            })
            .collect()
    };
    for u in 0..3 {
        let user = format!("intruder-{u}");
        let both = wait_until(Duration::from_secs(30), || {
            let s = states(&user);
            let fired = s.iter().find(|(_, st)| st == "firing")?.0;
            let resolved = s.iter().find(|(_, st)| st == "resolved")?.0;
            Some((fired, resolved))
        });
        let (fired, resolved) = both.unwrap_or_else(|| {
            panic!(
                "{user}: the receiver should be told firing, then resolved; got {:?}",
                states(&user)
            )
        });
        assert!(fired < resolved, "{user}: resolved before firing");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_live_alert_that_resolves_within_group_wait_is_still_notified_firing_first() {
    let dir = tmp("live-hold");
    let (hook, received) = webhook();
    let am_port = free_port();
    // The route waits 5s before its first notification; the window (2s)
    // resolves about 3s after it fires.
    let _am = alertmanager_waiting(&dir, am_port, hook, "5s");
    let rules = golden("alertmanager/rules.yaml");
    let (_saker, mut stdin) = spawn_saker(&[
        "run",
        "--rules",
        rules.to_str().unwrap(),
        "--lateness",
        "0s",
        "--alertmanager",
        &format!("http://127.0.0.1:{am_port}"),
        "--alertmanager-resolve-delay",
        "7s",
        "--no-summary",
    ]);
    for i in 0..3 {
        writeln!(stdin, "{}", denied(i)).unwrap();
    }
    stdin.flush().unwrap();
    let statuses = || -> Vec<String> {
        received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["labels"]["alertname"] == "Forbidden Burst Test")
            .map(|a| a["status"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let got = wait_until(Duration::from_secs(30), || {
        let s = statuses();
        s.iter().any(|st| st == "resolved").then_some(s)
    })
    .expect("the resolve never reached the receiver");
    assert_eq!(got.first().map(String::as_str), Some("firing"), "{got:?}");
    drop(stdin);
    let _ = std::fs::remove_dir_all(&dir);
}
