//! Tests of `Delivery`: global tags, normalisation, the durable queue (crash, caps, no_drop),
//! independent sinks, rejections, retries, shutdown and the queue metrics.

use crate::{
    Key, PATIENCE, RecordingSink, Written, canon, decode_file, exposition, key, metric,
    metric_point, wait_points,
};
use dk_delivery::{
    Delivery, DeliveryConfig, DeliveryError, DeliveryTuning, FeedOutcome, GlobalTags,
    QueueSettings, Sink,
};
use dk_proto::{Category, FeedOpts, Point, Value};
use dk_sinks::local::{LocalFileSink, LocalSinkConfig};
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::timeout;

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The queue under `dir`, without the free-disk check (the test machine's disk is not ours).
fn queue(dir: &Path) -> QueueSettings {
    QueueSettings {
        max_disk_ratio: 1.0,
        commit_window: Duration::from_millis(1),
        ..QueueSettings::new(dir)
    }
}

/// Host and election tags, and the queue under `dir`.
fn config(dir: &Path, max_cache_count: usize) -> DeliveryConfig {
    DeliveryConfig {
        global_tags: GlobalTags {
            host: tags(&[("host", "web-1"), ("env", "prod")]),
            election: tags(&[("cluster", "c1")]),
        },
        max_cache_count,
        queue: queue(dir),
        ..DeliveryConfig::default()
    }
}

/// Fast retries, a generous shutdown grace, frequent queue metrics.
fn tuning() -> DeliveryTuning {
    DeliveryTuning {
        retry_initial: Duration::from_millis(2),
        retry_max: Duration::from_millis(20),
        shutdown_attempts: 2,
        shutdown_grace: PATIENCE,
        stats_interval: Duration::from_millis(20),
    }
}

fn start(
    config: DeliveryConfig,
    tuning: DeliveryTuning,
    sinks: &[Arc<RecordingSink>],
) -> (Delivery, Registry) {
    let mut registry = Registry::default();
    let sinks = sinks
        .iter()
        .map(|s| Arc::clone(s) as Arc<dyn Sink>)
        .collect();
    let delivery = Delivery::start_tuned(config, tuning, sinks, &mut registry).unwrap();
    (delivery, registry)
}

/// One recording sink named `rec`.
fn start_recording(
    config: DeliveryConfig,
    fail_first: u32,
) -> (Delivery, Arc<RecordingSink>, Written, Registry) {
    let (sink, rx) = RecordingSink::new("rec", fail_first);
    let sink = Arc::new(sink);
    let (delivery, registry) = start(config, tuning(), std::slice::from_ref(&sink));
    (delivery, sink, rx, registry)
}

/// `n` metric points of `cpu` numbered from `from`.
fn points(cpu: &str, from: i64, n: i64) -> Vec<Point> {
    (from..from + n).map(|i| metric_point(cpu, i)).collect()
}

async fn feed(delivery: &Delivery, points: Vec<Point>) -> FeedOutcome {
    delivery
        .feed(Category::Metric, "cpu", FeedOpts::default(), points)
        .await
        .unwrap()
}

/// Shuts down, failing (instead of hanging) if that takes far longer than any grace used here.
async fn shut(delivery: &Delivery) {
    timeout(2 * PATIENCE, delivery.shutdown())
        .await
        .expect("shutdown hangs")
        .unwrap();
}

async fn entered(sink: &RecordingSink) {
    timeout(PATIENCE, sink.entered.notified())
        .await
        .expect("the sink was never called");
}

fn keys(points: &[Point]) -> Vec<Key> {
    points.iter().map(key).collect()
}

/// Points delivered more than once, for the failure message of at-least-once assertions.
fn duplicates(delivered: &[Key]) -> usize {
    let mut seen = HashMap::new();
    for k in delivered {
        *seen.entry(k).or_insert(0usize) += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

#[tokio::test]
async fn host_tags_are_attached_only_where_the_key_is_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let (delivery, _sink, mut rx, _reg) = start_recording(config(tmp.path(), 1000), 0);
    let point = metric_point("cpu0", 1).tag("env", "dev");
    let outcome = feed(&delivery, vec![point]).await;
    assert_eq!(
        outcome,
        FeedOutcome {
            accepted: 1,
            dropped: 0
        }
    );
    let got = wait_points(&mut rx, Category::Metric, 1).await;
    assert_eq!(got[0].get_tag("host"), Some("web-1"));
    assert_eq!(
        got[0].get_tag("env"),
        Some("dev"),
        "the point's own tag wins"
    );
    assert_eq!(got[0].get_tag("cluster"), None);
    shut(&delivery).await;
}

#[tokio::test]
async fn election_feeds_get_the_election_tags_instead_of_the_host_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let (delivery, _sink, mut rx, _reg) = start_recording(config(tmp.path(), 1000), 0);
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
    let got = wait_points(&mut rx, Category::Metric, 1).await;
    assert_eq!(got[0].get_tag("cluster"), Some("c1"));
    assert_eq!(got[0].get_tag("host"), None);
    assert_eq!(got[0].get_tag("env"), None);
    shut(&delivery).await;
}

#[tokio::test]
async fn feeds_without_global_tags_get_none() {
    let tmp = tempfile::tempdir().unwrap();
    let (delivery, _sink, mut rx, _reg) = start_recording(config(tmp.path(), 1000), 0);
    let opts = FeedOpts {
        election: false,
        no_global_tags: true,
    };
    delivery
        .feed(Category::Metric, "cpu", opts, vec![metric_point("cpu0", 1)])
        .await
        .unwrap();
    let got = wait_points(&mut rx, Category::Metric, 1).await;
    assert_eq!(got[0].tags, vec![("cpu".to_string(), "cpu0".to_string())]);
    shut(&delivery).await;
}

#[tokio::test]
async fn replaced_global_tags_apply_to_later_feeds() {
    let tmp = tempfile::tempdir().unwrap();
    let (delivery, _sink, mut rx, _reg) = start_recording(config(tmp.path(), 1000), 0);
    let new_tags = GlobalTags {
        host: tags(&[("host", "web-2")]),
        election: Vec::new(),
    };
    delivery.set_global_tags(new_tags.clone());
    assert_eq!(delivery.global_tags(), new_tags);
    feed(&delivery, vec![metric_point("cpu0", 1)]).await;
    let got = wait_points(&mut rx, Category::Metric, 1).await;
    assert_eq!(got[0].get_tag("host"), Some("web-2"));
    assert_eq!(got[0].get_tag("env"), None);
    shut(&delivery).await;
}

#[tokio::test]
async fn metric_string_fields_are_dropped_and_points_left_without_fields_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let (delivery, sink, mut rx, registry) = start_recording(config(tmp.path(), 1000), 0);
    let mixed = metric_point("cpu0", 1).field("model", Value::S("xeon".into()));
    let only_string = Point::new("cpu", 1).field("model", Value::S("xeon".into()));
    let outcome = feed(&delivery, vec![mixed, only_string]).await;
    assert_eq!(
        outcome,
        FeedOutcome {
            accepted: 1,
            dropped: 1
        }
    );
    let nothing_valid = feed(&delivery, vec![Point::new("cpu", 2)]).await;
    assert_eq!(
        nothing_valid,
        FeedOutcome {
            accepted: 0,
            dropped: 1
        }
    );
    feed(&delivery, vec![metric_point("cpu0", 3)]).await;
    let got = wait_points(&mut rx, Category::Metric, 2).await;
    assert_eq!(
        keys(&got),
        keys(&[metric_point("cpu0", 1), metric_point("cpu0", 3)]),
        "a feed without valid points adds nothing to the queue"
    );
    assert_eq!(got[0].get_field("model"), None);
    assert_eq!(got[0].get_field("n"), Some(&Value::I(1)));
    assert_eq!(
        sink.attempts.load(Ordering::SeqCst) as usize,
        sink.batch_sizes(Category::Metric).len()
    );
    assert_eq!(
        metric(
            &registry,
            "datakit_io_dropped_point_total",
            &[("category", "metric"), ("reason", "no_field")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &registry,
            "datakit_io_feed_point_total",
            &[("name", "cpu"), ("category", "metric")]
        ),
        4.0
    );
    shut(&delivery).await;
}

#[tokio::test]
async fn a_feed_sets_the_last_feed_time_and_observes_its_cost_by_input_and_category() {
    let tmp = tempfile::tempdir().unwrap();
    let (delivery, _sink, mut rx, registry) = start_recording(config(tmp.path(), 1000), 0);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    feed(&delivery, vec![metric_point("cpu0", 1)]).await;
    feed(&delivery, vec![metric_point("cpu0", 2)]).await;
    wait_points(&mut rx, Category::Metric, 2).await;
    let last = metric(
        &registry,
        "datakit_io_last_feed_timestamp_seconds",
        &[("name", "cpu"), ("category", "metric")],
    );
    assert!(
        last >= before.floor() && last < before + 60.0,
        "last feed {last}, test started {before}"
    );
    assert_eq!(
        metric(
            &registry,
            "datakit_io_feed_cost_seconds_count",
            &[("category", "metric"), ("from", "cpu")]
        ),
        2.0
    );
    assert!(
        metric(
            &registry,
            "datakit_io_feed_cost_seconds_sum",
            &[("category", "metric"), ("from", "cpu")]
        ) > 0.0
    );
    shut(&delivery).await;
}

#[tokio::test]
async fn a_sink_write_carries_at_most_max_cache_count_points() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, mut rx) = RecordingSink::gated("rec");
    let sink = Arc::new(sink);
    let (delivery, _reg) = start(
        config(tmp.path(), 10),
        tuning(),
        std::slice::from_ref(&sink),
    );
    // The uploader holds the first record at the gate while the others queue up.
    let mut fed = points("cpu0", 0, 3);
    feed(&delivery, fed.clone()).await;
    entered(&sink).await;
    for (from, n) in [(3, 25), (28, 4), (32, 4), (36, 4)] {
        let batch = points("cpu0", from, n);
        fed.extend(batch.iter().cloned());
        feed(&delivery, batch).await;
    }
    sink.open_gate();
    let got = wait_points(&mut rx, Category::Metric, fed.len()).await;
    assert_eq!(keys(&got), keys(&fed), "every point once, in order");
    assert_eq!(
        sink.batch_sizes(Category::Metric),
        vec![3, 10, 10, 5, 8, 4],
        "a 25-point feed is split; small records are grouped up to 10 points"
    );
    shut(&delivery).await;
}

