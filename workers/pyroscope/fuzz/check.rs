//! Checks shared by the fuzz target and the stable corpus test (`tests/corpus.rs`).
#![allow(dead_code)]

use std::collections::BTreeMap;

use dk_input_pyroscope::ingest::{EVENT_FIELD, MAX_TAGS, Upload, accept};
use dk_proto::Value;
use dk_proto::profile::{self as multipart, FilePart};

/// Limit used by the checks (small, so the size check is reached).
const LIMIT: usize = 64 * 1024;

/// Splits a fuzz input into query, Content-Type and body (the first two lines).
pub fn split(data: &[u8]) -> (String, String, &[u8]) {
    let mut it = data.splitn(3, |b| *b == b'\n');
    let query = String::from_utf8_lossy(it.next().unwrap_or_default()).into_owned();
    let ct = String::from_utf8_lossy(it.next().unwrap_or_default()).into_owned();
    (query, ct, it.next().unwrap_or_default())
}

/// The whole upload path, then the multipart layer on its own.
pub fn check_upload(data: &[u8]) {
    let (query, ct, body) = split(data);
    let up = Upload {
        query: &query,
        content_type: &ct,
        body,
    };
    match accept(up, &BTreeMap::new(), LIMIT) {
        Ok(profile) => {
            assert!(!body.is_empty() && body.len() <= LIMIT);
            assert!(profile.tags.len() <= MAX_TAGS);
            assert!(profile.tags.contains_key("language"));
            assert!(!profile.attachments.is_empty());
            let carried: usize = profile.attachments.iter().map(|(_, d)| d.len()).sum();
            assert!(carried <= body.len(), "attachments are slices of the body");
            assert!(
                profile.event.end >= profile.event.start
                    || profile.event.end.len() != profile.event.start.len()
            );
            let point = profile.into_point();
            assert_eq!(point.fields[0].0, EVENT_FIELD);
            let Value::S(json) = &point.fields[0].1 else {
                panic!("event.json is a string field")
            };
            let v: serde_json::Value = serde_json::from_str(json).expect("event.json is JSON");
            assert_eq!(v["profiler"], "pyroscope");
            assert!(
                point.fields[1..]
                    .iter()
                    .all(|(_, v)| matches!(v, Value::D(_)))
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    check_multipart(body, &ct);
}

/// Parsing never panics; what parses is written back and read again to the same parts.
pub fn check_multipart(body: &[u8], content_type: &str) {
    let boundary = multipart::boundary_of(content_type).unwrap_or_else(|_| "b".to_string());
    let Ok(parts) = multipart::parse(body, &boundary) else {
        return;
    };
    assert!(parts.len() <= multipart::MAX_PARTS);
    let names: Vec<String> = parts
        .iter()
        .map(|p| p.name.replace(['\r', '\n'], ""))
        .collect();
    let files: Vec<FilePart<'_>> = parts
        .iter()
        .zip(&names)
        .map(|(p, n)| FilePart {
            name: n,
            filename: n,
            data: p.data,
        })
        .collect();
    let b = multipart::boundary_for(&files, body.len() as u64);
    let mut out = Vec::new();
    multipart::write(&b, &files, &mut out);
    let back = multipart::parse(&out, &b).expect("what we write parses");
    assert_eq!(back.len(), parts.len());
    for (a, p) in back.iter().zip(&parts) {
        assert_eq!(a.data, p.data);
    }
}
