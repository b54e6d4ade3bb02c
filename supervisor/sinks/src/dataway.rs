//! The Dataway sink: Datakit-compatible uploads of point batches to `/v1/write/<category>`.
//!
//! A batch is encoded (protobuf `com.guance.Point` or line protocol) into bodies whose raw
//! size stays within `max_raw_body_size`; a single point larger than that is skipped and
//! counted. With `v2` the sink takes its batches from delivery as protobuf
//! ([`SinkInput::Protobuf`]): the queued records' point entries are copied into bodies as they
//! are, which are the bytes encoding the decoded points would give, so nothing is decoded
//! into owned points or encoded again. With `v1` it takes line protocol made straight from
//! the records ([`SinkInput::Lines`]: `encode_point_ref` of borrowed points, the bytes
//! `encode_point` gives for the owned ones) and cuts bodies at line ends. Profiling points are not line protocol: each is one
//! profile, uploaded as Datakit's multipart body to `/v1/upload/profiling`
//! ([`dk_proto::profile`]). Each body is gzipped (if enabled) and POSTed to every configured URL at once
//! (Datakit's deprecated fan-out) with Datakit's headers.
//!
//! Outcome of [`Sink::write`] for one batch:
//! - `Ok` when every body got a 2xx from every URL;
//! - [`SinkError::Unavailable`] as soon as one body got a 429, 5xx, 3xx, a timeout or a
//!   connection/TLS error from any URL: no further bodies are sent and the caller retries
//!   the whole batch, so bodies (and URLs) that had already succeeded are sent again
//!   (at-least-once: duplicates, never loss);
//! - otherwise [`SinkError::Rejected`] when some body got a 4xx (other than 429) from some
//!   URL: that body is dropped for that URL (counted in
//!   `datakit_io_dataway_http_drop_point_total`), the other bodies and URLs were delivered.
//!
//! Metrics (registered by [`DatawaySink::new`], counted per URL as Datakit does):
//! - `datakit_io_dataway_point_total{category,status}`: points sent, by HTTP status text
//!   (`OK`, `Internal Server Error`, ... `unknown` for transport errors) and `total`.
//! - `datakit_io_dataway_point_bytes_total{category,enc,status}`: body bytes; `enc="raw"` is
//!   the encoded size, `enc="gzip"` the size on the wire (gzipped when gzip is on).
//! - `datakit_io_dataway_api_latency_seconds{api,status}`: request latency by URL path and
//!   status text, or `timeout`, `connection-refused`, `reset-by-pear` (Datakit's spelling),
//!   `network-is-unreachable`, `unwrapped-url-error` for transport errors.
//! - `datakit_io_dataway_http_drop_point_total{category,error}`: points dropped on a 4xx
//!   (`error="write point 4xx"`).
//! - `datakit_io_dataway_skipped_point_total{category}`: points that cannot be sent alone
//!   within `max_raw_body_size` (or that line protocol cannot carry).
//! - `datakit_data_overuse`: unix time of the last `beyondDataUsage` 403, 0 once a write
//!   succeeds again.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dk_proto::sink::{Sink, SinkError, SinkInput};
use dk_proto::{Category, Point};
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::http::{ClientError, ClientOptions, build_client, error_chain};

/// The sink's name (the `sink` label of delivery's metrics).
pub const SINK_NAME: &str = "dataway";
/// Bodies of one category in flight at once (see `Sink::concurrent_writes`).
const CONCURRENT_WRITES: usize = 2;

/// Datakit's default `[dataway] max_raw_body_size` (1 MiB).
pub const DEFAULT_MAX_RAW_BODY_SIZE: usize = 1 << 20;
/// Datakit's default `[dataway] timeout_v2`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Datakit's default `[dataway] max_idle_conns_per_host`.
pub const DEFAULT_MAX_IDLE_CONNS_PER_HOST: usize = 64;
/// Datakit's default `[dataway] idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// `Content-Type` of protobuf bodies (`v2`).
pub const CONTENT_TYPE_PROTOBUF: &str = "application/protobuf; proto=com.guance.Point";
/// `Content-Type` of line-protocol bodies (`v1`).
pub const CONTENT_TYPE_LINE_PROTOCOL: &str = "application/line-protocol";

/// How often a persisting failure of one URL is logged again (changes are logged at once).
const LOG_REPEAT: Duration = Duration::from_secs(60);
/// How much of an error response body goes into messages.
const MAX_ERROR_BODY: usize = 1024;
/// The gzip level of bodies. Datakit uses Go's default (6); with zlib-rs, level 2 takes 2.7×
/// less CPU on log bodies for 12-20 % more bytes on the wire (docs/performance.md,
/// "Supervisor cost per point to Dataway").
const GZIP_LEVEL: u32 = 2;
/// Bodies larger than this are gzipped on the blocking pool instead of the async worker.
const GZIP_INLINE_LIMIT: usize = 64 << 10;
/// The `error` label of points dropped on a 4xx, as Datakit.
const DROP_4XX: &str = "write point 4xx";

/// The body encoding (`[dataway] content_encoding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `v1`: line protocol.
    V1,
    /// `v2`: protobuf `com.guance.Point` (Datakit's default).
    #[default]
    V2,
}

impl Encoding {
    /// The `Content-Type` header of bodies in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::V1 => CONTENT_TYPE_LINE_PROTOCOL,
            Encoding::V2 => CONTENT_TYPE_PROTOBUF,
        }
    }
}

/// The settings of the Dataway sink (`[dataway]` of `datakit.conf`).
#[derive(Clone, Debug)]
pub struct DatawayConfig {
    /// `[dataway] urls`, e.g. `https://openway.guance.com?token=tkn_xxx`; every body goes to
    /// all of them. Only scheme, host, port and query are used (Datakit ignores the path).
    pub urls: Vec<String>,
    /// `timeout_v2`: whole-request timeout, also the connect timeout (zero = 30 s).
    pub timeout: Duration,
    /// `http_proxy`: `http://` or `https://` proxy for all requests.
    pub http_proxy: Option<String>,
    /// `content_encoding`.
    pub content_encoding: Encoding,
    /// `gzip`: gzip bodies.
    pub gzip: bool,
    /// `max_raw_body_size`: largest body before gzip (zero = 1 MiB).
    pub max_raw_body_size: usize,
    /// `tls_insecure`: accept any server certificate.
    pub tls_insecure: bool,
    /// `max_idle_conns_per_host` (zero = 64).
    pub max_idle_conns_per_host: usize,
    /// `idle_timeout` (zero = 90 s).
    pub idle_timeout: Duration,
    /// The host name for `User-Agent` (`ENV_HOSTNAME` or the OS host name).
    pub hostname: String,
    /// The version for `User-Agent` (e.g. `1.84.1`).
    pub version: String,
    /// `X-Global-Tags` (sorted `k=v,k=v`) when the sinker is on.
    pub global_tags_header: Option<String>,
}