#[tokio::test]
async fn a_failing_sink_gets_the_batch_again_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let (delivery, sink, mut rx, registry) = start_recording(config(tmp.path(), 10), 3);
    let fed = points("cpu0", 0, 10);
    feed(&delivery, fed.clone()).await;
    let got = wait_points(&mut rx, Category::Metric, 10).await;
    assert_eq!(keys(&got), keys(&fed));
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 4);
    let labels = |status| [("sink", "rec"), ("category", "metric"), ("status", status)];
    assert_eq!(
        metric(&registry, "datakit_io_sink_point_total", &labels("failed")),
        30.0
    );
    assert_eq!(
        metric(&registry, "datakit_io_sink_point_total", &labels("ok")),
        10.0
    );
    assert_eq!(
        metric(
            &registry,
            "datakit_io_sink_retry_total",
            &[("sink", "rec"), ("category", "metric")]
        ),
        3.0
    );
    shut(&delivery).await;
}

/// Feeds from several tasks in a runtime that is dropped (a crash: no shutdown) once `crash_after`
/// points were accepted, while feeds and uploads are still in flight; the sink lets 3 writes
/// through and then hangs. Returns the accepted and the delivered points.
fn feed_until_crash(dir: &Path, crash_after: usize) -> (Vec<Key>, Vec<Key>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sink, _rx) = RecordingSink::gated_after("rec", 3);
    let sink = Arc::new(sink);
    let delivery = {
        let _guard = runtime.enter();
        start(config(dir, 1000), tuning(), std::slice::from_ref(&sink)).0
    };
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let (enough_tx, enough_rx) = std::sync::mpsc::channel();
    for task in 0..4 {
        let delivery = delivery.clone();
        let accepted = Arc::clone(&accepted);
        let enough = enough_tx.clone();
        runtime.spawn(async move {
            let cpu = format!("t{task}");
            for n in (0..).step_by(5) {
                let batch = points(&cpu, n, 5);
                let batch_keys = keys(&batch);
                feed(&delivery, batch).await;
                let mut accepted = accepted.lock().unwrap();
                accepted.extend(batch_keys);
                if accepted.len() >= crash_after {
                    let _ = enough.send(());
                }
            }
        });
    }
    enough_rx.recv_timeout(PATIENCE).unwrap();
    // The crash: nothing is shut down; tasks die wherever they are.
    drop(delivery);
    drop(runtime);
    let accepted = accepted.lock().unwrap().clone();
    let delivered = keys(&sink.points(Category::Metric));
    (accepted, delivered)
}

