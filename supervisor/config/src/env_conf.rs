//! Container mode: the main configuration from Datakit's `ENV_*` variables.
//!
//! [`from_env`] reads every `ENV_*` variable Datakit 1.84 reads in container mode
//! (`datakit run -C`) and turns them into `datakit.conf` keys ([`EnvConfig::table`]); every bad
//! value is reported at once, naming the variable and how to fix it. Datakit logs a bad value
//! and runs on with the default; we refuse to start instead, so a typo in a DaemonSet is seen at
//! once (docs/compat.md). Variables Datakit has whose feature this agent does not have are
//! warnings ([`EnvConfig::warnings`]).
//!
//! As in Datakit, the variables apply only in container mode, where `datakit.conf` is not read:
//! the config is built from the code defaults plus the variables ([`EnvConfig::main_conf_text`])
//! and written to `conf.d/datakit.conf`, and `ENV_DATAKIT_INPUTS` to
//! `conf.d/ENV_DATAKIT_INPUTS.conf`. In host mode only `ENV_HOSTNAME` is read (as before);
//! [`EnvConfig::host_mode_ignored`] names the others that are set, to warn about them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use crate::addr::{ListenAddr, parse_url};
use crate::diag::Diagnostic;
use crate::env::Env;
use crate::main_conf::ContentEncoding;

/// File name `ENV_DATAKIT_INPUTS` is written to inside `conf.d`.
pub const ENV_INPUTS_FILE: &str = "ENV_DATAKIT_INPUTS.conf";

/// The pseudo file environment diagnostics name.
pub const ENV_SOURCE: &str = "environment";

/// What the `ENV_*` variables say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvConfig {
    /// `datakit.conf` keys set by the variables (only those set).
    pub table: toml::Table,
    /// Dotted key → the variable that set it.
    pub origins: BTreeMap<String, &'static str>,
    /// `ENV_DATAKIT_INPUTS`: input TOML for `conf.d/ENV_DATAKIT_INPUTS.conf`.
    pub inputs_conf: Option<String>,
    /// Unsupported or deprecated variables, and settings that need another one.
    pub warnings: Vec<Diagnostic>,
}

/// Variables whose feature this agent does not have, and what happens instead: warned about.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "ENV_ENABLE_PPROF",
        "no pprof is served; /metrics has the agent's own CPU, memory and open files",
    ),
    (
        "ENV_ENABLE_DEBUG_FIELDS",
        "no debug fields are added to points",
    ),
    ("ENV_ENABLE_POINT_POOL", "points are not pooled"),
    ("ENV_POINT_POOL_RESERVED_CAPACITY", "points are not pooled"),
    ("ENV_IPDB", "no IP database is loaded (no pipelines)"),
    ("ENV_REFER_TABLE_URL", "pipelines are not run"),
    ("ENV_REFER_TABLE_PULL_INTERVAL", "pipelines are not run"),
    ("ENV_REFER_TABLE_USE_SQLITE", "pipelines are not run"),
    ("ENV_REFER_TABLE_SQLITE_MEM_MODE", "pipelines are not run"),
    ("ENV_CRYPTO_AES_KEY", "ENC[...] secrets are not decrypted"),
    (
        "ENV_CRYPTO_AES_KEY_FILE",
        "ENC[...] secrets are not decrypted",
    ),
    (
        "ENV_DCA_LISTEN",
        "the agent dials the DCA console: set ENV_DCA_WEBSOCKET_SERVER",
    ),
    (
        "ENV_DCA_WHITE_LIST",
        "the agent dials the DCA console: set ENV_DCA_WEBSOCKET_SERVER",
    ),
    (
        "ENV_DATAKIT_OPERATOR",
        "operator-based election is not implemented; election runs against Dataway",
    ),
    (
        "ENV_IO_ENABLE_CACHE",
        "every point goes through the durable queue anyway",
    ),
    (
        "ENV_IO_CACHE_ALL",
        "every point goes through the durable queue anyway",
    ),
    (
        "ENV_IO_CACHE_MAX_SIZE_GB",
        "the queue is capped by ENV_DATAWAY_WAL_CAPACITY",
    ),
    (
        "ENV_IO_CACHE_CLEAN_INTERVAL",
        "failed uploads are retried every ENV_DATAWAY_WAL_FAIL_CACHE_CLEAN_INTERVAL",
    ),
];

/// Prefixes of variable groups this agent does not have (Git repos, confd, recorder, pipelines,
/// remote jobs), warned about.
const UNSUPPORTED_PREFIXES: &[(&str, &str)] = &[
    (
        "ENV_GIT_",
        "configs from Git repositories are not pulled; mount conf.d or use ENV_DATAKIT_INPUTS",
    ),
    (
        "ENV_CONFD_",
        "confd backends are not read; mount conf.d or use ENV_DATAKIT_INPUTS",
    ),
    ("ENV_RECORDER_", "points are not recorded"),
    ("ENV_ENABLE_RECORDER", "points are not recorded"),
    ("ENV_PIPELINE_", "pipelines are not run"),
    ("ENV_REMOTE_JOB_", "remote jobs are not run"),
];

/// Variables this module reads that host mode ignores (all but `ENV_HOSTNAME`).
const HOST_MODE_IGNORED_HINT: &str = "ENV_* variables apply only in container mode (`datakit run -C`), as in Datakit; in host mode datakit.conf is used";

struct Builder<'a> {
    env: &'a dyn Env,
    out: EnvConfig,
    errors: Vec<Diagnostic>,
}

impl Builder<'_> {
    /// The variable's value when set and not empty (Datakit treats empty as unset).
    fn get(&self, var: &str) -> Option<String> {
        self.env.var(var).filter(|v| !v.is_empty())
    }

    fn error(&mut self, var: &str, message: impl Into<String>) {
        self.errors
            .push(Diagnostic::new(PathBuf::from(ENV_SOURCE), var, message));
    }

    fn warn(&mut self, var: &str, message: impl Into<String>) {
        self.out
            .warnings
            .push(Diagnostic::new(PathBuf::from(ENV_SOURCE), var, message));
    }

    fn put(&mut self, var: &'static str, key: &str, value: toml::Value) {
        let path: Vec<&str> = key.split('.').collect();
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut t = &mut self.out.table;
        for p in parents {
            let entry = t
                .entry((*p).to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(inner) = entry.as_table_mut() else {
                return;
            };
            t = inner;
        }
        t.insert((*last).to_string(), value);
        self.out.origins.insert(key.to_string(), var);
    }

    fn string(&mut self, var: &'static str, key: &str) {
        if let Some(v) = self.get(var) {
            self.put(var, key, toml::Value::String(v));
        }
    }

    /// Non-empty means `value` (Datakit's boolean variables are presence flags).
    fn flag(&mut self, var: &'static str, key: &str, value: bool) {
        if self.get(var).is_some() {
            self.put(var, key, toml::Value::Boolean(value));
        }
    }

    /// A comma-separated list (blank items dropped).
    fn list(&mut self, var: &'static str, key: &str) -> Option<Vec<String>> {
        let v = self.get(var)?;
        let items = split_list(&v);
        self.put(var, key, strings(&items));
        Some(items)
    }

    fn duration(&mut self, var: &'static str, key: &str) {
        let Some(v) = self.get(var) else { return };
        match dk_proto::duration::parse(&v) {
            Ok(d) => self.put(var, key, toml::Value::String(dk_proto::duration::format(d))),
            Err(e) => self.error(var, e.to_string()),
        }
    }

    /// An integer in `min..=max`.
    fn int(&mut self, var: &'static str, key: &str, min: i64, max: i64) {
        let Some(v) = self.get(var) else { return };
        match v.trim().parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => self.put(var, key, toml::Value::Integer(n)),
            Ok(n) => self.error(
                var,
                format!("{n} is out of range: use a whole number from {min} to {max}"),
            ),
            Err(_) => self.error(
                var,
                format!("{v:?} is not a whole number: use e.g. \"{}\"", min.max(1)),
            ),
        }
    }

    fn float(&mut self, var: &'static str, key: &str, min: f64) {
        let Some(v) = self.get(var) else { return };
        match v.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f >= min => self.put(var, key, toml::Value::Float(f)),
            _ => self.error(
                var,
                format!("{v:?} is not a number of at least {min}: use e.g. \"2\" or \"0.5\""),
            ),
        }
    }

    /// `true/false/on/off/yes/no/1/0`.
    fn boolean(&mut self, var: &'static str, key: &str) {
        let Some(v) = self.get(var) else { return };
        match parse_bool(&v) {
            Some(b) => self.put(var, key, toml::Value::Boolean(b)),
            None => self.error(
                var,
                format!("{v:?} is not a boolean: use \"true\" or \"false\""),
            ),
        }
    }

    /// `k=v,k2=v2` tags into `key.<k>`.
    fn tags(&mut self, var: &'static str, key: &str) {
        let Some(v) = self.get(var) else { return };
        match parse_tags(&v) {
            Ok(tags) => {
                for (k, val) in tags {
                    self.put(var, &format!("{key}.{k}"), toml::Value::String(val));
                }
            }
            Err(bad) => self.error(
                var,
                format!("{bad:?} is not key=value: write the tags as \"k1=v1,k2=v2\""),
            ),
        }
    }

    /// The first set variable of `names`; a deprecated one (after the first) is warned about.
    fn first_of(&mut self, names: &[&'static str]) -> Option<&'static str> {
        let (i, var) = names
            .iter()
            .enumerate()
            .find(|(_, n)| self.get(n).is_some())?;
        if i > 0 {
            self.warn(var, format!("deprecated: read as {}; rename it", names[0]));
        }
        Some(var)
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn strings(items: &[String]) -> toml::Value {
    toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect())
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// `k=v,k2=v2`; the first item without `=` or with an empty key is the error.
fn parse_tags(v: &str) -> Result<Vec<(String, String)>, String> {
    split_list(v)
        .into_iter()
        .map(|item| match item.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), val.trim().to_string()))
            }
            _ => Err(item),
        })
        .collect()
}

