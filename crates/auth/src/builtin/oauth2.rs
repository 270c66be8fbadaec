//! `oauth2_client_credentials`: fetches an access token from `token_url` (RFC 6749 §4.4),
//! caches it, refreshes it ahead of expiry and sends it as `Authorization: Bearer <token>`.
//!
//! - The request is a form POST `grant_type=client_credentials[&scope=...]` with the client
//!   credentials in HTTP Basic auth (RFC 6749 §2.3.1, the method servers must support; id and
//!   secret form-urlencoded first).
//! - `token_url` must be `https`; `http` is accepted only for loopback hosts (`localhost`,
//!   `127.0.0.0/8`, `::1`), for local token servers and tests. It must not carry credentials.
//! - The token is refreshed once its remaining lifetime falls under min(60 s, 10% of
//!   `expires_in`); without `expires_in` it is reused for 5 minutes. If a refresh fails while
//!   the cached token has not expired yet, the cached token is still used.
//! - Concurrent callers share one in-flight fetch (a tokio mutex held across the fetch; the
//!   others wait and then take the fresh token).
//! - Every failed fetch is [`AuthError::Transient`] (SPEC §4: a failed fetch is a retryable
//!   delivery error), including 400/401 from the token endpoint: those usually mean wrong
//!   credentials, which the message says, but a rotated secret or an endpoint hiccup can fix
//!   itself and the delivery's 24 h retry limit bounds the cost.
//! - [`AuthStrategy::on_rejected`] with 401 drops the cached token; the next attempt fetches.
//! - Time is tokio time, so tests drive expiry with paused time.
//! - Connections are checked against [`BuiltinOptions::address_policy`] (an SSRF guard the
//!   caller supplies) after DNS resolution; a refused address is [`AuthError::Permanent`].
//!
//! Does not own the webhook delivery's HTTP client or its SSRF rules (auth depends on no
//! sibling crate): the embedding service passes its policy in.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector};
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::time::Instant;
use url::{Host, Url};

use super::simple::SecretHeader;
use super::{AddressPolicy, BuiltinOptions};
use crate::{
    AuthConfigError, AuthError, AuthStrategy, ConfigFields, OutgoingRequest, Secret,
    StrategyConfig, StrategyFactory,
};

const NAME: &str = "oauth2_client_credentials";
/// Largest token response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How long a token without `expires_in` is reused.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// Refresh at most this long before expiry...
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// ...and at most this fraction of the lifetime (1/10) before it.
const REFRESH_MARGIN_DIVISOR: u32 = 10;

pub(crate) struct OAuth2Factory {
    options: BuiltinOptions,
}

impl OAuth2Factory {
    pub(crate) fn new(options: BuiltinOptions) -> Self {
        Self { options }
    }
}

impl StrategyFactory for OAuth2Factory {
    fn validate(
        &self,
        fields: &mut ConfigFields<'_>,
    ) -> Result<Box<dyn StrategyConfig>, AuthConfigError> {
        let token_url = fields.required_str("token_url")?;
        let client_id = fields.required_str("client_id")?;
        let client_secret = fields.required_secret("client_secret")?;
        let scope = fields.optional_str("scope")?;

        let token_url =
            Url::parse(token_url).map_err(|_| fields.invalid("token_url", "is not a URL"))?;
        if !token_url.username().is_empty() || token_url.password().is_some() {
            return Err(fields.invalid("token_url", "must not contain credentials"));
        }
        match token_url.scheme() {
            "https" => {}
            "http" if is_loopback(&token_url) => {}
            "http" => {
                return Err(fields.invalid("token_url", "must be https (http only for loopback)"))
            }
            _ => return Err(fields.invalid("token_url", "must be an https URL")),
        }
        let token_uri: Uri = token_url
            .as_str()
            .parse()
            .map_err(|_| fields.invalid("token_url", "is not a valid request URI"))?;
        if scope.is_some_and(|s| s.chars().any(char::is_control)) {
            return Err(fields.invalid("scope", "must not contain control characters"));
        }

        let credentials =
            format!("{}:{}", form_encode(client_id), form_encode(client_secret.expose()));
        let client_auth = SecretHeader::new(&format!("Basic {}", STANDARD.encode(credentials)))
            .ok_or_else(|| fields.invalid("client_secret", "cannot be encoded"))?;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let form = serde_urlencoded::to_string(&form)
            .map_err(|_| fields.invalid("scope", "cannot be form-encoded"))?;

        let literal_ip = match token_url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        Ok(Box::new(OAuth2Config {
            endpoint: Endpoint {
                display_url: display_url(&token_url),
                literal_ip,
                token_uri,
                client_id: client_id.to_owned(),
                client_secret,
                scope: scope.map(str::to_owned),
                client_auth,
                form: Bytes::from(form),
            },
            options: self.options.clone(),
        }))
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// `scheme://host[:port]/path`, without query or fragment, for `Debug` and messages.
fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Everything needed to ask for a token.
#[derive(Clone)]
struct Endpoint {
    display_url: String,
    /// The host when it is an IP literal (not resolved, so checked by the policy directly).
    literal_ip: Option<IpAddr>,
    token_uri: Uri,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    /// `Basic base64(urlencode(id):urlencode(secret))`.
    client_auth: SecretHeader,
    /// `grant_type=client_credentials[&scope=...]`.
    form: Bytes,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("token_url", &self.display_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scope", &self.scope)
            .finish()
    }
}

#[derive(Debug)]
struct OAuth2Config {
    endpoint: Endpoint,
    options: BuiltinOptions,
}

impl StrategyConfig for OAuth2Config {
    fn build(&self) -> Result<Arc<dyn AuthStrategy>, AuthConfigError> {
        let tls = match &self.options.tls {
            Some(tls) => (**tls).clone(),
            None => rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|_| AuthConfigError::build_failed(NAME, "no usable TLS protocol version"))?
            .with_webpki_roots()
            .with_no_client_auth(),
        };
        let resolver = GuardedResolver {
            inner: GaiResolver::new(),
            policy: self.options.address_policy.clone(),
        };
        let mut http = HttpConnector::new_with_resolver(resolver);
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.options.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Arc::new(OAuth2Strategy {
            endpoint: self.endpoint.clone(),
            client,
            request_timeout: self.options.request_timeout,
            policy: self.options.address_policy.clone(),
            cache: StdMutex::new(None),
            fetch: tokio::sync::Mutex::new(()),
        }))
    }
}