#[test]
fn every_accepted_point_is_delivered_after_a_crash_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (accepted, before) = feed_until_crash(tmp.path(), 1000);
    assert!(accepted.len() >= 1000);
    assert!(
        before.len() < accepted.len(),
        "the sink hung: the crash must leave points queued"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (sink, mut rx) = RecordingSink::new("rec", 0);
    let sink = Arc::new(sink);
    let (delivery, _reg) = {
        let _guard = runtime.enter();
        start(
            config(tmp.path(), 1000),
            tuning(),
            std::slice::from_ref(&sink),
        )
    };
    let mut delivered = before;
    let missing = runtime.block_on(async {
        let want: HashSet<_> = accepted.iter().cloned().collect();
        let mut missing: HashSet<_> = want
            .difference(&delivered.iter().cloned().collect())
            .cloned()
            .collect();
        while !missing.is_empty() {
            match timeout(PATIENCE, rx.recv()).await {
                Ok(Some((_, batch))) => {
                    for k in keys(&batch) {
                        missing.remove(&k);
                        delivered.push(k);
                    }
                }
                _ => break,
            }
        }
        shut(&delivery).await;
        missing
    });
    assert!(
        missing.is_empty(),
        "{} of {} accepted points were lost ({} delivered, {} duplicates)",
        missing.len(),
        accepted.len(),
        delivered.len(),
        duplicates(&delivered)
    );
    let fed_by_tasks = delivered.iter().all(|(cpu, _)| cpu.starts_with('t'));
    assert!(fed_by_tasks, "only fed points are delivered");
}

