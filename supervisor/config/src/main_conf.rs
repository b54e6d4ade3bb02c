//! `datakit.conf`: the typed main configuration, decoded over Datakit's code defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::addr::{ListenAddr, parse_url};
use crate::diag::{Sink, toml_syntax_message};
use crate::env::Env;
use crate::host::HostProbe;

/// The whole of `datakit.conf`. Every field defaults to Datakit 1.84's code default, so a
/// missing key behaves as in Datakit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MainConfig {
    /// `name`: a free-form name of this agent.
    pub name: String,
    /// Inputs enabled with their sample config when no `conf.d` file configures them;
    /// `-name` disables `name` (and its `conf.d` instances) as in Datakit.
    pub default_enabled_inputs: Vec<String>,
    /// Serve pprof-style profiling on `pprof_listen`.
    pub enable_pprof: bool,
    /// `host:port` of the profiling server.
    pub pprof_listen: String,
    /// Protect mode: keeps collection parameters within safe bounds.
    pub protect_mode: bool,
    /// Open-files limit to set at start (0 = leave as is).
    pub ulimit: u64,
    /// `[http_api]`.
    pub http_api: HttpApi,
    /// `[dataway]`.
    pub dataway: Dataway,
    /// `[io]`.
    pub io: Io,
    /// `[logging]`.
    pub logging: Logging,
    /// `[global_host_tags]`; after loading, placeholders are resolved and the legacy
    /// `[global_tags]` is merged in (legacy values win, as in Datakit).
    pub global_host_tags: BTreeMap<String, String>,
    /// Legacy `[global_tags]`; empty after loading (merged into `global_host_tags`).
    pub global_tags: BTreeMap<String, String>,
    /// `[election]`.
    pub election: Election,
    /// `[environments]` (`ENV_HOSTNAME` renames the host).
    pub environments: BTreeMap<String, String>,
    /// `[resource_limit]`.
    pub resource_limit: ResourceLimit,
    /// `[sinks]` (our addition): upstreams beside Dataway, each with its own queue position.
    pub sinks: Sinks,
    /// `[dk_upgrader]`: the remote upgrade service on 9542, run by the supervisor.
    pub dk_upgrader: DkUpgrader,
    /// `[dca]`: the agent dials a DCA console over WebSocket.
    pub dca: Dca,
    /// Datakit tables this build accepts but does not use (`pipeline`, `dca`,
    /// `recorder`, `git_repos`...), kept as written for components that may want them.
    #[serde(skip)]
    pub other: toml::Table,
    /// The resolved host name (`[environments] ENV_HOSTNAME`, env `ENV_HOSTNAME`, OS).
    #[serde(skip)]
    pub hostname: String,
    /// Whether the file sets `ulimit` (a default above the hard limit is clamped silently).
    #[serde(skip)]
    pub ulimit_set: bool,
}

impl Default for MainConfig {
    fn default() -> Self {
        MainConfig {
            name: String::new(),
            default_enabled_inputs: Vec::new(),
            enable_pprof: true,
            pprof_listen: "localhost:6060".into(),
            protect_mode: true,
            ulimit: 64000,
            ulimit_set: false,
            http_api: HttpApi::default(),
            dataway: Dataway::default(),
            io: Io::default(),
            logging: Logging::default(),
            global_host_tags: BTreeMap::new(),
            global_tags: BTreeMap::new(),
            election: Election::default(),
            environments: BTreeMap::from([("ENV_HOSTNAME".to_string(), String::new())]),
            resource_limit: ResourceLimit::default(),
            dk_upgrader: DkUpgrader::default(),
            dca: Dca::default(),
            sinks: Sinks::default(),
            other: toml::Table::new(),
            hostname: String::new(),
        }
    }
}

/// `[sinks]`: where data goes besides `[dataway] urls` (not a Datakit table).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sinks {
    /// `[sinks.local]`: rotating line-protocol files.
    pub local: LocalSink,
    /// `[sinks.influxdb]`: an InfluxDB 1.x `/write` endpoint.
    pub influxdb: InfluxSink,
}

/// `[sinks.local]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalSink {
    /// `true` or `false`; absent = on exactly when no `[dataway] urls` and no InfluxDB are set.
    pub enable: Option<bool>,
    /// Directory, relative to the workdir unless absolute. Defaults to `data/local`.
    pub dir: String,
    /// Rotate `current.lp` at this size in MiB. Defaults to 32.
    pub max_file_mb: u64,
    /// Rotated files kept per category. Defaults to 16.
    pub max_files: usize,
    /// All files of all categories together, in MiB: the oldest rotated files go first.
    /// Defaults to 1024. (Under disk pressure, above the queue's 95 % guard, the oldest rotated
    /// files are deleted as well.)
    pub max_total_mb: u64,
}

impl Default for LocalSink {
    fn default() -> Self {
        LocalSink {
            enable: None,
            dir: "data/local".into(),
            max_file_mb: 32,
            max_files: 16,
            max_total_mb: 1024,
        }
    }
}

/// `[sinks.influxdb]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InfluxSink {
    /// Base URL, e.g. `http://127.0.0.1:8086`; empty = off.
    pub url: String,
    /// Database to write to.
    pub database: String,
    /// Retention policy; empty = the database default.
    pub retention_policy: String,
    /// User name; empty = no auth.
    pub username: String,
    /// Password.
    pub password: String,
    /// Gzip request bodies.
    pub gzip: bool,
    /// Request timeout.
    #[serde(with = "dk_proto::config::go")]
    pub timeout: Duration,
    /// Categories sent (names or aliases). Defaults to `["metric"]`.
    pub categories: Vec<String>,
}

impl Default for InfluxSink {
    fn default() -> Self {
        InfluxSink {
            url: String::new(),
            database: String::new(),
            retention_policy: String::new(),
            username: String::new(),
            password: String::new(),
            gzip: false,
            timeout: Duration::from_secs(30),
            categories: vec!["metric".into()],
        }
    }
}

