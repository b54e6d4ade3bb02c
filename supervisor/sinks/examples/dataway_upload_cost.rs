//! Measures the supervisor's CPU per point for delivering queued points to Dataway.
//!
//! `cargo run --release -p dk-sinks --features test-util --example dataway_upload_cost --
//! [POINTS] [gzip|nogzip] [v2|v1]` (defaults: 100000, gzip, v2).
//!
//! The fake Dataway runs in a child process (this binary with `fake`), so its decoding is
//! not counted. Phase 1 feeds `POINTS` host-metric points (100 per feed) into a fresh
//! durable queue while the Dataway uploader is parked; phase 2 restarts delivery on that
//! queue with the real Dataway sink and measures this process's CPU time (user + system,
//! all threads) until Dataway has acknowledged every point.

use std::io::{BufRead as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dk_delivery::{Delivery, DeliveryConfig, DeliveryTuning, QueueSettings, Sink, SinkError};
use dk_proto::{Category, FeedOpts, Point, Value};
use dk_sinks::dataway::{DatawayConfig, DatawaySink, Encoding};
use dk_sinks::testing::FakeDataway;
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;

const FEED_BATCH: usize = 100;

/// A sink named like the Dataway sink whose writes never finish: the queue keeps every point.
struct Parked;

impl Sink for Parked {
    fn name(&self) -> &str {
        dk_sinks::dataway::SINK_NAME
    }

    fn write<'a>(
        &'a self,
        _category: Category,
        _points: &'a [Point],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(futures::future::pending())
    }
}

/// Host-metric points shaped like the `cpu`, `mem` and `net` inputs' output.
fn point(i: usize) -> Point {
    let ts = 1_700_000_000_000_000_000 + i as i64 * 1_000_000;
    let p = match i % 3 {
        0 => Point::new("cpu", ts)
            .tag("cpu", format!("cpu{}", i % 16))
            .field("usage_user", Value::F((i % 1000) as f64 / 10.0))
            .field("usage_system", Value::F(3.25))
            .field("usage_idle", Value::F(84.125))
            .field("usage_iowait", Value::F(0.1))
            .field("usage_total", Value::F(15.875)),
        1 => Point::new("mem", ts)
            .field("total", Value::I(16_777_216_000))
            .field("available", Value::I(9_663_676_416 + i as i64))
            .field("used_percent", Value::F(41.5))
            .field("cached", Value::I(1_073_741_824))
            .field("buffered", Value::I(268_435_456)),
        _ => Point::new("net", ts)
            .tag("interface", format!("eth{}", i % 2))
            .field("bytes_recv", Value::I(12_345_678_901 + i as i64))
            .field("bytes_sent", Value::I(9_876_543_210))
            .field("packets_recv", Value::I(1_234_567))
            .field("packets_sent", Value::I(7_654_321))
            .field("err_in", Value::I(0)),
    };
    p.tag("host", "web-01").tag("region", "eu-west-1")
}

/// CPU seconds (user + system, all threads, finished ones too) of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the `)`.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn sample(registry: &Registry, series: &str) -> f64 {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn run_fake() -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeDataway::start("tkn_bench").await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", fake.url())?;
    out.flush()?;
    drop(out);
    // Serve until the parent closes stdin.
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
    })
    .await?;
    fake.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("fake") {
        return run_fake().await;
    }
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let gzip = !args.iter().any(|a| a == "nogzip");
    let encoding = if args.iter().any(|a| a == "v1") {
        Encoding::V1
    } else {
        Encoding::V2
    };

    let mut child = Command::new(std::env::current_exe()?)
        .arg("fake")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut url = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut url)?;
    let url = url.trim().to_string();

    let dir = tempfile::tempdir()?;
    let config = || DeliveryConfig {
        queue: QueueSettings::new(dir.path().join("queue")),
        ..DeliveryConfig::default()
    };
    let tuning = DeliveryTuning {
        shutdown_grace: Duration::from_millis(50),
        ..DeliveryTuning::default()
    };

    // Phase 1: fill the queue.
    let parked: Vec<Arc<dyn Sink>> = vec![Arc::new(Parked)];
    let delivery =
        Delivery::start_tuned(config(), tuning.clone(), parked, &mut Registry::default())?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let mut fed = 0;
    while fed < n {
        let batch: Vec<Point> = (fed..(fed + FEED_BATCH).min(n)).map(point).collect();
        fed += batch.len();
        delivery
            .feed(Category::Metric, "bench", FeedOpts::default(), batch)
            .await?;
    }
    let (feed_cpu, feed_wall) = (cpu_seconds() - cpu0, t0.elapsed());
    delivery.shutdown().await?;
    drop(delivery);

    // Phase 2: upload.
    let mut registry = Registry::default();
    let sink = DatawaySink::new(
        DatawayConfig {
            urls: vec![url],
            gzip,
            content_encoding: encoding,
            hostname: "bench".into(),
            ..DatawayConfig::default()
        },
        &mut registry,
    )?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let sinks: Vec<Arc<dyn Sink>> = vec![Arc::new(sink)];
    let delivery = Delivery::start_tuned(config(), tuning, sinks, &mut registry)?;
    let series = "datakit_io_dataway_point_total{category=\"metric\",status=\"OK\"}";
    while (sample(&registry, series) as usize) < n {
        if t0.elapsed() > Duration::from_secs(300) {
            return Err("Dataway did not acknowledge every point within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (up_cpu, up_wall) = (cpu_seconds() - cpu0, t0.elapsed());
    let bodies = sample(
        &registry,
        "datakit_io_dataway_api_latency_seconds_count{api=\"/v1/write/metric\",status=\"OK\"}",
    );
    let raw = sample(
        &registry,
        "datakit_io_dataway_point_bytes_total{category=\"metric\",enc=\"raw\",status=\"OK\"}",
    );
    delivery.shutdown().await?;
    drop(child.stdin.take());
    let _ = child.wait();

    let per = |cpu: f64| cpu * 1e9 / n as f64;
    writeln!(
        std::io::stdout(),
        "{n} points, {encoding:?}, gzip {gzip}: feed {:.0} ns/point CPU ({feed_wall:.2?}); upload {:.0} ns/point CPU ({up_wall:.2?}, {bodies} bodies, {:.0} raw bytes/point)",
        per(feed_cpu),
        per(up_cpu),
        raw / n as f64
    )?;
    Ok(())
}