impl Default for DatawayConfig {
    /// Datakit's defaults, with no URL yet.
    fn default() -> Self {
        DatawayConfig {
            urls: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            http_proxy: None,
            content_encoding: Encoding::V2,
            gzip: true,
            max_raw_body_size: DEFAULT_MAX_RAW_BODY_SIZE,
            tls_insecure: false,
            max_idle_conns_per_host: DEFAULT_MAX_IDLE_CONNS_PER_HOST,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            hostname: String::new(),
            version: dk_proto::version().to_string(),
            global_tags_header: None,
        }
    }
}

/// Why the Dataway sink could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatawayError {
    /// `[dataway] urls` is empty.
    #[error("no Dataway URL: set [dataway] urls = [\"https://openway.<domain>?token=tkn_...\"]")]
    NoUrls,
    /// A URL does not parse or is not `http`/`https` with a host.
    #[error("invalid Dataway URL {url:?} in [dataway] urls: {reason}")]
    InvalidUrl {
        /// The URL, with its token masked.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A header value cannot be sent (control characters in the host name or global tags).
    #[error("cannot send header {name}: {reason}")]
    InvalidHeader {
        /// The header.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client could not be built (proxy, TLS).
    #[error("[dataway] {0}")]
    Client(#[from] ClientError),
}

/// `{category, status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryStatus {
    category: &'static str,
    status: &'static str,
}

/// `{category, enc, status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    category: &'static str,
    enc: &'static str,
    status: &'static str,
}

/// `{api, status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
    status: &'static str,
}

/// `{category, error}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    category: &'static str,
    error: &'static str,
}

/// `{category}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: &'static str,
}

fn latency_histogram() -> Histogram {
    // 5 ms .. ~41 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

#[derive(Clone)]
struct Metrics {
    points: Family<CategoryStatus, Counter>,
    bytes: Family<BytesLabels, Counter>,
    latency: Family<ApiLabels, Histogram, fn() -> Histogram>,
    dropped: Family<DropLabels, Counter>,
    skipped: Family<CategoryLabels, Counter>,
    overuse: Gauge,
}

impl Metrics {
    fn new() -> Self {
        Metrics {
            points: Family::default(),
            bytes: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            dropped: Family::default(),
            skipped: Family::default(),
            overuse: Gauge::default(),
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "datakit_io_dataway_point",
            "Dataway uploaded points, by category and HTTP status text (and total)",
            self.points.clone(),
        );
        registry.register(
            "datakit_io_dataway_point_bytes",
            "Dataway uploaded body bytes, by category, encoding (raw or gzip = on the wire) and HTTP status text",
            self.bytes.clone(),
        );
        registry.register(
            "datakit_io_dataway_api_latency_seconds",
            "Dataway HTTP request latency by API path and HTTP status text or transport error",
            self.latency.clone(),
        );
        registry.register(
            "datakit_io_dataway_http_drop_point",
            "Points dropped because Dataway refused their body with a 4xx",
            self.dropped.clone(),
        );
        registry.register(
            "datakit_io_dataway_skipped_point",
            "Points skipped while encoding: larger than max_raw_body_size on their own",
            self.skipped.clone(),
        );
        registry.register(
            "datakit_data_overuse",
            "Unix time Dataway last refused data with beyondDataUsage; 0 when writes succeed",
            self.overuse.clone(),
        );
    }
}

/// One configured Dataway URL.
struct Endpoint {
    /// `scheme://host[:port]`, for logs and messages (never the token).
    display: String,
    /// The upload URL of every category.
    urls: HashMap<Category, reqwest::Url>,
    /// `GET /v1/ntp` (Dataway's clock, for `[dataway.ntp]`).
    ntp: reqwest::Url,
    /// `POST /v1/upload/profiling` (profiles, one multipart body each).
    upload: reqwest::Url,
    /// Rate limiting of failure logs.
    log: Mutex<FailLog>,
}

/// What was last logged about one URL's failures.
#[derive(Default)]
struct FailLog {
    /// The kind of the current failure streak (`HTTP 500`, `timeout`...), `None` when healthy.
    kind: Option<String>,
    /// When the streak was last logged.
    logged: Option<Instant>,
    /// Failures since then that were not logged.
    suppressed: u64,
}

/// Dataway's route for its clock.
pub const NTP_PATH: &str = "/v1/ntp";

/// Dataway's clock (`GET /v1/ntp` of the first URL); see [`DatawaySink::clock`].
#[derive(Clone, Debug)]
pub struct DatawayClock {
    client: reqwest::Client,
    url: reqwest::Url,
    display: String,
}

/// Why Dataway's time could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NtpError {
    /// The request failed (connection, TLS, timeout).
    #[error("GET {endpoint}/v1/ntp: {reason}")]
    Request {
        /// `scheme://host[:port]`.
        endpoint: String,
        /// The error chain.
        reason: String,
    },
    /// Dataway answered another status than 2xx.
    #[error("GET {endpoint}/v1/ntp answered HTTP {status}: {body}")]
    Status {
        /// `scheme://host[:port]`.
        endpoint: String,
        /// The status code.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// The answer is not `{"timestamp_sec": <unix seconds>}`.
    #[error("GET {endpoint}/v1/ntp answered {body:?}, not {{\"timestamp_sec\": <unix seconds>}}")]
    Body {
        /// `scheme://host[:port]`.
        endpoint: String,
        /// The start of the answer.
        body: String,
    },
}

#[derive(serde::Deserialize)]
struct NtpAnswer {
    timestamp_sec: i64,
}

impl DatawayClock {
    /// The client and URL (with the token) of another API of the same Dataway (e.g.
    /// `/v1/election`), and `scheme://host[:port]` for messages.
    pub fn api(&self, path: &str) -> (reqwest::Client, reqwest::Url, String) {
        let mut url = self.url.clone();
        url.set_path(path);
        (self.client.clone(), url, self.display.clone())
    }

    /// Dataway's time minus the host's, in whole seconds, as Datakit measures it.
    ///
    /// # Errors
    /// [`NtpError`] when the request fails, the status is not 2xx or the body is not
    /// `{"timestamp_sec": N}`.
    pub async fn time_diff(&self) -> Result<i64, NtpError> {
        let resp = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| NtpError::Request {
                endpoint: self.display.clone(),
                reason: error_chain(&e),
            })?;
        let status = resp.status();
        let text = read_bounded(resp, MAX_ERROR_BODY).await;
        if !status.is_success() {
            return Err(NtpError::Status {
                endpoint: self.display.clone(),
                status: status.as_u16(),
                body: text.trim().to_string(),
            });
        }
        let answer: NtpAnswer = serde_json::from_str(&text).map_err(|_| NtpError::Body {
            endpoint: self.display.clone(),
            body: text.trim().to_string(),
        })?;
        // Against the host clock: the offset in force must not be measured against itself.
        Ok(answer.timestamp_sec - dk_proto::clock::host_now_ns() / 1_000_000_000)
    }
}

