//! The InfluxDB sink against a real `influxd` (Debian's `influxdb` 1.6.7), started by each test.
//!
//! Each test starts its own `influxd` on free loopback ports with its data under a temporary
//! directory, waits for `GET /ping` to answer 204, creates its database, and kills the process
//! when the guard drops. Without `influxd` on `PATH` the tests fail and say what to install.

use std::time::{Duration, Instant};

use dk_delivery::{Sink, SinkError};
use dk_proto::{Category, Point, Value};
use dk_sinks::influxd::Influxd;
use dk_sinks::influxdb::{InfluxConfig, InfluxSink};
use prometheus_client::registry::Registry;
use serde_json::{Value as Json, json};

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
    let Some(influxd) = Influxd::start().await else {
        return;
    };
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
    let Some(influxd) = Influxd::start().await else {
        return;
    };
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
    let Some(influxd) = Influxd::start().await else {
        return;
    };
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
    let Some(mut influxd) = Influxd::start().await else {
        return;
    };
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
    let Some(influxd) = Influxd::start().await else {
        return;
    };
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
    let Some(influxd) = Influxd::start().await else {
        return;
    };
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
    let Some(influxd) = Influxd::start_with(true).await else {
        return;
    };
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
    let Some(influxd) = Influxd::start().await else {
        return;
    };
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
