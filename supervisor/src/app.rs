//! The supervisor's life: validate, bind, start workers and the API, watch conf.d, stop cleanly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dk_api::{AgentInfo, ApiConfig, ApiMetrics, ApiState, FeedError, Feeder, LastErrors};
use dk_config::{Loaded, Plan, ProcessEnv};
use dk_delivery::{Delivery, DeliveryConfig, DeliveryError, GlobalTags, QueueSettings, Sink};
use dk_proto::rpc::{Ack, Batch, LastError, WorkerConfig};
use dk_proto::{Category, FeedOpts, Point};
use dk_sinks::dataway::{DatawayConfig, DatawaySink, Encoding};
use dk_sinks::influxdb::{InfluxConfig, InfluxSink};
use dk_sinks::local::{LocalFileSink, LocalSinkConfig};
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ingest::{BatchHandler, RpcSockets};
use crate::listeners::{self, BoundListener};
use crate::metrics::SupervisorMetrics;
use crate::procman::{self, FamilyHandle, ProcContext, ProcPolicy};
use crate::registry::WorkerRegistry;
use crate::upgrade::handover::{Handover, Inherited, Watch, WorkerFd};
use crate::upgrade::server::{ExecRequest, UpgradeMetrics, Upgrader};
use crate::{EXIT_CONFIG, families, logging};

fn print_err(text: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.write_all(b"\n");
}

/// The config, or (errors, warnings).
type Problems = (Vec<dk_config::Diagnostic>, Vec<dk_config::Diagnostic>);

/// Runs `f` with every family as the config loader sees it (`dk_proto::family::Descriptor`),
/// those named in the debug knob `DK_DEBUG_CONFIG_PANIC` (comma-separated) wrapped so that
/// their config validation panics, to prove it is caught.
pub(crate) fn with_config_families<T>(
    f: impl FnOnce(&[&dyn dk_proto::family::Descriptor]) -> T,
) -> T {
    let families = families::all();
    let panicking: Vec<dk_worker::misbehave::PanicInValidate> =
        std::env::var("DK_DEBUG_CONFIG_PANIC")
            .map(|v| {
                families
                    .iter()
                    .filter(|f| v.split(',').any(|name| name == f.name()))
                    .map(|f| dk_worker::misbehave::PanicInValidate(*f))
                    .collect()
            })
            .unwrap_or_default();
    let families: Vec<&dyn dk_worker::Family> = families
        .into_iter()
        .map(|f| {
            panicking
                .iter()
                .find(|p| p.0.name() == f.name())
                .map_or(f, |p| p as &dyn dk_worker::Family)
        })
        .collect();
    let described: Vec<dk_worker::family::Described<'_>> = families
        .into_iter()
        .map(dk_worker::family::Described)
        .collect();
    let descriptors: Vec<&dyn dk_proto::family::Descriptor> = described
        .iter()
        .map(|d| d as &dyn dk_proto::family::Descriptor)
        .collect();
    f(&descriptors)
}

fn load(workdir: &Path) -> Result<Loaded, Problems> {
    with_config_families(|families| {
        dk_config::inspect(workdir, families, &ProcessEnv, &dk_config::SystemProbe)
    })
    .into_loaded()
}

/// Prints every error, then every warning, each group counted (warnings are never hidden
/// behind errors).
fn report_problems(errors: &[dk_config::Diagnostic], warnings: &[dk_config::Diagnostic]) {
    if !errors.is_empty() {
        print_err(&format!("{} configuration problem(s):", errors.len()));
        for d in errors {
            print_err(&format!("  {d}"));
        }
    }
    if !warnings.is_empty() {
        print_err(&format!("{} warning(s):", warnings.len()));
        for d in warnings {
            print_err(&format!("  {d}"));
        }
    }
}

/// Whether an agent is running with this work dir (it holds `.pid` locked).
fn agent_running(workdir: &Path) -> bool {
    std::fs::File::open(workdir.join(".pid")).is_ok_and(|f| f.try_lock_shared().is_err())
}

/// Binds (and releases at once) every socket the config asks for; each busy one is a problem
/// naming its file, key and address.
fn probe_listeners(origins: &[dk_config::ListenerOrigin]) -> Vec<dk_config::Diagnostic> {
    origins
        .iter()
        .filter(|o| !o.spec.optional)
        .filter_map(|o| listeners::probe(&o.spec).err().map(|e| (o, e)))
        .map(|(o, e)| dk_config::Diagnostic::new(&o.file, &o.key, e.to_string()).locate())
        .collect()
}

/// The 9542 socket `[dk_upgrader]` asks for when enabled, for `check` to probe.
fn upgrader_origin(
    main: &dk_config::MainConfig,
    confd: &Path,
) -> Option<dk_config::ListenerOrigin> {
    let up = &main.dk_upgrader;
    up.enable.then(|| dk_config::ListenerOrigin {
        spec: dk_worker::ListenSpec::new(up.listen_addr(), dk_proto::rpc::ListenerKind::Tcp),
        file: confd.join("datakit.conf"),
        key: if up.listen.trim().is_empty() {
            "dk_upgrader.port".into()
        } else {
            "dk_upgrader.listen".into()
        },
    })
}

/// `datakit check --config`: the same validation as `run`, without starting anything; every
/// port the agent would bind is probed (unless an agent runs with this work dir). With
/// `container` (`-C`), the config `datakit run -C` would write from the `ENV_*` variables is
/// checked (in a scratch copy of conf.d: nothing in the work dir changes).
pub fn check(workdir: &Path, config_dir: Option<&Path>, container: bool) -> ExitCode {
    let confd = config_dir.map_or_else(|| dk_config::confd_dir(workdir), Path::to_path_buf);
    if container {
        return check_container(workdir, &confd);
    }
    let (errors, warnings, summary) = check_confd(workdir, &confd);
    check_report(&errors, &warnings, &summary)
}

fn check_report(
    errors: &[dk_config::Diagnostic],
    warnings: &[dk_config::Diagnostic],
    summary: &str,
) -> ExitCode {
    report_problems(errors, warnings);
    if errors.is_empty() {
        print_err(summary);
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    }
}

