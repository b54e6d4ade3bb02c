//! The running `socket` input: an interval-aligned loop that probes every target concurrently.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dk_proto::{Category, Point};
use dk_worker::{FeedOpts, Input, InputContext};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::config::{Proto, SocketConfig, Target, clamp_interval};
use crate::points::{Transition, next_tick, target_tags, tcp_point, transition, udp_point};
use crate::probe::{UdpPlan, probe_tcp, probe_udp};

/// The input and feed name.
pub const INPUT_NAME: &str = "socket";

/// How many probes of one instance run at the same time.
pub const MAX_CONCURRENT_PROBES: usize = 32;

/// What the loop did at a tick (observed by tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickEvent {
    /// The tick was skipped because the input is paused (election).
    Skipped(i64),
    /// The tick's points were handed to the emitter.
    Collected(i64),
}

/// One target with its precomputed tags.
#[derive(Clone, Debug)]
struct Probe {
    target: Target,
    tags: Vec<(String, String)>,
}

/// One `[[inputs.socket]]` instance, ready to run.
pub struct SocketInput {
    probes: Vec<Probe>,
    interval: Duration,
    tcp_timeout: Duration,
    udp_timeout: Duration,
    election: bool,
    udp_plan: UdpPlan,
    observer: Option<mpsc::UnboundedSender<TickEvent>>,
}

impl SocketInput {
    /// Builds an instance from its checked config, clamping the interval into 10 s–60 s with a
    /// logged warning as Datakit does.
    pub fn from_config(cfg: SocketConfig, source: &str) -> SocketInput {
        let interval = match clamp_interval(cfg.interval) {
            Ok(d) => d,
            Err(clamped) => {
                tracing::warn!(input = INPUT_NAME, source, "{clamped}");
                clamped.used
            }
        };
        SocketInput::with_interval(cfg, interval)
    }

    /// Builds an instance with an exact interval (no clamping).
    fn with_interval(cfg: SocketConfig, interval: Duration) -> SocketInput {
        let probes = cfg
            .targets
            .into_iter()
            .map(|target| Probe {
                tags: target_tags(&target, &cfg.tags),
                target,
            })
            .collect();
        SocketInput {
            probes,
            interval,
            tcp_timeout: cfg.tcp_timeout,
            udp_timeout: cfg.udp_timeout,
            election: cfg.election,
            udp_plan: UdpPlan::DEFAULT,
            observer: None,
        }
    }

    fn observe(&self, event: TickEvent) {
        if let Some(tx) = &self.observer {
            let _ = tx.send(event);
        }
    }

    /// Probes every target (at most [`MAX_CONCURRENT_PROBES`] at once) and returns the points
    /// stamped `time_ns`, with each target's error message (`None` on success).
    async fn collect(&self, time_ns: i64) -> Vec<(Point, Option<String>)> {
        futures::stream::iter(0..self.probes.len())
            .map(|i| self.probe_one(i, time_ns))
            .buffered(MAX_CONCURRENT_PROBES)
            .collect()
            .await
    }

    /// Probes target `index` and builds its point, with the error message on failure.
    async fn probe_one(&self, index: usize, time_ns: i64) -> (Point, Option<String>) {
        let p = &self.probes[index];
        let t = &p.target;
        match t.proto {
            Proto::Tcp => match probe_tcp(&t.host, t.port, self.tcp_timeout).await {
                Ok(timing) => (tcp_point(&p.tags, Some(&timing), time_ns), None),
                Err(e) => (tcp_point(&p.tags, None, time_ns), Some(e.to_string())),
            },
            Proto::Udp => match probe_udp(&t.host, t.port, self.udp_timeout, self.udp_plan).await {
                Ok(_) => (udp_point(&p.tags, true, time_ns), None),
                Err(e) => (udp_point(&p.tags, false, time_ns), Some(e.to_string())),
            },
        }
    }

    async fn run_loop(self, ctx: InputContext) {
        if self.probes.is_empty() {
            tracing::warn!(
                input = INPUT_NAME,
                "no dest_url configured: nothing to probe; add dest_url = [\"tcp://host:port\"]"
            );
            ctx.shutdown.cancelled().await;
            return;
        }
        let opts = FeedOpts {
            election: self.election,
            no_global_tags: false,
        };
        let interval_ns = i64::try_from(self.interval.as_nanos())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut streaks: Vec<Option<String>> = vec![None; self.probes.len()];
        let mut last_tick = i64::MIN;
        loop {
            let now = now_ns();
            let mut tick = next_tick(now, interval_ns);
            if tick <= last_tick && last_tick - tick < interval_ns {
                // Woke a little before the wall clock reached the last tick.
                tick = last_tick.saturating_add(interval_ns);
            }
            let wait = Duration::from_nanos(u64::try_from(tick - now).unwrap_or(0));
            tokio::select! {
                () = ctx.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            last_tick = tick;

            if self.election && *ctx.paused.borrow() {
                tracing::debug!(input = INPUT_NAME, "paused by election, tick skipped");
                self.observe(TickEvent::Skipped(tick));
                continue;
            }

            let results = tokio::select! {
                () = ctx.shutdown.cancelled() => return,
                r = self.collect(tick) => r,
            };
            let mut points = Vec::with_capacity(results.len());
            for ((point, error), (probe, streak)) in results
                .into_iter()
                .zip(self.probes.iter().zip(streaks.iter_mut()))
            {
                match transition(streak, error.as_deref()) {
                    Transition::Quiet => {}
                    Transition::Report(message) => {
                        tracing::warn!(input = INPUT_NAME, url = %probe.target.url, "{message}");
                        ctx.emitter
                            .last_error(INPUT_NAME, &probe.target.url, Category::Metric, message)
                            .await;
                    }
                    Transition::Recovered => {
                        tracing::info!(input = INPUT_NAME, url = %probe.target.url, "probe succeeds again");
                    }
                }
                points.push(point);
            }
            let delivered = tokio::select! {
                () = ctx.shutdown.cancelled() => return,
                ok = ctx.emitter.emit(Category::Metric, INPUT_NAME, opts, points) => ok,
            };
            if !delivered {
                return;
            }
            self.observe(TickEvent::Collected(tick));
        }
    }
}

impl Input for SocketInput {
    fn name(&self) -> &str {
        INPUT_NAME
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(self.run_loop(ctx))
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
