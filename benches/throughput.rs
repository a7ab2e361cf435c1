//! Throughput harness: `cargo bench --bench throughput [-- EVENTS | FILE]`.
//!
//! Generates a seeded, realistic event mix (see support/gen.rs), then measures
//! in one run, on one thread:
//!   (a) a bare pass that extracts the fields the default rules use into
//!       borrowed structs, with serde_json and with sonic-rs (SIMD); the
//!       faster of the two is the baseline;
//!   (b) Saker with the default single-event rules, the whole pipeline from
//!       lines to rendered alerts (written to a sink that discards them);
//!   (c0) the default rules without the sequence and first-seen ones;
//!   (c) the same with all default rules, windowed ones included; then
//!       the added cost per event of a windowed rule ((c0) against (b)) and
//!       of a sequence or first-seen rule ((c) against (c0)), from seven
//!       rounds that run the three passes in turn;
//!   (d) (c) on every core (`--threads`: parallel decode and match, windows
//!       fed in input order), from memory: the driver copies batches into
//!       jobs, as it does for stdin;
//!   (f) (c) from a file of the same events, as `saker run --input FILE`
//!       reads one: on one thread, and on every core, where the workers
//!       read the file's ranges themselves.
//!   (e) (b) on the same events as managed clusters deliver them: each wrapped
//!       as an AKS diagnostic record, as an EKS CloudWatch Logs payload, and
//!       as a GKE LogEntry (against the events that entry converts to).
//! It prints events/s, MB/s and the ratios (b)/(a), (c)/(a), (d)/(c),
//! (f) on every core over (f) on one, and each shape's (e)/(b); `--managed` runs (e) alone. Numbers are measurements,
//! not assertions: the machine is shared and noisy. Given a file of events
//! (JSON lines) instead of a count, it measures on those. With `--emit N` it
//! prints N generated events instead, e.g. to replay them through the binary.

#[path = "support/gen.rs"]
mod gen;

use std::borrow::Cow;
use std::time::Instant;

use serde::Deserialize;

use saker::engine::{Engine, RuleMatching};
use saker::rules;
use saker::sink::stdout::{Format, StdoutSink};
use saker::source::clock::SystemClock;
use saker::source::driver::Driver;
use saker::source::ranges::RangeSource;
use saker::source::stream::LineSource;

/// The allocator the binary runs with (src/main.rs), so that the passes
/// measure what `saker run` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
struct BareEvent<'a> {
    #[serde(borrow)]
    stage: Option<Cow<'a, str>>,
    #[serde(borrow)]
    verb: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "requestURI")]
    request_uri: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<BareUser<'a>>,
    #[serde(borrow, rename = "impersonatedUser")]
    impersonated_user: Option<BareUser<'a>>,
    #[serde(borrow, rename = "objectRef")]
    object_ref: Option<BareRef<'a>>,
    #[serde(rename = "responseStatus")]
    response_status: Option<BareStatus>,
    #[serde(borrow)]
    annotations: Option<BareAnnotations<'a>>,
    #[serde(borrow, rename = "stageTimestamp")]
    stage_timestamp: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BareUser<'a> {
    #[serde(borrow)]
    username: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BareRef<'a> {
    #[serde(borrow)]
    resource: Option<Cow<'a, str>>,
    #[serde(borrow)]
    subresource: Option<Cow<'a, str>>,
    #[serde(borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BareStatus {
    code: Option<u32>,
}

#[derive(Deserialize)]
struct BareAnnotations<'a> {
    #[serde(borrow, rename = "authorization.k8s.io/decision")]
    decision: Option<Cow<'a, str>>,
}

