//! Throughput of the pure socket-log path: the line splitter alone, the multi-line joiner
//! alone, and the whole TCP assembler (split, trim, join) on realistic log text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_logging::multiline::{
    AUTO_PATTERNS, DEFAULT_MAX_BYTES, DEFAULT_MAX_LINES, Joined, Joiner, StartPatterns,
};
use dk_input_logging::record::{Shaping, StreamAssembler};
use dk_input_logging::split::{DEFAULT_MAX_LINE, LineSplitter};

/// About 1 MiB of application log: single lines plus a stack trace every 20 lines.
fn corpus() -> Vec<u8> {
    let mut text = String::new();
    let mut i = 0u64;
    while text.len() < 1 << 20 {
        i += 1;
        text.push_str(&format!(
            "2024-05-01T12:00:{:02}.{:06}Z INFO  [worker-{}] request id={} path=/api/v1/items/{} took {}ms\n",
            i % 60,
            i % 1_000_000,
            i % 8,
            i,
            i * 7,
            i % 250
        ));
        if i.is_multiple_of(20) {
            text.push_str("java.lang.IllegalStateException: boom\n");
            for f in 0..8 {
                text.push_str(&format!(
                    "\tat com.example.Service.call{f}(Service.java:{})\n",
                    100 + f
                ));
            }
        }
    }
    text.into_bytes()
}

fn bench(c: &mut Criterion) {
    let data = corpus();
    let lines: Vec<&str> = std::str::from_utf8(&data).unwrap().lines().collect();
    let mut g = c.benchmark_group("socket_log");
    g.throughput(Throughput::Bytes(data.len() as u64));

    g.bench_function("split_64k_reads", |b| {
        b.iter(|| {
            let mut s = LineSplitter::new(DEFAULT_MAX_LINE);
            let mut n = 0usize;
            for chunk in data.chunks(64 * 1024) {
                s.push(black_box(chunk), |l, _| n += l.len());
            }
            s.finish(|l, _| n += l.len());
            n
        })
    });

    g.bench_function("split_1400b_segments", |b| {
        b.iter(|| {
            let mut s = LineSplitter::new(DEFAULT_MAX_LINE);
            let mut n = 0usize;
            for chunk in data.chunks(1400) {
                s.push(black_box(chunk), |l, _| n += l.len());
            }
            n
        })
    });

    for (name, patterns) in [
        ("join_no_pattern", Vec::new()),
        (
            "join_multiline_match",
            vec![r"^\d{4}-\d{2}-\d{2}".to_string()],
        ),
        (
            "join_auto_detection",
            AUTO_PATTERNS.iter().map(|s| s.to_string()).collect(),
        ),
    ] {
        let compiled = StartPatterns::new(&patterns).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut j = Joiner::new(compiled.clone(), DEFAULT_MAX_BYTES, DEFAULT_MAX_LINES);
                let mut records = 0usize;
                for l in &lines {
                    match j.push(black_box(l)) {
                        Joined::Nothing => {}
                        Joined::Line(_) | Joined::Record { .. } => records += 1,
                    }
                }
                records + usize::from(j.flush().is_some())
            })
        });
    }

    g.bench_function("assemble_tcp_stream", |b| {
        let shaping = Shaping::default();
        let mut out = Vec::with_capacity(16 * 1024);
        b.iter(|| {
            let mut a = StreamAssembler::new(&shaping);
            out.clear();
            for chunk in data.chunks(64 * 1024) {
                a.push(black_box(chunk), &mut out);
            }
            a.finish(&mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
