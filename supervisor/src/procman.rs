//! Worker process management: spawn, hand over sockets, health-check, restart with backoff.
//!
//! # Design
//!
//! One task per family runs the state machine
//! `Spawning → Starting (await hello + control) → Running (health checks) → Exited → Backoff → Spawning`,
//! or `Stopping → Stopped` when asked to stop. Every restart is counted in
//! `datakit_worker_restarts_total{family,cause}`, logged, and recorded as a last error. Causes:
//! `signal` (killed), `exit_error` (non-zero exit), `exit_ok` (unexpected clean exit),
//! `health_timeout` (missed health checks), `memory_limit` (resident memory over
//! `[resource_limit] mem_max_mb`), `start_timeout` (no hello/control in time),
//! `spawn_failed` (exec failed), `protocol_violation` (oversize or garbage frames, a flood of
//! requests, a hello for another family: see `ingest`).
//!
//! A worker's metrics text is asked for when `/metrics` is scraped (not at every health check)
//! and served only up to [`MAX_WORKER_METRICS_BYTES`]; a larger report is refused and counted
//! (`datakit_worker_metrics_refused_total`) and the last good one stays.

use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dk_proto::rpc::context_with_timeout;
use dk_proto::rpc::{ControlClient, MAX_WORKER_METRICS_BYTES, WorkerConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::metrics::SupervisorMetrics;
use crate::registry::WorkerRegistry;

/// Timing of health checks and start-up.
#[derive(Debug, Clone)]
pub struct ProcPolicy {
    /// Period of health checks.
    pub health_interval: Duration,
    /// Deadline of one health check.
    pub health_timeout: Duration,
    /// Consecutive missed checks before the worker is killed.
    pub health_misses: u32,
    /// Time allowed from spawn to hello + control connection.
    pub start_timeout: Duration,
    /// Time a stopping worker gets to flush and exit before SIGKILL.
    pub stop_grace: Duration,
    /// A worker healthy this long resets the backoff.
    pub healthy_reset: Duration,
    /// Resident memory a worker may use (`[resource_limit] mem_max_mb`); above it the worker
    /// is killed and restarted (cause `memory_limit`). Checked every health interval.
    pub memory_limit: Option<u64>,
}

/// Period of worker health checks: every round trip wakes both processes (about 0.45 ms of
/// CPU between them, a third of an idle agent's CPU at 1 s), so it is 2 s, with a 2 s
/// deadline and 2 misses: a hung worker is killed about 4 s after it stopped answering
/// (ADR 0001). A worker that exits is seen at once (its exit and its closed socket).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

impl Default for ProcPolicy {
    fn default() -> Self {
        ProcPolicy {
            health_interval: HEALTH_INTERVAL,
            health_timeout: Duration::from_secs(2),
            health_misses: 2,
            start_timeout: Duration::from_secs(10),
            stop_grace: Duration::from_secs(5),
            healthy_reset: Duration::from_secs(60),
            memory_limit: None,
        }
    }
}

/// Called on every restart with (family, message).
pub type RestartHook = dyn Fn(&str, &str) + Send + Sync;

/// Shared by every family supervisor.
#[derive(Clone)]
pub struct ProcContext {
    /// The executable to run workers from (our own binary).
    pub exe: PathBuf,
    /// `<workdir>/run`.
    pub run_dir: PathBuf,
    /// Pid registry the RPC servers complete.
    pub registry: Arc<WorkerRegistry>,
    /// Metrics.
    pub metrics: SupervisorMetrics,
    /// Records a restart as a last error: (family, message).
    pub on_restart: Arc<RestartHook>,
    /// Timing.
    pub policy: ProcPolicy,
    /// Extra arguments for every worker (e.g. the log level).
    pub worker_args: Vec<String>,
    /// Extra environment for every worker (e.g. where the HTTP API answers).
    pub worker_env: Vec<(String, String)>,
    /// Where each worker's own metrics go (served on `/metrics`).
    pub worker_metrics: Arc<dk_api::WorkerMetrics>,
    /// Whether election-aware inputs are paused (election): every worker starts in this state
    /// and follows every change, across restarts.
    pub paused: tokio::sync::watch::Receiver<bool>,
}

/// How long a worker has to stop pushing before the binary swap (its in-flight pushes are
/// answered within milliseconds; a worker that cannot is stopped instead).
pub const HANDOVER_DEADLINE: Duration = Duration::from_secs(5);
/// How long the new binary waits for a worker of the previous one to reconnect before it
/// stops it by signal.
const RECONNECT_WAIT: Duration = Duration::from_secs(3);

/// A worker process that outlives the exec of its supervisor's binary: handed over by the old
/// binary, taken over by the new one, which stops it once its replacement is up.
#[derive(Debug)]
pub struct Adopted {
    /// Its family.
    pub family: String,
    /// Its pid (a child of ours: the exec keeps the pid).
    pub pid: u32,
    /// The read end of its stderr pipe.
    pub stderr: Option<OwnedFd>,
}

/// A running family supervisor.
pub struct FamilyHandle {
    /// Cancelling it asks for a handover; `stop` is its child, so a worker that is not
    /// running (starting, in backoff) is just stopped.
    handover: CancellationToken,
    stop: CancellationToken,
    reconfig: mpsc::Sender<Reconfig>,
    http: HttpCaller,
    join: JoinHandle<Option<Adopted>>,
}

/// One forwarded API request and where its answer goes.
type HttpMsg = (
    dk_proto::rpc::HttpCall,
    oneshot::Sender<Result<dk_proto::rpc::HttpReply, String>>,
);

/// Forwards API requests to a family's worker while it is up (see [`FamilyHandle::http`]).
#[derive(Clone)]
pub struct HttpCaller {
    family: String,
    tx: mpsc::Sender<HttpMsg>,
    up: Arc<std::sync::Mutex<bool>>,
}

/// How long a forwarded API request may take in the worker.
const HTTP_CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpCaller {
    /// Forwards `call`; an error says why no worker answered (not running, busy, timed out).
    ///
    /// # Errors
    /// Why the worker did not answer; the API answers 503 with it.
    pub async fn call(
        &self,
        call: dk_proto::rpc::HttpCall,
    ) -> Result<dk_proto::rpc::HttpReply, String> {
        let family = &self.family;
        let (reply, answer) = oneshot::channel();
        {
            // Sent under the lock procman takes to mark the worker down, so a request is either
            // refused here or queued before procman drains the queue (never left for the next
            // worker).
            let up = self
                .up
                .lock()
                .map_err(|_| "procman state poisoned".to_string())?;
            if !*up {
                return Err(format!(
                    "the {family} worker is not running (starting or restarting); retry shortly"
                ));
            }
            self.tx
                .try_send((call, reply))
                .map_err(|_| format!("the {family} worker has too many requests waiting; retry"))?;
        }
        match tokio::time::timeout(HTTP_CALL_TIMEOUT + Duration::from_secs(1), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(format!(
                "the {family} worker stopped before answering; retry"
            )),
            Err(_) => Err(format!("the {family} worker did not answer in time")),
        }
    }
}

/// A reconfigure of a running worker in place ([`FamilyHandle::reconfigure`]).
pub struct Reconfig {
    /// The new configuration, listener descriptors numbered as the supervisor holds them.
    pub config: WorkerConfig,
    /// Listeners the worker does not have yet, sent to it before the reconfigure.
    pub new_listeners: Vec<(String, Vec<RawFd>)>,
    reply: oneshot::Sender<Result<(), String>>,
}

/// How long a reload waits for a worker to reconfigure in place before it restarts it.
const RECONFIGURE_WAIT: Duration = Duration::from_secs(15);

/// What a family supervisor is asked from outside.
struct Requests {
    stop: CancellationToken,
    handover: CancellationToken,
    reconfig: mpsc::Receiver<Reconfig>,
    http: mpsc::Receiver<HttpMsg>,
    /// True while the worker is up (its requests are served).
    up: Arc<std::sync::Mutex<bool>>,
}

/// What the worker is started with; a reconfigure changes it for later restarts too.
struct Spec {
    config: WorkerConfig,
    fds: Vec<RawFd>,
}

/// Requests per worker waiting to be forwarded at most.
const HTTP_QUEUE: usize = 64;

fn requests(
    family: &str,
) -> (
    Requests,
    CancellationToken,
    CancellationToken,
    mpsc::Sender<Reconfig>,
    HttpCaller,
) {
    let handover = CancellationToken::new();
    let stop = handover.child_token();
    let (tx, rx) = mpsc::channel(1);
    let (http_tx, http_rx) = mpsc::channel(HTTP_QUEUE);
    let up = Arc::new(std::sync::Mutex::new(false));
    (
        Requests {
            stop: stop.clone(),
            handover: handover.clone(),
            reconfig: rx,
            http: http_rx,
            up: up.clone(),
        },
        handover,
        stop,
        tx,
        HttpCaller {
            family: family.to_string(),
            tx: http_tx,
            up,
        },
    )
}

impl FamilyHandle {
    /// Stops the worker gracefully (flush, then exit; SIGKILL after the grace period) and waits.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.join.await;
    }

    /// Asks the running worker to outlive this binary's exec ([`dk_proto::rpc::Control::prepare_handover`]):
    /// it is returned for the next binary, not killed and not reaped. A worker that is not
    /// running or cannot hold its pushes in time is stopped instead (`None`).
    pub async fn hand_over(self) -> Option<Adopted> {
        self.handover.cancel();
        self.join.await.ok().flatten()
    }

    /// What forwards API requests to this family's worker.
    pub fn http(&self) -> HttpCaller {
        self.http.clone()
    }

    /// Reconfigures the running worker in place (its process and unchanged inputs keep
    /// running): `new_listeners` are sent to it first. An error (not running, refused, no
    /// answer in time) leaves the worker as it was; the caller restarts it instead.
    ///
    /// # Errors
    /// Why the worker was not reconfigured.
    pub async fn reconfigure(
        &self,
        config: WorkerConfig,
        new_listeners: Vec<(String, Vec<RawFd>)>,
    ) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.reconfig
            .try_send(Reconfig {
                config,
                new_listeners,
                reply,
            })
            .map_err(|_| "a reconfigure is already waiting".to_string())?;
        match tokio::time::timeout(RECONFIGURE_WAIT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the worker is not running".into()),
            Err(_) => Err(format!("no answer within {RECONFIGURE_WAIT:?}")),
        }
    }
}

