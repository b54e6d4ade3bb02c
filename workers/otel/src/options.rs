//! What the mappings need from an instance's config and from the request's origin.

use crate::attrs::Extract;

/// The mapping options of one `[[inputs.opentelemetry]]` instance.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which span attributes become fields.
    pub extract: Extract,
    /// `split_service_name`: a db/rpc/messaging span's service is its system.
    pub split_service_name: bool,
    /// `del_message`: no `message` field on spans.
    pub del_message: bool,
    /// `clean_message`: the span's `message` leaves out ids and extracted attributes.
    pub clean_message: bool,
    /// `compatible_ddtrace`: ids as the decimal of their low 8 bytes.
    pub compatible_ddtrace: bool,
    /// `log_max` in runes: longer log bodies are split.
    pub log_max_runes: usize,
    /// `[inputs.opentelemetry.tags]`.
    pub tags: Vec<(String, String)>,
    /// The `dk_fingerprint` tag (`<host>_<version>`).
    pub fingerprint: String,
    /// `[sampler] sampling_rate` (1 keeps every trace).
    pub sampling_rate: f64,
    /// `close_resource`: per service (or `*`), span names (regexes) whose traces are dropped.
    pub close_resource: Vec<(String, regex::Regex)>,
    /// `omit_err_status`: HTTP status codes whose error spans count as `ok`.
    pub omit_err_status: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extract: Extract::default(),
            split_service_name: true,
            del_message: false,
            clean_message: true,
            compatible_ddtrace: false,
            log_max_runes: 500 * 1024,
            tags: Vec::new(),
            fingerprint: String::new(),
            sampling_rate: 1.0,
            close_resource: Vec::new(),
            omit_err_status: Vec::new(),
        }
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The client's IP (`remote_ip` tag); empty when unknown.
    pub remote_ip: String,
}