/// (a): parse every line with `parse` and touch every extracted field.
fn bare_pass(data: &[u8], parse: impl Fn(&[u8]) -> Option<BareEvent<'_>>) -> (u64, u64) {
    let mut events = 0u64;
    let mut checksum = 0u64;
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if let Some(ev) = parse(line) {
            events += 1;
            let lens = [
                ev.stage.as_deref(),
                ev.verb.as_deref(),
                ev.request_uri.as_deref(),
                ev.user.as_ref().and_then(|u| u.username.as_deref()),
                ev.impersonated_user
                    .as_ref()
                    .and_then(|u| u.username.as_deref()),
                ev.object_ref.as_ref().and_then(|o| o.resource.as_deref()),
                ev.object_ref
                    .as_ref()
                    .and_then(|o| o.subresource.as_deref()),
                ev.object_ref.as_ref().and_then(|o| o.namespace.as_deref()),
                ev.object_ref.as_ref().and_then(|o| o.name.as_deref()),
                ev.annotations.as_ref().and_then(|a| a.decision.as_deref()),
                ev.stage_timestamp.as_deref(),
            ];
            checksum += lens
                .iter()
                .map(|s| s.map_or(0, str::len) as u64)
                .sum::<u64>();
            checksum += u64::from(ev.response_status.and_then(|s| s.code).unwrap_or(0));
        }
    }
    (events, checksum)
}

/// (b): the whole pipeline with the given rules, driven as `saker run`
/// drives a file.
fn saker_pass(data: &[u8], set: &rules::RuleSet) -> (u64, u64) {
    let mut engine = Engine::new(set, RuleMatching::First);
    let mut sink = StdoutSink::new(std::io::sink(), Format::Json);
    let mut source = LineSource::new(data, 1 << 20, false, "memory");
    Driver::new(&mut engine, &mut sink, SystemClock)
        .run(&mut source)
        .expect("in-memory run");
    (engine.stats.events, engine.stats.total_alerts())
}

/// (d): the whole pipeline on `threads` workers.
fn parallel_pass(data: &[u8], set: &rules::RuleSet, threads: usize) -> (u64, u64) {
    let mut engine = Engine::new(set, RuleMatching::First);
    let mut sink = StdoutSink::new(std::io::sink(), Format::Json);
    let mut source = LineSource::new(data, 1 << 20, false, "memory");
    Driver::new(&mut engine, &mut sink, SystemClock)
        .run_threads(&mut source, threads)
        .expect("in-memory run");
    (engine.stats.events, engine.stats.total_alerts())
}

/// (f): the whole pipeline from the file at `path`, as `saker run --input
/// FILE` reads it: the line reader on one thread, or `threads` workers
/// that read the file's ranges.
fn file_pass(path: &std::path::Path, set: &rules::RuleSet, threads: usize) -> (u64, u64) {
    let mut engine = Engine::new(set, RuleMatching::First);
    let mut sink = StdoutSink::new(std::io::sink(), Format::Json);
    let mut driver = Driver::new(&mut engine, &mut sink, SystemClock);
    let ran = if threads > 1 {
        let mut source = RangeSource::open(path, 1 << 20).expect("the events' file");
        driver.run_threads(&mut source, threads)
    } else {
        let file = std::fs::File::open(path).expect("the events' file");
        let mut source = LineSource::new(file, 1 << 20, false, "file");
        driver.run(&mut source)
    };
    ran.expect("a run from the file");
    drop(driver);
    (engine.stats.events, engine.stats.total_alerts())
}

fn measure<F: FnMut() -> (u64, u64)>(label: &str, bytes: usize, mut f: F) -> f64 {
    // Best of three runs, to shed some noise of a shared machine.
    let mut best = f64::MAX;
    let mut result = (0, 0);
    for _ in 0..3 {
        let start = Instant::now();
        result = f();
        best = best.min(start.elapsed().as_secs_f64());
    }
    let eps = result.0 as f64 / best;
    println!(
        "{label:<44} {:>10.0} events/s {:>8.1} MB/s   ({} events, {})",
        eps,
        bytes as f64 / 1e6 / best,
        result.0,
        if label.trim_start().starts_with("(a)") {
            format!("checksum {}", result.1)
        } else {
            format!("{} alerts", result.1)
        }
    );
    eps
}

