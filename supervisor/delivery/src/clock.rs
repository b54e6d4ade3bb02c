//! Dataway as a time source (`[dataway.ntp]`), as Datakit's `ntp` package does it.
//!
//! Every `interval` (5 min by default, at least 1 min) the agent asks the first Dataway URL
//! for its time (`GET /v1/ntp` → `{"timestamp_sec": N}`) and measures
//! `N - local unix seconds`. When that difference is at least `diff` (30 s by default, at
//! least 5 s) either way, it becomes the offset of the agent's logical clock; the system clock
//! is never touched. The logical clock (host clock + offset, in whole seconds) is the "now"
//! of `[io] auto_timestamp_correction`: a point more than 2 h from it gets its time and keeps
//! the original in `__orig_time`.
//!
//! Where we differ from Datakit: a difference below the threshold resets the offset to 0 (the
//! clocks agree again, e.g. after the host clock was fixed); Datakit keeps the last offset.
//! A failed request keeps the current offset, as in Datakit.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

/// How often and from which difference the clock is synced (`[dataway.ntp] interval, diff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSync {
    /// Time between two requests.
    pub interval: Duration,
    /// Smallest difference (either way) that moves the logical clock.
    pub threshold: Duration,
}

impl Default for ClockSync {
    /// Datakit's defaults: every 5 min, from 30 s.
    fn default() -> Self {
        ClockSync {
            interval: Duration::from_secs(300),
            threshold: Duration::from_secs(30),
        }
    }
}

/// The agent's logical clock: the host clock plus an offset in whole seconds (0 until a sync
/// measures a difference over the threshold). Cheap to clone; clones share the offset.
#[derive(Clone, Debug, Default)]
pub(crate) struct Clock {
    offset_secs: Arc<AtomicI64>,
}

impl Clock {
    /// The offset added to the host clock, in seconds.
    pub(crate) fn offset_secs(&self) -> i64 {
        self.offset_secs.load(Ordering::Relaxed)
    }

    /// Sets the offset; returns the previous one.
    pub(crate) fn set_offset_secs(&self, secs: i64) -> i64 {
        self.offset_secs.swap(secs, Ordering::Relaxed)
    }

    /// Now on the logical clock, in Unix nanoseconds.
    pub(crate) fn now_ns(&self) -> i64 {
        host_now_ns().saturating_add(self.offset_secs().saturating_mul(1_000_000_000))
    }
}

/// Now on the host clock, in Unix nanoseconds.
pub(crate) fn host_now_ns() -> i64 {
    dk_proto::clock::host_now_ns()
}

/// Now on the host clock, in Unix seconds (what a Dataway time is compared with).
pub fn host_now_secs() -> i64 {
    host_now_ns() / 1_000_000_000
}

/// The offset a measured difference (Dataway time − host time, in seconds) gives: the
/// difference itself when it is at least `threshold` either way, else 0.
pub(crate) fn offset_for(measured_secs: i64, threshold: Duration) -> i64 {
    if measured_secs.unsigned_abs() >= threshold.as_secs() {
        measured_secs
    } else {
        0
    }
}

/// Runs `measure` now and then every `sync.interval` until `stop` is cancelled, handing each
/// measured difference (Dataway time − host time, in seconds) to `apply`. A failure is logged
/// once per streak (and its end once) and keeps the current offset.
pub(crate) fn spawn_sync<F, Fut, E>(
    sync: ClockSync,
    measure: F,
    apply: impl Fn(i64) + Send + 'static,
    stop: tokio_util::sync::CancellationToken,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<i64, E>> + Send,
    E: Display + Send,
{
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            let measured = tokio::select! {
                () = stop.cancelled() => return,
                m = measure() => m,
            };
            match measured {
                Ok(diff) => {
                    if failing {
                        tracing::info!("[dataway.ntp] Dataway answers /v1/ntp again");
                        failing = false;
                    }
                    apply(diff);
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(
                        "[dataway.ntp] cannot read Dataway's time ({e}); point times keep the current offset; \
                         check the first [dataway] url, or set [dataway.ntp] enable = false"
                    );
                }
                Err(_) => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(sync.interval) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_at_the_threshold_becomes_the_offset_either_way() {
        let t = Duration::from_secs(30);
        assert_eq!(offset_for(30, t), 30);
        assert_eq!(offset_for(-30, t), -30);
        assert_eq!(offset_for(3_600, t), 3_600);
        assert_eq!(offset_for(-7_201, t), -7_201);
    }

    #[test]
    fn a_difference_under_the_threshold_resets_the_offset() {
        let t = Duration::from_secs(30);
        assert_eq!(offset_for(29, t), 0);
        assert_eq!(offset_for(-29, t), 0);
        assert_eq!(offset_for(0, t), 0);
    }

    #[test]
    fn the_logical_clock_is_the_host_clock_plus_the_offset() {
        let clock = Clock::default();
        let before = host_now_ns();
        let now = clock.now_ns();
        assert!(
            now >= before && now - before < 1_000_000_000,
            "{now} vs {before}"
        );
        assert_eq!(clock.set_offset_secs(-3_600), 0);
        let shifted = clock.now_ns();
        let host = host_now_ns();
        let delta = host - shifted;
        assert!(
            (3_599_000_000_000..=3_601_000_000_000).contains(&delta),
            "host {host} logical {shifted}"
        );
        assert_eq!(clock.offset_secs(), -3_600);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sync_measures_at_once_then_every_interval_until_stopped() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = tokio_util::sync::CancellationToken::new();
        let calls = Arc::new(AtomicI64::new(0));
        let counted = Arc::clone(&calls);
        let task = spawn_sync(
            ClockSync {
                interval: Duration::from_secs(60),
                threshold: Duration::from_secs(5),
            },
            move || {
                let n = counted.fetch_add(1, Ordering::Relaxed);
                async move { if n == 1 { Err("HTTP 503") } else { Ok(40 + n) } }
            },
            move |d| {
                let _ = tx.send(d);
            },
            stop.clone(),
        );
        assert_eq!(rx.recv().await, Some(40));
        // The second measurement fails (nothing applied); the third is applied.
        assert_eq!(rx.recv().await, Some(42));
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        stop.cancel();
        task.await.unwrap();
        assert_eq!(rx.recv().await, None, "nothing after the stop");
    }
}
