//! The API's typed errors and Datakit's error envelope `{"error_code","message"}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error the API answers with, as Datakit names them.
///
/// The wire code is `datakit.` plus the camel-cased [`ApiError::sentence`]; the
/// `message` is the variant's detail (omitted when empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// `/v1/write/<cat>` with a category the write API does not accept.
    #[error("invalid category: {0}")]
    InvalidCategory(String),
    /// A write request without a body.
    #[error("empty body")]
    EmptyBody,
    /// The body decoded to zero usable points; the detail says why.
    #[error("no points: {0}")]
    NoPoints(String),
    /// Decompression failed or the content encoding is not supported.
    #[error("decode body failed: {0}")]
    DecodeBodyFailed(String),
    /// The (decompressed) body is larger than `ApiConfig::max_body_bytes`.
    #[error("body too large: {0}")]
    BodyTooLarge(String),
    /// The line-protocol body does not parse.
    #[error("invalid line point: {0}")]
    InvalidLinePoint(String),
    /// The JSON or PB-JSON body does not parse.
    #[error("invalid json point: {0}")]
    InvalidJsonPoint(String),
    /// The protobuf body does not parse.
    #[error("invalid protobuf point: {0}")]
    InvalidProtobufPoint(String),
    /// `strict` is set and a point needed a fix; the detail is `<kind>: <msg>`.
    #[error("point got warning: {0}")]
    PointGotWarning(String),
    /// A request the API cannot use (e.g. a `/v1/lasterror` body without its fields).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A non-public API called from a non-loopback client.
    #[error("public access disabled: {0}")]
    PublicAccessDisabled(String),
    /// The per-client, per-path rate limit was exceeded.
    #[error("reach max API limit")]
    ReachMaxApiLimit,
    /// Delivery refused the points for now (our addition: Datakit blocks instead).
    #[error("io busy: {0}")]
    IoBusy(String),
    /// Delivery is shutting down.
    #[error("io closed: {0}")]
    IoClosed(String),
    /// An error Datakit reports untyped: 500 and a code without namespace.
    #[error("{0}")]
    Untyped(String),
}

impl ApiError {
    /// The error sentence the wire code is derived from ("invalid line point").
    pub fn sentence(&self) -> &str {
        match self {
            ApiError::InvalidCategory(_) => "invalid category",
            ApiError::EmptyBody => "empty body",
            ApiError::NoPoints(_) => "no points",
            ApiError::DecodeBodyFailed(_) => "decode body failed",
            ApiError::BodyTooLarge(_) => "body too large",
            ApiError::InvalidLinePoint(_) => "invalid line point",
            ApiError::InvalidJsonPoint(_) => "invalid json point",
            ApiError::InvalidProtobufPoint(_) => "invalid protobuf point",
            ApiError::PointGotWarning(_) => "point got warning",
            ApiError::BadRequest(_) => "bad request",
            ApiError::PublicAccessDisabled(_) => "public access disabled",
            ApiError::ReachMaxApiLimit => "reach max API limit",
            ApiError::IoBusy(_) => "io busy",
            ApiError::IoClosed(_) => "io closed",
            ApiError::Untyped(s) => s,
        }
    }

