//! Tests of loading whole work directories with fake families.

use std::collections::HashMap;
use std::path::Path;

use dk_proto::config::ConfigProblem;
use dk_proto::family::{Descriptor, ListenSpec};
use dk_proto::rpc::ListenerKind;

use super::*;

/// Serves cpu, mem and disk; cpu and mem have samples. `interval` must be a duration and
/// `percpu` a bool.
struct FakeHost;

impl Descriptor for FakeHost {
    fn name(&self) -> &'static str {
        "host"
    }
    fn inputs(&self) -> &'static [&'static str] {
        &["cpu", "mem", "disk"]
    }
    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (
                "cpu",
                "[[inputs.cpu]]\n  interval = \"10s\"\n  percpu = false\n",
            ),
            ("mem", "[[inputs.mem]]\n  interval = \"10s\"\n"),
        ]
    }
    fn validate(&self, _input: &str, toml_text: &str) -> Vec<ConfigProblem> {
        let Ok(t) = toml::from_str::<toml::Table>(toml_text) else {
            return vec![ConfigProblem::new("", "not a table")];
        };
        let mut out = Vec::new();
        match t.get("interval") {
            Some(toml::Value::String(s)) if dk_proto::duration::parse(s).is_ok() => {}
            None => {}
            Some(_) => out.push(ConfigProblem::new(
                "interval",
                "must be a duration like \"10s\"",
            )),
        }
        if t.get("percpu").is_some_and(|v| !v.is_bool()) {
            out.push(ConfigProblem::new("percpu", "must be true or false"));
        }
        out
    }
}

/// Serves statsd; claims a UDP listener on `service_address`, which must be host:port.
struct FakeStatsd;

impl Descriptor for FakeStatsd {
    fn name(&self) -> &'static str {
        "statsd"
    }
    fn inputs(&self) -> &'static [&'static str] {
        &["statsd"]
    }
    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "statsd",
            "[[inputs.statsd]]\n  service_address = \":8125\"\n",
        )]
    }
    fn validate(&self, _input: &str, toml_text: &str) -> Vec<ConfigProblem> {
        let t: toml::Table = toml::from_str(toml_text).unwrap_or_default();
        match t.get("service_address").and_then(toml::Value::as_str) {
            Some(a) if addr::split_host_port(a).is_some() => Vec::new(),
            _ => vec![ConfigProblem::new(
                "service_address",
                "must be host:port like \":8125\"",
            )],
        }
    }
    fn listeners(&self, _input: &str, toml_text: &str) -> Vec<ListenSpec> {
        let t: toml::Table = toml::from_str(toml_text).unwrap_or_default();
        t.get("service_address")
            .and_then(toml::Value::as_str)
            .map(|a| ListenSpec::new(a.to_string(), ListenerKind::Udp))
            .into_iter()
            .collect()
    }
}

struct FixedProbe;

impl HostProbe for FixedProbe {
    fn os_hostname(&self) -> Option<String> {
        Some("os-host".into())
    }
    fn local_ip(&self) -> Option<String> {
        Some("10.1.2.3".into())
    }
}

const FAMILIES: &[&dyn Descriptor] = &[&FakeHost, &FakeStatsd];

fn no_env() -> MapEnv {
    MapEnv(HashMap::new())
}

fn env(pairs: &[(&str, &str)]) -> MapEnv {
    MapEnv(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// A workdir with `conf.d/<rel>` files.
fn workdir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("conf.d")).expect("mkdir conf.d");
    for (rel, text) in files {
        write(dir.path(), rel, text.as_bytes());
    }
    dir
}

fn write(workdir: &Path, rel: &str, bytes: &[u8]) {
    let p = workdir.join("conf.d").join(rel);
    std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
    std::fs::write(p, bytes).expect("write");
}

/// A datakit.conf that enables nothing by default.
const QUIET_MAIN: &str = "default_enabled_inputs = []\n";

fn load_ok(dir: &Path, e: &MapEnv) -> Loaded {
    match load_with(dir, FAMILIES, e, &FixedProbe) {
        Ok(l) => l,
        Err(errs) => panic!("expected no errors, got:\n{errs}"),
    }
}

