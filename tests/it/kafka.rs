//! The Kafka source against a real Kafka-protocol broker: `tansu` (from
//! crates.io, installed by scripts/test), run on 127.0.0.1 with in-memory
//! storage, one broker per test. Data goes in through `saker produce`
//! (keyed by user) or, for odd message shapes, the rdkafka producer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::net::*;
use super::*;

/// The tansu binary: on PATH or in cargo's bin directory.
fn tansu_bin() -> PathBuf {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin/tansu"));
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("tansu"))
        .chain(cargo_bin)
        .find(|p| p.is_file())
        .expect("tansu is not installed: run scripts/test, which installs it (cargo install tansu@0.6.0 --locked --features dynostore)")
}

/// A tansu broker on a free loopback port, killed when dropped.
pub(super) struct Broker {
    child: Option<Killed>,
    pub(super) addr: String,
}

impl Broker {
    pub(super) fn start() -> Broker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child: Child = Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let child = Killed(child);
        let addr = format!("127.0.0.1:{port}");
        wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(&addr).ok()
        })
        .expect("tansu did not start listening");
        Broker {
            child: Some(child),
            addr,
        }
    }

    /// Kills the broker (SIGKILL): its clients find nobody at the address.
    pub(super) fn kill(&mut self) {
        self.child.take();
    }

    /// `saker produce`s `lines` to `topic`, created with `partitions`
    /// partitions if new.
    pub(super) fn produce(&self, topic: &str, partitions: i32, lines: &[String]) {
        produce(&self.addr, topic, partitions, lines);
    }

    /// As [`Broker::produce`], in librdkafka's usual batches of many records
    /// (see [`ONE_RECORD_BATCHES`]).
    pub(super) fn produce_in_batches(&self, topic: &str, partitions: i32, lines: &[String]) {
        produce_with(&self.addr, topic, partitions, lines, &[]);
    }

    /// The sum of `group`'s committed offsets over `topic`'s partitions:
    /// the number of messages it has finished (offsets start at 0).
    pub(super) fn committed(&self, group: &str, topic: &str, partitions: i32) -> i64 {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("group.id", group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        (0..partitions)
            .map(
                |p| match committed.find_partition(topic, p).unwrap().offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                },
            )
            .sum()
    }
}

fn produce(addr: &str, topic: &str, partitions: i32, lines: &[String]) {
    produce_with(addr, topic, partitions, lines, &ONE_RECORD_BATCHES);
}

fn produce_with(addr: &str, topic: &str, partitions: i32, lines: &[String], extra: &[&str]) {
    let mut data = lines.join("\n");
    data.push('\n');
    let count = partitions.to_string();
    let mut args = vec![
        "produce",
        "--kafka-brokers",
        addr,
        "--kafka-topic",
        topic,
        "--partitions",
        &count,
    ];
    args.extend(extra);
    let out = run_with_stdin(
        &args,
        if lines.is_empty() {
            b""
        } else {
            data.as_bytes()
        },
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "saker produce failed: {err}");
    assert!(
        err.contains(&format!("{} delivered, 0 failed", lines.len())),
        "{err}"
    );
}

/// A running `saker run --input kafka`, stdout and stderr in files.
pub(super) struct Instance {
    child: Option<Child>,
    metrics: u16,
    out: PathBuf,
    err: PathBuf,
}

/// Flags every test instance gets (with commits every 500 ms unless the
/// test says otherwise): quick group membership, and
/// short fetch waits (tansu holds a fetch for its full wait even when data
/// is there). [`ONE_RECORD_BATCHES`] too, for the repartition producer.
const FAST_GROUP: [&str; 8] = [
    "-X",
    "fetch.wait.max.ms=10",
    "-X",
    "session.timeout.ms=6000",
    "-X",
    "heartbeat.interval.ms=500",
    ONE_RECORD_BATCHES[0],
    ONE_RECORD_BATCHES[1],
];

/// tansu 0.6 answers a fetch that starts inside a record batch with the
/// batches after it (or nothing, when that batch is the last), so a consumer
/// resuming from a committed offset inside a batch would miss the rest of it
/// (a broker bug: Kafka returns the batch holding the offset). Every record
/// the tests produce is a batch of its own.
const ONE_RECORD_BATCHES: [&str; 2] = ["-X", "batch.num.messages=1"];