/// `[http_api]`: the 9529 server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpApi {
    /// `host:port` or an absolute Unix socket path.
    pub listen: String,
    /// An extra Unix socket listener (absolute path), empty for none.
    pub listen_socket: String,
    /// Handler timeout (408 after it).
    #[serde(with = "dk_proto::config::go")]
    pub timeout: Duration,
    /// Close idle connections after `timeout`.
    pub close_idle_connection: bool,
    /// Plain 404 instead of the welcome page.
    pub disable_404page: bool,
    /// CORS origins allowed; empty = all.
    pub allowed_cors_origins: Vec<String>,
    /// Routes reachable from non-loopback peers; empty = the write routes and ping.
    pub public_apis: Vec<String>,
    /// Requests per second per route (0 or less = no limit).
    pub request_rate_limit: f64,
    /// Rate limiter TTL (accepted; Datakit ignores it).
    #[serde(with = "dk_proto::config::go")]
    pub request_rate_limit_ttl: Duration,
    /// Rate limiter burst (accepted; Datakit ignores it).
    pub request_rate_limit_burst: u64,
    /// Header carrying the RUM client IP.
    pub rum_origin_ip_header: String,
    /// RUM app ids accepted; empty = all.
    pub rum_app_id_white_list: Vec<String>,
    /// Cap on one write body after decompression, in MiB (our addition; 413 past it).
    pub max_body_size_mb: u64,
    /// Memory budget shared by every write request being read, inflated and decoded at
    /// once, in MiB (our addition; 503 with `Retry-After` past it).
    pub max_inflight_body_mb: u64,
    /// Cap on open API connections (our addition); also kept 256 below the open-files
    /// limit so the queue and sinks always have descriptors. Past it new connections are
    /// closed at once.
    pub max_connections: u64,
    /// `[http_api.tls]`.
    pub tls: HttpTls,
}

impl Default for HttpApi {
    fn default() -> Self {
        HttpApi {
            listen: "localhost:9529".into(),
            listen_socket: String::new(),
            timeout: Duration::from_secs(30),
            close_idle_connection: false,
            disable_404page: false,
            allowed_cors_origins: Vec::new(),
            public_apis: Vec::new(),
            request_rate_limit: 100.0,
            request_rate_limit_ttl: Duration::from_secs(60),
            request_rate_limit_burst: 500,
            rum_origin_ip_header: "X-Forwarded-For".into(),
            rum_app_id_white_list: Vec::new(),
            max_body_size_mb: 64,
            max_inflight_body_mb: 128,
            max_connections: 4096,
            tls: HttpTls::default(),
        }
    }
}

impl HttpApi {
    /// The parsed `listen` address (validated while loading).
    ///
    /// # Errors
    /// What form is expected, when `listen` is malformed.
    pub fn listen_addr(&self) -> Result<ListenAddr, String> {
        ListenAddr::parse(&self.listen)
    }
}

/// `[http_api.tls]`: HTTPS is served only when both files exist.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpTls {
    /// Certificate (PEM) path.
    pub cert: String,
    /// Private key (PEM) path.
    pub privkey: String,
}

impl HttpTls {
    /// Whether both files are set and exist (Datakit's rule for serving HTTPS).
    pub fn enabled(&self) -> bool {
        !self.cert.is_empty()
            && !self.privkey.is_empty()
            && Path::new(&self.cert).is_file()
            && Path::new(&self.privkey).is_file()
    }
}

/// The body encoding of uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentEncoding {
    /// `v1` / `line-protocol`.
    LineProtocol,
    /// `v2` / `protobuf` (Datakit's default).
    Protobuf,
    /// `json`.
    Json,
    /// `pbjson`.
    PbJson,
}

impl FromStr for ContentEncoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "v1" | "line-protocol" => Ok(ContentEncoding::LineProtocol),
            "v2" | "protobuf" => Ok(ContentEncoding::Protobuf),
            "json" => Ok(ContentEncoding::Json),
            "pbjson" => Ok(ContentEncoding::PbJson),
            _ => Err(format!(
                "unknown content encoding {s:?}: use \"v2\" (protobuf) or \"v1\" (line protocol)"
            )),
        }
    }
}

/// `[dataway]`: where data is uploaded. No `urls` means the local-files sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dataway {
    /// Dataway URLs with `?token=`; several = deprecated fan-out; empty = local files.
    pub urls: Vec<String>,
    /// Request and dial timeout (legacy key `timeout` is read as an alias).
    #[serde(with = "dk_proto::config::go")]
    pub timeout_v2: Duration,
    /// Total attempts per request, 1..=10 (values outside are clamped, as Datakit does).
    pub max_retry_count: i64,
    /// Base delay between attempts.
    #[serde(with = "dk_proto::config::go")]
    pub retry_delay: Duration,
    /// HTTP(S) proxy for all Dataway traffic, empty for none.
    pub http_proxy: String,
    /// Idle connections kept in total (0 = no limit).
    pub max_idle_conns: usize,
    /// Idle connections kept per host (0 is read as 64, as Datakit does).
    pub max_idle_conns_per_host: usize,
    /// Idle connection lifetime.
    #[serde(with = "dk_proto::config::go")]
    pub idle_timeout: Duration,
    /// Largest body before gzip, in bytes (at least 100 KiB under protect mode).
    pub max_raw_body_size: usize,
    /// `v2` (protobuf) or `v1` (line protocol); see [`Dataway::encoding`].
    pub content_encoding: String,
    /// Gzip bodies.
    pub gzip: bool,
    /// Skip TLS certificate checks.
    pub tls_insecure: bool,
    /// Collect HTTP client trace metrics.
    pub enable_httptrace: bool,
    /// Split uploads by global tags / customer keys (`X-Global-Tags`).
    pub enable_sinker: bool,
    /// Extra keys for the sinker.
    pub global_customer_keys: Vec<String>,
    /// Bodies older than this are dropped instead of uploaded.
    #[serde(with = "dk_proto::config::go")]
    pub drop_expired_package_at: Duration,
    /// `[dataway.ntp]`.
    pub ntp: Ntp,
    /// `[dataway.wal]`.
    pub wal: Wal,
}