fn load_err(dir: &Path) -> Vec<Diagnostic> {
    match load_with(dir, FAMILIES, &no_env(), &FixedProbe) {
        Ok(_) => panic!("expected errors"),
        Err(ConfigErrors(d)) => d,
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn input_names(plan: &Plan, family: &str) -> Vec<String> {
    plan.families
        .get(family)
        .map(|f| f.inputs.iter().map(|i| i.name.clone()).collect())
        .unwrap_or_default()
}

fn has(diags: &[Diagnostic], file_suffix: &str, key: &str, needle: &str) -> bool {
    diags.iter().any(|d| {
        d.file.to_string_lossy().ends_with(file_suffix)
            && d.key == key
            && d.message.contains(needle)
    })
}

#[test]
fn loads_datakit_defaults_when_there_are_no_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loaded = load_ok(dir.path(), &no_env());
    let m = &loaded.main;
    assert_eq!(m.http_api.listen, "localhost:9529");
    assert_eq!(m.http_api.timeout, std::time::Duration::from_secs(30));
    assert!(m.dataway.urls.is_empty());
    assert_eq!(m.dataway.encoding(), ContentEncoding::Protobuf);
    assert_eq!(m.dataway.max_retry_count, 1);
    assert_eq!(m.dataway.max_idle_conns_per_host, 64);
    assert_eq!(m.io.max_cache_count, 1000);
    assert_eq!(m.io.flush_interval, std::time::Duration::from_secs(10));
    assert_eq!(m.election.namespace, "default");
    assert_eq!(m.hostname(), "os-host");
    assert_eq!(
        m.wal_path(),
        dir.path().join("cache").join("dw-wal"),
        "an empty WAL path is under the workdir"
    );
    let listed: Vec<&str> = m
        .default_enabled_inputs
        .iter()
        .map(String::as_str)
        .collect();
    // Datakit's whole list: every default input is served.
    assert_eq!(listed, DATAKIT_DEFAULT_ENABLED_INPUTS);
    // cpu and mem come from the samples; disk has none; the rest are not served.
    assert_eq!(input_names(&loaded.plan, "host"), ["cpu", "mem"]);
    assert!(!loaded.plan.families.contains_key("statsd"));
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "default_enabled_inputs[1]",
        "no built-in sample"
    ));
    assert!(
        !loaded.warnings.iter().any(|w| w.key == "enable_pprof"),
        "{:#?}",
        loaded.warnings
    );
    assert!(!m.ulimit_set, "the sample leaves ulimit to its default");
}

#[test]
fn a_datakit_conf_listing_an_unserved_default_input_warns_about_it() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = [\"cpu\", \"host_healthcheck\"]\n",
    )]);
    let loaded = load_ok(dir.path(), &no_env());
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "default_enabled_inputs[1]",
        "input host_healthcheck is a Datakit input this build does not serve yet; it is ignored"
    ));
}

#[test]
fn enable_pprof_true_warns_naming_the_key_and_ulimit_set_is_recorded() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\nenable_pprof = true\nulimit = 1000\n",
    )]);
    let loaded = load_ok(dir.path(), &no_env());
    let w = loaded
        .warnings
        .iter()
        .find(|w| w.key == "enable_pprof")
        .expect("a warning about enable_pprof");
    assert!(w.message.contains("pprof is not served"), "{w}");
    assert_eq!(w.line, Some(2), "{w}");
    assert!(
        w.to_string().contains("datakit.conf:2: enable_pprof: "),
        "{w}"
    );
    assert!(loaded.main.ulimit_set);
    assert_eq!(loaded.main.ulimit, 1000);

    let quiet = workdir(&[("datakit.conf", "default_enabled_inputs = []\n")]);
    let loaded = load_ok(quiet.path(), &no_env());
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    assert!(!loaded.main.ulimit_set);
}

#[test]
fn dataway_ntp_keys_are_read_and_clamped_to_datakits_minimums_with_a_warning() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[dataway.ntp]\nenable = false\ninterval = \"2m\"\ndiff = \"45s\"\n",
    )]);
    let ntp = load_ok(dir.path(), &no_env()).main.dataway.ntp;
    assert!(!ntp.enable);
    assert_eq!(ntp.interval, std::time::Duration::from_secs(120));
    assert_eq!(ntp.diff, std::time::Duration::from_secs(45));

    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[dataway.ntp]\ninterval = \"10s\"\ndiff = \"1s\"\n",
    )]);
    let loaded = load_ok(dir.path(), &no_env());
    let ntp = &loaded.main.dataway.ntp;
    assert!(ntp.enable, "on by default, as in Datakit");
    assert_eq!(ntp.interval, std::time::Duration::from_secs(60));
    assert_eq!(ntp.diff, std::time::Duration::from_secs(5));
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "dataway.ntp.interval",
        "1m minimum"
    ));
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "dataway.ntp.diff",
        "5s minimum"
    ));
}

#[test]
fn errors_in_conf_d_files_carry_the_line_of_their_key() {
    let dir = workdir(&[
        (
            "datakit.conf",
            "default_enabled_inputs = []\n[io]\n  flush_interval = \"soon\"\n",
        ),
        (
            "a.conf",
            "# cpu\n[[inputs.cpu]]\n  interval = \"10s\"\n[[inputs.cpu]]\n  percpu = \"yes\"\n",
        ),
    ]);
    let errs = load_err(dir.path());
    let line_of = |suffix: &str, key: &str| {
        errs.iter()
            .find(|d| d.file.to_string_lossy().ends_with(suffix) && d.key == key)
            .map(|d| d.line)
    };
    assert_eq!(
        line_of("datakit.conf", "io.flush_interval"),
        Some(Some(3)),
        "{errs:#?}"
    );
    assert_eq!(
        line_of("a.conf", "inputs.cpu[1].percpu"),
        Some(Some(5)),
        "{errs:#?}"
    );
}