struct CachedToken {
    header: SecretHeader,
    refresh_at: Instant,
    expires_at: Instant,
}

struct OAuth2Strategy {
    endpoint: Endpoint,
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    request_timeout: Duration,
    policy: Option<AddressPolicy>,
    cache: StdMutex<Option<CachedToken>>,
    /// Held across a fetch, so concurrent callers share one.
    fetch: tokio::sync::Mutex<()>,
}

impl fmt::Debug for OAuth2Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Strategy")
            .field("endpoint", &self.endpoint)
            .field("token_cached", &self.lock_cache().is_some())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthStrategy for OAuth2Strategy {
    fn name(&self) -> &str {
        NAME
    }

    async fn authenticate(&self, request: &mut OutgoingRequest<'_>) -> Result<(), AuthError> {
        let header = self.token().await?;
        request.headers.insert(AUTHORIZATION, header.value());
        Ok(())
    }

    fn on_rejected(&self, status: u16) {
        if status == StatusCode::UNAUTHORIZED.as_u16() {
            *self.lock_cache() = None;
        }
    }
}

impl OAuth2Strategy {
    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Option<CachedToken>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached token if it needs no refresh.
    fn fresh(&self) -> Option<SecretHeader> {
        let cache = self.lock_cache();
        cache.as_ref().filter(|t| Instant::now() < t.refresh_at).map(|t| t.header.clone())
    }

    /// The cached token if it has not expired (refresh due or not).
    fn unexpired(&self) -> Option<SecretHeader> {
        let cache = self.lock_cache();
        cache.as_ref().filter(|t| Instant::now() < t.expires_at).map(|t| t.header.clone())
    }

    async fn token(&self) -> Result<SecretHeader, AuthError> {
        if let Some(header) = self.fresh() {
            return Ok(header);
        }
        let _fetching = self.fetch.lock().await;
        // Another caller may have fetched while we waited.
        if let Some(header) = self.fresh() {
            return Ok(header);
        }
        match self.fetch_token().await {
            Ok(token) => {
                let header = token.header.clone();
                *self.lock_cache() = Some(token);
                Ok(header)
            }
            Err(FetchError { message, refused }) => {
                if refused {
                    return Err(AuthError::Permanent { strategy: NAME.to_owned(), message });
                }
                if let Some(header) = self.unexpired() {
                    tracing::warn!(strategy = NAME, %message, "token refresh failed; using the cached token until it expires");
                    return Ok(header);
                }
                Err(AuthError::Transient { strategy: NAME.to_owned(), message })
            }
        }
    }

