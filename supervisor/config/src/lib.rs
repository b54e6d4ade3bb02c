//! Loading and validating `conf.d/datakit.conf` and every `conf.d/**/*.conf`.
//!
//! [`load`] reads the main config over Datakit's code defaults, reads every input file, has each
//! input family validate its instances, and returns either the [`Plan`] (inputs and listeners per
//! family) or [`ConfigErrors`] with every problem found, each naming its file and key.
//!
//! Behaviour follows Datakit 1.84, with these choices:
//! * `-name` in `default_enabled_inputs` disables `name` entirely, `conf.d` instances included
//!   (as Datakit does); a default-enabled input uses its family's built-in sample only when no
//!   `conf.d` file configures it (Datakit writes `conf.d/<name>.conf` instead).
//! * Without `datakit.conf` the built-in sample ([`MAIN_CONF_SAMPLE`]) is used.
//! * Inputs Datakit has but this build does not serve, and unknown inputs, are warnings.

mod addr;
mod confd;
mod diag;
mod env;
mod env_conf;
mod host;
mod known_inputs;
mod main_conf;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dk_proto::family::{Descriptor, ListenSpec};
use dk_proto::rpc::InputSpec;

pub use addr::ListenAddr;
pub use diag::{ConfigErrors, Diagnostic};
pub use env::{Env, MapEnv, ProcessEnv, substitute};
pub use env_conf::{
    ENV_INPUTS_FILE, ENV_SOURCE, EnvConfig, InputConfs, from_env, input_confs, input_env_file,
    is_input_env_file,
};
pub use host::{HostProbe, SystemProbe};
pub use known_inputs::{DATAKIT_DEFAULT_ENABLED_INPUTS, DATAKIT_INPUTS, is_datakit_input};
pub use main_conf::{
    ContentEncoding, Dataway, Dca, DkUpgrader, Election, EtcdElection, HttpApi, HttpTls,
    InfluxSink, Io, LocalSink, Logging, MainConfig, Ntp, ResourceLimit, Sinks, Wal,
};

use confd::{Defaults, Instance, Loader};
use diag::Sink;

/// File name of the main config inside `conf.d`.
pub const MAIN_CONF_NAME: &str = "datakit.conf";

/// The built-in sample `datakit.conf` (written by [`ensure_main_conf`]).
pub const MAIN_CONF_SAMPLE: &str = include_str!("../../../conf.d/datakit.conf");

/// `<workdir>/conf.d`.
pub fn confd_dir(workdir: &Path) -> PathBuf {
    workdir.join("conf.d")
}

/// `<workdir>/conf.d/datakit.conf`.
pub fn main_conf_path(workdir: &Path) -> PathBuf {
    confd_dir(workdir).join(MAIN_CONF_NAME)
}

/// An accepted configuration.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// `datakit.conf`, resolved (host name, tags, WAL path).
    pub main: MainConfig,
    /// What to run.
    pub plan: Plan,
    /// Problems that do not stop the agent (unserved inputs, deprecated keys...).
    pub warnings: Vec<Diagnostic>,
    /// Every socket the config asks for and who asks (to name them when binding fails).
    pub listeners: Vec<ListenerOrigin>,
}

/// What every family runs: only families with at least one input appear.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Family name → its inputs and listeners.
    pub families: BTreeMap<String, FamilyPlan>,
}

/// One family's inputs and the sockets they listen on.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilyPlan {
    /// Input instances, in file order (files sorted by path).
    pub inputs: Vec<InputSpec>,
    /// Listeners the instances claim, in the same order.
    pub listeners: Vec<ListenSpec>,
    /// Routes the instances serve on the API port (forwarded to the family's worker).
    pub routes: Vec<dk_proto::family::RoutePath>,
    /// Stable hash of the inputs (name, toml) and listeners; equal means nothing to restart.
    pub fingerprint: u64,
}

/// Families that were added, removed, or whose inputs changed (compares fingerprints).
pub fn changed_families(old: &Plan, new: &Plan) -> BTreeSet<String> {
    let names = old.families.keys().chain(new.families.keys());
    names
        .filter(|name| {
            old.families.get(*name).map(|f| f.fingerprint)
                != new.families.get(*name).map(|f| f.fingerprint)
        })
        .cloned()
        .collect()
}

