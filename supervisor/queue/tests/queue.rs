//! Behaviour of the durable queue: append/read/commit, consumers, recovery, caps, group commit.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::{cfg, drain, fill, points_of, rec, segments, snapshot};
use dk_queue::{HEADER_LEN, Queue, QueueError, Record};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seqs(v: &[(u64, Record)]) -> Vec<u64> {
    v.iter().map(|(s, _)| *s).collect()
}

const FRAME_300: u64 = HEADER_LEN as u64 + 300;

#[tokio::test]
async fn appended_records_are_read_committed_and_replayed_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (q, rec0) = Queue::open(cfg(dir.path(), 1 << 20), &["up"]).unwrap();
    assert_eq!(rec0, dk_queue::Recovery::default());
    assert_eq!(fill(&q, 1, 10, 300).await, (1..=10).collect::<Vec<_>>());

    let first = q.read("up", 4).await.unwrap();
    assert_eq!(seqs(&first), vec![1, 2, 3, 4]);
    assert_eq!(first[2].1, rec(3, 300));
    // Without a commit the same records come back.
    assert_eq!(seqs(&q.read("up", 4).await.unwrap()), vec![1, 2, 3, 4]);
    q.commit("up", 4).await.unwrap();
    assert_eq!(seqs(&q.read("up", 4).await.unwrap()), vec![5, 6, 7, 8]);
    q.close();
    drop(q);

    let (q, recovery) = Queue::open(cfg(dir.path(), 1 << 20), &["up"]).unwrap();
    assert_eq!(recovery.records, 10);
    assert_eq!(
        (
            recovery.truncated_bytes,
            recovery.corrupt_segments,
            recovery.skipped_records
        ),
        (0, 0, 0)
    );
    let again = q.read("up", 100).await.unwrap();
    assert_eq!(seqs(&again), (5..=10).collect::<Vec<_>>());
    for (s, r) in &again {
        assert_eq!(*r, rec(*s, 300));
    }
    assert_eq!(q.append(rec(11, 300)).await.unwrap(), 11);
}

#[tokio::test]
async fn two_consumers_keep_their_own_positions_and_segments_go_only_after_both() {
    let dir = tempfile::tempdir().unwrap();
    // 3 records of 300 bytes per segment.
    let (q, _) = Queue::open(cfg(dir.path(), 3 * FRAME_300), &["a", "b"]).unwrap();
    fill(&q, 1, 9, 300).await;
    assert_eq!(segments(dir.path()).len(), 3);

    q.commit("a", 100).await.unwrap(); // clamped to the last record
    assert_eq!(q.stats().consumer("a").unwrap().committed, 9);
    assert!(q.try_read("a", 10).await.unwrap().is_empty());
    assert_eq!(segments(dir.path()).len(), 3, "b has not read anything yet");

    assert_eq!(seqs(&q.read("b", 2).await.unwrap()), vec![1, 2]);
    q.commit("b", 2).await.unwrap();
    assert_eq!(segments(dir.path()).len(), 3);
    q.commit("b", 3).await.unwrap();
    assert_eq!(
        segments(dir.path()).len(),
        2,
        "the first segment is done for both"
    );
    assert_eq!(
        seqs(&q.read("b", 10).await.unwrap()),
        (4..=9).collect::<Vec<_>>()
    );
    q.commit("b", 9).await.unwrap();
    // The segment being written stays.
    assert_eq!(segments(dir.path()).len(), 1);
    let s = q.stats();
    assert_eq!(
        (
            s.consumers[0].pending_records,
            s.consumers[1].pending_records
        ),
        (0, 0)
    );

    // Positions were written before the segments went: a reopen resumes after them.
    q.close();
    drop(q);
    let (q, _) = Queue::open(cfg(dir.path(), 3 * FRAME_300), &["a", "b"]).unwrap();
    assert!(q.try_read("a", 10).await.unwrap().is_empty());
    assert!(q.try_read("b", 10).await.unwrap().is_empty());
    assert_eq!(q.append(rec(10, 300)).await.unwrap(), 10);
}

