//! The InfluxDB v1 sink: batches of points as line protocol to `POST /write`, converted to what InfluxDB 1.x accepts.
//!
//! # Request
//!
//! `POST <url>/write?db=<database>&precision=ns[&rp=<retention_policy>]` with
//! `Content-Type: text/plain; charset=utf-8`, optionally `Content-Encoding: gzip`, and HTTP
//! basic authentication when a username is set (InfluxDB 1.x accepts it as well as the `u`/`p`
//! query parameters; a header keeps the password out of URLs, proxy logs and error messages).
//! One [`reqwest::Client`] is shared by every write, so connections are reused.
//!
//! # Categories
//!
//! Only the categories in [`InfluxConfig::categories`] (by default: metric only) are sent. A
//! batch of any other category is confirmed with `Ok` without any request, so delivery does
//! not retry it, and counted with status `not-sent`.
//!
//! # Conversions (InfluxDB 1.6.7 as packaged by Debian, checked against a real `influxd`)
//!
//! * Unsigned integers (`123u`) fail the whole line with `invalid number` (InfluxDB is built
//!   without uint support): they are sent as integers (`123i`), or as floats above `i64::MAX`.
//! * Bytes (`"<base64>"b`) are misparsed into a garbled string: they are sent as a string field
//!   holding the standard base64 of the bytes.
//! * Arrays (`[1i,2i]`) fail the whole line with `invalid boolean`: the field is dropped.
//! * A tag or field key `time` makes InfluxDB drop the point (`invalid tag key`/`invalid field
//!   name`): the key is dropped.
//! * A trailing `\` in the measurement, a key or a tag value escapes the following separator
//!   and breaks the line (`invalid tag format`): trailing backslashes are trimmed.
//!
//! Each conversion is counted in `datakit_io_influxdb_converted_field_total{category,kind}`; a
//! point left without fields is not sent and counted with status `no-field`.
//!
//! # Outcomes
//!
//! A batch is split into requests of at most [`InfluxConfig::max_body_bytes`] (uncompressed;
//! a single larger line is sent alone) and sent in order.
//!
//! * 2xx: written.
//! * 400, 413 and other 4xx: [`SinkError::Rejected`] with InfluxDB's message (for 400
//!   `partial write`, InfluxDB has stored the other points of that request). The remaining
//!   requests of the batch are still sent; the batch is reported rejected at the end.
//! * 401, 403, 404 (`database not found`), 408 and 429: [`SinkError::Unavailable`]. These are
//!   configuration or rate problems an operator fixes (create the database, fix the
//!   credentials); keeping and retrying the batch loses nothing in the meantime, where
//!   dropping it would lose every point written before the fix.
//! * 5xx (including an unknown retention policy, which InfluxDB 1.x answers with 500),
//!   timeouts and connection errors: [`SinkError::Unavailable`], and the batch's remaining
//!   requests are not sent. Delivery retries the whole batch; requests already written are
//!   written again, which InfluxDB absorbs (a point with the same series and time overwrites
//!   itself).

use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Range;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use dk_proto::lineproto::encode_point;
use dk_proto::sink::{Sink, SinkError};
use dk_proto::{Category, Point, Value};
use futures::future::BoxFuture;
use http::HeaderValue;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use reqwest::Url;

/// The sink's name, used in metrics labels, logs and errors.
pub const NAME: &str = "influxdb";

/// How much of an error response body is kept for the error message.
const MAX_ERROR_BODY: usize = 4096;

/// Settings of the InfluxDB v1 sink.
#[derive(Clone, Debug)]
pub struct InfluxConfig {
    /// Base URL of the InfluxDB HTTP API, e.g. `http://127.0.0.1:8086` (a path prefix is kept;
    /// user info in the URL is used as the credentials).
    pub url: String,
    /// Database to write to (`db`); it must exist.
    pub database: String,
    /// Retention policy (`rp`); `None` uses the database's default.
    pub retention_policy: Option<String>,
    /// User name for HTTP basic authentication; `None` or empty sends no credentials.
    pub username: Option<String>,
    /// Password for HTTP basic authentication.
    pub password: Option<String>,
    /// Timestamp precision of the requests; points carry nanoseconds, so only `"ns"` is valid.
    pub precision: &'static str,
    /// Bound on one whole request (connect, send, answer).
    pub timeout: Duration,
    /// Gzip request bodies (`Content-Encoding: gzip`, fastest level).
    pub gzip: bool,
    /// Largest uncompressed body of one request; larger batches are split (default 1 MiB).
    pub max_body_bytes: usize,
    /// Categories to send; batches of other categories are confirmed without sending.
    pub categories: Vec<Category>,
    /// HTTP(S) proxy for every request, e.g. `http://proxy:3128`; `None`: direct (the
    /// `HTTP_PROXY`/`HTTPS_PROXY` environment variables are ignored).
    pub proxy: Option<String>,
}

