//! Spans → tracing points of measurement `opentelemetry` (Datakit's `trace.go`).

use std::collections::HashSet;

use dk_proto::{Point, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, status::StatusCode};

use crate::attrs::{self, find_string};
use crate::options::{Options, Origin};

/// The measurement and `source` tag of span points.
pub const MEASUREMENT: &str = "opentelemetry";
/// The service of spans whose resource names none.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

const SPAN_KINDS: [&str; 6] = [
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];

/// Every span of the request as a point, in request order (spans dropped by the sampler or
/// `close_resource` left out).
pub fn points(req: &ExportTraceServiceRequest, opts: &Options, origin: &Origin) -> Vec<Point> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        resource_points(rs, opts, origin, &mut out);
    }
    out
}

/// The number of spans in a request.
pub fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

/// One "trace" of Datakit: the spans of one `ResourceSpans`.
fn resource_points(rs: &ResourceSpans, opts: &Options, origin: &Origin, out: &mut Vec<Point>) {
    let no_attrs: &[KeyValue] = &[];
    let res_attrs = rs.resource.as_ref().map_or(no_attrs, |r| &r.attributes[..]);
    let service =
        find_string(res_attrs, "service.name").unwrap_or_else(|| UNKNOWN_SERVICE.to_string());
    // Parents and children within this trace decide `span_type`.
    let mut ids: HashSet<&[u8]> = HashSet::new();
    let mut parents: HashSet<&[u8]> = HashSet::new();
    for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
        ids.insert(&span.span_id);
        if !span.parent_span_id.is_empty() {
            parents.insert(&span.parent_span_id);
        }
    }
    for ss in &rs.scope_spans {
        let scope_attrs = ss.scope.as_ref().map_or(no_attrs, |s| &s.attributes[..]);
        for span in &ss.spans {
            if !sampled(&span.trace_id, opts.sampling_rate) || closed(span, &service, opts) {
                continue;
            }
            let span_type = if span.parent_span_id.iter().all(|b| *b == 0)
                || !ids.contains(&span.parent_span_id[..])
            {
                "entry"
            } else if parents.contains(&span.span_id[..]) {
                "local"
            } else {
                "exit"
            };
            out.push(span_point(
                span,
                SpanCtx {
                    res_attrs,
                    scope_attrs,
                    service: &service,
                    span_type,
                },
                opts,
                origin,
            ));
        }
    }
}

struct SpanCtx<'a> {
    res_attrs: &'a [KeyValue],
    scope_attrs: &'a [KeyValue],
    service: &'a str,
    span_type: &'static str,
}

/// Whether the trace of `trace_id` is kept at `rate` (the same answer for every span of it).
fn sampled(trace_id: &[u8], rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let low = &trace_id[trace_id.len().saturating_sub(8)..];
    let n = low.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let keep = (rate.max(0.0) * 10_000.0) as u64;
    n % 10_000 < keep
}

fn closed(span: &Span, service: &str, opts: &Options) -> bool {
    opts.close_resource
        .iter()
        .any(|(s, re)| (s == "*" || s == service) && re.is_match(&span.name))
}

