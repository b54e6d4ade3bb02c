//! StatsD load harness: sends counter datagrams at a fixed rate with `sendmmsg`, then checks
//! the sums the agent flushed (local sink) against what was sent, and reports packets/s, loss
//! (kernel and agent queue, from `/metrics`) and the statsd worker's RSS.
//!
//! Usually run through `workers/statsd/scripts/statsd_load.sh`, which starts an agent:
//!
//! ```sh
//! cargo run --release -p dk-input-statsd --example statsd_load -- \
//!     --rate 250000 --count 1000000 --port 8125 --api 127.0.0.1:9529 --workdir /tmp/dk
//! ```
#![allow(clippy::print_stdout)]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use dk_proto::Value;
use dk_proto::lineproto::{DecodeOptions, Precision};
use dk_worker::serve::udp::MultiSend;
use dk_worker::testing::load::{cpu_seconds, http_get, metric_sum, rss_kib, worker_pid};

#[derive(Parser, Debug)]
#[command(about = "Send StatsD counters at a fixed rate and check what the agent flushed")]
struct Args {
    /// Datagrams per second to send (0: as fast as possible).
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Datagrams to send in total.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// UDP port of the statsd input.
    #[arg(long)]
    port: u16,
    /// Host of the statsd input.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Sender threads, each with its own socket (source port) and an equal share of the rate
    /// and count: with `udp_sockets` > 1 the kernel spreads them over the agent's sockets.
    #[arg(long, default_value_t = 1)]
    senders: u64,
    /// Datagrams per sendmmsg call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Distinct counter series (one line per datagram, `ld<run>.c<i>:1|c`).
    #[arg(long, default_value_t = 10)]
    series: u64,
    /// The agent's HTTP API (for /metrics); without it no drop counters are read.
    #[arg(long)]
    api: Option<SocketAddr>,
    /// The agent's work dir (its local sink is read to check the sums).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// The supervisor's pid, to find the statsd worker for RSS.
    #[arg(long)]
    agent_pid: Option<u32>,
    /// Longest wait for the flushed sums to reach the count, in seconds.
    #[arg(long, default_value_t = 30)]
    wait: u64,
}

/// Counter values of interest from /metrics.
#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    packets: f64,
    kernel_drops: f64,
    queue_full: f64,
}

fn snapshot(api: SocketAddr, listener: &str) -> Result<Snapshot> {
    let text = http_get(api, "/metrics")?;
    let l = format!("listener=\"{listener}\"");
    Ok(Snapshot {
        packets: metric_sum(&text, "datakit_input_received_events_total{", &[&l]),
        kernel_drops: metric_sum(
            &text,
            "datakit_input_dropped_total{",
            &["input=\"statsd\"", "reason=\"kernel\""],
        ),
        queue_full: metric_sum(
            &text,
            "datakit_input_dropped_total{",
            &["input=\"statsd\"", "reason=\"queue_full\""],
        ),
    })
}

/// Sum of every field of measurement `name` in the local sink's metric files.
fn flushed_sum(workdir: &Path, name: &str) -> Result<f64> {
    let dir = workdir.join("data/local/metric");
    let mut total = 0.0;
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0.0);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lp") {
            continue;
        }
        let body = std::fs::read(&path)?;
        let end = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let opts = DecodeOptions {
            precision: Precision::Ns,
            now_ns: 0,
        };
        let points = dk_proto::lineproto::decode(&body[..end], &opts)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for p in points.iter().filter(|p| p.name == name) {
            for (_, v) in &p.fields {
                total += match v {
                    Value::F(f) => *f,
                    Value::I(i) => *i as f64,
                    Value::U(u) => *u as f64,
                    _ => 0.0,
                };
            }
        }
    }
    Ok(total)
}

