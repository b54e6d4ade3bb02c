//! The tick loop every host input runs: collect at start, then once per interval, with
//! Datakit's timestamp alignment, until shutdown.

pub(crate) use dk_proto::clock::now_ns;
use std::time::Duration;

use dk_proto::{Category, Point};
use dk_worker::{FeedOpts, Input, InputContext};
use futures::future::BoxFuture;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::sys::CollectError;

/// One host input's collection logic; [`HostInput`] runs it.
pub(crate) trait Collector: Send + 'static {
    /// The input name (`cpu`), also the feed name.
    fn name(&self) -> &'static str;

    /// The category of the points.
    fn category(&self) -> Category {
        Category::Metric
    }

    /// How often to collect.
    fn interval(&self) -> Duration;

    /// Whether a collection may block for long (`statvfs` on a hung network mount);
    /// such collections run on the blocking thread pool.
    fn may_block(&self) -> bool {
        false
    }

    /// Collects once; every point gets time `ts` (ns).
    fn collect(&mut self, ts: i64) -> Result<Vec<Point>, CollectError>;

    /// Called once when the input starts, with the host name the agent reports.
    fn bind(&mut self, hostname: &str) {
        let _ = hostname;
    }

    /// A second, shorter period for background sampling (the `cpu` input's `load5s`).
    fn side_interval(&self) -> Option<Duration> {
        None
    }

    /// Called every [`Collector::side_interval`].
    fn side_tick(&mut self) {}

    /// A signal for one collection now, out of schedule (`hostobject` once its background
    /// cloud probe first answers). Asked once, after [`Collector::bind`].
    fn early(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

/// A [`Collector`] plus the instance's `[inputs.X.tags]`, runnable as an [`Input`].
pub(crate) struct HostInput<C> {
    collector: C,
    tags: Vec<(String, String)>,
}

impl<C: Collector> HostInput<C> {
    pub(crate) fn new(collector: C, tags: Vec<(String, String)>) -> Self {
        HostInput { collector, tags }
    }
}

impl<C: Collector> Input for HostInput<C> {
    fn name(&self) -> &str {
        self.collector.name()
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(run_loop(self.collector, self.tags, ctx))
    }
}

/// Datakit's `AlignTime`: the next point time is the previous one plus the interval,
/// unless the actual tick is off by more than 10 % of the interval (a stalled process, a
/// clock jump), in which case it is the tick time at millisecond precision.
pub(crate) fn align(now_ns: i64, last_ns: i64, interval: Duration) -> i64 {
    let interval_ns = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX);
    let next = last_ns.saturating_add(interval_ns);
    let now_ms = now_ns / 1_000_000;
    let diff = (now_ms - next / 1_000_000).abs() as f64;
    let interval_ms = (interval_ns / 1_000_000).max(1) as f64;
    if diff > 0.0 && diff / interval_ms > 0.1 {
        now_ms * 1_000_000
    } else {
        next
    }
}

async fn early(n: &Option<std::sync::Arc<tokio::sync::Notify>>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending::<()>().await,
    }
}

async fn side_tick(side: &mut Option<Interval>) {
    match side {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Ticks every `period` on the worker's shared grid ([`dk_proto::clock::grid_start`]), the
/// first time between half a period and one and a half after now: inputs started together
/// (and side ticks whose periods divide each other) tick at the same instants, so an idle
/// worker wakes once for all of them and their points travel in one batch. A late tick keeps
/// the grid.
fn ticker(period: Duration) -> Interval {
    let mut start = Instant::from_std(dk_proto::clock::grid_start(period)) + period;
    if start.saturating_duration_since(Instant::now()) < period / 2 {
        start += period;
    }
    let mut i = tokio::time::interval_at(start, period);
    i.set_missed_tick_behavior(MissedTickBehavior::Skip);
    i
}

pub(crate) async fn run_loop<C: Collector>(
    mut collector: C,
    tags: Vec<(String, String)>,
    ctx: InputContext,
) {
    collector.bind(&ctx.hostname);
    let name = collector.name();
    let category = collector.category();
    let interval = collector.interval();
    let mut main = ticker(interval);
    let mut side = collector.side_interval().map(ticker);
    let wake = collector.early();
    let mut ts = now_ns();
    tracing::info!(input = name, ?interval, "host input started");
    loop {
        let result = if collector.may_block() {
            let task = tokio::task::spawn_blocking(move || {
                let r = collector.collect(ts);
                (collector, r)
            });
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                joined = task => match joined {
                    Ok((c, r)) => {
                        collector = c;
                        r
                    }
                    Err(e) => {
                        let msg = format!("collection task failed: {e}; the input stops");
                        tracing::error!(input = name, "{msg}");
                        ctx.emitter.last_error(name, name, category, msg).await;
                        return;
                    }
                },
            }
        } else {
            collector.collect(ts)
        };
        match result {
            Ok(mut points) => {
                for p in &mut points {
                    for (k, v) in &tags {
                        p.add_tag_if_absent(k, v);
                    }
                }
                if !points.is_empty() {
                    tokio::select! {
                        _ = ctx.shutdown.cancelled() => return,
                        ok = ctx.emitter.emit(category, name, FeedOpts::default(), points) => {
                            if !ok {
                                return;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(input = name, error = %e, "collect failed");
                ctx.emitter
                    .last_error(name, name, category, format!("collect: {e}"))
                    .await;
            }
        }
        loop {
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => {
                    tracing::info!(input = name, "host input stopped");
                    return;
                }
                _ = main.tick() => {
                    ts = align(now_ns(), ts, interval);
                    break;
                }
                _ = early(&wake) => {
                    ts = now_ns();
                    break;
                }
                _ = side_tick(&mut side) => collector.side_tick(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_time_advances_by_exactly_one_interval_when_on_schedule() {
        let i = Duration::from_secs(10);
        let last = 1_700_000_000_000_000_123;
        assert_eq!(align(last + 10_004_000_000, last, i), last + 10_000_000_000);
    }

    #[test]
    fn aligned_time_snaps_to_now_after_a_stall() {
        let i = Duration::from_secs(10);
        let last = 1_700_000_000_000_000_000;
        let now = last + 25_000_123_456;
        assert_eq!(align(now, last, i), (now / 1_000_000) * 1_000_000);
    }
}
