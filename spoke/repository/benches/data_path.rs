//! The hot loops of the write and read paths, one stage at a time, on 16 MiB of compressible
//! text and of random bytes: chunking, keyed hashing, sealing (compress + encrypt), opening.
//! `cargo bench -p ferry-repository --bench data_path`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_repository::blob::{BlobCodec, BlobKind};
use ferry_repository::chunker::{chunk, ChunkerParams};
use ferry_repository::keys::MasterKey;

fn data() -> Vec<(&'static str, Vec<u8>)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..16 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut text = Vec::with_capacity(16 << 20);
    let mut n: u64 = 0;
    while text.len() < 16 << 20 {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.extend_from_slice(
            format!(
                "2026-11-22 12:{:02}:{:02} GET /api/v1/users/{} 200 {} ms\n",
                n % 60,
                (n >> 8) % 60,
                n >> 40,
                (n >> 20) % 900
            )
            .as_bytes(),
        );
    }
    text.truncate(16 << 20);
    vec![("text", text), ("random", random)]
}

fn stages(c: &mut Criterion) {
    let codec = BlobCodec::new(&MasterKey::generate().unwrap());
    let params = ChunkerParams::default();
    let mut group = c.benchmark_group("data_path");
    group.sample_size(10);
    for (name, bytes) in data() {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("fastcdc", name), &bytes, |b, d| {
            b.iter(|| chunk(d, params).len())
        });
        group.bench_with_input(BenchmarkId::new("blake3_keyed", name), &bytes, |b, d| {
            b.iter(|| {
                d.chunks(1 << 20)
                    .map(|c| codec.id_of(c).0[0])
                    .fold(0u8, |a, x| a ^ x)
            })
        });
        group.bench_with_input(BenchmarkId::new("seal", name), &bytes, |b, d| {
            b.iter(|| {
                d.chunks(1 << 20)
                    .map(|c| codec.seal(BlobKind::Data, c).unwrap().1.len())
                    .sum::<usize>()
            })
        });
        let sealed: Vec<_> = bytes
            .chunks(1 << 20)
            .map(|c| codec.seal(BlobKind::Data, c).unwrap())
            .collect();
        group.bench_with_input(BenchmarkId::new("open", name), &sealed, |b, s| {
            b.iter(|| {
                s.iter()
                    .map(|(id, blob)| codec.open(BlobKind::Data, id, blob).unwrap().len())
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
