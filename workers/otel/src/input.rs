//! The running `[[inputs.opentelemetry]]` instance: the gRPC server on its inherited
//! listener; its HTTP routes are served by the API port and handled by [`Receiver::http`].

use std::sync::Arc;

use dk_proto::Category;
use dk_worker::{Input, InputContext, Telemetry};
use futures::future::BoxFuture;

use crate::INPUT_NAME;
use crate::config::grpc_address;
use crate::grpc::{self, Otlp};
use crate::receiver::{Receiver, Signal};
use dk_worker::http::{HttpRequest, HttpRoute, Method};

/// One running instance.
pub struct OtelInput {
    receiver: Arc<Receiver>,
    telemetry: Telemetry,
}

impl OtelInput {
    /// The instance answering with `receiver`.
    pub fn new(receiver: Arc<Receiver>, telemetry: Telemetry) -> OtelInput {
        OtelInput {
            receiver,
            telemetry,
        }
    }

    /// The receiver (shared with the HTTP routes).
    pub fn receiver(&self) -> &Arc<Receiver> {
        &self.receiver
    }
}

impl Input for OtelInput {
    fn name(&self) -> &str {
        INPUT_NAME
    }

    /// The OTLP/HTTP routes: each decodes its body and maps it with the instance's options.
    fn routes(&self) -> Vec<HttpRoute> {
        let cfg = &self.receiver.cfg;
        [
            (&cfg.trace_api, Signal::Traces),
            (&cfg.metric_api, Signal::Metrics),
            (&cfg.logs_api, Signal::Logs),
        ]
        .into_iter()
        .map(|(path, signal)| {
            let receiver = self.receiver.clone();
            HttpRoute::new(
                Method::Post,
                path.clone(),
                INPUT_NAME,
                move |req: HttpRequest| receiver.http(signal, &req),
            )
        })
        .collect()
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.telemetry.register(&ctx);
            self.receiver.set_host(&ctx.hostname);
            let cfg = &self.receiver.cfg;
            let address = grpc_address(&cfg.grpc_addr);
            let listener = match dk_worker::listen::tcp(&ctx, &address).and_then(|l| {
                tokio::net::TcpListener::from_std(l).map_err(|source| {
                    dk_worker::listen::ListenError::Dup {
                        address: address.clone(),
                        fd: -1,
                        source,
                    }
                })
            }) {
                Ok(l) => l,
                Err(e) => {
                    ctx.emitter
                        .last_error(INPUT_NAME, INPUT_NAME, Category::Tracing, e.to_string())
                        .await;
                    ctx.shutdown.cancelled().await;
                    return;
                }
            };
            let lt = self.telemetry.listener(INPUT_NAME, &address);
            let otlp = Otlp::new(self.receiver.clone(), ctx.emitter.clone());
            let served = grpc::serve(
                listener,
                otlp,
                cfg.max_payload,
                cfg.max_connections,
                cfg.max_streams,
                lt,
                ctx.shutdown.clone(),
            )
            .await;
            if let Err(e) = served {
                ctx.emitter
                    .last_error(
                        INPUT_NAME,
                        INPUT_NAME,
                        Category::Tracing,
                        format!("OTLP/gRPC on {} stopped: {e}", cfg.grpc_addr),
                    )
                    .await;
                ctx.shutdown.cancelled().await;
            }
        })
    }
}
