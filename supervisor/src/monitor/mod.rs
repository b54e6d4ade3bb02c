//! `datakit monitor`: what the agent is doing at a glance, from its `/metrics` page — a
//! terminal UI with live refresh, or the same tables once as plain text for scripts.
//!
//! Reading the page ([`prom`]) and turning scrapes into rows ([`model`]) and text
//! ([`render`]) are pure; [`tui`] only draws.

pub mod model;
pub mod prom;
pub mod render;
mod tui;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model::{Filter, Scrape};
use render::{Layout, Module};

/// The command line of `datakit monitor` (Datakit's flags).
#[derive(Clone, Debug)]
pub struct Options {
    /// `--to host:port`; default: `[http_api] listen` of the work dir's datakit.conf.
    pub to: Option<String>,
    /// The work dir whose datakit.conf says where the agent listens.
    pub workdir: PathBuf,
    /// `-R`: refresh interval (at least 1 s).
    pub refresh: Duration,
    /// `-M`: modules, comma separated.
    pub modules: Option<String>,
    /// `-I`: inputs, comma separated.
    pub inputs: Option<String>,
    /// `-W`: widest table cell.
    pub max_table_width: usize,
    /// `-V`: every row.
    pub verbose: bool,
    /// `-P`: read the metrics from this file instead of the agent.
    pub path: Option<PathBuf>,
    /// `-T`: "now" for a file's metrics, unix milliseconds.
    pub timestamp_ms: Option<i64>,
    /// `--dump-metrics`: print the raw page and exit.
    pub dump_metrics: bool,
    /// `--once`: print the tables once as text and exit (also when stdout is no terminal).
    pub once: bool,
}

/// Why the monitor cannot show anything.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The agent did not answer.
    #[error(
        "cannot read {url}: {reason} (is the agent running there? Give its API address with --to HOST:PORT)"
    )]
    Fetch {
        /// The metrics URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The file of `-P` cannot be read.
    #[error("cannot read the metrics file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The page is not Prometheus text.
    #[error("{url}: {source}")]
    Parse {
        /// Where it came from.
        url: String,
        /// The first bad line.
        source: prom::ParseError,
    },
    /// A bad flag value.
    #[error("{0}")]
    Usage(String),
}

/// Where the metrics come from.
pub(crate) enum Source {
    /// The agent's `/metrics`.
    Http {
        url: String,
        client: reqwest::Client,
        rt: tokio::runtime::Runtime,
    },
    /// A saved page (`-P`).
    File(PathBuf),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Http { url, .. } => url.clone(),
            Source::File(p) => p.display().to_string(),
        }
    }

    /// The raw page.
    fn fetch_text(&self) -> Result<String, MonitorError> {
        match self {
            Source::File(path) => {
                std::fs::read_to_string(path).map_err(|source| MonitorError::File {
                    path: path.clone(),
                    source,
                })
            }
            Source::Http { url, client, rt } => {
                let fail = |reason: String| MonitorError::Fetch {
                    url: url.clone(),
                    reason,
                };
                rt.block_on(async {
                    let resp = client
                        .get(url)
                        .send()
                        .await
                        .map_err(|e| fail(error_chain(&e)))?;
                    let status = resp.status();
                    if !status.is_success() {
                        return Err(fail(format!("HTTP {status}")));
                    }
                    resp.text().await.map_err(|e| fail(error_chain(&e)))
                })
            }
        }
    }

    /// One scrape, read.
    fn scrape(&self, at: f64) -> Result<Scrape, MonitorError> {
        let text = self.fetch_text()?;
        let samples = prom::parse(&text).map_err(|source| MonitorError::Parse {
            url: self.describe(),
            source,
        })?;
        Ok(Scrape { samples, at })
    }
}

/// The root cause of an error (reqwest's own text only says "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut root = e;
    while let Some(c) = root.source() {
        root = c;
    }
    root.to_string()
}

/// The base URL of the agent of `workdir`: `[http_api] listen` of its datakit.conf
/// (`localhost:9529` without one; a wildcard host is asked on loopback), `https` when
/// `[http_api.tls]` names a certificate and key that exist (Datakit's rule).
pub fn local_base_url(workdir: &Path) -> String {
    let conf = std::fs::read_to_string(dk_config::main_conf_path(workdir))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok());
    let http = conf.as_ref().and_then(|t| t.get("http_api"));
    let listen = http
        .and_then(|h| h.get("listen")?.as_str())
        .filter(|l| !l.is_empty())
        .unwrap_or("localhost:9529");
    let tls_file = |key: &str| {
        http.and_then(|h| h.get("tls")?.get(key)?.as_str())
            .is_some_and(|p| !p.is_empty() && Path::new(p).is_file())
    };
    let scheme = if tls_file("cert") && tls_file("privkey") {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", loopback_for(listen))
}