/// Starts supervising one family's worker.
pub fn start(ctx: ProcContext, config: WorkerConfig, fds: Vec<RawFd>) -> FamilyHandle {
    let (req, handover, stop, reconfig, http) = requests(&config.family);
    let join = tokio::spawn(supervise(ctx, Spec { config, fds }, req, None));
    FamilyHandle {
        handover,
        stop,
        reconfig,
        http,
        join,
    }
}

/// A worker of the previous binary waiting for its replacement.
struct Pending {
    pid: u32,
    registration: crate::registry::Registration,
    /// The previous family's move is done: start this one.
    after: Option<oneshot::Receiver<()>>,
    done: oneshot::Sender<()>,
}

/// Starts supervising one family whose worker of the previous binary (`old`) still runs: once
/// `after` resolves (the previous family moved), a worker of this binary is started; when it
/// is up, `old` is asked to flush and exit. The receiver resolves when `old` is gone, so
/// families move one after another.
pub fn take_over(
    ctx: ProcContext,
    config: WorkerConfig,
    fds: Vec<RawFd>,
    old: Adopted,
    after: Option<oneshot::Receiver<()>>,
) -> (FamilyHandle, oneshot::Receiver<()>) {
    let (done, moved) = oneshot::channel();
    let registration = ctx.registry.adopt(old.pid, &old.family, config.clone());
    follow_stderr(old.stderr, &old.family);
    let pending = Pending {
        pid: old.pid,
        registration,
        after,
        done,
    };
    let (req, handover, stop, reconfig, http) = requests(&config.family);
    let join = tokio::spawn(supervise(ctx, Spec { config, fds }, req, Some(pending)));
    (
        FamilyHandle {
            handover,
            stop,
            reconfig,
            http,
            join,
        },
        moved,
    )
}

