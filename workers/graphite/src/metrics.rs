//! The graphite input's own counters, labelled by listen address, registered once per worker
//! generation and updated once per read (never per line). Bytes, datagrams, connections,
//! parse errors and kernel drops are in the kit's uniform telemetry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dk_worker::InputContext;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::process::Counts;

type Labels = Vec<(String, String)>;

/// Every counter family of the graphite inputs of one worker generation.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    lines: Family<Labels, Counter>,
    tag_errors: Family<Labels, Counter>,
    unmapped: Family<Labels, Counter>,
    dropped: Family<Labels, Counter>,
    points: Family<Labels, Counter>,
    last_processed: Family<Labels, Gauge<f64, AtomicU64>>,
    registered: Arc<AtomicBool>,
}

impl Metrics {
    /// Registers every family in the worker's registry; only the first call does anything.
    pub fn register(&self, ctx: &InputContext) {
        if self.registered.swap(true, Ordering::SeqCst) {
            return;
        }
        let r = |name: &str, help: &str, f: &Family<Labels, Counter>| {
            ctx.register_metric(name, help, f.clone());
        };
        r(
            "datakit_input_graphite_lines",
            "Graphite lines received (non-blank, malformed included)",
            &self.lines,
        );
        r(
            "datakit_input_graphite_tag_parse_failures",
            "Total count of path tags that are not key=value (skipped, the line is kept)",
            &self.tag_errors,
        );
        r(
            "datakit_input_graphite_mapping_misses",
            "Graphite lines whose name matched no metric_mapper rule",
            &self.unmapped,
        );
        r(
            "datakit_input_graphite_dropped",
            "Graphite lines dropped by an action_type = \"drop\" rule or strict_match",
            &self.dropped,
        );
        r(
            "datakit_input_graphite_points",
            "Points built from Graphite lines and handed to the agent",
            &self.points,
        );
        ctx.register_metric(
            "datakit_input_graphite_last_processed_timestamp_seconds",
            "Unix timestamp of the last processed graphite metric.",
            self.last_processed.clone(),
        );
    }

    /// The counters of one listen address.
    pub fn handles(&self, address: &str) -> Handles {
        let labels = vec![("address".to_string(), address.to_string())];
        Handles {
            lines: self.lines.get_or_create(&labels).clone(),
            tag_errors: self.tag_errors.get_or_create(&labels).clone(),
            unmapped: self.unmapped.get_or_create(&labels).clone(),
            dropped: self.dropped.get_or_create(&labels).clone(),
            points: self.points.get_or_create(&labels).clone(),
            last_processed: self.last_processed.get_or_create(&labels).clone(),
        }
    }
}

/// Cheap clones of one address's counters.
#[derive(Debug, Clone)]
pub struct Handles {
    lines: Counter,
    tag_errors: Counter,
    unmapped: Counter,
    dropped: Counter,
    points: Counter,
    last_processed: Gauge<f64, AtomicU64>,
}

impl Handles {
    /// Adds one read's tally; `now_s` is the time it was processed.
    pub fn add(&self, c: &Counts, now_s: f64) {
        let inc = |counter: &Counter, n: u64| {
            if n > 0 {
                counter.inc_by(n);
            }
        };
        inc(&self.lines, c.lines);
        inc(&self.tag_errors, c.tag_errors);
        inc(&self.unmapped, c.unmapped);
        inc(&self.dropped, c.dropped);
        inc(&self.points, c.points);
        if c.points > 0 {
            self.last_processed.set(now_s);
        }
    }
}