/// What one POST of one body to one URL came to.
enum Outcome {
    Ok,
    Rejected(String),
    Unavailable(String),
}

/// The Dataway sink; see the module documentation.
pub struct DatawaySink {
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    encoding: Encoding,
    gzip: bool,
    max_raw_body_size: usize,
    timeout: Duration,
    metrics: Metrics,
    pkg_ids: XidGen,
    version: String,
}

impl std::fmt::Debug for DatawaySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatawaySink")
            .field(
                "endpoints",
                &self
                    .endpoints
                    .iter()
                    .map(|e| &e.display)
                    .collect::<Vec<_>>(),
            )
            .field("encoding", &self.encoding)
            .field("gzip", &self.gzip)
            .field("max_raw_body_size", &self.max_raw_body_size)
            .finish_non_exhaustive()
    }
}

impl DatawaySink {
    /// Checks the URLs, builds the HTTP client and registers the sink's metrics in `registry`.
    ///
    /// # Errors
    /// [`DatawayError`] for no or invalid URLs, an invalid proxy, or header values that
    /// cannot be sent.
    pub fn new(cfg: DatawayConfig, registry: &mut Registry) -> Result<Self, DatawayError> {
        if cfg.urls.is_empty() {
            return Err(DatawayError::NoUrls);
        }
        let endpoints = cfg
            .urls
            .iter()
            .map(|u| parse_endpoint(u))
            .collect::<Result<Vec<_>, _>>()?;

        let mut headers = HeaderMap::new();
        let ua = format!(
            "datakit-{}-{}/{}/{}",
            go_os(),
            go_arch(),
            cfg.version,
            cfg.hostname
        );
        headers.insert(
            reqwest::header::USER_AGENT,
            header_value("User-Agent", ua.as_bytes())?,
        );
        headers.insert(
            reqwest::header::REFERER,
            HeaderValue::from_static("DataKit"),
        );
        if let Some(tags) = cfg.global_tags_header.as_deref().filter(|t| !t.is_empty()) {
            headers.insert(
                HeaderName::from_static("x-global-tags"),
                header_value("X-Global-Tags", tags.as_bytes())?,
            );
        }

        let timeout = if cfg.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            cfg.timeout
        };
        let client = build_client(&ClientOptions {
            timeout,
            proxy: cfg.http_proxy.clone(),
            tls_insecure: cfg.tls_insecure,
            max_idle_per_host: if cfg.max_idle_conns_per_host == 0 {
                DEFAULT_MAX_IDLE_CONNS_PER_HOST
            } else {
                cfg.max_idle_conns_per_host
            },
            idle_timeout: if cfg.idle_timeout.is_zero() {
                DEFAULT_IDLE_TIMEOUT
            } else {
                cfg.idle_timeout
            },
            default_headers: headers,
        })?;

