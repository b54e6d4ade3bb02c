//! What the API needs from the supervisor: the feeder, agent identity, configuration and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dk_proto::{Category, FeedOpts, Point};
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;

use crate::lasterr::LastErrors;
use crate::metrics::ApiMetrics;

/// Where `POST /v1/write/:category` hands its points: the supervisor's delivery pipeline.
pub trait Feeder: Send + Sync + 'static {
    /// Hands normalised points to delivery; resolves once they are accepted.
    ///
    /// `input` is the feed name (`v1-write.<input>`). The future may be dropped when the
    /// request times out, so an implementation must not lose accepted points on drop.
    fn feed(
        &self,
        category: Category,
        input: String,
        opts: FeedOpts,
        points: Vec<Point>,
    ) -> BoxFuture<'_, Result<(), FeedError>>;
}

/// Why delivery did not accept a feed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The queue is full or over budget right now; the client should retry later.
    #[error("delivery queue busy: {0}; retry later")]
    Busy(String),
    /// Delivery is shutting down and accepts nothing more.
    #[error("delivery is closed (the agent is shutting down)")]
    Closed,
    /// The points can never be stored as sent (larger than the queue can hold); retrying
    /// the same body will not help.
    #[error("delivery refused the points for good: {0}")]
    Rejected(String),
}

/// The agent's identity, shown by `/v1/ping`, the 404 page and the `X-DataKit` header.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    /// Datakit-compatible version (`1.84.1`).
    pub version: String,
    /// Git commit of the build.
    pub commit: String,
    /// Hostname reported to clients.
    pub hostname: String,
    /// `linux/amd64` style OS and architecture.
    pub os_arch: String,
    /// When the agent started (for the uptime).
    pub started: Instant,
}

/// `[http_api]` settings the router uses.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Paths served to non-loopback clients besides `/v1/ping` and `/v1/ntp`; empty means
    /// every category write URL.
    pub public_apis: Vec<String>,
    /// Answer unknown routes with a plain 404 instead of the welcome page.
    pub disable_404page: bool,
    /// Origins that get CORS headers; empty allows every origin.
    pub allowed_cors_origins: Vec<String>,
    /// Per-request handler timeout (408 after it); zero disables it.
    pub timeout: Duration,
    /// Requests per second per client IP and path; zero or less disables the limit.
    pub request_rate_limit: f64,
    /// Cap on the (decompressed) body of a write request (`[http_api] max_body_size_mb`).
    pub max_body_bytes: usize,
    /// Memory budget shared by every write request being read, inflated and decoded at once
    /// (`[http_api] max_inflight_body_mb`); 503 with `Retry-After` past it.
    pub max_inflight_bytes: usize,
    /// Cap on open connections; past it new connections are closed at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (on a new or an idle kept-alive
    /// connection) before it is cut off.
    pub header_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            public_apis: Vec::new(),
            disable_404page: false,
            allowed_cors_origins: Vec::new(),
            timeout: Duration::from_secs(30),
            request_rate_limit: 100.0,
            max_body_bytes: 64 * 1024 * 1024,
            max_inflight_bytes: 128 * 1024 * 1024,
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything the router shares between requests. Register [`LastErrors`] and
/// [`ApiMetrics`] into the registry before wrapping it in an `Arc`.
#[derive(Clone)]
pub struct ApiState {
    /// Delivery.
    pub feeder: Arc<dyn Feeder>,
    /// Agent identity.
    pub info: Arc<AgentInfo>,
    /// Settings.
    pub config: Arc<ApiConfig>,
    /// The shared last-error store.
    pub last_errors: Arc<LastErrors>,
    /// The API's own metrics.
    pub metrics: Arc<ApiMetrics>,
    /// The agent's whole registry, served by `/metrics`.
    pub registry: Arc<Registry>,
    /// Metrics reported by worker processes, appended to `/metrics`.
    pub worker_metrics: Arc<WorkerMetrics>,
    /// Routes of input families forwarded to their workers (none when `None`).
    pub routes: Option<Arc<dyn crate::RouteForward>>,
    /// This node's election state for `GET /v1/election/info` (`None`: shown as disabled).
    pub election: Option<ElectionInfo>,
}

