//! A real `influxd` (Debian's `influxdb` 1.6.7) for tests: each [`Influxd`] runs its own on free
//! loopback ports with its data under a temporary directory, answers `/ping` before `start`
//! returns, and is killed when dropped (or when the test process dies).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value as Json;

/// How long influxd may take to answer its first ping.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running `influxd` that is killed on drop (or when the test process dies).
pub struct Influxd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    http: SocketAddr,
    /// Admin credentials when started with authentication.
    /// Admin credentials when started with authentication.
    pub auth: Option<(String, String)>,
    client: reqwest::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Influxd {
    /// Starts influxd without authentication; `None` when influxd is not installed and
    /// `DK_REQUIRE_PEERS` is not `1` (the test then returns early; under it, a missing influxd
    /// fails the test).
    pub async fn start() -> Option<Influxd> {
        Self::start_with(false).await
    }

    /// Starts influxd; with `auth`, HTTP authentication is on and an admin user `admin` with
    /// password `admin-pw` is created. `None` as for [`Influxd::start`].
    pub async fn start_with(auth: bool) -> Option<Influxd> {
        if !dk_proto::testing::require_program("influxd", "influxdb") {
            return None;
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("influxdb.conf");
        let mut me = Influxd {
            child: None,
            dir,
            config,
            http: ([127, 0, 0, 1], 0).into(),
            auth: None,
            client,
        };
        let mut last_log = String::new();
        // A port picked as free may be taken before influxd binds it: try a few times.
        for _ in 0..3 {
            me.http = ([127, 0, 0, 1], free_port()).into();
            let rpc: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            me.write_config(rpc, auth);
            match me.spawn_and_wait().await {
                Ok(()) => {
                    if auth {
                        me.query_raw(
                            "CREATE USER admin WITH PASSWORD 'admin-pw' WITH ALL PRIVILEGES",
                        )
                        .await;
                        me.auth = Some(("admin".to_string(), "admin-pw".to_string()));
                    }
                    return Some(me);
                }
                Err(log) => last_log = log,
            }
        }
        panic!("influxd did not start; its output:\n{last_log}");
    }

    /// Writes influxd's config: everything under the temp dir, loopback ports, no reporting,
    /// no monitor store, logs (warnings only) on stderr.
    fn write_config(&self, rpc: SocketAddr, auth: bool) {
        let d = self.dir.path().display();
        let http = self.http;
        std::fs::write(
            &self.config,
            format!(
                r#"# influxd for the InfluxDB sink tests: data under a temp dir, loopback ports only,
# no reporting or monitoring, warnings on stderr.
reporting-disabled = true
bind-address = "{rpc}"

[meta]
  dir = "{d}/meta"
  logging-enabled = false

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  trace-logging-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "{http}"
  auth-enabled = {auth}
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"#
            ),
        )
        .expect("write influxd config");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("influxd.log")
    }

    /// Spawns influxd with the config and waits for `/ping`; the error is influxd's output.
    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("influxd log file");
        // influxd runs under a small shell that kills it as soon as our end of its stdin
        // closes: on `stop`, and also when this test process dies without unwinding.
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec 3<&0; influxd -config "$1" & pid=$!; (read _ <&3; kill -9 $pid) & wait $pid"#)
            .arg("sh")
            .arg(&self.config)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("sh starts");
        self.child = Some(child);
        let ping = format!("http://{}/ping", self.http);
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let out = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!("influxd exited with {status}:\n{out}"));
            }
            if let Ok(r) = self.client.get(&ping).send().await
                && r.status().as_u16() == 204
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                let out = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!(
                    "influxd did not answer /ping with 204 within {READY_DEADLINE:?}:\n{out}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills influxd and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts influxd again on the same ports and data.
    pub async fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn_and_wait().await {
            panic!("influxd did not restart: {log}");
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Runs an InfluxQL statement; returns the JSON answer (panics on HTTP errors).
    pub async fn query_raw(&self, q: &str) -> Json {
        self.query_in("", q).await
    }

    /// Runs an InfluxQL statement in database `db`, timestamps in ns.
    pub async fn query_in(&self, db: &str, q: &str) -> Json {
        let mut url = Url::parse(&format!("{}/query", self.url())).expect("url");
        {
            let mut qp = url.query_pairs_mut();
            qp.append_pair("q", q);
            qp.append_pair("epoch", "ns");
            if !db.is_empty() {
                qp.append_pair("db", db);
            }
            if let Some((u, p)) = &self.auth {
                qp.append_pair("u", u);
                qp.append_pair("p", p);
            }
        }
        let resp = self.client.post(url).send().await.expect("query sent");
        let status = resp.status();
        let body: Json = resp.json_or_text().await;
        assert!(status.is_success(), "query {q:?}: {status} {body}");
        body
    }

    pub async fn create_db(&self, db: &str) {
        let r = self.query_raw(&format!("CREATE DATABASE \"{db}\"")).await;
        assert!(r["results"][0].get("error").is_none(), "{r}");
    }

    /// The rows of `SELECT ...` as column-name → value maps.
    pub async fn rows(&self, db: &str, q: &str) -> Vec<serde_json::Map<String, Json>> {
        let r = self.query_in(db, q).await;
        let Some(series) = r["results"][0]["series"].as_array() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for s in series {
            let cols: Vec<String> = s["columns"]
                .as_array()
                .expect("columns")
                .iter()
                .map(|c| c.as_str().expect("column name").to_string())
                .collect();
            for v in s["values"].as_array().expect("values") {
                let v = v.as_array().expect("row");
                out.push(cols.iter().cloned().zip(v.iter().cloned()).collect());
            }
        }
        out
    }

    /// `SELECT count(<field>) FROM <m>`.
    pub async fn count(&self, db: &str, measurement: &str, field: &str) -> i64 {
        let rows = self
            .rows(
                db,
                &format!("SELECT count(\"{field}\") FROM \"{measurement}\""),
            )
            .await;
        rows.first()
            .and_then(|r| r.get("count"))
            .and_then(Json::as_i64)
            .unwrap_or(0)
    }

    /// Field key → InfluxDB type (`integer`, `float`, `string`, `boolean`).
    pub async fn field_types(&self, db: &str, measurement: &str) -> Vec<(String, String)> {
        let rows = self
            .rows(db, &format!("SHOW FIELD KEYS FROM \"{measurement}\""))
            .await;
        rows.iter()
            .map(|r| {
                (
                    r["fieldKey"].as_str().expect("key").to_string(),
                    r["fieldType"].as_str().expect("type").to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads a body as JSON, or wraps its text.
trait JsonOrText {
    async fn json_or_text(self) -> Json;
}

impl JsonOrText for reqwest::Response {
    async fn json_or_text(self) -> Json {
        let text = self.text().await.unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Json::String(text))
    }
}
