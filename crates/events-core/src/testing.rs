//! The bus conformance suite: every case of the [`crate::Bus`] contract as a generic
//! async function, and the [`bus_conformance!`](crate::bus_conformance) macro that turns them
//! into one `#[test]` per case for a backend.
//!
//! Enabled by the `testing` feature. It owns no backend; it only drives the trait. The cases
//! never sleep for timing and never pause time, so backends that do blocking IO on other
//! threads run them as they are: every wait is a wait for an event, bounded by
//! [`CASE_TIMEOUT`] so that a broken backend fails instead of hanging.
//!
//! ```
//! // In a backend's `tests/it/main.rs`:
//! use hookstream_events_core::MemoryBus;
//!
//! hookstream_events_core::bus_conformance!(|| async { MemoryBus::new() });
//! ```
//!
//! A durable backend also runs the restart cases: `storage` makes fresh storage (cloned into
//! every open), and `open` opens a bus over it; dropping the bus is the restart.
//!
//! ```
//! use hookstream_events_core::MemoryBus;
//!
//! // A MemoryBus handle stands in for storage that outlives the bus opened over it.
//! hookstream_events_core::bus_conformance!(
//!     restart: || async { MemoryBus::new() },
//!     |storage: MemoryBus| async move { storage }
//! );
//! ```

use std::collections::HashSet;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::bus::{
    Backpressure, Bus, BusError, Delivered, PublishError, RecvError, SubscribeOptions, Subscription,
};
use crate::event::{Data, Draft, EventType, TERMINAL_EVENT_TYPE};

/// The longest a case may take before it fails as hung.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one case on a fresh multi-threaded tokio runtime, failing it after [`CASE_TIMEOUT`].
pub fn run<F: Future<Output = ()>>(case: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance case");
    runtime.block_on(async {
        tokio::time::timeout(CASE_TIMEOUT, case).await.expect("the case hung: no event came");
    });
}