/// Stops a worker of the previous binary whose family is no longer configured.
pub fn retire_unconfigured(ctx: ProcContext, old: Adopted) -> JoinHandle<()> {
    let empty = WorkerConfig {
        family: old.family.clone(),
        hostname: String::new(),
        inputs: Vec::new(),
        listeners: Vec::new(),
        health_interval_ms: HEALTH_INTERVAL.as_millis() as u64,
    };
    let (done, _) = oneshot::channel();
    let registration = ctx.registry.adopt(old.pid, &old.family, empty);
    follow_stderr(old.stderr, &old.family);
    tokio::spawn(retire(
        ctx,
        old.family,
        Pending {
            pid: old.pid,
            registration,
            after: None,
            done,
        },
        None,
    ))
}

fn follow_stderr(fd: Option<OwnedFd>, family: &str) {
    if let Some(rx) = fd.and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok()) {
        drop(forward_stderr(rx, family, CancellationToken::new()));
    }
}

/// Reaps `pid` (our child) within `within`; false if it is still running.
async fn reaped(pid: u32, within: Duration) -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    let deadline = Instant::now() + within;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(WaitStatus::StillAlive) => return false,
            // Exited, or not our child (anymore): gone for us either way.
            _ => return true,
        }
    }
}

/// Asks a worker of the previous binary to flush and exit (by RPC once it reconnected, else
/// SIGTERM; SIGKILL after the grace period), reaps it and reports the family moved.
async fn retire(ctx: ProcContext, family: String, old: Pending, replaced_by: Option<u32>) {
    use nix::sys::signal::{Signal, kill};
    let started = Instant::now();
    let Pending {
        pid,
        registration,
        done,
        ..
    } = old;
    let grace = ctx.policy.stop_grace;
    let control = tokio::time::timeout(RECONNECT_WAIT, registration.control)
        .await
        .ok()
        .and_then(Result::ok);
    let asked = match &control {
        Some(c) => c
            .shutdown(
                context_with_timeout(Duration::from_secs(1)),
                grace.as_millis() as u64,
            )
            .await
            .is_ok(),
        None => false,
    };
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    if !asked {
        tracing::warn!(
            family,
            pid,
            "The worker of the previous binary did not reconnect; stopping it by signal (what it held is lost)."
        );
        let _ = kill(target, Signal::SIGTERM);
    }
    if !reaped(pid, grace + Duration::from_secs(1)).await {
        tracing::warn!(
            family,
            pid,
            "The worker of the previous binary did not stop in time; killing it."
        );
        let _ = kill(target, Signal::SIGKILL);
        let _ = reaped(pid, Duration::from_secs(5)).await;
    }
    ctx.registry.unregister(pid);
    ctx.metrics
        .handover(&family, if asked { "moved" } else { "killed" });
    match replaced_by {
        Some(new) => tracing::info!(
            family,
            old_pid = pid,
            new_pid = new,
            ms = started.elapsed().as_millis() as u64,
            "Worker moved to the new binary: the previous one flushed and exited."
        ),
        None => tracing::info!(family, pid, "Worker of the previous binary stopped."),
    }
    let _ = done.send(());
}

