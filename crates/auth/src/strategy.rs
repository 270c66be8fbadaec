//! The plugin seam: [`AuthStrategy`], what an authentication strategy does to each outgoing
//! webhook request, and [`OutgoingRequest`], the request it sees.
//!
//! A strategy is the runtime half of a plugin; its validated configuration builds it (see the
//! registry). It owns no IO policy of its own beyond what it needs (an OAuth2 token fetch).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, Method, Uri};

/// The outgoing webhook request a strategy authenticates, one attempt of one delivery.
#[derive(Debug)]
#[non_exhaustive]
pub struct OutgoingRequest<'a> {
    /// The method (`POST` for webhooks).
    pub method: &'a Method,
    /// The target URL.
    pub uri: &'a Uri,
    /// The headers so far; the strategy adds its own.
    pub headers: &'a mut HeaderMap,
    /// The exact body bytes that will be sent.
    pub body: &'a [u8],
    /// The delivery's `webhook-id` (the batch id, identical on every retry).
    pub webhook_id: &'a str,
    /// This attempt's `webhook-timestamp`, unix seconds.
    pub timestamp: i64,
}

impl<'a> OutgoingRequest<'a> {
    /// A request to authenticate.
    pub fn new(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a mut HeaderMap,
        body: &'a [u8],
        webhook_id: &'a str,
        timestamp: i64,
    ) -> Self {
        Self { method, uri, headers, body, webhook_id, timestamp }
    }
}

/// Why a strategy could not authenticate a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A transient failure (e.g. the token endpoint is down): retry the delivery later.
    #[error("strategy {strategy}: {message}")]
    Transient {
        /// The strategy's name.
        strategy: String,
        /// What went wrong, without any secret.
        message: String,
    },
    /// A permanent failure (e.g. the token endpoint refused the credentials).
    #[error("strategy {strategy}: {message}")]
    Permanent {
        /// The strategy's name.
        strategy: String,
        /// What went wrong, without any secret.
        message: String,
    },
}

impl AuthError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

/// An authentication strategy: adds what it needs to every attempt of every webhook request.
///
/// `Debug` must never print a secret.
#[async_trait]
pub trait AuthStrategy: Send + Sync + fmt::Debug {
    /// The strategy's registered name (`"bearer"`, `"hmac"`, ...).
    fn name(&self) -> &str;

    /// Adds the strategy's headers to `request`. Called on every attempt, so a signature
    /// covers this attempt's timestamp.
    async fn authenticate(&self, request: &mut OutgoingRequest<'_>) -> Result<(), AuthError>;

    /// Hook: the receiver answered 401 or 403 to a request this strategy authenticated (a
    /// cached credential may be stale). Does nothing by default.
    fn on_rejected(&self, _status: u16) {}
}

#[async_trait]
impl<S: AuthStrategy + ?Sized> AuthStrategy for Arc<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn authenticate(&self, request: &mut OutgoingRequest<'_>) -> Result<(), AuthError> {
        (**self).authenticate(request).await
    }

    fn on_rejected(&self, status: u16) {
        (**self).on_rejected(status)
    }
}

#[async_trait]
impl<S: AuthStrategy + ?Sized> AuthStrategy for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn authenticate(&self, request: &mut OutgoingRequest<'_>) -> Result<(), AuthError> {
        (**self).authenticate(request).await
    }

    fn on_rejected(&self, status: u16) {
        (**self).on_rejected(status)
    }
}
