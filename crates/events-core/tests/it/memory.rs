//! What [`MemoryBus`] guarantees beyond the generic suite: exact lag counts, `forget`,
//! oversized batches under backpressure, and `Send`/`Sync` handles.

use std::num::NonZeroUsize;
use std::time::Duration;

use hookstream_events_core::bus::{Backpressure, Bus, RecvError, SubscribeOptions};
use hookstream_events_core::testing::{draft, terminal};
use hookstream_events_core::MemoryBus;
use uuid::Uuid;

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

#[tokio::test]
async fn live_lag_skips_to_capacity_behind() {
    let bus = MemoryBus::new();
    let ex = Uuid::new_v4();
    let mut live =
        bus.subscribe(SubscribeOptions::live(ex, Some(0)).with_capacity(cap(4))).await.unwrap();
    bus.publish(ex, (1..=20).map(|n| draft("e", n)).collect(), Backpressure::Fail).await.unwrap();
    match live.next().await {
        Some(Err(RecvError::Lagged { skipped })) => assert_eq!(skipped, 16),
        other => panic!("expected lag, got {other:?}"),
    }
    for seq in 17..=20 {
        assert_eq!(live.next().await.unwrap().unwrap().event.sequence, seq);
    }
}

#[tokio::test]
async fn batch_larger_than_capacity_goes_in_when_drained() {
    let bus = MemoryBus::new();
    let ex = Uuid::new_v4();
    let mut sub =
        bus.subscribe(SubscribeOptions::durable(ex, "w").with_capacity(cap(2))).await.unwrap();
    let big = (1..=5).map(|n| draft("e", n)).collect();
    let p = bus.publish(ex, big, Backpressure::Fail).await.expect("an empty window takes it");
    assert_eq!(p.last_sequence, 5);
    let full = bus.publish(ex, vec![draft("e", 6)], Backpressure::Fail).await;
    assert!(full.is_err());
    for _ in 0..5 {
        sub.next().await.unwrap().unwrap();
    }
    sub.ack(5).await.unwrap();
    assert!(bus.publish(ex, vec![draft("e", 6)], Backpressure::Fail).await.is_ok());
}

#[tokio::test]
async fn forget_drops_the_execution() {
    let bus = MemoryBus::new();
    let ex = Uuid::new_v4();
    bus.publish(ex, vec![draft("e", 1), terminal()], Backpressure::Fail).await.unwrap();
    assert!(bus.forget(ex));
    assert!(!bus.forget(ex));
    assert!(bus.read(ex, 0, 10).await.unwrap().is_empty());
    let p = bus.publish(ex, vec![draft("e", 1)], Backpressure::Fail).await.unwrap();
    assert_eq!(p.last_sequence, 1, "a forgotten execution starts afresh");
}

#[tokio::test(start_paused = true)]
async fn nack_delay_is_honoured() {
    let bus = MemoryBus::new();
    let ex = Uuid::new_v4();
    let mut sub = bus.subscribe(SubscribeOptions::durable(ex, "w")).await.unwrap();
    bus.publish(ex, vec![draft("e", 1)], Backpressure::Fail).await.unwrap();
    sub.next().await.unwrap().unwrap();
    sub.nack(1, Duration::from_secs(60)).await.unwrap();
    let start = tokio::time::Instant::now();
    let again = sub.next().await.unwrap().unwrap();
    assert!(again.redelivered);
    assert!(start.elapsed() >= Duration::from_secs(60));
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    check::<MemoryBus>();
}
