//! Runners: what a kickoff runs (SPEC §5). A runner produces the events of one execution
//! through its [`RunContext`] and returns how the run ended; the server, not the runner,
//! emits `crew_execution_completed` afterwards, exactly once.
//!
//! Runners know nothing of HTTP routes, storage or delivery.

use std::sync::Arc;

use async_trait::async_trait;
use hookstream_events_core::bus::{Backpressure, Bus, PublishError, Published};
use hookstream_events_core::Draft;
use uuid::Uuid;

/// Everything a runner gets for one execution.
#[non_exhaustive]
pub struct RunContext {
    /// The execution (kickoff id).
    pub execution_id: Uuid,
    /// The kickoff's `inputs` object.
    pub inputs: serde_json::Map<String, serde_json::Value>,
    /// Where the execution's events go.
    pub bus: Arc<dyn Bus>,
    /// The URL of this execution's ingest route, for runners in other processes.
    pub ingest_url: String,
    /// The execution's ingest token, for runners in other processes.
    pub ingest_token: String,
}

impl RunContext {
    /// A context for one run.
    pub fn new(
        execution_id: Uuid,
        inputs: serde_json::Map<String, serde_json::Value>,
        bus: Arc<dyn Bus>,
        ingest_url: String,
        ingest_token: String,
    ) -> Self {
        Self { execution_id, inputs, bus, ingest_url, ingest_token }
    }

    /// Publishes events of this execution, waiting when a subscriber is full.
    pub async fn emit(&self, drafts: Vec<Draft>) -> Result<Published, PublishError> {
        self.bus.publish(self.execution_id, drafts, Backpressure::Wait).await
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RunOutcome {
    /// The run succeeded with this result.
    Success {
        /// The run's result (e.g. the output of its `crew_kickoff_completed`).
        result: serde_json::Value,
    },
    /// The run failed.
    Failed {
        /// A sentence for a human (e.g. the stderr tail of a command).
        error: String,
    },
}

/// A runner: runs one execution at a time per call; called concurrently for many.
#[async_trait]
pub trait Runner: Send + Sync + 'static {
    /// The runner's name (`"demo"`, `"command"`, `"external"`).
    fn name(&self) -> &str;

    /// The inputs a kickoff must carry (`GET /inputs`, 422 `missing_inputs`).
    fn required_inputs(&self) -> Vec<String>;

    /// Whether events come from outside (the `external` runner): kickoff only registers the
    /// execution and the run ends through `POST /executions/{id}/complete`.
    fn is_external(&self) -> bool {
        false
    }

    /// Runs the execution to its end. Cancel-safe: dropping the future stops the run.
    async fn run(&self, ctx: RunContext) -> RunOutcome;
}

pub mod command;
pub mod demo;
pub mod external;