#[test]
fn a_missing_work_dir_or_conf_d_is_an_error_and_a_missing_datakit_conf_a_warning() {
    let (errors, _) = workdir_problems(Path::new("/nonexistent/datakit"));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.contains("work dir does not exist"),
        "{}",
        errors[0]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (errors, _) = workdir_problems(dir.path());
    assert!(
        errors[0].message.contains("conf.d does not exist"),
        "{}",
        errors[0]
    );
    std::fs::create_dir(dir.path().join("conf.d")).expect("mkdir");
    let (errors, warnings) = workdir_problems(dir.path());
    assert!(errors.is_empty());
    assert!(warnings[0].message.contains("datakit.conf is missing"));
    assert!(ensure_main_conf(dir.path()).expect("writes"));
    let (errors, warnings) = workdir_problems(dir.path());
    assert!(errors.is_empty() && warnings.is_empty());
}

#[test]
fn reports_every_mistake_in_every_file_with_file_and_key() {
    let dir = workdir(&[
        (
            "datakit.conf",
            r#"
default_enabled_inputs = []
ulimit = "lots"
[http_api]
  listen = "localhost"
[dataway]
  urls = ["ftp://openway.example.com?token=tkn_1"]
  content_encoding = "v3"
[io]
  flush_interval = "10 seconds"
"#,
        ),
        (
            "a.conf",
            "[[inputs.cpu]]\n  interval = 10\n  percpu = \"yes\"\n",
        ),
        ("sub/b.conf", "[[inputs.mem]]\n  interval = \"10s\n"),
        (
            "c.conf",
            "[[inputs.statsd]]\n  service_address = \"8125\"\n",
        ),
    ]);
    let errs = load_err(dir.path());
    assert!(
        has(&errs, "datakit.conf", "ulimit", "invalid type"),
        "{errs:#?}"
    );
    assert!(has(
        &errs,
        "datakit.conf",
        "http_api.listen",
        "not host:port"
    ));
    assert!(has(
        &errs,
        "datakit.conf",
        "dataway.urls[0]",
        "scheme \"ftp\""
    ));
    assert!(has(
        &errs,
        "datakit.conf",
        "dataway.content_encoding",
        "unknown content encoding"
    ));
    assert!(has(
        &errs,
        "datakit.conf",
        "io.flush_interval",
        "invalid duration"
    ));
    assert!(has(
        &errs,
        "a.conf",
        "inputs.cpu[0].interval",
        "must be a duration"
    ));
    assert!(has(
        &errs,
        "a.conf",
        "inputs.cpu[0].percpu",
        "true or false"
    ));
    assert!(has(
        &errs,
        "sub/b.conf",
        "",
        "TOML syntax error at line 2, column"
    ));
    assert!(has(
        &errs,
        "c.conf",
        "inputs.statsd[0].service_address",
        "host:port"
    ));
    assert_eq!(errs.len(), 9, "{errs:#?}");
}

