//! The input kit's TCP connection cap on the real binary: 5,000 connections opened at once
//! against graphite and socket logs. The worker keeps its cap (1,024 per listener), refuses
//! and counts the rest, its memory stays bounded, the API keeps answering, and the input
//! still serves once the flood is gone.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Agent, free_port, try_request, wait_for};

/// Connections opened at once per listener.
const FLOOD: usize = 5_000;
/// The kit's default cap (graphite and logging have no Datakit key for it).
const CAP: f64 = 1024.0;
/// Growth of the worker's resident memory allowed for the flood.
const RSS_GROWTH_KIB: u64 = 16 * 1024;

fn raise_nofile(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard).unwrap();
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        soft >= want,
        "the test needs {want} open files; the hard limit allows {soft}"
    );
}

/// Pings the API every 10 ms until stopped; the latencies seen.
fn ping_while(agent: &Agent, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    let api = agent.api;
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let (status, _) = try_request(api, "GET", "/v1/ping", &[], b"").unwrap();
            assert_eq!(status, 200);
            seen.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(10));
        }
        seen
    })
}

fn sum(agent: &Agent, name: &str, needles: &[&str]) -> f64 {
    dk_worker::testing::load::metric_sum(&agent.metrics(), name, needles)
}

/// Floods `port` of `family`'s worker (input `input`, listener `listener`), checks the cap,
/// the counts and the memory, then closes the flood and checks one more line gets through.
fn flood(agent: &Agent, family: &str, input: &str, listener: &str, port: u16) {
    let input_label = format!("input=\"{input}\"");
    let listener_label = format!("listener=\"{listener}\"");
    let labels = [input_label.as_str(), listener_label.as_str()];
    let pid = wait_for("the worker", Duration::from_secs(20), || {
        agent.worker_pid(family)
    });
    // Measured once the worker is up and has served a connection (its runtime, buffers and
    // registry allocated): what grows after that is the flood's.
    agent.wait_metric_at_least(
        &format!("datakit_worker_up{{family=\"{family}\"}}"),
        1.0,
        Duration::from_secs(20),
    );
    {
        let mut warm = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(&mut warm, b"warm.up 1\n").unwrap();
    }
    let warm = wait_for(
        "the warm-up connection counted",
        Duration::from_secs(20),
        || {
            let n = sum(agent, "datakit_input_connections_total{", &labels);
            (n >= 1.0).then_some(n)
        },
    );
    let (rss_before, _) = dk_worker::testing::load::rss_kib(pid).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = ping_while(agent, stop.clone());

    let t = Instant::now();
    let mut clients = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        // The kernel's accept queue (4,096) takes them all; a connect refused under a full
        // queue would be retried by a real client, so it is retried here too.
        let c = wait_for("a connect", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        clients.push(c);
    }
    let opened = t.elapsed();
    // Every connection was either accepted (and held) or refused at the cap, and counted.
    let (accepted, refused) = wait_for("every connection counted", Duration::from_secs(30), || {
        let accepted = sum(agent, "datakit_input_connections_total{", &labels) - warm;
        let refused = sum(
            agent,
            "datakit_input_dropped_total{",
            &[&input_label, "reason=\"connection_limit\""],
        );
        (accepted + refused >= FLOOD as f64).then_some((accepted, refused))
    });
    let open = sum(agent, "datakit_input_open_connections{", &labels);
    let (rss_after, hwm) = dk_worker::testing::load::rss_kib(pid).unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut pings = pinger.join().unwrap();
    pings.sort();
    let worst = pings.last().copied().unwrap_or_default();
    let p99 = pings[pings.len() * 99 / 100];
    eprintln!(
        "{family}: {FLOOD} connections opened in {opened:?}; accepted {accepted}, refused {refused}, open {open}; worker RSS {rss_before} -> {rss_after} KiB (peak {hwm}); /v1/ping {} answers, p99 {p99:?}, worst {worst:?}",
        pings.len()
    );
    assert_eq!(open, CAP, "the worker holds exactly its cap");
    assert_eq!(accepted, CAP, "{accepted} accepted");
    assert_eq!(refused, FLOOD as f64 - CAP, "{refused} refused");
    assert!(
        rss_after < rss_before + RSS_GROWTH_KIB,
        "worker RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(
        worst < Duration::from_secs(2),
        "/v1/ping took {worst:?} during the flood"
    );
    assert_eq!(
        agent.worker_pid(family),
        Some(pid),
        "the worker was not restarted"
    );

    // The flood goes away; the input serves again.
    drop(clients);
    wait_for("the connections closed", Duration::from_secs(20), || {
        (sum(agent, "datakit_input_open_connections{", &labels) == 0.0).then_some(())
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"after.flood 1\n").unwrap();
    drop(c);
    wait_for(
        "a connection after the flood",
        Duration::from_secs(20),
        || (sum(agent, "datakit_input_connections_total{", &labels) == CAP + 1.0).then_some(()),
    );
}

#[test]
fn five_thousand_connections_against_graphite_and_socket_logs_stay_at_the_cap() {
    raise_nofile(3 * FLOOD as u64);
    let (graphite, logs) = (free_port(), free_port());
    let agent = Agent::start(&[
        (
            "graphite/graphite.conf",
            &format!("[[inputs.graphite]]\n  address = \"127.0.0.1:{graphite}\"\n"),
        ),
        (
            "log/logging.conf",
            &format!(
                "[[inputs.logging]]\n  sockets = [\"tcp://127.0.0.1:{logs}\"]\n  source = \"flood\"\n"
            ),
        ),
    ]);
    flood(
        &agent,
        "graphite",
        "graphite",
        &format!("tcp://127.0.0.1:{graphite}"),
        graphite,
    );
    flood(
        &agent,
        "logging",
        "logging",
        &format!("tcp://127.0.0.1:{logs}"),
        logs,
    );
}
