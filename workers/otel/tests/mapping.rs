//! The mappings on real bytes: bodies captured from the OpenTelemetry Python SDK's OTLP/HTTP
//! exporters (`fixtures/python-sdk-*.pb`, made by `tests/e2e/otel_emit.py`) and requests built
//! with the generated types.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dk_input_otel::body::{self, BodyError, Encoding};
use dk_input_otel::options::{Options, Origin};
use dk_input_otel::{logs, metric, trace};
use dk_proto::{Point, Value};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use prost::Message;

const TRACES: &[u8] = include_bytes!("../fixtures/python-sdk-traces.pb");
const METRICS: &[u8] = include_bytes!("../fixtures/python-sdk-metrics.pb");
const LOGS: &[u8] = include_bytes!("../fixtures/python-sdk-logs.pb");

fn origin() -> Origin {
    Origin {
        remote_ip: "127.0.0.1".into(),
    }
}

fn opts() -> Options {
    Options {
        fingerprint: "host_1.84.1".into(),
        ..Options::default()
    }
}

fn s(p: &Point, k: &str) -> String {
    match p.get_field(k) {
        Some(Value::S(s)) => s.clone(),
        other => panic!("field {k} of {} is {other:?}", p.name),
    }
}

fn i(p: &Point, k: &str) -> i64 {
    match p.get_field(k) {
        Some(Value::I(i)) => *i,
        other => panic!("field {k} is {other:?}"),
    }
}

fn by_resource<'a>(points: &'a [Point], name: &str) -> &'a Point {
    points
        .iter()
        .find(|p| p.get_field("resource") == Some(&Value::S(name.into())))
        .unwrap_or_else(|| panic!("no span {name}"))
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..KeyValue::default()
    }
}

