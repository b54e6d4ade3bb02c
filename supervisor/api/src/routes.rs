//! The small built-in routes: ping, ntp, lasterror, metrics and the 404 page.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::Inner;
use crate::error::ApiError;
use crate::middleware::ClientInfo;
use crate::write::read_body;

/// Cap on a `/v1/lasterror` body.
const LASTERROR_MAX_BODY: usize = 1024 * 1024;

/// A wrapped success: `{"content": ...}` with Datakit's headers.
pub(crate) fn wrapped<T: Serialize>(content: &T) -> Response {
    #[derive(Serialize)]
    struct Wrapped<'a, T> {
        content: &'a T,
    }
    match serde_json::to_vec(&Wrapped { content }) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => ApiError::Untyped(format!("encoding the response failed: {e}")).into_response(),
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

fn uptime(inner: &Inner) -> String {
    let up = inner.state.info.started.elapsed();
    // Millisecond precision is enough for humans and keeps the string short.
    dk_proto::duration::format(Duration::from_millis(
        u64::try_from(up.as_millis()).unwrap_or(u64::MAX),
    ))
}

/// `GET /v1/ping`.
pub(crate) async fn ping(State(inner): State<Arc<Inner>>) -> Response {
    #[derive(Serialize)]
    struct Ping<'a> {
        version: &'a str,
        uptime: String,
        host: &'a str,
        commit: &'a str,
    }
    let info = &inner.state.info;
    wrapped(&Ping {
        version: &info.version,
        uptime: uptime(&inner),
        host: &info.hostname,
        commit: &info.commit,
    })
}

/// `GET /v1/ntp` (unwrapped, like Dataway's).
pub(crate) async fn ntp() -> Response {
    #[derive(Serialize)]
    struct Ntp {
        timestamp_sec: u64,
    }
    let timestamp_sec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match serde_json::to_vec(&Ntp { timestamp_sec }) {
        Ok(b) => json_response(StatusCode::OK, b),
        Err(e) => ApiError::Untyped(format!("encoding the response failed: {e}")).into_response(),
    }
}

#[derive(Deserialize)]
struct LastErrorBody {
    #[serde(default)]
    input: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    err_content: String,
}

/// `POST /v1/lasterror`: an external input reports an error. A bad body is the client's
/// fault: 400 naming what is wrong (Datakit answers an untyped 500).
pub(crate) async fn lasterror_post(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, &parts.headers, LASTERROR_MAX_BODY, None, 0).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let em: LastErrorBody = match serde_json::from_slice(&body) {
        Ok(em) => em,
        Err(e) => {
            return ApiError::BadRequest(format!(
                "the body must be a JSON object {{\"input\":\"...\",\"source\":\"...\",\"err_content\":\"...\"}}: {e}"
            ))
            .into_response();
        }
    };
    let missing: Vec<&str> = [("input", &em.input), ("err_content", &em.err_content)]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| k)
        .collect();
    if !missing.is_empty() {
        return ApiError::BadRequest(format!(
            "missing or empty {}: both input and err_content are required",
            missing.join(" and ")
        ))
        .into_response();
    }
    inner
        .state
        .last_errors
        .record(&em.input, &em.source, "", &em.err_content);
    StatusCode::OK.into_response()
}

/// `GET /v1/lasterror` (our addition, loopback only): the recent errors, newest last.
pub(crate) async fn lasterror_get(
    State(inner): State<Arc<Inner>>,
    client: Option<Extension<ClientInfo>>,
) -> Response {
    if !client.is_some_and(|Extension(c)| c.loopback) {
        return ApiError::PublicAccessDisabled(
            "api /v1/lasterror (GET) is only served to loopback(localhost) clients".into(),
        )
        .into_response();
    }
    wrapped(&inner.state.last_errors.recent())
}

/// `GET /v1/election/info` (loopback only): this node's election state, in Datakit's envelope.
pub(crate) async fn election_info(
    State(inner): State<Arc<Inner>>,
    client: Option<Extension<ClientInfo>>,
) -> Response {
    if !client.is_some_and(|Extension(c)| c.loopback) {
        return ApiError::PublicAccessDisabled(
            "api /v1/election/info is only served to loopback(localhost) clients".into(),
        )
        .into_response();
    }
    match &inner.state.election {
        Some(info) => wrapped(&info()),
        None => wrapped(&serde_json::json!({ "status": "disabled" })),
    }
}

/// `GET /metrics`: the whole registry in the OpenMetrics text format.
pub(crate) async fn metrics(State(inner): State<Arc<Inner>>) -> Response {
    inner.state.worker_metrics.refresh().await;
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &inner.state.registry) {
        return ApiError::Untyped(format!("encoding metrics failed: {e}")).into_response();
    }
    // Worker metrics go before the final `# EOF`.
    if out.ends_with("# EOF\n") {
        out.truncate(out.len() - "# EOF\n".len());
    }
    inner.state.worker_metrics.render(&mut out);
    out.push_str("# EOF\n");
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        out,
    )
        .into_response()
}

/// Unknown routes (and known paths with another method): the welcome page, or a plain 404.
pub(crate) async fn page404(State(inner): State<Arc<Inner>>) -> Response {
    if inner.state.config.disable_404page {
        return (
            StatusCode::NOT_FOUND,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            "404 page not found",
        )
            .into_response();
    }
    let info = &inner.state.info;
    let page = format!(
        "<!doctype html>\n<html>\n<head><meta charset=\"UTF-8\"><title>DataKit</title></head>\n<body>\n<pre>\n    Version: {}\n    OS/Arch: {}\n     Commit: {}\n     Uptime: {}\n</pre>\n<p>Welcome to use DataKit.</p>\n</body>\n</html>\n",
        html_escape(&info.version),
        html_escape(&info.os_arch),
        html_escape(&info.commit),
        uptime(&inner),
    );
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))],
        page,
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}
