//! Batch boundaries (count, time, bytes, end of execution), realtime, filtering, and the
//! headers and body of each request.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hookstream_delivery_http::{Mode, PairState, WebhookConfig};
use hookstream_events_core::filter::Filter;
use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::receiver::Receiver;
use crate::support::{batched, draft, drafts, terminal, webhook, ScriptedAuth, Setup};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn flushes_at_max_events_in_order() {
    let rx = Receiver::start([]).await;
    let s = Setup::new();
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), batched(3, HOUR, 1 << 20)));
    let mut all = drafts(7);
    all.push(terminal());
    s.publish(all).await;
    let summary = handle.finished().await.expect("finished");
    let got = rx.received();
    let sizes: Vec<usize> = got.iter().map(|r| r.sequences().len()).collect();
    assert_eq!(sizes, [3, 3, 2]);
    assert_eq!(rx.delivered_sequences(), (1..=8).collect::<Vec<_>>());
    assert_eq!(summary.delivered_events, 8);
    let stats = s.ledger.stats(&s.key).unwrap();
    assert_eq!(
        (stats.delivered_events, stats.pending_events, stats.state),
        (8, 0, PairState::Completed)
    );
}

#[tokio::test(start_paused = true)]
async fn flushes_max_wait_after_the_first_event() {
    let rx = Receiver::start([]).await;
    let s = Setup::new();
    let _handle = s.dispatcher.spawn(
        s.bus(),
        s.key,
        webhook(rx.url(), batched(100, Duration::from_millis(1000), 1 << 20)),
    );
    let t0 = Instant::now();
    s.publish(drafts(2)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.publish(vec![draft("task_completed", 3)]).await;
    let got = rx.wait_for(1).await;
    let waited = got[0].at - t0;
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_millis(1050),
        "{waited:?}"
    );
    assert_eq!(got[0].sequences(), [1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn flushes_before_max_bytes_would_be_passed() {
    let rx = Receiver::start([]).await;
    let s = Setup::new();
    // Each event is about 200 bytes: two fit in 500, three do not.
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), batched(100, HOUR, 500)));
    let mut all = drafts(5);
    all.push(terminal());
    s.publish(all).await;
    handle.finished().await.expect("finished");
    let got = rx.received();
    assert!(got.len() >= 3, "{}", got.len());
    for r in &got {
        assert!(r.body.len() <= 500, "body of {} bytes", r.body.len());
    }
    assert_eq!(rx.delivered_sequences(), (1..=6).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn flushes_at_once_when_the_execution_ends() {
    let rx = Receiver::start([]).await;
    let s = Setup::new();
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), batched(100, HOUR, 1 << 20)));
    let t0 = Instant::now();
    let mut all = drafts(2);
    all.push(terminal());
    s.publish(all).await;
    handle.finished().await.expect("finished");
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].sequences(), [1, 2, 3]);
    assert!(got[0].at - t0 < Duration::from_millis(50), "{:?}", got[0].at - t0);
}

#[tokio::test(start_paused = true)]
async fn realtime_sends_each_event_alone_at_once() {
    let rx = Receiver::start([]).await;
    let s = Setup::new();
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), Mode::Realtime));
    let t0 = Instant::now();
    s.publish(drafts(1)).await;
    let first = rx.wait_for(1).await;
    assert!(first[0].at - t0 < Duration::from_millis(50));
    let mut rest = drafts(4);
    rest.push(terminal());
    s.publish(rest).await;
    handle.finished().await.expect("finished");
    let got = rx.received();
    assert_eq!(got.len(), 6);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.sequences(), [i as u64 + 1]);
    }
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids.len(), 6, "a webhook-id per request");
}

#[tokio::test(start_paused = true)]
async fn filter_skips_events_and_the_terminal_event_still_flushes() {
    let rx = Receiver::start([]).await;
    let s = Setup::new();
    let config =
        webhook(rx.url(), batched(100, HOUR, 1 << 20)).with_filter(Filter::new(["llm_*"]).unwrap());
    let handle = s.dispatcher.spawn(s.bus(), s.key, config);
    s.publish(vec![
        draft("task_started", 1),
        draft("llm_call_started", 2),
        draft("task_completed", 3),
        draft("llm_call_completed", 4),
        draft("agent_execution_started", 5),
        terminal(),
    ])
    .await;
    handle.finished().await.expect("finished");
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].sequences(), [2, 4]);
    let types: Vec<String> =
        got[0].json()["events"].as_array().unwrap().iter().map(|e| e["type"].to_string()).collect();
    assert_eq!(types, ["\"llm_call_started\"", "\"llm_call_completed\""]);
}

#[tokio::test(start_paused = true)]
async fn requests_carry_the_spec_headers_and_auth_on_every_attempt() {
    let rx = Receiver::start([crate::receiver::Reply::status(503)]).await;
    let s = Setup::new();
    let auth = ScriptedAuth::new([]);
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("acme"));
    let config = WebhookConfig::new(rx.url(), auth.clone())
        .unwrap()
        .with_mode(Mode::Realtime)
        .with_headers(headers)
        .unwrap();
    let handle = s.dispatcher.spawn(s.bus(), s.key, config);
    s.publish(vec![terminal()]).await;
    handle.finished().await.expect("finished");
    let got = rx.received();
    assert_eq!(got.len(), 2, "one 503, one retry");
    let (a, b) = (&got[0], &got[1]);
    assert_eq!(a.header("content-type"), "application/json");
    assert_eq!(a.header("user-agent"), concat!("hookstream/", env!("CARGO_PKG_VERSION")));
    assert_eq!(a.header("x-tenant"), "acme");
    assert!(a.webhook_id().starts_with("msg_"));
    assert_eq!(a.webhook_id(), b.webhook_id(), "webhook-id is stable across retries");
    let ts = |r: &crate::receiver::Received| r.header("webhook-timestamp").parse::<i64>().unwrap();
    assert!(ts(b) >= ts(a));
    assert_eq!(a.header("x-test-auth"), format!("{}.{}.1", a.webhook_id(), ts(a)));
    assert_eq!(b.header("x-test-auth"), format!("{}.{}.2", b.webhook_id(), ts(b)));
    assert_eq!(auth.calls.load(Ordering::SeqCst), 2);
    let body = a.json();
    let event = &body["events"][0];
    assert_eq!(event["type"], "crew_execution_completed");
    assert_eq!(event["execution_id"], s.key.execution_id.to_string());
    assert_eq!(event["sequence"], 1);
    assert_eq!(body.as_object().unwrap().len(), 1, "body is exactly {{\"events\": [...]}}");
}
