//! Retries by SPEC §4: each status class, connection resets and timeouts, backoff doubling,
//! `Retry-After` (seconds and date), maximum age, 413 split, 410 gone, dead letters that do
//! not stop later batches, order under retries, auth failures, redrive and resume.

use std::time::{Duration, SystemTime};

use hookstream_auth::AuthStrategy;
use hookstream_delivery_http::{
    BatchId, BatchRecord, DeadLetterReason, Ledger, Mode, PairState, WebhookConfig,
};
use tokio::time::Instant;

use crate::receiver::{Receiver, Reply};
use crate::support::{
    batched, dispatcher_config, drafts, terminal, webhook, AuthStep, ScriptedAuth, Setup,
};

const HOUR: Duration = Duration::from_secs(3600);

/// Runs one realtime event plus the terminal event against `script`; returns the requests.
async fn run_one(script: Vec<Reply>) -> (Setup, Vec<crate::receiver::Received>) {
    let rx = Receiver::start(script).await;
    let s = Setup::new();
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), batched(100, HOUR, 1 << 20)));
    let mut all = drafts(1);
    all.push(terminal());
    s.publish(all).await;
    handle.finished().await.expect("finished");
    (s, rx.received())
}

#[tokio::test(start_paused = true)]
async fn retries_each_retryable_class_after_half_a_second() {
    let faults = [
        Reply::status(408),
        Reply::status(425),
        Reply::status(429),
        Reply::status(500),
        Reply::status(502),
        Reply::status(503),
        Reply::reset(),
        // Longer than the 30 s attempt timeout.
        Reply::status(200).delayed(Duration::from_secs(60)),
    ];
    for fault in faults {
        let (s, got) = run_one(vec![fault.clone()]).await;
        assert_eq!(got.len(), 2, "{fault:?}");
        assert_eq!(got[0].webhook_id(), got[1].webhook_id());
        assert!(got[1].ok(), "{fault:?}");
        let gap = got[1].at - got[0].at;
        let expected = if fault.delay.is_some() {
            Duration::from_millis(30_500)
        } else {
            Duration::from_millis(500)
        };
        assert!(
            gap >= expected && gap < expected + Duration::from_millis(100),
            "{fault:?}: {gap:?}"
        );
        let stats = s.ledger.stats(&s.key).unwrap();
        assert_eq!((stats.delivered_events, stats.attempts), (2, 2), "{fault:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles() {
    let script =
        vec![Reply::status(500), Reply::status(500), Reply::status(500), Reply::status(500)];
    let (_s, got) = run_one(script).await;
    let gaps: Vec<u128> = got.windows(2).map(|w| (w[1].at - w[0].at).as_millis()).collect();
    assert_eq!(got.len(), 5);
    for (gap, expected) in gaps.iter().zip([500u128, 1000, 2000, 4000]) {
        assert!(*gap >= expected && *gap < expected + 50, "{gaps:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn honours_retry_after_seconds_and_http_date_capped_at_an_hour() {
    let (_s, got) = run_one(vec![Reply::status(503).retry_after("7")]).await;
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_secs(7) && gap < Duration::from_millis(7050), "{gap:?}");

    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(20));
    let (_s, got) = run_one(vec![Reply::status(429).retry_after(date)]).await;
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_secs(18) && gap <= Duration::from_secs(21), "{gap:?}");

    let (_s, got) = run_one(vec![Reply::status(503).retry_after("86400")]).await;
    let gap = got[1].at - got[0].at;
    assert!(gap >= HOUR && gap < HOUR + Duration::from_millis(50), "{gap:?}");
}

#[tokio::test(start_paused = true)]
async fn redirects_and_other_4xx_dead_letter_at_once_and_later_batches_flow() {
    for status in [301, 302, 307, 400, 401, 404, 422] {
        let rx = Receiver::start([Reply::status(status)]).await;
        let s = Setup::new();
        let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), Mode::Realtime));
        let mut all = drafts(2);
        all.push(terminal());
        s.publish(all).await;
        let summary = handle.finished().await.expect("finished");
        let got = rx.received();
        assert_eq!(got.len(), 3, "{status}: no retry of the first, the others sent");
        assert_eq!(rx.delivered_sequences(), [2, 3]);
        assert_eq!((summary.delivered_events, summary.dead_lettered_events), (2, 1));
        let letters = s.ledger.dead_letters(&s.key);
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].sequences, [1]);
        assert_eq!(letters[0].reason, DeadLetterReason::Status { status });
        assert_eq!(letters[0].attempts, 1);
        assert!(!letters[0].reason.to_string().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn dead_letters_after_the_maximum_age() {
    let rx = Receiver::start(std::iter::repeat_n(Reply::status(503), 100)).await;
    let mut config = dispatcher_config();
    config.retry.max_age = Duration::from_secs(10);
    let s = Setup::with_config(config);
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), Mode::Realtime));
    let t0 = Instant::now();
    s.publish(vec![terminal()]).await;
    let summary = handle.finished().await.expect("finished");
    assert!(t0.elapsed() <= Duration::from_secs(10));
    // Attempts at 0, 0.5, 1.5, 3.5, 7.5 s; the next (15.5 s) would pass 10 s.
    assert_eq!(rx.received().len(), 5);
    assert_eq!(summary.dead_lettered_events, 1);
    let letters = s.ledger.dead_letters(&s.key);
    assert!(
        matches!(letters[0].reason, DeadLetterReason::Expired { attempts: 5, .. }),
        "{:?}",
        letters[0].reason
    );
}

