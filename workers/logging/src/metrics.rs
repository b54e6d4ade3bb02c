//! The family's counters, registered once per worker generation and shared by every instance.

use std::sync::atomic::{AtomicBool, Ordering};

use dk_worker::InputContext;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::Proto;

type Labels = Vec<(String, String)>;

/// Every counter of the family, labelled by `source` and `proto`.
#[derive(Debug, Default)]
pub struct Metrics {
    lines: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    truncated: Family<Labels, Counter>,
    decode_errors: Family<Labels, Counter>,
    ignored: Family<Labels, Counter>,
    connections: Family<Labels, Counter>,
    open_connections: Family<Labels, Gauge>,
    kernel_drops: Family<Labels, Counter>,
    registered: AtomicBool,
}

/// The counters of one socket (cheap handles onto [`Metrics`]).
#[derive(Debug, Clone)]
pub struct SocketCounters {
    /// Messages fed (points).
    pub lines: Counter,
    /// Bytes received.
    pub bytes: Counter,
    /// Lines cut at the maximum line length and records cut at the multi-line bounds.
    pub truncated: Counter,
    /// Chunks or lines with malformed bytes replaced by U+FFFD.
    pub decode_errors: Counter,
    /// Messages dropped by `ignore_status`.
    pub ignored: Counter,
    /// TCP connections accepted.
    pub connections: Counter,
    /// TCP connections open now.
    pub open_connections: Gauge,
    /// UDP datagrams the kernel dropped (receive buffer full).
    pub kernel_drops: Counter,
}

impl Metrics {
    /// Registers the families in the worker's registry; only the first call does anything.
    pub fn register(&self, ctx: &InputContext) {
        if self.registered.swap(true, Ordering::SeqCst) {
            return;
        }
        ctx.register_metric(
            "datakit_logging_socket_lines",
            "Log messages fed from logging sockets (one point each)",
            self.lines.clone(),
        );
        ctx.register_metric(
            "datakit_logging_socket_bytes",
            "Bytes received on logging sockets",
            self.bytes.clone(),
        );
        ctx.register_metric(
            "datakit_logging_socket_truncated_lines",
            "Socket log lines cut at the maximum line length (512 KiB) and multi-line records cut at their bounds",
            self.truncated.clone(),
        );
        ctx.register_metric(
            "datakit_logging_socket_decode_errors",
            "Socket log chunks or lines whose malformed bytes were replaced by U+FFFD",
            self.decode_errors.clone(),
        );
        ctx.register_metric(
            "datakit_logging_socket_ignored_lines",
            "Socket log messages dropped by ignore_status",
            self.ignored.clone(),
        );
        ctx.register_metric(
            "datakit_logging_socket_connections",
            "TCP connections accepted on logging sockets",
            self.connections.clone(),
        );
        ctx.register_metric(
            "datakit_logging_socket_kernel_drops",
            "UDP datagrams the kernel dropped on logging sockets (receive buffer full), from /proc/net/udp",
            self.kernel_drops.clone(),
        );
        ctx.register_metric(
            "datakit_logging_socket_open_connections",
            "TCP connections open on logging sockets",
            self.open_connections.clone(),
        );
    }

    /// The counters of a socket of `source`.
    pub fn socket(&self, source: &str, proto: Proto) -> SocketCounters {
        let labels: Labels = vec![
            ("source".to_string(), source.to_string()),
            ("proto".to_string(), proto.as_str().to_string()),
        ];
        SocketCounters {
            lines: self.lines.get_or_create(&labels).clone(),
            bytes: self.bytes.get_or_create(&labels).clone(),
            truncated: self.truncated.get_or_create(&labels).clone(),
            decode_errors: self.decode_errors.get_or_create(&labels).clone(),
            ignored: self.ignored.get_or_create(&labels).clone(),
            connections: self.connections.get_or_create(&labels).clone(),
            open_connections: self.open_connections.get_or_create(&labels).clone(),
            kernel_drops: self.kernel_drops.get_or_create(&labels).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dk_worker::Emitter;

    #[test]
    fn registers_once_and_counts_per_socket() {
        let (emitter, _rx) = Emitter::channel(1);
        let (ctx, _, _) = InputContext::for_test(emitter);
        let m = Metrics::default();
        m.register(&ctx);
        m.register(&ctx);
        let a = m.socket("app", Proto::Tcp);
        a.lines.inc_by(3);
        m.socket("app", Proto::Tcp).lines.inc();
        let mut text = String::new();
        let registry = ctx.metrics.lock().unwrap();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert_eq!(
            text.matches("# TYPE datakit_logging_socket_lines counter")
                .count(),
            1
        );
        assert!(
            text.contains("datakit_logging_socket_lines_total{source=\"app\",proto=\"tcp\"} 4"),
            "{text}"
        );
    }
}
