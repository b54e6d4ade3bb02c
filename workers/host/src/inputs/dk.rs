//! `dk`: the agent's own metrics as Datakit's `dk` measurement. Like Datakit, the input
//! scrapes the agent's `/metrics` (the supervisor's HTTP API, whose address the supervisor
//! passes in [`dk_worker::worker::ENV_API_ADDR`]) every `interval` and turns each series into a
//! `dk` point: the labels become tags, the metric name the field.
//!
//! The conversion ([`to_points`]) is pure; the run loop only fetches and feeds.

use std::collections::BTreeMap;
use std::time::Duration;

use dk_proto::promtext::{self, Labels, MetricFamily, MetricType, Sample};
use dk_proto::{Category, FeedOpts, Point, Value};
use dk_worker::config::{Decoded, Problems};
use dk_worker::{Input, InputContext};
use futures::future::BoxFuture;
use regex::Regex;
use serde::Deserialize;
use toml::Table;

use crate::http::{Request, fetch};
use crate::runner::{align, now_ns};

/// The measurement every point goes to.
pub const MEASUREMENT: &str = "dk";
/// Datakit's `source` of the input (last errors).
pub const SOURCE: &str = "dk-metrics";
/// Series never sent, whatever the filter (one series per error text).
pub const ALWAYS_BLOCKED: &str = "datakit_last_err";
/// Where the agent's metrics are when the supervisor did not say (Datakit's default).
pub const DEFAULT_URL: &str = "http://localhost:9529/metrics";
/// Longest wait for `/metrics`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `/metrics` page read.
const MAX_PAGE: usize = 16 << 20;

/// `[[inputs.dk]]`.
#[derive(Debug, Clone)]
pub struct DkConfig {
    /// `interval` (default 30 s, clamped to 5 s..1 min).
    pub interval: Duration,
    /// `metric_name_filter`: keep the metrics matching any of these (all when empty).
    pub metric_name_filter: Vec<Regex>,
    /// `metric_types`: keep these types (`counter`, `gauge`...; all when empty).
    pub metric_types: Vec<String>,
    /// `[inputs.dk.tags]`.
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct DkToml {
    #[serde(with = "dk_worker::config::go")]
    interval: Duration,
    metric_name_filter: Vec<String>,
    metric_types: Vec<String>,
    tags: BTreeMap<String, String>,
}

impl Default for DkToml {
    fn default() -> Self {
        DkToml {
            interval: Duration::from_secs(30),
            metric_name_filter: Vec::new(),
            metric_types: Vec::new(),
            tags: BTreeMap::new(),
        }
    }
}

/// Decodes one `[[inputs.dk]]` table.
pub(crate) fn decode(table: Table) -> Decoded<Option<crate::config::InputConfig>> {
    dk_worker::config::decode_table::<DkToml>(table).map(|t, p: &mut Problems| {
        let interval = p.clamp(
            "interval",
            t.interval,
            Duration::from_secs(5),
            Duration::from_secs(60),
        );
        let mut filter = Vec::new();
        for (i, text) in t.metric_name_filter.iter().enumerate() {
            match Regex::new(text) {
                Ok(r) => filter.push(r),
                Err(e) => p.error(
                    format!("metric_name_filter[{i}]"),
                    format!(
                        "{text:?} is not a valid regular expression ({}); fix or remove it",
                        e.to_string().lines().last().unwrap_or("")
                    ),
                ),
            }
        }
        Some(crate::config::InputConfig::Dk(DkConfig {
            interval,
            metric_name_filter: filter,
            metric_types: t.metric_types.iter().map(|s| s.to_lowercase()).collect(),
            tags: t.tags.into_iter().collect(),
        }))
    })
}

/// Go's `fmt.Sprint` of a float, as Datakit writes the `le` and `quantile` tags.
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        // Go: 1e-05, 1.5e+21.
        let s = format!("{v:e}");
        if let Some((m, e)) = s.split_once('e') {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            return format!("{m}e{sign}{digits:0>2}");
        }
        return s;
    }
    format!("{v}")
}

/// What to keep of a scrape.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Keep metrics matching any (all when empty).
    pub names: Vec<Regex>,
    /// Keep these types (all when empty).
    pub types: Vec<String>,
}

impl Selection {
    fn keeps(&self, name: &str, kind: MetricType) -> bool {
        if name == ALWAYS_BLOCKED {
            return false;
        }
        if !self.types.is_empty() && !self.types.iter().any(|t| t == kind.as_str()) {
            return false;
        }
        self.names.is_empty() || self.names.iter().any(|r| r.is_match(name))
    }
}

