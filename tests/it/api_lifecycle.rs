//! The server's lifecycle beyond requests: recovery at start (deliveries re-spawned, runs
//! whose runner died ended FAILED, external executions left open) and `serve` on a socket
//! with graceful shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hookstream_events_core::bus::Backpressure;
use hookstream_events_core::{Data, Draft, EventType};
use hookstream_server::runner::{RunContext, RunOutcome, Runner};
use hookstream_server::store::{Execution, ExecutionState, MemoryStore, Store};
use hookstream_server::token::IngestToken;
use hookstream_server::webhook::WebhookSpec;
use hookstream_server::{RUNNER_DIED, SHUT_DOWN};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{self, Receiver, Recorded, TestApp};

fn draft(t: &str) -> Draft {
    Draft::new(EventType::new(t).unwrap(), Data::new())
}

#[tokio::test]
async fn recovery_ends_dead_runs_and_resumes_their_deliveries() {
    let receiver = Receiver::start().await;
    let store = Arc::new(MemoryStore::new());
    // What a previous process left: a demo run mid-way with two events, and an external one.
    let mut spec = WebhookSpec::new(receiver.url("/recovered").parse().unwrap());
    spec.realtime = true;
    let dead = Execution::new(uuid::Uuid::now_v7(), "demo", false, IngestToken::generate().hash())
        .with_webhooks(vec![spec]);
    let open =
        Execution::new(uuid::Uuid::now_v7(), "external", true, IngestToken::generate().hash());
    for e in [&dead, &open] {
        store.create_execution(e.clone()).await.unwrap();
        store.mark_running(e.id, hookstream_events_core::Timestamp::now()).await.unwrap();
    }
    store
        .bus()
        .publish(
            dead.id,
            vec![draft("crew_kickoff_started"), draft("task_started")],
            Backpressure::Wait,
        )
        .await
        .unwrap();

    let app = TestApp::new(support::demo_builder().store(store.clone()));
    let report = app.server.recover().await.unwrap();
    assert_eq!((report.resumed, report.deliveries, report.failed), (2, 1, 1));
    assert_eq!(app.server.recover().await.unwrap(), Default::default(), "recovery runs once");

    let events: Vec<_> =
        receiver.wait_for_terminal("/recovered").await.iter().flat_map(Recorded::events).collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["crew_kickoff_started", "task_started", "crew_execution_completed"]);
    assert_eq!(events[2]["data"]["state"], "FAILED");
    assert_eq!(events[2]["data"]["error"], RUNNER_DIED);
    let status = app.get(&format!("/status/{}", dead.id)).await.body;
    assert_eq!(
        (status["state"].as_str(), status["error"].as_str()),
        (Some("FAILED"), Some(RUNNER_DIED))
    );
    assert_eq!(store.execution(open.id).await.unwrap().state, ExecutionState::Running);
}

/// Records its context's ingest URL, then runs until cancelled.
struct Forever {
    ingest_url: Arc<Mutex<Option<String>>>,
    started: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Runner for Forever {
    fn name(&self) -> &str {
        "forever"
    }

    fn required_inputs(&self) -> Vec<String> {
        Vec::new()
    }

    async fn run(&self, ctx: RunContext) -> RunOutcome {
        *self.ingest_url.lock().unwrap() = Some(ctx.ingest_url.clone());
        self.started.notify_one();
        std::future::pending::<()>().await;
        RunOutcome::Success { result: json!(null) }
    }
}

async fn http(addr: std::net::SocketAddr, raw: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn serve_answers_on_a_socket_and_shuts_down_gracefully() {
    let receiver = Receiver::start().await;
    let ingest_url = Arc::new(Mutex::new(None));
    let started = Arc::new(tokio::sync::Notify::new());
    let runner = Forever { ingest_url: Arc::clone(&ingest_url), started: Arc::clone(&started) };
    let store = Arc::new(MemoryStore::new());
    let server = support::builder()
        .runner(Arc::new(runner))
        .store(store.clone())
        .shutdown_grace(Duration::from_secs(10))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));

    let root = http(addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(root.starts_with("HTTP/1.1 200") && root.ends_with("Healthy"), "{root}");
    let body =
        json!({"webhooks": {"url": receiver.url("/shutdown"), "realtime": true}}).to_string();
    let kickoff = http(
        addr,
        &format!(
            "POST /kickoff HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            support::TOKEN,
            body.len()
        ),
    )
    .await;
    assert!(kickoff.starts_with("HTTP/1.1 200"), "{kickoff}");
    started.notified().await;
    let url = ingest_url.lock().unwrap().clone().unwrap();
    assert!(
        url.starts_with(&format!("http://{addr}/executions/")) && url.ends_with("/events"),
        "{url}"
    );

    // Shutdown ends the run FAILED and flushes its terminal event before serve returns.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), serving).await.unwrap().unwrap().unwrap();
    let events: Vec<_> =
        receiver.requests_to("/shutdown").iter().flat_map(Recorded::events).collect();
    let last = events.last().expect("the terminal event was delivered before serve returned");
    assert_eq!(last["type"], "crew_execution_completed");
    assert_eq!(last["data"]["error"], SHUT_DOWN);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
}
