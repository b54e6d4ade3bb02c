//! Accepting one upload: query, multipart parsing, event.json and the point, for a 100 KiB
//! pprof sent as octet-stream and as Go's multipart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_pyroscope::ingest::{MAX_BODY_BYTES, Upload, accept};
use dk_proto::profile::{FilePart, boundary_for, write};

const QUERY: &str = "name=bench-app%7Benv%3Dprod,version%3D1.2%7D&from=1700000000&until=1700000010&spyName=gospy&sampleRate=100&format=pprof";

fn bench(c: &mut Criterion) {
    let profile: Vec<u8> = (0..100 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    let parts = [
        FilePart {
            name: "profile",
            filename: "profile.pprof",
            data: &profile,
        },
        FilePart {
            name: "sample_type_config",
            filename: "sample_type_config.json",
            data: b"{\"samples\":{\"units\":\"samples\"},\"cpu\":{\"units\":\"nanoseconds\"}}",
        },
    ];
    let boundary = boundary_for(&parts, 1);
    let mut body = Vec::new();
    write(&boundary, &parts, &mut body);
    let ct = format!("multipart/form-data; boundary={boundary}");
    let tags = BTreeMap::new();

    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(profile.len() as u64));
    g.bench_function("octet_stream_100k", |b| {
        b.iter(|| {
            let up = Upload {
                query: QUERY,
                content_type: "binary/octet-stream",
                body: &profile,
            };
            black_box(accept(up, &tags, MAX_BODY_BYTES).unwrap().into_point())
        })
    });
    g.bench_function("go_multipart_100k", |b| {
        b.iter(|| {
            let up = Upload {
                query: QUERY,
                content_type: &ct,
                body: &body,
            };
            black_box(accept(up, &tags, MAX_BODY_BYTES).unwrap().into_point())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
