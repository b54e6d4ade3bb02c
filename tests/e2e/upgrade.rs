//! Remote upgrade on 9542: every refusal, the exec in place under StatsD and HTTP load, and
//! the automatic rollback of a binary that fails at start. "A" and "B" are copies of the test
//! binary stamped with two versions; the install base is a small HTTP server in the test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Agent, bin, free_port, try_request, wait_for};

const TOKEN: &str = "e2e-upgrade-token";

/// The version the test binary reports.
fn built_version() -> String {
    let out = Command::new(bin()).arg("version").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// Copies the test binary to `dst`, stamped as `version` (no rebuild).
fn stamped(dst: &Path, version: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let mut bytes = std::fs::read(bin()).unwrap();
    let mut needle = b"DK-VERSION-STAMP:".to_vec();
    needle.extend_from_slice(built_version().as_bytes());
    needle.push(0);
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the version stamp in the binary");
    let mut stamp = [0u8; 64];
    let text = format!("DK-VERSION-STAMP:{version}");
    stamp[..text.len()].copy_from_slice(text.as_bytes());
    bytes[at..at + 64].copy_from_slice(&stamp);
    std::fs::write(dst, &bytes).unwrap();
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn tarball_name(version: &str) -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("datakit-linux-{arch}-{version}.tar.gz")
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An install base directory and the key pair releases are signed with.
struct Releases {
    base: tempfile::TempDir,
    keys: tempfile::TempDir,
    public: String,
    /// Tarballs already built, by version (stamping and compressing 60+ MiB takes seconds).
    built: tempfile::TempDir,
}

impl Releases {
    fn new() -> Releases {
        let keys = tempfile::tempdir().unwrap();
        run_ok(
            Command::new(bin())
                .arg("tool")
                .arg("--keygen")
                .arg(keys.path()),
        );
        let public = std::fs::read_to_string(keys.path().join("datakit.pub"))
            .unwrap()
            .trim()
            .to_string();
        Releases {
            base: tempfile::tempdir().unwrap(),
            keys,
            public,
            built: tempfile::tempdir().unwrap(),
        }
    }

    /// Publishes the tarball of the binary stamped `version`, its signature and the version
    /// file; the tarball's path.
    fn publish(&self, version: &str) -> PathBuf {
        self.publish_signed(version, &self.keys.path().join("datakit.key"))
    }

    fn publish_signed(&self, version: &str, key: &Path) -> PathBuf {
        let tarball = self.base.path().join(tarball_name(version));
        let built = self.built.path().join(tarball_name(version));
        if !built.exists() {
            let stage = tempfile::tempdir().unwrap();
            stamped(&stage.path().join("datakit"), version);
            run_ok(
                Command::new("tar")
                    .arg("-I")
                    .arg("gzip -1")
                    .arg("-cf")
                    .arg(&built)
                    .arg("-C")
                    .arg(stage.path())
                    .arg("datakit"),
            );
        }
        std::fs::copy(&built, &tarball).unwrap();
        run_ok(
            Command::new(bin())
                .arg("tool")
                .arg("--sign")
                .arg(&tarball)
                .arg("--key")
                .arg(key),
        );
        let sum = run_ok(Command::new("sha256sum").arg(&tarball));
        let sha = sum.split_whitespace().next().unwrap();
        let commit = Command::new(bin()).arg("version").output().unwrap();
        let commit = String::from_utf8_lossy(&commit.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .split("(build ")
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches(')')
            .to_string();
        std::fs::write(
            self.base.path().join("version"),
            serde_json::json!({
                "version": version,
                "commit": commit,
                "tarball": tarball_name(version),
                "sha256": sha,
            })
            .to_string(),
        )
        .unwrap();
        tarball
    }
}

/// A tiny HTTP server for the install base: files from a directory; tarball answers can be
/// delayed, and are counted.
struct Base {
    addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    tarballs: Arc<AtomicU64>,
}

fn serve_dir(dir: PathBuf) -> Base {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let delay_ms = Arc::new(AtomicU64::new(0));
    let tarballs = Arc::new(AtomicU64::new(0));
    let (delay, count) = (delay_ms.clone(), tarballs.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (dir, delay, count) = (dir.clone(), delay.clone(), count.clone());
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                if path.ends_with(".tar.gz") {
                    count.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(delay.load(Ordering::SeqCst)));
                }
                let file = dir.join(path.trim_start_matches('/'));
                let answer = match std::fs::read(&file) {
                    Ok(body) => {
                        let mut a = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        a.extend_from_slice(&body);
                        a
                    }
                    Err(_) => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = conn.write_all(&answer);
            });
        }
    });
    Base {
        addr,
        delay_ms,
        tarballs,
    }
}

