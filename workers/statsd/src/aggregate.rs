//! Pure StatsD aggregation: parsed items accumulate per series between flushes; a flush turns them into points.
//!
//! Naming follows Datakit: the bucket's dots are joined with `metric_separator`
//! (`jvm.cpu_load.process` → `jvm_cpu_load_process`), then split into measurement and field at
//! the first separator (`jvm` / `cpu_load_process`), or by the longest matching
//! `metric_mapping` prefix. Tags are the bucket tags, `metric_type`, DogStatsD tags (which win),
//! then `[inputs.statsd.tags]` (which win over all), minus `drop_tags` and the source/host keys.
//! Unlike Datakit, tags are settled before the series is keyed, so series that differ only in a
//! dropped or overridden tag are merged instead of overwriting each other downstream.
//!
//! Memory: a series is one map entry (48 bytes) plus one allocation holding its whole key
//! (type, DogStatsD time, joined name and settled tags, length-prefixed); measurement, field and
//! tags are rebuilt from the key when the series is flushed. At most `max_series` series and
//! distinct set members together are held; samples that would add another are refused
//! ([`Outcome::SeriesCap`]).
//!
//! Flushing does not stop ingestion for long: [`Aggregator::take`] swaps the series out in O(1),
//! a [`Drain`] turns them into points in chunks away from the aggregator, and
//! [`Aggregator::restore`] merges back the series that `delete_*`/`max_ttl` keep, adding what
//! arrived for them meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dk_proto::{Point, Value};

use crate::parser::{CheckStatus, Event, Item, MetricType, Sample, SampleValue, ServiceCheck};

/// Measurement of service check points.
pub const SERVICE_CHECK_MEASUREMENT: &str = "service_check";
/// Measurement of event points (category keyevent).
pub const EVENT_MEASUREMENT: &str = "event";
/// Events kept between two flushes at most; more are dropped and counted.
pub const DEFAULT_MAX_PENDING_EVENTS: usize = 10_000;
/// Series held at most when `max_series` is not set.
pub const DEFAULT_MAX_SERIES: usize = 200_000;
/// Tags handled on the stack per sample; more spill to the heap.
const INLINE_TAGS: usize = 48;
/// Bit of a key's first byte telling that a DogStatsD time (8 bytes) follows.
const TIMED: u8 = 0x80;

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
    /// `max_series` (not in Datakit): series and distinct set members held at most; samples
    /// that would add one past it are dropped.
    pub max_series: usize,
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
            max_series: DEFAULT_MAX_SERIES,
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
    /// Dropped: the sample would start a new series (or add a set member) and `max_series`
    /// are held.
    SeriesCap,
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
    fn code(self) -> u8 {
        match self {
            Kind::Counter => b'c',
            Kind::Gauge => b'g',
            Kind::Set => b's',
            Kind::Stats(MetricType::Histogram) => b'h',
            Kind::Stats(MetricType::Distribution) => b'd',
            Kind::Stats(_) => b'm',
            Kind::Check => b'k',
        }
    }
}

/// What a series accumulates (16 bytes: sets and statistics live behind a pointer).
#[derive(Clone, Debug)]
// A set is rare and an inline `HashSet` (48 bytes) would triple every series' size.
#[allow(clippy::box_collection)]
enum Acc {
    Float(f64),
    Int(i64),
    Set(Box<HashSet<Box<str>>>),
    Stats(Box<RunningStats>),
    Check(CheckStatus),
}

/// One series' state; its names and tags are in its key.
#[derive(Clone, Debug)]
struct Series {
    acc: Acc,
    last_update: i64,
    kind: Kind,
    /// A gauge that was set to an absolute value (not only moved by `+n`/`-n`) since it was
    /// created: when merged with an older state, its value wins.
    gauge_set: bool,
}

impl Series {
    /// Folds `old` (the same series before a flush took it) into this one, which took the
    /// samples that arrived while the flush ran. Returns the set members it gained.
    fn absorb(&mut self, old: Series) -> usize {
        let mut gained = 0;
        self.last_update = self.last_update.max(old.last_update);
        match (&mut self.acc, old.acc) {
            // Counters add up; a gauge adds the older value unless it was set since.
            (Acc::Float(v), Acc::Float(o)) if self.kind == Kind::Counter || !self.gauge_set => {
                *v += o;
            }
            (Acc::Int(v), Acc::Int(o)) => *v = v.saturating_add(o),
            (Acc::Set(s), Acc::Set(o)) => {
                let before = s.len();
                s.extend(*o);
                gained = s.len() - before;
            }
            (Acc::Stats(s), Acc::Stats(o)) => s.merge(&o),
            // A check keeps its latest status.
            _ => {}
        }
        self.gauge_set |= old.gauge_set;
        gained
    }
}

