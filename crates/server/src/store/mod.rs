//! Storage: what the server keeps (executions, their webhooks, events, delivery state) behind
//! one object-safe trait, [`Store`], with the in-memory store ([`MemoryStore`]) and, behind the
//! `embedded` feature, the durable SQLite store of the data dir.
//!
//! A store owns three things and hands out the last two: the execution records (this trait),
//! the event log ([`Store::bus`], whose `publish` is durable when the store is), and the
//! delivery ledger of delivery-http. It does not validate requests, run runners or deliver:
//! everything it is given was validated by the server, and it keeps it as given.
//!
//! # Contract for implementors
//!
//! - [`Store::create_execution`] stores the record and its webhooks in one step: after an
//!   error nothing of it is visible.
//! - [`Store::finish_execution`] publishes the execution's `crew_execution_completed` (built
//!   by [`Completion::terminal_draft`]) to the store's bus and records the final state as one
//!   step, at most once per execution: a second call fails with [`StoreError::Ended`].
//! - The webhook specs hold authentication secrets and the ingest token is only kept as
//!   its hash: treat the spec JSON as secret (never log it).
//! - [`Store::unfinished_executions`] lists what a restart must resume; a superset is fine.

use std::sync::Arc;

use async_trait::async_trait;
use hookstream_delivery_http::{DeliveryStats, Ledger, PairKey};
use hookstream_events_core::bus::{Bus, BusError, PublishError};
use hookstream_events_core::event::TERMINAL_EVENT_TYPE;
use hookstream_events_core::{Data, Draft, EventType, Timestamp};
use serde_json::Value;
use uuid::Uuid;

use crate::token::IngestTokenHash;
use crate::webhook::WebhookSpec;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(feature = "embedded")]
pub mod embedded;
mod memory;

pub use memory::MemoryStore;

/// A store: executions, the event log and the delivery ledger. Shared as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The event log of every execution; `publish` returns once the events are as durable as
    /// the store is (ingest answers 202 only after it returned).
    fn bus(&self) -> Arc<dyn Bus>;

    /// The delivery ledger (batches, attempts, dead letters) of delivery-http.
    fn ledger(&self) -> Arc<dyn Ledger>;

    /// The delivery figures of one (execution, webhook) pair, as the ledger recorded them
    /// (`None` when nothing was recorded yet): the deliveries view and the metrics.
    async fn delivery_stats(&self, pair: PairKey) -> Result<Option<DeliveryStats>, StoreError>;

    /// Readiness: whether the store can serve requests now (`GET /readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores a new execution with its webhooks, atomically. Fails with
    /// [`StoreError::AlreadyExists`] when the id is taken.
    async fn create_execution(&self, execution: Execution) -> Result<(), StoreError>;

    /// The execution `id`, or [`StoreError::NotFound`].
    async fn execution(&self, id: Uuid) -> Result<Execution, StoreError>;

    /// Moves a [`ExecutionState::Pending`] execution to [`ExecutionState::Running`], started
    /// `at`; returns whether it moved (false when it was not pending: a no-op).
    async fn mark_running(&self, id: Uuid, at: Timestamp) -> Result<bool, StoreError>;

    /// Ends the execution: publishes `completion.terminal_draft(..)` to the bus and records
    /// the final state, result, error and execution time, as one step. Fails with
    /// [`StoreError::Ended`] (a conflict) when it has ended already, and then changes nothing.
    async fn finish_execution(
        &self,
        id: Uuid,
        completion: Completion,
    ) -> Result<Finished, StoreError>;

    /// The executions a restart must resume: every one not ended, plus ended ones whose
    /// webhooks were not all marked delivered ([`Store::mark_delivery_finished`]).
    async fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError>;

    /// Records that webhook `webhook_index` of `id` has nothing left to deliver. A hint that
    /// narrows [`Store::unfinished_executions`]; the default keeps nothing.
    async fn mark_delivery_finished(
        &self,
        id: Uuid,
        webhook_index: usize,
    ) -> Result<(), StoreError> {
        let _ = (id, webhook_index);
        Ok(())
    }

    /// How many executions are in each state (`hookstream_executions` gauge).
    async fn state_counts(&self) -> Result<StateCounts, StoreError>;
}

