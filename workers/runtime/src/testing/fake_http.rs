//! A local HTTP/1.1 server for tests that stands in for a remote service (a cloud metadata
//! service, an exporter): it answers the routes it was given, 404 otherwise, records every
//! request, and can require a header as a token-protected service does.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One recorded request: method, path with query, headers (lower-case names).
pub type Seen = (String, String, Vec<(String, String)>);

/// The running server (its threads live as long as the test process).
pub struct FakeHttp {
    /// Where it listens (loopback, ephemeral port).
    pub addr: SocketAddr,
    /// Every request so far.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeHttp {
    /// Serves `routes` (`"GET /path?query"` → body, 200). With `token`, a request other than
    /// `PUT` without header `X-aws-ec2-metadata-token: <token>` gets 401, as AWS IMDSv2
    /// answers.
    pub fn start(routes: &[(&str, &str)], token: Option<&str>) -> FakeHttp {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = l.local_addr().expect("local address");
        let routes: Arc<HashMap<String, String>> = Arc::new(
            routes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let token = token.map(str::to_string);
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (routes, token, log) = (routes.clone(), token.clone(), log.clone());
                std::thread::spawn(move || answer(conn, &routes, token.as_deref(), &log));
            }
        });
        FakeHttp { addr, seen }
    }

    /// A server that accepts connections and never answers; one message per connection.
    pub fn blackhole() -> (SocketAddr, std::sync::mpsc::Receiver<()>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = l.local_addr().expect("local address");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in l.incoming().flatten() {
                held.push(c);
                let _ = tx.send(());
            }
        });
        (addr, rx)
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `"METHOD /path"` of every request so far.
    pub fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .map(|s| s.iter().map(|(m, p, _)| format!("{m} {p}")).collect())
            .unwrap_or_default()
    }
}

fn answer(
    mut conn: TcpStream,
    routes: &HashMap<String, String>,
    token: Option<&str>,
    log: &Mutex<Vec<Seen>>,
) {
    let Ok(read) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(read);
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim().split_once(':') {
            headers.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    let mut words = first.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let authorised = token.is_none_or(|t| {
        method == "PUT"
            || headers
                .iter()
                .any(|(k, v)| k == "x-aws-ec2-metadata-token" && v == t)
    });
    let route = routes.get(&format!("{method} {path}")).cloned();
    if let Ok(mut l) = log.lock() {
        l.push((method, path, headers));
    }
    let (status, body) = match route {
        _ if !authorised => ("401 Unauthorized", String::new()),
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", String::new()),
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