fn upgrader_conf(port: u16, base: &str, public: &str, rollback_after: &str) -> String {
    format!(
        r#"
[dk_upgrader]
  enable = true
  listen = "127.0.0.1:{port}"
  token = "{TOKEN}"
  install_base_url = "{base}"
  public_keys = ["{public}"]
  rollback_after = "{rollback_after}"
"#
    )
}

/// A request to 9542 with the token (or `token`); status and body.
fn call(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = format!("Bearer {}", token.unwrap_or(TOKEN));
    let headers: Vec<(&str, &str)> = if token == Some("") {
        vec![]
    } else {
        vec![("Authorization", auth.as_str())]
    };
    let (status, body) = try_request(
        SocketAddr::from(([127, 0, 0, 1], port)),
        method,
        path,
        &headers,
        b"",
    )
    .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn ping_version(api: SocketAddr) -> Option<String> {
    let (status, body) = try_request(api, "GET", "/v1/ping", &[], b"").ok()?;
    (status == 200).then_some(())?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["content"]["version"].as_str().map(str::to_string)
}

fn pid_file(workdir: &Path) -> u32 {
    std::fs::read_to_string(workdir.join(".pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The exe, `.prev` and `datakit.new` are as before a refused upgrade.
fn assert_unchanged(exe: &Path, before: &[u8]) {
    assert_eq!(std::fs::read(exe).unwrap(), before, "the binary changed");
    let dir = exe.parent().unwrap();
    assert!(!dir.join("datakit.prev").exists(), "a .prev appeared");
    assert!(
        !dir.join("datakit.new").exists(),
        "a staged binary was left"
    );
}

#[test]
fn upgrade_refuses_every_bad_release_with_datakits_answers_and_swaps_a_good_one_in_place() {
    let bindir = tempfile::tempdir().unwrap();
    let exe = bindir.path().join("datakit");
    stamped(&exe, "1.0.0");
    let rel = Releases::new();
    let base = serve_dir(rel.base.path().to_path_buf());
    let port = free_port();
    let conf = upgrader_conf(port, &format!("http://{}", base.addr), &rel.public, "20s");
    let agent = Agent::start_exe(&exe, &[], &conf, &[]);
    let before = std::fs::read(&exe).unwrap();

    // No token, a wrong token: 401.
    assert_eq!(call(port, "GET", "/v1/datakit/version", Some("")).0, 401);
    assert_eq!(
        call(port, "POST", "/v1/datakit/upgrade", Some("nope")).0,
        401
    );
    let (status, body) = call(port, "GET", "/v1/datakit/version", None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["content"]["content"]["version"], "1.0.0", "{body}");

    // The same version: 304, by the version file and by ?version=.
    rel.publish("1.0.0");
    assert_eq!(call(port, "POST", "/v1/datakit/upgrade", None).0, 304);
    assert_eq!(
        call(port, "POST", "/v1/datakit/upgrade?version=1.0.0", None).0,
        304
    );
    // An older version without force: 500 saying why.
    let (status, body) = call(port, "POST", "/v1/datakit/upgrade?version=0.9.0", None);
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("upgradeFailed") && body.contains("downgrade"),
        "{body}"
    );
    assert_unchanged(&exe, &before);

    // One byte changed in the tarball: the sha256 (version file) and the signature refuse it.
    let tarball = rel.publish("1.1.0");
    let mut bytes = std::fs::read(&tarball).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&tarball, &bytes).unwrap();
    let (status, body) = call(port, "POST", "/v1/datakit/upgrade", None);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("sha256"), "{body}");
    let (status, body) = call(port, "POST", "/v1/datakit/upgrade?version=1.1.0", None);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("signature check failed"), "{body}");
    assert_unchanged(&exe, &before);

    // No signature.
    let tarball = rel.publish("1.1.0");
    std::fs::remove_file(format!("{}.sig", tarball.display())).unwrap();
    let (status, body) = call(port, "POST", "/v1/datakit/upgrade", None);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("signature is missing"), "{body}");
    assert_unchanged(&exe, &before);

    // Signed with a key that is not configured.
    let other = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(bin())
            .arg("tool")
            .arg("--keygen")
            .arg(other.path()),
    );
    rel.publish_signed("1.1.0", &other.path().join("datakit.key"));
    let (status, body) = call(port, "POST", "/v1/datakit/upgrade", None);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("matches none"), "{body}");
    assert_unchanged(&exe, &before);
    assert_eq!(
        agent.metric("datakit_upgrade_total{result=\"refused\"}"),
        Some(5.0)
    );

    // A good release, slow to download: a second request meanwhile gets 406.
    rel.publish("1.1.0");
    base.delay_ms.store(1500, Ordering::SeqCst);
    let seen = base.tarballs.load(Ordering::SeqCst);
    let first = std::thread::spawn(move || call(port, "POST", "/v1/datakit/upgrade", None));
    wait_for("the tarball download", Duration::from_secs(10), || {
        (base.tarballs.load(Ordering::SeqCst) > seen).then_some(())
    });
    let (status, body) = call(port, "POST", "/v1/datakit/upgrade", None);
    assert_eq!(status, 406, "{body}");
    assert!(body.contains("upgradeIsOnGoing"), "{body}");
    let (status, body) = first.join().unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"msg":"success"}"#));

    // B serves under the same pid, on the same ports, and A is kept for a rollback.
    wait_for("B on /v1/ping", Duration::from_secs(20), || {
        (ping_version(agent.api).as_deref() == Some("1.1.0")).then_some(())
    });
    assert_eq!(pid_file(agent.workdir()), agent.pid());
    assert!(std::fs::read(&exe).unwrap() != before);
    assert_eq!(
        std::fs::read(bindir.path().join("datakit.prev")).unwrap(),
        before
    );
    let (status, body) = call(port, "GET", "/v1/datakit/version", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"1.1.0\""), "{body}");
    assert!(
        agent.log().contains("inherited from the previous binary"),
        "{}",
        agent.log()
    );
    // B confirmed its health: the watchdog is gone and will not roll it back.
    wait_for("B to confirm its health", Duration::from_secs(20), || {
        agent.log().contains("Upgrade healthy").then_some(())
    });
}

