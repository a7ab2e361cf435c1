//! The HTTPS receiver under load (DESIGN 6): four concurrent senders post
//! 400-event `EventList`s over TLS with client certificates, as the API
//! server's webhook backend does, to `saker run --input http` (the release
//! binary, default rules). Prints events/s, events per second of Saker's
//! CPU (per core), and the answer time's p50 and p99; then, in the same
//! run, `saker run` on a file of the same events.
//!
//! `cargo bench --bench http_receiver [-- EVENTS]` (default 200 000).
//! Certificates are made with openssl, the requests sent with reqwest
//! (rustls), one keep-alive connection per sender.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/gen.rs"]
mod gen;

const SENDERS: usize = 4;
const BATCH: usize = 400;

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("openssl")
        .success();
    assert!(ok, "openssl {args:?}");
}

fn certificates(dir: &Path) {
    let req = |name: &str, cn: &str| {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
    };
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=bench-ca",
        ],
    );
    req("server", "127.0.0.1");
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
    );
    req("client", "kube-apiserver");
    // Extensions make it an X.509 v3 certificate, which TLS requires.
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "1",
            "-extfile",
            "client.ext",
        ],
    );
}

/// User and system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let events: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let saker = env!("CARGO_BIN_EXE_saker");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("saker-bench-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    // The events: as batches for the senders, and as a file.
    let mut g = gen::Gen::new(42);
    let lines: Vec<String> = (0..events).map(|_| g.event()).collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let file = dir.join("events.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let batches: Vec<Vec<u8>> = lines
        .chunks(BATCH)
        .map(|c| format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#, c.join(",")).into_bytes())
        .collect();
    drop(lines);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = |n: &str| dir.join(n).display().to_string();
    let mut child = Command::new(saker)
        .args([
            "run",
            "--input",
            "http",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
            "--tls-client-ca",
            &p("ca.pem"),
            "--no-summary",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("saker");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let mut identity = std::fs::read(dir.join("client.pem")).unwrap();
    identity.extend(std::fs::read(dir.join("client.key")).unwrap());
    let client = || {
        reqwest::blocking::Client::builder()
            .add_root_certificate(ca.clone())
            .identity(reqwest::Identity::from_pem(&identity).unwrap())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    };
    let url = format!("https://127.0.0.1:{port}/k8s-audit");
    let start = Instant::now();
    while client()
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the receiver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu_before = cpu_seconds(child.id());
    let start = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..SENDERS)
            .map(|i| {
                let (url, batches, c) = (&url, &batches, client());
                s.spawn(move || {
                    let mut times = Vec::new();
                    for b in batches.iter().skip(i).step_by(SENDERS) {
                        loop {
                            let t = Instant::now();
                            let r = c.post(url).body(b.clone()).send().expect("post");
                            if r.status().is_success() {
                                times.push(t.elapsed());
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                    times
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let _ = child.kill();
    let _ = child.wait();
    latencies.sort();
    // The same events from a file, same binary, same rules.
    let t = Instant::now();
    let mut file_run = Command::new(saker)
        .args([
            "run",
            "--input",
            &file.display().to_string(),
            "--no-summary",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = file_run.id();
    let mut file_cpu = 0.0;
    while file_run.try_wait().unwrap().is_none() {
        file_cpu = cpu_seconds(pid).max(file_cpu);
        std::thread::sleep(Duration::from_millis(5));
    }
    let file_wall = t.elapsed().as_secs_f64();
    let n = events as f64;
    println!("{events} events ({:.0} bytes each), {} batches of {BATCH}, {SENDERS} senders over TLS with client certificates", bytes as f64 / n, batches.len());
    println!("http receiver: {:>9.0} events/s   {:>9.0} events per CPU-second of saker ({cpu:.2} s)   answer p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        n / wall, n / cpu.max(1e-9),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3));
    println!("file:          {:>9.0} events/s   {:>9.0} events per CPU-second of saker ({file_cpu:.2} s, sampled)", n / file_wall, n / file_cpu.max(1e-9));
    let _ = std::fs::remove_dir_all(&dir);
}
