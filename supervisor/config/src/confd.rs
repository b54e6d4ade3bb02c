//! `conf.d`: finding the input files, reading their `[[inputs.NAME]]` instances, and
//! validating each with the family that serves it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use dk_proto::family::{Descriptor, ListenSpec};
use dk_proto::rpc::InputSpec;

use crate::diag::{Sink, toml_syntax_message};
use crate::env::{Env, substitute};
use crate::known_inputs::is_datakit_input;

/// One input instance ready for the plan.
#[derive(Clone, Debug)]
pub(crate) struct Instance {
    pub(crate) family: &'static str,
    pub(crate) spec: InputSpec,
    pub(crate) listeners: Vec<ListenSpec>,
    /// The routes it serves on the API port.
    pub(crate) routes: Vec<dk_proto::family::RoutePath>,
    /// Where it came from, for messages (`file`, `inputs.statsd[0]`).
    pub(crate) file: PathBuf,
    pub(crate) key: String,
}

/// Every `*.conf` under `confd`, sorted: recursive, following symlinks, skipping hidden
/// entries (`.git`, Kubernetes' `..data`), the top-level `samples/` and `datakit.conf`.
pub(crate) fn find_conf_files(confd: &Path, sink: &mut Sink) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut seen_dirs = HashSet::new();
    walk(confd, confd, &mut out, &mut seen_dirs, sink);
    out.sort();
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut HashSet<PathBuf>,
    sink: &mut Sink,
) {
    // Symlinked directories may loop; visit each real directory once.
    if let Ok(real) = dir.canonicalize()
        && !seen.insert(real)
    {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            if dir != root || e.kind() != std::io::ErrorKind::NotFound {
                sink.error(dir, "", format!("cannot read directory: {e}"));
            }
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // a dangling symlink
        };
        if meta.is_dir() {
            if dir == root && name == "samples" {
                continue;
            }
            walk(root, &path, out, seen, sink);
        } else if meta.is_file()
            && name.ends_with(".conf")
            && !(dir == root && name == crate::MAIN_CONF_NAME)
        {
            out.push(path);
        }
    }
}

/// How `default_enabled_inputs` enables and disables inputs.
#[derive(Debug, Default)]
pub(crate) struct Defaults {
    /// `(index in the list, name)`.
    pub(crate) enabled: Vec<(usize, String)>,
    pub(crate) disabled: BTreeSet<String>,
}

impl Defaults {
    pub(crate) fn from_list(list: &[String]) -> Defaults {
        let mut d = Defaults::default();
        for (idx, item) in list.iter().enumerate() {
            let item = item.trim();
            if let Some(name) = item.strip_prefix('-') {
                if !name.is_empty() {
                    d.disabled.insert(name.to_string());
                }
            } else if !item.is_empty() && !d.enabled.iter().any(|(_, e)| e == item) {
                d.enabled.push((idx, item.to_string()));
            }
        }
        d
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Reads the instances of every file and of the default-enabled samples.
pub(crate) struct Loader<'a> {
    families: &'a [&'a dyn Descriptor],
    env: &'a dyn Env,
    defaults: &'a Defaults,
    /// Instances of disabled inputs skipped, per input name.
    disabled_skipped: BTreeMap<String, usize>,
    /// Names already warned about, per file (one warning per name and file).
    warned: HashSet<(PathBuf, String)>,
    /// Input names that appear in some `conf.d` file.
    in_files: HashSet<String>,
    pub(crate) instances: Vec<Instance>,
}