/// Expands to one `#[test]` per conformance case, each on a fresh bus from `factory`
/// (`Fn() -> impl Future<Output = impl Bus>`).
///
/// The second form, `bus_conformance!(restart: storage, open)`, expands to the restart cases:
/// `storage` (`Fn() -> impl Future<Output = S>`, `S: Clone + Send + 'static`) makes fresh
/// storage per case, and `open` (`Fn(S) -> impl Future<Output = impl Bus>`) opens a bus over
/// it; the cases drop a bus and open another over the same storage.
#[macro_export]
macro_rules! bus_conformance {
    (restart: $storage:expr, $open:expr $(,)?) => {
        $crate::__bus_restart_cases!($storage, $open;
            restart_keeps_events_and_redelivers_unacked,
            restart_keeps_ids_and_end,
        );
    };
    ($factory:expr $(,)?) => {
        $crate::__bus_cases!($factory;
            order_under_concurrent_publishers,
            idempotent_publish_by_id,
            all_or_nothing,
            terminal_event_ends_execution,
            durable_reopen_redelivers_unacked,
            durable_is_exclusive,
            cumulative_ack,
            nack_redelivers,
            backpressure_fail_hands_drafts_back,
            backpressure_wait_unblocks_after_ack,
            live_lag_reported_with_count,
            live_starts_where_asked,
            read_replays_with_after_and_limit,
            executions_are_independent,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bus_cases {
    ($factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::run(async {
                    let bus = ($factory)().await;
                    $crate::testing::$case(bus).await;
                });
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bus_restart_cases {
    ($storage:expr, $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::run(async {
                    let storage = ($storage)().await;
                    $crate::testing::$case(storage, $open).await;
                });
            }
        )*
    };
}

/// A draft of a custom type `t` with data `{"n": n}`.
pub fn draft(t: &str, n: u64) -> Draft {
    let mut data = Data::new();
    data.insert("n".into(), n.into());
    Draft::new(EventType::new(t).expect("a valid test event type"), data)
}

/// The terminal draft (`crew_execution_completed`).
pub fn terminal() -> Draft {
    let mut data = Data::new();
    data.insert("state".into(), "SUCCESS".into());
    Draft::new(EventType::new(TERMINAL_EVENT_TYPE).expect("the terminal type is valid"), data)
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("a non-zero capacity")
}

async fn publish<B: Bus + ?Sized>(bus: &B, execution: Uuid, drafts: Vec<Draft>) -> u64 {
    match bus.publish(execution, drafts, Backpressure::Wait).await {
        Ok(p) => p.last_sequence,
        Err(e) => panic!("publish failed: {e}"),
    }
}

async fn recv(sub: &mut Box<dyn Subscription>) -> Delivered {
    match sub.next().await {
        Some(Ok(d)) => d,
        Some(Err(e)) => panic!("receive failed: {e}"),
        None => panic!("the subscription ended early"),
    }
}

async fn recv_seqs(sub: &mut Box<dyn Subscription>, n: usize) -> Vec<(u64, bool)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let d = recv(sub).await;
        out.push((d.event.sequence, d.redelivered));
    }
    out
}

async fn durable<B: Bus + ?Sized>(bus: &B, execution: Uuid, name: &str) -> Box<dyn Subscription> {
    bus.subscribe(SubscribeOptions::durable(execution, name)).await.expect("subscribe durable")
}

/// Concurrent publishers on one execution: sequences are 1..=n, gap-free, in order, and each
/// publisher's events keep the order it published them in.
pub async fn order_under_concurrent_publishers<B: Bus>(bus: B) {
    const PUBLISHERS: u64 = 8;
    const EACH: u64 = 50;
    let bus = Arc::new(bus);
    let execution = Uuid::new_v4();
    let mut sub = durable(&*bus, execution, "order").await;
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let bus = Arc::clone(&bus);
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                publish(&*bus, execution, vec![draft(&format!("pub{p}"), i)]).await;
            }
        }));
    }
    let mut last_of = vec![None::<u64>; PUBLISHERS as usize];
    for expected in 1..=PUBLISHERS * EACH {
        let d = recv(&mut sub).await;
        assert_eq!(d.event.sequence, expected, "sequence gap or reorder");
        assert!(!d.redelivered);
        let p: usize = d.event.event_type.as_str()[3..].parse().expect("pubN");
        let n = d.event.data["n"].as_u64().expect("n");
        assert_eq!(last_of[p].map_or(0, |l| l + 1), n, "publisher {p}'s order broken");
        last_of[p] = Some(n);
        sub.ack(expected).await.expect("ack");
    }
    for t in tasks {
        t.await.expect("publisher task");
    }
    let all = bus.read(execution, 0, usize::MAX).await.expect("read");
    let seqs: Vec<u64> = all.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, (1..=PUBLISHERS * EACH).collect::<Vec<_>>());
    assert!(all.iter().all(|e| e.execution_id == execution));
}

/// A draft whose id the execution holds is a no-op, within one batch and across batches.
pub async fn idempotent_publish_by_id<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    let (a, b, c) = (draft("a", 1), draft("b", 2), draft("c", 3));
    let p = bus
        .publish(execution, vec![a.clone(), a.clone(), b.clone()], Backpressure::Fail)
        .await
        .expect("publish");
    assert_eq!((p.accepted, p.duplicates, p.last_sequence), (2, 1, 2));
    let p = bus.publish(execution, vec![b.clone(), c.clone()], Backpressure::Fail).await.unwrap();
    assert_eq!((p.accepted, p.duplicates, p.last_sequence), (1, 1, 3));
    let p = bus.publish(execution, vec![a.clone()], Backpressure::Fail).await.unwrap();
    assert_eq!((p.accepted, p.duplicates, p.last_sequence), (0, 1, 3));
    let events = bus.read(execution, 0, 10).await.expect("read");
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![a.id, b.id, c.id]);
    assert_eq!(events[0].data, a.data);
    assert_eq!(events[0].timestamp, a.timestamp);
    // The same id on another execution is another event.
    let other = Uuid::new_v4();
    let p = bus.publish(other, vec![a], Backpressure::Fail).await.unwrap();
    assert_eq!((p.accepted, p.last_sequence), (1, 1));
}

