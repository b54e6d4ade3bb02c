//! DCA end to end: `datakit dca` runs the console, two agents dial it, and headless Chromium
//! drives the page over the DevTools protocol: it lists both agents, refuses a config with a
//! typo (nothing written), saves a valid one (the agent reloads and the new input's points
//! arrive) and tails the log.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Agent, bin, free_port, main_conf, try_request, wait_for, write_confd};

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `datakit dca --listen 127.0.0.1:<port> --tokens <file>`, waiting until it accepts.
fn start_console(dir: &Path, tokens: &str) -> (Proc, SocketAddr) {
    let file = dir.join("tokens");
    std::fs::write(&file, tokens).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let err = std::fs::File::create(dir.join("console.err")).unwrap();
    let child = Command::new(bin())
        .args(["dca", "--listen", &addr.to_string(), "--tokens"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_for("the console to listen", Duration::from_secs(10), || {
        TcpStream::connect(addr).ok()
    });
    (p, addr)
}

/// An agent with `[dca]` on, logging to `<workdir>/log/agent.log`, and `files` in conf.d.
fn start_agent(console: SocketAddr, token: &str, files: &[(&str, &str)]) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("log/agent.log");
    let extra = format!(
        "[dca]  # the console under test\n  enable = true\n  websocket_server = \"ws://{console}/ws\"\n  token = \"{token}\"\n"
    );
    let main = main_conf(port, &extra)
        .replace("log = \"stdout\"", &format!("log = \"{}\"", log.display()));
    write_confd(dir.path(), &main, files);
    let logs = dir.path().to_path_buf();
    Agent::start_in(dir, &logs, port, &[])
}

/// The agents the console lists (its page API).
fn listed(console: SocketAddr) -> Vec<Value> {
    try_request(console, "GET", "/api/agents", &[], b"")
        .ok()
        .and_then(|(_, body)| serde_json::from_slice::<Vec<Value>>(&body).ok())
        .unwrap_or_default()
}

/// Headless Chromium with a DevTools port, showing `url`.
struct Browser {
    _proc: Proc,
    _profile: tempfile::TempDir,
    page_ws: String,
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|p| dk_proto::testing::program_exists(p))
}

fn start_browser(url: &str) -> Browser {
    let profile = tempfile::tempdir().unwrap();
    let program = chromium().unwrap();
    let child = Command::new(program)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,820",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let port_file = profile.path().join("DevToolsActivePort");
    let port: u16 = wait_for("Chromium's DevTools port", Duration::from_secs(20), || {
        std::fs::read_to_string(&port_file)
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    });
    let devtools = SocketAddr::from(([127, 0, 0, 1], port));
    let page_ws = wait_for("the page target", Duration::from_secs(20), || {
        // Chromium answers HTTP/1.1 only, keeps the connection open and writes
        // `Content-Length:450` without a space: read the body by its length.
        let mut s = TcpStream::connect(devtools).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        // The page URLs it lists are built from the Host header.
        s.write_all(format!("GET /json/list HTTP/1.1\r\nHost: {devtools}\r\n\r\n").as_bytes())
            .ok()?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let body = loop {
            let n = s.read(&mut buf).ok().filter(|n| *n > 0)?;
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let len: usize = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })?;
            if body.len() >= len {
                break body.to_string();
            }
        };
        let targets: Vec<Value> = serde_json::from_str(&body).ok()?;
        targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .map(str::to_string)
    });
    Browser {
        _proc: proc,
        _profile: profile,
        page_ws,
    }
}

/// A minimal DevTools protocol client for one page.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    next: u64,
}

