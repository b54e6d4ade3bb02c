//! Prints every error and warning of a work directory's config: `check <workdir>`.
//!
//! No input family is linked in, so every input is reported as not served; the main config
//! and the TOML of every file are checked fully.

fn main() {
    let workdir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let report = dk_config::inspect(
        std::path::Path::new(&workdir),
        &[],
        &dk_config::ProcessEnv,
        &dk_config::SystemProbe,
    );
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "{} error(s), {} warning(s); host {:?}, tags {:?}",
        report.errors.len(),
        report.warnings.len(),
        report.main.hostname(),
        report.main.host_tags()
    );
    if !report.errors.is_empty() {
        std::process::exit(1);
    }
}