impl Default for Dataway {
    fn default() -> Self {
        Dataway {
            urls: Vec::new(),
            timeout_v2: Duration::from_secs(30),
            max_retry_count: 1,
            retry_delay: Duration::from_secs(1),
            http_proxy: String::new(),
            max_idle_conns: 0,
            max_idle_conns_per_host: 0,
            idle_timeout: Duration::from_secs(90),
            max_raw_body_size: DEFAULT_MAX_RAW_BODY,
            content_encoding: "v2".into(),
            gzip: true,
            tls_insecure: false,
            enable_httptrace: false,
            enable_sinker: false,
            global_customer_keys: Vec::new(),
            drop_expired_package_at: Duration::from_secs(12 * 3600),
            ntp: Ntp::default(),
            wal: Wal::default(),
        }
    }
}

impl Dataway {
    /// The parsed `content_encoding` (validated while loading; protobuf if it does not parse).
    pub fn encoding(&self) -> ContentEncoding {
        self.content_encoding
            .parse()
            .unwrap_or(ContentEncoding::Protobuf)
    }

    /// `dev_null` as the first URL: Datakit's development mode (nothing is uploaded).
    pub fn dev_null(&self) -> bool {
        self.urls.first().is_some_and(|u| u == DEV_NULL_URL)
    }
}

const DEFAULT_MAX_RAW_BODY: usize = 1 << 20;
const MIN_RAW_BODY_PROTECTED: usize = 100 << 10;
const DEV_NULL_URL: &str = "dev_null";

/// `[dataway.ntp]`: Dataway as a time source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ntp {
    /// Sync with Dataway's clock.
    pub enable: bool,
    /// How often (at least 1m).
    #[serde(with = "dk_proto::config::go")]
    pub interval: Duration,
    /// Adjust point time when the clocks differ by this much (at least 5s).
    #[serde(with = "dk_proto::config::go")]
    pub diff: Duration,
}

impl Default for Ntp {
    fn default() -> Self {
        Ntp {
            enable: true,
            interval: Duration::from_secs(300),
            diff: Duration::from_secs(30),
        }
    }
}

/// `[dataway.wal]`: the durable upload queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Wal {
    /// Disk cap per category, in GiB.
    pub max_capacity_gb: f64,
    /// Upload workers (0 = 8 × CPU-limit cores).
    pub workers: usize,
    /// In-memory queue length before disk (-1 disables).
    pub mem_cap: i64,
    /// Queue directory; empty means `<workdir>/cache/dw-wal`, a relative path is under the
    /// workdir (resolved while loading).
    pub path: String,
    /// How often failed uploads are retried.
    #[serde(with = "dk_proto::config::go")]
    pub fail_cache_clean_interval: Duration,
    /// Categories (names or aliases) that block instead of dropping when the disk cap is hit.
    pub no_drop_categories: Vec<String>,
    /// Do not keep a read position file.
    pub no_pos: bool,
}

impl Default for Wal {
    fn default() -> Self {
        Wal {
            max_capacity_gb: 2.0,
            workers: 0,
            mem_cap: 0,
            path: String::new(),
            fail_cache_clean_interval: Duration::from_secs(30),
            no_drop_categories: Vec::new(),
            no_pos: false,
        }
    }
}

/// `[io]`: batching between inputs and upload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Io {
    /// Flush a category once this many points are queued.
    pub max_cache_count: usize,
    /// Flush at least this often.
    #[serde(with = "dk_proto::config::go")]
    pub flush_interval: Duration,
    /// Flush workers (0 = 2 × CPU-limit cores).
    pub flush_workers: usize,
    /// Feed channel capacity (0 = 128, -1 = unbuffered).
    pub feed_chan_size: i64,
    /// Replace times more than 2 h off with now.
    pub auto_timestamp_correction: bool,
    /// `[io.filters]`: category → filter conditions.
    pub filters: BTreeMap<String, Vec<String>>,
}

impl Default for Io {
    fn default() -> Self {
        Io {
            max_cache_count: 1000,
            flush_interval: Duration::from_secs(10),
            flush_workers: 0,
            feed_chan_size: 1,
            auto_timestamp_correction: true,
            filters: BTreeMap::new(),
        }
    }
}

/// `[logging]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Logging {
    /// Log file, or `stdout`.
    pub log: String,
    /// HTTP access log file, or `stdout`.
    pub gin_log: String,
    /// `info` or `debug`.
    pub level: String,
    /// No colours on stdout.
    pub disable_color: bool,
    /// Rotate at this size, in MiB.
    pub rotate: u64,
    /// Rotated files kept.
    pub rotate_backups: u64,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            log: "/var/log/datakit/log".into(),
            gin_log: "/var/log/datakit/gin.log".into(),
            level: "info".into(),
            disable_color: false,
            rotate: 32,
            rotate_backups: 5,
        }
    }
}

/// `[election]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Election {
    /// Take part in leader election.
    pub enable: bool,
    /// Only these hosts may be elected; empty = all.
    pub node_whitelist: Vec<String>,
    /// Election scope inside the workspace.
    pub namespace: String,
    /// Add `election_namespace=<namespace>` to election tags.
    pub enable_namespace_tag: bool,
    /// `[election.tags]`: tags for election-aware inputs.
    pub tags: BTreeMap<String, String>,
    /// `dataway` (Datakit's protocol against the first Dataway URL) or `etcd`.
    pub backend: String,
    /// `[election.etcd]`: the etcd backend.
    pub etcd: EtcdElection,
}

impl Default for Election {
    fn default() -> Self {
        Election {
            enable: false,
            node_whitelist: Vec::new(),
            namespace: "default".into(),
            enable_namespace_tag: false,
            tags: BTreeMap::new(),
            backend: "dataway".into(),
            etcd: EtcdElection::default(),
        }
    }
}

/// `[election.etcd]`: leader election through etcd leases and campaigns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EtcdElection {
    /// `host:port` or `http(s)://host:port` of the etcd members.
    pub endpoints: Vec<String>,
    /// Lease time to live: a leader silent this long is replaced, and stops collecting.
    #[serde(with = "dk_proto::config::go")]
    pub lease: Duration,
    /// Key prefix of the campaign; the namespace is appended.
    pub prefix: String,
    /// etcd user (with `password`).
    pub username: String,
    /// etcd password.
    pub password: String,
    /// CA certificate (PEM) to verify the members with; enables TLS.
    pub tls_ca: String,
    /// Client certificate (PEM) for mutual TLS (with `tls_key`).
    pub tls_cert: String,
    /// Client key (PEM).
    pub tls_key: String,
}

