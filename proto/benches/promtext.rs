//! Parsing throughput of a `/metrics` page the size of the agent's own (supervisor plus a
//! dozen workers: counters, gauges, histograms).
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_proto::promtext;

fn page() -> String {
    let mut s = String::new();
    for f in 0..12 {
        s.push_str(&format!(
            "# HELP datakit_family_{f}_points Points.\n# TYPE datakit_family_{f}_points counter\n"
        ));
        for i in 0..20 {
            s.push_str(&format!(
                "datakit_family_{f}_points_total{{family=\"fam{f}\",input=\"in{i}\",category=\"metric\"}} {}\n",
                i * 1000 + f
            ));
        }
        s.push_str(&format!("# TYPE datakit_family_{f}_rss gauge\ndatakit_family_{f}_rss{{family=\"fam{f}\"}} 1.2345e7\n"));
        s.push_str(&format!("# TYPE datakit_family_{f}_seconds histogram\n"));
        for le in ["0.001", "0.01", "0.1", "1.0", "+Inf"] {
            s.push_str(&format!(
                "datakit_family_{f}_seconds_bucket{{family=\"fam{f}\",le=\"{le}\"}} 7\n"
            ));
        }
        s.push_str(&format!("datakit_family_{f}_seconds_sum{{family=\"fam{f}\"}} 0.25\ndatakit_family_{f}_seconds_count{{family=\"fam{f}\"}} 7\n"));
    }
    s.push_str("# EOF\n");
    s
}

fn bench(c: &mut Criterion) {
    let text = page();
    let mut g = c.benchmark_group("promtext");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("parse_metrics_page", |b| {
        b.iter(|| promtext::parse(black_box(&text)).map(|f| f.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
