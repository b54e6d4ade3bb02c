//! The `datakit` binary: the supervisor (`run`), its config check (`check --config`), and the
//! worker processes it starts (`worker <family>`).

mod allocator;
mod app;
mod backoff;
mod cgroup;
mod container;
mod dca;
mod debug;
mod election;
mod families;
mod ingest;
mod jail;
mod limits;
mod listeners;
mod logging;
mod metrics;
mod monitor;
mod procman;
mod registry;
mod release;
mod service;
mod tools;
mod upgrade;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: decoding points is allocation-bound; it makes RPC push and codecs 1.5–2× faster
/// than glibc malloc (`docs/performance.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where things are, at the end of every command's `--help`.
const WHERE_HELP: &str = "Work dir: /usr/local/datakit (conf.d/ holds datakit.conf and the input configs; \
data/ and cache/dw-wal/ the data and the upload queue); another with --workdir DIR. \
Logs: /var/log/datakit/log ([logging] log in conf.d/datakit.conf; WORKDIR/log/log for another work dir; \
stdout with --log stdout or in container mode, `datakit run -C`).";

/// `datakit version`: the first line `datakit X.Y.Z (build ID)` as before (upgrades and
/// scripts read it: the version is its second word), then Datakit's fields (its
/// `Golang Version` is our Rust version).
fn version_text() -> String {
    format!(
        "datakit {} (build {})\n\n       Version: {}\n        Commit: {}\n        Branch: {}\n Build At(UTC): {}\n  Rust Version: {}\n",
        dk_proto::version(),
        dk_proto::build_id(),
        dk_proto::version(),
        env!("DK_BUILD_COMMIT"),
        env!("DK_BUILD_BRANCH"),
        env!("DK_BUILD_AT"),
        env!("DK_BUILD_RUSTC"),
    )
}