enum Outcome {
    Stopped,
    Restart {
        cause: &'static str,
        detail: String,
    },
    /// The worker outlives the exec (see [`FamilyHandle::hand_over`]).
    HandedOver(Adopted),
}

async fn supervise(
    ctx: ProcContext,
    mut spec: Spec,
    mut req: Requests,
    mut pending: Option<Pending>,
) -> Option<Adopted> {
    let family = spec.config.family.clone();
    if let Some(after) = pending.as_mut().and_then(|p| p.after.take()) {
        tokio::select! {
            _ = after => {}
            _ = req.stop.cancelled() => {}
        }
    }
    let mut backoff = Backoff::worker_restart();
    loop {
        if req.stop.is_cancelled() {
            if let Some(old) = pending.take() {
                retire(ctx.clone(), family.clone(), old, None).await;
            }
            return None;
        }
        let started = Instant::now();
        let outcome = run_once(&ctx, &mut spec, &mut req, &mut pending).await;
        ctx.worker_metrics.remove(&family);
        ctx.metrics.processes.worker_gone(&family);
        ctx.metrics
            .up
            .get_or_create(&SupervisorMetrics::family(&family))
            .set(0);
        ctx.metrics
            .worker_paused
            .remove(&SupervisorMetrics::family(&family));
        let (cause, detail) = match outcome {
            Outcome::Restart { cause, detail } => (cause, detail),
            Outcome::HandedOver(adopted) => return Some(adopted),
            Outcome::Stopped => {
                if let Some(old) = pending.take() {
                    retire(ctx.clone(), family.clone(), old, None).await;
                }
                return None;
            }
        };
        if started.elapsed() >= ctx.policy.healthy_reset {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        ctx.metrics.restart(&family, cause);
        let message = format!(
            "worker {family} {detail}; restarting in {} ms (restart #{} in a row)",
            delay.as_millis(),
            backoff.failures()
        );
        tracing::warn!(family = %family, cause, "{message}");
        (ctx.on_restart)(&family, &message);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            // The loop's top retires a waiting worker of the previous binary.
            _ = req.stop.cancelled() => {}
        }
    }
}

