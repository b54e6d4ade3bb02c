//! Beats load test through the real agent: starts `datakit run` with one
//! `[[inputs.beats_output]]` instance; `--connections` clients each send `--windows`
//! compressed windows of `--events` Filebeat-like events (as Beats' `output.logstash` does)
//! and wait for each window's ack before the next. Reports acknowledged events/s, the time
//! until the local sink has written them all, and the RSS of the worker and the supervisor.
//!
//! ```sh
//! cargo build --release -p datakit
//! cargo run --release -p dk-input-beats --example beats_load -- \
//!     --datakit target/release/datakit [--connections 4] [--windows 100] [--events 2048] \
//!     [--tls true]
//! ```
//!
//! `--tls true` serves the listener with TLS (a certificate from a CA made for the run) and
//! the clients speak TLS 1.3 (rustls, ring).
#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dk_input_beats::frame::{self, encode};
use dk_worker::testing::load::{LoadAgent, cpu_seconds, free_port, rss_kib};

type Error = Box<dyn std::error::Error>;

fn window(c: usize, w: usize, events: usize) -> Vec<u8> {
    let evs: Vec<Vec<u8>> = (0..events)
        .map(|i| {
            format!(
                r#"{{"@timestamp":"2026-01-01T00:00:00.000Z","message":"127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \"GET /api/v1/items/{c}/{w}/{i} HTTP/1.1\" 200 512","host":{{"name":"web-{c}"}},"log":{{"file":{{"path":"/var/log/nginx/access.log"}},"offset":{i}}},"fields":{{"team":"ops"}}}}"#
            )
            .into_bytes()
        })
        .collect();
    let refs: Vec<&[u8]> = evs.iter().map(Vec::as_slice).collect();
    encode::batch(1, &refs)
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A CA and a `localhost` certificate it signed, written to `dir` as `cert.pem`/`key.pem`;
/// the client config trusting the CA.
fn tls_files(dir: &Path) -> Result<Arc<rustls::ClientConfig>, Error> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    std::fs::create_dir_all(dir)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&key, &ca)?;
    std::fs::write(dir.join("cert.pem"), pem("CERTIFICATE", cert.der()))?;
    std::fs::write(
        dir.join("key.pem"),
        pem("PRIVATE KEY", &key.serialize_der()),
    )?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

trait Wire: Read + Write {}
impl<T: Read + Write> Wire for T {}

fn client(
    port: u16,
    c: usize,
    windows: usize,
    events: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> std::io::Result<()> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut s: Box<dyn Wire> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")
                .map_err(std::io::Error::other)?;
            let conn =
                rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
    };
    let wire: Vec<Vec<u8>> = (0..4).map(|w| window(c, w, events)).collect();
    for w in 0..windows {
        s.write_all(&wire[w % wire.len()])?;
        let mut ack = [0u8; frame::SHORT_FRAME];
        s.read_exact(&mut ack)?;
        if ack != frame::ack(events as u32) {
            return Err(std::io::Error::other(format!("unexpected ack {ack:?}")));
        }
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let (mut datakit, mut connections, mut windows, mut events, mut tls) = (
        PathBuf::from("target/release/datakit"),
        4usize,
        100usize,
        2048usize,
        false,
    );
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--datakit" => datakit = PathBuf::from(value),
            "--connections" => connections = value.parse()?,
            "--windows" => windows = value.parse()?,
            "--events" => events = value.parse()?,
            "--tls" => tls = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let port = free_port()?;
    let mut conf = format!("[[inputs.beats_output]]\n  listen = \"tcp://127.0.0.1:{port}\"\n");
    let pki = std::env::temp_dir().join(format!("dk-beats-load-tls-{}", std::process::id()));
    let client_tls = if tls {
        let config = tls_files(&pki)?;
        conf.push_str(&format!(
            "  tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n",
            pki.join("cert.pem").display(),
            pki.join("key.pem").display()
        ));
        Some(config)
    } else {
        None
    };
    let agent = LoadAgent::start(
        &datakit,
        "beats-load",
        &[("beats_output/beats_output.conf", &conf)],
    )?;
    let worker = agent.wait_worker("beats", Some(port))?;
    let before = agent.sink_points("logging");
    let cpu_before = (cpu_seconds(agent.pid()), cpu_seconds(worker));
    let total = connections * windows * events;
    let start = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|c| {
            let tls = client_tls.clone();
            std::thread::spawn(move || client(port, c, windows, events, tls))
        })
        .collect();
    for c in clients {
        c.join().map_err(|_| "a client panicked")??;
    }
    let acked = start.elapsed();
    let got =
        agent.wait_for_points("logging", before + total as f64, Duration::from_secs(15)) - before;
    let done = start.elapsed();
    let (w_rss, w_hwm) = rss_kib(worker).unwrap_or_default();
    let (s_rss, s_hwm) = rss_kib(agent.pid()).unwrap_or_default();
    println!(
        "beats{}: {total} events ({connections} connections x {windows} windows x {events}) acknowledged in {:.2}s = {:.0} events/s with acks; sink wrote {got} in {:.2}s = {:.0} events/s",
        if tls { " over TLS" } else { "" },
        acked.as_secs_f64(),
        total as f64 / acked.as_secs_f64(),
        done.as_secs_f64(),
        got / done.as_secs_f64()
    );
    println!(
        "cpu: supervisor {:.2}s, worker {:.2}s; rss: worker {w_rss} KiB (peak {w_hwm}), supervisor {s_rss} KiB (peak {s_hwm})",
        cpu_seconds(agent.pid()) - cpu_before.0,
        cpu_seconds(worker) - cpu_before.1
    );
    let _ = std::fs::remove_dir_all(&pki);
    if got < total as f64 {
        return Err(format!("only {got} of {total} events reached the sink").into());
    }
    Ok(())
}