fn span_point(span: &Span, cx: SpanCtx<'_>, opts: &Options, origin: &Origin) -> Point {
    let dd = opts.compatible_ddtrace;
    let start = i64::try_from(span.start_time_unix_nano).unwrap_or(i64::MAX);
    let end = i64::try_from(span.end_time_unix_nano).unwrap_or(i64::MAX);
    let mut p = Point {
        name: MEASUREMENT.to_string(),
        tags: Vec::with_capacity(12 + opts.tags.len()),
        fields: Vec::with_capacity(16),
        time: start,
    };

    // Extracted attributes: resource, then scope, then span (the most specific wins).
    let mut extracted: Vec<&str> = Vec::new();
    for kv in cx
        .res_attrs
        .iter()
        .chain(cx.scope_attrs)
        .chain(&span.attributes)
    {
        if kv.key == "service.name" {
            continue;
        }
        if let Some(name) = opts.extract.field_of(&kv.key) {
            let v = attrs::field(kv.value.as_ref().and_then(|v| v.value.as_ref()));
            if name == "http_status_code" {
                p.set_tag(name, value_text(&v));
            } else {
                p.set_field(name, v);
            }
            extracted.push(&kv.key);
        }
    }

    let mut service = cx.service.to_string();
    if opts.split_service_name {
        let system = ["db.system", "rpc.system", "messaging.system"]
            .iter()
            .find_map(|k| find_string(&span.attributes, k));
        if let Some(system) = system {
            p.set_tag("base_service", std::mem::replace(&mut service, system));
        }
    }
    if find_string(&span.attributes, "db.system").is_some() {
        let host = find_string(&span.attributes, "net.peer.name")
            .or_else(|| find_string(&span.attributes, "server.address"));
        if let Some(host) = host {
            p.set_tag("db_host", host);
        }
    }

    let mut status = match span.status.as_ref().map(|s| s.code()) {
        None => "info",
        Some(StatusCode::Error) => "error",
        Some(_) => "ok",
    };
    if status == "error"
        && p.get_tag("http_status_code")
            .is_some_and(|c| opts.omit_err_status.iter().any(|o| o == c))
    {
        status = "ok";
    }
    let kind = usize::try_from(span.kind)
        .ok()
        .and_then(|k| SPAN_KINDS.get(k))
        .copied()
        .unwrap_or("unspecified");
    let source_type = source_type(&p);

    p.set_tag("source", MEASUREMENT);
    p.set_tag("service", service);
    p.set_tag("status", status);
    p.set_tag("span_type", cx.span_type);
    p.set_tag("span_kind", kind);
    p.set_tag("source_type", source_type);
    if !origin.remote_ip.is_empty() {
        p.set_tag("remote_ip", origin.remote_ip.clone());
    }
    if !opts.fingerprint.is_empty() {
        p.set_tag("dk_fingerprint", opts.fingerprint.clone());
    }

    p.set_field("trace_id", Value::S(attrs::id(&span.trace_id, dd)));
    p.set_field("span_id", Value::S(attrs::id(&span.span_id, dd)));
    p.set_field("parent_id", Value::S(attrs::id(&span.parent_span_id, dd)));
    p.set_field("resource", Value::S(span.name.clone()));
    p.set_field("start", Value::I(start / 1_000));
    p.set_field(
        "duration",
        Value::I(end.saturating_sub(start).max(0) / 1_000),
    );

    let runtime_id = find_string(cx.res_attrs, "runtime_id")
        .or_else(|| find_string(&span.attributes, "runtime_id"));
    if let Some(id) = runtime_id {
        p.set_field("runtime-id", Value::S(id.clone()));
        p.set_field("runtime_id", Value::S(id));
    }
    if let Some(ev) = span.events.iter().find(|e| e.name == "exception") {
        for (key, field) in [
            ("exception.type", "error_type"),
            ("exception.message", "error_message"),
            ("exception.stacktrace", "error_stack"),
        ] {
            if let Some(v) = find_string(&ev.attributes, key) {
                p.set_field(field, Value::S(v));
            }
        }
    }
    if !opts.del_message {
        p.set_field("message", Value::S(message(span, &cx, &extracted, opts)));
    }
    for (k, v) in &opts.tags {
        p.set_tag(k.clone(), v.clone());
    }
    p
}

fn value_text(v: &Value) -> String {
    match v {
        Value::S(s) => s.clone(),
        Value::I(i) => i.to_string(),
        Value::U(u) => u.to_string(),
        Value::F(f) => f.to_string(),
        Value::B(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// `web`, `db`, `message_queue` or `custom`, from the extracted attributes (Datakit looks at
/// tags only, where they never are, so it says `custom` for almost everything).
fn source_type(p: &Point) -> &'static str {
    let has = |k: &str| p.get_field(k).is_some() || p.get_tag(k).is_some();
    if has("http_scheme") || has("http_method") || has("rpc_system") {
        "web"
    } else if has("db_system") {
        "db"
    } else if has("messaging_system") {
        "message_queue"
    } else {
        "custom"
    }
}

/// The span as OTLP/JSON; with `clean_message`, without its ids and the attributes already
/// extracted, and with the resource's other attributes merged into its attributes.
fn message(span: &Span, cx: &SpanCtx<'_>, extracted: &[&str], opts: &Options) -> String {
    if !opts.clean_message {
        return serde_json::to_string(span).unwrap_or_default();
    }
    let keep = |kv: &&KeyValue| {
        kv.key != "service.name" && kv.key != "runtime_id" && !extracted.contains(&kv.key.as_str())
    };
    let msg = Message {
        trace_state: &span.trace_state,
        flags: span.flags,
        name: &span.name,
        kind: span.kind,
        start_time_unix_nano: span.start_time_unix_nano.to_string(),
        end_time_unix_nano: span.end_time_unix_nano.to_string(),
        attributes: span
            .attributes
            .iter()
            .chain(cx.res_attrs)
            .filter(keep)
            .collect(),
        dropped_attributes_count: span.dropped_attributes_count,
        events: &span.events,
        dropped_events_count: span.dropped_events_count,
        links: &span.links,
        dropped_links_count: span.dropped_links_count,
        status: span.status.as_ref(),
    };
    serde_json::to_string(&msg).unwrap_or_default()
}

/// A span as OTLP/JSON without its ids, borrowing its parts.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    trace_state: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    flags: u32,
    name: &'a str,
    kind: i32,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Vec<&'a KeyValue>,
    #[serde(skip_serializing_if = "is_zero")]
    dropped_attributes_count: u32,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    events: &'a [opentelemetry_proto::tonic::trace::v1::span::Event],
    #[serde(skip_serializing_if = "is_zero")]
    dropped_events_count: u32,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    links: &'a [opentelemetry_proto::tonic::trace::v1::span::Link],
    #[serde(skip_serializing_if = "is_zero")]
    dropped_links_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a opentelemetry_proto::tonic::trace::v1::Status>,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u32) -> bool {
    *n == 0
}