/// A series key: one allocation (see [`KeyView`] for the layout).
type Key = Box<[u8]>;

/// Appends a length as LEB128.
fn put_len(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_len(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

fn take_len(buf: &mut &[u8]) -> Option<usize> {
    let mut n = 0usize;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        n |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn take_str<'a>(buf: &mut &'a [u8]) -> Option<&'a str> {
    let len = take_len(buf)?;
    if buf.len() < len {
        return None;
    }
    let (s, rest) = buf.split_at(len);
    *buf = rest;
    std::str::from_utf8(s).ok()
}

/// A decoded series key.
///
/// Layout: one byte of type code (with [`TIMED`] set when 8 bytes of little-endian DogStatsD
/// time follow), then the length-prefixed joined name, then length-prefixed key and value of
/// each settled line tag, sorted by key. Lengths are LEB128, so any bytes in names and tags
/// are unambiguous.
struct KeyView<'a> {
    time: Option<i64>,
    name: &'a str,
    tags: &'a [u8],
}

impl KeyView<'_> {
    fn parse(key: &[u8]) -> Option<KeyView<'_>> {
        let (&code, mut rest) = key.split_first()?;
        let time = if code & TIMED != 0 {
            let (t, after) = rest.split_first_chunk::<8>()?;
            rest = after;
            Some(i64::from_le_bytes(*t))
        } else {
            None
        };
        let name = take_str(&mut rest)?;
        Some(KeyView {
            time,
            name,
            tags: rest,
        })
    }

    fn tags(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut rest = self.tags;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            Some((take_str(&mut rest)?, take_str(&mut rest)?))
        })
    }
}

