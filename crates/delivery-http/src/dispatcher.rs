//! [`Dispatcher`], the entry point: one per process, it holds the pooled HTTP client, the
//! ledger and the policies, spawns one task per (execution, webhook) pair and redrives dead
//! letters.
//!
//! This module owns the public handles and errors of running deliveries; the pipeline stages
//! live in their own modules (`pair`, `batch`, `encode`, `request`, `service`, `client`,
//! `retry`, `ssrf`, `ledger`, `telemetry`).

use std::collections::BTreeSet;
use std::sync::Arc;

use hookstream_events_core::bus::{Bus, BusError, RecvError};
use tokio::task::JoinHandle;

use crate::client::{ClientError, HttpClient};
use crate::config::{DispatcherConfig, WebhookConfig};
use crate::encode::BodyWriter;
use crate::ledger::{BatchId, DeadLetter, Ledger, PairKey};
use crate::service::{Batch, Clock, Delivery, Shared};

/// Runs webhook deliveries. Cheap to clone; clones share the client, its connection pool and
/// the concurrency cap.
///
/// ```no_run
/// use std::sync::Arc;
/// use hookstream_delivery_http::{Dispatcher, DispatcherConfig, MemoryLedger, PairKey, WebhookConfig};
/// use hookstream_events_core::bus::{Bus, MemoryBus};
/// # async fn demo(config: WebhookConfig) -> Result<(), Box<dyn std::error::Error>> {
/// let dispatcher = Dispatcher::new(DispatcherConfig::default(), Arc::new(MemoryLedger::new()))?;
/// let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
/// let key = PairKey::new(uuid::Uuid::now_v7(), 0);
/// let handle = dispatcher.spawn(Arc::clone(&bus), key, config);
/// // ... publish events, ending with `crew_execution_completed` ...
/// let summary = handle.finished().await?;
/// println!("{} events delivered", summary.delivered_events);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

/// Why a dispatcher could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatcherError {
    /// The HTTP client (its TLS roots) could not be built.
    #[error("the webhook HTTP client could not be built")]
    Client(#[from] ClientError),
}

impl Dispatcher {
    /// A dispatcher recording into `ledger`. Must be called within a tokio runtime.
    pub fn new(config: DispatcherConfig, ledger: Arc<dyn Ledger>) -> Result<Self, DispatcherError> {
        let client = HttpClient::new(&config)?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                ledger,
                retry: config.retry,
                user_agent: config.user_agent,
                clock: Clock::new(),
            }),
        })
    }

    /// The ledger deliveries are recorded in.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.shared.ledger
    }

    /// Starts delivering `key`'s events to `config`'s target: opens the durable subscription
    /// `webhook-<index>` of the execution and runs until the terminal event is acknowledged.
    /// A batch the ledger shows in flight for `key` is resumed first.
    pub fn spawn(&self, bus: Arc<dyn Bus>, key: PairKey, config: WebhookConfig) -> DeliveryHandle {
        let shared = Arc::clone(&self.shared);
        let task = tokio::spawn(crate::pair::run(shared, bus, key, config));
        DeliveryHandle { key, task }
    }

    /// Sends a dead-lettered batch's events again, read back from `bus`, as a new batch (a new
    /// `webhook-id`) with the full retry rules, and records the outcome (`Ledger::redriven`,
    /// then the new batch's own records). It runs beside the pair's task, not in its order.
    pub async fn redrive(
        &self,
        bus: &dyn Bus,
        key: PairKey,
        config: &WebhookConfig,
        dead_letter: &DeadLetter,
    ) -> Result<RedriveOutcome, RedriveError> {
        let wanted: BTreeSet<u64> = dead_letter.sequences.iter().copied().collect();
        let (Some(&first), Some(&last)) = (wanted.first(), wanted.last()) else {
            return Err(RedriveError::Empty);
        };
        let span = usize::try_from(last - first + 1).unwrap_or(usize::MAX);
        let events = bus
            .read(key.execution_id, first.saturating_sub(1), span)
            .await
            .map_err(RedriveError::Read)?;
        let mut body = BodyWriter::default();
        for event in events.iter().filter(|e| wanted.contains(&e.sequence)) {
            body.push(event).map_err(RedriveError::Encode)?;
        }
        if body.len() != wanted.len() {
            return Err(RedriveError::Missing { missing: wanted.len() - body.len() });
        }
        let batch = Batch::new(body.finish(), self.shared.clock.now());
        let batch_id = batch.id.clone();
        if let Err(e) = self.shared.ledger.redriven(&key, &dead_letter.batch_id, &batch_id).await {
            crate::telemetry::ledger_error("redriven", &e);
        }
        let mut delivery = Delivery::new(&self.shared, key, config);
        delivery.run(batch).await;
        Ok(RedriveOutcome {
            batch_id,
            delivered_events: delivery.tally.delivered,
            dead_lettered_events: delivery.tally.dead_lettered,
        })
    }
}

/// What a redrive did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedriveOutcome {
    /// The new batch's id (its first part's, if it was split).
    pub batch_id: BatchId,
    /// Events delivered.
    pub delivered_events: u64,
    /// Events dead-lettered again.
    pub dead_lettered_events: u64,
}

/// Why a redrive did not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedriveError {
    /// The dead letter names no event.
    #[error("the dead letter holds no event")]
    Empty,
    /// The bus could not be read.
    #[error("the dead letter's events could not be read back")]
    Read(#[source] BusError),
    /// Some events are no longer on the bus.
    #[error("{missing} events of the dead letter are no longer on the bus")]
    Missing {
        /// How many.
        missing: usize,
    },
    /// An event could not be serialized.
    #[error("an event could not be serialized")]
    Encode(#[source] serde_json::Error),
}

/// A running pair: await its end or abort it.
#[derive(Debug)]
pub struct DeliveryHandle {
    key: PairKey,
    task: JoinHandle<Result<PairSummary, DeliveryError>>,
}

impl DeliveryHandle {
    /// The pair it delivers.
    pub fn key(&self) -> PairKey {
        self.key
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the task at its next await point. Unacknowledged events stay on the bus; a later
    /// [`Dispatcher::spawn`] of the same pair resumes them.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Waits for the pair's end: its terminal event acknowledged.
    pub async fn finished(self) -> Result<PairSummary, DeliveryError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) if e.is_cancelled() => Err(DeliveryError::Aborted),
            Err(_) => Err(DeliveryError::Panicked),
        }
    }
}

/// What a finished pair did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PairSummary {
    /// Events delivered (2xx).
    pub delivered_events: u64,
    /// Events dead-lettered.
    pub dead_lettered_events: u64,
    /// Whether the receiver answered 410.
    pub gone: bool,
}

/// Why a pair's task stopped before its end. Unacknowledged events stay on the bus: spawning
/// the pair again resumes them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The durable subscription could not be opened.
    #[error("the pair's subscription could not be opened")]
    Subscribe(#[source] BusError),
    /// The subscription failed.
    #[error("receiving from the pair's subscription failed")]
    Receive(#[source] RecvError),
    /// An acknowledgement failed.
    #[error("acknowledging to the pair's subscription failed")]
    Acknowledge(#[source] BusError),
    /// The task was aborted.
    #[error("the delivery task was aborted")]
    Aborted,
    /// The task panicked (a bug).
    #[error("the delivery task panicked")]
    Panicked,
}

impl DeliveryError {
    /// Whether spawning the pair again may help (every failure but an abort).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Aborted)
    }
}
