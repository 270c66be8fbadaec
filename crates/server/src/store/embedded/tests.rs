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
    let bus = store.embedded_bus();
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
    let bus = store.embedded_bus();
    let ended = uuid::Uuid::new_v4();
    bus.publish(ended, vec![draft("e", 1), terminal()], Backpressure::Fail).await.unwrap();
    assert_eq!(store.prune_expired().await.unwrap(), 0);
    assert_eq!(bus.read(ended, 0, 10).await.unwrap().len(), 2);
    store.ping().await.expect("ping");
}

mod store {
    //! The server's `Store` contract on the embedded store, across re-opens.

    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use hookstream_delivery_http::{
        BatchId, BatchRecord, DeadLetter, DeadLetterReason, PairKey, PairState,
    };
    use hookstream_events_core::Timestamp;
    use serde_json::json;
    use uuid::Uuid;

    use super::super::{EmbeddedConfig, EmbeddedStore, SecretKey};
    use crate::store::{Completion, Execution, ExecutionState, FinalState, Store};
    use crate::token::IngestToken;
    use crate::webhook::{StoredAuth, WebhookSpec};

    fn spec(token: &str) -> WebhookSpec {
        let mut spec = WebhookSpec::new(url::Url::parse("https://receiver.test/hook").unwrap());
        spec.authentication = StoredAuth::new(json!({"strategy": "bearer", "token": token}));
        spec
    }

    fn execution(external: bool) -> Execution {
        let runner = if external { "external" } else { "demo" };
        Execution::new(Uuid::new_v4(), runner, external, IngestToken::generate().hash())
            .with_meta(json!({"requested_by": "ops"}))
            .with_webhooks(vec![spec("first-secret-token"), spec("second-secret-token")])
    }