#[tokio::test(start_paused = true)]
async fn too_large_splits_in_halves_and_a_single_event_dead_letters() {
    let script =
        vec![Reply::status(413), Reply::status(413), Reply::status(200), Reply::status(413)];
    let rx = Receiver::start(script).await;
    let s = Setup::new();
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), batched(100, HOUR, 1 << 20)));
    let mut all = drafts(3);
    all.push(terminal());
    s.publish(all).await;
    let summary = handle.finished().await.expect("finished");
    let got = rx.received();
    let shapes: Vec<Vec<u64>> = got.iter().map(|r| r.sequences()).collect();
    // [1..4] 413 → [1,2] 413 → [1] 200, [2] 413 (single: dead letter), [3,4] 200.
    assert_eq!(shapes, vec![vec![1, 2, 3, 4], vec![1, 2], vec![1], vec![2], vec![3, 4]]);
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids.len(), 5, "each half is a new batch");
    assert_eq!((summary.delivered_events, summary.dead_lettered_events), (3, 1));
    let letters = s.ledger.dead_letters(&s.key);
    assert_eq!(
        (letters[0].sequences.clone(), letters[0].reason.clone()),
        (vec![2], DeadLetterReason::TooLarge)
    );
}

#[tokio::test(start_paused = true)]
async fn gone_dead_letters_pending_and_later_events_without_sending() {
    let rx = Receiver::start([Reply::status(200), Reply::status(410)]).await;
    let s = Setup::new();
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), Mode::Realtime));
    s.publish(drafts(3)).await;
    rx.wait_for(2).await;
    s.publish(vec![crate::support::draft("task_completed", 4), terminal()]).await;
    let summary = handle.finished().await.expect("finished");
    assert_eq!(rx.received().len(), 2, "nothing is sent after 410");
    assert!(summary.gone);
    assert_eq!((summary.delivered_events, summary.dead_lettered_events), (1, 4));
    let stats = s.ledger.stats(&s.key).unwrap();
    assert_eq!(stats.state, PairState::Gone);
    let dead: Vec<u64> = stats.dead_letters.iter().flat_map(|d| d.sequences.clone()).collect();
    assert_eq!(dead, [2, 3, 4, 5]);
    assert!(stats.dead_letters.iter().all(|d| d.reason == DeadLetterReason::Gone));
}

#[tokio::test(start_paused = true)]
async fn order_holds_under_retries() {
    let script = vec![
        Reply::status(200),
        Reply::status(503),
        Reply::reset(),
        Reply::status(429).retry_after("2"),
        Reply::status(200),
        Reply::status(500),
    ];
    let rx = Receiver::start(script).await;
    let s = Setup::new();
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), batched(2, HOUR, 1 << 20)));
    let mut all = drafts(8);
    all.push(terminal());
    s.publish(all).await;
    handle.finished().await.expect("finished");
    assert_eq!(rx.delivered_sequences(), (1..=9).collect::<Vec<_>>());
    let arrival: Vec<u64> = rx.received().iter().map(|r| r.sequences()[0]).collect();
    assert!(arrival.windows(2).all(|w| w[0] <= w[1]), "one in flight, in order: {arrival:?}");
}

