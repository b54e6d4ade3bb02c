//! Runs the fake Dataway as a standalone server for manual end-to-end checks.
//!
//! `cargo run -p dk-sinks --features test-util --example fake_dataway -- [TOKEN] [ADDR] [ELECTION_INTERVAL_S]`
//! (defaults: `tkn_fake`, `127.0.0.1:0`, 4); prints its URL, then one line per request. The
//! election lease is three intervals.

use std::time::Duration;

use dk_sinks::testing::FakeDataway;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let token = args.next().unwrap_or_else(|| "tkn_fake".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let interval = Duration::from_secs(args.next().map_or(Ok(4), |s| s.parse())?);
    let fake = FakeDataway::start_on(&token, addr.parse()?).await?;
    fake.set_election_timing(interval, interval * 3);
    eprintln!(
        "fake Dataway listening; [dataway] urls = [\"{}\"]",
        fake.url()
    );
    let mut seen = 0usize;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            got = fake.wait_requests(seen + 1, Duration::from_secs(3600)) => {
                let Ok(reqs) = got else { continue };
                for r in &reqs[seen..] {
                    if r.category == "election" || r.category == "heartbeat" {
                        continue;
                    }
                    eprintln!(
                        "{} /v1/write/{} points={} bytes={} raw={} pkg={}",
                        r.status,
                        r.category,
                        r.points.len(),
                        r.body_len,
                        r.raw_len,
                        r.header("x-pkg-id")
                    );
                }
                seen = reqs.len();
            }
        }
    }
    fake.stop().await;
    Ok(())
}
