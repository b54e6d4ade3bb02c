//! Tests of `Delivery`: global tags, normalisation, batching, retries, budget and shutdown.

use crate::{PATIENCE, RecordingSink, canon, decode_file, metric, metric_point};
use dk_delivery::{
    Delivery, DeliveryConfig, DeliveryError, DeliveryTuning, FeedOutcome, GlobalTags,
    LocalSinkConfig, Sink, SinkError,
};
use dk_proto::{Category, FeedOpts, Point, Value};
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::timeout;

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Config that never flushes by time, so only the count, or shutdown, flushes.
fn config(max_cache_count: usize) -> DeliveryConfig {
    DeliveryConfig {
        global_tags: GlobalTags {
            host: tags(&[("host", "web-1"), ("env", "prod")]),
            election: tags(&[("cluster", "c1")]),
        },
        flush_interval: Duration::from_secs(3600),
        max_cache_count,
        ..DeliveryConfig::default()
    }
}

fn fast_retries() -> DeliveryTuning {
    DeliveryTuning {
        retry_initial: Duration::from_millis(2),
        retry_max: Duration::from_millis(20),
        shutdown_attempts: 2,
        ..DeliveryTuning::default()
    }
}

fn start_recording(
    config: DeliveryConfig,
    tuning: DeliveryTuning,
    fail_first: u32,
) -> (
    Delivery,
    Arc<RecordingSink>,
    tokio::sync::mpsc::UnboundedReceiver<(Category, usize)>,
    Registry,
) {
    let (sink, rx) = RecordingSink::new("rec", fail_first);
    let sink = Arc::new(sink);
    let mut registry = Registry::default();
    let delivery = Delivery::start_tuned(
        config,
        tuning,
        vec![Arc::clone(&sink) as Arc<dyn Sink>],
        &mut registry,
    )
    .unwrap();
    (delivery, sink, rx, registry)
}

#[tokio::test]
async fn host_tags_are_attached_only_where_the_key_is_absent() {
    let (delivery, sink, _rx, _reg) = start_recording(config(1000), fast_retries(), 0);
    let point = metric_point("cpu0", 1).tag("env", "dev");
    let outcome = delivery
        .feed(Category::Metric, "cpu", FeedOpts::default(), vec![point])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        FeedOutcome {
            accepted: 1,
            dropped: 0
        }
    );
    delivery.shutdown().await.unwrap();
    let got = sink.points(Category::Metric);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get_tag("host"), Some("web-1"));
    assert_eq!(
        got[0].get_tag("env"),
        Some("dev"),
        "the point's own tag wins"
    );
    assert_eq!(got[0].get_tag("cluster"), None);
}

#[tokio::test]
async fn election_feeds_get_the_election_tags_instead_of_the_host_tags() {
    let (delivery, sink, _rx, _reg) = start_recording(config(1000), fast_retries(), 0);
    let opts = FeedOpts {
        election: true,
        no_global_tags: false,
    };
    delivery
        .feed(
            Category::Metric,
            "mysql",
            opts,
            vec![metric_point("cpu0", 1)],
        )
        .await
        .unwrap();
    delivery.shutdown().await.unwrap();
    let got = sink.points(Category::Metric);
    assert_eq!(got[0].get_tag("cluster"), Some("c1"));
    assert_eq!(got[0].get_tag("host"), None);
    assert_eq!(got[0].get_tag("env"), None);
}

#[tokio::test]
async fn feeds_without_global_tags_get_none() {
    let (delivery, sink, _rx, _reg) = start_recording(config(1000), fast_retries(), 0);
    let opts = FeedOpts {
        election: false,
        no_global_tags: true,
    };
    delivery
        .feed(Category::Metric, "cpu", opts, vec![metric_point("cpu0", 1)])
        .await
        .unwrap();
    delivery.shutdown().await.unwrap();
    assert_eq!(
        sink.points(Category::Metric)[0].tags,
        vec![("cpu".to_string(), "cpu0".to_string())]
    );
}

