//! Windowed rules on a topic that is not keyed by what they group by: the
//! instances of a group repartition their matches through
//! `<group>-saker-repartition` on a real broker (tansu, as in kafka.rs),
//! and give the alerts a file replay of the same events gives.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use super::kafka::{rule_counts, tmp_dir, unique, wait_watermarks, Broker, Instance};
use super::*;

/// Rules grouped by the user, by the user and the namespace, by nothing,
/// an absence rule, a sequence, first-seen rules by user and by namespace,
/// and a per-event rule.
pub(super) const RULES: &str = r#"
- rule: Exec
  desc: an exec into a pod
  condition: ka.target.subresource = exec
  output: "exec by %ka.user.name into %ka.target.name"
  priority: NOTICE
  source: k8s_audit
- rule: Denied Burst
  desc: per user
  condition: ka.response.code = 403
  aggregate: count >= 20 over 1m by ka.user.name
  output: "%ka.user.name denied %agg.value times (%agg.state)"
  priority: WARNING
  source: k8s_audit
- rule: Secrets Probed
  desc: distinct values per user
  condition: ka.response.code = 403 and ka.target.resource = secrets
  aggregate: distinct(ka.target.name) >= 15 over 2m by ka.user.name
  output: "%ka.user.name probed %agg.value secrets (%agg.state)"
  priority: WARNING
  source: k8s_audit
- rule: Namespace Deletions
  desc: per user and namespace
  condition: ka.verb = delete
  aggregate: count >= 8 over 2m by ka.user.name, ka.target.namespace
  output: "%ka.user.name deleted %agg.value in %ka.target.namespace (%agg.state)"
  priority: CRITICAL
  source: k8s_audit
- rule: Cluster Denials
  desc: key-less
  condition: ka.response.code = 403
  aggregate: count >= 40 over 1m
  output: "%agg.value denials in the cluster (%agg.state)"
  priority: WARNING
  source: k8s_audit
- rule: Pod Exec By Another
  desc: a sequence joined on namespace and pod
  sequence:
    within: 2m
    steps:
      - name: created
        condition: ka.verb = create and ka.target.resource = pods and ka.target.name startswith app
        by: [ka.target.namespace, ka.target.name]
      - name: exec
        condition: ka.target.subresource = exec and ka.target.name startswith app
        by: [ka.target.namespace, ka.target.name]
  output: "%exec.ka.user.name ran a command in %exec.ka.target.name, created by %created.ka.user.name"
  priority: WARNING
  source: k8s_audit
- rule: First Exec By User
  desc: first-seen per user
  condition: ka.target.subresource = exec
  aggregate: first_seen over 30s by ka.user.name
  output: "%ka.user.name ran a first command in %ka.target.name (%agg.window)"
  priority: NOTICE
  source: k8s_audit
- rule: First Deletion In Namespace
  desc: first-seen per namespace (several users delete in one second)
  condition: ka.verb = delete
  aggregate: first_seen over 1m by ka.target.namespace
  output: "first deletion in %ka.target.namespace for %agg.window"
  priority: NOTICE
  source: k8s_audit
- rule: Stream Silent
  desc: absence
  condition: ka.auditid exists
  aggregate: count < 1 over 2m
  output: "silent for %agg.window (%agg.state)"
  priority: CRITICAL
  source: k8s_audit
"#;

/// 2024-10-29T12:00:00Z in seconds.
pub(super) const T0: i64 = 1_730_203_200;

/// `verb` by `user` at second `s` of `resource` (`pods/exec` names a
/// subresource) `ns/name`, answered `code`.
pub(super) fn event(
    user: &str,
    verb: &str,
    resource: &str,
    target: &str,
    code: u32,
    s: u32,
) -> String {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    let (ns, name) = target.split_once('/').expect("ns/name");
    let time = format!(
        "2024-10-29T{:02}:{:02}:{:02}.000100Z",
        12 + s / 3600,
        s / 60 % 60,
        s % 60
    );
    let sub_json = if sub.is_empty() {
        String::new()
    } else {
        format!(r#","subresource":"{sub}""#)
    };
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{user}-{s}-{verb}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/{ns}/{resource}/{name}","verb":"{verb}","user":{{"username":"{user}","groups":["system:authenticated"]}},"sourceIPs":["10.0.0.9"],"objectRef":{{"resource":"{resource}","namespace":"{ns}","name":"{name}","apiVersion":"v1"{sub_json}}},"responseStatus":{{"metadata":{{}},"code":{code}}},"requestReceivedTimestamp":"{time}","stageTimestamp":"{time}"}}"#
    )
}