/// Whether a key carries a DogStatsD time (such series are emitted once, then forgotten).
fn is_timed(key: &[u8]) -> bool {
    key.first().is_some_and(|c| c & TIMED != 0)
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

    /// Adds everything `other` saw, as if its values had been added here. The kept sample
    /// stays bounded: past the limit, random values are let go.
    pub fn merge(&mut self, other: &RunningStats) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            let (limit, rng) = (self.limit, self.rng);
            *self = other.clone();
            self.limit = limit;
            self.rng = rng;
        } else {
            // `other`'s sums are relative to its own shift `k`; move them to ours.
            let d = other.k - self.k;
            let n = other.n as f64;
            self.ex += other.ex + n * d;
            self.ex2 += other.ex2 + 2.0 * d * other.ex + n * d * d;
            self.n = self.n.saturating_add(other.n);
            self.sum += other.sum;
            self.lower = self.lower.min(other.lower);
            self.upper = self.upper.max(other.upper);
            self.seen = self.seen.saturating_add(other.seen);
            self.reservoir.extend_from_slice(&other.reservoir);
        }
        while self.reservoir.len() > self.limit {
            let len = self.reservoir.len() as u64;
            let j = self.next_random() % len;
            self.reservoir.swap_remove(usize::try_from(j).unwrap_or(0));
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

/// The settings as the aggregator and its drains use them.
#[derive(Debug)]
struct Rules {
    cfg: AggregatorConfig,
    separator: String,
    percentile_names: Vec<String>,
    /// `[inputs.statsd.tags]` that are not dropped, sorted by key.
    config_tags: Vec<(String, String)>,
    /// Whether any series type outlives a flush (some `delete_*` is false).
    keeps_any: bool,
}

impl Rules {
    fn new(cfg: AggregatorConfig) -> Rules {
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
        let keeps_any =
            !(cfg.delete_counters && cfg.delete_gauges && cfg.delete_sets && cfg.delete_timings);
        let mut rules = Rules {
            separator,
            percentile_names,
            config_tags: Vec::new(),
            keeps_any,
            cfg,
        };
        let mut config_tags: Vec<(String, String)> = rules
            .cfg
            .tags
            .iter()
            .filter(|(k, _)| !rules.is_dropped(k))
            .cloned()
            .collect();
        config_tags.sort_by(|a, b| a.0.cmp(&b.0));
        // The last of same-named config tags wins.
        config_tags.reverse();
        config_tags.dedup_by(|a, b| a.0 == b.0);
        config_tags.reverse();
        rules.config_tags = config_tags;
        rules
    }

    fn is_dropped(&self, key: &str) -> bool {
        self.cfg.drop_tags.iter().any(|d| d == key) || self.cfg.remove_keys.iter().any(|d| d == key)
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

    /// The final tags of a point: settled line tags (sorted) plus config tags, sorted by key.
    fn point_tags<'a>(
        &self,
        line: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::with_capacity(8 + self.config_tags.len());
        let mut conf = self.config_tags.iter().peekable();
        for (k, v) in line {
            while let Some((ck, cv)) = conf.next_if(|(ck, _)| ck.as_str() < k) {
                out.push((ck.clone(), cv.clone()));
            }
            out.push((k.to_string(), v.to_string()));
        }
        out.extend(conf.cloned());
        out
    }

    /// Measurement and field of a joined name, or `None` when either would be empty.
    fn split_name<'a>(&'a self, name: &'a str) -> Option<(&'a str, &'a str)> {
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
            Some((m, f))
        }
    }

    /// The point of one series at a flush at `now_ns` (`None` for statistics without values).
    fn point(&self, key: &[u8], s: &mut Series, now_ns: i64) -> Option<Point> {
        let view = KeyView::parse(key)?;
        let (measurement, field) = match s.kind {
            Kind::Check => (SERVICE_CHECK_MEASUREMENT, "status"),
            _ => self.split_name(view.name)?,
        };
        let mut p = Point::new(measurement, view.time.unwrap_or(now_ns));
        match &mut s.acc {
            Acc::Float(v) => p.fields.push((field.to_string(), Value::F(*v))),
            Acc::Int(v) => p.fields.push((field.to_string(), Value::I(*v))),
            Acc::Set(set) => p.fields.push((
                field.to_string(),
                Value::I(i64::try_from(set.len()).unwrap_or(i64::MAX)),
            )),
            Acc::Check(status) => p.fields.push((field.to_string(), Value::I(status.code()))),
            Acc::Stats(stats) => {
                if stats.count() == 0 {
                    return None;
                }
                let f = field;
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
        p.tags = self.point_tags(view.tags());
        Some(p)
    }

    /// Whether a series outlives the flush at `now_ns` (`delete_*`, `max_ttl`).
    fn keeps(&self, key: &[u8], s: &Series, now_ns: i64) -> bool {
        let cfg = &self.cfg;
        let delete = is_timed(key)
            || match s.kind {
                Kind::Counter => cfg.delete_counters,
                Kind::Gauge => cfg.delete_gauges,
                Kind::Set => cfg.delete_sets,
                Kind::Stats(_) => cfg.delete_timings,
                Kind::Check => true,
            };
        let ttl = i64::try_from(cfg.max_ttl.as_nanos()).unwrap_or(i64::MAX);
        let expired = ttl > 0 && now_ns.saturating_sub(s.last_update) > ttl;
        !delete && !expired
    }
}

/// The per-instance aggregator. Not thread-safe by itself; one thread feeds it.
#[derive(Debug)]
pub struct Aggregator {
    rules: Arc<Rules>,
    series: HashMap<Key, Series>,
    events: Vec<Point>,
    /// Scratch space for the key of the sample at hand.
    key: Vec<u8>,
    /// Distinct set members held (each counts against `max_series` like a series).
    members: usize,
    /// Series and set members a flush in progress took and may give back (counted against
    /// `max_series`).
    held: usize,
}

/// A flush in progress: the series taken from an [`Aggregator`], turned into points chunk by
/// chunk ([`Drain::next_chunk`]) without holding the aggregator, then the survivors handed
/// back ([`Drain::finish`], [`Aggregator::restore`]).
#[derive(Debug)]
pub struct Drain {
    rules: Arc<Rules>,
    series: std::collections::hash_map::IntoIter<Key, Series>,
    now_ns: i64,
    kept: Vec<(Key, Series)>,
    events: Vec<Point>,
}

/// The series a flush keeps, to give back with [`Aggregator::restore`].
#[derive(Debug, Default)]
pub struct Kept(Vec<(Key, Series)>);

impl Kept {
    /// Number of series kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no series is kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drain {
    /// Series not yet turned into points.
    pub fn remaining(&self) -> usize {
        self.series.len()
    }

    /// Appends the points of up to `max` more series to `out`; `false` once every series
    /// has been seen.
    pub fn next_chunk(&mut self, max: usize, out: &mut Vec<Point>) -> bool {
        let mut added = 0;
        while added < max {
            let Some((key, mut s)) = self.series.next() else {
                return false;
            };
            if let Some(p) = self.rules.point(&key, &mut s, self.now_ns) {
                out.push(p);
                added += 1;
            }
            if self.rules.keeps(&key, &s, self.now_ns) {
                self.kept.push((key, s));
            }
        }
        self.series.len() > 0
    }

    /// The events pending at the flush, in arrival order.
    pub fn take_events(&mut self) -> Vec<Point> {
        std::mem::take(&mut self.events)
    }

    /// The series to give back (the rest, if the drain was not run to its end, are dropped).
    pub fn finish(self) -> Kept {
        Kept(self.kept)
    }
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new(cfg: AggregatorConfig) -> Aggregator {
        Aggregator {
            rules: Arc::new(Rules::new(cfg)),
            series: HashMap::new(),
            events: Vec::new(),
            key: Vec::with_capacity(256),
            members: 0,
            held: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &AggregatorConfig {
        &self.rules.cfg
    }

    /// Number of series held (all types), not counting those a flush in progress took.
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
            MetricType::Distribution if !self.rules.cfg.distributions => return Outcome::Ignored,
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
        let room = self.used() < self.rules.cfg.max_series;
        let series = match self.series.get_mut(self.key.as_slice()) {
            Some(series) => series,
            None => match self.create(kind, name, now_ns) {
                Ok(series) => series,
                Err(outcome) => return outcome,
            },
        };
        match update(series, s, now_ns, room) {
            Some(true) => {
                self.members += 1;
                Outcome::Added
            }
            Some(false) => Outcome::Added,
            None => Outcome::SeriesCap,
        }
    }

    /// Series and set members held or held back by a flush, as counted against `max_series`.
    fn used(&self) -> usize {
        self.series.len() + self.members + self.held
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
        let series = match self.series.get_mut(self.key.as_slice()) {
            Some(series) => series,
            None => match self.create(Kind::Check, name, now_ns) {
                Ok(series) => series,
                Err(outcome) => return outcome,
            },
        };
        series.last_update = now_ns;
        series.acc = Acc::Check(sc.status);
        Outcome::Added
    }

    fn add_event(&mut self, e: &Event<'_>, now_ns: i64) -> Outcome {
        if self.events.len() >= self.rules.cfg.max_pending_events {
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
        let rules = &self.rules;
        p.tags = rules.point_tags(rules.settle_line_tags(&mut tags).iter().copied());
        p.fields
            .push(("df_title".into(), Value::S(e.title.to_string())));
        p.fields
            .push(("df_message".into(), Value::S(e.text.replace("\\n", "\n"))));
        self.events.push(p);
        Outcome::Added
    }

    /// Writes the series key into `self.key`; returns the byte range of the name in it.
    fn build_key(
        &mut self,
        kind: Kind,
        time: Option<i64>,
        name: NameForm<'_>,
        tags: &mut TagBuf<'_>,
    ) -> (usize, usize) {
        let key = &mut self.key;
        key.clear();
        match time {
            Some(t) => {
                key.push(kind.code() | TIMED);
                key.extend_from_slice(&t.to_le_bytes());
            }
            None => key.push(kind.code()),
        }
        let (start, end) = match name {
            NameForm::Joined(n) => {
                let sep = self.rules.separator.as_str();
                let dots = n.bytes().filter(|b| *b == b'.').count();
                let len = n.len() - dots + dots * sep.len();
                put_len(key, len);
                let start = key.len();
                for (i, part) in n.split('.').enumerate() {
                    if i > 0 {
                        key.extend_from_slice(sep.as_bytes());
                    }
                    key.extend_from_slice(part.as_bytes());
                }
                (start, key.len())
            }
            NameForm::Fixed(n) => {
                put_len(key, n.len());
                let start = key.len();
                key.extend_from_slice(n.as_bytes());
                (start, key.len())
            }
        };
        for (k, v) in self.rules.settle_line_tags(tags) {
            put_str(key, k);
            put_str(key, v);
        }
        (start, end)
    }

    /// Creates the series for the key in `self.key`; `Err` with the reason when its name is
    /// unusable or `max_series` are held.
    fn create(
        &mut self,
        kind: Kind,
        (start, end): (usize, usize),
        now_ns: i64,
    ) -> Result<&mut Series, Outcome> {
        if kind != Kind::Check {
            let name =
                std::str::from_utf8(&self.key[start..end]).map_err(|_| Outcome::EmptyName)?;
            if self.rules.split_name(name).is_none() {
                return Err(Outcome::EmptyName);
            }
        }
        // A new set needs room for itself and its first member.
        let need = if kind == Kind::Set { 2 } else { 1 };
        if self.used() + need > self.rules.cfg.max_series {
            return Err(Outcome::SeriesCap);
        }
        let acc = match kind {
            Kind::Counter if self.rules.cfg.set_counter_int => Acc::Int(0),
            Kind::Counter | Kind::Gauge => Acc::Float(0.0),
            Kind::Set => Acc::Set(Box::default()),
            Kind::Stats(_) => {
                Acc::Stats(Box::new(RunningStats::new(self.rules.cfg.percentile_limit)))
            }
            Kind::Check => Acc::Check(CheckStatus::Unknown),
        };
        let series = Series {
            acc,
            last_update: now_ns,
            kind,
            gauge_set: false,
        };
        Ok(self
            .series
            .entry(Key::from(self.key.as_slice()))
            .or_insert(series))
    }

    /// Starts a flush at `now_ns`: takes every series and pending event (O(1)); new samples
    /// go to fresh series meanwhile. Run the [`Drain`], then [`Aggregator::restore`] what it
    /// kept. Until then the taken series still count against `max_series` when some may
    /// come back.
    pub fn take(&mut self, now_ns: i64) -> Drain {
        let series = std::mem::take(&mut self.series);
        self.held = if self.rules.keeps_any {
            series.len() + self.members
        } else {
            0
        };
        self.members = 0;
        Drain {
            rules: self.rules.clone(),
            series: series.into_iter(),
            now_ns,
            kept: Vec::new(),
            events: std::mem::take(&mut self.events),
        }
    }

    /// Gives back the series a flush kept, merged with what arrived for them since
    /// [`Aggregator::take`].
    pub fn restore(&mut self, kept: Kept) {
        self.held = 0;
        self.series.reserve(kept.0.len());
        for (key, old) in kept.0 {
            match self.series.get_mut(&key) {
                Some(live) => self.members += live.absorb(old),
                None => {
                    if let Acc::Set(set) = &old.acc {
                        self.members += set.len();
                    }
                    self.series.insert(key, old);
                }
            }
        }
    }

    /// Emits every series as points stamped `now_ns` (or their DogStatsD time), then applies
    /// the `delete_*` settings and `max_ttl`. All at once and sorted; the input streams
    /// flushes with [`Aggregator::take`] instead.
    pub fn flush(&mut self, now_ns: i64) -> Flushed {
        let mut drain = self.take(now_ns);
        let mut metrics = Vec::with_capacity(drain.remaining());
        while drain.next_chunk(usize::MAX, &mut metrics) {}
        let events = drain.take_events();
        self.restore(drain.finish());
        metrics.sort_by(|a, b| {
            (&a.name, &a.tags, a.fields.first().map(|f| &f.0)).cmp(&(
                &b.name,
                &b.tags,
                b.fields.first().map(|f| &f.0),
            ))
        });
        Flushed { metrics, events }
    }
}

/// Adds one sample to its series: `Some(true)` when it added a set member, `None` when it
/// would have and there is no `room` for one.
fn update(series: &mut Series, s: &Sample<'_>, now_ns: i64, room: bool) -> Option<bool> {
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
                series.gauge_set = true;
            }
        }
        (Acc::Set(set), SampleValue::Text(member)) if !set.contains(member) => {
            if !room {
                return None;
            }
            set.insert(member.into());
            return Some(true);
        }
        (Acc::Stats(stats), SampleValue::Number { value, .. }) => {
            let weight = s.rate.map_or(1, |r| (1.0 / r).floor().max(1.0) as u64);
            stats.add(value, weight);
        }
        _ => {}
    }
    Some(false)
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
    fn new_series_past_max_series_are_refused_while_held_ones_still_update() {
        let cfg = AggregatorConfig {
            max_series: 2,
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(cfg);
        assert_eq!(
            feed(
                &mut agg,
                "a.x:1|c\nb.x:1|g\nc.x:1|c\na.x:2|c\nb.x:7|g\n_sc|chk|0"
            ),
            vec![
                Outcome::Added,
                Outcome::Added,
                Outcome::SeriesCap,
                Outcome::Added,
                Outcome::Added,
                Outcome::SeriesCap,
            ]
        );
        assert_eq!(agg.series_len(), 2);
        let pts = agg.flush(T0).metrics;
        assert_eq!(pts.len(), 2);
        assert_eq!(field(&pts[0], "x"), Value::F(3.0));
        assert_eq!(field(&pts[1], "x"), Value::F(7.0));
        // The flush emptied the aggregator: new series are welcome again.
        assert_eq!(feed(&mut agg, "c.x:1|c"), vec![Outcome::Added]);
    }

    #[test]
    fn set_members_count_against_max_series_like_series() {
        let cfg = AggregatorConfig {
            max_series: 4,
            delete_sets: false,
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(cfg);
        // The set and its first two members take three of four; a counter takes the last.
        assert_eq!(
            feed(
                &mut agg,
                "u.ids:a|s\nu.ids:b|s\nc.x:1|c\nu.ids:c|s\nu.ids:a|s\nd.x:1|c"
            ),
            vec![
                Outcome::Added,
                Outcome::Added,
                Outcome::Added,
                Outcome::SeriesCap,
                Outcome::Added,
                Outcome::SeriesCap,
            ]
        );
        let pts = agg.flush(T0).metrics;
        let set = pts.iter().find(|p| p.name == "u").expect("set");
        assert_eq!(field(set, "ids"), Value::I(2));
        // The counter is gone, the kept set still holds its two members: one unit is free.
        assert_eq!(
            feed(&mut agg, "u.ids:c|s\nu.ids:d|s"),
            vec![Outcome::Added, Outcome::SeriesCap]
        );
        assert_eq!(field(&agg.flush(T0 + 1).metrics[0], "ids"), Value::I(3));
    }

    #[test]
    fn series_a_flush_may_give_back_count_against_the_cap_until_it_does() {
        let cfg = AggregatorConfig {
            max_series: 3,
            delete_gauges: false,
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(cfg);
        feed(&mut agg, "g.a:1|g\ng.b:1|g");
        let mut drain = agg.take(T0);
        assert_eq!(agg.series_len(), 0);
        // Two series are out with the flush and may come back: room for one more.
        assert_eq!(
            feed(&mut agg, "n.a:1|c\nn.b:1|c"),
            vec![Outcome::Added, Outcome::SeriesCap]
        );
        let mut pts = Vec::new();
        while drain.next_chunk(1, &mut pts) {}
        assert_eq!(pts.len(), 2);
        agg.restore(drain.finish());
        assert_eq!(agg.series_len(), 3);

        // Without kept types nothing comes back, so the taken series leave room at once.
        let mut agg = Aggregator::new(AggregatorConfig {
            max_series: 2,
            ..AggregatorConfig::default()
        });
        feed(&mut agg, "c.a:1|c\nc.b:1|c");
        let drain = agg.take(T0);
        assert_eq!(
            feed(&mut agg, "n.a:1|c\nn.b:1|c"),
            vec![Outcome::Added, Outcome::Added]
        );
        assert!(drain.finish().is_empty());
    }

    #[test]
    fn kept_series_absorb_what_arrived_while_their_flush_ran() {
        let keep_all = AggregatorConfig {
            delete_counters: false,
            delete_gauges: false,
            delete_sets: false,
            delete_timings: false,
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(keep_all);
        feed(
            &mut agg,
            "c.x:5|c\ng.abs:10|g\ng.rel:10|g\ns.x:a|s\ns.x:b|s\nt.x:1|ms\nt.x:3|ms\n_sc|chk|0",
        );
        let mut drain = agg.take(T0);
        let mut first = Vec::new();
        while drain.next_chunk(2, &mut first) {}
        // Checks are never kept; the other five are.
        assert_eq!(first.len(), 6);
        // Meanwhile, for the same series:
        feed(
            &mut agg,
            "c.x:2|c\ng.abs:4|g\ng.rel:+1|g\ns.x:b|s\ns.x:c|s\nt.x:5|ms\nt.x:7|ms",
        );
        agg.restore(drain.finish());
        assert_eq!(agg.series_len(), 5);
        let pts = agg.flush(T0 + 1).metrics;
        let by = |m: &str, f: &str| {
            pts.iter()
                .find(|p| p.name == m && p.get_field(f).is_some())
                .unwrap_or_else(|| panic!("{m}.{f} in {pts:?}"))
                .clone()
        };
        assert_eq!(field(&by("c", "x"), "x"), Value::F(7.0));
        assert_eq!(field(&by("g", "abs"), "abs"), Value::F(4.0));
        assert_eq!(field(&by("g", "rel"), "rel"), Value::F(11.0));
        assert_eq!(field(&by("s", "x"), "x"), Value::I(3));
        let t = by("t", "x_count");
        assert_eq!(field(&t, "x_count"), Value::I(4));
        assert_eq!(field(&t, "x_sum"), Value::F(16.0));
        assert_eq!(field(&t, "x_mean"), Value::F(4.0));
        assert_eq!(field(&t, "x_lower"), Value::F(1.0));
        assert_eq!(field(&t, "x_upper"), Value::F(7.0));
        assert_eq!(field(&t, "x_stddev"), Value::F(5.0f64.sqrt()));
    }

    #[test]
    fn merged_statistics_equal_those_of_every_value_and_keep_a_bounded_sample() {
        let mut all = RunningStats::new(8);
        let mut a = RunningStats::new(8);
        let mut b = RunningStats::new(8);
        for i in 0..20 {
            let v = f64::from(i * i % 17) + 0.5;
            all.add(v, 2);
            if i < 7 { a.add(v, 2) } else { b.add(v, 2) }
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        assert_eq!(a.sum(), all.sum());
        assert_eq!((a.lower(), a.upper()), (all.lower(), all.upper()));
        assert!((a.mean() - all.mean()).abs() < 1e-9);
        assert!((a.stddev() - all.stddev()).abs() < 1e-9);
        assert_eq!(a.reservoir.len(), 8);
        let mut empty = RunningStats::new(8);
        empty.merge(&all);
        assert_eq!((empty.count(), empty.sum()), (all.count(), all.sum()));
    }

    #[test]
    fn names_and_tags_holding_separator_bytes_stay_distinct_series() {
        // With separator characters as key delimiters these two would share one key.
        let mut agg = Aggregator::new(AggregatorConfig::default());
        feed(&mut agg, "a.b:1|c|#k:v\u{0}l\u{1}w\na.b:2|c|#k:v,l:w");
        let pts = agg.flush(T0).metrics;
        assert_eq!(pts.len(), 2, "{pts:?}");
        let one = pts
            .iter()
            .find(|p| p.get_tag("l") == Some("w"))
            .expect("two tags");
        assert_eq!(field(one, "b"), Value::F(2.0));
        let other = pts
            .iter()
            .find(|p| p.get_tag("l").is_none())
            .expect("one tag");
        assert_eq!(other.get_tag("k"), Some("v\u{0}l\u{1}w"));
    }

    #[test]
    fn a_drain_hands_out_chunks_no_larger_than_asked_and_loses_nothing() {
        let mut agg = Aggregator::new(AggregatorConfig::default());
        let mut data = String::new();
        for i in 0..25 {
            data.push_str(&format!("m.f{i}:{i}|c\n"));
        }
        feed(&mut agg, &data);
        let mut drain = agg.take(T0);
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        loop {
            let mut chunk = Vec::new();
            let more = drain.next_chunk(10, &mut chunk);
            sizes.push(chunk.len());
            all.extend(chunk);
            if !more {
                break;
            }
        }
        assert_eq!(sizes, vec![10, 10, 5]);
        let mut got: Vec<f64> = all
            .iter()
            .map(|p| match p.fields[0].1 {
                Value::F(v) => v,
                _ => f64::NAN,
            })
            .collect();
        got.sort_by(f64::total_cmp);
        assert_eq!(got, (0..25).map(f64::from).collect::<Vec<_>>());
    }

    #[test]
    fn config_tags_merge_into_the_sorted_line_tags_of_series_and_events() {
        let cfg = AggregatorConfig {
            tags: vec![("zz".into(), "1".into()), ("aa".into(), "2".into())],
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(cfg);
        feed(&mut agg, "m.f:1|c|#mm:x");
        let pts = agg.flush(T0).metrics;
        assert_eq!(
            tags(&pts[0]),
            vec![
                ("aa", "2"),
                ("metric_type", "counter"),
                ("mm", "x"),
                ("zz", "1")
            ]
        );
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