impl Default for InfluxConfig {
    /// `http://127.0.0.1:8086`, database `datakit`, 30 s timeout, no gzip, 1 MiB bodies,
    /// metric only.
    fn default() -> Self {
        InfluxConfig {
            url: "http://127.0.0.1:8086".to_string(),
            database: "datakit".to_string(),
            retention_policy: None,
            username: None,
            password: None,
            precision: "ns",
            timeout: Duration::from_secs(30),
            gzip: false,
            max_body_bytes: 1 << 20,
            categories: vec![Category::Metric],
            proxy: None,
        }
    }
}

/// An InfluxDB sink configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InfluxError {
    /// `url` (or `proxy`) is not an absolute http(s) URL.
    #[error(
        "influxdb: invalid {key} {value:?}: {reason}; give an absolute URL such as http://127.0.0.1:8086"
    )]
    InvalidUrl {
        /// The setting (`url` or `proxy`).
        key: &'static str,
        /// The value given (without credentials).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting has a value the sink cannot use.
    #[error("influxdb: invalid {key}: {message}")]
    InvalidConfig {
        /// The setting.
        key: &'static str,
        /// What is wrong and what to set instead.
        message: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("influxdb: cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// `{category, status}` of `datakit_io_influxdb_point_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PointLabels {
    category: &'static str,
    status: String,
}

/// `{status}` of `datakit_io_influxdb_request_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

/// `{category, kind}` of `datakit_io_influxdb_converted_field_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConvertLabels {
    category: &'static str,
    kind: &'static str,
}

fn request_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The sink's metric handles.
#[derive(Clone)]
struct Metrics {
    points: Family<PointLabels, Counter>,
    requests: Family<StatusLabels, Histogram, fn() -> Histogram>,
    converted: Family<ConvertLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        Metrics {
            points: Family::default(),
            requests: Family::new_with_constructor(request_histogram),
            converted: Family::default(),
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "datakit_io_influxdb_point",
            "Points sent to InfluxDB by category and status (HTTP status text, timeout, connection-refused, connection-error; not-sent for categories not configured, no-field for points with nothing InfluxDB can store)",
            self.points.clone(),
        );
        registry.register(
            "datakit_io_influxdb_request_seconds",
            "Duration of InfluxDB write requests by status",
            self.requests.clone(),
        );
        registry.register(
            "datakit_io_influxdb_converted_field",
            "Keys and values converted for InfluxDB 1.x by kind (uint_to_int, uint_to_float, bytes_to_base64, array_dropped, time_key_dropped, trailing_backslash_trimmed)",
            self.converted.clone(),
        );
    }

    fn count_points(&self, category: Category, status: &str, n: usize) {
        if n > 0 {
            self.points
                .get_or_create(&PointLabels {
                    category: category.name(),
                    status: status.to_string(),
                })
                .inc_by(n as u64);
        }
    }
}

/// The InfluxDB v1 sink (see the module documentation for what it sends and how it answers).
pub struct InfluxSink {
    client: reqwest::Client,
    write_url: Url,
    /// `scheme://host:port/path` of the configured URL, without credentials, for messages.
    display_url: String,
    database: String,
    auth: Option<HeaderValue>,
    gzip: bool,
    max_body_bytes: usize,
    categories: Vec<Category>,
    metrics: Metrics,
}

impl std::fmt::Debug for InfluxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxSink")
            .field("url", &self.display_url)
            .field("database", &self.database)
            .field("gzip", &self.gzip)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("categories", &self.categories)
            .finish_non_exhaustive()
    }
}