/// `seconds` of traffic from 12 users, one event each per second: users
/// 0-3 probe secrets in bursts (denied), user 4 deletes pods in one
/// namespace at a time (Namespace Deletions fires), user 5 as many but
/// alternating between two namespaces (it must not fire: too few in
/// each), user 6 creates a pod every 100 s that user 7 runs a command in
/// 30 s later (the sequence), an exec now and then, reads otherwise.
pub(super) fn traffic(seconds: u32) -> Vec<String> {
    let mut out = Vec::new();
    for s in 0..seconds {
        for u in 0..12u32 {
            let user = format!("user{u}");
            let phase = (s + 1000 - u * 11) % 200;
            let line = if u < 4 && phase < 25 {
                event(
                    &user,
                    "get",
                    "secrets",
                    &format!("shop/s{}", s % 40),
                    403,
                    s,
                )
            } else if u == 6 && s % 100 == 10 {
                event(
                    &user,
                    "create",
                    "pods",
                    &format!("shop/app{}", s / 100),
                    201,
                    s,
                )
            } else if u == 7 && s % 100 == 40 {
                let pod = format!("shop/app{}", s / 100);
                event(&user, "create", "pods/exec", &pod, 101, s)
            } else if u == 4 && s % 150 < 12 {
                let ns = format!("ns{}", s / 150 % 3);
                event(&user, "delete", "pods", &format!("{ns}/p{s}"), 200, s)
            } else if u == 5 && s % 150 < 12 {
                let ns = format!("ns{}", s % 2);
                event(&user, "delete", "pods", &format!("{ns}/p{s}"), 200, s)
            } else if s % 37 == u {
                event(&user, "create", "pods/exec", &format!("shop/w{s}"), 101, s)
            } else {
                event(&user, "get", "configmaps", &format!("shop/c{s}"), 200, s)
            };
            out.push(line);
        }
    }
    out
}

/// A partition for `send`: round-robin, except that partition 3 gets only
/// the first minute of `traffic` (12 events a second), then nothing.
pub(super) fn silent_after_a_minute(i: usize, p: usize) -> usize {
    if i >= 12 * 60 && p == 3 {
        i % 3
    } else {
        p
    }
}

/// Sends `lines` to `topic` by hand, in runs of `run` messages per
/// partition, round-robin over `partitions` (1: one message at a time;
/// longer runs are what a sticky partitioner does to unkeyed messages).
/// `partition_of` may move a message elsewhere.
pub(super) fn send(
    addr: &str,
    topic: &str,
    lines: &[String],
    partitions: usize,
    run: usize,
    partition_of: impl Fn(usize, usize) -> usize,
) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    for (i, line) in lines.iter().enumerate() {
        let p = partition_of(i, (i / run) % partitions);
        let ms = serde_json::from_str::<serde_json::Value>(line).unwrap()["stageTimestamp"]
            .as_str()
            .map(|t| {
                let s: i64 = t[11..13].parse::<i64>().unwrap() * 3600
                    + t[14..16].parse::<i64>().unwrap() * 60
                    + t[17..19].parse::<i64>().unwrap();
                (T0 - 12 * 3600 + s) * 1000
            })
            .unwrap();
        let mut record = BaseRecord::<(), str>::to(topic)
            .payload(line.as_str())
            .partition(p as i32)
            .timestamp(ms);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(20));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// The alerts of `saker run` over the events in a file, with the rules.
pub(super) fn file_replay(rules: &std::path::Path, lines: &[String]) -> Vec<String> {
    let dir = tmp_dir();
    let input = dir.join("replay.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = saker()
        .args(["run", "--rules"])
        .arg(rules)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub(super) fn rules_file() -> std::path::PathBuf {
    let path = tmp_dir().join("repartition_rules.yaml");
    std::fs::write(&path, RULES).unwrap();
    path
}

/// Event time of an alert line, in seconds.
pub(super) fn alert_time(line: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let t = v["time"].as_str().unwrap();
    let s: i64 = t[11..13].parse::<i64>().unwrap() * 3600
        + t[14..16].parse::<i64>().unwrap() * 60
        + t[17..19].parse::<i64>().unwrap();
    T0 - 12 * 3600 + s
}

/// The alerts before `cutoff` (seconds): a live stream has evaluated its
/// ticks up to its watermark, a file to its end.
pub(super) fn before(lines: &[String], cutoff: i64) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| alert_time(l) < cutoff)
        .cloned()
        .collect()
}

