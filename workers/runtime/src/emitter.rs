//! The [`Emitter`]: how an input hands points to the runtime.
//!
//! Inputs call [`Emitter::emit`] with whatever they collected; the runtime's sender task
//! batches by feed, pushes batches to the supervisor and waits for acks.

use dk_proto::rpc::LastError;
use dk_proto::{Category, Point};
use tokio::sync::mpsc;

pub use dk_proto::FeedOpts;

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
}

impl Emitter {
    /// An emitter whose messages go to the returned receiver (the runtime, or a test).
    pub fn channel(capacity: usize) -> (Emitter, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Emitter { tx }, rx)
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
        let feed = Feed {
            category,
            input: input.to_string(),
            opts,
            points,
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
        } else {
            let feed = Feed {
                category,
                input: input.to_string(),
                opts,
                points,
            };
            self.tx.send(Message::AckedFeed(feed, done)).await.is_ok()
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