impl InfluxSink {
    /// Checks the configuration, builds the HTTP client and registers the sink's metrics
    /// (`datakit_io_influxdb_point_total`, `datakit_io_influxdb_request_seconds`,
    /// `datakit_io_influxdb_converted_field_total`) in `registry`.
    pub fn new(cfg: InfluxConfig, registry: &mut Registry) -> Result<Self, InfluxError> {
        if cfg.precision != "ns" {
            return Err(InfluxError::InvalidConfig {
                key: "precision",
                message: format!(
                    "{:?} is not supported: points carry nanosecond timestamps; use \"ns\"",
                    cfg.precision
                ),
            });
        }
        if cfg.database.is_empty() {
            return Err(InfluxError::InvalidConfig {
                key: "database",
                message: "it is empty; name the InfluxDB database to write to".to_string(),
            });
        }
        if cfg.max_body_bytes == 0 {
            return Err(InfluxError::InvalidConfig {
                key: "max_body_bytes",
                message: "it is 0; use a positive size such as 1048576".to_string(),
            });
        }
        if cfg.timeout.is_zero() {
            return Err(InfluxError::InvalidConfig {
                key: "timeout",
                message: "it is 0; use a positive duration such as 30s".to_string(),
            });
        }

        let mut base = Url::parse(&cfg.url).map_err(|e| InfluxError::InvalidUrl {
            key: "url",
            value: cfg.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(InfluxError::InvalidUrl {
                key: "url",
                value: redact(&base),
                reason: "the scheme must be http or https and a host is needed".to_string(),
            });
        }
        let mut username = cfg.username.clone().filter(|u| !u.is_empty());
        let mut password = cfg.password.clone();
        if !base.username().is_empty() {
            username.get_or_insert_with(|| base.username().to_string());
            if let Some(p) = base.password() {
                password.get_or_insert_with(|| p.to_string());
            }
        }
        // Neither call can fail on an http(s) URL with a host.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_fragment(None);
        let display_url = base.as_str().trim_end_matches('/').to_string();

        let mut write_url = base.clone();
        {
            let path = format!("{}/write", base.path().trim_end_matches('/'));
            write_url.set_path(&path);
            let mut q = write_url.query_pairs_mut();
            q.append_pair("db", &cfg.database);
            q.append_pair("precision", cfg.precision);
            if let Some(rp) = cfg.retention_policy.as_deref().filter(|rp| !rp.is_empty()) {
                q.append_pair("rp", rp);
            }
        }

        let auth = match username {
            Some(user) => {
                let token = BASE64.encode(format!("{user}:{}", password.unwrap_or_default()));
                let mut v = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
                    InfluxError::InvalidConfig {
                        key: "username",
                        message: "it cannot be sent in an HTTP header".to_string(),
                    }
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };

        // reqwest is built with `rustls-no-provider`: a process-wide provider must exist
        // before a client is built; an already installed one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("datakit-rs/", env!("CARGO_PKG_VERSION")));
        builder = match cfg.proxy.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => {
                builder.proxy(reqwest::Proxy::all(p).map_err(|e| InfluxError::InvalidUrl {
                    key: "proxy",
                    value: p.to_string(),
                    reason: e.without_url().to_string(),
                })?)
            }
            None => builder.no_proxy(),
        };
        let client = builder.build().map_err(InfluxError::Client)?;

        let metrics = Metrics::new();
        metrics.register(registry);
        Ok(InfluxSink {
            client,
            write_url,
            display_url,
            database: cfg.database,
            auth,
            gzip: cfg.gzip,
            max_body_bytes: cfg.max_body_bytes,
            categories: cfg.categories,
            metrics,
        })
    }

    async fn write_batch(&self, category: Category, points: &[Point]) -> Result<(), SinkError> {
        if !self.categories.contains(&category) {
            self.metrics
                .count_points(category, "not-sent", points.len());
            return Ok(());
        }
        let encoded = encode_batch(points, self.max_body_bytes);
        self.count_conversions(category, &encoded.conversions);
        self.metrics
            .count_points(category, "no-field", encoded.conversions.no_field);

        let body = Bytes::from(encoded.body);
        let mut rejected: Vec<(usize, String)> = Vec::new();
        let chunks = encoded.chunks.len();
        for chunk in &encoded.chunks {
            let outcome = self.send(body.slice(chunk.range.clone())).await;
            self.metrics
                .count_points(category, &outcome.status, chunk.points);
            match outcome.result {
                Sent::Written => {}
                Sent::Rejected(message) => rejected.push((chunk.points, message)),
                Sent::Unavailable(message) => {
                    return Err(SinkError::Unavailable {
                        sink: NAME.to_string(),
                        message,
                    });
                }
            }
        }
        match rejected.first() {
            None => Ok(()),
            Some((_, first)) => {
                let points: usize = rejected.iter().map(|(n, _)| n).sum();
                let mut message = first.clone();
                if chunks > 1 {
                    let _ = write!(
                        message,
                        " ({} of {chunks} requests with {points} points were rejected; the others were written)",
                        rejected.len()
                    );
                }
                Err(SinkError::Rejected {
                    sink: NAME.to_string(),
                    message,
                })
            }
        }
    }

    fn count_conversions(&self, category: Category, c: &Conversions) {
        for (kind, n) in [
            ("uint_to_int", c.uint_to_int),
            ("uint_to_float", c.uint_to_float),
            ("bytes_to_base64", c.bytes_to_base64),
            ("array_dropped", c.array_dropped),
            ("time_key_dropped", c.time_key_dropped),
            ("trailing_backslash_trimmed", c.backslash_trimmed),
        ] {
            if n > 0 {
                self.metrics
                    .converted
                    .get_or_create(&ConvertLabels {
                        category: category.name(),
                        kind,
                    })
                    .inc_by(n as u64);
            }
        }
    }

    /// Sends one request body and classifies the answer.
    async fn send(&self, raw: Bytes) -> Outcome {
        let started = Instant::now();
        let outcome = self.send_inner(raw).await;
        self.metrics
            .requests
            .get_or_create(&StatusLabels {
                status: outcome.status.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    async fn send_inner(&self, raw: Bytes) -> Outcome {
        let mut req = self
            .client
            .post(self.write_url.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        let body = if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
            match gzip(&raw) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    return Outcome {
                        status: "gzip-error".to_string(),
                        result: Sent::Unavailable(format!("cannot gzip the request body: {e}")),
                    };
                }
            }
        } else {
            raw
        };
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let mut resp = match req.body(body).send().await {
            Ok(resp) => resp,
            Err(e) => return self.transport_error(e),
        };
        let status = resp.status();
        let label = status
            .canonical_reason()
            .unwrap_or(status.as_str())
            .to_string();
        if status.is_success() {
            return Outcome {
                status: label,
                result: Sent::Written,
            };
        }
        let mut text = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    let room = MAX_ERROR_BODY.saturating_sub(text.len());
                    text.extend_from_slice(&c[..c.len().min(room)]);
                    if text.len() >= MAX_ERROR_BODY {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The status is known; a body cut short only shortens the message.
                    let _ = write!(text, " (error body cut short: {})", e.without_url());
                    break;
                }
            }
        }
        let reason = error_text(&text);
        let code = status.as_u16();
        let message = match classify(code) {
            Class::Rejected => format!(
                "InfluxDB at {} answered {status}: {reason}",
                self.display_url
            ),
            _ => format!(
                "InfluxDB at {} answered {status}: {reason}; {}",
                self.display_url,
                hint(code, &self.database)
            ),
        };
        Outcome {
            status: label,
            result: match classify(code) {
                Class::Rejected => Sent::Rejected(message),
                _ => Sent::Unavailable(message),
            },
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> Outcome {
        let connect = e.is_connect();
        let status = if e.is_timeout() {
            "timeout"
        } else if connect && error_chain_contains(&e, "refused") {
            "connection-refused"
        } else {
            "connection-error"
        };
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let _ = write!(detail, ": {s}");
            source = s.source();
        }
        let what = if status == "timeout" {
            "did not answer in time"
        } else if connect {
            "cannot be reached"
        } else {
            "failed during the request"
        };
        Outcome {
            status: status.to_string(),
            result: Sent::Unavailable(format!(
                "InfluxDB at {} {what} ({detail}); check that influxd is running and reachable",
                self.display_url
            )),
        }
    }
}

impl Sink for InfluxSink {
    fn name(&self) -> &str {
        NAME
    }

