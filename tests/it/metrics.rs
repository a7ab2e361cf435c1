//! The metrics endpoint, and a real Prometheus (Debian's `prometheus`,
//! installed by scripts/test) scraping it and evaluating the runbook rule.

use std::time::{Duration, Instant};

use super::net::*;
use super::*;

fn secret_create(i: u32) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"m{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ci/secrets","verb":"create","user":{{"username":"ci-bot"}},"objectRef":{{"resource":"secrets","namespace":"ci","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":201}},"stageTimestamp":"{}"}}"#,
        now_rfc3339()
    )
}

fn start_saker(port: u16) -> (Killed, std::process::ChildStdin) {
    let (saker, stdin) = spawn_saker(&[
        "run",
        "--metrics-listen",
        &format!("127.0.0.1:{port}"),
        "--no-summary",
    ]);
    let start = Instant::now();
    while http_get(port, "/healthz").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "saker's metrics listener did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (saker, stdin)
}

#[test]
fn endpoint_serves_the_runbook_counter_and_health() {
    let port = free_port();
    let (_saker, mut stdin) = start_saker(port);
    for i in 0..3 {
        writeln!(stdin, "{}", secret_create(i)).unwrap();
    }
    writeln!(stdin, "klog text").unwrap();
    stdin.flush().unwrap();
    let want = r#"kube_audit_event_count{verb="create",resource="secrets",user="ci-bot"} 3"#;
    let start = Instant::now();
    let body = loop {
        let (status, body) = http_get(port, "/metrics").expect("GET /metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        if body.contains(want) && body.contains(r#"reason="not_json"} 1"#) {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "counter never reached 3:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("# TYPE kube_audit_event_count counter"));
    assert!(!body.contains("kube_audit_event_count_total"));
    assert!(
        body.contains(r#"saker_events_total{source="stdin",outcome="decoded"} 3"#),
        "{body}"
    );
    assert!(
        body.contains("saker_event_processing_seconds_count 3"),
        "{body}"
    );
    assert_eq!(http_get(port, "/readyz").unwrap().0, "HTTP/1.1 200 OK");
    assert_eq!(
        http_get(port, "/nothing").unwrap().0,
        "HTTP/1.1 404 Not Found"
    );
}

#[test]
fn bad_metrics_settings_exit_2() {
    let out = saker()
        .args([
            "run",
            "--metrics-listen",
            "9464",
            "--metrics-labels",
            "verb=ka.nope",
            "--input",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `ka.nope`"));
}

/// Debian's Prometheus tools; a missing one fails the test (scripts/test
/// installs them).
fn tool(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{name} is not installed: run scripts/test, which installs Debian's prometheus package"
    );
    path
}

#[test]
fn promtool_accepts_the_runbook_rule_verbatim() {
    let rules = root().join("examples/prometheus/kube-audit-rules.yml");
    let text = std::fs::read_to_string(&rules).unwrap();
    assert!(
        text.contains(r#"rate(kube_audit_event_count{verb="create", resource="secrets"}[1m]) > 1"#)
    );
    let out = Command::new(tool("promtool"))
        .args(["check", "rules", rules.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_scrapes_saker_and_fires_the_runbook_rule() {
    let prometheus = tool("prometheus");
    let dir = std::env::temp_dir().join(format!("saker-it-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (saker_port, prom_port) = (free_port(), free_port());
    // The runbook rule as written, with a short `for` so the test is quick.
    let rules = std::fs::read_to_string(root().join("examples/prometheus/kube-audit-rules.yml"))
        .unwrap()
        .replace("for: 5m", "for: 2s");
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: saker\n    static_configs:\n      - targets: ['127.0.0.1:{saker_port}']\n"
        ),
    )
    .unwrap();
    let (_saker, mut stdin) = start_saker(saker_port);
    let _prom = Killed(
        Command::new(prometheus)
            .current_dir(&dir)
            .args([
                "--config.file=prometheus.yml",
                &format!("--storage.tsdb.path={}", dir.join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{prom_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Five secrets a second until Prometheus reports the alert firing.
    let start = Instant::now();
    let mut i = 0;
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(90) {
        for _ in 0..5 {
            writeln!(stdin, "{}", secret_create(i)).unwrap();
            i += 1;
        }
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_secs(1));
        if let Some((_, body)) = http_get(prom_port, "/api/v1/alerts") {
            if body.contains(r#""alertname":"SecretsCreatedTooFast""#)
                && body.contains(r#""state":"firing""#)
            {
                let _ = std::fs::remove_dir_all(&dir);
                return;
            }
            last = body;
        }
    }
    panic!("Prometheus never fired SecretsCreatedTooFast; last /api/v1/alerts: {last}");
}