#[test]
fn strips_bom_and_substitutes_environment_variables() {
    let dir = workdir(&[("datakit.conf", QUIET_MAIN)]);
    write(
        dir.path(),
        "statsd.conf",
        b"\xef\xbb\xbf[[inputs.statsd]]\n  service_address = \"${STATSD_ADDR}\"\n  tag = \"$QUOTED\"\n  keep = \"$UNSET_VAR\"\n",
    );
    let e = env(&[("STATSD_ADDR", ":9125"), ("QUOTED", r#"a"b"#)]);
    let loaded = load_ok(dir.path(), &e);
    let statsd = &loaded.plan.families["statsd"];
    let t: toml::Table = toml::from_str(&statsd.inputs[0].toml).expect("valid");
    assert_eq!(t["service_address"].as_str(), Some(":9125"));
    assert_eq!(t["tag"].as_str(), Some(r#"a"b"#));
    assert_eq!(t["keep"].as_str(), Some("$UNSET_VAR"));
    assert_eq!(
        statsd.listeners,
        [ListenSpec::new(":9125", ListenerKind::Udp)]
    );
}

#[test]
fn loads_files_with_identical_contents_once() {
    let cpu = "[[inputs.cpu]]\n  interval = \"5s\"\n";
    let dir = workdir(&[
        ("datakit.conf", QUIET_MAIN),
        ("a/cpu.conf", cpu),
        ("b/cpu.conf", cpu),
    ]);
    let loaded = load_ok(dir.path(), &no_env());
    assert_eq!(input_names(&loaded.plan, "host"), ["cpu"]);
    assert!(has(&loaded.warnings, "b/cpu.conf", "", "same contents as"));
}

#[test]
fn skips_samples_hidden_entries_and_other_extensions() {
    let cpu = "[[inputs.cpu]]\n  interval = \"5s\"\n";
    let dir = workdir(&[
        ("datakit.conf", QUIET_MAIN),
        ("samples/cpu.conf", cpu),
        (".git/cpu.conf", cpu),
        (".hidden.conf", cpu),
        ("cpu.conf.sample", cpu),
        ("host/mem.conf", "[inputs.mem]\n  interval = \"5s\"\n"),
    ]);
    let loaded = load_ok(dir.path(), &no_env());
    assert_eq!(
        input_names(&loaded.plan, "host"),
        ["mem"],
        "single [inputs.X] tables count too"
    );
}

#[test]
fn warns_about_unknown_and_not_yet_served_inputs() {
    let dir = workdir(&[
        ("datakit.conf", QUIET_MAIN),
        (
            "x.conf",
            "[[inputs.mysql]]\n  host = \"db\"\n[[inputs.cpux]]\n[[inputs.cpu]]\n[other]\n  a = 1\n",
        ),
    ]);
    let loaded = load_ok(dir.path(), &no_env());
    assert!(has(
        &loaded.warnings,
        "x.conf",
        "inputs.mysql",
        "input mysql is a Datakit input this build does not serve yet; it is ignored"
    ));
    assert!(has(
        &loaded.warnings,
        "x.conf",
        "inputs.cpux",
        "unknown input"
    ));
    assert!(has(
        &loaded.warnings,
        "x.conf",
        "other",
        "not an input table"
    ));
    assert_eq!(input_names(&loaded.plan, "host"), ["cpu"]);
}

#[test]
fn default_enabled_inputs_use_samples_and_minus_disables() {
    let dir = workdir(&[
        (
            "datakit.conf",
            "default_enabled_inputs = [\"cpu\", \"mem\", \"statsd\", \"-cpu\"]\n",
        ),
        ("mem.conf", "[[inputs.mem]]\n  interval = \"1m\"\n"),
        ("cpu.conf", "[[inputs.cpu]]\n  interval = \"1m\"\n"),
    ]);
    let loaded = load_ok(dir.path(), &no_env());
    let host = &loaded.plan.families["host"];
    // cpu is disabled (its conf.d file too); mem comes from conf.d, not from the sample.
    assert_eq!(input_names(&loaded.plan, "host"), ["mem"]);
    assert!(host.inputs[0].toml.contains("1m"));
    assert!(host.inputs[0].source.ends_with("mem.conf"));
    // statsd has no file, so its sample is used.
    let statsd = &loaded.plan.families["statsd"];
    assert_eq!(statsd.inputs[0].name, "statsd");
    assert!(
        statsd.inputs[0]
            .source
            .contains("built-in sample of statsd")
    );
    assert_eq!(statsd.listeners[0].address, ":8125");
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "default_enabled_inputs",
        "1 instance(s)"
    ));
}

#[test]
fn two_instances_on_one_address_is_an_error_naming_both_files() {
    let dir = workdir(&[
        ("datakit.conf", QUIET_MAIN),
        (
            "a.conf",
            "[[inputs.statsd]]\n  service_address = \"0.0.0.0:8125\"\n",
        ),
        (
            "b.conf",
            "[[inputs.statsd]]\n  service_address = \"127.0.0.1:8125\"\n",
        ),
        (
            "c.conf",
            "[[inputs.statsd]]\n  service_address = \":8126\"\n",
        ),
    ]);
    let errs = load_err(dir.path());
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = &errs[0];
    assert!(e.file.ends_with("b.conf"));
    assert_eq!(e.key, "inputs.statsd[0]");
    assert!(e.message.contains("a.conf"), "{}", e.message);
}

/// Claims one fixed listener for every instance of input `claims`.
struct Claims(&'static str, ListenerKind);

impl Descriptor for Claims {
    fn name(&self) -> &'static str {
        "claims"
    }
    fn inputs(&self) -> &'static [&'static str] {
        &["claims"]
    }
    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    fn validate(&self, _: &str, _: &str) -> Vec<ConfigProblem> {
        Vec::new()
    }
    fn listeners(&self, _: &str, _: &str) -> Vec<ListenSpec> {
        vec![ListenSpec::new(self.0.to_string(), self.1)]
    }
}

#[test]
fn an_input_on_the_http_api_address_is_an_error() {
    let dir = workdir(&[
        (
            "datakit.conf",
            "default_enabled_inputs = []\n[http_api]\n  listen = \"0.0.0.0:9600\"\n  listen_socket = \"/run/x.sock\"\n",
        ),
        ("a.conf", "[[inputs.claims]]\n"),
    ]);
    let check = |claims: Claims| load_with(dir.path(), &[&claims], &no_env(), &FixedProbe);

    // UDP on the API's TCP port is fine.
    assert!(check(Claims("udp://:9600", ListenerKind::Udp)).is_ok());
    for claim in [
        Claims("tcp://localhost:9600", ListenerKind::Tcp),
        Claims("unix:///run/x.sock", ListenerKind::UnixStream),
    ] {
        let errs = check(claim).expect_err("a clash").0;
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].file.ends_with("a.conf"));
        assert_eq!(errs[0].key, "inputs.claims[0]");
        assert!(
            errs[0].message.contains("datakit.conf (http_api.listen"),
            "{}",
            errs[0].message
        );
    }
}

/// Serves the route its instance's `path` key names, on the API port.
struct Routed;

impl Descriptor for Routed {
    fn name(&self) -> &'static str {
        "routed"
    }
    fn inputs(&self) -> &'static [&'static str] {
        &["routed"]
    }
    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    fn validate(&self, _: &str, _: &str) -> Vec<ConfigProblem> {
        Vec::new()
    }
    fn routes(&self, _: &str, toml_text: &str) -> Vec<dk_proto::family::RoutePath> {
        let t: toml::Table = toml::from_str(toml_text).unwrap_or_default();
        t.get("path")
            .and_then(toml::Value::as_str)
            .map(|p| dk_proto::family::RoutePath::new(dk_proto::family::Method::Post, p))
            .into_iter()
            .collect()
    }
}

