//! Election through etcd (`backend = "etcd"`): a lease of `[election.etcd] lease`, kept alive
//! every third of it, and a campaign on `<prefix>/<namespace>` with this node's id as the
//! value (etcd's v3 election API: the oldest live candidate leads).
//!
//! A node whose lease could not be renewed for its whole time to live (the members are
//! unreachable, or said the lease is gone) stops collecting at once: by then etcd may have
//! given the lead to another node. It then starts over with a new lease. On stop, a leader
//! resigns and revokes its lease, so another node takes over without waiting for the lease.

use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, ElectionClient, Identity, LeaderKey, LeaseClient,
    ResignOptions, TlsOptions,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Reporter;

/// Why an etcd session ended.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A request failed.
    #[error("etcd {what} at {endpoints}: {source}")]
    Request {
        /// What was asked.
        what: &'static str,
        /// The configured members.
        endpoints: String,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// No answer in time.
    #[error("etcd {what} at {endpoints}: no answer within {after:?}")]
    Timeout {
        /// What was asked.
        what: &'static str,
        /// The configured members.
        endpoints: String,
        /// The deadline.
        after: Duration,
    },
    /// The lease expired before it could be renewed.
    #[error("etcd lease {lease:x} at {endpoints} was not renewed for {ttl:?} (its time to live)")]
    LeaseLost {
        /// The lease id.
        lease: i64,
        /// The configured members.
        endpoints: String,
        /// Its time to live.
        ttl: Duration,
    },
    /// A TLS file could not be read.
    #[error("[election.etcd] {key} = {path:?}: {source}; fix the path or remove the key")]
    TlsFile {
        /// The config key.
        key: &'static str,
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Delay before a new session after a failed one.
const RETRY: Duration = Duration::from_secs(1);

struct Session<'a> {
    cfg: &'a dk_config::EtcdElection,
    key: String,
    id: &'a str,
    endpoints: String,
    rep: &'a Reporter,
    stop: &'a CancellationToken,
    /// Requests must answer within this (a third of the lease).
    deadline: Duration,
}

/// Campaigns through etcd until `stop`.
pub async fn run(
    cfg: dk_config::EtcdElection,
    namespace: String,
    id: String,
    rep: Reporter,
    stop: CancellationToken,
) {
    let key = format!("{}/{}", cfg.prefix.trim_end_matches('/'), namespace);
    let session = Session {
        cfg: &cfg,
        key,
        id: &id,
        endpoints: cfg.endpoints.join(","),
        rep: &rep,
        stop: &stop,
        deadline: (cfg.lease / 3).max(Duration::from_millis(500)),
    };
    let mut stale: Option<i64> = None;
    loop {
        match session.run(&mut stale).await {
            Ok(()) => return,
            Err(e) => {
                rep.lost("", &e.to_string());
                rep.error(&e.to_string());
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

impl Session<'_> {
    fn request(&self, what: &'static str) -> impl Fn(etcd_client::Error) -> EtcdError + '_ {
        move |source| EtcdError::Request {
            what,
            endpoints: self.endpoints.clone(),
            source,
        }
    }

    async fn timed<T>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, EtcdError> {
        match tokio::time::timeout(self.deadline, f).await {
            Ok(r) => r.map_err(self.request(what)),
            Err(_) => Err(EtcdError::Timeout {
                what,
                endpoints: self.endpoints.clone(),
                after: self.deadline,
            }),
        }
    }

    async fn options(&self) -> Result<ConnectOptions, EtcdError> {
        let cfg = self.cfg;
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.deadline)
            .with_keep_alive(self.deadline, self.deadline);
        if !cfg.username.is_empty() {
            opts = opts.with_user(cfg.username.clone(), cfg.password.clone());
        }
        if !cfg.tls_ca.is_empty() || !cfg.tls_cert.is_empty() {
            let read = |key: &'static str, path: &str| {
                let path = path.to_string();
                async move {
                    tokio::fs::read(&path)
                        .await
                        .map_err(|source| EtcdError::TlsFile { key, path, source })
                }
            };
            let mut tls = TlsOptions::new();
            if !cfg.tls_ca.is_empty() {
                tls = tls.ca_certificate(Certificate::from_pem(read("tls_ca", &cfg.tls_ca).await?));
            }
            if !cfg.tls_cert.is_empty() {
                let cert = read("tls_cert", &cfg.tls_cert).await?;
                let key = read("tls_key", &cfg.tls_key).await?;
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            opts = opts.with_tls(tls);
        }
        Ok(opts)
    }

    /// One lease: campaign, lead while it is renewed. `Ok` only when stopped.
    async fn run(&self, stale: &mut Option<i64>) -> Result<(), EtcdError> {
        let opts = self.options().await?;
        let client = self
            .timed(
                "connect",
                Client::connect(self.cfg.endpoints.clone(), Some(opts)),
            )
            .await?;
        let mut leases: LeaseClient = client.lease_client();
        // The lease of a session that ended without reaching etcd: its key would block the
        // others until it expires.
        if let Some(old) = stale.take() {
            let _ = tokio::time::timeout(self.deadline, leases.revoke(old)).await;
        }
        let ttl_secs = i64::try_from(self.cfg.lease.as_secs().max(2)).unwrap_or(i64::MAX);
        let grant = self
            .timed("lease grant", leases.grant(ttl_secs, None))
            .await?;
        let lease = grant.id();
        let mut ttl = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(2).max(1));
        *stale = Some(lease);
        let (mut keeper, mut answers) = self
            .timed("lease keep-alive", leases.keep_alive(lease))
            .await?;

        let mut elections: ElectionClient = client.election_client();
        let mut watcher = elections.clone();
        let campaign = elections.campaign(self.key.clone(), self.id.to_string(), lease);
        tokio::pin!(campaign);
        let mut leader_key: Option<LeaderKey> = None;
        let mut renewed = Instant::now();
        let mut tick = tokio::time::interval(ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => {
                    if let Some(k) = leader_key.take() {
                        let _ = tokio::time::timeout(
                            self.deadline,
                            watcher.resign(Some(ResignOptions::new().with_leader(k))),
                        ).await;
                    }
                    let _ = tokio::time::timeout(self.deadline, leases.revoke(lease)).await;
                    *stale = None;
                    return Ok(());
                }
                r = &mut campaign, if leader_key.is_none() => {
                    let resp = r.map_err(self.request("campaign"))?;
                    leader_key = Some(resp.leader().cloned().unwrap_or_default());
                    self.rep.contact(self.id);
                    self.rep.won();
                }
                () = tokio::time::sleep_until(renewed + ttl) => {
                    return Err(EtcdError::LeaseLost {
                        lease,
                        endpoints: self.endpoints.clone(),
                        ttl,
                    });
                }
                _ = tick.tick() => {
                    let sent = Instant::now();
                    let renewal = async {
                        keeper.keep_alive().await?;
                        answers.message().await
                    };
                    match self.timed("lease keep-alive", renewal).await {
                        Ok(Some(a)) if a.ttl() > 0 => {
                            renewed = sent;
                            ttl = Duration::from_secs(u64::try_from(a.ttl()).unwrap_or(1).max(1));
                        }
                        Ok(_) => {
                            return Err(EtcdError::LeaseLost {
                                lease,
                                endpoints: self.endpoints.clone(),
                                ttl,
                            });
                        }
                        // Retried on the next tick until the lease runs out.
                        Err(e) => {
                            self.rep.error(&e.to_string());
                            continue;
                        }
                    }
                    if leader_key.is_some() {
                        self.rep.contact(self.id);
                    } else if let Ok(resp) = self.timed("leader", watcher.leader(self.key.clone())).await {
                        let leader = resp
                            .kv()
                            .and_then(|kv| kv.value_str().ok())
                            .unwrap_or("")
                            .to_string();
                        self.rep.contact(&leader);
                        self.rep.lost(&leader, "");
                    }
                }
            }
        }
    }
}
