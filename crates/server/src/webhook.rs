//! A validated webhook subscription as the server keeps it ([`WebhookSpec`]): what a kickoff's
//! `webhooks` entry becomes once every part of it was checked, how stores persist it (one JSON
//! value, secrets included), and how it turns into delivery-http's runtime configuration.
//!
//! This module does not parse request bodies (the API's wire types do) and does not deliver.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use hookstream_auth::{AuthConfigError, Registry};
use hookstream_delivery_http::{
    validate_static_headers, validate_target, BatchConfig, Mode, SsrfPolicy, TargetError,
    WebhookConfig,
};
use hookstream_events_core::Filter;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

/// One webhook of an execution, validated: the target, the filter, the mode and the
/// authentication configuration. `Debug` never prints the authentication's secrets.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct WebhookSpec {
    /// The target (http or https, with a host; credentials in it are kept for delivery).
    pub url: Url,
    /// The filter entries as given (`"*"`, names, `"prefix_*"`); empty means every event.
    pub events: Vec<String>,
    /// Each event alone, as soon as it is accepted.
    pub realtime: bool,
    /// The batching bounds (used in batched mode only).
    pub batch: BatchSpec,
    /// Static extra headers, in the order given.
    pub headers: Vec<(String, String)>,
    /// The `authentication` object, secrets included.
    pub authentication: StoredAuth,
}

impl WebhookSpec {
    /// A spec with every event, batched with default bounds, no headers and no authentication.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            events: Vec::new(),
            realtime: false,
            batch: BatchSpec::default(),
            headers: Vec::new(),
            authentication: StoredAuth::none(),
        }
    }

    /// The target without credentials, query or fragment (`scheme://host:port/path`), for
    /// API responses and logs: secrets often hide in those parts.
    pub fn redacted_url(&self) -> String {
        let mut url = self.url.clone();
        // Only fails for URLs that cannot have credentials, which then have none.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);
        url.to_string()
    }

    /// The delivery configuration of this spec: checks the target against `ssrf` (literal IPs
    /// only), compiles the filter, checks the static headers and builds the authentication
    /// strategy through `registry`. Kickoff runs it before storing anything; recovery runs it
    /// again on stored specs.
    pub fn delivery_config(
        &self,
        registry: &Registry,
        ssrf: &SsrfPolicy,
    ) -> Result<WebhookConfig, WebhookError> {
        validate_target(&self.url, ssrf).map_err(|e| match e {
            TargetError::Blocked(blocked) => WebhookError::blocked(
                "url",
                format!(
                    "target address {} is in a blocked range ({}); allow-list its range \
                     (--allow-target-cidr) to deliver there",
                    blocked.ip, blocked.range
                ),
            ),
            other => WebhookError::invalid("url", other.to_string()),
        })?;
        let filter = Filter::new(&self.events)
            .map_err(|e| WebhookError::invalid(format!("events[{}]", e.index()), e.to_string()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let field = || format!("headers.{name}");
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| WebhookError::invalid(field(), "not a valid header name"))?;
            let header_value = HeaderValue::from_str(value)
                .map_err(|_| WebhookError::invalid(field(), "not a valid header value"))?;
            headers.append(header_name, header_value);
        }
        validate_static_headers(&headers).map_err(|e| {
            let field =
                e.header_name().map_or_else(|| "headers".to_owned(), |n| format!("headers.{n}"));
            WebhookError::invalid(field, e.to_string())
        })?;
        let auth = registry
            .validate(self.authentication.expose())
            .and_then(|config| config.build())
            .map_err(WebhookError::auth)?;
        let mode = if self.realtime {
            Mode::Realtime
        } else {
            Mode::Batched(BatchConfig::new(
                self.batch.max_events,
                self.batch.max_wait,
                self.batch.max_bytes,
            ))
        };
        let config = WebhookConfig::new(self.url.clone(), auth)
            .map_err(|e| WebhookError::invalid("url", e.to_string()))?
            .with_filter(filter)
            .with_mode(mode)
            .with_headers(headers)
            .map_err(|e| WebhookError::invalid("headers", e.to_string()))?;
        Ok(config)
    }

    /// The spec as one JSON value for storage, **secrets included**: store it as a secret.
    /// [`WebhookSpec::from_json`] reads it back.
    pub fn to_json(&self) -> Value {
        let stored = StoredSpec {
            url: self.url.to_string(),
            events: self.events.clone(),
            realtime: self.realtime,
            batch: StoredBatch {
                max_events: self.batch.max_events.get(),
                max_wait_ms: u64::try_from(self.batch.max_wait.as_millis()).unwrap_or(u64::MAX),
                max_bytes: self.batch.max_bytes.get(),
            },
            headers: self.headers.clone(),
            authentication: self.authentication.0.clone(),
        };
        serde_json::to_value(stored).unwrap_or(Value::Null)
    }

    /// Reads back what [`WebhookSpec::to_json`] wrote.
    pub fn from_json(value: &Value) -> Result<Self, SpecError> {
        let stored = StoredSpec::deserialize(value).map_err(|e| SpecError::new(e.to_string()))?;
        let url = Url::parse(&stored.url).map_err(|e| SpecError::at("url", e.to_string()))?;
        let non_zero = |n: usize, field: &'static str| {
            NonZeroUsize::new(n).ok_or_else(|| SpecError::at(field, "must not be 0"))
        };
        Ok(Self {
            url,
            events: stored.events,
            realtime: stored.realtime,
            batch: BatchSpec {
                max_events: non_zero(stored.batch.max_events, "max_events")?,
                max_wait: Duration::from_millis(stored.batch.max_wait_ms),
                max_bytes: non_zero(stored.batch.max_bytes, "max_bytes")?,
            },
            headers: stored.headers,
            authentication: StoredAuth(stored.authentication),
        })
    }
}