/// Reads every `ENV_*` variable Datakit reads in container mode.
///
/// # Errors
/// Every variable with a bad value, each naming the variable and how to write it.
pub fn from_env(env: &dyn Env) -> Result<EnvConfig, Vec<Diagnostic>> {
    let mut b = Builder {
        env,
        out: EnvConfig::default(),
        errors: Vec::new(),
    };
    if let Some(text) = b.get("ENV_DATAKIT_INPUTS") {
        match toml::from_str::<toml::Table>(&text) {
            Ok(_) => b.out.inputs_conf = Some(text),
            Err(e) => {
                let msg = crate::diag::toml_syntax_message(&text, &e);
                b.error(
                    "ENV_DATAKIT_INPUTS",
                    format!("{msg}; the value must be input TOML like [[inputs.cpu]]"),
                );
            }
        }
    }
    b.flag("ENV_DISABLE_PROTECT_MODE", "protect_mode", false);
    dataway(&mut b);
    http(&mut b);
    tags_and_election(&mut b);
    io(&mut b);
    logging(&mut b);
    misc(&mut b);
    unsupported(&mut b);
    if b.errors.is_empty() {
        Ok(b.out)
    } else {
        Err(b.errors)
    }
}

fn dataway(b: &mut Builder<'_>) {
    if let Some(urls) = b.list("ENV_DATAWAY", "dataway.urls") {
        for u in urls {
            if let Err(e) = parse_url(&u, &["http", "https"]) {
                b.error(
                    "ENV_DATAWAY",
                    format!("{e}; separate several URLs with commas"),
                );
            }
        }
    }
    b.duration("ENV_DATAWAY_TIMEOUT", "dataway.timeout_v2");
    b.int(
        "ENV_DATAWAY_MAX_RETRY_COUNT",
        "dataway.max_retry_count",
        1,
        10,
    );
    b.duration("ENV_DATAWAY_RETRY_DELAY", "dataway.retry_delay");
    if let Some(proxy) = b.get("ENV_DATAWAY_HTTP_PROXY") {
        match parse_url(&proxy, &["http", "https", "socks5"]) {
            Ok(_) => b.put(
                "ENV_DATAWAY_HTTP_PROXY",
                "dataway.http_proxy",
                toml::Value::String(proxy),
            ),
            Err(e) => b.error(
                "ENV_DATAWAY_HTTP_PROXY",
                format!("{e}; e.g. \"http://proxy:3128\""),
            ),
        }
    }
    b.int(
        "ENV_DATAWAY_MAX_IDLE_CONNS",
        "dataway.max_idle_conns",
        1,
        i64::from(u32::MAX),
    );
    b.int(
        "ENV_DATAWAY_MAX_IDLE_CONNS_PER_HOST",
        "dataway.max_idle_conns_per_host",
        1,
        i64::from(u32::MAX),
    );
    b.duration("ENV_DATAWAY_IDLE_TIMEOUT", "dataway.idle_timeout");
    b.int(
        "ENV_DATAWAY_MAX_RAW_BODY_SIZE",
        "dataway.max_raw_body_size",
        1,
        i64::MAX,
    );
    if let Some(enc) = b.get("ENV_DATAWAY_CONTENT_ENCODING") {
        match ContentEncoding::from_str(&enc) {
            Ok(_) => b.put(
                "ENV_DATAWAY_CONTENT_ENCODING",
                "dataway.content_encoding",
                toml::Value::String(enc),
            ),
            Err(e) => b.error("ENV_DATAWAY_CONTENT_ENCODING", e),
        }
    }
    b.flag("ENV_DATAWAY_DISABLE_GZIP", "dataway.gzip", false);
    b.flag("ENV_DATAWAY_TLS_INSECURE", "dataway.tls_insecure", true);
    b.flag(
        "ENV_DATAWAY_ENABLE_HTTPTRACE",
        "dataway.enable_httptrace",
        true,
    );
    b.duration(
        "ENV_DATAWAY_DROP_EXPIRED_PACKAGE_AT",
        "dataway.drop_expired_package_at",
    );
    b.flag("ENV_DATAWAY_ENABLE_SINKER", "dataway.enable_sinker", true);
    b.list(
        "ENV_SINKER_GLOBAL_CUSTOMER_KEYS",
        "dataway.global_customer_keys",
    );
    b.duration("ENV_DATAWAY_NTP_INTERVAL", "dataway.ntp.interval");
    b.duration("ENV_DATAWAY_NTP_DIFF", "dataway.ntp.diff");
    b.flag("ENV_DATAWAY_DISABLE_NTP", "dataway.ntp.enable", false);
    b.float(
        "ENV_DATAWAY_WAL_CAPACITY",
        "dataway.wal.max_capacity_gb",
        0.0,
    );
    b.int("ENV_DATAWAY_WAL_WORKERS", "dataway.wal.workers", 0, 4096);
    b.int(
        "ENV_DATAWAY_WAL_MEM_CAPACITY",
        "dataway.wal.mem_cap",
        -1,
        i64::from(u32::MAX),
    );
    if let Some(cats) = b.list(
        "ENV_DATAWAY_WAL_NO_DROP_CATEGORIES",
        "dataway.wal.no_drop_categories",
    ) {
        for c in cats {
            if c.parse::<dk_proto::Category>().is_err() {
                b.error(
                    "ENV_DATAWAY_WAL_NO_DROP_CATEGORIES",
                    format!("{c:?} is not a category: use names or aliases, e.g. \"L,T,N\" or \"logging,tracing\""),
                );
            }
        }
    }
    b.string("ENV_DATAWAY_WAL_PATH", "dataway.wal.path");
    b.duration(
        "ENV_DATAWAY_WAL_FAIL_CACHE_CLEAN_INTERVAL",
        "dataway.wal.fail_cache_clean_interval",
    );
}

