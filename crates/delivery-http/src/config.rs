//! Configuration, parsed and validated at the edge: [`WebhookConfig`] (one subscriber: target,
//! filter, mode, static headers, auth strategy) and [`DispatcherConfig`] (process-wide: client
//! timeouts, concurrency cap, retry policy, SSRF policy, extra CA).
//!
//! This module owns what is accepted (schemes, static header names); it knows nothing of
//! serde or of the kickoff JSON, which the server parses into these types.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use hookstream_auth::AuthStrategy;
use hookstream_events_core::filter::Filter;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Uri;
use url::Url;

use crate::retry::RetryPolicy;
use crate::ssrf::SsrfPolicy;

/// One webhook subscriber of an execution: where to POST, which events, how (realtime or
/// batched), with which static headers and which authentication strategy.
///
/// ```
/// use std::sync::Arc;
/// use hookstream_delivery_http::{Mode, WebhookConfig};
/// # #[derive(Debug)] struct NoAuth;
/// # #[async_trait::async_trait]
/// # impl hookstream_auth::AuthStrategy for NoAuth {
/// #     fn name(&self) -> &str { "none" }
/// #     async fn authenticate(&self, _: &mut hookstream_auth::OutgoingRequest<'_>)
/// #         -> Result<(), hookstream_auth::AuthError> { Ok(()) }
/// # }
/// let url = url::Url::parse("https://example.com/hook")?;
/// let config = WebhookConfig::new(url, Arc::new(NoAuth))?.with_mode(Mode::Realtime);
/// assert_eq!(config.mode(), &Mode::Realtime);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WebhookConfig {
    url: Url,
    uri: Uri,
    filter: Filter,
    mode: Mode,
    headers: HeaderMap,
    auth: Arc<dyn AuthStrategy>,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the full URL (its query or credentials may carry secrets), never header values.
        f.debug_struct("WebhookConfig")
            .field("target", &redacted_target(&self.url))
            .field("mode", &self.mode)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("auth", &self.auth.name())
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// A subscriber of every event, batched with the default [`BatchConfig`], no static
    /// headers. Refuses a URL that is not http(s) or has no host.
    pub fn new(url: Url, auth: Arc<dyn AuthStrategy>) -> Result<Self, ConfigError> {
        check_url_shape(&url)?;
        let uri = to_uri(&url)?;
        Ok(Self {
            url,
            uri,
            filter: Filter::all(),
            mode: Mode::default(),
            headers: HeaderMap::new(),
            auth,
        })
    }

    /// The same, receiving only the events `filter` matches (the terminal event still ends
    /// the subscription and flushes what is buffered).
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// The same in `mode`.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The same with static extra headers, refused as [`validate_static_headers`] says.
    pub fn with_headers(mut self, headers: HeaderMap) -> Result<Self, ConfigError> {
        validate_static_headers(&headers)?;
        self.headers = headers;
        Ok(self)
    }

    /// The target URL as given.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL safe to show and log: scheme, host, port and path; no credentials, no query.
    pub fn redacted_url(&self) -> String {
        redacted_target(&self.url)
    }

    /// The request target (the URL without credentials and fragment).
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Which events are sent.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Realtime or batched.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The static extra headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The authentication strategy applied on every attempt.
    pub fn auth(&self) -> &Arc<dyn AuthStrategy> {
        &self.auth
    }
}

/// How events are grouped into requests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Each matching event alone, as soon as it is received.
    Realtime,
    /// Events grouped as [`BatchConfig`] says.
    Batched(BatchConfig),
}

impl Default for Mode {
    fn default() -> Self {
        Self::Batched(BatchConfig::default())
    }
}

/// When a batch is sent: at `max_events`, `max_wait` after its first event, before one more
/// event would make the body pass `max_bytes`, and at once when the execution ends.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchConfig {
    /// Events per batch at most (default 100).
    pub max_events: NonZeroUsize,
    /// Time from a batch's first event to its sending at most (default 1 s).
    pub max_wait: Duration,
    /// Body bytes at most (default 1 MiB). A single event larger than this is sent alone.
    pub max_bytes: NonZeroUsize,
}

