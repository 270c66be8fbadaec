//! The contract of [`Store`] as one test every implementation runs (`cfg(test)` inside this
//! crate, or the `testing` feature): records round-trip, conflicts and not-found are
//! reported as such, `finish_execution` publishes the terminal event exactly once even when
//! raced, recovery lists what is unfinished, and no secret shows in `Debug`.
//!
//! ```
//! # use std::sync::Arc;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // In a store's own tests: `check` panics on the first violation.
//! let store = hookstream_server::store::MemoryStore::new();
//! hookstream_server::store::conformance::check(Arc::new(store)).await;
//! # }
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use hookstream_events_core::bus::Backpressure;
use hookstream_events_core::{Data, Draft, EventType, Timestamp};
use serde_json::json;
use uuid::Uuid;

use super::{Completion, Execution, ExecutionState, FinalState, Store};
use crate::token::IngestToken;
use crate::webhook::{StoredAuth, WebhookSpec};

fn spec() -> WebhookSpec {
    let mut spec = WebhookSpec::new("https://hooks.example/in?x=1".parse().unwrap());
    spec.events = vec!["llm_*".into(), "crew_execution_completed".into()];
    spec.headers = vec![("x-tenant".into(), "acme".into())];
    spec.authentication =
        StoredAuth::new(json!({"strategy": "bearer", "token": "conformance-secret"}));
    spec
}

fn execution(external: bool, token: &IngestToken) -> Execution {
    let mut inputs = Data::new();
    inputs.insert("topic".into(), "AI".into());
    Execution::new(
        Uuid::now_v7(),
        if external { "external" } else { "demo" },
        external,
        token.hash(),
    )
    .with_inputs(inputs)
    .with_meta(json!({"requested_by": "ops"}))
    .with_webhooks(vec![spec(), WebhookSpec::new("http://127.0.0.1:9/".parse().unwrap())])
}

/// Runs every check against `store` (which should start empty); panics on the first
/// violation.
pub async fn check(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");

    // Create and read back.
    let token = IngestToken::generate();
    let created = execution(false, &token);
    let id = created.id;
    store.create_execution(created.clone()).await.expect("create");
    let read = store.execution(id).await.expect("read back");
    assert_eq!(read.id, id);
    assert_eq!((read.runner.as_str(), read.external), ("demo", false));
    assert_eq!(read.inputs, created.inputs);
    assert_eq!(read.meta, created.meta);
    assert_eq!(read.webhooks.len(), 2);
    assert_eq!(read.webhooks[0].to_json(), created.webhooks[0].to_json(), "webhook 0 changed");
    assert_eq!(read.webhooks[1].to_json(), created.webhooks[1].to_json(), "webhook 1 changed");
    assert!(read.ingest_token.verify(token.expose()), "the ingest token hash changed");
    assert!(!read.ingest_token.verify("hsi_other"));
    assert_eq!(read.state, ExecutionState::Pending);
    assert_eq!(read.created_at, created.created_at);
    assert!(read.result.is_null() && read.error.is_none() && read.execution_time.is_none());
    let debug = format!("{read:?}");
    assert!(!debug.contains("conformance-secret"), "a secret in Debug: {debug}");
    assert!(!debug.contains(token.expose()), "the ingest token in Debug");

    // Conflicts and not-found.
    assert!(store.create_execution(created.clone()).await.unwrap_err().is_conflict());
    let unknown = Uuid::now_v7();
    assert!(store.execution(unknown).await.unwrap_err().is_not_found());
    assert!(store.mark_running(unknown, Timestamp::now()).await.unwrap_err().is_not_found());
    let done = Completion::new(FinalState::Success, json!({"answer": 42}), None, 1.5);
    assert!(store.finish_execution(unknown, done.clone()).await.unwrap_err().is_not_found());

    // Running.
    let started = Timestamp::now();
    assert!(store.mark_running(id, started).await.unwrap());
    assert!(!store.mark_running(id, Timestamp::now()).await.unwrap(), "second mark_running");
    let running = store.execution(id).await.unwrap();
    assert_eq!((running.state, running.started_at), (ExecutionState::Running, Some(started)));

    // Unfinished executions include pending and running ones.
    let external = execution(true, &IngestToken::generate());
    store.create_execution(external.clone()).await.unwrap();
    let unfinished: Vec<Uuid> =
        store.unfinished_executions().await.unwrap().iter().map(|e| e.id).collect();
    assert!(unfinished.contains(&id) && unfinished.contains(&external.id), "{unfinished:?}");

    // Finish: the terminal event is published last, once, with the record's end.
    let draft = Draft::new(EventType::new("task_started").unwrap(), Data::new());
    store.bus().publish(id, vec![draft], Backpressure::Wait).await.unwrap();
    let finished = store.finish_execution(id, done.clone()).await.expect("finish");
    assert_eq!(finished.last_sequence, 2);
    assert_eq!(finished.execution.state, ExecutionState::Success);
    let stored = store.execution(id).await.unwrap();
    assert_eq!(stored.state, ExecutionState::Success);
    assert_eq!(stored.result, json!({"answer": 42}));
    assert_eq!(stored.execution_time, Some(1.5));
    assert_eq!(stored.finished_at, Some(done.finished_at));
    let events = store.bus().read(id, 0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    let terminal = &events[1];
    assert!(terminal.event_type.is_terminal());
    assert_eq!(terminal.data["state"], "SUCCESS");
    assert_eq!(terminal.data["result"], json!({"answer": 42}));
    assert_eq!(terminal.data["meta"], json!({"requested_by": "ops"}));
    assert_eq!(terminal.data["execution_time"], 1.5);
    assert!(store.finish_execution(id, done.clone()).await.unwrap_err().is_conflict());
    assert!(!store.mark_running(id, Timestamp::now()).await.unwrap());
    assert_eq!(store.bus().read(id, 0, 10).await.unwrap().len(), 2, "a second terminal event");

    // Two finishes racing: exactly one wins, one terminal event.
    let raced = execution(true, &IngestToken::generate());
    store.create_execution(raced.clone()).await.unwrap();
    let failed = Completion::new(FinalState::Failed, json!(null), Some("boom".into()), 0.1);
    let (a, b) = tokio::join!(
        store.finish_execution(raced.id, done.clone()),
        store.finish_execution(raced.id, failed)
    );
    assert_eq!(usize::from(a.is_ok()) + usize::from(b.is_ok()), 1, "{a:?} {b:?}");
    assert!(a.err().or(b.err()).is_some_and(|e| e.is_conflict()));
    assert_eq!(store.bus().read(raced.id, 0, 10).await.unwrap().len(), 1);

    // Ended executions whose webhooks all finished are no longer listed.
    for index in 0..2 {
        store.mark_delivery_finished(id, index).await.unwrap();
    }
    let unfinished = store.unfinished_executions().await.unwrap();
    assert!(unfinished.iter().any(|e| e.id == external.id), "an open execution was dropped");

    // Counts.
    let counts = store.state_counts().await.unwrap();
    assert_eq!(counts.pending, 1, "{counts:?}");
    assert_eq!(counts.success + counts.failed, 2, "{counts:?}");
}