impl Instance {
    /// Two members of `group` on a 4-partition `topic`, `<group>-a` and
    /// `<group>-b`, returned once each owns two partitions.
    pub(super) fn start_pair(
        broker: &Broker,
        topic: &str,
        group: &str,
        extra: &[&str],
    ) -> (Instance, Instance) {
        let a = Instance::start_with(broker, topic, group, &format!("{group}-a"), extra);
        let b = Instance::start_with(broker, topic, group, &format!("{group}-b"), extra);
        wait_until(Duration::from_secs(60), || {
            (a.lags().len() == 2 && b.lags().len() == 2).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "the pair did not split the partitions: {:?} {:?}\n{}",
                a.lags(),
                b.lags(),
                a.stderr()
            )
        });
        (a, b)
    }

    pub(super) fn start(broker: &Broker, topic: &str, group: &str, name: &str) -> Instance {
        Instance::start_with(broker, topic, group, name, &[])
    }

    pub(super) fn start_with(
        broker: &Broker,
        topic: &str,
        group: &str,
        name: &str,
        extra: &[&str],
    ) -> Instance {
        let dir = tmp_dir();
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let metrics = free_port();
        let mut args = vec![
            "--log-level".to_string(),
            "info".into(),
            "run".into(),
            "--input".into(),
            "kafka".into(),
            "--kafka-brokers".into(),
            broker.addr.clone(),
            "--kafka-topic".into(),
            topic.into(),
            "--kafka-group".into(),
            group.into(),
            "--metrics-listen".into(),
            metrics.to_string(),
        ];
        args.extend(FAST_GROUP.iter().map(|s| s.to_string()));
        if !extra.contains(&"--kafka-commit-interval") {
            args.extend(["--kafka-commit-interval".to_string(), "500ms".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = saker()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn saker");
        let inst = Instance {
            child: Some(child),
            metrics,
            out,
            err,
        };
        wait_until(Duration::from_secs(20), || http_ok(metrics, "/healthz"))
            .unwrap_or_else(|| panic!("saker did not start: {}", inst.stderr()));
        inst
    }

    pub(super) fn metrics(&self) -> BTreeMap<String, f64> {
        let text = http_ok(self.metrics, "/metrics").unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect()
    }

    pub(super) fn metric(&self, name: &str) -> f64 {
        self.metrics().get(name).copied().unwrap_or(0.0)
    }

    /// Lag per assigned partition, once known.
    pub(super) fn lags(&self) -> Vec<f64> {
        self.metrics()
            .iter()
            .filter(|(k, _)| k.starts_with("saker_kafka_consumer_lag{"))
            .map(|(_, v)| *v)
            .collect()
    }

    pub(super) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub(super) fn alert_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub(super) fn signal(&mut self, sig: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("saker did not exit after {sig}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(super) fn tmp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "saker-kafka-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits until the instances together report every partition of the topic
/// with zero lag, and `messages` messages consumed in all.
pub(super) fn wait_caught_up(instances: &[&Instance], partitions: usize, messages: f64) {
    let done = wait_until(Duration::from_secs(120), || {
        let lags: Vec<f64> = instances.iter().flat_map(|i| i.lags()).collect();
        let consumed: f64 = instances
            .iter()
            .map(|i| i.metric("saker_kafka_messages_total"))
            .sum();
        (lags.len() == partitions && lags.iter().all(|l| *l == 0.0) && consumed >= messages)
            .then_some(())
    });
    if done.is_none() {
        let why: Vec<String> = instances
            .iter()
            .map(|i| format!("lags {:?}\n{}", i.lags(), i.stderr()))
            .collect();
        panic!("consumers did not catch up:\n{}", why.join("\n---\n"));
    }
}

/// The watermarks (seconds) of the stage partitions the instances hold.
pub(super) fn watermarks(instances: &[&Instance]) -> Vec<f64> {
    instances
        .iter()
        .flat_map(|i| i.metrics())
        .filter(|(k, _)| k.starts_with("saker_kafka_repartition_watermark_seconds{"))
        .map(|(_, v)| v)
        .collect()
}

/// Waits until the instances hold `stages` stage partitions whose
/// watermarks have all reached `at` (seconds).
pub(super) fn wait_watermarks(instances: &[&Instance], stages: usize, at: f64) {
    let reached = wait_until(Duration::from_secs(120), || {
        let w = watermarks(instances);
        (w.len() == stages && w.iter().all(|&x| x >= at)).then_some(())
    });
    if reached.is_none() {
        let why: Vec<String> = instances.iter().map(|i| i.stderr()).collect();
        panic!(
            "watermarks {:?} did not reach {at}:\n{}",
            watermarks(instances),
            why.join("\n---\n")
        );
    }
}

/// 2024-10-29T12:00:00Z in seconds.
const T0: i64 = 1_730_203_200;

/// One audit event: `verb` on `resource` by `user` at second `s` after
/// 2024-10-29T12:00:00Z, with status `code`.
fn event(user: &str, verb: &str, resource: &str, sub: &str, code: u32, s: u32) -> String {
    let time = format!(
        "2024-10-29T{:02}:{:02}:{:02}.000100Z",
        12 + s / 3600,
        s / 60 % 60,
        s % 60
    );
    let (stage, sub_json) = if sub.is_empty() {
        ("ResponseComplete", String::new())
    } else {
        ("ResponseStarted", format!(r#","subresource":"{sub}""#))
    };
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{user}-{s}-{verb}-{resource}","stage":"{stage}","requestURI":"/api/v1/namespaces/shop/{resource}/x{s}","verb":"{verb}","user":{{"username":"{user}","groups":["system:authenticated"]}},"sourceIPs":["10.0.0.9"],"objectRef":{{"resource":"{resource}","namespace":"shop","name":"x{s}","apiVersion":"v1"{sub_json}}},"responseStatus":{{"metadata":{{}},"code":{code}}},"requestReceivedTimestamp":"{time}","stageTimestamp":"{time}"}}"#
    )
}

/// `seconds` of traffic from 12 users, one event each per second: reads,
/// a `kubectl exec` now and then (a per-event alert), and for four users
/// bursts of 25 forbidden reads in 25 seconds (the windowed "Forbidden
/// Burst" fires, then resolves). Bursts start every 200 s, so they also
/// straddle any cut of the stream.
fn traffic(from: u32, to: u32) -> Vec<String> {
    let mut out = Vec::new();
    for s in from..to {
        for u in 0..12u32 {
            let user = format!("user{u}");
            let phase = (s + 1000 - u * 11) % 200;
            let line = if u < 4 && phase < 25 {
                event(&user, "get", "secrets", "", 403, s)
            } else if s % 37 == u {
                event(&user, "create", "pods", "exec", 101, s)
            } else {
                event(&user, "get", "configmaps", "", 200, s)
            };
            out.push(line);
        }
    }
    out
}

pub(super) fn rule_counts(lines: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let state = v["aggregate"]["state"]
            .as_str()
            .unwrap_or("event")
            .to_string();
        *m.entry(format!("{} ({state})", v["rule"].as_str().unwrap()))
            .or_insert(0) += 1;
    }
    m
}

pub(super) fn unique(lines: &[String]) -> BTreeSet<String> {
    lines.iter().cloned().collect()
}

#[test]
fn one_instance_and_two_in_a_group_give_the_same_alerts() {
    let broker = Broker::start();
    broker.produce("audit", 4, &[]);
    // The pair shares the partitions before any data arrives; the solo
    // instance, in its own group, reads them all.
    let (mut a, mut b) = Instance::start_pair(&broker, "audit", "pair", &[]);
    let mut one = Instance::start(&broker, "audit", "solo", "solo");
    let data = traffic(0, 600);
    broker.produce("audit", 4, &data);
    wait_caught_up(&[&one], 4, data.len() as f64);
    wait_caught_up(&[&a, &b], 4, data.len() as f64);
    let end = (T0 + 599 - 5) as f64;
    wait_watermarks(&[&one], 8, end);
    wait_watermarks(&[&a, &b], 8, end);
    let (ma, mb) = (
        a.metric("saker_kafka_messages_total"),
        b.metric("saker_kafka_messages_total"),
    );
    for i in [&mut one, &mut a, &mut b] {
        assert!(i.signal("-TERM").success(), "{}", i.stderr());
    }
    let solo = one.alert_lines();
    let mut pair = a.alert_lines();
    pair.extend(b.alert_lines());

    let (solo_set, pair_set) = (unique(&solo), unique(&pair));
    let counts = rule_counts(&solo_set);
    eprintln!(
        "solo: {} alerts {counts:?}; pair: {} alerts ({} duplicates), messages {ma} + {mb}",
        solo.len(),
        pair.len(),
        pair.len() - pair_set.len()
    );
    assert!(
        counts.get("Forbidden Burst (firing)").copied().unwrap_or(0) >= 8,
        "{counts:?}"
    );
    assert!(
        counts
            .get("Forbidden Burst (resolved)")
            .copied()
            .unwrap_or(0)
            >= 8,
        "{counts:?}"
    );
    assert!(
        counts.get("Exec Into Pod (event)").copied().unwrap_or(0) >= 100,
        "{counts:?}"
    );
    assert_eq!(
        solo.len(),
        solo_set.len(),
        "one instance alone repeats nothing"
    );
    assert!(ma > 0.0 && mb > 0.0, "both members consumed ({ma}, {mb})");
    let missing: Vec<_> = solo_set.difference(&pair_set).take(3).collect();
    let extra: Vec<_> = pair_set.difference(&solo_set).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the pair differs from one instance:\nmissing {missing:#?}\nextra {extra:#?}"
    );
}

/// Produces `lines` to the 4-partition `audit` topic on a thread, 600 at a
/// time with `pause` between, while the test watches a consumer.
fn produce_in_chunks(
    broker: &Broker,
    lines: &[String],
    pause: Duration,
) -> std::thread::JoinHandle<()> {
    let addr = broker.addr.clone();
    let chunks: Vec<Vec<String>> = lines.chunks(600).map(<[String]>::to_vec).collect();
    std::thread::spawn(move || {
        for chunk in chunks {
            produce(&addr, "audit", 4, &chunk);
            std::thread::sleep(pause);
        }
    })
}

/// The default per-event rules and a windowed one grouped by
/// `ka.user.name`, the partition key given with them: nothing is
/// repartitioned, so `--threads` applies.
fn keyed_rules() -> Vec<String> {
    let windowed = tmp_dir().join("keyed-windowed.yaml");
    std::fs::write(
        &windowed,
        r#"- rule: Forbidden Burst
  desc: twenty 403s in a minute
  condition: kevt and ka.response.code = 403
  aggregate: count >= 20 over 1m by ka.user.name
  output: "%ka.user.name was denied %agg.value times (%agg.state)"
  priority: WARNING
  source: k8s_audit
"#,
    )
    .unwrap();
    let events = root().join("rules").join("k8s_audit.yaml");
    [
        "--rules".to_string(),
        events.to_str().unwrap().to_string(),
        "--rules".to_string(),
        windowed.to_str().unwrap().to_string(),
        "--kafka-partition-key".to_string(),
        "ka.user.name".to_string(),
    ]
    .to_vec()
}

#[test]
fn worker_threads_give_the_alerts_of_one_thread() {
    let broker = Broker::start();
    let data = traffic(0, 600);
    broker.produce("audit", 4, &data);
    let flags = keyed_rules();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut one = Instance::start_with(&broker, "audit", "one", "one", &flags);
    let with_threads = [&flags[..], &["--threads", "2"]].concat();
    let mut two = Instance::start_with(&broker, "audit", "two", "two", &with_threads);
    wait_caught_up(&[&one], 4, data.len() as f64);
    wait_caught_up(&[&two], 4, data.len() as f64);
    // Each partition is warmed up once, when it is assigned: a batch still
    // being evaluated does not make the next offset look unexpected.
    let warmups = two.metric("saker_kafka_warmups_total");
    for i in [&mut one, &mut two] {
        assert!(i.signal("-TERM").success(), "{}", i.stderr());
    }
    assert!(
        two.stderr()
            .contains("decoding and matching on worker threads"),
        "{}",
        two.stderr()
    );
    assert!(!one.stderr().contains("repartitioned"), "{}", one.stderr());
    assert!(warmups <= 4.0, "{warmups} warm-ups");
    // Partitions interleave in any order; each alert is there once.
    let (a, b) = (one.alert_lines(), two.alert_lines());
    let (sa, sb) = (unique(&a), unique(&b));
    let counts = rule_counts(&sa);
    assert!(
        counts
            .get("Forbidden Burst (resolved)")
            .copied()
            .unwrap_or(0)
            >= 8
            && counts.get("Exec Into Pod (event)").copied().unwrap_or(0) >= 100,
        "{counts:?}"
    );
    assert_eq!((a.len(), b.len()), (sa.len(), sb.len()), "no alert twice");
    let missing: Vec<_> = sa.difference(&sb).take(3).collect();
    let extra: Vec<_> = sb.difference(&sa).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "two threads differ from one:\nmissing {missing:#?}\nextra {extra:#?}"
    );
}

#[test]
fn a_member_joining_mid_stream_under_threads_loses_no_alert() {
    // A consumes on two worker threads while events arrive; B joins and
    // takes half the partitions, which A gives up with batches of them
    // still on its workers. Those are dropped, not acknowledged: B reads
    // them from the offsets A committed on the revoke.
    let broker = Broker::start();
    let first = traffic(0, 300);
    let second = traffic(300, 900);
    broker.produce("audit", 4, &first);
    let flags = keyed_rules();
    let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    flags.extend(["--threads", "2"]);
    let mut a = Instance::start_with(&broker, "audit", "grow", "grow-a", &flags);
    wait_caught_up(&[&a], 4, first.len() as f64);
    let producer = produce_in_chunks(&broker, &second, Duration::from_millis(200));
    wait_until(Duration::from_secs(60), || {
        (a.metric("saker_kafka_messages_total") >= (first.len() + 1200) as f64).then_some(())
    })
    .unwrap_or_else(|| panic!("no progress: {}", a.stderr()));
    let mut b = Instance::start_with(&broker, "audit", "grow", "grow-b", &flags);
    producer.join().unwrap();
    let total = (first.len() + second.len()) as i64;
    wait_until(Duration::from_secs(120), || {
        (broker.committed("grow", "audit", 4) == total).then_some(())
    })
    .unwrap_or_else(|| panic!("the group did not finish:\n{}\n{}", a.stderr(), b.stderr()));
    assert!(b.lags().len() == 2, "B took partitions: {:?}", b.lags());
    for i in [&mut a, &mut b] {
        assert!(i.signal("-TERM").success(), "{}", i.stderr());
    }
    let keyed = keyed_rules();
    let keyed: Vec<&str> = keyed.iter().map(String::as_str).collect();
    let mut reference = Instance::start_with(&broker, "audit", "grow-ref", "grow-ref", &keyed);
    wait_caught_up(&[&reference], 4, total as f64);
    assert!(reference.signal("-TERM").success());
    // Per-event alerts: every one of the reference's, from A or B.
    let execs = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains("\"Exec Into Pod\""))
            .cloned()
            .collect()
    };
    let expected = unique(&execs(&reference.alert_lines()));
    let mut got = execs(&a.alert_lines());
    got.extend(execs(&b.alert_lines()));
    let got_set = unique(&got);
    eprintln!(
        "joined mid-stream: {} exec alerts from the pair ({} twice), reference {}",
        got.len(),
        got.len() - got_set.len(),
        expected.len()
    );
    assert!(expected.len() >= 200, "{}", expected.len());
    let missing: Vec<_> = expected.difference(&got_set).take(3).collect();
    assert!(
        missing.is_empty(),
        "alerts lost in the rebalance: {missing:#?}"
    );
    let extra: Vec<_> = got_set.difference(&expected).take(3).collect();
    assert!(extra.is_empty(), "alerts the reference lacks: {extra:#?}");
}

#[test]
fn sigkill_mid_stream_and_restart_lose_no_alert() {
    let broker = Broker::start();
    let first = traffic(0, 400);
    let second = traffic(400, 900);
    broker.produce("audit", 4, &first);

    let mut victim = Instance::start(&broker, "audit", "victim", "victim-1");
    wait_caught_up(&[&victim], 4, first.len() as f64);
    // More arrives, in chunks, while it consumes; it is killed mid-stream.
    let n_chunks = second.len().div_ceil(600);
    let producer = produce_in_chunks(&broker, &second, Duration::from_millis(300));
    let target = (first.len() + 3 * 600) as f64;
    wait_until(Duration::from_secs(60), || {
        (victim.metric("saker_kafka_messages_total") >= target).then_some(())
    })
    .unwrap_or_else(|| panic!("no progress: {}", victim.stderr()));
    let status = victim.signal("-KILL");
    assert!(!status.success());
    let before = victim.alert_lines();
    producer.join().unwrap();
    assert!(n_chunks >= 6);

    // tansu keeps a dead member in the group until a request arrives after
    // its session timeout (6 s here), and then does not move its partitions
    // to a member that joined meanwhile; Kafka does. Restart after that.
    std::thread::sleep(Duration::from_secs(7));
    let mut restarted = Instance::start(&broker, "audit", "victim", "victim-2");
    let total = (first.len() + second.len()) as f64;
    wait_until(Duration::from_secs(120), || {
        (broker.committed("victim", "audit", 4) == total as i64).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the restarted instance did not finish: {}",
            restarted.stderr()
        )
    });
    // Windowed rules are repartitioned: their alerts are out once every
    // repartition partition's watermark has reached the last events.
    let end = (T0 + 899 - 5) as f64;
    wait_watermarks(&[&restarted], 8, end);
    let duplicates_skipped = restarted.metric("saker_kafka_repartition_duplicates_total");
    let warmups = restarted.metric("saker_kafka_warmups_total");
    let replayed = restarted.metric("saker_kafka_warmup_messages_total");
    assert!(
        restarted.signal("-TERM").success(),
        "{}",
        restarted.stderr()
    );
    let after = restarted.alert_lines();

    let mut reference = Instance::start(&broker, "audit", "reference", "reference");
    wait_caught_up(&[&reference], 4, total);
    wait_watermarks(&[&reference], 8, end);
    assert!(reference.signal("-TERM").success());
    let expected = unique(&reference.alert_lines());

    let mut all = before.clone();
    all.extend(after.iter().cloned());
    let got = unique(&all);
    let duplicates = all.len() - got.len();
    eprintln!(
        "killed run: {} + {} alerts, {duplicates} duplicates; reference {} alerts {:?}; restart: {warmups} warm-ups replaying {replayed} messages, {duplicates_skipped} forwarded matches skipped as already applied",
        before.len(),
        after.len(),
        expected.len(),
        rule_counts(&expected)
    );
    assert!(warmups >= 1.0, "partitions were warmed up: {warmups}");
    assert!(replayed > 0.0, "the warm-up replayed messages");
    let missing: Vec<_> = expected.difference(&got).take(3).collect();
    assert!(
        missing.is_empty(),
        "alerts lost across the kill: {missing:#?}"
    );
    let extra: Vec<_> = got.difference(&expected).take(3).collect();
    assert!(extra.is_empty(), "alerts the reference lacks: {extra:#?}");
    let windowed_after = after
        .iter()
        .filter(|l| l.contains("\"Forbidden Burst\""))
        .count();
    assert!(
        windowed_after > 0,
        "windowed alerts continued after the restart"
    );
}

#[test]
fn poison_messages_are_skipped_and_counted_and_the_partition_flows() {
    let broker = Broker::start();
    // One partition, messages of every shape, sent by the rdkafka producer.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    let exec = |u: &str, s: u32| event(u, "create", "pods", "exec", 101, s);
    let list = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{},{}]}}"#,
        exec("list1", 2),
        exec("list2", 3)
    );
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<serde_json::Value>(&exec("pretty", 5)).unwrap(),
    )
    .unwrap();
    let messages: Vec<Vec<u8>> = vec![
        exec("single", 1).into_bytes(),
        list.into_bytes(),
        format!("{}\n{}\n", exec("nl1", 4), exec("nl2", 4)).into_bytes(),
        pretty.into_bytes(),
        b"\x00\x01\xfe\xff poison".to_vec(),
        br#"{"kind":"Event","verb":"get"}"#.to_vec(),
        b"{\"half\": [1, 2".to_vec(),
        Vec::new(),
        exec("after", 6).into_bytes(),
    ];
    // The topic is created by a first `saker produce` (one partition).
    broker.produce("mixed", 1, &[exec("first", 0)]);
    for m in &messages {
        producer
            .send(BaseRecord::<(), [u8]>::to("mixed").payload(m.as_slice()))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let mut inst = Instance::start(&broker, "mixed", "poison", "poison");
    wait_caught_up(&[&inst], 1, messages.len() as f64 + 1.0);
    let skipped = inst.metric("saker_kafka_messages_skipped_total");
    let skips: BTreeMap<String, f64> = inst
        .metrics()
        .into_iter()
        .filter(|(k, _)| k.contains("outcome=\"skipped\""))
        .collect();
    assert!(inst.signal("-TERM").success(), "{}", inst.stderr());
    let lines: Vec<serde_json::Value> = inst
        .alert_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let users = output_field(&lines, "ka.user.name");
    assert_eq!(
        users,
        ["first", "single", "list1", "list2", "nl1", "nl2", "pretty", "after"],
        "every event of every message shape alerts, in order, poison or not"
    );
    assert_eq!(skipped, 4.0, "four messages hold no event");
    let skip = |reason: &str| {
        skips
            .get(&format!(
                "saker_events_total{{source=\"kafka\",outcome=\"skipped\",reason=\"{reason}\"}}"
            ))
            .copied()
            .unwrap_or(0.0)
    };
    assert_eq!(skip("invalid_json"), 2.0, "{skips:?}");
    assert_eq!(skip("no_timestamp"), 1.0, "{skips:?}");
    assert_eq!(skip("blank"), 1.0, "{skips:?}");
    assert_eq!(
        broker.committed("poison", "mixed", 1),
        messages.len() as i64 + 1,
        "the poison did not hold the offset back"
    );
}