        let metrics = Metrics::new();
        metrics.register(registry);
        if cfg.tls_insecure {
            tracing::warn!("[dataway] tls_insecure = true: Dataway certificates are not verified");
        }
        Ok(DatawaySink {
            client,
            endpoints,
            encoding: cfg.content_encoding,
            gzip: cfg.gzip,
            max_raw_body_size: if cfg.max_raw_body_size == 0 {
                DEFAULT_MAX_RAW_BODY_SIZE
            } else {
                cfg.max_raw_body_size
            },
            timeout,
            metrics,
            pkg_ids: XidGen::new(&cfg.hostname),
            version: cfg.version.clone(),
        })
    }

    /// Dataway's clock as `[dataway.ntp]` reads it: the first URL's `/v1/ntp`, through the
    /// sink's own HTTP client (same proxy, TLS settings, headers and connection pool).
    pub fn clock(&self) -> Option<DatawayClock> {
        let ep = self.endpoints.first()?;
        Some(DatawayClock {
            client: self.client.clone(),
            url: ep.ntp.clone(),
            display: ep.display.clone(),
        })
    }

    /// `scheme://host[:port]` of every configured URL (no tokens), in configuration order.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.display.clone()).collect()
    }

    /// Sends the bodies `splitter` cuts; `size` is about the raw bytes of the whole batch.
    async fn write_batch(
        &self,
        category: Category,
        mut splitter: Splitter<'_>,
        size: usize,
    ) -> Result<(), SinkError> {
        let cat = category.name();
        let mut raw = Vec::with_capacity(self.max_raw_body_size.min(size.max(64)));
        let mut bodies = 0usize;
        let mut rejected: Option<String> = None;
        let mut rejected_bodies = 0usize;
        loop {
            raw.clear();
            let Some(npts) = splitter.next_body(&mut raw) else {
                break;
            };
            bodies += 1;
            let raw_len = raw.len();
            let payload = if self.gzip {
                let (back, gz) = gzip(std::mem::take(&mut raw))
                    .await
                    .map_err(|message| self.unavailable(message))?;
                raw = back;
                gz
            } else {
                Bytes::copy_from_slice(&raw)
            };
            let body = Body {
                category,
                npts,
                raw_len,
                payload,
                multipart: None,
            };
            let outcomes =
                futures::future::join_all(self.endpoints.iter().map(|ep| self.post(ep, &body)))
                    .await;
            let mut body_rejected = false;
            for outcome in outcomes {
                match outcome {
                    Outcome::Ok => {}
                    Outcome::Unavailable(message) => {
                        self.count_skipped(cat, splitter.skipped);
                        return Err(self.unavailable(message));
                    }
                    Outcome::Rejected(message) => {
                        body_rejected = true;
                        rejected.get_or_insert(message);
                    }
                }
            }
            if body_rejected {
                rejected_bodies += 1;
            }
        }
        self.count_skipped(cat, splitter.skipped);
        if let Some(e) = splitter.broken {
            return Err(SinkError::Rejected {
                sink: SINK_NAME.into(),
                message: format!("the rest of the {cat} batch is not valid protobuf: {e}"),
            });
        }
        if let Some(first) = rejected {
            return Err(SinkError::Rejected {
                sink: SINK_NAME.into(),
                message: format!("{rejected_bodies} of {bodies} bodies refused; first: {first}"),
            });
        }
        if bodies == 0 && splitter.skipped > 0 {
            return Err(SinkError::Rejected {
                sink: SINK_NAME.into(),
                message: format!(
                    "all {} {cat} points are larger than max_raw_body_size ({} bytes) on their own or cannot be encoded; raise [dataway] max_raw_body_size",
                    splitter.skipped, self.max_raw_body_size
                ),
            });
        }
        Ok(())
    }

    /// Uploads each profile point as Datakit's multipart body to every URL's
    /// `/v1/upload/profiling` (see [`dk_proto::profile`]). Outcomes as for other categories:
    /// a retryable failure stops the batch (resent whole), a 4xx or a point that is not a
    /// profile drops that point.
    async fn write_profiles(&self, points: &[Point]) -> Result<(), SinkError> {
        let cat = Category::Profiling.name();
        let mut rejected: Option<String> = None;
        let mut refused = 0usize;
        for (i, point) in points.iter().enumerate() {
            let seed = unix_now() as u64 ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (boundary, payload) = match dk_proto::profile::upload_body(point, seed) {
                Ok(b) => b,
                Err(e) => {
                    self.count_skipped(cat, 1);
                    refused += 1;
                    rejected.get_or_insert(e.to_string());
                    continue;
                }
            };
            let body = Body {
                category: Category::Profiling,
                npts: 1,
                raw_len: payload.len(),
                payload: Bytes::from(payload),
                multipart: Some(format!("multipart/form-data; boundary={boundary}")),
            };
            let outcomes =
                futures::future::join_all(self.endpoints.iter().map(|ep| self.post(ep, &body)))
                    .await;
            let mut this_refused = false;
            for outcome in outcomes {
                match outcome {
                    Outcome::Ok => {}
                    Outcome::Unavailable(message) => return Err(self.unavailable(message)),
                    Outcome::Rejected(message) => {
                        this_refused = true;
                        rejected.get_or_insert(message);
                    }
                }
            }
            refused += usize::from(this_refused);
        }
        match rejected {
            Some(first) => Err(SinkError::Rejected {
                sink: SINK_NAME.into(),
                message: format!(
                    "{refused} of {} profiles refused; first: {first}",
                    points.len()
                ),
            }),
            None => Ok(()),
        }
    }

    fn count_skipped(&self, cat: &'static str, skipped: usize) {
        if skipped > 0 {
            self.metrics
                .skipped
                .get_or_create(&CategoryLabels { category: cat })
                .inc_by(skipped as u64);
        }
    }

    fn unavailable(&self, message: String) -> SinkError {
        SinkError::Unavailable {
            sink: SINK_NAME.into(),
            message,
        }
    }

    /// POSTs one body to one URL and accounts for it.
    async fn post(&self, ep: &Endpoint, body: &Body) -> Outcome {
        let cat = body.category.name();
        let (api, req) = if let Some(content_type) = &body.multipart {
            // A profile: Datakit's multipart upload, never gzipped.
            let req = self
                .client
                .post(ep.upload.clone())
                .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
                .header("X-Datakit-Version", self.version.as_str())
                .body(body.payload.clone());
            (dk_proto::profile::UPLOAD_PATH, req)
        } else {
            let api = api_path(body.category);
            let Some(url) = ep.urls.get(&body.category) else {
                return Outcome::Rejected(format!("category {cat} has no upload path"));
            };
            let mut req = self
                .client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, self.encoding.content_type())
                .header("X-Points", body.npts.to_string())
                .header("X-Pkg-Id", self.pkg_ids.next_pkg_id())
                .body(body.payload.clone());
            if self.gzip {
                req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
            }
            (api, req)
        };
        let start = Instant::now();
        let result = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let text = read_bounded(resp, MAX_ERROR_BODY).await;
                Ok((status, text))
            }
            Err(e) => Err(e),
        };
        let elapsed = start.elapsed().as_secs_f64();

        let (latency_status, status_text, outcome, kind) = match result {
            Ok((status, text)) => {
                let reason = status_text(status);
                let code = status.as_u16();
                let detail = format!(
                    "{} answered HTTP {code} {reason} to {api}: {}",
                    ep.display,
                    text.trim()
                );
                let outcome = if status.is_success() {
                    Outcome::Ok
                } else if code == 429 {
                    Outcome::Unavailable(format!("{detail}; throttled, retrying later"))
                } else if status.is_client_error() {
                    if code == 403 && text.contains("beyondDataUsage") {
                        self.metrics.overuse.set(unix_now());
                        Outcome::Rejected(format!(
                            "{detail}; beyondDataUsage: the workspace is over its data quota, raise it in the Guance console"
                        ))
                    } else {
                        Outcome::Rejected(detail)
                    }
                } else if status.is_redirection() {
                    Outcome::Unavailable(format!(
                        "{detail}; Dataway redirects, put the target URL in [dataway] urls"
                    ))
                } else {
                    Outcome::Unavailable(detail)
                };
                let kind = if code == 403 && text.contains("beyondDataUsage") {
                    "HTTP 403 beyondDataUsage".to_string()
                } else {
                    format!("HTTP {code}")
                };
                (reason, reason, outcome, kind)
            }
            Err(e) => {
                let class = transport_class(&e);
                let message = if e.is_timeout() {
                    format!(
                        "POST {api} to {} timed out after {:?}: {}; check the network path and [dataway] timeout_v2",
                        ep.display,
                        self.timeout,
                        error_chain(&e)
                    )
                } else {
                    let chain = error_chain(&e);
                    let hint = if chain.contains("certificate") {
                        "the server certificate is not trusted: add its CA to the system trust store, or set [dataway] tls_insecure = true"
                    } else {
                        "check the URL, proxy and TLS settings of [dataway]"
                    };
                    format!("POST {api} to {} failed: {chain}; {hint}", ep.display)
                };
                (
                    class,
                    "unknown",
                    Outcome::Unavailable(message),
                    class.to_string(),
                )
            }
        };

        self.metrics
            .latency
            .get_or_create(&ApiLabels {
                api,
                status: latency_status,
            })
            .observe(elapsed);
        for status in ["total", status_text] {
            self.metrics
                .points
                .get_or_create(&CategoryStatus {
                    category: cat,
                    status,
                })
                .inc_by(body.npts as u64);
            self.metrics
                .bytes
                .get_or_create(&BytesLabels {
                    category: cat,
                    enc: "raw",
                    status,
                })
                .inc_by(body.raw_len as u64);
            self.metrics
                .bytes
                .get_or_create(&BytesLabels {
                    category: cat,
                    enc: "gzip",
                    status,
                })
                .inc_by(body.payload.len() as u64);
        }
        match &outcome {
            Outcome::Ok => {
                if self.metrics.overuse.get() != 0 {
                    self.metrics.overuse.set(0);
                }
                log_recovery(ep);
            }
            Outcome::Rejected(message) => {
                self.metrics
                    .dropped
                    .get_or_create(&DropLabels {
                        category: cat,
                        error: DROP_4XX,
                    })
                    .inc_by(body.npts as u64);
                log_failure(ep, kind, message, body.npts, "dropped");
            }
            Outcome::Unavailable(message) => {
                log_failure(ep, kind, message, body.npts, "kept for retry");
            }
        }
        outcome
    }
}