/// Spawns a worker with `fds` inherited and the channel for listeners added later
/// ([`dk_worker::fdpass`]); our end of the channel.
fn spawn_worker(
    ctx: &ProcContext,
    family: &str,
    fds: &[RawFd],
) -> std::io::Result<(Child, std::os::unix::net::UnixDatagram)> {
    use std::os::fd::AsRawFd as _;
    let (ours, theirs) = std::os::unix::net::UnixDatagram::pair()?;
    let mut cmd = Command::new(&ctx.exe);
    cmd.arg("worker")
        .arg(family)
        .arg("--run-dir")
        .arg(&ctx.run_dir)
        .args(&ctx.worker_args)
        .envs(ctx.worker_env.iter().map(|(k, v)| (k, v)))
        .env(
            dk_worker::fdpass::ENV_FD_CHANNEL,
            theirs.as_raw_fd().to_string(),
        )
        .env(
            dk_worker::worker::ENV_START_PAUSED,
            if *ctx.paused.borrow() { "1" } else { "0" },
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut inherited = fds.to_vec();
    inherited.push(theirs.as_raw_fd());
    crate::jail::prepare(&mut cmd, inherited);
    let child = cmd.spawn()?;
    drop(theirs);
    Ok((child, ours))
}

fn describe_exit(status: ExitStatus) -> (&'static str, String) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(sig)) => ("signal", format!("was killed by signal {sig}")),
        (Some(0), _) => ("exit_ok", "exited with status 0 unexpectedly".to_string()),
        (Some(code), _) => ("exit_error", format!("exited with status {code}")),
        (None, None) => ("exit_error", "exited".to_string()),
    }
}

/// Forwards a worker's stderr lines to our log, so a worker has no log file of its own, until
/// the pipe closes or `stop` (then the pipe is returned, for a handover).
fn forward_stderr(
    stderr: pipe::Receiver,
    family: &str,
    stop: CancellationToken,
) -> JoinHandle<Option<pipe::Receiver>> {
    let family = family.to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        loop {
            let line = tokio::select! {
                line = lines.next_line() => line,
                _ = stop.cancelled() => return Some(lines.into_inner().into_inner()),
            };
            let Ok(Some(line)) = line else {
                return None;
            };
            let line = line.trim_start();
            let (level, text) = line.split_once(' ').unwrap_or(("INFO", line));
            let text = text.trim_start();
            match level {
                "ERROR" => tracing::error!(target: "worker", family = %family, "{text}"),
                "WARN" => tracing::warn!(target: "worker", family = %family, "{text}"),
                "DEBUG" | "TRACE" => tracing::debug!(target: "worker", family = %family, "{text}"),
                "INFO" => tracing::info!(target: "worker", family = %family, "{text}"),
                _ => tracing::info!(target: "worker", family = %family, "{line}"),
            }
        }
    })
}