#[test]
fn sigterm_commits_and_leaves_the_group() {
    let broker = Broker::start();
    let data = traffic(0, 60);
    broker.produce("audit", 4, &data);
    let mut inst = Instance::start(&broker, "audit", "polite", "polite");
    wait_until(Duration::from_secs(60), || {
        (inst.metric("saker_kafka_messages_total") >= data.len() as f64).then_some(())
    })
    .unwrap_or_else(|| panic!("no progress: {}", inst.stderr()));
    // SIGTERM right away: the last offsets are committed on the way out,
    // not by the periodic commit.
    let status = inst.signal("-TERM");
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        inst.stderr()
    );
    let err = inst.stderr();
    assert!(
        err.contains("stopping: committing and leaving the group"),
        "{err}"
    );
    assert_eq!(broker.committed("polite", "audit", 4), data.len() as i64);
    // A successor in the group gets every partition at once (the leaver did
    // not leave a session to time out) and has nothing to redo.
    let started = Instant::now();
    let next = Instance::start(&broker, "audit", "polite", "polite-2");
    wait_caught_up(&[&next], 4, 0.0);
    eprintln!(
        "successor caught up in {:.1}s (session timeout 6s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        next.metric("saker_kafka_messages_total"),
        0.0,
        "{}",
        next.stderr()
    );
    // The repartition records the leaver sent last (its final marks) may
    // let the successor's watermark pass ticks the leaver had not
    // evaluated: those alerts are new. Nothing is repeated.
    let first = unique(&inst.alert_lines());
    let again: Vec<String> = next
        .alert_lines()
        .into_iter()
        .filter(|l| first.contains(l))
        .collect();
    assert!(again.is_empty(), "repeated: {again:#?}");
    assert_eq!(next.metric("saker_kafka_repartition_duplicates_total"), 0.0);
}