    /// The wire `error_code`: `datakit.<camel>`, or just `<camel>` for untyped errors.
    pub fn code(&self) -> String {
        match self {
            ApiError::Untyped(s) => camel_case("", s),
            other => camel_case("datakit", other.sentence()),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::PublicAccessDisabled(_) => StatusCode::FORBIDDEN,
            ApiError::ReachMaxApiLimit => StatusCode::TOO_MANY_REQUESTS,
            ApiError::IoBusy(_) | ApiError::IoClosed(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Untyped(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The `message` detail (empty for errors that carry none).
    pub fn message(&self) -> &str {
        match self {
            ApiError::EmptyBody | ApiError::ReachMaxApiLimit | ApiError::Untyped(_) => "",
            ApiError::InvalidCategory(m)
            | ApiError::NoPoints(m)
            | ApiError::DecodeBodyFailed(m)
            | ApiError::BodyTooLarge(m)
            | ApiError::InvalidLinePoint(m)
            | ApiError::InvalidJsonPoint(m)
            | ApiError::InvalidProtobufPoint(m)
            | ApiError::PointGotWarning(m)
            | ApiError::BadRequest(m)
            | ApiError::PublicAccessDisabled(m)
            | ApiError::IoBusy(m)
            | ApiError::IoClosed(m) => m,
        }
    }

    /// The same error with `note` appended to its message (untyped and message-less
    /// errors are returned as they are).
    #[must_use]
    pub fn with_note(self, note: &str) -> Self {
        let add = |m: String| format!("{m}; {note}");
        match self {
            ApiError::InvalidCategory(m) => ApiError::InvalidCategory(add(m)),
            ApiError::NoPoints(m) => ApiError::NoPoints(add(m)),
            ApiError::DecodeBodyFailed(m) => ApiError::DecodeBodyFailed(add(m)),
            ApiError::BodyTooLarge(m) => ApiError::BodyTooLarge(add(m)),
            ApiError::InvalidLinePoint(m) => ApiError::InvalidLinePoint(add(m)),
            ApiError::InvalidJsonPoint(m) => ApiError::InvalidJsonPoint(add(m)),
            ApiError::InvalidProtobufPoint(m) => ApiError::InvalidProtobufPoint(add(m)),
            ApiError::PointGotWarning(m) => ApiError::PointGotWarning(add(m)),
            ApiError::BadRequest(m) => ApiError::BadRequest(add(m)),
            ApiError::IoBusy(m) => ApiError::IoBusy(add(m)),
            ApiError::IoClosed(m) => ApiError::IoClosed(add(m)),
            other => other,
        }
    }

    /// The JSON envelope bytes.
    pub fn body(&self) -> Vec<u8> {
        let env = Envelope {
            error_code: self.code(),
            message: self.message(),
        };
        serde_json::to_vec(&env).unwrap_or_else(|_| b"{}".to_vec())
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error_code: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), self.body()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if matches!(self, ApiError::IoBusy(_)) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Datakit's error-code rule: split the sentence on single spaces, keep the first word,
/// title-case the others (each letter after a non-letter is upper-cased), join, and
/// prefix `<namespace>.` when the namespace is not empty.
pub fn camel_case(namespace: &str, sentence: &str) -> String {
    let mut out = String::with_capacity(namespace.len() + sentence.len() + 1);
    if !namespace.is_empty() {
        out.push_str(namespace);
        out.push('.');
    }
    for (i, word) in sentence.split(' ').enumerate() {
        if i == 0 {
            out.push_str(word);
            continue;
        }
        let mut prev_letter = false;
        for c in word.chars() {
            if !prev_letter && c.is_alphabetic() {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            prev_letter = c.is_alphabetic();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_cases_sentences_like_datakit() {
        assert_eq!(
            camel_case("datakit", "invalid line point"),
            "datakit.invalidLinePoint"
        );
        assert_eq!(
            camel_case("datakit", "reach max API limit"),
            "datakit.reachMaxAPILimit"
        );
        assert_eq!(
            camel_case("", "input or errcontent can not be nil"),
            "inputOrErrcontentCanNotBeNil"
        );
    }

    #[test]
    fn every_typed_error_has_its_datakit_code_and_status() {
        let cases = [
            (
                ApiError::InvalidCategory("x".into()),
                "datakit.invalidCategory",
                400,
            ),
            (ApiError::EmptyBody, "datakit.emptyBody", 400),
            (ApiError::NoPoints("x".into()), "datakit.noPoints", 400),
            (
                ApiError::DecodeBodyFailed("x".into()),
                "datakit.decodeBodyFailed",
                400,
            ),
            (
                ApiError::BodyTooLarge("x".into()),
                "datakit.bodyTooLarge",
                413,
            ),
            (
                ApiError::InvalidLinePoint("x".into()),
                "datakit.invalidLinePoint",
                400,
            ),
            (
                ApiError::InvalidJsonPoint("x".into()),
                "datakit.invalidJsonPoint",
                400,
            ),
            (
                ApiError::InvalidProtobufPoint("x".into()),
                "datakit.invalidProtobufPoint",
                400,
            ),
            (
                ApiError::PointGotWarning("x".into()),
                "datakit.pointGotWarning",
                400,
            ),
            (ApiError::BadRequest("x".into()), "datakit.badRequest", 400),
            (
                ApiError::PublicAccessDisabled("x".into()),
                "datakit.publicAccessDisabled",
                403,
            ),
            (ApiError::ReachMaxApiLimit, "datakit.reachMaxAPILimit", 429),
            (ApiError::IoBusy("x".into()), "datakit.ioBusy", 503),
            (ApiError::IoClosed("x".into()), "datakit.ioClosed", 503),
            (ApiError::Untyped("some thing".into()), "someThing", 500),
        ];
        for (err, code, status) in cases {
            assert_eq!(err.code(), code);
            assert_eq!(err.status().as_u16(), status, "{code}");
        }
    }

    #[test]
    fn envelope_omits_empty_message() {
        assert_eq!(
            String::from_utf8(ApiError::ReachMaxApiLimit.body()).unwrap_or_default(),
            r#"{"error_code":"datakit.reachMaxAPILimit"}"#
        );
        assert_eq!(
            String::from_utf8(ApiError::InvalidLinePoint("bad".into()).body()).unwrap_or_default(),
            r#"{"error_code":"datakit.invalidLinePoint","message":"bad"}"#
        );
    }
}