/// The kernel's drop counter of the UDP socket on `port` (`/proc/net/udp`, last column).
fn udp_drops(port: u16) -> u64 {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap();
    let hex = format!(":{port:04X}");
    text.lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&hex))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn an_upgrade_under_statsd_and_http_load_loses_no_datagram_and_refuses_no_connection() {
    let bindir = tempfile::tempdir().unwrap();
    let exe = bindir.path().join("datakit");
    stamped(&exe, "1.0.0");
    let rel = Releases::new();
    let tarball = rel.publish("1.1.0");
    let port = free_port();
    let udp_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sockdir = tempfile::tempdir().unwrap();
    let sock = sockdir.path().join("dsd.sock");
    let statsd = format!(
        "[[inputs.statsd]]\n  interval = \"1s\"\n  protocol = \"udp\"\n  service_address = \"127.0.0.1:{udp_port}\"\n  service_unix_address = \"{}\"\n",
        sock.display()
    );
    // No rate limit: the writes queued in the backlog during the swap arrive as one burst.
    let conf = format!(
        "[http_api]\n  request_rate_limit = 0.0\n{}",
        upgrader_conf(
            port,
            &rel.base.path().display().to_string(),
            &rel.public,
            "20s",
        )
    );
    // Two families, so the test sees them move one after the other.
    let cpu = "[[inputs.cpu]]\n  interval = \"1s\"\n";
    let agent = Agent::start_exe(
        &exe,
        &[("statsd/statsd.conf", &statsd), ("host/cpu.conf", cpu)],
        &conf,
        &[],
    );
    let pid = agent.pid();
    let old_workers: Vec<(&str, u32)> = ["host", "statsd"]
        .into_iter()
        .map(|f| {
            let pid = wait_for(&format!("the {f} worker"), Duration::from_secs(10), || {
                agent.worker_pid(f)
            });
            (f, pid)
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    // StatsD: ~20k datagrams/s from one thread.
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut sent = 0u64;
            let start = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                s.send_to(b"upg.hits:1|c", ("127.0.0.1", udp_port)).unwrap();
                sent += 1;
                // Pace: 20 per millisecond.
                if sent.is_multiple_of(20) {
                    let due = Duration::from_millis(sent / 20);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            sent
        })
    };
    // HTTP writes, one connection each; the sequence numbers acknowledged with 200.
    let writer = {
        let (stop, api) = (stop.clone(), agent.api);
        std::thread::spawn(move || {
            let (mut acked, mut refused, mut failed) = (Vec::new(), 0u64, Vec::new());
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) {
                seq += 1;
                let line = format!("upgw,src=e2e seq={seq}i {}", dk_proto::clock::now_ns());
                match try_request(api, "POST", "/v1/write/metric", &[], line.as_bytes()) {
                    Ok((200, _)) => acked.push(seq),
                    Ok((status, body)) => {
                        failed.push(format!("{status} {}", String::from_utf8_lossy(&body)));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
                    Err(e) => failed.push(format!("{:?}: {e}", e.kind())),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (acked, refused, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(1000));

    // `datakit upgrade --from FILE` (A's binary) swaps B in and signals the agent.
    let started = Instant::now();
    let out = Command::new(&exe)
        .arg("upgrade")
        .arg("--from")
        .arg(&tarball)
        .arg("--workdir")
        .arg(agent.workdir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for("B on /v1/ping", Duration::from_secs(20), || {
        (ping_version(agent.api).as_deref() == Some("1.1.0")).then_some(())
    });
    let swap = started.elapsed();
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let sent = sender.join().unwrap();
    let (acked, refused, failed) = writer.join().unwrap();

    assert_eq!(agent.pid(), pid);
    assert_eq!(pid_file(agent.workdir()), pid);
    // Every worker of A outlived the exec: it reconnected to B, which stopped it by RPC (it
    // flushed) once its replacement was up, one family after another.
    for (family, old) in &old_workers {
        agent.wait_metric_at_least(
            &format!("datakit_upgrade_worker_moved_total{{family=\"{family}\",result=\"moved\"}}"),
            1.0,
            Duration::from_secs(20),
        );
        let new = wait_for(
            &format!("B's {family} worker"),
            Duration::from_secs(10),
            || agent.worker_pid(family).filter(|p| p != old),
        );
        assert!(
            dk_worker::worker::proc_state(*old).is_none(),
            "A's {family} worker {old} is still there (replaced by {new})"
        );
    }
    let log = agent.log();
    for l in log.lines().filter(|l| {
        [
            "Worker is up",
            "Worker moved",
            "Holding",
            "Taken over",
            "handing over",
        ]
        .iter()
        .any(|k| l.contains(k))
    }) {
        eprintln!("{l}");
    }
    let moved_host = log
        .find("Worker moved to the new binary")
        .expect("a move logged");
    let statsd_up_after = log[moved_host..]
        .lines()
        .any(|l| l.contains("Worker is up") && l.contains("statsd"));
    assert!(
        statsd_up_after,
        "statsd moved only after host was done:\n{log}"
    );
    assert_eq!(refused, 0, "connections refused during the swap");
    assert!(
        failed.is_empty(),
        "HTTP writes that failed during the swap: {failed:?}"
    );
    let drops = udp_drops(udp_port);
    assert_eq!(drops, 0, "kernel drops on the StatsD socket ({sent} sent)");
    let total = |points: &[dk_proto::Point]| -> f64 {
        points
            .iter()
            .filter(|p| p.name == "upg")
            .filter_map(|p| match p.get_field("hits") {
                Some(dk_proto::point::Value::F(f)) => Some(*f),
                Some(dk_proto::point::Value::I(i)) => Some(*i as f64),
                _ => None,
            })
            .sum()
    };
    let counted = wait_for("every datagram counted", Duration::from_secs(20), || {
        let n = total(&agent.local_points("metric"));
        (n >= sent as f64).then_some(n)
    });
    assert_eq!(counted, sent as f64, "datagrams counted vs sent");
    let points = agent.local_points("metric");
    let mut seqs: Vec<i64> = points
        .iter()
        .filter(|p| p.name == "upgw")
        .filter_map(|p| match p.get_field("seq") {
            Some(dk_proto::point::Value::I(i)) => Some(*i),
            _ => None,
        })
        .collect();
    seqs.sort_unstable();
    let n = seqs.len();
    seqs.dedup();
    assert_eq!(n, seqs.len(), "a write was delivered twice");
    for s in &acked {
        assert!(
            seqs.binary_search(&(*s as i64)).is_ok(),
            "acknowledged write {s} lost"
        );
    }
    // The Unix socket survived the swap (same file, still served).
    std::os::unix::net::UnixDatagram::unbound()
        .unwrap()
        .send_to(b"upgu.hits:1|c", &sock)
        .unwrap();
    wait_for(
        "the datagram sent to the Unix socket after the swap",
        Duration::from_secs(10),
        || {
            agent
                .local_points("metric")
                .iter()
                .any(|p| p.name == "upgu")
                .then_some(())
        },
    );

    // A manual rollback puts A back in place, again under the same pid.
    let out = Command::new(&exe)
        .arg("upgrade")
        .arg("--rollback")
        .arg("--workdir")
        .arg(agent.workdir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let started = Instant::now();
    wait_for(
        "A on /v1/ping after --rollback",
        Duration::from_secs(20),
        || (ping_version(agent.api).as_deref() == Some("1.0.0")).then_some(()),
    );
    let manual = started.elapsed();
    assert_eq!(pid_file(agent.workdir()), pid);
    assert!(!bindir.path().join("datakit.prev").exists());
    eprintln!("manual rollback: A serving {manual:?} after datakit upgrade --rollback returned");
    eprintln!(
        "upgrade under load: request to B serving {swap:?}; {sent} datagrams sent, {drops} dropped; {} writes acknowledged, {refused} refused",
        acked.len()
    );

    // Killed while its workers still move back to it: no worker outlives the supervisor (a
    // worker whose stderr pipe broke used to panic in its log call instead of exiting).
    drop(agent);
    wait_for(
        "every process of the test's binary gone after the supervisor was killed",
        Duration::from_secs(20),
        || running_from(&exe).is_empty().then_some(()),
    );
}

/// Pids of the processes whose executable is `exe` (also once it was replaced on disk).
fn running_from(exe: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let want = exe.as_os_str().to_string_lossy().into_owned();
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| {
                let p = p.to_string_lossy();
                p == want || p.strip_suffix(" (deleted)") == Some(want.as_str())
            })
        })
        .filter(|pid| dk_worker::worker::proc_state(*pid).is_some_and(|s| s != 'Z'))
        .collect()
}

#[test]
fn a_new_binary_that_fails_at_start_is_rolled_back_and_the_old_one_serves_on_its_ports() {
    // Every field is bound: a dropped temp dir would take the binaries with it.
    let case = RollbackCase::start("DK_DEBUG_CRASH_AT_START", "10s");
    let RollbackCase {
        bindir,
        exe,
        port,
        agent,
        before,
        ..
    } = &case;
    let port = *port;

    let started = Instant::now();
    let (status, body) = call(port, "POST", "/v1/datakit/upgrade", None);
    assert_eq!(status, 200, "{body}");
    // The watchdog restores A, which reports the rollback.
    let restored = wait_restored(agent, "1.0.0");
    let rollback = started.elapsed();
    let _kill = scopeguard_kill(restored);
    assert_eq!(
        &std::fs::read(exe).unwrap(),
        before,
        "A is the binary again"
    );
    assert!(!bindir.path().join("datakit.prev").exists());
    case.assert_statsd_served_by(restored);
    let (status, body) = agent.request("GET", "/v1/lasterror", &[], b"");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200);
    assert!(body.contains("rolled back"), "{body}");
    assert_eq!(
        agent.metric("datakit_upgrade_total{result=\"rolled_back\"}"),
        Some(1.0)
    );
    // 9542 is still open and answers as A.
    let (status, body) = call(port, "GET", "/v1/datakit/version", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"1.0.0\""), "{body}");
    eprintln!("crash at start: request to A serving again after the rollback {rollback:?}");
}

#[test]
fn a_new_binary_that_never_becomes_healthy_is_rolled_back_after_rollback_after() {
    let case = RollbackCase::start("DK_DEBUG_HANG_AT_START", "2s");
    let RollbackCase {
        exe,
        port,
        agent,
        before,
        ..
    } = &case;
    let port = *port;

    let started = Instant::now();
    let (status, body) = call(port, "POST", "/v1/datakit/upgrade", None);
    assert_eq!(status, 200, "{body}");
    let restored = wait_restored(agent, "1.0.0");
    let rollback = started.elapsed();
    let _kill = scopeguard_kill(restored);
    assert!(
        rollback >= Duration::from_secs(2),
        "rolled back after {rollback:?}"
    );
    assert_eq!(
        &std::fs::read(exe).unwrap(),
        before,
        "A is the binary again"
    );
    case.assert_statsd_served_by(restored);
    let (_, body) = agent.request("GET", "/v1/lasterror", &[], b"");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("was not healthy"), "{body}");
    // The hung B was killed: the agent's original process is gone.
    assert!(gone_or_zombie(agent.pid()));
    eprintln!("hang at start: A serving again {rollback:?} after the request (rollback_after 2s)");
    // The restored agent still stops on SIGTERM (the watchdog ignored it while rolling back).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(restored as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for(
        "the restored agent to stop on SIGTERM",
        Duration::from_secs(15),
        || gone_or_zombie(restored).then_some(()),
    );
}

