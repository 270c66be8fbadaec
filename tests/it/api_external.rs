//! External executions: registration, ingest with the ingest token or the API token,
//! idempotent re-ingest, all-or-nothing validation, complete exactly once, replay.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use hookstream_server::runner::external::ExternalRunner;
use serde_json::{json, Value};

use crate::support::{self, request, Receiver, Recorded, TOKEN};

fn event(i: u32, id: &str) -> Value {
    json!({"type": "task_started", "id": id, "data": {"n": i}, "timestamp": "2025-02-16T10:58:44.965123Z"})
}

const IDS: [&str; 3] = [
    "0193f1a2-7c4e-7b1a-9d2e-5f6a7b8c9d01",
    "0193f1a2-7c4e-7b1a-9d2e-5f6a7b8c9d02",
    "0193f1a2-7c4e-7b1a-9d2e-5f6a7b8c9d03",
];

#[tokio::test]
async fn ingest_is_idempotent_and_complete_ends_exactly_once() {
    let receiver = Receiver::start().await;
    let app = support::demo_server();
    let created = app
        .post("/executions", json!({"meta": {"source": "bridge"}, "webhooks": {"url": receiver.url("/ext"), "realtime": true}}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["execution_id"].as_str().unwrap().to_owned();
    let ingest_token = created.body["ingest_token"].as_str().unwrap().to_owned();
    let events_path = format!("/executions/{id}/events");

    let body = json!({"events": IDS.iter().enumerate().map(|(i, id)| event(i as u32, id)).collect::<Vec<_>>()});
    let first = app
        .send(request(Method::POST, &events_path, Some(&ingest_token), Some(body.clone())))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    assert_eq!(first.body, json!({"accepted": 3, "duplicates": 0, "last_sequence": 3}));

    // The same events again: a no-op.
    let again =
        app.send(request(Method::POST, &events_path, Some(&ingest_token), Some(body))).await;
    assert_eq!(again.body, json!({"accepted": 0, "duplicates": 3, "last_sequence": 3}));

    // A wrong token is refused; the API token works too.
    let wrong = app
        .send(request(Method::POST, &events_path, Some("hsi_wrong"), Some(json!({"events": []}))))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"], "unauthorized");
    let by_api = app.post(&events_path, json!({"events": [{"type": "my.custom:event"}]})).await;
    assert_eq!(by_api.body["last_sequence"], 4);

    let status = app.get(&format!("/status/{id}")).await.body;
    assert_eq!(status["state"], "RUNNING");

    // Complete with the ingest token; a second complete conflicts.
    let complete_path = format!("/executions/{id}/complete");
    let bad_state = app.post(&complete_path, json!({"state": "DONE"})).await;
    assert_eq!(bad_state.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_state.body["details"]["field"], "state");
    let done = json!({"state": "SUCCESS", "result": {"summary": "ok"}});
    let completed = app
        .send(request(Method::POST, &complete_path, Some(&ingest_token), Some(done.clone())))
        .await;
    assert_eq!(completed.status, StatusCode::OK, "{:?}", completed.body);
    assert_eq!(completed.body["state"], "SUCCESS");
    assert_eq!(completed.body["last_sequence"], 5);
    let second = app.post(&complete_path, done).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.body["error"], "execution_ended");
    let late = app.post(&events_path, json!({"events": [{"type": "task_started"}]})).await;
    assert_eq!(late.status, StatusCode::CONFLICT);

    // The receiver got every event once, in order, the producer's ids and times kept.
    let got: Vec<Value> =
        receiver.wait_for_terminal("/ext").await.iter().flat_map(Recorded::events).collect();
    let seqs: Vec<u64> = got.iter().map(|e| e["sequence"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(got[0]["id"], IDS[0]);
    assert_eq!(got[0]["timestamp"], "2025-02-16T10:58:44.965Z");
    assert_eq!(got[4]["data"]["result"], json!({"summary": "ok"}));
    assert_eq!(got[4]["data"]["meta"], json!({"source": "bridge"}));

    // Replay in pages.
    let page = app.get(&format!("{events_path}?after=0&limit=2")).await.body;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_after"], 2);
    let rest = app.get(&format!("{events_path}?after=2")).await.body;
    let seqs: Vec<u64> = rest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(rest["next_after"], 5);
    let past = app.get(&format!("{events_path}?after=5")).await.body;
    assert_eq!(past, json!({"events": [], "next_after": 5}));
}

#[tokio::test]
async fn ingest_is_all_or_nothing_and_names_the_field() {
    let app = support::demo_server();
    let created = app.post("/executions", json!({})).await;
    let id = created.body["execution_id"].as_str().unwrap().to_owned();
    let path = format!("/executions/{id}/events");
    let bad = app
        .post(&path, json!({"events": [{"type": "task_started"}, {"type": "llm_call_started", "data": {"model": 4}}]}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", bad.body);
    assert_eq!(bad.body["error"], "invalid_event");
    assert_eq!(bad.body["details"]["field"], "events[1].data.model");
    let terminal = app.post(&path, json!({"events": [{"type": "crew_execution_completed"}]})).await;
    assert_eq!(terminal.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(terminal.body["details"]["field"], "events[0].type");
    let not_object = app.post(&path, json!({"events": [1]})).await;
    assert_eq!(not_object.body["details"]["field"], "events[0]");
    let stored = app.get(&path).await.body;
    assert_eq!(stored["events"], json!([]), "a refused request stored something");
}

#[tokio::test]
async fn an_external_runner_kickoff_only_registers() {
    let app = support::server_with(Arc::new(ExternalRunner::new()));
    assert_eq!(app.get("/inputs").await.body, json!({"inputs": []}));
    let id = app.kickoff(json!({})).await;
    assert_eq!(app.get(&format!("/status/{id}")).await.body["state"], "PENDING");
    let ingested = app
        .post(&format!("/executions/{id}/events"), json!({"events": [{"type": "flow_started"}]}))
        .await;
    assert_eq!(ingested.status, StatusCode::ACCEPTED, "{:?}", ingested.body);
    let failed = app
        .post(&format!("/executions/{id}/complete"), json!({"state": "FAILED", "error": "crashed"}))
        .await;
    assert_eq!(failed.body["state"], "FAILED");
    let status = app.get(&format!("/status/{id}")).await.body;
    assert_eq!(
        (status["state"].as_str(), status["error"].as_str()),
        (Some("FAILED"), Some("crashed"))
    );
}

#[tokio::test]
async fn an_in_process_run_cannot_be_completed_from_outside() {
    let app = support::demo_server();
    let id = app.kickoff(json!({"inputs": {"topic": "AI"}})).await;
    let answer = app.post(&format!("/executions/{id}/complete"), json!({"state": "SUCCESS"})).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert!(answer.body["error"] == "not_external" || answer.body["error"] == "execution_ended");
    // Probing ids without a token tells nothing.
    let probe = app
        .send(request(
            Method::POST,
            &format!("/executions/{}/events", uuid::Uuid::new_v4()),
            Some("nope"),
            Some(json!({"events": []})),
        ))
        .await;
    assert_eq!(probe.status, StatusCode::UNAUTHORIZED);
    let _ = TOKEN;
}