/// Everything one load found, accepted or not (for `datakit check` style reports).
#[derive(Clone, Debug)]
pub struct Report {
    /// The main config as far as it could be read (defaults where it could not).
    pub main: MainConfig,
    /// The plan as far as it could be built.
    pub plan: Plan,
    /// Problems that stop the config from being used.
    pub errors: Vec<Diagnostic>,
    /// Problems that do not.
    pub warnings: Vec<Diagnostic>,
    /// Every socket the config asks for (`[http_api] listen` first) and who asks.
    pub listeners: Vec<ListenerOrigin>,
}

impl Report {
    /// The accepted config when there is no error, else (errors, warnings).
    ///
    /// # Errors
    /// Every error and warning when any error was found.
    pub fn into_loaded(self) -> Result<Loaded, (Vec<Diagnostic>, Vec<Diagnostic>)> {
        if self.errors.is_empty() {
            Ok(Loaded {
                main: self.main,
                plan: self.plan,
                warnings: self.warnings,
                listeners: self.listeners,
            })
        } else {
            Err((self.errors, self.warnings))
        }
    }
}

/// A socket the config asks for, and the file and key that ask for it.
#[derive(Clone, Debug)]
pub struct ListenerOrigin {
    /// The address and transport.
    pub spec: ListenSpec,
    /// The config file.
    pub file: PathBuf,
    /// The key in it (`http_api.listen`, `inputs.statsd[0]`).
    pub key: String,
}

/// Problems with the work dir itself, for `datakit check`: a missing work dir or `conf.d`
/// would make `check` judge only built-in defaults. (A missing `datakit.conf` is a warning:
/// `datakit run` writes the default one.)
pub fn workdir_problems(workdir: &Path) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    confd_problems(workdir, &confd_dir(workdir))
}

/// [`workdir_problems`] with the config files in `confd`.
pub fn confd_problems(workdir: &Path, confd: &Path) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    let own = confd == confd_dir(workdir);
    let confd = confd.to_path_buf();
    let main_file = confd.join(MAIN_CONF_NAME);
    if own && !workdir.is_dir() {
        let d = Diagnostic::new(
            workdir,
            "",
            "the work dir does not exist: pass --workdir DIR (the install directory holding conf.d/), or run `datakit run --workdir DIR` once to create it with the default datakit.conf",
        );
        return (vec![d], Vec::new());
    }
    if !confd.is_dir() {
        let message = if own {
            "conf.d does not exist in the work dir: is --workdir the install directory? `datakit run` creates it with the default datakit.conf"
        } else {
            "the config dir does not exist: pass --config-dir DIR, the directory holding datakit.conf and the inputs' .conf files"
        };
        let d = Diagnostic::new(&confd, "", message);
        return (vec![d], Vec::new());
    }
    if !main_file.exists() {
        let d = Diagnostic::new(
            &main_file,
            "",
            "datakit.conf is missing: checked with the built-in default; `datakit run` writes it on first start",
        );
        return (Vec::new(), vec![d]);
    }
    (Vec::new(), Vec::new())
}

/// Loads `<workdir>/conf.d/datakit.conf` and every `<workdir>/conf.d/**/*.conf`, validates all of
/// it with the families' validators, and returns the plan or EVERY problem found.
///
/// # Errors
/// [`ConfigErrors`] with every error (warnings are not included).
pub fn load(
    workdir: &Path,
    families: &[&dyn Descriptor],
    env: &dyn Env,
) -> Result<Loaded, ConfigErrors> {
    load_with(workdir, families, env, &SystemProbe)
}

/// [`load`] with the host facts (host name, IP) taken from `probe`.
///
/// # Errors
/// [`ConfigErrors`] with every error.
pub fn load_with(
    workdir: &Path,
    families: &[&dyn Descriptor],
    env: &dyn Env,
    probe: &dyn HostProbe,
) -> Result<Loaded, ConfigErrors> {
    inspect(workdir, families, env, probe)
        .into_loaded()
        .map_err(|(errors, _)| ConfigErrors(errors))
}

/// Loads and validates everything and reports all errors and warnings without deciding.
pub fn inspect(
    workdir: &Path,
    families: &[&dyn Descriptor],
    env: &dyn Env,
    probe: &dyn HostProbe,
) -> Report {
    inspect_confd(workdir, &confd_dir(workdir), families, env, probe)
}