fn http(b: &mut Builder<'_>) {
    for (var, key) in [
        ("ENV_HTTP_LISTEN", "http_api.listen"),
        ("ENV_HTTP_LISTEN_SOCKET", "http_api.listen_socket"),
    ] {
        let Some(v) = b.get(var) else { continue };
        let ok = match ListenAddr::parse(&v) {
            Ok(ListenAddr::Unix(_)) => true,
            Ok(ListenAddr::Tcp { .. }) if key == "http_api.listen" => true,
            Ok(ListenAddr::Tcp { .. }) => {
                b.error(var, format!("{v:?} is not an absolute socket path: write e.g. \"/var/run/datakit/datakit.sock\""));
                false
            }
            Err(e) => {
                b.error(var, e);
                false
            }
        };
        if ok {
            b.put(var, key, toml::Value::String(v.trim().to_string()));
        }
    }
    b.list("ENV_HTTP_PUBLIC_APIS", "http_api.public_apis");
    b.duration("ENV_HTTP_TIMEOUT", "http_api.timeout");
    b.flag(
        "ENV_HTTP_CLOSE_IDLE_CONNECTION",
        "http_api.close_idle_connection",
        true,
    );
    b.list(
        "ENV_HTTP_ALLOWED_CORS_ORIGINS",
        "http_api.allowed_cors_origins",
    );
    b.flag("ENV_DISABLE_404PAGE", "http_api.disable_404page", true);
    if let Some(v) = b.get("ENV_REQUEST_RATE_LIMIT") {
        match v.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f >= 0.0 => {
                b.put(
                    "ENV_REQUEST_RATE_LIMIT",
                    "http_api.request_rate_limit",
                    toml::Value::Float(f),
                );
            }
            _ => b.error(
                "ENV_REQUEST_RATE_LIMIT",
                format!("{v:?} is not a rate: use requests per second, e.g. \"20\" or \"0.5\""),
            ),
        }
    }
    b.duration(
        "ENV_REQUEST_RATE_LIMIT_TTL",
        "http_api.request_rate_limit_ttl",
    );
    b.int(
        "ENV_REQUEST_RATE_LIMIT_BURST",
        "http_api.request_rate_limit_burst",
        0,
        i64::MAX,
    );
    b.string("ENV_RUM_ORIGIN_IP_HEADER", "http_api.rum_origin_ip_header");
    b.list(
        "ENV_RUM_APP_ID_WHITE_LIST",
        "http_api.rum_app_id_white_list",
    );
    let tls_files = ["ENV_HTTP_TLS_CRT", "ENV_HTTP_TLS_KEY"];
    if b.get("ENV_HTTP_ENABLE_TLS").is_some() {
        b.string("ENV_HTTP_TLS_CRT", "http_api.tls.cert");
        b.string("ENV_HTTP_TLS_KEY", "http_api.tls.privkey");
        for var in tls_files {
            if b.get(var).is_none() {
                b.error(var, "ENV_HTTP_ENABLE_TLS is set: set ENV_HTTP_TLS_CRT and ENV_HTTP_TLS_KEY to the PEM certificate and key files");
            }
        }
    } else {
        for var in tls_files {
            if b.get(var).is_some() {
                b.warn(var, "ignored without ENV_HTTP_ENABLE_TLS (as in Datakit): set ENV_HTTP_ENABLE_TLS=on to serve HTTPS");
            }
        }
    }
}

fn tags_and_election(b: &mut Builder<'_>) {
    if let Some(var) = b.first_of(&["ENV_GLOBAL_HOST_TAGS", "ENV_GLOBAL_TAGS"]) {
        b.tags(var, "global_host_tags");
    }
    if let Some(v) = b.get("ENV_CLUSTER_NAME_K8S") {
        b.put(
            "ENV_CLUSTER_NAME_K8S",
            "global_host_tags.cluster_name_k8s",
            toml::Value::String(v),
        );
    }
    let election_vars = [
        "ENV_ELECTION_NODE_WHITELIST",
        "ENV_NAMESPACE",
        "ENV_ENABLE_ELECTION_NAMESPACE_TAG",
        "ENV_GLOBAL_ELECTION_TAGS",
        "ENV_GLOBAL_ENV_TAGS",
    ];
    if b.get("ENV_ENABLE_ELECTION").is_none() {
        for var in election_vars {
            if b.get(var).is_some() {
                b.warn(var, "ignored without ENV_ENABLE_ELECTION (as in Datakit): set ENV_ENABLE_ELECTION=on to take part in election");
            }
        }
        return;
    }
    b.put(
        "ENV_ENABLE_ELECTION",
        "election.enable",
        toml::Value::Boolean(true),
    );
    if let Some(v) = b.get("ENV_ELECTION_NODE_WHITELIST") {
        // A JSON array, else a comma list (as Datakit).
        let nodes = serde_json::from_str::<Vec<String>>(&v).unwrap_or_else(|_| split_list(&v));
        b.put(
            "ENV_ELECTION_NODE_WHITELIST",
            "election.node_whitelist",
            strings(&nodes),
        );
    }
    b.string("ENV_NAMESPACE", "election.namespace");
    b.flag(
        "ENV_ENABLE_ELECTION_NAMESPACE_TAG",
        "election.enable_namespace_tag",
        true,
    );
    if let Some(var) = b.first_of(&["ENV_GLOBAL_ELECTION_TAGS", "ENV_GLOBAL_ENV_TAGS"]) {
        b.tags(var, "election.tags");
    }
}

fn io(b: &mut Builder<'_>) {
    if let Some(var) = b.first_of(&["ENV_DEFAULT_ENABLED_INPUTS", "ENV_ENABLE_INPUTS"]) {
        let v = b.get(var).unwrap_or_default();
        let items = if v.trim() == "-" {
            Vec::new()
        } else {
            split_list(&v)
        };
        b.put(var, "default_enabled_inputs", strings(&items));
    }
    b.int("ENV_IO_FEED_CHAN_SIZE", "io.feed_chan_size", -1, 1 << 20);
    b.int(
        "ENV_IO_MAX_CACHE_COUNT",
        "io.max_cache_count",
        1000,
        1 << 24,
    );
    b.duration("ENV_IO_FLUSH_INTERVAL", "io.flush_interval");
    b.int("ENV_IO_FLUSH_WORKERS", "io.flush_workers", 0, 1024);
    b.boolean(
        "ENV_IO_AUTO_TIMESTAMP_CORRECTION",
        "io.auto_timestamp_correction",
    );
    if let Some(v) = b.get("ENV_IO_FILTERS") {
        match serde_json::from_str::<BTreeMap<String, Vec<String>>>(&v) {
            Ok(filters) => {
                let mut table = toml::Table::new();
                for (cat, conds) in filters {
                    table.insert(cat, strings(&conds));
                }
                b.put("ENV_IO_FILTERS", "io.filters", toml::Value::Table(table));
            }
            Err(e) => b.error(
                "ENV_IO_FILTERS",
                format!("not a JSON object of category to condition list ({e}): write e.g. {{\"logging\":[\"{{ source = 'x' }}\"]}}"),
            ),
        }
    }
}

