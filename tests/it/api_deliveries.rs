//! The deliveries view and redrive: a batch the receiver refuses is dead-lettered with its
//! reason, later batches still go, and a redrive sends it again as a new batch.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::support::{self, Receiver, Recorded, TestApp};

async fn view_until(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    app.deliveries_until(id, |view| done(&view["webhooks"][0])).await
}

#[tokio::test]
async fn a_dead_letter_is_shown_with_its_reason_and_redriven() {
    let receiver = Receiver::start().await;
    receiver.respond_with([400]);
    let app = support::demo_server();
    let url = format!("{}?token=query-secret", receiver.url("/dl"));
    let created =
        app.post("/executions", json!({"webhooks": {"url": url, "realtime": true}})).await;
    let id = created.body["execution_id"].as_str().unwrap().to_owned();
    let events = format!("/executions/{id}/events");
    assert_eq!(
        app.post(&events, json!({"events": [{"type": "task_started"}]})).await.status,
        StatusCode::ACCEPTED
    );
    app.post(&format!("/executions/{id}/complete"), json!({"state": "SUCCESS"})).await;
    receiver.wait_for_terminal("/dl").await;

    let view = view_until(&app, &id, |w| w["state"] == "completed").await;
    let hook = &view["webhooks"][0];
    assert_eq!(hook["url"], receiver.url("/dl"), "credentials or query shown");
    assert!(!view.to_string().contains("query-secret"));
    assert_eq!(hook["dead_lettered"], 1);
    assert_eq!(hook["delivered"], 1);
    assert_eq!(hook["last_status"], 200);
    assert_eq!(hook["attempts"], 2);
    let letter = &hook["dead_letters"][0];
    assert_eq!(letter["sequences"], json!([1]));
    assert_eq!(letter["reason"], "receiver answered 400");
    assert_eq!(letter["attempts"], 1);
    support::assert_timestamp_format(letter["at"].as_str().unwrap());

    let redrive = app.post(&format!("/executions/{id}/deliveries/redrive"), json!({})).await;
    assert_eq!(redrive.status, StatusCode::ACCEPTED, "{:?}", redrive.body);
    assert_eq!(redrive.body["redriven_batches"], 1);
    let requests = receiver.wait_until(Duration::from_secs(20), |reqs| reqs.len() >= 3).await;
    let again: Vec<&Recorded> =
        requests.iter().filter(|r| r.events().iter().any(|e| e["sequence"] == 1)).collect();
    assert_eq!(again.len(), 2, "the dead letter was not sent again");
    assert_ne!(
        again[0].header("webhook-id"),
        again[1].header("webhook-id"),
        "a redrive is a new batch"
    );
    view_until(&app, &id, |w| {
        w["dead_letters"].as_array().is_some_and(Vec::is_empty) && w["delivered"] == 2
    })
    .await;
}

#[tokio::test]
async fn an_oauth2_token_url_in_a_blocked_range_is_refused_like_a_webhook_target() {
    let receiver = Receiver::start().await;
    // The receiver is on loopback (allow-listed); the token URL is the cloud metadata address.
    let app = support::demo_server();
    let auth = json!({
        "strategy": "oauth2_client_credentials",
        "token_url": "https://169.254.169.254/token",
        "client_id": "hookstream",
        "client_secret": "client-secret-value"
    });
    let webhook = json!({"url": receiver.url("/oauth"), "realtime": true, "authentication": auth});
    let created = app.post("/executions", json!({"webhooks": webhook})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["execution_id"].as_str().unwrap().to_owned();
    let events = format!("/executions/{id}/events");
    assert_eq!(
        app.post(&events, json!({"events": [{"type": "task_started"}]})).await.status,
        StatusCode::ACCEPTED
    );

    let view = view_until(&app, &id, |w| w["dead_lettered"] == 1).await;
    let reason = view["webhooks"][0]["dead_letters"][0]["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("169.254.169.254"), "reason names the refused address: {reason}");
    assert!(!view.to_string().contains("client-secret-value"));
    assert!(receiver.requests().is_empty(), "nothing reached the receiver without a token");
}