/// [`inspect`] with the config files in `confd` instead of `<workdir>/conf.d`
/// (`datakit check --config --config-dir DIR`); paths in them still resolve against `workdir`.
pub fn inspect_confd(
    workdir: &Path,
    confd: &Path,
    families: &[&dyn Descriptor],
    env: &dyn Env,
    probe: &dyn HostProbe,
) -> Report {
    let mut sink = Sink::default();
    let main_file = confd.join(MAIN_CONF_NAME);

    let text = match std::fs::read(&main_file) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => Some(t),
            Err(e) => {
                sink.error(
                    &main_file,
                    "",
                    format!("not UTF-8 text ({e}); save the file as UTF-8"),
                );
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(file = %main_file.display(), "no datakit.conf; using the built-in sample");
            Some(MAIN_CONF_SAMPLE.to_string())
        }
        Err(e) => {
            sink.error(&main_file, "", format!("cannot read the file: {e}"));
            None
        }
    };
    let mut main = match text {
        Some(t) => MainConfig::decode(&t, &main_file, &mut sink),
        None => MainConfig::default(),
    };
    main.resolve(workdir, &main_file, env, probe, &mut sink);

    let defaults = Defaults::from_list(&main.default_enabled_inputs);
    let files = confd::find_conf_files(confd, &mut sink);
    let mut loader = Loader::new(families, env, &defaults);
    loader.load_files(&files, &mut sink);
    loader.load_default_samples(&main_file, &mut sink);
    loader.report_disabled(&main_file, &mut sink);

    check_listener_clashes(&loader.instances, &main, &main_file, &mut sink);
    check_route_clashes(&loader.instances, &mut sink);
    let listeners = listener_origins(&loader.instances, &main, &main_file);
    let plan = build_plan(loader.instances);
    add_lines(&mut sink);
    // Each file's problems in the order of its lines (the file order is the load order).
    for list in [&mut sink.errors, &mut sink.warnings] {
        let first_seen: Vec<PathBuf> = list.iter().fold(Vec::new(), |mut files, d| {
            if !files.contains(&d.file) {
                files.push(d.file.clone());
            }
            files
        });
        list.sort_by_key(|d| {
            let file = first_seen.iter().position(|f| *f == d.file);
            (file, d.line.unwrap_or(0))
        });
    }

    Report {
        main,
        plan,
        errors: sink.errors,
        warnings: sink.warnings,
        listeners,
    }
}

/// Adds the line of its key to every diagnostic whose file can be read and has the key.
fn add_lines(sink: &mut Sink) {
    let files: BTreeSet<PathBuf> = sink
        .errors
        .iter()
        .chain(&sink.warnings)
        .filter(|d| !d.key.is_empty())
        .map(|d| d.file.clone())
        .collect();
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        diag::add_lines(&mut sink.errors, &file, text);
        diag::add_lines(&mut sink.warnings, &file, text);
    }
}

/// Every socket the config asks for, with the file and key that asks (for `check`'s port probe).
fn listener_origins(
    instances: &[Instance],
    main: &MainConfig,
    main_file: &Path,
) -> Vec<ListenerOrigin> {
    let mut out = Vec::new();
    if let Ok(addr) = ListenAddr::parse(&main.http_api.listen) {
        let kind = match addr {
            ListenAddr::Unix(_) => dk_proto::rpc::ListenerKind::UnixStream,
            ListenAddr::Tcp { .. } => dk_proto::rpc::ListenerKind::Tcp,
        };
        out.push(ListenerOrigin {
            spec: ListenSpec::new(main.http_api.listen.trim(), kind),
            file: main_file.to_path_buf(),
            key: "http_api.listen".into(),
        });
    }
    for inst in instances {
        for l in &inst.listeners {
            out.push(ListenerOrigin {
                spec: l.clone(),
                file: inst.file.clone(),
                key: inst.key.clone(),
            });
        }
    }
    out
}

