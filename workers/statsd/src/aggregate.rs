//! Pure StatsD aggregation: parsed items accumulate per series between flushes; a flush turns them into points.
//!
//! Naming follows Datakit: the bucket's dots are joined with `metric_separator`
//! (`jvm.cpu_load.process` → `jvm_cpu_load_process`), then split into measurement and field at
//! the first separator (`jvm` / `cpu_load_process`), or by the longest matching
//! `metric_mapping` prefix. Tags are the bucket tags, `metric_type`, DogStatsD tags (which win),
//! then `[inputs.statsd.tags]` (which win over all), minus `drop_tags` and the source/host keys.
//! Unlike Datakit, tags are settled before the series is keyed, so series that differ only in a
//! dropped or overridden tag are merged instead of overwriting each other downstream.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use dk_proto::{Point, Value};

use crate::parser::{CheckStatus, Event, Item, MetricType, Sample, SampleValue, ServiceCheck};

/// Measurement of service check points.
pub const SERVICE_CHECK_MEASUREMENT: &str = "service_check";
/// Measurement of event points (category keyevent).
pub const EVENT_MEASUREMENT: &str = "event";
/// Events kept between two flushes at most; more are dropped and counted.
pub const DEFAULT_MAX_PENDING_EVENTS: usize = 10_000;
/// Tags handled on the stack per sample; more spill to the heap.
const INLINE_TAGS: usize = 48;

/// Aggregation settings (from `[[inputs.statsd]]`).
#[derive(Clone, Debug, PartialEq)]
pub struct AggregatorConfig {
    /// `metric_separator` (empty means `_`, as Datakit).
    pub metric_separator: String,
    /// `metric_mapping` as (prefix, measurement) pairs, in config order.
    pub metric_mapping: Vec<(String, String)>,
    /// `drop_tags`.
    pub drop_tags: Vec<String>,
    /// `[inputs.statsd.tags]`: override same-named line tags.
    pub tags: Vec<(String, String)>,
    /// Tag keys removed from every point (`statsd_source_key`/`statsd_host_key` unless
    /// `save_above_key`).
    pub remove_keys: Vec<String>,
    /// `delete_counters`.
    pub delete_counters: bool,
    /// `delete_gauges`.
    pub delete_gauges: bool,
    /// `delete_sets`.
    pub delete_sets: bool,
    /// `delete_timings` (timings, histograms and distributions).
    pub delete_timings: bool,
    /// `set_counter_int`: counters accumulate truncated integers.
    pub set_counter_int: bool,
    /// `percentiles` (0-100).
    pub percentiles: Vec<f64>,
    /// `percentile_limit`: values kept per series for percentiles.
    pub percentile_limit: usize,
    /// `max_ttl`: series not updated for this long are forgotten (zero: never).
    pub max_ttl: Duration,
    /// `datadog_extensions && datadog_distributions`: `d` samples are aggregated (else ignored).
    pub distributions: bool,
    /// Events kept between two flushes at most.
    pub max_pending_events: usize,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            metric_separator: "_".into(),
            metric_mapping: Vec::new(),
            drop_tags: Vec::new(),
            tags: Vec::new(),
            remove_keys: Vec::new(),
            delete_counters: true,
            delete_gauges: true,
            delete_sets: true,
            delete_timings: true,
            set_counter_int: false,
            percentiles: Vec::new(),
            percentile_limit: 1000,
            max_ttl: Duration::ZERO,
            distributions: true,
            max_pending_events: DEFAULT_MAX_PENDING_EVENTS,
        }
    }
}

/// What became of one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Aggregated (or queued, for events).
    Added,
    /// Ignored by configuration (distributions off) or an error item.
    Ignored,
    /// Dropped: the name gives an empty measurement or field.
    EmptyName,
    /// Dropped: too many events pending since the last flush.
    EventOverflow,
}

/// The points of one flush.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flushed {
    /// Metric points (counters, gauges, sets, statistics, service checks), sorted by
    /// measurement and tags.
    pub metrics: Vec<Point>,
    /// Keyevent points (DogStatsD events), in arrival order.
    pub events: Vec<Point>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Set,
    Stats(MetricType),
    Check,
}

impl Kind {
    fn code(self) -> char {
        match self {
            Kind::Counter => 'c',
            Kind::Gauge => 'g',
            Kind::Set => 's',
            Kind::Stats(MetricType::Histogram) => 'h',
            Kind::Stats(MetricType::Distribution) => 'd',
            Kind::Stats(_) => 'm',
            Kind::Check => 'k',
        }
    }
}

#[derive(Clone, Debug)]
enum Acc {
    Float(f64),
    Int(i64),
    Set(HashSet<Box<str>>),
    Stats(Box<RunningStats>),
    Check(CheckStatus),
}

#[derive(Clone, Debug)]
struct Series {
    kind: Kind,
    measurement: String,
    field: String,
    tags: Vec<(String, String)>,
    /// DogStatsD `|T` time in ns: emitted with it, then forgotten.
    time: Option<i64>,
    last_update: i64,
    acc: Acc,
}

