//! The running `beats_output` input: lumberjack v2 connections on the kit's TCP serving.
//!
//! # Design
//!
//! Each connection feeds what it reads to its pure [`Decoder`]; once a window is complete the
//! kit stops reading and calls `flush`, which maps the window's events to logging points,
//! hands them over with [`dk_worker::Emitter::emit_acked`] and waits until the supervisor has
//! them in its durable queue. Only then is the ack (`'2' 'A'` with the window's last
//! sequence number) written back, by the kit, before the connection reads on; while it
//! waits, the kit writes go-lumber's keepalive (`'2' 'A' 0`) every 3 s. Points that
//! were not acknowledged (supervisor gone, batch rejected) close the connection without an
//! ack: the client sends the window again (at least once, never acknowledged-and-lost). A
//! protocol error is counted, reported at most once per [`dk_worker::serve::REPORT_EVERY`]
//! and closes the connection; an incomplete window at close is dropped (the client resends).
//!
//! With `tls_cert_file`/`tls_key_file` the listener speaks TLS (rustls with ring): the files
//! are read once when the input starts (a bad file is reported and the input serves nothing),
//! each handshake runs in its connection's task under the connection cap and within
//! `tls_handshake_timeout`; a failed or slow handshake closes the connection and is counted
//! (`datakit_input_dropped_total{reason="tls_handshake"}`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dk_proto::clock::now_ns;
use dk_proto::{Category, Point};
use dk_worker::serve::{Tally, tcp};
use dk_worker::telemetry::Telemetry;
use dk_worker::{FeedOpts, Input, InputContext};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;

use crate::config::{BeatsConfig, Tls};
use crate::frame::{self, Decoder, FrameError, Limits};
use crate::mapping::{Mapping, Skip};

/// The input name.
pub const INPUT_NAME: &str = "beats_output";

/// One `[[inputs.beats_output]]` instance, ready to run.
pub struct BeatsInput {
    cfg: BeatsConfig,
    telemetry: Telemetry,
    keepalive: Duration,
}

impl BeatsInput {
    /// An instance from its checked config; the instances of one worker share `telemetry`.
    pub fn new(cfg: BeatsConfig, telemetry: Telemetry) -> BeatsInput {
        BeatsInput {
            cfg,
            telemetry,
            keepalive: frame::KEEPALIVE_EVERY,
        }
    }
}

impl Input for BeatsInput {
    fn name(&self) -> &str {
        INPUT_NAME
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(serve(*self, ctx))
    }
}

/// What the connections of one instance share.
struct Shared {
    ctx: InputContext,
    mapping: Mapping,
    feed: String,
    limits: Limits,
    listen: String,
    protocol_errors: Counter,
    no_message: Counter,
    too_long: Counter,
    unacked: Counter,
    report: Tally,
    keepalive: Duration,
}

/// One client connection.
struct Connection {
    shared: Arc<Shared>,
    decoder: Decoder,
    error: Option<FrameError>,
    ack: Option<u32>,
    peer: SocketAddr,
}

impl Connection {
    async fn report(&self, message: String) {
        tracing::warn!(input = INPUT_NAME, "{message}");
        self.shared
            .ctx
            .emitter
            .last_error(INPUT_NAME, INPUT_NAME, Category::Logging, message)
            .await;
    }
}

impl tcp::Connection for Connection {
    fn data(&mut self, bytes: &[u8]) {
        if self.error.is_none()
            && let Err(e) = self.decoder.feed(bytes)
        {
            self.error = Some(e);
        }
    }

    fn full(&self) -> bool {
        self.decoder.has_ready() || self.error.is_some()
    }

    fn finish(&mut self) {}

