//! The running `pyroscope` input: the `/ingest` handler (validation and the profile point,
//! see [`crate::ingest`]) served on the API port through the route hook and on the input's
//! own port through the kit's `serve::http`.
//!
//! The handler is synchronous and runs off the runtime (both servers call it from the
//! blocking pool). A refused upload is answered 400 with the reason, counted in
//! `datakit_input_parse_errors_total{input="pyroscope",reason}` and logged at most every
//! [`dk_worker::serve::REPORT_EVERY`]. The routes are durable: on both ports the 200 waits
//! until the profile is in the durable queue.

use std::sync::Arc;

use dk_proto::Category;
use dk_worker::http::{HttpAnswer, HttpRequest, HttpRoute, Method, RouteTable};
use dk_worker::serve::Tally;
use dk_worker::serve::http::{HttpOptions, serve};
use dk_worker::telemetry::Telemetry;
use dk_worker::{FeedOpts, Input, InputContext};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;

use crate::config::PyroscopeConfig;
use crate::ingest::{self, REASONS, Upload};

/// The input and feed name.
pub const INPUT_NAME: &str = "pyroscope";

/// One `[[inputs.pyroscope]]` instance, ready to run.
pub struct PyroscopeInput {
    cfg: Arc<PyroscopeConfig>,
    telemetry: Telemetry,
    handler: Arc<Handler>,
}

/// The `/ingest` handler of one instance.
pub struct Handler {
    cfg: Arc<PyroscopeConfig>,
    refused: Vec<(&'static str, Counter)>,
    report: Tally,
}

impl Handler {
    /// A handler for `cfg`, counting refusals in `telemetry`.
    pub fn new(cfg: Arc<PyroscopeConfig>, telemetry: &Telemetry) -> Handler {
        Handler {
            cfg,
            refused: REASONS
                .iter()
                .map(|r| (*r, telemetry.parse_error(INPUT_NAME, r)))
                .collect(),
            report: Tally::default(),
        }
    }

    /// Validates one upload: 200 and its profiling point, or 400 saying why.
    pub fn handle(&self, req: &HttpRequest) -> HttpAnswer {
        let upload = Upload {
            query: &req.query,
            content_type: req.header("content-type").unwrap_or(""),
            body: &req.body,
        };
        match ingest::accept(upload, &self.cfg.tags, self.cfg.body_limit) {
            Ok(profile) => HttpAnswer {
                points: vec![(Category::Profiling, vec![profile.into_point()])],
                ..HttpAnswer::text(200, "")
            },
            Err(e) => {
                let reason = e.reason();
                if let Some((_, c)) = self.refused.iter().find(|(r, _)| *r == reason) {
                    c.inc();
                }
                if let Some(n) = self.report.due(1) {
                    tracing::warn!(
                        input = INPUT_NAME,
                        refused = n,
                        "refused {n} profile upload(s) since the last report; last: {e}"
                    );
                }
                HttpAnswer::text(400, format!("pyroscope: {e}\n"))
            }
        }
    }
}

impl PyroscopeInput {
    /// An instance; the instances of one worker share `telemetry`.
    pub fn new(cfg: PyroscopeConfig, telemetry: Telemetry) -> PyroscopeInput {
        let cfg = Arc::new(cfg);
        let handler = Arc::new(Handler::new(cfg.clone(), &telemetry));
        PyroscopeInput {
            cfg,
            telemetry,
            handler,
        }
    }

    /// `POST <endpoint>` for every endpoint, answered by the handler.
    fn route_list(&self) -> Vec<HttpRoute> {
        self.cfg
            .endpoints
            .iter()
            .map(|path| {
                let h = self.handler.clone();
                HttpRoute::new(
                    Method::Post,
                    path.clone(),
                    INPUT_NAME,
                    move |req: HttpRequest| h.handle(&req),
                )
                .with_feed(FeedOpts {
                    election: self.cfg.election,
                    ..FeedOpts::default()
                })
            })
            .collect()
    }
}

impl Input for PyroscopeInput {
    fn name(&self) -> &str {
        INPUT_NAME
    }

    fn routes(&self) -> Vec<HttpRoute> {
        self.route_list()
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(run(*self, ctx))
    }
}

async fn run(input: PyroscopeInput, ctx: InputContext) {
    input.telemetry.register(&ctx);
    let Some(listen) = input.cfg.listen.clone() else {
        ctx.shutdown.cancelled().await;
        return;
    };
    let mut table = RouteTable::default();
    for route in input.route_list() {
        if let Err(e) = table.add(route) {
            tracing::warn!(input = INPUT_NAME, "{e}");
        }
    }
    let listener = match dk_worker::listen::tcp(&ctx, &listen).map(TcpListener::from_std) {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return startup_error(&ctx, &listen, &e.to_string()).await,
        Err(e) => return startup_error(&ctx, &listen, &e.to_string()).await,
    };
    tracing::info!(
        input = INPUT_NAME,
        address = listen,
        endpoints = ?input.cfg.endpoints,
        "Pyroscope input listening."
    );
    let opts = HttpOptions {
        max_body: input.cfg.body_limit,
        too_large_status: 400,
        // pyroscope-io gzips its pprof with Content-Encoding: gzip; the bytes are forwarded
        // as sent (a gzipped pprof is a pprof), as Datakit does and as 9529 hands them over.
        pass_encoded: true,
        ..HttpOptions::default()
    };
    serve(
        listener,
        Arc::new(table),
        opts,
        input.telemetry.listener(INPUT_NAME, &listen),
        ctx.emitter.clone(),
        ctx.shutdown.clone(),
    )
    .await;
}

async fn startup_error(ctx: &InputContext, address: &str, err: &str) {
    let message = format!("pyroscope {address}: cannot serve HTTP: {err}");
    ctx.startup_error(INPUT_NAME, Category::Profiling, message)
        .await;
    ctx.shutdown.cancelled().await;
}
