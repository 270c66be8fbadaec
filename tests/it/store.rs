//! The embedded store end to end, through the real binary: a restart (SIGKILL) during a
//! retry backoff keeps the batch's id, its attempt count and its schedule; the deliveries
//! view and replay read what the previous process wrote.

use std::time::Duration;

use hookstream_delivery_http::PairKey;
use hookstream_server::store::embedded::{EmbeddedConfig, EmbeddedStore};
use hookstream_server::store::Store;
use serde_json::json;
use uuid::Uuid;

use crate::crash::{binary, get, post, Hookstream, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_a_retry_backoff_keeps_the_attempt_count_and_schedule() {
    let bin = binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let log = dir.path().join("hookstream.log");
    let target = Target::start(false).await;
    let mut server = Hookstream::start(&bin, &data, &log).await;

    let body = json!({"webhooks": {"url": target.url("/retry"), "batch": {"max_wait_ms": 10}}});
    let (status, created) = post(&server.base, "/executions", &body).await.expect("register");
    assert_eq!(status, 201, "{created}");
    let id = created["execution_id"].as_str().expect("execution_id").to_owned();
    let events = json!({"events": [
        {"type": "task_started", "data": {"n": 1}},
        {"type": "task_started", "data": {"n": 2}},
        {"type": "task_started", "data": {"n": 3}}
    ]});
    let (status, _) =
        post(&server.base, &format!("/executions/{id}/events"), &events).await.expect("ingest");
    assert_eq!(status, 202);

    // Two attempts answered 503 and recorded, then the process dies during the backoff
    // before the third.
    target.wait_until(Duration::from_secs(20), |got| got.len() >= 2).await;
    let deliveries = format!("/executions/{id}/deliveries");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, view) = get(&server.base, &deliveries).await.expect("deliveries");
        if view["webhooks"][0]["attempts"] == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "attempt 2 never recorded: {view}");
        tokio::task::yield_now().await;
    }
    server.kill().await;
    let before = target.got();
    assert_eq!(before.len(), 2, "a third attempt came before the kill");
    let batch_id = before[0].webhook_id.clone();
    assert_eq!(before[1].webhook_id, batch_id, "a retry keeps its webhook-id");

    // What the killed process left in the store.
    let execution_id: Uuid = id.parse().expect("a uuid");
    let next_attempt_at = {
        let store = EmbeddedStore::open(EmbeddedConfig::new(&data)).expect("open the data dir");
        let record = store
            .ledger()
            .in_flight(&PairKey::new(execution_id, 0))
            .await
            .expect("ledger read")
            .expect("the batch is in flight");
        assert_eq!(record.batch_id.as_str(), batch_id);
        assert_eq!(record.attempts, 2);
        assert_eq!((record.first_sequence, record.last_sequence), (1, 3));
        let next = record.next_attempt_at.expect("a retry is scheduled");
        assert!(next > before[1].at, "the next attempt is after the second");
        next
    };

    target.set_up(true);
    let server = Hookstream::start(&bin, &data, &log).await;
    target.wait_until(Duration::from_secs(30), |got| got.iter().any(|g| g.status == 200)).await;
    let third = target.got()[2].clone();
    assert_eq!(third.webhook_id, batch_id, "resumed with the same webhook-id");
    assert_eq!(third.events.len(), 3);
    // The schedule survives: no attempt before the recorded time (stored to the millisecond).
    let early = next_attempt_at
        .duration_since(third.at)
        .map_or(Duration::ZERO, |d| d)
        .saturating_sub(Duration::from_millis(2));
    assert!(early.is_zero(), "the third attempt came {early:?} before its schedule");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let view = loop {
        let (status, view) = get(&server.base, &deliveries).await.expect("deliveries");
        assert_eq!(status, 200, "{view}");
        if view["webhooks"][0]["delivered"] == 3 {
            break view;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recorded delivered: {view}");
        tokio::task::yield_now().await;
    };
    assert_eq!(view["webhooks"][0]["attempts"], 3, "the attempt count went on: {view}");
    assert_eq!(view["webhooks"][0]["last_status"], 200);
    assert_eq!(view["webhooks"][0]["pending"], 0);

    // Replay reads what the first process stored.
    let (status, replay) =
        get(&server.base, &format!("/executions/{id}/events?after=0")).await.expect("replay");
    assert_eq!(status, 200, "{replay}");
    let sequences: Vec<_> = replay["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["sequence"].clone())
        .collect();
    assert_eq!(sequences, vec![json!(1), json!(2), json!(3)]);
}