    async fn flush(&mut self) -> bool {
        if let Some(e) = self.error.take() {
            // Windows complete before the error are not acknowledged either: the client
            // resends from its last ack.
            let _ = self.decoder.take();
            self.shared.protocol_errors.inc();
            if let Some(n) = self.shared.report.due(1) {
                let s = &self.shared;
                self.report(format!(
                    "beats_output {}: closed {n} connection(s) on a protocol error; last from {}: {e}",
                    s.listen, self.peer
                ))
                .await;
            }
            return false;
        }
        let windows = self.decoder.take();
        let Some(last) = windows.last().map(|w| w.ack) else {
            return true;
        };
        let now = now_ns();
        let mut points: Vec<Point> =
            Vec::with_capacity(windows.iter().map(|w| w.events.len()).sum());
        for w in &windows {
            self.shared.too_long.inc_by(u64::from(w.skipped));
            for e in &w.events {
                match self.shared.mapping.point(&e.json, now) {
                    Ok(p) => points.push(p),
                    Err(Skip::NoMessage) => {
                        self.shared.no_message.inc();
                    }
                }
            }
        }
        let s = &self.shared;
        let durable = s
            .ctx
            .emitter
            .emit_acked(Category::Logging, &s.feed, FeedOpts::default(), points)
            .await
            .await;
        if !durable {
            s.unacked.inc();
            return false;
        }
        self.ack = Some(last);
        true
    }

    fn reply(&mut self) -> Option<Vec<u8>> {
        self.ack.take().map(|seq| frame::ack(seq).to_vec())
    }

    fn keepalive(&self) -> Option<(Duration, &'static [u8])> {
        Some((self.shared.keepalive, &frame::KEEPALIVE))
    }
}

async fn serve(input: BeatsInput, ctx: InputContext) {
    let BeatsInput {
        cfg,
        telemetry,
        keepalive,
    } = input;
    telemetry.register(&ctx);
    if !cfg.pipeline.is_empty() {
        tracing::warn!(
            input = INPUT_NAME,
            pipeline = cfg.pipeline,
            "Pipeline scripts are not run yet; beats events are stored as received"
        );
    }
    let acceptor = match &cfg.tls {
        None => None,
        Some(tls) => {
            let files = tls.clone();
            match tokio::task::spawn_blocking(move || acceptor(&files)).await {
                Ok(Ok(a)) => Some(a),
                Ok(Err(e)) => return startup_error(&ctx, &cfg.listen, &e).await,
                Err(e) => return startup_error(&ctx, &cfg.listen, &e.to_string()).await,
            }
        }
    };
    let listener = match dk_worker::listen::tcp(&ctx, &cfg.listen).map(TcpListener::from_std) {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return startup_error(&ctx, &cfg.listen, &e.to_string()).await,
        Err(e) => return startup_error(&ctx, &cfg.listen, &e.to_string()).await,
    };
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        feed: cfg.feed(),
        mapping: cfg.mapping.clone(),
        limits: Limits {
            max_event: cfg.maximum_length,
            ..Limits::default()
        },
        listen: cfg.listen.clone(),
        protocol_errors: telemetry.parse_error(INPUT_NAME, "protocol"),
        no_message: telemetry.dropped(INPUT_NAME, "no_message"),
        too_long: telemetry.dropped(INPUT_NAME, "too_long"),
        unacked: telemetry.dropped(INPUT_NAME, "not_durable"),
        report: Tally::default(),
        keepalive,
    });
    tracing::info!(
        input = INPUT_NAME,
        listen = cfg.listen,
        tls = acceptor.is_some(),
        "Beats (lumberjack v2) input listening."
    );
    let listener_telemetry = telemetry.listener(INPUT_NAME, &cfg.listen);
    let make = {
        let shared = shared.clone();
        move |peer| Connection {
            decoder: Decoder::new(shared.limits),
            shared: shared.clone(),
            error: None,
            ack: None,
            peer,
        }
    };
    let opts = tcp::TcpOptions::default();
    match (acceptor, &cfg.tls) {
        (Some(acceptor), Some(tls)) => {
            let handshake = Handshake {
                acceptor,
                timeout: tls.handshake_timeout,
                failed: telemetry.dropped(INPUT_NAME, "tls_handshake"),
                shared,
            };
            let handshake = Arc::new(handshake);
            tcp::serve_with(
                listener,
                opts,
                listener_telemetry,
                ctx.shutdown.clone(),
                make,
                move |stream, peer| {
                    let h = handshake.clone();
                    async move { h.accept(stream, peer).await }
                },
            )
            .await;
        }
        _ => {
            tcp::serve(
                listener,
                opts,
                listener_telemetry,
                ctx.shutdown.clone(),
                make,
            )
            .await;
        }
    }
}

