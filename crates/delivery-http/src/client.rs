//! The HTTP service: hyper-util's pooled legacy client over hyper-rustls (system roots plus an
//! optional extra CA; HTTP/1.1 and HTTP/2 by ALPN) over the SSRF-guarded connector, with the
//! global cap on concurrent requests, the whole-attempt timeout and the bounded read of
//! response bodies.
//!
//! This module sends one request and reports what happened as data ([`Response`] or
//! [`AttemptError`]); it does not decide about retries (see `retry`).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;

use crate::config::DispatcherConfig;
use crate::ledger::{AttemptErrorKind, DeadLetterReason};
use crate::ssrf::{find_blocked, BlockedAddress, GuardedConnector};

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The extra CA is not readable PEM or holds no certificate.
    #[error("the extra CA is not valid PEM holding at least one certificate")]
    ExtraCa(#[source] Option<std::io::Error>),
    /// A certificate of the extra CA was refused.
    #[error("a certificate of the extra CA was refused")]
    Certificate(#[source] rustls::Error),
    /// No trusted root at all.
    #[error("no trusted root certificate is available")]
    NoRoots,
    /// The TLS configuration could not be built.
    #[error("the TLS configuration could not be built")]
    Tls(#[source] rustls::Error),
}

/// A receiver's answer, its body read up to the configured limit.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<HeaderValue>,
    /// The body, truncated.
    pub(crate) body: Bytes,
    pub(crate) version: Version,
}

/// Why an attempt got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AttemptError {
    /// The SSRF policy refused the target address.
    #[error(transparent)]
    Blocked(BlockedAddress),
    /// No connection could be made (DNS, TCP, TLS, connect timeout).
    #[error("connection failed")]
    Connect(#[source] hyper_util::client::legacy::Error),
    /// The attempt took longer than the attempt timeout.
    #[error("attempt timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed after the request started (reset, protocol error).
    #[error("request failed")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The authentication strategy failed.
    #[error(transparent)]
    Auth(hookstream_auth::AuthError),
}

impl AttemptError {
    /// Whether a later attempt may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Blocked(_) => false,
            Self::Auth(e) => e.is_retryable(),
            Self::Connect(_) | Self::Timeout(_) | Self::Transport(_) => true,
        }
    }

    /// The kind recorded in the attempt log.
    pub(crate) fn kind(&self) -> AttemptErrorKind {
        match self {
            Self::Blocked(_) => AttemptErrorKind::Blocked,
            Self::Connect(_) => AttemptErrorKind::Connect,
            Self::Timeout(_) => AttemptErrorKind::Timeout,
            Self::Transport(_) => AttemptErrorKind::Transport,
            Self::Auth(_) => AttemptErrorKind::Auth,
        }
    }

    /// The message recorded in the attempt log: this error and its sources, no secrets
    /// (hyper's and rustls' errors carry no URL; auth errors carry none by contract).
    pub(crate) fn message(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    /// The reason when this error ends the batch.
    pub(crate) fn dead_letter_reason(&self) -> DeadLetterReason {
        match self {
            Self::Blocked(b) => DeadLetterReason::Blocked { message: b.to_string() },
            Self::Auth(e) => DeadLetterReason::Auth { message: e.to_string() },
            other => DeadLetterReason::Transport { message: other.message() },
        }
    }
}

type Connector = HttpsConnector<GuardedConnector>;

/// The pooled client shared by every pair.
#[derive(Debug)]
pub(crate) struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    permits: Arc<Semaphore>,
    attempt_timeout: Duration,
    max_response_bytes: usize,
}

impl HttpClient {
    pub(crate) fn new(config: &DispatcherConfig) -> Result<Self, ClientError> {
        let tls = tls_config(config.extra_ca_pem.as_deref())?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(GuardedConnector::new(config.ssrf.clone(), config.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(config.max_idle_per_host)
            .build(https);
        Ok(Self {
            client,
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests.get())),
            attempt_timeout: config.attempt_timeout,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// Sends `request` once, within the global cap and the attempt timeout.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response, AttemptError> {
        // The semaphore is never closed; if it were, sending unlimited is the safe fallback.
        let _permit = self.permits.acquire().await.ok();
        let timeout = self.attempt_timeout;
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError::Timeout(timeout)),
        }
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Response, AttemptError> {
        let response = self.client.request(request).await.map_err(|e| {
            if let Some(blocked) = find_blocked(&e) {
                AttemptError::Blocked(blocked.clone())
            } else if e.is_connect() {
                AttemptError::Connect(e)
            } else {
                AttemptError::Transport(Box::new(e))
            }
        })?;
        let status = response.status();
        let version = response.version();
        let retry_after = response.headers().get(http::header::RETRY_AFTER).cloned();
        let mut body = response.into_body();
        let mut kept = BytesMut::new();
        // Read at most the limit; the rest is not read (the connection is then not reused).
        while kept.len() < self.max_response_bytes {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let room = self.max_response_bytes - kept.len();
                        kept.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                // A body cut short after the status arrived still answered the attempt.
                Some(Err(_)) | None => break,
            }
        }
        Ok(Response { status, retry_after, body: kept.freeze(), version })
    }
}

fn tls_config(extra_ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(pem) = extra_ca_pem {
        let mut reader = pem;
        let certs = rustls_pemfile::certs(&mut reader)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::ExtraCa(Some(e)))?;
        if certs.is_empty() {
            return Err(ClientError::ExtraCa(None));
        }
        for cert in certs {
            roots.add(cert).map_err(ClientError::Certificate)?;
        }
    }
    if roots.is_empty() {
        return Err(ClientError::NoRoots);
    }
    // The provider is passed explicitly: the process-wide default belongs to the server.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
