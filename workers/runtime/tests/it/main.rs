//! The worker runtime against an in-process fake supervisor on real Unix sockets: hello,
//! batched pushes with acks, health, pause, reconfigure in place, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dk_proto::rpc::{
    Ack, Batch, CONTROL_SOCKET, ControlClient, Hello, HelloReply, INGEST_SOCKET, Ingest, InputSpec,
    LastError, WorkerConfig,
};
use dk_proto::{Category, Point, Value};
use dk_worker::rpc::{context_with_timeout, transport};
use dk_worker::{ConfigProblem, Family, FeedOpts, Input, InputContext};
use futures::StreamExt;
use futures::future::BoxFuture;
use tarpc::server::{BaseChannel, Channel};
use tokio::sync::mpsc;

/// A family with one input, `tick`, that emits `value` every 10 ms.
struct TickFamily;

#[derive(Default, serde::Deserialize)]
struct TickConfig {
    value: i64,
}

struct Tick(i64);

impl Input for Tick {
    fn name(&self) -> &str {
        "tick"
    }
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut n = 0i64;
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
                if *ctx.paused.borrow() {
                    continue;
                }
                n += 1;
                let p = Point::new("tick", n)
                    .field("value", Value::I(self.0))
                    .field("n", Value::I(n));
                ctx.emitter
                    .emit(Category::Metric, "tick", FeedOpts::default(), vec![p])
                    .await;
            }
        })
    }
}

impl Family for TickFamily {
    fn name(&self) -> &'static str {
        "tick"
    }
    fn inputs(&self) -> &'static [&'static str] {
        &["tick"]
    }
    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        &[("tick", "[[inputs.tick]]\nvalue = 1\n")]
    }
    fn validate(&self, _: &str, toml_text: &str) -> Vec<ConfigProblem> {
        dk_worker::config::decode::<TickConfig>(toml_text).into_problems()
    }
    fn build(&self, config: &WorkerConfig) -> Result<Vec<Box<dyn Input>>, Vec<ConfigProblem>> {
        config
            .inputs
            .iter()
            .map(|s| {
                dk_worker::config::decode::<TickConfig>(&s.toml)
                    .into_result()
                    .map(|c| Box::new(Tick(c.value)) as Box<dyn Input>)
            })
            .collect()
    }
}

fn config(value: &str) -> WorkerConfig {
    WorkerConfig {
        family: "tick".into(),
        hostname: "h".into(),
        inputs: vec![InputSpec {
            name: "tick".into(),
            source: "t.conf".into(),
            toml: format!("value = {value}\n"),
        }],
        listeners: vec![],
        health_interval_ms: 1000,
    }
}

#[derive(Clone)]
struct FakeSupervisor {
    config: WorkerConfig,
    batches: mpsc::UnboundedSender<Batch>,
    retry_first: Arc<Mutex<bool>>,
}

impl Ingest for FakeSupervisor {
    async fn hello(self, _: tarpc::context::Context, hello: Hello) -> HelloReply {
        assert_eq!(hello.family, "tick");
        assert_eq!(hello.build, dk_proto::build_id());
        HelloReply::Accepted(self.config)
    }
    async fn push(self, _: tarpc::context::Context, batch: Arc<Batch>) -> Ack {
        // The first push is asked to retry: the worker must send it again, not lose it.
        let mut retry = self.retry_first.lock().unwrap();
        if *retry {
            *retry = false;
            return Ack::Retry("queue full".into());
        }
        drop(retry);
        let batch = Arc::unwrap_or_clone(batch);
        let n = batch.points.len() as u32;
        let _ = self.batches.send(batch);
        Ack::Accepted {
            points: n,
            dropped: 0,
        }
    }
    async fn last_error(self, _: tarpc::context::Context, _: LastError) {}
}

fn values(batches: &[Batch]) -> Vec<(i64, i64)> {
    batches
        .iter()
        .flat_map(|b| b.points.iter())
        .map(|p| match (p.get_field("value"), p.get_field("n")) {
            (Some(Value::I(v)), Some(Value::I(n))) => (*v, *n),
            other => panic!("unexpected fields {other:?}"),
        })
        .collect()
}

/// How long a test waits for a batch or a count before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// The next batch, failing the test after [`PATIENCE`].
async fn next_batch(rx: &mut mpsc::UnboundedReceiver<Batch>) -> Batch {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a batch within the patience")
        .expect("the batch channel is open")
}