/// Running statistics of timings, histograms and distributions, with a bounded uniform
/// sample (reservoir) for percentiles.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningStats {
    n: u64,
    k: f64,
    ex: f64,
    ex2: f64,
    sum: f64,
    lower: f64,
    upper: f64,
    reservoir: Vec<f64>,
    limit: usize,
    seen: u64,
    rng: u64,
}

impl RunningStats {
    /// Empty statistics keeping at most `limit` values for percentiles.
    pub fn new(limit: usize) -> RunningStats {
        RunningStats {
            n: 0,
            k: 0.0,
            ex: 0.0,
            ex2: 0.0,
            sum: 0.0,
            lower: 0.0,
            upper: 0.0,
            reservoir: Vec::new(),
            limit: limit.max(1),
            seen: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Adds `v` as if seen `weight` times (a sample rate of 1/weight).
    pub fn add(&mut self, v: f64, weight: u64) {
        let weight = weight.max(1);
        if self.n == 0 {
            self.k = v;
            self.lower = v;
            self.upper = v;
        }
        let w = weight as f64;
        self.n = self.n.saturating_add(weight);
        let d = v - self.k;
        self.ex += d * w;
        self.ex2 += d * d * w;
        self.sum += v * w;
        if v < self.lower {
            self.lower = v;
        }
        if v > self.upper {
            self.upper = v;
        }
        let copies = usize::try_from(weight)
            .unwrap_or(usize::MAX)
            .min(self.limit);
        for _ in 0..copies {
            self.seen += 1;
            if self.reservoir.len() < self.limit {
                self.reservoir.push(v);
            } else {
                // Algorithm R: keep each value with probability limit/seen.
                let j = self.next_random() % self.seen;
                if let Some(slot) = usize::try_from(j)
                    .ok()
                    .and_then(|j| self.reservoir.get_mut(j))
                {
                    *slot = v;
                }
            }
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: cheap and good enough to pick reservoir slots.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Number of values (weighted).
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Sum of values (weighted).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Mean.
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        self.k + self.ex / self.n as f64
    }

    /// Population standard deviation.
    pub fn stddev(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let n = self.n as f64;
        ((self.ex2 - self.ex * self.ex / n) / n).max(0.0).sqrt()
    }

    /// Smallest value.
    pub fn lower(&self) -> f64 {
        self.lower
    }

    /// Largest value.
    pub fn upper(&self) -> f64 {
        self.upper
    }

    /// The `p`-th percentile (0-100) of the kept values, nearest rank as Datakit/Telegraf:
    /// the value at index `floor(len * p / 100)` of the sorted values, clamped to the range.
    /// Sorts the kept values.
    pub fn percentile(&mut self, p: f64) -> f64 {
        if self.reservoir.is_empty() {
            return 0.0;
        }
        self.reservoir.sort_unstable_by(f64::total_cmp);
        let len = self.reservoir.len();
        let i = len as f64 * p.clamp(0.0, 100.0) / 100.0;
        let idx = if i >= (len - 1) as f64 {
            len - 1
        } else {
            i as usize
        };
        self.reservoir[idx]
    }
}

/// A small tag list on the stack (spilling to the heap past [`INLINE_TAGS`]).
struct TagBuf<'a> {
    inline: [(&'a str, &'a str); INLINE_TAGS],
    len: usize,
    spill: Vec<(&'a str, &'a str)>,
}

impl<'a> TagBuf<'a> {
    fn new() -> TagBuf<'a> {
        TagBuf {
            inline: [("", ""); INLINE_TAGS],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, k: &'a str, v: &'a str) {
        if self.spill.is_empty() && self.len < INLINE_TAGS {
            self.inline[self.len] = (k, v);
            self.len += 1;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline[..self.len]);
            }
            self.spill.push((k, v));
        }
    }

    fn truncate(&mut self, n: usize) {
        if self.spill.is_empty() {
            self.len = self.len.min(n);
        } else {
            self.spill.truncate(n);
        }
    }

    fn as_mut_slice(&mut self) -> &mut [(&'a str, &'a str)] {
        if self.spill.is_empty() {
            &mut self.inline[..self.len]
        } else {
            &mut self.spill
        }
    }
}

/// The per-instance aggregator. Not thread-safe by itself; one thread feeds it.
#[derive(Debug)]
pub struct Aggregator {
    cfg: AggregatorConfig,
    separator: String,
    series: HashMap<Box<str>, Series>,
    events: Vec<Point>,
    key: String,
    percentile_names: Vec<String>,
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new(cfg: AggregatorConfig) -> Aggregator {
        let separator = if cfg.metric_separator.is_empty() {
            "_".to_string()
        } else {
            cfg.metric_separator.clone()
        };
        let percentile_names = cfg
            .percentiles
            .iter()
            .map(|p| format!("{p}_percentile"))
            .collect();
        Aggregator {
            cfg,
            separator,
            series: HashMap::new(),
            events: Vec::new(),
            key: String::with_capacity(256),
            percentile_names,
        }
    }

    /// The settings.
    pub fn config(&self) -> &AggregatorConfig {
        &self.cfg
    }

    /// Number of series held (all types).
    pub fn series_len(&self) -> usize {
        self.series.len()
    }

