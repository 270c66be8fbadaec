//! Delivery routes: the per-webhook view and the redrive of dead letters.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hookstream_delivery_http::PairKey;
use serde_json::{json, Value};

use super::extract::ExecutionId;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /executions/{id}/deliveries`.
pub(super) async fn deliveries(
    State(state): State<AppState>,
    ExecutionId(id): ExecutionId,
) -> Result<Json<Value>, ApiError> {
    let execution = state.store().execution(id).await?;
    let mut webhooks = Vec::with_capacity(execution.webhooks.len());
    for (index, spec) in execution.webhooks.iter().enumerate() {
        let pair = PairKey::new(id, u32::try_from(index).unwrap_or(u32::MAX));
        let stats = state.store().delivery_stats(pair).await?.unwrap_or_default();
        let dead_letters: Vec<Value> = stats
            .dead_letters
            .iter()
            .map(|d| {
                json!({
                    "batch_id": d.batch_id.as_str(),
                    "sequences": d.sequences,
                    "reason": d.reason.to_string(),
                    "attempts": d.attempts,
                    "at": hookstream_events_core::Timestamp::from_datetime(d.at.into()),
                })
            })
            .collect();
        webhooks.push(json!({
            "index": index,
            "url": spec.redacted_url(),
            "realtime": spec.realtime,
            "authentication": spec.authentication.strategy(),
            "state": stats.state.as_str(),
            "delivered": stats.delivered_events,
            "pending": stats.pending_events,
            "dead_lettered": stats.dead_lettered_events,
            "attempts": stats.attempts,
            "last_status": stats.last_status,
            "last_error": stats.last_error,
            "dead_letters": dead_letters,
        }));
    }
    Ok(Json(json!({"execution_id": id, "webhooks": webhooks})))
}

/// `POST /executions/{id}/deliveries/redrive`: 202; the dead letters are sent again in the
/// background, each as a new batch.
pub(super) async fn redrive(
    State(state): State<AppState>,
    ExecutionId(id): ExecutionId,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let execution = state.store().execution(id).await?;
    let batches = state.redrive(&execution).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"execution_id": id, "redriven_batches": batches}))))
}