/// Writes `conf.d/datakit.conf` from the built-in sample if it does not exist (first start on
/// a fresh directory). Returns whether it wrote the file.
///
/// # Errors
/// Creating `conf.d` or writing the file failed.
pub fn ensure_main_conf(workdir: &Path) -> std::io::Result<bool> {
    let path = main_conf_path(workdir);
    if path.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(confd_dir(workdir))?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(MAIN_CONF_SAMPLE.as_bytes())?;
            f.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Two instances (or an instance and `[http_api]`) that cannot bind the same socket.
fn check_listener_clashes(
    instances: &[Instance],
    main: &MainConfig,
    main_file: &Path,
    sink: &mut Sink,
) {
    use addr::Endpoint;
    let mut claimed: Vec<(Endpoint, String, PathBuf, String)> = Vec::new();
    if let Ok(addr) = main.http_api.listen_addr() {
        claimed.push((
            Endpoint::of_http(&addr),
            main.http_api.listen.clone(),
            main_file.to_path_buf(),
            "http_api.listen".into(),
        ));
    }
    if !main.http_api.listen_socket.is_empty() {
        claimed.push((
            Endpoint::Unix(main.http_api.listen_socket.clone()),
            main.http_api.listen_socket.clone(),
            main_file.to_path_buf(),
            "http_api.listen_socket".into(),
        ));
    }
    for inst in instances {
        for l in &inst.listeners {
            let ep = Endpoint::of(&l.address, l.kind);
            if let Some((_, addr0, file0, key0)) = claimed.iter().find(|(e, ..)| e.clashes(&ep)) {
                sink.error(
                    &inst.file,
                    inst.key.clone(),
                    format!(
                        "listen address {:?} is also claimed by {} ({key0} = {addr0:?}); give each one its own address",
                        l.address,
                        file0.display()
                    ),
                );
            }
            claimed.push((ep, l.address.clone(), inst.file.clone(), inst.key.clone()));
        }
    }
}

/// Two instances serving the same route on the API port, a route shadowing one of the API's
/// own, or a path that is not absolute.
fn check_route_clashes(instances: &[Instance], sink: &mut Sink) {
    let mut claimed: Vec<(&dk_proto::family::RoutePath, &Path, &str)> = Vec::new();
    for inst in instances {
        for r in &inst.routes {
            if !r.path.starts_with('/') || r.path.contains(['?', '#', ' ']) {
                sink.error(
                    &inst.file,
                    inst.key.clone(),
                    format!(
                        "route {r} is not a plain absolute path; write it like \"/otel/v1/traces\""
                    ),
                );
                continue;
            }
            if let Some(own) = dk_proto::family::shadowed_api_path(&r.path) {
                sink.error(
                    &inst.file,
                    inst.key.clone(),
                    format!("route {r} would shadow the API's own {own}; choose another path"),
                );
                continue;
            }
            if let Some((_, file0, key0)) = claimed.iter().find(|(c, ..)| *c == r) {
                sink.error(
                    &inst.file,
                    inst.key.clone(),
                    format!(
                        "route {r} is also served by {} ({key0}); give each input its own path",
                        file0.display()
                    ),
                );
                continue;
            }
            claimed.push((r, &inst.file, &inst.key));
        }
    }
}

fn build_plan(instances: Vec<Instance>) -> Plan {
    let mut families: BTreeMap<String, FamilyPlan> = BTreeMap::new();
    for inst in instances {
        let fp = families
            .entry(inst.family.to_string())
            .or_insert_with(|| FamilyPlan {
                inputs: Vec::new(),
                listeners: Vec::new(),
                routes: Vec::new(),
                fingerprint: 0,
            });
        fp.inputs.push(inst.spec);
        fp.listeners.extend(inst.listeners);
        fp.routes.extend(inst.routes);
    }
    for fp in families.values_mut() {
        fp.fingerprint = fingerprint(&fp.inputs, &fp.listeners);
    }
    Plan { families }
}

/// FNV-1a over the inputs' names and TOML and the listeners: the same on every run and build.
fn fingerprint(inputs: &[InputSpec], listeners: &[ListenSpec]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for i in inputs {
        feed(i.name.as_bytes());
        feed(i.toml.as_bytes());
    }
    feed(b"listeners");
    for l in listeners {
        feed(l.address.as_bytes());
        feed(format!("{:?} {} {}", l.kind, l.sockets, l.optional).as_bytes());
    }
    h
}

#[cfg(test)]
mod tests;