#[test]
fn routes_come_from_each_instance_and_a_clash_or_a_shadowed_api_path_is_an_error() {
    let ok = workdir(&[
        ("datakit.conf", QUIET_MAIN),
        (
            "a.conf",
            "[[inputs.routed]]\n  path = \"/otel/v1/traces\"\n[[inputs.routed]]\n  path = \"/ingest\"\n",
        ),
    ]);
    let loaded = load_with(ok.path(), &[&Routed], &no_env(), &FixedProbe).expect("no clash");
    let routes: Vec<String> = loaded.plan.families["routed"]
        .routes
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(routes, ["POST /otel/v1/traces", "POST /ingest"]);

    let bad = workdir(&[
        ("datakit.conf", QUIET_MAIN),
        ("a.conf", "[[inputs.routed]]\n  path = \"/ingest\"\n"),
        (
            "b.conf",
            "[[inputs.routed]]\n  path = \"/ingest\"\n[[inputs.routed]]\n  path = \"/v1/write/metric\"\n[[inputs.routed]]\n  path = \"ingest\"\n",
        ),
    ]);
    let errs = load_with(bad.path(), &[&Routed], &no_env(), &FixedProbe)
        .expect_err("clashes")
        .0;
    let got: Vec<(String, String)> = errs
        .iter()
        .map(|e| (e.key.clone(), e.message.clone()))
        .collect();
    assert_eq!(errs.len(), 3, "{got:#?}");
    assert!(errs.iter().all(|e| e.file.ends_with("b.conf")), "{errs:#?}");
    assert!(
        got[0].1.contains("also served by") && got[0].1.contains("a.conf"),
        "{got:#?}"
    );
    assert_eq!(got[1].0, "inputs.routed[1]");
    assert!(
        got[1].1.contains("shadow the API's own /v1/write/"),
        "{got:#?}"
    );
    assert!(got[2].1.contains("not a plain absolute path"), "{got:#?}");
}

#[test]
fn changed_families_sees_added_removed_and_changed_families_only() {
    let dir = workdir(&[
        ("datakit.conf", QUIET_MAIN),
        ("cpu.conf", "[[inputs.cpu]]\n  interval = \"10s\"\n"),
        (
            "statsd.conf",
            "[[inputs.statsd]]\n  service_address = \":8125\"\n",
        ),
        ("mysql.conf", "[[inputs.mysql]]\n  host = \"a\"\n"),
    ]);
    let p1 = load_ok(dir.path(), &no_env()).plan;

    // An unrelated file (an input no family serves) and a comment change nothing.
    write(
        dir.path(),
        "mysql.conf",
        b"[[inputs.mysql]]\n  host = \"b\"\n",
    );
    write(
        dir.path(),
        "cpu.conf",
        b"# a comment\n[[inputs.cpu]]\n  interval = \"10s\"\n",
    );
    let p2 = load_ok(dir.path(), &no_env()).plan;
    assert!(changed_families(&p1, &p2).is_empty());
    assert_eq!(p1, p2);

    // A changed value, a removed family.
    write(
        dir.path(),
        "cpu.conf",
        b"[[inputs.cpu]]\n  interval = \"20s\"\n",
    );
    std::fs::remove_file(dir.path().join("conf.d/statsd.conf")).expect("rm");
    let p3 = load_ok(dir.path(), &no_env()).plan;
    let changed: Vec<String> = changed_families(&p2, &p3).into_iter().collect();
    assert_eq!(changed, ["host", "statsd"]);

    // An added family.
    write(
        dir.path(),
        "statsd.conf",
        b"[[inputs.statsd]]\n  service_address = \":8125\"\n",
    );
    let p4 = load_ok(dir.path(), &no_env()).plan;
    let changed: Vec<String> = changed_families(&p3, &p4).into_iter().collect();
    assert_eq!(changed, ["statsd"]);
    assert_eq!(
        p4.families["statsd"].fingerprint,
        p1.families["statsd"].fingerprint
    );
}

#[test]
fn bad_durations_in_datakit_conf_name_their_keys() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[http_api]\n  timeout = \"30\"\n[dataway]\n  retry_delay = \"1 s\"\n  [dataway.wal]\n    fail_cache_clean_interval = \"5d\"\n",
    )]);
    let errs = load_err(dir.path());
    let keys: Vec<&str> = errs.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        keys,
        // In the order of their lines.
        [
            "http_api.timeout",
            "dataway.retry_delay",
            "dataway.wal.fail_cache_clean_interval"
        ]
    );
    assert!(errs.iter().all(|d| d.message.contains("invalid duration")));
}