/// Agent A (1.0.0) with B (1.1.0) published, B made to fail at start by the debug `knob`.
struct RollbackCase {
    bindir: tempfile::TempDir,
    exe: PathBuf,
    /// Held for its temp dirs (the install base).
    _rel: Releases,
    port: u16,
    agent: Agent,
    /// A's binary.
    before: Vec<u8>,
    /// A StatsD UDP port.
    udp_port: u16,
    /// A's statsd worker before the upgrade.
    worker: u32,
}

impl RollbackCase {
    fn start(knob: &str, rollback_after: &str) -> RollbackCase {
        let bindir = tempfile::tempdir().unwrap();
        let exe = bindir.path().join("datakit");
        stamped(&exe, "1.0.0");
        let rel = Releases::new();
        rel.publish("1.1.0");
        let port = free_port();
        let conf = upgrader_conf(
            port,
            &rel.base.path().display().to_string(),
            &rel.public,
            rollback_after,
        );
        let udp_port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A worker that outlives A's exec and must not outlive B's failure.
        let statsd = format!(
            "[[inputs.statsd]]\n  interval = \"1s\"\n  protocol = \"udp\"\n  service_address = \"127.0.0.1:{udp_port}\"\n  service_unix_address = \"\"\n"
        );
        let agent = Agent::start_exe(
            &exe,
            &[("statsd/statsd.conf", &statsd)],
            &conf,
            &[(knob, "1.1.0")],
        );
        let worker = wait_for("A's statsd worker", Duration::from_secs(10), || {
            agent.worker_pid("statsd")
        });
        let before = std::fs::read(&exe).unwrap();
        RollbackCase {
            bindir,
            exe,
            _rel: rel,
            port,
            agent,
            before,
            udp_port,
            worker,
        }
    }