impl fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("url", &self.redacted_url())
            .field("events", &self.events)
            .field("realtime", &self.realtime)
            .field("batch", &self.batch)
            .field("headers", &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("authentication", &self.authentication)
            .finish()
    }
}

/// Batching bounds of SPEC §3/§4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchSpec {
    /// Events per batch at most.
    pub max_events: NonZeroUsize,
    /// Time from a batch's first event until it is sent, at most.
    pub max_wait: Duration,
    /// Body bytes per request at most.
    pub max_bytes: NonZeroUsize,
}

impl BatchSpec {
    /// Default `max_events`: 100.
    pub const DEFAULT_MAX_EVENTS: usize = 100;
    /// Default `max_wait_ms`: 1000.
    pub const DEFAULT_MAX_WAIT_MS: u64 = 1000;
    /// Default and ceiling of `max_bytes`: 1 MiB.
    pub const MAX_BYTES: usize = 1024 * 1024;
    /// Ceiling of `max_events`.
    pub const MAX_EVENTS: usize = 10_000;
    /// Ceiling of `max_wait_ms`: one hour.
    pub const MAX_WAIT_MS: u64 = 3_600_000;
    /// Floor of `max_bytes` (one event must fit).
    pub const MIN_BYTES: usize = 1024;

    /// Bounds from raw values, checked against the floors and ceilings above.
    pub fn new(max_events: usize, max_wait_ms: u64, max_bytes: usize) -> Result<Self, SpecError> {
        let max_events = NonZeroUsize::new(max_events)
            .filter(|n| n.get() <= Self::MAX_EVENTS)
            .ok_or_else(|| {
                SpecError::at(
                    "max_events",
                    format!("max_events must be between 1 and {}", Self::MAX_EVENTS),
                )
            })?;
        if max_wait_ms > Self::MAX_WAIT_MS {
            return Err(SpecError::at(
                "max_wait_ms",
                format!("max_wait_ms must be at most {} (one hour)", Self::MAX_WAIT_MS),
            ));
        }
        let max_bytes = NonZeroUsize::new(max_bytes)
            .filter(|n| (Self::MIN_BYTES..=Self::MAX_BYTES).contains(&n.get()))
            .ok_or_else(|| {
                SpecError::at(
                    "max_bytes",
                    format!(
                        "max_bytes must be between {} and {} (1 MiB)",
                        Self::MIN_BYTES,
                        Self::MAX_BYTES
                    ),
                )
            })?;
        Ok(Self { max_events, max_wait: Duration::from_millis(max_wait_ms), max_bytes })
    }
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            max_events: NonZeroUsize::new(Self::DEFAULT_MAX_EVENTS).unwrap_or(NonZeroUsize::MIN),
            max_wait: Duration::from_millis(Self::DEFAULT_MAX_WAIT_MS),
            max_bytes: NonZeroUsize::new(Self::MAX_BYTES).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// A webhook's `authentication` JSON as validated by the auth registry, secrets included.
/// `Debug` prints only the strategy name.
#[derive(Clone, PartialEq)]
pub struct StoredAuth(Value);

impl StoredAuth {
    /// No authentication (`null`).
    pub fn none() -> Self {
        Self(Value::Null)
    }

