//! DCA (DataKit Control App): the agent dials a console over WebSocket and serves its actions
//! (stats, reload, config files under conf.d, log tail), authenticated by a per-agent token;
//! and `datakit dca`, a small console for people.

pub mod agent;
pub mod console;
pub mod paths;
pub mod wire;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use agent::{DcaMetrics, Deps};

/// The check a saved config passes before it is written: the same validation as
/// `datakit check` (without probing ports, which the running agent holds).
pub fn checker(workdir: &Path) -> agent::Validator {
    let workdir = workdir.to_path_buf();
    Arc::new(move |confd: &Path| {
        crate::app::with_config_families(|families| {
            dk_config::inspect_confd(
                &workdir,
                confd,
                families,
                &dk_config::ProcessEnv,
                &dk_config::SystemProbe,
            )
            .errors
        })
    })
}

/// The log file DCA tails: `None` when the log goes to stdout or stderr.
pub fn log_file(dest: &str) -> Option<PathBuf> {
    match dest {
        "" | "stdout" | "stderr" => None,
        p => Some(PathBuf::from(p)),
    }
}

/// Starts the client when `[dca] enable`; it runs until `stop`.
pub fn start(deps: Deps, stop: tokio_util::sync::CancellationToken) {
    if !deps.cfg.enable {
        return;
    }
    tracing::info!(console = %deps.cfg.websocket_server, "DCA enabled: dialing the console.");
    tokio::spawn(agent::run(Arc::new(deps), stop));
}