/// Produces the election state shown on `GET /v1/election/info`.
pub type ElectionInfo = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Asks one running worker for its metrics text (OpenMetrics, without `# EOF`); `Err` says
/// why not, and the last good text stays served. Bounded in time by the implementation.
pub type MetricsSource = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// Brings metrics up to date before a scrape (the supervisor's `/proc` sample).
pub type ScrapeHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The latest metrics text of each worker, by family, fetched when `/metrics` is scraped (at
/// most once per [`WorkerMetrics::REFRESH_EVERY`]) rather than at every health check, so an
/// idle agent renders no text nobody reads; the [`ScrapeHook`]s run at the same time.
#[derive(Default)]
pub struct WorkerMetrics {
    by_family: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    sources: std::sync::Mutex<std::collections::BTreeMap<String, MetricsSource>>,
    hooks: std::sync::Mutex<Vec<ScrapeHook>>,
    /// When the texts were last fetched; held across a fetch, so scrapes arriving meanwhile
    /// wait for it and serve its result instead of asking the workers again.
    fetched: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let families: Vec<String> = self
            .sources
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("WorkerMetrics")
            .field("sources", &families)
            .finish_non_exhaustive()
    }
}

impl WorkerMetrics {
    /// Scrapes within this long of a fetch serve its texts.
    pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

    /// Replaces a family's metrics text.
    pub fn set(&self, family: &str, text: String) {
        if let Ok(mut m) = self.by_family.lock() {
            m.insert(family.to_string(), text);
        }
    }

    /// Where a family's running worker is asked for its text from now on.
    pub fn attach(&self, family: &str, source: MetricsSource) {
        if let Ok(mut s) = self.sources.lock() {
            s.insert(family.to_string(), source);
        }
    }

    /// Runs `hook` with every refresh.
    pub fn before_scrape(&self, hook: ScrapeHook) {
        if let Ok(mut h) = self.hooks.lock() {
            h.push(hook);
        }
    }

    /// Forgets a family (its worker is gone; a new one reports afresh).
    pub fn remove(&self, family: &str) {
        if let Ok(mut s) = self.sources.lock() {
            s.remove(family);
        }
        if let Ok(mut m) = self.by_family.lock() {
            m.remove(family);
        }
    }

    /// Asks every attached worker for its text and runs the hooks, all at once (unless the
    /// last refresh is younger than [`Self::REFRESH_EVERY`]); a worker that does not answer
    /// keeps its last text.
    pub async fn refresh(&self) {
        let mut fetched = self.fetched.lock().await;
        if fetched.is_some_and(|t| t.elapsed() < Self::REFRESH_EVERY) {
            return;
        }
        let sources: Vec<(String, MetricsSource)> = match self.sources.lock() {
            Ok(s) => s.iter().map(|(f, s)| (f.clone(), Arc::clone(s))).collect(),
            Err(_) => return,
        };
        let hooks: Vec<ScrapeHook> = self.hooks.lock().map(|h| h.clone()).unwrap_or_default();
        let (answers, _) = futures::future::join(
            futures::future::join_all(
                sources
                    .iter()
                    .map(|(family, source)| async move { (family, source, source().await) }),
            ),
            futures::future::join_all(hooks.iter().map(|hook| hook())),
        )
        .await;
        for (family, source, answer) in answers {
            let Ok(text) = answer else { continue };
            // Only for the worker that was asked: one that exited meanwhile is forgotten.
            let current = self
                .sources
                .lock()
                .is_ok_and(|s| s.get(family).is_some_and(|now| Arc::ptr_eq(now, source)));
            if current {
                self.set(family, text);
            }
        }
        *fetched = Some(Instant::now());
    }

    /// Appends every family's text to `out`. A metric several workers report (the input
    /// kit's uniform metrics) comes out once: its `# HELP`/`# TYPE`/`# UNIT` lines from the
    /// first worker, then the samples of every worker (their `input` label tells them apart),
    /// so the exposition stays valid.
    pub fn render(&self, out: &mut String) {
        let Ok(m) = self.by_family.lock() else {
            return;
        };
        let mut order: Vec<&str> = Vec::new();
        let mut merged: std::collections::HashMap<&str, (String, String)> =
            std::collections::HashMap::new();
        for text in m.values() {
            let mut current = "";
            for line in text.lines().filter(|l| !l.is_empty()) {
                if let Some(rest) = line.strip_prefix("# ") {
                    let mut words = rest.splitn(3, ' ');
                    let (kind, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                    current = name;
                    let (meta, _) = merged.entry(name).or_insert_with(|| {
                        order.push(name);
                        Default::default()
                    });
                    let head = format!("# {kind} {name} ");
                    if !meta.lines().any(|l| l.starts_with(&head)) {
                        meta.push_str(line);
                        meta.push('\n');
                    }
                    continue;
                }
                let (_, samples) = merged.entry(current).or_insert_with(|| {
                    order.push(current);
                    Default::default()
                });
                samples.push_str(line);
                samples.push('\n');
            }
        }
        for name in order {
            if let Some((meta, samples)) = merged.get(name) {
                out.push_str(meta);
                out.push_str(samples);
            }
        }
    }
}

#[cfg(test)]
mod worker_metrics_tests {
    use super::{MetricsSource, WorkerMetrics};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A source answering `text` followed by its call count, or failing once `fail` is set.
    fn counting(
        text: &'static str,
        calls: Arc<AtomicU64>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    ) -> MetricsSource {
        Arc::new(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let fail = fail.load(Ordering::SeqCst);
            Box::pin(async move {
                if fail {
                    Err("no answer".to_string())
                } else {
                    Ok(format!("{text} {n}\n"))
                }
            })
        })
    }

