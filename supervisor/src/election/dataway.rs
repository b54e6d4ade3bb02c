//! Datakit's election through Dataway: `POST /v1/election` while not leading,
//! `POST /v1/election/heartbeat` while leading, both with `token`, `namespace` and `id` in the
//! query and an empty body. A 2xx answer is
//! `{"content":{"status":"success"|"defeat","incumbency_id":"<leader>","interval":<s>,...}}`;
//! the next request goes out `interval` seconds later (4 s at first and after errors).
//!
//! A failed request (transport, non-2xx, bad JSON) leaves the state as it is, as in Datakit,
//! except that a leader whose last successful heartbeat is older than [`LEASE_INTERVALS`]
//! intervals steps down and stops collecting (Datakit's keeps collecting).

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Reporter;

/// Datakit's first tick and its retry delay after an error.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(4);
/// A leader that could not heartbeat for this many intervals stops collecting.
pub const LEASE_INTERVALS: u32 = 3;
/// Largest answer read.
const MAX_ANSWER: usize = 64 << 10;

/// The election routes.
pub const ELECTION_PATH: &str = "/v1/election";
/// The leader's heartbeat route.
pub const HEARTBEAT_PATH: &str = "/v1/election/heartbeat";

/// Dataway's answer (the fields we use).
#[derive(Debug, Deserialize)]
pub struct Answer {
    /// The payload.
    pub content: Content,
}

/// `content` of an answer.
#[derive(Debug, Deserialize)]
pub struct Content {
    /// `success` or `defeat`.
    pub status: String,
    /// The leader's id.
    #[serde(default)]
    pub incumbency_id: String,
    /// Seconds until the next request.
    #[serde(default)]
    pub interval: u64,
    /// Dataway's explanation, if any.
    #[serde(default)]
    pub error_msg: String,
}

/// Campaigns through the first Dataway URL until `stop`.
pub async fn run(
    api: dk_sinks::dataway::DatawayClock,
    namespace: String,
    id: String,
    rep: Reporter,
    stop: CancellationToken,
) {
    let (client, mut elect, display) = api.api(ELECTION_PATH);
    elect
        .query_pairs_mut()
        .append_pair("namespace", &namespace)
        .append_pair("id", &id);
    let mut heartbeat = elect.clone();
    heartbeat.set_path(HEARTBEAT_PATH);

    let mut interval = DEFAULT_INTERVAL;
    let mut leading = false;
    // Send time of the last successful heartbeat (or election) while leading.
    let mut renewed = Instant::now();
    let mut next = Instant::now();
    loop {
        // A leader steps down when its lead could not be renewed in time.
        let step_down = renewed + interval * LEASE_INTERVALS;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(step_down), if leading => {
                leading = false;
                rep.lost("", &format!(
                    "no successful heartbeat to {display} for {:?}, longer than the lease",
                    interval * LEASE_INTERVALS
                ));
                continue;
            }
            () = tokio::time::sleep_until(next) => {}
        }
        let url = if leading { &heartbeat } else { &elect };
        let route = if leading {
            HEARTBEAT_PATH
        } else {
            ELECTION_PATH
        };
        let sent = Instant::now();
        let answer = tokio::select! {
            () = stop.cancelled() => return,
            // A hanging request does not keep a leader past its lease.
            () = tokio::time::sleep_until(step_down), if leading => continue,
            a = ask(&client, url, interval.max(Duration::from_secs(1))) => a,
        };
        match answer {
            Ok(content) => {
                if content.interval > 0 {
                    interval = Duration::from_secs(content.interval);
                }
                next = sent + interval;
                match content.status.as_str() {
                    "success" => {
                        renewed = sent;
                        rep.contact(&content.incumbency_id);
                        if !leading {
                            leading = true;
                            rep.won();
                        }
                    }
                    _ => {
                        rep.contact(&content.incumbency_id);
                        if leading {
                            leading = false;
                            let why = if content.error_msg.is_empty() {
                                format!("{route} answered defeat")
                            } else {
                                format!("{route} answered defeat: {}", content.error_msg)
                            };
                            rep.lost(&content.incumbency_id, &why);
                        } else {
                            rep.lost(&content.incumbency_id, "");
                        }
                    }
                }
            }
            Err(why) => {
                rep.error(&format!("POST {display}{route}: {why}"));
                next = sent + interval.min(DEFAULT_INTERVAL);
            }
        }
    }
}

async fn ask(
    client: &reqwest::Client,
    url: &reqwest::Url,
    timeout: Duration,
) -> Result<Content, String> {
    let resp = client
        .post(url.clone())
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                s.push_str(": ");
                s.push_str(&c.to_string());
                src = c.source();
            }
            s
        })?;
    let status = resp.status();
    let mut body = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            return Err(format!("answer larger than {MAX_ANSWER} bytes"));
        }
    }
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        let head: String = text.chars().take(200).collect();
        return Err(format!("HTTP {}: {}", status.as_u16(), head.trim()));
    }
    let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
        let head: String = text.chars().take(200).collect();
        format!("answer {head:?} is not {{\"content\":{{\"status\":...}}}}: {e}")
    })?;
    Ok(answer.content)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dk_sinks::dataway::{DatawayConfig, DatawaySink};
    use dk_sinks::testing::{FakeDataway, Mode};
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::election::{ElectionState, Metrics, Status};

    const TOKEN: &str = "tkn_0123456789abcdef0123456789abcdef";

    fn reporter(registry: &mut Registry) -> Reporter {
        let st = ElectionState {
            backend: "dataway".into(),
            namespace: "ns".into(),
            id: "me".into(),
            status: Status::Defeat,
            leader: String::new(),
            elected_at: 0,
            paused: true,
            last_contact_ms: 0,
            last_error: String::new(),
        };
        Reporter::new(st, Metrics::new(registry), Arc::new(|_| {}))
    }

    #[tokio::test]
    async fn a_leader_whose_heartbeats_hang_steps_down_after_three_intervals() {
        let fake = FakeDataway::start(TOKEN).await.unwrap();
        fake.set_election_timing(Duration::from_secs(1), Duration::from_secs(3));
        let mut registry = Registry::default();
        let sink = DatawaySink::new(
            DatawayConfig {
                urls: vec![fake.url()],
                hostname: "me".into(),
                ..DatawayConfig::default()
            },
            &mut registry,
        )
        .unwrap();
        let rep = reporter(&mut registry);
        let mut paused = rep.paused();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            sink.clock().unwrap(),
            "ns".into(),
            "me".into(),
            rep.clone(),
            stop.clone(),
        ));
        tokio::time::timeout(Duration::from_secs(5), paused.wait_for(|p| !*p))
            .await
            .expect("elected")
            .unwrap();
        assert_eq!(fake.election_leader("ns").as_deref(), Some("me"));
        assert_eq!(rep.state().status, Status::Success);
        fake.set_mode(Mode::Hang);
        let hung = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(6), paused.wait_for(|p| *p))
            .await
            .expect("stepped down")
            .unwrap();
        let took = hung.elapsed();
        assert!(
            took <= Duration::from_millis(3_200),
            "stepped down {took:?} after the last answer, lease 3 s"
        );
        assert_eq!(rep.state().status, Status::Defeat);
        stop.cancel();
        task.await.unwrap();
    }
}
