//! `hookstream serve`: builds the server from a resolved [`ServeConfig`] (store, runner, API
//! token, SSRF allow-list, extra CA, public URL), listens, and shuts down gracefully on
//! SIGTERM or SIGINT.
//!
//! Console contract (stdout, one line each, for people and scripts): `listening on
//! http://<addr>` once bound, and `api token: <token>` once, only when the token was just
//! generated. Everything else goes to the log on stderr; the token never does.

use std::sync::Arc;

use hookstream_delivery_http::DispatcherConfig;
use tokio::net::TcpListener;

use crate::cli::api_token::{self, TokenFileError, TokenSource};
use crate::cli::shutdown;
use crate::config::{RunnerConfig, ServeConfig, StoreKind};
use crate::runner::command::CommandRunner;
use crate::runner::demo::DemoRunner;
use crate::runner::external::ExternalRunner;
use crate::runner::Runner;
use crate::store::{MemoryStore, Store};
use crate::{BuildError, ServeError, ServerBuilder};

/// Why `serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The API token file could not be used.
    #[error("api token")]
    Token(#[source] TokenFileError),
    /// The extra CA file could not be read.
    #[error("cannot read --extra-ca {path}")]
    ExtraCa {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The embedded store refused to open (unwritable data dir, a database from a newer
    /// version, a corrupt file, a wrong secret key...): nothing in the data dir was changed.
    #[cfg(feature = "embedded")]
    #[error("cannot open the embedded store")]
    OpenStore(#[source] crate::store::embedded::OpenError),
    /// The store could not be opened for another reason (e.g. the opening task panicked).
    #[error("cannot open the {kind} store")]
    Store {
        /// Which store.
        kind: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server could not be built (e.g. an extra CA file that holds no certificate).
    #[error("invalid configuration")]
    Build(#[source] BuildError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the server stopped")]
    Serve(#[source] ServeError),
}

impl RunError {
    /// The process exit code: 2 for what the configuration or the environment it names got
    /// wrong (including a store that refuses to open), 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ExtraCa { .. } | Self::Build(_) => super::EXIT_USAGE,
            #[cfg(feature = "embedded")]
            Self::OpenStore(error) => u8::try_from(error.exit_code()).unwrap_or(1),
            _ => 1,
        }
    }
}

/// Runs the service until SIGTERM or SIGINT, then shuts down gracefully (stop accepting, end
/// streams, end running executions, flush deliveries within the grace period).
pub async fn run(config: ServeConfig) -> Result<(), RunError> {
    // Files the configuration names are read before anything is written.
    let mut dispatcher = DispatcherConfig::default();
    if let Some(path) = &config.extra_ca {
        let pem = tokio::fs::read(path)
            .await
            .map_err(|source| RunError::ExtraCa { path: path.display().to_string(), source })?;
        dispatcher.extra_ca_pem = Some(pem);
    }
    // The store is opened (and so validated) before the token file may be written: a start
    // the store refuses leaves the data dir as it was.
    let store = open_store(&config).await?;
    let (token, source) =
        api_token::resolve(config.api_token.clone(), &config.data_dir).map_err(RunError::Token)?;
    let token_file = config.data_dir.join(api_token::FILE_NAME);
    match source {
        TokenSource::Generated => {
            // The one place the token is shown: stdout, once, never the log.
            println!("api token: {}", token.expose());
            println!(
                "(generated and kept in {}; pass it as Authorization: Bearer <token>)",
                token_file.display()
            );
        }
        TokenSource::Kept => {
            tracing::info!(file = %token_file.display(), "using the API token kept in the data dir")
        }
        TokenSource::Configured => tracing::info!("using the configured API token"),
    }

    let runner: Arc<dyn Runner> = match &config.runner {
        RunnerConfig::Demo(demo) => Arc::new(DemoRunner::new(*demo)),
        RunnerConfig::Command(command) => Arc::new(CommandRunner::new(command.clone())),
        RunnerConfig::External => Arc::new(ExternalRunner::new()),
    };
    let mut builder = ServerBuilder::new()
        .store(store)
        .runner(runner)
        .api_token(token)
        .allow_target_cidrs(config.allow_target_cidrs.clone())
        .dispatcher_config(dispatcher)
        .shutdown_grace(config.shutdown_grace);
    if let Some(url) = &config.public_url {
        builder = builder.public_url(url.clone());
    }
    let server = builder.build().map_err(RunError::Build)?;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Bind { addr: config.listen, source })?;
    let addr =
        listener.local_addr().map_err(|source| RunError::Bind { addr: config.listen, source })?;
    println!("listening on http://{addr}");
    tracing::info!(
        %addr,
        store = config.store.as_str(),
        runner = config.runner.name(),
        allow_target_cidrs = ?config.allow_target_cidrs,
        "hookstream serving"
    );

    let grace = config.shutdown_grace;
    let stop = async move {
        let signal = shutdown::signal().await;
        tracing::info!(
            signal = signal.name(),
            grace = %humantime::format_duration(grace),
            "shutting down: no new connections, flushing deliveries"
        );
    };
    server.serve(listener, stop).await.map_err(RunError::Serve)?;
    tracing::info!("stopped");
    Ok(())
}

async fn open_store(config: &ServeConfig) -> Result<Arc<dyn Store>, RunError> {
    match config.store {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::new())),
        #[cfg(feature = "embedded")]
        StoreKind::Embedded => {
            use crate::store::embedded::{EmbeddedConfig, EmbeddedStore};
            let mut settings = EmbeddedConfig::new(config.data_dir.clone());
            settings.secret_key = config.secret_key.clone();
            settings.durability = config.durability;
            settings.retention = config.retention;
            let opened = tokio::task::spawn_blocking(move || EmbeddedStore::open(settings)).await;
            match opened {
                Ok(Ok(store)) => {
                    tracing::info!(
                        path = %store.path().display(),
                        durability = ?config.durability,
                        retention = %humantime::format_duration(config.retention),
                        "embedded store open"
                    );
                    Ok(Arc::new(store))
                }
                Ok(Err(error)) => Err(RunError::OpenStore(error)),
                Err(error) => Err(RunError::Store { kind: "embedded", source: Box::new(error) }),
            }
        }
        // The configuration refuses these before anything starts.
        other => Err(RunError::Store {
            kind: other.as_str(),
            source: format!("--store {} is not supported in this build", other.as_str()).into(),
        }),
    }
}