async fn run_once(
    ctx: &ProcContext,
    spec: &mut Spec,
    req: &mut Requests,
    pending: &mut Option<Pending>,
) -> Outcome {
    let family = spec.config.family.clone();
    let family = family.as_str();
    let (mut child, channel) = match spawn_worker(ctx, family, &spec.fds) {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Restart {
                cause: "spawn_failed",
                detail: format!("could not be started from {}: {e}", ctx.exe.display()),
            };
        }
    };
    let Some(pid) = child.id() else {
        let status = child.wait().await.ok();
        let (cause, detail) = status
            .map(describe_exit)
            .unwrap_or(("exit_error", "exited".into()));
        return Outcome::Restart { cause, detail };
    };
    let stop_forwarding = CancellationToken::new();
    let forwarder = child
        .stderr
        .take()
        .and_then(|e| e.into_owned_fd().ok())
        .and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok())
        .map(|rx| forward_stderr(rx, family, stop_forwarding.clone()));
    let registration = ctx.registry.register(pid, family, spec.config.clone());
    let worker = Worker {
        family,
        child: &mut child,
        channel: &channel,
    };
    let outcome = supervise_child(ctx, worker, registration, req, pending, spec).await;
    // The worker is marked down: requests queued before that get their answer now instead of
    // waiting for (and being run by) the next worker.
    while let Ok((_, reply)) = req.http.try_recv() {
        let _ = reply.send(Err(format!(
            "the {family} worker stopped before answering; retry"
        )));
    }
    ctx.registry.unregister(pid);
    if let Outcome::HandedOver(mut adopted) = outcome {
        stop_forwarding.cancel();
        if let Some(f) = forwarder {
            adopted.stderr = f
                .await
                .ok()
                .flatten()
                .and_then(|rx| rx.into_nonblocking_fd().ok());
        }
        // Neither killed on drop nor reaped here: the process goes on under the next binary
        // (same pid, so still our child), which reaps it.
        std::mem::forget(child);
        return Outcome::HandedOver(adopted);
    }
    outcome
}

/// Asks a running worker to stop: flush, then exit; SIGKILL after the grace period.
async fn stop_gracefully(
    policy: &ProcPolicy,
    family: &str,
    control: &ControlClient,
    child: &mut Child,
) -> Outcome {
    let grace = policy.stop_grace;
    let _ = control
        .shutdown(
            context_with_timeout(Duration::from_secs(1)),
            grace.as_millis() as u64,
        )
        .await;
    if tokio::time::timeout(grace + Duration::from_secs(1), child.wait())
        .await
        .is_err()
    {
        tracing::warn!(family, "Worker did not stop in time; killing it.");
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    Outcome::Stopped
}

/// Kills a worker that broke the RPC protocol (its connection is already closed).
async fn cut_off(child: &mut Child, reason: String) -> Outcome {
    let _ = child.start_kill();
    let _ = child.wait().await;
    Outcome::Restart {
        cause: "protocol_violation",
        detail: format!("broke the RPC protocol ({reason}) and was killed"),
    }
}

/// One spawned worker process.
struct Worker<'a> {
    family: &'a str,
    child: &'a mut Child,
    /// Our end of its listener channel.
    channel: &'a std::os::unix::net::UnixDatagram,
}

/// Sends the new listeners, then asks the worker to reconfigure.
async fn reconfigure_worker(
    control: &ControlClient,
    channel: &std::os::unix::net::UnixDatagram,
    r: &Reconfig,
) -> Result<(), String> {
    for (address, fds) in &r.new_listeners {
        dk_worker::fdpass::send(channel, address, fds)
            .map_err(|e| format!("cannot pass the socket for {address} to the worker: {e}"))?;
    }
    control
        .reconfigure(
            context_with_timeout(RECONFIGURE_WAIT - Duration::from_secs(1)),
            r.config.clone(),
        )
        .await
        .map_err(|e| format!("the worker did not answer: {e}"))?
}

