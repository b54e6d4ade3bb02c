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
//! A worker's metrics text is served only up to [`MAX_WORKER_METRICS_BYTES`]; a larger report
//! is refused and counted (`datakit_worker_metrics_refused_total`) and the last good one stays.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dk_proto::rpc::{ControlClient, MAX_WORKER_METRICS_BYTES, WorkerConfig};
use dk_worker::rpc::context_with_timeout;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
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

impl Default for ProcPolicy {
    fn default() -> Self {
        ProcPolicy {
            health_interval: Duration::from_secs(1),
            health_timeout: Duration::from_secs(1),
            health_misses: 3,
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
    /// Where each worker's own metrics go (served on `/metrics`).
    pub worker_metrics: Arc<dk_api::WorkerMetrics>,
}

/// A running family supervisor.
pub struct FamilyHandle {
    stop: CancellationToken,
    join: JoinHandle<()>,
}

impl FamilyHandle {
    /// Stops the worker gracefully (flush, then exit; SIGKILL after the grace period) and waits.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.join.await;
    }
}

/// Starts supervising one family's worker.
pub fn start(ctx: ProcContext, config: WorkerConfig, fds: Vec<RawFd>) -> FamilyHandle {
    let stop = CancellationToken::new();
    let join = tokio::spawn(supervise(ctx, config, fds, stop.clone()));
    FamilyHandle { stop, join }
}

enum Outcome {
    Stopped,
    Restart { cause: &'static str, detail: String },
}

async fn supervise(
    ctx: ProcContext,
    config: WorkerConfig,
    fds: Vec<RawFd>,
    stop: CancellationToken,
) {
    let family = config.family.clone();
    let mut backoff = Backoff::worker_restart();
    loop {
        let started = Instant::now();
        let outcome = run_once(&ctx, &config, &fds, &stop).await;
        ctx.worker_metrics.remove(&family);
        ctx.metrics
            .up
            .get_or_create(&SupervisorMetrics::family(&family))
            .set(0);
        let Outcome::Restart { cause, detail } = outcome else {
            return;
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
            _ = stop.cancelled() => return,
        }
    }
}

fn spawn_worker(ctx: &ProcContext, family: &str, fds: &[RawFd]) -> std::io::Result<Child> {
    let mut cmd = Command::new(&ctx.exe);
    cmd.arg("worker")
        .arg(family)
        .arg("--run-dir")
        .arg(&ctx.run_dir)
        .args(&ctx.worker_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    crate::jail::prepare(&mut cmd, fds.to_vec());
    cmd.spawn()
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

/// Forwards a worker's stderr lines to our log, so a worker has no log file of its own.
fn forward_stderr(child: &mut Child, family: &str) {
    let Some(stderr) = child.stderr.take() else {
        return;
    };
    let family = family.to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
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
    });
}

async fn run_once(
    ctx: &ProcContext,
    config: &WorkerConfig,
    fds: &[RawFd],
    stop: &CancellationToken,
) -> Outcome {
    let family = config.family.as_str();
    let mut child = match spawn_worker(ctx, family, fds) {
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
    forward_stderr(&mut child, family);
    let registration = ctx.registry.register(pid, family, config.clone());
    let outcome = supervise_child(ctx, family, &mut child, registration, stop).await;
    ctx.registry.unregister(pid);
    outcome
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

async fn supervise_child(
    ctx: &ProcContext,
    family: &str,
    child: &mut Child,
    registration: crate::registry::Registration,
    stop: &CancellationToken,
) -> Outcome {
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
    tracing::info!(family, pid = child.id().unwrap_or(0), "Worker is up.");

    let mut ticker = tokio::time::interval(policy.health_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut misses = 0u32;
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
                        if h.metrics.len() <= MAX_WORKER_METRICS_BYTES {
                            ctx.worker_metrics.set(family, h.metrics);
                        } else {
                            ctx.metrics.metrics_refused.get_or_create(&label).inc();
                        }
                        ctx.metrics.rss.get_or_create(&label).set(i64::try_from(h.rss_bytes).unwrap_or(i64::MAX));
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
            _ = stop.cancelled() => {
                let grace = policy.stop_grace;
                let _ = control
                    .shutdown(context_with_timeout(Duration::from_secs(1)), grace.as_millis() as u64)
                    .await;
                if tokio::time::timeout(grace + Duration::from_secs(1), child.wait()).await.is_err() {
                    tracing::warn!(family, "Worker did not stop in time; killing it.");
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
                return Outcome::Stopped;
            }
        }
    }
}