    /// A's worker from before the upgrade is gone (it did not outlive the failed binary), the
    /// restored agent runs its own, and a datagram sent now is counted.
    fn assert_statsd_served_by(&self, restored: u32) {
        wait_for(
            "the worker that outlived A's exec to be gone",
            Duration::from_secs(10),
            || gone_or_zombie(self.worker).then_some(()),
        );
        let fresh = wait_for(
            "the restored agent's statsd worker",
            Duration::from_secs(10),
            || dk_worker::testing::load::worker_pid(restored, "statsd"),
        );
        assert_ne!(fresh, self.worker);
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        wait_for(
            "a datagram sent after the rollback",
            Duration::from_secs(15),
            || {
                s.send_to(b"rolled.hits:1|c", ("127.0.0.1", self.udp_port))
                    .unwrap();
                std::thread::sleep(Duration::from_millis(100));
                self.agent
                    .local_points("metric")
                    .iter()
                    .any(|p| p.name == "rolled")
                    .then_some(())
            },
        );
    }
}

/// Waits for the watchdog's rollback: the pid file names another process (the watchdog's,
/// now running the old binary) and `/v1/ping` reports `version`; that pid.
fn wait_restored(agent: &Agent, version: &str) -> u32 {
    wait_for("A back after the rollback", Duration::from_secs(20), || {
        let pid = std::fs::read_to_string(agent.workdir().join(".pid")).ok()?;
        let pid: u32 = pid.trim().parse().ok()?;
        (pid != agent.pid() && ping_version(agent.api).as_deref() == Some(version)).then_some(pid)
    })
}

