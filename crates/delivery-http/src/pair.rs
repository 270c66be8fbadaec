//! A pair's task: the pipeline subscription → filter → batch → service → acknowledge for one
//! (execution, webhook), until the execution's terminal event is acknowledged.
//!
//! One batch is in flight at a time, so batches go in sequence order and a retrying batch holds
//! back only this pair. Events are acknowledged to the bus only after their batch was
//! delivered or dead-lettered; events the filter skips are acknowledged as they pass (with the
//! open batch, when one is open). On start, a batch the ledger shows in flight is resumed with
//! its id, attempt count and schedule.
//!
//! Idle, a pair is this task's small future plus its subscription: the sending path is boxed
//! so that its state does not weigh on idle pairs.

use std::sync::Arc;

use futures::FutureExt;
use hookstream_events_core::bus::{Bus, SubscribeOptions, Subscription};
use tokio::time::Instant;

use crate::batch::{Batcher, Ready};
use crate::config::{Mode, WebhookConfig};
use crate::dispatcher::{DeliveryError, PairSummary};
use crate::encode::{BodyWriter, EncodedBatch};
use crate::ledger::{BatchRecord, DeadLetterReason, PairKey};
use crate::service::{Batch, Delivery, Shared};

pub(crate) async fn run(
    shared: Arc<Shared>,
    bus: Arc<dyn Bus>,
    key: PairKey,
    config: WebhookConfig,
) -> Result<PairSummary, DeliveryError> {
    let options = SubscribeOptions::durable(key.execution_id, key.subscription_name());
    let sub = bus.subscribe(options).await.map_err(DeliveryError::Subscribe)?;
    drop(bus);
    let mut pair = Pair {
        batcher: Batcher::new(config.mode()),
        shared,
        key,
        config,
        sub,
        gone: false,
        summary: PairSummary::default(),
    };
    pair.run().await
}

struct Pair {
    shared: Arc<Shared>,
    key: PairKey,
    config: WebhookConfig,
    /// Called through `as_mut()`, straight on the backend's implementation (the forwarding
    /// impl for `Box` would box every call's future a second time).
    sub: Box<dyn Subscription>,
    batcher: Batcher,
    gone: bool,
    summary: PairSummary,
}

impl Pair {
    async fn run(&mut self) -> Result<PairSummary, DeliveryError> {
        let in_flight = self.shared.ledger.in_flight(&self.key).await;
        match in_flight {
            Ok(Some(record)) => Box::pin(self.resume(record)).await?,
            Ok(None) => {}
            Err(e) => crate::telemetry::ledger_error("in_flight", &e),
        }
        let mut ready = Vec::new();
        loop {
            let next = match self.batcher.deadline() {
                None => self.sub.as_mut().next().await,
                Some(deadline) if deadline <= Instant::now() => {
                    ready.extend(self.batcher.take());
                    Box::pin(self.flush(&mut ready)).await?;
                    continue;
                }
                // `Subscription::next` is cancel-safe: dropping it loses no event. An event
                // already there is taken without arming a timer (the common case under load).
                Some(deadline) => match self.sub.as_mut().next().now_or_never() {
                    Some(next) => next,
                    None => tokio::select! {
                        biased;
                        () = tokio::time::sleep_until(deadline) => {
                            ready.extend(self.batcher.take());
                            Box::pin(self.flush(&mut ready)).await?;
                            continue;
                        }
                        next = self.sub.as_mut().next() => next,
                    },
                },
            };
            let Some(next) = next else { break };
            let event = next.map_err(DeliveryError::Receive)?.event;
            if self.config.filter().matches(event.event_type.as_str()) {
                match self.batcher.push(&event, Instant::now, &mut ready) {
                    Ok(()) => {}
                    Err(e) => {
                        // Cannot happen for a well-formed event; never lose it silently.
                        let reason = DeadLetterReason::Transport { message: e.to_string() };
                        Box::pin(self.dead_letter_unsent(event.sequence, reason)).await?;
                    }
                }
            } else if let Some(sequence) = self.batcher.skip(event.sequence) {
                self.sub.as_mut().ack(sequence).await.map_err(DeliveryError::Acknowledge)?;
            }
            if event.event_type.is_terminal() {
                ready.extend(self.batcher.take());
            }
            if !ready.is_empty() {
                Box::pin(self.flush(&mut ready)).await?;
            }
        }
        ready.extend(self.batcher.take());
        Box::pin(self.flush(&mut ready)).await?;
        if let Err(e) = self.shared.ledger.pair_completed(&self.key).await {
            crate::telemetry::ledger_error("pair_completed", &e);
        }
        self.summary.gone = self.gone;
        Ok(self.summary)
    }

