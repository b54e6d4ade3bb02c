//! The running `socket` input: an interval-aligned loop that probes every target concurrently.

use dk_proto::clock::now_ns;
use std::time::Duration;

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
        let mut paused = ctx.paused.clone();
        loop {
            let now = now_ns();
            let mut tick = next_tick(now, interval_ns);
            if tick == last_tick {
                // Woke a little before the wall clock reached the last tick; a clock stepped
                // back further than one interval simply restarts the grid from now.
                tick = last_tick.saturating_add(interval_ns);
            }
            let wait = Duration::from_nanos(u64::try_from(tick - now).unwrap_or(0));
            let mut resumed = false;
            tokio::select! {
                () = ctx.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                Ok(()) = paused.changed(), if self.election => {
                    if *paused.borrow_and_update() {
                        continue;
                    }
                    // Elected: collect now rather than at the next tick of the grid.
                    resumed = true;
                }
            }
            let tick = if resumed {
                now_ns()
            } else {
                last_tick = tick;
                tick
            };

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

#[cfg(test)]
mod tests {
    use dk_proto::Value;
    use dk_worker::Emitter;
    use dk_worker::emitter::{Feed, Message};
    use tokio::net::{TcpListener, UdpSocket};
    use tokio::sync::{mpsc, watch};
    use tokio::task::JoinHandle;

    use super::*;
    use crate::config::parse;

    const TICK: Duration = Duration::from_millis(100);

    struct Running {
        rx: mpsc::Receiver<Message>,
        events: mpsc::UnboundedReceiver<TickEvent>,
        pause: watch::Sender<bool>,
        /// Cancels the context's shutdown token.
        shutdown: Box<dyn Fn() + Send>,
        handle: JoinHandle<()>,
    }

    impl Running {
        /// Waits for the next tick event.
        async fn next_event(&mut self) -> TickEvent {
            tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("a tick within 10 s")
                .expect("input still running")
        }

        /// Waits for the next collected tick and returns its feed and the last errors sent
        /// with it.
        async fn next_feed(&mut self) -> (i64, Feed, Vec<dk_proto::rpc::LastError>) {
            let tick = loop {
                if let TickEvent::Collected(t) = self.next_event().await {
                    break t;
                }
            };
            let mut errors = Vec::new();
            loop {
                match self.rx.try_recv().expect("messages of the collected tick") {
                    Message::LastError(e) => errors.push(e),
                    Message::Feed(feed) => return (tick, feed, errors),
                    Message::AckedFeed(..) => panic!("the socket input never waits for acks"),
                }
            }
        }

        async fn stop(self) {
            (self.shutdown)();
            tokio::time::timeout(Duration::from_secs(5), self.handle)
                .await
                .expect("run ends after shutdown")
                .expect("run did not panic");
        }
    }

    fn start(toml_text: &str, paused: bool) -> Running {
        let cfg = parse(toml_text).expect("valid config");
        let mut input = SocketInput::with_interval(cfg, TICK);
        input.udp_plan = UdpPlan {
            probes: 2,
            spacing: Duration::from_millis(30),
        };
        let (tx, events) = mpsc::unbounded_channel();
        input.observer = Some(tx);
        let (emitter, rx) = Emitter::channel(64);
        let (ctx, shutdown, pause) = InputContext::for_test(emitter);
        pause.send_replace(paused);
        let handle = tokio::spawn(Box::new(input).run(ctx));
        Running {
            rx,
            events,
            pause,
            shutdown: Box::new(move || shutdown.cancel()),
            handle,
        }
    }

    fn field(p: &Point, key: &str) -> i64 {
        match p.get_field(key) {
            Some(Value::I(v)) => *v,
            other => panic!("field {key}: {other:?}"),
        }
    }

    /// A loopback TCP port nothing listens on (bound once, then released).
    async fn closed_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    }

    /// A loopback UDP port nothing is bound to.
    async fn closed_udp_port() -> u16 {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        s.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn feeds_tcp_and_udp_points_stamped_with_the_aligned_tick() {
        let open = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let open_port = open.local_addr().expect("addr").port();
        let closed = closed_port().await;
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let udp_port = udp.local_addr().expect("addr").port();
        let mut run = start(
            &format!(
                "dest_url = [\"tcp://127.0.0.1:{open_port}\", \"tcp://127.0.0.1:{closed}\", \"udp://127.0.0.1:{udp_port}\"]\n\
                 election = false\n[tags]\nteam = \"net\"\n"
            ),
            false,
        );
        let (tick, feed, errors) = run.next_feed().await;
        assert_eq!(feed.category, Category::Metric);
        assert_eq!(feed.input, "socket");
        assert_eq!(
            feed.opts,
            FeedOpts {
                election: false,
                no_global_tags: false
            }
        );
        assert_eq!(tick % TICK.as_nanos() as i64, 0);
        assert_eq!(feed.points.len(), 3);
        assert!(feed.points.iter().all(|p| p.time == tick));

        let ok = &feed.points[0];
        assert_eq!(ok.name, "tcp");
        assert_eq!(
            ok.get_tag("dest_port"),
            Some(open_port.to_string().as_str())
        );
        assert_eq!(ok.get_tag("proto"), Some("tcp"));
        assert_eq!(ok.get_tag("team"), Some("net"));
        assert_eq!(ok.get_tag("host"), None);
        assert_eq!(field(ok, "success"), 1);
        let rt = field(ok, "response_time");
        assert!(rt > 0 && rt < 1_000_000, "response_time {rt}");
        assert_eq!(field(ok, "response_time_with_dns"), rt);

        let bad = &feed.points[1];
        assert_eq!(field(bad, "success"), -1);
        assert_eq!(field(bad, "response_time"), 0);
        assert_eq!(field(bad, "response_time_with_dns"), 0);

        let u = &feed.points[2];
        assert_eq!((u.name.as_str(), u.get_tag("proto")), ("udp", Some("udp")));
        assert_eq!(field(u, "success"), 1);

        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].input, "socket");
        assert_eq!(errors[0].source, format!("tcp://127.0.0.1:{closed}"));
        assert!(
            errors[0].message.contains("refused"),
            "{}",
            errors[0].message
        );
        run.stop().await;
        drop(open);
    }

    #[tokio::test]
    async fn reports_a_failing_target_once_per_streak_not_every_tick() {
        let closed = closed_udp_port().await;
        let mut run = start(&format!("dest_url = [\"udp://127.0.0.1:{closed}\"]"), false);
        let mut all_errors = Vec::new();
        let mut last_tick = 0;
        for _ in 0..3 {
            let (tick, feed, errors) = run.next_feed().await;
            assert!(tick > last_tick);
            last_tick = tick;
            assert_eq!(feed.points.len(), 1);
            assert_eq!(field(&feed.points[0], "success"), -1);
            assert!(feed.opts.election);
            all_errors.extend(errors);
        }
        assert_eq!(all_errors.len(), 1, "{all_errors:?}");
        assert!(all_errors[0].message.contains("ICMP port unreachable"));
        run.stop().await;
    }

    #[tokio::test]
    async fn skips_ticks_while_paused_and_resumes_when_unpaused() {
        let open = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = open.local_addr().expect("addr").port();
        let mut run = start(&format!("dest_url = [\"tcp://127.0.0.1:{port}\"]"), true);
        for _ in 0..2 {
            assert!(matches!(run.next_event().await, TickEvent::Skipped(_)));
        }
        assert!(run.rx.try_recv().is_err(), "nothing fed while paused");
        run.pause.send_replace(false);
        let (_, feed, _) = run.next_feed().await;
        assert_eq!(field(&feed.points[0], "success"), 1);
        run.stop().await;
    }

    #[tokio::test]
    async fn collects_at_once_when_resumed_instead_of_waiting_for_the_next_tick() {
        let open = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = open.local_addr().expect("addr").port();
        let cfg = parse(&format!("dest_url = [\"tcp://127.0.0.1:{port}\"]")).expect("valid");
        let input = SocketInput::with_interval(cfg, Duration::from_secs(3600));
        let (emitter, mut rx) = Emitter::channel(64);
        let (ctx, shutdown, pause) = InputContext::for_test(emitter);
        pause.send_replace(true);
        let handle = tokio::spawn(Box::new(input).run(ctx));
        pause.send_replace(false);
        let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a feed right after the resume, not an hour later")
            .expect("a message");
        let Message::Feed(feed) = msg else {
            panic!("a feed, got {msg:?}");
        };
        assert_eq!(field(&feed.points[0], "success"), 1);
        assert!(feed.opts.election);
        shutdown.cancel();
        handle.await.expect("run ends");
    }

    #[tokio::test]
    async fn collects_while_paused_when_election_is_off() {
        let open = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = open.local_addr().expect("addr").port();
        let mut run = start(
            &format!("dest_url = [\"tcp://127.0.0.1:{port}\"]\nelection = false"),
            true,
        );
        assert!(matches!(run.next_event().await, TickEvent::Collected(_)));
        let Ok(Message::Feed(feed)) = run.rx.try_recv() else {
            panic!("a feed for the collected tick");
        };
        assert!(!feed.opts.election);
        run.stop().await;
    }

    #[tokio::test]
    async fn shutdown_ends_the_run_future_even_without_targets() {
        let run = start("", false);
        run.stop().await;
        let run = start("dest_url = [\"tcp://127.0.0.1:9\"]", true);
        run.stop().await;
    }

    #[tokio::test]
    async fn from_config_clamps_the_interval() {
        let cfg = parse("interval = \"1s\"").expect("valid");
        assert_eq!(
            SocketInput::from_config(cfg, "t.conf").interval,
            Duration::from_secs(10)
        );
        let cfg = parse("interval = \"5m\"").expect("valid");
        assert_eq!(
            SocketInput::from_config(cfg, "t.conf").interval,
            Duration::from_secs(60)
        );
    }
}