/// Frame lengths of records `1..=n` with payload length `10 + 37 * i`.
fn varied(n: u64) -> Vec<Record> {
    (1..=n).map(|i| rec(i, 10 + 37 * i as usize)).collect()
}

#[tokio::test]
async fn torn_write_at_every_byte_offset_keeps_exactly_the_complete_records() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let records = varied(4);
    {
        let (q, _) = Queue::open(cfg(&base, 1 << 20), &["c"]).unwrap();
        for r in &records {
            q.append(r.clone()).await.unwrap();
        }
        q.close();
    }
    let seg = segments(&base).pop().unwrap();
    let bytes = fs::read(&seg).unwrap();
    let mut ends = vec![0u64];
    for r in &records {
        ends.push(ends.last().unwrap() + (HEADER_LEN + r.payload.len()) as u64);
    }
    assert_eq!(*ends.last().unwrap(), bytes.len() as u64);

    for len in 0..=bytes.len() as u64 {
        let d = dir.path().join(format!("cut{len}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(seg.file_name().unwrap()), &bytes[..len as usize]).unwrap();
        let complete = ends.iter().rposition(|&e| e <= len).unwrap();
        let (q, recovery) = Queue::open(cfg(&d, 1 << 20), &["c"]).unwrap();
        assert_eq!(recovery.records, complete as u64, "cut at {len}");
        assert_eq!(
            recovery.truncated_bytes,
            len - ends[complete],
            "cut at {len}"
        );
        assert_eq!(recovery.corrupt_segments, 0);
        let got = drain(&q, "c").await;
        assert_eq!(got.len(), complete, "cut at {len}");
        for (s, r) in &got {
            assert_eq!(r, &records[*s as usize - 1]);
        }
        // The first lost sequence number is reused: it was never acknowledged.
        assert_eq!(q.append(rec(99, 5)).await.unwrap(), complete as u64 + 1);
        q.close();
    }
}

#[tokio::test]
async fn bad_checksum_of_the_final_record_is_a_torn_tail_and_in_the_middle_it_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let records = varied(3);
    {
        let (q, _) = Queue::open(cfg(&base, 1 << 20), &["c"]).unwrap();
        for r in &records {
            q.append(r.clone()).await.unwrap();
        }
    }
    let seg = segments(&base).pop().unwrap();
    let bytes = fs::read(&seg).unwrap();
    let end1 = HEADER_LEN + records[0].payload.len();

    // Last byte of the last payload flipped: torn tail.
    let d = dir.path().join("tail");
    fs::create_dir_all(&d).unwrap();
    let mut b = bytes.clone();
    *b.last_mut().unwrap() ^= 0x55;
    fs::write(d.join(seg.file_name().unwrap()), &b).unwrap();
    let (q, r) = Queue::open(cfg(&d, 1 << 20), &["c"]).unwrap();
    assert_eq!((r.records, r.corrupt_segments), (2, 0));
    assert_eq!(
        r.truncated_bytes,
        (HEADER_LEN + records[2].payload.len()) as u64
    );
    assert_eq!(drain(&q, "c").await.len(), 2);
    drop(q);

    // Payload of the second record flipped, the third intact behind it: corruption.
    let d = dir.path().join("middle");
    fs::create_dir_all(&d).unwrap();
    let mut b = bytes.clone();
    b[end1 + HEADER_LEN + 3] ^= 0x55;
    fs::write(d.join(seg.file_name().unwrap()), &b).unwrap();
    let (q, r) = Queue::open(cfg(&d, 1 << 20), &["c"]).unwrap();
    assert_eq!(
        (r.records, r.corrupt_segments, r.skipped_records),
        (1, 1, 2)
    );
    assert_eq!(r.truncated_bytes, (bytes.len() - end1) as u64);
    assert_eq!(seqs(&drain(&q, "c").await), vec![1]);
    // Sequence numbers never go back below a record that had a good checksum.
    assert_eq!(q.append(rec(9, 5)).await.unwrap(), 4);
    assert_eq!(q.stats().dropped.corrupt.records, 2);
}