async fn drain(rx: &mut mpsc::UnboundedReceiver<Batch>, into: &mut Vec<Batch>) {
    while let Ok(b) = rx.try_recv() {
        into.push(b);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_pushes_batches_answers_control_and_drains_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = tokio::net::UnixListener::bind(dir.path().join(INGEST_SOCKET)).unwrap();
    let control = tokio::net::UnixListener::bind(dir.path().join(CONTROL_SOCKET)).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sup = FakeSupervisor {
        config: config("1"),
        batches: tx,
        retry_first: Arc::new(Mutex::new(true)),
    };
    tokio::spawn(async move {
        let (stream, _) = ingest.accept().await.unwrap();
        BaseChannel::with_defaults(transport(stream))
            .execute(sup.serve())
            .for_each(|f| async {
                tokio::spawn(f);
            })
            .await;
    });
    let run_dir = dir.path().to_path_buf();
    let worker = tokio::spawn(async move { dk_worker::worker::run(&TickFamily, &run_dir).await });
    let (stream, _) = control.accept().await.unwrap();
    let client = ControlClient::new(tarpc::client::Config::default(), transport(stream)).spawn();
    let ctx = || context_with_timeout(Duration::from_secs(5));

    // Batches arrive, the first one after a retry.
    let mut got = Vec::new();
    while values(&got).len() < 10 {
        got.push(next_batch(&mut rx).await);
    }
    assert!(values(&got).iter().all(|(v, _)| *v == 1));
    assert_eq!(
        values(&got)[0].1,
        1,
        "the retried first batch was sent again, starting at n=1"
    );
    // The worker counts a batch once its ack is back, just after we saw it.
    let mut health = client.health(ctx()).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while health.points_acked < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} points acked after {PATIENCE:?}",
            health.points_acked
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        health = client.health(ctx()).await.unwrap();
    }
    assert_eq!(health.pid, std::process::id());

    // Pause is visible to inputs and in health.
    client.set_paused(ctx(), true).await.unwrap();
    assert!(client.health(ctx()).await.unwrap().paused);
    client.set_paused(ctx(), false).await.unwrap();

    // A bad reconfigure is refused and the old inputs keep running.
    let err = client.reconfigure(ctx(), config("\"x\"")).await.unwrap();
    assert!(err.is_err_and(|e| e.contains("value")));
    // A good one replaces the inputs in place.
    client
        .reconfigure(ctx(), config("2"))
        .await
        .unwrap()
        .unwrap();
    loop {
        let b = next_batch(&mut rx).await;
        if values(std::slice::from_ref(&b))
            .iter()
            .any(|(v, _)| *v == 2)
        {
            break;
        }
    }

    // Shutdown: the worker returns cleanly after pushing what it had buffered, with no batch
    // left waiting for an ack.
    client.shutdown(ctx(), 2000).await.unwrap();
    worker.await.unwrap().unwrap();
    drain(&mut rx, &mut got).await;
    let health = client.health(ctx()).await.unwrap();
    assert_eq!(health.pending_batches, 0, "{health:?}");
    assert!(health.points_acked as usize >= values(&got).len());
}

/// A supervisor that answers every push with `answer` and records the batches.
#[derive(Clone)]
struct Answering {
    answer: Ack,
    batches: mpsc::UnboundedSender<Batch>,
}

impl Ingest for Answering {
    async fn hello(self, _: tarpc::context::Context, _: Hello) -> HelloReply {
        HelloReply::Refused("not used".into())
    }
    async fn push(self, _: tarpc::context::Context, batch: Arc<Batch>) -> Ack {
        let _ = self.batches.send(Arc::unwrap_or_clone(batch));
        self.answer
    }
    async fn last_error(self, _: tarpc::context::Context, _: LastError) {}
}

/// Runs the sender against an `Answering` supervisor over a real framed Unix socket pair (the
/// production codec, so a batch over the frame cap would break the connection).
async fn sender_against(
    answer: Ack,
    feeds: Vec<Vec<Point>>,
) -> (
    Result<(), dk_worker::sender::SenderError>,
    Arc<dk_worker::sender::SenderStats>,
    Vec<Batch>,
) {
    let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sup = Answering {
        answer,
        batches: tx,
    };
    tokio::spawn(
        BaseChannel::with_defaults(transport(theirs))
            .execute(sup.serve())
            .for_each(|f| async {
                tokio::spawn(f);
            }),
    );
    let client =
        dk_proto::rpc::IngestClient::new(tarpc::client::Config::default(), transport(ours)).spawn();
    let stats = Arc::new(dk_worker::sender::SenderStats::default());
    let (emitter, emitted) = dk_worker::Emitter::channel(16);
    let sender = tokio::spawn(dk_worker::sender::run(
        emitted,
        std::sync::Arc::new(dk_worker::link::Link::new(client)),
        stats.clone(),
    ));
    for points in feeds {
        emitter
            .emit(Category::Logging, "big", FeedOpts::default(), points)
            .await;
    }
    drop(emitter);
    let result = tokio::time::timeout(Duration::from_secs(20), sender)
        .await
        .expect("the sender finishes")
        .unwrap();
    let mut got = Vec::new();
    drain(&mut rx, &mut got).await;
    (result, stats, got)
}

fn line(n: i64, bytes: usize) -> Point {
    Point::new("big", n).field("message", Value::S("x".repeat(bytes)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_batch_is_dropped_and_counted_instead_of_retried() {
    let points: Vec<Point> = (0..3).map(|n| line(n, 10)).collect();
    let (result, stats, got) =
        sender_against(Ack::Rejected("too large".into()), vec![points]).await;
    result.unwrap();
    assert_eq!(got.len(), 1, "pushed once, never again");
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.rejected_batches.load(Relaxed), 1);
    assert_eq!(stats.dropped.load(Relaxed), 3);
    assert_eq!(stats.acked.load(Relaxed), 0);
    assert_eq!(stats.pending.load(Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_log_lines_travel_in_batches_under_the_frame_cap_and_a_giant_point_is_dropped() {
    use dk_proto::rpc::{MAX_BATCH_BYTES, MAX_FRAME_BYTES, wire_size};
    // 40 lines at Datakit's 512 KiB cut (20 MiB, over twice the frame cap), and one point
    // larger than the frame cap on its own.
    let mut points: Vec<Point> = (0..40).map(|n| line(n, 512 * 1024)).collect();
    points.push(line(99, MAX_FRAME_BYTES + 1));
    let (result, stats, got) = sender_against(
        Ack::Accepted {
            points: 0,
            dropped: 0,
        },
        vec![points],
    )
    .await;
    result.unwrap();
    let delivered: usize = got.iter().map(|b| b.points.len()).sum();
    assert_eq!(delivered, 40, "every line that fits arrived");
    assert!(got.len() >= 10, "split into {} batches", got.len());
    for b in &got {
        let size: usize = b.points.iter().map(wire_size).sum();
        assert!(size <= MAX_BATCH_BYTES, "batch of {size} bytes");
    }
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.oversize_points.load(Relaxed), 1);
    assert_eq!(stats.dropped.load(Relaxed), 1);
}