    /// Number of events waiting for the next flush.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Takes in one parsed item received at `now_ns`.
    pub fn ingest(&mut self, item: &Item<'_>, now_ns: i64) -> Outcome {
        match item {
            Item::Sample(s) => self.add_sample(s, now_ns),
            Item::Event(e) => self.add_event(e, now_ns),
            Item::ServiceCheck(sc) => self.add_check(sc, now_ns),
            Item::Error(..) => Outcome::Ignored,
        }
    }

    fn add_sample(&mut self, s: &Sample<'_>, now_ns: i64) -> Outcome {
        let kind = match s.kind {
            MetricType::Counter => Kind::Counter,
            MetricType::Gauge => Kind::Gauge,
            MetricType::Set => Kind::Set,
            MetricType::Distribution if !self.cfg.distributions => return Outcome::Ignored,
            other => Kind::Stats(other),
        };
        let time = match kind {
            Kind::Counter | Kind::Gauge => s.timestamp.and_then(|t| t.checked_mul(1_000_000_000)),
            _ => None,
        };
        let mut tags = TagBuf::new();
        for (k, v) in crate::parser::bucket_tags(s.bucket_tags) {
            tags.push(k, v);
        }
        tags.push("metric_type", s.kind.tag_value());
        for (k, v) in s.dd_tags.iter() {
            tags.push(k, v);
        }
        let name = self.build_key(kind, time, NameForm::Joined(s.name), &mut tags);
        if let Some(series) = self.series.get_mut(self.key.as_str()) {
            update(series, s, now_ns);
            return Outcome::Added;
        }
        match self.create(kind, time, name, &mut tags, now_ns) {
            Some(series) => {
                update(series, s, now_ns);
                Outcome::Added
            }
            None => Outcome::EmptyName,
        }
    }

    fn add_check(&mut self, sc: &ServiceCheck<'_>, now_ns: i64) -> Outcome {
        let mut tags = TagBuf::new();
        tags.push("check", sc.name);
        tags.push("metric_type", "service_check");
        if let Some(h) = sc.hostname {
            tags.push("host", h);
        }
        for (k, v) in sc.tags.iter() {
            tags.push(k, v);
        }
        let time = sc.timestamp.and_then(|t| t.checked_mul(1_000_000_000));
        let name = self.build_key(
            Kind::Check,
            time,
            NameForm::Fixed(SERVICE_CHECK_MEASUREMENT),
            &mut tags,
        );
        let series = match self.series.get_mut(self.key.as_str()) {
            Some(series) => series,
            None => match self.create(Kind::Check, time, name, &mut tags, now_ns) {
                Some(series) => series,
                None => return Outcome::EmptyName,
            },
        };
        series.last_update = now_ns;
        series.acc = Acc::Check(sc.status);
        Outcome::Added
    }

    fn add_event(&mut self, e: &Event<'_>, now_ns: i64) -> Outcome {
        if self.events.len() >= self.cfg.max_pending_events {
            return Outcome::EventOverflow;
        }
        let status = match e.alert_type {
            crate::parser::AlertType::Success => "ok",
            other => other.as_str(),
        };
        let id = format!("event-{:032x}", rand::random::<u128>());
        let mut tags = TagBuf::new();
        tags.push("df_source", "statsd");
        tags.push("df_status", status);
        tags.push("df_sub_status", status);
        tags.push("df_event_id", &id);
        tags.push("alert_type", e.alert_type.as_str());
        tags.push("priority", e.priority);
        if let Some(k) = e.aggregation_key {
            tags.push("aggregation_key", k);
        }
        if let Some(s) = e.source_type {
            tags.push("source_type_name", s);
        }
        if let Some(h) = e.hostname {
            tags.push("host", h);
        }
        for (k, v) in e.tags.iter() {
            tags.push(k, v);
        }
        let time = e
            .timestamp
            .and_then(|t| t.checked_mul(1_000_000_000))
            .unwrap_or(now_ns);
        let mut p = Point::new(EVENT_MEASUREMENT, time);
        p.tags = self.owned_tags(&mut tags);
        p.fields
            .push(("df_title".into(), Value::S(e.title.to_string())));
        p.fields
            .push(("df_message".into(), Value::S(e.text.replace("\\n", "\n"))));
        self.events.push(p);
        Outcome::Added
    }

