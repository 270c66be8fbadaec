//! Operational routes: `GET /`, `/healthz`, `/readyz`, `/metrics`, `/inputs`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use hookstream_delivery_http::PairKey;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /`: `Healthy`, as CrewAI Enterprise deployments answer.
pub(super) async fn root() -> &'static str {
    "Healthy"
}

/// `GET /healthz`: the process answers.
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers.
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store().ping().await.map_err(|error| {
        tracing::warn!(%error, "store not ready");
        ApiError::Unavailable("the store is not reachable".into())
    })?;
    Ok(Json(json!({"status": "ready"})))
}

/// `GET /metrics`: Prometheus text; the gauges are read from the store first.
pub(super) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let store = state.store();
    let counts = store.state_counts().await?;
    let (mut pending, mut dead) = (0u64, 0u64);
    for execution in store.unfinished_executions().await? {
        for index in 0..execution.webhooks.len() {
            let pair = PairKey::new(execution.id, u32::try_from(index).unwrap_or(u32::MAX));
            if let Some(stats) = store.delivery_stats(pair).await? {
                pending += stats.pending_events;
                dead += stats.dead_letters.len() as u64;
            }
        }
    }
    state.metrics().set_gauges(counts, pending, dead);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics().render(),
    ))
}

/// `GET /inputs`: what the runner requires.
pub(super) async fn inputs(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"inputs": state.runner().required_inputs()}))
}