/// Alternated rounds behind the per-rule cost figures.
const ROUNDS: usize = 7;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let Some(pos) = args.iter().position(|a| a == "--emit") {
        // `--emit N`: print N generated events (for memory replays through
        // the binary) instead of measuring.
        let n: usize = args
            .get(pos + 1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1_000_000);
        emit(n);
        return;
    }
    if args.iter().any(|a| a == "--scaling") {
        scaling();
        return;
    }
    let file = args.iter().find(|a| std::path::Path::new(a).is_file());
    let data = match file {
        Some(path) => std::fs::read(path).expect("read events file"),
        None => {
            let n = args.iter().find_map(|a| a.parse().ok()).unwrap_or(200_000);
            generate(n)
        }
    };
    let n = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let rr = data
        .split(|&b| b == b'\n')
        .filter(|l| memchr::memmem::find(l, b"\"level\":\"RequestResponse\"").is_some())
        .count();
    println!(
        "{} {n} events, {:.1} MB, {:.0} bytes/event average, {:.0}% RequestResponse",
        if file.is_some() { "read" } else { "generated" },
        data.len() as f64 / 1e6,
        data.len() as f64 / n as f64,
        rr as f64 * 100.0 / n as f64
    );
    let single = rules::load(&rules::default_sources()[..1])
        .rules
        .expect("default rules load");
    if args.iter().any(|a| a == "--managed") {
        // `--managed`: only (e), the managed clusters' shapes.
        managed(&data, &single);
        return;
    }
    let all = rules::load(&rules::default_sources())
        .rules
        .expect("default rules load");
    let windowed = all.rules.iter().filter(|r| r.aggregate.is_some()).count();
    let stateful = all.rules.iter().filter(|r| r.stateful.is_some()).count();
    // The defaults without the sequence and first-seen rules' file.
    let no_stateful = rules::load(&rules::default_sources()[..2])
        .rules
        .expect("default rules load");
    println!(
        "{} single-event rules; {} rules with {windowed} windowed and {stateful} sequence or first-seen",
        single.rules.len(),
        all.rules.len()
    );
    let a_serde = measure("(a) bare field extraction (serde_json)", data.len(), || {
        bare_pass(&data, |l| serde_json::from_slice(l).ok())
    });
    let a_sonic = measure(
        "(a) bare field extraction (sonic-rs, SIMD)",
        data.len(),
        || bare_pass(&data, |l| sonic_rs::from_slice(l).ok()),
    );
    // The baseline is the faster reader.
    let a = a_serde.max(a_sonic);
    let b = measure(
        "(b) saker, single-event rules, one thread",
        data.len(),
        || saker_pass(&data, &single),
    );
    measure(
        "(c0) saker, default rules but stateful ones",
        data.len(),
        || saker_pass(&data, &no_stateful),
    );
    let c = measure(
        "(c) saker, all default rules, one thread",
        data.len(),
        || saker_pass(&data, &all),
    );
    // DESIGN 6: a sequence or first-seen rule costs no more per event than
    // a windowed rule. Each kind's added time per event and rule, from
    // rounds that run (b), (c0) and (c) one after the other, so that a
    // noisy neighbour hits all three alike; the median and range of the
    // rounds.
    let rounds: Vec<(f64, f64)> = (0..ROUNDS)
        .map(|_| {
            let [tb, tc0, tc] = [&single, &no_stateful, &all].map(|set| {
                let start = Instant::now();
                let (events, _) = saker_pass(&data, set);
                start.elapsed().as_secs_f64() * 1e9 / events.max(1) as f64
            });
            (
                (tc0 - tb) / windowed.max(1) as f64,
                (tc - tc0) / stateful.max(1) as f64,
            )
        })
        .collect();
    let spread = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!(
            "{:.0} ns (range {:.0} to {:.0})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        )
    };
    println!(
        "added cost per event and rule, median of {ROUNDS} alternated rounds: windowed {}, sequence/first-seen {}",
        spread(rounds.iter().map(|r| r.0).collect()),
        spread(rounds.iter().map(|r| r.1).collect())
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let d = measure(
        &format!("(d) saker, all default rules, {cores} threads"),
        data.len(),
        || parallel_pass(&data, &all, cores),
    );
    println!(
        "ratio (b)/(a): {:.2}   (c)/(a): {:.2}   (c)/(b): {:.2}   (d)/(c): {:.2}",
        b / a,
        c / a,
        c / b,
        d / c
    );
    // The same events in a file (just written: in the page cache).
    let path = std::env::temp_dir().join(format!("saker-throughput-{}.jsonl", std::process::id()));
    std::fs::write(&path, &data).expect("a file of the events");
    let f1 = measure(
        "(f) saker, all default rules, from a file, one thread",
        data.len(),
        || file_pass(&path, &all, 1),
    );
    let f2 = measure(
        &format!("(f) saker, all default rules, from a file, {cores} threads"),
        data.len(),
        || file_pass(&path, &all, cores),
    );
    let _ = std::fs::remove_file(&path);
    println!("ratio (f), {cores} threads over one: {:.2}", f2 / f1);
    managed(&data, &single);
}