/// What `instances` wrote, what a file replay of `data` with `rules` writes,
/// and the replay's count of alerts per rule.
fn live_and_replay(
    instances: &[&Instance],
    rules: &std::path::Path,
    data: &[String],
) -> (Vec<String>, Vec<String>, BTreeMap<String, usize>) {
    let live = instances.iter().flat_map(|i| i.alert_lines()).collect();
    let replay = file_replay(rules, data);
    let counts = rule_counts(&unique(&replay));
    (live, replay, counts)
}

/// Asserts that `live` holds exactly the file replay's alerts before
/// `cutoff` (`what` names the run in the message); returns them.
pub(super) fn assert_as_replayed(
    what: &str,
    replay: &[String],
    live: &[String],
    cutoff: i64,
) -> BTreeSet<String> {
    let (want, got) = (before(replay, cutoff), before(live, cutoff));
    let missing: Vec<_> = want.difference(&got).take(3).collect();
    let extra: Vec<_> = got.difference(&want).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} differs from the replay ({} against {}):\nmissing {missing:#?}\nextra {extra:#?}",
        got.len(),
        want.len()
    );
    got
}

#[test]
fn two_instances_on_a_round_robin_topic_give_the_alerts_of_a_file_replay() {
    let broker = Broker::start();
    broker.produce("rr", 4, &[]);
    let rules = rules_file();
    let rules_arg = rules.to_str().unwrap();
    let flags = ["--rules", rules_arg, "--kafka-idle-timeout", "10s"];
    let (mut a, mut b) = Instance::start_pair(&broker, "rr", "rr", &flags);
    let seconds = 900;
    let data = traffic(seconds);
    // Runs of 1500 messages (125 s): each partition is quiet for longer than
    // the absence rule's 2 minutes, again and again.
    send(&broker.addr, "rr", &data, 4, 1500, |_, p| p);
    super::kafka::wait_caught_up(&[&a, &b], 4, data.len() as f64);
    let end = T0 + i64::from(seconds) - 1;
    wait_watermarks(&[&a, &b], 8, (end - 5) as f64);
    let forwarded = [&a, &b].map(|i| i.metric("saker_kafka_forwarded_matches_total"));
    let records = [&a, &b].map(|i| i.metric("saker_kafka_forwarded_records_total"));
    let bytes = [&a, &b].map(|i| i.metric("saker_kafka_forwarded_bytes_total"));
    for i in [&mut a, &mut b] {
        assert!(i.signal("-TERM").success(), "{}", i.stderr());
    }
    let (live, replay, counts) = live_and_replay(&[&a, &b], &rules, &data);
    eprintln!(
        "file replay: {counts:?}; live: {} alerts; forwarded {forwarded:?} matches in {records:?} records, {bytes:?} bytes",
        live.len()
    );
    for rule in [
        "Denied Burst",
        "Secrets Probed",
        "Namespace Deletions",
        "Cluster Denials",
    ] {
        assert!(
            counts
                .get(&format!("{rule} (firing)"))
                .copied()
                .unwrap_or(0)
                >= 1,
            "{rule} fires in the replay: {counts:?}"
        );
    }
    assert!(
        counts.get("Exec (event)").copied().unwrap_or(0) >= 100,
        "{counts:?}"
    );
    assert_eq!(
        counts.get("Pod Exec By Another (event)").copied(),
        Some(9),
        "every pod created and exec'd by another completes: {counts:?}"
    );
    // Every user's commands are 37 s apart (a 30 s window): each is new
    // after the learning period. Deletions come in bursts 150 s apart.
    for (rule, at_least) in [
        ("First Exec By User", 200),
        ("First Deletion In Namespace", 10),
    ] {
        let n = counts.get(&format!("{rule} (new)")).copied().unwrap_or(0);
        assert!(
            n >= at_least,
            "{rule} fires {n} times in the replay: {counts:?}"
        );
    }
    // Only user 4 deletes enough in one namespace.
    let deletions: Vec<&String> = replay
        .iter()
        .filter(|l| l.contains("\"Namespace Deletions\""))
        .collect();
    assert!(
        deletions.iter().all(|l| l.contains("user4 deleted")),
        "{deletions:?}"
    );
    assert!(
        !counts.keys().any(|k| k.starts_with("Stream Silent")),
        "the stream is never silent: {counts:?}"
    );
    assert!(
        forwarded.iter().all(|&n| n > 0.0),
        "both forwarded: {forwarded:?}"
    );
    // Everything the replay found before the live watermark, exactly.
    let cutoff = end - 5;
    let got = assert_as_replayed("live", &replay, &live, cutoff);
    assert!(
        !live.iter().any(|l| l.contains("\"Stream Silent\"")),
        "no silence while events flow"
    );
    let windowed = got.iter().filter(|l| l.contains("\"aggregate\"")).count();
    assert!(windowed >= 10, "{windowed} windowed alerts compared");
    let first_seen = got.iter().filter(|l| l.contains("\"First ")).count();
    assert!(first_seen >= 200, "{first_seen} first-seen alerts compared");
}