#[test]
fn resolves_host_name_and_tag_placeholders() {
    let dir = workdir(&[(
        "datakit.conf",
        r#"
default_enabled_inputs = []
[global_host_tags]
  ip = "$datakit_ip"
  name = "__DATAKIT_HOSTNAME"
  id = "__datakit_uuid"
  team = "infra"
[global_tags]
  team = "legacy"
[election]
  enable = true
  enable_namespace_tag = true
  namespace = "ns1"
  [election.tags]
    cluster = "c1"
"#,
    )]);
    let loaded = load_ok(dir.path(), &env(&[("ENV_HOSTNAME", "env-host")]));
    let m = &loaded.main;
    assert_eq!(m.hostname(), "env-host");
    assert_eq!(
        m.host_tags(),
        pairs(&[
            ("host", "env-host"),
            ("id", "os-host"),
            ("ip", "10.1.2.3"),
            ("name", "env-host"),
            ("team", "legacy"),
        ])
    );
    let el = m.election_tags();
    assert_eq!(
        el,
        pairs(&[("cluster", "c1"), ("election_namespace", "ns1")])
    );
}

#[test]
fn environments_hostname_wins_and_election_off_means_host_tags() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[environments]\n  ENV_HOSTNAME = \"conf-host\"\n[global_host_tags]\n  host = \"other\"\n",
    )]);
    let loaded = load_ok(dir.path(), &env(&[("ENV_HOSTNAME", "env-host")]));
    assert_eq!(loaded.main.hostname(), "conf-host");
    assert_eq!(
        loaded.main.host_tags(),
        [("host".to_string(), "conf-host".to_string())]
    );
    assert_eq!(loaded.main.election_tags(), loaded.main.host_tags());
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "global_host_tags.host",
        "always the agent's host name"
    ));
}

#[test]
fn builtin_sample_parses_with_no_problems_and_matches_the_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(ensure_main_conf(dir.path()).expect("writes"));
    assert!(
        !ensure_main_conf(dir.path()).expect("exists"),
        "never overwrites"
    );
    let report = inspect(dir.path(), &[], &no_env(), &FixedProbe);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    // The only warnings are about the default inputs this (family-less) build does not serve.
    assert!(
        report
            .warnings
            .iter()
            .all(|w| w.key.starts_with("default_enabled_inputs[")),
        "{:#?}",
        report.warnings
    );

    // The sample differs from Datakit's code defaults only where this build serves nothing:
    // no pprof.
    let mut expected = MainConfig {
        default_enabled_inputs: DATAKIT_DEFAULT_ENABLED_INPUTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        enable_pprof: false,
        ..MainConfig::default()
    };
    let mut sink = Sink::default();
    let mut sample = MainConfig::decode(MAIN_CONF_SAMPLE, Path::new("sample"), &mut sink);
    assert!(
        sink.errors.is_empty() && sink.warnings.is_empty(),
        "{sink:#?}"
    );
    sample.global_host_tags.clear();
    expected.dataway.max_idle_conns_per_host = 64; // Datakit reads 0 as 64
    assert_eq!(sample, expected);
}

#[test]
fn accepts_and_ignores_other_datakit_tables_and_migrates_legacy_keys() {
    let dir = workdir(&[(
        "datakit.conf",
        r#"
default_enabled_inputs = []
http_listen = "0.0.0.0:9600"
datakit_user = "root"
[pipeline]
  ipdb_type = "iploc"
[dca]
  enable = false
[dk_upgrader]
  port = 9542
[point_pool]
  enable = false
[[confds]]
  backend = "etcdv3"
[dataway]
  timeout = "5s"
  typo_key = 1
[io]
  global_blocking = true
"#,
    )]);
    let loaded = load_ok(dir.path(), &no_env());
    let m = &loaded.main;
    assert_eq!(m.http_api.listen, "0.0.0.0:9600");
    assert_eq!(m.dataway.timeout_v2, std::time::Duration::from_secs(5));
    assert!(m.other.contains_key("pipeline") && m.other.contains_key("confds"));
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "http_listen",
        "read as http_api.listen"
    ));
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "dataway.timeout",
        "read as dataway.timeout_v2"
    ));
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "dataway.typo_key",
        "unknown key"
    ));
    assert_eq!(loaded.warnings.len(), 3, "{:#?}", loaded.warnings);
}

#[test]
fn clamps_what_datakit_clamps_with_a_warning() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[dataway]\n  max_retry_count = 20\n  urls = [\"https://openway.example.com\"]\n",
    )]);
    let loaded = load_ok(dir.path(), &no_env());
    assert_eq!(loaded.main.dataway.max_retry_count, 10);
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "dataway.max_retry_count",
        "using 10"
    ));
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "dataway.urls[0]",
        "no token"
    ));
}

/// A family whose validator panics (a bug in a family must not take the supervisor down).
struct Panics;

impl Descriptor for Panics {
    fn name(&self) -> &'static str {
        "panics"
    }
    fn inputs(&self) -> &'static [&'static str] {
        &["panics"]
    }
    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    fn validate(&self, _: &str, _: &str) -> Vec<ConfigProblem> {
        panic!("index out of bounds: the len is 0 but the index is 3")
    }
}

#[test]
fn a_panic_in_a_family_validator_is_a_config_error_naming_file_and_family() {
    let dir = workdir(&[
        ("datakit.conf", QUIET_MAIN),
        ("p/panics.conf", "[[inputs.panics]]\n  x = 1\n"),
        ("host/cpu.conf", "[[inputs.cpu]]\n"),
    ]);
    let families: &[&dyn Descriptor] = &[&Panics, &FakeHost];
    let errors = load_with(dir.path(), families, &no_env(), &FixedProbe)
        .expect_err("a panicking validator is an error")
        .0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        has(
            &errors,
            "panics.conf",
            "inputs.panics[0]",
            "input panics (family panics): validation panicked: index out of bounds"
        ),
        "{errors:?}"
    );
    assert!(
        errors[0]
            .to_string()
            .contains("this is a bug, please report it")
    );
}