fn logging(b: &mut Builder<'_>) {
    b.string("ENV_LOG", "logging.log");
    b.string("ENV_GIN_LOG", "logging.gin_log");
    if let Some(level) = b.get("ENV_LOG_LEVEL") {
        let lower = level.trim().to_ascii_lowercase();
        if matches!(lower.as_str(), "debug" | "info" | "warn" | "error") {
            b.put("ENV_LOG_LEVEL", "logging.level", toml::Value::String(lower));
        } else {
            b.error(
                "ENV_LOG_LEVEL",
                format!("{level:?} is not a log level: use info or debug (or warn, error)"),
            );
        }
    }
    b.flag("ENV_DISABLE_LOG_COLOR", "logging.disable_color", true);
    b.int("ENV_LOG_ROTATE_SIZE_MB", "logging.rotate", 1, 1 << 20);
    b.int(
        "ENV_LOG_ROTATE_BACKUP",
        "logging.rotate_backups",
        1,
        1 << 16,
    );
}

fn misc(b: &mut Builder<'_>) {
    // Host name: node name, then the cluster node name, then ENV_HOSTNAME (the last set wins).
    let mut host: Option<(&'static str, String)> = None;
    if let Some(var) = b.first_of(&["ENV_K8S_NODE_NAME", "NODE_NAME"]) {
        host = b.get(var).map(|v| (var, v));
    }
    for var in ["ENV_K8S_CLUSTER_NODE_NAME", "ENV_HOSTNAME"] {
        if let Some(v) = b.get(var) {
            host = Some((var, v));
        }
    }
    if let Some((var, name)) = host {
        b.put(var, "environments.ENV_HOSTNAME", toml::Value::String(name));
    }
    b.string("ENV_NAME", "name");
    b.int("ENV_ULIMIT", "ulimit", 1, i64::from(u32::MAX));
    b.string("ENV_PPROF_LISTEN", "pprof_listen");
    if let Some(url) = b.get("ENV_DCA_WEBSOCKET_SERVER") {
        match parse_url(&url, &["ws", "wss"]) {
            Ok(_) => {
                b.put(
                    "ENV_DCA_WEBSOCKET_SERVER",
                    "dca.enable",
                    toml::Value::Boolean(true),
                );
                b.put(
                    "ENV_DCA_WEBSOCKET_SERVER",
                    "dca.websocket_server",
                    toml::Value::String(url),
                );
                b.string("ENV_DCA_TOKEN", "dca.token");
                b.string("ENV_DCA_CA_FILE", "dca.ca_file");
            }
            Err(e) => b.error(
                "ENV_DCA_WEBSOCKET_SERVER",
                format!("{e}; e.g. \"ws://dca:8000/ws\""),
            ),
        }
    }
}

fn unsupported(b: &mut Builder<'_>) {
    for (var, instead) in UNSUPPORTED {
        if b.get(var).is_some() {
            b.warn(
                var,
                format!("not supported by this agent: {instead} (see docs/compat.md)"),
            );
        }
    }
    let mut set: Vec<String> = b
        .env
        .vars()
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k)
        .collect();
    set.sort();
    for (prefix, instead) in UNSUPPORTED_PREFIXES {
        let hits: Vec<&String> = set.iter().filter(|k| k.starts_with(prefix)).collect();
        if let Some(first) = hits.first() {
            let names: Vec<&str> = hits.iter().map(|s| s.as_str()).collect();
            let var = (*first).clone();
            b.out.warnings.push(Diagnostic::new(
                PathBuf::from(ENV_SOURCE),
                var,
                format!(
                    "not supported by this agent: {instead} (ignored: {}; see docs/compat.md)",
                    names.join(", ")
                ),
            ));
        }
    }
}

impl EnvConfig {
    /// The `datakit.conf` of container mode: Datakit's code defaults, logs to stdout and no
    /// resource limit (a container has its own), then the variables.
    pub fn main_conf_text(&self) -> String {
        let mut table = toml::Table::new();
        table.insert(
            "default_enabled_inputs".into(),
            toml::Value::Array(Vec::new()),
        );
        let mut logging = toml::Table::new();
        logging.insert("log".into(), "stdout".into());
        logging.insert("gin_log".into(), "stdout".into());
        table.insert("logging".into(), toml::Value::Table(logging));
        let mut limit = toml::Table::new();
        limit.insert("enable".into(), false.into());
        table.insert("resource_limit".into(), toml::Value::Table(limit));
        merge(&mut table, &self.table);
        let body = toml::to_string(&table).unwrap_or_default();
        format!(
            "# Written by `datakit run -C` (container mode) from the ENV_* variables at each start;\n\
             # edits here are replaced at the next start: change the variables instead.\n\n{body}"
        )
    }

    /// Names of the set variables that host mode ignores (all that this module reads but
    /// `ENV_HOSTNAME`, which host mode reads too), with a hint; empty when there are none.
    pub fn host_mode_ignored(&self) -> Option<String> {
        let mut vars: Vec<&str> = self
            .origins
            .values()
            .copied()
            .filter(|v| *v != "ENV_HOSTNAME")
            .collect();
        if self.inputs_conf.is_some() {
            vars.push("ENV_DATAKIT_INPUTS");
        }
        vars.sort_unstable();
        vars.dedup();
        if vars.is_empty() {
            return None;
        }
        Some(format!(
            "{HOST_MODE_IGNORED_HINT}; ignored: {}",
            vars.join(", ")
        ))
    }

    /// The variable that set the dotted `key` (or a table above it).
    pub fn origin_of(&self, key: &str) -> Option<&'static str> {
        let mut k = key;
        loop {
            if let Some(v) = self.origins.get(k) {
                return Some(v);
            }
            // `a.b[0]` → `a.b`, `a.b.c` → `a.b`
            let cut = k.rfind(['.', '['])?;
            k = &k[..cut];
        }
    }
}

/// Prefix of the per-input variables (`ENV_INPUT_CPU_PERCPU`).
const INPUT_PREFIX: &str = "ENV_INPUT_";

/// The `conf.d` file per-input variables of `input` are written to.
pub fn input_env_file(input: &str) -> String {
    format!("{INPUT_PREFIX}{}.conf", input.to_ascii_uppercase())
}

/// Whether `name` is a file [`input_confs`] writes (removed at each start before writing).
pub fn is_input_env_file(name: &str) -> bool {
    name.starts_with(INPUT_PREFIX) && name.ends_with(".conf")
}

/// The input configs [`input_confs`] made.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputConfs {
    /// `(file name in conf.d, TOML)` per input that has a variable.
    pub files: Vec<(String, String)>,
    /// Keys the samples do not have, and inputs without a sample.
    pub warnings: Vec<Diagnostic>,
}