    async fn fetch_token(&self) -> Result<CachedToken, FetchError> {
        let url = &self.endpoint.display_url;
        if let (Some(ip), Some(policy)) = (self.endpoint.literal_ip, &self.policy) {
            if !policy(ip) {
                return Err(FetchError::refused(url));
            }
        }
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.token_uri.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, self.endpoint.client_auth.value())
            .body(Full::new(self.endpoint.form.clone()))
            .map_err(|_| format!("cannot build the token request to {url}"))?;
        let started = Instant::now();
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if is_refused(&e) {
                    return FetchError::refused(url);
                }
                FetchError::from(format!("token endpoint {url} unreachable: {}", error_chain(&e)))
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|_| {
                    format!("token endpoint {url}: response body unreadable or over 64 KiB")
                })?
                .to_bytes();
            Ok::<_, FetchError>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(self.request_timeout, exchange).await.map_err(|_| {
                format!("token endpoint {url} timed out after {:?}", self.request_timeout)
            })??;
        if !status.is_success() {
            return Err(rejection_message(url, status, &body).into());
        }
        let response: Value = serde_json::from_slice(&body)
            .map_err(|_| format!("token endpoint {url}: response is not JSON"))?;
        let token = response
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("token endpoint {url}: response has no access_token"))?;
        match response.get("token_type").and_then(Value::as_str) {
            Some(kind) if !kind.eq_ignore_ascii_case("bearer") => {
                return Err(format!("token endpoint {url}: token_type is not bearer").into());
            }
            _ => {}
        }
        let header = SecretHeader::new(&format!("Bearer {token}")).ok_or_else(|| {
            format!("token endpoint {url}: access_token is not a valid header value")
        })?;
        let lifetime = expires_in(&response).unwrap_or(DEFAULT_LIFETIME);
        let margin = MAX_REFRESH_MARGIN.min(lifetime / REFRESH_MARGIN_DIVISOR);
        Ok(CachedToken {
            header,
            refresh_at: started + (lifetime - margin),
            expires_at: started + lifetime,
        })
    }
}

/// Why a token fetch failed; `refused` when the address policy forbade the endpoint.
struct FetchError {
    message: String,
    refused: bool,
}

impl FetchError {
    fn refused(url: &str) -> Self {
        Self {
            message: format!("token endpoint {url}: address refused by the address policy"),
            refused: true,
        }
    }
}

impl From<String> for FetchError {
    fn from(message: String) -> Self {
        Self { message, refused: false }
    }
}

/// The resolver error when the policy refuses every address of a name.
#[derive(Debug, thiserror::Error)]
#[error("every address is refused by the address policy")]
struct AddressRefused;

/// Whether `error` was caused by the address policy (found by type in the source chain).
fn is_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<AddressRefused>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// DNS resolution through getaddrinfo, keeping only the addresses the policy allows: the
/// check happens on the addresses actually connected to.
#[derive(Clone)]
struct GuardedResolver {
    inner: GaiResolver,
    policy: Option<AddressPolicy>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolving = self.inner.call(name);
        let policy = self.policy.clone();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = resolving.await?.collect();
            let Some(policy) = policy else {
                return Ok(addresses.into_iter());
            };
            let allowed: Vec<SocketAddr> =
                addresses.into_iter().filter(|address| policy(address.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(AddressRefused) as BoxError);
            }
            Ok(allowed.into_iter())
        })
    }
}

/// `expires_in` as a number or a numeric string (some servers send one), in seconds.
fn expires_in(response: &Value) -> Option<Duration> {
    let seconds = match response.get("expires_in")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// The message for a non-2xx token response: status and the OAuth2 `error` code (a short
/// registered token such as `invalid_client`, never the description, which may echo input).
fn rejection_message(url: &str, status: StatusCode, body: &[u8]) -> String {
    let code = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("error")
            .and_then(Value::as_str)
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .map(str::to_owned)
    });
    let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
    let hint = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => {
            "; check client_id, client_secret and scope"
        }
        _ => "",
    };
    format!("token endpoint {url} answered {status}{code}{hint}")
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_accepts_numbers_and_numeric_strings() {
        let parse = |v: Value| expires_in(&serde_json::json!({ "expires_in": v }));
        assert_eq!(parse(3600.into()), Some(Duration::from_secs(3600)));
        assert_eq!(parse("60".into()), Some(Duration::from_secs(60)));
        assert_eq!(parse(0.into()), None);
        assert_eq!(parse("soon".into()), None);
    }

    #[test]
    fn rejection_message_keeps_only_registered_error_codes() {
        let body = br#"{"error":"invalid_client","error_description":"secret hunter2 wrong"}"#;
        let message = rejection_message("https://x/token", StatusCode::UNAUTHORIZED, body);
        assert!(message.contains("401 Unauthorized (invalid_client)"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let odd = rejection_message(
            "https://x/token",
            StatusCode::BAD_GATEWAY,
            br#"{"error":"Has Spaces"}"#,
        );
        assert_eq!(odd, "token endpoint https://x/token answered 502 Bad Gateway");
    }
}