/// The name Datakit (Prometheus's 0.0.4 parser) knows a family by: a counter's samples'
/// name (with `_total`), else the family name.
fn datakit_name(f: &MetricFamily) -> &str {
    match f.kind {
        MetricType::Counter => f
            .samples
            .iter()
            .find(|s| !s.name.ends_with("_created"))
            .map_or(f.name.as_str(), |s| s.name.as_str()),
        _ => f.name.as_str(),
    }
}

fn point(ts: i64, tags: &[(String, String)], labels: &[(String, String)], skip: &str) -> Point {
    let mut p = Point::new(MEASUREMENT, ts);
    for (k, v) in tags {
        p.set_tag(k.clone(), v.clone());
    }
    for (k, v) in labels {
        if k != skip {
            p.add_tag_if_absent(k, v);
        }
    }
    p
}

/// Label sets of `samples` without `skip` (`le`, `quantile`), in first-seen order, each with
/// its samples.
fn by_series<'a>(samples: &'a [Sample], skip: &str) -> Vec<(Labels, Vec<&'a Sample>)> {
    let mut out: Vec<(Labels, Vec<&Sample>)> = Vec::new();
    for s in samples {
        let key: Labels = s
            .labels
            .iter()
            .filter(|(k, _)| k != skip)
            .cloned()
            .collect();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(s),
            None => out.push((key, vec![s])),
        }
    }
    out
}

/// Turns a parsed `/metrics` page into `dk` points at time `ts`, as Datakit's prom
/// conversion with a measurement name does: counters, gauges and untyped series give one
/// point each with the metric name as field; a summary or histogram gives a point with
/// `NAME_count` and `NAME_sum` per series plus one per quantile (tag `quantile`, field `NAME`)
/// or bucket (tag `le`, field `NAME_bucket`); info series lend their labels to every point.
/// NaN and infinite values are skipped; `tags` win over labels of the same key.
pub fn to_points(
    families: &[MetricFamily],
    sel: &Selection,
    tags: &[(String, String)],
    ts: i64,
) -> Vec<Point> {
    let mut base: Vec<(String, String)> = tags.to_vec();
    for f in families.iter().filter(|f| f.kind == MetricType::Info) {
        if !sel.keeps(datakit_name(f), f.kind) {
            continue;
        }
        for s in &f.samples {
            for (k, v) in &s.labels {
                if !base.iter().any(|(b, _)| b == k) {
                    base.push((k.clone(), v.clone()));
                }
            }
        }
    }
    let mut out = Vec::new();
    for f in families {
        let name = datakit_name(f);
        if !sel.keeps(name, f.kind) {
            continue;
        }
        match f.kind {
            MetricType::Counter | MetricType::Gauge | MetricType::Untyped => {
                for s in &f.samples {
                    if s.name.ends_with("_created") && f.kind == MetricType::Counter {
                        continue;
                    }
                    if !s.value.is_finite() {
                        continue;
                    }
                    let field = if f.kind == MetricType::Counter {
                        s.name.as_str()
                    } else {
                        name
                    };
                    out.push(point(ts, &base, &s.labels, "").field(field, Value::F(s.value)));
                }
            }
            MetricType::Summary | MetricType::Histogram => {
                let (skip, part) = if f.kind == MetricType::Summary {
                    ("quantile", "")
                } else {
                    ("le", "_bucket")
                };
                for (labels, samples) in by_series(&f.samples, skip) {
                    let mut head = point(ts, &base, &labels, "");
                    for suffix in ["_count", "_sum"] {
                        let sn = format!("{}{suffix}", f.name);
                        let v = samples
                            .iter()
                            .find(|s| s.name == sn)
                            .map_or(0.0, |s| s.value);
                        head.set_field(sn, Value::F(v));
                    }
                    out.push(head);
                    let field = format!("{}{part}", f.name);
                    for s in samples.iter().filter(|s| s.name == field) {
                        let Some(bound) = s.label(skip).and_then(promtext::parse_value) else {
                            continue;
                        };
                        if s.value.is_nan() {
                            continue;
                        }
                        let mut p = point(ts, &base, &s.labels, skip);
                        p.set_tag(skip, go_float(bound));
                        out.push(p.field(field.clone(), Value::F(s.value)));
                    }
                }
            }
            MetricType::Info | MetricType::GaugeHistogram | MetricType::StateSet => {}
        }
    }
    out
}

/// The `dk` input.
pub struct Dk {
    cfg: DkConfig,
    selection: Selection,
    url: String,
}

impl Dk {
    /// A `dk` input scraping `url`.
    pub fn new(cfg: DkConfig, url: String) -> Self {
        let selection = Selection {
            names: cfg.metric_name_filter.clone(),
            types: cfg.metric_types.clone(),
        };
        Dk {
            cfg,
            selection,
            url,
        }
    }