    fn write<'a>(
        &'a self,
        category: Category,
        points: &'a [Point],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.write_batch(category, points))
    }
}

/// What one request came to.
struct Outcome {
    /// Metrics label: HTTP status text, or the transport failure.
    status: String,
    result: Sent,
}

enum Sent {
    Written,
    Rejected(String),
    Unavailable(String),
}

/// How an HTTP status is handled.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    Written,
    Rejected,
    Unavailable,
}

/// 2xx ⇒ written; 401/403/404/408/429 ⇒ unavailable (operator fixes, kept); other 4xx ⇒
/// rejected; anything else ⇒ unavailable.
fn classify(code: u16) -> Class {
    match code {
        200..=299 => Class::Written,
        401 | 403 | 404 | 408 | 429 => Class::Unavailable,
        400..=499 => Class::Rejected,
        _ => Class::Unavailable,
    }
}

/// What an operator should check for a status that keeps the batch.
fn hint(code: u16, database: &str) -> String {
    match code {
        404 => format!(
            "create the database (CREATE DATABASE \"{database}\") or fix the sink's url and database; the batch is kept until then"
        ),
        401 | 403 => {
            "fix the sink's username and password (or the user's WRITE privilege on the database)"
                .to_string()
        }
        408 | 429 => "InfluxDB is overloaded".to_string(),
        500..=599 => "check influxd's log (and that the retention policy exists)".to_string(),
        _ => "check the sink's url".to_string(),
    }
}