#[tokio::test]
async fn replaced_global_tags_apply_to_later_feeds() {
    let (delivery, sink, _rx, _reg) = start_recording(config(1000), fast_retries(), 0);
    let new_tags = GlobalTags {
        host: tags(&[("host", "web-2")]),
        election: Vec::new(),
    };
    delivery.set_global_tags(new_tags.clone());
    assert_eq!(delivery.global_tags(), new_tags);
    delivery
        .feed(
            Category::Metric,
            "cpu",
            FeedOpts::default(),
            vec![metric_point("cpu0", 1)],
        )
        .await
        .unwrap();
    delivery.shutdown().await.unwrap();
    let got = sink.points(Category::Metric);
    assert_eq!(got[0].get_tag("host"), Some("web-2"));
    assert_eq!(got[0].get_tag("env"), None);
}

#[tokio::test]
async fn metric_string_fields_are_dropped_and_points_left_without_fields_are_counted() {
    let (delivery, sink, _rx, registry) = start_recording(config(1000), fast_retries(), 0);
    let mixed = metric_point("cpu0", 1).field("model", Value::S("xeon".into()));
    let only_string = Point::new("cpu", 1).field("model", Value::S("xeon".into()));
    let outcome = delivery
        .feed(
            Category::Metric,
            "cpu",
            FeedOpts::default(),
            vec![mixed, only_string],
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        FeedOutcome {
            accepted: 1,
            dropped: 1
        }
    );
    delivery.shutdown().await.unwrap();
    let got = sink.points(Category::Metric);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get_field("model"), None);
    assert_eq!(got[0].get_field("n"), Some(&Value::I(1)));
    assert_eq!(
        metric(
            &registry,
            "datakit_io_dropped_point_total",
            &[("category", "metric"), ("reason", "no_field")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &registry,
            "datakit_io_feed_point_total",
            &[("name", "cpu"), ("category", "metric")]
        ),
        2.0
    );
}

#[tokio::test]
async fn a_category_is_flushed_once_it_holds_max_cache_count_points() {
    let (delivery, sink, mut rx, registry) = start_recording(config(10), fast_retries(), 0);
    let first: Vec<Point> = (0..6).map(|i| metric_point("cpu0", i)).collect();
    let second: Vec<Point> = (6..15).map(|i| metric_point("cpu0", i)).collect();
    delivery
        .feed(Category::Metric, "cpu", FeedOpts::default(), first)
        .await
        .unwrap();
    delivery
        .feed(Category::Metric, "cpu", FeedOpts::default(), second)
        .await
        .unwrap();
    let (category, n) = timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
    assert_eq!((category, n), (Category::Metric, 15));
    assert_eq!(sink.points(Category::Metric).len(), 15);
    assert_eq!(
        metric(
            &registry,
            "datakit_io_flush_total",
            &[("category", "metric")]
        ),
        1.0
    );
    delivery
        .feed(
            Category::Metric,
            "cpu",
            FeedOpts::default(),
            vec![metric_point("cpu0", 99)],
        )
        .await
        .unwrap();
    assert_eq!(
        sink.batches.lock().unwrap().len(),
        1,
        "one point below the threshold stays buffered"
    );
    delivery.shutdown().await.unwrap();
    assert_eq!(sink.points(Category::Metric).len(), 16);
    assert_eq!(
        metric(
            &registry,
            "datakit_io_queue_points",
            &[("category", "metric")]
        ),
        0.0
    );
}