/// `datakit check --config -C`: the ENV_* variables read as `run -C` reads them (every bad one
/// reported), then the files it would write checked with the rest of conf.d; problems name the
/// real conf.d and the variable that set a key.
fn check_container(workdir: &Path, confd: &Path) -> ExitCode {
    let scratch = std::env::temp_dir().join(format!("datakit-check-{}", std::process::id()));
    let scratch_confd = scratch.join("conf.d");
    let _ = std::fs::remove_dir_all(&scratch);
    let result = copy_tree(confd, &scratch_confd)
        .map_err(|e| {
            format!(
                "cannot copy {} to {} to check it: {e}; is TMPDIR writable?",
                confd.display(),
                scratch_confd.display()
            )
        })
        .and_then(|()| crate::container::write_confs(&scratch_confd).map_err(|e| e.to_string()));
    let code = match result {
        Err(e) => {
            print_err(&format!("datakit check --config -C: {e}"));
            ExitCode::from(EXIT_CONFIG)
        }
        Ok(cfg) => {
            let (mut errors, mut warnings, summary) = check_confd(workdir, &scratch_confd);
            let main = scratch_confd.join(dk_config::MAIN_CONF_NAME);
            crate::container::annotate_file(&cfg, &main, &mut errors);
            crate::container::annotate_file(&cfg, &main, &mut warnings);
            warnings.extend(cfg.warnings.iter().cloned());
            for d in errors.iter_mut().chain(warnings.iter_mut()) {
                if let Ok(rest) = d.file.strip_prefix(&scratch_confd) {
                    d.file = confd.join(rest);
                }
            }
            check_report(&errors, &warnings, &summary)
        }
    };
    let _ = std::fs::remove_dir_all(&scratch);
    code
}

/// Copies the directory tree `from` into `to` (missing `from`: an empty `to`); symlinks stay
/// symlinks, as mounted ConfigMaps have them.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    for e in entries {
        let e = e?;
        let target = to.join(e.file_name());
        let kind = e.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path())?, &target)?;
        } else if kind.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// The problems, warnings and summary of checking `confd`.
fn check_confd(
    workdir: &Path,
    confd: &Path,
) -> (
    Vec<dk_config::Diagnostic>,
    Vec<dk_config::Diagnostic>,
    String,
) {
    let (mut errors, mut warnings) = dk_config::confd_problems(workdir, confd);
    let mut summary = String::new();
    if errors.is_empty() {
        let report = with_config_families(|families| {
            dk_config::inspect_confd(
                workdir,
                confd,
                families,
                &ProcessEnv,
                &dk_config::SystemProbe,
            )
        });
        errors.extend(report.errors);
        warnings.extend(report.warnings);
        if agent_running(workdir) {
            print_err(&format!(
                "an agent is running with work dir {}; its ports were not probed",
                workdir.display()
            ));
        } else {
            let mut origins = report.listeners.clone();
            origins.extend(upgrader_origin(&report.main, confd));
            errors.extend(probe_listeners(&origins));
        }
        let inputs: usize = report.plan.families.values().map(|f| f.inputs.len()).sum();
        let n = report.plan.families.len();
        summary = format!(
            "configuration OK: {n} famil{} with {inputs} input instance(s)",
            if n == 1 { "y" } else { "ies" }
        );
    }
    (errors, warnings, summary)
}

/// `datakit worker <family>`: one family's worker process.
pub fn worker(family: &str, run_dir: &Path, log_level: &str) -> ExitCode {
    logging::init_worker(log_level);
    // Debug knob (like Datakit's DK_DEBUG_*): make a family's worker fail at start-up, to
    // exercise the restart backoff.
    if std::env::var("DK_DEBUG_WORKER_EXIT").is_ok_and(|v| v.split(',').any(|f| f == family)) {
        tracing::error!(
            family,
            "DK_DEBUG_WORKER_EXIT is set for this family; exiting."
        );
        return ExitCode::from(70);
    }
    // Debug knob: make a family's worker hold this many MiB, to exercise the memory limit.
    let _ballast = debug_ballast(family);
    let Some(fam) = families::by_name(family) else {
        tracing::error!(family, "Unknown family.");
        return ExitCode::from(64);
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the async runtime.");
            return ExitCode::from(71);
        }
    };
    // Debug knob: make a family's worker break the RPC protocol, to exercise the cut-off.
    let misbehave = std::env::var("DK_DEBUG_WORKER_MISBEHAVE")
        .ok()
        .and_then(|spec| dk_worker::misbehave::Misbehave::from_spec(&spec, family));
    match rt.block_on(dk_worker::worker::run_with(fam, run_dir, misbehave)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Worker stopped.");
            ExitCode::from(75)
        }
    }
}

/// Puts the agent in a CPU-limited cgroup when `[resource_limit]` asks for one; failures are
/// warnings (the agent runs on unlimited).
fn apply_resource_limit(limit: &dk_config::ResourceLimit) {
    if !limit.enable {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    match crate::cgroup::apply_cpu_limit(
        Path::new("/sys/fs/cgroup"),
        &limit.path,
        limit.cpu_cores,
        cpus,
        std::process::id(),
    ) {
        Ok(crate::cgroup::CpuLimit::NotNeeded) => {}
        Ok(crate::cgroup::CpuLimit::Applied { dir, version, .. }) => tracing::info!(
            cgroup = %dir.display(),
            version,
            "CPU limited to {} cores ([resource_limit] cpu_cores).",
            limit.cpu_cores
        ),
        Err(e) => tracing::warn!(
            "[resource_limit] cpu_cores = {} not applied: {e}",
            limit.cpu_cores
        ),
    }
}

/// `DK_DEBUG_WORKER_MEMORY_MB=family:N[,family:N]`: N MiB written (so resident) and held.
fn debug_ballast(family: &str) -> Option<Vec<u8>> {
    let spec = std::env::var("DK_DEBUG_WORKER_MEMORY_MB").ok()?;
    let mib: usize = spec.split(',').find_map(|item| {
        let (f, n) = item.split_once(':')?;
        (f == family).then(|| n.parse().ok()).flatten()
    })?;
    tracing::warn!(
        family,
        mib,
        "DK_DEBUG_WORKER_MEMORY_MB is set for this family; holding memory."
    );
    Some(vec![1u8; mib << 20])
}

/// `[dk_upgrader] public_keys` and `proxy` of the agent in `workdir` (`datakit upgrade --from`).
pub(crate) fn upgrader_keys(workdir: &Path) -> Result<(Vec<String>, String), String> {
    let loaded = load(workdir).map_err(|(errors, _)| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("the configuration has problems: {}", text.join("; "))
    })?;
    let up = loaded.main.dk_upgrader;
    if up.public_keys.is_empty() {
        return Err(format!(
            "no [dk_upgrader] public_keys in {}: list the keys releases are signed with",
            workdir.join("conf.d/datakit.conf").display()
        ));
    }
    Ok((up.public_keys, up.proxy))
}

/// How the supervisor ended: stopped, or handing over to the binary on disk.
enum Exit {
    Stop,
    Exec(Handover),
}

