//! Kickoff end to end: the demo crew through the API to the recording receiver (filters,
//! batched and realtime modes, several webhooks, ordering, timestamps, the terminal event),
//! the status lifecycle, and the operational routes.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use hookstream_events_core::{Data, Draft, EventType};
use hookstream_server::runner::{RunContext, RunOutcome, Runner};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::support::{self, assert_timestamp_format, request, Receiver, Recorded};

fn sequences(requests: &[Recorded]) -> Vec<u64> {
    requests.iter().flat_map(Recorded::events).map(|e| e["sequence"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn demo_kickoff_reaches_two_webhooks_filtered_batched_and_realtime() {
    let receiver = Receiver::start().await;
    let app = support::demo_server();
    let id = app
        .kickoff(json!({
            "inputs": {"topic": "AI"},
            "meta": {"requested_by": "ops"},
            "webhooks": [
                {
                    "events": ["crew_kickoff_started", "llm_*", "tool_usage_completed", "crew_execution_completed"],
                    "url": receiver.url("/batched"),
                    "authentication": {"strategy": "bearer", "token": "hook-secret"},
                    "batch": {"max_events": 5, "max_wait_ms": 200},
                    "headers": {"X-Tenant": "acme"}
                },
                {"url": receiver.url("/realtime"), "realtime": true}
            ]
        }))
        .await;

    let batched = receiver.wait_for_terminal("/batched").await;
    let realtime = receiver.wait_for_terminal("/realtime").await;

    // Batched: authentication, static and Standard Webhooks headers on every request.
    for r in &batched {
        assert_eq!(r.header("authorization"), Some("Bearer hook-secret"));
        assert_eq!(r.header("x-tenant"), Some("acme"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("user-agent").unwrap().starts_with("hookstream/"));
        assert!(r.header("webhook-id").is_some() && r.header("webhook-timestamp").is_some());
    }
    // The filter: only the listed types, the prefix and the alias (tool_usage_finished).
    let allowed: HashSet<&str> = [
        "crew_kickoff_started",
        "llm_call_started",
        "llm_call_completed",
        "llm_stream_chunk",
        "tool_usage_finished",
        "crew_execution_completed",
    ]
    .into();
    let types: Vec<String> = batched
        .iter()
        .flat_map(Recorded::events)
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(types.iter().all(|t| allowed.contains(t.as_str())), "{types:?}");
    for wanted in ["crew_kickoff_started", "llm_stream_chunk", "tool_usage_finished"] {
        assert!(types.iter().any(|t| t == wanted), "{wanted} missing from {types:?}");
    }
    assert!(batched.iter().any(|r| r.events().len() > 1), "batched mode sent no batch > 1");
    assert!(batched.iter().all(|r| r.events().len() <= 5), "max_events not kept");
    let seqs = sequences(&batched);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "batched out of order: {seqs:?}");
    assert_eq!(types.last().map(String::as_str), Some("crew_execution_completed"));

    // Realtime: one event per request, every event, gap-free from 1, terminal last.
    assert!(realtime.iter().all(|r| r.events().len() == 1));
    let seqs = sequences(&realtime);
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let events: Vec<Value> = realtime.iter().flat_map(Recorded::events).collect();
    for e in &events {
        assert_timestamp_format(e["timestamp"].as_str().unwrap());
        assert_eq!(e["execution_id"], id.as_str());
        assert!(e["data"].is_object());
    }
    let last = events.last().unwrap();
    assert_eq!(last["type"], "crew_execution_completed");
    assert_eq!(last["data"]["state"], "SUCCESS");
    assert_eq!(last["data"]["meta"], json!({"requested_by": "ops"}));
    assert!(last["data"]["execution_time"].is_number());
    assert_eq!(events.iter().filter(|e| e["type"] == "crew_execution_completed").count(), 1);
    assert!(realtime.iter().all(|r| r.header("authorization").is_none()));

    let status = app.wait_final(&id).await;
    assert_eq!(status["state"], "SUCCESS");
    assert_eq!(status["status"], "completed");
    assert_eq!(status["kickoff_id"], id.as_str());
    assert!(status["result"].to_string().contains("AI"), "{status}");
    assert!(status["error"].is_null());
    assert!(status["execution_time"].as_f64().unwrap() >= 0.0);
    assert_eq!(status["meta"]["requested_by"], "ops");
    assert_eq!(last["data"]["result"], status["result"]);

    // The deliveries view: both webhooks completed (the ledger records a batch right after
    // its 2xx), nothing pending or dead.
    let view = app
        .deliveries_until(&id, |view| {
            view["webhooks"].as_array().unwrap().iter().all(|w| w["state"] == "completed")
        })
        .await;
    let webhooks = view["webhooks"].as_array().unwrap();
    assert_eq!(webhooks.len(), 2);
    assert_eq!(webhooks[1]["delivered"].as_u64().unwrap(), events.len() as u64);
    assert_eq!(webhooks[0]["authentication"], "bearer");
    assert!(!view.to_string().contains("hook-secret"));
    for w in webhooks {
        assert_eq!(w["dead_lettered"], 0);
        assert_eq!(w["pending"], 0);
        assert_eq!(w["last_status"], 200);
    }
    assert_eq!(webhooks[1]["url"], receiver.url("/realtime"));
}

/// A runner that emits one event once released, then succeeds or fails as told.
struct GateRunner {
    gate: Arc<Notify>,
    fail: bool,
}

#[async_trait]
impl Runner for GateRunner {
    fn name(&self) -> &str {
        "gate"
    }

    fn required_inputs(&self) -> Vec<String> {
        vec!["topic".into()]
    }

    async fn run(&self, ctx: RunContext) -> RunOutcome {
        self.gate.notified().await;
        let draft = Draft::new(EventType::new("task_started").unwrap(), Data::new());
        if ctx.emit(vec![draft]).await.is_err() {
            return RunOutcome::Failed { error: "emit failed".into() };
        }
        if self.fail {
            RunOutcome::Failed { error: "boom".into() }
        } else {
            RunOutcome::Success { result: json!({"answer": 42}) }
        }
    }
}

#[tokio::test]
async fn status_moves_from_pending_or_running_to_success() {
    let gate = Arc::new(Notify::new());
    let app = support::server_with(Arc::new(GateRunner { gate: Arc::clone(&gate), fail: false }));
    let id = app.kickoff(json!({"inputs": {"topic": "x"}})).await;
    let before = app.get(&format!("/status/{id}")).await.body;
    assert!(before["state"] == "PENDING" || before["state"] == "RUNNING", "{before}");
    assert!(before["status"] == "pending" || before["status"] == "running");
    assert!(before["result"].is_null() && before["execution_time"].is_null());
    gate.notify_one();
    let after = app.wait_final(&id).await;
    assert_eq!(after["state"], "SUCCESS");
    assert_eq!(after["result"], json!({"answer": 42}));
    let events = app.get(&format!("/executions/{id}/events")).await.body;
    let types: Vec<&str> =
        events["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["task_started", "crew_execution_completed"]);
}

#[tokio::test]
async fn a_failing_runner_ends_failed_with_its_error() {
    let gate = Arc::new(Notify::new());
    gate.notify_one();
    let app = support::server_with(Arc::new(GateRunner { gate, fail: true }));
    let id = app.kickoff(json!({"inputs": {"topic": "x"}})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["state"], "FAILED");
    assert_eq!(status["status"], "error");
    assert_eq!(status["error"], "boom");
    let events = app.get(&format!("/executions/{id}/events")).await.body;
    let last = events["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "crew_execution_completed");
    assert_eq!(last["data"]["state"], "FAILED");
    assert_eq!(last["data"]["error"], "boom");
}

#[tokio::test]
async fn operational_routes_answer() {
    let app = support::demo_server();
    let root = app.send(request(Method::GET, "/", None, None)).await;
    assert_eq!(root.status, StatusCode::OK);
    assert_eq!(root.body, "Healthy");
    assert_eq!(app.send(request(Method::GET, "/healthz", None, None)).await.status, StatusCode::OK);
    assert_eq!(
        app.send(request(Method::GET, "/readyz", None, None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    assert_eq!(app.get("/inputs").await.body, json!({"inputs": ["topic"]}));
}

#[tokio::test]
async fn metrics_count_events_executions_and_deliveries() {
    let receiver = Receiver::start().await;
    let app = support::demo_server();
    let id = app
        .kickoff(json!({"inputs": {"topic": "AI"}, "webhooks": {"url": receiver.url("/m"), "realtime": true}}))
        .await;
    receiver.wait_for_terminal("/m").await;
    app.wait_final(&id).await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.body.as_str().unwrap().to_owned();
    for needle in [
        "hookstream_events_ingested_total{source=\"runner\"}",
        "hookstream_executions_finished_total{state=\"SUCCESS\"} 1",
        "hookstream_executions{state=\"SUCCESS\"} 1",
        "hookstream_delivery_attempts_total{outcome=\"success\"}",
        "hookstream_delivery_attempt_duration_seconds_bucket",
        "hookstream_events_delivered_total",
        "hookstream_events_pending",
        "hookstream_dead_letters",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(!text.contains("127.0.0.1"), "a URL leaked into the metrics");
    assert!(!text.contains(support::TOKEN));
}
