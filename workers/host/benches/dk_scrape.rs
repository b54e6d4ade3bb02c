//! The `dk` input's per-scrape cost past the HTTP exchange: parsing the agent's `/metrics`
//! page (captured from a running agent: supervisor plus the host worker) and turning it into
//! `dk` points, with the sample's `metric_name_filter` and with every metric.
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_host::inputs::dk::{Selection, to_points};
use dk_proto::promtext;

const PAGE: &str = include_str!("../testdata/agent_metrics");

fn sample_filter() -> Selection {
    let sample = include_str!("../../../conf.d/host/dk.conf");
    let Ok(dk_input_host::config::InputConfig::Dk(c)) = dk_input_host::config::decode("dk", sample)
    else {
        panic!("the dk sample decodes")
    };
    Selection {
        names: c.metric_name_filter,
        types: c.metric_types,
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dk_scrape");
    g.throughput(Throughput::Bytes(PAGE.len() as u64));
    let sample = sample_filter();
    let all = Selection::default();
    g.bench_function("parse_and_convert_sample_filter", |b| {
        b.iter(|| {
            let f = promtext::parse(black_box(PAGE)).unwrap_or_default();
            to_points(&f, &sample, &[], 1).len()
        })
    });
    g.bench_function("parse_and_convert_all_metrics", |b| {
        b.iter(|| {
            let f = promtext::parse(black_box(PAGE)).unwrap_or_default();
            to_points(&f, &all, &[], 1).len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
