//! Socket-log load test through the real agent: starts `datakit run` on a temp work dir with
//! one `[[inputs.logging]]` TCP socket, writes many lines over a few TCP connections as fast
//! as they go, and counts what the local sink wrote (`datakit_io_sink_point_total` of the
//! logging category) until every line has arrived.
//!
//! ```sh
//! cargo build --release -p datakit
//! cargo run --release -p dk-input-logging --example socket_log_load -- \
//!     --datakit target/release/datakit [--connections 4] [--lines 250000] [--size 120]
//! ```
#![allow(clippy::print_stdout)]

use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dk_worker::testing::load::{LoadAgent, cpu_seconds, free_port, metric_sum, rss_kib};

type Error = Box<dyn std::error::Error>;

struct Options {
    datakit: PathBuf,
    connections: usize,
    lines: usize,
    size: usize,
}

fn options() -> Result<Options, Error> {
    let mut o = Options {
        datakit: PathBuf::from("target/release/datakit"),
        connections: 4,
        lines: 250_000,
        size: 120,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--datakit" => o.datakit = PathBuf::from(value),
            "--connections" => o.connections = value.parse()?,
            "--lines" => o.lines = value.parse()?,
            "--size" => o.size = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(o)
}

fn main() -> Result<(), Error> {
    let o = options()?;
    let tcp = free_port()?;
    let conf = format!(
        "[[inputs.logging]]\n  sockets = [\"tcp://127.0.0.1:{tcp}\"]\n  source = \"load\"\n"
    );
    let agent = LoadAgent::start(
        &o.datakit,
        "socket-log-load",
        &[("log/logging.conf", &conf)],
    )?;
    // The supervisor binds the socket before it starts the worker: wait for both.
    let worker = agent.wait_worker("logging", Some(tcp))?;
    let before = agent.sink_points("logging");
    let cpu_before = (cpu_seconds(agent.pid()), cpu_seconds(worker));

    let total = o.connections * o.lines;
    let start = Instant::now();
    let senders: Vec<_> = (0..o.connections)
        .map(|c| {
            let (lines, size) = (o.lines, o.size);
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut w =
                    BufWriter::with_capacity(64 * 1024, TcpStream::connect(("127.0.0.1", tcp))?);
                let pad = "x".repeat(size.saturating_sub(60));
                for i in 0..lines {
                    writeln!(
                        w,
                        "2024-05-01T12:00:00Z INFO conn={c} seq={i:09} request served {pad}"
                    )?;
                }
                w.flush()
            })
        })
        .collect();
    for s in senders {
        s.join().map_err(|_| "a sender panicked")??;
    }
    let sent = start.elapsed();

    let got =
        agent.wait_for_points("logging", before + total as f64, Duration::from_secs(15)) - before;
    let done = start.elapsed();
    if got < total as f64 {
        println!("stalled: {got} of {total} lines arrived");
    }
    let rss = agent
        .get("/metrics")
        .map(|m| metric_sum(&m, "datakit_worker_rss_bytes", &["logging"]))
        .unwrap_or(0.0);
    let cpu = (
        cpu_seconds(agent.pid()) - cpu_before.0,
        cpu_seconds(worker) - cpu_before.1,
    );
    let supervisor_peak = rss_kib(agent.pid()).map_or(0, |(_, peak)| peak);
    println!(
        "{total} lines of {} bytes over {} connections: sent in {:.2} s ({:.0} lines/s), \
         {got} written by the local sink after {:.2} s: {:.0} lines/s end to end; \
         logging worker RSS {:.1} MiB; CPU per 1 M lines: supervisor {:.2} s, logging worker {:.2} s; \
         supervisor peak RSS {:.1} MiB",
        o.size,
        o.connections,
        sent.as_secs_f64(),
        total as f64 / sent.as_secs_f64(),
        done.as_secs_f64(),
        got / done.as_secs_f64(),
        rss / (1024.0 * 1024.0),
        cpu.0 * 1e6 / total as f64,
        cpu.1 * 1e6 / total as f64,
        supervisor_peak as f64 / 1024.0
    );
    Ok(())
}
