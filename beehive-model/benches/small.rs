//! Encoding and decoding one small message (268 bytes: a generated id,
//! a route, a 100-character string as content), the message the socket
//! workloads send one per packet. Per message, in memory.
//!
//! `cargo bench -p beehive-model --bench small`

use beehive_model::{json, Message};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn small() -> Message {
    Message::new("").build_router("bench-src", "", "pod", "update").fill_body("x".repeat(100))
}

fn encode(c: &mut Criterion) {
    let msg = small();
    let mut group = c.benchmark_group("small_message");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_into", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            json::encode_into(black_box(&msg), &mut out).unwrap();
            out.len()
        })
    });
    let bytes = json::to_vec(&msg).unwrap();
    group.bench_function("from_slice", |b| b.iter(|| json::from_slice(black_box(&bytes)).unwrap()));
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