#[tokio::test]
async fn a_category_is_flushed_every_flush_interval() {
    let cfg = DeliveryConfig {
        flush_interval: Duration::from_millis(30),
        ..config(1000)
    };
    let (delivery, sink, mut rx, _reg) = start_recording(cfg, fast_retries(), 0);
    let points: Vec<Point> = (0..3).map(|i| metric_point("cpu0", i)).collect();
    delivery
        .feed(Category::Logging, "logfwd", FeedOpts::default(), points)
        .await
        .unwrap();
    let (category, n) = timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
    assert_eq!((category, n), (Category::Logging, 3));
    assert_eq!(sink.points(Category::Logging).len(), 3);
    delivery.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failing_sink_gets_the_batch_again_and_nothing_is_lost() {
    let (delivery, sink, mut rx, registry) = start_recording(config(10), fast_retries(), 3);
    let points: Vec<Point> = (0..10).map(|i| metric_point("cpu0", i)).collect();
    delivery
        .feed(Category::Metric, "cpu", FeedOpts::default(), points.clone())
        .await
        .unwrap();
    let (_, n) = timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
    assert_eq!(n, 10);
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 4);
    delivery.shutdown().await.unwrap();
    let got: Vec<i64> = sink
        .points(Category::Metric)
        .iter()
        .map(|p| p.time)
        .collect();
    let want: Vec<i64> = points.iter().map(|p| p.time).collect();
    assert_eq!(got, want);
    let labels = |status| [("sink", "rec"), ("category", "metric"), ("status", status)];
    assert_eq!(
        metric(&registry, "datakit_io_sink_point_total", &labels("failed")),
        30.0
    );
    assert_eq!(
        metric(&registry, "datakit_io_sink_point_total", &labels("ok")),
        10.0
    );
}

#[tokio::test]
async fn a_batch_is_retried_only_on_the_sink_that_failed() {
    let (good, _good_rx) = RecordingSink::new("good", 0);
    let (bad, mut bad_rx) = RecordingSink::new("bad", 2);
    let (good, bad) = (Arc::new(good), Arc::new(bad));
    let mut registry = Registry::default();
    let delivery = Delivery::start_tuned(
        config(5),
        fast_retries(),
        vec![
            Arc::clone(&good) as Arc<dyn Sink>,
            Arc::clone(&bad) as Arc<dyn Sink>,
        ],
        &mut registry,
    )
    .unwrap();
    let points: Vec<Point> = (0..5).map(|i| metric_point("cpu0", i)).collect();
    delivery
        .feed(Category::Metric, "cpu", FeedOpts::default(), points)
        .await
        .unwrap();
    timeout(PATIENCE, bad_rx.recv()).await.unwrap().unwrap();
    delivery.shutdown().await.unwrap();
    assert_eq!(good.attempts.load(Ordering::SeqCst), 1);
    assert_eq!(bad.attempts.load(Ordering::SeqCst), 3);
    assert_eq!(good.points(Category::Metric).len(), 5);
    assert_eq!(bad.points(Category::Metric).len(), 5);
}

/// A sink that always fails.
struct BrokenSink;

impl Sink for BrokenSink {
    fn name(&self) -> &str {
        "broken"
    }

    fn write<'a>(
        &'a self,
        _category: Category,
        _points: &'a [Point],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async {
            Err(SinkError::Unavailable {
                sink: "broken".into(),
                message: "upstream down".into(),
            })
        })
    }
}

#[tokio::test]
async fn feeds_are_refused_as_busy_once_the_byte_budget_is_used_up() {
    let mut registry = Registry::default();
    let tuning = DeliveryTuning {
        max_buffer_bytes: 1000,
        ..fast_retries()
    };
    let delivery = Delivery::start_tuned(
        config(1),
        tuning,
        vec![Arc::new(BrokenSink) as Arc<dyn Sink>],
        &mut registry,
    )
    .unwrap();
    let mut accepted = 0;
    let busy = loop {
        let points: Vec<Point> = (0..5).map(|i| metric_point("cpu0", i)).collect();
        match delivery
            .feed(Category::Metric, "cpu", FeedOpts::default(), points)
            .await
        {
            Ok(outcome) => accepted += outcome.accepted,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "the budget never applied");
    };
    assert!(matches!(busy, DeliveryError::Busy(_)), "{busy:?}");
    assert!(accepted > 0);
    assert_eq!(
        metric(
            &registry,
            "datakit_io_dropped_point_total",
            &[("category", "metric"), ("reason", "busy")]
        ),
        5.0
    );
    assert_eq!(
        metric(
            &registry,
            "datakit_io_queue_points",
            &[("category", "metric")]
        ),
        f64::from(accepted),
        "refused points are not queued, accepted ones stay queued"
    );
    match delivery.shutdown().await {
        Err(DeliveryError::Undelivered { points, detail }) => {
            assert_eq!(points, u64::from(accepted));
            assert!(detail.contains("broken"), "{detail}");
        }
        other => panic!("shutdown must report the undelivered points: {other:?}"),
    }
    assert_eq!(
        metric(
            &registry,
            "datakit_io_dropped_point_total",
            &[("category", "metric"), ("reason", "undelivered")]
        ),
        f64::from(accepted)
    );
}

