//! [`batcher`]: Datakit's flush rules for inputs that gather points from many readers — hand
//! over exactly `buffer_size` points at a time, the remainder every `interval`, and everything
//! once the readers are gone.

use std::time::Duration;

use dk_proto::{Category, Point};
use tokio::sync::mpsc;

use crate::{Emitter, FeedOpts};

/// Where a batcher hands its points.
#[derive(Clone, Debug)]
pub struct Feed {
    /// The emitter.
    pub emitter: Emitter,
    /// The category of every point.
    pub category: Category,
    /// The feed (input) name.
    pub name: String,
    /// Feed options.
    pub opts: FeedOpts,
}

impl Feed {
    async fn emit(&self, points: Vec<Point>) -> bool {
        self.emitter
            .emit(self.category, &self.name, self.opts, points)
            .await
    }
}

/// Buffers the points sent on `rx` and hands them to `feed` `buffer_size` at a time, the
/// remainder every `interval`, and everything once every sender is gone. Returns when the
/// senders are gone or the runtime is.
pub async fn batcher(
    mut rx: mpsc::Receiver<Vec<Point>>,
    feed: Feed,
    interval: Duration,
    buffer_size: usize,
) {
    let buffer_size = buffer_size.max(1);
    let mut buf: Vec<Point> = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(points) => {
                    if buf.is_empty() {
                        buf = points;
                    } else {
                        buf.extend(points);
                    }
                    // As Datakit, hand over exactly `buffer_size` points at a time; the rest
                    // waits for more or for the tick. Small hand-overs also bound what
                    // waits in the emitter's queue when the agent is slower than the clients.
                    if buf.len() >= buffer_size {
                        let rest = buf.split_off(buf.len() / buffer_size * buffer_size);
                        let mut full = std::mem::replace(&mut buf, rest).into_iter();
                        loop {
                            let chunk: Vec<Point> = full.by_ref().take(buffer_size).collect();
                            if chunk.is_empty() {
                                break;
                            }
                            if !feed.emit(chunk).await {
                                return;
                            }
                        }
                    }
                }
                None => {
                    feed.emit(std::mem::take(&mut buf)).await;
                    return;
                }
            },
            _ = tick.tick() => {
                if !buf.is_empty() && !feed.emit(std::mem::take(&mut buf)).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emitter::Message;

    fn points(n: usize) -> Vec<Point> {
        (0..n).map(|i| Point::new("m", i as i64)).collect()
    }

    #[tokio::test]
    async fn hands_over_full_batches_at_once_the_rest_on_the_tick_and_at_the_end() {
        let (emitter, mut out) = Emitter::channel(64);
        let (tx, rx) = mpsc::channel(4);
        let feed = Feed {
            emitter,
            category: Category::Metric,
            name: "t".into(),
            opts: FeedOpts::default(),
        };
        let task = tokio::spawn(batcher(rx, feed, Duration::from_millis(300), 3));
        let start = std::time::Instant::now();
        tx.send(points(7)).await.unwrap();
        let mut sizes = Vec::new();
        for _ in 0..2 {
            let Some(Message::Feed(f)) = out.recv().await else {
                panic!("a feed")
            };
            assert_eq!(f.input, "t");
            sizes.push(f.points.len());
        }
        assert_eq!(sizes, vec![3, 3]);
        // The last point waits for the tick.
        let Ok(Some(Message::Feed(f))) =
            tokio::time::timeout(Duration::from_secs(10), out.recv()).await
        else {
            panic!("a feed")
        };
        assert_eq!(f.points.len(), 1);
        assert!(start.elapsed() >= Duration::from_millis(300));
        tx.send(points(2)).await.unwrap();
        drop(tx);
        let Some(Message::Feed(f)) = out.recv().await else {
            panic!("a feed")
        };
        assert_eq!(f.points.len(), 2);
        task.await.unwrap();
    }
}
