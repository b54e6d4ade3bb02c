//! Metrics → metric points of measurement `otel_service` (Datakit's `metric.go`).

use dk_proto::{Point, Value};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};

use crate::attrs::{self, DROPPED_METRIC_KEYS};
use crate::options::{Options, Origin};

/// The measurement of metric points.
pub const MEASUREMENT: &str = "otel_service";

/// Every data point of the request as points. A `ResourceMetrics` without a resource maps
/// with no resource tags (Datakit drops the whole request there).
pub fn points(req: &ExportMetricsServiceRequest, opts: &Options, origin: &Origin) -> Vec<Point> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        let mut base: Vec<(String, String)> = Vec::new();
        if let Some(r) = &rm.resource {
            add_tags(&mut base, &r.attributes);
        }
        if !origin.remote_ip.is_empty() {
            add_tag(&mut base, "remote_ip".into(), origin.remote_ip.clone());
        }
        for sm in &rm.scope_metrics {
            let mut scoped = base.clone();
            if let Some(scope) = &sm.scope {
                add_tags(&mut scoped, &scope.attributes);
                add_tag(&mut scoped, "scope_name".into(), scope.name.clone());
            }
            for m in &sm.metrics {
                let Some(data) = &m.data else { continue };
                let mut scoped = scoped.clone();
                if !m.unit.is_empty() {
                    add_tag(&mut scoped, "unit".into(), m.unit.clone());
                }
                let point = |attributes: &[KeyValue], time: u64| {
                    let mut tags = scoped.clone();
                    add_tags(&mut tags, attributes);
                    for (k, v) in &opts.tags {
                        add_tag(&mut tags, k.clone(), v.clone());
                    }
                    Point {
                        name: MEASUREMENT.to_string(),
                        tags,
                        fields: Vec::new(),
                        time: i64::try_from(time).unwrap_or(i64::MAX),
                    }
                };
                data_points(&m.name, data, point, &mut out);
            }
        }
    }
    out
}

fn data_points(
    name: &str,
    data: &Data,
    point: impl Fn(&[KeyValue], u64) -> Point,
    out: &mut Vec<Point>,
) {
    let number = |dp: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| {
        let v = match dp.value {
            Some(number_data_point::Value::AsInt(i)) => Value::I(i),
            Some(number_data_point::Value::AsDouble(f)) => Value::F(f),
            None => return None,
        };
        Some(point(&dp.attributes, dp.time_unix_nano).field(name, v))
    };
    #[allow(clippy::cast_possible_wrap)]
    let count = |c: u64| Value::I(c as i64);
    match data {
        Data::Gauge(g) => out.extend(g.data_points.iter().filter_map(number)),
        Data::Sum(s) => out.extend(s.data_points.iter().filter_map(number)),
        Data::Summary(s) => {
            for dp in &s.data_points {
                out.push(
                    point(&dp.attributes, dp.time_unix_nano)
                        .field(format!("{name}_count"), count(dp.count))
                        .field(format!("{name}_sum"), Value::F(dp.sum)),
                );
            }
        }
        Data::Histogram(h) => {
            for dp in &h.data_points {
                let base = point(&dp.attributes, dp.time_unix_nano);
                out.push(
                    base.clone()
                        .field(format!("{name}_min"), Value::F(dp.min.unwrap_or_default()))
                        .field(format!("{name}_max"), Value::F(dp.max.unwrap_or_default()))
                        .field(format!("{name}_count"), count(dp.count))
                        .field(format!("{name}_sum"), Value::F(dp.sum.unwrap_or_default())),
                );
                if dp.bucket_counts.len() > 1 && !dp.explicit_bounds.is_empty() {
                    let mut cumulative = 0u64;
                    for (i, c) in dp.bucket_counts.iter().enumerate() {
                        cumulative = cumulative.saturating_add(*c);
                        let le = dp
                            .explicit_bounds
                            .get(i)
                            .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                        out.push(
                            base.clone()
                                .tag("le", le)
                                .field(format!("{name}_bucket"), count(cumulative)),
                        );
                    }
                }
            }
        }
        Data::ExponentialHistogram(h) => {
            for dp in &h.data_points {
                let sum = dp.sum.unwrap_or_default();
                #[allow(clippy::cast_precision_loss)]
                let avg = if dp.count == 0 {
                    0.0
                } else {
                    sum / dp.count as f64
                };
                out.push(
                    point(&dp.attributes, dp.time_unix_nano)
                        .field(format!("{name}_min"), Value::F(dp.min.unwrap_or_default()))
                        .field(format!("{name}_max"), Value::F(dp.max.unwrap_or_default()))
                        .field(format!("{name}_count"), count(dp.count))
                        .field(format!("{name}_sum"), Value::F(sum))
                        .field(format!("{name}_avg"), Value::S(format!("{avg:.3}"))),
                );
            }
        }
    }
}

/// Adds attributes as tags (`.` → `_`), skipping Datakit's dropped keys; the first writer of
/// a key wins.
fn add_tags(tags: &mut Vec<(String, String)>, attributes: &[KeyValue]) {
    for kv in attributes {
        if DROPPED_METRIC_KEYS.contains(&kv.key.as_str()) {
            continue;
        }
        let v = attrs::metric_tag(kv.value.as_ref().and_then(|v| v.value.as_ref()));
        add_tag(tags, attrs::key_name(&kv.key), v);
    }
}

fn add_tag(tags: &mut Vec<(String, String)>, key: String, value: String) {
    if !tags.iter().any(|(k, _)| *k == key) {
        tags.push((key, value));
    }
}

/// The number of data points in a request.
pub fn data_point_count(req: &ExportMetricsServiceRequest) -> usize {
    req.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter_map(|m| m.data.as_ref())
        .map(|d| match d {
            Data::Gauge(g) => g.data_points.len(),
            Data::Sum(s) => s.data_points.len(),
            Data::Histogram(h) => h.data_points.len(),
            Data::ExponentialHistogram(h) => h.data_points.len(),
            Data::Summary(s) => s.data_points.len(),
        })
        .sum()
}
