//! [`ExternalRunner`]: the `external` runner of SPEC §5. A kickoff only registers the
//! execution; its events come through `POST /executions/{id}/events` and it ends through
//! `POST /executions/{id}/complete`.

use async_trait::async_trait;

use super::{RunContext, RunOutcome, Runner};

/// Runs nothing: events come from outside.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExternalRunner;

impl ExternalRunner {
    /// The external runner.
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Runner for ExternalRunner {
    fn name(&self) -> &str {
        "external"
    }

    fn required_inputs(&self) -> Vec<String> {
        Vec::new()
    }

    fn is_external(&self) -> bool {
        true
    }

    /// Never called by the server for an external runner; if called, the run fails at once.
    async fn run(&self, _ctx: RunContext) -> RunOutcome {
        RunOutcome::Failed {
            error: "the external runner runs nothing: send events to the ingest route".into(),
        }
    }
}
