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

use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `GET path` on the agent's API; the body.
fn get(api: u16, path: &str) -> Result<String, Error> {
    let mut s = TcpStream::connect(("127.0.0.1", api))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    Ok(raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// The sum of the samples of `name` whose labels contain every `needle`.
fn metric_sum(text: &str, name: &str, needles: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn arrived(api: u16) -> f64 {
    get(api, "/metrics")
        .map(|m| {
            metric_sum(
                &m,
                "datakit_io_sink_point_total",
                &["category=\"metric\"", "status=\"ok\""],
            )
        })
        .unwrap_or(0.0)
}

/// User plus system CPU seconds of a process, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// The pid of the agent's `worker graphite` child.
fn worker_pid(agent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = stat.rsplit_once(')')?.1;
        let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (ppid == agent && cmdline.split(|b| *b == 0).any(|a| a == b"graphite")).then_some(pid)
    })
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

struct AgentGuard(Child);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> Result<(), Error> {
    let o = options()?;
    let dir = std::env::temp_dir().join(format!("dk-graphite-load-{}", std::process::id()));
    let confd = dir.join("conf.d");
    std::fs::create_dir_all(confd.join("graphite"))?;
    let (api, port) = (free_port()?, free_port()?);
    std::fs::write(
        confd.join("datakit.conf"),
        format!(
            "default_enabled_inputs = []\n[http_api]\n  listen = \"127.0.0.1:{api}\"\n[logging]\n  log = \"stdout\"\n  level = \"warn\"\n"
        ),
    )?;
    std::fs::write(
        confd.join("graphite/graphite.conf"),
        format!(
            "[[inputs.graphite]]\n  address = \"127.0.0.1:{port}\"\n  read_buffer_size = {}\n",
            o.read_buffer
        ),
    )?;
    let agent = AgentGuard(
        Command::new(&o.datakit)
            .arg("run")
            .arg("--workdir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let ready = Instant::now();
    while get(api, "/v1/ping").is_err() || TcpStream::connect(("127.0.0.1", port)).is_err() {
        if ready.elapsed() > Duration::from_secs(20) {
            return Err("the agent did not start in 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = arrived(api);
    let agent_pid = agent.0.id();
    let worker = worker_pid(agent_pid).ok_or("no graphite worker process")?;
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

    let mut last = (0.0, Instant::now());
    loop {
        let now = arrived(api) - before;
        if now >= total as f64 {
            break;
        }
        if now > last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(if o.udp { 3 } else { 15 }) {
            println!("stalled: {now} of {total} lines arrived");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = start.elapsed();
    let metrics = get(api, "/metrics")?;
    let got = arrived(api) - before;
    let counted = metric_sum(&metrics, "datakit_input_graphite_points_total", &[]);
    let errors = metric_sum(&metrics, "datakit_input_graphite_parse_errors_total", &[]);
    let rss = metric_sum(&metrics, "datakit_worker_rss_bytes", &["graphite"]);
    let kernel_drops = metric_sum(&metrics, "datakit_input_graphite_kernel_drops_total", &[]);
    let datagrams = metric_sum(&metrics, "datakit_input_graphite_datagrams_total", &[]);
    let cpu = (
        cpu_seconds(agent_pid) - cpu_before.0,
        cpu_seconds(worker) - cpu_before.1,
    );
    println!(
        "{total} lines ({:.1} MB, tags: {}) over {} {}: sent in {:.2} s ({:.0} lines/s), \
         {got} written by the local sink after {:.2} s: {:.0} lines/s end to end; \
         graphite input counted {counted} points and {errors} parse errors; graphite worker RSS {:.1} MiB; \
         CPU: supervisor {:.2} s, graphite worker {:.2} s",
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
        cpu.1
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
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