#[test]
fn an_idle_partition_neither_stalls_the_others_nor_fakes_silence() {
    let broker = Broker::start();
    broker.produce("idle", 4, &[]);
    let seconds = 600;
    let data = traffic(seconds);
    // Round-robin, but partition 3 gets the first minute only: then it
    // stays silent for nine minutes, far longer than the absence window.
    send(&broker.addr, "idle", &data, 4, 1, silent_after_a_minute);
    let rules = rules_file();
    let flags = [
        "--rules",
        rules.to_str().unwrap(),
        "--kafka-idle-timeout",
        "5s",
    ];
    let mut inst = Instance::start_with(&broker, "idle", "idle", "idle", &flags);
    super::kafka::wait_caught_up(&[&inst], 4, data.len() as f64);
    // The watermark gets to the end although partition 3 stands at 12:00:59.
    let end = T0 + i64::from(seconds) - 1;
    wait_watermarks(&[&inst], 8, (end - 5) as f64);
    let late = inst.metric("saker_late_events_total");
    assert!(inst.signal("-TERM").success(), "{}", inst.stderr());
    let live = inst.alert_lines();
    let replay = file_replay(&rules, &data);
    let cutoff = end - 5;
    let got = assert_as_replayed("live", &replay, &live, cutoff);
    assert!(
        !live.iter().any(|l| l.contains("\"Stream Silent\"")),
        "a silent partition is not a silent stream"
    );
    assert!(
        got.iter()
            .any(|l| alert_time(l) > T0 + 500 && l.contains("\"aggregate\"")),
        "windowed alerts near the end came out"
    );
    assert_eq!(late, 0.0, "nothing arrived late");
}

/// Rules grouped by the user (windowed and first-seen) and one grouped by
/// the namespace: on a topic keyed by the user, only the last travels.
const KEYED_RULES: &str = r#"
- rule: Denied Burst
  desc: per user
  condition: ka.response.code = 403
  aggregate: count >= 20 over 1m by ka.user.name
  output: "%ka.user.name denied %agg.value times (%agg.state)"
  priority: WARNING
  source: k8s_audit
- rule: First Exec By User
  desc: first-seen per user
  condition: ka.target.subresource = exec
  aggregate: first_seen over 30s by ka.user.name
  output: "%ka.user.name ran a first command in %ka.target.name (%agg.window)"
  priority: NOTICE
  source: k8s_audit
- rule: Busy Deletions
  desc: per namespace, whoever deletes
  condition: ka.verb = delete
  aggregate: count >= 15 over 1m by ka.target.namespace
  output: "%agg.value deletions in %ka.target.namespace (%agg.state)"
  priority: WARNING
  source: k8s_audit
"#;

/// A broker with an empty 4-partition `topic`, and [`KEYED_RULES`] in a file.
fn keyed_broker(topic: &str) -> (Broker, std::path::PathBuf) {
    let broker = Broker::start();
    broker.produce(topic, 4, &[]);
    let rules = tmp_dir().join(format!("{topic}_rules.yaml"));
    std::fs::write(&rules, KEYED_RULES).unwrap();
    (broker, rules)
}

/// An instance's flags for `rules` on a topic keyed by the user.
fn keyed_flags(rules: &std::path::Path) -> [&str; 4] {
    [
        "--rules",
        rules.to_str().unwrap(),
        "--kafka-partition-key",
        "ka.user.name",
    ]
}

