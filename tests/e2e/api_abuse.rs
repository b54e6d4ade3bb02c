//! The API under abuse on loopback: gzip bombs, bodies of millions of tiny points, slow and
//! idle clients, more connections than the cap, a decoder that panics. Each test asserts on
//! the answers, the counters, the supervisor's memory and data that reached the local sink.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::harness::{Agent, try_request, wait_for};

const MIB: u64 = 1 << 20;

/// A gzip body of `members` concatenated gzip members of 1 MiB of zeros each (~1 KiB apiece).
fn gzip_bomb(members: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; MIB as usize]).unwrap();
    let one = gz.finish().unwrap();
    one.repeat(members)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn rss(pid: u32, key: &str) -> u64 {
    dk_worker::worker::status_bytes(pid, key).unwrap_or(0)
}

/// Samples the supervisor's VmRSS every 10 ms until stopped; returns the peak.
fn rss_sampler(pid: u32) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let mut peak = 0;
        while !s.load(Ordering::Relaxed) {
            peak = peak.max(rss(pid, "VmRSS"));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    });
    (stop, h)
}

fn rejected(agent: &Agent, reason: &str) -> f64 {
    agent
        .metric(&format!(
            "datakit_http_api_rejected_total{{reason=\"{reason}\"}}"
        ))
        .unwrap_or(0.0)
}

fn write_lands(agent: &Agent, marker: &str) {
    let line = format!("api_abuse,case={marker} v=1i");
    let (status, body) = agent.request("POST", "/v1/write/metric", &[], line.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    wait_for(
        "the write in the local sink",
        Duration::from_secs(15),
        || {
            agent
                .local_points("metric")
                .iter()
                .any(|p| p.name == "api_abuse" && p.get_tag("case") == Some(marker))
                .then_some(())
        },
    );
}

#[test]
fn sixty_four_concurrent_gzip_bombs_get_413_or_503_and_the_supervisor_stays_under_256_mib() {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MIMALLOC_"))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let agent = Agent::start_with(&[], "", &env);
    let pid = agent.pid();
    let bomb = Arc::new(gzip_bomb(1024));
    assert!(bomb.len() < 2 * MIB as usize, "{}", bomb.len());
    let (stop, sampler) = rss_sampler(pid);
    let barrier = Arc::new(Barrier::new(64));
    let started = Instant::now();
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let (bomb, barrier, addr) = (bomb.clone(), barrier.clone(), agent.api);
            std::thread::spawn(move || {
                barrier.wait();
                try_request(
                    addr,
                    "POST",
                    "/v1/write/metric",
                    &[("Content-Encoding", "gzip")],
                    &bomb,
                )
                .map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
            })
        })
        .collect();
    let answers: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    let took = started.elapsed();
    // One more alone: it inflates up to the per-body cap.
    let (alone, alone_body) = agent.request(
        "POST",
        "/v1/write/metric",
        &[("Content-Encoding", "gzip")],
        &bomb,
    );
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let hwm = rss(pid, "VmHWM");
    eprintln!(
        "64 gzip bombs: {took:?}, supervisor peak VmRSS {} MiB, VmHWM {} MiB",
        peak / MIB,
        hwm / MIB
    );

    let n503 = answers.iter().filter(|(s, _)| *s == 503).count();
    let n413 = answers.iter().filter(|(s, _)| *s == 413).count();
    assert_eq!(n503 + n413, 64, "{answers:?}");
    assert!(n503 > 0, "64 bombs at once must spend the budget");
    for (s, b) in &answers {
        let key = if *s == 503 {
            "max_inflight_body_mb"
        } else {
            "max_body_size_mb"
        };
        assert!(b.contains(key), "{s}: {b}");
    }
    assert_eq!(alone, 413, "{}", String::from_utf8_lossy(&alone_body));
    assert!(hwm < 256 * MIB, "supervisor VmHWM {} MiB", hwm / MIB);

    assert_eq!(rejected(&agent, "memory_budget"), n503 as f64);
    assert_eq!(rejected(&agent, "body_too_large"), (n413 + 1) as f64);
    assert_eq!(
        agent.metric("datakit_http_api_inflight_body_bytes "),
        Some(0.0)
    );
    write_lands(&agent, "after-bombs");
}