impl Sink for DatawaySink {
    fn name(&self) -> &str {
        SINK_NAME
    }

    fn write<'a>(
        &'a self,
        category: Category,
        points: &'a [Point],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        if category == Category::Profiling {
            return Box::pin(self.write_profiles(points));
        }
        let size = points.iter().map(|p| p.approx_size() + 16).sum();
        let splitter = Splitter::new(
            Items::Points(points.iter()),
            self.encoding,
            self.max_raw_body_size,
        );
        Box::pin(self.write_batch(category, splitter, size))
    }

    /// `v2` takes the queued protobuf records as they are (bodies are their points' entries,
    /// the bytes encoding the decoded points gives); `v1` takes line protocol made from them
    /// (the lines encoding the decoded points gives). Neither decodes into owned points.
    fn input(&self, max_cache_count: usize) -> SinkInput {
        match self.encoding {
            Encoding::V2 => SinkInput::Protobuf {
                points: max_cache_count,
                bytes: usize::MAX,
            },
            Encoding::V1 => SinkInput::Lines {
                points: max_cache_count,
                bytes: usize::MAX,
            },
        }
    }

    /// Profiles are uploaded from points (one multipart body each), which protobuf carries
    /// whole: that category takes protobuf with either encoding.
    fn input_for(&self, category: Category, max_cache_count: usize) -> SinkInput {
        match category {
            Category::Profiling => SinkInput::Protobuf {
                points: max_cache_count,
                bytes: usize::MAX,
            },
            _ => self.input(max_cache_count),
        }
    }

    /// Two bodies of a category in flight: the next is cut and gzipped while Dataway answers
    /// the one before.
    fn concurrent_writes(&self) -> usize {
        CONCURRENT_WRITES
    }

    fn write_lines<'a>(
        &'a self,
        category: Category,
        lines: &'a [u8],
        _points: usize,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        if self.encoding == Encoding::V2 || category == Category::Profiling {
            // Neither asks for lines (see `input_for`): retried, as any sink refusing an input.
            let message = format!(
                "the {category} batch came as line protocol, which this sink takes only for content_encoding v1 and no profiles"
            );
            return Box::pin(async move {
                Err(SinkError::Unavailable {
                    sink: SINK_NAME.into(),
                    message,
                })
            });
        }
        let splitter = Splitter::new(Items::Lines(lines), Encoding::V1, self.max_raw_body_size);
        Box::pin(self.write_batch(category, splitter, lines.len()))
    }

    fn write_protobuf<'a>(
        &'a self,
        category: Category,
        message: &'a [u8],
        _points: usize,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        if self.encoding == Encoding::V1 || category == Category::Profiling {
            // Only `v2` asks for protobuf, but for profiles; should `v1` get it, its points are
            // re-encoded. Profiles are uploaded one multipart body per point, built from the
            // points.
            return Box::pin(async move {
                let points = dk_proto::pb::decode(message).map_err(|e| SinkError::Rejected {
                    sink: SINK_NAME.into(),
                    message: format!("the {category} batch is not valid protobuf: {e}"),
                })?;
                self.write(category, &points).await
            });
        }
        let items = Items::Entries(dk_proto::pb::entries(message));
        let splitter = Splitter::new(items, Encoding::V2, self.max_raw_body_size);
        Box::pin(self.write_batch(category, splitter, message.len()))
    }
}

/// One encoded body of one category.
struct Body {
    category: Category,
    npts: usize,
    raw_len: usize,
    payload: Bytes,
    /// `Some(Content-Type)` for a profile's multipart upload.
    multipart: Option<String>,
}

