//! The database schema and its migrations, versioned by `PRAGMA user_version` from the first
//! release, and the checks that run before anything is written: a file that is not an SQLite
//! database, or one written by a newer hookstream, is refused untouched.
//!
//! A migration is appended to [`MIGRATIONS`], never edited once released: version `n` is the
//! schema after the first `n` migrations.

use std::fs;
use std::io::{self, Read as _};
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use super::{Durability, OpenError};

/// The migrations, oldest first; the schema version is how many have run.
pub(super) const MIGRATIONS: &[&str] = &[V1];

/// The newest schema version this build knows.
pub(super) const LATEST: i64 = MIGRATIONS.len() as i64;

/// Version 1: the first release.
const V1: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- The bus's view of each execution: its last sequence and when it ended.
CREATE TABLE streams (
    execution_id  BLOB PRIMARY KEY,
    last_sequence INTEGER NOT NULL,
    ended_at      INTEGER,
    pruned        INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX streams_ended ON streams (ended_at) WHERE ended_at IS NOT NULL AND pruned = 0;

-- The event log: data is the JSON text of the event's data object.
CREATE TABLE events (
    execution_id BLOB NOT NULL,
    sequence     INTEGER NOT NULL,
    id           BLOB NOT NULL,
    type         TEXT NOT NULL,
    timestamp    INTEGER NOT NULL,
    data         TEXT NOT NULL
);
CREATE UNIQUE INDEX events_sequence ON events (execution_id, sequence);
CREATE UNIQUE INDEX events_id ON events (execution_id, id);

-- Durable subscriptions: acknowledged position and the highest sequence handed out.
CREATE TABLE subscriptions (
    execution_id BLOB NOT NULL,
    name         TEXT NOT NULL,
    acked        INTEGER NOT NULL DEFAULT 0,
    handed       INTEGER NOT NULL DEFAULT 0,
    capacity     INTEGER NOT NULL,
    PRIMARY KEY (execution_id, name)
) WITHOUT ROWID;

-- Execution records. JSON columns hold JSON text; times are Unix milliseconds.
CREATE TABLE executions (
    id                BLOB PRIMARY KEY,
    runner            TEXT NOT NULL,
    external          INTEGER NOT NULL,
    inputs            TEXT NOT NULL,
    meta              TEXT NOT NULL,
    ingest_token_hash BLOB NOT NULL,
    state             TEXT NOT NULL,
    result            TEXT NOT NULL,
    error             TEXT,
    execution_time    REAL,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    undelivered       INTEGER NOT NULL
);
CREATE INDEX executions_unfinished ON executions (id)
    WHERE state IN ('PENDING', 'RUNNING') OR undelivered > 0;

-- Webhooks: spec is the spec's JSON, sealed when a secret key is set (it holds credentials).
CREATE TABLE webhooks (
    execution_id BLOB NOT NULL,
    idx          INTEGER NOT NULL,
    spec         BLOB NOT NULL,
    delivered    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (execution_id, idx)
) WITHOUT ROWID;

-- The delivery ledger: batches in flight (formed, not yet delivered, split or dead-lettered).
CREATE TABLE batches (
    id              INTEGER PRIMARY KEY,
    execution_id    BLOB NOT NULL,
    webhook         INTEGER NOT NULL,
    batch_id        TEXT NOT NULL,
    first_sequence  INTEGER NOT NULL,
    last_sequence   INTEGER NOT NULL,
    event_count     INTEGER NOT NULL,
    formed_at       INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER
);
CREATE UNIQUE INDEX batches_pair ON batches (execution_id, webhook, batch_id);

-- Each pair's figures for the deliveries view.
CREATE TABLE pair_stats (
    execution_id         BLOB NOT NULL,
    webhook              INTEGER NOT NULL,
    state                TEXT NOT NULL DEFAULT 'active',
    delivered_events     INTEGER NOT NULL DEFAULT 0,
    pending_events       INTEGER NOT NULL DEFAULT 0,
    dead_lettered_events INTEGER NOT NULL DEFAULT 0,
    attempts             INTEGER NOT NULL DEFAULT 0,
    last_status          INTEGER,
    last_error           TEXT,
    PRIMARY KEY (execution_id, webhook)
) WITHOUT ROWID;

-- The newest attempts of each pair (bounded).
CREATE TABLE attempts (
    id              INTEGER PRIMARY KEY,
    execution_id    BLOB NOT NULL,
    webhook         INTEGER NOT NULL,
    batch_id        TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    status          INTEGER,
    error           TEXT,
    latency_ms      INTEGER NOT NULL,
    next_attempt_at INTEGER,
    response_body   BLOB NOT NULL
);
CREATE INDEX attempts_pair ON attempts (execution_id, webhook, id);

-- Dead letters, kept after a redrive (flagged) for the record.
CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY,
    execution_id BLOB NOT NULL,
    webhook      INTEGER NOT NULL,
    batch_id     TEXT NOT NULL,
    sequences    TEXT NOT NULL,
    reason       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    redriven     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX dead_letters_pair ON dead_letters (execution_id, webhook, id);
";

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Opens `path` for writing after the checks that must pass before anything is written: the
/// file is an SQLite database (or new) and its schema is not newer than [`LATEST`]. A new
/// file is created with mode 0600.
pub(super) fn open_checked(path: &Path) -> Result<Connection, OpenError> {
    let io_error = |source: io::Error| OpenError::Io { path: path.to_owned(), source };
    let corrupt = |message: &str| OpenError::Corrupt {
        path: path.to_owned(),
        source: rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
            Some(message.to_owned()),
        ),
    };
    match fs::File::open(path) {
        Ok(mut file) => {
            let mut header = Vec::with_capacity(16);
            file.by_ref().take(16).read_to_end(&mut header).map_err(io_error)?;
            if !header.is_empty() && header.as_slice() != SQLITE_HEADER {
                return Err(corrupt("file is not a database"));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_private(path).map_err(io_error)?,
        Err(e) => return Err(io_error(e)),
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| OpenError::from_sqlite(path, e))?;
    let version = user_version(&conn).map_err(|e| OpenError::from_sqlite(path, e))?;
    if version > LATEST {
        return Err(OpenError::NewerVersion {
            path: path.to_owned(),
            found: version,
            known: LATEST,
        });
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
        .map_err(|e| OpenError::from_sqlite(path, e))?;
    if version == 0 && tables > 0 {
        return Err(corrupt("an SQLite database of another application"));
    }
    Ok(conn)
}

/// Creates an empty file readable and writable by its owner only.
fn create_private(path: &Path) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        // Created by someone else in between: open_checked goes on with it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The schema version of the database (`PRAGMA user_version`).
pub(super) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Sets the writer connection's pragmas: WAL, the durability's `synchronous`, a busy timeout.
pub(super) fn configure(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode: the file system refused WAL (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", durability.synchronous())?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Opens a read-only connection for the read pool.
pub(super) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Opens the connection that runs checkpoints.
pub(super) fn open_checkpointer(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Runs the migrations the database lacks, each in its own transaction with its version.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let current = user_version(conn)?;
    let start = usize::try_from(current).unwrap_or(usize::MAX);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// The stored secret-key check value, if one was recorded.
pub(super) fn key_check(conn: &Connection) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row("SELECT value FROM meta WHERE key = 'secret_key_check'", [], |r| r.get(0))
        .optional()
}

/// Records the secret-key check value.
pub(super) fn set_key_check(conn: &Connection, value: &[u8]) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('secret_key_check', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [value],
    )?;
    Ok(())
}