/// The other Kafka tests write one record per batch (see
/// `ONE_RECORD_BATCHES`); producers usually write many. A stop and a restart
/// between two runs of such batches rebuild the per-user windows kept in the
/// input partitions (the warm-up's probes land inside a batch, where tansu
/// answers with the later batches) and give the file replay's alerts.
#[test]
fn a_restart_on_a_topic_of_many_record_batches_rebuilds_its_windows() {
    let (broker, rules) = keyed_broker("batched");
    let flags = keyed_flags(&rules);
    let seconds = 600;
    let data = traffic(seconds);
    let (first, second) = data.split_at(data.len() / 2);
    broker.produce_in_batches("batched", 4, first);
    let mut a = Instance::start_with(&broker, "batched", "batched", "batched-1", &flags);
    super::kafka::wait_caught_up(&[&a], 4, first.len() as f64);
    assert!(a.signal("-TERM").success(), "{}", a.stderr());
    broker.produce_in_batches("batched", 4, second);
    let mut b = Instance::start_with(&broker, "batched", "batched", "batched-2", &flags);
    super::kafka::wait_caught_up(&[&b], 4, second.len() as f64);
    let end = T0 + i64::from(seconds) - 1;
    wait_watermarks(&[&b], 8, (end - 5) as f64);
    let replayed = b.metric("saker_kafka_warmup_messages_total");
    let incomplete = b.metric("saker_kafka_warmups_incomplete_total");
    assert!(b.signal("-TERM").success(), "{}", b.stderr());
    let (live, replay, counts) = live_and_replay(&[&a, &b], &rules, &data);
    eprintln!(
        "file replay: {counts:?}; live {} alerts; the restart replayed {replayed} messages",
        live.len()
    );
    assert!(replayed > 0.0, "the restart rebuilt the windows");
    assert_eq!(incomplete, 0.0, "no warm-up gave up");
    assert!(
        counts.get("Denied Burst (firing)").copied().unwrap_or(0) >= 3,
        "{counts:?}"
    );
    assert_as_replayed("a stop and a restart", &replay, &live, end - 5);
}

#[test]
fn with_the_partition_key_declared_only_rules_grouped_otherwise_travel() {
    let (broker, rules) = keyed_broker("keyed");
    let flags = keyed_flags(&rules);
    let (mut a, mut b) = Instance::start_pair(&broker, "keyed", "keyed", &flags);
    let seconds = 600;
    let data = traffic(seconds);
    // `saker produce` keys every message by the user.
    broker.produce("keyed", 4, &data);
    super::kafka::wait_caught_up(&[&a, &b], 4, data.len() as f64);
    let end = T0 + i64::from(seconds) - 1;
    wait_watermarks(&[&a, &b], 8, (end - 5) as f64);
    let forwarded: f64 = [&a, &b]
        .iter()
        .map(|i| i.metric("saker_kafka_forwarded_matches_total"))
        .sum();
    let records: f64 = [&a, &b]
        .iter()
        .map(|i| i.metric("saker_kafka_forwarded_records_total"))
        .sum();
    for i in [&mut a, &mut b] {
        assert!(i.signal("-TERM").success(), "{}", i.stderr());
    }
    let err = a.stderr();
    let announced = err
        .lines()
        .find(|l| l.contains("not grouped by --kafka-partition-key are repartitioned"))
        .unwrap_or_else(|| panic!("no repartitioning announced: {err}"));
    assert!(
        announced.contains("Busy Deletions")
            && !announced.contains("Denied Burst")
            && !announced.contains("First Exec"),
        "only the rule by namespace travels: {announced}"
    );
    // Every forwarded match is a deletion: none of the per-user rules'
    // (denials and commands far outnumber deletions).
    let deletions = data
        .iter()
        .filter(|l| l.contains(r#""verb":"delete""#))
        .count();
    assert_eq!(forwarded, deletions as f64, "{records} records");
    let (live, replay, counts) = live_and_replay(&[&a, &b], &rules, &data);
    eprintln!(
        "file replay: {counts:?}; live {} alerts; {forwarded} matches forwarded in {records} records",
        live.len()
    );
    for rule in [
        "Denied Burst (firing)",
        "Busy Deletions (firing)",
        "First Exec By User (new)",
    ] {
        assert!(
            counts.get(rule).copied().unwrap_or(0) >= 3,
            "{rule}: {counts:?}"
        );
    }
    let cutoff = end - 5;
    assert_as_replayed("live", &replay, &live, cutoff);
}