/// The points of a batch, as [`Splitter`] reads them.
enum Items<'a> {
    /// Owned points, encoded one by one.
    Points(std::slice::Iter<'a, Point>),
    /// Points already encoded as protobuf entries (concatenated, they are a `v2` body).
    Entries(dk_proto::pb::Entries<'a>),
    /// Points already encoded as line protocol, each line ending in `\n` (an empty line is a
    /// point with nothing to write); what is left to read.
    Lines(&'a [u8]),
}

/// Cuts a batch into bodies of at most `max` raw bytes, point by point.
struct Splitter<'a> {
    items: Items<'a>,
    encoding: Encoding,
    max: usize,
    /// The encoding of a point that did not fit the previous body.
    pending: Vec<u8>,
    has_pending: bool,
    /// Points skipped so far (too large alone, or nothing to encode).
    skipped: usize,
    /// Why the entries stopped early (the points after it are not sent).
    broken: Option<dk_proto::pb::PbError>,
}

impl<'a> Splitter<'a> {
    fn new(items: Items<'a>, encoding: Encoding, max: usize) -> Self {
        Splitter {
            items,
            encoding,
            max,
            pending: Vec::new(),
            has_pending: false,
            skipped: 0,
            broken: None,
        }
    }

    /// Appends the encoding of the next point to `out`; `false` when there is none left.
    fn next_item(&mut self, out: &mut Vec<u8>) -> bool {
        match &mut self.items {
            Items::Points(points) => {
                let Some(p) = points.next() else {
                    return false;
                };
                match self.encoding {
                    Encoding::V1 => dk_proto::lineproto::encode_point(p, out),
                    Encoding::V2 => dk_proto::pb::encode_to(std::slice::from_ref(p), out),
                }
            }
            Items::Entries(entries) => match entries.next() {
                Some(Ok(entry)) => out.extend_from_slice(entry),
                Some(Err(e)) => {
                    self.broken = Some(e);
                    return false;
                }
                None => return false,
            },
            Items::Lines(rest) => {
                if rest.is_empty() {
                    return false;
                }
                let (line, tail) = match memchr::memchr(b'\n', rest) {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (&rest[..], &[][..]),
                };
                out.extend_from_slice(line);
                *rest = tail;
            }
        }
        true
    }

    /// Fills `out` (empty on entry) with the next body; returns its point count, or `None`
    /// when every point has been placed or skipped.
    fn next_body(&mut self, out: &mut Vec<u8>) -> Option<usize> {
        let mut n = 0usize;
        if self.has_pending {
            out.extend_from_slice(&self.pending);
            self.has_pending = false;
            n = 1;
        }
        loop {
            let mark = out.len();
            let sep = usize::from(self.encoding == Encoding::V1 && mark > 0);
            if sep == 1 {
                out.push(b'\n');
            }
            let start = out.len();
            if !self.next_item(out) {
                out.truncate(mark);
                break;
            }
            let size = out.len() - start;
            if size == 0 || size > self.max {
                // Nothing line protocol can carry, or too large to ever be sent.
                out.truncate(mark);
                self.skipped += 1;
                continue;
            }
            if out.len() > self.max {
                self.pending.clear();
                self.pending.extend_from_slice(&out[start..]);
                self.has_pending = true;
                out.truncate(mark);
                return Some(n);
            }
            n += 1;
        }
        (n > 0).then_some(n)
    }
}

/// Gzips a body; large ones on the blocking pool. Gives the raw buffer back for reuse.
async fn gzip(raw: Vec<u8>) -> Result<(Vec<u8>, Bytes), String> {
    fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(raw.len() / 4 + 64),
            flate2::Compression::new(GZIP_LEVEL),
        );
        enc.write_all(raw)?;
        enc.finish()
    }
    if raw.len() <= GZIP_INLINE_LIMIT {
        let gz = compress(&raw).map_err(|e| format!("gzip of a body failed: {e}"))?;
        return Ok((raw, Bytes::from(gz)));
    }
    tokio::task::spawn_blocking(move || {
        let gz = compress(&raw);
        (raw, gz)
    })
    .await
    .map_err(|e| format!("gzip task failed: {e}"))
    .and_then(|(raw, gz)| {
        gz.map(|gz| (raw, Bytes::from(gz)))
            .map_err(|e| format!("gzip of a body failed: {e}"))
    })
}

/// Reads up to `limit` bytes of a response body as text (the rest is discarded unread).
async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - buf.len());
                buf.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Logs a failure of one URL when its kind changes, else at most every [`LOG_REPEAT`].
fn log_failure(ep: &Endpoint, kind: String, message: &str, npts: usize, fate: &str) {
    let Ok(mut log) = ep.log.lock() else {
        return;
    };
    let now = Instant::now();
    let changed = log.kind.as_deref() != Some(kind.as_str());
    let due = log
        .logged
        .is_none_or(|t| now.duration_since(t) >= LOG_REPEAT);
    if changed || due {
        let suppressed = std::mem::take(&mut log.suppressed);
        tracing::warn!(
            endpoint = %ep.display,
            points = npts,
            similar_failures_not_logged = suppressed,
            "Dataway upload failed, body {fate}: {message}"
        );
        log.kind = Some(kind);
        log.logged = Some(now);
    } else {
        log.suppressed += 1;
    }
}

/// Logs once that a failing URL works again.
fn log_recovery(ep: &Endpoint) {
    let Ok(mut log) = ep.log.lock() else {
        return;
    };
    if let Some(kind) = log.kind.take() {
        let suppressed = std::mem::take(&mut log.suppressed);
        log.logged = None;
        tracing::info!(
            endpoint = %ep.display,
            previous = %kind,
            similar_failures_not_logged = suppressed,
            "Dataway uploads succeed again"
        );
    }
}

/// Datakit's `http.StatusText`-style label of a status.
fn status_text(status: reqwest::StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("unknown")
}

/// Datakit's label for a transport error in the latency metric.
fn transport_class(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        return "timeout";
    }
    let chain = error_chain(e).to_ascii_lowercase();
    if chain.contains("timed out") {
        "timeout"
    } else if chain.contains("connection refused") {
        "connection-refused"
    } else if chain.contains("reset by peer") {
        "reset-by-pear"
    } else if chain.contains("network is unreachable") {
        "network-is-unreachable"
    } else {
        "unwrapped-url-error"
    }
}

/// The upload path of a category, as a static string for metric labels.
fn api_path(c: Category) -> &'static str {
    match c {
        Category::Metric => "/v1/write/metric",
        Category::MetricDeprecated => "/v1/write/metrics",
        Category::Network => "/v1/write/network",
        Category::KeyEvent => "/v1/write/keyevent",
        Category::Object => "/v1/write/object",
        Category::ObjectChange => "/v1/write/object_change",
        Category::CustomObject => "/v1/write/custom_object",
        Category::Logging => "/v1/write/logging",
        Category::Tracing => "/v1/write/tracing",
        Category::Rum => "/v1/write/rum",
        Category::Security => "/v1/write/security",
        Category::Profiling => "/v1/write/profiling",
        Category::DialTesting => "/v1/write/dialtesting",
        Category::DynamicDw => "/v1/write/dynamic_dw",
    }
}

fn header_value(name: &'static str, v: &[u8]) -> Result<HeaderValue, DatawayError> {
    HeaderValue::from_bytes(v).map_err(|e| DatawayError::InvalidHeader {
        name,
        reason: format!("{e}: remove control characters"),
    })
}