#[tokio::test]
async fn each_sink_reads_at_its_own_position_so_a_failing_one_delays_no_other() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, mut good_rx) = RecordingSink::new("good", 0);
    let (bad, mut bad_rx) = RecordingSink::new("bad", 0);
    bad.failing.store(true, Ordering::SeqCst);
    let (good, bad) = (Arc::new(good), Arc::new(bad));
    let (delivery, registry) = start(
        config(tmp.path(), 1000),
        tuning(),
        &[Arc::clone(&good), Arc::clone(&bad)],
    );
    let mut fed = Vec::new();
    for i in 0..20 {
        let batch = points("cpu0", i * 5, 5);
        fed.extend(keys(&batch));
        feed(&delivery, batch).await;
    }
    entered(&bad).await;
    let got = wait_points(&mut good_rx, Category::Metric, fed.len()).await;
    assert_eq!(
        keys(&got),
        fed,
        "the healthy sink got everything, once, in order"
    );
    assert!(bad.points(Category::Metric).is_empty());

    bad.failing.store(false, Ordering::SeqCst);
    let got = wait_points(&mut bad_rx, Category::Metric, fed.len()).await;
    assert_eq!(keys(&got), fed, "the recovered sink got everything too");
    shut(&delivery).await;
    assert_eq!(good.points(Category::Metric).len(), fed.len());
    let retries = |sink| {
        metric(
            &registry,
            "datakit_io_sink_retry_total",
            &[("sink", sink), ("category", "metric")],
        )
    };
    assert!(retries("bad") >= 1.0);
    assert_eq!(retries("good"), 0.0);
}

#[tokio::test]
async fn a_rejected_batch_is_dropped_counted_and_never_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, mut rx) = RecordingSink::new("rec", 0);
    sink.reject_next.store(1, Ordering::SeqCst);
    let sink = Arc::new(sink);
    let (delivery, registry) = start(
        config(tmp.path(), 1000),
        tuning(),
        std::slice::from_ref(&sink),
    );
    feed(&delivery, points("cpu0", 0, 4)).await;
    entered(&sink).await;
    let accepted = points("cpu0", 100, 2);
    feed(&delivery, accepted.clone()).await;
    let got = wait_points(&mut rx, Category::Metric, 2).await;
    assert_eq!(keys(&got), keys(&accepted));
    assert_eq!(
        sink.attempts.load(Ordering::SeqCst),
        2,
        "no retry of the rejected batch"
    );
    assert_eq!(
        metric(
            &registry,
            "datakit_io_dropped_point_total",
            &[("category", "metric"), ("reason", "rejected")]
        ),
        4.0
    );
    assert_eq!(
        metric(
            &registry,
            "datakit_io_sink_point_total",
            &[("sink", "rec"), ("status", "rejected")]
        ),
        4.0
    );
    shut(&delivery).await;
    drop(delivery);

    // After a restart only new points arrive: the rejected batch is gone from the queue.
    let (sink, mut rx) = RecordingSink::new("rec", 0);
    let sink = Arc::new(sink);
    let (delivery, _reg) = start(
        config(tmp.path(), 1000),
        tuning(),
        std::slice::from_ref(&sink),
    );
    let marker = points("marker", 0, 1);
    feed(&delivery, marker.clone()).await;
    let got = wait_points(&mut rx, Category::Metric, 1).await;
    assert_eq!(keys(&got), keys(&marker));
    shut(&delivery).await;
    assert_eq!(keys(&sink.points(Category::Metric)), keys(&marker));
}

#[tokio::test]
async fn a_full_no_drop_queue_refuses_feeds_as_busy_until_the_sink_drains() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 1000);
    cfg.queue.max_disk_bytes = 4096;
    cfg.queue.no_drop = vec![Category::Metric];
    let (sink, mut rx) = RecordingSink::gated("rec");
    let sink = Arc::new(sink);
    let (delivery, registry) = start(cfg, tuning(), std::slice::from_ref(&sink));
    let mut accepted = points("cpu0", 0, 5);
    feed(&delivery, accepted.clone()).await;
    entered(&sink).await;
    let busy = loop {
        let batch = points("cpu0", accepted.len() as i64, 5);
        match delivery
            .feed(Category::Metric, "cpu", FeedOpts::default(), batch.clone())
            .await
        {
            Ok(_) => accepted.extend(batch),
            Err(e) => break e,
        }
        assert!(accepted.len() < 1000, "the queue cap never applied");
    };
    let DeliveryError::Busy(why) = &busy else {
        panic!("want Busy, got {busy:?}");
    };
    assert!(why.contains("no_drop_categories"), "{why}");
    assert!(accepted.len() > 5);
    assert_eq!(
        metric(
            &registry,
            "datakit_io_dropped_point_total",
            &[("category", "metric"), ("reason", "busy")]
        ),
        5.0
    );

    sink.open_gate();
    let got = wait_points(&mut rx, Category::Metric, accepted.len()).await;
    assert_eq!(keys(&got), keys(&accepted), "nothing accepted was dropped");
    // Busy means "retry later": retry as a caller does until the drained queue has room.
    let again = points("cpu0", 5000, 5);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match delivery
            .feed(Category::Metric, "cpu", FeedOpts::default(), again.clone())
            .await
        {
            Ok(outcome) => {
                assert_eq!(outcome.accepted, 5);
                break;
            }
            Err(DeliveryError::Busy(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("the drained queue still refuses: {e}"),
        }
    }
    let got = wait_points(&mut rx, Category::Metric, 5).await;
    assert_eq!(keys(&got), keys(&again));
    shut(&delivery).await;
}