#[test]
fn python_sdk_spans_map_to_opentelemetry_tracing_points() {
    let req = ExportTraceServiceRequest::decode(TRACES).unwrap();
    let points = trace::points(&req, &opts(), &origin());
    assert_eq!(points.len(), 3);
    let parent = by_resource(&points, "GET /checkout");
    let child = by_resource(&points, "charge");
    let db = by_resource(&points, "SELECT orders");
    for p in &points {
        assert_eq!(p.name, "opentelemetry");
        assert_eq!(p.get_tag("source"), Some("opentelemetry"));
        assert_eq!(p.get_tag("remote_ip"), Some("127.0.0.1"));
        assert_eq!(p.get_tag("dk_fingerprint"), Some("host_1.84.1"));
        assert_eq!(s(p, "trace_id").len(), 32);
        assert_eq!(s(p, "trace_id"), s(parent, "trace_id"));
        assert_eq!(s(p, "span_id").len(), 16);
        assert_eq!(p.time / 1_000, i(p, "start"));
        assert!(i(p, "duration") >= 0);
        assert!(s(p, "message").starts_with('{'));
    }
    assert_eq!(s(parent, "parent_id"), "0");
    assert_eq!(parent.get_tag("span_type"), Some("entry"));
    assert_eq!(parent.get_tag("span_kind"), Some("server"));
    assert_eq!(parent.get_tag("service"), Some("shop"));
    assert_eq!(parent.get_tag("status"), Some("ok"), "UNSET is ok");
    assert_eq!(parent.get_tag("http_status_code"), Some("200"));
    assert_eq!(
        parent.get_field("http_method"),
        Some(&Value::S("GET".into()))
    );
    assert_eq!(parent.get_tag("source_type"), Some("web"));
    assert!(i(parent, "duration") >= i(child, "duration"));

    assert_eq!(s(child, "parent_id"), s(parent, "span_id"));
    assert_eq!(child.get_tag("span_type"), Some("exit"));
    assert_eq!(child.get_tag("status"), Some("error"));
    assert_eq!(s(child, "error_type"), "ValueError");
    assert_eq!(s(child, "error_message"), "card declined");
    assert!(s(child, "error_stack").contains("Traceback"));

    assert_eq!(
        db.get_tag("service"),
        Some("postgresql"),
        "split by db.system"
    );
    assert_eq!(db.get_tag("base_service"), Some("shop"));
    assert_eq!(db.get_tag("db_host"), Some("db.local"));
    assert_eq!(db.get_tag("source_type"), Some("db"));
    assert_eq!(db.get_tag("span_kind"), Some("client"));
    assert_eq!(s(db, "db_statement"), "SELECT * FROM orders");
    // The cleaned message keeps what was not extracted and drops what was.
    let msg: serde_json::Value = serde_json::from_str(&s(db, "message")).unwrap();
    let keys: Vec<&str> = msg["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"deployment.environment"), "{keys:?}");
    assert!(!keys.contains(&"db.statement"), "{keys:?}");
    assert!(msg.get("traceId").is_none());
}

#[test]
fn an_unsplit_service_ddtrace_ids_tags_and_no_message_follow_the_options() {
    let req = ExportTraceServiceRequest::decode(TRACES).unwrap();
    let o = Options {
        split_service_name: false,
        compatible_ddtrace: true,
        del_message: true,
        tags: vec![
            ("service".into(), "forced".into()),
            ("team".into(), "a".into()),
        ],
        ..opts()
    };
    let points = trace::points(&req, &o, &origin());
    let db = by_resource(&points, "SELECT orders");
    assert_eq!(db.get_tag("base_service"), None);
    assert_eq!(db.get_tag("service"), Some("forced"), "input tags override");
    assert_eq!(db.get_tag("team"), Some("a"));
    assert!(
        s(db, "trace_id").parse::<u64>().is_ok(),
        "{}",
        s(db, "trace_id")
    );
    assert!(db.get_field("message").is_none());
}

#[test]
fn span_types_statuses_sampling_and_closed_resources() {
    let span = |id: u8, parent: u8, name: &str, code: Option<status::StatusCode>| Span {
        trace_id: vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, id],
        span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: if parent == 0 {
            vec![]
        } else {
            vec![0, 0, 0, 0, 0, 0, 0, parent]
        },
        name: name.into(),
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: 1_002_500_000,
        status: code.map(|c| Status {
            code: c as i32,
            message: String::new(),
        }),
        ..Span::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span(1, 0, "root", None),
                    span(2, 1, "mid", Some(status::StatusCode::Ok)),
                    span(3, 2, "leaf", Some(status::StatusCode::Error)),
                    span(4, 9, "orphan", Some(status::StatusCode::Unset)),
                ],
                ..ScopeSpans::default()
            }],
            schema_url: String::new(),
        }],
    };
    let points = trace::points(&req, &opts(), &Origin::default());
    let tag = |n: &str, t: &str| by_resource(&points, n).get_tag(t).map(str::to_string);
    assert_eq!(tag("root", "span_type").as_deref(), Some("entry"));
    assert_eq!(tag("mid", "span_type").as_deref(), Some("local"));
    assert_eq!(tag("leaf", "span_type").as_deref(), Some("exit"));
    assert_eq!(tag("orphan", "span_type").as_deref(), Some("entry"));
    assert_eq!(tag("root", "status").as_deref(), Some("info"));
    assert_eq!(tag("mid", "status").as_deref(), Some("ok"));
    assert_eq!(tag("leaf", "status").as_deref(), Some("error"));
    assert_eq!(tag("root", "service").as_deref(), Some("unknown_service"));
    assert_eq!(i(by_resource(&points, "root"), "duration"), 2_500);
    assert_eq!(i(by_resource(&points, "root"), "start"), 1_000_000);
    assert_eq!(by_resource(&points, "root").get_tag("remote_ip"), None);

    let closed = Options {
        close_resource: vec![("*".into(), regex::Regex::new("^le").unwrap())],
        sampling_rate: 0.0002, // keeps low ids 0 and 1 of 10,000
        ..opts()
    };
    let kept: Vec<String> = trace::points(&req, &closed, &Origin::default())
        .iter()
        .map(|p| s(p, "resource"))
        .collect();
    assert_eq!(kept, vec!["root"]);
    assert_eq!(trace::span_count(&req), 4);
}

