//! The SSE stream: replay from the store, then live, resumed from `Last-Event-ID` or
//! `?after=`, without gaps or duplicates, ending after `crew_execution_completed`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::{self, TestApp, TOKEN};

/// One SSE message.
#[derive(Debug)]
struct Message {
    id: u64,
    event: String,
    data: Value,
}

/// Reads SSE messages from `body` until it ends (or 20 s pass), calling `on_message` after
/// each with the count so far.
async fn read_stream(body: Body, mut on_message: impl FnMut(usize)) -> Vec<Message> {
    let mut body = body;
    let mut buffer = String::new();
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame()).await.expect("stream stalled");
        let Some(frame) = frame else { return messages };
        let frame = frame.expect("stream frame");
        let Some(data) = frame.data_ref() else { continue };
        buffer.push_str(std::str::from_utf8(data).expect("utf-8"));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).ok();
                }
            }
            if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                messages.push(Message { id, event, data });
                on_message(messages.len());
            }
        }
    }
}

async fn open(app: &TestApp, path: &str, last_event_id: Option<&str>) -> Body {
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    if let Some(id) = last_event_id {
        builder = builder.header("last-event-id", id);
    }
    let response = app.app.clone().oneshot(builder.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    response.into_body()
}

async fn ingest(app: &TestApp, id: &str, types: &[&str]) {
    let events: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
    let answer = app.post(&format!("/executions/{id}/events"), json!({"events": events})).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
}

#[tokio::test]
async fn stream_resumes_from_last_event_id_then_follows_live_until_the_end() {
    let app = support::demo_server();
    let id =
        app.post("/executions", json!({})).await.body["execution_id"].as_str().unwrap().to_owned();
    ingest(&app, &id, &["task_started", "agent_execution_started", "llm_call_started"]).await;

    let body = open(&app, &format!("/executions/{id}/stream"), Some("1")).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(read_stream(body, move |n| {
        let _ = tx.send(n);
    }));
    // Wait until the replayed part arrived, then publish live events and end the execution.
    while let Some(n) = rx.recv().await {
        if n == 2 {
            break;
        }
    }
    ingest(&app, &id, &["llm_call_completed", "task_completed"]).await;
    let done = app.post(&format!("/executions/{id}/complete"), json!({"state": "SUCCESS"})).await;
    assert_eq!(done.status, StatusCode::OK);

    let messages = reader.await.unwrap();
    let ids: Vec<u64> = messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, [2, 3, 4, 5, 6], "gap or duplicate: {ids:?}");
    assert_eq!(messages[0].event, "agent_execution_started");
    assert_eq!(messages[0].data["sequence"], 2);
    assert_eq!(messages[0].data["execution_id"], id.as_str());
    assert_eq!(messages.last().unwrap().event, "crew_execution_completed");
}

#[tokio::test]
async fn stream_of_an_ended_execution_replays_after_the_query_and_ends() {
    let app = support::demo_server();
    let id =
        app.post("/executions", json!({})).await.body["execution_id"].as_str().unwrap().to_owned();
    ingest(&app, &id, &["a", "b", "c"]).await;
    app.post(&format!("/executions/{id}/complete"), json!({"state": "FAILED"})).await;
    let body = open(&app, &format!("/executions/{id}/stream?after=2"), None).await;
    let messages = read_stream(body, |_| {}).await;
    let events: Vec<(&str, u64)> = messages.iter().map(|m| (m.event.as_str(), m.id)).collect();
    assert_eq!(events, [("c", 3), ("crew_execution_completed", 4)]);

    // Resuming at the end of an ended execution ends at once.
    let body = open(&app, &format!("/executions/{id}/stream"), Some("4")).await;
    assert!(read_stream(body, |_| {}).await.is_empty());

    let bad = app
        .send(
            Request::builder()
                .uri(format!("/executions/{id}/stream"))
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .header("last-event-id", "x")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["details"]["field"], "Last-Event-ID");
}