/// A publish that fails stores nothing of its batch.
pub async fn all_or_nothing<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    publish(&bus, execution, vec![draft("a", 1)]).await;
    // The terminal event not last: refused whole.
    let batch = vec![draft("b", 2), terminal(), draft("c", 3)];
    let ids: Vec<Uuid> = batch.iter().map(|d| d.id).collect();
    let err = bus.publish(execution, batch, Backpressure::Fail).await.expect_err("not last");
    assert!(matches!(err, PublishError::TerminalNotLast { .. }), "{err:?}");
    assert_eq!(err.into_drafts().iter().map(|d| d.id).collect::<Vec<_>>(), ids);
    // A full durable subscription under Fail: refused whole.
    let _sub = bus
        .subscribe(SubscribeOptions::durable(execution, "slow").with_capacity(cap(2)))
        .await
        .expect("subscribe");
    let err = bus
        .publish(execution, vec![draft("d", 4), draft("e", 5)], Backpressure::Fail)
        .await
        .expect_err("full");
    assert!(matches!(err, PublishError::Full { .. }), "{err:?}");
    assert_eq!(err.into_drafts().len(), 2);
    let events = bus.read(execution, 0, 10).await.expect("read");
    assert_eq!(events.len(), 1, "a failed publish stored something");
}

/// The terminal event ends the execution: subscribers get `None` after it, later publishes
/// fail with `Ended` and hand their drafts back, re-publishing the terminal batch is a no-op.
pub async fn terminal_event_ends_execution<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    let mut sub = durable(&bus, execution, "end").await;
    let mut live = bus.subscribe(SubscribeOptions::live(execution, Some(0))).await.unwrap();
    let end = terminal();
    publish(&bus, execution, vec![draft("a", 1), draft("b", 2), end.clone()]).await;
    assert_eq!(recv_seqs(&mut sub, 3).await, vec![(1, false), (2, false), (3, false)]);
    assert!(sub.next().await.is_none(), "next() after the terminal event must be None");
    assert!(sub.next().await.is_none());
    for seq in 1..=3 {
        let d = recv(&mut live).await;
        assert_eq!(d.event.sequence, seq);
    }
    assert!(live.next().await.is_none());
    let late = draft("late", 4);
    let err = bus.publish(execution, vec![late.clone()], Backpressure::Wait).await.unwrap_err();
    assert!(matches!(err, PublishError::Ended { .. }), "{err:?}");
    assert_eq!(err.into_drafts(), vec![late]);
    let p = bus.publish(execution, vec![end], Backpressure::Fail).await.expect("retry is no-op");
    assert_eq!((p.accepted, p.duplicates, p.last_sequence), (0, 1, 3));
    // A subscription opened after the end replays and ends too.
    let mut again = durable(&bus, execution, "late-comer").await;
    assert_eq!(recv_seqs(&mut again, 3).await.len(), 3);
    assert!(again.next().await.is_none());
}

/// Re-opening a durable subscription resumes after its acknowledged position and marks what
/// was handed out before as redelivered.
pub async fn durable_reopen_redelivers_unacked<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    let mut sub = durable(&bus, execution, "w").await;
    publish(&bus, execution, (1..=5).map(|n| draft("e", n)).collect()).await;
    assert_eq!(recv_seqs(&mut sub, 4).await, (1..=4).map(|s| (s, false)).collect::<Vec<_>>());
    sub.ack(2).await.expect("ack");
    drop(sub);
    let mut sub = durable(&bus, execution, "w").await;
    assert_eq!(recv_seqs(&mut sub, 3).await, vec![(3, true), (4, true), (5, false)]);
    // Another name is another position.
    let mut other = durable(&bus, execution, "x").await;
    assert_eq!(recv(&mut other).await.event.sequence, 1);
}

