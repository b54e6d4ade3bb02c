//! Container mode (`datakit run -C`): the agent configured by `ENV_*` variables only, as the
//! Docker image and the DaemonSet in `packaging/` run it.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dk_proto::Category;
use dk_sinks::testing::FakeDataway;

use crate::harness::{bin, free_port, try_request, wait_for};

/// The arguments the Docker image's `CMD` gives the binary (checked against the Dockerfile).
pub const CONTAINER_ARGS: [&str; 2] = ["run", "-C"];

/// `datakit run -C --workdir DIR` with only `env` set beyond the test's own environment;
/// output in `DIR/agent.out` and `DIR/agent.err`.
fn start(workdir: &Path, env: &[(&str, String)]) -> Child {
    let log = |name: &str| Stdio::from(std::fs::File::create(workdir.join(name)).unwrap());
    let mut cmd = Command::new(bin());
    cmd.args(CONTAINER_ARGS)
        .arg("--workdir")
        .arg(workdir)
        .stdin(Stdio::null())
        .stdout(log("agent.out"))
        .stderr(log("agent.err"));
    // Only the variables of the test: none leaks in from the machine running it.
    for (k, _) in std::env::vars() {
        if k.starts_with("ENV_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn container_mode_collects_and_uploads_with_the_env_token_and_tags_and_listens_on_env_http_listen()
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeDataway::start("tkn_container")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let inputs = "[[inputs.mem]]\n  interval = \"1s\"\n";
    let child = Running(start(
        dir.path(),
        &[
            ("ENV_DATAWAY", fake.url()),
            (
                "ENV_GLOBAL_HOST_TAGS",
                "project=ctr-e2e,cluster=kind".into(),
            ),
            ("ENV_HTTP_LISTEN", format!("127.0.0.1:{port}")),
            ("ENV_HOSTNAME", "ctr-node-1".into()),
            ("ENV_DEFAULT_ENABLED_INPUTS", "system".into()),
            ("ENV_INPUT_SYSTEM_TAGS", "via=env_input".into()),
            ("ENV_DATAKIT_INPUTS", inputs.into()),
            ("ENV_IO_FLUSH_INTERVAL", "200ms".into()),
        ],
    ));
    let api = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for(
        "/v1/ping on ENV_HTTP_LISTEN",
        Duration::from_secs(20),
        || {
            try_request(api, "GET", "/v1/ping", &[], b"")
                .ok()
                .filter(|(s, _)| *s == 200)
        },
    );

    let mem = wait_for("mem points at Dataway", Duration::from_secs(30), || {
        fake.points(Category::Metric)
            .into_iter()
            .find(|p| p.name == "mem")
    });
    assert_eq!(mem.get_tag("project"), Some("ctr-e2e"), "{mem:?}");
    assert_eq!(mem.get_tag("cluster"), Some("kind"), "{mem:?}");
    assert_eq!(mem.get_tag("host"), Some("ctr-node-1"), "{mem:?}");
    // The default-enabled input with its per-input variable.
    let system = wait_for("system points at Dataway", Duration::from_secs(30), || {
        fake.points(Category::Metric)
            .into_iter()
            .find(|p| p.name == "system")
    });
    assert_eq!(system.get_tag("via"), Some("env_input"), "{system:?}");
    assert_eq!(system.get_tag("project"), Some("ctr-e2e"), "{system:?}");
    assert!(
        read(&dir.path().join("conf.d/ENV_INPUT_SYSTEM.conf")).contains("env_input"),
        "written to conf.d"
    );
    let uploads: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.category == "metric")
        .collect();
    assert!(!uploads.is_empty());
    for r in &uploads {
        assert!(r.query.contains("token=tkn_container"), "{:?}", r.query);
        assert_eq!(r.status, 200);
    }

    // The config was written from the variables; no PID file; the log went to stdout.
    let main = read(&dir.path().join("conf.d/datakit.conf"));
    assert!(main.contains("Written by `datakit run -C`"), "{main}");
    assert!(main.contains(&format!("127.0.0.1:{port}")), "{main}");
    assert_eq!(
        read(&dir.path().join("conf.d/ENV_DATAKIT_INPUTS.conf")),
        inputs
    );
    assert!(
        !dir.path().join(".pid").exists(),
        "no PID file in container mode"
    );
    let out = read(&dir.path().join("agent.out"));
    assert!(
        out.contains("Starting datakit"),
        "the log is on stdout: {out}"
    );
    drop(child);
    rt.block_on(fake.stop());
}

#[test]
fn a_bad_env_value_exits_78_naming_every_bad_variable_before_binding_a_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Running(start(
        dir.path(),
        &[
            ("ENV_HTTP_LISTEN", format!("127.0.0.1:{port}")),
            ("ENV_DATAWAY_TIMEOUT", "30".into()),
            ("ENV_GLOBAL_HOST_TAGS", "project".into()),
        ],
    ));
    let status = wait_for("the agent to exit", Duration::from_secs(20), || {
        child.0.try_wait().unwrap()
    });
    let err = read(&dir.path().join("agent.err"));
    assert_eq!(status.code(), Some(78), "{err}");
    assert!(err.contains("2 problem(s) in the ENV_* variables"), "{err}");
    assert!(
        err.contains("environment: ENV_DATAWAY_TIMEOUT: invalid duration \"30\""),
        "{err}"
    );
    assert!(err.contains("environment: ENV_GLOBAL_HOST_TAGS: "), "{err}");
    assert!(err.contains("k1=v1,k2=v2"), "says how to write it: {err}");
    // Nothing was prepared or bound: no config written, no RPC sockets, the port is free.
    assert!(!dir.path().join("conf.d").exists());
    assert!(!dir.path().join("run").exists());
    TcpListener::bind(("127.0.0.1", port)).expect("the port was never bound");
}

