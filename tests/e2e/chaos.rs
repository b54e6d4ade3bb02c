//! Chaos: numbered points go in through the 9529 API while the supervisor and workers are
//! killed at random and the upstream fails, rate-limits, hangs and drops connections. At the
//! end every acknowledged number has arrived upstream (duplicates allowed and counted), and
//! the queue never exceeded its disk cap. Loopback only, bounded in time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dk_proto::{Category, Value};
use dk_sinks::testing::{FakeDataway, Mode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::{Agent, try_request};

const TOKEN: &str = "tkn_0123456789abcdef0123456789abcdef";
const CHAOS_FOR: Duration = Duration::from_secs(25);
const CAP_BYTES: u64 = 64 << 20;

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[test]
fn every_acknowledged_point_arrives_upstream_through_crashes_and_outages() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeDataway::start(TOKEN)).unwrap();
    let extra = format!(
        "[dataway]\n  urls = [\"{}\"]\n  timeout_v2 = \"2s\"\n  [dataway.wal]\n    max_capacity_gb = {}\n",
        fake.url(),
        CAP_BYTES as f64 / (1u64 << 30) as f64
    );
    let mut agent = Agent::start_with(
        &[("host/mem.conf", "[[inputs.mem]]\n  interval = \"1s\"\n")],
        &extra,
        &[],
    );
    let queue_dir = agent.workdir().join("cache");
    let addr = agent.api;

    // The writer: numbered points, 50 per body; a number counts once the agent answered 200.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut next = 0i64;
            let mut refused = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut body = String::new();
                for i in next..next + 50 {
                    body.push_str(&format!(
                        "chaos,writer=http seq={i}i {}\n",
                        1_700_000_000_000_000_000i64 + i
                    ));
                }
                match try_request(addr, "POST", "/v1/write/metric", &[], body.as_bytes()) {
                    Ok((200, _)) => acked.lock().unwrap().extend(next..next + 50),
                    _ => {
                        refused += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                next += 50;
            }
            refused
        })
    };

    // The chaos monkey, seeded so a failure can be replayed.
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut actions: HashMap<&str, u32> = HashMap::new();
    let mut max_disk = 0u64;
    let started = Instant::now();
    while started.elapsed() < CHAOS_FOR {
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1200)));
        max_disk = max_disk.max(dir_bytes(&queue_dir));
        let action = match rng.random_range(0..8) {
            0 => {
                agent.crash_and_restart();
                "kill -9 supervisor"
            }
            1 => {
                if let Some(pid) = agent.worker_pid("host") {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                "kill -9 worker"
            }
            2 => {
                fake.set_mode(Mode::Status(500));
                "upstream 500"
            }
            3 => {
                fake.set_mode(Mode::Status(429));
                "upstream 429"
            }
            4 => {
                fake.set_mode(Mode::Hang);
                "upstream hangs"
            }
            5 => {
                fake.set_mode(Mode::Close);
                "upstream closes"
            }
            _ => {
                fake.set_mode(Mode::Ok);
                "upstream ok"
            }
        };
        *actions.entry(action).or_default() += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let refused = writer.join().unwrap();
    fake.set_mode(Mode::Ok);
    // The agent may have been killed last; make sure one runs and drains.
    if agent.child.try_wait().unwrap().is_some() {
        agent.crash_and_restart();
    }

    let acked = acked.lock().unwrap().clone();
    let want: std::collections::HashSet<i64> = acked.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let (arrived, dupes) = loop {
        max_disk = max_disk.max(dir_bytes(&queue_dir));
        let mut seen: HashMap<i64, u32> = HashMap::new();
        for p in fake
            .points(Category::Metric)
            .iter()
            .filter(|p| p.name == "chaos")
        {
            if let Some(Value::I(seq)) = p.get_field("seq") {
                *seen.entry(*seq).or_default() += 1;
            }
        }
        let missing = want.iter().filter(|s| !seen.contains_key(s)).count();
        if missing == 0 || Instant::now() > deadline {
            let dupes: u32 = seen.values().map(|n| n - 1).sum();
            if missing > 0 {
                let mut m: Vec<_> = want
                    .iter()
                    .filter(|s| !seen.contains_key(s))
                    .copied()
                    .collect();
                m.sort_unstable();
                panic!(
                    "{missing} acknowledged points never arrived (first: {:?}); seed {seed}; actions {actions:?}\nlog tail:\n{}",
                    &m[..m.len().min(10)],
                    agent
                        .log()
                        .lines()
                        .rev()
                        .take(40)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            break (seen.len(), dupes);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mem_points = fake
        .points(Category::Metric)
        .iter()
        .filter(|p| p.name == "mem")
        .count();
    eprintln!(
        "chaos (seed {seed}): actions {actions:?}; acknowledged {} points, arrived {arrived} distinct, {dupes} duplicates, {refused} bodies refused while the agent was down or busy; mem points from the worker: {mem_points}; queue peak {:.1} MiB (cap {} MiB)",
        want.len(),
        max_disk as f64 / (1 << 20) as f64,
        CAP_BYTES >> 20
    );
    assert!(!want.is_empty(), "the writer got acknowledgements");
    assert!(mem_points > 0, "worker points arrived too");
    assert!(
        max_disk <= CAP_BYTES + (16 << 20),
        "queue stayed within its cap (+ one segment): {max_disk}"
    );
    rt.block_on(fake.stop());
}