#[test]
fn a_body_of_a_million_tiny_points_is_decoded_in_chunks_without_a_vec_of_them_all() {
    let agent = Agent::start(&[]);
    let pid = agent.pid();
    // 1.2 M points in 12 MB of text (gzip, so the transfer is small).
    let body = "m f=1i 1\n".repeat(1_200_000);
    let gz = gzip(body.as_bytes());
    drop(body);
    let before = rss(pid, "VmRSS");
    let (stop, sampler) = rss_sampler(pid);
    let (status, answer) = agent.request(
        "POST",
        "/v1/write/metric?dry=1&precision=ns",
        &[("Content-Encoding", "gzip")],
        &gz,
    );
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    eprintln!(
        "1.2 M tiny points (12 MB): VmRSS before {} MiB, peak {} MiB",
        before / MIB,
        peak / MIB
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(
        agent.metric("datakit_http_write_point_total{category=\"metric\"}"),
        Some(1_200_000.0)
    );
    // Owned points of the whole body would take ~200 MB; chunks of 10k take a few MB.
    assert!(
        peak.saturating_sub(before) < 64 * MIB,
        "the supervisor grew {} MiB for a 12 MB body",
        peak.saturating_sub(before) / MIB
    );
}

/// A slow client: the request line and a header byte per tick, never the end of headers.
struct Slow {
    s: TcpStream,
    closed_after: Option<Duration>,
}

/// Writes one more header byte to every open slow client and notes the ones the server closed.
fn tick(slow: &mut [Slow], start: Instant) {
    for c in slow.iter_mut().filter(|c| c.closed_after.is_none()) {
        let mut buf = [0u8; 256];
        let closed = match c.s.read(&mut buf) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.s.write(b"x").is_err(),
            Err(_) => true,
        };
        if closed {
            c.closed_after = Some(start.elapsed());
        }
    }
}

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

fn timed_ping(agent: &Agent) -> Duration {
    let t = Instant::now();
    let (status, _) = try_request(agent.api, "GET", "/v1/ping", &[], b"").unwrap();
    assert_eq!(status, 200);
    t.elapsed()
}