    #[tokio::test]
    async fn executions_survive_a_reopen_and_finish_once() {
        let dir = tempfile::tempdir().unwrap();
        let exec = execution(false);
        let id = exec.id;
        {
            let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
            store.create_execution(exec.clone()).await.unwrap();
            assert!(store.create_execution(exec.clone()).await.unwrap_err().is_conflict());
            assert!(store.mark_running(id, Timestamp::now()).await.unwrap());
            assert!(!store.mark_running(id, Timestamp::now()).await.unwrap());
            assert!(store
                .mark_running(Uuid::new_v4(), Timestamp::now())
                .await
                .unwrap_err()
                .is_not_found());
        }
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let back = store.execution(id).await.unwrap();
        assert_eq!(back.state, ExecutionState::Running);
        assert_eq!(back.meta, json!({"requested_by": "ops"}));
        assert_eq!(back.webhooks, exec.webhooks);
        assert_eq!(back.ingest_token, exec.ingest_token);
        assert_eq!(back.created_at, exec.created_at);
        let unfinished = store.unfinished_executions().await.unwrap();
        assert_eq!(unfinished.iter().map(|e| e.id).collect::<Vec<_>>(), vec![id]);

        let failed = Completion::new(
            FinalState::Failed,
            serde_json::Value::Null,
            Some("the runner died with the server".into()),
            2.5,
        );
        let finished = store.finish_execution(id, failed.clone()).await.unwrap();
        assert_eq!(finished.last_sequence, 1);
        assert!(store.finish_execution(id, failed).await.unwrap_err().is_conflict());
        let events = store.bus().read(id, 0, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data["state"], "FAILED");
        assert_eq!(events[0].data["error"], "the runner died with the server");
        assert_eq!(events[0].data["meta"]["requested_by"], "ops");
        drop(store);

        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let back = store.execution(id).await.unwrap();
        assert_eq!(back.state, ExecutionState::Failed);
        assert_eq!(back.execution_time, Some(2.5));
        assert_eq!(back.error.as_deref(), Some("the runner died with the server"));
        assert_eq!(store.state_counts().await.unwrap().failed, 1);
        // Ended, but its webhooks are not delivered: still unfinished until marked.
        assert_eq!(store.unfinished_executions().await.unwrap().len(), 1);
        store.mark_delivery_finished(id, 0).await.unwrap();
        store.mark_delivery_finished(id, 0).await.unwrap();
        assert_eq!(store.unfinished_executions().await.unwrap().len(), 1);
        store.mark_delivery_finished(id, 1).await.unwrap();
        assert!(store.unfinished_executions().await.unwrap().is_empty());
        assert!(store.execution(Uuid::new_v4()).await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn external_executions_keep_accepting_events_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let exec = execution(true);
        let id = exec.id;
        let draft = |n| hookstream_events_core::testing::draft("e", n);
        {
            let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
            store.create_execution(exec).await.unwrap();
            store.bus().publish(id, vec![draft(1)], Default::default()).await.unwrap();
        }
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let unfinished = store.unfinished_executions().await.unwrap();
        assert!(unfinished[0].external);
        let p = store.bus().publish(id, vec![draft(2)], Default::default()).await.unwrap();
        assert_eq!(p.last_sequence, 2);
    }

    #[tokio::test]
    async fn webhook_secrets_are_sealed_on_disk_with_a_key() {
        for key in [None, Some(SecretKey::from_bytes([7; 32]))] {
            let dir = tempfile::tempdir().unwrap();
            let sealed = key.is_some();
            let config = EmbeddedConfig { secret_key: key, ..EmbeddedConfig::new(dir.path()) };
            let store = EmbeddedStore::open(config.clone()).unwrap();
            let exec = execution(false);
            store.create_execution(exec.clone()).await.unwrap();
            drop(store);
            let mut raw = Vec::new();
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                raw.extend(std::fs::read(entry.unwrap().path()).unwrap());
            }
            let visible = raw.windows(18).any(|w| w == b"first-secret-token");
            assert_eq!(visible, !sealed, "sealed: {sealed}");
            let store = EmbeddedStore::open(config).unwrap();
            assert_eq!(store.execution(exec.id).await.unwrap().webhooks, exec.webhooks);
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[tokio::test]
    async fn batches_in_flight_survive_a_reopen_with_their_id_and_schedule() {
        // The attempts themselves are recorded by delivery (`attempt_finished`); the
        // end-to-end test of the same over a dispatcher is in the workspace tests (store.rs).
        let dir = tempfile::tempdir().unwrap();
        let pair = PairKey::new(Uuid::new_v4(), 0);
        let next = at(60) + Duration::from_millis(250);
        let batch = BatchRecord::new(pair, BatchId::generate(), 3, 7, 5, at(0), 2, Some(next));
        {
            let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
            let ledger = store.ledger();
            ledger.batch_formed(&batch).await.unwrap();
        }
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let ledger = store.ledger();
        let resumed = ledger.in_flight(&pair).await.unwrap().expect("the batch is in flight");
        assert_eq!(resumed.batch_id, batch.batch_id, "the same webhook-id");
        assert_eq!((resumed.first_sequence, resumed.last_sequence), (3, 7));
        assert_eq!(resumed.event_count, 5);
        assert_eq!(resumed.attempts, 2);
        assert_eq!(resumed.next_attempt_at, Some(next));
        assert_eq!(resumed.formed_at, at(0));
        let stats = store.delivery_stats(pair).await.unwrap().unwrap();
        assert_eq!(stats.pending_events, 5);

        ledger.batch_delivered(&pair, &batch.batch_id, at(61)).await.unwrap();
        assert!(ledger.in_flight(&pair).await.unwrap().is_none());
        let stats = store.delivery_stats(pair).await.unwrap().unwrap();
        assert_eq!((stats.delivered_events, stats.pending_events), (5, 0));
    }

    #[tokio::test]
    async fn a_batch_recorded_delivered_is_acknowledged_in_the_same_commit() {
        use hookstream_events_core::bus::{Backpressure, SubscribeOptions};
        use hookstream_events_core::testing::draft;

        let dir = tempfile::tempdir().unwrap();
        let pair = PairKey::new(Uuid::new_v4(), 0);
        let batch = BatchRecord::new(pair, BatchId::generate(), 1, 3, 3, at(0), 0, None);
        {
            let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
            let bus = store.bus();
            let options = SubscribeOptions::durable(pair.execution_id, pair.subscription_name());
            let mut sub = bus.subscribe(options).await.unwrap();
            let drafts = (1..=3).map(|n| draft("e", n)).collect();
            bus.publish(pair.execution_id, drafts, Backpressure::Fail).await.unwrap();
            for _ in 0..3 {
                sub.next().await.unwrap().unwrap();
            }
            store.ledger().batch_formed(&batch).await.unwrap();
            store.ledger().batch_delivered(&pair, &batch.batch_id, at(1)).await.unwrap();
            // The process dies before delivery acknowledges: no `sub.ack(3)`.
        }
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let bus = store.bus();
        let options = SubscribeOptions::durable(pair.execution_id, pair.subscription_name());
        let mut sub = bus.subscribe(options).await.unwrap();
        bus.publish(pair.execution_id, vec![draft("e", 4)], Backpressure::Fail).await.unwrap();
        let next = sub.next().await.unwrap().unwrap();
        assert_eq!(next.event.sequence, 4, "a delivered batch came back after a restart");
        assert!(store.ledger().in_flight(&pair).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn dead_letters_keep_their_reason_and_leave_on_redrive() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let ledger = store.ledger();
        let pair = PairKey::new(Uuid::new_v4(), 1);
        assert!(store.delivery_stats(pair).await.unwrap().is_none());
        let a = BatchRecord::new(pair, BatchId::generate(), 1, 2, 2, at(0), 0, None);
        let b = BatchRecord::new(pair, BatchId::generate(), 3, 3, 1, at(1), 0, None);
        ledger.batch_formed(&a).await.unwrap();
        ledger.batch_formed(&b).await.unwrap();
        assert_eq!(ledger.in_flight(&pair).await.unwrap().unwrap().batch_id, a.batch_id);
        let reasons = [
            DeadLetterReason::Status { status: 404 },
            DeadLetterReason::Expired { attempts: 30, last: "503".into() },
        ];
        for (batch, reason) in [&a, &b].into_iter().zip(reasons.clone()) {
            let sequences = (batch.first_sequence..=batch.last_sequence).collect();
            let letter = DeadLetter::new(pair, batch.batch_id.clone(), sequences, reason, 1, at(5));
            ledger.dead_lettered(&letter).await.unwrap();
        }
        ledger.webhook_gone(&pair).await.unwrap();
        drop(ledger);
        drop(store);
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let stats = store.delivery_stats(pair).await.unwrap().unwrap();
        assert_eq!(stats.state, PairState::Gone);
        assert_eq!((stats.dead_lettered_events, stats.pending_events), (3, 0));
        let got: Vec<_> = stats.dead_letters.iter().map(|d| d.reason.clone()).collect();
        assert_eq!(got, reasons.to_vec());
        assert_eq!(stats.dead_letters[0].sequences, vec![1, 2]);
        assert_eq!(stats.last_error.as_deref(), Some(reasons[1].to_string().as_str()));
        store.ledger().redriven(&pair, &a.batch_id, &BatchId::generate()).await.unwrap();
        let stats = store.delivery_stats(pair).await.unwrap().unwrap();
        assert_eq!(stats.dead_letters.len(), 1);
        assert!(store.ledger().in_flight(&pair).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn the_store_conformance_check_passes() {
    let dir = dir();
    let key = Some(SecretKey::from_bytes([3; 32]));
    let store =
        EmbeddedStore::open(EmbeddedConfig { secret_key: key, ..EmbeddedConfig::new(dir.path()) })
            .expect("open");
    crate::store::conformance::check(std::sync::Arc::new(store)).await;
}
