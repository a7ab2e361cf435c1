//! The receiver's cloud push paths over TLS, as the clouds meet them:
//! `POST /firehose` as Kinesis Data Firehose's HTTP endpoint delivery
//! sends it (a gzip'd CloudWatch Logs payload of EKS audit events in each
//! base64 record, the access key header, gzip content encoding), and
//! `POST /pubsub` as a Pub/Sub push subscription sends a GKE LogEntry
//! (wrapped, and without the wrapper), with curl as the sender and
//! openssl-made certificates. The receiver also requires client
//! certificates and tokens on the audit paths, which these senders cannot
//! present.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::http_input::{alerts_by_pod, curl, curl_answer, pki, receiver, stop, tmp, Answer, Post};
use super::net::*;
use super::pki::Pki;
use super::*;

const KEY: &str = "X-Amz-Firehose-Access-Key: fh-access-key-1";
const REQUEST_ID: &str = "X-Amz-Firehose-Request-Id: 8ba7c2d5-2d3e-4c1a-9b51-0c7f3a2e6f10";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A CloudWatch Logs subscription payload of EKS cluster `prod`: an exec
/// into each of `pods`.
fn cloudwatch_payload(pods: &[String]) -> Value {
    let events: Vec<Value> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            json!({"id": format!("3{i:055}"), "timestamp": 1730204520000u64 + i as u64,
                   "message": exec_event(pod, (i % 60) as u32)})
        })
        .collect();
    json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
           "logGroup": "/aws/eks/prod/cluster", "logStream": "kube-apiserver-audit-0a1b2c3d",
           "subscriptionFilters": ["to-saker"], "policyLevel": "ACCOUNT_LEVEL_POLICY",
           "logEvents": events})
}

/// What CloudWatch Logs sends first, to check the destination.
fn control_message() -> Value {
    json!({"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "",
           "logStream": "", "subscriptionFilters": [],
           "logEvents": [{"id": "", "timestamp": 1730204519000u64,
                          "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose."}]})
}

/// A Firehose delivery whose records are the gzip'd payloads, written to
/// `dir/name` (gzip'd as a whole too when `encode`).
fn delivery(dir: &Path, name: &str, payloads: &[Value], encode: bool) -> PathBuf {
    let records: Vec<Value> = payloads
        .iter()
        .map(|p| json!({"data": b64(&gzip(p.to_string().as_bytes()))}))
        .collect();
    let body = json!({"requestId": "8ba7c2d5-2d3e-4c1a-9b51-0c7f3a2e6f10",
                      "timestamp": 1730204580000u64, "records": records})
    .to_string();
    let path = dir.join(name);
    let bytes = if encode {
        gzip(body.as_bytes())
    } else {
        body.into_bytes()
    };
    std::fs::write(&path, bytes).unwrap();
    path
}