/// A process that exited (gone, or a zombie nobody reaped yet).
fn gone_or_zombie(pid: u32) -> bool {
    dk_worker::worker::proc_state(pid).is_none_or(|s| s == 'Z')
}

/// Kills `pid` (a restored agent the harness did not start) when dropped.
fn scopeguard_kill(pid: u32) -> impl Drop {
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    Kill(pid)
}

#[test]
fn upgrade_from_a_url_fetches_the_signed_tarball_and_swaps_it_in_under_the_same_pid() {
    let bindir = tempfile::tempdir().unwrap();
    let exe = bindir.path().join("datakit");
    stamped(&exe, "1.0.0");
    let rel = Releases::new();
    let tarball = rel.publish("1.1.0");
    let base = serve_dir(rel.base.path().to_path_buf());
    let port = free_port();
    let conf = upgrader_conf(port, &format!("http://{}", base.addr), &rel.public, "20s");
    let agent = Agent::start_exe(&exe, &[], &conf, &[]);
    let before = std::fs::read(&exe).unwrap();
    let url = format!(
        "http://{}/{}",
        base.addr,
        tarball.file_name().unwrap().to_string_lossy()
    );
    let out = Command::new(&exe)
        .arg("upgrade")
        .arg("--from")
        .arg(&url)
        .arg("--workdir")
        .arg(agent.workdir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(base.tarballs.load(Ordering::SeqCst), 1, "fetched over HTTP");
    wait_for("B on /v1/ping", Duration::from_secs(20), || {
        (ping_version(agent.api).as_deref() == Some("1.1.0")).then_some(())
    });
    assert_eq!(pid_file(agent.workdir()), agent.pid());
    assert_eq!(
        std::fs::read(bindir.path().join("datakit.prev")).unwrap(),
        before
    );

    // A URL whose signature does not match (another key signed it): refused, nothing changed.
    let other = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(bin())
            .arg("tool")
            .arg("--keygen")
            .arg(other.path()),
    );
    let forged = rel.publish_signed("1.2.0", &other.path().join("datakit.key"));
    let now = std::fs::read(&exe).unwrap();
    let out = Command::new(&exe)
        .arg("upgrade")
        .arg("--from")
        .arg(format!(
            "http://{}/{}",
            base.addr,
            forged.file_name().unwrap().to_string_lossy()
        ))
        .arg("--workdir")
        .arg(agent.workdir())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature"),
        "{out:?}"
    );
    assert!(std::fs::read(&exe).unwrap() == now, "the binary changed");
    assert!(!bindir.path().join("datakit.new").exists());
    assert_eq!(ping_version(agent.api).as_deref(), Some("1.1.0"));
}

