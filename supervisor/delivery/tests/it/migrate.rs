//! Adopting the unsent data of a Datakit install (`cache/dw-wal`) into the durable queue.

use crate::{PATIENCE, RecordingSink, Written, metric};
use dk_delivery::{
    Delivery, DeliveryConfig, GlobalTags, MIGRATION_MARKER, QueueSettings, Sink,
    TIME_CORRECTION_WINDOW, adopt_datakit_wal,
};
use dk_proto::{Category, FeedOpts, Point, Value};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dk_proto::testing::{
    DATAKIT_WAL_FC_FILE as FC_FILE, copy_tree, datakit_wal_fixture as fixture,
};

/// Delivery over `wal` with global tags and time correction on (neither may touch replayed points).
fn start(wal: &Path) -> (Delivery, Registry, Arc<RecordingSink>, Written) {
    let (sink, rx) = RecordingSink::new("rec", 0);
    let sink = Arc::new(sink);
    let config = DeliveryConfig {
        global_tags: GlobalTags {
            host: vec![
                ("host".into(), "ours".into()),
                ("added".into(), "yes".into()),
            ],
            election: Vec::new(),
        },
        queue: QueueSettings {
            max_disk_ratio: 1.0,
            commit_window: Duration::from_millis(1),
            ..QueueSettings::new(wal)
        },
        time_correction: Some(TIME_CORRECTION_WINDOW),
        ..DeliveryConfig::default()
    };
    let mut registry = Registry::default();
    let delivery = Delivery::start(
        config,
        vec![Arc::clone(&sink) as Arc<dyn Sink>],
        &mut registry,
    )
    .unwrap();
    (delivery, registry, sink, rx)
}

fn int(p: &Point, key: &str) -> i64 {
    match p.get_field(key) {
        Some(Value::I(i)) => *i,
        other => panic!("{key} of {p:?} is {other:?}"),
    }
}

