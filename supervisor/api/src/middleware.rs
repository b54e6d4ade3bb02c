//! The per-request pipeline in Datakit's order: timeout, `X-DataKit`, CORS, whitelist, rate limit, metrics.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::connect_info::{ConnectInfo, MockConnectInfo};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dk_proto::Category;
use futures::FutureExt;

use crate::Inner;
use crate::error::ApiError;
use crate::metrics::ApiLabels;

/// Who sent the request, as the handlers see it (inserted by the pipeline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client IP: first `X-Forwarded-For` entry, else `X-Real-IP`, else the peer.
    pub ip: String,
    /// A loopback (or Unix-socket) peer without any `X-Forwarded-For` / `X-Real-IP` header.
    pub loopback: bool,
}

/// Datakit's fixed `Access-Control-Allow-Headers` list.
const CORS_ALLOW_HEADERS: &str = "Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token, Authorization, Accept, Accept-Language, Content-Language, Origin, Cache-Control, X-Requested-With, X-Token, X-Datakit-UUID, X-RP, X-Precision, X-Lua, *";

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// The header every response carries: `<version>/<hostname>`.
pub const X_DATAKIT: HeaderName = HeaderName::from_static("x-datakit");

/// The `api` metric label: the path of a known route, `/v1/write/:category` for an
/// unknown category, `404-page` for everything else (bounded cardinality).
pub(crate) fn api_label(path: &str) -> Option<&str> {
    match path {
        "/v1/ping" | "/v1/ntp" | "/v1/lasterror" | "/metrics" => Some(path),
        _ => match path.strip_prefix("/v1/write/") {
            Some(cat) if Category::WRITABLE.iter().any(|c| c.name() == cat) => Some(path),
            Some(cat) if !cat.is_empty() && !cat.contains('/') => Some("/v1/write/:category"),
            _ => None,
        },
    }
}

fn peer_of(req: &Request) -> Option<SocketAddr> {
    let ext = req.extensions();
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| ext.get::<MockConnectInfo<SocketAddr>>().map(|m| m.0))
}

/// Classifies the client of a request. A request without any peer address is external.
pub(crate) fn client_info(headers: &HeaderMap, peer: Option<SocketAddr>) -> ClientInfo {
    let xff = headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok());
    let real = headers.get(X_REAL_IP).and_then(|v| v.to_str().ok());
    let proxied = headers.contains_key(X_FORWARDED_FOR) || headers.contains_key(X_REAL_IP);
    let peer_loopback = peer.is_some_and(|p| p.ip().to_canonical().is_loopback());
    let ip = xff
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .or(real.map(str::trim).filter(|v| !v.is_empty()))
        .map(str::to_string)
        .or_else(|| peer.map(|p| p.ip().to_canonical().to_string()))
        .unwrap_or_default();
    ClientInfo {
        ip,
        loopback: peer_loopback && !proxied,
    }
}

fn cors_headers(inner: &Inner, req_headers: &HeaderMap) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let origin = req_headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*");
    let allowed = &inner.state.config.allowed_cors_origins;
    if !allowed.is_empty() && !allowed.iter().any(|o| o == origin || o == "*") {
        return None;
    }
    let mut allow_headers = CORS_ALLOW_HEADERS.to_string();
    if let Some(extra) = req_headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
    {
        allow_headers.push_str(", ");
        allow_headers.push_str(extra);
    }
    Some(vec![
        (
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_str(origin).ok()?,
        ),
        (
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        ),
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_str(&allow_headers).ok()?,
        ),
        (
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS, GET, PUT"),
        ),
        (
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("7200"),
        ),
    ])
}

