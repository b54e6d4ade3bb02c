//! Routes that input families serve on the API port (OpenTelemetry, Pyroscope...): the API
//! reads the body under the same limits as writes and forwards the request to the family's
//! worker over its RPC; while the worker is not running the route answers 503 with why, and
//! a crash in the worker never takes the API down.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dk_proto::rpc::{HttpCall, HttpReply};
use futures::future::BoxFuture;

use crate::Inner;
use crate::error::ApiError;
use crate::write::read_body;

/// Room left in an RPC frame for a forwarded request's path, query and headers.
const FRAME_HEADROOM: usize = 256 * 1024;

/// Whether an input serves a request's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteMatch {
    /// An input serves this method and path: forward it.
    Served,
    /// An input serves the path, with other methods: 405.
    OtherMethod,
    /// No input serves the path.
    None,
}

/// Forwards the routes of input families to their workers (implemented by the supervisor).
/// The routes come from the config (they change at a reload), so the API asks for each
/// request that none of its own routes answered.
pub trait RouteForward: Send + Sync + 'static {
    /// Whether an input serves `method path` (`"POST"`, `"/otel/v1/traces"`).
    fn lookup(&self, method: &str, path: &str) -> RouteMatch;

    /// Forwards one request; `Err` says why no worker answered (not running, busy...).
    fn call(&self, call: HttpCall) -> BoxFuture<'static, Result<HttpReply, String>>;
}

/// The fallback of the API: a route an input serves is forwarded to its worker; anything
/// else gets 405 (a served path with another method) or the 404 page.
pub(crate) async fn forward_or_404(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let found = inner.state.routes.as_ref().map_or(RouteMatch::None, |f| {
        f.lookup(req.method().as_str(), req.uri().path())
    });
    match found {
        RouteMatch::Served => forward(inner, req).await,
        RouteMatch::OtherMethod => (
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} does not answer {}", req.uri().path(), req.method()),
        )
            .into_response(),
        RouteMatch::None => crate::routes::page404(State(inner)).await,
    }
}

/// Forwards one request to the worker of the input that serves it.
async fn forward(inner: Arc<Inner>, req: Request) -> Response {
    let Some(fwd) = inner.state.routes.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (parts, body) = req.into_parts();
    let budget = inner.budget.clone();
    let total = budget.total_bytes();
    let mut lease = budget.lease();
    // The request crosses the worker's RPC in one frame: a body that cannot fit is refused
    // here (413) instead of breaking the worker's control connection.
    let max = inner
        .state
        .config
        .max_body_bytes
        .min(dk_proto::rpc::MAX_FRAME_BYTES - FRAME_HEADROOM);
    let body = match read_body(body, &parts.headers, max, Some(&mut lease), total).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let call = HttpCall {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    drop(body);
    match fwd.call(call).await {
        Ok(reply) => {
            let mut resp = Response::new(Body::from(reply.body));
            *resp.status_mut() =
                StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Ok(ct) = HeaderValue::from_str(&reply.content_type) {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            resp
        }
        Err(why) => ApiError::IoBusy(why).into_response(),
    }
}