/// A durable subscription is open at most once at a time.
pub async fn durable_is_exclusive<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    let sub = durable(&bus, execution, "only").await;
    let err = bus.subscribe(SubscribeOptions::durable(execution, "only")).await.err();
    assert!(matches!(err, Some(BusError::AlreadyOpen { .. })), "{err:?}");
    drop(sub);
    durable(&bus, execution, "only").await;
}

/// Acknowledgement is cumulative; acknowledging what was not handed out, or on a live
/// subscription, is an error.
pub async fn cumulative_ack<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    let mut sub = durable(&bus, execution, "w").await;
    publish(&bus, execution, (1..=6).map(|n| draft("e", n)).collect()).await;
    recv_seqs(&mut sub, 4).await;
    let err = sub.ack(5).await.expect_err("5 was not handed out");
    assert!(matches!(err, BusError::NotDelivered { sequence: 5 }), "{err:?}");
    sub.ack(4).await.expect("ack 4 acknowledges 1..=4");
    sub.ack(2).await.expect("acking below the position is a no-op");
    drop(sub);
    let mut sub = durable(&bus, execution, "w").await;
    assert_eq!(recv_seqs(&mut sub, 2).await, vec![(5, false), (6, false)]);
    let mut live = bus.subscribe(SubscribeOptions::live(execution, Some(0))).await.unwrap();
    recv(&mut live).await;
    assert!(matches!(live.ack(1).await, Err(BusError::NotDurable)));
    assert!(matches!(live.nack(1, Duration::ZERO).await, Err(BusError::NotDurable)));
}

/// A negative acknowledgement hands events out again from the sequence given, marked
/// redelivered, not before its delay.
pub async fn nack_redelivers<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    let mut sub = durable(&bus, execution, "w").await;
    publish(&bus, execution, (1..=4).map(|n| draft("e", n)).collect()).await;
    recv_seqs(&mut sub, 3).await;
    sub.ack(1).await.unwrap();
    sub.nack(2, Duration::ZERO).await.expect("nack");
    assert_eq!(recv_seqs(&mut sub, 3).await, vec![(2, true), (3, true), (4, false)]);
    let delay = Duration::from_millis(5);
    let asked = std::time::Instant::now();
    sub.nack(4, delay).await.expect("nack with delay");
    assert_eq!(recv_seqs(&mut sub, 1).await, vec![(4, true)]);
    assert!(asked.elapsed() >= delay, "redelivered before the nack's delay");
    assert!(matches!(sub.nack(9, Duration::ZERO).await, Err(BusError::NotDelivered { .. })));
}