#[tokio::test(start_paused = true)]
async fn auth_transient_retries_and_permanent_dead_letters() {
    let rx = Receiver::start([]).await;
    let s = Setup::new();
    let auth = ScriptedAuth::new([AuthStep::Transient, AuthStep::Sign, AuthStep::Permanent]);
    let config = WebhookConfig::new(rx.url(), auth.clone()).unwrap().with_mode(Mode::Realtime);
    let handle = s.dispatcher.spawn(s.bus(), s.key, config);
    let mut all = drafts(2);
    all.push(terminal());
    s.publish(all).await;
    let summary = handle.finished().await.expect("finished");
    // Event 1: transient, then signed and sent. Event 2: permanent failure. Event 3: sent.
    assert_eq!(rx.delivered_sequences(), [1, 3]);
    assert_eq!(summary.dead_lettered_events, 1);
    let letters = s.ledger.dead_letters(&s.key);
    assert!(
        matches!(&letters[0].reason, DeadLetterReason::Auth { message } if message.contains("credentials refused"))
    );
    let stats = s.ledger.stats(&s.key).unwrap();
    assert_eq!(stats.attempts, 4);
}

#[tokio::test(start_paused = true)]
async fn rejected_credentials_are_reported_to_the_strategy() {
    let rx = Receiver::start([Reply::status(401)]).await;
    let s = Setup::new();
    let auth = ScriptedAuth::new([]);
    let config = WebhookConfig::new(rx.url(), auth.clone()).unwrap().with_mode(Mode::Realtime);
    let handle = s.dispatcher.spawn(s.bus(), s.key, config);
    s.publish(vec![terminal()]).await;
    handle.finished().await.expect("finished");
    assert_eq!(*auth.rejected.lock().unwrap(), [401]);
    assert_eq!(auth.name(), "scripted");
}

#[tokio::test(start_paused = true)]
async fn redrive_resends_a_dead_letter_as_a_new_batch() {
    let rx = Receiver::start([Reply::status(400)]).await;
    let s = Setup::new();
    let config = webhook(rx.url(), batched(2, HOUR, 1 << 20));
    let handle = s.dispatcher.spawn(s.bus(), s.key, config.clone());
    let mut all = drafts(3);
    all.push(terminal());
    s.publish(all).await;
    handle.finished().await.expect("finished");
    let letters = s.ledger.dead_letters(&s.key);
    assert_eq!(letters[0].sequences, [1, 2]);
    let outcome = s.dispatcher.redrive(s.bus.as_ref(), s.key, &config, &letters[0]).await.unwrap();
    assert_eq!(outcome.delivered_events, 2);
    let got = rx.received();
    let last = got.last().unwrap();
    assert_eq!(last.sequences(), [1, 2]);
    assert_eq!(last.webhook_id(), outcome.batch_id.as_str());
    assert_ne!(last.webhook_id(), got[0].webhook_id());
    assert!(s.ledger.dead_letters(&s.key).is_empty());
    assert_eq!(s.ledger.stats(&s.key).unwrap().delivered_events, 4);
}

#[tokio::test(start_paused = true)]
async fn a_restart_resumes_the_in_flight_batch_with_its_id_attempts_and_schedule() {
    let rx = Receiver::start([]).await;
    let s = Setup::new();
    let mut all = drafts(3);
    all.push(terminal());
    s.publish(all).await;
    // What a previous process left: batch [1, 2] after 3 attempts, next one due in 20 s.
    let id = BatchId::from_stored("msg_0193f1a27c4e7b1a9d2e5f6a7b8c9d0e");
    let due = SystemTime::now() + Duration::from_secs(20);
    let formed = SystemTime::now() - Duration::from_secs(60);
    s.ledger
        .batch_formed(&BatchRecord::new(s.key, id.clone(), 1, 2, 2, formed, 3, Some(due)))
        .await
        .unwrap();
    let t0 = Instant::now();
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), batched(100, HOUR, 1 << 20)));
    handle.finished().await.expect("finished");
    let got = rx.received();
    assert_eq!(got[0].webhook_id(), id.as_str());
    assert_eq!(got[0].sequences(), [1, 2]);
    let waited = got[0].at - t0;
    assert!(waited >= Duration::from_secs(19) && waited <= Duration::from_secs(21), "{waited:?}");
    assert_eq!(got[1].sequences(), [3, 4]);
    let stats = s.ledger.stats(&s.key).unwrap();
    assert_eq!(stats.delivered_events, 4);
}
