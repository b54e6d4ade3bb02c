//! Leader election (`[election]`): one agent of a namespace collects the election-aware inputs.
//!
//! # Design
//!
//! One task runs a backend: Datakit's Dataway protocol ([`dataway`], the default) or etcd
//! leases and campaigns ([`etcd`]). The backend reports what it learns to a [`Reporter`],
//! which owns the state shown on `/v1/election/info`, the metrics
//! (`datakit_election_status{elected_id,id,namespace,status}` = the unix time this node was
//! elected, or 0; `datakit_election_pause_total`, `datakit_election_resume_total`), the log
//! lines and the `paused` watch that procman forwards to every worker
//! ([`dk_proto::rpc::Control::set_paused`]). Workers pause only their election-aware inputs.
//!
//! States: `disabled` (election off: nothing is paused), `defeat` (another node leads, or none
//! yet: paused), `success` (this node leads: collecting), `banned` (`node_whitelist` does not
//! list this node: paused, no election). Unlike Datakit, a leader that cannot renew its lead
//! for longer than its lease goes back to `defeat` and stops collecting, and a banned node
//! does not collect election inputs either.

pub mod dataway;
#[cfg(feature = "etcd")]
pub mod etcd;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Datakit's election statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Election is off.
    Disabled,
    /// This node leads.
    Success,
    /// Another node leads (or none yet).
    Defeat,
    /// `node_whitelist` does not list this node.
    Banned,
}

impl Status {
    /// The status as Datakit writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Disabled => "disabled",
            Status::Success => "success",
            Status::Defeat => "defeat",
            Status::Banned => "banned",
        }
    }
}

/// What `/v1/election/info` shows.
#[derive(Clone, Debug, Serialize)]
pub struct ElectionState {
    /// `dataway`, `etcd`, or empty when election is off.
    pub backend: String,
    /// `[election] namespace`.
    pub namespace: String,
    /// This node's candidate id (the host name).
    pub id: String,
    /// Datakit's status.
    pub status: Status,
    /// The leader's id as last seen (empty when unknown).
    pub leader: String,
    /// Unix seconds when this node was last elected (0 when not leading).
    pub elected_at: i64,
    /// Whether election-aware inputs are paused on this node.
    pub paused: bool,
    /// Unix milliseconds of the last successful exchange with the backend (0: none yet).
    pub last_contact_ms: i64,
    /// The last error talking to the backend (empty when the last exchange succeeded).
    pub last_error: String,
}

