//! Decoding and checking one `[[inputs.opentelemetry]]` instance: Datakit's keys, every
//! problem at once.

use std::collections::BTreeMap;

use dk_proto::rpc::ListenerKind;
use dk_worker::config::{Decoded, Problems};
use dk_worker::{ConfigProblem, ListenSpec};
use regex::Regex;
use serde::Deserialize;

use crate::attrs::Extract;
use crate::options::Options;

/// Datakit's default `[grpc] addr`.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:4317";
/// Datakit's default `[grpc] max_payload` (16 MiB), also the cap of an HTTP body inflated.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024 * 1024;
/// Default `[http] trace_api`.
pub const DEFAULT_TRACE_API: &str = "/otel/v1/traces";
/// Default `[http] metric_api`.
pub const DEFAULT_METRIC_API: &str = "/otel/v1/metrics";
/// Default `[http] logs_api`.
pub const DEFAULT_LOGS_API: &str = "/otel/v1/logs";
/// Concurrent gRPC connections served (more wait in the kernel's backlog... refused over it).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Concurrent HTTP/2 streams per gRPC connection.
pub const DEFAULT_MAX_STREAMS: u32 = 128;

/// One instance's settings, checked.
#[derive(Debug, Clone)]
pub struct OtelConfig {
    /// The mapping options.
    pub options: Options,
    /// `[grpc] addr`.
    pub grpc_addr: String,
    /// `[grpc] max_payload`: the largest gRPC message, and the largest HTTP body inflated.
    pub max_payload: usize,
    /// `[grpc] max_connections` (not in Datakit): concurrent gRPC connections.
    pub max_connections: usize,
    /// `[grpc] max_concurrent_streams` (not in Datakit): HTTP/2 streams per connection.
    pub max_streams: u32,
    /// `[http] trace_api`.
    pub trace_api: String,
    /// `[http] metric_api`.
    pub metric_api: String,
    /// `[http] logs_api`.
    pub logs_api: String,
    /// `[expected_headers]`: a request carrying one of these (name lower case, value) is read
    /// as protobuf whatever its `Content-Type`.
    pub expected_headers: Vec<(String, String)>,
}

impl OtelConfig {
    /// The gRPC listener declared to the supervisor.
    pub fn listeners(&self) -> Vec<ListenSpec> {
        vec![ListenSpec::new(
            grpc_address(&self.grpc_addr),
            ListenerKind::Tcp,
        )]
    }
}

