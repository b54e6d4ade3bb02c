//! The `datakit` binary: the supervisor (`run`), its config check (`check --config`), and the
//! worker processes it starts (`worker <family>`).

mod app;
mod backoff;
mod cgroup;
mod container;
mod dca;
mod election;
mod families;
mod ingest;
mod jail;
mod limits;
mod listeners;
mod logging;
mod metrics;
mod procman;
mod registry;
mod release;
mod service;
mod upgrade;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: decoding points is allocation-bound; it makes RPC push and codecs 1.5–2× faster
/// than glibc malloc (`docs/performance.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a bad configuration (`EX_CONFIG`).
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "datakit",
    version = dk_proto::version(),
    about = "Host observability agent, compatible with Guance Datakit",
    after_help = "With no command, datakit runs the agent from the work dir /usr/local/datakit \
(as `datakit run --workdir /usr/local/datakit`), the way the datakit service starts it. \
Use `datakit run --workdir DIR` to run from another directory."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent in the foreground (the supervisor and its workers).
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
    Version,
    /// Manage the systemd service of a tarball install (deb/rpm installs ship the unit).
    #[command(group(clap::ArgGroup::new("action").required(true).args(["install", "uninstall", "start", "stop", "restart"])))]
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
    Dca {
        /// Address to serve the page and the agents' WebSocket on (e.g. 127.0.0.1:8000).
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        /// The agents' tokens: one line per agent, `NAME TOKEN` (or just `TOKEN`).
        #[arg(long, value_name = "FILE")]
        tokens: PathBuf,
    },
    /// Tools: key pairs and signatures for releases.
    Tool {
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
        }) => app::check(&workdir, config_dir.as_deref()),
        Some(Cmd::Worker {
            family,
            run_dir,
            log_level,
        }) => app::worker(&family, &run_dir, &log_level),
        Some(Cmd::Tool { keygen, sign, key }) => tool(keygen, sign, key),
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
            let _ = std::io::Write::write_all(
                &mut out,
                format!(
                    "datakit {} (build {})\n",
                    dk_proto::version(),
                    dk_proto::build_id()
                )
                .as_bytes(),
            );
            ExitCode::SUCCESS
        }
    }
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
    say("datakit tool: say what to do: --keygen DIR, or --sign FILE --key KEY\n".into());
    ExitCode::from(64)
}
