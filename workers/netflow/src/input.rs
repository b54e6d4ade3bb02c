//! The running `netflow` input: UDP listeners on the input kit, one decoder per listener and
//! one aggregator per instance, flushed every `flush_interval` into logging points.
//!
//! # Design
//!
//! Each listener's socket is served by the kit (`recvmmsg` batches, kernel drops, bytes and
//! datagrams counted). Its [`Receiver`] decodes every datagram with the listener's own
//! template cache, keyed by the sender's address, and hands the records of one receive round
//! over a bounded channel to the aggregator task (back-pressure lets the kernel queue, and
//! count drops, rather than the agent's memory). The aggregator task adds the records, and on
//! each tick flushes what is due into points fed under the logging category. Decode errors
//! are counted per round and reported at most once per [`dk_worker::serve::REPORT_EVERY`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use dk_proto::Category;
use dk_proto::clock::now_ns;
use dk_worker::serve::{Tally, udp};
use dk_worker::telemetry::Telemetry;
use dk_worker::{FeedOpts, Input, InputContext};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::aggregate::Aggregator;
use crate::config::{Listener, NetflowConfig};
use crate::decode::{Counts, DecodeError, FlowRecord, Templates, decode};
use crate::payload::{PointSettings, point};

/// The input name.
pub const INPUT_NAME: &str = "netflow";

/// Receive rounds in flight between the listeners and the aggregator (a round holds at most
/// `READER_RECORDS` plus one `recvmmsg` batch of datagrams' records).
const CHANNEL_DEPTH: usize = 8;

/// Records a listener gathers before it hands them on.
const READER_RECORDS: usize = 4096;

/// How often a listener drops templates not refreshed in time.
const EXPIRE_EVERY_SECS: u64 = 60;

/// Points per feed.
const FEED_POINTS: usize = 1000;

/// One `[[inputs.netflow]]` instance, ready to run.
pub struct NetflowInput {
    cfg: NetflowConfig,
    telemetry: Telemetry,
}

impl NetflowInput {
    /// An instance from its checked config; instances of a worker share `telemetry`.
    pub fn new(cfg: NetflowConfig, telemetry: Telemetry) -> NetflowInput {
        NetflowInput { cfg, telemetry }
    }
}

impl Input for NetflowInput {
    fn name(&self) -> &str {
        INPUT_NAME
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(serve(*self, ctx))
    }
}

fn now_secs() -> u64 {
    u64::try_from(now_ns() / 1_000_000_000).unwrap_or(0)
}

