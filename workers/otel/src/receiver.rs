//! What the gRPC services and the HTTP routes share: an instance's options, the mappings and
//! the counters. The HTTP side ([`Receiver::http`]) is plain code from request bytes to an
//! answer and points.

use std::sync::{Arc, OnceLock};

use dk_proto::{Category, Point};
use dk_worker::Telemetry;
use dk_worker::http::{HttpAnswer, HttpRequest};
use dk_worker::serve::Tally;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use serde::Serialize;

use crate::body::{self, BodyError, Encoding};
use crate::config::OtelConfig;
use crate::options::Origin;
use crate::{INPUT_NAME, logs, metric, trace};

/// One OTLP signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metrics.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// The category its points go to.
    pub fn category(self) -> Category {
        match self {
            Signal::Traces => Category::Tracing,
            Signal::Metrics => Category::Metric,
            Signal::Logs => Category::Logging,
        }
    }
}

/// Parse-error reasons counted in `datakit_input_parse_errors_total{reason}`.
pub mod reason {
    /// A `Content-Type` that is neither protobuf nor JSON.
    pub const CONTENT_TYPE: &str = "content_type";
    /// A body that does not decode.
    pub const DECODE: &str = "decode";
    /// A body over `max_payload` once inflated.
    pub const TOO_LARGE: &str = "too_large";
}

/// One instance's receiving side.
#[derive(Debug)]
pub struct Receiver {
    /// The instance's config.
    pub cfg: OtelConfig,
    /// `dk_fingerprint`, known once the input runs (the host name comes with the context).
    fingerprint: OnceLock<String>,
    http_requests: Counter,
    http_bytes: Counter,
    bad_content_type: Counter,
    bad_body: Counter,
    too_large: Counter,
    report: Tally,
}

impl Receiver {
    /// The receiver of an instance, counting into `telemetry`.
    pub fn new(cfg: OtelConfig, telemetry: &Telemetry) -> Arc<Receiver> {
        let http = telemetry.listener(INPUT_NAME, "http");
        Arc::new(Receiver {
            cfg,
            fingerprint: OnceLock::new(),
            http_requests: http.events.clone(),
            http_bytes: http.bytes,
            bad_content_type: telemetry.parse_error(INPUT_NAME, reason::CONTENT_TYPE),
            bad_body: telemetry.parse_error(INPUT_NAME, reason::DECODE),
            too_large: telemetry.parse_error(INPUT_NAME, reason::TOO_LARGE),
            report: Tally::default(),
        })
    }

    /// Sets `dk_fingerprint` from the agent's host name (the first call wins).
    pub fn set_host(&self, hostname: &str) {
        let _ = self
            .fingerprint
            .set(format!("{hostname}_{}", env!("CARGO_PKG_VERSION")));
    }

    fn options(&self) -> std::borrow::Cow<'_, crate::options::Options> {
        match self.fingerprint.get() {
            Some(f) if self.cfg.options.fingerprint != *f => {
                let mut o = self.cfg.options.clone();
                o.fingerprint.clone_from(f);
                std::borrow::Cow::Owned(o)
            }
            _ => std::borrow::Cow::Borrowed(&self.cfg.options),
        }
    }

    /// The points of a trace request.
    pub fn traces(&self, req: &ExportTraceServiceRequest, origin: &Origin) -> Vec<Point> {
        trace::points(req, &self.options(), origin)
    }

    /// The points of a metrics request.
    pub fn metrics(&self, req: &ExportMetricsServiceRequest, origin: &Origin) -> Vec<Point> {
        metric::points(req, &self.options(), origin)
    }

    /// The points of a logs request.
    pub fn logs(&self, req: &ExportLogsServiceRequest, origin: &Origin) -> Vec<Point> {
        logs::points(req, &self.options(), origin, dk_proto::clock::now_ns())
    }

    /// Answers one OTLP/HTTP request for `signal`: 200 with an empty export response (in the
    /// request's encoding) and the points, or 400/413 saying what is wrong.
    pub fn http(&self, signal: Signal, req: &HttpRequest) -> HttpAnswer {
        self.http_requests.inc();
        self.http_bytes
            .inc_by(u64::try_from(req.body.len()).unwrap_or(u64::MAX));
        let origin = Origin {
            remote_ip: client_ip(req),
        };
        let answer = match signal {
            Signal::Traces => self
                .http_signal::<ExportTraceServiceRequest, ExportTraceServiceResponse>(req, |r| {
                    self.traces(r, &origin)
                }),
            Signal::Metrics => self
                .http_signal::<ExportMetricsServiceRequest, ExportMetricsServiceResponse>(
                    req,
                    |r| self.metrics(r, &origin),
                ),
            Signal::Logs => self
                .http_signal::<ExportLogsServiceRequest, ExportLogsServiceResponse>(req, |r| {
                    self.logs(r, &origin)
                }),
        };
        match answer {
            Ok((encoding, response, points)) => HttpAnswer {
                status: 200,
                content_type: match encoding {
                    Encoding::Protobuf => "application/x-protobuf",
                    Encoding::Json => "application/json",
                },
                body: response,
                points: vec![(signal.category(), points)],
            },
            Err(e) => {
                match &e {
                    BodyError::ContentType(_) => self.bad_content_type.inc(),
                    BodyError::TooLarge(_) => self.too_large.inc(),
                    BodyError::Gzip(_) | BodyError::Decode { .. } => self.bad_body.inc(),
                };
                if let Some(n) = self.report.due(1) {
                    tracing::warn!(
                        input = INPUT_NAME,
                        refused = n,
                        "OTLP/HTTP requests refused (counted in datakit_input_parse_errors_total); last: {e}"
                    );
                }
                HttpAnswer::text(e.status(), e.to_string())
            }
        }
    }

    fn http_signal<Req, Resp>(
        &self,
        req: &HttpRequest,
        map: impl FnOnce(&Req) -> Vec<Point>,
    ) -> Result<(Encoding, Vec<u8>, Vec<Point>), BodyError>
    where
        Req: body::OtlpRequest,
        Resp: Message + Default + Serialize,
    {
        let accept_other = self
            .cfg
            .expected_headers
            .iter()
            .any(|(k, v)| req.header(k) == Some(v.as_str()));
        let encoding = body::encoding(req.header("content-type"), accept_other)?;
        let bytes = body::inflate(
            &req.body,
            req.header("content-encoding"),
            self.cfg.max_payload,
        )?;
        let decoded: Req = body::decode(&bytes, encoding)?;
        let points = map(&decoded);
        let response = match encoding {
            Encoding::Protobuf => Resp::default().encode_to_vec(),
            Encoding::Json => serde_json::to_vec(&Resp::default()).unwrap_or_default(),
        };
        Ok((encoding, response, points))
    }
}

/// The client's address as proxies report it (`X-Forwarded-For`, `X-Real-IP`); the API
/// server forwards no peer address.
fn client_ip(req: &HttpRequest) -> String {
    req.header("x-forwarded-for")
        .and_then(|v| v.split(',').next())
        .or_else(|| req.header("x-real-ip"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}