#[test]
fn host_mode_warns_that_env_variables_apply_only_in_container_mode() {
    let agent = crate::harness::Agent::start_with(
        &[],
        "",
        &[
            ("ENV_DATAWAY", "http://127.0.0.1:9?token=tkn_x"),
            ("ENV_GLOBAL_HOST_TAGS", "a=1"),
        ],
    );
    let log = wait_for("the warning", Duration::from_secs(10), || {
        let log = agent.log();
        log.contains("apply only in container mode").then_some(log)
    });
    assert!(
        log.contains("ignored: ENV_DATAWAY, ENV_GLOBAL_HOST_TAGS"),
        "{log}"
    );
    let main = read(&agent.workdir().join("conf.d/datakit.conf"));
    assert!(
        !main.contains("tkn_x"),
        "datakit.conf is the operator's: {main}"
    );
}

/// One Dockerfile instruction: keyword and its arguments (continuation lines joined).
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(cont) = t.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let (kw, args) = pending
            .split_once(char::is_whitespace)
            .unwrap_or((&pending, ""));
        out.push((kw.to_ascii_uppercase(), args.trim().to_string()));
        pending.clear();
    }
    assert!(pending.is_empty(), "a continuation line ends the file");
    out
}

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_dockerfile_is_multi_stage_runs_as_datakit_and_its_cmd_is_the_command_the_e2e_test_runs() {
    let text = repo_file("packaging/docker/Dockerfile");
    let ins = dockerfile_instructions(&text);
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    ];
    for (kw, args) in &ins {
        assert!(
            KNOWN.contains(&kw.as_str()),
            "unknown instruction {kw} {args}"
        );
        assert!(!args.is_empty(), "{kw} without arguments");
    }
    assert_eq!(ins[0].0, "FROM", "the first instruction is FROM");
    let froms = ins.iter().filter(|(k, _)| k == "FROM").count();
    assert!(froms >= 2, "multi-stage: {froms} FROM");
    assert!(
        ins.iter()
            .any(|(k, a)| k == "COPY" && a.ends_with("datakit /usr/local/datakit/datakit")),
        "the runtime stage installs the binary at Datakit's path"
    );
    let last = |kw: &str| {
        ins.iter()
            .rev()
            .find(|(k, _)| k == kw)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no {kw}"))
    };
    assert_eq!(last("USER"), "datakit", "runs as the non-root user datakit");
    let cmd: Vec<String> = serde_json::from_str(&last("CMD")).expect("CMD in exec form");
    let mut expected = vec!["/usr/local/datakit/datakit".to_string()];
    expected.extend(CONTAINER_ARGS.iter().map(|s| s.to_string()));
    assert_eq!(cmd, expected, "CMD is what the container e2e test runs");
    assert!(last("EXPOSE").split_whitespace().any(|p| p == "9529"));
}