impl BatchConfig {
    /// A batch policy.
    pub fn new(max_events: NonZeroUsize, max_wait: Duration, max_bytes: NonZeroUsize) -> Self {
        Self { max_events, max_wait, max_bytes }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: NonZeroUsize::new(100).unwrap_or(NonZeroUsize::MIN),
            max_wait: Duration::from_millis(1000),
            max_bytes: NonZeroUsize::new(1024 * 1024).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// Process-wide delivery settings: one [`crate::Dispatcher`] is built from them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DispatcherConfig {
    /// Requests in flight across every pair at most (default 256).
    pub max_concurrent_requests: NonZeroUsize,
    /// TCP connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Whole-attempt timeout: connect, TLS, request and reading the response (default 30 s).
    pub attempt_timeout: Duration,
    /// Response body bytes read and kept for the attempt log at most (default 64 KiB).
    pub max_response_bytes: usize,
    /// Idle pooled connections kept per host at most (default 256).
    pub max_idle_per_host: usize,
    /// Backoff, `Retry-After` cap and maximum age of a batch.
    pub retry: RetryPolicy,
    /// Which target addresses may be connected to.
    pub ssrf: SsrfPolicy,
    /// An extra trusted CA (PEM, one or more certificates) beside the system roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// The `User-Agent` sent (default `hookstream/<version>`).
    pub user_agent: HeaderValue,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            max_concurrent_requests: NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN),
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(30),
            max_response_bytes: 64 * 1024,
            max_idle_per_host: 256,
            retry: RetryPolicy::default(),
            ssrf: SsrfPolicy::default(),
            extra_ca_pem: None,
            user_agent: HeaderValue::from_static(concat!("hookstream/", env!("CARGO_PKG_VERSION"))),
        }
    }
}

/// Why a webhook configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL's scheme is not http or https.
    #[error("webhook url scheme {scheme:?} is not supported: use http or https")]
    UnsupportedScheme {
        /// The scheme given.
        scheme: String,
    },
    /// The URL has no host.
    #[error("webhook url has no host")]
    MissingHost,
    /// The URL cannot be a request target.
    #[error("webhook url is not a valid request target")]
    InvalidUrl,
    /// A static header may not be set by configuration.
    #[error("header {name:?} cannot be set as a static webhook header: {reason}")]
    ForbiddenHeader {
        /// The header's name (lowercase).
        name: String,
        /// Why: hop-by-hop, authentication or reserved by hookstream.
        reason: HeaderRefusal,
    },
}

impl ConfigError {
    /// The name of the refused header, when a header was refused.
    pub fn header_name(&self) -> Option<&str> {
        match self {
            Self::ForbiddenHeader { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// Why a static header is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderRefusal {
    /// A hop-by-hop header (connection management belongs to the client).
    HopByHop,
    /// An authentication header: use an authentication strategy.
    Authentication,
    /// Set by hookstream itself on every request.
    Reserved,
}

impl fmt::Display for HeaderRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HopByHop => "it is a hop-by-hop header",
            Self::Authentication => "authentication is set by the authentication strategy",
            Self::Reserved => "hookstream sets it on every request",
        })
    }
}

/// Refuses static headers that are hop-by-hop (`connection`, `keep-alive`,
/// `transfer-encoding`, `te`, `trailer`, `upgrade`, `proxy-*`), authentication
/// (`authorization`, `proxy-authorization`) or reserved (`host`, `content-length`,
/// `content-type`, `user-agent`, `webhook-*`); the error names the header.
pub fn validate_static_headers(headers: &HeaderMap) -> Result<(), ConfigError> {
    for name in headers.keys() {
        if let Some(reason) = header_refusal(name) {
            return Err(ConfigError::ForbiddenHeader { name: name.as_str().to_owned(), reason });
        }
    }
    Ok(())
}