#[test]
fn an_enabled_upgrader_without_token_or_keys_is_an_error_naming_each_key() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[dk_upgrader]\n  enable = true\n  ip_whitelist = [\"not-an-ip\"]\n  public_keys = [\"AAAA\"]\n",
    )]);
    let errors = load_err(dir.path());
    let keys: Vec<&str> = errors.iter().map(|d| d.key.as_str()).collect();
    assert!(keys.contains(&"dk_upgrader.token"), "{keys:?}");
    assert!(keys.contains(&"dk_upgrader.public_keys[0]"), "{keys:?}");
    assert!(keys.contains(&"dk_upgrader.ip_whitelist[0]"), "{keys:?}");

    let none = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[dk_upgrader]\n  enable = true\n  token = \"t\"\n",
    )]);
    let errors = load_err(none.path());
    let keys: Vec<&str> = errors.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["dk_upgrader.public_keys"]);

    let ok = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[dk_upgrader]\n  enable = true\n  token = \"s3cret\"\n  public_keys = [\"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"]\n  rollback_after = \"5s\"\n  port = 19542\n",
    )]);
    let loaded = load_ok(ok.path(), &no_env());
    let up = &loaded.main.dk_upgrader;
    assert_eq!(up.listen_addr(), "0.0.0.0:19542");
    assert_eq!(up.rollback_after, std::time::Duration::from_secs(5));
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
}

/// A family whose instances are read by the runtime's collector, as the real ones are.
struct CollectedStatsd;

#[derive(Debug, serde::Deserialize)]
#[serde(default)]
struct StatsdToml {
    service_address: String,
    #[serde(with = "dk_proto::config::go")]
    interval: std::time::Duration,
    percentiles: Vec<f64>,
}

impl Default for StatsdToml {
    fn default() -> Self {
        StatsdToml {
            service_address: ":8125".into(),
            interval: std::time::Duration::from_secs(10),
            percentiles: Vec::new(),
        }
    }
}

impl Descriptor for CollectedStatsd {
    fn name(&self) -> &'static str {
        "statsd"
    }
    fn inputs(&self) -> &'static [&'static str] {
        &["statsd"]
    }
    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    fn validate(&self, _: &str, toml_text: &str) -> Vec<ConfigProblem> {
        dk_proto::config::decode::<StatsdToml>(toml_text)
            .map(|t, p| {
                p.clamp(
                    "interval",
                    t.interval,
                    std::time::Duration::from_secs(1),
                    std::time::Duration::from_secs(60),
                )
            })
            .into_problems()
    }
}

#[test]
fn input_problems_name_file_line_and_key_and_warnings_do_not_stop_the_load() {
    let conf = "[[inputs.statsd]]\n  servce_address = \":18126\"\n  interval = 10\n\n[[inputs.statsd]]\n  service_address = \":18127\"\n  percentiles = \"p99\"\n  interval = \"soon\"\n";
    let dir = workdir(&[
        ("datakit.conf", "default_enabled_inputs = []\n"),
        ("statsd.conf", conf),
    ]);
    let report = inspect(dir.path(), &[&CollectedStatsd], &no_env(), &FixedProbe);
    let show = |d: &[Diagnostic]| -> Vec<String> {
        let mut v: Vec<String> = d
            .iter()
            .map(|d| {
                let name = d.file.file_name().map(|n| n.to_string_lossy().into_owned());
                format!(
                    "{}:{}: {}",
                    name.unwrap_or_default(),
                    d.line.unwrap_or(0),
                    d.key
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        show(&report.errors),
        [
            "statsd.conf:7: inputs.statsd[1].percentiles",
            "statsd.conf:8: inputs.statsd[1].interval"
        ]
    );
    assert_eq!(
        show(&report.warnings),
        [
            "statsd.conf:2: inputs.statsd[0].servce_address",
            "statsd.conf:3: inputs.statsd[0].interval"
        ]
    );
    let typo = report
        .warnings
        .iter()
        .find(|d| d.key.ends_with("servce_address"))
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        typo.ends_with(":2: inputs.statsd[0].servce_address: unknown key, ignored (the default applies): did you mean `service_address`?"),
        "{typo}"
    );
    // Warnings alone load.
    write(
        dir.path(),
        "statsd.conf",
        "[[inputs.statsd]]\n  servce_address = \":18126\"\n".as_bytes(),
    );
    let loaded = load_with(dir.path(), &[&CollectedStatsd], &no_env(), &FixedProbe)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    assert_eq!(loaded.warnings[0].line, Some(2));
}

#[test]
fn datakit_conf_typos_name_the_closest_key() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[http_api]\n  listne = \"0.0.0.0:9529\"\n[io]\n  flush_intervall = \"5s\"\n",
    )]);
    let loaded = load_ok(dir.path(), &no_env());
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "http_api.listne",
        "did you mean `listen`?"
    ));
    assert!(has(
        &loaded.warnings,
        "datakit.conf",
        "io.flush_intervall",
        "did you mean `flush_interval`?"
    ));
    let line = |key: &str| {
        loaded
            .warnings
            .iter()
            .find(|d| d.key == key)
            .and_then(|d| d.line)
    };
    assert_eq!(
        (line("http_api.listne"), line("io.flush_intervall")),
        (Some(3), Some(5))
    );
}