    /// Sends the ready batches in order, acknowledging each once it is done.
    async fn flush(&mut self, ready: &mut Vec<Ready>) -> Result<(), DeliveryError> {
        let realtime = matches!(self.config.mode(), Mode::Realtime);
        for Ready { batch, ack_upto } in ready.drain(..) {
            let now = self.shared.clock.now();
            let batch = if realtime && batch.len() == 1 {
                Batch::realtime(&self.key, batch, now)
            } else {
                Batch::new(batch, now)
            };
            self.deliver(batch).await;
            self.sub.as_mut().ack(ack_upto).await.map_err(DeliveryError::Acknowledge)?;
        }
        Ok(())
    }

    async fn deliver(&mut self, batch: Batch) {
        let mut delivery = Delivery::new(&self.shared, self.key, &self.config);
        delivery.gone = self.gone;
        delivery.run(batch).await;
        self.gone = delivery.gone;
        self.summary.delivered_events += delivery.tally.delivered;
        self.summary.dead_lettered_events += delivery.tally.dead_lettered;
    }

    async fn dead_letter_unsent(
        &mut self,
        sequence: u64,
        reason: DeadLetterReason,
    ) -> Result<(), DeliveryError> {
        // Whatever is open goes first, to keep order; then this event, alone.
        let mut ready: Vec<Ready> = self.batcher.take().into_iter().collect();
        self.flush(&mut ready).await?;
        let batch = Batch::new(EncodedBatch::unsent(sequence), self.shared.clock.now());
        let mut delivery = Delivery::new(&self.shared, self.key, &self.config);
        delivery.dead_letter(&batch, reason).await;
        self.summary.dead_lettered_events += 1;
        self.sub.as_mut().ack(sequence).await.map_err(DeliveryError::Acknowledge)
    }

    /// Re-forms the batch `record` from the redelivered events and takes it on where it was.
    async fn resume(&mut self, record: BatchRecord) -> Result<(), DeliveryError> {
        let mut events = BodyWriter::default();
        let mut ack_upto = None;
        while let Some(next) = self.sub.as_mut().next().await {
            let event = next.map_err(DeliveryError::Receive)?.event;
            if event.sequence > record.last_sequence && events.is_empty() {
                // The batch was settled before the restart: nothing to resume. Handle this
                // event as any other by re-reading it.
                tracing::warn!(
                    execution_id = %self.key.execution_id,
                    webhook = self.key.webhook_index,
                    batch_id = %record.batch_id,
                    "in-flight batch of the ledger is already settled on the bus"
                );
                self.sub
                    .as_mut()
                    .nack(event.sequence, std::time::Duration::ZERO)
                    .await
                    .map_err(DeliveryError::Acknowledge)?;
                return Ok(());
            }
            ack_upto = Some(event.sequence);
            let terminal = event.event_type.is_terminal();
            if self.config.filter().matches(event.event_type.as_str()) {
                // An event that cannot be encoded was dead-lettered before the restart.
                let _ = events.push(&event);
            }
            if event.sequence >= record.last_sequence || terminal {
                break;
            }
        }
        let batch = Batch {
            id: record.batch_id,
            encoded: events.finish(),
            attempts: record.attempts,
            formed_at: record.formed_at,
            next_attempt_at: record.next_attempt_at,
            recorded: true,
            derived_id: false,
        };
        self.deliver(batch).await;
        if let Some(sequence) = ack_upto {
            self.sub.as_mut().ack(sequence).await.map_err(DeliveryError::Acknowledge)?;
        }
        Ok(())
    }
}
