//! The shared HTTP client of the upstream sinks: rustls with ring, optional proxy, pooling.

use std::time::Duration;

/// How a sink's HTTP client is built.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Whole-request timeout (connect, send, response and body); also the connect timeout.
    pub timeout: Duration,
    /// `http://` or `https://` proxy for every request; `None` = direct (environment proxy
    /// variables are ignored, as Datakit does).
    pub proxy: Option<String>,
    /// Accept any server certificate (self-signed, expired, wrong host name).
    pub tls_insecure: bool,
    /// Idle connections kept per host.
    pub max_idle_per_host: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
    /// Headers sent with every request (`User-Agent`, `Referer`...).
    pub default_headers: reqwest::header::HeaderMap,
}

/// Why an HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The proxy URL does not parse or has another scheme than `http`/`https`.
    #[error("invalid HTTP proxy {proxy:?}: {reason}; use http://host:port or https://host:port")]
    InvalidProxy {
        /// The configured proxy.
        proxy: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS or connection settings were refused by the HTTP library.
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// Installs ring as rustls's process-wide crypto provider, once; later calls (and a provider
/// installed by someone else) are fine.
pub fn ensure_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds one pooled client (reuse it: connections are kept alive per host).
///
/// Redirects are not followed: a redirected POST would silently lose its body.
///
/// # Errors
/// [`ClientError`] when the proxy is invalid or the TLS stack cannot be set up.
pub fn build_client(opts: &ClientOptions) -> Result<reqwest::Client, ClientError> {
    ensure_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        .pool_max_idle_per_host(opts.max_idle_per_host)
        .pool_idle_timeout(opts.idle_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(opts.default_headers.clone())
        .tls_danger_accept_invalid_certs(opts.tls_insecure);
    builder = match opts.proxy.as_deref().map(str::trim) {
        None | Some("") => builder.no_proxy(),
        Some(p) => {
            let invalid = |reason: String| ClientError::InvalidProxy {
                proxy: p.to_string(),
                reason,
            };
            let url = reqwest::Url::parse(p).map_err(|e| invalid(e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(format!(
                    "scheme {:?} or host missing",
                    url.scheme()
                )));
            }
            let proxy = reqwest::Proxy::all(url).map_err(|e| invalid(error_chain(&e)))?;
            builder.proxy(proxy)
        }
    };
    builder
        .build()
        .map_err(|e| ClientError::Build(error_chain(&e)))
}

/// An error and all its sources as one line (`a: b: c`), without repeated parts; the URL
/// of a `reqwest::Error` is left out so tokens in query strings never reach logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = match err.downcast_ref::<reqwest::Error>() {
        Some(e) if e.url().is_some() => reqwest_message(e),
        _ => err.to_string(),
    };
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}

/// A reqwest error's own message without its URL.
fn reqwest_message(e: &reqwest::Error) -> String {
    let full = e.to_string();
    // reqwest formats `<kind> for url (<url>)`; keep the kind only.
    match full.find(" for url (") {
        Some(i) => full[..i].to_string(),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_proxy_without_a_known_scheme() {
        let opts = ClientOptions {
            timeout: Duration::from_secs(1),
            proxy: Some("socks9://127.0.0.1:1".into()),
            tls_insecure: false,
            max_idle_per_host: 1,
            idle_timeout: Duration::from_secs(1),
            default_headers: reqwest::header::HeaderMap::new(),
        };
        let err = build_client(&opts).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("invalid HTTP proxy \"socks9://127.0.0.1:1\"")),
            "{err:?}"
        );
    }
}