/// Sends `count` datagrams from `sock` at `rate` per second (0: as fast as possible);
/// returns (sent, send errors).
fn send_at_rate(
    sock: &UdpSocket,
    payloads: &[Vec<u8>],
    rate: u64,
    count: u64,
    batch_size: usize,
) -> (u64, u64) {
    // At any moment, `rate * elapsed` datagrams are due.
    let mut sender = MultiSend::new();
    let mut batch: Vec<&[u8]> = Vec::with_capacity(batch_size);
    let mut sent = 0u64;
    let mut send_errors = 0u64;
    let mut next_series = 0usize;
    let start = Instant::now();
    while sent < count {
        let due = if rate == 0 {
            count
        } else {
            let elapsed = start.elapsed().as_secs_f64();
            ((elapsed * rate as f64) as u64).min(count)
        };
        if due <= sent {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        let n = usize::try_from((due - sent).min(batch_size as u64)).unwrap_or(batch_size);
        batch.clear();
        for _ in 0..n {
            batch.push(&payloads[next_series]);
            next_series = (next_series + 1) % payloads.len();
        }
        match sender.send(sock.as_fd(), &batch) {
            // Datagrams not taken are re-sent next round (same series order is fine).
            Ok(k) => sent += k as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                send_errors += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
    (sent, send_errors)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.batch == 0 || args.series == 0 {
        bail!("--batch and --series must be at least 1");
    }
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() % 1_000_000;
    let measurement = format!("ld{run}");
    let payloads: Vec<Vec<u8>> = (0..args.series)
        .map(|i| format!("{measurement}.c{i}:1|c").into_bytes())
        .collect();
    let target = format!("{}:{}", args.host, args.port);
    let listener = format!("{}:{}", args.host, args.port);
    if args.senders == 0 {
        bail!("--senders must be at least 1");
    }
    let mut sockets = Vec::new();
    for _ in 0..args.senders {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.connect(&target)
            .with_context(|| format!("connect {target}"))?;
        sockets.push(sock);
    }

    let before = match args.api {
        Some(api) => Some(snapshot(api, &listener).context("reading /metrics before")?),
        None => None,
    };

    let worker = args.agent_pid.and_then(|a| worker_pid(a, "statsd"));
    let cpu_before = worker.map(cpu_seconds);

    let start = Instant::now();
    let (sent, send_errors) = std::thread::scope(|scope| {
        let handles: Vec<_> = sockets
            .iter()
            .enumerate()
            .map(|(i, sock)| {
                // Shares that add up to the totals exactly.
                let n = args.senders;
                let i = i as u64;
                let count = args.count / n + u64::from(i < args.count % n);
                let rate = args.rate / n + u64::from(i < args.rate % n);
                let payloads = &payloads;
                let batch = args.batch;
                scope.spawn(move || send_at_rate(sock, payloads, rate, count, batch))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0, 1)))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    let send_secs = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} datagrams from {} sender(s) in {send_secs:.3}s = {:.0} packets/s (target {}/s), send errors {send_errors}",
        args.senders,
        sent as f64 / send_secs,
        args.rate
    );

    let Some(workdir) = &args.workdir else {
        return Ok(());
    };
    // Wait until the flushed sums reach the count, or stop changing.
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut flushed = 0.0;
    let mut stable_since = Instant::now();
    loop {
        let now = flushed_sum(workdir, &measurement)?;
        if now != flushed {
            flushed = now;
            stable_since = Instant::now();
        }
        if flushed as u64 >= sent
            || Instant::now() > deadline
            || stable_since.elapsed() > Duration::from_secs(6)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let lost = sent as f64 - flushed;
    println!(
        "flushed sum {flushed:.0} of {sent}: lost {lost:.0} ({:.3}%)",
        100.0 * lost / sent.max(1) as f64
    );
    if let (Some(api), Some(before)) = (args.api, before) {
        // Health checks ship worker counters every second.
        std::thread::sleep(Duration::from_millis(1500));
        let after = snapshot(api, &listener).context("reading /metrics after")?;
        let received = after.packets - before.packets;
        let kernel = after.kernel_drops - before.kernel_drops;
        let ours = after.queue_full - before.queue_full;
        println!(
            "agent received {received:.0} packets; dropped by the kernel {kernel:.0}, by the agent queue {ours:.0}; unaccounted {:.0}",
            lost - kernel - ours
        );
    }
    if let Some(agent) = args.agent_pid {
        if let Some(worker) = worker
            && let Some((rss, hwm)) = rss_kib(worker)
        {
            let cpu = cpu_before.map_or(0.0, |before| cpu_seconds(worker) - before);
            println!(
                "statsd worker pid {worker}: RSS {rss} KiB, peak {hwm} KiB; CPU {cpu:.2}s for {sent} datagrams ({:.2} us each, {:.0}% of a core while sending)",
                cpu * 1e6 / sent.max(1) as f64,
                100.0 * cpu / send_secs
            );
        }
        if let Some((rss, hwm)) = rss_kib(agent) {
            println!("supervisor pid {agent}: RSS {rss} KiB, peak {hwm} KiB");
        }
    }
    Ok(())
}
