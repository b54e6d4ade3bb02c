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

use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
                &["category=\"logging\"", "status=\"ok\""],
            )
        })
        .unwrap_or(0.0)
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
    let dir = std::env::temp_dir().join(format!("dk-socket-log-load-{}", std::process::id()));
    let confd = dir.join("conf.d");
    std::fs::create_dir_all(confd.join("log"))?;
    let (api, tcp) = (free_port()?, free_port()?);
    std::fs::write(
        confd.join("datakit.conf"),
        format!(
            "default_enabled_inputs = []\n[http_api]\n  listen = \"127.0.0.1:{api}\"\n[logging]\n  log = \"stdout\"\n  level = \"warn\"\n"
        ),
    )?;
    std::fs::write(
        confd.join("log/logging.conf"),
        format!(
            "[[inputs.logging]]\n  sockets = [\"tcp://127.0.0.1:{tcp}\"]\n  source = \"load\"\n"
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
    while get(api, "/v1/ping").is_err() || TcpStream::connect(("127.0.0.1", tcp)).is_err() {
        if ready.elapsed() > Duration::from_secs(20) {
            return Err("the agent did not start in 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = arrived(api);

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

    let mut last = (before, Instant::now());
    loop {
        let now = arrived(api) - before;
        if now >= total as f64 {
            break;
        }
        if now > last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(15) {
            println!("stalled: {now} of {total} lines arrived");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = start.elapsed();
    let got = arrived(api) - before;
    let rss = get(api, "/metrics")
        .map(|m| metric_sum(&m, "datakit_worker_rss_bytes", &["logging"]))
        .unwrap_or(0.0);
    println!(
        "{total} lines of {} bytes over {} connections: sent in {:.2} s ({:.0} lines/s), \
         {got} written by the local sink after {:.2} s: {:.0} lines/s end to end; \
         logging worker RSS {:.1} MiB",
        o.size,
        o.connections,
        sent.as_secs_f64(),
        total as f64 / sent.as_secs_f64(),
        done.as_secs_f64(),
        got / done.as_secs_f64(),
        rss / (1024.0 * 1024.0)
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