    fn rendered(w: &WorkerMetrics) -> String {
        let mut out = String::new();
        w.render(&mut out);
        out
    }

    #[tokio::test]
    async fn workers_are_asked_only_when_scraped_and_once_for_scrapes_within_the_gap() {
        let w = Arc::new(WorkerMetrics::default());
        let calls = Arc::new(AtomicU64::new(0));
        let fail = Arc::default();
        w.attach(
            "host",
            counting("datakit_input_points_total", calls.clone(), fail),
        );
        let hooks = Arc::new(AtomicU64::new(0));
        w.before_scrape({
            let hooks = hooks.clone();
            Arc::new(move || {
                hooks.fetch_add(1, Ordering::SeqCst);
                Box::pin(async {})
            })
        });
        // Attaching asks nothing.
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(rendered(&w), "");
        // Three scrapes at once, then one more within the gap: one fetch, one hook run.
        let (a, b, c) = (w.clone(), w.clone(), w.clone());
        tokio::join!(a.refresh(), b.refresh(), c.refresh());
        w.refresh().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(hooks.load(Ordering::SeqCst), 1);
        assert_eq!(rendered(&w), "datakit_input_points_total 1\n");
    }

    #[tokio::test]
    async fn a_worker_that_does_not_answer_keeps_its_last_text_and_a_gone_one_is_forgotten() {
        let w = WorkerMetrics::default();
        let calls = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        w.attach(
            "host",
            counting("datakit_input_points_total", calls.clone(), fail.clone()),
        );
        w.refresh().await;
        fail.store(true, Ordering::SeqCst);
        // The gap has passed (time must pass for a second fetch; nothing is awaited).
        tokio::time::sleep(WorkerMetrics::REFRESH_EVERY + std::time::Duration::from_millis(50))
            .await;
        w.refresh().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "asked again after the gap");
        assert_eq!(rendered(&w), "datakit_input_points_total 1\n");
        w.remove("host");
        assert_eq!(rendered(&w), "");
    }

    /// A source that answers once `go` is notified, after its worker may have gone.
    #[tokio::test]
    async fn an_answer_from_a_worker_that_exited_meanwhile_is_not_served() {
        let w = Arc::new(WorkerMetrics::default());
        let go = Arc::new(tokio::sync::Notify::new());
        let asked = Arc::new(tokio::sync::Notify::new());
        w.attach("host", {
            let (go, asked) = (go.clone(), asked.clone());
            Arc::new(move || {
                let (go, asked) = (go.clone(), asked.clone());
                Box::pin(async move {
                    asked.notify_one();
                    go.notified().await;
                    Ok("late 1\n".to_string())
                })
            })
        });
        let scrape = tokio::spawn({
            let w = w.clone();
            async move { w.refresh().await }
        });
        asked.notified().await;
        w.remove("host");
        go.notify_one();
        scrape.await.unwrap();
        assert_eq!(rendered(&w), "");
    }

    #[test]
    fn a_metric_two_workers_report_is_declared_once_with_both_samples() {
        let w = WorkerMetrics::default();
        w.set(
            "graphite",
            "# HELP datakit_input_connections Accepted.\n# TYPE datakit_input_connections counter\ndatakit_input_connections_total{input=\"graphite\"} 2\n# HELP datakit_input_graphite_lines Lines.\n# TYPE datakit_input_graphite_lines counter\ndatakit_input_graphite_lines_total 7\n".into(),
        );
        w.set(
            "logging",
            "# HELP datakit_input_connections Accepted.\n# TYPE datakit_input_connections counter\ndatakit_input_connections_total{input=\"logging\"} 3\n".into(),
        );
        let mut out = String::new();
        w.render(&mut out);
        assert_eq!(
            out.matches("# TYPE datakit_input_connections counter")
                .count(),
            1,
            "{out}"
        );
        assert_eq!(out.matches("# HELP datakit_input_connections ").count(), 1);
        let lines: Vec<&str> = out.lines().collect();
        let at = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap();
        // Both samples follow their one declaration, before the next metric.
        let decl = at("# TYPE datakit_input_connections");
        assert!(at("input=\"graphite\"} 2") > decl);
        assert!(at("input=\"logging\"} 3") > decl);
        assert!(at("input=\"logging\"} 3") < at("# HELP datakit_input_graphite_lines"));
        assert!(out.contains("datakit_input_graphite_lines_total 7\n"));
    }
}
