//! NT1 decoding and mapping: a stream of 1,000 transaction trees and one heartbeat, fed in
//! 64 KiB reads as the TCP serving hands them over.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_cat::mapping::{self, Output};
use dk_input_cat::nt1::{self, Framer, encode};
use dk_input_cat::status;

fn bench(c: &mut Criterion) {
    let mut wire = Vec::new();
    for i in 0..1000 {
        wire.extend(encode::transaction_tree(
            &format!("shop-0a000007-{i}"),
            "",
            "",
        ));
    }
    let mut g = c.benchmark_group("cat");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("decode_and_map_1000_trees", |b| {
        b.iter(|| {
            let mut f = Framer::new();
            let mut spans = 0;
            for chunk in wire.chunks(64 * 1024) {
                f.push(chunk);
                while let Ok(Some(body)) = f.next_body() {
                    if let Ok(m) = nt1::decode(body)
                        && let Output::Span(_) = mapping::output(&m, &[], 0, |_| 0)
                    {
                        spans += 1;
                    }
                }
            }
            spans
        });
    });
    g.finish();
    let hb = encode::heartbeat(status::SAMPLE.as_bytes());
    let mut g = c.benchmark_group("cat_heartbeat");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_and_map_one_heartbeat", |b| {
        b.iter(
            || match nt1::decode(&hb[4..]).map(|m| mapping::output(&m, &[], 0, |_| 0)) {
                Ok(Output::Metrics(p, _)) => p.len(),
                _ => 0,
            },
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
