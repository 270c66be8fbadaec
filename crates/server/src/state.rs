//! [`AppState`]: what every request handler and background task of one server instance
//! shares (store, runner, auth registry, SSRF policy, API token, limits, metrics, deliveries,
//! task tracker). Built by the [`ServerBuilder`](crate::ServerBuilder); cheap to clone.

use std::sync::Arc;
use std::time::Duration;

use hookstream_auth::Registry;
use hookstream_delivery_http::SsrfPolicy;
use hookstream_events_core::Bus;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::deliveries::Deliveries;
use crate::metrics::Metrics;
use crate::runner::Runner;
use crate::store::Store;
use crate::token::ApiToken;

/// Request limits of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Request body bytes at most (413 above).
    pub body_limit: usize,
    /// Time to produce a response at most (503 `request_timeout` above). Streams are timed
    /// only until their headers.
    pub request_timeout: Duration,
    /// Webhooks per execution at most.
    pub max_webhooks: usize,
    /// Events per ingest request at most.
    pub max_ingest_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_limit: 10 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_webhooks: 32,
            max_ingest_events: 10_000,
        }
    }
}

/// The shared state of one server instance.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("runner", &self.0.runner.name())
            .field("limits", &self.0.limits)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) runner: Arc<dyn Runner>,
    pub(crate) registry: Registry,
    pub(crate) ssrf: SsrfPolicy,
    pub(crate) api_token: ApiToken,
    pub(crate) limits: Limits,
    /// The base URL runners in other processes reach this server at (set by the builder, or
    /// from the listener's address by `serve`).
    pub(crate) public_url: std::sync::OnceLock<Url>,
    pub(crate) metrics: Metrics,
    pub(crate) deliveries: Deliveries,
    /// Runner tasks and other background work of this instance.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when the server shuts down.
    pub(crate) shutdown: CancellationToken,
}

impl AppState {
    pub(crate) fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// The store's bus.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.0.bus
    }

    /// The runner of kickoffs.
    pub fn runner(&self) -> &Arc<dyn Runner> {
        &self.0.runner
    }

    /// The metrics of this instance.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The API limits.
    pub fn limits(&self) -> Limits {
        self.0.limits
    }

    /// The base URL runners in other processes reach this server at.
    /// (`http://127.0.0.1:8080` until known), without a trailing slash.
    pub fn public_url(&self) -> String {
        self.0.public_url.get().map_or_else(
            || "http://127.0.0.1:8080".to_owned(),
            |url| url.as_str().trim_end_matches('/').to_owned(),
        )
    }

    pub(crate) fn api_token(&self) -> &ApiToken {
        &self.0.api_token
    }
}