    /// Settles line tags: drops those overridden by `[inputs.statsd.tags]`, in `drop_tags`
    /// or removed keys, keeps the last of duplicates, sorts by key. Config tags are not
    /// included (they are the same for every series).
    fn settle_line_tags<'t, 'a>(&self, tags: &'t mut TagBuf<'a>) -> &'t [(&'a str, &'a str)] {
        let slice = tags.as_mut_slice();
        let mut out = 0;
        for i in 0..slice.len() {
            let key = slice[i].0;
            let superseded = slice[i + 1..].iter().any(|t| t.0 == key)
                || self.cfg.tags.iter().any(|(k, _)| k == key);
            if !superseded && !self.is_dropped(key) {
                slice[out] = slice[i];
                out += 1;
            }
        }
        tags.truncate(out);
        let settled = tags.as_mut_slice();
        settled.sort_unstable_by(|a, b| a.0.cmp(b.0));
        settled
    }

    fn is_dropped(&self, key: &str) -> bool {
        self.cfg.drop_tags.iter().any(|d| d == key) || self.cfg.remove_keys.iter().any(|d| d == key)
    }

    /// The final tags of a point: settled line tags plus config tags, sorted by key.
    fn owned_tags(&self, tags: &mut TagBuf<'_>) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .settle_line_tags(tags)
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in &self.cfg.tags {
            if !self.is_dropped(k) {
                all.push((k.clone(), v.clone()));
            }
        }
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Writes the series key into `self.key`; returns the byte range of the name in it.
    fn build_key(
        &mut self,
        kind: Kind,
        time: Option<i64>,
        name: NameForm<'_>,
        tags: &mut TagBuf<'_>,
    ) -> (usize, usize) {
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        key.push(kind.code());
        if let Some(t) = time {
            let _ = write!(key, "{t}");
        }
        key.push('\0');
        let start = key.len();
        match name {
            NameForm::Joined(n) => {
                for (i, part) in n.split('.').enumerate() {
                    if i > 0 {
                        key.push_str(&self.separator);
                    }
                    key.push_str(part);
                }
            }
            NameForm::Fixed(n) => key.push_str(n),
        }
        let end = key.len();
        for (k, v) in self.settle_line_tags(tags) {
            key.push('\0');
            key.push_str(k);
            key.push('\u{1}');
            key.push_str(v);
        }
        self.key = key;
        (start, end)
    }

    /// Creates the series for the key in `self.key` (`None` when its name is unusable).
    fn create(
        &mut self,
        kind: Kind,
        time: Option<i64>,
        (start, end): (usize, usize),
        tags: &mut TagBuf<'_>,
        now_ns: i64,
    ) -> Option<&mut Series> {
        let (measurement, field) = match kind {
            Kind::Check => (SERVICE_CHECK_MEASUREMENT.to_string(), "status".to_string()),
            _ => self.split_name(&self.key[start..end])?,
        };
        let acc = match kind {
            Kind::Counter if self.cfg.set_counter_int => Acc::Int(0),
            Kind::Counter | Kind::Gauge => Acc::Float(0.0),
            Kind::Set => Acc::Set(HashSet::new()),
            Kind::Stats(_) => Acc::Stats(Box::new(RunningStats::new(self.cfg.percentile_limit))),
            Kind::Check => Acc::Check(CheckStatus::Unknown),
        };
        let series = Series {
            kind,
            measurement,
            field,
            tags: self.owned_tags(tags),
            time,
            last_update: now_ns,
            acc,
        };
        Some(
            self.series
                .entry(self.key.as_str().into())
                .or_insert(series),
        )
    }

    /// Measurement and field of a joined name, or `None` when either would be empty.
    fn split_name(&self, name: &str) -> Option<(String, String)> {
        let (m, f) = if self.cfg.metric_mapping.is_empty() {
            name.split_once(self.separator.as_str())
                .unwrap_or((name, name))
        } else {
            let best = self
                .cfg
                .metric_mapping
                .iter()
                .filter(|(from, _)| name.starts_with(from.as_str()))
                .fold(None::<&(String, String)>, |best, m| match best {
                    Some(b) if b.0.len() >= m.0.len() => Some(b),
                    _ => Some(m),
                });
            match best {
                Some((from, to)) => (to.as_str(), &name[from.len()..]),
                None => (name, name),
            }
        };
        if m.is_empty() || f.is_empty() {
            None
        } else {
            Some((m.to_string(), f.to_string()))
        }
    }

    /// Emits every series as points stamped `now_ns` (or their DogStatsD time), then applies
    /// the `delete_*` settings and `max_ttl`.
    pub fn flush(&mut self, now_ns: i64) -> Flushed {
        let mut metrics = Vec::with_capacity(self.series.len());
        for s in self.series.values_mut() {
            let mut p = Point::new(s.measurement.clone(), s.time.unwrap_or(now_ns));
            p.tags = s.tags.clone();
            match &mut s.acc {
                Acc::Float(v) => p.fields.push((s.field.clone(), Value::F(*v))),
                Acc::Int(v) => p.fields.push((s.field.clone(), Value::I(*v))),
                Acc::Set(set) => p.fields.push((
                    s.field.clone(),
                    Value::I(i64::try_from(set.len()).unwrap_or(i64::MAX)),
                )),
                Acc::Check(status) => p.fields.push((s.field.clone(), Value::I(status.code()))),
                Acc::Stats(stats) => {
                    if stats.count() == 0 {
                        continue;
                    }
                    let f = &s.field;
                    p.fields.reserve(6 + self.percentile_names.len());
                    p.fields.push((
                        format!("{f}_count"),
                        Value::I(i64::try_from(stats.count()).unwrap_or(i64::MAX)),
                    ));
                    p.fields.push((format!("{f}_sum"), Value::F(stats.sum())));
                    p.fields.push((format!("{f}_mean"), Value::F(stats.mean())));
                    p.fields
                        .push((format!("{f}_lower"), Value::F(stats.lower())));
                    p.fields
                        .push((format!("{f}_upper"), Value::F(stats.upper())));
                    p.fields
                        .push((format!("{f}_stddev"), Value::F(stats.stddev())));
                    for (pct, name) in self.cfg.percentiles.iter().zip(&self.percentile_names) {
                        p.fields
                            .push((format!("{f}_{name}"), Value::F(stats.percentile(*pct))));
                    }
                }
            }
            metrics.push(p);
        }
        metrics.sort_by(|a, b| {
            (&a.name, &a.tags, a.fields.first().map(|f| &f.0)).cmp(&(
                &b.name,
                &b.tags,
                b.fields.first().map(|f| &f.0),
            ))
        });

        let cfg = &self.cfg;
        let ttl = i64::try_from(cfg.max_ttl.as_nanos()).unwrap_or(i64::MAX);
        self.series.retain(|_, s| {
            let delete = s.time.is_some()
                || match s.kind {
                    Kind::Counter => cfg.delete_counters,
                    Kind::Gauge => cfg.delete_gauges,
                    Kind::Set => cfg.delete_sets,
                    Kind::Stats(_) => cfg.delete_timings,
                    Kind::Check => true,
                };
            let expired = ttl > 0 && now_ns.saturating_sub(s.last_update) > ttl;
            !delete && !expired
        });
        Flushed {
            metrics,
            events: std::mem::take(&mut self.events),
        }
    }
}

