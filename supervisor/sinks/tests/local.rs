//! Tests of the local-files sink: layout, permissions, rotation, torn lines and errors.

#![allow(clippy::unwrap_used)]

use dk_proto::sink::{Sink, SinkError};
use dk_proto::testing::{decode_file, metric, metric_point};
use dk_proto::{Category, Point};
use dk_sinks::local::{LocalFileSink, LocalSinkConfig};
use prometheus_client::registry::Registry;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn batches_are_appended_one_point_per_line_with_restrictive_permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let sink = LocalFileSink::new(LocalSinkConfig::new(&root)).unwrap();
    let first: Vec<Point> = (0..3).map(|i| metric_point("cpu0", i)).collect();
    let second: Vec<Point> = (3..5).map(|i| metric_point("cpu1", i)).collect();
    sink.write(Category::Metric, &first).await.unwrap();
    sink.write(Category::Metric, &second).await.unwrap();

    let path = sink.current_path(Category::Metric);
    assert_eq!(path, root.join("metric").join("current.lp"));
    let body = std::fs::read_to_string(&path).unwrap();
    assert_eq!(body.lines().count(), 5);
    assert!(body.ends_with('\n'));
    let want: Vec<Point> = first.into_iter().chain(second).collect();
    assert_eq!(decode_file(&path), want);
    assert_eq!(mode(&root), 0o750);
    assert_eq!(mode(&root.join("metric")), 0o750);
    assert_eq!(mode(&path), 0o640);
}

#[tokio::test]
async fn rotation_keeps_at_most_max_files_and_the_newest_points() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = LocalFileSink::new(LocalSinkConfig {
        max_file_bytes: 200,
        max_files: 2,
        ..LocalSinkConfig::new(tmp.path())
    })
    .unwrap();
    let mut registry = Registry::default();
    sink.register_metrics(&mut registry);
    let points: Vec<Point> = (0..40).map(|i| metric_point("cpu0", i)).collect();
    for pair in points.chunks(2) {
        sink.write(Category::Metric, pair).await.unwrap();
    }

    let dir = tmp.path().join("metric");
    let mut rotated: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let ms = name
                .strip_prefix("current.")?
                .strip_suffix(".lp")?
                .parse()
                .ok()?;
            Some((ms, p))
        })
        .collect();
    rotated.sort();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(rotated.len(), 2, "{names:?}");
    assert_eq!(
        names.len(),
        3,
        "two rotated files and current.lp: {names:?}"
    );

    let rotations = metric(
        &registry,
        "datakit_io_local_sink_rotate_total",
        &[("category", "metric")],
    );
    let deleted = metric(
        &registry,
        "datakit_io_local_sink_deleted_files_total",
        &[("category", "metric")],
    );
    assert!(rotations > 2.0, "{rotations}");
    assert_eq!(deleted, rotations - 2.0);

    let mut kept: Vec<Point> = Vec::new();
    for (_, path) in &rotated {
        let body = std::fs::metadata(path).unwrap().len();
        assert!(body <= 200, "{} holds {body} bytes", path.display());
        kept.extend(decode_file(path));
    }
    kept.extend(decode_file(&dir.join("current.lp")));
    assert!(!kept.is_empty());
    assert_eq!(
        kept.as_slice(),
        &points[points.len() - kept.len()..],
        "the newest points, in order"
    );
}

#[tokio::test]
async fn a_torn_last_line_is_dropped_before_appending() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logging");
    std::fs::create_dir_all(&dir).unwrap();
    let sink = LocalFileSink::new(LocalSinkConfig::new(tmp.path())).unwrap();
    let old = metric_point("cpu0", 1);
    sink.write(Category::Logging, std::slice::from_ref(&old))
        .await
        .unwrap();
    drop(sink);
    let path = dir.join("current.lp");
    let mut body = std::fs::read(&path).unwrap();
    body.extend_from_slice(b"cpu,cpu=cpu0 usage=1");
    std::fs::write(&path, &body).unwrap();

    let sink = LocalFileSink::new(LocalSinkConfig::new(tmp.path())).unwrap();
    let new = metric_point("cpu0", 2);
    sink.write(Category::Logging, std::slice::from_ref(&new))
        .await
        .unwrap();
    assert_eq!(decode_file(&path), vec![old, new]);
}

#[tokio::test]
async fn an_unwritable_category_directory_is_a_sink_error_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = LocalFileSink::new(LocalSinkConfig::new(tmp.path())).unwrap();
    let blocker = tmp.path().join("metric");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let err = sink
        .write(Category::Metric, &[metric_point("cpu0", 1)])
        .await
        .unwrap_err();
    match &err {
        SinkError::Io { path, .. } => assert_eq!(path, &blocker),
        other => panic!("want an Io error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&blocker.display().to_string()),
        "{message}"
    );
    assert!(message.contains("writable"), "{message}");

    std::fs::remove_file(&blocker).unwrap();
    sink.write(Category::Metric, &[metric_point("cpu0", 2)])
        .await
        .unwrap();
    assert_eq!(
        decode_file(&blocker.join("current.lp")),
        vec![metric_point("cpu0", 2)]
    );
}

#[test]
fn an_unusable_directory_fails_at_open_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    match LocalFileSink::new(LocalSinkConfig::new(file.join("data"))) {
        Err(e @ SinkError::Io { .. }) => assert!(e.to_string().contains("not-a-dir"), "{e}"),
        Err(e) => panic!("want an Io error, got {e:?}"),
        Ok(_) => panic!("want an Io error, got a sink"),
    }
}