#[tokio::test]
async fn shutdown_is_idempotent_and_later_feeds_are_refused() {
    let (delivery, sink, _rx, _reg) = start_recording(config(1000), fast_retries(), 0);
    delivery
        .feed(
            Category::Object,
            "host_object",
            FeedOpts::default(),
            vec![metric_point("x", 1)],
        )
        .await
        .unwrap();
    let clone = delivery.clone();
    let (a, b) = tokio::join!(delivery.shutdown(), clone.shutdown());
    a.unwrap();
    b.unwrap();
    delivery.shutdown().await.unwrap();
    assert_eq!(sink.points(Category::Object).len(), 1);
    let refused = delivery
        .feed(
            Category::Object,
            "host_object",
            FeedOpts::default(),
            vec![metric_point("x", 2)],
        )
        .await;
    assert!(matches!(refused, Err(DeliveryError::Closed)), "{refused:?}");
}

#[test]
fn start_outside_a_tokio_runtime_is_an_error() {
    let mut registry = Registry::default();
    let result = Delivery::start(DeliveryConfig::default(), Vec::new(), &mut registry);
    assert!(matches!(result, Err(DeliveryError::NoRuntime)));
}

#[tokio::test]
async fn an_unusable_local_directory_fails_start_with_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let cfg = DeliveryConfig {
        local: Some(LocalSinkConfig::new(file.join("data"))),
        ..DeliveryConfig::default()
    };
    let mut registry = Registry::default();
    match Delivery::start(cfg, Vec::new(), &mut registry) {
        Err(e @ DeliveryError::Io(_)) => {
            assert!(e.to_string().contains("not-a-dir"), "{e}");
        }
        Err(e) => panic!("want an Io error, got {e:?}"),
        Ok(_) => panic!("want an Io error, got a delivery"),
    }
}