    /// The URL of the agent's `/metrics`: from [`dk_worker::worker::ENV_API_ADDR`], else
    /// Datakit's default.
    pub fn url_from_env() -> String {
        match std::env::var(dk_worker::worker::ENV_API_ADDR) {
            Ok(a) if !a.trim().is_empty() => format!("http://{}/metrics", a.trim()),
            _ => DEFAULT_URL.to_string(),
        }
    }

    async fn scrape(&self, ts: i64) -> Result<Vec<Point>, String> {
        let body = fetch(Request::get(&self.url), SCRAPE_TIMEOUT, MAX_PAGE)
            .await
            .map_err(|e| format!("scraping the agent's metrics: {e}"))?;
        let text = std::str::from_utf8(&body)
            .map_err(|e| format!("{}: the page is not UTF-8 ({e})", self.url))?;
        let families = promtext::parse(text).map_err(|e| format!("{}: {e}", self.url))?;
        Ok(to_points(&families, &self.selection, &self.cfg.tags, ts))
    }
}

impl Input for Dk {
    fn name(&self) -> &str {
        "dk"
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let interval = self.cfg.interval;
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ts = now_ns();
            tracing::info!(input = "dk", url = %self.url, ?interval, "dk input started");
            loop {
                let scraped = tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    r = self.scrape(ts) => r,
                };
                match scraped {
                    Ok(points) if !points.is_empty() => {
                        tokio::select! {
                            _ = ctx.shutdown.cancelled() => return,
                            ok = ctx.emitter.emit(Category::Metric, "dk", FeedOpts::default(), points) => {
                                if !ok {
                                    return;
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(input = "dk", "{e}; retrying in {interval:?}");
                        ctx.emitter
                            .last_error("dk", SOURCE, Category::Metric, e)
                            .await;
                    }
                }
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    _ = tick.tick() => ts = align(now_ns(), ts, interval),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# TYPE datakit_process_pid gauge\n\
datakit_process_pid{family=\"supervisor\"} 100\n\
datakit_process_pid{family=\"host\"} 101\n\
# TYPE datakit_worker_restarts counter\n\
datakit_worker_restarts_total{family=\"host\",cause=\"signal\"} 3\n\
datakit_worker_restarts_created{family=\"host\",cause=\"signal\"} 1700000000\n\
# TYPE datakit_last_err gauge\n\
datakit_last_err{error=\"boom\"} 1\n\
# TYPE datakit_rpc_push_seconds histogram\n\
datakit_rpc_push_seconds_sum{family=\"host\"} 0.5\n\
datakit_rpc_push_seconds_count{family=\"host\"} 4\n\
datakit_rpc_push_seconds_bucket{family=\"host\",le=\"0.001\"} 1\n\
datakit_rpc_push_seconds_bucket{family=\"host\",le=\"1.0\"} 3\n\
datakit_rpc_push_seconds_bucket{family=\"host\",le=\"+Inf\"} 4\n\
# TYPE gc summary\n\
gc{quantile=\"0.5\"} 0.002\n\
gc_sum 1.5\n\
gc_count 9\n\
# TYPE build info\n\
build_info{version=\"1.84.1\"} 1\n\
# TYPE datakit_cpu_usage gauge\n\
datakit_cpu_usage NaN\n\
# EOF\n";

    fn points(sel: &Selection) -> Vec<Point> {
        let f = promtext::parse(PAGE).unwrap();
        to_points(&f, sel, &[("team".into(), "ops".into())], 7)
    }

    fn f(p: &Point, k: &str) -> Option<f64> {
        match p.get_field(k) {
            Some(Value::F(v)) => Some(*v),
            _ => None,
        }
    }

    #[test]
    fn every_series_becomes_a_dk_point_with_its_labels_as_tags_and_its_name_as_field() {
        let pts = points(&Selection::default());
        assert!(pts.iter().all(|p| p.name == "dk" && p.time == 7));
        assert!(pts.iter().all(|p| p.get_tag("team") == Some("ops") && p.get_tag("version") == Some("1.84.1")));
        let pid: Vec<(Option<&str>, Option<f64>)> = pts
            .iter()
            .filter(|p| p.get_field("datakit_process_pid").is_some())
            .map(|p| (p.get_tag("family"), f(p, "datakit_process_pid")))
            .collect();
        assert_eq!(
            pid,
            [
                (Some("supervisor"), Some(100.0)),
                (Some("host"), Some(101.0))
            ]
        );
        let restarts: Vec<&Point> = pts
            .iter()
            .filter(|p| p.get_field("datakit_worker_restarts_total").is_some())
            .collect();
        assert_eq!(restarts.len(), 1, "the _created sample is not a series");
        assert_eq!(restarts[0].get_tag("cause"), Some("signal"));
        assert!(
            pts.iter()
                .all(|p| p.get_field("datakit_last_err").is_none()),
            "always blocked"
        );
        assert!(
            pts.iter()
                .all(|p| p.get_field("datakit_cpu_usage").is_none()),
            "NaN skipped"
        );
    }

    #[test]
    fn histograms_and_summaries_give_count_sum_and_one_point_per_bucket_or_quantile() {
        let pts = points(&Selection::default());
        let head = pts
            .iter()
            .find(|p| p.get_field("datakit_rpc_push_seconds_count").is_some())
            .unwrap();
        assert_eq!(f(head, "datakit_rpc_push_seconds_sum"), Some(0.5));
        assert_eq!(f(head, "datakit_rpc_push_seconds_count"), Some(4.0));
        assert_eq!(head.get_tag("le"), None);
        let buckets: Vec<(Option<&str>, Option<f64>)> = pts
            .iter()
            .filter(|p| p.get_field("datakit_rpc_push_seconds_bucket").is_some())
            .map(|p| (p.get_tag("le"), f(p, "datakit_rpc_push_seconds_bucket")))
            .collect();
        assert_eq!(
            buckets,
            [
                (Some("0.001"), Some(1.0)),
                (Some("1"), Some(3.0)),
                (Some("+Inf"), Some(4.0))
            ]
        );
        let q = pts.iter().find(|p| p.get_field("gc").is_some()).unwrap();
        assert_eq!(q.get_tag("quantile"), Some("0.5"));
        let gc = pts
            .iter()
            .find(|p| p.get_field("gc_count").is_some())
            .unwrap();
        assert_eq!((f(gc, "gc_count"), f(gc, "gc_sum")), (Some(9.0), Some(1.5)));
    }

    #[test]
    fn name_and_type_filters_keep_only_what_they_match() {
        let sel = Selection {
            names: vec![
                Regex::new("datakit_process_.*").unwrap(),
                Regex::new("restarts_total$").unwrap(),
            ],
            types: vec![],
        };
        let fields: Vec<String> = points(&sel)
            .iter()
            .flat_map(|p| p.fields.iter().map(|(k, _)| k.clone()))
            .collect();
        assert_eq!(
            fields,
            [
                "datakit_process_pid",
                "datakit_process_pid",
                "datakit_worker_restarts_total"
            ]
        );
        let sel = Selection {
            names: vec![],
            types: vec!["counter".into()],
        };
        let fields: Vec<String> = points(&sel)
            .iter()
            .flat_map(|p| p.fields.iter().map(|(k, _)| k.clone()))
            .collect();
        assert_eq!(fields, ["datakit_worker_restarts_total"]);
    }

    #[test]
    fn floats_are_written_as_go_prints_them() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(0.005), "0.005");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(2.5e21), "2.5e+21");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn the_sample_config_decodes_with_datakit_defaults() {
        let sample = include_str!("../../../../conf.d/host/dk.conf");
        let crate::config::InputConfig::Dk(c) = crate::config::decode("dk", sample).unwrap() else {
            panic!()
        };
        assert_eq!(c.interval, Duration::from_secs(30));
        assert!(
            c.metric_name_filter
                .iter()
                .any(|r| r.is_match("datakit_process_pid"))
        );
        assert!(
            c.metric_name_filter
                .iter()
                .any(|r| r.is_match("datakit_worker_restarts_total"))
        );
        assert!(
            !c.metric_name_filter
                .iter()
                .any(|r| r.is_match("datakit_io_dataway_point_total"))
        );
        let problems = crate::config::check("dk", "metric_name_filter = ['(']\ninterval = '1s'")
            .into_problems();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["interval", "metric_name_filter[0]"]);
    }

    #[tokio::test]
    async fn a_scrape_fetches_the_page_and_a_failed_one_names_the_url() {
        let s = dk_worker::testing::fake_http::FakeHttp::start(&[("GET /metrics", PAGE)], None);
        let cfg = DkConfig {
            interval: Duration::from_secs(30),
            metric_name_filter: vec![Regex::new("datakit_process_pid").unwrap()],
            metric_types: vec![],
            tags: vec![],
        };
        let dk = Dk::new(cfg.clone(), s.url("/metrics"));
        let pts = dk.scrape(5).await.unwrap();
        assert_eq!(pts.len(), 2);
        assert_eq!(s.paths(), ["GET /metrics"]);
        let missing = Dk::new(cfg, s.url("/nope"));
        let e = missing.scrape(5).await.unwrap_err();
        assert!(e.contains("/nope") && e.contains("404"), "{e}");
    }
}