/// The middleware wrapping every route and the fallback.
pub(crate) async fn pipeline(
    State(inner): State<Arc<Inner>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let cors = cors_headers(&inner, req.headers());
    let timeout = inner.state.config.timeout;

    // A panic in a handler answers 500 instead of dropping the connection (Datakit's recovery).
    let work = AssertUnwindSafe(guarded(&inner, req, next, &path))
        .catch_unwind()
        .map(|r| {
            r.unwrap_or_else(|_| {
                tracing::error!("an API handler panicked; answered 500");
                ApiError::Untyped("internal error".into()).into_response()
            })
        });
    let mut resp = if timeout.is_zero() {
        work.await
    } else {
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => (
                StatusCode::REQUEST_TIMEOUT,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )],
                format!("timeout({})", dk_proto::duration::format(timeout)),
            )
                .into_response(),
        }
    };

    let h = resp.headers_mut();
    h.insert(X_DATAKIT, inner.x_datakit.clone());
    for (k, v) in cors.into_iter().flatten() {
        h.insert(k, v);
    }
    if method != Method::OPTIONS {
        let status = resp.status();
        inner.state.metrics.observe(
            ApiLabels {
                api: api_label(&path).unwrap_or("404-page").to_string(),
                method: method.as_str().to_string(),
                status: status
                    .canonical_reason()
                    .unwrap_or(status.as_str())
                    .to_string(),
            },
            start.elapsed().as_secs_f64(),
        );
    }
    resp
}

/// CORS preflight, whitelist and rate limit, then the route.
async fn guarded(inner: &Inner, mut req: Request, next: Next, path: &str) -> Response {
    if req.method() == Method::OPTIONS {
        return StatusCode::NO_CONTENT.into_response();
    }
    let peer = peer_of(&req);
    let client = client_info(req.headers(), peer);
    if !client.loopback && !inner.whitelist.contains(path) {
        return ApiError::PublicAccessDisabled(format!(
            "api {path} disabled from external IP, only loopback(localhost) allowed"
        ))
        .into_response();
    }
    let mut rate_headers = None;
    if let Some(limiter) = inner.limiter.as_ref()
        && api_label(path).is_some()
    {
        let hv = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
        rate_headers = Some([
            (
                HeaderName::from_static("x-rate-limit-limit"),
                hv(&format!("{:.2}", limiter.rate())),
            ),
            (
                HeaderName::from_static("x-rate-limit-duration"),
                HeaderValue::from_static("1"),
            ),
            (
                HeaderName::from_static("x-rate-limit-request-remote-addr"),
                hv(&peer.map(|p| p.to_string()).unwrap_or_default()),
            ),
            (
                HeaderName::from_static("x-rate-limit-request-forwarded-for"),
                req.headers()
                    .get(X_FORWARDED_FOR)
                    .cloned()
                    .unwrap_or(HeaderValue::from_static("")),
            ),
        ]);
        if !limiter.allow(&client.ip, path, Instant::now()) {
            tracing::debug!(path, ip = %client.ip, "request rate limit reached");
            let mut resp = ApiError::ReachMaxApiLimit.into_response();
            resp.headers_mut()
                .extend(rate_headers.into_iter().flatten());
            return resp;
        }
    }
    req.extensions_mut().insert(client);
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .extend(rate_headers.into_iter().flatten());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_requires_a_loopback_peer_and_no_proxy_headers() {
        let lo: SocketAddr = ([127, 0, 0, 1], 5555).into();
        let ext: SocketAddr = ([10, 1, 2, 3], 5555).into();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap_or(lo);
        let none = HeaderMap::new();
        assert!(client_info(&none, Some(lo)).loopback);
        assert!(client_info(&none, Some(mapped)).loopback);
        assert!(!client_info(&none, Some(ext)).loopback);
        assert!(!client_info(&none, None).loopback);
        let mut xff = HeaderMap::new();
        xff.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_static("9.9.9.9, 1.1.1.1"),
        );
        let c = client_info(&xff, Some(lo));
        assert_eq!(
            c,
            ClientInfo {
                ip: "9.9.9.9".into(),
                loopback: false
            }
        );
        let mut real = HeaderMap::new();
        real.insert(X_REAL_IP, HeaderValue::from_static("8.8.8.8"));
        assert_eq!(client_info(&real, Some(lo)).ip, "8.8.8.8");
        assert_eq!(client_info(&none, Some(ext)).ip, "10.1.2.3");
    }

    #[test]
    fn api_labels_are_bounded() {
        assert_eq!(api_label("/v1/write/metric"), Some("/v1/write/metric"));
        assert_eq!(api_label("/v1/write/foo"), Some("/v1/write/:category"));
        assert_eq!(api_label("/v1/ping"), Some("/v1/ping"));
        assert_eq!(api_label("/nope"), None);
        assert_eq!(api_label("/v1/write/a/b"), None);
    }
}