#[test]
fn slow_clients_are_cut_off_by_the_header_timeout_and_at_the_cap_the_oldest_make_room() {
    raise_nofile(2048);
    // The header timeout is [http_api] timeout (at most 10 s).
    let header_timeout = Duration::from_secs(4);
    let early = header_timeout - Duration::from_millis(500);
    let agent = Agent::start_with(
        &[],
        "[http_api]\n  timeout = \"4s\"\n  max_connections = 500\n  request_rate_limit = 0.0\n",
        &[],
    );
    let pid = agent.pid();
    let start = Instant::now();
    let open = |n: usize| -> Vec<Slow> {
        (0..n)
            .map(|_| {
                let mut s = TcpStream::connect(agent.api).unwrap();
                s.write_all(b"GET /v1/ping HTTP/1.1\r\nX-Slow: ").unwrap();
                s.set_nonblocking(true).unwrap();
                Slow {
                    s,
                    closed_after: None,
                }
            })
            .collect()
    };
    // 400 slow clients (below the cap): pings keep answering meanwhile.
    let mut slow = open(400);
    let opened = wait_for("400 open connections", Duration::from_secs(3), || {
        agent
            .metric("datakit_http_api_open_connections ")
            .filter(|n| *n >= 400.0)
    });
    assert!(opened <= 500.0);
    let mut pings = Vec::new();
    for _ in 0..100 {
        pings.push(timed_ping(&agent));
        if pings.len() % 10 == 0 {
            tick(&mut slow, start);
        }
    }
    // 200 more: past the cap of 500, the slow clients idle the longest (the first ones) are
    // closed at once to make room, and counted; the new ones are kept.
    let mut more = open(200);
    let evicted_early = wait_for(
        "the oldest slow clients evicted",
        Duration::from_secs(3),
        || {
            tick(&mut slow, start);
            let n = slow
                .iter()
                .filter(|c| c.closed_after.is_some_and(|t| t < early))
                .count();
            (n >= 100).then_some(n)
        },
    );
    // The cap is full of slow clients, yet pings answer: the first makes room by eviction.
    for _ in 0..50 {
        pings.push(timed_ping(&agent));
    }
    tick(&mut more, start);
    assert!(
        more.iter().all(|c| c.closed_after.is_none()),
        "a newer slow client was evicted before older ones"
    );
    slow.extend(more);
    // Everyone else is cut off by the header timeout, however often they send a byte.
    wait_for("every slow client cut off", Duration::from_secs(15), || {
        tick(&mut slow, start);
        slow.iter().all(|c| c.closed_after.is_some()).then_some(())
    });
    let late = slow
        .iter()
        .filter_map(|c| c.closed_after)
        .filter(|t| *t >= early)
        .count();
    assert!(late >= 400, "{late} slow clients cut off by the timeout");
    wait_for(
        "the open connections drained",
        Duration::from_secs(5),
        || try_request(agent.api, "GET", "/v1/ping", &[], b"").ok(),
    );
    assert!(rejected(&agent, "header_timeout") >= 400.0);
    let evicted = rejected(&agent, "evicted_idle");
    // The first ping at the full cap evicted one more; the rest reused the room it freed.
    assert!(
        evicted > evicted_early as f64,
        "{evicted} evicted, {evicted_early} seen early, then pings at the full cap"
    );
    let hwm = rss(pid, "VmHWM");
    pings.sort();
    let p99 = pings[pings.len() * 99 / 100];
    let max = pings[pings.len() - 1];
    eprintln!(
        "600 slow clients: evicted {evicted}, supervisor VmHWM {} MiB, /v1/ping p99 {p99:?} max {max:?}",
        hwm / MIB,
    );
    assert!(max < Duration::from_secs(2), "{pings:?}");
    assert!(hwm < 256 * MIB);
    // The agent is whole: the queue and the local sink still work.
    wait_for(
        "the open connections drained",
        Duration::from_secs(5),
        || {
            agent
                .metric("datakit_http_api_open_connections ")
                .filter(|n| *n <= 2.0)
        },
    );
    write_lands(&agent, "after-slow-clients");
}

#[test]
fn a_panic_in_body_decoding_answers_500_returns_the_budget_and_the_next_write_lands() {
    let agent = Agent::start_with(&[], "", &[("DK_DEBUG_API_PANIC", "decode")]);
    let panics = AtomicU64::new(0);
    // A small body (decoded on the request's task) and a large one (on the blocking pool).
    let large = format!("dk_debug_panic f=1i 1\n{}", "m f=1i 1\n".repeat(100_000));
    for body in [&b"dk_debug_panic f=1i 1"[..], large.as_bytes()] {
        let (status, answer) = agent.request("POST", "/v1/write/metric", &[], body);
        assert_eq!(status, 500, "{}", String::from_utf8_lossy(&answer));
        panics.fetch_add(1, Ordering::Relaxed);
    }
    // A zombie or a gone process has no VmRSS.
    assert!(
        rss(agent.pid(), "VmRSS") > 0,
        "the supervisor died:\n{}",
        agent.log()
    );
    assert_eq!(
        agent.metric("datakit_http_api_inflight_body_bytes "),
        Some(0.0)
    );
    assert_eq!(panics.load(Ordering::Relaxed), 2);
    write_lands(&agent, "after-panic");
}