/// (e): the single-event pass on managed clusters' shapes of the same
/// events, each against its plain events.
fn managed(data: &[u8], set: &rules::RuleSet) {
    let events: Vec<serde_json::Value> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    let wrap = |f: &dyn Fn(&serde_json::Value) -> serde_json::Value| {
        let mut out = Vec::with_capacity(data.len() * 2);
        for ev in &events {
            out.extend_from_slice(f(ev).to_string().as_bytes());
            out.push(b'\n');
        }
        out
    };
    let aks = wrap(&|ev| {
        serde_json::json!({"records": [{"category": "kube-audit", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
            "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/BENCH",
            "time": ev["stageTimestamp"], "properties": {"log": ev.to_string(), "stream": "stdout", "pod": "kube-apiserver-1"}}]})
    });
    let eks = wrap(&|ev| {
        serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "/aws/eks/bench/cluster",
            "logStream": "kube-apiserver-audit-1", "subscriptionFilters": ["saker"],
            "logEvents": [{"id": "37000000000000000000000000000000000000000000000000000000", "timestamp": 1714557600000u64, "message": ev.to_string()}]})
    });
    let gke = wrap(&log_entry);
    // The events the GKE entries convert to are its plain baseline.
    let mut gke_plain = Vec::with_capacity(gke.len());
    for line in gke.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        saker::event::decode_document(
            line,
            |ev| {
                gke_plain.extend_from_slice(ev.raw.as_bytes());
                gke_plain.push(b'\n');
            },
            |_| {},
        );
    }
    let plain = measure("(e) plain events, single-event rules", data.len(), || {
        saker_pass(data, set)
    });
    let mut ratios = Vec::new();
    for (name, shape) in [
        ("AKS diagnostic records", &aks),
        ("EKS CloudWatch payloads", &eks),
    ] {
        let r = measure(&format!("(e) as {name}"), shape.len(), || {
            saker_pass(shape, set)
        });
        ratios.push(format!("{name} {:.2}", r / plain));
    }
    let gp = measure("(e) GKE's converted events, plain", gke_plain.len(), || {
        saker_pass(&gke_plain, set)
    });
    let g = measure("(e) as GKE LogEntries", gke.len(), || saker_pass(&gke, set));
    ratios.push(format!("GKE LogEntries {:.2}", g / gp));
    println!("ratio (e) shape/plain, events/s: {}", ratios.join("   "));
}

/// The Cloud Logging entry GKE writes for an audit event.
fn log_entry(ev: &serde_json::Value) -> serde_json::Value {
    use serde_json::json;
    let o = &ev["objectRef"];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let group = match s(&o["apiGroup"]) {
        g if g.is_empty() => "core".to_string(),
        g => g,
    };
    let mut name = format!("{group}/{}", s(&o["apiVersion"]));
    if !o["namespace"].is_null() {
        name.push_str(&format!("/namespaces/{}", s(&o["namespace"])));
    }
    name.push_str(&format!("/{}", s(&o["resource"])));
    for k in ["name", "subresource"] {
        if !o[k].is_null() {
            name.push_str(&format!("/{}", s(&o[k])));
        }
    }
    let sub = if o["subresource"].is_null() {
        String::new()
    } else {
        format!(".{}", s(&o["subresource"]))
    };
    let method = format!(
        "io.k8s.{group}.{}.{}{sub}.{}",
        s(&o["apiVersion"]),
        s(&o["resource"]),
        s(&ev["verb"])
    );
    let mut payload = json!({"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": ev["user"]["username"]},
        "authorizationInfo": [{"granted": true, "permission": method, "resource": name}],
        "methodName": method, "requestMetadata": {"callerIp": ev["sourceIPs"][0], "callerSuppliedUserAgent": ev["userAgent"]},
        "resourceName": name, "serviceName": "k8s.io", "status": {}});
    for (from, to) in [("requestObject", "request"), ("responseObject", "response")] {
        if !ev[from].is_null() {
            payload[to] = ev[from].clone();
        }
    }
    json!({"insertId": ev["auditID"], "labels": ev["annotations"], "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
        "operation": {"first": true, "last": true, "id": ev["auditID"], "producer": "k8s.io"}, "protoPayload": payload,
        "receiveTimestamp": ev["stageTimestamp"], "resource": {"labels": {"cluster_name": "bench", "location": "europe-west1", "project_id": "p"}, "type": "k8s_cluster"},
        "severity": "NOTICE", "timestamp": ev["stageTimestamp"]})
}