#[test]
fn alerts_are_written_out_without_waiting_for_a_commit() {
    let broker = Broker::start();
    broker.produce("audit", 1, &[]);
    // Commits are an hour apart: the alert must still reach stdout at once.
    let mut inst = Instance::start_with(
        &broker,
        "audit",
        "prompt",
        "prompt",
        &["--kafka-commit-interval", "1h"],
    );
    wait_until(Duration::from_secs(60), || {
        (inst.lags().len() == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("no partition assigned: {}", inst.stderr()));
    broker.produce(
        "audit",
        1,
        &[event("mallory", "create", "pods", "exec", 101, 1)],
    );
    let seen = wait_until(Duration::from_secs(30), || {
        inst.alert_lines()
            .iter()
            .any(|l| l.contains("\"Exec Into Pod\""))
            .then_some(())
    });
    assert!(
        seen.is_some(),
        "the alert stayed in a buffer: {}",
        inst.stderr()
    );
    assert_eq!(
        broker.committed("prompt", "audit", 1),
        0,
        "nothing committed yet"
    );
    assert!(inst.signal("-TERM").success());
    assert_eq!(
        broker.committed("prompt", "audit", 1),
        1,
        "committed on the way out"
    );
}

/// AKS diagnostic records as an Event Hub's Kafka endpoint delivers them
/// (one `records` envelope per message), and a gzip'd CloudWatch Logs
/// payload as a binary message, read by `saker decode --input kafka`.
#[test]
fn managed_envelopes_in_kafka_messages_are_decoded() {
    let broker = Broker::start();
    let inner = |user: &str, s: u32| event(user, "create", "pods", "exec", 101, s);
    let aks = serde_json::json!({"records": [
        {"category": "kube-audit", "properties": {"log": inner("aks1", 1)},
         "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/HUB-AKS"},
        {"category": "guard", "properties": {"log": "I0501 guard text"}},
        {"category": "kube-audit-admin", "properties": {"log": inner("aks2", 2)},
         "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/HUB-AKS"},
    ]});
    let cloudwatch = serde_json::json!({"messageType": "DATA_MESSAGE", "logGroup": "/aws/eks/kafka-eks/cluster",
        "logStream": "kube-apiserver-audit-1", "logEvents": [{"id": "1", "timestamp": 1, "message": inner("eks", 3)}]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, cloudwatch.to_string().as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    broker.produce("managed", 1, &[inner("plain", 0)]);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    for m in [aks.to_string().into_bytes(), gz] {
        producer
            .send(BaseRecord::<(), [u8]>::to("managed").payload(m.as_slice()))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let dir = tmp_dir();
    let (out, err) = (dir.join("decode.out"), dir.join("decode.err"));
    let mut args = vec![
        "decode",
        "--input",
        "kafka",
        "--kafka-brokers",
        &broker.addr,
        "--kafka-topic",
        "managed",
        "--fields",
        "ka.cluster,ka.user.name",
    ];
    args.extend(FAST_GROUP);
    let mut inst = Instance {
        child: Some(
            saker()
                .args(&args)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(&err).unwrap())
                .spawn()
                .expect("spawn saker decode"),
        ),
        metrics: 0,
        out,
        err,
    };
    let lines = wait_until(Duration::from_secs(60), || {
        let lines = inst.alert_lines();
        (lines.len() >= 4).then_some(lines)
    })
    .unwrap_or_else(|| panic!("decode printed {:?}: {}", inst.alert_lines(), inst.stderr()));
    assert!(inst.signal("-TERM").success(), "{}", inst.stderr());
    assert_eq!(
        lines,
        [
            r#"{"ka.cluster":null,"ka.user.name":"plain"}"#,
            r#"{"ka.cluster":"HUB-AKS","ka.user.name":"aks1"}"#,
            r#"{"ka.cluster":"HUB-AKS","ka.user.name":"aks2"}"#,
            r#"{"ka.cluster":"kafka-eks","ka.user.name":"eks"}"#,
        ]
    );
    let err = inst.stderr();
    assert!(err.contains("3 documents, 4 events"), "{err}");
    assert!(
        err.contains("1 records of a managed cluster's other logs"),
        "{err}"
    );
}
