//! The family's own counters, registered once per worker generation and shared by every
//! instance. Bytes, connections, decode errors and kernel drops are in the kit's uniform
//! telemetry.

use std::sync::atomic::{AtomicBool, Ordering};

use dk_worker::InputContext;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::config::Proto;

type Labels = Vec<(String, String)>;

/// Every counter of the family, labelled by `source` and `proto`.
#[derive(Debug, Default)]
pub struct Metrics {
    lines: Family<Labels, Counter>,
    truncated: Family<Labels, Counter>,
    ignored: Family<Labels, Counter>,
    registered: AtomicBool,
}

/// The counters of one socket (cheap handles onto [`Metrics`]).
#[derive(Debug, Clone)]
pub struct SocketCounters {
    /// Messages fed (points).
    pub lines: Counter,
    /// Lines cut at the maximum line length and records cut at the multi-line bounds.
    pub truncated: Counter,
    /// Messages dropped by `ignore_status`.
    pub ignored: Counter,
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
            "datakit_logging_socket_truncated_lines",
            "Socket log lines cut at the maximum line length (512 KiB) and multi-line records cut at their bounds",
            self.truncated.clone(),
        );
        ctx.register_metric(
            "datakit_logging_socket_ignored_lines",
            "Socket log messages dropped by ignore_status",
            self.ignored.clone(),
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
            truncated: self.truncated.get_or_create(&labels).clone(),
            ignored: self.ignored.get_or_create(&labels).clone(),
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
