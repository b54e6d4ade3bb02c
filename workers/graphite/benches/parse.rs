//! Graphite line throughput: parsing alone, and stream framing plus parsing, on 1000-line
//! bodies shaped like collectd's and statsd-style Graphite output.
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_graphite::line::{LineFramer, parse_line, split_lines};
use dk_input_graphite::mapper::{Mapper, RuleConfig};
use dk_input_graphite::process::{Counts, Processor};

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
    let unmapped = Processor::new(Mapper::default(), false, vec![("dc".into(), "eu".into())]);
    g.bench_function("process_1000_unmapped", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(LINES);
            let mut counts = Counts::default();
            unmapped.datagram(black_box(&body), 0, &mut out, &mut counts);
            out
        })
    });
    let mapped = Processor::new(mapper(), false, vec![("dc".into(), "eu".into())]);
    g.bench_function("process_1000_with_12_rules", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(LINES);
            let mut counts = Counts::default();
            mapped.datagram(black_box(&body), 0, &mut out, &mut counts);
            out
        })
    });
    g.finish();
}

/// Ten glob rules (a few matching the body) and two regex rules tried after them.
fn mapper() -> Mapper {
    let rule = |m: &str, regex: bool, name: &str, labels: &[(&str, &str)]| RuleConfig {
        match_text: m.to_string(),
        match_type: regex.then(|| "regex".to_string()),
        name: name.to_string(),
        measurement_name: Some("mapped".to_string()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..RuleConfig::default()
    };
    let mut rules = Vec::new();
    for i in 0..8 {
        rules.push(rule(
            &format!("app{i}.*.*.*"),
            false,
            "n_$1",
            &[("job", "$2")],
        ));
    }
    rules.push(rule(
        "collectd.*.*.*",
        false,
        "${3}",
        &[("host", "$1"), ("plugin", "$2")],
    ));
    rules.push(rule("app.requests.*", false, "req_$1", &[]));
    rules.push(rule(
        r"^servers\.(rack-\d+)\.networking\.(\w+)\.(.*)$",
        true,
        "net_${3}",
        &[("rack", "$1"), ("iface", "$2")],
    ));
    rules.push(rule(r"^nomatch\.(.*)$", true, "x_$1", &[]));
    Mapper::new(&rules).unwrap_or_else(|p| panic!("{p:?}"))
}

criterion_group!(benches, bench);
criterion_main!(benches);
