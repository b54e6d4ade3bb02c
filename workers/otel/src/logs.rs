//! Log records → logging points (Datakit's `logs.go`).

use dk_proto::{Point, Value};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use crate::attrs::{self, find_string};
use crate::options::{Options, Origin};

/// The measurement when the resource names neither `log.source` nor `service.name`.
pub const DEFAULT_MEASUREMENT: &str = "otel_logs";
/// The `service` tag when the resource names no service (Datakit's spelling).
pub const UNSET_SERVICE: &str = "unSetServiceName";

/// Every log record of the request as points (a long body as several, 1 ms apart). Records
/// with neither time get `now`.
pub fn points(
    req: &ExportLogsServiceRequest,
    opts: &Options,
    origin: &Origin,
    now: i64,
) -> Vec<Point> {
    let mut out = Vec::new();
    let no_attrs: &[KeyValue] = &[];
    for rl in &req.resource_logs {
        let res_attrs = rl.resource.as_ref().map_or(no_attrs, |r| &r.attributes[..]);
        let service = find_string(res_attrs, "service.name");
        let name = find_string(res_attrs, "log.source")
            .or_else(|| service.clone())
            .unwrap_or_else(|| DEFAULT_MEASUREMENT.to_string());
        let service = service.unwrap_or_else(|| UNSET_SERVICE.to_string());
        let host = find_string(res_attrs, "host.name");
        for sl in &rl.scope_logs {
            let scope_attrs = sl.scope.as_ref().map_or(no_attrs, |s| &s.attributes[..]);
            for rec in &sl.log_records {
                let mut p = Point::new(name.clone(), 0);
                for kv in res_attrs.iter().chain(scope_attrs).chain(&rec.attributes) {
                    let v = attrs::text(kv.value.as_ref().and_then(|v| v.value.as_ref()));
                    p.set_field(attrs::key_name(&kv.key), Value::S(v));
                }
                if !rl.schema_url.is_empty() {
                    p.set_field("schema_url", Value::S(rl.schema_url.clone()));
                }
                if let Some(scope) = &sl.scope {
                    p.set_field("scope_name", Value::S(scope.name.clone()));
                }
                for (k, v) in &opts.tags {
                    p.set_field(k.clone(), Value::S(v.clone()));
                }
                if !rec.span_id.is_empty() {
                    p.set_field("span_id", Value::S(attrs::hex(&rec.span_id)));
                }
                if !rec.trace_id.is_empty() {
                    p.set_field("trace_id", Value::S(attrs::hex(&rec.trace_id)));
                }
                p.set_tag("status", status(rec));
                p.set_tag("service", service.clone());
                p.set_tag("source", name.clone());
                if !origin.remote_ip.is_empty() {
                    p.set_tag("remote_ip", origin.remote_ip.clone());
                }
                if !opts.fingerprint.is_empty() {
                    p.set_tag("dk_fingerprint", opts.fingerprint.clone());
                }
                if let Some(h) = &host {
                    p.set_tag("host", h.clone());
                }
                let time = [rec.time_unix_nano, rec.observed_time_unix_nano]
                    .into_iter()
                    .find(|t| *t != 0)
                    .map_or(now, |t| i64::try_from(t).unwrap_or(i64::MAX));
                let body = attrs::text(rec.body.as_ref().and_then(|b| b.value.as_ref()));
                split(p, &body, time, opts.log_max_runes.max(1), &mut out);
            }
        }
    }
    out
}

/// Datakit's status from the severity number; out of range: the severity text.
pub fn status(rec: &LogRecord) -> String {
    match rec.severity_number {
        0 => "unknown".to_string(),
        1..=4 => "trace".to_string(),
        5..=8 => "debug".to_string(),
        9..=12 => "info".to_string(),
        13..=16 => "warn".to_string(),
        17..=20 => "error".to_string(),
        21..=24 => "fatal".to_string(),
        _ => rec.severity_text.to_lowercase(),
    }
}

/// `body` as the `message` of `p`, split every `max` runes into points 1 ms apart.
fn split(p: Point, body: &str, time: i64, max: usize, out: &mut Vec<Point>) {
    let mut rest = body;
    let mut t = time;
    loop {
        let cut = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let (chunk, after) = rest.split_at(cut);
        let mut q = p.clone();
        q.time = t;
        q.set_field("message", Value::S(chunk.to_string()));
        out.push(q);
        if after.is_empty() {
            break;
        }
        rest = after;
        t = t.saturating_add(1_000_000);
    }
}

/// The number of log records in a request.
pub fn record_count(req: &ExportLogsServiceRequest) -> usize {
    req.resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len())
        .sum()
}
