//! Memory per live StatsD series: inserts N unique series into one aggregator (with the
//! worker's allocator, mimalloc) and reports the resident memory they hold, the peak while a
//! flush turns them into points 10,000 at a time (as the input does), and what is left after.
//!
//! ```sh
//! cargo run --release -p dk-input-statsd --example series_footprint -- 200000
//! ```
//!
//! Series look like what a busy DogStatsD client sends: `svc.requests_<i>:1|c|#env:prod,
//! host:web-<i % 50>` (plus one timing series in ten).
#![allow(clippy::print_stdout)]

use dk_input_statsd::aggregate::{Aggregator, AggregatorConfig};
use dk_input_statsd::parser::{ParseOptions, parse_datagram};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn status_kib(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let opts = ParseOptions {
        datadog_extensions: true,
    };
    let mut agg = Aggregator::new(AggregatorConfig {
        percentiles: vec![50.0, 90.0, 99.0],
        max_series: usize::MAX,
        ..AggregatorConfig::default()
    });
    // The datagrams are built in small pieces so their memory is not part of the figure.
    let rss0 = status_kib("VmRSS:");
    let mut line = String::new();
    for i in 0..n {
        line.clear();
        if i % 10 == 9 {
            line.push_str(&format!(
                "svc.latency_{i}:{}|ms|#env:prod,host:web-{}",
                i % 300,
                i % 50
            ));
        } else {
            line.push_str(&format!(
                "svc.requests_{i}:1|c|#env:prod,host:web-{}",
                i % 50
            ));
        }
        parse_datagram(line.as_bytes(), opts, &mut |item| {
            agg.ingest(&item, 1_700_000_000_000_000_000);
        });
    }
    let live = agg.series_len();
    let rss1 = status_kib("VmRSS:");
    let per_series = (rss1.saturating_sub(rss0) * 1024) as f64 / live as f64;
    // As the input flushes: series taken at once, points made and handed on 10,000 at a time.
    let mut drain = agg.take(1_700_000_010_000_000_000);
    let mut points = 0;
    let mut chunk = Vec::new();
    loop {
        chunk.clear();
        let more = drain.next_chunk(10_000, &mut chunk);
        points += chunk.len();
        if !more {
            break;
        }
    }
    drop(chunk);
    agg.restore(drain.finish());
    let rss2 = status_kib("VmRSS:");
    let hwm = status_kib("VmHWM:");
    println!(
        "series {live}: RSS {rss0} -> {rss1} KiB ({per_series:.0} bytes/series live); \
         flush of {points} points: peak {hwm} KiB, after {rss2} KiB ({} series left)",
        agg.series_len()
    );
}
