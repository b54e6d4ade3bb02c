//! The agent and the console in one process, over loopback WebSocket.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::console::{Console, Tokens};
use super::wire::action;
use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    console: Arc<Console>,
    last_errors: Arc<dk_api::LastErrors>,
    reloads: mpsc::Receiver<()>,
    stop: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(console_tokens: &str, agent_token: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let confd = dir.path().join("conf.d");
    std::fs::create_dir_all(&confd).unwrap();
    std::fs::write(
        confd.join("datakit.conf"),
        "default_enabled_inputs = []\n[dca]\n  enable = true\n  token = \"x\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("log"), "first line\n").unwrap();
    let console = Arc::new(Console::new(Tokens::parse(console_tokens, "t").unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let app = console::router(console.clone());
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
    });
    let mut registry = Registry::default();
    let last_errors = dk_api::LastErrors::new(&mut registry);
    let metrics = DcaMetrics::new(&mut registry);
    let (reload, reloads) = mpsc::channel(4);
    let deps = Deps {
        cfg: dk_config::Dca {
            enable: true,
            websocket_server: format!("ws://{addr}/ws"),
            token: agent_token.into(),
            ca_file: String::new(),
        },
        workdir: dir.path().to_path_buf(),
        log_file: Some(dir.path().join("log")),
        hostname: "test-host".into(),
        host_tags: BTreeMap::new(),
        started: Instant::now(),
        reload,
        registry: Arc::new(registry),
        last_errors: last_errors.clone(),
        validate: checker(dir.path()),
        metrics,
    };
    super::start(deps, stop.clone());
    Fixture {
        dir,
        console,
        last_errors,
        reloads,
        stop,
    }
}

async fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connected(f: &Fixture) -> String {
    wait_until("the agent to connect", || f.console.agent_ids().pop()).await
}

async fn ask(
    f: &Fixture,
    id: &str,
    act: &str,
    query: &[(&str, &str)],
    body: serde_json::Value,
) -> wire::Reply {
    let query = query
        .iter()
        .map(|(k, v)| ((*k).to_string(), vec![(*v).to_string()]))
        .collect();
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    match f.console.request(id, act, query, body).await {
        Ok(r) => r,
        Err(_) => panic!("no reply to {act}"),
    }
}

#[tokio::test]
async fn an_agent_with_a_wrong_token_is_refused_and_records_why() {
    let f = start("web-1 right-token\n", "wrong-token").await;
    let message = wait_until("the refusal in the last errors", || {
        f.last_errors
            .recent()
            .into_iter()
            .find(|e| e.input == "dca")
            .map(|e| e.message)
    })
    .await;
    assert!(message.contains("HTTP 401"), "{message}");
    assert!(message.contains("--tokens"), "{message}");
    assert!(f.console.agent_ids().is_empty());
}

#[tokio::test]
async fn a_console_without_the_agents_token_refuses_it_and_one_with_it_lists_it() {
    let f = start("other-agent other-token\n", "agent-token").await;
    wait_until("the refusal", || {
        f.last_errors
            .recent()
            .into_iter()
            .find(|e| e.input == "dca")
    })
    .await;
    assert!(f.console.agent_ids().is_empty());
    let g = start("web-1 agent-token\n", "agent-token").await;
    let id = connected(&g).await;
    assert_eq!(id.len(), 64, "the conn_id: {id}");
}

#[tokio::test]
async fn stats_name_the_agent_and_list_its_config_files() {
    let f = start("a t\n", "t").await;
    let id = connected(&f).await;
    let r = ask(&f, &id, action::STATS, &[], serde_json::Value::Null).await;
    assert!(r.success, "{r:?}");
    assert_eq!(r.content["hostname"], "test-host");
    assert_eq!(
        r.content["config_files"],
        serde_json::json!(["datakit.conf"])
    );
    assert!(r.content["rss_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_save_with_a_typo_is_refused_with_its_errors_and_writes_nothing() {
    let mut f = start("a t\n", "t").await;
    let id = connected(&f).await;
    for bad in [
        "[[inputs.cpu]\n  interval = \"10s\"\n",
        "[[inputs.cpu]]\n  interval = \"ten seconds\"\n",
    ] {
        let r = ask(
            &f,
            &id,
            action::SAVE_CONFIG,
            &[],
            serde_json::json!({"path": "host/cpu.conf", "config": bad, "isNew": true}),
        )
        .await;
        assert!(!r.success, "{bad}: {r:?}");
        assert_eq!(r.error_code, "toml.format.error");
        let problems = r.content.as_array().unwrap();
        assert!(!problems.is_empty());
        assert_eq!(problems[0]["file"], "host/cpu.conf", "{problems:?}");
    }
    assert!(
        !f.dir.path().join("conf.d/host").exists(),
        "nothing was written"
    );
    assert!(
        f.reloads.try_recv().is_err(),
        "no reload after a refused save"
    );
    let leftovers: Vec<_> = std::fs::read_dir(f.dir.path().join("run"))
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(
        leftovers.iter().all(|n| *n == 0),
        "scratch dirs removed: {leftovers:?}"
    );
}

#[tokio::test]
async fn a_valid_save_is_written_whole_and_triggers_a_reload() {
    let mut f = start("a t\n", "t").await;
    let id = connected(&f).await;
    let text = "[[inputs.cpu]]\n  interval = \"10s\"\n";
    let r = ask(
        &f,
        &id,
        action::SAVE_CONFIG,
        &[],
        serde_json::json!({"path": "host/cpu.conf", "config": text, "isNew": true}),
    )
    .await;
    assert!(r.success, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(f.dir.path().join("conf.d/host/cpu.conf")).unwrap(),
        text
    );
    tokio::time::timeout(Duration::from_secs(5), f.reloads.recv())
        .await
        .unwrap()
        .unwrap();
    // isNew on an existing file is refused.
    let r = ask(
        &f,
        &id,
        action::SAVE_CONFIG,
        &[],
        serde_json::json!({"path": "host/cpu.conf", "config": text, "isNew": true}),
    )
    .await;
    assert_eq!(r.error_code, "file.path.exists");
    let r = ask(
        &f,
        &id,
        action::GET_CONFIG,
        &[("path", "host/cpu.conf")],
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(r.content, text);
}

#[tokio::test]
async fn path_escapes_and_deleting_the_main_config_are_refused_over_the_wire() {
    let f = start("a t\n", "t").await;
    let id = connected(&f).await;
    std::fs::write(f.dir.path().join("secret.conf"), "[[inputs.cpu]]\n").unwrap();
    let abs = f.dir.path().join("secret.conf").display().to_string();
    std::os::unix::fs::symlink(
        f.dir.path().join("secret.conf"),
        f.dir.path().join("conf.d/link.conf"),
    )
    .unwrap();
    for p in ["../secret.conf", abs.as_str(), "link.conf"] {
        let r = ask(
            &f,
            &id,
            action::GET_CONFIG,
            &[("path", p)],
            serde_json::Value::Null,
        )
        .await;
        assert!(!r.success, "{p}: {r:?}");
        assert_eq!(r.error_code, "file.path.invalid", "{p}");
        let r = ask(
            &f,
            &id,
            action::SAVE_CONFIG,
            &[],
            serde_json::json!({"path": p, "config": "", "isNew": false}),
        )
        .await;
        assert!(!r.success, "{p}: {r:?}");
    }
    assert_eq!(
        std::fs::read_to_string(f.dir.path().join("secret.conf")).unwrap(),
        "[[inputs.cpu]]\n"
    );
    let r = ask(
        &f,
        &id,
        action::DELETE_CONFIG,
        &[],
        serde_json::json!({"path": "datakit.conf"}),
    )
    .await;
    assert_eq!(r.error_code, "file.delete.forbidden");
    assert!(f.dir.path().join("conf.d/datakit.conf").exists());
    let r = ask(
        &f,
        &id,
        "get_datakit_pipeline_action",
        &[],
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(r.error_code, "not.supported");
    let r = ask(&f, &id, "no_such_action", &[], serde_json::Value::Null).await;
    assert_eq!(r.error_code, "invalid.action");
}

#[test]
fn the_log_file_is_none_for_stdout() {
    assert_eq!(log_file("stdout"), None);
    assert_eq!(
        log_file("/var/log/datakit/log"),
        Some(Path::new("/var/log/datakit/log").to_path_buf())
    );
}
