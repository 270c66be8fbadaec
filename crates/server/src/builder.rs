//! [`ServerBuilder`] and [`Server`]: how a hookstream server is assembled (store, runner, API
//! token, SSRF allow-list, auth strategies, delivery settings, limits) and run (an axum
//! router testable without a socket, `serve` with graceful shutdown, recovery at start).
//!
//! ```
//! use std::sync::Arc;
//! use hookstream_server::{ServerBuilder, store::MemoryStore, runner::demo::{DemoConfig, DemoRunner}};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = ServerBuilder::new()
//!     .store(Arc::new(MemoryStore::new()))
//!     .runner(Arc::new(DemoRunner::new(DemoConfig::default())))
//!     .api_token("s3cret-token")
//!     .allow_target_cidrs(vec!["127.0.0.0/8".parse()?])
//!     .build()?;
//! let app: axum::Router = server.app(); // serve it, or drive it with tower's `oneshot`
//! # let _ = app; Ok(()) }
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookstream_auth::{BuiltinOptions, RegisterError, Registry, StrategyFactory};
use hookstream_delivery_http::{Dispatcher, DispatcherConfig, DispatcherError, SsrfPolicy};
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::deliveries::Deliveries;
use crate::lifecycle::Recovery;
use crate::metrics::{MeteredLedger, Metrics};
use crate::runner::demo::{DemoConfig, DemoRunner};
use crate::runner::Runner;
use crate::state::{AppState, Inner, Limits};
use crate::store::{MemoryStore, Store, StoreError};
use crate::token::ApiToken;

/// A strategy plugin waiting for the registry it goes into.
type Plugin = Box<dyn FnOnce(&mut Registry) -> Result<(), RegisterError> + Send>;

/// Assembles a [`Server`]. Every setting has a default but the API token.
#[must_use]
pub struct ServerBuilder {
    store: Option<Arc<dyn Store>>,
    runner: Option<Arc<dyn Runner>>,
    api_token: Option<ApiToken>,
    allow_target_cidrs: Option<Vec<IpNet>>,
    /// A registry the embedder supplied; `None`: the built-ins, guarded by the SSRF policy.
    registry: Option<Registry>,
    /// Plugins added with [`ServerBuilder::auth_strategy`], registered at build.
    plugins: Vec<Plugin>,
    dispatcher: DispatcherConfig,
    limits: Limits,
    public_url: Option<Url>,
    shutdown_grace: Duration,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("runner", &self.runner.as_ref().map(|r| r.name().to_owned()))
            .field("api_token", &self.api_token)
            .field("allow_target_cidrs", &self.allow_target_cidrs)
            .field("registry", &self.registry)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerBuilder {
    /// Default shutdown grace period: 10 s.
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

    /// A builder with the defaults: [`MemoryStore`], the demo runner, the built-in auth
    /// strategies, delivery-http's default settings (no private range allowed), a 10 MiB
    /// body limit and a 30 s request timeout.
    pub fn new() -> Self {
        Self {
            store: None,
            runner: None,
            api_token: None,
            allow_target_cidrs: None,
            registry: None,
            plugins: Vec::new(),
            dispatcher: DispatcherConfig::default(),
            limits: Limits::default(),
            public_url: None,
            shutdown_grace: Self::DEFAULT_SHUTDOWN_GRACE,
        }
    }

    /// The store (default: a new [`MemoryStore`]).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The runner of kickoffs (default: the demo runner).
    pub fn runner(mut self, runner: Arc<dyn Runner>) -> Self {
        self.runner = Some(runner);
        self
    }

    /// The API token (required).
    pub fn api_token(mut self, token: impl Into<ApiToken>) -> Self {
        self.api_token = Some(token.into());
        self
    }

    /// Address ranges webhooks may target although the SSRF guard blocks them (e.g.
    /// `127.0.0.0/8` for local receivers). Replaces the dispatcher config's allow-list.
    pub fn allow_target_cidrs(mut self, cidrs: Vec<IpNet>) -> Self {
        self.allow_target_cidrs = Some(cidrs);
        self
    }

    /// The auth strategy registry to start from (default: the built-ins, with the OAuth2
    /// token client held to the same SSRF policy as deliveries). A registry given here keeps
    /// its own [`BuiltinOptions`]: give it an address policy if its token URLs come from
    /// untrusted kickoffs. Strategies added with [`ServerBuilder::auth_strategy`] are
    /// registered into it.
    pub fn auth_registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Adds a strategy plugin under `name`: `{"strategy": "<name>", ...}` then works like a
    /// built-in. A refused name fails [`ServerBuilder::build`].
    pub fn auth_strategy(mut self, name: &str, factory: impl StrategyFactory + 'static) -> Self {
        let name = name.to_owned();
        self.plugins.push(Box::new(move |registry| registry.register(&name, factory).map(drop)));
        self
    }

    /// Delivery settings (timeouts, concurrency, retry policy, extra CA, SSRF policy).
    pub fn dispatcher_config(mut self, config: DispatcherConfig) -> Self {
        self.dispatcher = config;
        self
    }

    /// Request body bytes at most (default 10 MiB).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.limits.body_limit = bytes;
        self
    }

