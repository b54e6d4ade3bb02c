//! One set of self-metrics for every input family, with the same names and labels.
//!
//! A family builds one [`Telemetry`] per worker generation (in [`crate::Family::build`]; the
//! single-input helper does it for you) and hands it to its inputs; the first input to run
//! registers it ([`Telemetry::register`] is idempotent). Counters are resolved once per
//! listener or reason into cheap handles ([`ListenerTelemetry`], [`Telemetry::parse_error`]),
//! so hot paths only add to atomics.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `datakit_inputs_instance` | `input` | instances of the input running in this worker (Datakit's name) |
//! | `datakit_input_received_bytes_total` | `input`, `listener` | bytes read from sockets |
//! | `datakit_input_received_events_total` | `input`, `listener` | datagrams received / TCP connections' reads |
//! | `datakit_input_parse_errors_total` | `input`, `reason` | malformed input skipped |
//! | `datakit_input_connections_total` | `input`, `listener` | TCP connections accepted (refused ones excluded) |
//! | `datakit_input_open_connections` | `input`, `listener` | TCP connections open now |
//! | `datakit_input_dropped_total` | `input`, `reason` | data or connections dropped by the agent or the kernel |
//!
//! Datakit's `datakit_io_feed_point_total{name,category}` and
//! `datakit_error_total{source,category}` are counted by the supervisor from what the
//! [`crate::Emitter`] carries (every feed and every last error), so every family has them
//! without registering anything. [`UNIFORM`] lists the names the compliance test requires.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::InputContext;

type Labels = Vec<(&'static str, String)>;

/// What every family exposes, listening or not.
pub const UNIFORM_ALL: &[&str] = &["datakit_inputs_instance"];

/// The metric families every family that listens exposes (counters' samples carry `_total`):
/// the kit creates the series of a listener when it starts serving it, the families create
/// their parse-error reasons at start.
pub const UNIFORM: &[&str] = &[
    "datakit_inputs_instance",
    "datakit_input_received_bytes",
    "datakit_input_received_events",
    "datakit_input_parse_errors",
    "datakit_input_connections",
    "datakit_input_open_connections",
    "datakit_input_dropped",
];

/// Drop reasons the kit itself counts.
pub mod reason {
    /// A TCP connection refused at the connection cap.
    pub const CONNECTION_LIMIT: &str = "connection_limit";
    /// A TCP connection closed after `idle_timeout` without data.
    pub const IDLE_TIMEOUT: &str = "idle_timeout";
    /// A datagram the kernel dropped (receive buffer full), from `/proc/net/udp`.
    pub const KERNEL: &str = "kernel";
    /// A datagram longer than the receive slot, cut by the kernel.
    pub const TRUNCATED: &str = "truncated";
    /// `accept` failed (out of descriptors and the like).
    pub const ACCEPT_ERROR: &str = "accept_error";
    /// An HTTP request body over the listener's cap.
    pub const BODY_TOO_LARGE: &str = "body_too_large";
}

#[derive(Debug, Default)]
struct Families {
    instances: Family<Labels, Gauge>,
    bytes: Family<Labels, Counter>,
    events: Family<Labels, Counter>,
    parse_errors: Family<Labels, Counter>,
    connections: Family<Labels, Counter>,
    open: Family<Labels, Gauge>,
    dropped: Family<Labels, Counter>,
    registered: AtomicBool,
}

/// The uniform self-metrics of one family's inputs for one worker generation (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    families: Arc<Families>,
}

impl Telemetry {
    /// Empty families, not registered yet.
    pub fn new() -> Telemetry {
        Telemetry::default()
    }

    /// Registers the families in the worker's registry; only the first call does anything.
    pub fn register(&self, ctx: &InputContext) {
        let f = &*self.families;
        if f.registered.swap(true, Ordering::SeqCst) {
            return;
        }
        ctx.register_metric(
            "datakit_inputs_instance",
            "Input instance count",
            f.instances.clone(),
        );
        ctx.register_metric(
            "datakit_input_received_bytes",
            "Bytes read from the input's sockets",
            f.bytes.clone(),
        );
        ctx.register_metric(
            "datakit_input_received_events",
            "Datagrams received and TCP reads made on the input's sockets",
            f.events.clone(),
        );
        ctx.register_metric(
            "datakit_input_parse_errors",
            "Malformed input skipped, by reason",
            f.parse_errors.clone(),
        );
        ctx.register_metric(
            "datakit_input_connections",
            "TCP connections accepted (those refused at the cap are counted as dropped)",
            f.connections.clone(),
        );
        ctx.register_metric(
            "datakit_input_open_connections",
            "TCP connections open now",
            f.open.clone(),
        );
        ctx.register_metric(
            "datakit_input_dropped",
            "Data or connections dropped by the agent or the kernel, by reason",
            f.dropped.clone(),
        );
    }

    /// Counts one more instance of `input` (call once per instance built).
    pub fn instance(&self, input: &str) {
        self.families
            .instances
            .get_or_create(&vec![("input", input.to_string())])
            .inc();
    }

    /// Sets the instances of `input` running (a worker generation's count).
    pub fn set_instances(&self, input: &str, n: i64) {
        self.families
            .instances
            .get_or_create(&vec![("input", input.to_string())])
            .set(n);
    }

    /// Instances of `input` counted so far.
    pub fn instances(&self, input: &str) -> i64 {
        self.families
            .instances
            .get_or_create(&vec![("input", input.to_string())])
            .get()
    }

