//! Transforming and ordering 10 000 objects (issue 5's target: well under a second).
//! `cargo bench -p ferry-transform`; results in docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, Criterion};
use ferry_transform::order::restore_order;
use ferry_transform::sanitize::SanitizeOptions;
use ferry_transform::{compile, parse_spec, Transformer};
use serde_json::Value;
use std::hint::black_box;

#[path = "objects.rs"]
mod objects;
use objects::{objects, RULES};

fn bench(c: &mut Criterion) {
    let input = objects(10_000);
    let rules = compile(&parse_spec(RULES).unwrap()).unwrap();
    let transformer = Transformer::new(rules, SanitizeOptions::default());
    let transformed: Vec<Value> = transformer
        .transform(&input)
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.object)
        .collect();
    let mut group = c.benchmark_group("10k objects");
    group.sample_size(10);
    group.bench_function("transform", |b| {
        b.iter(|| black_box(transformer.transform(black_box(&input)).unwrap()))
    });
    group.bench_function("restore order", |b| {
        b.iter(|| black_box(restore_order(black_box(&transformed))))
    });
    group.bench_function("transform + order", |b| {
        b.iter(|| {
            let out = transformer.transform(&input).unwrap();
            let objs: Vec<Value> = out.objects.into_iter().map(|o| o.object).collect();
            black_box(restore_order(&objs))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