impl Default for EtcdElection {
    fn default() -> Self {
        EtcdElection {
            endpoints: Vec::new(),
            lease: Duration::from_secs(10),
            prefix: "/datakit/election".into(),
            username: String::new(),
            password: String::new(),
            tls_ca: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

/// `[dk_upgrader]`: remote upgrade on 9542 (Datakit's `host`/`port`, plus our keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DkUpgrader {
    /// Serve the upgrade routes.
    pub enable: bool,
    /// Datakit's bind host (used when `listen` is empty).
    pub host: String,
    /// Datakit's port (used when `listen` is empty).
    pub port: u16,
    /// `host:port`; overrides `host`/`port`.
    pub listen: String,
    /// Required when enabled: requests carry `Authorization: Bearer <token>`.
    pub token: String,
    /// Peers allowed besides loopback; empty = loopback only.
    pub ip_whitelist: Vec<String>,
    /// Where `version` and the tarballs are: `https://...`, `http://...`, or a local directory.
    pub install_base_url: String,
    /// ed25519 public keys (base64) a release must be signed with; required when enabled.
    pub public_keys: Vec<String>,
    /// `http://` or `https://` proxy for downloads.
    pub proxy: String,
    /// A new binary not healthy within this time is replaced by the previous one.
    #[serde(with = "dk_proto::config::go")]
    pub rollback_after: Duration,
}

impl Default for DkUpgrader {
    fn default() -> Self {
        DkUpgrader {
            enable: false,
            host: "0.0.0.0".into(),
            port: 9542,
            listen: String::new(),
            token: String::new(),
            ip_whitelist: Vec::new(),
            install_base_url: String::new(),
            public_keys: Vec::new(),
            proxy: String::new(),
            rollback_after: Duration::from_secs(30),
        }
    }
}

impl DkUpgrader {
    /// The address to bind: `listen`, else `host:port`.
    pub fn listen_addr(&self) -> String {
        if self.listen.trim().is_empty() {
            if self.host.contains(':') {
                format!("[{}]:{}", self.host, self.port)
            } else {
                format!("{}:{}", self.host, self.port)
            }
        } else {
            self.listen.trim().to_string()
        }
    }
}

/// `[dca]`: remote management from a DCA console (Datakit's `enable`, `websocket_server`, plus
/// our `token` and `ca_file`). The agent dials the console; the console never dials the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dca {
    /// Connect to the console.
    pub enable: bool,
    /// `ws://` or `wss://` URL of the console's agent endpoint.
    pub websocket_server: String,
    /// Required when enabled: this agent's token, listed in the console's `--tokens` file.
    pub token: String,
    /// PEM file of extra CA certificates trusted for a `wss://` console (besides the system's).
    pub ca_file: String,
}

impl Default for Dca {
    fn default() -> Self {
        Dca {
            enable: false,
            websocket_server: "ws://localhost:8000/ws".into(),
            token: String::new(),
            ca_file: String::new(),
        }
    }
}

/// `[resource_limit]`: limits of the agent's own usage (host mode).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceLimit {
    /// Apply the limits.
    pub enable: bool,
    /// Cgroup path.
    pub path: String,
    /// CPU cores (1.0 = one core).
    pub cpu_cores: f64,
    /// Memory cap in MiB.
    pub mem_max_mb: u64,
    /// Do not let the OOM killer pick the agent first.
    pub disable_oom: bool,
}

impl Default for ResourceLimit {
    fn default() -> Self {
        ResourceLimit {
            enable: true,
            path: "/datakit".into(),
            cpu_cores: 2.0,
            mem_max_mb: 4096,
            disable_oom: false,
        }
    }
}

impl MainConfig {
    /// The host name the agent reports (resolved while loading).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Sets the host name (normally resolved by loading; for callers that build a config).
    pub fn set_hostname(&mut self, hostname: impl Into<String>) {
        self.hostname = hostname.into();
    }

    /// Global host tags, sorted by key, with `host` = the host name.
    pub fn host_tags(&self) -> Vec<(String, String)> {
        let mut tags = self.global_host_tags.clone();
        if !self.hostname.is_empty() {
            tags.insert("host".into(), self.hostname.clone());
        }
        tags.into_iter().collect()
    }

    /// Tags for election-aware inputs: `[election.tags]` (+ `election_namespace` when
    /// `enable_namespace_tag`) when election is on; the host tags when it is off.
    pub fn election_tags(&self) -> Vec<(String, String)> {
        if !self.election.enable {
            return self.host_tags();
        }
        let mut tags = self.election.tags.clone();
        if self.election.enable_namespace_tag {
            tags.insert("election_namespace".into(), self.election.namespace.clone());
        }
        tags.into_iter().collect()
    }

    /// The WAL directory (`[dataway.wal] path`, resolved against the workdir while loading).
    pub fn wal_path(&self) -> PathBuf {
        PathBuf::from(&self.dataway.wal.path)
    }

