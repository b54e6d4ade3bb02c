//! Parser and aggregator throughput on realistic StatsD/DogStatsD datagrams.
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_statsd::aggregate::{Aggregator, AggregatorConfig};
use dk_input_statsd::parser::{Item, ParseOptions, parse_datagram};

/// About 1400 bytes of mixed lines, as a DogStatsD client packs a UDP datagram.
fn datagram() -> Vec<u8> {
    let mut body = String::new();
    let mut i = 0;
    while body.len() < 1400 {
        let line = match i % 6 {
            0 => format!(
                "app.requests.count:{}|c|@0.5|#env:prod,service:web,route:/api/v{i}\n",
                i % 7
            ),
            1 => format!(
                "app.memory.heap_used:{}|g|#env:prod,service:web\n",
                1000 + i
            ),
            2 => format!(
                "app.request.latency:{}.{}|ms|#env:prod,service:web,status:200\n",
                i % 300,
                i % 10
            ),
            3 => format!("app.users.unique:user{}|s|#env:prod\n", i % 50),
            4 => format!("jvm.gc.pause:{}|h|#env:prod,gc:g1\n", i % 40),
            _ => format!("plain.counter.{}:1|c\n", i % 3),
        };
        body.push_str(&line);
        i += 1;
    }
    body.into_bytes()
}

fn benches(c: &mut Criterion) {
    let data = datagram();
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    let opts = ParseOptions::default();

    let mut g = c.benchmark_group("statsd");
    g.throughput(Throughput::Elements(lines));
    g.bench_function("parse_datagram", |b| {
        b.iter(|| {
            let mut n = 0usize;
            parse_datagram(black_box(&data), opts, &mut |item| {
                if matches!(item, Item::Sample(_)) {
                    n += 1;
                }
            });
            black_box(n)
        })
    });
    g.bench_function("parse_and_aggregate", |b| {
        let mut agg = Aggregator::new(AggregatorConfig {
            percentiles: vec![50.0, 90.0, 99.0],
            delete_counters: false,
            delete_gauges: false,
            delete_sets: false,
            delete_timings: false,
            ..AggregatorConfig::default()
        });
        b.iter(|| {
            parse_datagram(black_box(&data), opts, &mut |item| {
                agg.ingest(&item, 1_700_000_000_000_000_000);
            });
        })
    });
    g.finish();

    let mut g = c.benchmark_group("statsd_flush");
    g.bench_function("flush_1000_series", |b| {
        let mut body = String::new();
        for s in 0..1000 {
            body.push_str(&format!("svc.metric_{s}:1|c|#env:prod\n"));
        }
        b.iter(|| {
            let mut agg = Aggregator::new(AggregatorConfig::default());
            parse_datagram(body.as_bytes(), opts, &mut |item| {
                agg.ingest(&item, 1_700_000_000_000_000_000);
            });
            black_box(agg.flush(1_700_000_010_000_000_000).metrics.len())
        })
    });
    g.finish();
}

criterion_group!(statsd, benches);
criterion_main!(statsd);
