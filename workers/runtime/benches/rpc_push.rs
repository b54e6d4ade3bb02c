//! Worker → supervisor push throughput over a real Unix socket with tarpc + bincode.
//!
//! Both ends run in this process (server and client on one tokio runtime), so the figure is
//! the cost of encode + socket + decode + ack per point. Batch sizes 1, 100, 1000.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dk_proto::rpc::{Ack, Batch, Hello, HelloReply, Ingest, IngestClient, LastError};
use dk_proto::{Category, Point, Value};
use dk_worker::rpc::{context_with_timeout, transport};
use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone)]
struct Counting;

impl Ingest for Counting {
    async fn hello(self, _: tarpc::context::Context, _: Hello) -> HelloReply {
        HelloReply::Refused("bench".into())
    }
    async fn push(self, _: tarpc::context::Context, batch: Arc<Batch>) -> Ack {
        let batch = Arc::unwrap_or_clone(batch);
        Ack::Accepted {
            points: batch.points.len() as u32,
            dropped: 0,
        }
    }
    async fn last_error(self, _: tarpc::context::Context, _: LastError) {}
}

fn point(i: usize) -> Point {
    Point::new("cpu", 1_700_000_000_000_000_000 + i as i64)
        .tag("host", "web-01")
        .tag("cpu", "cpu-total")
        .tag("region", "eu-west-1")
        .field("usage_user", Value::F(12.5))
        .field("usage_system", Value::F(3.25))
        .field("usage_idle", Value::F(84.0))
        .field("count", Value::I(i as i64))
        .field("load5s", Value::I(3))
}

fn bench_push(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest.sock");
    let client: IngestClient = rt.block_on(async {
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(
                    BaseChannel::with_defaults(transport(stream))
                        .execute(Counting.serve())
                        .for_each(|f| async {
                            tokio::spawn(f);
                        }),
                );
            }
        });
        let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        IngestClient::new(tarpc::client::Config::default(), transport(stream)).spawn()
    });

    let mut group = c.benchmark_group("rpc/push");
    for size in [1usize, 100, 1000] {
        let batch = Arc::new(Batch {
            seq: 0,
            category: Category::Metric,
            input: "cpu".into(),
            election: false,
            no_global_tags: false,
            points: (0..size).map(point).collect(),
        });
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &batch, |b, batch| {
            b.to_async(&rt).iter(|| {
                let client = client.clone();
                let batch = batch.clone();
                async move {
                    let ack = client
                        .push(
                            context_with_timeout(std::time::Duration::from_secs(10)),
                            batch,
                        )
                        .await
                        .unwrap();
                    assert!(matches!(ack, Ack::Accepted { .. }));
                }
            });
        });
    }
    group.finish();

    // As the worker's sender runs: up to MAX_IN_FLIGHT pushes outstanding.
    let mut group = c.benchmark_group("rpc/push_in_flight_4");
    let size = 1000usize;
    let batch = Arc::new(Batch {
        seq: 0,
        category: Category::Metric,
        input: "cpu".into(),
        election: false,
        no_global_tags: false,
        points: (0..size).map(point).collect(),
    });
    group.throughput(Throughput::Elements(4 * size as u64));
    group.bench_function(BenchmarkId::from_parameter(size), |b| {
        b.to_async(&rt).iter(|| {
            let pushes = (0..4).map(|_| {
                let client = client.clone();
                let batch = batch.clone();
                async move {
                    client
                        .push(
                            context_with_timeout(std::time::Duration::from_secs(10)),
                            batch,
                        )
                        .await
                        .unwrap()
                }
            });
            futures::future::join_all(pushes)
        });
    });
    group.finish();
}

criterion_group!(benches, bench_push);
criterion_main!(benches);