/// `datakit run`.
pub fn run(workdir: PathBuf, log_override: Option<String>, container: bool) -> ExitCode {
    // Sockets handed over by the binary we replace, and our own path before any swap.
    let inherited = Inherited::from_env();
    let exe = crate::upgrade::stage::exe_path();
    // Debug knob: the binary of this version fails at start (to exercise the rollback).
    if std::env::var("DK_DEBUG_CRASH_AT_START").is_ok_and(|v| v == dk_proto::version()) {
        print_err("DK_DEBUG_CRASH_AT_START names this version; exiting.");
        return ExitCode::from(70);
    }
    // Debug knob: the binary of this version hangs at start (never healthy, never exits).
    if std::env::var("DK_DEBUG_HANG_AT_START").is_ok_and(|v| v == dk_proto::version()) {
        print_err("DK_DEBUG_HANG_AT_START names this version; hanging.");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let env_conf = if container {
        match crate::container::prepare(&workdir) {
            Ok(cfg) => Some(cfg),
            Err(e) => {
                print_err(&format!("datakit run -C: {e}"));
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    } else {
        None
    };
    match dk_config::ensure_main_conf(&workdir) {
        Ok(true) => print_err(&format!(
            "wrote the default {}",
            workdir.join("conf.d/datakit.conf").display()
        )),
        Ok(false) => {}
        Err(e) => {
            print_err(&format!(
                "cannot create {}: {e}; create the work dir or pass --workdir",
                workdir.join("conf.d/datakit.conf").display()
            ));
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let loaded = match load(&workdir) {
        Ok(l) => l,
        Err((mut errors, warnings)) => {
            if let Some(cfg) = &env_conf {
                crate::container::annotate(cfg, &workdir, &mut errors);
            }
            report_problems(&errors, &warnings);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let log_dest =
        log_override.unwrap_or_else(|| default_log_path(&workdir, &loaded.main.logging.log));
    let guard = logging::init_supervisor(&log_dest, &loaded.main.logging.level);
    tracing::info!(
        workdir = %workdir.display(),
        log = %log_dest,
        "Starting datakit {} with work dir {}.",
        dk_proto::version(),
        workdir.display()
    );
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    match &env_conf {
        Some(cfg) => cfg.warnings.iter().for_each(|w| tracing::warn!("{w}")),
        None => {
            if let Some(w) = crate::container::host_mode_warning() {
                tracing::warn!("{w}");
            }
        }
    }
    // As many async threads as the machine has CPUs (at least 2); file I/O runs elsewhere.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the async runtime.");
            return ExitCode::from(71);
        }
    };
    match rt.block_on(supervise(workdir, loaded, inherited)) {
        Ok(Exit::Stop) => ExitCode::SUCCESS,
        Ok(Exit::Exec(handover)) => {
            rt.shutdown_timeout(Duration::from_secs(2));
            let Some(exe) = exe else {
                print_err("datakit: cannot find our own binary to exec; restart the service");
                return ExitCode::FAILURE;
            };
            tracing::info!(exe = %exe.display(), "Executing the new binary in place; every listening socket stays open.");
            drop(guard);
            let why = handover.exec(&exe);
            print_err(&format!("datakit: {why}; restart the service"));
            ExitCode::FAILURE
        }
        Err(e) if e.downcast_ref::<BindFailed>().is_some() => {
            tracing::error!("{e:#}");
            print_err(&format!("{e:#}"));
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            print_err(&format!("datakit: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Datakit logs to /var/log/datakit/log; for any other work dir than the default install the
/// log goes under the work dir, so a local quick start never needs root.
fn default_log_path(workdir: &Path, configured: &str) -> String {
    if configured == "/var/log/datakit/log" && workdir != Path::new("/usr/local/datakit") {
        workdir.join("log/log").display().to_string()
    } else {
        configured.to_string()
    }
}

struct DeliveryFeeder(Delivery);

impl Feeder for DeliveryFeeder {
    fn feed(
        &self,
        category: Category,
        input: String,
        opts: FeedOpts,
        points: Vec<Point>,
    ) -> BoxFuture<'_, Result<(), FeedError>> {
        Box::pin(async move {
            match self.0.feed(category, &input, opts, points).await {
                Ok(_) => Ok(()),
                Err(DeliveryError::Busy(m)) => Err(FeedError::Busy(m)),
                Err(DeliveryError::Closed) => Err(FeedError::Closed),
                Err(DeliveryError::Rejected(m)) => Err(FeedError::Rejected(m)),
                Err(e) => Err(FeedError::Busy(e.to_string())),
            }
        })
    }
}

struct Handler {
    delivery: Delivery,
    last_errors: Arc<LastErrors>,
}

impl BatchHandler for Handler {
    fn accept(&self, _family: &str, batch: Batch) -> BoxFuture<'_, Ack> {
        Box::pin(async move {
            let opts = FeedOpts {
                election: batch.election,
                no_global_tags: batch.no_global_tags,
            };
            crate::ingest::ack_for(
                self.delivery
                    .feed(batch.category, &batch.input, opts, batch.points)
                    .await,
            )
        })
    }

    fn last_error(&self, _family: &str, e: LastError) {
        tracing::warn!(input = %e.input, source = %e.source, "{}", e.message);
        self.last_errors
            .record(&e.input, &e.source, e.category.name(), &e.message);
    }
}

/// The durable queue as `[dataway.wal]` says.
fn queue_settings(main: &dk_config::MainConfig) -> QueueSettings {
    let wal = &main.dataway.wal;
    let mut q = QueueSettings::new(main.wal_path());
    q.max_disk_bytes = (wal.max_capacity_gb.max(0.0) * 1024.0 * 1024.0 * 1024.0) as u64;
    q.no_drop = wal
        .no_drop_categories
        .iter()
        .filter_map(|c| c.parse::<Category>().ok())
        .collect();
    q
}

/// Every configured sink: Dataway (`[dataway] urls`), InfluxDB (`[sinks.influxdb]`) and the
/// local files (`[sinks.local]`, on by default when no upstream is set).
/// `clock` gets Dataway's clock when `[dataway.ntp] enable` (the default) and a URL is set.
fn build_sinks(
    main: &dk_config::MainConfig,
    registry: &mut Registry,
    clock: &mut Option<dk_sinks::dataway::DatawayClock>,
) -> anyhow::Result<Vec<Arc<dyn Sink>>> {
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    let dw = &main.dataway;
    if !dw.urls.is_empty() {
        let cfg = DatawayConfig {
            urls: dw.urls.clone(),
            timeout: dw.timeout_v2,
            http_proxy: (!dw.http_proxy.is_empty()).then(|| dw.http_proxy.clone()),
            content_encoding: match dw.encoding() {
                dk_config::ContentEncoding::LineProtocol => Encoding::V1,
                dk_config::ContentEncoding::Protobuf => Encoding::V2,
                other => {
                    tracing::warn!(encoding = ?other, "[dataway] content_encoding: JSON uploads are not supported; using protobuf (v2).");
                    Encoding::V2
                }
            },
            gzip: dw.gzip,
            max_raw_body_size: dw.max_raw_body_size,
            tls_insecure: dw.tls_insecure,
            max_idle_conns_per_host: dw.max_idle_conns_per_host,
            idle_timeout: dw.idle_timeout,
            hostname: main.hostname.clone(),
            version: dk_proto::version().to_string(),
            global_tags_header: None,
        };
        let sink = DatawaySink::new(cfg, registry)
            .context("[dataway]: cannot set up the Dataway client")?;
        // The first URL's API access: its clock (`[dataway.ntp]`) and elections.
        *clock = sink.clock();
        sinks.push(Arc::new(sink));
    }
    let influx = &main.sinks.influxdb;
    if !influx.url.is_empty() {
        let opt = |s: &String| (!s.is_empty()).then(|| s.clone());
        let cfg = InfluxConfig {
            url: influx.url.clone(),
            database: influx.database.clone(),
            retention_policy: opt(&influx.retention_policy),
            username: opt(&influx.username),
            password: opt(&influx.password),
            precision: "ns",
            timeout: influx.timeout,
            gzip: influx.gzip,
            max_body_bytes: 1 << 20,
            categories: influx
                .categories
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            proxy: None,
        };
        sinks
            .push(Arc::new(InfluxSink::new(cfg, registry).context(
                "[sinks.influxdb]: cannot set up the InfluxDB client",
            )?));
    }
    if main.local_sink_enabled() {
        let local = &main.sinks.local;
        let cfg = LocalSinkConfig {
            dir: PathBuf::from(&local.dir),
            max_file_bytes: local.max_file_mb.max(1) << 20,
            max_files: local.max_files,
            max_total_bytes: local.max_total_mb.max(1) << 20,
            ..LocalSinkConfig::new(&local.dir)
        };
        sinks.push(Arc::new(
            LocalFileSink::new(cfg).context("[sinks.local]: cannot open the local-files sink")?,
        ));
    }
    Ok(sinks)
}

/// MiB to bytes, saturating.
fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

/// The time a client has to send a request's headers: `[http_api] timeout`, at most 10 s.
fn api_header_timeout(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        Duration::from_secs(10)
    } else {
        timeout.min(Duration::from_secs(10))
    }
}

fn resolve_listen(listen: &str) -> anyhow::Result<SocketAddr> {
    listeners::resolve(listen).map_err(|e| anyhow::anyhow!("[http_api] listen: {e}"))
}

/// Sockets that could not be bound at start: `run` exits with `EX_CONFIG` (78).
#[derive(Debug, thiserror::Error)]
#[error("{} listening socket(s) could not be bound; nothing was started:\n  {}", .0.len(), .0.join("\n  "))]
struct BindFailed(Vec<String>);

/// Binds the API and every input listener, or reports every one that failed (naming its file,
/// line and key) and keeps none of them bound.
async fn bind_everything(
    loaded: &Loaded,
    inherited: &mut Inherited,
) -> anyhow::Result<(
    tokio::net::TcpListener,
    listeners::Bound,
    Option<tokio::net::TcpListener>,
)> {
    let main = &loaded.main;
    let named = |address: &str, message: String| match loaded
        .listeners
        .iter()
        .find(|o| o.spec.address == address)
    {
        Some(o) => dk_config::Diagnostic::new(&o.file, &o.key, message)
            .locate()
            .to_string(),
        None => message,
    };
    let api = match resolve_listen(&main.http_api.listen) {
        Ok(addr) if let Some(l) = adopt_tcp(inherited.api.take(), addr) => Ok(l),
        Ok(addr) => tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            named(
                main.http_api.listen.trim(),
                format!(
                    "cannot listen on {addr} ({:?}): {e}; free the port or change the key",
                    main.http_api.listen
                ),
            )
        }),
        Err(e) => Err(format!("{e:#}")),
    };
    let all_specs: Vec<_> = loaded
        .plan
        .families
        .values()
        .flat_map(|f| f.listeners.clone())
        .collect();
    let bound = listeners::bind_all_with(&all_specs, &mut inherited.listeners);
    let up = &main.dk_upgrader;
    let upgrader = if up.enable {
        match listeners::resolve(&up.listen_addr()) {
            Ok(addr) if let Some(l) = adopt_tcp(inherited.upgrader.take(), addr) => Ok(Some(l)),
            Ok(addr) => tokio::net::TcpListener::bind(addr).await.map(Some).map_err(|e| {
                format!(
                    "[dk_upgrader]: cannot listen on {addr}: {e}; free the port or change listen"
                )
            }),
            Err(e) => Err(format!("[dk_upgrader] listen: {e}")),
        }
    } else {
        Ok(None)
    };
    match (api, bound, upgrader) {
        (Ok(api), Ok(bound), Ok(upgrader)) => Ok((api, bound, upgrader)),
        (api, bound, upgrader) => {
            let mut problems: Vec<String> = api.err().into_iter().collect();
            problems.extend(upgrader.err());
            if let Err(errors) = bound {
                problems.extend(errors.iter().map(|e| named(&e.address, e.to_string())));
            }
            Err(BindFailed(problems).into())
        }
    }
}

/// A TCP listener inherited across an exec, when it listens on `addr`.
fn adopt_tcp(
    fd: Option<std::os::fd::OwnedFd>,
    addr: SocketAddr,
) -> Option<tokio::net::TcpListener> {
    let std_listener = std::net::TcpListener::from(fd?);
    let same = std_listener
        .local_addr()
        .is_ok_and(|a| a.port() == addr.port() && (a.ip() == addr.ip() || addr.port() == 0));
    if !same {
        return None;
    }
    std_listener.set_nonblocking(true).ok()?;
    tokio::net::TcpListener::from_std(std_listener).ok()
}

/// A duplicate of a listener's socket, kept to hand over across an exec (the server closes
/// its own when it stops).
fn keep(listener: &tokio::net::TcpListener) -> anyhow::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd as _;
    listener
        .as_fd()
        .try_clone_to_owned()
        .context("cannot duplicate a listening socket")
}

/// Shows a rollback the watchdog recorded before it restored this binary.
fn report_rollback(workdir: &Path, last_errors: &LastErrors, metrics: &UpgradeMetrics) {
    let path = crate::upgrade::rollback_record_path(workdir);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let _ = std::fs::remove_file(&path);
    let Ok(r) = serde_json::from_str::<crate::upgrade::RollbackRecord>(&text) else {
        return;
    };
    let message = format!(
        "upgrade to {} rolled back to {} after {} ms: {}",
        r.failed_version, r.restored_version, r.rollback_ms, r.reason
    );
    tracing::error!("{message}");
    last_errors.record("upgrade", "dk_upgrader", "", &message);
    metrics.count("rolled_back");
}

/// After an upgrade: once every family's worker is up and the API answers, stops the
/// watchdog (the new binary is kept).
async fn confirm_upgrade(
    watchdog: i32,
    families: Vec<String>,
    metrics: SupervisorMetrics,
    api: SocketAddr,
    started: Instant,
) {
    let api = if api.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], api.port()))
    } else {
        api
    };
    loop {
        let workers_up = families.iter().all(|f| {
            metrics
                .up
                .get_or_create(&SupervisorMetrics::family(f))
                .get()
                == 1
        });
        if workers_up && api_answers(api).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = nix::unistd::Pid::from_raw(watchdog);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = tokio::task::spawn_blocking(move || nix::sys::wait::waitpid(pid, None)).await;
    tracing::info!(
        from = std::env::var(crate::upgrade::handover::ENV_UPGRADE_FROM).unwrap_or_default(),
        to = dk_proto::version(),
        ms = started.elapsed().as_millis() as u64,
        "Upgrade healthy: workers up and the API answering; the previous binary is kept for datakit upgrade --rollback."
    );
}

/// Whether `GET /v1/ping` answers 200 on `api`.
async fn api_answers(api: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(api).await.ok()?;
        s.write_all(b"GET /v1/ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(head.ends_with(b" 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The routes input instances serve on the API port (from the config; updated at a reload),
/// forwarded to each family's worker (`dk_api::RouteForward`).
struct Forwarder {
    /// `(route, family)` of every route a configured input serves.
    routes: std::sync::RwLock<BTreeMap<dk_proto::family::RoutePath, String>>,
    /// The running families' callers.
    callers: std::sync::RwLock<BTreeMap<String, procman::HttpCaller>>,
}

impl Forwarder {
    fn new() -> Forwarder {
        Forwarder {
            routes: std::sync::RwLock::new(BTreeMap::new()),
            callers: std::sync::RwLock::new(BTreeMap::new()),
        }
    }

    /// Serves the routes of `plan` (and the debug echo route of the families that ask for
    /// it), each forwarded to its family's current handle.
    fn sync(&self, plan: &Plan, running: &Running) {
        let mut routes = BTreeMap::new();
        for (family, fp) in &plan.families {
            let echo = dk_worker::http::debug_echo_enabled(family)
                .then(|| dk_worker::http::debug_echo_route().path());
            for r in fp.routes.iter().cloned().chain(echo) {
                routes.entry(r).or_insert_with(|| family.clone());
            }
        }
        if let Ok(mut r) = self.routes.write() {
            *r = routes;
        }
        if let Ok(mut callers) = self.callers.write() {
            *callers = running
                .handles
                .iter()
                .map(|(family, h)| (family.clone(), h.http()))
                .collect();
        }
    }

    /// The family serving `method path`.
    fn family_of(&self, method: &str, path: &str) -> Option<String> {
        let method = dk_proto::family::Method::parse(method)?;
        let key = dk_proto::family::RoutePath::new(method, path);
        self.routes.read().ok()?.get(&key).cloned()
    }
}

impl dk_api::RouteForward for Forwarder {
    fn lookup(&self, method: &str, path: &str) -> dk_api::RouteMatch {
        if self.family_of(method, path).is_some() {
            return dk_api::RouteMatch::Served;
        }
        let other = self
            .routes
            .read()
            .is_ok_and(|r| r.keys().any(|k| k.path == path));
        if other {
            dk_api::RouteMatch::OtherMethod
        } else {
            dk_api::RouteMatch::None
        }
    }

    fn call(
        &self,
        call: dk_proto::rpc::HttpCall,
    ) -> BoxFuture<'static, Result<dk_proto::rpc::HttpReply, String>> {
        let family = self.family_of(&call.method, &call.path);
        let caller = family
            .as_ref()
            .and_then(|f| self.callers.read().ok()?.get(f).cloned());
        Box::pin(async move {
            match (family, caller) {
                (_, Some(caller)) => caller.call(call).await,
                (Some(family), None) => Err(format!(
                    "the {family} worker that serves {} is not running; it is being started",
                    call.path
                )),
                (None, None) => Err(format!("nothing serves {} {}", call.method, call.path)),
            }
        })
    }
}

struct Running {
    handles: BTreeMap<String, FamilyHandle>,
    bound: BTreeMap<String, BoundListener>,
}

fn worker_config(
    plan: &Plan,
    family: &str,
    hostname: &str,
    bound: &BTreeMap<String, BoundListener>,
) -> WorkerConfig {
    let fp = &plan.families[family];
    WorkerConfig {
        family: family.to_string(),
        hostname: hostname.to_string(),
        inputs: fp.inputs.clone(),
        listeners: fp
            .listeners
            .iter()
            .filter_map(|l| bound.get(&l.address))
            .flat_map(BoundListener::inherited)
            .collect(),
        health_interval_ms: crate::procman::HEALTH_INTERVAL.as_millis() as u64,
    }
}

fn start_family(
    ctx: &ProcContext,
    plan: &Plan,
    family: &str,
    hostname: &str,
    running: &mut Running,
) {
    let config = worker_config(plan, family, hostname, &running.bound);
    let fds = config.listeners.iter().map(|l| l.fd).collect();
    let handle = procman::start(ctx.clone(), config, fds);
    running.handles.insert(family.to_string(), handle);
}

/// The receive buffer of every datagram socket while a binary swap leaves it unread: 64 MiB
/// (the kernel doubles it) holds ~2 s of 50k small datagrams/s. Workers never shrink it again,
/// so it stays the socket's cap: kernel memory used only while a backlog waits.
const HANDOVER_DATAGRAM_BUFFER: usize = 64 << 20;

async fn supervise(
    workdir: PathBuf,
    loaded: Loaded,
    mut inherited: Inherited,
) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let main = loaded.main.clone();
    let hostname = main.hostname.clone();
    let nofile = crate::limits::raise_nofile(main.ulimit);
    let api_nofile = nofile.as_ref().map_or(main.ulimit, |(soft, _)| *soft);
    match nofile {
        Ok((soft, _)) if soft < main.ulimit && main.ulimit_set => tracing::warn!(
            "ulimit = {} is above what this process may open ({soft} files); raise the hard limit (LimitNOFILE in the service unit) or lower ulimit",
            main.ulimit
        ),
        Ok((soft, _)) if soft < main.ulimit => tracing::info!(
            "Open-files limit: {soft} (the hard limit; the default ulimit {} is above it).",
            main.ulimit
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the open-files limit: {e}"),
    }
    apply_resource_limit(&main.resource_limit);

    // One agent per work dir; then bind everything: any failure is reported before a worker starts.
    let _pid_lock = (!crate::container::is_on())
        .then(|| lock_pid_file(&workdir))
        .transpose()?;
    let handed_over = !inherited.is_empty();
    let (api_listener, bound, upgrader_listener) = bind_everything(&loaded, &mut inherited).await?;
    let mut adopted = std::mem::take(&mut inherited.workers);
    drop(inherited);
    if handed_over {
        tracing::info!("Listening sockets inherited from the previous binary; none was closed.");
    }
    let api_addr = api_listener.local_addr()?;
    let api_keep = keep(&api_listener)?;
    let upgrader_keep = upgrader_listener.as_ref().map(keep).transpose()?;
    let run_dir = workdir.join("run");
    let rpc = RpcSockets::bind(&run_dir)
        .with_context(|| format!("cannot create the RPC sockets in {}", run_dir.display()))?;

    let mut registry = Registry::default();
    let sup_metrics = SupervisorMetrics::new(&mut registry);
    let uptime_labels = crate::metrics::UptimeLabels::new(&hostname, &main.resource_limit);
    // The baseline the first scrape's CPU percent is measured from.
    tokio::spawn({
        let m = sup_metrics.clone();
        async move { m.sample_processes().await }
    });
    let last_errors = LastErrors::new(&mut registry);
    record_bind_warnings(&bound.warnings, &last_errors);
    let api_metrics = ApiMetrics::new(&mut registry);
    let upgrade_metrics = UpgradeMetrics::new(&mut registry);
    let dca_metrics = crate::dca::DcaMetrics::new(&mut registry);
    report_rollback(&workdir, &last_errors, &upgrade_metrics);
    let mut dataway_clock = None;
    let sinks = build_sinks(&main, &mut registry, &mut dataway_clock)?;
    let delivery = Delivery::start(
        DeliveryConfig {
            global_tags: GlobalTags {
                host: main.host_tags(),
                election: main.election_tags(),
            },
            flush_interval: main.io.flush_interval,
            max_cache_count: main.io.max_cache_count,
            limits: dk_proto::normalize::Limits::default(),
            queue: queue_settings(&main),
            time_correction: main
                .io
                .auto_timestamp_correction
                .then_some(dk_delivery::TIME_CORRECTION_WINDOW),
        },
        sinks,
        &mut registry,
    )
    .context("cannot start delivery")?;
    let election = crate::election::Election::start(&main, dataway_clock.clone(), &mut registry, {
        let errors = Arc::clone(&last_errors);
        Arc::new(move |message: &str| errors.record("election", "election", "", message))
    });
    if let Some(clock) = dataway_clock.filter(|_| main.dataway.ntp.enable) {
        let ntp = &main.dataway.ntp;
        let sync = dk_delivery::ClockSync {
            interval: ntp.interval,
            threshold: ntp.diff,
        };
        delivery.spawn_clock_sync(sync, move || {
            let clock = clock.clone();
            async move { clock.time_diff().await }
        });
    }
    let disk_errors = Arc::clone(&last_errors);
    delivery.on_disk_full(Arc::new(move |message: &str| {
        disk_errors.record("delivery", "disk", "", message);
    }));
    spawn_datakit_migration(&delivery, main.wal_path(), Arc::clone(&last_errors));
    let registry = Arc::new(registry);

    let worker_metrics = Arc::new(dk_api::WorkerMetrics::default());
    worker_metrics.before_scrape({
        let m = sup_metrics.clone();
        Arc::new(move || {
            let m = m.clone();
            Box::pin(async move { m.sample_processes().await })
        })
    });
    let forwarder = Arc::new(Forwarder::new());
    let stop_api = CancellationToken::new();
    let api_state = ApiState {
        feeder: Arc::new(DeliveryFeeder(delivery.clone())),
        info: Arc::new(AgentInfo {
            version: dk_proto::version().to_string(),
            commit: dk_proto::build_id(),
            hostname: hostname.clone(),
            os_arch: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
            started,
        }),
        config: Arc::new(ApiConfig {
            public_apis: main.http_api.public_apis.clone(),
            disable_404page: main.http_api.disable_404page,
            allowed_cors_origins: main.http_api.allowed_cors_origins.clone(),
            timeout: main.http_api.timeout,
            request_rate_limit: main.http_api.request_rate_limit,
            max_body_bytes: mib(main.http_api.max_body_size_mb),
            max_inflight_bytes: mib(main.http_api.max_inflight_body_mb),
            // Kept below the open-files limit: the queue, sinks and workers need descriptors.
            max_connections: dk_api::connection_cap(
                usize::try_from(main.http_api.max_connections).unwrap_or(usize::MAX),
                api_nofile,
                256,
            ),
            header_timeout: api_header_timeout(main.http_api.timeout),
        }),
        last_errors: last_errors.clone(),
        metrics: Arc::new(api_metrics),
        registry: registry.clone(),
        worker_metrics: worker_metrics.clone(),
        routes: Some(forwarder.clone()),
        election: Some({
            let r = election.reporter().clone();
            Arc::new(move || serde_json::to_value(r.state()).unwrap_or_default())
        }),
    };
    let api_stop = stop_api.clone();
    let api_task = tokio::spawn(async move {
        if let Err(e) = dk_api::serve(api_listener, api_state, async move {
            api_stop.cancelled().await
        })
        .await
        {
            tracing::error!(error = %e, "HTTP API stopped.");
        }
    });
    tracing::info!(listen = %api_addr, "HTTP API listening.");

    let (exec_tx, mut exec_rx) = mpsc::channel::<ExecRequest>(1);
    let stop_upgrader = CancellationToken::new();
    let upgrader_task = upgrader_listener.map(|listener| {
        let addr = listener.local_addr().ok();
        let upgrader = Arc::new(Upgrader {
            cfg: main.dk_upgrader.clone(),
            exe: crate::upgrade::stage::exe_path().unwrap_or_default(),
            hostname: hostname.clone(),
            started,
            busy: std::sync::atomic::AtomicBool::new(false),
            exec: exec_tx.clone(),
            last_errors: last_errors.clone(),
            metrics: upgrade_metrics.clone(),
        });
        let stop = stop_upgrader.clone();
        tracing::info!(listen = ?addr, "Upgrade service listening ([dk_upgrader]).");
        tokio::spawn(async move {
            if let Err(e) = crate::upgrade::server::serve(listener, upgrader, async move {
                stop.cancelled().await;
            })
            .await
            {
                tracing::error!(error = %e, "Upgrade service stopped.");
            }
        })
    });

    let worker_registry = Arc::new(WorkerRegistry::default());
    let stop_rpc = CancellationToken::new();
    let handler: Arc<dyn BatchHandler> = Arc::new(Handler {
        delivery: delivery.clone(),
        last_errors: last_errors.clone(),
    });
    let rpc_task = tokio::spawn(rpc.serve(
        worker_registry.clone(),
        handler,
        sup_metrics.clone(),
        stop_rpc.clone(),
    ));

    let restart_errors = last_errors.clone();
    let ctx = ProcContext {
        exe: std::env::current_exe().context("cannot find our own executable to start workers")?,
        run_dir: run_dir.clone(),
        registry: worker_registry,
        metrics: sup_metrics.clone(),
        on_restart: Arc::new(move |family: &str, message: &str| {
            restart_errors.record(&format!("worker/{family}"), "procman", "", message);
        }),
        policy: ProcPolicy {
            memory_limit: main
                .resource_limit
                .enable
                .then(|| main.resource_limit.mem_max_mb.saturating_mul(1 << 20))
                .filter(|b| *b > 0),
            ..ProcPolicy::default()
        },
        worker_args: vec!["--log-level".into(), main.logging.level.clone()],
        worker_env: vec![(
            dk_worker::worker::ENV_API_ADDR.into(),
            dk_worker::worker::connectable(api_addr).to_string(),
        )],
        worker_metrics,
        paused: election.reporter().paused(),
    };
    let mut running = Running {
        handles: BTreeMap::new(),
        bound: bound
            .listeners
            .into_iter()
            .map(|b| (b.spec.address.clone(), b))
            .collect(),
    };
    let mut plan = loaded.plan;
    // Workers of the previous binary still run (they outlived the exec): their families move
    // to this binary one after another, each old worker flushing and exiting once its
    // replacement is up. Other families start at once.
    let mut moved_before = None;
    for family in plan.families.keys() {
        match adopted.remove(family) {
            Some(old) => {
                let config = worker_config(&plan, family, &hostname, &running.bound);
                let fds = config.listeners.iter().map(|l| l.fd).collect();
                let (handle, moved) =
                    procman::take_over(ctx.clone(), config, fds, old, moved_before.take());
                moved_before = Some(moved);
                running.handles.insert(family.clone(), handle);
            }
            None => start_family(&ctx, &plan, family, &hostname, &mut running),
        }
    }
    forwarder.sync(&plan, &running);
    for old in adopted.into_values() {
        drop(procman::retire_unconfigured(ctx.clone(), old));
    }
    tracing::info!(families = ?plan.families.keys().collect::<Vec<_>>(), "Agent started.");
    if let Some(watchdog) = std::env::var(crate::upgrade::handover::ENV_WATCHDOG)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    {
        tokio::spawn(confirm_upgrade(
            watchdog,
            plan.families.keys().cloned().collect(),
            sup_metrics.clone(),
            api_addr,
            started,
        ));
    }

    let (reload_tx, mut reload_rx) = mpsc::channel::<()>(1);
    let _watcher = watch_confd(&workdir.join("conf.d"), reload_tx.clone());
    let stop_dca = CancellationToken::new();
    crate::dca::start(
        crate::dca::Deps {
            cfg: main.dca.clone(),
            workdir: workdir.clone(),
            log_file: crate::dca::log_file(&default_log_path(&workdir, &main.logging.log)),
            hostname: hostname.clone(),
            host_tags: main.host_tags().into_iter().collect(),
            started,
            reload: reload_tx.clone(),
            registry: registry.clone(),
            last_errors: last_errors.clone(),
            validate: crate::dca::checker(&workdir),
            metrics: dca_metrics,
        },
        stop_dca.clone(),
    );
    let mut sigterm = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sighup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut sigusr2 = signal(tokio::signal::unix::SignalKind::user_defined2())?;
    let mut exec: Option<String> = None;
    // Read when scraped: started this long ago.
    sup_metrics
        .uptime
        .get_or_create(&uptime_labels)
        .set(started.elapsed().as_secs() as i64);

    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => { let _ = reload_tx.try_send(()); }
            Some(req) = exec_rx.recv() => { exec = Some(req.version); break; }
            _ = sigusr2.recv() => { exec = Some("the binary on disk (SIGUSR2)".into()); break; }
            Some(()) = reload_rx.recv() => {
                // Let a burst of editor writes settle, then re-validate once.
                tokio::time::sleep(Duration::from_millis(300)).await;
                while reload_rx.try_recv().is_ok() {}
                let reloader = Reloader {
                    workdir: &workdir,
                    ctx: &ctx,
                    hostname: &hostname,
                    main: &main,
                    last_errors: &last_errors,
                    metrics: &sup_metrics,
                };
                plan = reload(&reloader, plan, &mut running).await;
                forwarder.sync(&plan, &running);
            }
        }
    }

    tracing::info!("Stopping: the API and the workers (they flush), then delivery.");
    if exec.is_some() {
        // No worker reads the datagram sockets until the new binary's workers are up.
        for b in running.bound.values() {
            b.hold_datagrams(HANDOVER_DATAGRAM_BUFFER);
        }
    }
    stop_api.cancel();
    stop_upgrader.cancel();
    stop_dca.cancel();
    // A leader resigns first, so another node takes over while this one stops.
    election.stop().await;
    let servers = async {
        let _ = api_task.await;
        if let Some(t) = upgrader_task {
            let _ = t.await;
        }
    };
    let handles = std::mem::take(&mut running.handles);
    let handing_over = exec.is_some();
    let workers = async move {
        if handing_over {
            // They keep reading their sockets and hold their batches across the exec.
            futures::future::join_all(handles.into_values().map(FamilyHandle::hand_over))
                .await
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
        } else {
            futures::future::join_all(handles.into_values().map(FamilyHandle::stop)).await;
            Vec::new()
        }
    };
    let ((), handed_workers) = tokio::join!(servers, workers);
    stop_rpc.cancel();
    let _ = rpc_task.await;
    delivery
        .shutdown()
        .await
        .context("flushing delivery at shutdown")?;
    if let Some(version) = exec {
        let mut handover = Handover::default();
        handover.map.api = Some(handover.push(api_keep));
        if let Some(fd) = upgrader_keep {
            handover.map.upgrader = Some(handover.push(fd));
        }
        for (address, b) in std::mem::take(&mut running.bound) {
            let fds = b
                .into_fds()
                .into_iter()
                .map(|fd| handover.push(fd))
                .collect();
            handover.map.listeners.insert(address, fds);
        }
        let has_prev = crate::upgrade::stage::exe_path()
            .is_some_and(|exe| crate::upgrade::prev_path(&exe).exists());
        for w in handed_workers {
            let stderr = w.stderr.map(|fd| handover.push(fd));
            handover.map.workers.push(WorkerFd {
                family: w.family,
                pid: w.pid,
                stderr,
            });
        }
        handover.watch = has_prev.then(|| Watch {
            workdir: workdir.clone(),
            rollback_after: main.dk_upgrader.rollback_after,
        });
        tracing::info!(
            version,
            sockets = handover.fds.len(),
            workers = handover.map.workers.len(),
            "Queue closed, workers holding their batches; handing over to the new binary."
        );
        return Ok(Exit::Exec(handover));
    }
    tracing::info!("Stopped.");
    Ok(Exit::Stop)
}

