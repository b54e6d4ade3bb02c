//! The worker process entry: connect, say hello, serve control, run the inputs, drain on exit.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dk_proto::rpc::{
    CONTROL_SOCKET, Control, Health, Hello, HelloReply, INGEST_SOCKET, IngestClient, InputSpec,
    PROTO_VERSION, WorkerConfig,
};
use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::link::Link;
use crate::rpc::{context_with_timeout, transport};
use crate::sender::{self, SenderStats};
use crate::{Emitter, Family, InputContext};

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A supervisor socket could not be reached.
    #[error(
        "cannot connect to the supervisor socket {path}: {source}; is `datakit run` running with this work dir?"
    )]
    Connect {
        /// Socket path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The hello call failed.
    #[error("hello to the supervisor failed: {0}")]
    Hello(String),
    /// The supervisor refused this worker.
    #[error("the supervisor refused this worker: {0}")]
    Refused(String),
    /// The inputs' configuration did not build.
    #[error("the {family} inputs' configuration is invalid: {problems}")]
    Config {
        /// Family.
        family: String,
        /// Every problem, joined.
        problems: String,
    },
    /// The supervisor went away while pushing.
    #[error(transparent)]
    Sender(#[from] sender::SenderError),
}

/// A reconfigure request handed from the control server to the worker's main loop.
type Reconfigure = (WorkerConfig, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
struct ControlServer {
    started: Instant,
    stats: Arc<SenderStats>,
    pause: Arc<watch::Sender<bool>>,
    shutdown: CancellationToken,
    grace: Arc<std::sync::atomic::AtomicU64>,
    reconfigure: mpsc::Sender<Reconfigure>,
    metrics: Arc<std::sync::Mutex<prometheus_client::registry::Registry>>,
    misbehave: Option<crate::misbehave::Misbehave>,
    handover: Arc<Handover>,
    /// The routes this worker's inputs handle on the API port (swapped at each reconfigure).
    routes: Routes,
    /// Where the points of those routes go.
    emitter: crate::Emitter,
}

/// The current route table, shared by the control server and the run loop.
type Routes = Arc<std::sync::RwLock<Arc<crate::http::RouteTable>>>;

/// The table of `routes` (and the debug echo route when asked for `family`).
fn route_table(
    family: &str,
    routes: impl Iterator<Item = crate::http::HttpRoute>,
) -> crate::http::RouteTable {
    let mut table = crate::http::RouteTable::default();
    let echo = crate::http::debug_echo_enabled(family).then(crate::http::debug_echo_route);
    for route in routes.chain(echo) {
        if let Err(e) = table.add(route) {
            tracing::error!(error = %e, "Route not served.");
        }
    }
    table
}

/// Set to `1` by the supervisor when the worker must start with election-aware inputs paused.
pub const ENV_START_PAUSED: &str = "DK_WORKER_START_PAUSED";

/// The environment variable holding the address (`127.0.0.1:9529`) where the supervisor's HTTP
/// API answers, for inputs that read the agent's own endpoints (the `dk` input scrapes
/// `/metrics`).
pub const ENV_API_ADDR: &str = "DK_WORKER_API_ADDR";

/// The address to connect to for a listening address: the loopback address of its family
/// when it listens on every address (`0.0.0.0`, `::`).
pub fn connectable(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut a = listen;
    if a.ip().is_unspecified() {
        a.set_ip(match a.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    a
}

/// How long a worker that outlives its supervisor's binary swap waits for the new one.
pub const RECONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// What a worker needs to outlive its supervisor's binary swap (see
/// [`Control::prepare_handover`]).
struct Handover {
    link: Arc<Link>,
    run_dir: std::path::PathBuf,
    family: String,
    /// Set once the worker is ready to outlive the swap; cleared when it has reconnected.
    active: std::sync::atomic::AtomicBool,
    /// The supervisor's pid when the handover was prepared; another parent means the
    /// supervisor died (a new binary that crashed): the worker exits.
    parent: std::sync::atomic::AtomicI32,
    shutdown: CancellationToken,
}

/// Makes this process get SIGKILL when the thread that is its parent ends (`true`), or not.
fn die_with_parent(yes: bool) -> std::io::Result<()> {
    let signal = if yes { libc::SIGKILL } else { 0 };
    // SAFETY: PR_SET_PDEATHSIG takes a signal number by value and touches no memory of ours.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn parent_pid() -> i32 {
    // SAFETY: getppid(2) cannot fail and touches no memory.
    #[allow(unsafe_code)]
    unsafe {
        libc::getppid()
    }
}

/// Serves the supervisor's control connection; when it closes, the worker stops, or, during
/// a handover, reconnects to the new supervisor.
fn serve_control(stream: UnixStream, control: ControlServer) {
    tokio::spawn(async move {
        BaseChannel::with_defaults(transport(stream))
            .execute(control.clone().serve())
            .for_each(|f| async {
                tokio::spawn(f);
            })
            .await;
        if control.handover.active.load(Ordering::SeqCst) {
            tokio::spawn(reconnect(control));
        } else {
            // The supervisor closed the control connection: stop.
            control.shutdown.cancel();
        }
    });
}

/// Reconnects to the supervisor that replaced ours under the same pid, says hello again and
/// resumes the held pushes. Gives up (the worker stops) when the parent changed (the new
/// binary died) or after [`RECONNECT_DEADLINE`].
async fn reconnect(control: ControlServer) {
    let h = control.handover.clone();
    let deadline = tokio::time::Instant::now() + RECONNECT_DEADLINE;
    let mut last = String::new();
    let client = loop {
        if parent_pid() != h.parent.load(Ordering::SeqCst) {
            tracing::warn!("The supervisor died during its binary swap; stopping.");
            std::process::exit(1);
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::error!(reason = %last, "No supervisor took this worker over within {RECONNECT_DEADLINE:?}; stopping.");
            h.link.release();
            h.active.store(false, Ordering::SeqCst);
            h.shutdown.cancel();
            return;
        }
        match say_hello(&h.run_dir, &h.family).await {
            Ok((client, _config)) => break client,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stream = match connect(&h.run_dir, CONTROL_SOCKET).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "Reconnected to the new supervisor but not its control socket; stopping.");
            h.active.store(false, Ordering::SeqCst);
            h.shutdown.cancel();
            return;
        }
    };
    h.active.store(false, Ordering::SeqCst);
    serve_control(stream, control);
    // The parent thread is now the new supervisor's main thread; check it did not die just
    // before the signal was armed.
    if die_with_parent(true).is_err() || parent_pid() != h.parent.load(Ordering::SeqCst) {
        std::process::exit(1);
    }
    h.link.resume(client);
    tracing::info!("Taken over by the new supervisor binary; pushing again.");
}

/// Connects to the ingest socket and says hello; the client and this worker's config.
async fn say_hello(
    run_dir: &Path,
    family: &str,
) -> Result<(dk_proto::rpc::IngestClient, WorkerConfig), WorkerError> {
    let ingest = connect(run_dir, INGEST_SOCKET).await?;
    let client = IngestClient::new(tarpc::client::Config::default(), transport(ingest)).spawn();
    let hello = Hello {
        proto_version: PROTO_VERSION,
        build: dk_proto::build_id(),
        family: family.to_string(),
        pid: std::process::id(),
    };
    match client
        .hello(context_with_timeout(Duration::from_secs(10)), hello)
        .await
    {
        Ok(HelloReply::Accepted(c)) => Ok((client, c)),
        Ok(HelloReply::Refused(reason)) => Err(WorkerError::Refused(reason)),
        Err(e) => Err(WorkerError::Hello(e.to_string())),
    }
}

impl Control for ControlServer {
    async fn health(self, _: tarpc::context::Context) -> Health {
        Health {
            pid: std::process::id(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            paused: *self.pause.borrow(),
            points_acked: self.stats.acked.load(Ordering::Relaxed),
            points_dropped: self.stats.dropped.load(Ordering::Relaxed),
            pending_batches: self.stats.pending.load(Ordering::Relaxed),
            rss_bytes: status_bytes(std::process::id(), "VmRSS").unwrap_or(0),
        }
    }

    async fn metrics(self, _: tarpc::context::Context) -> String {
        match self.misbehave {
            Some(m) => m.metrics(encode_metrics(&self.metrics)),
            None => encode_metrics(&self.metrics),
        }
    }

    async fn set_paused(self, _: tarpc::context::Context, paused: bool) {
        // Only a change wakes the inputs (an election-aware input collects at once on resume).
        self.pause.send_if_modified(|p| {
            let changed = *p != paused;
            *p = paused;
            changed
        });
    }

    async fn reconfigure(
        self,
        _: tarpc::context::Context,
        config: WorkerConfig,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.reconfigure
            .send((config, tx))
            .await
            .map_err(|_| "the worker is stopping".to_string())?;
        rx.await.map_err(|_| "the worker is stopping".to_string())?
    }

    async fn shutdown(self, _: tarpc::context::Context, grace_ms: u64) {
        self.grace.store(grace_ms, Ordering::Relaxed);
        self.shutdown.cancel();
    }

    async fn http(
        self,
        _: tarpc::context::Context,
        call: dk_proto::rpc::HttpCall,
    ) -> dk_proto::rpc::HttpReply {
        use crate::http::{HttpAnswer, HttpRequest, Method};
        let reply = |a: HttpAnswer| dk_proto::rpc::HttpReply {
            status: a.status,
            content_type: a.content_type.to_string(),
            body: a.body,
        };
        let Some(method) = Method::parse(&call.method) else {
            return reply(HttpAnswer::text(
                405,
                format!("{} does not answer {}", call.path, call.method),
            ));
        };
        let routes = match self.routes.read() {
            Ok(r) => r.clone(),
            Err(_) => return reply(HttpAnswer::text(500, "the route table is unusable")),
        };
        let request = HttpRequest {
            query: call.query,
            headers: call.headers,
            body: call.body,
        };
        reply(crate::http::answer(routes, &self.emitter, method, call.path, request).await)
    }

    async fn set_clock_offset(self, _: tarpc::context::Context, offset_ns: i64) {
        dk_proto::clock::set_offset_ns(offset_ns);
    }

    async fn prepare_handover(
        self,
        _: tarpc::context::Context,
        deadline_ms: u64,
    ) -> Result<(), String> {
        let h = &self.handover;
        h.link.hold(Duration::from_millis(deadline_ms)).await?;
        if let Err(e) = die_with_parent(false) {
            h.link.release();
            return Err(format!("cannot stop dying with the supervisor: {e}"));
        }
        h.parent.store(parent_pid(), Ordering::SeqCst);
        h.active.store(true, Ordering::SeqCst);
        tracing::info!("Holding pushes while the supervisor swaps its binary.");
        Ok(())
    }
}

/// The registry as OpenMetrics text without the final `# EOF` line.
fn encode_metrics(registry: &std::sync::Mutex<prometheus_client::registry::Registry>) -> String {
    let mut out = String::new();
    if let Ok(r) = registry.lock() {
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    }
    match out.strip_suffix("# EOF\n") {
        Some(body) => body.to_string(),
        None => out,
    }
}

/// A memory line of `/proc/<pid>/status` (`"VmRSS"`, `"VmHWM"`...) in bytes; `None` when
/// the process is gone. The kernel reports these in kB, so no page size is assumed.
pub fn status_bytes(pid: u32, key: &str) -> Option<u64> {
    status_value(&read_status(pid)?, key)
}

/// `/proc/<pid>/status` in one read (the kernel reports its size as 0, so reading it into an
/// empty buffer takes eight growing reads); `None` when the process is gone. Called every
/// second per worker by the health checks.
pub fn read_status(pid: u32) -> Option<String> {
    use std::io::Read;
    let mut out = String::with_capacity(4096);
    std::fs::File::open(format!("/proc/{pid}/status"))
        .ok()?
        .read_to_string(&mut out)
        .ok()?;
    Some(out)
}

/// A memory line (`"VmRSS"`...) of a `/proc/<pid>/status` text, in bytes.
pub fn status_value(status: &str, key: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The state letter of a process from `/proc/<pid>/stat` (`R`, `S`, `Z`...); `None` when
/// it is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
}

async fn connect(run_dir: &Path, name: &str) -> Result<UnixStream, WorkerError> {
    let path = run_dir.join(name);
    UnixStream::connect(&path)
        .await
        .map_err(|source| WorkerError::Connect {
            path: path.display().to_string(),
            source,
        })
}

/// Runs one family's worker until the supervisor asks it to stop or goes away.
///
/// # Errors
/// See [`WorkerError`]; the binary turns them into an exit code the supervisor records.
pub async fn run(family: &dyn Family, run_dir: &Path) -> Result<(), WorkerError> {
    run_with(family, run_dir, None).await
}

/// As [`run`], breaking the RPC protocol in the way `misbehave` says (a debug mode).
///
/// # Errors
/// See [`WorkerError`].
pub async fn run_with(
    family: &dyn Family,
    run_dir: &Path,
    misbehave: Option<crate::misbehave::Misbehave>,
) -> Result<(), WorkerError> {
    let started = Instant::now();
    let ingest = connect(run_dir, INGEST_SOCKET).await?;
    let client = IngestClient::new(tarpc::client::Config::default(), transport(ingest)).spawn();
    let hello = Hello {
        proto_version: PROTO_VERSION,
        build: dk_proto::build_id(),
        family: misbehave.map_or_else(
            || family.name().to_string(),
            |m| m.hello_family(family.name()),
        ),
        pid: std::process::id(),
    };
    let config = match client
        .hello(context_with_timeout(Duration::from_secs(10)), hello)
        .await
    {
        Ok(HelloReply::Accepted(c)) => c,
        Ok(HelloReply::Refused(reason)) => {
            if misbehave.is_some() {
                // A misbehaving worker does not take no for an answer: the supervisor must
                // kill it.
                tracing::warn!(%reason, "Refused; staying alive (DK_DEBUG_WORKER_MISBEHAVE).");
                std::future::pending::<()>().await;
            }
            return Err(WorkerError::Refused(reason));
        }
        Err(e) => return Err(WorkerError::Hello(e.to_string())),
    };
    let inputs = family
        .build(&config)
        .map_err(|problems| WorkerError::Config {
            family: family.name().to_string(),
            problems: join(&problems),
        })?;

    let stats = Arc::new(SenderStats::default());
    let link = Arc::new(Link::new(client.clone()));
    // A worker of a family paused by election starts paused: no tick before the supervisor's
    // `set_paused` arrives.
    let start_paused = std::env::var_os(ENV_START_PAUSED).is_some_and(|v| v == "1");
    let (pause_tx, paused) = watch::channel(start_paused);
    let shutdown = CancellationToken::new();
    let grace = Arc::new(std::sync::atomic::AtomicU64::new(5_000));
    let (reconfigure_tx, mut reconfigure_rx) = mpsc::channel::<Reconfigure>(1);
    let metrics = Arc::new(std::sync::Mutex::new(
        prometheus_client::registry::Registry::default(),
    ));
    let (emitter, rx) = Emitter::channel(256);
    let routes: Routes = Arc::default();
    let control = ControlServer {
        routes: routes.clone(),
        emitter: emitter.clone(),
        started,
        stats: stats.clone(),
        pause: Arc::new(pause_tx),
        shutdown: shutdown.clone(),
        grace: grace.clone(),
        reconfigure: reconfigure_tx,
        metrics: metrics.clone(),
        misbehave,
        handover: Arc::new(Handover {
            link: link.clone(),
            run_dir: run_dir.to_path_buf(),
            family: family.name().to_string(),
            active: std::sync::atomic::AtomicBool::new(false),
            parent: std::sync::atomic::AtomicI32::new(0),
            shutdown: shutdown.clone(),
        }),
    };
    let control_stream = connect(run_dir, CONTROL_SOCKET).await?;
    serve_control(control_stream, control);

    if let Some(m) = misbehave {
        let (run_dir, client) = (run_dir.to_path_buf(), client.clone());
        tokio::spawn(async move { m.act(&run_dir, client).await });
    }
    let mut sender_task = tokio::spawn(sender::run(rx, link, stats.clone()));
    let shared = Shared {
        emitter: emitter.clone(),
        shutdown: shutdown.clone(),
        paused,
        started,
        metrics,
    };
    drop(emitter);
    let mut running = Running::start(family, inputs, &config, &shared, crate::fdpass::from_env());
    running.publish_routes(family, &routes);
    // The supervisor tags every forwarded worker line with `family=`; not repeated here.
    tracing::info!(inputs = running.len(), "Worker started.");

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            res = &mut sender_task => {
                // The sender only ends early on a lost supervisor.
                return match res {
                    Ok(Err(e)) => Err(e.into()),
                    _ => Ok(()),
                };
            }
            Some((config, reply)) = reconfigure_rx.recv() => {
                let grace = Duration::from_millis(grace.load(Ordering::Relaxed));
                let answer = running.reconfigure(family, config, &shared, grace).await;
                running.publish_routes(family, &routes);
                let _ = reply.send(answer);
            }
        }
    }

    // Graceful stop: inputs finish within the grace period, then everything buffered is pushed.
    let deadline = Duration::from_millis(grace.load(Ordering::Relaxed));
    running.stop_all(deadline).await;
    drop(shared);
    match tokio::time::timeout(deadline, sender_task).await {
        Ok(Ok(Err(e))) => Err(e.into()),
        _ => Ok(()),
    }
}

/// The running inputs. For a family whose instances are independent
/// ([`Family::per_instance`]) each instance is its own generation, so a reconfigure stops only
/// the instances that changed or went and starts only the new ones: the others keep running,
/// with their open connections. Otherwise one generation runs the whole config.
struct Running {
    gens: Vec<(Vec<InputSpec>, Generation)>,
    /// The listening sockets as this process numbers them (inherited at spawn, or received
    /// over the fd channel at a reconfigure).
    listeners: Vec<dk_proto::rpc::InheritedListener>,
    /// The supervisor's channel for new listeners ([`crate::fdpass`]).
    channel: Option<std::os::fd::OwnedFd>,
}

impl Running {
    fn start(
        family: &dyn Family,
        inputs: Vec<Box<dyn crate::Input>>,
        config: &WorkerConfig,
        shared: &Shared,
        channel: Option<std::os::fd::OwnedFd>,
    ) -> Running {
        let mut running = Running {
            gens: Vec::new(),
            listeners: config.listeners.clone(),
            channel,
        };
        running.start_gens(family, inputs, config, shared);
        running
    }

    /// Starts `inputs` (built from `config`): one generation per instance when the family
    /// builds one input per instance, in order; else one for all.
    fn start_gens(
        &mut self,
        family: &dyn Family,
        inputs: Vec<Box<dyn crate::Input>>,
        config: &WorkerConfig,
        shared: &Shared,
    ) {
        if family.per_instance() && inputs.len() == config.inputs.len() {
            for (spec, input) in config.inputs.iter().zip(inputs) {
                let generation = Generation::start(vec![input], config, shared);
                self.gens.push((vec![spec.clone()], generation));
            }
        } else {
            let generation = Generation::start(inputs, config, shared);
            self.gens.push((config.inputs.clone(), generation));
        }
    }

    fn len(&self) -> usize {
        self.gens.iter().map(|(_, g)| g.tasks.len()).sum()
    }

    /// Makes the routes of the running inputs the ones the control server answers.
    fn publish_routes(&self, family: &dyn Family, routes: &Routes) {
        let table = route_table(
            family.name(),
            self.gens.iter().flat_map(|(_, g)| g.routes.iter().cloned()),
        );
        if let Ok(mut r) = routes.write() {
            *r = Arc::new(table);
        }
    }

    /// Applies a new configuration in place; on error the running inputs are untouched.
    async fn reconfigure(
        &mut self,
        family: &dyn Family,
        mut config: WorkerConfig,
        shared: &Shared,
        grace: Duration,
    ) -> Result<(), String> {
        // The listeners as this process numbers them: kept ones, and new ones received now.
        let mut received = self
            .channel
            .as_ref()
            .map(crate::fdpass::receive_all)
            .unwrap_or_default();
        let mut kept_fds = Vec::new();
        for l in &mut config.listeners {
            let ours: Vec<i32> = self
                .listeners
                .iter()
                .filter(|o| o.address == l.address && o.kind == l.kind)
                .map(|o| o.fd)
                .collect();
            let position = config_position(&kept_fds, &l.address);
            if let Some(fd) = ours.get(position) {
                l.fd = *fd;
            } else if let Some(fd) = received
                .get_mut(&l.address)
                .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
            {
                l.fd = std::os::fd::IntoRawFd::into_raw_fd(fd);
            } else {
                return Err(format!(
                    "no socket for {}: the supervisor must send new listeners before reconfiguring",
                    l.address
                ));
            }
            kept_fds.push(l.address.clone());
        }
        let inputs = family.build(&config).map_err(|p| join(&p))?;
        if family.per_instance() && inputs.len() == config.inputs.len() {
            // Keep every running instance whose spec is unchanged (each matched once).
            let mut old = std::mem::take(&mut self.gens);
            let mut keep = Vec::new();
            let mut start = Vec::new();
            for (spec, input) in config.inputs.iter().zip(inputs) {
                match old.iter().position(|(s, _)| s.len() == 1 && s[0] == *spec) {
                    Some(i) => keep.push(old.swap_remove(i)),
                    None => start.push((spec.clone(), input)),
                }
            }
            let stopped = old.len();
            futures::future::join_all(old.iter_mut().map(|(_, g)| g.stop(grace))).await;
            let started = start.len();
            self.gens = keep;
            for (spec, input) in start {
                let generation = Generation::start(vec![input], &config, shared);
                self.gens.push((vec![spec], generation));
            }
            tracing::info!(
                kept = self.gens.len() - started,
                stopped,
                started,
                "Worker reconfigured in place."
            );
        } else {
            self.stop_all(grace).await;
            // The new inputs register their metrics afresh.
            if let Ok(mut r) = shared.metrics.lock() {
                *r = prometheus_client::registry::Registry::default();
            }
            self.start_gens(family, inputs, &config, shared);
            tracing::info!(inputs = self.len(), "Worker reconfigured.");
        }
        // Listeners no longer configured: close ours (the inputs used duplicates).
        let gone: Vec<i32> = self
            .listeners
            .iter()
            .filter(|o| !config.listeners.iter().any(|l| l.fd == o.fd))
            .map(|o| o.fd)
            .collect();
        for fd in gone {
            // SAFETY: the number is one of this worker's listener descriptors, which only this
            // list owns (inputs hold duplicates); it is closed once, here.
            #[allow(unsafe_code)]
            drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        }
        self.listeners = config.listeners;
        Ok(())
    }

    async fn stop_all(&mut self, grace: Duration) {
        futures::future::join_all(self.gens.iter_mut().map(|(_, g)| g.stop(grace))).await;
        self.gens.clear();
    }
}

/// How many listeners for `address` came before in the list (SO_REUSEPORT groups have several).
fn config_position(before: &[String], address: &str) -> usize {
    before.iter().filter(|a| *a == address).count()
}

fn join(problems: &[crate::ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The inputs built from one configuration, with their own cancel token.
struct Generation {
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    /// The routes its inputs handle on the API port.
    routes: Vec<crate::http::HttpRoute>,
}

/// What every generation of inputs shares.
struct Shared {
    emitter: Emitter,
    shutdown: CancellationToken,
    paused: watch::Receiver<bool>,
    started: Instant,
    metrics: Arc<std::sync::Mutex<prometheus_client::registry::Registry>>,
}

impl Generation {
    fn start(
        inputs: Vec<Box<dyn crate::Input>>,
        config: &WorkerConfig,
        shared: &Shared,
    ) -> Generation {
        let cancel = shared.shutdown.child_token();
        let mut tasks = JoinSet::new();
        let mut routes = Vec::new();
        for input in inputs {
            routes.extend(input.routes());
            let ctx = InputContext {
                emitter: shared.emitter.clone(),
                shutdown: cancel.clone(),
                paused: shared.paused.clone(),
                hostname: config.hostname.clone(),
                listeners: config.listeners.clone(),
                started: shared.started,
                metrics: shared.metrics.clone(),
            };
            tasks.spawn(input.run(ctx));
        }
        Generation {
            cancel,
            tasks,
            routes,
        }
    }

    /// Cancels the inputs and waits up to `grace` for them to finish; aborts the rest.
    async fn stop(&mut self, grace: Duration) {
        self.cancel.cancel();
        let tasks = &mut self.tasks;
        let _ =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_resident_memory_of_a_process() {
        let rss = status_bytes(std::process::id(), "VmRSS").unwrap();
        // A test binary has at least a few hundred KiB resident and far less than 1 GiB.
        assert!(rss > 256 * 1024 && rss < 1 << 30, "{rss}");
        let peak = status_bytes(std::process::id(), "VmHWM").unwrap();
        assert!(peak >= rss);
        assert_eq!(status_bytes(u32::MAX, "VmRSS"), None);
        assert_eq!(status_bytes(std::process::id(), "NoSuchKey"), None);
    }
}