/// Seqs by measurement; every point keeps Datakit's tags and arrives at its written time.
fn seqs(points: &[Point]) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for p in points {
        let seq = int(p, "seq");
        assert_eq!(
            p.time,
            1_764_000_000_000_000_000 + seq * 1_000_000,
            "the original time, not corrected again: {p:?}"
        );
        assert!(p.get_field("__orig_time").is_none(), "{p:?}");
        assert_eq!(
            p.get_tag("host"),
            Some("vm"),
            "Datakit's global tags stay: {p:?}"
        );
        assert_eq!(p.get_tag("added"), None, "ours are not added: {p:?}");
        out.entry(p.name.clone()).or_default().push(seq);
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

/// Receives batches until every category has at least its count of points; returns all.
async fn collect(rx: &mut Written, want: &[(Category, usize)]) -> Vec<Point> {
    let mut got: Vec<(Category, Point)> = Vec::new();
    while want
        .iter()
        .any(|(c, n)| got.iter().filter(|(gc, _)| gc == c).count() < *n)
    {
        match tokio::time::timeout(PATIENCE, rx.recv()).await {
            Ok(Some((c, batch))) => got.extend(batch.into_iter().map(|p| (c, p))),
            Ok(None) => panic!("the sink is gone after {} points", got.len()),
            Err(_) => panic!("only {} points arrived in {PATIENCE:?}", got.len()),
        }
    }
    got.into_iter().map(|(_, p)| p).collect()
}

fn range(n: i64) -> Vec<i64> {
    (0..n).collect()
}

/// Feeds one sentinel metric point and waits for it: any replayed point still queued ahead
/// of it in the metric queue would arrive first.
async fn metric_sentinel(delivery: &Delivery, rx: &mut Written) -> Vec<Point> {
    let p = Point::new("sentinel", 1).field("seq", Value::I(-1));
    delivery
        .feed(Category::Metric, "test", FeedOpts::default(), vec![p])
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let batch = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("the sentinel arrives")
            .expect("the sink is alive");
        let done = batch.1.iter().any(|p| p.name == "sentinel");
        got.extend(batch.1.into_iter().filter(|p| p.name != "sentinel"));
        if done {
            return got;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_datakit_fixture_is_adopted_once_with_exact_points_and_its_files_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = tmp.path().join("dw-wal");
    copy_tree(&fixture(), &wal);
    let (delivery, registry, _sink, mut rx) = start(&wal);

    let report = adopt_datakit_wal(&delivery, &wal).await.unwrap();
    assert_eq!(report.records, 6);
    assert_eq!(report.total_points(), 5320);
    assert_eq!(report.points.get("metric"), Some(&5000));
    assert_eq!(report.points.get("logging"), Some(&300));
    assert_eq!(report.points.get("object"), Some(&20));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);

    let points = collect(
        &mut rx,
        &[
            (Category::Metric, 5000),
            (Category::Logging, 300),
            (Category::Object, 20),
        ],
    )
    .await;
    let got = seqs(&points);
    assert_eq!(got.get("migrate"), Some(&range(5000)));
    assert_eq!(got.get("migrate_log"), Some(&range(300)));
    assert_eq!(got.get("migrate_obj"), Some(&range(20)));
    assert_eq!(got.len(), 3);
    for (cat, n) in [("metric", 5000.0), ("logging", 300.0), ("object", 20.0)] {
        assert_eq!(
            metric(
                &registry,
                "datakit_io_migrated_point_total",
                &[("category", cat)]
            ),
            n
        );
    }

    // Datakit's files are gone (fc/ entirely); our queue directories and the marker stay.
    assert!(!wal.join("fc").exists());
    for cat in ["metric", "logging", "object", "tracing"] {
        assert!(!wal.join(cat).join("data").exists(), "{cat}/data");
        assert!(!wal.join(cat).join(".pos").exists(), "{cat}/.pos");
        assert!(wal.join(cat).join("queue.lock").exists(), "our {cat} queue");
    }
    let marker = std::fs::read_to_string(wal.join(MIGRATION_MARKER)).unwrap();
    assert!(
        marker.contains(&format!("adopted 58325 fc/{FC_FILE}")),
        "{marker}"
    );
    assert!(marker.contains("points=5320"), "{marker}");

    // Again in this run, and after a restart: nothing is replayed twice.
    assert_eq!(adopt_datakit_wal(&delivery, &wal).await.unwrap().records, 0);
    assert!(metric_sentinel(&delivery, &mut rx).await.is_empty());
    delivery.shutdown().await.unwrap();
    drop(delivery);
    let (delivery, _registry, _sink, mut rx) = start(&wal);
    let again = adopt_datakit_wal(&delivery, &wal).await.unwrap();
    assert_eq!((again.files, again.total_points()), (0, 0));
    assert!(metric_sentinel(&delivery, &mut rx).await.is_empty());
    delivery.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_before_the_pos_offset_were_sent_by_datakit_and_are_not_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = tmp.path().join("dw-wal");
    copy_tree(&fixture(), &wal);
    // Datakit had read (and sent) the first record: 2,000 metric points.
    let first_len = {
        let bytes = std::fs::read(wal.join("fc").join(FC_FILE)).unwrap();
        u64::from(u32::from_le_bytes(bytes[..4].try_into().unwrap()))
    };
    let mut pos = i64::try_from(4 + first_len).unwrap().to_le_bytes().to_vec();
    pos.extend_from_slice(format!("/usr/local/datakit/cache/dw-wal/fc/{FC_FILE}").as_bytes());
    std::fs::write(wal.join("fc/.pos"), pos).unwrap();
    let (delivery, _registry, _sink, mut rx) = start(&wal);

    let report = adopt_datakit_wal(&delivery, &wal).await.unwrap();
    assert_eq!((report.records, report.total_points()), (5, 3320));
    let points = collect(
        &mut rx,
        &[
            (Category::Metric, 3000),
            (Category::Logging, 300),
            (Category::Object, 20),
        ],
    )
    .await;
    let got = seqs(&points);
    let mut metric_seqs = got.get("migrate").unwrap().clone();
    assert_eq!(metric_seqs.len(), 3000);
    metric_seqs.dedup();
    assert_eq!(metric_seqs.len(), 3000, "each seq once");
    assert_eq!(got.get("migrate_log"), Some(&range(300)));
    assert_eq!(got.get("migrate_obj"), Some(&range(20)));
    assert!(metric_sentinel(&delivery, &mut rx).await.is_empty());
    delivery.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_noted_as_adopted_before_a_crash_is_deleted_without_replaying_it() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = tmp.path().join("dw-wal");
    copy_tree(&fixture(), &wal);
    // The previous run fsynced the points and the note, then died before deleting the file.
    std::fs::write(
        wal.join(MIGRATION_MARKER),
        format!("adopted 58325 fc/{FC_FILE}\n"),
    )
    .unwrap();
    let (delivery, registry, _sink, mut rx) = start(&wal);

    let report = adopt_datakit_wal(&delivery, &wal).await.unwrap();
    assert_eq!((report.records, report.total_points()), (0, 0));
    assert!(report.files >= 1, "{report:?}");
    assert!(!wal.join("fc").exists());
    assert!(metric_sentinel(&delivery, &mut rx).await.is_empty());
    assert_eq!(
        metric(&registry, "datakit_io_migrated_point_total", &[]),
        0.0
    );
    delivery.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_skipped_and_counted_and_the_rest_is_adopted() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = tmp.path().join("dw-wal");
    copy_tree(&fixture(), &wal);
    // Flip a byte inside the gzip payload of the second record (the 300 log points).
    let path = wal.join("fc").join(FC_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let first = 4 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let second = u32::from_le_bytes(bytes[first..first + 4].try_into().unwrap()) as usize;
    bytes[first + 4 + second / 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (delivery, registry, _sink, mut rx) = start(&wal);

    let report = adopt_datakit_wal(&delivery, &wal).await.unwrap();
    assert_eq!(report.total_points(), 5020);
    assert_eq!(
        report.skipped.values().sum::<u64>(),
        1,
        "{:?}",
        report.skipped
    );
    assert_eq!(
        metric(&registry, "datakit_io_migrate_skipped_record_total", &[]),
        1.0
    );
    let got = seqs(&collect(&mut rx, &[(Category::Metric, 5000), (Category::Object, 20)]).await);
    assert_eq!(got.get("migrate"), Some(&range(5000)));
    assert_eq!(got.get("migrate_log"), None);
    assert!(!path.exists());
    delivery.shutdown().await.unwrap();
}
