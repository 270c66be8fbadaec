//! Realtime batch ids: derived from the one event, so the same event forms the same batch under
//! the same `webhook-id` after a restart; and the first attempt does not wait for the ledger's
//! `batch_formed` (batched mode still does), while the ledger still sees formed → attempt →
//! delivered.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use hookstream_delivery_http::{
    AttemptRecord, BatchId, BatchRecord, DeadLetter, Dispatcher, Ledger, LedgerError, MemoryLedger,
    Mode, PairKey,
};
use tokio::sync::Semaphore;

use crate::receiver::{Receiver, Reply};
use crate::support::{batched, dispatcher_config, drafts, terminal, webhook, Setup};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn a_realtime_batch_keeps_its_webhook_id_across_a_restart_before_any_ack() {
    let rx = Receiver::start([Reply::status(503)]).await;
    let s = Setup::new();
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), Mode::Realtime));
    s.publish(drafts(1)).await;
    let first = rx.wait_for(1).await;
    handle.abort();
    assert!(handle.finished().await.is_err(), "aborted");
    // A new process whose ledger never held the batch (its record was not yet durable).
    let ledger = Arc::new(MemoryLedger::new());
    let dispatcher = Dispatcher::new(dispatcher_config(), ledger.clone()).expect("dispatcher");
    let handle = dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), Mode::Realtime));
    s.publish(vec![terminal()]).await;
    handle.finished().await.expect("finished");
    let got = rx.received();
    assert_eq!(got.len(), 3, "event 1 twice, then the terminal event");
    assert_eq!(got[1].sequences(), [1]);
    assert_eq!(got[1].webhook_id(), first[0].webhook_id(), "same event, same webhook-id");
    assert_eq!(first[0].webhook_id(), BatchId::for_event(&s.key, 1).as_str());
    assert_eq!(got[2].webhook_id(), BatchId::for_event(&s.key, 2).as_str());
    let other = PairKey::new(s.key.execution_id, 1);
    assert_ne!(BatchId::for_event(&other, 1), BatchId::for_event(&s.key, 1));
    let id = BatchId::for_event(&s.key, 1);
    assert!(id.as_str().bytes().all(|b| b.is_ascii_graphic()), "{id}");
    assert_eq!(ledger.stats(&s.key).unwrap().delivered_events, 2);
}

/// A ledger whose `batch_formed` waits for the gate to open; records the order of calls.
#[derive(Debug)]
struct GatedLedger {
    inner: MemoryLedger,
    gate: Semaphore,
    calls: Mutex<Vec<&'static str>>,
}

impl GatedLedger {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryLedger::new(),
            gate: Semaphore::new(0),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }

    fn call(&self, name: &'static str) {
        self.calls.lock().unwrap().push(name);
    }
}

#[async_trait]
impl Ledger for GatedLedger {
    async fn batch_formed(&self, batch: &BatchRecord) -> Result<(), LedgerError> {
        self.gate.acquire().await.expect("gate").forget();
        self.call("formed");
        self.inner.batch_formed(batch).await
    }

    async fn attempt_finished(&self, attempt: &AttemptRecord) -> Result<(), LedgerError> {
        self.call("attempt");
        self.inner.attempt_finished(attempt).await
    }

    async fn batch_delivered(
        &self,
        pair: &PairKey,
        batch_id: &BatchId,
        at: SystemTime,
    ) -> Result<(), LedgerError> {
        self.call("delivered");
        self.inner.batch_delivered(pair, batch_id, at).await
    }

    async fn batch_split(&self, pair: &PairKey, batch_id: &BatchId) -> Result<(), LedgerError> {
        self.call("split");
        self.inner.batch_split(pair, batch_id).await
    }

    async fn dead_lettered(&self, letter: &DeadLetter) -> Result<(), LedgerError> {
        self.call("dead_lettered");
        self.inner.dead_lettered(letter).await
    }

    async fn webhook_gone(&self, pair: &PairKey) -> Result<(), LedgerError> {
        self.call("gone");
        self.inner.webhook_gone(pair).await
    }

    async fn in_flight(&self, pair: &PairKey) -> Result<Option<BatchRecord>, LedgerError> {
        self.inner.in_flight(pair).await
    }
}

fn gated_setup() -> (Setup, Arc<GatedLedger>) {
    let ledger = GatedLedger::new();
    let mut s = Setup::new();
    s.dispatcher = Dispatcher::new(dispatcher_config(), ledger.clone()).expect("dispatcher");
    (s, ledger)
}

#[tokio::test(start_paused = true)]
async fn the_first_realtime_attempt_does_not_wait_for_batch_formed() {
    let rx = Receiver::start([]).await;
    let (s, ledger) = gated_setup();
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), Mode::Realtime));
    s.publish(drafts(1)).await;
    // The receiver has the request while `batch_formed` is still held back.
    let got = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(1))
        .await
        .expect("the request is sent while batch_formed is held back");
    assert_eq!(got[0].sequences(), [1]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(ledger.calls().is_empty(), "nothing recorded before formed: {:?}", ledger.calls());
    ledger.open();
    s.publish(vec![terminal()]).await;
    handle.finished().await.expect("finished");
    assert_eq!(
        ledger.calls(),
        ["formed", "attempt", "delivered", "formed", "attempt", "delivered"],
        "formed → attempt → delivered per batch"
    );
    assert_eq!(ledger.inner.stats(&s.key).unwrap().delivered_events, 2);
}

#[tokio::test(start_paused = true)]
async fn a_batched_batch_is_formed_before_its_first_attempt() {
    let rx = Receiver::start([]).await;
    let (s, ledger) = gated_setup();
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), batched(1, HOUR, 1 << 20)));
    s.publish(drafts(1)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(rx.received().is_empty(), "sent before the batch was formed");
    ledger.open();
    s.publish(vec![terminal()]).await;
    handle.finished().await.expect("finished");
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.webhook_id() != BatchId::for_event(&s.key, 1).as_str()));
    assert_eq!(
        ledger.calls(),
        ["formed", "attempt", "delivered", "formed", "attempt", "delivered"]
    );
}
