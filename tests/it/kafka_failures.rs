//! Failures around a repartitioning consumer group on a real broker
//! (tansu, as in kafka.rs): a member killed mid-stream, a crash while a
//! silent input partition holds the stateful watermark back, and a stop
//! with the broker gone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::kafka::{
    rule_counts, unique, wait_caught_up, wait_watermarks, watermarks, Broker, Instance,
};
use super::net::*;
use super::repartition::{
    alert_time, assert_as_replayed, file_replay, rules_file, send, silent_after_a_minute, traffic,
    T0,
};

/// The sum of the high watermarks of `topic`'s partitions.
fn high_watermarks(broker: &Broker, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// How often each line occurs.
fn occurrences(lines: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l.as_str()).or_insert(0) += 1;
    }
    m
}

#[test]
fn a_member_killed_on_a_round_robin_topic_and_restarted_loses_no_alert() {
    let broker = Broker::start();
    broker.produce("crash", 4, &[]);
    let rules = rules_file();
    let flags = [
        "--rules",
        rules.to_str().unwrap(),
        "--kafka-idle-timeout",
        "60s",
    ];
    let (mut a, mut b) = Instance::start_pair(&broker, "crash", "crash", &flags);
    let seconds = 900;
    let data = traffic(seconds);
    // One message at a time round-robin, in chunks of 100 s of traffic
    // while the pair consumes.
    let addr = broker.addr.clone();
    let chunks: Vec<Vec<String>> = data.chunks(1200).map(<[String]>::to_vec).collect();
    let producer = std::thread::spawn(move || {
        for chunk in chunks {
            send(&addr, "crash", &chunk, 4, 1, |_, p| p);
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    wait_until(Duration::from_secs(60), || {
        (a.metric("saker_kafka_messages_total") >= 2400.0).then_some(())
    })
    .unwrap_or_else(|| panic!("no progress: {}", a.stderr()));
    assert!(!a.signal("-KILL").success());
    // tansu drops the dead member after its session timeout (6 s); the
    // survivor takes its partitions, then the restarted one joins.
    std::thread::sleep(Duration::from_secs(7));
    let mut a2 = Instance::start_with(&broker, "crash", "crash", "crash-a2", &flags);
    producer.join().unwrap();
    let total = data.len() as i64;
    wait_until(Duration::from_secs(120), || {
        (broker.committed("crash", "crash", 4) == total).then_some(())
    })
    .unwrap_or_else(|| panic!("the input was not all committed: {}", a2.stderr()));
    let end = T0 + i64::from(seconds) - 1;
    wait_watermarks(&[&a2, &b], 8, (end - 5) as f64);
    let metric = |name: &str| a2.metric(name) + b.metric(name);
    let skipped = metric("saker_kafka_repartition_duplicates_total");
    let redelivered = metric("saker_kafka_redelivered_messages_total");
    let late = metric("saker_late_events_total");
    for i in [&mut a2, &mut b] {
        assert!(i.signal("-TERM").success(), "{}", i.stderr());
    }
    let killed = a.alert_lines();
    let (restarted, survivor) = (a2.alert_lines(), b.alert_lines());
    let mut survivors = restarted.clone();
    survivors.extend(survivor.iter().cloned());
    let mut all = killed.clone();
    all.extend(survivors.iter().cloned());
    let replay = file_replay(&rules, &data);
    let cutoff = end - 5;
    assert_as_replayed("the killed run", &replay, &all, cutoff);
    // Duplicates come from the crash only: a line repeats at most once,
    // once from the killed instance and once from those that took over.
    let (in_killed, in_survivors) = (occurrences(&killed), occurrences(&survivors));
    let repeated: Vec<&str> = occurrences(&all)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(l, _)| l)
        .collect();
    let (in_restarted, in_survivor) = (occurrences(&restarted), occurrences(&survivor));
    for l in &repeated {
        assert!(
            in_killed.get(l) == Some(&1) && in_survivors.get(l) == Some(&1),
            "repeated otherwise than across the crash ({:?} times by the killed one, {:?} by the restarted one, {:?} by the survivor): {l}\nrestarted: {}\nsurvivor: {}",
            in_killed.get(l),
            in_restarted.get(l),
            in_survivor.get(l),
            a2.stderr(),
            b.stderr()
        );
    }
    let kinds = rule_counts(&repeated.iter().map(|l| l.to_string()).collect());
    let span = repeated
        .iter()
        .map(|l| alert_time(l))
        .fold(None, |s: Option<(i64, i64)>, t| {
            Some(s.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))))
        });
    eprintln!(
        "killed after {} alerts; {} alerts in all, {} repeated {kinds:?} (event times {:?} s after the start); {redelivered} messages redelivered, {skipped} forwarded occurrences skipped as already applied, {late} late events",
        killed.len(),
        all.len(),
        repeated.len(),
        span.map(|(lo, hi)| (lo - T0, hi - T0))
    );
    assert!(
        !all.iter().any(|l| l.contains("\"Stream Silent\"")),
        "no silence while events flow"
    );
    assert_eq!(late, 0.0, "nothing arrived late");
}

