//! Criterion micro-benchmarks of the three hot stages, on events from the
//! throughput harness's generator: decoding one event, evaluating the
//! default rules on a decoded event, and one window update.
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

criterion_group!(benches, decode, predicates, windows);
criterion_main!(benches);