impl<'a> Loader<'a> {
    pub(crate) fn new(
        families: &'a [&'a dyn Descriptor],
        env: &'a dyn Env,
        defaults: &'a Defaults,
    ) -> Self {
        Loader {
            families,
            env,
            defaults,
            disabled_skipped: BTreeMap::new(),
            warned: HashSet::new(),
            in_files: HashSet::new(),
            instances: Vec::new(),
        }
    }

    fn family_of(&self, input: &str) -> Option<&'a dyn Descriptor> {
        self.families
            .iter()
            .copied()
            .find(|f| f.inputs().contains(&input))
    }

    /// Loads every file (identical contents once).
    pub(crate) fn load_files(&mut self, files: &[PathBuf], sink: &mut Sink) {
        let mut by_content: HashMap<Vec<u8>, PathBuf> = HashMap::new();
        for path in files {
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    sink.error(path, "", format!("cannot read the file: {e}"));
                    continue;
                }
            };
            if let Some(first) = by_content.get(&bytes) {
                sink.warn(
                    path,
                    "",
                    format!(
                        "same contents as {}; loaded once (as Datakit does): delete one of them",
                        first.display()
                    ),
                );
                continue;
            }
            by_content.insert(bytes.clone(), path.clone());
            let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
            let text = match std::str::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    sink.error(
                        path,
                        "",
                        format!("not UTF-8 text ({e}); save the file as UTF-8"),
                    );
                    continue;
                }
            };
            let text = substitute(text, self.env);
            self.load_text(&text, path, None, sink);
        }
    }

    /// Records that a file configures `name`.
    fn seen_in_file(&mut self, name: &str, only: Option<&str>) {
        if only.is_none() {
            self.in_files.insert(name.to_string());
        }
    }

    /// Uses the family sample of every default-enabled input no file configures.
    pub(crate) fn load_default_samples(&mut self, main_file: &Path, sink: &mut Sink) {
        let enabled = self.defaults.enabled.clone();
        for (idx, name) in &enabled {
            // Configured in conf.d (served or not, valid or not): the sample is not needed.
            if self.defaults.disabled.contains(name) || self.in_files.contains(name) {
                continue;
            }
            let key = format!("default_enabled_inputs[{idx}]");
            let Some(family) = self.family_of(name) else {
                self.warn_unserved(name, main_file, &key, sink);
                continue;
            };
            let Some((_, sample)) = family.samples().iter().find(|(n, _)| n == name) else {
                sink.warn(
                    main_file,
                    key,
                    format!("input {name} has no built-in sample in this build; add conf.d/{name}.conf to enable it"),
                );
                continue;
            };
            let pseudo = PathBuf::from(format!(
                "<built-in sample of {name} (default_enabled_inputs)>"
            ));
            self.load_text(sample, &pseudo, Some(name), sink);
        }
    }

    /// Parses one file's text and adds its instances (only those of `only`, when given).
    fn load_text(&mut self, text: &str, file: &Path, only: Option<&str>, sink: &mut Sink) {
        let table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                sink.error(file, "", toml_syntax_message(text, &e));
                return;
            }
        };
        for (top, value) in table {
            if top != "inputs" {
                sink.warn(
                    file,
                    top.as_str(),
                    "not an input table ([[inputs.NAME]]); ignored",
                );
                continue;
            }
            let toml::Value::Table(inputs) = value else {
                sink.error(
                    file,
                    "inputs",
                    "must be a table: write [[inputs.NAME]] sections",
                );
                continue;
            };
            for (name, body) in inputs {
                if only.is_some_and(|o| o != name) {
                    continue;
                }
                self.seen_in_file(&name, only);
                let instances: Vec<(String, toml::Table)> = match body {
                    toml::Value::Table(t) => vec![(format!("inputs.{name}"), t)],
                    toml::Value::Array(items) => {
                        let mut v = Vec::with_capacity(items.len());
                        for (i, item) in items.into_iter().enumerate() {
                            match item {
                                toml::Value::Table(t) => v.push((format!("inputs.{name}[{i}]"), t)),
                                _ => sink.error(
                                    file,
                                    format!("inputs.{name}[{i}]"),
                                    "must be a table: write [[inputs.NAME]] sections",
                                ),
                            }
                        }
                        v
                    }
                    _ => {
                        sink.error(
                            file,
                            format!("inputs.{name}"),
                            "must be a table ([inputs.NAME]) or an array of tables ([[inputs.NAME]])",
                        );
                        continue;
                    }
                };
                self.add_instances(&name, instances, file, sink);
            }
        }
    }

    fn add_instances(
        &mut self,
        name: &str,
        instances: Vec<(String, toml::Table)>,
        file: &Path,
        sink: &mut Sink,
    ) {
        if instances.is_empty() {
            return;
        }
        if self.defaults.disabled.contains(name) {
            *self.disabled_skipped.entry(name.to_string()).or_default() += instances.len();
            return;
        }
        let Some(family) = self.family_of(name) else {
            self.warn_unserved(name, file, &format!("inputs.{name}"), sink);
            return;
        };
        for (key, table) in instances {
            let text = match toml::to_string(&table) {
                Ok(t) => t,
                Err(e) => {
                    sink.error(file, key, format!("cannot re-encode the table: {e}"));
                    continue;
                }
            };
            // A family's validator is code of ours that may have a bug: a panic in it is a
            // config problem of this instance, never the end of the supervisor.
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (
                    family.validate(name, &text),
                    family.listeners(name, &text),
                    family.routes(name, &text),
                )
            }));
            let (problems, listeners, routes) = match checked {
                Ok(v) => v,
                Err(payload) => {
                    sink.error(
                        file,
                        key,
                        format!(
                            "input {name} (family {}): validation panicked: {}; this is a bug, please report it",
                            family.name(),
                            panic_message(payload.as_ref())
                        ),
                    );
                    continue;
                }
            };
            for p in &problems {
                let at = dk_proto::config::join(&key, &p.key);
                if p.is_warning() {
                    sink.warn(file, at, p.message.clone());
                } else {
                    sink.error(file, at, p.message.clone());
                }
            }
            self.instances.push(Instance {
                family: family.name(),
                spec: InputSpec {
                    name: name.to_string(),
                    source: file.to_string_lossy().into_owned(),
                    toml: text,
                },
                listeners,
                routes,
                file: file.to_path_buf(),
                key,
            });
        }
    }

    fn warn_unserved(&mut self, name: &str, file: &Path, key: &str, sink: &mut Sink) {
        if !self.warned.insert((file.to_path_buf(), name.to_string())) {
            return;
        }
        if is_datakit_input(name) {
            sink.warn(
                file,
                key,
                format!(
                    "input {name} is a Datakit input this build does not serve yet; it is ignored"
                ),
            );
        } else {
            sink.warn(
                file,
                key,
                format!("unknown input {name:?}: neither this build nor Datakit 1.84 has it; it is ignored (check the spelling)"),
            );
        }
    }

    /// Warns once per disabled input that had `conf.d` instances.
    pub(crate) fn report_disabled(&self, main_file: &Path, sink: &mut Sink) {
        for (name, n) in &self.disabled_skipped {
            sink.warn(
                main_file,
                "default_enabled_inputs",
                format!(
                    "input {name} is disabled by \"-{name}\"; {n} instance(s) in conf.d are ignored"
                ),
            );
        }
    }
}
