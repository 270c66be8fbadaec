//! The static built-ins: `none`, `bearer` (`token`), `basic` (`username`, `password`) and
//! `header` (`name`, `value`). Each precomputes its header value at validation, so
//! `authenticate` only inserts it. Does not own signing or token fetching.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};

use crate::{
    AuthConfigError, AuthError, AuthStrategy, ConfigFields, OutgoingRequest, StrategyConfig,
    StrategyFactory,
};

/// A header value holding a credential: marked sensitive, `Debug` masked.
#[derive(Clone)]
pub(crate) struct SecretHeader(HeaderValue);

impl SecretHeader {
    /// `None` if `value` is not a valid header value (never says why with the value).
    pub(crate) fn new(value: &str) -> Option<Self> {
        let mut value = HeaderValue::from_str(value).ok()?;
        value.set_sensitive(true);
        Some(Self(value))
    }

    pub(crate) fn value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Debug for SecretHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A strategy that inserts one fixed header.
#[derive(Debug)]
struct FixedHeader {
    strategy: &'static str,
    name: HeaderName,
    value: SecretHeader,
}

#[async_trait]
impl AuthStrategy for FixedHeader {
    fn name(&self) -> &str {
        self.strategy
    }

    async fn authenticate(&self, request: &mut OutgoingRequest<'_>) -> Result<(), AuthError> {
        request.headers.insert(self.name.clone(), self.value.value());
        Ok(())
    }
}

/// The validated config of the fixed-header strategies (`bearer`, `basic`, `header`).
#[derive(Debug, Clone)]
struct FixedHeaderConfig {
    strategy: &'static str,
    name: HeaderName,
    value: SecretHeader,
}

impl StrategyConfig for FixedHeaderConfig {
    fn build(&self) -> Result<Arc<dyn AuthStrategy>, AuthConfigError> {
        Ok(Arc::new(FixedHeader {
            strategy: self.strategy,
            name: self.name.clone(),
            value: self.value.clone(),
        }))
    }
}

/// `none`: adds nothing.
#[derive(Debug)]
pub(crate) struct NoneFactory;

/// The config of `none` (also what `null` validates to).
#[derive(Debug)]
pub(crate) struct NoneConfig;

#[derive(Debug)]
struct NoneStrategy;

impl StrategyFactory for NoneFactory {
    fn validate(
        &self,
        _fields: &mut ConfigFields<'_>,
    ) -> Result<Box<dyn StrategyConfig>, AuthConfigError> {
        Ok(Box::new(NoneConfig))
    }
}

impl StrategyConfig for NoneConfig {
    fn build(&self) -> Result<Arc<dyn AuthStrategy>, AuthConfigError> {
        Ok(Arc::new(NoneStrategy))
    }
}

#[async_trait]
impl AuthStrategy for NoneStrategy {
    fn name(&self) -> &str {
        "none"
    }

    async fn authenticate(&self, _request: &mut OutgoingRequest<'_>) -> Result<(), AuthError> {
        Ok(())
    }
}

/// `bearer`: `Authorization: Bearer <token>`.
#[derive(Debug)]
pub(crate) struct BearerFactory;

impl StrategyFactory for BearerFactory {
    fn validate(
        &self,
        fields: &mut ConfigFields<'_>,
    ) -> Result<Box<dyn StrategyConfig>, AuthConfigError> {
        let token = fields.required_secret("token")?;
        let value = SecretHeader::new(&format!("Bearer {}", token.expose()))
            .ok_or_else(|| fields.invalid("token", "must be visible ASCII without line breaks"))?;
        Ok(Box::new(FixedHeaderConfig { strategy: "bearer", name: AUTHORIZATION, value }))
    }
}

/// `basic`: `Authorization: Basic base64(username:password)` (RFC 7617).
#[derive(Debug)]
pub(crate) struct BasicFactory;

impl StrategyFactory for BasicFactory {
    fn validate(
        &self,
        fields: &mut ConfigFields<'_>,
    ) -> Result<Box<dyn StrategyConfig>, AuthConfigError> {
        let username = fields.required_str("username")?;
        let password = fields.required_secret("password")?;
        if username.contains(':') {
            return Err(fields.invalid("username", "must not contain ':' (RFC 7617)"));
        }
        if username.chars().chain(password.expose().chars()).any(char::is_control) {
            return Err(fields
                .invalid("password", "username and password must not contain control characters"));
        }
        let credentials = STANDARD.encode(format!("{username}:{}", password.expose()));
        let value = SecretHeader::new(&format!("Basic {credentials}"))
            .ok_or_else(|| fields.invalid("password", "cannot be encoded"))?;
        Ok(Box::new(FixedHeaderConfig { strategy: "basic", name: AUTHORIZATION, value }))
    }
}

/// Header names the `header` strategy refuses: hop-by-hop headers, those the delivery sets,
/// and the Standard Webhooks ones (`webhook-*`, checked by prefix).
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "expect",
    "host",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
];

/// `header`: one custom header (an API key), `name: value`.
#[derive(Debug)]
pub(crate) struct HeaderFactory;

impl StrategyFactory for HeaderFactory {
    fn validate(
        &self,
        fields: &mut ConfigFields<'_>,
    ) -> Result<Box<dyn StrategyConfig>, AuthConfigError> {
        let name = fields.required_str("name")?;
        let value = fields.required_secret("value")?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| fields.invalid("name", "is not a valid header name"))?;
        if RESERVED_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("webhook-") {
            return Err(fields.invalid(
                "name",
                "is a reserved header (hop-by-hop, set by the delivery, or webhook-*)",
            ));
        }
        let value = SecretHeader::new(value.expose())
            .ok_or_else(|| fields.invalid("value", "must be visible ASCII without line breaks"))?;
        Ok(Box::new(FixedHeaderConfig { strategy: "header", name, value }))
    }
}