/// Backpressure `Fail`: a full durable subscription makes publish hand its drafts back, and
/// nothing is lost once the subscriber catches up.
pub async fn backpressure_fail_hands_drafts_back<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    let mut sub = bus
        .subscribe(SubscribeOptions::durable(execution, "w").with_capacity(cap(3)))
        .await
        .expect("subscribe");
    let mut pending: Vec<Draft> = (1..=10).map(|n| draft("e", n)).collect();
    let ids: Vec<Uuid> = pending.iter().map(|d| d.id).collect();
    let mut received = Vec::new();
    let mut fulls = 0;
    while !pending.is_empty() || received.len() < ids.len() {
        if !pending.is_empty() {
            let next = vec![pending[0].clone()];
            match bus.publish(execution, next, Backpressure::Fail).await {
                Ok(_) => {
                    pending.remove(0);
                    continue;
                }
                Err(PublishError::Full { drafts, .. }) => {
                    assert_eq!(drafts[0].id, pending[0].id, "the draft handed back");
                    fulls += 1;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        let d = recv(&mut sub).await;
        received.push(d.event.id);
        sub.ack(d.event.sequence).await.expect("ack");
    }
    assert!(fulls > 0, "capacity 3 never filled");
    assert_eq!(received, ids, "events lost or reordered under backpressure");
}

/// Backpressure `Wait`: publish waits while a durable subscription is full and completes
/// once it acknowledges.
pub async fn backpressure_wait_unblocks_after_ack<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    let bus = Arc::new(bus);
    let mut sub = bus
        .subscribe(SubscribeOptions::durable(execution, "w").with_capacity(cap(2)))
        .await
        .expect("subscribe");
    publish(&*bus, execution, vec![draft("e", 1), draft("e", 2)]).await;
    let probe = bus.publish(execution, vec![draft("probe", 0)], Backpressure::Fail).await;
    assert!(matches!(probe, Err(PublishError::Full { .. })), "{probe:?}");
    let waiting = {
        let bus = Arc::clone(&bus);
        tokio::spawn(async move { publish(&*bus, execution, vec![draft("e", 3)]).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "publish did not wait for room");
    assert_eq!(recv_seqs(&mut sub, 2).await.len(), 2);
    sub.ack(2).await.expect("ack");
    assert_eq!(waiting.await.expect("publisher"), 3);
    assert_eq!(recv(&mut sub).await.event.data["n"], 3);
}

/// A live subscription that falls behind reports how many events it missed, then goes on in
/// order without gaps.
pub async fn live_lag_reported_with_count<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    let mut live = bus
        .subscribe(SubscribeOptions::live(execution, Some(0)).with_capacity(cap(4)))
        .await
        .expect("subscribe");
    publish(&bus, execution, (1..=20).map(|n| draft("e", n)).collect()).await;
    publish(&bus, execution, vec![terminal()]).await;
    let mut skipped_total = 0;
    let mut seen = Vec::new();
    let mut lags = 0;
    while let Some(item) = live.next().await {
        match item {
            Ok(d) => seen.push(d.event.sequence),
            Err(RecvError::Lagged { skipped }) => {
                assert!(skipped > 0);
                skipped_total += skipped;
                lags += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(lags > 0, "a live subscription 21 behind with capacity 4 must report lag");
    assert_eq!(skipped_total + seen.len() as u64, 21, "lag count does not add up");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "out of order after lag: {seen:?}");
    assert_eq!(seen.last(), Some(&21), "the terminal event was not delivered");
    // Durable subscriptions are never dropped from: the same backlog arrives whole.
    let mut sub = durable(&bus, execution, "w").await;
    assert_eq!(recv_seqs(&mut sub, 21).await.len(), 21);
}

/// A live subscription starts after the sequence asked for, or with new events only.
pub async fn live_starts_where_asked<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    publish(&bus, execution, (1..=5).map(|n| draft("e", n)).collect()).await;
    let mut from3 = bus.subscribe(SubscribeOptions::live(execution, Some(3))).await.unwrap();
    let mut fresh = bus.subscribe(SubscribeOptions::live(execution, None)).await.unwrap();
    publish(&bus, execution, vec![draft("e", 6)]).await;
    assert_eq!(recv_seqs(&mut from3, 3).await, vec![(4, false), (5, false), (6, false)]);
    assert_eq!(recv(&mut fresh).await.event.sequence, 6);
}

/// `read` replays in order, after a sequence, at most `limit`.
pub async fn read_replays_with_after_and_limit<B: Bus>(bus: B) {
    let execution = Uuid::new_v4();
    assert!(bus.read(execution, 0, 10).await.expect("read unknown").is_empty());
    publish(&bus, execution, (1..=10).map(|n| draft("e", n)).collect()).await;
    let seqs = |v: Vec<Arc<crate::Event>>| v.iter().map(|e| e.sequence).collect::<Vec<_>>();
    assert_eq!(seqs(bus.read(execution, 0, 3).await.unwrap()), vec![1, 2, 3]);
    assert_eq!(seqs(bus.read(execution, 3, 2).await.unwrap()), vec![4, 5]);
    assert_eq!(seqs(bus.read(execution, 8, 100).await.unwrap()), vec![9, 10]);
    assert!(bus.read(execution, 10, 5).await.unwrap().is_empty());
    assert!(bus.read(execution, 0, 0).await.unwrap().is_empty());
    let e = &bus.read(execution, 6, 1).await.unwrap()[0];
    assert_eq!((e.sequence, e.data["n"].as_u64(), e.execution_id), (7, Some(7), execution));
}

/// Executions have their own sequences and never wait for each other.
pub async fn executions_are_independent<B: Bus>(bus: B) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let _full = bus
        .subscribe(SubscribeOptions::durable(a, "w").with_capacity(cap(1)))
        .await
        .expect("subscribe");
    publish(&bus, a, vec![draft("a", 1)]).await;
    let blocked = bus.publish(a, vec![draft("a", 2)], Backpressure::Fail).await;
    assert!(matches!(blocked, Err(PublishError::Full { .. })));
    let p = bus.publish(b, vec![draft("b", 1), draft("b", 2)], Backpressure::Fail).await;
    assert_eq!(p.expect("b is not held back by a").last_sequence, 2);
    publish(&bus, b, vec![terminal()]).await;
    let mut sub_a = bus.subscribe(SubscribeOptions::live(a, Some(0))).await.unwrap();
    assert_eq!(recv(&mut sub_a).await.event.sequence, 1);
    let ok = bus.publish(a, vec![], Backpressure::Fail).await.expect("empty publish");
    assert_eq!((ok.accepted, ok.last_sequence), (0, 1), "a is not ended by b's end");
}

/// Restart: events, acknowledged positions and redelivery survive dropping the bus and
/// opening another over the same storage.
pub async fn restart_keeps_events_and_redelivers_unacked<S, F, Fut, B>(storage: S, open: F)
where
    S: Clone,
    F: Fn(S) -> Fut,
    Fut: Future<Output = B>,
    B: Bus,
{
    let execution = Uuid::new_v4();
    let bus = open(storage.clone()).await;
    let mut sub = durable(&bus, execution, "w").await;
    publish(&bus, execution, (1..=5).map(|n| draft("e", n)).collect()).await;
    recv_seqs(&mut sub, 4).await;
    sub.ack(2).await.expect("ack");
    drop(sub);
    drop(bus);
    let bus = open(storage).await;
    assert_eq!(bus.read(execution, 0, 10).await.expect("read").len(), 5);
    let mut sub = durable(&bus, execution, "w").await;
    let got = recv_seqs(&mut sub, 3).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert!(got[0].1 && got[1].1, "handed-out events must come back redelivered: {got:?}");
    assert_eq!(publish(&bus, execution, vec![draft("e", 6)]).await, 6);
}

/// Restart: event ids (idempotence) and the end of an execution survive a restart.
pub async fn restart_keeps_ids_and_end<S, F, Fut, B>(storage: S, open: F)
where
    S: Clone,
    F: Fn(S) -> Fut,
    Fut: Future<Output = B>,
    B: Bus,
{
    let execution = Uuid::new_v4();
    let batch = vec![draft("e", 1), draft("e", 2), terminal()];
    let bus = open(storage.clone()).await;
    publish(&bus, execution, batch.clone()).await;
    drop(bus);
    let bus = open(storage).await;
    let p = bus.publish(execution, batch, Backpressure::Fail).await.expect("duplicates");
    assert_eq!((p.accepted, p.duplicates, p.last_sequence), (0, 3, 3));
    let err = bus.publish(execution, vec![draft("e", 3)], Backpressure::Fail).await;
    assert!(matches!(err, Err(PublishError::Ended { .. })), "{err:?}");
    let mut sub = durable(&bus, execution, "w").await;
    assert_eq!(recv_seqs(&mut sub, 3).await.len(), 3);
    assert!(sub.next().await.is_none());
    let ids: HashSet<Uuid> =
        bus.read(execution, 0, 10).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 3);
}
