//! Load-harness support shared by the families' `examples/*_load.rs`: a release agent started
//! on a temp work dir, its `/metrics`, and the CPU and memory of its processes from `/proc`.
//!
//! Harness code: errors are returned as `io::Error` with a message, nothing panics.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback (the OS picks it; it is released before use).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `GET path` on an HTTP/1.1 server; the body.
///
/// # Errors
/// Connection or read failures.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    Ok(raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// The sum of the samples of `name` in OpenMetrics `text` whose line contains every `needle`.
pub fn metric_sum(text: &str, name: &str, needles: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .sum()
}

/// User plus system CPU seconds of a process (0 when it is gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the command name.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// (VmRSS, VmHWM) of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let kib = |key| crate::worker::status_bytes(pid, key).map(|b| b / 1024);
    Some((kib("VmRSS")?, kib("VmHWM")?))
}

/// The pid of the live (not zombie) `datakit worker <family>` child of the supervisor `agent`.
pub fn worker_pid(agent: u32, family: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let mut after = stat.rsplit_once(')')?.1.split_whitespace();
        let state = after.next()?;
        let ppid: u32 = after.next()?.parse().ok()?;
        if state == "Z" {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        (ppid == agent
            && args.get(1) == Some(&&b"worker"[..])
            && args.get(2) == Some(&family.as_bytes()))
        .then_some(pid)
    })
}

/// A `datakit run` process on its own temp work dir, killed and cleaned up on drop.
pub struct LoadAgent {
    child: Child,
    dir: PathBuf,
    /// The agent's HTTP API address.
    pub api: SocketAddr,
}

impl LoadAgent {
    /// Writes `conf.d/datakit.conf` (API on a free port, no default inputs, warnings only)
    /// and each `(relative path, text)` input file, starts `datakit run` and waits until the
    /// API answers `/v1/ping`.
    ///
    /// # Errors
    /// Files, spawning, or an agent that does not answer in 20 s.
    pub fn start(datakit: &Path, name: &str, files: &[(&str, &str)]) -> io::Result<LoadAgent> {
        let dir = std::env::temp_dir().join(format!("dk-{name}-{}", std::process::id()));
        let confd = dir.join("conf.d");
        std::fs::create_dir_all(&confd)?;
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        std::fs::write(
            confd.join("datakit.conf"),
            format!(
                "default_enabled_inputs = []\n[http_api]\n  listen = \"{api}\"\n[logging]\n  log = \"stdout\"\n  level = \"warn\"\n"
            ),
        )?;
        for (rel, text) in files {
            let path = confd.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
        let child = Command::new(datakit)
            .arg("run")
            .arg("--workdir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::other(format!("cannot start {}: {e}", datakit.display())))?;
        let agent = LoadAgent { child, dir, api };
        let ready = Instant::now();
        while agent.get("/v1/ping").is_err() {
            if ready.elapsed() > Duration::from_secs(20) {
                return Err(io::Error::other(
                    "the agent did not answer /v1/ping in 20 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(agent)
    }

    /// Waits until the `family` worker runs and, when given, `tcp_port` on loopback accepts
    /// connections (the supervisor binds sockets before it starts the worker); the worker's pid.
    ///
    /// # Errors
    /// Neither within 20 s.
    pub fn wait_worker(&self, family: &str, tcp_port: Option<u16>) -> io::Result<u32> {
        let ready = Instant::now();
        loop {
            if let Some(pid) = worker_pid(self.pid(), family)
                && tcp_port.is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())
            {
                return Ok(pid);
            }
            if ready.elapsed() > Duration::from_secs(20) {
                return Err(io::Error::other(format!(
                    "no {family} worker listening after 20 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The work dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `GET path` on the agent's API; the body.
    ///
    /// # Errors
    /// Connection or read failures.
    pub fn get(&self, path: &str) -> io::Result<String> {
        http_get(self.api, path)
    }

    /// Points the sinks wrote for `category` (`datakit_io_sink_point_total`, status ok).
    pub fn sink_points(&self, category: &str) -> f64 {
        self.get("/metrics")
            .map(|m| {
                metric_sum(
                    &m,
                    "datakit_io_sink_point_total",
                    &[&format!("category=\"{category}\""), "status=\"ok\""],
                )
            })
            .unwrap_or(0.0)
    }

    /// Waits until `count` points of `category` were written, or nothing moved for `stall`;
    /// returns what was written.
    pub fn wait_for_points(&self, category: &str, count: f64, stall: Duration) -> f64 {
        let mut last = (self.sink_points(category), Instant::now());
        loop {
            let now = self.sink_points(category);
            if now >= count {
                return now;
            }
            if now > last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > stall {
                return now;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LoadAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_samples_whose_labels_match() {
        let text = "a_total{x=\"1\",y=\"2\"} 3\na_total{x=\"1\"} 4\nb_total{x=\"1\"} 100\n";
        assert_eq!(metric_sum(text, "a_total", &["x=\"1\""]), 7.0);
        assert_eq!(metric_sum(text, "a_total", &["y=\"2\""]), 3.0);
        assert_eq!(metric_sum(text, "c_total", &[]), 0.0);
    }

    #[test]
    fn reads_cpu_and_memory_of_this_process() {
        let me = std::process::id();
        let (rss, peak) = rss_kib(me).unwrap();
        assert!(rss > 0 && peak >= rss);
        assert!(cpu_seconds(me) >= 0.0);
        assert_eq!(worker_pid(me, "nothing"), None);
    }
}
