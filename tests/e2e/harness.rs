//! Starting the agent in a temp work dir, talking HTTP to it, reading its local sink.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dk_proto::Point;
use dk_proto::lineproto::{DecodeOptions, Precision};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_datakit")
}

/// A free loopback port (bound and released; another process could take it, rarely).
pub fn free_port() -> u16 {
    dk_worker::testing::load::free_port().unwrap()
}

/// Polls `f` until it returns `Some`, up to `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running agent.
pub struct Agent {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub api: SocketAddr,
    env: Vec<(String, String)>,
    /// The binary it runs.
    exe: PathBuf,
    /// Where `agent.out` / `agent.err` go (the work dir unless a test moves them).
    logs: PathBuf,
}

/// Starts `datakit run` on a work dir; output is appended to `agent.out` / `agent.err` in `logs`.
fn spawn(exe: &Path, workdir: &Path, logs: &Path, env: &[(String, String)]) -> Child {
    let log = |name: &str| {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(name))
            .unwrap();
        Stdio::from(f)
    };
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg("--workdir")
        .arg(workdir)
        .stdin(Stdio::null());
    cmd.stdout(log("agent.out")).stderr(log("agent.err"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// The main config every test starts from: loopback API on a free port, no default inputs,
/// fast flushes.
pub fn main_conf(api_port: u16, extra: &str) -> String {
    let io = if extra.contains("[io]") {
        ""
    } else {
        // Tests write fixed historical times: no correction to now unless a test asks.
        "[io]\n  flush_interval = \"200ms\"\n  auto_timestamp_correction = false"
    };
    // Tests share the machine: no agent puts itself in a CPU cgroup unless a test asks.
    let limits = if extra.contains("[resource_limit]") {
        ""
    } else {
        "[resource_limit]\n  enable = false"
    };
    // Keys for [http_api] go into the one table: `extra` may start with its own `[http_api]`.
    let (http, extra) = match extra.trim_start().strip_prefix("[http_api]") {
        Some(rest) => match rest.find("\n[") {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        },
        None => ("", extra),
    };
    // Every harness line says why it is there (trailing comments: the line numbers that
    // tests check stay as they are).
    let io = io.replace(
        "[io]\n",
        "[io]  # fixed historical times: no correction to now, fast flushes\n",
    );
    let limits = limits.replace("[resource_limit]\n", "[resource_limit]  # no CPU cgroup\n");
    let test = test_name();
    format!(
        r#"
default_enabled_inputs = []  # e2e harness for `{test}`: only the inputs the test writes
[http_api]  # loopback, on a free port
  listen = "127.0.0.1:{api_port}"
{http}
{io}
[logging]  # stdout, captured in the agent's log
  log = "stdout"
  level = "info"
[global_host_tags]  # marks every point as an e2e point
  e2e = "yes"
{limits}
{extra}
"#
    )
}

/// The running test's name, for the comments in the files a test writes: libtest names the
/// test's thread after it; nextest runs one test per process and passes its name after
/// `--exact`.
pub fn test_name() -> String {
    if let Some(name) = std::thread::current().name().filter(|n| *n != "main") {
        return name.to_string();
    }
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--exact")
        .and_then(|i| args.get(i + 1))
        .or_else(|| args.iter().skip(1).find(|a| !a.starts_with('-')))
        .cloned()
        .unwrap_or_else(|| "an e2e test".to_string())
}

/// `text` with a last line naming the test that wrote it, when a comment can safely go at the
/// end (complete lines, no multi-line string that could swallow it); line numbers are kept.
fn with_origin(text: &str) -> String {
    if text.is_empty() || !text.ends_with('\n') || text.contains("\"\"\"") || text.contains("'''") {
        return text.to_string();
    }
    format!("{text}# Written by the e2e test `{}`.\n", test_name())
}

impl Agent {
    /// Writes `conf.d/datakit.conf` plus `files` (path relative to conf.d, contents) into a new
    /// work dir and starts `datakit run`, waiting until `/v1/ping` answers.
    pub fn start(files: &[(&str, &str)]) -> Agent {
        Self::start_with(files, "", &[])
    }

    /// As [`Agent::start`], with extra main-config text and environment variables.
    pub fn start_with(files: &[(&str, &str)], extra_main: &str, env: &[(&str, &str)]) -> Agent {
        Self::start_exe(Path::new(bin()), files, extra_main, env)
    }

    /// As [`Agent::start_with`], running the binary `exe` (e.g. a copy stamped with a version).
    pub fn start_exe(
        exe: &Path,
        files: &[(&str, &str)],
        extra_main: &str,
        env: &[(&str, &str)],
    ) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        write_confd(dir.path(), &main_conf(port, extra_main), files);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let logs = dir.path().to_path_buf();
        let child = spawn(exe, dir.path(), &logs, &env);
        let mut agent = Agent {
            child,
            dir,
            api: SocketAddr::from(([127, 0, 0, 1], port)),
            env,
            exe: exe.to_path_buf(),
            logs,
        };
        agent.wait_ready();
        agent
    }

    /// Starts `datakit run` on a work dir whose `conf.d` is already written (API on `port`),
    /// with its output in `logs` (e.g. when the work dir is on a full disk).
    pub fn start_in(dir: tempfile::TempDir, logs: &Path, port: u16, env: &[(&str, &str)]) -> Agent {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = spawn(Path::new(bin()), dir.path(), logs, &env);
        let mut agent = Agent {
            child,
            dir,
            api: SocketAddr::from(([127, 0, 0, 1], port)),
            env,
            exe: PathBuf::from(bin()),
            logs: logs.to_path_buf(),
        };
        agent.wait_ready();
        agent
    }

    /// `kill -9` of the supervisor (its workers die with it), then a new start on the same
    /// work dir, waiting until it answers again.
    pub fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.exe, self.dir.path(), &self.logs, &self.env);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("agent exited early with {status}; log:\n{}", self.log());
            }
            if let Ok((200, _)) = try_request(self.api, "GET", "/v1/ping", &[], b"") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "agent not ready; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the agent printed.
    pub fn log(&self) -> String {
        let out = std::fs::read_to_string(self.logs.join("agent.out")).unwrap_or_default();
        let err = std::fs::read_to_string(self.logs.join("agent.err")).unwrap_or_default();
        format!("{out}{err}")
    }

    /// The work dir.
    pub fn workdir(&self) -> &Path {
        self.dir.path()
    }

    /// An HTTP request to the API.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        try_request(self.api, method, path, headers, body).unwrap()
    }

    /// `GET /metrics` as text.
    pub fn metrics(&self) -> String {
        let (status, body) = self.request("GET", "/metrics", &[], b"");
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }

    /// The value of one sample line of `/metrics` (exact name with labels), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
    }

    /// Waits up to `timeout` until the `/metrics` sample `series` is at least `min`; its value.
    pub fn wait_metric_at_least(&self, series: &str, min: f64, timeout: Duration) -> f64 {
        wait_for(&format!("{series} >= {min}"), timeout, || {
            self.metric(series).filter(|v| *v >= min)
        })
    }

    /// The pid of the worker process of `family` (a child of the agent), if one runs.
    pub fn worker_pid(&self, family: &str) -> Option<u32> {
        dk_worker::testing::load::worker_pid(self.child.id(), family)
    }

    /// Every point in the local sink's files of `category`.
    pub fn local_points(&self, category: &str) -> Vec<Point> {
        read_local_points(&self.workdir().join("data/local").join(category))
    }

    /// Sends a signal to the supervisor.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits for the agent to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_for("the agent to exit", timeout, || {
            self.child.try_wait().unwrap()
        })
    }

    /// Writes a file under conf.d (atomically: write + rename, as config management does).
    pub fn write_conf(&self, rel: &str, text: &str) {
        let path = self.workdir().join("conf.d").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let tmp = path.with_extension("tmp~");
        std::fs::write(&tmp, with_origin(text)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a conf.d tree.
pub fn write_confd(workdir: &Path, main: &str, files: &[(&str, &str)]) -> PathBuf {
    let confd = workdir.join("conf.d");
    std::fs::create_dir_all(&confd).unwrap();
    std::fs::write(confd.join("datakit.conf"), main).unwrap();
    for (rel, text) in files {
        let p = confd.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, with_origin(text)).unwrap();
    }
    confd
}

/// Decodes every `*.lp` file in a directory (rotated files included).
pub fn read_local_points(dir: &Path) -> Vec<Point> {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "lp"))
            .collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    let mut points = Vec::new();
    for f in files {
        let body = std::fs::read(&f).unwrap();
        // A file being appended to may end mid-line; decode complete lines only.
        let end = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if end == 0 {
            continue;
        }
        let opts = DecodeOptions {
            precision: Precision::Ns,
            now_ns: 0,
        };
        points.extend(
            dk_proto::lineproto::decode(&body[..end], &opts)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display())),
        );
    }
    points
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body (chunked decoded).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}