/// Parses one `[dataway] urls` entry into its per-category upload URLs.
fn parse_endpoint(raw: &str) -> Result<Endpoint, DatawayError> {
    let invalid = |reason: String| DatawayError::InvalidUrl {
        url: redact_token(raw),
        reason,
    };
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme {:?} is not supported; use https:// (or http://)",
            url.scheme()
        )));
    }
    let Some(host) = url.host_str() else {
        return Err(invalid("no host".into()));
    };
    let origin = match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    if !matches!(url.path(), "" | "/") {
        tracing::warn!(
            endpoint = %origin,
            path = url.path(),
            "the path of a [dataway] url is ignored, as Datakit does: uploads go to /v1/write/<category>"
        );
    }
    if !url
        .query_pairs()
        .any(|(k, v)| k == "token" && !v.is_empty())
    {
        tracing::warn!(
            endpoint = %origin,
            "[dataway] url has no token= query parameter; Dataway will refuse uploads"
        );
    }
    let query = go_sorted_query(&url);
    let mut urls = HashMap::with_capacity(Category::ALL.len());
    for c in Category::ALL {
        let mut u = url.clone();
        // Userinfo and fragment are dropped, as Datakit builds `scheme://host/path?query`.
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_fragment(None);
        u.set_path(api_path(c));
        u.set_query((!query.is_empty()).then_some(query.as_str()));
        urls.insert(c, u);
    }
    let mut ntp = url.clone();
    let _ = ntp.set_username("");
    let _ = ntp.set_password(None);
    ntp.set_fragment(None);
    ntp.set_path(NTP_PATH);
    ntp.set_query((!query.is_empty()).then_some(query.as_str()));
    let mut upload = ntp.clone();
    upload.set_path(dk_proto::profile::UPLOAD_PATH);
    Ok(Endpoint {
        display: origin,
        urls,
        ntp,
        upload,
        log: Mutex::new(FailLog::default()),
    })
}

/// The query re-encoded as Go's `url.Values.Encode`: keys sorted (values of a key keep their
/// order), `QueryEscape`d.
fn go_sorted_query(url: &reqwest::Url) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        go_query_escape(&k, &mut out);
        out.push('=');
        go_query_escape(&v, &mut out);
    }
    out
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest `%XX`.
fn go_query_escape(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
}

/// A URL for messages: the value of `token=` is cut to its first 4 characters.
pub fn redact_token(url: &str) -> String {
    let Some(i) = url.find("token=") else {
        return url.to_string();
    };
    let start = i + "token=".len();
    let end = url[start..].find('&').map_or(url.len(), |j| start + j);
    let token = &url[start..end];
    let keep: String = token.chars().take(4).collect();
    format!("{}{keep}***{}", &url[..start], &url[end..])
}

/// Go's `runtime.GOOS` for this build.
fn go_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

/// Go's `runtime.GOARCH` for this build.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Globally unique ids in the format of Go's `rs/xid` (20 base32hex characters: time,
/// machine, process, counter), used for `X-Pkg-Id: dk_<xid>`.
struct XidGen {
    machine: [u8; 3],
    pid: u16,
    counter: AtomicU32,
}

impl XidGen {
    fn new(hostname: &str) -> Self {
        // FNV-1a of the host name stands in for xid's machine id.
        let mut h: u32 = 0x811c_9dc5;
        for b in hostname.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        let [a, b, c, _] = h.to_be_bytes();
        XidGen {
            machine: [a, b, c],
            pid: (std::process::id() & 0xffff) as u16,
            counter: AtomicU32::new(rand::random::<u32>()),
        }
    }

    fn next_pkg_id(&self) -> String {
        let secs = u32::try_from(unix_now()).unwrap_or(u32::MAX);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; 12];
        raw[..4].copy_from_slice(&secs.to_be_bytes());
        raw[4..7].copy_from_slice(&self.machine);
        raw[7..9].copy_from_slice(&self.pid.to_be_bytes());
        raw[9..12].copy_from_slice(&n.to_be_bytes()[1..]);
        let mut out = String::with_capacity(23);
        out.push_str("dk_");
        xid_encode(&raw, &mut out);
        out
    }
}