async fn supervise_child(
    ctx: &ProcContext,
    worker: Worker<'_>,
    registration: crate::registry::Registration,
    req: &mut Requests,
    pending: &mut Option<Pending>,
    spec: &mut Spec,
) -> Outcome {
    let Worker {
        family,
        child,
        channel,
    } = worker;
    let (stop, handover) = (req.stop.clone(), req.handover.clone());
    let policy = &ctx.policy;
    let crate::registry::Registration {
        hello,
        control,
        violation,
    } = registration;
    // Fused: once resolved (or dropped) it stays pending instead of panicking when polled again.
    let mut violation = futures::FutureExt::fuse(violation);
    // Starting: the worker must say hello and connect its control socket in time.
    let ready = async {
        hello.await.ok()?;
        control.await.ok()
    };
    let control: ControlClient = tokio::select! {
        biased;
        Ok(reason) = &mut violation => return cut_off(child, reason).await,
        r = tokio::time::timeout(policy.start_timeout, ready) => match r {
            Ok(Some(control)) => control,
            _ => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Outcome::Restart {
                    cause: "start_timeout",
                    detail: format!("did not connect within {:?}", policy.start_timeout),
                };
            }
        },
        status = child.wait() => {
            if let Some(Ok(reason)) = futures::FutureExt::now_or_never(&mut violation) {
                return cut_off(child, reason).await;
            }
            let (cause, detail) = status.map(describe_exit).unwrap_or(("exit_error", "exited".into()));
            return Outcome::Restart { cause, detail: format!("{detail} during start-up") };
        }
        _ = stop.cancelled() => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Outcome::Stopped;
        }
    };
    let label = SupervisorMetrics::family(family);
    ctx.metrics.up.get_or_create(&label).set(1);
    let pid = child.id().unwrap_or(0);
    ctx.metrics.processes.worker_seen(family, pid);
    tracing::info!(family, pid, "Worker is up.");
    // Down again whenever this returns (the worker exits, is stopped or handed over).
    struct Down(Arc<std::sync::Mutex<bool>>);
    impl Drop for Down {
        fn drop(&mut self) {
            if let Ok(mut up) = self.0.lock() {
                *up = false;
            }
        }
    }
    if let Ok(mut up) = req.up.lock() {
        *up = true;
    }
    let _down = Down(req.up.clone());
    ctx.worker_metrics.attach(
        family,
        metrics_source(ctx, family, &control, policy.health_timeout),
    );
    let mut paused = ctx.paused.clone();
    let now = *paused.borrow_and_update();
    set_paused(family, &control, now).await;
    if let Some(old) = pending.take() {
        // The replacement is up: the previous binary's worker flushes and goes.
        tokio::spawn(retire(ctx.clone(), family.to_string(), old, Some(pid)));
    }

    // On the shared grid: the health checks of every worker and the other periodic work of
    // an idle supervisor wake it together.
    let mut ticker = tokio::time::interval_at(
        dk_proto::clock::grid_start(policy.health_interval).into(),
        policy.health_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut misses = 0u32;
    // The `[dataway.ntp]` offset the worker stamps points with (it starts at 0).
    let mut clock_offset = 0i64;
    loop {
        tokio::select! {
            biased;
            Ok(reason) = &mut violation => return cut_off(child, reason).await,
            status = child.wait() => {
                if let Some(Ok(reason)) = futures::FutureExt::now_or_never(&mut violation) {
                    return cut_off(child, reason).await;
                }
                let (cause, detail) = status.map(describe_exit).unwrap_or(("exit_error", "exited".into()));
                return Outcome::Restart { cause, detail };
            }
            _ = ticker.tick() => {
                let offset = dk_proto::clock::offset_ns();
                if offset != clock_offset
                    && control
                        .set_clock_offset(context_with_timeout(policy.health_timeout), offset)
                        .await
                        .is_ok()
                {
                    clock_offset = offset;
                }
                if let (Some(limit), Some(pid)) = (policy.memory_limit, child.id())
                    && let Some(rss) = dk_worker::worker::status_bytes(pid, "VmRSS")
                    && rss > limit
                {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Outcome::Restart {
                        cause: "memory_limit",
                        detail: format!(
                            "used {} MiB of memory, over [resource_limit] mem_max_mb = {}, and was killed",
                            rss >> 20,
                            limit >> 20
                        ),
                    };
                }
                match control.health(context_with_timeout(policy.health_timeout)).await {
                    Ok(h) => {
                        misses = 0;
                        ctx.metrics.rss.get_or_create(&label).set(i64::try_from(h.rss_bytes).unwrap_or(i64::MAX));
                        ctx.metrics.processes.worker_seen(family, h.pid);
                        ctx.metrics.worker_paused.get_or_create(&label).set(i64::from(h.paused));
                        ctx.metrics.worker_dropped.get_or_create(&label).set(i64::try_from(h.points_dropped).unwrap_or(i64::MAX));
                    }
                    Err(e) => {
                        misses += 1;
                        tracing::warn!(family, misses, error = %e, "Worker missed a health check.");
                        if misses >= policy.health_misses {
                            let _ = child.start_kill();
                            let _ = child.wait().await;
                            return Outcome::Restart {
                                cause: "health_timeout",
                                detail: format!("missed {misses} health checks and was killed"),
                            };
                        }
                    }
                }
            }
            _ = handover.cancelled() => {
                let deadline = HANDOVER_DEADLINE.as_millis() as u64;
                match control
                    .prepare_handover(context_with_timeout(HANDOVER_DEADLINE + Duration::from_secs(1)), deadline)
                    .await
                {
                    Ok(Ok(())) => {
                        return Outcome::HandedOver(Adopted { family: family.to_string(), pid, stderr: None });
                    }
                    Ok(Err(why)) => tracing::warn!(family, %why, "Worker cannot outlive the binary swap; stopping it instead."),
                    Err(e) => tracing::warn!(family, error = %e, "Worker did not answer the handover; stopping it instead."),
                }
                return stop_gracefully(policy, family, &control, child).await;
            }
            Some((call, reply)) = req.http.recv() => {
                let control = control.clone();
                let family = family.to_string();
                tokio::spawn(async move {
                    let answer = control
                        .http(context_with_timeout(HTTP_CALL_TIMEOUT), call)
                        .await
                        .map_err(|e| format!("the {family} worker did not answer ({e}); it may be restarting, retry"));
                    let _ = reply.send(answer);
                });
            }
            Some(r) = req.reconfig.recv() => {
                let answer = reconfigure_worker(&control, channel, &r).await;
                match &answer {
                    Ok(()) => {
                        spec.fds = r.config.listeners.iter().map(|l| l.fd).collect();
                        spec.config = r.config;
                        tracing::info!(family, "Worker reconfigured in place.");
                    }
                    Err(why) => tracing::warn!(family, %why, "Worker not reconfigured in place."),
                }
                let _ = r.reply.send(answer);
            }
            Ok(()) = paused.changed() => {
                let now = *paused.borrow_and_update();
                set_paused(family, &control, now).await;
            }
            _ = stop.cancelled() => return stop_gracefully(policy, family, &control, child).await,
        }
    }
}