#[test]
fn the_daemonset_example_parses_and_sets_the_env_variables_container_mode_reads() {
    let text = repo_file("packaging/k8s/datakit.yaml");
    let script = r#"
import sys, yaml, json
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
ds = [d for d in docs if d.get("kind") == "DaemonSet"]
assert len(ds) == 1, "one DaemonSet"
spec = ds[0]["spec"]["template"]["spec"]
c = spec["containers"][0]
print(json.dumps({"kinds": [d["kind"] for d in docs], "image": c["image"],
  "command": c.get("command"), "args": c.get("args"),
  "env": {e["name"]: e.get("value", "<from>") for e in c["env"]},
  "ports": [p["containerPort"] for p in c.get("ports", [])],
  "hostNetwork": spec.get("hostNetwork")}))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with PyYAML) parses the DaemonSet");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["command"].is_null() && v["args"].is_null(),
        "the image's CMD runs: {v}"
    );
    assert_eq!(v["ports"], serde_json::json!([9529]), "{v}");
    let env = v["env"].as_object().unwrap();
    for var in [
        "ENV_DATAWAY",
        "ENV_HTTP_LISTEN",
        "ENV_GLOBAL_HOST_TAGS",
        "ENV_DEFAULT_ENABLED_INPUTS",
        "ENV_K8S_NODE_NAME",
        "ENV_ENABLE_ELECTION",
    ] {
        assert!(env.contains_key(var), "{var} missing: {v}");
    }
    assert_eq!(env["ENV_HTTP_LISTEN"], "0.0.0.0:9529");
    // Every variable it sets is one container mode reads without a problem.
    let pairs: std::collections::HashMap<String, String> = env
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().unwrap_or_default();
            let v = if v == "<from>" { "node-1" } else { v };
            (k.clone(), v.to_string())
        })
        .collect();
    let cfg = dk_config::from_env(&dk_config::MapEnv(pairs)).expect("valid ENV_* values");
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

/// `datakit check --config -C --workdir DIR` with only `env` among the ENV_* variables.
fn check_container(workdir: &Path, env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args(["check", "--config", "-C", "--workdir"])
        .arg(workdir)
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("ENV_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn check_config_in_container_mode_reports_bad_env_values_as_run_does_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_container(
        dir.path(),
        &[
            ("ENV_DATAWAY_TIMEOUT", "30".into()),
            ("ENV_GLOBAL_HOST_TAGS", "project".into()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("2 problem(s) in the ENV_* variables"), "{err}");
    assert!(
        err.contains("environment: ENV_DATAWAY_TIMEOUT: invalid duration \"30\""),
        "{err}"
    );
    assert!(err.contains("environment: ENV_GLOBAL_HOST_TAGS: "), "{err}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "the work dir is untouched"
    );

    // Good values with a busy ENV_HTTP_LISTEN: the problem names the variable that set it.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = check_container(
        dir.path(),
        &[
            ("ENV_HTTP_LISTEN", format!("127.0.0.1:{port}")),
            ("ENV_DATAWAY", "http://127.0.0.1:9/?token=tkn_x".into()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "http_api.listen: cannot listen on 127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(
        err.contains("(set by ENV_HTTP_LISTEN: change the variable)"),
        "{err}"
    );
    drop(busy);

    // With an input config mounted in conf.d, good values check clean and count the inputs.
    std::fs::create_dir_all(dir.path().join("conf.d/host")).unwrap();
    std::fs::write(
        dir.path().join("conf.d/host/mem.conf"),
        "[[inputs.mem]]\n  interval = \"10s\"\n",
    )
    .unwrap();
    let out = check_container(
        dir.path(),
        &[
            ("ENV_HTTP_LISTEN", format!("127.0.0.1:{}", free_port())),
            ("ENV_DEFAULT_ENABLED_INPUTS", "cpu".into()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("configuration OK: 1 family with 2 input instance(s)"),
        "{err}"
    );
    assert!(
        !dir.path().join("conf.d/datakit.conf").exists(),
        "check writes no datakit.conf"
    );
}