#[tokio::test]
async fn random_corruption_in_a_middle_segment_is_skipped_counted_and_later_segments_stay_readable()
{
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for trial in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let per_seg = 5u64;
        let frame = HEADER_LEN as u64 + 100;
        {
            let (q, _) = Queue::open(cfg(dir.path(), per_seg * frame), &["c"]).unwrap();
            fill(&q, 1, 3 * per_seg, 100).await;
        }
        let segs = segments(dir.path());
        assert_eq!(segs.len(), 3);
        let mut b = fs::read(&segs[1]).unwrap();
        let flips = rng.random_range(1..=3);
        let mut lowest = usize::MAX;
        for _ in 0..flips {
            let at = rng.random_range(0..b.len());
            b[at] ^= rng.random_range(1..=255u8);
            lowest = lowest.min(at);
        }
        fs::write(&segs[1], &b).unwrap();
        let bad = lowest as u64 / frame; // index in the segment of the first damaged record

        let (q, recovery) = Queue::open(cfg(dir.path(), per_seg * frame), &["c"]).unwrap();
        let got = drain(&q, "c").await;
        let mut want: Vec<u64> = (1..=per_seg).collect();
        want.extend(per_seg + 1..=per_seg + bad);
        want.extend(2 * per_seg + 1..=3 * per_seg);
        assert_eq!(seqs(&got), want, "trial {trial}, flips at {lowest}");
        for (s, r) in &got {
            assert_eq!(*r, rec(*s, 100));
        }
        let s = q.stats();
        let lost = per_seg - bad;
        assert_eq!(
            s.consumers[0].dropped.corrupt.records, lost,
            "trial {trial}"
        );
        assert_eq!(s.dropped.corrupt.records, lost, "trial {trial}");
        assert_eq!(s.corrupt_segments, 1);
        assert!(recovery.corrupt_segments <= 1 && recovery.truncated_bytes == 0);
        // The queue keeps working.
        assert_eq!(q.append(rec(0, 10)).await.unwrap(), 3 * per_seg + 1);
    }
}

#[tokio::test]
async fn cap_evicts_the_oldest_segments_first_with_exact_dropped_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), 3 * FRAME_300);
    c.max_disk_bytes = 3000; // two full segments and the one being written
    let (q, _) = Queue::open(c, &["a", "b"]).unwrap();
    fill(&q, 1, 2, 300).await;
    q.commit("a", 2).await.unwrap();
    for i in 3..=20 {
        q.append(rec(i, 300)).await.unwrap();
        assert!(q.stats().disk_bytes <= 3000);
    }
    // Segments [1-3] .. [10-12] were evicted; [13-15], [16-18], [19-20] remain.
    let s = q.stats();
    assert_eq!(s.segments, 3);
    let points = |r: std::ops::RangeInclusive<u64>| r.map(|i| u64::from(points_of(i))).sum::<u64>();
    assert_eq!(s.dropped.evicted_cap.records, 12);
    assert_eq!(s.dropped.evicted_cap.points, points(1..=12));
    let a = s.consumer("a").unwrap().dropped;
    let b = s.consumer("b").unwrap().dropped;
    assert_eq!(
        (a.evicted_cap.records, a.evicted_cap.points),
        (10, points(3..=12))
    );
    assert_eq!(
        (b.evicted_cap.records, b.evicted_cap.points),
        (12, points(1..=12))
    );
    assert_eq!(s.dropped.evicted_disk_ratio.records, 0);
    assert_eq!(s.consumer("a").unwrap().pending_records, 8);
    assert_eq!(s.consumer("b").unwrap().pending_points, points(13..=20));
    assert_eq!(
        s.dropped_points_by_reason(),
        vec![
            ("evicted_cap".to_string(), points(1..=12)),
            ("evicted_disk_ratio".into(), 0),
            ("corrupt".into(), 0)
        ]
    );
    assert_eq!(seqs(&drain(&q, "a").await), (13..=20).collect::<Vec<_>>());
    assert_eq!(seqs(&drain(&q, "b").await), (13..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn eviction_skips_what_a_lagging_reader_had_in_hand_but_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), 3 * FRAME_300);
    c.max_disk_bytes = 3000;
    c.mem_cache_bytes = 0;
    let (q, _) = Queue::open(c, &["a"]).unwrap();
    fill(&q, 1, 9, 300).await;
    assert_eq!(seqs(&q.read("a", 2).await.unwrap()), vec![1, 2]);
    fill(&q, 10, 1, 300).await; // evicts [1-3]
    assert_eq!(seqs(&q.read("a", 2).await.unwrap()), vec![4, 5]);
    q.commit("a", 2).await.unwrap(); // stale commit: a no-op
    assert_eq!(
        q.stats().consumer("a").unwrap().dropped.evicted_cap.records,
        3
    );
}