#[test]
fn a_crash_while_a_silent_partition_holds_the_watermark_loses_nothing_and_repeats_nothing() {
    let broker = Broker::start();
    broker.produce("silent", 4, &[]);
    let seconds = 600;
    let data = traffic(seconds);
    // Round-robin, but partition 3 gets the first minute only.
    send(&broker.addr, "silent", &data, 4, 1, silent_after_a_minute);
    let rules = rules_file();
    let flags = [
        "--rules",
        rules.to_str().unwrap(),
        "--kafka-idle-timeout",
        "30s",
    ];
    let mut first = Instance::start_with(&broker, "silent", "silent", "silent-1", &flags);
    wait_caught_up(&[&first], 4, data.len() as f64);
    let total = data.len() as i64;
    let stage = "silent-saker-repartition";
    wait_until(Duration::from_secs(60), || {
        let done = broker.committed("silent", "silent", 4) == total
            && broker.committed("silent", stage, 8) == high_watermarks(&broker, stage, 8);
        done.then_some(())
    })
    .unwrap_or_else(|| panic!("not all committed: {}", first.stderr()));
    // Partition 3 is not idle yet (30 s): it holds every stateful
    // partition's watermark at its last event, 12:00:59, minus the lateness.
    let held = watermarks(&[&first]);
    assert!(
        held.len() == 8 && held.iter().all(|&w| w < (T0 + 60) as f64),
        "the watermark should still wait for the silent partition: {held:?}"
    );
    assert!(!first.signal("-KILL").success());
    std::thread::sleep(Duration::from_secs(7));
    let mut second = Instance::start_with(&broker, "silent", "silent", "silent-2", &flags);
    // Once the silent partition is idle, the watermark goes to the end.
    let end = T0 + i64::from(seconds) - 1;
    wait_watermarks(&[&second], 8, (end - 5) as f64);
    let late = second.metric("saker_late_events_total");
    let warmups = second.metric("saker_kafka_warmups_total");
    for l in second.stderr().lines().filter(|l| l.contains("rebuilt")) {
        eprintln!("{l}");
    }
    assert!(second.signal("-TERM").success(), "{}", second.stderr());
    let killed = first.alert_lines();
    let mut all = killed.clone();
    all.extend(second.alert_lines());
    let replay = file_replay(&rules, &data);
    let cutoff = end - 5;
    eprintln!(
        "killed after {} alerts, {} after the restart ({warmups} warm-ups); replay {:?}",
        killed.len(),
        all.len() - killed.len(),
        rule_counts(&unique(&replay))
    );
    assert_as_replayed("the restart", &replay, &all, cutoff);
    assert!(
        warmups >= 8.0,
        "the stateful partitions were rebuilt: {warmups}"
    );
    // Everything was committed before the kill, and the watermark the
    // alerts were emitted at is rebuilt: nothing is emitted twice.
    assert_eq!(all.len(), unique(&all).len(), "repeated alerts");
    assert!(
        !all.iter().any(|l| l.contains("\"Stream Silent\"")),
        "a silent partition is not a silent stream"
    );
    assert_eq!(late, 0.0, "nothing arrived late");
}

#[test]
fn sigterm_with_the_broker_gone_exits_and_says_what_it_gave_up() {
    let mut broker = Broker::start();
    broker.produce("gone", 4, &[]);
    let rules = rules_file();
    // Kafka's default session timeout, not the tests' short one: leaving
    // the group waits for the coordinator for that long.
    let flags = [
        "--rules",
        rules.to_str().unwrap(),
        "-X",
        "session.timeout.ms=45000",
    ];
    let mut inst = Instance::start_with(&broker, "gone", "gone", "gone", &flags);
    let data = traffic(60);
    send(&broker.addr, "gone", &data, 4, 1, |_, p| p);
    wait_caught_up(&[&inst], 4, data.len() as f64);
    broker.kill();
    // Let the client notice; then stop it.
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let status = inst.signal("-TERM");
    let took = started.elapsed();
    let err = inst.stderr();
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("broker unreachable"))
        .collect();
    eprintln!(
        "exit {status:?} {:.1}s after SIGTERM: {said:#?}",
        took.as_secs_f64()
    );
    assert!(
        err.contains("stopping: committing and leaving the group"),
        "{err}"
    );
    assert!(
        err.contains("broker unreachable"),
        "the stop says what it could not do: {err}"
    );
}
