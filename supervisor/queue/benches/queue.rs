//! Durable queue throughput (criterion) and append latency percentiles (a custom loop).
//!
//! - `append/1x64KiB`, `append/8x64KiB`: fsynced appends of 64 KiB records from 1 or 8
//!   concurrent appenders (group commit), on the filesystem of the temp dir.
//! - `read/mem_64x64KiB`, `read/disk_64x64KiB`: a consumer reading 64 records of 64 KiB from
//!   the memory cache or from segment files (page cache warm).
//! - Then a fixed loop prints p50/p99/max append latency, MB/s, appends/s and fsyncs per append.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_queue::{Queue, QueueConfig, Record};

const REC: usize = 64 << 10;

fn record() -> Record {
    Record {
        points: 100,
        payload: Bytes::from(vec![0x5a; REC]),
    }
}

fn open(dir: &std::path::Path, mem_cache: usize) -> Queue {
    let mut cfg = QueueConfig::new(dir);
    cfg.mem_cache_bytes = mem_cache;
    Queue::open(cfg, &["up"]).unwrap().0
}

/// Appends `n` records from `tasks` concurrent appenders; returns each append's latency.
async fn append_n(q: &Queue, tasks: usize, n: u64) -> Vec<Duration> {
    let per = n.div_ceil(tasks as u64);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let q = q.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per as usize);
            for _ in 0..per {
                let t = Instant::now();
                q.append(record()).await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Bytes(REC as u64));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for tasks in [1usize, 8] {
        g.bench_function(format!("{tasks}x64KiB"), |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().unwrap();
                let q = open(dir.path(), 8 << 20);
                let t = Instant::now();
                rt.block_on(append_n(&q, tasks, iters));
                let el = t.elapsed();
                q.close();
                el
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Bytes(64 * REC as u64));
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, cache) in [("mem_64x64KiB", 64usize << 20), ("disk_64x64KiB", 0)] {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), cache);
        rt.block_on(append_n(&q, 8, 64));
        g.bench_function(name, |b| {
            // Without a commit every read returns the same 64 records again.
            b.iter(|| {
                let got = rt.block_on(q.try_read("up", 64)).unwrap();
                assert_eq!(got.len(), 64);
                got
            });
        });
        q.close();
    }
    g.finish();

    latency(&rt);
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Fixed-size runs that print latency percentiles and the group-commit ratio.
fn latency(rt: &tokio::runtime::Runtime) {
    println!(
        "\nappend latency, 64 KiB records (fsynced, {})",
        std::env::temp_dir().display()
    );
    for (tasks, n) in [(1usize, 1000u64), (8, 4000)] {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), 8 << 20);
        let t = Instant::now();
        let mut lat = rt.block_on(append_n(&q, tasks, n));
        let el = t.elapsed().as_secs_f64();
        lat.sort_unstable();
        let s = q.stats();
        let mb = (s.appended_records as f64 * REC as f64) / (1 << 20) as f64;
        println!(
            "  {tasks} appender(s): {:.0} appends/s, {:.1} MiB/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.2} fsyncs/append",
            s.appended_records as f64 / el,
            mb / el,
            pct(&lat, 0.50).as_secs_f64() * 1e3,
            pct(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().unwrap().as_secs_f64() * 1e3,
            s.fsyncs as f64 / s.appended_records as f64,
        );
        q.close();
    }
}

criterion_group!(queue, benches);
criterion_main!(queue);