/// `--scaling`: (b) as the rule count grows, and (a) and (b) as events grow.
fn scaling() {
    let data = generate(100_000);
    println!("rule count (single-event rules, 100 000 harness events, one thread):");
    let base = rules::load(&rules::default_sources()[..1])
        .rules
        .expect("default rules load");
    let names: Vec<String> = base.rules.iter().map(|r| r.name.clone()).collect();
    let mut base_b = 0.0;
    for count in [10usize, 30, 50, 200] {
        let mut extra = String::new();
        if count < names.len() {
            for name in &names[count..] {
                extra.push_str(&format!("- rule: {name}\n  enabled: false\n"));
            }
        }
        for i in 0..count.saturating_sub(names.len()) {
            extra.push_str(&synthetic_rule(i));
        }
        let mut sources = rules::default_sources()[..1].to_vec();
        sources.push(rules::RuleSource::Embedded(
            "synthetic.yaml",
            Box::leak(extra.into_boxed_str()),
        ));
        let set = rules::load(&sources).rules.expect("synthetic rules load");
        let enabled = set.rules.iter().filter(|r| r.enabled).count();
        let b = measure(&format!("(b) {enabled} rules"), data.len(), || {
            saker_pass(&data, &set)
        });
        if count == 30 {
            base_b = b;
        }
    }
    let _ = base_b;
    println!("event size (default single-event rules, one thread):");
    for (label, rr, items, n) in [
        ("Metadata only", 0u64, 1usize, 100_000usize),
        ("harness mix (30% RequestResponse)", 30, 1, 100_000),
        ("RequestResponse only", 100, 1, 50_000),
        ("RequestResponse, 4-pod lists", 100, 4, 20_000),
        ("RequestResponse, 16-pod lists", 100, 16, 5_000),
    ] {
        let mut g = gen::Gen::new(42);
        g.rr_percent = rr;
        g.list_items = items;
        let mut data = Vec::new();
        for _ in 0..n {
            data.extend_from_slice(g.event().as_bytes());
            data.push(b'\n');
        }
        println!("  {label}: {:.0} bytes/event", data.len() as f64 / n as f64);
        let a = measure("  (a) sonic-rs", data.len(), || {
            bare_pass(&data, |l| sonic_rs::from_slice(l).ok())
        });
        let b = measure("  (b) saker", data.len(), || saker_pass(&data, &base));
        println!("  (b)/(a): {:.2}", b / a);
    }
}

/// A rule like the shipped ones: a write to some resource in some
/// namespaces by someone not trusted. Every fifth names no resource, so it
/// is tried on every event.
fn synthetic_rule(i: usize) -> String {
    const RES: [&str; 12] = [
        "pods",
        "secrets",
        "configmaps",
        "deployments",
        "services",
        "roles",
        "rolebindings",
        "serviceaccounts",
        "nodes",
        "leases",
        "jobs",
        "ingresses",
    ];
    let resource = if i % 5 == 4 {
        String::new()
    } else {
        format!(" and ka.target.resource = {}", RES[i % RES.len()])
    };
    format!(
        "- rule: Synthetic {i}\n  desc: synthetic\n  condition: >\n    kevt and ka.verb in (create, update, patch){resource}\n    and ka.target.namespace startswith team-{i}\n    and not ka.user.name in (system:admin, ci-bot-{i})\n  output: synthetic %ka.user.name %ka.target.name\n  priority: WARNING\n  source: k8s_audit\n"
    )
}

fn emit(n: usize) {
    use std::io::Write;
    let mut g = gen::Gen::new(42);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..n {
        if writeln!(out, "{}", g.event()).is_err() {
            return;
        }
    }
}

fn generate(n: usize) -> Vec<u8> {
    let mut g = gen::Gen::new(42);
    let mut data = Vec::with_capacity(n * 2400);
    for _ in 0..n {
        data.extend_from_slice(g.event().as_bytes());
        data.push(b'\n');
    }
    data
}