    /// The counters of one listening socket of `input`.
    pub fn listener(&self, input: &str, listener: &str) -> ListenerTelemetry {
        let f = &*self.families;
        let labels: Labels = vec![("input", input.to_string()), ("listener", listener.into())];
        ListenerTelemetry {
            input: input.to_string(),
            bytes: f.bytes.get_or_create(&labels).clone(),
            events: f.events.get_or_create(&labels).clone(),
            connections: f.connections.get_or_create(&labels).clone(),
            open: f.open.get_or_create(&labels).clone(),
            telemetry: self.clone(),
        }
    }

    /// The parse-error counter of `input` for `reason`.
    pub fn parse_error(&self, input: &str, reason: &str) -> Counter {
        let labels: Labels = vec![("input", input.to_string()), ("reason", reason.into())];
        self.families.parse_errors.get_or_create(&labels).clone()
    }

    /// The drop counter of `input` for `reason` (see [`reason`]).
    pub fn dropped(&self, input: &str, reason: &str) -> Counter {
        let labels: Labels = vec![("input", input.to_string()), ("reason", reason.into())];
        self.families.dropped.get_or_create(&labels).clone()
    }
}

impl Telemetry {
    /// `input` as is, registering this telemetry when it starts (for inputs that count
    /// nothing themselves, so the family still shows `datakit_inputs_instance`).
    pub fn registering(&self, input: Box<dyn crate::Input>) -> Box<dyn crate::Input> {
        Box::new(Registering {
            inner: input,
            telemetry: self.clone(),
        })
    }
}

/// An input that registers the family's telemetry when it starts.
struct Registering {
    inner: Box<dyn crate::Input>,
    telemetry: Telemetry,
}

impl crate::Input for Registering {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn run(self: Box<Self>, ctx: InputContext) -> futures::future::BoxFuture<'static, ()> {
        self.telemetry.register(&ctx);
        self.inner.run(ctx)
    }
}

/// Handles onto one listener's counters.
#[derive(Clone, Debug)]
pub struct ListenerTelemetry {
    input: String,
    /// Bytes read.
    pub bytes: Counter,
    /// Datagrams received or TCP reads made.
    pub events: Counter,
    /// TCP connections accepted.
    pub connections: Counter,
    /// TCP connections open now.
    pub open: Gauge,
    telemetry: Telemetry,
}

impl ListenerTelemetry {
    /// The input's drop counter for `reason`.
    pub fn dropped(&self, reason: &str) -> Counter {
        self.telemetry.dropped(&self.input, reason)
    }

    /// The input's parse-error counter for `reason`.
    pub fn parse_error(&self, reason: &str) -> Counter {
        self.telemetry.parse_error(&self.input, reason)
    }

    /// The input name.
    pub fn input(&self) -> &str {
        &self.input
    }
}

/// Encodes a registry as OpenMetrics text (tests and the compliance check).
pub fn encode(ctx: &InputContext) -> String {
    let mut text = String::new();
    if let Ok(r) = ctx.metrics.lock() {
        let _ = prometheus_client::encoding::text::encode(&mut text, &r);
    }
    text
}

/// The value of the sample `name{labels}` in OpenMetrics `text` (labels as encoded, in order,
/// e.g. `input="graphite",listener="tcp://:9109"`); 0 when absent.
pub fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let head = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(head.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The families of `names` with no sample in OpenMetrics `text` (prometheus-client leaves a
/// family without series out of the text, so a name is there only once something created a
/// series of it).
pub fn missing<'a>(text: &str, names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|name| {
            !text.lines().any(|l| {
                l.strip_prefix(name).is_some_and(|rest| {
                    let rest = rest.strip_prefix("_total").unwrap_or(rest);
                    rest.starts_with('{') || rest.starts_with(' ')
                })
            })
        })
        .collect()
}

/// The families of [`UNIFORM`] missing from `text` (see [`missing`]).
pub fn missing_uniform(text: &str) -> Vec<&'static str> {
    missing(text, UNIFORM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Emitter;

    #[test]
    fn registers_once_and_labels_every_series_with_the_input() {
        let (emitter, _rx) = Emitter::channel(1);
        let (ctx, _, _) = InputContext::for_test(emitter);
        let t = Telemetry::new();
        t.register(&ctx);
        t.register(&ctx);
        t.instance("graphite");
        t.instance("graphite");
        let l = t.listener("graphite", "tcp://:9109");
        l.bytes.inc_by(10);
        l.events.inc();
        l.connections.inc();
        l.open.inc();
        l.dropped(reason::CONNECTION_LIMIT).inc_by(3);
        l.parse_error("bad_value").inc();
        let text = encode(&ctx);
        assert_eq!(
            text.matches("# TYPE datakit_input_received_bytes counter")
                .count(),
            1,
            "{text}"
        );
        assert_eq!(missing_uniform(&text), Vec::<&str>::new(), "{text}");
        let ll = r#"input="graphite",listener="tcp://:9109""#;
        assert_eq!(
            sample(&text, "datakit_input_received_bytes_total", ll),
            10.0
        );
        assert_eq!(sample(&text, "datakit_input_open_connections", ll), 1.0);
        assert_eq!(
            sample(&text, "datakit_inputs_instance", r#"input="graphite""#),
            2.0
        );
        assert_eq!(
            sample(
                &text,
                "datakit_input_dropped_total",
                r#"input="graphite",reason="connection_limit""#
            ),
            3.0
        );
        assert_eq!(
            sample(
                &text,
                "datakit_input_parse_errors_total",
                r#"input="graphite",reason="bad_value""#
            ),
            1.0
        );
    }

    #[test]
    fn an_unregistered_telemetry_is_missing_every_uniform_name() {
        assert_eq!(missing_uniform("").len(), UNIFORM.len());
    }
}