/// Exit code for a bad configuration (`EX_CONFIG`).
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "datakit",
    version = dk_proto::version(),
    about = "Host observability agent, compatible with Guance Datakit",
    after_help = "With no command, datakit runs the agent from the work dir /usr/local/datakit \
(as `datakit run --workdir /usr/local/datakit`), the way the datakit service starts it. \
Use `datakit run --workdir DIR` to run from another directory. Container mode: `datakit run -C` \
(the config from ENV_* variables). \
Work dir: /usr/local/datakit (conf.d/ holds datakit.conf and the input configs); \
logs: /var/log/datakit/log ([logging] log; WORKDIR/log/log for another work dir)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent in the foreground (the supervisor and its workers).
    #[command(after_help = WHERE_HELP)]
    Run {
        /// The install directory holding conf.d/, data/ and run/.
        #[arg(long, default_value = "/usr/local/datakit")]
        workdir: PathBuf,
        /// Log destination: a file path or `stdout`; overrides `[logging] log`.
        #[arg(long)]
        log: Option<String>,
        /// Container mode: the config comes from the ENV_* variables only (written to
        /// conf.d/datakit.conf at each start; ENV_DATAKIT_INPUTS to
        /// conf.d/ENV_DATAKIT_INPUTS.conf), logs go to stdout unless ENV_LOG says otherwise,
        /// and no PID file is kept.
        #[arg(short = 'C', long)]
        container: bool,
    },
    /// Check the configuration and print every problem; exits non-zero if there is any.
    #[command(after_help = WHERE_HELP)]
    Check {
        /// Check datakit.conf and conf.d.
        #[arg(long)]
        config: bool,
        /// The install directory holding conf.d/.
        #[arg(long, default_value = "/usr/local/datakit")]
        workdir: PathBuf,
        /// Check the datakit.conf and *.conf files in this directory instead of WORKDIR/conf.d.
        #[arg(long)]
        config_dir: Option<PathBuf>,
        /// Container mode: check the config `datakit run -C` would write from the ENV_*
        /// variables (bad values reported as it reports them) with the rest of conf.d.
        #[arg(short = 'C', long)]
        container: bool,
    },
    /// Run one input family's worker (started by the supervisor; not for direct use).
    #[command(hide = true)]
    Worker {
        /// The family name.
        family: String,
        /// The supervisor's run directory with its sockets.
        #[arg(long)]
        run_dir: PathBuf,
        /// Log level filter for the worker.
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Print the version.
    #[command(after_help = WHERE_HELP)]
    Version,
    /// Manage the systemd service of a tarball install (deb/rpm installs ship the unit).
    #[command(group(clap::ArgGroup::new("action").required(true).args(["install", "uninstall", "start", "stop", "restart"])), after_help = WHERE_HELP)]
    Service {
        /// Install the unit (/etc/systemd/system/datakit.service), enable and start it.
        #[arg(short = 'I', long)]
        install: bool,
        /// Stop and disable the service and remove its unit file (config and data are kept).
        #[arg(short = 'U', long)]
        uninstall: bool,
        /// Start the service.
        #[arg(short = 'S', long)]
        start: bool,
        /// Stop the service.
        #[arg(short = 'T', long)]
        stop: bool,
        /// Restart the service.
        #[arg(short = 'R', long)]
        restart: bool,
        /// The install dir the unit runs from (default: the directory of this binary).
        #[arg(long)]
        workdir: Option<PathBuf>,
    },
    /// Install a signed release over this binary (the running agent switches to it without
    /// closing a port), or put the previous binary back.
    #[command(after_help = WHERE_HELP)]
    Upgrade {
        /// A signed release tarball (path or URL; its `.sig` next to it) or an install base
        /// (directory or URL serving `version`).
        #[arg(long, value_name = "FILE|URL")]
        from: Option<String>,
        /// Put the previous binary back (kept by the last upgrade).
        #[arg(long, conflicts_with = "from")]
        rollback: bool,
        /// Install even the same or an older version.
        #[arg(long)]
        force: bool,
        /// The agent's work dir (its datakit.conf has the public keys).
        #[arg(long, default_value = "/usr/local/datakit")]
        workdir: PathBuf,
        /// The binary to replace (default: this one).
        #[arg(long)]
        exe: Option<PathBuf>,
        /// Watchdog mode (started by the supervisor): the new supervisor's pid.
        #[arg(long, hide = true)]
        watch: Option<u32>,
        /// Watchdog mode: milliseconds the new binary has to become healthy.
        #[arg(long, hide = true)]
        within_ms: Option<u64>,
        /// Watchdog mode: the supervisor's arguments.
        #[arg(last = true, hide = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run a DCA console: agents with `[dca] enable = true` dial its /ws; people use its page.
    #[command(after_help = WHERE_HELP)]
    Dca {
        /// Address to serve the page and the agents' WebSocket on (e.g. 127.0.0.1:8000).
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        /// The agents' tokens: one line per agent, `NAME TOKEN` (or just `TOKEN`).
        #[arg(long, value_name = "FILE")]
        tokens: PathBuf,
    },
    /// Debug an input config: run its inputs once and print the points they collect.
    #[command(after_help = WHERE_HELP)]
    Debug {
        /// The input config (a conf.d file with [[inputs.NAME]] tables) to run once.
        #[arg(long, value_name = "FILE")]
        input_conf: PathBuf,
        /// How long to wait for every input's first points.
        #[arg(long, default_value = "30s")]
        timeout: String,
    },
    /// Show what the agent is doing: inputs, workers, queue, uploads, HTTP API, errors, live
    /// from its /metrics (a terminal UI; plain text once with --once or when not on a terminal).
    #[command(after_help = WHERE_HELP)]
    Monitor {
        /// The agent's API address (HOST:PORT); default: [http_api] listen in WORKDIR's datakit.conf.
        #[arg(long, value_name = "HOST:PORT")]
        to: Option<String>,
        /// The work dir whose conf.d/datakit.conf says where the agent listens.
        #[arg(long, default_value = "/usr/local/datakit")]
        workdir: PathBuf,
        /// Refresh interval (at least 1s).
        #[arg(short = 'R', long, default_value = "5s")]
        refresh: String,
        /// Show only these modules, comma separated: B basic, R runtime, In inputs, G goroutine,
        /// H http, F filter, P pipeline, IO io_stats, W dataway, WAL wal.
        #[arg(short = 'M', long)]
        module: Option<String>,
        /// Show only these inputs, comma separated (e.g. -I cpu,mem).
        #[arg(short = 'I', long)]
        input: Option<String>,
        /// The widest a table cell may be.
        #[arg(short = 'W', long, default_value_t = 128)]
        max_table_width: usize,
        /// Show every row (empty queues too) and every recorded error.
        #[arg(short = 'V', long)]
        verbose: bool,
        /// Read the metrics from this file (a saved /metrics page) instead of the agent.
        #[arg(short = 'P', long, value_name = "FILE")]
        path: Option<PathBuf>,
        /// With --path: the time the metrics were taken, unix milliseconds.
        #[arg(short = 'T', long)]
        timestamp: Option<i64>,
        /// Print the raw /metrics page and exit.
        #[arg(long)]
        dump_metrics: bool,
        /// Print the tables once as plain text and exit (the default when stdout is not a terminal).
        #[arg(long)]
        once: bool,
    },
    /// Tools: check line protocol, print the default config, dump input samples, release keys.
    #[command(after_help = WHERE_HELP)]
    Tool {
        /// Validate and print the line protocol in FILE as the write API takes it (decoded,
        /// normalised); every invalid line is reported with its number, exit 1 when any.
        #[arg(long, value_name = "FILE")]
        parse_lp: Option<PathBuf>,
        /// With --parse-lp: print the points as JSON (the write API's echo=json).
        #[arg(long, requires = "parse_lp")]
        json: bool,
        /// With --parse-lp: the category the points are normalised for.
        #[arg(long, default_value = "metric", requires = "parse_lp")]
        category: String,
        /// Print the built-in default datakit.conf.
        #[arg(long)]
        default_main_conf: bool,
        /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
        #[arg(long, value_name = "SHELL")]
        completer_script: Option<clap_complete::Shell>,
        /// Install the bash completion script as /etc/bash_completion.d/datakit.
        #[arg(long)]
        setup_completer_script: bool,
        /// Write every input's sample config into DIR as <input>.conf.
        #[arg(long, value_name = "DIR")]
        dump_samples: Option<PathBuf>,
        /// Write an ed25519 key pair for signing releases into DIR (datakit.key, datakit.pub).
        #[arg(long, value_name = "DIR")]
        keygen: Option<PathBuf>,
        /// Sign FILE with --key; writes FILE.sig.
        #[arg(long, value_name = "FILE", requires = "key")]
        sign: Option<PathBuf>,
        /// The private key file for --sign.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Before any thread starts (mimalloc's options are not thread safe).
    allocator::set_defaults();
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Run {
            workdir,
            log,
            container,
        }) => app::run(workdir, log, container),
        None => app::run(PathBuf::from("/usr/local/datakit"), None, false),
        Some(Cmd::Check {
            config: _,
            workdir,
            config_dir,
            container,
        }) => app::check(&workdir, config_dir.as_deref(), container),
        Some(Cmd::Worker {
            family,
            run_dir,
            log_level,
        }) => app::worker(&family, &run_dir, &log_level),
        Some(Cmd::Debug {
            input_conf,
            timeout,
        }) => match dk_proto::duration::parse(&timeout) {
            Ok(t) => debug::input_conf(&input_conf, t),
            Err(e) => {
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr().lock(),
                    format!("datakit debug --timeout: {e}\n").as_bytes(),
                );
                ExitCode::from(64)
            }
        },
        Some(Cmd::Tool {
            parse_lp: Some(file),
            json,
            category,
            ..
        }) => tools::parse_lp_cmd(&file, json, &category),
        Some(Cmd::Tool {
            completer_script: Some(shell),
            ..
        }) => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "datakit",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Some(Cmd::Tool {
            setup_completer_script: true,
            ..
        }) => setup_completer_script(Path::new("/etc/bash_completion.d/datakit")),
        Some(Cmd::Tool {
            default_main_conf: true,
            ..
        }) => tools::default_main_conf(),
        Some(Cmd::Tool {
            dump_samples: Some(dir),
            ..
        }) => tools::dump_samples(&dir),
        Some(Cmd::Tool {
            keygen, sign, key, ..
        }) => tool(keygen, sign, key),
        Some(Cmd::Monitor {
            to,
            workdir,
            refresh,
            module,
            input,
            max_table_width,
            verbose,
            path,
            timestamp,
            dump_metrics,
            once,
        }) => match dk_proto::duration::parse(&refresh) {
            Ok(refresh) => monitor::run(&monitor::Options {
                to,
                workdir,
                refresh,
                modules: module,
                inputs: input,
                max_table_width,
                verbose,
                path,
                timestamp_ms: timestamp,
                dump_metrics,
                once,
            }),
            Err(e) => {
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr().lock(),
                    format!("datakit monitor --refresh: {e}\n").as_bytes(),
                );
                ExitCode::from(64)
            }
        },
        Some(Cmd::Dca { listen, tokens }) => dca::console::run(&listen, &tokens),
        Some(Cmd::Service {
            install,
            uninstall,
            start,
            stop,
            restart,
            workdir,
        }) => {
            let action = if install {
                service::Action::Install
            } else if uninstall {
                service::Action::Uninstall
            } else if start {
                service::Action::Start
            } else if stop {
                service::Action::Stop
            } else {
                debug_assert!(restart, "clap requires one action");
                service::Action::Restart
            };
            let workdir = workdir.unwrap_or_else(service::default_workdir);
            let (text, code) = match service::run(action, &workdir) {
                Ok(done) => (format!("{done}\n"), ExitCode::SUCCESS),
                Err(e) => (format!("datakit service: {e}\n"), ExitCode::FAILURE),
            };
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
            code
        }
        Some(Cmd::Upgrade {
            from,
            rollback,
            force,
            workdir,
            exe,
            watch,
            within_ms,
            args,
        }) => upgrade::cli::run(
            upgrade::cli::Options {
                from,
                rollback,
                force,
                workdir,
                exe,
                watch,
                within_ms,
                args,
            },
            app::upgrader_keys,
        ),
        Some(Cmd::Version) => {
            let mut out = std::io::stdout().lock();
            let _ = std::io::Write::write_all(&mut out, version_text().as_bytes());
            ExitCode::SUCCESS
        }
    }
}

