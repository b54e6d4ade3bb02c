//! Helpers shared by the queue's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use dk_queue::{Queue, QueueConfig, Record};

/// A config with small segments for tests.
pub fn cfg(dir: &Path, segment_bytes: u64) -> QueueConfig {
    let mut c = QueueConfig::new(dir);
    c.segment_bytes = segment_bytes;
    c
}

/// A deterministic record: payload bytes derived from `i`, `i % 7 + 1` points.
pub fn rec(i: u64, len: usize) -> Record {
    let payload: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect();
    Record {
        points: points_of(i),
        payload: Bytes::from(payload),
    }
}

pub fn points_of(i: u64) -> u32 {
    (i % 7 + 1) as u32
}

/// Appends records `from..from+n` of `len` bytes, returning their sequence numbers.
pub async fn fill(q: &Queue, from: u64, n: u64, len: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in from..from + n {
        seqs.push(q.append(rec(i, len)).await.unwrap());
    }
    seqs
}

/// Reads and commits everything pending for `consumer`.
pub async fn drain(q: &Queue, consumer: &str) -> Vec<(u64, Record)> {
    let mut out = Vec::new();
    loop {
        let batch = q.try_read(consumer, 16).await.unwrap();
        let Some((last, _)) = batch.last() else {
            return out;
        };
        q.commit(consumer, *last).await.unwrap();
        out.extend(batch);
    }
}

/// Segment files of a queue directory, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Copies the queue files of `from` into a new directory (what a crash would leave on disk).
/// The queue may write a position or delete a consumed segment meanwhile: a file that is gone
/// by the time it is copied counts as deleted before the crash.
pub fn snapshot(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        if name == "queue.lock" {
            continue;
        }
        match std::fs::copy(&p, to.join(name)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("copy {}: {e}", p.display()),
        }
    }
}
