//! The agent and its disk: a slow disk never stalls the API, a full disk never stops the agent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Agent, try_request};

/// A body of `lines` metric lines of about 100 bytes.
fn metric_body(thread: usize, round: u64, lines: usize) -> Vec<u8> {
    let mut body = String::with_capacity(lines * 110);
    for i in 0..lines {
        body.push_str(&format!(
            "load,thread={thread},round={round} value={i}i,padding=\"{:0>48}\" {}\n",
            i,
            1_700_000_000_000_000_000u64 + i as u64
        ));
    }
    body.into_bytes()
}

#[test]
fn ping_answers_within_50ms_at_p99_while_every_queue_fsync_takes_200ms_under_write_load() {
    // Small queue segments (1 MiB cap: 128 KiB each) so the uploaders finish segments, save
    // their positions and delete segments all the time while every fsync sleeps 200 ms.
    let agent = Agent::start_with(
        &[],
        "[dataway.wal]\n  max_capacity_gb = 0.001\n",
        &[("DK_DEBUG_FSYNC_DELAY_MS", "200")],
    );
    let api = agent.api;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for thread in 0..6 {
        let stop = stop.clone();
        let written = written.clone();
        writers.push(std::thread::spawn(move || {
            let category = if thread % 2 == 0 { "metric" } else { "logging" };
            let path = format!("/v1/write/{category}");
            let mut round = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let body = metric_body(thread, round, 500);
                if let Ok((200, _)) = try_request(api, "POST", &path, &[], &body) {
                    written.fetch_add(500, Ordering::SeqCst);
                }
                round += 1;
            }
        }));
    }
    // Let the load reach steady state (segments rotating, uploaders committing).
    std::thread::sleep(Duration::from_millis(500));
    let mut latencies = Vec::with_capacity(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..200 {
        assert!(Instant::now() < deadline, "200 pings took over 30 s");
        let t = Instant::now();
        let (status, _) = try_request(api, "GET", "/v1/ping", &[], b"").unwrap();
        latencies.push(t.elapsed());
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    let max = latencies[latencies.len() - 1];
    let points = written.load(Ordering::SeqCst);
    eprintln!("ping under write load with 200 ms fsyncs: p50 {p50:?}, p99 {p99:?}, max {max:?}; {points} points written");
    // The load really ran through the queue and its segment deletions.
    assert!(points >= 6_000, "only {points} points were accepted");
    assert!(
        p99 < Duration::from_millis(50),
        "ping p99 {p99:?} (p50 {p50:?}, max {max:?}) with 200 ms fsyncs; log:\n{}",
        agent.log()
    );
}
