//! Unit tests of opening the embedded store: migrations, refusals that touch nothing,
//! permissions, secrets, and retention.

use std::fs;

use hookstream_events_core::bus::{Backpressure, Bus};
use hookstream_events_core::testing::{draft, terminal};

use super::*;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temp dir")
}

#[test]
fn a_new_database_is_migrated_to_the_latest_version() {
    let dir = dir();
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect("open");
    let conn = rusqlite::Connection::open(store.path()).expect("open the file");
    assert_eq!(schema::user_version(&conn).unwrap(), schema::LATEST);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    drop(store);
    // Opening again runs nothing and keeps the version.
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect("re-open");
    assert_eq!(schema::user_version(&conn).unwrap(), schema::LATEST);
    drop(store);
}

#[test]
fn migrations_run_from_an_older_version() {
    let dir = dir();
    let path = dir.path().join(DATABASE_FILE);
    {
        // A database at version 0 with nothing in it: what a first start finds.
        let conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(schema::user_version(&conn).unwrap(), 0);
    }
    EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect("open migrates");
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(schema::user_version(&conn).unwrap(), schema::LATEST);
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN
             ('events', 'streams', 'subscriptions', 'meta')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 4);
}

#[test]
fn a_database_from_a_newer_version_is_refused_untouched() {
    let dir = dir();
    let path = dir.path().join(DATABASE_FILE);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 999;").unwrap();
    }
    let before = fs::read(&path).unwrap();
    let err = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect_err("refused");
    assert!(matches!(err, OpenError::NewerVersion { found: 999, .. }), "{err:?}");
    assert!(err.is_incompatible_file());
    let line = err.to_string();
    assert!(line.contains("schema version 999") && !line.contains('\n'), "{line}");
    assert_eq!(fs::read(&path).unwrap(), before, "the file was changed");
    assert!(!dir.path().join("hookstream.db-wal").exists(), "a WAL file was created");
}

#[test]
fn a_corrupt_file_is_refused_untouched() {
    let dir = dir();
    let path = dir.path().join(DATABASE_FILE);
    let garbage = b"this is not a database, just some bytes that happen to be here".repeat(100);
    fs::write(&path, &garbage).unwrap();
    let err = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect_err("refused");
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 2);
    assert!(!err.to_string().contains('\n'));
    assert_eq!(fs::read(&path).unwrap(), garbage, "the file was changed");
    assert!(!dir.path().join("hookstream.db-wal").exists());
}

#[test]
fn a_damaged_database_page_is_refused() {
    let dir = dir();
    drop(EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect("open"));
    let path = dir.path().join(DATABASE_FILE);
    // Keep the header, overwrite the schema page's content.
    let mut bytes = fs::read(&path).unwrap();
    for b in bytes.iter_mut().skip(100).take(3000) {
        *b = 0xA5;
    }
    fs::write(&path, &bytes).unwrap();
    let err = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect_err("refused");
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
}

#[test]
fn another_applications_database_is_refused() {
    let dir = dir();
    let path = dir.path().join(DATABASE_FILE);
    rusqlite::Connection::open(&path).unwrap().execute_batch("CREATE TABLE notes (x)").unwrap();
    let err = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect_err("refused");
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
}

#[test]
fn an_unwritable_data_dir_is_refused() {
    let dir = dir();
    // A file where a directory should be: refused for every user, root included.
    let file = dir.path().join("a-file");
    fs::write(&file, b"").unwrap();
    let err = EmbeddedStore::open(EmbeddedConfig::new(file.join("data"))).expect_err("refused");
    assert!(matches!(err, OpenError::DataDir { .. }), "{err:?}");
    assert!(err.to_string().starts_with("data dir "), "{err}");
    let err = EmbeddedStore::open(EmbeddedConfig::new(&file)).expect_err("refused");
    assert!(matches!(err, OpenError::DataDir { .. }), "{err:?}");
}

#[cfg(unix)]
#[test]
fn the_data_dir_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = dir();
    let data = dir.path().join("data");
    let store = EmbeddedStore::open(EmbeddedConfig::new(&data)).expect("open");
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(store.path()), 0o600);
    let wal = data.join("hookstream.db-wal");
    assert!(!wal.exists() || mode(&wal) == 0o600);
}

#[test]
fn a_sealed_database_needs_its_key() {
    let dir = dir();
    let key = SecretKey::from_bytes([1; 32]);
    let config =
        EmbeddedConfig { secret_key: Some(key.clone()), ..EmbeddedConfig::new(dir.path()) };
    drop(EmbeddedStore::open(config.clone()).expect("open with a key"));
    let err = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect_err("no key");
    assert!(matches!(err, OpenError::SecretKeyMissing { .. }), "{err:?}");
    let wrong = EmbeddedConfig {
        secret_key: Some(SecretKey::from_bytes([2; 32])),
        ..EmbeddedConfig::new(dir.path())
    };
    let err = EmbeddedStore::open(wrong).expect_err("wrong key");
    assert!(matches!(err, OpenError::SecretKeyWrong { .. }), "{err:?}");
    EmbeddedStore::open(config).expect("the right key opens");
}

#[tokio::test]
async fn retention_prunes_only_ended_executions_past_it() {
    let dir = dir();
    let config = EmbeddedConfig { retention: Duration::ZERO, ..EmbeddedConfig::new(dir.path()) };
    let store = EmbeddedStore::open(config).expect("open");
    let bus = store.bus();
    let (ended, running) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let many: Vec<_> = (0..2500).map(|n| draft("e", n)).collect();
    bus.publish(ended, many, Backpressure::Fail).await.unwrap();
    bus.publish(ended, vec![terminal()], Backpressure::Fail).await.unwrap();
    bus.publish(running, vec![draft("e", 1)], Backpressure::Fail).await.unwrap();
    let deleted = store.prune_expired().await.expect("prune");
    assert!(deleted >= 2501, "{deleted}");
    assert!(bus.read(ended, 0, 10).await.unwrap().is_empty());
    assert_eq!(bus.read(running, 0, 10).await.unwrap().len(), 1);
    // The end survives pruning: the execution takes no more events.
    let late = bus.publish(ended, vec![draft("late", 1)], Backpressure::Fail).await;
    assert!(matches!(late, Err(hookstream_events_core::bus::PublishError::Ended { .. })));
    assert_eq!(store.prune_expired().await.unwrap(), 0);
}

#[tokio::test]
async fn retention_keeps_recently_ended_executions() {
    let dir = dir();
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect("open");
    let bus = store.bus();
    let ended = uuid::Uuid::new_v4();
    bus.publish(ended, vec![draft("e", 1), terminal()], Backpressure::Fail).await.unwrap();
    assert_eq!(store.prune_expired().await.unwrap(), 0);
    assert_eq!(bus.read(ended, 0, 10).await.unwrap().len(), 2);
    store.ping().await.expect("ping");
}
