//! The sender task: batches what inputs emit and pushes it to the supervisor.
//!
//! # Design
//!
//! Feeds are grouped by (category, feed name, options). A group is pushed when it reaches
//! [`MAX_BATCH_POINTS`] or when [`LINGER`] has passed since the last flush. At most
//! [`MAX_IN_FLIGHT`] pushes are outstanding; while that many wait for acks, the task stops
//! reading the emitter channel, so back-pressure reaches the inputs. A batch answered with
//! `Ack::Retry` is pushed again with capped backoff (the `Arc` makes that copy-free). A transport
//! error means the supervisor is gone: the task ends with an error and the worker exits.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dk_proto::rpc::{Ack, Batch, IngestClient};
use dk_proto::{Category, FeedOpts, Point};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

use crate::emitter::Message;
use crate::rpc::context_with_timeout;

/// Points per pushed batch, as Datakit's `max_cache_count`.
pub const MAX_BATCH_POINTS: usize = 1000;
/// Longest time a point waits in the worker before it is pushed.
pub const LINGER: Duration = Duration::from_millis(100);
/// Pushes awaiting an ack at once.
pub const MAX_IN_FLIGHT: usize = 4;
/// Deadline of one push.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters shared with the health check.
#[derive(Debug, Default)]
pub struct SenderStats {
    /// Points acknowledged by the supervisor.
    pub acked: AtomicU64,
    /// Points dropped (rejected by the supervisor).
    pub dropped: AtomicU64,
    /// Batches pushed and not yet acknowledged.
    pub pending: AtomicU64,
    /// Batch sequence numbers.
    pub seq: AtomicU64,
}

/// Why the sender stopped before its input channel closed.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The supervisor connection failed.
    #[error(
        "lost the supervisor connection while pushing a batch: {0}; the worker exits and is restarted"
    )]
    Disconnected(String),
}

type Key = (Category, String, FeedOpts);

/// Runs until every [`crate::Emitter`] is dropped and everything buffered has been acknowledged.
///
/// # Errors
/// [`SenderError::Disconnected`] when the supervisor goes away.
pub async fn run(
    mut rx: mpsc::Receiver<Message>,
    client: IngestClient,
    stats: Arc<SenderStats>,
) -> Result<(), SenderError> {
    let mut groups: HashMap<Key, Vec<Point>> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    let mut ticker = tokio::time::interval(LINGER);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;

    loop {
        let can_read = open && in_flight.len() < MAX_IN_FLIGHT;
        tokio::select! {
            msg = rx.recv(), if can_read => match msg {
                Some(Message::Feed(feed)) => {
                    let key = (feed.category, feed.input, feed.opts);
                    let group = groups.entry(key.clone()).or_default();
                    group.extend(feed.points);
                    if group.len() >= MAX_BATCH_POINTS {
                        let points = std::mem::take(group);
                        in_flight.push(push(client.clone(), make_batch(&stats, key, points), stats.clone()));
                    }
                }
                Some(Message::LastError(e)) => {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let _ = client.last_error(context_with_timeout(PUSH_TIMEOUT), e).await;
                    });
                }
                None => open = false,
            },
            done = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(Err(e)) = done {
                    return Err(e);
                }
            }
            _ = ticker.tick() => {
                for (key, group) in groups.iter_mut() {
                    if !group.is_empty() {
                        let points = std::mem::take(group);
                        in_flight.push(push(client.clone(), make_batch(&stats, key.clone(), points), stats.clone()));
                    }
                }
                groups.retain(|_, g| g.capacity() > 0 || !g.is_empty());
                if !open && in_flight.is_empty() && groups.values().all(Vec::is_empty) {
                    return Ok(());
                }
            }
        }
    }
}

fn make_batch(stats: &SenderStats, key: Key, points: Vec<Point>) -> Arc<Batch> {
    let (category, input, opts) = key;
    Arc::new(Batch {
        seq: stats.seq.fetch_add(1, Ordering::Relaxed),
        category,
        input,
        election: opts.election,
        no_global_tags: opts.no_global_tags,
        points,
    })
}

async fn push(
    client: IngestClient,
    batch: Arc<Batch>,
    stats: Arc<SenderStats>,
) -> Result<(), SenderError> {
    stats.pending.fetch_add(1, Ordering::Relaxed);
    let mut backoff = Duration::from_millis(50);
    let result = loop {
        match client
            .push(context_with_timeout(PUSH_TIMEOUT), batch.clone())
            .await
        {
            Ok(Ack::Accepted { points, dropped }) => {
                stats.acked.fetch_add(u64::from(points), Ordering::Relaxed);
                stats
                    .dropped
                    .fetch_add(u64::from(dropped), Ordering::Relaxed);
                break Ok(());
            }
            Ok(Ack::Retry(reason)) => {
                tracing::debug!(%reason, seq = batch.seq, "Supervisor asked to retry a batch.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Ok(Ack::Rejected(reason)) => {
                tracing::warn!(%reason, seq = batch.seq, points = batch.points.len(), "Supervisor rejected a batch.");
                stats
                    .dropped
                    .fetch_add(batch.points.len() as u64, Ordering::Relaxed);
                break Ok(());
            }
            Err(tarpc::client::RpcError::DeadlineExceeded) => {
                tracing::warn!(seq = batch.seq, "Push timed out; retrying.");
            }
            Err(e) => break Err(SenderError::Disconnected(e.to_string())),
        }
    };
    stats.pending.fetch_sub(1, Ordering::Relaxed);
    result
}
