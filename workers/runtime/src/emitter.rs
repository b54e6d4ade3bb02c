//! The [`Emitter`]: how an input hands points to the runtime.
//!
//! Inputs call [`Emitter::emit`] with whatever they collected; the runtime's sender task
//! batches by feed, pushes batches to the supervisor and waits for acks.
//!
//! The channel to the sender is bounded twice: in messages, and in the estimated bytes of the
//! points it holds ([`CHANNEL_BYTES`], [`dk_proto::rpc::wire_size`]). A hand-over first takes
//! its share of the byte budget (waiting while the channel holds too much: back-pressure to the
//! input) and gives it back once the sender has taken its points out of the channel. Without
//! the byte bound, a channel of small feeds behind a busy supervisor held tens of thousands of
//! points (256 feeds of 64 socket-log lines: ~10 MiB of a worker's memory).

use std::sync::Arc;

use dk_proto::rpc::{LastError, wire_size};
use dk_proto::{Category, Point};
use tokio::sync::{Semaphore, mpsc};

pub use dk_proto::FeedOpts;

/// Estimated bytes ([`dk_proto::rpc::wire_size`]) of the points waiting in an emitter's channel
/// at most; a single feed larger than this takes the whole budget (it waits until the channel
/// is empty). About 3,200 socket-log lines of 120 bytes: enough that the inputs keep the sender
/// fed while its pushes wait for acks (socket logs end to end 562-580 k lines/s against
/// 546-571 k with 128 KiB, for 2 MiB more worker peak RSS), and ~9 MiB less than the 256 feeds
/// of 64 lines (~16k points) the channel held when it was bounded in messages only.
pub const CHANNEL_BYTES: usize = 1024 * 1024;

/// A feed's share of its channel's byte budget, given back when the feed is dropped (the
/// sender has moved its points out, or the feed was never delivered).
#[derive(Default)]
struct Share {
    budget: Option<Arc<Semaphore>>,
    permits: u32,
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.add_permits(self.permits as usize);
        }
    }
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.permits)
    }
}

/// A clone of a feed holds no share of the budget (the original still does).
impl Clone for Share {
    fn clone(&self) -> Share {
        Share::default()
    }
}

/// The budget is bookkeeping, not content: feeds compare by what they carry.
impl PartialEq for Share {
    fn eq(&self, _: &Share) -> bool {
        true
    }
}

/// One hand-over from an input.
#[derive(Clone, Debug, PartialEq)]
pub struct Feed {
    /// Category of every point.
    pub category: Category,
    /// Feed name (usually the input name).
    pub input: String,
    /// Options.
    pub opts: FeedOpts,
    /// The points.
    pub points: Vec<Point>,
    /// Its share of the channel's byte budget.
    share: Share,
}

/// What flows from inputs to the runtime's sender task.
#[derive(Debug)]
pub enum Message {
    /// Points to deliver.
    Feed(Feed),
    /// An error to report.
    LastError(LastError),
    /// Points whose delivery the input waits for ([`Emitter::emit_acked`]): `done` resolves
    /// `true` once the supervisor accepted every batch holding them (they are durable).
    AckedFeed(Feed, tokio::sync::oneshot::Sender<bool>),
}

/// Cloneable handle inputs use to hand over points.
#[derive(Clone, Debug)]
pub struct Emitter {
    tx: mpsc::Sender<Message>,
    budget: Arc<Semaphore>,
    /// The budget's size in permits (bytes).
    bytes: u32,
}

impl Emitter {
    /// An emitter whose messages go to the returned receiver (the runtime, or a test): at most
    /// `capacity` messages holding at most [`CHANNEL_BYTES`] of points.
    pub fn channel(capacity: usize) -> (Emitter, mpsc::Receiver<Message>) {
        Emitter::channel_with_budget(capacity, CHANNEL_BYTES)
    }

    /// As [`Emitter::channel`] with another byte budget (at least 1, at most `u32::MAX`).
    pub fn channel_with_budget(
        capacity: usize,
        bytes: usize,
    ) -> (Emitter, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(capacity);
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        let budget = Arc::new(Semaphore::new(bytes as usize));
        (Emitter { tx, budget, bytes }, rx)
    }

    /// A feed of `points` holding its share of the byte budget, once the budget has room for
    /// it; `None` when the runtime is gone.
    async fn feed(
        &self,
        category: Category,
        input: &str,
        opts: FeedOpts,
        points: Vec<Point>,
    ) -> Option<Feed> {
        let share = self.share(&points).await?;
        Some(Feed {
            category,
            input: input.to_string(),
            opts,
            points,
            share,
        })
    }

    /// Waits for the byte budget of `points` (all of it for a feed larger than the budget);
    /// `None` when the runtime is gone.
    async fn share(&self, points: &[Point]) -> Option<Share> {
        let size: usize = points.iter().map(wire_size).sum();
        let permits = u32::try_from(size).unwrap_or(u32::MAX).clamp(1, self.bytes);
        tokio::select! {
            biased;
            permit = self.budget.acquire_many(permits) => {
                permit.ok()?.forget();
                Some(Share { budget: Some(self.budget.clone()), permits })
            }
            // The receiver is gone: nobody will ever give the budget back.
            () = self.tx.closed() => None,
        }
    }

