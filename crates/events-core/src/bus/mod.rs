//! The event bus: the seam between producers (runners, ingest) and consumers (webhook
//! delivery, streams), and the contract every backend (memory, embedded store, NATS
//! JetStream) keeps.
//!
//! This module owns the [`Bus`] and [`Subscription`] traits, their options, outcomes and
//! errors, and [`MemoryBus`], the in-memory backend. It does not filter events by type (see
//! [`crate::filter`]), batch, or know about webhooks. The sections below are the contract;
//! the conformance suite (`testing` feature) checks each of them on any backend.
//!
//! Each execution (a run, by its kickoff id) has its own append-only log. Publishers append
//! [`Draft`]s to it; the bus turns them into [`Event`]s by giving each the next `sequence`.
//! Subscribers read one execution's log, each at its own pace.
//!
//! # Delivery
//!
//! A subscription receives the events of one execution through [`Subscription::next`].
//! There are two kinds ([`SubscriptionKind`]):
//!
//! - **Durable** subscriptions have a name and a position (the highest acknowledged
//!   sequence) that the bus keeps while the subscription is closed. Opening one by name
//!   delivers every event after that position, including those published while it was
//!   closed; events handed out before and not acknowledged come again with
//!   [`Delivered::redelivered`] set (at-least-once). A name is open at most once at a time
//!   ([`BusError::AlreadyOpen`]). Nothing is ever dropped from a durable subscription.
//! - **Live** subscriptions start at a sequence of the caller's choice (or with new events
//!   only), are not acknowledged, and hold back no publisher. One that falls more than its
//!   capacity behind receives [`RecvError::Lagged`] with the exact count it skipped, then goes
//!   on from the oldest event it can still get: lag is never silent.
//!
//! [`Bus::read`] replays stored events (after a sequence, up to a limit) without subscribing.
//!
//! ```
//! use hookstream_events_core::bus::{Backpressure, Bus, MemoryBus, RecvError, SubscribeOptions};
//! use hookstream_events_core::{Draft, EventType};
//! use std::num::NonZeroUsize;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = MemoryBus::new();
//! let run = uuid::Uuid::new_v4();
//! let four = NonZeroUsize::new(4).unwrap();
//! let mut live = bus.subscribe(SubscribeOptions::live(run, Some(0)).with_capacity(four)).await?;
//! let drafts = (0..10).map(|_| Draft::new(EventType::new("tick").unwrap(), Default::default()));
//! bus.publish(run, drafts.collect(), Backpressure::Wait).await?;
//!
//! // Ten events behind with room for four: the first six are reported missing, by count.
//! assert!(matches!(live.next().await, Some(Err(RecvError::Lagged { skipped: 6 }))));
//! assert_eq!(live.next().await.unwrap()?.event.sequence, 7);
//!
//! // Replay needs no subscription.
//! let replay = bus.read(run, 8, 100).await?;
//! assert_eq!(replay.iter().map(|e| e.sequence).collect::<Vec<_>>(), [9, 10]);
//! # Ok(()) }
//! ```
//!
//! # Ordering
//!
//! Within an execution, `sequence` starts at 1 and has no gaps: the bus assigns it under the
//! execution's own lock, in the order publishes are accepted, however many publishers race.
//! A batch's drafts get consecutive sequences in their order. Every subscription receives
//! events in sequence order (redeliveries start again from the earliest one redelivered).
//! Different executions are unordered with respect to each other and never wait for each
//! other.
//!
//! Publish is idempotent by event id: a draft whose id the execution already holds (from an
//! earlier publish or earlier in the same batch) is counted in [`Published::duplicates`] and
//! changes nothing. A publish is all or nothing: when it fails, nothing of the batch was
//! stored and the drafts are handed back in the error.
//!
//! ```
//! use hookstream_events_core::bus::{Backpressure, Bus, MemoryBus};
//! use hookstream_events_core::{Draft, EventType};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = MemoryBus::new();
//! let run = uuid::Uuid::new_v4();
//! let a = Draft::new(EventType::new("task_started")?, Default::default());
//! let b = Draft::new(EventType::new("task_completed")?, Default::default());
//!
//! let first = bus.publish(run, vec![a.clone(), b], Backpressure::Wait).await?;
//! assert_eq!((first.accepted, first.last_sequence), (2, 2));
//!
//! // A retry of `a` (say, a producer that timed out) is a no-op.
//! let retry = bus.publish(run, vec![a], Backpressure::Wait).await?;
//! assert_eq!((retry.accepted, retry.duplicates, retry.last_sequence), (0, 1, 2));
//! # Ok(()) }
//! ```
//!
//! # Acknowledgement
//!
//! A durable subscriber acknowledges with [`Subscription::ack`], cumulatively: `ack(s)`
//! acknowledges every event up to and including `s`, which must have been handed out by this
//! subscription ([`BusError::NotDelivered`] otherwise; acknowledging at or below the current
//! position is a no-op). Acknowledged events are never redelivered to that subscription.
//!
//! [`Subscription::nack`] hands events out again from a sequence on (at the earliest after
//! the acknowledged position), no sooner than a delay: the retry path of a consumer whose
//! downstream failed. Live subscriptions take neither ([`BusError::NotDurable`]).
//!
//! ```
//! use hookstream_events_core::bus::{Backpressure, Bus, MemoryBus, SubscribeOptions};
//! use hookstream_events_core::{Draft, EventType};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = MemoryBus::new();
//! let run = uuid::Uuid::new_v4();
//! let drafts = (0..3).map(|_| Draft::new(EventType::new("tick").unwrap(), Default::default()));
//! bus.publish(run, drafts.collect(), Backpressure::Wait).await?;
//!
//! let mut sub = bus.subscribe(SubscribeOptions::durable(run, "webhook-0")).await?;
//! for _ in 0..3 {
//!     sub.next().await.unwrap()?;
//! }
//! sub.ack(1).await?; // 1 is done
//! sub.nack(2, Duration::ZERO).await?; // 2 and 3 failed downstream: again
//! let again = sub.next().await.unwrap()?;
//! assert_eq!((again.event.sequence, again.redelivered), (2, true));
//!
//! // Closing and re-opening resumes after the acknowledged position.
//! drop(sub);
//! let mut sub = bus.subscribe(SubscribeOptions::durable(run, "webhook-0")).await?;
//! let again = sub.next().await.unwrap()?;
//! assert_eq!((again.event.sequence, again.redelivered), (2, true));
//! # Ok(()) }
//! ```
//!
//! # Backpressure
//!
//! A durable subscription holds at most its capacity of unacknowledged events: a publish
//! that would take any durable subscription of the execution (open or closed) past its
//! capacity either waits until acknowledgements make room ([`Backpressure::Wait`]) or fails
//! at once with [`PublishError::Full`], handing the drafts back ([`Backpressure::Fail`]). A
//! batch larger than a capacity is taken whole once that subscription has nothing
//! unacknowledged, so that it cannot wait forever. Live subscriptions never hold a publisher
//! back: they lag instead.
//!
//! ```
//! use hookstream_events_core::bus::{Backpressure, Bus, MemoryBus, PublishError, SubscribeOptions};
//! use hookstream_events_core::{Draft, EventType};
//! use std::num::NonZeroUsize;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = MemoryBus::new();
//! let run = uuid::Uuid::new_v4();
//! let one = NonZeroUsize::new(1).unwrap();
//! let mut sub = bus.subscribe(SubscribeOptions::durable(run, "slow").with_capacity(one)).await?;
//! let tick = || Draft::new(EventType::new("tick").unwrap(), Default::default());
//! bus.publish(run, vec![tick()], Backpressure::Fail).await?;
//!
//! let refused = bus.publish(run, vec![tick()], Backpressure::Fail).await.unwrap_err();
//! assert!(matches!(refused, PublishError::Full { .. }));
//! let drafts = refused.into_drafts(); // nothing lost: try again later
//!
//! sub.next().await.unwrap()?;
//! sub.ack(1).await?;
//! assert_eq!(bus.publish(run, drafts, Backpressure::Fail).await?.last_sequence, 2);
//! # Ok(()) }
//! ```
//!
//! # Closing
//!
//! An execution ends with its terminal event, `crew_execution_completed`
//! ([`crate::event::TERMINAL_EVENT_TYPE`]), which must be the last draft of its batch
//! ([`PublishError::TerminalNotLast`] otherwise). Afterwards a publish holding any new draft
//! fails with [`PublishError::Ended`] and the drafts handed back; one holding only
//! duplicates (a retry of the terminal batch) succeeds as a no-op. Once a subscription has
//! handed out the terminal event, [`Subscription::next`] returns `None` (until a `nack` asks
//! for earlier events again). Dropping a subscription closes it; a durable one keeps its
//! position. [`MemoryBus`] keeps an execution's events until [`MemoryBus::forget`].
//!
//! ```
//! use hookstream_events_core::bus::{Backpressure, Bus, MemoryBus, PublishError, SubscribeOptions};
//! use hookstream_events_core::event::TERMINAL_EVENT_TYPE;
//! use hookstream_events_core::{Draft, EventType};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = MemoryBus::new();
//! let run = uuid::Uuid::new_v4();
//! let mut sub = bus.subscribe(SubscribeOptions::durable(run, "webhook-0")).await?;
//! let end = Draft::new(EventType::new(TERMINAL_EVENT_TYPE)?, Default::default());
//! bus.publish(run, vec![end], Backpressure::Wait).await?;
//!
//! let last = sub.next().await.unwrap()?;
//! assert!(last.event.event_type.is_terminal());
//! assert!(sub.next().await.is_none());
//!
//! let late = Draft::new(EventType::new("task_started")?, Default::default());
//! let err = bus.publish(run, vec![late], Backpressure::Wait).await.unwrap_err();
//! assert!(matches!(err, PublishError::Ended { .. }));
//! # Ok(()) }
//! ```
//!
//! # Implementing a backend
//!
//! A backend over a durable log maps the contract onto its primitives: publish with a
//! de-duplication key (the event id), per-subscriber acknowledged positions, negative
//! acknowledgement with a delay, redelivery counts. It must pass the conformance suite:
//! with the `testing` feature, `hookstream_events_core::bus_conformance!(|| async { .. })`
//! in its integration tests, and the `restart:` form when it persists.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::event::{Draft, Event};

mod cursor;
mod memory;

pub use cursor::Cursor;
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
    ///
    /// Cancel-safe: dropping the future before it is ready hands nothing out and loses nothing
    /// (delivery races it against timers). Backends keep their position in a [`Cursor`].
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
