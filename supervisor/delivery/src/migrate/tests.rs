#![allow(clippy::unwrap_used)]

use super::*;
use std::io::Cursor;

use dk_proto::testing::{DATAKIT_WAL_FC_FILE as FC_FILE, datakit_wal_fixture as fixture};

fn frame(records: &[&[u8]], eof: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&u32::try_from(r.len()).unwrap().to_le_bytes());
        out.extend_from_slice(r);
    }
    if eof {
        out.extend_from_slice(&EOF_MARKER.to_le_bytes());
    }
    out
}

fn read_all(bytes: &[u8], start: u64) -> Vec<Result<Vec<u8>, Skip>> {
    let mut c = Cursor::new(bytes);
    c.set_position(start);
    RecordReader::new(c, start, bytes.len() as u64)
        .map(|r| r.unwrap())
        .collect()
}

fn cache_data(category: i32, payload_type: i32, payload: Vec<u8>) -> Vec<u8> {
    CacheData {
        category,
        payload_type,
        payload,
        pts: 1,
        raw_len: 0,
        headers: Vec::new(),
        dyn_url: String::new(),
        pkg_time: 1_764_000_000,
    }
    .encode_to_vec()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn int_field(p: &Point, key: &str) -> i64 {
    match p.get_field(key) {
        Some(dk_proto::Value::I(i)) => *i,
        other => panic!("{key} of {p:?} is {other:?}"),
    }
}

#[test]
fn the_fixture_file_decodes_to_exactly_its_5320_points_with_their_original_times() {
    let path = fixture().join("fc").join(FC_FILE);
    let bytes = fs::read(&path).unwrap();
    let records = read_all(&bytes, 0);
    assert_eq!(records.len(), 6, "six records, then the EOF marker");
    let mut by_name: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut cats = Vec::new();
    for r in records {
        let bytes = r.unwrap();
        let made_ns = i64::from(CacheData::decode(&bytes[..]).unwrap().pkg_time) * 1_000_000_000;
        let (cat, points) = decode_record(&bytes).unwrap();
        cats.push((cat, points.len()));
        for p in points {
            let seq = int_field(&p, "seq");
            // Datakit's clock was far from the written times: it re-stamped them with its
            // receive time and kept the written time in `__orig_time`; the replay restores it.
            assert_eq!(p.time, 1_764_000_000_000_000_000 + seq * 1_000_000, "{p:?}");
            assert!(p.get_field("__orig_time").is_none(), "{p:?}");
            assert!(p.time < made_ns, "{p:?} made at {made_ns}");
            by_name.entry(p.name.clone()).or_default().push(seq);
        }
    }
    assert_eq!(
        cats,
        vec![
            (Category::Metric, 2000),
            (Category::Logging, 300),
            (Category::Metric, 1000),
            (Category::Metric, 1000),
            (Category::Metric, 1000),
            (Category::Object, 20),
        ]
    );
    for (name, n) in [("migrate", 5000), ("migrate_log", 300), ("migrate_obj", 20)] {
        let mut seqs = by_name.remove(name).unwrap();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..n).collect::<Vec<i64>>(), "{name}: each seq once");
    }
    assert!(by_name.is_empty(), "{by_name:?}");
}

#[test]
fn reading_stops_at_the_eof_marker_and_ignores_what_follows() {
    let mut bytes = frame(&[b"one", b"two"], true);
    bytes.extend_from_slice(&frame(&[b"after"], false));
    let got = read_all(&bytes, 0);
    assert_eq!(got, vec![Ok(b"one".to_vec()), Ok(b"two".to_vec())]);
}

#[test]
fn the_write_file_without_an_eof_marker_ends_after_its_last_record() {
    let bytes = frame(&[b"one", b"two", b"three"], false);
    assert_eq!(read_all(&bytes, 0).len(), 3);
    assert!(
        read_all(&[], 0).is_empty(),
        "an empty data file has nothing"
    );
}

#[test]
fn a_file_cut_inside_a_record_yields_the_whole_records_then_one_truncated() {
    let bytes = frame(&[b"one", b"two-is-longer"], false);
    let cut = &bytes[..bytes.len() - 3];
    assert_eq!(
        read_all(cut, 0),
        vec![Ok(b"one".to_vec()), Err(Skip::Truncated)]
    );
    // Cut inside a length header.
    let cut = &bytes[..4 + 3 + 2];
    assert_eq!(
        read_all(cut, 0),
        vec![Ok(b"one".to_vec()), Err(Skip::Truncated)]
    );
}