    /// Hands points over. Waits while the runtime's buffer is full (back-pressure);
    /// returns `false` if the runtime is gone (the worker is shutting down).
    pub async fn emit(
        &self,
        category: Category,
        input: &str,
        opts: FeedOpts,
        points: Vec<Point>,
    ) -> bool {
        if points.is_empty() {
            return true;
        }
        let Some(feed) = self.feed(category, input, opts, points).await else {
            return false;
        };
        self.tx.send(Message::Feed(feed)).await.is_ok()
    }

    /// Hands points over like [`Emitter::emit`] and returns a future that resolves `true`
    /// once the supervisor has accepted every one of them into its durable queue (`false`
    /// when it rejected a batch holding some, or the worker is stopping before that). The
    /// points are pushed at once, without the sender's linger. A protocol that acknowledges
    /// its clients (lumberjack) sends its ack only after this resolves `true`.
    pub async fn emit_acked(
        &self,
        category: Category,
        input: &str,
        opts: FeedOpts,
        points: Vec<Point>,
    ) -> impl std::future::Future<Output = bool> + Send + 'static {
        let (done, acked) = tokio::sync::oneshot::channel();
        let sent = if points.is_empty() {
            done.send(true).is_ok()
        } else if let Some(feed) = self.feed(category, input, opts, points).await {
            self.tx.send(Message::AckedFeed(feed, done)).await.is_ok()
        } else {
            false
        };
        async move { sent && acked.await.unwrap_or(false) }
    }

    /// Reports an error for `/v1/lasterror` and the supervisor's log.
    pub async fn last_error(
        &self,
        input: &str,
        source: &str,
        category: Category,
        message: impl Into<String>,
    ) {
        let e = LastError {
            input: input.to_string(),
            source: source.to_string(),
            category,
            message: message.into(),
        };
        let _ = self.tx.send(Message::LastError(e)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `n` points of about 1 KiB each on the wire.
    fn points(n: usize) -> Vec<Point> {
        (0..n)
            .map(|i| {
                let mut p = Point::new("m", i as i64);
                p.fields
                    .push(("message".into(), dk_proto::Value::S("x".repeat(1000))));
                p
            })
            .collect()
    }

    #[tokio::test]
    async fn emit_waits_while_the_channel_holds_its_byte_budget_and_goes_on_once_a_feed_is_taken() {
        let one: usize = points(1).iter().map(wire_size).sum();
        // Room for 4 points, in a channel of 100 messages.
        let (emitter, mut rx) = Emitter::channel_with_budget(100, one * 4);
        for _ in 0..4 {
            assert!(
                emitter
                    .emit(Category::Logging, "t", FeedOpts::default(), points(1))
                    .await
            );
        }
        let fifth = emitter.emit(Category::Logging, "t", FeedOpts::default(), points(1));
        tokio::pin!(fifth);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), fifth.as_mut())
                .await
                .is_err(),
            "a fifth point went into a channel whose byte budget was spent"
        );
        let Some(Message::Feed(taken)) = rx.recv().await else {
            panic!("a feed");
        };
        // While the taken feed is alive it keeps its share; once dropped, it gives it back.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), fifth.as_mut())
                .await
                .is_err()
        );
        assert_eq!(taken.points.len(), 1);
        drop(taken);
        let sent = tokio::time::timeout(Duration::from_secs(5), fifth.as_mut()).await;
        assert_eq!(sent, Ok(true));
        let mut got = 0;
        while let Ok(Message::Feed(f)) = rx.try_recv() {
            got += f.points.len();
        }
        assert_eq!(got, 4);
    }

    #[tokio::test]
    async fn a_feed_larger_than_the_budget_goes_alone_once_the_channel_is_empty() {
        let one: usize = points(1).iter().map(wire_size).sum();
        let (emitter, mut rx) = Emitter::channel_with_budget(100, one * 2);
        assert!(
            emitter
                .emit(Category::Logging, "t", FeedOpts::default(), points(1))
                .await
        );
        let big = emitter.emit(Category::Logging, "t", FeedOpts::default(), points(10));
        tokio::pin!(big);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), big.as_mut())
                .await
                .is_err()
        );
        let Some(Message::Feed(first)) = rx.recv().await else {
            panic!("a feed");
        };
        drop(first);
        let sent = tokio::time::timeout(Duration::from_secs(5), big.as_mut()).await;
        assert_eq!(sent, Ok(true));
        let Some(Message::Feed(f)) = rx.recv().await else {
            panic!("a feed");
        };
        assert_eq!(f.points.len(), 10);
    }

    #[tokio::test]
    async fn emit_returns_false_instead_of_waiting_for_budget_when_the_runtime_is_gone() {
        let (emitter, rx) = Emitter::channel_with_budget(100, 1);
        assert!(
            emitter
                .emit(Category::Logging, "t", FeedOpts::default(), points(1))
                .await
        );
        let blocked = emitter.emit(Category::Logging, "t", FeedOpts::default(), points(1));
        tokio::pin!(blocked);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), blocked.as_mut())
                .await
                .is_err()
        );
        drop(rx);
        let out = tokio::time::timeout(Duration::from_secs(5), blocked.as_mut()).await;
        assert_eq!(out, Ok(false));
    }
}