/// Replays, once and in the background, what a Datakit install left unsent in the WAL
/// directory we now share; a failure is logged and in `/v1/lasterror`, and retried at the
/// next start.
fn spawn_datakit_migration(delivery: &Delivery, wal_dir: PathBuf, last_errors: Arc<LastErrors>) {
    let delivery = delivery.clone();
    tokio::spawn(async move {
        match dk_delivery::adopt_datakit_wal(&delivery, &wal_dir).await {
            Ok(_) => {}
            Err(dk_delivery::MigrateError::Delivery {
                source: DeliveryError::Closed,
                ..
            }) => tracing::info!(
                "Stopped while replaying Datakit's unsent data; the rest is replayed at the next start."
            ),
            Err(e) => {
                tracing::warn!(error = %e, "Replaying Datakit's unsent data failed.");
                last_errors.record("delivery", "migrate", "", &e.to_string());
            }
        }
    });
}

fn signal(kind: tokio::signal::unix::SignalKind) -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).context("cannot install a signal handler")
}

/// What a config reload needs from the running agent.
struct Reloader<'a> {
    workdir: &'a Path,
    ctx: &'a ProcContext,
    hostname: &'a str,
    /// The datakit.conf the agent runs with (its changes need a restart).
    main: &'a dk_config::MainConfig,
    last_errors: &'a LastErrors,
    metrics: &'a SupervisorMetrics,
}

