//! The API's wire types: request bodies as clients send them and response bodies as the API
//! answers. They exist only at the boundary; handlers turn them into validated domain types
//! (`WebhookSpec`, drafts) before anything else sees them.

use hookstream_events_core::ingest::IngestEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// `POST /kickoff` (and, without `inputs`, `POST /executions`). Unknown top-level fields are
/// ignored, as CrewAI Enterprise clients send some (`taskWebhookUrl`, ...).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct KickoffBody {
    /// The runner's inputs.
    #[serde(default)]
    pub(crate) inputs: Option<Map<String, Value>>,
    /// Anything; echoed in status and in `crew_execution_completed`.
    #[serde(default)]
    pub(crate) meta: Option<Value>,
    /// One webhook object or an array of them; parsed by [`parse_webhooks`] so that errors
    /// name `webhooks[i].field`.
    #[serde(default)]
    pub(crate) webhooks: Option<Value>,
}

/// One entry of `webhooks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookBody {
    #[serde(default)]
    pub(crate) events: Option<Vec<String>>,
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) realtime: Option<bool>,
    #[serde(default)]
    pub(crate) authentication: Option<Value>,
    #[serde(default)]
    pub(crate) batch: Option<BatchBody>,
    #[serde(default)]
    pub(crate) headers: Option<Map<String, Value>>,
}

/// `webhooks[i].batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    #[serde(default)]
    pub(crate) max_events: Option<usize>,
    #[serde(default)]
    pub(crate) max_wait_ms: Option<u64>,
    #[serde(default)]
    pub(crate) max_bytes: Option<usize>,
}

/// `POST /executions/{id}/events`: parsed in one pass; each event's content is checked by
/// `IngestEvent::into_draft`.
#[derive(Debug, Deserialize)]
pub(crate) struct IngestBody {
    pub(crate) events: Vec<IngestEvent>,
}

/// `POST /executions/{id}/complete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteBody {
    pub(crate) state: CompleteState,
    #[serde(default)]
    pub(crate) result: Option<Value>,
    #[serde(default)]
    pub(crate) error: Option<String>,
}

/// The end an external producer reports.
#[derive(Clone, Copy, Debug, Deserialize)]
pub(crate) enum CompleteState {
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "FAILED")]
    Failed,
}

/// `?after=&limit=` of the replay route, `?after=` of the stream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayQuery {
    #[serde(default)]
    pub(crate) after: Option<u64>,
    #[serde(default)]
    pub(crate) limit: Option<usize>,
}

/// `{"kickoff_id"}`.
#[derive(Debug, Serialize)]
pub(crate) struct KickoffResponse {
    pub(crate) kickoff_id: Uuid,
}

/// `{"execution_id", "ingest_token"}`.
#[derive(Debug, Serialize)]
pub(crate) struct RegisterResponse {
    pub(crate) execution_id: Uuid,
    pub(crate) ingest_token: String,
}

/// `{"accepted", "duplicates", "last_sequence"}`.
#[derive(Debug, Serialize)]
pub(crate) struct IngestResponse {
    pub(crate) accepted: u64,
    pub(crate) duplicates: u64,
    pub(crate) last_sequence: u64,
}
