//! The everyday commands on the real binary: `tool --parse-lp`, `tool --default-main-conf`,
//! `tool --dump-samples`, `version`, and where `--help` says the work dir and logs are.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{Agent, bin};

fn datakit(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The line-protocol seeds the decoder's corpus test runs (valid and invalid bodies).
fn lp_corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("proto/fuzz/seeds/lineproto_decode"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lp"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    files
}

/// Points as JSON without their times (points without one get "now", which differs).
fn timeless(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    for p in v.as_array_mut().unwrap() {
        p.as_object_mut().unwrap().remove("time");
    }
    v
}

#[test]
fn parse_lp_reports_every_invalid_line_of_the_error_corpus_with_its_number_and_exits_1() {
    let file = repo("proto/fuzz/seeds/lineproto_decode/16_errors.lp");
    let out = datakit(&["tool", "--parse-lp", file.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<usize> = err
        .lines()
        .filter(|l| l.contains("invalid line protocol"))
        .map(|l| l.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(lines, (1..=8).collect::<Vec<_>>(), "{err}");
    assert!(
        err.contains("16_errors.lp:5:5: invalid line protocol: invalid boolean"),
        "{err}"
    );
    assert!(err.contains("8 invalid line(s)"), "{err}");
    assert!(text(&out.stdout).is_empty(), "no point is printed");
}

#[test]
fn parse_lp_keeps_the_good_lines_around_bad_ones_and_prints_them_with_their_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.lp");
    std::fs::write(
        &file,
        "# comment\ncpu,host=a usage=1 1700000000000000000\nbad line\n\nmem used=2i 1700000000000000000\n",
    )
    .unwrap();
    let out = datakit(&["tool", "--parse-lp", file.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stdout,
        "# line 2\ncpu,host=a usage=1 1700000000000000000\n# line 5\nmem used=2i 1700000000000000000\n"
    );
    assert!(stderr.contains("mixed.lp:3:"), "{stderr}");
    assert!(
        stderr.contains(
            "Parse 2 points OK, with 2 measurements and 2 time series; 1 invalid line(s)"
        ),
        "{stderr}"
    );

    std::fs::write(&file, "cpu,host=a usage=1 1700000000000000000\n").unwrap();
    let out = datakit(&["tool", "--parse-lp", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = datakit(&["tool", "--parse-lp", "/nonexistent/x.lp"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/x.lp"));
}

#[test]
fn parse_lp_json_gives_what_the_write_api_echoes_for_every_body_of_the_corpus() {
    let agent = Agent::start(&[]);
    let mut compared = 0;
    for file in lp_corpus() {
        let body = std::fs::read(&file).unwrap();
        let (status, echo) = agent.request("POST", "/v1/write/metric?echo=json", &[], &body);
        let out = datakit(&["tool", "--parse-lp", file.to_str().unwrap(), "--json"]);
        let name = file.display();
        if status == 200 {
            let api: serde_json::Value = serde_json::from_slice(&echo).unwrap();
            let ours: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{name}: {e}: {}", text(&out.stdout)));
            assert_eq!(timeless(&ours), timeless(&api), "{name}");
            compared += 1;
        } else {
            assert_eq!(
                out.status.code(),
                Some(1),
                "{name}: the API answered {status} ({}), parse-lp: {}",
                text(&echo),
                text(&out.stderr)
            );
        }
    }
    assert!(
        compared >= 5,
        "only {compared} bodies were accepted by the API"
    );
}

#[test]
fn default_main_conf_prints_the_built_in_datakit_conf() {
    let out = datakit(&["tool", "--default-main-conf"]);
    assert_eq!(out.status.code(), Some(0));
    let printed = text(&out.stdout);
    assert_eq!(
        printed,
        std::fs::read_to_string(repo("conf.d/datakit.conf")).unwrap()
    );
    let table: toml::Table = toml::from_str(&printed).unwrap();
    assert!(table.contains_key("http_api") && table.contains_key("dataway"));
}

#[test]
fn dump_samples_writes_every_inputs_sample_and_each_is_input_toml() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("samples");
    let out = datakit(&["tool", "--dump-samples", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for want in [
        "cpu.conf",
        "mem.conf",
        "socket.conf",
        "statsd.conf",
        "logging.conf",
    ] {
        assert!(
            names.contains(&want.to_string()),
            "{want} missing: {names:?}"
        );
    }
    assert!(
        text(&out.stderr).contains(&format!("wrote {} input samples", names.len())),
        "{}",
        text(&out.stderr)
    );
    for name in &names {
        let input = name.strip_suffix(".conf").unwrap();
        let body = std::fs::read_to_string(target.join(name)).unwrap();
        let table: toml::Table = toml::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let inputs = table["inputs"].as_table().unwrap();
        assert!(inputs.contains_key(input), "{name} configures {input}");
    }
}

#[test]
fn version_prints_datakits_fields_with_the_rust_version() {
    let out = datakit(&["version"]);
    assert_eq!(out.status.code(), Some(0));
    let v = text(&out.stdout);
    // The first line stays what upgrades and scripts read.
    let first = v.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("datakit {} (build ", env!("CARGO_PKG_VERSION")))
            && first.ends_with(')'),
        "{v}"
    );
    let field = |name: &str| -> String {
        v.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name}: {v}"))
            .to_string()
    };
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    let commit = field("Commit");
    assert!(
        commit == "unknown"
            || (commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    assert!(!field("Branch").is_empty());
    let at = field("Build At(UTC)");
    assert!(
        at.len() == 19
            && at.as_bytes()[4] == b'-'
            && at.as_bytes()[10] == b' '
            && at.as_bytes()[13] == b':',
        "{at}"
    );
    assert!(field("Rust Version").starts_with("rustc 1."), "{v}");
}

#[test]
fn every_commands_help_says_where_the_work_dir_and_the_logs_are() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["check", "--help"],
        vec!["version", "--help"],
        vec!["tool", "--help"],
        vec!["service", "--help"],
        vec!["upgrade", "--help"],
        vec!["dca", "--help"],
    ] {
        let out = datakit(&args);
        let help = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            help.contains("Work dir: /usr/local/datakit"),
            "{args:?}: {help}"
        );
        assert!(help.contains("/var/log/datakit/log"), "{args:?}: {help}");
    }
    let run = text(&datakit(&["run", "--help"]).stdout);
    assert!(run.contains("-C, --container"), "{run}");
}

#[test]
fn debug_input_conf_prints_the_points_one_run_collects_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("host.conf");
    std::fs::write(
        &conf,
        "[[inputs.mem]]\n  interval = \"10s\"\n[[inputs.system]]\n  interval = \"10s\"\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = datakit(&["debug", "--input-conf", conf.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "one collection, not an interval"
    );
    assert!(stdout.contains("# mem (metric): 1 point(s)\n"), "{stdout}");
    let body: String = stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let points = dk_proto::lineproto::decode(
        body.as_bytes(),
        &dk_proto::lineproto::DecodeOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let mem = points
        .iter()
        .find(|p| p.name == "mem")
        .expect("a mem point");
    assert!(mem.get_field("total").is_some(), "{mem:?}");
    assert!(points.iter().any(|p| p.name == "system"), "{stdout}");
    assert!(stderr.contains("mem: 1 point(s)"), "{stderr}");
}

#[test]
fn debug_input_conf_reports_config_errors_with_the_files_line_and_refuses_listening_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "[[inputs.mem]]\n  interval = \"soon\"\n").unwrap();
    let out = datakit(&["debug", "--input-conf", bad.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2: inputs.mem[0].interval", bad.display())),
        "names the given file and line: {stderr}"
    );

    let statsd = dir.path().join("statsd.conf");
    std::fs::write(
        &statsd,
        "[[inputs.statsd]]\n  service_address = \":18125\"\n",
    )
    .unwrap();
    let out = datakit(&["debug", "--input-conf", statsd.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("listen on"), "{stderr}");
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn the_bash_completion_script_completes_commands_and_their_flags() {
    let out = datakit(&["tool", "--completer-script", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("datakit.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // What bash offers after `datakit to<TAB>` and `datakit tool --parse<TAB>`.
    let probe = format!(
        r#"source {}
COMP_WORDS=(datakit to); COMP_CWORD=1; _datakit datakit to datakit; echo "1:${{COMPREPLY[*]}}"
COMP_WORDS=(datakit tool --parse); COMP_CWORD=2; _datakit datakit --parse tool; echo "2:${{COMPREPLY[*]}}"
COMP_WORDS=(datakit run -); COMP_CWORD=2; _datakit datakit - run; echo "3:${{COMPREPLY[*]}}""#,
        script.display()
    );
    let run = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let said = text(&run.stdout);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(said.contains("1:tool\n"), "{said}");
    assert!(said.contains("2:--parse-lp\n"), "{said}");
    assert!(
        said.lines()
            .any(|l| l.starts_with("3:") && l.contains("--container")),
        "{said}"
    );
}
