//! CAT load test through the real agent: starts `datakit run` with one `[[inputs.cat]]`
//! instance; `--connections` clients each send `--trees` NT1 message trees (a URL
//! transaction with a nested SQL one, an event and a metric, as the CAT Java client sends) as
//! fast as the socket takes them. Reports trees/s sent, the time until the local sink has
//! written every span, and the RSS of the worker and the supervisor.
//!
//! ```sh
//! cargo build --release -p datakit
//! cargo run --release -p dk-input-cat --example cat_load -- \
//!     --datakit target/release/datakit [--connections 4] [--trees 100000]
//! ```
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dk_input_cat::nt1::encode;
use dk_worker::testing::load::{LoadAgent, cpu_seconds, free_port, rss_kib};

type Error = Box<dyn std::error::Error>;

fn client(port: u16, c: usize, trees: usize) -> std::io::Result<()> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    // Batches of 256 trees per write.
    let mut batch = Vec::new();
    for t in 0..trees {
        batch.extend(encode::transaction_tree(
            &format!("shop-0a000007-{c}-{t}"),
            "",
            "",
        ));
        if batch.len() > 64 * 1024 || t + 1 == trees {
            s.write_all(&batch)?;
            batch.clear();
        }
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let (mut datakit, mut connections, mut trees) = (
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
            "--trees" => trees = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let port = free_port()?;
    let conf = format!("[[inputs.cat]]\n  tcp_port = \"{port}\"\n");
    let agent = LoadAgent::start(&datakit, "cat-load", &[("cat/cat.conf", &conf)])?;
    let worker = agent.wait_worker("cat", Some(port))?;
    let before = agent.sink_points("tracing");
    let cpu_before = (cpu_seconds(agent.pid()), cpu_seconds(worker));
    let total = connections * trees;
    let start = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|c| std::thread::spawn(move || client(port, c, trees)))
        .collect();
    for c in clients {
        c.join().map_err(|_| "a client panicked")??;
    }
    let sent = start.elapsed();
    let got =
        agent.wait_for_points("tracing", before + total as f64, Duration::from_secs(15)) - before;
    let done = start.elapsed();
    let (w_rss, w_hwm) = rss_kib(worker).unwrap_or_default();
    let (s_rss, s_hwm) = rss_kib(agent.pid()).unwrap_or_default();
    println!(
        "cat: {total} trees ({connections} connections x {trees}) sent in {:.2}s = {:.0} trees/s; sink wrote {got} spans in {:.2}s = {:.0} spans/s",
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
        return Err(format!("only {got} of {total} spans reached the sink").into());
    }
    Ok(())
}