/// The gRPC listener's address as declared to the supervisor.
pub fn grpc_address(addr: &str) -> String {
    format!("tcp://{addr}")
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct OtelToml {
    customer_tags: Vec<String>,
    customer_tags_all: bool,
    costomer_tags_all: bool,
    keep_rare_resource: bool,
    omit_err_status: Vec<String>,
    close_resource: BTreeMap<String, Vec<String>>,
    sampler: SamplerToml,
    compatible_ddtrace: bool,
    split_service_name: Option<bool>,
    spilt_service_name: Option<bool>,
    del_message: bool,
    clean_message: bool,
    log_max: i64,
    jmarshaler: String,
    tracing_metric_enable: bool,
    tracing_metric_tag_blacklist: Vec<String>,
    tracing_metric_tag_whitelist: Vec<String>,
    http: HttpToml,
    grpc: GrpcToml,
    threads: Option<toml::Value>,
    storage: Option<toml::Value>,
    expected_headers: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
}

impl Default for OtelToml {
    fn default() -> Self {
        OtelToml {
            customer_tags: Vec::new(),
            customer_tags_all: false,
            costomer_tags_all: false,
            keep_rare_resource: false,
            omit_err_status: Vec::new(),
            close_resource: BTreeMap::new(),
            sampler: SamplerToml::default(),
            compatible_ddtrace: false,
            split_service_name: None,
            spilt_service_name: None,
            del_message: false,
            clean_message: true,
            log_max: 500,
            jmarshaler: "protojson".into(),
            tracing_metric_enable: false,
            tracing_metric_tag_blacklist: Vec::new(),
            tracing_metric_tag_whitelist: Vec::new(),
            http: HttpToml::default(),
            grpc: GrpcToml::default(),
            threads: None,
            storage: None,
            expected_headers: BTreeMap::new(),
            tags: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct SamplerToml {
    sampling_rate: f64,
}

impl Default for SamplerToml {
    fn default() -> Self {
        SamplerToml { sampling_rate: 1.0 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct HttpToml {
    http_status_ok: i64,
    trace_api: String,
    metric_api: String,
    logs_api: String,
}

impl Default for HttpToml {
    fn default() -> Self {
        HttpToml {
            http_status_ok: 200,
            trace_api: DEFAULT_TRACE_API.into(),
            metric_api: DEFAULT_METRIC_API.into(),
            logs_api: DEFAULT_LOGS_API.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct GrpcToml {
    addr: String,
    max_payload: i64,
    max_connections: i64,
    max_concurrent_streams: i64,
}

impl Default for GrpcToml {
    fn default() -> Self {
        GrpcToml {
            addr: DEFAULT_GRPC_ADDR.into(),
            max_payload: DEFAULT_MAX_PAYLOAD as i64,
            max_connections: DEFAULT_MAX_CONNECTIONS as i64,
            max_concurrent_streams: i64::from(DEFAULT_MAX_STREAMS),
        }
    }
}

/// Decodes and checks one instance: every error and warning.
pub fn decode(toml_text: &str) -> Decoded<OtelConfig> {
    dk_worker::config::decode::<OtelToml>(toml_text).map(check)
}

/// [`decode`] without the warnings.
///
/// # Errors
/// Every error, each naming its key and a fix.
pub fn parse(toml_text: &str) -> Result<OtelConfig, Vec<ConfigProblem>> {
    decode(toml_text).into_result()
}

/// The sockets of an instance from its `[grpc] addr` alone; empty when it is bad.
pub fn listeners(toml_text: &str) -> Vec<ListenSpec> {
    let d = decode(toml_text);
    if d.problems.has("") || d.problems.has("grpc.addr") {
        return Vec::new();
    }
    d.value.listeners()
}

fn check_addr(addr: &str) -> Result<(), String> {
    const FIX: &str =
        "write host:port (e.g. \"127.0.0.1:4317\", or \"0.0.0.0:4317\" to accept other hosts)";
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} has no port; {FIX}"));
    };
    if addr.contains("://") || host.chars().any(char::is_whitespace) {
        return Err(format!("{addr:?} is not an address; {FIX}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "the port {port:?} is not a number from 1 to 65535; {FIX}"
        )),
    }
}

fn check_path(key: &str, path: &str, p: &mut Problems) -> String {
    if !path.starts_with('/') || path.contains(char::is_whitespace) || path.contains('?') {
        p.error(
            key,
            format!(
                "{path:?} is not a URL path; write one starting with '/' like \"/otel/v1/traces\""
            ),
        );
    }
    path.to_string()
}

fn check(t: OtelToml, p: &mut Problems) -> OtelConfig {
    let mut extract = Extract {
        all: t.customer_tags_all || t.costomer_tags_all,
        ..Extract::default()
    };
    if t.costomer_tags_all {
        p.warn(
            "costomer_tags_all",
            "deprecated spelling: write customer_tags_all",
        );
    }
    for (i, tag) in t.customer_tags.iter().enumerate() {
        match tag.strip_prefix("reg:") {
            Some(re) => match Regex::new(re) {
                Ok(r) => extract.patterns.push(r),
                Err(e) => p.error(
                    format!("customer_tags[{i}]"),
                    format!(
                        "{re:?} is not a regular expression ({e}); fix it or drop the reg: prefix"
                    ),
                ),
            },
            None => extract.keys.push(tag.clone()),
        }
    }
    let mut close_resource = Vec::new();
    for (service, patterns) in &t.close_resource {
        for re in patterns {
            match Regex::new(re) {
                Ok(r) => close_resource.push((service.clone(), r)),
                Err(e) => p.error(
                    format!("close_resource.{service}"),
                    format!("{re:?} is not a regular expression ({e})"),
                ),
            }
        }
    }
    if !(0.0..=1.0).contains(&t.sampler.sampling_rate) {
        p.error(
            "sampler.sampling_rate",
            format!(
                "{} is not a rate; write a number from 0 to 1 (1 keeps every trace)",
                t.sampler.sampling_rate
            ),
        );
    }
    if t.log_max <= 0 {
        p.error(
            "log_max",
            "write the largest log body in KiB, at least 1 (default 500)",
        );
    }
    if !matches!(
        t.jmarshaler.as_str(),
        "protojson" | "gojson" | "jsoniter" | ""
    ) {
        p.warn(
            "jmarshaler",
            format!(
                "{:?} is unknown; the span message is OTLP/JSON (protojson)",
                t.jmarshaler
            ),
        );
    }
    if t.tracing_metric_enable {
        p.warn(
            "tracing_metric_enable",
            "tracing_metrics are not produced by this agent yet; the key is ignored",
        );
    }
    let _ = (
        t.keep_rare_resource,
        &t.tracing_metric_tag_blacklist,
        &t.tracing_metric_tag_whitelist,
        t.http.http_status_ok,
        &t.threads,
        &t.storage,
    );
    let addr = t.grpc.addr.trim().to_string();
    if let Err(e) = check_addr(&addr) {
        p.error("grpc.addr", e);
    }
    let positive = |key: &str, v: i64, p: &mut Problems| -> usize {
        match usize::try_from(v) {
            Ok(n) if n > 0 => n,
            _ => {
                p.error(
                    key,
                    format!("{v} is not a positive size; remove the key for the default"),
                );
                1
            }
        }
    };
    let max_payload = positive("grpc.max_payload", t.grpc.max_payload, p);
    let max_connections = positive("grpc.max_connections", t.grpc.max_connections, p);
    let max_streams = positive(
        "grpc.max_concurrent_streams",
        t.grpc.max_concurrent_streams,
        p,
    );
    let trace_api = check_path("http.trace_api", &t.http.trace_api, p);
    let metric_api = check_path("http.metric_api", &t.http.metric_api, p);
    let logs_api = check_path("http.logs_api", &t.http.logs_api, p);
    if trace_api == metric_api || trace_api == logs_api || metric_api == logs_api {
        p.error(
            "http",
            "trace_api, metric_api and logs_api must be three different paths",
        );
    }
    let options = Options {
        extract,
        // Datakit's misspelled tag made the sample's `split_service_name` inert; both
        // spellings are read here.
        split_service_name: t
            .split_service_name
            .or(t.spilt_service_name)
            .unwrap_or(true),
        del_message: t.del_message,
        clean_message: t.clean_message,
        compatible_ddtrace: t.compatible_ddtrace,
        log_max_runes: usize::try_from(t.log_max).unwrap_or(500).max(1) * 1024,
        tags: t.tags.into_iter().collect(),
        fingerprint: String::new(),
        sampling_rate: t.sampler.sampling_rate.clamp(0.0, 1.0),
        close_resource,
        omit_err_status: t.omit_err_status,
    };
    OtelConfig {
        options,
        grpc_addr: addr,
        max_payload,
        max_connections,
        max_streams: u32::try_from(max_streams).unwrap_or(u32::MAX),
        trace_api,
        metric_api,
        logs_api,
        expected_headers: t
            .expected_headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
    }
}