fn pods(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// The receiver of `http_input` (client certificates and a token on the
/// audit paths) with an access key file, and metrics on `metrics`.
fn push_receiver(p: &Pki, port: u16, metrics: u16, out: &Path) -> Killed {
    std::fs::write(p.dir.join("firehose.key"), "fh-access-key-1\n").unwrap();
    let (keys, metrics) = (p.path("firehose.key"), metrics.to_string());
    receiver(
        p,
        port,
        out,
        &[
            "--http-access-key-file",
            &keys,
            "--metrics-listen",
            &metrics,
        ],
    )
}

fn firehose(p: &Pki, port: u16, body: &Path, headers: &[&str]) -> (Answer, Value) {
    let req = Post {
        body: Some(body),
        headers,
        ..Post::get()
    };
    let a = curl_answer(p, port, "/firehose", &req);
    let v = serde_json::from_str(&a.body)
        .unwrap_or_else(|e| panic!("not Firehose's JSON ({e}): {} {}", a.code, a.body));
    (a, v)
}

/// The value of one series of the metrics text.
fn metric(port: u16, series: &str) -> Option<u64> {
    let text = http_ok(port, "/metrics")?;
    let line = text.lines().find(|l| l.starts_with(series))?;
    line[series.len()..].trim().parse().ok()
}

#[test]
fn a_firehose_delivery_of_cloudwatch_logs_alerts_and_echoes_the_request_id() {
    let dir = tmp("firehose");
    let p = pki(&dir);
    let (port, metrics) = (free_port(), free_port());
    let out = dir.join("alerts.jsonl");
    let saker = push_receiver(&p, port, metrics, &out);

    // Two records of audit events and the control message, no client
    // certificate and no token: Firehose has only its access key.
    let (a, b) = (pods("fh-a", 40), pods("fh-b", 25));
    let plain = delivery(
        &dir,
        "plain.json",
        &[
            cloudwatch_payload(&a),
            control_message(),
            cloudwatch_payload(&b),
        ],
        false,
    );
    let (answer, v) = firehose(&p, port, &plain, &[KEY, REQUEST_ID]);
    assert_eq!(answer.code, 200, "{}", answer.body);
    assert!(
        answer.head.contains("content-type: application/json"),
        "{}",
        answer.head
    );
    assert_eq!(v["requestId"], "8ba7c2d5-2d3e-4c1a-9b51-0c7f3a2e6f10");
    assert!(v["timestamp"].as_u64().unwrap() > 1_700_000_000_000, "{v}");
    assert!(v.get("errorMessage").is_none(), "{v}");
    // 200 means evaluated: the alerts are out before the answer.
    let got = alerts_by_pod(&[&out]);
    assert_eq!(got.len(), 65, "{got:?}");
    assert!(a.iter().chain(&b).all(|pod| got.get(pod) == Some(&1)));

    // The same with the stream's GZIP content encoding on.
    let c = pods("fh-c", 30);
    let encoded = delivery(&dir, "encoded.json.gz", &[cloudwatch_payload(&c)], true);
    let (answer, v) = firehose(
        &p,
        port,
        &encoded,
        &[KEY, REQUEST_ID, "Content-Encoding: gzip"],
    );
    assert_eq!(answer.code, 200, "{}", answer.body);
    assert_eq!(v["requestId"], "8ba7c2d5-2d3e-4c1a-9b51-0c7f3a2e6f10");
    let got = alerts_by_pod(&[&out]);
    assert!(c.iter().all(|pod| got.get(pod) == Some(&1)), "{got:?}");

    // The control message was skipped and counted; every answer counted.
    let skipped = r#"saker_events_total{source="http",outcome="skipped",reason="control_message"}"#;
    assert_eq!(metric(metrics, skipped), Some(1));
    let answered = r#"saker_http_requests_total{path="/firehose",code="200"}"#;
    assert_eq!(metric(metrics, answered), Some(2));
    assert_eq!(metric(metrics, "saker_http_events_total"), Some(95));
    stop(saker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn firehose_refusals_are_its_json_with_the_reason() {
    let dir = tmp("firehose-refusals");
    let p = pki(&dir);
    let (port, metrics) = (free_port(), free_port());
    let out = dir.join("alerts.jsonl");
    let saker = push_receiver(&p, port, metrics, &out);
    let good = delivery(
        &dir,
        "good.json",
        &[cloudwatch_payload(&pods("ok", 3))],
        false,
    );
    let refused = delivery(
        &dir,
        "refused.json",
        &[cloudwatch_payload(&pods("no", 3))],
        false,
    );
    let bad_base64 = dir.join("bad-base64.json");
    std::fs::write(
        &bad_base64,
        r#"{"requestId":"8ba7c2d5-2d3e-4c1a-9b51-0c7f3a2e6f10","timestamp":1,"records":[{"data":"H4sI%%%"}]}"#,
    )
    .unwrap();
    let not_gzip = dir.join("not-gzip.json");
    std::fs::write(&not_gzip, "this is not gzip").unwrap();
    // Inflates to 20 MiB, over the default --max-body-bytes (16 MiB).
    let bomb = dir.join("bomb.gz");
    std::fs::write(&bomb, gzip(&vec![b' '; 20 << 20])).unwrap();
    let cases: [(&str, &Path, &[&str], u16, &str); 7] = [
        (
            "no access key",
            &refused,
            &[REQUEST_ID],
            401,
            "X-Amz-Firehose-Access-Key header is required",
        ),
        (
            "a wrong access key",
            &refused,
            &["X-Amz-Firehose-Access-Key: guess", REQUEST_ID],
            403,
            "not accepted",
        ),
        (
            "the webhook's token instead",
            &refused,
            &["Authorization: Bearer s3cret-token", REQUEST_ID],
            401,
            "X-Amz-Firehose-Access-Key",
        ),
        (
            "a record that is not base64",
            &bad_base64,
            &[KEY, REQUEST_ID],
            400,
            "record 0: data is not base64",
        ),
        (
            "an encoding other than gzip",
            &refused,
            &[KEY, REQUEST_ID, "Content-Encoding: br"],
            415,
            "Content-Encoding br",
        ),
        (
            "a gzip body that is not gzip",
            &not_gzip,
            &[KEY, REQUEST_ID, "Content-Encoding: gzip"],
            400,
            "not valid gzip",
        ),
        (
            "a body that inflates past the limit",
            &bomb,
            &[KEY, REQUEST_ID, "Content-Encoding: gzip"],
            413,
            "--max-body-bytes",
        ),
    ];
    for (what, body, headers, code, why) in cases {
        let (answer, v) = firehose(&p, port, body, headers);
        assert_eq!(answer.code, code, "{what}: {}", answer.body);
        assert_eq!(
            v["requestId"], "8ba7c2d5-2d3e-4c1a-9b51-0c7f3a2e6f10",
            "{what}"
        );
        let message = v["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{what}: {message}");
    }
    // A body that is not JSON, without the request id header: the answer
    // is still Firehose's JSON.
    let (answer, v) = firehose(&p, port, &not_gzip, &[KEY]);
    assert_eq!(answer.code, 400);
    assert!(v["errorMessage"]
        .as_str()
        .unwrap()
        .contains("not a Firehose delivery request"));
    // A client certificate does not stand in for the access key.
    let with_cert = Post {
        body: Some(&refused),
        cert: Some("apiserver"),
        headers: &[REQUEST_ID],
        ..Post::get()
    };
    assert_eq!(curl(&p, port, "/firehose", &with_cert).0, 401);

    // A new key in the file is taken without a restart; the old one is
    // then refused.
    std::fs::write(p.dir.join("firehose.key"), "fh-access-key-2\n").unwrap();
    let rotated = wait_until(Duration::from_secs(10), || {
        let (a, _) = firehose(
            &p,
            port,
            &good,
            &["X-Amz-Firehose-Access-Key: fh-access-key-2"],
        );
        (a.code == 200).then_some(())
    });
    assert!(rotated.is_some(), "the new access key was never accepted");
    assert_eq!(firehose(&p, port, &refused, &[KEY]).0.code, 403);

    let series =
        |code: u16| format!(r#"saker_http_requests_total{{path="/firehose",code="{code}"}}"#);
    assert_eq!(metric(metrics, &series(401)), Some(3));
    assert_eq!(metric(metrics, &series(400)), Some(3));
    assert_eq!(metric(metrics, &series(413)), Some(1));
    assert_eq!(metric(metrics, &series(415)), Some(1));
    stop(saker);
    // Nothing of a refused delivery was evaluated.
    let got = alerts_by_pod(&[&out]);
    assert_eq!(got.keys().collect::<Vec<_>>(), ["ok-0", "ok-1", "ok-2"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The GKE LogEntry of the golden samples whose method is `method`.
fn gke_entry(method: &str) -> String {
    let text = std::fs::read_to_string(golden("managed/gke-logentry.input")).unwrap();
    let needle = format!(r#""methodName": "{method}""#);
    text.lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no {method} entry in the samples"))
        .to_string()
}

/// The rules that alerted, in order, in the JSON lines of `out`.
fn rules(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|a| a["rule"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn pubsub_pushes_of_gke_entries_alert_with_and_without_the_wrapper() {
    let dir = tmp("pubsub");
    let p = pki(&dir);
    let (port, metrics) = (free_port(), free_port());
    let out = dir.join("alerts.jsonl");
    let saker = push_receiver(&p, port, metrics, &out);
    let push = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let exec = gke_entry("io.k8s.core.v1.pods.exec.create");
    let wrapped = push(
        "wrapped.json",
        json!({"message": {"data": b64(exec.as_bytes()),
                           "attributes": {"logging.googleapis.com/timestamp": "2024-05-01T10:04:00Z"},
                           "messageId": "11094238573622", "message_id": "11094238573622",
                           "publishTime": "2024-05-01T10:04:01.2Z", "publish_time": "2024-05-01T10:04:01.2Z"},
               "subscription": "projects/shop-prod/subscriptions/saker-push"})
        .to_string(),
    );
    let post = |path: &str, body: &Path, headers: &[&str]| {
        let req = Post {
            body: Some(body),
            headers,
            ..Post::get()
        };
        curl(&p, port, path, &req)
    };
    // The token in the push endpoint's URL, beside the OIDC token Pub/Sub
    // adds when the subscription has a service account (not verified).
    let oidc = "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJhdWQiOiJzYWtlciJ9.c2ln";
    let (code, text) = post("/pubsub?token=s3cret-token", &wrapped, &[oidc]);
    assert_eq!((code, text.trim()), (200, "ok"));
    assert_eq!(rules(&out), ["Exec Into Pod"], "alerted before the answer");

    // Without the wrapper (--push-no-wrapper): the LogEntry is the body.
    let attach = push(
        "unwrapped.json",
        gke_entry("io.k8s.core.v1.pods.attach.get"),
    );
    assert_eq!(post("/pubsub?token=s3cret-token", &attach, &[]).0, 200);
    assert_eq!(rules(&out), ["Exec Into Pod", "Attach To Pod"]);

    // Refusals, none of them evaluated.
    let bad = push(
        "bad.json",
        json!({"message": {"data": "not*base64", "messageId": "1"}, "subscription": "s"})
            .to_string(),
    );
    let (code, text) = post("/pubsub?token=s3cret-token", &bad, &[]);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("not base64"), "{text}");
    let garbage = push("garbage.txt", "not a document".into());
    let (code, text) = post("/pubsub?token=s3cret-token", &garbage, &[]);
    assert_eq!(code, 400);
    assert!(
        text.contains("neither a Pub/Sub push request nor a JSON document"),
        "{text}"
    );
    let (code, text) = post("/pubsub", &wrapped, &[oidc]);
    assert_eq!(
        code, 403,
        "an unverified OIDC token alone is refused: {text}"
    );
    assert_eq!(post("/pubsub", &wrapped, &[]).0, 401);
    assert_eq!(post("/pubsub?token=guess", &wrapped, &[]).0, 403);
    assert_eq!(post("/pubsub?token=fh-access-key-1", &wrapped, &[]).0, 403);
    assert_eq!(rules(&out).len(), 2);

    let series =
        |code: u16| format!(r#"saker_http_requests_total{{path="/pubsub",code="{code}"}}"#);
    assert_eq!(metric(metrics, &series(200)), Some(2));
    assert_eq!(metric(metrics, &series(400)), Some(2));
    assert_eq!(metric(metrics, &series(403)), Some(3));
    stop(saker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_only_an_access_key_the_other_paths_are_closed() {
    let dir = tmp("key-only");
    let p = pki(&dir);
    std::fs::write(p.dir.join("firehose.key"), "fh-access-key-1\n").unwrap();
    let port = free_port();
    let out = std::fs::File::create(dir.join("alerts.jsonl")).unwrap();
    // Beyond loopback, TLS and the access key are enough to start.
    let mut c = saker();
    c.args([
        "run",
        "--input",
        "http",
        "--listen",
        &format!("0.0.0.0:{port}"),
    ])
    .args([
        "--tls-cert",
        &p.path("server.pem"),
        "--tls-key",
        &p.path("server.key"),
    ])
    .args([
        "--http-access-key-file",
        &p.path("firehose.key"),
        "--no-summary",
    ])
    .stdout(out)
    .stderr(std::process::Stdio::null());
    let saker = Killed(c.spawn().unwrap());
    let up = wait_until(Duration::from_secs(20), || {
        (curl(&p, port, "/healthz", &Post::get()).0 == 200).then_some(())
    });
    assert!(up.is_some(), "the receiver did not come up on {port}");
    let events = dir.join("events.json");
    std::fs::write(&events, exec_event("pod-0", 1)).unwrap();
    let req = Post {
        body: Some(&events),
        ..Post::get()
    };
    let (code, text) = curl(&p, port, "/k8s-audit", &req);
    assert_eq!(code, 403, "{text}");
    assert!(
        text.contains("--tls-client-ca or --http-token-file"),
        "{text}"
    );
    assert_eq!(curl(&p, port, "/pubsub?token=fh-access-key-1", &req).0, 403);
    let fh = delivery(&dir, "fh.json", &[cloudwatch_payload(&pods("k", 2))], false);
    assert_eq!(firehose(&p, port, &fh, &[KEY]).0.code, 200);
    stop(saker);
    assert_eq!(alerts_by_pod(&[&dir.join("alerts.jsonl")]).len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
