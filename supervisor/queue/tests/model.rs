//! Model-based test: random appends, reads, commits, reopens and crashes (a copy of the files
//! with a torn write at the end) against a simple in-memory model of at-least-once delivery.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{segments, snapshot};
use dk_queue::{HEADER_LEN, Queue, QueueConfig, Record};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CONSUMERS: [&str; 2] = ["a", "b"];

/// Encodes a frame exactly as the queue does (documented format), for torn-write injection.
fn frame(seq: u64, points: u32, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN];
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..20].copy_from_slice(&points.to_le_bytes());
    h[20..28].copy_from_slice(&1u64.to_le_bytes());
    let mut c = crc32fast::Hasher::new();
    c.update(&h[4..]);
    c.update(payload);
    h[0..4].copy_from_slice(&c.finalize().to_le_bytes());
    h.extend_from_slice(payload);
    h
}

struct Model {
    /// Every acknowledged record.
    acked: BTreeMap<u64, Record>,
    /// Per consumer: sequence numbers read at least once, and the last one read (to commit).
    delivered: [BTreeSet<u64>; 2],
    last_read: [Option<u64>; 2],
    /// Per consumer: records the queue reported dropped, summed over every opening.
    dropped: [u64; 2],
}

impl Model {
    fn absorb_drops(&mut self, q: &Queue) {
        let s = q.stats();
        for (i, c) in CONSUMERS.iter().enumerate() {
            self.dropped[i] += s.consumer(c).unwrap().dropped.total().records;
        }
    }
}

fn config(dir: &Path, rng: &mut StdRng, capped: bool) -> QueueConfig {
    let mut c = QueueConfig::new(dir);
    c.segment_bytes = [300, 1000, 4000][rng.random_range(0..3)];
    c.mem_cache_bytes = [0, 500, 1 << 20][rng.random_range(0..3)];
    c.commit_window = std::time::Duration::ZERO;
    if capped {
        c.max_disk_bytes = 5000;
    }
    c
}

fn payload(rng: &mut StdRng) -> Bytes {
    let n = rng.random_range(0..400);
    Bytes::from((0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>())
}

async fn run(seed: u64, capped: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let root = tempfile::tempdir().unwrap();
    let mut gen_no = 0;
    let mut dir: PathBuf = root.path().join("gen0");
    let mut cfg = config(&dir, &mut rng, capped);
    let (mut q, _) = Queue::open(cfg.clone(), &CONSUMERS).unwrap();
    let mut m = Model {
        acked: BTreeMap::new(),
        delivered: Default::default(),
        last_read: [None; 2],
        dropped: [0; 2],
    };

    for step in 0..150 {
        match rng.random_range(0..100) {
            0..=39 => {
                // A burst of concurrent appends.
                let k = rng.random_range(1..=4);
                let mut tasks = Vec::new();
                for _ in 0..k {
                    let r = Record {
                        points: rng.random_range(0..50),
                        payload: payload(&mut rng),
                    };
                    let q2 = q.clone();
                    tasks.push(tokio::spawn(async move {
                        (q2.append(r.clone()).await.unwrap(), r)
                    }));
                }
                for t in tasks {
                    let (seq, r) = t.await.unwrap();
                    assert!(
                        !m.acked.contains_key(&seq),
                        "seed {seed} step {step}: seq {seq} reused"
                    );
                    m.acked.insert(seq, r);
                }
            }
            40..=69 => {
                let c = rng.random_range(0..2);
                let got = q
                    .try_read(CONSUMERS[c], rng.random_range(1..10))
                    .await
                    .unwrap();
                let mut prev = 0;
                for (seq, r) in &got {
                    assert!(*seq > prev, "seed {seed} step {step}: out of order");
                    prev = *seq;
                    assert_eq!(
                        m.acked.get(seq),
                        Some(r),
                        "seed {seed} step {step}: seq {seq} was never acknowledged like this"
                    );
                    m.delivered[c].insert(*seq);
                }
                if let Some((s, _)) = got.last() {
                    m.last_read[c] = Some(*s);
                }
            }
            70..=89 => {
                let c = rng.random_range(0..2);
                if let Some(s) = m.last_read[c].take() {
                    q.commit(CONSUMERS[c], s).await.unwrap();
                }
            }
            90..=94 => {
                m.absorb_drops(&q);
                q.close();
                drop(q);
                q = Queue::open(cfg.clone(), &CONSUMERS).unwrap().0;
                m.last_read = [None; 2];
            }
            _ => {
                // Crash: what is on disk now, plus a torn (unacknowledged) write at the end.
                gen_no += 1;
                let next = root.path().join(format!("gen{gen_no}"));
                snapshot(&dir, &next);
                if let Some(last) = segments(&next).pop() {
                    let next_seq = m.acked.keys().next_back().copied().unwrap_or(0) + 1;
                    let f = frame(next_seq, 1, &payload(&mut rng));
                    let cut = rng.random_range(1..f.len());
                    let mut bytes = std::fs::read(&last).unwrap();
                    bytes.extend_from_slice(&f[..cut]);
                    std::fs::write(&last, bytes).unwrap();
                }
                m.absorb_drops(&q);
                drop(q);
                dir = next;
                cfg.dir = dir.clone();
                let (q2, recovery) = Queue::open(cfg.clone(), &CONSUMERS).unwrap();
                assert_eq!(recovery.corrupt_segments, 0, "seed {seed} step {step}");
                q = q2;
                m.last_read = [None; 2];
            }
        }
        if capped {
            assert!(q.stats().disk_bytes <= 5000, "seed {seed} step {step}");
        }
    }

    // Drain both consumers; every acknowledged record was read at least once or counted lost.
    for (c, name) in CONSUMERS.iter().enumerate() {
        loop {
            let got = q.try_read(name, 7).await.unwrap();
            let Some((last, _)) = got.last() else { break };
            for (seq, r) in &got {
                assert_eq!(m.acked.get(seq), Some(r), "seed {seed}: drained seq {seq}");
                m.delivered[c].insert(*seq);
            }
            q.commit(name, *last).await.unwrap();
        }
    }
    m.absorb_drops(&q);
    for c in 0..2 {
        let missing = m
            .acked
            .keys()
            .filter(|s| !m.delivered[c].contains(s))
            .count() as u64;
        if capped {
            assert!(
                missing <= m.dropped[c],
                "seed {seed} consumer {c}: {missing} missing, {} counted",
                m.dropped[c]
            );
        } else {
            assert_eq!((missing, m.dropped[c]), (0, 0), "seed {seed} consumer {c}");
        }
    }
}

#[tokio::test]
async fn random_operations_deliver_every_acknowledged_record_at_least_once() {
    for seed in 0..16 {
        run(seed, false).await;
    }
}

#[tokio::test]
async fn random_operations_under_a_small_cap_lose_only_what_they_count() {
    for seed in 100..116 {
        run(seed, true).await;
    }
}
