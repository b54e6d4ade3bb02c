//! Graphite line throughput: parsing alone, and stream framing plus parsing, on 1000-line
//! bodies shaped like collectd's and statsd-style Graphite output.
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_graphite::line::{LineFramer, parse_line, split_lines};

const LINES: usize = 1000;

/// A body of realistic lines: dotted paths of 4-6 components, some with tags.
fn body() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..LINES {
        let ts = 1_700_000_000 + i / 10;
        match i % 4 {
            0 => s.push_str(&format!(
                "collectd.web-{:02}_example_com.cpu-{}.cpu-idle {} {ts}\n",
                i % 7,
                i % 16,
                123_456 + i
            )),
            1 => s.push_str(&format!(
                "collectd.web-{:02}_example_com.memory.memory-used {}.5 {ts}\n",
                i % 7,
                1_234_567_890 + i
            )),
            2 => s.push_str(&format!(
                "app.requests.latency;env=prod;host=web-{:02};route=/api/v{} 0.{} {ts}\n",
                i % 7,
                i % 3,
                i % 1000
            )),
            _ => s.push_str(&format!(
                "servers.rack-{:03}.networking.eth{}.rx_bytes {} {ts}.25\n",
                i % 40,
                i % 2,
                i * 1000
            )),
        }
    }
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let body = body();
    let mut g = c.benchmark_group("graphite_lines");
    g.throughput(Throughput::Elements(LINES as u64));
    g.bench_function("parse_1000", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for line in split_lines(black_box(&body)) {
                if let Ok(Some(s)) = parse_line(line) {
                    sum += s.value;
                }
            }
            sum
        })
    });
    g.bench_function("frame_4k_reads_and_parse_1000", |b| {
        b.iter(|| {
            let mut framer = LineFramer::default();
            let mut n = 0usize;
            for chunk in black_box(&body).chunks(4096) {
                framer.feed(chunk, |line| {
                    if let Ok(Some(_)) = parse_line(line) {
                        n += 1;
                    }
                });
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