    /// Decodes a `datakit.conf` text; problems go to `sink`, bad keys keep their defaults.
    pub(crate) fn decode(text: &str, file: &Path, sink: &mut Sink) -> MainConfig {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                sink.error(file, "", toml_syntax_message(text, &e));
                return MainConfig::default();
            }
        };
        migrate_legacy(&mut table, file, sink);
        let other = take_ignored(&mut table, file, sink);
        let pprof_on = table.get("enable_pprof") == Some(&toml::Value::Boolean(true));
        let ulimit_set = table.contains_key("ulimit");
        let decoded = dk_proto::config::decode_table::<MainConfig>(table);
        for p in decoded.problems.into_vec() {
            if p.is_warning() {
                sink.warn(file, p.key, p.message);
            } else {
                sink.error(file, p.key, p.message);
            }
        }
        let mut cfg = decoded.value;
        cfg.other = other;
        cfg.ulimit_set = ulimit_set;
        if pprof_on {
            sink.warn(
                file,
                "enable_pprof",
                "pprof is not served by this agent (nothing listens on pprof_listen); use /metrics on the HTTP API for the agent's own CPU, memory and open files, and set enable_pprof = false to silence this",
            );
        }
        cfg.check(file, sink);
        cfg.warn_not_applied(file, sink);
        cfg
    }

    /// Semantic checks after decoding; clamps what Datakit clamps (with a warning).
    fn check(&mut self, file: &Path, sink: &mut Sink) {
        // [sinks]
        let influx = &self.sinks.influxdb;
        if !influx.url.is_empty() {
            if !(influx.url.starts_with("http://") || influx.url.starts_with("https://")) {
                sink.error(
                    file,
                    "sinks.influxdb.url",
                    format!(
                        "{:?} must start with http:// or https://, e.g. \"http://127.0.0.1:8086\"",
                        influx.url
                    ),
                );
            }
            if influx.database.is_empty() {
                sink.error(
                    file,
                    "sinks.influxdb.database",
                    "set the database to write to (create it in InfluxDB first)",
                );
            }
            for (i, c) in influx.categories.iter().enumerate() {
                if c.parse::<dk_proto::Category>().is_err() {
                    sink.error(
                        file,
                        format!("sinks.influxdb.categories[{i}]"),
                        format!("{c:?} is not a category; use e.g. \"metric\" or \"logging\""),
                    );
                }
            }
        }
        for (i, c) in self.dataway.wal.no_drop_categories.iter().enumerate() {
            if c.parse::<dk_proto::Category>().is_err() {
                sink.error(
                    file,
                    format!("dataway.wal.no_drop_categories[{i}]"),
                    format!("{c:?} is not a category name or alias (e.g. \"L\", \"logging\")"),
                );
            }
        }
        // [http_api]
        if let Err(e) = ListenAddr::parse(&self.http_api.listen) {
            sink.error(file, "http_api.listen", e);
        }
        let sock = &self.http_api.listen_socket;
        if !sock.is_empty() && !sock.starts_with('/') {
            sink.error(
                file,
                "http_api.listen_socket",
                format!("{sock:?} must be an absolute path, e.g. \"/var/run/datakit/datakit.sock\", or empty"),
            );
        }
        let api = &self.http_api;
        for (key, v) in [
            ("http_api.max_body_size_mb", api.max_body_size_mb),
            ("http_api.max_inflight_body_mb", api.max_inflight_body_mb),
            ("http_api.max_connections", api.max_connections),
        ] {
            if v == 0 {
                sink.error(
                    file,
                    key,
                    "must be at least 1 (0 would refuse every request)",
                );
            }
        }
        if api.max_inflight_body_mb < api.max_body_size_mb {
            sink.warn(
                file,
                "http_api.max_inflight_body_mb",
                format!(
                    "{} MiB is below max_body_size_mb = {}: bodies between the two are always refused with 503; raise max_inflight_body_mb",
                    api.max_inflight_body_mb, api.max_body_size_mb
                ),
            );
        }
        if self.enable_pprof && crate::addr::split_host_port(&self.pprof_listen).is_none() {
            sink.error(
                file,
                "pprof_listen",
                format!(
                    "{:?} is not host:port: write e.g. \"localhost:6060\"",
                    self.pprof_listen
                ),
            );
        }
        for (i, api) in self.http_api.public_apis.iter().enumerate() {
            if !api.starts_with('/') {
                sink.warn(
                    file,
                    format!("http_api.public_apis[{i}]"),
                    format!("{api:?} is not a route path (it should start with '/', e.g. \"/v1/write/metric\"); it matches nothing"),
                );
            }
        }
        let tls = &self.http_api.tls;
        if (!tls.cert.is_empty() || !tls.privkey.is_empty()) && !tls.enabled() {
            sink.warn(
                file,
                "http_api.tls",
                "cert and privkey must both name existing files; HTTPS is off and 9529 serves plain HTTP",
            );
        }

        // [dataway]
        self.check_dataway(file, sink);

        // [io]
        if self.io.max_cache_count < 1000 {
            sink.warn(
                file,
                "io.max_cache_count",
                format!(
                    "{} is below 1000; small batches mean many more uploads",
                    self.io.max_cache_count
                ),
            );
        }
        for cat in self.io.filters.keys() {
            if dk_proto::Category::from_str(cat).is_err() {
                sink.warn(
                    file,
                    format!("io.filters.{cat}"),
                    format!("{cat:?} is not a category name; these filters never match"),
                );
            }
        }

        // [logging]
        let level = self.logging.level.to_ascii_lowercase();
        if !matches!(level.as_str(), "debug" | "info" | "warn" | "error") {
            sink.warn(
                file,
                "logging.level",
                format!(
                    "{:?} is not a log level; using \"info\" (use \"info\" or \"debug\")",
                    self.logging.level
                ),
            );
            self.logging.level = "info".into();
        }

        // [election]
        if self.election.enable && self.election.namespace.trim().is_empty() {
            sink.error(
                file,
                "election.namespace",
                "must not be empty when election is enabled; the default is \"default\"",
            );
        }
        let el = &self.election;
        match el.backend.as_str() {
            "dataway" => {
                if el.enable && self.dataway.urls.is_empty() {
                    sink.warn(
                        file,
                        "election.backend",
                        "\"dataway\" needs a [dataway] urls entry (elections go to the first URL): nothing is elected and election inputs stay paused; add a URL or use backend = \"etcd\"",
                    );
                }
            }
            "etcd" => {
                if el.enable && el.etcd.endpoints.is_empty() {
                    sink.error(
                        file,
                        "election.etcd.endpoints",
                        "is empty: list the etcd members, e.g. endpoints = [\"127.0.0.1:2379\"]",
                    );
                }
                if el.etcd.lease < Duration::from_secs(2) {
                    sink.error(
                        file,
                        "election.etcd.lease",
                        format!(
                            "{:?} is too short: use at least \"2s\" (the default is \"10s\")",
                            el.etcd.lease
                        ),
                    );
                }
                if el.etcd.tls_cert.is_empty() != el.etcd.tls_key.is_empty() {
                    sink.error(
                        file,
                        "election.etcd.tls_cert",
                        "tls_cert and tls_key go together: set both or neither",
                    );
                }
            }
            other => sink.error(
                file,
                "election.backend",
                format!("{other:?} is not an election backend: use \"dataway\" or \"etcd\""),
            ),
        }

        // [dk_upgrader]
        let up = &self.dk_upgrader;
        if up.enable {
            if up.token.trim().is_empty() {
                sink.error(
                    file,
                    "dk_upgrader.token",
                    "is required when enable = true: set a long random secret; requests send it as Authorization: Bearer <token>",
                );
            }
            if up.public_keys.is_empty() {
                sink.error(
                    file,
                    "dk_upgrader.public_keys",
                    "is required when enable = true: list the base64 ed25519 public keys releases are signed with (datakit tool --keygen DIR writes one)",
                );
            }
            if crate::addr::split_host_port(&up.listen_addr()).is_none() {
                sink.error(
                    file,
                    "dk_upgrader.listen",
                    format!(
                        "{:?} is not host:port: write e.g. \"0.0.0.0:9542\"",
                        up.listen_addr()
                    ),
                );
            }
            for (i, key) in up.public_keys.iter().enumerate() {
                use base64::Engine as _;
                let decoded = base64::engine::general_purpose::STANDARD.decode(key.trim());
                if decoded.map_or(true, |k| k.len() != 32) {
                    sink.error(
                        file,
                        format!("dk_upgrader.public_keys[{i}]"),
                        "is not a base64 ed25519 public key (32 bytes): copy the line of datakit.pub written by datakit tool --keygen",
                    );
                }
            }
            for (i, ip) in up.ip_whitelist.iter().enumerate() {
                if ip.trim().parse::<std::net::IpAddr>().is_err() {
                    sink.error(
                        file,
                        format!("dk_upgrader.ip_whitelist[{i}]"),
                        format!("{ip:?} is not an IP address: write e.g. \"10.0.0.5\""),
                    );
                }
            }
        }

        // [dca]
        let dca = &self.dca;
        if dca.enable {
            if dca.token.trim().is_empty() {
                sink.error(
                    file,
                    "dca.token",
                    "is required when enable = true: set this agent's token and list it in the console's --tokens file",
                );
            }
            let url = dca.websocket_server.trim();
            let rest = url
                .strip_prefix("ws://")
                .or_else(|| url.strip_prefix("wss://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                sink.error(
                    file,
                    "dca.websocket_server",
                    format!(
                        "{url:?} is not a WebSocket URL: write e.g. \"wss://dca.example.com/ws\""
                    ),
                );
            } else if let Some(rest) = url.strip_prefix("ws://") {
                let authority = rest.split('/').next().unwrap_or_default();
                let host = crate::addr::split_host_port(authority)
                    .map_or_else(|| authority.to_string(), |(h, _)| h);
                let host = host.trim_matches(|c| c == '[' || c == ']');
                let loopback = host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    sink.warn(
                        file,
                        "dca.websocket_server",
                        "ws:// sends the token and the configs in clear text over the network; use wss://",
                    );
                }
            }
        }

        // [resource_limit]
        if self.resource_limit.cpu_cores < 0.0 || !self.resource_limit.cpu_cores.is_finite() {
            sink.error(
                file,
                "resource_limit.cpu_cores",
                "must be a positive number of cores, e.g. 2.0",
            );
        }
    }

    fn check_dataway(&mut self, file: &Path, sink: &mut Sink) {
        let dw = &mut self.dataway;
        for (i, url) in dw.urls.iter().enumerate() {
            let key = format!("dataway.urls[{i}]");
            if url == DEV_NULL_URL {
                if i != 0 {
                    sink.error(file, key, "\"dev_null\" only works as the only URL");
                }
                continue;
            }
            match parse_url(url, &["http", "https"]) {
                Err(e) => sink.error(file, key, e),
                Ok(u) => {
                    if u.query_param("token").is_none_or(str::is_empty) {
                        sink.warn(
                            file,
                            key,
                            format!("{url:?} has no token: add ?token=<workspace token> or Dataway will refuse the data"),
                        );
                    }
                }
            }
        }
        if dw.urls.len() > 1 {
            sink.warn(
                file,
                "dataway.urls",
                "several URLs send every body to all of them (deprecated by Datakit); prefer one",
            );
        }
        if !dw.http_proxy.is_empty()
            && let Err(e) = parse_url(&dw.http_proxy, &["http", "https", "socks5"])
        {
            sink.error(file, "dataway.http_proxy", e);
        }
        if let Err(e) = ContentEncoding::from_str(&dw.content_encoding) {
            sink.error(file, "dataway.content_encoding", e);
        }
        if dw.max_retry_count == 0 {
            dw.max_retry_count = 1; // Go's zero value: unset
        } else if !(1..=10).contains(&dw.max_retry_count) {
            let clamped = dw.max_retry_count.clamp(1, 10);
            sink.warn(
                file,
                "dataway.max_retry_count",
                format!("{} is outside 1..10; using {clamped}", dw.max_retry_count),
            );
            dw.max_retry_count = clamped;
        }
        if dw.max_idle_conns_per_host == 0 {
            dw.max_idle_conns_per_host = 64;
        }
        if dw.max_raw_body_size == 0 {
            dw.max_raw_body_size = DEFAULT_MAX_RAW_BODY;
        }
        if self.protect_mode && dw.max_raw_body_size < MIN_RAW_BODY_PROTECTED {
            sink.warn(
                file,
                "dataway.max_raw_body_size",
                format!(
                    "{} is below 102400 under protect_mode; using 102400",
                    dw.max_raw_body_size
                ),
            );
            dw.max_raw_body_size = MIN_RAW_BODY_PROTECTED;
        }
        if dw.timeout_v2.is_zero() {
            dw.timeout_v2 = Duration::from_secs(30);
        }
        if dw.ntp.interval < Duration::from_secs(60) {
            sink.warn(
                file,
                "dataway.ntp.interval",
                "below the 1m minimum; using 1m",
            );
            dw.ntp.interval = Duration::from_secs(60);
        }
        if dw.ntp.diff < Duration::from_secs(5) {
            sink.warn(file, "dataway.ntp.diff", "below the 5s minimum; using 5s");
            dw.ntp.diff = Duration::from_secs(5);
        }
        if !(dw.wal.max_capacity_gb > 0.0 && dw.wal.max_capacity_gb.is_finite()) {
            sink.error(
                file,
                "dataway.wal.max_capacity_gb",
                format!(
                    "{} must be a positive size in GiB, e.g. 2.0",
                    dw.wal.max_capacity_gb
                ),
            );
        }
        for (i, c) in dw.wal.no_drop_categories.iter().enumerate() {
            if dk_proto::Category::from_str(c).is_err() {
                sink.error(
                    file,
                    format!("dataway.wal.no_drop_categories[{i}]"),
                    format!(
                        "{c:?} is not a category: use a name (\"logging\") or an alias (\"L\")"
                    ),
                );
            }
        }
    }

    /// Resolves the host name, global tag placeholders and the WAL path.
    pub(crate) fn resolve(
        &mut self,
        workdir: &Path,
        file: &Path,
        env: &dyn Env,
        probe: &dyn HostProbe,
        sink: &mut Sink,
    ) {
        let configured = self
            .environments
            .get("ENV_HOSTNAME")
            .filter(|v| !v.trim().is_empty())
            .cloned();
        let os_hostname = probe.os_hostname();
        self.hostname = match configured
            .or_else(|| env.var("ENV_HOSTNAME").filter(|v| !v.trim().is_empty()))
            .or_else(|| os_hostname.clone())
        {
            Some(h) => h.trim().to_string(),
            None => {
                sink.warn(
                    file,
                    "environments.ENV_HOSTNAME",
                    "the OS host name could not be read; using \"localhost\": set ENV_HOSTNAME",
                );
                "localhost".into()
            }
        };

        // Legacy [global_tags] are merged over [global_host_tags], as Datakit does.
        let legacy = std::mem::take(&mut self.global_tags);
        self.global_host_tags.extend(legacy);

        let mut ip: Option<Option<String>> = None; // looked up once, only when needed
        let mut drop_keys = Vec::new();
        for (k, v) in self.global_host_tags.iter_mut() {
            match v.to_ascii_lowercase().as_str() {
                "__datakit_hostname" | "$datakit_hostname" => v.clone_from(&self.hostname),
                "__datakit_ip" | "$datakit_ip" => {
                    match ip.get_or_insert_with(|| probe.local_ip()) {
                        Some(addr) => v.clone_from(addr),
                        None => drop_keys.push(k.clone()),
                    }
                }
                // Datakit's "uuid" is the OS host name.
                "__datakit_uuid" | "__datakit_id" | "$datakit_uuid" | "$datakit_id" => {
                    *v = os_hostname.clone().unwrap_or_else(|| self.hostname.clone());
                }
                _ => {}
            }
        }
        for k in drop_keys {
            self.global_host_tags.remove(&k);
            sink.warn(
                file,
                format!("global_host_tags.{k}"),
                "no non-loopback IPv4 address found for the IP placeholder; the tag is left out",
            );
        }
        if let Some(h) = self.global_host_tags.remove("host")
            && h != self.hostname
        {
            sink.warn(
                file,
                "global_host_tags.host",
                format!(
                    "{h:?} is ignored: the host tag is always the agent's host name ({:?}); set [environments] ENV_HOSTNAME to change it",
                    self.hostname
                ),
            );
        }

        let wal = &mut self.dataway.wal.path;
        if wal.is_empty() {
            *wal = workdir
                .join("cache")
                .join("dw-wal")
                .to_string_lossy()
                .into_owned();
        } else if Path::new(wal.as_str()).is_relative() {
            *wal = workdir.join(wal.as_str()).to_string_lossy().into_owned();
        }
        let local = &mut self.sinks.local.dir;
        if Path::new(local.as_str()).is_relative() {
            *local = workdir.join(local.as_str()).to_string_lossy().into_owned();
        }
    }

    /// Whether the local-files sink runs: as configured, else exactly when no upstream is set.
    pub fn local_sink_enabled(&self) -> bool {
        self.sinks
            .local
            .enable
            .unwrap_or(self.dataway.urls.is_empty() && self.sinks.influxdb.url.is_empty())
    }
}

