//! logfwdserver load test through the real agent: starts `datakit run` with
//! `[inputs.logfwdserver]`; `--connections` WebSocket clients each upgrade `/logfwd` and
//! send `--messages` logfwd JSON messages (masked text frames, an nginx access line each) as
//! fast as the socket takes them. Reports messages/s sent, the time until the local sink has
//! written them all, and the RSS of the worker and the supervisor.
//!
//! ```sh
//! cargo build --release -p datakit
//! cargo run --release -p dk-input-logfwd --example logfwd_load -- \
//!     --datakit target/release/datakit [--connections 4] [--messages 100000]
//! ```
#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dk_input_logfwd::ws;
use dk_worker::testing::load::{LoadAgent, cpu_seconds, free_port, rss_kib};

type Error = Box<dyn std::error::Error>;

fn client(port: u16, c: usize, messages: usize) -> std::io::Result<()> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(&ws::client_request("/logfwd"))?;
    // The 101 answer ends with an empty line.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101 ") {
        return Err(std::io::Error::other("the upgrade was refused"));
    }
    let mut batch = Vec::new();
    for m in 0..messages {
        let json = format!(
            r#"{{"type":"1","source":"nginx","tags":{{"filename":"/var/log/nginx/access.log","pod_name":"web-{c}"}},"log":"127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \"GET /api/v1/items/{m} HTTP/1.1\" 200 512"}}"#
        );
        batch.extend(ws::client_frame(true, 1, json.as_bytes(), [7, 1, 3, 9]));
        if batch.len() > 64 * 1024 || m + 1 == messages {
            s.write_all(&batch)?;
            batch.clear();
        }
    }
    s.write_all(&ws::client_frame(true, 8, &1000u16.to_be_bytes(), [0; 4]))?;
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    Ok(())
}

fn main() -> Result<(), Error> {
    let (mut datakit, mut connections, mut messages) = (
        PathBuf::from("target/release/datakit"),
        4usize,
        100_000usize,
    );
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--datakit" => datakit = PathBuf::from(value),
            "--connections" => connections = value.parse()?,
            "--messages" => messages = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let port = free_port()?;
    let conf = format!("[inputs.logfwdserver]\n  address = \"127.0.0.1:{port}\"\n");
    let agent = LoadAgent::start(&datakit, "logfwd-load", &[("log/logfwdserver.conf", &conf)])?;
    let worker = agent.wait_worker("logfwd", Some(port))?;
    let before = agent.sink_points("logging");
    let cpu_before = (cpu_seconds(agent.pid()), cpu_seconds(worker));
    let total = connections * messages;
    let start = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|c| std::thread::spawn(move || client(port, c, messages)))
        .collect();
    for c in clients {
        c.join().map_err(|_| "a client panicked")??;
    }
    let sent = start.elapsed();
    let got =
        agent.wait_for_points("logging", before + total as f64, Duration::from_secs(15)) - before;
    let done = start.elapsed();
    let (w_rss, w_hwm) = rss_kib(worker).unwrap_or_default();
    let (s_rss, s_hwm) = rss_kib(agent.pid()).unwrap_or_default();
    println!(
        "logfwd: {total} messages ({connections} connections x {messages}) sent in {:.2}s = {:.0} messages/s; sink wrote {got} in {:.2}s = {:.0} messages/s",
        sent.as_secs_f64(),
        total as f64 / sent.as_secs_f64(),
        done.as_secs_f64(),
        got / done.as_secs_f64()
    );
    println!(
        "cpu: supervisor {:.2}s, worker {:.2}s; rss: worker {w_rss} KiB (peak {w_hwm}), supervisor {s_rss} KiB (peak {s_hwm})",
        cpu_seconds(agent.pid()) - cpu_before.0,
        cpu_seconds(worker) - cpu_before.1
    );
    if got < total as f64 {
        return Err(format!("only {got} of {total} messages reached the sink").into());
    }
    Ok(())
}
