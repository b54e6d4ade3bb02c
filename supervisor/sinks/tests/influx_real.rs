//! The InfluxDB sink against a real `influxd` (Debian's `influxdb` 1.6.7), started by each test.
//!
//! Each test starts its own `influxd` on free loopback ports with its data under a temporary
//! directory, waits for `GET /ping` to answer 204, creates its database, and kills the process
//! when the guard drops. Without `influxd` on `PATH` the tests fail and say what to install.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dk_delivery::{Sink, SinkError};
use dk_proto::{Category, Point, Value};
use dk_sinks::influxdb::{InfluxConfig, InfluxSink};
use prometheus_client::registry::Registry;
use reqwest::Url;
use serde_json::{Value as Json, json};

/// How long influxd may take to answer its first ping.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running `influxd` that is killed on drop (or when the test process dies).
struct Influxd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    http: SocketAddr,
    /// Admin credentials when started with authentication.
    auth: Option<(String, String)>,
    client: reqwest::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Influxd {
    /// Starts influxd without authentication.
    async fn start() -> Influxd {
        Self::start_with(false).await
    }

    /// Starts influxd; with `auth`, HTTP authentication is on and an admin user `admin` with
    /// password `admin-pw` is created.
    async fn start_with(auth: bool) -> Influxd {
        match Command::new("influxd").arg("version").output() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "influxd is not installed: run `apt-get install -y influxdb` (Debian's InfluxDB 1.6.7) to run the InfluxDB sink tests"
            ),
            Err(e) => panic!("cannot run influxd: {e}"),
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
                    return me;
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
                r#"reporting-disabled = true
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
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts influxd again on the same ports and data.
    async fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn_and_wait().await {
            panic!("influxd did not restart: {log}");
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Runs an InfluxQL statement; returns the JSON answer (panics on HTTP errors).
    async fn query_raw(&self, q: &str) -> Json {
        self.query_in("", q).await
    }

    /// Runs an InfluxQL statement in database `db`, timestamps in ns.
    async fn query_in(&self, db: &str, q: &str) -> Json {
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

    async fn create_db(&self, db: &str) {
        let r = self.query_raw(&format!("CREATE DATABASE \"{db}\"")).await;
        assert!(r["results"][0].get("error").is_none(), "{r}");
    }

    /// The rows of `SELECT ...` as column-name → value maps.
    async fn rows(&self, db: &str, q: &str) -> Vec<serde_json::Map<String, Json>> {
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
    async fn count(&self, db: &str, measurement: &str, field: &str) -> i64 {
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
    async fn field_types(&self, db: &str, measurement: &str) -> Vec<(String, String)> {
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
        let bytes = self.bytes().await.unwrap_or_default();
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

fn sink_for(influxd: &Influxd, db: &str, reg: &mut Registry) -> InfluxSink {
    InfluxSink::new(
        InfluxConfig {
            url: influxd.url(),
            database: db.to_string(),
            timeout: Duration::from_secs(10),
            ..InfluxConfig::default()
        },
        reg,
    )
    .expect("sink")
}

fn metrics_text(registry: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, registry).expect("encode");
    s
}

const T0: i64 = 1_700_000_000_000_000_000;

#[tokio::test]
async fn points_read_back_with_their_tags_and_typed_fields() {
    let influxd = Influxd::start().await;
    influxd.create_db("dk").await;
    let mut reg = Registry::default();
    let sink = sink_for(&influxd, "dk", &mut reg);
    let pts = vec![
        Point::new("typed", T0)
            .tag("host", "web 1")
            .tag("region", "eu,west=2")
            .field("i", Value::I(-42))
            .field("f", Value::F(2.0))
            .field("s", Value::S("say \"hi\"\\ now".to_string()))
            .field("b", Value::B(true))
            .field("u", Value::U(7))
            .field("big", Value::U(u64::MAX))
            .field("d", Value::D(vec![0, 1, 2, 255]))
            .field("a", Value::A(vec![Value::I(1), Value::I(2)])),
        Point::new("typed", T0 + 1)
            .tag("host", "web 2")
            .field("i", Value::I(i64::MAX))
            .field("f", Value::F(-1.25e-3))
            .field("s", Value::S(String::new()))
            .field("b", Value::B(false)),
    ];
    sink.write(Category::Metric, &pts).await.expect("written");

    assert_eq!(influxd.count("dk", "typed", "i").await, 2);
    let mut types = influxd.field_types("dk", "typed").await;
    types.sort();
    let expect: Vec<(String, String)> = [
        ("b", "boolean"),
        ("big", "float"),
        ("d", "string"),
        ("f", "float"),
        ("i", "integer"),
        ("s", "string"),
        ("u", "integer"),
    ]
    .iter()
    .map(|(k, t)| (k.to_string(), t.to_string()))
    .collect();
    assert_eq!(types, expect);

    let rows = influxd
        .rows("dk", "SELECT * FROM typed ORDER BY time")
        .await;
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r["time"], json!(T0));
    assert_eq!(r["host"], json!("web 1"));
    assert_eq!(r["region"], json!("eu,west=2"));
    assert_eq!(r["i"], json!(-42));
    // InfluxDB's JSON writes the float 2.0 as `2`; the field type above says float.
    assert_eq!(r["f"].as_f64(), Some(2.0));
    assert_eq!(r["s"], json!("say \"hi\"\\ now"));
    assert_eq!(r["b"], json!(true));
    assert_eq!(r["u"], json!(7));
    assert_eq!(r["big"].as_f64(), Some(u64::MAX as f64));
    assert_eq!(r["d"], json!("AAEC/w=="));
    assert!(r.get("a").is_none(), "arrays are not stored: {r:?}");
    let r = &rows[1];
    assert_eq!(r["time"], json!(T0 + 1));
    assert_eq!(r["host"], json!("web 2"));
    assert_eq!(r["region"], Json::Null);
    assert_eq!(r["i"], json!(i64::MAX));
    assert_eq!(r["f"].as_f64(), Some(-1.25e-3));
    assert_eq!(r["s"], json!(""));
    assert_eq!(r["b"], json!(false));

    let text = metrics_text(&reg);
    for line in [
        r#"datakit_io_influxdb_point_total{category="metric",status="No Content"} 2"#,
        r#"datakit_io_influxdb_converted_field_total{category="metric",kind="uint_to_int"} 1"#,
        r#"datakit_io_influxdb_converted_field_total{category="metric",kind="uint_to_float"} 1"#,
        r#"datakit_io_influxdb_converted_field_total{category="metric",kind="bytes_to_base64"} 1"#,
        r#"datakit_io_influxdb_converted_field_total{category="metric",kind="array_dropped"} 1"#,
        r#"datakit_io_influxdb_request_seconds_count{status="No Content"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn batches_larger_than_max_body_bytes_are_split_and_all_arrive() {
    let influxd = Influxd::start().await;
    influxd.create_db("dk").await;
    for gzip in [false, true] {
        let mut reg = Registry::default();
        let sink = InfluxSink::new(
            InfluxConfig {
                url: influxd.url(),
                database: "dk".to_string(),
                max_body_bytes: 16 * 1024,
                gzip,
                ..InfluxConfig::default()
            },
            &mut reg,
        )
        .expect("sink");
        let measurement = if gzip { "split_gz" } else { "split" };
        let pts: Vec<Point> = (0..5000)
            .map(|i| {
                Point::new(measurement, T0 + i)
                    .tag("host", "h1")
                    .tag("cpu", format!("cpu{}", i % 4))
                    .field("n", Value::I(i))
                    .field("x", Value::F(i as f64 / 3.0))
            })
            .collect();
        let bytes = dk_proto::lineproto::encode(&pts).len();
        sink.write(Category::Metric, &pts).await.expect("written");

        assert_eq!(influxd.count("dk", measurement, "n").await, 5000);
        let sum = influxd
            .rows("dk", &format!("SELECT sum(n) FROM {measurement}"))
            .await;
        assert_eq!(sum[0]["sum"], json!(4999 * 5000 / 2));
        let text = metrics_text(&reg);
        let requests: usize = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(r#"datakit_io_influxdb_request_seconds_count{status="No Content"} "#)
            })
            .and_then(|n| n.trim().parse().ok())
            .expect("request count");
        assert!(
            requests >= bytes.div_ceil(16 * 1024) && requests <= bytes.div_ceil(16 * 1024) + 1,
            "{requests} requests for {bytes} bytes"
        );
    }
}

#[tokio::test]
async fn field_type_conflict_is_rejected_with_influxdbs_message() {
    let influxd = Influxd::start().await;
    influxd.create_db("dk").await;
    let mut reg = Registry::default();
    let sink = sink_for(&influxd, "dk", &mut reg);
    sink.write(
        Category::Metric,
        &[Point::new("conflict", T0).field("f", Value::I(1))],
    )
    .await
    .expect("first write");
    let err = sink
        .write(
            Category::Metric,
            &[
                Point::new("conflict", T0 + 1).field("f", Value::S("x".to_string())),
                Point::new("conflict", T0 + 2).field("f", Value::I(3)),
            ],
        )
        .await
        .expect_err("type conflict");
    match err {
        SinkError::Rejected { sink, message } => {
            assert_eq!(sink, "influxdb");
            assert!(message.contains("400 Bad Request"), "{message}");
            assert!(
                message.contains(
                    "partial write: field type conflict: input field \"f\" on measurement \"conflict\" is type string, already exists as type integer"
                ),
                "{message}"
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    // The good point of the partial write is stored; the bad one is not.
    let rows = influxd.rows("dk", "SELECT f FROM conflict").await;
    let values: Vec<&Json> = rows.iter().map(|r| &r["f"]).collect();
    assert_eq!(values, vec![&json!(1), &json!(3)]);
}

#[tokio::test]
async fn stopped_influxd_makes_the_sink_unavailable_until_it_is_back() {
    let mut influxd = Influxd::start().await;
    influxd.create_db("dk").await;
    let mut reg = Registry::default();
    let sink = sink_for(&influxd, "dk", &mut reg);
    let batch = |t: i64| vec![Point::new("outage", t).field("v", Value::I(t - T0))];
    sink.write(Category::Metric, &batch(T0)).await.expect("up");

    influxd.stop();
    // The first attempt may meet the pooled connection influxd closed; the next one finds
    // the port closed.
    for _ in 0..2 {
        let err = sink
            .write(Category::Metric, &batch(T0 + 1))
            .await
            .expect_err("influxd is down");
        match &err {
            SinkError::Unavailable { message, .. } => {
                assert!(
                    message.contains("check that influxd is running"),
                    "{message}"
                )
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    let text = metrics_text(&reg);
    assert!(
        text.contains(
            r#"datakit_io_influxdb_point_total{category="metric",status="connection-refused"}"#
        ),
        "{text}"
    );

    influxd.restart().await;
    sink.write(Category::Metric, &batch(T0 + 1))
        .await
        .expect("retry after restart");
    assert_eq!(influxd.count("dk", "outage", "v").await, 2);
}

#[tokio::test]
async fn unknown_database_keeps_the_batch_until_it_is_created() {
    let influxd = Influxd::start().await;
    let mut reg = Registry::default();
    let sink = sink_for(&influxd, "later", &mut reg);
    let pts = vec![Point::new("m", T0).field("v", Value::I(1))];
    let err = sink
        .write(Category::Metric, &pts)
        .await
        .expect_err("no database");
    match &err {
        SinkError::Unavailable { message, .. } => {
            assert!(message.contains("404 Not Found"), "{message}");
            assert!(
                message.contains("database not found: \"later\""),
                "{message}"
            );
            assert!(message.contains("CREATE DATABASE \"later\""), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    influxd.create_db("later").await;
    sink.write(Category::Metric, &pts).await.expect("retried");
    assert_eq!(influxd.count("later", "m", "v").await, 1);
}

#[tokio::test]
async fn retention_policy_is_used_and_an_unknown_one_is_unavailable() {
    let influxd = Influxd::start().await;
    influxd.create_db("dk").await;
    influxd
        .query_raw("CREATE RETENTION POLICY \"week\" ON \"dk\" DURATION 7d REPLICATION 1")
        .await;
    // Within the 7-day policy: now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64;
    let pts = vec![Point::new("rp_m", now).field("v", Value::I(1))];
    for (rp, ok) in [("week", true), ("missing", false)] {
        let mut reg = Registry::default();
        let sink = InfluxSink::new(
            InfluxConfig {
                url: influxd.url(),
                database: "dk".to_string(),
                retention_policy: Some(rp.to_string()),
                ..InfluxConfig::default()
            },
            &mut reg,
        )
        .expect("sink");
        let r = sink.write(Category::Metric, &pts).await;
        if ok {
            r.expect("written to rp week");
        } else {
            match r {
                Err(SinkError::Unavailable { message, .. }) => {
                    assert!(message.contains("retention policy not found"), "{message}")
                }
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
    }
    assert_eq!(
        influxd
            .rows("dk", "SELECT count(v) FROM \"dk\".\"week\".\"rp_m\"")
            .await[0]["count"],
        json!(1)
    );
    assert_eq!(influxd.count("dk", "rp_m", "v").await, 0, "not in autogen");
}

#[tokio::test]
async fn wrong_credentials_are_unavailable_and_right_ones_write() {
    let influxd = Influxd::start_with(true).await;
    influxd.create_db("dk").await;
    let pts = vec![Point::new("authed", T0).field("v", Value::I(1))];
    for (user, password, ok) in [("admin", "wrong", false), ("admin", "admin-pw", true)] {
        let mut reg = Registry::default();
        let sink = InfluxSink::new(
            InfluxConfig {
                url: influxd.url(),
                database: "dk".to_string(),
                username: Some(user.to_string()),
                password: Some(password.to_string()),
                ..InfluxConfig::default()
            },
            &mut reg,
        )
        .expect("sink");
        let r = sink.write(Category::Metric, &pts).await;
        if ok {
            r.expect("authenticated write");
        } else {
            match r {
                Err(SinkError::Unavailable { message, .. }) => {
                    assert!(message.contains("401"), "{message}");
                    assert!(!message.contains("wrong"), "password leaked: {message}");
                }
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
    }
    assert_eq!(influxd.count("dk", "authed", "v").await, 1);
}

/// Rough throughput through the sink into a real influxd (debug build; a figure, not a gate).
#[tokio::test]
async fn write_throughput_into_real_influxd() {
    let influxd = Influxd::start().await;
    influxd.create_db("dk").await;
    let mut reg = Registry::default();
    let sink = sink_for(&influxd, "dk", &mut reg);
    const BATCH: i64 = 5_000;
    const BATCHES: i64 = 20;
    let batches: Vec<Vec<Point>> = (0..BATCHES)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    let n = b * BATCH + i;
                    Point::new("tput", T0 + n)
                        .tag("host", "bench-host-01")
                        .tag("cpu", format!("cpu{}", n % 8))
                        .field("usage_user", Value::F(n as f64 * 0.01))
                        .field("usage_system", Value::F(1.5))
                        .field("usage_idle", Value::F(97.25))
                        .field("ticks", Value::I(n))
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    for batch in &batches {
        sink.write(Category::Metric, batch).await.expect("written");
    }
    let took = started.elapsed();
    let total = BATCH * BATCHES;
    assert_eq!(influxd.count("dk", "tput", "ticks").await, total);
    eprintln!(
        "influxdb sink throughput: {total} points in {took:?} = {:.0} points/s (batches of {BATCH}, 1 MiB bodies, no gzip)",
        total as f64 / took.as_secs_f64()
    );
}
