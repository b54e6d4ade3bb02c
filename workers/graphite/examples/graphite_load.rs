//! Graphite load test through the real agent: starts `datakit run` on a temp work dir with one
//! `[[inputs.graphite]]` instance, writes many plaintext lines over a few TCP connections as
//! fast as they go, and waits until the local sink has written every one of them
//! (`datakit_io_sink_point_total` of the metric category), checking the graphite input's own
//! point counter agrees.
//!
//! ```sh
//! cargo build --release -p datakit
//! cargo run --release -p dk-input-graphite --example graphite_load -- \
//!     --datakit target/release/datakit [--connections 4] [--lines 250000] [--tags true]
//! ```
//!
//! `--udp true` sends the lines in datagrams of up to 1,400 bytes (as collectd packs them) from
//! `--connections` sockets instead, `--rate` lines/s in all (0: as fast as they go), with
//! `--read-buffer` as the input's `read_buffer_size`; it then reports the lines lost and the
//! kernel drops the input counted, rather than failing on loss.
#![allow(clippy::print_stdout)]

use std::io::{BufWriter, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dk_worker::testing::load::{
    LoadAgent, cpu_seconds, free_port, metric_sum, rss_kib, worker_pid,
};

type Error = Box<dyn std::error::Error>;

struct Options {
    datakit: PathBuf,
    connections: usize,
    lines: usize,
    tags: bool,
    udp: bool,
    rate: u64,
    read_buffer: usize,
}

fn options() -> Result<Options, Error> {
    let mut o = Options {
        datakit: PathBuf::from("target/release/datakit"),
        connections: 4,
        lines: 250_000,
        tags: false,
        udp: false,
        rate: 0,
        read_buffer: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--datakit" => o.datakit = PathBuf::from(value),
            "--connections" => o.connections = value.parse()?,
            "--lines" => o.lines = value.parse()?,
            "--tags" => o.tags = value.parse()?,
            "--udp" => o.udp = value.parse()?,
            "--rate" => o.rate = value.parse()?,
            "--read-buffer" => o.read_buffer = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(o)
}

/// Line `i` of sender `c`.
fn line(c: usize, i: usize, tags: bool) -> String {
    let ts = 1_750_000_000 + i / 100;
    if tags {
        format!(
            "load.conn{c}.metric{};dc=eu;rack=r{} {i}.5 {ts}\n",
            i % 100,
            i % 8
        )
    } else {
        format!("load.conn{c}.metric{} {i}.5 {ts}\n", i % 100)
    }
}

fn send_tcp(port: u16, c: usize, lines: usize, tags: bool) -> std::io::Result<usize> {
    let mut w = BufWriter::with_capacity(64 * 1024, TcpStream::connect(("127.0.0.1", port))?);
    let mut bytes = 0;
    for i in 0..lines {
        let line = line(c, i, tags);
        bytes += line.len();
        w.write_all(line.as_bytes())?;
    }
    w.flush()?;
    Ok(bytes)
}

/// Sends the lines in datagrams of up to 1,400 bytes, `rate` lines/s (0: unpaced).
fn send_udp(port: u16, c: usize, lines: usize, tags: bool, rate: u64) -> std::io::Result<usize> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(("127.0.0.1", port))?;
    let start = Instant::now();
    let mut datagram = String::with_capacity(1500);
    let mut bytes = 0;
    for i in 0..lines {
        let line = line(c, i, tags);
        if datagram.len() + line.len() > 1400 {
            bytes += datagram.len();
            sock.send(datagram.as_bytes())?;
            datagram.clear();
            if rate > 0 {
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        datagram.push_str(&line);
    }
    if !datagram.is_empty() {
        bytes += datagram.len();
        sock.send(datagram.as_bytes())?;
    }
    Ok(bytes)
}

fn main() -> Result<(), Error> {
    let o = options()?;
    let port = free_port()?;
    let conf = format!(
        "[[inputs.graphite]]\n  address = \"127.0.0.1:{port}\"\n  read_buffer_size = {}\n",
        o.read_buffer
    );
    let agent = LoadAgent::start(
        &o.datakit,
        "graphite-load",
        &[("graphite/graphite.conf", &conf)],
    )?;
    let ready = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if ready.elapsed() > Duration::from_secs(20) {
            return Err("the graphite port did not open in 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = agent.sink_points("metric");
    let agent_pid = agent.pid();
    // The supervisor binds the port before it starts the worker: wait for the worker too.
    let worker = loop {
        if let Some(pid) = worker_pid(agent_pid, "graphite") {
            break pid;
        }
        if ready.elapsed() > Duration::from_secs(20) {
            return Err("no graphite worker process after 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let cpu_before = (cpu_seconds(agent_pid), cpu_seconds(worker));

    let total = o.connections * o.lines;
    let start = Instant::now();
    let senders: Vec<_> = (0..o.connections)
        .map(|c| {
            let (lines, tags, udp) = (o.lines, o.tags, o.udp);
            let rate = o.rate / o.connections.max(1) as u64;
            std::thread::spawn(move || -> std::io::Result<usize> {
                if udp {
                    send_udp(port, c, lines, tags, rate)
                } else {
                    send_tcp(port, c, lines, tags)
                }
            })
        })
        .collect();
    let mut bytes = 0;
    for s in senders {
        bytes += s.join().map_err(|_| "a sender panicked")??;
    }
    let sent = start.elapsed();

    let stall = Duration::from_secs(if o.udp { 3 } else { 15 });
    let got = agent.wait_for_points("metric", before + total as f64, stall) - before;
    if got < total as f64 {
        println!("stalled: {got} of {total} lines arrived");
    }
    let done = start.elapsed();
    let metrics = agent.get("/metrics")?;
    let counted = metric_sum(&metrics, "datakit_input_graphite_points_total", &[]);
    let errors = metric_sum(
        &metrics,
        "datakit_input_parse_errors_total",
        &["input=\"graphite\""],
    );
    let rss = metric_sum(&metrics, "datakit_worker_rss_bytes", &["graphite"]);
    let kernel_drops = metric_sum(
        &metrics,
        "datakit_input_dropped_total",
        &["input=\"graphite\"", "reason=\"kernel\""],
    );
    let datagrams = metric_sum(
        &metrics,
        "datakit_input_received_events_total",
        &["input=\"graphite\"", "udp://"],
    );
    let cpu = (
        cpu_seconds(agent_pid) - cpu_before.0,
        cpu_seconds(worker) - cpu_before.1,
    );
    println!(
        "{total} lines ({:.1} MB, tags: {}) over {} {}: sent in {:.2} s ({:.0} lines/s), \
         {got} written by the local sink after {:.2} s: {:.0} lines/s end to end; \
         graphite input counted {counted} points and {errors} parse errors; graphite worker RSS {:.1} MiB; \
         CPU: supervisor {:.2} s, graphite worker {:.2} s; supervisor peak RSS {:.1} MiB",
        bytes as f64 / 1e6,
        o.tags,
        o.connections,
        if o.udp { "UDP sockets" } else { "connections" },
        sent.as_secs_f64(),
        total as f64 / sent.as_secs_f64(),
        done.as_secs_f64(),
        got / done.as_secs_f64(),
        rss / (1024.0 * 1024.0),
        cpu.0,
        cpu.1,
        rss_kib(agent_pid).map_or(0, |(_, peak)| peak) as f64 / 1024.0
    );
    drop(agent);
    if o.udp {
        println!(
            "UDP: {datagrams} datagrams received, {kernel_drops} dropped by the kernel (counted); \
             lines lost {} ({:.3}%), read_buffer_size {}",
            total as f64 - got,
            100.0 * (total as f64 - got) / total as f64,
            o.read_buffer
        );
        return Ok(());
    }
    if got as usize != total || counted as usize != total {
        return Err(format!(
            "expected {total} points, the sink wrote {got}, the input counted {counted}"
        )
        .into());
    }
    Ok(())
}