/// Top-level keys Datakit has that this build accepts and ignores.
const IGNORED_TOP_LEVEL: &[&str] = &[
    "apm_inject",
    "auto_update",
    "black_lists",
    "confds",
    "crypto",
    "datakit_user",
    "enable_debug_fields",
    "git_repos",
    "install_version",
    "output_file",
    "pipeline",
    "point_pool",
    "recorder",
    "remote_job",
    "tracer",
    "uuid",
    "white_lists",
];

/// Keys inside known tables that Datakit accepts but this build does not use.
const IGNORED_NESTED: &[(&str, &str)] = &[
    ("io", "global_blocking"),
    ("io", "max_dynamic_cache_count"),
    ("dataway", "host"),
    ("dataway", "scheme"),
    ("dataway", "token"),
    ("resource_limit", "cpu_max"),
    // Datakit before 1.64 served DCA itself on 9531; this build only dials out.
    ("dca", "listen"),
    ("dca", "white_list"),
];

/// Moves ignored tables out of `table` (into the returned table).
fn take_ignored(table: &mut toml::Table, file: &Path, sink: &mut Sink) -> toml::Table {
    let mut other = toml::Table::new();
    for key in IGNORED_TOP_LEVEL {
        if let Some(v) = table.remove(*key) {
            tracing::debug!(file = %file.display(), key, "Datakit setting accepted but not used by this build");
            other.insert((*key).to_string(), v);
        }
    }
    if let Some(toml::Value::Table(git)) = other.get("git_repos")
        && let Some(toml::Value::Array(repos)) = git.get("repo")
        && repos
            .iter()
            .any(|r| r.get("enable").and_then(toml::Value::as_bool) == Some(true))
    {
        sink.warn(
            file,
            "git_repos",
            "git-hosted configs are not supported by this build; inputs are read from conf.d",
        );
    }
    if table.remove("inputs").is_some() {
        sink.warn(
            file,
            "inputs",
            "inputs in datakit.conf are ignored (as in Datakit): move them to a file under conf.d",
        );
    }
    for (section, key) in IGNORED_NESTED {
        if let Some(toml::Value::Table(t)) = table.get_mut(*section)
            && t.remove(*key).is_some()
        {
            tracing::debug!(file = %file.display(), section, key, "deprecated Datakit setting ignored");
        }
    }
    other
}