    /// The JSON of a configuration the auth registry validated
    /// (`AuthConfig::to_json_with_secrets`).
    pub fn new(json: Value) -> Self {
        Self(json)
    }

    /// The JSON, **secrets included**: for the registry and for storage only.
    pub fn expose(&self) -> &Value {
        &self.0
    }

    /// The strategy name (`"none"` when there is none).
    pub fn strategy(&self) -> &str {
        self.0.get("strategy").and_then(Value::as_str).unwrap_or("none")
    }
}

impl fmt::Debug for StoredAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAuth").field("strategy", &self.strategy()).finish_non_exhaustive()
    }
}

/// Why a webhook spec cannot be delivered to; [`WebhookError::field`] names the field inside
/// the webhook object (`url`, `events[2]`, `headers.connection`, `authentication.token`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A field's value is not acceptable.
    #[error("{message}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
    /// The URL is a literal IP address in a blocked range.
    #[error("{message}")]
    Blocked {
        /// The field (`url`).
        field: String,
        /// Which address, which range.
        message: String,
    },
    /// The `authentication` object is not valid (or its strategy cannot be built).
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
}

impl WebhookError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }

    fn blocked(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Blocked { field: field.into(), message: message.into() }
    }

    fn auth(error: AuthConfigError) -> Self {
        Self::Auth(error)
    }

    /// The field inside the webhook object the error is about.
    pub fn field(&self) -> String {
        match self {
            Self::Invalid { field, .. } | Self::Blocked { field, .. } => field.clone(),
            Self::Auth(e) => match e.field() {
                Some(f) => format!("authentication.{f}"),
                None => "authentication".to_owned(),
            },
        }
    }
}

/// A stored webhook spec that could not be read back, or bounds out of range.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    field: Option<&'static str>,
    message: String,
}

impl SpecError {
    fn new(message: impl Into<String>) -> Self {
        Self { field: None, message: message.into() }
    }

    fn at(field: &'static str, message: impl Into<String>) -> Self {
        Self { field: Some(field), message: message.into() }
    }

    /// The field the error is about, when it is one (`max_events`, `max_wait_ms`, `max_bytes`).
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSpec {
    url: String,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    realtime: bool,
    batch: StoredBatch,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    authentication: Value,
}

#[derive(Serialize, Deserialize)]
struct StoredBatch {
    max_events: usize,
    max_wait_ms: u64,
    max_bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_everything() {
        let mut spec = WebhookSpec::new(Url::parse("https://u:p@example.com/hook").unwrap());
        spec.events = vec!["llm_*".into()];
        spec.realtime = true;
        spec.batch = BatchSpec::new(5, 10, 4096).unwrap();
        spec.headers = vec![("x-tenant".into(), "acme".into())];
        spec.authentication =
            StoredAuth::new(serde_json::json!({"strategy": "bearer", "token": "s3cret"}));
        let back = WebhookSpec::from_json(&spec.to_json()).unwrap();
        assert!(back == spec);
        let debug = format!("{spec:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("u:p@") && !debug.contains("acme"));
        assert_eq!(spec.redacted_url(), "https://example.com/hook");
    }

    #[test]
    fn batch_bounds_are_checked() {
        assert!(BatchSpec::new(0, 1000, 4096).is_err());
        assert!(BatchSpec::new(10, BatchSpec::MAX_WAIT_MS + 1, 4096).is_err());
        assert!(BatchSpec::new(10, 0, BatchSpec::MAX_BYTES + 1).is_err());
        assert!(BatchSpec::new(10, 0, 10).is_err());
        assert!(BatchSpec::new(10, 0, 4096).is_ok());
    }
}