/// InfluxDB's `{"error": "..."}` message, or the raw body text.
fn error_text(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        return e.error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(no message)".to_string()
    } else {
        text.to_string()
    }
}

fn error_chain_contains(e: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains(needle) {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cur = err.source();
    }
    false
}

fn gzip(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(raw)?;
    enc.finish()
}

/// Redacts credentials from a URL for messages.
fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// What the InfluxDB conversions did to one batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Conversions {
    uint_to_int: usize,
    uint_to_float: usize,
    bytes_to_base64: usize,
    array_dropped: usize,
    time_key_dropped: usize,
    backslash_trimmed: usize,
    /// Points not sent because no field was left.
    no_field: usize,
}

/// One request's slice of the encoded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunk {
    range: Range<usize>,
    points: usize,
}

/// A batch encoded as line protocol, cut into request-sized chunks.
#[derive(Debug)]
struct Encoded {
    body: Vec<u8>,
    chunks: Vec<Chunk>,
    conversions: Conversions,
}

/// Encodes points into one buffer and cuts it into chunks of at most `max_body` bytes at
/// line boundaries (a longer line forms a chunk alone). Points that need an InfluxDB
/// conversion are copied and converted; the others are encoded as they are.
fn encode_batch(points: &[Point], max_body: usize) -> Encoded {
    let mut body = Vec::with_capacity(
        points
            .iter()
            .map(|p| p.approx_size() + 16)
            .sum::<usize>()
            .min(max_body.saturating_mul(4)),
    );
    let mut conversions = Conversions::default();
    let mut chunks = Vec::new();
    let mut chunk_start = 0;
    let mut chunk_points = 0;
    for p in points {
        let line_start = body.len();
        if chunk_points > 0 {
            body.push(b'\n');
        }
        let enc_start = body.len();
        if needs_conversion(p) {
            encode_point(&convert(p, &mut conversions), &mut body);
        } else {
            encode_point(p, &mut body);
        }
        if body.len() == enc_start {
            body.truncate(line_start);
            conversions.no_field += 1;
            continue;
        }
        if chunk_points > 0 && body.len() - chunk_start > max_body {
            chunks.push(Chunk {
                range: chunk_start..line_start,
                points: chunk_points,
            });
            // The new chunk starts after the separator, which neither chunk includes.
            chunk_start = enc_start;
            chunk_points = 1;
        } else {
            chunk_points += 1;
        }
    }
    if chunk_points > 0 {
        chunks.push(Chunk {
            range: chunk_start..body.len(),
            points: chunk_points,
        });
    }
    Encoded {
        body,
        chunks,
        conversions,
    }
}

fn trailing_backslash(s: &str) -> bool {
    s.ends_with('\\')
}