/// `datakit tool --setup-completer-script`: the bash completion script written to `path`.
fn setup_completer_script(path: &Path) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::Bash,
        &mut <Cli as clap::CommandFactory>::command(),
        "datakit",
        &mut script,
    );
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, &script));
    let (text, code) = match written {
        Ok(()) => (
            format!(
                "wrote {}; open a new shell (or `source {}`) to complete datakit commands\n",
                path.display(),
                path.display()
            ),
            ExitCode::SUCCESS,
        ),
        Err(e) => (
            format!(
                "datakit tool --setup-completer-script: cannot write {}: {e} (run as root, or use `datakit tool --completer-script bash > FILE`)\n",
                path.display()
            ),
            ExitCode::FAILURE,
        ),
    };
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
    code
}

/// `datakit tool`: release keys and signatures.
fn tool(keygen: Option<PathBuf>, sign: Option<PathBuf>, key: Option<PathBuf>) -> ExitCode {
    let say = |text: String| {
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
    };
    if let Some(dir) = keygen {
        return match release::keygen(&dir) {
            Ok(public) => {
                say(format!(
                    "wrote {} and {}; put this public key in [dk_upgrader] public_keys:\n{public}\n",
                    dir.join(release::PRIVATE_KEY_FILE).display(),
                    dir.join(release::PUBLIC_KEY_FILE).display()
                ));
                ExitCode::SUCCESS
            }
            Err(e) => {
                say(format!("datakit tool --keygen: {e}\n"));
                ExitCode::FAILURE
            }
        };
    }
    if let (Some(file), Some(key)) = (sign, key) {
        let signed = std::fs::read(&file)
            .map_err(|e| format!("{}: {e}", file.display()))
            .and_then(|bytes| release::sign(&bytes, &key).map_err(|e| e.to_string()))
            .and_then(|sig| {
                let mut out = file.clone().into_os_string();
                out.push(".sig");
                std::fs::write(&out, format!("{sig}\n"))
                    .map_err(|e| format!("{}: {e}", PathBuf::from(&out).display()))
            });
        return match signed {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                say(format!("datakit tool --sign: {e}\n"));
                ExitCode::FAILURE
            }
        };
    }
    say("datakit tool: say what to do: --parse-lp FILE, --default-main-conf, --dump-samples DIR, --completer-script SHELL, --setup-completer-script, --keygen DIR, or --sign FILE --key KEY\n".into());
    ExitCode::from(64)
}
