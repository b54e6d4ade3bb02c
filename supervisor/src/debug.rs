//! `datakit debug --input-conf FILE`: run the inputs of one config file once and print the
//! points they collect, then exit.
//!
//! The file is loaded and validated by the agent's own loader (as if it were the only file in
//! `conf.d`, with no default input), each family's inputs are built by the family itself, as
//! its worker builds them, and run in this process with an emitter whose points are printed
//! instead of uploaded. Inputs that listen for data (StatsD, logging sockets...) are refused:
//! they collect nothing on their own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use dk_proto::rpc::WorkerConfig;
use dk_worker::emitter::Message;
use dk_worker::{Emitter, Feed, InputContext};
use tokio_util::sync::CancellationToken;

use crate::EXIT_CONFIG;

fn err(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}

/// A scratch work dir, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads `file` alone; the plan, the host name and the warnings, or the errors (both with the
/// scratch path replaced by `file`).
fn load(file: &Path) -> Result<(dk_config::Plan, String, Vec<String>), Vec<String>> {
    let text =
        std::fs::read(file).map_err(|e| vec![format!("cannot read {}: {e}", file.display())])?;
    let dir = std::env::temp_dir().join(format!("datakit-debug-{}", std::process::id()));
    let scratch = Scratch(dir);
    let confd = scratch.0.join("conf.d");
    let name = file
        .file_name()
        .map_or_else(|| "input.conf".into(), |n| n.to_string_lossy().into_owned());
    let name = if name.ends_with(".conf") {
        name
    } else {
        format!("{name}.conf")
    };
    let copy = confd.join(&name);
    std::fs::create_dir_all(&confd)
        .and_then(|()| {
            std::fs::write(
                confd.join(dk_config::MAIN_CONF_NAME),
                "default_enabled_inputs = []\n",
            )
        })
        .and_then(|()| std::fs::write(&copy, text))
        .map_err(|e| vec![format!("cannot write {}: {e}", confd.display())])?;
    let report = crate::app::with_config_families(|families| {
        dk_config::inspect_confd(
            &scratch.0,
            &confd,
            families,
            &dk_config::ProcessEnv,
            &dk_config::SystemProbe,
        )
    });
    let shown = |d: &dk_config::Diagnostic| {
        d.to_string()
            .replace(&copy.display().to_string(), &file.display().to_string())
    };
    let warnings = report.warnings.iter().map(shown).collect();
    if !report.errors.is_empty() {
        return Err(report.errors.iter().map(shown).collect());
    }
    Ok((report.plan, report.main.hostname().to_string(), warnings))
}

/// `datakit debug --input-conf FILE [--timeout D]`.
pub fn input_conf(file: &Path, timeout: Duration) -> ExitCode {
    let (plan, hostname, warnings) = match load(file) {
        Ok(l) => l,
        Err(errors) => {
            err(&format!("{} problem(s):\n", errors.len()));
            for e in errors {
                err(&format!("  {e}\n"));
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for w in &warnings {
        err(&format!("warning: {w}\n"));
    }
    if plan.families.is_empty() {
        err(&format!(
            "{}: no input instance ([[inputs.NAME]]) to run\n",
            file.display()
        ));
        return ExitCode::from(EXIT_CONFIG);
    }
    for (family, fp) in &plan.families {
        if let Some(l) = fp.listeners.first() {
            err(&format!(
                "{}: the {family} inputs listen on {} and collect only what is sent to them; run the agent (`datakit run`) and send to it instead\n",
                file.display(),
                l.address
            ));
            return ExitCode::from(64);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            err(&format!("cannot start the async runtime: {e}\n"));
            return ExitCode::from(71);
        }
    };
    rt.block_on(run_once(plan, hostname, timeout))
}

async fn run_once(plan: dk_config::Plan, hostname: String, timeout: Duration) -> ExitCode {
    let (emitter, mut rx) = Emitter::channel(64);
    let shutdown = CancellationToken::new();
    let (_pause_tx, paused) = tokio::sync::watch::channel(false);
    let mut waiting: BTreeSet<String> = BTreeSet::new();
    let mut tasks = Vec::new();
    let families = crate::families::all();
    for (name, fp) in &plan.families {
        let Some(family) = families.iter().find(|f| f.name() == name) else {
            continue;
        };
        let config = WorkerConfig {
            family: name.clone(),
            hostname: hostname.clone(),
            inputs: fp.inputs.clone(),
            listeners: Vec::new(),
            health_interval_ms: crate::procman::HEALTH_INTERVAL.as_millis() as u64,
        };
        let inputs = match family.build(&config) {
            Ok(i) => i,
            Err(problems) => {
                for p in problems {
                    err(&format!("{name}: {}: {}\n", p.key, p.message));
                }
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        for input in inputs {
            waiting.insert(input.name().to_string());
            let ctx = InputContext {
                emitter: emitter.clone(),
                shutdown: shutdown.clone(),
                paused: paused.clone(),
                hostname: hostname.clone(),
                listeners: Vec::new(),
                started: std::time::Instant::now(),
                metrics: std::sync::Arc::new(std::sync::Mutex::new(
                    prometheus_client::registry::Registry::default(),
                )),
            };
            tasks.push(tokio::spawn(input.run(ctx)));
        }
    }
    drop(emitter);
    let expected = waiting.clone();
    let mut feeds: Vec<Feed> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while !waiting.is_empty() {
        tokio::select! {
            () = &mut deadline => break,
            msg = rx.recv() => match msg {
                None => break,
                Some(Message::Feed(f)) => {
                    waiting.remove(&f.input);
                    feeds.push(f);
                }
                Some(Message::AckedFeed(f, done)) => {
                    let _ = done.send(true);
                    waiting.remove(&f.input);
                    feeds.push(f);
                }
                Some(Message::LastError(e)) => {
                    errors.push(format!("{} ({}): {}", e.input, e.source, e.message));
                }
            },
        }
    }
    shutdown.cancel();
    // Inputs stop on the token; one that does not is left behind (the process exits).
    let _ = tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(tasks)).await;
    print_feeds(&feeds);
    for e in &errors {
        err(&format!("error: {e}\n"));
    }
    let mut per_input: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &feeds {
        *per_input.entry(f.input.as_str()).or_default() += f.points.len();
    }
    let summary: Vec<String> = expected
        .iter()
        .map(|i| format!("{i}: {} point(s)", per_input.get(i.as_str()).unwrap_or(&0)))
        .collect();
    err(&format!("{}\n", summary.join(", ")));
    if waiting.is_empty() {
        ExitCode::SUCCESS
    } else {
        let silent: Vec<&str> = waiting.iter().map(String::as_str).collect();
        err(&format!(
            "no point from {} within {timeout:?}; a longer --timeout waits for a first interval to pass\n",
            silent.join(", ")
        ));
        ExitCode::FAILURE
    }
}

fn print_feeds(feeds: &[Feed]) {
    let mut out = Vec::new();
    for f in feeds {
        out.extend_from_slice(
            format!(
                "# {} ({}): {} point(s)\n",
                f.input,
                f.category.name(),
                f.points.len()
            )
            .as_bytes(),
        );
        for p in &f.points {
            dk_proto::lineproto::encode_point(p, &mut out);
            if !out.ends_with(b"\n") {
                out.push(b'\n');
            }
        }
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &out);
}