#[tokio::test]
async fn no_drop_refuses_with_full_then_accepts_after_a_consumer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), 3 * FRAME_300);
    c.max_disk_bytes = 3000;
    c.no_drop = true;
    let (q, _) = Queue::open(c, &["a"]).unwrap();
    fill(&q, 1, 9, 300).await;
    let err = q.append(rec(10, 300)).await.unwrap_err();
    let QueueError::Full(msg) = &err else {
        panic!("want Full, got {err:?}")
    };
    assert!(
        msg.contains("max_disk_bytes") && msg.contains("max_capacity_gb"),
        "{msg}"
    );
    assert_eq!(q.stats().dropped.total().records, 0);
    assert_eq!(q.stats().last_seq, 9);

    q.commit("a", 3).await.unwrap();
    assert_eq!(q.append(rec(10, 300)).await.unwrap(), 10);
    let got = drain(&q, "a").await;
    assert_eq!(seqs(&got), (4..=10).collect::<Vec<_>>());
    assert_eq!(got.last().unwrap().1, rec(10, 300));
}

#[tokio::test]
async fn record_larger_than_the_cap_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), 1 << 20);
    c.max_disk_bytes = 1000;
    let (q, _) = Queue::open(c, &["a"]).unwrap();
    let err = q.append(rec(1, 1000)).await.unwrap_err();
    assert!(
        matches!(err, QueueError::RecordTooLarge { bytes, cap: 1000 } if bytes == 1000 + HEADER_LEN as u64)
    );
    assert!(err.to_string().contains("max_capacity_gb"));
    // A record that fits exactly is fine.
    assert_eq!(q.append(rec(2, 1000 - HEADER_LEN)).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_resolves_64_concurrent_appenders_with_far_fewer_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = Queue::open(cfg(dir.path(), 1 << 20), &["a"]).unwrap();
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..10 {
                seqs.push(q.append(rec(t * 100 + i, 200)).await.unwrap());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        all.extend(s);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=640).collect::<Vec<_>>());
    let s = q.stats();
    assert_eq!(s.appended_records, 640);
    assert!(s.fsyncs * 4 <= 640, "{} fsyncs for 640 appends", s.fsyncs);
    assert_eq!(drain(&q, "a").await.len(), 640);
}

