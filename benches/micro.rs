//! Criterion micro-benchmarks of the three hot stages, on events from the
//! throughput harness's generator: decoding one event, evaluating the
//! default rules on a decoded event, and one window update; and what a
//! reload costs a stream holding 100 000 live keys, its state moved
//! (what `saker run` does) or passed through a snapshot in memory.
//! `cargo bench --bench micro`.

#[path = "support/gen.rs"]
mod gen;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use saker::event::decode_document;
use saker::rules;
use saker::window::{Cmp, Key, Limits, Measure, Spec, Threshold, Window};

fn events(n: usize) -> Vec<String> {
    let mut g = gen::Gen::new(7);
    (0..n).map(|_| g.event()).collect()
}

fn decode(c: &mut Criterion) {
    let evs = events(1000);
    let bytes: usize = evs.iter().map(String::len).sum();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("1000 events", |b| {
        b.iter(|| {
            let mut n = 0i64;
            for e in &evs {
                decode_document(e.as_bytes(), |ev| n += ev.time_ns & 1, |_| {});
            }
            black_box(n)
        })
    });
    group.finish();
}

fn predicates(c: &mut Criterion) {
    let set = rules::load(&rules::default_sources())
        .rules
        .expect("default rules");
    let evs = events(1000);
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(evs.len() as u64));
    group.bench_function("default rules on 1000 decoded events", |b| {
        b.iter(|| {
            let mut matched = 0usize;
            for e in &evs {
                decode_document(
                    e.as_bytes(),
                    |ev| {
                        let mut cx = set.context();
                        for c in set.candidates(&ev, &mut cx) {
                            if set.matches(c.rule, &ev, &mut cx) {
                                matched += 1;
                            }
                        }
                    },
                    |_| {},
                );
            }
            black_box(matched)
        })
    });
    group.finish();
}

fn windows(c: &mut Criterion) {
    let spec = Spec {
        measure: Measure::Count,
        cmp: Cmp::Ge,
        threshold: Threshold::parse("20").expect("threshold"),
        window: 60,
        hold: 0,
        keyed: true,
        resolution_ns: 1_000_000_000,
    };
    let keys: Vec<Key> = (0..1000)
        .map(|i| Key::from(vec![format!("user-{i}")]))
        .collect();
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("100000 adds over 1000 keys, advancing each tick", |b| {
        b.iter(|| {
            let mut w = Window::new(spec.clone(), Limits::default());
            let mut transitions = 0;
            for n in 0..100_000i64 {
                let tick = n / 50;
                w.observe(tick);
                w.add(tick, keys[(n * 7919 % 1000) as usize].clone(), None);
                transitions += w.advance(tick - 5, None).len();
            }
            black_box(transitions)
        })
    });
    group.finish();
}

/// A rule keyed by audit ID with a day's window: every key stays live.
const LIVE_KEYS: &str = "- rule: Keys\n  desc: d\n  condition: ka.auditid exists\n  aggregate: count >= 1000000 over 24h by ka.auditid\n  output: o\n  priority: INFO\n  source: k8s_audit\n";

fn reload(c: &mut Criterion) {
    use saker::engine::windows::{WindowOptions, Windows};
    let load = || {
        rules::load(&[rules::RuleSource::Embedded("keys.yaml", LIVE_KEYS)])
            .rules
            .expect("rule")
    };
    // Two sets loaded apart, as a reload loads the file again.
    let sets = [load(), load()];
    let options = WindowOptions {
        limits: Limits {
            max_keys: 200_000,
            ..Limits::default()
        },
        ..WindowOptions::default()
    };
    let mut w = Windows::new(&sets[0], options);
    for n in 0..100_000i64 {
        w.observe(n / 100);
        w.add_keyed(0, n / 100, Key::from(vec![format!("id-{n:08}")]), None);
    }
    assert_eq!(w.keys(), 100_000);
    let mut group = c.benchmark_group("reload");
    group.sample_size(20);
    let mut at = 0;
    group.bench_function("carry 100000 live keys (moved)", |b| {
        b.iter(|| {
            at = 1 - at;
            let let_go = w.carry(&[Some(0)], &sets[at], options);
            black_box(let_go.windowed.len())
        })
    });
    group.bench_function("snapshot and restore 100000 live keys in memory", |b| {
        b.iter(|| {
            let snapshot = w.snapshot(&sets[at]);
            at = 1 - at;
            let (restored, _) = Windows::restore(&sets[at], options, snapshot).expect("restore");
            w = restored;
            black_box(w.keys())
        })
    });
    assert_eq!(w.keys(), 100_000);
    group.finish();
}

criterion_group!(benches, decode, predicates, windows, reload);
criterion_main!(benches);