/// Adds one sample to its series.
fn update(series: &mut Series, s: &Sample<'_>, now_ns: i64) {
    series.last_update = now_ns;
    let rated = |value: f64| s.rate.map_or(value, |r| value / r);
    match (&mut series.acc, s.value) {
        (Acc::Float(sum), SampleValue::Number { value, .. }) if series.kind == Kind::Counter => {
            *sum += rated(value);
        }
        (Acc::Int(sum), SampleValue::Number { value, .. }) => {
            // Go's int64(float64) truncates toward zero; `as` also saturates.
            *sum = sum.saturating_add(rated(value) as i64);
        }
        (Acc::Float(g), SampleValue::Number { value, signed }) => {
            if signed {
                *g += value;
            } else {
                *g = value;
            }
        }
        (Acc::Set(set), SampleValue::Text(member)) if !set.contains(member) => {
            set.insert(member.into());
        }
        (Acc::Stats(stats), SampleValue::Number { value, .. }) => {
            let weight = s.rate.map_or(1, |r| (1.0 / r).floor().max(1.0) as u64);
            stats.add(value, weight);
        }
        _ => {}
    }
}

#[derive(Clone, Copy)]
enum NameForm<'a> {
    /// A bucket name whose dots are joined with the separator.
    Joined(&'a str),
    /// A name used as is.
    Fixed(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{ParseOptions, parse_datagram};

    const T0: i64 = 1_700_000_000_000_000_000;

    fn feed(agg: &mut Aggregator, data: &str) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        parse_datagram(data.as_bytes(), ParseOptions::default(), &mut |item| {
            if !matches!(item, Item::Error(..)) {
                outcomes.push(agg.ingest(&item, T0));
            }
        });
        outcomes
    }

    fn run(cfg: AggregatorConfig, data: &str) -> Vec<Point> {
        let mut agg = Aggregator::new(cfg);
        feed(&mut agg, data);
        agg.flush(T0 + 10).metrics
    }

    fn tags(p: &Point) -> Vec<(&str, &str)> {
        p.tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn field(p: &Point, key: &str) -> Value {
        p.get_field(key)
            .unwrap_or_else(|| panic!("no field {key} in {p:?}"))
            .clone()
    }

    #[test]
    fn counters_sum_and_divide_by_the_sample_rate() {
        let pts = run(
            AggregatorConfig::default(),
            "users.online:1|c|@0.5|#country:china\nusers.online:3|c|#country:china",
        );
        assert_eq!(pts.len(), 1);
        let p = &pts[0];
        assert_eq!(p.name, "users");
        assert_eq!(p.time, T0 + 10);
        assert_eq!(
            tags(p),
            vec![("country", "china"), ("metric_type", "counter")]
        );
        assert_eq!(p.fields, vec![("online".to_string(), Value::F(5.0))]);
    }

    #[test]
    fn set_counter_int_truncates_each_sample() {
        let cfg = AggregatorConfig {
            set_counter_int: true,
            ..AggregatorConfig::default()
        };
        let pts = run(cfg, "a.b:1.9|c\na.b:2.5|c\na.b:1|c|@0.25");
        assert_eq!(field(&pts[0], "b"), Value::I(7));
    }

    #[test]
    fn gauges_keep_the_last_value_and_apply_signed_deltas() {
        let pts = run(
            AggregatorConfig::default(),
            "mem.used:10|g\nmem.used:+5|g\nmem.used:-2|g\nq.len:-3|g\nx.y:7|g|@0.1",
        );
        let by = |m: &str| pts.iter().find(|p| p.name == m).expect(m);
        assert_eq!(field(by("mem"), "used"), Value::F(13.0));
        assert_eq!(field(by("q"), "len"), Value::F(-3.0));
        assert_eq!(field(by("x"), "y"), Value::F(7.0));
        assert_eq!(
            pts.iter()
                .map(|p| p.get_tag("metric_type").unwrap_or(""))
                .collect::<Vec<_>>(),
            vec!["gauge"; 3]
        );
        let later = run(AggregatorConfig::default(), "mem.used:5|g\nmem.used:3|g");
        assert_eq!(field(&later[0], "used"), Value::F(3.0));
    }

    #[test]
    fn sets_count_distinct_members() {
        let pts = run(
            AggregatorConfig::default(),
            "site.users:alice|s\nsite.users:bob|s\nsite.users:alice|s|@0.1",
        );
        assert_eq!(field(&pts[0], "users"), Value::I(2));
        assert_eq!(pts[0].get_tag("metric_type"), Some("set"));
    }

    #[test]
    fn timings_emit_every_statistic_and_the_configured_percentiles() {
        let cfg = AggregatorConfig {
            percentiles: vec![50.0, 90.0, 99.9, 100.0],
            ..AggregatorConfig::default()
        };
        let pts = run(
            cfg,
            "api.latency:1|ms\napi.latency:2|ms\napi.latency:3|ms\napi.latency:4|ms",
        );
        assert_eq!(pts.len(), 1);
        let p = &pts[0];
        assert_eq!(
            (p.name.as_str(), p.get_tag("metric_type")),
            ("api", Some("timing"))
        );
        let want = vec![
            ("latency_count", Value::I(4)),
            ("latency_sum", Value::F(10.0)),
            ("latency_mean", Value::F(2.5)),
            ("latency_lower", Value::F(1.0)),
            ("latency_upper", Value::F(4.0)),
            ("latency_stddev", Value::F(1.25f64.sqrt())),
            ("latency_50_percentile", Value::F(3.0)),
            ("latency_90_percentile", Value::F(4.0)),
            ("latency_99.9_percentile", Value::F(4.0)),
            ("latency_100_percentile", Value::F(4.0)),
        ];
        let got: Vec<(&str, Value)> = p
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn timing_sample_rate_weights_the_value() {
        let pts = run(
            AggregatorConfig::default(),
            "t.x:10|ms|@0.1\nt.x:20|ms\nt.x:5|ms|@3",
        );
        let p = &pts[0];
        assert_eq!(field(p, "x_count"), Value::I(12));
        assert_eq!(field(p, "x_sum"), Value::F(125.0));
        assert_eq!(field(p, "x_lower"), Value::F(5.0));
        assert_eq!(field(p, "x_upper"), Value::F(20.0));
    }

    #[test]
    fn histograms_and_distributions_are_statistics_with_their_metric_type() {
        let pts = run(
            AggregatorConfig::default(),
            "req.size:100|h\nreq.size:300|h\nreq.dur:7|d\nreq.dur:9|d",
        );
        assert_eq!(pts.len(), 2);
        let h = pts
            .iter()
            .find(|p| p.get_tag("metric_type") == Some("histogram"))
            .expect("h");
        assert_eq!(field(h, "size_mean"), Value::F(200.0));
        assert_eq!(field(h, "size_count"), Value::I(2));
        let d = pts
            .iter()
            .find(|p| p.get_tag("metric_type") == Some("distribution"))
            .expect("d");
        assert_eq!(field(d, "dur_sum"), Value::F(16.0));
    }

    #[test]
    fn distributions_are_ignored_when_disabled() {
        let cfg = AggregatorConfig {
            distributions: false,
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(cfg);
        assert_eq!(feed(&mut agg, "a.b:1|d"), vec![Outcome::Ignored]);
        assert!(agg.flush(T0).metrics.is_empty());
    }

    #[test]
    fn names_split_at_the_first_separator_after_joining_dots() {
        let pts = run(
            AggregatorConfig::default(),
            "jvm.cpu_load.process:1|g\nplain:2|g\n_lead:3|g",
        );
        let got: Vec<(&str, &str)> = pts
            .iter()
            .map(|p| (p.name.as_str(), p.fields[0].0.as_str()))
            .collect();
        assert_eq!(got, vec![("jvm", "cpu_load_process"), ("plain", "plain")]);
    }

    #[test]
    fn a_custom_separator_joins_and_splits() {
        let cfg = AggregatorConfig {
            metric_separator: "__".into(),
            ..AggregatorConfig::default()
        };
        let pts = run(cfg, "jvm.cpu_load.process:1|g");
        assert_eq!(
            (pts[0].name.as_str(), pts[0].fields[0].0.as_str()),
            ("jvm", "cpu_load__process")
        );
    }

    #[test]
    fn metric_mapping_uses_the_longest_matching_prefix() {
        let cfg = AggregatorConfig {
            metric_mapping: vec![
                ("jvm_".into(), "jvm".into()),
                ("jvm_gc_".into(), "gc".into()),
            ],
            ..AggregatorConfig::default()
        };
        let pts = run(
            cfg,
            "jvm.gc.pause:1|g\njvm.threads:2|g\nother.x:3|g\njvm_:4|g",
        );
        let got: Vec<(&str, &str)> = pts
            .iter()
            .map(|p| (p.name.as_str(), p.fields[0].0.as_str()))
            .collect();
        // No match: measurement and field are both the whole name (as Datakit);
        // a name equal to its prefix leaves an empty field and is dropped.
        assert_eq!(
            got,
            vec![("gc", "pause"), ("jvm", "threads"), ("other_x", "other_x")]
        );
    }

    #[test]
    fn empty_measurement_or_field_is_rejected() {
        let mut agg = Aggregator::new(AggregatorConfig::default());
        assert_eq!(
            feed(&mut agg, "_x:1|c\nx.:1|c\nok.y:1|c"),
            vec![Outcome::EmptyName, Outcome::EmptyName, Outcome::Added]
        );
        assert_eq!(agg.series_len(), 1);
    }

    #[test]
    fn tag_precedence_is_bucket_then_type_then_dogstatsd_then_config() {
        let cfg = AggregatorConfig {
            tags: vec![("env".into(), "cfg".into()), ("team".into(), "ops".into())],
            ..AggregatorConfig::default()
        };
        let pts = run(
            cfg,
            "a.b,region=eu,env=bucket,metric_type=x:1|c|#region=us,region:us,env:dd",
        );
        assert_eq!(
            tags(&pts[0]),
            vec![
                ("env", "cfg"),
                ("metric_type", "counter"),
                ("region", "us"),
                ("region=us", "true"),
                ("team", "ops"),
            ]
        );
    }

    #[test]
    fn drop_tags_and_removed_keys_merge_series() {
        let cfg = AggregatorConfig {
            drop_tags: vec!["runtime-id".into(), "team".into()],
            remove_keys: vec!["source_key".into()],
            tags: vec![("team".into(), "x".into())],
            ..AggregatorConfig::default()
        };
        let pts = run(
            cfg,
            "a.b:1|c|#runtime-id:1,source_key:tomcat\na.b:2|c|#runtime-id:2,source_key:jetty",
        );
        assert_eq!(pts.len(), 1);
        assert_eq!(tags(&pts[0]), vec![("metric_type", "counter")]);
        assert_eq!(field(&pts[0], "b"), Value::F(3.0));
    }

    #[test]
    fn series_differ_by_type_and_tags() {
        let pts = run(
            AggregatorConfig::default(),
            "a.b:1|c\na.b:1|g\na.b:1|c|#k:v\na.b:1|c|#k:w\na.b:1|c|#k:v",
        );
        assert_eq!(pts.len(), 4);
        let kv = pts
            .iter()
            .find(|p| p.get_tag("k") == Some("v"))
            .expect("k=v");
        assert_eq!(field(kv, "b"), Value::F(2.0));
    }

    #[test]
    fn delete_settings_decide_what_survives_a_flush() {
        let keep_all = AggregatorConfig {
            delete_counters: false,
            delete_gauges: false,
            delete_sets: false,
            delete_timings: false,
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(keep_all);
        feed(&mut agg, "c.x:1|c\ng.x:5|g\ns.x:a|s\nt.x:2|ms");
        assert_eq!(agg.flush(T0).metrics.len(), 4);
        feed(&mut agg, "c.x:2|c\ns.x:b|s\nt.x:4|ms");
        let second = agg.flush(T0 + 1);
        let by = |m: &str| {
            second
                .metrics
                .iter()
                .find(|p| p.name == m)
                .expect(m)
                .clone()
        };
        assert_eq!(field(&by("c"), "x"), Value::F(3.0));
        assert_eq!(field(&by("g"), "x"), Value::F(5.0));
        assert_eq!(field(&by("s"), "x"), Value::I(2));
        assert_eq!(field(&by("t"), "x_count"), Value::I(2));

        let mut agg = Aggregator::new(AggregatorConfig::default());
        feed(&mut agg, "c.x:1|c\ng.x:5|g\ns.x:a|s\nt.x:2|ms");
        assert_eq!(agg.flush(T0).metrics.len(), 4);
        assert_eq!(agg.series_len(), 0);
        assert!(agg.flush(T0 + 1).metrics.is_empty());

        let only_gauges = AggregatorConfig {
            delete_gauges: false,
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(only_gauges);
        feed(&mut agg, "c.x:1|c\ng.x:5|g");
        agg.flush(T0);
        let again = agg.flush(T0 + 1).metrics;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].name, "g");
    }

    #[test]
    fn max_ttl_forgets_series_not_updated_in_time() {
        let cfg = AggregatorConfig {
            delete_gauges: false,
            max_ttl: Duration::from_secs(30),
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(cfg);
        let at = |agg: &mut Aggregator, data: &str, t: i64| {
            parse_datagram(data.as_bytes(), ParseOptions::default(), &mut |item| {
                agg.ingest(&item, t);
            });
        };
        let s = 1_000_000_000;
        at(&mut agg, "a.x:1|g\nb.x:1|g", T0);
        at(&mut agg, "b.x:2|g", T0 + 20 * s);
        assert_eq!(agg.flush(T0 + 30 * s).metrics.len(), 2);
        // At +31s `a` is 31s old (expired after being emitted); `b` is 11s old.
        assert_eq!(agg.flush(T0 + 31 * s).metrics.len(), 2);
        let left = agg.flush(T0 + 32 * s).metrics;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].name, "b");
        assert!(agg.flush(T0 + 60 * s).metrics.len() == 1);
        assert!(agg.flush(T0 + 61 * s).metrics.is_empty());
    }

    #[test]
    fn dogstatsd_timestamps_give_separate_points_at_that_time() {
        let mut agg = Aggregator::new(AggregatorConfig::default());
        feed(
            &mut agg,
            "a.x:1|c|T1700000000\na.x:2|c|T1700000000\na.x:4|c|T1700000001\na.x:8|c\nb.x:1|ms|T5",
        );
        let pts = agg.flush(T0 + 99).metrics;
        let mut got: Vec<(i64, Value)> = pts
            .iter()
            .filter(|p| p.name == "a")
            .map(|p| (p.time, field(p, "x")))
            .collect();
        got.sort_by_key(|g| g.0);
        assert_eq!(
            got,
            vec![
                (1_700_000_000_000_000_000, Value::F(3.0)),
                (T0 + 99, Value::F(8.0)),
                (1_700_000_001_000_000_000, Value::F(4.0)),
            ]
        );
        // Timings ignore the timestamp.
        let b = pts.iter().find(|p| p.name == "b").expect("b");
        assert_eq!(b.time, T0 + 99);
    }

    #[test]
    fn service_checks_are_metrics_with_the_last_status() {
        let mut agg = Aggregator::new(AggregatorConfig::default());
        feed(
            &mut agg,
            "_sc|db.up|0|#env:prod\n_sc|db.up|2|#env:prod|m:down\n_sc|web|1|h:w1",
        );
        let pts = agg.flush(T0).metrics;
        assert_eq!(pts.len(), 2);
        let db = &pts[0];
        assert_eq!(db.name, "service_check");
        assert_eq!(
            tags(db),
            vec![
                ("check", "db.up"),
                ("env", "prod"),
                ("metric_type", "service_check")
            ]
        );
        assert_eq!(db.fields, vec![("status".to_string(), Value::I(2))]);
        assert_eq!(pts[1].get_tag("host"), Some("w1"));
        assert_eq!(agg.series_len(), 0);
    }

    #[test]
    fn events_become_keyevents_with_guance_fields() {
        let cfg = AggregatorConfig {
            tags: vec![("team".into(), "ops".into())],
            drop_tags: vec!["drop".into()],
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(cfg);
        feed(
            &mut agg,
            "_e{5,9}:Build|ok\\nfine!|d:1700000001|h:ci|k:b1|p:low|s:jenkins|t:success|#env:prod,drop:x",
        );
        feed(&mut agg, "_e{1,1}:a|b");
        let out = agg.flush(T0);
        assert!(out.metrics.is_empty());
        assert_eq!(out.events.len(), 2);
        let e = &out.events[0];
        assert_eq!(e.name, "event");
        assert_eq!(e.time, 1_700_000_001_000_000_000);
        let id = e.get_tag("df_event_id").expect("id");
        assert!(id.starts_with("event-") && id.len() == 38, "{id}");
        let mut t = tags(e);
        t.retain(|(k, _)| *k != "df_event_id");
        assert_eq!(
            t,
            vec![
                ("aggregation_key", "b1"),
                ("alert_type", "success"),
                ("df_source", "statsd"),
                ("df_status", "ok"),
                ("df_sub_status", "ok"),
                ("env", "prod"),
                ("host", "ci"),
                ("priority", "low"),
                ("source_type_name", "jenkins"),
                ("team", "ops"),
            ]
        );
        assert_eq!(
            e.fields,
            vec![
                ("df_title".to_string(), Value::S("Build".into())),
                ("df_message".to_string(), Value::S("ok\nfine!".into())),
            ]
        );
        assert_eq!(out.events[1].time, T0);
        assert_eq!(out.events[1].get_tag("df_status"), Some("info"));
        assert_eq!(agg.pending_events(), 0);
    }

    #[test]
    fn pending_events_are_bounded() {
        let cfg = AggregatorConfig {
            max_pending_events: 2,
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(cfg);
        let got = feed(&mut agg, "_e{1,1}:a|b\n_e{1,1}:a|b\n_e{1,1}:a|b");
        assert_eq!(
            got,
            vec![Outcome::Added, Outcome::Added, Outcome::EventOverflow]
        );
    }

    #[test]
    fn percentiles_are_estimated_from_a_bounded_sample() {
        let cfg = AggregatorConfig {
            percentiles: vec![50.0],
            percentile_limit: 100,
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(cfg);
        let mut data = String::new();
        for i in 0..10_000 {
            data.push_str(&format!("t.x:{i}|ms\n"));
        }
        feed(&mut agg, &data);
        let p = &agg.flush(T0).metrics[0];
        assert_eq!(field(p, "x_count"), Value::I(10_000));
        assert_eq!(field(p, "x_upper"), Value::F(9999.0));
        let Value::F(median) = field(p, "x_50_percentile") else {
            panic!("float");
        };
        assert!((2000.0..8000.0).contains(&median), "{median}");
    }

    #[test]
    fn many_tags_spill_past_the_stack_buffer() {
        let mut line = String::from("a.b:1|c|#");
        for i in 0..100 {
            line.push_str(&format!("k{i:03}:{i},"));
        }
        let pts = run(AggregatorConfig::default(), &line);
        assert_eq!(pts[0].tags.len(), 101);
    }
}