#[tokio::test]
async fn read_waits_for_data_and_returns_empty_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = Queue::open(cfg(dir.path(), 1 << 20), &["a"]).unwrap();
    let reader = {
        let q = q.clone();
        tokio::spawn(async move { q.read("a", 10).await.unwrap() })
    };
    // Current-thread runtime: once we yield, the reader has run until it waits.
    tokio::task::yield_now().await;
    assert!(!reader.is_finished());
    q.append(rec(1, 10)).await.unwrap();
    assert_eq!(seqs(&reader.await.unwrap()), vec![1]);

    q.commit("a", 1).await.unwrap();
    let waiting = {
        let q = q.clone();
        tokio::spawn(async move { q.read("a", 10).await.unwrap() })
    };
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    q.close();
    assert!(waiting.await.unwrap().is_empty());
    assert!(q.read("a", 10).await.unwrap().is_empty());
    assert!(matches!(
        q.append(rec(2, 10)).await,
        Err(QueueError::Closed)
    ));
}

#[tokio::test]
async fn the_memory_cache_lets_go_of_records_once_every_consumer_committed_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), 2000);
    c.mem_cache_bytes = 10_000;
    let (q, _) = Queue::open(c, &["a", "b"]).unwrap();
    fill(&q, 1, 10, 300).await;
    assert_eq!(q.stats().mem_cache_records, 10);
    let read = q.try_read("a", 4).await.unwrap();
    assert_eq!(seqs(&read), vec![1, 2, 3, 4]);
    q.commit("a", 4).await.unwrap();
    // "b" has not read them yet: all stay.
    assert_eq!(q.stats().mem_cache_records, 10);
    q.commit("b", 6).await.unwrap();
    let s = q.stats();
    assert_eq!((s.mem_cache_records, s.mem_cache_bytes), (6, 1800));
    // What is pending for "a" (5 and 6) still comes back, from memory or disk alike.
    let read = q.try_read("a", 10).await.unwrap();
    assert_eq!(seqs(&read), (5..=10).collect::<Vec<_>>());
    q.commit("a", 10).await.unwrap();
    q.commit("b", 10).await.unwrap();
    let s = q.stats();
    assert_eq!((s.mem_cache_records, s.mem_cache_bytes), (0, 0));
}

#[tokio::test]
async fn lagging_consumer_reads_from_disk_while_memory_holds_only_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), 2000);
    c.mem_cache_bytes = 1000;
    let (q, _) = Queue::open(c, &["slow"]).unwrap();
    fill(&q, 1, 50, 300).await;
    let s = q.stats();
    assert_eq!((s.mem_cache_records, s.mem_cache_bytes), (3, 900));
    let mut got = Vec::new();
    loop {
        let b = q.try_read("slow", 7).await.unwrap();
        let Some((last, _)) = b.last() else { break };
        assert!(b.len() <= 7);
        q.commit("slow", *last).await.unwrap();
        got.extend(b);
    }
    assert_eq!(seqs(&got), (1..=50).collect::<Vec<_>>());
    for (s, r) in &got {
        assert_eq!(*r, rec(*s, 300));
    }
}

#[tokio::test]
async fn unknown_duplicate_and_concurrent_opens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = Queue::open(cfg(dir.path(), 1 << 20), &["a"]).unwrap();
    assert!(matches!(q.read("zz", 1).await, Err(QueueError::UnknownConsumer(n)) if n == "zz"));
    assert!(matches!(
        q.commit("zz", 1).await,
        Err(QueueError::UnknownConsumer(_))
    ));
    let again = Queue::open(cfg(dir.path(), 1 << 20), &["a"]);
    assert!(matches!(&again, Err(QueueError::Config(m)) if m.contains("in use")));
    let other = tempfile::tempdir().unwrap();
    assert!(matches!(
        Queue::open(cfg(other.path(), 1 << 20), &["a", "a"]),
        Err(QueueError::Config(_))
    ));
}

