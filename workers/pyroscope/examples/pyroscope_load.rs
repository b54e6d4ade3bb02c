//! Pyroscope load test through the real agent: starts `datakit run` with one
//! `[[inputs.pyroscope]]` instance listening on a free port; `--connections` keep-alive
//! clients each POST `--uploads` profiles of `--size` bytes (octet-stream pprof, as
//! pyroscope-io sends them) to `/ingest` on that port. The input answers 200 only once a
//! profile is in the durable queue, so the rate is of durable uploads. Reports uploads/s,
//! MiB/s and the RSS of the worker and the supervisor. `--via api` sends to `/ingest` on the
//! API port (9529) instead, forwarded to the worker over its RPC (also answered once durable).
//!
//! ```sh
//! cargo build --release -p datakit
//! cargo run --release -p dk-input-pyroscope --example pyroscope_load -- \
//!     --datakit target/release/datakit [--connections 4] [--uploads 500] [--size 102400]
//! ```
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dk_worker::testing::load::{LoadAgent, cpu_seconds, free_port, rss_kib};

type Error = Box<dyn std::error::Error>;

/// Sends `uploads` profiles on one keep-alive connection; each must be answered 200.
fn client(port: u16, c: usize, uploads: usize, body: &[u8]) -> std::io::Result<()> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    // One write per request, no Nagle: what HTTP clients do (else 40 ms delayed-ACK stalls).
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    for u in 0..uploads {
        let from = 1_700_000_000 + u * 10;
        let head = format!(
            "POST /ingest?name=load-{c}%7Benv%3Dbench%7D&from={from}&until={}&spyName=pyspy&sampleRate=100&format=pprof HTTP/1.1\r\nHost: x\r\nContent-Type: binary/octet-stream\r\nContent-Length: {}\r\n\r\n",
            from + 10,
            body.len()
        );
        let mut req = Vec::with_capacity(head.len() + body.len());
        req.extend_from_slice(head.as_bytes());
        req.extend_from_slice(body);
        w.write_all(&req)?;
        let mut status = String::new();
        r.read_line(&mut status)?;
        if !status.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other(format!("answered {status:?}")));
        }
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut rest = vec![0u8; len];
        r.read_exact(&mut rest)?;
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let mut via_api = false;
    let (mut datakit, mut connections, mut uploads, mut size) = (
        PathBuf::from("target/release/datakit"),
        4usize,
        500usize,
        100 * 1024usize,
    );
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or("missing value")?;
        match flag.as_str() {
            "--datakit" => datakit = PathBuf::from(value),
            "--connections" => connections = value.parse()?,
            "--uploads" => uploads = value.parse()?,
            "--size" => size = value.parse()?,
            "--via" => via_api = value == "api",
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let port = free_port()?;
    let conf = format!(
        "[[inputs.pyroscope]]\n  listen = \"tcp://127.0.0.1:{port}\"\n  endpoints = [\"/ingest\"]\n"
    );
    let agent = LoadAgent::start(
        &datakit,
        "pyroscope-load",
        &[("pyroscope/pyroscope.conf", &conf)],
    )?;
    let worker = agent.wait_worker("pyroscope", Some(port))?;
    let body: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let target = if via_api { agent.api.port() } else { port };
    // The route on the API port is served once the worker is up.
    let t = Instant::now();
    while client(target, 0, 1, &body).is_err() {
        if t.elapsed() > Duration::from_secs(20) {
            return Err("/ingest does not answer 200".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu0 = (cpu_seconds(worker), cpu_seconds(agent.pid()));
    let start = Instant::now();
    let handles: Vec<_> = (0..connections)
        .map(|c| {
            let body = body.clone();
            std::thread::spawn(move || client(target, c, uploads, &body))
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "client panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = connections * uploads;
    let mib = (total * size) as f64 / (1 << 20) as f64;
    println!(
        "{total} uploads of {} KiB over {connections} connections to {} in {secs:.2} s: {:.0} uploads/s, {:.1} MiB/s",
        size / 1024,
        if via_api {
            "the API port (forwarded to the worker, answered once durable)"
        } else {
            "the input's port (answered once durable)"
        },
        total as f64 / secs,
        mib / secs
    );
    println!(
        "CPU s: worker {:.2}, supervisor {:.2}",
        cpu_seconds(worker) - cpu0.0,
        cpu_seconds(agent.pid()) - cpu0.1
    );
    let (w, a) = (
        rss_kib(worker).unwrap_or_default(),
        rss_kib(agent.pid()).unwrap_or_default(),
    );
    println!(
        "RSS now / peak (VmHWM): worker {} / {} KiB, supervisor {} / {} KiB",
        w.0, w.1, a.0, a.1
    );
    Ok(())
}
