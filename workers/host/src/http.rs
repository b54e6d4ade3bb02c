//! A minimal HTTP/1.1 client for the host family's own requests (the `dk` input's scrape of
//! `/metrics`, the cloud metadata probes): one connection per request, a deadline over the
//! whole exchange and a cap on the body. Plain `http://` only, as both need.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use thiserror::Error;

/// Why a request got no usable answer.
#[derive(Debug, Error)]
pub enum HttpError {
    /// The URL is not `http://host[:port]/path`.
    #[error("{url:?} is not an http:// URL ({why})")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// Connecting, sending or reading failed.
    #[error("{url}: {why}")]
    Io {
        /// The URL.
        url: String,
        /// What failed.
        why: String,
    },
    /// No answer within the deadline.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The server answered with a status other than 200.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
}

/// A request: method, URL and headers.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// `GET`, `PUT`...
    pub method: http::Method,
    /// `http://host:port/path?query`.
    pub url: &'a str,
    /// Extra headers.
    pub headers: Vec<(&'a str, String)>,
}

impl<'a> Request<'a> {
    /// A `GET` of `url`.
    pub fn get(url: &'a str) -> Self {
        Request {
            method: http::Method::GET,
            url,
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Sends `req` and returns the body of a 200 answer, at most `max_body` bytes, all within
/// `timeout`.
///
/// # Errors
/// A bad URL, a connection or protocol failure, a timeout, a status other than 200 or a body
/// over `max_body`.
pub async fn fetch(
    req: Request<'_>,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, HttpError> {
    let url = req.url;
    match tokio::time::timeout(timeout, exchange(req, max_body)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout {
            url: url.to_string(),
            timeout,
        }),
    }
}

async fn exchange(req: Request<'_>, max_body: usize) -> Result<Bytes, HttpError> {
    let url = req.url;
    let bad = |why: String| HttpError::BadUrl {
        url: url.to_string(),
        why,
    };
    let io = |why: String| HttpError::Io {
        url: url.to_string(),
        why,
    };
    let uri: http::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// is supported".into()));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| bad("no host".into()))?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| io(format!("connect: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| io(format!("handshake: {e}")))?;
    let driver = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = http::Request::builder()
        .method(req.method)
        .uri(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, "datakit");
    for (k, v) in req.headers {
        builder = builder.header(k, v);
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| bad(format!("{e}")))?;
    let result = async {
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| io(format!("request: {e}")))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(HttpError::Status {
                url: url.to_string(),
                status,
            });
        }
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| io(format!("reading the body (at most {max_body} bytes): {e}")))?;
        Ok(body.to_bytes())
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_and_a_bad_url_are_errors_naming_the_url() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let url = format!("http://{addr}/x");
        let e = fetch(Request::get(&url), Duration::from_secs(2), 10)
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Io { .. }), "{e}");
        assert!(e.to_string().contains(&url), "{e}");
        let e = fetch(Request::get("https://x/"), Duration::from_secs(1), 10)
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::BadUrl { .. }), "{e}");
    }
}
