//! Execution routes: kickoff, status, registration of external executions, ingest,
//! complete and replay.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::extract::{ExecutionId, JsonBody, OptionalJsonBody, Producer, QueryParams};
use super::wire::{
    CompleteBody, IngestBody, IngestResponse, KickoffBody, KickoffResponse, RegisterResponse,
    ReplayQuery,
};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Execution;

/// Events per replay page by default and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `POST /kickoff`.
pub(super) async fn kickoff(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<KickoffBody>,
) -> Result<Json<KickoffResponse>, ApiError> {
    let kickoff_id = state.kickoff(body).await?;
    Ok(Json(KickoffResponse { kickoff_id }))
}

/// `GET /status/{kickoff_id}`.
pub(super) async fn status(
    State(state): State<AppState>,
    ExecutionId(id): ExecutionId,
) -> Result<Json<Value>, ApiError> {
    let execution = state.store().execution(id).await?;
    Ok(Json(status_body(&execution)))
}

fn status_body(e: &Execution) -> Value {
    json!({
        "kickoff_id": e.id,
        "state": e.state.as_str(),
        "status": e.state.status(),
        "result": e.result,
        "error": e.error,
        "execution_time": e.execution_time,
        "meta": e.meta,
    })
}

/// `POST /executions`.
pub(super) async fn register(
    State(state): State<AppState>,
    OptionalJsonBody(body): OptionalJsonBody<KickoffBody>,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    let (execution_id, token) = state.register(body).await?;
    Ok((
        StatusCode::CREATED,
        Json(RegisterResponse { execution_id, ingest_token: token.expose().to_owned() }),
    ))
}

/// `POST /executions/{id}/events`: 202 once the store has the events.
pub(super) async fn ingest(
    State(state): State<AppState>,
    Producer(execution): Producer,
    body: Result<JsonBody<IngestBody>, ApiError>,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    // A malformed event (not an object, a field of the wrong JSON type) is an invalid event.
    let JsonBody(body) = body.map_err(|e| match e {
        ApiError::InvalidRequest { field: Some(field), message }
            if field.starts_with("events[") =>
        {
            ApiError::InvalidEvent { field, message }
        }
        other => other,
    })?;
    let published = state.ingest(&execution, body.events).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(IngestResponse {
            accepted: published.accepted,
            duplicates: published.duplicates,
            last_sequence: published.last_sequence,
        }),
    ))
}

/// `POST /executions/{id}/complete`.
pub(super) async fn complete(
    State(state): State<AppState>,
    Producer(execution): Producer,
    JsonBody(body): JsonBody<CompleteBody>,
) -> Result<Json<Value>, ApiError> {
    let finished = state.complete(&execution, body).await?;
    let mut body = status_body(&finished.execution);
    if let Value::Object(map) = &mut body {
        map.insert("last_sequence".into(), finished.last_sequence.into());
    }
    Ok(Json(body))
}

/// `GET /executions/{id}/events?after&limit`.
pub(super) async fn replay(
    State(state): State<AppState>,
    ExecutionId(id): ExecutionId,
    QueryParams(query): QueryParams<ReplayQuery>,
) -> Result<Json<Value>, ApiError> {
    state.store().execution(id).await?;
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid("limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let events = state
        .bus()
        .read(id, after, limit)
        .await
        .map_err(|e| ApiError::from(crate::store::StoreError::from_bus(e)))?;
    let next_after = events.last().map_or(after, |e| e.sequence);
    let events: Vec<&hookstream_events_core::Event> = events.iter().map(AsRef::as_ref).collect();
    Ok(Json(json!({"events": events, "next_after": next_after})))
}