/// Keeps the running config after a rejected change, and says why everywhere an operator looks.
/// Optional sockets that could not be bound: logged and shown in `/v1/lasterror`.
fn record_bind_warnings(warnings: &[listeners::BindError], last_errors: &LastErrors) {
    for w in warnings {
        tracing::warn!("{w}; the input goes on without it");
        last_errors.record(
            "config",
            "listen",
            "",
            &format!("{w}; the input goes on without it"),
        );
    }
}

fn reject(
    old: Plan,
    problems: &[impl std::fmt::Display],
    last_errors: &LastErrors,
    metrics: &SupervisorMetrics,
) -> Plan {
    let text = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    tracing::error!("Config change rejected; the running config stays: {text}");
    last_errors.record(
        "config",
        "reload",
        "",
        &format!("config change rejected, running config kept: {text}"),
    );
    metrics
        .reloads
        .get_or_create(&[("result", "rejected".to_string())])
        .inc();
    old
}

/// Re-validates conf.d and restarts only the families whose inputs or listeners changed.
async fn reload(r: &Reloader<'_>, old: Plan, running: &mut Running) -> Plan {
    let Reloader {
        workdir,
        ctx,
        hostname,
        main,
        last_errors,
        metrics,
    } = *r;
    let loaded = match load(workdir) {
        Ok(l) => l,
        Err((errors, _)) => return reject(old, &errors, last_errors, metrics),
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    if loaded.main != *main {
        let message =
            "datakit.conf changed; restart the agent to apply it (inputs in conf.d reload live)";
        tracing::warn!("{message}");
        last_errors.record("config", "reload", "", message);
    }
    let new = loaded.plan;
    let changed: BTreeSet<String> = dk_config::changed_families(&old, &new);
    if changed.is_empty() {
        metrics
            .reloads
            .get_or_create(&[("result", "unchanged".to_string())])
            .inc();
        return old;
    }
    // Bind new listeners first: a busy port rejects the whole change.
    let mut wanted = Vec::new();
    for l in new
        .families
        .iter()
        .filter(|(f, _)| changed.contains(*f))
        .flat_map(|(_, fp)| fp.listeners.iter())
    {
        match running.bound.get(&l.address) {
            None => wanted.push(l.clone()),
            Some(b) if b.spec.kind == l.kind && b.spec.sockets == l.sockets => {}
            // SO_REUSEPORT sockets can join the group the running ones are in.
            Some(b) if b.spec.kind == l.kind && b.spec.sockets > 1 && l.sockets > 1 => {
                wanted.push(l.clone());
            }
            Some(b) => {
                let message = format!(
                    "{}: going from {} to {} sockets ({:?} to {:?}) needs an agent restart; the running sockets stay",
                    l.address, b.spec.sockets, l.sockets, b.spec.kind, l.kind
                );
                tracing::warn!("{message}");
                last_errors.record("config", "reload", "", &message);
            }
        }
    }
    let fresh = match listeners::bind_all(&wanted) {
        Ok(b) => b,
        Err(errors) => return reject(old, &errors, last_errors, metrics),
    };
    record_bind_warnings(&fresh.warnings, last_errors);
    for b in fresh.listeners {
        running.bound.insert(b.spec.address.clone(), b);
    }
    // A running worker whose listeners kept their transport and socket count is reconfigured
    // in place: its unchanged inputs keep running with their connections, new listeners are
    // passed to it, removed ones it closes. Anything else restarts the family.
    let mut in_place = BTreeSet::new();
    for family in &changed {
        let (Some(h), Some(before), Some(after)) = (
            running.handles.get(family),
            old.families.get(family),
            new.families.get(family),
        ) else {
            continue;
        };
        let compatible = after.listeners.iter().all(|l| {
            before
                .listeners
                .iter()
                .find(|b| b.address == l.address)
                .is_none_or(|b| b.kind == l.kind && b.sockets == l.sockets)
        });
        if !compatible {
            continue;
        }
        let config = worker_config(&new, family, hostname, &running.bound);
        let new_listeners = after
            .listeners
            .iter()
            .filter(|l| !before.listeners.iter().any(|b| b.address == l.address))
            .filter_map(|l| {
                let fds: Vec<_> = config
                    .listeners
                    .iter()
                    .filter(|c| c.address == l.address)
                    .map(|c| c.fd)
                    .collect();
                (!fds.is_empty()).then(|| (l.address.clone(), fds))
            })
            .collect();
        match h.reconfigure(config, new_listeners).await {
            Ok(()) => {
                in_place.insert(family.clone());
            }
            Err(why) => tracing::warn!(
                family,
                %why,
                "Cannot reconfigure the worker in place; restarting it."
            ),
        }
    }
    let restart: BTreeSet<String> = changed.difference(&in_place).cloned().collect();
    tracing::info!(reconfigured = ?in_place, restarted = ?restart, "Config changed; applying it to the affected families.");
    for family in &restart {
        if let Some(h) = running.handles.remove(family) {
            h.stop().await;
        }
    }
    let still_wanted: BTreeSet<String> = new
        .families
        .values()
        .flat_map(|f| f.listeners.iter().map(|l| l.address.clone()))
        .collect();
    running.bound.retain(|addr, _| still_wanted.contains(addr));
    for family in &restart {
        if new.families.contains_key(family) {
            start_family(ctx, &new, family, hostname, running);
        }
    }
    metrics
        .reloads
        .get_or_create(&[("result", "applied".to_string())])
        .inc();
    new
}

fn watch_confd(dir: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot watch conf.d; send SIGHUP to reload.");
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, notify::RecursiveMode::Recursive) {
        tracing::warn!(error = %e, dir = %dir.display(), "Cannot watch conf.d; send SIGHUP to reload.");
        return None;
    }
    Some(watcher)
}

/// Holds `<workdir>/.pid` locked for the agent's life, so two agents never share a work dir.
fn lock_pid_file(workdir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::Write as _;
    let path = workdir.join(".pid");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another datakit is running with work dir {} (it holds {}); stop it first",
            workdir.display(),
            path.display()
        )
    })?;
    // The lock is what matters; on a full disk the pid is not written and the agent runs on.
    if let Err(e) = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
    {
        tracing::warn!(path = %path.display(), error = %e, "Cannot write the pid file (disk full?); the agent runs on. Free disk space.");
    }
    Ok(file)
}