/// Encodes 12 bytes as 20 base32hex lowercase characters (xid's alphabet, no padding).
fn xid_encode(raw: &[u8; 12], out: &mut String) {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut acc: u128 = 0;
    for &b in raw {
        acc = (acc << 8) | u128::from(b);
    }
    // 96 bits -> 20 groups of 5 bits (the last group padded with 4 zero bits).
    acc <<= 4;
    for i in (0..20).rev() {
        let idx = ((acc >> (i * 5)) & 31) as usize;
        out.push(char::from(ALPHABET[idx]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dk_proto::Value;

    fn point(i: usize, pad: usize) -> Point {
        Point::new("cpu", 1_700_000_000_000_000_000 + i as i64)
            .tag("host", "h1")
            .field("usage", Value::F(i as f64))
            .field("pad", Value::S("x".repeat(pad)))
    }

    /// The line protocol of a `PBPoints` message's points as delivery hands it to `v1`
    /// (`SinkInput::Lines`): one line each ending in `\n`, empty for a point with nothing to
    /// write.
    fn lines_of(message: &[u8]) -> Result<Vec<u8>, dk_proto::pb::PbError> {
        let mut lines = Vec::new();
        dk_proto::pb::decode_each(message, |p| {
            dk_proto::lineproto::encode_point_ref(p, &mut lines);
            lines.push(b'\n');
        })?;
        Ok(lines)
    }

    fn split_all(points: &[Point], enc: Encoding, max: usize) -> (Vec<Vec<u8>>, Vec<usize>, usize) {
        split_items(Items::Points(points.iter()), enc, max)
    }

    fn split_items(
        items: Items<'_>,
        enc: Encoding,
        max: usize,
    ) -> (Vec<Vec<u8>>, Vec<usize>, usize) {
        let mut s = Splitter::new(items, enc, max);
        let mut bodies = Vec::new();
        let mut counts = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let Some(n) = s.next_body(&mut buf) else {
                break;
            };
            bodies.push(buf.clone());
            counts.push(n);
        }
        (bodies, counts, s.skipped)
    }

    #[test]
    fn splits_protobuf_bodies_within_the_limit_and_keeps_every_point() {
        let points: Vec<Point> = (0..50).map(|i| point(i, 100)).collect();
        let (bodies, counts, skipped) = split_all(&points, Encoding::V2, 1000);
        assert_eq!(skipped, 0);
        assert!(bodies.len() > 5, "{} bodies", bodies.len());
        assert!(bodies.iter().all(|b| b.len() <= 1000));
        let mut decoded = Vec::new();
        for (b, n) in bodies.iter().zip(&counts) {
            let pts = dk_proto::pb::decode(b).unwrap();
            assert_eq!(pts.len(), *n);
            decoded.extend(pts);
        }
        assert_eq!(decoded, points);
    }

    #[test]
    fn bodies_cut_from_queued_records_are_those_of_the_decoded_points() {
        // Records of various sizes, one point larger than every limit but the last.
        let mut points: Vec<Point> = (0..60).map(|i| point(i, (i * 37) % 300)).collect();
        points.insert(20, point(999, 2000));
        let mut message = Vec::new();
        for record in points.chunks(7) {
            message.extend_from_slice(&dk_proto::pb::encode(record));
        }
        for max in [300, 700, 1000, 5000, 1 << 20] {
            let from_records = split_items(
                Items::Entries(dk_proto::pb::entries(&message)),
                Encoding::V2,
                max,
            );
            assert_eq!(
                from_records,
                split_all(&points, Encoding::V2, max),
                "max {max}"
            );
            let (bodies, counts, skipped) = from_records;
            assert!(bodies.iter().all(|b| b.len() <= max));
            let want: Vec<Point> = points
                .iter()
                .filter(|p| dk_proto::pb::encode(std::slice::from_ref(p)).len() <= max)
                .cloned()
                .collect();
            assert_eq!(skipped, points.len() - want.len());
            assert!(max < 2000 || skipped == 0);
            let decoded: Vec<Point> = bodies
                .iter()
                .zip(&counts)
                .flat_map(|(b, n)| {
                    let pts = dk_proto::pb::decode(b).unwrap();
                    assert_eq!(pts.len(), *n);
                    pts
                })
                .collect();
            assert_eq!(decoded, want, "max {max}");
        }
    }

    #[test]
    fn line_protocol_bodies_from_queued_records_are_those_of_the_decoded_points() {
        let mut points: Vec<Point> = (0..60).map(|i| point(i, (i * 37) % 300)).collect();
        points.insert(20, point(999, 2000));
        // A point with no field has no line: skipped, as when encoded from the owned point.
        points.insert(40, Point::new("empty", 1).tag("host", "h1"));
        let mut message = Vec::new();
        for record in points.chunks(7) {
            message.extend_from_slice(&dk_proto::pb::encode(record));
        }
        let lines = lines_of(&message).unwrap();
        assert_eq!(lines.iter().filter(|b| **b == b'\n').count(), points.len());
        for max in [300, 700, 1000, 5000, 1 << 20] {
            let from_records = split_items(Items::Lines(&lines), Encoding::V1, max);
            assert_eq!(
                from_records,
                split_all(&points, Encoding::V1, max),
                "max {max}"
            );
            let (bodies, counts, skipped) = from_records;
            assert!(bodies.iter().all(|b| b.len() <= max && !b.ends_with(b"\n")));
            assert_eq!(counts.iter().sum::<usize>() + skipped, points.len());
            assert!(max < 2100 || skipped == 1, "max {max}: {skipped} skipped");
        }
        assert!(lines_of(&message[..message.len() - 3]).is_err());
    }

    #[test]
    fn splits_line_protocol_bodies_and_skips_an_oversized_point() {
        let mut points: Vec<Point> = (0..20).map(|i| point(i, 50)).collect();
        points.insert(7, point(99, 5000));
        let (bodies, counts, skipped) = split_all(&points, Encoding::V1, 400);
        assert_eq!(skipped, 1);
        assert!(bodies.iter().all(|b| b.len() <= 400));
        assert_eq!(counts.iter().sum::<usize>(), 20);
        let opts = dk_proto::lineproto::DecodeOptions::new(dk_proto::lineproto::Precision::Ns, 1);
        let decoded: Vec<Point> = bodies
            .iter()
            .flat_map(|b| dk_proto::lineproto::decode(b, &opts).unwrap())
            .collect();
        points.remove(7);
        assert_eq!(decoded, points);
    }

    #[test]
    fn re_encodes_the_query_sorted_as_go_does() {
        let url = reqwest::Url::parse("https://h.example/x?token=tkn_abc&b=2+3&a=%21").unwrap();
        assert_eq!(go_sorted_query(&url), "a=%21&b=2+3&token=tkn_abc");
    }

    #[test]
    fn builds_category_urls_from_scheme_host_and_query_only() {
        let ep = parse_endpoint("https://user:pw@openway.example.com:8443/some/path?token=tkn_1#f")
            .unwrap();
        assert_eq!(ep.display, "https://openway.example.com:8443");
        assert_eq!(
            ep.urls[&Category::Logging].as_str(),
            "https://openway.example.com:8443/v1/write/logging?token=tkn_1"
        );
        assert_eq!(
            ep.urls[&Category::MetricDeprecated].path(),
            "/v1/write/metrics"
        );
    }

    #[test]
    fn refuses_urls_that_are_not_http() {
        let err = parse_endpoint("ftp://h?token=tkn_secretsecret")
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("scheme \"ftp\""), "{msg}");
        assert!(!msg.contains("secretsecret"), "{msg}");
    }

    #[test]
    fn redacts_tokens() {
        assert_eq!(
            redact_token("https://h?a=1&token=tkn_0123456789&b=2"),
            "https://h?a=1&token=tkn_***&b=2"
        );
    }

    #[test]
    fn pkg_ids_look_like_xids_and_differ() {
        let g = XidGen::new("host-a");
        let a = g.next_pkg_id();
        let b = g.next_pkg_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 23);
        assert!(a.starts_with("dk_"));
        assert!(
            a[3..]
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'v').contains(&c))
        );
    }

    #[test]
    fn encodes_xid_bytes_as_base32hex() {
        // The example id of rs/xid's documentation.
        let raw = [
            0x4d, 0x88, 0xe1, 0x5b, 0x60, 0xf4, 0x86, 0xe4, 0x28, 0x41, 0x2d, 0xc9,
        ];
        let mut s = String::new();
        xid_encode(&raw, &mut s);
        assert_eq!(s, "9m4e2mr0ui3e8a215n4g");
    }
}
