//! Integration tests of delivery through its public API.

#![allow(clippy::unwrap_used)]

mod delivery;
mod migrate;

use dk_delivery::{Sink, SinkError};
pub use dk_proto::testing::{decode_file, exposition, metric, metric_point};
use dk_proto::{Category, Point};
use futures::future::BoxFuture;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

/// How long a test waits for something that should happen within milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A sink that records every batch and reports each success on a channel. It can fail its
/// first N writes, fail every write while `failing` is set, reject its next N writes, and
/// hold writes at a gate (a write past `gate_after` waits until the gate opens).
pub struct RecordingSink {
    pub name: &'static str,
    pub batches: Mutex<Vec<(Category, Vec<Point>)>>,
    pub fail_first: AtomicU32,
    pub failing: AtomicBool,
    pub reject_next: AtomicU32,
    pub attempts: AtomicU32,
    /// Notified (one stored permit) whenever a write starts.
    pub entered: Notify,
    gate_after: u32,
    gate: watch::Sender<bool>,
    written: mpsc::UnboundedSender<(Category, Vec<Point>)>,
}

/// What a [`RecordingSink`] wrote, batch by batch.
pub type Written = mpsc::UnboundedReceiver<(Category, Vec<Point>)>;

impl RecordingSink {
    /// A healthy sink whose first `fail_first` writes fail.
    pub fn new(name: &'static str, fail_first: u32) -> (Self, Written) {
        Self::build(name, fail_first, u32::MAX)
    }

    /// A sink that lets `pass` writes through, then holds every write until [`Self::open_gate`].
    pub fn gated_after(name: &'static str, pass: u32) -> (Self, Written) {
        Self::build(name, 0, pass)
    }

    /// A sink that holds every write until [`Self::open_gate`].
    pub fn gated(name: &'static str) -> (Self, Written) {
        Self::gated_after(name, 0)
    }

    fn build(name: &'static str, fail_first: u32, gate_after: u32) -> (Self, Written) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = RecordingSink {
            name,
            batches: Mutex::new(Vec::new()),
            fail_first: AtomicU32::new(fail_first),
            failing: AtomicBool::new(false),
            reject_next: AtomicU32::new(0),
            attempts: AtomicU32::new(0),
            entered: Notify::new(),
            gate_after,
            gate: watch::Sender::new(false),
            written: tx,
        };
        (sink, rx)
    }

    /// Lets held and later writes through.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
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

    /// The size of every recorded batch of a category, in write order.
    pub fn batch_sizes(&self, category: Category) -> Vec<usize> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| *c == category)
            .map(|(_, b)| b.len())
            .collect()
    }

    fn unavailable(&self) -> SinkError {
        SinkError::Unavailable {
            sink: self.name.to_string(),
            message: "test failure".into(),
        }
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
            let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
            self.entered.notify_one();
            if attempt > self.gate_after {
                let mut gate = self.gate.subscribe();
                let _ = gate.wait_for(|open| *open).await;
            }
            let reject = self.reject_next.load(Ordering::SeqCst);
            if reject > 0 {
                self.reject_next.store(reject - 1, Ordering::SeqCst);
                return Err(SinkError::Rejected {
                    sink: self.name.to_string(),
                    message: "400 bad request".into(),
                });
            }
            if self.failing.load(Ordering::SeqCst) {
                return Err(self.unavailable());
            }
            let left = self.fail_first.load(Ordering::SeqCst);
            if left > 0 {
                self.fail_first.store(left - 1, Ordering::SeqCst);
                return Err(self.unavailable());
            }
            self.batches
                .lock()
                .unwrap()
                .push((category, points.to_vec()));
            let _ = self.written.send((category, points.to_vec()));
            Ok(())
        })
    }
}

/// Receives batches until `n` points of `category` arrived (others are ignored); returns them.
pub async fn wait_points(rx: &mut Written, category: Category, n: usize) -> Vec<Point> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(PATIENCE, rx.recv()).await {
            Ok(Some((c, batch))) if c == category => got.extend(batch),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the sink is gone after {} of {n} points", got.len()),
            Err(_) => panic!("only {} of {n} points arrived in {PATIENCE:?}", got.len()),
        }
    }
    got
}

/// A point's identity in these tests: its `cpu` tag and its time.
pub type Key = (String, i64);

/// The [`Key`] of a point.
pub fn key(p: &Point) -> Key {
    (p.get_tag("cpu").unwrap_or_default().to_string(), p.time)
}

/// A point with sorted tags and fields, for comparisons that ignore key order.
pub fn canon(mut p: Point) -> Point {
    p.tags.sort_by(|a, b| a.0.cmp(&b.0));
    p.fields.sort_by(|a, b| a.0.cmp(&b.0));
    p
}
