//! The event bus: the seam between producers (runners, ingest) and consumers (webhook
//! delivery, streams), and the contract every backend (memory, embedded store, NATS
//! JetStream) keeps.
//!
//! SPEC-OF-THE-BUS: the sections below (delivery, ordering, acknowledgement, backpressure,
//! closing) are written by the events-core issue, each with a doctest on [`MemoryBus`].

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::event::{Draft, Event};

mod memory;

pub use memory::MemoryBus;

/// What [`Bus::publish`] did with a batch of drafts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// Drafts that became new events.
    pub accepted: u64,
    /// Drafts whose id the execution already had: no-ops.
    pub duplicates: u64,
    /// The execution's last sequence after this publish (0 when it has no event yet).
    pub last_sequence: u64,
}

impl Published {
    /// A publish outcome.
    pub fn new(accepted: u64, duplicates: u64, last_sequence: u64) -> Self {
        Self { accepted, duplicates, last_sequence }
    }
}

/// What publish does when a durable subscription of the execution is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backpressure {
    /// Wait until the slowest durable subscription has room.
    #[default]
    Wait,
    /// Fail at once with [`PublishError::Full`], handing the drafts back.
    Fail,
}

/// How a subscription consumes an execution's events.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionKind {
    /// Named, acknowledged, never dropped from: re-opening it by name redelivers everything
    /// after its acknowledged position. Publish is held back (or fails) when it is full.
    Durable {
        /// The name that identifies it across re-opens (e.g. `"webhook-0"`).
        name: String,
    },
    /// Lossy and unacknowledged: when it falls more than its capacity behind it receives
    /// [`RecvError::Lagged`] with the count it missed, and goes on from the oldest it still can.
    Live {
        /// Start after this sequence (0: from the first event); `None`: only new events.
        after: Option<u64>,
    },
}

/// What to subscribe to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// The execution whose events are received.
    pub execution_id: Uuid,
    /// Durable or live.
    pub kind: SubscriptionKind,
    /// Events received but not acknowledged (durable), or buffered (live), at most.
    pub capacity: NonZeroUsize,
}

impl SubscribeOptions {
    /// Default capacity of a subscription.
    pub const DEFAULT_CAPACITY: NonZeroUsize = match NonZeroUsize::new(1024) {
        Some(n) => n,
        None => unreachable!(),
    };

    /// A durable subscription named `name` on `execution_id`.
    pub fn durable(execution_id: Uuid, name: impl Into<String>) -> Self {
        Self {
            execution_id,
            kind: SubscriptionKind::Durable { name: name.into() },
            capacity: Self::DEFAULT_CAPACITY,
        }
    }

    /// A live subscription on `execution_id` starting after `after` (`None`: new events only).
    pub fn live(execution_id: Uuid, after: Option<u64>) -> Self {
        Self {
            execution_id,
            kind: SubscriptionKind::Live { after },
            capacity: Self::DEFAULT_CAPACITY,
        }
    }

    /// The same with another capacity.
    pub fn with_capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity;
        self
    }
}

/// An event handed to a subscriber.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Delivered {
    /// The event.
    pub event: Arc<Event>,
    /// Whether it was handed out before (after a re-open or a negative acknowledgement).
    pub redelivered: bool,
}

impl Delivered {
    /// An event handed out, the first time or again.
    pub fn new(event: Arc<Event>, redelivered: bool) -> Self {
        Self { event, redelivered }
    }
}

/// A publish that did not happen; the drafts are handed back, nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A durable subscription is full and the policy was [`Backpressure::Fail`].
    #[error("a durable subscription of execution {execution_id} is full")]
    Full {
        /// The execution.
        execution_id: Uuid,
        /// The drafts, not published.
        drafts: Vec<Draft>,
    },
    /// The execution has ended (its `crew_execution_completed` was published).
    #[error("execution {execution_id} has ended and takes no more events")]
    Ended {
        /// The execution.
        execution_id: Uuid,
        /// The drafts, not published.
        drafts: Vec<Draft>,
    },
    /// A `crew_execution_completed` draft was not the last of its batch; nothing was stored.
    #[error("the terminal event of execution {execution_id} must be the last of its batch")]
    TerminalNotLast {
        /// The execution.
        execution_id: Uuid,
        /// The drafts, not published.
        drafts: Vec<Draft>,
    },
    /// The backend failed; nothing of this publish was stored.
    #[error("the bus backend failed")]
    Backend {
        /// The drafts, not published.
        drafts: Vec<Draft>,
        /// What failed.
        #[source]
        source: BackendError,
    },
}