/// The TLS side of a listener.
struct Handshake {
    acceptor: tokio_rustls::TlsAcceptor,
    timeout: Duration,
    failed: Counter,
    shared: Arc<Shared>,
}

impl Handshake {
    /// The TLS session of `stream`, or `None` (counted, reported at most once per
    /// [`dk_worker::serve::REPORT_EVERY`]) when the handshake fails or takes too long.
    async fn accept(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
    ) -> Option<tcp::Buffered<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> {
        let why = match tokio::time::timeout(self.timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => return Some(tcp::Buffered::new(tls)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no handshake within {:?}", self.timeout),
        };
        self.failed.inc();
        if let Some(n) = self.shared.report.due(1) {
            let message = format!(
                "beats_output {}: closed {n} connection(s) whose TLS handshake failed; last from {peer}: {why} (is the client using TLS and trusting this certificate?)",
                self.shared.listen
            );
            tracing::warn!(input = INPUT_NAME, "{message}");
            self.shared
                .ctx
                .emitter
                .last_error(INPUT_NAME, INPUT_NAME, Category::Logging, message)
                .await;
        }
        None
    }
}

/// The TLS acceptor of `tls`'s PEM files (blocking: reads them).
fn acceptor(tls: &Tls) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(Iterator::collect)
        .map_err(|e| {
            format!(
                "tls_cert_file {:?}: {e}; give a readable PEM certificate chain",
                tls.cert_file
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "tls_cert_file {:?} holds no PEM certificate; give the server's certificate first, then its chain",
            tls.cert_file
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| {
        format!(
            "tls_key_file {:?}: {e}; give a readable PEM private key (PKCS#8, PKCS#1 or SEC1)",
            tls.key_file
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "tls_cert_file {:?} and tls_key_file {:?} do not make a TLS identity: {e}",
                tls.cert_file, tls.key_file
            )
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn startup_error(ctx: &InputContext, listen: &str, err: &str) {
    let message = format!("beats_output {listen}: cannot serve: {err}");
    ctx.startup_error(INPUT_NAME, Category::Logging, message)
        .await;
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::time::Duration;

    use dk_worker::Emitter;
    use dk_worker::emitter::Message;
    use tokio::sync::mpsc;

    use super::*;
    use crate::config;
    use crate::frame::encode;

    /// The next hand-over that waits for an ack (error reports skipped).
    async fn acked_feed(
        rx: &mut mpsc::Receiver<Message>,
    ) -> (dk_worker::Feed, tokio::sync::oneshot::Sender<bool>) {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(Message::AckedFeed(f, done))) => return (f, done),
                Ok(Some(Message::LastError(_))) => {}
                other => panic!("expected an acked feed, got {other:?}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_window_is_acknowledged_only_after_its_points_are_durable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        let listen = format!("tcp://{at}");
        let cfg = config::parse(&format!("listen = \"{listen}\"\nsource = \"fb\"")).unwrap();
        let (emitter, mut rx) = Emitter::channel(16);
        let (mut ctx, cancel, _pause) = InputContext::for_test(emitter);
        ctx.inherit_tcp(listen.clone(), &listener);
        let task =
            tokio::spawn(Box::new(BeatsInput::new(cfg, Telemetry::default())).run(ctx.clone()));
        let mut client = tokio::task::spawn_blocking(move || {
            let c = std::net::TcpStream::connect(at).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c
        })
        .await
        .unwrap();
        client
            .write_all(&encode::batch(
                5,
                &[br#"{"message":"a"}"#, br#"{"message":"b"}"#, b"{}"],
            ))
            .unwrap();
        let (feed, done) = acked_feed(&mut rx).await;
        assert_eq!(feed.input, "beats_output/fb");
        assert_eq!(feed.category, Category::Logging);
        assert_eq!(
            feed.points.len(),
            2,
            "the event without a message is skipped"
        );
        // Not durable yet: nothing came back.
        client.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let early = client.read(&mut buf);
        assert_eq!(
            early.map_err(|e| e.kind()).err(),
            Some(ErrorKind::WouldBlock)
        );
        client.set_nonblocking(false).unwrap();
        done.send(true).unwrap();
        let mut client = tokio::task::spawn_blocking(move || {
            let mut ack = [0u8; 6];
            client.read_exact(&mut ack).unwrap();
            assert_eq!(
                &ack,
                &frame::ack(7),
                "the ack names the window's last event"
            );
            client
        })
        .await
        .unwrap();

        // A window the supervisor did not take: no ack, the connection closes.
        client
            .write_all(&encode::batch(8, &[br#"{"message":"c"}"#]))
            .unwrap();
        let (_, done) = acked_feed(&mut rx).await;
        done.send(false).unwrap();
        let rest = tokio::task::spawn_blocking(move || {
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).map(|_| rest)
        })
        .await
        .unwrap();
        assert_eq!(rest.ok(), Some(Vec::new()), "closed without an ack");
        let text = dk_worker::telemetry::encode(&ctx);
        let sample = |labels: &str| {
            dk_worker::telemetry::sample(&text, "datakit_input_dropped_total", labels)
        };
        assert_eq!(sample(r#"input="beats_output",reason="no_message""#), 1.0);
        assert_eq!(sample(r#"input="beats_output",reason="not_durable""#), 1.0);
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keepalives_go_out_while_a_window_waits_for_durability_then_the_real_ack() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        let listen = format!("tcp://{at}");
        let cfg = config::parse(&format!("listen = \"{listen}\"")).unwrap();
        let (emitter, mut rx) = Emitter::channel(16);
        let (mut ctx, cancel, _pause) = InputContext::for_test(emitter);
        ctx.inherit_tcp(listen, &listener);
        let mut input = BeatsInput::new(cfg, Telemetry::default());
        assert_eq!(
            input.keepalive,
            Duration::from_secs(3),
            "go-lumber's interval"
        );
        input.keepalive = Duration::from_millis(100);
        let task = tokio::spawn(Box::new(input).run(ctx.clone()));
        let mut client = tokio::task::spawn_blocking(move || {
            let mut c = std::net::TcpStream::connect(at).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(&encode::batch(
                1,
                &[br#"{"message":"a"}"#, br#"{"message":"b"}"#],
            ))
            .unwrap();
            c
        })
        .await
        .unwrap();
        let (_feed, done) = acked_feed(&mut rx).await;
        // The ack is held: the client reads three keepalives meanwhile, then the ack is let go.
        let client_side = tokio::task::spawn_blocking(move || {
            let mut frames = Vec::new();
            for _ in 0..3 {
                let mut f = [0u8; 6];
                client.read_exact(&mut f).unwrap();
                frames.push(f);
            }
            (client, frames)
        });
        let (mut client, frames) = client_side.await.unwrap();
        assert_eq!(frames, vec![frame::KEEPALIVE; 3]);
        assert_eq!(&frame::KEEPALIVE, b"2A\0\0\0\0");
        done.send(true).unwrap();
        let ack = tokio::task::spawn_blocking(move || {
            // Keepalives already on the wire may precede the ack; nothing else may.
            loop {
                let mut f = [0u8; 6];
                client.read_exact(&mut f).unwrap();
                if f != frame::KEEPALIVE {
                    return f;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(ack, frame::ack(2), "then the real ack");
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }

    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// A test CA and a `localhost` certificate it signed, as PEM files in `dir`: (CA, cert,
    /// key) paths.
    fn test_pki(dir: &std::path::Path) -> (String, String, String) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        std::fs::write(path("ca.pem"), pem("CERTIFICATE", ca.der())).unwrap();
        std::fs::write(path("cert.pem"), pem("CERTIFICATE", cert.der())).unwrap();
        std::fs::write(path("key.pem"), pem("PRIVATE KEY", &key.serialize_der())).unwrap();
        (path("ca.pem"), path("cert.pem"), path("key.pem"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn over_tls_a_window_is_acknowledged_and_a_stalled_handshake_is_closed_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = test_pki(dir.path());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        let listen = format!("tcp://{at}");
        let cfg = config::parse(&format!(
            "listen = \"{listen}\"\nsource = \"tls\"\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\"\ntls_handshake_timeout = \"300ms\"\n"
        ))
        .unwrap();
        let (emitter, mut rx) = Emitter::channel(16);
        let (mut ctx, cancel, _pause) = InputContext::for_test(emitter);
        ctx.inherit_tcp(listen, &listener);
        let task =
            tokio::spawn(Box::new(BeatsInput::new(cfg, Telemetry::default())).run(ctx.clone()));

        // A client trusting only the test CA.
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
        let tcp = tokio::net::TcpStream::connect(at).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.expect("handshake");
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        tls.write_all(&encode::batch(
            1,
            &[br#"{"message":"secret 1"}"#, br#"{"message":"secret 2"}"#],
        ))
        .await
        .unwrap();
        let (feed, done) = acked_feed(&mut rx).await;
        assert_eq!(feed.input, "beats_output/tls");
        let messages: Vec<_> = feed
            .points
            .iter()
            .map(|p| p.get_field("message").cloned())
            .collect();
        assert_eq!(
            messages,
            vec![
                Some(dk_proto::Value::S("secret 1".into())),
                Some(dk_proto::Value::S("secret 2".into()))
            ]
        );
        done.send(true).unwrap();
        let mut ack = [0u8; 6];
        tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut ack))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ack, frame::ack(2));

        // A plain client that never starts the handshake is closed after the timeout.
        let started = std::time::Instant::now();
        let closed = tokio::task::spawn_blocking(move || {
            let mut c = std::net::TcpStream::connect(at).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).map(|_| rest)
        })
        .await
        .unwrap();
        assert_eq!(closed.ok(), Some(Vec::new()));
        assert!(started.elapsed() >= Duration::from_millis(300));
        // And lumberjack in clear text on the TLS port is a failed handshake too.
        let refused = tokio::task::spawn_blocking(move || {
            let mut c = std::net::TcpStream::connect(at).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(&encode::batch(1, &[br#"{"message":"clear"}"#]))
                .unwrap();
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest);
            rest
        })
        .await
        .unwrap();
        assert!(!refused.starts_with(b"2A"), "no ack in clear text");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let failed = loop {
            let text = dk_worker::telemetry::encode(&ctx);
            let n = dk_worker::telemetry::sample(
                &text,
                "datakit_input_dropped_total",
                r#"input="beats_output",reason="tls_handshake""#,
            );
            if n >= 2.0 || std::time::Instant::now() > deadline {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(failed, 2.0);
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn an_unreadable_certificate_is_reported_and_nothing_is_served() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = format!("tcp://{}", listener.local_addr().unwrap());
        let cfg = config::parse(&format!(
            "listen = \"{listen}\"\ntls_cert_file = \"/nonexistent/cert.pem\"\ntls_key_file = \"/nonexistent/key.pem\"\n"
        ))
        .unwrap();
        let (emitter, mut rx) = Emitter::channel(16);
        let (mut ctx, _cancel, _pause) = InputContext::for_test(emitter);
        ctx.inherit_tcp(listen, &listener);
        let task = tokio::spawn(Box::new(BeatsInput::new(cfg, Telemetry::default())).run(ctx));
        let report = match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Message::LastError(e))) => e.message,
            other => panic!("expected an error report, got {other:?}"),
        };
        assert!(
            report.contains("tls_cert_file \"/nonexistent/cert.pem\""),
            "{report}"
        );
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the input ends")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_protocol_error_is_counted_reported_and_closes_the_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        let listen = format!("tcp://{at}");
        let cfg = config::parse(&format!("listen = \"{listen}\"")).unwrap();
        let (emitter, mut rx) = Emitter::channel(16);
        let (mut ctx, cancel, _pause) = InputContext::for_test(emitter);
        ctx.inherit_tcp(listen, &listener);
        let task =
            tokio::spawn(Box::new(BeatsInput::new(cfg, Telemetry::default())).run(ctx.clone()));
        let closed = tokio::task::spawn_blocking(move || {
            let mut c = std::net::TcpStream::connect(at).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"1D\0\0\0\x01").unwrap();
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).map(|_| rest)
        });
        let report = match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Message::LastError(e))) => e.message,
            other => panic!("expected an error report, got {other:?}"),
        };
        assert!(report.contains("not lumberjack v2"), "{report}");
        assert_eq!(closed.await.unwrap().ok(), Some(Vec::new()));
        let text = dk_worker::telemetry::encode(&ctx);
        assert_eq!(
            dk_worker::telemetry::sample(
                &text,
                "datakit_input_parse_errors_total",
                r#"input="beats_output",reason="protocol""#
            ),
            1.0
        );
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
}