/// Keys of `datakit.conf` this build accepts and does not act on, with what happens instead.
/// A value other than Datakit's default draws a warning at load (docs/compat.md lists them).
const NOT_APPLIED: &[(&str, &str)] = &[
    (
        "protect_mode",
        "inputs keep Datakit's protected interval ranges whatever it says (only the max_raw_body_size floor follows it)",
    ),
    (
        "resource_limit.disable_oom",
        "the agent's OOM score is left as is (workers run with oom_score_adj 500)",
    ),
    (
        "http_api.close_idle_connection",
        "idle connections are handled by max_connections (closed oldest idle first when full)",
    ),
    (
        "http_api.request_rate_limit_ttl",
        "idle rate-limit buckets are forgotten after a fixed minute",
    ),
    (
        "http_api.request_rate_limit_burst",
        "the burst is max(1, request_rate_limit)",
    ),
    (
        "http_api.rum_origin_ip_header",
        "RUM is not served by this agent",
    ),
    (
        "http_api.rum_app_id_white_list",
        "RUM is not served by this agent",
    ),
    ("dataway.retry_delay", "uploads retry on their own back-off"),
    (
        "dataway.max_idle_conns",
        "the upload client keeps its own pool",
    ),
    ("dataway.enable_httptrace", "uploads are not traced"),
    (
        "dataway.enable_sinker",
        "sinker routing is not done: everything goes to the urls",
    ),
    ("dataway.global_customer_keys", "sinker routing is not done"),
    (
        "dataway.drop_expired_package_at",
        "queued data is not dropped by age",
    ),
    ("dataway.wal.mem_cap", "the queue is on disk only"),
    (
        "dataway.wal.fail_cache_clean_interval",
        "every sink retries from its own queue position",
    ),
    ("dataway.wal.no_pos", "queue positions are always kept"),
    (
        "io.flush_workers",
        "one uploader per category and sink, with up to 2 Dataway bodies in flight",
    ),
    (
        "io.feed_chan_size",
        "inputs feed through their workers' own bounded queues",
    ),
    ("logging.disable_color", "the log has no colours"),
    (
        "logging.rotate_backups",
        "rotated logs are kept as the log writer keeps them",
    ),
];