#[tokio::test]
async fn stats_show_pending_records_points_bytes_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = Queue::open(cfg(dir.path(), 1 << 20), &["a"]).unwrap();
    fill(&q, 1, 5, 100).await;
    let s = q.stats();
    assert_eq!(s.disk_bytes, 5 * (HEADER_LEN as u64 + 100));
    assert_eq!((s.segments, s.last_seq, s.appended_records), (1, 5, 5));
    let a = s.consumer("a").unwrap();
    assert_eq!(a.pending_records, 5);
    assert_eq!(
        a.pending_points,
        (1..=5).map(|i| u64::from(points_of(i))).sum::<u64>()
    );
    assert!(a.oldest_pending_age.unwrap() < Duration::from_secs(60));
    q.commit("a", 2).await.unwrap();
    let s = q.stats();
    assert_eq!(s.pending_records("a"), 3);
    assert_eq!(
        s.pending_points("a"),
        (3..=5).map(|i| u64::from(points_of(i))).sum::<u64>()
    );
    q.commit("a", 5).await.unwrap();
    let s = q.stats();
    assert_eq!(s.consumer("a").unwrap().oldest_pending_age, None);
    assert_eq!(s.oldest_pending_secs("a"), 0);
}

#[tokio::test]
async fn positions_are_written_lazily_and_a_crash_copy_only_causes_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let (q, _) = Queue::open(cfg(&live, 1 << 20), &["a"]).unwrap();
    fill(&q, 1, 6, 50).await;
    q.commit("a", 2).await.unwrap();
    q.flush_positions().await.unwrap();
    q.commit("a", 4).await.unwrap();
    // A crash now may or may not have the second commit on disk.
    let crash = dir.path().join("crash");
    snapshot(&live, &crash);
    let (c, _) = Queue::open(cfg(&crash, 1 << 20), &["a"]).unwrap();
    let first = c.read("a", 1).await.unwrap()[0].0;
    assert!(first == 3 || first == 5, "resumed at {first}");
    // After an explicit flush the position is exact.
    q.flush_positions().await.unwrap();
    let crash2 = dir.path().join("crash2");
    snapshot(&live, &crash2);
    let (c2, _) = Queue::open(cfg(&crash2, 1 << 20), &["a"]).unwrap();
    assert_eq!(seqs(&drain(&c2, "a").await), vec![5, 6]);
}

#[tokio::test]
async fn a_read_within_a_byte_budget_stops_after_the_record_reaching_it_from_memory_and_from_disk()
{
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = Queue::open(cfg(dir.path(), 1 << 20), &["up"]).unwrap();
    fill(&q, 1, 10, 300).await;
    // From the memory cache.
    assert_eq!(
        seqs(&q.read_within("up", 64, 600).await.unwrap()),
        vec![1, 2]
    );
    assert_eq!(
        seqs(&q.read_within("up", 64, 601).await.unwrap()),
        vec![1, 2, 3]
    );
    assert_eq!(seqs(&q.read_within("up", 64, 0).await.unwrap()), vec![1]);
    assert_eq!(
        seqs(&q.read_within("up", 2, 1 << 20).await.unwrap()),
        vec![1, 2]
    );
    q.commit("up", 3).await.unwrap();
    q.close();
    drop(q);

    // From the segment files (the cache is empty after a reopen).
    let (q, _) = Queue::open(cfg(dir.path(), 1 << 20), &["up"]).unwrap();
    assert_eq!(
        seqs(&q.try_read_within("up", 64, 601).await.unwrap()),
        vec![4, 5, 6]
    );
    assert_eq!(
        seqs(&q.try_read_within("up", 64, 0).await.unwrap()),
        vec![4]
    );
    q.commit("up", 4).await.unwrap();
    assert_eq!(seqs(&q.read_within("up", 64, 300).await.unwrap()), vec![5]);
    q.commit("up", 5).await.unwrap();
    let rest = q.try_read_within("up", 64, usize::MAX).await.unwrap();
    assert_eq!(seqs(&rest), (6..=10).collect::<Vec<_>>());
    for (s, r) in &rest {
        assert_eq!(*r, rec(*s, 300));
    }
}