/// The exporter's address as a flow names it (IPv4-mapped IPv6 senders as IPv4).
fn exporter(from: Option<SocketAddr>) -> IpAddr {
    match from.map(|a| a.ip()) {
        Some(IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        Some(ip) => ip,
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

/// One listener: decodes datagrams into records.
struct Receiver {
    ctx: InputContext,
    address: String,
    templates: Templates,
    next_expiry: u64,
    out: Vec<FlowRecord>,
    counts: Counts,
    errors: u64,
    last: Option<(DecodeError, Option<SocketAddr>)>,
    malformed: Counter,
    unknown_template: Counter,
    templates_refused: Counter,
    sflow_counter_samples: Counter,
    sflow_skipped: Counter,
    report: Arc<Tally>,
    tx: mpsc::Sender<Vec<FlowRecord>>,
}

impl udp::Datagrams for Receiver {
    fn datagram(&mut self, bytes: &[u8]) {
        self.datagram_from(bytes, None);
    }

    fn datagram_from(&mut self, bytes: &[u8], from: Option<SocketAddr>) {
        let now = now_secs();
        if let Err(e) = decode(
            &mut self.templates,
            exporter(from),
            bytes,
            now,
            &mut self.out,
            &mut self.counts,
        ) {
            self.errors += 1;
            self.last = Some((e, from));
        }
    }

    fn full(&self) -> bool {
        self.out.len() >= READER_RECORDS
    }

    async fn flush(&mut self) -> bool {
        let counts = std::mem::take(&mut self.counts);
        self.malformed.inc_by(self.errors);
        self.unknown_template.inc_by(counts.unknown_template);
        self.templates_refused.inc_by(counts.templates_refused);
        self.sflow_counter_samples
            .inc_by(counts.sflow_counter_samples);
        self.sflow_skipped.inc_by(counts.sflow_skipped);
        let errors = std::mem::take(&mut self.errors);
        if let Some((err, from)) = self.last.take()
            && let Some(n) = self.report.due(errors + counts.unknown_template)
        {
            let from = from.map_or_else(|| "?".to_string(), |a| a.to_string());
            let message = format!(
                "netflow {}: skipped {n} malformed datagram(s) or data set(s) without a known template since the last report; last from {from}: {err}",
                self.address
            );
            tracing::warn!(input = INPUT_NAME, "{message}");
            self.ctx
                .emitter
                .last_error(INPUT_NAME, "netflow", Category::Logging, message)
                .await;
        }
        let now = now_secs();
        if now >= self.next_expiry {
            self.templates.expire(now);
            self.next_expiry = now + EXPIRE_EVERY_SECS;
        }
        let records = std::mem::take(&mut self.out);
        records.is_empty() || self.tx.send(records).await.is_ok()
    }
}

async fn serve(input: NetflowInput, ctx: InputContext) {
    let NetflowInput { cfg, telemetry } = input;
    telemetry.register(&ctx);
    if cfg.listeners.is_empty() {
        tracing::warn!(
            input = INPUT_NAME,
            "no NetFlow listener configured: add [[inputs.netflow.listeners]] with flow_type and port"
        );
        ctx.shutdown.cancelled().await;
        return;
    }
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let report = Arc::new(Tally::default());
    let mut readers = JoinSet::new();
    for l in &cfg.listeners {
        let address = l.address();
        match dk_worker::listen::udp(&ctx, &address) {
            Ok(sock) => {
                dk_worker::listen::apply_read_buffer(
                    std::os::fd::AsFd::as_fd(&sock),
                    cfg.read_buffer_size,
                    false,
                    INPUT_NAME,
                    &address,
                );
                readers.spawn(udp::serve(
                    udp::DatagramSocket::Udp(sock),
                    udp::UdpOptions::default(),
                    telemetry.listener(INPUT_NAME, &address),
                    ctx.shutdown.clone(),
                    receiver(&ctx, &telemetry, l, &report, tx.clone()),
                ));
                tracing::info!(
                    input = INPUT_NAME,
                    flow_type = l.flow_type.as_str(),
                    port = l.port,
                    "NetFlow listener receiving."
                );
            }
            Err(e) => {
                let message = format!("netflow {address}: cannot receive: {e}");
                tracing::error!(input = INPUT_NAME, "{message}");
                ctx.emitter
                    .last_error(INPUT_NAME, "netflow", Category::Logging, message)
                    .await;
            }
        }
    }
    drop(tx);
    let settings = PointSettings {
        source: cfg.source.clone(),
        namespace: cfg.namespace.clone(),
        host: ctx.hostname.clone(),
        tags: cfg.tags.clone(),
    };
    let dropped = telemetry.dropped(INPUT_NAME, "aggregation_full");
    aggregate(rx, &ctx, &cfg, &settings, &dropped).await;
    while readers.join_next().await.is_some() {}
}

fn receiver(
    ctx: &InputContext,
    telemetry: &Telemetry,
    l: &Listener,
    report: &Arc<Tally>,
    tx: mpsc::Sender<Vec<FlowRecord>>,
) -> Receiver {
    Receiver {
        ctx: ctx.clone(),
        address: l.address(),
        templates: Templates::new(),
        next_expiry: now_secs() + EXPIRE_EVERY_SECS,
        out: Vec::new(),
        counts: Counts::default(),
        errors: 0,
        last: None,
        malformed: telemetry.parse_error(INPUT_NAME, "malformed"),
        unknown_template: telemetry.parse_error(INPUT_NAME, "unknown_template"),
        templates_refused: telemetry.parse_error(INPUT_NAME, "template_refused"),
        // Datakit's decoder ignores them too.
        sflow_counter_samples: telemetry.dropped(INPUT_NAME, "sflow_counter_sample"),
        sflow_skipped: telemetry.dropped(INPUT_NAME, "sflow_unsupported_sample"),
        report: report.clone(),
        tx,
    }
}

/// Adds the records of every listener and flushes on each tick until the listeners are gone
/// (shutdown), then flushes everything still held.
async fn aggregate(
    mut rx: mpsc::Receiver<Vec<FlowRecord>>,
    ctx: &InputContext,
    cfg: &NetflowConfig,
    settings: &PointSettings,
    dropped: &Counter,
) {
    let mut agg = Aggregator::new(now_secs());
    let mut tick = tokio::time::interval(cfg.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(records) => {
                    let now = now_secs();
                    for r in records {
                        agg.add(r, now);
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if !emit(&mut agg, now_secs(), ctx, settings, dropped).await {
                    return;
                }
            }
        }
    }
    // Everything held is due once the input stops.
    emit(&mut agg, u64::MAX / 2, ctx, settings, dropped).await;
}

async fn emit(
    agg: &mut Aggregator,
    now: u64,
    ctx: &InputContext,
    settings: &PointSettings,
    dropped: &Counter,
) -> bool {
    let flows = agg.flush(now);
    dropped.inc_by(std::mem::take(&mut agg.counts.dropped));
    let flush_ns = now_ns();
    for chunk in flows.chunks(FEED_POINTS) {
        let points = chunk.iter().map(|f| point(f, flush_ns, settings)).collect();
        if !ctx
            .emitter
            .emit(Category::Logging, INPUT_NAME, FeedOpts::default(), points)
            .await
        {
            return false;
        }
    }
    true
}