/// Input configs from Datakit's per-input variables, for the default-enabled inputs:
/// `ENV_INPUT_<NAME>_<KEY>` sets `<key>` of the input's sample (`ENV_INPUT_CPU_PERCPU=true`
/// sets `percpu`), typed as the sample's value (a list is comma-separated), and
/// `ENV_INPUT_<NAME>_TAGS` (`k=v,k2=v2`) its tags. Returns `(file name, TOML)` per input that has
/// any such variable, and warnings for keys the sample does not have (ignored, as Datakit does).
///
/// # Errors
/// Every variable whose value does not fit its key's type.
pub fn input_confs(
    env: &dyn Env,
    enabled: &[String],
    families: &[&dyn dk_proto::family::Descriptor],
) -> Result<InputConfs, Vec<Diagnostic>> {
    let mut b = Builder {
        env,
        out: EnvConfig::default(),
        errors: Vec::new(),
    };
    let mut vars: Vec<(String, String)> = env
        .vars()
        .into_iter()
        .filter(|(k, v)| k.starts_with(INPUT_PREFIX) && !v.is_empty())
        .collect();
    vars.sort();
    let mut files = Vec::new();
    for input in enabled.iter().filter(|i| !i.starts_with('-')) {
        let prefix = format!("{INPUT_PREFIX}{}_", input.to_ascii_uppercase());
        let mine: Vec<&(String, String)> = vars
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let sample = families
            .iter()
            .flat_map(|f| f.samples().iter())
            .find(|(name, _)| name == input)
            .and_then(|(_, text)| toml::from_str::<toml::Table>(text).ok());
        let mut instance = sample
            .as_ref()
            .and_then(|t| t.get("inputs")?.get(input.as_str()).cloned())
            .and_then(|v| match v {
                toml::Value::Array(a) => a.into_iter().next(),
                other => Some(other),
            })
            .and_then(|v| match v {
                toml::Value::Table(t) => Some(t),
                _ => None,
            });
        let Some(instance) = instance.as_mut() else {
            for (var, _) in &mine {
                b.warn(
                    var,
                    format!("{input} has no sample config in this agent; ignored"),
                );
            }
            continue;
        };
        for (var, value) in mine {
            let key = var[prefix.len()..].to_ascii_lowercase();
            if key == "tags" {
                match parse_tags(value) {
                    Ok(tags) => {
                        let t: toml::Table = tags
                            .into_iter()
                            .map(|(k, v)| (k, toml::Value::String(v)))
                            .collect();
                        instance.insert("tags".into(), toml::Value::Table(t));
                    }
                    Err(bad) => b.error(
                        var,
                        format!("{bad:?} is not key=value: write the tags as \"k1=v1,k2=v2\""),
                    ),
                }
                continue;
            }
            let typed = match instance.get(&key) {
                None => {
                    b.warn(
                        var,
                        format!("{input} has no key {key:?}; ignored (see its sample: datakit tool --dump-samples DIR)"),
                    );
                    continue;
                }
                Some(toml::Value::Boolean(_)) => parse_bool(value)
                    .map(toml::Value::Boolean)
                    .ok_or("a boolean: use \"true\" or \"false\""),
                Some(toml::Value::Integer(_)) => value
                    .trim()
                    .parse()
                    .map(toml::Value::Integer)
                    .map_err(|_| "a whole number"),
                Some(toml::Value::Float(_)) => value
                    .trim()
                    .parse()
                    .map(toml::Value::Float)
                    .map_err(|_| "a number"),
                Some(toml::Value::Array(_)) => Ok(strings(&split_list(value))),
                Some(_) => Ok(toml::Value::String(value.clone())),
            };
            match typed {
                Ok(v) => {
                    instance.insert(key, v);
                }
                Err(want) => b.error(
                    var,
                    format!("{value:?} does not fit {input}.{key}: it takes {want}"),
                ),
            }
        }
        let mut inputs = toml::Table::new();
        inputs.insert(
            input.clone(),
            toml::Value::Array(vec![toml::Value::Table(instance.clone())]),
        );
        let mut root = toml::Table::new();
        root.insert("inputs".into(), toml::Value::Table(inputs));
        let body = toml::to_string(&root).unwrap_or_default();
        files.push((
            input_env_file(input),
            format!(
                "# Written by `datakit run -C` from the {prefix}* variables over the {input} sample;\n\
                 # replaced at each start.\n\n{body}"
            ),
        ));
    }
    if b.errors.is_empty() {
        Ok(InputConfs {
            files,
            warnings: b.out.warnings,
        })
    } else {
        Err(b.errors)
    }
}