    /// Time to answer a request at most (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.limits.request_timeout = timeout;
        self
    }

    /// Every API limit at once.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The base URL runners in other processes reach this server at (their ingest URL);
    /// default: the listener's address in [`Server::serve`] (loopback for a wildcard one).
    pub fn public_url(mut self, url: Url) -> Self {
        self.public_url = Some(url);
        self
    }

    /// How long shutdown waits for the deliveries of ended executions (default 10 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Builds the server. Must be called within a tokio runtime (the delivery client).
    pub fn build(self) -> Result<Server, BuildError> {
        let api_token = self.api_token.ok_or(BuildError::MissingApiToken)?;
        if api_token.expose().is_empty() {
            return Err(BuildError::MissingApiToken);
        }
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let runner: Arc<dyn Runner> =
            self.runner.unwrap_or_else(|| Arc::new(DemoRunner::new(DemoConfig::default())));
        let mut dispatcher_config = self.dispatcher;
        if let Some(cidrs) = self.allow_target_cidrs {
            dispatcher_config.ssrf = SsrfPolicy::new(cidrs);
        }
        let ssrf = dispatcher_config.ssrf.clone();
        let mut registry = self.registry.unwrap_or_else(|| {
            let guard = ssrf.clone();
            Registry::with_builtin_options(
                BuiltinOptions::default().with_address_policy(move |ip| guard.check(ip).is_ok()),
            )
        });
        for plugin in self.plugins {
            plugin(&mut registry).map_err(BuildError::Register)?;
        }
        let metrics = Metrics::new();
        let ledger = Arc::new(MeteredLedger::new(store.ledger(), metrics.clone()));
        let dispatcher =
            Dispatcher::new(dispatcher_config, ledger).map_err(BuildError::Dispatcher)?;
        let public_url = std::sync::OnceLock::new();
        if let Some(url) = self.public_url {
            let _ = public_url.set(url);
        }
        let state = AppState::new(Inner {
            bus: store.bus(),
            deliveries: Deliveries::new(dispatcher, Arc::clone(&store)),
            store,
            runner,
            registry,
            ssrf,
            api_token,
            limits: self.limits,
            public_url,
            metrics,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        Ok(Server { state, grace: self.shutdown_grace, recovered: AtomicBool::new(false) })
    }
}

/// Why a server could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No (or an empty) API token was set.
    #[error("an API token is required")]
    MissingApiToken,
    /// An auth strategy could not be registered.
    #[error("cannot register the auth strategy")]
    Register(#[source] RegisterError),
    /// The delivery client could not be built (e.g. an unreadable extra CA).
    #[error("cannot build the delivery client")]
    Dispatcher(#[source] DispatcherError),
}

/// A built server: its router, its recovery step and its serve loop.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    grace: Duration,
    recovered: AtomicBool,
}

impl Server {
    /// The API as an axum router over this server's state: serve it, nest it, or drive it
    /// in tests with tower's `ServiceExt::oneshot`.
    pub fn app(&self) -> axum::Router {
        crate::api::router(self.state.clone())
    }

    /// The shared state (store, runner, metrics).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Resumes what the store left unfinished (see [`Recovery`]): re-spawns the deliveries of
    /// every unfinished execution and ends FAILED (`runner died with the server`) those whose
    /// in-process runner died with the previous process. Runs once; later calls return an
    /// empty report. [`Server::serve`] calls it first.
    pub async fn recover(&self) -> Result<Recovery, StoreError> {
        if self.recovered.swap(true, Ordering::SeqCst) {
            return Ok(Recovery::default());
        }
        let report = self.state.recover().await?;
        if report != Recovery::default() {
            tracing::info!(
                resumed = report.resumed,
                deliveries = report.deliveries,
                failed = report.failed,
                skipped_webhooks = report.skipped_webhooks,
                "recovered unfinished executions"
            );
        }
        Ok(report)
    }

    /// Serves the API on `listener` until `shutdown` resolves, then shuts down gracefully:
    /// stops accepting, ends open streams, lets in-flight requests finish, ends running
    /// executions (FAILED), and lets the deliveries of ended executions flush within the
    /// grace period. Recovers first (see [`Server::recover`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        if let Ok(mut addr) = listener.local_addr() {
            // A wildcard listener is reached on loopback by runners on this host.
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr.ip() {
                    std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            if let Ok(url) = Url::parse(&format!("http://{addr}")) {
                let _ = self.state.inner().public_url.set(url);
            }
        }
        self.recover().await.map_err(ServeError::Recover)?;
        let token = self.state.inner().shutdown.clone();
        let signal = {
            let token = token.clone();
            async move {
                tokio::select! {
                    () = shutdown => {}
                    () = token.cancelled() => {}
                }
                token.cancel();
            }
        };
        let served = axum::serve(listener, self.app()).with_graceful_shutdown(signal).await;
        self.shutdown().await;
        served.map_err(ServeError::Io)
    }

    /// Shuts down without a listener (in-process use): ends running executions (FAILED) and
    /// lets the deliveries of ended executions flush within the grace period.
    pub async fn shutdown(&self) {
        let inner = self.state.inner();
        inner.shutdown.cancel();
        inner.tasks.close();
        if tokio::time::timeout(self.grace, inner.tasks.wait()).await.is_err() {
            tracing::warn!("runner tasks still running at the end of the grace period");
        }
        inner.deliveries.shutdown(self.grace).await;
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Recovery at start failed (the store is unreadable).
    #[error("cannot recover unfinished executions")]
    Recover(#[source] StoreError),
    /// The listener failed.
    #[error("the listener failed")]
    Io(#[source] std::io::Error),
}