#[tokio::test]
async fn a_feed_larger_than_the_whole_queue_cap_is_rejected_for_good_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 1000);
    cfg.queue.max_disk_bytes = 4096;
    let (delivery, _sink, _rx, registry) = start_recording(cfg, 0);
    let big = Point::new("app", 1).field("message", Value::S("x".repeat(8000)));
    let refused = delivery
        .feed(Category::Logging, "app", FeedOpts::default(), vec![big])
        .await;
    let Err(DeliveryError::Rejected(why)) = &refused else {
        panic!("want Rejected, got {refused:?}");
    };
    assert!(why.contains("max_capacity_gb"), "{why}");
    assert_eq!(
        metric(
            &registry,
            "datakit_io_dropped_point_total",
            &[("category", "logging"), ("reason", "too_large")]
        ),
        1.0
    );
    // A point that fits is still taken.
    assert_eq!(feed(&delivery, points("cpu0", 2, 1)).await.accepted, 1);
    shut(&delivery).await;
}

#[tokio::test]
async fn a_full_capped_queue_evicts_its_oldest_points_and_counts_them_in_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 1000);
    cfg.queue.max_disk_bytes = 4096;
    let (sink, mut rx) = RecordingSink::gated("rec");
    let sink = Arc::new(sink);
    let (delivery, registry) = start(cfg, tuning(), std::slice::from_ref(&sink));
    feed(&delivery, points("cpu0", 0, 5)).await;
    entered(&sink).await;
    let mut fed = 5;
    for _ in 0..60 {
        let outcome = feed(&delivery, points("cpu0", fed, 5)).await;
        assert_eq!(outcome.accepted, 5, "a capped queue never refuses");
        fed += 5;
    }
    let newest = metric_point("cpu0", fed - 1);
    sink.open_gate();
    let mut delivered = HashSet::new();
    while !delivered.contains(&key(&newest)) {
        let (_, batch) = timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
        delivered.extend(keys(&batch));
    }
    // Shutdown publishes the queue metrics a last time.
    shut(&delivery).await;
    let text = exposition(&registry);
    let prefix = "datakit_io_dropped_point_total{category=\"metric\",reason=\"evicted_cap\"} ";
    let evicted: usize = text
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no eviction count in /metrics:\n{text}"))
        .parse()
        .unwrap();
    let fed = fed as usize;
    assert!(evicted > 0 && evicted < fed, "evicted {evicted} of {fed}");
    assert!(delivered.len() < fed, "the oldest points were dropped");
    assert!(
        delivered.len() + evicted >= fed,
        "every point was delivered or counted: {} delivered, {evicted} evicted, {fed} fed",
        delivered.len()
    );
}

#[tokio::test]
async fn shutdown_drains_the_queues_into_a_healthy_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, _rx) = RecordingSink::gated("rec");
    let sink = Arc::new(sink);
    let (delivery, _reg) = start(config(tmp.path(), 7), tuning(), std::slice::from_ref(&sink));
    let mut fed = Vec::new();
    for i in 0..10 {
        let batch = points("cpu0", i * 5, 5);
        fed.extend(keys(&batch));
        feed(&delivery, batch).await;
    }
    let logs: Vec<Point> = (0..3)
        .map(|i| {
            Point::new("nginx", 1_700_000_000_000_000_000 + i)
                .tag("status", "info")
                .field("message", Value::S(format!("GET /{i}")))
        })
        .collect();
    delivery
        .feed(
            Category::Logging,
            "logging",
            FeedOpts::default(),
            logs.clone(),
        )
        .await
        .unwrap();
    let mut shutdown = Box::pin(delivery.shutdown());
    assert!(
        futures::poll!(&mut shutdown).is_pending(),
        "the sink holds the data"
    );
    let refused = delivery
        .feed(
            Category::Metric,
            "cpu",
            FeedOpts::default(),
            points("cpu0", 900, 1),
        )
        .await;
    assert!(matches!(refused, Err(DeliveryError::Closed)), "{refused:?}");
    sink.open_gate();
    timeout(PATIENCE, shutdown).await.unwrap().unwrap();
    assert_eq!(keys(&sink.points(Category::Metric)), fed);
    let got_logs: Vec<i64> = sink
        .points(Category::Logging)
        .iter()
        .map(|p| p.time)
        .collect();
    assert_eq!(got_logs, logs.iter().map(|p| p.time).collect::<Vec<_>>());
}