/// `0.0.0.0:9529` → `127.0.0.1:9529`, `[::]:9529` → `[::1]:9529`, `:9529` → `127.0.0.1:9529`.
pub fn loopback_for(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else if let Some(port) = listen.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else {
        listen.to_string()
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn source(opts: &Options) -> Result<Source, MonitorError> {
    if let Some(path) = &opts.path {
        return Ok(Source::File(path.clone()));
    }
    let base = match &opts.to {
        Some(to) if to.starts_with("http://") || to.starts_with("https://") => to.clone(),
        Some(to) => format!("http://{to}"),
        None => local_base_url(&opts.workdir),
    };
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        // As Datakit's monitor: the agent's own certificate is often self-signed; only
        // metrics are read.
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| MonitorError::Fetch {
            url: url.clone(),
            reason: error_chain(&e),
        })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| MonitorError::Fetch {
            url: url.clone(),
            reason: format!("no runtime: {e}"),
        })?;
    Ok(Source::Http { url, client, rt })
}

/// Settings shared by the text and the terminal modes.
pub(crate) struct Settings {
    pub(crate) modules: Vec<Module>,
    pub(crate) filter: Filter,
    pub(crate) layout: Layout,
    pub(crate) refresh: Duration,
    /// Fixed "now" (`-T`), unix seconds.
    pub(crate) now: Option<f64>,
}

fn settings(opts: &Options) -> Result<Settings, MonitorError> {
    let modules = match opts.modules.as_deref().filter(|m| !m.trim().is_empty()) {
        Some(m) => render::parse_modules(m).map_err(MonitorError::Usage)?,
        None => render::DEFAULT_MODULES.to_vec(),
    };
    let inputs = opts
        .inputs
        .as_deref()
        .map(|i| {
            i.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Settings {
        modules,
        filter: Filter {
            inputs,
            verbose: opts.verbose,
        },
        layout: Layout {
            max_cell: opts.max_table_width,
            verbose: opts.verbose,
        },
        refresh: opts.refresh.max(Duration::from_secs(1)),
        now: opts.timestamp_ms.map(|ms| ms as f64 / 1000.0),
    })
}

/// `datakit monitor`.
pub fn run(opts: &Options) -> ExitCode {
    match run_inner(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "datakit monitor: {e}");
            match e {
                MonitorError::Usage(_) => ExitCode::from(64),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn run_inner(opts: &Options) -> Result<(), MonitorError> {
    let settings = settings(opts)?;
    let src = source(opts)?;
    if opts.dump_metrics {
        let text = src.fetch_text()?;
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        return Ok(());
    }
    if opts.once || !std::io::stdout().is_terminal() {
        let at = now_unix();
        let scrape = src.scrape(at)?;
        let view = model::view(None, &scrape, settings.now.unwrap_or(at), &settings.filter);
        let mut out = format!("From {}\n", src.describe());
        out.push_str(&render::text(&render::sections(
            &view,
            &settings.modules,
            settings.layout,
        )));
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
        return Ok(());
    }
    tui::run(&src, &settings).map_err(|e| MonitorError::Fetch {
        url: src.describe(),
        reason: format!("terminal: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_url_comes_from_the_listen_address_and_tls_files_of_datakit_conf() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(local_base_url(dir.path()), "http://localhost:9529");
        let conf = dk_config::main_conf_path(dir.path());
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(&conf, "[http_api]\n  listen = \"0.0.0.0:19529\"\n").unwrap();
        assert_eq!(local_base_url(dir.path()), "http://127.0.0.1:19529");
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "x").unwrap();
        std::fs::write(
            &conf,
            format!(
                "[http_api]\n  listen = \"[::]:9529\"\n[http_api.tls]\n  cert = \"{0}\"\n  privkey = \"{0}\"\n",
                cert.display()
            ),
        )
        .unwrap();
        assert_eq!(local_base_url(dir.path()), "https://[::1]:9529");
        assert_eq!(loopback_for(":9529"), "127.0.0.1:9529");
        assert_eq!(loopback_for("10.0.0.1:9529"), "10.0.0.1:9529");
    }
}