#[tokio::test]
async fn shutdown_flushes_every_fed_point_to_the_local_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = DeliveryConfig {
        local: Some(LocalSinkConfig::new(tmp.path())),
        ..config(7)
    };
    let mut registry = Registry::default();
    let delivery = Delivery::start(cfg, Vec::new(), &mut registry).unwrap();
    let metrics: Vec<Point> = (0..20).map(|i| metric_point("cpu0", i)).collect();
    let logs: Vec<Point> = (0..3)
        .map(|i| {
            Point::new("nginx", 1_700_000_000_000_000_000 + i)
                .tag("status", "info")
                .field("message", Value::S(format!("GET /{i}")))
        })
        .collect();
    for chunk in metrics.chunks(3) {
        delivery
            .feed(Category::Metric, "cpu", FeedOpts::default(), chunk.to_vec())
            .await
            .unwrap();
    }
    delivery
        .feed(
            Category::Logging,
            "logging",
            FeedOpts {
                election: false,
                no_global_tags: true,
            },
            logs.clone(),
        )
        .await
        .unwrap();
    delivery.shutdown().await.unwrap();

    let with_tags = |p: &Point| canon(p.clone().tag("host", "web-1").tag("env", "prod"));
    let got: Vec<Point> = decode_file(&tmp.path().join("metric/current.lp"))
        .into_iter()
        .map(canon)
        .collect();
    assert_eq!(got, metrics.iter().map(with_tags).collect::<Vec<_>>());
    let got: Vec<Point> = decode_file(&tmp.path().join("logging/current.lp"))
        .into_iter()
        .map(canon)
        .collect();
    assert_eq!(got, logs.into_iter().map(canon).collect::<Vec<_>>());
    assert_eq!(
        metric(
            &registry,
            "datakit_io_sink_point_total",
            &[("sink", "local"), ("category", "metric"), ("status", "ok")]
        ),
        20.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_feeders_land_exactly_once_in_the_files() {
    const TASKS: i64 = 16;
    const FEEDS: i64 = 40;
    const POINTS: i64 = 10;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = DeliveryConfig {
        local: Some(LocalSinkConfig {
            max_file_bytes: 64 * 1024,
            max_files: 1000,
            ..LocalSinkConfig::new(tmp.path())
        }),
        flush_interval: Duration::from_millis(5),
        ..config(100)
    };
    let mut registry = Registry::default();
    let delivery = Delivery::start(cfg, Vec::new(), &mut registry).unwrap();
    let mut feeders = Vec::new();
    for task in 0..TASKS {
        let delivery = delivery.clone();
        feeders.push(tokio::spawn(async move {
            for feed in 0..FEEDS {
                let points: Vec<Point> = (0..POINTS)
                    .map(|i| metric_point(&format!("t{task}"), feed * POINTS + i))
                    .collect();
                delivery
                    .feed(Category::Metric, "cpu", FeedOpts::default(), points)
                    .await
                    .unwrap();
            }
        }));
    }
    for feeder in feeders {
        feeder.await.unwrap();
    }
    delivery.shutdown().await.unwrap();

    let mut seen = HashSet::new();
    let mut total = 0;
    for entry in std::fs::read_dir(tmp.path().join("metric")).unwrap() {
        for p in decode_file(&entry.unwrap().path()) {
            total += 1;
            seen.insert((p.get_tag("cpu").unwrap().to_string(), p.time));
        }
    }
    assert_eq!(total, TASKS * FEEDS * POINTS);
    assert_eq!(seen.len() as i64, TASKS * FEEDS * POINTS, "no duplicates");
}

/// A sink that refuses every batch for good.
struct RejectingSink(std::sync::atomic::AtomicU32);

impl Sink for RejectingSink {
    fn name(&self) -> &str {
        "rejecting"
    }

    fn write<'a>(
        &'a self,
        _category: Category,
        _points: &'a [Point],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Err(SinkError::Rejected {
                sink: "rejecting".into(),
                message: "400 bad request".into(),
            })
        })
    }
}

#[tokio::test]
async fn a_rejected_batch_is_not_retried_and_is_counted() {
    let sink = Arc::new(RejectingSink(std::sync::atomic::AtomicU32::new(0)));
    let mut registry = Registry::default();
    let delivery = Delivery::start_tuned(
        config(1000),
        fast_retries(),
        vec![Arc::clone(&sink) as Arc<dyn Sink>],
        &mut registry,
    )
    .unwrap();
    let points: Vec<Point> = (0..4).map(|i| metric_point("cpu0", i)).collect();
    delivery
        .feed(Category::Metric, "cpu", FeedOpts::default(), points)
        .await
        .unwrap();
    delivery.shutdown().await.unwrap();
    assert_eq!(sink.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        metric(
            &registry,
            "datakit_io_sink_point_total",
            &[("sink", "rejecting"), ("status", "rejected")]
        ),
        4.0
    );
}

#[test]
fn the_feed_and_shutdown_futures_can_be_spawned() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut registry = Registry::default();
    let delivery = Delivery::start(DeliveryConfig::default(), Vec::new(), &mut registry).unwrap();
    let d = delivery.clone();
    let feed = async move {
        d.feed(Category::Metric, "cpu", FeedOpts::default(), Vec::new())
            .await
    };
    assert_send(&feed);
    let d = delivery;
    let shutdown = async move { d.shutdown().await };
    assert_send(&shutdown);
    let outcome = runtime.block_on(feed).unwrap();
    assert_eq!(outcome, FeedOutcome::default());
    runtime.block_on(shutdown).unwrap();
}
