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

/// A work dir with a minimal conf.d and a log file.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let confd = dir.path().join("conf.d");
    std::fs::create_dir_all(&confd).unwrap();
    std::fs::write(
        confd.join("datakit.conf"),
        "default_enabled_inputs = []\n[dca]\n  enable = true\n  token = \"x\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("log"), "first line\n").unwrap();
    dir
}

/// The client's dependencies for an agent in `dir` dialing `url`.
fn deps(
    dir: &Path,
    url: String,
    token: &str,
    ca_file: &str,
) -> (Deps, Arc<dk_api::LastErrors>, mpsc::Receiver<()>) {
    let mut registry = Registry::default();
    let last_errors = dk_api::LastErrors::new(&mut registry);
    let metrics = DcaMetrics::new(&mut registry);
    let (reload, reloads) = mpsc::channel(4);
    let deps = Deps {
        cfg: dk_config::Dca {
            enable: true,
            websocket_server: url,
            token: token.into(),
            ca_file: ca_file.into(),
        },
        workdir: dir.to_path_buf(),
        log_file: Some(dir.join("log")),
        hostname: "test-host".into(),
        host_tags: BTreeMap::new(),
        started: Instant::now(),
        reload,
        registry: Arc::new(registry),
        last_errors: last_errors.clone(),
        validate: checker(dir),
        metrics,
    };
    (deps, last_errors, reloads)
}

async fn start(console_tokens: &str, agent_token: &str) -> Fixture {
    let dir = workdir();
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
    let (deps, last_errors, reloads) = deps(dir.path(), format!("ws://{addr}/ws"), agent_token, "");
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

#[tokio::test]
// tungstenite's handshake callback type returns its large `ErrorResponse`.
#[allow(clippy::result_large_err)]
async fn a_wss_console_is_verified_and_trusted_only_through_ca_file() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // A bare WebSocket server over TLS that reports each handshake's token.
    let (seen_tx, mut seen) = mpsc::channel::<String>(4);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut token = String::new();
                let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                          resp| {
                    token = req
                        .headers()
                        .get(wire::HEADER_TOKEN)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    Ok(resp)
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tls, cb).await {
                    let _ = seen_tx.send(token).await;
                    drop(ws);
                }
            });
        }
    });
    let url = format!("wss://localhost:{port}/ws");
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();

    // Without ca_file the self-signed console is refused: no handshake reaches it.
    let untrusted = workdir();
    let (d, errors, _r) = deps(untrusted.path(), url.clone(), "secret", "");
    super::start(d, stop.clone());
    let message = wait_until("the TLS refusal", || {
        errors
            .recent()
            .into_iter()
            .find(|e| e.input == "dca")
            .map(|e| e.message)
    })
    .await;
    assert!(message.contains("TLS"), "{message}");
    assert!(
        seen.try_recv().is_err(),
        "no WebSocket handshake without trust"
    );

    // With the console's certificate in ca_file it connects and sends its token.
    let trusted = workdir();
    let ca = trusted.path().join("ca.pem");
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(cert.cert.der())
    };
    let lines: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    std::fs::write(&ca, pem).unwrap();
    let (d, _errors, _r) = deps(trusted.path(), url, "secret", &ca.display().to_string());
    super::start(d, stop.clone());
    let token = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token, "secret");
}

#[tokio::test]
async fn the_agent_reconnects_after_the_console_drops_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen) = mpsc::channel::<Instant>(4);
    // Each connection is accepted, then closed by the console at once.
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                let _ = seen_tx.send(Instant::now()).await;
                let _ = ws.close(None).await;
            }
        }
    });
    let dir = workdir();
    let (d, _errors, _r) = deps(dir.path(), format!("ws://{addr}/ws"), "t", "");
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    super::start(d, stop.clone());
    let first = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .unwrap()
        .unwrap();
    let gap = second - first;
    assert!(
        gap >= Duration::from_millis(700) && gap < Duration::from_secs(3),
        "reconnected after the first backoff step (1 s ± 20 %), took {gap:?}"
    );
}

#[tokio::test]
async fn the_console_downloads_the_whole_log_over_a_second_connection() {
    let f = start("a t\n", "t").await;
    let id = connected(&f).await;
    // More than one 1 KiB frame, and not a multiple of it.
    let text: String = (0..300).map(|i| format!("line {i}\n")).collect();
    std::fs::write(f.dir.path().join("log"), &text).unwrap();
    let app = console::router(f.console.clone());
    let resp = tower::ServiceExt::oneshot(
        app,
        axum::http::Request::get(format!("/api/agents/{id}/log/download"))
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(body, text.as_bytes());
}