/// Starts with a sink that never answers (`hang`) or always fails, feeds, shuts down and
/// measures it; then restarts on the same queue with a healthy sink of the same name, which
/// must receive everything.
async fn dead_sink_at_shutdown(hang: bool) -> Duration {
    let tmp = tempfile::tempdir().unwrap();
    let (dead, _rx) = if hang {
        RecordingSink::gated("up")
    } else {
        RecordingSink::new("up", 0)
    };
    dead.failing.store(!hang, Ordering::SeqCst);
    let dead = Arc::new(dead);
    let grace = Duration::from_millis(300);
    let slow_retries = DeliveryTuning {
        retry_initial: Duration::from_millis(50),
        shutdown_grace: grace,
        ..tuning()
    };
    let (delivery, _reg) = start(
        config(tmp.path(), 1000),
        slow_retries,
        std::slice::from_ref(&dead),
    );
    let mut fed = Vec::new();
    for i in 0..3 {
        let batch = points("cpu0", i * 5, 5);
        fed.extend(keys(&batch));
        feed(&delivery, batch).await;
    }
    entered(&dead).await;
    let began = Instant::now();
    shut(&delivery).await;
    let took = began.elapsed();
    assert!(dead.points(Category::Metric).is_empty());

    // The first delivery is not dropped: shutdown alone released the queue directory.
    let (sink, mut rx) = RecordingSink::new("up", 0);
    let sink = Arc::new(sink);
    let (again, _reg) = start(
        config(tmp.path(), 1000),
        tuning(),
        std::slice::from_ref(&sink),
    );
    let got = wait_points(&mut rx, Category::Metric, fed.len()).await;
    assert_eq!(
        keys(&got),
        fed,
        "the queued points arrive after the restart"
    );
    shut(&again).await;
    drop(delivery);
    took
}

#[tokio::test]
async fn shutdown_with_a_hanging_sink_returns_after_the_grace_and_keeps_the_data() {
    let took = dead_sink_at_shutdown(true).await;
    let grace = Duration::from_millis(300);
    assert!(
        took >= grace,
        "shutdown waited {took:?}, less than the grace"
    );
    assert!(
        took < grace + Duration::from_secs(2),
        "shutdown took {took:?}"
    );
}

#[tokio::test]
async fn shutdown_with_a_failing_sink_stops_after_shutdown_attempts_and_keeps_the_data() {
    let took = dead_sink_at_shutdown(false).await;
    // Two attempts 50 ms apart, well within the grace.
    assert!(took < Duration::from_millis(300), "shutdown took {took:?}");
}

#[tokio::test]
async fn shutdown_is_idempotent_and_later_feeds_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (delivery, sink, _rx, _reg) = start_recording(config(tmp.path(), 1000), 0);
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
    shut(&delivery).await;
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

#[tokio::test]
async fn the_queue_gauges_show_what_each_sink_has_not_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (held, _held_rx) = RecordingSink::gated("held");
    let (fast, mut fast_rx) = RecordingSink::new("fast", 0);
    let (held, fast) = (Arc::new(held), Arc::new(fast));
    let short_grace = DeliveryTuning {
        shutdown_grace: Duration::from_millis(100),
        ..tuning()
    };
    let (delivery, registry) = start(
        config(tmp.path(), 1000),
        short_grace,
        &[Arc::clone(&held), Arc::clone(&fast)],
    );
    for i in 0..4 {
        feed(&delivery, points("cpu0", i * 5, 5)).await;
    }
    wait_points(&mut fast_rx, Category::Metric, 20).await;
    entered(&held).await;
    // Shutdown stops the held uploader after the grace and publishes the gauges a last time.
    shut(&delivery).await;
    let pending = |sink, category| {
        metric(
            &registry,
            "datakit_io_queue_points",
            &[("category", category), ("sink", sink)],
        )
    };
    assert_eq!(pending("held", "metric"), 20.0);
    assert_eq!(pending("fast", "metric"), 0.0);
    assert_eq!(pending("held", "logging"), 0.0);
    let text = exposition(&registry);
    assert!(
        text.contains("datakit_io_queue_points{category=\"logging\",sink=\"held\"} 0"),
        "{text}"
    );
    assert!(
        metric(
            &registry,
            "datakit_io_queue_bytes",
            &[("category", "metric")]
        ) > 0.0,
        "{text}"
    );
    assert!(
        text.contains("datakit_io_queue_oldest_seconds{category=\"metric\",sink=\"held\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn a_queue_directory_is_exclusive_until_shutdown_releases_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, _sink, _rx, _reg) = start_recording(config(tmp.path(), 1000), 0);
    let mut registry = Registry::default();
    match Delivery::start(config(tmp.path(), 1000), Vec::new(), &mut registry) {
        Err(e @ DeliveryError::Queue(_)) => {
            assert!(e.to_string().contains("in use"), "{e}");
        }
        Err(e) => panic!("want a Queue error, got {e:?}"),
        Ok(_) => panic!("two deliveries share a queue directory"),
    }
    shut(&first).await;
    let second = Delivery::start(
        config(tmp.path(), 1000),
        Vec::new(),
        &mut Registry::default(),
    )
    .unwrap();
    shut(&second).await;
}

#[test]
fn start_outside_a_tokio_runtime_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut registry = Registry::default();
    let result = Delivery::start(config(tmp.path(), 1000), Vec::new(), &mut registry);
    assert!(matches!(result, Err(DeliveryError::NoRuntime)));
}

