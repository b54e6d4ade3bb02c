//! OTLP decoding and mapping: a protobuf trace request of 512 spans (Python SDK batch size)
//! with HTTP/db attributes, decoded and mapped to points; and the same as OTLP/JSON.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_otel::body::{self, Encoding};
use dk_input_otel::options::{Options, Origin};
use dk_input_otel::trace;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as Any};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

/// The allocator of the `datakit` binary (workers included).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn kv(k: &str, v: Any) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..KeyValue::default()
    }
}

/// A request of `n` spans: a server root and `n - 1` children, half of them db spans.
pub fn request(n: usize) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| {
            let mut attributes = vec![
                kv("http.request.method", Any::StringValue("GET".into())),
                kv("http.route", Any::StringValue("/api/items/{id}".into())),
                kv("http.response.status_code", Any::IntValue(200)),
                kv("thread.id", Any::IntValue(i as i64)),
            ];
            if i % 2 == 1 {
                attributes.push(kv("db.system", Any::StringValue("postgresql".into())));
                attributes.push(kv(
                    "db.statement",
                    Any::StringValue("SELECT * FROM items WHERE id = $1".into()),
                ));
            }
            Span {
                trace_id: vec![7; 16],
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                parent_span_id: if i == 0 {
                    vec![]
                } else {
                    1u64.to_be_bytes().to_vec()
                },
                name: format!("span-{}", i % 16),
                kind: if i == 0 { 2 } else { 3 },
                start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64 * 1000,
                end_time_unix_nano: 1_700_000_000_000_500_000 + i as u64 * 1000,
                attributes,
                status: Some(Status::default()),
                ..Span::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Any::StringValue("bench".into())),
                    kv("host.name", Any::StringValue("bench-host".into())),
                    kv("telemetry.sdk.language", Any::StringValue("python".into())),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn bench(c: &mut Criterion) {
    let req = request(512);
    let pb = req.encode_to_vec();
    let json = serde_json::to_vec(&req).unwrap_or_default();
    let opts = Options {
        fingerprint: "bench_1.84.1".into(),
        ..Options::default()
    };
    let origin = Origin {
        remote_ip: "127.0.0.1".into(),
    };
    let mut g = c.benchmark_group("otel");
    g.throughput(Throughput::Elements(512));
    g.bench_function("decode_protobuf_512_spans", |b| {
        b.iter(|| body::decode::<ExportTraceServiceRequest>(&pb, Encoding::Protobuf))
    });
    g.bench_function("decode_and_map_protobuf_512_spans", |b| {
        b.iter(|| {
            let r: ExportTraceServiceRequest =
                body::decode(&pb, Encoding::Protobuf).unwrap_or_default();
            trace::points(&r, &opts, &origin)
        })
    });
    g.bench_function("decode_and_map_json_512_spans", |b| {
        b.iter(|| {
            let r: ExportTraceServiceRequest =
                body::decode(&json, Encoding::Json).unwrap_or_default();
            trace::points(&r, &opts, &origin)
        })
    });
    let no_message = Options {
        del_message: true,
        ..opts.clone()
    };
    g.bench_function("map_512_spans_without_message", |b| {
        b.iter(|| trace::points(&req, &no_message, &origin))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