impl EnvConfig {
    /// `default_enabled_inputs` as the variables set it (empty when they do not).
    pub fn default_enabled_inputs(&self) -> Vec<String> {
        self.table
            .get("default_enabled_inputs")
            .and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Deep-merges `over` into `base` (tables merge, other values replace).
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::diag::Sink;
    use crate::env::MapEnv;
    use crate::main_conf::MainConfig;

    fn env(pairs: &[(&str, &str)]) -> MapEnv {
        MapEnv(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The main config container mode builds from `pairs`, decoded as `datakit run` decodes it.
    fn main_of(pairs: &[(&str, &str)]) -> MainConfig {
        let cfg = from_env(&env(pairs)).unwrap_or_else(|e| panic!("{pairs:?}: {e:?}"));
        let text = cfg.main_conf_text();
        let mut sink = Sink::default();
        let main = MainConfig::decode(&text, Path::new("datakit.conf"), &mut sink);
        assert!(
            sink.errors.is_empty(),
            "{pairs:?}:\n{text}\n{:?}",
            sink.errors
        );
        main
    }

    fn errors_of(pairs: &[(&str, &str)]) -> Vec<Diagnostic> {
        from_env(&env(pairs)).expect_err("a bad value is an error")
    }

    type Check = fn(&MainConfig) -> bool;

    #[test]
    fn every_supported_variable_sets_its_datakit_conf_key() {
        let cases: &[(&str, &str, Check)] = &[
            (
                "ENV_DATAWAY",
                "https://a.example?token=tkn_1,http://b.example:9528?token=tkn_2",
                |m| {
                    m.dataway.urls
                        == [
                            "https://a.example?token=tkn_1",
                            "http://b.example:9528?token=tkn_2",
                        ]
                },
            ),
            ("ENV_DATAWAY_TIMEOUT", "1m", |m| {
                m.dataway.timeout_v2 == Duration::from_secs(60)
            }),
            ("ENV_DATAWAY_MAX_RETRY_COUNT", "7", |m| {
                m.dataway.max_retry_count == 7
            }),
            ("ENV_DATAWAY_RETRY_DELAY", "250ms", |m| {
                m.dataway.retry_delay == Duration::from_millis(250)
            }),
            ("ENV_DATAWAY_HTTP_PROXY", "http://proxy:3128", |m| {
                m.dataway.http_proxy == "http://proxy:3128"
            }),
            ("ENV_DATAWAY_MAX_IDLE_CONNS", "33", |m| {
                m.dataway.max_idle_conns == 33
            }),
            ("ENV_DATAWAY_MAX_IDLE_CONNS_PER_HOST", "9", |m| {
                m.dataway.max_idle_conns_per_host == 9
            }),
            ("ENV_DATAWAY_IDLE_TIMEOUT", "45s", |m| {
                m.dataway.idle_timeout == Duration::from_secs(45)
            }),
            ("ENV_DATAWAY_MAX_RAW_BODY_SIZE", "2097152", |m| {
                m.dataway.max_raw_body_size == 2_097_152
            }),
            ("ENV_DATAWAY_CONTENT_ENCODING", "v1", |m| {
                m.dataway.encoding() == ContentEncoding::LineProtocol
            }),
            ("ENV_DATAWAY_DISABLE_GZIP", "on", |m| !m.dataway.gzip),
            ("ENV_DATAWAY_TLS_INSECURE", "on", |m| m.dataway.tls_insecure),
            ("ENV_DATAWAY_ENABLE_HTTPTRACE", "on", |m| {
                m.dataway.enable_httptrace
            }),
            ("ENV_DATAWAY_DROP_EXPIRED_PACKAGE_AT", "24h", |m| {
                m.dataway.drop_expired_package_at == Duration::from_secs(86_400)
            }),
            ("ENV_DATAWAY_ENABLE_SINKER", "on", |m| {
                m.dataway.enable_sinker
            }),
            (
                "ENV_SINKER_GLOBAL_CUSTOMER_KEYS",
                "sink_project, cluster",
                |m| m.dataway.global_customer_keys == ["sink_project", "cluster"],
            ),
            ("ENV_DATAWAY_NTP_INTERVAL", "10m", |m| {
                m.dataway.ntp.interval == Duration::from_secs(600)
            }),
            ("ENV_DATAWAY_NTP_DIFF", "45s", |m| {
                m.dataway.ntp.diff == Duration::from_secs(45)
            }),
            ("ENV_DATAWAY_DISABLE_NTP", "on", |m| !m.dataway.ntp.enable),
            ("ENV_DATAWAY_WAL_CAPACITY", "0.5", |m| {
                (m.dataway.wal.max_capacity_gb - 0.5).abs() < 1e-9
            }),
            ("ENV_DATAWAY_WAL_WORKERS", "3", |m| {
                m.dataway.wal.workers == 3
            }),
            ("ENV_DATAWAY_WAL_MEM_CAPACITY", "64", |m| {
                m.dataway.wal.mem_cap == 64
            }),
            ("ENV_DATAWAY_WAL_NO_DROP_CATEGORIES", "L,T", |m| {
                m.dataway.wal.no_drop_categories == ["L", "T"]
            }),
            ("ENV_DATAWAY_WAL_PATH", "/data/wal", |m| {
                m.dataway.wal.path == "/data/wal"
            }),
            ("ENV_DATAWAY_WAL_FAIL_CACHE_CLEAN_INTERVAL", "5s", |m| {
                m.dataway.wal.fail_cache_clean_interval == Duration::from_secs(5)
            }),
            ("ENV_HTTP_LISTEN", "0.0.0.0:19529", |m| {
                m.http_api.listen == "0.0.0.0:19529"
            }),
            (
                "ENV_HTTP_LISTEN_SOCKET",
                "/var/run/datakit/datakit.sock",
                |m| m.http_api.listen_socket == "/var/run/datakit/datakit.sock",
            ),
            ("ENV_HTTP_PUBLIC_APIS", "/v1/write/metric,/v1/ping", |m| {
                m.http_api.public_apis == ["/v1/write/metric", "/v1/ping"]
            }),
            ("ENV_HTTP_TIMEOUT", "5s", |m| {
                m.http_api.timeout == Duration::from_secs(5)
            }),
            ("ENV_HTTP_CLOSE_IDLE_CONNECTION", "on", |m| {
                m.http_api.close_idle_connection
            }),
            ("ENV_HTTP_ALLOWED_CORS_ORIGINS", "https://a.example", |m| {
                m.http_api.allowed_cors_origins == ["https://a.example"]
            }),
            ("ENV_DISABLE_404PAGE", "on", |m| m.http_api.disable_404page),
            ("ENV_REQUEST_RATE_LIMIT", "20.5", |m| {
                (m.http_api.request_rate_limit - 20.5).abs() < 1e-9
            }),
            ("ENV_REQUEST_RATE_LIMIT_TTL", "2m", |m| {
                m.http_api.request_rate_limit_ttl == Duration::from_secs(120)
            }),
            ("ENV_REQUEST_RATE_LIMIT_BURST", "50", |m| {
                m.http_api.request_rate_limit_burst == 50
            }),
            ("ENV_RUM_ORIGIN_IP_HEADER", "X-Real-IP", |m| {
                m.http_api.rum_origin_ip_header == "X-Real-IP"
            }),
            ("ENV_RUM_APP_ID_WHITE_LIST", "app1,app2", |m| {
                m.http_api.rum_app_id_white_list == ["app1", "app2"]
            }),
            ("ENV_GLOBAL_HOST_TAGS", "project=p1, team = infra", |m| {
                m.global_host_tags.get("project").map(String::as_str) == Some("p1")
                    && m.global_host_tags.get("team").map(String::as_str) == Some("infra")
            }),
            ("ENV_CLUSTER_NAME_K8S", "prod-1", |m| {
                m.global_host_tags
                    .get("cluster_name_k8s")
                    .map(String::as_str)
                    == Some("prod-1")
            }),
            ("ENV_ENABLE_ELECTION", "on", |m| m.election.enable),
            ("ENV_DEFAULT_ENABLED_INPUTS", "cpu,mem", |m| {
                m.default_enabled_inputs == ["cpu", "mem"]
            }),
            ("ENV_IO_FEED_CHAN_SIZE", "16", |m| m.io.feed_chan_size == 16),
            ("ENV_IO_MAX_CACHE_COUNT", "2000", |m| {
                m.io.max_cache_count == 2000
            }),
            ("ENV_IO_FLUSH_INTERVAL", "2s", |m| {
                m.io.flush_interval == Duration::from_secs(2)
            }),
            ("ENV_IO_FLUSH_WORKERS", "4", |m| m.io.flush_workers == 4),
            ("ENV_IO_AUTO_TIMESTAMP_CORRECTION", "false", |m| {
                !m.io.auto_timestamp_correction
            }),
            (
                "ENV_IO_FILTERS",
                r#"{"logging":["{ source = 'nginx' }"]}"#,
                |m| {
                    m.io.filters
                        .get("logging")
                        .is_some_and(|c| c == &["{ source = 'nginx' }"])
                },
            ),
            ("ENV_LOG", "/var/log/datakit/log", |m| {
                m.logging.log == "/var/log/datakit/log"
            }),
            ("ENV_GIN_LOG", "/var/log/datakit/gin.log", |m| {
                m.logging.gin_log == "/var/log/datakit/gin.log"
            }),
            ("ENV_LOG_LEVEL", "DEBUG", |m| m.logging.level == "debug"),
            ("ENV_DISABLE_LOG_COLOR", "on", |m| m.logging.disable_color),
            ("ENV_LOG_ROTATE_SIZE_MB", "64", |m| m.logging.rotate == 64),
            ("ENV_LOG_ROTATE_BACKUP", "3", |m| {
                m.logging.rotate_backups == 3
            }),
            ("ENV_HOSTNAME", "node-a", |m| {
                m.environments.get("ENV_HOSTNAME").map(String::as_str) == Some("node-a")
            }),
            ("ENV_K8S_NODE_NAME", "node-b", |m| {
                m.environments.get("ENV_HOSTNAME").map(String::as_str) == Some("node-b")
            }),
            ("ENV_K8S_CLUSTER_NODE_NAME", "c1-node-b", |m| {
                m.environments.get("ENV_HOSTNAME").map(String::as_str) == Some("c1-node-b")
            }),
            ("ENV_NAME", "edge-agent", |m| m.name == "edge-agent"),
            ("ENV_ULIMIT", "4096", |m| m.ulimit == 4096),
            ("ENV_PPROF_LISTEN", "0.0.0.0:6060", |m| {
                m.pprof_listen == "0.0.0.0:6060"
            }),
            ("ENV_DISABLE_PROTECT_MODE", "on", |m| !m.protect_mode),
        ];
        let defaults = main_of(&[]);
        for (var, value, check) in cases {
            assert!(
                !check(&defaults),
                "{var}: the check must fail on the defaults"
            );
            let main = main_of(&[(var, value)]);
            assert!(check(&main), "{var}={value:?} did not set its key");
        }
    }

    #[test]
    fn container_defaults_log_to_stdout_enable_no_input_and_set_no_resource_limit() {
        let main = main_of(&[]);
        assert_eq!(main.logging.log, "stdout");
        assert_eq!(main.logging.gin_log, "stdout");
        assert!(main.default_enabled_inputs.is_empty());
        assert!(!main.resource_limit.enable);
        assert_eq!(main.http_api.listen, "localhost:9529");
        assert!(main.dataway.urls.is_empty());
    }

    #[test]
    fn every_bad_value_is_reported_at_once_naming_its_variable() {
        let errors = errors_of(&[
            ("ENV_HTTP_LISTEN", "9529"),
            ("ENV_DATAWAY", "openway.example?token=x"),
            ("ENV_DATAWAY_TIMEOUT", "30"),
            ("ENV_DATAWAY_MAX_RETRY_COUNT", "11"),
            ("ENV_DATAWAY_CONTENT_ENCODING", "v9"),
            ("ENV_DATAWAY_WAL_CAPACITY", "lots"),
            ("ENV_DATAWAY_WAL_NO_DROP_CATEGORIES", "L,bogus"),
            ("ENV_GLOBAL_HOST_TAGS", "a=1,novalue"),
            ("ENV_IO_MAX_CACHE_COUNT", "10"),
            ("ENV_IO_FILTERS", "{not json"),
            ("ENV_IO_AUTO_TIMESTAMP_CORRECTION", "maybe"),
            ("ENV_LOG_LEVEL", "loud"),
            ("ENV_LOG_ROTATE_SIZE_MB", "-1"),
            ("ENV_ULIMIT", "many"),
            ("ENV_DCA_WEBSOCKET_SERVER", "http://dca:8000/ws"),
            ("ENV_DATAKIT_INPUTS", "[[inputs.cpu]\n"),
            ("ENV_HTTP_LISTEN_SOCKET", "127.0.0.1:1"),
            ("ENV_REQUEST_RATE_LIMIT", "fast"),
        ]);
        let vars: Vec<&str> = errors.iter().map(|d| d.key.as_str()).collect();
        for var in [
            "ENV_HTTP_LISTEN",
            "ENV_DATAWAY",
            "ENV_DATAWAY_TIMEOUT",
            "ENV_DATAWAY_MAX_RETRY_COUNT",
            "ENV_DATAWAY_CONTENT_ENCODING",
            "ENV_DATAWAY_WAL_CAPACITY",
            "ENV_DATAWAY_WAL_NO_DROP_CATEGORIES",
            "ENV_GLOBAL_HOST_TAGS",
            "ENV_IO_MAX_CACHE_COUNT",
            "ENV_IO_FILTERS",
            "ENV_IO_AUTO_TIMESTAMP_CORRECTION",
            "ENV_LOG_LEVEL",
            "ENV_LOG_ROTATE_SIZE_MB",
            "ENV_ULIMIT",
            "ENV_DCA_WEBSOCKET_SERVER",
            "ENV_DATAKIT_INPUTS",
            "ENV_HTTP_LISTEN_SOCKET",
            "ENV_REQUEST_RATE_LIMIT",
        ] {
            assert!(vars.contains(&var), "{var} not reported: {errors:#?}");
        }
        assert_eq!(errors.len(), 18, "one error per bad variable: {errors:#?}");
        for d in &errors {
            assert_eq!(d.file, Path::new(ENV_SOURCE));
            assert!(
                d.to_string()
                    .starts_with(&format!("environment: {}: ", d.key)),
                "{d}"
            );
        }
        let listen = errors.iter().find(|d| d.key == "ENV_HTTP_LISTEN").unwrap();
        assert!(
            listen.message.contains("0.0.0.0:9529"),
            "says how to write it: {listen}"
        );
        let timeout = errors
            .iter()
            .find(|d| d.key == "ENV_DATAWAY_TIMEOUT")
            .unwrap();
        assert!(timeout.message.contains("\"10s\""), "{timeout}");
    }

    #[test]
    fn deprecated_aliases_apply_when_the_new_name_is_unset_and_are_warned_about() {
        let cfg = from_env(&env(&[
            ("ENV_GLOBAL_TAGS", "old=1"),
            ("ENV_ENABLE_INPUTS", "cpu"),
            ("NODE_NAME", "n1"),
            ("ENV_ENABLE_ELECTION", "on"),
            ("ENV_GLOBAL_ENV_TAGS", "e=1"),
        ]))
        .unwrap();
        let warned: Vec<&str> = cfg.warnings.iter().map(|d| d.key.as_str()).collect();
        for var in [
            "ENV_GLOBAL_TAGS",
            "ENV_ENABLE_INPUTS",
            "NODE_NAME",
            "ENV_GLOBAL_ENV_TAGS",
        ] {
            assert!(warned.contains(&var), "{var}: {warned:?}");
        }
        let main = main_of(&[
            ("ENV_GLOBAL_TAGS", "old=1"),
            ("ENV_ENABLE_INPUTS", "cpu"),
            ("NODE_NAME", "n1"),
            ("ENV_ENABLE_ELECTION", "on"),
            ("ENV_GLOBAL_ENV_TAGS", "e=1"),
        ]);
        assert_eq!(
            main.global_host_tags.get("old").map(String::as_str),
            Some("1")
        );
        assert_eq!(main.default_enabled_inputs, ["cpu"]);
        assert_eq!(main.environments["ENV_HOSTNAME"], "n1");
        assert_eq!(main.election.tags.get("e").map(String::as_str), Some("1"));

        // The new name wins, and nothing is warned about.
        let cfg = from_env(&env(&[
            ("ENV_GLOBAL_HOST_TAGS", "new=2"),
            ("ENV_GLOBAL_TAGS", "old=1"),
        ]))
        .unwrap();
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let main = main_of(&[
            ("ENV_GLOBAL_HOST_TAGS", "new=2"),
            ("ENV_GLOBAL_TAGS", "old=1"),
        ]);
        assert!(main.global_host_tags.contains_key("new"));
        assert!(!main.global_host_tags.contains_key("old"));
    }

    #[test]
    fn a_dash_enables_no_default_input() {
        let main = main_of(&[("ENV_DEFAULT_ENABLED_INPUTS", "-")]);
        assert!(main.default_enabled_inputs.is_empty());
        let cfg = from_env(&env(&[("ENV_DEFAULT_ENABLED_INPUTS", "-")])).unwrap();
        assert!(cfg.main_conf_text().contains("default_enabled_inputs = []"));
    }

    #[test]
    fn election_settings_apply_only_with_enable_election_as_in_datakit() {
        let on = main_of(&[
            ("ENV_ENABLE_ELECTION", "yes"),
            ("ENV_NAMESPACE", "ns1"),
            ("ENV_ENABLE_ELECTION_NAMESPACE_TAG", "on"),
            ("ENV_GLOBAL_ELECTION_TAGS", "cluster=c1"),
            ("ENV_ELECTION_NODE_WHITELIST", r#"["n1","n2"]"#),
        ]);
        assert!(on.election.enable);
        assert_eq!(on.election.namespace, "ns1");
        assert!(on.election.enable_namespace_tag);
        assert_eq!(on.election.node_whitelist, ["n1", "n2"]);
        let tags = on.election_tags();
        assert!(tags.contains(&("cluster".into(), "c1".into())), "{tags:?}");
        assert!(
            tags.contains(&("election_namespace".into(), "ns1".into())),
            "{tags:?}"
        );

        let comma = main_of(&[
            ("ENV_ENABLE_ELECTION", "1"),
            ("ENV_ELECTION_NODE_WHITELIST", "a, b"),
        ]);
        assert_eq!(comma.election.node_whitelist, ["a", "b"]);

        let pairs = [
            ("ENV_NAMESPACE", "ns1"),
            ("ENV_GLOBAL_ELECTION_TAGS", "cluster=c1"),
        ];
        let off = main_of(&pairs);
        assert!(!off.election.enable);
        assert_eq!(off.election.namespace, "default");
        assert!(off.election.tags.is_empty());
        let cfg = from_env(&env(&pairs)).unwrap();
        assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
        assert!(
            cfg.warnings
                .iter()
                .all(|d| d.message.contains("ENV_ENABLE_ELECTION"))
        );
    }

    #[test]
    fn env_hostname_wins_over_the_node_names() {
        let main = main_of(&[
            ("ENV_K8S_NODE_NAME", "node"),
            ("ENV_K8S_CLUSTER_NODE_NAME", "cluster-node"),
            ("ENV_HOSTNAME", "explicit"),
        ]);
        assert_eq!(main.environments["ENV_HOSTNAME"], "explicit");
        let main = main_of(&[
            ("ENV_K8S_NODE_NAME", "node"),
            ("ENV_K8S_CLUSTER_NODE_NAME", "cn"),
        ]);
        assert_eq!(main.environments["ENV_HOSTNAME"], "cn");
    }

    #[test]
    fn tls_needs_both_files_and_files_without_enable_tls_are_a_warning() {
        let errors = errors_of(&[
            ("ENV_HTTP_ENABLE_TLS", "on"),
            ("ENV_HTTP_TLS_CRT", "/c.pem"),
        ]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "ENV_HTTP_TLS_KEY");
        let main = main_of(&[
            ("ENV_HTTP_ENABLE_TLS", "on"),
            ("ENV_HTTP_TLS_CRT", "/c.pem"),
            ("ENV_HTTP_TLS_KEY", "/k.pem"),
        ]);
        assert_eq!(main.http_api.tls.cert, "/c.pem");
        assert_eq!(main.http_api.tls.privkey, "/k.pem");
        let cfg = from_env(&env(&[("ENV_HTTP_TLS_CRT", "/c.pem")])).unwrap();
        assert_eq!(cfg.warnings[0].key, "ENV_HTTP_TLS_CRT");
        assert!(
            main_of(&[("ENV_HTTP_TLS_CRT", "/c.pem")])
                .http_api
                .tls
                .cert
                .is_empty()
        );
    }

    #[test]
    fn dca_websocket_server_enables_dca_with_its_token() {
        let main = main_of(&[
            ("ENV_DCA_WEBSOCKET_SERVER", "ws://dca:8000/ws"),
            ("ENV_DCA_TOKEN", "tok"),
        ]);
        assert!(main.dca.enable);
        assert_eq!(main.dca.websocket_server, "ws://dca:8000/ws");
        assert_eq!(main.dca.token, "tok");
    }

    #[test]
    fn datakit_inputs_are_kept_for_their_own_file_and_empty_values_count_as_unset() {
        let toml = "[[inputs.cpu]]\n  interval = \"10s\"\n";
        let cfg = from_env(&env(&[
            ("ENV_DATAKIT_INPUTS", toml),
            ("ENV_HTTP_LISTEN", ""),
        ]))
        .unwrap();
        assert_eq!(cfg.inputs_conf.as_deref(), Some(toml));
        assert!(
            cfg.table.is_empty(),
            "an empty variable sets nothing: {:?}",
            cfg.table
        );
    }

    #[test]
    fn unsupported_variables_and_groups_are_warned_about_once_each() {
        let cfg = from_env(&env(&[
            ("ENV_ENABLE_PPROF", "on"),
            ("ENV_GIT_URL", "git@x:r.git"),
            ("ENV_GIT_BRANCH", "main"),
            ("ENV_CONFD_BACKEND", "etcdv3"),
            ("ENV_DATAKIT_OPERATOR", "op"),
        ]))
        .unwrap();
        let warned: Vec<&str> = cfg.warnings.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            warned,
            [
                "ENV_ENABLE_PPROF",
                "ENV_DATAKIT_OPERATOR",
                "ENV_GIT_BRANCH",
                "ENV_CONFD_BACKEND"
            ],
            "{:#?}",
            cfg.warnings
        );
        let git = &cfg.warnings[2];
        assert!(git.message.contains("ENV_GIT_BRANCH, ENV_GIT_URL"), "{git}");
        assert!(
            cfg.warnings
                .iter()
                .all(|d| d.message.contains("not supported"))
        );
    }

    #[test]
    fn host_mode_names_the_variables_it_ignores_but_not_env_hostname() {
        let cfg = from_env(&env(&[("ENV_HOSTNAME", "h")])).unwrap();
        assert_eq!(cfg.host_mode_ignored(), None);
        let cfg = from_env(&env(&[
            ("ENV_HOSTNAME", "h"),
            ("ENV_DATAWAY", "http://dw:9528?token=t"),
            ("ENV_GLOBAL_HOST_TAGS", "a=1,b=2"),
            ("ENV_DATAKIT_INPUTS", "[[inputs.cpu]]"),
        ]))
        .unwrap();
        let text = cfg.host_mode_ignored().unwrap();
        assert!(
            text.ends_with("ignored: ENV_DATAKIT_INPUTS, ENV_DATAWAY, ENV_GLOBAL_HOST_TAGS"),
            "{text}"
        );
        assert!(text.contains("datakit run -C"), "{text}");
        assert_eq!(
            cfg.origin_of("global_host_tags.a"),
            Some("ENV_GLOBAL_HOST_TAGS")
        );
        assert_eq!(cfg.origin_of("dataway.urls[0]"), Some("ENV_DATAWAY"));
        assert_eq!(cfg.origin_of("io.flush_interval"), None);
    }

    struct HostSamples;

    impl dk_proto::family::Descriptor for HostSamples {
        fn name(&self) -> &'static str {
            "host"
        }
        fn inputs(&self) -> &'static [&'static str] {
            &["cpu", "disk"]
        }
        fn samples(&self) -> &'static [(&'static str, &'static str)] {
            &[
                (
                    "cpu",
                    "[[inputs.cpu]]\n  interval = '10s'\n  percpu = false\n  max = 3\n[inputs.cpu.tags]\n",
                ),
                (
                    "disk",
                    "[[inputs.disk]]\n  interval = '10s'\n  extra_device = []\n",
                ),
            ]
        }
        fn validate(&self, _: &str, _: &str) -> Vec<dk_proto::config::ConfigProblem> {
            Vec::new()
        }
    }

