//! Log set-up: the supervisor writes to `[logging] log` (or stdout); workers write to stderr,
//! which the supervisor forwards into its own log.

use std::path::Path;

use tracing_subscriber::EnvFilter;

/// Keeps the non-blocking writer flushing until dropped.
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// Log lines the non-blocking writer buffers before it drops new ones: the
/// supervisor logs rarely (never per point), and tracing-appender's default of 128 000 slots
/// is a channel of 4 MiB kept resident from the start.
pub const BUFFERED_LINES: usize = 8192;

/// The non-blocking writer with [`BUFFERED_LINES`] slots (lossy, as tracing-appender's
/// default: a log destination that stalls never blocks the agent).
fn non_blocking<W: std::io::Write + Send + 'static>(
    w: W,
) -> (
    tracing_appender::non_blocking::NonBlocking,
    tracing_appender::non_blocking::WorkerGuard,
) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .finish(w)
}

fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_env("DK_LOG").unwrap_or_else(|_| EnvFilter::new(directives(level)))
}

/// The filter for `[logging] level`: at `info`, tarpc only from `warn` up. tarpc opens an
/// INFO span for every call (each push, each 1 s health check) whose fields the log formats,
/// which cost an idle agent a measurable share of its CPU and logs nothing; its warnings
/// still show, and `debug` (or `DK_LOG`) shows everything.
fn directives(level: &str) -> String {
    if level.trim().eq_ignore_ascii_case("info") {
        format!("{level},tarpc=warn")
    } else {
        level.to_string()
    }
}

/// Logs to `dest` (`stdout`, `stderr` or a file path, created with its directory). If the file
/// cannot be opened the log goes to stderr with a warning, so a bad path never stops the agent.
pub fn init_supervisor(dest: &str, level: &str) -> LogGuard {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_ansi(false)
        // A log destination that broke (a closed stdout pipe) must not turn every log call into
        // a panic: tracing-subscriber reports write errors with `eprintln!`, which panics then.
        .log_internal_errors(false);
    match dest {
        "stdout" => {
            let (w, g) = non_blocking(std::io::stdout());
            builder.with_writer(w).init();
            LogGuard(Some(g))
        }
        "stderr" | "" => {
            builder.with_writer(std::io::stderr).init();
            LogGuard(None)
        }
        path => {
            let opened = Path::new(path)
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                });
            match opened {
                Ok(file) => {
                    let (w, g) = non_blocking(file);
                    builder.with_writer(w).init();
                    LogGuard(Some(g))
                }
                Err(e) => {
                    builder.with_writer(std::io::stderr).init();
                    tracing::warn!(path, error = %e, "Cannot open the log file; logging to stderr. Set [logging] log to a writable path or \"stdout\".");
                    LogGuard(None)
                }
            }
        }
    }
}

/// Workers log plain lines to stderr (no timestamps: the supervisor adds its own). A worker
/// whose supervisor died has a broken stderr pipe: its log calls are then dropped silently
/// rather than panicking the task that logs (a panicking task could not stop the worker).
pub fn init_worker(level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_ansi(false)
        .log_internal_errors(false)
        .without_time()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::directives;
    use tracing_subscriber::layer::SubscriberExt;

    /// Whether an INFO span of `target` is created under the filter for `level`.
    fn info_span_enabled(level: &str, target: &'static str) -> bool {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(directives(level)));
        tracing::subscriber::with_default(subscriber, || match target {
            "tarpc" => !tracing::info_span!(target: "tarpc::client", "RPC").is_disabled(),
            _ => !tracing::info_span!(target: "datakit::procman", "worker").is_disabled(),
        })
    }

    #[test]
    fn at_info_tarpc_opens_no_span_per_call_and_our_spans_stay() {
        assert!(!info_span_enabled("info", "tarpc"));
        assert!(info_span_enabled("info", "datakit"));
        assert!(info_span_enabled("debug", "tarpc"), "debug shows tarpc too");
        assert!(!info_span_enabled("warn", "datakit"));
    }
}