/// Asks `control`'s worker for its metrics text when `/metrics` is scraped, within `timeout`;
/// a text over [`MAX_WORKER_METRICS_BYTES`] is refused and counted.
fn metrics_source(
    ctx: &ProcContext,
    family: &str,
    control: &ControlClient,
    timeout: Duration,
) -> dk_api::MetricsSource {
    let control = control.clone();
    let refused = ctx
        .metrics
        .metrics_refused
        .get_or_create(&SupervisorMetrics::family(family))
        .clone();
    let family = family.to_string();
    Arc::new(move || {
        let (control, refused, family) = (control.clone(), refused.clone(), family.clone());
        Box::pin(async move {
            match control.metrics(context_with_timeout(timeout)).await {
                Ok(text) if text.len() <= MAX_WORKER_METRICS_BYTES => Ok(text),
                Ok(text) => {
                    refused.inc();
                    Err(format!(
                        "the {family} worker reported {} bytes of metrics, over the {MAX_WORKER_METRICS_BYTES} served",
                        text.len()
                    ))
                }
                Err(e) => Err(format!(
                    "the {family} worker did not report its metrics: {e}"
                )),
            }
        })
    })
}

/// Tells a worker whether election-aware inputs are paused; a worker that does not answer is
/// left to the health checks.
async fn set_paused(family: &str, control: &ControlClient, paused: bool) {
    if let Err(e) = control
        .set_paused(context_with_timeout(Duration::from_secs(2)), paused)
        .await
    {
        tracing::warn!(family, paused, error = %e, "Worker did not take the election pause state; retried when it restarts.");
    }
}
