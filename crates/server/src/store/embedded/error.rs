//! The embedded store's errors: [`OpenError`] for startup (each one line, for the CLI to print
//! before exiting with code 2) and [`EmbeddedError`] for everything after.

use std::path::{Path, PathBuf};

/// Why the embedded store did not open. The `Display` form is one line that names the file
/// and what to do (the cause, when there is one, is its `source`: print the chain, e.g.
/// anyhow's `{:#}`, for one line with it); nothing in the data dir was created or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The data dir could not be created or is not writable.
    #[error("data dir {} is not writable", path.display())]
    DataDir {
        /// The data dir.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The database was written by a newer hookstream, whose schema this build does not know.
    #[error(
        "database {} has schema version {found}, newer than this hookstream knows ({known}); \
         run a newer hookstream or use another --data-dir",
        path.display()
    )]
    NewerVersion {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// The file is not an SQLite database, or it is damaged.
    #[error(
        "database {} is corrupt or not a hookstream database; restore it from a backup or \
         move it away",
        path.display()
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// Webhook secrets in the database are sealed, and no secret key was given.
    #[error(
        "database {} holds sealed secrets: set HOOKSTREAM_SECRET_KEY to the key it was written with",
        path.display()
    )]
    SecretKeyMissing {
        /// The database file.
        path: PathBuf,
    },
    /// The secret key given is not the one the database was written with.
    #[error(
        "database {} was sealed with another HOOKSTREAM_SECRET_KEY than the one given",
        path.display()
    )]
    SecretKeyWrong {
        /// The database file.
        path: PathBuf,
    },
    /// SQLite failed otherwise (locked by another process, out of space, ...).
    #[error("cannot open database {}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// An IO failure outside SQLite (starting the writer thread, creating the file).
    #[error("cannot open the store in {}", path.display())]
    Io {
        /// The file or dir.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl OpenError {
    /// The process exit code a CLI should end with: 2, a startup error of the operator's
    /// environment (SPEC §6).
    pub fn exit_code(&self) -> i32 {
        2
    }

    /// Whether the file itself is the problem (corrupt, or from a newer version), as opposed
    /// to its surroundings (permissions, key, locks).
    pub fn is_incompatible_file(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::NewerVersion { .. })
    }

    /// Classifies an SQLite failure on `path`: damage and foreign files are [`Self::Corrupt`].
    pub(super) fn from_sqlite(path: &Path, source: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let corrupt = matches!(
            source.sqlite_error_code(),
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
        );
        if corrupt {
            Self::Corrupt { path: path.to_owned(), source }
        } else {
            Self::Sqlite { path: path.to_owned(), source }
        }
    }
}

/// A failure of the embedded store after it opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedError {
    /// SQLite failed.
    #[error("the embedded database failed")]
    Sqlite(#[from] rusqlite::Error),
    /// The commit of the group this operation was part of failed; nothing of it was stored.
    #[error("the embedded database could not commit")]
    Commit(#[source] std::sync::Arc<rusqlite::Error>),
    /// The writer thread is gone (the store is shutting down).
    #[error("the embedded store has shut down")]
    Closed,
    /// A stored value could not be read back (a damaged row).
    #[error("stored data is invalid: {0}")]
    Invalid(String),
    /// A sealed secret could not be opened or sealed.
    #[error("a sealed secret could not be processed")]
    Secret,
}

impl EmbeddedError {
    /// Whether retrying the same operation later may succeed (busy database, shutdown in
    /// progress is not retryable).
    pub fn is_retryable(&self) -> bool {
        use rusqlite::ErrorCode;
        let code = match self {
            Self::Sqlite(e) => e.sqlite_error_code(),
            Self::Commit(e) => e.sqlite_error_code(),
            _ => None,
        };
        matches!(code, Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
    }

    pub(super) fn invalid(what: impl Into<String>) -> Self {
        Self::Invalid(what.into())
    }
}