impl MainConfig {
    /// Warns about every [`NOT_APPLIED`] key set to something other than Datakit's default.
    fn warn_not_applied(&self, file: &Path, sink: &mut Sink) {
        let (Ok(toml::Value::Table(now)), Ok(toml::Value::Table(default))) = (
            toml::Value::try_from(self),
            toml::Value::try_from(MainConfig::default()),
        ) else {
            return;
        };
        for (key, instead) in NOT_APPLIED {
            let path: Vec<&str> = key.split('.').collect();
            if get_path(&now, &path) != get_path(&default, &path) {
                sink.warn(
                    file,
                    *key,
                    format!(
                        "accepted but not applied by this agent: {instead} (see docs/compat.md)"
                    ),
                );
            }
        }
    }
}

/// `(legacy key path, current key path)`: Datakit's installer moves these on upgrade.
const LEGACY_KEYS: &[(&[&str], &[&str])] = &[
    (&["http_listen"], &["http_api", "listen"]),
    (&["http_server_addr"], &["http_api", "listen"]),
    (&["disable_404page"], &["http_api", "disable_404page"]),
    (&["log"], &["logging", "log"]),
    (&["log_level"], &["logging", "level"]),
    (&["gin_log"], &["logging", "gin_log"]),
    (&["log_rotate"], &["logging", "rotate"]),
    (&["io_cache_count"], &["io", "max_cache_count"]),
    (&["interval"], &["io", "flush_interval"]),
    (&["enable_election"], &["election", "enable"]),
    (
        &["enable_election_tag"],
        &["election", "enable_namespace_tag"],
    ),
    (&["election_namespace"], &["election", "namespace"]),
    (&["namespace"], &["election", "namespace"]),
    (&["global_env_tags"], &["election", "tags"]),
    (&["cgroup"], &["resource_limit"]),
    (&["dataway", "timeout"], &["dataway", "timeout_v2"]),
    (&["dataway", "url"], &["dataway", "urls"]),
];

/// Moves legacy keys to their current place when that place is unset (with a warning).
fn migrate_legacy(table: &mut toml::Table, file: &Path, sink: &mut Sink) {
    for (from, to) in LEGACY_KEYS {
        let Some(value) = take_path(table, from) else {
            continue;
        };
        let from_key = from.join(".");
        let to_key = to.join(".");
        // `url = "..."` becomes `urls = ["..."]`.
        let value = match (to_key.as_str(), value) {
            ("dataway.urls", toml::Value::String(s)) => {
                toml::Value::Array(vec![toml::Value::String(s)])
            }
            (_, v) => v,
        };
        if get_path(table, to).is_some() {
            sink.warn(
                file,
                from_key,
                format!("deprecated and ignored because {to_key} is set; remove it"),
            );
            continue;
        }
        sink.warn(
            file,
            &from_key,
            format!("deprecated: read as {to_key}; rename it"),
        );
        put_path(table, to, value);
    }
}

fn get_path<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get(*p)?.as_table()?;
    }
    t.get(*last)
}

fn take_path(table: &mut toml::Table, path: &[&str]) -> Option<toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get_mut(*p)?.as_table_mut()?;
    }
    t.remove(*last)
}

fn put_path(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut t = table;
    for p in parents {
        let entry = t
            .entry((*p).to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(inner) = entry.as_table_mut() else {
            return; // a wrongly typed section; decoding reports it
        };
        t = inner;
    }
    t.insert((*last).to_string(), value);
}