    fn input_files(pairs: &[(&str, &str)], enabled: &[&str]) -> Vec<(String, toml::Table)> {
        let enabled: Vec<String> = enabled.iter().map(|s| s.to_string()).collect();
        let InputConfs { files, warnings } =
            input_confs(&env(pairs), &enabled, &[&HostSamples]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        files
            .into_iter()
            .map(|(name, text)| (name, toml::from_str(&text).unwrap()))
            .collect()
    }

    #[test]
    fn per_input_variables_set_the_keys_of_default_enabled_inputs_typed_as_their_sample() {
        let files = input_files(
            &[
                ("ENV_INPUT_CPU_PERCPU", "true"),
                ("ENV_INPUT_CPU_INTERVAL", "1s"),
                ("ENV_INPUT_CPU_MAX", "7"),
                ("ENV_INPUT_CPU_TAGS", "team=infra,tier=1"),
                ("ENV_INPUT_DISK_EXTRA_DEVICE", "/dev/sdb,/dev/sdc"),
                ("ENV_INPUT_MEM_INTERVAL", "5s"),
            ],
            &["cpu", "disk", "-mem"],
        );
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ENV_INPUT_CPU.conf", "ENV_INPUT_DISK.conf"]);
        let cpu = &files[0].1["inputs"]["cpu"][0];
        assert_eq!(cpu["percpu"].as_bool(), Some(true));
        assert_eq!(cpu["interval"].as_str(), Some("1s"));
        assert_eq!(cpu["max"].as_integer(), Some(7));
        assert_eq!(cpu["tags"]["team"].as_str(), Some("infra"));
        let disk = &files[1].1["inputs"]["disk"][0];
        assert_eq!(
            disk["extra_device"].as_array().unwrap().len(),
            2,
            "{disk:?}"
        );
        assert_eq!(
            disk["interval"].as_str(),
            Some("10s"),
            "the sample's value stays"
        );
        assert!(input_files(&[("ENV_INPUT_CPU_PERCPU", "true")], &[]).is_empty());
    }

    #[test]
    fn a_per_input_value_of_the_wrong_type_is_an_error_and_an_unknown_key_a_warning() {
        let enabled = vec!["cpu".to_string()];
        let errors = input_confs(
            &env(&[
                ("ENV_INPUT_CPU_PERCPU", "maybe"),
                ("ENV_INPUT_CPU_MAX", "x"),
            ]),
            &enabled,
            &[&HostSamples],
        )
        .unwrap_err();
        let vars: Vec<&str> = errors.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            vars,
            ["ENV_INPUT_CPU_MAX", "ENV_INPUT_CPU_PERCPU"],
            "{errors:?}"
        );
        let warnings = input_confs(
            &env(&[("ENV_INPUT_CPU_NOPE", "1")]),
            &enabled,
            &[&HostSamples],
        )
        .unwrap()
        .warnings;
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].message.contains("no key \"nope\""),
            "{warnings:?}"
        );
    }
}