#[tokio::test]
async fn shutdown_flushes_every_fed_point_to_the_local_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp.path().join("queue"), 7);
    let local = LocalFileSink::new(LocalSinkConfig::new(tmp.path().join("data"))).unwrap();
    let mut registry = Registry::default();
    let delivery = Delivery::start(cfg, vec![Arc::new(local)], &mut registry).unwrap();
    let metrics = points("cpu0", 0, 20);
    let logs: Vec<Point> = (0..3)
        .map(|i| {
            Point::new("nginx", 1_700_000_000_000_000_000 + i)
                .tag("status", "info")
                .field("message", Value::S(format!("GET /{i}")))
        })
        .collect();
    for chunk in metrics.chunks(3) {
        feed(&delivery, chunk.to_vec()).await;
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
    shut(&delivery).await;

    let with_tags = |p: &Point| canon(p.clone().tag("host", "web-1").tag("env", "prod"));
    let data = tmp.path().join("data");
    let got: Vec<Point> = decode_file(&data.join("metric/current.lp"))
        .into_iter()
        .map(canon)
        .collect();
    assert_eq!(got, metrics.iter().map(with_tags).collect::<Vec<_>>());
    let got: Vec<Point> = decode_file(&data.join("logging/current.lp"))
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
    let cfg = config(&tmp.path().join("queue"), 100);
    let local = LocalFileSink::new(LocalSinkConfig {
        max_file_bytes: 64 * 1024,
        max_files: 1000,
        ..LocalSinkConfig::new(tmp.path().join("data"))
    })
    .unwrap();
    let mut registry = Registry::default();
    let delivery = Delivery::start(cfg, vec![Arc::new(local)], &mut registry).unwrap();
    let mut feeders = Vec::new();
    for task in 0..TASKS {
        let delivery = delivery.clone();
        feeders.push(tokio::spawn(async move {
            for n in 0..FEEDS {
                feed(&delivery, points(&format!("t{task}"), n * POINTS, POINTS)).await;
            }
        }));
    }
    for feeder in feeders {
        feeder.await.unwrap();
    }
    shut(&delivery).await;

    let mut seen = HashSet::new();
    let mut total = 0;
    for entry in std::fs::read_dir(tmp.path().join("data/metric")).unwrap() {
        for p in decode_file(&entry.unwrap().path()) {
            total += 1;
            seen.insert(key(&p));
        }
    }
    assert_eq!(total, TASKS * FEEDS * POINTS);
    assert_eq!(seen.len() as i64, TASKS * FEEDS * POINTS, "no duplicates");
}

#[test]
fn the_feed_and_shutdown_futures_can_be_spawned() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let tmp = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut registry = Registry::default();
    let delivery = Delivery::start(config(tmp.path(), 1000), Vec::new(), &mut registry).unwrap();
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

/// A line-protocol sink that takes `concurrent` overlapping writes, as Dataway does: it counts
/// the calls in flight, can hold one call (by number, from 1) until released, fail one call
/// once, and reports the `n` field of every point it wrote.
struct PipeSink {
    concurrent: usize,
    calls: std::sync::atomic::AtomicUsize,
    in_flight: std::sync::atomic::AtomicUsize,
    most_in_flight: std::sync::atomic::AtomicUsize,
    hold_call: usize,
    release: tokio::sync::watch::Sender<bool>,
    fail_call: usize,
    written: tokio::sync::mpsc::UnboundedSender<Vec<i64>>,
}

/// Counts a call out of flight when it ends or is dropped (cancelled at shutdown).
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PipeSink {
    fn new(
        concurrent: usize,
        hold_call: usize,
        fail_call: usize,
    ) -> (Arc<Self>, tokio::sync::mpsc::UnboundedReceiver<Vec<i64>>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = PipeSink {
            concurrent,
            calls: Default::default(),
            in_flight: Default::default(),
            most_in_flight: Default::default(),
            hold_call,
            release: tokio::sync::watch::Sender::new(false),
            fail_call,
            written: tx,
        };
        (Arc::new(sink), rx)
    }
}

impl Sink for PipeSink {
    fn name(&self) -> &str {
        "pipe"
    }

    fn write<'a>(
        &'a self,
        _: Category,
        _: &'a [Point],
    ) -> futures::future::BoxFuture<'a, Result<(), dk_delivery::SinkError>> {
        unreachable!("the sink takes line protocol")
    }

    fn input(&self, max_cache_count: usize) -> dk_delivery::SinkInput {
        dk_delivery::SinkInput::Lines {
            points: max_cache_count,
            bytes: usize::MAX,
        }
    }

    fn concurrent_writes(&self) -> usize {
        self.concurrent
    }

    fn write_lines<'a>(
        &'a self,
        _: Category,
        lines: &'a [u8],
        _: usize,
    ) -> futures::future::BoxFuture<'a, Result<(), dk_delivery::SinkError>> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            let _out = InFlight(&self.in_flight);
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            if call == self.hold_call {
                let _ = self.release.subscribe().wait_for(|go| *go).await;
            }
            if call == self.fail_call {
                return Err(dk_delivery::SinkError::Unavailable {
                    sink: "pipe".into(),
                    message: "test failure".into(),
                });
            }
            let points =
                dk_proto::lineproto::decode(lines, &dk_proto::lineproto::DecodeOptions::default())
                    .unwrap();
            let ns = points
                .iter()
                .map(|p| match p.get_field("n") {
                    Some(Value::I(n)) => *n,
                    other => panic!("no int field n: {other:?}"),
                })
                .collect();
            let _ = self.written.send(ns);
            Ok(())
        })
    }
}

