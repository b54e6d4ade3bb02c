//! Gzip cost and size of real Dataway bodies at each level, with the deflate backend this
//! build of `flate2` uses (the sink's `gzip`).
//!
//! `cargo run --release -p dk-sinks --example gzip_levels -- BODY...` where each BODY is a raw
//! (uncompressed) body, e.g. saved by `scripts/bench_path.py logs --save-body FILE`. Prints,
//! per file and level, MB of raw body compressed per CPU second of one thread and the size on
//! the wire as a fraction of the raw size.
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::time::Instant;

type Error = Box<dyn std::error::Error>;

fn gzip(raw: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 4 + 64),
        flate2::Compression::new(level),
    );
    enc.write_all(raw)?;
    enc.finish()
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`): steady on a busy
/// machine, unlike wall time.
fn cpu_ns() -> Result<u64, Error> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    Ok(text.split_whitespace().next().unwrap_or("0").parse()?)
}

fn main() -> Result<(), Error> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        return Err("give raw body files (scripts/bench_path.py PATH --save-body FILE)".into());
    }
    for file in files {
        let raw = std::fs::read(&file)?;
        println!("{file}: {} bytes raw", raw.len());
        for level in [1, 2, 3, 4, 5, 6, 9] {
            // At least 64 MB of input or 0.5 s per level, whichever comes last.
            let (mut bytes, mut rounds, mut wire) = (0usize, 0u32, 0usize);
            let (start, cpu0) = (Instant::now(), cpu_ns()?);
            while bytes < 64 << 20 || start.elapsed().as_secs_f64() < 0.5 {
                wire = gzip(&raw, level)?.len();
                bytes += raw.len();
                rounds += 1;
            }
            let secs = (cpu_ns()? - cpu0) as f64 / 1e9;
            println!(
                "  level {level}: {:7.1} MB/s, {:6.2} ms a body, wire {:.4} of raw ({rounds} rounds)",
                bytes as f64 / secs / 1e6,
                secs * 1e3 / f64::from(rounds),
                wire as f64 / raw.len() as f64
            );
        }
    }
    Ok(())
}
