//! Container mode (`datakit run -C`): the config comes from the `ENV_*` variables only.
//!
//! Before anything is bound, the variables are read (every bad one is reported, naming it, and
//! the agent exits 78), `conf.d/datakit.conf` is written from them (Datakit's code defaults,
//! logs to stdout, no resource limit) and `ENV_DATAKIT_INPUTS` to
//! `conf.d/ENV_DATAKIT_INPUTS.conf`, and the per-input `ENV_INPUT_<NAME>_*` variables of the
//! default-enabled inputs to `conf.d/ENV_INPUT_<NAME>.conf`; then the agent loads that work dir
//! as usual. No PID file is
//! kept (a container runs one agent).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use dk_config::{Diagnostic, EnvConfig, ProcessEnv};

static ON: AtomicBool = AtomicBool::new(false);

/// Whether this process runs in container mode.
pub fn is_on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// What went wrong preparing the work dir.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Variables with bad values.
    #[error("{} problem(s) in the ENV_* variables (container mode):{}", .0.len(), list(.0))]
    Env(Vec<Diagnostic>),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}; mount a writable work dir (or pass --workdir)")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

fn list(d: &[Diagnostic]) -> String {
    d.iter().map(|d| format!("\n  {d}")).collect()
}

/// Reads the variables and writes `conf.d/datakit.conf` (and `ENV_DATAKIT_INPUTS.conf`).
///
/// # Errors
/// Bad variables, or a file that cannot be written.
pub fn prepare(workdir: &Path) -> Result<EnvConfig, PrepareError> {
    ON.store(true, Ordering::Relaxed);
    write_confs(&dk_config::confd_dir(workdir))
}

/// Writes the files of [`prepare`] into `confd` (`datakit check --config -C` writes them into a
/// scratch copy of conf.d).
///
/// # Errors
/// Bad variables, or a file that cannot be written.
pub fn write_confs(confd: &Path) -> Result<EnvConfig, PrepareError> {
    let mut cfg = dk_config::from_env(&ProcessEnv).map_err(PrepareError::Env)?;
    let enabled = cfg.default_enabled_inputs();
    let inputs = crate::app::with_config_families(|families| {
        dk_config::input_confs(&ProcessEnv, &enabled, families)
    })
    .map_err(PrepareError::Env)?;
    cfg.warnings.extend(inputs.warnings);
    let write = |path: &Path, text: &str| {
        std::fs::create_dir_all(confd)
            .and_then(|()| std::fs::write(path, text))
            .map_err(|source| PrepareError::Write {
                path: path.display().to_string(),
                source,
            })
    };
    write(
        &confd.join(dk_config::MAIN_CONF_NAME),
        &cfg.main_conf_text(),
    )?;
    if let Some(inputs) = &cfg.inputs_conf {
        write(&confd.join(dk_config::ENV_INPUTS_FILE), inputs)?;
    }
    // The per-input files of the last start go: the variables may have changed.
    if let Ok(entries) = std::fs::read_dir(confd) {
        for e in entries.flatten() {
            if dk_config::is_input_env_file(&e.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for (name, text) in &inputs.files {
        write(&confd.join(name), text)?;
    }
    Ok(cfg)
}

/// Adds the variable that set it to each problem of the written `datakit.conf`.
pub fn annotate(cfg: &EnvConfig, workdir: &Path, diags: &mut [Diagnostic]) {
    annotate_file(cfg, &dk_config::main_conf_path(workdir), diags);
}

/// [`annotate`] for the `datakit.conf` at `main`.
pub fn annotate_file(cfg: &EnvConfig, main: &Path, diags: &mut [Diagnostic]) {
    for d in diags.iter_mut().filter(|d| d.file == main) {
        if let Some(var) = cfg.origin_of(&d.key) {
            d.message = format!("{} (set by {var}: change the variable)", d.message);
        }
    }
}

/// In host mode: a warning naming the `ENV_*` variables that are set but apply only in
/// container mode, if any.
pub fn host_mode_warning() -> Option<String> {
    match dk_config::from_env(&ProcessEnv) {
        Ok(cfg) => cfg.host_mode_ignored(),
        Err(errors) => {
            let names: Vec<&str> = errors.iter().map(|d| d.key.as_str()).collect();
            Some(format!(
                "ENV_* variables apply only in container mode (`datakit run -C`); ignored: {}",
                names.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_problem_of_the_written_datakit_conf_names_the_variable_that_set_the_key() {
        let env = dk_config::MapEnv(HashMap::from([(
            "ENV_DATAWAY_MAX_RAW_BODY_SIZE".to_string(),
            "10".to_string(),
        )]));
        let cfg = dk_config::from_env(&env).unwrap();
        let workdir = Path::new("/w");
        let main = dk_config::main_conf_path(workdir);
        let mut diags = vec![
            Diagnostic::new(&main, "dataway.max_raw_body_size", "too small"),
            Diagnostic::new(&main, "http_api.listen", "busy"),
            Diagnostic::new(
                "/w/conf.d/x.conf",
                "dataway.max_raw_body_size",
                "other file",
            ),
        ];
        annotate(&cfg, workdir, &mut diags);
        assert_eq!(
            diags[0].message,
            "too small (set by ENV_DATAWAY_MAX_RAW_BODY_SIZE: change the variable)"
        );
        assert_eq!(diags[1].message, "busy");
        assert_eq!(diags[2].message, "other file");
    }
}