#[test]
fn python_sdk_metrics_map_to_otel_service_points() {
    let req = ExportMetricsServiceRequest::decode(METRICS).unwrap();
    let points = metric::points(&req, &opts(), &origin());
    assert!(points.iter().all(|p| p.name == "otel_service"));
    let counter = points
        .iter()
        .find(|p| p.get_field("orders.placed").is_some())
        .unwrap();
    assert_eq!(counter.get_field("orders.placed"), Some(&Value::I(3)));
    assert_eq!(counter.get_tag("service_name"), Some("shop"));
    assert_eq!(counter.get_tag("region"), Some("eu"));
    assert_eq!(counter.get_tag("scope_name"), Some("shop.meter"));
    assert_eq!(counter.get_tag("unit"), Some("1"));
    assert_eq!(counter.get_tag("remote_ip"), Some("127.0.0.1"));
    assert_eq!(counter.get_tag("telemetry_sdk_name"), None, "dropped key");
    assert!(counter.time > 1_600_000_000_000_000_000);
    let hist = points
        .iter()
        .find(|p| p.get_field("checkout.duration_count").is_some())
        .unwrap();
    assert_eq!(
        hist.get_field("checkout.duration_count"),
        Some(&Value::I(2))
    );
    assert_eq!(
        hist.get_field("checkout.duration_sum"),
        Some(&Value::F(262.5))
    );
    assert_eq!(
        hist.get_field("checkout.duration_min"),
        Some(&Value::F(12.5))
    );
    assert_eq!(
        hist.get_field("checkout.duration_max"),
        Some(&Value::F(250.0))
    );
    assert_eq!(hist.get_tag("unit"), Some("ms"));
    let buckets: Vec<(&str, &Value)> = points
        .iter()
        .filter_map(|p| Some((p.get_tag("le")?, p.get_field("checkout.duration_bucket")?)))
        .collect();
    // The SDK's default bounds: 0, 5, 10, 25, 50, 75, 100, 250, 500, ... 10000, then +Inf.
    assert_eq!(buckets.first(), Some(&("0", &Value::I(0))));
    assert!(buckets.contains(&("25", &Value::I(1))), "{buckets:?}");
    assert!(buckets.contains(&("100", &Value::I(1))), "{buckets:?}");
    assert!(buckets.contains(&("250", &Value::I(2))), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&("+Inf", &Value::I(2))));
    assert_eq!(metric::data_point_count(&req), 2);
}

#[test]
fn a_resource_metrics_without_resource_still_maps_the_others() {
    let gauge = |name: &str, v: f64| Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: 5,
                value: Some(number_data_point::Value::AsDouble(v)),
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("pt".into()),
                )],
                ..NumberDataPoint::default()
            }],
        })),
        ..Metric::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![
            ResourceMetrics {
                resource: None,
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![gauge("a", 1.5)],
                    ..ScopeMetrics::default()
                }],
                schema_url: String::new(),
            },
            ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("res".into()),
                    )],
                    ..Resource::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![gauge("b", 2.0)],
                    ..ScopeMetrics::default()
                }],
                schema_url: String::new(),
            },
        ],
    };
    let points = metric::points(&req, &opts(), &Origin::default());
    assert_eq!(points.len(), 2);
    assert_eq!(points[0].get_field("a"), Some(&Value::F(1.5)));
    assert_eq!(points[0].get_tag("service_name"), Some("pt"));
    assert_eq!(
        points[1].get_tag("service_name"),
        Some("res"),
        "the resource wins"
    );
    assert_eq!(points[1].time, 5);
}

#[test]
fn python_sdk_logs_map_to_logging_points_by_service() {
    let req = ExportLogsServiceRequest::decode(LOGS).unwrap();
    let points = logs::points(&req, &opts(), &origin(), 7);
    assert_eq!(points.len(), 1);
    let p = &points[0];
    assert_eq!(p.name, "shop");
    assert_eq!(p.get_tag("source"), Some("shop"));
    assert_eq!(p.get_tag("service"), Some("shop"));
    assert_eq!(p.get_tag("status"), Some("warn"));
    assert_eq!(p.get_tag("host"), Some("shop-host"));
    assert_eq!(s(p, "message"), "payment slow for order 42");
    assert_eq!(s(p, "trace_id").len(), 32);
    assert_eq!(s(p, "span_id").len(), 16);
    assert_eq!(s(p, "deployment_environment"), "test");
    assert_eq!(s(p, "scope_name"), "shop");
    assert!(p.time > 1_600_000_000_000_000_000);
}

#[test]
fn long_log_bodies_are_split_into_points_one_millisecond_apart() {
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        observed_time_unix_nano: 10,
                        severity_number: 30,
                        severity_text: "NOTICE".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("é".repeat(2500))),
                        }),
                        ..LogRecord::default()
                    },
                    LogRecord::default(),
                ],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    let o = Options {
        log_max_runes: 1024,
        tags: vec![("team".into(), "a".into())],
        ..opts()
    };
    let points = logs::points(&req, &o, &Origin::default(), 99);
    assert_eq!(points.len(), 4);
    assert_eq!(points[0].name, "otel_logs");
    assert_eq!(points[0].get_tag("service"), Some("unSetServiceName"));
    assert_eq!(points[0].get_tag("status"), Some("notice"));
    assert_eq!(s(&points[0], "team"), "a", "input tags are fields on logs");
    let times: Vec<i64> = points.iter().map(|p| p.time).collect();
    assert_eq!(times, vec![10, 1_000_010, 2_000_010, 99]);
    assert_eq!(s(&points[2], "message").chars().count(), 2500 - 2048);
    assert_eq!(points[3].get_tag("status"), Some("unknown"));
}

