//! Lumberjack v2 decoding and mapping: a compressed window of 2,048 Filebeat-like events
//! (Beats' default bulk_max_size), fed in 64 KiB reads.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_beats::frame::{Decoder, Limits, encode};
use dk_input_beats::mapping::Mapping;

fn events(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(r#"{{"@timestamp":"2026-01-01T00:00:00.000Z","message":"127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \"GET /api/v1/items/{i} HTTP/1.1\" 200 512","host":{{"name":"web-1"}},"log":{{"file":{{"path":"/var/log/nginx/access.log"}},"offset":{i}}},"fields":{{"team":"ops","shard":{i}}}}}"#)
                .into_bytes()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let evs = events(2048);
    let refs: Vec<&[u8]> = evs.iter().map(Vec::as_slice).collect();
    let wire = encode::batch(1, &refs);
    let mut g = c.benchmark_group("beats");
    g.throughput(Throughput::Elements(2048));
    g.bench_function("decode_compressed_window_2048", |b| {
        b.iter(|| {
            let mut d = Decoder::new(Limits::default());
            for chunk in wire.chunks(64 * 1024) {
                d.feed(chunk).ok();
            }
            d.take()
        });
    });
    let mapping = Mapping {
        source: "nginx".into(),
        service: "nginx".into(),
        tags: Vec::new(),
    };
    g.bench_function("decode_and_map_window_2048", |b| {
        b.iter(|| {
            let mut d = Decoder::new(Limits::default());
            for chunk in wire.chunks(64 * 1024) {
                d.feed(chunk).ok();
            }
            let mut n = 0;
            for w in d.take() {
                for e in &w.events {
                    n += usize::from(mapping.point(&e.json, 0).is_ok());
                }
            }
            n
        });
    });
    // The former mapping (a whole serde_json::Value tree per event), beside the current one.
    g.bench_function("decode_and_map_via_value_window_2048", |b| {
        b.iter(|| {
            let mut d = Decoder::new(Limits::default());
            for chunk in wire.chunks(64 * 1024) {
                d.feed(chunk).ok();
            }
            let mut n = 0;
            for w in d.take() {
                for e in &w.events {
                    n += usize::from(mapping.point_via_value(&e.json, 0).is_ok());
                }
            }
            n
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