#[test]
fn a_length_beyond_any_datakit_record_ends_the_file_as_bad_length() {
    let mut bytes = frame(&[b"one"], false);
    bytes.extend_from_slice(&(MAX_RECORD_BYTES + 1).to_le_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    bytes.extend_from_slice(&frame(&[b"unreachable"], true));
    assert_eq!(
        read_all(&bytes, 0),
        vec![Ok(b"one".to_vec()), Err(Skip::BadLength)]
    );
}

#[test]
fn reading_from_an_offset_skips_the_records_before_it() {
    let bytes = frame(&[b"sent", b"unsent-1", b"unsent-2"], true);
    let got = read_all(&bytes, 4 + 4);
    assert_eq!(
        got,
        vec![Ok(b"unsent-1".to_vec()), Ok(b"unsent-2".to_vec())]
    );
}

#[test]
fn the_fixture_pos_files_name_the_fc_file_at_offset_0_and_nothing_elsewhere() {
    assert_eq!(
        read_pos(&fixture().join("fc/.pos")).unwrap(),
        Some((0, FC_FILE.to_string()))
    );
    assert_eq!(read_pos(&fixture().join("metric/.pos")).unwrap(), None);
}

#[test]
fn plan_finds_datakit_queues_in_order_with_the_pos_offset_and_ignores_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = tmp.path();
    // Datakit's fail cache: two rotated files and the write file; `.pos` is 12 bytes into the second.
    let fc = wal.join("fc");
    fs::create_dir(&fc).unwrap();
    let second = "data.00000000000000000000000000000007";
    let first = "data.00000000000000000000000000000003";
    for name in [second, first, "data"] {
        fs::write(fc.join(name), frame(&[b"x"], name != "data")).unwrap();
    }
    let mut pos = 12i64.to_le_bytes().to_vec();
    pos.extend_from_slice(format!("/usr/local/datakit/cache/dw-wal/fc/{second}").as_bytes());
    fs::write(fc.join(".pos"), pos).unwrap();
    // Our own queue directory: segments, consumer positions, the lock.
    let ours = wal.join("logging");
    fs::create_dir(&ours).unwrap();
    for name in [
        "00000000000000000001.seg",
        "local.pos",
        "queue.lock",
        "data.1",
    ] {
        fs::write(ours.join(name), b"ours").unwrap();
    }
    let got = plan(wal).unwrap();
    assert_eq!(
        got,
        vec![DatakitQueue {
            dir: fc.clone(),
            files: vec![
                (fc.join(first), 0),
                (fc.join(second), 12),
                (fc.join("data"), 0)
            ],
            pos: Some(fc.join(".pos")),
        }]
    );
    assert!(plan(&wal.join("absent")).unwrap().is_empty());
}

#[test]
fn damaged_records_are_skipped_with_their_reason() {
    assert_eq!(
        decode_record(b"\xff\xff\xff").unwrap_err(),
        Skip::BadCacheData
    );
    assert_eq!(
        decode_record(&cache_data(99, 0, b"m f=1i 1".to_vec())).unwrap_err(),
        Skip::UnknownCategory
    );
    let mut bad_gzip = gzip(b"m f=1i 1");
    bad_gzip.truncate(bad_gzip.len() - 6);
    assert_eq!(
        decode_record(&cache_data(3, 0, bad_gzip)).unwrap_err(),
        Skip::BadGzip
    );
    assert_eq!(
        decode_record(&cache_data(3, 1, b"not protobuf points \xff".to_vec())).unwrap_err(),
        Skip::BadPayload
    );
    assert_eq!(
        decode_record(&cache_data(3, 7, b"m f=1i 1".to_vec())).unwrap_err(),
        Skip::BadPayload
    );
    assert_eq!(
        decode_record(&cache_data(1, 1, Vec::new())).unwrap_err(),
        Skip::DynamicUrl
    );
}

#[test]
fn line_protocol_payloads_decode_gzipped_or_not_with_nanosecond_times() {
    let lp = b"lp,t=a seq=7i 1764000000000000007\nlp seq=8i\n".to_vec();
    for payload in [lp.clone(), gzip(&lp)] {
        let (cat, points) = decode_record(&cache_data(9, 0, payload)).unwrap();
        assert_eq!(cat, Category::Logging);
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].time, 1_764_000_000_000_000_007);
        assert_eq!(int_field(&points[0], "seq"), 7);
        assert_eq!(
            points[1].time, 1_764_000_000_000_000_000,
            "a point without a time gets the body's pkgTime"
        );
    }
    let (cat, points) = decode_record(&cache_data(2, 0, b"old seq=1i 5".to_vec())).unwrap();
    assert_eq!(
        (cat, points[0].time),
        (Category::Metric, 5),
        "`metrics` is metric"
    );
}