impl PublishError {
    /// The drafts that were not published.
    pub fn into_drafts(self) -> Vec<Draft> {
        match self {
            Self::Full { drafts, .. }
            | Self::Ended { drafts, .. }
            | Self::TerminalNotLast { drafts, .. }
            | Self::Backend { drafts, .. } => drafts,
        }
    }
}

/// A failure of the storage or transport behind a bus.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a subscriber did not receive an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// A live subscription fell behind and missed `skipped` events; it goes on after them.
    #[error("live subscription lagged and missed {skipped} events")]
    Lagged {
        /// How many events it missed.
        skipped: u64,
    },
    /// The backend failed.
    #[error("the bus backend failed")]
    Backend(#[source] BackendError),
}

/// A failure of a bus operation other than publish and receive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The sequence is not one this subscription has received.
    #[error("sequence {sequence} was not delivered to this subscription")]
    NotDelivered {
        /// The sequence given.
        sequence: u64,
    },
    /// Live subscriptions are not acknowledged.
    #[error("live subscriptions take no acknowledgements")]
    NotDurable,
    /// The durable subscription is already open elsewhere.
    #[error("durable subscription {name:?} is already open")]
    AlreadyOpen {
        /// Its name.
        name: String,
    },
    /// The backend failed.
    #[error("the bus backend failed")]
    Backend(#[source] BackendError),
}

/// An event bus (see the module docs for the contract).
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Appends `drafts` to `execution_id`'s log in order, assigning each new one the next
    /// sequence; a draft whose id the execution already holds is a no-op (a duplicate). All
    /// or nothing: on error nothing was stored and the drafts are handed back. A draft of type
    /// `crew_execution_completed` ends the execution: it must be the last of its batch and
    /// later publishes fail with [`PublishError::Ended`].
    async fn publish(
        &self,
        execution_id: Uuid,
        drafts: Vec<Draft>,
        policy: Backpressure,
    ) -> Result<Published, PublishError>;

    /// Opens a subscription.
    async fn subscribe(&self, options: SubscribeOptions)
        -> Result<Box<dyn Subscription>, BusError>;

    /// Up to `limit` events of `execution_id` with a sequence above `after`, in order (replay).
    async fn read(
        &self,
        execution_id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Event>>, BusError>;
}

/// One subscriber's view of one execution's events.
#[async_trait]
pub trait Subscription: Send {
    /// The next event in sequence order; `None` once the execution's terminal event has been
    /// handed out (and, for a durable subscription, nothing unacknowledged is left to redeliver).
    async fn next(&mut self) -> Option<Result<Delivered, RecvError>>;

    /// Acknowledges every received event up to and including `sequence` (cumulative).
    async fn ack(&mut self, sequence: u64) -> Result<(), BusError>;

    /// Negative acknowledgement: events from `sequence` on are handed out again, no sooner than
    /// `delay` from now.
    async fn nack(&mut self, sequence: u64, delay: Duration) -> Result<(), BusError>;
}

#[async_trait]
impl<B: Bus + ?Sized> Bus for Arc<B> {
    async fn publish(
        &self,
        execution_id: Uuid,
        drafts: Vec<Draft>,
        policy: Backpressure,
    ) -> Result<Published, PublishError> {
        (**self).publish(execution_id, drafts, policy).await
    }

    async fn subscribe(
        &self,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, BusError> {
        (**self).subscribe(options).await
    }

    async fn read(
        &self,
        execution_id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Event>>, BusError> {
        (**self).read(execution_id, after, limit).await
    }
}

#[async_trait]
impl<S: Subscription + ?Sized> Subscription for Box<S> {
    async fn next(&mut self) -> Option<Result<Delivered, RecvError>> {
        (**self).next().await
    }

    async fn ack(&mut self, sequence: u64) -> Result<(), BusError> {
        (**self).ack(sequence).await
    }

    async fn nack(&mut self, sequence: u64, delay: Duration) -> Result<(), BusError> {
        (**self).nack(sequence, delay).await
    }
}
