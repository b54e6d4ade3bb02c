//! Integration tests of delivery through its public API.

#![allow(clippy::unwrap_used)]

mod delivery;
mod local;

use dk_delivery::{Sink, SinkError};
use dk_proto::lineproto::{DecodeOptions, Precision, decode};
use dk_proto::{Category, Point, Value};
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a test waits for something that should happen within milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A sink that records every batch, can fail its first N writes, and reports each success.
pub struct RecordingSink {
    pub name: &'static str,
    pub batches: Mutex<Vec<(Category, Vec<Point>)>>,
    pub fail_first: AtomicU32,
    pub attempts: AtomicU32,
    pub written: mpsc::UnboundedSender<(Category, usize)>,
}

impl RecordingSink {
    pub fn new(
        name: &'static str,
        fail_first: u32,
    ) -> (Self, mpsc::UnboundedReceiver<(Category, usize)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            RecordingSink {
                name,
                batches: Mutex::new(Vec::new()),
                fail_first: AtomicU32::new(fail_first),
                attempts: AtomicU32::new(0),
                written: tx,
            },
            rx,
        )
    }

    /// Every recorded point of a category, in write order.
    pub fn points(&self, category: Category) -> Vec<Point> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| *c == category)
            .flat_map(|(_, b)| b.iter().cloned())
            .collect()
    }
}

impl Sink for RecordingSink {
    fn name(&self) -> &str {
        self.name
    }

    fn write<'a>(
        &'a self,
        category: Category,
        points: &'a [Point],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let left = self.fail_first.load(Ordering::SeqCst);
            if left > 0 {
                self.fail_first.store(left - 1, Ordering::SeqCst);
                return Err(SinkError::Unavailable {
                    sink: self.name.to_string(),
                    message: "test failure".into(),
                });
            }
            self.batches
                .lock()
                .unwrap()
                .push((category, points.to_vec()));
            let _ = self.written.send((category, points.len()));
            Ok(())
        })
    }
}

/// The registry's text exposition.
pub fn exposition(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

/// The value of the sample of `name` whose labels include every `labels` pair (0 if absent).
pub fn metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition(registry)
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Decodes a line-protocol file written by the local sink.
pub fn decode_file(path: &Path) -> Vec<Point> {
    let body = std::fs::read(path).unwrap();
    assert!(
        body.is_empty() || body.ends_with(b"\n"),
        "{} must end with a newline",
        path.display()
    );
    decode(
        &body,
        &DecodeOptions {
            precision: Precision::Ns,
            now_ns: 0,
        },
    )
    .unwrap()
}

/// A point with sorted tags and fields, for comparisons that ignore key order.
pub fn canon(mut p: Point) -> Point {
    p.tags.sort_by(|a, b| a.0.cmp(&b.0));
    p.fields.sort_by(|a, b| a.0.cmp(&b.0));
    p
}

/// A simple metric point: `cpu,cpu=<cpu> usage=<n>,n=<n>i <time>`.
pub fn metric_point(cpu: &str, n: i64) -> Point {
    Point::new("cpu", 1_700_000_000_000_000_000 + n)
        .tag("cpu", cpu)
        .field("usage", Value::F(n as f64 + 0.5))
        .field("n", Value::I(n))
}