#[test]
fn keys_accepted_but_not_applied_warn_only_when_set_away_from_datakits_default() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\nprotect_mode = false\n[resource_limit]\n  disable_oom = true\n[dataway]\n  enable_sinker = true\n[logging]\n  disable_color = false\n",
    )]);
    let loaded = load_ok(dir.path(), &no_env());
    let mut keys: Vec<&str> = loaded
        .warnings
        .iter()
        .filter(|d| d.message.starts_with("accepted but not applied"))
        .map(|d| d.key.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "dataway.enable_sinker",
            "protect_mode",
            "resource_limit.disable_oom"
        ]
    );
}

#[test]
fn an_enabled_dca_needs_a_token_and_a_websocket_url() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[dca]\n  enable = true\n  websocket_server = \"http://console:8000/ws\"\n",
    )]);
    let errors = load_err(dir.path());
    let keys: Vec<&str> = errors.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["dca.token", "dca.websocket_server"]);

    // Datakit's keys (and the pre-1.64 listen/white_list) load; a disabled [dca] needs nothing.
    let ok = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[dca]\n  enable = true\n  websocket_server = \"wss://dca.example.com/ws\"\n  token = \"s3cret\"\n  listen = \"0.0.0.0:9531\"\n  white_list = []\n",
    )]);
    let loaded = load_ok(ok.path(), &no_env());
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    assert!(loaded.main.dca.enable);
    assert_eq!(loaded.main.dca.websocket_server, "wss://dca.example.com/ws");
    assert_eq!(loaded.main.dca.token, "s3cret");
    let clear = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[dca]\n  enable = true\n  websocket_server = \"ws://10.0.0.9:8000/ws\"\n  token = \"t\"\n",
    )]);
    let loaded = load_ok(clear.path(), &no_env());
    let keys: Vec<&str> = loaded.warnings.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        keys,
        ["dca.websocket_server"],
        "clear text off loopback warns"
    );
    let off = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[dca]\n  enable = false\n",
    )]);
    let loaded = load_ok(off.path(), &no_env());
    assert_eq!(loaded.main.dca.websocket_server, "ws://localhost:8000/ws");
}

#[test]
fn election_reads_the_etcd_backend_and_its_lease() {
    let dir = workdir(&[(
        "datakit.conf",
        r#"
default_enabled_inputs = []
[election]
  enable = true
  backend = "etcd"
  node_whitelist = ["a", "b"]
  [election.etcd]
    endpoints = ["127.0.0.1:2379", "https://10.0.0.2:2379"]
    lease = "5s"
    username = "dk"
    password = "secret"
"#,
    )]);
    let loaded = load_ok(dir.path(), &env(&[]));
    let el = &loaded.main.election;
    assert_eq!(el.backend, "etcd");
    assert_eq!(el.node_whitelist, ["a", "b"]);
    assert_eq!(
        el.etcd.endpoints,
        ["127.0.0.1:2379", "https://10.0.0.2:2379"]
    );
    assert_eq!(el.etcd.lease, std::time::Duration::from_secs(5));
    assert_eq!(el.etcd.username, "dk");
    assert_eq!(el.etcd.prefix, "/datakit/election");
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| !w.key.starts_with("election")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn election_refuses_an_unknown_backend_an_etcd_without_endpoints_and_a_short_lease() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[election]\n  enable = true\n  backend = \"zookeeper\"\n",
    )]);
    let errs = load_err(dir.path());
    assert!(
        has(
            &errs,
            "datakit.conf",
            "election.backend",
            "use \"dataway\" or \"etcd\""
        ),
        "{errs:?}"
    );
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[election]\n  enable = true\n  backend = \"etcd\"\n  [election.etcd]\n    lease = \"1s\"\n    tls_cert = \"/c.pem\"\n",
    )]);
    let errs = load_err(dir.path());
    assert!(
        has(
            &errs,
            "datakit.conf",
            "election.etcd.endpoints",
            "list the etcd members"
        ),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            "datakit.conf",
            "election.etcd.lease",
            "at least \"2s\""
        ),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            "datakit.conf",
            "election.etcd.tls_cert",
            "set both or neither"
        ),
        "{errs:?}"
    );
}

#[test]
fn election_through_dataway_without_a_dataway_url_is_a_warning() {
    let dir = workdir(&[(
        "datakit.conf",
        "default_enabled_inputs = []\n[election]\n  enable = true\n",
    )]);
    let loaded = load_ok(dir.path(), &env(&[]));
    assert!(
        has(
            &loaded.warnings,
            "datakit.conf",
            "election.backend",
            "needs a [dataway] urls entry"
        ),
        "{:?}",
        loaded.warnings
    );
}