impl Cdp {
    async fn connect(url: &str) -> Cdp {
        let hostport = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let tcp = tokio::net::TcpStream::connect(hostport).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        Cdp { ws, next: 0 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let Some(Ok(Message::Text(t))) = self.ws.next().await else {
                    continue;
                };
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no DevTools answer to {method}"));
        assert!(reply.get("error").is_none(), "{method}: {reply}");
        reply["result"].clone()
    }

    /// Evaluates `js` in the page (promises awaited) and returns its value.
    async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls `js` until it returns something truthy (not false/null/0/"").
    async fn wait_js(&mut self, what: &str, js: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(js).await;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the page, written to `dir/name` (and to docs/images when
    /// `DK_DCA_SCREENSHOTS=1`).
    async fn screenshot(&mut self, dir: &Path, name: &str) -> PathBuf {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = dir.join(name);
        std::fs::write(&path, &png).unwrap();
        if std::env::var("DK_DCA_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/images");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(name), &png).unwrap();
        }
        path
    }
}

/// Clicks the first element matching `selector` whose text contains `text`.
fn click_js(selector: &str, text: &str) -> String {
    format!(
        "(() => {{ const e = [...document.querySelectorAll({sel})].find(e => e.textContent.includes({text})); if (!e) return false; e.click(); return true; }})()",
        sel = json!(selector),
        text = json!(text)
    )
}

#[test]
fn the_console_page_lists_agents_checks_and_saves_configs_and_tails_logs() {
    if !dk_proto::testing::require(
        "Chromium",
        chromium().is_some(),
        "apt-get install -y chromium, or run scripts/test.sh, which installs it",
    ) {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let (_console, console) = start_console(scratch.path(), "agent-a token-a\nagent-b token-b\n");
    let a = start_agent(console, "token-a", &[]);
    let _b = start_agent(console, "token-b", &[]);
    wait_for(
        "both agents on the console",
        Duration::from_secs(20),
        || (listed(console).len() == 2).then_some(()),
    );

    // The page adds a Graphite input on this port (it serves data as soon as it is up).
    let graphite_port = free_port();

    let browser = start_browser(&format!("http://{console}/"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shots = scratch.path().to_path_buf();
    let confd = a.workdir().join("conf.d");
    rt.block_on(async {
        let mut page = Cdp::connect(&browser.page_ws).await;
        page.call("Runtime.enable", json!({})).await;
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 820, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        // The page lists both agents by their token names.
        let names = page
            .wait_js(
                "both agents on the page",
                "document.querySelectorAll('#agents li[data-id]').length === 2 && [...document.querySelectorAll('#agents li .host')].map(e => e.textContent.trim()).sort().join(',')",
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(names, "agent-a,agent-b");
        assert!(page.eval(&click_js("#agents li", "agent-a")).await == true);
        page.wait_js(
            "the overview cards",
            "document.querySelectorAll('#cards .card').length > 0 && document.querySelector('#facts').textContent.includes('conf.d')",
            Duration::from_secs(10),
        )
        .await;
        page.screenshot(&shots, "dca-overview.png").await;

        // Config tab: a new file with a typo is refused, shown inline, and nothing is written.
        assert!(page.eval(&click_js("nav.tabs button", "Config")).await == true);
        page.wait_js(
            "the file list",
            "[...document.querySelectorAll('#files li')].some(li => li.dataset.path === 'datakit.conf')",
            Duration::from_secs(10),
        )
        .await;
        // The closing quote is missing.
        let typo = format!("[[inputs.graphite]]\n  address = \"127.0.0.1:{graphite_port}\n");
        page.eval(&format!(
            "newFile('network/graphite.conf'); document.querySelector('#editor').value = {}; document.querySelector('#save').click(); true",
            json!(typo)
        ))
        .await;
        let shown = page
            .wait_js(
                "the validation error",
                "document.querySelector('#errors .err')?.textContent",
                Duration::from_secs(10),
            )
            .await;
        let shown = shown.as_str().unwrap().to_string();
        assert!(shown.contains("network/graphite.conf"), "{shown}");
        assert!(shown.contains("line 2"), "{shown}");
        assert!(!confd.join("network/graphite.conf").exists(), "nothing written");
        page.screenshot(&shots, "dca-config-error.png").await;

        // The fix is saved; the agent reloads and the new input's points arrive.
        let fixed = format!("[[inputs.graphite]]\n  address = \"127.0.0.1:{graphite_port}\"\n");
        page.eval(&format!(
            "document.querySelector('#editor').value = {}; document.querySelector('#save').click(); true",
            json!(fixed)
        ))
        .await;
        page.wait_js(
            "the saved message",
            "document.querySelector('#errors .ok')?.textContent",
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            std::fs::read_to_string(confd.join("network/graphite.conf")).unwrap(),
            fixed
        );
        page.screenshot(&shots, "dca-config-saved.png").await;

        // The log tail shows the agent's log, then new lines as they are written.
        assert!(page.eval(&click_js("nav.tabs button", "Logs")).await == true);
        page.wait_js(
            "the start of the log",
            "document.querySelector('#log').textContent.includes('Starting datakit')",
            Duration::from_secs(10),
        )
        .await;
        // The save above already logged one request; the button's request is a line written
        // after the tail started.
        let count = "document.querySelector('#log').textContent.split('Reload requested by the DCA console').length - 1";
        let before = page.eval(count).await.as_u64().unwrap();
        assert!(page.eval(&click_js("#reload", "Reload")).await == true);
        page.wait_js(
            "a new log line",
            &format!("({count}) > {before}"),
            Duration::from_secs(10),
        )
        .await;
        page.screenshot(&shots, "dca-logs.png").await;
    });

    // The reload bound the new input's port; a line sent to it arrives in the local sink.
    let graphite = SocketAddr::from(([127, 0, 0, 1], graphite_port));
    let mut conn = wait_for("the new Graphite port", Duration::from_secs(10), || {
        TcpStream::connect(graphite).ok()
    });
    conn.write_all(b"dca_saved 42 1700000000\n").unwrap();
    drop(conn);
    let point = wait_for("the new input's point", Duration::from_secs(10), || {
        a.local_points("metric")
            .into_iter()
            .find(|p| p.get_field("dca_saved").is_some())
    });
    assert_eq!(
        point.get_field("dca_saved"),
        Some(&dk_proto::Value::F(42.0))
    );
    assert_eq!(a.metric("datakit_dca_connected"), Some(1.0));
}

#[test]
fn an_agent_with_an_unknown_token_is_refused_by_the_console() {
    let scratch = tempfile::tempdir().unwrap();
    let (_console, console) = start_console(scratch.path(), "agent-a token-a\n");
    let good = start_agent(console, "token-a", &[]);
    let bad = start_agent(console, "not-listed", &[]);
    wait_for(
        "the good agent on the console",
        Duration::from_secs(20),
        || (listed(console).len() == 1).then_some(()),
    );
    let refused = wait_for(
        "the refusal in /v1/lasterror",
        Duration::from_secs(20),
        || {
            let (_, body) = try_request(bad.api, "GET", "/v1/lasterror", &[], b"").ok()?;
            let text = String::from_utf8_lossy(&body).into_owned();
            text.contains("HTTP 401").then_some(text)
        },
    );
    assert!(refused.contains("--tokens"), "{refused}");
    let agents = listed(console);
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["name"], "agent-a");
    assert_eq!(
        agents[0]["info"]["install_dir"],
        good.workdir().display().to_string()
    );
    assert_eq!(bad.metric("datakit_dca_connected"), Some(0.0));
    // A page request for an agent that is not there says so.
    let (status, _) = try_request(console, "GET", "/api/agents/nope/stats", &[], b"").unwrap();
    assert_eq!(status, 404);
}
