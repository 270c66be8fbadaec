//! The durable embedded store: SQLite (bundled) in WAL mode in the data dir, the default store
//! of `hookstream serve`.
//!
//! This module owns the database file `hookstream.db` in the data dir: opening it (with the
//! startup checks of [`OpenError`]), its schema and migrations, the one writer thread that
//! commits everything, the event bus over it ([`EmbeddedBus`]), and the background pruning of
//! old events. It does not decide what is stored when (the server and delivery do), and it
//! never reads the environment: the secret key reaches it through [`EmbeddedConfig`].
//!
//! # Writes: one thread, group commit
//!
//! Every write is a job queued on a channel to one dedicated thread. The thread takes
//! whatever is queued, applies it in one transaction (each job inside its own savepoint, so a
//! failing job never spoils the others), commits, and only then answers each job. Many
//! concurrent ingests therefore share one commit. With [`Durability::Default`]
//! (`synchronous=NORMAL`) a commit reaches the operating system before anyone is answered, so
//! an acknowledged write survives the death of the process (`kill -9`); with
//! [`Durability::Fsync`] (`synchronous=FULL`) every answer also waits for the disk.
//!
//! Checkpoints (copying the WAL back into the database file) run on a thread and connection
//! of their own, so that their fsync never holds a commit back.
//!
//! # Reads
//!
//! Reads go through a small pool of read-only connections on the blocking thread pool; WAL
//! lets them run beside the writer. Subscribers that keep up are served from a short
//! in-memory tail of each execution's newest events and never touch the file, and recently
//! used execution records are cached (updated by the writer thread after each commit).
//!
//! # Secrets
//!
//! The data dir is created with mode 0700 and the database file with 0600 (SQLite gives its
//! `-wal` and `-shm` files the same mode). With a [`SecretKey`], the webhook configurations
//! (which hold credentials) are sealed with XChaCha20-Poly1305 before they are written.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

mod bus;
mod error;
mod ledger;
mod schema;
mod secret;
mod store;
mod writer;

pub use bus::EmbeddedBus;
pub use error::{EmbeddedError, OpenError};
pub use secret::{SecretKey, SecretKeyError};

use writer::Inner;

/// The database file's name in the data dir.
pub const DATABASE_FILE: &str = "hookstream.db";

/// How long events of ended executions are kept by default (7 days).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// What an answer waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// The commit reached the operating system (`synchronous=NORMAL` in WAL mode): survives
    /// the death of the process, not necessarily a power cut.
    #[default]
    Default,
    /// The commit reached the disk (`synchronous=FULL`): every answer waits for fsync.
    Fsync,
}

impl Durability {
    /// The SQLite `synchronous` setting this durability uses.
    fn synchronous(self) -> &'static str {
        match self {
            Self::Default => "NORMAL",
            Self::Fsync => "FULL",
        }
    }
}

/// How to open an [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// The data dir; created (mode 0700) when missing.
    pub data_dir: PathBuf,
    /// What an answer waits for.
    pub durability: Durability,
    /// How long the events of an ended execution are kept for replay before they are pruned.
    pub retention: Duration,
    /// Seals webhook configurations (their credentials) at rest when set.
    pub secret_key: Option<SecretKey>,
}

impl EmbeddedConfig {
    /// The defaults for `data_dir`: [`Durability::Default`], [`DEFAULT_RETENTION`], no key.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            durability: Durability::Default,
            retention: DEFAULT_RETENTION,
            secret_key: None,
        }
    }
}

/// The durable store of the data dir. Cloning gives another handle on the same database;
/// the writer thread stops once the last handle (including buses and subscriptions) is gone.
///
/// ```
/// use hookstream_events_core::bus::{Backpressure, Bus};
/// use hookstream_events_core::{Draft, EventType};
/// use hookstream_server::store::embedded::{EmbeddedConfig, EmbeddedStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path()))?;
/// let execution = uuid::Uuid::new_v4();
/// let draft = Draft::new(EventType::new("task_started")?, Default::default());
/// let published = store.embedded_bus().publish(execution, vec![draft], Backpressure::Wait).await?;
/// assert_eq!(published.last_sequence, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .field("durability", &self.inner.durability)
            .field("retention", &self.inner.retention)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating or migrating) the database in `config.data_dir`.
    ///
    /// Blocking: call it at startup, not from a busy async task. When it fails, nothing in the
    /// data dir was created or changed, except the data dir itself when it was missing.
    pub fn open(config: EmbeddedConfig) -> Result<Self, OpenError> {
        let path = prepare_data_dir(&config.data_dir)?;
        let conn = schema::open_checked(&path)?;
        schema::configure(&conn, config.durability)
            .and_then(|()| schema::migrate(&conn))
            .map_err(|source| OpenError::from_sqlite(&path, source))?;
        let key_check = schema::key_check(&conn).map_err(|e| OpenError::from_sqlite(&path, e))?;
        let sealer = secret::Sealer::new(config.secret_key.clone());
        match sealer.check(key_check.as_deref()) {
            secret::KeyCheck::Matches => {}
            secret::KeyCheck::Record(value) => schema::set_key_check(&conn, &value)
                .map_err(|e| OpenError::from_sqlite(&path, e))?,
            secret::KeyCheck::Missing => return Err(OpenError::SecretKeyMissing { path }),
            secret::KeyCheck::Wrong => return Err(OpenError::SecretKeyWrong { path }),
        }
        let inner = Inner::start(conn, path, config.durability, config.retention, sealer)
            .map_err(|source| OpenError::Io { path: config.data_dir.clone(), source })?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The event bus over this store, as its concrete type (the [`Store`](crate::store::Store)
    /// trait's `bus()` hands out the same as `Arc<dyn Bus>`).
    pub fn embedded_bus(&self) -> EmbeddedBus {
        EmbeddedBus::new(Arc::clone(&self.inner))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Prunes now, in small chunks, every event of executions that ended more than the
    /// retention ago (the background pruning does the same every minute); returns how many
    /// events were deleted.
    pub async fn prune_expired(&self) -> Result<u64, EmbeddedError> {
        let mut total = 0;
        loop {
            let retention = self.inner.retention;
            let deleted = self.inner.call(move |ctx| writer::prune_chunk(ctx, retention)).await?;
            total += deleted;
            if deleted == 0 {
                return Ok(total);
            }
        }
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<(), EmbeddedError> {
        self.inner.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(Into::into)).await
    }

    /// The base64 form of a fresh random secret key, for `HOOKSTREAM_SECRET_KEY`.
    pub fn generate_secret_key() -> String {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        base64::engine::general_purpose::STANDARD.encode(key)
    }
}

/// Creates the data dir when missing (0700), checks that it is writable, and returns the
/// database path.
fn prepare_data_dir(dir: &Path) -> Result<PathBuf, OpenError> {
    let unwritable = |source: io::Error| OpenError::DataDir { path: dir.to_owned(), source };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(unwritable(io::Error::new(io::ErrorKind::NotADirectory, "not a directory")))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(unwritable)?;
        }
        Err(e) => return Err(unwritable(e)),
    }
    // A probe file tells writable from not for every user (root included) and every mount.
    let probe = dir.join(".hookstream-write-probe");
    fs::write(&probe, b"").map_err(unwritable)?;
    fs::remove_file(&probe).map_err(unwritable)?;
    Ok(dir.join(DATABASE_FILE))
}

#[cfg(test)]
mod tests;
