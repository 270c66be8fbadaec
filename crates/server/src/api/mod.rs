//! The HTTP API of SPEC §3 on axum: the route table ([`ROUTES`]) that builds the router and
//! that the OpenAPI document is checked against, the handlers, the extractors and the wire
//! types.
//!
//! This module owns HTTP concerns only (status codes, bodies, headers, authentication of
//! requests, limits); the life of an execution is in the server's lifecycle module and
//! storage behind the `Store` trait.
//!
//! **Invariant:** every answer that is not a success carries [`ApiError`]'s JSON body, axum's
//! own 404, 405, 413 and rejections included.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Method;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

mod deliveries;
mod executions;
pub(crate) mod extract;
mod ops;
mod stream;
pub(crate) mod wire;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Anyone (`GET /`, `GET /healthz`).
    Public,
    /// `Authorization: Bearer <api token>`.
    ApiToken,
    /// The API token or the execution's ingest token.
    ApiOrIngestToken,
}

/// One route of the API.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path, axum/OpenAPI style (`/status/{kickoff_id}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// One line about it.
    pub summary: &'static str,
    endpoint: Endpoint,
}

#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Root,
    Healthz,
    Readyz,
    Metrics,
    Inputs,
    Kickoff,
    Status,
    Register,
    Ingest,
    Complete,
    Replay,
    Stream,
    Deliveries,
    Redrive,
}

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
    endpoint: Endpoint,
) -> Route {
    Route { method, path, access, summary, endpoint }
}

/// Every route of the API: the router is built from this table, and a test checks that
/// `docs/openapi.json` has exactly these routes.
pub const ROUTES: &[Route] = &[
    route(
        "GET",
        "/",
        Access::Public,
        "Healthy (plain text), as CrewAI Enterprise deployments answer",
        Endpoint::Root,
    ),
    route("GET", "/healthz", Access::Public, "Liveness", Endpoint::Healthz),
    route(
        "GET",
        "/readyz",
        Access::ApiToken,
        "Readiness: the store is reachable",
        Endpoint::Readyz,
    ),
    route("GET", "/metrics", Access::ApiToken, "Prometheus text", Endpoint::Metrics),
    route(
        "GET",
        "/inputs",
        Access::ApiToken,
        "The inputs the configured runner requires",
        Endpoint::Inputs,
    ),
    route(
        "POST",
        "/kickoff",
        Access::ApiToken,
        "Start a run with the configured runner",
        Endpoint::Kickoff,
    ),
    route("GET", "/status/{kickoff_id}", Access::ApiToken, "State of a run", Endpoint::Status),
    route(
        "POST",
        "/executions",
        Access::ApiToken,
        "Register an execution whose events come from outside",
        Endpoint::Register,
    ),
    route(
        "POST",
        "/executions/{id}/events",
        Access::ApiOrIngestToken,
        "Ingest events",
        Endpoint::Ingest,
    ),
    route(
        "POST",
        "/executions/{id}/complete",
        Access::ApiOrIngestToken,
        "End an external execution",
        Endpoint::Complete,
    ),
    route(
        "GET",
        "/executions/{id}/events",
        Access::ApiToken,
        "Replay events from the store",
        Endpoint::Replay,
    ),
    route(
        "GET",
        "/executions/{id}/stream",
        Access::ApiToken,
        "Server-Sent Events, live",
        Endpoint::Stream,
    ),
    route(
        "GET",
        "/executions/{id}/deliveries",
        Access::ApiToken,
        "Delivery state per webhook",
        Endpoint::Deliveries,
    ),
    route(
        "POST",
        "/executions/{id}/deliveries/redrive",
        Access::ApiToken,
        "Put dead-lettered batches back in line",
        Endpoint::Redrive,
    ),
];

fn method_router(endpoint: Endpoint) -> MethodRouter<AppState> {
    match endpoint {
        Endpoint::Root => get(ops::root),
        Endpoint::Healthz => get(ops::healthz),
        Endpoint::Readyz => get(ops::readyz),
        Endpoint::Metrics => get(ops::metrics),
        Endpoint::Inputs => get(ops::inputs),
        Endpoint::Kickoff => post(executions::kickoff),
        Endpoint::Status => get(executions::status),
        Endpoint::Register => post(executions::register),
        Endpoint::Ingest => post(executions::ingest),
        Endpoint::Complete => post(executions::complete),
        Endpoint::Replay => get(executions::replay),
        Endpoint::Stream => get(stream::stream),
        Endpoint::Deliveries => get(deliveries::deliveries),
        Endpoint::Redrive => post(deliveries::redrive),
    }
}

/// The API's router over `state`: every route of [`ROUTES`], JSON 404/405, the body limit,
/// the request timeout and API-token authentication where the table says so.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        let mut methods = method_router(route.endpoint);
        if route.access == Access::ApiToken {
            methods =
                methods.route_layer(from_fn_with_state(state.clone(), extract::require_api_token));
        }
        router = router.route(route.path, methods);
    }
    let limits = state.limits();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(limits.request_timeout, timeout))
        .layer(DefaultBodyLimit::max(limits.body_limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::RouteNotFound(req.uri().path().chars().take(200).collect())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(ApiError::Timeout(limit.as_millis())),
    }
}
