//! Codec and normalisation throughput on 1000-point bodies of realistic host metrics.
use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dk_proto::lineproto::{self, DecodeOptions, Precision};
use dk_proto::normalize::{self, Limits};
use dk_proto::{Category, json, pb};

const POINTS: usize = 1000;

/// A line-protocol body shaped like the host inputs' output: a few tags, several numeric
/// fields, nanosecond timestamps.
fn metric_body() -> Vec<u8> {
    let mut body = String::new();
    for i in 0..POINTS {
        let ts = 1_700_000_000_000_000_000_i64 + i as i64 * 10_000_000_000;
        let line = match i % 5 {
            0 => format!(
                "cpu,host=web-{:02},cpu=cpu{},region=eu-west-1 usage_user={}.{},usage_system=3.25,usage_idle=84.125,usage_iowait=0.1,usage_total=15.875 {ts}",
                i % 7,
                i % 16,
                i % 100,
                i % 10
            ),
            1 => format!(
                "mem,host=web-{:02},region=eu-west-1 total=16777216000i,available={}i,used_percent=41.{},cached=1073741824i,buffered=268435456i {ts}",
                i % 7,
                9_663_676_416_i64 + i as i64,
                i % 1000
            ),
            2 => format!(
                "disk,host=web-{:02},device=/dev/sda{},fstype=ext4,mode=rw,path=/data{} total=512110190592i,free={}i,used_percent=63.5,inodes_used=123456i {ts}",
                i % 7,
                i % 4,
                i % 4,
                187_000_000_000_i64 + i as i64
            ),
            3 => format!(
                "net,host=web-{:02},interface=eth{} bytes_recv={}i,bytes_sent=9876543210i,packets_recv=1234567i,packets_sent=7654321i,err_in=0i,err_out=0i {ts}",
                i % 7,
                i % 2,
                12_345_678_901_i64 + i as i64
            ),
            _ => format!(
                "system,host=web-{:02} load1=0.{},load5=1.23,load15=0.98,n_cpus=16i,n_users=3i,uptime={}i {ts}",
                i % 7,
                i % 100,
                864_000 + i
            ),
        };
        body.push_str(&line);
        body.push('\n');
    }
    body.into_bytes()
}

fn benches(c: &mut Criterion) {
    let body = metric_body();
    let opts = DecodeOptions::new(Precision::Auto, 1_700_000_000_000_000_000);
    let points = lineproto::decode(&body, &opts).expect("bench body decodes");
    assert_eq!(points.len(), POINTS);
    let pb_body = pb::encode(&points);
    let json_body = json::encode_pbjson(&points, &[]);
    let limits = Limits::default();

    let mut g = c.benchmark_group("lineproto/decode");
    g.throughput(Throughput::Elements(POINTS as u64));
    g.bench_function("metric_1000", |b| {
        b.iter(|| lineproto::decode(black_box(&body), &opts))
    });
    g.finish();

    let mut g = c.benchmark_group("lineproto/encode");
    g.throughput(Throughput::Elements(POINTS as u64));
    g.bench_function("metric_1000", |b| {
        b.iter(|| lineproto::encode(black_box(&points)))
    });
    // Lines straight from a protobuf record (what the local-files sink writes).
    g.bench_function("metric_1000_from_pb", |b| {
        let mut out = Vec::with_capacity(256 << 10);
        b.iter(|| {
            out.clear();
            pb::decode_each(black_box(&pb_body), |p| {
                lineproto::encode_point_ref(p, &mut out);
                out.push(b'\n');
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("pb/encode");
    g.throughput(Throughput::Elements(POINTS as u64));
    g.bench_function("metric_1000", |b| b.iter(|| pb::encode(black_box(&points))));
    g.finish();

    let mut g = c.benchmark_group("pb/decode");
    g.throughput(Throughput::Elements(POINTS as u64));
    g.bench_function("metric_1000", |b| {
        b.iter(|| pb::decode(black_box(&pb_body)))
    });
    g.finish();

    let mut g = c.benchmark_group("json/decode_pbjson");
    g.throughput(Throughput::Elements(POINTS as u64));
    g.bench_function("metric_1000", |b| {
        b.iter(|| json::decode_pbjson(black_box(&json_body)))
    });
    g.finish();

    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Elements(POINTS as u64));
    g.bench_function("metric_1000", |b| {
        b.iter_batched(
            || points.clone(),
            |mut pts| {
                for p in &mut pts {
                    let _ = black_box(normalize::normalize(p, Category::Metric, &limits));
                }
                pts
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(codecs, benches);
criterion_main!(codecs);