#[test]
fn check_reports_a_busy_upgrade_port_naming_the_dk_upgrader_key() {
    let rel = Releases::new();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_confd(
        dir.path(),
        &crate::harness::main_conf(free_port(), &upgrader_conf(port, "", &rel.public, "20s")),
        &[],
    );
    let out = Command::new(bin())
        .args(["check", "--config", "--workdir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("datakit.conf") && stderr.contains("dk_upgrader.listen"),
        "{stderr}"
    );
    drop(busy);
    let out = Command::new(bin())
        .args(["check", "--config", "--workdir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// An IPv4 address of this machine that is not loopback (eth0's), for traffic that stays on
/// the machine but does not come from 127.0.0.0/8.
fn local_non_loopback_ipv4() -> std::net::Ipv4Addr {
    nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter_map(|ifa| ifa.address?.as_sockaddr_in().map(|a| a.ip()))
        .find(|ip| !ip.is_loopback())
        .expect("this test needs an interface with a non-loopback IPv4 address (eth0)")
}

#[test]
fn a_peer_outside_the_allowlist_gets_403_before_the_token_is_looked_at() {
    let rel = Releases::new();
    let port = free_port();
    let ip = local_non_loopback_ipv4();
    // Listen on every address; the peer connects from the machine's own eth0 address.
    let conf = upgrader_conf(
        port,
        &rel.base.path().display().to_string(),
        &rel.public,
        "10s",
    )
    .replace(&format!("127.0.0.1:{port}"), &format!("0.0.0.0:{port}"));
    let agent = Agent::start_with(&[], &conf, &[]);
    let from_eth0 = |token: Option<&str>| {
        let mut s = std::net::TcpStream::connect((ip, port)).unwrap();
        assert_eq!(s.peer_addr().unwrap().ip(), std::net::IpAddr::V4(ip));
        // Outside the allowlist the answer comes at accept, before anything is read: sending
        // the request could race with the close.
        if let Some(token) = token {
            write!(
                s,
                "GET /v1/datakit/version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let answer = from_eth0(None);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("request now allowed"), "{answer}");
    assert_eq!(
        agent.metric("datakit_upgrade_total{result=\"forbidden\"}"),
        Some(1.0)
    );
    // Loopback is always allowed.
    assert_eq!(call(port, "GET", "/v1/datakit/version", None).0, 200);
    drop(agent);

    // With the address in ip_whitelist the same peer reaches the token check.
    let conf = conf.replace(
        "rollback_after",
        &format!("ip_whitelist = [\"{ip}\"]\n  rollback_after"),
    );
    let _agent = Agent::start_with(&[], &conf, &[]);
    assert!(from_eth0(Some("wrong")).starts_with("HTTP/1.1 401"));
    assert!(from_eth0(Some(TOKEN)).starts_with("HTTP/1.1 200"));
}