/// Receives written batches until `n` points arrived; their `n` fields in arrival order.
async fn pipe_points(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<i64>>,
    n: usize,
) -> Vec<i64> {
    let mut got = Vec::new();
    while got.len() < n {
        match timeout(PATIENCE, rx.recv()).await {
            Ok(Some(batch)) => got.extend(batch),
            _ => panic!("only {} of {n} points arrived", got.len()),
        }
    }
    got
}

fn start_pipe(dir: &Path, sink: &Arc<PipeSink>, grace: Duration) -> (Delivery, Registry) {
    let mut registry = Registry::default();
    let tuning = DeliveryTuning {
        shutdown_grace: grace,
        ..tuning()
    };
    let sinks = vec![Arc::clone(sink) as Arc<dyn Sink>];
    let delivery = Delivery::start_tuned(config(dir, 5), tuning, sinks, &mut registry).unwrap();
    (delivery, registry)
}

#[tokio::test]
async fn a_sink_taking_two_writes_gets_the_next_batch_while_the_first_is_unanswered_and_the_position_waits_for_both()
 {
    let tmp = tempfile::tempdir().unwrap();
    // One record of 15 points is written as three batches of 5; the first is held.
    let (sink, mut rx) = PipeSink::new(2, 1, 0);
    let (delivery, registry) = start_pipe(tmp.path(), &sink, Duration::from_millis(100));
    feed(&delivery, points("cpu0", 0, 15)).await;
    let later = pipe_points(&mut rx, 10).await;
    let mut sorted = later.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (5..15).collect::<Vec<_>>(),
        "the 2nd and 3rd batches, not the held 1st"
    );
    assert_eq!(
        sink.most_in_flight.load(Ordering::SeqCst),
        2,
        "never more than 2 at once"
    );
    // Shutdown cancels the held write: the group is not done, so its position was not moved.
    shut(&delivery).await;
    let pending = metric(
        &registry,
        "datakit_io_queue_points",
        &[("category", "metric"), ("sink", "pipe")],
    );
    assert_eq!(pending, 15.0, "the whole record stays queued");
    drop(delivery);

    // After a restart the whole group comes again (at least once), the held batch included.
    let (sink, mut rx) = PipeSink::new(2, 0, 0);
    let (again, _reg) = start_pipe(tmp.path(), &sink, PATIENCE);
    let mut got = pipe_points(&mut rx, 15).await;
    got.sort_unstable();
    assert_eq!(got, (0..15).collect::<Vec<_>>());
    shut(&again).await;
}

#[tokio::test]
async fn writes_answered_out_of_order_and_a_failed_one_between_good_ones_deliver_everything_once_committed()
 {
    let tmp = tempfile::tempdir().unwrap();
    // Batch 1 (call 1) is held; batch 2 (call 2) fails and is retried (call 3) while batch 1
    // is still held, then batch 3 (call 4) takes its slot; batch 1 is released last.
    let (sink, mut rx) = PipeSink::new(2, 1, 2);
    let (delivery, registry) = start_pipe(tmp.path(), &sink, PATIENCE);
    feed(&delivery, points("cpu0", 0, 15)).await;
    let first = pipe_points(&mut rx, 10).await;
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (5..15).collect::<Vec<_>>(),
        "2 (retried) and 3 before the held 1"
    );
    sink.release.send_replace(true);
    let held = pipe_points(&mut rx, 5).await;
    assert_eq!(held, (0..5).collect::<Vec<_>>());
    assert_eq!(
        sink.calls.load(Ordering::SeqCst),
        4,
        "one retry, of the failed batch only"
    );
    assert_eq!(
        metric(
            &registry,
            "datakit_io_sink_point_total",
            &[("sink", "pipe"), ("status", "ok")]
        ),
        15.0
    );
    // Every batch is done: the position moved past the record, and a restart sends only new
    // points.
    shut(&delivery).await;
    drop(delivery);
    let (sink, mut rx) = PipeSink::new(2, 0, 0);
    let (again, _reg) = start_pipe(tmp.path(), &sink, PATIENCE);
    feed(&again, points("marker", 100, 1)).await;
    assert_eq!(pipe_points(&mut rx, 1).await, vec![100]);
    shut(&again).await;
    assert!(rx.try_recv().is_err(), "nothing of the first record again");
}

#[tokio::test]
async fn a_sink_taking_one_write_at_a_time_never_sees_two() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, mut rx) = PipeSink::new(1, 0, 0);
    let (delivery, _reg) = start_pipe(tmp.path(), &sink, PATIENCE);
    feed(&delivery, points("cpu0", 0, 40)).await;
    assert_eq!(
        pipe_points(&mut rx, 40).await,
        (0..40).collect::<Vec<_>>(),
        "in queue order"
    );
    assert_eq!(sink.most_in_flight.load(Ordering::SeqCst), 1);
    shut(&delivery).await;
}
