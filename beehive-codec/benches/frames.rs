//! Frame decoding in memory (no JSON): how fast the package and raw
//! decoders split a buffer into payloads, for 100-byte and 64 KiB payloads.
//!
//! `cargo bench -p beehive-codec --bench frames`

use beehive_codec::{PackageCodec, RawCodec};
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

fn stream(codec: &mut PackageCodec, payload_len: usize, total: usize) -> BytesMut {
    let payload = vec![b'x'; payload_len];
    let mut buf = BytesMut::new();
    while buf.len() < total {
        codec.encode_frame(&payload, &mut buf).unwrap();
    }
    buf
}

fn package(c: &mut Criterion) {
    let mut group = c.benchmark_group("package_decode");
    for (name, len) in [("100B", 100usize), ("64KiB", 64 * 1024)] {
        let input = stream(&mut PackageCodec::new(), len, 8 << 20);
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || input.clone(),
                |mut buf| {
                    let mut codec = PackageCodec::new();
                    let mut n = 0usize;
                    while let Some(frame) = codec.decode_frame(&mut buf).unwrap() {
                        n += black_box(frame).len();
                    }
                    n
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn raw(c: &mut Criterion) {
    let mut group = c.benchmark_group("raw_line_decode");
    for (name, len) in [("100B", 100usize), ("64KiB", 64 * 1024)] {
        let mut line = vec![b'x'; len];
        line.push(b'\n');
        let input: BytesMut = line.iter().copied().cycle().take((8 << 20) / line.len() * line.len()).collect();
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || input.clone(),
                |mut buf| {
                    let mut codec = RawCodec::new();
                    let mut n = 0usize;
                    while let Some(frame) = codec.decode_frame(&mut buf).unwrap() {
                        n += black_box(frame).len();
                    }
                    n
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, package, raw);
criterion_main!(benches);