/// An execution record.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Execution {
    /// The execution (kickoff) id.
    pub id: Uuid,
    /// The name of the runner that runs it (`"demo"`, `"command"`, `"external"`).
    pub runner: String,
    /// Whether its events come from outside and it ends through the complete route; when
    /// false, its runner lives in the server process and dies with it.
    pub external: bool,
    /// The kickoff's `inputs`.
    pub inputs: Data,
    /// The kickoff's `meta` (`null` when none was given).
    pub meta: Value,
    /// Its webhooks; a webhook's index here is its `webhook_index` for delivery.
    pub webhooks: Vec<WebhookSpec>,
    /// The hash of its ingest token.
    pub ingest_token: IngestTokenHash,
    /// Where it is.
    pub state: ExecutionState,
    /// The run's result once it succeeded (`null` otherwise).
    pub result: Value,
    /// Why it failed, once it did.
    pub error: Option<String>,
    /// Seconds from start to end, once ended.
    pub execution_time: Option<f64>,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it started running.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

impl Execution {
    /// A new, pending execution.
    pub fn new(
        id: Uuid,
        runner: impl Into<String>,
        external: bool,
        ingest_token: IngestTokenHash,
    ) -> Self {
        Self {
            id,
            runner: runner.into(),
            external,
            inputs: Data::new(),
            meta: Value::Null,
            webhooks: Vec::new(),
            ingest_token,
            state: ExecutionState::Pending,
            result: Value::Null,
            error: None,
            execution_time: None,
            created_at: Timestamp::now(),
            started_at: None,
            finished_at: None,
        }
    }

    /// The same with these inputs.
    pub fn with_inputs(mut self, inputs: Data) -> Self {
        self.inputs = inputs;
        self
    }

    /// The same with this meta.
    pub fn with_meta(mut self, meta: Value) -> Self {
        self.meta = meta;
        self
    }

    /// The same with these webhooks.
    pub fn with_webhooks(mut self, webhooks: Vec<WebhookSpec>) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// This record after `completion` (what [`Store::finish_execution`] records).
    pub fn completed(mut self, completion: &Completion) -> Self {
        self.state = completion.state.into();
        self.result = completion.result.clone();
        self.error = completion.error.clone();
        self.execution_time = Some(completion.execution_time);
        self.finished_at = Some(completion.finished_at);
        self
    }
}

/// Where an execution is (`GET /status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExecutionState {
    /// Registered, not started.
    Pending,
    /// Running (or, for an external execution, receiving events).
    Running,
    /// Ended successfully.
    Success,
    /// Ended in failure.
    Failed,
}

impl ExecutionState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Running, Self::Success, Self::Failed];

    /// CrewAI's `state`: `PENDING`, `RUNNING`, `SUCCESS`, `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Success => "SUCCESS",
            Self::Failed => "FAILED",
        }
    }

    /// The lower-case `status`: `pending`, `running`, `completed`, `error`.
    pub fn status(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "completed",
            Self::Failed => "error",
        }
    }

    /// Whether the execution has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failed)
    }

    /// Parses [`ExecutionState::as_str`]'s form (for stores reading back).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// How an execution ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FinalState {
    /// It succeeded.
    Success,
    /// It failed.
    Failed,
}

impl From<FinalState> for ExecutionState {
    fn from(state: FinalState) -> Self {
        match state {
            FinalState::Success => Self::Success,
            FinalState::Failed => Self::Failed,
        }
    }
}