/// True when InfluxDB 1.x cannot take the point as it is.
fn needs_conversion(p: &Point) -> bool {
    trailing_backslash(&p.name)
        || p.tags
            .iter()
            .any(|(k, v)| k == "time" || trailing_backslash(k) || trailing_backslash(v))
        || p.fields.iter().any(|(k, v)| {
            k == "time"
                || trailing_backslash(k)
                || matches!(v, Value::U(_) | Value::D(_) | Value::A(_))
        })
}

fn trim_backslashes(s: &str, count: &mut usize) -> String {
    let t = s.trim_end_matches('\\');
    if t.len() != s.len() {
        *count += 1;
    }
    t.to_string()
}

/// A copy of `p` that InfluxDB 1.x accepts (see the module documentation).
fn convert(p: &Point, c: &mut Conversions) -> Point {
    let mut out = Point::new(trim_backslashes(&p.name, &mut c.backslash_trimmed), p.time);
    out.tags.reserve(p.tags.len());
    for (k, v) in &p.tags {
        if k == "time" {
            c.time_key_dropped += 1;
            continue;
        }
        out.tags.push((
            trim_backslashes(k, &mut c.backslash_trimmed),
            trim_backslashes(v, &mut c.backslash_trimmed),
        ));
    }
    out.fields.reserve(p.fields.len());
    for (k, v) in &p.fields {
        if k == "time" {
            c.time_key_dropped += 1;
            continue;
        }
        let v = match v {
            Value::U(u) => match i64::try_from(*u) {
                Ok(i) => {
                    c.uint_to_int += 1;
                    Value::I(i)
                }
                Err(_) => {
                    c.uint_to_float += 1;
                    Value::F(*u as f64)
                }
            },
            Value::D(d) => {
                c.bytes_to_base64 += 1;
                Value::S(BASE64.encode(d))
            }
            Value::A(_) => {
                c.array_dropped += 1;
                continue;
            }
            other => other.clone(),
        };
        out.fields
            .push((trim_backslashes(k, &mut c.backslash_trimmed), v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(i: i64) -> Point {
        Point::new("m", 1_000 + i)
            .tag("host", "h1")
            .field("v", Value::I(i))
    }

    #[test]
    fn uints_become_ints_or_floats_above_i64_max() {
        let p = Point::new("m", 1)
            .field("small", Value::U(123))
            .field("big", Value::U(u64::MAX));
        let e = encode_batch(&[p], 1 << 20);
        assert_eq!(
            String::from_utf8_lossy(&e.body),
            "m small=123i,big=18446744073709552000 1"
        );
        assert_eq!(e.conversions.uint_to_int, 1);
        assert_eq!(e.conversions.uint_to_float, 1);
    }

    #[test]
    fn bytes_become_base64_strings_and_arrays_are_dropped() {
        let p = Point::new("m", 1)
            .field("d", Value::D(b"hello".to_vec()))
            .field("a", Value::A(vec![Value::I(1), Value::I(2)]))
            .field("f", Value::F(1.5));
        let e = encode_batch(&[p], 1 << 20);
        assert_eq!(String::from_utf8_lossy(&e.body), "m d=\"aGVsbG8=\",f=1.5 1");
        assert_eq!(e.conversions.bytes_to_base64, 1);
        assert_eq!(e.conversions.array_dropped, 1);
    }

    #[test]
    fn time_keys_and_trailing_backslashes_are_fixed() {
        let p = Point::new("m\\", 1)
            .tag("time", "x")
            .tag("t\\", "v\\\\")
            .field("time", Value::I(1))
            .field("f", Value::I(2));
        let e = encode_batch(&[p], 1 << 20);
        assert_eq!(String::from_utf8_lossy(&e.body), "m,t=v f=2i 1");
        assert_eq!(e.conversions.time_key_dropped, 2);
        assert_eq!(e.conversions.backslash_trimmed, 3);
    }

    #[test]
    fn point_left_without_fields_is_not_sent_and_counted() {
        let points = vec![
            point(1),
            Point::new("m", 1).field("a", Value::A(vec![Value::I(1)])),
            point(2),
        ];
        let e = encode_batch(&points, 1 << 20);
        assert_eq!(
            String::from_utf8_lossy(&e.body),
            "m,host=h1 v=1i 1001\nm,host=h1 v=2i 1002"
        );
        assert_eq!(e.conversions.no_field, 1);
        assert_eq!(
            e.chunks,
            vec![Chunk {
                range: 0..e.body.len(),
                points: 2
            }]
        );
    }

    #[test]
    fn batch_is_cut_at_line_boundaries_within_max_body() {
        // Equal-length lines: values and times of the same width.
        let points: Vec<Point> = (100..200).map(point).collect();
        let one_line = dk_proto::lineproto::encode(&points[..1]).len();
        let max = one_line * 10 + 9; // exactly ten lines with their separators
        let e = encode_batch(&points, max);
        let mut lines = Vec::new();
        for c in &e.chunks {
            let s = &e.body[c.range.clone()];
            assert!(s.len() <= max, "chunk of {} bytes > {max}", s.len());
            let text = String::from_utf8_lossy(s).into_owned();
            assert_eq!(text.lines().count(), c.points);
            lines.extend(text.lines().map(str::to_string));
        }
        assert_eq!(e.chunks.len(), 10);
        let expected = String::from_utf8_lossy(&dk_proto::lineproto::encode(&points)).into_owned();
        assert_eq!(lines, expected.lines().collect::<Vec<_>>());
    }

    #[test]
    fn line_longer_than_max_body_goes_alone() {
        let big = Point::new("m", 1).field("s", Value::S("x".repeat(500)));
        let points = vec![point(1), big, point(2)];
        let e = encode_batch(&points, 100);
        let sizes: Vec<usize> = e.chunks.iter().map(|c| c.points).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        assert!(e.body[e.chunks[1].range.clone()].starts_with(b"m s=\"xxx"));
    }

    #[test]
    fn statuses_are_classified_for_at_least_once_delivery() {
        assert_eq!(classify(204), Class::Written);
        assert_eq!(classify(400), Class::Rejected);
        assert_eq!(classify(413), Class::Rejected);
        for code in [401, 403, 404, 408, 429, 500, 503, 302] {
            assert_eq!(classify(code), Class::Unavailable, "{code}");
        }
    }

    #[test]
    fn influx_error_body_is_unwrapped() {
        assert_eq!(
            error_text(br#"{"error":"database not found: \"x\""}"#),
            "database not found: \"x\""
        );
        assert_eq!(error_text(b"  plain text \n"), "plain text");
        assert_eq!(error_text(b""), "(no message)");
    }

    #[test]
    fn new_rejects_unusable_settings_naming_the_key() {
        let mut reg = Registry::default();
        let bad = |cfg: InfluxConfig, reg: &mut Registry| {
            InfluxSink::new(cfg, reg)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let msg = bad(
            InfluxConfig {
                precision: "s",
                ..InfluxConfig::default()
            },
            &mut reg,
        );
        assert!(msg.contains("precision"), "{msg}");
        let msg = bad(
            InfluxConfig {
                url: "ftp://u:secret@host/".to_string(),
                ..InfluxConfig::default()
            },
            &mut reg,
        );
        assert!(msg.contains("url") && !msg.contains("secret"), "{msg}");
        let msg = bad(
            InfluxConfig {
                database: String::new(),
                ..InfluxConfig::default()
            },
            &mut reg,
        );
        assert!(msg.contains("database"), "{msg}");
    }

    #[test]
    fn write_url_carries_db_precision_and_rp_and_no_credentials() {
        let mut reg = Registry::default();
        let sink = InfluxSink::new(
            InfluxConfig {
                url: "http://admin:pw@127.0.0.1:8086/prefix/".to_string(),
                database: "my db".to_string(),
                retention_policy: Some("week".to_string()),
                ..InfluxConfig::default()
            },
            &mut reg,
        )
        .expect("valid config");
        assert_eq!(
            sink.write_url.as_str(),
            "http://127.0.0.1:8086/prefix/write?db=my+db&precision=ns&rp=week"
        );
        assert_eq!(sink.display_url, "http://127.0.0.1:8086/prefix");
        let expected = format!("Basic {}", BASE64.encode("admin:pw"));
        assert_eq!(
            sink.auth.as_ref().map(|h| h.to_str().unwrap_or_default()),
            Some(expected.as_str())
        );
    }
}