fn header_refusal(name: &HeaderName) -> Option<HeaderRefusal> {
    let n = name.as_str();
    match n {
        "authorization" | "proxy-authorization" => Some(HeaderRefusal::Authentication),
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade" => {
            Some(HeaderRefusal::HopByHop)
        }
        _ if n.starts_with("proxy-") => Some(HeaderRefusal::HopByHop),
        "host" | "content-length" | "content-type" | "user-agent" => Some(HeaderRefusal::Reserved),
        _ if n.starts_with("webhook-") => Some(HeaderRefusal::Reserved),
        _ => None,
    }
}

pub(crate) fn check_url_shape(url: &Url) -> Result<(), ConfigError> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(ConfigError::UnsupportedScheme { scheme: other.to_owned() }),
    }
    match url.host_str() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err(ConfigError::MissingHost),
    }
}

fn to_uri(url: &Url) -> Result<Uri, ConfigError> {
    let mut clean = url.clone();
    clean.set_fragment(None);
    // Credentials in the URL are never sent as such: use an authentication strategy.
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.as_str().parse().map_err(|_| ConfigError::InvalidUrl)
}

/// Scheme, host, port and path of `url`: what may appear in logs and API answers.
pub(crate) fn redacted_target(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{}:{}{}", url.scheme(), host, port, url.path()),
        None => format!("{}://{}{}", url.scheme(), host, url.path()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_forbidden_headers_by_name() {
        for (name, reason) in [
            ("connection", HeaderRefusal::HopByHop),
            ("Proxy-Foo", HeaderRefusal::HopByHop),
            ("te", HeaderRefusal::HopByHop),
            ("authorization", HeaderRefusal::Authentication),
            ("proxy-authorization", HeaderRefusal::Authentication),
            ("host", HeaderRefusal::Reserved),
            ("webhook-signature", HeaderRefusal::Reserved),
            ("user-agent", HeaderRefusal::Reserved),
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
            let err = validate_static_headers(&h).unwrap_err();
            assert_eq!(err.header_name(), Some(name.to_ascii_lowercase().as_str()));
            assert!(matches!(err, ConfigError::ForbiddenHeader { reason: r, .. } if r == reason));
        }
        let mut ok = HeaderMap::new();
        ok.insert("x-tenant", HeaderValue::from_static("acme"));
        assert!(validate_static_headers(&ok).is_ok());
    }

    #[test]
    fn redacts_credentials_and_query() {
        let url = Url::parse("https://user:secret@example.com:8443/hook?token=abc#frag").unwrap();
        assert_eq!(redacted_target(&url), "https://example.com:8443/hook");
        let uri = to_uri(&url).unwrap();
        assert_eq!(uri.to_string(), "https://example.com:8443/hook?token=abc");
    }

    #[test]
    fn debug_shows_no_credentials_query_or_header_values() {
        #[derive(Debug)]
        struct Secretless;
        #[async_trait::async_trait]
        impl AuthStrategy for Secretless {
            fn name(&self) -> &str {
                "test"
            }
            async fn authenticate(
                &self,
                _: &mut hookstream_auth::OutgoingRequest<'_>,
            ) -> Result<(), hookstream_auth::AuthError> {
                Ok(())
            }
        }
        let url = Url::parse("https://u:pw-secret@example.com/h?token=query-secret").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("header-secret"));
        let config =
            WebhookConfig::new(url, Arc::new(Secretless)).unwrap().with_headers(headers).unwrap();
        let debug = format!("{config:?}");
        for secret in ["pw-secret", "query-secret", "header-secret"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("https://example.com/h") && debug.contains("x-api-key"));
        assert_eq!(config.redacted_url(), "https://example.com/h");
    }

    #[test]
    fn refuses_non_http_schemes() {
        let url = Url::parse("ftp://example.com/").unwrap();
        assert!(matches!(check_url_shape(&url), Err(ConfigError::UnsupportedScheme { .. })));
        let url = Url::parse("unix:/tmp/sock").unwrap();
        assert!(check_url_shape(&url).is_err());
    }
}
