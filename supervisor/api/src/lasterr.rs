//! The last-error store behind `/v1/lasterror` and the `datakit_last_err` / `datakit_error_total` metrics.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// How many recent errors the store keeps.
pub const LAST_ERRORS_CAPACITY: usize = 128;

/// One recorded error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastErrorEntry {
    /// The input (or component) name.
    pub input: String,
    /// The source; equals `input` when not given.
    pub source: String,
    /// The category, `unknown` when not given.
    pub category: String,
    /// The error text.
    pub message: String,
    /// When it was recorded, unix seconds.
    pub timestamp: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LastErrLabels {
    input: String,
    source: String,
    category: String,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorTotalLabels {
    source: String,
    category: String,
}

/// A bounded ring of recent errors (newest last), mirrored into Prometheus metrics.
pub struct LastErrors {
    ring: Mutex<VecDeque<LastErrorEntry>>,
    last_err: Family<LastErrLabels, Gauge>,
    error_total: Family<ErrorTotalLabels, Counter>,
}

impl std::fmt::Debug for LastErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastErrors")
            .field("recent", &self.recent().len())
            .finish()
    }
}

impl LastErrors {
    /// Creates the store and registers `datakit_last_err` and `datakit_error_total`.
    pub fn new(registry: &mut Registry) -> Arc<Self> {
        let me = LastErrors {
            ring: Mutex::new(VecDeque::with_capacity(LAST_ERRORS_CAPACITY)),
            last_err: Family::default(),
            error_total: Family::default(),
        };
        registry.register(
            "datakit_last_err",
            "Unix time (seconds) of the last error per input, source, category and error text",
            me.last_err.clone(),
        );
        registry.register(
            "datakit_error",
            "Errors recorded per source and category",
            me.error_total.clone(),
        );
        Arc::new(me)
    }

    /// Records an error. An empty `input` or `source` takes the other's value, an empty
    /// `category` becomes `unknown` (as Datakit).
    pub fn record(&self, input: &str, source: &str, category: &str, message: &str) {
        let (input, source) = match (input.is_empty(), source.is_empty()) {
            (true, _) => (source, source),
            (false, true) => (input, input),
            (false, false) => (input, source),
        };
        let category = if category.is_empty() {
            "unknown"
        } else {
            category
        };
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let entry = LastErrorEntry {
            input: input.to_string(),
            source: source.to_string(),
            category: category.to_string(),
            message: message.to_string(),
            timestamp,
        };
        self.error_total
            .get_or_create(&ErrorTotalLabels {
                source: entry.source.clone(),
                category: entry.category.clone(),
            })
            .inc();
        self.last_err
            .get_or_create(&labels_of(&entry))
            .set(timestamp);

        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == LAST_ERRORS_CAPACITY
            && let Some(old) = ring.pop_front()
        {
            let old_labels = labels_of(&old);
            // Keep the gauge series bounded: drop it once no kept entry has its labels.
            if old_labels != labels_of(&entry) && !ring.iter().any(|e| labels_of(e) == old_labels) {
                self.last_err.remove(&old_labels);
            }
        }
        ring.push_back(entry);
    }

    /// The kept errors, oldest first and newest last.
    pub fn recent(&self) -> Vec<LastErrorEntry> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().cloned().collect()
    }
}

fn labels_of(e: &LastErrorEntry) -> LastErrLabels {
    LastErrLabels {
        input: e.input.clone(),
        source: e.source.clone(),
        category: e.category.clone(),
        error: e.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reg: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, reg).unwrap_or_default();
        s
    }

    #[test]
    fn fills_missing_source_input_and_category() {
        let mut reg = Registry::default();
        let le = LastErrors::new(&mut reg);
        le.record("cpu", "", "", "boom");
        le.record("", "mem", "metric", "bang");
        let r = le.recent();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (
                r[0].input.as_str(),
                r[0].source.as_str(),
                r[0].category.as_str()
            ),
            ("cpu", "cpu", "unknown")
        );
        assert_eq!((r[1].input.as_str(), r[1].source.as_str()), ("mem", "mem"));
        let t = text(&reg);
        assert!(
            t.contains(r#"datakit_error_total{source="cpu",category="unknown"} 1"#),
            "{t}"
        );
        assert!(
            t.contains(
                r#"datakit_last_err{input="cpu",source="cpu",category="unknown",error="boom"}"#
            ),
            "{t}"
        );
    }

    #[test]
    fn ring_keeps_the_newest_and_forgets_evicted_gauge_series() {
        let mut reg = Registry::default();
        let le = LastErrors::new(&mut reg);
        for i in 0..LAST_ERRORS_CAPACITY + 5 {
            le.record("x", "x", "metric", &format!("err {i}"));
        }
        let r = le.recent();
        assert_eq!(r.len(), LAST_ERRORS_CAPACITY);
        assert_eq!(r[0].message, "err 5");
        assert_eq!(
            r[LAST_ERRORS_CAPACITY - 1].message,
            format!("err {}", LAST_ERRORS_CAPACITY + 4)
        );
        let t = text(&reg);
        assert!(!t.contains(r#"error="err 4""#));
        assert!(t.contains(r#"error="err 5""#));
        assert!(t.contains(&format!(
            r#"datakit_error_total{{source="x",category="metric"}} {}"#,
            LAST_ERRORS_CAPACITY + 5
        )));
    }
}