#[test]
fn http_bodies_are_read_as_protobuf_or_json_leniently_and_gzip_is_capped() {
    assert_eq!(
        body::encoding(Some("application/x-protobuf"), false),
        Ok(Encoding::Protobuf)
    );
    assert_eq!(
        body::encoding(Some("Application/JSON; charset=utf-8"), false),
        Ok(Encoding::Json)
    );
    assert_eq!(body::encoding(None, false), Ok(Encoding::Protobuf));
    assert!(matches!(
        body::encoding(Some("text/plain"), false),
        Err(BodyError::ContentType(_))
    ));
    assert_eq!(
        body::encoding(Some("text/plain"), true),
        Ok(Encoding::Protobuf)
    );

    let req: ExportTraceServiceRequest =
        body::read(TRACES, Some("application/x-protobuf"), None, false, 1 << 20).unwrap();
    assert_eq!(trace::span_count(&req), 3);
    // Gzip is inflated; a body inflated already (by the API server) is left alone.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, TRACES).unwrap();
    let gz = gz.finish().unwrap();
    let req: ExportTraceServiceRequest = body::read(
        &gz,
        Some("application/x-protobuf"),
        Some("gzip"),
        false,
        1 << 20,
    )
    .unwrap();
    assert_eq!(trace::span_count(&req), 3);
    let req: ExportTraceServiceRequest = body::read(
        TRACES,
        Some("application/x-protobuf"),
        Some("gzip"),
        false,
        1 << 20,
    )
    .unwrap();
    assert_eq!(trace::span_count(&req), 3);
    let err =
        body::read::<ExportTraceServiceRequest>(&gz, None, Some("gzip"), false, 100).unwrap_err();
    assert_eq!((err.clone(), err.status()), (BodyError::TooLarge(100), 413));
    let err =
        body::read::<ExportTraceServiceRequest>(b"\x0a\xff", None, None, false, 100).unwrap_err();
    assert!(
        matches!(
            err,
            BodyError::Decode {
                encoding: "protobuf",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.status(), 400);
}

#[test]
fn otlp_json_bodies_decode_with_hex_ids_camel_case_and_string_int64s() {
    let json = br#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"curl-svc"}}]},
      "scopeSpans":[{"scope":{"name":"s"},"spans":[{
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "parentSpanId":"","name":"json-span","kind":2,
        "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
        "attributes":[{"key":"http.status_code","value":{"intValue":"404"}},
                      {"key":"retries","value":{"intValue":3}}],
        "status":{"code":2},"unknownField":true}]}]}]}"#;
    let req: ExportTraceServiceRequest =
        body::read(json, Some("application/json"), None, false, 1 << 20).unwrap();
    let points = trace::points(&req, &opts(), &Origin::default());
    assert_eq!(points.len(), 1);
    let p = &points[0];
    assert_eq!(s(p, "trace_id"), "5b8efff798038103d269b633813fc60c");
    assert_eq!(s(p, "span_id"), "eee19b7ec3c1b174");
    assert_eq!(p.get_tag("service"), Some("curl-svc"));
    assert_eq!(p.get_tag("http_status_code"), Some("404"));
    assert_eq!(p.get_tag("status"), Some("error"));
    assert_eq!(p.get_tag("span_kind"), Some("server"));
    assert_eq!(i(p, "duration"), 1_000_000);
    assert_eq!(p.time, 1_544_712_660_000_000_000);
    // The round trip: protobuf bytes of the decoded JSON decode again.
    let again = ExportTraceServiceRequest::decode(req.encode_to_vec().as_slice()).unwrap();
    assert_eq!(again, req);
    let bad = body::read::<ExportTraceServiceRequest>(
        b"{\"resourceSpans\":5}",
        Some("application/json"),
        None,
        false,
        1 << 20,
    )
    .unwrap_err();
    assert!(
        matches!(
            bad,
            BodyError::Decode {
                encoding: "JSON",
                ..
            }
        ),
        "{bad}"
    );
}