/// The election metrics, registered once.
#[derive(Clone)]
struct Metrics {
    status: Family<[(&'static str, String); 4], Gauge>,
    pause: Family<[(&'static str, String); 2], Counter>,
    resume: Family<[(&'static str, String); 2], Counter>,
}

impl Metrics {
    fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            status: Family::default(),
            pause: Family::default(),
            resume: Family::default(),
        };
        registry.register(
            "datakit_election_status",
            "Election status of this node: the unix time it was elected, or 0",
            m.status.clone(),
        );
        registry.register(
            "datakit_election_pause",
            "Times election-aware inputs were paused",
            m.pause.clone(),
        );
        registry.register(
            "datakit_election_resume",
            "Times election-aware inputs were resumed",
            m.resume.clone(),
        );
        m
    }
}

/// Called with each new backend error (rate-limited), for `/v1/lasterror`.
pub type ErrorHook = dyn Fn(&str) + Send + Sync;

/// How often the same kind of backend error is logged at most.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

struct Inner {
    state: Mutex<ElectionState>,
    paused: watch::Sender<bool>,
    metrics: Metrics,
    /// The label set of the current `datakit_election_status` series.
    series: Mutex<Option<[(&'static str, String); 4]>>,
    on_error: Arc<ErrorHook>,
    /// The last logged error and when.
    logged: Mutex<Option<(String, Instant)>>,
}

/// What backends report to; cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reporter {
    fn new(initial: ElectionState, metrics: Metrics, on_error: Arc<ErrorHook>) -> Self {
        let (paused, _) = watch::channel(initial.paused);
        let r = Reporter {
            inner: Arc::new(Inner {
                state: Mutex::new(initial),
                paused,
                metrics,
                series: Mutex::new(None),
                on_error,
                logged: Mutex::new(None),
            }),
        };
        r.publish();
        r
    }

    /// The current state.
    pub fn state(&self) -> ElectionState {
        lock(&self.inner.state).clone()
    }

    /// Whether election-aware inputs must be paused (follows every change).
    pub fn paused(&self) -> watch::Receiver<bool> {
        self.inner.paused.subscribe()
    }

    /// Refreshes the status series and the paused watch from the state.
    fn publish(&self) {
        let st = self.state();
        let labels = [
            ("elected_id", st.leader.clone()),
            ("id", st.id.clone()),
            ("namespace", st.namespace.clone()),
            ("status", st.status.as_str().to_string()),
        ];
        let mut series = lock(&self.inner.series);
        if let Some(old) = series.take()
            && old != labels
        {
            self.inner.metrics.status.remove(&old);
        }
        self.inner
            .metrics
            .status
            .get_or_create(&labels)
            .set(st.elected_at);
        *series = Some(labels);
        drop(series);
        self.inner.paused.send_if_modified(|p| {
            let changed = *p != st.paused;
            *p = st.paused;
            changed
        });
    }

    fn counter_labels(st: &ElectionState) -> [(&'static str, String); 2] {
        [("id", st.id.clone()), ("namespace", st.namespace.clone())]
    }

    /// A successful exchange with the backend; `leader` is the leader it named (empty:
    /// unknown).
    pub fn contact(&self, leader: &str) {
        let mut st = lock(&self.inner.state);
        st.last_contact_ms = unix_ms();
        st.last_error.clear();
        let changed = !leader.is_empty() && st.leader != leader;
        let follower = st.status != Status::Success;
        if changed {
            st.leader = leader.to_string();
        }
        let namespace = st.namespace.clone();
        drop(st);
        *lock(&self.inner.logged) = None;
        if changed {
            if follower {
                tracing::info!(namespace = %namespace, leader, "Election: {leader} leads namespace {namespace}.");
            }
            self.publish();
        }
    }

    /// This node was elected: election-aware inputs resume.
    pub fn won(&self) {
        let mut st = lock(&self.inner.state);
        if st.status == Status::Success {
            return;
        }
        st.status = Status::Success;
        st.leader = st.id.clone();
        st.elected_at = unix_ms() / 1000;
        st.paused = false;
        st.last_contact_ms = unix_ms();
        st.last_error.clear();
        let (labels, namespace, backend) = (
            Self::counter_labels(&st),
            st.namespace.clone(),
            st.backend.clone(),
        );
        drop(st);
        self.inner.metrics.resume.get_or_create(&labels).inc();
        tracing::info!(
            namespace = %namespace,
            backend = %backend,
            "Election: elected leader of namespace {namespace}; election inputs resume."
        );
        self.publish();
    }

    /// This node does not lead (any more): election-aware inputs pause. `why` goes to the log
    /// when it was leading.
    pub fn lost(&self, leader: &str, why: &str) {
        let mut st = lock(&self.inner.state);
        let was = st.status;
        if was == Status::Defeat && (leader.is_empty() || st.leader == leader) {
            return;
        }
        st.status = Status::Defeat;
        if !leader.is_empty() || was == Status::Success {
            st.leader = leader.to_string();
        }
        st.elected_at = 0;
        let newly_paused = !st.paused;
        st.paused = true;
        let (labels, namespace, backend) = (
            Self::counter_labels(&st),
            st.namespace.clone(),
            st.backend.clone(),
        );
        drop(st);
        if newly_paused {
            self.inner.metrics.pause.get_or_create(&labels).inc();
        }
        if was == Status::Success {
            tracing::warn!(
                namespace = %namespace,
                backend = %backend,
                "Election: no longer the leader of namespace {namespace} ({why}); election inputs pause."
            );
        }
        self.publish();
    }

    /// A failed exchange with the backend: recorded, logged when new (or once a minute), the
    /// state otherwise unchanged (the backend decides when a leader steps down).
    pub fn error(&self, message: &str) {
        lock(&self.inner.state).last_error = message.to_string();
        let mut logged = lock(&self.inner.logged);
        let due = match &*logged {
            Some((last, at)) => last != message || at.elapsed() >= ERROR_LOG_EVERY,
            None => true,
        };
        if due {
            *logged = Some((message.to_string(), Instant::now()));
            drop(logged);
            tracing::warn!("Election: {message}");
            (self.inner.on_error)(message);
        }
    }
}

/// The running election; stops when [`Election::stop`] is called or it is dropped.
pub struct Election {
    reporter: Reporter,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Election {
    /// Starts the election `main` configures (or a disabled one); `dataway` is the first
    /// Dataway URL's API access, for `backend = "dataway"`.
    pub fn start(
        main: &dk_config::MainConfig,
        dataway: Option<dk_sinks::dataway::DatawayClock>,
        registry: &mut Registry,
        on_error: Arc<ErrorHook>,
    ) -> Election {
        let el = &main.election;
        let id = main.hostname.clone();
        let banned = el.enable && !el.node_whitelist.is_empty() && !el.node_whitelist.contains(&id);
        let status = match (el.enable, banned) {
            (false, _) => Status::Disabled,
            (true, true) => Status::Banned,
            (true, false) => Status::Defeat,
        };
        let initial = ElectionState {
            backend: if el.enable {
                el.backend.clone()
            } else {
                String::new()
            },
            namespace: el.namespace.clone(),
            id: id.clone(),
            status,
            leader: String::new(),
            elected_at: 0,
            paused: el.enable,
            last_contact_ms: 0,
            last_error: String::new(),
        };
        let reporter = Reporter::new(initial, Metrics::new(registry), on_error);
        let stop = CancellationToken::new();
        let task = match status {
            Status::Disabled => None,
            Status::Banned => {
                tracing::warn!(
                    id = %id,
                    "Election: this node ({id}) is not in [election] node_whitelist: banned, election inputs stay paused."
                );
                None
            }
            _ => {
                tracing::info!(
                    backend = %el.backend,
                    namespace = %el.namespace,
                    id = %id,
                    "Election: campaigning; election inputs paused until elected."
                );
                let (r, s) = (reporter.clone(), stop.clone());
                match el.backend.as_str() {
                    #[cfg(feature = "etcd")]
                    "etcd" => {
                        let cfg = el.etcd.clone();
                        let ns = el.namespace.clone();
                        Some(tokio::spawn(async move {
                            etcd::run(cfg, ns, id, r, s).await;
                        }))
                    }
                    #[cfg(not(feature = "etcd"))]
                    "etcd" => {
                        let _ = (r, s);
                        reporter.error("this build has no etcd backend (built without the `etcd` feature); rebuild with `cargo build --features etcd` (needs protoc) or use backend = \"dataway\"; election inputs stay paused");
                        None
                    }
                    _ => match dataway {
                        Some(api) => {
                            let ns = el.namespace.clone();
                            Some(tokio::spawn(async move {
                                dataway::run(api, ns, id, r, s).await;
                            }))
                        }
                        None => {
                            reporter.error("backend \"dataway\" needs a [dataway] urls entry; nothing is elected and election inputs stay paused");
                            None
                        }
                    },
                }
            }
        };
        Election {
            reporter,
            stop,
            task,
        }
    }

    /// The reporter (state and the paused watch).
    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }

    /// Stops campaigning; a leader resigns (etcd) so another takes over at once.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter() -> (Reporter, Registry) {
        let mut registry = Registry::default();
        let st = ElectionState {
            backend: "etcd".into(),
            namespace: "ns".into(),
            id: "me".into(),
            status: Status::Defeat,
            leader: String::new(),
            elected_at: 0,
            paused: true,
            last_contact_ms: 0,
            last_error: String::new(),
        };
        let r = Reporter::new(st, Metrics::new(&mut registry), Arc::new(|_| {}));
        (r, registry)
    }

    fn text(registry: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, registry).unwrap();
        s
    }

    #[test]
    fn winning_resumes_and_losing_pauses_with_one_status_series_each_time() {
        let (r, registry) = reporter();
        let mut paused = r.paused();
        assert!(*paused.borrow_and_update());
        r.won();
        assert!(!*paused.borrow_and_update());
        let t = text(&registry);
        assert!(
            t.contains(r#"datakit_election_status{elected_id="me",id="me",namespace="ns",status="success"}"#),
            "{t}"
        );
        assert!(
            t.contains(r#"datakit_election_resume_total{id="me",namespace="ns"} 1"#),
            "{t}"
        );
        r.lost("other", "heartbeat answered defeat");
        assert!(*paused.borrow_and_update());
        let t = text(&registry);
        assert!(
            t.contains(r#"datakit_election_status{elected_id="other",id="me",namespace="ns",status="defeat"} 0"#),
            "{t}"
        );
        assert!(
            !t.contains(r#"status="success""#),
            "the old series is gone: {t}"
        );
        assert!(
            t.contains(r#"datakit_election_pause_total{id="me",namespace="ns"} 1"#),
            "{t}"
        );
        assert_eq!(r.state().leader, "other");
    }

    #[test]
    fn a_repeated_defeat_changes_nothing_and_counts_no_pause() {
        let (r, registry) = reporter();
        r.lost("other", "x");
        r.lost("other", "x");
        let t = text(&registry);
        assert!(!t.contains("datakit_election_pause_total{"), "{t}");
        assert_eq!(r.state().status, Status::Defeat);
    }

    #[test]
    fn errors_are_kept_for_the_info_route_and_reported_once_until_they_change() {
        let mut registry = Registry::default();
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let s2 = seen.clone();
        let st = reporter().0.state();
        let r = Reporter::new(
            st,
            Metrics::new(&mut registry),
            Arc::new(move |m: &str| s2.lock().unwrap().push(m.to_string())),
        );
        r.error("etcd down");
        r.error("etcd down");
        r.error("etcd refused");
        assert_eq!(*seen.lock().unwrap(), vec!["etcd down", "etcd refused"]);
        assert_eq!(r.state().last_error, "etcd refused");
        r.contact("x");
        assert_eq!(r.state().last_error, "");
        assert_eq!(r.state().leader, "x");
    }
}