/// The end of an execution, as given to [`Store::finish_execution`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Completion {
    /// Success or failure.
    pub state: FinalState,
    /// The result (`null` when none).
    pub result: Value,
    /// Why it failed.
    pub error: Option<String>,
    /// Seconds from start to end.
    pub execution_time: f64,
    /// When it ended.
    pub finished_at: Timestamp,
}

impl Completion {
    /// An end now.
    pub fn new(
        state: FinalState,
        result: Value,
        error: Option<String>,
        execution_time: f64,
    ) -> Self {
        Self { state, result, error, execution_time, finished_at: Timestamp::now() }
    }

    /// The `crew_execution_completed` event of SPEC §2 for `execution`: data `{"state",
    /// "result", "error", "execution_time", "meta"}`, stamped at `finished_at`. Every store
    /// publishes exactly this.
    pub fn terminal_draft(&self, execution: &Execution) -> Draft {
        let mut data = Data::new();
        data.insert("state".into(), ExecutionState::from(self.state).as_str().into());
        data.insert("result".into(), self.result.clone());
        data.insert("error".into(), self.error.clone().map_or(Value::Null, Value::String));
        data.insert(
            "execution_time".into(),
            serde_json::Number::from_f64(self.execution_time).map_or(Value::Null, Value::Number),
        );
        data.insert("meta".into(), execution.meta.clone());
        let mut draft = Draft::new(terminal_type(), data);
        draft.timestamp = self.finished_at;
        draft
    }
}

fn terminal_type() -> EventType {
    #[allow(clippy::expect_used)] // a constant of events-core, not input
    EventType::new(TERMINAL_EVENT_TYPE).expect("TERMINAL_EVENT_TYPE is a valid event type")
}

/// What [`Store::finish_execution`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Finished {
    /// The execution as recorded now.
    pub execution: Execution,
    /// The sequence of its `crew_execution_completed`.
    pub last_sequence: u64,
}

impl Finished {
    /// A finish outcome.
    pub fn new(execution: Execution, last_sequence: u64) -> Self {
        Self { execution, last_sequence }
    }
}

/// Executions per state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateCounts {
    /// Pending.
    pub pending: u64,
    /// Running.
    pub running: u64,
    /// Succeeded.
    pub success: u64,
    /// Failed.
    pub failed: u64,
}

impl StateCounts {
    /// The count of `state`.
    pub fn get(&self, state: ExecutionState) -> u64 {
        match state {
            ExecutionState::Pending => self.pending,
            ExecutionState::Running => self.running,
            ExecutionState::Success => self.success,
            ExecutionState::Failed => self.failed,
        }
    }

    /// Adds one to `state`'s count.
    pub fn add(&mut self, state: ExecutionState) {
        match state {
            ExecutionState::Pending => self.pending += 1,
            ExecutionState::Running => self.running += 1,
            ExecutionState::Success => self.success += 1,
            ExecutionState::Failed => self.failed += 1,
        }
    }
}

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No execution has this id.
    #[error("execution {0} not found")]
    NotFound(Uuid),
    /// An execution with this id exists already.
    #[error("execution {0} exists already")]
    AlreadyExists(Uuid),
    /// The execution has ended already.
    #[error("execution {0} has ended")]
    Ended(Uuid),
    /// Stored data could not be read back.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The storage backend failed (IO, SQLite, network).
    #[error("the store backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl StoreError {
    /// Whether the operation conflicts with the execution's state (HTTP 409).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::AlreadyExists(_) | Self::Ended(_))
    }

    /// Whether the execution does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }

    /// A backend failure.
    pub fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Backend(error.into())
    }

    /// The store error for a failed terminal publish of `id`.
    pub fn from_publish(id: Uuid, error: PublishError) -> Self {
        match error {
            PublishError::Ended { .. } => Self::Ended(id),
            other => Self::Backend(Box::new(other)),
        }
    }

    /// The store error for a failed bus operation.
    pub fn from_bus(error: BusError) -> Self {
        Self::Backend(Box::new(error))
    }
}
